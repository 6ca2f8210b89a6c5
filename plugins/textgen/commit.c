/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The commitments of commit.h. */

#include <errno.h>
#include <math.h>
#include <stdbool.h>

#include "commit.h"

void commit_topk(const float *logits, size_t n_vocab, unsigned k, int32_t *ids, float *values) {
        unsigned have = 0;

        /* Insertion into a list of k: k is a handful, the vocabulary large. */
        for (size_t i = 0; i < n_vocab; i++) {
                float v = logits[i];
                unsigned j;

                if (have == k && !(v > values[k - 1]))
                        continue;
                j = have < k ? have++ : k - 1;
                while (j > 0 && v > values[j - 1]) {
                        values[j] = values[j - 1];
                        ids[j] = ids[j - 1];
                        j--;
                }
                values[j] = v;
                ids[j] = (int32_t) i;
        }
        for (; have < k; have++) {
                ids[have] = -1;
                values[have] = -INFINITY;
        }
}

static bool listed(const int32_t *ids, unsigned k, size_t id) {
        for (unsigned j = 0; j < k; j++)
                if (ids[j] >= 0 && (size_t) ids[j] == id)
                        return true;
        return false;
}

int commit_check(const float *logits, size_t n_vocab, unsigned k, const int32_t *ids, const float *values, float tol,
                 struct commit_mismatch *why) {
        float smallest = INFINITY;

        *why = (struct commit_mismatch) { .fault = COMMIT_OK };
        for (unsigned j = 0; j < k; j++) {
                if (ids[j] < 0 || (size_t) ids[j] >= n_vocab || listed(ids, j, (size_t) ids[j])) {
                        *why = (struct commit_mismatch) { .fault = COMMIT_BAD_ID, .slot = j, .id = ids[j] };
                        return -EBADMSG;
                }
                if (!isfinite(values[j]) || !isfinite(logits[ids[j]])) {
                        *why = (struct commit_mismatch) { .fault = COMMIT_NOT_FINITE, .slot = j, .id = ids[j],
                                                          .committed = values[j], .actual = logits[ids[j]] };
                        return -EBADMSG;
                }
                if (!(fabsf(values[j] - logits[ids[j]]) <= tol)) {
                        *why = (struct commit_mismatch) { .fault = COMMIT_VALUE, .slot = j, .id = ids[j],
                                                          .committed = values[j], .actual = logits[ids[j]] };
                        return -EBADMSG;
                }
                if (values[j] < smallest)
                        smallest = values[j];
        }
        for (size_t i = 0; i < n_vocab; i++)
                if (logits[i] > smallest + tol && !listed(ids, k, i)) {
                        *why = (struct commit_mismatch) { .fault = COMMIT_MISSING, .slot = k - 1, .id = (int32_t) i,
                                                          .committed = smallest, .actual = logits[i] };
                        return -EBADMSG;
                }
        return 0;
}

float commit_distance(const float *logits, size_t n_vocab, unsigned k, const int32_t *ids, const float *values) {
        float worst = 0, smallest = INFINITY;

        for (unsigned j = 0; j < k; j++) {
                if (ids[j] < 0 || (size_t) ids[j] >= n_vocab)
                        return INFINITY;
                worst = fmaxf(worst, fabsf(values[j] - logits[ids[j]]));
                smallest = fminf(smallest, values[j]);
        }
        for (size_t i = 0; i < n_vocab; i++)
                if (logits[i] > smallest && !listed(ids, k, i))
                        worst = fmaxf(worst, logits[i] - smallest);
        return worst;
}

const char *commit_fault_to_string(enum commit_fault f) {
        switch (f) {
        case COMMIT_OK:
                return "ok";
        case COMMIT_BAD_ID:
                return "an id outside the vocabulary or listed twice";
        case COMMIT_VALUE:
                return "a committed logit differs from the model's";
        case COMMIT_MISSING:
                return "a token with a larger logit is left out";
        case COMMIT_NOT_FINITE:
                return "a logit that is not finite";
        }
        return "unknown";
}

static int slot_of(const int32_t *ids, unsigned k, int32_t id) {
        for (unsigned j = 0; j < k; j++)
                if (ids[j] == id)
                        return (int) j;
        return -1;
}

/* One direction of commit_compare(): what a lists, b must agree with. */
static int compare_one_way(unsigned k, const int32_t *ids_a, const float *values_a, const int32_t *ids_b,
                           const float *values_b, float tol, bool swapped, struct commit_mismatch *why) {
        float smallest_b = INFINITY;

        for (unsigned j = 0; j < k; j++)
                smallest_b = fminf(smallest_b, values_b[j]);
        for (unsigned j = 0; j < k; j++) {
                int other = slot_of(ids_b, k, ids_a[j]);

                if (!isfinite(values_a[j])) {
                        *why = (struct commit_mismatch) { .fault = COMMIT_NOT_FINITE, .slot = j, .id = ids_a[j] };
                        return -EBADMSG;
                }
                if (other >= 0 && !(fabsf(values_a[j] - values_b[other]) <= 2 * tol)) {
                        *why = (struct commit_mismatch) { .fault = COMMIT_VALUE, .slot = j, .id = ids_a[j],
                                                          .committed = swapped ? values_b[other] : values_a[j],
                                                          .actual = swapped ? values_a[j] : values_b[other] };
                        return -EBADMSG;
                }
                if (other < 0 && values_a[j] > smallest_b + 2 * tol) {
                        *why = (struct commit_mismatch) { .fault = COMMIT_MISSING, .slot = j, .id = ids_a[j],
                                                          .committed = swapped ? smallest_b : values_a[j],
                                                          .actual = swapped ? values_a[j] : smallest_b };
                        return -EBADMSG;
                }
        }
        return 0;
}

int commit_compare(unsigned k, const int32_t *ids_a, const float *values_a, const int32_t *ids_b,
                   const float *values_b, float tol, struct commit_mismatch *why) {
        *why = (struct commit_mismatch) { .fault = COMMIT_OK };
        for (unsigned j = 0; j < k; j++)
                if (ids_a[j] < 0 || ids_b[j] < 0 || slot_of(ids_a, j, ids_a[j]) >= 0 ||
                    slot_of(ids_b, j, ids_b[j]) >= 0) {
                        *why = (struct commit_mismatch) { .fault = COMMIT_BAD_ID, .slot = j,
                                                          .id = ids_a[j] < 0 ? ids_a[j] : ids_b[j] };
                        return -EBADMSG;
                }
        if (compare_one_way(k, ids_a, values_a, ids_b, values_b, tol, false, why) < 0)
                return -EBADMSG;
        return compare_one_way(k, ids_b, values_b, ids_a, values_a, tol, true, why);
}

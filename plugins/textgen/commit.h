/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Commitments to what a model computed, after TOPLOC (Ong et al., 2025,
 * arXiv 2501.16007): for every generated position, the k largest logits
 * and their token ids.  A provider puts them in its signed proof; whoever
 * re-runs the prompt and the output through the same model (teacher
 * forcing: one batched pass, no sampling) checks them against its own
 * logits, and two such commitments can be compared without any model.
 *
 * What they catch that checking the sampled tokens alone does not: a model
 * that is not the one claimed but often picks the same tokens (a more
 * quantised copy, a smaller sibling, other weights), since every committed
 * value must match to within a tolerance far below what quantisation moves
 * a logit by, and the committed set must be the true top k.  What they
 * cost: k · 8 bytes per generated token (k = 4: 1 KiB per 32 tokens).
 *
 * Pure: no allocation, no logging. */

#include <stddef.h>
#include <stdint.h>

#define COMMIT_K 4

enum commit_fault {
        COMMIT_OK,
        COMMIT_BAD_ID,          /* an id outside the vocabulary, or listed twice */
        COMMIT_VALUE,           /* a committed logit differs from the checker's by more than the tolerance */
        COMMIT_MISSING,         /* a token left out has a larger logit than the smallest committed one */
        COMMIT_NOT_FINITE,
};

struct commit_mismatch {
        enum commit_fault fault;
        unsigned slot;          /* which of the k */
        int32_t id;             /* the token concerned */
        float committed;        /* what the commitment says (COMMIT_MISSING: its smallest value) */
        float actual;           /* what the checker's logits say */
};

/* The k largest logits, largest first (ties: the lower id first). */
void commit_topk(const float *logits, size_t n_vocab, unsigned k, int32_t *ids, float *values);

/* Checks one position's commitment against the checker's own logits:
 * every committed id valid and distinct, its value within tol of the
 * checker's logit for it, and no other token's logit above the smallest
 * committed value by more than tol.  0, or -EBADMSG with *why filled. */
int commit_check(const float *logits, size_t n_vocab, unsigned k, const int32_t *ids, const float *values, float tol,
                 struct commit_mismatch *why);

/* The largest |committed − actual| over ids and the largest excess of a
 * left-out token over the smallest committed value (0 if none): how far a
 * commitment is from logits, for measuring tolerances. */
float commit_distance(const float *logits, size_t n_vocab, unsigned k, const int32_t *ids, const float *values);

const char *commit_fault_to_string(enum commit_fault f);

/* Compares two commitments to the same position, neither side's logits at
 * hand (a requester without the model comparing a provider's with a
 * checker's): each committed value is within tol of the truth, so the two
 * must agree within 2·tol on every id both list, and an id one lists above
 * the other's smallest value by more than 2·tol must be in the other's
 * list.  0, or -EBADMSG with *why (committed: a's value, actual: b's). */
int commit_compare(unsigned k, const int32_t *ids_a, const float *values_a, const int32_t *ids_b,
                   const float *values_b, float tol, struct commit_mismatch *why);

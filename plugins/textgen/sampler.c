/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn-error.h"
#include "sampler.h"

struct candidate {
        float logit;
        int32_t id;
};

struct sampler {
        struct sampler_params p;
        size_t n_vocab;
        uint64_t rng[4];                /* xoshiro256** */
        struct candidate *cand;         /* the heap */
        struct candidate *sorted;       /* what came out of it, best first */
        float *probs;
};


int sampler_params_check(const struct sampler_params *p, char *err, size_t err_size) {
        /* Below 1e-3 the logits divided by it overflow: say 0 for greedy. */
        if (!(p->temperature == 0 || (p->temperature >= 1e-3f && p->temperature <= 100)))
                return nn_error(err, err_size, -EINVAL, "temperature %g must be 0 (greedy) or between 0.001 and 100",
                                (double) p->temperature);
        if (!(p->top_p > 0 && p->top_p <= 1))
                return nn_error(err, err_size, -EINVAL, "top_p %g must be in (0, 1]", (double) p->top_p);
        if (!(p->min_p >= 0 && p->min_p < 1))
                return nn_error(err, err_size, -EINVAL, "min_p %g must be in [0, 1)", (double) p->min_p);
        if (!(p->repeat_penalty >= 0.5f && p->repeat_penalty <= 10))
                return nn_error(err, err_size, -EINVAL, "repeat_penalty %g must be between 0.5 and 10", (double) p->repeat_penalty);
        return 0;
}

static uint64_t splitmix64(uint64_t *x) {
        uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
        return (x << k) | (x >> (64 - k));
}

static uint64_t next_u64(uint64_t s[4]) {
        uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return result;
}

/* Uniform in [0, 1) with 53 bits. */
static double next_double(uint64_t s[4]) {
        return (double) (next_u64(s) >> 11) * (1.0 / 9007199254740992.0);
}

int sampler_new(const struct sampler_params *p, size_t n_vocab, struct sampler **ret) {
        struct sampler *s;
        uint64_t x;

        if (n_vocab == 0 || sampler_params_check(p, NULL, 0) < 0)
                return -EINVAL;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->p = *p;
        s->n_vocab = n_vocab;
        s->cand = malloc(n_vocab * sizeof(*s->cand));
        s->sorted = malloc(n_vocab * sizeof(*s->sorted));
        s->probs = malloc(n_vocab * sizeof(float));
        if (!s->cand || !s->sorted || !s->probs) {
                sampler_free(s);
                return -ENOMEM;
        }
        x = p->seed;
        for (int i = 0; i < 4; i++)
                s->rng[i] = splitmix64(&x);
        *ret = s;
        return 0;
}

void sampler_free(struct sampler *s) {
        if (!s)
                return;
        free(s->cand);
        free(s->sorted);
        free(s->probs);
        free(s);
}

/* CTRL's penalty (Keskar et al.): a logit of a recent token is divided by
 * the penalty when positive, multiplied when negative.  Each distinct token
 * once.  dst may be src. */
static void apply_penalty(const struct sampler_params *p, const float *src, float *dst, size_t n_vocab,
                          const int32_t *history, size_t n_history) {
        size_t from;

        if (dst != src)
                memcpy(dst, src, n_vocab * sizeof(float));
        if (p->repeat_penalty == 1.0f || p->repeat_last_n == 0 || n_history == 0)
                return;
        from = n_history > p->repeat_last_n ? n_history - p->repeat_last_n : 0;
        for (size_t i = from; i < n_history; i++) {
                int32_t t = history[i];
                bool seen = false;

                if (t < 0 || (size_t) t >= n_vocab)
                        continue;
                for (size_t j = from; j < i && !seen; j++)
                        seen = history[j] == t;
                if (seen)
                        continue;
                dst[t] = dst[t] > 0 ? dst[t] / p->repeat_penalty : dst[t] * p->repeat_penalty;
        }
}

static size_t argmax(const float *v, size_t n) {
        size_t best = 0;

        for (size_t i = 1; i < n; i++)
                if (v[i] > v[best])
                        best = i;
        return best;
}


/* Candidates come out best first: by logit, then by id.  A binary heap
 * gives them in that order without sorting the whole vocabulary (150,000
 * entries for Qwen 2) when top-k, top-p or min-p keep only a few. */
static bool better(const struct candidate *a, const struct candidate *b) {
        return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static void sift_down(struct candidate *h, size_t n, size_t i) {
        for (;;) {
                size_t best = i, l = 2 * i + 1, r = l + 1;

                if (l < n && better(&h[l], &h[best]))
                        best = l;
                if (r < n && better(&h[r], &h[best]))
                        best = r;
                if (best == i)
                        return;
                struct candidate t = h[i];
                h[i] = h[best];
                h[best] = t;
                i = best;
        }
}

static struct candidate heap_pop(struct candidate *h, size_t *n) {
        struct candidate top = h[0];

        h[0] = h[--*n];
        sift_down(h, *n, 0);
        return top;
}

int32_t sampler_sample(struct sampler *s, float *logits, const int32_t *history, size_t n_history) {
        const struct sampler_params *p = &s->p;
        size_t n = s->n_vocab, heap_n = n, popped = 0, keep, limit;
        struct candidate *sorted = s->sorted;
        double sum = 0, cum = 0, r;

        apply_penalty(p, logits, logits, n, history, n_history);
        if (p->temperature <= 0)
                return (int32_t) argmax(logits, n);

        for (size_t i = 0; i < n; i++)
                s->cand[i] = (struct candidate) { .logit = logits[i] / p->temperature, .id = (int32_t) i };
        for (size_t i = n / 2; i-- > 0;)
                sift_down(s->cand, n, i);

        /* The normaliser: over the top-k when it is on, else over all. */
        limit = p->top_k > 0 && p->top_k < n ? p->top_k : n;
        if (limit < n) {
                while (popped < limit)
                        sorted[popped++] = heap_pop(s->cand, &heap_n);
                for (size_t i = 0; i < limit; i++)
                        sum += exp((double) sorted[i].logit - sorted[0].logit);
        } else {
                float max = s->cand[0].logit;
                for (size_t i = 0; i < n; i++)
                        sum += exp((double) s->cand[i].logit - max);
        }

        /* Walk down from the best while top-p and min-p keep candidates. */
        for (keep = 0; keep < limit; keep++) {
                if (popped <= keep)
                        sorted[popped++] = heap_pop(s->cand, &heap_n);
                s->probs[keep] = expf(sorted[keep].logit - sorted[0].logit);
                if (keep > 0 && p->min_p > 0 && s->probs[keep] < p->min_p * s->probs[0])
                        break;
                cum += s->probs[keep] / sum;
                if (p->top_p < 1 && cum >= p->top_p) {
                        keep++;
                        break;
                }
        }

        sum = 0;
        for (size_t i = 0; i < keep; i++)
                sum += s->probs[i];
        r = next_double(s->rng) * sum;
        for (size_t i = 0; i < keep; i++) {
                r -= s->probs[i];
                if (r < 0)
                        return sorted[i].id;
        }
        return sorted[keep - 1].id;
}

bool sampler_admits(const struct sampler_params *p, const float *logits, size_t n_vocab, const int32_t *history,
                    size_t n_history, int32_t token, float tolerance, float *scratch) {
        float *l = scratch, mine, best;
        size_t above = 0;
        double mass_above = 0, sum = 0, t;

        if (token < 0 || (size_t) token >= n_vocab)
                return false;
        apply_penalty(p, logits, l, n_vocab, history, n_history);
        best = l[argmax(l, n_vocab)];
        mine = l[token];
        if (p->temperature <= 0)
                return mine >= best - tolerance;

        /* Tokens that beat ours by more than the tolerance are certainly
         * ranked above it on any backend. */
        t = p->temperature;
        for (size_t i = 0; i < n_vocab; i++) {
                double e = exp((l[i] - best) / t);

                sum += e;
                if (l[i] > mine + tolerance) {
                        above++;
                        mass_above += e;
                }
        }
        if (p->top_k > 0 && above >= p->top_k)
                return false;
        if (p->top_p < 1 && mass_above / sum >= p->top_p)
                return false;
        if (p->min_p > 0 && exp((mine + tolerance - best) / t) < p->min_p)
                return false;
        return true;
}

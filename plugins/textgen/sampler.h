/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Choosing the next token from the logits: repetition penalty, then greedy
 * (temperature 0) or temperature → top-k → top-p → min-p → a draw from what
 * is left.  The draw's generator is seeded, so a seed reproduces a
 * generation on the same backend.  sampler_admits() is the verifier's side:
 * whether a token could have come out of those filters at a position. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sampler_params {
        float temperature;      /* 0: greedy */
        uint32_t top_k;         /* 0: off */
        float top_p;            /* 1: off */
        float min_p;            /* 0: off */
        float repeat_penalty;   /* 1: off */
        uint32_t repeat_last_n; /* how many recent tokens the penalty looks at */
        uint64_t seed;
};

#define SAMPLER_PARAMS_DEFAULT ((struct sampler_params) {                             \
                .temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,     \
                .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0 })

/* -EINVAL (with a message) for a parameter out of its range. */
int sampler_params_check(const struct sampler_params *p, char *err, size_t err_size);

struct sampler;

int sampler_new(const struct sampler_params *p, size_t n_vocab, struct sampler **ret);
void sampler_free(struct sampler *s);

/* Picks the next token.  logits (n_vocab) are modified.  history: the tokens
 * so far (prompt and output), for the repetition penalty. */
int32_t sampler_sample(struct sampler *s, float *logits, const int32_t *history, size_t n_history);

/* Whether token is within what the filters keep at this position, allowing
 * tolerance (in logits) for the rounding differences between backends: for
 * greedy, token's logit is within tolerance of the largest; otherwise it is
 * among the top_k, inside the top_p mass and above min_p of the best, each
 * counted with the tolerance in the token's favour.  logits is not
 * modified; scratch holds n_vocab floats. */
bool sampler_admits(const struct sampler_params *p, const float *logits, size_t n_vocab, const int32_t *history,
                    size_t n_history, int32_t token, float tolerance, float *scratch);

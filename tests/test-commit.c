/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* textgen's commitments (commit.h): the top-k and its checks on made-up
 * logits, then on tiny random-weight models written as real GGUF files:
 * what honest runs differ by (thread counts, decoding one token at a time
 * against one batched teacher-forced pass) stays under the default
 * tolerance at every one of more than 1,000 positions, and a copy of the
 * same weights quantised to Q4_0, or a model with other weights, is caught
 * in every sequence (a Q8_0 copy, closer to the original than the
 * tolerance allows for, in some: the figure is printed). */

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commit.h"
#include "gguf.h"
#include "llama.h"
#include "nn-backend.h"
#include "tiny-model.h"

/* textgen's default commit-tolerance-milli, in logits. */
#define TOL 0.1f

TestSuite(commit, .timeout = 120);

Test(commit, topk_lists_the_largest_first_and_ties_by_id) {
        const float logits[] = { 0.5f, 3.0f, -1.0f, 3.0f, 2.0f, 7.0f, 0.0f };
        int32_t ids[4];
        float v[4];

        commit_topk(logits, 7, 4, ids, v);
        cr_assert_eq(ids[0], 5);
        cr_assert_eq(ids[1], 1);
        cr_assert_eq(ids[2], 3);
        cr_assert_eq(ids[3], 4);
        cr_assert_eq(v[3], 2.0f);
        commit_topk(logits, 2, 4, ids, v);
        cr_assert_eq(ids[2], -1, "fewer tokens than k: the rest are empty");
}

Test(commit, check_accepts_its_own_topk_and_names_each_fault) {
        float logits[100];
        int32_t ids[COMMIT_K];
        float v[COMMIT_K];
        struct commit_mismatch why;

        for (int i = 0; i < 100; i++)
                logits[i] = sinf((float) i * 1.7f) * 5.0f;
        commit_topk(logits, 100, COMMIT_K, ids, v);
        cr_assert_eq(commit_check(logits, 100, COMMIT_K, ids, v, TOL, &why), 0);

        v[1] += 2 * TOL;
        cr_assert_eq(commit_check(logits, 100, COMMIT_K, ids, v, TOL, &why), -EBADMSG);
        cr_assert_eq(why.fault, COMMIT_VALUE);
        cr_assert_eq(why.slot, 1);
        v[1] -= 2 * TOL;

        /* The fourth largest left out for the fifth. */
        {
                int32_t saved = ids[3];
                float fifth = -INFINITY;
                int32_t fifth_id = -1;

                for (int i = 0; i < 100; i++)
                        if (i != ids[0] && i != ids[1] && i != ids[2] && i != ids[3] && logits[i] > fifth) {
                                fifth = logits[i];
                                fifth_id = i;
                        }
                if (v[3] - fifth > TOL) {
                        ids[3] = fifth_id;
                        v[3] = fifth;
                        cr_assert_eq(commit_check(logits, 100, COMMIT_K, ids, v, TOL, &why), -EBADMSG);
                        cr_assert_eq(why.fault, COMMIT_MISSING);
                        cr_assert_eq(why.id, saved);
                }
                ids[3] = saved;
                v[3] = logits[saved];
        }

        ids[2] = ids[0];
        cr_assert_eq(commit_check(logits, 100, COMMIT_K, ids, v, TOL, &why), -EBADMSG);
        cr_assert_eq(why.fault, COMMIT_BAD_ID);
        ids[2] = 100;
        cr_assert_eq(commit_check(logits, 100, COMMIT_K, ids, v, TOL, &why), -EBADMSG);
        cr_assert_eq(why.fault, COMMIT_BAD_ID);
}

/* ---- On models ---- */

static char dir[] = "/tmp/test-commit-XXXXXX";

static void model_setup(void) {
        cr_assert_not_null(mkdtemp(dir));
}

static void model_teardown(void) {
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        (void) system(cmd);
}

TestSuite(commit_models, .init = model_setup, .fini = model_teardown, .timeout = 300);

struct runner {
        struct gguf *g;
        struct nn_backend *be;
        struct llama_model *m;
        struct llama_context *c;
        size_t n_vocab;
};

static void runner_open(struct runner *r, const struct tiny_model_spec *spec, const char *name, unsigned threads) {
        char path[256], err[512];

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        cr_assert_eq(tiny_model_write(spec, path, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(gguf_open(path, &r->g, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(nn_cpu_backend_new(threads, &r->be), 0);
        cr_assert_eq(llama_model_load(r->g, r->be, &r->m, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(llama_context_new(r->m, 256, 64, &r->c), 0);
        r->n_vocab = llama_model_hparams(r->m)->n_vocab;
}

static void runner_close(struct runner *r) {
        llama_context_free(r->c);
        llama_model_free(r->m);
        nn_backend_free(r->be);
        gguf_close(r->g);
}

/* Greedy generation of n tokens after prompt, one token at a time (as a
 * provider decodes), committing at each step. */
static void generate(struct runner *r, const int32_t *prompt, size_t n_prompt, size_t n, int32_t *gen, int32_t *ids,
                     float *vals) {
        const float *logits;

        llama_context_rewind(r->c, 0);
        cr_assert_eq(llama_eval(r->c, prompt, n_prompt, false, &logits), 0);
        for (size_t i = 0; i < n; i++) {
                commit_topk(logits, r->n_vocab, COMMIT_K, ids + i * COMMIT_K, vals + i * COMMIT_K);
                gen[i] = ids[i * COMMIT_K];
                cr_assert_eq(llama_eval(r->c, &gen[i], 1, false, &logits), 0);
        }
}

/* The largest distance between the commitments and r's logits, teacher
 * forced in one batched pass over prompt + generated. */
static float teacher_forced_distance(struct runner *r, const int32_t *prompt, size_t n_prompt, const int32_t *gen,
                                     size_t n, const int32_t *ids, const float *vals) {
        int32_t seq[256];
        const float *logits;
        float worst = 0;

        memcpy(seq, prompt, n_prompt * sizeof(int32_t));
        memcpy(seq + n_prompt, gen, n * sizeof(int32_t));
        llama_context_rewind(r->c, 0);
        cr_assert_eq(llama_eval(r->c, seq, n_prompt + n - 1, true, &logits), 0);
        for (size_t i = 0; i < n; i++) {
                const float *row = logits + (n_prompt - 1 + i) * r->n_vocab;
                float d = commit_distance(row, r->n_vocab, COMMIT_K, ids + i * COMMIT_K, vals + i * COMMIT_K);

                worst = d > worst ? d : worst;
        }
        return worst;
}

/* 1,000 sequences of 16 greedy tokens from an F16 model (decoded one token
 * at a time on 1 thread, as a provider does), each checked as a verifier
 * does it, teacher forced in one batched pass, on 2 threads and on the
 * generating backend itself: no false positive in 1,000 checked jobs.  The
 * first 40 are also checked against copies in Q8_0 and Q4_0 and with
 * other weights (cheats). */
Test(commit_models, honest_runs_stay_within_the_tolerance_and_substituted_models_never_do) {
        struct tiny_model_spec spec = tiny_model_spec_default();
        struct runner genuine, honest, q8, q4, other;
        const size_t n_prompt = 12, n = 16, sequences = 1000, cheat_sequences = 40;
        int32_t prompt[12], gen[32], ids[32 * COMMIT_K];
        float vals[32 * COMMIT_K], worst_honest = 0, least_q8 = INFINITY, least_q4 = INFINITY,
              least_other = INFINITY;
        unsigned caught_q8 = 0, caught_q4 = 0, caught_other = 0;

        spec.weight_type = NN_TYPE_F16;
        spec.embd_type = NN_TYPE_F16;
        runner_open(&genuine, &spec, "f16.gguf", 1);
        runner_open(&honest, &spec, "f16-again.gguf", 2);
        spec.weight_type = NN_TYPE_Q8_0;
        runner_open(&q8, &spec, "q8.gguf", 2);
        spec.weight_type = NN_TYPE_Q4_0;
        runner_open(&q4, &spec, "q4.gguf", 2);
        spec.weight_type = NN_TYPE_F16;
        spec.seed = 99;
        runner_open(&other, &spec, "other.gguf", 2);

        for (size_t s = 0; s < sequences; s++) {
                float d;

                for (size_t i = 0; i < n_prompt; i++)
                        prompt[i] = (int32_t) ((s * 131 + i * 17 + 3) % genuine.n_vocab);
                generate(&genuine, prompt, n_prompt, n, gen, ids, vals);

                d = teacher_forced_distance(&honest, prompt, n_prompt, gen, n, ids, vals);
                worst_honest = d > worst_honest ? d : worst_honest;
                d = teacher_forced_distance(&genuine, prompt, n_prompt, gen, n, ids, vals);
                worst_honest = d > worst_honest ? d : worst_honest;

                cr_assert_lt(d, TOL, "sequence %zu: an honest job rejected", s);
                if (s >= cheat_sequences)
                        continue;
                d = teacher_forced_distance(&q8, prompt, n_prompt, gen, n, ids, vals);
                least_q8 = d < least_q8 ? d : least_q8;
                caught_q8 += d > TOL;
                d = teacher_forced_distance(&q4, prompt, n_prompt, gen, n, ids, vals);
                least_q4 = d < least_q4 ? d : least_q4;
                caught_q4 += d > TOL;
                d = teacher_forced_distance(&other, prompt, n_prompt, gen, n, ids, vals);
                least_other = d < least_other ? d : least_other;
                caught_other += d > TOL;
        }
        fprintf(stderr, "commitments over %zu honest jobs (%zu positions): at most %.2g logits apart; per "
                "sequence of %zu the least distance of Q8_0 %.4f, Q4_0 %.4f, other weights %.4f (tolerance %.3f)\n",
                sequences, sequences * n, worst_honest, n, least_q8, least_q4, least_other, TOL);
        cr_assert_lt(worst_honest, TOL / 4, "honest runs differ by %g, too close to the tolerance", worst_honest);
        fprintf(stderr, "caught: Q8_0 copy in %u, Q4_0 copy in %u, other weights in %u of %zu sequences\n", caught_q8,
                caught_q4, caught_other, cheat_sequences);
        cr_assert_eq(caught_q4, cheat_sequences, "Q4_0 copy caught in %u of %zu sequences", caught_q4,
                     cheat_sequences);
        cr_assert_eq(caught_other, cheat_sequences, "other weights caught in %u of %zu sequences", caught_other,
                     cheat_sequences);
        runner_close(&genuine);
        runner_close(&honest);
        runner_close(&q8);
        runner_close(&q4);
        runner_close(&other);
}

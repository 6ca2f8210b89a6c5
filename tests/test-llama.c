/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Llama forward pass on tiny random-weight models written as real GGUF
 * files: logits at every position against a plain double-precision forward
 * pass written here from the architecture's definition, KV-cache decoding
 * against a full recompute, every weight type, Qwen 2's biases and neox
 * RoPE, Llama 3.1's rope_freqs, and files whose shapes lie. */

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "llama.h"
#include "nn-quant.h"
#include "sampler.h"
#include "tiny-model.h"

static char dir[] = "/tmp/test-llama-XXXXXX";

static void setup(void) {
        cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        (void) system(cmd);
}

TestSuite(llama, .init = setup, .fini = teardown, .timeout = 120);

static struct gguf *write_and_open(const struct tiny_model_spec *spec, const char *name) {
        char path[256], err[512];
        struct gguf *g;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        cr_assert_eq(tiny_model_write(spec, path, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(gguf_open(path, &g, err, sizeof(err)), 0, "%s", err);
        return g;
}

/* ---- The reference: doubles, no cache, nothing shared with llama.c ---- */

static double *tensor_f64(const struct gguf *g, const char *name, uint64_t *cols, uint64_t *rows) {
        const struct gguf_tensor *t = gguf_find_tensor(g, name);
        float *row;
        double *out;

        if (!t)
                return NULL;
        *cols = t->ne[0];
        *rows = t->n_elements / t->ne[0];
        out = malloc(*cols * *rows * sizeof(double));
        row = malloc(*cols * sizeof(float));
        for (uint64_t r = 0; r < *rows; r++) {
                nn_dequantize_row(t->type, (const uint8_t *) t->data + r * nn_row_bytes(t->type, *cols), row, *cols);
                for (uint64_t c = 0; c < *cols; c++)
                        out[r * *cols + c] = row[c];
        }
        free(row);
        return out;
}

/* Blocks of x on the int8 grid that nn_quantize_act puts activations on
 * (nn-quant.h): per block of blk elements the largest magnitude at ±127,
 * rounding half to even.  blk 0: x unchanged. */
static void ref_act_round(const double *x, uint64_t n, size_t blk, double *out) {
        for (uint64_t b = 0; b < n; b += (blk ? blk : n)) {
                uint64_t len = blk ? blk : n - b;
                double amax = 0;

                for (uint64_t i = b; i < b + len; i++)
                        amax = fmax(amax, fabs(x[i]));
                for (uint64_t i = b; i < b + len; i++)
                        out[i] = blk && amax > 0 ? nearbyint(x[i] * 127.0 / amax) * (amax / 127.0) : blk ? 0.0 : x[i];
        }
}

/* The activation grid of a matrix product with weights of type when the
 * reference mimics the engine's int8 activations (int8), else 0. */
static size_t ref_act_block(enum nn_type type, bool int8) {
        if (!int8 || !nn_type_int8_dot(type))
                return 0;
        return type == NN_TYPE_Q4_0 || type == NN_TYPE_Q8_0 ? 32 : 256;
}

/* y[rows] = W[rows][cols] · x[cols], x first put on the grid of act_blk. */
static void ref_matvec(const double *w, uint64_t cols, uint64_t rows, const double *x, double *y, size_t act_blk) {
        double *xr = malloc(cols * sizeof(double));

        cr_assert_not_null(xr);
        ref_act_round(x, cols, act_blk, xr);
        for (uint64_t r = 0; r < rows; r++) {
                double s = 0;
                for (uint64_t c = 0; c < cols; c++)
                        s += w[r * cols + c] * xr[c];
                y[r] = s;
        }
        free(xr);
}

static void ref_rmsnorm(const double *x, const double *g, uint64_t n, double eps, double *y) {
        double ss = 0;

        for (uint64_t i = 0; i < n; i++)
                ss += x[i] * x[i];
        ss = 1.0 / sqrt(ss / (double) n + eps);
        for (uint64_t i = 0; i < n; i++)
                y[i] = x[i] * ss * g[i];
}

static void ref_rope(double *v, uint64_t hd, uint64_t pos, const struct nn_rope *rope) {
        for (uint64_t i = 0; i < rope->rot_dim / 2; i++) {
                double theta = pow(rope->freq_base, -2.0 * (double) i / rope->rot_dim);
                if (rope->freq_factors)
                        theta /= rope->freq_factors[i];
                double a = (double) pos * rope->pos_scale * theta;
                uint64_t i0 = rope->neox ? i : 2 * i, i1 = rope->neox ? i + rope->rot_dim / 2 : 2 * i + 1;
                double x0 = v[i0], x1 = v[i1];
                v[i0] = x0 * cos(a) - x1 * sin(a);
                v[i1] = x0 * sin(a) + x1 * cos(a);
        }
        (void) hd;
}

/* logits[n][n_vocab] for tokens[0..n), every position attending to all
 * earlier ones, recomputed from scratch.  act_blk, out_act_blk: the
 * activation grids of the layers' and the output's products (0: exact). */
static double *ref_forward(const struct gguf *g, const struct llama_hparams *hp, const int32_t *tokens, size_t n,
                           size_t act_blk, size_t out_act_blk) {
        uint64_t E = hp->n_embd, hd = hp->head_dim, H = hp->n_head, KV = hp->n_head_kv, F = hp->n_ff, V = hp->n_vocab;
        uint64_t c, r;
        double *emb = tensor_f64(g, "token_embd.weight", &c, &r);
        double *x = calloc(n * E, sizeof(double)), *xn = calloc(E, sizeof(double));
        double *q = calloc(n * H * hd, sizeof(double)), *k = calloc(n * KV * hd, sizeof(double));
        double *v = calloc(n * KV * hd, sizeof(double)), *att = calloc(H * hd, sizeof(double));
        double *tmp = calloc(F > E ? F : E, sizeof(double)), *gate = calloc(F, sizeof(double)), *up = calloc(F, sizeof(double));
        double *logits = calloc(n * V, sizeof(double)), *scores = calloc(n, sizeof(double));
        char name[96];

        for (size_t t = 0; t < n; t++)
                memcpy(x + t * E, emb + (uint64_t) tokens[t] * E, E * sizeof(double));
        for (uint32_t l = 0; l < hp->n_layer; l++) {
#define W(s) (snprintf(name, sizeof(name), "blk.%u.%s", l, s), tensor_f64(g, name, &c, &r))
                double *an = W("attn_norm.weight"), *wq = W("attn_q.weight"), *wk = W("attn_k.weight");
                double *wv = W("attn_v.weight"), *wo = W("attn_output.weight"), *fn = W("ffn_norm.weight");
                double *wg = W("ffn_gate.weight"), *wu = W("ffn_up.weight"), *wd = W("ffn_down.weight");
                double *bq = W("attn_q.bias"), *bk = W("attn_k.bias"), *bv = W("attn_v.bias");
#undef W
                for (size_t t = 0; t < n; t++) {
                        ref_rmsnorm(x + t * E, an, E, hp->norm_eps, xn);
                        ref_matvec(wq, E, H * hd, xn, q + t * H * hd, act_blk);
                        ref_matvec(wk, E, KV * hd, xn, k + t * KV * hd, act_blk);
                        ref_matvec(wv, E, KV * hd, xn, v + t * KV * hd, act_blk);
                        for (uint64_t i = 0; bq && i < H * hd; i++)
                                q[t * H * hd + i] += bq[i];
                        for (uint64_t i = 0; bk && i < KV * hd; i++) {
                                k[t * KV * hd + i] += bk[i];
                                v[t * KV * hd + i] += bv[i];
                        }
                        for (uint64_t h = 0; h < H; h++)
                                ref_rope(q + (t * H + h) * hd, hd, t, &hp->rope);
                        for (uint64_t h = 0; h < KV; h++)
                                ref_rope(k + (t * KV + h) * hd, hd, t, &hp->rope);
                }
                for (size_t t = 0; t < n; t++) {
                        for (uint64_t h = 0; h < H; h++) {
                                uint64_t kh = h / (H / KV);
                                double max = -INFINITY, sum = 0;
                                for (size_t p = 0; p <= t; p++) {
                                        double d = 0;
                                        for (uint64_t i = 0; i < hd; i++)
                                                d += q[(t * H + h) * hd + i] * k[(p * KV + kh) * hd + i];
                                        scores[p] = d / sqrt((double) hd);
                                        if (scores[p] > max)
                                                max = scores[p];
                                }
                                for (size_t p = 0; p <= t; p++)
                                        sum += scores[p] = exp(scores[p] - max);
                                for (uint64_t i = 0; i < hd; i++) {
                                        double o = 0;
                                        for (size_t p = 0; p <= t; p++)
                                                o += scores[p] / sum * v[(p * KV + kh) * hd + i];
                                        att[h * hd + i] = o;
                                }
                        }
                        ref_matvec(wo, H * hd, E, att, tmp, act_blk);
                        for (uint64_t i = 0; i < E; i++)
                                x[t * E + i] += tmp[i];
                        ref_rmsnorm(x + t * E, fn, E, hp->norm_eps, xn);
                        ref_matvec(wg, E, F, xn, gate, act_blk);
                        ref_matvec(wu, E, F, xn, up, act_blk);
                        for (uint64_t i = 0; i < F; i++)
                                gate[i] = gate[i] / (1 + exp(-gate[i])) * up[i];
                        ref_matvec(wd, F, E, gate, tmp, act_blk);
                        for (uint64_t i = 0; i < E; i++)
                                x[t * E + i] += tmp[i];
                }
                free(an); free(wq); free(wk); free(wv); free(wo); free(fn); free(wg); free(wu); free(wd);
                free(bq); free(bk); free(bv);
        }
        double *on = tensor_f64(g, "output_norm.weight", &c, &r);
        double *out = tensor_f64(g, "output.weight", &c, &r);
        for (size_t t = 0; t < n; t++) {
                ref_rmsnorm(x + t * E, on, E, hp->norm_eps, xn);
                ref_matvec(out ? out : emb, E, V, xn, logits + t * V, out_act_blk);
        }
        free(on); free(out); free(emb); free(x); free(xn); free(q); free(k); free(v); free(att);
        free(tmp); free(gate); free(up); free(scores);
        return logits;
}

/* ---- Tests ---- */

static const int32_t prompt[] = { 1, 300, 17, 42, 260, 511, 5, 77, 123, 301, 302, 303, 64, 2, 9, 100, 200 };
#define N_PROMPT (sizeof(prompt) / sizeof(prompt[0]))

/* Quantised weights make the engine round its activations to int8 before
 * each matrix product (nn_vec_dot_act): a logit then moves by up to 8% of
 * 1 + |logit| in these random models (measured: q4_0 4.1%, q8_0 4.2%, q6_K
 * 6.2%, q5_K 7.1%, q4_K 7.7%), fifty times the 2e-3 that f32 activations
 * keep.  So the logits are held to the tolerance against a reference that
 * rounds its activations the same way, and only to this against the exact
 * one. */
#define INT8_ACT_TOL 0.1

static size_t argmax_f64(const double *v, size_t n) {
        size_t best = 0;

        for (size_t j = 1; j < n; j++)
                if (v[j] > v[best])
                        best = j;
        return best;
}

/* Runs the model over the prompt in batches of `batch` with all logits and
 * compares every position with the reference; for weights with integer
 * dot products, with the reference that rounds its activations as the
 * engine does (at tol) and with the exact one (at INT8_ACT_TOL). */
static void check_against_reference(const struct tiny_model_spec *spec, size_t batch, unsigned threads, double tol) {
        struct gguf *g = write_and_open(spec, "m.gguf");
        struct nn_backend *be;
        struct llama_model *m;
        struct llama_context *c;
        char err[512];

        cr_assert_eq(nn_cpu_backend_new(threads, &be), 0);
        cr_assert_eq(llama_model_load(g, be, &m, err, sizeof(err)), 0, "%s", err);
        const struct llama_hparams *hp = llama_model_hparams(m);
        cr_assert_eq(llama_context_new(m, 64, batch, &c), 0);
        enum nn_type out_type = spec->tied_output ? spec->embd_type : spec->weight_type;
        bool int8 = nn_type_int8_dot(spec->weight_type) || nn_type_int8_dot(out_type);
        double tol_exact = int8 ? INT8_ACT_TOL : tol;
        double *ref = ref_forward(g, hp, prompt, N_PROMPT, 0, 0);
        double *ref_q = ref_forward(g, hp, prompt, N_PROMPT, ref_act_block(spec->weight_type, true),
                                    ref_act_block(out_type, true));

        for (size_t i = 0; i < N_PROMPT; i += batch) {
                size_t n = N_PROMPT - i < batch ? N_PROMPT - i : batch;
                const float *logits;

                cr_assert_eq(llama_eval(c, prompt + i, n, true, &logits), 0);
                for (size_t t = 0; t < n; t++) {
                        const double *rl = ref + (i + t) * hp->n_vocab, *rq = ref_q + (i + t) * hp->n_vocab;
                        const float *lt = logits + t * hp->n_vocab;
                        size_t best = 0, ref_best = argmax_f64(rl, hp->n_vocab);

                        for (size_t j = 0; j < hp->n_vocab; j++) {
                                cr_assert(fabs(lt[j] - rq[j]) <= tol * (1 + fabs(rq[j])),
                                          "position %zu token %zu: %g, reference %g", i + t, j, (double) lt[j], rq[j]);
                                cr_assert(fabs(lt[j] - rl[j]) <= tol_exact * (1 + fabs(rl[j])),
                                          "position %zu token %zu: %g, exact reference %g", i + t, j, (double) lt[j], rl[j]);
                                if (lt[j] > lt[best])
                                        best = j;
                        }
                        cr_assert_eq(best, argmax_f64(rq, hp->n_vocab), "greedy token at position %zu", i + t);
                        /* Against the exact reference the int8 rounding can
                         * swap two logits closer than its error, no more. */
                        cr_assert(best == ref_best || rl[best] >= rl[ref_best] - tol_exact * (1 + fabs(rl[ref_best])),
                                  "greedy token at position %zu: %zu (exact reference %g), not %zu (%g)",
                                  i + t, best, rl[best], ref_best, rl[ref_best]);
                }
        }
        free(ref);
        free(ref_q);
        llama_context_free(c);
        llama_model_free(m);
        nn_backend_free(be);
        gguf_close(g);
}

Test(llama, f32_logits_match_a_double_precision_reference_at_every_position) {
        struct tiny_model_spec s = tiny_model_spec_default();

        check_against_reference(&s, 64, 1, 1e-3);
}

Test(llama, batches_and_threads_do_not_change_the_logits) {
        struct tiny_model_spec s = tiny_model_spec_default();

        check_against_reference(&s, 5, 2, 1e-3);
        check_against_reference(&s, 1, 3, 1e-3);
}

Test(llama, qwen2_biases_and_neox_rope_match_the_reference) {
        struct tiny_model_spec s = tiny_model_spec_default();

        s.arch = "qwen2";
        s.tokenizer = TINY_TOKENIZER_BPE;
        s.tied_output = true;
        check_against_reference(&s, 7, 2, 1e-3);
}

Test(llama, llama31_rope_freqs_and_gqa_match_the_reference) {
        struct tiny_model_spec s = tiny_model_spec_default();

        s.rope_freqs = true;
        s.n_head = 8;
        s.n_head_kv = 2;
        s.n_embd = 128;
        check_against_reference(&s, 64, 2, 1e-3);
}

Test(llama, every_weight_type_matches_the_reference_of_its_own_dequantised_weights) {
        static const enum nn_type types[] = { NN_TYPE_F16, NN_TYPE_BF16, NN_TYPE_Q8_0, NN_TYPE_Q4_0,
                                              NN_TYPE_Q4_K, NN_TYPE_Q5_K, NN_TYPE_Q6_K };

        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
                struct tiny_model_spec s = tiny_model_spec_default();

                /* K-quants need rows of 256. */
                s.n_embd = 256;
                s.n_ff = 512;
                s.weight_type = types[i];
                s.embd_type = types[i];
                cr_log_info("type %s", nn_type_name(types[i]));
                check_against_reference(&s, 64, 2, 2e-3);
        }
}

Test(llama, kv_cache_decoding_equals_a_full_recompute) {
        struct tiny_model_spec s = tiny_model_spec_default();
        struct gguf *g = write_and_open(&s, "m.gguf");
        struct nn_backend *be;
        struct llama_model *m;
        struct llama_context *inc, *full;
        const float *l_inc, *l_full;
        char err[512];

        cr_assert_eq(nn_cpu_backend_new(2, &be), 0);
        cr_assert_eq(llama_model_load(g, be, &m, err, sizeof(err)), 0, "%s", err);
        size_t V = llama_model_hparams(m)->n_vocab;
        cr_assert_eq(llama_context_new(m, 64, 64, &inc), 0);
        cr_assert_eq(llama_context_new(m, 64, 64, &full), 0);
        for (size_t i = 0; i < N_PROMPT; i++) {
                cr_assert_eq(llama_eval(inc, prompt + i, 1, false, &l_inc), 0);
                float *copy = malloc(V * sizeof(float));
                memcpy(copy, l_inc, V * sizeof(float));
                llama_context_rewind(full, 0);
                cr_assert_eq(llama_eval(full, prompt, i + 1, false, &l_full), 0);
                for (size_t j = 0; j < V; j++)
                        cr_assert(fabsf(copy[j] - l_full[j]) <= 1e-4f * (1 + fabsf(l_full[j])),
                                  "position %zu token %zu: %g vs %g", i, j, (double) copy[j], (double) l_full[j]);
                free(copy);
        }
        cr_assert_eq(llama_context_pos(inc), N_PROMPT);
        /* Rewinding and going again gives the same logits. */
        llama_context_rewind(inc, 3);
        cr_assert_eq(llama_eval(inc, prompt + 3, 1, false, &l_inc), 0);
        llama_context_free(inc);
        llama_context_free(full);
        llama_model_free(m);
        nn_backend_free(be);
        gguf_close(g);
}

Test(llama, a_full_context_and_bad_tokens_are_refused) {
        struct tiny_model_spec s = tiny_model_spec_default();
        struct gguf *g = write_and_open(&s, "m.gguf");
        struct nn_backend *be;
        struct llama_model *m;
        struct llama_context *c;
        const float *l;
        char err[512];
        int32_t bad = 512;

        cr_assert_eq(nn_cpu_backend_new(1, &be), 0);
        cr_assert_eq(llama_model_load(g, be, &m, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(llama_context_new(m, 8, 16, &c), 0);
        cr_assert_eq(llama_eval(c, &bad, 1, false, &l), -EINVAL);
        cr_assert_eq(llama_eval(c, prompt, 9, false, &l), -ENOSPC);
        cr_assert_eq(llama_eval(c, prompt, 8, false, &l), 0);
        cr_assert_eq(llama_eval(c, prompt, 1, false, &l), -ENOSPC);
        llama_context_free(c);
        llama_model_free(m);
        nn_backend_free(be);
        gguf_close(g);
}

Test(llama, a_tensor_whose_shape_disagrees_with_the_metadata_is_named) {
        struct tiny_model_spec s = tiny_model_spec_default();
        char path[256], err[512];
        struct gguf_writer *w;
        struct gguf *g, *bad;
        struct nn_backend *be;
        struct llama_model *m;

        /* Copy a valid model but claim a wider feed-forward layer. */
        g = write_and_open(&s, "m.gguf");
        w = gguf_writer_new(3);
        for (size_t i = 0; i < gguf_kv_count(g); i++) {
                const struct gguf_kv *kv = gguf_kv_at(g, i);
                char *key = gguf_strdup(kv->key);
                if (strcmp(key, "llama.feed_forward_length") == 0)
                        gguf_writer_set_u32(w, key, s.n_ff * 2);
                else if (kv->type == GGUF_TYPE_STRING) {
                        char *v = gguf_strdup(kv->v.str);
                        gguf_writer_set_string(w, key, v);
                        free(v);
                } else if (kv->type == GGUF_TYPE_ARRAY && kv->v.arr.type == GGUF_TYPE_STRING) {
                        const struct gguf_string *a = kv->v.arr.data;
                        char **v = calloc(kv->v.arr.n, sizeof(char *));
                        for (uint64_t j = 0; j < kv->v.arr.n; j++)
                                v[j] = gguf_strdup(a[j]);
                        gguf_writer_set_string_array(w, key, (const char *const *) v, kv->v.arr.n);
                        for (uint64_t j = 0; j < kv->v.arr.n; j++)
                                free(v[j]);
                        free(v);
                } else if (kv->type == GGUF_TYPE_ARRAY) {
                        size_t es = kv->v.arr.type == GGUF_TYPE_FLOAT32 || kv->v.arr.type == GGUF_TYPE_INT32 ? 4 : 1;
                        void *copy = malloc(kv->v.arr.n * es);
                        memcpy(copy, kv->v.arr.data, kv->v.arr.n * es);
                        gguf_writer_set_array(w, key, kv->v.arr.type, copy, kv->v.arr.n);
                        free(copy);
                } else if (kv->type == GGUF_TYPE_FLOAT32)
                        gguf_writer_set_f32(w, key, (float) kv->v.f64);
                else if (kv->type == GGUF_TYPE_BOOL)
                        gguf_writer_set_bool(w, key, kv->v.u64 != 0);
                else
                        gguf_writer_set_u32(w, key, (uint32_t) kv->v.u64);
                free(key);
        }
        for (size_t i = 0; i < gguf_tensor_count(g); i++) {
                const struct gguf_tensor *t = gguf_tensor_at(g, i);
                char *name = gguf_strdup(t->name);
                cr_assert_eq(gguf_writer_add_tensor(w, name, t->type, t->ndim, t->ne, t->data), 0);
                free(name);
        }
        snprintf(path, sizeof(path), "%s/bad.gguf", dir);
        cr_assert_eq(gguf_writer_write(w, path), 0);
        gguf_writer_free(w);
        cr_assert_eq(gguf_open(path, &bad, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(nn_cpu_backend_new(1, &be), 0);
        cr_assert_eq(llama_model_load(bad, be, &m, err, sizeof(err)), -EBADMSG);
        cr_assert(strstr(err, "blk.0.ffn_gate.weight") && strstr(err, "bad.gguf"), "%s", err);
        nn_backend_free(be);
        gguf_close(bad);
        gguf_close(g);
}

Test(llama, the_same_seed_samples_the_same_tokens) {
        struct sampler_params p = SAMPLER_PARAMS_DEFAULT;
        struct sampler *a, *b;
        float la[600], lb[600];

        p.seed = 42;
        p.temperature = 1.0f;
        p.top_k = 0;
        p.top_p = 1.0f;
        p.min_p = 0;
        cr_assert_eq(sampler_new(&p, 600, &a), 0);
        cr_assert_eq(sampler_new(&p, 600, &b), 0);
        int same = 0;
        for (int i = 0; i < 200; i++) {
                for (int j = 0; j < 600; j++)
                        la[j] = lb[j] = sinf((float) (i * 7 + j));
                int32_t x = sampler_sample(a, la, NULL, 0), y = sampler_sample(b, lb, NULL, 0);
                cr_assert_eq(x, y);
                same += x == 0;
        }
        /* A flat-ish distribution: a draw is not always the same token. */
        cr_assert_lt(same, 200);
        sampler_free(a);
        sampler_free(b);
}

Test(llama, greedy_admits_only_the_argmax_within_the_tolerance) {
        struct sampler_params p = SAMPLER_PARAMS_DEFAULT;
        float l[4] = { 0.0f, 3.0f, 2.9f, -1.0f }, scratch[4];

        p.temperature = 0;
        cr_assert(sampler_admits(&p, l, 4, NULL, 0, 1, 0.0f, scratch));
        cr_assert_not(sampler_admits(&p, l, 4, NULL, 0, 2, 0.05f, scratch));
        cr_assert(sampler_admits(&p, l, 4, NULL, 0, 2, 0.2f, scratch));
        p.temperature = 1.0f;
        p.top_k = 2;
        p.min_p = 0;
        p.top_p = 1;
        cr_assert(sampler_admits(&p, l, 4, NULL, 0, 2, 0.0f, scratch));
        cr_assert_not(sampler_admits(&p, l, 4, NULL, 0, 0, 0.0f, scratch));
}

/* The set top-k → top-p → min-p keeps, computed the plain way: sort
 * everything. */
static int cmp_desc(const void *a, const void *b) {
        float x = *(const float *) a, y = *(const float *) b;
        return x < y ? 1 : x > y ? -1 : 0;
}

static size_t reference_keep(const float *logits, size_t n, const struct sampler_params *p, float *cut) {
        float *l = malloc(n * sizeof(float));
        size_t keep;
        double sum = 0, cum = 0;

        for (size_t i = 0; i < n; i++)
                l[i] = logits[i] / p->temperature;
        qsort(l, n, sizeof(float), cmp_desc);
        keep = p->top_k > 0 && p->top_k < n ? p->top_k : n;
        for (size_t i = 0; i < keep; i++)
                sum += exp((double) l[i] - l[0]);
        for (size_t i = 0; i < keep; i++) {
                double pr = exp((double) l[i] - l[0]);
                if (i > 0 && pr < p->min_p) {
                        keep = i;
                        break;
                }
                cum += pr / sum;
                if (p->top_p < 1 && cum >= p->top_p) {
                        keep = i + 1;
                        break;
                }
        }
        *cut = l[keep - 1] * p->temperature;   /* the smallest logit kept */
        free(l);
        return keep;
}

Test(llama, sampling_draws_only_what_top_k_top_p_and_min_p_keep) {
        static const struct { uint32_t top_k; float top_p, min_p, temp; } cases[] = {
                { 40, 0.95f, 0.05f, 0.8f }, { 0, 0.9f, 0.0f, 1.0f }, { 5, 1.0f, 0.0f, 1.5f },
                { 0, 1.0f, 0.2f, 1.0f }, { 1000, 0.5f, 0.01f, 0.7f },
        };
        size_t n = 5000;
        float *logits = malloc(n * sizeof(float)), *work = malloc(n * sizeof(float));

        for (size_t i = 0; i < n; i++)
                logits[i] = 4.0f * sinf((float) i * 0.37f) + (float) (i % 13) * 0.1f;
        for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
                struct sampler_params p = SAMPLER_PARAMS_DEFAULT;
                float cut;
                size_t drawn_distinct = 0;
                bool *seen = calloc(n, sizeof(bool));

                p.top_k = cases[c].top_k;
                p.top_p = cases[c].top_p;
                p.min_p = cases[c].min_p;
                p.temperature = cases[c].temp;
                size_t keep = reference_keep(logits, n, &p, &cut);
                for (uint64_t seed = 0; seed < 400; seed++) {
                        struct sampler *s;

                        p.seed = seed;
                        cr_assert_eq(sampler_new(&p, n, &s), 0);
                        memcpy(work, logits, n * sizeof(float));
                        int32_t t = sampler_sample(s, work, NULL, 0);
                        cr_assert(logits[t] >= cut, "case %zu: drew token %d (logit %g) below the cut %g", c, t,
                                  (double) logits[t], (double) cut);
                        drawn_distinct += !seen[t];
                        seen[t] = true;
                        sampler_free(s);
                }
                cr_assert_leq(drawn_distinct, keep);
                cr_assert_gt(drawn_distinct, keep > 1 ? 1 : 0, "case %zu: seeds made no difference", c);
                free(seen);
        }
        free(logits);
        free(work);
}

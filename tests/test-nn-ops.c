/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The engine's transformer ops on the CPU backend (linear, layer_norm,
 * attention without a cache, GEGLU, quick GELU, transpose, scale) against
 * plain references in double, on one and two threads, at sizes that cross
 * the backend's internal blocks (64 queries per attention unit, 32 × 32
 * transpose tiles, tokens vs features split in linear). */

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn-backend.h"

TestSuite(nn_ops, .timeout = 60);

static uint64_t rng_state = 1;

static float rnd(void) {
        uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return (float) ((double) ((z ^ (z >> 31)) >> 11) * 0x1p-53 * 2 - 1);
}

static float *random_floats(size_t n, float scale) {
        float *p = malloc((n ?: 1) * sizeof(float));

        cr_assert_not_null(p);
        for (size_t i = 0; i < n; i++)
                p[i] = rnd() * scale;
        return p;
}

/* The CPU backend's memory is host memory, but the tests go through
 * alloc/write/read as a model does. */
static float *to_backend(struct nn_backend *be, const float *host, size_t n) {
        float *d = be->ops->alloc(be, n ?: 1);

        cr_assert_not_null(d);
        if (n)
                be->ops->write(be, d, host, n);
        return d;
}

static void assert_close(const float *got, const double *want, size_t n, double tol, const char *what) {
        for (size_t i = 0; i < n; i++)
                cr_assert(fabs(got[i] - want[i]) <= tol * (1.0 + fabs(want[i])), "%s: element %zu is %.9g, not %.9g",
                          what, i, got[i], want[i]);
}

static void check_linear(unsigned threads, size_t n, size_t in, size_t out, bool bias) {
        struct nn_backend *be;
        float *x = random_floats(n * in, 1), *w = random_floats(out * in, 0.5f), *b = random_floats(out, 1);
        double *want = malloc(n * out * sizeof(double));
        float *got = malloc(n * out * sizeof(float));

        cr_assert_eq(nn_cpu_backend_new(threads, &be), 0);
        for (size_t t = 0; t < n; t++)
                for (size_t o = 0; o < out; o++) {
                        double s = bias ? b[o] : 0;

                        for (size_t i = 0; i < in; i++)
                                s += (double) x[t * in + i] * w[o * in + i];
                        want[t * out + o] = s;
                }
        float *dx = to_backend(be, x, n * in), *dw = to_backend(be, w, out * in), *db = to_backend(be, b, out);
        float *dy = be->ops->alloc(be, n * out);
        be->ops->linear(be, dy, dx, n, in, out, dw, bias ? db : NULL);
        be->ops->read(be, got, dy, n * out);
        assert_close(got, want, n * out, 1e-5, "linear");
        be->ops->release(be, dx);
        be->ops->release(be, dw);
        be->ops->release(be, db);
        be->ops->release(be, dy);
        nn_backend_free(be);
        free(x);
        free(w);
        free(b);
        free(want);
        free(got);
}

Test(nn_ops, linear_matches_a_double_reference_split_by_tokens_or_by_features) {
        for (unsigned threads = 1; threads <= 2; threads++) {
                check_linear(threads, 3, 40, 17, true);         /* few tokens: features split */
                check_linear(threads, 200, 33, 24, true);       /* many tokens: tokens split */
                check_linear(threads, 77, 64, 96, false);
        }
}

Test(nn_ops, layer_norm_normalises_each_row_even_far_from_zero) {
        const size_t n = 5, dim = 300;
        float *x = random_floats(n * dim, 1), *g = random_floats(dim, 1), *b = random_floats(dim, 1);
        float *got = malloc(n * dim * sizeof(float));
        double *want = malloc(n * dim * sizeof(double));
        struct nn_backend *be;

        for (size_t i = 0; i < n * dim; i++)
                x[i] += 1000.0f;        /* cancellation would show in one pass in float */
        for (size_t t = 0; t < n; t++) {
                double mean = 0, var = 0;

                for (size_t i = 0; i < dim; i++)
                        mean += x[t * dim + i];
                mean /= (double) dim;
                for (size_t i = 0; i < dim; i++)
                        var += (x[t * dim + i] - mean) * (x[t * dim + i] - mean);
                var /= (double) dim;
                for (size_t i = 0; i < dim; i++)
                        want[t * dim + i] = (x[t * dim + i] - mean) / sqrt(var + 1e-5) * g[i] + b[i];
        }
        for (unsigned threads = 1; threads <= 2; threads++) {
                cr_assert_eq(nn_cpu_backend_new(threads, &be), 0);
                float *dx = to_backend(be, x, n * dim), *dg = to_backend(be, g, dim), *db = to_backend(be, b, dim);
                be->ops->layer_norm(be, dx, dx, n, dim, dg, db, 1e-5f);        /* in place */
                be->ops->read(be, got, dx, n * dim);
                assert_close(got, want, n * dim, 2e-4, "layer_norm");
                be->ops->release(be, dx);
                be->ops->release(be, dg);
                be->ops->release(be, db);
                nn_backend_free(be);
        }
        free(x);
        free(g);
        free(b);
        free(got);
        free(want);
}

static void reference_attention(const float *q, const float *k, const float *v, size_t n_q, size_t n_kv,
                                size_t heads, size_t hd, bool causal, double *out) {
        double *s = malloc(n_kv * sizeof(double));

        for (size_t h = 0; h < heads; h++)
                for (size_t i = 0; i < n_q; i++) {
                        size_t len = causal && i + 1 < n_kv ? i + 1 : n_kv;
                        double max = -INFINITY, sum = 0;

                        for (size_t j = 0; j < len; j++) {
                                double d = 0;

                                for (size_t e = 0; e < hd; e++)
                                        d += (double) q[(i * heads + h) * hd + e] * k[(j * heads + h) * hd + e];
                                s[j] = d / sqrt((double) hd);
                                max = fmax(max, s[j]);
                        }
                        for (size_t j = 0; j < len; j++)
                                sum += s[j] = exp(s[j] - max);
                        for (size_t e = 0; e < hd; e++) {
                                double o = 0;

                                for (size_t j = 0; j < len; j++)
                                        o += s[j] / sum * v[(j * heads + h) * hd + e];
                                out[(i * heads + h) * hd + e] = o;
                        }
                }
        free(s);
}

static void check_attention(unsigned threads, size_t n_q, size_t n_kv, size_t heads, size_t hd, bool causal) {
        size_t nq = n_q * heads * hd, nkv = n_kv * heads * hd;
        float *q = random_floats(nq, 2), *k = random_floats(nkv, 2), *v = random_floats(nkv, 1);
        float *got = malloc(nq * sizeof(float));
        double *want = malloc(nq * sizeof(double));
        struct nn_backend *be;

        reference_attention(q, k, v, n_q, n_kv, heads, hd, causal, want);
        cr_assert_eq(nn_cpu_backend_new(threads, &be), 0);
        float *dq = to_backend(be, q, nq), *dk = to_backend(be, k, nkv), *dv = to_backend(be, v, nkv);
        float *dout = be->ops->alloc(be, nq);
        be->ops->attention_full(be, dout, dq, dk, dv, n_q, n_kv, heads, hd, causal);
        be->ops->read(be, got, dout, nq);
        assert_close(got, want, nq, 1e-5, causal ? "causal attention" : "attention");
        be->ops->release(be, dq);
        be->ops->release(be, dk);
        be->ops->release(be, dv);
        be->ops->release(be, dout);
        nn_backend_free(be);
        free(q);
        free(k);
        free(v);
        free(got);
        free(want);
}

Test(nn_ops, attention_over_more_queries_than_a_block_matches_the_reference) {
        for (unsigned threads = 1; threads <= 2; threads++) {
                check_attention(threads, 150, 150, 3, 8, false);        /* self-attention, 3 blocks */
                check_attention(threads, 130, 7, 2, 16, false);         /* cross-attention to 7 tokens */
                check_attention(threads, 1, 40, 1, 5, false);
        }
}

Test(nn_ops, causal_attention_sees_only_earlier_tokens) {
        for (unsigned threads = 1; threads <= 2; threads++) {
                check_attention(threads, 77, 77, 4, 8, true);           /* CLIP's 77 tokens */
                check_attention(threads, 130, 130, 1, 4, true);         /* across query blocks */
                check_attention(threads, 90, 20, 2, 4, true);           /* fewer keys: the last see all */
        }
}

Test(nn_ops, geglu_quick_gelu_scale_and_transpose_match_their_definitions) {
        const size_t n = 37, dim = 45;
        float *x = random_floats(n * 2 * dim, 4);
        float *got = malloc(n * 2 * dim * sizeof(float));
        double *want = malloc(n * 2 * dim * sizeof(double));
        struct nn_backend *be;

        cr_assert_eq(nn_cpu_backend_new(2, &be), 0);
        float *dx = to_backend(be, x, n * 2 * dim), *dy = be->ops->alloc(be, n * 2 * dim);

        for (size_t t = 0; t < n; t++)
                for (size_t i = 0; i < dim; i++) {
                        double a = x[t * 2 * dim + i], g = x[t * 2 * dim + dim + i];
                        want[t * dim + i] = a * 0.5 * g * (1 + erf(g / sqrt(2.0)));
                }
        be->ops->geglu(be, dy, dx, n, dim);
        be->ops->read(be, got, dy, n * dim);
        assert_close(got, want, n * dim, 1e-6, "geglu");

        for (size_t i = 0; i < n * 2 * dim; i++)
                want[i] = x[i] / (1 + exp(-1.702 * x[i])) * -0.5;
        be->ops->copy(be, dy, dx, n * 2 * dim);
        be->ops->quick_gelu(be, dy, n * 2 * dim);
        be->ops->scale(be, dy, n * 2 * dim, -0.5f);
        be->ops->read(be, got, dy, n * 2 * dim);
        assert_close(got, want, n * 2 * dim, 1e-6, "quick_gelu then scale");

        /* 37 × 90: neither side a multiple of the 32 × 32 tiles. */
        for (size_t r = 0; r < n; r++)
                for (size_t c = 0; c < 2 * dim; c++)
                        want[c * n + r] = x[r * 2 * dim + c];
        be->ops->transpose(be, dy, dx, n, 2 * dim);
        be->ops->read(be, got, dy, n * 2 * dim);
        assert_close(got, want, n * 2 * dim, 0, "transpose");

        be->ops->release(be, dx);
        be->ops->release(be, dy);
        nn_backend_free(be);
        free(x);
        free(got);
        free(want);
}

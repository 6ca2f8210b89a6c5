/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The CPU backend: activations in ordinary memory, weights read straight
 * from the model's mapping, every op split across the thread pool.  Matrix
 * products go row by row through nn_vec_dot (the SIMD kernels) or, for the
 * quantised types that have one, nn_vec_dot_act against activations
 * quantised to int8 once per call, with each weight row used for every
 * token of the batch while it is in cache, so a decoding step reads each
 * weight once.  A batch (prefill, verification) of f32, f16 or bf16 weights
 * goes to OpenBLAS's sgemm instead, which beats a row of dot products on
 * those types (bench-textgen measures both); the quantised types keep their
 * integer kernels, which beat sgemm on this work. */

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn-backend.h"
#include "nn-pool.h"
#include "nn-quant.h"

struct cpu_backend {
        struct nn_backend base;
        struct nn_pool *pool;
        /* Per-thread scratch for attention scores, grown as contexts grow. */
        float **scores;
        size_t scores_len;
        /* A matmul's activations quantised to int8 (nn_quantize_act), for
         * the weight types with integer dot products; grown on demand. */
        uint8_t *act;
        size_t act_len;
        /* Per-thread rows of f16/bf16 weights widened to f32 for sgemm. */
        float **tiles;
        size_t tile_len;
        /* Per-thread im2col tiles of CONV_TILE_FLOATS, made at the first
         * convolution (textgen's backends never need them). */
        float **cols;
};

/* A convolution's im2col tile per thread: 4 MiB of f32.  bench-conv2d on
 * SD-UNet shapes, 2 threads, GFLOP/s for 2^16 / 2^18 / 2^20 floats:
 * 320×64² 3×3 153 / 174 / 184, 640×32² 137 / 132 / 172, 1280×16² 131 / 135
 * / 113, 1×1 173 / 166 / 192: wider tiles give sgemm wider panels, except
 * where few pixels leave a thread with less to do (1280×16²: 256). */
#define CONV_TILE_FLOATS ((size_t) 1 << 20)
/* Output pixels per tile at least, so that sgemm gets a useful width even
 * where a tile of the im2col rows must be split. */
#define CONV_PIXELS_MIN 32

/* From this many tokens on, f32/f16/bf16 products go through sgemm. */
#define BLAS_MIN_BATCH 8
/* f16/bf16 rows widened per sgemm call, per thread: 256 KiB of f32, so
 * that the tile stays in cache while sgemm reads it. */
#define BLAS_TILE_FLOATS ((size_t) 1 << 16)

static struct cpu_backend *cpu(struct nn_backend *be) {
        return (struct cpu_backend *) be;
}

/* Splits [0, n) into nth near-equal ranges; range ith. */
static void split_range(size_t n, unsigned ith, unsigned nth, size_t *begin, size_t *end) {
        size_t per = n / nth, rem = n % nth;

        *begin = ith * per + (ith < rem ? ith : rem);
        *end = *begin + per + (ith < rem ? 1 : 0);
}

static float *cpu_alloc(struct nn_backend *be, size_t n_floats) {
        void *p = NULL;

        if (n_floats == 0)
                n_floats = 1;
        if (n_floats > SIZE_MAX / sizeof(float) || posix_memalign(&p, 64, n_floats * sizeof(float)) != 0)
                return NULL;
        memset(p, 0, n_floats * sizeof(float));
        return p;
}

static void cpu_release(struct nn_backend *be, float *p) {
        free(p);
}

static int cpu_upload(struct nn_backend *be, struct nn_weight *w) {
        /* The CPU computes from the mapping itself. */
        w->device = NULL;
        return 0;
}

static void cpu_write(struct nn_backend *be, float *dst, const float *host, size_t n) {
        memcpy(dst, host, n * sizeof(float));
}

static void cpu_copy(struct nn_backend *be, float *dst, const float *src, size_t n) {
        memmove(dst, src, n * sizeof(float));
}

static const uint8_t *weight_row(const struct nn_weight *w, uint64_t r) {
        return (const uint8_t *) w->data + (size_t) r * nn_row_bytes(w->type, w->cols);
}

static void cpu_get_rows(struct nn_backend *be, const struct nn_weight *w, const int32_t *ids, size_t n,
                         float *out) {
        for (size_t i = 0; i < n; i++)
                nn_dequantize_row(w->type, weight_row(w, (uint64_t) ids[i]), out + i * w->cols, w->cols);
}

struct matmul_task {
        const struct nn_weight *w;
        const float *x;
        size_t n;
        float *y;
        /* Non-NULL when the weights dot with int8 activations: token i's
         * quantised x at xq + i·xq_stride. */
        uint8_t *xq;
        size_t xq_stride;
};

/* Rows are handed out in blocks of this many so that each thread streams a
 * contiguous stretch of the weights. */
#define MATMUL_ROW_BLOCK 16

static void matmul_worker(void *arg, unsigned ith, unsigned nth) {
        const struct matmul_task *t = arg;
        const struct nn_weight *w = t->w;
        size_t n_blocks = (w->rows + MATMUL_ROW_BLOCK - 1) / MATMUL_ROW_BLOCK;
        size_t b0, b1;

        split_range(n_blocks, ith, nth, &b0, &b1);
        for (size_t r = b0 * MATMUL_ROW_BLOCK; r < b1 * MATMUL_ROW_BLOCK && r < w->rows; r++) {
                const uint8_t *row = weight_row(w, r);

                if (t->xq)
                        for (size_t i = 0; i < t->n; i++)
                                t->y[i * w->rows + r] = nn_vec_dot_act(w->type, row, t->xq + i * t->xq_stride, w->cols);
                else
                        for (size_t i = 0; i < t->n; i++)
                                t->y[i * w->rows + r] = nn_vec_dot(w->type, row, t->x + i * w->cols, w->cols);
        }
}

static void quantize_worker(void *arg, unsigned ith, unsigned nth) {
        const struct matmul_task *t = arg;
        size_t i0, i1;

        split_range(t->n, ith, nth, &i0, &i1);
        for (size_t i = i0; i < i1; i++)
                nn_quantize_act(t->w->type, t->x + i * t->w->cols, t->xq + i * t->xq_stride, t->w->cols);
}

struct blas_task {
        struct cpu_backend *c;
        const struct nn_weight *w;
        const float *x;
        size_t n;
        float *y;
};

/* Each pool thread multiplies its own stretch of rows with a
 * single-threaded sgemm: y[n][r0..r1) = x[n][cols] · W[r0..r1)ᵀ (OpenBLAS's
 * own threads would fight ours for the same cores).  f32 rows are used in
 * place; f16/bf16 rows are widened into the thread's tile first. */
static void blas_worker(void *arg, unsigned ith, unsigned nth) {
        const struct blas_task *t = arg;
        const struct nn_weight *w = t->w;
        size_t cols = w->cols, r0, r1;

        split_range(w->rows, ith, nth, &r0, &r1);
        if (r0 == r1)
                return;
        if (w->type == NN_TYPE_F32) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) t->n, (int) (r1 - r0), (int) cols, 1.0f,
                            t->x, (int) cols, (const float *) w->data + r0 * cols, (int) cols, 0.0f, t->y + r0,
                            (int) w->rows);
                return;
        }
        size_t tile_rows = t->c->tile_len / cols;
        float *tile = t->c->tiles[ith];
        for (size_t a = r0; a < r1; a += tile_rows) {
                size_t m = r1 - a < tile_rows ? r1 - a : tile_rows;

                for (size_t i = 0; i < m; i++)
                        nn_dequantize_row(w->type, weight_row(w, a + i), tile + i * cols, cols);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) t->n, (int) m, (int) cols, 1.0f, t->x,
                            (int) cols, tile, (int) cols, 0.0f, t->y + a, (int) w->rows);
        }
}

static void blas_matmul(struct cpu_backend *c, const struct nn_weight *w, const float *x, size_t n, float *y) {
        struct blas_task t = { .c = c, .w = w, .x = x, .n = n, .y = y };

        if (w->type != NN_TYPE_F32) {
                size_t need = (BLAS_TILE_FLOATS / w->cols ?: 1) * w->cols;

                if (need > c->tile_len) {
                        /* As for the attention scores: ops cannot fail. */
                        for (unsigned i = 0; i < nn_pool_threads(c->pool); i++) {
                                float *p = realloc(c->tiles[i], need * sizeof(float));
                                if (!p)
                                        abort();
                                c->tiles[i] = p;
                        }
                        c->tile_len = need;
                }
        }
        nn_pool_run(c->pool, blas_worker, &t);
}

static void cpu_matmul(struct nn_backend *be, const struct nn_weight *w, const float *x, size_t n, float *y) {
        struct cpu_backend *c = cpu(be);
        struct matmul_task t = { .w = w, .x = x, .n = n, .y = y };

        if (n >= BLAS_MIN_BATCH &&
            (w->type == NN_TYPE_F32 || w->type == NN_TYPE_F16 || w->type == NN_TYPE_BF16)) {
                blas_matmul(c, w, x, n, y);
                return;
        }

        if (nn_type_int8_dot(w->type)) {
                /* Each token's x is quantised once here rather than once
                 * per row. */
                size_t stride = nn_act_bytes(w->type, w->cols);

                if (stride == 0 || n > SIZE_MAX / stride)
                        abort();
                if (n * stride > c->act_len) {
                        /* As for the attention scores: ops cannot fail. */
                        uint8_t *p = realloc(c->act, n * stride);
                        if (!p)
                                abort();
                        c->act = p;
                        c->act_len = n * stride;
                }
                t.xq = c->act;
                t.xq_stride = stride;
                if (n == 1)
                        nn_quantize_act(w->type, x, t.xq, w->cols);
                else
                        nn_pool_run(c->pool, quantize_worker, &t);
        }
        nn_pool_run(c->pool, matmul_worker, &t);
}

static void cpu_add_bias(struct nn_backend *be, float *y, const struct nn_weight *bias, size_t n) {
        const float *b = bias->data;
        size_t dim = bias->cols;

        for (size_t t = 0; t < n; t++)
                for (size_t i = 0; i < dim; i++)
                        y[t * dim + i] += b[i];
}

static void cpu_rmsnorm(struct nn_backend *be, float *y, const float *x, const struct nn_weight *gain,
                        size_t n, float eps) {
        const float *g = gain->data;
        size_t dim = gain->cols;

        for (size_t t = 0; t < n; t++) {
                const float *xt = x + t * dim;
                float *yt = y + t * dim;
                double ss = 0;

                for (size_t i = 0; i < dim; i++)
                        ss += (double) xt[i] * xt[i];
                float scale = (float) (1.0 / sqrt(ss / (double) dim + eps));
                for (size_t i = 0; i < dim; i++)
                        yt[i] = xt[i] * scale * g[i];
        }
}

static void cpu_rope(struct nn_backend *be, float *x, size_t n, size_t n_heads, size_t head_dim,
                     const int32_t *pos, const struct nn_rope *rope) {
        size_t half = rope->rot_dim / 2;

        for (size_t t = 0; t < n; t++) {
                double p = (double) pos[t] * rope->pos_scale;

                for (size_t i = 0; i < half; i++) {
                        double theta = pow(rope->freq_base, -2.0 * (double) i / (double) rope->rot_dim);
                        if (rope->freq_factors)
                                theta /= rope->freq_factors[i];
                        float c = (float) cos(p * theta), s = (float) sin(p * theta);

                        for (size_t h = 0; h < n_heads; h++) {
                                float *v = x + (t * n_heads + h) * head_dim;
                                size_t a = rope->neox ? i : 2 * i;
                                size_t b = rope->neox ? i + half : 2 * i + 1;
                                float x0 = v[a], x1 = v[b];

                                v[a] = x0 * c - x1 * s;
                                v[b] = x0 * s + x1 * c;
                        }
                }
        }
}

struct attention_task {
        struct cpu_backend *be;
        float *out;
        const float *q, *k, *v;
        size_t pos0, n, n_heads, n_kv_heads, head_dim;
};

static void attention_worker(void *arg, unsigned ith, unsigned nth) {
        const struct attention_task *t = arg;
        size_t hd = t->head_dim, kv_stride = t->n_kv_heads * hd;
        size_t group = t->n_heads / t->n_kv_heads;
        float scale = 1.0f / sqrtf((float) hd);
        float *scores = t->be->scores[ith];
        size_t j0, j1;

        /* One unit of work is one (token, head) pair. */
        split_range(t->n * t->n_heads, ith, nth, &j0, &j1);
        for (size_t j = j0; j < j1; j++) {
                size_t tok = j / t->n_heads, h = j % t->n_heads, kvh = h / group;
                size_t len = t->pos0 + tok + 1;         /* causal: up to and including itself */
                const float *q = t->q + (tok * t->n_heads + h) * hd;
                float *o = t->out + (tok * t->n_heads + h) * hd;
                float max = -INFINITY, sum = 0;

                for (size_t p = 0; p < len; p++) {
                        const float *k = t->k + p * kv_stride + kvh * hd;
                        /* The SIMD dot: a plain loop here is a serial chain
                         * of additions (no reassociation without
                         * -ffast-math), and attention is a real share of a
                         * decoding step once the context grows. */
                        float d = nn_vec_dot(NN_TYPE_F32, k, q, hd);

                        scores[p] = d * scale;
                        if (scores[p] > max)
                                max = scores[p];
                }
                for (size_t p = 0; p < len; p++) {
                        scores[p] = expf(scores[p] - max);
                        sum += scores[p];
                }
                memset(o, 0, hd * sizeof(float));
                for (size_t p = 0; p < len; p++) {
                        const float *vv = t->v + p * kv_stride + kvh * hd;
                        float a = scores[p] / sum;

                        for (size_t i = 0; i < hd; i++)
                                o[i] += a * vv[i];
                }
        }
}

static void cpu_attention(struct nn_backend *be, float *out, const float *q, const float *k_cache,
                          const float *v_cache, size_t pos0, size_t n, size_t n_heads, size_t n_kv_heads,
                          size_t head_dim) {
        struct cpu_backend *c = cpu(be);
        size_t need = pos0 + n;
        unsigned nth = nn_pool_threads(c->pool);

        if (need > c->scores_len) {
                /* Grown before the loop: the ops cannot fail, so a failed
                 * allocation here is fatal like any other out-of-memory in a
                 * computation that already started. */
                for (unsigned i = 0; i < nth; i++) {
                        float *s = realloc(c->scores[i], need * sizeof(float));
                        if (!s)
                                abort();
                        c->scores[i] = s;
                }
                c->scores_len = need;
        }

        struct attention_task t = {
                .be = c, .out = out, .q = q, .k = k_cache, .v = v_cache,
                .pos0 = pos0, .n = n, .n_heads = n_heads, .n_kv_heads = n_kv_heads, .head_dim = head_dim,
        };
        nn_pool_run(c->pool, attention_worker, &t);
}

static void cpu_silu_mul(struct nn_backend *be, float *gate, const float *up, size_t n) {
        for (size_t i = 0; i < n; i++)
                gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

static void cpu_add(struct nn_backend *be, float *y, const float *x, size_t n) {
        for (size_t i = 0; i < n; i++)
                y[i] += x[i];
}

/* ---- Convolutional ops ---- */

struct conv_task {
        const struct nn_conv2d *p;
        float **cols;
        const float *x, *w, *bias;
        float *y;
        uint64_t pixels;        /* oh · ow */
        uint64_t dot_len;       /* c/groups · r · s */
        uint64_t tile;          /* output pixels per unit */
        uint64_t tiles;         /* units per (image, group) */
        uint64_t units;         /* n · groups · tiles */
};

static float silu(float v) {
        return v / (1.0f + expf(-v));
}

/* One unit: output pixels [p0, p1) of every output channel of one group of
 * one image, = W_g [k/groups][dot_len] · im2col [dot_len][p1 − p0], in
 * slices of the im2col rows that fit the thread's tile (all of them at
 * once unless dot_len is very long). */
static void conv_unit(const struct conv_task *t, uint64_t u, float *col) {
        const struct nn_conv2d *p = t->p;
        const uint64_t kg = p->k / p->groups, cg = p->c / p->groups;
        uint64_t image = u / ((uint64_t) p->groups * t->tiles), group = (u / t->tiles) % p->groups;
        uint64_t p0 = (u % t->tiles) * t->tile, p1 = p0 + t->tile < t->pixels ? p0 + t->tile : t->pixels;
        uint64_t np = p1 - p0;
        const float *wg = t->w + group * kg * t->dot_len;
        float *yg = t->y + (image * p->k + group * kg) * t->pixels;

        if (nn_conv2d_is_pointwise(p)) {
                /* im2col of a 1×1 stride-1 unpadded convolution is x. */
                const float *xg = t->x + (image * p->c + group * cg) * t->pixels;

                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) kg, (int) np, (int) cg, 1.0f,
                            wg, (int) t->dot_len, xg + p0, (int) t->pixels, 0.0f, yg + p0, (int) t->pixels);
        } else {
                uint64_t rows = CONV_TILE_FLOATS / np;

                if (rows > t->dot_len)
                        rows = t->dot_len;
                for (uint64_t q0 = 0; q0 < t->dot_len; q0 += rows) {
                        uint64_t q1 = q0 + rows < t->dot_len ? q0 + rows : t->dot_len;

                        nn_conv2d_im2col(p, t->x, (uint32_t) image, (uint32_t) group, q0, q1, p0, p1, col, np,
                                         false);
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) kg, (int) np, (int) (q1 - q0),
                                    1.0f, wg + q0, (int) t->dot_len, col, (int) np, q0 == 0 ? 0.0f : 1.0f,
                                    yg + p0, (int) t->pixels);
                }
        }

        if (!t->bias && p->act == NN_ACT_NONE)
                return;
        for (uint64_t k = 0; k < kg; k++) {
                float b = t->bias ? t->bias[group * kg + k] : 0.0f, *yk = yg + k * t->pixels;

                if (p->act == NN_ACT_SILU)
                        for (uint64_t i = p0; i < p1; i++)
                                yk[i] = silu(yk[i] + b);
                else
                        for (uint64_t i = p0; i < p1; i++)
                                yk[i] += b;
        }
}

static void conv_worker(void *arg, unsigned ith, unsigned nth) {
        const struct conv_task *t = arg;
        size_t u0, u1;

        split_range(t->units, ith, nth, &u0, &u1);
        for (size_t u = u0; u < u1; u++)
                conv_unit(t, u, t->cols[ith]);
}

static void cpu_conv2d(struct nn_backend *be, const struct nn_conv2d *p, const float *x, const float *w,
                       const float *bias, float *y) {
        struct cpu_backend *c = cpu(be);
        unsigned nth = nn_pool_threads(c->pool);

        /* As for the attention scores: ops cannot fail. */
        for (unsigned i = 0; i < nth; i++)
                if (!c->cols[i] && !(c->cols[i] = malloc(CONV_TILE_FLOATS * sizeof(float))))
                        abort();
        struct conv_task t = {
                .p = p, .cols = c->cols, .x = x, .w = w, .bias = bias, .y = y,
                .pixels = (uint64_t) nn_conv2d_out_h(p) * nn_conv2d_out_w(p),
                .dot_len = nn_conv2d_dot_len(p),
        };

        /* As wide a tile as holds all the im2col rows, but no narrower than
         * CONV_PIXELS_MIN, and narrow enough that every thread gets work. */
        t.tile = CONV_TILE_FLOATS / t.dot_len;
        if (t.tile < CONV_PIXELS_MIN)
                t.tile = CONV_PIXELS_MIN;
        if ((uint64_t) p->n * p->groups < nth && t.tile > (t.pixels + nth - 1) / nth)
                t.tile = (t.pixels + nth - 1) / nth;
        if (t.tile > t.pixels)
                t.tile = t.pixels;
        if (t.tile == 0)
                t.tile = 1;
        t.tiles = (t.pixels + t.tile - 1) / t.tile;
        t.units = (uint64_t) p->n * p->groups * t.tiles;
        nn_pool_run(c->pool, conv_worker, &t);
}

struct group_norm_task {
        float *y;
        const float *x, *gamma, *beta;
        size_t c, hw, groups;
        float eps;
        bool silu;
        size_t units;
};

static void group_norm_worker(void *arg, unsigned ith, unsigned nth) {
        const struct group_norm_task *t = arg;
        size_t cg = t->c / t->groups, len = cg * t->hw, u0, u1;

        split_range(t->units, ith, nth, &u0, &u1);
        for (size_t u = u0; u < u1; u++) {
                const float *xg = t->x + u * len;
                float *yg = t->y + u * len;
                size_t c0 = (u % t->groups) * cg;
                double sum = 0, var = 0;
                float mean, inv;

                /* Two passes in double: the variance of values far from 0
                 * loses nothing to cancellation. */
                for (size_t i = 0; i < len; i++)
                        sum += xg[i];
                mean = (float) (sum / (double) len);
                for (size_t i = 0; i < len; i++)
                        var += ((double) xg[i] - mean) * ((double) xg[i] - mean);
                inv = (float) (1.0 / sqrt(var / (double) len + t->eps));
                for (size_t ci = 0; ci < cg; ci++) {
                        float g = t->gamma ? t->gamma[c0 + ci] : 1.0f, b = t->beta ? t->beta[c0 + ci] : 0.0f;

                        for (size_t i = ci * t->hw; i < (ci + 1) * t->hw; i++) {
                                float v = (xg[i] - mean) * inv * g + b;

                                yg[i] = t->silu ? silu(v) : v;
                        }
                }
        }
}

static void cpu_group_norm(struct nn_backend *be, float *y, const float *x, size_t n, size_t c, size_t hw,
                           size_t groups, const float *gamma, const float *beta, float eps, bool silu_after) {
        struct group_norm_task t = {
                .y = y, .x = x, .gamma = gamma, .beta = beta, .c = c, .hw = hw, .groups = groups, .eps = eps,
                .silu = silu_after, .units = n * groups,
        };

        if (t.units == 0 || hw == 0)
                return;
        nn_pool_run(cpu(be)->pool, group_norm_worker, &t);
}

struct upsample_task {
        float *y;
        const float *x;
        size_t planes, h, w;
};

static void upsample_worker(void *arg, unsigned ith, unsigned nth) {
        const struct upsample_task *t = arg;
        size_t p0, p1;

        split_range(t->planes, ith, nth, &p0, &p1);
        for (size_t pl = p0; pl < p1; pl++)
                for (size_t i = 0; i < 2 * t->h; i++) {
                        const float *xr = t->x + (pl * t->h + i / 2) * t->w;
                        float *yr = t->y + (pl * 2 * t->h + i) * 2 * t->w;

                        for (size_t j = 0; j < 2 * t->w; j++)
                                yr[j] = xr[j / 2];
                }
}

static void cpu_upsample2x(struct nn_backend *be, float *y, const float *x, size_t planes, size_t h, size_t w) {
        struct upsample_task t = { .y = y, .x = x, .planes = planes, .h = h, .w = w };

        nn_pool_run(cpu(be)->pool, upsample_worker, &t);
}

/* ---- Transformer ops ---- */

/* Rows of queries per unit of attention_full: the unit's scores are
 * ATTN_QBLOCK × n_kv floats (1 MiB at SD's 4,096 latent pixels). */
#define ATTN_QBLOCK 64

/* Tokens per unit of linear: enough width for sgemm's panels. */
#define LINEAR_ROWS 64

struct linear_task {
        float *y;
        const float *x, *w, *bias;
        size_t n, in, out;
};

/* Units are blocks of tokens when there are enough of them, otherwise
 * stretches of output features, each one single-threaded sgemm. */
static void linear_worker(void *arg, unsigned ith, unsigned nth) {
        const struct linear_task *t = arg;
        size_t a, b;

        if (t->n >= (size_t) nth * LINEAR_ROWS / 2) {
                split_range(t->n, ith, nth, &a, &b);
                if (a == b)
                        return;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) (b - a), (int) t->out, (int) t->in,
                            1.0f, t->x + a * t->in, (int) t->in, t->w, (int) t->in, 0.0f, t->y + a * t->out,
                            (int) t->out);
                if (t->bias)
                        for (size_t r = a; r < b; r++)
                                for (size_t i = 0; i < t->out; i++)
                                        t->y[r * t->out + i] += t->bias[i];
        } else {
                split_range(t->out, ith, nth, &a, &b);
                if (a == b)
                        return;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) t->n, (int) (b - a), (int) t->in,
                            1.0f, t->x, (int) t->in, t->w + a * t->in, (int) t->in, 0.0f, t->y + a,
                            (int) t->out);
                if (t->bias)
                        for (size_t r = 0; r < t->n; r++)
                                for (size_t i = a; i < b; i++)
                                        t->y[r * t->out + i] += t->bias[i];
        }
}

static void cpu_linear(struct nn_backend *be, float *y, const float *x, size_t n, size_t in, size_t out,
                       const float *w, const float *bias) {
        struct linear_task t = { .y = y, .x = x, .w = w, .bias = bias, .n = n, .in = in, .out = out };

        if (n == 0 || out == 0)
                return;
        if (in == 0) {
                for (size_t r = 0; r < n; r++)
                        for (size_t i = 0; i < out; i++)
                                y[r * out + i] = bias ? bias[i] : 0.0f;
                return;
        }
        nn_pool_run(cpu(be)->pool, linear_worker, &t);
}

struct layer_norm_task {
        float *y;
        const float *x, *gamma, *beta;
        size_t n, dim;
        float eps;
};

static void layer_norm_worker(void *arg, unsigned ith, unsigned nth) {
        const struct layer_norm_task *t = arg;
        size_t r0, r1;

        split_range(t->n, ith, nth, &r0, &r1);
        for (size_t r = r0; r < r1; r++) {
                const float *xr = t->x + r * t->dim;
                float *yr = t->y + r * t->dim;
                double sum = 0, var = 0;
                float mean, inv;

                /* Two passes in double, as group_norm. */
                for (size_t i = 0; i < t->dim; i++)
                        sum += xr[i];
                mean = (float) (sum / (double) t->dim);
                for (size_t i = 0; i < t->dim; i++)
                        var += ((double) xr[i] - mean) * ((double) xr[i] - mean);
                inv = (float) (1.0 / sqrt(var / (double) t->dim + t->eps));
                for (size_t i = 0; i < t->dim; i++)
                        yr[i] = (xr[i] - mean) * inv * t->gamma[i] + t->beta[i];
        }
}

static void cpu_layer_norm(struct nn_backend *be, float *y, const float *x, size_t n, size_t dim,
                           const float *gamma, const float *beta, float eps) {
        struct layer_norm_task t = { .y = y, .x = x, .gamma = gamma, .beta = beta, .n = n, .dim = dim, .eps = eps };

        if (n == 0 || dim == 0)
                return;
        nn_pool_run(cpu(be)->pool, layer_norm_worker, &t);
}

struct attention_full_task {
        struct cpu_backend *be;
        float *out;
        const float *q, *k, *v;
        size_t n_q, n_kv, n_heads, head_dim, blocks;
        bool causal;
};

/* A unit is (head, block of ATTN_QBLOCK queries): the block's scores by
 * one sgemm against all keys, a softmax per row, and the block's outputs
 * by a second sgemm against the values. */
static void attention_full_worker(void *arg, unsigned ith, unsigned nth) {
        const struct attention_full_task *t = arg;
        size_t hd = t->head_dim, stride = t->n_heads * hd, u0, u1;
        float scale = 1.0f / sqrtf((float) hd);
        float *s = t->be->scores[ith];

        split_range(t->n_heads * t->blocks, ith, nth, &u0, &u1);
        for (size_t u = u0; u < u1; u++) {
                size_t h = u / t->blocks, q0 = (u % t->blocks) * ATTN_QBLOCK;
                size_t m = t->n_q - q0 < ATTN_QBLOCK ? t->n_q - q0 : ATTN_QBLOCK;
                /* Causal with fewer keys than queries: the last ones
                 * see them all. */
                size_t keys = t->causal && q0 + m < t->n_kv ? q0 + m : t->n_kv;

                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) m, (int) keys, (int) hd, scale,
                            t->q + q0 * stride + h * hd, (int) stride, t->k + h * hd, (int) stride, 0.0f, s,
                            (int) keys);
                for (size_t i = 0; i < m; i++) {
                        float *row = s + i * keys, max = -INFINITY, sum = 0;
                        size_t len = t->causal && q0 + i + 1 < keys ? q0 + i + 1 : keys;

                        for (size_t j = 0; j < len; j++)
                                if (row[j] > max)
                                        max = row[j];
                        for (size_t j = 0; j < len; j++) {
                                row[j] = expf(row[j] - max);
                                sum += row[j];
                        }
                        for (size_t j = 0; j < len; j++)
                                row[j] /= sum;
                        for (size_t j = len; j < keys; j++)
                                row[j] = 0;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) m, (int) hd, (int) keys, 1.0f, s,
                            (int) keys, t->v + h * hd, (int) stride, 0.0f, t->out + q0 * stride + h * hd,
                            (int) stride);
        }
}

static void cpu_attention_full(struct nn_backend *be, float *out, const float *q, const float *k, const float *v,
                               size_t n_q, size_t n_kv, size_t n_heads, size_t head_dim, bool causal) {
        struct cpu_backend *c = cpu(be);
        size_t need = ATTN_QBLOCK * n_kv;

        if (n_q == 0 || n_heads == 0 || head_dim == 0)
                return;
        if (n_kv == 0) {
                memset(out, 0, n_q * n_heads * head_dim * sizeof(float));
                return;
        }
        if (need > c->scores_len) {
                /* As in cpu_attention: the ops cannot fail. */
                for (unsigned i = 0; i < nn_pool_threads(c->pool); i++) {
                        float *p = realloc(c->scores[i], need * sizeof(float));
                        if (!p)
                                abort();
                        c->scores[i] = p;
                }
                c->scores_len = need;
        }

        struct attention_full_task t = {
                .be = c, .out = out, .q = q, .k = k, .v = v, .n_q = n_q, .n_kv = n_kv, .n_heads = n_heads,
                .head_dim = head_dim, .blocks = (n_q + ATTN_QBLOCK - 1) / ATTN_QBLOCK, .causal = causal,
        };
        nn_pool_run(c->pool, attention_full_worker, &t);
}

struct elementwise_task {
        float *y;
        const float *x;
        size_t n, dim;
        float a;
};

static void geglu_worker(void *arg, unsigned ith, unsigned nth) {
        const struct elementwise_task *t = arg;
        size_t r0, r1;

        split_range(t->n, ith, nth, &r0, &r1);
        for (size_t r = r0; r < r1; r++) {
                const float *xr = t->x + r * 2 * t->dim, *gate = xr + t->dim;
                float *yr = t->y + r * t->dim;

                for (size_t i = 0; i < t->dim; i++)
                        yr[i] = xr[i] * (0.5f * gate[i] * (1.0f + erff(gate[i] * (float) M_SQRT1_2)));
        }
}

static void cpu_geglu(struct nn_backend *be, float *y, const float *x, size_t n, size_t dim) {
        struct elementwise_task t = { .y = y, .x = x, .n = n, .dim = dim };

        if (n == 0 || dim == 0)
                return;
        nn_pool_run(cpu(be)->pool, geglu_worker, &t);
}

static void quick_gelu_worker(void *arg, unsigned ith, unsigned nth) {
        const struct elementwise_task *t = arg;
        size_t i0, i1;

        split_range(t->n, ith, nth, &i0, &i1);
        for (size_t i = i0; i < i1; i++)
                t->y[i] = t->y[i] / (1.0f + expf(-1.702f * t->y[i]));
}

static void cpu_quick_gelu(struct nn_backend *be, float *x, size_t n) {
        struct elementwise_task t = { .y = x, .n = n };

        if (n == 0)
                return;
        nn_pool_run(cpu(be)->pool, quick_gelu_worker, &t);
}

/* Tiles of 32 × 32, so that both the rows read and the rows written stay
 * in cache. */
#define TRANSPOSE_TILE 32

static void transpose_worker(void *arg, unsigned ith, unsigned nth) {
        const struct elementwise_task *t = arg;
        size_t rows = t->n, cols = t->dim, b0, b1;

        split_range((rows + TRANSPOSE_TILE - 1) / TRANSPOSE_TILE, ith, nth, &b0, &b1);
        for (size_t r0 = b0 * TRANSPOSE_TILE; r0 < rows && r0 < b1 * TRANSPOSE_TILE; r0 += TRANSPOSE_TILE)
                for (size_t c0 = 0; c0 < cols; c0 += TRANSPOSE_TILE) {
                        size_t r1 = r0 + TRANSPOSE_TILE < rows ? r0 + TRANSPOSE_TILE : rows;
                        size_t c1 = c0 + TRANSPOSE_TILE < cols ? c0 + TRANSPOSE_TILE : cols;

                        for (size_t r = r0; r < r1; r++)
                                for (size_t c = c0; c < c1; c++)
                                        t->y[c * rows + r] = t->x[r * cols + c];
                }
}

static void cpu_transpose(struct nn_backend *be, float *y, const float *x, size_t rows, size_t cols) {
        struct elementwise_task t = { .y = y, .x = x, .n = rows, .dim = cols };

        if (rows == 0 || cols == 0)
                return;
        nn_pool_run(cpu(be)->pool, transpose_worker, &t);
}

static void cpu_scale(struct nn_backend *be, float *x, size_t n, float a) {
        for (size_t i = 0; i < n; i++)
                x[i] *= a;
}

static const char *cpu_libraries(struct nn_backend *be) {
        return openblas_get_config();
}

static int cpu_status(struct nn_backend *be) {
        return 0;
}

static void cpu_free(struct nn_backend *be) {
        struct cpu_backend *c = cpu(be);

        if (c->scores)
                for (unsigned i = 0; i < nn_pool_threads(c->pool); i++)
                        free(c->scores[i]);
        free(c->scores);
        free(c->act);
        if (c->tiles)
                for (unsigned i = 0; i < nn_pool_threads(c->pool); i++)
                        free(c->tiles[i]);
        free(c->tiles);
        if (c->cols)
                for (unsigned i = 0; i < nn_pool_threads(c->pool); i++)
                        free(c->cols[i]);
        free(c->cols);
        nn_pool_free(c->pool);
        free(c);
}

static const struct nn_backend_ops cpu_ops = {
        .name = "cpu",
        .free = cpu_free,
        .alloc = cpu_alloc,
        .release = cpu_release,
        .upload = cpu_upload,
        .write = cpu_write,
        .read = cpu_write,
        .get_rows = cpu_get_rows,
        .matmul = cpu_matmul,
        .add_bias = cpu_add_bias,
        .rmsnorm = cpu_rmsnorm,
        .rope = cpu_rope,
        .attention = cpu_attention,
        .silu_mul = cpu_silu_mul,
        .add = cpu_add,
        .copy = cpu_copy,
        .conv2d = cpu_conv2d,
        .group_norm = cpu_group_norm,
        .upsample2x = cpu_upsample2x,
        .linear = cpu_linear,
        .layer_norm = cpu_layer_norm,
        .attention_full = cpu_attention_full,
        .geglu = cpu_geglu,
        .quick_gelu = cpu_quick_gelu,
        .transpose = cpu_transpose,
        .scale = cpu_scale,
        .libraries = cpu_libraries,
        .status = cpu_status,
};

int nn_cpu_backend_new(unsigned n_threads, struct nn_backend **ret) {
        struct cpu_backend *c;

        if (n_threads == 0) {
                long n = sysconf(_SC_NPROCESSORS_ONLN);
                n_threads = n > 0 ? (unsigned) n : 1;
        }
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->base.ops = &cpu_ops;
        c->pool = nn_pool_new(n_threads);
        if (!c->pool) {
                int r = -errno;
                free(c);
                return r;
        }
        c->scores = calloc(n_threads, sizeof(float *));
        c->tiles = calloc(n_threads, sizeof(float *));
        c->cols = calloc(n_threads, sizeof(float *));
        if (!c->scores || !c->tiles || !c->cols) {
                cpu_free(&c->base);
                return -ENOMEM;
        }
        /* Each pool thread calls sgemm on its own rows (blas_worker). */
        openblas_set_num_threads(1);
        *ret = &c->base;
        return 0;
}

unsigned nn_cpu_backend_threads(const struct nn_backend *be) {
        return nn_pool_threads(((const struct cpu_backend *) be)->pool);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Stable Diffusion's UNet blocks on the engine (plugins/imagegen/
 * sd-blocks.c) against a plain reference in double: the timestep
 * embedding, a ResBlock with and without its skip convolution (weights read
 * from a real safetensors file, in F16 as checkpoints hold them), and the
 * Downsample and Upsample blocks. */

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn-backend.h"
#include "nn-type.h"
#include "safetensors.h"
#include "sd-blocks.h"

static char dir[] = "/tmp/test-sd-blocks-XXXXXX";
static uint64_t rng_state;

static void setup(void) {
        cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        (void) system(cmd);
}

TestSuite(sd_blocks, .init = setup, .fini = teardown, .timeout = 120);

static double rng_uniform(void) {
        uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return (double) ((z ^ (z >> 31)) >> 11) * 0x1p-53 * 2 - 1;
}

/* Random values rounded through f16, as the reference must see what the
 * file holds: n values in out (f32) and as f16 in half. */
static void random_f16(size_t n, double scale, float *out, uint16_t *half) {
        for (size_t i = 0; i < n; i++) {
                half[i] = nn_f32_to_fp16((float) (rng_uniform() * scale));
                out[i] = nn_fp16_to_f32(half[i]);
        }
}

struct ref_tensor {
        const char *name;
        uint32_t ndim;
        uint64_t shape[4];
        double scale, fill;     /* fill when scale is 0 */
        float *values;
};

/* ---- The reference ---- */

static void ref_group_norm_silu(const double *x, size_t c, size_t hw, const float *g, const float *b, double *y) {
        size_t cg = c / 32;

        for (size_t grp = 0; grp < 32; grp++) {
                double mean = 0, var = 0;

                for (size_t i = grp * cg * hw; i < (grp + 1) * cg * hw; i++)
                        mean += x[i];
                mean /= (double) (cg * hw);
                for (size_t i = grp * cg * hw; i < (grp + 1) * cg * hw; i++)
                        var += (x[i] - mean) * (x[i] - mean);
                var /= (double) (cg * hw);
                for (size_t i = grp * cg * hw; i < (grp + 1) * cg * hw; i++) {
                        size_t ch = i / hw;
                        double v = (x[i] - mean) / sqrt(var + 1e-5) * g[ch] + b[ch];

                        y[i] = v / (1 + exp(-v));
                }
        }
}

/* y[k] = conv(x, w) + bias[k], NCHW with N = 1, r×r kernel, padding r/2. */
static void ref_conv(const double *x, size_t c, size_t h, size_t w, const float *wt, const double *bias, size_t k,
                     size_t r, size_t stride, double *y) {
        size_t oh = (h + 2 * (r / 2) - r) / stride + 1, ow = (w + 2 * (r / 2) - r) / stride + 1;

        for (size_t o = 0; o < k; o++)
                for (size_t i = 0; i < oh; i++)
                        for (size_t j = 0; j < ow; j++) {
                                double s = bias[o];

                                for (size_t ci = 0; ci < c; ci++)
                                        for (size_t a = 0; a < r; a++)
                                                for (size_t bb = 0; bb < r; bb++) {
                                                        long ih = (long) (i * stride + a) - (long) (r / 2);
                                                        long iw = (long) (j * stride + bb) - (long) (r / 2);

                                                        if (ih < 0 || iw < 0 || ih >= (long) h || iw >= (long) w)
                                                                continue;
                                                        s += x[(ci * h + (size_t) ih) * w + (size_t) iw] *
                                                             wt[((o * c + ci) * r + a) * r + bb];
                                                }
                                y[(o * oh + i) * ow + j] = s;
                        }
}

/* ---- Tests ---- */

Test(sd_blocks, timestep_embedding_is_ldms) {
        float e[5];

        sd_timestep_embedding(1.0, 4, e);
        cr_assert_float_eq(e[0], cos(1.0), 1e-6);
        cr_assert_float_eq(e[1], cos(0.01), 1e-6);
        cr_assert_float_eq(e[2], sin(1.0), 1e-6);
        cr_assert_float_eq(e[3], sin(0.01), 1e-6);
        sd_timestep_embedding(999, 5, e);
        cr_assert_float_eq(e[0], cos(999.0), 1e-5);
        cr_assert_eq(e[4], 0.0f, "an odd width pads with a zero");
}

static void resblock_case(uint32_t in, uint32_t out) {
        const uint32_t emb = 64, h = 6, w = 5, hw = h * w;
        struct ref_tensor parts[] = {
                { "in_layers.0.weight", 1, { in }, 0.5, 0, NULL },
                { "in_layers.0.bias", 1, { in }, 0.5, 0, NULL },
                { "in_layers.2.weight", 4, { out, in, 3, 3 }, 1.0 / sqrt(in * 9.0), 0, NULL },
                { "in_layers.2.bias", 1, { out }, 0.1, 0, NULL },
                { "emb_layers.1.weight", 2, { out, emb }, 1.0 / sqrt(emb), 0, NULL },
                { "emb_layers.1.bias", 1, { out }, 0.1, 0, NULL },
                { "out_layers.0.weight", 1, { out }, 0.5, 0, NULL },
                { "out_layers.0.bias", 1, { out }, 0.5, 0, NULL },
                { "out_layers.3.weight", 4, { out, out, 3, 3 }, 1.0 / sqrt(out * 9.0), 0, NULL },
                { "out_layers.3.bias", 1, { out }, 0.1, 0, NULL },
                { "skip_connection.weight", 4, { out, in, 1, 1 }, 1.0 / sqrt(in), 0, NULL },
                { "skip_connection.bias", 1, { out }, 0.1, 0, NULL },
        };
        size_t n_parts = in == out ? 10 : 12;
        struct safetensors_writer *wr;
        struct safetensors *file;
        struct nn_backend *be;
        struct sd_resblock rb;
        char path[256], name[128], err[256];
        float xf[64 * 30], embf[64], yf[64 * 30];
        double x[64 * 30], t1[64 * 30], t2[64 * 30], t3[64 * 30], y[64 * 30], skip[64 * 30], bias[64];
        float *dx, *dy, *scratch;

        rng_state = in * 1000 + out;
        cr_assert_eq(safetensors_writer_new(&wr), 0);
        for (size_t i = 0; i < n_parts; i++) {
                uint64_t n = 1;
                uint16_t *half;

                for (uint32_t d = 0; d < parts[i].ndim; d++)
                        n *= parts[i].shape[d];
                parts[i].values = malloc(n * sizeof(float));
                half = malloc(n * sizeof(uint16_t));
                random_f16(n, parts[i].scale, parts[i].values, half);
                /* GroupNorm gains around 1. */
                if (strstr(parts[i].name, "layers.0.weight"))
                        for (uint64_t k = 0; k < n; k++) {
                                parts[i].values[k] = nn_fp16_to_f32(half[k] = nn_f32_to_fp16(1.0f + parts[i].values[k]));
                        }
                snprintf(name, sizeof(name), "rb.%s", parts[i].name);
                cr_assert_eq(safetensors_writer_add(wr, name, ST_F16, parts[i].ndim, parts[i].shape, half), 0);
                free(half);
        }
        snprintf(path, sizeof(path), "%s/rb.safetensors", dir);
        cr_assert_eq(safetensors_writer_write(wr, path, err, sizeof(err)), 0, "%s", err);
        safetensors_writer_free(wr);
        cr_assert_eq(safetensors_open(path, &file, err, sizeof(err)), 0, "%s", err);

        cr_assert_eq(nn_cpu_backend_new(2, &be), 0);
        cr_assert_eq(sd_resblock_load(be, file, "rb.", in, out, emb, &rb, err, sizeof(err)), 0, "%s", err);
        for (size_t i = 0; i < in * hw; i++)
                x[i] = xf[i] = (float) (rng_uniform() * 2);
        for (size_t i = 0; i < emb; i++)
                embf[i] = (float) rng_uniform();
        dx = be->ops->alloc(be, in * hw);
        dy = be->ops->alloc(be, out * hw);
        scratch = be->ops->alloc(be, sd_resblock_scratch(&rb, h, w));
        be->ops->write(be, dx, xf, in * hw);
        sd_resblock_forward(be, &rb, dx, embf, h, w, dy, scratch);
        be->ops->read(be, yf, dy, out * hw);
        cr_assert_eq(be->ops->status(be), 0);

        /* The reference: emb → SiLU → linear, added to the first bias. */
        for (uint32_t o = 0; o < out; o++) {
                double s = parts[5].values[o];

                for (uint32_t e = 0; e < emb; e++)
                        s += parts[4].values[o * emb + e] * (embf[e] / (1 + exp(-(double) embf[e])));
                bias[o] = s + parts[3].values[o];
        }
        ref_group_norm_silu(x, in, hw, parts[0].values, parts[1].values, t1);
        ref_conv(t1, in, h, w, parts[2].values, bias, out, 3, 1, t2);
        ref_group_norm_silu(t2, out, hw, parts[6].values, parts[7].values, t3);
        for (uint32_t o = 0; o < out; o++)
                bias[o] = parts[9].values[o];
        ref_conv(t3, out, h, w, parts[8].values, bias, out, 3, 1, y);
        if (in != out) {
                for (uint32_t o = 0; o < out; o++)
                        bias[o] = parts[11].values[o];
                ref_conv(x, in, h, w, parts[10].values, bias, out, 1, 1, skip);
        } else
                memcpy(skip, x, sizeof(double) * in * hw);
        for (size_t i = 0; i < out * hw; i++)
                cr_assert_float_eq(yf[i], y[i] + skip[i], 2e-4 * (1 + fabs(y[i] + skip[i])),
                                   "%u→%u: output %zu is %g, expected %g", in, out, i, yf[i], y[i] + skip[i]);

        sd_resblock_free(be, &rb);
        be->ops->release(be, dx);
        be->ops->release(be, dy);
        be->ops->release(be, scratch);
        nn_backend_free(be);
        safetensors_close(file);
        for (size_t i = 0; i < n_parts; i++)
                free(parts[i].values);
}

Test(sd_blocks, resblock_matches_the_reference_with_and_without_a_skip_convolution) {
        resblock_case(32, 64);
        resblock_case(64, 64);
}

Test(sd_blocks, a_resblock_missing_a_tensor_or_of_the_wrong_size_is_refused) {
        struct safetensors_writer *wr;
        struct safetensors *file;
        struct nn_backend *be;
        struct sd_resblock rb;
        char path[256], err[256];
        uint16_t h[64] = {};

        cr_assert_eq(safetensors_writer_new(&wr), 0);
        cr_assert_eq(safetensors_writer_add(wr, "rb.in_layers.0.weight", ST_F16, 1, (const uint64_t[]) { 64 }, h), 0);
        snprintf(path, sizeof(path), "%s/bad.safetensors", dir);
        cr_assert_eq(safetensors_writer_write(wr, path, err, sizeof(err)), 0, "%s", err);
        safetensors_writer_free(wr);
        cr_assert_eq(safetensors_open(path, &file, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(nn_cpu_backend_new(1, &be), 0);
        cr_assert_eq(sd_resblock_load(be, file, "rb.", 32, 64, 64, &rb, err, sizeof(err)), -EBADMSG);
        cr_assert_not_null(strstr(err, "rb.in_layers.0.weight has 64 elements, 32 expected"), "%s", err);
        cr_assert_eq(sd_resblock_load(be, file, "rb.", 64, 64, 64, &rb, err, sizeof(err)), -ENOENT);
        cr_assert_not_null(strstr(err, "no tensor rb.in_layers.0.bias"), "%s", err);
        cr_assert_eq(sd_resblock_load(be, file, "rb.", 48, 64, 64, &rb, err, sizeof(err)), -EINVAL);
        nn_backend_free(be);
        safetensors_close(file);
}

Test(sd_blocks, downsample_and_upsample_match_the_reference) {
        const uint32_t c = 32, h = 6, w = 4;
        struct nn_backend *be;
        struct sd_weight wt, bias;
        float xf[32 * 24], wf[32 * 32 * 9], bf[32], yf[32 * 12 * 8];
        uint16_t half[32 * 32 * 9];
        double x[32 * 24], up[32 * 12 * 8], y[32 * 12 * 8], b[32];
        float *dx, *dy, *scratch;

        rng_state = 77;
        random_f16(c * c * 9, 1.0 / sqrt(c * 9.0), wf, half);
        random_f16(c, 0.1, bf, half);
        for (size_t i = 0; i < c * h * w; i++)
                x[i] = xf[i] = (float) rng_uniform();
        for (size_t i = 0; i < c; i++)
                b[i] = bf[i];
        cr_assert_eq(nn_cpu_backend_new(2, &be), 0);
        wt = (struct sd_weight) { .data = be->ops->alloc(be, c * c * 9), .n = c * c * 9 };
        bias = (struct sd_weight) { .data = be->ops->alloc(be, c), .n = c };
        be->ops->write(be, wt.data, wf, c * c * 9);
        be->ops->write(be, bias.data, bf, c);
        dx = be->ops->alloc(be, c * h * w);
        dy = be->ops->alloc(be, 4 * c * h * w);
        scratch = be->ops->alloc(be, 4 * c * h * w);
        be->ops->write(be, dx, xf, c * h * w);

        sd_downsample(be, &wt, &bias, c, dx, h, w, dy);
        be->ops->read(be, yf, dy, c * (h / 2) * (w / 2));
        ref_conv(x, c, h, w, wf, b, c, 3, 2, y);
        for (size_t i = 0; i < c * (h / 2) * (w / 2); i++)
                cr_assert_float_eq(yf[i], y[i], 1e-4 * (1 + fabs(y[i])), "downsample %zu", i);

        sd_upsample(be, &wt, &bias, c, dx, h, w, dy, scratch);
        be->ops->read(be, yf, dy, 4 * c * h * w);
        for (size_t ch = 0; ch < c; ch++)
                for (size_t i = 0; i < 2 * h; i++)
                        for (size_t j = 0; j < 2 * w; j++)
                                up[(ch * 2 * h + i) * 2 * w + j] = x[(ch * h + i / 2) * w + j / 2];
        ref_conv(up, c, 2 * h, 2 * w, wf, b, c, 3, 1, y);
        for (size_t i = 0; i < 4 * c * h * w; i++)
                cr_assert_float_eq(yf[i], y[i], 1e-4 * (1 + fabs(y[i])), "upsample %zu", i);

        sd_weight_free(be, &wt);
        sd_weight_free(be, &bias);
        be->ops->release(be, dx);
        be->ops->release(be, dy);
        be->ops->release(be, scratch);
        nn_backend_free(be);
}

/* ---- The SpatialTransformer ---- */

static void ref_layer_norm(const double *x, size_t n, size_t dim, const float *g, const float *b, double *y) {
        for (size_t t = 0; t < n; t++) {
                double mean = 0, var = 0;

                for (size_t i = 0; i < dim; i++)
                        mean += x[t * dim + i];
                mean /= (double) dim;
                for (size_t i = 0; i < dim; i++)
                        var += (x[t * dim + i] - mean) * (x[t * dim + i] - mean);
                var /= (double) dim;
                for (size_t i = 0; i < dim; i++)
                        y[t * dim + i] = (x[t * dim + i] - mean) / sqrt(var + 1e-5) * g[i] + b[i];
        }
}

/* y [n][out] = x [n][in] · wᵀ + b (b may be NULL). */
static void ref_linear(const double *x, size_t n, size_t in, size_t out, const float *w, const float *b, double *y) {
        for (size_t t = 0; t < n; t++)
                for (size_t o = 0; o < out; o++) {
                        double s = b ? b[o] : 0;

                        for (size_t i = 0; i < in; i++)
                                s += x[t * in + i] * w[o * in + i];
                        y[t * out + o] = s;
                }
}

static void ref_attention(const double *q, const double *k, const double *v, size_t nq, size_t nkv, size_t heads,
                          size_t hd, double *out) {
        double s[64];

        for (size_t h = 0; h < heads; h++)
                for (size_t i = 0; i < nq; i++) {
                        double max = -INFINITY, sum = 0;

                        for (size_t j = 0; j < nkv; j++) {
                                double d = 0;

                                for (size_t e = 0; e < hd; e++)
                                        d += q[(i * heads + h) * hd + e] * k[(j * heads + h) * hd + e];
                                s[j] = d / sqrt((double) hd);
                                max = fmax(max, s[j]);
                        }
                        for (size_t j = 0; j < nkv; j++)
                                sum += s[j] = exp(s[j] - max);
                        for (size_t e = 0; e < hd; e++) {
                                double o = 0;

                                for (size_t j = 0; j < nkv; j++)
                                        o += s[j] / sum * v[(j * heads + h) * hd + e];
                                out[(i * heads + h) * hd + e] = o;
                        }
                }
}

Test(sd_blocks, spatial_transformer_matches_the_reference) {
        enum { C = 32, CTX = 24, NCTX = 5, H = 4, W = 3, HW = H * W, HEADS = 2 };
        struct ref_tensor parts[] = {
                { "norm.weight", 1, { C }, 0.5, 0, NULL },                                       /* 0 */
                { "norm.bias", 1, { C }, 0.5, 0, NULL },
                { "proj_in.weight", 4, { C, C, 1, 1 }, 0.3, 0, NULL },
                { "proj_in.bias", 1, { C }, 0.1, 0, NULL },
                { "proj_out.weight", 2, { C, C }, 0.3, 0, NULL },                                /* SD 2.x: linear */
                { "proj_out.bias", 1, { C }, 0.1, 0, NULL },                                    /* 5 */
                { "transformer_blocks.0.norm1.weight", 1, { C }, 0.5, 0, NULL },
                { "transformer_blocks.0.norm1.bias", 1, { C }, 0.5, 0, NULL },
                { "transformer_blocks.0.norm2.weight", 1, { C }, 0.5, 0, NULL },
                { "transformer_blocks.0.norm2.bias", 1, { C }, 0.5, 0, NULL },
                { "transformer_blocks.0.norm3.weight", 1, { C }, 0.5, 0, NULL },                /* 10 */
                { "transformer_blocks.0.norm3.bias", 1, { C }, 0.5, 0, NULL },
                { "transformer_blocks.0.attn1.to_q.weight", 2, { C, C }, 0.3, 0, NULL },
                { "transformer_blocks.0.attn1.to_k.weight", 2, { C, C }, 0.3, 0, NULL },
                { "transformer_blocks.0.attn1.to_v.weight", 2, { C, C }, 0.3, 0, NULL },
                { "transformer_blocks.0.attn1.to_out.0.weight", 2, { C, C }, 0.3, 0, NULL },    /* 15 */
                { "transformer_blocks.0.attn1.to_out.0.bias", 1, { C }, 0.1, 0, NULL },
                { "transformer_blocks.0.attn2.to_q.weight", 2, { C, C }, 0.3, 0, NULL },
                { "transformer_blocks.0.attn2.to_k.weight", 2, { C, CTX }, 0.3, 0, NULL },
                { "transformer_blocks.0.attn2.to_v.weight", 2, { C, CTX }, 0.3, 0, NULL },
                { "transformer_blocks.0.attn2.to_out.0.weight", 2, { C, C }, 0.3, 0, NULL },    /* 20 */
                { "transformer_blocks.0.attn2.to_out.0.bias", 1, { C }, 0.1, 0, NULL },
                { "transformer_blocks.0.ff.net.0.proj.weight", 2, { 8 * C, C }, 0.3, 0, NULL },
                { "transformer_blocks.0.ff.net.0.proj.bias", 1, { 8 * C }, 0.1, 0, NULL },
                { "transformer_blocks.0.ff.net.2.weight", 2, { C, 4 * C }, 0.1, 0, NULL },
                { "transformer_blocks.0.ff.net.2.bias", 1, { C }, 0.1, 0, NULL },               /* 25 */
        };
        const size_t n_parts = sizeof(parts) / sizeof(parts[0]);
        struct safetensors_writer *wr;
        struct safetensors *file;
        struct nn_backend *be;
        struct sd_transformer tr;
        char path[256], name[160], err[256];
        static float xf[C * HW], cf[NCTX * CTX], yf[C * HW];
        static double x[C * HW], ctx[NCTX * CTX], t[HW * C], res[HW * C], a[HW * C], q[HW * C], k[HW * C],
                v[HW * C], o[HW * C], ff[HW * 8 * C], g[HW * 4 * C];
        float *dx, *dc, *dy, *scratch;

        rng_state = 4242;
        cr_assert_eq(safetensors_writer_new(&wr), 0);
        for (size_t i = 0; i < n_parts; i++) {
                uint64_t n = 1;
                uint16_t *half;

                for (uint32_t d = 0; d < parts[i].ndim; d++)
                        n *= parts[i].shape[d];
                parts[i].values = malloc(n * sizeof(float));
                half = malloc(n * sizeof(uint16_t));
                random_f16(n, parts[i].scale, parts[i].values, half);
                if (strstr(parts[i].name, "norm") && strstr(parts[i].name, ".weight"))
                        for (uint64_t e = 0; e < n; e++)
                                parts[i].values[e] = nn_fp16_to_f32(half[e] = nn_f32_to_fp16(1.0f + parts[i].values[e]));
                snprintf(name, sizeof(name), "st.%s", parts[i].name);
                cr_assert_eq(safetensors_writer_add(wr, name, ST_F16, parts[i].ndim, parts[i].shape, half), 0);
                free(half);
        }
        snprintf(path, sizeof(path), "%s/st.safetensors", dir);
        cr_assert_eq(safetensors_writer_write(wr, path, err, sizeof(err)), 0, "%s", err);
        safetensors_writer_free(wr);
        cr_assert_eq(safetensors_open(path, &file, err, sizeof(err)), 0, "%s", err);
        for (size_t i = 0; i < C * HW; i++)
                x[i] = xf[i] = (float) (rng_uniform() * 2);
        for (size_t i = 0; i < NCTX * CTX; i++)
                ctx[i] = cf[i] = (float) rng_uniform();

        /* The reference, as LDM's SpatialTransformer. */
        {
                double mean, var;
                size_t cg = C / 32;

                for (size_t grp = 0; grp < 32; grp++) {
                        mean = var = 0;
                        for (size_t i = grp * cg * HW; i < (grp + 1) * cg * HW; i++)
                                mean += x[i];
                        mean /= (double) (cg * HW);
                        for (size_t i = grp * cg * HW; i < (grp + 1) * cg * HW; i++)
                                var += (x[i] - mean) * (x[i] - mean);
                        var /= (double) (cg * HW);
                        for (size_t i = grp * cg * HW; i < (grp + 1) * cg * HW; i++)
                                /* tokens: [hw][c] */
                                t[(i % HW) * C + i / HW] = (x[i] - mean) / sqrt(var + 1e-6) * parts[0].values[i / HW] +
                                                           parts[1].values[i / HW];
                }
        }
        ref_linear(t, HW, C, C, parts[2].values, parts[3].values, res);
        ref_layer_norm(res, HW, C, parts[6].values, parts[7].values, a);
        ref_linear(a, HW, C, C, parts[12].values, NULL, q);
        ref_linear(a, HW, C, C, parts[13].values, NULL, k);
        ref_linear(a, HW, C, C, parts[14].values, NULL, v);
        ref_attention(q, k, v, HW, HW, HEADS, C / HEADS, o);
        ref_linear(o, HW, C, C, parts[15].values, parts[16].values, a);
        for (size_t i = 0; i < HW * C; i++)
                res[i] += a[i];
        ref_layer_norm(res, HW, C, parts[8].values, parts[9].values, a);
        ref_linear(a, HW, C, C, parts[17].values, NULL, q);
        ref_linear(ctx, NCTX, CTX, C, parts[18].values, NULL, k);
        ref_linear(ctx, NCTX, CTX, C, parts[19].values, NULL, v);
        ref_attention(q, k, v, HW, NCTX, HEADS, C / HEADS, o);
        ref_linear(o, HW, C, C, parts[20].values, parts[21].values, a);
        for (size_t i = 0; i < HW * C; i++)
                res[i] += a[i];
        ref_layer_norm(res, HW, C, parts[10].values, parts[11].values, a);
        ref_linear(a, HW, C, 8 * C, parts[22].values, parts[23].values, ff);
        for (size_t i = 0; i < HW; i++)
                for (size_t j = 0; j < 4 * C; j++) {
                        double hv = ff[i * 8 * C + j], gate = ff[i * 8 * C + 4 * C + j];
                        g[i * 4 * C + j] = hv * 0.5 * gate * (1 + erf(gate / sqrt(2.0)));
                }
        ref_linear(g, HW, 4 * C, C, parts[24].values, parts[25].values, a);
        for (size_t i = 0; i < HW * C; i++)
                res[i] += a[i];
        ref_linear(res, HW, C, C, parts[4].values, parts[5].values, a);

        for (unsigned threads = 1; threads <= 2; threads++) {
                cr_assert_eq(nn_cpu_backend_new(threads, &be), 0);
                cr_assert_eq(sd_transformer_load(be, file, "st.", C, CTX, HEADS, &tr, err, sizeof(err)), 0, "%s", err);
                dx = be->ops->alloc(be, C * HW);
                dc = be->ops->alloc(be, NCTX * CTX);
                dy = be->ops->alloc(be, C * HW);
                scratch = be->ops->alloc(be, sd_transformer_scratch(&tr, H, W, NCTX));
                be->ops->write(be, dx, xf, C * HW);
                be->ops->write(be, dc, cf, NCTX * CTX);
                sd_transformer_forward(be, &tr, dx, dc, NCTX, H, W, dy, scratch);
                be->ops->read(be, yf, dy, C * HW);
                cr_assert_eq(be->ops->status(be), 0);
                for (size_t ch = 0; ch < C; ch++)
                        for (size_t p = 0; p < HW; p++) {
                                double want = a[p * C + ch] + x[ch * HW + p];

                                cr_assert_float_eq(yf[ch * HW + p], want, 2e-4 * (1 + fabs(want)),
                                                   "%u threads: channel %zu pixel %zu is %g, expected %g", threads,
                                                   ch, p, yf[ch * HW + p], want);
                        }
                sd_transformer_free(be, &tr);
                be->ops->release(be, dx);
                be->ops->release(be, dc);
                be->ops->release(be, dy);
                be->ops->release(be, scratch);
                nn_backend_free(be);
        }
        safetensors_close(file);
        for (size_t i = 0; i < n_parts; i++)
                free(parts[i].values);
}

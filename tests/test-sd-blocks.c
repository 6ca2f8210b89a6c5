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

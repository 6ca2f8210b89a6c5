/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Stable Diffusion's VAE decoder on the engine (plugins/imagegen/vae.c)
 * against a plain reference in double that reads the same weights from the
 * same safetensors file: a ResNet block with and without its nin_shortcut,
 * the mid attention block, and the whole decoder on an sd-tiny checkpoint
 * on the CPU with 1 and 2 threads; the loader's refusals; the scratch
 * figure of the header; the f32 → 8-bit conversion; and PNG encoding
 * (plugins/imagegen/sd-png.c) round trips, text chunks and refusals. */

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn-backend.h"
#include "nn-type.h"
#include "safetensors.h"
#include "sd-png.h"
#include "sd-tiny.h"
#include "vae.h"

static char dir[] = "/tmp/test-vae-XXXXXX";
static uint64_t rng_state;

static void setup(void) {
        cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
        char cmd[128];
        int r;

        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        r = system(cmd);
        (void) r;
}

TestSuite(vae, .init = setup, .fini = teardown, .timeout = 240);

static double rng_uniform(void) {
        uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return (double) ((z ^ (z >> 31)) >> 11) * 0x1p-53 * 2 - 1;
}

static void path_in_dir(char *path, size_t size, const char *name) {
        snprintf(path, size, "%s/%s", dir, name);
}

/* ---- Checkpoints ---- */

struct part {
        const char *name;
        uint32_t ndim;
        uint64_t shape[4];
        double scale, offset;   /* uniform in offset ± scale */
};

/* prefix + each part, random, in F16 as checkpoints hold them. */
static void write_random(const char *path, const char *prefix, const struct part *parts, size_t n_parts) {
        struct safetensors_writer *wr;
        char name[256], err[256];

        cr_assert_eq(safetensors_writer_new(&wr), 0);
        for (size_t i = 0; i < n_parts; i++) {
                uint64_t n = 1;
                uint16_t *half;

                for (uint32_t d = 0; d < parts[i].ndim; d++)
                        n *= parts[i].shape[d];
                half = malloc(n * sizeof(uint16_t));
                for (uint64_t k = 0; k < n; k++)
                        half[k] = nn_f32_to_fp16((float) (parts[i].offset + parts[i].scale * rng_uniform()));
                snprintf(name, sizeof(name), "%s%s", prefix, parts[i].name);
                cr_assert_eq(safetensors_writer_add(wr, name, ST_F16, parts[i].ndim, parts[i].shape, half), 0);
                free(half);
        }
        cr_assert_eq(safetensors_writer_write(wr, path, err, sizeof(err)), 0, "%s", err);
        safetensors_writer_free(wr);
}

static void write_sd_tiny(const char *path) {
        struct sd_tiny_spec spec = sd_tiny_spec_default();
        char err[256];

        cr_assert_eq(sd_tiny_write(&spec, path, NULL, err, sizeof(err)), 0, "%s", err);
}

/* The VAE tensors of src (first_stage_model.*) into dst, less `drop`, with
 * `reshape` given the shape (ndim, shape) when not NULL, and `extra` (a copy
 * of the first tensor's bytes, renamed) added when not NULL. */
static void write_variant(const char *src, const char *dst, const char *drop, const char *reshape, uint32_t ndim,
                          const uint64_t *shape, const char *extra) {
        struct safetensors *file;
        struct safetensors_writer *wr;
        char err[256];
        bool added = false;

        cr_assert_eq(safetensors_open(src, &file, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(safetensors_writer_new(&wr), 0);
        for (size_t i = 0; i < safetensors_count(file); i++) {
                const struct st_tensor *t = safetensors_tensor(file, i);

                if (strncmp(t->name, "first_stage_model.", 18) != 0 || (drop && strcmp(t->name, drop) == 0))
                        continue;
                if (reshape && strcmp(t->name, reshape) == 0)
                        cr_assert_eq(safetensors_writer_add(wr, t->name, t->dtype, ndim, shape, t->data), 0);
                else
                        cr_assert_eq(safetensors_writer_add(wr, t->name, t->dtype, t->ndim, t->shape, t->data), 0);
                if (extra && !added) {
                        cr_assert_eq(safetensors_writer_add(wr, extra, t->dtype, t->ndim, t->shape, t->data), 0);
                        added = true;
                }
        }
        cr_assert_eq(safetensors_writer_write(wr, dst, err, sizeof(err)), 0, "%s", err);
        safetensors_writer_free(wr);
        safetensors_close(file);
}

/* ---- The reference, in double, weights read by name ---- */

static float *ref_w(const struct safetensors *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static float *ref_w(const struct safetensors *f, const char *fmt, ...) {
        const struct st_tensor *t;
        char name[512];
        va_list ap;
        float *out;

        va_start(ap, fmt);
        vsnprintf(name, sizeof(name), fmt, ap);
        va_end(ap);
        t = safetensors_find(f, name);
        cr_assert_not_null(t, "reference: no tensor %s", name);
        out = malloc(t->n_elements * sizeof(float));
        cr_assert_eq(safetensors_read_f32(t, 0, t->n_elements, out), 0);
        return out;
}

static void ref_group_norm(const double *x, size_t c, size_t hw, const float *g, const float *b, bool silu,
                           double *y) {
        size_t cg = c / 32;

        for (size_t grp = 0; grp < 32; grp++) {
                size_t i0 = grp * cg * hw, i1 = (grp + 1) * cg * hw;
                double mean = 0, var = 0;

                for (size_t i = i0; i < i1; i++)
                        mean += x[i];
                mean /= (double) (i1 - i0);
                for (size_t i = i0; i < i1; i++)
                        var += (x[i] - mean) * (x[i] - mean);
                var /= (double) (i1 - i0);
                for (size_t i = i0; i < i1; i++) {
                        size_t ch = i / hw;
                        double v = (x[i] - mean) / sqrt(var + 1e-6) * g[ch] + b[ch];

                        y[i] = silu ? v / (1 + exp(-v)) : v;
                }
        }
}

/* y [k][h][w] = conv(x [c][h][w]) + bias, r×r, stride 1, padding r/2. */
static void ref_conv(const double *x, size_t c, size_t h, size_t w, const float *wt, const float *bias, size_t k,
                     size_t r, double *y) {
        for (size_t o = 0; o < k; o++)
                for (size_t i = 0; i < h; i++)
                        for (size_t j = 0; j < w; j++) {
                                double s = bias[o];

                                for (size_t ci = 0; ci < c; ci++)
                                        for (size_t a = 0; a < r; a++)
                                                for (size_t bb = 0; bb < r; bb++) {
                                                        long ih = (long) (i + a) - (long) (r / 2);
                                                        long iw = (long) (j + bb) - (long) (r / 2);

                                                        if (ih < 0 || iw < 0 || ih >= (long) h || iw >= (long) w)
                                                                continue;
                                                        s += x[(ci * h + (size_t) ih) * w + (size_t) iw] *
                                                             wt[((o * c + ci) * r + a) * r + bb];
                                                }
                                y[(o * h + i) * w + j] = s;
                        }
}

static void ref_resnet(const struct safetensors *f, const char *p, const double *x, size_t in, size_t out,
                       size_t h, size_t w, double *y) {
        size_t hw = h * w;
        double *t = calloc((in > out ? in : out) * hw, sizeof(double));
        double *u = calloc(out * hw, sizeof(double)), *skip = calloc(out * hw, sizeof(double));
        float *n1g = ref_w(f, "%snorm1.weight", p), *n1b = ref_w(f, "%snorm1.bias", p);
        float *c1w = ref_w(f, "%sconv1.weight", p), *c1b = ref_w(f, "%sconv1.bias", p);
        float *n2g = ref_w(f, "%snorm2.weight", p), *n2b = ref_w(f, "%snorm2.bias", p);
        float *c2w = ref_w(f, "%sconv2.weight", p), *c2b = ref_w(f, "%sconv2.bias", p);

        ref_group_norm(x, in, hw, n1g, n1b, true, t);
        ref_conv(t, in, h, w, c1w, c1b, out, 3, u);
        ref_group_norm(u, out, hw, n2g, n2b, true, t);
        ref_conv(t, out, h, w, c2w, c2b, out, 3, y);
        if (in != out) {
                float *sw = ref_w(f, "%snin_shortcut.weight", p), *sb = ref_w(f, "%snin_shortcut.bias", p);

                ref_conv(x, in, h, w, sw, sb, out, 1, skip);
                free(sw);
                free(sb);
        } else
                memcpy(skip, x, sizeof(double) * in * hw);
        for (size_t i = 0; i < out * hw; i++)
                y[i] += skip[i];
        free(t);
        free(u);
        free(skip);
        free(n1g);
        free(n1b);
        free(c1w);
        free(c1b);
        free(n2g);
        free(n2b);
        free(c2w);
        free(c2b);
}

/* LDM's AttnBlock as written: q, k, v [c][n]; w_[i][j] = Σ_c q[c][i] k[c][j]
 * / √c, softmax over j; h[c][i] = Σ_j v[c][j] w_[i][j]; x + proj_out(h). */
static void ref_attention(const struct safetensors *f, const char *p, const double *x, size_t c, size_t n,
                          double *y) {
        double *hn = calloc(c * n, sizeof(double)), *q = calloc(c * n, sizeof(double));
        double *k = calloc(c * n, sizeof(double)), *v = calloc(c * n, sizeof(double));
        double *o = calloc(c * n, sizeof(double)), *wrow = calloc(n, sizeof(double));
        float *ng = ref_w(f, "%snorm.weight", p), *nb = ref_w(f, "%snorm.bias", p);
        float *qw = ref_w(f, "%sq.weight", p), *qb = ref_w(f, "%sq.bias", p);
        float *kw = ref_w(f, "%sk.weight", p), *kb = ref_w(f, "%sk.bias", p);
        float *vw = ref_w(f, "%sv.weight", p), *vb = ref_w(f, "%sv.bias", p);
        float *pw = ref_w(f, "%sproj_out.weight", p), *pb = ref_w(f, "%sproj_out.bias", p);

        ref_group_norm(x, c, n, ng, nb, false, hn);
        ref_conv(hn, c, n, 1, qw, qb, c, 1, q);
        ref_conv(hn, c, n, 1, kw, kb, c, 1, k);
        ref_conv(hn, c, n, 1, vw, vb, c, 1, v);
        for (size_t i = 0; i < n; i++) {
                double max = -INFINITY, sum = 0;

                for (size_t j = 0; j < n; j++) {
                        double s = 0;

                        for (size_t ch = 0; ch < c; ch++)
                                s += q[ch * n + i] * k[ch * n + j];
                        wrow[j] = s / sqrt((double) c);
                        max = fmax(max, wrow[j]);
                }
                for (size_t j = 0; j < n; j++)
                        sum += wrow[j] = exp(wrow[j] - max);
                for (size_t ch = 0; ch < c; ch++) {
                        double s = 0;

                        for (size_t j = 0; j < n; j++)
                                s += v[ch * n + j] * wrow[j] / sum;
                        o[ch * n + i] = s;
                }
        }
        ref_conv(o, c, n, 1, pw, pb, c, 1, y);
        for (size_t i = 0; i < c * n; i++)
                y[i] += x[i];
        free(hn);
        free(q);
        free(k);
        free(v);
        free(o);
        free(wrow);
        free(ng);
        free(nb);
        free(qw);
        free(qb);
        free(kw);
        free(kb);
        free(vw);
        free(vb);
        free(pw);
        free(pb);
}

/* LDM's Decoder on z [4][h][w] (already divided by the scale factor), with
 * SD's ch_mult 1,2,4,4 and widths from conv_out: rgb [3][8h][8w]. */
static void ref_decoder(const struct safetensors *f, const double *z, size_t h, size_t w, double *rgb) {
        const char *root = "first_stage_model.decoder.";
        const size_t mult[4] = { 1, 2, 4, 4 };
        const struct st_tensor *co = safetensors_find(f, "first_stage_model.decoder.conv_out.weight");
        size_t ch = co->shape[1], c = ch * 4, hw = h * w, max = 4 * ch * 64 * hw;
        double *a = calloc(max, sizeof(double)), *b = calloc(max, sizeof(double)), *t;
        float *wt, *bias;
        char p[256];

        wt = ref_w(f, "first_stage_model.post_quant_conv.weight");
        bias = ref_w(f, "first_stage_model.post_quant_conv.bias");
        ref_conv(z, 4, h, w, wt, bias, 4, 1, a);
        free(wt);
        free(bias);
        wt = ref_w(f, "%sconv_in.weight", root);
        bias = ref_w(f, "%sconv_in.bias", root);
        ref_conv(a, 4, h, w, wt, bias, c, 3, b);
        free(wt);
        free(bias);
        snprintf(p, sizeof(p), "%smid.block_1.", root);
        ref_resnet(f, p, b, c, c, h, w, a);
        snprintf(p, sizeof(p), "%smid.attn_1.", root);
        ref_attention(f, p, a, c, hw, b);
        snprintf(p, sizeof(p), "%smid.block_2.", root);
        ref_resnet(f, p, b, c, c, h, w, a);
        for (int level = 3; level >= 0; level--) {
                size_t out = ch * mult[level];

                for (int j = 0; j < 3; j++) {
                        snprintf(p, sizeof(p), "%sup.%d.block.%d.", root, level, j);
                        ref_resnet(f, p, a, c, out, h, w, b);
                        t = a, a = b, b = t;
                        c = out;
                }
                if (level == 0)
                        continue;
                for (size_t k = 0; k < c; k++)
                        for (size_t i = 0; i < 2 * h; i++)
                                for (size_t j = 0; j < 2 * w; j++)
                                        b[(k * 2 * h + i) * 2 * w + j] = a[(k * h + i / 2) * w + j / 2];
                h *= 2;
                w *= 2;
                wt = ref_w(f, "%sup.%d.upsample.conv.weight", root, level);
                bias = ref_w(f, "%sup.%d.upsample.conv.bias", root, level);
                ref_conv(b, c, h, w, wt, bias, c, 3, a);
                free(wt);
                free(bias);
        }
        wt = ref_w(f, "%snorm_out.weight", root);
        bias = ref_w(f, "%snorm_out.bias", root);
        ref_group_norm(a, c, h * w, wt, bias, true, b);
        free(wt);
        free(bias);
        wt = ref_w(f, "%sconv_out.weight", root);
        bias = ref_w(f, "%sconv_out.bias", root);
        ref_conv(b, c, h, w, wt, bias, 3, 3, rgb);
        free(wt);
        free(bias);
        free(a);
        free(b);
}

/* ---- The blocks ---- */

/* x uniform in ±x_scale: at 2e-3 its variance (1.3e-6) is near GroupNorm's
 * ε, which the output then depends on (the VAE's is 1e-6, the UNet's 1e-5). */
static void resnet_case(uint32_t in, uint32_t out, double x_scale) {
        const uint32_t h = 6, w = 5, hw = h * w;
        const struct part parts[] = {
                { "norm1.weight", 1, { in }, 0.5, 1 },
                { "norm1.bias", 1, { in }, 0.5, 0 },
                { "conv1.weight", 4, { out, in, 3, 3 }, 1.0 / sqrt(in * 9.0), 0 },
                { "conv1.bias", 1, { out }, 0.1, 0 },
                { "norm2.weight", 1, { out }, 0.5, 1 },
                { "norm2.bias", 1, { out }, 0.5, 0 },
                { "conv2.weight", 4, { out, out, 3, 3 }, 1.0 / sqrt(out * 9.0), 0 },
                { "conv2.bias", 1, { out }, 0.1, 0 },
                { "nin_shortcut.weight", 4, { out, in, 1, 1 }, 1.0 / sqrt(in), 0 },
                { "nin_shortcut.bias", 1, { out }, 0.1, 0 },
        };
        struct safetensors *file;
        struct nn_backend *be;
        struct vae_resnet rb;
        char path[256], err[256];
        float *xf = malloc(sizeof(float) * in * hw), *yf = malloc(sizeof(float) * out * hw);
        double *x = calloc(in * hw, sizeof(double)), *y = calloc(out * hw, sizeof(double));
        float *dx, *dy, *scratch;

        rng_state = in * 1000 + out;
        path_in_dir(path, sizeof(path), "rb.safetensors");
        write_random(path, "rb.", parts, in == out ? 8 : 10);
        cr_assert_eq(safetensors_open(path, &file, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(nn_cpu_backend_new(2, &be), 0);
        cr_assert_eq(vae_resnet_load(be, file, "rb.", in, out, &rb, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(vae_resnet_scratch(&rb, h, w), (size_t) (in > out ? in : out) * hw);
        for (size_t i = 0; i < in * hw; i++)
                x[i] = xf[i] = (float) (rng_uniform() * x_scale);
        dx = be->ops->alloc(be, in * hw);
        dy = be->ops->alloc(be, out * hw);
        scratch = be->ops->alloc(be, vae_resnet_scratch(&rb, h, w));
        be->ops->write(be, dx, xf, in * hw);
        vae_resnet_forward(be, &rb, dx, h, w, dy, scratch);
        be->ops->read(be, yf, dy, out * hw);
        cr_assert_eq(be->ops->status(be), 0);

        ref_resnet(file, "rb.", x, in, out, h, w, y);
        for (size_t i = 0; i < out * hw; i++)
                cr_assert_float_eq(yf[i], y[i], 2e-4 * (1 + fabs(y[i])), "%u→%u: output %zu is %g, expected %g",
                                   in, out, i, yf[i], y[i]);

        vae_resnet_free(be, &rb);
        be->ops->release(be, dx);
        be->ops->release(be, dy);
        be->ops->release(be, scratch);
        nn_backend_free(be);
        safetensors_close(file);
        free(xf);
        free(yf);
        free(x);
        free(y);
}

Test(vae, resnet_block_matches_the_reference_with_and_without_nin_shortcut) {
        resnet_case(32, 64, 2);
        resnet_case(64, 32, 2);
        resnet_case(64, 64, 2);
        resnet_case(64, 64, 2e-3);
}

/* With the 1×1 convolutions stored [c][c][1][1], or [c][c] as some
 * converters write them. */
static void attention_case(bool matrices) {
        const uint32_t c = 64, n = 35;
        const struct part parts[] = {
                { "norm.weight", 1, { c }, 0.5, 1 },
                { "norm.bias", 1, { c }, 0.5, 0 },
                { "q.weight", matrices ? 2 : 4, { c, c, 1, 1 }, 2.0 / sqrt(c), 0 },
                { "q.bias", 1, { c }, 0.1, 0 },
                { "k.weight", matrices ? 2 : 4, { c, c, 1, 1 }, 2.0 / sqrt(c), 0 },
                { "k.bias", 1, { c }, 0.1, 0 },
                { "v.weight", 4, { c, c, 1, 1 }, 1.0 / sqrt(c), 0 },
                { "v.bias", 1, { c }, 0.1, 0 },
                { "proj_out.weight", matrices ? 2 : 4, { c, c, 1, 1 }, 1.0 / sqrt(c), 0 },
                { "proj_out.bias", 1, { c }, 0.1, 0 },
        };
        struct safetensors *file;
        struct nn_backend *be;
        struct vae_attention at;
        char path[256], err[256];
        float xf[64 * 35], yf[64 * 35];
        double x[64 * 35], y[64 * 35];
        float *dx, *dy, *scratch;

        rng_state = matrices ? 11 : 12;
        path_in_dir(path, sizeof(path), "attn.safetensors");
        write_random(path, "mid.attn_1.", parts, sizeof(parts) / sizeof(parts[0]));
        cr_assert_eq(safetensors_open(path, &file, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(nn_cpu_backend_new(2, &be), 0);
        cr_assert_eq(vae_attention_load(be, file, "mid.attn_1.", c, &at, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(vae_attention_scratch(&at, n), 5 * c * n);
        for (size_t i = 0; i < c * n; i++)
                x[i] = xf[i] = (float) (rng_uniform() * 2 + 0.5);
        dx = be->ops->alloc(be, c * n);
        dy = be->ops->alloc(be, c * n);
        scratch = be->ops->alloc(be, vae_attention_scratch(&at, n));
        be->ops->write(be, dx, xf, c * n);
        vae_attention_forward(be, &at, dx, n, dy, scratch);
        be->ops->read(be, yf, dy, c * n);
        cr_assert_eq(be->ops->status(be), 0);

        ref_attention(file, "mid.attn_1.", x, c, n, y);
        for (size_t i = 0; i < c * n; i++)
                cr_assert_float_eq(yf[i], y[i], 2e-4 * (1 + fabs(y[i])), "output %zu is %g, expected %g", i, yf[i],
                                   y[i]);

        vae_attention_free(be, &at);
        be->ops->release(be, dx);
        be->ops->release(be, dy);
        be->ops->release(be, scratch);
        nn_backend_free(be);
        safetensors_close(file);
}

Test(vae, mid_attention_matches_the_reference) {
        attention_case(false);
        attention_case(true);
}

/* ---- The decoder ---- */

/* rgb [3][8h][8w] of the engine's decode of latent (host, h×w, the
 * sampler's scale) on n_threads. */
static void engine_decode(const char *path, unsigned n_threads, const float *latent, uint32_t h, uint32_t w,
                          float *rgb) {
        struct safetensors *file;
        struct nn_backend *be;
        struct vae_decoder *vae;
        const struct vae_config *cfg;
        size_t need, zn = (size_t) 4 * h * w, rn = (size_t) 3 * 64 * h * w;
        char err[256];
        float *dz, *drgb, *scratch, *back = malloc(sizeof(float) * zn);
        uint64_t params = 0;

        cr_assert_eq(safetensors_open(path, &file, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(nn_cpu_backend_new(n_threads, &be), 0);
        cr_assert_eq(vae_decoder_load(be, file, "first_stage_model.", &vae, err, sizeof(err)), 0, "%s", err);
        cfg = vae_decoder_config(vae);
        cr_assert_eq(cfg->z_channels, 4);
        cr_assert_eq(cfg->levels, 4);
        cr_assert_eq(cfg->width[0], 32);
        cr_assert_eq(cfg->width[1], 64);
        cr_assert_eq(cfg->width[2], 128);
        cr_assert_eq(cfg->width[3], 128);
        for (size_t i = 0; i < safetensors_count(file); i++) {
                const struct st_tensor *t = safetensors_tensor(file, i);

                if (!strncmp(t->name, "first_stage_model.decoder.", 26) ||
                    !strncmp(t->name, "first_stage_model.post_quant_conv.", 34))
                        params += t->n_elements;
        }
        cr_assert_eq(vae_decoder_parameters(vae), params);

        cr_assert_eq(vae_scratch_size(cfg, h, w, &need, err, sizeof(err)), 0, "%s", err);
        dz = be->ops->alloc(be, zn);
        drgb = be->ops->alloc(be, rn);
        scratch = be->ops->alloc(be, need);
        be->ops->write(be, dz, latent, zn);
        cr_assert_eq(vae_decode(vae, dz, h, w, VAE_SCALE_FACTOR_SD, drgb, scratch, need - 1, err, sizeof(err)),
                     -ENOBUFS);
        /* One thread decodes with scratch of its own, for the call. */
        cr_assert_eq(vae_decode(vae, dz, h, w, VAE_SCALE_FACTOR_SD, drgb, n_threads == 1 ? NULL : scratch, need, err,
                                sizeof(err)), 0, "%s", err);
        be->ops->read(be, rgb, drgb, rn);
        be->ops->read(be, back, dz, zn);
        cr_assert_eq(be->ops->status(be), 0);
        cr_assert_eq(memcmp(back, latent, sizeof(float) * zn), 0, "the latent is left as it was");

        vae_decoder_free(vae);
        be->ops->release(be, dz);
        be->ops->release(be, drgb);
        be->ops->release(be, scratch);
        nn_backend_free(be);
        safetensors_close(file);
        free(back);
}

Test(vae, decoder_matches_the_reference_on_sd_tiny_with_1_and_2_threads) {
        const uint32_t h = 3, w = 4;
        const size_t zn = 4 * h * w, rn = 3 * 64 * h * w;
        struct safetensors *file;
        char path[256], err[256];
        float latent[4 * 3 * 4], *rgb1 = malloc(sizeof(float) * rn), *rgb2 = malloc(sizeof(float) * rn);
        float *again = malloc(sizeof(float) * rn);
        double z[4 * 3 * 4], *ref = calloc(rn, sizeof(double)), spread = 0;

        path_in_dir(path, sizeof(path), "tiny.safetensors");
        write_sd_tiny(path);
        rng_state = 5;
        for (size_t i = 0; i < zn; i++) {
                latent[i] = (float) (rng_uniform() * 2 * VAE_SCALE_FACTOR_SD);
                z[i] = latent[i] / (double) VAE_SCALE_FACTOR_SD;
        }
        engine_decode(path, 1, latent, h, w, rgb1);
        engine_decode(path, 2, latent, h, w, rgb2);
        engine_decode(path, 2, latent, h, w, again);
        cr_assert_eq(memcmp(rgb2, again, sizeof(float) * rn), 0, "the same latent, threads and backend: the same "
                     "image");

        cr_assert_eq(safetensors_open(path, &file, err, sizeof(err)), 0, "%s", err);
        ref_decoder(file, z, h, w, ref);
        safetensors_close(file);
        for (size_t i = 0; i < rn; i++) {
                cr_assert_float_eq(rgb1[i], ref[i], 5e-4 * (1 + fabs(ref[i])), "1 thread: %zu is %g, expected %g",
                                   i, rgb1[i], ref[i]);
                cr_assert_float_eq(rgb2[i], ref[i], 5e-4 * (1 + fabs(ref[i])), "2 threads: %zu is %g, expected %g",
                                   i, rgb2[i], ref[i]);
                spread += fabs(ref[i]);
        }
        cr_assert_gt(spread / (double) rn, 0.01, "the image is not all zero");
        free(rgb1);
        free(rgb2);
        free(again);
        free(ref);
}

Test(vae, scratch_and_flops_for_a_64x64_latent_at_sds_widths_are_the_headers_figures) {
        const struct vae_config sd = { .z_channels = 4, .levels = 4, .width = { 128, 256, 512, 512 } };
        size_t need;
        char err[256];

        cr_assert_eq(vae_scratch_size(&sd, 64, 64, &need, err, sizeof(err)), 0, "%s", err);
        /* 2·256 + 128 channels at 512²: the first block of the last level. */
        cr_assert_eq(need, (size_t) (2 * 256 + 128) * 512 * 512);
        cr_assert_eq(need, UINT64_C(167772160));
        cr_assert_eq(vae_scratch_size(&sd, 32, 32, &need, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(need, (size_t) (2 * 256 + 128) * 256 * 256, "it scales with the area");
        cr_assert_eq(vae_scratch_size(&sd, 96, 64, &need, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(need, (size_t) (2 * 256 + 128) * 768 * 512);

        /* The convolutions and the attention, counted by hand. */
        cr_assert_eq(vae_decode_flops(&sd, 64, 64), 2514518933504.0);
        cr_assert_eq(vae_decode_flops(&sd, 0, 64), 0);

        cr_assert_eq(vae_scratch_size(&sd, 0, 64, &need, err, sizeof(err)), -EINVAL);
        cr_assert_eq(vae_scratch_size(&sd, 1 << 18, 1, &need, err, sizeof(err)), -E2BIG);
        cr_assert_not_null(strstr(err, "262144×1"), "%s", err);
        /* The engine indexes output pixels with an int: 8h × 8w < 2^31. */
        cr_assert_eq(vae_scratch_size(&sd, 1 << 15, 1 << 15, &need, err, sizeof(err)), -E2BIG);
}

static void refused(const char *variant, int errno_expected, const char *message) {
        struct safetensors *file;
        struct nn_backend *be;
        struct vae_decoder *vae = (struct vae_decoder *) 1;
        char err[512];

        cr_assert_eq(safetensors_open(variant, &file, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(nn_cpu_backend_new(1, &be), 0);
        cr_assert_eq(vae_decoder_load(be, file, "first_stage_model.", &vae, err, sizeof(err)), errno_expected,
                     "%s: %s", variant, err);
        cr_assert_null(vae);
        cr_assert_not_null(strstr(err, message), "%s: \"%s\" has no \"%s\"", variant, err, message);
        nn_backend_free(be);
        safetensors_close(file);
}

Test(vae, a_decoder_missing_a_tensor_misshapen_or_with_more_is_refused_naming_the_tensor) {
        char tiny[256], variant[256];

        path_in_dir(tiny, sizeof(tiny), "tiny.safetensors");
        path_in_dir(variant, sizeof(variant), "variant.safetensors");
        write_sd_tiny(tiny);

        write_variant(tiny, variant, "first_stage_model.decoder.up.1.block.2.conv2.bias", NULL, 0, NULL, NULL);
        refused(variant, -ENOENT, "no tensor first_stage_model.decoder.up.1.block.2.conv2.bias");
        write_variant(tiny, variant, "first_stage_model.post_quant_conv.weight", NULL, 0, NULL, NULL);
        refused(variant, -ENOENT, "no tensor first_stage_model.post_quant_conv.weight");
        write_variant(tiny, variant, "first_stage_model.decoder.up.0.block.0.conv1.weight", NULL, 0, NULL, NULL);
        refused(variant, -ENOENT, "no tensor first_stage_model.decoder.up.0.block.0.conv1.weight");

        write_variant(tiny, variant, NULL, "first_stage_model.decoder.conv_out.weight", 4,
                      (const uint64_t[]) { 1, 96, 3, 3 }, NULL);
        refused(variant, -EBADMSG, "tensor first_stage_model.decoder.conv_out.weight has shape [1, 96, 3, 3], "
                "[3, 32, 3, 3] expected");
        write_variant(tiny, variant, NULL, "first_stage_model.decoder.mid.attn_1.k.weight", 3,
                      (const uint64_t[]) { 128, 128, 1 }, NULL);
        refused(variant, -EBADMSG, "mid.attn_1.k.weight has shape [128, 128, 1], [128, 128, 1, 1] expected");
        /* A level's width that GroupNorm cannot split. */
        write_variant(tiny, variant, NULL, "first_stage_model.decoder.up.2.block.0.conv1.weight", 4,
                      (const uint64_t[]) { 80, 128, 3, 3 }, NULL);
        refused(variant, -EBADMSG, "tensor first_stage_model.decoder.up.2.block.0.conv1.weight has 80 output "
                "channels, not a multiple of GroupNorm's 32 groups");
        /* A level's width that its other tensors do not have. */
        write_variant(tiny, variant, NULL, "first_stage_model.decoder.up.2.block.0.conv1.weight", 4,
                      (const uint64_t[]) { 64, 128, 3, 3 }, NULL);
        refused(variant, -EBADMSG, "tensor first_stage_model.decoder.up.2.block.0.conv1.bias has shape [128], "
                "[64] expected");

        /* A fourth ResNet block, attention in a level: another architecture. */
        write_variant(tiny, variant, NULL, NULL, 0, NULL, "first_stage_model.decoder.up.0.block.3.conv1.bias");
        refused(variant, -EBADMSG, "tensor first_stage_model.decoder.up.0.block.3.conv1.bias is not part of SD's "
                "VAE decoder");
        write_variant(tiny, variant, NULL, NULL, 0, NULL, "first_stage_model.decoder.up.1.attn.0.norm.weight");
        refused(variant, -EBADMSG, "first_stage_model.decoder.up.1.attn.0.norm.weight is not part");
}

Test(vae, attention_convolutions_stored_as_matrices_load) {
        struct safetensors *file;
        struct nn_backend *be;
        struct vae_decoder *vae;
        char tiny[256], variant[256], err[256];

        path_in_dir(tiny, sizeof(tiny), "tiny.safetensors");
        path_in_dir(variant, sizeof(variant), "variant.safetensors");
        write_sd_tiny(tiny);
        write_variant(tiny, variant, NULL, "first_stage_model.decoder.mid.attn_1.q.weight", 2,
                      (const uint64_t[]) { 128, 128 }, NULL);
        cr_assert_eq(safetensors_open(variant, &file, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(nn_cpu_backend_new(1, &be), 0);
        cr_assert_eq(vae_decoder_load(be, file, "first_stage_model.", &vae, err, sizeof(err)), 0, "%s", err);
        vae_decoder_free(vae);
        nn_backend_free(be);
        safetensors_close(file);
}

Test(vae, a_standalone_vae_without_a_prefix_loads) {
        struct safetensors *full, *standalone;
        struct safetensors_writer *wr;
        struct nn_backend *be;
        struct vae_decoder *vae;
        char tiny[256], path[256], err[256];

        path_in_dir(tiny, sizeof(tiny), "tiny.safetensors");
        path_in_dir(path, sizeof(path), "vae.safetensors");
        write_sd_tiny(tiny);
        cr_assert_eq(safetensors_open(tiny, &full, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(safetensors_writer_new(&wr), 0);
        for (size_t i = 0; i < safetensors_count(full); i++) {
                const struct st_tensor *t = safetensors_tensor(full, i);

                if (!strncmp(t->name, "first_stage_model.", 18))
                        cr_assert_eq(safetensors_writer_add(wr, t->name + 18, t->dtype, t->ndim, t->shape, t->data),
                                     0);
        }
        cr_assert_eq(safetensors_writer_write(wr, path, err, sizeof(err)), 0, "%s", err);
        safetensors_writer_free(wr);
        safetensors_close(full);

        cr_assert_eq(safetensors_open(path, &standalone, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(nn_cpu_backend_new(1, &be), 0);
        cr_assert_eq(vae_decoder_load(be, standalone, "", &vae, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(vae_decoder_config(vae)->width[3], 128);
        vae_decoder_free(vae);
        nn_backend_free(be);
        safetensors_close(standalone);
}

Test(vae, f32_to_rgb8_maps_minus_one_to_one_onto_0_to_255_rounded_and_clamped) {
        /* A 4×2 image, planar: R, then G, then B. */
        const float chw[3][8] = {
                { -1, 1, 0, -2, 2, NAN, 0.5f, -0.996f },
                { 0.001f, -0.001f, INFINITY, -INFINITY, 0.99f, 0.999f, 1.5f, -0.5f },
                { 0, 0, 0, 0, 0, 0, 0, 1 },
        };
        const uint8_t red[8] = { 0, 255, 128, 0, 255, 0, 191, 1 };
        const uint8_t green[8] = { 128, 127, 255, 0, 254, 255, 255, 64 };
        uint8_t rgb[8 * 3];

        vae_image_to_rgb8(&chw[0][0], 4, 2, rgb);
        for (size_t i = 0; i < 8; i++) {
                cr_assert_eq(rgb[3 * i], red[i], "red %zu: %u, expected %u", i, rgb[3 * i], red[i]);
                cr_assert_eq(rgb[3 * i + 1], green[i], "green %zu: %u, expected %u", i, rgb[3 * i + 1], green[i]);
                cr_assert_eq(rgb[3 * i + 2], i == 7 ? 255 : 128, "blue %zu", i);
        }
}

/* ---- PNG ---- */

/* PNG's CRC-32 (ISO 3309), bit by bit. */
static uint32_t png_crc(const uint8_t *p, size_t n) {
        uint32_t c = 0xffffffffu;

        for (size_t i = 0; i < n; i++) {
                c ^= p[i];
                for (int k = 0; k < 8; k++)
                        c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        }
        return c ^ 0xffffffffu;
}

static bool has_chunk(const uint8_t *png, size_t size, const char *type) {
        for (size_t at = 8; at + 8 <= size;) {
                uint32_t len = (uint32_t) png[at] << 24 | (uint32_t) png[at + 1] << 16 | (uint32_t) png[at + 2] << 8 |
                               png[at + 3];

                if (!memcmp(png + at + 4, type, 4))
                        return true;
                at += 12 + (size_t) len;
        }
        return false;
}

Test(vae, png_round_trip_gives_the_same_pixels_and_text) {
        const uint32_t w = 37, h = 23;
        const struct sd_png_text text[] = {
                { "parameters", "a watercolour of a lighthouse\nSteps: 20, Sampler: Euler, CFG scale: 7.5, Seed: 42" },
                { "Model hash", "9c1e2b7d" },
                { "Comment", "caf\xc3\xa9 \xe2\x9c\x93" },       /* UTF-8: iTXt */
                { "Empty", "" },
        };
        struct sd_png_image img;
        uint8_t rgb[37 * 23 * 3];
        void *png, *again;
        size_t size, size_again;
        char err[256];

        rng_state = 99;
        for (size_t i = 0; i < sizeof(rgb); i++)
                rgb[i] = (uint8_t) (i % 7 == 0 ? 255 * (i % 2) : (rng_uniform() + 1) * 127.9);
        cr_assert_eq(sd_png_encode(rgb, w, h, text, 4, &png, &size, err, sizeof(err)), 0, "%s", err);
        cr_assert_gt(size, 8);
        cr_assert_eq(memcmp(png, "\x89PNG\r\n\x1a\n", 8), 0);
        cr_assert(has_chunk(png, size, "IHDR") && has_chunk(png, size, "IDAT") && has_chunk(png, size, "IEND"));
        cr_assert(has_chunk(png, size, "tEXt"), "ASCII text as tEXt");
        cr_assert(has_chunk(png, size, "iTXt"), "UTF-8 text as iTXt");
        cr_assert_not(has_chunk(png, size, "tIME"), "nothing that changes between runs");

        cr_assert_eq(sd_png_encode(rgb, w, h, text, 4, &again, &size_again, err, sizeof(err)), 0, "%s", err);
        cr_assert(size == size_again && memcmp(png, again, size) == 0, "the same image gives the same bytes");
        free(again);

        cr_assert_eq(sd_png_decode(png, size, &img, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(img.width, w);
        cr_assert_eq(img.height, h);
        cr_assert_eq(memcmp(img.rgb, rgb, sizeof(rgb)), 0, "the pixels survive");
        cr_assert_eq(img.n_text, 4);
        for (size_t i = 0; i < 4; i++) {
                cr_assert_str_eq(img.text[i].key, text[i].key);
                cr_assert_str_eq(img.text[i].value, text[i].value);
        }
        sd_png_image_free(&img);

        /* Without text. */
        free(png);
        cr_assert_eq(sd_png_encode(rgb, w, h, NULL, 0, &png, &size, err, sizeof(err)), 0, "%s", err);
        cr_assert_not(has_chunk(png, size, "tEXt"));
        cr_assert_eq(sd_png_decode(png, size, &img, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(img.n_text, 0);
        cr_assert_eq(memcmp(img.rgb, rgb, sizeof(rgb)), 0);
        sd_png_image_free(&img);
        free(png);
}

Test(vae, png_encoding_refuses_bad_keys_text_and_sizes) {
        uint8_t rgb[4 * 3] = {};
        void *png = (void *) 1;
        size_t size = 1;
        char err[256];
        const char *bad_keys[] = { "", " lead", "trail ", "two  spaces", "tab\there",
                                   "k\xc3\xa9y",
                                   "01234567890123456789012345678901234567890123456789012345678901234567890123456789" };

        for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
                struct sd_png_text t = { bad_keys[i], "x" };

                cr_assert_eq(sd_png_encode(rgb, 2, 2, &t, 1, &png, &size, err, sizeof(err)), -EINVAL, "key %zu", i);
                cr_assert_null(png);
                cr_assert_eq(size, 0);
        }
        cr_assert_eq(sd_png_encode(rgb, 2, 2, &(struct sd_png_text) { "ok key", "\xff\xfe" }, 1, &png, &size, err,
                                   sizeof(err)), -EINVAL);
        cr_assert_not_null(strstr(err, "not UTF-8"), "%s", err);
        cr_assert_eq(sd_png_encode(rgb, 2, 2, &(struct sd_png_text) { "ok", "\xed\xa0\x80" }, 1, &png, &size, err,
                                   sizeof(err)), -EINVAL, "a surrogate is not UTF-8");
        cr_assert_eq(sd_png_encode(rgb, 0, 2, NULL, 0, &png, &size, err, sizeof(err)), -EINVAL);
        cr_assert_eq(sd_png_encode(rgb, SD_PNG_SIDE_MAX + 1, 1, NULL, 0, &png, &size, err, sizeof(err)), -E2BIG);
        cr_assert_eq(sd_png_encode(rgb, SD_PNG_SIDE_MAX, SD_PNG_SIDE_MAX, NULL, 0, &png, &size, err, sizeof(err)),
                     -E2BIG);
}

/* png with a tEXt chunk of key "big" and n bytes of text spliced in after
 * IHDR: a new buffer of *size bytes. */
static uint8_t *with_text_chunk(const uint8_t *png, size_t png_size, size_t n, size_t *size) {
        size_t len = 4 + n, at = 33;
        uint8_t *out = malloc(png_size + 12 + len), *c = out + at;
        uint32_t crc;

        memcpy(out, png, at);
        c[0] = (uint8_t) (len >> 24), c[1] = (uint8_t) (len >> 16), c[2] = (uint8_t) (len >> 8), c[3] = (uint8_t) len;
        memcpy(c + 4, "tEXtbig", 8);
        memset(c + 12, 'a', n);
        crc = png_crc(c + 4, 4 + len);
        c[8 + len] = (uint8_t) (crc >> 24), c[9 + len] = (uint8_t) (crc >> 16), c[10 + len] = (uint8_t) (crc >> 8);
        c[11 + len] = (uint8_t) crc;
        memcpy(c + 12 + len, png + at, png_size - at);
        *size = png_size + 12 + len;
        return out;
}

Test(vae, png_decoding_refuses_chunks_past_the_end_or_over_the_limit_before_libpng_allocates_them) {
        uint8_t rgb[2 * 2 * 3] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 }, *big;
        struct sd_png_image img;
        char err[256];
        size_t size, big_size;
        void *png;

        cr_assert_eq(sd_png_encode(rgb, 2, 2, NULL, 0, &png, &size, err, sizeof(err)), 0, "%s", err);
        big = with_text_chunk(png, size, 1000, &big_size);
        cr_assert_eq(sd_png_decode(big, big_size, &img, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(img.n_text, 1, "a text within the limit is kept");
        cr_assert_eq(strlen(img.text[0].value), 1000);
        sd_png_image_free(&img);

        /* A chunk that claims 2 GiB − 1 (libpng would allocate it, then
         * find the input short). */
        big[33] = 0x7f, big[34] = 0xff, big[35] = 0xff, big[36] = 0xff;
        cr_assert_eq(sd_png_decode(big, big_size, &img, err, sizeof(err)), -EBADMSG);
        cr_assert_not_null(strstr(err, "chunk tEXt at byte 33 claims 2147483647 bytes, past the end"), "%s", err);
        free(big);

        big = with_text_chunk(png, size, SD_PNG_CHUNK_MAX, &big_size);
        cr_assert_eq(sd_png_decode(big, big_size, &img, err, sizeof(err)), -E2BIG);
        cr_assert_not_null(strstr(err, "chunk tEXt at byte 33 has"), "%s", err);
        free(big);
        free(png);
}

Test(vae, png_decoding_refuses_what_is_not_a_whole_png) {
        uint8_t rgb[8 * 8 * 3], *png;
        void *buf;
        size_t size;
        struct sd_png_image img;
        char err[256];

        for (size_t i = 0; i < sizeof(rgb); i++)
                rgb[i] = (uint8_t) (i * 13);
        cr_assert_eq(sd_png_encode(rgb, 8, 8, NULL, 0, &buf, &size, err, sizeof(err)), 0, "%s", err);
        png = buf;

        cr_assert_eq(sd_png_decode("GIF89a...", 9, &img, err, sizeof(err)), -EBADMSG);
        cr_assert_not_null(strstr(err, "not a PNG"), "%s", err);
        cr_assert_eq(sd_png_decode(png, 4, &img, err, sizeof(err)), -EBADMSG);
        for (size_t cut = 8; cut < size; cut += 7) {
                cr_assert_eq(sd_png_decode(png, cut, &img, err, sizeof(err)), -EBADMSG, "cut at %zu", cut);
                cr_assert_null(img.rgb);
        }
        /* A flipped bit in IHDR (a critical chunk: its CRC fails). */
        png[16] ^= 0x01;
        cr_assert_eq(sd_png_decode(png, size, &img, err, sizeof(err)), -EBADMSG);
        png[16] ^= 0x01;
        /* A width past the limit, with its CRC right: refused before any
         * allocation by its size. */
        {
                uint8_t *big = malloc(size);
                uint32_t crc;

                memcpy(big, png, size);
                big[16] = 0, big[17] = 1, big[18] = 0, big[19] = 0;     /* 65536 */
                crc = png_crc(big + 12, 17);
                big[29] = (uint8_t) (crc >> 24), big[30] = (uint8_t) (crc >> 16), big[31] = (uint8_t) (crc >> 8),
                big[32] = (uint8_t) crc;
                cr_assert_eq(sd_png_decode(big, size, &img, err, sizeof(err)), -E2BIG, "%s", err);
                free(big);
        }
        cr_assert_eq(sd_png_decode(png, size, &img, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(memcmp(img.rgb, rgb, sizeof(rgb)), 0);
        sd_png_image_free(&img);
        free(buf);
}

/* PNGs in other formats, written with libpng's simplified API. */
static void *foreign_png(uint32_t w, uint32_t h, uint32_t format, const void *pixels, size_t *size) {
        png_image image = { .version = PNG_IMAGE_VERSION, .width = w, .height = h, .format = format };
        void *buf;

        cr_assert(png_image_write_get_memory_size(image, *size, 0, pixels, 0, NULL), "%s", image.message);
        buf = malloc(*size);
        cr_assert(png_image_write_to_memory(&image, buf, size, 0, pixels, 0, NULL), "%s", image.message);
        return buf;
}

Test(vae, png_decoding_makes_8_bit_rgb_of_grey_alpha_and_16_bit_images) {
        uint8_t ga[5 * 3 * 2];
        uint16_t grey16[5 * 3];
        struct sd_png_image img;
        char err[256];
        size_t size;
        void *png;

        for (size_t i = 0; i < 15; i++) {
                ga[2 * i] = (uint8_t) (i * 17);
                ga[2 * i + 1] = (uint8_t) (255 - i);
                grey16[i] = (uint16_t) (i * 4000 + 255);
        }
        png = foreign_png(5, 3, PNG_FORMAT_GA, ga, &size);
        cr_assert_eq(sd_png_decode(png, size, &img, err, sizeof(err)), 0, "%s", err);
        cr_assert(img.width == 5 && img.height == 3);
        for (size_t i = 0; i < 15; i++)
                for (size_t c = 0; c < 3; c++)
                        cr_assert_eq(img.rgb[3 * i + c], i * 17, "grey and alpha: pixel %zu", i);
        sd_png_image_free(&img);
        free(png);

        /* Linear 16-bit grey: the samples' high bytes, no gamma applied. */
        png = foreign_png(5, 3, PNG_FORMAT_LINEAR_Y, grey16, &size);
        cr_assert_eq(sd_png_decode(png, size, &img, err, sizeof(err)), 0, "%s", err);
        for (size_t i = 0; i < 15; i++)
                cr_assert_eq(img.rgb[3 * i], grey16[i] >> 8, "16-bit: pixel %zu is %u, expected %u", i,
                             img.rgb[3 * i], grey16[i] >> 8);
        sd_png_image_free(&img);
        free(png);
}

Test(vae, a_decoded_latent_becomes_a_png_of_the_same_pixels) {
        const uint32_t h = 2, w = 3;
        float latent[4 * 2 * 3], *rgbf = malloc(sizeof(float) * 3 * 64 * h * w);
        uint8_t *rgb = malloc(3 * 64 * h * w);
        struct sd_png_image img;
        char path[256], err[256];
        void *png;
        size_t size;

        path_in_dir(path, sizeof(path), "tiny.safetensors");
        write_sd_tiny(path);
        rng_state = 8;
        for (size_t i = 0; i < 4 * h * w; i++)
                latent[i] = (float) rng_uniform();
        engine_decode(path, 2, latent, h, w, rgbf);
        vae_image_to_rgb8(rgbf, 8 * w, 8 * h, rgb);
        cr_assert_eq(sd_png_encode(rgb, 8 * w, 8 * h, &(struct sd_png_text) { "parameters", "Seed: 1" }, 1, &png,
                                   &size, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(sd_png_decode(png, size, &img, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(img.width, 24);
        cr_assert_eq(img.height, 16);
        cr_assert_eq(memcmp(img.rgb, rgb, 3 * 64 * h * w), 0);
        cr_assert_str_eq(img.text[0].value, "Seed: 1");
        sd_png_image_free(&img);
        free(png);
        free(rgb);
        free(rgbf);
}

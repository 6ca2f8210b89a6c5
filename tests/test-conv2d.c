/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Convolution: the engine's CPU ops against a plain direct convolution in
 * double on random shapes (odd sizes, 1×1, 3×3, strides, padding, dilation,
 * groups, depthwise), GroupNorm and upsampling against their definitions;
 * the Freivalds check on honest and tampered outputs; the conv2d skill's
 * execute, verify, price, advert and refusals, loaded as a plugin. */

#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv-check.h"
#include "nn-backend.h"
#include "nn-pool.h"
#include "swarm-host.h"

/* ---- Random numbers and the reference ---- */

static uint64_t rng_state;

static uint64_t rng_next(void) {
        uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static float rng_float(void) {
        return (float) ((double) (rng_next() >> 11) * 0x1p-52 - 1.0);
}

static float *random_floats(uint64_t n) {
        float *v = malloc((n ? n : 1) * sizeof(float));

        cr_assert_not_null(v);
        for (uint64_t i = 0; i < n; i++)
                v[i] = rng_float();
        return v;
}

/* The definition, in double: ref = conv(x, w) + bias, absref = Σ|w·x| + |bias|
 * (before the activation), one output at a time. */
static void reference(const struct nn_conv2d *p, const float *x, const float *w, const float *bias, double *ref,
                      double *absref) {
        uint32_t oh = nn_conv2d_out_h(p), ow = nn_conv2d_out_w(p), cg = p->c / p->groups, kg = p->k / p->groups;

        for (uint32_t n = 0; n < p->n; n++)
                for (uint32_t k = 0; k < p->k; k++)
                        for (uint32_t i = 0; i < oh; i++)
                                for (uint32_t j = 0; j < ow; j++) {
                                        uint32_t g = k / kg;
                                        double s = bias ? bias[k] : 0, a = bias ? fabs(bias[k]) : 0;

                                        for (uint32_t c = 0; c < cg; c++)
                                                for (uint32_t r = 0; r < p->r; r++)
                                                        for (uint32_t t = 0; t < p->s; t++) {
                                                                int64_t ih = (int64_t) i * p->stride_h - p->pad_h +
                                                                             (int64_t) r * p->dilation_h;
                                                                int64_t iw = (int64_t) j * p->stride_w - p->pad_w +
                                                                             (int64_t) t * p->dilation_w;
                                                                double xv, wv;

                                                                if (ih < 0 || ih >= p->h || iw < 0 || iw >= p->w)
                                                                        continue;
                                                                xv = x[(((uint64_t) n * p->c + g * cg + c) * p->h + ih) *
                                                                       p->w + iw];
                                                                wv = w[(((uint64_t) k * cg + c) * p->r + r) * p->s + t];
                                                                s += xv * wv;
                                                                a += fabs(xv * wv);
                                                        }
                                        uint64_t o = (((uint64_t) n * p->k + k) * oh + i) * ow + j;
                                        ref[o] = s;
                                        absref[o] = a;
                                }
}

static double gamma_n(double n) {
        return n * 0x1p-24 / (1 - n * 0x1p-24);
}

#define SHAPE(N, C, H, W, K, R, S, SH, SW, PH, PW, DH, DW, G)                                            \
        ((struct nn_conv2d) { .n = N, .c = C, .h = H, .w = W, .k = K, .r = R, .s = S, .stride_h = SH,     \
                              .stride_w = SW, .pad_h = PH, .pad_w = PW, .dilation_h = DH, .dilation_w = DW, \
                              .groups = G })

/* Odd sizes, 1×1, 3×3, 5×5 and 1×7 kernels, strides, padding, dilation,
 * groups and depthwise, a batch, and a dot product longer than one im2col
 * tile (4096·9 > 2^20 / 32 rows: split along the rows). */
static const struct nn_conv2d shapes[] = {
        SHAPE(1, 3, 7, 9, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1),
        SHAPE(2, 8, 11, 13, 6, 1, 1, 1, 1, 0, 0, 1, 1, 1),        /* pointwise: no im2col */
        SHAPE(1, 6, 15, 10, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1),
        SHAPE(1, 4, 17, 17, 8, 5, 5, 1, 1, 4, 4, 2, 2, 1),        /* dilation */
        SHAPE(1, 8, 9, 9, 12, 3, 3, 1, 1, 1, 1, 1, 1, 4),         /* groups */
        SHAPE(3, 16, 10, 12, 16, 3, 3, 1, 1, 1, 1, 1, 1, 16),     /* depthwise */
        SHAPE(1, 5, 12, 20, 7, 1, 7, 1, 3, 0, 3, 1, 1, 1),        /* asymmetric */
        SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1),
        SHAPE(1, 2, 6, 6, 3, 3, 3, 3, 3, 0, 0, 1, 1, 1),          /* stride = kernel */
        SHAPE(1, 3, 4, 4, 2, 3, 3, 1, 1, 3, 3, 1, 1, 1),          /* padding past the kernel */
        SHAPE(1, 4096, 3, 3, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1),      /* a long dot product */
        SHAPE(2, 32, 33, 31, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1),      /* several tiles per image */
};

/* ---- The engine's ops ---- */

TestSuite(conv_engine, .timeout = 120);

static void check_op(unsigned threads, const struct nn_conv2d *p, bool with_bias) {
        struct nn_backend *be;
        uint64_t nx = nn_conv2d_x_elems(p), nw = nn_conv2d_w_elems(p), ny = nn_conv2d_y_elems(p);
        float *x = random_floats(nx), *w = random_floats(nw), *b = with_bias ? random_floats(p->k) : NULL;
        double *ref = malloc(ny * sizeof(double)), *absref = malloc(ny * sizeof(double));
        double rho = gamma_n((double) nn_conv2d_dot_len(p) + 2);
        float *dx, *dw, *db = NULL, *dy, *y = malloc(ny * sizeof(float));
        char err[256];

        cr_assert_eq(nn_conv2d_validate(p, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(nn_cpu_backend_new(threads, &be), 0);
        dx = be->ops->alloc(be, nx);
        dw = be->ops->alloc(be, nw);
        dy = be->ops->alloc(be, ny);
        be->ops->write(be, dx, x, nx);
        be->ops->write(be, dw, w, nw);
        if (b) {
                db = be->ops->alloc(be, p->k);
                be->ops->write(be, db, b, p->k);
        }
        be->ops->conv2d(be, p, dx, dw, db, dy);
        be->ops->read(be, y, dy, ny);
        cr_assert_eq(be->ops->status(be), 0);

        reference(p, x, w, b, ref, absref);
        for (uint64_t i = 0; i < ny; i++) {
                double want = p->act == NN_ACT_SILU ? ref[i] / (1 + exp(-ref[i])) : ref[i];
                double tol = 2 * rho * absref[i] + (p->act == NN_ACT_SILU ? 1e-6 * (1 + fabs(ref[i])) : 0) + 1e-30;

                cr_assert_leq(fabs(y[i] - want), tol, "%ux%ux%ux%u k%u %ux%u g%u, output %llu: %.9g, expected %.9g",
                              p->n, p->c, p->h, p->w, p->k, p->r, p->s, p->groups, (unsigned long long) i, y[i], want);
        }
        be->ops->release(be, dx);
        be->ops->release(be, dw);
        be->ops->release(be, dy);
        if (db)
                be->ops->release(be, db);
        nn_backend_free(be);
        free(x);
        free(w);
        free(b);
        free(y);
        free(ref);
        free(absref);
}

Test(conv_engine, conv2d_matches_the_direct_definition_on_every_shape) {
        rng_state = 1;
        for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
                check_op(1, &shapes[i], i % 2 == 0);
                check_op(3, &shapes[i], i % 2 == 1);
        }
}

Test(conv_engine, conv2d_fuses_bias_and_silu) {
        struct nn_conv2d p = SHAPE(1, 6, 9, 9, 10, 3, 3, 1, 1, 1, 1, 1, 1, 2);

        p.act = NN_ACT_SILU;
        rng_state = 2;
        check_op(2, &p, true);
        check_op(2, &p, false);
}

Test(conv_engine, validate_names_what_is_wrong) {
        struct nn_conv2d p = SHAPE(1, 6, 9, 9, 10, 3, 3, 1, 1, 1, 1, 1, 1, 4);
        char err[256];

        cr_assert_eq(nn_conv2d_validate(&p, err, sizeof(err)), -EINVAL);
        cr_assert_not_null(strstr(err, "groups is 4"), "%s", err);
        p = SHAPE(1, 6, 3, 9, 10, 5, 3, 1, 1, 1, 1, 1, 1, 1);
        cr_assert_eq(nn_conv2d_validate(&p, err, sizeof(err)), 0, "a 5-tall kernel fits a padded 5-tall input");
        p.pad_h = 0;
        cr_assert_eq(nn_conv2d_validate(&p, err, sizeof(err)), -EINVAL);
        cr_assert_not_null(strstr(err, "larger than the padded input"), "%s", err);
        p = SHAPE(1, 6, 9, 9, 10, 3, 3, 0, 1, 1, 1, 1, 1, 1);
        cr_assert_eq(nn_conv2d_validate(&p, err, sizeof(err)), -EINVAL);
        cr_assert_not_null(strstr(err, "stride is 0"), "%s", err);
        p = SHAPE(1, 6, 9, 9, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        p.w = NN_CONV_DIM_MAX + 1;
        cr_assert_eq(nn_conv2d_validate(&p, err, sizeof(err)), -E2BIG);
        /* 131,073 × 32,769 output pixels: below 2^40, past BLAS's int. */
        p = SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1, 65536, 16384, 1, 1, 1);
        cr_assert_eq(nn_conv2d_validate(&p, err, sizeof(err)), -E2BIG);
        cr_assert_not_null(strstr(err, "2^31"), "%s", err);
}

Test(conv_engine, group_norm_matches_its_definition) {
        const size_t n = 2, c = 12, hw = 37, groups = 3, cg = c / groups, total = n * c * hw;
        float *x = random_floats(total), *gamma = random_floats(c), *beta = random_floats(c);
        float *y = malloc(total * sizeof(float)), *dx, *dy, *dg, *db;
        struct nn_backend *be;

        /* Values far from 0: a one-pass variance would lose digits. */
        for (size_t i = 0; i < total; i++)
                x[i] = 1000.0f + x[i];
        cr_assert_eq(nn_cpu_backend_new(2, &be), 0);
        dx = be->ops->alloc(be, total);
        dy = be->ops->alloc(be, total);
        dg = be->ops->alloc(be, c);
        db = be->ops->alloc(be, c);
        be->ops->write(be, dx, x, total);
        be->ops->write(be, dg, gamma, c);
        be->ops->write(be, db, beta, c);
        for (int silu = 0; silu < 2; silu++) {
                be->ops->group_norm(be, dy, dx, n, c, hw, groups, dg, db, 1e-5f, silu);
                be->ops->read(be, y, dy, total);
                for (size_t b = 0; b < n; b++)
                        for (size_t g = 0; g < groups; g++) {
                                const float *xg = x + (b * c + g * cg) * hw;
                                double mean = 0, var = 0;

                                for (size_t i = 0; i < cg * hw; i++)
                                        mean += xg[i];
                                mean /= (double) (cg * hw);
                                for (size_t i = 0; i < cg * hw; i++)
                                        var += (xg[i] - mean) * (xg[i] - mean);
                                var /= (double) (cg * hw);
                                for (size_t i = 0; i < cg * hw; i++) {
                                        size_t ch = g * cg + i / hw;
                                        double v = (xg[i] - mean) / sqrt(var + 1e-5) * gamma[ch] + beta[ch];

                                        if (silu)
                                                v = v / (1 + exp(-v));
                                        cr_assert_float_eq(y[(b * c + g * cg) * hw + i], v, 1e-4,
                                                           "image %zu group %zu element %zu", b, g, i);
                                }
                        }
        }
        /* In place, as a UNet applies it. */
        be->ops->group_norm(be, dx, dx, n, c, hw, groups, NULL, NULL, 1e-5f, false);
        be->ops->read(be, y, dx, total);
        for (size_t i = 0; i < total; i++)
                cr_assert(fabsf(y[i]) < 3.0f, "normalised values of uniform inputs lie within ±√3");
        be->ops->release(be, dx);
        be->ops->release(be, dy);
        be->ops->release(be, dg);
        be->ops->release(be, db);
        nn_backend_free(be);
        free(x);
        free(gamma);
        free(beta);
        free(y);
}

Test(conv_engine, upsample2x_repeats_each_pixel_twice_each_way) {
        const size_t planes = 3, h = 5, w = 7;
        float *x = random_floats(planes * h * w), *y = malloc(4 * planes * h * w * sizeof(float)), *dx, *dy;
        struct nn_backend *be;

        cr_assert_eq(nn_cpu_backend_new(2, &be), 0);
        dx = be->ops->alloc(be, planes * h * w);
        dy = be->ops->alloc(be, 4 * planes * h * w);
        be->ops->write(be, dx, x, planes * h * w);
        be->ops->upsample2x(be, dy, dx, planes, h, w);
        be->ops->read(be, y, dy, 4 * planes * h * w);
        for (size_t p = 0; p < planes; p++)
                for (size_t i = 0; i < 2 * h; i++)
                        for (size_t j = 0; j < 2 * w; j++)
                                cr_assert_eq(y[(p * 2 * h + i) * 2 * w + j], x[(p * h + i / 2) * w + j / 2]);
        be->ops->release(be, dx);
        be->ops->release(be, dy);
        nn_backend_free(be);
        free(x);
        free(y);
}

Test(conv_engine, cpu_backend_names_its_blas) {
        struct nn_backend *be;

        cr_assert_eq(nn_cpu_backend_new(1, &be), 0);
        cr_assert_not_null(strstr(be->ops->libraries(be), "OpenBLAS"), "%s", be->ops->libraries(be));
        nn_backend_free(be);
}

/* ---- The check ---- */

TestSuite(conv_check, .timeout = 120);

struct honest {
        struct nn_conv2d p;
        float *x, *w, *b, *y;
        double *ref, *absref;
};

static void honest_make(struct honest *h, const struct nn_conv2d *p, bool with_bias, unsigned threads) {
        uint64_t ny = nn_conv2d_y_elems(p);
        struct nn_backend *be;
        float *dx, *dw, *db = NULL, *dy;

        h->p = *p;
        h->x = random_floats(nn_conv2d_x_elems(p));
        h->w = random_floats(nn_conv2d_w_elems(p));
        h->b = with_bias ? random_floats(p->k) : NULL;
        h->y = malloc(ny * sizeof(float));
        h->ref = malloc(ny * sizeof(double));
        h->absref = malloc(ny * sizeof(double));
        cr_assert_eq(nn_cpu_backend_new(threads, &be), 0);
        dx = be->ops->alloc(be, nn_conv2d_x_elems(p));
        dw = be->ops->alloc(be, nn_conv2d_w_elems(p));
        dy = be->ops->alloc(be, ny);
        be->ops->write(be, dx, h->x, nn_conv2d_x_elems(p));
        be->ops->write(be, dw, h->w, nn_conv2d_w_elems(p));
        if (h->b) {
                db = be->ops->alloc(be, p->k);
                be->ops->write(be, db, h->b, p->k);
        }
        be->ops->conv2d(be, p, dx, dw, db, dy);
        be->ops->read(be, h->y, dy, ny);
        nn_backend_free(be);
        free(dx);
        free(dw);
        free(db);
        free(dy);
        reference(p, h->x, h->w, h->b, h->ref, h->absref);
}

static void honest_done(struct honest *h) {
        free(h->x);
        free(h->w);
        free(h->b);
        free(h->y);
        free(h->ref);
        free(h->absref);
}

/* The documented tolerance at output pixel pix of image n, group g, from
 * exact sums. */
static double pixel_tolerance(const struct honest *h, uint32_t n, uint32_t g, uint64_t pix) {
        const struct nn_conv2d *p = &h->p;
        uint64_t pixels = (uint64_t) nn_conv2d_out_h(p) * nn_conv2d_out_w(p), kg = p->k / p->groups;
        double habs = 0, babs = 0, yabs = 0, wabs = 0;

        for (uint64_t k = g * kg; k < (g + 1) * kg; k++) {
                uint64_t o = ((uint64_t) n * p->k + k) * pixels + pix;

                habs += h->absref[o] - (h->b ? fabs(h->b[k]) : 0);
                babs += h->b ? fabs(h->b[k]) : 0;
                yabs += fabs(h->y[o]);
                for (uint64_t q = 0; q < nn_conv2d_dot_len(p); q++)
                        wabs += fabs(h->w[k * nn_conv2d_dot_len(p) + q]);
        }
        return conv_check_tolerance(nn_conv2d_dot_len(p), (uint32_t) kg, 0, habs, babs, yabs, wabs);
}

Test(conv_check, accepts_honest_results_on_every_shape_and_thread_count) {
        struct nn_pool *pool = nn_pool_new(2);

        rng_state = 3;
        for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
                struct honest h;
                struct conv_check_report rep;
                int r;

                honest_make(&h, &shapes[i], i % 2 == 0, 1 + (unsigned) (i % 3));
                r = conv_check(&h.p, h.x, h.w, h.b, h.y, &(struct conv_check_params) { .rounds = 16 }, &rep);
                cr_assert_eq(r, 0, "shape %zu: %d, pixel %llu round %u: %g vs %g (tolerance %g)", i, r,
                             (unsigned long long) rep.pixel, rep.round, rep.lhs, rep.rhs, rep.tolerance);
                r = conv_check(&h.p, h.x, h.w, h.b, h.y, &(struct conv_check_params) { .rounds = 64, .pool = pool },
                               NULL);
                cr_assert_eq(r, 0, "shape %zu on the pool", i);
                honest_done(&h);
        }
        nn_pool_free(pool);
}

/* One output at a random position, off by 2–4 times the documented
 * tolerance at its pixel (so always caught): each of 250 trials fails. */
Test(conv_check, rejects_any_single_corrupted_output) {
        static const struct nn_conv2d tampered[] = {
                SHAPE(1, 8, 12, 12, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1),
                SHAPE(2, 6, 9, 11, 9, 3, 3, 2, 1, 1, 0, 1, 1, 3),
                SHAPE(1, 12, 8, 8, 12, 3, 3, 1, 1, 1, 1, 1, 1, 12),
                SHAPE(1, 16, 10, 10, 24, 1, 1, 1, 1, 0, 0, 1, 1, 1),
                SHAPE(1, 5, 20, 20, 7, 5, 5, 1, 1, 4, 4, 2, 2, 1),
        };
        struct nn_pool *pool = nn_pool_new(2);
        unsigned rejected = 0;

        rng_state = 4;
        for (size_t s = 0; s < sizeof(tampered) / sizeof(tampered[0]); s++) {
                struct honest h;
                uint64_t ny = nn_conv2d_y_elems(&tampered[s]);
                uint64_t pixels = (uint64_t) nn_conv2d_out_h(&tampered[s]) * nn_conv2d_out_w(&tampered[s]);

                honest_make(&h, &tampered[s], s % 2 == 0, 2);
                for (unsigned trial = 0; trial < 50; trial++) {
                        uint64_t o = rng_next() % ny, pix = o % pixels;
                        uint32_t k = (uint32_t) ((o / pixels) % h.p.k), n = (uint32_t) (o / pixels / h.p.k);
                        uint32_t g = k / (h.p.k / h.p.groups);
                        double tol = pixel_tolerance(&h, n, g, pix), factor = 2.0 + 2.0 * (rng_float() + 1) / 2;
                        float saved = h.y[o];
                        struct conv_check_report rep;
                        int r;

                        h.y[o] = (float) (saved + (rng_next() & 1 ? factor : -factor) * tol);
                        cr_assert_geq(fabs((double) h.y[o] - saved), 2.0 * tol);
                        r = conv_check(&h.p, h.x, h.w, h.b, h.y,
                                       &(struct conv_check_params) { .rounds = 4, .pool = trial % 2 ? pool : NULL },
                                       &rep);
                        cr_assert_eq(r, -EBADMSG, "shape %zu trial %u: output %llu off by %g (tolerance %g) accepted",
                                     s, trial, (unsigned long long) o, (double) h.y[o] - saved, tol);
                        cr_assert_eq(rep.verdict, CONV_CHECK_MISMATCH);
                        cr_assert_eq(rep.pixel, pix, "the report names the tampered pixel");
                        cr_assert_eq(rep.image, n);
                        cr_assert_eq(rep.group, g);
                        rejected++;
                        h.y[o] = saved;
                }
                cr_assert_eq(conv_check(&h.p, h.x, h.w, h.b, h.y, &(struct conv_check_params) { .rounds = 8 }, NULL),
                             0);
                honest_done(&h);
        }
        nn_pool_free(pool);
        cr_assert_eq(rejected, 250);
}

/* Every output of one channel scaled by 1.001: far below the worst-case
 * bound of one output, but a whole channel is off, and the check sees it
 * at every pixel where it exceeds the tolerance; a wrong bias and a
 * swapped pair of channels too. */
Test(conv_check, rejects_wrong_bias_swapped_channels_and_a_shifted_image) {
        const struct nn_conv2d p = SHAPE(1, 8, 10, 10, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        uint64_t pixels = 100;
        struct honest h;
        float *copy;

        rng_state = 5;
        honest_make(&h, &p, true, 1);
        copy = malloc(nn_conv2d_y_elems(&p) * sizeof(float));

        /* Another bias in channel 3. */
        memcpy(copy, h.y, nn_conv2d_y_elems(&p) * sizeof(float));
        for (uint64_t i = 0; i < pixels; i++)
                copy[3 * pixels + i] += 0.5f;
        cr_assert_eq(conv_check(&p, h.x, h.w, h.b, copy, &(struct conv_check_params) { .rounds = 8 }, NULL), -EBADMSG);

        /* Channels 0 and 1 swapped. */
        memcpy(copy, h.y, nn_conv2d_y_elems(&p) * sizeof(float));
        memcpy(copy, h.y + pixels, pixels * sizeof(float));
        memcpy(copy + pixels, h.y, pixels * sizeof(float));
        cr_assert_eq(conv_check(&p, h.x, h.w, h.b, copy, &(struct conv_check_params) { .rounds = 8 }, NULL), -EBADMSG);

        /* Every channel shifted by one pixel (as if padding were wrong). */
        for (uint64_t i = 0; i < nn_conv2d_y_elems(&p); i++)
                copy[i] = h.y[i % pixels == 0 ? i : i - 1];
        cr_assert_eq(conv_check(&p, h.x, h.w, h.b, copy, &(struct conv_check_params) { .rounds = 8 }, NULL), -EBADMSG);

        /* The honest result without the bias. */
        cr_assert_eq(conv_check(&p, h.x, h.w, NULL, h.y, &(struct conv_check_params) { .rounds = 8 }, NULL), -EBADMSG);
        cr_assert_eq(conv_check(&p, h.x, h.w, h.b, h.y, &(struct conv_check_params) { .rounds = 8 }, NULL), 0);
        free(copy);
        honest_done(&h);
}

/* Outputs no input could give: every value FLT_MAX (which would make
 * float sums of |y| infinite, and so the tolerance), or one output past
 * the largest possible; and inputs so large the check's sums could
 * overflow are refused. */
Test(conv_check, rejects_outputs_larger_than_the_inputs_allow) {
        const struct nn_conv2d p = SHAPE(1, 4, 6, 6, 8, 3, 3, 1, 1, 1, 1, 1, 1, 2);
        struct conv_check_report rep;
        struct honest h;

        rng_state = 13;
        honest_make(&h, &p, true, 1);
        for (uint64_t i = 0; i < nn_conv2d_y_elems(&p); i++)
                h.y[i] = FLT_MAX;
        cr_assert_eq(conv_check(&p, h.x, h.w, h.b, h.y, &(struct conv_check_params) { .rounds = 4 }, &rep), -EBADMSG);
        cr_assert_eq(rep.verdict, CONV_CHECK_TOO_LARGE);
        honest_done(&h);

        honest_make(&h, &p, true, 1);
        h.y[17] = 1e6f;
        cr_assert_eq(conv_check(&p, h.x, h.w, h.b, h.y, &(struct conv_check_params) { .rounds = 4 }, &rep), -EBADMSG);
        cr_assert_eq(rep.verdict, CONV_CHECK_TOO_LARGE);
        cr_assert_eq(rep.pixel, 17);
        h.y[17] = 0;
        h.w[0] = 1e37f;
        cr_assert_eq(conv_check(&p, h.x, h.w, h.b, h.y, &(struct conv_check_params) { .rounds = 4 }, NULL), -ERANGE);
        cr_assert_eq(conv_check_inputs_in_range(&p, h.x, h.w, h.b), -ERANGE);
        honest_done(&h);
}

Test(conv_check, names_a_non_finite_output_and_refuses_non_finite_inputs) {
        const struct nn_conv2d p = SHAPE(2, 4, 6, 6, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        struct conv_check_report rep;
        struct honest h;

        rng_state = 6;
        honest_make(&h, &p, false, 1);
        h.y[1 * 5 * 36 + 2 * 36 + 7] = NAN;
        cr_assert_eq(conv_check(&p, h.x, h.w, NULL, h.y, &(struct conv_check_params) { .rounds = 2 }, &rep), -EBADMSG);
        cr_assert_eq(rep.verdict, CONV_CHECK_NOT_FINITE);
        cr_assert_eq(rep.image, 1);
        cr_assert_eq(rep.channel, 2);
        cr_assert_eq(rep.pixel, 7);
        h.y[1 * 5 * 36 + 2 * 36 + 7] = 0;
        h.x[3] = INFINITY;
        cr_assert_eq(conv_check(&p, h.x, h.w, NULL, h.y, &(struct conv_check_params) { .rounds = 2 }, NULL), -EDOM);
        cr_assert_eq(conv_check(&p, h.x, h.w, NULL, h.y, &(struct conv_check_params) { .rounds = 0 }, NULL), -EINVAL);
        honest_done(&h);
}

/* ---- The skill ---- */

static void *module;
static const struct swarm_skill *skill;
static void *state;

static void skill_setup(void) {
        char path[PATH_MAX];
        const char *dir = getenv("SKILL_BUILD_DIR");
        swarm_skill_entry_fn entry;

        cr_assert_not_null(dir, "SKILL_BUILD_DIR is not set (run through meson test)");
        snprintf(path, sizeof(path), "%s/conv2d/conv2d.so", dir);
        module = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        cr_assert_not_null(module, "dlopen %s: %s", path, dlerror());
        entry = (swarm_skill_entry_fn) dlsym(module, SWARM_SKILL_ENTRY_SYMBOL);
        cr_assert_not_null(entry);
        skill = entry();
        state = NULL;
}

static void skill_teardown(void) {
        if (state)
                skill->fini(state);
        state = NULL;
        if (module)
                dlclose(module);
        module = NULL;
}

TestSuite(conv2d, .init = skill_setup, .fini = skill_teardown, .timeout = 120);

static int start_with(int64_t threads, int64_t budget) {
        struct swarm_values *c = swarm_values_new();
        int r;

        cr_assert_eq(swarm_values_set_string(c, "device", "cpu"), 0);
        if (threads)
                cr_assert_eq(swarm_values_set_int(c, "threads", threads), 0);
        if (budget)
                cr_assert_eq(swarm_values_set_int(c, "memory-budget", budget), 0);
        r = skill->init(c, &state);
        swarm_values_free(c);
        if (r < 0)
                state = NULL;
        return r;
}

static float *add_tensor(struct swarm_values *v, const char *name, uint32_t ndim, const uint64_t *shape) {
        struct swarm_tensor t;

        cr_assert_eq(swarm_values_add_tensor(v, name, SWARM_DTYPE_F32, ndim, shape, &t), 0);
        for (uint64_t i = 0; i < t.n_elements; i++)
                ((float *) t.data)[i] = rng_float();
        return t.data;
}

static struct swarm_values *make_job(const struct nn_conv2d *p, bool with_bias) {
        struct swarm_values *in = swarm_values_new();

        add_tensor(in, "x", 4, (const uint64_t[]) { p->n, p->c, p->h, p->w });
        add_tensor(in, "w", 4, (const uint64_t[]) { p->k, p->c / p->groups, p->r, p->s });
        if (with_bias)
                add_tensor(in, "bias", 1, (const uint64_t[]) { p->k });
        if (p->groups != 1)
                cr_assert_eq(swarm_values_set_int(in, "groups", p->groups), 0);
        if (p->stride_h != 1)
                cr_assert_eq(swarm_values_set_int(in, "stride", p->stride_h), 0);
        if (p->stride_w != p->stride_h)
                cr_assert_eq(swarm_values_set_int(in, "stride_w", p->stride_w), 0);
        if (p->pad_h != 0)
                cr_assert_eq(swarm_values_set_int(in, "padding", p->pad_h), 0);
        if (p->pad_w != p->pad_h)
                cr_assert_eq(swarm_values_set_int(in, "padding_w", p->pad_w), 0);
        if (p->dilation_h != 1)
                cr_assert_eq(swarm_values_set_int(in, "dilation", p->dilation_h), 0);
        if (p->dilation_w != p->dilation_h)
                cr_assert_eq(swarm_values_set_int(in, "dilation_w", p->dilation_w), 0);
        return in;
}

static const char *refusal(struct swarm_values *in) {
        static char msg[512];
        struct swarm_job job;
        int r;

        cr_assert_eq(swarm_job_init(&job, in, 0, NULL, NULL, NULL), 0);
        r = skill->execute(state, &job);
        cr_assert_lt(r, 0, "the job was accepted");
        snprintf(msg, sizeof(msg), "%s", swarm_job_error(&job) ?: "");
        swarm_job_done(&job);
        swarm_values_free(in);
        return msg;
}

Test(conv2d, runs_and_verifies_every_shape) {
        cr_assert_eq(start_with(2, 0), 0);
        rng_state = 7;
        for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
                struct swarm_values *in = make_job(&shapes[i], i % 2 == 1);
                uint64_t ny = nn_conv2d_y_elems(&shapes[i]);
                double *ref = malloc(ny * sizeof(double)), *absref = malloc(ny * sizeof(double));
                double rho = gamma_n((double) nn_conv2d_dot_len(&shapes[i]) + 3);
                struct swarm_tensor x, w, b, y;
                struct swarm_job job;
                bool has_b;

                cr_assert_eq(swarm_job_init(&job, in, 0, NULL, NULL, NULL), 0);
                cr_assert_eq(skill->execute(state, &job), 0, "shape %zu: %s", i, swarm_job_error(&job));
                cr_assert_eq(swarm_values_get_tensor(swarm_job_outputs(&job), "y", &y), 0);
                cr_assert_eq(y.ndim, 4);
                cr_assert_eq(y.shape[1], shapes[i].k);
                cr_assert_eq(y.shape[2], nn_conv2d_out_h(&shapes[i]));
                cr_assert_eq(y.shape[3], nn_conv2d_out_w(&shapes[i]));
                swarm_values_get_tensor(in, "x", &x);
                swarm_values_get_tensor(in, "w", &w);
                has_b = swarm_values_get_tensor(in, "bias", &b) == 0;
                reference(&shapes[i], x.data, w.data, has_b ? b.data : NULL, ref, absref);
                for (uint64_t o = 0; o < ny; o++)
                        cr_assert_leq(fabs(((float *) y.data)[o] - ref[o]), 2 * rho * absref[o] + 1e-30,
                                      "shape %zu output %llu", i, (unsigned long long) o);
                cr_assert_eq(skill->verify(state, &job), 0, "shape %zu: %s", i, swarm_job_error(&job));
                swarm_job_done(&job);
                swarm_values_free(in);
                free(ref);
                free(absref);
        }
}

/* What one thread computes, a worker on three verifies (the sums go in
 * other orders), and the other way round. */
Test(conv2d, results_cross_verify_between_thread_counts) {
        const struct nn_conv2d p = SHAPE(1, 24, 20, 20, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        struct swarm_values *in;
        struct swarm_job job;

        rng_state = 8;
        in = make_job(&p, true);
        for (int pass = 0; pass < 2; pass++) {
                cr_assert_eq(start_with(pass == 0 ? 1 : 3, 0), 0);
                cr_assert_eq(swarm_job_init(&job, in, 0, NULL, NULL, NULL), 0);
                cr_assert_eq(skill->execute(state, &job), 0);
                skill->fini(state);
                cr_assert_eq(start_with(pass == 0 ? 3 : 1, 0), 0);
                cr_assert_eq(skill->verify(state, &job), 0, "%s", swarm_job_error(&job));
                skill->fini(state);
                state = NULL;
                swarm_job_done(&job);
        }
        swarm_values_free(in);
}

Test(conv2d, verify_names_the_tampered_pixel) {
        const struct nn_conv2d p = SHAPE(1, 4, 8, 8, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        struct swarm_values *in;
        struct swarm_tensor y;
        struct swarm_job job;

        cr_assert_eq(start_with(1, 0), 0);
        rng_state = 9;
        in = make_job(&p, false);
        cr_assert_eq(swarm_job_init(&job, in, 0, NULL, NULL, NULL), 0);
        cr_assert_eq(skill->execute(state, &job), 0);
        cr_assert_eq(swarm_values_get_tensor(swarm_job_outputs(&job), "y", &y), 0);
        ((float *) y.data)[2 * 64 + 3 * 8 + 5] += 1.0f;
        cr_assert_eq(skill->verify(state, &job), -EBADMSG);
        cr_assert_not_null(strstr(swarm_job_error(&job), "pixel 29 (row 3, column 5)"), "%s", swarm_job_error(&job));
        ((float *) y.data)[2 * 64 + 3 * 8 + 5] = NAN;
        cr_assert_eq(skill->verify(state, &job), -EBADMSG);
        cr_assert_not_null(strstr(swarm_job_error(&job), "y(0, 2, pixel 29) is NaN"), "%s", swarm_job_error(&job));
        swarm_job_done(&job);
        swarm_values_free(in);
}

Test(conv2d, refuses_malformed_jobs_naming_the_input) {
        const struct nn_conv2d p = SHAPE(1, 6, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        struct swarm_values *in;
        const char *msg;

        cr_assert_eq(start_with(1, 1 << 20), 0);
        rng_state = 10;

        in = make_job(&p, false);
        cr_assert_eq(swarm_values_set_int(in, "groups", 4), 0);
        msg = refusal(in);
        cr_assert_not_null(strstr(msg, "channels / groups"), "%s", msg);

        in = swarm_values_new();
        add_tensor(in, "x", 4, (const uint64_t[]) { 1, 6, 8, 8 });
        add_tensor(in, "w", 4, (const uint64_t[]) { 4, 6, 3, 3 });
        add_tensor(in, "bias", 1, (const uint64_t[]) { 5 });
        msg = refusal(in);
        cr_assert_not_null(strstr(msg, "bias has 5 elements but w has 4 output channels"), "%s", msg);

        in = swarm_values_new();
        add_tensor(in, "x", 3, (const uint64_t[]) { 6, 8, 8 });
        add_tensor(in, "w", 4, (const uint64_t[]) { 4, 6, 3, 3 });
        msg = refusal(in);
        cr_assert_not_null(strstr(msg, "input x must have 4 dimensions"), "%s", msg);

        in = make_job(&p, false);
        cr_assert_eq(swarm_values_set_int(in, "stride", 0), 0);
        msg = refusal(in);
        cr_assert_not_null(strstr(msg, "input stride is 0"), "%s", msg);

        in = swarm_values_new();
        add_tensor(in, "x", 4, (const uint64_t[]) { 1, 6, 2, 8 });
        add_tensor(in, "w", 4, (const uint64_t[]) { 4, 6, 3, 3 });
        msg = refusal(in);
        cr_assert_not_null(strstr(msg, "larger than the padded input"), "%s", msg);

        in = make_job(&p, false);
        {
                struct swarm_tensor x;

                swarm_values_get_tensor(in, "x", &x);
                ((float *) x.data)[77] = NAN;
        }
        msg = refusal(in);
        cr_assert_not_null(strstr(msg, "input x holds NaN at element 77"), "%s", msg);

        in = make_job(&p, false);
        cr_assert_eq(swarm_values_set_string(in, "precision", "tf32"), 0);
        msg = refusal(in);
        cr_assert_not_null(strstr(msg, "tf32 needs a GPU"), "%s", msg);

        /* 1 MiB of budget: a 1×64×64×64 input alone is 1 MiB. */
        in = swarm_values_new();
        add_tensor(in, "x", 4, (const uint64_t[]) { 1, 64, 64, 64 });
        add_tensor(in, "w", 4, (const uint64_t[]) { 64, 64, 1, 1 });
        msg = refusal(in);
        cr_assert_not_null(strstr(msg, "over this worker's memory budget"), "%s", msg);
}

Test(conv2d, prices_by_flops_and_advertises_its_device) {
        const struct nn_conv2d p = SHAPE(1, 320, 64, 64, 320, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        struct swarm_values *in, *advert = swarm_values_new();
        const char *s;
        int64_t v;
        uint64_t price;

        cr_assert_eq(start_with(1, 0), 0);
        rng_state = 11;
        in = make_job(&p, false);
        /* 2 · 320 · 4096 · 2880 = 7.55 GFLOP at 1,000 per GFLOP. */
        cr_assert_eq(skill->price(state, in, &price), 0);
        cr_assert_eq(price, (uint64_t) ceil(2.0 * 320 * 4096 * 2880 / 1e9 * 1000));
        swarm_values_free(in);

        cr_assert_eq(skill->advertise(state, advert), 0);
        cr_assert_eq(swarm_values_get_string(advert, "device", &s), 0);
        cr_assert_str_eq(s, "cpu");
        cr_assert_eq(swarm_values_get_string(advert, "libraries", &s), 0);
        cr_assert_not_null(strstr(s, "OpenBLAS"), "%s", s);
        cr_assert_eq(swarm_values_get_int(advert, "throughput", &v), 0);
        cr_assert_gt(v, 100000000, "a CPU convolves at more than 0.1 GFLOP/s");
        cr_assert_eq(swarm_values_get_int(advert, "price", &v), 0);
        cr_assert_eq(v, 1000);
        swarm_values_free(advert);
}

Test(conv2d, a_cancelled_batch_stops_between_images) {
        const struct nn_conv2d p = SHAPE(4, 4, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        volatile uint32_t cancel = 1;
        struct swarm_values *in;
        struct swarm_job job;

        cr_assert_eq(start_with(1, 0), 0);
        rng_state = 12;
        in = make_job(&p, false);
        cr_assert_eq(swarm_job_init(&job, in, 0, &cancel, NULL, NULL), 0);
        cr_assert_eq(skill->execute(state, &job), -ECANCELED);
        cr_assert_not_null(strstr(swarm_job_error(&job), "cancelled after 0 of 4 images"), "%s",
                           swarm_job_error(&job));
        swarm_job_done(&job);
        swarm_values_free(in);
}

Test(conv2d, refuses_bad_config) {
        struct swarm_values *c = swarm_values_new();

        cr_assert_eq(swarm_values_set_string(c, "device", "tpu"), 0);
        cr_assert_eq(skill->init(c, &state), -EINVAL);
        swarm_values_free(c);
        state = NULL;
        c = swarm_values_new();
        cr_assert_eq(swarm_values_set_int(c, "verify-rounds", 0), 0);
        cr_assert_eq(skill->init(c, &state), -EINVAL);
        swarm_values_free(c);
        state = NULL;
}

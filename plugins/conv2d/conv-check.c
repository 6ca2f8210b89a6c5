/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* conv-check.h's check: the projected weights per group, then one unit of
 * work per (image, group, tile of output pixels) on the pool: im2col of
 * the tile, Z = (uᵀW)·col for all rounds at once and h = (Σ|W|)·|col| by
 * sgemm, then every pixel's rounds compared with uᵀ·y. */

#include <cblas.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "conv-check.h"
#include "nn-pool.h"

#define U 0x1p-24
/* An im2col tile holds about this many floats per thread (as the engine's). */
#define TILE_FLOATS ((size_t) 1 << 18)
#define TILE_PIXELS_MIN 32

static double gamma_n(double n) {
        return n * U / (1.0 - n * U);
}

double conv_check_tolerance(uint64_t dot_len, uint32_t k_per_group, double input_roundoff, double h, double bias_abs,
                            double y_abs) {
        double L = (double) dot_len, u_in = input_roundoff;
        double rho = (2 * u_in + u_in * u_in) + gamma_n(L + 3) * (1 + u_in) * (1 + u_in);

        return (CONV_CHECK_SIGMA * rho + gamma_n(L + 1)) * (1 + 2 * gamma_n(L)) * (h + bias_abs) +
               k_per_group * 0x1p-52 * y_abs +
               k_per_group * CONV_CHECK_SIGMA * (L + 2) * FLT_MIN + L * FLT_MIN;
}

struct group_proj {
        float *wu;              /* [rounds][L]: uᵀ·W_g */
        float *wabs;            /* [L]: Σ_k |W_kq| */
        double *bu;             /* [rounds]: uᵀ·b_g */
        double babs;            /* Σ_k |b_k| */
};

struct check_task {
        const struct nn_conv2d *p;
        const float *x, *y;
        const uint64_t *signs;  /* [k] */
        const struct conv_check_params *params;
        struct group_proj *proj;        /* [groups] */
        uint64_t pixels, L, kg, tile, tiles, units;
        /* The first failure, in unit order, so the report does not depend
         * on the thread count. */
        _Atomic uint64_t first_bad;
        struct conv_check_report *reports;      /* [units], written for bad units only */
        _Atomic int error;      /* -ENOMEM from a thread */
};

static bool sign_negative(const uint64_t *signs, uint64_t k, unsigned round) {
        return (signs[k] >> round) & 1;
}

static void check_unit(struct check_task *t, uint64_t u, float *col, float *z, float *h) {
        const struct nn_conv2d *p = t->p;
        const unsigned rounds = t->params->rounds;
        uint32_t image = (uint32_t) (u / ((uint64_t) p->groups * t->tiles));
        uint32_t group = (uint32_t) ((u / t->tiles) % p->groups);
        uint64_t p0 = (u % t->tiles) * t->tile, p1 = p0 + t->tile < t->pixels ? p0 + t->tile : t->pixels;
        uint64_t np = p1 - p0, rows = TILE_FLOATS / np;
        const struct group_proj *g = &t->proj[group];
        const float *yg = t->y + ((uint64_t) image * p->k + (uint64_t) group * t->kg) * t->pixels;

        if (rows > t->L)
                rows = t->L;
        if (rows == 0)
                rows = 1;
        for (uint64_t q0 = 0; q0 < t->L; q0 += rows) {
                uint64_t q1 = q0 + rows < t->L ? q0 + rows : t->L, nq = q1 - q0;
                float beta = q0 == 0 ? 0.0f : 1.0f;

                nn_conv2d_im2col(p, t->x, image, group, q0, q1, p0, p1, col, np, false);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) rounds, (int) np, (int) nq, 1.0f,
                            g->wu + q0, (int) t->L, col, (int) np, beta, z, (int) np);
                for (uint64_t i = 0; i < nq * np; i++)
                        col[i] = fabsf(col[i]);
                cblas_sgemv(CblasRowMajor, CblasTrans, (int) nq, (int) np, 1.0f, col, (int) np, g->wabs + q0, 1,
                            beta, h, 1);
        }

        for (uint64_t i = 0; i < np; i++) {
                uint64_t pix = p0 + i;
                double y_abs = 0, tol;

                for (uint64_t k = 0; k < t->kg; k++)
                        y_abs += fabs((double) yg[k * t->pixels + pix]);
                tol = conv_check_tolerance(t->L, (uint32_t) t->kg, t->params->input_roundoff, h[i], g->babs, y_abs);
                for (unsigned r = 0; r < rounds; r++) {
                        double lhs = 0, rhs = (double) z[r * np + i] + g->bu[r];

                        for (uint64_t k = 0; k < t->kg; k++) {
                                double v = yg[k * t->pixels + pix];
                                lhs += sign_negative(t->signs, group * t->kg + k, r) ? -v : v;
                        }
                        if (!(fabs(lhs - rhs) <= tol)) {
                                uint64_t seen = atomic_load(&t->first_bad);

                                t->reports[u] = (struct conv_check_report) {
                                        .verdict = CONV_CHECK_MISMATCH, .image = image, .group = group,
                                        .pixel = pix, .round = r, .lhs = lhs, .rhs = rhs, .tolerance = tol,
                                };
                                while (u < seen && !atomic_compare_exchange_weak(&t->first_bad, &seen, u))
                                        ;
                                return;
                        }
                }
        }
}

static void check_worker(void *arg, unsigned ith, unsigned nth) {
        struct check_task *t = arg;
        const unsigned rounds = t->params->rounds;
        float *col = malloc(TILE_FLOATS * sizeof(float)), *z = malloc(rounds * t->tile * sizeof(float));
        float *h = malloc(t->tile * sizeof(float));

        if (!col || !z || !h)
                atomic_store(&t->error, -ENOMEM);
        else
                /* Units are dealt round robin: a stretch of bad output
                 * pixels does not land on one thread. */
                for (uint64_t u = ith; u < t->units && atomic_load(&t->error) == 0; u += nth) {
                        if (u > atomic_load(&t->first_bad))
                                break;
                        check_unit(t, u, col, z, h);
                }
        free(col);
        free(z);
        free(h);
}

static bool all_finite(const float *v, uint64_t n) {
        float probe = 0;

        /* x·0 is NaN exactly when x is NaN or ±∞. */
        for (uint64_t i = 0; i < n; i++)
                probe += v[i] * 0.0f;
        return !isnan(probe);
}

static int draw_signs(uint64_t *signs, uint64_t n) {
        size_t bytes = n * sizeof(uint64_t), done = 0;

        while (done < bytes) {
                ssize_t got = getrandom((uint8_t *) signs + done, bytes - done, 0);
                if (got < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                done += (size_t) got;
        }
        return 0;
}

static void proj_free(struct group_proj *proj, uint32_t groups) {
        if (!proj)
                return;
        for (uint32_t g = 0; g < groups; g++) {
                free(proj[g].wu);
                free(proj[g].wabs);
                free(proj[g].bu);
        }
        free(proj);
}

/* uᵀ·W_g, Σ|W_g|, uᵀ·b_g and Σ|b_g|, in double and then rounded once. */
static int project(const struct nn_conv2d *p, const float *w, const float *bias, const uint64_t *signs,
                   unsigned rounds, uint64_t L, struct group_proj **ret) {
        uint64_t kg = p->k / p->groups;
        struct group_proj *proj = calloc(p->groups, sizeof(*proj));
        double *acc = calloc((rounds + 1) * L, sizeof(double));

        if (!proj || !acc) {
                free(proj);
                free(acc);
                return -ENOMEM;
        }
        for (uint32_t g = 0; g < p->groups; g++) {
                struct group_proj *gp = &proj[g];

                gp->wu = malloc(rounds * L * sizeof(float));
                gp->wabs = malloc(L * sizeof(float));
                gp->bu = calloc(rounds, sizeof(double));
                if (!gp->wu || !gp->wabs || !gp->bu) {
                        proj_free(proj, p->groups);
                        free(acc);
                        return -ENOMEM;
                }
                memset(acc, 0, (rounds + 1) * L * sizeof(double));
                for (uint64_t k = g * kg; k < (g + 1) * kg; k++) {
                        const float *wk = w + k * L;

                        for (unsigned r = 0; r < rounds; r++) {
                                double *a = acc + r * L;

                                if (sign_negative(signs, k, r))
                                        for (uint64_t q = 0; q < L; q++)
                                                a[q] -= wk[q];
                                else
                                        for (uint64_t q = 0; q < L; q++)
                                                a[q] += wk[q];
                                if (bias)
                                        gp->bu[r] += sign_negative(signs, k, r) ? -(double) bias[k] : bias[k];
                        }
                        for (uint64_t q = 0; q < L; q++)
                                acc[rounds * L + q] += fabs((double) wk[q]);
                        if (bias)
                                gp->babs += fabs((double) bias[k]);
                }
                for (uint64_t i = 0; i < rounds * L; i++)
                        gp->wu[i] = (float) acc[i];
                /* Rounded up, so that h computed from it stays an upper bound. */
                for (uint64_t q = 0; q < L; q++)
                        gp->wabs[q] = nextafterf((float) acc[rounds * L + q], INFINITY);
        }
        free(acc);
        *ret = proj;
        return 0;
}

int conv_check(const struct nn_conv2d *p, const float *x, const float *w, const float *bias, const float *y,
               const struct conv_check_params *params, struct conv_check_report *ret) {
        struct conv_check_report dummy;
        struct check_task t = { .p = p, .x = x, .y = y, .params = params };
        uint64_t *signs = NULL;
        unsigned nth = params->pool ? nn_pool_threads(params->pool) : 1;
        int r;

        if (!ret)
                ret = &dummy;
        memset(ret, 0, sizeof(*ret));
        t.L = nn_conv2d_dot_len(p);
        t.kg = p->k / p->groups;
        t.pixels = (uint64_t) nn_conv2d_out_h(p) * nn_conv2d_out_w(p);
        if (params->rounds < 1 || params->rounds > CONV_CHECK_ROUNDS_MAX || t.L > CONV_CHECK_DOT_MAX)
                return -EINVAL;

        if (!all_finite(x, nn_conv2d_x_elems(p)) || !all_finite(w, nn_conv2d_w_elems(p)) ||
            (bias && !all_finite(bias, p->k)))
                return -EDOM;
        if (!all_finite(y, nn_conv2d_y_elems(p))) {
                for (uint64_t i = 0; i < nn_conv2d_y_elems(p); i++)
                        if (!isfinite(y[i])) {
                                ret->verdict = CONV_CHECK_NOT_FINITE;
                                ret->image = (uint32_t) (i / (p->k * t.pixels));
                                ret->channel = (uint32_t) ((i / t.pixels) % p->k);
                                ret->pixel = i % t.pixels;
                                ret->rhs = y[i];
                                return -EBADMSG;
                        }
        }

        if (params->signs)
                t.signs = params->signs;
        else {
                signs = malloc(p->k * sizeof(uint64_t));
                if (!signs)
                        return -ENOMEM;
                r = draw_signs(signs, p->k);
                if (r < 0) {
                        free(signs);
                        return r;
                }
                t.signs = signs;
        }

        r = project(p, w, bias, t.signs, params->rounds, t.L, &t.proj);
        if (r < 0) {
                free(signs);
                return r;
        }

        /* Tiles as wide as fit all the im2col rows, narrow enough that
         * every thread has work. */
        t.tile = TILE_FLOATS / t.L;
        if (t.tile < TILE_PIXELS_MIN)
                t.tile = TILE_PIXELS_MIN;
        if ((uint64_t) p->n * p->groups < nth && t.tile > (t.pixels + nth - 1) / nth)
                t.tile = (t.pixels + nth - 1) / nth;
        if (t.tile > t.pixels)
                t.tile = t.pixels;
        if (t.tile > TILE_FLOATS)
                t.tile = TILE_FLOATS;
        t.tiles = (t.pixels + t.tile - 1) / t.tile;
        t.units = (uint64_t) p->n * p->groups * t.tiles;
        atomic_init(&t.first_bad, UINT64_MAX);
        atomic_init(&t.error, 0);
        t.reports = calloc(t.units, sizeof(*t.reports));
        if (!t.reports) {
                proj_free(t.proj, p->groups);
                free(signs);
                return -ENOMEM;
        }

        if (params->pool)
                nn_pool_run(params->pool, check_worker, &t);
        else
                check_worker(&t, 0, 1);

        r = atomic_load(&t.error);
        if (r == 0 && atomic_load(&t.first_bad) != UINT64_MAX) {
                *ret = t.reports[atomic_load(&t.first_bad)];
                r = -EBADMSG;
        }
        free(t.reports);
        proj_free(t.proj, p->groups);
        free(signs);
        return r;
}

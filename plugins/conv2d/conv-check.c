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
                            double y_abs, double w_abs) {
        double L = (double) dot_len, u_in = input_roundoff;
        double rho = (2 * u_in + u_in * u_in) + gamma_n(L + 3) * (1 + u_in) * (1 + u_in);

        return (CONV_CHECK_SIGMA * rho + gamma_n(L + 1) + 2 * gamma_n(k_per_group)) * (1 + 2 * gamma_n(L)) *
               (h + bias_abs) +
               2 * gamma_n((double) k_per_group + 1) * y_abs +
               k_per_group * CONV_CHECK_SIGMA * (L + 2) * FLT_MIN + (L + k_per_group) * FLT_MIN +
               CONV_CHECK_SIGMA * FLT_MIN * w_abs;
}

struct group_proj {
        float *u;               /* [rounds][k/groups]: the signs, ±1 */
        float *wu;              /* [rounds][L]: uᵀ·W_g */
        float *wabs;            /* [L]: Σ_k |W_kq| */
        double *bu;             /* [rounds]: uᵀ·b_g */
        double babs;            /* Σ_k |b_k| */
        double wsum;            /* Σ |W_g|: subnormal inputs a device flushes can move an output by FLT_MIN each */
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

/* A thread's buffers for one unit. */
struct unit_scratch {
        float *col;             /* [rows][tile]: im2col, then |im2col| */
        float *z;               /* [rounds][tile]: (uᵀ·W)·im2col */
        float *lhs;             /* [rounds][tile]: uᵀ·y */
        float *h;               /* [tile]: (Σ|W|)·|im2col| */
        double *y_abs;          /* [tile]: Σ_k |y| */
};

static bool sign_negative(const uint64_t *signs, uint64_t k, unsigned round) {
        return (signs[k] >> round) & 1;
}

static void check_unit(struct check_task *t, uint64_t u, struct unit_scratch *sc) {
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
        /* beta 0 need not read them, but an implementation may (0·NaN). */
        memset(sc->h, 0, np * sizeof(float));
        memset(sc->z, 0, rounds * np * sizeof(float));
        for (uint64_t q0 = 0; q0 < t->L; q0 += rows) {
                uint64_t q1 = q0 + rows < t->L ? q0 + rows : t->L, nq = q1 - q0;
                float beta = q0 == 0 ? 0.0f : 1.0f;

                nn_conv2d_im2col(p, t->x, image, group, q0, q1, p0, p1, sc->col, np, false);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) rounds, (int) np, (int) nq, 1.0f,
                            g->wu + q0, (int) t->L, sc->col, (int) np, beta, sc->z, (int) np);
                for (uint64_t i = 0; i < nq * np; i++)
                        sc->col[i] = fabsf(sc->col[i]);
                cblas_sgemv(CblasRowMajor, CblasTrans, (int) nq, (int) np, 1.0f, sc->col, (int) np, g->wabs + q0, 1,
                            beta, sc->h, 1);
        }
        /* uᵀ·y for every round, as a product with the ±1 matrix, and Σ|y|,
         * both reading y's rows in order. */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) rounds, (int) np, (int) t->kg, 1.0f, g->u,
                    (int) t->kg, yg + p0, (int) t->pixels, 0.0f, sc->lhs, (int) np);
        memset(sc->y_abs, 0, np * sizeof(double));
        for (uint64_t k = 0; k < t->kg; k++) {
                const float *yk = yg + k * t->pixels + p0;

                for (uint64_t i = 0; i < np; i++)
                        sc->y_abs[i] += fabsf(yk[i]);
        }

        for (uint64_t i = 0; i < np; i++) {
                double tol = conv_check_tolerance(t->L, (uint32_t) t->kg, t->params->input_roundoff, sc->h[i], g->babs,
                                                  sc->y_abs[i], g->wsum);

                for (unsigned r = 0; r < rounds; r++) {
                        double lhs = sc->lhs[r * np + i], rhs = (double) sc->z[r * np + i] + g->bu[r];

                        if (!(fabs(lhs - rhs) <= tol)) {
                                uint64_t seen = atomic_load(&t->first_bad);

                                t->reports[u] = (struct conv_check_report) {
                                        .verdict = CONV_CHECK_MISMATCH, .image = image, .group = group,
                                        .pixel = p0 + i, .round = r, .lhs = lhs, .rhs = rhs, .tolerance = tol,
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
        struct unit_scratch sc = {
                .col = malloc(TILE_FLOATS * sizeof(float)),
                .z = malloc(rounds * t->tile * sizeof(float)),
                .lhs = malloc(rounds * t->tile * sizeof(float)),
                .h = malloc(t->tile * sizeof(float)),
                .y_abs = malloc(t->tile * sizeof(double)),
        };

        if (!sc.col || !sc.z || !sc.lhs || !sc.h || !sc.y_abs)
                atomic_store(&t->error, -ENOMEM);
        else
                /* Units are dealt round robin: a stretch of bad output
                 * pixels does not land on one thread. */
                for (uint64_t u = ith; u < t->units && atomic_load(&t->error) == 0; u += nth) {
                        if (u > atomic_load(&t->first_bad))
                                break;
                        check_unit(t, u, &sc);
                }
        free(sc.col);
        free(sc.z);
        free(sc.lhs);
        free(sc.h);
        free(sc.y_abs);
}

bool conv_check_all_finite(const float *v, uint64_t n) {
        float probe = 0;

        /* x·0 is NaN exactly when x is NaN or ±∞. */
        for (uint64_t i = 0; i < n; i++)
                probe += v[i] * 0.0f;
        return !isnan(probe);
}

/* The largest |v[i]| (NaNs ignored), in 16 lanes so that it vectorises. */
static float max_abs(const float *v, uint64_t n) {
        float lane[16] = {}, m = 0;
        uint64_t i = 0;

        for (; i + 16 <= n; i += 16)
                for (unsigned t = 0; t < 16; t++) {
                        float a = fabsf(v[i + t]);

                        lane[t] = a > lane[t] ? a : lane[t];
                }
        for (; i < n; i++)
                m = fabsf(v[i]) > m ? fabsf(v[i]) : m;
        for (unsigned t = 0; t < 16; t++)
                m = lane[t] > m ? lane[t] : m;
        return m;
}

/* The largest output these inputs can give: L·max|x|·max|w| + max|b|. */
static double output_bound(const struct nn_conv2d *p, const float *x, const float *w, const float *bias) {
        return (double) nn_conv2d_dot_len(p) * (double) max_abs(x, nn_conv2d_x_elems(p)) *
                       (double) max_abs(w, nn_conv2d_w_elems(p)) +
               (bias ? (double) max_abs(bias, p->k) : 0);
}

static int bound_in_range(const struct nn_conv2d *p, double bound) {
        /* The check sums k/groups outputs, and projections of k/groups
         * weights over L inputs, in float: none may overflow. */
        return bound * ((double) (p->k / p->groups) + 1) * 4 < FLT_MAX ? 0 : -ERANGE;
}

int conv_check_inputs_in_range(const struct nn_conv2d *p, const float *x, const float *w, const float *bias) {
        return bound_in_range(p, output_bound(p, x, w, bias));
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
                free(proj[g].u);
                free(proj[g].wu);
                free(proj[g].wabs);
                free(proj[g].bu);
        }
        free(proj);
}

/* Per group: the signs as a ±1 matrix U, U·W_g (by sgemm: rounds/(k/g)
 * of the convolution's work, so it must run at sgemm's speed), Σ|W_g|
 * rounded up, and uᵀ·b_g and Σ|b_g| in double. */
static int project(const struct nn_conv2d *p, const float *w, const float *bias, const uint64_t *signs,
                   unsigned rounds, uint64_t L, struct group_proj **ret) {
        uint64_t kg = p->k / p->groups;
        struct group_proj *proj = calloc(p->groups, sizeof(*proj));
        /* Σ|W| in float errs by at most γ(k_g) relatively: raised by twice that. */
        float up = (float) (1 + 2 * gamma_n((double) kg));

        if (!proj)
                return -ENOMEM;
        for (uint32_t g = 0; g < p->groups; g++) {
                struct group_proj *gp = &proj[g];
                const float *wg = w + (uint64_t) g * kg * L;

                gp->u = malloc(rounds * kg * sizeof(float));
                gp->wu = malloc(rounds * L * sizeof(float));
                gp->wabs = calloc(L, sizeof(float));
                gp->bu = calloc(rounds, sizeof(double));
                if (!gp->u || !gp->wu || !gp->wabs || !gp->bu) {
                        proj_free(proj, p->groups);
                        return -ENOMEM;
                }
                for (unsigned r = 0; r < rounds; r++)
                        for (uint64_t k = 0; k < kg; k++) {
                                bool neg = sign_negative(signs, g * kg + k, r);

                                gp->u[r * kg + k] = neg ? -1.0f : 1.0f;
                                if (bias)
                                        gp->bu[r] += neg ? -(double) bias[g * kg + k] : bias[g * kg + k];
                        }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) rounds, (int) L, (int) kg, 1.0f, gp->u,
                            (int) kg, wg, (int) L, 0.0f, gp->wu, (int) L);
                for (uint64_t k = 0; k < kg; k++) {
                        const float *wk = wg + k * L;

                        for (uint64_t q = 0; q < L; q++)
                                gp->wabs[q] += fabsf(wk[q]);
                        if (bias)
                                gp->babs += fabs((double) bias[g * kg + k]);
                }
                for (uint64_t q = 0; q < L; q++) {
                        gp->wabs[q] = nextafterf(gp->wabs[q] * up, INFINITY);
                        gp->wsum += gp->wabs[q];
                }
        }
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

        if (!conv_check_all_finite(x, nn_conv2d_x_elems(p)) || !conv_check_all_finite(w, nn_conv2d_w_elems(p)) ||
            (bias && !conv_check_all_finite(bias, p->k)))
                return -EDOM;
        /* No honest output is larger than L·max|x|·max|w| + max|b| (and
         * its rounding): a larger one is wrong, whatever the rounds say
         * (and would overflow the check's float sums). */
        {
                double L = (double) t.L, bound = output_bound(p, x, w, bias);

                if (bound_in_range(p, bound) < 0)
                        return -ERANGE;
                bound = bound * (1 + 4 * gamma_n(L + 3)) + (L + 2) * FLT_MIN;
                /* Where, only when there is one. */
                for (uint64_t i = 0, n = (double) max_abs(y, nn_conv2d_y_elems(p)) > bound ? nn_conv2d_y_elems(p) : 0;
                     i < n; i++)
                        if (fabs((double) y[i]) > bound) {
                                ret->verdict = CONV_CHECK_TOO_LARGE;
                                ret->image = (uint32_t) (i / (p->k * t.pixels));
                                ret->channel = (uint32_t) ((i / t.pixels) % p->k);
                                ret->pixel = i % t.pixels;
                                ret->rhs = y[i];
                                ret->tolerance = bound;
                                return -EBADMSG;
                        }
        }
        if (!conv_check_all_finite(y, nn_conv2d_y_elems(p))) {
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

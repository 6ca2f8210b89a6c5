/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Freivalds' check with a float32 rounding-error tolerance.
 *
 * Why the tolerance is what it is.  Let Ĉ be an honest provider's float32
 * result and C = A·B the exact product of the f32 inputs.  One element is a
 * dot product of length k; whatever the summation order (recursive, blocked,
 * split-K, FMA or not: every order is a tree of at most k−1 additions), the
 * standard bound (Higham, Accuracy and Stability of Numerical Algorithms,
 * §3.1) is
 *
 *     |ĉ_ij − c_ij| ≤ γ(k)·(|A|·|B|)_ij,   γ(k) = k·u / (1 − k·u),  u = 2^-24.
 *
 * We use γ(k+2) to allow for a rounding in the alpha/beta scaling and a final
 * store.  With reduced-precision inputs (tf32, bf16) each input is first
 * rounded with unit roundoff u_in, so every product carries a relative error
 * of at most 2·u_in + u_in², and the magnitudes grow by (1 + u_in)²:
 *
 *     ρ = 2·u_in + u_in² + γ(k+2)·(1 + u_in)².
 *
 * Subnormals may be flushed to zero (GPUs do): each of the ≤ 2k+2 operations
 * then loses at most FLT_MIN in absolute terms, φ = (2k+2)·FLT_MIN.  The
 * per-element bound is e_ij = σ·(ρ·(|A||B|)_ij + φ) with σ = 2 as headroom
 * for what the model leaves out (hardware that truncates rather than rounds
 * to tf32 has twice the input error; extended intermediates rounded twice).
 *
 * Row i of the check compares z_i = (A·(B·x))_i with w_i = (Ĉ·x)_i; their
 * difference is r_i = Σ_j (c_ij − ĉ_ij)·x_j.  Two bounds hold:
 *   - always: |r_i| ≤ Σ_j e_ij = σρ·h_i + nσφ = T_i, with h_i = (|A|·|B|·1)_i
 *     computed in O(mk + kn) since |x| = 1;
 *   - over our choice of x, which the provider did not know: r_i is a
 *     Rademacher sum, so by Hoeffding P(|r_i| > s·‖e_i‖₂) ≤ 2·e^(−s²/2),
 *     and by Cauchy–Schwarz ‖e_i‖₂ ≤ σρ·‖a_i‖₂·‖B‖_F + √n·σφ (= H_i / s).
 * With s = 12 that is 2·e^-72 ≈ 10^-31 per row and round.  H_i is the
 * tighter one for wide matrices (it grows as √n rather than n).
 *
 * The check's own rounding.  Where the CPU has AVX-512, the products run in
 * float (freivalds-pass.c: all rounds at once, X being n×rounds, one read
 * of A, B and C each, in blocks of rows split between threads).  There the
 * sums are short: each SIMD lane adds at most RUN terms in float, at most
 * RUNS such sums are added in float, and those in double, so a sum of L
 * terms is within E(L)·(sum of their magnitudes), E(L) ≤ (RUN + RUNS + 1)·u
 * (freivalds.h gives it exactly).  Products of ±1 are exact; B·x is rounded
 * to float once more before A multiplies it.  So ŷ_l is within e_y·g_l of
 * (B·x)_l, e_y = E(n) + u·(1 + E(n)), ẑ_i within (e_y + E(k)·(1 + e_y))·h_i
 * of (A·(B·x))_i, and ŵ_i within E(n)·Σ_j |ĉ_ij| of (Ĉ·x)_i; their sum, plus
 * FLT_MIN for each operation that may underflow, is added to the
 * tolerance.  The magnitudes (h_i, the norms, Σ_j |ĉ_ij|) are float sums
 * too, within about 2^-17 of the truth; they are raised by 2^-10.  When
 * that error would be more than 1/FREIVALDS_FLOAT_SHARE of the honest
 * bound's (small k against n), or on CPUs without AVX-512, or when a float
 * sum overflowed or met a NaN, the check runs in double instead: products
 * of f32 values are exact in double, and the sums add at most (n + k)·2^-53·
 * h_i to z_i and n·2^-53·Σ_j |ĉ_ij| to w_i, in any summation order; twice
 * that is added to the tolerance.  The products are dgemm calls on panels of
 * rows converted to double.

 * What it catches: flipping x_j changes w_i by 2·(ĉ_ij − c_ij), so if any
 * element of row i is off by more than tol_i from the exact product, at most
 * one of the two signs of x_j passes: each round rejects with probability at
 * least 1/2, and all rounds together with at least 1 − 2^-rounds.  A single
 * corrupted element off by |δ| > 2·tol_i fails every round, since the honest
 * rest of the row contributes at most tol_i. */

#include <cblas.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "freivalds-pass.h"
#include "freivalds.h"
#include "gemm.h"

#define DOUBLE_U 0x1p-53
/* Doubles per converted panel of rows: small enough to stay in cache
 * between the conversion and the dgemm that reads it. */
#define PANEL_ELEMENTS ((uint64_t) 1 << 15)

double freivalds_element_bound(uint64_t k, double input_roundoff) {
        double ku = (double) (k + 2) * FREIVALDS_U;
        double gamma = ku / (1.0 - ku);
        double ui = input_roundoff;

        return 2.0 * ui + ui * ui + gamma * (1.0 + ui) * (1.0 + ui);
}

static int random_fill(void *buf, size_t size) {
        uint8_t *p = buf;

        while (size > 0) {
                ssize_t l = getrandom(p, size, 0);
                if (l < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += l;
                size -= (size_t) l;
        }
        return 0;
}

static void *malloc_array(uint64_t n, uint64_t size) {
        uint64_t bytes;

        if (__builtin_mul_overflow(n, size, &bytes) || bytes > SIZE_MAX)
                return NULL;
        return malloc(bytes ? bytes : 1);
}

/* The loops below work in fixed groups of LANES elements with one
 * accumulator per lane: with a constant trip count and no reduction inside
 * a group, compilers vectorise them at -O2, and the lanes' sums do not wait
 * on one another.  Only bounds are made of these sums, so the order of
 * summation does not matter. */
#define LANES 8

static double lanes_sum(const double s[static LANES]) {
        return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* Converts n floats to double; false if any is NaN or infinite.  The test
 * is arithmetic, x·0 being NaN exactly for NaN and ±∞ (compilers may not
 * fold it without -ffast-math), so that the loop stays vectorisable. */
static bool convert_finite(const float *restrict src, double *restrict dst, uint64_t n) {
        double probe[LANES] = {};
        uint64_t i = 0;

        for (; i + LANES <= n; i += LANES)
                for (unsigned t = 0; t < LANES; t++) {
                        double d = src[i + t];

                        dst[i + t] = d;
                        probe[t] += d * 0.0;
                }
        for (; i < n; i++) {
                dst[i] = src[i];
                probe[0] += dst[i] * 0.0;
        }
        return !isnan(lanes_sum(probe));
}

/* Whether n floats are all finite; as convert_finite(). */
static bool all_finite(const float *src, uint64_t n) {
        float probe[LANES] = {};
        uint64_t i = 0;

        for (; i + LANES <= n; i += LANES)
                for (unsigned t = 0; t < LANES; t++)
                        probe[t] += src[i + t] * 0.0f;
        for (; i < n; i++)
                probe[0] += src[i] * 0.0f;
        for (unsigned t = 1; t < LANES; t++)
                probe[0] += probe[t];
        return !isnan(probe[0]);
}

/* Σ|v_i|·w_i and Σv_i². */
static void row_weighted_sums(const double *v, const double *w, uint64_t n, double *abs_dot, double *norm2) {
        double a[LANES] = {}, q[LANES] = {};
        uint64_t i = 0;

        for (; i + LANES <= n; i += LANES)
                for (unsigned t = 0; t < LANES; t++) {
                        a[t] += fabs(v[i + t]) * w[i + t];
                        q[t] += v[i + t] * v[i + t];
                }
        for (; i < n; i++) {
                a[0] += fabs(v[i]) * w[i];
                q[0] += v[i] * v[i];
        }
        *abs_dot = lanes_sum(a);
        *norm2 = lanes_sum(q);
}

/* Σ|v_i| and Σv_i². */
static void row_sums(const double *v, uint64_t n, double *abs_sum, double *norm2) {
        double a[LANES] = {}, q[LANES] = {};
        uint64_t i = 0;

        for (; i + LANES <= n; i += LANES)
                for (unsigned t = 0; t < LANES; t++) {
                        a[t] += fabs(v[i + t]);
                        q[t] += v[i + t] * v[i + t];
                }
        for (; i < n; i++) {
                a[0] += fabs(v[i]);
                q[0] += v[i] * v[i];
        }
        *abs_sum = lanes_sum(a);
        *norm2 = lanes_sum(q);
}

/* ret[rows×rounds] = panel[rows×cols] · m[cols×rounds], all row-major. */
static void panel_product(const double *panel, const double *m, double *ret, uint64_t rows, uint64_t cols,
                          unsigned rounds) {
        /* Dimensions below 2^31: the caller validated the matrices for
         * BLAS, and panels and rounds are smaller still. */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) rows, (int) rounds, (int) cols,
                    1.0, panel, (int) cols, m, (int) rounds, 0.0, ret, (int) rounds);
}

/* min(T_i, H_i) of freivalds.h, rho and phi with σ applied. */
static double honest_bound(double rho, double phi, uint64_t n, double sqrt_n, double h, double a_norm,
                           double b_norm) {
        double worst = rho * h + (double) n * phi;
        double hoeffding = FREIVALDS_HOEFFDING_S * (rho * a_norm * b_norm + sqrt_n * phi);

        return fmin(worst, hoeffding);
}

/* The check in double, with dgemm: for CPUs without AVX-512, and to say
 * where a NaN or an infinity is when the float check met one. */
static int check_double(const float *a, const float *b, const float *c, uint64_t m, uint64_t k, uint64_t n,
                        unsigned rounds, double input_roundoff, const uint64_t *signs,
                        struct freivalds_report *ret) {
        _cleanup_free_ double *x = NULL, *y = NULL, *g = NULL, *panel = NULL, *z = NULL, *w = NULL;
        _cleanup_free_ double *h = NULL, *a_norm2 = NULL;
        double rho, phi, sqrt_n, b_norm2 = 0, b_norm;
        uint64_t step, wide;

        /* Panels of whole rows of A, B or C, whichever is widest. */
        wide = k > n ? k : n;
        step = PANEL_ELEMENTS / wide;
        if (step < 1)
                step = 1;

        x = malloc_array(n, (uint64_t) rounds * sizeof(double));
        y = malloc_array(k, (uint64_t) rounds * sizeof(double));
        g = malloc_array(k, sizeof(double));
        panel = malloc_array(step, wide * sizeof(double));
        z = malloc_array(step, (uint64_t) rounds * sizeof(double));
        w = malloc_array(step, (uint64_t) rounds * sizeof(double));
        h = malloc_array(step, sizeof(double));
        a_norm2 = malloc_array(step, sizeof(double));
        if (!x || !y || !g || !panel || !z || !w || !h || !a_norm2)
                return -ENOMEM;

        for (uint64_t j = 0; j < n; j++)
                for (unsigned q = 0; q < rounds; q++)
                        x[j * rounds + q] = (signs[j] >> q) & 1 ? -1.0 : 1.0;

        /* Y = B·X, g = |B|·1, ‖B‖_F². */
        for (uint64_t l0 = 0; l0 < k; l0 += step) {
                uint64_t rows = k - l0 < step ? k - l0 : step;

                if (!convert_finite(b + l0 * n, panel, rows * n))
                        return -EDOM;
                for (uint64_t l = 0; l < rows; l++) {
                        double norm2;

                        row_sums(panel + l * n, n, &g[l0 + l], &norm2);
                        b_norm2 += norm2;
                }
                panel_product(panel, x, y + l0 * rounds, rows, n, rounds);
        }
        b_norm = sqrt(b_norm2);

        rho = FREIVALDS_SIGMA * freivalds_element_bound(k, input_roundoff);
        phi = FREIVALDS_SIGMA * (double) (2 * k + 2) * FLT_MIN;
        sqrt_n = sqrt((double) n);

        for (uint64_t i0 = 0; i0 < m; i0 += step) {
                uint64_t rows = m - i0 < step ? m - i0 : step;

                /* Z = A·Y, h = |A|·g, ‖a_i‖². */
                if (!convert_finite(a + i0 * k, panel, rows * k))
                        return -EDOM;
                for (uint64_t i = 0; i < rows; i++)
                        row_weighted_sums(panel + i * k, g, k, &h[i], &a_norm2[i]);
                panel_product(panel, y, z, rows, k, rounds);

                /* W = C·X; C comes from the provider and may hold anything. */
                if (!convert_finite(c + i0 * n, panel, rows * n))
                        for (uint64_t e = 0; e < rows * n; e++)
                                if (!isfinite(c[i0 * n + e])) {
                                        *ret = (struct freivalds_report) {
                                                .verdict = FREIVALDS_NOT_FINITE,
                                                .row = i0 + e / n,
                                                .col = e % n,
                                                .rhs = c[i0 * n + e],
                                        };
                                        return -EBADMSG;
                                }
                panel_product(panel, x, w, rows, n, rounds);

                for (uint64_t i = 0; i < rows; i++) {
                        double c_abs, c_norm2, tol;

                        row_sums(panel + i * n, n, &c_abs, &c_norm2);
                        tol = honest_bound(rho, phi, n, sqrt_n, h[i], sqrt(a_norm2[i]), b_norm) +
                              2.0 * DOUBLE_U * ((double) (n + k + 2) * h[i] + (double) (n + 1) * c_abs);

                        for (unsigned q = 0; q < rounds; q++) {
                                double lhs = z[i * rounds + q], rhs = w[i * rounds + q];

                                /* Written so that a NaN difference fails too. */
                                if (!(fabs(lhs - rhs) <= tol)) {
                                        *ret = (struct freivalds_report) {
                                                .verdict = FREIVALDS_MISMATCH,
                                                .row = i0 + i,
                                                .round = q,
                                                .lhs = lhs,
                                                .rhs = rhs,
                                                .tolerance = tol,
                                        };
                                        return -EBADMSG;
                                }
                        }
                }
        }

        *ret = (struct freivalds_report) { .verdict = FREIVALDS_ACCEPTED };
        return 0;
}

/* ---- The check in float (AVX-512), with threads ---- */

/* Rows of A and C per block: the products and sums of one block are
 * compared before the next is read. */
#define BLOCK_ROWS 64
/* Relative slack on the row sums that scale the tolerance: they are
 * computed in float, within γ(RUN) + γ(RUNS) + u ≈ 2^-17 of the truth. */
#define SUM_SLACK (1.0 + 0x1p-10)

static double gamma_of(double j, double u) {
        return j * u / (1.0 - j * u);
}

/* Relative error bound of a sum of len terms as freivalds-pass.c adds them
 * (see there): runs of at most RUN terms per lane in float, at most RUNS
 * runs in float, then double. */
static double pass_error(uint64_t len) {
        uint64_t vectors = (len + FREIVALDS_PASS_LANES - 1) / FREIVALDS_PASS_LANES;
        uint64_t runs = (vectors + FREIVALDS_PASS_RUN - 1) / FREIVALDS_PASS_RUN;
        uint64_t flushes = (runs + FREIVALDS_PASS_RUNS - 1) / FREIVALDS_PASS_RUNS;
        double e1 = gamma_of((double) (vectors < FREIVALDS_PASS_RUN ? vectors : FREIVALDS_PASS_RUN), FREIVALDS_U);
        double e2 = gamma_of((double) (runs < FREIVALDS_PASS_RUNS ? runs : FREIVALDS_PASS_RUNS), FREIVALDS_U);
        double e3 = gamma_of((double) (flushes + 4), DOUBLE_U);

        return (1 + e1) * (1 + e2) * (1 + e3) - 1;
}

struct float_check {
        const float *a, *b, *c;
        uint64_t m, k, n, ldk, ldn;
        unsigned rounds, nq;
        const float *x;         /* X^T: nq × ldn, ±1 then zeros */
        float *y;               /* Y^T: nq × ldk */
        float *g;               /* |B|·1 rounded to float, ldk */
        double *y_sum;          /* k × nq: B·X */
        double *g_sum, *b_norm2;        /* k */
        /* Tolerance: σρ, σφ, √n, ‖B‖_F, and the check's own error factors. */
        double rho, phi, sqrt_n, b_norm, e_z, e_w;
};

struct float_worker {
        const struct float_check *fc;
        uint64_t row0, row1;
        void *scratch;
        double *z, *w, *h, *a_norm2, *c_abs;    /* BLOCK_ROWS × nq and BLOCK_ROWS */
        bool finite;
        bool failed;
        struct freivalds_report report;
};

/* Y = B·X, g = |B|·1, and the rows' ‖b_l‖². */
static void float_worker_b(struct float_worker *wk) {
        const struct float_check *fc = wk->fc;
        struct freivalds_pass pass = {
                .m = fc->b, .len = fc->n, .v = fc->x, .ld = fc->ldn, .rounds_padded = fc->nq, .want_norm2 = true,
        };

        wk->finite = freivalds_pass_avx512(&pass, wk->row0, wk->row1, fc->y_sum + wk->row0 * fc->nq,
                                           fc->g_sum + wk->row0, fc->b_norm2 + wk->row0, wk->scratch);
}

/* Z = A·Y and W = C·X block by block, compared as they come. */
static void float_worker_ac(struct float_worker *wk) {
        const struct float_check *fc = wk->fc;
        const unsigned nq = fc->nq;
        struct freivalds_pass pass_a = {
                .m = fc->a, .len = fc->k, .v = fc->y, .ld = fc->ldk, .rounds_padded = nq, .weight = fc->g,
                .want_norm2 = true,
        }, pass_c = {
                .m = fc->c, .len = fc->n, .v = fc->x, .ld = fc->ldn, .rounds_padded = nq,
        };

        wk->finite = true;
        for (uint64_t i0 = wk->row0; i0 < wk->row1; i0 += BLOCK_ROWS) {
                uint64_t i1 = wk->row1 - i0 < BLOCK_ROWS ? wk->row1 : i0 + BLOCK_ROWS;

                if (!freivalds_pass_avx512(&pass_a, i0, i1, wk->z, wk->h, wk->a_norm2, wk->scratch) ||
                    !freivalds_pass_avx512(&pass_c, i0, i1, wk->w, wk->c_abs, NULL, wk->scratch)) {
                        wk->finite = false;
                        return;
                }

                for (uint64_t i = 0; i < i1 - i0; i++) {
                        double h = wk->h[i] * SUM_SLACK, a_norm = sqrt(wk->a_norm2[i]) * SUM_SLACK;
                        double c_abs = wk->c_abs[i] * SUM_SLACK, tol;

                        /* The check's own error, then a flushed subnormal
                         * in each of its operations (freivalds.h). */
                        tol = honest_bound(fc->rho, fc->phi, fc->n, fc->sqrt_n, h, a_norm, fc->b_norm) +
                              fc->e_z * h + fc->e_w * c_abs +
                              2.0 * FLT_MIN * (sqrt((double) fc->k) * a_norm + (double) (fc->k + fc->n + 2));

                        for (unsigned q = 0; q < fc->rounds; q++) {
                                double lhs = wk->z[i * nq + q], rhs = wk->w[i * nq + q];

                                if (!(fabs(lhs - rhs) <= tol)) {
                                        wk->failed = true;
                                        wk->report = (struct freivalds_report) {
                                                .verdict = FREIVALDS_MISMATCH,
                                                .row = i0 + i,
                                                .round = q,
                                                .lhs = lhs,
                                                .rhs = rhs,
                                                .tolerance = tol,
                                        };
                                        return;
                                }
                        }
                }
        }
}

static void *float_worker_b_thread(void *p) {
        float_worker_b(p);
        return NULL;
}

static void *float_worker_ac_thread(void *p) {
        float_worker_ac(p);
        return NULL;
}

/* Splits rows into workers' shares, runs all but the first on threads of
 * their own and the first here.  A thread that cannot be started runs here
 * too. */
static void run_workers(struct float_worker *wk, unsigned workers, uint64_t rows, void *(*fn)(void *)) {
        pthread_t thread[FREIVALDS_THREADS_MAX];
        bool started[FREIVALDS_THREADS_MAX] = {};

        for (unsigned t = 0; t < workers; t++) {
                /* Shares in multiples of the pass's tile. */
                uint64_t tiles = (rows + FREIVALDS_PASS_ROWS - 1) / FREIVALDS_PASS_ROWS;
                uint64_t r0 = tiles * t / workers * FREIVALDS_PASS_ROWS, r1 = tiles * (t + 1) / workers * FREIVALDS_PASS_ROWS;

                wk[t].row0 = r0 < rows ? r0 : rows;
                wk[t].row1 = r1 < rows ? r1 : rows;
        }
        for (unsigned t = 1; t < workers; t++)
                if (wk[t].row0 < wk[t].row1)
                        started[t] = pthread_create(&thread[t], NULL, fn, &wk[t]) == 0;
        for (unsigned t = 0; t < workers; t++)
                if (!started[t] && wk[t].row0 < wk[t].row1)
                        fn(&wk[t]);
        for (unsigned t = 1; t < workers; t++)
                if (started[t])
                        pthread_join(thread[t], NULL);
}

static void *aligned_array(uint64_t n, uint64_t size) {
        uint64_t bytes;
        void *p;

        if (__builtin_mul_overflow(n, size, &bytes) || bytes > SIZE_MAX - 64)
                return NULL;
        /* aligned_alloc() wants a multiple of the alignment. */
        p = aligned_alloc(64, (bytes + 63) & ~(uint64_t) 63);
        if (p)
                memset(p, 0, bytes);
        return p;
}

static void free_workers(struct float_worker *wk, unsigned workers) {
        for (unsigned t = 0; t < workers; t++) {
                free(wk[t].scratch);
                free(wk[t].z);
        }
}

/* 0 or -EBADMSG as check_double(), -EAGAIN when a sum was not finite (a
 * NaN or infinity in a, b or c, or float overflow): check_double() then
 * finds out which. */
static int check_float(const float *a, const float *b, const float *c, uint64_t m, uint64_t k, uint64_t n,
                       unsigned rounds, double input_roundoff, unsigned threads, const uint64_t *signs,
                       struct freivalds_report *ret) {
        _cleanup_free_ float *x = NULL, *y = NULL, *g = NULL;
        _cleanup_free_ double *y_sum = NULL, *g_sum = NULL, *b_norm2 = NULL;
        struct float_worker wk[FREIVALDS_THREADS_MAX] = {};
        const unsigned nq = (rounds + FREIVALDS_PASS_ROUNDS - 1) / FREIVALDS_PASS_ROUNDS * FREIVALDS_PASS_ROUNDS;
        const uint64_t ldk = (k + FREIVALDS_PASS_LANES - 1) / FREIVALDS_PASS_LANES * FREIVALDS_PASS_LANES;
        const uint64_t ldn = (n + FREIVALDS_PASS_LANES - 1) / FREIVALDS_PASS_LANES * FREIVALDS_PASS_LANES;
        struct float_check fc;
        double b_norm2_sum = 0, e_y;
        unsigned workers = threads < 1 ? 1 : threads > FREIVALDS_THREADS_MAX ? FREIVALDS_THREADS_MAX : threads;
        int r = 0;

        /* The check's own rounding (freivalds.h): ŷ is within e_y·(|B|·1)
         * of B·x, so ẑ within (e_y + E(k)·(1 + e_y))·h of A·(B·x), and ŵ
         * within E(n)·Σ_j |ĉ_ij| of Ĉ·x. */
        e_y = pass_error(n) + FREIVALDS_U * (1 + pass_error(n));
        fc = (struct float_check) {
                .a = a, .b = b, .c = c, .m = m, .k = k, .n = n, .ldk = ldk, .ldn = ldn,
                .rounds = rounds, .nq = nq,
                .rho = FREIVALDS_SIGMA * freivalds_element_bound(k, input_roundoff),
                .phi = FREIVALDS_SIGMA * (double) (2 * k + 2) * FLT_MIN,
                .sqrt_n = sqrt((double) n),
                .e_z = e_y + pass_error(k) * (1 + e_y),
                .e_w = pass_error(n),
        };
        /* Small k against n: the float sums' error would be a good part of
         * the tolerance; double keeps it negligible. */
        if (fc.e_z + fc.e_w > fc.rho / FREIVALDS_FLOAT_SHARE)
                return -EAGAIN;

        x = aligned_array((uint64_t) nq * ldn, sizeof(float));
        y = aligned_array((uint64_t) nq * ldk, sizeof(float));
        g = aligned_array(ldk, sizeof(float));
        y_sum = malloc_array(k, (uint64_t) nq * sizeof(double));
        g_sum = malloc_array(k, sizeof(double));
        b_norm2 = malloc_array(k, sizeof(double));
        if (!x || !y || !g || !y_sum || !g_sum || !b_norm2)
                return -ENOMEM;
        for (unsigned t = 0; t < workers; t++) {
                wk[t].scratch = aligned_array(freivalds_pass_scratch(nq), 1);
                wk[t].z = malloc_array(BLOCK_ROWS, (2 * (uint64_t) nq + 3) * sizeof(double));
                if (!wk[t].scratch || !wk[t].z) {
                        free_workers(wk, workers);
                        return -ENOMEM;
                }
                wk[t].w = wk[t].z + BLOCK_ROWS * nq;
                wk[t].h = wk[t].w + BLOCK_ROWS * nq;
                wk[t].a_norm2 = wk[t].h + BLOCK_ROWS;
                wk[t].c_abs = wk[t].a_norm2 + BLOCK_ROWS;
                wk[t].fc = &fc;
        }

        for (unsigned q = 0; q < rounds; q++)
                for (uint64_t j = 0; j < n; j++)
                        x[q * ldn + j] = (signs[j] >> q) & 1 ? -1.0f : 1.0f;

        fc.x = x;
        fc.y = y;
        fc.g = g;
        fc.y_sum = y_sum;
        fc.g_sum = g_sum;
        fc.b_norm2 = b_norm2;

        run_workers(wk, workers, k, float_worker_b_thread);
        for (unsigned t = 0; t < workers; t++)
                if (!wk[t].finite && wk[t].row0 < wk[t].row1)
                        r = -EAGAIN;
        if (r < 0) {
                free_workers(wk, workers);
                return r;
        }

        /* ŷ = Y rounded to float, the right-hand side of the next pass. */
        for (uint64_t l = 0; l < k; l++) {
                for (unsigned q = 0; q < rounds; q++)
                        y[q * ldk + l] = (float) y_sum[l * nq + q];
                g[l] = (float) g_sum[l];
                b_norm2_sum += b_norm2[l];
        }

        fc.b_norm = sqrt(b_norm2_sum) * SUM_SLACK;

        run_workers(wk, workers, m, float_worker_ac_thread);
        *ret = (struct freivalds_report) { .verdict = FREIVALDS_ACCEPTED };
        for (unsigned t = 0; t < workers && r == 0; t++) {
                if (wk[t].row0 >= wk[t].row1)
                        continue;
                if (!wk[t].finite)
                        r = -EAGAIN;
                else if (wk[t].failed) {
                        /* Shares are in row order: the first failure is the lowest row. */
                        *ret = wk[t].report;
                        r = -EBADMSG;
                }
        }
        free_workers(wk, workers);
        /* A worker stops at its first mismatch, so not all of a may have
         * been read; a NaN there makes the job malformed, not C wrong. */
        if (r == -EBADMSG && !all_finite(a, m * k))
                return -EAGAIN;
        return r;
}

int freivalds_check(const float *a, const float *b, const float *c, uint64_t m, uint64_t k, uint64_t n,
                    const struct freivalds_params *params, struct freivalds_report *ret) {
        _cleanup_free_ uint64_t *drawn = NULL;
        struct freivalds_report unused;
        const uint64_t *signs;
        int r;

        if (!params || params->rounds < 1 || params->rounds > FREIVALDS_ROUNDS_MAX)
                return -EINVAL;
        if (m == 0 || k == 0 || n == 0 || k > FREIVALDS_K_MAX || m > INT32_MAX || n > INT32_MAX)
                return -EINVAL;
        if (!(params->input_roundoff >= 0 && params->input_roundoff < 0.5))
                return -EINVAL;
        if (!ret)
                ret = &unused;

        signs = params->signs;
        if (!signs) {
                drawn = malloc_array(n, sizeof(uint64_t));
                if (!drawn)
                        return -ENOMEM;
                r = random_fill(drawn, n * sizeof(uint64_t));
                if (r < 0)
                        return r;
                signs = drawn;
        }

        if (!params->force_double && freivalds_pass_supported()) {
                r = check_float(a, b, c, m, k, n, params->rounds, params->input_roundoff, params->threads, signs,
                                ret);
                if (r != -EAGAIN)
                        return r;
        }
        return check_double(a, b, c, m, k, n, params->rounds, params->input_roundoff, signs, ret);
}

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
 * The check itself runs in double: products of f32 values are exact in
 * double, and the sums add at most (n + k)·2^-53·h_i to z_i and
 * n·2^-53·Σ_j |ĉ_ij| to w_i, in any summation order; twice that is added to
 * the tolerance.  The products are dgemm calls on panels of rows converted
 * to double, with all rounds at once (X is n×rounds): verification reads A,
 * B and C once each and costs about as much as converting them.
 *
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
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

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

int freivalds_check(const float *a, const float *b, const float *c, uint64_t m, uint64_t k, uint64_t n,
                    const struct freivalds_params *params, struct freivalds_report *ret) {
        _cleanup_free_ uint64_t *drawn = NULL;
        _cleanup_free_ double *x = NULL, *y = NULL, *g = NULL, *panel = NULL, *z = NULL, *w = NULL;
        _cleanup_free_ double *h = NULL, *a_norm2 = NULL;
        struct freivalds_report unused;
        const uint64_t *signs;
        double rho, phi, sqrt_n, b_norm2 = 0, b_norm;
        uint64_t step, wide;
        unsigned rounds;
        int r;

        if (!params || params->rounds < 1 || params->rounds > FREIVALDS_ROUNDS_MAX)
                return -EINVAL;
        if (m == 0 || k == 0 || n == 0 || k > FREIVALDS_K_MAX || m > INT32_MAX || n > INT32_MAX)
                return -EINVAL;
        if (!(params->input_roundoff >= 0 && params->input_roundoff < 0.5))
                return -EINVAL;
        rounds = params->rounds;
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

        rho = FREIVALDS_SIGMA * freivalds_element_bound(k, params->input_roundoff);
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
                        double c_abs, c_norm2, worst, hoeffding, tol;

                        row_sums(panel + i * n, n, &c_abs, &c_norm2);
                        worst = rho * h[i] + (double) n * phi;
                        hoeffding = FREIVALDS_HOEFFDING_S * (rho * sqrt(a_norm2[i]) * b_norm + sqrt_n * phi);
                        tol = fmin(worst, hoeffding) +
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

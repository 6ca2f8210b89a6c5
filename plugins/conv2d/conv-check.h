/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Checking y ≟ conv(x, w) + bias without recomputing it: Freivalds' check
 * on the im2col form.  Per group, the convolution is Y = W · im2col(X) + b
 * (W: k/groups × L, L = c/groups · r · s; im2col(X): L × oh·ow).  Each
 * round draws u ∈ {−1, +1}^(k/groups) and compares, at every output pixel
 * p, uᵀ·Y[:, p] with (uᵀ·W)·im2col(X)[:, p] + uᵀ·b.  The projected weights
 * uᵀ·W are rounds × L numbers, so all rounds together cost one small
 * product of rounds × L × oh·ow: rounds / (k/groups) of the convolution,
 * with im2col made a tile at a time and never whole.  Pure: no jobs, no
 * logging; getrandom(2) when no signs are given.
 *
 * Tolerance.  An honest convolution computes each output as a sum of L
 * products plus the bias, in any order, with float rounding (and TF32
 * rounding of the inputs if allowed): |ŷ_kp − y_kp| ≤ ρ·(h_kp + |b_k|) +
 * (L + 2)·FLT_MIN, with h_kp = Σ_q |w_kq|·|col_qp| and ρ as gemm's
 * freivalds_element_bound(L + 1, u_in).  Summed over the group's channels
 * with any signs, and with the check's own rounding (the projection, h,
 * the product, uᵀ·y and S all in float, by sgemm):
 *
 *     tol_p = (σ·ρ + γ(L + 1) + 2γ(k_g))·(1 + 2γ(L))·(h_p + B) + 2γ(k_g + 1)·S_p
 *             + k_g·σ·(L + 2)·FLT_MIN + (L + k_g)·FLT_MIN
 *
 * where h_p = Σ_k h_kp = Σ_q (Σ_k |w_kq|)·|col_qp|, B = Σ_k |b_k|, S_p =
 * Σ_k |ŷ_kp|, k_g = k/groups, σ = 2 and γ(j) = j·2^-24 / (1 − j·2^-24).
 *
 * Before any round, an output larger than any these inputs can give
 * (L·max|x|·max|w| + max|b|, with rounding) is rejected, and inputs that
 * large are refused: the float sums below cannot overflow.
 *
 * What it catches: one output off by |δ| > 2·tol_p is rejected in every
 * round; outputs off in ways that cancel in one round are rejected with
 * probability ≥ 1 − 2^-rounds.  An honest result is never rejected (the
 * bound is a worst case, not a likelihood), as long as the provider sums
 * products: Winograd and FFT algorithms round differently and are not
 * used by the engine's CUDA backend for that reason. */

#include <stdbool.h>
#include <stdint.h>

#include "nn-conv.h"

struct nn_pool;

#define CONV_CHECK_ROUNDS_MAX 64
#define CONV_CHECK_SIGMA 2.0
/* γ(L + 2) must stay well below 1 for the bound to mean anything. */
#define CONV_CHECK_DOT_MAX (UINT64_C(1) << 22)

enum conv_check_verdict {
        CONV_CHECK_ACCEPTED,
        CONV_CHECK_MISMATCH,    /* |lhs − rhs| > tolerance at (image, group, pixel), round */
        CONV_CHECK_NOT_FINITE,  /* y(image, channel, pixel) is NaN or infinite */
        CONV_CHECK_TOO_LARGE,   /* y(image, channel, pixel) is larger than any output of these inputs (tolerance) */
};

struct conv_check_report {
        enum conv_check_verdict verdict;
        uint32_t image;
        uint32_t group;         /* MISMATCH */
        uint32_t channel;       /* NOT_FINITE */
        uint64_t pixel;         /* oh · out_w + ow */
        unsigned round;         /* MISMATCH: 0-based */
        double lhs;             /* uᵀ·y at the pixel */
        double rhs;             /* (uᵀ·W)·im2col + uᵀ·b */
        double tolerance;
};

struct conv_check_params {
        unsigned rounds;                /* 1 … CONV_CHECK_ROUNDS_MAX */
        double input_roundoff;          /* 0 for f32, 2^-11 for TF32 */
        /* k words, bit t of signs[k] the sign of u_k in round t (1: −1);
         * NULL draws them from getrandom(2).  For tests. */
        const uint64_t *signs;
        struct nn_pool *pool;           /* threads to run on; NULL: the caller's only */
};

/* x, w, bias (NULL: none) and y in the layouts of nn-conv.h; p valid.
 * 0 when y is accepted; -EBADMSG when rejected (*ret, if not NULL, says
 * where and why); -EDOM when x, w or bias holds a NaN or infinity;
 * -ERANGE when x, w and bias are so large that the check's float sums
 * could overflow (conv_check_inputs_in_range()); -EINVAL for bad
 * parameters (no rounds, a dot product longer than CONV_CHECK_DOT_MAX);
 * -ENOMEM; a getrandom() error. */
int conv_check(const struct nn_conv2d *p, const float *x, const float *w, const float *bias, const float *y,
               const struct conv_check_params *params, struct conv_check_report *ret);

/* Whether every v[i] is finite (one vectorised pass). */
bool conv_check_all_finite(const float *v, uint64_t n);

/* tol_p above, from h_p, B, S_p and Σ|W_g| (for subnormal inputs a
 * device flushes to zero: σ·FLT_MIN·Σ|W_g| more): for tests, which
 * compute h_p exactly. */
double conv_check_tolerance(uint64_t dot_len, uint32_t k_per_group, double input_roundoff, double h, double bias_abs,
                            double y_abs, double w_abs);

/* 0 when the check's float sums cannot overflow for these inputs
 * (L·max|x|·max|w| + max|b|, times (k/groups + 1), times 4, below
 * FLT_MAX); else -ERANGE.  A provider refuses such jobs up front. */
int conv_check_inputs_in_range(const struct nn_conv2d *p, const float *x, const float *w, const float *bias);

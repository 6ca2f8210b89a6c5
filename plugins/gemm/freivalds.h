/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Freivalds' check of a float32 matrix product, C ≟ A·B, in O(rounds·(mk +
 * kn + mn)) instead of O(mkn).  Pure: no jobs, no logging, no globals; the
 * only side effect is reading getrandom(2) when no signs are given.
 *
 * Each round draws a Rademacher vector x ∈ {-1, +1}^n and compares, row by
 * row and in double precision, z = A·(B·x) with w = C·x.  Row i is accepted
 * when |z_i − w_i| ≤ tol_i, where tol_i bounds the rounding error an honest
 * float32 GEMM may make (see freivalds.c for the derivation):
 *
 *     ρ     = (2·u_in + u_in²) + γ(k+2)·(1 + u_in)²,  γ(j) = j·u / (1 − j·u),
 *             u = 2^-24, u_in = input_roundoff (0 for fp32)
 *     h_i   = Σ_l |a_il| · Σ_j |b_lj|                    (= (|A|·|B|·1)_i)
 *     T_i   = σ·ρ·h_i + n·σ·φ                            (worst case, σ = 2)
 *     H_i   = s·(σ·ρ·‖a_i‖₂·‖B‖_F + √n·σ·φ)              (Hoeffding, s = 12)
 *     tol_i = min(T_i, H_i) + the error bound of the check's own doubles
 *
 * where φ = (2k + 2)·FLT_MIN allows for subnormals flushed to zero.
 *
 * What it catches: a single element of C off by |δ| > 2·tol_i is rejected in
 * every round; any C with an element off by more than tol_i from the exact
 * product is rejected with probability ≥ 1 − 2^-rounds.  An honest result is
 * rejected with probability below 2·m·rounds·e^-72 (< 10^-22 for any size
 * that fits in memory), and never when T_i ≤ H_i. */

#include <stdint.h>

#define FREIVALDS_ROUNDS_MAX 64

/* Round-off unit of float32 and the check's safety factors, exposed so that
 * tests can compute the same bound. */
#define FREIVALDS_U 0x1p-24
#define FREIVALDS_SIGMA 2.0
#define FREIVALDS_HOEFFDING_S 12.0
/* γ(k + 2) needs (k + 2)·u < 1; past this the bound says nothing. */
#define FREIVALDS_K_MAX (UINT64_C(1) << 22)

enum freivalds_verdict {
        FREIVALDS_ACCEPTED,
        FREIVALDS_MISMATCH,     /* |lhs − rhs| > tolerance in row, round */
        FREIVALDS_NOT_FINITE,   /* c(row, col) is NaN or infinite */
};

struct freivalds_report {
        enum freivalds_verdict verdict;
        uint64_t row;
        uint64_t col;           /* FREIVALDS_NOT_FINITE only */
        unsigned round;         /* FREIVALDS_MISMATCH only: 0-based */
        double lhs;             /* (A·(B·x))_row */
        double rhs;             /* (C·x)_row */
        double tolerance;       /* tol_row */
};

struct freivalds_params {
        unsigned rounds;        /* 1 … FREIVALDS_ROUNDS_MAX */
        double input_roundoff;  /* u_in: 0, 2^-11 (tf32), 2^-8 (bf16) */
        /* n words, bit r of signs[j] the sign of x_j in round r (1 = −1);
         * NULL draws them from getrandom(2).  For tests. */
        const uint64_t *signs;
};

/* a is m×k, b k×n, c m×n, row-major and dense; ret may be NULL.  Returns
 * 0 when C is accepted, -EBADMSG when it is rejected (*ret says where and
 * why), -EDOM when a or b holds a NaN or an infinity (so that callers need
 * not scan them first), -EINVAL for bad parameters (k beyond
 * FREIVALDS_K_MAX, no rounds), -ENOMEM, or a getrandom() error. */
int freivalds_check(const float *a, const float *b, const float *c, uint64_t m, uint64_t k, uint64_t n,
                    const struct freivalds_params *params, struct freivalds_report *ret);

/* ρ above: the relative error bound of one element of an honest product. */
double freivalds_element_bound(uint64_t k, double input_roundoff);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Freivalds' check of a float32 matrix product, C ≟ A·B, in O(rounds·(mk +
 * kn + mn)) instead of O(mkn).  Pure: no jobs, no logging, no globals; the
 * only side effects are reading getrandom(2) when no signs are given and
 * the threads it starts and joins.
 *
 * Each round draws a Rademacher vector x ∈ {-1, +1}^n and compares, row by
 * row, z = A·(B·x) with w = C·x.  Row i is accepted when |z_i − w_i| ≤
 * tol_i, where tol_i bounds the rounding error an honest float32 GEMM may
 * make plus that of the check itself (see freivalds.c for the derivation):
 *
 *     ρ     = (2·u_in + u_in²) + γ(k+2)·(1 + u_in)²,  γ(j) = j·u / (1 − j·u),
 *             u = 2^-24, u_in = input_roundoff (0 for fp32)
 *     h_i   = Σ_l |a_il| · Σ_j |b_lj|                    (= (|A|·|B|·1)_i)
 *     T_i   = σ·ρ·h_i + n·σ·φ                            (worst case, σ = 2)
 *     H_i   = s·(σ·ρ·‖a_i‖₂·‖B‖_F + √n·σ·φ)              (Hoeffding, s = 12)
 *     tol_i = min(T_i, H_i) + ε_i
 *
 * where φ = (2k + 2)·FLT_MIN allows for subnormals flushed to zero, and ε_i
 * bounds the check's own rounding.  Where the CPU has AVX-512 the check runs
 * in float (FMA), summing in lanes (FREIVALDS_FLOAT_*: runs of at most RUN
 * terms per lane, at most RUNS runs, then double), and
 *
 *     E(L)  = (1 + γ(v))·(1 + γ(r))·(1 + γ_d(f + 4)) − 1,   the error of a sum
 *             of L terms: v = min(RUN, ⌈L/16⌉), r = min(RUNS, ⌈L/(16·RUN)⌉),
 *             f = ⌈L/(16·RUN·RUNS)⌉, γ_d with u = 2^-53
 *     e_y   = E(n) + u·(1 + E(n))                          (ŷ = B·x in float)
 *     ε_i   = (e_y + E(k)·(1 + e_y))·h_i + E(n)·Σ_j |ĉ_ij|
 *             + 2·FLT_MIN·(√k·‖a_i‖₂ + k + n + 2)
 *
 * with h_i, ‖a_i‖₂, ‖B‖_F and Σ_j |ĉ_ij| (also summed in float) raised by
 * 2^-10 so that they are upper bounds.  E(L) ≤ (v + r + 1)·u·(1 + 2^-10):
 * at most about 130·u whatever the size, against σ·ρ ≈ 2·k·u.  The float
 * check runs only when its own error is small next to the honest one,
 * e_y + E(k)·(1 + e_y) + E(n) ≤ σ·ρ / FREIVALDS_FLOAT_SHARE; otherwise (k
 * small against n, CPUs without AVX-512, a float sum that overflowed) it
 * runs in double, with ε_i = 2·2^-53·((n + k + 2)·h_i + (n + 1)·Σ_j |ĉ_ij|).
 * Either way, for n ≤ 2^26·k,
 *
 *     tol_i ≤ (min(T_i, H_i) + σ·ρ·(h_i + Σ_j |ĉ_ij|) / FREIVALDS_FLOAT_SHARE)
 *             ·(1 + 2^-9) + 2·FLT_MIN·(√k·‖a_i‖₂ + k + n + 2),
 *
 * at most about min(T_i, H_i) + T_i/4 for an honest row.

 * What it catches: a single element of C off by |δ| > 2·tol_i is rejected in
 * every round; any C with an element off by more than tol_i from the exact
 * product is rejected with probability ≥ 1 − 2^-rounds.  An honest result is
 * rejected with probability below 2·m·rounds·e^-72 (< 10^-22 for any size
 * that fits in memory), and never when T_i ≤ H_i. */

#include <stdbool.h>
#include <stdint.h>

#define FREIVALDS_ROUNDS_MAX 64
#define FREIVALDS_THREADS_MAX 64

/* Round-off unit of float32 and the check's safety factors, exposed so that
 * tests can compute the same bound. */
#define FREIVALDS_U 0x1p-24
#define FREIVALDS_SIGMA 2.0
#define FREIVALDS_HOEFFDING_S 12.0
/* The float check's summation (freivalds-pass.c): lanes per vector, terms
 * per lane in one float run, runs per float sum. */
#define FREIVALDS_FLOAT_LANES 16
#define FREIVALDS_FLOAT_RUN 64
#define FREIVALDS_FLOAT_RUNS 64
/* The float check runs when its own error is at most 1/SHARE of σ·ρ. */
#define FREIVALDS_FLOAT_SHARE 8.0
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
        unsigned threads;       /* threads to run on; 0 or 1: the caller's only */
        bool force_double;      /* the check in double even where float runs; for tests */
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

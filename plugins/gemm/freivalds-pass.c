/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The float32 inner loop of Freivalds' check, in AVX-512 (compiled for it
 * function by function, run only where the CPU has it).
 *
 * Summation order, on which the check's error bound rests: lane t of a
 * vector accumulator sums the terms j ≡ t (mod 16) of a row, in order, in
 * float, with at most FREIVALDS_PASS_RUN terms per run (FMA or separate
 * multiply and add: either way one run's error is within γ(RUN) of the sum
 * of its terms' magnitudes).  A run's sum is added to a float second-level
 * sum of at most FREIVALDS_PASS_RUNS runs; those are converted to double,
 * the 16 lanes added in a tree of depth 4 and the results added up in
 * double.  The thin products are compute-bound: a tile of 4 rows × 5 rounds
 * keeps 20 accumulators in registers and loads 9 vectors per 20 FMAs. */

#include <stddef.h>

#include "freivalds-pass.h"

#define ROWS FREIVALDS_PASS_ROWS
#define ROUNDS FREIVALDS_PASS_ROUNDS
#define LANES FREIVALDS_PASS_LANES
#define RUN FREIVALDS_PASS_RUN
#define RUNS FREIVALDS_PASS_RUNS

uint64_t freivalds_pass_scratch(unsigned rounds_padded) {
        /* Second-level float sums: ROWS × (rounds_padded + 2) vectors; double
         * sums: ROWS × (rounds_padded + 2). */
        return (uint64_t) ROWS * (rounds_padded + 2) * (LANES * sizeof(float) + sizeof(double));
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))
#define INLINE_AVX512 __attribute__((target("avx512f"), always_inline)) static inline

bool freivalds_pass_supported(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f");
}

/* Lane-wise sum of a vector of floats in double, in a fixed tree. */
INLINE_AVX512 double lanes_to_double(__m512 v) {
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));

        return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
}

/* One group of ROUNDS rounds over vectors [v0, v1) of the tile's rows;
 * side sums too when side is set (the first group of each run). */
INLINE_AVX512 void tile_run(const float *const row[ROWS], const float *v, uint64_t ld, const float *weight,
                            bool want_norm2, bool side, uint64_t v0, uint64_t v1, uint64_t full,
                            __mmask16 tail, __m512 acc[ROWS][ROUNDS], __m512 s1[ROWS], __m512 s2[ROWS]) {
        for (uint64_t e = v0; e < v1; e++) {
                __mmask16 mask = e < full ? (__mmask16) 0xffff : tail;
                __m512 mv[ROWS];

                _Pragma("GCC unroll 8")
                for (unsigned t = 0; t < ROWS; t++)
                        mv[t] = _mm512_maskz_loadu_ps(mask, row[t] + e * LANES);
                _Pragma("GCC unroll 8")
                for (unsigned q = 0; q < ROUNDS; q++) {
                        __m512 x = _mm512_load_ps(v + q * ld + e * LANES);

                        _Pragma("GCC unroll 8")
                        for (unsigned t = 0; t < ROWS; t++)
                                acc[t][q] = _mm512_fmadd_ps(mv[t], x, acc[t][q]);
                }
                if (side) {
                        __m512 w = weight ? _mm512_load_ps(weight + e * LANES) : _mm512_set1_ps(1.0f);

                        _Pragma("GCC unroll 8")
                        for (unsigned t = 0; t < ROWS; t++) {
                                s1[t] = weight ? _mm512_fmadd_ps(_mm512_abs_ps(mv[t]), w, s1[t])
                                               : _mm512_add_ps(_mm512_abs_ps(mv[t]), s1[t]);
                                if (want_norm2)
                                        s2[t] = _mm512_fmadd_ps(mv[t], mv[t], s2[t]);
                        }
                }
        }
}

INLINE_AVX512 bool pass_rows(const struct freivalds_pass *p, const float *weight, bool want_norm2, uint64_t row0,
                             uint64_t row1, double *dot, double *abs_sum, double *norm2, void *scratch) {
        const unsigned nq = p->rounds_padded, nq2 = nq + 2;
        const uint64_t len = p->len, vectors = (len + LANES - 1) / LANES, full = len / LANES;
        const __mmask16 tail = (__mmask16) ((1u << (len % LANES)) - 1);
        __m512 *level2 = scratch;              /* ROWS × nq2: rounds, then abs_sum and norm2 */
        double *level3 = (double *) (level2 + ROWS * nq2);
        bool finite = true;

        for (uint64_t i0 = row0; i0 < row1; i0 += ROWS) {
                const float *row[ROWS];
                unsigned runs = 0;

                /* Rows past the end repeat the last one; their sums are dropped. */
                _Pragma("GCC unroll 8")
                for (unsigned t = 0; t < ROWS; t++)
                        row[t] = p->m + (i0 + t < row1 ? i0 + t : row1 - 1) * len;
                for (unsigned e = 0; e < ROWS * nq2; e++) {
                        level2[e] = _mm512_setzero_ps();
                        level3[e] = 0;
                }

                for (uint64_t v0 = 0; v0 < vectors; v0 += RUN) {
                        uint64_t v1 = vectors - v0 < RUN ? vectors : v0 + RUN;

                        for (unsigned g = 0; g < nq; g += ROUNDS) {
                                __m512 acc[ROWS][ROUNDS], s1[ROWS], s2[ROWS];

                                _Pragma("GCC unroll 8")
                                for (unsigned t = 0; t < ROWS; t++) {
                                        _Pragma("GCC unroll 8")
                                        for (unsigned q = 0; q < ROUNDS; q++)
                                                acc[t][q] = _mm512_setzero_ps();
                                        s1[t] = s2[t] = _mm512_setzero_ps();
                                }
                                if (g == 0)
                                        tile_run(row, p->v, p->ld, weight, want_norm2, true, v0, v1, full, tail,
                                                 acc, s1, s2);
                                else
                                        tile_run(row, p->v + g * p->ld, p->ld, weight, want_norm2, false, v0, v1,
                                                 full, tail, acc, s1, s2);
                                _Pragma("GCC unroll 8")
                                for (unsigned t = 0; t < ROWS; t++) {
                                        __m512 *l2 = level2 + t * nq2;

                                        _Pragma("GCC unroll 8")
                                        for (unsigned q = 0; q < ROUNDS; q++)
                                                l2[g + q] = _mm512_add_ps(l2[g + q], acc[t][q]);
                                        if (g == 0) {
                                                l2[nq] = _mm512_add_ps(l2[nq], s1[t]);
                                                l2[nq + 1] = _mm512_add_ps(l2[nq + 1], s2[t]);
                                        }
                                }
                        }

                        if (++runs == RUNS || v1 == vectors) {
                                for (unsigned e = 0; e < ROWS * nq2; e++) {
                                        level3[e] += lanes_to_double(level2[e]);
                                        level2[e] = _mm512_setzero_ps();
                                }
                                runs = 0;
                        }
                }

                for (unsigned t = 0; t < ROWS && i0 + t < row1; t++) {
                        const double *l3 = level3 + t * nq2;
                        uint64_t i = i0 + t - row0;
                        /* x − x is 0 for finite x and NaN otherwise. */
                        double probe = l3[nq] - l3[nq] + l3[nq + 1] - l3[nq + 1];

                        for (unsigned q = 0; q < nq; q++) {
                                dot[i * nq + q] = l3[q];
                                probe += l3[q] - l3[q];
                        }
                        abs_sum[i] = l3[nq];
                        if (norm2)
                                norm2[i] = l3[nq + 1];
                        if (probe != 0)
                                finite = false;
                }
                if (!finite)
                        return false;
        }
        return true;
}

/* The three kinds of pass, each compiled with its side sums fixed. */
static AVX512 bool pass_weighted(const struct freivalds_pass *p, uint64_t row0, uint64_t row1, double *dot,
                                 double *abs_sum, double *norm2, void *scratch) {
        return pass_rows(p, p->weight, true, row0, row1, dot, abs_sum, norm2, scratch);
}

static AVX512 bool pass_plain_norm(const struct freivalds_pass *p, uint64_t row0, uint64_t row1, double *dot,
                                   double *abs_sum, double *norm2, void *scratch) {
        return pass_rows(p, NULL, true, row0, row1, dot, abs_sum, norm2, scratch);
}

static AVX512 bool pass_plain(const struct freivalds_pass *p, uint64_t row0, uint64_t row1, double *dot,
                              double *abs_sum, double *norm2, void *scratch) {
        return pass_rows(p, NULL, false, row0, row1, dot, abs_sum, NULL, scratch);
}

bool freivalds_pass_avx512(const struct freivalds_pass *p, uint64_t row0, uint64_t row1, double *dot,
                           double *abs_sum, double *norm2, void *scratch) {
        if (p->weight)
                return pass_weighted(p, row0, row1, dot, abs_sum, p->want_norm2 ? norm2 : NULL, scratch);
        if (p->want_norm2)
                return pass_plain_norm(p, row0, row1, dot, abs_sum, norm2, scratch);
        return pass_plain(p, row0, row1, dot, abs_sum, norm2, scratch);
}

#else

bool freivalds_pass_supported(void) {
        return false;
}

bool freivalds_pass_avx512(const struct freivalds_pass *p, uint64_t row0, uint64_t row1, double *dot,
                           double *abs_sum, double *norm2, void *scratch) {
        return false;
}

#endif

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The inner loop of the float32 check (freivalds.c): one pass over a block
 * of rows of a row-major f32 matrix, computing its products with all rounds'
 * vectors at once and, in the same read, the row sums the tolerance needs.
 * Private to the check; its summation order is fixed here because the
 * check's own rounding-error bound (freivalds.c) depends on it. */

#include <stdbool.h>
#include <stdint.h>

#include "freivalds.h"

/* Rows of M and rounds of V worked on together: a tile of ROWS×ROUNDS
 * accumulators stays in registers. */
#define FREIVALDS_PASS_ROWS 4
#define FREIVALDS_PASS_ROUNDS 5
#define FREIVALDS_PASS_LANES FREIVALDS_FLOAT_LANES
#define FREIVALDS_PASS_RUN FREIVALDS_FLOAT_RUN
#define FREIVALDS_PASS_RUNS FREIVALDS_FLOAT_RUNS

struct freivalds_pass {
        const float *m;         /* rows × len, row-major */
        uint64_t len;
        /* rounds_padded rows of ld floats, a multiple of LANES, zero beyond
         * len; rounds_padded a multiple of FREIVALDS_PASS_ROUNDS. */
        const float *v;
        uint64_t ld;
        unsigned rounds_padded;
        /* ld floats, zero beyond len, or NULL for all ones. */
        const float *weight;
        bool want_norm2;
};

/* For rows [row0, row1): dot[(i − row0)·rounds_padded + q] = Σ_j m_ij·v_qj,
 * abs_sum[i − row0] = Σ_j |m_ij|·weight_j, and, if want_norm2,
 * norm2[i − row0] = Σ_j m_ij².  scratch holds freivalds_pass_scratch()
 * bytes, 64-byte aligned.  Returns false when a sum is not finite (a NaN or
 * infinity in m, or float overflow): the caller then checks another way. */
bool freivalds_pass_avx512(const struct freivalds_pass *p, uint64_t row0, uint64_t row1, double *dot,
                           double *abs_sum, double *norm2, void *scratch);
uint64_t freivalds_pass_scratch(unsigned rounds_padded);
/* Whether this CPU runs freivalds_pass_avx512(). */
bool freivalds_pass_supported(void);

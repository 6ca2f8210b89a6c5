/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Rows of weights in the engine's types: dequantisation exactly as the GGUF
 * format defines each block layout, a reference quantiser (for the tools that
 * write test models, not tuned for quality), and the dot products that
 * matrix-vector products are made of: a row with an f32 vector (SIMD for
 * f32/f16/bf16 rows; portable C, the reference, for the quantised types) and
 * a quantised row with int8-quantised activations (SIMD, the hot path for
 * Q4_0/Q8_0/Q4_K/Q5_K/Q6_K).  The SIMD variant (AVX-512, AVX2+FMA+F16C, or
 * portable C) is chosen once at run time from what the CPU has. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nn-type.h"

/* Writes n floats.  n must be a multiple of nn_type_block_elems(type);
 * type must be supported (the caller checked: a tensor's type is validated
 * when its file is opened). */
void nn_dequantize_row(enum nn_type type, const void *src, float *dst, size_t n);

/* Writes nn_row_bytes(type, n) bytes that dequantise to an approximation of
 * src (exact for f32; round-to-nearest for f16/bf16). */
void nn_quantize_row(enum nn_type type, const float *src, void *dst, size_t n);

/* sum over i < n of dequant(row)[i] * x[i], accumulated in f32 (or wider). */
float nn_vec_dot(enum nn_type type, const void *row, const float *x, size_t n);

/* Integer dot products.  For the types below, an activation vector is first
 * quantised to int8 (symmetric, one f32 scale per block, the block's largest
 * magnitude mapping to ±127), and a weight row is then dotted with it in
 * integers: the weights are never converted to float, which is what keeps a
 * matrix-vector product of these types bound by memory rather than by
 * arithmetic.  The price is the activations' rounding: each element moves
 * by at most half its block's step (amax/254). */

/* True for Q4_0, Q8_0, Q4_K, Q5_K and Q6_K. */
bool nn_type_int8_dot(enum nn_type type);

/* Bytes of n activations quantised for rows of type: 36 per 32 elements for
 * Q4_0/Q8_0 (f32 scale, 32 int8), 292 per 256 for the K-quants (f32 scale,
 * 256 int8, 16 int16 sums of 16 consecutive quants).  0 when
 * !nn_type_int8_dot(type).  n must be a multiple of the type's block. */
size_t nn_act_bytes(enum nn_type type, size_t n);

/* Writes nn_act_bytes(type, n) bytes to dst (no alignment needed) from n
 * floats.  type must satisfy nn_type_int8_dot(). */
void nn_quantize_act(enum nn_type type, const float *x, void *dst, size_t n);

/* sum over i < n of dequant(row)[i] * dequant(xq)[i], where xq came from
 * nn_quantize_act(type, …, n); exact integer sums scaled in f32. */
float nn_vec_dot_act(enum nn_type type, const void *row, const void *xq, size_t n);

/* The kernel family picked for this CPU: "avx512", "avx2" or "generic". */
const char *nn_simd_name(void);
/* Tests and benchmarks force a family (to compare it with the generic one);
 * returns -EOPNOTSUPP when this CPU lacks it.  name NULL: back to automatic. */
int nn_simd_force(const char *name);

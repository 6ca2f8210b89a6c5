/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Rows of weights in the engine's types: dequantisation exactly as the GGUF
 * format defines each block layout, a reference quantiser (for the tools that
 * write test models, not tuned for quality), and the dot product of a weight
 * row with an f32 activation vector that every matrix-vector product is made
 * of.  The SIMD variant (AVX-512, AVX2+FMA+F16C, or portable C) is chosen
 * once at run time from what the CPU has. */

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

/* The kernel family picked for this CPU: "avx512", "avx2" or "generic". */
const char *nn_simd_name(void);
/* Tests and benchmarks force a family (to compare it with the generic one);
 * returns -EOPNOTSUPP when this CPU lacks it.  name NULL: back to automatic. */
int nn_simd_force(const char *name);

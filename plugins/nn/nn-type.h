/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Element types of the engine's weights and activations, numbered as ggml
 * and the GGUF format number them (ggml_type), so that a GGUF tensor info's
 * type field maps onto this enum unchanged.  Block types pack blk_elems
 * elements into blk_bytes bytes; a row of a block type is a whole number of
 * blocks. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum nn_type {
        NN_TYPE_F32  = 0,
        NN_TYPE_F16  = 1,
        NN_TYPE_Q4_0 = 2,
        NN_TYPE_Q8_0 = 8,
        NN_TYPE_Q4_K = 12,
        NN_TYPE_Q5_K = 13,
        NN_TYPE_Q6_K = 14,
        NN_TYPE_BF16 = 30,
};

#define NN_QK4_0 32     /* elements per Q4_0 block */
#define NN_QK8_0 32     /* elements per Q8_0 block */
#define NN_QK_K 256     /* elements per K-quant super-block */

/* True for the types above (the ones the engine can compute with). */
bool nn_type_supported(uint32_t type);
/* "f32", "f16", "bf16", "q8_0", "q4_0", "q4_K", "q5_K", "q6_K"; NULL when
 * unsupported. */
const char *nn_type_name(uint32_t type);
/* Elements per block (1 for f32/f16/bf16) and bytes per block; 0 when
 * unsupported. */
size_t nn_type_block_elems(uint32_t type);
size_t nn_type_block_bytes(uint32_t type);
/* Bytes of a row of n elements; 0 when the type is unsupported or n is not a
 * multiple of the block size. */
size_t nn_row_bytes(uint32_t type, uint64_t n);

/* IEEE half and bfloat16 conversions (round to nearest even; NaN stays NaN). */
float nn_fp16_to_f32(uint16_t h);
uint16_t nn_f32_to_fp16(float f);
float nn_bf16_to_f32(uint16_t h);
uint16_t nn_f32_to_bf16(float f);

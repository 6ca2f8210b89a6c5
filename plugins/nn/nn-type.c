/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Type traits and the half-precision conversions.  Block sizes are the GGUF
 * format's: Q4_0 = f16 scale + 16 bytes of nibbles; Q8_0 = f16 scale + 32
 * int8; the K-quants pack 256 elements in super-blocks of sub-blocks with
 * 6-bit (Q4_K, Q5_K) or 8-bit (Q6_K) scales. */

#include <string.h>

#include "nn-type.h"

struct type_traits {
        const char *name;
        size_t blk_elems;
        size_t blk_bytes;
};

static const struct type_traits *type_traits(uint32_t type) {
        static const struct type_traits f32 = { "f32", 1, 4 };
        static const struct type_traits f16 = { "f16", 1, 2 };
        static const struct type_traits bf16 = { "bf16", 1, 2 };
        static const struct type_traits q4_0 = { "q4_0", NN_QK4_0, 2 + NN_QK4_0 / 2 };
        static const struct type_traits q8_0 = { "q8_0", NN_QK8_0, 2 + NN_QK8_0 };
        /* d, dmin (f16), 12 bytes of 6-bit scales and mins, 128 bytes of nibbles */
        static const struct type_traits q4_k = { "q4_K", NN_QK_K, 2 + 2 + 12 + NN_QK_K / 2 };
        /* … plus 32 bytes of high bits */
        static const struct type_traits q5_k = { "q5_K", NN_QK_K, 2 + 2 + 12 + NN_QK_K / 8 + NN_QK_K / 2 };
        /* 128 bytes of low nibbles, 64 of high 2 bits, 16 int8 scales, f16 d */
        static const struct type_traits q6_k = { "q6_K", NN_QK_K, NN_QK_K / 2 + NN_QK_K / 4 + NN_QK_K / 16 + 2 };

        switch (type) {
        case NN_TYPE_F32:  return &f32;
        case NN_TYPE_F16:  return &f16;
        case NN_TYPE_BF16: return &bf16;
        case NN_TYPE_Q4_0: return &q4_0;
        case NN_TYPE_Q8_0: return &q8_0;
        case NN_TYPE_Q4_K: return &q4_k;
        case NN_TYPE_Q5_K: return &q5_k;
        case NN_TYPE_Q6_K: return &q6_k;
        default:           return NULL;
        }
}

bool nn_type_supported(uint32_t type) {
        return type_traits(type) != NULL;
}

const char *nn_type_name(uint32_t type) {
        const struct type_traits *t = type_traits(type);

        return t ? t->name : NULL;
}

size_t nn_type_block_elems(uint32_t type) {
        const struct type_traits *t = type_traits(type);

        return t ? t->blk_elems : 0;
}

size_t nn_type_block_bytes(uint32_t type) {
        const struct type_traits *t = type_traits(type);

        return t ? t->blk_bytes : 0;
}

size_t nn_row_bytes(uint32_t type, uint64_t n) {
        const struct type_traits *t = type_traits(type);

        if (!t || n % t->blk_elems != 0)
                return 0;
        if (n / t->blk_elems > SIZE_MAX / t->blk_bytes)
                return 0;
        return (size_t) (n / t->blk_elems) * t->blk_bytes;
}

static uint32_t f32_bits(float f) {
        uint32_t u;

        memcpy(&u, &f, sizeof(u));
        return u;
}

static float bits_f32(uint32_t u) {
        float f;

        memcpy(&f, &u, sizeof(f));
        return f;
}

float nn_fp16_to_f32(uint16_t h) {
        uint32_t sign = (uint32_t) (h & 0x8000u) << 16;
        uint32_t exp = (h >> 10) & 0x1fu;
        uint32_t mant = h & 0x3ffu;

        if (exp == 0x1f)                        /* inf, NaN */
                return bits_f32(sign | 0x7f800000u | (mant << 13));
        if (exp == 0) {
                if (mant == 0)
                        return bits_f32(sign);
                /* subnormal: mant · 2^-24 */
                float f = (float) mant * (1.0f / 16777216.0f);
                return sign ? -f : f;
        }
        return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t nn_f32_to_fp16(float f) {
        uint32_t u = f32_bits(f);
        uint32_t sign = (u >> 16) & 0x8000u;
        uint32_t abs = u & 0x7fffffffu;

        if (abs > 0x7f800000u)                  /* NaN: keep it quiet and NaN */
                return (uint16_t) (sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
        if (abs >= 0x477ff000u)                 /* rounds to ≥ 65520: inf */
                return (uint16_t) (sign | 0x7c00u);
        if (abs < 0x38800000u) {                /* below 2^-14: subnormal or zero */
                /* Adding 0.5 makes the FPU round the mantissa for us. */
                float a = bits_f32(abs) + 0.5f;
                return (uint16_t) (sign | (f32_bits(a) - 0x3f000000u));
        }
        uint32_t mant_odd = (abs >> 13) & 1u;
        abs += 0xc8000fffu + mant_odd;          /* rebias (-112 << 23) and round to nearest even */
        return (uint16_t) (sign | (abs >> 13));
}

float nn_bf16_to_f32(uint16_t h) {
        return bits_f32((uint32_t) h << 16);
}

uint16_t nn_f32_to_bf16(float f) {
        uint32_t u = f32_bits(f);

        if ((u & 0x7fffffffu) > 0x7f800000u)    /* NaN: set a mantissa bit so it stays NaN */
                return (uint16_t) ((u >> 16) | 0x40u);
        u += 0x7fffu + ((u >> 16) & 1u);
        return (uint16_t) (u >> 16);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The weight-row kernels of plugins/nn against references written here from
 * the GGUF block layouts, element by element and by byte offset, apart from
 * nn-quant.c: dequantisation bit for bit on random blocks, the reference
 * quantisers' error, every SIMD family's dot product against the dequantised
 * row, and the half-precision conversions over all 65536 values. */

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn-quant.h"
#include "nn-type.h"

TestSuite(quant, .timeout = 120);

/* The plugin does not see daemon/basic/macro.h; the same helper, for the tests. */
static void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ __attribute__((cleanup(freep)))

static const enum nn_type all_types[] = {
        NN_TYPE_F32, NN_TYPE_F16, NN_TYPE_BF16, NN_TYPE_Q4_0,
        NN_TYPE_Q8_0, NN_TYPE_Q4_K, NN_TYPE_Q5_K, NN_TYPE_Q6_K,
};
#define N_TYPES (sizeof(all_types) / sizeof(all_types[0]))

/* ---- Helpers ---- */

static uint64_t rng_state;

static void rng_seed(uint64_t seed) {
        rng_state = seed * 0x9e3779b97f4a7c15ull + 1;
}

static uint64_t rng_next(void) {
        /* xorshift64*: deterministic, so a failure reproduces. */
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 0x2545f4914f6cdd1dull;
}

/* Uniform in [-1, 1). */
static float rng_float(void) {
        return (float) ((double) (rng_next() >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* Standard normal (Box-Muller), for data shaped like weights. */
static float rng_normal(void) {
        double u1 = ((double) (rng_next() >> 11) + 1.0) / 9007199254740993.0;
        double u2 = (double) (rng_next() >> 11) / 9007199254740992.0;

        return (float) (sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

static uint16_t rng_finite_half(void) {
        for (;;) {
                uint16_t h = (uint16_t) rng_next();

                if ((h & 0x7c00) != 0x7c00)
                        return h;
        }
}

static bool is_nan_half(uint16_t h) {
        return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
}

static bool is_nan_bf16(uint16_t h) {
        return (h & 0x7f80) == 0x7f80 && (h & 0x7f) != 0;
}

static uint32_t float_bits(float f) {
        uint32_t u;

        memcpy(&u, &f, sizeof(u));
        return u;
}

static float bits_float(uint32_t u) {
        float f;

        memcpy(&f, &u, sizeof(f));
        return f;
}

static uint16_t rd16(const uint8_t *p) {
        return (uint16_t) (p[0] | p[1] << 8);
}

static void wr16(uint8_t *p, uint16_t v) {
        p[0] = (uint8_t) v;
        p[1] = (uint8_t) (v >> 8);
}

/* ---- Reference decoders, straight from the format ---- */

/* IEEE binary16: (-1)^s · 2^(e-15) · 1.m, or 2^-14 · 0.m when e = 0. */
static float ref_half(uint16_t h) {
        int sign = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
        float v;

        if (e == 0x1f)
                v = m ? NAN : INFINITY;
        else if (e == 0)
                v = ldexpf((float) m, -24);
        else
                v = ldexpf((float) (m + 1024), e - 25);
        return sign ? -v : v;
}

/* Q4_0: f16 d at 0, then 16 bytes: element i < 16 is the low nibble of
 * byte i, element 16 + i the high nibble; value (q - 8)·d. */
static void ref_q4_0(const uint8_t *b, float *y) {
        float d = ref_half(rd16(b));

        for (int i = 0; i < 32; i++) {
                int q = i < 16 ? (b[2 + i] & 15) : (b[2 + i - 16] >> 4);

                y[i] = (float) (q - 8) * d;
        }
}

/* Q8_0: f16 d at 0, then 32 int8; value q·d. */
static void ref_q8_0(const uint8_t *b, float *y) {
        float d = ref_half(rd16(b));

        for (int i = 0; i < 32; i++)
                y[i] = (float) (int8_t) b[2 + i] * d;
}

/* Sub-block j's 6-bit scale and min from the 12 bytes at s. */
static void ref_k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
        if (j < 4) {
                *sc = s[j] & 63;
                *m = s[j + 4] & 63;
        } else {
                *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
                *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
        }
}

/* Q4_K (qh NULL) and Q5_K: f16 d at 0, f16 dmin at 2, scales at 4..15; then
 * (Q5_K) 32 bytes qh, then 128 bytes qs.  Element i is in sub-block i/32 and
 * its nibble is in byte 32·(i/64) + i%32 of qs, low for the first 32 of each
 * 64; Q5_K's fifth bit is bit (i/32) of qh[i%32].  Value d·sc·q - dmin·m. */
static void ref_k45(const uint8_t *b, bool five, float *y) {
        float d = ref_half(rd16(b)), dmin = ref_half(rd16(b + 2));
        const uint8_t *qh = b + 16, *qs = b + (five ? 48 : 16);

        for (int i = 0; i < 256; i++) {
                int j = i / 32, l = i % 32, sc, m;
                uint8_t byte = qs[32 * (i / 64) + l];
                int q = (i % 64) < 32 ? (byte & 15) : (byte >> 4);

                if (five)
                        q += ((qh[l] >> j) & 1) * 16;
                ref_k_scale_min(b + 4, j, &sc, &m);
                y[i] = d * (float) sc * (float) q - dmin * (float) m;
        }
}

/* Q6_K: ql[128], qh[64], int8 scales[16], f16 d at 208.  Element i: half
 * h = i/128, quarter r = (i%128)/32, l = i%32; low 4 bits from ql[64h + l]
 * (r even) or ql[64h + 32 + l] (r odd), low nibble for r < 2, high for
 * r ≥ 2; top 2 bits are bits 2r, 2r+1 of qh[32h + l]; scale i/16; value
 * d·sc·(q - 32). */
static void ref_q6_k(const uint8_t *b, float *y) {
        float d = ref_half(rd16(b + 208));

        for (int i = 0; i < 256; i++) {
                int h = i / 128, r = (i % 128) / 32, l = i % 32;
                uint8_t lbyte = b[64 * h + (r & 1 ? 32 : 0) + l];
                int low = r < 2 ? (lbyte & 15) : (lbyte >> 4);
                int top = (b[128 + 32 * h + l] >> (2 * r)) & 3;
                int q = (low | top << 4) - 32;
                int sc = (int8_t) b[192 + i / 16];

                y[i] = d * (float) sc * (float) q;
        }
}

static void ref_dequantize(enum nn_type type, const uint8_t *src, float *y, size_t n) {
        size_t be = nn_type_block_elems(type), bb = nn_type_block_bytes(type);

        for (size_t i = 0; i < n / be; i++, src += bb, y += be)
                switch (type) {
                case NN_TYPE_F32:  memcpy(y, src, 4); break;
                case NN_TYPE_F16:  y[0] = ref_half(rd16(src)); break;
                case NN_TYPE_BF16: y[0] = bits_float((uint32_t) rd16(src) << 16); break;
                case NN_TYPE_Q4_0: ref_q4_0(src, y); break;
                case NN_TYPE_Q8_0: ref_q8_0(src, y); break;
                case NN_TYPE_Q4_K: ref_k45(src, false, y); break;
                case NN_TYPE_Q5_K: ref_k45(src, true, y); break;
                case NN_TYPE_Q6_K: ref_q6_k(src, y); break;
                }
}

/* ---- Random rows ---- */

/* n elements of type: random bytes, with every f16 scale a random finite
 * half and plain types finite values of moderate size. */
static uint8_t *random_row(enum nn_type type, size_t n) {
        size_t bytes = nn_row_bytes(type, n), be = nn_type_block_elems(type), bb = nn_type_block_bytes(type);
        uint8_t *b = malloc(bytes);

        cr_assert_not_null(b);
        for (size_t i = 0; i < bytes; i++)
                b[i] = (uint8_t) rng_next();
        for (size_t i = 0; i < n / be; i++) {
                uint8_t *blk = b + i * bb;
                float f;

                switch (type) {
                case NN_TYPE_F32:
                        f = rng_float() * 4.0f;
                        memcpy(blk, &f, 4);
                        break;
                case NN_TYPE_F16:
                        wr16(blk, rng_finite_half());
                        break;
                case NN_TYPE_BF16:
                        wr16(blk, (uint16_t) (float_bits(rng_float() * 4.0f) >> 16));
                        break;
                case NN_TYPE_Q4_0:
                case NN_TYPE_Q8_0:
                        wr16(blk, rng_finite_half());
                        break;
                case NN_TYPE_Q4_K:
                case NN_TYPE_Q5_K:
                        wr16(blk, rng_finite_half());
                        wr16(blk + 2, rng_finite_half());
                        break;
                case NN_TYPE_Q6_K:
                        wr16(blk + 208, rng_finite_half());
                        break;
                }
        }
        return b;
}

static float *random_floats(size_t n, bool normal) {
        float *x = malloc(n * sizeof(float));

        cr_assert_not_null(x);
        for (size_t i = 0; i < n; i++)
                x[i] = normal ? rng_normal() : rng_float();
        return x;
}

/* ---- Half precision ---- */

Test(quant, fp16_round_trips_every_half_value) {
        for (uint32_t h = 0; h < 65536; h++) {
                float f = nn_fp16_to_f32((uint16_t) h), r = ref_half((uint16_t) h);
                uint16_t back = nn_f32_to_fp16(f);

                if (is_nan_half((uint16_t) h)) {
                        cr_assert(isnan(f), "half 0x%04x decodes to %g, not NaN", h, f);
                        cr_assert(is_nan_half(back), "half NaN 0x%04x comes back as 0x%04x", h, back);
                        continue;
                }
                cr_assert_eq(float_bits(f), float_bits(r), "half 0x%04x decodes to %a, expected %a", h, f, r);
                cr_assert_eq(back, h, "half 0x%04x comes back as 0x%04x", h, back);
        }
}

Test(quant, fp16_rounds_to_nearest_with_ties_to_even) {
        /* Halfway between two neighbouring halves, and just either side:
         * f32 holds all three exactly. */
        for (uint16_t h = 0; h < 0x7bff; h++) {
                float a = ref_half(h), b = ref_half((uint16_t) (h + 1));
                float mid = (a + b) / 2.0f;
                uint16_t even = (h & 1) ? (uint16_t) (h + 1) : h;

                cr_assert_eq(nn_f32_to_fp16(mid), even, "%a between 0x%04x and 0x%04x", mid, h, h + 1);
                cr_assert_eq(nn_f32_to_fp16(nextafterf(mid, 0.0f)), h);
                cr_assert_eq(nn_f32_to_fp16(nextafterf(mid, INFINITY)), h + 1);
                cr_assert_eq(nn_f32_to_fp16(-mid), even | 0x8000);
        }
        /* 65520 is the midpoint between the largest half and the next
         * (unrepresentable) power of two: it rounds to infinity. */
        cr_assert_eq(nn_f32_to_fp16(65519.996f), 0x7bff);
        cr_assert_eq(nn_f32_to_fp16(65520.0f), 0x7c00);
        cr_assert_eq(nn_f32_to_fp16(-INFINITY), 0xfc00);
        cr_assert(is_nan_half(nn_f32_to_fp16(NAN)));
}

Test(quant, bf16_round_trips_every_value) {
        for (uint32_t h = 0; h < 65536; h++) {
                float f = nn_bf16_to_f32((uint16_t) h);
                uint16_t back = nn_f32_to_bf16(f);

                cr_assert_eq(float_bits(f), h << 16);
                if (is_nan_bf16((uint16_t) h)) {
                        cr_assert(is_nan_bf16(back), "bf16 NaN 0x%04x comes back as 0x%04x", h, back);
                        continue;
                }
                cr_assert_eq(back, h, "bf16 0x%04x comes back as 0x%04x", h, back);
        }
}

Test(quant, bf16_rounds_to_nearest_with_ties_to_even) {
        for (uint32_t h = 0; h < 0x7f7f; h++) {
                uint32_t mid = h << 16 | 0x8000;
                uint16_t even = (h & 1) ? (uint16_t) (h + 1) : (uint16_t) h;

                cr_assert_eq(nn_f32_to_bf16(bits_float(mid)), even);
                cr_assert_eq(nn_f32_to_bf16(bits_float(mid - 1)), h);
                cr_assert_eq(nn_f32_to_bf16(bits_float(mid + 1)), h + 1);
        }
        /* NaN whose payload lies only in the bits bf16 drops. */
        cr_assert(is_nan_bf16(nn_f32_to_bf16(bits_float(0x7f800001u))));
}

/* ---- Dequantisation, bit for bit ---- */

static void check_dequantises_as_reference(enum nn_type type, uint64_t seed) {
        size_t be = nn_type_block_elems(type), n = be == 1 ? 4096 : 64 * be;

        rng_seed(seed);
        for (int round = 0; round < 8; round++) {
                _cleanup_free_ uint8_t *row = random_row(type, n);
                _cleanup_free_ float *got = malloc(n * sizeof(float));
                _cleanup_free_ float *want = malloc(n * sizeof(float));

                cr_assert(got && want);
                nn_dequantize_row(type, row, got, n);
                ref_dequantize(type, row, want, n);
                for (size_t i = 0; i < n; i++)
                        cr_assert_eq(float_bits(got[i]), float_bits(want[i]),
                                     "%s element %zu (block %zu): got %a, want %a",
                                     nn_type_name(type), i, i / be, got[i], want[i]);
        }
}

Test(quant, plain_types_dequantise_elementwise) {
        check_dequantises_as_reference(NN_TYPE_F32, 1);
        check_dequantises_as_reference(NN_TYPE_F16, 2);
        check_dequantises_as_reference(NN_TYPE_BF16, 3);
}

Test(quant, q4_0_dequantises_as_the_spec_defines) {
        check_dequantises_as_reference(NN_TYPE_Q4_0, 4);
}

Test(quant, q8_0_dequantises_as_the_spec_defines) {
        check_dequantises_as_reference(NN_TYPE_Q8_0, 5);
}

Test(quant, q4_K_dequantises_as_the_spec_defines) {
        check_dequantises_as_reference(NN_TYPE_Q4_K, 6);
}

Test(quant, q5_K_dequantises_as_the_spec_defines) {
        check_dequantises_as_reference(NN_TYPE_Q5_K, 7);
}

Test(quant, q6_K_dequantises_as_the_spec_defines) {
        check_dequantises_as_reference(NN_TYPE_Q6_K, 8);
}

Test(quant, q4_K_reads_the_six_bit_scales_of_upper_sub_blocks) {
        /* One hand-made block: d = 1, dmin = 0.5, sub-block 5's scale 45 =
         * 0b101101 (low nibble 13 in byte 9, top bits 2 in byte 1) and min
         * 38 = 0b100110 (high nibble 6 in byte 9, top bits 2 in byte 5);
         * every nibble 3. */
        uint8_t b[144] = { 0 };
        float y[256];

        wr16(b, 0x3c00);
        wr16(b + 2, 0x3800);
        b[4 + 1] = 2 << 6;
        b[4 + 5] = 2 << 6;
        b[4 + 9] = 13 | 6 << 4;
        memset(b + 16, 0x33, 128);
        nn_dequantize_row(NN_TYPE_Q4_K, b, y, 256);
        for (int i = 160; i < 192; i++)
                cr_assert_float_eq(y[i], 45.0f * 3.0f - 0.5f * 38.0f, 0.0f, "element %d is %g", i, y[i]);
        cr_assert_float_eq(y[0], 0.0f, 0.0f);
}

/* ---- Reference quantisers ---- */

/* The largest error allowed, as a share of the block's largest magnitude,
 * for Gaussian data: half a step of each format plus what rounding its
 * scales to 6 or 8 bits and f16 costs. */
static double quant_error_bound(enum nn_type type) {
        switch (type) {
        case NN_TYPE_F32:  return 0.0;
        case NN_TYPE_F16:  return 1.0 / 2048;
        case NN_TYPE_BF16: return 1.0 / 256;
        case NN_TYPE_Q8_0: return 0.0045;
        /* The largest magnitude maps to -8·d, so the other sign's
         * extreme clips at 7·d: up to a whole step, 1/8. */
        case NN_TYPE_Q4_0: return 0.13;
        case NN_TYPE_Q4_K: return 0.10;
        case NN_TYPE_Q5_K: return 0.05;
        case NN_TYPE_Q6_K: return 0.03;
        }
        return 0.0;
}

Test(quant, quantised_rows_dequantise_close_to_their_source) {
        const size_t n = 4096;

        rng_seed(11);
        for (size_t t = 0; t < N_TYPES; t++) {
                enum nn_type type = all_types[t];
                size_t be = nn_type_block_elems(type), span = be == 1 ? 32 : be;
                _cleanup_free_ float *x = random_floats(n, true);
                _cleanup_free_ float *y = malloc(n * sizeof(float));
                _cleanup_free_ uint8_t *q = malloc(nn_row_bytes(type, n));
                double worst = 0.0;

                cr_assert(y && q);
                /* Scale some blocks down, so that the 6-bit super-block scales
                 * have small sub-blocks to represent too. */
                for (size_t i = 0; i < n; i++)
                        x[i] *= (i / 32) % 3 == 0 ? 0.05f : 1.0f;
                nn_quantize_row(type, x, q, n);
                nn_dequantize_row(type, q, y, n);
                for (size_t b = 0; b < n / span; b++) {
                        double amax = 0.0, err = 0.0;

                        for (size_t i = b * span; i < (b + 1) * span; i++) {
                                amax = fmax(amax, fabs(x[i]));
                                err = fmax(err, fabs((double) y[i] - x[i]));
                        }
                        worst = fmax(worst, err / amax);
                }
                cr_log_info("%s: worst error %.5f of the block's largest magnitude", nn_type_name(type), worst);
                cr_assert_leq(worst, quant_error_bound(type), "%s: error %g of the block's magnitude, bound %g",
                              nn_type_name(type), worst, quant_error_bound(type));
        }
}

Test(quant, plain_types_quantise_by_rounding_to_nearest) {
        const size_t n = 1000;
        _cleanup_free_ float *x = NULL;
        uint8_t h[2 * 1000];
        float f[1000];

        rng_seed(12);
        x = random_floats(n, true);
        nn_quantize_row(NN_TYPE_F32, x, f, n);
        cr_assert_arr_eq(f, x, n * sizeof(float));
        nn_quantize_row(NN_TYPE_F16, x, h, n);
        for (size_t i = 0; i < n; i++)
                cr_assert_eq(rd16(h + 2 * i), nn_f32_to_fp16(x[i]));
        nn_quantize_row(NN_TYPE_BF16, x, h, n);
        for (size_t i = 0; i < n; i++)
                cr_assert_eq(rd16(h + 2 * i), nn_f32_to_bf16(x[i]));
}

Test(quant, quantisers_write_finite_scales_and_map_zero_to_zero) {
        const size_t n = 2 * NN_QK_K;
        float zeros[2 * NN_QK_K] = { 0 }, y[2 * NN_QK_K], x[2 * NN_QK_K];

        rng_seed(13);
        for (size_t i = 0; i < n; i++)
                x[i] = rng_normal() * 1000.0f;
        for (size_t t = 0; t < N_TYPES; t++) {
                enum nn_type type = all_types[t];
                uint8_t q[2 * NN_QK_K * sizeof(float)];

                memset(q, 0xa5, sizeof(q));
                nn_quantize_row(type, zeros, q, n);
                nn_dequantize_row(type, q, y, n);
                for (size_t i = 0; i < n; i++)
                        cr_assert_eq(y[i], 0.0f, "%s: zero became %g", nn_type_name(type), y[i]);

                nn_quantize_row(type, x, q, n);
                nn_dequantize_row(type, q, y, n);
                for (size_t i = 0; i < n; i++)
                        cr_assert(isfinite(y[i]), "%s: element %zu is %g", nn_type_name(type), i, y[i]);
        }
}

Test(quant, q4_0_and_q8_0_quantise_as_ggml_reference) {
        /* ggml: Q8_0 maps the block's largest magnitude to ±127; Q4_0 maps
         * the largest-magnitude value to level 0 (i.e. -8·d). */
        float x[32];
        uint8_t b[34];

        for (int i = 0; i < 32; i++)
                x[i] = (float) (i - 20);        /* -20 is the largest magnitude */
        nn_quantize_row(NN_TYPE_Q8_0, x, b, 32);
        cr_assert_eq(rd16(b), nn_f32_to_fp16(20.0f / 127.0f));
        cr_assert_eq((int8_t) b[2], -127);
        cr_assert_eq((int8_t) b[2 + 20], 0);
        nn_quantize_row(NN_TYPE_Q4_0, x, b, 32);
        cr_assert_eq(rd16(b), nn_f32_to_fp16(2.5f));
        cr_assert_eq(b[2] & 15, 0);             /* -20 / 2.5 + 8 */
        cr_assert_eq(b[2 + 4] >> 4, 8);         /* x[20] = 0, the high nibble of byte 4 */
}

/* ---- Dot products ---- */

static void check_dot(enum nn_type type, size_t n, const char *family) {
        _cleanup_free_ uint8_t *row = random_row(type, n);
        _cleanup_free_ float *x = random_floats(n, false);
        _cleanup_free_ float *a = malloc(n * sizeof(float));
        double want = 0.0, mag = 0.0;

        cr_assert_not_null(a);
        nn_dequantize_row(type, row, a, n);
        for (size_t i = 0; i < n; i++) {
                want += (double) a[i] * x[i];
                mag += fabs((double) a[i] * x[i]);
        }
        float got = nn_vec_dot(type, row, x, n);
        cr_assert_leq(fabs(got - want), 1e-4 * mag + 1e-30,
                      "%s %s n=%zu: dot %.9g, want %.9g (Σ|a·x| %g)", family, nn_type_name(type), n, got, want, mag);
}

static void check_family(const char *family) {
        int r = nn_simd_force(family);

        if (r == -EOPNOTSUPP)
                cr_skip_test("this CPU has no %s", family);
        cr_assert_eq(r, 0);
        cr_assert_str_eq(nn_simd_name(), family);
        rng_seed(21);
        for (size_t t = 0; t < N_TYPES; t++) {
                enum nn_type type = all_types[t];
                size_t be = nn_type_block_elems(type);
                /* One block, several (for the plain types, lengths that leave
                 * every kind of remainder), a model's row, and an odd count of
                 * K-quant super-blocks. */
                const size_t ns[] = { be, 3 * be, 7 * be, 37 * be, 4096, be == 1 ? 4096 + 83 : 4096 + be };

                for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++)
                        for (int rep = 0; rep < 4; rep++)
                                check_dot(type, ns[i], family);
        }
        nn_simd_force(NULL);
}

Test(quant, vec_dot_generic_matches_the_dequantised_row) {
        check_family("generic");
}

Test(quant, vec_dot_avx2_matches_the_dequantised_row) {
        check_family("avx2");
}

Test(quant, vec_dot_avx512_matches_the_dequantised_row) {
        check_family("avx512");
}

Test(quant, vec_dot_reads_rows_at_any_byte_offset) {
        const char *families[] = { "generic", "avx2", "avx512" };

        rng_seed(31);
        for (size_t f = 0; f < 3; f++) {
                if (nn_simd_force(families[f]) < 0)
                        continue;
                for (size_t t = 0; t < N_TYPES; t++) {
                        enum nn_type type = all_types[t];
                        size_t n = 1024, bytes = nn_row_bytes(type, n);
                        _cleanup_free_ uint8_t *row = random_row(type, n);
                        _cleanup_free_ uint8_t *shifted = malloc(bytes + 1);
                        _cleanup_free_ float *x = random_floats(n + 1, false);

                        cr_assert_not_null(shifted);
                        memcpy(shifted + 1, row, bytes);
                        /* x + 1: floats off their 32-byte alignment too. */
                        cr_assert_eq(float_bits(nn_vec_dot(type, shifted + 1, x + 1, n)),
                                     float_bits(nn_vec_dot(type, row, x + 1, n)),
                                     "%s %s", families[f], nn_type_name(type));
                }
        }
        nn_simd_force(NULL);
}

Test(quant, vec_dot_of_a_zero_row_is_zero) {
        float x[NN_QK_K];
        uint8_t row[NN_QK_K * sizeof(float)] = { 0 };

        for (int i = 0; i < NN_QK_K; i++)
                x[i] = (float) i;
        for (size_t t = 0; t < N_TYPES; t++) {
                size_t n = nn_type_block_elems(all_types[t]) == 1 ? 83 : nn_type_block_elems(all_types[t]);

                /* All-zero bytes: zero scales, so zero whatever the quants. */
                cr_assert_eq(nn_vec_dot(all_types[t], row, x, n), 0.0f, "%s", nn_type_name(all_types[t]));
        }
}

/* ---- Integer dot products with int8 activations ---- */

static const enum nn_type int8_types[] = {
        NN_TYPE_Q4_0, NN_TYPE_Q8_0, NN_TYPE_Q4_K, NN_TYPE_Q5_K, NN_TYPE_Q6_K,
};
#define N_INT8_TYPES (sizeof(int8_types) / sizeof(int8_types[0]))

static const char *const families[] = { "generic", "avx2", "avx512" };
#define N_FAMILIES (sizeof(families) / sizeof(families[0]))

static float rd_f32(const uint8_t *p) {
        float f;

        memcpy(&f, p, sizeof(f));
        return f;
}

/* The activation layouts as nn-quant.h states them: blocks of 32 (36 B: f32
 * d, 32 int8) for Q4_0/Q8_0, of 256 (292 B: f32 d, 256 int8, 16 int16
 * sums) for the K-quants.  Writes each element's value q·d and its block's
 * d, and checks what the layout promises of each block. */
static void ref_act_decode(enum nn_type type, const uint8_t *xq, size_t n, float *y, float *step) {
        size_t blk = type == NN_TYPE_Q4_0 || type == NN_TYPE_Q8_0 ? 32 : 256;
        size_t bytes = blk == 32 ? 36 : 292;

        cr_assert_eq(nn_act_bytes(type, n), n / blk * bytes);
        for (size_t b = 0; b < n / blk; b++, xq += bytes) {
                float d = rd_f32(xq);

                for (size_t j = 0; j < blk; j++) {
                        int q = (int8_t) xq[4 + j];

                        cr_assert(q >= -127, "%s: quant -128 in block %zu", nn_type_name(type), b);
                        y[b * blk + j] = (float) q * d;
                        step[b * blk + j] = d;
                }
                for (size_t j = 0; blk == 256 && j < 16; j++) {
                        int sum = 0;

                        for (size_t l = 0; l < 16; l++)
                                sum += (int8_t) xq[4 + 16 * j + l];
                        cr_assert_eq((int16_t) rd16(xq + 260 + 2 * j), sum, "%s block %zu: sum %zu",
                                     nn_type_name(type), b, j);
                }
        }
}

Test(quant, int8_dot_is_for_the_block_quants_only) {
        for (size_t t = 0; t < N_TYPES; t++) {
                enum nn_type type = all_types[t];
                bool want = nn_type_block_elems(type) > 1;

                cr_assert_eq(nn_type_int8_dot(type), want, "%s", nn_type_name(type));
                if (!want)
                        cr_assert_eq(nn_act_bytes(type, 4096), 0);
        }
        cr_assert_eq(nn_act_bytes(NN_TYPE_Q4_0, 64), 72);
        cr_assert_eq(nn_act_bytes(NN_TYPE_Q8_0, 32), 36);
        cr_assert_eq(nn_act_bytes(NN_TYPE_Q4_K, 512), 584);
        cr_assert_eq(nn_act_bytes(NN_TYPE_Q6_K, 256), 292);
}

/* Each element within half a step of its source, the largest magnitude of
 * each block at ±127, and every family writing the same bytes. */
Test(quant, quantised_activations_round_each_element_to_its_blocks_step) {
        const size_t n = 4096;

        rng_seed(41);
        for (size_t t = 0; t < N_INT8_TYPES; t++) {
                enum nn_type type = int8_types[t];
                size_t bytes = nn_act_bytes(type, n);
                _cleanup_free_ float *x = random_floats(n, true);
                _cleanup_free_ float *y = malloc(n * sizeof(float));
                _cleanup_free_ float *step = malloc(n * sizeof(float));
                _cleanup_free_ uint8_t *want = malloc(bytes);
                _cleanup_free_ uint8_t *got = malloc(bytes);

                cr_assert(y && step && want && got);
                /* Blocks of very different sizes, one of them all zero. */
                for (size_t i = 0; i < n; i++)
                        x[i] *= (i / 256) % 3 == 0 ? 1e-3f : (i / 256) == 7 ? 0.0f : 10.0f;
                cr_assert_eq(nn_simd_force("generic"), 0);
                nn_quantize_act(type, x, want, n);
                ref_act_decode(type, want, n, y, step);
                for (size_t i = 0; i < n; i++)
                        cr_assert_leq(fabs((double) y[i] - x[i]), 0.5 * step[i] * (1 + 1e-5),
                                      "%s element %zu: %g became %g, step %g", nn_type_name(type), i, x[i], y[i], step[i]);
                for (size_t f = 1; f < N_FAMILIES; f++) {
                        if (nn_simd_force(families[f]) < 0)
                                continue;
                        memset(got, 0xa5, bytes);
                        nn_quantize_act(type, x, got, n);
                        cr_assert_arr_eq(got, want, bytes, "%s %s", families[f], nn_type_name(type));
                }
        }
        nn_simd_force(NULL);
}

/* The row against the ORIGINAL x: off by at most what moving each x_i by
 * half its block's step can do (Σ|a_i|·step_i/2), plus f32 rounding; and
 * against the dequantised activations: exact integer sums, so only the f32
 * scaling and accumulation differ from a double-precision dot. */
static void check_dot_act(enum nn_type type, size_t n, const char *family) {
        _cleanup_free_ uint8_t *row = random_row(type, n);
        _cleanup_free_ float *x = random_floats(n, false);
        _cleanup_free_ float *a = malloc(n * sizeof(float));
        _cleanup_free_ float *y = malloc(n * sizeof(float));
        _cleanup_free_ float *step = malloc(n * sizeof(float));
        _cleanup_free_ uint8_t *xq = malloc(nn_act_bytes(type, n));
        double want = 0.0, want_q = 0.0, mag = 0.0, mag_q = 0.0, moved = 0.0;

        cr_assert(a && y && step && xq);
        nn_dequantize_row(type, row, a, n);
        nn_quantize_act(type, x, xq, n);
        ref_act_decode(type, xq, n, y, step);
        for (size_t i = 0; i < n; i++) {
                want += (double) a[i] * x[i];
                mag += fabs((double) a[i] * x[i]);
                want_q += (double) a[i] * y[i];
                mag_q += fabs((double) a[i] * y[i]);
                moved += fabs((double) a[i]) * step[i] / 2;
        }
        float got = nn_vec_dot_act(type, row, xq, n);
        cr_assert_leq(fabs(got - want_q), 1e-5 * mag_q + 1e-30,
                      "%s %s n=%zu: dot %.9g, with the quantised x %.9g (Σ|a·x| %g)",
                      family, nn_type_name(type), n, got, want_q, mag_q);
        cr_assert_leq(fabs(got - want), moved + 1e-5 * mag + 1e-30,
                      "%s %s n=%zu: dot %.9g, with the original x %.9g (bound %g)",
                      family, nn_type_name(type), n, got, want, moved + 1e-5 * mag);
}

static void check_act_family(const char *family) {
        int r = nn_simd_force(family);

        if (r == -EOPNOTSUPP)
                cr_skip_test("this CPU has no %s", family);
        cr_assert_eq(r, 0);
        rng_seed(43);
        for (size_t t = 0; t < N_INT8_TYPES; t++) {
                size_t be = nn_type_block_elems(int8_types[t]);
                /* One block, an odd count (the AVX-512 kernels take four
                 * blocks at a time), a model's row, and one block more. */
                const size_t ns[] = { be, 3 * be, 7 * be, 37 * be, 4096, 4096 + be };

                for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++)
                        for (int rep = 0; rep < 4; rep++)
                                check_dot_act(int8_types[t], ns[i], family);
        }
        nn_simd_force(NULL);
}

Test(quant, vec_dot_act_generic_matches_the_dequantised_row) {
        check_act_family("generic");
}

Test(quant, vec_dot_act_avx2_matches_the_dequantised_row) {
        check_act_family("avx2");
}

Test(quant, vec_dot_act_avx512_matches_the_dequantised_row) {
        check_act_family("avx512");
}

/* Same row, same quantised x: the families differ only in the order of the
 * f32 additions. */
Test(quant, vec_dot_act_simd_equals_generic) {
        rng_seed(47);
        for (size_t t = 0; t < N_INT8_TYPES; t++) {
                enum nn_type type = int8_types[t];
                size_t be = nn_type_block_elems(type);
                const size_t ns[] = { be, 5 * be, 4096 + 3 * be };

                for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
                        size_t n = ns[k];
                        _cleanup_free_ uint8_t *row = random_row(type, n);
                        _cleanup_free_ float *x = random_floats(n, true);
                        _cleanup_free_ float *a = malloc(n * sizeof(float));
                        _cleanup_free_ float *y = malloc(n * sizeof(float));
                        _cleanup_free_ float *step = malloc(n * sizeof(float));
                        _cleanup_free_ uint8_t *xq = malloc(nn_act_bytes(type, n));
                        double mag = 0.0;

                        cr_assert(a && y && step && xq);
                        cr_assert_eq(nn_simd_force("generic"), 0);
                        nn_quantize_act(type, x, xq, n);
                        float want = nn_vec_dot_act(type, row, xq, n);
                        nn_dequantize_row(type, row, a, n);
                        ref_act_decode(type, xq, n, y, step);
                        for (size_t i = 0; i < n; i++)
                                mag += fabs((double) a[i] * y[i]);
                        for (size_t f = 1; f < N_FAMILIES; f++) {
                                if (nn_simd_force(families[f]) < 0)
                                        continue;
                                float got = nn_vec_dot_act(type, row, xq, n);
                                cr_assert_leq(fabs((double) got - want), 1e-5 * mag + 1e-30,
                                              "%s %s n=%zu: %.9g, generic %.9g", families[f], nn_type_name(type), n, got, want);
                        }
                }
        }
        nn_simd_force(NULL);
}

Test(quant, vec_dot_act_reads_rows_and_activations_at_any_byte_offset) {
        rng_seed(53);
        for (size_t f = 0; f < N_FAMILIES; f++) {
                if (nn_simd_force(families[f]) < 0)
                        continue;
                for (size_t t = 0; t < N_INT8_TYPES; t++) {
                        enum nn_type type = int8_types[t];
                        size_t n = 1024, bytes = nn_row_bytes(type, n), abytes = nn_act_bytes(type, n);
                        _cleanup_free_ uint8_t *row = random_row(type, n);
                        _cleanup_free_ uint8_t *shifted = malloc(bytes + 1);
                        _cleanup_free_ float *x = random_floats(n, false);
                        _cleanup_free_ uint8_t *xq = malloc(abytes);
                        _cleanup_free_ uint8_t *xq_shifted = malloc(abytes + 3);

                        cr_assert(shifted && xq && xq_shifted);
                        memcpy(shifted + 1, row, bytes);
                        nn_quantize_act(type, x, xq, n);
                        nn_quantize_act(type, x, xq_shifted + 3, n);
                        cr_assert_eq(float_bits(nn_vec_dot_act(type, shifted + 1, xq_shifted + 3, n)),
                                     float_bits(nn_vec_dot_act(type, row, xq, n)),
                                     "%s %s", families[f], nn_type_name(type));
                }
        }
        nn_simd_force(NULL);
}

Test(quant, vec_dot_act_is_zero_for_a_zero_row_and_nan_for_a_nan_in_x) {
        rng_seed(59);
        for (size_t f = 0; f < N_FAMILIES; f++) {
                if (nn_simd_force(families[f]) < 0)
                        continue;
                for (size_t t = 0; t < N_INT8_TYPES; t++) {
                        enum nn_type type = int8_types[t];
                        size_t n = 2 * NN_QK_K;
                        _cleanup_free_ uint8_t *zero = calloc(1, nn_row_bytes(type, n));
                        _cleanup_free_ uint8_t *row = random_row(type, n);
                        _cleanup_free_ float *x = random_floats(n, false);
                        _cleanup_free_ uint8_t *xq = malloc(nn_act_bytes(type, n));

                        cr_assert(zero && xq);
                        nn_quantize_act(type, x, xq, n);
                        cr_assert_eq(nn_vec_dot_act(type, zero, xq, n), 0.0f, "%s %s", families[f], nn_type_name(type));
                        /* A plain maximum over the block would skip the NaN
                         * and the dot would come out finite. */
                        x[300] = NAN;
                        nn_quantize_act(type, x, xq, n);
                        cr_assert(isnan(nn_vec_dot_act(type, row, xq, n)), "%s %s", families[f], nn_type_name(type));
                }
        }
        nn_simd_force(NULL);
}

/* ---- Family selection ---- */

Test(quant, simd_force_picks_a_family_and_null_restores_the_best) {
        const char *best = nn_simd_name();

        cr_assert(strcmp(best, "generic") == 0 || strcmp(best, "avx2") == 0 || strcmp(best, "avx512") == 0);
        cr_assert_eq(nn_simd_force("generic"), 0);
        cr_assert_str_eq(nn_simd_name(), "generic");
        cr_assert_eq(nn_simd_force("sse9"), -EINVAL);
        cr_assert_str_eq(nn_simd_name(), "generic");
        cr_assert_eq(nn_simd_force(NULL), 0);
        cr_assert_str_eq(nn_simd_name(), best);
#if !defined(__x86_64__)
        cr_assert_eq(nn_simd_force("avx2"), -EOPNOTSUPP);
#endif
}

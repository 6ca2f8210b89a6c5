/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Weight-row kernels.  The block layouts are the GGUF format's (ggml's
 * block_q4_0, block_q8_0, block_q4_K, block_q5_K, block_q6_K), little-endian
 * and packed, read here byte by byte so that rows need no alignment:
 *
 *   Q4_0 (18 B / 32):  f16 d; 16 B nibbles: elem j = low nibble of qs[j],
 *                      elem j+16 = high nibble; value (q - 8)·d.
 *   Q8_0 (34 B / 32):  f16 d; 32 int8; value q·d.
 *   Q4_K (144 B / 256): f16 d, f16 dmin, 12 B of eight 6-bit scales and mins,
 *                      128 B nibbles.  Chunk c (64 elems) uses qs[32c..32c+31]:
 *                      low nibbles are sub-block 2c, high ones 2c+1; value
 *                      d·sc·q - dmin·m.
 *   Q5_K (176 B / 256): as Q4_K plus 32 B qh between scales and qs: bit 2c of
 *                      qh[l] is bit 4 of sub-block 2c's elem l, bit 2c+1 of
 *                      sub-block 2c+1's.
 *   Q6_K (210 B / 256): 128 B ql, 64 B qh, 16 int8 scales, f16 d.  Each half
 *                      h (128 elems) uses ql[64h..], qh[32h..], scales[8h..];
 *                      elem l (< 32) of its four quarters: low nibble of
 *                      ql[l], low of ql[l+32], high of ql[l], high of ql[l+32],
 *                      with bits 0-1, 2-3, 4-5, 6-7 of qh[l] on top; value
 *                      d·sc·(q - 32), one scale per 16 elems.
 *
 * The SIMD dot products decode a block in registers and never write it out;
 * the family is picked once, at first use. */

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "nn-quant.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#define Q4_0_BYTES 18
#define Q8_0_BYTES 34
#define Q4_K_BYTES 144
#define Q5_K_BYTES 176
#define Q6_K_BYTES 210

/* Offsets inside the K-quant super-blocks. */
#define K_SCALES 4                      /* after d and dmin */
#define Q4_K_QS 16
#define Q5_K_QH 16
#define Q5_K_QS 48
#define Q6_K_QH 128
#define Q6_K_SCALES 192
#define Q6_K_D 208

/* Activations quantised for the integer dot products (nn_quantize_act):
 *
 *   A32 (36 B / 32):   f32 d; 32 int8 in -127..127; value q·d.  For Q4_0
 *                      and Q8_0 rows.
 *   A256 (292 B / 256): f32 d; 256 int8 in -127..127; 16 int16 sums of the
 *                      quants 16j..16j+15.  For the K-quants: the sums turn
 *                      Q4_K/Q5_K's offsets and Q6_K's bias of 32 into one
 *                      product per sub-block instead of one per element.
 *
 * -128 never occurs, so the sign trick (|w| · ±y) and vpmaddubsw's pair
 * sums (at most 2·128·127 or 2·63·127) never overflow int16. */
#define A32_BYTES 36
#define A256_BYTES 292
#define A_QS 4
#define A256_SUMS 260

static float load_fp16(const uint8_t *p) {
        return nn_fp16_to_f32((uint16_t) (p[0] | p[1] << 8));
}

static void store_fp16(uint8_t *p, float f) {
        uint16_t h = nn_f32_to_fp16(f);

        p[0] = (uint8_t) h;
        p[1] = (uint8_t) (h >> 8);
}

/* The eight 6-bit scales and mins of Q4_K/Q5_K: sub-blocks 0-3 keep theirs
 * in the low 6 bits of bytes 0-3 (scales) and 4-7 (mins); 4-7 have their low
 * 4 bits in the nibbles of bytes 8-11 and their top 2 bits in the spare top
 * bits of bytes 0-3 (scales) and 4-7 (mins). */
static void k_scales_unpack(const uint8_t s[static 12], uint8_t sc[static 8], uint8_t mn[static 8]) {
        for (int j = 0; j < 4; j++) {
                sc[j] = s[j] & 63;
                mn[j] = s[j + 4] & 63;
                sc[j + 4] = (uint8_t) ((s[j + 8] & 0xf) | (s[j] >> 6) << 4);
                mn[j + 4] = (uint8_t) ((s[j + 8] >> 4) | (s[j + 4] >> 6) << 4);
        }
}

static void k_scales_pack(const uint8_t sc[static 8], const uint8_t mn[static 8], uint8_t s[static 12]) {
        for (int j = 0; j < 4; j++) {
                s[j] = (uint8_t) (sc[j] | (sc[j + 4] >> 4) << 6);
                s[j + 4] = (uint8_t) (mn[j] | (mn[j + 4] >> 4) << 6);
                s[j + 8] = (uint8_t) ((sc[j + 4] & 0xf) | (mn[j + 4] & 0xf) << 4);
        }
}

/* ---- Dequantisation (the reference every other path is checked against) ---- */

static void dequant_q4_0(const uint8_t *b, float *y) {
        float d = load_fp16(b);

        for (int j = 0; j < 16; j++) {
                y[j] = (float) ((b[2 + j] & 0xf) - 8) * d;
                y[j + 16] = (float) ((b[2 + j] >> 4) - 8) * d;
        }
}

static void dequant_q8_0(const uint8_t *b, float *y) {
        float d = load_fp16(b);

        for (int j = 0; j < 32; j++)
                y[j] = (float) (int8_t) b[2 + j] * d;
}

/* Q4_K and Q5_K share everything but the fifth bit (qh NULL for Q4_K). */
static void dequant_k45(const uint8_t *b, const uint8_t *qh, const uint8_t *qs, float *y) {
        float d = load_fp16(b), dmin = load_fp16(b + 2);
        uint8_t sc[8], mn[8];

        k_scales_unpack(b + K_SCALES, sc, mn);
        for (int c = 0; c < 4; c++, qs += 32, y += 64) {
                float d1 = d * sc[2 * c], m1 = dmin * mn[2 * c];
                float d2 = d * sc[2 * c + 1], m2 = dmin * mn[2 * c + 1];

                for (int l = 0; l < 32; l++) {
                        int lo = qs[l] & 0xf, hi = qs[l] >> 4;

                        if (qh) {
                                lo |= (qh[l] >> (2 * c) & 1) << 4;
                                hi |= (qh[l] >> (2 * c + 1) & 1) << 4;
                        }
                        y[l] = d1 * (float) lo - m1;
                        y[l + 32] = d2 * (float) hi - m2;
                }
        }
}

static void dequant_q6_k(const uint8_t *b, float *y) {
        float d = load_fp16(b + Q6_K_D);

        for (int h = 0; h < 2; h++, y += 128) {
                const uint8_t *ql = b + 64 * h, *qh = b + Q6_K_QH + 32 * h;
                const int8_t *sc = (const int8_t *) (b + Q6_K_SCALES + 8 * h);

                for (int l = 0; l < 32; l++) {
                        int s = l / 16;
                        int q1 = ((ql[l] & 0xf) | (qh[l] & 3) << 4) - 32;
                        int q2 = ((ql[l + 32] & 0xf) | (qh[l] >> 2 & 3) << 4) - 32;
                        int q3 = ((ql[l] >> 4) | (qh[l] >> 4 & 3) << 4) - 32;
                        int q4 = ((ql[l + 32] >> 4) | (qh[l] >> 6 & 3) << 4) - 32;

                        y[l] = d * (float) sc[s] * (float) q1;
                        y[l + 32] = d * (float) sc[s + 2] * (float) q2;
                        y[l + 64] = d * (float) sc[s + 4] * (float) q3;
                        y[l + 96] = d * (float) sc[s + 6] * (float) q4;
                }
        }
}

void nn_dequantize_row(enum nn_type type, const void *src, float *dst, size_t n) {
        const uint8_t *b = src;

        switch (type) {
        case NN_TYPE_F32:
                memcpy(dst, src, n * sizeof(float));
                return;
        case NN_TYPE_F16:
                for (size_t i = 0; i < n; i++)
                        dst[i] = load_fp16(b + 2 * i);
                return;
        case NN_TYPE_BF16:
                for (size_t i = 0; i < n; i++)
                        dst[i] = nn_bf16_to_f32((uint16_t) (b[2 * i] | b[2 * i + 1] << 8));
                return;
        case NN_TYPE_Q4_0:
                for (size_t i = 0; i < n / NN_QK4_0; i++)
                        dequant_q4_0(b + i * Q4_0_BYTES, dst + i * NN_QK4_0);
                return;
        case NN_TYPE_Q8_0:
                for (size_t i = 0; i < n / NN_QK8_0; i++)
                        dequant_q8_0(b + i * Q8_0_BYTES, dst + i * NN_QK8_0);
                return;
        case NN_TYPE_Q4_K:
                for (size_t i = 0; i < n / NN_QK_K; i++, b += Q4_K_BYTES)
                        dequant_k45(b, NULL, b + Q4_K_QS, dst + i * NN_QK_K);
                return;
        case NN_TYPE_Q5_K:
                for (size_t i = 0; i < n / NN_QK_K; i++, b += Q5_K_BYTES)
                        dequant_k45(b, b + Q5_K_QH, b + Q5_K_QS, dst + i * NN_QK_K);
                return;
        case NN_TYPE_Q6_K:
                for (size_t i = 0; i < n / NN_QK_K; i++)
                        dequant_q6_k(b + i * Q6_K_BYTES, dst + i * NN_QK_K);
                return;
        }
}

/* ---- Reference quantisers ---- */

static int clamp_int(int v, int lo, int hi) {
        return v < lo ? lo : v > hi ? hi : v;
}

/* Q8_0 and Q4_0 as ggml's reference quantisers: Q8_0 maps the largest
 * magnitude to ±127; Q4_0 maps the value of largest magnitude, sign kept,
 * to -8, so the 16 levels are all used. */
static void quant_q8_0(const float *x, uint8_t *b) {
        float amax = 0.0f;

        for (int j = 0; j < 32; j++)
                amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        store_fp16(b, d);
        for (int j = 0; j < 32; j++)
                b[2 + j] = (uint8_t) (int8_t) clamp_int((int) roundf(x[j] * id), -127, 127);
}

static void quant_q4_0(const float *x, uint8_t *b) {
        float amax = 0.0f, max = 0.0f;

        for (int j = 0; j < 32; j++)
                if (fabsf(x[j]) > amax) {
                        amax = fabsf(x[j]);
                        max = x[j];
                }
        float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        store_fp16(b, d);
        for (int j = 0; j < 16; j++) {
                int lo = clamp_int((int) floorf(x[j] * id + 8.5f), 0, 15);
                int hi = clamp_int((int) floorf(x[j + 16] * id + 8.5f), 0, 15);

                b[2 + j] = (uint8_t) (lo | hi << 4);
        }
}

/* Q4_K/Q5_K: each 32-element sub-block gets the affine map that spans
 * [min(x, 0), max(x)] in nmax steps (the format's offset -dmin·m is never
 * positive); the scales and mins are then quantised to 6 bits against the
 * largest of each, and the elements against the stored (rounded) values.
 * q[] receives 0..nmax per element. */
static void quant_k45(const float *x, uint8_t *b, int nmax, uint8_t q[static NN_QK_K]) {
        float scale[8], min[8], max_scale = 0.0f, max_min = 0.0f;
        uint8_t sc[8], mn[8];

        for (int j = 0; j < 8; j++) {
                float lo = 0.0f, hi = -INFINITY;

                for (int l = 0; l < 32; l++) {
                        lo = fminf(lo, x[32 * j + l]);
                        hi = fmaxf(hi, x[32 * j + l]);
                }
                scale[j] = (hi - lo) / (float) nmax;
                min[j] = -lo;
                max_scale = fmaxf(max_scale, scale[j]);
                max_min = fmaxf(max_min, min[j]);
        }
        store_fp16(b, max_scale / 63.0f);
        store_fp16(b + 2, max_min / 63.0f);
        float d = load_fp16(b), dmin = load_fp16(b + 2);
        for (int j = 0; j < 8; j++) {
                sc[j] = (uint8_t) (d > 0.0f ? clamp_int((int) roundf(scale[j] / d), 0, 63) : 0);
                mn[j] = (uint8_t) (dmin > 0.0f ? clamp_int((int) roundf(min[j] / dmin), 0, 63) : 0);
        }
        k_scales_pack(sc, mn, b + K_SCALES);
        for (int j = 0; j < 8; j++) {
                float ds = d * sc[j], m = dmin * mn[j];

                for (int l = 0; l < 32; l++)
                        q[32 * j + l] = (uint8_t) (ds > 0.0f ? clamp_int((int) roundf((x[32 * j + l] + m) / ds), 0, nmax) : 0);
        }
}

static void quant_q4_k(const float *x, uint8_t *b) {
        uint8_t q[NN_QK_K];

        quant_k45(x, b, 15, q);
        for (int c = 0; c < 4; c++)
                for (int l = 0; l < 32; l++)
                        b[Q4_K_QS + 32 * c + l] = (uint8_t) (q[64 * c + l] | q[64 * c + 32 + l] << 4);
}

static void quant_q5_k(const float *x, uint8_t *b) {
        uint8_t q[NN_QK_K], *qh = b + Q5_K_QH;

        quant_k45(x, b, 31, q);
        memset(qh, 0, 32);
        for (int c = 0; c < 4; c++)
                for (int l = 0; l < 32; l++) {
                        uint8_t lo = q[64 * c + l], hi = q[64 * c + 32 + l];

                        b[Q5_K_QS + 32 * c + l] = (uint8_t) ((lo & 0xf) | (hi & 0xf) << 4);
                        qh[l] |= (uint8_t) ((lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
                }
}

/* Q6_K: symmetric, each 16-element sub-block scaled so that its largest
 * magnitude maps to ±31; the scales are int8 against the largest one. */
static void quant_q6_k(const float *x, uint8_t *b) {
        float scale[16], max_scale = 0.0f;
        uint8_t q[NN_QK_K];

        for (int j = 0; j < 16; j++) {
                float amax = 0.0f;

                for (int l = 0; l < 16; l++)
                        amax = fmaxf(amax, fabsf(x[16 * j + l]));
                scale[j] = amax / 31.0f;
                max_scale = fmaxf(max_scale, scale[j]);
        }
        store_fp16(b + Q6_K_D, max_scale / 127.0f);
        float d = load_fp16(b + Q6_K_D);
        for (int j = 0; j < 16; j++) {
                int s = d > 0.0f ? clamp_int((int) roundf(scale[j] / d), 0, 127) : 0;
                float ds = d * (float) s;

                b[Q6_K_SCALES + j] = (uint8_t) (int8_t) s;
                for (int l = 0; l < 16; l++)
                        q[16 * j + l] = (uint8_t) (32 + (ds > 0.0f ? clamp_int((int) roundf(x[16 * j + l] / ds), -32, 31) : 0));
        }
        for (int h = 0; h < 2; h++) {
                uint8_t *ql = b + 64 * h, *qh = b + Q6_K_QH + 32 * h;
                const uint8_t *qq = q + 128 * h;

                for (int l = 0; l < 32; l++) {
                        ql[l] = (uint8_t) ((qq[l] & 0xf) | (qq[l + 64] & 0xf) << 4);
                        ql[l + 32] = (uint8_t) ((qq[l + 32] & 0xf) | (qq[l + 96] & 0xf) << 4);
                        qh[l] = (uint8_t) (qq[l] >> 4 | (qq[l + 32] >> 4) << 2 |
                                           (qq[l + 64] >> 4) << 4 | (qq[l + 96] >> 4) << 6);
                }
        }
}

void nn_quantize_row(enum nn_type type, const float *src, void *dst, size_t n) {
        uint8_t *b = dst;

        switch (type) {
        case NN_TYPE_F32:
                memcpy(dst, src, n * sizeof(float));
                return;
        case NN_TYPE_F16:
                for (size_t i = 0; i < n; i++)
                        store_fp16(b + 2 * i, src[i]);
                return;
        case NN_TYPE_BF16:
                for (size_t i = 0; i < n; i++) {
                        uint16_t h = nn_f32_to_bf16(src[i]);

                        b[2 * i] = (uint8_t) h;
                        b[2 * i + 1] = (uint8_t) (h >> 8);
                }
                return;
        case NN_TYPE_Q4_0:
                for (size_t i = 0; i < n / NN_QK4_0; i++)
                        quant_q4_0(src + i * NN_QK4_0, b + i * Q4_0_BYTES);
                return;
        case NN_TYPE_Q8_0:
                for (size_t i = 0; i < n / NN_QK8_0; i++)
                        quant_q8_0(src + i * NN_QK8_0, b + i * Q8_0_BYTES);
                return;
        case NN_TYPE_Q4_K:
                for (size_t i = 0; i < n / NN_QK_K; i++)
                        quant_q4_k(src + i * NN_QK_K, b + i * Q4_K_BYTES);
                return;
        case NN_TYPE_Q5_K:
                for (size_t i = 0; i < n / NN_QK_K; i++)
                        quant_q5_k(src + i * NN_QK_K, b + i * Q5_K_BYTES);
                return;
        case NN_TYPE_Q6_K:
                for (size_t i = 0; i < n / NN_QK_K; i++)
                        quant_q6_k(src + i * NN_QK_K, b + i * Q6_K_BYTES);
                return;
        }
}

/* ---- Dot products: portable C ---- */

/* Eight independent partial sums: shorter dependency chains, and a shape
 * compilers vectorise without -ffast-math. */
#define LANES 8

static float sum_lanes(const float acc[static LANES]) {
        return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static float dot_f32_generic(const uint8_t *row, const float *x, size_t n) {
        float acc[LANES] = { 0 }, a[LANES], s = 0.0f;
        size_t i = 0;

        for (; i + LANES <= n; i += LANES) {
                memcpy(a, row + 4 * i, sizeof(a));
                for (int k = 0; k < LANES; k++)
                        acc[k] += a[k] * x[i + k];
        }
        for (; i < n; i++) {
                float v;

                memcpy(&v, row + 4 * i, sizeof(v));
                s += v * x[i];
        }
        return sum_lanes(acc) + s;
}

static float dot_half_generic(const uint8_t *row, const float *x, size_t n, float (*cvt)(uint16_t)) {
        float acc[LANES] = { 0 }, s = 0.0f;
        size_t i = 0;

        for (; i + LANES <= n; i += LANES)
                for (int k = 0; k < LANES; k++) {
                        const uint8_t *p = row + 2 * (i + k);

                        acc[k] += cvt((uint16_t) (p[0] | p[1] << 8)) * x[i + k];
                }
        for (; i < n; i++)
                s += cvt((uint16_t) (row[2 * i] | row[2 * i + 1] << 8)) * x[i];
        return sum_lanes(acc) + s;
}

static float dot_q4_0_generic(const uint8_t *row, const float *x, size_t nb) {
        float sum = 0.0f;

        for (size_t i = 0; i < nb; i++, row += Q4_0_BYTES, x += 32) {
                float acc[LANES] = { 0 };

                for (int j = 0; j < 16; j += LANES)
                        for (int k = 0; k < LANES; k++) {
                                acc[k] += (float) ((row[2 + j + k] & 0xf) - 8) * x[j + k];
                                acc[k] += (float) ((row[2 + j + k] >> 4) - 8) * x[j + k + 16];
                        }
                sum += sum_lanes(acc) * load_fp16(row);
        }
        return sum;
}

static float dot_q8_0_generic(const uint8_t *row, const float *x, size_t nb) {
        float sum = 0.0f;

        for (size_t i = 0; i < nb; i++, row += Q8_0_BYTES, x += 32) {
                float acc[LANES] = { 0 };

                for (int j = 0; j < 32; j += LANES)
                        for (int k = 0; k < LANES; k++)
                                acc[k] += (float) (int8_t) row[2 + j + k] * x[j + k];
                sum += sum_lanes(acc) * load_fp16(row);
        }
        return sum;
}

/* The affine K-quants apply scale and min per element rather than
 * d·Σq·x - m·Σx per sub-block: the latter cancels badly when d·q ≈ m. */
static float dot_k45_generic(const uint8_t *row, const float *x, size_t nb, bool five) {
        float acc[LANES] = { 0 };
        size_t bytes = five ? Q5_K_BYTES : Q4_K_BYTES;

        for (size_t i = 0; i < nb; i++, row += bytes, x += NN_QK_K) {
                const uint8_t *qs = row + (five ? Q5_K_QS : Q4_K_QS), *qh = row + Q5_K_QH;
                float d = load_fp16(row), dmin = load_fp16(row + 2);
                uint8_t sc[8], mn[8];

                k_scales_unpack(row + K_SCALES, sc, mn);
                for (int c = 0; c < 4; c++, qs += 32) {
                        float d1 = d * sc[2 * c], m1 = dmin * mn[2 * c];
                        float d2 = d * sc[2 * c + 1], m2 = dmin * mn[2 * c + 1];
                        const float *x1 = x + 64 * c, *x2 = x1 + 32;

                        for (int j = 0; j < 32; j += LANES)
                                for (int k = 0; k < LANES; k++) {
                                        int l = j + k, lo = qs[l] & 0xf, hi = qs[l] >> 4;

                                        if (five) {
                                                lo |= (qh[l] >> (2 * c) & 1) << 4;
                                                hi |= (qh[l] >> (2 * c + 1) & 1) << 4;
                                        }
                                        acc[k] += (d1 * (float) lo - m1) * x1[l];
                                        acc[k] += (d2 * (float) hi - m2) * x2[l];
                                }
                }
        }
        return sum_lanes(acc);
}

static float dot_q6_k_generic(const uint8_t *row, const float *x, size_t nb) {
        float sum = 0.0f;

        for (size_t i = 0; i < nb; i++, row += Q6_K_BYTES) {
                float d = load_fp16(row + Q6_K_D);

                for (int h = 0; h < 2; h++, x += 128) {
                        const uint8_t *ql = row + 64 * h, *qh = row + Q6_K_QH + 32 * h;
                        const int8_t *sc = (const int8_t *) (row + Q6_K_SCALES + 8 * h);

                        /* Quarter r, half s of it is sub-block 2r + s. */
                        for (int s = 0; s < 2; s++) {
                                float acc[4][LANES] = { 0 };

                                for (int j = 16 * s; j < 16 * s + 16; j += LANES)
                                        for (int k = 0; k < LANES; k++) {
                                                int l = j + k;

                                                acc[0][k] += (float) (((ql[l] & 0xf) | (qh[l] & 3) << 4) - 32) * x[l];
                                                acc[1][k] += (float) (((ql[l + 32] & 0xf) | (qh[l] >> 2 & 3) << 4) - 32) * x[l + 32];
                                                acc[2][k] += (float) (((ql[l] >> 4) | (qh[l] >> 4 & 3) << 4) - 32) * x[l + 64];
                                                acc[3][k] += (float) (((ql[l + 32] >> 4) | (qh[l] >> 6 & 3) << 4) - 32) * x[l + 96];
                                        }
                                for (int r = 0; r < 4; r++)
                                        sum += sum_lanes(acc[r]) * (d * (float) sc[2 * r + s]);
                        }
                }
        }
        return sum;
}

static float vec_dot_generic(enum nn_type type, const uint8_t *row, const float *x, size_t n) {
        switch (type) {
        case NN_TYPE_F32:  return dot_f32_generic(row, x, n);
        case NN_TYPE_F16:  return dot_half_generic(row, x, n, nn_fp16_to_f32);
        case NN_TYPE_BF16: return dot_half_generic(row, x, n, nn_bf16_to_f32);
        case NN_TYPE_Q4_0: return dot_q4_0_generic(row, x, n / NN_QK4_0);
        case NN_TYPE_Q8_0: return dot_q8_0_generic(row, x, n / NN_QK8_0);
        case NN_TYPE_Q4_K: return dot_k45_generic(row, x, n / NN_QK_K, false);
        case NN_TYPE_Q5_K: return dot_k45_generic(row, x, n / NN_QK_K, true);
        case NN_TYPE_Q6_K: return dot_q6_k_generic(row, x, n / NN_QK_K);
        }
        return 0.0f;
}

/* ---- Integer dot products with int8 activations: portable C ---- */

static size_t act_block_elems(enum nn_type type) {
        return type == NN_TYPE_Q4_0 || type == NN_TYPE_Q8_0 ? 32 : NN_QK_K;
}

static float load_f32(const uint8_t *p) {
        float f;

        memcpy(&f, p, sizeof(f));
        return f;
}

static int16_t load_i16(const uint8_t *p) {
        return (int16_t) (p[0] | p[1] << 8);
}

/* The scale of one block: amax/127, NaN when the block holds a NaN (a
 * plain maximum would skip it and the dot would hide it). */
static float act_amax(const float *x, size_t len) {
        float amax = 0.0f;

        for (size_t j = 0; j < len; j++) {
                float a = fabsf(x[j]);

                amax = a > amax || a != a ? a : amax;
        }
        return amax;
}

/* lrintf rounds half to even, as cvtps2dq does in the SIMD quantiser. */
static void quantize_act_generic(enum nn_type type, const float *x, uint8_t *dst, size_t n) {
        size_t blk = act_block_elems(type), bytes = blk == 32 ? A32_BYTES : A256_BYTES;

        for (size_t i = 0; i < n / blk; i++, x += blk, dst += bytes) {
                float amax = act_amax(x, blk), d = amax / 127.0f;
                float id = amax > 0.0f ? 127.0f / amax : 0.0f;
                int8_t *q = (int8_t *) (dst + A_QS);

                memcpy(dst, &d, sizeof(d));
                for (size_t j = 0; j < blk; j++)
                        q[j] = (int8_t) clamp_int((int) lrintf(x[j] * id), -127, 127);
                if (blk == NN_QK_K)
                        for (int j = 0; j < 16; j++) {
                                int sum = 0;

                                for (int l = 0; l < 16; l++)
                                        sum += q[16 * j + l];
                                dst[A256_SUMS + 2 * j] = (uint8_t) sum;
                                dst[A256_SUMS + 2 * j + 1] = (uint8_t) ((unsigned) sum >> 8);
                        }
        }
}

static float dot_act_q4_0_generic(const uint8_t *row, const uint8_t *a, size_t nb) {
        float sum = 0.0f;

        for (size_t i = 0; i < nb; i++, row += Q4_0_BYTES, a += A32_BYTES) {
                const int8_t *y = (const int8_t *) (a + A_QS);
                int isum = 0;

                for (int j = 0; j < 16; j++)
                        isum += ((row[2 + j] & 0xf) - 8) * y[j] + ((row[2 + j] >> 4) - 8) * y[j + 16];
                sum += (float) isum * (load_fp16(row) * load_f32(a));
        }
        return sum;
}

static float dot_act_q8_0_generic(const uint8_t *row, const uint8_t *a, size_t nb) {
        float sum = 0.0f;

        for (size_t i = 0; i < nb; i++, row += Q8_0_BYTES, a += A32_BYTES) {
                const int8_t *y = (const int8_t *) (a + A_QS);
                int isum = 0;

                for (int j = 0; j < 32; j++)
                        isum += (int8_t) row[2 + j] * y[j];
                sum += (float) isum * (load_fp16(row) * load_f32(a));
        }
        return sum;
}

/* Σ (d·sc·q - dmin·m)·y = d·Σ sc·Σq·y - dmin·Σ m·Σy per super-block: both
 * sums are exact integers, so only the last two products round. */
static float dot_act_k45_generic(const uint8_t *row, const uint8_t *a, size_t nb, bool five) {
        size_t bytes = five ? Q5_K_BYTES : Q4_K_BYTES;
        float sum = 0.0f;

        for (size_t i = 0; i < nb; i++, row += bytes, a += A256_BYTES) {
                const uint8_t *qs = row + (five ? Q5_K_QS : Q4_K_QS), *qh = row + Q5_K_QH;
                const int8_t *y = (const int8_t *) (a + A_QS);
                float dy = load_f32(a);
                uint8_t sc[8], mn[8];
                int isum = 0, imin = 0;

                k_scales_unpack(row + K_SCALES, sc, mn);
                for (int j = 0; j < 8; j++)
                        imin += mn[j] * (load_i16(a + A256_SUMS + 4 * j) + load_i16(a + A256_SUMS + 4 * j + 2));
                for (int c = 0; c < 4; c++, qs += 32, y += 64) {
                        int s1 = 0, s2 = 0;

                        for (int l = 0; l < 32; l++) {
                                int lo = qs[l] & 0xf, hi = qs[l] >> 4;

                                if (five) {
                                        lo |= (qh[l] >> (2 * c) & 1) << 4;
                                        hi |= (qh[l] >> (2 * c + 1) & 1) << 4;
                                }
                                s1 += lo * y[l];
                                s2 += hi * y[l + 32];
                        }
                        isum += sc[2 * c] * s1 + sc[2 * c + 1] * s2;
                }
                sum += (load_fp16(row) * dy) * (float) isum - (load_fp16(row + 2) * dy) * (float) imin;
        }
        return sum;
}

static float dot_act_q6_k_generic(const uint8_t *row, const uint8_t *a, size_t nb) {
        float sum = 0.0f;

        for (size_t i = 0; i < nb; i++, row += Q6_K_BYTES, a += A256_BYTES) {
                const int8_t *y = (const int8_t *) (a + A_QS);
                int isum = 0;

                for (int h = 0; h < 2; h++, y += 128) {
                        const uint8_t *ql = row + 64 * h, *qh = row + Q6_K_QH + 32 * h;
                        const int8_t *sc = (const int8_t *) (row + Q6_K_SCALES + 8 * h);

                        for (int s = 0; s < 2; s++) {
                                int p[4] = { 0 };

                                for (int l = 16 * s; l < 16 * s + 16; l++) {
                                        p[0] += (((ql[l] & 0xf) | (qh[l] & 3) << 4) - 32) * y[l];
                                        p[1] += (((ql[l + 32] & 0xf) | (qh[l] >> 2 & 3) << 4) - 32) * y[l + 32];
                                        p[2] += (((ql[l] >> 4) | (qh[l] >> 4 & 3) << 4) - 32) * y[l + 64];
                                        p[3] += (((ql[l + 32] >> 4) | (qh[l] >> 6 & 3) << 4) - 32) * y[l + 96];
                                }
                                for (int r = 0; r < 4; r++)
                                        isum += sc[2 * r + s] * p[r];
                        }
                }
                sum += (load_fp16(row + Q6_K_D) * load_f32(a)) * (float) isum;
        }
        return sum;
}

static float vec_dot_act_generic(enum nn_type type, const uint8_t *row, const uint8_t *a, size_t n) {
        switch (type) {
        case NN_TYPE_Q4_0: return dot_act_q4_0_generic(row, a, n / NN_QK4_0);
        case NN_TYPE_Q8_0: return dot_act_q8_0_generic(row, a, n / NN_QK8_0);
        case NN_TYPE_Q4_K: return dot_act_k45_generic(row, a, n / NN_QK_K, false);
        case NN_TYPE_Q5_K: return dot_act_k45_generic(row, a, n / NN_QK_K, true);
        case NN_TYPE_Q6_K: return dot_act_q6_k_generic(row, a, n / NN_QK_K);
        default:           return 0.0f;
        }
}

#if defined(__x86_64__)

/* ---- Dot products: AVX2 + FMA + F16C ---- */

#define TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))

TARGET_AVX2 static inline float hsum_avx2(__m256 v) {
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        return _mm_cvtss_f32(s);
}

/* A block's f16 scale in one instruction: the portable conversion is a
 * call with branches, once per 32 elements in Q8_0 and Q4_0. */
TARGET_AVX2 static inline float load_fp16_f16c(const uint8_t *p) {
        return _cvtsh_ss((unsigned short) (p[0] | p[1] << 8));
}

/* k_scales_unpack() without a loop over bytes, four at a time (x86 is
 * little-endian), already multiplied by d and dmin: per super-block the
 * byte loop cost a fifth of the Q4_K kernel's time. */
static inline void k_scales_u64(const uint8_t *s, uint64_t *sc, uint64_t *mn) {
        uint32_t w[3];

        memcpy(w, s, sizeof(w));
        /* Bits 6-7 of bytes 0-7 become bits 4-5 of sub-blocks 4-7. */
        *sc = (w[0] & 0x3f3f3f3fu) | (uint64_t) ((w[2] & 0x0f0f0f0fu) | (w[0] >> 2 & 0x30303030u)) << 32;
        *mn = (w[1] & 0x3f3f3f3fu) | (uint64_t) ((w[2] >> 4 & 0x0f0f0f0fu) | (w[1] >> 2 & 0x30303030u)) << 32;
}

TARGET_AVX2 static float dot_f32_avx2(const uint8_t *row, const float *x, size_t n) {
        const float *a = (const float *) row;
        __m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
        size_t i = 0;

        for (; i + 32 <= n; i += 32)
                for (int k = 0; k < 4; k++)
                        acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8 * k), _mm256_loadu_ps(x + i + 8 * k), acc[k]);
        for (; i + 8 <= n; i += 8)
                acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(x + i), acc[0]);
        float s = hsum_avx2(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
        for (; i < n; i++)
                s += a[i] * x[i];
        return s;
}

TARGET_AVX2 static inline __m256 load_f16x8_avx2(const uint8_t *p) {
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) p));
}

TARGET_AVX2 static inline __m256 load_bf16x8_avx2(const uint8_t *p) {
        __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *) p));

        return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

TARGET_AVX2 static float dot_half_avx2(const uint8_t *row, const float *x, size_t n, bool bf16) {
        __m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
        size_t i = 0;

        for (; i + 32 <= n; i += 32)
                for (int k = 0; k < 4; k++) {
                        const uint8_t *p = row + 2 * (i + 8 * k);
                        __m256 a = bf16 ? load_bf16x8_avx2(p) : load_f16x8_avx2(p);

                        acc[k] = _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i + 8 * k), acc[k]);
                }
        for (; i + 8 <= n; i += 8) {
                __m256 a = bf16 ? load_bf16x8_avx2(row + 2 * i) : load_f16x8_avx2(row + 2 * i);

                acc[0] = _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i), acc[0]);
        }
        float s = hsum_avx2(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
        for (; i < n; i++) {
                uint16_t h = (uint16_t) (row[2 * i] | row[2 * i + 1] << 8);

                s += (bf16 ? nn_bf16_to_f32(h) : nn_fp16_to_f32(h)) * x[i];
        }
        return s;
}

static float vec_dot_avx2(enum nn_type type, const uint8_t *row, const float *x, size_t n) {
        switch (type) {
        case NN_TYPE_F32:  return dot_f32_avx2(row, x, n);
        case NN_TYPE_F16:  return dot_half_avx2(row, x, n, false);
        case NN_TYPE_BF16: return dot_half_avx2(row, x, n, true);
        /* The quantised types' products go through nn_vec_dot_act (int8
         * activations); this f32 path for them is the reference only. */
        default:           return vec_dot_generic(type, row, x, n);
        }
        return 0.0f;
}

/* ---- Integer dot products with int8 activations: AVX2 ---- */

TARGET_AVX2 static inline float hmax_avx2(__m256 v) {
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        return _mm_cvtss_f32(m);
}

TARGET_AVX2 static inline int hsum_i32x4(__m128i v) {
        v = _mm_add_epi32(v, _mm_unpackhi_epi64(v, v));
        v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 1));
        return _mm_cvtsi128_si32(v);
}

/* As quantize_act_generic, eight lanes at a time; cvtps2dq rounds half to
 * even like lrintf, so both write the same bytes. */
TARGET_AVX2 static void quantize_act_avx2(enum nn_type type, const float *x, uint8_t *dst, size_t n) {
        const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        size_t blk = act_block_elems(type), bytes = blk == 32 ? A32_BYTES : A256_BYTES;

        for (size_t i = 0; i < n / blk; i++, x += blk, dst += bytes) {
                __m256 vmax = _mm256_setzero_ps();
                bool nan = false;

                for (size_t j = 0; j < blk; j += 8) {
                        __m256 v = _mm256_loadu_ps(x + j);

                        nan |= _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0;
                        vmax = _mm256_max_ps(vmax, _mm256_and_ps(v, abs_mask));
                }
                float amax = nan ? NAN : hmax_avx2(vmax), d = amax / 127.0f;
                __m256 id = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);

                memcpy(dst, &d, sizeof(d));
                for (size_t j = 0; j < blk; j += 32) {
                        __m256i q[4];

                        for (int k = 0; k < 4; k++)
                                q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * k), id));
                        /* The packs work within 128-bit lanes: the permute
                         * puts the 32 bytes back in order. */
                        __m256i w = _mm256_packs_epi32(q[0], q[1]), w2 = _mm256_packs_epi32(q[2], q[3]);
                        __m256i b = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w, w2), order);

                        b = _mm256_max_epi8(b, _mm256_set1_epi8(-127));
                        _mm256_storeu_si256((__m256i *) (dst + A_QS + j), b);
                        if (blk == NN_QK_K) {
                                __m128i s0 = _mm_add_epi32(_mm256_castsi256_si128(q[0]), _mm256_extracti128_si256(q[0], 1));
                                __m128i s1 = _mm_add_epi32(_mm256_castsi256_si128(q[2]), _mm256_extracti128_si256(q[2], 1));

                                s0 = _mm_add_epi32(s0, _mm_add_epi32(_mm256_castsi256_si128(q[1]), _mm256_extracti128_si256(q[1], 1)));
                                s1 = _mm_add_epi32(s1, _mm_add_epi32(_mm256_castsi256_si128(q[3]), _mm256_extracti128_si256(q[3], 1)));
                                int16_t sums[2] = { (int16_t) hsum_i32x4(s0), (int16_t) hsum_i32x4(s1) };
                                memcpy(dst + A256_SUMS + 2 * (j / 16), sums, sizeof(sums));
                        }
                }
        }
}

/* Σ w·y over 32 signed bytes each, as 8 int32 lanes.  vpmaddubsw wants one
 * operand unsigned: |w| and y with w's sign (w = -128 gives |w| = 128 as
 * an unsigned byte, still right). */
TARGET_AVX2 static inline __m256i dot_i8x32_avx2(__m256i w, __m256i y) {
        __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(y, w));

        return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

TARGET_AVX2 static inline __m256i q4_0_quants_avx2(const uint8_t *b) {
        __m128i v = _mm_loadu_si128((const __m128i *) (b + 2));
        __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(0x0f));

        return _mm256_sub_epi8(q, _mm256_set1_epi8(8));
}

/* Block b's weights times its activations, scaled: 8 float lanes. */
TARGET_AVX2 static inline __attribute__((always_inline)) __m256 dot_act_block32_avx2(const uint8_t *b, const uint8_t *y, bool q8) {
        __m256i w = q8 ? _mm256_loadu_si256((const __m256i *) (b + 2)) : q4_0_quants_avx2(b);
        __m256i p = dot_i8x32_avx2(w, _mm256_loadu_si256((const __m256i *) (y + A_QS)));

        return _mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(load_fp16_f16c(b) * load_f32(y)));
}

/* Q4_0 and Q8_0, two blocks at a time into two chains (named, not an
 * array: an array indexed in a loop may live in memory, and the chain then
 * runs through a store and a load per block). */
TARGET_AVX2 static inline __attribute__((always_inline)) float dot_act_block32_row_avx2(const uint8_t *row, const uint8_t *a, size_t nb, bool q8) {
        size_t bytes = q8 ? Q8_0_BYTES : Q4_0_BYTES, i = 0;
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();

        for (; i + 2 <= nb; i += 2, row += 2 * bytes, a += 2 * A32_BYTES) {
                acc0 = _mm256_add_ps(acc0, dot_act_block32_avx2(row, a, q8));
                acc1 = _mm256_add_ps(acc1, dot_act_block32_avx2(row + bytes, a + A32_BYTES, q8));
        }
        if (i < nb)
                acc0 = _mm256_add_ps(acc0, dot_act_block32_avx2(row, a, q8));
        return hsum_avx2(_mm256_add_ps(acc0, acc1));
}

TARGET_AVX2 static float dot_act_q4_0_avx2(const uint8_t *row, const uint8_t *a, size_t nb) {
        return dot_act_block32_row_avx2(row, a, nb, false);
}

TARGET_AVX2 static float dot_act_q8_0_avx2(const uint8_t *row, const uint8_t *a, size_t nb) {
        return dot_act_block32_row_avx2(row, a, nb, true);
}

/* Broadcasts 16-bit word j of each 128-bit lane of v (j < 8). */
#define BCAST_WORD(v, j) _mm256_shuffle_epi8((v), _mm256_set1_epi16((short) ((2 * (j) + 1) << 8 | 2 * (j))))

/* Per super-block: the quants times y in vpmaddubsw (unsigned 4- or 5-bit
 * quants, signed y), times the sub-block's scale in vpmaddwd, summed in
 * int32; the mins against A256's sums, one vpmaddwd for all eight. */
TARGET_AVX2 static float dot_act_k45_avx2(const uint8_t *row, const uint8_t *a, size_t nb, bool five) {
        const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
        size_t bytes = five ? Q5_K_BYTES : Q4_K_BYTES;
        __m256 acc = _mm256_setzero_ps();
        __m128 accm = _mm_setzero_ps();

        for (size_t i = 0; i < nb; i++, row += bytes, a += A256_BYTES) {
                const uint8_t *qs = row + (five ? Q5_K_QS : Q4_K_QS), *y = a + A_QS;
                __m256i qh = five ? _mm256_loadu_si256((const __m256i *) (row + Q5_K_QH)) : _mm256_setzero_si256();
                float dy = load_f32(a);
                uint64_t sc, mn;

                k_scales_u64(row + K_SCALES, &sc, &mn);
                __m256i scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long) sc)));
                __m256i bsums = _mm256_loadu_si256((const __m256i *) (a + A256_SUMS));
                /* Pairs of 16-sums are the 32-sums of the eight sub-blocks. */
                __m128i bs32 = _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
                __m128i mins = _mm_madd_epi16(bs32, _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long) mn)));
                __m256i sumi = _mm256_setzero_si256();

                for (int c = 0; c < 4; c++, qs += 32, y += 64) {
                        __m256i v = _mm256_loadu_si256((const __m256i *) qs);
                        __m256i lo = _mm256_and_si256(v, m4);
                        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);

                        if (five) {
                                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(qh, one), 4));
                                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 1), one), 4));
                                qh = _mm256_srli_epi16(qh, 2);
                        }
                        __m256i p1 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *) y));
                        __m256i p2 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *) (y + 32)));

                        p1 = _mm256_madd_epi16(p1, BCAST_WORD(scales, 2 * c));
                        p2 = _mm256_madd_epi16(p2, BCAST_WORD(scales, 2 * c + 1));
                        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p1, p2));
                }
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(load_fp16_f16c(row) * dy), acc);
                accm = _mm_fmadd_ps(_mm_cvtepi32_ps(mins), _mm_set1_ps(load_fp16_f16c(row + 2) * dy), accm);
        }
        __m128 m = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));

        m = _mm_add_ss(m, _mm_movehdup_ps(m));
        return hsum_avx2(acc) - _mm_cvtss_f32(m);
}

/* Q6_K: unsigned 6-bit quants in vpmaddubsw, the bias of 32 taken off once
 * per super-block as 32·Σ sc·(sum of 16 y). */
TARGET_AVX2 static float dot_act_q6_k_avx2(const uint8_t *row, const uint8_t *a, size_t nb) {
        const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(3);
        __m256 acc = _mm256_setzero_ps();

        for (size_t i = 0; i < nb; i++, row += Q6_K_BYTES, a += A256_BYTES) {
                const uint8_t *y = a + A_QS;
                __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) (row + Q6_K_SCALES)));
                __m256i bias = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *) (a + A256_SUMS)), sc16);
                __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(bias, 5));

                for (int h = 0; h < 2; h++, y += 128) {
                        /* This half's eight scales in both lanes. */
                        __m256i sch = h == 0 ? _mm256_permute4x64_epi64(sc16, 0x44) : _mm256_permute4x64_epi64(sc16, 0xee);
                        __m256i ql0 = _mm256_loadu_si256((const __m256i *) (row + 64 * h));
                        __m256i ql1 = _mm256_loadu_si256((const __m256i *) (row + 64 * h + 32));
                        __m256i qh = _mm256_loadu_si256((const __m256i *) (row + Q6_K_QH + 32 * h));
                        __m256i q[4] = {
                                _mm256_and_si256(ql0, m4),
                                _mm256_and_si256(ql1, m4),
                                _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                        };

                        for (int r = 0; r < 4; r++) {
                                __m256i v = _mm256_or_si256(q[r], _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4));
                                __m256i p = _mm256_maddubs_epi16(v, _mm256_loadu_si256((const __m256i *) (y + 32 * r)));
                                /* Elements 0-15 of the quarter (low lane) are
                                 * sub-block 2r, 16-31 are 2r+1. */
                                __m256i s = _mm256_shuffle_epi8(sch, _mm256_set_m128i(
                                        _mm_set1_epi16((short) ((4 * r + 3) << 8 | (4 * r + 2))),
                                        _mm_set1_epi16((short) ((4 * r + 1) << 8 | 4 * r))));

                                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, s));
                                qh = _mm256_srli_epi16(qh, 2);
                        }
                }
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(load_fp16_f16c(row + Q6_K_D) * load_f32(a)), acc);
        }
        return hsum_avx2(acc);
}

static float vec_dot_act_avx2(enum nn_type type, const uint8_t *row, const uint8_t *a, size_t n) {
        switch (type) {
        case NN_TYPE_Q4_0: return dot_act_q4_0_avx2(row, a, n / NN_QK4_0);
        case NN_TYPE_Q8_0: return dot_act_q8_0_avx2(row, a, n / NN_QK8_0);
        case NN_TYPE_Q4_K: return dot_act_k45_avx2(row, a, n / NN_QK_K, false);
        case NN_TYPE_Q5_K: return dot_act_k45_avx2(row, a, n / NN_QK_K, true);
        case NN_TYPE_Q6_K: return dot_act_q6_k_avx2(row, a, n / NN_QK_K);
        default:           return 0.0f;
        }
}

/* ---- Dot products: AVX-512 ---- */

#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx2,fma,f16c")))

TARGET_AVX512 static float dot_f32_avx512(const uint8_t *row, const float *x, size_t n) {
        const float *a = (const float *) row;
        __m512 acc[4] = { _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps() };
        size_t i = 0;
        for (; i + 64 <= n; i += 64)
                for (int k = 0; k < 4; k++)
                        acc[k] = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16 * k), _mm512_loadu_ps(x + i + 16 * k), acc[k]);
        for (; i + 16 <= n; i += 16)
                acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(x + i), acc[0]);
        float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
        for (; i < n; i++)
                s += a[i] * x[i];
        return s;
}

TARGET_AVX512 static inline __m512 load_half16_avx512(const uint8_t *p, bool bf16) {
        __m256i h = _mm256_loadu_si256((const __m256i *) p);

        if (bf16)
                return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        return _mm512_cvtph_ps(h);
}

TARGET_AVX512 static float dot_half_avx512(const uint8_t *row, const float *x, size_t n, bool bf16) {
        __m512 acc[4] = { _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps() };
        size_t i = 0;

        for (; i + 64 <= n; i += 64)
                for (int k = 0; k < 4; k++)
                        acc[k] = _mm512_fmadd_ps(load_half16_avx512(row + 2 * (i + 16 * k), bf16),
                                                 _mm512_loadu_ps(x + i + 16 * k), acc[k]);
        for (; i + 16 <= n; i += 16)
                acc[0] = _mm512_fmadd_ps(load_half16_avx512(row + 2 * i, bf16), _mm512_loadu_ps(x + i), acc[0]);
        float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
        for (; i < n; i++) {
                uint16_t h = (uint16_t) (row[2 * i] | row[2 * i + 1] << 8);

                s += (bf16 ? nn_bf16_to_f32(h) : nn_fp16_to_f32(h)) * x[i];
        }
        return s;
}

static float vec_dot_avx512(enum nn_type type, const uint8_t *row, const float *x, size_t n) {
        switch (type) {
        case NN_TYPE_F32:  return dot_f32_avx512(row, x, n);
        case NN_TYPE_F16:  return dot_half_avx512(row, x, n, false);
        case NN_TYPE_BF16: return dot_half_avx512(row, x, n, true);
        default:           return vec_dot_generic(type, row, x, n);
        }
        return 0.0f;
}

/* Four Q4_0 or Q8_0 blocks' f16 scales times their activations' f32
 * scales. */
TARGET_AVX512 static inline __m128 scales4_avx512(const uint8_t *row, size_t bytes, const uint8_t *a) {
        __m128i h = _mm_setr_epi16((short) load_i16(row), (short) load_i16(row + bytes),
                                   (short) load_i16(row + 2 * bytes), (short) load_i16(row + 3 * bytes), 0, 0, 0, 0);
        __m128 dy = _mm_setr_ps(load_f32(a), load_f32(a + A32_BYTES), load_f32(a + 2 * A32_BYTES), load_f32(a + 3 * A32_BYTES));

        return _mm_mul_ps(_mm_cvtph_ps(h), dy);
}

/* Two blocks' 64 weights as signed bytes, block b first. */
TARGET_AVX512 static inline __m512i block32_pair_avx512(const uint8_t *b, size_t bytes, bool q8) {
        if (q8)
                return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *) (b + 2))),
                                          _mm256_loadu_si256((const __m256i *) (b + bytes + 2)), 1);
        return _mm512_inserti64x4(_mm512_castsi256_si512(q4_0_quants_avx2(b)), q4_0_quants_avx2(b + bytes), 1);
}

/* Two blocks per 512-bit vector, four per iteration: the int-to-float
 * conversion and the scaling, one per block in the AVX2 kernel, cover two
 * blocks here, and the scales of four are converted together. */
TARGET_AVX512 static inline __attribute__((always_inline)) float dot_act_block32_row_avx512(const uint8_t *row, const uint8_t *a, size_t nb, bool q8) {
        const __m512i lo_idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        const __m512i hi_idx = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
        size_t bytes = q8 ? Q8_0_BYTES : Q4_0_BYTES, i = 0;
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();

        for (; i + 4 <= nb; i += 4, row += 4 * bytes, a += 4 * A32_BYTES) {
                __m512 sc = _mm512_castps128_ps512(scales4_avx512(row, bytes, a));
                __m512i p[2];

                for (int k = 0; k < 2; k++) {
                        const uint8_t *ya = a + 2 * k * A32_BYTES + A_QS;
                        __m512i w = block32_pair_avx512(row + 2 * k * bytes, bytes, q8);
                        __m512i y = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *) ya)),
                                                       _mm256_loadu_si256((const __m256i *) (ya + A32_BYTES)), 1);
                        /* The sign trick: no vpsignb in AVX-512, so a
                         * masked negation where w < 0. */
                        __m512i sy = _mm512_mask_sub_epi8(y, _mm512_movepi8_mask(w), _mm512_setzero_si512(), y);

                        p[k] = _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_abs_epi8(w), sy), _mm512_set1_epi16(1));
                }
                acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p[0]), _mm512_permutexvar_ps(lo_idx, sc), acc0);
                acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p[1]), _mm512_permutexvar_ps(hi_idx, sc), acc1);
        }
        float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
        for (; i < nb; i++, row += bytes, a += A32_BYTES)
                sum += hsum_avx2(dot_act_block32_avx2(row, a, q8));
        return sum;
}

TARGET_AVX512 static float dot_act_q4_0_avx512(const uint8_t *row, const uint8_t *a, size_t nb) {
        return dot_act_block32_row_avx512(row, a, nb, false);
}

TARGET_AVX512 static float dot_act_q8_0_avx512(const uint8_t *row, const uint8_t *a, size_t nb) {
        return dot_act_block32_row_avx512(row, a, nb, true);
}

/* The K-quants reach the memory's speed with the AVX2 kernels already. */
static float vec_dot_act_avx512(enum nn_type type, const uint8_t *row, const uint8_t *a, size_t n) {
        switch (type) {
        case NN_TYPE_Q4_0: return dot_act_q4_0_avx512(row, a, n / NN_QK4_0);
        case NN_TYPE_Q8_0: return dot_act_q8_0_avx512(row, a, n / NN_QK8_0);
        default:           return vec_dot_act_avx2(type, row, a, n);
        }
}

#endif /* __x86_64__ */

/* ---- Picking the family ---- */

struct simd_family {
        const char *name;
        float (*vec_dot)(enum nn_type type, const uint8_t *row, const float *x, size_t n);
        void (*quantize_act)(enum nn_type type, const float *x, uint8_t *dst, size_t n);
        float (*vec_dot_act)(enum nn_type type, const uint8_t *row, const uint8_t *a, size_t n);
        bool (*supported)(void);
};

static bool cpu_has_generic(void) {
        return true;
}

#if defined(__x86_64__)
/* __builtin_cpu_supports() checks that the OS saves the AVX and AVX-512
 * state too; F16C is not a name every compiler knows, so ask CPUID. */
static bool cpu_has_f16c(void) {
        unsigned a, b, c, d;

        return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

static bool cpu_has_avx2(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
}

static bool cpu_has_avx512(void) {
        return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}
#endif

/* Best first. */
static const struct simd_family families[] = {
#if defined(__x86_64__)
        { "avx512", vec_dot_avx512, quantize_act_avx2, vec_dot_act_avx512, cpu_has_avx512 },
        { "avx2", vec_dot_avx2, quantize_act_avx2, vec_dot_act_avx2, cpu_has_avx2 },
#endif
        { "generic", vec_dot_generic, quantize_act_generic, vec_dot_act_generic, cpu_has_generic },
};

/* Every thread that finds it NULL computes the same answer, so a relaxed
 * store is enough: the pointee is constant. */
static _Atomic(const struct simd_family *) current;

static const struct simd_family *family_detect(void) {
        for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++)
                if (families[i].supported())
                        return &families[i];
        return &families[sizeof(families) / sizeof(families[0]) - 1];
}

static const struct simd_family *family_get(void) {
        const struct simd_family *f = atomic_load_explicit(&current, memory_order_relaxed);

        if (!f) {
                f = family_detect();
                atomic_store_explicit(&current, f, memory_order_relaxed);
        }
        return f;
}

float nn_vec_dot(enum nn_type type, const void *row, const float *x, size_t n) {
        return family_get()->vec_dot(type, row, x, n);
}

bool nn_type_int8_dot(enum nn_type type) {
        switch (type) {
        case NN_TYPE_Q4_0:
        case NN_TYPE_Q8_0:
        case NN_TYPE_Q4_K:
        case NN_TYPE_Q5_K:
        case NN_TYPE_Q6_K:
                return true;
        default:
                return false;
        }
}

size_t nn_act_bytes(enum nn_type type, size_t n) {
        if (!nn_type_int8_dot(type))
                return 0;
        if (act_block_elems(type) == 32)
                return n / 32 * A32_BYTES;
        return n / NN_QK_K * A256_BYTES;
}

void nn_quantize_act(enum nn_type type, const float *x, void *dst, size_t n) {
        family_get()->quantize_act(type, x, dst, n);
}

float nn_vec_dot_act(enum nn_type type, const void *row, const void *xq, size_t n) {
        return family_get()->vec_dot_act(type, row, xq, n);
}

const char *nn_simd_name(void) {
        return family_get()->name;
}

int nn_simd_force(const char *name) {
        if (!name) {
                atomic_store_explicit(&current, family_detect(), memory_order_relaxed);
                return 0;
        }
        for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++)
                if (strcmp(families[i].name, name) == 0) {
                        if (!families[i].supported())
                                return -EOPNOTSUPP;
                        atomic_store_explicit(&current, &families[i], memory_order_relaxed);
                        return 0;
                }
        /* A family this build does not have (avx2 on arm64) is as unsupported
         * as one this CPU lacks. */
        if (strcmp(name, "avx2") == 0 || strcmp(name, "avx512") == 0)
                return -EOPNOTSUPP;
        return -EINVAL;
}

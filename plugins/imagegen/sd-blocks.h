/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The building blocks of Stable Diffusion's UNet on the shared engine's
 * ops (plugins/nn): the sinusoidal timestep embedding, the ResBlock (GroupNorm
 * and SiLU, a 3×3 convolution whose bias carries the projected time
 * embedding, GroupNorm and SiLU again, a second 3×3 convolution, the skip
 * path), and the Downsample (a 3×3 convolution of stride 2) and Upsample
 * (nearest 2×, then a 3×3 convolution) blocks, as LDM's openaimodel.py
 * computes them, and the SpatialTransformer (GroupNorm, proj_in, one
 * BasicTransformerBlock of self-attention, cross-attention to the text and
 * a GEGLU feed-forward, each after a LayerNorm and added back, proj_out,
 * the residual).
 *
 * Weights live in the backend's memory as f32 (read from a checkpoint with
 * sd_weight_load()); activations are NCHW with N = 1. */

#include <stddef.h>
#include <stdint.h>

#include "nn-backend.h"

struct safetensors;

/* A tensor of the checkpoint, in the backend's memory as f32. */
struct sd_weight {
        float *data;
        uint64_t n;
};

/* name's f32/f16/bf16 tensor, n elements expected (0: any); -ENOENT,
 * -EBADMSG (another size or dtype) with the reason in err, -ENOMEM. */
int sd_weight_load(struct nn_backend *be, const struct safetensors *file, const char *name, uint64_t n,
                   struct sd_weight *ret, char *err, size_t err_size);
void sd_weight_free(struct nn_backend *be, struct sd_weight *w);

/* LDM's timestep_embedding(t, dim) with flip_sin_to_cos: out[i] =
 * cos(t·f_i), out[half + i] = sin(t·f_i), f_i = 10000^(−i/half). */
void sd_timestep_embedding(double t, uint32_t dim, float *out);

struct sd_resblock {
        uint32_t in, out, emb;          /* channels in and out, time embedding width */
        struct sd_weight norm1_g, norm1_b, conv1_w, conv1_b;   /* in_layers.0, .2 */
        struct sd_weight emb_w, emb_b;                          /* emb_layers.1: [out][emb] */
        struct sd_weight norm2_g, norm2_b, conv2_w, conv2_b;   /* out_layers.0, .3 */
        struct sd_weight skip_w, skip_b;                        /* skip_connection (in ≠ out only) */
};

/* Loads prefix.in_layers.0.weight … from file. */
int sd_resblock_load(struct nn_backend *be, const struct safetensors *file, const char *prefix, uint32_t in,
                     uint32_t out, uint32_t emb, struct sd_resblock *ret, char *err, size_t err_size);
void sd_resblock_free(struct nn_backend *be, struct sd_resblock *b);

/* y [out][h][w] = ResBlock(x [in][h][w], emb [emb] in host memory);
 * scratch: 3 · max(in, out) · h · w + out floats of backend memory. */
void sd_resblock_forward(struct nn_backend *be, const struct sd_resblock *b, const float *x, const float *emb,
                         uint32_t h, uint32_t w, float *y, float *scratch);
size_t sd_resblock_scratch(const struct sd_resblock *b, uint32_t h, uint32_t w);

/* y [c][h/2][w/2] = conv3×3 stride 2 padding 1 (input_blocks.N.0.op). */
void sd_downsample(struct nn_backend *be, const struct sd_weight *w, const struct sd_weight *bias, uint32_t c,
                   const float *x, uint32_t h, uint32_t wd, float *y);
/* y [c][2h][2w] = conv3×3(nearest 2×(x)) (output_blocks.N.M.conv); scratch: 4·c·h·w. */
void sd_upsample(struct nn_backend *be, const struct sd_weight *w, const struct sd_weight *bias, uint32_t c,
                 const float *x, uint32_t h, uint32_t wd, float *y, float *scratch);

/* A SpatialTransformer of depth 1 (SD 1.x and 2.x): prefix.norm,
 * proj_in/proj_out (1×1 convolutions in SD 1.x, linear layers in 2.x: the
 * same numbers), transformer_blocks.0.{attn1,attn2,ff,norm1-3}. */
struct sd_transformer {
        uint32_t ch, ctx, heads;
        struct sd_weight norm_g, norm_b, proj_in_w, proj_in_b, proj_out_w, proj_out_b;
        struct sd_weight n1_g, n1_b, n2_g, n2_b, n3_g, n3_b;
        struct sd_weight q1, k1, v1, o1_w, o1_b;                /* attn1: self-attention */
        struct sd_weight q2, k2, v2, o2_w, o2_b;                /* attn2: to the text's context [n][ctx] */
        struct sd_weight ff1_w, ff1_b, ff2_w, ff2_b;            /* ff.net.0.proj [8·ch][ch], ff.net.2 [ch][4·ch] */
};

int sd_transformer_load(struct nn_backend *be, const struct safetensors *file, const char *prefix, uint32_t ch,
                        uint32_t ctx, uint32_t heads, struct sd_transformer *ret, char *err, size_t err_size);
void sd_transformer_free(struct nn_backend *be, struct sd_transformer *t);

/* y [ch][h][w] = SpatialTransformer(x [ch][h][w], context [n_ctx][ctx]);
 * y may not be x; scratch: sd_transformer_scratch() floats. */
void sd_transformer_forward(struct nn_backend *be, const struct sd_transformer *t, const float *x,
                            const float *context, size_t n_ctx, uint32_t h, uint32_t w, float *y, float *scratch);
size_t sd_transformer_scratch(const struct sd_transformer *t, uint32_t h, uint32_t w, size_t n_ctx);

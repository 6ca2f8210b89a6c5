/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Stable Diffusion 1.x/2.x's UNet (LDM's openaimodel.py with SD's config:
 * four levels of channel multipliers 1, 2, 4, 4 times model_channels, two
 * ResBlocks per level on the way down and three on the way up, a
 * SpatialTransformer after each ResBlock of the first three levels and in
 * the middle) from the checkpoint's model.diffusion_model. tensors, on the
 * shared engine.  Widths come from the tensors' shapes: model_channels from
 * input_blocks.0.0, the text's width from attn2.to_k.  SDXL's UNet (three
 * levels, deeper transformers, a second text embedding) is another layout
 * and is refused by name. */

#include <stddef.h>
#include <stdint.h>

#include "nn-backend.h"

struct safetensors;
struct sd_unet;

#define SD_LATENT_CHANNELS 4

/* heads: the attention heads of every transformer, or 0 for the model's
 * own: 8 when the text context is under 1,024 wide (SD 1.x), else 64
 * channels per head (SD 2.x). */
int sd_unet_load(struct nn_backend *be, const struct safetensors *file, uint32_t heads, struct sd_unet **ret,
                 char *err, size_t err_size);
void sd_unet_free(struct sd_unet *u);

uint32_t sd_unet_model_channels(const struct sd_unet *u);
/* The width of the text context the cross-attention takes (768 in SD 1.x). */
uint32_t sd_unet_context_dim(const struct sd_unet *u);
/* Parameters, for adverts and FLOP estimates. */
uint64_t sd_unet_parameters(const struct sd_unet *u);

/* Floating-point operations of one sd_unet_forward() at h × w with n_ctx
 * text tokens (multiply-adds count two): what benchmarks divide by. */
double sd_unet_flops(const struct sd_unet *u, uint32_t h, uint32_t w, size_t n_ctx);

/* eps [4][h][w] = the predicted noise for latent x [4][h][w] at timestep t
 * (0 … 999) under the text context [n_ctx][context_dim]; all in backend
 * memory.  h and w are multiples of 8.  Scratch memory is kept between
 * calls for the largest size seen: -ENOMEM when it cannot be had (nothing
 * ran), else the backend's status. */
int sd_unet_forward(struct sd_unet *u, const float *x, uint32_t h, uint32_t w, double t, const float *context,
                    size_t n_ctx, float *eps);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* CLIP's text encoder (Hugging Face's CLIPTextModel: ViT-L/14's in Stable
 * Diffusion 1.x) on the shared engine, from a checkpoint's tensors:
 *
 *   x = token_embedding[ids] + position_embedding[0 … n)
 *   each of the N layers, pre-LayerNorm:
 *       x += out_proj(causal multi-head attention(q, k, v of LN1(x)))
 *       x += fc2(quick_gelu(fc1(LN2(x))))
 *   out = final_layer_norm(x)
 *
 * LayerNorm ε = 1e-5.  The tensors are found under
 * cond_stage_model.transformer.text_model. (SD 1.x single-file
 * checkpoints), conditioner.embedders.0.transformer.text_model. (SDXL's
 * first encoder, the same network) or text_model. (diffusers'
 * text_encoder/model.safetensors); the widths come from their shapes.  SD
 * 2.x's OpenCLIP encoder (cond_stage_model.model.: other names, one fused
 * in_proj, exact GELU) is refused by name. */

#include <stddef.h>
#include <stdint.h>

#include "nn-backend.h"

struct safetensors;
struct clip_text;

/* Loads the encoder's weights into be's memory as f32 (the file may be
 * closed afterwards).  heads: the attention heads (SD 1.x: 12), or 0 for
 * heads of 64 channels each, as CLIP ViT-L/14 and OpenCLIP ViT-H/14 have.
 * -ENOENT (no text encoder, a tensor missing), -EBADMSG (a shape or dtype
 * that does not fit), -EINVAL (heads that do not divide the width),
 * -EOPNOTSUPP (SD 2.x's layout), -ENOMEM; err names the tensor. */
int clip_text_load(struct nn_backend *be, const struct safetensors *file, uint32_t heads, struct clip_text **ret,
                   char *err, size_t err_size);
void clip_text_free(struct clip_text *c);

/* The output's width (768 in SD 1.x: the UNet's context_dim). */
uint32_t clip_text_dim(const struct clip_text *c);
/* Token embedding rows: ids must be below (49408). */
uint32_t clip_text_vocab(const struct clip_text *c);
/* Position embedding rows: the longest input (77). */
uint32_t clip_text_positions(const struct clip_text *c);
uint32_t clip_text_layers(const struct clip_text *c);
uint32_t clip_text_heads(const struct clip_text *c);
uint64_t clip_text_parameters(const struct clip_text *c);

/* out [n][dim] (backend memory) = the encoder's output for ids[0 … n)
 * (host memory), after all but the last skip_last layers and then the
 * final LayerNorm: 0 for SD 1.x; 1 for the penultimate layer SD 2.x
 * conditions on ("CLIP skip 2").  One call at a time per encoder (its
 * scratch is its own).  -EINVAL for an id out of range, n = 0 or more than
 * the positions, skip_last not below the layers (nothing ran); else the
 * backend's status. */
int clip_text_encode(struct clip_text *c, const int32_t *ids, size_t n, uint32_t skip_last, float *out);

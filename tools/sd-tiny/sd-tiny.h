/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Stable Diffusion 1.x checkpoints with random weights, in the layout of
 * the single-file checkpoints people download (v1-5-pruned-emaonly
 * .safetensors: the UNet under model.diffusion_model., the VAE under
 * first_stage_model., the CLIP ViT-L/14 text encoder under
 * cond_stage_model.transformer.text_model.), the same tensor names and
 * the same shapes as functions of the widths, scaled down: for tests and
 * benchmarks, which cannot download a model.  The real widths (320, 128,
 * 768, …) give a file of the real model's shapes. */

#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"

struct sd_tiny_spec {
        uint32_t model_channels;        /* UNet, 320 in SD 1.x; a multiple of 32 (GroupNorm) */
        uint32_t heads;                 /* attention heads of the UNet, 8 */
        uint32_t context_dim;           /* the text encoder's width, 768 */
        uint32_t vae_channels;          /* 128; a multiple of 32 */
        uint32_t text_layers;           /* 12 */
        uint32_t text_heads;            /* 12 */
        uint32_t text_ff;               /* 3072 */
        uint32_t vocab;                 /* 49408 */
        uint32_t positions;             /* 77 */
        enum st_dtype dtype;            /* of the weights: F32, F16 or BF16 */
        uint64_t seed;
};

/* Small enough for a test (about 14M parameters). */
struct sd_tiny_spec sd_tiny_spec_default(void);
/* SD 1.5's own widths (about 1.07 billion parameters). */
struct sd_tiny_spec sd_tiny_spec_full(void);

/* Writes the checkpoint; -errno with a message in err.  *n_tensors, when
 * not NULL, gets how many tensors it holds. */
int sd_tiny_write(const struct sd_tiny_spec *spec, const char *path, size_t *n_tensors, char *err, size_t err_size);

/* Writes a CLIP tokenizer of n_vocab pieces (at least 514; the model's
 * vocab, 1000 by default, 49408 for --full) as Hugging Face ships CLIP's:
 * vocab.json ({piece: id}) and merges.txt ("#version: 0.2", then one
 * "left right" merge a line, n_vocab − 514 of them), the pieces made as
 * CLIP's are (byte stand-ins, the same with "</w>", one per merge, then
 * "<|startoftext|>" and "<|endoftext|>", which are the last two ids),
 * the merges learnt from a small corpus of prompts.  -errno with a message
 * in err. */
int sd_tiny_write_tokenizer(uint32_t n_vocab, const char *vocab_path, const char *merges_path, char *err,
                            size_t err_size);

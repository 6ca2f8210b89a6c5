/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Stable Diffusion's VAE decoder (LDM's autoencoder.py Decoder, the
 * first_stage_model of SD 1.x/2.x checkpoints; SDXL's VAE has the same
 * shape) on the engine's ops: latent [z][h][w] → post_quant_conv (1×1) →
 * conv_in (3×3) → mid (ResNet block, single-head self-attention over the
 * h·w positions, ResNet block) → for each level from the widest down, three
 * ResNet blocks and, but for the last, nearest 2× upsampling and a 3×3
 * convolution → GroupNorm, SiLU, conv_out (3×3) → RGB [3][8h][8w], about
 * [-1, 1].  GroupNorms have 32 groups and ε = 1e-6, as the VAE's Normalize.
 *
 * Weights live in the backend's memory as f32 (sd_weight_load(), from F32,
 * F16 or BF16 tensors); activations are NCHW with N = 1.
 *
 * Memory, for a 64×64 latent (a 512×512 image) with SD's widths (ch 128,
 * ch_mult 1,2,4,4: levels of 128, 256, 512, 512 channels):
 *   weights:  49,490,199 parameters → 198.0 MB (188.8 MiB) of f32
 *             (post_quant_conv and the decoder; the encoder is not loaded);
 *   scratch:  167,772,160 floats → 640 MiB (vae_scratch_size()), all the
 *             activations of the decode: the peak is the first ResNet block
 *             of the last level at 512×512, which holds its 256-channel
 *             input, that input normalised, and its 128-channel output
 *             (2·256 + 128 channels of 512² floats);
 *   inside the backend, beyond that: the CPU's im2col tile (4 MiB a thread)
 *   and attention scores (64 queries × 4096 keys, 1 MiB a thread); CUDA's
 *   cuDNN workspace and attention scores in chunks of at most 64 MiB.
 * The scratch grows with the latent's area, 160 KiB per latent pixel (a
 * 128×128 latent, a 1024² image: 2.5 GiB).  Measured on 2 CPU threads of
 * a shared machine: a 64×64 decode (2.51 TFLOP, vae_decode_flops()) in
 * 36 s, the process's peak RSS 948 MiB with the weights, the scratch and
 * the file's pages; the ops took 15 MiB beyond the scratch. */

#include <stddef.h>
#include <stdint.h>

#include "nn-backend.h"
#include "sd-blocks.h"

struct safetensors;

/* The factor SD 1.x and 2.x latents are multiplied by (SDXL: 0.13025). */
#define VAE_SCALE_FACTOR_SD 0.18215f

#define VAE_LEVELS_MAX 8
/* ResNet blocks per level of the decoder (ddconfig's num_res_blocks + 1). */
#define VAE_BLOCKS 3

/* The shape of a decoder, read from its tensors' shapes. */
struct vae_config {
        uint32_t z_channels;                    /* 4 */
        uint32_t levels;                        /* len(ch_mult): 4 */
        uint32_t width[VAE_LEVELS_MAX];         /* ch · ch_mult[i]: 128, 256, 512, 512 */
};

/* Floats of scratch a decode of an h×w latent needs (*ret), or -EINVAL /
 * -E2BIG with the reason in err for a latent of which some convolution
 * would be past what the engine runs (nn_conv2d_validate()). */
int vae_scratch_size(const struct vae_config *cfg, uint32_t h, uint32_t w, size_t *ret, char *err,
                     size_t err_size);

struct vae_decoder;

/* Loads the decoder under prefix ("first_stage_model." in a full
 * checkpoint, "" in a standalone VAE file): prefix + "post_quant_conv.*"
 * and prefix + "decoder.*".  Its widths come from the tensors' shapes:
 * z_channels from post_quant_conv, the number of levels from the
 * decoder.up.N present, each level's width from its first block's conv1;
 * then every tensor's shape is checked against them (SD's 1×1 attention
 * convolutions may also be stored [c][c], as some converters write them),
 * widths must be multiples of 32 (GroupNorm's groups), and a tensor under
 * decoder. that this architecture has no use for (a fourth block, attention
 * in a level) is refused rather than ignored.  Errors, with err naming the
 * tensor: -ENOENT (missing), -EBADMSG (misshapen, of another dtype, or
 * unknown), -ENOMEM.  be must outlive the decoder; *ret is freed with
 * vae_decoder_free(). */
int vae_decoder_load(struct nn_backend *be, const struct safetensors *file, const char *prefix,
                     struct vae_decoder **ret, char *err, size_t err_size);
void vae_decoder_free(struct vae_decoder *vae);
const struct vae_config *vae_decoder_config(const struct vae_decoder *vae);
/* Parameters loaded (f32 each in the backend's memory). */
uint64_t vae_decoder_parameters(const struct vae_decoder *vae);

/* Floating-point operations of a decode of an h×w latent (multiply-adds
 * count two; GroupNorms and the elementwise ops left out), 0 where
 * vae_scratch_size() refuses it.  SD's widths, 64×64: 2.51 · 10^12. */
double vae_decode_flops(const struct vae_config *cfg, uint32_t h, uint32_t w);

/* rgb [3][8h][8w] = the decode of latent [z][h][w] / scale_factor: latent
 * is what the sampler produced (the UNet's space; pass VAE_SCALE_FACTOR_SD,
 * or 1 for a latent already divided), left unchanged.  latent, rgb and
 * scratch (scratch_n floats, at least vae_scratch_size()) are backend
 * memory and do not overlap; scratch NULL: the decode allocates it for the
 * call and releases it.  -EINVAL / -E2BIG for a latent size
 * vae_scratch_size() refuses, -ENOBUFS for too little scratch, -ENOMEM,
 * each with the reason in err; 0 once the ops are queued (the backend's
 * status() reports a device error). */
int vae_decode(const struct vae_decoder *vae, const float *latent, uint32_t h, uint32_t w, float scale_factor,
               float *rgb, float *scratch, size_t scratch_n, char *err, size_t err_size);

/* Host memory: planar f32 [3][height][width] in [-1, 1] → interleaved 8-bit
 * RGB [height][width][3], round((x + 1) / 2 · 255) clamped to 0 … 255
 * (halves up); NaN gives 0. */
void vae_image_to_rgb8(const float *chw, uint32_t width, uint32_t height, uint8_t *rgb);

/* ---- The decoder's blocks, for tests ---- */

/* ResnetBlock without a time embedding: x + conv2(silu(norm2(conv1(silu(
 * norm1(x)))))), the skip through nin_shortcut (1×1) when in ≠ out. */
struct vae_resnet {
        uint32_t in, out;
        struct sd_weight norm1_g, norm1_b, conv1_w, conv1_b;
        struct sd_weight norm2_g, norm2_b, conv2_w, conv2_b;
        struct sd_weight skip_w, skip_b;        /* nin_shortcut, in ≠ out only */
};

/* Loads prefix + "norm1.weight" … of those widths (shapes checked). */
int vae_resnet_load(struct nn_backend *be, const struct safetensors *file, const char *prefix, uint32_t in,
                    uint32_t out, struct vae_resnet *ret, char *err, size_t err_size);
void vae_resnet_free(struct nn_backend *be, struct vae_resnet *b);
/* Floats of scratch: max(in, out) · h · w. */
size_t vae_resnet_scratch(const struct vae_resnet *b, uint32_t h, uint32_t w);
/* y [out][h][w] = block(x [in][h][w]); y overlaps neither x nor scratch. */
void vae_resnet_forward(struct nn_backend *be, const struct vae_resnet *b, const float *x, uint32_t h, uint32_t w,
                        float *y, float *scratch);

/* AttnBlock: x + proj_out(softmax(qᵀk / √c) applied to v), q, k, v the 1×1
 * convolutions of norm(x), one head over the n = h·w positions. */
struct vae_attention {
        uint32_t c;
        struct sd_weight norm_g, norm_b, q_w, q_b, k_w, k_b, v_w, v_b, proj_w, proj_b;
};

int vae_attention_load(struct nn_backend *be, const struct safetensors *file, const char *prefix, uint32_t c,
                       struct vae_attention *ret, char *err, size_t err_size);
void vae_attention_free(struct nn_backend *be, struct vae_attention *a);
/* Floats of scratch: 5 · c · n. */
size_t vae_attention_scratch(const struct vae_attention *a, size_t n);
/* y [c][n] = block(x [c][n]); y overlaps neither x nor scratch. */
void vae_attention_forward(struct nn_backend *be, const struct vae_attention *a, const float *x, size_t n, float *y,
                           float *scratch);

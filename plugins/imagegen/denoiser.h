/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* One step of the sampler on the UNet, with classifier-free guidance: what
 * a generation repeats and what a verifier re-runs, the same code for
 * both.  Latents are host memory ([4][h][w] f32): a step's bookkeeping
 * (noise, guidance, the update) is cheap next to the UNet, and the
 * trajectory is kept on the host anyway. */

#include <stddef.h>
#include <stdint.h>

#include "nn-backend.h"
#include "sampler.h"
#include "unet.h"

struct sd_denoiser;

/* For latents of h × w (multiples of 8).  -ENOMEM. */
int sd_denoiser_new(struct nn_backend *be, struct sd_unet *unet, uint32_t h, uint32_t w, struct sd_denoiser **ret);
void sd_denoiser_free(struct sd_denoiser *d);

/* next = step i of plan applied to x under the text contexts [n_ctx][dim]
 * in backend memory: cond, and uncond for guidance ≠ 1 (may be NULL when
 * guidance is 1: one UNet pass instead of two).  x and next may be the
 * same.  The backend's status: 0, or its device error. */
int sd_denoiser_step(struct sd_denoiser *d, const struct sd_plan *plan, uint32_t i, const float *cond,
                     const float *uncond, size_t n_ctx, double guidance, const float *x, float *next);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The samplers of Stable Diffusion on its noise schedule: pure arithmetic
 * on host latents, the same for every backend.
 *
 * The schedule is SD's "scaled_linear" one (β from 0.00085 to 0.012 over
 * 1,000 training steps, linear in √β); ᾱ_t = Π(1 − β).  A plan picks the
 * steps' timesteps and the coefficients of each update:
 *
 *  - Euler (k-diffusion's sample_euler, diffusers' EulerDiscreteScheduler
 *    with timestep_spacing "linspace"): σ_t = √((1 − ᾱ_t)/ᾱ_t) at
 *    timesteps spread evenly over 999 … 0 (σ interpolated linearly between
 *    integer timesteps), then σ = 0.  The latent starts as noise · σ_max;
 *    the UNet sees x / √(σ² + 1); x ← x + ε · (σ_next − σ).
 *  - DDIM with η = 0 (diffusers' DDIMScheduler as SD ships it: "leading"
 *    spacing, steps_offset 1, set_alpha_to_one false): timesteps
 *    1000/steps apart from 1 + (steps − 1)·1000/steps down to 1; x₀ =
 *    (x − √(1 − ᾱ_t) ε)/√ᾱ_t, x ← √ᾱ_prev x₀ + √(1 − ᾱ_prev) ε.
 *
 * Classifier-free guidance is the caller's: ε = ε_u + g (ε_c − ε_u). */

#include <stddef.h>
#include <stdint.h>

#define SD_TRAIN_STEPS 1000
#define SD_STEPS_MAX 1000

enum sd_sampler_kind {
        SD_SAMPLER_EULER,
        SD_SAMPLER_DDIM,
};

struct sd_plan {
        enum sd_sampler_kind kind;
        uint32_t steps;
        double timestep[SD_STEPS_MAX];          /* what the UNet is told at step i */
        double sigma[SD_STEPS_MAX + 1];         /* Euler */
        double alpha[SD_STEPS_MAX];             /* DDIM: ᾱ at step i … */
        double alpha_prev[SD_STEPS_MAX];        /* … and after it */
};

/* "euler" or "ddim"; -EINVAL otherwise. */
int sd_sampler_from_string(const char *s, enum sd_sampler_kind *ret);
const char *sd_sampler_to_string(enum sd_sampler_kind k);

/* -EINVAL unless 1 ≤ steps ≤ SD_STEPS_MAX. */
int sd_plan_make(enum sd_sampler_kind kind, uint32_t steps, struct sd_plan *ret);

/* The factor of the unit Gaussian noise that makes the first latent. */
double sd_plan_init_scale(const struct sd_plan *p);
/* The factor of the latent the UNet sees at step i. */
double sd_plan_input_scale(const struct sd_plan *p, uint32_t i);
/* x [n] ← step i's update of x given the (guided) noise prediction eps. */
void sd_plan_step(const struct sd_plan *p, uint32_t i, float *x, const float *eps, size_t n);

/* n samples of N(0, 1), the same for the same seed everywhere: element i
 * from a counter-based generator (SplitMix64 of seed and i/2) through the
 * Box–Muller transform, so any stretch can be made without the rest. */
void sd_noise(uint64_t seed, float *out, size_t n);

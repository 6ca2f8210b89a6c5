/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Verifying an image generation without generating it again: the
 * trajectory of latents x₀ (the seed's noise) … x_N (what the VAE decodes),
 * one per sampler step, is committed to by a Merkle root over their
 * BLAKE2b-256 hashes; a verifier re-runs a few steps x_i → x_{i+1} it picks
 * in secret and compares its x̂_{i+1} with the committed one.  An honest
 * step differs from a re-run only by floating-point rounding (threads,
 * devices); a step run with another model, another prompt, another
 * guidance, or not run at all (interpolated, copied) differs by a share of
 * the step's own size.  So the measure is
 *
 *     ‖x_{i+1} − x̂_{i+1}‖₂ / ‖x̂_{i+1} − x_i‖₂
 *
 * (the error relative to the update the verifier computed), against a
 * tolerance: honest CPU runs on 1 and 2 threads differ by 2e-6 to 2e-5,
 * another prompt by 0.11, another guidance by 0.036, another model by 1.5,
 * a copied step by 1 (test-sd-unet); the default is 1e-2.  f32 CUDA runs
 * have not been measured (no GPU yet).
 * Pure: no engine, no I/O; the hashes are libsodium's. */

#include <stddef.h>
#include <stdint.h>

#define TRAJ_HASH_SIZE 32

/* BLAKE2b-256 of one latent's n floats (their little-endian bytes). */
void traj_leaf(const float *latent, size_t n, uint8_t out[TRAJ_HASH_SIZE]);
/* The Merkle root over n ≥ 1 leaves: pairs hashed with a domain prefix
 * (0x01 ‖ left ‖ right; leaves are hashed as 0x00 ‖ leaf), an odd node
 * carried up unchanged. */
void traj_root(const uint8_t (*leaves)[TRAJ_HASH_SIZE], size_t n, uint8_t out[TRAJ_HASH_SIZE]);
/* traj_root() of the leaves of n_latents latents of n floats each. */
int traj_root_of(const float *latents, size_t n_latents, size_t n, uint8_t out[TRAJ_HASH_SIZE]);

/* k distinct steps of 0 … n_steps−1 (k ≤ n_steps), chosen uniformly from
 * the system's CSPRNG so that a provider cannot guess them, in increasing
 * order. */
void traj_pick_steps(uint32_t n_steps, uint32_t k, uint32_t *steps);

/* The relative error above; +inf when the verifier's update is 0 and the
 * claim differs, 0 when both are equal. */
double traj_step_error(const float *x_i, const float *claimed_next, const float *recomputed_next, size_t n);

/* The chance that k secret picks among n_steps catch at least one of
 * n_bad faked steps: 1 − C(n − bad, k) / C(n, k). */
double traj_detection_chance(uint32_t n_steps, uint32_t n_bad, uint32_t k);

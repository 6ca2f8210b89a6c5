/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Stable Diffusion's denoising loop on the engine: the noise schedules and
 * samplers (against diffusers' numbers), the seed's noise, the whole UNet
 * of a tiny random-weight SD 1.x checkpoint written by sd-tiny (loaded
 * through the same code as a real one), and the trajectory checks that
 * verification rests on: honest re-runs agree, another prompt, another
 * model or a skipped step do not. */

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "denoiser.h"
#include "nn-backend.h"
#include "safetensors.h"
#include "sampler.h"
#include "sd-tiny.h"
#include "trajectory.h"
#include "unet.h"

static char dir[] = "/tmp/test-sd-unet-XXXXXX";
static char model_path[256], other_path[256];

static void setup(void) {
        struct sd_tiny_spec spec = sd_tiny_spec_default();
        char err[256];

        cr_assert_not_null(mkdtemp(dir));
        snprintf(model_path, sizeof(model_path), "%s/tiny.safetensors", dir);
        cr_assert_eq(sd_tiny_write(&spec, model_path, NULL, err, sizeof(err)), 0, "%s", err);
        spec.seed = 2;
        snprintf(other_path, sizeof(other_path), "%s/other.safetensors", dir);
        cr_assert_eq(sd_tiny_write(&spec, other_path, NULL, err, sizeof(err)), 0, "%s", err);
}

static void teardown(void) {
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        (void) system(cmd);
}

TestSuite(sd_unet, .init = setup, .fini = teardown, .timeout = 240);

Test(sd_unet, schedules_match_diffusers) {
        static struct sd_plan p;

        /* EulerDiscreteScheduler, SD 1.5's config, 50 steps: sigmas[0] is
         * 14.6146, timesteps 999, 978.6122…, the last σ before 0 is 0.0292. */
        cr_assert_eq(sd_plan_make(SD_SAMPLER_EULER, 50, &p), 0);
        cr_assert_float_eq(p.sigma[0], 14.6146, 1e-4);
        cr_assert_float_eq(p.timestep[0], 999.0, 1e-9);
        cr_assert_float_eq(p.timestep[1], 978.6122448979592, 1e-9);
        cr_assert_float_eq(p.sigma[49], 0.0292, 1e-4);
        cr_assert_eq(p.sigma[50], 0.0);
        cr_assert_float_eq(sd_plan_init_scale(&p), 14.6146, 1e-4);
        cr_assert_float_eq(sd_plan_input_scale(&p, 0), 1 / sqrt(14.6146 * 14.6146 + 1), 1e-6);

        /* DDIMScheduler, 50 steps: 981, 961, …, 1; ᾱ_981 = 0.0067 … */
        cr_assert_eq(sd_plan_make(SD_SAMPLER_DDIM, 50, &p), 0);
        cr_assert_eq(p.timestep[0], 981.0);
        cr_assert_eq(p.timestep[1], 961.0);
        cr_assert_eq(p.timestep[49], 1.0);
        cr_assert_float_eq(p.alpha_prev[0], p.alpha[1], 0);
        cr_assert_float_eq(p.alpha[49], 0.99829, 1e-5);        /* ᾱ_1 */
        cr_assert_float_eq(p.alpha_prev[49], 0.99915, 1e-5);   /* final: ᾱ_0 */

        /* 1,000 DDIM steps: every timestep inside the schedule. */
        cr_assert_eq(sd_plan_make(SD_SAMPLER_DDIM, SD_STEPS_MAX, &p), 0);
        cr_assert_eq(p.timestep[0], 999.0);
        cr_assert_eq(p.timestep[SD_STEPS_MAX - 1], 1.0);

        cr_assert_eq(sd_plan_make(SD_SAMPLER_EULER, 0, &p), -EINVAL);
        cr_assert_eq(sd_plan_make(SD_SAMPLER_DDIM, SD_STEPS_MAX + 1, &p), -EINVAL);
}

Test(sd_unet, a_denoising_step_with_a_perfect_prediction_lands_on_the_clean_latent) {
        static struct sd_plan p;
        float x[4], eps[4] = { 0.5f, -1, 2, 0.25f }, x0[4] = { 0.1f, 0.2f, -0.3f, 0.4f };

        /* DDIM from x_t = √ᾱ x₀ + √(1−ᾱ) ε to the last step: x₀ back,
         * up to the final ᾱ_0. */
        cr_assert_eq(sd_plan_make(SD_SAMPLER_DDIM, 1, &p), 0);
        for (int i = 0; i < 4; i++)
                x[i] = (float) (sqrt(p.alpha[0]) * x0[i] + sqrt(1 - p.alpha[0]) * eps[i]);
        sd_plan_step(&p, 0, x, eps, 4);
        for (int i = 0; i < 4; i++)
                cr_assert_float_eq(x[i], sqrt(p.alpha_prev[0]) * x0[i] + sqrt(1 - p.alpha_prev[0]) * eps[i], 1e-5);
        /* Euler with σ → 0: x − σ ε. */
        cr_assert_eq(sd_plan_make(SD_SAMPLER_EULER, 1, &p), 0);
        for (int i = 0; i < 4; i++)
                x[i] = (float) (x0[i] + p.sigma[0] * eps[i]);
        sd_plan_step(&p, 0, x, eps, 4);
        for (int i = 0; i < 4; i++)
                cr_assert_float_eq(x[i], x0[i], 1e-5);
}

Test(sd_unet, the_seeds_noise_is_standard_normal_reproducible_and_seed_dependent) {
        const size_t n = 1 << 18;
        float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float)), tail[5];
        double sum = 0, sq = 0;

        sd_noise(42, a, n);
        sd_noise(42, b, n);
        cr_assert_eq(memcmp(a, b, n * sizeof(float)), 0);
        for (size_t i = 0; i < n; i++) {
                sum += a[i];
                sq += (double) a[i] * a[i];
        }
        cr_assert(fabs(sum / n) < 0.01, "mean %g", sum / n);
        cr_assert(fabs(sq / n - 1) < 0.01, "variance %g", sq / n);
        sd_noise(43, b, n);
        cr_assert_neq(memcmp(a, b, n * sizeof(float)), 0);
        /* An odd count is a prefix of the even one. */
        sd_noise(42, tail, 5);
        cr_assert_eq(memcmp(tail, a, sizeof(tail)), 0);
        free(a);
        free(b);
}

struct world {
        struct safetensors *file;
        struct nn_backend *be;
        struct sd_unet *unet;
        struct sd_denoiser *den;
        float *cond, *uncond;
        size_t n_ctx;
};

static void world_open(struct world *w, const char *path, unsigned threads, uint32_t h, uint32_t wd) {
        char err[256];
        uint32_t dim;
        float *host;

        cr_assert_eq(safetensors_open(path, &w->file, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(nn_cpu_backend_new(threads, &w->be), 0);
        cr_assert_eq(sd_unet_load(w->be, w->file, 8, &w->unet, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(sd_denoiser_new(w->be, w->unet, h, wd, &w->den), 0);
        dim = sd_unet_context_dim(w->unet);
        w->n_ctx = 77;
        host = malloc(w->n_ctx * dim * sizeof(float));
        sd_noise(7, host, w->n_ctx * dim);              /* a stand-in for the text encoder */
        w->cond = w->be->ops->alloc(w->be, w->n_ctx * dim);
        w->be->ops->write(w->be, w->cond, host, w->n_ctx * dim);
        sd_noise(8, host, w->n_ctx * dim);
        w->uncond = w->be->ops->alloc(w->be, w->n_ctx * dim);
        w->be->ops->write(w->be, w->uncond, host, w->n_ctx * dim);
        free(host);
}

static void world_close(struct world *w) {
        w->be->ops->release(w->be, w->cond);
        w->be->ops->release(w->be, w->uncond);
        sd_denoiser_free(w->den);
        sd_unet_free(w->unet);
        nn_backend_free(w->be);
        safetensors_close(w->file);
}

Test(sd_unet, the_tiny_checkpoints_unet_loads_with_its_widths) {
        struct world w = {};

        world_open(&w, model_path, 1, 8, 8);
        cr_assert_eq(sd_unet_model_channels(w.unet), 32);
        cr_assert_eq(sd_unet_context_dim(w.unet), 64);
        cr_assert_gt(sd_unet_parameters(w.unet), 1000000);
        world_close(&w);
}

Test(sd_unet, a_checkpoint_without_a_unet_or_with_a_misshapen_tensor_is_refused_by_name) {
        struct safetensors_writer *wr;
        struct safetensors *file;
        struct nn_backend *be;
        struct sd_unet *u;
        char path[300], err[256];
        uint16_t z[32 * 9 * 9] = {};

        cr_assert_eq(nn_cpu_backend_new(1, &be), 0);
        cr_assert_eq(safetensors_writer_new(&wr), 0);
        cr_assert_eq(safetensors_writer_add(wr, "first_stage_model.decoder.conv_in.bias", ST_F16, 1,
                                            (const uint64_t[]) { 4 }, z), 0);
        snprintf(path, sizeof(path), "%s/vae-only.safetensors", dir);
        cr_assert_eq(safetensors_writer_write(wr, path, err, sizeof(err)), 0, "%s", err);
        safetensors_writer_free(wr);
        cr_assert_eq(safetensors_open(path, &file, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(sd_unet_load(be, file, 8, &u, err, sizeof(err)), -ENOENT);
        cr_assert_not_null(strstr(err, "no UNet"), "%s", err);
        safetensors_close(file);

        /* conv_in of 9 input channels: an inpainting UNet. */
        cr_assert_eq(safetensors_writer_new(&wr), 0);
        cr_assert_eq(safetensors_writer_add(wr, "model.diffusion_model.input_blocks.0.0.weight", ST_F16, 4,
                                            (const uint64_t[]) { 32, 9, 3, 3 }, z), 0);
        snprintf(path, sizeof(path), "%s/inpaint.safetensors", dir);
        cr_assert_eq(safetensors_writer_write(wr, path, err, sizeof(err)), 0, "%s", err);
        safetensors_writer_free(wr);
        cr_assert_eq(safetensors_open(path, &file, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(sd_unet_load(be, file, 8, &u, err, sizeof(err)), -EBADMSG);
        cr_assert_not_null(strstr(err, "input_blocks.0.0.weight"), "%s", err);
        safetensors_close(file);
        nn_backend_free(be);
}

/* The trajectory of a few steps from the seed's noise. */
static void run_steps(struct world *w, const struct sd_plan *p, uint32_t steps, double g, float *traj, size_t n) {
        sd_noise(1234, traj, n);
        for (size_t j = 0; j < n; j++)
                traj[j] *= (float) sd_plan_init_scale(p);
        for (uint32_t i = 0; i < steps; i++)
                cr_assert_eq(sd_denoiser_step(w->den, p, i, w->cond, w->uncond, w->n_ctx, g, traj + i * n,
                                              traj + (i + 1) * n), 0);
}

Test(sd_unet, honest_reruns_agree_and_other_prompts_models_or_skipped_steps_do_not) {
        const uint32_t h = 16, wd = 8, steps = 3;
        const size_t n = 4 * h * wd;
        static struct sd_plan p;
        struct world one = {}, two = {}, other = {};
        float *a = malloc((steps + 1) * n * sizeof(float)), *b = malloc((steps + 1) * n * sizeof(float));
        float *re = malloc(n * sizeof(float));
        uint8_t ra[TRAJ_HASH_SIZE], rb[TRAJ_HASH_SIZE];
        double e;

        cr_assert_eq(sd_plan_make(SD_SAMPLER_EULER, steps, &p), 0);
        world_open(&one, model_path, 1, h, wd);
        world_open(&two, model_path, 2, h, wd);
        run_steps(&one, &p, steps, 7.5, a, n);
        run_steps(&two, &p, steps, 7.5, b, n);
        for (size_t j = 0; j < (steps + 1) * n; j++)
                cr_assert(isfinite(a[j]), "latent element %zu is %g", j, a[j]);

        /* 1 vs 2 threads: each step re-run from the other's input agrees
         * to rounding. */
        for (uint32_t i = 0; i < steps; i++) {
                cr_assert_eq(sd_denoiser_step(two.den, &p, i, two.cond, two.uncond, two.n_ctx, 7.5, a + i * n, re), 0);
                e = traj_step_error(a + i * n, a + (i + 1) * n, re, n);
                cr_assert_lt(e, 1e-4, "step %u: an honest re-run differs by %g", i, e);
                cr_log_info("1 vs 2 threads, step %u: relative step error %g", i, e);
        }
        /* The same seed makes the same trajectory on the same backend. */
        run_steps(&two, &p, steps, 7.5, b, n);
        cr_assert_eq(traj_root_of(a, steps + 1, n, ra), 0);
        cr_assert_eq(traj_root_of(b, steps + 1, n, rb), 0);
        run_steps(&one, &p, steps, 7.5, b, n);
        cr_assert_eq(traj_root_of(b, steps + 1, n, rb), 0);
        cr_assert_eq(memcmp(ra, rb, sizeof(ra)), 0, "one thread, twice: the same trajectory");

        /* Another prompt: swap the contexts. */
        cr_assert_eq(sd_denoiser_step(one.den, &p, 1, one.uncond, one.cond, one.n_ctx, 7.5, a + n, re), 0);
        e = traj_step_error(a + n, a + 2 * n, re, n);
        cr_log_info("%s: relative step error %g", "another prompt", e);
        cr_assert_gt(e, 1e-2, "another prompt's step passes (%g)", e);
        /* Another guidance. */
        cr_assert_eq(sd_denoiser_step(one.den, &p, 1, one.cond, one.uncond, one.n_ctx, 3.0, a + n, re), 0);
        e = traj_step_error(a + n, a + 2 * n, re, n);
        cr_log_info("%s: relative step error %g", "another guidance", e);
        cr_assert_gt(e, 1e-2, "another guidance's step passes (%g)", e);
        /* Another model (other random weights, same shapes). */
        world_open(&other, other_path, 1, h, wd);
        cr_assert_eq(sd_denoiser_step(other.den, &p, 1, one.cond, one.uncond, one.n_ctx, 7.5, a + n, re), 0);
        e = traj_step_error(a + n, a + 2 * n, re, n);
        cr_log_info("%s: relative step error %g", "another model", e);
        cr_assert_gt(e, 1e-2, "another model's step passes (%g)", e);
        /* A skipped step: x_2 = x_1. */
        cr_assert_eq(sd_denoiser_step(one.den, &p, 1, one.cond, one.uncond, one.n_ctx, 7.5, a + n, re), 0);
        e = traj_step_error(a + n, a + n, re, n);
        cr_log_info("%s: relative step error %g", "a copied step", e);
        cr_assert_gt(e, 0.5, "a copied step passes (%g)", e);
        /* One flipped bit moves the root. */
        {
                uint32_t bits;

                memcpy(&bits, &a[5], sizeof(bits));
                bits ^= 1;
                memcpy(&a[5], &bits, sizeof(bits));
        }
        cr_assert_eq(traj_root_of(a, steps + 1, n, rb), 0);
        cr_assert_neq(memcmp(ra, rb, sizeof(ra)), 0);

        world_close(&one);
        world_close(&two);
        world_close(&other);
        free(a);
        free(b);
        free(re);
}

Test(sd_unet, secret_steps_are_distinct_sorted_and_detection_odds_are_exact) {
        uint32_t s[5];
        unsigned seen[10] = {};

        for (int round = 0; round < 2000; round++) {
                traj_pick_steps(10, 5, s);
                for (int i = 0; i < 5; i++) {
                        cr_assert_lt(s[i], 10);
                        if (i)
                                cr_assert_gt(s[i], s[i - 1]);
                        seen[s[i]]++;
                }
        }
        /* Each step is picked half the time: 1,000 ± a few σ (σ ≈ 22). */
        for (int i = 0; i < 10; i++)
                cr_assert(seen[i] > 880 && seen[i] < 1120, "step %d picked %u times in 2,000", i, seen[i]);
        cr_assert_float_eq(traj_detection_chance(50, 25, 2), 1 - (25.0 / 50) * (24.0 / 49), 1e-12);
        cr_assert_float_eq(traj_detection_chance(50, 0, 2), 0, 0);
        cr_assert_float_eq(traj_detection_chance(4, 3, 2), 1, 0);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Stable Diffusion on the engine, against a reference measured in the
 * same run:
 *
 *   - seconds per UNet evaluation and per sampler step (two evaluations
 *     with classifier-free guidance) at a 64×64 latent (a 512² image), on
 *     an SD-1.5-sized random-weight checkpoint (--full; sd-tiny's widths
 *     otherwise), next to the time the same FLOPs take at the speed
 *     OpenBLAS's sgemm reaches on this machine with as many threads (the
 *     roofline the engine's convolutions and linear layers are built on);
 *   - the text encoder and the VAE's decode;
 *   - verification's cost: a verifier encodes the prompts, re-runs s steps
 *     and decodes the last latent, against the generation's N steps,
 *     measured by running both;
 *   - with a GPU, the same on the CUDA backend; without one, the reason.
 *
 * Usage: bench-imagegen [--full] [--latent N] [--threads T] [--steps N]
 *                       [--verify-steps S] */

#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clip-text.h"
#include "clip-tokenizer.h"
#include "denoiser.h"
#include "nn-backend.h"
#include "safetensors.h"
#include "sampler.h"
#include "sd-tiny.h"
#include "trajectory.h"
#include "unet.h"
#include "vae.h"

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

_Noreturn static void die(const char *what, const char *why) {
        fprintf(stderr, "bench-imagegen: %s: %s\n", what, why);
        exit(EXIT_FAILURE);
}

/* OpenBLAS sgemm on threads threads, GFLOP/s, at the shape of SD's widest
 * convolution in im2col form (320 × 2,880 times 2,880 × 4,096). */
static double sgemm_gflops(unsigned threads) {
        const int m = 320, k = 2880, n = 4096;
        float *a = calloc((size_t) m * k, sizeof(float)), *b = calloc((size_t) k * n, sizeof(float));
        float *c = calloc((size_t) m * n, sizeof(float));
        uint64_t best = UINT64_MAX;

        if (!a || !b || !c)
                die("sgemm", "out of memory");
        for (size_t i = 0; i < (size_t) m * k; i++)
                a[i] = (float) (i % 7) * 0.1f;
        for (size_t i = 0; i < (size_t) k * n; i++)
                b[i] = (float) (i % 5) * 0.1f;
        openblas_set_num_threads((int) threads);
        for (int rep = 0; rep < 4; rep++) {
                uint64_t t0 = now_usec();

                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
                if (now_usec() - t0 < best)
                        best = now_usec() - t0;
        }
        /* The engine runs sgemm per pool thread: OpenBLAS single-threaded. */
        openblas_set_num_threads(1);
        free(a);
        free(b);
        free(c);
        return 2.0 * m * k * n / (double) best / 1e3;
}

struct model {
        struct safetensors *file;
        struct nn_backend *be;
        struct sd_unet *unet;
        struct clip_text *clip;
        struct clip_tokenizer *tok;
        struct vae_decoder *vae;
};

static void model_open(struct model *m, const char *path, const char *vocab, const char *merges,
                       struct nn_backend *be) {
        char err[512];

        m->be = be;
        if (safetensors_open(path, &m->file, err, sizeof(err)) < 0 ||
            sd_unet_load(be, m->file, 8, &m->unet, err, sizeof(err)) < 0 ||
            clip_text_load(be, m->file, 0, &m->clip, err, sizeof(err)) < 0 ||
            clip_tokenizer_load(vocab, merges, &m->tok, err, sizeof(err)) < 0 ||
            vae_decoder_load(be, m->file, "first_stage_model.", &m->vae, err, sizeof(err)) < 0)
                die(path, err);
}

static void model_close(struct model *m) {
        vae_decoder_free(m->vae);
        clip_tokenizer_free(m->tok);
        clip_text_free(m->clip);
        sd_unet_free(m->unet);
        safetensors_close(m->file);
}

/* µs to encode a prompt into ctx. */
static uint64_t encode(struct model *m, const char *text, float *ctx) {
        int32_t ids[CLIP_CONTEXT];
        uint64_t t0 = now_usec();

        if (clip_tokenizer_encode_prompt(m->tok, text, strlen(text), clip_tokenizer_eos(m->tok), ids) < 0 ||
            clip_text_encode(m->clip, ids, CLIP_CONTEXT, 0, ctx) < 0)
                die("the text encoder", "failed");
        (void) m->be->ops->status(m->be);
        return now_usec() - t0;
}

/* µs to decode the latent. */
static uint64_t decode(struct model *m, const float *latent, uint32_t lh, uint32_t lw) {
        struct nn_backend *be = m->be;
        size_t n_scratch;
        char err[256];
        float *dl, *rgb, *scratch, *host;
        uint64_t t0;

        if (vae_scratch_size(vae_decoder_config(m->vae), lh, lw, &n_scratch, err, sizeof(err)) < 0)
                die("the VAE", err);
        dl = be->ops->alloc(be, 4 * (size_t) lh * lw);
        rgb = be->ops->alloc(be, 3 * 64 * (size_t) lh * lw);
        scratch = be->ops->alloc(be, n_scratch);
        host = malloc(3 * 64 * (size_t) lh * lw * sizeof(float));
        if (!dl || !rgb || !scratch || !host)
                die("the VAE", "out of memory");
        t0 = now_usec();
        be->ops->write(be, dl, latent, 4 * (size_t) lh * lw);
        if (vae_decode(m->vae, dl, lh, lw, 0.18215f, rgb, scratch, n_scratch, err, sizeof(err)) < 0)
                die("the VAE", err);
        be->ops->read(be, host, rgb, 3 * 64 * (size_t) lh * lw);
        (void) be->ops->status(be);
        t0 = now_usec() - t0;
        be->ops->release(be, dl);
        be->ops->release(be, rgb);
        be->ops->release(be, scratch);
        free(host);
        return t0;
}

static void run_backend(const char *label, struct nn_backend *be, const char *path, const char *vocab,
                        const char *merges, uint32_t latent, uint32_t steps, uint32_t verify_steps, double ref_gflops) {
        static struct sd_plan plan;
        struct model m = {};
        struct sd_denoiser *den = NULL;
        size_t n = 4 * (size_t) latent * latent, dim;
        float *cond, *uncond, *traj, *buf;
        uint64_t t_enc, t_eval, t_step, t_dec, t_gen, t_ver, t0;
        double flops;
        uint32_t picks[8];

        model_open(&m, path, vocab, merges, be);
        dim = clip_text_dim(m.clip);
        cond = be->ops->alloc(be, CLIP_CONTEXT * dim);
        uncond = be->ops->alloc(be, CLIP_CONTEXT * dim);
        traj = malloc((steps + 1) * n * sizeof(float));
        buf = malloc(n * sizeof(float));
        if (!cond || !uncond || !traj || !buf || sd_denoiser_new(be, m.unet, latent, latent, &den) < 0 ||
            sd_plan_make(SD_SAMPLER_EULER, steps, &plan) < 0)
                die(label, "out of memory");
        flops = sd_unet_flops(m.unet, latent, latent, CLIP_CONTEXT);

        /* Warm-up: the UNet's scratch, cuDNN's algorithm choices. */
        encode(&m, "", uncond);
        sd_noise(1, traj, n);
        if (sd_denoiser_step(den, &plan, 0, uncond, NULL, CLIP_CONTEXT, 1.0, traj, buf) < 0)
                die(label, "the UNet failed");

        t_enc = encode(&m, "an architectural concept, glass and timber, evening light", cond);
        t0 = now_usec();
        if (sd_denoiser_step(den, &plan, 0, cond, NULL, CLIP_CONTEXT, 1.0, traj, buf) < 0)
                die(label, "the UNet failed");
        t_eval = now_usec() - t0;

        /* The generation: encode both prompts, N guided steps, decode. */
        t0 = now_usec();
        encode(&m, "an architectural concept, glass and timber, evening light", cond);
        encode(&m, "", uncond);
        sd_noise(42, traj, n);
        for (size_t j = 0; j < n; j++)
                traj[j] *= (float) sd_plan_init_scale(&plan);
        for (uint32_t i = 0; i < steps; i++)
                if (sd_denoiser_step(den, &plan, i, cond, uncond, CLIP_CONTEXT, 7.5, traj + i * n,
                                     traj + (i + 1) * n) < 0)
                        die(label, "the UNet failed");
        t_step = (now_usec() - t0) / steps;
        t_dec = decode(&m, traj + (size_t) steps * n, latent, latent);
        t_gen = now_usec() - t0;

        /* The verification: encode both, re-run s secret steps, decode. */
        t0 = now_usec();
        encode(&m, "an architectural concept, glass and timber, evening light", cond);
        encode(&m, "", uncond);
        traj_pick_steps(steps, verify_steps, picks);
        for (uint32_t p = 0; p < verify_steps; p++) {
                uint32_t i = picks[p];

                if (sd_denoiser_step(den, &plan, i, cond, uncond, CLIP_CONTEXT, 7.5, traj + i * n, buf) < 0)
                        die(label, "the UNet failed");
                printf("  re-run of step %2u: relative error %.2e\n", i + 1,
                       traj_step_error(traj + i * n, traj + (i + 1) * n, buf, n));
        }
        decode(&m, traj + (size_t) steps * n, latent, latent);
        t_ver = now_usec() - t0;

        printf("%s (%s), %ux%u latent (%ux%u image), UNet %.0fM parameters\n", label, be->ops->name, latent, latent,
               8 * latent, 8 * latent, sd_unet_parameters(m.unet) / 1e6);
        printf("  UNet evaluation      %9.3f s   %7.1f GFLOP   %7.1f GFLOP/s\n", t_eval / 1e6, flops / 1e9,
               flops / (double) t_eval / 1e3);
        if (ref_gflops > 0)
                printf("  same FLOPs at sgemm  %9.3f s   (OpenBLAS sgemm %.1f GFLOP/s, same threads): engine at "
                       "%.0f %% of the roofline\n", flops / ref_gflops / 1e9, ref_gflops,
                       100.0 * flops / ref_gflops / 1e3 / (double) t_eval);
        printf("  guided step (2 evals)%9.3f s   (average of %u)\n", t_step / 1e6, steps);
        printf("  text encoder         %9.3f s\n", t_enc / 1e6);
        printf("  VAE decode           %9.3f s\n", t_dec / 1e6);
        printf("  generation, %2u steps %9.3f s   %.2f images/min\n", steps, t_gen / 1e6, 60e6 / (double) t_gen);
        printf("  verification, %u steps + decode %6.3f s = %.1f %% of the generation (UNet alone: %u/%u = "
               "%.1f %%)\n", verify_steps, t_ver / 1e6, 100.0 * (double) t_ver / (double) t_gen, verify_steps, steps,
               100.0 * verify_steps / steps);
        /* The same parts at the step counts people use. */
        for (uint32_t n_steps = 20; n_steps <= 50; n_steps += 30) {
                double fixed = (double) t_dec + 2.0 * t_enc;

                printf("  at %u steps (from the parts above): verification %.1f %% of the generation\n", n_steps,
                       100.0 * (fixed + verify_steps * (double) t_step) / (fixed + n_steps * (double) t_step));
        }

        sd_denoiser_free(den);
        be->ops->release(be, cond);
        be->ops->release(be, uncond);
        free(traj);
        free(buf);
        model_close(&m);
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "full", no_argument, NULL, 'F' },
                { "latent", required_argument, NULL, 'l' },
                { "threads", required_argument, NULL, 't' },
                { "steps", required_argument, NULL, 's' },
                { "verify-steps", required_argument, NULL, 'v' },
                {}
        };
        struct sd_tiny_spec spec = sd_tiny_spec_default();
        char dir[] = "/tmp/bench-imagegen-XXXXXX", path[128], vocab[160], merges[160], err[512], cmd[160];
        unsigned threads = 2;
        uint32_t latent = 64, steps = 20, verify_steps = 2;
        struct nn_backend *be;
        int c;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'F':
                        spec = sd_tiny_spec_full();
                        break;
                case 'l':
                        latent = (uint32_t) strtoul(optarg, NULL, 10);
                        break;
                case 't':
                        threads = (unsigned) strtoul(optarg, NULL, 10);
                        break;
                case 's':
                        steps = (uint32_t) strtoul(optarg, NULL, 10);
                        break;
                case 'v':
                        verify_steps = (uint32_t) strtoul(optarg, NULL, 10);
                        break;
                default:
                        fprintf(stderr, "usage: bench-imagegen [--full] [--latent N] [--threads T] [--steps N] "
                                "[--verify-steps S]\n");
                        return EXIT_FAILURE;
                }
        if (latent == 0 || latent % 8 || steps == 0 || verify_steps > steps || verify_steps > 8)
                die("usage", "the latent is a multiple of 8, 1 ≤ verify-steps ≤ min(steps, 8)");
        if (!mkdtemp(dir))
                die("mkdtemp", strerror(errno));
        snprintf(path, sizeof(path), "%s/model.safetensors", dir);
        snprintf(vocab, sizeof(vocab), "%s/vocab.json", dir);
        snprintf(merges, sizeof(merges), "%s/merges.txt", dir);
        printf("writing a random-weight checkpoint (UNet %u channels, text %u wide, %u layers) ...\n",
               spec.model_channels, spec.context_dim, spec.text_layers);
        fflush(stdout);
        if (sd_tiny_write(&spec, path, NULL, err, sizeof(err)) < 0 ||
            sd_tiny_write_tokenizer(spec.vocab, vocab, merges, err, sizeof(err)) < 0)
                die(path, err);

        if (nn_cpu_backend_new(threads, &be) < 0)
                die("cpu", "cannot start the backend");
        run_backend("CPU", be, path, vocab, merges, latent, steps, verify_steps, sgemm_gflops(threads));
        nn_backend_free(be);

        if (nn_cuda_backend_new(0, &be, err, sizeof(err)) < 0)
                printf("CUDA: not measured: %s\n", err);
        else {
                run_backend("CUDA", be, path, vocab, merges, latent, steps, verify_steps, 0);
                nn_backend_free(be);
        }
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        (void) system(cmd);
        return 0;
}

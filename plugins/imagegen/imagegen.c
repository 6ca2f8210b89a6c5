/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The imagegen skill: Stable Diffusion 1.x/2.x from a single-file
 * safetensors checkpoint (UNet, VAE and CLIP text encoder in one file, as
 * v1-5-pruned-emaonly.safetensors), on the shared engine (OpenBLAS or
 * cuBLAS/cuDNN).
 *
 * Config (swarmd.yaml, skills.imagegen.config):
 *   model          the .safetensors path (required, except in a verify-only
 *                  worker: see below)
 *   vocab, merges  the CLIP tokenizer's vocab.json and merges.txt (default:
 *                  next to the model, or in tokenizer/ beside it)
 *   device         cpu (default) or cuda; gpu: the CUDA device index
 *   threads        CPU threads (0: all)
 *   heads          attention heads of the UNet (0, the default: 8 for a
 *                  768-wide text encoder as SD 1.x, else 64 channels per
 *                  head as SD 2.x)
 *   max-width, max-height   pixels, multiples of 64 (default 1024)
 *   max-steps      (default 150)
 *   verify-steps   steps a verifier re-runs, chosen in secret (default 2)
 *   verify-tolerance-micro  the largest relative step error accepted, in
 *                  millionths (default 10000: 1 %; honest runs differ by
 *                  about 10^-6 on a CPU)
 *   price          micro-credits per million pixel-evaluations (default:
 *                  from the UNet's size, 1 per 100M parameters).  A job's
 *                  work in that unit is width × height × (steps × 2 with
 *                  guidance, × 1 without, + the VAE's decode in UNet
 *                  evaluations, measured at start); adverts give the
 *                  throughput in it, so routers expect the right time
 *   testing-cheat  skip-steps, ignore-prompt or other-seed: wrong results
 *                  on purpose, for tests; testing-claim-model PATH: claims
 *                  another checkpoint's identity
 *
 * Inputs: prompt (string), optionally negative_prompt (string), width and
 * height (ints, multiples of 64, default 512), steps (int, default 20),
 * guidance (a number, default 7.5; 1 turns classifier-free guidance off),
 * seed (int; default: random, reported), sampler ("euler", the default, or
 * "ddim").
 * Outputs: image (PNG bytes, with the parameters in a text chunk), latent
 * (f32 [4][h/8][w/8], what the VAE decoded), trajectory (f32
 * [steps+1][4][h/8][w/8]: the latent before the first step and after each),
 * width, height, steps, seed.  Progress: a chunk "progress" per step
 * ("step 3/20").
 *
 * Verification re-runs a few secretly chosen steps instead of the whole
 * generation (trajectory.h): the proof commits to the trajectory's Merkle
 * root and the model's identity; verify() checks the root, that the first
 * latent is the seed's noise, that the chosen steps re-run within the
 * tolerance, and that the image is the VAE's decode of the last latent.  A
 * requester without the model (a verify-only worker) asks another provider
 * of it for that check (a check job, as textgen's). */

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <swarm/skill.h>

#include "clip-text.h"
#include "clip-tokenizer.h"
#include "denoiser.h"
#include "nn-backend.h"
#include "nn-error.h"
#include "safetensors.h"
#include "sampler.h"
#include "sd-png.h"
#include "trajectory.h"
#include "unet.h"
#include "vae.h"

#define MODEL_ID_SIZE 32
#define DEFAULT_SIDE 512
#define DEFAULT_MAX_SIDE 1024
#define DEFAULT_STEPS 20
#define DEFAULT_MAX_STEPS 150
#define DEFAULT_GUIDANCE 7.5
#define DEFAULT_VERIFY_STEPS 2
#define DEFAULT_TOLERANCE_MICRO 10000
#define GUIDANCE_MAX 50.0
#define PROMPT_MAX 4096
/* The decode a verifier makes and the provider's PNG: honest decodes differ
 * by rounding (an 8-bit level where a value sits on a boundary). */
#define PIXEL_TOLERANCE 2
/* The advert's speed is measured on a latent of this side (a 128² image). */
#define BENCH_LATENT 16

enum cheat {
        CHEAT_NONE,
        CHEAT_SKIP_STEPS,       /* every other step copies the latent instead of running the UNet */
        CHEAT_IGNORE_PROMPT,    /* encodes "" instead of the prompt */
        CHEAT_OTHER_SEED,       /* starts from another seed's noise, reports the asked one */
};

struct imagegen {
        struct safetensors *file;
        struct nn_backend *be;
        bool on_gpu;
        struct sd_unet *unet;
        struct clip_text *clip;
        struct clip_tokenizer *tok;
        struct vae_decoder *vae;
        enum cheat cheat;

        uint8_t model_id[MODEL_ID_SIZE];
        char model_id_hex[2 * MODEL_ID_SIZE + 1];
        char name[256];
        uint32_t max_width, max_height, max_steps, verify_steps;
        double tolerance;
        uint64_t price;                 /* per million pixel-evaluations */
        uint64_t throughput;            /* image pixel-evaluations of the UNet per second, measured */
        uint32_t decode_evals;          /* the VAE's decode, in UNet evaluations of the same image */
        double sec_per_step_512;        /* estimated from the measurement */

        /* The text contexts [CLIP_CONTEXT][dim] in backend memory. */
        float *cond, *uncond;
        size_t ctx_dim;

        /* The last execute()'s trajectory root, for prove(). */
        uint8_t root[TRAJ_HASH_SIZE];
        bool have_root;
};

struct request {
        const char *prompt, *negative;
        uint32_t width, height, steps;
        double guidance;
        uint64_t seed;
        enum sd_sampler_kind sampler;
};

static int config_int(const struct swarm_values *config, const char *key, int64_t min, int64_t max, int64_t def,
                      int64_t *ret) {
        int64_t i;
        int r;

        r = swarm_values_get_int(config, key, &i);
        if (r == -ENOENT) {
                *ret = def;
                return 0;
        }
        if (r < 0) {
                swarm_log(LOG_ERR, "imagegen: setting \"%s\" must be an integer", key);
                return -EINVAL;
        }
        if (i < min || i > max) {
                swarm_log(LOG_ERR, "imagegen: setting \"%s\" is %" PRIi64 ", must be between %" PRIi64 " and %" PRIi64,
                          key, i, min, max);
                return -EINVAL;
        }
        *ret = i;
        return 0;
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static void imagegen_fini(void *state) {
        struct imagegen *t = state;

        if (!t)
                return;
        if (t->cond)
                t->be->ops->release(t->be, t->cond);
        if (t->uncond)
                t->be->ops->release(t->be, t->uncond);
        vae_decoder_free(t->vae);
        clip_text_free(t->clip);
        clip_tokenizer_free(t->tok);
        sd_unet_free(t->unet);
        nn_backend_free(t->be);
        safetensors_close(t->file);
        free(t);
}

/* The identity of a checkpoint: BLAKE2b-256 over every tensor's name,
 * dtype, shape and bytes, in the file's order; the header's metadata and
 * the file's name do not count. */
static void model_identity(const struct safetensors *file, uint8_t out[MODEL_ID_SIZE]) {
        crypto_generichash_state st;

        crypto_generichash_init(&st, (const uint8_t *) "swarm-sd-model-v1", 17, MODEL_ID_SIZE);
        for (size_t i = 0; i < safetensors_count(file); i++) {
                const struct st_tensor *tn = safetensors_tensor(file, i);
                uint8_t head[4 + 4 + 8 * SAFETENSORS_DIMS_MAX] = {};
                uint32_t v;

                crypto_generichash_update(&st, (const uint8_t *) tn->name, strlen(tn->name) + 1);
                v = htole32((uint32_t) tn->dtype);
                memcpy(head, &v, 4);
                v = htole32(tn->ndim);
                memcpy(head + 4, &v, 4);
                for (uint32_t d = 0; d < tn->ndim; d++) {
                        uint64_t s = htole64(tn->shape[d]);
                        memcpy(head + 8 + 8 * d, &s, 8);
                }
                crypto_generichash_update(&st, head, sizeof(head));
                crypto_generichash_update(&st, tn->data, tn->size);
        }
        crypto_generichash_final(&st, out, MODEL_ID_SIZE);
}

static int decode_latent(struct imagegen *t, const float *latent, uint32_t lh, uint32_t lw, uint8_t *rgb8,
                         char *err, size_t err_size);

static int encode_text(struct imagegen *t, const char *text, float *out, char *err, size_t err_size) {
        int32_t ids[CLIP_CONTEXT];
        int n;

        n = clip_tokenizer_encode_prompt(t->tok, text, strlen(text), clip_tokenizer_eos(t->tok), ids);
        if (n < 0)
                return nn_error(err, err_size, n, "%s", n == -EILSEQ ? "the text is not valid UTF-8"
                                                                      : "cannot tokenize the text");
        n = clip_text_encode(t->clip, ids, CLIP_CONTEXT, 0, out);
        if (n < 0)
                return nn_error(err, err_size, n, "the text encoder failed: %s", strerror(-n));
        return 0;
}

/* The UNet's speed on a BENCH_LATENT² latent (the first evaluation, which
 * allocates, not timed) and the VAE's decode of it, in UNet evaluations:
 * what adverts offer and routers divide a job's units by. */
static void measure_speed(struct imagegen *t) {
        const uint32_t s = BENCH_LATENT;
        struct sd_denoiser *d = NULL;
        static struct sd_plan plan;
        size_t n = (size_t) SD_LATENT_CHANNELS * s * s;
        float *x = malloc(n * sizeof(float));
        uint8_t *rgb = malloc((size_t) 64 * s * s * 3);
        char err[256];
        uint64_t start, usec, dec;

        t->throughput = 1;
        t->decode_evals = 1;
        if (!x || !rgb || sd_plan_make(SD_SAMPLER_EULER, 2, &plan) < 0 ||
            sd_denoiser_new(t->be, t->unet, s, s, &d) < 0 || encode_text(t, "", t->cond, err, sizeof(err)) < 0)
                goto out;
        sd_noise(0, x, n);
        if (sd_denoiser_step(d, &plan, 0, t->cond, NULL, CLIP_CONTEXT, 1.0, x, x) < 0)
                goto out;
        start = now_usec();
        if (sd_denoiser_step(d, &plan, 1, t->cond, NULL, CLIP_CONTEXT, 1.0, x, x) < 0)
                goto out;
        usec = now_usec() - start ?: 1;
        start = now_usec();
        if (decode_latent(t, x, s, s, rgb, err, sizeof(err)) < 0)
                goto out;
        dec = now_usec() - start;
        t->throughput = (uint64_t) 64 * s * s * 1000000 / usec ?: 1;
        t->decode_evals = (uint32_t) ((dec + usec - 1) / usec) ?: 1;
        /* Convolutions scale with the pixels, self-attention faster: a
         * lower bound for 64² latents. */
        t->sec_per_step_512 = (double) usec / 1e6 * (64.0 * 64.0) / (double) (s * s);
out:
        sd_denoiser_free(d);
        free(x);
        free(rgb);
}

static int imagegen_init(const struct swarm_values *config, void **state) {
        struct imagegen *t;
        const char *path = NULL, *device = "cpu", *vocab = NULL, *merges = NULL, *cheat_name = NULL;
        const char *claim_path = NULL;
        char *found_vocab = NULL, *found_merges = NULL, err[512];
        int64_t threads, gpu, heads, max_w, max_h, max_steps, verify_steps, tol, price, verify_only = 0;
        int r;

        if (sodium_init() < 0)
                return -EIO;
        r = swarm_values_get_string(config, "model", &path);
        if (r == -ENOENT && swarm_values_get_int(config, "verify-only", &verify_only) == 0 && verify_only == 1)
                path = NULL;
        else if (r < 0) {
                swarm_log(LOG_ERR, "imagegen: setting \"model\" (the path of a .safetensors checkpoint) is %s",
                          r == -ENOENT ? "missing" : "not a string");
                return -EINVAL;
        }
        r = swarm_values_get_string(config, "device", &device);
        if ((r < 0 && r != -ENOENT) || (strcmp(device, "cpu") != 0 && strcmp(device, "cuda") != 0)) {
                swarm_log(LOG_ERR, "imagegen: setting \"device\" must be cpu or cuda");
                return -EINVAL;
        }
        if ((swarm_values_get_string(config, "vocab", &vocab) < 0 && vocab) ||
            (swarm_values_get_string(config, "merges", &merges) < 0 && merges)) {
                swarm_log(LOG_ERR, "imagegen: settings \"vocab\" and \"merges\" must be paths");
                return -EINVAL;
        }
        if ((r = config_int(config, "threads", 0, 1024, 0, &threads)) < 0 ||
            (r = config_int(config, "gpu", 0, 1023, 0, &gpu)) < 0 ||
            (r = config_int(config, "heads", 0, 1024, 0, &heads)) < 0 ||
            (r = config_int(config, "max-width", 64, SD_PNG_SIDE_MAX, DEFAULT_MAX_SIDE, &max_w)) < 0 ||
            (r = config_int(config, "max-height", 64, SD_PNG_SIDE_MAX, DEFAULT_MAX_SIDE, &max_h)) < 0 ||
            (r = config_int(config, "max-steps", 1, SD_STEPS_MAX, DEFAULT_MAX_STEPS, &max_steps)) < 0 ||
            (r = config_int(config, "verify-steps", 1, SD_STEPS_MAX, DEFAULT_VERIFY_STEPS, &verify_steps)) < 0 ||
            (r = config_int(config, "verify-tolerance-micro", 0, 1000000, DEFAULT_TOLERANCE_MICRO, &tol)) < 0 ||
            (r = config_int(config, "price", 1, INT64_MAX, 0, &price)) < 0)
                return r;
        if (max_w % 64 || max_h % 64 || (uint64_t) max_w * (uint64_t) max_h > SD_PNG_PIXELS_MAX) {
                swarm_log(LOG_ERR, "imagegen: max-width and max-height must be multiples of 64, their product at "
                          "most %" PRIu64 " pixels (a PNG's limit here)", SD_PNG_PIXELS_MAX);
                return -EINVAL;
        }
        if (swarm_values_get_string(config, "testing-cheat", &cheat_name) < 0)
                cheat_name = NULL;
        (void) swarm_values_get_string(config, "testing-claim-model", &claim_path);

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->max_width = (uint32_t) max_w;
        t->max_height = (uint32_t) max_h;
        t->max_steps = (uint32_t) max_steps;
        t->verify_steps = (uint32_t) verify_steps;
        t->tolerance = (double) tol / 1e6;
        if (cheat_name) {
                if (strcmp(cheat_name, "skip-steps") == 0)
                        t->cheat = CHEAT_SKIP_STEPS;
                else if (strcmp(cheat_name, "ignore-prompt") == 0)
                        t->cheat = CHEAT_IGNORE_PROMPT;
                else if (strcmp(cheat_name, "other-seed") == 0)
                        t->cheat = CHEAT_OTHER_SEED;
                else {
                        swarm_log(LOG_ERR, "imagegen: testing-cheat \"%s\" is not one of skip-steps, ignore-prompt, "
                                  "other-seed", cheat_name);
                        r = -EINVAL;
                        goto fail;
                }
                swarm_log(LOG_WARNING, "imagegen: testing-cheat=%s: this provider returns wrong results on purpose",
                          cheat_name);
        }
        if (!path) {
                snprintf(t->name, sizeof(t->name), "(no model)");
                swarm_log(LOG_INFO, "imagegen: no model here: results from the swarm are checked by other providers "
                          "of their model (check jobs)");
                *state = t;
                return 0;
        }

        r = safetensors_open(path, &t->file, err, sizeof(err));
        if (r < 0) {
                swarm_log(LOG_ERR, "imagegen: %s", err);
                goto fail;
        }
        if (!vocab || !merges) {
                r = clip_tokenizer_find(path, &found_vocab, &found_merges);
                if (r < 0) {
                        swarm_log(LOG_ERR, "imagegen: %s: no CLIP tokenizer files: set \"vocab\" and \"merges\" (the "
                                  "vocab.json and merges.txt of openai/clip-vit-large-patch14), or put them next to "
                                  "the model", path);
                        goto fail;
                }
                vocab = vocab ?: found_vocab;
                merges = merges ?: found_merges;
        }
        r = clip_tokenizer_load(vocab, merges, &t->tok, err, sizeof(err));
        free(found_vocab);
        free(found_merges);
        if (r < 0) {
                swarm_log(LOG_ERR, "imagegen: %s", err);
                goto fail;
        }
        t->on_gpu = strcmp(device, "cuda") == 0;
        if (t->on_gpu)
                r = nn_cuda_backend_new((int) gpu, &t->be, err, sizeof(err));
        else {
                r = nn_cpu_backend_new((unsigned) threads, &t->be);
                if (r < 0)
                        snprintf(err, sizeof(err), "cannot start the CPU backend: %s", strerror(-r));
        }
        if (r < 0) {
                swarm_log(LOG_ERR, "imagegen: device %s: %s", device, err);
                goto fail;
        }
        r = sd_unet_load(t->be, t->file, (uint32_t) heads, &t->unet, err, sizeof(err));
        if (r >= 0)
                r = clip_text_load(t->be, t->file, 0, &t->clip, err, sizeof(err));
        if (r >= 0)
                r = vae_decoder_load(t->be, t->file, "first_stage_model.", &t->vae, err, sizeof(err));
        if (r < 0) {
                swarm_log(LOG_ERR, "imagegen: %s: %s", path, err);
                goto fail;
        }
        t->ctx_dim = clip_text_dim(t->clip);
        if (t->ctx_dim != sd_unet_context_dim(t->unet)) {
                swarm_log(LOG_ERR, "imagegen: %s: the text encoder is %zu wide, the UNet's cross-attention takes %" PRIu32,
                          path, t->ctx_dim, sd_unet_context_dim(t->unet));
                r = -EBADMSG;
                goto fail;
        }
        if (clip_tokenizer_n_vocab(t->tok) > clip_text_vocab(t->clip)) {
                swarm_log(LOG_ERR, "imagegen: the tokenizer has %zu tokens, the text encoder's embedding %" PRIu32,
                          clip_tokenizer_n_vocab(t->tok), clip_text_vocab(t->clip));
                r = -EBADMSG;
                goto fail;
        }
        t->cond = t->be->ops->alloc(t->be, CLIP_CONTEXT * t->ctx_dim);
        t->uncond = t->be->ops->alloc(t->be, CLIP_CONTEXT * t->ctx_dim);
        if (!t->cond || !t->uncond) {
                r = -ENOMEM;
                goto fail;
        }

        if (claim_path) {
                struct safetensors *claimed;

                swarm_log(LOG_WARNING, "imagegen: testing-claim-model: this provider claims to serve %s, which it "
                          "does not", claim_path);
                r = safetensors_open(claim_path, &claimed, err, sizeof(err));
                if (r < 0) {
                        swarm_log(LOG_ERR, "imagegen: testing-claim-model: %s", err);
                        goto fail;
                }
                model_identity(claimed, t->model_id);
                safetensors_close(claimed);
        } else
                model_identity(t->file, t->model_id);
        sodium_bin2hex(t->model_id_hex, sizeof(t->model_id_hex), t->model_id, sizeof(t->model_id));
        {
                const char *base = strrchr(path, '/');
                snprintf(t->name, sizeof(t->name), "%s", base ? base + 1 : path);
                /* Into adverts and the PNG's text: printable ASCII only. */
                for (char *c = t->name; *c; c++)
                        if (*c < 0x20 || *c > 0x7e)
                                *c = '?';
        }
        t->price = price > 0 ? (uint64_t) price : (sd_unet_parameters(t->unet) + 99999999) / 100000000;
        measure_speed(t);
        swarm_log(LOG_INFO, "imagegen: %s (UNet %" PRIu64 "M parameters, text %zu wide), on %s, about %.2f s per UNet "
                  "evaluation at 512², a decode as %" PRIu32 " evaluations", t->name,
                  sd_unet_parameters(t->unet) / 1000000, t->ctx_dim, t->be->ops->name, t->sec_per_step_512,
                  t->decode_evals);
        *state = t;
        return 0;
fail:
        imagegen_fini(t);
        return r < 0 ? r : -EINVAL;
}

static int imagegen_advertise(void *state, struct swarm_values *advert) {
        const struct imagegen *t = state;
        char limits[64];
        int r;

        r = swarm_values_set_string(advert, "check-inputs", "trajectory,image,width,height,steps,seed");
        if (r >= 0)
                /* What a second checker is given of the first's verdict. */
                r = swarm_values_set_string(advert, "check-retry-inputs", "check-failed-step");
        if (r < 0)
                return r;
        if (!t->unet) {
                if ((r = swarm_values_set_string(advert, "unit", "pixel-eval")) < 0 ||
                    (r = swarm_values_set_int(advert, "price", 1)) < 0 ||
                    (r = swarm_values_set_string(advert, "price-unit", "mpixel-eval")) < 0)
                        return r;
                return 0;
        }
        snprintf(limits, sizeof(limits), "%" PRIu32 "x%" PRIu32 ", %" PRIu32 " steps", t->max_width, t->max_height,
                 t->max_steps);
        if ((r = swarm_values_set_string(advert, "device", t->be->ops->name)) < 0 ||
            (r = swarm_values_set_string(advert, "unit", "pixel-eval")) < 0 ||
            (r = swarm_values_set_int(advert, "throughput", (int64_t) t->throughput)) < 0 ||
            (r = swarm_values_set_int(advert, "price", (int64_t) t->price)) < 0 ||
            (r = swarm_values_set_string(advert, "price-unit", "mpixel-eval")) < 0 ||
            (r = swarm_values_set_int(advert, "decode-evals", t->decode_evals)) < 0 ||
            (r = swarm_values_set_string(advert, "model", t->name)) < 0 ||
            (r = swarm_values_set_string(advert, "model-id", t->model_id_hex)) < 0 ||
            (r = swarm_values_set_string(advert, "variant", t->model_id_hex)) < 0 ||
            (r = swarm_values_set_int(advert, "parameters", (int64_t) sd_unet_parameters(t->unet))) < 0 ||
            (r = swarm_values_set_int(advert, "ms-per-eval-512", (int64_t) (t->sec_per_step_512 * 1000))) < 0 ||
            (r = swarm_values_set_string(advert, "libraries", t->be->ops->libraries(t->be))) < 0)
                return r;
        return swarm_values_set_string(advert, "limits", limits);
}

/* A decimal given as a string ("7.5") or a whole number. */
static int input_number(const struct swarm_values *in, struct swarm_job *job, const char *name, double def,
                        double *ret) {
        const char *s;
        int64_t i;
        char *end;
        double d;

        if (swarm_values_get_int(in, name, &i) == 0) {
                *ret = (double) i;
                return 0;
        }
        switch (swarm_values_get_string(in, name, &s)) {
        case -ENOENT:
                *ret = def;
                return 0;
        case 0:
                errno = 0;
                d = strtod(s, &end);
                if (errno == 0 && end != s && !*end && isfinite(d)) {
                        *ret = d;
                        return 0;
                }
                swarm_job_set_error(job, "input \"%s\" is \"%.32s\", not a number", name, s);
                return -EINVAL;
        default:
                swarm_job_set_error(job, "input \"%s\" must be a number (a string such as \"7.5\", or an int)", name);
                return -EINVAL;
        }
}

static int input_int(const struct swarm_values *in, struct swarm_job *job, const char *name, int64_t min,
                     int64_t max, int64_t def, int64_t *ret) {
        int r = swarm_values_get_int(in, name, ret);

        if (r == -ENOENT) {
                *ret = def;
                return 0;
        }
        if (r < 0 || *ret < min || *ret > max) {
                swarm_job_set_error(job, "input \"%s\" must be an integer from %" PRIi64 " to %" PRIi64, name, min,
                                    max);
                return -EINVAL;
        }
        return 0;
}

/* RFC 3629 UTF-8: no overlong forms, surrogates or code points past
 * U+10FFFF.  Prompts go into the PNG's text chunk, which must be UTF-8,
 * so a bad one is refused before any work rather than after it. */
static bool utf8_valid(const char *s) {
        const unsigned char *p = (const unsigned char *) s;

        while (*p) {
                unsigned n;
                uint32_t cp;

                if (p[0] < 0x80) {
                        p++;
                        continue;
                }
                if (p[0] >= 0xc2 && p[0] <= 0xdf)
                        n = 1, cp = p[0] & 0x1f;
                else if (p[0] >= 0xe0 && p[0] <= 0xef)
                        n = 2, cp = p[0] & 0x0f;
                else if (p[0] >= 0xf0 && p[0] <= 0xf4)
                        n = 3, cp = p[0] & 0x07;
                else
                        return false;
                for (unsigned i = 1; i <= n; i++) {
                        if ((p[i] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (p[i] & 0x3f);
                }
                if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
                    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
                        return false;
                p += n + 1;
        }
        return true;
}

/* The request's parameters, checked; seed_given says whether the job named
 * its seed (execute() draws one when it did not). */
static int parse_request(const struct imagegen *t, const struct swarm_values *in, struct swarm_job *job,
                         struct request *req, bool *seed_given) {
        const char *sampler = "euler";
        int64_t w, h, steps, seed;
        int r;

        *req = (struct request) { .negative = "" };
        if (swarm_values_get_string(in, "prompt", &req->prompt) < 0) {
                swarm_job_set_error(job, "input \"prompt\" (a string) is missing");
                return -EINVAL;
        }
        r = swarm_values_get_string(in, "negative_prompt", &req->negative);
        if (r < 0 && r != -ENOENT) {
                swarm_job_set_error(job, "input \"negative_prompt\" must be a string");
                return -EINVAL;
        }
        if (!utf8_valid(req->prompt) || !utf8_valid(req->negative)) {
                swarm_job_set_error(job, "input \"%s\" is not valid UTF-8",
                                    utf8_valid(req->prompt) ? "negative_prompt" : "prompt");
                return -EINVAL;
        }
        if (strlen(req->prompt) > PROMPT_MAX || strlen(req->negative) > PROMPT_MAX) {
                swarm_job_set_error(job, "the prompts are limited to %d bytes (the text encoder reads 75 tokens)",
                                    PROMPT_MAX);
                return -EINVAL;
        }
        if ((r = input_int(in, job, "width", 64, t->max_width ?: DEFAULT_MAX_SIDE, DEFAULT_SIDE, &w)) < 0 ||
            (r = input_int(in, job, "height", 64, t->max_height ?: DEFAULT_MAX_SIDE, DEFAULT_SIDE, &h)) < 0 ||
            (r = input_int(in, job, "steps", 1, t->max_steps ?: SD_STEPS_MAX, DEFAULT_STEPS, &steps)) < 0 ||
            (r = input_number(in, job, "guidance", DEFAULT_GUIDANCE, &req->guidance)) < 0)
                return r;
        if (w % 64 || h % 64) {
                swarm_job_set_error(job, "width and height must be multiples of 64 (%" PRIi64 "×%" PRIi64 " asked)", w,
                                    h);
                return -EINVAL;
        }
        if (req->guidance < 0 || req->guidance > GUIDANCE_MAX) {
                swarm_job_set_error(job, "input \"guidance\" must be from 0 to %g", GUIDANCE_MAX);
                return -EINVAL;
        }
        r = swarm_values_get_int(in, "seed", &seed);
        if ((r < 0 && r != -ENOENT) || (r == 0 && seed < 0)) {
                swarm_job_set_error(job, "input \"seed\" must be an integer from 0 to 2^63 - 1");
                return -EINVAL;
        }
        *seed_given = r == 0;
        req->seed = r == 0 ? (uint64_t) seed : 0;
        r = swarm_values_get_string(in, "sampler", &sampler);
        if ((r < 0 && r != -ENOENT) || sd_sampler_from_string(sampler, &req->sampler) < 0) {
                swarm_job_set_error(job, "input \"sampler\" must be euler or ddim");
                return -EINVAL;
        }
        req->width = (uint32_t) w;
        req->height = (uint32_t) h;
        req->steps = (uint32_t) steps;
        return 0;
}

static int imagegen_price(void *state, const struct swarm_values *inputs, uint64_t *price) {
        const struct imagegen *t = state;
        struct request req;
        bool seeded;
        uint64_t units, p;
        int r;

        r = parse_request(t, inputs, NULL, &req, &seeded);
        if (r < 0)
                return r;
        /* Below 2^64: 16384² pixels × (2 × 1000 steps + a decode).  A
         * check job re-runs verify-steps of them (one more for a second
         * checker) and decodes. */
        if (swarm_values_get_tensor(inputs, "check.trajectory", &(struct swarm_tensor) {}) == 0 &&
            t->verify_steps + 1 < req.steps)
                req.steps = t->verify_steps + 1;
        units = (uint64_t) req.width * req.height *
                ((uint64_t) req.steps * (req.guidance != 1.0 ? 2 : 1) + (t->decode_evals ?: 1));
        if (__builtin_mul_overflow(units, t->price ?: 1, &p))
                p = UINT64_MAX - 999999;
        *price = (p + 999999) / 1000000 ?: 1;
        return 0;
}

/* The text contexts of a request into t->cond and t->uncond; as_provider:
 * for a generation, where testing-cheat=ignore-prompt lies (a check of
 * someone else's result on this node stays honest). */
static int encode_request(struct imagegen *t, const struct request *req, bool as_provider, struct swarm_job *job) {
        char err[256];
        int r;

        r = encode_text(t, as_provider && t->cheat == CHEAT_IGNORE_PROMPT ? "" : req->prompt, t->cond, err,
                        sizeof(err));
        if (r >= 0 && req->guidance != 1.0)
                r = encode_text(t, req->negative, t->uncond, err, sizeof(err));
        if (r < 0 && job)
                swarm_job_set_error(job, "the prompts: %s", err);
        return r;
}

/* rgb8 [height][width][3] of the latent's decode. */
static int decode_latent(struct imagegen *t, const float *latent, uint32_t lh, uint32_t lw, uint8_t *rgb8,
                         char *err, size_t err_size) {
        struct nn_backend *be = t->be;
        size_t n_scratch, pixels = (size_t) 64 * lh * lw;
        float *dl = NULL, *drgb = NULL, *scratch = NULL, *host = NULL;
        int r;

        r = vae_scratch_size(vae_decoder_config(t->vae), lh, lw, &n_scratch, err, err_size);
        if (r < 0)
                return r;
        dl = be->ops->alloc(be, (size_t) SD_LATENT_CHANNELS * lh * lw);
        drgb = be->ops->alloc(be, 3 * pixels);
        scratch = be->ops->alloc(be, n_scratch);
        host = malloc(3 * pixels * sizeof(float));
        if (!dl || !drgb || !scratch || !host) {
                r = nn_error(err, err_size, -ENOMEM, "out of memory for the VAE's decode (%zu MiB)",
                             n_scratch * sizeof(float) >> 20);
                goto out;
        }
        be->ops->write(be, dl, latent, (size_t) SD_LATENT_CHANNELS * lh * lw);
        r = vae_decode(t->vae, dl, lh, lw, VAE_SCALE_FACTOR_SD, drgb, scratch, n_scratch, err, err_size);
        if (r < 0)
                goto out;
        be->ops->read(be, host, drgb, 3 * pixels);
        r = be->ops->status(be);
        if (r < 0) {
                nn_error(err, err_size, r, "the device failed during the decode");
                goto out;
        }
        vae_image_to_rgb8(host, 8 * lw, 8 * lh, rgb8);
out:
        if (dl)
                be->ops->release(be, dl);
        if (drgb)
                be->ops->release(be, drgb);
        if (scratch)
                be->ops->release(be, scratch);
        free(host);
        return r;
}

static int imagegen_execute(void *state, struct swarm_job *job) {
        struct imagegen *t = state;
        const struct swarm_values *in = swarm_job_inputs(job);
        struct swarm_values *out = swarm_job_outputs(job);
        static struct sd_plan plan;
        struct request req;
        struct sd_denoiser *den = NULL;
        struct swarm_tensor traj, latent;
        bool seeded;
        uint32_t lh, lw;
        size_t n;
        uint8_t *rgb = NULL;
        void *png = NULL;
        size_t png_size;
        char err[512], params[PROMPT_MAX * 2 + 1024], progress[64];
        float *x;
        int r;

        if (!t->unet) {
                swarm_job_set_error(job, "this node has no imagegen model (a verify-only worker)");
                return -EOPNOTSUPP;
        }
        r = parse_request(t, in, job, &req, &seeded);
        if (r < 0)
                return r;
        if (!seeded)
                randombytes_buf(&req.seed, sizeof(req.seed));
        req.seed &= INT64_MAX;  /* a drawn one: reported as an int */
        lh = req.height / 8;
        lw = req.width / 8;
        n = (size_t) SD_LATENT_CHANNELS * lh * lw;
        t->have_root = false;
        if (sd_plan_make(req.sampler, req.steps, &plan) < 0)
                return -EINVAL;

        r = encode_request(t, &req, true, job);
        if (r < 0)
                return r == -EILSEQ ? -EINVAL : r;
        r = swarm_values_add_tensor(out, "trajectory", SWARM_DTYPE_F32, 4,
                                    (const uint64_t[]) { req.steps + 1, SD_LATENT_CHANNELS, lh, lw }, &traj);
        if (r < 0)
                return r;
        x = traj.data;
        sd_noise(t->cheat == CHEAT_OTHER_SEED ? req.seed ^ 1 : req.seed, x, n);
        for (size_t j = 0; j < n; j++)
                x[j] *= (float) sd_plan_init_scale(&plan);

        r = sd_denoiser_new(t->be, t->unet, lh, lw, &den);
        if (r < 0) {
                swarm_job_set_error(job, "out of memory for a %" PRIu32 "×%" PRIu32 " latent", lw, lh);
                return r;
        }
        for (uint32_t i = 0; i < req.steps; i++) {
                float *cur = x + i * n, *next = cur + n;

                if (swarm_job_cancelled(job)) {
                        r = -ECANCELED;
                        goto out;
                }
                if (t->cheat == CHEAT_SKIP_STEPS && i % 2 == 1)
                        memcpy(next, cur, n * sizeof(float));
                else {
                        r = sd_denoiser_step(den, &plan, i, t->cond, req.guidance != 1.0 ? t->uncond : NULL,
                                             CLIP_CONTEXT, req.guidance, cur, next);
                        if (r < 0) {
                                swarm_job_set_error(job, "step %" PRIu32 ": the device failed: %s", i + 1,
                                                    strerror(-r));
                                goto out;
                        }
                }
                snprintf(progress, sizeof(progress), "step %" PRIu32 "/%" PRIu32, i + 1, req.steps);
                (void) swarm_job_emit(job, "progress", progress, strlen(progress));
        }

        rgb = malloc((size_t) req.width * req.height * 3);
        if (!rgb) {
                r = -ENOMEM;
                goto out;
        }
        r = decode_latent(t, x + (size_t) req.steps * n, lh, lw, rgb, err, sizeof(err));
        if (r < 0) {
                swarm_job_set_error(job, "the VAE's decode: %s", err);
                goto out;
        }
        /* As other SD tools write it (the "parameters" text chunk). */
        snprintf(params, sizeof(params), "%s\nNegative prompt: %s\nSteps: %" PRIu32 ", Sampler: %s, CFG scale: %g, "
                 "Seed: %" PRIu64 ", Size: %" PRIu32 "x%" PRIu32 ", Model: %s, Model hash: %.16s", req.prompt,
                 req.negative, req.steps, sd_sampler_to_string(req.sampler), req.guidance, req.seed, req.width,
                 req.height, t->name, t->model_id_hex);
        {
                const struct sd_png_text text[] = {
                        { "parameters", params },
                        { "Software", "SwarmHarness imagegen" },
                };

                r = sd_png_encode(rgb, req.width, req.height, text, 2, &png, &png_size, err, sizeof(err));
        }
        if (r < 0) {
                swarm_job_set_error(job, "PNG: %s", err);
                goto out;
        }
        if ((r = swarm_values_set_bytes(out, "image", png, png_size)) < 0 ||
            (r = swarm_values_add_tensor(out, "latent", SWARM_DTYPE_F32, 3,
                                         (const uint64_t[]) { SD_LATENT_CHANNELS, lh, lw }, &latent)) < 0)
                goto out;
        memcpy(latent.data, x + (size_t) req.steps * n, n * sizeof(float));
        if ((r = swarm_values_set_int(out, "width", req.width)) < 0 ||
            (r = swarm_values_set_int(out, "height", req.height)) < 0 ||
            (r = swarm_values_set_int(out, "steps", req.steps)) < 0 ||
            (r = swarm_values_set_int(out, "seed", (int64_t) req.seed)) < 0)
                goto out;
        r = traj_root_of(x, req.steps + 1, n, t->root);
        t->have_root = r >= 0;
out:
        sd_denoiser_free(den);
        free(rgb);
        free(png);
        return r;
}

static int imagegen_prove(void *state, struct swarm_job *job) {
        struct imagegen *t = state;
        struct swarm_values *proof = swarm_job_proof(job);
        int r;

        if (!t->have_root)
                return 0;       /* a check job: its verdict is its output */
        r = swarm_values_set_bytes(proof, "model-id", t->model_id, sizeof(t->model_id));
        if (r < 0)
                return r;
        return swarm_values_set_bytes(proof, "trajectory-root", t->root, sizeof(t->root));
}

/* What a result must hold whoever checks it: its values' shapes agree with
 * the request and with each other, and the proof's root is the
 * trajectory's.  *ret_traj gets the trajectory. */
static int check_result_shape(struct swarm_job *job, const struct request *req, bool seeded,
                              const struct swarm_values *out, const void *root, struct swarm_tensor *ret_traj) {
        struct swarm_tensor traj, latent;
        int64_t w, h, steps, seed;
        uint32_t lh = req->height / 8, lw = req->width / 8;
        size_t n = (size_t) SD_LATENT_CHANNELS * lh * lw;
        uint8_t r2[TRAJ_HASH_SIZE];

        if (swarm_values_get_int(out, "width", &w) < 0 || swarm_values_get_int(out, "height", &h) < 0 ||
            swarm_values_get_int(out, "steps", &steps) < 0 || swarm_values_get_int(out, "seed", &seed) < 0 ||
            w != req->width || h != req->height || steps != req->steps || (seeded && (uint64_t) seed != req->seed)) {
                swarm_job_set_error(job, "the result's width, height, steps or seed are not the job's");
                return -EBADMSG;
        }
        if (swarm_values_get_tensor(out, "trajectory", &traj) < 0 || traj.dtype != SWARM_DTYPE_F32 ||
            traj.ndim != 4 || traj.shape[0] != req->steps + 1 || traj.shape[1] != SD_LATENT_CHANNELS ||
            traj.shape[2] != lh || traj.shape[3] != lw) {
                swarm_job_set_error(job, "the result's trajectory is not f32 [%" PRIu32 "][4][%" PRIu32 "][%" PRIu32 "]",
                                    req->steps + 1, lh, lw);
                return -EBADMSG;
        }
        if (swarm_values_get_tensor(out, "latent", &latent) < 0 || latent.dtype != SWARM_DTYPE_F32 ||
            latent.n_elements != n ||
            memcmp(latent.data, (const float *) traj.data + (size_t) req->steps * n, n * sizeof(float)) != 0) {
                swarm_job_set_error(job, "the result's latent is not the trajectory's last");
                return -EBADMSG;
        }
        if (root) {
                if (traj_root_of(traj.data, req->steps + 1, n, r2) < 0)
                        return -ENOMEM;
                if (memcmp(r2, root, TRAJ_HASH_SIZE) != 0) {
                        swarm_job_set_error(job, "the trajectory is not the one the proof commits to");
                        return -EBADMSG;
                }
        }
        *ret_traj = traj;
        return 0;
}

/* A PNG's size from its IHDR, before anything is decoded: a provider's
 * image of another size is refused without inflating it. */
static bool png_size_is(const void *png, size_t size, uint32_t width, uint32_t height) {
        static const uint8_t head[16] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R' };
        const uint8_t *p = png;

        return size >= 24 && memcmp(p, head, sizeof(head)) == 0 &&
               ((uint32_t) p[16] << 24 | (uint32_t) p[17] << 16 | (uint32_t) p[18] << 8 | p[19]) == width &&
               ((uint32_t) p[20] << 24 | (uint32_t) p[21] << 16 | (uint32_t) p[22] << 8 | p[23]) == height;
}

/* The checks that need the model: the first latent is the seed's noise,
 * secretly chosen steps (and forced_step, when ≥ 0: the one a first checker
 * found wrong) re-run within the tolerance, the image is the last latent's
 * decode and carries only the text execute() writes.  -EBADMSG with the
 * reason in why (and the step that failed in *failed_step, or -1);
 * -EOPNOTSUPP when this node could not judge (out of memory, a device
 * error): not the provider's fault. */
static int check_with_model(struct imagegen *t, const struct request *req, uint64_t seed,
                            const struct swarm_tensor *traj, const void *png, size_t png_size, int64_t forced_step,
                            int64_t *failed_step, char *why, size_t why_size) {
        static struct sd_plan plan;
        uint32_t lh = req->height / 8, lw = req->width / 8, picks[SD_STEPS_MAX + 1], k;
        size_t n = (size_t) SD_LATENT_CHANNELS * lh * lw, prompt_len = strlen(req->prompt);
        const float *x = traj->data;
        struct sd_denoiser *den = NULL;
        struct sd_png_image img = {};
        uint8_t *rgb = NULL;
        float *buf = NULL;
        char err[256];
        int r;

        *failed_step = -1;
        why[0] = '\0';
        if (sd_plan_make(req->sampler, req->steps, &plan) < 0)
                return nn_error(why, why_size, -EOPNOTSUPP, "no plan for %" PRIu32 " steps", req->steps);
        if (!png_size_is(png, png_size, req->width, req->height))
                return nn_error(why, why_size, -EBADMSG, "the image is not a PNG of %" PRIu32 "×%" PRIu32,
                                req->width, req->height);
        buf = malloc(n * sizeof(float));
        if (!buf)
                return nn_error(why, why_size, -EOPNOTSUPP, "out of memory for a latent");
        sd_noise(seed, buf, n);
        for (size_t j = 0; j < n; j++) {
                double want = buf[j] * sd_plan_init_scale(&plan);

                if (!(fabs(x[j] - want) <= 1e-5 * (1 + fabs(want)))) {
                        r = nn_error(why, why_size, -EBADMSG, "the first latent is not seed %" PRIu64 "'s noise "
                                     "(element %zu: %g, not %g)", seed, j, x[j], want);
                        goto out;
                }
        }

        r = encode_request(t, req, false, NULL);
        if (r < 0) {
                r = nn_error(why, why_size, -EOPNOTSUPP, "the prompts cannot be encoded here");
                goto out;
        }
        r = sd_denoiser_new(t->be, t->unet, lh, lw, &den);
        if (r < 0) {
                r = nn_error(why, why_size, -EOPNOTSUPP, "out of memory for a %" PRIu32 "×%" PRIu32 " latent", lw,
                             lh);
                goto out;
        }
        k = t->verify_steps < req->steps ? t->verify_steps : req->steps;
        traj_pick_steps(req->steps, k, picks);
        if (forced_step >= 0 && (uint64_t) forced_step < req->steps)
                picks[k++] = (uint32_t) forced_step;
        for (uint32_t p = 0; p < k; p++) {
                uint32_t i = picks[p];
                double e;

                r = sd_denoiser_step(den, &plan, i, t->cond, req->guidance != 1.0 ? t->uncond : NULL, CLIP_CONTEXT,
                                     req->guidance, x + i * n, buf);
                if (r < 0) {
                        r = nn_error(why, why_size, -EOPNOTSUPP, "the device failed re-running step %" PRIu32, i + 1);
                        goto out;
                }
                e = traj_step_error(x + i * n, x + (i + 1) * n, buf, n);
                if (!(e <= t->tolerance)) {
                        *failed_step = i;
                        r = nn_error(why, why_size, -EBADMSG, "step %" PRIu32 " of %" PRIu32 " re-run here differs "
                                     "from the provider's by %.3g of the step (tolerance %.3g): another model, "
                                     "prompt or guidance, or a step not run", i + 1, req->steps, e, t->tolerance);
                        goto out;
                }
        }

        rgb = malloc((size_t) req->width * req->height * 3);
        if (!rgb) {
                r = nn_error(why, why_size, -EOPNOTSUPP, "out of memory for the image");
                goto out;
        }
        r = decode_latent(t, x + (size_t) req->steps * n, lh, lw, rgb, err, sizeof(err));
        if (r < 0) {
                r = nn_error(why, why_size, -EOPNOTSUPP, "the VAE's decode: %s", err);
                goto out;
        }
        r = sd_png_decode(png, png_size, &img, err, sizeof(err));
        if (r < 0) {
                r = nn_error(why, why_size, r == -ENOMEM ? -EOPNOTSUPP : -EBADMSG, "the image: %s", err);
                goto out;
        }
        if (img.width != req->width || img.height != req->height) {
                r = nn_error(why, why_size, -EBADMSG, "the image is %" PRIu32 "×%" PRIu32 ", not %" PRIu32 "×%" PRIu32,
                             img.width, img.height, req->width, req->height);
                goto out;
        }
        for (size_t j = 0; j < (size_t) req->width * req->height * 3; j++)
                if (abs((int) img.rgb[j] - (int) rgb[j]) > PIXEL_TOLERANCE) {
                        size_t px = j / 3;
                        r = nn_error(why, why_size, -EBADMSG, "the image is not the decode of the last latent: pixel "
                                     "(%zu, %zu) channel %zu is %u, the decode %u", px % req->width,
                                     px / req->width, j % 3, img.rgb[j], rgb[j]);
                        goto out;
                }
        /* What execute() writes and nothing else: the parameters, which
         * start with the prompt, and the software. */
        for (size_t i = 0; i < img.n_text; i++)
                if (!((strcmp(img.text[i].key, "parameters") == 0 &&
                       strncmp(img.text[i].value, req->prompt, prompt_len) == 0 &&
                       img.text[i].value[prompt_len] == '\n') ||
                      (strcmp(img.text[i].key, "Software") == 0 &&
                       strcmp(img.text[i].value, "SwarmHarness imagegen") == 0)) ||
                    img.n_text > 2) {
                        r = nn_error(why, why_size, -EBADMSG, "the image carries text the generation did not write "
                                     "(a \"%.40s\" chunk)", img.text[i].key);
                        goto out;
                }
        r = 0;
out:
        sd_png_image_free(&img);
        sd_denoiser_free(den);
        free(rgb);
        free(buf);
        return r;
}

/* A check job's result (check-verdict, check-root) as a requester without
 * the model sees it, and whether it agrees with the producer's. */
static int verify_by_check(struct swarm_job *job, const struct swarm_values *proof) {
        const void *root, *check_root;
        size_t size, check_size;
        const char *verdict;

        if (swarm_values_get_string(proof, "check.check-verdict", &verdict) < 0) {
                swarm_job_set_error(job, "this node holds no copy of the model: another provider of it must check "
                                    "the result");
                return -EREMOTE;
        }
        if (strcmp(verdict, "ok") != 0) {
                swarm_job_set_error(job, "an independent check of the result failed: %s", verdict);
                return -EBADMSG;
        }
        if (swarm_values_get_bytes(proof, "trajectory-root", &root, &size) < 0 || size != TRAJ_HASH_SIZE ||
            swarm_values_get_bytes(proof, "check.check-root", &check_root, &check_size) < 0 ||
            check_size != TRAJ_HASH_SIZE || memcmp(root, check_root, TRAJ_HASH_SIZE) != 0) {
                swarm_job_set_error(job, "the check was of another trajectory than the one the result commits to");
                return -EBADMSG;
        }
        return 0;
}

static int imagegen_verify(void *state, struct swarm_job *job) {
        struct imagegen *t = state;
        const struct swarm_values *in = swarm_job_inputs(job), *out = swarm_job_outputs(job);
        const struct swarm_values *proof = swarm_job_proof(job);
        struct request req;
        struct swarm_tensor traj;
        const void *id, *root, *png;
        size_t id_size, root_size, png_size;
        const char *verdict;
        int64_t seed, failed_step;
        bool seeded;
        char why[512] = "";
        int r;

        /* A check job's own result (told by its inputs, which a submitter
         * cannot forge: check.* is reserved to the daemon; a result's
         * outputs could say anything): a verdict and the root it checked,
         * whether it agrees is verify_by_check()'s. */
        if (swarm_values_get_tensor(in, "check.trajectory", &traj) == 0) {
                if (swarm_values_get_string(out, "check-verdict", &verdict) < 0 ||
                    swarm_values_get_bytes(out, "check-root", &root, &root_size) < 0 || root_size != TRAJ_HASH_SIZE ||
                    swarm_values_get_int(out, "check-failed-step", &failed_step) < 0) {
                        swarm_job_set_error(job, "the check's result lacks check-verdict, check-root or "
                                            "check-failed-step");
                        return -EBADMSG;
                }
                return 0;
        }
        r = parse_request(t, in, job, &req, &seeded);
        if (r < 0)
                return -EBADMSG;
        if (!proof || swarm_values_get_bytes(proof, "trajectory-root", &root, &root_size) < 0 ||
            root_size != TRAJ_HASH_SIZE || swarm_values_get_bytes(proof, "model-id", &id, &id_size) < 0 ||
            id_size != MODEL_ID_SIZE) {
                swarm_job_set_error(job, "the proof lacks trajectory-root or model-id");
                return -EBADMSG;
        }
        r = check_result_shape(job, &req, seeded, out, root, &traj);
        if (r < 0)
                return r;
        if (!t->unet)
                return verify_by_check(job, proof);
        if (memcmp(id, t->model_id, MODEL_ID_SIZE) != 0) {
                char hex[2 * MODEL_ID_SIZE + 1];

                sodium_bin2hex(hex, sizeof(hex), id, MODEL_ID_SIZE);
                swarm_job_set_error(job, "the provider ran model-id %.16s…, not %s (%.16s…) that it was chosen for",
                                    hex, t->name, t->model_id_hex);
                return -EBADMSG;
        }
        if (swarm_values_get_bytes(out, "image", &png, &png_size) < 0 ||
            swarm_values_get_int(out, "seed", &seed) < 0) {
                swarm_job_set_error(job, "the result lacks image or seed");
                return -EBADMSG;
        }
        req.seed = (uint64_t) seed;
        r = check_with_model(t, &req, req.seed, &traj, png, png_size, -1, &failed_step, why, sizeof(why));
        if (r < 0)
                swarm_job_set_error(job, "%s", why[0] ? why : "cannot verify here");
        return r;
}

/* A check job: the inputs plus check.trajectory, check.image, … (another
 * provider's result); outputs check-verdict ("ok" or why not), check-root,
 * the root of the trajectory it checked, and check-failed-step (the step
 * that did not re-run, or -1).  A second checker, asked because a first
 * disagreed with the producer, is given that step as
 * check.first.check-failed-step and re-runs it besides its own picks: a
 * verdict from random picks would otherwise be overturned by a second
 * checker that happened to pick only honest steps. */
static int execute_check(struct imagegen *t, struct swarm_job *job) {
        const struct swarm_values *in = swarm_job_inputs(job);
        struct swarm_values *claimed = swarm_values_new(), *out = swarm_job_outputs(job);
        struct swarm_tensor traj, latent;
        struct request req;
        const void *png;
        size_t png_size, n;
        int64_t v, forced = -1, failed = -1;
        bool seeded;
        uint8_t root[TRAJ_HASH_SIZE];
        char why[512] = "ok";
        int r;

        if (!claimed)
                return -ENOMEM;
        (void) swarm_values_get_int(in, "check.first.check-failed-step", &forced);
        r = parse_request(t, in, job, &req, &seeded);
        if (r < 0)
                goto out;
        /* The claimed result, as check_result_shape() reads a result. */
        if (swarm_values_get_tensor(in, "check.trajectory", &traj) < 0 || traj.dtype != SWARM_DTYPE_F32 ||
            swarm_values_get_bytes(in, "check.image", &png, &png_size) < 0) {
                swarm_job_set_error(job, "a check needs check.trajectory (f32), check.image and check.width, "
                                    "check.height, check.steps, check.seed: the result to check");
                r = -EINVAL;
                goto out;
        }
        n = traj.n_elements;
        {
                struct swarm_tensor copy;

                if ((r = swarm_values_add_tensor(claimed, "trajectory", SWARM_DTYPE_F32, traj.ndim, traj.shape,
                                                 &copy)) < 0)
                        goto out;
                memcpy(copy.data, traj.data, traj.size);
                if (traj.ndim == 4 && traj.shape[0] >= 1) {
                        if ((r = swarm_values_add_tensor(claimed, "latent", SWARM_DTYPE_F32, 3, traj.shape + 1,
                                                         &latent)) < 0)
                                goto out;
                        memcpy(latent.data, (const float *) traj.data + (n - latent.n_elements),
                               latent.n_elements * sizeof(float));
                }
        }
        static const char *const ints[] = { "width", "height", "steps", "seed" };
        for (size_t i = 0; i < 4; i++) {
                char name[32];

                snprintf(name, sizeof(name), "check.%s", ints[i]);
                if (swarm_values_get_int(in, name, &v) == 0 && (r = swarm_values_set_int(claimed, ints[i], v)) < 0)
                        goto out;
        }
        r = check_result_shape(job, &req, seeded, claimed, NULL, &traj);
        if (r < 0) {
                r = 0;
                snprintf(why, sizeof(why), "the result is malformed");
        } else {
                (void) swarm_values_get_int(claimed, "seed", &v);
                r = check_with_model(t, &req, (uint64_t) v, &traj, png, png_size, forced, &failed, why,
                                     sizeof(why));
                if (r == -EBADMSG)
                        r = 0;          /* a verdict, not a failure of the check */
                else if (r < 0) {
                        swarm_job_set_error(job, "cannot check: %s", why);
                        goto out;
                } else
                        snprintf(why, sizeof(why), "ok");
        }
        if ((r = traj_root_of(traj.data, traj.shape[0], n / traj.shape[0], root)) < 0 ||
            (r = swarm_values_set_string(out, "check-verdict", why)) < 0 ||
            (r = swarm_values_set_bytes(out, "check-root", root, sizeof(root))) < 0 ||
            (r = swarm_values_set_int(out, "check-failed-step", failed)) < 0)
                goto out;
        t->have_root = false;
out:
        swarm_values_free(claimed);
        return r;
}

static int imagegen_execute_any(void *state, struct swarm_job *job) {
        struct imagegen *t = state;
        struct swarm_tensor traj;

        if (t->unet && swarm_values_get_tensor(swarm_job_inputs(job), "check.trajectory", &traj) == 0)
                return execute_check(t, job);
        return imagegen_execute(state, job);
}

static const struct swarm_param imagegen_inputs[] = {
        { "prompt", SWARM_VALUE_STRING, 0, 0, NULL, 0, "what to draw" },
        { "negative_prompt", SWARM_VALUE_STRING, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "what not to draw" },
        { "width", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "pixels, a multiple of 64 (512)" },
        { "height", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "pixels, a multiple of 64 (512)" },
        { "steps", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "sampler steps (20)" },
        { "guidance", 0, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "classifier-free guidance scale, a number (7.5)" },
        { "seed", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "the noise's seed (random)" },
        { "sampler", SWARM_VALUE_STRING, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "euler or ddim (euler)" },
        { "check.trajectory", SWARM_VALUE_TENSOR, SWARM_DTYPE_F32, 4, "steps+1×4×h/8×w/8", SWARM_PARAM_OPTIONAL,
          "check job: the trajectory to check" },
        { "check.image", SWARM_VALUE_BYTES, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "check job: the PNG to check" },
        { "check.width", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "check job: the result's width" },
        { "check.height", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "check job: the result's height" },
        { "check.steps", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "check job: the result's steps" },
        { "check.seed", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "check job: the result's seed" },
        { "check.first.check-failed-step", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL,
          "second check job: the step a first checker found wrong" },
        {}
};

static const struct swarm_param imagegen_outputs[] = {
        { "image", SWARM_VALUE_BYTES, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "the PNG" },
        { "latent", SWARM_VALUE_TENSOR, SWARM_DTYPE_F32, 3, "4×h/8×w/8", SWARM_PARAM_OPTIONAL,
          "the latent the VAE decoded" },
        { "trajectory", SWARM_VALUE_TENSOR, SWARM_DTYPE_F32, 4, "steps+1×4×h/8×w/8", SWARM_PARAM_OPTIONAL,
          "the latent before the first step and after each" },
        { "width", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "pixels" },
        { "height", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "pixels" },
        { "steps", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "steps run" },
        { "seed", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "the seed used" },
        { "check-verdict", SWARM_VALUE_STRING, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "check job: ok, or why not" },
        { "check-root", SWARM_VALUE_BYTES, 0, 0, NULL, SWARM_PARAM_OPTIONAL,
          "check job: the root of the trajectory checked" },
        { "check-failed-step", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL,
          "check job: the step that did not re-run (0-based), or -1" },
        {}
};

static const struct swarm_skill imagegen_skill = {
        .abi_version = SWARM_SKILL_ABI_VERSION,
        .struct_size = sizeof(struct swarm_skill),
        .name = "imagegen",
        .version = "1.0.0",
        .description = "Stable Diffusion 1.x/2.x image generation from a safetensors checkpoint, verified by "
                       "re-running secret steps",
        .init = imagegen_init,
        .fini = imagegen_fini,
        .advertise = imagegen_advertise,
        .price = imagegen_price,
        .execute = imagegen_execute_any,
        .prove = imagegen_prove,
        .verify = imagegen_verify,
        .inputs = imagegen_inputs,
        .outputs = imagegen_outputs,
};

SWARM_SKILL_EXPORT const struct swarm_skill *swarm_skill_entry(void) {
        return &imagegen_skill;
}

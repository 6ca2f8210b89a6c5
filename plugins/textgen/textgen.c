/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The "textgen" skill: text generation with a Llama-family model from a
 * GGUF file, on the shared inference engine (plugins/nn).
 *
 * Config:  model (string, path to a .gguf; required), threads (int, default:
 *          all CPUs), ctx (int, context positions, default min(4096, the
 *          model's)), batch (int, prefill tokens per step, default 64),
 *          device ("cpu", or "cuda": the CUDA backend, weights in GPU
 *          memory as f16, 2 bytes per parameter; refused with the reason
 *          when the build, the CUDA libraries or the GPU are missing),
 *          gpu (int, the CUDA device index for device cuda, default 0),
 *          memory-limit (int, bytes; default: physical memory),
 *          price-per-ktoken (int, micro-credits per 1000 tokens of prompt +
 *          max_tokens; default 1 per 100M parameters, at least 1),
 *          verify-tolerance-milli (int, logits × 1000; default 500),
 *          commit-tolerance-milli (int, logits × 1000; default 100: how far
 *          a committed logit may be from the verifier's),
 *          chat-template ("llama2", "llama3", "chatml", "mistral": overrides
 *          what the file's tokenizer.chat_template says),
 *          testing-cheat and testing-claim-model (for tests only: a
 *          provider that cheats in one of the ways verification must catch;
 *          see enum cheat).
 * Inputs:  prompt (string) | prompt_tokens (i32 tensor, used as given) |
 *          messages (string, a JSON list of {"role", "content"}), and
 *          optionally max_tokens (int, default 128), temperature, top_p,
 *          min_p, repeat_penalty (strings holding a decimal, or ints), top_k
 *          (int), seed (int), stop (string: one stop sequence, or a JSON
 *          list of up to 4), model (string: the model identity or name the
 *          requester wants; a provider with another model refuses).
 * Outputs: text (string), tokens (i32 tensor, the generated ids only),
 *          prompt_tokens_count (int), finish_reason ("stop", "length"),
 *          prefill_usec and decode_usec (ints).
 * Proof:   model-id (bytes, SHA-256 of the whole GGUF file), context (int,
 *          the provider's context size: where "length" stopped), and the
 *          commitments of commit.h: commit-ids (i32 tensor n×COMMIT_K) and
 *          commit-logits (f32 tensor n×COMMIT_K), the largest raw logits at
 *          each generated position.
 * Verify:  teacher-forced: one batched forward pass over prompt + output on
 *          the verifier's copy of the same model (same identity), checking
 *          that each generated token is one the sampling rule could pick
 *          (greedy: the argmax within the tolerance; sampled: inside top-k /
 *          top-p / min-p), that each position's commitment matches the
 *          verifier's logits, and that the text is what the tokens decode
 *          to. */

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <swarm/skill.h>

#include "chat-template.h"
#include "commit.h"
#include "gguf.h"
#include "llama.h"
#include "nn-quant.h"
#include "sampler.h"
#include "tokenizer.h"
#include "utf8.h"

#define DEFAULT_CTX             4096
#define DEFAULT_BATCH           64
#define DEFAULT_MAX_TOKENS      128
#define DEFAULT_TOLERANCE_MILLI 500
/* Measured on tiny random-weight models (tests/test-commit.c): honest CPU
 * runs differ by under 10^-5 logits, a Q4_0 copy of an F16 model by at
 * least 0.28 in every 16 tokens, other weights by several logits.  A GPU's
 * f16 activations move logits by about 2^-11 relatively: well inside. */
#define DEFAULT_COMMIT_TOLERANCE_MILLI 100
#define MAX_STOPS               4
#define STOP_MAX_LEN            64
#define BENCH_TOKENS            16
#define MODEL_ID_SIZE           32
/* The text output travels as a worker-protocol string (64 KiB at most):
 * generation stops, as "length", before its UTF-8 would pass this. */
#define TEXT_MAX                60000
/* How close to TEXT_MAX a "length" result must be when it stopped short of
 * max_tokens (the next token's text would not have fitted). */
#define TEXT_MARGIN             4096

/* How a provider configured to cheat (testing-cheat, testing-claim-model)
 * lies, so that tests on real daemons can show each is caught. */
enum cheat {
        CHEAT_NONE,
        CHEAT_IGNORE_PROMPT,    /* generates from the first prompt token alone */
        CHEAT_RANDOM_TOKENS,    /* returns random tokens (text to match) */
        CHEAT_TRUNCATE,         /* stops after half the tokens, saying "stop" */
        CHEAT_FORGE_CHECK,      /* adds a check of its own ("ok", its own commitments) to its proof */
        CHEAT_BLANK_COMMITMENTS,        /* commits to nothing: ids -1 on every row */
};

struct textgen {
        struct gguf *file;
        enum cheat cheat;
        struct nn_backend *be;
        struct llama_model *model;
        struct llama_context *ctx;
        struct tokenizer *tok;
        bool on_gpu;                    /* device: cuda */
        bool have_template;
        enum chat_template template;
        char template_error[160];       /* why messages cannot be formatted, when !have_template */

        uint8_t model_id[MODEL_ID_SIZE];
        char model_id_hex[2 * MODEL_ID_SIZE + 1];
        char name[3 * 100 + 1];         /* general.name, valid UTF-8 */
        const char *quant;
        uint64_t price_per_ktoken;
        float tolerance;
        float commit_tolerance;
        uint64_t tokens_per_sec;        /* measured decode speed */
        uint64_t memory;                /* weights + context, bytes */
        float *scratch;                 /* n_vocab floats for verify */
        /* The last execute()'s commitments, for prove(): COMMIT_K per
         * generated token. */
        int32_t *commit_ids;
        float *commit_logits;
        size_t commit_n;
};

/* A job's inputs, validated. */
struct request {
        int32_t *prompt;
        size_t n_prompt;
        uint32_t max_tokens;
        struct sampler_params sp;
        char stops[MAX_STOPS][STOP_MAX_LEN + 1];
        size_t n_stops;
};

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000) + (uint64_t) ts.tv_nsec / 1000u;
}

static void request_done(struct request *req) {
        free(req->prompt);
        req->prompt = NULL;
}

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
                swarm_log(LOG_ERR, "textgen: setting \"%s\" must be an integer", key);
                return -EINVAL;
        }
        if (i < min || i > max) {
                swarm_log(LOG_ERR, "textgen: setting \"%s\" is %" PRIi64 ", must be between %" PRIi64 " and %" PRIi64,
                          key, i, min, max);
                return -EINVAL;
        }
        *ret = i;
        return 0;
}

/* The type most of the weight bytes are stored in: what people call the
 * file's quantisation ("q4_K"). */
static const char *dominant_type(const struct gguf *g) {
        uint64_t bytes[32] = { 0 };
        uint32_t best = 0;

        for (size_t i = 0; i < gguf_tensor_count(g); i++) {
                const struct gguf_tensor *t = gguf_tensor_at(g, i);
                if (t->ndim >= 2 && (uint32_t) t->type < 32)
                        bytes[t->type] += t->size;
        }
        for (uint32_t i = 1; i < 32; i++)
                if (bytes[i] > bytes[best])
                        best = i;
        return nn_type_name(best) ?: "f32";
}

static uint64_t physical_memory(void) {
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);

        return pages > 0 && page > 0 ? (uint64_t) pages * (uint64_t) page : UINT64_MAX;
}

/* Decodes BENCH_TOKENS tokens after a one-token prompt: the tokens/s that
 * advertise() offers and routers divide jobs by. */
static uint64_t measure_decode(struct textgen *t) {
        const float *logits;
        int32_t tok = tokenizer_bos(t->tok) >= 0 ? tokenizer_bos(t->tok) : 0;
        size_t n = llama_context_n_ctx(t->ctx) < BENCH_TOKENS + 1 ? llama_context_n_ctx(t->ctx) - 1 : BENCH_TOKENS;
        uint64_t start;

        llama_context_rewind(t->ctx, 0);
        if (n == 0 || llama_eval(t->ctx, &tok, 1, false, &logits) < 0)
                return 1;
        start = now_usec();
        for (size_t i = 0; i < n; i++) {
                uint32_t n_vocab = llama_model_hparams(t->model)->n_vocab;
                size_t best = 0;
                for (size_t j = 1; j < n_vocab; j++)
                        if (logits[j] > logits[best])
                                best = j;
                tok = (int32_t) best;
                if (llama_eval(t->ctx, &tok, 1, false, &logits) < 0)
                        return 1;
        }
        uint64_t el = now_usec() - start;
        llama_context_rewind(t->ctx, 0);
        return el > 0 ? (uint64_t) n * UINT64_C(1000000) / el : 1;
}

static void textgen_fini(void *state) {
        struct textgen *t = state;

        if (!t)
                return;
        free(t->scratch);
        free(t->commit_ids);
        free(t->commit_logits);
        tokenizer_free(t->tok);
        llama_context_free(t->ctx);
        llama_model_free(t->model);
        nn_backend_free(t->be);
        gguf_close(t->file);
        free(t);
}

static int textgen_init(const struct swarm_values *config, void **state) {
        struct textgen *t;
        const char *path, *device = "cpu", *tmpl_name = NULL;
        char err[512];
        int64_t threads, ctx, batch, limit, price, tol, commit_tol, gpu;
        const char *cheat_name = NULL, *claim_path = NULL;
        enum cheat cheat = CHEAT_NONE;
        int64_t verify_only = 0;
        struct gguf_string s;
        uint64_t data_size;
        const void *data;
        int r;

        if (sodium_init() < 0)
                return -EIO;
        r = swarm_values_get_string(config, "model", &path);
        if (r == -ENOENT && swarm_values_get_int(config, "verify-only", &verify_only) == 0 && verify_only == 1)
                /* A worker the host started only to verify, on a node
                 * without the model: results are checked by check jobs on
                 * other providers of it (verify_by_check()). */
                path = NULL;
        else if (r < 0) {
                swarm_log(LOG_ERR, "textgen: setting \"model\" (the path of a .gguf file) is %s",
                          r == -ENOENT ? "missing" : "not a string");
                return -EINVAL;
        }
        r = swarm_values_get_string(config, "device", &device);
        if (r < 0 && r != -ENOENT) {
                swarm_log(LOG_ERR, "textgen: setting \"device\" must be a string");
                return -EINVAL;
        }
        if (strcmp(device, "cpu") != 0 && strcmp(device, "cuda") != 0) {
                swarm_log(LOG_ERR, "textgen: device \"%s\" is not one of cpu, cuda", device);
                return -EINVAL;
        }
        r = swarm_values_get_string(config, "chat-template", &tmpl_name);
        if (r < 0 && r != -ENOENT) {
                swarm_log(LOG_ERR, "textgen: setting \"chat-template\" must be a string");
                return -EINVAL;
        }
        r = swarm_values_get_string(config, "testing-cheat", &cheat_name);
        if (r >= 0) {
                if (strcmp(cheat_name, "ignore-prompt") == 0)
                        cheat = CHEAT_IGNORE_PROMPT;
                else if (strcmp(cheat_name, "random-tokens") == 0)
                        cheat = CHEAT_RANDOM_TOKENS;
                else if (strcmp(cheat_name, "truncate") == 0)
                        cheat = CHEAT_TRUNCATE;
                else if (strcmp(cheat_name, "forge-check") == 0)
                        cheat = CHEAT_FORGE_CHECK;
                else if (strcmp(cheat_name, "blank-commitments") == 0)
                        cheat = CHEAT_BLANK_COMMITMENTS;
                else {
                        swarm_log(LOG_ERR, "textgen: testing-cheat \"%s\" is not one of ignore-prompt, "
                                  "random-tokens, truncate, forge-check, blank-commitments", cheat_name);
                        return -EINVAL;
                }
                swarm_log(LOG_WARNING, "textgen: testing-cheat=%s: this provider returns wrong results on purpose",
                          cheat_name);
        }
        r = swarm_values_get_string(config, "testing-claim-model", &claim_path);
        if (r >= 0)
                swarm_log(LOG_WARNING, "textgen: testing-claim-model: this provider claims to serve %s, which it "
                          "does not", claim_path);
        if ((r = config_int(config, "threads", 0, 1024, 0, &threads)) < 0 ||
            (r = config_int(config, "gpu", 0, 1023, 0, &gpu)) < 0 ||
            (r = config_int(config, "ctx", 16, 1 << 20, DEFAULT_CTX, &ctx)) < 0 ||
            (r = config_int(config, "batch", 1, 4096, DEFAULT_BATCH, &batch)) < 0 ||
            (r = config_int(config, "memory-limit", 1, INT64_MAX, 0, &limit)) < 0 ||
            (r = config_int(config, "price-per-ktoken", 1, INT64_MAX, 0, &price)) < 0 ||
            (r = config_int(config, "verify-tolerance-milli", 0, 100000, DEFAULT_TOLERANCE_MILLI, &tol)) < 0 ||
            (r = config_int(config, "commit-tolerance-milli", 0, 100000, DEFAULT_COMMIT_TOLERANCE_MILLI,
                            &commit_tol)) < 0)
                return r;

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->tolerance = (float) tol / 1000.0f;
        t->commit_tolerance = (float) commit_tol / 1000.0f;
        if (!path) {
                snprintf(t->name, sizeof(t->name), "(no model)");
                swarm_log(LOG_INFO, "textgen: no model here: results from the swarm are checked by other providers "
                          "of their model (check jobs)");
                *state = t;
                return 0;
        }

        r = gguf_open(path, &t->file, err, sizeof(err));
        if (r < 0) {
                swarm_log(LOG_ERR, "textgen: %s", err);
                goto fail;
        }
        r = tokenizer_load(t->file, &t->tok, err, sizeof(err));
        if (r < 0) {
                swarm_log(LOG_ERR, "textgen: %s", err);
                goto fail;
        }
        t->on_gpu = strcmp(device, "cuda") == 0;
        if (t->on_gpu) {
                r = nn_cuda_backend_new((int) gpu, &t->be, err, sizeof(err));
                if (r < 0) {
                        swarm_log(LOG_ERR, "textgen: device cuda (gpu %" PRIi64 ") is not available: %s", gpu, err);
                        goto fail;
                }
        } else {
                r = nn_cpu_backend_new((unsigned) threads, &t->be);
                if (r < 0) {
                        swarm_log(LOG_ERR, "textgen: cannot start the CPU backend: %s", strerror(-r));
                        goto fail;
                }
        }
        r = llama_model_load(t->file, t->be, &t->model, err, sizeof(err));
        if (r < 0) {
                swarm_log(LOG_ERR, "textgen: %s", err);
                goto fail;
        }
        const struct llama_hparams *hp = llama_model_hparams(t->model);
        if (tokenizer_n_vocab(t->tok) != hp->n_vocab) {
                swarm_log(LOG_ERR, "textgen: %s: the tokenizer has %zu tokens, the embedding %" PRIu32, path,
                          tokenizer_n_vocab(t->tok), hp->n_vocab);
                r = -EBADMSG;
                goto fail;
        }

        /* The context is what the file was trained for, capped by config. */
        if ((uint64_t) ctx > hp->n_ctx_train)
                ctx = hp->n_ctx_train;
        t->memory = llama_model_weight_bytes(t->model) + llama_context_bytes(hp, (size_t) ctx, (size_t) batch);
        uint64_t budget = limit > 0 ? (uint64_t) limit : physical_memory();
        if (t->memory > budget) {
                swarm_log(LOG_ERR, "textgen: %s needs %" PRIu64 " MiB (weights %" PRIu64 " MiB, context of %" PRIi64
                          " positions %" PRIu64 " MiB) but the memory limit is %" PRIu64 " MiB%s", path,
                          t->memory >> 20, llama_model_weight_bytes(t->model) >> 20, ctx,
                          llama_context_bytes(hp, (size_t) ctx, (size_t) batch) >> 20, budget >> 20,
                          limit > 0 ? " (memory-limit)" : " (physical memory)");
                r = -E2BIG;
                goto fail;
        }
        r = llama_context_new(t->model, (size_t) ctx, (size_t) batch, &t->ctx);
        if (r < 0) {
                swarm_log(LOG_ERR, "textgen: cannot allocate a context of %" PRIi64 " positions: %s", ctx,
                          strerror(-r));
                goto fail;
        }
        t->scratch = malloc(hp->n_vocab * sizeof(float));
        if (!t->scratch) {
                r = -ENOMEM;
                goto fail;
        }

        /* The model's identity: what two providers of "the same model" must
         * agree on, whatever the file is called. */
        if (claim_path) {
                /* The lie of testing-claim-model: another file's identity. */
                struct gguf *claimed;

                r = gguf_open(claim_path, &claimed, err, sizeof(err));
                if (r < 0) {
                        swarm_log(LOG_ERR, "textgen: testing-claim-model: %s", err);
                        goto fail;
                }
                data = gguf_file_bytes(claimed, &data_size);
                crypto_hash_sha256(t->model_id, data, data_size);
                gguf_close(claimed);
        } else {
                data = gguf_file_bytes(t->file, &data_size);
                crypto_hash_sha256(t->model_id, data, data_size);
        }
        t->cheat = cheat;
        sodium_bin2hex(t->model_id_hex, sizeof(t->model_id_hex), t->model_id, sizeof(t->model_id));

        if (gguf_get_string(t->file, "general.name", &s) == 0 && s.len > 0) {
                /* Cut at 100 bytes, maybe inside a character: the advert
                 * must be UTF-8. */
                size_t n = strnlen(s.data, s.len < 100 ? s.len : 100);
                t->name[utf8_sanitize(s.data, n, t->name)] = '\0';
        } else {
                const char *base = strrchr(path, '/');
                snprintf(t->name, sizeof(t->name), "%s", base ? base + 1 : path);
        }
        t->quant = dominant_type(t->file);
        t->price_per_ktoken = price > 0 ? (uint64_t) price
                                        : (llama_model_n_params(t->model) + 99999999) / 100000000;

        if (tmpl_name) {
                if (chat_template_from_name(tmpl_name, &t->template) < 0) {
                        swarm_log(LOG_ERR, "textgen: chat-template \"%s\" is not one of llama2, llama3, chatml, "
                                  "mistral", tmpl_name);
                        r = -EINVAL;
                        goto fail;
                }
                t->have_template = true;
        } else if (gguf_get_string(t->file, "tokenizer.chat_template", &s) == 0) {
                char *jinja = gguf_strdup(s);
                if (!jinja) {
                        r = -ENOMEM;
                        goto fail;
                }
                t->have_template = chat_template_detect(jinja, &t->template) == 0;
                free(jinja);
                if (!t->have_template)
                        snprintf(t->template_error, sizeof(t->template_error),
                                 "the model's chat template is not one this provider knows (llama2, llama3, "
                                 "chatml, mistral); send \"prompt\" instead");
        } else
                snprintf(t->template_error, sizeof(t->template_error),
                         "the model has no chat template; send \"prompt\" instead");

        t->tokens_per_sec = measure_decode(t);
        if (t->on_gpu)
                swarm_log(LOG_INFO, "textgen: %s (%s, %" PRIu64 "M parameters, %s, held as f16), context %" PRIi64
                          ", on %s, %" PRIu64 " tokens/s", t->name, llama_arch_name(hp->arch),
                          llama_model_n_params(t->model) / 1000000, t->quant, ctx, t->be->ops->name,
                          t->tokens_per_sec);
        else
                swarm_log(LOG_INFO, "textgen: %s (%s, %" PRIu64 "M parameters, %s), context %" PRIi64 ", %u threads, "
                          "%s kernels, %" PRIu64 " tokens/s", t->name, llama_arch_name(hp->arch),
                          llama_model_n_params(t->model) / 1000000, t->quant, ctx, nn_cpu_backend_threads(t->be),
                          nn_simd_name(), t->tokens_per_sec);
        *state = t;
        return 0;
fail:
        textgen_fini(t);
        return r;
}

static int textgen_advertise(void *state, struct swarm_values *advert) {
        const struct textgen *t = state;
        const struct llama_hparams *hp;
        int r;

        /* What a check job needs of a result (check.<name> inputs). */
        r = swarm_values_set_string(advert, "check-inputs",
                                    "tokens,text,finish_reason,generated_tokens_count,context");
        if (r < 0)
                return r;
        if (!t->model) {
                /* Verify-only: no variant, so routing is by the job's
                 * "model" input; prices per ktoken, as providers'. */
                if ((r = swarm_values_set_string(advert, "unit", "token")) < 0 ||
                    (r = swarm_values_set_int(advert, "price", 1)) < 0 ||
                    (r = swarm_values_set_string(advert, "price-unit", "ktoken")) < 0)
                        return r;
                return 0;
        }
        hp = llama_model_hparams(t->model);

        /* "cpu", or "cuda:<device name>". */
        if ((r = swarm_values_set_string(advert, "device", t->be->ops->name)) < 0 ||
            (r = swarm_values_set_string(advert, "unit", "token")) < 0 ||
            (r = swarm_values_set_int(advert, "throughput", (int64_t) t->tokens_per_sec)) < 0 ||
            (r = swarm_values_set_int(advert, "price", (int64_t) t->price_per_ktoken)) < 0 ||
            (r = swarm_values_set_string(advert, "price-unit", "ktoken")) < 0 ||
            (r = swarm_values_set_string(advert, "model", t->name)) < 0 ||
            (r = swarm_values_set_string(advert, "model-id", t->model_id_hex)) < 0 ||
            /* Requesters route only to providers of the model they verify with. */
            (r = swarm_values_set_string(advert, "variant", t->model_id_hex)) < 0 ||
            (r = swarm_values_set_string(advert, "architecture", llama_arch_name(hp->arch))) < 0 ||
            (r = swarm_values_set_int(advert, "parameters", (int64_t) llama_model_n_params(t->model))) < 0 ||
            (r = swarm_values_set_string(advert, "quantization", t->quant)) < 0 ||
            (r = swarm_values_set_int(advert, "context", (int64_t) llama_context_n_ctx(t->ctx))) < 0 ||
            (r = swarm_values_set_string(advert, "kernels", t->on_gpu ? "cublas-f16" : nn_simd_name())) < 0 ||
            (r = swarm_values_set_string(advert, "chat-template", t->have_template ? chat_template_name(t->template)
                                                                                   : "none")) < 0)
                return r;
        return swarm_values_set_int(advert, "memory", (int64_t) t->memory);
}

/* A decimal parameter given as a string ("0.7") or a whole number. */
static int input_float(const struct swarm_values *in, struct swarm_job *job, const char *name, float def,
                       float *ret) {
        const char *s;
        int64_t i;
        char *end;
        double d;

        if (swarm_values_get_int(in, name, &i) == 0) {
                *ret = (float) i;
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
                        *ret = (float) d;
                        return 0;
                }
                swarm_job_set_error(job, "input \"%s\" is \"%.32s\", not a number", name, s);
                return -EINVAL;
        default:
                swarm_job_set_error(job, "input \"%s\" must be a number (a string such as \"0.7\", or an int)", name);
                return -EINVAL;
        }
}

static int input_uint(const struct swarm_values *in, struct swarm_job *job, const char *name, int64_t max,
                      int64_t def, int64_t *ret) {
        int64_t i;
        int r;

        r = swarm_values_get_int(in, name, &i);
        if (r == -ENOENT) {
                *ret = def;
                return 0;
        }
        if (r < 0 || i < 0 || i > max) {
                swarm_job_set_error(job, "input \"%s\" must be an integer between 0 and %" PRIi64, name, max);
                return -EINVAL;
        }
        *ret = i;
        return 0;
}

/* Whether text holds the text of a control token ("<|im_end|>"): the
 * formatted chat is tokenised with control tokens recognised, so such text
 * in a message would forge turns.  1, 0, or -ENOMEM. */
static int forges_control_tokens(const struct textgen *t, const char *text) {
        int32_t *plain = NULL, *special = NULL;
        size_t n_plain, n_special;
        int r;

        r = tokenizer_encode(t->tok, text, strlen(text), false, false, &plain, &n_plain);
        if (r >= 0)
                r = tokenizer_encode(t->tok, text, strlen(text), false, true, &special, &n_special);
        if (r >= 0)
                r = n_plain != n_special || memcmp(plain, special, n_plain * sizeof(int32_t)) != 0;
        free(plain);
        free(special);
        return r;
}

/* "messages": a JSON list of {"role": …, "content": …} through the model's
 * chat template into prompt text. */
static int format_messages(const struct textgen *t, struct swarm_job *job, const char *json, char **ret) {
        struct chat_message *msgs = NULL;
        struct json_tokener *tk;
        json_object *root;
        char err[256];
        size_t n;
        int r;

        if (!t->have_template) {
                swarm_job_set_error(job, "input \"messages\": %s", t->template_error);
                return -EINVAL;
        }
        tk = json_tokener_new();
        if (!tk)
                return -ENOMEM;
        root = json_tokener_parse_ex(tk, json, (int) strnlen(json, INT_MAX));
        if (!root || json_tokener_get_error(tk) != json_tokener_success) {
                swarm_job_set_error(job, "input \"messages\" is not valid JSON: %s at offset %zu",
                                    json_tokener_error_desc(json_tokener_get_error(tk)), json_tokener_get_parse_end(tk));
                json_object_put(root);
                json_tokener_free(tk);
                return -EINVAL;
        }
        json_tokener_free(tk);
        if (!json_object_is_type(root, json_type_array) || json_object_array_length(root) == 0) {
                swarm_job_set_error(job, "input \"messages\" must be a non-empty JSON list of {\"role\", \"content\"}");
                r = -EINVAL;
                goto out;
        }
        n = json_object_array_length(root);
        msgs = calloc(n, sizeof(*msgs));
        if (!msgs) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                json_object *m = json_object_array_get_idx(root, i), *role, *content;

                if (!json_object_is_type(m, json_type_object) ||
                    !json_object_object_get_ex(m, "role", &role) || !json_object_is_type(role, json_type_string) ||
                    !json_object_object_get_ex(m, "content", &content) ||
                    !json_object_is_type(content, json_type_string)) {
                        swarm_job_set_error(job, "input \"messages\": message %zu must have string \"role\" and "
                                            "\"content\"", i);
                        r = -EINVAL;
                        goto out;
                }
                msgs[i] = (struct chat_message) { json_object_get_string(role), json_object_get_string(content) };
                r = forges_control_tokens(t, msgs[i].content);
                if (r < 0)
                        goto out;
                if (r > 0) {
                        swarm_job_set_error(job, "input \"messages\": message %zu holds the text of a control token "
                                            "(such as <|im_end|>), which would forge a turn", i);
                        r = -EINVAL;
                        goto out;
                }
        }
        r = chat_template_apply(t->template, msgs, n, ret, err, sizeof(err));
        if (r == -EINVAL)
                swarm_job_set_error(job, "input \"messages\": %s", err);
out:
        free(msgs);
        json_object_put(root);
        return r;
}

static int parse_stops(struct swarm_job *job, const char *s, struct request *req) {
        json_object *root;

        if (s[0] != '[') {
                if (strlen(s) == 0 || strlen(s) > STOP_MAX_LEN) {
                        swarm_job_set_error(job, "input \"stop\" must be 1 to %d bytes", STOP_MAX_LEN);
                        return -EINVAL;
                }
                snprintf(req->stops[0], sizeof(req->stops[0]), "%s", s);
                req->n_stops = 1;
                return 0;
        }
        root = json_tokener_parse(s);
        if (!root || !json_object_is_type(root, json_type_array) || json_object_array_length(root) > MAX_STOPS) {
                swarm_job_set_error(job, "input \"stop\" must be a string or a JSON list of up to %d strings",
                                    MAX_STOPS);
                json_object_put(root);
                return -EINVAL;
        }
        for (size_t i = 0; i < json_object_array_length(root); i++) {
                json_object *e = json_object_array_get_idx(root, i);
                const char *str = json_object_get_string(e);

                if (!json_object_is_type(e, json_type_string) || strlen(str) == 0 || strlen(str) > STOP_MAX_LEN) {
                        swarm_job_set_error(job, "input \"stop\": entry %zu must be a string of 1 to %d bytes", i,
                                            STOP_MAX_LEN);
                        json_object_put(root);
                        return -EINVAL;
                }
                snprintf(req->stops[req->n_stops++], sizeof(req->stops[0]), "%s", str);
        }
        json_object_put(root);
        return 0;
}

static int parse_request(const struct textgen *t, const struct swarm_values *in, struct swarm_job *job,
                         struct request *req) {
        const struct llama_hparams *hp = llama_model_hparams(t->model);
        const char *prompt = NULL, *messages = NULL, *stop = NULL, *want = NULL;
        struct swarm_tensor pt;
        int have_tokens, sources;
        int64_t max_tokens, top_k, seed;
        char err[256];
        int r;

        *req = (struct request) { 0 };

        r = swarm_values_get_string(in, "model", &want);
        if (r == 0 && strcmp(want, t->model_id_hex) != 0 && strcmp(want, t->name) != 0) {
                swarm_job_set_error(job, "this provider serves %s (model-id %.16s…), not \"%.80s\"", t->name,
                                    t->model_id_hex, want);
                return -EINVAL;
        }

        have_tokens = swarm_values_get_tensor(in, "prompt_tokens", &pt) == 0;
        sources = have_tokens + (swarm_values_get_string(in, "prompt", &prompt) == 0) +
                  (swarm_values_get_string(in, "messages", &messages) == 0);
        if (sources != 1) {
                swarm_job_set_error(job, sources == 0 ? "one input of \"prompt\" (string), \"prompt_tokens\" (i32 "
                                                        "tensor) or \"messages\" (JSON string) is needed"
                                                      : "give only one of \"prompt\", \"prompt_tokens\" and "
                                                        "\"messages\"");
                return -EINVAL;
        }

        if ((r = input_uint(in, job, "max_tokens", 1 << 20, DEFAULT_MAX_TOKENS, &max_tokens)) < 0 ||
            (r = input_uint(in, job, "top_k", 1 << 30, 40, &top_k)) < 0 ||
            (r = input_uint(in, job, "seed", INT64_MAX, 0, &seed)) < 0)
                return r;
        req->sp = SAMPLER_PARAMS_DEFAULT;
        req->sp.top_k = (uint32_t) top_k;
        req->sp.seed = (uint64_t) seed;
        if ((r = input_float(in, job, "temperature", req->sp.temperature, &req->sp.temperature)) < 0 ||
            (r = input_float(in, job, "top_p", req->sp.top_p, &req->sp.top_p)) < 0 ||
            (r = input_float(in, job, "min_p", req->sp.min_p, &req->sp.min_p)) < 0 ||
            (r = input_float(in, job, "repeat_penalty", req->sp.repeat_penalty, &req->sp.repeat_penalty)) < 0)
                return r;
        if (sampler_params_check(&req->sp, err, sizeof(err)) < 0) {
                swarm_job_set_error(job, "%s", err);
                return -EINVAL;
        }
        r = swarm_values_get_string(in, "stop", &stop);
        if (r == 0 && (r = parse_stops(job, stop, req)) < 0)
                return r;
        if (r == -EMEDIUMTYPE) {
                swarm_job_set_error(job, "input \"stop\" must be a string");
                return -EINVAL;
        }

        if (have_tokens) {
                if (pt.dtype != SWARM_DTYPE_I32 || pt.ndim != 1) {
                        swarm_job_set_error(job, "input \"prompt_tokens\" must be a 1-D i32 tensor, not %s with %"
                                            PRIu32 " dimensions", swarm_dtype_name(pt.dtype) ?: "?", pt.ndim);
                        return -EINVAL;
                }
                for (uint64_t i = 0; i < pt.n_elements; i++) {
                        int32_t id = ((const int32_t *) pt.data)[i];
                        if (id < 0 || (uint32_t) id >= hp->n_vocab) {
                                swarm_job_set_error(job, "input \"prompt_tokens\"[%" PRIu64 "] is %" PRIi32
                                                    ", outside the vocabulary of %" PRIu32 " tokens", i, id,
                                                    hp->n_vocab);
                                return -EINVAL;
                        }
                }
                req->n_prompt = pt.n_elements;
                req->prompt = malloc((pt.n_elements ?: 1) * sizeof(int32_t));
                if (!req->prompt)
                        return -ENOMEM;
                memcpy(req->prompt, pt.data, pt.n_elements * sizeof(int32_t));
        } else {
                char *formatted = NULL;

                if (messages) {
                        r = format_messages(t, job, messages, &formatted);
                        if (r < 0)
                                return r;
                }
                /* Chat-formatted text holds control tokens on purpose; a
                 * plain prompt's text must not be able to forge them. */
                r = tokenizer_encode(t->tok, formatted ?: prompt, strlen(formatted ?: prompt),
                                     tokenizer_add_bos(t->tok), formatted != NULL, &req->prompt, &req->n_prompt);
                free(formatted);
                if (r < 0)
                        return r;
        }
        if (req->n_prompt == 0) {
                swarm_job_set_error(job, "the prompt is empty (and the model adds no BOS token)");
                request_done(req);
                return -EINVAL;
        }
        if (req->n_prompt + 1 > llama_context_n_ctx(t->ctx)) {
                swarm_job_set_error(job, "the prompt is %zu tokens, this provider's context holds %zu",
                                    req->n_prompt, llama_context_n_ctx(t->ctx));
                request_done(req);
                return -E2BIG;
        }
        req->max_tokens = (uint32_t) max_tokens;
        return 0;
}

static int textgen_price(void *state, const struct swarm_values *inputs, uint64_t *price) {
        const struct textgen *t = state;
        struct request req;
        uint64_t tokens, p;
        int r;

        if (!t->model) {
                /* No tokenizer: at most a token per byte of the prompt. */
                const char *s;
                struct swarm_tensor pt;
                int64_t max_tokens = DEFAULT_MAX_TOKENS;

                tokens = 0;
                if (swarm_values_get_string(inputs, "prompt", &s) == 0 ||
                    swarm_values_get_string(inputs, "messages", &s) == 0)
                        tokens = strlen(s) + 1;
                else if (swarm_values_get_tensor(inputs, "prompt_tokens", &pt) == 0)
                        tokens = pt.n_elements;
                (void) swarm_values_get_int(inputs, "max_tokens", &max_tokens);
                tokens += max_tokens > 0 ? (uint64_t) max_tokens : 0;
                *price = (tokens + 999) / 1000 ?: 1;
                return 0;
        }

        r = parse_request(t, inputs, NULL, &req);
        if (r < 0)
                return r;
        tokens = req.n_prompt + req.max_tokens;
        request_done(&req);
        if (__builtin_mul_overflow(tokens, t->price_per_ktoken, &p))
                p = UINT64_MAX - 999;
        *price = (p + 999) / 1000;
        if (*price == 0)
                *price = 1;
        return 0;
}

/* The text output is a C string: a NUL byte a token stands for (byte-level
 * vocabularies have one) is left out, here and in verify(). */
static size_t copy_text_bytes(char *dst, const char *src, size_t n) {
        size_t w = 0;

        for (size_t i = 0; i < n; i++)
                if (src[i] != '\0')
                        dst[w++] = src[i];
        return w;
}

/* Emits text[*emitted, upto) as preview chunks (swarm_job_emit), so that a
 * listener prints tokens as they come.  Sanitised as the final text is, and
 * cut only where that gives the same bytes (utf8_stable_prefix(); at the
 * end, final, everything), so the chunks add up to the returned text. */
static void emit_text(struct swarm_job *job, const char *text, size_t *emitted, size_t upto, bool final) {
        /* Pieces of at most a chunk after sanitising (which can triple). */
        const size_t piece_max = SWARM_JOB_CHUNK_MAX / 3;
        char clean[SWARM_JOB_CHUNK_MAX];

        if (!final)
                upto = *emitted + utf8_stable_prefix(text + *emitted, upto - *emitted);
        while (*emitted < upto) {
                size_t n = upto - *emitted < piece_max ? upto - *emitted : piece_max, cut, w;

                /* Not inside a character, unless nothing else fits. */
                cut = utf8_stable_prefix(text + *emitted, n);
                if (cut > 0 && *emitted + n < upto)
                        n = cut;
                w = utf8_sanitize(text + *emitted, n, clean);
                if (swarm_job_emit(job, "text", clean, w) < 0)
                        return;         /* a preview: the outputs have it all */
                *emitted += n;
        }
}

/* Prefills prompt tokens [from, n) in batches, leaving the logits of the
 * last one. */
static int prefill(struct textgen *t, struct swarm_job *job, const int32_t *tokens, size_t n, const float **logits) {
        size_t batch = llama_context_n_batch(t->ctx);

        for (size_t i = 0; i < n; i += batch) {
                size_t m = n - i < batch ? n - i : batch;
                int r;

                if (job && swarm_job_cancelled(job))
                        return -ECANCELED;
                r = llama_eval(t->ctx, tokens + i, m, false, logits);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Length of text[0..len) before the first stop string, or len. */
static size_t find_stop(const struct request *req, const char *text, size_t len, bool *found) {
        size_t best = len;

        *found = false;
        for (size_t i = 0; i < req->n_stops; i++) {
                const char *p = memmem(text, len, req->stops[i], strlen(req->stops[i]));
                if (p && (size_t) (p - text) < best) {
                        best = (size_t) (p - text);
                        *found = true;
                }
        }
        return best;
}

static int execute_check(struct textgen *t, struct swarm_job *job);
static int generate(struct textgen *t, struct swarm_job *job);

static int textgen_execute(void *state, struct swarm_job *job) {
        struct textgen *t = state;
        struct swarm_tensor checked;

        if (!t->model) {
                swarm_job_set_error(job, "this worker holds no model: it only verifies (verify-only)");
                return -ENODEV;
        }
        if (swarm_values_get_tensor(swarm_job_inputs(job), "check.tokens", &checked) == 0)
                return execute_check(t, job);
        return generate(t, job);
}

static int generate(struct textgen *t, struct swarm_job *job) {
        const struct llama_hparams *hp = llama_model_hparams(t->model);
        struct swarm_values *out = swarm_job_outputs(job);
        struct sampler *smp = NULL;
        struct request req;
        int32_t *history = NULL, *gen;
        char *text = NULL;
        size_t text_len = 0, text_cap = 0, n_gen = 0, cut, emitted = 0, hold = 0;
        char *clean = NULL;
        const char *finish = "length";
        const float *logits;
        uint64_t t0, t1, t2;
        float *lg = NULL;
        bool stopped = false;
        int r;

        r = parse_request(t, swarm_job_inputs(job), job, &req);
        if (r < 0)
                return r;
        /* Generation stops at the context's end, as "length". */
        size_t room = llama_context_n_ctx(t->ctx) - req.n_prompt;
        size_t max_gen = req.max_tokens < room ? req.max_tokens : room;

        history = malloc((req.n_prompt + max_gen + 1) * sizeof(int32_t));
        lg = malloc(hp->n_vocab * sizeof(float));
        free(t->commit_ids);
        free(t->commit_logits);
        t->commit_n = 0;
        t->commit_ids = malloc((max_gen ?: 1) * COMMIT_K * sizeof(int32_t));
        t->commit_logits = malloc((max_gen ?: 1) * COMMIT_K * sizeof(float));
        if (!history || !lg || !t->commit_ids || !t->commit_logits) {
                r = -ENOMEM;
                goto out;
        }
        memcpy(history, req.prompt, req.n_prompt * sizeof(int32_t));
        gen = history + req.n_prompt;
        r = sampler_new(&req.sp, hp->n_vocab, &smp);
        if (r < 0)
                goto out;
        /* Text that may be the start of a stop string is held back from the
         * preview until it is known not to be. */
        for (size_t i = 0; i < req.n_stops; i++)
                if (strlen(req.stops[i]) - 1 > hold)
                        hold = strlen(req.stops[i]) - 1;

        if (t->cheat == CHEAT_TRUNCATE && max_gen > 1)
                max_gen /= 2;
        t0 = now_usec();
        llama_context_rewind(t->ctx, 0);
        /* CHEAT_IGNORE_PROMPT reads one token of it. */
        r = prefill(t, job, req.prompt, t->cheat == CHEAT_IGNORE_PROMPT ? 1 : req.n_prompt, &logits);
        if (r < 0)
                goto out;
        t1 = now_usec();

        while (n_gen < max_gen) {
                int32_t tok;
                int k;

                if (swarm_job_cancelled(job)) {
                        swarm_job_set_error(job, "cancelled after %zu tokens", n_gen);
                        r = -ECANCELED;
                        goto out;
                }
                /* The raw logits, before penalties and temperature. */
                commit_topk(logits, hp->n_vocab, COMMIT_K, t->commit_ids + n_gen * COMMIT_K,
                            t->commit_logits + n_gen * COMMIT_K);
                t->commit_n = n_gen + 1;
                memcpy(lg, logits, hp->n_vocab * sizeof(float));
                tok = sampler_sample(smp, lg, history, req.n_prompt + n_gen);
                if (t->cheat == CHEAT_RANDOM_TOKENS)
                        do
                                tok = (int32_t) (((uint64_t) tok * 7919 + n_gen * 104729 + 13) % hp->n_vocab);
                        while (tokenizer_is_eog(t->tok, tok));
                gen[n_gen++] = tok;
                if (tokenizer_is_eog(t->tok, tok)) {
                        finish = "stop";
                        break;
                }
                k = tokenizer_decode_token(t->tok, tok, false, NULL, 0);
                if (k < 0) {
                        r = k;
                        goto out;
                }
                /* Past TEXT_MAX the result could not be sent: stop before. */
                if (3 * (text_len + (size_t) k) > TEXT_MAX &&
                    utf8_sanitized_len(text, text_len) + 3 * (size_t) k > TEXT_MAX) {
                        n_gen--;
                        break;
                }
                if (text_len + (size_t) k + 1 > text_cap) {
                        size_t cap = (text_cap ?: 256) * 2 + (size_t) k;
                        char *nt = realloc(text, cap);
                        if (!nt) {
                                r = -ENOMEM;
                                goto out;
                        }
                        text = nt;
                        text_cap = cap;
                }
                k = tokenizer_decode_token(t->tok, tok, false, text + text_len, text_cap - text_len);
                text_len += copy_text_bytes(text + text_len, text + text_len, (size_t) k);
                if (req.n_stops > 0) {
                        cut = find_stop(&req, text, text_len, &stopped);
                        if (stopped) {
                                text_len = cut;
                                finish = "stop";
                                break;
                        }
                }
                if (text_len > hold)
                        emit_text(job, text, &emitted, text_len - hold, false);
                if (n_gen == max_gen)
                        break;
                r = llama_eval(t->ctx, &tok, 1, false, &logits);
                if (r < 0)
                        goto out;
        }
        t2 = now_usec();
        /* A token generated but not kept (its text would not fit) has no
         * place in the result, nor its commitment. */
        t->commit_n = n_gen;
        if (t->cheat == CHEAT_TRUNCATE)
                finish = "stop";
        if (text)
                emit_text(job, text, &emitted, text_len, true);

        struct swarm_tensor tt;
        uint64_t shape[1] = { n_gen };
        if (n_gen == 0) {
                /* max_tokens 0: a valid, empty answer; tensors cannot be empty. */
                shape[0] = 1;
        }
        /* The returned text is valid UTF-8 (see utf8.h); the previews above
         * were the raw bytes. */
        clean = malloc(UTF8_SANITIZED_MAX(text_len) + 1);
        if (!clean) {
                r = -ENOMEM;
                goto out;
        }
        clean[text ? utf8_sanitize(text, text_len, clean) : 0] = '\0';
        if ((r = swarm_values_set_string(out, "text", clean)) < 0 ||
            (r = swarm_values_add_tensor(out, "tokens", SWARM_DTYPE_I32, 1, shape, &tt)) < 0 ||
            (r = swarm_values_set_int(out, "prompt_tokens_count", (int64_t) req.n_prompt)) < 0 ||
            (r = swarm_values_set_int(out, "generated_tokens_count", (int64_t) n_gen)) < 0 ||
            (r = swarm_values_set_string(out, "finish_reason", finish)) < 0 ||
            (r = swarm_values_set_int(out, "prefill_usec", (int64_t) (t1 - t0))) < 0 ||
            (r = swarm_values_set_int(out, "decode_usec", (int64_t) (t2 - t1))) < 0)
                goto out;
        memcpy(tt.data, gen, n_gen * sizeof(int32_t));
        r = 0;
out:
        sampler_free(smp);
        request_done(&req);
        free(history);
        free(lg);
        free(text);
        free(clean);
        return r;
}

static int textgen_prove(void *state, struct swarm_job *job) {
        struct textgen *t = state;
        struct swarm_values *proof = swarm_job_proof(job);
        /* No token, no commitment; tensors cannot be empty, so one row of
         * nothing stands for none. */
        uint64_t shape[2] = { t->commit_n ?: 1, COMMIT_K };
        struct swarm_tensor ids, logits;
        int r;

        r = swarm_values_set_bytes(proof, "model-id", t->model_id, sizeof(t->model_id));
        if (r < 0)
                return r;
        /* Where "length" stops depends on the provider's context, not the
         * verifier's. */
        r = swarm_values_set_int(proof, "context", (int64_t) llama_context_n_ctx(t->ctx));
        if (r < 0)
                return r;
        r = swarm_values_add_tensor(proof, "commit-ids", SWARM_DTYPE_I32, 2, shape, &ids);
        if (r >= 0)
                r = swarm_values_add_tensor(proof, "commit-logits", SWARM_DTYPE_F32, 2, shape, &logits);
        if (r < 0)
                return r;
        if (t->commit_n == 0 || t->cheat == CHEAT_BLANK_COMMITMENTS) {
                memset(ids.data, 0xff, ids.size);       /* -1: none */
                memset(logits.data, 0, logits.size);
        } else {
                memcpy(ids.data, t->commit_ids, ids.size);
                memcpy(logits.data, t->commit_logits, logits.size);
        }
        if (t->cheat == CHEAT_FORGE_CHECK) {
                /* The lie: a check that no checker made. */
                struct swarm_tensor tokens, copy;

                if ((r = swarm_values_set_string(proof, "check.check-verdict", "ok")) < 0 ||
                    (r = swarm_values_get_tensor(swarm_job_outputs(job), "tokens", &tokens)) < 0 ||
                    (r = swarm_values_add_tensor(proof, "check.tokens", SWARM_DTYPE_I32, 1, tokens.shape, &copy)) < 0)
                        return r;
                memcpy(copy.data, tokens.data, tokens.size);
                if ((r = swarm_values_add_tensor(proof, "check.commit-ids", SWARM_DTYPE_I32, 2, shape, &copy)) < 0)
                        return r;
                memcpy(copy.data, ids.data, ids.size);
                if ((r = swarm_values_add_tensor(proof, "check.commit-logits", SWARM_DTYPE_F32, 2, shape, &copy)) < 0)
                        return r;
                memcpy(copy.data, logits.data, logits.size);
        }
        return 0;
}


/* The bytes tokens[0..n) stand for, concatenated as execute() writes them. */
static int decode_pieces(const struct textgen *t, const int32_t *tokens, size_t n, char **ret, size_t *len) {
        size_t cap = 256, used = 0;
        char *buf = malloc(cap);

        if (!buf)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int k = tokenizer_decode_token(t->tok, tokens[i], false, buf + used, cap - used);

                if (k < 0) {
                        free(buf);
                        return k;
                }
                if ((size_t) k >= cap - used) {
                        char *nb = realloc(buf, cap * 2 + (size_t) k);
                        if (!nb) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = nb;
                        cap = cap * 2 + (size_t) k;
                        i--;            /* again, into the larger buffer */
                        continue;
                }
                used += copy_text_bytes(buf + used, buf + used, (size_t) k);
        }
        buf[used] = '\0';
        *ret = buf;
        *len = used;
        return 0;
}

/* Where a verification's reasons go: the job's error, and (a checker's)
 * a buffer that becomes its verdict. */
struct verdict {
        struct swarm_job *job;
        char text[512];
};

static void verdict_set(struct verdict *v, const char *format, ...) SWARM_PRINTF(2, 3);
static void verdict_set(struct verdict *v, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        vsnprintf(v->text, sizeof(v->text), format, ap);
        va_end(ap);
        swarm_job_set_error(v->job, "%s", v->text);
}

/* Checks outputs `out` of a job with inputs `in` against this model,
 * teacher forced.  proof NULL: a checker's run (check jobs), which sees no
 * proof: the model-id and commitment checks are left out, the context is
 * this node's.  own, when not NULL, receives this model's commitments at
 * each generated position (COMMIT_K per token, room for the outputs'
 * generated_tokens_count).  0, -EBADMSG (why in v), -EOPNOTSUPP when this
 * node cannot judge it, or another error. */
static int verify_values(struct textgen *t, struct verdict *v, const struct swarm_values *in,
                         const struct swarm_values *out, const struct swarm_values *proof, int64_t claimed_ctx,
                         int32_t *own_ids, float *own_logits) {
        struct swarm_job *job = v->job;
        const struct llama_hparams *hp = llama_model_hparams(t->model);
        const char *text, *finish;
        struct swarm_tensor tt, commit_ids = {}, commit_logits = {};
        struct commit_mismatch why;
        struct request req;
        const void *id;
        size_t id_size, n_seq, decoded_len, batch = llama_context_n_batch(t->ctx);
        int64_t n_gen_i, provider_ctx;
        int32_t *seq = NULL;
        const int32_t *gen;
        char *decoded = NULL, *expected = NULL;
        char provider_hex[2 * MODEL_ID_SIZE + 1];
        int r;

        if (!proof)
                goto proof_done;
        if (swarm_values_get_bytes(proof, "model-id", &id, &id_size) < 0 || id_size != MODEL_ID_SIZE) {
                verdict_set(v, "the proof has no model-id");
                return -EBADMSG;
        }
        /* Requesters route textgen only to providers advertising their
         * own model (the "variant"): one that ran another is not honest. */
        if (memcmp(id, t->model_id, MODEL_ID_SIZE) != 0) {
                sodium_bin2hex(provider_hex, sizeof(provider_hex), id, MODEL_ID_SIZE);
                verdict_set(v, "the provider ran model-id %.16s…, not %s (%.16s…) that it was chosen for",
                                    provider_hex, t->name, t->model_id_hex);
                return -EBADMSG;
        }
        if (swarm_values_get_int(proof, "context", &provider_ctx) < 0 || provider_ctx < 1) {
                verdict_set(v, "the proof has no context size");
                return -EBADMSG;
        }
        if (swarm_values_get_tensor(proof, "commit-ids", &commit_ids) < 0 ||
            swarm_values_get_tensor(proof, "commit-logits", &commit_logits) < 0 ||
            commit_ids.dtype != SWARM_DTYPE_I32 || commit_logits.dtype != SWARM_DTYPE_F32 ||
            commit_ids.ndim != 2 || commit_logits.ndim != 2 || commit_ids.shape[1] != COMMIT_K ||
            commit_logits.shape[1] != COMMIT_K || commit_ids.shape[0] != commit_logits.shape[0]) {
                verdict_set(v, "the proof has no commitments (commit-ids and commit-logits, i32 and f32 "
                                    "tensors of n×%d)", COMMIT_K);
                return -EBADMSG;
        }
proof_done:
        /* A checker judges "length" by the producer's context, as given. */
        if (!proof)
                provider_ctx = claimed_ctx > 0 ? claimed_ctx : (int64_t) llama_context_n_ctx(t->ctx);
        if (swarm_values_get_tensor(out, "tokens", &tt) < 0 || tt.dtype != SWARM_DTYPE_I32 || tt.ndim != 1 ||
            swarm_values_get_int(out, "generated_tokens_count", &n_gen_i) < 0 ||
            swarm_values_get_string(out, "text", &text) < 0 ||
            swarm_values_get_string(out, "finish_reason", &finish) < 0) {
                verdict_set(v, "the result lacks tokens, generated_tokens_count, text or finish_reason");
                return -EBADMSG;
        }
        r = parse_request(t, in, job, &req);
        if (r == -E2BIG)
                return -EOPNOTSUPP;     /* our context is smaller than the provider's: not its fault */
        if (r < 0)
                return r;

        if ((uint64_t) provider_ctx <= req.n_prompt) {
                verdict_set(v, "the provider's context (%" PRIi64 ") cannot hold the prompt (%zu tokens)",
                                    provider_ctx, req.n_prompt);
                r = -EBADMSG;
                goto out;
        }
        size_t room = (size_t) provider_ctx - req.n_prompt;
        size_t max_gen = req.max_tokens < room ? req.max_tokens : room;
        size_t n_gen = (size_t) n_gen_i;
        gen = tt.data;
        if (n_gen_i < 0 || n_gen > max_gen || tt.n_elements != (n_gen ?: 1)) {
                verdict_set(v, "%" PRIi64 " tokens generated for at most %zu (tensor of %" PRIu64 ")",
                                    n_gen_i, max_gen, tt.n_elements);
                r = -EBADMSG;
                goto out;
        }
        if (proof && commit_ids.shape[0] != (n_gen ?: 1)) {
                verdict_set(v, "the proof commits to %" PRIu64 " positions for %zu generated tokens",
                                    commit_ids.shape[0], n_gen);
                r = -EBADMSG;
                goto out;
        }
        bool eog_end = n_gen > 0 && tokenizer_is_eog(t->tok, gen[n_gen - 1]);
        for (size_t i = 0; i < n_gen; i++)
                if (gen[i] < 0 || (uint32_t) gen[i] >= hp->n_vocab || (i + 1 < n_gen && tokenizer_is_eog(t->tok, gen[i]))) {
                        verdict_set(v, "generated token %zu (%" PRIi32 ") ends or leaves the vocabulary "
                                            "before the last", i, gen[i]);
                        r = -EBADMSG;
                        goto out;
                }
        bool at_text_max = utf8_sanitized_len(text, strlen(text)) + TEXT_MARGIN > TEXT_MAX;
        if (strcmp(finish, "length") == 0 ? (n_gen != max_gen && !at_text_max) || eog_end
                                          : strcmp(finish, "stop") != 0) {
                verdict_set(v, "finish_reason \"%.16s\" does not fit %zu tokens of at most %zu", finish,
                                    n_gen, max_gen);
                r = -EBADMSG;
                goto out;
        }

        /* The text is what the tokens decode to, cut at a stop string when
         * that is why generation stopped. */
        r = decode_pieces(t, gen, eog_end ? n_gen - 1 : n_gen, &decoded, &decoded_len);
        if (r < 0)
                goto out;
        size_t text_len = strlen(text), expect_len = decoded_len;
        bool stop_cut = false;
        expect_len = find_stop(&req, decoded, decoded_len, &stop_cut);
        if (!eog_end && strcmp(finish, "stop") == 0 && !stop_cut) {
                verdict_set(v, "finish_reason \"stop\" without an end token or a stop string");
                r = -EBADMSG;
                goto out;
        }
        if ((eog_end || strcmp(finish, "length") == 0) && stop_cut) {
                verdict_set(v, "the text holds a stop string, but generation went on past it");
                r = -EBADMSG;
                goto out;
        }
        expected = malloc(UTF8_SANITIZED_MAX(expect_len) + 1);
        if (!expected) {
                r = -ENOMEM;
                goto out;
        }
        expect_len = utf8_sanitize(decoded, expect_len, expected);
        if (text_len != expect_len) {
                verdict_set(v, "the text is %zu bytes, its tokens decode to %zu", text_len, expect_len);
                r = -EBADMSG;
                goto out;
        }
        if (memcmp(text, expected, text_len) != 0) {
                verdict_set(v, "the text is not what its tokens decode to");
                r = -EBADMSG;
                goto out;
        }
        if (n_gen == 0) {
                r = 0;
                goto out;
        }

        /* Teacher forcing: one pass over prompt + output (less its last
         * token), checking at each position the token that followed. */
        n_seq = req.n_prompt + n_gen - 1;
        if (n_seq > llama_context_n_ctx(t->ctx)) {
                verdict_set(v, "prompt and output (%zu tokens) do not fit this node's context (%zu)",
                                    n_seq, llama_context_n_ctx(t->ctx));
                r = -EOPNOTSUPP;        /* not the provider's fault */
                goto out;
        }
        seq = malloc((n_seq + 1) * sizeof(int32_t));
        if (!seq) {
                r = -ENOMEM;
                goto out;
        }
        memcpy(seq, req.prompt, req.n_prompt * sizeof(int32_t));
        memcpy(seq + req.n_prompt, gen, n_gen * sizeof(int32_t));
        llama_context_rewind(t->ctx, 0);
        for (size_t i = 0; i < n_seq; i += batch) {
                size_t m = n_seq - i < batch ? n_seq - i : batch;
                const float *logits;
                /* Logits are needed only from the prompt's last position. */
                bool all = i + m >= req.n_prompt;

                if (swarm_job_cancelled(job)) {
                        r = -ECANCELED;
                        goto out;
                }
                r = llama_eval(t->ctx, seq + i, m, all, &logits);
                if (r < 0)
                        goto out;
                if (!all)
                        continue;
                for (size_t j = 0; j < m; j++) {
                        size_t p = i + j;       /* logits at p predict seq[p + 1] */
                        if (p + 1 < req.n_prompt)
                                continue;
                        size_t g = p + 1 - req.n_prompt;        /* which generated token */

                        if (own_ids)
                                commit_topk(logits + j * hp->n_vocab, hp->n_vocab, COMMIT_K, own_ids + g * COMMIT_K,
                                            own_logits + g * COMMIT_K);
                        if (proof &&
                            commit_check(logits + j * hp->n_vocab, hp->n_vocab, COMMIT_K,
                                         (const int32_t *) commit_ids.data + g * COMMIT_K,
                                         (const float *) commit_logits.data + g * COMMIT_K, t->commit_tolerance,
                                         &why) < 0) {
                                verdict_set(v, "the commitment at generated token %zu does not match this "
                                                    "model: %s (token %" PRIi32 ": committed %.4g, here %.4g; "
                                                    "tolerance %.3g)", g, commit_fault_to_string(why.fault), why.id,
                                                    why.committed, why.actual, t->commit_tolerance);
                                r = -EBADMSG;
                                goto out;
                        }
                        if (!sampler_admits(&req.sp, logits + j * hp->n_vocab, hp->n_vocab, seq, p + 1, seq[p + 1],
                                            t->tolerance, t->scratch)) {
                                verdict_set(v, "generated token %zu (%" PRIi32 ") is not one the model "
                                                    "could have chosen there", g, seq[p + 1]);
                                r = -EBADMSG;
                                goto out;
                        }
                }
        }
        r = 0;
out:
        request_done(&req);
        free(seq);
        free(decoded);
        free(expected);
        return r;
}

/* The result of a check job, as a requester without the model sees it:
 * well formed, a verdict and one commitment per generated position.  It is
 * trusted only as far as its commitments agree with the producer's
 * (verify_by_check()). */
static int verify_check_result(struct swarm_job *job, const struct swarm_values *in, const struct swarm_values *out) {
        struct swarm_tensor checked, ids, logits;
        const char *verdict;

        if (swarm_values_get_tensor(in, "check.tokens", &checked) < 0 ||
            swarm_values_get_string(out, "check-verdict", &verdict) < 0 ||
            swarm_values_get_tensor(out, "commit-ids", &ids) < 0 ||
            swarm_values_get_tensor(out, "commit-logits", &logits) < 0 || ids.dtype != SWARM_DTYPE_I32 ||
            logits.dtype != SWARM_DTYPE_F32 || ids.ndim != 2 || logits.ndim != 2 || ids.shape[1] != COMMIT_K ||
            logits.shape[1] != COMMIT_K || ids.shape[0] != checked.n_elements ||
            logits.shape[0] != checked.n_elements) {
                swarm_job_set_error(job, "the check's result lacks check-verdict, or commitments (n×%d) to each "
                                    "of the %" PRIu64 " tokens checked", COMMIT_K, checked.n_elements);
                return -EBADMSG;
        }
        return 0;
}

/* A producer's result on a node without the model: it needs a check by
 * another provider of the model (-EREMOTE: the requester runs a check job
 * and comes back with its outputs in the proof as check.*), then agrees
 * with the check or not. */
static int verify_by_check(struct textgen *t, struct swarm_job *job, const struct swarm_values *out,
                           const struct swarm_values *proof) {
        struct swarm_tensor tokens, checked, ids, logits, check_ids, check_logits;
        struct commit_mismatch why;
        const char *verdict, *text, *finish;
        int64_t n_gen;

        if (swarm_values_get_string(proof, "check.check-verdict", &verdict) < 0) {
                swarm_job_set_error(job, "this node holds no copy of the model: another provider of it must check "
                                    "the result");
                return -EREMOTE;
        }
        if (strcmp(verdict, "ok") != 0) {
                swarm_job_set_error(job, "an independent check of the result failed: %s", verdict);
                return -EBADMSG;
        }
        /* What needs no model: the result's own shape. */
        if (swarm_values_get_tensor(out, "tokens", &tokens) < 0 || tokens.dtype != SWARM_DTYPE_I32 ||
            tokens.ndim != 1 || swarm_values_get_int(out, "generated_tokens_count", &n_gen) < 0 || n_gen < 0 ||
            tokens.n_elements != (uint64_t) (n_gen ?: 1) || swarm_values_get_string(out, "text", &text) < 0 ||
            swarm_values_get_string(out, "finish_reason", &finish) < 0 ||
            (strcmp(finish, "stop") != 0 && strcmp(finish, "length") != 0)) {
                swarm_job_set_error(job, "the result is malformed: tokens (i32, one per generated token), "
                                    "generated_tokens_count, text and finish_reason (stop or length) do not agree");
                return -EBADMSG;
        }
        if (swarm_values_get_tensor(proof, "check.tokens", &checked) < 0 || tokens.size != checked.size ||
            memcmp(tokens.data, checked.data, tokens.size) != 0) {
                swarm_job_set_error(job, "the check was of other tokens than the result's");
                return -EBADMSG;
        }
        if (swarm_values_get_tensor(proof, "commit-ids", &ids) < 0 ||
            swarm_values_get_tensor(proof, "commit-logits", &logits) < 0 ||
            swarm_values_get_tensor(proof, "check.commit-ids", &check_ids) < 0 ||
            swarm_values_get_tensor(proof, "check.commit-logits", &check_logits) < 0 ||
            ids.dtype != SWARM_DTYPE_I32 || logits.dtype != SWARM_DTYPE_F32 || ids.ndim != 2 ||
            ids.shape[1] != COMMIT_K || ids.shape[0] != (uint64_t) (n_gen ?: 1) || ids.size != check_ids.size ||
            logits.size != check_logits.size || ids.shape[0] * COMMIT_K * sizeof(float) != logits.size) {
                swarm_job_set_error(job, "the proof's commitments (commit-ids, commit-logits) are missing or do not "
                                    "match the check's in shape");
                return -EBADMSG;
        }
        /* No token generated: one placeholder row, nothing committed. */
        for (uint64_t g = 0; g < (uint64_t) n_gen; g++) {
                const int32_t *a = (const int32_t *) ids.data + g * COMMIT_K;

                if (commit_compare(COMMIT_K, a, (const float *) logits.data + g * COMMIT_K,
                                   (const int32_t *) check_ids.data + g * COMMIT_K,
                                   (const float *) check_logits.data + g * COMMIT_K, t->commit_tolerance, &why) < 0) {
                        swarm_job_set_error(job, "at generated token %" PRIu64 " the provider's commitment disagrees "
                                            "with an independent checker's: %s (token %" PRIi32 ": %.4g vs %.4g)", g,
                                            why.fault == COMMIT_VALUE ? "a logit both list differs by more than "
                                                                        "twice the tolerance"
                                            : why.fault == COMMIT_MISSING ? "a token one lists above the other's "
                                                                            "smallest is missing from the other's"
                                            : commit_fault_to_string(why.fault),
                                            why.id, why.committed, why.actual);
                        return -EBADMSG;
                }
        }
        return 0;
}

static int textgen_verify(void *state, struct swarm_job *job) {
        struct textgen *t = state;
        struct verdict v = { .job = job };
        const struct swarm_values *in = swarm_job_inputs(job);
        struct swarm_tensor checked;

        if (swarm_values_get_tensor(in, "check.tokens", &checked) == 0)
                return verify_check_result(job, in, swarm_job_outputs(job));
        if (!t->model)
                return verify_by_check(t, job, swarm_job_outputs(job), swarm_job_proof(job));
        return verify_values(t, &v, in, swarm_job_outputs(job), swarm_job_proof(job), 0, NULL, NULL);
}

/* A check job (inputs check.*: another provider's result): this model's
 * verdict on it, teacher forced, and this model's commitments at each of
 * its positions, for the requester to compare with the producer's.  The
 * producer's own commitments are not given, so they cannot be copied. */
static int execute_check(struct textgen *t, struct swarm_job *job) {
        const struct swarm_values *in = swarm_job_inputs(job);
        struct swarm_values *claimed = swarm_values_new(), *out = swarm_job_outputs(job);
        struct verdict v = { .job = job };
        struct swarm_tensor tokens, t_out, ids, logits;
        const char *text = "", *finish = "length";
        int64_t n_gen = 0, context;
        uint64_t rows;
        int32_t *own_ids = NULL;
        float *own_logits = NULL;
        uint64_t t0 = now_usec();
        int r;

        if (!claimed)
                return -ENOMEM;
        if (swarm_values_get_tensor(in, "check.tokens", &tokens) < 0 || tokens.dtype != SWARM_DTYPE_I32 ||
            tokens.ndim != 1 || swarm_values_get_int(in, "check.generated_tokens_count", &n_gen) < 0 || n_gen < 0 ||
            (uint64_t) n_gen > tokens.n_elements || swarm_values_get_string(in, "check.text", &text) < 0 ||
            swarm_values_get_string(in, "check.finish_reason", &finish) < 0) {
                swarm_job_set_error(job, "a check needs check.tokens (i32), check.generated_tokens_count, check.text "
                                    "and check.finish_reason: the result to check");
                r = -EINVAL;
                goto out;
        }
        rows = tokens.n_elements;
        own_ids = malloc(rows * COMMIT_K * sizeof(int32_t));
        own_logits = calloc(rows * COMMIT_K, sizeof(float));
        if (!own_ids || !own_logits) {
                r = -ENOMEM;
                goto out;
        }
        memset(own_ids, 0xff, rows * COMMIT_K * sizeof(int32_t));
        if ((r = swarm_values_add_tensor(claimed, "tokens", SWARM_DTYPE_I32, 1, tokens.shape, &t_out)) < 0 ||
            (r = swarm_values_set_int(claimed, "generated_tokens_count", n_gen)) < 0 ||
            (r = swarm_values_set_string(claimed, "text", text)) < 0 ||
            (r = swarm_values_set_string(claimed, "finish_reason", finish)) < 0)
                goto out;
        memcpy(t_out.data, tokens.data, tokens.size);

        if (swarm_values_get_int(in, "check.context", &context) < 0)
                context = 0;
        r = verify_values(t, &v, in, claimed, NULL, context, own_ids, own_logits);
        if (r < 0 && r != -EBADMSG)
                goto out;       /* could not judge: the check job fails, another checker is asked */
        /* A verdict against the result is this job's success. */
        swarm_job_set_error(job, "%s", "");
        if ((r = swarm_values_set_string(out, "check-verdict", r == 0 ? "ok" : v.text)) < 0 ||
            (r = swarm_values_add_tensor(out, "commit-ids", SWARM_DTYPE_I32, 2, (const uint64_t[]) { rows, COMMIT_K },
                                         &ids)) < 0 ||
            (r = swarm_values_add_tensor(out, "commit-logits", SWARM_DTYPE_F32, 2,
                                         (const uint64_t[]) { rows, COMMIT_K }, &logits)) < 0 ||
            (r = swarm_values_set_string(out, "text", text)) < 0 ||
            (r = swarm_values_add_tensor(out, "tokens", SWARM_DTYPE_I32, 1, tokens.shape, &t_out)) < 0 ||
            (r = swarm_values_set_int(out, "prompt_tokens_count", 0)) < 0 ||
            (r = swarm_values_set_int(out, "generated_tokens_count", n_gen)) < 0 ||
            (r = swarm_values_set_string(out, "finish_reason", "check")) < 0 ||
            (r = swarm_values_set_int(out, "prefill_usec", (int64_t) (now_usec() - t0))) < 0 ||
            (r = swarm_values_set_int(out, "decode_usec", 0)) < 0)
                goto out;
        memcpy(ids.data, own_ids, ids.size);
        memcpy(logits.data, own_logits, logits.size);
        memcpy(t_out.data, tokens.data, tokens.size);
        /* prove() commits to nothing for a check. */
        t->commit_n = 0;
        r = 0;
out:
        swarm_values_free(claimed);
        free(own_ids);
        free(own_logits);
        return r;
}

static const struct swarm_param textgen_inputs[] = {
        { "prompt", SWARM_VALUE_STRING, 0, 0, NULL, SWARM_PARAM_OPTIONAL,
          "text to continue (one of prompt, prompt_tokens and messages)" },
        { "prompt_tokens", SWARM_VALUE_TENSOR, SWARM_DTYPE_I32, 1, "n", SWARM_PARAM_OPTIONAL,
          "token ids to continue" },
        { "messages", SWARM_VALUE_STRING, 0, 0, NULL, SWARM_PARAM_OPTIONAL,
          "a chat as JSON [{\"role\": …, \"content\": …}], formatted with the model's template" },
        { "model", SWARM_VALUE_STRING, 0, 0, NULL, SWARM_PARAM_OPTIONAL,
          "the model name or model-id the job is for; refused by a provider serving another" },
        { "max_tokens", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "at most this many new tokens" },
        { "temperature", 0, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "sampling temperature, a number (0: greedy)" },
        { "top_k", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "sample among the k likeliest (default 40)" },
        { "top_p", 0, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "nucleus sampling mass, a number" },
        { "min_p", 0, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "drop tokens below this share of the likeliest" },
        { "repeat_penalty", 0, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "penalty for repeated tokens, a number" },
        { "seed", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "sampler seed: same seed, same text" },
        { "stop", SWARM_VALUE_STRING, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "stop before this text" },
        /* A check job: another provider's result to judge (the names the
         * advert's check-inputs lists, prefixed). */
        { "check.tokens", SWARM_VALUE_TENSOR, SWARM_DTYPE_I32, 1, "n", SWARM_PARAM_OPTIONAL,
          "check job: the generated tokens to check" },
        { "check.text", SWARM_VALUE_STRING, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "check job: the text to check" },
        { "check.finish_reason", SWARM_VALUE_STRING, 0, 0, NULL, SWARM_PARAM_OPTIONAL,
          "check job: the finish_reason to check" },
        { "check.generated_tokens_count", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL,
          "check job: the generated_tokens_count to check" },
        { "check.context", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL,
          "check job: the producer's context size (where \"length\" stopped)" },
        {}
};

static const struct swarm_param textgen_outputs[] = {
        { "text", SWARM_VALUE_STRING, 0, 0, NULL, 0, "the generated text" },
        { "tokens", SWARM_VALUE_TENSOR, SWARM_DTYPE_I32, 1, "n", 0, "the generated token ids" },
        { "prompt_tokens_count", SWARM_VALUE_INT, 0, 0, NULL, 0, "tokens in the prompt" },
        { "generated_tokens_count", SWARM_VALUE_INT, 0, 0, NULL, 0, "tokens generated" },
        { "finish_reason", SWARM_VALUE_STRING, 0, 0, NULL, 0, "stop (an end token or the stop text) or length" },
        { "prefill_usec", SWARM_VALUE_INT, 0, 0, NULL, 0, "time to read the prompt" },
        { "decode_usec", SWARM_VALUE_INT, 0, 0, NULL, 0, "time to generate" },
        { "check-verdict", SWARM_VALUE_STRING, 0, 0, NULL, SWARM_PARAM_OPTIONAL,
          "check job: \"ok\", or why the result checked is wrong" },
        { "commit-ids", SWARM_VALUE_TENSOR, SWARM_DTYPE_I32, 2, "n×4", SWARM_PARAM_OPTIONAL,
          "check job: this model's top-4 token ids at each position checked" },
        { "commit-logits", SWARM_VALUE_TENSOR, SWARM_DTYPE_F32, 2, "n×4", SWARM_PARAM_OPTIONAL,
          "check job: their logits" },
        {}
};

static const struct swarm_skill skill = {
        .abi_version = SWARM_SKILL_ABI_VERSION,
        .struct_size = sizeof(struct swarm_skill),
        .name = "textgen",
        .version = "0.1.0",
        .description = "Text generation with Llama-family GGUF models, verified by teacher forcing",
        .init = textgen_init,
        .fini = textgen_fini,
        .advertise = textgen_advertise,
        .price = textgen_price,
        .execute = textgen_execute,
        .prove = textgen_prove,
        .verify = textgen_verify,
        .inputs = textgen_inputs,
        .outputs = textgen_outputs,
};

SWARM_SKILL_EXPORT const struct swarm_skill *swarm_skill_entry(void) {
        return &skill;
}

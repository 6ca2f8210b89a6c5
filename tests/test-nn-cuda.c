/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The CUDA backend against the CPU backend on tiny random-weight models:
 * logits at every position within f16 rounding, the same greedy tokens,
 * KV-cache decoding equal to a full recompute.  Where there is no GPU (CI,
 * most build machines) nn_cuda_backend_new() says -ENODEV and every test of
 * the nn_cuda suite is skipped with its reason; the nn_cuda_loader suite
 * checks the loader's refusals, which need no GPU. */

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "llama.h"
#include "nn-quant.h"
#include "tiny-model.h"

static char dir[] = "/tmp/test-nn-cuda-XXXXXX";

static void setup(void) {
        cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        (void) system(cmd);
}

TestSuite(nn_cuda, .init = setup, .fini = teardown, .timeout = 120);

/* The backend on the first GPU, or the test skipped with the reason. */
static struct nn_backend *cuda_or_skip(void) {
        struct nn_backend *be = NULL;
        char err[512] = "";
        int r;

        r = nn_cuda_backend_new(0, &be, err, sizeof(err));
        if (r == -ENODEV)
                cr_skip("no CUDA backend here: %s", err);
        cr_assert_eq(r, 0, "nn_cuda_backend_new: %s (%s)", strerror(-r), err);
        return be;
}

static struct gguf *write_and_open(const struct tiny_model_spec *spec, const char *name) {
        char path[256], err[512];
        struct gguf *g;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        cr_assert_eq(tiny_model_write(spec, path, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(gguf_open(path, &g, err, sizeof(err)), 0, "%s", err);
        return g;
}

static const int32_t prompt[] = { 1, 300, 17, 42, 260, 511, 5, 77, 123, 301, 302, 303, 64, 2, 9, 100, 200 };
#define N_PROMPT (sizeof(prompt) / sizeof(prompt[0]))

/* A model on one backend, with all the prompt's logits. */
struct run {
        struct nn_backend *be;
        struct llama_model *m;
        struct llama_context *c;
        float *logits;          /* [N_PROMPT][n_vocab] */
        size_t n_vocab;
};

static void run_prompt(struct gguf *g, struct nn_backend *be, size_t batch, struct run *ret) {
        char err[512];

        ret->be = be;
        cr_assert_eq(llama_model_load(g, be, &ret->m, err, sizeof(err)), 0, "%s", err);
        ret->n_vocab = llama_model_hparams(ret->m)->n_vocab;
        cr_assert_eq(llama_context_new(ret->m, 64, batch, &ret->c), 0);
        ret->logits = malloc(N_PROMPT * ret->n_vocab * sizeof(float));
        cr_assert_not_null(ret->logits);
        for (size_t i = 0; i < N_PROMPT; i += batch) {
                size_t n = N_PROMPT - i < batch ? N_PROMPT - i : batch;
                const float *l;

                cr_assert_eq(llama_eval(ret->c, prompt + i, n, true, &l), 0, "%s at position %zu",
                             be->ops->name, i);
                memcpy(ret->logits + i * ret->n_vocab, l, n * ret->n_vocab * sizeof(float));
        }
}

static void run_done(struct run *r) {
        free(r->logits);
        llama_context_free(r->c);
        llama_model_free(r->m);
        nn_backend_free(r->be);
}

static size_t argmax(const float *v, size_t n) {
        size_t best = 0;

        for (size_t j = 1; j < n; j++)
                if (v[j] > v[best])
                        best = j;
        return best;
}

/* Every logit within tol · (1 + |cpu|) of the CPU's; the greedy token the
 * same, unless the CPU's two best are closer than that (then either may
 * win on either backend). */
static void check_against_cpu(const struct tiny_model_spec *spec, size_t batch, double tol) {
        struct nn_backend *gpu = cuda_or_skip(), *cpu;
        struct gguf *g = write_and_open(spec, "m.gguf");
        struct run rc, rg;

        cr_assert_eq(nn_cpu_backend_new(2, &cpu), 0);
        run_prompt(g, cpu, batch, &rc);
        run_prompt(g, gpu, batch, &rg);
        for (size_t t = 0; t < N_PROMPT; t++) {
                const float *lc = rc.logits + t * rc.n_vocab, *lg = rg.logits + t * rg.n_vocab;
                size_t bc = argmax(lc, rc.n_vocab), bg = argmax(lg, rg.n_vocab);

                for (size_t j = 0; j < rc.n_vocab; j++)
                        cr_assert(fabs((double) lg[j] - lc[j]) <= tol * (1 + fabs(lc[j])),
                                  "position %zu token %zu: cuda %g, cpu %g", t, j, (double) lg[j], (double) lc[j]);
                cr_assert(bg == bc || lc[bg] >= lc[bc] - tol * (1 + fabs(lc[bc])),
                          "greedy token at position %zu: cuda %zu (cpu logit %g), cpu %zu (%g)", t, bg,
                          (double) lc[bg], bc, (double) lc[bc]);
        }
        run_done(&rg);
        run_done(&rc);
        gguf_close(g);
}

/* f16 weights and activations against the CPU's f32, or against its int8
 * activations for the quantised types (test-llama.c's INT8_ACT_TOL).  The
 * CUDA numerics emulated on the CPU (weights and matmul inputs rounded to
 * f16, f32 sums) moved a logit of these models by at most 1.1e-2 · (1 +
 * |logit|) (qwen2, logits up to 25), and 7.9e-2 for q4_K. */
#define F16_TOL 3e-2
#define INT8_TOL 0.15

Test(nn_cuda, f32_logits_match_the_cpu_at_every_position) {
        struct tiny_model_spec s = tiny_model_spec_default();

        check_against_cpu(&s, 64, F16_TOL);
}

Test(nn_cuda, batches_of_one_and_five_match_the_cpu) {
        struct tiny_model_spec s = tiny_model_spec_default();

        check_against_cpu(&s, 1, F16_TOL);
        check_against_cpu(&s, 5, F16_TOL);
}

Test(nn_cuda, f16_and_q4_K_weights_match_the_cpu) {
        struct tiny_model_spec s = tiny_model_spec_default();

        /* K-quants need rows of 256. */
        s.n_embd = 256;
        s.n_ff = 512;
        s.weight_type = s.embd_type = NN_TYPE_F16;
        check_against_cpu(&s, 64, F16_TOL);
        s.weight_type = s.embd_type = NN_TYPE_Q4_K;
        check_against_cpu(&s, 7, INT8_TOL);
}

Test(nn_cuda, qwen2_biases_neox_rope_and_a_tied_output_match_the_cpu) {
        struct tiny_model_spec s = tiny_model_spec_default();

        s.arch = "qwen2";
        s.tokenizer = TINY_TOKENIZER_BPE;
        s.tied_output = true;
        check_against_cpu(&s, 7, F16_TOL);
}

Test(nn_cuda, llama31_rope_freqs_and_gqa_match_the_cpu) {
        struct tiny_model_spec s = tiny_model_spec_default();

        s.rope_freqs = true;
        s.n_head = 8;
        s.n_head_kv = 2;
        s.n_embd = 128;
        check_against_cpu(&s, 64, F16_TOL);
}

Test(nn_cuda, kv_cache_decoding_equals_a_full_recompute) {
        struct nn_backend *be = cuda_or_skip();
        struct tiny_model_spec s = tiny_model_spec_default();
        struct gguf *g = write_and_open(&s, "m.gguf");
        struct llama_model *m;
        struct llama_context *inc, *full;
        const float *l_inc, *l_full;
        char err[512];

        cr_assert_eq(llama_model_load(g, be, &m, err, sizeof(err)), 0, "%s", err);
        size_t V = llama_model_hparams(m)->n_vocab;
        float *copy = malloc(V * sizeof(float));
        cr_assert_not_null(copy);
        cr_assert_eq(llama_context_new(m, 64, 64, &inc), 0);
        cr_assert_eq(llama_context_new(m, 64, 64, &full), 0);
        for (size_t i = 0; i < N_PROMPT; i++) {
                cr_assert_eq(llama_eval(inc, prompt + i, 1, false, &l_inc), 0);
                memcpy(copy, l_inc, V * sizeof(float));
                llama_context_rewind(full, 0);
                cr_assert_eq(llama_eval(full, prompt, i + 1, false, &l_full), 0);
                /* Only cuBLAS's order of summation differs (one column or
                 * many); the f16 rounding of the inputs is the same. */
                for (size_t j = 0; j < V; j++)
                        cr_assert(fabsf(copy[j] - l_full[j]) <= 1e-3f * (1 + fabsf(l_full[j])),
                                  "position %zu token %zu: %g vs %g", i, j, (double) copy[j], (double) l_full[j]);
                size_t bi = argmax(copy, V), bf = argmax(l_full, V);
                cr_assert(bi == bf || l_full[bi] >= l_full[bf] - 1e-3f * (1 + fabsf(l_full[bf])),
                          "greedy token at position %zu: %zu, full recompute %zu", i, bi, bf);
        }
        cr_assert_eq(be->ops->status(be), 0);
        free(copy);
        llama_context_free(inc);
        llama_context_free(full);
        llama_model_free(m);
        nn_backend_free(be);
        gguf_close(g);
}

Test(nn_cuda, the_backend_names_its_device) {
        struct nn_backend *be = cuda_or_skip();

        cr_assert(strncmp(be->ops->name, "cuda:", 5) == 0 && strlen(be->ops->name) > 5, "%s", be->ops->name);
        cr_assert_eq(be->ops->status(be), 0);
        nn_backend_free(be);
}

/* ---- The loader, which needs no GPU ---- */

TestSuite(nn_cuda_loader, .timeout = 60);

Test(nn_cuda_loader, a_missing_module_is_enodev_naming_the_path) {
        struct nn_backend *be = NULL;
        char err[512] = "";

        /* Criterion runs each test in its own process. */
        cr_assert_eq(setenv("SWARM_NN_CUDA_MODULE", "/nonexistent/nn-cuda.so", 1), 0);
        cr_assert_eq(nn_cuda_backend_new(0, &be, err, sizeof(err)), -ENODEV);
        cr_assert_null(be);
        cr_assert(strstr(err, "/nonexistent/nn-cuda.so"), "%s", err);
}

Test(nn_cuda_loader, a_library_that_is_not_the_module_is_enodev) {
        struct nn_backend *be = NULL;
        char err[512] = "";

        cr_assert_eq(setenv("SWARM_NN_CUDA_MODULE", "libm.so.6", 1), 0);
        cr_assert_eq(nn_cuda_backend_new(0, &be, err, sizeof(err)), -ENODEV);
        cr_assert(strstr(err, "nn_cuda_backend_open"), "%s", err);
}

Test(nn_cuda_loader, the_built_module_opens_or_says_why_not) {
        struct nn_backend *be = NULL;
        char err[512] = "";
        int r;

        r = nn_cuda_backend_new(0, &be, err, sizeof(err));
        if (r == 0) {
                cr_assert_not_null(be);
                nn_backend_free(be);
                return;
        }
        cr_assert_eq(r, -ENODEV, "%s (%s)", strerror(-r), err);
        cr_assert(err[0] != '\0');
        cr_log_info("no CUDA backend here: %s", err);
        /* Past the module: it loaded, and CUDA itself said why. */
        cr_assert(strstr(err, "CUDA device") != NULL, "%s", err);
}

Test(nn_cuda_loader, a_device_index_past_the_last_is_enodev) {
        struct nn_backend *be = NULL;
        char err[512] = "";

        cr_assert_eq(nn_cuda_backend_new(1000, &be, err, sizeof(err)), -ENODEV, "%s", err);
        cr_assert_null(be);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The CUDA backend against the CPU backend on tiny random-weight models:
 * logits at every position within f16 rounding, the same greedy tokens,
 * KV-cache decoding equal to a full recompute; convolutions (cuDNN), GroupNorm
 * and upsampling against the CPU's.  Where there is no GPU (CI,
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

/* ---- Convolutional ops: the same inputs on both backends ---- */

static float conv_rng(uint64_t *state) {
        *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
        return (float) ((*state >> 40) & 0xffffff) / (float) 0x1000000 * 2.0f - 1.0f;
}

/* y on the CPU and on the GPU for one convolution; returns the largest
 * difference relative to Σ|w·x| + |bias| (computed on the host). */
static double conv_max_rel_diff(struct nn_backend *gpu, const struct nn_conv2d *p) {
        struct nn_backend *cpu;
        uint64_t nx = nn_conv2d_x_elems(p), nw = nn_conv2d_w_elems(p), ny = nn_conv2d_y_elems(p), st = 42;
        float *x = malloc(nx * sizeof(float)), *w = malloc(nw * sizeof(float)), *b = malloc(p->k * sizeof(float));
        float *yc = malloc(ny * sizeof(float)), *yg = malloc(ny * sizeof(float));
        float *wabs = malloc(nw * sizeof(float)), *xabs = malloc(nx * sizeof(float));
        float *yabs = malloc(ny * sizeof(float)), *babs = malloc(p->k * sizeof(float));
        struct nn_backend *bes[2];
        float *outs[2] = { yc, yg };
        double worst = 0;

        cr_assert_eq(nn_cpu_backend_new(2, &cpu), 0);
        bes[0] = cpu;
        bes[1] = gpu;
        for (uint64_t i = 0; i < nx; i++)
                xabs[i] = fabsf(x[i] = conv_rng(&st));
        for (uint64_t i = 0; i < nw; i++)
                wabs[i] = fabsf(w[i] = conv_rng(&st));
        for (uint64_t i = 0; i < p->k; i++)
                babs[i] = fabsf(b[i] = conv_rng(&st));
        for (int i = 0; i < 2; i++) {
                struct nn_backend *be = bes[i];
                float *dx = be->ops->alloc(be, nx), *dw = be->ops->alloc(be, nw), *db = be->ops->alloc(be, p->k);
                float *dy = be->ops->alloc(be, ny);

                cr_assert(dx && dw && db && dy);
                be->ops->write(be, dx, x, nx);
                be->ops->write(be, dw, w, nw);
                be->ops->write(be, db, b, p->k);
                be->ops->conv2d(be, p, dx, dw, db, dy);
                be->ops->read(be, outs[i], dy, ny);
                cr_assert_eq(be->ops->status(be), 0, "conv2d on %s", be->ops->name);
                if (i == 0) {
                        /* Σ|w·x| + |bias| by the same op on the CPU. */
                        struct nn_conv2d plain = *p;

                        plain.act = NN_ACT_NONE;
                        be->ops->write(be, dx, xabs, nx);
                        be->ops->write(be, dw, wabs, nw);
                        be->ops->write(be, db, babs, p->k);
                        be->ops->conv2d(be, &plain, dx, dw, db, dy);
                        be->ops->read(be, yabs, dy, ny);
                }
                be->ops->release(be, dx);
                be->ops->release(be, dw);
                be->ops->release(be, db);
                be->ops->release(be, dy);
        }
        for (uint64_t i = 0; i < ny; i++) {
                double d = fabs((double) yc[i] - yg[i]) / (yabs[i] + 1e-30);
                worst = d > worst ? d : worst;
        }
        nn_backend_free(cpu);
        free(x);
        free(w);
        free(b);
        free(yc);
        free(yg);
        free(wabs);
        free(xabs);
        free(yabs);
        free(babs);
        return worst;
}

Test(nn_cuda, conv2d_on_cudnn_matches_the_cpu) {
        static const struct nn_conv2d shapes[] = {
                { .n = 2, .c = 8, .h = 13, .w = 11, .k = 6, .r = 3, .s = 3, .stride_h = 1, .stride_w = 1,
                  .pad_h = 1, .pad_w = 1, .dilation_h = 1, .dilation_w = 1, .groups = 1 },
                { .n = 1, .c = 16, .h = 17, .w = 17, .k = 16, .r = 3, .s = 3, .stride_h = 2, .stride_w = 2,
                  .pad_h = 1, .pad_w = 1, .dilation_h = 2, .dilation_w = 2, .groups = 4, .act = NN_ACT_SILU },
                { .n = 1, .c = 32, .h = 9, .w = 9, .k = 32, .r = 3, .s = 3, .stride_h = 1, .stride_w = 1,
                  .pad_h = 1, .pad_w = 1, .dilation_h = 1, .dilation_w = 1, .groups = 32 },
                { .n = 1, .c = 64, .h = 16, .w = 16, .k = 48, .r = 1, .s = 1, .stride_h = 1, .stride_w = 1,
                  .dilation_h = 1, .dilation_w = 1, .groups = 1 },
        };
        struct nn_backend *gpu = cuda_or_skip();

        for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
                struct nn_conv2d tf32 = shapes[i];
                double f32 = conv_max_rel_diff(gpu, &shapes[i]), t;

                tf32.allow_tf32 = true;
                t = conv_max_rel_diff(gpu, &tf32);
                /* f32 with FMAs: the sums' rounding only (γ(L) ≈ L·2^-24);
                 * TF32: inputs rounded to 10 bits. */
                cr_assert_lt(f32, 1e-4, "shape %zu: f32 differs from the CPU by %g of Σ|w·x|", i, f32);
                cr_assert_lt(t, 4e-3, "shape %zu: tf32 differs from the CPU by %g of Σ|w·x|", i, t);
        }
        cr_assert_not_null(strstr(gpu->ops->libraries(gpu), "cuDNN"), "%s", gpu->ops->libraries(gpu));
        nn_backend_free(gpu);
}

Test(nn_cuda, group_norm_and_upsample_match_the_cpu) {
        const size_t n = 2, c = 32, hw = 50, groups = 8, total = n * c * hw;
        struct nn_backend *gpu = cuda_or_skip(), *cpu, *bes[2];
        float *x = malloc(total * sizeof(float)), *g = malloc(c * sizeof(float)), *b = malloc(c * sizeof(float));
        float *out[2] = { malloc(4 * total * sizeof(float)), malloc(4 * total * sizeof(float)) };
        uint64_t st = 7;

        cr_assert_eq(nn_cpu_backend_new(2, &cpu), 0);
        bes[0] = cpu;
        bes[1] = gpu;
        for (size_t i = 0; i < total; i++)
                x[i] = 10.0f + conv_rng(&st);
        for (size_t i = 0; i < c; i++) {
                g[i] = conv_rng(&st);
                b[i] = conv_rng(&st);
        }
        for (int i = 0; i < 2; i++) {
                struct nn_backend *be = bes[i];
                float *dx = be->ops->alloc(be, total), *dy = be->ops->alloc(be, 4 * total);
                float *dg = be->ops->alloc(be, c), *db = be->ops->alloc(be, c);

                be->ops->write(be, dx, x, total);
                be->ops->write(be, dg, g, c);
                be->ops->write(be, db, b, c);
                be->ops->group_norm(be, dx, dx, n, c, hw, groups, dg, db, 1e-5f, true);
                /* hw = 50 as 5 rows of 10. */
                be->ops->upsample2x(be, dy, dx, n * c, 5, 10);
                be->ops->read(be, out[i], dy, 4 * total);
                cr_assert_eq(be->ops->status(be), 0);
                be->ops->release(be, dx);
                be->ops->release(be, dy);
                be->ops->release(be, dg);
                be->ops->release(be, db);
        }
        for (size_t i = 0; i < 4 * total; i++)
                cr_assert_float_eq(out[0][i], out[1][i], 1e-4, "element %zu", i);
        nn_backend_free(cpu);
        nn_backend_free(gpu);
        free(x);
        free(g);
        free(b);
        free(out[0]);
        free(out[1]);
}

/* The transformer ops (SD's attention blocks, CLIP, the VAE's attention):
 * the same inputs through both backends. */
Test(nn_cuda, transformer_ops_match_the_cpu) {
        const size_t n = 150, heads = 4, hd = 16, dim = heads * hd, ctx = 9;
        struct nn_backend *gpu = cuda_or_skip(), *cpu, *bes[2];
        float *x = malloc(n * 2 * dim * sizeof(float)), *w = malloc(dim * dim * sizeof(float));
        float *b = malloc(2 * dim * sizeof(float)), *out[2];
        uint64_t st = 11;

        cr_assert_eq(nn_cpu_backend_new(2, &cpu), 0);
        bes[0] = cpu;
        bes[1] = gpu;
        for (size_t i = 0; i < n * 2 * dim; i++)
                x[i] = conv_rng(&st);
        for (size_t i = 0; i < dim * dim; i++)
                w[i] = conv_rng(&st) * 0.2f;
        for (size_t i = 0; i < 2 * dim; i++)
                b[i] = conv_rng(&st);
        for (int i = 0; i < 2; i++) {
                struct nn_backend *be = bes[i];
                float *dx = be->ops->alloc(be, n * 2 * dim), *dw = be->ops->alloc(be, dim * dim);
                float *db = be->ops->alloc(be, 2 * dim), *t1 = be->ops->alloc(be, n * 2 * dim);
                float *t2 = be->ops->alloc(be, n * 2 * dim), *t3 = be->ops->alloc(be, n * 2 * dim);

                out[i] = malloc(n * 2 * dim * sizeof(float));
                be->ops->write(be, dx, x, n * 2 * dim);
                be->ops->write(be, dw, w, dim * dim);
                be->ops->write(be, db, b, 2 * dim);
                be->ops->layer_norm(be, t1, dx, n, dim, db, db + dim, 1e-5f);
                be->ops->linear(be, t2, t1, n, dim, dim, dw, db);
                /* Self-attention of t2 (as q, k and v), causal; then
                 * cross-attention of those outputs to ctx rows of t1. */
                be->ops->attention_full(be, t3, t2, t2, t2, n, n, heads, hd, true);
                be->ops->attention_full(be, t2, t3, t1, t1, n, ctx, heads, hd, false);
                be->ops->quick_gelu(be, t2, n * dim);
                be->ops->scale(be, t2, n * dim, 0.5f);
                be->ops->transpose(be, t3, t2, n, dim);
                be->ops->geglu(be, t1, dx, n, dim);
                be->ops->add(be, t3, t1, n * dim);
                be->ops->read(be, out[i], t3, n * dim);
                cr_assert_eq(be->ops->status(be), 0);
                be->ops->release(be, dx);
                be->ops->release(be, dw);
                be->ops->release(be, db);
                be->ops->release(be, t1);
                be->ops->release(be, t2);
                be->ops->release(be, t3);
        }
        for (size_t i = 0; i < n * dim; i++)
                cr_assert_float_eq(out[0][i], out[1][i], 1e-4, "element %zu", i);
        nn_backend_free(cpu);
        nn_backend_free(gpu);
        free(x);
        free(w);
        free(b);
        free(out[0]);
        free(out[1]);
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

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* textgen on the CPU backend, with random-weight models of real shapes
 * written as GGUF (llama2.c's 110M and TinyLlama's 1.1B):
 *   - decode tokens/s at batch 1 next to the memory-bandwidth roofline
 *     measured in the same run (weight bytes read per token ÷ read GB/s);
 *   - prefill tokens/s next to OpenBLAS sgemm on the same shapes;
 *   - teacher-forced verification time ÷ generation time for 256 tokens.
 * With --device cuda, the same on the CUDA backend (GPU 0): the reference
 * is then the backend's own matmul (cublasGemmEx, f16 inputs, f32 sums) on
 * the same shapes, and there is no roofline column.
 * Usage: bench-textgen [--sizes 110m,1b] [--types f16,q8_0,q4_K]
 *                      [--threads 1,2] [--device cpu|cuda] [--dir DIR] */

#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gguf.h"
#include "llama.h"
#include "nn-quant.h"
#include "sampler.h"
#include "tiny-model.h"

#define DECODE_TOKENS 32
#define PREFILL_TOKENS 64
#define VERIFY_TOKENS 256

static double now_sec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

/* ---- Read bandwidth: every thread sums its share of a buffer larger than
 * any cache, as a decoding step streams the weights. ---- */

struct bw_task {
        const float *p;
        size_t n;
        double sum;
};

/* Four independent vector sums, so that the loop waits on memory, not on
 * its own additions (a scalar loop here measured 17.6 GB/s on a machine
 * whose f16 decoding read 21). */
typedef float v16sf __attribute__((vector_size(64)));

static void *bw_thread(void *arg) {
        struct bw_task *t = arg;
        v16sf a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 };

        for (size_t i = 0; i + 64 <= t->n; i += 64) {
                v16sf x0, x1, x2, x3;

                memcpy(&x0, t->p + i, 64);
                memcpy(&x1, t->p + i + 16, 64);
                memcpy(&x2, t->p + i + 32, 64);
                memcpy(&x3, t->p + i + 48, 64);
                a0 += x0;
                a1 += x1;
                a2 += x2;
                a3 += x3;
        }
        a0 += a1 + a2 + a3;
        for (int j = 0; j < 16; j++)
                t->sum += a0[j];
        return NULL;
}

static double read_bandwidth(unsigned threads) {
        size_t n = (size_t) 256 << 20;  /* 1 GiB of floats */
        float *buf = malloc(n * sizeof(float));
        struct bw_task tasks[64];
        pthread_t tid[64];
        double best = 0;

        if (!buf)
                return 0;
        for (size_t i = 0; i < n; i++)
                buf[i] = (float) (i & 7);
        for (int rep = 0; rep < 3; rep++) {
                double t0 = now_sec();
                for (unsigned i = 0; i < threads; i++) {
                        tasks[i] = (struct bw_task) { .p = buf + i * (n / threads), .n = n / threads };
                        pthread_create(&tid[i], NULL, bw_thread, &tasks[i]);
                }
                for (unsigned i = 0; i < threads; i++)
                        pthread_join(tid[i], NULL);
                double gbs = (double) n * sizeof(float) / (now_sec() - t0) / 1e9;
                if (gbs > best)
                        best = gbs;
        }
        free(buf);
        return best;
}

/* ---- One model ---- */

static int argmax(const float *l, size_t n) {
        size_t b = 0;

        for (size_t i = 1; i < n; i++)
                if (l[i] > l[b])
                        b = i;
        return (int) b;
}

/* The sgemm reference: the model's matrices (one layer's seven, times the
 * layers, plus the output) against PREFILL_TOKENS activations, in f32. */
static double sgemm_flops(const struct llama_hparams *hp, unsigned threads) {
        struct { size_t rows, cols, times; } shapes[] = {
                { hp->n_head * hp->head_dim, hp->n_embd, 1 },
                { hp->n_head_kv * hp->head_dim, hp->n_embd, 2 },
                { hp->n_embd, hp->n_head * hp->head_dim, 1 },
                { hp->n_ff, hp->n_embd, 2 },
                { hp->n_embd, hp->n_ff, 1 },
        };
        double flops = 0, el = 0;
        size_t M = PREFILL_TOKENS;

        openblas_set_num_threads((int) threads);
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
                size_t R = shapes[s].rows, C = shapes[s].cols;
                float *w = malloc(R * C * sizeof(float)), *x = malloc(M * C * sizeof(float));
                float *y = malloc(M * R * sizeof(float));

                /* Touched and run once untimed: page faults are not sgemm's. */
                for (size_t i = 0; i < R * C; i++)
                        w[i] = (float) (i % 7) * 0.01f;
                for (size_t i = 0; i < M * C; i++)
                        x[i] = (float) (i % 5) * 0.01f;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) M, (int) R, (int) C, 1.0f, x, (int) C,
                            w, (int) C, 0.0f, y, (int) R);
                double t0 = now_sec();
                for (size_t rep = 0; rep < shapes[s].times * 2; rep++) {
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) M, (int) R, (int) C, 1.0f, x, (int) C,
                                    w, (int) C, 0.0f, y, (int) R);
                        flops += 2.0 * (double) M * (double) R * (double) C;
                }
                el += now_sec() - t0;
                free(w);
                free(x);
                free(y);
        }
        openblas_set_num_threads(1);    /* back to what the CPU backend uses */
        return flops / el;
}

/* The GPU reference: the CUDA backend's matmul (cublasGemmEx behind it) on
 * the shapes of sgemm_flops, with f16 weights made up here.  Their device
 * copies stay until the backend is freed. */
static double backend_gemm_flops(struct nn_backend *be, const struct llama_hparams *hp) {
        struct { size_t rows, cols, times; } shapes[] = {
                { hp->n_head * hp->head_dim, hp->n_embd, 1 },
                { hp->n_head_kv * hp->head_dim, hp->n_embd, 2 },
                { hp->n_embd, hp->n_head * hp->head_dim, 1 },
                { hp->n_ff, hp->n_embd, 2 },
                { hp->n_embd, hp->n_ff, 1 },
        };
        const struct nn_backend_ops *op = be->ops;
        double flops = 0, el = 0;
        size_t M = PREFILL_TOKENS;

        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
                size_t R = shapes[s].rows, C = shapes[s].cols;
                uint16_t *wh = malloc(R * C * sizeof(uint16_t));
                float *xh = malloc(M * C * sizeof(float));
                struct nn_weight w = { .type = NN_TYPE_F16, .rows = R, .cols = C, .data = wh };
                float *x, *y;

                if (!wh || !xh)
                        return 0;
                for (size_t i = 0; i < R * C; i++)
                        wh[i] = nn_f32_to_fp16((float) (i % 7) * 0.01f);
                for (size_t i = 0; i < M * C; i++)
                        xh[i] = (float) (i % 5) * 0.01f;
                x = op->alloc(be, M * C);
                y = op->alloc(be, M * R);
                if (!x || !y || op->upload(be, &w) < 0)
                        return 0;
                op->write(be, x, xh, M * C);
                /* Run once untimed: cuBLAS loads its kernels. */
                op->matmul(be, &w, x, M, y);
                op->status(be);
                double t0 = now_sec();
                for (size_t rep = 0; rep < shapes[s].times * 2; rep++) {
                        op->matmul(be, &w, x, M, y);
                        flops += 2.0 * (double) M * (double) R * (double) C;
                }
                if (op->status(be) < 0)
                        return 0;
                el += now_sec() - t0;
                op->release(be, x);
                op->release(be, y);
                free(wh);
                free(xh);
        }
        return el > 0 ? flops / el : 0;
}

static bool use_cuda;

static void bench_model(const char *path, const char *label, const char *type, unsigned threads, double bw) {
        struct gguf *g;
        struct nn_backend *be;
        struct llama_model *m;
        struct llama_context *c;
        char err[512];
        const float *logits;
        int32_t prompt[PREFILL_TOKENS], tok;
        double t0, decode_s, prefill_s, gen_s, verify_s;

        snprintf(err, sizeof(err), "cannot start the backend");
        if (gguf_open(path, &g, err, sizeof(err)) < 0 ||
            (use_cuda ? nn_cuda_backend_new(0, &be, err, sizeof(err)) : nn_cpu_backend_new(threads, &be)) < 0 ||
            llama_model_load(g, be, &m, err, sizeof(err)) < 0) {
                fprintf(stderr, "bench-textgen: %s\n", err);
                exit(1);
        }
        const struct llama_hparams *hp = llama_model_hparams(m);
        if (llama_context_new(m, PREFILL_TOKENS + VERIFY_TOKENS + 8, PREFILL_TOKENS, &c) < 0) {
                fprintf(stderr, "bench-textgen: out of memory for the context\n");
                exit(1);
        }
        for (int i = 0; i < PREFILL_TOKENS; i++)
                prompt[i] = 300 + i;

        /* Prefill. */
        llama_eval(c, prompt, PREFILL_TOKENS, false, &logits);   /* warm the page cache and the kernels */
        llama_context_rewind(c, 0);
        t0 = now_sec();
        llama_eval(c, prompt, PREFILL_TOKENS, false, &logits);
        prefill_s = now_sec() - t0;

        /* Decode at batch 1. */
        t0 = now_sec();
        for (int i = 0; i < DECODE_TOKENS; i++) {
                tok = argmax(logits, hp->n_vocab);
                llama_eval(c, &tok, 1, false, &logits);
        }
        decode_s = now_sec() - t0;

        /* Generation of VERIFY_TOKENS after an 8-token prompt, then its
         * teacher-forced check. */
        int32_t *seq = malloc((8 + VERIFY_TOKENS) * sizeof(int32_t));
        float *scratch = malloc(hp->n_vocab * sizeof(float));
        struct sampler_params sp = SAMPLER_PARAMS_DEFAULT;
        sp.temperature = 0;
        memcpy(seq, prompt, 8 * sizeof(int32_t));
        llama_context_rewind(c, 0);
        t0 = now_sec();
        llama_eval(c, seq, 8, false, &logits);
        for (int i = 0; i < VERIFY_TOKENS; i++) {
                seq[8 + i] = argmax(logits, hp->n_vocab);
                if (i + 1 < VERIFY_TOKENS)
                        llama_eval(c, &seq[8 + i], 1, false, &logits);
        }
        gen_s = now_sec() - t0;
        llama_context_rewind(c, 0);
        t0 = now_sec();
        size_t n_seq = 8 + VERIFY_TOKENS - 1, ok = 0;
        for (size_t i = 0; i < n_seq; i += PREFILL_TOKENS) {
                size_t n = n_seq - i < PREFILL_TOKENS ? n_seq - i : PREFILL_TOKENS;
                llama_eval(c, seq + i, n, true, &logits);
                for (size_t j = 0; j < n; j++)
                        if (i + j + 1 >= 8)
                                ok += sampler_admits(&sp, logits + j * hp->n_vocab, hp->n_vocab, seq, i + j + 1,
                                                     seq[i + j + 1], 0.5f, scratch);
        }
        verify_s = now_sec() - t0;

        /* A decoding step reads every weight once, the embedding row aside. */
        double bytes = (double) llama_model_weight_bytes(m) -
                       (double) nn_row_bytes(gguf_find_tensor(g, "token_embd.weight")->type, hp->n_embd) *
                       (hp->n_vocab - 1) * (gguf_find_tensor(g, "output.weight") ? 1 : 0);
        double roof = bw > 0 ? bw * 1e9 / bytes : 0;
        double tps = DECODE_TOKENS / decode_s;
        double prefill_flops = 2.0 * (double) llama_model_n_params(m) * PREFILL_TOKENS / prefill_s;
        double ref_flops = use_cuda ? backend_gemm_flops(be, hp) : sgemm_flops(hp, threads);
        int r = be->ops->status(be);

        printf("%-5s %-5s %2u | %8.1f %8.1f %5.2f | %9.1f %8.1f %8.1f | %7.2f s %6.2f s %5.1f %% %s%s\n", label, type,
               threads, tps, roof, roof > 0 ? tps / roof : 0, PREFILL_TOKENS / prefill_s, prefill_flops / 1e9,
               ref_flops / 1e9, gen_s, verify_s, 100 * verify_s / gen_s,
               ok == VERIFY_TOKENS ? "" : "(verify rejected honest tokens!)",
               r < 0 ? "(device error: the figures are void)" : "");
        fflush(stdout);
        free(seq);
        free(scratch);
        llama_context_free(c);
        llama_model_free(m);
        nn_backend_free(be);
        gguf_close(g);
}

static int usage(void) {
        fprintf(stderr, "usage: bench-textgen [--sizes 110m,1b] [--types f16,q8_0,q4_K] [--threads 1,2] "
                "[--device cpu|cuda] [--dir DIR]\n");
        return 2;
}

int main(int argc, char **argv) {
        char sizes[64] = "110m", types[64] = "f16,q8_0,q4_K", threads_s[32] = "1,2", dir[256] = "";
        static const struct option opts[] = {
                { "sizes", required_argument, NULL, 's' },
                { "types", required_argument, NULL, 't' },
                { "threads", required_argument, NULL, 'j' },
                { "dir", required_argument, NULL, 'd' },
                { "device", required_argument, NULL, 'D' },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1)
                switch (c) {
                case 's': snprintf(sizes, sizeof(sizes), "%s", optarg); break;
                case 't': snprintf(types, sizeof(types), "%s", optarg); break;
                case 'j': snprintf(threads_s, sizeof(threads_s), "%s", optarg); break;
                case 'd': snprintf(dir, sizeof(dir), "%s", optarg); break;
                case 'D':
                        use_cuda = strcmp(optarg, "cuda") == 0;
                        if (use_cuda || strcmp(optarg, "cpu") == 0)
                                break;
                        return usage();
                default:
                        return usage();
                }
        if (!dir[0]) {
                snprintf(dir, sizeof(dir), "/tmp/bench-textgen-XXXXXX");
                if (!mkdtemp(dir)) {
                        perror("mkdtemp");
                        return 1;
                }
        }

        if (use_cuda) {
                /* One line per model: threads and the CPU's bandwidth do
                 * not apply. */
                snprintf(threads_s, sizeof(threads_s), "0");
                printf("device: cuda (GPU 0); reference: the backend's cublasGemmEx matmul\n");
        } else
                printf("CPU kernels: %s\n", nn_simd_name());
        double bw[65] = { 0 };
        char bw_threads[32];
        snprintf(bw_threads, sizeof(bw_threads), "%s", threads_s);
        for (char *save = NULL, *s = strtok_r(bw_threads, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
                unsigned t = (unsigned) atoi(s);
                if (!use_cuda && t >= 1 && t <= 64) {
                        bw[t] = read_bandwidth(t);
                        printf("read bandwidth, %u thread%s: %.1f GB/s\n", t, t > 1 ? "s" : "", bw[t]);
                }
        }
        printf("\nmodel type  th | decode tok/s  roofline ratio | prefill tok/s GFLOP/s %s GFLOP/s | "
               "generate 256  verify  ratio\n", use_cuda ? "gemmEx" : " sgemm");

        char sizes_copy[64];
        snprintf(sizes_copy, sizeof(sizes_copy), "%s", sizes);
        for (char *s1 = NULL, *size = strtok_r(sizes_copy, ",", &s1); size; size = strtok_r(NULL, ",", &s1)) {
                char types_copy[64];
                snprintf(types_copy, sizeof(types_copy), "%s", types);
                for (char *s2 = NULL, *type = strtok_r(types_copy, ",", &s2); type; type = strtok_r(NULL, ",", &s2)) {
                        struct tiny_model_spec spec = tiny_model_spec_default();
                        char path[512], err[512];
                        struct stat st;
                        bool found = false;

                        if (strcmp(size, "1b") == 0) {
                                spec.n_vocab = 32000; spec.n_embd = 2048; spec.n_layer = 22; spec.n_head = 32;
                                spec.n_head_kv = 4; spec.n_ff = 5632; spec.n_ctx = 2048;
                        } else {
                                spec.n_vocab = 32000; spec.n_embd = 768; spec.n_layer = 12; spec.n_head = 12;
                                spec.n_head_kv = 12; spec.n_ff = 2048; spec.n_ctx = 1024;
                        }
                        static const enum nn_type all[] = { NN_TYPE_F32, NN_TYPE_F16, NN_TYPE_BF16, NN_TYPE_Q8_0,
                                                            NN_TYPE_Q4_0, NN_TYPE_Q4_K, NN_TYPE_Q5_K, NN_TYPE_Q6_K };
                        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
                                if (strcmp(type, nn_type_name(all[i])) == 0) {
                                        spec.weight_type = spec.embd_type = all[i];
                                        found = true;
                                }
                        if (!found) {
                                fprintf(stderr, "bench-textgen: unknown type %s\n", type);
                                return 2;
                        }
                        snprintf(path, sizeof(path), "%s/%s-%s.gguf", dir, size, type);
                        if (stat(path, &st) < 0 && tiny_model_write(&spec, path, err, sizeof(err)) < 0) {
                                fprintf(stderr, "bench-textgen: %s\n", err);
                                return 1;
                        }
                        char tcopy[32];
                        snprintf(tcopy, sizeof(tcopy), "%s", threads_s);
                        for (char *s3 = NULL, *t = strtok_r(tcopy, ",", &s3); t; t = strtok_r(NULL, ",", &s3)) {
                                unsigned th = (unsigned) atoi(t);
                                if (use_cuda || (th >= 1 && th <= 64))
                                        bench_model(path, size, type, th, bw[th]);
                        }
                }
        }
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* conv2d on SD-UNet-like shapes, against references measured in the same
 * run:
 *
 *   - the engine's conv2d op called directly (CPU backend, T threads);
 *   - OpenBLAS sgemm of the im2col shape (k × c·r·s times c·r·s × oh·ow, on
 *     T threads, im2col made beforehand and not timed): the CPU roofline
 *     the op is built on;
 *   - the conv2d skill through a swarm-worker (submit to result, memfd
 *     passing included), and its verification (the Freivalds check on the
 *     im2col form) as a share of the convolution;
 *   - with a GPU: the engine's op on the CUDA backend (cuDNN), f32 and TF32;
 *     without one, the reason.
 *
 * Usage: bench-conv2d SWARM_WORKER CONV2D.so [THREADS] */

#include <cblas.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conv-check.h"
#include "log.h"
#include "macro.h"
#include "nn-backend.h"
#include "nn-pool.h"
#include "shm.h"
#include "pool-harness.h"
#include "skill-pool.h"

static sd_event *event;

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

#define die pool_harness_die

static struct pool_wait run(struct skill_pool *p, enum pool_op op, const struct swarm_values *in,
                            const struct swarm_values *out) {
        return pool_harness_run(event, p, op, in, out);
}

/* The skill on the CPU, on threads threads.  The pool borrows its config
 * (a worker that restarts is sent it again): freed after the pool. */
static struct swarm_values *pool_config;

static struct skill_pool *start_pool(const char *worker, const char *plugin, unsigned threads) {
        pool_config = swarm_values_new();
        swarm_values_set_string(pool_config, "device", "cpu");
        swarm_values_set_int(pool_config, "threads", threads);
        return pool_harness_start(event, worker, plugin, pool_config);
}

static void fill(float *v, uint64_t n, uint64_t seed) {
        for (uint64_t i = 0; i < n; i++)
                v[i] = (float) (((i + seed) * 7919) % 1000) / 1000.0f - 0.5f;
}

/* Best time in µs of reps runs of the op on be. */
static uint64_t time_op(struct nn_backend *be, const struct nn_conv2d *p, const float *x, const float *w,
                        const float *b, unsigned reps) {
        float *dx = be->ops->alloc(be, nn_conv2d_x_elems(p)), *dw = be->ops->alloc(be, nn_conv2d_w_elems(p));
        float *db = be->ops->alloc(be, p->k), *dy = be->ops->alloc(be, nn_conv2d_y_elems(p));
        uint64_t best = UINT64_MAX;

        if (!dx || !dw || !db || !dy)
                die("alloc", -ENOMEM);
        be->ops->write(be, dx, x, nn_conv2d_x_elems(p));
        be->ops->write(be, dw, w, nn_conv2d_w_elems(p));
        be->ops->write(be, db, b, p->k);
        /* The first run chooses cuDNN's algorithm and warms caches. */
        be->ops->conv2d(be, p, dx, dw, db, dy);
        if (be->ops->status(be) < 0)
                die("conv2d", be->ops->status(be));
        for (unsigned r = 0; r < reps; r++) {
                uint64_t t = now_usec();

                be->ops->conv2d(be, p, dx, dw, db, dy);
                (void) be->ops->status(be);     /* waits for a GPU */
                t = now_usec() - t;
                best = t < best ? t : best;
        }
        be->ops->release(be, dx);
        be->ops->release(be, dw);
        be->ops->release(be, db);
        be->ops->release(be, dy);
        return best;
}

/* sgemm of the im2col shape on threads OpenBLAS threads. */
static uint64_t time_sgemm(const struct nn_conv2d *p, const float *x, const float *w, unsigned threads,
                           unsigned reps) {
        uint64_t L = nn_conv2d_dot_len(p), P = (uint64_t) nn_conv2d_out_h(p) * nn_conv2d_out_w(p);
        float *col = malloc(L * P * sizeof(float)), *y = malloc(p->k * P * sizeof(float));
        uint64_t best = UINT64_MAX;

        if (!col || !y)
                die("malloc", -ENOMEM);
        nn_conv2d_im2col(p, x, 0, 0, 0, L, 0, P, col, P, false);
        openblas_set_num_threads((int) threads);
        for (unsigned r = 0; r <= reps; r++) {
                uint64_t t = now_usec();

                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) p->k, (int) P, (int) L, 1.0f, w, (int) L,
                            col, (int) P, 0.0f, y, (int) P);
                t = now_usec() - t;
                if (r > 0)
                        best = t < best ? t : best;
        }
        /* The engine's CPU backend runs sgemm per pool thread. */
        openblas_set_num_threads(1);
        /* OpenBLAS's threads spin for a while after a call: let them settle. */
        usleep(300 * 1000);
        free(col);
        free(y);
        return best;
}

static double gflops(const struct nn_conv2d *p, uint64_t usec) {
        return nn_conv2d_flops(p) / ((double) usec / 1e6) / 1e9;
}

int main(int argc, char *argv[]) {
#define CONV(C, H, K, R, PAD) ((struct nn_conv2d) { .n = 1, .c = C, .h = H, .w = H, .k = K, .r = R, .s = R, \
                                                      .stride_h = 1, .stride_w = 1, .pad_h = PAD, .pad_w = PAD,  \
                                                      .dilation_h = 1, .dilation_w = 1, .groups = 1 })
        static const struct {
                const char *name;
                struct nn_conv2d p;
        } shapes[] = {
                { "320x64x64 3x3", CONV(320, 64, 320, 3, 1) },
                { "640x32x32 3x3", CONV(640, 32, 640, 3, 1) },
                { "1280x16x16 3x3", CONV(1280, 16, 1280, 3, 1) },
                { "320x64x64 1x1", CONV(320, 64, 320, 1, 0) },
        };
        unsigned threads = 0;
        struct nn_backend *cpu, *gpu = NULL;
        struct skill_pool *pool;
        struct nn_pool *check_pool;
        char why[512] = "";
        sigset_t mask;

        if (argc < 3) {
                fprintf(stderr, "Usage: %s SWARM_WORKER CONV2D.so [THREADS]\n"
                        "e.g.   %s build/daemon/swarm-worker build/plugins/conv2d/conv2d.so\n", argv[0], argv[0]);
                return EXIT_FAILURE;
        }
        if (argc > 3)
                threads = (unsigned) atoi(argv[3]);
        if (threads == 0) {
                long n = sysconf(_SC_NPROCESSORS_ONLN);
                threads = n > 0 ? (unsigned) n : 1;
        }
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        if (sd_event_new(&event) < 0)
                die("sd_event_new", -1);
        log_set_max_level(LOG_WARNING);

        if (nn_cpu_backend_new(threads, &cpu) < 0)
                die("cpu backend", -ENOMEM);
        check_pool = nn_pool_new(threads);
        if (nn_cuda_backend_new(0, &gpu, why, sizeof(why)) < 0)
                gpu = NULL;
        pool = start_pool(argv[1], argv[2], threads);

        printf("conv2d f32, NCHW, batch 1, stride 1, same padding; %u thread%s; best of 3-5 runs\n"
               "CPU: %s\n\n", threads, threads == 1 ? "" : "s", cpu->ops->libraries(cpu));
        printf("%-16s %9s %10s %10s %10s %7s %7s %10s %9s %9s\n", "shape (c h w r)", "GFLOP", "sgemm", "engine",
               "worker", "eng/sg", "wrk/eng", "verify ms", "verify %", "check %");
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
                const struct nn_conv2d *p = &shapes[s].p;
                uint64_t nx = nn_conv2d_x_elems(p), nw = nn_conv2d_w_elems(p), t_sgemm, t_op, t_check = UINT64_MAX,
                         t_worker = UINT64_MAX, t_exec = UINT64_MAX, t_verify = UINT64_MAX;
                struct swarm_values *in = swarm_values_new();
                struct swarm_tensor x, w, b;
                unsigned reps = nn_conv2d_flops(p) > 4e9 ? 3 : 5;
                float *y = malloc(nn_conv2d_y_elems(p) * sizeof(float));

                swarm_values_set_allocator(in, shm_allocate, NULL);
                swarm_values_add_tensor(in, "x", SWARM_DTYPE_F32, 4, (const uint64_t[]) { p->n, p->c, p->h, p->w }, &x);
                swarm_values_add_tensor(in, "w", SWARM_DTYPE_F32, 4, (const uint64_t[]) { p->k, p->c, p->r, p->s }, &w);
                swarm_values_add_tensor(in, "bias", SWARM_DTYPE_F32, 1, (const uint64_t[]) { p->k }, &b);
                if (p->pad_h)
                        swarm_values_set_int(in, "padding", p->pad_h);
                fill(x.data, nx, 1);
                fill(w.data, nw, 2);
                fill(b.data, p->k, 3);

                t_sgemm = time_sgemm(p, x.data, w.data, threads, reps);
                t_op = time_op(cpu, p, x.data, w.data, b.data, reps);

                /* The check alone, in this process, on the engine's output. */
                {
                        float *dx = cpu->ops->alloc(cpu, nx), *dw = cpu->ops->alloc(cpu, nw),
                              *db = cpu->ops->alloc(cpu, p->k), *dy = cpu->ops->alloc(cpu, nn_conv2d_y_elems(p));

                        cpu->ops->write(cpu, dx, x.data, nx);
                        cpu->ops->write(cpu, dw, w.data, nw);
                        cpu->ops->write(cpu, db, b.data, p->k);
                        cpu->ops->conv2d(cpu, p, dx, dw, db, dy);
                        cpu->ops->read(cpu, y, dy, nn_conv2d_y_elems(p));
                        for (unsigned r = 0; r < reps; r++) {
                                uint64_t t = now_usec();
                                int k = conv_check(p, x.data, w.data, b.data, y,
                                                   &(struct conv_check_params) { .rounds = 16, .pool = check_pool },
                                                   NULL);
                                t = now_usec() - t;
                                if (k < 0)
                                        die("the check rejected an honest result", k);
                                t_check = t < t_check ? t : t_check;
                        }
                        cpu->ops->release(cpu, dx);
                        cpu->ops->release(cpu, dw);
                        cpu->ops->release(cpu, db);
                        cpu->ops->release(cpu, dy);
                }

                for (unsigned r = 0; r < reps; r++) {
                        struct pool_wait e = run(pool, POOL_EXECUTE, in, NULL), v;

                        t_worker = e.copy.total_usec < t_worker ? e.copy.total_usec : t_worker;
                        t_exec = e.copy.exec_usec < t_exec ? e.copy.exec_usec : t_exec;
                        v = run(pool, POOL_VERIFY, in, e.outputs);
                        t_verify = v.copy.exec_usec < t_verify ? v.copy.exec_usec : t_verify;
                        swarm_values_free(e.outputs);
                }

                printf("%-16s %9.2f %10.1f %10.1f %10.1f %6.2fx %6.2fx %10.1f %8.1f%% %8.1f%%\n", shapes[s].name,
                       nn_conv2d_flops(p) / 1e9, gflops(p, t_sgemm), gflops(p, t_op), gflops(p, t_worker),
                       (double) t_sgemm / (double) t_op, (double) t_op / (double) t_worker, (double) t_verify / 1e3,
                       100.0 * (double) t_verify / (double) t_exec, 100.0 * (double) t_check / (double) t_op);

                if (gpu) {
                        struct nn_conv2d tf32 = *p;

                        tf32.allow_tf32 = true;
                        printf("%-16s %9s %10s %10.1f (cuda f32) %10.1f (cuda tf32) on %s\n", "", "", "",
                               gflops(p, time_op(gpu, p, x.data, w.data, b.data, 10)), gflops(p, time_op(gpu, &tf32,
                               x.data, w.data, b.data, 10)), gpu->ops->name);
                }
                free(y);
                swarm_values_free(in);
        }
        printf("\nGFLOP/s: sgemm = OpenBLAS on the im2col shape (im2col not timed), engine = the op called\n"
               "directly, worker = the skill through swarm-worker (submit to result, memfd passing included).\n"
               "verify = the skill's verify() in the worker (16 rounds); check = conv_check() alone, as a share of\n"
               "the engine op's time.\n");
        if (gpu)
                printf("GPU: %s (%s)\n", gpu->ops->name, gpu->ops->libraries(gpu));
        else
                printf("GPU: none (%s)\n", why);

        skill_pool_free(pool);
        swarm_values_free(pool_config);
        nn_pool_free(check_pool);
        nn_backend_free(cpu);
        nn_backend_free(gpu);
        sd_event_unref(event);
        return EXIT_SUCCESS;
}

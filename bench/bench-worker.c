/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What hosting a skill in a swarm-worker costs, against the same work done
 * in-process, measured in the same run:
 *
 *   - hash of a tiny input: the skill called directly in this process vs
 *     one job through the pool (socket round trip, memfd set-up, worker);
 *   - hash of a large input: the bytes a copy would move (memcpy, the
 *     reference) vs the pool's extra time over the execution itself, which
 *     memfd passing keeps independent of the size;
 *   - gemm: execute vs Freivalds verify through the pool, when gemm.so is
 *     given.
 *
 * Usage: bench-worker SWARM_WORKER HASH.so [GEMM.so] */

#include <dlfcn.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "macro.h"
#include "shm.h"
#include "skill-loader.h"
#include "skill-pool.h"

static sd_event *event;

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static uint64_t now_nsec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return (x > y) - (x < y);
}

static void report(const char *what, uint64_t *v, size_t n) {
        qsort(v, n, sizeof(*v), cmp_u64);
        printf("%-52s %10.1f %10.1f %10.1f\n", what, (double) v[n / 2], (double) v[(n * 99) / 100],
               (double) v[0]);
}

static _Noreturn void die(const char *what, int r) {
        fprintf(stderr, "bench-worker: %s: %s\n", what, strerror(r < 0 ? -r : r));
        exit(EXIT_FAILURE);
}

struct wait {
        bool done;
        struct pool_result copy;
        struct swarm_values *outputs;
};

static void on_done(struct pool_request *req, struct pool_result *res, void *userdata) {
        struct wait *w = userdata;

        w->done = true;
        w->copy = *res;
        if (res->status < 0)
                die(res->error ?: "request failed", res->status);
        w->outputs = TAKE_PTR(res->outputs);
}

static struct wait run(struct skill_pool *p, enum pool_op op, const struct swarm_values *in,
                       const struct swarm_values *out) {
        struct wait w = {};
        int r = skill_pool_submit(p, op, in, out, NULL, 0, on_done, &w, NULL);

        if (r < 0)
                die("submit", r);
        while (!w.done)
                if (sd_event_run(event, UINT64_MAX) < 0)
                        die("event loop", -1);
        return w;
}

static struct skill_pool *start_pool(const char *worker, const char *plugin, const struct swarm_values *config) {
        struct skill_pool_config c = {
                .name = "bench",
                .plugin_path = plugin,
                .worker_path = worker,
                .workers = 1,
                .skill_config = config,
        };
        struct skill_pool *p;
        int r = skill_pool_new(event, &c, &p);

        if (r < 0)
                die("pool", r);
        while (!skill_pool_info(p)) {
                if (skill_pool_restarts(p) > 0)
                        die(skill_pool_last_error(p) ?: "worker failed to start", -1);
                sd_event_run(event, 100 * 1000);
        }
        return p;
}

static struct swarm_values *bytes_input(size_t size) {
        struct swarm_values *v = swarm_values_new();
        void (*release)(void *, uint64_t, void *);
        void *data, *block;

        if (shm_allocate(size, &data, &release, &block, NULL) < 0)
                die("shm", -1);
        memset(data, 0x5a, size);
        swarm_values_add_bytes_borrowed(v, "data", data, size, release, block);
        return v;
}

static void bench_hash(const char *worker, const char *plugin) {
        enum { ROUNDS = 2000, BIG_ROUNDS = 20 };
        static uint64_t direct[ROUNDS], pooled[ROUNDS], big_copy[BIG_ROUNDS], big_overhead[BIG_ROUNDS];
        const size_t big = 64u << 20;
        struct loaded_skill loaded;
        struct swarm_values *tiny = swarm_values_new(), *large = bytes_input(big), *config = swarm_values_new();
        struct skill_pool *p;
        char error[512];
        void *state = NULL;
        char *src, *dst;

        swarm_values_set_bytes(tiny, "data", "hello, swarm", 12);

        /* In-process reference: the same plugin, called directly. */
        if (skill_load(plugin, &loaded, error, sizeof(error)) < 0)
                die(error, -1);
        if (loaded.skill->init && loaded.skill->init(config, &state) < 0)
                die("hash init", -1);
        for (int i = 0; i < ROUNDS; i++) {
                struct swarm_job job;
                uint64_t t = now_nsec();
                swarm_job_init(&job, tiny, 0, NULL, NULL, NULL);
                if (loaded.skill->execute(state, &job) < 0)
                        die("direct execute", -1);
                swarm_job_done(&job);
                direct[i] = now_nsec() - t;
        }
        if (loaded.skill->fini)
                loaded.skill->fini(state);
        skill_unload(&loaded);

        p = start_pool(worker, plugin, config);
        for (int i = 0; i < 100; i++)       /* warm up */
                swarm_values_free(run(p, POOL_EXECUTE, tiny, NULL).outputs);
        for (int i = 0; i < ROUNDS; i++) {
                struct wait w = run(p, POOL_EXECUTE, tiny, NULL);
                pooled[i] = w.copy.total_usec * 1000;
                swarm_values_free(w.outputs);
        }

        src = malloc(big);
        dst = malloc(big);
        memset(src, 1, big);
        memset(dst, 2, big);
        for (int i = 0; i < BIG_ROUNDS; i++) {
                uint64_t t = now_usec();
                memcpy(dst, src, big);
                big_copy[i] = now_usec() - t;
                __asm__ volatile("" : : "r"(dst) : "memory");
        }
        for (int i = 0; i < BIG_ROUNDS; i++) {
                struct wait w = run(p, POOL_EXECUTE, large, NULL);
                big_overhead[i] = w.copy.total_usec - w.copy.exec_usec;
                swarm_values_free(w.outputs);
        }
        free(src);
        free(dst);

        printf("%-52s %10s %10s %10s\n", "hash skill, tiny input (ns)", "p50", "p99", "min");
        report("reference: execute() called in-process, 12 B", direct, ROUNDS);
        report("one job through swarm-worker, 12 B (round trip)", pooled, ROUNDS);
        printf("\n%-52s %10s %10s %10s\n", "64 MiB input (µs)", "p50", "p99", "min");
        report("reference: memcpy of 64 MiB (what a copy costs)", big_copy, BIG_ROUNDS);
        report("pool round trip minus execution, 64 MiB (memfd)", big_overhead, BIG_ROUNDS);

        skill_pool_free(p);
        swarm_values_free(tiny);
        swarm_values_free(large);
        swarm_values_free(config);
}

static void bench_gemm(const char *worker, const char *plugin) {
        static const uint64_t sizes[] = { 256, 512, 1024 };
        struct swarm_values *config = swarm_values_new();
        struct skill_pool *p = start_pool(worker, plugin, config);
        int64_t throughput = 0;

        (void) swarm_values_get_int(skill_pool_info(p)->advert, "throughput", &throughput);
        printf("\n%-30s %12s %12s %12s %10s\n", "gemm f32 through the pool", "execute ms", "GFLOP/s",
               "verify ms", "verify/exec");
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
                uint64_t n = sizes[s], shape[2] = { n, n };
                struct swarm_values *in = swarm_values_new();
                struct swarm_tensor a, b;
                struct wait e, v;
                char label[64];

                swarm_values_set_allocator(in, shm_allocate, NULL);
                swarm_values_add_tensor(in, "a", SWARM_DTYPE_F32, 2, shape, &a);
                swarm_values_add_tensor(in, "b", SWARM_DTYPE_F32, 2, shape, &b);
                for (uint64_t i = 0; i < n * n; i++) {
                        ((float *) a.data)[i] = (float) ((i * 7919) % 1000) / 1000.0f - 0.5f;
                        ((float *) b.data)[i] = (float) ((i * 104729) % 1000) / 1000.0f - 0.5f;
                }
                e = run(p, POOL_EXECUTE, in, NULL);
                v = run(p, POOL_VERIFY, in, e.outputs);
                snprintf(label, sizeof(label), "%" PRIu64 "x%" PRIu64 "x%" PRIu64, n, n, n);
                printf("%-30s %12.2f %12.1f %12.2f %9.1f%%\n", label, (double) e.copy.exec_usec / 1e3,
                       2.0 * (double) (n * n * n) / (double) e.copy.exec_usec / 1e3,
                       (double) v.copy.total_usec / 1e3,
                       100.0 * (double) v.copy.total_usec / (double) e.copy.total_usec);
                swarm_values_free(e.outputs);
                swarm_values_free(in);
        }
        printf("(advertised self-benchmark throughput: %.1f GFLOP/s)\n", (double) throughput / 1e9);
        skill_pool_free(p);
        swarm_values_free(config);
}

int main(int argc, char *argv[]) {
        sigset_t mask;

        if (argc < 3) {
                fprintf(stderr, "Usage: %s SWARM_WORKER HASH.so [GEMM.so]\n"
                        "e.g.   %s build/daemon/swarm-worker build/plugins/hash/hash.so build/plugins/gemm/gemm.so\n",
                        argv[0], argv[0]);
                return EXIT_FAILURE;
        }
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        if (sd_event_new(&event) < 0)
                die("sd_event_new", -1);
        log_set_max_level(LOG_WARNING);

        bench_hash(argv[1], argv[2]);
        if (argc > 3)
                bench_gemm(argv[1], argv[3]);
        sd_event_unref(event);
        return EXIT_SUCCESS;
}

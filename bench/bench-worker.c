/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What hosting a skill in a swarm-worker costs, against references
 * measured in the same run:
 *
 *   - hash of a tiny input through the pool (round trip: socket, memfd
 *     set-up, worker) vs a bare SEQPACKET socketpair ping-pong between two
 *     processes, and vs the skill called in-process;
 *   - hash of a large input: the bytes a copy would move (memcpy) vs the
 *     pool's extra time over the execution itself, which memfd passing
 *     keeps independent of the size;
 *   - gemm, when gemm.so is given: GFLOP/s through the worker vs a direct
 *     cblas_sgemm of the same size in this process, and the Freivalds
 *     verification time as a share of the GEMM time, n = 512 … 4096.
 *
 * Usage: bench-worker SWARM_WORKER HASH.so [GEMM.so] */

#include <cblas.h>
#include <dlfcn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
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
#include "pool-harness.h"
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

#define die pool_harness_die

static struct pool_wait run(struct skill_pool *p, enum pool_op op, const struct swarm_values *in,
                            const struct swarm_values *out) {
        return pool_harness_run(event, p, op, in, out);
}

static struct skill_pool *start_pool(const char *worker, const char *plugin, const struct swarm_values *config) {
        return pool_harness_start(event, worker, plugin, config);
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

/* The floor any out-of-process call pays: a 64-byte message to another
 * process over a SEQPACKET socketpair and back. */
static void bare_round_trips(uint64_t *ns, size_t rounds) {
        char buf[64] = "ping";
        int sv[2];
        pid_t pid;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                die("socketpair", -errno);
        pid = fork();
        if (pid < 0)
                die("fork", -errno);
        if (pid == 0) {
                close(sv[0]);
                while (read(sv[1], buf, sizeof(buf)) > 0)
                        if (write(sv[1], buf, sizeof(buf)) != sizeof(buf))
                                _exit(1);
                _exit(0);
        }
        close(sv[1]);
        for (size_t i = 0; i < rounds + 100; i++) {
                uint64_t t = now_nsec();
                if (write(sv[0], buf, sizeof(buf)) != sizeof(buf) || read(sv[0], buf, sizeof(buf)) <= 0)
                        die("socketpair round trip", -EIO);
                if (i >= 100)   /* after warm-up */
                        ns[i - 100] = now_nsec() - t;
        }
        close(sv[0]);
        waitpid(pid, NULL, 0);
}

static void bench_hash(const char *worker, const char *plugin) {
        enum { ROUNDS = 2000, BIG_ROUNDS = 20 };
        static uint64_t direct[ROUNDS], pooled[ROUNDS], bare[ROUNDS], big_copy[BIG_ROUNDS], big_overhead[BIG_ROUNDS];
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

        bare_round_trips(bare, ROUNDS);

        p = start_pool(worker, plugin, config);
        for (int i = 0; i < 100; i++)       /* warm up */
                swarm_values_free(run(p, POOL_EXECUTE, tiny, NULL).outputs);
        for (int i = 0; i < ROUNDS; i++) {
                struct pool_wait w = run(p, POOL_EXECUTE, tiny, NULL);
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
                struct pool_wait w = run(p, POOL_EXECUTE, large, NULL);
                big_overhead[i] = w.copy.total_usec - w.copy.exec_usec;
                swarm_values_free(w.outputs);
        }
        free(src);
        free(dst);

        printf("%-52s %10s %10s %10s\n", "hash skill, tiny input (ns)", "p50", "p99", "min");
        report("reference: execute() called in-process, 12 B", direct, ROUNDS);
        report("reference: bare socketpair round trip, 2 processes", bare, ROUNDS);
        report("one job through swarm-worker, 12 B (round trip)", pooled, ROUNDS);
        qsort(bare, ROUNDS, sizeof(uint64_t), cmp_u64);
        printf("%-52s %10.1f\n", "host overhead over the bare round trip, p50 (µs)",
               (double) ((int64_t) pooled[ROUNDS / 2] - (int64_t) bare[ROUNDS / 2]) / 1e3);
        printf("\n%-52s %10s %10s %10s\n", "64 MiB input (µs)", "p50", "p99", "min");
        report("reference: memcpy of 64 MiB (what a copy costs)", big_copy, BIG_ROUNDS);
        report("pool round trip minus execution, 64 MiB (memfd)", big_overhead, BIG_ROUNDS);

        skill_pool_free(p);
        swarm_values_free(tiny);
        swarm_values_free(large);
        swarm_values_free(config);
}

static double seconds_of(uint64_t usec) {
        return (double) usec / 1e6;
}

static void bench_gemm(const char *worker, const char *plugin) {
        static const uint64_t sizes[] = { 512, 1024, 2048, 4096 };
        struct swarm_values *config = swarm_values_new();
        struct skill_pool *p = start_pool(worker, plugin, config);
        int64_t throughput = 0;

        (void) swarm_values_get_int(skill_pool_info(p)->advert, "throughput", &throughput);
        printf("\n%-12s %14s %14s %8s %12s %12s %9s\n", "gemm f32", "direct GFLOP/s", "worker GFLOP/s",
               "ratio", "gemm ms", "verify ms", "verify %");
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
                uint64_t n = sizes[s], shape[2] = { n, n }, best_direct = UINT64_MAX, best_worker = UINT64_MAX,
                        best_exec = UINT64_MAX, best_verify = UINT64_MAX;
                unsigned reps = n >= 4096 ? 2 : n >= 2048 ? 3 : 5;
                struct swarm_values *in = swarm_values_new();
                struct swarm_tensor a, b;
                double flop = 2.0 * (double) n * (double) n * (double) n;
                float *c = malloc(n * n * sizeof(float));
                char label[32];

                if (!c)
                        die("malloc", -ENOMEM);
                swarm_values_set_allocator(in, shm_allocate, NULL);
                swarm_values_add_tensor(in, "a", SWARM_DTYPE_F32, 2, shape, &a);
                swarm_values_add_tensor(in, "b", SWARM_DTYPE_F32, 2, shape, &b);
                for (uint64_t i = 0; i < n * n; i++) {
                        ((float *) a.data)[i] = (float) ((i * 7919) % 1000) / 1000.0f - 0.5f;
                        ((float *) b.data)[i] = (float) ((i * 104729) % 1000) / 1000.0f - 0.5f;
                }

                /* OpenBLAS threads busy-wait for a while after each call
                 * (THREAD_TIMEOUT, ~0.1 s): let one process's threads settle
                 * before the other measures, or each steals from the other. */
                for (unsigned r = 0; r < reps; r++) {
                        struct pool_wait e = run(p, POOL_EXECUTE, in, NULL), v;

                        best_worker = e.copy.total_usec < best_worker ? e.copy.total_usec : best_worker;
                        best_exec = e.copy.exec_usec < best_exec ? e.copy.exec_usec : best_exec;
                        v = run(p, POOL_VERIFY, in, e.outputs);
                        best_verify = v.copy.exec_usec ? (v.copy.exec_usec < best_verify ? v.copy.exec_usec : best_verify)
                                                       : (v.copy.total_usec < best_verify ? v.copy.total_usec : best_verify);
                        swarm_values_free(e.outputs);
                }
                usleep(300 * 1000);
                /* Reference: the same product, called directly here. */
                for (unsigned r = 0; r < reps; r++) {
                        uint64_t t = now_usec();
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) n, (int) n, (int) n, 1.0f,
                                    a.data, (int) n, b.data, (int) n, 0.0f, c, (int) n);
                        t = now_usec() - t;
                        best_direct = t < best_direct ? t : best_direct;
                }
                usleep(300 * 1000);
                snprintf(label, sizeof(label), "n = %" PRIu64, n);
                printf("%-12s %14.1f %14.1f %7.3fx %12.1f %12.2f %8.2f%%\n", label,
                       flop / seconds_of(best_direct) / 1e9, flop / seconds_of(best_worker) / 1e9,
                       (double) best_direct / (double) best_worker, (double) best_exec / 1e3,
                       (double) best_verify / 1e3, 100.0 * (double) best_verify / (double) best_exec);
                free(c);
                swarm_values_free(in);
        }
        printf("(best of 2-5 runs each; worker = submit to verified-ready result, incl. memfd passing;\n"
               " advertised self-benchmark throughput: %.1f GFLOP/s)\n", (double) throughput / 1e9);
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

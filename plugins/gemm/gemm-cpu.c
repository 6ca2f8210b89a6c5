/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The CPU back end: OpenBLAS's cblas_sgemm, in blocks of rows so that a
 * cancelled job stops within about a GFLOP's worth of work. */

#include <cblas.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "gemm.h"

/* Work per block between two cancellation checks: a few tens of ms on a
 * CPU, well inside the pool's kill grace. */
#define BLOCK_FLOP 8e9
/* Each call packs all of B again: with fewer rows than this per call that
 * costs more than a few per mille (measured: 64-row blocks ran n = 4096 at
 * 0.7× a single call). */
#define BLOCK_ROWS_MIN 512

#define BENCH_N 256

void gemm_cpu_setup(int threads) {
        if (threads > 0)
                openblas_set_num_threads(threads);
}

int gemm_cpu_threads(void) {
        return openblas_get_num_threads();
}

static uint64_t block_rows(uint64_t m, uint64_t k, uint64_t n) {
        double rows = BLOCK_FLOP / (2.0 * (double) k * (double) n);

        if (rows < BLOCK_ROWS_MIN)
                rows = BLOCK_ROWS_MIN;
        return rows >= (double) m ? m : (uint64_t) rows;
}

int gemm_cpu_run(const float *a, const float *b, float *c, uint64_t m, uint64_t k, uint64_t n,
                 struct swarm_job *job) {
        uint64_t step = block_rows(m, k, n);

        for (uint64_t i = 0; i < m; i += step) {
                uint64_t rows = m - i < step ? m - i : step;

                if (swarm_job_cancelled(job)) {
                        swarm_job_set_error(job, "cancelled after %" PRIu64 " of %" PRIu64 " rows", i, m);
                        return -ECANCELED;
                }
                /* The caller checked that every dimension fits in an int. */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
                            (int) rows, (int) n, (int) k,
                            1.0f, a + i * k, (int) k,
                            b, (int) n,
                            0.0f, c + i * n, (int) n);
        }
        return 0;
}

static double now_sec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

int gemm_cpu_benchmark(unsigned budget_ms, double *ret) {
        _cleanup_free_ float *buf = NULL;
        const size_t size = (size_t) BENCH_N * BENCH_N;
        float *a, *b, *c;
        double start, elapsed;
        unsigned iterations = 0;

        buf = malloc(3 * size * sizeof(float));
        if (!buf)
                return -ENOMEM;
        a = buf;
        b = buf + size;
        c = buf + 2 * size;
        for (size_t i = 0; i < 2 * size; i++)
                buf[i] = (float) ((i * 2654435761u) % 1000) / 1000.0f - 0.5f;

        /* The first call starts OpenBLAS's threads: not part of the rate. */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BENCH_N, BENCH_N, BENCH_N,
                    1.0f, a, BENCH_N, b, BENCH_N, 0.0f, c, BENCH_N);

        start = now_sec();
        do {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BENCH_N, BENCH_N, BENCH_N,
                            1.0f, a, BENCH_N, b, BENCH_N, 0.0f, c, BENCH_N);
                iterations++;
                elapsed = now_sec() - start;
        } while (elapsed < budget_ms * 1e-3 && iterations < 100000);

        if (!(elapsed > 0))
                return -EIO;
        *ret = 2.0 * BENCH_N * BENCH_N * BENCH_N * iterations / elapsed;
        return 0;
}

const char *gemm_cpu_model(void) {
        static char model[128];
        char line[512];
        FILE *f;

        if (model[0])
                return model;

        snprintf(model, sizeof(model), "unknown CPU");
        f = fopen("/proc/cpuinfo", "re");
        if (!f)
                return model;
        while (fgets(line, sizeof(line), f)) {
                char *colon;

                if (strncmp(line, "model name", 10) != 0)
                        continue;
                colon = strchr(line, ':');
                if (!colon)
                        continue;
                colon += strspn(colon + 1, " \t") + 1;
                colon[strcspn(colon, "\n")] = '\0';
                if (*colon)
                        snprintf(model, sizeof(model), "%s", colon);
                break;
        }
        fclose(f);
        return model;
}

static uint64_t meminfo_total(void) {
        char line[256];
        uint64_t kib = 0;
        FILE *f;

        f = fopen("/proc/meminfo", "re");
        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "MemTotal: %" SCNu64 " kB", &kib) == 1)
                        break;
        fclose(f);
        return kib * 1024;
}

/* The smallest memory.max on the way from our cgroup (v2) to the root; 0
 * when none is set or the hierarchy is not readable. */
static uint64_t cgroup_memory_max(void) {
        char line[4096], path[4200];
        uint64_t best = 0;
        FILE *f;

        f = fopen("/proc/self/cgroup", "re");
        if (!f)
                return 0;
        if (!fgets(line, sizeof(line), f) || strncmp(line, "0::", 3) != 0) {
                fclose(f);
                return 0;
        }
        fclose(f);
        line[strcspn(line, "\n")] = '\0';

        for (;;) {
                char value[64];
                uint64_t v;
                char *slash;
                FILE *m;

                snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.max", strcmp(line + 3, "/") ? line + 3 : "");
                m = fopen(path, "re");
                if (m) {
                        if (fgets(value, sizeof(value), m) && sscanf(value, "%" SCNu64, &v) == 1 &&
                            (best == 0 || v < best))
                                best = v;
                        fclose(m);
                }
                slash = strrchr(line + 3, '/');
                if (!slash || slash == line + 3)
                        break;
                *slash = '\0';
        }
        return best;
}

uint64_t gemm_cpu_memory(void) {
        uint64_t total = meminfo_total(), limit = cgroup_memory_max();

        if (limit > 0 && (total == 0 || limit < total))
                return limit;
        return total;
}

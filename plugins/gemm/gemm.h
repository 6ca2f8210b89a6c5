/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The gemm skill's private interface between its front end (gemm.c: config,
 * validation, price, advertise, verify) and its two back ends, OpenBLAS
 * (gemm-cpu.c) and cuBLAS (gemm-cuda.c, built only with -DGEMM_HAVE_CUDA). */

#include <stdint.h>
#include <stdlib.h>
#include <syslog.h>

#include <swarm/skill.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

#define TAKE_PTR(p)                             \
        ({                                      \
                __typeof__(p) _ptr_ = (p);      \
                (p) = NULL;                     \
                _ptr_;                          \
        })

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

enum gemm_precision {
        GEMM_PRECISION_FP32,    /* IEEE float inputs and accumulation */
        GEMM_PRECISION_TF32,    /* inputs rounded to TF32 (10-bit mantissa), float accumulation */
        GEMM_PRECISION_BF16,    /* inputs rounded to bfloat16 (7-bit mantissa), float accumulation */
        _GEMM_PRECISION_MAX,
};

const char *gemm_precision_to_string(enum gemm_precision p);
int gemm_precision_from_string(const char *s, enum gemm_precision *ret);
/* Unit roundoff of converting an f32 input to the precision's input format:
 * 0 for fp32, 2^-11 for tf32, 2^-8 for bf16. */
double gemm_precision_input_roundoff(enum gemm_precision p);

/* Row-major C[m×n] = A[m×k]·B[k×n]; all dimensions ≥ 1 and ≤ INT_MAX.  Both
 * back ends work in blocks of rows and return -ECANCELED (with the job's
 * error set) as soon as swarm_job_cancelled() says so between blocks; other
 * failures also set the job's error. */

/* ---- OpenBLAS ---- */

/* threads > 0 sets OpenBLAS's thread count for the process (one skill per
 * worker, so that is ours to set); 0 keeps its default. */
void gemm_cpu_setup(int threads);
int gemm_cpu_threads(void);
int gemm_cpu_run(const float *a, const float *b, float *c, uint64_t m, uint64_t k, uint64_t n,
                 struct swarm_job *job);
/* FLOP/s of a short sgemm loop (about budget_ms milliseconds). */
int gemm_cpu_benchmark(unsigned budget_ms, double *ret);
/* "AMD EPYC 7B13" from /proc/cpuinfo, or "unknown CPU"; a static buffer. */
const char *gemm_cpu_model(void);
/* Memory this worker may use: MemTotal, capped by its cgroup's memory.max. */
uint64_t gemm_cpu_memory(void);

/* ---- cuBLAS ---- */

struct gemm_cuda;

#ifdef GEMM_HAVE_CUDA
/* Opens device index (or the first, for -1): sets it current, creates the
 * context and a cuBLAS handle once for this worker.  -ENODEV when there is
 * no usable device, with the reason in why; -EIO and -ENOMEM otherwise. */
int gemm_cuda_open(int device, struct gemm_cuda **ret, char *why, size_t why_size);
void gemm_cuda_close(struct gemm_cuda *g);
int gemm_cuda_run(struct gemm_cuda *g, enum gemm_precision precision,
                  const float *a, const float *b, float *c, uint64_t m, uint64_t k, uint64_t n,
                  struct swarm_job *job);
int gemm_cuda_benchmark(struct gemm_cuda *g, unsigned budget_ms, double *ret);
const char *gemm_cuda_name(const struct gemm_cuda *g);
uint64_t gemm_cuda_memory(const struct gemm_cuda *g);
#else
#include <stdio.h>

static inline int gemm_cuda_open(int device, struct gemm_cuda **ret, char *why, size_t why_size) {
        snprintf(why, why_size, "built without CUDA support");
        return -ENODEV;
}
static inline void gemm_cuda_close(struct gemm_cuda *g) {
}
static inline int gemm_cuda_run(struct gemm_cuda *g, enum gemm_precision precision,
                                const float *a, const float *b, float *c, uint64_t m, uint64_t k, uint64_t n,
                                struct swarm_job *job) {
        return -ENODEV;
}
static inline int gemm_cuda_benchmark(struct gemm_cuda *g, unsigned budget_ms, double *ret) {
        return -ENODEV;
}
static inline const char *gemm_cuda_name(const struct gemm_cuda *g) {
        return "no CUDA support";
}
static inline uint64_t gemm_cuda_memory(const struct gemm_cuda *g) {
        return 0;
}
#endif

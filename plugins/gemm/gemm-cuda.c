/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The GPU back end: cuBLAS through the CUDA runtime's host API (no kernels
 * of our own).  The context, a stream and the cuBLAS handle are made once
 * per worker in gemm_cuda_open(); device buffers and the pinned staging
 * buffer are allocated on first use and grown, never shrunk, so that a
 * worker serving jobs of similar sizes allocates nothing per job.
 *
 * Layout: cuBLAS is column-major.  A row-major m×n matrix is the
 * column-major n×m matrix of its transpose, so row-major C = A·B is computed
 * as column-major Cᵀ = Bᵀ·Aᵀ: operands swapped, no transposition.
 *
 * Data path: job inputs live in shared memory that is not page-locked, so
 * they go through a pinned staging buffer split in two halves: the CPU fills
 * one half while the DMA engine drains the other.
 *
 * Linking: the CUDA runtime and cuBLAS are dlopen()ed by soname on first
 * use, not linked, so that the module loads (and serves on OpenBLAS) where
 * the CUDA libraries are not installed, and a worker told device: cpu never
 * maps them.  They are loaded RTLD_NODELETE and stay for the life of the
 * process: CUDA does not support being unloaded. */

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cuda-fatal.h"
#include "gemm.h"

/* Pinned staging, both halves together. */
#define STAGING_MAX ((size_t) 64 << 20)
#define STAGING_MIN ((size_t) 1 << 20)
/* Device memory for one block of rows of A and C; B is whole. */
#define BLOCK_BYTES_MAX ((uint64_t) 512 << 20)

#define BENCH_N 2048

struct gemm_cuda {
        int device;
        char name[256];
        uint64_t memory;
        /* Set after an error that leaves the context unusable: every later
         * job fails with -ENODEV instead of trying again. */
        bool broken;

        cudaStream_t stream;
        cublasHandle_t blas;
        cudaEvent_t staged[2];  /* the DMA from/to each staging half is done */

        unsigned char *staging; /* pinned */
        size_t staging_size;

        float *d_a, *d_b, *d_c;
        size_t d_a_size, d_b_size, d_c_size;
};

/* ---- The libraries ---- */

#define CUDART_FUNCTIONS(X)                                                     \
        X(cudaGetDeviceCount) X(cudaGetErrorString) X(cudaGetLastError)        \
        X(cudaSetDevice) X(cudaFree) X(cudaGetDeviceProperties)                 \
        X(cudaStreamCreateWithFlags) X(cudaStreamDestroy)                       \
        X(cudaStreamSynchronize) X(cudaEventCreateWithFlags)                    \
        X(cudaEventDestroy) X(cudaEventRecord) X(cudaEventSynchronize)          \
        X(cudaMalloc) X(cudaMallocHost) X(cudaFreeHost) X(cudaMemcpyAsync)      \
        X(cudaMemsetAsync)
/* The _v2 names are what cublas_v2.h's macros resolve to. */
#define CUBLAS_FUNCTIONS(X)                                                     \
        X(cublasCreate_v2) X(cublasDestroy_v2) X(cublasSetStream_v2)            \
        X(cublasGemmEx) X(cublasGetStatusString)

/* Typed from the headers' own prototypes. */
static struct {
#define API_FIELD(f) __typeof__(f) *f;
        CUDART_FUNCTIONS(API_FIELD)
        CUBLAS_FUNCTIONS(API_FIELD)
#undef API_FIELD
} cu;

struct api_symbol {
        const char *name;
        void **slot;
};

static int api_resolve(void *lib, const char *soname, const struct api_symbol *symbols, size_t n,
                       char *why, size_t why_size) {
        for (size_t i = 0; i < n; i++) {
                *symbols[i].slot = dlsym(lib, symbols[i].name);
                if (!*symbols[i].slot) {
                        snprintf(why, why_size, "%s lacks %s", soname, symbols[i].name);
                        return -ENODEV;
                }
        }
        return 0;
}

/* Loads the runtime and cuBLAS of the major version we were built
 * against; -ENODEV with the reason in why when either is missing. */
static int api_load(char *why, size_t why_size) {
#define API_SYMBOL(f) { #f, (void **) &cu.f },
        static const struct api_symbol cudart[] = { CUDART_FUNCTIONS(API_SYMBOL) };
        static const struct api_symbol cublas[] = { CUBLAS_FUNCTIONS(API_SYMBOL) };
#undef API_SYMBOL
        static bool loaded;
        char soname[64];
        void *lib;
        int r;

        if (loaded)
                return 0;

        snprintf(soname, sizeof(soname), "libcudart.so.%d", CUDART_VERSION / 1000);
        lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (!lib) {
                snprintf(why, why_size, "cannot load the CUDA runtime: %s", dlerror());
                return -ENODEV;
        }
        r = api_resolve(lib, soname, cudart, ELEMENTSOF(cudart), why, why_size);
        if (r < 0)
                return r;

        snprintf(soname, sizeof(soname), "libcublas.so.%d", CUBLAS_VER_MAJOR);
        lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (!lib) {
                snprintf(why, why_size, "cannot load cuBLAS: %s", dlerror());
                return -ENODEV;
        }
        r = api_resolve(lib, soname, cublas, ELEMENTSOF(cublas), why, why_size);
        if (r < 0)
                return r;

        loaded = true;
        return 0;
}

/* ---- Errors ---- */

/* Explains e on the job (job may be NULL during set-up) and maps it to an
 * errno: out of memory is -ENOMEM, a lost device -ENODEV, the rest -EIO. */
static int cuda_fail(struct gemm_cuda *g, struct swarm_job *job, cudaError_t e, const char *what) {
        /* Clears a non-sticky error so that the next job starts clean. */
        (void) cu.cudaGetLastError();

        if (e == cudaErrorMemoryAllocation) {
                if (job)
                        swarm_job_set_error(job, "%s: out of GPU memory on %s", what, g->name);
                else
                        swarm_log(LOG_WARNING, "gemm: %s: out of GPU memory on %s", what, g->name);
                return -ENOMEM;
        }
        if (job)
                swarm_job_set_error(job, "%s failed on %s: %s", what, g->name, cu.cudaGetErrorString(e));
        else
                swarm_log(LOG_ERR, "gemm: %s failed on %s: %s", what, g->name, cu.cudaGetErrorString(e));
        if (cuda_error_is_fatal(e)) {
                g->broken = true;
                return -ENODEV;
        }
        return -EIO;
}

static int cublas_fail(struct gemm_cuda *g, struct swarm_job *job, cublasStatus_t s, const char *what) {
        (void) cu.cudaGetLastError();

        if (job)
                swarm_job_set_error(job, "%s failed on %s: %s", what, g->name, cu.cublasGetStatusString(s));
        else
                swarm_log(LOG_ERR, "gemm: %s failed on %s: %s", what, g->name, cu.cublasGetStatusString(s));
        switch (s) {
        case CUBLAS_STATUS_ALLOC_FAILED:
                return -ENOMEM;
        case CUBLAS_STATUS_ARCH_MISMATCH:
        case CUBLAS_STATUS_NOT_SUPPORTED:
                return -EOPNOTSUPP;
        case CUBLAS_STATUS_EXECUTION_FAILED:
                /* Usually a sticky context error underneath. */
                g->broken = true;
                return -ENODEV;
        default:
                return -EIO;
        }
}

/* Makes *buf at least size bytes of device memory; the old contents go. */
static cudaError_t device_reserve(float **buf, size_t *buf_size, size_t size) {
        cudaError_t e;

        if (*buf_size >= size)
                return cudaSuccess;
        if (*buf) {
                e = cu.cudaFree(*buf);
                *buf = NULL;
                *buf_size = 0;
                if (e != cudaSuccess)
                        return e;
        }
        e = cu.cudaMalloc((void **) buf, size);
        if (e != cudaSuccess) {
                *buf = NULL;
                return e;
        }
        *buf_size = size;
        return cudaSuccess;
}

static void device_release(struct gemm_cuda *g) {
        cu.cudaFree(g->d_a);
        cu.cudaFree(g->d_b);
        cu.cudaFree(g->d_c);
        g->d_a = g->d_b = g->d_c = NULL;
        g->d_a_size = g->d_b_size = g->d_c_size = 0;
}

/* Sizes the pinned staging buffer for a transfer of bytes: grows up to
 * STAGING_MAX, since a larger transfer is simply done in more pieces. */
static cudaError_t staging_reserve(struct gemm_cuda *g, size_t bytes) {
        size_t want = STAGING_MIN;
        cudaError_t e;

        while (want < 2 * bytes && want < STAGING_MAX)
                want *= 2;
        if (g->staging_size >= want)
                return cudaSuccess;

        /* Nothing may still be copying from or into the old buffer. */
        e = cu.cudaStreamSynchronize(g->stream);
        if (e != cudaSuccess)
                return e;
        if (g->staging) {
                cu.cudaFreeHost(g->staging);
                g->staging = NULL;
                g->staging_size = 0;
        }
        e = cu.cudaMallocHost((void **) &g->staging, want);
        if (e != cudaSuccess) {
                g->staging = NULL;
                return e;
        }
        g->staging_size = want;
        return cudaSuccess;
}

/* Queues bytes from (pageable) src to device dst through the staging
 * halves; returns once src may be reused, with the last piece possibly
 * still in flight on the stream. */
static cudaError_t copy_to_device(struct gemm_cuda *g, void *dst, const void *src, size_t bytes) {
        size_t half, len;
        unsigned idx = 0;
        cudaError_t e;

        e = staging_reserve(g, bytes);
        if (e != cudaSuccess)
                return e;
        half = g->staging_size / 2;

        for (size_t off = 0; off < bytes; off += len, idx ^= 1) {
                unsigned char *stage = g->staging + idx * half;

                len = bytes - off < half ? bytes - off : half;
                /* The previous DMA out of this half must be done. */
                e = cu.cudaEventSynchronize(g->staged[idx]);
                if (e != cudaSuccess)
                        return e;
                memcpy(stage, (const unsigned char *) src + off, len);
                e = cu.cudaMemcpyAsync((unsigned char *) dst + off, stage, len, cudaMemcpyHostToDevice, g->stream);
                if (e != cudaSuccess)
                        return e;
                e = cu.cudaEventRecord(g->staged[idx], g->stream);
                if (e != cudaSuccess)
                        return e;
        }
        return cudaSuccess;
}

/* Copies bytes from device src to (pageable) dst after everything queued on
 * the stream; returns when dst is filled. */
static cudaError_t copy_from_device(struct gemm_cuda *g, void *dst, const void *src, size_t bytes) {
        size_t half, len, pending_off = 0, pending_len = 0;
        unsigned idx = 0;
        cudaError_t e;

        e = staging_reserve(g, bytes);
        if (e != cudaSuccess)
                return e;
        half = g->staging_size / 2;

        for (size_t off = 0; off < bytes; off += len, idx ^= 1) {
                unsigned char *stage = g->staging + idx * half;

                len = bytes - off < half ? bytes - off : half;
                /* Whatever used this half before (an upload, or the piece
                 * before last, already copied out) must be done. */
                e = cu.cudaEventSynchronize(g->staged[idx]);
                if (e != cudaSuccess)
                        return e;
                e = cu.cudaMemcpyAsync(stage, (const unsigned char *) src + off, len, cudaMemcpyDeviceToHost, g->stream);
                if (e != cudaSuccess)
                        return e;
                e = cu.cudaEventRecord(g->staged[idx], g->stream);
                if (e != cudaSuccess)
                        return e;

                /* While this piece is in flight, copy out the one before. */
                if (pending_len > 0) {
                        e = cu.cudaEventSynchronize(g->staged[idx ^ 1]);
                        if (e != cudaSuccess)
                                return e;
                        memcpy((unsigned char *) dst + pending_off, g->staging + (idx ^ 1) * half, pending_len);
                }
                pending_off = off;
                pending_len = len;
        }
        if (pending_len > 0) {
                e = cu.cudaEventSynchronize(g->staged[idx ^ 1]);
                if (e != cudaSuccess)
                        return e;
                memcpy((unsigned char *) dst + pending_off, g->staging + (idx ^ 1) * half, pending_len);
        }
        return cudaSuccess;
}

static cublasComputeType_t compute_type(enum gemm_precision precision) {
        switch (precision) {
        case GEMM_PRECISION_TF32:
                return CUBLAS_COMPUTE_32F_FAST_TF32;
        case GEMM_PRECISION_BF16:
                return CUBLAS_COMPUTE_32F_FAST_16BF;
        default:
                /* Pedantic: no TF32 or emulation behind our back, whatever
                 * the math mode or the environment says. */
                return CUBLAS_COMPUTE_32F_PEDANTIC;
        }
}

/* Column-major Cᵀ[n×rows] = Bᵀ[n×k]·Aᵀ[k×rows] on the device buffers. */
static cublasStatus_t gemm_device(struct gemm_cuda *g, enum gemm_precision precision,
                                  const float *d_a, const float *d_b, float *d_c,
                                  uint64_t rows, uint64_t k, uint64_t n) {
        const float alpha = 1.0f, beta = 0.0f;

        return cu.cublasGemmEx(g->blas, CUBLAS_OP_N, CUBLAS_OP_N,
                            (int) n, (int) rows, (int) k,
                            &alpha,
                            d_b, CUDA_R_32F, (int) n,
                            d_a, CUDA_R_32F, (int) k,
                            &beta,
                            d_c, CUDA_R_32F, (int) n,
                            compute_type(precision), CUBLAS_GEMM_DEFAULT);
}

int gemm_cuda_run(struct gemm_cuda *g, enum gemm_precision precision,
                  const float *a, const float *b, float *c, uint64_t m, uint64_t k, uint64_t n,
                  struct swarm_job *job) {
        uint64_t row_bytes = (k + n) * sizeof(float), step;
        size_t b_bytes = (size_t) (k * n * sizeof(float));
        cublasStatus_t s;
        cudaError_t e;

        if (g->broken) {
                swarm_job_set_error(job, "%s failed earlier and is unusable; restart the worker", g->name);
                return -ENODEV;
        }

        step = BLOCK_BYTES_MAX / row_bytes;
        if (step < 1)
                step = 1;
        if (step > m)
                step = m;

        e = cu.cudaSetDevice(g->device);
        if (e != cudaSuccess)
                return cuda_fail(g, job, e, "selecting the device");

        e = device_reserve(&g->d_b, &g->d_b_size, b_bytes);
        if (e == cudaErrorMemoryAllocation) {
                /* Our cached blocks may be what is in the way. */
                (void) cu.cudaGetLastError();
                device_release(g);
                e = device_reserve(&g->d_b, &g->d_b_size, b_bytes);
        }
        if (e == cudaSuccess)
                e = device_reserve(&g->d_a, &g->d_a_size, (size_t) (step * k * sizeof(float)));
        if (e == cudaSuccess)
                e = device_reserve(&g->d_c, &g->d_c_size, (size_t) (step * n * sizeof(float)));
        if (e != cudaSuccess)
                return cuda_fail(g, job, e, "allocating device buffers");

        e = copy_to_device(g, g->d_b, b, b_bytes);
        if (e != cudaSuccess)
                return cuda_fail(g, job, e, "copying b to the device");

        for (uint64_t i = 0; i < m; i += step) {
                uint64_t rows = m - i < step ? m - i : step;

                if (swarm_job_cancelled(job)) {
                        /* Let queued copies finish before the next job. */
                        (void) cu.cudaStreamSynchronize(g->stream);
                        swarm_job_set_error(job, "cancelled after %" PRIu64 " of %" PRIu64 " rows", i, m);
                        return -ECANCELED;
                }

                e = copy_to_device(g, g->d_a, a + i * k, (size_t) (rows * k * sizeof(float)));
                if (e != cudaSuccess)
                        return cuda_fail(g, job, e, "copying a to the device");

                s = gemm_device(g, precision, g->d_a, g->d_b, g->d_c, rows, k, n);
                if (s != CUBLAS_STATUS_SUCCESS)
                        return cublas_fail(g, job, s, "cublasGemmEx");

                e = copy_from_device(g, c + i * n, g->d_c, (size_t) (rows * n * sizeof(float)));
                if (e != cudaSuccess)
                        return cuda_fail(g, job, e, "copying c from the device");
        }
        return 0;
}

static double now_sec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

int gemm_cuda_benchmark(struct gemm_cuda *g, unsigned budget_ms, double *ret) {
        const size_t bytes = (size_t) BENCH_N * BENCH_N * sizeof(float);
        unsigned iterations = 0;
        double start, elapsed;
        cublasStatus_t s;
        cudaError_t e;

        e = device_reserve(&g->d_a, &g->d_a_size, bytes);
        if (e == cudaSuccess)
                e = device_reserve(&g->d_b, &g->d_b_size, bytes);
        if (e == cudaSuccess)
                e = device_reserve(&g->d_c, &g->d_c_size, bytes);
        /* 0x3f3f3f3f is 0.747f: ordinary numbers, not zeros or NaNs. */
        if (e == cudaSuccess)
                e = cu.cudaMemsetAsync(g->d_a, 0x3f, bytes, g->stream);
        if (e == cudaSuccess)
                e = cu.cudaMemsetAsync(g->d_b, 0x3f, bytes, g->stream);
        if (e != cudaSuccess)
                return cuda_fail(g, NULL, e, "preparing the benchmark");

        /* The first call loads cuBLAS's kernels: not part of the rate. */
        s = gemm_device(g, GEMM_PRECISION_FP32, g->d_a, g->d_b, g->d_c, BENCH_N, BENCH_N, BENCH_N);
        if (s != CUBLAS_STATUS_SUCCESS)
                return cublas_fail(g, NULL, s, "cublasGemmEx");
        e = cu.cudaStreamSynchronize(g->stream);
        if (e != cudaSuccess)
                return cuda_fail(g, NULL, e, "the benchmark");

        start = now_sec();
        do {
                s = gemm_device(g, GEMM_PRECISION_FP32, g->d_a, g->d_b, g->d_c, BENCH_N, BENCH_N, BENCH_N);
                if (s != CUBLAS_STATUS_SUCCESS)
                        return cublas_fail(g, NULL, s, "cublasGemmEx");
                e = cu.cudaStreamSynchronize(g->stream);
                if (e != cudaSuccess)
                        return cuda_fail(g, NULL, e, "the benchmark");
                iterations++;
                elapsed = now_sec() - start;
        } while (elapsed < budget_ms * 1e-3 && iterations < 100000);

        if (!(elapsed > 0))
                return -EIO;
        *ret = 2.0 * BENCH_N * BENCH_N * BENCH_N * iterations / elapsed;
        return 0;
}

int gemm_cuda_open(int device, struct gemm_cuda **ret, char *why, size_t why_size) {
        struct cudaDeviceProp prop;
        struct gemm_cuda *g;
        cublasStatus_t s;
        cudaError_t e;
        int count = 0, r;

        r = api_load(why, why_size);
        if (r < 0)
                return r;

        e = cu.cudaGetDeviceCount(&count);
        if (e != cudaSuccess) {
                (void) cu.cudaGetLastError();
                snprintf(why, why_size, "%s", cu.cudaGetErrorString(e));
                return -ENODEV;
        }
        if (count == 0) {
                snprintf(why, why_size, "no CUDA device present");
                return -ENODEV;
        }
        if (device < 0)
                device = 0;
        if (device >= count) {
                snprintf(why, why_size, "device %d requested but only %d present", device, count);
                return -ENODEV;
        }

        g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        g->device = device;
        snprintf(g->name, sizeof(g->name), "CUDA device %d", device);

        /* cu.cudaFree(NULL) creates the context now rather than in the first
         * job. */
        e = cu.cudaSetDevice(device);
        if (e == cudaSuccess)
                e = cu.cudaFree(NULL);
        if (e == cudaSuccess)
                e = cu.cudaGetDeviceProperties(&prop, device);
        if (e != cudaSuccess) {
                (void) cu.cudaGetLastError();
                snprintf(why, why_size, "device %d: %s", device, cu.cudaGetErrorString(e));
                free(g);
                return -ENODEV;
        }
        snprintf(g->name, sizeof(g->name), "%s", prop.name);
        g->memory = prop.totalGlobalMem;

        e = cu.cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking);
        if (e == cudaSuccess)
                e = cu.cudaEventCreateWithFlags(&g->staged[0], cudaEventDisableTiming);
        if (e == cudaSuccess)
                e = cu.cudaEventCreateWithFlags(&g->staged[1], cudaEventDisableTiming);
        if (e != cudaSuccess) {
                snprintf(why, why_size, "%s: %s", g->name, cu.cudaGetErrorString(e));
                gemm_cuda_close(g);
                return -EIO;
        }

        s = cu.cublasCreate_v2(&g->blas);
        if (s == CUBLAS_STATUS_SUCCESS)
                s = cu.cublasSetStream_v2(g->blas, g->stream);
        if (s != CUBLAS_STATUS_SUCCESS) {
                snprintf(why, why_size, "%s: cuBLAS: %s", g->name, cu.cublasGetStatusString(s));
                gemm_cuda_close(g);
                return -EIO;
        }

        *ret = g;
        return 0;
}

void gemm_cuda_close(struct gemm_cuda *g) {
        if (!g)
                return;
        (void) cu.cudaSetDevice(g->device);
        if (g->stream)
                (void) cu.cudaStreamSynchronize(g->stream);
        if (g->blas)
                cu.cublasDestroy_v2(g->blas);
        device_release(g);
        if (g->staging)
                cu.cudaFreeHost(g->staging);
        for (size_t i = 0; i < ELEMENTSOF(g->staged); i++)
                if (g->staged[i])
                        cu.cudaEventDestroy(g->staged[i]);
        if (g->stream)
                cu.cudaStreamDestroy(g->stream);
        free(g);
}

const char *gemm_cuda_name(const struct gemm_cuda *g) {
        return g->name;
}

uint64_t gemm_cuda_memory(const struct gemm_cuda *g) {
        return g->memory;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The CUDA backend: the ops of nn-backend.h on one CUDA device, with the
 * semantics of nn-cpu.c (which is the reference: same formulas, same
 * order of operations where the order matters to the result).
 *
 * Memory.  Activations are f32 in device memory.  Every weight matrix is
 * dequantised on the host (nn_dequantize_row) and kept on the device as
 * f16, whatever the file's type: 2 bytes per parameter, so a Q4_K file
 * takes about 3.5× its size in GPU memory (kernels that compute from the
 * quantised blocks directly are future work).  One-row weights (norm gains,
 * biases) are kept as f32.  Device copies of weights live until the backend
 * is freed.  Scratch buffers (f16 activations, token ids and positions,
 * attention scores) grow on demand and are never shrunk.
 *
 * Errors.  alloc/upload report theirs (NULL, negative errno).  An op has no
 * way to fail, so the first CUDA or cuBLAS error inside an op is logged to
 * stderr and kept; every later op does nothing and status() returns it
 * (-ENODEV when the device is lost, else -EIO).  A broken backend stays
 * broken: the caller frees it and makes a new one.
 *
 * Ordering.  Everything runs on one stream, in call order; read() and
 * status() wait for it.  Nothing here is tuned: matrix products go to
 * cuBLAS, convolutions to cuDNN, the rest are plain kernels written to be
 * read.
 *
 * cuDNN is dlopen()ed at the first convolution, so that a machine without
 * it still runs every other op (textgen needs none).  Its algorithm for
 * each convolution shape is chosen once, by timing the candidates
 * (cudnnFindConvolutionForwardAlgorithmEx) within a bounded workspace, and
 * cached.  Only algorithms whose outputs are sums of products of the inputs
 * are candidates (implicit GEMM, GEMM, direct): Winograd and FFT round
 * differently, past the error bound the conv2d skill's verification
 * checks, so a provider using them would fail honest checks. */

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "cuda-fatal.h"
#include "nn-backend.h"
#include "nn-cuda.h"
#include "nn-error.h"
#include "nn-quant.h"
}

#define THREADS 256                     /* per block; a power of two (the reductions need it) */
#define MAX_BLOCKS (1u << 16)           /* grid-stride loops cover the rest */
#define UPLOAD_CHUNK_ELEMS ((size_t) 1 << 22)  /* f16 elements staged per copy: 8 MiB */
#define ROPE_MAX_HALF 256               /* θ table passed by value: 2 KiB of kernel parameters */
#define F16_MAX 65504.0f
#define CONV_WORKSPACE_MAX ((size_t) 256 << 20)        /* for a convolution algorithm's scratch */
#define CONV_ALGOS_CACHED 32

/* cuDNN's entry points, from dlopen(): the module does not link cuDNN. */
struct cudnn_api {
        decltype(&cudnnGetVersion) GetVersion;
        decltype(&cudnnGetErrorString) GetErrorString;
        decltype(&cudnnCreate) Create;
        decltype(&cudnnDestroy) Destroy;
        decltype(&cudnnSetStream) SetStream;
        decltype(&cudnnCreateTensorDescriptor) CreateTensorDescriptor;
        decltype(&cudnnDestroyTensorDescriptor) DestroyTensorDescriptor;
        decltype(&cudnnSetTensor4dDescriptor) SetTensor4dDescriptor;
        decltype(&cudnnCreateFilterDescriptor) CreateFilterDescriptor;
        decltype(&cudnnDestroyFilterDescriptor) DestroyFilterDescriptor;
        decltype(&cudnnSetFilter4dDescriptor) SetFilter4dDescriptor;
        decltype(&cudnnCreateConvolutionDescriptor) CreateConvolutionDescriptor;
        decltype(&cudnnDestroyConvolutionDescriptor) DestroyConvolutionDescriptor;
        decltype(&cudnnSetConvolution2dDescriptor) SetConvolution2dDescriptor;
        decltype(&cudnnSetConvolutionGroupCount) SetConvolutionGroupCount;
        decltype(&cudnnSetConvolutionMathType) SetConvolutionMathType;
        decltype(&cudnnFindConvolutionForwardAlgorithmEx) FindConvolutionForwardAlgorithmEx;
        decltype(&cudnnConvolutionForward) ConvolutionForward;
};

/* A convolution shape and the algorithm chosen for it. */
struct conv_algo {
        struct nn_conv2d shape;         /* act cleared: it is not cuDNN's */
        cudnnConvolutionFwdAlgo_t algo;
        cudnnMathType_t math;
        size_t workspace;
        bool used;
};

struct cuda_backend {
        struct nn_backend base;
        /* A copy of the ops table per backend, so that ops.name can say
         * which device: "cuda:NVIDIA H100 80GB HBM3". */
        struct nn_backend_ops ops;
        char name[300];

        int device;
        cudaStream_t stream;
        cublasHandle_t blas;
        int error;                      /* sticky: 0, -EIO or -ENODEV */

        /* Device copies made by upload(), freed with the backend. */
        void **weights;
        size_t n_weights, weights_cap;

        /* Scratch, in bytes of capacity. */
        __half *x16;                    /* a matmul's activations in f16 */
        size_t x16_cap;
        int32_t *ints;                  /* token ids or positions from the host */
        size_t ints_cap;
        float *scores;                  /* attention scores, one row per (token, head) */
        size_t scores_cap;

        /* Convolutions: made at the first one. */
        cudnnHandle_t dnn;
        void *conv_ws;                  /* the chosen algorithm's workspace */
        size_t conv_ws_cap;
        struct conv_algo algos[CONV_ALGOS_CACHED];
        unsigned algo_next;             /* the cache's next victim, round robin */
        char libraries[160];
};

static struct cuda_backend *cuda(struct nn_backend *be) {
        return (struct cuda_backend *) be;
}

/* ---- Errors ---- */

/* Records the first error of an op; later ones are consequences. */
static void fail_msg(struct cuda_backend *c, int r, const char *what, const char *why) {
        if (c->error != 0)
                return;
        c->error = r;
        fprintf(stderr, "nn-cuda: %s failed on %s: %s\n", what, c->name, why);
}

static void fail_cuda(struct cuda_backend *c, cudaError_t e, const char *what) {
        /* Clears a non-sticky error; a sticky one stays with the context. */
        (void) cudaGetLastError();
        fail_msg(c, cuda_error_is_fatal(e) ? -ENODEV : -EIO, what, cudaGetErrorString(e));
}

static void fail_blas(struct cuda_backend *c, cublasStatus_t s, const char *what) {
        (void) cudaGetLastError();
        fail_msg(c, -EIO, what, cublasGetStatusString(s));
}

/* For alloc/upload, which return their error instead of keeping it. */
static int errno_of(cudaError_t e) {
        (void) cudaGetLastError();
        if (e == cudaErrorMemoryAllocation)
                return -ENOMEM;
        return cuda_error_is_fatal(e) ? -ENODEV : -EIO;
}

/* Every op starts here: false when the backend is broken (nothing to do)
 * or the device cannot be selected.  The current device is per host
 * thread, and the ops may come from another thread than open's. */
static bool op_begin(struct cuda_backend *c) {
        cudaError_t e;

        if (c->error != 0)
                return false;
        e = cudaSetDevice(c->device);
        if (e != cudaSuccess) {
                fail_cuda(c, e, "selecting the device");
                return false;
        }
        return true;
}

/* After a kernel launch: a bad configuration shows here, a fault in the
 * kernel at the next synchronisation (read, status). */
static void op_launched(struct cuda_backend *c, const char *what) {
        cudaError_t e = cudaGetLastError();

        if (e != cudaSuccess)
                fail_cuda(c, e, what);
}

static bool size_mul(size_t a, size_t b, size_t *ret) {
        return !__builtin_mul_overflow(a, b, ret);
}

static unsigned blocks_for(size_t n) {
        size_t b = (n + THREADS - 1) / THREADS;

        return b > MAX_BLOCKS ? MAX_BLOCKS : (unsigned) b;
}

/* Makes *buf at least bytes of device memory; the old contents go. */
static bool scratch_reserve(struct cuda_backend *c, void **buf, size_t *cap, size_t bytes, const char *what) {
        cudaError_t e;

        if (*cap >= bytes)
                return true;
        /* Kernels queued earlier may still use the old buffer. */
        e = cudaStreamSynchronize(c->stream);
        if (e != cudaSuccess) {
                fail_cuda(c, e, what);
                return false;
        }
        (void) cudaFree(*buf);
        *buf = NULL;
        *cap = 0;
        e = cudaMalloc(buf, bytes);
        if (e != cudaSuccess) {
                *buf = NULL;
                fail_cuda(c, e, what);
                return false;
        }
        *cap = bytes;
        return true;
}

/* Copies n int32 from the host into the ints scratch, in stream order.
 * host may be reused at once: an asynchronous copy from pageable memory
 * is staged before cudaMemcpyAsync returns (the runtime's documented
 * "API synchronization behavior"), and the DMA into ints waits, in stream
 * order, for the kernels queued before that still read ints. */
static const int32_t *ints_to_device(struct cuda_backend *c, const int32_t *host, size_t n, const char *what) {
        cudaError_t e;

        if (!scratch_reserve(c, (void **) &c->ints, &c->ints_cap, n * sizeof(int32_t), what))
                return NULL;
        e = cudaMemcpyAsync(c->ints, host, n * sizeof(int32_t), cudaMemcpyHostToDevice, c->stream);
        if (e != cudaSuccess) {
                fail_cuda(c, e, what);
                return NULL;
        }
        return c->ints;
}

/* ---- Kernels ---- */

#define GRID_STRIDE(i, n) \
        for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < (n); i += (size_t) gridDim.x * blockDim.x)

/* Clamped to f16's range (an f32 activation past ±65504 would otherwise
 * become ±inf); NaN stays NaN, as the comparisons are false for it. */
__global__ void k_to_half(const float *x, __half *y, size_t n) {
        GRID_STRIDE(i, n) {
                float v = x[i];
                if (v > F16_MAX)
                        v = F16_MAX;
                else if (v < -F16_MAX)
                        v = -F16_MAX;
                y[i] = __float2half_rn(v);
        }
}

/* ids were checked against the table's rows on the host. */
__global__ void k_get_rows(const __half *w, const int32_t *ids, size_t n, size_t cols, float *out) {
        GRID_STRIDE(i, n * cols) {
                size_t t = i / cols, col = i % cols;
                out[i] = __half2float(w[(size_t) ids[t] * cols + col]);
        }
}

__global__ void k_add_bias(float *y, const float *b, size_t n, size_t dim) {
        GRID_STRIDE(i, n * dim)
                y[i] += b[i % dim];
}

__global__ void k_silu_mul(float *gate, const float *up, size_t n) {
        GRID_STRIDE(i, n)
                gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

__global__ void k_add(float *y, const float *x, size_t n) {
        GRID_STRIDE(i, n)
                y[i] += x[i];
}

/* Tree reductions over a block of THREADS threads; every thread gets the
 * result.  The last barrier lets the caller reuse red. */
__device__ double block_sum_f64(double v, double *red) {
        red[threadIdx.x] = v;
        __syncthreads();
        for (unsigned s = THREADS / 2; s > 0; s /= 2) {
                if (threadIdx.x < s)
                        red[threadIdx.x] += red[threadIdx.x + s];
                __syncthreads();
        }
        double r = red[0];
        __syncthreads();
        return r;
}

__device__ float block_sum(float v, float *red) {
        red[threadIdx.x] = v;
        __syncthreads();
        for (unsigned s = THREADS / 2; s > 0; s /= 2) {
                if (threadIdx.x < s)
                        red[threadIdx.x] += red[threadIdx.x + s];
                __syncthreads();
        }
        float r = red[0];
        __syncthreads();
        return r;
}

__device__ float block_max(float v, float *red) {
        red[threadIdx.x] = v;
        __syncthreads();
        for (unsigned s = THREADS / 2; s > 0; s /= 2) {
                if (threadIdx.x < s)
                        red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
                __syncthreads();
        }
        float r = red[0];
        __syncthreads();
        return r;
}

/* One block per row; the sum of squares in double, as on the CPU.  Each
 * thread writes only the elements it read, so y may be x. */
__global__ void k_rmsnorm(float *y, const float *x, const float *g, size_t dim, float eps) {
        __shared__ double red[THREADS];
        const float *xt = x + blockIdx.x * dim;
        float *yt = y + blockIdx.x * dim;
        double ss = 0;

        for (size_t i = threadIdx.x; i < dim; i += THREADS)
                ss += (double) xt[i] * xt[i];
        ss = block_sum_f64(ss, red);
        float scale = (float) (1.0 / sqrt(ss / (double) dim + eps));
        for (size_t i = threadIdx.x; i < dim; i += THREADS)
                yt[i] = xt[i] * scale * g[i];
}

/* θ_i per rotated pair, computed on the host exactly as nn-cpu.c does
 * (pow in double, divided by the frequency factor); passed by value, so no
 * device copy of rope_freqs has to be kept in step with the host's. */
struct rope_args {
        double theta[ROPE_MAX_HALF];
        size_t half;
        float pos_scale;
        int neox;
};

/* One thread per (token, head, pair). */
__global__ void k_rope(float *x, size_t n, size_t n_heads, size_t head_dim, const int32_t *pos,
                       const struct rope_args a) {
        GRID_STRIDE(j, n * n_heads * a.half) {
                size_t i = j % a.half, th = j / a.half;         /* th = t · n_heads + h */
                size_t t = th / n_heads;
                double p = (double) pos[t] * a.pos_scale;
                float c = (float) cos(p * a.theta[i]), s = (float) sin(p * a.theta[i]);
                float *v = x + th * head_dim;
                size_t ia = a.neox ? i : 2 * i;
                size_t ib = a.neox ? i + a.half : 2 * i + 1;
                float x0 = v[ia], x1 = v[ib];

                v[ia] = x0 * c - x1 * s;
                v[ib] = x0 * s + x1 * c;
        }
}

/* One block per (token, head), as cpu_attention's unit of work: the
 * scores of the token's query against every cached key up to and including
 * its own position go to a row of the global scratch, then softmax with the
 * maximum subtracted, then the weighted sum of the values.  Barriers make
 * one phase's writes to the scores visible to every thread of the next. */
__global__ void k_attention(float *out, const float *q, const float *k, const float *v, float *scores_all,
                            size_t scores_stride, size_t pos0, size_t n_heads, size_t n_kv_heads, size_t hd,
                            float scale) {
        extern __shared__ float qs[];   /* hd floats: this head's query */
        __shared__ float red[THREADS];
        size_t j = blockIdx.x, tok = j / n_heads, h = j % n_heads;
        size_t kvh = h / (n_heads / n_kv_heads), kv_stride = n_kv_heads * hd;
        size_t len = pos0 + tok + 1;            /* causal */
        float *scores = scores_all + j * scores_stride;
        float *o = out + (tok * n_heads + h) * hd;

        for (size_t i = threadIdx.x; i < hd; i += THREADS)
                qs[i] = q[(tok * n_heads + h) * hd + i];
        __syncthreads();

        float local_max = -INFINITY;
        for (size_t p = threadIdx.x; p < len; p += THREADS) {
                const float *kp = k + p * kv_stride + kvh * hd;
                float d = 0;

                for (size_t i = 0; i < hd; i++)
                        d += qs[i] * kp[i];
                scores[p] = d * scale;
                local_max = fmaxf(local_max, scores[p]);
        }
        float max = block_max(local_max, red);

        float local_sum = 0;
        for (size_t p = threadIdx.x; p < len; p += THREADS) {
                scores[p] = expf(scores[p] - max);
                local_sum += scores[p];
        }
        float sum = block_sum(local_sum, red);

        for (size_t i = threadIdx.x; i < hd; i += THREADS) {
                float acc = 0;

                for (size_t p = 0; p < len; p++)
                        acc += scores[p] / sum * v[p * kv_stride + kvh * hd + i];
                o[i] = acc;
        }
}

/* ---- Memory ---- */

static float *cuda_alloc(struct nn_backend *be, size_t n_floats) {
        struct cuda_backend *c = cuda(be);
        void *p = NULL;
        cudaError_t e;

        if (c->error != 0 || cudaSetDevice(c->device) != cudaSuccess)
                return NULL;
        if (n_floats == 0)
                n_floats = 1;
        if (n_floats > SIZE_MAX / sizeof(float))
                return NULL;
        e = cudaMalloc(&p, n_floats * sizeof(float));
        if (e != cudaSuccess) {
                fprintf(stderr, "nn-cuda: allocating %zu MiB on %s: %s\n", (n_floats * sizeof(float)) >> 20,
                        c->name, cudaGetErrorString(e));
                (void) cudaGetLastError();
                return NULL;
        }
        /* Zeroed, as the CPU backend's memory is. */
        e = cudaMemsetAsync(p, 0, n_floats * sizeof(float), c->stream);
        if (e != cudaSuccess) {
                (void) cudaGetLastError();
                (void) cudaFree(p);
                return NULL;
        }
        return (float *) p;
}

static void cuda_release(struct nn_backend *be, float *p) {
        struct cuda_backend *c = cuda(be);
        cudaError_t e;

        if (!p)
                return;
        /* Queued work may still use p. */
        e = cudaSetDevice(c->device);
        if (e == cudaSuccess)
                e = cudaStreamSynchronize(c->stream);
        if (e == cudaSuccess)
                e = cudaFree(p);
        else
                (void) cudaFree(p);
        if (e != cudaSuccess)
                fail_cuda(c, e, "freeing device memory");
}

static void cuda_write(struct nn_backend *be, float *dst, const float *host, size_t n) {
        struct cuda_backend *c = cuda(be);
        cudaError_t e;

        if (n == 0 || !op_begin(c))
                return;
        /* Synchronous, so that the caller may change host at once whatever
         * kind of memory it is. */
        e = cudaMemcpyAsync(dst, host, n * sizeof(float), cudaMemcpyHostToDevice, c->stream);
        if (e == cudaSuccess)
                e = cudaStreamSynchronize(c->stream);
        if (e != cudaSuccess)
                fail_cuda(c, e, "write");
}

static void cuda_read(struct nn_backend *be, float *host, const float *src, size_t n) {
        struct cuda_backend *c = cuda(be);
        cudaError_t e;

        if (n == 0 || !op_begin(c))
                return;
        e = cudaMemcpyAsync(host, src, n * sizeof(float), cudaMemcpyDeviceToHost, c->stream);
        if (e == cudaSuccess)
                e = cudaStreamSynchronize(c->stream);
        if (e != cudaSuccess)
                fail_cuda(c, e, "read");
}

static void cuda_copy(struct nn_backend *be, float *dst, const float *src, size_t n) {
        struct cuda_backend *c = cuda(be);
        cudaError_t e;

        if (n == 0 || dst == src || !op_begin(c))
                return;
        /* The CPU's copy is a memmove; a device copy of overlapping ranges
         * is undefined, and no caller needs one. */
        if (dst < src + n && src < dst + n) {
                fail_msg(c, -EIO, "copy", "the ranges overlap");
                return;
        }
        e = cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, c->stream);
        if (e != cudaSuccess)
                fail_cuda(c, e, "copy");
}

/* ---- Weights ---- */

/* The rule upload() stores by and the ops read by: a one-row weight is an
 * f32 vector (norm gain, bias), anything taller an f16 matrix. */
static bool weight_is_matrix(const struct nn_weight *w) {
        return w->rows > 1;
}

/* Dequantises rows [r0, r0 + n) of w to f16 in dst; -ERANGE when a finite
 * value is past f16's range (a bf16 or f32 file can hold one). */
static int weight_rows_to_f16(const struct nn_weight *w, size_t r0, size_t n, float *row, uint16_t *dst) {
        size_t row_bytes = nn_row_bytes(w->type, w->cols);

        for (size_t r = 0; r < n; r++) {
                nn_dequantize_row(w->type, (const uint8_t *) w->data + (r0 + r) * row_bytes, row, w->cols);
                for (size_t i = 0; i < w->cols; i++) {
                        uint16_t h = nn_f32_to_fp16(row[i]);

                        /* Exponent all ones, mantissa zero: ±inf. */
                        if ((h & 0x7fff) == 0x7c00 && isfinite(row[i]))
                                return -ERANGE;
                        dst[r * w->cols + i] = h;
                }
        }
        return 0;
}

static int upload_matrix(struct cuda_backend *c, const struct nn_weight *w, void *d) {
        size_t chunk_rows = UPLOAD_CHUNK_ELEMS / w->cols > 0 ? UPLOAD_CHUNK_ELEMS / w->cols : 1;
        float *row = (float *) malloc(w->cols * sizeof(float));
        uint16_t *stage = NULL;
        int r = 0;

        if (chunk_rows > w->rows)
                chunk_rows = w->rows;
        stage = (uint16_t *) malloc(chunk_rows * w->cols * sizeof(uint16_t));
        if (!row || !stage) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t r0 = 0; r0 < w->rows; r0 += chunk_rows) {
                size_t n = w->rows - r0 < chunk_rows ? w->rows - r0 : chunk_rows;
                cudaError_t e;

                r = weight_rows_to_f16(w, r0, n, row, stage);
                if (r < 0)
                        goto out;
                /* Waited for before stage is refilled. */
                e = cudaMemcpyAsync((uint16_t *) d + r0 * w->cols, stage, n * w->cols * sizeof(uint16_t),
                                    cudaMemcpyHostToDevice, c->stream);
                if (e == cudaSuccess)
                        e = cudaStreamSynchronize(c->stream);
                if (e != cudaSuccess) {
                        r = errno_of(e);
                        goto out;
                }
        }
out:
        free(row);
        free(stage);
        return r;
}

static int upload_vector(struct cuda_backend *c, const struct nn_weight *w, void *d) {
        float *row = (float *) malloc(w->cols * sizeof(float));
        cudaError_t e;

        if (!row)
                return -ENOMEM;
        nn_dequantize_row(w->type, w->data, row, w->cols);
        e = cudaMemcpyAsync(d, row, w->cols * sizeof(float), cudaMemcpyHostToDevice, c->stream);
        if (e == cudaSuccess)
                e = cudaStreamSynchronize(c->stream);
        free(row);
        return e == cudaSuccess ? 0 : errno_of(e);
}

static int cuda_upload(struct nn_backend *be, struct nn_weight *w) {
        struct cuda_backend *c = cuda(be);
        size_t elems, bytes;
        void *d = NULL;
        cudaError_t e;
        int r;

        w->device = NULL;
        if (c->error != 0)
                return c->error;
        if (!nn_type_supported(w->type) || w->rows == 0 || w->cols == 0 || nn_row_bytes(w->type, w->cols) == 0 ||
            !size_mul(w->rows, w->cols, &elems) || !size_mul(elems, weight_is_matrix(w) ? 2 : 4, &bytes))
                return -EINVAL;
        /* cuBLAS takes int dimensions. */
        if (w->rows > INT32_MAX || w->cols > INT32_MAX)
                return -EOVERFLOW;
        if (c->n_weights == c->weights_cap) {
                size_t cap = c->weights_cap ? 2 * c->weights_cap : 64;
                void **p = (void **) realloc(c->weights, cap * sizeof(void *));
                if (!p)
                        return -ENOMEM;
                c->weights = p;
                c->weights_cap = cap;
        }

        e = cudaSetDevice(c->device);
        if (e == cudaSuccess)
                e = cudaMalloc(&d, bytes);
        if (e != cudaSuccess) {
                fprintf(stderr, "nn-cuda: allocating %zu MiB for a weight on %s: %s\n", bytes >> 20, c->name,
                        cudaGetErrorString(e));
                return errno_of(e);
        }
        r = weight_is_matrix(w) ? upload_matrix(c, w, d) : upload_vector(c, w, d);
        if (r < 0) {
                if (r == -ERANGE)
                        fprintf(stderr, "nn-cuda: a weight has values past f16's range (±65504), which this "
                                "backend stores its matrices in\n");
                (void) cudaFree(d);
                return r;
        }
        c->weights[c->n_weights++] = d;
        w->device = d;
        return 0;
}

/* The weight's device copy when it is stored as the op expects, else
 * NULL with the backend broken: a bug in the caller, not in the data. */
static const void *weight_device(struct cuda_backend *c, const struct nn_weight *w, bool matrix, const char *what) {
        if (!w->device || weight_is_matrix(w) != matrix) {
                fail_msg(c, -EIO, what, matrix ? "the weight is not an uploaded matrix"
                                               : "the weight is not an uploaded one-row vector");
                return NULL;
        }
        return w->device;
}

/* ---- Ops ---- */

static void cuda_get_rows(struct nn_backend *be, const struct nn_weight *w, const int32_t *ids, size_t n,
                          float *out) {
        struct cuda_backend *c = cuda(be);
        const __half *d;
        const int32_t *d_ids;

        if (n == 0 || !op_begin(c))
                return;
        d = (const __half *) weight_device(c, w, true, "get_rows");
        if (!d)
                return;
        for (size_t i = 0; i < n; i++)
                if (ids[i] < 0 || (uint64_t) ids[i] >= w->rows) {
                        fail_msg(c, -EIO, "get_rows", "a row id is outside the table");
                        return;
                }
        d_ids = ints_to_device(c, ids, n, "get_rows");
        if (!d_ids)
                return;
        k_get_rows<<<blocks_for(n * w->cols), THREADS, 0, c->stream>>>(d, d_ids, n, w->cols, out);
        op_launched(c, "get_rows");
}

/* y[n][rows] = x[n][cols] · Wᵀ.  cuBLAS is column-major, and a row-major
 * a×b matrix is the column-major b×a matrix of its transpose, so:
 *   W, row-major [rows][cols], is column-major Wᵀ (cols × rows, ld cols);
 *   x, row-major [n][cols],    is column-major xᵀ (cols × n,    ld cols);
 *   y, row-major [n][rows],    is column-major yᵀ (rows × n,   ld rows).
 * yᵀ = W · xᵀ is then C = op(A)·B with A = the weights transposed back
 * (CUBLAS_OP_T), B = x as it is (CUBLAS_OP_N), m = rows, n = n, k = cols. */
static void cuda_matmul(struct nn_backend *be, const struct nn_weight *w, const float *x, size_t n, float *y) {
        struct cuda_backend *c = cuda(be);
        const float alpha = 1.0f, beta = 0.0f;
        const void *d;
        size_t elems;
        cublasStatus_t s;

        if (n == 0 || !op_begin(c))
                return;
        d = weight_device(c, w, true, "matmul");
        if (!d)
                return;
        if (n > INT32_MAX || !size_mul(n, w->cols, &elems) || elems > SIZE_MAX / sizeof(__half)) {
                fail_msg(c, -EIO, "matmul", "the batch is too large");
                return;
        }
        if (!scratch_reserve(c, (void **) &c->x16, &c->x16_cap, elems * sizeof(__half), "matmul"))
                return;
        k_to_half<<<blocks_for(elems), THREADS, 0, c->stream>>>(x, c->x16, elems);
        op_launched(c, "matmul (converting x to f16)");
        if (c->error != 0)
                return;
        /* f16 inputs, f32 output and accumulation. */
        s = cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N,
                         (int) w->rows, (int) n, (int) w->cols,
                         &alpha,
                         d, CUDA_R_16F, (int) w->cols,
                         c->x16, CUDA_R_16F, (int) w->cols,
                         &beta,
                         y, CUDA_R_32F, (int) w->rows,
                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (s != CUBLAS_STATUS_SUCCESS)
                fail_blas(c, s, "matmul (cublasGemmEx)");
}

static void cuda_add_bias(struct nn_backend *be, float *y, const struct nn_weight *bias, size_t n) {
        struct cuda_backend *c = cuda(be);
        const float *d;

        if (n == 0 || !op_begin(c))
                return;
        d = (const float *) weight_device(c, bias, false, "add_bias");
        if (!d)
                return;
        k_add_bias<<<blocks_for(n * bias->cols), THREADS, 0, c->stream>>>(y, d, n, bias->cols);
        op_launched(c, "add_bias");
}

static void cuda_rmsnorm(struct nn_backend *be, float *y, const float *x, const struct nn_weight *gain, size_t n,
                         float eps) {
        struct cuda_backend *c = cuda(be);
        const float *d;

        if (n == 0 || !op_begin(c))
                return;
        d = (const float *) weight_device(c, gain, false, "rmsnorm");
        if (!d)
                return;
        if (n > INT32_MAX) {
                fail_msg(c, -EIO, "rmsnorm", "too many rows for one grid");
                return;
        }
        k_rmsnorm<<<(unsigned) n, THREADS, 0, c->stream>>>(y, x, d, gain->cols, eps);
        op_launched(c, "rmsnorm");
}

static void cuda_rope(struct nn_backend *be, float *x, size_t n, size_t n_heads, size_t head_dim,
                      const int32_t *pos, const struct nn_rope *rope) {
        struct cuda_backend *c = cuda(be);
        struct rope_args a;
        const int32_t *d_pos;

        if (n == 0 || n_heads == 0 || rope->rot_dim < 2 || !op_begin(c))
                return;
        if (rope->rot_dim / 2 > ROPE_MAX_HALF || rope->rot_dim > head_dim) {
                fail_msg(c, -EIO, "rope", "the rotated dimension is larger than this backend supports");
                return;
        }
        memset(&a, 0, sizeof(a));
        a.half = rope->rot_dim / 2;
        a.pos_scale = rope->pos_scale;
        a.neox = rope->neox;
        for (size_t i = 0; i < a.half; i++) {
                a.theta[i] = pow((double) rope->freq_base, -2.0 * (double) i / (double) rope->rot_dim);
                if (rope->freq_factors)
                        a.theta[i] /= rope->freq_factors[i];
        }
        d_pos = ints_to_device(c, pos, n, "rope");
        if (!d_pos)
                return;
        k_rope<<<blocks_for(n * n_heads * a.half), THREADS, 0, c->stream>>>(x, n, n_heads, head_dim, d_pos, a);
        op_launched(c, "rope");
}

static void cuda_attention(struct nn_backend *be, float *out, const float *q, const float *k_cache,
                           const float *v_cache, size_t pos0, size_t n, size_t n_heads, size_t n_kv_heads,
                           size_t head_dim) {
        struct cuda_backend *c = cuda(be);
        size_t units, len = pos0 + n, floats;

        if (n == 0 || head_dim == 0 || !op_begin(c))
                return;
        if (n_kv_heads == 0 || n_heads % n_kv_heads != 0) {
                fail_msg(c, -EIO, "attention", "the query heads are not a multiple of the key/value heads");
                return;
        }
        /* Scores: one row of len per (token, head); the queries stay in
         * shared memory (48 KiB at most without opting in). */
        if (!size_mul(n, n_heads, &units) || units > INT32_MAX || !size_mul(units, len, &floats) ||
            floats > SIZE_MAX / sizeof(float) || head_dim * sizeof(float) > 48 * 1024) {
                fail_msg(c, -EIO, "attention", "the batch, heads or context are too large");
                return;
        }
        if (!scratch_reserve(c, (void **) &c->scores, &c->scores_cap, floats * sizeof(float), "attention"))
                return;
        k_attention<<<(unsigned) units, THREADS, head_dim * sizeof(float), c->stream>>>(
                out, q, k_cache, v_cache, c->scores, len, pos0, n_heads, n_kv_heads, head_dim,
                1.0f / sqrtf((float) head_dim));
        op_launched(c, "attention");
}

static void cuda_silu_mul(struct nn_backend *be, float *gate, const float *up, size_t n) {
        struct cuda_backend *c = cuda(be);

        if (n == 0 || !op_begin(c))
                return;
        k_silu_mul<<<blocks_for(n), THREADS, 0, c->stream>>>(gate, up, n);
        op_launched(c, "silu_mul");
}

static void cuda_add(struct nn_backend *be, float *y, const float *x, size_t n) {
        struct cuda_backend *c = cuda(be);

        if (n == 0 || !op_begin(c))
                return;
        k_add<<<blocks_for(n), THREADS, 0, c->stream>>>(y, x, n);
        op_launched(c, "add");
}

/* ---- Convolutional ops ---- */

static struct cudnn_api dnn_api;
static int dnn_loaded;                  /* 0, or the negative errno of loading */
static char dnn_why[256];
static pthread_once_t dnn_once = PTHREAD_ONCE_INIT;

static void dnn_load(void) {
        static const char *const names[] = { "libcudnn.so.9", "libcudnn.so.8", "libcudnn.so" };
        void *lib = NULL;

        for (size_t i = 0; !lib && i < sizeof(names) / sizeof(names[0]); i++)
                lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (!lib) {
                snprintf(dnn_why, sizeof(dnn_why), "cannot load cuDNN: %s", dlerror());
                dnn_loaded = -ENODEV;
                return;
        }
#define SYM(f)                                                                                  \
        do {                                                                                    \
                dnn_api.f = (decltype(dnn_api.f)) dlsym(lib, "cudnn" #f);                        \
                if (!dnn_api.f) {                                                               \
                        snprintf(dnn_why, sizeof(dnn_why), "cuDNN lacks cudnn%s", #f);           \
                        dnn_loaded = -ENODEV;                                                   \
                        return;                                                                 \
                }                                                                               \
        } while (0)
        SYM(GetVersion);
        SYM(GetErrorString);
        SYM(Create);
        SYM(Destroy);
        SYM(SetStream);
        SYM(CreateTensorDescriptor);
        SYM(DestroyTensorDescriptor);
        SYM(SetTensor4dDescriptor);
        SYM(CreateFilterDescriptor);
        SYM(DestroyFilterDescriptor);
        SYM(SetFilter4dDescriptor);
        SYM(CreateConvolutionDescriptor);
        SYM(DestroyConvolutionDescriptor);
        SYM(SetConvolution2dDescriptor);
        SYM(SetConvolutionGroupCount);
        SYM(SetConvolutionMathType);
        SYM(FindConvolutionForwardAlgorithmEx);
        SYM(ConvolutionForward);
#undef SYM
}

static void fail_dnn(struct cuda_backend *c, cudnnStatus_t s, const char *what) {
        (void) cudaGetLastError();
        fail_msg(c, s == CUDNN_STATUS_ALLOC_FAILED ? -ENOMEM : -EIO, what, dnn_api.GetErrorString(s));
}

/* cudnnGetVersion(): major·10000 + minor·100 + patch from cuDNN 9 on,
 * major·1000 + minor·100 + patch before. */
static void version_string(size_t v, bool major_10000, char *buf, size_t size) {
        size_t major = major_10000 ? v / 10000 : v / 1000, rest = major_10000 ? v % 10000 : v % 1000;

        snprintf(buf, size, "%zu.%zu.%zu", major, rest / 100, rest % 100);
}

static bool dnn_begin(struct cuda_backend *c) {
        cudnnStatus_t s;
        char version[32];

        if (c->dnn)
                return true;
        pthread_once(&dnn_once, dnn_load);
        if (dnn_loaded < 0) {
                fail_msg(c, dnn_loaded, "conv2d", dnn_why);
                return false;
        }
        s = dnn_api.Create(&c->dnn);
        if (s == CUDNN_STATUS_SUCCESS)
                s = dnn_api.SetStream(c->dnn, c->stream);
        if (s != CUDNN_STATUS_SUCCESS) {
                fail_dnn(c, s, "starting cuDNN");
                return false;
        }
        version_string(dnn_api.GetVersion(), dnn_api.GetVersion() >= 90000, version, sizeof(version));
        snprintf(c->libraries + strlen(c->libraries), sizeof(c->libraries) - strlen(c->libraries), ", cuDNN %s",
                 version);
        return true;
}

struct conv_descs {
        cudnnTensorDescriptor_t x, y;
        cudnnFilterDescriptor_t w;
        cudnnConvolutionDescriptor_t conv;
};

static void conv_descs_done(struct conv_descs *d) {
        if (d->x)
                dnn_api.DestroyTensorDescriptor(d->x);
        if (d->y)
                dnn_api.DestroyTensorDescriptor(d->y);
        if (d->w)
                dnn_api.DestroyFilterDescriptor(d->w);
        if (d->conv)
                dnn_api.DestroyConvolutionDescriptor(d->conv);
}

static cudnnStatus_t conv_descs_make(const struct nn_conv2d *p, struct conv_descs *d) {
        cudnnStatus_t s;

        s = dnn_api.CreateTensorDescriptor(&d->x);
        if (s == CUDNN_STATUS_SUCCESS)
                s = dnn_api.CreateTensorDescriptor(&d->y);
        if (s == CUDNN_STATUS_SUCCESS)
                s = dnn_api.CreateFilterDescriptor(&d->w);
        if (s == CUDNN_STATUS_SUCCESS)
                s = dnn_api.CreateConvolutionDescriptor(&d->conv);
        if (s == CUDNN_STATUS_SUCCESS)
                s = dnn_api.SetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int) p->n, (int) p->c,
                                                  (int) p->h, (int) p->w);
        if (s == CUDNN_STATUS_SUCCESS)
                s = dnn_api.SetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int) p->n, (int) p->k,
                                                  (int) nn_conv2d_out_h(p), (int) nn_conv2d_out_w(p));
        if (s == CUDNN_STATUS_SUCCESS)
                s = dnn_api.SetFilter4dDescriptor(d->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, (int) p->k,
                                                  (int) (p->c / p->groups), (int) p->r, (int) p->s);
        if (s == CUDNN_STATUS_SUCCESS)
                s = dnn_api.SetConvolution2dDescriptor(d->conv, (int) p->pad_h, (int) p->pad_w, (int) p->stride_h,
                                                       (int) p->stride_w, (int) p->dilation_h, (int) p->dilation_w,
                                                       CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT);
        if (s == CUDNN_STATUS_SUCCESS)
                s = dnn_api.SetConvolutionGroupCount(d->conv, (int) p->groups);
        /* Without allow_tf32, FMAs only: CUDNN_DEFAULT_MATH would let f32
         * convolutions round their inputs to TF32 on Ampere and later. */
        if (s == CUDNN_STATUS_SUCCESS)
                s = dnn_api.SetConvolutionMathType(d->conv, p->allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH);
        return s;
}

/* Field by field: a struct's padding bytes are not part of the shape. */
static bool same_shape(const struct nn_conv2d *a, const struct nn_conv2d *b) {
        return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w && a->k == b->k && a->r == b->r &&
               a->s == b->s && a->stride_h == b->stride_h && a->stride_w == b->stride_w && a->pad_h == b->pad_h &&
               a->pad_w == b->pad_w && a->dilation_h == b->dilation_h && a->dilation_w == b->dilation_w &&
               a->groups == b->groups && a->allow_tf32 == b->allow_tf32;
}

static bool algo_allowed(cudnnConvolutionFwdAlgo_t a) {
        return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
               a == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
}

/* The cached algorithm for p, or one chosen now by timing the allowed
 * candidates on x, w and y (y is overwritten, which is fine: it is the
 * convolution's output). */
static const struct conv_algo *conv_algo_for(struct cuda_backend *c, const struct nn_conv2d *p,
                                             const struct conv_descs *d, const float *x, const float *w, float *y) {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        struct nn_conv2d key = *p;
        struct conv_algo *slot;
        int returned = 0;
        cudnnStatus_t s;

        key.act = NN_ACT_NONE;
        for (unsigned i = 0; i < CONV_ALGOS_CACHED; i++)
                if (c->algos[i].used && same_shape(&c->algos[i].shape, &key))
                        return &c->algos[i];

        /* The candidates may use up to CONV_WORKSPACE_MAX, or an eighth or
         * a 64th of it on a device with less free; cudnnFind… skips those
         * that need more. */
        if (c->conv_ws_cap < CONV_WORKSPACE_MAX / 64) {
                cudaError_t e = cudaStreamSynchronize(c->stream);

                if (e != cudaSuccess) {
                        fail_cuda(c, e, "conv2d (workspace)");
                        return NULL;
                }
                (void) cudaFree(c->conv_ws);
                c->conv_ws = NULL;
                c->conv_ws_cap = 0;
                for (size_t size = CONV_WORKSPACE_MAX; size >= CONV_WORKSPACE_MAX / 64; size /= 8) {
                        if (cudaMalloc(&c->conv_ws, size) == cudaSuccess) {
                                c->conv_ws_cap = size;
                                break;
                        }
                        (void) cudaGetLastError();      /* out of memory: not sticky */
                        c->conv_ws = NULL;
                }
                if (!c->conv_ws) {
                        fail_msg(c, -ENOMEM, "conv2d", "no device memory for a convolution's workspace");
                        return NULL;
                }
        }
        s = dnn_api.FindConvolutionForwardAlgorithmEx(c->dnn, d->x, x, d->w, w, d->conv, d->y, y,
                                                      CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf,
                                                      c->conv_ws, c->conv_ws_cap);
        if (s != CUDNN_STATUS_SUCCESS) {
                fail_dnn(c, s, "conv2d (choosing an algorithm)");
                return NULL;
        }
        /* perf is sorted fastest first; a deterministic algorithm is
         * preferred, so that the same job gives the same bits. */
        for (int pass = 0; pass < 2; pass++)
                for (int i = 0; i < returned; i++) {
                        if (perf[i].status != CUDNN_STATUS_SUCCESS || !algo_allowed(perf[i].algo) ||
                            perf[i].memory > c->conv_ws_cap ||
                            (pass == 0 && perf[i].determinism != CUDNN_DETERMINISTIC))
                                continue;
                        slot = &c->algos[c->algo_next];
                        c->algo_next = (c->algo_next + 1) % CONV_ALGOS_CACHED;
                        slot->shape = key;
                        slot->algo = perf[i].algo;
                        slot->math = perf[i].mathType;
                        slot->workspace = perf[i].memory;
                        slot->used = true;
                        return slot;
                }
        fail_msg(c, -EIO, "conv2d", "cuDNN has no GEMM-family algorithm for this convolution");
        return NULL;
}

/* y = act(y + bias[k]) over [n][k][pixels]. */
__global__ void k_bias_act(float *y, const float *bias, size_t k, size_t pixels, size_t total, int act) {
        GRID_STRIDE(i, total) {
                float v = y[i] + (bias ? bias[(i / pixels) % k] : 0.0f);
                y[i] = act == NN_ACT_SILU ? v / (1.0f + expf(-v)) : v;
        }
}

static void cuda_conv2d(struct nn_backend *be, const struct nn_conv2d *p, const float *x, const float *w,
                        const float *bias, float *y) {
        struct cuda_backend *c = cuda(be);
        struct conv_descs d = {};
        const struct conv_algo *a;
        const float alpha = 1.0f, beta = 0.0f;
        size_t pixels = (size_t) nn_conv2d_out_h(p) * nn_conv2d_out_w(p), total = nn_conv2d_y_elems(p);
        cudnnStatus_t s;

        if (!op_begin(c) || !dnn_begin(c))
                return;
        if (nn_conv2d_x_elems(p) > INT32_MAX || total > INT32_MAX) {
                fail_msg(c, -EIO, "conv2d", "a tensor of more than 2^31 elements");
                return;
        }
        s = conv_descs_make(p, &d);
        if (s != CUDNN_STATUS_SUCCESS) {
                fail_dnn(c, s, "conv2d (describing the convolution)");
                conv_descs_done(&d);
                return;
        }
        a = conv_algo_for(c, p, &d, x, w, y);
        if (a) {
                s = dnn_api.SetConvolutionMathType(d.conv, a->math);
                if (s == CUDNN_STATUS_SUCCESS && !scratch_reserve(c, &c->conv_ws, &c->conv_ws_cap, a->workspace,
                                                                  "conv2d (workspace)"))
                        s = CUDNN_STATUS_ALLOC_FAILED;
                if (s == CUDNN_STATUS_SUCCESS)
                        s = dnn_api.ConvolutionForward(c->dnn, &alpha, d.x, x, d.w, w, d.conv, a->algo, c->conv_ws,
                                                       a->workspace, &beta, d.y, y);
                if (s != CUDNN_STATUS_SUCCESS)
                        fail_dnn(c, s, "conv2d (cudnnConvolutionForward)");
        }
        conv_descs_done(&d);
        if (c->error != 0 || (!bias && p->act == NN_ACT_NONE))
                return;
        k_bias_act<<<blocks_for(total), THREADS, 0, c->stream>>>(y, bias, p->k, pixels, total, (int) p->act);
        op_launched(c, "conv2d (bias and activation)");
}

/* One block per (image, group): the mean, then the variance around it,
 * both summed in double as on the CPU. */
__global__ void k_group_norm(float *y, const float *x, size_t c, size_t hw, size_t groups, const float *gamma,
                             const float *beta, float eps, bool silu) {
        __shared__ double red[THREADS];
        size_t cg = c / groups, len = cg * hw, c0 = (blockIdx.x % groups) * cg;
        const float *xg = x + blockIdx.x * len;
        float *yg = y + blockIdx.x * len;
        double sum = 0, var = 0;

        for (size_t i = threadIdx.x; i < len; i += THREADS)
                sum += xg[i];
        float mean = (float) (block_sum_f64(sum, red) / (double) len);
        for (size_t i = threadIdx.x; i < len; i += THREADS)
                var += ((double) xg[i] - mean) * ((double) xg[i] - mean);
        float inv = (float) (1.0 / sqrt(block_sum_f64(var, red) / (double) len + eps));
        for (size_t i = threadIdx.x; i < len; i += THREADS) {
                size_t ch = c0 + i / hw;
                float v = (xg[i] - mean) * inv * (gamma ? gamma[ch] : 1.0f) + (beta ? beta[ch] : 0.0f);
                yg[i] = silu ? v / (1.0f + expf(-v)) : v;
        }
}

static void cuda_group_norm(struct nn_backend *be, float *y, const float *x, size_t n, size_t c, size_t hw,
                            size_t groups, const float *gamma, const float *beta, float eps, bool silu) {
        struct cuda_backend *cb = cuda(be);
        size_t units;

        if (n == 0 || hw == 0 || groups == 0 || !op_begin(cb))
                return;
        if (!size_mul(n, groups, &units) || units > INT32_MAX) {
                fail_msg(cb, -EIO, "group_norm", "too many groups for one grid");
                return;
        }
        k_group_norm<<<(unsigned) units, THREADS, 0, cb->stream>>>(y, x, c, hw, groups, gamma, beta, eps, silu);
        op_launched(cb, "group_norm");
}

__global__ void k_upsample2x(float *y, const float *x, size_t h, size_t w, size_t total) {
        GRID_STRIDE(i, total) {
                size_t ow = 2 * w, plane = 4 * h * w;
                size_t pl = i / plane, r = (i % plane) / ow, col = i % ow;
                y[i] = x[(pl * h + r / 2) * w + col / 2];
        }
}

static void cuda_upsample2x(struct nn_backend *be, float *y, const float *x, size_t planes, size_t h, size_t w) {
        struct cuda_backend *c = cuda(be);
        size_t total;

        if (planes == 0 || h == 0 || w == 0 || !op_begin(c))
                return;
        if (!size_mul(planes, 4 * h * w, &total)) {
                fail_msg(c, -EIO, "upsample2x", "the output is too large");
                return;
        }
        k_upsample2x<<<blocks_for(total), THREADS, 0, c->stream>>>(y, x, h, w, total);
        op_launched(c, "upsample2x");
}

/* ---- Transformer ops ---- */

/* Attention scores per chunk of queries: at most this many floats (64 MiB),
 * whatever the number of pixels (SD's 4,096 × 4,096 per head would be
 * 512 MiB for 8 heads at once). */
#define ATTN_SCORES_MAX ((size_t) 1 << 24)

static void cuda_linear(struct nn_backend *be, float *y, const float *x, size_t n, size_t in, size_t out,
                        const float *w, const float *bias) {
        struct cuda_backend *c = cuda(be);
        const float one = 1.0f, zero = 0.0f;
        cublasStatus_t s;

        if (n == 0 || out == 0 || in == 0 || !op_begin(c))
                return;
        if (n > INT32_MAX || in > INT32_MAX || out > INT32_MAX) {
                fail_msg(c, -EIO, "linear", "the matrices are too large for cuBLAS");
                return;
        }
        /* Row-major y [n][out] = x · wᵀ is column-major yᵀ = wᵀᵀ · xᵀ. */
        s = cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int) out, (int) n, (int) in, &one, w, (int) in, x,
                        (int) in, &zero, y, (int) out);
        if (s != CUBLAS_STATUS_SUCCESS) {
                fail_blas(c, s, "linear (cublasSgemm)");
                return;
        }
        if (bias) {
                k_add_bias<<<blocks_for(n * out), THREADS, 0, c->stream>>>(y, bias, n, out);
                op_launched(c, "linear");
        }
}

/* One block per row, as k_rmsnorm; y may be x. */
__global__ void k_layer_norm(float *y, const float *x, size_t dim, const float *g, const float *b, float eps) {
        __shared__ double red[THREADS];
        const float *xt = x + blockIdx.x * dim;
        float *yt = y + blockIdx.x * dim;
        double sum = 0, var = 0;

        for (size_t i = threadIdx.x; i < dim; i += THREADS)
                sum += xt[i];
        float mean = (float) (block_sum_f64(sum, red) / (double) dim);
        for (size_t i = threadIdx.x; i < dim; i += THREADS)
                var += ((double) xt[i] - mean) * ((double) xt[i] - mean);
        float inv = (float) (1.0 / sqrt(block_sum_f64(var, red) / (double) dim + eps));
        for (size_t i = threadIdx.x; i < dim; i += THREADS)
                yt[i] = (xt[i] - mean) * inv * g[i] + b[i];
}

static void cuda_layer_norm(struct nn_backend *be, float *y, const float *x, size_t n, size_t dim,
                            const float *gamma, const float *beta, float eps) {
        struct cuda_backend *c = cuda(be);

        if (n == 0 || dim == 0 || !op_begin(c))
                return;
        if (n > INT32_MAX) {
                fail_msg(c, -EIO, "layer_norm", "too many rows for one grid");
                return;
        }
        k_layer_norm<<<(unsigned) n, THREADS, 0, c->stream>>>(y, x, dim, gamma, beta, eps);
        op_launched(c, "layer_norm");
}

/* One block per row of scores (head, query of the chunk): softmax in place
 * over the keys the query sees, zeros past them. */
__global__ void k_softmax_rows(float *s, size_t m, size_t n_kv, size_t q0, bool causal) {
        __shared__ float red[THREADS];
        size_t i = blockIdx.x % m;
        float *row = s + (size_t) blockIdx.x * n_kv;
        size_t len = causal && q0 + i + 1 < n_kv ? q0 + i + 1 : n_kv;
        float max = -INFINITY, sum = 0;

        for (size_t j = threadIdx.x; j < len; j += THREADS)
                max = fmaxf(max, row[j]);
        max = block_max(max, red);
        for (size_t j = threadIdx.x; j < len; j += THREADS) {
                float e = expf(row[j] - max);
                row[j] = e;
                sum += e;
        }
        sum = block_sum(sum, red);
        for (size_t j = threadIdx.x; j < n_kv; j += THREADS)
                row[j] = j < len ? row[j] / sum : 0.0f;
}

static void cuda_attention_full(struct nn_backend *be, float *out, const float *q, const float *k, const float *v,
                                size_t n_q, size_t n_kv, size_t n_heads, size_t head_dim, bool causal) {
        struct cuda_backend *c = cuda(be);
        size_t stride, chunk, per_query;
        const float one = 1.0f, zero = 0.0f, scale = 1.0f / sqrtf((float) head_dim);
        cublasStatus_t s;

        if (n_q == 0 || n_heads == 0 || head_dim == 0 || !op_begin(c))
                return;
        if (n_kv == 0) {
                cudaError_t e = cudaMemsetAsync(out, 0, n_q * n_heads * head_dim * sizeof(float), c->stream);
                if (e != cudaSuccess)
                        fail_cuda(c, e, "attention_full");
                return;
        }
        if (!size_mul(n_heads, head_dim, &stride) || !size_mul(n_heads, n_kv, &per_query) ||
            stride > INT32_MAX || n_kv > INT32_MAX || n_q > INT32_MAX || per_query > ATTN_SCORES_MAX) {
                fail_msg(c, -EIO, "attention_full", "the heads or the keys are too many");
                return;
        }
        chunk = ATTN_SCORES_MAX / per_query;
        if (chunk > n_q)
                chunk = n_q;
        if (!scratch_reserve(c, (void **) &c->scores, &c->scores_cap, chunk * per_query * sizeof(float),
                             "attention_full"))
                return;
        for (size_t q0 = 0; q0 < n_q; q0 += chunk) {
                size_t m = n_q - q0 < chunk ? n_q - q0 : chunk;

                /* Per head, column-major: scoresᵀ [n_kv][m] = K_h · Q_hᵀ. */
                s = cublasSgemmStridedBatched(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int) n_kv, (int) m,
                                              (int) head_dim, &scale, k, (int) stride, (long long) head_dim,
                                              q + q0 * stride, (int) stride, (long long) head_dim, &zero, c->scores,
                                              (int) n_kv, (long long) (m * n_kv), (int) n_heads);
                if (s != CUBLAS_STATUS_SUCCESS) {
                        fail_blas(c, s, "attention_full (scores)");
                        return;
                }
                k_softmax_rows<<<(unsigned) (m * n_heads), THREADS, 0, c->stream>>>(c->scores, m, n_kv, q0,
                                                                                    causal);
                op_launched(c, "attention_full");
                /* out_hᵀ [head_dim][m] = V_hᵀ · Pᵀ. */
                s = cublasSgemmStridedBatched(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int) head_dim, (int) m,
                                              (int) n_kv, &one, v, (int) stride, (long long) head_dim, c->scores,
                                              (int) n_kv, (long long) (m * n_kv), &zero, out + q0 * stride,
                                              (int) stride, (long long) head_dim, (int) n_heads);
                if (s != CUBLAS_STATUS_SUCCESS) {
                        fail_blas(c, s, "attention_full (values)");
                        return;
                }
        }
}

__global__ void k_geglu(float *y, const float *x, size_t n, size_t dim) {
        GRID_STRIDE(i, n * dim) {
                size_t r = i / dim, col = i % dim;
                float a = x[r * 2 * dim + col], g = x[r * 2 * dim + dim + col];
                y[i] = a * (0.5f * g * (1.0f + erff(g * 0.70710678118654752f)));
        }
}

static void cuda_geglu(struct nn_backend *be, float *y, const float *x, size_t n, size_t dim) {
        struct cuda_backend *c = cuda(be);

        if (n == 0 || dim == 0 || !op_begin(c))
                return;
        k_geglu<<<blocks_for(n * dim), THREADS, 0, c->stream>>>(y, x, n, dim);
        op_launched(c, "geglu");
}

__global__ void k_quick_gelu(float *x, size_t n) {
        GRID_STRIDE(i, n)
                x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

static void cuda_quick_gelu(struct nn_backend *be, float *x, size_t n) {
        struct cuda_backend *c = cuda(be);

        if (n == 0 || !op_begin(c))
                return;
        k_quick_gelu<<<blocks_for(n), THREADS, 0, c->stream>>>(x, n);
        op_launched(c, "quick_gelu");
}

/* Indexed by the output, so the writes coalesce. */
__global__ void k_transpose(float *y, const float *x, size_t rows, size_t cols) {
        GRID_STRIDE(i, rows * cols)
                y[i] = x[(i % rows) * cols + i / rows];
}

static void cuda_transpose(struct nn_backend *be, float *y, const float *x, size_t rows, size_t cols) {
        struct cuda_backend *c = cuda(be);

        if (rows == 0 || cols == 0 || !op_begin(c))
                return;
        k_transpose<<<blocks_for(rows * cols), THREADS, 0, c->stream>>>(y, x, rows, cols);
        op_launched(c, "transpose");
}

__global__ void k_scale(float *x, size_t n, float a) {
        GRID_STRIDE(i, n)
                x[i] *= a;
}

static void cuda_scale(struct nn_backend *be, float *x, size_t n, float a) {
        struct cuda_backend *c = cuda(be);

        if (n == 0 || !op_begin(c))
                return;
        k_scale<<<blocks_for(n), THREADS, 0, c->stream>>>(x, n, a);
        op_launched(c, "scale");
}

static const char *cuda_libraries(struct nn_backend *be) {
        return cuda(be)->libraries;
}

/* Waits for the queued work, so that a fault in the last kernels is
 * reported with the step that queued them. */
static int cuda_status(struct nn_backend *be) {
        struct cuda_backend *c = cuda(be);
        cudaError_t e;

        if (c->error == 0 && op_begin(c)) {
                e = cudaStreamSynchronize(c->stream);
                if (e != cudaSuccess)
                        fail_cuda(c, e, "the queued work");
        }
        return c->error;
}

static void cuda_free(struct nn_backend *be) {
        struct cuda_backend *c = cuda(be);

        (void) cudaSetDevice(c->device);
        if (c->stream)
                (void) cudaStreamSynchronize(c->stream);
        for (size_t i = 0; i < c->n_weights; i++)
                (void) cudaFree(c->weights[i]);
        free(c->weights);
        (void) cudaFree(c->x16);
        (void) cudaFree(c->ints);
        (void) cudaFree(c->scores);
        (void) cudaFree(c->conv_ws);
        if (c->dnn)
                (void) dnn_api.Destroy(c->dnn);
        if (c->blas)
                (void) cublasDestroy(c->blas);
        if (c->stream)
                (void) cudaStreamDestroy(c->stream);
        free(c);
}

/* ---- The entry ---- */

extern "C" __attribute__((visibility("default"))) int nn_cuda_backend_open(size_t ops_size, int device,
                                                                          struct nn_backend **ret, char *err,
                                                                          size_t err_size) {
        struct cudaDeviceProp prop;
        struct cuda_backend *c;
        cublasStatus_t s;
        cudaError_t e;
        int count = 0;

        if (ops_size != sizeof(struct nn_backend_ops)) {
                return nn_error(err, err_size, -ENODEV, "the CUDA module was built from another version of the "
                                "engine (an ops table of %zu bytes, not %zu)", sizeof(struct nn_backend_ops),
                                ops_size);
        }
        e = cudaGetDeviceCount(&count);
        if (e != cudaSuccess) {
                (void) cudaGetLastError();
                return nn_error(err, err_size, -ENODEV, "no CUDA device: cudaGetDeviceCount: %s",
                                cudaGetErrorString(e));
        }
        if (count <= 0)
                return nn_error(err, err_size, -ENODEV, "no CUDA device: cudaGetDeviceCount found none");
        if (device < 0 || device >= count) {
                return nn_error(err, err_size, -ENODEV, "CUDA device %d requested, but %d %s present", device,
                                count, count == 1 ? "is" : "are");
        }

        c = (struct cuda_backend *) calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->device = device;
        snprintf(c->name, sizeof(c->name), "cuda:%d", device);
        /* cudaFree(NULL) makes the context now rather than in the first op. */
        e = cudaSetDevice(device);
        if (e == cudaSuccess)
                e = cudaFree(NULL);
        if (e == cudaSuccess)
                e = cudaGetDeviceProperties(&prop, device);
        if (e != cudaSuccess) {
                (void) cudaGetLastError();
                free(c);
                return nn_error(err, err_size, -ENODEV, "no CUDA device: device %d: %s", device,
                                cudaGetErrorString(e));
        }
        snprintf(c->name, sizeof(c->name), "cuda:%s", prop.name);

        e = cudaStreamCreate(&c->stream);
        if (e != cudaSuccess) {
                nn_error(err, err_size, 0, "%s: cannot create a stream: %s", c->name, cudaGetErrorString(e));
                cuda_free(&c->base);
                return errno_of(e);
        }
        s = cublasCreate(&c->blas);
        if (s == CUBLAS_STATUS_SUCCESS)
                s = cublasSetStream(c->blas, c->stream);
        if (s != CUBLAS_STATUS_SUCCESS) {
                nn_error(err, err_size, 0, "%s: cannot start cuBLAS: %s", c->name, cublasGetStatusString(s));
                cuda_free(&c->base);
                return s == CUBLAS_STATUS_ALLOC_FAILED ? -ENOMEM : -EIO;
        }
        {
                int v = 0;
                char version[32] = "unknown";

                if (cublasGetVersion(c->blas, &v) == CUBLAS_STATUS_SUCCESS)
                        version_string((size_t) v, true, version, sizeof(version));
                snprintf(c->libraries, sizeof(c->libraries), "cuBLAS %s", version);
        }

        c->ops.name = c->name;
        c->ops.free = cuda_free;
        c->ops.alloc = cuda_alloc;
        c->ops.release = cuda_release;
        c->ops.upload = cuda_upload;
        c->ops.write = cuda_write;
        c->ops.read = cuda_read;
        c->ops.get_rows = cuda_get_rows;
        c->ops.matmul = cuda_matmul;
        c->ops.add_bias = cuda_add_bias;
        c->ops.rmsnorm = cuda_rmsnorm;
        c->ops.rope = cuda_rope;
        c->ops.attention = cuda_attention;
        c->ops.silu_mul = cuda_silu_mul;
        c->ops.add = cuda_add;
        c->ops.copy = cuda_copy;
        c->ops.conv2d = cuda_conv2d;
        c->ops.group_norm = cuda_group_norm;
        c->ops.upsample2x = cuda_upsample2x;
        c->ops.linear = cuda_linear;
        c->ops.layer_norm = cuda_layer_norm;
        c->ops.attention_full = cuda_attention_full;
        c->ops.geglu = cuda_geglu;
        c->ops.quick_gelu = cuda_quick_gelu;
        c->ops.transpose = cuda_transpose;
        c->ops.scale = cuda_scale;
        c->ops.libraries = cuda_libraries;
        c->ops.status = cuda_status;
        c->base.ops = &c->ops;
        *ret = &c->base;
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The engine's op layer: what a forward pass is made of, behind one
 * interface that each device implements (nn-cpu.c; nn-cuda.cu, a module of
 * its own that nn-cuda-loader.c loads on demand).
 * Ops run eagerly, in call order, on activations that live in the backend's
 * memory (nn_backend_alloc); weights are rows of any nn_type, mapped from the
 * model file and made usable on the device once with nn_backend_upload().
 *
 * Shapes are row-major: "[n][dim]" is n rows of dim floats.  The ops never
 * fail once their memory exists: errors surface from alloc/upload, which a
 * model calls at load time, and a device error during the ops (a GPU that
 * went away) is sticky and reported by status() after the step. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nn-conv.h"
#include "nn-type.h"

/* A weight matrix of rows × cols in type (a vector is one row). */
struct nn_weight {
        enum nn_type type;
        uint64_t rows;
        uint64_t cols;
        const void *data;       /* host bytes: nn_row_bytes(type, cols) * rows */
        void *device;           /* the backend's copy, when it keeps one */
};

/* Rotary position embedding parameters (RoPE, Su et al.).  Pairs are
 * (2i, 2i+1) in the "normal" layout (Llama in GGUF, whose converter permuted
 * Q and K) or (i, i + rot_dim/2) in the "neox" layout (Qwen 2). */
struct nn_rope {
        uint32_t rot_dim;               /* leading dims of each head that rotate */
        float freq_base;                /* θ base, 10000 for Llama 2 */
        float pos_scale;                /* linear scaling: position × pos_scale */
        const float *freq_factors;      /* rot_dim/2 divisors of θ_i (Llama 3.1), or NULL */
        int neox;
};

struct nn_backend;

struct nn_backend_ops {
        /* "cpu", or "cuda:<device name>" ("cuda:NVIDIA H100 80GB HBM3"). */
        const char *name;
        void (*free)(struct nn_backend *be);

        float *(*alloc)(struct nn_backend *be, size_t n_floats);
        void (*release)(struct nn_backend *be, float *p);
        int (*upload)(struct nn_backend *be, struct nn_weight *w);
        void (*write)(struct nn_backend *be, float *dst, const float *host, size_t n);
        void (*read)(struct nn_backend *be, float *host, const float *src, size_t n);

        /* out[i] = row ids[i] of w, dequantised: [n][w.cols]. */
        void (*get_rows)(struct nn_backend *be, const struct nn_weight *w, const int32_t *ids, size_t n,
                         float *out);
        /* y[t][r] = Σ_c w[r][c] · x[t][c]: x [n][w.cols] → y [n][w.rows]. */
        void (*matmul)(struct nn_backend *be, const struct nn_weight *w, const float *x, size_t n, float *y);
        /* y[t][i] += bias[i] for an f32 bias of dim elements. */
        void (*add_bias)(struct nn_backend *be, float *y, const struct nn_weight *bias, size_t n);
        /* y[t] = x[t] / rms(x[t]) · gain (gain: one f32 row of dim). */
        void (*rmsnorm)(struct nn_backend *be, float *y, const float *x, const struct nn_weight *gain,
                        size_t n, float eps);
        /* Rotates x [n][n_heads][head_dim] in place; token t is at pos[t]
         * (host memory). */
        void (*rope)(struct nn_backend *be, float *x, size_t n, size_t n_heads, size_t head_dim,
                     const int32_t *pos, const struct nn_rope *rope);
        /* Causal attention with grouped-query heads over a KV cache of
         * [n_ctx][n_kv_heads][head_dim] for K and V, which already holds
         * positions 0 … pos0+n-1: q [n][n_heads][head_dim] at positions
         * pos0 … pos0+n-1 → out [n][n_heads][head_dim]. */
        void (*attention)(struct nn_backend *be, float *out, const float *q, const float *k_cache,
                          const float *v_cache, size_t pos0, size_t n, size_t n_heads, size_t n_kv_heads,
                          size_t head_dim);
        /* gate[i] = silu(gate[i]) · up[i]. */
        void (*silu_mul)(struct nn_backend *be, float *gate, const float *up, size_t n);
        /* y[i] += x[i]. */
        void (*add)(struct nn_backend *be, float *y, const float *x, size_t n);
        /* dst[i] = src[i] (within the backend's memory). */
        void (*copy)(struct nn_backend *be, float *dst, const float *src, size_t n);

        /* The ops of convolutional networks (UNet, VAE), on NCHW tensors in
         * the backend's memory, weights included: f32, written once with
         * write().  See nn-conv.h for the layouts.
         * y = act(conv(x, w) + bias): x [n][c][h][w], w [k][c/groups][r][s],
         * bias [k] or NULL → y [n][k][oh][ow].  p is valid
         * (nn_conv2d_validate). */
        void (*conv2d)(struct nn_backend *be, const struct nn_conv2d *p, const float *x, const float *w,
                       const float *bias, float *y);
        /* GroupNorm (Wu & He): x [n][c][hw] in groups of c/groups channels,
         * each normalised by its own mean and variance over (c/groups)·hw
         * values, then · gamma[c] + beta[c] (NULL: 1 and 0), then SiLU when
         * silu.  groups divides c. */
        void (*group_norm)(struct nn_backend *be, float *y, const float *x, size_t n, size_t c, size_t hw,
                           size_t groups, const float *gamma, const float *beta, float eps, bool silu);
        /* Nearest-neighbour upsampling by 2: x [planes][h][w] → y [planes][2h][2w]. */
        void (*upsample2x)(struct nn_backend *be, float *y, const float *x, size_t planes, size_t h, size_t w);
        /* The ops of transformers on f32 weights in the backend's memory
         * (SD's UNet attention blocks, the CLIP text encoder, the VAE's
         * attention).  y [n][out] = x [n][in] · wᵀ + bias: w [out][in],
         * bias [out] or NULL. */
        void (*linear)(struct nn_backend *be, float *y, const float *x, size_t n, size_t in, size_t out,
                       const float *w, const float *bias);
        /* LayerNorm of each row of dim: y[t] = (x[t] − mean) / sqrt(var + eps)
         * · gamma + beta. */
        void (*layer_norm)(struct nn_backend *be, float *y, const float *x, size_t n, size_t dim,
                           const float *gamma, const float *beta, float eps);
        /* Multi-head attention without a cache: q [n_q][n_heads][head_dim],
         * k and v [n_kv][n_heads][head_dim] → out [n_q][n_heads][head_dim] =
         * softmax(q·kᵀ/√head_dim)·v per head; when causal, query i
         * sees keys 0 … min(i, n_kv − 1) only.  out does not overlap q, k or v. */
        void (*attention_full)(struct nn_backend *be, float *out, const float *q, const float *k, const float *v,
                               size_t n_q, size_t n_kv, size_t n_heads, size_t head_dim, bool causal);
        /* GEGLU: x [n][2·dim] → y [n][dim] = x[t][0:dim] · gelu(x[t][dim:2·dim]),
         * the exact (erf) GELU. */
        void (*geglu)(struct nn_backend *be, float *y, const float *x, size_t n, size_t dim);
        /* x[i] ← x[i] · sigmoid(1.702 · x[i]) (CLIP's quick GELU). */
        void (*quick_gelu)(struct nn_backend *be, float *x, size_t n);
        /* y [cols][rows] = the transpose of x [rows][cols] (NCHW ↔ tokens). */
        void (*transpose)(struct nn_backend *be, float *y, const float *x, size_t rows, size_t cols);
        /* x[i] ← x[i] · a. */
        void (*scale)(struct nn_backend *be, float *x, size_t n, float a);
        /* The libraries doing the work, for adverts: "OpenBLAS 0.3.21 …",
         * "cuBLAS 12.4.5, cuDNN 9.1.0" (cuDNN once a convolution loaded it). */
        const char *(*libraries)(struct nn_backend *be);
        /* 0, or the negative errno of a device error since the backend was
         * made (-ENODEV, -EIO): the results of the ops since are garbage. */
        int (*status)(struct nn_backend *be);
};

struct nn_backend {
        const struct nn_backend_ops *ops;
};

/* The CPU backend on n_threads threads (0: one per online CPU). */
int nn_cpu_backend_new(unsigned n_threads, struct nn_backend **ret);
unsigned nn_cpu_backend_threads(const struct nn_backend *be);

/* The CUDA backend on device (0 for the first), loaded at run time from the
 * module nn-cuda.so (the path in $SWARM_NN_CUDA_MODULE, else where it is
 * installed).  Weight matrices are kept on the device as f16 whatever the
 * file's type (2 bytes per parameter) and multiplied by cuBLAS with f32
 * accumulation, so logits differ from the CPU's by f16 rounding.  -ENODEV
 * with the reason in err when this build has no CUDA backend, the module or
 * the CUDA libraries cannot be loaded, or there is no such device; -EIO or
 * -ENOMEM when the device is there but cannot be set up. */
int nn_cuda_backend_new(int device, struct nn_backend **ret, char *err, size_t err_size);

static inline void nn_backend_free(struct nn_backend *be) {
        if (be)
                be->ops->free(be);
}

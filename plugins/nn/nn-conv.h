/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* 2-D convolution as the engine computes it (the backends' conv2d op) and
 * as the conv2d skill checks it: the shape of one convolution, its output
 * size and cost, and im2col of a tile of output pixels, which both the CPU
 * backend (conv = weights · im2col) and the skill's verification (a random
 * projection of the weights · im2col) are built on.
 *
 * Layouts are NCHW: x [n][c][h][w] → y [n][k][oh][ow], weights
 * [k][c/groups][r][s], bias [k].  Output channel k of group g = k / (k/groups)
 * sees input channels g·c/groups … (g+1)·c/groups − 1.  Cross-correlation, as
 * in every framework: y[k][oh][ow] = Σ w[k][c][i][j] · x[c][oh·stride_h −
 * pad_h + i·dilation_h][ow·stride_w − pad_w + j·dilation_w], zero outside. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum nn_activation {
        NN_ACT_NONE,
        NN_ACT_SILU,            /* x · σ(x), after the bias */
};

struct nn_conv2d {
        uint32_t n, c, h, w;            /* input: batch, channels, height, width */
        uint32_t k, r, s;               /* output channels, kernel height, kernel width */
        uint32_t stride_h, stride_w;    /* ≥ 1 */
        uint32_t pad_h, pad_w;          /* zeros on each side */
        uint32_t dilation_h, dilation_w;        /* ≥ 1 */
        uint32_t groups;                /* ≥ 1, divides c and k */
        enum nn_activation act;
        /* The CUDA backend may round x and w to TF32 on tensor cores (a
         * 10-bit mantissa, as gemm's tf32); the CPU always computes in
         * f32.  Without it the GPU computes in f32 with FMAs only. */
        bool allow_tf32;
};

/* Each dimension at most this; element counts below 2^40, and output
 * pixels and dot products below 2^31 (BLAS and cuDNN index with int):
 * nn_conv2d_validate(). */
#define NN_CONV_DIM_MAX (UINT32_C(1) << 20)

/* 0 when p describes a convolution the engine can run; else -EINVAL (or
 * -E2BIG for a size past what it indexes) with the reason in err, naming
 * the field. */
int nn_conv2d_validate(const struct nn_conv2d *p, char *err, size_t err_size);

uint32_t nn_conv2d_out_h(const struct nn_conv2d *p);
uint32_t nn_conv2d_out_w(const struct nn_conv2d *p);
/* Elements of x, w, y; c/groups · r · s (the length of each output's dot
 * product); multiply-adds of the whole convolution. */
uint64_t nn_conv2d_x_elems(const struct nn_conv2d *p);
uint64_t nn_conv2d_w_elems(const struct nn_conv2d *p);
uint64_t nn_conv2d_y_elems(const struct nn_conv2d *p);
uint64_t nn_conv2d_dot_len(const struct nn_conv2d *p);
double nn_conv2d_flops(const struct nn_conv2d *p);

/* The im2col rows [q0, q1) (q = (c_in_group · r + i) · s + j) for output
 * pixels [p0, p1) (p = oh · ow_count + ow) of image `image`, group `group`:
 * col[(q − q0) · ld + (p − p0)], zeros where the kernel falls on padding.
 * With abs_value, |x| instead of x. */
void nn_conv2d_im2col(const struct nn_conv2d *p, const float *x, uint32_t image, uint32_t group,
                      uint64_t q0, uint64_t q1, uint64_t p0, uint64_t p1, float *col, size_t ld, bool abs_value);

/* True when im2col of this convolution is x itself (1×1 kernel, stride 1,
 * no padding): the CPU multiplies the input in place. */
bool nn_conv2d_is_pointwise(const struct nn_conv2d *p);

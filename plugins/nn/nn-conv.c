/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The shape arithmetic and im2col of nn-conv.h. */

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "nn-conv.h"
#include "nn-error.h"

/* Element counts of x, w and y stay below this (1 Ti elements, 4 TiB of
 * f32): far past any memory, and products of two counts fit in 64 bits
 * with room to spare. */
#define ELEMS_MAX (UINT64_C(1) << 40)

static uint32_t out_dim(uint32_t in, uint32_t pad, uint32_t kernel, uint32_t dilation, uint32_t stride) {
        uint64_t span = (uint64_t) (kernel - 1) * dilation + 1, padded = (uint64_t) in + 2 * (uint64_t) pad;

        return padded < span ? 0 : (uint32_t) ((padded - span) / stride + 1);
}

uint32_t nn_conv2d_out_h(const struct nn_conv2d *p) {
        return out_dim(p->h, p->pad_h, p->r, p->dilation_h, p->stride_h);
}

uint32_t nn_conv2d_out_w(const struct nn_conv2d *p) {
        return out_dim(p->w, p->pad_w, p->s, p->dilation_w, p->stride_w);
}

uint64_t nn_conv2d_x_elems(const struct nn_conv2d *p) {
        return (uint64_t) p->n * p->c * p->h * p->w;
}

uint64_t nn_conv2d_w_elems(const struct nn_conv2d *p) {
        return (uint64_t) p->k * (p->c / p->groups) * p->r * p->s;
}

uint64_t nn_conv2d_y_elems(const struct nn_conv2d *p) {
        return (uint64_t) p->n * p->k * nn_conv2d_out_h(p) * nn_conv2d_out_w(p);
}

uint64_t nn_conv2d_dot_len(const struct nn_conv2d *p) {
        return (uint64_t) (p->c / p->groups) * p->r * p->s;
}

double nn_conv2d_flops(const struct nn_conv2d *p) {
        return 2.0 * (double) nn_conv2d_y_elems(p) * (double) nn_conv2d_dot_len(p);
}

bool nn_conv2d_is_pointwise(const struct nn_conv2d *p) {
        return p->r == 1 && p->s == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_h == 0 && p->pad_w == 0;
}

/* a·b·c·d without overflow, or UINT64_MAX. */
static uint64_t mul4(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
        uint64_t r;

        if (__builtin_mul_overflow(a, b, &r) || __builtin_mul_overflow(r, c, &r) || __builtin_mul_overflow(r, d, &r))
                return UINT64_MAX;
        return r;
}

int nn_conv2d_validate(const struct nn_conv2d *p, char *err, size_t err_size) {
        const struct {
                const char *name;
                uint32_t value;
        } dims[] = {
                { "batch (n)", p->n }, { "channels (c)", p->c }, { "height (h)", p->h }, { "width (w)", p->w },
                { "output channels (k)", p->k }, { "kernel height (r)", p->r }, { "kernel width (s)", p->s },
                { "stride", p->stride_h }, { "stride", p->stride_w },
                { "dilation", p->dilation_h }, { "dilation", p->dilation_w }, { "groups", p->groups },
        };

        for (size_t i = 0; i < sizeof(dims) / sizeof(dims[0]); i++) {
                if (dims[i].value == 0)
                        return nn_error(err, err_size, -EINVAL, "%s is 0; it must be at least 1", dims[i].name);
                if (dims[i].value > NN_CONV_DIM_MAX)
                        return nn_error(err, err_size, -E2BIG, "%s is %" PRIu32 ", over the %" PRIu32 " this engine "
                                        "supports", dims[i].name, dims[i].value, NN_CONV_DIM_MAX);
        }
        if (p->pad_h > NN_CONV_DIM_MAX || p->pad_w > NN_CONV_DIM_MAX)
                return nn_error(err, err_size, -E2BIG, "padding %" PRIu32 "×%" PRIu32 " is over the %" PRIu32
                                " this engine supports", p->pad_h, p->pad_w, NN_CONV_DIM_MAX);
        if (p->c % p->groups != 0 || p->k % p->groups != 0)
                return nn_error(err, err_size, -EINVAL, "groups is %" PRIu32 ", which must divide both the input "
                                "channels (%" PRIu32 ") and the output channels (%" PRIu32 ")",
                                p->groups, p->c, p->k);
        if (p->act != NN_ACT_NONE && p->act != NN_ACT_SILU)
                return nn_error(err, err_size, -EINVAL, "unknown activation %d", (int) p->act);
        if (nn_conv2d_out_h(p) == 0 || nn_conv2d_out_w(p) == 0)
                return nn_error(err, err_size, -EINVAL, "the kernel (%" PRIu32 "×%" PRIu32 ", dilation %" PRIu32
                                "×%" PRIu32 ") is larger than the padded input (%" PRIu64 "×%" PRIu64 ")",
                                p->r, p->s, p->dilation_h, p->dilation_w,
                                (uint64_t) p->h + 2 * (uint64_t) p->pad_h, (uint64_t) p->w + 2 * (uint64_t) p->pad_w);
        if (mul4(p->n, p->c, p->h, p->w) >= ELEMS_MAX ||
            mul4(p->k, p->c / p->groups, p->r, p->s) >= ELEMS_MAX ||
            mul4(p->n, p->k, nn_conv2d_out_h(p), nn_conv2d_out_w(p)) >= ELEMS_MAX ||
            mul4(p->c / p->groups, p->r, p->s, 1) >= ELEMS_MAX ||
            mul4(nn_conv2d_out_h(p), nn_conv2d_out_w(p), 1, 1) >= ELEMS_MAX)
                return nn_error(err, err_size, -E2BIG, "the tensors of this convolution have more than 2^40 "
                                "elements");
        /* BLAS and cuDNN take their dimensions as int. */
        if (mul4(nn_conv2d_out_h(p), nn_conv2d_out_w(p), 1, 1) > INT32_MAX ||
            mul4(p->c / p->groups, p->r, p->s, 1) > INT32_MAX || p->k / p->groups > (uint32_t) INT32_MAX)
                return nn_error(err, err_size, -E2BIG, "the output has %" PRIu64 " pixels, or each output sums %"
                                PRIu64 " products: over the 2^31 − 1 the libraries index with",
                                (uint64_t) nn_conv2d_out_h(p) * nn_conv2d_out_w(p), nn_conv2d_dot_len(p));
        return 0;
}

void nn_conv2d_im2col(const struct nn_conv2d *p, const float *x, uint32_t image, uint32_t group,
                      uint64_t q0, uint64_t q1, uint64_t p0, uint64_t p1, float *col, size_t ld, bool abs_value) {
        const uint32_t cg = p->c / p->groups, ow_count = nn_conv2d_out_w(p);
        const uint64_t rs = (uint64_t) p->r * p->s, plane = (uint64_t) p->h * p->w;
        const float *xg = x + ((uint64_t) image * p->c + (uint64_t) group * cg) * plane;

        for (uint64_t q = q0; q < q1; q++) {
                uint64_t ci = q / rs, i = (q % rs) / p->s, j = q % p->s;
                const float *xc = xg + ci * plane;
                float *out = col + (q - q0) * ld;
                /* The input row and column under output pixel (oh, ow) are
                 * oh·stride − pad + i·dilation, ow·stride − pad + j·dilation. */
                int64_t row_off = (int64_t) (i * p->dilation_h) - p->pad_h;
                int64_t col_off = (int64_t) (j * p->dilation_w) - p->pad_w;
                uint64_t pix = p0;

                while (pix < p1) {
                        uint64_t oh = pix / ow_count, ow = pix % ow_count;
                        uint64_t run = ow_count - ow;
                        int64_t ih = (int64_t) oh * p->stride_h + row_off;

                        if (run > p1 - pix)
                                run = p1 - pix;
                        if (ih < 0 || ih >= (int64_t) p->h) {
                                memset(out + (pix - p0), 0, run * sizeof(float));
                        } else {
                                const float *xr = xc + (uint64_t) ih * p->w;
                                float *o = out + (pix - p0);
                                int64_t iw0 = (int64_t) ow * p->stride_w + col_off, sw = p->stride_w;
                                /* Taps t in [lo, hi) fall inside the row:
                                 * 0 ≤ iw0 + t·sw < w. */
                                int64_t lo = iw0 >= 0 ? 0 : (-iw0 + sw - 1) / sw;
                                int64_t hi = iw0 >= (int64_t) p->w ? 0 : ((int64_t) p->w - iw0 + sw - 1) / sw;

                                if (hi > (int64_t) run)
                                        hi = (int64_t) run;
                                if (lo > hi)
                                        lo = hi;
                                memset(o, 0, (size_t) lo * sizeof(float));
                                if (sw == 1 && !abs_value)
                                        memcpy(o + lo, xr + iw0 + lo, (size_t) (hi - lo) * sizeof(float));
                                else
                                        for (int64_t t = lo; t < hi; t++) {
                                                float v = xr[iw0 + t * sw];

                                                o[t] = abs_value ? fabsf(v) : v;
                                        }
                                memset(o + hi, 0, (size_t) ((int64_t) run - hi) * sizeof(float));
                        }
                        pix += run;
                }
        }
}

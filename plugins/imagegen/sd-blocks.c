/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* sd-blocks.h's blocks on the engine's ops. */

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn-error.h"
#include "safetensors.h"
#include "sd-blocks.h"

/* SD's GroupNorm: 32 groups, ε = 1e-5. */
#define GN_GROUPS 32
#define GN_EPS 1e-5f

int sd_weight_load(struct nn_backend *be, const struct safetensors *file, const char *name, uint64_t n,
                   struct sd_weight *ret, char *err, size_t err_size) {
        const struct st_tensor *t = safetensors_find(file, name);
        float *host;
        int r;

        *ret = (struct sd_weight) {};
        if (!t)
                return nn_error(err, err_size, -ENOENT, "the checkpoint has no tensor %s", name);
        if (n && t->n_elements != n)
                return nn_error(err, err_size, -EBADMSG, "tensor %s has %" PRIu64 " elements, %" PRIu64 " expected",
                                name, t->n_elements, n);
        host = malloc((t->n_elements ?: 1) * sizeof(float));
        if (!host)
                return nn_error(err, err_size, -ENOMEM, "out of memory for %s", name);
        r = safetensors_read_f32(t, 0, t->n_elements, host);
        if (r < 0) {
                free(host);
                return nn_error(err, err_size, -EBADMSG, "tensor %s is %s, not F32, F16 or BF16", name,
                                st_dtype_name(t->dtype));
        }
        ret->data = be->ops->alloc(be, t->n_elements);
        if (!ret->data) {
                free(host);
                return nn_error(err, err_size, -ENOMEM, "out of %s memory for %s", be->ops->name, name);
        }
        be->ops->write(be, ret->data, host, t->n_elements);
        ret->n = t->n_elements;
        free(host);
        return 0;
}

void sd_weight_free(struct nn_backend *be, struct sd_weight *w) {
        if (w->data)
                be->ops->release(be, w->data);
        *w = (struct sd_weight) {};
}

void sd_timestep_embedding(double t, uint32_t dim, float *out) {
        uint32_t half = dim / 2;

        for (uint32_t i = 0; i < half; i++) {
                double f = exp(-log(10000.0) * (double) i / (double) half);

                out[i] = (float) cos(t * f);
                out[half + i] = (float) sin(t * f);
        }
        if (dim % 2)
                out[dim - 1] = 0;
}

int sd_resblock_load(struct nn_backend *be, const struct safetensors *file, const char *prefix, uint32_t in,
                     uint32_t out, uint32_t emb, struct sd_resblock *ret, char *err, size_t err_size) {
        const struct {
                const char *name;
                uint64_t n;
                struct sd_weight *w;
        } parts[] = {
                { "in_layers.0.weight", in, &ret->norm1_g },
                { "in_layers.0.bias", in, &ret->norm1_b },
                { "in_layers.2.weight", (uint64_t) out * in * 9, &ret->conv1_w },
                { "in_layers.2.bias", out, &ret->conv1_b },
                { "emb_layers.1.weight", (uint64_t) out * emb, &ret->emb_w },
                { "emb_layers.1.bias", out, &ret->emb_b },
                { "out_layers.0.weight", out, &ret->norm2_g },
                { "out_layers.0.bias", out, &ret->norm2_b },
                { "out_layers.3.weight", (uint64_t) out * out * 9, &ret->conv2_w },
                { "out_layers.3.bias", out, &ret->conv2_b },
                { "skip_connection.weight", (uint64_t) out * in, &ret->skip_w },
                { "skip_connection.bias", out, &ret->skip_b },
        };
        char name[512];
        int r;

        *ret = (struct sd_resblock) { .in = in, .out = out, .emb = emb };
        if (in % GN_GROUPS || out % GN_GROUPS)
                return nn_error(err, err_size, -EINVAL, "%s: channels %" PRIu32 " → %" PRIu32 " are not multiples of "
                                "GroupNorm's %d groups", prefix, in, out, GN_GROUPS);
        for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
                if (in == out && i >= 10)
                        break;          /* no skip convolution */
                snprintf(name, sizeof(name), "%s%s", prefix, parts[i].name);
                r = sd_weight_load(be, file, name, parts[i].n, parts[i].w, err, err_size);
                if (r < 0) {
                        sd_resblock_free(be, ret);
                        return r;
                }
        }
        return 0;
}

void sd_resblock_free(struct nn_backend *be, struct sd_resblock *b) {
        struct sd_weight *all[] = {
                &b->norm1_g, &b->norm1_b, &b->conv1_w, &b->conv1_b, &b->emb_w, &b->emb_b,
                &b->norm2_g, &b->norm2_b, &b->conv2_w, &b->conv2_b, &b->skip_w, &b->skip_b,
        };

        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
                sd_weight_free(be, all[i]);
}

size_t sd_resblock_scratch(const struct sd_resblock *b, uint32_t h, uint32_t w) {
        size_t c = b->in > b->out ? b->in : b->out;

        return 3 * c * h * w + b->emb + b->out;
}

static struct nn_conv2d conv_shape(uint32_t c, uint32_t h, uint32_t w, uint32_t k, uint32_t r, uint32_t stride) {
        return (struct nn_conv2d) {
                .n = 1, .c = c, .h = h, .w = w, .k = k, .r = r, .s = r, .stride_h = stride, .stride_w = stride,
                .pad_h = r / 2, .pad_w = r / 2, .dilation_h = 1, .dilation_w = 1, .groups = 1,
        };
}

void sd_resblock_forward(struct nn_backend *be, const struct sd_resblock *b, const float *x, const float *emb,
                         uint32_t h, uint32_t w, float *y, float *scratch) {
        size_t hw = (size_t) h * w, c = b->in > b->out ? b->in : b->out;
        float *t1 = scratch, *t2 = scratch + c * hw, *t3 = scratch + 2 * c * hw;
        float *e_in = scratch + 3 * c * hw, *e_out = e_in + b->emb;
        struct nn_conv2d p;
        float *silu_emb = malloc(b->emb * sizeof(float));

        /* As the engine's ops: they cannot fail. */
        if (!silu_emb)
                abort();
        /* emb_layers: SiLU, then the linear layer (a 1×1 convolution of a
         * 1×1 image), whose output joins the first convolution's bias. */
        for (uint32_t i = 0; i < b->emb; i++)
                silu_emb[i] = emb[i] / (1.0f + expf(-emb[i]));
        be->ops->write(be, e_in, silu_emb, b->emb);
        free(silu_emb);
        p = conv_shape(b->emb, 1, 1, b->out, 1, 1);
        be->ops->conv2d(be, &p, e_in, b->emb_w.data, b->emb_b.data, e_out);
        be->ops->add(be, e_out, b->conv1_b.data, b->out);

        /* in_layers: GroupNorm, SiLU, 3×3 convolution. */
        be->ops->group_norm(be, t1, x, 1, b->in, hw, GN_GROUPS, b->norm1_g.data, b->norm1_b.data, GN_EPS, true);
        p = conv_shape(b->in, h, w, b->out, 3, 1);
        be->ops->conv2d(be, &p, t1, b->conv1_w.data, e_out, t2);
        /* out_layers: GroupNorm, SiLU, (dropout), 3×3 convolution. */
        be->ops->group_norm(be, t3, t2, 1, b->out, hw, GN_GROUPS, b->norm2_g.data, b->norm2_b.data, GN_EPS, true);
        p = conv_shape(b->out, h, w, b->out, 3, 1);
        be->ops->conv2d(be, &p, t3, b->conv2_w.data, b->conv2_b.data, y);
        /* The skip path. */
        if (b->in != b->out) {
                p = conv_shape(b->in, h, w, b->out, 1, 1);
                be->ops->conv2d(be, &p, x, b->skip_w.data, b->skip_b.data, t1);
                be->ops->add(be, y, t1, b->out * hw);
        } else
                be->ops->add(be, y, x, b->out * hw);
}

void sd_downsample(struct nn_backend *be, const struct sd_weight *w, const struct sd_weight *bias, uint32_t c,
                   const float *x, uint32_t h, uint32_t wd, float *y) {
        struct nn_conv2d p = conv_shape(c, h, wd, c, 3, 2);

        be->ops->conv2d(be, &p, x, w->data, bias->data, y);
}

void sd_upsample(struct nn_backend *be, const struct sd_weight *w, const struct sd_weight *bias, uint32_t c,
                 const float *x, uint32_t h, uint32_t wd, float *y, float *scratch) {
        struct nn_conv2d p = conv_shape(c, 2 * h, 2 * wd, c, 3, 1);

        be->ops->upsample2x(be, scratch, x, c, h, wd);
        be->ops->conv2d(be, &p, scratch, w->data, bias->data, y);
}

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
/* The SpatialTransformer's own GroupNorm (Normalize in LDM's attention.py)
 * and BasicTransformerBlock's LayerNorms. */
#define TR_GN_EPS 1e-6f
#define LN_EPS 1e-5f

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

int sd_transformer_load(struct nn_backend *be, const struct safetensors *file, const char *prefix, uint32_t ch,
                        uint32_t ctx, uint32_t heads, struct sd_transformer *ret, char *err, size_t err_size) {
        const uint64_t c = ch;
        const struct {
                const char *name;
                uint64_t n;
                struct sd_weight *w;
        } parts[] = {
                { "norm.weight", c, &ret->norm_g },
                { "norm.bias", c, &ret->norm_b },
                { "proj_in.weight", c * c, &ret->proj_in_w },
                { "proj_in.bias", c, &ret->proj_in_b },
                { "proj_out.weight", c * c, &ret->proj_out_w },
                { "proj_out.bias", c, &ret->proj_out_b },
                { "transformer_blocks.0.norm1.weight", c, &ret->n1_g },
                { "transformer_blocks.0.norm1.bias", c, &ret->n1_b },
                { "transformer_blocks.0.norm2.weight", c, &ret->n2_g },
                { "transformer_blocks.0.norm2.bias", c, &ret->n2_b },
                { "transformer_blocks.0.norm3.weight", c, &ret->n3_g },
                { "transformer_blocks.0.norm3.bias", c, &ret->n3_b },
                { "transformer_blocks.0.attn1.to_q.weight", c * c, &ret->q1 },
                { "transformer_blocks.0.attn1.to_k.weight", c * c, &ret->k1 },
                { "transformer_blocks.0.attn1.to_v.weight", c * c, &ret->v1 },
                { "transformer_blocks.0.attn1.to_out.0.weight", c * c, &ret->o1_w },
                { "transformer_blocks.0.attn1.to_out.0.bias", c, &ret->o1_b },
                { "transformer_blocks.0.attn2.to_q.weight", c * c, &ret->q2 },
                { "transformer_blocks.0.attn2.to_k.weight", c * ctx, &ret->k2 },
                { "transformer_blocks.0.attn2.to_v.weight", c * ctx, &ret->v2 },
                { "transformer_blocks.0.attn2.to_out.0.weight", c * c, &ret->o2_w },
                { "transformer_blocks.0.attn2.to_out.0.bias", c, &ret->o2_b },
                { "transformer_blocks.0.ff.net.0.proj.weight", 8 * c * c, &ret->ff1_w },
                { "transformer_blocks.0.ff.net.0.proj.bias", 8 * c, &ret->ff1_b },
                { "transformer_blocks.0.ff.net.2.weight", 4 * c * c, &ret->ff2_w },
                { "transformer_blocks.0.ff.net.2.bias", c, &ret->ff2_b },
        };
        char name[512];
        int r;

        *ret = (struct sd_transformer) { .ch = ch, .ctx = ctx, .heads = heads };
        if (ch % GN_GROUPS || heads == 0 || ch % heads)
                return nn_error(err, err_size, -EINVAL, "%s: %" PRIu32 " channels are not a multiple of GroupNorm's "
                                "%d groups and of %" PRIu32 " heads", prefix, ch, GN_GROUPS, heads);
        for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
                snprintf(name, sizeof(name), "%s%s", prefix, parts[i].name);
                r = sd_weight_load(be, file, name, parts[i].n, parts[i].w, err, err_size);
                if (r < 0) {
                        sd_transformer_free(be, ret);
                        return r;
                }
        }
        return 0;
}

void sd_transformer_free(struct nn_backend *be, struct sd_transformer *t) {
        struct sd_weight *all[] = {
                &t->norm_g, &t->norm_b, &t->proj_in_w, &t->proj_in_b, &t->proj_out_w, &t->proj_out_b,
                &t->n1_g, &t->n1_b, &t->n2_g, &t->n2_b, &t->n3_g, &t->n3_b,
                &t->q1, &t->k1, &t->v1, &t->o1_w, &t->o1_b, &t->q2, &t->k2, &t->v2, &t->o2_w, &t->o2_b,
                &t->ff1_w, &t->ff1_b, &t->ff2_w, &t->ff2_b,
        };

        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
                sd_weight_free(be, all[i]);
}

size_t sd_transformer_scratch(const struct sd_transformer *t, uint32_t h, uint32_t w, size_t n_ctx) {
        size_t hw = (size_t) h * w, c = t->ch, kv = hw > n_ctx ? hw : n_ctx;

        /* a, b, the residual stream, q: hw·c each; k, v: kv·c each; the
         * feed-forward's 8·c and 4·c per token. */
        return 4 * hw * c + 2 * kv * c + 12 * hw * c;
}

void sd_transformer_forward(struct nn_backend *be, const struct sd_transformer *t, const float *x,
                            const float *context, size_t n_ctx, uint32_t h, uint32_t w, float *y, float *scratch) {
        size_t hw = (size_t) h * w, c = t->ch, kv = hw > n_ctx ? hw : n_ctx, hd = c / t->heads;
        float *a = scratch, *b = a + hw * c, *res = b + hw * c, *q = res + hw * c;
        float *k = q + hw * c, *v = k + kv * c, *ff = v + kv * c, *ff2 = ff + 8 * hw * c;

        /* GroupNorm on the image, then tokens: [hw][c]. */
        be->ops->group_norm(be, a, x, 1, c, hw, GN_GROUPS, t->norm_g.data, t->norm_b.data, TR_GN_EPS, false);
        be->ops->transpose(be, b, a, c, hw);
        be->ops->linear(be, res, b, hw, c, c, t->proj_in_w.data, t->proj_in_b.data);

        /* Self-attention. */
        be->ops->layer_norm(be, a, res, hw, c, t->n1_g.data, t->n1_b.data, LN_EPS);
        be->ops->linear(be, q, a, hw, c, c, t->q1.data, NULL);
        be->ops->linear(be, k, a, hw, c, c, t->k1.data, NULL);
        be->ops->linear(be, v, a, hw, c, c, t->v1.data, NULL);
        be->ops->attention_full(be, b, q, k, v, hw, hw, t->heads, hd, false);
        be->ops->linear(be, a, b, hw, c, c, t->o1_w.data, t->o1_b.data);
        be->ops->add(be, res, a, hw * c);

        /* Cross-attention to the text. */
        be->ops->layer_norm(be, a, res, hw, c, t->n2_g.data, t->n2_b.data, LN_EPS);
        be->ops->linear(be, q, a, hw, c, c, t->q2.data, NULL);
        be->ops->linear(be, k, context, n_ctx, t->ctx, c, t->k2.data, NULL);
        be->ops->linear(be, v, context, n_ctx, t->ctx, c, t->v2.data, NULL);
        be->ops->attention_full(be, b, q, k, v, hw, n_ctx, t->heads, hd, false);
        be->ops->linear(be, a, b, hw, c, c, t->o2_w.data, t->o2_b.data);
        be->ops->add(be, res, a, hw * c);

        /* GEGLU feed-forward. */
        be->ops->layer_norm(be, a, res, hw, c, t->n3_g.data, t->n3_b.data, LN_EPS);
        be->ops->linear(be, ff, a, hw, c, 8 * c, t->ff1_w.data, t->ff1_b.data);
        be->ops->geglu(be, ff2, ff, hw, 4 * c);
        be->ops->linear(be, a, ff2, hw, 4 * c, c, t->ff2_w.data, t->ff2_b.data);
        be->ops->add(be, res, a, hw * c);

        /* Back to the image, plus the input. */
        be->ops->linear(be, a, res, hw, c, c, t->proj_out_w.data, t->proj_out_b.data);
        be->ops->transpose(be, y, a, hw, c);
        be->ops->add(be, y, x, hw * c);
}

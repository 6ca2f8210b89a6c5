/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vae.h's decoder on the engine's ops. */

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn-error.h"
#include "safetensors.h"
#include "vae.h"

/* The VAE's Normalize: GroupNorm of 32 groups, ε = 1e-6. */
#define GN_GROUPS 32
#define GN_EPS 1e-6f

#define NAME_MAX_LEN (SAFETENSORS_NAME_MAX + 1)

struct vae_decoder {
        struct nn_backend *be;
        struct vae_config cfg;
        uint64_t params;
        struct sd_weight post_quant_w, post_quant_b;
        struct sd_weight conv_in_w, conv_in_b;
        struct vae_resnet mid_1, mid_2;
        struct vae_attention mid_attn;
        /* By level as the file numbers them: level levels − 1 runs first. */
        struct vae_resnet block[VAE_LEVELS_MAX][VAE_BLOCKS];
        struct sd_weight up_w[VAE_LEVELS_MAX], up_b[VAE_LEVELS_MAX];  /* none at level 0 */
        struct sd_weight norm_out_g, norm_out_b, conv_out_w, conv_out_b;
};

static size_t max_size(size_t a, size_t b) {
        return a > b ? a : b;
}

static struct nn_conv2d conv_shape(uint32_t c, uint32_t h, uint32_t w, uint32_t k, uint32_t r) {
        return (struct nn_conv2d) {
                .n = 1, .c = c, .h = h, .w = w, .k = k, .r = r, .s = r, .stride_h = 1, .stride_w = 1,
                .pad_h = r / 2, .pad_w = r / 2, .dilation_h = 1, .dilation_w = 1, .groups = 1,
        };
}

/* ---- Loading ---- */

struct loader {
        struct nn_backend *be;
        const struct safetensors *file;
        /* The tensors loaded, when tracked: the decoder refuses those under
         * its prefix that it did not load. */
        bool track;
        const struct st_tensor **seen;
        size_t n_seen, n_alloc;
        uint64_t params;
        char *err;
        size_t err_size;
};

#define SHAPE(...) (uint32_t) (sizeof((const uint64_t[]) { __VA_ARGS__ }) / sizeof(uint64_t)), \
                   (const uint64_t[]) { __VA_ARGS__ }

static void format_shape(char *buf, size_t size, uint32_t ndim, const uint64_t *shape) {
        size_t at = 0;

        at += (size_t) snprintf(buf, size, "[");
        for (uint32_t i = 0; i < ndim && at < size; i++)
                at += (size_t) snprintf(buf + at, size - at, "%s%" PRIu64, i ? ", " : "", shape[i]);
        if (at < size)
                snprintf(buf + at, size - at, "]");
}

static bool shape_is(const struct st_tensor *t, uint32_t ndim, const uint64_t *shape) {
        if (t->ndim != ndim)
                return false;
        for (uint32_t i = 0; i < ndim; i++)
                if (t->shape[i] != shape[i])
                        return false;
        return true;
}

/* prefix + name, of that shape exactly; a 1×1 convolution's [k][c][1][1]
 * may also be [k][c] when matrix_ok. */
static int load(struct loader *l, const char *prefix, const char *name, uint32_t ndim, const uint64_t *shape,
                bool matrix_ok, struct sd_weight *ret) {
        char full[NAME_MAX_LEN], got[128], want[128];
        const struct st_tensor *t;
        int r;

        *ret = (struct sd_weight) {};
        if ((size_t) snprintf(full, sizeof(full), "%s%s", prefix, name) >= sizeof(full))
                return nn_error(l->err, l->err_size, -ENAMETOOLONG, "tensor name %s%s is too long", prefix, name);
        t = safetensors_find(l->file, full);
        if (!t)
                return nn_error(l->err, l->err_size, -ENOENT, "the checkpoint has no tensor %s", full);
        if (!shape_is(t, ndim, shape) && !(matrix_ok && shape_is(t, 2, shape))) {
                format_shape(got, sizeof(got), t->ndim, t->shape);
                format_shape(want, sizeof(want), ndim, shape);
                return nn_error(l->err, l->err_size, -EBADMSG, "tensor %s has shape %s, %s expected", full, got,
                                want);
        }
        if (l->track && l->n_seen == l->n_alloc) {
                size_t n = l->n_alloc ? 2 * l->n_alloc : 256;
                const struct st_tensor **p = realloc(l->seen, n * sizeof(*p));

                if (!p)
                        return nn_error(l->err, l->err_size, -ENOMEM, "out of memory loading %s", full);
                l->seen = p;
                l->n_alloc = n;
        }
        r = sd_weight_load(l->be, l->file, full, t->n_elements, ret, l->err, l->err_size);
        if (r < 0)
                return r;
        if (l->track)
                l->seen[l->n_seen++] = t;
        l->params += t->n_elements;
        return 0;
}

static void resnet_free(struct nn_backend *be, struct vae_resnet *b) {
        struct sd_weight *all[] = {
                &b->norm1_g, &b->norm1_b, &b->conv1_w, &b->conv1_b, &b->norm2_g, &b->norm2_b,
                &b->conv2_w, &b->conv2_b, &b->skip_w, &b->skip_b,
        };

        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
                sd_weight_free(be, all[i]);
}

static int resnet_load(struct loader *l, const char *prefix, uint32_t in, uint32_t out, struct vae_resnet *ret) {
        const struct {
                const char *name;
                uint32_t ndim;
                uint64_t shape[4];
                struct sd_weight *w;
        } parts[] = {
                { "norm1.weight", 1, { in }, &ret->norm1_g },
                { "norm1.bias", 1, { in }, &ret->norm1_b },
                { "conv1.weight", 4, { out, in, 3, 3 }, &ret->conv1_w },
                { "conv1.bias", 1, { out }, &ret->conv1_b },
                { "norm2.weight", 1, { out }, &ret->norm2_g },
                { "norm2.bias", 1, { out }, &ret->norm2_b },
                { "conv2.weight", 4, { out, out, 3, 3 }, &ret->conv2_w },
                { "conv2.bias", 1, { out }, &ret->conv2_b },
                { "nin_shortcut.weight", 4, { out, in, 1, 1 }, &ret->skip_w },
                { "nin_shortcut.bias", 1, { out }, &ret->skip_b },
        };
        int r;

        *ret = (struct vae_resnet) { .in = in, .out = out };
        if (in == 0 || out == 0 || in % GN_GROUPS || out % GN_GROUPS)
                return nn_error(l->err, l->err_size, -EINVAL, "%s: channels %" PRIu32 " → %" PRIu32 " are not "
                                "positive multiples of GroupNorm's %d groups", prefix, in, out, GN_GROUPS);
        for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
                if (in == out && i >= 8)
                        break;          /* no nin_shortcut */
                r = load(l, prefix, parts[i].name, parts[i].ndim, parts[i].shape, false, parts[i].w);
                if (r < 0) {
                        resnet_free(l->be, ret);
                        return r;
                }
        }
        return 0;
}

static void attention_free(struct nn_backend *be, struct vae_attention *a) {
        struct sd_weight *all[] = {
                &a->norm_g, &a->norm_b, &a->q_w, &a->q_b, &a->k_w, &a->k_b, &a->v_w, &a->v_b,
                &a->proj_w, &a->proj_b,
        };

        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
                sd_weight_free(be, all[i]);
}

static int attention_load(struct loader *l, const char *prefix, uint32_t c, struct vae_attention *ret) {
        const struct {
                const char *name;
                uint32_t ndim;
                uint64_t shape[4];
                struct sd_weight *w;
        } parts[] = {
                { "norm.weight", 1, { c }, &ret->norm_g },
                { "norm.bias", 1, { c }, &ret->norm_b },
                { "q.weight", 4, { c, c, 1, 1 }, &ret->q_w },
                { "q.bias", 1, { c }, &ret->q_b },
                { "k.weight", 4, { c, c, 1, 1 }, &ret->k_w },
                { "k.bias", 1, { c }, &ret->k_b },
                { "v.weight", 4, { c, c, 1, 1 }, &ret->v_w },
                { "v.bias", 1, { c }, &ret->v_b },
                { "proj_out.weight", 4, { c, c, 1, 1 }, &ret->proj_w },
                { "proj_out.bias", 1, { c }, &ret->proj_b },
        };
        int r;

        *ret = (struct vae_attention) { .c = c };
        if (c == 0 || c % GN_GROUPS)
                return nn_error(l->err, l->err_size, -EINVAL, "%s: %" PRIu32 " channels are not a positive "
                                "multiple of GroupNorm's %d groups", prefix, c, GN_GROUPS);
        for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
                r = load(l, prefix, parts[i].name, parts[i].ndim, parts[i].shape, parts[i].ndim == 4, parts[i].w);
                if (r < 0) {
                        attention_free(l->be, ret);
                        return r;
                }
        }
        return 0;
}

int vae_resnet_load(struct nn_backend *be, const struct safetensors *file, const char *prefix, uint32_t in,
                    uint32_t out, struct vae_resnet *ret, char *err, size_t err_size) {
        struct loader l = { .be = be, .file = file, .err = err, .err_size = err_size };

        return resnet_load(&l, prefix, in, out, ret);
}

void vae_resnet_free(struct nn_backend *be, struct vae_resnet *b) {
        resnet_free(be, b);
}

int vae_attention_load(struct nn_backend *be, const struct safetensors *file, const char *prefix, uint32_t c,
                       struct vae_attention *ret, char *err, size_t err_size) {
        struct loader l = { .be = be, .file = file, .err = err, .err_size = err_size };

        return attention_load(&l, prefix, c, ret);
}

void vae_attention_free(struct nn_backend *be, struct vae_attention *a) {
        attention_free(be, a);
}

/* The tensor prefix + name formatted, or NULL with *ret_name holding the
 * name. */
static const struct st_tensor *find(const struct safetensors *file, char *name, size_t size, const char *prefix,
                                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static const struct st_tensor *find(const struct safetensors *file, char *name, size_t size, const char *prefix,
                                    const char *fmt, ...) {
        size_t at = (size_t) snprintf(name, size, "%s", prefix);
        va_list ap;

        if (at >= size)
                return NULL;
        va_start(ap, fmt);
        vsnprintf(name + at, size - at, fmt, ap);
        va_end(ap);
        return safetensors_find(file, name);
}

/* One dimension of a tensor that must exist with ndim dimensions; the rest
 * of its shape is checked when it is loaded. */
static int tensor_dim(struct loader *l, const struct st_tensor *t, const char *name, uint32_t ndim, uint32_t i,
                      uint32_t *ret) {
        if (!t)
                return nn_error(l->err, l->err_size, -ENOENT, "the checkpoint has no tensor %s", name);
        if (t->ndim != ndim)
                return nn_error(l->err, l->err_size, -EBADMSG, "tensor %s has %" PRIu32 " dimensions, %" PRIu32
                                " expected", name, t->ndim, ndim);
        if (t->shape[i] == 0 || t->shape[i] > NN_CONV_DIM_MAX)
                return nn_error(l->err, l->err_size, -EBADMSG, "tensor %s has %" PRIu64 " channels, not 1 … %"
                                PRIu32, name, t->shape[i], NN_CONV_DIM_MAX);
        *ret = (uint32_t) t->shape[i];
        return 0;
}

/* The widths, from the tensors' shapes. */
static int decoder_config(struct loader *l, const char *prefix, struct vae_config *ret) {
        char name[NAME_MAX_LEN];
        const struct st_tensor *t;
        int r;

        *ret = (struct vae_config) {};
        t = find(l->file, name, sizeof(name), prefix, "post_quant_conv.weight");
        r = tensor_dim(l, t, name, 4, 0, &ret->z_channels);
        if (r < 0)
                return r;
        for (uint32_t i = 0; i < VAE_LEVELS_MAX; i++) {
                t = find(l->file, name, sizeof(name), prefix, "decoder.up.%" PRIu32 ".block.0.conv1.weight", i);
                if (!t && i > 0)
                        break;
                r = tensor_dim(l, t, name, 4, 0, &ret->width[i]);
                if (r < 0)
                        return r;
                if (ret->width[i] % GN_GROUPS)
                        return nn_error(l->err, l->err_size, -EBADMSG, "tensor %s has %" PRIu32 " output "
                                        "channels, not a multiple of GroupNorm's %d groups", name, ret->width[i],
                                        GN_GROUPS);
                ret->levels = i + 1;
        }
        return 0;
}

/* Every tensor under prefix + "decoder." and prefix + "post_quant_conv."
 * was loaded. */
static int check_unknown(struct loader *l, const char *prefix) {
        size_t n = safetensors_count(l->file), plen = strlen(prefix);

        for (size_t i = 0; i < n; i++) {
                const struct st_tensor *t = safetensors_tensor(l->file, i);
                bool known = false;

                if (strncmp(t->name, prefix, plen) != 0 ||
                    (strncmp(t->name + plen, "decoder.", 8) != 0 &&
                     strncmp(t->name + plen, "post_quant_conv.", 16) != 0))
                        continue;
                for (size_t j = 0; j < l->n_seen && !known; j++)
                        known = l->seen[j] == t;
                if (!known)
                        return nn_error(l->err, l->err_size, -EBADMSG, "tensor %s is not part of SD's VAE decoder "
                                        "(another architecture?)", t->name);
        }
        return 0;
}

static int decoder_load_all(struct loader *l, const char *prefix, struct vae_decoder *v) {
        const struct vae_config *cfg = &v->cfg;
        const uint32_t z = cfg->z_channels, top = cfg->width[cfg->levels - 1], ch = cfg->width[0];
        char p[NAME_MAX_LEN];
        uint32_t in;
        int r;

#define TRY(x) do { r = (x); if (r < 0) return r; } while (0)
        TRY(load(l, prefix, "post_quant_conv.weight", SHAPE(z, z, 1, 1), false, &v->post_quant_w));
        TRY(load(l, prefix, "post_quant_conv.bias", SHAPE(z), false, &v->post_quant_b));
        snprintf(p, sizeof(p), "%sdecoder.", prefix);
        TRY(load(l, p, "conv_in.weight", SHAPE(top, z, 3, 3), false, &v->conv_in_w));
        TRY(load(l, p, "conv_in.bias", SHAPE(top), false, &v->conv_in_b));
        snprintf(p, sizeof(p), "%sdecoder.mid.block_1.", prefix);
        TRY(resnet_load(l, p, top, top, &v->mid_1));
        snprintf(p, sizeof(p), "%sdecoder.mid.attn_1.", prefix);
        TRY(attention_load(l, p, top, &v->mid_attn));
        snprintf(p, sizeof(p), "%sdecoder.mid.block_2.", prefix);
        TRY(resnet_load(l, p, top, top, &v->mid_2));
        in = top;
        for (uint32_t i = cfg->levels; i-- > 0;) {
                uint32_t out = cfg->width[i];

                for (uint32_t j = 0; j < VAE_BLOCKS; j++) {
                        snprintf(p, sizeof(p), "%sdecoder.up.%" PRIu32 ".block.%" PRIu32 ".", prefix, i, j);
                        TRY(resnet_load(l, p, in, out, &v->block[i][j]));
                        in = out;
                }
                if (i == 0)
                        continue;
                snprintf(p, sizeof(p), "%sdecoder.up.%" PRIu32 ".upsample.", prefix, i);
                TRY(load(l, p, "conv.weight", SHAPE(out, out, 3, 3), false, &v->up_w[i]));
                TRY(load(l, p, "conv.bias", SHAPE(out), false, &v->up_b[i]));
        }
        snprintf(p, sizeof(p), "%sdecoder.", prefix);
        TRY(load(l, p, "norm_out.weight", SHAPE(ch), false, &v->norm_out_g));
        TRY(load(l, p, "norm_out.bias", SHAPE(ch), false, &v->norm_out_b));
        TRY(load(l, p, "conv_out.weight", SHAPE(3, ch, 3, 3), false, &v->conv_out_w));
        TRY(load(l, p, "conv_out.bias", SHAPE(3), false, &v->conv_out_b));
#undef TRY
        return check_unknown(l, prefix);
}

void vae_decoder_free(struct vae_decoder *v) {
        struct nn_backend *be;

        if (!v)
                return;
        be = v->be;
        sd_weight_free(be, &v->post_quant_w);
        sd_weight_free(be, &v->post_quant_b);
        sd_weight_free(be, &v->conv_in_w);
        sd_weight_free(be, &v->conv_in_b);
        resnet_free(be, &v->mid_1);
        attention_free(be, &v->mid_attn);
        resnet_free(be, &v->mid_2);
        for (uint32_t i = 0; i < VAE_LEVELS_MAX; i++) {
                for (uint32_t j = 0; j < VAE_BLOCKS; j++)
                        resnet_free(be, &v->block[i][j]);
                sd_weight_free(be, &v->up_w[i]);
                sd_weight_free(be, &v->up_b[i]);
        }
        sd_weight_free(be, &v->norm_out_g);
        sd_weight_free(be, &v->norm_out_b);
        sd_weight_free(be, &v->conv_out_w);
        sd_weight_free(be, &v->conv_out_b);
        free(v);
}

int vae_decoder_load(struct nn_backend *be, const struct safetensors *file, const char *prefix,
                     struct vae_decoder **ret, char *err, size_t err_size) {
        struct loader l = { .be = be, .file = file, .track = true, .err = err, .err_size = err_size };
        struct vae_decoder *v;
        int r;

        *ret = NULL;
        if (strlen(prefix) > SAFETENSORS_NAME_MAX)
                return nn_error(err, err_size, -ENAMETOOLONG, "the VAE's prefix is too long");
        v = calloc(1, sizeof(*v));
        if (!v)
                return nn_error(err, err_size, -ENOMEM, "out of memory for the VAE decoder");
        v->be = be;
        r = decoder_config(&l, prefix, &v->cfg);
        if (r >= 0)
                r = decoder_load_all(&l, prefix, v);
        free(l.seen);
        if (r < 0) {
                vae_decoder_free(v);
                return r;
        }
        v->params = l.params;
        *ret = v;
        return 0;
}

const struct vae_config *vae_decoder_config(const struct vae_decoder *vae) {
        return &vae->cfg;
}

uint64_t vae_decoder_parameters(const struct vae_decoder *vae) {
        return vae->params;
}

/* ---- The blocks ---- */

size_t vae_resnet_scratch(const struct vae_resnet *b, uint32_t h, uint32_t w) {
        return max_size(b->in, b->out) * h * w;
}

void vae_resnet_forward(struct nn_backend *be, const struct vae_resnet *b, const float *x, uint32_t h, uint32_t w,
                        float *y, float *scratch) {
        size_t hw = (size_t) h * w;
        struct nn_conv2d p;

        /* y holds conv1's output, then conv2's once scratch holds the
         * normalised conv1: one activation's worth of scratch. */
        be->ops->group_norm(be, scratch, x, 1, b->in, hw, GN_GROUPS, b->norm1_g.data, b->norm1_b.data, GN_EPS,
                            true);
        p = conv_shape(b->in, h, w, b->out, 3);
        be->ops->conv2d(be, &p, scratch, b->conv1_w.data, b->conv1_b.data, y);
        be->ops->group_norm(be, scratch, y, 1, b->out, hw, GN_GROUPS, b->norm2_g.data, b->norm2_b.data, GN_EPS,
                            true);
        p = conv_shape(b->out, h, w, b->out, 3);
        be->ops->conv2d(be, &p, scratch, b->conv2_w.data, b->conv2_b.data, y);
        if (b->in != b->out) {
                p = conv_shape(b->in, h, w, b->out, 1);
                be->ops->conv2d(be, &p, x, b->skip_w.data, b->skip_b.data, scratch);
                be->ops->add(be, y, scratch, b->out * hw);
        } else
                be->ops->add(be, y, x, b->out * hw);
}

size_t vae_attention_scratch(const struct vae_attention *a, size_t n) {
        return 5 * (size_t) a->c * n;
}

void vae_attention_forward(struct nn_backend *be, const struct vae_attention *a, const float *x, size_t n, float *y,
                           float *scratch) {
        size_t c = a->c, cn = c * n;
        float *s0 = scratch, *s1 = s0 + cn, *q = s1 + cn, *k = q + cn, *v = k + cn;

        /* The 1×1 convolutions are linear layers on the positions as rows:
         * [c][n] → [n][c] once, and back once at the end. */
        be->ops->group_norm(be, s0, x, 1, c, n, GN_GROUPS, a->norm_g.data, a->norm_b.data, GN_EPS, false);
        be->ops->transpose(be, s1, s0, c, n);
        be->ops->linear(be, q, s1, n, c, c, a->q_w.data, a->q_b.data);
        be->ops->linear(be, k, s1, n, c, c, a->k_w.data, a->k_b.data);
        be->ops->linear(be, v, s1, n, c, c, a->v_w.data, a->v_b.data);
        /* One head of c: softmax(q·kᵀ / √c)·v. */
        be->ops->attention_full(be, s0, q, k, v, n, n, 1, c, false);
        be->ops->linear(be, s1, s0, n, c, c, a->proj_w.data, a->proj_b.data);
        be->ops->transpose(be, y, s1, n, c);
        be->ops->add(be, y, x, cn);
}

/* ---- The decode ---- */

/* The decode's activations in one arena: the current one at one end, the
 * next stage's output at the other, the stage's scratch between.  Walked
 * once without memory to measure it (and check every convolution), then
 * on the scratch to run the ops. */
struct walk {
        struct nn_backend *be;
        float *base;            /* NULL while measuring */
        size_t size;
        size_t cur_n;           /* floats of the current activation */
        bool cur_high;          /* at the high end */
        size_t out_n;           /* of the stage begun */
        float *x, *y, *s;       /* the stage's input, output and scratch */
        size_t need;            /* the most any stage needed */
        double flops;           /* of the convolutions and the attention */
        int r;                  /* the first convolution refused */
        char *err;
        size_t err_size;
};

static void stage_begin(struct walk *wk, size_t out_n, size_t scratch_n) {
        wk->need = max_size(wk->need, wk->cur_n + scratch_n + out_n);
        wk->out_n = out_n;
        if (!wk->base) {
                wk->x = wk->y = wk->s = NULL;
                return;
        }
        if (wk->cur_high) {
                wk->x = wk->base + (wk->size - wk->cur_n);
                wk->y = wk->base;
                wk->s = wk->base + out_n;
        } else {
                wk->x = wk->base;
                wk->s = wk->base + wk->cur_n;
                wk->y = wk->base + (wk->size - out_n);
        }
}

static void stage_end(struct walk *wk) {
        wk->cur_n = wk->out_n;
        wk->cur_high = !wk->cur_high;
}

static void check_conv(struct walk *wk, uint32_t c, uint32_t h, uint32_t w, uint32_t k, uint32_t r) {
        struct nn_conv2d p = conv_shape(c, h, w, k, r);

        if (wk->base)
                return;
        if (wk->r >= 0)
                wk->r = nn_conv2d_validate(&p, wk->err, wk->err_size);
        wk->flops += nn_conv2d_flops(&p);
}

static void walk_conv(struct walk *wk, const struct sd_weight *wt, const struct sd_weight *bias, uint32_t c,
                      uint32_t h, uint32_t w, uint32_t k, uint32_t r) {
        struct nn_conv2d p = conv_shape(c, h, w, k, r);

        check_conv(wk, c, h, w, k, r);
        stage_begin(wk, (size_t) k * h * w, 0);
        if (wk->base)
                wk->be->ops->conv2d(wk->be, &p, wk->x, wt->data, bias->data, wk->y);
        stage_end(wk);
}

static void walk_resnet(struct walk *wk, const struct vae_resnet *b, uint32_t in, uint32_t out, uint32_t h,
                        uint32_t w) {
        size_t hw = (size_t) h * w;

        check_conv(wk, in, h, w, out, 3);
        check_conv(wk, out, h, w, out, 3);
        if (in != out)
                check_conv(wk, in, h, w, out, 1);
        stage_begin(wk, out * hw, max_size(in, out) * hw);
        if (wk->base)
                vae_resnet_forward(wk->be, b, wk->x, h, w, wk->y, wk->s);
        stage_end(wk);
}

static void walk_attention(struct walk *wk, const struct vae_attention *a, uint32_t c, uint32_t h, uint32_t w) {
        size_t n = (size_t) h * w;

        /* q, k, v and proj_out; q·kᵀ and its product with v. */
        if (!wk->base)
                wk->flops += 8.0 * (double) n * c * c + 4.0 * (double) n * (double) n * c;
        stage_begin(wk, c * n, 5 * c * n);
        if (wk->base)
                vae_attention_forward(wk->be, a, wk->x, n, wk->y, wk->s);
        stage_end(wk);
}

static void walk_upsample(struct walk *wk, const struct sd_weight *wt, const struct sd_weight *bias, uint32_t c,
                          uint32_t h, uint32_t w) {
        size_t up = (size_t) c * h * w * 4;

        check_conv(wk, c, 2 * h, 2 * w, c, 3);
        stage_begin(wk, up, up);
        if (wk->base)
                sd_upsample(wk->be, wt, bias, c, wk->x, h, w, wk->y, wk->s);
        stage_end(wk);
}

/* The decode, top to bottom; v's weights are not read while measuring. */
static void decoder_walk(const struct vae_decoder *v, const struct vae_config *cfg, const float *latent,
                         uint32_t h, uint32_t w, float scale_factor, float *rgb, struct walk *wk) {
        struct nn_backend *be = wk->be;
        const uint32_t z = cfg->z_channels, top = cfg->width[cfg->levels - 1], ch = cfg->width[0];
        size_t zn = (size_t) z * h * w;
        uint32_t in;

        /* latent / scale_factor, a copy: the caller's latent stays. */
        stage_begin(wk, zn, 0);
        if (wk->base) {
                be->ops->copy(be, wk->y, latent, zn);
                be->ops->scale(be, wk->y, zn, 1.0f / scale_factor);
        }
        stage_end(wk);
        walk_conv(wk, &v->post_quant_w, &v->post_quant_b, z, h, w, z, 1);
        walk_conv(wk, &v->conv_in_w, &v->conv_in_b, z, h, w, top, 3);

        walk_resnet(wk, &v->mid_1, top, top, h, w);
        walk_attention(wk, &v->mid_attn, top, h, w);
        walk_resnet(wk, &v->mid_2, top, top, h, w);

        in = top;
        for (uint32_t i = cfg->levels; i-- > 0;) {
                for (uint32_t j = 0; j < VAE_BLOCKS; j++) {
                        walk_resnet(wk, &v->block[i][j], in, cfg->width[i], h, w);
                        in = cfg->width[i];
                }
                if (i > 0) {
                        walk_upsample(wk, &v->up_w[i], &v->up_b[i], in, h, w);
                        h *= 2;
                        w *= 2;
                }
        }

        /* norm_out, SiLU, conv_out into the caller's rgb. */
        check_conv(wk, ch, h, w, 3, 3);
        stage_begin(wk, 0, (size_t) ch * h * w);
        if (wk->base) {
                struct nn_conv2d p = conv_shape(ch, h, w, 3, 3);

                be->ops->group_norm(be, wk->s, wk->x, 1, ch, (size_t) h * w, GN_GROUPS, v->norm_out_g.data,
                                    v->norm_out_b.data, GN_EPS, true);
                be->ops->conv2d(be, &p, wk->s, v->conv_out_w.data, v->conv_out_b.data, rgb);
        }
        stage_end(wk);
}

/* The walk without memory: wk->need and wk->flops. */
static int decoder_measure(const struct vae_config *cfg, uint32_t h, uint32_t w, struct walk *wk, char *err,
                           size_t err_size) {
        /* Only the shape is read while measuring: a decoder without weights. */
        static const struct vae_decoder no_weights = {};
        char why[256] = "";

        *wk = (struct walk) { .err = why, .err_size = sizeof(why) };
        if (cfg->levels == 0 || cfg->levels > VAE_LEVELS_MAX)
                return nn_error(err, err_size, -EINVAL, "a VAE of %" PRIu32 " levels, not 1 … %d", cfg->levels,
                                VAE_LEVELS_MAX);
        if (cfg->z_channels == 0 || cfg->z_channels > NN_CONV_DIM_MAX)
                return nn_error(err, err_size, -EINVAL, "a VAE of %" PRIu32 " latent channels", cfg->z_channels);
        for (uint32_t i = 0; i < cfg->levels; i++)
                if (cfg->width[i] == 0 || cfg->width[i] > NN_CONV_DIM_MAX || cfg->width[i] % GN_GROUPS)
                        return nn_error(err, err_size, -EINVAL, "a VAE level of %" PRIu32 " channels, not a "
                                        "positive multiple of %d", cfg->width[i], GN_GROUPS);
        if (h == 0 || w == 0)
                return nn_error(err, err_size, -EINVAL, "a latent of %" PRIu32 "×%" PRIu32 " is empty", h, w);
        /* Each level but the last doubles the sides: the image's within
         * what conv2d takes keeps every size below 2^63 floats. */
        if (h > NN_CONV_DIM_MAX >> (cfg->levels - 1) || w > NN_CONV_DIM_MAX >> (cfg->levels - 1))
                return nn_error(err, err_size, -E2BIG, "a latent of %" PRIu32 "×%" PRIu32 " decodes to an image "
                                "past the engine's %" PRIu32 " pixels a side", h, w, NN_CONV_DIM_MAX);
        decoder_walk(&no_weights, cfg, NULL, h, w, 1.0f, NULL, wk);
        wk->err = NULL;         /* why is gone with this frame */
        wk->err_size = 0;
        if (wk->r < 0)
                return nn_error(err, err_size, wk->r, "a latent of %" PRIu32 "×%" PRIu32 " is too large for the "
                                "engine: %s", h, w, why);
        return 0;
}

int vae_scratch_size(const struct vae_config *cfg, uint32_t h, uint32_t w, size_t *ret, char *err,
                     size_t err_size) {
        struct walk wk;
        int r;

        *ret = 0;
        r = decoder_measure(cfg, h, w, &wk, err, err_size);
        if (r < 0)
                return r;
        *ret = wk.need;
        return 0;
}

double vae_decode_flops(const struct vae_config *cfg, uint32_t h, uint32_t w) {
        struct walk wk;

        return decoder_measure(cfg, h, w, &wk, NULL, 0) < 0 ? 0 : wk.flops;
}

int vae_decode(const struct vae_decoder *vae, const float *latent, uint32_t h, uint32_t w, float scale_factor,
               float *rgb, float *scratch, size_t scratch_n, char *err, size_t err_size) {
        struct walk wk = { .be = vae->be, .err = err, .err_size = err_size };
        size_t need;
        int r;

        struct nn_backend *be = vae->be;
        float *own = NULL;

        r = vae_scratch_size(&vae->cfg, h, w, &need, err, err_size);
        if (r < 0)
                return r;
        if (!(scale_factor > 0) || !isfinite(scale_factor))
                return nn_error(err, err_size, -EINVAL, "the latent scale factor is %g", (double) scale_factor);
        if (!scratch) {
                scratch = own = be->ops->alloc(be, need);
                if (!own)
                        return nn_error(err, err_size, -ENOMEM, "out of %s memory for a %" PRIu32 "×%" PRIu32
                                        " decode's %zu floats of scratch", be->ops->name, h, w, need);
        } else if (scratch_n < need)
                return nn_error(err, err_size, -ENOBUFS, "a %" PRIu32 "×%" PRIu32 " latent needs %zu floats of "
                                "scratch, not %zu", h, w, need, scratch_n);
        /* The layout of a measured arena, whatever more the caller gave. */
        wk.base = scratch;
        wk.size = need;
        decoder_walk(vae, &vae->cfg, latent, h, w, scale_factor, rgb, &wk);
        if (own)
                be->ops->release(be, own);
        return 0;
}

void vae_image_to_rgb8(const float *chw, uint32_t width, uint32_t height, uint8_t *rgb) {
        size_t plane = (size_t) width * height;

        for (size_t i = 0; i < plane; i++)
                for (size_t c = 0; c < 3; c++) {
                        double v = ((double) chw[c * plane + i] + 1.0) * 127.5;

                        /* NaN fails both comparisons: 0. */
                        rgb[3 * i + c] = v >= 254.5 ? 255 : v > 0 ? (uint8_t) floor(v + 0.5) : 0;
                }
}

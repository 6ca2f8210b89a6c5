/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* clip-text.h's encoder, as transformers' modeling_clip.py runs it. */

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clip-text.h"
#include "nn-error.h"
#include "safetensors.h"
#include "sd-blocks.h"

#define LN_EPS 1e-5f
#define HEAD_DIM_DEFAULT 64

static const char *const prefixes[] = {
        "cond_stage_model.transformer.text_model.",
        "conditioner.embedders.0.transformer.text_model.",
        "text_model.",
};

struct clip_layer {
        struct sd_weight ln1_g, ln1_b, q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b;
        struct sd_weight ln2_g, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
};

struct clip_text {
        struct nn_backend *be;
        uint32_t vocab, positions, dim, ff, heads, n_layers;
        uint64_t parameters;
        struct sd_weight tok, pos, final_g, final_b;
        struct clip_layer *layers;
        /* Scratch for positions tokens: the residual stream, LayerNorm's
         * output, q, k, v, attention's output [positions][dim] each, and
         * the MLP's hidden [positions][ff]. */
        float *x, *h, *q, *k, *v, *a, *f;
};

uint32_t clip_text_dim(const struct clip_text *c) {
        return c->dim;
}

uint32_t clip_text_vocab(const struct clip_text *c) {
        return c->vocab;
}

uint32_t clip_text_positions(const struct clip_text *c) {
        return c->positions;
}

uint32_t clip_text_layers(const struct clip_text *c) {
        return c->n_layers;
}

uint32_t clip_text_heads(const struct clip_text *c) {
        return c->heads;
}

uint64_t clip_text_parameters(const struct clip_text *c) {
        return c->parameters;
}

static void format_shape(const struct st_tensor *t, char *buf, size_t size) {
        size_t k = (size_t) snprintf(buf, size, "[");

        for (uint32_t i = 0; i < t->ndim && k < size; i++)
                k += (size_t) snprintf(buf + k, size - k, "%s%" PRIu64, i ? ", " : "", t->shape[i]);
        if (k < size)
                snprintf(buf + k, size - k, "]");
}

/* prefix + name, of shape [d0] (d1 = 0) or [d0][d1], into w. */
static int load(struct clip_text *c, const struct safetensors *file, const char *prefix, const char *name,
                uint64_t d0, uint64_t d1, struct sd_weight *w, char *err, size_t err_size) {
        const struct st_tensor *t;
        char full[512], shape[128];
        uint32_t ndim = d1 ? 2 : 1;

        snprintf(full, sizeof(full), "%s%s", prefix, name);
        t = safetensors_find(file, full);
        if (!t)
                return nn_error(err, err_size, -ENOENT, "the checkpoint has no tensor %s", full);
        if (t->ndim != ndim || t->shape[0] != d0 || (d1 && t->shape[1] != d1)) {
                format_shape(t, shape, sizeof(shape));
                if (d1)
                        return nn_error(err, err_size, -EBADMSG, "tensor %s has shape %s, [%" PRIu64 ", %" PRIu64
                                        "] expected", full, shape, d0, d1);
                return nn_error(err, err_size, -EBADMSG, "tensor %s has shape %s, [%" PRIu64 "] expected", full,
                                shape, d0);
        }
        c->parameters += t->n_elements;
        return sd_weight_load(c->be, file, full, t->n_elements, w, err, err_size);
}

/* A 2-D tensor's shape, for the widths. */
static int shape2(const struct safetensors *file, const char *prefix, const char *name, uint64_t *d0, uint64_t *d1,
                  char *err, size_t err_size) {
        const struct st_tensor *t;
        char full[512], shape[128];

        snprintf(full, sizeof(full), "%s%s", prefix, name);
        t = safetensors_find(file, full);
        if (!t)
                return nn_error(err, err_size, -ENOENT, "the checkpoint has no tensor %s", full);
        if (t->ndim != 2 || t->shape[0] == 0 || t->shape[1] == 0 || t->shape[0] > INT32_MAX ||
            t->shape[1] > INT32_MAX) {
                format_shape(t, shape, sizeof(shape));
                return nn_error(err, err_size, -EBADMSG, "tensor %s has shape %s, not a matrix", full, shape);
        }
        *d0 = t->shape[0];
        *d1 = t->shape[1];
        return 0;
}

static bool has_layer(const struct safetensors *file, const char *prefix, uint32_t i) {
        char name[512];

        snprintf(name, sizeof(name), "%sencoder.layers.%" PRIu32 ".self_attn.q_proj.weight", prefix, i);
        return safetensors_find(file, name) != NULL;
}

/* Layers 0 … n − 1 are there: none past a gap. */
static int check_no_stray_layer(const struct safetensors *file, const char *prefix, uint32_t n, char *err,
                                size_t err_size) {
        char layers[512];
        size_t len;

        len = (size_t) snprintf(layers, sizeof(layers), "%sencoder.layers.", prefix);
        for (size_t i = 0; i < safetensors_count(file); i++) {
                const char *name = safetensors_tensor(file, i)->name;
                char *end;
                unsigned long l;

                if (strncmp(name, layers, len) != 0)
                        continue;
                l = strtoul(name + len, &end, 10);
                if (end != name + len && l >= n)
                        return nn_error(err, err_size, -ENOENT, "the checkpoint has no tensor %s%" PRIu32
                                        ".self_attn.q_proj.weight, but has %s", layers, n, name);
        }
        return 0;
}

static int load_layer(struct clip_text *c, const struct safetensors *file, const char *prefix, uint32_t i,
                      struct clip_layer *l, char *err, size_t err_size) {
        const uint64_t d = c->dim, ff = c->ff;
        const struct {
                const char *name;
                uint64_t d0, d1;
                struct sd_weight *w;
        } parts[] = {
                { "layer_norm1.weight", d, 0, &l->ln1_g },
                { "layer_norm1.bias", d, 0, &l->ln1_b },
                { "self_attn.q_proj.weight", d, d, &l->q_w },
                { "self_attn.q_proj.bias", d, 0, &l->q_b },
                { "self_attn.k_proj.weight", d, d, &l->k_w },
                { "self_attn.k_proj.bias", d, 0, &l->k_b },
                { "self_attn.v_proj.weight", d, d, &l->v_w },
                { "self_attn.v_proj.bias", d, 0, &l->v_b },
                { "self_attn.out_proj.weight", d, d, &l->o_w },
                { "self_attn.out_proj.bias", d, 0, &l->o_b },
                { "layer_norm2.weight", d, 0, &l->ln2_g },
                { "layer_norm2.bias", d, 0, &l->ln2_b },
                { "mlp.fc1.weight", ff, d, &l->fc1_w },
                { "mlp.fc1.bias", ff, 0, &l->fc1_b },
                { "mlp.fc2.weight", d, ff, &l->fc2_w },
                { "mlp.fc2.bias", d, 0, &l->fc2_b },
        };
        char p[512];
        int r;

        snprintf(p, sizeof(p), "%sencoder.layers.%" PRIu32 ".", prefix, i);
        for (size_t k = 0; k < sizeof(parts) / sizeof(parts[0]); k++) {
                r = load(c, file, p, parts[k].name, parts[k].d0, parts[k].d1, parts[k].w, err, err_size);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void layer_free(struct nn_backend *be, struct clip_layer *l) {
        struct sd_weight *all[] = {
                &l->ln1_g, &l->ln1_b, &l->q_w, &l->q_b, &l->k_w, &l->k_b, &l->v_w, &l->v_b, &l->o_w, &l->o_b,
                &l->ln2_g, &l->ln2_b, &l->fc1_w, &l->fc1_b, &l->fc2_w, &l->fc2_b,
        };

        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
                sd_weight_free(be, all[i]);
}

static void release(struct nn_backend *be, float *p) {
        if (p)
                be->ops->release(be, p);
}

void clip_text_free(struct clip_text *c) {
        if (!c)
                return;
        for (uint32_t i = 0; c->layers && i < c->n_layers; i++)
                layer_free(c->be, &c->layers[i]);
        free(c->layers);
        sd_weight_free(c->be, &c->tok);
        sd_weight_free(c->be, &c->pos);
        sd_weight_free(c->be, &c->final_g);
        sd_weight_free(c->be, &c->final_b);
        release(c->be, c->x);
        release(c->be, c->h);
        release(c->be, c->q);
        release(c->be, c->k);
        release(c->be, c->v);
        release(c->be, c->a);
        release(c->be, c->f);
        free(c);
}

static int load_all(struct clip_text *c, const struct safetensors *file, uint32_t heads, char *err,
                    size_t err_size) {
        const char *prefix = NULL;
        uint64_t vocab, dim, positions, pdim, ff, fdim;
        size_t n_act;
        int r;

        for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]) && !prefix; i++) {
                char name[512];

                snprintf(name, sizeof(name), "%sembeddings.token_embedding.weight", prefixes[i]);
                if (safetensors_find(file, name))
                        prefix = prefixes[i];
        }
        if (!prefix) {
                if (safetensors_find(file, "cond_stage_model.model.token_embedding.weight"))
                        return nn_error(err, err_size, -EOPNOTSUPP, "the checkpoint's text encoder is SD 2.x's "
                                        "OpenCLIP (cond_stage_model.model.), which is not supported yet");
                return nn_error(err, err_size, -ENOENT, "the checkpoint has no CLIP text encoder (no tensor "
                                "%sembeddings.token_embedding.weight)", prefixes[0]);
        }

        /* The widths, from the shapes. */
        r = shape2(file, prefix, "embeddings.token_embedding.weight", &vocab, &dim, err, err_size);
        if (r < 0)
                return r;
        r = shape2(file, prefix, "embeddings.position_embedding.weight", &positions, &pdim, err, err_size);
        if (r < 0)
                return r;
        if (pdim != dim)
                return nn_error(err, err_size, -EBADMSG, "tensor %sembeddings.position_embedding.weight is %" PRIu64
                                " wide, the token embedding %" PRIu64, prefix, pdim, dim);
        while (has_layer(file, prefix, c->n_layers))
                c->n_layers++;
        if (c->n_layers == 0)
                return nn_error(err, err_size, -ENOENT, "the checkpoint has no tensor "
                                "%sencoder.layers.0.self_attn.q_proj.weight", prefix);
        r = check_no_stray_layer(file, prefix, c->n_layers, err, err_size);
        if (r < 0)
                return r;
        r = shape2(file, prefix, "encoder.layers.0.mlp.fc1.weight", &ff, &fdim, err, err_size);
        if (r < 0)
                return r;
        c->vocab = (uint32_t) vocab;
        c->dim = (uint32_t) dim;
        c->positions = (uint32_t) positions;
        c->ff = (uint32_t) ff;
        if (heads == 0) {
                if (dim % HEAD_DIM_DEFAULT)
                        return nn_error(err, err_size, -EINVAL, "the text encoder is %" PRIu64 " wide, not a "
                                        "multiple of %d: say how many heads it has", dim, HEAD_DIM_DEFAULT);
                heads = (uint32_t) (dim / HEAD_DIM_DEFAULT);
        }
        if (dim % heads)
                return nn_error(err, err_size, -EINVAL, "the text encoder's width %" PRIu64 " is not a multiple "
                                "of %" PRIu32 " heads", dim, heads);
        c->heads = heads;

        r = load(c, file, prefix, "embeddings.token_embedding.weight", vocab, dim, &c->tok, err, err_size);
        if (r < 0)
                return r;
        r = load(c, file, prefix, "embeddings.position_embedding.weight", positions, dim, &c->pos, err, err_size);
        if (r < 0)
                return r;
        c->layers = calloc(c->n_layers, sizeof(*c->layers));
        if (!c->layers)
                return nn_error(err, err_size, -ENOMEM, "out of memory for the text encoder");
        for (uint32_t i = 0; i < c->n_layers; i++) {
                r = load_layer(c, file, prefix, i, &c->layers[i], err, err_size);
                if (r < 0)
                        return r;
        }
        r = load(c, file, prefix, "final_layer_norm.weight", dim, 0, &c->final_g, err, err_size);
        if (r < 0)
                return r;
        r = load(c, file, prefix, "final_layer_norm.bias", dim, 0, &c->final_b, err, err_size);
        if (r < 0)
                return r;

        n_act = (size_t) positions * dim;
        c->x = c->be->ops->alloc(c->be, n_act);
        c->h = c->be->ops->alloc(c->be, n_act);
        c->q = c->be->ops->alloc(c->be, n_act);
        c->k = c->be->ops->alloc(c->be, n_act);
        c->v = c->be->ops->alloc(c->be, n_act);
        c->a = c->be->ops->alloc(c->be, n_act);
        c->f = c->be->ops->alloc(c->be, (size_t) positions * ff);
        if (!c->x || !c->h || !c->q || !c->k || !c->v || !c->a || !c->f)
                return nn_error(err, err_size, -ENOMEM, "out of %s memory for the text encoder's activations",
                                c->be->ops->name);
        return 0;
}

int clip_text_load(struct nn_backend *be, const struct safetensors *file, uint32_t heads, struct clip_text **ret,
                   char *err, size_t err_size) {
        struct clip_text *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return nn_error(err, err_size, -ENOMEM, "out of memory for the text encoder");
        c->be = be;
        r = load_all(c, file, heads, err, err_size);
        if (r < 0) {
                clip_text_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

int clip_text_encode(struct clip_text *c, const int32_t *ids, size_t n, uint32_t skip_last, float *out) {
        struct nn_backend *be = c->be;
        const size_t d = c->dim, ff = c->ff, hd = d / c->heads;

        if (n == 0 || n > c->positions || skip_last >= c->n_layers)
                return -EINVAL;
        for (size_t t = 0; t < n; t++)
                if (ids[t] < 0 || (uint32_t) ids[t] >= c->vocab)
                        return -EINVAL;

        /* Embeddings: the tokens' rows, plus the first n positions'. */
        for (size_t t = 0; t < n; t++)
                be->ops->copy(be, c->x + t * d, c->tok.data + (size_t) ids[t] * d, d);
        be->ops->add(be, c->x, c->pos.data, n * d);

        for (uint32_t i = 0; i < c->n_layers - skip_last; i++) {
                const struct clip_layer *l = &c->layers[i];

                /* Causal self-attention; CLIP scales q by 1/√head_dim
                 * before q·kᵀ, attention_full after: the same. */
                be->ops->layer_norm(be, c->h, c->x, n, d, l->ln1_g.data, l->ln1_b.data, LN_EPS);
                be->ops->linear(be, c->q, c->h, n, d, d, l->q_w.data, l->q_b.data);
                be->ops->linear(be, c->k, c->h, n, d, d, l->k_w.data, l->k_b.data);
                be->ops->linear(be, c->v, c->h, n, d, d, l->v_w.data, l->v_b.data);
                be->ops->attention_full(be, c->a, c->q, c->k, c->v, n, n, c->heads, hd, true);
                be->ops->linear(be, c->h, c->a, n, d, d, l->o_w.data, l->o_b.data);
                be->ops->add(be, c->x, c->h, n * d);

                /* MLP. */
                be->ops->layer_norm(be, c->h, c->x, n, d, l->ln2_g.data, l->ln2_b.data, LN_EPS);
                be->ops->linear(be, c->f, c->h, n, d, ff, l->fc1_w.data, l->fc1_b.data);
                be->ops->quick_gelu(be, c->f, n * ff);
                be->ops->linear(be, c->h, c->f, n, ff, d, l->fc2_w.data, l->fc2_b.data);
                be->ops->add(be, c->x, c->h, n * d);
        }
        be->ops->layer_norm(be, out, c->x, n, d, c->final_g.data, c->final_b.data, LN_EPS);
        return be->ops->status(be);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "llama.h"
#include "nn-error.h"
#include "nn-quant.h"

struct llama_layer {
        struct nn_weight attn_norm, wq, wk, wv, wo, bq, bk, bv;
        struct nn_weight ffn_norm, w_gate, w_up, w_down;
        bool has_bias;
};

struct llama_model {
        struct llama_hparams hp;
        struct nn_backend *be;
        struct nn_weight tok_embd, output_norm, output;
        struct llama_layer *layers;
        float *freq_factors;            /* owned copy, or NULL */
        /* f32 copies of norm gains and biases that were stored in another
         * type, so that the ops see f32 rows. */
        float **owned;
        size_t n_owned;
        uint64_t n_params;
        uint64_t weight_bytes;
};

struct llama_context {
        struct llama_model *m;
        size_t n_ctx, n_batch, pos;
        float **k_cache, **v_cache;     /* per layer: [n_ctx][n_head_kv * head_dim] */
        float *x, *xn, *q, *attn, *gate, *up;
        float *logits_dev;              /* [n_batch][n_vocab] */
        float *logits;                  /* host copy */
        int32_t *positions;
};


const char *llama_arch_name(enum llama_arch arch) {
        return arch == LLAMA_ARCH_QWEN2 ? "qwen2" : "llama";
}

/* "<arch>.<suffix>" as a u32 within [min, max]; def when absent and def ≥ 0. */
static int get_u32(const struct gguf *g, const char *arch, const char *suffix, int64_t def, uint32_t min,
                   uint32_t max, uint32_t *ret, char *err, size_t err_size) {
        char key[128];
        uint64_t v;
        int r;

        snprintf(key, sizeof(key), "%s.%s", arch, suffix);
        r = gguf_get_u64(g, key, &v);
        if (r == -ENOENT && def >= 0) {
                *ret = (uint32_t) def;
                return 0;
        }
        if (r == -ENOENT)
                return nn_error(err, err_size, -EBADMSG, "%s: key %s is missing", gguf_path(g), key);
        if (r < 0)
                return nn_error(err, err_size, -EBADMSG, "%s: key %s must be a non-negative integer",
                            gguf_path(g), key);
        if (v < min || v > max)
                return nn_error(err, err_size, -EBADMSG, "%s: key %s is %" PRIu64 ", must be between %" PRIu32
                            " and %" PRIu32, gguf_path(g), key, v, min, max);
        *ret = (uint32_t) v;
        return 0;
}

static int get_f32(const struct gguf *g, const char *arch, const char *suffix, double def, double min,
                   double max, float *ret, char *err, size_t err_size) {
        char key[128];
        double v;
        int r;

        snprintf(key, sizeof(key), "%s.%s", arch, suffix);
        r = gguf_get_f64(g, key, &v);
        if (r == -ENOENT) {
                *ret = (float) def;
                return 0;
        }
        if (r < 0 || !(v >= min && v <= max))
                return nn_error(err, err_size, -EBADMSG, "%s: key %s must be a number between %g and %g",
                            gguf_path(g), key, min, max);
        *ret = (float) v;
        return 0;
}

static int read_hparams(const struct gguf *g, struct llama_hparams *hp, char *err, size_t err_size) {
        struct gguf_string s;
        char arch[16];
        uint64_t n_tokens;
        uint32_t rot;
        int r;

        r = gguf_get_string(g, "general.architecture", &s);
        if (r < 0)
                return nn_error(err, err_size, -EBADMSG, "%s: key general.architecture is missing or not a string",
                            gguf_path(g));
        if (gguf_string_eq(s, "llama"))
                hp->arch = LLAMA_ARCH_LLAMA;
        else if (gguf_string_eq(s, "qwen2"))
                hp->arch = LLAMA_ARCH_QWEN2;
        else
                return nn_error(err, err_size, -EOPNOTSUPP,
                            "%s: architecture \"%.*s\" is not supported (textgen runs llama and qwen2)",
                            gguf_path(g), (int) (s.len > 64 ? 64 : s.len), s.data);
        snprintf(arch, sizeof(arch), "%s", llama_arch_name(hp->arch));

        if ((r = get_u32(g, arch, "embedding_length", -1, 1, 1u << 16, &hp->n_embd, err, err_size)) < 0 ||
            (r = get_u32(g, arch, "block_count", -1, 1, 1024, &hp->n_layer, err, err_size)) < 0 ||
            (r = get_u32(g, arch, "feed_forward_length", -1, 1, 1u << 20, &hp->n_ff, err, err_size)) < 0 ||
            (r = get_u32(g, arch, "attention.head_count", -1, 1, 1024, &hp->n_head, err, err_size)) < 0 ||
            (r = get_u32(g, arch, "attention.head_count_kv", hp->n_head, 1, 1024, &hp->n_head_kv, err,
                         err_size)) < 0 ||
            (r = get_u32(g, arch, "context_length", 2048, 1, 1u << 24, &hp->n_ctx_train, err, err_size)) < 0 ||
            (r = get_f32(g, arch, "attention.layer_norm_rms_epsilon", 1e-5, 0, 1, &hp->norm_eps, err,
                         err_size)) < 0 ||
            (r = get_f32(g, arch, "rope.freq_base", 10000.0, 1, 1e12, &hp->rope.freq_base, err,
                         err_size)) < 0)
                return r;
        if (hp->n_embd % hp->n_head != 0)
                return nn_error(err, err_size, -EBADMSG, "%s: %" PRIu32 " heads do not divide the embedding (%" PRIu32 ")",
                            gguf_path(g), hp->n_head, hp->n_embd);
        if (hp->n_head % hp->n_head_kv != 0)
                return nn_error(err, err_size, -EBADMSG, "%s: %" PRIu32 " KV heads do not divide %" PRIu32 " heads",
                            gguf_path(g), hp->n_head_kv, hp->n_head);
        r = get_u32(g, arch, "attention.key_length", hp->n_embd / hp->n_head, 2, 1024, &hp->head_dim, err,
                    err_size);
        if (r < 0)
                return r;
        if (hp->head_dim % 2 != 0)
                return nn_error(err, err_size, -EBADMSG, "%s: head size %" PRIu32 " is odd", gguf_path(g),
                            hp->head_dim);
        r = get_u32(g, arch, "rope.dimension_count", hp->head_dim, 2, hp->head_dim, &rot, err, err_size);
        if (r < 0)
                return r;
        if (rot % 2 != 0)
                return nn_error(err, err_size, -EBADMSG, "%s: RoPE dimension %" PRIu32 " is odd", gguf_path(g), rot);
        hp->rope.rot_dim = rot;
        hp->rope.neox = hp->arch == LLAMA_ARCH_QWEN2;
        hp->rope.pos_scale = 1.0f;

        /* Linear RoPE scaling (a fine-tune stretched to a longer context). */
        char key[128];
        snprintf(key, sizeof(key), "%s.rope.scaling.type", arch);
        if (gguf_get_string(g, key, &s) == 0 && gguf_string_eq(s, "linear")) {
                float factor;
                r = get_f32(g, arch, "rope.scaling.factor", 1.0, 1e-3, 1e3, &factor, err, err_size);
                if (r < 0)
                        return r;
                hp->rope.pos_scale = 1.0f / factor;
        } else if (gguf_get_string(g, key, &s) == 0 && !gguf_string_eq(s, "none") &&
                   !gguf_string_eq(s, "llama3"))
                return nn_error(err, err_size, -EOPNOTSUPP, "%s: RoPE scaling \"%.*s\" is not supported",
                            gguf_path(g), (int) (s.len > 32 ? 32 : s.len), s.data);

        /* The vocabulary size is the token list's length. */
        enum gguf_value_type et;
        const void *data;
        r = gguf_get_array(g, "tokenizer.ggml.tokens", &et, &n_tokens, &data);
        if (r < 0 || et != GGUF_TYPE_STRING || n_tokens == 0 || n_tokens > INT32_MAX)
                return nn_error(err, err_size, -EBADMSG, "%s: tokenizer.ggml.tokens is missing or not a list of strings",
                            gguf_path(g));
        hp->n_vocab = (uint32_t) n_tokens;
        return 0;
}

/* Binds tensor name to w, checking it is [cols] (rows = 1) or [cols][rows]
 * as ggml orders dimensions (ne0 = cols). */
static int bind(struct llama_model *m, const struct gguf *g, const char *name, uint64_t cols, uint64_t rows,
                bool optional, struct nn_weight *w, char *err, size_t err_size) {
        const struct gguf_tensor *t = gguf_find_tensor(g, name);
        int r;

        if (!t) {
                if (optional) {
                        *w = (struct nn_weight) { 0 };
                        return 0;
                }
                return nn_error(err, err_size, -EBADMSG, "%s: tensor %s is missing", gguf_path(g), name);
        }
        if (t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != 1 || t->ne[3] != 1)
                return nn_error(err, err_size, -EBADMSG,
                            "%s: tensor %s has shape [%" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %" PRIu64
                            "], the model's parameters say [%" PRIu64 ", %" PRIu64 "]",
                            gguf_path(g), name, t->ne[0], t->ne[1], t->ne[2], t->ne[3], cols, rows);
        *w = (struct nn_weight) { .type = t->type, .rows = rows, .cols = cols, .data = t->data };
        m->n_params += t->n_elements;
        m->weight_bytes += t->size;
        r = m->be->ops->upload(m->be, w);
        if (r < 0)
                return nn_error(err, err_size, r, "%s: cannot load tensor %s onto %s: %s", gguf_path(g), name,
                            m->be->ops->name, strerror(-r));
        return 0;
}

/* Norm gains and biases are used as f32 rows; a file that stores them in
 * another type gets an f32 copy. */
static int bind_f32(struct llama_model *m, const struct gguf *g, const char *name, uint64_t cols, bool optional,
                    struct nn_weight *w, char *err, size_t err_size) {
        float **owned, *copy;
        int r;

        r = bind(m, g, name, cols, 1, optional, w, err, err_size);
        if (r < 0 || !w->data || w->type == NN_TYPE_F32)
                return r;
        owned = realloc(m->owned, (m->n_owned + 1) * sizeof(float *));
        if (!owned)
                return -ENOMEM;
        m->owned = owned;
        copy = malloc(cols * sizeof(float));
        if (!copy)
                return -ENOMEM;
        m->owned[m->n_owned++] = copy;
        nn_dequantize_row(w->type, w->data, copy, cols);
        w->type = NN_TYPE_F32;
        w->data = copy;
        return 0;
}

int llama_model_load(const struct gguf *g, struct nn_backend *be, struct llama_model **ret, char *err,
                     size_t err_size) {
        struct llama_model *m;
        struct llama_hparams *hp;
        char name[96];
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->be = be;
        hp = &m->hp;
        r = read_hparams(g, hp, err, err_size);
        if (r < 0)
                goto fail;

        uint64_t q_dim = (uint64_t) hp->n_head * hp->head_dim;
        uint64_t kv_dim = (uint64_t) hp->n_head_kv * hp->head_dim;

        r = bind(m, g, "token_embd.weight", hp->n_embd, hp->n_vocab, false, &m->tok_embd, err, err_size);
        if (r < 0)
                goto fail;
        r = bind_f32(m, g, "output_norm.weight", hp->n_embd, false, &m->output_norm, err, err_size);
        if (r < 0)
                goto fail;
        /* Small models tie the output projection to the embedding. */
        r = bind(m, g, "output.weight", hp->n_embd, hp->n_vocab, true, &m->output, err, err_size);
        if (r < 0)
                goto fail;
        if (!m->output.data)
                m->output = m->tok_embd;

        const struct gguf_tensor *ff = gguf_find_tensor(g, "rope_freqs.weight");
        if (ff) {
                if (ff->type != NN_TYPE_F32 || ff->n_elements != hp->rope.rot_dim / 2) {
                        r = nn_error(err, err_size, -EBADMSG, "%s: tensor rope_freqs.weight must be %" PRIu32
                                 " f32 values", gguf_path(g), hp->rope.rot_dim / 2);
                        goto fail;
                }
                m->freq_factors = malloc(ff->size);
                if (!m->freq_factors) {
                        r = -ENOMEM;
                        goto fail;
                }
                memcpy(m->freq_factors, ff->data, ff->size);
                for (uint32_t i = 0; i < hp->rope.rot_dim / 2; i++)
                        if (!(m->freq_factors[i] > 0) || !isfinite(m->freq_factors[i])) {
                                r = nn_error(err, err_size, -EBADMSG, "%s: rope_freqs.weight[%" PRIu32 "] is not a "
                                         "positive number", gguf_path(g), i);
                                goto fail;
                        }
                hp->rope.freq_factors = m->freq_factors;
                m->n_params += ff->n_elements;
        }

        m->layers = calloc(hp->n_layer, sizeof(struct llama_layer));
        if (!m->layers) {
                r = -ENOMEM;
                goto fail;
        }
        for (uint32_t i = 0; i < hp->n_layer; i++) {
                struct llama_layer *l = &m->layers[i];
                bool bias = hp->arch == LLAMA_ARCH_QWEN2;
#define BLK(suffix) (snprintf(name, sizeof(name), "blk.%" PRIu32 ".%s", i, suffix), name)
                if ((r = bind_f32(m, g, BLK("attn_norm.weight"), hp->n_embd, false, &l->attn_norm, err, err_size)) < 0 ||
                    (r = bind(m, g, BLK("attn_q.weight"), hp->n_embd, q_dim, false, &l->wq, err, err_size)) < 0 ||
                    (r = bind(m, g, BLK("attn_k.weight"), hp->n_embd, kv_dim, false, &l->wk, err, err_size)) < 0 ||
                    (r = bind(m, g, BLK("attn_v.weight"), hp->n_embd, kv_dim, false, &l->wv, err, err_size)) < 0 ||
                    (r = bind(m, g, BLK("attn_output.weight"), q_dim, hp->n_embd, false, &l->wo, err, err_size)) < 0 ||
                    (r = bind_f32(m, g, BLK("attn_q.bias"), q_dim, !bias, &l->bq, err, err_size)) < 0 ||
                    (r = bind_f32(m, g, BLK("attn_k.bias"), kv_dim, !bias, &l->bk, err, err_size)) < 0 ||
                    (r = bind_f32(m, g, BLK("attn_v.bias"), kv_dim, !bias, &l->bv, err, err_size)) < 0 ||
                    (r = bind_f32(m, g, BLK("ffn_norm.weight"), hp->n_embd, false, &l->ffn_norm, err, err_size)) < 0 ||
                    (r = bind(m, g, BLK("ffn_gate.weight"), hp->n_embd, hp->n_ff, false, &l->w_gate, err, err_size)) < 0 ||
                    (r = bind(m, g, BLK("ffn_up.weight"), hp->n_embd, hp->n_ff, false, &l->w_up, err, err_size)) < 0 ||
                    (r = bind(m, g, BLK("ffn_down.weight"), hp->n_ff, hp->n_embd, false, &l->w_down, err, err_size)) < 0)
                        goto fail;
#undef BLK
                l->has_bias = l->bq.data && l->bk.data && l->bv.data;
        }

        *ret = m;
        return 0;
fail:
        if (r == -ENOMEM)
                nn_error(err, err_size, r, "%s: out of memory", gguf_path(g));
        llama_model_free(m);
        return r;
}

void llama_model_free(struct llama_model *m) {
        if (!m)
                return;
        for (size_t i = 0; i < m->n_owned; i++)
                free(m->owned[i]);
        free(m->owned);
        free(m->freq_factors);
        free(m->layers);
        free(m);
}

const struct llama_hparams *llama_model_hparams(const struct llama_model *m) {
        return &m->hp;
}

uint64_t llama_model_n_params(const struct llama_model *m) {
        return m->n_params;
}

uint64_t llama_model_weight_bytes(const struct llama_model *m) {
        return m->weight_bytes;
}

uint64_t llama_context_bytes(const struct llama_hparams *hp, size_t n_ctx, size_t n_batch) {
        uint64_t kv_dim = (uint64_t) hp->n_head_kv * hp->head_dim;
        uint64_t q_dim = (uint64_t) hp->n_head * hp->head_dim;
        uint64_t floats = 2 * (uint64_t) hp->n_layer * n_ctx * kv_dim +
                          n_batch * (2 * (uint64_t) hp->n_embd + 2 * q_dim + 2 * (uint64_t) hp->n_ff +
                                     2 * (uint64_t) hp->n_vocab);

        return floats * sizeof(float) + (uint64_t) n_ctx * sizeof(float) * 2;
}

int llama_context_new(struct llama_model *m, size_t n_ctx, size_t n_batch, struct llama_context **ret) {
        const struct llama_hparams *hp = &m->hp;
        struct nn_backend *be = m->be;
        size_t kv_dim = (size_t) hp->n_head_kv * hp->head_dim;
        size_t q_dim = (size_t) hp->n_head * hp->head_dim;
        struct llama_context *c;

        if (n_ctx == 0 || n_batch == 0)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->m = m;
        c->n_ctx = n_ctx;
        c->n_batch = n_batch;
        c->k_cache = calloc(hp->n_layer, sizeof(float *));
        c->v_cache = calloc(hp->n_layer, sizeof(float *));
        if (!c->k_cache || !c->v_cache)
                goto fail;
        for (uint32_t i = 0; i < hp->n_layer; i++) {
                c->k_cache[i] = be->ops->alloc(be, n_ctx * kv_dim);
                c->v_cache[i] = be->ops->alloc(be, n_ctx * kv_dim);
                if (!c->k_cache[i] || !c->v_cache[i])
                        goto fail;
        }
        c->x = be->ops->alloc(be, n_batch * hp->n_embd);
        c->xn = be->ops->alloc(be, n_batch * hp->n_embd);
        c->q = be->ops->alloc(be, n_batch * q_dim);
        c->attn = be->ops->alloc(be, n_batch * q_dim);
        c->gate = be->ops->alloc(be, n_batch * hp->n_ff);
        c->up = be->ops->alloc(be, n_batch * hp->n_ff);
        c->logits_dev = be->ops->alloc(be, n_batch * hp->n_vocab);
        c->logits = malloc(n_batch * hp->n_vocab * sizeof(float));
        c->positions = malloc(n_batch * sizeof(int32_t));
        if (!c->x || !c->xn || !c->q || !c->attn || !c->gate || !c->up || !c->logits_dev || !c->logits ||
            !c->positions)
                goto fail;
        *ret = c;
        return 0;
fail:
        llama_context_free(c);
        return -ENOMEM;
}

void llama_context_free(struct llama_context *c) {
        struct nn_backend *be;

        if (!c)
                return;
        be = c->m->be;
        for (uint32_t i = 0; i < c->m->hp.n_layer; i++) {
                if (c->k_cache)
                        be->ops->release(be, c->k_cache[i]);
                if (c->v_cache)
                        be->ops->release(be, c->v_cache[i]);
        }
        free(c->k_cache);
        free(c->v_cache);
        be->ops->release(be, c->x);
        be->ops->release(be, c->xn);
        be->ops->release(be, c->q);
        be->ops->release(be, c->attn);
        be->ops->release(be, c->gate);
        be->ops->release(be, c->up);
        be->ops->release(be, c->logits_dev);
        free(c->logits);
        free(c->positions);
        free(c);
}

size_t llama_context_n_ctx(const struct llama_context *c) {
        return c->n_ctx;
}

size_t llama_context_n_batch(const struct llama_context *c) {
        return c->n_batch;
}

size_t llama_context_pos(const struct llama_context *c) {
        return c->pos;
}

void llama_context_rewind(struct llama_context *c, size_t pos) {
        if (pos < c->pos)
                c->pos = pos;
}

int llama_eval(struct llama_context *c, const int32_t *tokens, size_t n, bool all_logits, const float **logits) {
        const struct llama_model *m = c->m;
        const struct llama_hparams *hp = &m->hp;
        const struct nn_backend_ops *op = m->be->ops;
        struct nn_backend *be = m->be;
        size_t embd = hp->n_embd, hd = hp->head_dim;
        size_t kv_dim = (size_t) hp->n_head_kv * hd;
        size_t pos0 = c->pos;
        int r;

        if (n == 0 || n > c->n_batch)
                return -EINVAL;
        if (pos0 + n > c->n_ctx)
                return -ENOSPC;
        for (size_t t = 0; t < n; t++) {
                if (tokens[t] < 0 || (uint32_t) tokens[t] >= hp->n_vocab)
                        return -EINVAL;
                c->positions[t] = (int32_t) (pos0 + t);
        }

        op->get_rows(be, &m->tok_embd, tokens, n, c->x);

        for (uint32_t il = 0; il < hp->n_layer; il++) {
                const struct llama_layer *l = &m->layers[il];
                /* K and V of these tokens go straight into their cache rows. */
                float *k = c->k_cache[il] + pos0 * kv_dim;
                float *v = c->v_cache[il] + pos0 * kv_dim;

                /* Attention block: x += Wo · attention(rope(Wq·n(x)), rope(Wk·n(x)), Wv·n(x)) */
                op->rmsnorm(be, c->xn, c->x, &l->attn_norm, n, hp->norm_eps);
                op->matmul(be, &l->wq, c->xn, n, c->q);
                op->matmul(be, &l->wk, c->xn, n, k);
                op->matmul(be, &l->wv, c->xn, n, v);
                if (l->has_bias) {
                        op->add_bias(be, c->q, &l->bq, n);
                        op->add_bias(be, k, &l->bk, n);
                        op->add_bias(be, v, &l->bv, n);
                }
                op->rope(be, c->q, n, hp->n_head, hd, c->positions, &hp->rope);
                op->rope(be, k, n, hp->n_head_kv, hd, c->positions, &hp->rope);
                op->attention(be, c->attn, c->q, c->k_cache[il], c->v_cache[il], pos0, n, hp->n_head,
                              hp->n_head_kv, hd);
                op->matmul(be, &l->wo, c->attn, n, c->xn);
                op->add(be, c->x, c->xn, n * embd);

                /* Feed-forward block (SwiGLU): x += W_down · (silu(W_gate·n(x)) ⊙ W_up·n(x)) */
                op->rmsnorm(be, c->xn, c->x, &l->ffn_norm, n, hp->norm_eps);
                op->matmul(be, &l->w_gate, c->xn, n, c->gate);
                op->matmul(be, &l->w_up, c->xn, n, c->up);
                op->silu_mul(be, c->gate, c->up, n * hp->n_ff);
                op->matmul(be, &l->w_down, c->gate, n, c->xn);
                op->add(be, c->x, c->xn, n * embd);
        }

        /* Only the rows whose logits are wanted go through the (large)
         * output projection. */
        size_t first = all_logits ? 0 : n - 1, n_out = n - first;
        op->rmsnorm(be, c->xn, c->x + first * embd, &m->output_norm, n_out, hp->norm_eps);
        op->matmul(be, &m->output, c->xn, n_out, c->logits_dev);
        op->read(be, c->logits, c->logits_dev, n_out * hp->n_vocab);
        r = op->status(be);
        if (r < 0)
                return r;

        c->pos = pos0 + n;
        *logits = c->logits;
        return 0;
}

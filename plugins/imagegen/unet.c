/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* unet.h's network, block by block as openaimodel.py builds it. */

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn-error.h"
#include "safetensors.h"
#include "sd-blocks.h"
#include "unet.h"

#define LEVELS 4
#define RES_DOWN 2
#define RES_UP 3
#define ATTN_LEVELS 3           /* transformers at downsampling 1, 2, 4 */
#define N_INPUT (1 + LEVELS * RES_DOWN + (LEVELS - 1))
#define N_OUTPUT (LEVELS * RES_UP)
#define GN_GROUPS 32
#define GN_EPS 1e-5f

static const uint32_t channel_mult[LEVELS] = { 1, 2, 4, 4 };

enum layer_kind {
        LAYER_RES,
        LAYER_ATTN,
        LAYER_DOWN,
        LAYER_UP,
};

struct layer {
        enum layer_kind kind;
        uint32_t c_in, c_out;
        unsigned level;                 /* resolution it runs at: h >> level */
        struct sd_resblock res;
        struct sd_transformer tr;
        struct sd_weight w, b;          /* LAYER_DOWN, LAYER_UP */
};

struct block {
        struct layer layers[3];
        unsigned n;
        uint32_t c_out;
        unsigned level_out;
};

struct sd_unet {
        struct nn_backend *be;
        uint32_t ch, emb, ctx, heads_fixed;
        uint64_t parameters;
        struct sd_weight te0_w, te0_b, te2_w, te2_b;
        struct sd_weight in_w, in_b, out_g, out_b, out_w, out_b2;
        struct block input[N_INPUT], middle, output[N_OUTPUT];

        /* Scratch for the largest latent seen. */
        size_t scratch_hw;
        float *skips[N_INPUT];
        float *cur, *next;              /* a block's intermediate layers, in turn */
        float *cat, *spare;             /* [h; skip] into an output block, and its output */
        float *work;
        size_t cur_len, work_len;
        float *emb_dev;
        float *emb_host;
};

uint32_t sd_unet_model_channels(const struct sd_unet *u) {
        return u->ch;
}

uint32_t sd_unet_context_dim(const struct sd_unet *u) {
        return u->ctx;
}

uint64_t sd_unet_parameters(const struct sd_unet *u) {
        return u->parameters;
}

static int load_weight(struct sd_unet *u, const struct safetensors *file, const char *name, uint64_t n,
                       struct sd_weight *w, char *err, size_t err_size) {
        int r = sd_weight_load(u->be, file, name, n, w, err, err_size);

        if (r >= 0)
                u->parameters += n;
        return r;
}

static int add_res(struct sd_unet *u, const struct safetensors *file, struct block *b, const char *prefix,
                   uint32_t in, uint32_t out, unsigned level, char *err, size_t err_size) {
        struct layer *l = &b->layers[b->n];
        int r;

        *l = (struct layer) { .kind = LAYER_RES, .c_in = in, .c_out = out, .level = level };
        r = sd_resblock_load(u->be, file, prefix, in, out, u->emb, &l->res, err, err_size);
        if (r < 0)
                return r;
        u->parameters += (uint64_t) out * in * 9 + (uint64_t) out * out * 9 + (uint64_t) out * u->emb +
                         (in != out ? (uint64_t) out * in : 0);
        b->n++;
        b->c_out = out;
        b->level_out = level;
        return 0;
}

static int add_attn(struct sd_unet *u, const struct safetensors *file, struct block *b, const char *prefix,
                    uint32_t c, unsigned level, char *err, size_t err_size) {
        struct layer *l = &b->layers[b->n];
        uint32_t heads = u->heads_fixed ? u->heads_fixed : c / 64;
        int r;

        *l = (struct layer) { .kind = LAYER_ATTN, .c_in = c, .c_out = c, .level = level };
        r = sd_transformer_load(u->be, file, prefix, c, u->ctx, heads ?: 1, &l->tr, err, err_size);
        if (r < 0)
                return r;
        u->parameters += (uint64_t) c * c * 18 + (uint64_t) c * u->ctx * 2;
        b->n++;
        return 0;
}

static int add_conv(struct sd_unet *u, const struct safetensors *file, struct block *b, const char *prefix,
                    enum layer_kind kind, uint32_t c, unsigned level, char *err, size_t err_size) {
        struct layer *l = &b->layers[b->n];
        char name[512];
        int r;

        *l = (struct layer) { .kind = kind, .c_in = c, .c_out = c, .level = level };
        snprintf(name, sizeof(name), "%sweight", prefix);
        r = load_weight(u, file, name, (uint64_t) c * c * 9, &l->w, err, err_size);
        if (r < 0)
                return r;
        snprintf(name, sizeof(name), "%sbias", prefix);
        r = load_weight(u, file, name, c, &l->b, err, err_size);
        if (r < 0) {
                sd_weight_free(u->be, &l->w);
                return r;
        }
        b->n++;
        b->c_out = c;
        b->level_out = kind == LAYER_DOWN ? level + 1 : level - 1;
        return 0;
}

static void free_block(struct nn_backend *be, struct block *b) {
        for (unsigned i = 0; i < b->n; i++) {
                struct layer *l = &b->layers[i];

                switch (l->kind) {
                case LAYER_RES:
                        sd_resblock_free(be, &l->res);
                        break;
                case LAYER_ATTN:
                        sd_transformer_free(be, &l->tr);
                        break;
                default:
                        sd_weight_free(be, &l->w);
                        sd_weight_free(be, &l->b);
                }
        }
        b->n = 0;
}

static void free_scratch(struct sd_unet *u) {
        struct nn_backend *be = u->be;
        float **all[] = { &u->cur, &u->next, &u->cat, &u->spare, &u->work, &u->emb_dev };

        for (size_t i = 0; i < N_INPUT; i++)
                if (u->skips[i]) {
                        be->ops->release(be, u->skips[i]);
                        u->skips[i] = NULL;
                }
        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
                if (*all[i]) {
                        be->ops->release(be, *all[i]);
                        *all[i] = NULL;
                }
        u->scratch_hw = 0;
}

void sd_unet_free(struct sd_unet *u) {
        if (!u)
                return;
        free_scratch(u);
        for (size_t i = 0; i < N_INPUT; i++)
                free_block(u->be, &u->input[i]);
        free_block(u->be, &u->middle);
        for (size_t i = 0; i < N_OUTPUT; i++)
                free_block(u->be, &u->output[i]);
        struct sd_weight *all[] = {
                &u->te0_w, &u->te0_b, &u->te2_w, &u->te2_b, &u->in_w, &u->in_b,
                &u->out_g, &u->out_b, &u->out_w, &u->out_b2,
        };
        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
                sd_weight_free(u->be, all[i]);
        free(u->emb_host);
        free(u);
}

static int load_blocks(struct sd_unet *u, const struct safetensors *file, char *err, size_t err_size) {
        const char *root = "model.diffusion_model.";
        uint32_t c = u->ch, ch = c, chans[N_INPUT];
        size_t n_chans = 0, block = 0;
        char p[256];
        int r;

        snprintf(p, sizeof(p), "%sinput_blocks.0.0.", root);
        u->input[0].c_out = c;
        chans[n_chans++] = c;
        block = 1;
        for (unsigned level = 0; level < LEVELS; level++) {
                for (unsigned i = 0; i < RES_DOWN; i++, block++) {
                        uint32_t out = c * channel_mult[level];

                        snprintf(p, sizeof(p), "%sinput_blocks.%zu.0.", root, block);
                        r = add_res(u, file, &u->input[block], p, ch, out, level, err, err_size);
                        if (r < 0)
                                return r;
                        ch = out;
                        if (level < ATTN_LEVELS) {
                                snprintf(p, sizeof(p), "%sinput_blocks.%zu.1.", root, block);
                                r = add_attn(u, file, &u->input[block], p, ch, level, err, err_size);
                                if (r < 0)
                                        return r;
                        }
                        chans[n_chans++] = ch;
                }
                if (level + 1 < LEVELS) {
                        snprintf(p, sizeof(p), "%sinput_blocks.%zu.0.op.", root, block);
                        r = add_conv(u, file, &u->input[block++], p, LAYER_DOWN, ch, level, err, err_size);
                        if (r < 0)
                                return r;
                        chans[n_chans++] = ch;
                }
        }

        snprintf(p, sizeof(p), "%smiddle_block.0.", root);
        r = add_res(u, file, &u->middle, p, ch, ch, LEVELS - 1, err, err_size);
        if (r >= 0) {
                snprintf(p, sizeof(p), "%smiddle_block.1.", root);
                r = add_attn(u, file, &u->middle, p, ch, LEVELS - 1, err, err_size);
        }
        if (r >= 0) {
                snprintf(p, sizeof(p), "%smiddle_block.2.", root);
                r = add_res(u, file, &u->middle, p, ch, ch, LEVELS - 1, err, err_size);
        }
        if (r < 0)
                return r;

        block = 0;
        for (int level = LEVELS - 1; level >= 0; level--)
                for (unsigned i = 0; i < RES_UP; i++, block++) {
                        uint32_t skip = chans[--n_chans], out = c * channel_mult[level];
                        unsigned idx = 1;

                        snprintf(p, sizeof(p), "%soutput_blocks.%zu.0.", root, block);
                        r = add_res(u, file, &u->output[block], p, ch + skip, out, (unsigned) level, err,
                                    err_size);
                        if (r < 0)
                                return r;
                        ch = out;
                        if (level < ATTN_LEVELS) {
                                snprintf(p, sizeof(p), "%soutput_blocks.%zu.1.", root, block);
                                r = add_attn(u, file, &u->output[block], p, ch, (unsigned) level, err, err_size);
                                if (r < 0)
                                        return r;
                                idx = 2;
                        }
                        if (level > 0 && i == RES_UP - 1) {
                                snprintf(p, sizeof(p), "%soutput_blocks.%zu.%u.conv.", root, block, idx);
                                r = add_conv(u, file, &u->output[block], p, LAYER_UP, ch, (unsigned) level, err,
                                             err_size);
                                if (r < 0)
                                        return r;
                        }
                }
        return 0;
}

int sd_unet_load(struct nn_backend *be, const struct safetensors *file, uint32_t heads, struct sd_unet **ret,
                 char *err, size_t err_size) {
        const struct st_tensor *conv_in, *to_k;
        struct sd_unet *u;
        int r;

        conv_in = safetensors_find(file, "model.diffusion_model.input_blocks.0.0.weight");
        if (!conv_in)
                return nn_error(err, err_size, -ENOENT, "the checkpoint has no UNet "
                                "(model.diffusion_model.input_blocks.0.0.weight)");
        if (safetensors_find(file, "model.diffusion_model.label_emb.0.0.weight") ||
            safetensors_find(file, "conditioner.embedders.1.model.ln_final.weight"))
                return nn_error(err, err_size, -EOPNOTSUPP, "an SDXL checkpoint: only SD 1.x and 2.x UNets are "
                                "supported");
        if (conv_in->ndim != 4 || conv_in->shape[1] != SD_LATENT_CHANNELS || conv_in->shape[2] != 3 ||
            conv_in->shape[3] != 3 || conv_in->shape[0] == 0 || conv_in->shape[0] > 8192 ||
            conv_in->shape[0] % GN_GROUPS)
                return nn_error(err, err_size, -EBADMSG, "model.diffusion_model.input_blocks.0.0.weight is not "
                                "[model_channels][4][3][3] with model_channels a multiple of 32 (an inpainting or "
                                "other variant?)");
        to_k = safetensors_find(file, "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight");
        if (!to_k || to_k->ndim != 2 || to_k->shape[1] == 0 || to_k->shape[1] > 16384)
                return nn_error(err, err_size, -EBADMSG, "model.diffusion_model.middle_block.1.transformer_blocks.0"
                                ".attn2.to_k.weight is missing or not a matrix");

        u = calloc(1, sizeof(*u));
        if (!u)
                return -ENOMEM;
        u->be = be;
        u->ch = (uint32_t) conv_in->shape[0];
        u->emb = 4 * u->ch;
        u->ctx = (uint32_t) to_k->shape[1];
        /* SD 1.x (a text context up to 768 wide: CLIP ViT-L, and sd-tiny's
         * scaled-down ones) has 8 heads everywhere; SD 2.x (OpenCLIP's
         * 1024) 64 channels per head. */
        u->heads_fixed = heads ? heads : u->ctx < 1024 ? 8 : 0;
        u->emb_host = malloc(u->emb * sizeof(float) * 2);
        if (!u->emb_host) {
                free(u);
                return -ENOMEM;
        }

        const struct {
                const char *name;
                uint64_t n;
                struct sd_weight *w;
        } top[] = {
                { "model.diffusion_model.time_embed.0.weight", (uint64_t) u->emb * u->ch, &u->te0_w },
                { "model.diffusion_model.time_embed.0.bias", u->emb, &u->te0_b },
                { "model.diffusion_model.time_embed.2.weight", (uint64_t) u->emb * u->emb, &u->te2_w },
                { "model.diffusion_model.time_embed.2.bias", u->emb, &u->te2_b },
                { "model.diffusion_model.input_blocks.0.0.weight", (uint64_t) u->ch * SD_LATENT_CHANNELS * 9, &u->in_w },
                { "model.diffusion_model.input_blocks.0.0.bias", u->ch, &u->in_b },
                { "model.diffusion_model.out.0.weight", u->ch, &u->out_g },
                { "model.diffusion_model.out.0.bias", u->ch, &u->out_b },
                { "model.diffusion_model.out.2.weight", (uint64_t) SD_LATENT_CHANNELS * u->ch * 9, &u->out_w },
                { "model.diffusion_model.out.2.bias", SD_LATENT_CHANNELS, &u->out_b2 },
        };
        for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++) {
                r = load_weight(u, file, top[i].name, top[i].n, top[i].w, err, err_size);
                if (r < 0) {
                        sd_unet_free(u);
                        return r;
                }
        }
        r = load_blocks(u, file, err, err_size);
        if (r < 0) {
                sd_unet_free(u);
                return r;
        }
        *ret = u;
        return 0;
}

/* The floats a layer needs besides its input and output. */
static size_t layer_work(const struct sd_unet *u, const struct layer *l, uint32_t h, uint32_t w, size_t n_ctx) {
        uint32_t lh = h >> l->level, lw = w >> l->level;

        switch (l->kind) {
        case LAYER_RES:
                return sd_resblock_scratch(&l->res, lh, lw);
        case LAYER_ATTN:
                return sd_transformer_scratch(&l->tr, lh, lw, n_ctx);
        case LAYER_UP:
                return 4 * (size_t) l->c_in * lh * lw;
        default:
                return 0;
        }
}

static void block_sizes(const struct sd_unet *u, const struct block *b, uint32_t h, uint32_t w, size_t n_ctx,
                        size_t *act, size_t *work) {
        for (unsigned i = 0; i < b->n; i++) {
                const struct layer *l = &b->layers[i];
                size_t hw = (size_t) (h >> l->level) * (w >> l->level), need = layer_work(u, l, h, w, n_ctx);
                size_t a = (size_t) (l->c_in > l->c_out ? l->c_in : l->c_out) * hw;

                if (l->kind == LAYER_UP)
                        a = (size_t) l->c_out * hw * 4;
                if (a > *act)
                        *act = a;
                if (need > *work)
                        *work = need;
        }
}

static int ensure_scratch(struct sd_unet *u, uint32_t h, uint32_t w, size_t n_ctx) {
        struct nn_backend *be = u->be;
        size_t act = (size_t) u->ch * h * w, work = 0;

        if (u->scratch_hw >= (size_t) h * w && u->cur_len >= act) {
                size_t need_work = 0, a = 0;

                for (size_t i = 1; i < N_INPUT; i++)
                        block_sizes(u, &u->input[i], h, w, n_ctx, &a, &need_work);
                block_sizes(u, &u->middle, h, w, n_ctx, &a, &need_work);
                for (size_t i = 0; i < N_OUTPUT; i++)
                        block_sizes(u, &u->output[i], h, w, n_ctx, &a, &need_work);
                if (need_work <= u->work_len && a <= u->cur_len)
                        return 0;
        }
        free_scratch(u);
        for (size_t i = 1; i < N_INPUT; i++)
                block_sizes(u, &u->input[i], h, w, n_ctx, &act, &work);
        block_sizes(u, &u->middle, h, w, n_ctx, &act, &work);
        for (size_t i = 0; i < N_OUTPUT; i++)
                block_sizes(u, &u->output[i], h, w, n_ctx, &act, &work);
        for (size_t i = 0; i < N_INPUT; i++) {
                unsigned level = i == 0 ? 0 : u->input[i].level_out;

                u->skips[i] = be->ops->alloc(be, (size_t) u->input[i].c_out * (h >> level) * (w >> level));
                if (!u->skips[i])
                        goto fail;
        }
        u->cur = be->ops->alloc(be, act);
        u->next = be->ops->alloc(be, act);
        u->cat = be->ops->alloc(be, act);
        u->spare = be->ops->alloc(be, act);
        u->work = be->ops->alloc(be, work ?: 1);
        u->emb_dev = be->ops->alloc(be, 2 * (size_t) u->emb);
        if (!u->cur || !u->next || !u->cat || !u->spare || !u->work || !u->emb_dev)
                goto fail;
        u->cur_len = act;
        u->work_len = work;
        u->scratch_hw = (size_t) h * w;
        return 0;
fail:
        free_scratch(u);
        return -ENOMEM;
}

static double layer_flops(const struct sd_unet *u, const struct layer *l, uint32_t h, uint32_t w, size_t n_ctx) {
        double hw = (double) (h >> l->level) * (w >> l->level), ci = l->c_in, co = l->c_out, x = (double) n_ctx;

        switch (l->kind) {
        case LAYER_RES:
                return 2 * hw * 9 * (co * ci + co * co) + (ci != co ? 2 * hw * co * ci : 0) + 2 * co * u->emb;
        case LAYER_ATTN:
                /* proj_in/out, q k v o; self-attention's scores and sums;
                 * cross-attention's q o, k v of the text, scores and sums;
                 * GEGLU's 8c and 4c. */
                return 2 * hw * ci * ci * 2 + 2 * hw * ci * ci * 4 + 2 * 2 * hw * hw * ci +
                       2 * hw * ci * ci * 2 + 2 * x * u->ctx * ci * 2 + 2 * 2 * hw * x * ci + 2 * hw * ci * ci * 12;
        case LAYER_DOWN:
                return 2 * (hw / 4) * 9 * ci * ci;
        case LAYER_UP:
                return 2 * (hw * 4) * 9 * ci * ci;
        }
        return 0;
}

double sd_unet_flops(const struct sd_unet *u, uint32_t h, uint32_t w, size_t n_ctx) {
        double f = 2.0 * h * w * 9 * u->ch * SD_LATENT_CHANNELS * 2;   /* conv_in, out.2 */
        const struct block *all[N_INPUT + 1 + N_OUTPUT];
        size_t n = 0;

        for (size_t i = 1; i < N_INPUT; i++)
                all[n++] = &u->input[i];
        all[n++] = &u->middle;
        for (size_t i = 0; i < N_OUTPUT; i++)
                all[n++] = &u->output[i];
        for (size_t b = 0; b < n; b++)
                for (unsigned i = 0; i < all[b]->n; i++)
                        f += layer_flops(u, &all[b]->layers[i], h, w, n_ctx);
        return f;
}

static struct nn_conv2d conv3x3(uint32_t c, uint32_t h, uint32_t w, uint32_t k) {
        return (struct nn_conv2d) {
                .n = 1, .c = c, .h = h, .w = w, .k = k, .r = 3, .s = 3, .stride_h = 1, .stride_w = 1,
                .pad_h = 1, .pad_w = 1, .dilation_h = 1, .dilation_w = 1, .groups = 1,
        };
}

/* Runs b's layers on x into out (neither of them cur or next); the layers
 * between write cur and next in turn, never onto their own input. */
static void run_block(struct sd_unet *u, const struct block *b, const float *x, uint32_t h, uint32_t w,
                      const float *context, size_t n_ctx, float *out) {
        struct nn_backend *be = u->be;
        const float *in = x;

        for (unsigned i = 0; i < b->n; i++) {
                const struct layer *l = &b->layers[i];
                uint32_t lh = h >> l->level, lw = w >> l->level;
                float *dst = i + 1 == b->n ? out : (in == u->cur ? u->next : u->cur);

                switch (l->kind) {
                case LAYER_RES:
                        sd_resblock_forward(be, &l->res, in, u->emb_host, lh, lw, dst, u->work);
                        break;
                case LAYER_ATTN:
                        sd_transformer_forward(be, &l->tr, in, context, n_ctx, lh, lw, dst, u->work);
                        break;
                case LAYER_DOWN:
                        sd_downsample(be, &l->w, &l->b, l->c_in, in, lh, lw, dst);
                        break;
                case LAYER_UP:
                        sd_upsample(be, &l->w, &l->b, l->c_in, in, lh, lw, dst, u->work);
                        break;
                }
                in = dst;
        }
}

static void time_embedding(struct sd_unet *u, double t) {
        struct nn_backend *be = u->be;
        float *e = u->emb_host, *dev_in = u->emb_dev, *dev_out = u->emb_dev + u->emb;

        sd_timestep_embedding(t, u->ch, e);
        be->ops->write(be, dev_in, e, u->ch);
        be->ops->linear(be, dev_out, dev_in, 1, u->ch, u->emb, u->te0_w.data, u->te0_b.data);
        be->ops->read(be, e, dev_out, u->emb);
        for (uint32_t i = 0; i < u->emb; i++)
                e[i] = e[i] / (1.0f + expf(-e[i]));
        be->ops->write(be, dev_in, e, u->emb);
        be->ops->linear(be, dev_out, dev_in, 1, u->emb, u->emb, u->te2_w.data, u->te2_b.data);
        /* The ResBlocks take the embedding in host memory. */
        be->ops->read(be, e, dev_out, u->emb);
}

int sd_unet_forward(struct sd_unet *u, const float *x, uint32_t h, uint32_t w, double t, const float *context,
                    size_t n_ctx, float *eps) {
        struct nn_backend *be = u->be;
        struct nn_conv2d p;
        size_t n_skips = 0;
        uint32_t ch;
        int r;

        if (h == 0 || w == 0 || h % 8 || w % 8)
                return -EINVAL;
        r = ensure_scratch(u, h, w, n_ctx);
        if (r < 0)
                return r;
        time_embedding(u, t);

        p = conv3x3(SD_LATENT_CHANNELS, h, w, u->ch);
        be->ops->conv2d(be, &p, x, u->in_w.data, u->in_b.data, u->skips[n_skips++]);
        for (size_t i = 1; i < N_INPUT; i++, n_skips++)
                run_block(u, &u->input[i], u->skips[i - 1], h, w, context, n_ctx, u->skips[i]);

        run_block(u, &u->middle, u->skips[N_INPUT - 1], h, w, context, n_ctx, u->cat);
        ch = u->middle.c_out;
        /* h lives in cat's front; each output block takes [h; skip] and
         * writes spare, which becomes the next block's cat. */
        for (size_t i = 0; i < N_OUTPUT; i++) {
                const struct block *b = &u->output[i];
                unsigned level = b->layers[0].level;
                size_t hw = (size_t) (h >> level) * (w >> level);
                const float *skip = u->skips[--n_skips];
                uint32_t skip_c = b->layers[0].c_in - ch;
                float *o;

                be->ops->copy(be, u->cat + (size_t) ch * hw, skip, (size_t) skip_c * hw);
                run_block(u, b, u->cat, h, w, context, n_ctx, u->spare);
                o = u->spare;
                u->spare = u->cat;
                u->cat = o;
                ch = b->c_out;
        }

        be->ops->group_norm(be, u->cur, u->cat, 1, u->ch, (size_t) h * w, GN_GROUPS, u->out_g.data, u->out_b.data,
                            GN_EPS, true);
        p = conv3x3(u->ch, h, w, SD_LATENT_CHANNELS);
        be->ops->conv2d(be, &p, u->cur, u->out_w.data, u->out_b2.data, eps);
        return be->ops->status(be);
}

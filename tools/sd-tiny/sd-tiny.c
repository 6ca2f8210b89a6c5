/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The random-weight SD 1.x checkpoint of sd-tiny.h.  The structure follows
 * the LDM code the checkpoints come from (openaimodel.py's UNetModel with
 * channel_mult 1,2,4,4, two res blocks a level, attention at downsampling
 * factors 1, 2 and 4; the VAE of autoencoder.py with ch_mult 1,2,4,4 and
 * attention in the middle only; CLIPTextModel). */

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn-error.h"
#include "nn-type.h"
#include "sd-tiny.h"

#define LEVELS 4
#define RES_BLOCKS 2

static const uint32_t channel_mult[LEVELS] = { 1, 2, 4, 4 };

struct gen {
        const struct sd_tiny_spec *spec;
        struct safetensors_writer *w;
        uint64_t rng;
        void *buf;
        size_t buf_size;
        size_t n;
        int error;
};

static uint64_t rng_next(uint64_t *s) {
        uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

/* A tensor of random values, uniform in ±scale (for a weight, 1/√fan-in
 * keeps activations in range through the network), or all `fill`. */
static void tensor(struct gen *g, const char *prefix, const char *name, uint32_t ndim, const uint64_t *shape,
                   double scale, double fill) {
        char full[512];
        uint64_t n = 1;
        size_t es = st_dtype_size(g->spec->dtype);

        if (g->error < 0)
                return;
        for (uint32_t i = 0; i < ndim; i++)
                n *= shape[i];
        if (n * es > g->buf_size) {
                void *b = realloc(g->buf, n * es);
                if (!b) {
                        g->error = -ENOMEM;
                        return;
                }
                g->buf = b;
                g->buf_size = n * es;
        }
        for (uint64_t i = 0; i < n; i++) {
                float v = scale > 0 ? (float) (((double) (rng_next(&g->rng) >> 11) * 0x1p-53 * 2 - 1) * scale)
                                    : (float) fill;

                if (g->spec->dtype == ST_F32)
                        ((float *) g->buf)[i] = v;
                else if (g->spec->dtype == ST_F16)
                        ((uint16_t *) g->buf)[i] = nn_f32_to_fp16(v);
                else
                        ((uint16_t *) g->buf)[i] = nn_f32_to_bf16(v);
        }
        snprintf(full, sizeof(full), "%s%s", prefix, name);
        g->error = safetensors_writer_add(g->w, full, g->spec->dtype, ndim, shape, g->buf);
        g->n++;
}

#define SHAPE(...) (sizeof((const uint64_t[]) { __VA_ARGS__ }) / sizeof(uint64_t)), (const uint64_t[]) { __VA_ARGS__ }

static void linear(struct gen *g, const char *prefix, const char *name, uint64_t out, uint64_t in, int bias) {
        char n[256];

        snprintf(n, sizeof(n), "%s.weight", name);
        tensor(g, prefix, n, SHAPE(out, in), 1.0 / sqrt((double) in), 0);
        if (bias) {
                snprintf(n, sizeof(n), "%s.bias", name);
                tensor(g, prefix, n, SHAPE(out), 0.02, 0);
        }
}

static void conv(struct gen *g, const char *prefix, const char *name, uint64_t out, uint64_t in, uint64_t k) {
        char n[256];

        snprintf(n, sizeof(n), "%s.weight", name);
        tensor(g, prefix, n, SHAPE(out, in, k, k), 1.0 / sqrt((double) (in * k * k)), 0);
        snprintf(n, sizeof(n), "%s.bias", name);
        tensor(g, prefix, n, SHAPE(out), 0.02, 0);
}

/* GroupNorm and LayerNorm: gain 1, bias 0, as trained models start. */
static void norm(struct gen *g, const char *prefix, const char *name, uint64_t c) {
        char n[256];

        snprintf(n, sizeof(n), "%s.weight", name);
        tensor(g, prefix, n, SHAPE(c), 0, 1);
        snprintf(n, sizeof(n), "%s.bias", name);
        tensor(g, prefix, n, SHAPE(c), 0, 0);
}

static void unet_resblock(struct gen *g, const char *p, uint64_t in, uint64_t out, uint64_t emb) {
        char pre[256];

        snprintf(pre, sizeof(pre), "%s", p);
        norm(g, pre, "in_layers.0", in);
        conv(g, pre, "in_layers.2", out, in, 3);
        linear(g, pre, "emb_layers.1", out, emb, 1);
        norm(g, pre, "out_layers.0", out);
        conv(g, pre, "out_layers.3", out, out, 3);
        if (in != out)
                conv(g, pre, "skip_connection", out, in, 1);
}

static void unet_transformer(struct gen *g, const char *p, uint64_t ch, uint64_t ctx) {
        norm(g, p, "norm", ch);
        conv(g, p, "proj_in", ch, ch, 1);
        linear(g, p, "transformer_blocks.0.attn1.to_q", ch, ch, 0);
        linear(g, p, "transformer_blocks.0.attn1.to_k", ch, ch, 0);
        linear(g, p, "transformer_blocks.0.attn1.to_v", ch, ch, 0);
        linear(g, p, "transformer_blocks.0.attn1.to_out.0", ch, ch, 1);
        /* GEGLU: one projection to twice the inner width (4·ch). */
        linear(g, p, "transformer_blocks.0.ff.net.0.proj", 8 * ch, ch, 1);
        linear(g, p, "transformer_blocks.0.ff.net.2", ch, 4 * ch, 1);
        linear(g, p, "transformer_blocks.0.attn2.to_q", ch, ch, 0);
        linear(g, p, "transformer_blocks.0.attn2.to_k", ch, ctx, 0);
        linear(g, p, "transformer_blocks.0.attn2.to_v", ch, ctx, 0);
        linear(g, p, "transformer_blocks.0.attn2.to_out.0", ch, ch, 1);
        norm(g, p, "transformer_blocks.0.norm1", ch);
        norm(g, p, "transformer_blocks.0.norm2", ch);
        norm(g, p, "transformer_blocks.0.norm3", ch);
        conv(g, p, "proj_out", ch, ch, 1);
}

static void unet(struct gen *g) {
        const char *root = "model.diffusion_model.";
        uint64_t c = g->spec->model_channels, emb = 4 * c, ctx = g->spec->context_dim, ch = c;
        uint64_t chans[LEVELS * (RES_BLOCKS + 1) + 1];
        size_t n_chans = 0, block = 0;
        unsigned ds = 1;
        char p[256];

        linear(g, root, "time_embed.0", emb, c, 1);
        linear(g, root, "time_embed.2", emb, emb, 1);
        snprintf(p, sizeof(p), "%sinput_blocks.0.", root);
        conv(g, p, "0", c, 4, 3);
        chans[n_chans++] = c;
        block = 1;
        for (unsigned level = 0; level < LEVELS; level++) {
                for (unsigned r = 0; r < RES_BLOCKS; r++, block++) {
                        uint64_t out = c * channel_mult[level];

                        snprintf(p, sizeof(p), "%sinput_blocks.%zu.0.", root, block);
                        unet_resblock(g, p, ch, out, emb);
                        ch = out;
                        if (ds <= 4) {
                                snprintf(p, sizeof(p), "%sinput_blocks.%zu.1.", root, block);
                                unet_transformer(g, p, ch, ctx);
                        }
                        chans[n_chans++] = ch;
                }
                if (level + 1 < LEVELS) {
                        snprintf(p, sizeof(p), "%sinput_blocks.%zu.0.", root, block++);
                        conv(g, p, "op", ch, ch, 3);
                        chans[n_chans++] = ch;
                        ds *= 2;
                }
        }
        snprintf(p, sizeof(p), "%smiddle_block.0.", root);
        unet_resblock(g, p, ch, ch, emb);
        snprintf(p, sizeof(p), "%smiddle_block.1.", root);
        unet_transformer(g, p, ch, ctx);
        snprintf(p, sizeof(p), "%smiddle_block.2.", root);
        unet_resblock(g, p, ch, ch, emb);

        block = 0;
        for (int level = LEVELS - 1; level >= 0; level--)
                for (unsigned r = 0; r <= RES_BLOCKS; r++, block++) {
                        uint64_t skip = chans[--n_chans], out = c * channel_mult[level];
                        unsigned idx = 1;

                        snprintf(p, sizeof(p), "%soutput_blocks.%zu.0.", root, block);
                        unet_resblock(g, p, ch + skip, out, emb);
                        ch = out;
                        if (ds <= 4) {
                                snprintf(p, sizeof(p), "%soutput_blocks.%zu.1.", root, block);
                                unet_transformer(g, p, ch, ctx);
                                idx = 2;
                        }
                        if (level > 0 && r == RES_BLOCKS) {
                                snprintf(p, sizeof(p), "%soutput_blocks.%zu.%u.", root, block, idx);
                                conv(g, p, "conv", ch, ch, 3);
                                ds /= 2;
                        }
                }
        norm(g, root, "out.0", c);
        conv(g, root, "out.2", 4, c, 3);
}

static void vae_resnet(struct gen *g, const char *p, uint64_t in, uint64_t out) {
        norm(g, p, "norm1", in);
        conv(g, p, "conv1", out, in, 3);
        norm(g, p, "norm2", out);
        conv(g, p, "conv2", out, out, 3);
        if (in != out)
                conv(g, p, "nin_shortcut", out, in, 1);
}

static void vae_attention(struct gen *g, const char *p, uint64_t c) {
        norm(g, p, "norm", c);
        conv(g, p, "q", c, c, 1);
        conv(g, p, "k", c, c, 1);
        conv(g, p, "v", c, c, 1);
        conv(g, p, "proj_out", c, c, 1);
}

static void vae(struct gen *g) {
        const char *root = "first_stage_model.";
        uint64_t c = g->spec->vae_channels, z = 4, in, out = c;
        char p[256];

        /* Encoder. */
        snprintf(p, sizeof(p), "%sencoder.", root);
        conv(g, p, "conv_in", c, 3, 3);
        for (unsigned i = 0; i < LEVELS; i++) {
                in = c * (i == 0 ? 1 : channel_mult[i - 1]);
                out = c * channel_mult[i];
                for (unsigned j = 0; j < RES_BLOCKS; j++) {
                        snprintf(p, sizeof(p), "%sencoder.down.%u.block.%u.", root, i, j);
                        vae_resnet(g, p, j == 0 ? in : out, out);
                }
                if (i + 1 < LEVELS) {
                        snprintf(p, sizeof(p), "%sencoder.down.%u.downsample.", root, i);
                        conv(g, p, "conv", out, out, 3);
                }
        }
        snprintf(p, sizeof(p), "%sencoder.mid.block_1.", root);
        vae_resnet(g, p, out, out);
        snprintf(p, sizeof(p), "%sencoder.mid.attn_1.", root);
        vae_attention(g, p, out);
        snprintf(p, sizeof(p), "%sencoder.mid.block_2.", root);
        vae_resnet(g, p, out, out);
        snprintf(p, sizeof(p), "%sencoder.", root);
        norm(g, p, "norm_out", out);
        conv(g, p, "conv_out", 2 * z, out, 3);
        conv(g, root, "quant_conv", 2 * z, 2 * z, 1);
        conv(g, root, "post_quant_conv", z, z, 1);

        /* Decoder. */
        in = c * channel_mult[LEVELS - 1];
        snprintf(p, sizeof(p), "%sdecoder.", root);
        conv(g, p, "conv_in", in, z, 3);
        snprintf(p, sizeof(p), "%sdecoder.mid.block_1.", root);
        vae_resnet(g, p, in, in);
        snprintf(p, sizeof(p), "%sdecoder.mid.attn_1.", root);
        vae_attention(g, p, in);
        snprintf(p, sizeof(p), "%sdecoder.mid.block_2.", root);
        vae_resnet(g, p, in, in);
        for (int i = LEVELS - 1; i >= 0; i--) {
                out = c * channel_mult[i];
                for (unsigned j = 0; j <= RES_BLOCKS; j++) {
                        snprintf(p, sizeof(p), "%sdecoder.up.%d.block.%u.", root, i, j);
                        vae_resnet(g, p, in, out);
                        in = out;
                }
                if (i > 0) {
                        snprintf(p, sizeof(p), "%sdecoder.up.%d.upsample.", root, i);
                        conv(g, p, "conv", out, out, 3);
                }
        }
        snprintf(p, sizeof(p), "%sdecoder.", root);
        norm(g, p, "norm_out", c);
        conv(g, p, "conv_out", 3, c, 3);
}

static void clip(struct gen *g) {
        const char *root = "cond_stage_model.transformer.text_model.";
        uint64_t d = g->spec->context_dim, ff = g->spec->text_ff;
        char p[256];

        tensor(g, root, "embeddings.token_embedding.weight", SHAPE(g->spec->vocab, d), 0.02, 0);
        tensor(g, root, "embeddings.position_embedding.weight", SHAPE(g->spec->positions, d), 0.01, 0);
        /* The checkpoints of 2022 carry the position ids as an I64 buffer. */
        if (g->error >= 0) {
                int64_t *ids = calloc(g->spec->positions, sizeof(int64_t));
                char name[256];

                for (uint32_t i = 0; ids && i < g->spec->positions; i++)
                        ids[i] = i;
                snprintf(name, sizeof(name), "%sembeddings.position_ids", root);
                g->error = ids ? safetensors_writer_add(g->w, name, ST_I64, 2,
                                                        (const uint64_t[]) { 1, g->spec->positions }, ids)
                               : -ENOMEM;
                g->n++;
                free(ids);
        }
        for (unsigned l = 0; l < g->spec->text_layers; l++) {
                snprintf(p, sizeof(p), "%sencoder.layers.%u.", root, l);
                linear(g, p, "self_attn.k_proj", d, d, 1);
                linear(g, p, "self_attn.v_proj", d, d, 1);
                linear(g, p, "self_attn.q_proj", d, d, 1);
                linear(g, p, "self_attn.out_proj", d, d, 1);
                norm(g, p, "layer_norm1", d);
                linear(g, p, "mlp.fc1", ff, d, 1);
                linear(g, p, "mlp.fc2", d, ff, 1);
                norm(g, p, "layer_norm2", d);
        }
        norm(g, root, "final_layer_norm", d);
}

struct sd_tiny_spec sd_tiny_spec_default(void) {
        return (struct sd_tiny_spec) {
                .model_channels = 32,
                .heads = 8,
                .context_dim = 64,
                .vae_channels = 32,
                .text_layers = 2,
                .text_heads = 4,
                .text_ff = 256,
                .vocab = 1000,
                .positions = 77,
                .dtype = ST_F16,
                .seed = 1,
        };
}

struct sd_tiny_spec sd_tiny_spec_full(void) {
        struct sd_tiny_spec s = sd_tiny_spec_default();

        s.model_channels = 320;
        s.context_dim = 768;
        s.vae_channels = 128;
        s.text_layers = 12;
        s.text_heads = 12;
        s.text_ff = 3072;
        s.vocab = 49408;
        return s;
}

int sd_tiny_write(const struct sd_tiny_spec *spec, const char *path, size_t *n_tensors, char *err, size_t err_size) {
        struct gen g = { .spec = spec, .rng = spec->seed };
        int r;

        if (spec->model_channels == 0 || spec->model_channels % 32 != 0 || spec->vae_channels == 0 ||
            spec->vae_channels % 32 != 0 || spec->heads == 0 || spec->model_channels % spec->heads != 0 ||
            spec->context_dim == 0 || spec->text_heads == 0 || spec->context_dim % spec->text_heads != 0 ||
            (spec->dtype != ST_F32 && spec->dtype != ST_F16 && spec->dtype != ST_BF16))
                return nn_error(err, err_size, -EINVAL, "sd-tiny: widths must be multiples of 32 (GroupNorm) and "
                                "of the head counts, the dtype F32, F16 or BF16");
        r = safetensors_writer_new(&g.w);
        if (r < 0)
                return nn_error(err, err_size, r, "sd-tiny: out of memory");
        safetensors_writer_metadata(g.w, "format", "pt");
        safetensors_writer_metadata(g.w, "swarmharness", "sd-tiny: random weights, SD 1.x layout");
        unet(&g);
        vae(&g);
        clip(&g);
        free(g.buf);
        if (g.error < 0) {
                safetensors_writer_free(g.w);
                return nn_error(err, err_size, g.error, "sd-tiny: cannot build the checkpoint: %s",
                                strerror(-g.error));
        }
        r = safetensors_writer_write(g.w, path, err, err_size);
        safetensors_writer_free(g.w);
        if (r >= 0 && n_tensors)
                *n_tensors = g.n;
        return r;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "nn-quant.h"
#include "tiny-model.h"

/* The text the vocabulary is learnt from. */
static const char corpus[] =
        "Once upon a time there was a little girl who lived in a village near the forest. "
        "Whenever she went out, the little girl wore a red riding cloak, so everyone in the village "
        "called her Little Red Riding Hood. One morning, Little Red Riding Hood asked her mother if "
        "she could go to visit her grandmother as it had been awhile since they had seen each other. "
        "The quick brown fox jumps over the lazy dog. Hello world! Hello, world. The world is big and "
        "the sky is blue. What is the capital of France? The capital of France is Paris. "
        "1234567890 12 345 6789. It was the best of times, it was the worst of times, it was the age "
        "of wisdom, it was the age of foolishness. You are a helpful assistant. How are you today? "
        "I am fine, thank you. Tell me a story about a dragon and a knight who became friends.";

#define TINY_MERGES_MAX 400

struct vocab {
        char **tokens;
        float *scores;
        int32_t *types;
        size_t n;
        char **merges;
        size_t n_merges;
};

static int vocab_add(struct vocab *v, const char *piece, float score, int32_t type) {
        v->tokens[v->n] = strdup(piece);
        if (!v->tokens[v->n])
                return -ENOMEM;
        v->scores[v->n] = score;
        v->types[v->n] = type;
        v->n++;
        return 0;
}

static void vocab_free(struct vocab *v) {
        for (size_t i = 0; i < v->n; i++)
                free(v->tokens[i]);
        for (size_t i = 0; i < v->n_merges; i++)
                free(v->merges[i]);
        free(v->tokens);
        free(v->scores);
        free(v->types);
        free(v->merges);
}

/* GPT-2's map of bytes to printable code points, as UTF-8. */
static void byte_to_unicode(uint8_t b, char out[5]) {
        unsigned cp;

        if ((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae))
                cp = b;
        else {
                /* The bytes that are not printable come after 255, in order. */
                unsigned n = 0;
                for (unsigned x = 0; x < b; x++)
                        if (!((x >= '!' && x <= '~') || (x >= 0xa1 && x <= 0xac) || x >= 0xae))
                                n++;
                cp = 256 + n;
        }
        if (cp < 0x80) {
                out[0] = (char) cp;
                out[1] = 0;
        } else {
                out[0] = (char) (0xc0 | (cp >> 6));
                out[1] = (char) (0x80 | (cp & 0x3f));
                out[2] = 0;
        }
}

/* Symbols of the corpus as strings: SPM works on characters with spaces as
 * U+2581; byte-level BPE on words (a leading space kept) of mapped bytes,
 * with a NULL between words that no merge may cross. */
struct symbols {
        char **s;
        size_t n;
};

static int corpus_symbols(enum tiny_tokenizer kind, struct symbols *sy) {
        size_t len = strlen(corpus);

        sy->s = calloc(2 * len + 2, sizeof(char *));
        if (!sy->s)
                return -ENOMEM;
        sy->n = 0;
        for (size_t i = 0; i < len; i++) {
                char buf[5];

                if (kind == TINY_TOKENIZER_SPM) {
                        if (corpus[i] == ' ')
                                strcpy(buf, "\xe2\x96\x81");
                        else {
                                buf[0] = corpus[i];
                                buf[1] = 0;
                        }
                } else {
                        /* A word starts at a space or at a change between
                         * letters and other characters. */
                        bool alpha = (corpus[i] >= 'a' && corpus[i] <= 'z') || (corpus[i] >= 'A' && corpus[i] <= 'Z');
                        bool prev_alpha = i > 0 && ((corpus[i - 1] >= 'a' && corpus[i - 1] <= 'z') ||
                                                    (corpus[i - 1] >= 'A' && corpus[i - 1] <= 'Z'));
                        if (i > 0 && (corpus[i] == ' ' || alpha != prev_alpha) &&
                            !(prev_alpha == false && corpus[i - 1] == ' ' && alpha))
                                sy->s[sy->n++] = NULL;
                        byte_to_unicode((uint8_t) corpus[i], buf);
                }
                sy->s[sy->n] = strdup(buf);
                if (!sy->s[sy->n])
                        return -ENOMEM;
                sy->n++;
        }
        return 0;
}

static void symbols_free(struct symbols *sy) {
        for (size_t i = 0; i < sy->n; i++)
                free(sy->s[i]);
        free(sy->s);
}

static bool vocab_has(const struct vocab *v, const char *piece) {
        for (size_t i = 0; i < v->n; i++)
                if (strcmp(v->tokens[i], piece) == 0)
                        return true;
        return false;
}

static int cmp_pair(const void *a, const void *b, void *userdata) {
        char **s = userdata;
        size_t i = *(const size_t *) a, j = *(const size_t *) b;
        int c = strcmp(s[i], s[j]);

        return c != 0 ? c : strcmp(s[i + 1], s[j + 1]);
}

/* Learns merges: the most frequent adjacent pair, again and again. */
static int learn_merges(enum tiny_tokenizer kind, struct vocab *v, size_t max_tokens) {
        struct symbols sy = { 0 };
        int r;

        r = corpus_symbols(kind, &sy);
        if (r < 0) {
                symbols_free(&sy);
                return r;
        }
        while (v->n < max_tokens && v->n_merges < TINY_MERGES_MAX) {
                size_t best_i = SIZE_MAX, best_count = 1, n_pairs = 0;
                size_t *pairs = malloc(sy.n * sizeof(size_t));

                if (!pairs) {
                        symbols_free(&sy);
                        return -ENOMEM;
                }
                /* Sort the adjacent pairs so that equal ones are neighbours;
                 * the longest run is the most frequent (ties: the first in
                 * sort order, so the vocabulary is the same every time). */
                for (size_t i = 0; i + 1 < sy.n; i++)
                        if (sy.s[i] && sy.s[i + 1])
                                pairs[n_pairs++] = i;
                qsort_r(pairs, n_pairs, sizeof(size_t), cmp_pair, sy.s);
                for (size_t i = 0, j; i < n_pairs; i = j) {
                        for (j = i + 1; j < n_pairs && cmp_pair(&pairs[i], &pairs[j], sy.s) == 0; j++)
                                ;
                        if (j - i > best_count) {
                                best_count = j - i;
                                best_i = pairs[i];
                        }
                }
                free(pairs);
                if (best_i == SIZE_MAX)
                        break;

                char *left = strdup(sy.s[best_i]), *right = strdup(sy.s[best_i + 1]), *merged, *merge;
                if (!left || !right || asprintf(&merged, "%s%s", left, right) < 0) {
                        free(left);
                        free(right);
                        symbols_free(&sy);
                        return -ENOMEM;
                }
                if (asprintf(&merge, "%s %s", left, right) < 0) {
                        free(left);
                        free(right);
                        free(merged);
                        symbols_free(&sy);
                        return -ENOMEM;
                }
                v->merges[v->n_merges++] = merge;
                if (!vocab_has(v, merged))
                        vocab_add(v, merged, -(float) v->n_merges, 1);
                /* Apply the merge through the corpus, left to right. */
                size_t w = 0;
                for (size_t i = 0; i < sy.n; i++) {
                        if (i + 1 < sy.n && sy.s[i] && sy.s[i + 1] && strcmp(sy.s[i], left) == 0 &&
                            strcmp(sy.s[i + 1], right) == 0) {
                                free(sy.s[i]);
                                free(sy.s[i + 1]);
                                sy.s[w++] = strdup(merged);
                                i++;
                        } else
                                sy.s[w++] = sy.s[i];
                }
                sy.n = w;
                free(left);
                free(right);
                free(merged);
        }
        symbols_free(&sy);
        return 0;
}

static int build_vocab(const struct tiny_model_spec *spec, struct vocab *v, int32_t *bos, int32_t *eos,
                       int32_t *eot) {
        size_t n = spec->n_vocab;
        char piece[32];
        int r;

        v->tokens = calloc(n, sizeof(char *));
        v->scores = calloc(n, sizeof(float));
        v->types = calloc(n, sizeof(int32_t));
        v->merges = calloc(TINY_MERGES_MAX, sizeof(char *));
        if (!v->tokens || !v->scores || !v->types || !v->merges)
                return -ENOMEM;

        if (spec->tokenizer == TINY_TOKENIZER_SPM) {
                vocab_add(v, "<unk>", 0, 2);
                vocab_add(v, "<s>", 0, 3);
                vocab_add(v, "</s>", 0, 3);
                *bos = 1;
                *eos = 2;
                *eot = -1;
                for (unsigned b = 0; b < 256; b++) {
                        snprintf(piece, sizeof(piece), "<0x%02X>", b);
                        vocab_add(v, piece, 0, 6);
                }
                /* Every character of the corpus is a piece of its own. */
                vocab_add(v, "\xe2\x96\x81", -1e4f, 1);
                for (const char *c = corpus; *c; c++) {
                        piece[0] = *c;
                        piece[1] = 0;
                        if (*c != ' ' && !vocab_has(v, piece))
                                vocab_add(v, piece, -1e4f, 1);
                }
        } else {
                for (unsigned b = 0; b < 256; b++) {
                        byte_to_unicode((uint8_t) b, piece);
                        vocab_add(v, piece, 0, 1);
                }
        }
        r = learn_merges(spec->tokenizer, v, n - 8);
        if (r < 0)
                return r;
        if (spec->tokenizer == TINY_TOKENIZER_BPE) {
                *bos = (int32_t) v->n;
                vocab_add(v, "<|begin_of_text|>", 0, 3);
                *eos = (int32_t) v->n;
                vocab_add(v, "<|end_of_text|>", 0, 3);
                vocab_add(v, "<|start_header_id|>", 0, 3);
                vocab_add(v, "<|end_header_id|>", 0, 3);
                *eot = (int32_t) v->n;
                vocab_add(v, "<|eot_id|>", 0, 3);
        }
        /* The rest: made-up words, a space and three capitalised syllables
         * ("▁Kabotu"), as a real vocabulary's long tail of whole words; no
         * corpus word has that shape, so none is a duplicate (tokenizer_new
         * would refuse one). */
        for (size_t i = 0; v->n < n; i++) {
                static const char consonants[] = "bdfgklmnprstvz", vowels[] = "aeiou";
                size_t nc = sizeof(consonants) - 1, nv = sizeof(vowels) - 1, per = nc * nv, x = i;
                char word[8];

                for (int k = 0; k < 3; k++) {
                        word[2 * k] = consonants[x % per / nv];
                        word[2 * k + 1] = vowels[x % per % nv];
                        x /= per;
                }
                word[0] = (char) (word[0] - 'a' + 'A');
                word[6] = '\0';
                snprintf(piece, sizeof(piece), "%s%s",
                         spec->tokenizer == TINY_TOKENIZER_SPM ? "\xe2\x96\x81" : "\xc4\xa0", word);
                vocab_add(v, piece, -1e5f, 1);
        }
        return 0;
}

struct tiny_model_spec tiny_model_spec_default(void) {
        return (struct tiny_model_spec) {
                .arch = "llama",
                .tokenizer = TINY_TOKENIZER_SPM,
                .weight_type = NN_TYPE_F32,
                .embd_type = NN_TYPE_F32,
                .n_vocab = 512,
                .n_embd = 64,
                .n_layer = 2,
                .n_head = 4,
                .n_head_kv = 2,
                .n_ff = 160,
                .n_ctx = 256,
                .gguf_version = 3,
                .seed = 1,
                .name = "tiny-random-llama",
        };
}

static uint64_t rng_next(uint64_t *s) {
        uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static float rng_uniform(uint64_t *s) {
        return (float) ((double) (rng_next(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

/* A random cols × rows matrix in type: uniform with variance scale²/3. */
static int add_matrix(struct gguf_writer *w, const char *name, enum nn_type type, uint64_t cols, uint64_t rows,
                      float scale, float offset, uint64_t *rng) {
        size_t row_bytes = nn_row_bytes(type, cols);
        uint8_t *data;
        float *row;
        uint64_t ne[2] = { cols, rows };
        int r;

        if (row_bytes == 0)
                return -EINVAL;
        data = malloc(row_bytes * rows);
        row = malloc(cols * sizeof(float));
        if (!data || !row) {
                free(data);
                free(row);
                return -ENOMEM;
        }
        for (uint64_t i = 0; i < rows; i++) {
                for (uint64_t j = 0; j < cols; j++)
                        row[j] = offset + scale * rng_uniform(rng);
                nn_quantize_row(type, row, data + i * row_bytes, cols);
        }
        r = gguf_writer_add_tensor(w, name, type, rows == 1 ? 1 : 2, ne, data);
        free(data);
        free(row);
        return r;
}

int tiny_model_write(const struct tiny_model_spec *spec, const char *path, char *err, size_t err_size) {
        struct gguf_writer *w;
        struct vocab v = { 0 };
        int32_t bos = -1, eos = -1, eot = -1;
        uint64_t rng = spec->seed;
        const char *arch = spec->arch;
        uint32_t hd = spec->n_embd / spec->n_head;
        bool qwen = strcmp(arch, "qwen2") == 0;
        char key[128], name[96];
        int r;

        if (spec->n_vocab < 512 || spec->n_head == 0 || spec->n_embd % spec->n_head != 0 || spec->n_head_kv == 0 ||
            spec->n_head % spec->n_head_kv != 0 || hd % 2 != 0) {
                snprintf(err, err_size, "tiny model: inconsistent shape (vocab ≥ 512, heads divide the embedding, "
                         "KV heads divide heads, even head size)");
                return -EINVAL;
        }
        w = gguf_writer_new(spec->gguf_version);
        if (!w)
                return -ENOMEM;
        r = build_vocab(spec, &v, &bos, &eos, &eot);
        if (r < 0)
                goto out;

#define KEY(suffix) (snprintf(key, sizeof(key), "%s.%s", arch, suffix), key)
        if ((r = gguf_writer_set_string(w, "general.architecture", arch)) < 0 ||
            (r = gguf_writer_set_string(w, "general.name", spec->name)) < 0 ||
            (r = gguf_writer_set_u32(w, "general.alignment", 32)) < 0 ||
            (r = gguf_writer_set_u32(w, KEY("context_length"), spec->n_ctx)) < 0 ||
            (r = gguf_writer_set_u32(w, KEY("embedding_length"), spec->n_embd)) < 0 ||
            (r = gguf_writer_set_u32(w, KEY("block_count"), spec->n_layer)) < 0 ||
            (r = gguf_writer_set_u32(w, KEY("feed_forward_length"), spec->n_ff)) < 0 ||
            (r = gguf_writer_set_u32(w, KEY("attention.head_count"), spec->n_head)) < 0 ||
            (r = gguf_writer_set_u32(w, KEY("attention.head_count_kv"), spec->n_head_kv)) < 0 ||
            (r = gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f)) < 0 ||
            (r = gguf_writer_set_f32(w, KEY("rope.freq_base"), spec->rope_freqs ? 500000.0f : 10000.0f)) < 0 ||
            (r = gguf_writer_set_u32(w, KEY("rope.dimension_count"), hd)) < 0)
                goto out;
#undef KEY
        if (spec->tokenizer == TINY_TOKENIZER_SPM) {
                if ((r = gguf_writer_set_string(w, "tokenizer.ggml.model", "llama")) < 0 ||
                    (r = gguf_writer_set_array(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v.scores, v.n)) < 0 ||
                    (r = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0)) < 0 ||
                    (r = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true)) < 0 ||
                    (r = gguf_writer_set_string(w, "tokenizer.chat_template",
                                                "{% if messages[0]['role'] == 'system' %}{% set system_message = "
                                                "'<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}"
                                                "{% endif %}{{ bos_token + '[INST] ' + content + ' [/INST]' }}")) < 0)
                        goto out;
        } else {
                if ((r = gguf_writer_set_string(w, "tokenizer.ggml.model", "gpt2")) < 0 ||
                    (r = gguf_writer_set_string(w, "tokenizer.ggml.pre", "llama-bpe")) < 0 ||
                    (r = gguf_writer_set_string_array(w, "tokenizer.ggml.merges", (const char *const *) v.merges,
                                                      v.n_merges)) < 0 ||
                    (r = gguf_writer_set_u32(w, "tokenizer.ggml.eot_token_id", (uint32_t) eot)) < 0 ||
                    (r = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true)) < 0 ||
                    (r = gguf_writer_set_string(w, "tokenizer.chat_template",
                                                "{% for message in messages %}{{ '<|start_header_id|>' + "
                                                "message['role'] + '<|end_header_id|>\\n\\n' + message['content'] "
                                                "| trim + '<|eot_id|>' }}{% endfor %}")) < 0)
                        goto out;
        }
        if ((r = gguf_writer_set_string_array(w, "tokenizer.ggml.tokens", (const char *const *) v.tokens, v.n)) < 0 ||
            (r = gguf_writer_set_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v.types, v.n)) < 0 ||
            (r = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t) bos)) < 0 ||
            (r = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t) eos)) < 0)
                goto out;

        float mscale = sqrtf(3.0f / (float) spec->n_embd), fscale = sqrtf(3.0f / (float) spec->n_ff);
        uint32_t q_dim = spec->n_head * hd, kv_dim = spec->n_head_kv * hd;

        if ((r = add_matrix(w, "token_embd.weight", spec->embd_type, spec->n_embd, spec->n_vocab, 1.0f, 0, &rng)) < 0 ||
            (r = add_matrix(w, "output_norm.weight", NN_TYPE_F32, spec->n_embd, 1, 0.1f, 1.0f, &rng)) < 0)
                goto out;
        if (!spec->tied_output &&
            (r = add_matrix(w, "output.weight", spec->weight_type, spec->n_embd, spec->n_vocab, mscale, 0, &rng)) < 0)
                goto out;
        if (spec->rope_freqs) {
                float *f = malloc(hd / 2 * sizeof(float));
                uint64_t ne[1] = { hd / 2 };
                if (!f) {
                        r = -ENOMEM;
                        goto out;
                }
                for (uint32_t i = 0; i < hd / 2; i++)
                        f[i] = i < hd / 8 ? 1.0f : i < hd / 4 ? 2.0f + (float) i / (float) hd : 8.0f;
                r = gguf_writer_add_tensor(w, "rope_freqs.weight", NN_TYPE_F32, 1, ne, f);
                free(f);
                if (r < 0)
                        goto out;
        }
        for (uint32_t l = 0; l < spec->n_layer; l++) {
#define BLK(s) (snprintf(name, sizeof(name), "blk.%" PRIu32 ".%s", l, s), name)
                if ((r = add_matrix(w, BLK("attn_norm.weight"), NN_TYPE_F32, spec->n_embd, 1, 0.1f, 1.0f, &rng)) < 0 ||
                    (r = add_matrix(w, BLK("attn_q.weight"), spec->weight_type, spec->n_embd, q_dim, mscale, 0, &rng)) < 0 ||
                    (r = add_matrix(w, BLK("attn_k.weight"), spec->weight_type, spec->n_embd, kv_dim, mscale, 0, &rng)) < 0 ||
                    (r = add_matrix(w, BLK("attn_v.weight"), spec->weight_type, spec->n_embd, kv_dim, mscale, 0, &rng)) < 0 ||
                    (r = add_matrix(w, BLK("attn_output.weight"), spec->weight_type, q_dim, spec->n_embd, mscale, 0, &rng)) < 0 ||
                    (r = add_matrix(w, BLK("ffn_norm.weight"), NN_TYPE_F32, spec->n_embd, 1, 0.1f, 1.0f, &rng)) < 0 ||
                    (r = add_matrix(w, BLK("ffn_gate.weight"), spec->weight_type, spec->n_embd, spec->n_ff, mscale, 0, &rng)) < 0 ||
                    (r = add_matrix(w, BLK("ffn_up.weight"), spec->weight_type, spec->n_embd, spec->n_ff, mscale, 0, &rng)) < 0 ||
                    (r = add_matrix(w, BLK("ffn_down.weight"), spec->weight_type, spec->n_ff, spec->n_embd, fscale, 0, &rng)) < 0)
                        goto out;
                if (qwen &&
                    ((r = add_matrix(w, BLK("attn_q.bias"), NN_TYPE_F32, q_dim, 1, 0.1f, 0, &rng)) < 0 ||
                     (r = add_matrix(w, BLK("attn_k.bias"), NN_TYPE_F32, kv_dim, 1, 0.1f, 0, &rng)) < 0 ||
                     (r = add_matrix(w, BLK("attn_v.bias"), NN_TYPE_F32, kv_dim, 1, 0.1f, 0, &rng)) < 0))
                        goto out;
#undef BLK
        }
        r = gguf_writer_write(w, path);
out:
        if (r < 0 && err && err_size > 0)
                snprintf(err, err_size, "tiny model %s: %s", path, strerror(-r));
        vocab_free(&v);
        gguf_writer_free(w);
        return r;
}

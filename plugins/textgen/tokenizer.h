/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The tokenizers of the GGUF files people download, from the file's own
 * metadata (tokenizer.ggml.*):
 *   "llama": SentencePiece-style: text with spaces as U+2581, pieces merged
 *            by score (highest first), bytes with no piece as <0xNN> tokens.
 *   "gpt2":  byte-level BPE: text split by the pre-tokenizer (Llama 3's and
 *            Qwen 2's regex, or GPT-2's), bytes mapped to printable code
 *            points, pairs merged by rank from tokenizer.ggml.merges.
 * Special (control) tokens such as "<|eot_id|>" are matched in the text only
 * when the caller asks (chat templates need them; user text must not be able
 * to forge them). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gguf;

enum tokenizer_kind {
        TOKENIZER_SPM,          /* tokenizer.ggml.model = "llama" */
        TOKENIZER_BPE,          /* tokenizer.ggml.model = "gpt2" */
};

enum tokenizer_pre {
        TOKENIZER_PRE_DEFAULT,  /* GPT-2's split */
        TOKENIZER_PRE_LLAMA3,   /* tokenizer.ggml.pre = "llama-bpe", "llama3" */
        TOKENIZER_PRE_QWEN2,    /* tokenizer.ggml.pre = "qwen2" */
};

/* Token types as GGUF stores them (tokenizer.ggml.token_type). */
enum tokenizer_token_type {
        TOKEN_TYPE_NORMAL = 1,
        TOKEN_TYPE_UNKNOWN = 2,
        TOKEN_TYPE_CONTROL = 3,
        TOKEN_TYPE_USER_DEFINED = 4,
        TOKEN_TYPE_UNUSED = 5,
        TOKEN_TYPE_BYTE = 6,
};

/* Everything a tokenizer is made from; what tokenizer_load() reads from a
 * GGUF file.  Strings are NUL-terminated and copied by tokenizer_new(). */
struct tokenizer_spec {
        enum tokenizer_kind kind;
        enum tokenizer_pre pre;
        size_t n_vocab;
        const char *const *tokens;
        const float *scores;            /* SPM: n_vocab scores; may be NULL for BPE */
        const int32_t *types;           /* n_vocab enum tokenizer_token_type; NULL: all normal */
        size_t n_merges;                /* BPE: "a b" pairs, rank = index */
        const char *const *merges;
        int32_t bos, eos, eot, unk, pad;        /* -1 when the model has none */
        bool add_bos;                   /* tokenizer.ggml.add_bos_token */
        bool add_space_prefix;          /* SPM: tokenizer.ggml.add_space_prefix (default true) */
};

struct tokenizer;

/* -EINVAL (with a message in err) for an inconsistent spec: a special id out
 * of range, a merge naming a piece not in the vocabulary, a duplicate piece. */
int tokenizer_new(const struct tokenizer_spec *spec, struct tokenizer **ret, char *err, size_t err_size);
/* From a GGUF file's tokenizer.ggml.* keys; -EOPNOTSUPP for a tokenizer
 * model or pre-tokenizer this code does not implement (named in err). */
int tokenizer_load(const struct gguf *g, struct tokenizer **ret, char *err, size_t err_size);
void tokenizer_free(struct tokenizer *t);

enum tokenizer_kind tokenizer_kind(const struct tokenizer *t);
size_t tokenizer_n_vocab(const struct tokenizer *t);
int32_t tokenizer_bos(const struct tokenizer *t);
int32_t tokenizer_eos(const struct tokenizer *t);
int32_t tokenizer_eot(const struct tokenizer *t);
bool tokenizer_add_bos(const struct tokenizer *t);
/* End of generation: EOS, EOT, or another control token the vocabulary
 * marks as ending a turn ("<|eot_id|>", "<|im_end|>", "<|end|>"). */
bool tokenizer_is_eog(const struct tokenizer *t, int32_t token);
/* The piece's text (for the vocabulary dumps and templates); NULL out of
 * range. */
const char *tokenizer_piece(const struct tokenizer *t, int32_t token);
/* The id of a piece, or -1. */
int32_t tokenizer_find(const struct tokenizer *t, const char *piece);

/* Encodes len bytes of text (need not be NUL-terminated; invalid UTF-8 is
 * encoded byte-wise, never refused) into a malloc'd array.  add_bos puts the
 * BOS token first (when the model has one).  parse_special recognises the
 * text of control and user-defined tokens as those tokens.  0 or -ENOMEM. */
int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, bool add_bos,
                     bool parse_special, int32_t **ret, size_t *n_ret);

/* Appends the bytes that token stands for to buf (size bytes; returns the
 * number of bytes the piece has, which may exceed size: then nothing is
 * written): U+2581 becomes a space, <0xNN> the byte, byte-level BPE's code
 * points their bytes; control tokens give nothing unless render_special.
 * The bytes of consecutive tokens concatenate to the text; one token may end
 * in the middle of a UTF-8 sequence.  -EINVAL for an id out of range. */
int tokenizer_decode_token(const struct tokenizer *t, int32_t token, bool render_special, char *buf, size_t size);

/* Decodes a whole sequence into a malloc'd NUL-terminated string; for SPM a
 * leading space that add_space_prefix put there is dropped when
 * strip_leading_space. */
int tokenizer_decode(const struct tokenizer *t, const int32_t *tokens, size_t n, bool strip_leading_space,
                     char **ret);

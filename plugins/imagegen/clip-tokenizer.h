/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* CLIP's byte-level BPE tokenizer, as openai/CLIP's simple_tokenizer.py
 * and Hugging Face's CLIPTokenizer run it for Stable Diffusion's text
 * encoder, from the files Hugging Face ships (openai/clip-vit-large-patch14:
 * vocab.json, {piece: id} for 49,408 pieces, and merges.txt, a "#version"
 * line then 48,894 "left right" pairs in rank order):
 *
 *   1. cleanup: runs of white space become one space, the ends are
 *      stripped, the text is lower-cased (Python's str.lower());
 *   2. the pre-tokenizer regex splits it into words:
 *      <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 *      (so digits are words of one digit, and the two special tokens
 *      written in the text are those tokens, as in the reference);
 *   3. each word's UTF-8 bytes become GPT-2's printable stand-ins
 *      (bytes_to_unicode), the last one carrying the end-of-word suffix
 *      "</w>", and adjacent pieces are merged by rank: the pair of lowest
 *      rank is merged at every place it occurs, left to right, then the
 *      next, until no pair has a rank.
 *
 * \s, \p{L}, \p{N} and the lower-case mapping come from tables generated
 * from Python's own (tools/gen-clip-unicode.py, clip-unicode.h), not from
 * the C library's locale, so every machine makes the same ids of a prompt:
 * providers that check each other's images must.  What the reference does
 * besides and this code does not: ftfy's repairs (mojibake, curly quotes,
 * HTML entities, NFC normalisation), which the prompts people type rarely
 * need; and Hugging Face's fallback without ftfy (BERT's BasicTokenizer,
 * which also puts each CJK ideograph in a word of its own). */

#include <stddef.h>
#include <stdint.h>

/* The text encoder's sequence length in Stable Diffusion 1.x and 2.x. */
#define CLIP_CONTEXT 77

struct clip_tokenizer;

/* Reads Hugging Face's vocab.json and merges.txt.  -ENOENT (or another
 * errno of open/read), -EBADMSG for a malformed file, -ENOMEM; the message
 * in err names the file and the line, or the entry, that is wrong. */
int clip_tokenizer_load(const char *vocab_path, const char *merges_path, struct clip_tokenizer **ret, char *err,
                        size_t err_size);
/* The same from memory; the names are what messages call the files. */
int clip_tokenizer_parse(const char *vocab, size_t vocab_size, const char *vocab_name, const char *merges,
                         size_t merges_size, const char *merges_name, struct clip_tokenizer **ret, char *err,
                         size_t err_size);
/* Where the tokenizer files of a model are when the user did not say:
 * vocab.json and merges.txt next to the model file, or in the tokenizer/
 * folder beside it (diffusers' layout).  *ret_vocab and *ret_merges are
 * malloc'd paths the caller frees; -ENOENT when neither place has both,
 * -ENOMEM. */
int clip_tokenizer_find(const char *model_path, char **ret_vocab, char **ret_merges);
void clip_tokenizer_free(struct clip_tokenizer *t);

/* How many pieces the vocabulary has (ids 0 … n − 1): at most the text
 * encoder's token embedding rows. */
size_t clip_tokenizer_n_vocab(const struct clip_tokenizer *t);
/* "<|startoftext|>" and "<|endoftext|>" (49406 and 49407 in CLIP's). */
int32_t clip_tokenizer_bos(const struct clip_tokenizer *t);
int32_t clip_tokenizer_eos(const struct clip_tokenizer *t);
/* A piece's text as vocab.json has it (byte stand-ins, "</w>"); NULL for
 * an id out of range. */
const char *clip_tokenizer_piece(const struct clip_tokenizer *t, int32_t id);

/* The ids of text (UTF-8, len bytes), without BOS or EOS, into ids[0 …
 * max): the first max of them when there are more (later words are not
 * tokenized).  Returns how many were written, -EILSEQ when text is not
 * valid UTF-8 (RFC 3629), -ENOMEM. */
int clip_tokenizer_encode(const struct clip_tokenizer *t, const char *text, size_t len, int32_t *ids, size_t max);

/* The text encoder's input for a prompt, as the Stable Diffusion pipelines
 * make it (tokenizer(prompt, padding="max_length", max_length=77,
 * truncation=True)): BOS, the first 75 ids of text, EOS, then pad up to
 * CLIP_CONTEXT ids (SD 1.x pads with EOS; SD 2.x's OpenCLIP with 0).
 * Returns how many ids precede the padding (2 … 77: EOS is at that count
 * minus one), or clip_tokenizer_encode()'s errors. */
int clip_tokenizer_encode_prompt(const struct clip_tokenizer *t, const char *text, size_t len, int32_t pad,
                                 int32_t ids[static CLIP_CONTEXT]);

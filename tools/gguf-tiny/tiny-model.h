/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Tiny Llama-family models with random weights, written as real GGUF files:
 * what the tests and benchmarks run, since no model can be downloaded where
 * they run.  The vocabulary is learnt with BPE from a small built-in English
 * text, so tokenisation is realistic (merges, byte fallback, special
 * tokens); the weights are random, so the text generated is not. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nn-type.h"

enum tiny_tokenizer {
        TINY_TOKENIZER_SPM,     /* "llama", Llama 2 style, <s> </s>, [INST] template */
        TINY_TOKENIZER_BPE,     /* "gpt2" with the llama-bpe pre-tokenizer, Llama 3 template */
};

struct tiny_model_spec {
        const char *arch;               /* "llama" or "qwen2" */
        enum tiny_tokenizer tokenizer;
        enum nn_type weight_type;       /* of the matrices; norms stay f32 */
        enum nn_type embd_type;         /* of token_embd */
        uint32_t n_vocab;               /* ≥ 512 */
        uint32_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
        bool tied_output;               /* no output.weight: the embedding is reused */
        bool rope_freqs;                /* a Llama 3.1 style rope_freqs.weight */
        uint32_t gguf_version;          /* 2 or 3 */
        uint64_t seed;
        const char *name;               /* general.name */
};

/* Sensible defaults for a model of about n_params parameters (at least the
 * smallest valid one). */
struct tiny_model_spec tiny_model_spec_default(void);

/* Writes the model; -errno with a message in err. */
int tiny_model_write(const struct tiny_model_spec *spec, const char *path, char *err, size_t err_size);

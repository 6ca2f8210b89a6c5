/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Llama-family decoder-only transformers from GGUF: Llama 2 and 3.x,
 * TinyLlama, Mistral (general.architecture = "llama") and Qwen 2 ("qwen2":
 * biases on Q, K, V and the neox RoPE layout).  Grouped-query attention,
 * RoPE (linear scaling, and Llama 3.1's per-frequency factors from the
 * rope_freqs tensor), RMSNorm, SwiGLU.  The forward pass below reads top to
 * bottom as the architecture is usually drawn; every op goes through the
 * engine's backend. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nn-backend.h"

struct gguf;

enum llama_arch {
        LLAMA_ARCH_LLAMA,
        LLAMA_ARCH_QWEN2,
};

struct llama_hparams {
        enum llama_arch arch;
        uint32_t n_vocab;
        uint32_t n_ctx_train;           /* the context the model was trained for */
        uint32_t n_embd;
        uint32_t n_layer;
        uint32_t n_ff;
        uint32_t n_head;
        uint32_t n_head_kv;
        uint32_t head_dim;
        float norm_eps;
        struct nn_rope rope;
};

struct llama_model;

/* Reads the hyper-parameters and binds every tensor, checking names, types
 * and shapes against them; a mismatch is refused with -EBADMSG and a message
 * naming the tensor (or -EOPNOTSUPP for another architecture).  The model
 * borrows g and be: both must outlive it. */
int llama_model_load(const struct gguf *g, struct nn_backend *be, struct llama_model **ret, char *err,
                     size_t err_size);
void llama_model_free(struct llama_model *m);

const struct llama_hparams *llama_model_hparams(const struct llama_model *m);
const char *llama_arch_name(enum llama_arch arch);
/* Elements in all weight tensors, and their bytes as stored. */
uint64_t llama_model_n_params(const struct llama_model *m);
uint64_t llama_model_weight_bytes(const struct llama_model *m);
/* Bytes a context of n_ctx positions and batches of up to n_batch tokens
 * needs besides the weights (KV cache and activations). */
uint64_t llama_context_bytes(const struct llama_hparams *hp, size_t n_ctx, size_t n_batch);

/* One sequence being decoded: its KV cache and scratch. */
struct llama_context;

int llama_context_new(struct llama_model *m, size_t n_ctx, size_t n_batch, struct llama_context **ret);
void llama_context_free(struct llama_context *c);

size_t llama_context_n_ctx(const struct llama_context *c);
size_t llama_context_n_batch(const struct llama_context *c);
/* Positions already in the cache. */
size_t llama_context_pos(const struct llama_context *c);
/* Forgets positions ≥ pos (pos ≤ llama_context_pos). */
void llama_context_rewind(struct llama_context *c, size_t pos);

/* Runs n ≤ n_batch tokens at the next positions and returns the logits:
 * of every token ([n][n_vocab]) when all_logits, else of the last one.  The
 * returned array is the context's and valid until the next call.  -ENOSPC
 * when the tokens do not fit the context, -EINVAL for a token id outside
 * the vocabulary, or the backend's device error (-ENODEV, -EIO). */
int llama_eval(struct llama_context *c, const int32_t *tokens, size_t n, bool all_logits, const float **logits);

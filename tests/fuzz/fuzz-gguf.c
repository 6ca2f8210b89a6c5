/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A model file from anywhere: gguf_open() on the bytes (through a memfd, as
 * a file), then everything a worker does with an opened file before the
 * first job: every key, string array and tensor read back, the tokenizer
 * built from the metadata (and a round trip through it), and the Llama
 * hyper-parameters and tensors bound and checked.  Nothing may crash or
 * read outside the mapping; what opens must be self-consistent. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "gguf.h"
#include "llama.h"
#include "tokenizer.h"

static struct nn_backend *backend;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        if (nn_cpu_backend_new(1, &backend) < 0)
                abort();
        return 0;
}

static void walk(const struct gguf *g) {
        volatile uint64_t sink = 0;

        for (size_t i = 0; i < gguf_kv_count(g); i++) {
                const struct gguf_kv *kv = gguf_kv_at(g, i);

                FUZZ_CHECK(kv->key.len > 0);
                sink += (uint8_t) kv->key.data[kv->key.len - 1];
                if (kv->type == GGUF_TYPE_STRING && kv->v.str.len > 0)
                        sink += (uint8_t) kv->v.str.data[kv->v.str.len - 1];
                if (kv->type == GGUF_TYPE_ARRAY && kv->v.arr.type == GGUF_TYPE_STRING) {
                        const struct gguf_string *s = kv->v.arr.data;
                        for (uint64_t j = 0; j < kv->v.arr.n; j++)
                                if (s[j].len > 0)
                                        sink += (uint8_t) s[j].data[s[j].len - 1];
                } else if (kv->type == GGUF_TYPE_ARRAY && kv->v.arr.n > 0)
                        sink += (uint64_t) gguf_array_i64(kv->v.arr.type, kv->v.arr.data, kv->v.arr.n - 1);
        }
        for (size_t i = 0; i < gguf_tensor_count(g); i++) {
                const struct gguf_tensor *t = gguf_tensor_at(g, i);
                char *name = gguf_strdup(t->name);

                FUZZ_CHECK(name);
                FUZZ_CHECK(gguf_find_tensor(g, name) == t);
                free(name);
                FUZZ_CHECK(t->size == nn_row_bytes(t->type, t->ne[0]) * (t->n_elements / t->ne[0]));
                if (t->size > 0)
                        sink += ((const uint8_t *) t->data)[0] + ((const uint8_t *) t->data)[t->size - 1];
        }
        (void) sink;
}

static void tokenize(const struct gguf *g) {
        static const char text[] = "Hello world! Once upon a time\n\n  x 12345 é 日本 🙂 <|eot_id|>";
        struct tokenizer *tok;
        int32_t *ids;
        size_t n;
        char err[256], *back;

        if (tokenizer_load(g, &tok, err, sizeof(err)) < 0)
                return;
        if (tokenizer_encode(tok, text, sizeof(text) - 1, true, true, &ids, &n) == 0) {
                for (size_t i = 0; i < n; i++)
                        FUZZ_CHECK(ids[i] >= 0 && (size_t) ids[i] < tokenizer_n_vocab(tok));
                if (tokenizer_decode(tok, ids, n, true, &back) == 0)
                        free(back);
                free(ids);
        }
        tokenizer_free(tok);
}

static void bind_model(const struct gguf *g) {
        struct llama_model *m;
        char err[256];

        if (llama_model_load(g, backend, &m, err, sizeof(err)) < 0)
                return;
        const struct llama_hparams *hp = llama_model_hparams(m);
        FUZZ_CHECK(hp->n_head % hp->n_head_kv == 0);
        FUZZ_CHECK(hp->rope.rot_dim <= hp->head_dim);
        llama_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char path[64], err[512];
        struct gguf *g;
        int fd;

        fd = memfd_create("fuzz.gguf", MFD_CLOEXEC);
        if (fd < 0)
                abort();
        if (size > 0 && write(fd, data, size) != (ssize_t) size)
                abort();
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        if (gguf_open(path, &g, err, sizeof(err)) == 0) {
                walk(g);
                tokenize(g);
                bind_model(g);
                gguf_close(g);
        } else
                FUZZ_CHECK(strncmp(err, path, strlen(path)) == 0 && !strchr(err, '\n'));
        close(fd);
        return 0;
}

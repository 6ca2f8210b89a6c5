/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* GGUF files (versions 2 and 3), the format llama.cpp and most published
 * quantised models use: a header, typed metadata key/values, tensor infos,
 * then the tensor data at an aligned offset.  The reader maps the file
 * read-only and checks every count, length and offset against the file's
 * size before it is used, so a truncated or hostile file is refused with a
 * message naming the file and what is wrong; nothing points outside the
 * mapping afterwards.  The writer produces the same format (the test-model
 * tool and the tests use it). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nn-type.h"

#define GGUF_DEFAULT_ALIGNMENT 32

enum gguf_value_type {
        GGUF_TYPE_UINT8   = 0,
        GGUF_TYPE_INT8    = 1,
        GGUF_TYPE_UINT16  = 2,
        GGUF_TYPE_INT16   = 3,
        GGUF_TYPE_UINT32  = 4,
        GGUF_TYPE_INT32   = 5,
        GGUF_TYPE_FLOAT32 = 6,
        GGUF_TYPE_BOOL    = 7,
        GGUF_TYPE_STRING  = 8,
        GGUF_TYPE_ARRAY   = 9,
        GGUF_TYPE_UINT64  = 10,
        GGUF_TYPE_INT64   = 11,
        GGUF_TYPE_FLOAT64 = 12,
};

/* A string inside the mapping: not NUL-terminated. */
struct gguf_string {
        const char *data;
        uint64_t len;
};

struct gguf_kv {
        struct gguf_string key;
        enum gguf_value_type type;
        union {
                uint64_t u64;           /* every unsigned integer type, and bool (0/1) */
                int64_t i64;            /* every signed integer type */
                double f64;             /* float32 and float64 */
                struct gguf_string str;
                struct {
                        enum gguf_value_type type;  /* of the elements; never ARRAY */
                        uint64_t n;
                        /* Scalars: n packed little-endian elements, possibly
                         * unaligned (read them with memcpy).  Strings: an
                         * array of n struct gguf_string, owned by the reader. */
                        const void *data;
                } arr;
        } v;
};

#define GGUF_MAX_DIMS 4

struct gguf_tensor {
        struct gguf_string name;
        enum nn_type type;
        uint32_t ndim;
        uint64_t ne[GGUF_MAX_DIMS];     /* ne[0] is the row length (innermost); unused dims are 1 */
        uint64_t n_elements;
        uint64_t size;                  /* bytes */
        uint64_t offset;                /* from the start of the data section */
        const void *data;               /* in the mapping, aligned as the file says */
};

struct gguf;

/* Opens and validates path.  On failure returns a negative errno (-ENOENT,
 * -EBADMSG for a malformed file, -EOPNOTSUPP for an unsupported version or
 * tensor type, -ENOMEM) and writes a one-line message that starts with the
 * path into err (when err is not NULL). */
int gguf_open(const char *path, struct gguf **ret, char *err, size_t err_size);
void gguf_close(struct gguf *g);

uint32_t gguf_version(const struct gguf *g);
const char *gguf_path(const struct gguf *g);
size_t gguf_alignment(const struct gguf *g);

size_t gguf_kv_count(const struct gguf *g);
const struct gguf_kv *gguf_kv_at(const struct gguf *g, size_t i);
const struct gguf_kv *gguf_find_kv(const struct gguf *g, const char *key);

/* Typed getters: 0; -ENOENT when the key is absent; -EMEDIUMTYPE when its
 * value has another type; -ERANGE when an integer does not fit.  The integer
 * getters accept any integer type; gguf_get_f64 accepts float32, float64 and
 * integers. */
int gguf_get_u64(const struct gguf *g, const char *key, uint64_t *ret);
int gguf_get_i64(const struct gguf *g, const char *key, int64_t *ret);
int gguf_get_f64(const struct gguf *g, const char *key, double *ret);
int gguf_get_bool(const struct gguf *g, const char *key, bool *ret);
int gguf_get_string(const struct gguf *g, const char *key, struct gguf_string *ret);
/* An array; for GGUF_TYPE_STRING elements, *data is a struct gguf_string[]. */
int gguf_get_array(const struct gguf *g, const char *key, enum gguf_value_type *elem_type,
                   uint64_t *n, const void **data);
/* Element i of a scalar array as double / int64 (any numeric element type). */
double gguf_array_f64(enum gguf_value_type elem_type, const void *data, uint64_t i);
int64_t gguf_array_i64(enum gguf_value_type elem_type, const void *data, uint64_t i);

/* A NUL-terminated copy of s, or NULL when out of memory. */
char *gguf_strdup(struct gguf_string s);
/* s equals the NUL-terminated string c. */
bool gguf_string_eq(struct gguf_string s, const char *c);

size_t gguf_tensor_count(const struct gguf *g);
const struct gguf_tensor *gguf_tensor_at(const struct gguf *g, size_t i);
const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name);

/* The whole tensor data section. */
const void *gguf_data(const struct gguf *g, uint64_t *size);
/* The whole file as mapped: header, metadata, tensor infos and data (what
 * a model's identity hashes: the same weights with another tokenizer or
 * other hyper-parameters are another model). */
const void *gguf_file_bytes(const struct gguf *g, uint64_t *size);

/* ---- Writing ---------------------------------------------------------- */

struct gguf_writer;

/* version: 2 or 3.  NULL when out of memory. */
struct gguf_writer *gguf_writer_new(uint32_t version);
void gguf_writer_free(struct gguf_writer *w);

/* Each copies key and value; -EEXIST for a key already set, -ENOMEM. */
int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v);
int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v);
int gguf_writer_set_string(struct gguf_writer *w, const char *key, const char *v);
/* elem_type a scalar type; data holds n packed native elements. */
int gguf_writer_set_array(struct gguf_writer *w, const char *key, enum gguf_value_type elem_type,
                          const void *data, uint64_t n);
int gguf_writer_set_string_array(struct gguf_writer *w, const char *key, const char *const *v, uint64_t n);

/* Adds a tensor whose data (nn_row_bytes(type, ne[0]) * ne[1] * … bytes) is
 * copied.  -EINVAL for a bad shape or unsupported type, -EEXIST for a name
 * already added. */
int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum nn_type type,
                           uint32_t ndim, const uint64_t *ne, const void *data);

/* Writes the file (general.alignment is honoured when set, else 32) via a
 * temporary file renamed into place. */
int gguf_writer_write(struct gguf_writer *w, const char *path);

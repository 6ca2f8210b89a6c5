/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* safetensors files, the format Stable Diffusion checkpoints and most
 * Hugging Face models are published in: an 8-byte little-endian header
 * length N, N bytes of JSON ({"name": {"dtype", "shape", "data_offsets"},
 * …, optional "__metadata__": {string: string}}), then the tensor bytes.
 * The reader maps the file read-only, parses the header with json-c, and
 * checks every dtype, shape, offset and length against the file before any
 * of it is used, as the format's own loader does: offsets within the data,
 * sizes that match the shapes, and the data covered exactly, without holes
 * or overlaps (so a duplicated name, which JSON parsers collapse, shows as a
 * hole).  A hostile or truncated file is refused with a message naming the
 * file, the tensor and what is wrong.  Tensor bytes may be unaligned (old
 * writers did not pad the header): read them with safetensors_read_f32().
 * The writer produces what the reference writer does (header padded with
 * spaces to 8 bytes); tools and tests use it. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nn-type.h"

/* The format's own limit on the header. */
#define SAFETENSORS_HEADER_MAX (UINT64_C(100) << 20)
#define SAFETENSORS_DIMS_MAX 8
#define SAFETENSORS_NAME_MAX 1024
#define SAFETENSORS_TENSORS_MAX 200000

enum st_dtype {
        ST_BOOL,
        ST_U8,
        ST_I8,
        ST_F8_E4M3,
        ST_F8_E5M2,
        ST_I16,
        ST_U16,
        ST_F16,
        ST_BF16,
        ST_I32,
        ST_U32,
        ST_F32,
        ST_F64,
        ST_I64,
        ST_U64,
        _ST_DTYPE_MAX,
};

struct st_tensor {
        const char *name;
        enum st_dtype dtype;
        uint32_t ndim;                  /* 0: a scalar */
        uint64_t shape[SAFETENSORS_DIMS_MAX];
        uint64_t n_elements;
        const void *data;               /* in the mapping, maybe unaligned */
        uint64_t size;                  /* bytes */
        uint64_t offset;                /* from the start of the data */
};

struct safetensors;

/* Maps and checks the file.  -errno with the reason in err. */
int safetensors_open(const char *path, struct safetensors **ret, char *err, size_t err_size);
/* The same from memory (borrowed until safetensors_close()); name is what
 * messages call it.  For fuzzing and tests. */
int safetensors_parse(const void *data, size_t size, const char *name, struct safetensors **ret, char *err,
                      size_t err_size);
void safetensors_close(struct safetensors *s);

size_t safetensors_count(const struct safetensors *s);
/* In the order of their data. */
const struct st_tensor *safetensors_tensor(const struct safetensors *s, size_t i);
const struct st_tensor *safetensors_find(const struct safetensors *s, const char *name);
/* A "__metadata__" value, or NULL. */
const char *safetensors_metadata(const struct safetensors *s, const char *key);

const char *st_dtype_name(enum st_dtype d);
size_t st_dtype_size(enum st_dtype d);
/* The engine's type for F32, F16 and BF16; -EOPNOTSUPP for the others. */
int st_dtype_to_nn_type(enum st_dtype d, enum nn_type *ret);

/* Elements [first, first + n) of t as f32 (F32, F16, BF16 tensors);
 * -EOPNOTSUPP for another dtype, -ERANGE past the end. */
int safetensors_read_f32(const struct st_tensor *t, uint64_t first, uint64_t n, float *out);

/* ---- Writing ---- */

struct safetensors_writer;

int safetensors_writer_new(struct safetensors_writer **ret);
void safetensors_writer_free(struct safetensors_writer *w);
int safetensors_writer_metadata(struct safetensors_writer *w, const char *key, const char *value);
/* Copies data (the tensor's bytes, little-endian). */
int safetensors_writer_add(struct safetensors_writer *w, const char *name, enum st_dtype dtype, uint32_t ndim,
                           const uint64_t *shape, const void *data);
/* Tensors in the order they were added.  -errno with the reason in err. */
int safetensors_writer_write(struct safetensors_writer *w, const char *path, char *err, size_t err_size);

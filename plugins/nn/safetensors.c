/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The safetensors reader and writer of safetensors.h. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn-error.h"
#include "safetensors.h"

struct safetensors {
        char *name;                     /* for messages: the path */
        void *map;                      /* our mapping, or NULL (parsed from memory) */
        size_t map_size;
        const uint8_t *data;            /* the tensor bytes */
        uint64_t data_size;
        struct st_tensor *tensors;      /* sorted by offset */
        size_t n_tensors;
        size_t *by_name;                /* indices sorted by name */
        char **meta;                    /* key, value, key, value … */
        size_t n_meta;
};

static const struct {
        const char *name;
        size_t size;
} dtypes[_ST_DTYPE_MAX] = {
        [ST_BOOL] = { "BOOL", 1 },      [ST_U8] = { "U8", 1 },          [ST_I8] = { "I8", 1 },
        [ST_F8_E4M3] = { "F8_E4M3", 1 }, [ST_F8_E5M2] = { "F8_E5M2", 1 }, [ST_I16] = { "I16", 2 },
        [ST_U16] = { "U16", 2 },        [ST_F16] = { "F16", 2 },        [ST_BF16] = { "BF16", 2 },
        [ST_I32] = { "I32", 4 },        [ST_U32] = { "U32", 4 },        [ST_F32] = { "F32", 4 },
        [ST_F64] = { "F64", 8 },        [ST_I64] = { "I64", 8 },        [ST_U64] = { "U64", 8 },
};

const char *st_dtype_name(enum st_dtype d) {
        return d < _ST_DTYPE_MAX ? dtypes[d].name : NULL;
}

size_t st_dtype_size(enum st_dtype d) {
        return d < _ST_DTYPE_MAX ? dtypes[d].size : 0;
}

int st_dtype_to_nn_type(enum st_dtype d, enum nn_type *ret) {
        switch (d) {
        case ST_F32:
                *ret = NN_TYPE_F32;
                return 0;
        case ST_F16:
                *ret = NN_TYPE_F16;
                return 0;
        case ST_BF16:
                *ret = NN_TYPE_BF16;
                return 0;
        default:
                return -EOPNOTSUPP;
        }
}

static int dtype_from_name(const char *s, enum st_dtype *ret) {
        for (size_t i = 0; i < _ST_DTYPE_MAX; i++)
                if (strcmp(s, dtypes[i].name) == 0) {
                        *ret = (enum st_dtype) i;
                        return 0;
                }
        return -EINVAL;
}

void safetensors_close(struct safetensors *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n_tensors; i++)
                free((char *) s->tensors[i].name);
        for (size_t i = 0; i < 2 * s->n_meta; i++)
                free(s->meta[i]);
        free(s->meta);
        free(s->tensors);
        free(s->by_name);
        if (s->map)
                munmap(s->map, s->map_size);
        free(s->name);
        free(s);
}

/* A non-negative JSON integer that fits in 64 bits (json-c parses
 * integers past INT64_MAX as doubles, or clamps them). */
static bool json_u64(json_object *o, uint64_t *ret) {
        int64_t v;

        if (!json_object_is_type(o, json_type_int))
                return false;
        errno = 0;
        v = json_object_get_int64(o);
        if (errno != 0 || v < 0 || v == INT64_MAX)
                return false;
        *ret = (uint64_t) v;
        return true;
}

static int parse_tensor(struct safetensors *s, const char *key, json_object *o, struct st_tensor *t, char *err,
                        size_t err_size) {
        json_object *dtype, *shape, *offsets;
        uint64_t begin, end, n = 1, bytes;

        if (strlen(key) == 0 || strlen(key) > SAFETENSORS_NAME_MAX)
                return nn_error(err, err_size, -EBADMSG, "%s: a tensor name is empty or longer than %d bytes",
                                s->name, SAFETENSORS_NAME_MAX);
        if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, "dtype", &dtype) ||
            !json_object_object_get_ex(o, "shape", &shape) ||
            !json_object_object_get_ex(o, "data_offsets", &offsets))
                return nn_error(err, err_size, -EBADMSG, "%s: tensor \"%.100s\" lacks dtype, shape or data_offsets",
                                s->name, key);
        if (json_object_object_length(o) != 3)
                return nn_error(err, err_size, -EBADMSG, "%s: tensor \"%.100s\" has fields other than dtype, shape "
                                "and data_offsets", s->name, key);
        if (!json_object_is_type(dtype, json_type_string) ||
            dtype_from_name(json_object_get_string(dtype), &t->dtype) < 0)
                return nn_error(err, err_size, -EBADMSG, "%s: tensor \"%.100s\" has an unknown dtype \"%.40s\"",
                                s->name, key, json_object_get_string(dtype) ?: "null");
        if (!json_object_is_type(shape, json_type_array) ||
            json_object_array_length(shape) > SAFETENSORS_DIMS_MAX)
                return nn_error(err, err_size, -EBADMSG, "%s: tensor \"%.100s\": shape is not a list of at most %d "
                                "dimensions", s->name, key, SAFETENSORS_DIMS_MAX);
        t->ndim = (uint32_t) json_object_array_length(shape);
        for (uint32_t i = 0; i < t->ndim; i++) {
                if (!json_u64(json_object_array_get_idx(shape, i), &t->shape[i]))
                        return nn_error(err, err_size, -EBADMSG, "%s: tensor \"%.100s\": dimension %" PRIu32 " is "
                                        "not a non-negative integer", s->name, key, i);
                if (__builtin_mul_overflow(n, t->shape[i], &n))
                        return nn_error(err, err_size, -EBADMSG, "%s: tensor \"%.100s\": its shape has more "
                                        "elements than fit in 64 bits", s->name, key);
        }
        if (!json_object_is_type(offsets, json_type_array) || json_object_array_length(offsets) != 2 ||
            !json_u64(json_object_array_get_idx(offsets, 0), &begin) ||
            !json_u64(json_object_array_get_idx(offsets, 1), &end))
                return nn_error(err, err_size, -EBADMSG, "%s: tensor \"%.100s\": data_offsets is not [begin, end]",
                                s->name, key);
        if (begin > end || end > s->data_size)
                return nn_error(err, err_size, -EBADMSG, "%s: tensor \"%.100s\": data_offsets [%" PRIu64 ", %"
                                PRIu64 "] fall outside the %" PRIu64 " bytes of data", s->name, key, begin, end,
                                s->data_size);
        if (__builtin_mul_overflow(n, (uint64_t) st_dtype_size(t->dtype), &bytes) || bytes != end - begin)
                return nn_error(err, err_size, -EBADMSG, "%s: tensor \"%.100s\" is %" PRIu64 " bytes, but %" PRIu64
                                " elements of %s need %" PRIu64, s->name, key, end - begin, n,
                                st_dtype_name(t->dtype), n * st_dtype_size(t->dtype));
        t->name = strdup(key);
        if (!t->name)
                return nn_error(err, err_size, -ENOMEM, "%s: out of memory", s->name);
        t->n_elements = n;
        t->offset = begin;
        t->size = end - begin;
        t->data = s->data + begin;
        return 0;
}

static int parse_metadata(struct safetensors *s, json_object *o, char *err, size_t err_size) {
        size_t n = 0;

        if (!json_object_is_type(o, json_type_object))
                return nn_error(err, err_size, -EBADMSG, "%s: __metadata__ is not an object", s->name);
        s->meta = calloc(2 * (size_t) json_object_object_length(o) + 1, sizeof(char *));
        if (!s->meta)
                return nn_error(err, err_size, -ENOMEM, "%s: out of memory", s->name);
        json_object_object_foreach(o, key, value) {
                if (!json_object_is_type(value, json_type_string))
                        return nn_error(err, err_size, -EBADMSG, "%s: __metadata__ \"%.100s\" is not a string",
                                        s->name, key);
                s->meta[2 * n] = strdup(key);
                s->meta[2 * n + 1] = strdup(json_object_get_string(value));
                s->n_meta = ++n;
                if (!s->meta[2 * n - 2] || !s->meta[2 * n - 1])
                        return nn_error(err, err_size, -ENOMEM, "%s: out of memory", s->name);
        }
        return 0;
}

static int cmp_offset(const void *a, const void *b) {
        const struct st_tensor *x = a, *y = b;

        /* An empty tensor at an offset comes before one that starts there. */
        if (x->offset != y->offset)
                return (x->offset > y->offset) - (x->offset < y->offset);
        return (x->size > y->size) - (x->size < y->size);
}

static int cmp_name(const void *a, const void *b, void *userdata) {
        const struct safetensors *s = userdata;

        return strcmp(s->tensors[*(const size_t *) a].name, s->tensors[*(const size_t *) b].name);
}

static int parse(struct safetensors *s, const uint8_t *p, size_t size, char *err, size_t err_size) {
        json_tokener *tok = NULL;
        json_object *root = NULL;
        uint64_t n;
        size_t i = 0, used;
        int r = 0;

        if (size < 8)
                return nn_error(err, err_size, -EBADMSG, "%s: %zu bytes, too short for a safetensors file "
                                "(at least 8)", s->name, size);
        memcpy(&n, p, 8);       /* little-endian, as every machine this builds on */
        if (n < 2 || n > SAFETENSORS_HEADER_MAX || n > size - 8)
                return nn_error(err, err_size, -EBADMSG, "%s: the header length %" PRIu64 " is %s", s->name, n,
                                n > size - 8 ? "past the end of the file" : "out of range (2 bytes to 100 MiB)");
        if (p[8] != '{')
                return nn_error(err, err_size, -EBADMSG, "%s: the header is not a JSON object", s->name);
        /* Trailing spaces pad the header to an alignment. */
        used = (size_t) n;
        while (used > 0 && p[8 + used - 1] == ' ')
                used--;
        for (size_t k = 0; k < used; k++)
                if (p[8 + k] == '\0')
                        return nn_error(err, err_size, -EBADMSG, "%s: the header holds a NUL byte", s->name);
        s->data = p + 8 + n;
        s->data_size = size - 8 - n;
        /* A header of millions of tiny entries would take gigabytes as
         * JSON objects before any is checked: count them first (a model
         * has thousands). */
        {
                size_t entries = 0;

                for (const uint8_t *q = p + 8, *end = p + 8 + used;
                     (q = memmem(q, (size_t) (end - q), "data_offsets", 12)); q += 12)
                        if (++entries > SAFETENSORS_TENSORS_MAX)
                                return nn_error(err, err_size, -E2BIG, "%s: more than %d tensors", s->name,
                                                SAFETENSORS_TENSORS_MAX);
        }

        tok = json_tokener_new();
        if (!tok)
                return nn_error(err, err_size, -ENOMEM, "%s: out of memory", s->name);
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        root = json_tokener_parse_ex(tok, (const char *) p + 8, (int) used);
        if (!root || json_tokener_get_error(tok) != json_tokener_success ||
            json_tokener_get_parse_end(tok) != used) {
                r = nn_error(err, err_size, -EBADMSG, "%s: the header is not valid JSON: %s", s->name,
                             root ? "trailing bytes after the object"
                                  : json_tokener_error_desc(json_tokener_get_error(tok)));
                goto out;
        }
        if (!json_object_is_type(root, json_type_object)) {
                r = nn_error(err, err_size, -EBADMSG, "%s: the header is not a JSON object", s->name);
                goto out;
        }
        s->tensors = calloc((size_t) json_object_object_length(root) + 1, sizeof(*s->tensors));
        if (!s->tensors) {
                r = nn_error(err, err_size, -ENOMEM, "%s: out of memory", s->name);
                goto out;
        }
        json_object_object_foreach(root, key, value) {
                if (strcmp(key, "__metadata__") == 0)
                        r = parse_metadata(s, value, err, err_size);
                else {
                        r = parse_tensor(s, key, value, &s->tensors[i], err, err_size);
                        if (r >= 0)
                                s->n_tensors = ++i;
                }
                if (r < 0)
                        goto out;
        }

        /* The data is covered exactly: no holes (a name given twice, which
         * the JSON parser keeps once, leaves one), no overlaps. */
        qsort(s->tensors, s->n_tensors, sizeof(*s->tensors), cmp_offset);
        {
                uint64_t at = 0;

                for (size_t k = 0; k < s->n_tensors; k++) {
                        const struct st_tensor *t = &s->tensors[k];

                        if (t->offset != at) {
                                r = nn_error(err, err_size, -EBADMSG, "%s: tensor \"%.100s\" starts at byte %" PRIu64
                                             " of the data, where %" PRIu64 " was expected (%s)", s->name, t->name,
                                             t->offset, at, t->offset < at ? "it overlaps the one before"
                                                                           : "a hole before it");
                                goto out;
                        }
                        at += t->size;
                }
                if (at != s->data_size) {
                        r = nn_error(err, err_size, -EBADMSG, "%s: the tensors cover %" PRIu64 " bytes of the %"
                                     PRIu64 " after the header", s->name, at, s->data_size);
                        goto out;
                }
        }
        s->by_name = calloc(s->n_tensors + 1, sizeof(size_t));
        if (!s->by_name) {
                r = nn_error(err, err_size, -ENOMEM, "%s: out of memory", s->name);
                goto out;
        }
        for (size_t k = 0; k < s->n_tensors; k++)
                s->by_name[k] = k;
        qsort_r(s->by_name, s->n_tensors, sizeof(size_t), cmp_name, s);
        /* Names with an escaped NUL (\u0000) can end up equal as C strings. */
        for (size_t k = 1; k < s->n_tensors; k++)
                if (strcmp(s->tensors[s->by_name[k - 1]].name, s->tensors[s->by_name[k]].name) == 0) {
                        r = nn_error(err, err_size, -EBADMSG, "%s: two tensors are named \"%.100s\"", s->name,
                                     s->tensors[s->by_name[k]].name);
                        goto out;
                }
out:
        json_object_put(root);
        json_tokener_free(tok);
        return r;
}

int safetensors_parse(const void *data, size_t size, const char *name, struct safetensors **ret, char *err,
                      size_t err_size) {
        struct safetensors *s = calloc(1, sizeof(*s));
        int r;

        if (err && err_size > 0)
                err[0] = '\0';
        if (!s || !(s->name = strdup(name ?: "(memory)"))) {
                free(s);
                return nn_error(err, err_size, -ENOMEM, "out of memory");
        }
        r = parse(s, data, size, err, err_size);
        if (r < 0) {
                safetensors_close(s);
                return r;
        }
        *ret = s;
        return 0;
}

int safetensors_open(const char *path, struct safetensors **ret, char *err, size_t err_size) {
        struct safetensors *s;
        struct stat st;
        void *m;
        int fd, r;

        if (err && err_size > 0)
                err[0] = '\0';
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return nn_error(err, err_size, -errno, "%s: cannot open: %s", path, strerror(errno));
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 || (uint64_t) st.st_size > SIZE_MAX) {
                r = -errno;
                close(fd);
                return nn_error(err, err_size, r < 0 ? r : -EBADMSG, "%s: not a non-empty regular file", path);
        }
        m = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        r = -errno;
        close(fd);
        if (m == MAP_FAILED)
                return nn_error(err, err_size, r, "%s: cannot map: %s", path, strerror(-r));
        s = calloc(1, sizeof(*s));
        if (!s || !(s->name = strdup(path))) {
                free(s);
                munmap(m, (size_t) st.st_size);
                return nn_error(err, err_size, -ENOMEM, "%s: out of memory", path);
        }
        s->map = m;
        s->map_size = (size_t) st.st_size;
        r = parse(s, m, (size_t) st.st_size, err, err_size);
        if (r < 0) {
                safetensors_close(s);
                return r;
        }
        *ret = s;
        return 0;
}

size_t safetensors_count(const struct safetensors *s) {
        return s->n_tensors;
}

const struct st_tensor *safetensors_tensor(const struct safetensors *s, size_t i) {
        return i < s->n_tensors ? &s->tensors[i] : NULL;
}

const struct st_tensor *safetensors_find(const struct safetensors *s, const char *name) {
        size_t lo = 0, hi = s->n_tensors;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(s->tensors[s->by_name[mid]].name, name);

                if (c == 0)
                        return &s->tensors[s->by_name[mid]];
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

const char *safetensors_metadata(const struct safetensors *s, const char *key) {
        for (size_t i = 0; i < s->n_meta; i++)
                if (strcmp(s->meta[2 * i], key) == 0)
                        return s->meta[2 * i + 1];
        return NULL;
}

int safetensors_read_f32(const struct st_tensor *t, uint64_t first, uint64_t n, float *out) {
        const uint8_t *p = t->data;

        if (first > t->n_elements || n > t->n_elements - first)
                return -ERANGE;
        for (uint64_t i = 0; i < n; i++) {
                uint16_t h;

                switch (t->dtype) {
                case ST_F32:
                        memcpy(&out[i], p + (first + i) * 4, 4);
                        break;
                case ST_F16:
                        memcpy(&h, p + (first + i) * 2, 2);
                        out[i] = nn_fp16_to_f32(h);
                        break;
                case ST_BF16:
                        memcpy(&h, p + (first + i) * 2, 2);
                        out[i] = nn_bf16_to_f32(h);
                        break;
                default:
                        return -EOPNOTSUPP;
                }
        }
        return 0;
}

/* ---- Writing ---- */

struct writer_tensor {
        char *name;
        enum st_dtype dtype;
        uint32_t ndim;
        uint64_t shape[SAFETENSORS_DIMS_MAX];
        void *data;
        uint64_t size;
};

struct safetensors_writer {
        json_object *meta;
        struct writer_tensor *tensors;
        size_t n_tensors;
};

int safetensors_writer_new(struct safetensors_writer **ret) {
        struct safetensors_writer *w = calloc(1, sizeof(*w));

        if (!w)
                return -ENOMEM;
        *ret = w;
        return 0;
}

void safetensors_writer_free(struct safetensors_writer *w) {
        if (!w)
                return;
        for (size_t i = 0; i < w->n_tensors; i++) {
                free(w->tensors[i].name);
                free(w->tensors[i].data);
        }
        free(w->tensors);
        json_object_put(w->meta);
        free(w);
}

int safetensors_writer_metadata(struct safetensors_writer *w, const char *key, const char *value) {
        if (!w->meta && !(w->meta = json_object_new_object()))
                return -ENOMEM;
        return json_object_object_add(w->meta, key, json_object_new_string(value)) < 0 ? -ENOMEM : 0;
}

int safetensors_writer_add(struct safetensors_writer *w, const char *name, enum st_dtype dtype, uint32_t ndim,
                           const uint64_t *shape, const void *data) {
        struct writer_tensor *t;
        uint64_t n = 1;

        if (!name || !*name || strlen(name) > SAFETENSORS_NAME_MAX || strcmp(name, "__metadata__") == 0 ||
            dtype >= _ST_DTYPE_MAX || ndim > SAFETENSORS_DIMS_MAX)
                return -EINVAL;
        for (uint32_t i = 0; i < ndim; i++)
                if (__builtin_mul_overflow(n, shape[i], &n))
                        return -E2BIG;
        t = reallocarray(w->tensors, w->n_tensors + 1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        w->tensors = t;
        t = &w->tensors[w->n_tensors];
        *t = (struct writer_tensor) { .dtype = dtype, .ndim = ndim, .size = n * st_dtype_size(dtype) };
        if (ndim > 0)
                memcpy(t->shape, shape, ndim * sizeof(uint64_t));
        t->name = strdup(name);
        t->data = malloc(t->size ?: 1);
        if (!t->name || !t->data) {
                free(t->name);
                free(t->data);
                return -ENOMEM;
        }
        if (t->size > 0)
                memcpy(t->data, data, t->size);
        w->n_tensors++;
        return 0;
}

int safetensors_writer_write(struct safetensors_writer *w, const char *path, char *err, size_t err_size) {
        json_object *root = json_object_new_object();
        const char *header;
        uint64_t at = 0, n, padded;
        FILE *f = NULL;
        int r = 0;

        if (!root)
                return nn_error(err, err_size, -ENOMEM, "out of memory");
        if (w->meta)
                json_object_object_add(root, "__metadata__", json_object_get(w->meta));
        for (size_t i = 0; i < w->n_tensors; i++) {
                struct writer_tensor *t = &w->tensors[i];
                json_object *o = json_object_new_object(), *shape = json_object_new_array(),
                            *offsets = json_object_new_array();

                json_object_object_add(o, "dtype", json_object_new_string(st_dtype_name(t->dtype)));
                for (uint32_t d = 0; d < t->ndim; d++)
                        json_object_array_add(shape, json_object_new_int64((int64_t) t->shape[d]));
                json_object_object_add(o, "shape", shape);
                json_object_array_add(offsets, json_object_new_int64((int64_t) at));
                json_object_array_add(offsets, json_object_new_int64((int64_t) (at + t->size)));
                json_object_object_add(o, "data_offsets", offsets);
                json_object_object_add(root, t->name, o);
                at += t->size;
        }
        header = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
        n = strlen(header);
        /* Spaces to 8 bytes, so that the data is aligned. */
        padded = (n + 7) / 8 * 8;
        f = fopen(path, "we");
        if (!f) {
                r = nn_error(err, err_size, -errno, "%s: cannot create: %s", path, strerror(errno));
                goto out;
        }
        if (fwrite(&padded, 8, 1, f) != 1 || fwrite(header, 1, n, f) != n)
                r = -EIO;
        for (uint64_t k = n; r == 0 && k < padded; k++)
                if (fputc(' ', f) == EOF)
                        r = -EIO;
        for (size_t i = 0; r == 0 && i < w->n_tensors; i++)
                if (w->tensors[i].size > 0 && fwrite(w->tensors[i].data, 1, w->tensors[i].size, f) != w->tensors[i].size)
                        r = -EIO;
        if (fclose(f) != 0 && r == 0)
                r = -EIO;
        if (r < 0)
                nn_error(err, err_size, r, "%s: cannot write", path);
out:
        json_object_put(root);
        return r;
}

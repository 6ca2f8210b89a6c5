/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* GGUF reader and writer.  The reader trusts no number from the file: every
 * length, count and offset is compared with the bytes actually left before
 * it is used, with arithmetic that cannot wrap, so that a hostile count
 * (2^62 strings) is refused rather than turned into a huge allocation.
 * Whatever gguf_open() hands out points into the read-only mapping, except
 * the arrays of string descriptors, which struct gguf owns.  All numbers are
 * decoded byte by byte as little-endian, so nothing here depends on the
 * host's byte order or on the alignment of what it reads.  A file truncated
 * in place while mapped would fault on access (SIGBUS); model files are
 * replaced by rename, as gguf_writer_write() does, never rewritten. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "nn-error.h"

#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define GGUF_MAGIC "GGUF"
#define GGUF_ALIGNMENT_KEY "general.alignment"
/* Keys and tensor names are short in practice (ggml caps names at 64
 * bytes); this only keeps a hostile name out of messages and hashes. */
#define GGUF_NAME_MAX 65535u

/* The smallest each record can be, which bounds a count by the bytes left. */
#define HEADER_BYTES (4 + 4 + 8 + 8)
#define KV_MIN_BYTES (8 + 1 + 4 + 1)                    /* key length, key, type, uint8 value */
#define TENSOR_INFO_MIN_BYTES (8 + 1 + 4 + 8 + 4 + 8)   /* name length, name, n_dims, ne[0], type, offset */
#define STRING_MIN_BYTES 8                              /* length of an empty string */

struct gguf {
        char *path;
        const uint8_t *map;
        size_t map_size;
        uint32_t version;
        size_t alignment;

        struct gguf_kv *kvs;
        size_t n_kvs;
        const struct gguf_kv **kvs_by_key;              /* sorted, for lookups */

        struct gguf_tensor *tensors;
        size_t n_tensors;
        const struct gguf_tensor **tensors_by_name;     /* sorted, for lookups */

        uint64_t data_offset;                           /* from the start of the file */
        uint64_t data_size;
};

/* ---- Small helpers ---------------------------------------------------- */


static uint64_t load_le(const uint8_t *p, size_t n) {
        uint64_t v = 0;

        for (size_t i = 0; i < n; i++)
                v |= (uint64_t) p[i] << (8 * i);
        return v;
}

static int64_t sign_extend(uint64_t v, size_t n) {
        if (n < 8 && (v >> (8 * n - 1)) & 1)
                v |= ~UINT64_C(0) << (8 * n);
        return (int64_t) v;
}

static float f32_from_bits(uint32_t u) {
        float f;

        memcpy(&f, &u, sizeof(f));
        return f;
}

static double f64_from_bits(uint64_t u) {
        double d;

        memcpy(&d, &u, sizeof(d));
        return d;
}

static const char *value_type_name(uint32_t type) {
        static const char *const names[] = {
                [GGUF_TYPE_UINT8] = "uint8",     [GGUF_TYPE_INT8] = "int8",
                [GGUF_TYPE_UINT16] = "uint16",   [GGUF_TYPE_INT16] = "int16",
                [GGUF_TYPE_UINT32] = "uint32",   [GGUF_TYPE_INT32] = "int32",
                [GGUF_TYPE_FLOAT32] = "float32", [GGUF_TYPE_BOOL] = "bool",
                [GGUF_TYPE_STRING] = "string",   [GGUF_TYPE_ARRAY] = "array",
                [GGUF_TYPE_UINT64] = "uint64",   [GGUF_TYPE_INT64] = "int64",
                [GGUF_TYPE_FLOAT64] = "float64",
        };

        return type < ELEMENTSOF(names) ? names[type] : NULL;
}

/* Bytes of a scalar; 0 for strings, arrays and unknown types. */
static size_t value_type_size(uint32_t type) {
        switch (type) {
        case GGUF_TYPE_UINT8:
        case GGUF_TYPE_INT8:
        case GGUF_TYPE_BOOL:
                return 1;
        case GGUF_TYPE_UINT16:
        case GGUF_TYPE_INT16:
                return 2;
        case GGUF_TYPE_UINT32:
        case GGUF_TYPE_INT32:
        case GGUF_TYPE_FLOAT32:
                return 4;
        case GGUF_TYPE_UINT64:
        case GGUF_TYPE_INT64:
        case GGUF_TYPE_FLOAT64:
                return 8;
        default:
                return 0;
        }
}

static bool value_type_is_unsigned(uint32_t type) {
        return type == GGUF_TYPE_UINT8 || type == GGUF_TYPE_UINT16 || type == GGUF_TYPE_UINT32 ||
               type == GGUF_TYPE_UINT64;
}

static bool value_type_is_signed(uint32_t type) {
        return type == GGUF_TYPE_INT8 || type == GGUF_TYPE_INT16 || type == GGUF_TYPE_INT32 ||
               type == GGUF_TYPE_INT64;
}

static bool value_type_is_float(uint32_t type) {
        return type == GGUF_TYPE_FLOAT32 || type == GGUF_TYPE_FLOAT64;
}

/* ggml's numbering, only to name a type we refuse; gaps are types ggml
 * removed. */
static const char *ggml_type_name(uint32_t type) {
        static const char *const names[] = {
                [0] = "f32",      [1] = "f16",      [2] = "q4_0",     [3] = "q4_1",
                [6] = "q5_0",     [7] = "q5_1",     [8] = "q8_0",     [9] = "q8_1",
                [10] = "q2_K",    [11] = "q3_K",    [12] = "q4_K",    [13] = "q5_K",
                [14] = "q6_K",    [15] = "q8_K",    [16] = "iq2_xxs", [17] = "iq2_xs",
                [18] = "iq3_xxs", [19] = "iq1_s",   [20] = "iq4_nl",  [21] = "iq3_s",
                [22] = "iq2_s",   [23] = "iq4_xs",  [24] = "i8",      [25] = "i16",
                [26] = "i32",     [27] = "i64",     [28] = "f64",     [29] = "iq1_m",
                [30] = "bf16",    [34] = "tq1_0",   [35] = "tq2_0",   [39] = "mxfp4",
        };

        return type < ELEMENTSOF(names) ? names[type] : NULL;
}

static int string_cmp(struct gguf_string a, struct gguf_string b) {
        int c = memcmp(a.data, b.data, a.len < b.len ? a.len : b.len);

        if (c != 0)
                return c;
        return a.len < b.len ? -1 : a.len > b.len;
}

/* A name from the file, fit for a one-line message: control bytes become
 * '?' and long names are cut. */
static const char *printable(struct gguf_string s, char *buf, size_t size) {
        size_t n = s.len < size - 4 ? s.len : size - 4;

        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s.data[i];

                buf[i] = c < 0x20 || c == 0x7f ? '?' : (char) c;
        }
        if (n < s.len)
                memcpy(buf + n, "...", 4);
        else
                buf[n] = '\0';
        return buf;
}

/* ---- The bounds-checked cursor ----------------------------------------- */

struct parser {
        const char *path;
        const uint8_t *buf;
        size_t size;
        size_t pos;
        char where[128];        /* "key 3 (general.name)", "tensor 7 (output.weight)", or "" */
        char *err;
        size_t err_size;
};

_printf_(3, 4) static int parser_fail(struct parser *p, int r, const char *fmt, ...) {
        char msg[384];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return nn_error(p->err, p->err_size, r, "%s: %s%s%s", p->path, p->where, p->where[0] ? ": " : "", msg);
}

static void parser_where(struct parser *p, const char *what, size_t i, const struct gguf_string *name) {
        char buf[80];

        if (name)
                (void) snprintf(p->where, sizeof(p->where), "%s %zu (%s)", what, i,
                                printable(*name, buf, sizeof(buf)));
        else
                (void) snprintf(p->where, sizeof(p->where), "%s %zu", what, i);
}

static size_t parser_left(const struct parser *p) {
        return p->size - p->pos;
}

/* Sets *ret on failure too (to NULL), which keeps -Wmaybe-uninitialized
 * quiet at -O2: it cannot see that parser_fail() returns a negative r. */
static int parser_take(struct parser *p, uint64_t n, const char *what, const uint8_t **ret) {
        *ret = NULL;
        if (n > parser_left(p))
                return parser_fail(p, -EBADMSG,
                                   "%s of %" PRIu64 " bytes at byte %zu runs past the end of the file (%zu bytes)",
                                   what, n, p->pos, p->size);
        *ret = p->buf + p->pos;
        p->pos += (size_t) n;
        return 0;
}

static int parser_u32(struct parser *p, const char *what, uint32_t *ret) {
        const uint8_t *b;
        int r = parser_take(p, 4, what, &b);

        *ret = 0;
        if (r < 0)
                return r;
        *ret = (uint32_t) load_le(b, 4);
        return 0;
}

static int parser_u64(struct parser *p, const char *what, uint64_t *ret) {
        const uint8_t *b;
        int r = parser_take(p, 8, what, &b);

        *ret = 0;
        if (r < 0)
                return r;
        *ret = load_le(b, 8);
        return 0;
}

static int parser_string(struct parser *p, const char *what, struct gguf_string *ret) {
        const uint8_t *b;
        uint64_t len;
        int r;

        char len_what[64];

        (void) snprintf(len_what, sizeof(len_what), "%s length", what);
        r = parser_u64(p, len_what, &len);
        if (r < 0)
                return r;
        r = parser_take(p, len, what, &b);
        if (r < 0)
                return r;
        *ret = (struct gguf_string) { .data = (const char *) b, .len = len };
        return 0;
}

/* Keys and tensor names are looked up by C strings: a NUL inside would make
 * them unreachable, an empty one is meaningless. */
static int parser_check_name(struct parser *p, struct gguf_string s, const char *what) {
        if (s.len == 0)
                return parser_fail(p, -EBADMSG, "%s is empty", what);
        if (s.len > GGUF_NAME_MAX)
                return parser_fail(p, -EBADMSG, "%s is %" PRIu64 " bytes long (at most %u)", what, s.len,
                                   GGUF_NAME_MAX);
        if (memchr(s.data, '\0', s.len))
                return parser_fail(p, -EBADMSG, "%s contains a NUL byte", what);
        return 0;
}

/* ---- Metadata ----------------------------------------------------------- */

static void scalar_decode(uint32_t type, const uint8_t *b, struct gguf_kv *kv) {
        size_t n = value_type_size(type);

        if (value_type_is_signed(type))
                kv->v.i64 = sign_extend(load_le(b, n), n);
        else if (type == GGUF_TYPE_FLOAT32)
                kv->v.f64 = f32_from_bits((uint32_t) load_le(b, 4));
        else if (type == GGUF_TYPE_FLOAT64)
                kv->v.f64 = f64_from_bits(load_le(b, 8));
        else
                kv->v.u64 = load_le(b, n);
}

static int parse_array(struct parser *p, struct gguf_kv *kv) {
        uint32_t et;
        uint64_t n;
        size_t elem_size;
        int r;

        r = parser_u32(p, "array element type", &et);
        if (r < 0)
                return r;
        if (et == GGUF_TYPE_ARRAY)
                return parser_fail(p, -EOPNOTSUPP, "arrays of arrays are not supported");
        if (!value_type_name(et))
                return parser_fail(p, -EBADMSG, "unknown array element type %" PRIu32, et);
        r = parser_u64(p, "array length", &n);
        if (r < 0)
                return r;

        elem_size = et == GGUF_TYPE_STRING ? STRING_MIN_BYTES : value_type_size(et);
        if (n > parser_left(p) / elem_size)
                return parser_fail(p, -EBADMSG,
                                   "array of %" PRIu64 " %ss cannot fit in the %zu bytes left after byte %zu", n,
                                   value_type_name(et), parser_left(p), p->pos);
        kv->v.arr.type = et;
        kv->v.arr.n = n;

        if (et == GGUF_TYPE_STRING) {
                struct gguf_string *s = NULL;

                if (n > 0) {
                        s = calloc((size_t) n, sizeof(*s));
                        if (!s)
                                return parser_fail(p, -ENOMEM, "out of memory for %" PRIu64 " strings", n);
                }
                kv->v.arr.data = s;     /* gguf_close() frees it, also after a failure below */
                for (uint64_t i = 0; i < n; i++) {
                        char what[48];

                        (void) snprintf(what, sizeof(what), "array string %" PRIu64, i);
                        r = parser_string(p, what, &s[i]);
                        if (r < 0)
                                return r;
                }
                return 0;
        }

        const uint8_t *b;
        r = parser_take(p, n * elem_size, "array data", &b);
        if (r < 0)
                return r;
        if (et == GGUF_TYPE_BOOL)
                for (uint64_t i = 0; i < n; i++)
                        if (b[i] > 1)
                                return parser_fail(p, -EBADMSG,
                                                   "array element %" PRIu64 ": bool byte %u is neither 0 nor 1",
                                                   i, b[i]);
        kv->v.arr.data = b;
        return 0;
}

static int parse_kv(struct parser *p, size_t i, struct gguf_kv *kv) {
        const uint8_t *b;
        uint32_t type;
        int r;

        parser_where(p, "key", i, NULL);
        r = parser_string(p, "key", &kv->key);
        if (r < 0)
                return r;
        r = parser_check_name(p, kv->key, "key");
        if (r < 0)
                return r;
        parser_where(p, "key", i, &kv->key);

        r = parser_u32(p, "value type", &type);
        if (r < 0)
                return r;
        if (!value_type_name(type))
                return parser_fail(p, -EBADMSG, "unknown value type %" PRIu32, type);
        kv->type = type;

        switch (type) {
        case GGUF_TYPE_ARRAY:
                return parse_array(p, kv);
        case GGUF_TYPE_STRING:
                return parser_string(p, "string value", &kv->v.str);
        default:
                r = parser_take(p, value_type_size(type), "value", &b);
                if (r < 0)
                        return r;
                if (type == GGUF_TYPE_BOOL && b[0] > 1)
                        return parser_fail(p, -EBADMSG, "bool byte %u is neither 0 nor 1", b[0]);
                scalar_decode(type, b, kv);
                return 0;
        }
}

static int kv_ptr_cmp(const void *a, const void *b) {
        const struct gguf_kv *x = *(const struct gguf_kv *const *) a, *y = *(const struct gguf_kv *const *) b;
        int c = string_cmp(x->key, y->key);

        /* Ties by position, so that the later of two duplicates is the one named. */
        return c != 0 ? c : (x > y) - (x < y);
}

static int index_kvs(struct gguf *g, struct parser *p) {
        if (g->n_kvs == 0)
                return 0;
        g->kvs_by_key = calloc(g->n_kvs, sizeof(*g->kvs_by_key));
        if (!g->kvs_by_key)
                return parser_fail(p, -ENOMEM, "out of memory");
        for (size_t i = 0; i < g->n_kvs; i++)
                g->kvs_by_key[i] = &g->kvs[i];
        qsort(g->kvs_by_key, g->n_kvs, sizeof(*g->kvs_by_key), kv_ptr_cmp);

        for (size_t i = 1; i < g->n_kvs; i++) {
                const struct gguf_kv *a = g->kvs_by_key[i - 1], *b = g->kvs_by_key[i];

                if (string_cmp(a->key, b->key) == 0) {
                        parser_where(p, "key", (size_t) (b - g->kvs), &b->key);
                        return parser_fail(p, -EBADMSG, "duplicate key (also key %zu)", (size_t) (a - g->kvs));
                }
        }
        return 0;
}

static int read_alignment(struct gguf *g, struct parser *p) {
        const struct gguf_kv *kv = gguf_find_kv(g, GGUF_ALIGNMENT_KEY);

        g->alignment = GGUF_DEFAULT_ALIGNMENT;
        if (!kv)
                return 0;
        parser_where(p, "key", (size_t) (kv - g->kvs), &kv->key);
        if (kv->type != GGUF_TYPE_UINT32)
                return parser_fail(p, -EBADMSG, "alignment is a %s, not a uint32", value_type_name(kv->type));
        if (kv->v.u64 == 0 || (kv->v.u64 & (kv->v.u64 - 1)) != 0)
                return parser_fail(p, -EBADMSG, "alignment %" PRIu64 " is not a power of two", kv->v.u64);
        g->alignment = (size_t) kv->v.u64;
        return 0;
}

/* ---- Tensors ------------------------------------------------------------ */

static int parse_tensor_info(struct parser *p, size_t i, size_t alignment, struct gguf_tensor *t) {
        uint32_t ndim, type;
        uint64_t rows = 1;
        size_t row_bytes;
        int r;

        parser_where(p, "tensor", i, NULL);
        r = parser_string(p, "name", &t->name);
        if (r < 0)
                return r;
        r = parser_check_name(p, t->name, "name");
        if (r < 0)
                return r;
        parser_where(p, "tensor", i, &t->name);

        r = parser_u32(p, "dimension count", &ndim);
        if (r < 0)
                return r;
        if (ndim < 1 || ndim > GGUF_MAX_DIMS)
                return parser_fail(p, -EBADMSG, "has %" PRIu32 " dimensions (1 to %d allowed)", ndim, GGUF_MAX_DIMS);
        t->ndim = ndim;

        t->n_elements = 1;
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
                t->ne[d] = 1;
                if (d >= ndim)
                        continue;
                r = parser_u64(p, "dimension", &t->ne[d]);
                if (r < 0)
                        return r;
                if (t->ne[d] == 0)
                        return parser_fail(p, -EBADMSG, "dimension %" PRIu32 " is 0", d);
                if (__builtin_mul_overflow(t->n_elements, t->ne[d], &t->n_elements))
                        return parser_fail(p, -EBADMSG, "element count overflows 64 bits at dimension %" PRIu32
                                           " (%" PRIu64 ")", d, t->ne[d]);
                if (d > 0)
                        rows *= t->ne[d];       /* ≤ n_elements: cannot wrap */
        }

        r = parser_u32(p, "type", &type);
        if (r < 0)
                return r;
        if (!nn_type_supported(type)) {
                const char *name = ggml_type_name(type);

                return parser_fail(p, -EOPNOTSUPP, "type %" PRIu32 " (%s) is not supported", type,
                                   name ? name : "unknown");
        }
        t->type = type;
        if (t->ne[0] % nn_type_block_elems(type) != 0)
                return parser_fail(p, -EBADMSG, "row length %" PRIu64 " is not a multiple of the %s block size (%zu)",
                                   t->ne[0], nn_type_name(type), nn_type_block_elems(type));
        row_bytes = nn_row_bytes(type, t->ne[0]);
        if (row_bytes == 0 || __builtin_mul_overflow((uint64_t) row_bytes, rows, &t->size))
                return parser_fail(p, -EBADMSG, "size in bytes overflows 64 bits");

        r = parser_u64(p, "data offset", &t->offset);
        if (r < 0)
                return r;
        if (t->offset % alignment != 0)
                return parser_fail(p, -EBADMSG, "data offset %" PRIu64 " is not a multiple of the alignment (%zu)",
                                   t->offset, alignment);
        return 0;
}

static int check_tensor_data(struct gguf *g, struct parser *p) {
        /* data_offset may lie past a truncated file's end; then nothing fits. */
        uint64_t avail = g->data_offset <= g->map_size ? g->map_size - g->data_offset : 0;

        for (size_t i = 0; i < g->n_tensors; i++) {
                struct gguf_tensor *t = &g->tensors[i];
                uint64_t end;

                if (t->offset > avail || t->size > avail - t->offset) {
                        parser_where(p, "tensor", i, &t->name);
                        if (__builtin_add_overflow(g->data_offset, t->offset, &end) ||
                            __builtin_add_overflow(end, t->size, &end))
                                return parser_fail(p, -EBADMSG, "data offset %" PRIu64 " and size %" PRIu64
                                                   " run past the end of the file (%zu bytes)",
                                                   t->offset, t->size, g->map_size);
                        return parser_fail(p, -EBADMSG, "data ends at byte %" PRIu64
                                           " past the end of the file (%zu bytes)", end, g->map_size);
                }
                t->data = g->map + g->data_offset + t->offset;
                if (t->offset + t->size > g->data_size)
                        g->data_size = t->offset + t->size;
        }
        return 0;
}

static int tensor_ptr_offset_cmp(const void *a, const void *b) {
        const struct gguf_tensor *x = *(const struct gguf_tensor *const *) a;
        const struct gguf_tensor *y = *(const struct gguf_tensor *const *) b;

        if (x->offset != y->offset)
                return x->offset < y->offset ? -1 : 1;
        return (x > y) - (x < y);
}

static int tensor_ptr_name_cmp(const void *a, const void *b) {
        const struct gguf_tensor *x = *(const struct gguf_tensor *const *) a;
        const struct gguf_tensor *y = *(const struct gguf_tensor *const *) b;
        int c = string_cmp(x->name, y->name);

        return c != 0 ? c : (x > y) - (x < y);
}

/* Sorting by offset makes the overlap check O(n log n): only neighbours can
 * overlap once no tensor ends past its successor's start. */
static int check_tensor_overlap(struct gguf *g, struct parser *p) {
        const struct gguf_tensor **by_offset;
        int r = 0;

        if (g->n_tensors < 2)
                return 0;
        by_offset = calloc(g->n_tensors, sizeof(*by_offset));
        if (!by_offset)
                return parser_fail(p, -ENOMEM, "out of memory");
        for (size_t i = 0; i < g->n_tensors; i++)
                by_offset[i] = &g->tensors[i];
        qsort(by_offset, g->n_tensors, sizeof(*by_offset), tensor_ptr_offset_cmp);

        for (size_t i = 1; i < g->n_tensors; i++) {
                const struct gguf_tensor *a = by_offset[i - 1], *b = by_offset[i];
                char name[80];

                /* check_tensor_data() bounded offset + size by the file size. */
                if (a->offset + a->size > b->offset) {
                        parser_where(p, "tensor", (size_t) (b - g->tensors), &b->name);
                        r = parser_fail(p, -EBADMSG, "data at offset %" PRIu64 " overlaps tensor %zu (%s), "
                                        "which spans offsets %" PRIu64 " to %" PRIu64,
                                        b->offset, (size_t) (a - g->tensors), printable(a->name, name, sizeof(name)),
                                        a->offset, a->offset + a->size);
                        break;
                }
        }
        free(by_offset);
        return r;
}

static int index_tensors(struct gguf *g, struct parser *p) {
        if (g->n_tensors == 0)
                return 0;
        g->tensors_by_name = calloc(g->n_tensors, sizeof(*g->tensors_by_name));
        if (!g->tensors_by_name)
                return parser_fail(p, -ENOMEM, "out of memory");
        for (size_t i = 0; i < g->n_tensors; i++)
                g->tensors_by_name[i] = &g->tensors[i];
        qsort(g->tensors_by_name, g->n_tensors, sizeof(*g->tensors_by_name), tensor_ptr_name_cmp);

        for (size_t i = 1; i < g->n_tensors; i++) {
                const struct gguf_tensor *a = g->tensors_by_name[i - 1], *b = g->tensors_by_name[i];

                if (string_cmp(a->name, b->name) == 0) {
                        parser_where(p, "tensor", (size_t) (b - g->tensors), &b->name);
                        return parser_fail(p, -EBADMSG, "duplicate name (also tensor %zu)", (size_t) (a - g->tensors));
                }
        }
        return 0;
}

/* ---- Opening ------------------------------------------------------------ */

static int gguf_parse(struct gguf *g, char *err, size_t err_size) {
        struct parser p = {
                .path = g->path,
                .buf = g->map,
                .size = g->map_size,
                .err = err,
                .err_size = err_size,
        };
        const uint8_t *magic;
        uint64_t n_tensors, n_kvs;
        int r;

        r = parser_take(&p, 4, "magic", &magic);
        if (r < 0)
                return r;
        if (memcmp(magic, GGUF_MAGIC, 4) != 0)
                return parser_fail(&p, -EBADMSG, "not a GGUF file (magic %02x%02x%02x%02x)",
                                   magic[0], magic[1], magic[2], magic[3]);
        r = parser_u32(&p, "version", &g->version);
        if (r < 0)
                return r;
        if (g->version != 2 && g->version != 3) {
                uint32_t swapped = __builtin_bswap32(g->version);

                return parser_fail(&p, -EOPNOTSUPP, "GGUF version %" PRIu32 " is not supported (only 2 and 3)%s",
                                   g->version, swapped >= 1 && swapped <= 3 ? "; a big-endian file?" : "");
        }
        r = parser_u64(&p, "tensor count", &n_tensors);
        if (r < 0)
                return r;
        r = parser_u64(&p, "key count", &n_kvs);
        if (r < 0)
                return r;
        if (n_tensors > parser_left(&p) / TENSOR_INFO_MIN_BYTES)
                return parser_fail(&p, -EBADMSG,
                                   "tensor count %" PRIu64 " cannot fit in the %zu bytes left after byte %zu",
                                   n_tensors, parser_left(&p), p.pos);
        if (n_kvs > parser_left(&p) / KV_MIN_BYTES)
                return parser_fail(&p, -EBADMSG,
                                   "key count %" PRIu64 " cannot fit in the %zu bytes left after byte %zu",
                                   n_kvs, parser_left(&p), p.pos);

        if (n_kvs > 0) {
                g->kvs = calloc((size_t) n_kvs, sizeof(*g->kvs));
                if (!g->kvs)
                        return parser_fail(&p, -ENOMEM, "out of memory for %" PRIu64 " keys", n_kvs);
                g->n_kvs = (size_t) n_kvs;
        }
        for (size_t i = 0; i < g->n_kvs; i++) {
                r = parse_kv(&p, i, &g->kvs[i]);
                if (r < 0)
                        return r;
        }
        p.where[0] = '\0';
        r = index_kvs(g, &p);
        if (r < 0)
                return r;
        r = read_alignment(g, &p);
        if (r < 0)
                return r;

        if (n_tensors > 0) {
                g->tensors = calloc((size_t) n_tensors, sizeof(*g->tensors));
                if (!g->tensors)
                        return parser_fail(&p, -ENOMEM, "out of memory for %" PRIu64 " tensors", n_tensors);
                g->n_tensors = (size_t) n_tensors;
        }
        for (size_t i = 0; i < g->n_tensors; i++) {
                r = parse_tensor_info(&p, i, g->alignment, &g->tensors[i]);
                if (r < 0)
                        return r;
        }
        p.where[0] = '\0';

        /* pos ≤ file size and alignment ≤ 2^32: no wrap in 64 bits. */
        g->data_offset = (uint64_t) p.pos + (g->alignment - p.pos % g->alignment) % g->alignment;

        r = check_tensor_data(g, &p);
        if (r < 0)
                return r;
        r = check_tensor_overlap(g, &p);
        if (r < 0)
                return r;
        return index_tensors(g, &p);
}

int gguf_open(const char *path, struct gguf **ret, char *err, size_t err_size) {
        struct gguf *g;
        struct stat st;
        int fd, r;

        if (err && err_size > 0)
                err[0] = '\0';
        if (!path || !ret)
                return nn_error(err, err_size, -EINVAL, "gguf_open: invalid arguments");

        g = calloc(1, sizeof(*g));
        if (!g)
                return nn_error(err, err_size, -ENOMEM, "%s: out of memory", path);
        g->path = strdup(path);
        if (!g->path) {
                r = nn_error(err, err_size, -ENOMEM, "%s: out of memory", path);
                goto fail;
        }

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                r = -errno;
                nn_error(err, err_size, r, "%s: cannot open: %s", path, strerror(-r));
                goto fail;
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                nn_error(err, err_size, r, "%s: cannot stat: %s", path, strerror(-r));
                close(fd);
                goto fail;
        }
        if (!S_ISREG(st.st_mode)) {
                r = S_ISDIR(st.st_mode) ? -EISDIR : -EBADMSG;
                nn_error(err, err_size, r, "%s: not a regular file", path);
                close(fd);
                goto fail;
        }
        if ((uint64_t) st.st_size > SIZE_MAX) {
                r = nn_error(err, err_size, -EFBIG, "%s: file too large to map", path);
                close(fd);
                goto fail;
        }
        /* An empty file cannot be mapped; the parser refuses it without one. */
        if (st.st_size > 0) {
                void *m = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);

                if (m == MAP_FAILED) {
                        r = -errno;
                        nn_error(err, err_size, r, "%s: cannot map: %s", path, strerror(-r));
                        close(fd);
                        goto fail;
                }
                g->map = m;
                g->map_size = (size_t) st.st_size;
        }
        close(fd);

        r = gguf_parse(g, err, err_size);
        if (r < 0)
                goto fail;
        *ret = g;
        return 0;

fail:
        gguf_close(g);
        return r;
}

void gguf_close(struct gguf *g) {
        if (!g)
                return;
        for (size_t i = 0; i < g->n_kvs; i++)
                if (g->kvs[i].type == GGUF_TYPE_ARRAY && g->kvs[i].v.arr.type == GGUF_TYPE_STRING)
                        free((void *) g->kvs[i].v.arr.data);
        free(g->kvs);
        free(g->kvs_by_key);
        free(g->tensors);
        free(g->tensors_by_name);
        if (g->map)
                munmap((void *) g->map, g->map_size);
        free(g->path);
        free(g);
}

/* ---- Queries ------------------------------------------------------------ */

uint32_t gguf_version(const struct gguf *g) {
        return g->version;
}

const char *gguf_path(const struct gguf *g) {
        return g->path;
}

size_t gguf_alignment(const struct gguf *g) {
        return g->alignment;
}

size_t gguf_kv_count(const struct gguf *g) {
        return g->n_kvs;
}

const struct gguf_kv *gguf_kv_at(const struct gguf *g, size_t i) {
        return i < g->n_kvs ? &g->kvs[i] : NULL;
}

static int key_kv_cmp(const void *key, const void *elem) {
        return string_cmp(*(const struct gguf_string *) key, (*(const struct gguf_kv *const *) elem)->key);
}

const struct gguf_kv *gguf_find_kv(const struct gguf *g, const char *key) {
        struct gguf_string k;
        const struct gguf_kv *const *found;

        if (!key || g->n_kvs == 0)
                return NULL;
        k = (struct gguf_string) { .data = key, .len = strlen(key) };
        found = bsearch(&k, g->kvs_by_key, g->n_kvs, sizeof(*g->kvs_by_key), key_kv_cmp);
        return found ? *found : NULL;
}

static int find_typed(const struct gguf *g, const char *key, const struct gguf_kv **ret) {
        *ret = gguf_find_kv(g, key);
        return *ret ? 0 : -ENOENT;
}

int gguf_get_u64(const struct gguf *g, const char *key, uint64_t *ret) {
        const struct gguf_kv *kv;
        int r = find_typed(g, key, &kv);

        if (r < 0)
                return r;
        if (value_type_is_unsigned(kv->type)) {
                *ret = kv->v.u64;
                return 0;
        }
        if (value_type_is_signed(kv->type)) {
                if (kv->v.i64 < 0)
                        return -ERANGE;
                *ret = (uint64_t) kv->v.i64;
                return 0;
        }
        return -EMEDIUMTYPE;
}

int gguf_get_i64(const struct gguf *g, const char *key, int64_t *ret) {
        const struct gguf_kv *kv;
        int r = find_typed(g, key, &kv);

        if (r < 0)
                return r;
        if (value_type_is_signed(kv->type)) {
                *ret = kv->v.i64;
                return 0;
        }
        if (value_type_is_unsigned(kv->type)) {
                if (kv->v.u64 > INT64_MAX)
                        return -ERANGE;
                *ret = (int64_t) kv->v.u64;
                return 0;
        }
        return -EMEDIUMTYPE;
}

int gguf_get_f64(const struct gguf *g, const char *key, double *ret) {
        const struct gguf_kv *kv;
        int r = find_typed(g, key, &kv);

        if (r < 0)
                return r;
        if (value_type_is_float(kv->type))
                *ret = kv->v.f64;
        else if (value_type_is_signed(kv->type))
                *ret = (double) kv->v.i64;
        else if (value_type_is_unsigned(kv->type))
                *ret = (double) kv->v.u64;
        else
                return -EMEDIUMTYPE;
        return 0;
}

int gguf_get_bool(const struct gguf *g, const char *key, bool *ret) {
        const struct gguf_kv *kv;
        int r = find_typed(g, key, &kv);

        if (r < 0)
                return r;
        if (kv->type != GGUF_TYPE_BOOL)
                return -EMEDIUMTYPE;
        *ret = kv->v.u64 != 0;
        return 0;
}

int gguf_get_string(const struct gguf *g, const char *key, struct gguf_string *ret) {
        const struct gguf_kv *kv;
        int r = find_typed(g, key, &kv);

        if (r < 0)
                return r;
        if (kv->type != GGUF_TYPE_STRING)
                return -EMEDIUMTYPE;
        *ret = kv->v.str;
        return 0;
}

int gguf_get_array(const struct gguf *g, const char *key, enum gguf_value_type *elem_type, uint64_t *n,
                   const void **data) {
        const struct gguf_kv *kv;
        int r = find_typed(g, key, &kv);

        if (r < 0)
                return r;
        if (kv->type != GGUF_TYPE_ARRAY)
                return -EMEDIUMTYPE;
        if (elem_type)
                *elem_type = kv->v.arr.type;
        if (n)
                *n = kv->v.arr.n;
        if (data)
                *data = kv->v.arr.data;
        return 0;
}

/* Strings and unknown types read as 0: the caller checked the element type. */
double gguf_array_f64(enum gguf_value_type elem_type, const void *data, uint64_t i) {
        size_t n = value_type_size(elem_type);
        const uint8_t *b;

        if (n == 0)
                return 0;
        b = (const uint8_t *) data + i * n;
        if (elem_type == GGUF_TYPE_FLOAT32)
                return f32_from_bits((uint32_t) load_le(b, 4));
        if (elem_type == GGUF_TYPE_FLOAT64)
                return f64_from_bits(load_le(b, 8));
        if (value_type_is_signed(elem_type))
                return (double) sign_extend(load_le(b, n), n);
        return (double) load_le(b, n);
}

/* Floats truncate toward zero; what does not fit saturates, NaN reads 0. */
int64_t gguf_array_i64(enum gguf_value_type elem_type, const void *data, uint64_t i) {
        size_t n = value_type_size(elem_type);
        const uint8_t *b;

        if (n == 0)
                return 0;
        b = (const uint8_t *) data + i * n;
        if (value_type_is_float(elem_type)) {
                double d = gguf_array_f64(elem_type, data, i);

                if (isnan(d))
                        return 0;
                if (d >= 0x1p63)
                        return INT64_MAX;
                if (d < -0x1p63)
                        return INT64_MIN;
                return (int64_t) d;
        }
        if (value_type_is_signed(elem_type))
                return sign_extend(load_le(b, n), n);

        uint64_t u = load_le(b, n);
        return u > INT64_MAX ? INT64_MAX : (int64_t) u;
}

char *gguf_strdup(struct gguf_string s) {
        char *c;

        if (s.len >= SIZE_MAX)
                return NULL;
        c = malloc((size_t) s.len + 1);
        if (!c)
                return NULL;
        if (s.len > 0)
                memcpy(c, s.data, (size_t) s.len);
        c[s.len] = '\0';
        return c;
}

bool gguf_string_eq(struct gguf_string s, const char *c) {
        size_t n = strlen(c);

        return s.len == n && (n == 0 || memcmp(s.data, c, n) == 0);
}

size_t gguf_tensor_count(const struct gguf *g) {
        return g->n_tensors;
}

const struct gguf_tensor *gguf_tensor_at(const struct gguf *g, size_t i) {
        return i < g->n_tensors ? &g->tensors[i] : NULL;
}

static int name_tensor_cmp(const void *key, const void *elem) {
        return string_cmp(*(const struct gguf_string *) key, (*(const struct gguf_tensor *const *) elem)->name);
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name) {
        struct gguf_string k;
        const struct gguf_tensor *const *found;

        if (!name || g->n_tensors == 0)
                return NULL;
        k = (struct gguf_string) { .data = name, .len = strlen(name) };
        found = bsearch(&k, g->tensors_by_name, g->n_tensors, sizeof(*g->tensors_by_name), name_tensor_cmp);
        return found ? *found : NULL;
}

/* From the aligned start of the data section to the end of the last tensor:
 * the padding a writer may or may not leave after the last tensor, and
 * anything appended to the file, do not change a model's identity. */
const void *gguf_file_bytes(const struct gguf *g, uint64_t *size) {
        *size = g->map_size;
        return g->map;
}

const void *gguf_data(const struct gguf *g, uint64_t *size) {
        *size = g->data_size;
        if (g->data_offset >= g->map_size)
                return g->map ? g->map + g->map_size : NULL;
        return g->map + g->data_offset;
}

/* ---- Writing ------------------------------------------------------------ */

/* A growable buffer whose failure is sticky, so encoders need not check
 * every append. */
struct wbuf {
        uint8_t *data;
        size_t size;
        size_t cap;
        bool oom;
};

static void wbuf_put(struct wbuf *b, const void *p, size_t n) {
        if (b->oom || n == 0)
                return;
        if (n > b->cap - b->size) {
                size_t cap = b->cap ? b->cap : 64;
                uint8_t *d;

                while (cap - b->size < n) {
                        if (cap > SIZE_MAX / 2) {
                                b->oom = true;
                                return;
                        }
                        cap *= 2;
                }
                d = realloc(b->data, cap);
                if (!d) {
                        b->oom = true;
                        return;
                }
                b->data = d;
                b->cap = cap;
        }
        memcpy(b->data + b->size, p, n);
        b->size += n;
}

static void wbuf_le(struct wbuf *b, uint64_t v, size_t n) {
        uint8_t le[8];

        for (size_t i = 0; i < n; i++)
                le[i] = (uint8_t) (v >> (8 * i));
        wbuf_put(b, le, n);
}

static void wbuf_string(struct wbuf *b, const char *s, size_t n) {
        wbuf_le(b, n, 8);
        wbuf_put(b, s, n);
}

static void wbuf_zeros(struct wbuf *b, size_t n) {
        static const uint8_t zeros[64];

        while (n > 0) {
                size_t k = n < sizeof(zeros) ? n : sizeof(zeros);

                wbuf_put(b, zeros, k);
                n -= k;
        }
}

struct writer_kv {
        char *key;
        struct wbuf value;      /* value type, then the value, as in the file */
};

struct writer_tensor {
        char *name;
        enum nn_type type;
        uint32_t ndim;
        uint64_t ne[GGUF_MAX_DIMS];
        void *data;
        size_t size;
};

struct gguf_writer {
        uint32_t version;
        uint32_t alignment;
        struct writer_kv *kvs;
        size_t n_kvs;
        size_t cap_kvs;
        struct writer_tensor *tensors;
        size_t n_tensors;
        size_t cap_tensors;
};

struct gguf_writer *gguf_writer_new(uint32_t version) {
        struct gguf_writer *w;

        if (version != 2 && version != 3) {
                errno = EINVAL;
                return NULL;
        }
        w = calloc(1, sizeof(*w));
        if (!w)
                return NULL;
        w->version = version;
        w->alignment = GGUF_DEFAULT_ALIGNMENT;
        return w;
}

void gguf_writer_free(struct gguf_writer *w) {
        if (!w)
                return;
        for (size_t i = 0; i < w->n_kvs; i++) {
                free(w->kvs[i].key);
                free(w->kvs[i].value.data);
        }
        free(w->kvs);
        for (size_t i = 0; i < w->n_tensors; i++) {
                free(w->tensors[i].name);
                free(w->tensors[i].data);
        }
        free(w->tensors);
        free(w);
}

/* What the reader accepts as a key or tensor name. */
static bool writer_name_is_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strnlen(s, GGUF_NAME_MAX + 1);
        return n > 0 && n <= GGUF_NAME_MAX;
}

static int writer_check_key(const struct gguf_writer *w, const char *key) {
        if (!writer_name_is_valid(key))
                return -EINVAL;
        for (size_t i = 0; i < w->n_kvs; i++)
                if (strcmp(w->kvs[i].key, key) == 0)
                        return -EEXIST;
        return 0;
}

/* Takes value's buffer in every case. */
static int writer_push_kv(struct gguf_writer *w, const char *key, struct wbuf *value) {
        char *k = NULL;
        int r;

        r = writer_check_key(w, key);
        if (r < 0)
                goto fail;
        r = -ENOMEM;
        if (value->oom)
                goto fail;
        if (w->n_kvs == w->cap_kvs) {
                size_t cap = w->cap_kvs ? w->cap_kvs * 2 : 16;
                struct writer_kv *kvs = reallocarray(w->kvs, cap, sizeof(*kvs));

                if (!kvs)
                        goto fail;
                w->kvs = kvs;
                w->cap_kvs = cap;
        }
        k = strdup(key);
        if (!k)
                goto fail;
        w->kvs[w->n_kvs++] = (struct writer_kv) { .key = k, .value = *value };
        return 0;

fail:
        free(value->data);
        *value = (struct wbuf) {};
        return r;
}

static int writer_set_scalar(struct gguf_writer *w, const char *key, enum gguf_value_type type, uint64_t bits) {
        struct wbuf v = {};

        /* The reader requires the alignment as a uint32; only set_u32 may set it. */
        if (key && strcmp(key, GGUF_ALIGNMENT_KEY) == 0 && type != GGUF_TYPE_UINT32)
                return -EINVAL;
        wbuf_le(&v, type, 4);
        wbuf_le(&v, bits, value_type_size(type));
        return writer_push_kv(w, key, &v);
}

int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v) {
        bool is_alignment = key && strcmp(key, GGUF_ALIGNMENT_KEY) == 0;
        int r;

        if (is_alignment && (v == 0 || (v & (v - 1)) != 0))
                return -EINVAL;
        r = writer_set_scalar(w, key, GGUF_TYPE_UINT32, v);
        if (r >= 0 && is_alignment)
                w->alignment = v;
        return r;
}

int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v) {
        return writer_set_scalar(w, key, GGUF_TYPE_INT32, (uint32_t) v);
}

int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v) {
        return writer_set_scalar(w, key, GGUF_TYPE_UINT64, v);
}

int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v) {
        uint32_t bits;

        memcpy(&bits, &v, sizeof(bits));
        return writer_set_scalar(w, key, GGUF_TYPE_FLOAT32, bits);
}

int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v) {
        return writer_set_scalar(w, key, GGUF_TYPE_BOOL, v ? 1 : 0);
}

int gguf_writer_set_string(struct gguf_writer *w, const char *key, const char *v) {
        struct wbuf b = {};

        if (!v || (key && strcmp(key, GGUF_ALIGNMENT_KEY) == 0))
                return -EINVAL;
        wbuf_le(&b, GGUF_TYPE_STRING, 4);
        wbuf_string(&b, v, strlen(v));
        return writer_push_kv(w, key, &b);
}

int gguf_writer_set_array(struct gguf_writer *w, const char *key, enum gguf_value_type elem_type,
                          const void *data, uint64_t n) {
        size_t elem_size = value_type_size(elem_type);
        const uint8_t *src = data;
        struct wbuf b = {};

        if (elem_size == 0 || (n > 0 && !data) || (key && strcmp(key, GGUF_ALIGNMENT_KEY) == 0))
                return -EINVAL;
        if (n > SIZE_MAX / elem_size)
                return -ENOMEM;
        wbuf_le(&b, GGUF_TYPE_ARRAY, 4);
        wbuf_le(&b, elem_type, 4);
        wbuf_le(&b, n, 8);
        for (uint64_t i = 0; i < n && !b.oom; i++) {
                const void *e = src + i * elem_size;
                uint64_t bits;

                /* From native to little-endian, whatever the host's order. */
                switch (elem_size) {
                case 1: {
                        uint8_t x;
                        memcpy(&x, e, 1);
                        if (elem_type == GGUF_TYPE_BOOL && x > 1) {
                                free(b.data);
                                return -EINVAL;
                        }
                        bits = x;
                        break;
                }
                case 2: {
                        uint16_t x;
                        memcpy(&x, e, 2);
                        bits = x;
                        break;
                }
                case 4: {
                        uint32_t x;
                        memcpy(&x, e, 4);
                        bits = x;
                        break;
                }
                default:
                        memcpy(&bits, e, 8);
                        break;
                }
                wbuf_le(&b, bits, elem_size);
        }
        return writer_push_kv(w, key, &b);
}

int gguf_writer_set_string_array(struct gguf_writer *w, const char *key, const char *const *v, uint64_t n) {
        struct wbuf b = {};

        if ((n > 0 && !v) || (key && strcmp(key, GGUF_ALIGNMENT_KEY) == 0))
                return -EINVAL;
        for (uint64_t i = 0; i < n; i++)
                if (!v[i])
                        return -EINVAL;
        wbuf_le(&b, GGUF_TYPE_ARRAY, 4);
        wbuf_le(&b, GGUF_TYPE_STRING, 4);
        wbuf_le(&b, n, 8);
        for (uint64_t i = 0; i < n && !b.oom; i++)
                wbuf_string(&b, v[i], strlen(v[i]));
        return writer_push_kv(w, key, &b);
}

int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum nn_type type,
                           uint32_t ndim, const uint64_t *ne, const void *data) {
        struct writer_tensor t = { .type = type, .ndim = ndim }, *slot;
        uint64_t rows = 1, size;
        size_t row_bytes;

        if (!writer_name_is_valid(name) || !nn_type_supported(type) || ndim < 1 || ndim > GGUF_MAX_DIMS ||
            !ne || !data)
                return -EINVAL;
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
                t.ne[d] = d < ndim ? ne[d] : 1;
                if (t.ne[d] == 0)
                        return -EINVAL;
                if (d > 0 && __builtin_mul_overflow(rows, t.ne[d], &rows))
                        return -EINVAL;
        }
        row_bytes = nn_row_bytes(type, t.ne[0]);
        if (row_bytes == 0 || __builtin_mul_overflow((uint64_t) row_bytes, rows, &size) || size > SIZE_MAX)
                return -EINVAL;
        for (size_t i = 0; i < w->n_tensors; i++)
                if (strcmp(w->tensors[i].name, name) == 0)
                        return -EEXIST;

        if (w->n_tensors == w->cap_tensors) {
                size_t cap = w->cap_tensors ? w->cap_tensors * 2 : 16;
                struct writer_tensor *ts = reallocarray(w->tensors, cap, sizeof(*ts));

                if (!ts)
                        return -ENOMEM;
                w->tensors = ts;
                w->cap_tensors = cap;
        }
        slot = &w->tensors[w->n_tensors];
        *slot = t;
        slot->size = (size_t) size;
        slot->name = strdup(name);
        slot->data = malloc(slot->size);
        if (!slot->name || !slot->data) {
                free(slot->name);
                free(slot->data);
                return -ENOMEM;
        }
        memcpy(slot->data, data, slot->size);
        w->n_tensors++;
        return 0;
}

static size_t padding(uint64_t pos, size_t alignment) {
        return (size_t) ((alignment - pos % alignment) % alignment);
}

static int write_all(int fd, const void *p, size_t n) {
        const uint8_t *b = p;

        while (n > 0) {
                ssize_t k = write(fd, b, n);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                b += k;
                n -= (size_t) k;
        }
        return 0;
}

static int write_zeros(int fd, size_t n) {
        static const uint8_t zeros[256];

        while (n > 0) {
                size_t k = n < sizeof(zeros) ? n : sizeof(zeros);
                int r = write_all(fd, zeros, k);

                if (r < 0)
                        return r;
                n -= k;
        }
        return 0;
}

/* Everything before the data section: header, metadata, tensor infos and
 * the padding up to the first aligned byte. */
static int writer_build_head(const struct gguf_writer *w, struct wbuf *b) {
        uint64_t offset = 0;

        wbuf_put(b, GGUF_MAGIC, 4);
        wbuf_le(b, w->version, 4);
        wbuf_le(b, w->n_tensors, 8);
        wbuf_le(b, w->n_kvs, 8);
        for (size_t i = 0; i < w->n_kvs; i++) {
                wbuf_string(b, w->kvs[i].key, strlen(w->kvs[i].key));
                wbuf_put(b, w->kvs[i].value.data, w->kvs[i].value.size);
        }
        for (size_t i = 0; i < w->n_tensors; i++) {
                const struct writer_tensor *t = &w->tensors[i];

                wbuf_string(b, t->name, strlen(t->name));
                wbuf_le(b, t->ndim, 4);
                for (uint32_t d = 0; d < t->ndim; d++)
                        wbuf_le(b, t->ne[d], 8);
                wbuf_le(b, t->type, 4);
                wbuf_le(b, offset, 8);
                if (__builtin_add_overflow(offset, (uint64_t) t->size + padding(t->size, w->alignment), &offset))
                        return -EFBIG;
        }
        wbuf_zeros(b, padding(b->size, w->alignment));
        return b->oom ? -ENOMEM : 0;
}

int gguf_writer_write(struct gguf_writer *w, const char *path) {
        struct wbuf head = {};
        char *tmp = NULL;
        int fd = -1, r;

        if (!path)
                return -EINVAL;
        r = writer_build_head(w, &head);
        if (r < 0)
                goto finish;
        if (asprintf(&tmp, "%s.tmp", path) < 0) {
                tmp = NULL;
                r = -ENOMEM;
                goto finish;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);
        if (fd < 0) {
                r = -errno;
                goto finish;
        }

        r = write_all(fd, head.data, head.size);
        for (size_t i = 0; r >= 0 && i < w->n_tensors; i++) {
                r = write_all(fd, w->tensors[i].data, w->tensors[i].size);
                if (r >= 0)
                        r = write_zeros(fd, padding(w->tensors[i].size, w->alignment));
        }
        /* The rename must not publish a file whose data is still in flight. */
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r >= 0)
                r = -errno;
        fd = -1;
        if (r >= 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                (void) unlink(tmp);

finish:
        if (fd >= 0)
                close(fd);
        free(tmp);
        free(head.data);
        return r;
}

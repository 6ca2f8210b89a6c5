/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "nn-type.h"

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

static char dir[64];

static void setup(void) {
        strcpy(dir, "/tmp/test-gguf-XXXXXX");
        cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
        DIR *d = opendir(dir);
        struct dirent *e;

        if (!d)
                return;
        while ((e = readdir(d)))
                if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, ".."))
                        (void) unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
        (void) rmdir(dir);
}

TestSuite(gguf, .init = setup, .fini = teardown);

/* ---- Helpers ---------------------------------------------------------- */

/* A path in this test's directory; a few stay valid at once. */
static const char *tpath(const char *name) {
        static char buf[4][256];
        static unsigned k;
        char *p = buf[k++ % ELEMENTSOF(buf)];

        snprintf(p, sizeof(buf[0]), "%s/%s", dir, name);
        return p;
}

/* Builds hostile files byte by byte. */
struct bytes {
        uint8_t *data;
        size_t size;
};

static void put(struct bytes *b, const void *p, size_t n) {
        b->data = realloc(b->data, b->size + n + 1);
        cr_assert_not_null(b->data);
        memcpy(b->data + b->size, p, n);
        b->size += n;
}

static void put_le(struct bytes *b, uint64_t v, size_t n) {
        uint8_t le[8];

        for (size_t i = 0; i < n; i++)
                le[i] = (uint8_t) (v >> (8 * i));
        put(b, le, n);
}

static void put_u8(struct bytes *b, uint8_t v) {
        put_le(b, v, 1);
}

static void put_u32(struct bytes *b, uint32_t v) {
        put_le(b, v, 4);
}

static void put_u64(struct bytes *b, uint64_t v) {
        put_le(b, v, 8);
}

static void put_str(struct bytes *b, const char *s) {
        put_u64(b, strlen(s));
        put(b, s, strlen(s));
}

static void put_header(struct bytes *b, uint32_t version, uint64_t n_tensors, uint64_t n_kvs) {
        put(b, "GGUF", 4);
        put_u32(b, version);
        put_u64(b, n_tensors);
        put_u64(b, n_kvs);
}

static void put_kv_u32(struct bytes *b, const char *key, uint32_t v) {
        put_str(b, key);
        put_u32(b, GGUF_TYPE_UINT32);
        put_u32(b, v);
}

static void put_tensor_info(struct bytes *b, const char *name, uint32_t ndim, const uint64_t *ne, uint32_t type,
                            uint64_t offset) {
        put_str(b, name);
        put_u32(b, ndim);
        for (uint32_t d = 0; d < ndim; d++)
                put_u64(b, ne[d]);
        put_u32(b, type);
        put_u64(b, offset);
}

static void put_fill(struct bytes *b, uint8_t c, size_t n) {
        for (size_t i = 0; i < n; i++)
                put_u8(b, c);
}

static void put_pad(struct bytes *b, size_t alignment) {
        put_fill(b, 0, (alignment - b->size % alignment) % alignment);
}

static void write_file(const char *path, const void *data, size_t size) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
        cr_assert_eq(write(fd, data, size), (ssize_t) size);
        cr_assert_eq(close(fd), 0);
}

static uint8_t *read_file(const char *path, size_t *size) {
        struct stat st;
        uint8_t *data;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        cr_assert_geq(fd, 0);
        cr_assert_eq(fstat(fd, &st), 0);
        data = malloc((size_t) st.st_size + 1);
        cr_assert_not_null(data);
        cr_assert_eq(read(fd, data, (size_t) st.st_size), st.st_size);
        close(fd);
        *size = (size_t) st.st_size;
        return data;
}

static void expect_refused_path(const char *path, int expected, const char *word) {
        struct gguf *g = NULL;
        char err[512] = "unset";
        size_t n = strlen(path);
        int r;

        r = gguf_open(path, &g, err, sizeof(err));
        cr_assert_eq(r, expected, "got %d (%s), want %d (%s): %s", r, strerror(-r), expected,
                     strerror(-expected), err);
        cr_assert_null(g);
        cr_assert(strncmp(err, path, n) == 0 && err[n] == ':', "message does not start with the path: %s", err);
        cr_assert_not_null(strstr(err, word), "message lacks \"%s\": %s", word, err);
        cr_assert_null(strchr(err, '\n'), "message is not one line: %s", err);
}

static void expect_refused(struct bytes *b, int expected, const char *word) {
        const char *path = tpath("hostile.gguf");

        write_file(path, b->data, b->size);
        expect_refused_path(path, expected, word);
        free(b->data);
        *b = (struct bytes) {};
}

static struct gguf *open_ok(const char *path) {
        struct gguf *g = NULL;
        char err[512] = "";
        int r = gguf_open(path, &g, err, sizeof(err));

        cr_assert_eq(r, 0, "gguf_open: %s: %s", strerror(-r), err);
        cr_assert_not_null(g);
        return g;
}

static void fill_random(void *p, size_t n, unsigned *seed) {
        uint8_t *b = p;

        for (size_t i = 0; i < n; i++)
                b[i] = (uint8_t) rand_r(seed);
}

static const enum nn_type all_types[] = {
        NN_TYPE_F32, NN_TYPE_F16, NN_TYPE_BF16, NN_TYPE_Q4_0,
        NN_TYPE_Q8_0, NN_TYPE_Q4_K, NN_TYPE_Q5_K, NN_TYPE_Q6_K,
};

/* A file with one key (general.name) and the given tensor infos, then
 * data_bytes of data after the aligned start. */
struct tinfo {
        const char *name;
        uint32_t ndim;
        uint64_t ne[GGUF_MAX_DIMS];
        uint32_t type;
        uint64_t offset;
};

static struct bytes build_file(const struct tinfo *t, size_t n, size_t data_bytes) {
        struct bytes b = {};

        put_header(&b, 3, n, 1);
        put_str(&b, "general.name");
        put_u32(&b, GGUF_TYPE_STRING);
        put_str(&b, "hostile");
        for (size_t i = 0; i < n; i++)
                put_tensor_info(&b, t[i].name, t[i].ndim, t[i].ne, t[i].type, t[i].offset);
        put_pad(&b, GGUF_DEFAULT_ALIGNMENT);
        put_fill(&b, 0xab, data_bytes);
        return b;
}

/* ---- Round trips ------------------------------------------------------ */

static void round_trip(uint32_t version) {
        static const uint8_t u8s[] = { 0, 1, 255 };
        static const int8_t i8s[] = { -128, 0, 127 };
        static const uint16_t u16s[] = { 0, 65535, 258 };
        static const int16_t i16s[] = { -32768, 32767 };
        static const uint32_t u32s[] = { 0, UINT32_MAX, 0x01020304 };
        static const int32_t i32s[] = { INT32_MIN, INT32_MAX, -1 };
        static const float f32s[] = { 1.5f, -0.25f, 1e30f };
        static const bool bools[] = { true, false, true };
        static const uint64_t u64s[] = { UINT64_MAX, 1 };
        static const int64_t i64s[] = { INT64_MIN, INT64_MAX };
        static const double f64s[] = { 0.1, -1e300 };
        static const struct {
                const char *key;
                enum gguf_value_type type;
                const void *data;
                size_t n, size;
        } arrays[] = {
                { "a.u8", GGUF_TYPE_UINT8, u8s, ELEMENTSOF(u8s), sizeof(u8s) },
                { "a.i8", GGUF_TYPE_INT8, i8s, ELEMENTSOF(i8s), sizeof(i8s) },
                { "a.u16", GGUF_TYPE_UINT16, u16s, ELEMENTSOF(u16s), sizeof(u16s) },
                { "a.i16", GGUF_TYPE_INT16, i16s, ELEMENTSOF(i16s), sizeof(i16s) },
                { "a.u32", GGUF_TYPE_UINT32, u32s, ELEMENTSOF(u32s), sizeof(u32s) },
                { "a.i32", GGUF_TYPE_INT32, i32s, ELEMENTSOF(i32s), sizeof(i32s) },
                { "a.f32", GGUF_TYPE_FLOAT32, f32s, ELEMENTSOF(f32s), sizeof(f32s) },
                { "a.bool", GGUF_TYPE_BOOL, bools, ELEMENTSOF(bools), sizeof(bools) },
                { "a.u64", GGUF_TYPE_UINT64, u64s, ELEMENTSOF(u64s), sizeof(u64s) },
                { "a.i64", GGUF_TYPE_INT64, i64s, ELEMENTSOF(i64s), sizeof(i64s) },
                { "a.f64", GGUF_TYPE_FLOAT64, f64s, ELEMENTSOF(f64s), sizeof(f64s) },
                { "a.empty", GGUF_TYPE_UINT32, u32s, 0, 0 },
        };
        static const char *const strs[] = { "hello", "", "wörld", "a\nb" };
        const char *path = tpath("model.gguf");
        struct gguf_writer *w = gguf_writer_new(version);
        unsigned seed = 42;
        void *tdata[ELEMENTSOF(all_types) + 1];
        uint64_t tne[ELEMENTSOF(all_types) + 1][GGUF_MAX_DIMS];
        uint32_t tndim[ELEMENTSOF(all_types) + 1];
        size_t tsize[ELEMENTSOF(all_types) + 1];
        char tname[ELEMENTSOF(all_types) + 1][32];
        size_t nt = 0;
        struct gguf *g;
        const struct gguf_kv *kv;
        struct gguf_string s;
        uint64_t u;
        int64_t i;
        double f;
        bool bo;

        cr_assert_not_null(w);
        cr_assert_eq(gguf_writer_set_u32(w, "k.u32", 4000000000u), 0);
        cr_assert_eq(gguf_writer_set_i32(w, "k.i32", -123456), 0);
        cr_assert_eq(gguf_writer_set_u64(w, "k.u64", UINT64_MAX - 1), 0);
        cr_assert_eq(gguf_writer_set_f32(w, "k.f32", 0.3f), 0);
        cr_assert_eq(gguf_writer_set_bool(w, "k.true", true), 0);
        cr_assert_eq(gguf_writer_set_bool(w, "k.false", false), 0);
        cr_assert_eq(gguf_writer_set_string(w, "k.str", "llama"), 0);
        cr_assert_eq(gguf_writer_set_string(w, "k.empty", ""), 0);
        for (size_t k = 0; k < ELEMENTSOF(arrays); k++)
                cr_assert_eq(gguf_writer_set_array(w, arrays[k].key, arrays[k].type, arrays[k].data, arrays[k].n), 0);
        cr_assert_eq(gguf_writer_set_string_array(w, "a.str", strs, ELEMENTSOF(strs)), 0);

        /* Every type, in shapes of 1, 2 and 4 dimensions. */
        for (size_t k = 0; k < ELEMENTSOF(all_types); k++, nt++) {
                enum nn_type type = all_types[k];
                uint64_t rows;

                tndim[nt] = 1 + (uint32_t) (k % 3 == 2 ? 3 : k % 3);
                tne[nt][0] = nn_type_block_elems(type) * (1 + k % 2);
                tne[nt][1] = tndim[nt] > 1 ? 3 : 1;
                tne[nt][2] = tndim[nt] > 2 ? 2 : 1;
                tne[nt][3] = tndim[nt] > 3 ? 2 : 1;
                rows = tne[nt][1] * tne[nt][2] * tne[nt][3];
                tsize[nt] = nn_row_bytes(type, tne[nt][0]) * rows;
                tdata[nt] = malloc(tsize[nt]);
                fill_random(tdata[nt], tsize[nt], &seed);
                snprintf(tname[nt], sizeof(tname[nt]), "blk.%zu.%s", k, nn_type_name(type));
                cr_assert_eq(gguf_writer_add_tensor(w, tname[nt], type, tndim[nt], tne[nt], tdata[nt]), 0);
        }
        cr_assert_eq(gguf_writer_write(w, path), 0);
        gguf_writer_free(w);
        cr_assert_eq(access(tpath("model.gguf.tmp"), F_OK), -1, "the temporary file is left behind");

        g = open_ok(path);
        cr_assert_eq(gguf_version(g), version);
        cr_assert_str_eq(gguf_path(g), path);
        cr_assert_eq(gguf_alignment(g), GGUF_DEFAULT_ALIGNMENT);
        cr_assert_eq(gguf_kv_count(g), 8 + ELEMENTSOF(arrays) + 1);
        cr_assert(gguf_string_eq(gguf_kv_at(g, 0)->key, "k.u32"), "keys keep their order");
        cr_assert(gguf_string_eq(gguf_kv_at(g, 8)->key, "a.u8"));
        cr_assert_null(gguf_kv_at(g, gguf_kv_count(g)));

        kv = gguf_find_kv(g, "k.u32");
        cr_assert_not_null(kv);
        cr_assert_eq(kv->type, GGUF_TYPE_UINT32);
        cr_assert_eq(kv->v.u64, 4000000000u);
        cr_assert_eq(gguf_get_u64(g, "k.u32", &u), 0);
        cr_assert_eq(u, 4000000000u);
        cr_assert_eq(gguf_find_kv(g, "k.i32")->type, GGUF_TYPE_INT32);
        cr_assert_eq(gguf_get_i64(g, "k.i32", &i), 0);
        cr_assert_eq(i, -123456);
        cr_assert_eq(gguf_get_u64(g, "k.u64", &u), 0);
        cr_assert_eq(u, UINT64_MAX - 1);
        cr_assert_eq(gguf_find_kv(g, "k.f32")->type, GGUF_TYPE_FLOAT32);
        cr_assert_eq(gguf_get_f64(g, "k.f32", &f), 0);
        cr_assert_eq(f, (double) 0.3f);
        cr_assert_eq(gguf_get_bool(g, "k.true", &bo), 0);
        cr_assert(bo);
        cr_assert_eq(gguf_get_bool(g, "k.false", &bo), 0);
        cr_assert(!bo);
        cr_assert_eq(gguf_get_string(g, "k.str", &s), 0);
        cr_assert(gguf_string_eq(s, "llama"));
        cr_assert_eq(gguf_get_string(g, "k.empty", &s), 0);
        cr_assert_eq(s.len, 0);

        for (size_t k = 0; k < ELEMENTSOF(arrays); k++) {
                enum gguf_value_type et;
                const void *data;
                uint64_t n;

                cr_assert_eq(gguf_get_array(g, arrays[k].key, &et, &n, &data), 0, "%s", arrays[k].key);
                cr_assert_eq(et, arrays[k].type, "%s", arrays[k].key);
                cr_assert_eq(n, arrays[k].n, "%s", arrays[k].key);
                /* This host is little-endian, like the file. */
                cr_assert(arrays[k].size == 0 || memcmp(data, arrays[k].data, arrays[k].size) == 0, "%s",
                          arrays[k].key);
        }
        {
                enum gguf_value_type et;
                const void *data;
                uint64_t n;

                cr_assert_eq(gguf_get_array(g, "a.i8", &et, &n, &data), 0);
                cr_assert_eq(gguf_array_i64(et, data, 0), -128);
                cr_assert_eq(gguf_array_f64(et, data, 2), 127.0);
                cr_assert_eq(gguf_get_array(g, "a.u16", &et, &n, &data), 0);
                cr_assert_eq(gguf_array_i64(et, data, 1), 65535);
                cr_assert_eq(gguf_get_array(g, "a.i32", &et, &n, &data), 0);
                cr_assert_eq(gguf_array_i64(et, data, 0), INT32_MIN);
                cr_assert_eq(gguf_array_f64(et, data, 2), -1.0);
                cr_assert_eq(gguf_get_array(g, "a.f32", &et, &n, &data), 0);
                cr_assert_eq(gguf_array_f64(et, data, 1), -0.25);
                cr_assert_eq(gguf_array_i64(et, data, 0), 1);
                cr_assert_eq(gguf_get_array(g, "a.u64", &et, &n, &data), 0);
                cr_assert_eq(gguf_array_i64(et, data, 0), INT64_MAX, "saturates");
                cr_assert_eq(gguf_get_array(g, "a.i64", &et, &n, &data), 0);
                cr_assert_eq(gguf_array_i64(et, data, 0), INT64_MIN);
                cr_assert_eq(gguf_get_array(g, "a.f64", &et, &n, &data), 0);
                cr_assert_eq(gguf_array_f64(et, data, 0), 0.1);
                cr_assert_eq(gguf_array_f64(et, data, 1), -1e300);
                cr_assert_eq(gguf_array_i64(et, data, 1), INT64_MIN, "saturates");
                cr_assert_eq(gguf_get_array(g, "a.bool", &et, &n, &data), 0);
                cr_assert_eq(gguf_array_i64(et, data, 0), 1);
                cr_assert_eq(gguf_array_i64(et, data, 1), 0);

                cr_assert_eq(gguf_get_array(g, "a.str", &et, &n, &data), 0);
                cr_assert_eq(et, GGUF_TYPE_STRING);
                cr_assert_eq(n, ELEMENTSOF(strs));
                for (size_t k = 0; k < ELEMENTSOF(strs); k++)
                        cr_assert(gguf_string_eq(((const struct gguf_string *) data)[k], strs[k]), "%zu", k);
        }

        cr_assert_eq(gguf_tensor_count(g), nt);
        cr_assert_null(gguf_tensor_at(g, nt));
        cr_assert_null(gguf_find_tensor(g, "blk.99.f32"));
        {
                uint64_t data_size, end = 0;
                const uint8_t *data = gguf_data(g, &data_size);

                for (size_t k = 0; k < nt; k++) {
                        const struct gguf_tensor *t = gguf_tensor_at(g, k);

                        cr_assert(gguf_string_eq(t->name, tname[k]), "tensors keep their order");
                        cr_assert_eq(gguf_find_tensor(g, tname[k]), t);
                        cr_assert_eq(t->type, all_types[k]);
                        cr_assert_eq(t->ndim, tndim[k]);
                        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++)
                                cr_assert_eq(t->ne[d], tne[k][d], "%s ne[%u]", tname[k], d);
                        cr_assert_eq(t->n_elements, tne[k][0] * tne[k][1] * tne[k][2] * tne[k][3]);
                        cr_assert_eq(t->size, tsize[k]);
                        cr_assert_eq(t->offset % GGUF_DEFAULT_ALIGNMENT, 0);
                        cr_assert_eq((uintptr_t) t->data % GGUF_DEFAULT_ALIGNMENT, 0);
                        cr_assert_eq((const uint8_t *) t->data, data + t->offset);
                        cr_assert_eq(memcmp(t->data, tdata[k], tsize[k]), 0, "%s data", tname[k]);
                        if (t->offset + t->size > end)
                                end = t->offset + t->size;
                }
                cr_assert_eq(data_size, end, "the data section ends with the last tensor");
        }
        gguf_close(g);
        for (size_t k = 0; k < nt; k++)
                free(tdata[k]);
}

Test(gguf, round_trip_v3_preserves_every_value_array_and_tensor_type) {
        round_trip(3);
}

Test(gguf, round_trip_v2_preserves_every_value_array_and_tensor_type) {
        round_trip(2);
}

Test(gguf, hand_built_scalars_of_every_type_are_read) {
        struct bytes b = {};
        const char *path = tpath("scalars.gguf");
        struct gguf *g;
        uint64_t u;
        int64_t i;
        double f;

        put_header(&b, 3, 0, 7);
        put_str(&b, "u8");
        put_u32(&b, GGUF_TYPE_UINT8);
        put_u8(&b, 200);
        put_str(&b, "i8");
        put_u32(&b, GGUF_TYPE_INT8);
        put_u8(&b, (uint8_t) -5);
        put_str(&b, "u16");
        put_u32(&b, GGUF_TYPE_UINT16);
        put_le(&b, 60000, 2);
        put_str(&b, "i16");
        put_u32(&b, GGUF_TYPE_INT16);
        put_le(&b, (uint16_t) -300, 2);
        put_str(&b, "i64");
        put_u32(&b, GGUF_TYPE_INT64);
        put_u64(&b, (uint64_t) -(INT64_C(1) << 40));
        put_str(&b, "f64");
        put_u32(&b, GGUF_TYPE_FLOAT64);
        {
                double d = 2.5;
                uint64_t bits;

                memcpy(&bits, &d, sizeof(bits));
                put_u64(&b, bits);
        }
        put_str(&b, "u64");
        put_u32(&b, GGUF_TYPE_UINT64);
        put_u64(&b, UINT64_C(1) << 63);
        write_file(path, b.data, b.size);
        free(b.data);

        g = open_ok(path);
        cr_assert_eq(gguf_tensor_count(g), 0);
        cr_assert_eq(gguf_get_u64(g, "u8", &u), 0);
        cr_assert_eq(u, 200);
        cr_assert_eq(gguf_get_i64(g, "i8", &i), 0);
        cr_assert_eq(i, -5);
        cr_assert_eq(gguf_get_u64(g, "u16", &u), 0);
        cr_assert_eq(u, 60000);
        cr_assert_eq(gguf_get_i64(g, "i16", &i), 0);
        cr_assert_eq(i, -300);
        cr_assert_eq(gguf_get_i64(g, "i64", &i), 0);
        cr_assert_eq(i, -(INT64_C(1) << 40));
        cr_assert_eq(gguf_get_f64(g, "f64", &f), 0);
        cr_assert_eq(f, 2.5);
        cr_assert_eq(gguf_get_u64(g, "u64", &u), 0);
        cr_assert_eq(u, UINT64_C(1) << 63);
        {
                uint64_t size;

                gguf_data(g, &size);
                cr_assert_eq(size, 0, "no tensors, no data");
        }
        gguf_close(g);
}

Test(gguf, getters_report_absent_keys_other_types_and_values_out_of_range) {
        const char *path = tpath("getters.gguf");
        struct gguf_writer *w = gguf_writer_new(3);
        struct gguf *g;
        struct gguf_string s;
        const void *data;
        uint64_t u;
        int64_t i;
        double f;
        bool b;

        cr_assert_eq(gguf_writer_set_u32(w, "u32", 7), 0);
        cr_assert_eq(gguf_writer_set_i32(w, "neg", -1), 0);
        cr_assert_eq(gguf_writer_set_u64(w, "big", UINT64_C(1) << 63), 0);
        cr_assert_eq(gguf_writer_set_f32(w, "f", 2.0f), 0);
        cr_assert_eq(gguf_writer_set_bool(w, "b", true), 0);
        cr_assert_eq(gguf_writer_set_string(w, "s", "x"), 0);
        cr_assert_eq(gguf_writer_write(w, path), 0);
        gguf_writer_free(w);

        g = open_ok(path);
        cr_assert_eq(gguf_get_u64(g, "missing", &u), -ENOENT);
        cr_assert_null(gguf_find_kv(g, "missing"));
        cr_assert_null(gguf_find_kv(g, "u3"), "a prefix does not match");
        cr_assert_eq(gguf_get_i64(g, "u32", &i), 0);
        cr_assert_eq(i, 7);
        cr_assert_eq(gguf_get_f64(g, "u32", &f), 0, "integers read as doubles");
        cr_assert_eq(f, 7.0);
        cr_assert_eq(gguf_get_f64(g, "neg", &f), 0);
        cr_assert_eq(f, -1.0);
        cr_assert_eq(gguf_get_u64(g, "neg", &u), -ERANGE);
        cr_assert_eq(gguf_get_i64(g, "big", &i), -ERANGE);
        cr_assert_eq(gguf_get_u64(g, "f", &u), -EMEDIUMTYPE);
        cr_assert_eq(gguf_get_i64(g, "s", &i), -EMEDIUMTYPE);
        cr_assert_eq(gguf_get_u64(g, "b", &u), -EMEDIUMTYPE, "a bool is not an integer");
        cr_assert_eq(gguf_get_bool(g, "u32", &b), -EMEDIUMTYPE);
        cr_assert_eq(gguf_get_string(g, "b", &s), -EMEDIUMTYPE);
        cr_assert_eq(gguf_get_f64(g, "s", &f), -EMEDIUMTYPE);
        cr_assert_eq(gguf_get_array(g, "s", NULL, NULL, &data), -EMEDIUMTYPE);
        cr_assert_eq(gguf_get_array(g, "missing", NULL, NULL, &data), -ENOENT);
        gguf_close(g);
}

Test(gguf, vocabulary_of_150k_strings_round_trips) {
        const size_t n = 150000;
        const char *path = tpath("vocab.gguf");
        char *buf = malloc(n * 16);
        const char **v = calloc(n, sizeof(*v));
        struct gguf_writer *w = gguf_writer_new(3);
        enum gguf_value_type et;
        const void *data;
        uint64_t count;
        struct gguf *g;

        for (size_t i = 0; i < n; i++) {
                snprintf(buf + i * 16, 16, "tok%zu", i);
                v[i] = buf + i * 16;
        }
        cr_assert_eq(gguf_writer_set_string_array(w, "tokenizer.ggml.tokens", v, n), 0);
        cr_assert_eq(gguf_writer_write(w, path), 0);
        gguf_writer_free(w);

        g = open_ok(path);
        cr_assert_eq(gguf_get_array(g, "tokenizer.ggml.tokens", &et, &count, &data), 0);
        cr_assert_eq(et, GGUF_TYPE_STRING);
        cr_assert_eq(count, n);
        for (size_t i = 0; i < n; i += 9973)
                cr_assert(gguf_string_eq(((const struct gguf_string *) data)[i], v[i]), "%zu", i);
        cr_assert(gguf_string_eq(((const struct gguf_string *) data)[n - 1], v[n - 1]));
        gguf_close(g);
        free(v);
        free(buf);
}

Test(gguf, alignment_key_places_every_tensor_on_that_boundary) {
        const char *path = tpath("align.gguf");
        struct gguf_writer *w = gguf_writer_new(3);
        float a[10] = { 1 }, b[10] = { 2 };
        uint64_t ne[1] = { 10 };
        struct gguf *g;

        cr_assert_eq(gguf_writer_set_u32(w, "general.alignment", 64), 0);
        cr_assert_eq(gguf_writer_add_tensor(w, "a", NN_TYPE_F32, 1, ne, a), 0);
        cr_assert_eq(gguf_writer_add_tensor(w, "b", NN_TYPE_F32, 1, ne, b), 0);
        cr_assert_eq(gguf_writer_write(w, path), 0);
        gguf_writer_free(w);

        g = open_ok(path);
        cr_assert_eq(gguf_alignment(g), 64);
        cr_assert_eq(gguf_tensor_at(g, 0)->offset, 0);
        cr_assert_eq(gguf_tensor_at(g, 1)->offset, 64);
        cr_assert_eq((uintptr_t) gguf_tensor_at(g, 1)->data % 64, 0);
        cr_assert_eq(memcmp(gguf_find_tensor(g, "b")->data, b, sizeof(b)), 0);
        gguf_close(g);
}

Test(gguf, writer_refuses_duplicates_bad_shapes_and_bad_alignment) {
        struct gguf_writer *w = gguf_writer_new(3);
        uint64_t ne[4] = { 32, 2, 1, 1 }, zero[2] = { 32, 0 }, odd[1] = { 33 };
        uint64_t huge[2] = { UINT64_C(1) << 40, UINT64_C(1) << 40 };
        uint8_t data[64 * 4] = { 0 };
        bool bad_bool[2] = { 0 };

        cr_assert_null(gguf_writer_new(1));
        cr_assert_null(gguf_writer_new(4));
        cr_assert_not_null(w);
        cr_assert_eq(gguf_writer_set_u32(w, "k", 1), 0);
        cr_assert_eq(gguf_writer_set_string(w, "k", "again"), -EEXIST);
        cr_assert_eq(gguf_writer_set_u32(w, "", 1), -EINVAL);
        cr_assert_eq(gguf_writer_set_u32(w, "general.alignment", 0), -EINVAL);
        cr_assert_eq(gguf_writer_set_u32(w, "general.alignment", 3), -EINVAL);
        cr_assert_eq(gguf_writer_set_u64(w, "general.alignment", 32), -EINVAL, "the alignment is a uint32");
        cr_assert_eq(gguf_writer_set_array(w, "arr", GGUF_TYPE_STRING, data, 1), -EINVAL);
        cr_assert_eq(gguf_writer_set_array(w, "arr", GGUF_TYPE_ARRAY, data, 1), -EINVAL);
        memset(bad_bool, 2, 1);
        cr_assert_eq(gguf_writer_set_array(w, "arr", GGUF_TYPE_BOOL, bad_bool, 2), -EINVAL);

        cr_assert_eq(gguf_writer_add_tensor(w, "t", NN_TYPE_F32, 2, ne, data), 0);
        cr_assert_eq(gguf_writer_add_tensor(w, "t", NN_TYPE_F32, 2, ne, data), -EEXIST);
        cr_assert_eq(gguf_writer_add_tensor(w, "u", NN_TYPE_F32, 0, ne, data), -EINVAL);
        cr_assert_eq(gguf_writer_add_tensor(w, "u", NN_TYPE_F32, 5, ne, data), -EINVAL);
        cr_assert_eq(gguf_writer_add_tensor(w, "u", NN_TYPE_F32, 2, zero, data), -EINVAL);
        cr_assert_eq(gguf_writer_add_tensor(w, "u", NN_TYPE_Q8_0, 1, odd, data), -EINVAL);
        cr_assert_eq(gguf_writer_add_tensor(w, "u", (enum nn_type) 3, 1, ne, data), -EINVAL);
        cr_assert_eq(gguf_writer_add_tensor(w, "u", NN_TYPE_F32, 2, huge, data), -EINVAL);
        cr_assert_eq(gguf_writer_add_tensor(w, "", NN_TYPE_F32, 1, ne, data), -EINVAL);
        gguf_writer_free(w);
}

/* ---- Hostile files ------------------------------------------------------ */

Test(gguf, missing_file_is_refused_with_enoent) {
        expect_refused_path(tpath("absent.gguf"), -ENOENT, "cannot open");
}

Test(gguf, directory_is_refused) {
        expect_refused_path(dir, -EISDIR, "not a regular file");
}

Test(gguf, empty_file_is_refused) {
        struct bytes b = {};

        put(&b, "", 0);
        expect_refused(&b, -EBADMSG, "past the end");
}

Test(gguf, wrong_magic_is_refused_naming_it) {
        struct bytes b = {};

        put(&b, "\x7f" "ELF", 4);
        put_fill(&b, 0, 60);
        expect_refused(&b, -EBADMSG, "not a GGUF file (magic 7f454c46)");
}

Test(gguf, version_1_is_unsupported) {
        struct bytes b = {};

        put(&b, "GGUF", 4);
        put_u32(&b, 1);
        put_u32(&b, 0);
        put_u32(&b, 0);
        put_fill(&b, 0, 16);
        expect_refused(&b, -EOPNOTSUPP, "version 1 is not supported");
}

Test(gguf, unknown_and_big_endian_versions_are_unsupported) {
        struct bytes b = {};

        put_header(&b, 4, 0, 0);
        expect_refused(&b, -EOPNOTSUPP, "version 4");
        put_header(&b, 0x03000000, 0, 0);
        expect_refused(&b, -EOPNOTSUPP, "big-endian");
}

/* Every prefix of a valid file is refused: nothing in it is optional and
 * the last tensor ends the file. */
Test(gguf, truncated_file_is_refused_naming_the_offset) {
        static const char *const strs[] = { "a", "bc", "" };
        const char *full = tpath("full.gguf"), *cut = tpath("cut.gguf");
        struct gguf_writer *w = gguf_writer_new(3);
        uint64_t ne_a[2] = { 32, 2 }, ne_b[1] = { 8 };
        uint8_t qa[2 * (2 + 32)], fb[8 * 4];
        uint32_t u32s[3] = { 1, 2, 3 };
        unsigned seed = 7;
        uint8_t *data;
        size_t size;
        struct gguf *g;

        fill_random(qa, sizeof(qa), &seed);
        fill_random(fb, sizeof(fb), &seed);
        cr_assert_eq(gguf_writer_set_string(w, "general.name", "tiny"), 0);
        cr_assert_eq(gguf_writer_set_u32(w, "general.alignment", 32), 0);
        cr_assert_eq(gguf_writer_set_bool(w, "b", true), 0);
        cr_assert_eq(gguf_writer_set_array(w, "nums", GGUF_TYPE_UINT32, u32s, 3), 0);
        cr_assert_eq(gguf_writer_set_string_array(w, "strs", strs, 3), 0);
        cr_assert_eq(gguf_writer_add_tensor(w, "a", NN_TYPE_Q8_0, 2, ne_a, qa), 0);
        cr_assert_eq(gguf_writer_add_tensor(w, "b", NN_TYPE_F32, 1, ne_b, fb), 0);     /* 32 bytes: no padding after */
        cr_assert_eq(gguf_writer_write(w, full), 0);
        gguf_writer_free(w);

        data = read_file(full, &size);
        g = open_ok(full);
        cr_assert_eq(gguf_find_tensor(g, "b")->offset + 32, gguf_tensor_at(g, 0)->offset + 128);
        cr_assert_eq(memcmp(data + size - sizeof(fb), fb, sizeof(fb)), 0, "b's data ends the file");
        gguf_close(g);

        for (size_t len = 0; len < size; len++) {
                char err[512] = "unset";
                int r;

                write_file(cut, data, len);
                g = NULL;
                r = gguf_open(cut, &g, err, sizeof(err));
                cr_assert_eq(r, -EBADMSG, "length %zu: %d: %s", len, r, err);
                cr_assert_null(g);
                cr_assert(strncmp(err, cut, strlen(cut)) == 0, "length %zu: %s", len, err);
                cr_assert(strstr(err, "past the end") || strstr(err, "cannot fit"), "length %zu: %s", len, err);
                cr_assert(strstr(err, " byte "), "length %zu: no offset in: %s", len, err);
        }
        free(data);
}

/* Whatever a corrupted file holds, gguf_open() either refuses it with a
 * message or hands out pointers that all lie inside the file (ASan checks
 * the reads below). */
Test(gguf, randomly_corrupted_files_are_refused_or_read_safely) {
        static const char *const strs[] = { "x", "yz" };
        const char *full = tpath("full.gguf"), *bad = tpath("bad.gguf");
        struct gguf_writer *w = gguf_writer_new(3);
        uint64_t ne[2] = { 32, 3 };
        uint8_t q[3 * 34] = { 0 };
        uint32_t u32s[2] = { 5, 6 };
        unsigned seed = 1234;
        uint8_t *data, *copy;
        size_t size;

        cr_assert_eq(gguf_writer_set_string(w, "general.name", "fuzz"), 0);
        cr_assert_eq(gguf_writer_set_array(w, "nums", GGUF_TYPE_UINT32, u32s, 2), 0);
        cr_assert_eq(gguf_writer_set_string_array(w, "strs", strs, 2), 0);
        cr_assert_eq(gguf_writer_add_tensor(w, "q", NN_TYPE_Q8_0, 2, ne, q), 0);
        cr_assert_eq(gguf_writer_add_tensor(w, "f", NN_TYPE_F16, 1, ne, q), 0);
        cr_assert_eq(gguf_writer_write(w, full), 0);
        gguf_writer_free(w);
        data = read_file(full, &size);
        copy = malloc(size);

        for (int iter = 0; iter < 3000; iter++) {
                struct gguf *g = NULL;
                char err[512] = "";
                volatile uint8_t sink = 0;
                int r, flips = 1 + rand_r(&seed) % 4;

                memcpy(copy, data, size);
                for (int k = 0; k < flips; k++)
                        copy[(size_t) rand_r(&seed) % size] = (uint8_t) rand_r(&seed);
                write_file(bad, copy, size);

                r = gguf_open(bad, &g, err, sizeof(err));
                if (r < 0) {
                        cr_assert(r == -EBADMSG || r == -EOPNOTSUPP, "%d: %s", r, err);
                        cr_assert(strncmp(err, bad, strlen(bad)) == 0, "%s", err);
                        cr_assert_null(strchr(err, '\n'));
                        continue;
                }
                for (size_t i = 0; i < gguf_kv_count(g); i++) {
                        const struct gguf_kv *kv = gguf_kv_at(g, i);

                        sink ^= (uint8_t) kv->key.data[kv->key.len - 1];
                        if (kv->type == GGUF_TYPE_STRING && kv->v.str.len > 0)
                                sink ^= (uint8_t) kv->v.str.data[kv->v.str.len - 1];
                        if (kv->type == GGUF_TYPE_ARRAY && kv->v.arr.type == GGUF_TYPE_STRING)
                                for (uint64_t j = 0; j < kv->v.arr.n; j++) {
                                        const struct gguf_string *e = &((const struct gguf_string *) kv->v.arr.data)[j];

                                        if (e->len > 0)
                                                sink ^= (uint8_t) e->data[e->len - 1];
                                }
                        else if (kv->type == GGUF_TYPE_ARRAY && kv->v.arr.n > 0)
                                sink ^= (uint8_t) gguf_array_i64(kv->v.arr.type, kv->v.arr.data, kv->v.arr.n - 1);
                }
                for (size_t i = 0; i < gguf_tensor_count(g); i++) {
                        const struct gguf_tensor *t = gguf_tensor_at(g, i);

                        sink ^= ((const uint8_t *) t->data)[0] ^ ((const uint8_t *) t->data)[t->size - 1];
                        cr_assert_eq(t->size, nn_row_bytes(t->type, t->ne[0]) * (t->n_elements / t->ne[0]));
                }
                (void) sink;
                gguf_close(g);
        }
        free(copy);
        free(data);
}

Test(gguf, string_length_past_the_end_is_refused) {
        struct bytes b = {};

        put_header(&b, 3, 0, 1);
        put_str(&b, "general.name");
        put_u32(&b, GGUF_TYPE_STRING);
        put_u64(&b, 1000);
        put(&b, "abc", 3);
        expect_refused(&b, -EBADMSG, "past the end");
}

Test(gguf, key_length_past_the_end_is_refused) {
        struct bytes b = {};

        put_header(&b, 3, 0, 1);
        put_u64(&b, UINT64_MAX);
        put_fill(&b, 'k', 20);
        expect_refused(&b, -EBADMSG, "past the end");
}

Test(gguf, array_count_2_62_is_refused_without_allocating) {
        struct bytes b = {};

        put_header(&b, 3, 0, 1);
        put_str(&b, "tokenizer.ggml.tokens");
        put_u32(&b, GGUF_TYPE_ARRAY);
        put_u32(&b, GGUF_TYPE_STRING);
        put_u64(&b, UINT64_C(1) << 62);
        put_fill(&b, 0, 64);
        expect_refused(&b, -EBADMSG, "key 0 (tokenizer.ggml.tokens): array of 4611686018427387904 strings cannot fit");

        put_header(&b, 3, 0, 1);
        put_str(&b, "nums");
        put_u32(&b, GGUF_TYPE_ARRAY);
        put_u32(&b, GGUF_TYPE_UINT64);
        put_u64(&b, UINT64_C(1) << 62);
        put_fill(&b, 0, 64);
        expect_refused(&b, -EBADMSG, "cannot fit");
}

Test(gguf, tensor_and_key_counts_2_62_are_refused) {
        struct bytes b = {};

        put_header(&b, 3, UINT64_C(1) << 62, 0);
        put_fill(&b, 0, 64);
        expect_refused(&b, -EBADMSG, "tensor count 4611686018427387904 cannot fit");
        put_header(&b, 3, 0, UINT64_C(1) << 62);
        put_fill(&b, 0, 64);
        expect_refused(&b, -EBADMSG, "key count 4611686018427387904 cannot fit");
}

Test(gguf, array_of_arrays_is_unsupported) {
        struct bytes b = {};

        put_header(&b, 3, 0, 1);
        put_str(&b, "nested");
        put_u32(&b, GGUF_TYPE_ARRAY);
        put_u32(&b, GGUF_TYPE_ARRAY);
        put_u64(&b, 0);
        expect_refused(&b, -EOPNOTSUPP, "arrays of arrays");
}

Test(gguf, unknown_value_type_is_refused) {
        struct bytes b = {};

        put_header(&b, 3, 0, 1);
        put_str(&b, "k");
        put_u32(&b, 13);
        put_u64(&b, 0);
        expect_refused(&b, -EBADMSG, "key 0 (k): unknown value type 13");
}

Test(gguf, bool_other_than_0_or_1_is_refused) {
        struct bytes b = {};

        put_header(&b, 3, 0, 1);
        put_str(&b, "flag");
        put_u32(&b, GGUF_TYPE_BOOL);
        put_u8(&b, 2);
        expect_refused(&b, -EBADMSG, "neither 0 nor 1");

        put_header(&b, 3, 0, 1);
        put_str(&b, "flags");
        put_u32(&b, GGUF_TYPE_ARRAY);
        put_u32(&b, GGUF_TYPE_BOOL);
        put_u64(&b, 3);
        put_u8(&b, 0);
        put_u8(&b, 1);
        put_u8(&b, 0xff);
        expect_refused(&b, -EBADMSG, "array element 2");
}

Test(gguf, empty_key_and_key_with_nul_are_refused) {
        struct bytes b = {};

        put_header(&b, 3, 0, 1);
        put_str(&b, "");
        put_u32(&b, GGUF_TYPE_UINT8);
        put_u8(&b, 0);
        put_fill(&b, 0, 8);     /* so that the count check does not catch it first */
        expect_refused(&b, -EBADMSG, "key is empty");

        put_header(&b, 3, 0, 1);
        put_u64(&b, 3);
        put(&b, "a\0b", 3);
        put_u32(&b, GGUF_TYPE_UINT8);
        put_u8(&b, 0);
        expect_refused(&b, -EBADMSG, "NUL");
}

Test(gguf, duplicate_key_is_refused) {
        struct bytes b = {};

        put_header(&b, 3, 0, 3);
        put_kv_u32(&b, "a", 1);
        put_kv_u32(&b, "b", 2);
        put_kv_u32(&b, "a", 3);
        expect_refused(&b, -EBADMSG, "key 2 (a): duplicate key (also key 0)");
}

static void expect_alignment_refused(uint32_t alignment) {
        const char *path = tpath("patched.gguf");
        struct gguf_writer *w = gguf_writer_new(3);
        uint64_t ne[1] = { 8 };
        float x[8] = { 0 };
        /* header, key length, "general.alignment", value type */
        const size_t at = 24 + 8 + strlen("general.alignment") + 4;
        uint8_t *data;
        size_t size;

        cr_assert_eq(gguf_writer_set_u32(w, "general.alignment", 32), 0);
        cr_assert_eq(gguf_writer_add_tensor(w, "x", NN_TYPE_F32, 1, ne, x), 0);
        cr_assert_eq(gguf_writer_write(w, path), 0);
        gguf_writer_free(w);
        data = read_file(path, &size);
        cr_assert_eq(data[at], 32, "the value is where the test expects it");
        for (int i = 0; i < 4; i++)
                data[at + i] = (uint8_t) (alignment >> (8 * i));
        write_file(path, data, size);
        free(data);
        expect_refused_path(path, -EBADMSG, "not a power of two");
}

Test(gguf, alignment_0_is_refused) {
        expect_alignment_refused(0);
}

Test(gguf, alignment_3_is_refused) {
        expect_alignment_refused(3);
}

Test(gguf, alignment_of_another_type_is_refused) {
        struct bytes b = {};

        put_header(&b, 3, 0, 1);
        put_str(&b, "general.alignment");
        put_u32(&b, GGUF_TYPE_UINT64);
        put_u64(&b, 32);
        expect_refused(&b, -EBADMSG, "not a uint32");
}

Test(gguf, five_or_zero_dimensions_are_refused) {
        struct tinfo t = { "w", 5, { 1, 1, 1, 1 }, NN_TYPE_F32, 0 };
        struct bytes b;

        /* put_tensor_info writes ndim ne values; give it a fifth. */
        b = (struct bytes) {};
        put_header(&b, 3, 1, 0);
        put_str(&b, "w");
        put_u32(&b, 5);
        for (int d = 0; d < 5; d++)
                put_u64(&b, 1);
        put_u32(&b, NN_TYPE_F32);
        put_u64(&b, 0);
        put_pad(&b, 32);
        put_fill(&b, 0, 32);
        expect_refused(&b, -EBADMSG, "tensor 0 (w): has 5 dimensions");

        t.ndim = 0;
        b = build_file(&t, 1, 32);
        expect_refused(&b, -EBADMSG, "has 0 dimensions");
}

Test(gguf, zero_dimension_is_refused) {
        struct tinfo t = { "w", 2, { 4, 0 }, NN_TYPE_F32, 0 };
        struct bytes b = build_file(&t, 1, 32);

        expect_refused(&b, -EBADMSG, "dimension 1 is 0");
}

Test(gguf, element_count_overflow_is_refused) {
        struct tinfo t = { "w", 2, { UINT64_C(1) << 32, UINT64_C(1) << 33 }, NN_TYPE_F32, 0 };
        struct bytes b = build_file(&t, 1, 32);

        expect_refused(&b, -EBADMSG, "overflows");

        /* 2^63 elements fit in 64 bits, their 2^65 bytes do not. */
        t = (struct tinfo) { "w", 2, { UINT64_C(1) << 32, UINT64_C(1) << 31 }, NN_TYPE_F32, 0 };
        b = build_file(&t, 1, 32);
        expect_refused(&b, -EBADMSG, "overflows");
}

Test(gguf, row_not_a_multiple_of_the_block_size_is_refused) {
        struct tinfo t = { "w", 1, { 33 }, NN_TYPE_Q8_0, 0 };
        struct bytes b = build_file(&t, 1, 64);

        expect_refused(&b, -EBADMSG, "not a multiple of the q8_0 block size (32)");
}

Test(gguf, unknown_tensor_type_is_unsupported_naming_tensor_and_type) {
        struct tinfo t = { "blk.0.attn_q.weight", 1, { 32 }, 99, 0 };
        struct bytes b = build_file(&t, 1, 256);

        expect_refused(&b, -EOPNOTSUPP, "tensor 0 (blk.0.attn_q.weight): type 99");

        t.type = 3;
        b = build_file(&t, 1, 256);
        expect_refused(&b, -EOPNOTSUPP, "type 3 (q4_1) is not supported");
}

Test(gguf, unaligned_offset_is_refused) {
        struct tinfo t = { "w", 1, { 4 }, NN_TYPE_F32, 4 };
        struct bytes b = build_file(&t, 1, 64);

        expect_refused(&b, -EBADMSG, "not a multiple of the alignment (32)");
}

Test(gguf, tensor_data_past_the_end_is_refused) {
        struct tinfo t[2] = {
                { "a", 1, { 8 }, NN_TYPE_F32, 0 },
                { "b", 1, { 8 }, NN_TYPE_F32, 32 },
        };
        struct bytes b = build_file(t, 2, 40);
        char want[128];

        snprintf(want, sizeof(want), "tensor 1 (b): data ends at byte %zu past the end of the file (%zu bytes)",
                 b.size - 40 + 64, b.size);
        expect_refused(&b, -EBADMSG, want);

        t[1].offset = UINT64_MAX - 31;
        b = build_file(t, 2, 64);
        expect_refused(&b, -EBADMSG, "past the end");
}

Test(gguf, overlapping_tensors_are_refused) {
        struct tinfo t[3] = {
                { "a", 1, { 8 }, NN_TYPE_F32, 96 },
                { "b", 1, { 16 }, NN_TYPE_F32, 0 },
                { "c", 1, { 8 }, NN_TYPE_F32, 32 },
        };
        struct bytes b = build_file(t, 3, 128);

        expect_refused(&b, -EBADMSG, "tensor 2 (c): data at offset 32 overlaps tensor 1 (b)");
}

Test(gguf, duplicate_tensor_name_is_refused) {
        struct tinfo t[2] = {
                { "w", 1, { 8 }, NN_TYPE_F32, 0 },
                { "w", 1, { 8 }, NN_TYPE_F32, 32 },
        };
        struct bytes b = build_file(t, 2, 64);

        expect_refused(&b, -EBADMSG, "tensor 1 (w): duplicate name (also tensor 0)");
}

Test(gguf, control_bytes_in_names_do_not_break_the_message_line) {
        struct tinfo t = { "evil\nname", 1, { 8 }, 99, 0 };
        struct bytes b = build_file(&t, 1, 32);

        expect_refused(&b, -EOPNOTSUPP, "evil?name");
}

Test(gguf, string_helpers_compare_and_copy) {
        struct gguf_string s = { .data = "abcdef", .len = 3 };
        char *c = gguf_strdup(s);

        cr_assert_str_eq(c, "abc");
        cr_assert(gguf_string_eq(s, "abc"));
        cr_assert(!gguf_string_eq(s, "abcd"));
        cr_assert(!gguf_string_eq(s, "ab"));
        free(c);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The SDK library that plugins link: values, jobs, logging. */

#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "swarm-host.h"

static struct swarm_values *v;

static void setup(void) {
        v = swarm_values_new();
        cr_assert_not_null(v);
}

static void teardown(void) {
        swarm_values_free(v);
        v = NULL;
}

TestSuite(sdk, .init = setup, .fini = teardown, .timeout = 30);

/* ---- dtypes ---- */

Test(sdk, dtype_sizes_and_names) {
        static const struct { enum swarm_dtype t; size_t size; const char *name; } cases[] = {
                { SWARM_DTYPE_F32, 4, "f32" }, { SWARM_DTYPE_F64, 8, "f64" },
                { SWARM_DTYPE_F16, 2, "f16" }, { SWARM_DTYPE_BF16, 2, "bf16" },
                { SWARM_DTYPE_I8, 1, "i8" },   { SWARM_DTYPE_U8, 1, "u8" },
                { SWARM_DTYPE_I32, 4, "i32" }, { SWARM_DTYPE_I64, 8, "i64" },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                cr_assert_eq(swarm_dtype_size(cases[i].t), cases[i].size);
                cr_assert_str_eq(swarm_dtype_name(cases[i].t), cases[i].name);
        }
        cr_assert_eq(swarm_dtype_size((enum swarm_dtype) 0), 0);
        cr_assert_eq(swarm_dtype_size((enum swarm_dtype) 9), 0);
        cr_assert_null(swarm_dtype_name((enum swarm_dtype) 0));
        cr_assert_null(swarm_dtype_name((enum swarm_dtype) 9));
        cr_assert_null(swarm_dtype_name((enum swarm_dtype) -1));
}

/* ---- names ---- */

Test(sdk, value_names_follow_the_charset_and_length) {
        char name[65];

        cr_assert(swarm_value_name_valid("a"));
        cr_assert(swarm_value_name_valid("gemm.f32"));
        cr_assert(swarm_value_name_valid("digest-size"));
        cr_assert(swarm_value_name_valid("x_0.y-9"));
        cr_assert_not(swarm_value_name_valid(NULL));
        cr_assert_not(swarm_value_name_valid(""));
        cr_assert_not(swarm_value_name_valid("A"));
        cr_assert_not(swarm_value_name_valid("a b"));
        cr_assert_not(swarm_value_name_valid("a/b"));
        cr_assert_not(swarm_value_name_valid("é"));
        cr_assert_not(swarm_value_name_valid("a\n"));

        memset(name, 'n', 63);
        name[63] = '\0';
        cr_assert(swarm_value_name_valid(name));
        cr_assert_eq(swarm_values_set_int(v, name, 1), 0);
        cr_assert_str_eq(swarm_values_name(v, 0, NULL), name);

        name[63] = 'n';
        name[64] = '\0';
        cr_assert_not(swarm_value_name_valid(name));
        cr_assert_eq(swarm_values_set_int(v, name, 1), -EINVAL);
        cr_assert_eq(swarm_values_count(v), 1);
}

Test(sdk, every_setter_refuses_bad_names) {
        uint64_t shape[1] = { 4 };
        uint8_t buf[64] __attribute__((aligned(64)));

        cr_assert_eq(swarm_values_set_int(v, "Bad", 1), -EINVAL);
        cr_assert_eq(swarm_values_set_string(v, "Bad", "s"), -EINVAL);
        cr_assert_eq(swarm_values_set_bytes(v, "Bad", "b", 1), -EINVAL);
        cr_assert_eq(swarm_values_add_tensor(v, "Bad", SWARM_DTYPE_F32, 1, shape, NULL), -EINVAL);
        cr_assert_eq(swarm_values_add_tensor_borrowed(v, "Bad", SWARM_DTYPE_U8, 1, shape, buf, NULL, NULL),
                     -EINVAL);
        cr_assert_eq(swarm_values_add_bytes_borrowed(v, "Bad", buf, 1, NULL, NULL), -EINVAL);
        cr_assert_eq(swarm_values_set_int(v, NULL, 1), -EINVAL);
        cr_assert_eq(swarm_values_count(v), 0);
}

Test(sdk, duplicate_names_are_eexist_whatever_the_type) {
        uint64_t shape[1] = { 4 };
        uint8_t buf[64] __attribute__((aligned(64)));
        int64_t i;

        cr_assert_eq(swarm_values_set_int(v, "x", 1), 0);
        cr_assert_eq(swarm_values_set_int(v, "x", 2), -EEXIST);
        cr_assert_eq(swarm_values_set_string(v, "x", "s"), -EEXIST);
        cr_assert_eq(swarm_values_set_bytes(v, "x", "b", 1), -EEXIST);
        cr_assert_eq(swarm_values_add_tensor(v, "x", SWARM_DTYPE_F32, 1, shape, NULL), -EEXIST);
        cr_assert_eq(swarm_values_add_tensor_borrowed(v, "x", SWARM_DTYPE_U8, 1, shape, buf, NULL, NULL),
                     -EEXIST);
        cr_assert_eq(swarm_values_add_bytes_borrowed(v, "x", buf, 1, NULL, NULL), -EEXIST);
        cr_assert_eq(swarm_values_count(v), 1);
        cr_assert_eq(swarm_values_get_int(v, "x", &i), 0);
        cr_assert_eq(i, 1);
}

/* ---- getters ---- */

Test(sdk, values_at_walks_every_type_in_order) {
        struct swarm_values *set = swarm_values_new();
        uint64_t shape[2] = { 2, 3 };
        struct swarm_tensor t;
        struct swarm_value x;

        cr_assert_not_null(set);
        cr_assert_eq(swarm_values_set_int(set, "n", -7), 0);
        cr_assert_eq(swarm_values_set_string(set, "s", "text"), 0);
        cr_assert_eq(swarm_values_set_bytes(set, "b", "\x01\x02\x03", 3), 0);
        cr_assert_eq(swarm_values_add_tensor(set, "t", SWARM_DTYPE_F32, 2, shape, &t), 0);

        cr_assert_eq(swarm_values_at(set, 0, &x), 0);
        cr_assert_str_eq(x.name, "n");
        cr_assert_eq(x.type, SWARM_VALUE_INT);
        cr_assert_eq(x.integer, -7);
        cr_assert_eq(swarm_values_at(set, 1, &x), 0);
        cr_assert_eq(x.type, SWARM_VALUE_STRING);
        cr_assert_str_eq(x.string, "text");
        cr_assert_eq(swarm_values_at(set, 2, &x), 0);
        cr_assert_eq(x.type, SWARM_VALUE_BYTES);
        cr_assert_eq(x.size, 3);
        cr_assert_eq(memcmp(x.data, "\x01\x02\x03", 3), 0);
        cr_assert_eq(swarm_values_at(set, 3, &x), 0);
        cr_assert_eq(x.type, SWARM_VALUE_TENSOR);
        cr_assert_eq(x.tensor.ndim, 2);
        cr_assert_eq(x.tensor.shape[1], 3);
        cr_assert_eq(x.tensor.size, 24);
        cr_assert_eq(x.tensor.data, t.data);

        cr_assert_eq(swarm_values_at(set, 4, &x), -ERANGE);
        cr_assert_eq(swarm_values_at(NULL, 0, &x), -ERANGE);
        swarm_values_free(set);
}

Test(sdk, getters_return_what_setters_stored) {
        uint64_t shape[2] = { 2, 3 };
        struct swarm_tensor t;
        const char *s;
        const void *data;
        size_t size;
        int64_t i;

        cr_assert_eq(swarm_values_set_int(v, "i", INT64_MIN), 0);
        cr_assert_eq(swarm_values_set_string(v, "s", "hello"), 0);
        cr_assert_eq(swarm_values_set_bytes(v, "b", "\0\1\2", 3), 0);
        cr_assert_eq(swarm_values_set_bytes(v, "empty", NULL, 0), 0);
        cr_assert_eq(swarm_values_add_tensor(v, "t", SWARM_DTYPE_I32, 2, shape, NULL), 0);

        cr_assert_eq(swarm_values_get_int(v, "i", &i), 0);
        cr_assert_eq(i, INT64_MIN);
        cr_assert_eq(swarm_values_get_string(v, "s", &s), 0);
        cr_assert_str_eq(s, "hello");
        cr_assert_eq(swarm_values_get_bytes(v, "b", &data, &size), 0);
        cr_assert_eq(size, 3);
        cr_assert_arr_eq(data, "\0\1\2", 3);
        cr_assert_eq(swarm_values_get_bytes(v, "empty", &data, &size), 0);
        cr_assert_eq(size, 0);
        cr_assert_eq(swarm_values_get_tensor(v, "t", &t), 0);
        cr_assert_eq(t.dtype, SWARM_DTYPE_I32);
        cr_assert_eq(t.ndim, 2);
        cr_assert_eq(t.shape[0], 2);
        cr_assert_eq(t.shape[1], 3);
        cr_assert_eq(t.n_elements, 6);
        cr_assert_eq(t.size, 24);
}

Test(sdk, setters_copy_their_arguments) {
        char s[] = "abc";
        uint8_t b[] = { 1, 2, 3 };
        const char *got;
        const void *data;
        size_t size;

        cr_assert_eq(swarm_values_set_string(v, "s", s), 0);
        cr_assert_eq(swarm_values_set_bytes(v, "b", b, sizeof(b)), 0);
        s[0] = 'X';
        b[0] = 9;
        cr_assert_eq(swarm_values_get_string(v, "s", &got), 0);
        cr_assert_str_eq(got, "abc");
        cr_assert_eq(swarm_values_get_bytes(v, "b", &data, &size), 0);
        cr_assert_eq(((const uint8_t *) data)[0], 1);
        cr_assert_eq(swarm_values_set_string(v, "null", NULL), -EINVAL);
        cr_assert_eq(swarm_values_set_bytes(v, "null", NULL, 1), -EINVAL);
}

Test(sdk, every_getter_says_enoent_and_emediumtype) {
        uint64_t shape[1] = { 1 };
        struct swarm_tensor t;
        const char *s;
        const void *data;
        size_t size;
        int64_t i;

        cr_assert_eq(swarm_values_set_int(v, "i", 1), 0);
        cr_assert_eq(swarm_values_set_string(v, "s", "x"), 0);
        cr_assert_eq(swarm_values_set_bytes(v, "b", "x", 1), 0);
        cr_assert_eq(swarm_values_add_tensor(v, "t", SWARM_DTYPE_F32, 1, shape, NULL), 0);

        cr_assert_eq(swarm_values_get_tensor(v, "none", &t), -ENOENT);
        cr_assert_eq(swarm_values_get_string(v, "none", &s), -ENOENT);
        cr_assert_eq(swarm_values_get_int(v, "none", &i), -ENOENT);
        cr_assert_eq(swarm_values_get_bytes(v, "none", &data, &size), -ENOENT);

        cr_assert_eq(swarm_values_get_tensor(v, "i", &t), -EMEDIUMTYPE);
        cr_assert_eq(swarm_values_get_string(v, "i", &s), -EMEDIUMTYPE);
        cr_assert_eq(swarm_values_get_int(v, "s", &i), -EMEDIUMTYPE);
        cr_assert_eq(swarm_values_get_bytes(v, "t", &data, &size), -EMEDIUMTYPE);
        cr_assert_eq(swarm_values_get_tensor(v, "b", &t), -EMEDIUMTYPE);
        cr_assert_eq(swarm_values_get_int(v, "t", &i), -EMEDIUMTYPE);

        /* A NULL set reads as empty. */
        cr_assert_eq(swarm_values_get_int(NULL, "i", &i), -ENOENT);
        cr_assert_eq(swarm_values_count(NULL), 0);
        cr_assert_null(swarm_values_name(NULL, 0, NULL));
}

Test(sdk, names_come_back_in_insertion_order) {
        static const char *const names[] = { "zeta", "alpha", "mid", "b", "a.1", "a.0", "q", "r", "s", "t" };
        static const enum swarm_value_type types[] = {
                SWARM_VALUE_INT, SWARM_VALUE_STRING, SWARM_VALUE_BYTES, SWARM_VALUE_TENSOR,
        };
        uint64_t shape[1] = { 2 };
        enum swarm_value_type type;

        /* Ten values: past the first growth of the array. */
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                switch (types[i % 4]) {
                case SWARM_VALUE_INT:
                        cr_assert_eq(swarm_values_set_int(v, names[i], (int64_t) i), 0);
                        break;
                case SWARM_VALUE_STRING:
                        cr_assert_eq(swarm_values_set_string(v, names[i], "s"), 0);
                        break;
                case SWARM_VALUE_BYTES:
                        cr_assert_eq(swarm_values_set_bytes(v, names[i], "b", 1), 0);
                        break;
                case SWARM_VALUE_TENSOR:
                        cr_assert_eq(swarm_values_add_tensor(v, names[i], SWARM_DTYPE_U8, 1, shape, NULL), 0);
                        break;
                }
        }
        cr_assert_eq(swarm_values_count(v), sizeof(names) / sizeof(names[0]));
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                cr_assert_str_eq(swarm_values_name(v, i, &type), names[i]);
                cr_assert_eq(type, types[i % 4], "%s", names[i]);
        }
        cr_assert_null(swarm_values_name(v, sizeof(names) / sizeof(names[0]), &type));
        /* Lookups still work after the array moved. */
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i += 4) {
                int64_t x;

                cr_assert_eq(swarm_values_get_int(v, names[i], &x), 0);
                cr_assert_eq(x, (int64_t) i);
        }
}

/* ---- tensors ---- */

Test(sdk, shape_check_accepts_scalars_and_computes_sizes) {
        uint64_t shape[SWARM_TENSOR_MAX_DIMS] = { 2, 3, 4, 1, 1, 1, 1, 5 };
        uint64_t n, size;

        cr_assert_eq(swarm_tensor_shape_check(SWARM_DTYPE_F64, 0, NULL, &n, &size), 0);
        cr_assert_eq(n, 1);
        cr_assert_eq(size, 8);
        cr_assert_eq(swarm_tensor_shape_check(SWARM_DTYPE_BF16, SWARM_TENSOR_MAX_DIMS, shape, &n, &size), 0);
        cr_assert_eq(n, 120);
        cr_assert_eq(size, 240);
}

Test(sdk, shape_check_rejects_bad_shapes) {
        uint64_t shape[SWARM_TENSOR_MAX_DIMS + 1] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
        uint64_t zero[2] = { 3, 0 };
        uint64_t n, size;

        cr_assert_eq(swarm_tensor_shape_check(SWARM_DTYPE_U8, SWARM_TENSOR_MAX_DIMS + 1, shape, &n, &size),
                     -EINVAL);
        cr_assert_eq(swarm_tensor_shape_check(SWARM_DTYPE_U8, 2, zero, &n, &size), -EINVAL);
        cr_assert_eq(swarm_tensor_shape_check((enum swarm_dtype) 0, 1, shape, &n, &size), -EINVAL);
        cr_assert_eq(swarm_tensor_shape_check((enum swarm_dtype) 99, 1, shape, &n, &size), -EINVAL);
        cr_assert_eq(swarm_tensor_shape_check(SWARM_DTYPE_U8, 1, NULL, &n, &size), -EINVAL);
}

Test(sdk, shape_check_overflow_is_e2big) {
        uint64_t elements[2] = { UINT64_C(1) << 32, UINT64_C(1) << 32 };
        uint64_t bytes[1] = { UINT64_C(1) << 62 };
        uint64_t fits[1] = { UINT64_C(1) << 61 };
        uint64_t n, size;

        /* The element count overflows. */
        cr_assert_eq(swarm_tensor_shape_check(SWARM_DTYPE_U8, 2, elements, &n, &size), -E2BIG);
        /* The element count fits, the byte size does not. */
        cr_assert_eq(swarm_tensor_shape_check(SWARM_DTYPE_F32, 1, bytes, &n, &size), -E2BIG);
        cr_assert_eq(swarm_tensor_shape_check(SWARM_DTYPE_F32, 1, fits, &n, &size), 0);
        cr_assert_eq(size, UINT64_C(1) << 63);
}

Test(sdk, add_tensor_rejects_what_shape_check_rejects) {
        uint64_t zero[1] = { 0 };
        uint64_t big[2] = { UINT64_C(1) << 32, UINT64_C(1) << 32 };
        uint64_t nine[SWARM_TENSOR_MAX_DIMS + 1] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
        /* Passes the overflow check, but within the alignment of SIZE_MAX. */
        uint64_t near_max[1] = { UINT64_MAX / 4 };
        struct swarm_tensor t;

        cr_assert_eq(swarm_values_add_tensor(v, "t", SWARM_DTYPE_F32, 1, zero, &t), -EINVAL);
        cr_assert_eq(swarm_values_add_tensor(v, "t", SWARM_DTYPE_F32, SWARM_TENSOR_MAX_DIMS + 1, nine, &t),
                     -EINVAL);
        cr_assert_eq(swarm_values_add_tensor(v, "t", SWARM_DTYPE_U8, 2, big, &t), -E2BIG);
        cr_assert_eq(swarm_values_add_tensor(v, "t", SWARM_DTYPE_F32, 1, near_max, &t), -E2BIG);
        cr_assert_eq(swarm_values_count(v), 0);
}

Test(sdk, tensors_are_aligned_and_zeroed) {
        static const uint64_t shapes[][3] = { { 1, 1, 1 }, { 3, 5, 7 }, { 64, 64, 1 }, { 1000, 1, 3 } };
        char name[16];

        for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
                struct swarm_tensor t, again;

                snprintf(name, sizeof(name), "t%zu", i);
                cr_assert_eq(swarm_values_add_tensor(v, name, SWARM_DTYPE_F32, 3, shapes[i], &t), 0);
                cr_assert_not_null(t.data);
                cr_assert_eq((uintptr_t) t.data % 64, 0, "%s at %p", name, t.data);
                cr_assert_eq(t.size, shapes[i][0] * shapes[i][1] * shapes[i][2] * 4);
                for (uint64_t b = 0; b < t.size; b++)
                        cr_assert_eq(((const uint8_t *) t.data)[b], 0);
                /* Writable to its last byte. */
                memset(t.data, 0xff, t.size);
                cr_assert_eq(swarm_values_get_tensor(v, name, &again), 0);
                cr_assert_eq(again.data, t.data);
        }

        /* A scalar has one element. */
        {
                struct swarm_tensor t;

                cr_assert_eq(swarm_values_add_tensor(v, "scalar", SWARM_DTYPE_I64, 0, NULL, &t), 0);
                cr_assert_eq(t.ndim, 0);
                cr_assert_eq(t.n_elements, 1);
                cr_assert_eq(t.size, 8);
                cr_assert_eq((uintptr_t) t.data % 64, 0);
                cr_assert_eq(*(const int64_t *) t.data, 0);
        }
}

/* ---- allocator hook and borrowed memory ---- */

struct alloc_log {
        unsigned allocated, released;
        uint64_t last_size;
        void *last_data;
        int fail;
        bool null_data;         /* claims success but hands back no memory */
};

static void test_release(void *data, uint64_t size, void *userdata) {
        struct alloc_log *log = userdata;

        cr_assert_not_null(data);
        log->released++;
        free(data);
}

static int test_allocate(uint64_t size, void **data, void (**release)(void *, uint64_t, void *),
                         void **release_userdata, void *userdata) {
        struct alloc_log *log = userdata;

        if (log->fail)
                return log->fail;
        if (log->null_data) {
                *data = NULL;
                return 0;
        }
        *data = aligned_alloc(64, (size + 63) / 64 * 64);
        if (!*data)
                return -ENOMEM;
        memset(*data, 0, size);
        *release = test_release;
        *release_userdata = log;
        log->allocated++;
        log->last_size = size;
        log->last_data = *data;
        return 0;
}

Test(sdk, allocator_hook_allocates_and_free_releases) {
        struct alloc_log log = { 0 };
        uint64_t shape[2] = { 4, 4 };
        struct swarm_tensor t;

        swarm_values_set_allocator(v, test_allocate, &log);
        cr_assert_eq(swarm_values_add_tensor(v, "t", SWARM_DTYPE_F32, 2, shape, &t), 0);
        cr_assert_eq(log.allocated, 1);
        cr_assert_eq(log.last_size, 64);
        cr_assert_eq(t.data, log.last_data);
        cr_assert_eq(log.released, 0);

        /* Values other than tensors do not go through the hook. */
        cr_assert_eq(swarm_values_set_bytes(v, "b", "x", 1), 0);
        cr_assert_eq(log.allocated, 1);

        swarm_values_free(v);
        v = NULL;
        cr_assert_eq(log.released, 1);
}

Test(sdk, allocator_failure_adds_nothing) {
        struct alloc_log log = { .fail = -ENOSPC };
        uint64_t shape[1] = { 4 };
        struct swarm_tensor t;

        swarm_values_set_allocator(v, test_allocate, &log);
        cr_assert_eq(swarm_values_add_tensor(v, "t", SWARM_DTYPE_F32, 1, shape, &t), -ENOSPC);
        cr_assert_eq(swarm_values_count(v), 0);
        /* The name is free again. */
        log.fail = 0;
        log.null_data = true;
        cr_assert_eq(swarm_values_add_tensor(v, "t", SWARM_DTYPE_F32, 1, shape, &t), -ENOMEM);
        cr_assert_eq(swarm_values_count(v), 0);
        log.null_data = false;
        cr_assert_eq(swarm_values_add_tensor(v, "t", SWARM_DTYPE_F32, 1, shape, &t), 0);
        cr_assert_eq(swarm_values_count(v), 1);
}

struct borrow_log {
        unsigned calls;
        void *data;
        uint64_t size;
};

static void borrow_release(void *data, uint64_t size, void *userdata) {
        struct borrow_log *log = userdata;

        log->calls++;
        log->data = data;
        log->size = size;
}

Test(sdk, borrowed_tensor_is_released_not_freed) {
        static uint8_t mapping[256] __attribute__((aligned(64)));
        uint64_t shape[2] = { 8, 8 };
        struct borrow_log log = { 0 };
        struct swarm_tensor t;

        cr_assert_eq(swarm_values_add_tensor_borrowed(v, "t", SWARM_DTYPE_F32, 2, shape, mapping,
                                                      borrow_release, &log), 0);
        cr_assert_eq(swarm_values_get_tensor(v, "t", &t), 0);
        cr_assert_eq(t.data, (void *) mapping);
        cr_assert_eq(t.size, 256);
        cr_assert_eq(t.n_elements, 64);

        /* Borrowed without a release function: neither freed nor released. */
        cr_assert_eq(swarm_values_add_tensor_borrowed(v, "u", SWARM_DTYPE_U8, 1, shape, mapping, NULL, NULL), 0);
        cr_assert_eq(swarm_values_add_tensor_borrowed(v, "null", SWARM_DTYPE_U8, 1, shape, NULL, NULL, NULL),
                     -EINVAL);

        swarm_values_free(v);
        v = NULL;
        cr_assert_eq(log.calls, 1);
        cr_assert_eq(log.data, (void *) mapping);
        cr_assert_eq(log.size, 256);
}

Test(sdk, borrowed_bytes_are_released_not_freed) {
        static const char mapping[] = "borrowed bytes";
        struct borrow_log log = { 0 };
        const void *data;
        size_t size;

        cr_assert_eq(swarm_values_add_bytes_borrowed(v, "b", mapping, sizeof(mapping), borrow_release, &log), 0);
        cr_assert_eq(swarm_values_add_bytes_borrowed(v, "plain", mapping, 3, NULL, NULL), 0);
        cr_assert_eq(swarm_values_add_bytes_borrowed(v, "empty", NULL, 0, NULL, NULL), 0);
        cr_assert_eq(swarm_values_add_bytes_borrowed(v, "bad", NULL, 1, NULL, NULL), -EINVAL);
        cr_assert_eq(swarm_values_get_bytes(v, "b", &data, &size), 0);
        cr_assert_eq(data, (const void *) mapping);
        cr_assert_eq(size, sizeof(mapping));

        swarm_values_free(v);
        v = NULL;
        cr_assert_eq(log.calls, 1);
        cr_assert_eq(log.data, (void *) mapping);
        cr_assert_eq(log.size, sizeof(mapping));
}

Test(sdk, free_of_null_is_a_no_op) {
        swarm_values_free(NULL);
}

/* ---- jobs ---- */

static uint64_t monotonic_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

Test(sdk, job_accessors_and_done) {
        struct swarm_job job;

        cr_assert_eq(swarm_values_set_int(v, "n", 7), 0);
        cr_assert_eq(swarm_job_init(&job, v, 1234, NULL, NULL, NULL), 0);
        cr_assert_eq(swarm_job_inputs(&job), v);
        cr_assert_not_null(swarm_job_outputs(&job));
        cr_assert_not_null(swarm_job_proof(&job));
        cr_assert_neq(swarm_job_outputs(&job), swarm_job_proof(&job));
        cr_assert_eq(swarm_job_deadline_usec(&job), 1234);
        cr_assert_null(swarm_job_error(&job));
        cr_assert_eq(swarm_values_set_int(swarm_job_outputs(&job), "out", 1), 0);
        swarm_job_done(&job);
        cr_assert_null(swarm_job_outputs(&job));
        cr_assert_null(swarm_job_proof(&job));
        /* Twice is harmless. */
        swarm_job_done(&job);
}

Test(sdk, job_outputs_use_the_allocator) {
        struct alloc_log log = { 0 };
        uint64_t shape[1] = { 16 };
        struct swarm_job job;

        cr_assert_eq(swarm_job_init(&job, v, 0, NULL, test_allocate, &log), 0);
        cr_assert_eq(swarm_values_add_tensor(swarm_job_outputs(&job), "y", SWARM_DTYPE_F32, 1, shape, NULL), 0);
        cr_assert_eq(swarm_values_add_tensor(swarm_job_proof(&job), "p", SWARM_DTYPE_U8, 1, shape, NULL), 0);
        cr_assert_eq(log.allocated, 2);
        swarm_job_done(&job);
        cr_assert_eq(log.released, 2);
}

Test(sdk, job_cancelled_by_flag) {
        volatile uint32_t flag = 0;
        struct swarm_job job;

        cr_assert_eq(swarm_job_init(&job, v, 0, &flag, NULL, NULL), 0);
        cr_assert_not(swarm_job_cancelled(&job));
        flag = 1;
        cr_assert(swarm_job_cancelled(&job));
        swarm_job_done(&job);

        /* No flag, no deadline: never. */
        cr_assert_eq(swarm_job_init(&job, v, 0, NULL, NULL, NULL), 0);
        cr_assert_not(swarm_job_cancelled(&job));
        swarm_job_done(&job);
}

Test(sdk, job_cancelled_by_deadline) {
        struct swarm_job job;

        /* Past. */
        cr_assert_eq(swarm_job_init(&job, v, monotonic_usec() - 1, NULL, NULL, NULL), 0);
        cr_assert(swarm_job_cancelled(&job));
        swarm_job_done(&job);

        /* An hour from now. */
        cr_assert_eq(swarm_job_init(&job, v, monotonic_usec() + UINT64_C(3600000000), NULL, NULL, NULL), 0);
        cr_assert_not(swarm_job_cancelled(&job));
        swarm_job_done(&job);
}

Test(sdk, job_error_is_one_line_and_last_call_wins) {
        struct swarm_job job;
        char *long_message;

        cr_assert_eq(swarm_job_init(&job, v, 0, NULL, NULL, NULL), 0);
        swarm_job_set_error(&job, "first %d", 1);
        cr_assert_str_eq(swarm_job_error(&job), "first 1");
        swarm_job_set_error(&job, "second line one\nline two\n");
        cr_assert_str_eq(swarm_job_error(&job), "second line one");

        /* Longer than the buffer: truncated, terminated. */
        long_message = malloc(2 * SWARM_JOB_ERROR_MAX);
        cr_assert_not_null(long_message);
        memset(long_message, 'e', 2 * SWARM_JOB_ERROR_MAX - 1);
        long_message[2 * SWARM_JOB_ERROR_MAX - 1] = '\0';
        swarm_job_set_error(&job, "%s", long_message);
        cr_assert_eq(strlen(swarm_job_error(&job)), SWARM_JOB_ERROR_MAX - 1);
        free(long_message);

        /* An empty message reads as none. */
        swarm_job_set_error(&job, "%s", "");
        cr_assert_null(swarm_job_error(&job));
        swarm_job_done(&job);
}

/* ---- logging ---- */

struct captured {
        unsigned calls;
        int level;
        char message[128];
};

static void capture(int level, const char *message, void *userdata) {
        struct captured *c = userdata;

        c->calls++;
        c->level = level;
        snprintf(c->message, sizeof(c->message), "%s", message);
}

Test(sdk, log_goes_to_the_installed_handler) {
        struct captured c = { 0 };

        swarm_log_set_handler(capture, &c);
        swarm_log(LOG_WARNING, "disk %s at %d%%", "sda", 93);
        cr_assert_eq(c.calls, 1);
        cr_assert_eq(c.level, LOG_WARNING);
        cr_assert_str_eq(c.message, "disk sda at 93%");
        swarm_log(LOG_DEBUG, "debug");
        cr_assert_eq(c.calls, 2);
        cr_assert_eq(c.level, LOG_DEBUG);

        /* NULL restores the default (stderr): the handler sees no more. */
        swarm_log_set_handler(NULL, &c);
        swarm_log(LOG_DEBUG, "not captured");
        cr_assert_eq(c.calls, 2);
}

Test(sdk, error_without_a_job_is_kept_for_the_host) {
        swarm_call_error_reset();
        cr_assert_null(swarm_call_error());
        swarm_job_set_error(NULL, "shape %dx%d\nsecond line", 3, 4);
        cr_assert_str_eq(swarm_call_error(), "shape 3x4");
        swarm_call_error_reset();
        cr_assert_null(swarm_call_error());
}

/* ---- Declared inputs and outputs (ABI 1.2) ---- */

static const struct swarm_param declared[] = {
        { "a", SWARM_VALUE_TENSOR, SWARM_DTYPE_F32, 2, "m×k", 0, "the left matrix" },
        { "mode", SWARM_VALUE_STRING, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "how" },
        { "t", 0, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "a number, as int or string" },
        {}
};

static int check(char *err, size_t n) {
        return swarm_params_check(declared, v, "input", err, n);
}

Test(sdk, declared_inputs_accept_what_matches_and_name_what_does_not) {
        struct swarm_tensor t;
        char err[256];

        cr_assert_eq(swarm_params_check(NULL, v, "input", err, sizeof(err)), 0, "undeclared: anything goes");

        /* The required tensor is missing. */
        cr_assert_eq(check(err, sizeof(err)), -EINVAL);
        cr_assert_str_eq(err, "missing input \"a\": an f32 tensor of 2 dimensions (m×k), the left matrix");

        cr_assert_eq(swarm_values_add_tensor(v, "a", SWARM_DTYPE_F32, 2, (uint64_t[]) { 3, 4 }, &t), 0);
        cr_assert_eq(check(err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(swarm_values_set_int(v, "t", 7), 0);
        cr_assert_eq(check(err, sizeof(err)), 0, "type 0 takes any type: %s", err);

        cr_assert_eq(swarm_values_set_int(v, "mode", 1), 0);
        cr_assert_eq(check(err, sizeof(err)), -EINVAL);
        cr_assert_str_eq(err, "input \"mode\" is an int, but must be a string");
}

Test(sdk, declared_inputs_refuse_unknown_names_dtypes_and_ranks) {
        struct swarm_values *w = swarm_values_new();
        struct swarm_tensor t;
        char err[256];

        cr_assert_eq(swarm_values_add_tensor(v, "a", SWARM_DTYPE_F32, 2, (uint64_t[]) { 3, 4 }, &t), 0);
        cr_assert_eq(swarm_values_set_bytes(v, "x", "z", 1), 0);
        cr_assert_eq(check(err, sizeof(err)), -EINVAL);
        cr_assert_str_eq(err, "input \"x\" is not one this skill takes (it takes: a, mode, t)");

        cr_assert_eq(swarm_values_add_tensor(w, "a", SWARM_DTYPE_F64, 2, (uint64_t[]) { 3, 4 }, &t), 0);
        cr_assert_eq(swarm_params_check(declared, w, "input", err, sizeof(err)), -EINVAL);
        cr_assert_str_eq(err, "input \"a\" has dtype f64, but must be an f32 tensor of 2 dimensions (m×k)");
        swarm_values_free(w);

        w = swarm_values_new();
        cr_assert_eq(swarm_values_add_tensor(w, "a", SWARM_DTYPE_F32, 1, (uint64_t[]) { 12 }, &t), 0);
        cr_assert_eq(swarm_params_check(declared, w, "output", err, sizeof(err)), -EINVAL);
        cr_assert_str_eq(err, "output \"a\" has 1 dimension, but must be an f32 tensor of 2 dimensions (m×k)");
        swarm_values_free(w);

        /* A message that does not fit is cut, not overrun. */
        cr_assert_eq(check(err, 16), -EINVAL);
        cr_assert_eq(strlen(err), 15);
}

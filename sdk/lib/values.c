/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "swarm/skill.h"
#include "swarm-host.h"

#define TENSOR_ALIGN 64

struct value {
        char name[SWARM_VALUE_NAME_MAX + 1];
        enum swarm_value_type type;
        union {
                struct swarm_tensor tensor;
                char *string;
                int64_t integer;
                struct {
                        void *data;
                        size_t size;
                } bytes;
        };
        /* Tensor memory: owned and freed with free(), or borrowed (a
         * mapping the host owns), or released through release(). */
        void (*release)(void *data, uint64_t size, void *userdata);
        void *release_userdata;
        bool owns_data;
        bool borrowed;          /* bytes: not ours to free() */
};

struct swarm_values {
        struct value *items;
        size_t n, allocated;
        swarm_values_allocator_fn allocate;
        void *allocate_userdata;
};

size_t swarm_dtype_size(enum swarm_dtype dtype) {
        switch (dtype) {
        case SWARM_DTYPE_F64:
        case SWARM_DTYPE_I64:
                return 8;
        case SWARM_DTYPE_F32:
        case SWARM_DTYPE_I32:
                return 4;
        case SWARM_DTYPE_F16:
        case SWARM_DTYPE_BF16:
                return 2;
        case SWARM_DTYPE_I8:
        case SWARM_DTYPE_U8:
                return 1;
        }
        return 0;
}

const char *swarm_dtype_name(enum swarm_dtype dtype) {
        static const char *const names[] = {
                [SWARM_DTYPE_F32] = "f32", [SWARM_DTYPE_F64] = "f64",
                [SWARM_DTYPE_F16] = "f16", [SWARM_DTYPE_BF16] = "bf16",
                [SWARM_DTYPE_I8] = "i8",   [SWARM_DTYPE_U8] = "u8",
                [SWARM_DTYPE_I32] = "i32", [SWARM_DTYPE_I64] = "i64",
        };
        if ((unsigned) dtype >= sizeof(names) / sizeof(names[0]))
                return NULL;
        return names[dtype];
}

bool swarm_value_name_valid(const char *name) {
        size_t n;

        if (!name)
                return false;
        n = strlen(name);
        if (n == 0 || n > SWARM_VALUE_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
                        return false;
        }
        return true;
}

int swarm_tensor_shape_check(enum swarm_dtype dtype, uint32_t ndim, const uint64_t *shape,
                             uint64_t *n_elements, uint64_t *size) {
        size_t es = swarm_dtype_size(dtype);
        uint64_t n = 1;

        if (es == 0 || ndim > SWARM_TENSOR_MAX_DIMS || (ndim > 0 && !shape))
                return -EINVAL;
        for (uint32_t i = 0; i < ndim; i++) {
                if (shape[i] == 0)
                        return -EINVAL;
                if (__builtin_mul_overflow(n, shape[i], &n))
                        return -E2BIG;
        }
        if (__builtin_mul_overflow(n, (uint64_t) es, size))
                return -E2BIG;
        *n_elements = n;
        return 0;
}

struct swarm_values *swarm_values_new(void) {
        return calloc(1, sizeof(struct swarm_values));
}

static void value_clear(struct value *v) {
        switch (v->type) {
        case SWARM_VALUE_TENSOR:
                if (v->release)
                        v->release(v->tensor.data, v->tensor.size, v->release_userdata);
                else if (v->owns_data)
                        free(v->tensor.data);
                break;
        case SWARM_VALUE_STRING:
                free(v->string);
                break;
        case SWARM_VALUE_BYTES:
                if (v->release)
                        v->release(v->bytes.data, v->bytes.size, v->release_userdata);
                else if (!v->borrowed)
                        free(v->bytes.data);
                break;
        case SWARM_VALUE_INT:
                break;
        }
}

void swarm_values_free(struct swarm_values *v) {
        if (!v)
                return;
        for (size_t i = 0; i < v->n; i++)
                value_clear(&v->items[i]);
        free(v->items);
        free(v);
}

void swarm_values_set_allocator(struct swarm_values *v, swarm_values_allocator_fn allocate, void *userdata) {
        v->allocate = allocate;
        v->allocate_userdata = userdata;
}

size_t swarm_values_count(const struct swarm_values *v) {
        return v ? v->n : 0;
}

const char *swarm_values_name(const struct swarm_values *v, size_t i, enum swarm_value_type *type) {
        if (!v || i >= v->n)
                return NULL;
        if (type)
                *type = v->items[i].type;
        return v->items[i].name;
}

int swarm_values_at(const struct swarm_values *v, size_t i, struct swarm_value *ret) {
        const struct value *x;

        if (!v || i >= v->n)
                return -ERANGE;
        x = &v->items[i];
        *ret = (struct swarm_value) { .name = x->name, .type = x->type };
        switch (x->type) {
        case SWARM_VALUE_INT:
                ret->integer = x->integer;
                break;
        case SWARM_VALUE_STRING:
                ret->string = x->string;
                break;
        case SWARM_VALUE_BYTES:
                ret->data = x->bytes.data;
                ret->size = x->bytes.size;
                break;
        case SWARM_VALUE_TENSOR:
                ret->tensor = x->tensor;
                break;
        }
        return 0;
}

static const struct value *find(const struct swarm_values *v, const char *name) {
        if (!v || !name)
                return NULL;
        for (size_t i = 0; i < v->n; i++)
                if (strcmp(v->items[i].name, name) == 0)
                        return &v->items[i];
        return NULL;
}

static int lookup(const struct swarm_values *v, const char *name, enum swarm_value_type type,
                  const struct value **ret) {
        const struct value *x = find(v, name);

        if (!x)
                return -ENOENT;
        if (x->type != type)
                return -EMEDIUMTYPE;
        *ret = x;
        return 0;
}

int swarm_values_get_tensor(const struct swarm_values *v, const char *name, struct swarm_tensor *ret) {
        const struct value *x;
        int r = lookup(v, name, SWARM_VALUE_TENSOR, &x);

        if (r < 0)
                return r;
        *ret = x->tensor;
        return 0;
}

int swarm_values_get_string(const struct swarm_values *v, const char *name, const char **ret) {
        const struct value *x;
        int r = lookup(v, name, SWARM_VALUE_STRING, &x);

        if (r < 0)
                return r;
        *ret = x->string;
        return 0;
}

int swarm_values_get_int(const struct swarm_values *v, const char *name, int64_t *ret) {
        const struct value *x;
        int r = lookup(v, name, SWARM_VALUE_INT, &x);

        if (r < 0)
                return r;
        *ret = x->integer;
        return 0;
}

int swarm_values_get_bytes(const struct swarm_values *v, const char *name, const void **data, size_t *size) {
        const struct value *x;
        int r = lookup(v, name, SWARM_VALUE_BYTES, &x);

        if (r < 0)
                return r;
        *data = x->bytes.data;
        *size = x->bytes.size;
        return 0;
}

int swarm_values_get_backing(const struct swarm_values *v, const char *name,
                             void (**release)(void *data, uint64_t size, void *userdata), void **userdata) {
        const struct value *x = find(v, name);

        if (!x)
                return -ENOENT;
        if (x->type != SWARM_VALUE_TENSOR && x->type != SWARM_VALUE_BYTES)
                return -EMEDIUMTYPE;
        *release = x->release;
        *userdata = x->release_userdata;
        return 0;
}

/* Reserves a slot named name; the caller fills it in and commits it by
 * incrementing v->n. */
static int reserve(struct swarm_values *v, const char *name, struct value **ret) {
        if (!v || !swarm_value_name_valid(name))
                return -EINVAL;
        if (find(v, name))
                return -EEXIST;
        if (v->n == v->allocated) {
                size_t k = v->allocated ? v->allocated * 2 : 8;
                struct value *items = realloc(v->items, k * sizeof(*items));
                if (!items)
                        return -ENOMEM;
                v->items = items;
                v->allocated = k;
        }
        *ret = memset(&v->items[v->n], 0, sizeof(struct value));
        strcpy((*ret)->name, name);
        return 0;
}

int swarm_values_set_string(struct swarm_values *v, const char *name, const char *s) {
        struct value *x;
        int r;

        if (!s)
                return -EINVAL;
        r = reserve(v, name, &x);
        if (r < 0)
                return r;
        x->type = SWARM_VALUE_STRING;
        x->string = strdup(s);
        if (!x->string)
                return -ENOMEM;
        v->n++;
        return 0;
}

int swarm_values_set_int(struct swarm_values *v, const char *name, int64_t i) {
        struct value *x;
        int r = reserve(v, name, &x);

        if (r < 0)
                return r;
        x->type = SWARM_VALUE_INT;
        x->integer = i;
        v->n++;
        return 0;
}

int swarm_values_set_bytes(struct swarm_values *v, const char *name, const void *data, size_t size) {
        struct value *x;
        int r;

        if (!data && size > 0)
                return -EINVAL;
        r = reserve(v, name, &x);
        if (r < 0)
                return r;
        x->type = SWARM_VALUE_BYTES;
        x->bytes.data = malloc(size ? size : 1);
        if (!x->bytes.data)
                return -ENOMEM;
        if (size)
                memcpy(x->bytes.data, data, size);
        x->bytes.size = size;
        v->n++;
        return 0;
}

int swarm_values_add_tensor(struct swarm_values *v, const char *name, enum swarm_dtype dtype,
                            uint32_t ndim, const uint64_t *shape, struct swarm_tensor *ret) {
        uint64_t n_elements, size;
        struct value *x;
        int r;

        r = swarm_tensor_shape_check(dtype, ndim, shape, &n_elements, &size);
        if (r < 0)
                return r;
        r = reserve(v, name, &x);
        if (r < 0)
                return r;

        x->type = SWARM_VALUE_TENSOR;
        x->tensor = (struct swarm_tensor) {
                .dtype = dtype,
                .ndim = ndim,
                .n_elements = n_elements,
                .size = size,
        };
        for (uint32_t i = 0; i < ndim; i++)
                x->tensor.shape[i] = shape[i];

        if (v->allocate) {
                r = v->allocate(size, &x->tensor.data, &x->release, &x->release_userdata, v->allocate_userdata);
                if (r < 0)
                        return r;
                if (!x->tensor.data)
                        return -ENOMEM;
        } else {
                size_t rounded;

                /* Rounding up to the alignment must not wrap: a shape whose
                 * byte size passes the overflow check can still be within
                 * TENSOR_ALIGN of SIZE_MAX, and would get a tiny buffer. */
                if (size > SIZE_MAX - (TENSOR_ALIGN - 1))
                        return -E2BIG;
                rounded = (size + TENSOR_ALIGN - 1) / TENSOR_ALIGN * TENSOR_ALIGN;
                x->tensor.data = aligned_alloc(TENSOR_ALIGN, rounded ? rounded : TENSOR_ALIGN);
                if (!x->tensor.data)
                        return -ENOMEM;
                memset(x->tensor.data, 0, size);
                x->owns_data = true;
        }

        v->n++;
        if (ret)
                *ret = x->tensor;
        return 0;
}

int swarm_values_add_tensor_borrowed(struct swarm_values *v, const char *name, enum swarm_dtype dtype,
                                     uint32_t ndim, const uint64_t *shape, void *data,
                                     void (*release)(void *data, uint64_t size, void *userdata),
                                     void *userdata) {
        uint64_t n_elements, size;
        struct value *x;
        int r;

        if (!data)
                return -EINVAL;
        r = swarm_tensor_shape_check(dtype, ndim, shape, &n_elements, &size);
        if (r < 0)
                return r;
        r = reserve(v, name, &x);
        if (r < 0)
                return r;
        x->type = SWARM_VALUE_TENSOR;
        x->tensor = (struct swarm_tensor) {
                .dtype = dtype, .ndim = ndim, .n_elements = n_elements, .size = size, .data = data,
        };
        for (uint32_t i = 0; i < ndim; i++)
                x->tensor.shape[i] = shape[i];
        x->release = release;
        x->release_userdata = userdata;
        v->n++;
        return 0;
}

int swarm_values_add_bytes_borrowed(struct swarm_values *v, const char *name, const void *data, size_t size,
                                    void (*release)(void *data, uint64_t size, void *userdata),
                                    void *userdata) {
        struct value *x;
        int r;

        if (!data && size > 0)
                return -EINVAL;
        r = reserve(v, name, &x);
        if (r < 0)
                return r;
        x->type = SWARM_VALUE_BYTES;
        x->bytes.data = (void *) data;
        x->bytes.size = size;
        x->release = release;
        x->release_userdata = userdata;
        x->borrowed = true;
        v->n++;
        return 0;
}

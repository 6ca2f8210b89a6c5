/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "macro.h"
#include "npy.h"

#define NPY_MAGIC "\x93NUMPY"
#define NPY_HEADER_MAX (1u << 20)

static const struct {
        const char *descr;
        enum swarm_dtype dtype;
} npy_dtypes[] = {
        { "<f4", SWARM_DTYPE_F32 }, { "<f8", SWARM_DTYPE_F64 }, { "<f2", SWARM_DTYPE_F16 },
        { "|i1", SWARM_DTYPE_I8 },  { "|u1", SWARM_DTYPE_U8 },  { "<i4", SWARM_DTYPE_I32 },
        { "<i8", SWARM_DTYPE_I64 },
};

/* Finds 'key': in the header dict and returns what follows the colon. */
static const char *dict_value(const char *header, const char *key) {
        char quoted[32];
        const char *p;

        snprintf(quoted, sizeof(quoted), "'%s'", key);
        p = strstr(header, quoted);
        if (!p)
                return NULL;
        p += strlen(quoted);
        while (*p == ' ')
                p++;
        if (*p != ':')
                return NULL;
        p++;
        while (*p == ' ')
                p++;
        return p;
}

int npy_read(const char *path, struct swarm_values *v, const char *name, char *error, size_t n) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *header = NULL;
        uint8_t preamble[8];
        uint64_t shape[SWARM_TENSOR_MAX_DIMS];
        uint32_t ndim = 0, header_len;
        enum swarm_dtype dtype = 0;
        struct swarm_tensor t;
        struct stat st;
        const char *p;
        size_t preamble_len;
        int r;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                snprintf(error, n, "%s: %s", path, strerror(errno));
                return r;
        }
        if (loop_read_exact(fd, preamble, sizeof(preamble)) < 0 || memcmp(preamble, NPY_MAGIC, 6) != 0) {
                snprintf(error, n, "%s: not a NumPy .npy file", path);
                return -EBADMSG;
        }
        if (preamble[6] == 1) {
                uint8_t b[2];
                if (loop_read_exact(fd, b, 2) < 0)
                        goto truncated;
                header_len = (uint32_t) b[0] | (uint32_t) b[1] << 8;
                preamble_len = 10;
        } else if (preamble[6] == 2 || preamble[6] == 3) {
                uint8_t b[4];
                if (loop_read_exact(fd, b, 4) < 0)
                        goto truncated;
                header_len = (uint32_t) b[0] | (uint32_t) b[1] << 8 | (uint32_t) b[2] << 16 | (uint32_t) b[3] << 24;
                preamble_len = 12;
        } else {
                snprintf(error, n, "%s: unsupported .npy format version %u.%u", path, preamble[6], preamble[7]);
                return -EBADMSG;
        }
        if (header_len == 0 || header_len > NPY_HEADER_MAX) {
                snprintf(error, n, "%s: .npy header length %" PRIu32 " out of range", path, header_len);
                return -EBADMSG;
        }
        header = malloc(header_len + 1);
        if (!header)
                return -ENOMEM;
        if (loop_read_exact(fd, header, header_len) < 0)
                goto truncated;
        header[header_len] = '\0';

        p = dict_value(header, "descr");
        if (!p || *p != '\'') {
                snprintf(error, n, "%s: .npy header has no 'descr'", path);
                return -EBADMSG;
        }
        for (size_t i = 0; i < ELEMENTSOF(npy_dtypes); i++) {
                size_t l = strlen(npy_dtypes[i].descr);
                if (strncmp(p + 1, npy_dtypes[i].descr, l) == 0 && p[1 + l] == '\'')
                        dtype = npy_dtypes[i].dtype;
        }
        if (dtype == 0) {
                snprintf(error, n, "%s: unsupported dtype %.12s (want little-endian f4, f8, f2, i1, u1, i4 or i8)",
                         path, p);
                return -EMEDIUMTYPE;
        }
        p = dict_value(header, "fortran_order");
        if (!p || strncmp(p, "False", 5) != 0) {
                snprintf(error, n, "%s: only C-order arrays are supported (fortran_order must be False)", path);
                return -EMEDIUMTYPE;
        }
        p = dict_value(header, "shape");
        if (!p || *p != '(') {
                snprintf(error, n, "%s: .npy header has no 'shape'", path);
                return -EBADMSG;
        }
        for (p++;;) {
                char *end;
                unsigned long long d;

                while (*p == ' ' || *p == ',')
                        p++;
                if (*p == ')')
                        break;
                if (ndim == SWARM_TENSOR_MAX_DIMS) {
                        snprintf(error, n, "%s: more than %d dimensions", path, SWARM_TENSOR_MAX_DIMS);
                        return -E2BIG;
                }
                errno = 0;
                d = strtoull(p, &end, 10);
                if (end == p || errno != 0 || d == 0) {
                        snprintf(error, n, "%s: bad or zero dimension in shape", path);
                        return -EBADMSG;
                }
                shape[ndim++] = d;
                p = end;
        }

        r = swarm_values_add_tensor(v, name, dtype, ndim, shape, &t);
        if (r < 0) {
                snprintf(error, n, "%s: cannot hold the array: %s", path, strerror(-r));
                return r;
        }
        if (fstat(fd, &st) < 0 || (uint64_t) st.st_size != preamble_len + header_len + t.size) {
                snprintf(error, n, "%s: file size does not match the shape and dtype in its header", path);
                return -EBADMSG;
        }
        if (loop_read_exact(fd, t.data, t.size) < 0)
                goto truncated;
        return 0;

truncated:
        snprintf(error, n, "%s: truncated .npy file", path);
        return -EBADMSG;
}

int npy_write(const char *path, const struct swarm_tensor *t) {
        _cleanup_fclose_ FILE *f = NULL;
        const char *descr = NULL;
        char header[256];
        int len, pad;
        size_t used = 0;

        for (size_t i = 0; i < ELEMENTSOF(npy_dtypes); i++)
                if (npy_dtypes[i].dtype == t->dtype)
                        descr = npy_dtypes[i].descr;
        if (!descr)
                return -EMEDIUMTYPE;    /* bf16 has no NumPy dtype */

        used = (size_t) snprintf(header, sizeof(header), "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
        for (uint32_t i = 0; i < t->ndim; i++)
                used += (size_t) snprintf(header + used, sizeof(header) - used, "%" PRIu64 "%s", t->shape[i],
                                          t->ndim == 1 || i + 1 < t->ndim ? ", " : "");
        used += (size_t) snprintf(header + used, sizeof(header) - used, "), }");
        /* Pad with spaces so the data starts 64-byte aligned, then '\n'. */
        len = (int) used;
        pad = 64 - (10 + len + 1) % 64;
        if (pad == 64)
                pad = 0;

        f = fopen(path, "we");
        if (!f)
                return -errno;
        fwrite(NPY_MAGIC "\x01\x00", 1, 8, f);
        fputc((len + pad + 1) & 0xff, f);
        fputc((len + pad + 1) >> 8, f);
        fprintf(f, "%s%*s\n", header, pad, "");
        fwrite(t->data, 1, t->size, f);
        if (fflush(f) != 0 || ferror(f))
                return -EIO;
        return 0;
}

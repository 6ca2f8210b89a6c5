/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Parsing what swarmctl users type for a job: inputs (NAME=SPEC) and
 * durations.  Shared by skill run and submit. */

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "inputs.h"
#include "log.h"
#include "macro.h"
#include "npy.h"
#include "shm.h"

/* What messages about an input start with: "--input", or "FILE:LINE: input"
 * for a job of a batch file. */
static char input_context[512] = "--input";

void input_set_context(const char *where) {
        snprintf(input_context, sizeof(input_context), "%s", where ?: "--input");
}

/* "30s", "250ms", "2m", "1h", or plain seconds. */
int duration_parse(const char *s, uint64_t *ret) {
        static const struct {
                const char *suffix;
                double usec;
        } units[] = { { "us", 1 }, { "ms", 1e3 }, { "s", 1e6 }, { "m", 60e6 }, { "min", 60e6 }, { "h", 3600e6 }, { "", 1e6 } };
        char *end;
        double v;

        errno = 0;
        v = strtod(s, &end);
        if (errno || end == s || v < 0 || !isfinite(v))
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (strcmp(end, units[i].suffix) == 0) {
                        *ret = (uint64_t) (v * units[i].usec);
                        return 0;
                }
        return -EINVAL;
}

static int parse_shape(const char *s, uint32_t *ndim, uint64_t *shape) {
        *ndim = 0;
        while (*s) {
                char *end;
                unsigned long long d;

                if (*ndim == SWARM_TENSOR_MAX_DIMS)
                        return -E2BIG;
                errno = 0;
                d = strtoull(s, &end, 10);
                if (end == s || errno || d == 0)
                        return -EINVAL;
                shape[(*ndim)++] = d;
                if (*end == 'x')
                        end++;
                else if (*end)
                        return -EINVAL;
                s = end;
        }
        return *ndim > 0 ? 0 : -EINVAL;
}

/* random:f32:512x256[:SEED] — uniform in [-1, 1), from a fixed seed (or
 * the one given) so runs repeat. */
static int add_random_tensor(struct swarm_values *v, const char *name, const char *spec) {
        uint64_t shape[SWARM_TENSOR_MAX_DIMS], state = 0x9e3779b97f4a7c15u;
        _cleanup_free_ char *dims = NULL;
        const char *colon;
        enum swarm_dtype dtype;
        struct swarm_tensor t;
        uint32_t ndim;
        int r;

        if (strncmp(spec, "f32:", 4) == 0)
                dtype = SWARM_DTYPE_F32;
        else if (strncmp(spec, "f64:", 4) == 0)
                dtype = SWARM_DTYPE_F64;
        else
                return log_error_errno(-EINVAL, "%s %s=random:%s: dtype must be f32 or f64", input_context, name, spec);
        colon = strchr(spec + 4, ':');
        dims = colon ? strndup(spec + 4, (size_t) (colon - (spec + 4))) : strdup(spec + 4);
        if (!dims)
                return log_oom();
        if (colon) {
                char *end;
                unsigned long long seed;

                errno = 0;
                seed = strtoull(colon + 1, &end, 0);
                if (!colon[1] || *end || errno)
                        return log_error_errno(-EINVAL, "%s %s=random:%s: the seed must be an integer", input_context, name, spec);
                /* xorshift must not start from 0. */
                state ^= seed * 0xbf58476d1ce4e5b9u;
                state = state ?: 1;
        }
        r = parse_shape(dims, &ndim, shape);
        if (r < 0)
                return log_error_errno(r, "%s %s=random:%s: shape must look like 64x32", input_context, name, spec);
        r = swarm_values_add_tensor(v, name, dtype, ndim, shape, &t);
        if (r < 0)
                return log_error_errno(r, "%s %s: cannot make the tensor: %m", input_context, name);
        for (uint64_t i = 0; i < t.n_elements; i++) {
                double x;
                /* xorshift64*: quality is beside the point, repeatability is not. */
                state ^= state >> 12, state ^= state << 25, state ^= state >> 27;
                x = (double) ((state * 0x2545f4914f6cdd1du) >> 11) / 9007199254740992.0 * 2.0 - 1.0;
                if (dtype == SWARM_DTYPE_F32)
                        ((float *) t.data)[i] = (float) x;
                else
                        ((double *) t.data)[i] = x;
        }
        return 0;
}

/* Reads the file straight into shared memory, so every request that uses
 * it passes the same memfd to the worker: no copy per job. */
static int add_bytes_file(struct swarm_values *v, const char *name, const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        void (*release)(void *, uint64_t, void *);
        struct stat st;
        void *data, *block;
        uint64_t done = 0;
        int r;

        if (fd < 0 || fstat(fd, &st) < 0)
                return log_error_errno(negative_errno(), "%s %s=@%s: %m", input_context, name, path);
        if (!S_ISREG(st.st_mode))
                return log_error_errno(-EINVAL, "%s %s=@%s: not a regular file", input_context, name, path);
        if (st.st_size == 0)
                return swarm_values_set_bytes(v, name, "", 0);

        r = shm_allocate((uint64_t) st.st_size, &data, &release, &block, NULL);
        if (r < 0)
                return log_error_errno(r, "%s %s=@%s: cannot allocate shared memory: %m", input_context, name, path);
        while (done < (uint64_t) st.st_size) {
                ssize_t k = read(fd, (uint8_t *) data + done, (size_t) ((uint64_t) st.st_size - done));
                if (k <= 0) {
                        release(data, (uint64_t) st.st_size, block);
                        return log_error_errno(k < 0 ? negative_errno() : -EIO,
                                               "%s %s=@%s: read failed: %m", input_context, name, path);
                }
                done += (uint64_t) k;
        }
        r = swarm_values_add_bytes_borrowed(v, name, data, (size_t) st.st_size, release, block);
        if (r < 0)
                release(data, (uint64_t) st.st_size, block);
        return r;
}

/* NAME=@FILE.npy | NAME=@FILE | NAME=random:f32:MxN | NAME=int:N |
 * NAME=str:TEXT | NAME=text:TEXT (bytes) | NAME=VALUE (int or string). */
int input_add(struct swarm_values *v, const char *arg) {
        _cleanup_free_ char *name = NULL;
        const char *eq = strchr(arg, '='), *spec;
        char error[512], *end;
        long long x;
        size_t l;
        int r;

        if (!eq || eq == arg)
                return log_error_errno(-EINVAL, "%s %s: expected NAME=SPEC", input_context, arg);
        name = strndup(arg, (size_t) (eq - arg));
        if (!name)
                return log_oom();
        if (swarm_values_get_backing(v, name, &(void (*)(void *, uint64_t, void *)) { NULL }, &(void *) { NULL }) != -ENOENT ||
            swarm_values_get_int(v, name, &(int64_t) { 0 }) != -ENOENT)
                return log_error_errno(-EEXIST, "%s %s: %s given twice", input_context, arg, name);
        spec = eq + 1;
        l = strlen(spec);

        if (spec[0] == '@' && l > 4 && strcmp(spec + l - 4, ".npy") == 0) {
                r = npy_read(spec + 1, v, name, error, sizeof(error));
                if (r < 0)
                        return log_error_errno(r, "%s %s: %s", input_context, name, error);
                return 0;
        }
        if (spec[0] == '@')
                return add_bytes_file(v, name, spec + 1);
        if (strncmp(spec, "random:", 7) == 0)
                return add_random_tensor(v, name, spec + 7);
        else if (strncmp(spec, "int:", 4) == 0) {
                errno = 0;
                x = strtoll(spec + 4, &end, 0);
                if (!spec[4] || *end || errno)
                        return log_error_errno(-EINVAL, "%s %s: %s is not an integer", input_context, name, spec + 4);
                r = swarm_values_set_int(v, name, x);
        } else if (strncmp(spec, "str:", 4) == 0)
                r = swarm_values_set_string(v, name, spec + 4);
        else if (strncmp(spec, "text:", 5) == 0)
                r = swarm_values_set_bytes(v, name, spec + 5, strlen(spec + 5));
        else {
                errno = 0;
                x = strtoll(spec, &end, 0);
                if (*spec && !*end && errno == 0)
                        r = swarm_values_set_int(v, name, x);
                else
                        r = swarm_values_set_string(v, name, spec);
        }
        if (r < 0)
                return log_error_errno(r, "%s %s: %s", input_context, arg,
                                       r == -EINVAL ? "bad name (1-63 characters of [a-z0-9_.-])" : strerror(-r));
        return 0;
}


/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "build-config.h"
#include "macro.h"
#include "skill-loader.h"
#include "swarm-host.h"

/* The smallest descriptor of ABI 1: everything up to and including verify. */
#define SKILL_DESCRIPTOR_MIN_SIZE (offsetof(struct swarm_skill, verify) + sizeof(((struct swarm_skill *) 0)->verify))

/* Whether the descriptor has the field at offset off (of size sz): older
 * plugins' descriptors end before it. */
static bool has_field(const struct swarm_skill *s, size_t off, size_t sz, uint32_t minor) {
        return (s->abi_version & 0xffffu) >= minor && s->struct_size >= off + sz;
}

const struct swarm_param *skill_declared_inputs(const struct swarm_skill *s) {
        return has_field(s, offsetof(struct swarm_skill, inputs), sizeof(s->inputs), 2) ? s->inputs : NULL;
}

const struct swarm_param *skill_declared_outputs(const struct swarm_skill *s) {
        return has_field(s, offsetof(struct swarm_skill, outputs), sizeof(s->outputs), 2) ? s->outputs : NULL;
}

/* A declared list must be usable as the host uses it: valid, unique names,
 * known types and dtypes, at most SWARM_TENSOR_MAX_DIMS dimensions. */
static int params_valid(const char *path, const char *skill, const char *what, const struct swarm_param *list,
                        char *error, size_t n) {
        size_t count = 0;

        for (const struct swarm_param *p = list; list && p->name; p++, count++) {
                if (count >= 128) {
                        snprintf(error, n, "%s: skill %s declares over 128 %ss (a list without its NULL end?)",
                                 path, skill, what);
                        return -EINVAL;
                }
                if (!swarm_value_name_valid(p->name)) {
                        snprintf(error, n, "%s: skill %s declares %s \"%s\": not 1-63 characters of [a-z0-9_.-]",
                                 path, skill, what, p->name);
                        return -EINVAL;
                }
                if (p->type != 0 && !swarm_value_type_name(p->type)) {
                        snprintf(error, n, "%s: skill %s declares %s \"%s\" of unknown type %d",
                                 path, skill, what, p->name, (int) p->type);
                        return -EINVAL;
                }
                if ((p->dtype && !swarm_dtype_name(p->dtype)) || p->ndim > SWARM_TENSOR_MAX_DIMS) {
                        snprintf(error, n, "%s: skill %s declares %s \"%s\" with an unknown dtype or over %d dimensions",
                                 path, skill, what, p->name, SWARM_TENSOR_MAX_DIMS);
                        return -EINVAL;
                }
                for (const struct swarm_param *q = list; q < p; q++)
                        if (strcmp(q->name, p->name) == 0) {
                                snprintf(error, n, "%s: skill %s declares %s \"%s\" twice", path, skill, what,
                                         p->name);
                                return -EINVAL;
                        }
        }
        return 0;
}

int skill_load(const char *path, struct loaded_skill *ret, char *error, size_t n) {
        swarm_skill_entry_fn entry;
        const struct swarm_skill *s;
        void *handle;
        const char *missing = NULL;

        /* A path, never a bare name: dlopen() must not search LD_LIBRARY_PATH. */
        if (!strchr(path, '/')) {
                snprintf(error, n, "%s: not a path (use ./%s)", path, path);
                return -EINVAL;
        }

        handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!handle) {
                snprintf(error, n, "%s", dlerror());
                return -ENOEXEC;
        }
        *(void **) &entry = dlsym(handle, SWARM_SKILL_ENTRY_SYMBOL);
        if (!entry) {
                snprintf(error, n, "%s: no %s() entry point: not a skill plugin", path, SWARM_SKILL_ENTRY_SYMBOL);
                goto fail;
        }
        s = entry();
        if (!s) {
                snprintf(error, n, "%s: %s() returned NULL", path, SWARM_SKILL_ENTRY_SYMBOL);
                goto fail;
        }
        if (SWARM_SKILL_ABI_MAJOR_OF(s->abi_version) != SWARM_SKILL_ABI_MAJOR) {
                snprintf(error, n, "%s: skill ABI %u.%u, but this host runs ABI %u.x: rebuild the plugin against this SDK",
                         path, SWARM_SKILL_ABI_MAJOR_OF(s->abi_version), s->abi_version & 0xffffu,
                         SWARM_SKILL_ABI_MAJOR);
                goto fail;
        }
        if (s->struct_size < SKILL_DESCRIPTOR_MIN_SIZE) {
                snprintf(error, n, "%s: descriptor is %u bytes, ABI %u needs at least %zu",
                         path, s->struct_size, SWARM_SKILL_ABI_MAJOR, (size_t) SKILL_DESCRIPTOR_MIN_SIZE);
                goto fail;
        }
        if (!swarm_value_name_valid(s->name)) {
                snprintf(error, n, "%s: skill name \"%s\" is not 1-63 characters of [a-z0-9_.-]",
                         path, s->name ? s->name : "(null)");
                goto fail;
        }
        if (!s->advertise)
                missing = "advertise";
        else if (!s->price)
                missing = "price";
        else if (!s->execute)
                missing = "execute";
        else if (!s->verify)
                missing = "verify";
        if (missing) {
                snprintf(error, n, "%s: skill %s has no %s() callback", path, s->name, missing);
                goto fail;
        }

        if (params_valid(path, s->name, "input", skill_declared_inputs(s), error, n) < 0 ||
            params_valid(path, s->name, "output", skill_declared_outputs(s), error, n) < 0)
                goto fail;

        *ret = (struct loaded_skill) { .handle = handle, .skill = s };
        return 0;
fail:
        dlclose(handle);
        return -ENOEXEC;
}

void skill_unload(struct loaded_skill *s) {
        if (s->handle)
                dlclose(s->handle);
        *s = (struct loaded_skill) {};
}

const char *skill_callbacks_string(const struct swarm_skill *s, char *buf, size_t n) {
        const struct {
                const char *name;
                bool present;
        } table[] = {
                { "init", s->init },
                { "fini", s->fini },
                { "advertise", s->advertise },
                { "price", s->price },
                { "execute", s->execute },
                { "prove", s->prove },
                { "verify", s->verify },
        };
        size_t used = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
                if (table[i].present && used < n)
                        used += (size_t) snprintf(buf + used, n - used, "%s%s", used ? "," : "", table[i].name);
        return buf;
}

int skill_find(const char *arg, const char *dirs, char **ret) {
        _cleanup_free_ char *copy = NULL;
        char *saveptr = NULL;

        if (strchr(arg, '/')) {
                *ret = realpath(arg, NULL);
                return *ret ? 0 : negative_errno();
        }
        copy = strdup(dirs);
        if (!copy)
                return -ENOMEM;
        for (char *d = strtok_r(copy, ":", &saveptr); d; d = strtok_r(NULL, ":", &saveptr)) {
                for (int i = 0; i < 2; i++) {
                        char *path;
                        int k = i == 0 ? asprintf(&path, "%s/%s.so", d, arg) :
                                asprintf(&path, "%s/%s/%s.so", d, arg, arg);

                        if (k < 0)
                                return -ENOMEM;
                        if (access(path, R_OK) == 0) {
                                *ret = path;
                                return 0;
                        }
                        free(path);
                }
        }
        return -ENOENT;
}

char *skill_worker_path(void) {
        const char *env = getenv("SWARM_WORKER");
        char self[PATH_MAX], *slash;
        ssize_t n;

        if (env && env[0])
                return strdup(env);
        n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n > 0) {
                self[n] = '\0';
                slash = strrchr(self, '/');
                /* Only a build tree has a worker beside the binary; installed
                 * programs live in bindir/sbindir and find none there. */
                if (slash) {
                        *slash = '\0';
                        for (int i = 0; i < 2; i++) {
                                char *path;
                                if (asprintf(&path, i == 0 ? "%s/../daemon/swarm-worker" : "%s/swarm-worker",
                                             self) < 0)
                                        return NULL;
                                if (access(path, X_OK) == 0)
                                        return path;
                                free(path);
                        }
                }
        }
        return strdup(LIBEXECDIR "/swarm-worker");
}

char *skill_name_from_path(const char *path) {
        const char *base = strrchr(path, '/');
        size_t n;

        base = base ? base + 1 : path;
        n = strlen(base);
        if (n > 3 && strcmp(base + n - 3, ".so") == 0)
                n -= 3;
        return strndup(base, n);
}

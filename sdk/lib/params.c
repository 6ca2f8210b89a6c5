/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Checking a job's values against what a skill declared (ABI 1.2). */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "swarm/skill.h"
#include "swarm-host.h"

const char *swarm_value_type_name(enum swarm_value_type type) {
        switch (type) {
        case SWARM_VALUE_TENSOR:
                return "tensor";
        case SWARM_VALUE_STRING:
                return "string";
        case SWARM_VALUE_INT:
                return "int";
        case SWARM_VALUE_BYTES:
                return "bytes";
        }
        return NULL;
}

const struct swarm_param *swarm_params_find(const struct swarm_param *list, const char *name) {
        if (!list || !name)
                return NULL;
        for (const struct swarm_param *p = list; p->name; p++)
                if (strcmp(p->name, name) == 0)
                        return p;
        return NULL;
}

/* "a, b, precision" into buf, shortened with "…" when it does not fit. */
static void names_of(const struct swarm_param *list, char *buf, size_t size) {
        size_t n = 0;

        buf[0] = 0;
        for (const struct swarm_param *p = list; p->name; p++) {
                int k = snprintf(buf + n, size - n, "%s%s", n > 0 ? ", " : "", p->name);

                if (k < 0 || (size_t) k >= size - n) {
                        if (size >= 4)
                                strcpy(buf + size - 4, "...");
                        return;
                }
                n += (size_t) k;
        }
}

/* "an f32 tensor of 2 dimensions (m×k)", "a string", … */
static void describe(const struct swarm_param *p, char *buf, size_t size) {
        const char *dtype = p->dtype ? swarm_dtype_name(p->dtype) : NULL;
        const char *type = swarm_value_type_name(p->type) ?: "value";
        char dims[48] = "";

        if (p->type == 0) {
                snprintf(buf, size, "a value of any type");
                return;
        }
        if (p->type != SWARM_VALUE_TENSOR) {
                snprintf(buf, size, "%s %s", p->type == SWARM_VALUE_INT ? "an" : "a", type);
                return;
        }
        if (p->ndim > 0)
                snprintf(dims, sizeof(dims), " of %" PRIu32 " dimension%s", p->ndim, p->ndim == 1 ? "" : "s");
        snprintf(buf, size, "%s %s tensor%s%s%s%s",
                 dtype && (dtype[0] == 'f' || dtype[0] == 'i') ? "an" : "a",
                 dtype ?: "any-dtype", dims,
                 p->shape ? " (" : "", p->shape ?: "", p->shape ? ")" : "");
}

int swarm_params_check(const struct swarm_param *list, const struct swarm_values *values, const char *what,
                       char *err, size_t err_size) {
        char expected[160], names[160];

        if (!list)
                return 0;

        for (size_t i = 0; i < swarm_values_count(values); i++) {
                enum swarm_value_type type;
                const char *name = swarm_values_name(values, i, &type);
                const struct swarm_param *p = swarm_params_find(list, name);
                struct swarm_tensor t;

                if (!p) {
                        names_of(list, names, sizeof(names));
                        snprintf(err, err_size, "%s \"%s\" is not one this skill takes (it takes: %s)", what, name,
                                 names[0] ? names : "nothing");
                        return -EINVAL;
                }
                describe(p, expected, sizeof(expected));
                if (p->type && type != p->type) {
                        snprintf(err, err_size, "%s \"%s\" is %s, but must be %s", what, name,
                                 type == SWARM_VALUE_INT ? "an int" : type == SWARM_VALUE_STRING ? "a string" :
                                 type == SWARM_VALUE_BYTES ? "a byte string" : "a tensor", expected);
                        return -EINVAL;
                }
                if (type != SWARM_VALUE_TENSOR || swarm_values_get_tensor(values, name, &t) < 0)
                        continue;
                if (p->dtype && t.dtype != p->dtype) {
                        snprintf(err, err_size, "%s \"%s\" has dtype %s, but must be %s", what, name,
                                 swarm_dtype_name(t.dtype) ?: "unknown", expected);
                        return -EINVAL;
                }
                if (p->ndim && t.ndim != p->ndim) {
                        snprintf(err, err_size, "%s \"%s\" has %" PRIu32 " dimension%s, but must be %s", what, name,
                                 t.ndim, t.ndim == 1 ? "" : "s", expected);
                        return -EINVAL;
                }
        }

        for (const struct swarm_param *p = list; p->name; p++) {
                enum swarm_value_type type;
                bool present = false;

                if (p->flags & SWARM_PARAM_OPTIONAL)
                        continue;
                for (size_t i = 0; i < swarm_values_count(values) && !present; i++)
                        present = strcmp(swarm_values_name(values, i, &type), p->name) == 0;
                if (!present) {
                        describe(p, expected, sizeof(expected));
                        snprintf(err, err_size, "missing %s \"%s\": %s%s%s", what, p->name, expected,
                                 p->description ? ", " : "", p->description ?: "");
                        return -EINVAL;
                }
        }
        return 0;
}

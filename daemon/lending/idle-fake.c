/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdlib.h>

#include "idle-backends.h"

static void fake_free(struct idle_source *s) {
        free(s);
}

static const struct idle_source_ops fake_ops = {
        .name = "fake",
        .free = fake_free,
};

int idle_fake_new(enum idle_state state, idle_source_changed_fn changed, void *userdata, struct idle_source **ret) {
        struct idle_source *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        *s = (struct idle_source) { .ops = &fake_ops, .state = state, .changed = changed, .userdata = userdata };
        *ret = s;
        return 0;
}

void idle_fake_set(struct idle_source *s, enum idle_state state) {
        idle_source_set(s, state, NULL);
}

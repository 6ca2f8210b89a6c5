/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <stddef.h>

#include "idle-source.h"

void idle_source_set(struct idle_source *s, enum idle_state state, const char *absent) {
        s->state = state;
        s->absent = absent;
        if (s->changed)
                s->changed(s, s->userdata);
}

void idle_source_poll(struct idle_source *s) {
        if (s && s->ops->poll)
                s->ops->poll(s);
}

struct idle_source *idle_source_free(struct idle_source *s) {
        if (s)
                s->ops->free(s);
        return NULL;
}

const char *idle_source_name(const struct idle_source *s) {
        return s ? s->ops->name : "none";
}

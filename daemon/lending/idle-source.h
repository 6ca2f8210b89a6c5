/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Where the idle policy learns whether the owner is using the machine: one
 * small interface, several backends (as power-profiles-daemon has drivers).
 *
 *   idle-logind.c  the session: logind's IdleHint on the system bus
 *   idle-nvml.c    the GPU: processes other than ours on it (NVML, dlopen'd)
 *   idle-fake.c    a value the tests set
 *
 * A source answers one question, "is it busy?", as one of three states,
 * and calls changed whenever that answer may have changed; lending.c
 * decides from the answers. */

#include <stdbool.h>

struct idle_source;

enum idle_state {
        IDLE_SOURCE_WAITING,    /* no answer yet */
        IDLE_SOURCE_IDLE,
        IDLE_SOURCE_BUSY,
};

typedef void (*idle_source_changed_fn)(struct idle_source *s, void *userdata);

struct idle_source_ops {
        const char *name;
        /* Takes a fresh look (on the idle policy's timer); may be NULL for
         * a source that only follows signals. */
        void (*poll)(struct idle_source *s);
        void (*free)(struct idle_source *s);
};

struct idle_source {
        const struct idle_source_ops *ops;
        enum idle_state state;
        /* What the source asks is not there (no logind): it answers idle,
         * and this says why. */
        const char *absent;
        idle_source_changed_fn changed;
        void *userdata;
};

/* For the backends: sets the answer and tells the owner. */
void idle_source_set(struct idle_source *s, enum idle_state state, const char *absent);

void idle_source_poll(struct idle_source *s);
struct idle_source *idle_source_free(struct idle_source *s);
const char *idle_source_name(const struct idle_source *s);

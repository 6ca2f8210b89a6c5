/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The idle sources (idle-source.h), one constructor each. */

#include <systemd/sd-bus.h>

#include "idle-source.h"

/* The session: busy while logind's IdleHint is false.  Follows logind's
 * PropertiesChanged and its coming and going on bus, and re-reads the hint
 * every few polls (logind does not signal idleness it derives from TTY
 * access times).  bus NULL: absent at once ("no bus"). */
int idle_logind_new(sd_bus *bus, idle_source_changed_fn changed, void *userdata, struct idle_source **ret);

/* The GPU: busy while a process that is neither swarmd nor one of its
 * workers has a GPU open.  -EOPNOTSUPP (logged) when NVML cannot be loaded
 * or initialised. */
int idle_nvml_new(idle_source_changed_fn changed, void *userdata, struct idle_source **ret);

/* A source whose answer the caller sets: for tests. */
int idle_fake_new(enum idle_state state, idle_source_changed_fn changed, void *userdata, struct idle_source **ret);
void idle_fake_set(struct idle_source *s, enum idle_state state);

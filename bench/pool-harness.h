/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A skill pool driven to completion from a benchmark's own event loop:
 * start it and wait for its first worker, run one request and wait for its
 * result.  Any failure ends the program with a message (benchmarks have
 * nothing better to do with one). */

#include <systemd/sd-event.h>

#include "skill-pool.h"

struct pool_wait {
        bool done;
        struct pool_result copy;        /* the result, its outputs taken */
        struct swarm_values *outputs;   /* the caller's to free */
};

_Noreturn void pool_harness_die(const char *what, int r);
struct skill_pool *pool_harness_start(sd_event *event, const char *worker, const char *plugin,
                                      const struct swarm_values *config);
struct pool_wait pool_harness_run(sd_event *event, struct skill_pool *p, enum pool_op op,
                                  const struct swarm_values *in, const struct swarm_values *out);

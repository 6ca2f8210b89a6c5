/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What swarmctl users type for a job, parsed (skill run, submit). */

#include <stdint.h>

#include "swarm-host.h"

/* "30s", "250ms", "2m", "1h", or plain seconds, into µs.  -EINVAL. */
int duration_parse(const char *s, uint64_t *ret);

/* Adds one input to v from NAME=SPEC, SPEC being @FILE.npy (a tensor),
 * @FILE (bytes), random:f32:MxN[:SEED] (or f64), int:N, str:TEXT,
 * text:TEXT (bytes), or a bare integer or string.  Tensors and files are
 * allocated with v's allocator (give it shm_allocate to pass them on
 * without copies).  Logs what was wrong and returns a negative errno. */
int input_add(struct swarm_values *v, const char *arg);

/* What input_add()'s messages start with: "--input" (NULL), or e.g.
 * "jobs.yaml:12: input" for a job of a batch file. */
void input_set_context(const char *where);

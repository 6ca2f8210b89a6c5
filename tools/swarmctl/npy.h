/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* NumPy .npy files (format versions 1.0–3.0): how tensors reach swarmctl
 * and leave it.  Only little-endian, C-order arrays of the dtypes the SDK
 * knows; anything else is refused with the reason. */

#include <stddef.h>

#include "swarm/skill.h"

/* Reads path into a new tensor named name of v.  On failure returns a
 * negative errno and writes "PATH: what was wrong" into error. */
int npy_read(const char *path, struct swarm_values *v, const char *name, char *error, size_t n);

/* Writes t to path (format 1.0). */
int npy_write(const char *path, const struct swarm_tensor *t);

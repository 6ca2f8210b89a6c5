/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* How the engine's loaders explain a refusal: a one-line message into a
 * caller's buffer (which may be NULL), beside the errno they return. */

#include <stddef.h>

/* Formats into err (when err is not NULL and err_size > 0) and returns r, so
 * that `return nn_error(err, err_size, -EBADMSG, "…", …);` reads as one step. */
int nn_error(char *err, size_t err_size, int r, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

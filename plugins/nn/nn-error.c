/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stdio.h>

#include "nn-error.h"

int nn_error(char *err, size_t err_size, int r, const char *fmt, ...) {
        va_list ap;

        if (!err || err_size == 0)
                return r;
        va_start(ap, fmt);
        (void) vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
        return r;
}

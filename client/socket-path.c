/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "socket-path.h"

char *socket_path(const char *state_dir, const char *name) {
        const char *runtime = getenv("RUNTIME_DIRECTORY");
        char *p;

        if (runtime && runtime[0])
                return asprintf(&p, "%.*s/%s", (int) strcspn(runtime, ":"), runtime, name) < 0 ? NULL : p;
        return asprintf(&p, "%s/%s", state_dir, name) < 0 ? NULL : p;
}

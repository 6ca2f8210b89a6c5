/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "control-client.h"
#include "log.h"

const char *format_ucredits(uint64_t micro, char *buf) {
        snprintf(buf, CREDITS_MAX, "%" PRIu64 ".%06" PRIu64, micro / 1000000u, micro % 1000000u);
        return buf;
}

const char *format_credits(int64_t micro, char *buf) {
        if (micro >= 0)
                return format_ucredits((uint64_t) micro, buf);
        snprintf(buf, CREDITS_MAX, "-%" PRIu64 ".%06" PRIu64, ((uint64_t) -(micro + 1) + 1) / 1000000u,
                 ((uint64_t) -(micro + 1) + 1) % 1000000u);
        return buf;
}

void json_string(const char *s) {
        putchar('"');
        for (; s && *s; s++) {
                unsigned char c = (unsigned char) *s;
                if (c == '"' || c == '\\')
                        printf("\\%c", c);
                else if (c < 0x20)
                        printf("\\u%04x", c);
                else
                        putchar(c);
        }
        putchar('"');
}

const char *control_socket_default(void) {
        const char *e = getenv("SWARM_CONTROL_SOCKET");

        return e && e[0] ? e : CONTROL_SOCKET_DEFAULT;
}

int control_call(const char *path, const Swarm__ControlRequest *req, Swarm__ControlReply **ret) {
        Swarm__ControlReply *reply = NULL;
        int r;

        r = control_client_call(path, req, &reply);
        if (r == -ENOTCONN) {
                log_error("swarmd is not running (nothing listens on %s).", path);
                return SWARMCTL_EXIT_NOT_RUNNING;
        }
        if (r == -EACCES) {
                log_error("Not allowed to connect to %s.", path);
                return SWARMCTL_EXIT_NOT_AUTHORIZED;
        }
        if (r < 0) {
                log_error_errno(r, "Talking to swarmd at %s failed: %m", path);
                return SWARMCTL_EXIT_FAILURE;
        }
        if (reply->error < 0) {
                log_error("swarmd: %s", reply->message);
                r = reply->error == -EACCES ? SWARMCTL_EXIT_NOT_AUTHORIZED : SWARMCTL_EXIT_FAILURE;
                swarm__control_reply__free_unpacked(reply, NULL);
                return r;
        }
        *ret = reply;
        return 0;
}

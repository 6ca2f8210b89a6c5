/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "build-config.h"
#include "common.h"
#include "control-client.h"
#include "log.h"
#include "socket-path.h"

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

const char *format_price(uint64_t now, uint64_t list, const char *unit, char *buf, size_t size) {
        if (now == 0 && list == 0)
                snprintf(buf, size, "per job (the skill's)");
        else if (list == 0 || list == now)
                snprintf(buf, size, "%" PRIu64 " µcredits/%s", now, unit && unit[0] ? unit : "job");
        else
                snprintf(buf, size, "%" PRIu64 " µcredits/%s (list %" PRIu64 ")", now,
                         unit && unit[0] ? unit : "job", list);
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

/* The places a socket may be, most specific first; n of them. */
static size_t socket_candidates(const char *name, char paths[3][PATH_MAX]) {
        const char *state = getenv("SWARM_STATE_DIR");
        size_t n = 0;

        if (state && state[0])
                snprintf(paths[n++], PATH_MAX, "%s/%s", state, name);
        snprintf(paths[n++], PATH_MAX, "%s/%s", RUNTIME_SOCKET_DIR, name);
        snprintf(paths[n++], PATH_MAX, "%s/%s", STATEDIR, name);
        return n;
}

const char *local_socket_default(const char *name, const char *env) {
        static char paths[3][PATH_MAX];
        const char *e = getenv(env);
        size_t n;

        if (e && e[0])
                return e;
        n = socket_candidates(name, paths);
        for (size_t i = 0; i < n; i++) {
                struct stat st;

                if (stat(paths[i], &st) >= 0 && S_ISSOCK(st.st_mode))
                        return paths[i];
        }
        /* None yet: the one the service uses, for the error message. */
        return paths[n - 2];
}

const char *control_socket_default(void) {
        return local_socket_default(CONTROL_SOCKET_NAME, "SWARM_CONTROL_SOCKET");
}

int log_not_running(const char *path, const char *name, const char *env) {
        char paths[3][PATH_MAX], looked[3 * PATH_MAX + 16] = "";
        const char *e = getenv(env);
        size_t n = socket_candidates(name, paths), used = 0;

        if (!(e && e[0] && strcmp(e, path) == 0)) {
                for (size_t i = 0; i < n; i++)
                        used += (size_t) snprintf(looked + used, sizeof(looked) - used, "%s%s",
                                                  i == 0 ? "" : i + 1 == n ? " or " : ", ", paths[i]);
                if (strstr(looked, path))
                        path = looked;
        }
        log_error("swarmd is not running: nothing listens on %s%s%s%s. A swarmd started by hand listens in its "
                  "state directory: point swarmctl there with --socket DIR/%s or SWARM_STATE_DIR=DIR; the "
                  "service starts with 'systemctl start swarmd'.", path, path == e ? " (from $" : "",
                  path == e ? env : "", path == e ? ")" : "", name);
        return SWARMCTL_EXIT_NOT_RUNNING;
}

int control_call(const char *path, const Swarm__ControlRequest *req, Swarm__ControlReply **ret) {
        Swarm__ControlReply *reply = NULL;
        int r;

        r = control_client_call(path, req, &reply);
        if (r == -ENOTCONN)
                return log_not_running(path, CONTROL_SOCKET_NAME, "SWARM_CONTROL_SOCKET");
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

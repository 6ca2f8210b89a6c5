/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "control-client.h"
#include "fileio.h"
#include "macro.h"

/* A reply cut short means swarmd closed the connection. */
static int read_reply(int fd, void *buf, size_t n) {
        int r = loop_read_exact(fd, buf, n);

        return r == -ENODATA ? -ECONNRESET : r;
}

int control_client_call(const char *path, const Swarm__ControlRequest *req, Swarm__ControlReply **ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t n = swarm__control_request__get_packed_size(req);
        uint8_t len[4];
        uint32_t size;
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                r = negative_errno();
                return r == -ENOENT || r == -ECONNREFUSED ? -ENOTCONN : r;
        }

        buf = malloc(n + 4);
        if (!buf)
                return -ENOMEM;
        buf[0] = n & 0xff, buf[1] = (n >> 8) & 0xff, buf[2] = (n >> 16) & 0xff, buf[3] = (n >> 24) & 0xff;
        swarm__control_request__pack(req, buf + 4);
        r = loop_send(fd, buf, n + 4);
        if (r < 0)
                return r;
        r = read_reply(fd, len, 4);
        if (r < 0)
                return r;
        size = (uint32_t) len[0] | (uint32_t) len[1] << 8 | (uint32_t) len[2] << 16 | (uint32_t) len[3] << 24;
        if (size > CONTROL_REPLY_MAX)
                return -EBADMSG;
        free(buf);
        buf = malloc(size ? size : 1);
        if (!buf)
                return -ENOMEM;
        r = read_reply(fd, buf, size);
        if (r < 0)
                return r;
        *ret = swarm__control_reply__unpack(NULL, size, buf);
        return *ret ? 0 : -EBADMSG;
}


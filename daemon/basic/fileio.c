/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fileio.h"
#include "macro.h"

ssize_t loop_read(int fd, void *buf, size_t n) {
        uint8_t *p = buf;
        size_t done = 0;

        while (done < n) {
                ssize_t k = read(fd, p + done, n - done);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        break;
                done += (size_t) k;
        }
        return (ssize_t) done;
}

int loop_read_exact(int fd, void *buf, size_t n) {
        ssize_t k = loop_read(fd, buf, n);

        if (k < 0)
                return (int) k;
        return (size_t) k == n ? 0 : -ENODATA;
}

/* write() or, for a socket, send() without SIGPIPE, until all is out. */
static int write_all(int fd, const void *buf, size_t n, bool is_socket) {
        const uint8_t *p = buf;

        while (n > 0) {
                ssize_t k = is_socket ? send(fd, p, n, MSG_NOSIGNAL) : write(fd, p, n);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        return -EIO;
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

int loop_write(int fd, const void *buf, size_t n) {
        return write_all(fd, buf, n, false);
}

int loop_send(int fd, const void *buf, size_t n) {
        return write_all(fd, buf, n, true);
}

int read_fd_string(int fd, size_t max, char **ret) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, allocated = 0;

        for (;;) {
                size_t want;
                ssize_t k;

                if (allocated - size < 1024) {
                        char *p;

                        if (allocated > max)
                                return -EFBIG;
                        allocated = allocated ? allocated * 2 : 4096;
                        p = realloc(buf, allocated);
                        if (!p)
                                return -ENOMEM;
                        buf = p;
                }
                want = allocated - size - 1;
                k = loop_read(fd, buf + size, want);
                if (k < 0)
                        return (int) k;
                size += (size_t) k;
                if ((size_t) k < want)
                        break;          /* the end */
        }
        buf[size] = '\0';
        *ret = TAKE_PTR(buf);
        return 0;
}

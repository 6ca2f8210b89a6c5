/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* read() and write() until done, through EINTR and short transfers. */

#include <stddef.h>
#include <sys/types.h>

/* Reads up to n bytes, fewer only at end of file: how many, or a negative
 * errno. */
ssize_t loop_read(int fd, void *buf, size_t n);

/* Reads exactly n bytes: 0, -ENODATA when the file or peer ended first, or
 * a negative errno. */
int loop_read_exact(int fd, void *buf, size_t n);

/* Writes all n bytes: 0, -EIO when write() wrote nothing, or a negative
 * errno. */
int loop_write(int fd, const void *buf, size_t n);

/* loop_write() for a socket, without SIGPIPE when the peer has gone
 * (-EPIPE instead). */
int loop_send(int fd, const void *buf, size_t n);

/* Reads fd to its end into a NUL-terminated string (malloc'd); -EFBIG past
 * max bytes. */
int read_fd_string(int fd, size_t max, char **ret);

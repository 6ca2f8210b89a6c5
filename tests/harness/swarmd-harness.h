/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Starts the real swarmd binary the way systemd does and listens on its
 * notify socket.  Shared by the integration tests and the benchmarks. */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct notify_listener {
        int fd;
        char path[108];
};

/* Binds a datagram socket at path (removing a stale one). 0 or -errno. */
int notify_listener_open(struct notify_listener *l, const char *path);
void notify_listener_close(struct notify_listener *l);

/* Waits up to timeout_ms for a notification that holds the line `want`, or,
 * when want ends in '=', any line starting with it; earlier datagrams are
 * consumed.  Copies the whole datagram to out (may be NULL).  0, or
 * -ETIMEDOUT, or -errno. */
int notify_listener_wait(struct notify_listener *l, const char *want, int timeout_ms,
                         char *out, size_t out_size);

struct swarmd_spawn {
        const char *binary;             /* path of swarmd */
        const char *const *args;        /* NULL-terminated, without argv[0] */
        const char *notify_socket;      /* NOTIFY_SOCKET, or NULL */
        const char *stdout_path;        /* NULL: /dev/null */
        const char *stderr_path;        /* NULL: /dev/null */
        unsigned long watchdog_usec;    /* > 0: set WATCHDOG_USEC/WATCHDOG_PID */
};

/* Forks and execs swarmd with a clean systemd environment (no inherited
 * JOURNAL_STREAM, STATE_DIRECTORY or watchdog).  Returns the pid or -errno. */
pid_t swarmd_spawn(const struct swarmd_spawn *s);

/* Waits up to timeout_ms for pid to exit; returns its wait status, or
 * -ETIMEDOUT (the process is left running), or -errno. */
int wait_exit_timeout(pid_t pid, int timeout_ms);

long long monotonic_usec(void);

/* A TCP port on 127.0.0.1 the kernel just handed out and we let go of
 * (for a daemon that must listen on a known port); -errno on failure. */
int loopback_free_port(void);

/* Removes path and everything below it; 0 or -errno. */
int rm_rf(const char *path);

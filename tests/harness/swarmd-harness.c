/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "swarmd-harness.h"

long long monotonic_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

int notify_listener_open(struct notify_listener *l, const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        l->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (l->fd < 0)
                return -errno;
        strcpy(sa.sun_path, path);
        strcpy(l->path, path);
        unlink(path);
        if (bind(l->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int r = -errno;
                close(l->fd);
                l->fd = -1;
                return r;
        }
        return 0;
}

void notify_listener_close(struct notify_listener *l) {
        if (l->fd >= 0) {
                close(l->fd);
                unlink(l->path);
        }
        l->fd = -1;
}

static bool has_line(const char *msg, const char *want) {
        size_t n = strlen(want);
        bool prefix = n > 0 && want[n - 1] == '=';

        for (const char *p = msg; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
                if (strncmp(p, want, n) == 0 && (prefix || p[n] == '\n' || p[n] == '\0'))
                        return true;
        return false;
}

int notify_listener_wait(struct notify_listener *l, const char *want, int timeout_ms,
                         char *out, size_t out_size) {
        long long deadline = monotonic_usec() + timeout_ms * 1000LL;

        for (;;) {
                struct pollfd p = { .fd = l->fd, .events = POLLIN };
                long long left_ms = (deadline - monotonic_usec() + 999) / 1000;
                char buf[4096];
                ssize_t k;

                if (left_ms <= 0)
                        return -ETIMEDOUT;
                if (poll(&p, 1, (int) left_ms) < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (!(p.revents & POLLIN))
                        continue;
                k = recv(l->fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
                if (k < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                continue;
                        return -errno;
                }
                buf[k] = '\0';
                if (has_line(buf, want)) {
                        if (out && out_size > 0)
                                snprintf(out, out_size, "%s", buf);
                        return 0;
                }
        }
}

static void redirect(const char *path, int target_fd, int flags) {
        int fd = open(path ?: "/dev/null", flags | O_CLOEXEC, 0600);

        if (fd >= 0) {
                dup2(fd, target_fd);
                close(fd);
        }
}

pid_t swarmd_spawn(const struct swarmd_spawn *s) {
        const char *argv[32] = { s->binary };
        size_t n = 1;
        pid_t pid;

        for (const char *const *a = s->args; a && *a; a++) {
                if (n >= sizeof(argv) / sizeof(argv[0]) - 1)
                        return -E2BIG;
                argv[n++] = *a;
        }
        argv[n] = NULL;

        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid > 0)
                return pid;

        redirect(s->stdout_path, STDOUT_FILENO, O_WRONLY | O_CREAT | O_TRUNC);
        redirect(s->stderr_path, STDERR_FILENO, O_WRONLY | O_CREAT | O_TRUNC);
        unsetenv("JOURNAL_STREAM");
        unsetenv("STATE_DIRECTORY");
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
        unsetenv("NOTIFY_SOCKET");
        if (s->notify_socket)
                setenv("NOTIFY_SOCKET", s->notify_socket, 1);
        if (s->watchdog_usec > 0) {
                char buf[32];

                snprintf(buf, sizeof(buf), "%lu", s->watchdog_usec);
                setenv("WATCHDOG_USEC", buf, 1);
                snprintf(buf, sizeof(buf), "%d", (int) getpid());
                setenv("WATCHDOG_PID", buf, 1);
        }
        execv(argv[0], (char **) argv);
        _exit(127);
}

int wait_exit_timeout(pid_t pid, int timeout_ms) {
        long long deadline = monotonic_usec() + timeout_ms * 1000LL;
        int status;

        for (;;) {
                pid_t r = waitpid(pid, &status, WNOHANG);

                if (r < 0)
                        return -errno;
                if (r == pid)
                        return status;
                if (monotonic_usec() >= deadline)
                        return -ETIMEDOUT;
                usleep(2000);
        }
}

int loopback_free_port(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t l = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), r = 0;

        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *) &a, sizeof(a)) < 0 || getsockname(fd, (struct sockaddr *) &a, &l) < 0)
                r = -errno;
        close(fd);
        return r < 0 ? r : ntohs(a.sin_port);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path) < 0 ? -errno : 0;
}

int rm_rf(const char *path) {
        return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

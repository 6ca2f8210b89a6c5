/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fileio.h"
#include "macro.h"
#include "skill-index.h"
#include "skill-loader.h"
#include "swarm-host.h"
#include "time-util.h"

extern char **environ;

int skill_index_name_of(const char *worker, const char *path, uint64_t timeout_usec, char **ret) {
        posix_spawn_file_actions_t actions;
        char buf[SWARM_VALUE_NAME_MAX + 2] = {};
        uint64_t deadline = now(CLOCK_MONOTONIC) + timeout_usec;
        size_t got = 0;
        int pipefd[2], status = 0, r;
        pid_t pid;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return negative_errno();
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, pipefd[1], STDOUT_FILENO);
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        r = -posix_spawn(&pid, worker, &actions, NULL,
                         (char *const[]) { (char *) worker, (char *) "--name", (char *) path, NULL }, environ);
        posix_spawn_file_actions_destroy(&actions);
        close(pipefd[1]);
        if (r < 0) {
                close(pipefd[0]);
                return r;
        }

        /* The name, then EOF, before the deadline. */
        for (;;) {
                struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
                uint64_t t = now(CLOCK_MONOTONIC);
                ssize_t k;

                if (t >= deadline) {
                        r = -ETIMEDOUT;
                        break;
                }
                if (poll(&p, 1, (int) ((deadline - t + 999) / 1000)) < 0) {
                        if (errno == EINTR)
                                continue;
                        r = negative_errno();
                        break;
                }
                if (p.revents == 0)
                        continue;
                k = read(pipefd[0], buf + got, sizeof(buf) - 1 - got);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0 || (got += (size_t) k) >= sizeof(buf) - 1)
                        break;
        }
        close(pipefd[0]);
        if (r < 0)
                (void) kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (r < 0)
                return r;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return -ENOEXEC;
        buf[strcspn(buf, "\n")] = 0;
        if (!swarm_value_name_valid(buf))
                return -ENOEXEC;
        *ret = strdup(buf);
        return *ret ? 0 : -ENOMEM;
}

static int ends_with_so(const struct dirent *d) {
        size_t l = strlen(d->d_name);

        return l > 3 && strcmp(d->d_name + l - 3, ".so") == 0;
}

/* 1 when the plugin at path says it is name, 0 when not (or not a plugin). */
static int is_named(const char *path, const char *name, skill_describe_fn describe, void *userdata) {
        _cleanup_free_ char *got = NULL;
        int r;

        if (access(path, R_OK) < 0)
                return 0;
        r = describe(path, userdata, &got);
        if (r == -ENOMEM)
                return r;
        return r >= 0 && strcmp(got, name) == 0;
}

int skill_index_find(const char *dirs, const char *name, skill_describe_fn describe, void *userdata, char **ret) {
        _cleanup_free_ char *copy = NULL, *direct = NULL;
        char *saveptr = NULL;
        int r;

        /* The common case first: the file is named as the skill. */
        if (skill_find(name, dirs, &direct) >= 0) {
                r = is_named(direct, name, describe, userdata);
                if (r < 0)
                        return r;
                if (r > 0) {
                        *ret = TAKE_PTR(direct);
                        return 0;
                }
        }

        copy = strdup(dirs);
        if (!copy)
                return -ENOMEM;
        for (char *d = strtok_r(copy, ":", &saveptr); d; d = strtok_r(NULL, ":", &saveptr)) {
                struct dirent **list = NULL;
                int n = scandir(d, &list, ends_with_so, alphasort);

                r = 0;
                for (int i = 0; i < n; i++) {
                        char *path = NULL;

                        if (r == 0 && asprintf(&path, "%s/%s", d, list[i]->d_name) < 0)
                                r = -ENOMEM;
                        if (r == 0 && (r = is_named(path, name, describe, userdata)) > 0)
                                *ret = TAKE_PTR(path);
                        free(path);
                        free(list[i]);
                }
                free(list);
                if (r < 0)
                        return r;
                if (r > 0)
                        return 0;
        }
        return -ENOENT;
}

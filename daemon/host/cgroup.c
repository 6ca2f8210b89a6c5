/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "fileio.h"
#include "log.h"
#include "macro.h"
#include "time-util.h"

/* cgroupfs files are small; anything bigger is not one. */
#define CGROUP_FILE_MAX (16u * 1024u * 1024u)

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

#define SKILL_NAME_MAX 64

/* How long killing without cgroup.kill keeps sweeping the subtree. */
#define KILL_WAIT_USEC 1000000

enum controller {
        CONTROLLER_MEMORY,
        CONTROLLER_CPU,
        CONTROLLER_PIDS,
        _CONTROLLER_MAX,
};

static const char *const controller_names[_CONTROLLER_MAX] = {
        [CONTROLLER_MEMORY] = "memory",
        [CONTROLLER_CPU] = "cpu",
        [CONTROLLER_PIDS] = "pids",
};

struct skill_cgroup {
        char *name;
        char *path;             /* NULL in fallback mode */
};

struct cgroup {
        char *base;             /* NULL in fallback mode */
        char *skills_path;      /* <base>/skills, NULL in fallback mode */
        bool delegated;
        bool have_freeze;       /* cgroup.freeze exists (kernel >= 5.2) */
        bool freeze_requested;
        unsigned warned_controllers;    /* bit per enum controller */

        struct skill_cgroup *skills;
        size_t n_skills;

        /* Fallback mode: the workers that cgroup_attach() was given. */
        pid_t *pids;
        size_t n_pids;
};

static void skill_cgroup_done(struct skill_cgroup *s) {
        free(s->name);
        free(s->path);
}

static char *path_join(const char *a, const char *b) {
        char *p;

        if (asprintf(&p, "%s/%s", a, b) < 0)
                return NULL;
        return p;
}

/* Writes s in one write(), as cgroupfs wants.  No logging. */
static int write_string_file(const char *path, const char *s) {
        _cleanup_close_ int fd = -1;
        size_t n = strlen(s);
        ssize_t k;

        fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        k = write(fd, s, n);
        if (k < 0)
                return negative_errno();
        if ((size_t) k != n)
                return -EIO;
        return 0;
}

static int read_string_file(const char *path, char **ret) {
        _cleanup_close_ int fd = -1;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        return read_fd_string(fd, CGROUP_FILE_MAX, ret);
}

static int read_string_at(const char *dir, const char *file, char **ret) {
        _cleanup_free_ char *p = path_join(dir, file);

        if (!p)
                return -ENOMEM;
        return read_string_file(p, ret);
}

static bool is_cgroup2(const char *path, int *ret_error) {
        struct statfs sfs;

        if (statfs(path, &sfs) < 0) {
                if (ret_error)
                        *ret_error = negative_errno();
                return false;
        }
        if (ret_error)
                *ret_error = 0;
        return (uint64_t) sfs.f_type == (uint64_t) CGROUP2_SUPER_MAGIC;
}

/* Whether a whitespace-separated word list contains word. */
static bool words_contain(const char *list, const char *word) {
        size_t n = strlen(word);

        for (const char *p = list; *p; ) {
                size_t k;

                p += strspn(p, " \t\n");
                k = strcspn(p, " \t\n");
                if (k == n && strncmp(p, word, n) == 0)
                        return true;
                p += k;
        }
        return false;
}

/* The controllers available in a cgroup, as a bit per enum controller. */
static unsigned controllers_available(const char *dir) {
        _cleanup_free_ char *s = NULL;
        unsigned mask = 0;

        if (read_string_at(dir, "cgroup.controllers", &s) < 0)
                return 0;
        for (enum controller i = 0; i < _CONTROLLER_MAX; i++)
                if (words_contain(s, controller_names[i]))
                        mask |= 1u << i;
        return mask;
}

/* Looks up key in a flat keyed file such as cgroup.events ("frozen 1"). */
static int keyed_value(const char *text, const char *key, long *ret) {
        size_t n = strlen(key);

        for (const char *p = text; p && *p; ) {
                if (strncmp(p, key, n) == 0 && p[n] == ' ') {
                        char *end;
                        long v;

                        errno = 0;
                        v = strtol(p + n + 1, &end, 10);
                        if (errno != 0 || end == p + n + 1)
                                return -EBADMSG;
                        *ret = v;
                        return 0;
                }
                p = strchr(p, '\n');
                if (p)
                        p++;
        }
        return -ENOENT;
}

static int mkdir_existing_ok(const char *path) {
        struct stat st;

        if (mkdir(path, 0755) >= 0)
                return 0;
        if (errno != EEXIST)
                return negative_errno();
        if (stat(path, &st) < 0)
                return negative_errno();
        return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int cgroup_discover(char **ret_path) {
        _cleanup_free_ char *text = NULL;
        const char *mount, *own = NULL;
        char *path, *line;
        int r;

        if (is_cgroup2("/sys/fs/cgroup", NULL))
                mount = "/sys/fs/cgroup";
        else if (is_cgroup2("/sys/fs/cgroup/unified", NULL))
                mount = "/sys/fs/cgroup/unified";
        else
                return -ENOMEDIUM;

        r = read_string_file("/proc/self/cgroup", &text);
        if (r < 0)
                return r;
        for (line = text; line && *line; ) {
                char *next = strchr(line, '\n');

                if (next)
                        *next++ = '\0';
                if (strncmp(line, "0::", 3) == 0) {
                        own = line + 3;
                        break;
                }
                line = next;
        }
        if (!own || own[0] != '/')
                return -ENOENT;

        /* "0::/" is the root of the hierarchy itself. */
        if (asprintf(&path, "%s%s", mount, strcmp(own, "/") == 0 ? "" : own) < 0)
                return -ENOMEM;
        *ret_path = path;
        return 0;
}

bool cgroup_skill_name_is_valid(const char *skill) {
        size_t n;

        if (!skill)
                return false;
        n = strlen(skill);
        if (n == 0 || n > SKILL_NAME_MAX)
                return false;
        /* Hidden names and the kernel's own "cgroup.*" files are off limits. */
        if (skill[0] == '.' || strncmp(skill, "cgroup.", 7) == 0)
                return false;
        for (size_t i = 0; i < n; i++) {
                char ch = skill[i];

                if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                      ch == '_' || ch == '.' || ch == '-'))
                        return false;
        }
        return true;
}

static struct skill_cgroup *skill_find(const struct cgroup *c, const char *skill) {
        for (size_t i = 0; i < c->n_skills; i++)
                if (strcmp(c->skills[i].name, skill) == 0)
                        return &c->skills[i];
        return NULL;
}

/* Writes one "+controller" at a time, so that one the parent lacks does not
 * keep the others out. */
static void enable_controllers(const char *dir) {
        _cleanup_free_ char *control = path_join(dir, "cgroup.subtree_control");
        unsigned available = controllers_available(dir);

        if (!control)
                return;
        for (enum controller i = 0; i < _CONTROLLER_MAX; i++) {
                char word[16];
                int r;

                if (!(available & (1u << i)))
                        continue;
                snprintf(word, sizeof(word), "+%s", controller_names[i]);
                r = write_string_file(control, word);
                if (r < 0)
                        log_debug_errno(r, "Failed to enable the %s controller in %s: %m%s",
                                        controller_names[i], control,
                                        r == -EBUSY ? " (processes in it block delegation)" : "");
        }
}

/* Moves every process of base into the leaf base/daemon, repeating while
 * processes keep appearing (a fork racing with the move). */
static int move_self_to_leaf(const char *base) {
        _cleanup_free_ char *leaf = path_join(base, "daemon"), *leaf_procs = NULL;
        int r;

        if (!leaf)
                return -ENOMEM;
        r = mkdir_existing_ok(leaf);
        if (r < 0)
                return log_warning_errno(r, "Failed to create %s: %m", leaf);
        leaf_procs = path_join(leaf, "cgroup.procs");
        if (!leaf_procs)
                return -ENOMEM;

        for (int pass = 0; pass < 8; pass++) {
                _cleanup_free_ char *procs = NULL;
                bool moved = false;
                char *line, *next;

                r = read_string_at(base, "cgroup.procs", &procs);
                if (r < 0)
                        return log_warning_errno(r, "Failed to read %s/cgroup.procs: %m", base);
                for (line = procs; line && *line; line = next) {
                        next = strchr(line, '\n');
                        if (next)
                                *next++ = '\0';
                        if (!*line)
                                continue;
                        r = write_string_file(leaf_procs, line);
                        if (r == -ESRCH)
                                continue;
                        if (r < 0)
                                return log_warning_errno(r, "Failed to move process %s into %s: %m",
                                                         line, leaf_procs);
                        moved = true;
                }
                if (!moved)
                        return 0;
        }
        return log_warning_errno(-EBUSY, "Processes keep appearing in %s, giving up moving them to %s",
                                 base, leaf);
}

static void enter_fallback(struct cgroup *c, const char *where, int error, const char *why) {
        if (error != 0)
                log_full_errno(LOG_NOTICE, error,
                               "cgroups not usable at %s (%m); resource limits for skills are not "
                               "enforced, and jobs are paused and killed with signals instead.",
                               where ?: "/sys/fs/cgroup");
        else
                log_notice("cgroups not usable at %s (%s); resource limits for skills are not "
                           "enforced, and jobs are paused and killed with signals instead.",
                           where ?: "/sys/fs/cgroup", why);

        c->delegated = false;
        free(c->base);
        c->base = NULL;
        free(c->skills_path);
        c->skills_path = NULL;
}

int cgroup_new(const char *base, unsigned flags, struct cgroup **ret) {
        _cleanup_(cgroup_freep) struct cgroup *c = NULL;
        _cleanup_free_ char *freeze = NULL;
        int r;

        if (!ret || (flags & ~(unsigned) (CGROUP_MOVE_SELF | CGROUP_SIGNALS_ONLY)))
                return -EINVAL;
        if ((flags & CGROUP_MOVE_SELF) && base)
                return log_error_errno(-EINVAL, "Moving ourselves into a leaf cgroup needs a discovered base, not %s", base);

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;

        if (flags & CGROUP_SIGNALS_ONLY) {
                c->delegated = false;
                goto done;
        }

        if (base) {
                c->base = strdup(base);
                if (!c->base)
                        return -ENOMEM;
        } else {
                r = cgroup_discover(&c->base);
                if (r == -ENOMEM)
                        return r;
                if (r == -ENOMEDIUM) {
                        enter_fallback(c, NULL, 0, "no cgroup2 hierarchy is mounted");
                        goto done;
                }
                if (r < 0) {
                        enter_fallback(c, "/proc/self/cgroup", r, NULL);
                        goto done;
                }
        }

        if (!is_cgroup2(c->base, &r)) {
                enter_fallback(c, c->base, r, "not a cgroup2 file system");
                goto done;
        }

        if (flags & CGROUP_MOVE_SELF)
                /* On failure controllers stay unavailable below base, which
                 * add_skill reports per controller; jobs still get frozen
                 * and killed as a group. */
                (void) move_self_to_leaf(c->base);

        c->skills_path = path_join(c->base, "skills");
        if (!c->skills_path)
                return -ENOMEM;
        r = mkdir_existing_ok(c->skills_path);
        if (r < 0) {
                enter_fallback(c, c->skills_path, r, NULL);
                goto done;
        }

        enable_controllers(c->base);
        enable_controllers(c->skills_path);

        freeze = path_join(c->skills_path, "cgroup.freeze");
        if (!freeze)
                return -ENOMEM;
        c->have_freeze = access(freeze, F_OK) >= 0;
        if (!c->have_freeze)
                log_info("%s is missing (kernel older than 5.2), pausing jobs with SIGSTOP instead.", freeze);

        c->delegated = true;
        log_debug("Skill workers go below %s", c->skills_path);
done:
        *ret = TAKE_PTR(c);
        return 0;
}

struct cgroup *cgroup_free(struct cgroup *c) {
        if (!c)
                return NULL;

        if (c->freeze_requested)
                (void) cgroup_thaw(c);

        for (size_t i = 0; i < c->n_skills; i++) {
                if (c->skills[i].path && rmdir(c->skills[i].path) < 0 && errno != ENOENT)
                        log_debug_errno(errno, "Leaving %s in place: %m", c->skills[i].path);
                skill_cgroup_done(&c->skills[i]);
        }
        if (c->skills_path && rmdir(c->skills_path) < 0 && errno != ENOENT)
                log_debug_errno(errno, "Leaving %s in place: %m", c->skills_path);

        free(c->skills);
        free(c->pids);
        free(c->skills_path);
        free(c->base);
        free(c);
        return NULL;
}

bool cgroup_delegated(const struct cgroup *c) {
        return c && c->delegated;
}

const char *cgroup_path(const struct cgroup *c, const char *skill) {
        const struct skill_cgroup *s;

        if (!c || !c->delegated)
                return NULL;
        if (!skill)
                return c->skills_path;
        s = skill_find(c, skill);
        return s ? s->path : NULL;
}

static int write_limit(struct cgroup *c, const struct skill_cgroup *s, unsigned available,
                       enum controller ctrl, const char *file, const char *value, bool limited) {
        const struct log_fields fields = { .skill = s->name };
        _cleanup_free_ char *p = NULL;
        int r;

        if (!(available & (1u << ctrl))) {
                if (limited && !(c->warned_controllers & (1u << ctrl))) {
                        c->warned_controllers |= 1u << ctrl;
                        log_fields(LOG_WARNING, &fields,
                                   "The %s controller is not available in %s (cgroup v1 still owns it, "
                                   "or the parent cgroup does not delegate it): %s limits of skills are not enforced.",
                                   controller_names[ctrl], c->skills_path, file);
                }
                return 0;
        }

        p = path_join(s->path, file);
        if (!p)
                return -ENOMEM;
        r = write_string_file(p, value);
        if (r < 0)
                return log_full_errno_fields(LOG_ERR, r, &fields, "Failed to write '%s' to %s: %m", value, p);
        return 0;
}

static int skill_apply_limits(struct cgroup *c, const struct skill_cgroup *s,
                              const struct cgroup_limits *limits) {
        const struct cgroup_limits none = {};
        unsigned available = controllers_available(s->path);
        char value[64];
        int r;

        if (!limits)
                limits = &none;

        if (limits->pids_max > 0)
                snprintf(value, sizeof(value), "%" PRIu64, limits->pids_max);
        else
                strcpy(value, "max");
        r = write_limit(c, s, available, CONTROLLER_PIDS, "pids.max", value, limits->pids_max > 0);
        if (r < 0)
                return r;

        if (limits->memory_max > 0)
                snprintf(value, sizeof(value), "%" PRIu64, limits->memory_max);
        else
                strcpy(value, "max");
        r = write_limit(c, s, available, CONTROLLER_MEMORY, "memory.max", value, limits->memory_max > 0);
        if (r < 0)
                return r;

        if (limits->cpu_max_percent > UINT64_MAX / CGROUP_CPU_PERIOD_USEC)
                return log_error_errno(-ERANGE, "CPU limit of %" PRIu64 "%% for skill %s is out of range",
                                       limits->cpu_max_percent, s->name);
        if (limits->cpu_max_percent > 0)
                snprintf(value, sizeof(value), "%" PRIu64 " %u",
                         limits->cpu_max_percent * CGROUP_CPU_PERIOD_USEC / 100,
                         (unsigned) CGROUP_CPU_PERIOD_USEC);
        else
                snprintf(value, sizeof(value), "max %u", (unsigned) CGROUP_CPU_PERIOD_USEC);
        return write_limit(c, s, available, CONTROLLER_CPU, "cpu.max", value, limits->cpu_max_percent > 0);
}

int cgroup_add_skill(struct cgroup *c, const char *skill, const struct cgroup_limits *limits) {
        _cleanup_free_ char *name = NULL, *path = NULL;
        struct skill_cgroup *s, *array;
        int r;

        if (!c)
                return -EINVAL;
        if (!cgroup_skill_name_is_valid(skill))
                return log_error_errno(-EINVAL, "Invalid skill name '%s': use 1 to %d characters of a-z, 0-9, '_', '.' and '-'.",
                                       skill ?: "(null)", SKILL_NAME_MAX);

        s = skill_find(c, skill);
        if (!s) {
                name = strdup(skill);
                if (!name)
                        return -ENOMEM;
                if (c->delegated) {
                        path = path_join(c->skills_path, skill);
                        if (!path)
                                return -ENOMEM;
                        r = mkdir_existing_ok(path);
                        if (r < 0)
                                return log_error_errno(r, "Failed to create %s: %m", path);
                }
                array = reallocarray(c->skills, c->n_skills + 1, sizeof(*array));
                if (!array)
                        return -ENOMEM;
                c->skills = array;
                s = &c->skills[c->n_skills++];
                *s = (struct skill_cgroup) { .name = TAKE_PTR(name), .path = TAKE_PTR(path) };
        }

        if (!c->delegated)
                return 0;
        return skill_apply_limits(c, s, limits);
}

static struct skill_cgroup *skill_find_or_log(struct cgroup *c, const char *skill) {
        struct skill_cgroup *s = skill_find(c, skill);

        if (!s)
                log_error("Skill %s has no cgroup, add it before starting its workers.", skill);
        return s;
}

static ssize_t pid_index(const struct cgroup *c, pid_t pid) {
        for (size_t i = 0; i < c->n_pids; i++)
                if (c->pids[i] == pid)
                        return (ssize_t) i;
        return -1;
}

/* Fallback mode: a worker leading its own process group is signalled with
 * its group, which takes its children along; never our own group. */
static int signal_worker(pid_t pid, int sig) {
        pid_t pgid = getpgid(pid);

        if (pgid == pid && pgid != getpgrp()) {
                if (kill(-pgid, sig) >= 0)
                        return 0;
        } else if (kill(pid, sig) >= 0)
                return 0;
        return errno == ESRCH ? 0 : negative_errno();
}

int cgroup_attach(struct cgroup *c, const char *skill, pid_t pid) {
        _cleanup_free_ char *procs = NULL;
        struct skill_cgroup *s;
        char buf[32];
        pid_t *array;
        int r;

        if (!c || !skill)
                return -EINVAL;
        if (pid <= 0 || pid == getpid())
                return log_error_errno(-EINVAL, "Refusing to put process %d into the cgroup of skill %s.",
                                       (int) pid, skill);
        s = skill_find_or_log(c, skill);
        if (!s)
                return -ENOENT;

        if (c->delegated) {
                procs = path_join(s->path, "cgroup.procs");
                if (!procs)
                        return -ENOMEM;
                snprintf(buf, sizeof(buf), "%d", (int) pid);
                r = write_string_file(procs, buf);
                if (r == -ESRCH)
                        return log_debug_errno(r, "Process %d exited before it could be moved into %s", (int) pid, procs);
                if (r < 0)
                        return log_error_errno(r, "Failed to move process %d into %s: %m", (int) pid, procs);
                return 0;
        }

        if (pid_index(c, pid) >= 0)
                return 0;
        array = reallocarray(c->pids, c->n_pids + 1, sizeof(*array));
        if (!array)
                return -ENOMEM;
        c->pids = array;
        c->pids[c->n_pids++] = pid;
        /* As in a frozen cgroup, a worker joining paused jobs is paused. */
        if (c->freeze_requested)
                (void) signal_worker(pid, SIGSTOP);
        return 0;
}

int cgroup_procs_fd(struct cgroup *c, const char *skill) {
        _cleanup_free_ char *procs = NULL;
        struct skill_cgroup *s;
        int fd;

        if (!c || !skill)
                return -EINVAL;
        if (!c->delegated)
                return -EOPNOTSUPP;
        s = skill_find_or_log(c, skill);
        if (!s)
                return -ENOENT;
        procs = path_join(s->path, "cgroup.procs");
        if (!procs)
                return -ENOMEM;
        fd = open(procs, O_WRONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return log_error_errno(negative_errno(), "Failed to open %s: %m", procs);
        return fd;
}

void cgroup_forget(struct cgroup *c, pid_t pid) {
        ssize_t i;

        if (!c)
                return;
        i = pid_index(c, pid);
        if (i < 0)
                return;
        c->pids[i] = c->pids[--c->n_pids];
}

/* Calls fn for every process in dir and the cgroups below it.  Returns the
 * number of processes visited, or the first negative value of fn. */
static int cgroup_foreach_pid(const char *dir, int (*fn)(pid_t pid, void *userdata), void *userdata,
                              unsigned depth) {
        _cleanup_free_ char *procs = NULL;
        DIR *d;
        struct dirent *de;
        char *line, *next;
        int r, n = 0;

        if (depth > 64)
                return -ELOOP;

        r = read_string_at(dir, "cgroup.procs", &procs);
        if (r == -ENOENT)       /* removed under us */
                return 0;
        if (r < 0)
                return r;
        for (line = procs; line && *line; line = next) {
                long pid;
                char *end;

                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                errno = 0;
                pid = strtol(line, &end, 10);
                if (errno != 0 || end == line || *end || pid <= 0)
                        continue;
                r = fn((pid_t) pid, userdata);
                if (r < 0)
                        return r;
                n++;
        }

        d = opendir(dir);
        if (!d)
                return errno == ENOENT ? n : negative_errno();
        while ((de = readdir(d))) {
                _cleanup_free_ char *sub = NULL;

                if (de->d_type != DT_DIR || de->d_name[0] == '.')
                        continue;
                sub = path_join(dir, de->d_name);
                if (!sub) {
                        closedir(d);
                        return -ENOMEM;
                }
                r = cgroup_foreach_pid(sub, fn, userdata, depth + 1);
                if (r < 0) {
                        closedir(d);
                        return r;
                }
                n += r;
        }
        closedir(d);
        return n;
}

static int pid_is_self(pid_t pid, void *userdata) {
        return pid == getpid() ? -EDEADLK : 0;
}

static int pid_signal(pid_t pid, void *userdata) {
        int sig = *(const int *) userdata;

        if (pid == getpid())
                return -EDEADLK;
        if (kill(pid, sig) < 0 && errno != ESRCH)
                return negative_errno();
        return 0;
}

/* Refuses to act on a subtree that holds the daemon itself. */
static int check_not_inside(const struct cgroup *c, const char *what) {
        int r = cgroup_foreach_pid(c->skills_path, pid_is_self, NULL, 0);

        if (r == -EDEADLK)
                return log_error_errno(r, "Refusing to %s %s: this process (%d) lives inside it.",
                                       what, c->skills_path, (int) getpid());
        if (r < 0)
                return log_error_errno(r, "Failed to list the processes below %s: %m", c->skills_path);
        return 0;
}

static int signal_subtree(const struct cgroup *c, int sig) {
        int r = cgroup_foreach_pid(c->skills_path, pid_signal, &sig, 0);

        if (r < 0)
                return log_error_errno(r, "Failed to send signal %d to the processes below %s: %m",
                                       sig, c->skills_path);
        return r;
}

static int skills_write(const struct cgroup *c, const char *file, const char *value) {
        _cleanup_free_ char *p = path_join(c->skills_path, file);
        int r;

        if (!p)
                return -ENOMEM;
        r = write_string_file(p, value);
        if (r < 0 && r != -ENOENT)
                return log_error_errno(r, "Failed to write '%s' to %s: %m", value, p);
        return r;
}

/* Fallback mode: state of /proc/PID/stat, after the command name. */
static char process_state(pid_t pid) {
        _cleanup_free_ char *stat = NULL;
        char path[64];
        const char *p;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        if (read_string_file(path, &stat) < 0)
                return 'X';
        p = strrchr(stat, ')');
        if (!p || p[1] != ' ' || !p[2])
                return '?';
        return p[2];
}

static bool tracked_all_stopped(const struct cgroup *c) {
        for (size_t i = 0; i < c->n_pids; i++)
                if (!strchr("TtZX", process_state(c->pids[i])))
                        return false;
        return true;
}

static int frozen_wait(const struct cgroup *c) {
        _cleanup_free_ char *events = path_join(c->skills_path, "cgroup.events");
        _cleanup_close_ int fd = -1;
        uint64_t deadline = now(CLOCK_MONOTONIC) + CGROUP_FREEZE_WAIT_USEC;

        if (!events)
                return -ENOMEM;
        fd = open(events, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return log_error_errno(negative_errno(), "Failed to open %s: %m", events);

        for (;;) {
                _cleanup_free_ char *text = NULL;
                struct pollfd pfd = { .fd = fd, .events = POLLPRI };
                uint64_t t;
                long frozen = 0;
                int r;

                if (lseek(fd, 0, SEEK_SET) < 0)
                        return log_error_errno(negative_errno(), "Failed to rewind %s: %m", events);
                r = read_fd_string(fd, CGROUP_FILE_MAX, &text);
                if (r < 0)
                        return log_error_errno(r, "Failed to read %s: %m", events);
                r = keyed_value(text, "frozen", &frozen);
                if (r < 0)
                        return log_error_errno(r, "%s has no valid 'frozen' line", events);
                if (frozen == 1)
                        return 1;

                t = now(CLOCK_MONOTONIC);
                if (t >= deadline) {
                        log_debug("%s is still freezing after %u ms", c->skills_path,
                                  (unsigned) (CGROUP_FREEZE_WAIT_USEC / 1000));
                        return 0;
                }
                /* cgroup.events notifies with POLLPRI; wake up now and then
                 * anyway in case a notification is missed. */
                (void) poll(&pfd, 1, (int) ((deadline - t) / 1000 < 50 ? (deadline - t) / 1000 + 1 : 50));
        }
}

int cgroup_freeze(struct cgroup *c) {
        int r;

        if (!c)
                return -EINVAL;

        if (!c->delegated) {
                uint64_t deadline = now(CLOCK_MONOTONIC) + CGROUP_FREEZE_WAIT_USEC;

                c->freeze_requested = true;
                for (size_t i = 0; i < c->n_pids; i++) {
                        r = signal_worker(c->pids[i], SIGSTOP);
                        if (r < 0)
                                log_warning_errno(r, "Failed to stop process %d: %m", (int) c->pids[i]);
                }
                /* SIGSTOP takes effect asynchronously too: poll, quickly at
                 * first (it usually takes tens of µs), backing off to 5 ms. */
                for (useconds_t wait = 20; !tracked_all_stopped(c); wait = wait < 5000 ? wait * 2 : 5000) {
                        if (now(CLOCK_MONOTONIC) >= deadline)
                                return 0;
                        (void) usleep(wait);
                }
                return 1;
        }

        r = check_not_inside(c, "freeze");
        if (r < 0)
                return r;

        if (!c->have_freeze) {
                c->freeze_requested = true;
                r = signal_subtree(c, SIGSTOP);
                return r < 0 ? r : 1;
        }

        r = skills_write(c, "cgroup.freeze", "1");
        if (r < 0)
                return r == -ENOENT ? log_error_errno(r, "Failed to freeze %s: %m", c->skills_path) : r;
        c->freeze_requested = true;
        return frozen_wait(c);
}

int cgroup_thaw(struct cgroup *c) {
        int r = 0;

        if (!c)
                return -EINVAL;

        if (!c->delegated) {
                for (size_t i = 0; i < c->n_pids; i++) {
                        int k = signal_worker(c->pids[i], SIGCONT);

                        if (k < 0 && r >= 0)
                                r = log_warning_errno(k, "Failed to continue process %d: %m", (int) c->pids[i]);
                }
        } else if (!c->have_freeze) {
                r = signal_subtree(c, SIGCONT);
        } else {
                r = skills_write(c, "cgroup.freeze", "0");
                if (r == -ENOENT)
                        r = log_error_errno(r, "Failed to thaw %s: %m", c->skills_path);
        }
        if (r < 0)
                return r;
        c->freeze_requested = false;
        return 0;
}

int cgroup_kill(struct cgroup *c) {
        int r;

        if (!c)
                return -EINVAL;

        if (!c->delegated) {
                r = 0;
                for (size_t i = 0; i < c->n_pids; ) {
                        int k = signal_worker(c->pids[i], SIGKILL);

                        if (k < 0) {
                                if (r >= 0)
                                        r = log_warning_errno(k, "Failed to kill process %d: %m", (int) c->pids[i]);
                                i++;
                                continue;
                        }
                        /* Gone for good: the caller reaps, and forgetting now
                         * means a recycled PID is never signalled. */
                        c->pids[i] = c->pids[--c->n_pids];
                }
                if (c->freeze_requested)
                        (void) cgroup_thaw(c);
                return r;
        }

        r = check_not_inside(c, "kill");
        if (r < 0)
                return r;

        r = skills_write(c, "cgroup.kill", "1");
        if (r == -ENOENT) {
                /* Kernel before 5.14: repeat until no process is left,
                 * since one may fork between our listing and our signal,
                 * and killed ones stay listed until they have exited. */
                uint64_t deadline = now(CLOCK_MONOTONIC) + KILL_WAIT_USEC;

                for (;;) {
                        r = signal_subtree(c, SIGKILL);
                        if (r <= 0)
                                break;
                        if (now(CLOCK_MONOTONIC) >= deadline) {
                                log_warning("%d processes are still below %s after SIGKILL.", r, c->skills_path);
                                r = 0;
                                break;
                        }
                        (void) usleep(10000);
                }
        }
        if (r < 0)
                return r;

        /* Jobs started after this must run. */
        if (c->freeze_requested)
                return cgroup_thaw(c);
        return 0;
}

bool cgroup_frozen(const struct cgroup *c) {
        _cleanup_free_ char *text = NULL;
        long frozen = 0;

        if (!c)
                return false;
        if (!c->delegated || !c->have_freeze)
                return c->freeze_requested;
        if (read_string_at(c->skills_path, "cgroup.events", &text) < 0)
                return false;
        return keyed_value(text, "frozen", &frozen) >= 0 && frozen == 1;
}

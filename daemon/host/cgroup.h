/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Skill worker processes in cgroup v2.
 *
 * Layout below the base directory (the daemon's delegated cgroup):
 *
 *   <base>/daemon/          the daemon itself, only with CGROUP_MOVE_SELF
 *   <base>/skills/          freeze and kill act here, on every job at once
 *   <base>/skills/<skill>/  one leaf per skill: memory.max, cpu.max, pids.max
 *
 * The daemon never lives below <base>/skills, so freezing or killing the
 * jobs can never stop the daemon itself; cgroup_freeze() and
 * cgroup_kill() check that before they act.
 *
 * Where no cgroup2 hierarchy exists or the base is not writable (an
 * unprivileged run), cgroup_new() still succeeds in fallback mode,
 * says so once in the log, and the same calls act on the worker PIDs given
 * to cgroup_attach() with SIGSTOP, SIGCONT and SIGKILL.  A worker that
 * leads its own process group (setpgid(0, 0) before exec) is signalled as a
 * group, so that its children pause and die with it. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct cgroup_limits {
        uint64_t memory_max;            /* bytes, 0 = unlimited ("max") */
        uint64_t cpu_max_percent;       /* 100 = one full CPU, 0 = unlimited */
        uint64_t pids_max;              /* 0 = unlimited */
};

enum {
        /* Only with base == NULL: the discovered base is our own cgroup, as
         * systemd hands it over with Delegate=yes.  cgroup v2 allows no
         * processes in a cgroup that has controllers enabled for its
         * children, so every process in it (the daemon) is moved into the
         * leaf <base>/daemon first.  Never use this from a test. */
        CGROUP_MOVE_SELF = 1 << 0,
        /* No cgroups at all, by choice (skills.cgroups: off): the signal
         * fallback from the start, without looking for a hierarchy. */
        CGROUP_SIGNALS_ONLY = 1 << 1,
};

/* Period written to cpu.max, in microseconds. */
#define CGROUP_CPU_PERIOD_USEC 100000

/* How long cgroup_freeze() waits for the kernel to report "frozen 1". */
#define CGROUP_FREEZE_WAIT_USEC 1000000

struct cgroup;

/* Finds the directory of our own cgroup in the cgroup2 hierarchy:
 * /sys/fs/cgroup when that is cgroup2, else /sys/fs/cgroup/unified (hybrid
 * mode), joined with the "0::" line of /proc/self/cgroup.  Creates nothing.
 * Returns 0 and a string to free(); -ENOMEDIUM when there is no cgroup2
 * hierarchy, -ENOENT when /proc/self/cgroup has no "0::" line. */
int cgroup_discover(char **ret_path);

/* Sets up <base>/skills.  base == NULL discovers our own cgroup with
 * cgroup_discover().  An explicit base must exist already and is left
 * in place by cgroup_free(); it must not contain the caller, or the
 * caller must be fine with the no-internal-processes rule making controllers
 * unavailable.  Enables "+memory +cpu +pids" (those available) in the
 * subtree_control of <base> and <base>/skills.
 *
 * Falls back to signals (returns 0, cgroup_delegated() false) when the
 * base is not on cgroup2 or cannot be written.  Errors: -EINVAL for unknown
 * flags or MOVE_SELF with an explicit base, -ENOMEM.  *ret is to be freed
 * with cgroup_free(). */
int cgroup_new(const char *base, unsigned flags, struct cgroup **ret);

/* Thaws the jobs if they were frozen, removes the skill cgroups and
 * <base>/skills where they are empty (busy ones stay), and frees.  Kills
 * nothing: call cgroup_kill() first for that.  NULL is fine; returns
 * NULL. */
struct cgroup *cgroup_free(struct cgroup *c);
static inline void cgroup_freep(struct cgroup **c) {
        cgroup_free(*c);
}

/* Whether the real cgroup path is used (false: fallback to signals). */
bool cgroup_delegated(const struct cgroup *c);

/* The cgroup directory of a skill (or of the skills subtree for
 * skill == NULL), for log messages; NULL in fallback mode or for a skill
 * that was not added.  Valid until cgroup_free(). */
const char *cgroup_path(const struct cgroup *c, const char *skill);

/* Skill names are 1 to 64 characters of [a-z0-9_.-], not starting with a
 * dot and not "cgroup.*". */
bool cgroup_skill_name_is_valid(const char *skill);

/* Creates <base>/skills/<skill> and writes the limits.  Adding a skill again
 * rewrites its limits.  A limit whose controller is not available (cgroup v1
 * still owns it in hybrid mode, or the parent did not delegate it) is logged
 * once per controller as not enforced, and the call still succeeds.  limits
 * may be NULL for no limits.  -EINVAL for an invalid name. */
int cgroup_add_skill(struct cgroup *c, const char *skill, const struct cgroup_limits *limits);

/* Moves pid (with all its threads) into the skill's cgroup; in fallback mode
 * records it.  -ENOENT for a skill that was not added, -EINVAL for pid <= 0
 * or our own pid. */
int cgroup_attach(struct cgroup *c, const char *skill, pid_t pid);

/* Opens the skill's cgroup.procs for writing (O_CLOEXEC), so that a forked
 * child can place itself with write(fd, "0", 1) before exec, which is
 * async-signal-safe and leaves no window in which the worker could fork
 * outside its cgroup.  The parent should still call cgroup_attach()
 * (harmless in cgroup mode, needed for the bookkeeping of fallback mode).
 * Returns the fd, to be closed by the caller; -EOPNOTSUPP in fallback mode,
 * -ENOENT for a skill that was not added. */
int cgroup_procs_fd(struct cgroup *c, const char *skill);

/* Drops an exited worker from the fallback bookkeeping; no-op otherwise. */
void cgroup_forget(struct cgroup *c, pid_t pid);

/* Pauses every job of every skill (cgroup.freeze of <base>/skills, or
 * SIGSTOP).  Freezing is asynchronous in the kernel: this waits up to
 * CGROUP_FREEZE_WAIT_USEC for it and returns 1 once every job is
 * frozen, 0 when the kernel is still freezing (see cgroup_frozen()),
 * negative errno on failure.  -EDEADLK if we ourselves live below the
 * skills cgroup, which would freeze the daemon. */
int cgroup_freeze(struct cgroup *c);

/* Resumes every job (cgroup.freeze = 0, or SIGCONT). */
int cgroup_thaw(struct cgroup *c);

/* Kills every job with SIGKILL (cgroup.kill, or on kernels before 5.14 each
 * process listed in the cgroup.procs of the subtree, or the tracked PIDs in
 * fallback mode), then thaws so that jobs started afterwards run.  Does not
 * reap: the caller's SIGCHLD handling does that. */
int cgroup_kill(struct cgroup *c);

/* Whether the jobs are frozen: "frozen 1" in <base>/skills/cgroup.events, or
 * in fallback mode whether cgroup_freeze() was the last call. */
bool cgroup_frozen(const struct cgroup *c);

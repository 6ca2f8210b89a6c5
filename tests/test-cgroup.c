/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Two suites.  cgroup_fallback always runs: its base is a directory in /tmp,
 * which is no cgroup2 file system, so the module falls back to signals.
 * cgroup_real runs as root where the cgroup2 hierarchy is writable: its base
 * is a fresh child of the test process's own cgroup, and the test process
 * itself never moves, so freezing and killing only ever reach its workers.
 *
 * Every wait is bounded, every worker dies with the test process
 * (PR_SET_PDEATHSIG), and teardown kills, reaps and removes what is left
 * even when an assertion failed. */

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "macro.h"

#define WAIT_MS 3000

/* Shared with the workers. */
struct shared {
        atomic_ulong counter;           /* the worker's progress */
        atomic_int ready;               /* set once the worker is set up */
        atomic_int grandchild;          /* pid of the worker's child, if any */
};

enum worker_flags {
        WORKER_OWN_GROUP = 1 << 0,      /* setpgid(0, 0) */
        WORKER_GRANDCHILD = 1 << 1,     /* fork a child that also counts */
};

static struct shared *shared;
static struct cgroup *jc;
static pid_t workers[8];
static size_t n_workers;

#define TMPDIR_TEMPLATE "/tmp/test-cgroup-XXXXXX"
static char tmpdir[sizeof(TMPDIR_TEMPLATE)];

/* cgroup_real: the scratch base, or why the suite is skipped. */
static char *scratch;
static char skip_reason[512];

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000 };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static _noreturn_ void worker_loop(void) {
        /* Bounded even if the death signal were lost. */
        uint64_t end = now_ms() + 60000;

        while (now_ms() < end) {
                atomic_fetch_add(&shared->counter, 1);
                sleep_ms(1);
        }
        _exit(0);
}

/* Forks a worker that counts in shared->counter.  With procs_fd >= 0 it
 * places itself in that cgroup first, as the daemon's workers will. */
static pid_t spawn_worker(int procs_fd, unsigned flags) {
        pid_t parent = getpid(), pid;

        atomic_store(&shared->ready, 0);
        atomic_store(&shared->grandchild, 0);
        pid = fork();
        cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
        if (pid == 0) {
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                        _exit(1);
                if (procs_fd >= 0 && write(procs_fd, "0", 1) != 1)
                        _exit(2);
                if ((flags & WORKER_OWN_GROUP) && setpgid(0, 0) < 0)
                        _exit(3);
                if (flags & WORKER_GRANDCHILD) {
                        pid_t me = getpid(), gc = fork();

                        if (gc < 0)
                                _exit(4);
                        if (gc == 0) {
                                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != me)
                                        _exit(1);
                                atomic_store(&shared->grandchild, (int) getpid());
                                for (;;)
                                        pause();
                        }
                }
                atomic_store(&shared->ready, 1);
                worker_loop();
        }

        cr_assert_lt(n_workers, ELEMENTSOF(workers));
        workers[n_workers++] = pid;
        if (flags & WORKER_OWN_GROUP)
                /* Also from this side, so the group exists before we look. */
                (void) setpgid(pid, pid);

        for (uint64_t end = now_ms() + WAIT_MS; now_ms() < end; sleep_ms(2))
                if (atomic_load(&shared->ready) &&
                    (!(flags & WORKER_GRANDCHILD) || atomic_load(&shared->grandchild) > 0))
                        return pid;
        cr_assert_fail("worker %d did not start", (int) pid);
        return -1;
}

static void forget_worker(pid_t pid) {
        for (size_t i = 0; i < n_workers; i++)
                if (workers[i] == pid) {
                        workers[i] = workers[--n_workers];
                        return;
                }
}

/* Waits for pid to exit; returns its wait status, or -1 on timeout. */
static int reap_worker(pid_t pid) {
        for (uint64_t end = now_ms() + WAIT_MS; now_ms() < end; sleep_ms(2)) {
                int status;
                pid_t r = waitpid(pid, &status, WNOHANG);

                if (r == pid) {
                        forget_worker(pid);
                        return status;
                }
                cr_assert_geq(r, 0, "waitpid: %s", strerror(errno));
        }
        return -1;
}

static char proc_state(pid_t pid) {
        char path[64], buf[512], *p;
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 'X';
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return 'X';
        buf[n] = '\0';
        p = strrchr(buf, ')');
        return p && p[1] == ' ' ? p[2] : '?';
}

static bool wait_state(pid_t pid, bool stopped) {
        for (uint64_t end = now_ms() + WAIT_MS; now_ms() < end; sleep_ms(2)) {
                char s = proc_state(pid);

                if ((s == 'T' || s == 't') == stopped)
                        return true;
        }
        return false;
}

/* Whether the worker's counter moves within WAIT_MS. */
static bool counter_advances(void) {
        unsigned long start = atomic_load(&shared->counter);

        for (uint64_t end = now_ms() + WAIT_MS; now_ms() < end; sleep_ms(2))
                if (atomic_load(&shared->counter) != start)
                        return true;
        return false;
}

/* Whether the counter stays put for a while: ample for a worker that
 * counts every millisecond. */
static bool counter_stalls(void) {
        unsigned long start = atomic_load(&shared->counter);

        sleep_ms(200);
        return atomic_load(&shared->counter) == start;
}

static char *read_file(const char *dir, const char *file) {
        char path[4096], *buf = NULL;
        size_t size = 0;
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, file);
        f = fopen(path, "re");
        if (!f)
                return NULL;
        if (getdelim(&buf, &size, '\0', f) < 0) {
                free(buf);
                buf = strdup("");
        }
        fclose(f);
        return buf;
}

static bool file_has_line(const char *dir, const char *file, const char *line) {
        _cleanup_free_ char *text = read_file(dir, file);
        size_t n = strlen(line);

        for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : "")
                if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
                        return true;
        return false;
}

static bool procs_contains(const char *dir, pid_t pid) {
        char line[32];

        snprintf(line, sizeof(line), "%d", (int) pid);
        return file_has_line(dir, "cgroup.procs", line);
}

static bool wait_file_line(const char *dir, const char *file, const char *line) {
        for (uint64_t end = now_ms() + WAIT_MS; now_ms() < end; sleep_ms(2))
                if (file_has_line(dir, file, line))
                        return true;
        return false;
}

static char *own_cgroup_line(void) {
        _cleanup_free_ char *text = read_file("/proc/self", "cgroup");
        char *p;

        cr_assert_not_null(text);
        p = strstr(text, "0::");
        cr_assert_not_null(p, "no cgroup2 line in /proc/self/cgroup");
        return strndup(p, strcspn(p, "\n"));
}

static void common_setup(void) {
        shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        cr_assert_neq(shared, MAP_FAILED);
        /* Orphaned grandchildren come to us, so teardown reaps them too. */
        cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
}

static void kill_and_reap_all(void) {
        for (size_t i = 0; i < n_workers; i++) {
                (void) kill(workers[i], SIGKILL);
                (void) waitpid(workers[i], NULL, 0);
        }
        n_workers = 0;
        /* Grandchildren, reparented to us as subreaper. */
        for (uint64_t end = now_ms() + WAIT_MS; now_ms() < end; sleep_ms(2)) {
                pid_t r = waitpid(-1, NULL, WNOHANG);

                if (r < 0)
                        break;
        }
}

static void common_teardown(void) {
        if (scratch) {
                /* Anything still in the scratch tree dies before we reap. */
                char path[4096];
                int fd;

                snprintf(path, sizeof(path), "%s/cgroup.kill", scratch);
                fd = open(path, O_WRONLY | O_CLOEXEC);
                if (fd >= 0) {
                        (void) write(fd, "1", 1);
                        close(fd);
                }
        }
        kill_and_reap_all();
        jc = cgroup_free(jc);
        if (shared)
                munmap(shared, sizeof(*shared));
        shared = NULL;
}

/* ---- fallback: signals ---- */

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void fallback_setup(void) {
        common_setup();
        memcpy(tmpdir, TMPDIR_TEMPLATE, sizeof(tmpdir));
        cr_assert_not_null(mkdtemp(tmpdir));
        cr_assert_eq(cgroup_new(tmpdir, 0, &jc), 0);
        cr_assert_not_null(jc);
        cr_assert_eq(cgroup_add_skill(jc, "echo", &(struct cgroup_limits) { .pids_max = 8 }), 0);
}

static void fallback_teardown(void) {
        common_teardown();
        nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(cgroup_fallback, .init = fallback_setup, .fini = fallback_teardown);

Test(cgroup_fallback, non_cgroup_base_falls_back_to_signals) {
        struct stat st;

        cr_assert_not(cgroup_delegated(jc));
        cr_assert_null(cgroup_path(jc, "echo"));
        cr_assert_null(cgroup_path(jc, NULL));
        cr_assert_eq(cgroup_procs_fd(jc, "echo"), -EOPNOTSUPP);
        cr_assert_not(cgroup_frozen(jc));
        cr_assert_eq(stat(tmpdir, &st), 0);
        cr_assert_eq(st.st_nlink, 2, "nothing may be created in a non-cgroup base");
}

Test(cgroup_fallback, missing_base_falls_back_to_signals) {
        _cleanup_(cgroup_freep) struct cgroup *c = NULL;
        char path[sizeof(tmpdir) + 16];

        snprintf(path, sizeof(path), "%s/missing", tmpdir);
        cr_assert_eq(cgroup_new(path, 0, &c), 0);
        cr_assert_not(cgroup_delegated(c));
        cr_assert_eq(access(path, F_OK), -1, "the base must not be created");
}

Test(cgroup_fallback, bad_flags_are_refused) {
        struct cgroup *c = NULL;

        cr_assert_eq(cgroup_new(tmpdir, CGROUP_MOVE_SELF, &c), -EINVAL,
                     "moving ourselves needs a discovered base");
        cr_assert_eq(cgroup_new(tmpdir, 1u << 7, &c), -EINVAL);
        cr_assert_null(c);
}

Test(cgroup_fallback, freeze_stops_workers_and_thaw_continues_them) {
        pid_t pid = spawn_worker(-1, 0);

        cr_assert_eq(cgroup_attach(jc, "echo", pid), 0);
        cr_assert(counter_advances());

        cr_assert_eq(cgroup_freeze(jc), 1);
        cr_assert(cgroup_frozen(jc));
        cr_assert(wait_state(pid, true), "worker state is %c, not stopped", proc_state(pid));
        cr_assert(counter_stalls());

        cr_assert_eq(cgroup_thaw(jc), 0);
        cr_assert_not(cgroup_frozen(jc));
        cr_assert(wait_state(pid, false), "worker is still stopped");
        cr_assert(counter_advances());
}

Test(cgroup_fallback, kill_ends_workers_with_sigkill) {
        pid_t a = spawn_worker(-1, 0), b = spawn_worker(-1, 0);
        int status;

        cr_assert_eq(cgroup_attach(jc, "echo", a), 0);
        cr_assert_eq(cgroup_attach(jc, "echo", b), 0);
        cr_assert_eq(cgroup_kill(jc), 0);

        status = reap_worker(a);
        cr_assert(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "status %d", status);
        status = reap_worker(b);
        cr_assert(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "status %d", status);
}

Test(cgroup_fallback, kill_ends_frozen_workers_and_thaws) {
        pid_t pid = spawn_worker(-1, 0);
        int status;

        cr_assert_eq(cgroup_attach(jc, "echo", pid), 0);
        cr_assert_eq(cgroup_freeze(jc), 1);
        cr_assert_eq(cgroup_kill(jc), 0);
        status = reap_worker(pid);
        cr_assert(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "status %d", status);
        cr_assert_not(cgroup_frozen(jc), "jobs started after a kill must run");

        /* And the next worker does run. */
        pid = spawn_worker(-1, 0);
        cr_assert_eq(cgroup_attach(jc, "echo", pid), 0);
        cr_assert(counter_advances());
}

Test(cgroup_fallback, worker_process_group_is_signalled_with_it) {
        pid_t pid = spawn_worker(-1, WORKER_OWN_GROUP | WORKER_GRANDCHILD);
        pid_t gc = atomic_load(&shared->grandchild);
        int status;

        cr_assert_eq(getpgid(pid), pid);
        cr_assert_eq(cgroup_attach(jc, "echo", pid), 0);
        cr_assert_eq(cgroup_freeze(jc), 1);
        cr_assert(wait_state(pid, true));
        cr_assert(wait_state(gc, true), "the worker's child is %c, not stopped", proc_state(gc));

        cr_assert_eq(cgroup_thaw(jc), 0);
        cr_assert(wait_state(gc, false));

        cr_assert_eq(cgroup_kill(jc), 0);
        status = reap_worker(pid);
        cr_assert(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        /* We are its subreaper: the grandchild comes to us to be reaped. */
        for (uint64_t end = now_ms() + WAIT_MS; ; sleep_ms(2)) {
                if (waitpid(gc, &status, WNOHANG) == gc)
                        break;
                cr_assert_lt(now_ms(), end, "the worker's child survived the kill");
        }
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

Test(cgroup_fallback, forgotten_worker_is_left_alone) {
        pid_t pid = spawn_worker(-1, 0);

        cr_assert_eq(cgroup_attach(jc, "echo", pid), 0);
        cgroup_forget(jc, pid);
        cr_assert_eq(cgroup_freeze(jc), 1);
        cr_assert(counter_advances(), "a forgotten worker must not be stopped");
        cr_assert_eq(cgroup_kill(jc), 0);
        cr_assert(counter_advances(), "a forgotten worker must not be killed");
}

Test(cgroup_fallback, worker_joining_frozen_jobs_is_stopped) {
        pid_t pid;

        cr_assert_eq(cgroup_freeze(jc), 1);
        pid = spawn_worker(-1, 0);
        cr_assert_eq(cgroup_attach(jc, "echo", pid), 0);
        cr_assert(wait_state(pid, true));
        cr_assert_eq(cgroup_thaw(jc), 0);
        cr_assert(wait_state(pid, false));
}

Test(cgroup_fallback, attach_checks_skill_and_pid) {
        pid_t pid = spawn_worker(-1, 0);

        cr_assert_eq(cgroup_attach(jc, "unknown", pid), -ENOENT);
        cr_assert_eq(cgroup_attach(jc, "echo", getpid()), -EINVAL, "never track ourselves");
        cr_assert_eq(cgroup_attach(jc, "echo", 0), -EINVAL);
        cr_assert_eq(cgroup_attach(jc, "echo", -1), -EINVAL);
}

Test(cgroup_fallback, skill_names_are_checked) {
        static const char *const bad[] = {
                "", "Echo", "a/b", "..", ".", ".hidden", "cgroup.procs", "with space",
                "tab\t", "ünï", "0123456789012345678901234567890123456789012345678901234567890123x",
        };
        static const char *const good[] = {
                "echo", "llm-7b_q4.gguf", "a", "0", "x.",
                "0123456789012345678901234567890123456789012345678901234567890123",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                cr_expect_not(cgroup_skill_name_is_valid(bad[i]), "'%s' passed", bad[i]);
                cr_expect_eq(cgroup_add_skill(jc, bad[i], NULL), -EINVAL, "'%s' was added", bad[i]);
        }
        cr_expect_not(cgroup_skill_name_is_valid(NULL));
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                cr_expect(cgroup_skill_name_is_valid(good[i]), "'%s' refused", good[i]);
                cr_expect_eq(cgroup_add_skill(jc, good[i], NULL), 0, "'%s' refused", good[i]);
        }
}

/* ---- real cgroups ---- */

static void real_setup(void) {
        _cleanup_free_ char *own = NULL, *freeze = NULL;
        int r;

        common_setup();
        skip_reason[0] = '\0';

        if (geteuid() != 0) {
                snprintf(skip_reason, sizeof(skip_reason), "needs root to create cgroups (euid %d)", (int) geteuid());
                return;
        }
        r = cgroup_discover(&own);
        if (r < 0) {
                snprintf(skip_reason, sizeof(skip_reason), "no cgroup2 hierarchy for this process: %s", strerror(-r));
                return;
        }

        for (int attempt = 0; attempt < 16 && !scratch; attempt++) {
                char *p;

                if (asprintf(&p, "%s/swarm-test-%d-%06x", own, (int) getpid(),
                             (unsigned) (now_ms() * 2654435761u + (unsigned) attempt) & 0xffffffu) < 0)
                        cr_assert_fail("out of memory");
                if (mkdir(p, 0755) >= 0) {
                        scratch = p;
                        break;
                }
                r = errno;
                free(p);
                if (r != EEXIST) {
                        snprintf(skip_reason, sizeof(skip_reason), "cgroup2 hierarchy not writable: mkdir below %s: %s",
                                 own, strerror(r));
                        return;
                }
        }
        cr_assert_not_null(scratch, "no free scratch cgroup name below %s", own);

        /* The frozen-state checks read cgroup.events, which needs the
         * cgroup2 freezer (Linux 5.2). */
        cr_assert_geq(asprintf(&freeze, "%s/cgroup.freeze", scratch), 0);
        if (access(freeze, F_OK) < 0)
                snprintf(skip_reason, sizeof(skip_reason), "kernel without the cgroup2 freezer (%s missing)", freeze);
}

/* Removes the scratch tree bottom-up; a cgroup stays busy for a moment
 * after its last process was reaped, hence the retries. */
static int rmdir_cgroup_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        if (flag != FTW_DP)
                return 0;
        for (uint64_t end = now_ms() + WAIT_MS; rmdir(path) < 0 && errno == EBUSY && now_ms() < end; sleep_ms(5))
                ;
        return 0;
}

static void real_teardown(void) {
        common_teardown();
        if (scratch) {
                nftw(scratch, rmdir_cgroup_one, 16, FTW_DEPTH | FTW_PHYS);
                cr_expect_eq(access(scratch, F_OK), -1, "scratch cgroup %s left behind", scratch);
        }
        free(scratch);
        scratch = NULL;
}

TestSuite(cgroup_real, .init = real_setup, .fini = real_teardown);

#define REQUIRE_CGROUPS()                                       \
        do {                                                    \
                if (skip_reason[0])                             \
                        cr_skip_test("%s", skip_reason);        \
        } while (0)

static void real_new(void) {
        cr_assert_eq(cgroup_new(scratch, 0, &jc), 0);
        cr_assert(cgroup_delegated(jc), "%s is writable, yet the module fell back to signals", scratch);
        cr_assert_eq(cgroup_add_skill(jc, "echo", NULL), 0);
}

Test(cgroup_real, discover_finds_own_cgroup) {
        _cleanup_free_ char *own = NULL;

        REQUIRE_CGROUPS();
        cr_assert_eq(cgroup_discover(&own), 0);
        cr_assert(procs_contains(own, getpid()), "%s does not list this process", own);
}

Test(cgroup_real, setup_leaves_test_process_where_it_is) {
        _cleanup_free_ char *before = NULL, *after = NULL;
        pid_t pid;

        REQUIRE_CGROUPS();
        before = own_cgroup_line();
        real_new();
        pid = spawn_worker(-1, 0);
        cr_assert_eq(cgroup_attach(jc, "echo", pid), 0);
        cr_assert_eq(cgroup_freeze(jc), 1);
        cr_assert_eq(cgroup_kill(jc), 0);
        after = own_cgroup_line();
        cr_assert_str_eq(before, after);
        cr_assert_not(procs_contains(cgroup_path(jc, "echo"), getpid()));
}

Test(cgroup_real, attach_moves_worker_into_skill_cgroup) {
        _cleanup_free_ char *skills = NULL, *own = NULL;
        char dir[64];
        pid_t pid;

        REQUIRE_CGROUPS();
        real_new();
        cr_assert(asprintf(&skills, "%s/skills", scratch) > 0);
        cr_assert_str_eq(cgroup_path(jc, NULL), skills);
        pid = spawn_worker(-1, 0);
        cr_assert_eq(cgroup_attach(jc, "echo", pid), 0);
        cr_assert(procs_contains(cgroup_path(jc, "echo"), pid));

        /* The kernel agrees: /proc/PID/cgroup names the skill's cgroup. */
        snprintf(dir, sizeof(dir), "/proc/%d", (int) pid);
        own = read_file(dir, "cgroup");
        cr_assert_not_null(own);
        cr_assert_not_null(strstr(own, "/skills/echo\n"), "/proc/%d/cgroup: %s", (int) pid, own);
        cr_assert_eq(cgroup_attach(jc, "unknown", pid), -ENOENT);
}

Test(cgroup_real, procs_fd_lets_child_place_itself_before_exec) {
        _cleanup_close_ int fd = -1;
        pid_t pid;

        REQUIRE_CGROUPS();
        real_new();
        fd = cgroup_procs_fd(jc, "echo");
        cr_assert_geq(fd, 0);
        pid = spawn_worker(fd, 0);
        cr_assert(procs_contains(cgroup_path(jc, "echo"), pid));
        cr_assert_eq(cgroup_procs_fd(jc, "unknown"), -ENOENT);
}

Test(cgroup_real, freeze_stops_progress_and_thaw_resumes_it) {
        const char *skills;
        pid_t pid;

        REQUIRE_CGROUPS();
        real_new();
        skills = cgroup_path(jc, NULL);
        cr_assert_not_null(skills);
        pid = spawn_worker(-1, 0);
        cr_assert_eq(cgroup_attach(jc, "echo", pid), 0);
        cr_assert(counter_advances());

        cr_assert_eq(cgroup_freeze(jc), 1);
        cr_assert(cgroup_frozen(jc));
        cr_assert(file_has_line(skills, "cgroup.events", "frozen 1"));
        cr_assert(counter_stalls(), "a frozen worker kept counting");

        cr_assert_eq(cgroup_thaw(jc), 0);
        cr_assert(wait_file_line(skills, "cgroup.events", "frozen 0"));
        cr_assert_not(cgroup_frozen(jc));
        cr_assert(counter_advances(), "a thawed worker does not count");
}

Test(cgroup_real, freeze_covers_every_skill) {
        _cleanup_close_ int fd = -1;
        pid_t pid;

        REQUIRE_CGROUPS();
        real_new();
        cr_assert_eq(cgroup_add_skill(jc, "summarise", NULL), 0);
        fd = cgroup_procs_fd(jc, "summarise");
        cr_assert_geq(fd, 0);
        pid = spawn_worker(fd, 0);
        cr_assert(procs_contains(cgroup_path(jc, "summarise"), pid));

        cr_assert_eq(cgroup_freeze(jc), 1);
        cr_assert(file_has_line(cgroup_path(jc, "summarise"), "cgroup.events", "frozen 1"));
        cr_assert(counter_stalls());
        cr_assert_eq(cgroup_thaw(jc), 0);
        cr_assert(counter_advances());
}

Test(cgroup_real, kill_ends_workers_and_their_children) {
        const char *skills;
        pid_t pid;
        int status;

        REQUIRE_CGROUPS();
        real_new();
        skills = cgroup_path(jc, NULL);
        pid = spawn_worker(cgroup_procs_fd(jc, "echo"), WORKER_GRANDCHILD);
        cr_assert(procs_contains(cgroup_path(jc, "echo"), atomic_load(&shared->grandchild)));

        cr_assert_eq(cgroup_kill(jc), 0);
        status = reap_worker(pid);
        cr_assert(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "status %d", status);
        cr_assert(wait_file_line(skills, "cgroup.events", "populated 0"), "processes survived the kill");
}

Test(cgroup_real, kill_ends_frozen_workers_and_thaws) {
        pid_t pid;
        int status;

        REQUIRE_CGROUPS();
        real_new();
        pid = spawn_worker(-1, 0);
        cr_assert_eq(cgroup_attach(jc, "echo", pid), 0);
        cr_assert_eq(cgroup_freeze(jc), 1);
        cr_assert_eq(cgroup_kill(jc), 0);
        status = reap_worker(pid);
        cr_assert(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "status %d", status);
        cr_assert(wait_file_line(cgroup_path(jc, NULL), "cgroup.events", "frozen 0"),
                  "jobs started after a kill must run");

        pid = spawn_worker(-1, 0);
        cr_assert_eq(cgroup_attach(jc, "echo", pid), 0);
        cr_assert(counter_advances());
}

static void check_limit(const char *dir, const char *controllers, const char *controller,
                        const char *file, const char *expected) {
        _cleanup_free_ char *value = read_file(dir, file);

        if (controllers && strstr(controllers, controller)) {
                cr_assert_not_null(value, "%s/%s missing", dir, file);
                cr_assert_str_eq(value, expected, "%s/%s", dir, file);
        } else {
                cr_log_info("%s controller not available in %s: the limit is rightly not written", controller, dir);
                cr_assert_null(value, "%s/%s exists without its controller", dir, file);
        }
}

Test(cgroup_real, limits_are_written_where_controllers_are_available) {
        const struct cgroup_limits limits = {
                .memory_max = 256u << 20,
                .cpu_max_percent = 50,
                .pids_max = 64,
        };
        _cleanup_free_ char *controllers = NULL;
        const char *dir;

        REQUIRE_CGROUPS();
        real_new();
        /* Whether or not the controllers exist (in hybrid mode v1 owns
         * them), adding the skill succeeds. */
        cr_assert_eq(cgroup_add_skill(jc, "limited", &limits), 0);
        dir = cgroup_path(jc, "limited");
        cr_assert_not_null(dir);
        controllers = read_file(dir, "cgroup.controllers");
        cr_assert_not_null(controllers);

        check_limit(dir, controllers, "memory", "memory.max", "268435456\n");
        check_limit(dir, controllers, "cpu", "cpu.max", "50000 100000\n");
        check_limit(dir, controllers, "pids", "pids.max", "64\n");

        /* Adding again rewrites them, here to unlimited. */
        cr_assert_eq(cgroup_add_skill(jc, "limited", NULL), 0);
        check_limit(dir, controllers, "memory", "memory.max", "max\n");
        check_limit(dir, controllers, "cpu", "cpu.max", "max 100000\n");
        check_limit(dir, controllers, "pids", "pids.max", "max\n");
}

Test(cgroup_real, invalid_skill_name_creates_nothing) {
        char path[4096];

        REQUIRE_CGROUPS();
        real_new();
        cr_assert_eq(cgroup_add_skill(jc, "../escape", NULL), -EINVAL);
        cr_assert_eq(cgroup_add_skill(jc, "cgroup.procs", NULL), -EINVAL);
        snprintf(path, sizeof(path), "%s/escape", scratch);
        cr_assert_eq(access(path, F_OK), -1);
}

Test(cgroup_real, free_removes_empty_skill_cgroups_but_not_base) {
        char skills[4096], echo[4096];
        pid_t pid;
        int status;

        REQUIRE_CGROUPS();
        real_new();
        snprintf(skills, sizeof(skills), "%s", cgroup_path(jc, NULL));
        snprintf(echo, sizeof(echo), "%s", cgroup_path(jc, "echo"));
        pid = spawn_worker(-1, 0);
        cr_assert_eq(cgroup_attach(jc, "echo", pid), 0);
        cr_assert_eq(cgroup_freeze(jc), 1);

        /* Busy: free() thaws and leaves the cgroups in place. */
        jc = cgroup_free(jc);
        cr_assert_eq(access(echo, F_OK), 0);
        cr_assert(file_has_line(skills, "cgroup.events", "frozen 0"), "free() must thaw");
        cr_assert(counter_advances());

        cr_assert_eq(kill(pid, SIGKILL), 0);
        status = reap_worker(pid);
        cr_assert(status != -1);

        /* Empty: a new instance over the same base removes them on free(). */
        cr_assert_eq(cgroup_new(scratch, 0, &jc), 0);
        cr_assert_eq(cgroup_add_skill(jc, "echo", NULL), 0);
        for (uint64_t end = now_ms() + WAIT_MS; ; sleep_ms(5)) {
                if (file_has_line(echo, "cgroup.events", "populated 0"))
                        break;
                cr_assert_lt(now_ms(), end);
        }
        jc = cgroup_free(jc);
        cr_assert_eq(access(echo, F_OK), -1, "%s left behind", echo);
        cr_assert_eq(access(skills, F_OK), -1, "%s left behind", skills);
        cr_assert_eq(access(scratch, F_OK), 0, "the caller's base must stay");
}

/* The daemon's own start-up under Delegate=yes, played by a forked helper
 * that first enters scratch/svc as if systemd had put it there; the test
 * process itself stays put.  Exit codes name the failed step. */
static _noreturn_ void move_self_helper(const char *svc) {
        _cleanup_free_ char *line = NULL, *skills = NULL, *leftover = NULL, *procs = NULL;
        struct cgroup *c = NULL;
        int fd;

        if (asprintf(&procs, "%s/cgroup.procs", svc) < 0)
                _exit(9);
        fd = open(procs, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0", 1) != 1)
                _exit(10);
        close(fd);

        if (cgroup_new(NULL, CGROUP_MOVE_SELF, &c) < 0 || !cgroup_delegated(c))
                _exit(11);
        line = read_file("/proc/self", "cgroup");
        if (!line || !strstr(line, "/svc/daemon\n"))
                _exit(12);
        if (asprintf(&skills, "%s/skills", svc) < 0 || strcmp(cgroup_path(c, NULL), skills) != 0)
                _exit(13);
        leftover = read_file(svc, "cgroup.procs");
        if (!leftover || leftover[0] != '\0')
                _exit(14);
        if (cgroup_add_skill(c, "echo", NULL) < 0)
                _exit(15);
        /* Our own jobs may be frozen and killed: we are not among them. */
        if (cgroup_freeze(c) != 1 || cgroup_thaw(c) < 0 || cgroup_kill(c) < 0)
                _exit(16);
        cgroup_free(c);
        _exit(0);
}

Test(cgroup_real, move_self_puts_the_daemon_into_a_leaf) {
        _cleanup_free_ char *svc = NULL, *leaf = NULL;
        pid_t pid;
        int status;

        REQUIRE_CGROUPS();
        cr_assert_geq(asprintf(&svc, "%s/svc", scratch), 0);
        cr_assert_geq(asprintf(&leaf, "%s/daemon", svc), 0);
        cr_assert_eq(mkdir(svc, 0755), 0);

        pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                move_self_helper(svc);
        }
        cr_assert_lt(n_workers, ELEMENTSOF(workers));
        workers[n_workers++] = pid;
        status = reap_worker(pid);
        cr_assert(status != -1 && WIFEXITED(status), "helper did not finish: %d", status);
        cr_assert_eq(WEXITSTATUS(status), 0, "helper failed at step %d", WEXITSTATUS(status));
        cr_assert_eq(access(leaf, F_OK), 0, "%s missing", leaf);
        cr_assert_neq(access(svc, F_OK), -1);
}

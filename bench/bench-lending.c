/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* How soon the owner gets the machine back when lending stops: N workers
 * each run a job, the policy goes to never, and we take the time from that
 * decision until every job is frozen (lending_last_giveback_usec(): the
 * record republished, then skills_pause() returning once the kernel says
 * frozen) or killed; then lending resumes and the jobs continue.  Rows:
 *
 *   - freeze through signals (SIGSTOP to each worker, waiting until each
 *     is stopped), always;
 *   - freeze through the cgroup freezer (cgroup.freeze, waiting for
 *     "frozen 1"), as root where cgroup2 is writable;
 *   - kill (preempt: kill), both ways;
 *   - the reference, measured on the same workers in the same run: a bare
 *     kill(2) SIGSTOP loop over their PIDs, waiting until /proc shows each
 *     stopped;
 *   - with a GPU (NVML loads): the device memory give-back, with
 *     lending.release_device_memory "immediately": from the decision to
 *     stop lending until NVML (read by this program, apart from swarmd's
 *     own reading) lists none of the workers that held memory; then the
 *     warm-up, from lending again until a worker is up.  "no GPU"
 *     otherwise.
 *
 * The jobs are testskill's "hang" (sleeping in pause()) or, with gemm.so,
 * a large matrix product resubmitted whenever one ends, so that the
 * workers are busy computing (on the GPU where the gemm worker finds one).
 *
 * Usage: bench-lending SKILL.so [WORKERS [ROUNDS [GEMM_N]]]
 *   e.g. bench-lending build/tests/testskill.so 4 50
 *        bench-lending build/plugins/gemm/gemm.so 2 30 2048 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "config.h"
#include "lending.h"
#include "log.h"
#include "macro.h"
#include "nvml.h"
#include "shm.h"
#include "skill-pool.h"
#include "skills.h"

#define MAX_WORKERS 64

static sd_event *event;
static struct config config;
static struct skills *skills;
static struct lending *lending;
static struct swarm_values *inputs;
static struct pool_request *jobs[MAX_WORKERS];
static unsigned n_workers = 4, rounds = 50;
static uint64_t gemm_n = 2048;
static bool is_gemm, stopping;
static char cgroup_origin[4096], cgroup_scratch[4200];

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return (x > y) - (x < y);
}

static void report(const char *what, uint64_t *v, size_t n) {
        if (n == 0) {
                printf("%-48s %10s %10s %10s\n", what, "-", "-", "-");
                return;
        }
        qsort(v, n, sizeof(*v), cmp_u64);
        printf("%-48s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 "\n", what, v[n / 2], v[(n * 99) / 100], v[0]);
}

static _Noreturn void die(const char *what, int r) {
        fprintf(stderr, "bench-lending: %s: %s\n", what, strerror(r < 0 ? -r : r));
        exit(EXIT_FAILURE);
}

static void run_for(uint64_t usec) {
        uint64_t end = now_usec() + usec;

        while (now_usec() < end)
                if (sd_event_run(event, 1000) < 0)
                        die("event loop", -EIO);
}

static void submit_job(size_t slot);

static void on_job_done(struct pool_request *req, struct pool_result *res, void *userdata) {
        size_t slot = (size_t) (uintptr_t) userdata;

        jobs[slot] = NULL;
        /* Keep every worker busy: a product that ended, or a job that was
         * killed, is followed by the next. */
        if (!stopping)
                submit_job(slot);
}

static void submit_job(size_t slot) {
        int r = skill_pool_submit(skills_pool(skills, 0), POOL_EXECUTE, inputs, NULL, NULL, 0, on_job_done,
                                  (void *) (uintptr_t) slot, &jobs[slot]);
        if (r < 0)
                die("submit", r);
}

static struct swarm_values *make_inputs(void) {
        struct swarm_values *v = swarm_values_new();

        if (!v)
                die("inputs", -ENOMEM);
        swarm_values_set_allocator(v, shm_allocate, NULL);
        if (is_gemm) {
                uint64_t shape[2] = { gemm_n, gemm_n };
                const char *names[2] = { "a", "b" };

                for (int m = 0; m < 2; m++) {
                        struct swarm_tensor t;

                        if (swarm_values_add_tensor(v, names[m], SWARM_DTYPE_F32, 2, shape, &t) < 0)
                                die("tensor", -ENOMEM);
                        for (uint64_t i = 0; i < t.n_elements; i++)
                                ((float *) t.data)[i] = (float) ((i * 7 + (uint64_t) m) % 13) / 13.0f;
                }
        } else if (swarm_values_set_string(v, "mode", "hang") < 0)
                die("inputs", -ENOMEM);
        return v;
}

/* Runs the loop until every worker runs a job. */
static void wait_all_busy(void) {
        uint64_t end = now_usec() + 30 * 1000 * 1000;
        struct skill_pool *p = skills_pool(skills, 0);

        while (skill_pool_workers_busy(p) < n_workers) {
                if (now_usec() > end)
                        die("workers did not all get busy", -ETIMEDOUT);
                if (sd_event_run(event, 1000) < 0)
                        die("event loop", -EIO);
        }
}

static void start(int cgroups, int preempt) {
        uint64_t end = now_usec() + 30 * 1000 * 1000;
        struct skill_pool *p;
        int r;

        config.skills_cgroups = cgroups;
        config.lending_preempt = preempt;
        config.lending_policy = LENDING_POLICY_ALWAYS;
        r = skills_new(event, &config, NULL, NULL, &skills);
        if (r < 0 || skills_count(skills) != 1)
                die("skills", r < 0 ? r : -ENOENT);
        p = skills_pool(skills, 0);
        while (skill_pool_workers_alive(p) < n_workers || !skill_pool_info(p)) {
                if (now_usec() > end)
                        die(skill_pool_last_error(p) ?: "workers did not start", -ETIMEDOUT);
                (void) sd_event_run(event, 10 * 1000);
        }
        r = lending_new(event, NULL, &config, skills, NULL, &lending);
        if (r < 0)
                die("lending", r);
        stopping = false;
        for (size_t i = 0; i < n_workers; i++)
                submit_job(i);
        wait_all_busy();
}

static void stop(void) {
        stopping = true;
        lending_stop(lending);                  /* thaws */
        lending = lending_free(lending);
        (void) skills_kill_all(skills);
        skills = skills_free(skills);
        memset(jobs, 0, sizeof(jobs));
}

/* Lending stops and resumes rounds times; collects the give-back times. */
static size_t measure(int preempt, uint64_t *out, uint64_t *wall) {
        /* Killed workers restart with backoff: fewer rounds. */
        unsigned total = preempt == LENDING_PREEMPT_KILL && rounds > 10 ? 10 : rounds;
        size_t n = 0;

        for (unsigned i = 0; i < total; i++) {
                uint64_t t;

                wait_all_busy();
                run_for(preempt == LENDING_PREEMPT_KILL ? 1000 : 20 * 1000);   /* let them run */
                t = now_usec();
                if (lending_set_policy(lending, LENDING_POLICY_NEVER) < 0)
                        die("policy never", -EIO);
                wall[n] = now_usec() - t;
                out[n++] = lending_last_giveback_usec(lending);
                if (lending_set_policy(lending, LENDING_POLICY_ALWAYS) < 0)
                        die("policy always", -EIO);
        }
        return n;
}

static char proc_state(pid_t pid) {
        char path[64], buf[512], *p;
        FILE *f;
        size_t n;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return '?';
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        p = strrchr(buf, ')');
        return p && p[1] == ' ' ? p[2] : '?';
}

/* The reference: SIGSTOP each worker ourselves and wait until /proc says
 * stopped; the same the signal fallback does, without anything around it. */
static size_t measure_reference(uint64_t *out) {
        pid_t pids[MAX_WORKERS];
        size_t n = 0;

        for (unsigned i = 0; i < rounds; i++) {
                size_t k = 0;
                uint64_t t;

                wait_all_busy();
                for (size_t j = 0; j < n_workers; j++)
                        if (jobs[j] && pool_request_worker_pid(jobs[j]) > 0)
                                pids[k++] = pool_request_worker_pid(jobs[j]);
                run_for(20 * 1000);
                t = now_usec();
                for (size_t j = 0; j < k; j++)
                        (void) kill(pids[j], SIGSTOP);
                for (size_t j = 0; j < k; j++) {
                        char c;
                        while ((c = proc_state(pids[j])) != 'T' && c != '?' && now_usec() - t < 1000 * 1000)
                                ;
                }
                out[n++] = now_usec() - t;
                for (size_t j = 0; j < k; j++)
                        (void) kill(pids[j], SIGCONT);
        }
        return n;
}

static int write_file(const char *path, const char *s) {
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return -errno;
        n = write(fd, s, strlen(s));
        n = n < 0 ? -errno : 0;
        close(fd);
        return (int) n;
}

/* Moves us into a scratch cgroup, so that the job cgroups go below it and
 * freezing them never touches anything else.  Returns why not, or NULL. */
static const char *cgroup_enter(void) {
        static char why[8600];
        _cleanup_free_ char *own = NULL;
        char path[4300];
        int r;

        if (geteuid() != 0)
                return "not root";
        r = cgroup_discover(&own);
        if (r < 0) {
                snprintf(why, sizeof(why), "no cgroup2 hierarchy: %s", strerror(-r));
                return why;
        }
        snprintf(cgroup_origin, sizeof(cgroup_origin), "%s", own);
        snprintf(cgroup_scratch, sizeof(cgroup_scratch), "%s/bench-lending-%d", own, (int) getpid());
        if (mkdir(cgroup_scratch, 0755) < 0) {
                snprintf(why, sizeof(why), "%s: %s", cgroup_scratch, strerror(errno));
                cgroup_scratch[0] = '\0';
                return why;
        }
        snprintf(path, sizeof(path), "%s/cgroup.freeze", cgroup_scratch);
        if (access(path, F_OK) < 0) {
                (void) rmdir(cgroup_scratch);
                cgroup_scratch[0] = '\0';
                return "no cgroup.freeze (kernel before 5.2)";
        }
        snprintf(path, sizeof(path), "%s/cgroup.procs", cgroup_scratch);
        r = write_file(path, "0");
        if (r < 0) {
                snprintf(why, sizeof(why), "cannot move into %s: %s", cgroup_scratch, strerror(-r));
                (void) rmdir(cgroup_scratch);
                cgroup_scratch[0] = '\0';
                return why;
        }
        return NULL;
}

static void cgroup_leave(void) {
        char path[4300];

        if (!cgroup_scratch[0])
                return;
        snprintf(path, sizeof(path), "%s/cgroup.procs", cgroup_origin);
        (void) write_file(path, "0");
        (void) rmdir(cgroup_scratch);
}

/* Whether NVML lists one of pids. */
static bool nvml_lists(struct nvml *n, const pid_t *pids, size_t n_pids) {
        _cleanup_free_ struct nvml_process *procs = NULL;
        size_t count = 0;

        if (nvml_list_processes(n, &procs, &count) < 0)
                return false;
        for (size_t i = 0; i < count; i++)
                for (size_t k = 0; k < n_pids; k++)
                        if (procs[i].pid == pids[k])
                                return true;
        return false;
}

/* Lend off → the workers' device memory freed, as NVML sees it; then lend
 * on → a worker up again. */
static void measure_device_memory(void) {
        _cleanup_(nvml_freep) struct nvml *n = NULL;
        unsigned total = rounds > 5 ? 5 : rounds;
        uint64_t *off = calloc(total, sizeof(uint64_t)), *warm = calloc(total, sizeof(uint64_t));
        uint64_t held = 0, lending_usec = 0, lending_bytes = 0;
        size_t n_off = 0, n_warm = 0;
        struct skill_pool *p;
        char label[128];
        int r;

        if (!off || !warm)
                die("setup", -ENOMEM);
        r = nvml_new(&n);
        if (r < 0) {
                printf("%-48s no GPU (NVML: %s)\n", "device memory, lend off → freed", strerror(-r));
                goto finish;
        }
        free(config.lending_release_device_memory);
        config.lending_release_device_memory = strdup("immediately");
        if (!config.lending_release_device_memory)
                die("setup", -ENOMEM);
        start(SKILLS_CGROUPS_OFF, LENDING_PREEMPT_FREEZE);
        p = skills_pool(skills, 0);

        for (unsigned i = 0; i < total; i++) {
                pid_t pids[MAX_WORKERS];
                uint64_t t, end = now_usec() + 10 * 1000 * 1000;
                size_t k = 0;

                /* Until the workers hold device memory (read every 5 s). */
                while ((lending_skill_device_memory(lending, p, &held) < 0 || held == 0) && now_usec() < end)
                        run_for(10 * 1000);
                if (held == 0) {
                        printf("%-48s %s holds no GPU memory (its CPU path?)\n", "device memory, lend off → freed",
                               is_gemm ? "gemm" : "testskill");
                        break;
                }
                for (unsigned w = 0; w < skill_pool_workers_max(p); w++)
                        if (skill_pool_worker_pid(p, w) > 0)
                                pids[k++] = skill_pool_worker_pid(p, w);

                stopping = true;        /* the killed jobs are not resubmitted */
                t = now_usec();
                if (lending_set_policy(lending, LENDING_POLICY_NEVER) < 0)
                        die("policy never", -EIO);
                end = t + 30 * 1000 * 1000;
                while ((!skill_pool_stopped(p) || nvml_lists(n, pids, k)) && now_usec() < end)
                        if (sd_event_run(event, 1000) < 0)
                                die("event loop", -EIO);
                off[n_off++] = now_usec() - t;

                t = now_usec();
                if (lending_set_policy(lending, LENDING_POLICY_ALWAYS) < 0)
                        die("policy always", -EIO);
                end = t + 60 * 1000 * 1000;
                while (skill_pool_workers_alive(p) == 0 && now_usec() < end)
                        if (sd_event_run(event, 1000) < 0)
                                die("event loop", -EIO);
                warm[n_warm++] = now_usec() - t;
                stopping = false;
                for (size_t j = 0; j < n_workers; j++)
                        if (!jobs[j])
                                submit_job(j);
                wait_all_busy();
        }
        (void) lending_last_memory_release(lending, &lending_usec, &lending_bytes);
        stop();
        if (n_off == 0)
                goto finish;
        snprintf(label, sizeof(label), "device memory, lend off → freed (NVML)");
        report(label, off, n_off);
        report("  warm-up: lend on → a worker up", warm, n_warm);
        if (lending_bytes == UINT64_MAX)
                printf("  swarmd's own figure: %" PRIu64 " µs, bytes unknown\n", lending_usec);
        else
                printf("  swarmd's own figure: %" PRIu64 " µs, %" PRIu64 " MiB given back\n", lending_usec,
                       lending_bytes >> 20);
finish:
        free(off);
        free(warm);
}

int main(int argc, char *argv[]) {
        uint64_t *v, *wall;
        const char *no_cgroup, *base;
        char label[128];
        sigset_t mask;
        size_t n;
        int r;

        if (argc < 2 || argc > 5) {
                fprintf(stderr, "Usage: %s SKILL.so [WORKERS [ROUNDS [GEMM_N]]]\n", argv[0]);
                return EXIT_FAILURE;
        }
        if (argc > 2)
                n_workers = (unsigned) strtoul(argv[2], NULL, 10);
        if (argc > 3)
                rounds = (unsigned) strtoul(argv[3], NULL, 10);
        if (argc > 4)
                gemm_n = strtoull(argv[4], NULL, 10);
        if (n_workers < 1 || n_workers > MAX_WORKERS || rounds < 1 || gemm_n < 16) {
                fprintf(stderr, "bench-lending: 1 to %d workers, at least one round, GEMM_N ≥ 16\n", MAX_WORKERS);
                return EXIT_FAILURE;
        }
        base = strrchr(argv[1], '/');
        is_gemm = strncmp(base ? base + 1 : argv[1], "gemm", 4) == 0;

        log_setup("bench-lending", LOG_TARGET_CONSOLE);
        log_set_max_level(LOG_ERR);        /* no notice per round, no warning per kill */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        if (sd_event_new(&event) < 0 || config_init(&config) < 0)
                die("setup", -ENOMEM);
        strv_free(config.skills_enabled);
        config.skills_enabled = calloc(2, sizeof(char *));
        if (!config.skills_enabled || !(config.skills_enabled[0] = strdup(argv[1])))
                die("setup", -ENOMEM);
        config.skills_workers = n_workers;
        /* The freeze rows measure freezing alone. */
        free(config.lending_release_device_memory);
        config.lending_release_device_memory = strdup("never");
        if (!config.lending_release_device_memory)
                die("setup", -ENOMEM);
        inputs = make_inputs();
        v = calloc(rounds, sizeof(uint64_t));
        wall = calloc(rounds, sizeof(uint64_t));
        if (!v || !wall)
                die("setup", -ENOMEM);

        printf("Give-back when lending stops: %u worker%s busy with %s, %u rounds; µs\n", n_workers,
               n_workers == 1 ? "" : "s", is_gemm ? "gemm" : "testskill hang", rounds);
        if (is_gemm)
                printf("(gemm %" PRIu64 "×%" PRIu64 ", resubmitted as each ends)\n", gemm_n, gemm_n);
        printf("%-48s %10s %10s %10s\n", "", "p50", "p99", "min");

        start(SKILLS_CGROUPS_OFF, LENDING_PREEMPT_FREEZE);
        n = measure(LENDING_PREEMPT_FREEZE, v, wall);
        report("freeze, signals (decision → all stopped)", v, n);
        report("  set_policy(never) call, wall", wall, n);
        n = measure_reference(v);
        report("reference: kill(2) SIGSTOP loop → all stopped", v, n);
        stop();

        start(SKILLS_CGROUPS_OFF, LENDING_PREEMPT_KILL);
        n = measure(LENDING_PREEMPT_KILL, v, wall);
        report("kill, signals (decision → SIGKILL sent)", v, n);
        stop();

        no_cgroup = cgroup_enter();
        if (no_cgroup) {
                printf("%-48s (skipped: %s)\n", "freeze, cgroup.freeze", no_cgroup);
        } else {
                start(SKILLS_CGROUPS_ON, LENDING_PREEMPT_FREEZE);
                snprintf(label, sizeof(label), "freeze, cgroup.freeze (→ \"frozen 1\")");
                n = measure(LENDING_PREEMPT_FREEZE, v, wall);
                report(label, v, n);
                n = measure_reference(v);
                report("reference: kill(2) SIGSTOP loop → all stopped", v, n);
                stop();

                start(SKILLS_CGROUPS_ON, LENDING_PREEMPT_KILL);
                n = measure(LENDING_PREEMPT_KILL, v, wall);
                report("kill, cgroup.kill", v, n);
                stop();
                cgroup_leave();
        }

        measure_device_memory();

        r = 0;
        swarm_values_free(inputs);
        free(v);
        free(wall);
        config_done(&config);
        sd_event_unref(event);
        return r;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "log.h"
#include "macro.h"
#include "shm.h"
#include "skill-pool.h"
#include "time-util.h"
#include "worker-proto.h"

#define WORKER_SOCKET_FD 3
#define WORKER_CONTROL_FD 4
#define CHILD_EXIT_CGROUP 125
#define STOP_TIMEOUT_USEC (1000u * 1000u)
/* skill_pool_release(): how long a worker asked to stop has to run its
 * skill's fini() (a CUDA context and a model to free) before SIGKILL. */
#define RELEASE_STOP_TIMEOUT_USEC (5u * 1000u * 1000u)

enum worker_state {
        WORKER_DOWN,            /* not running; maybe a restart timer */
        WORKER_STARTING,        /* INIT sent, waiting for HELLO */
        WORKER_IDLE,
        WORKER_BUSY,
        WORKER_STOPPING,        /* released: told to stop (socket closed), not yet exited */
};

struct worker {
        struct skill_pool *pool;
        unsigned index;
        enum worker_state state;
        pid_t pid;
        int fd;
        sd_event_source *io;
        sd_event_source *child;
        sd_event_source *restart_timer;
        sd_event_source *kill_timer;
        struct shm_block *control;      /* first word: the cancel flag */
        struct pool_request *current;
        bool killed_for_deadline;
        bool stop_killed;               /* released, and killed: it did not stop in time, or its job was frozen */
};

struct pool_request {
        struct skill_pool *pool;
        struct pool_request *prev, *next;       /* in the queue while queued */
        bool queued;
        enum pool_op op;
        uint64_t id;
        const struct swarm_values *inputs, *outputs, *proof;
        uint64_t deadline;
        uint64_t submitted, sent;
        sd_event_source *deadline_timer;
        pool_done_fn done;
        void *userdata;
        pool_chunk_fn chunk;            /* NULL: chunks are dropped */
        void *chunk_userdata;
        struct worker *worker;
        int stop_reason;                /* -ETIMEDOUT or -ECANCELED once asked to stop */
};

struct skill_pool {
        sd_event *event;
        char *plugin_path;
        char *worker_path;
        char *log_name;                 /* the configured skill name */
        struct skill_pool_config config;
        struct worker *workers;
        unsigned n_workers;
        struct pool_request *head, *tail;
        unsigned n_queued;
        struct skill_info info;
        bool ready;
        bool shutting_down;
        pool_event_fn ready_fn;
        void *ready_userdata;
        pool_event_fn changed_fn;
        void *changed_userdata;
        char *last_error;
        unsigned consecutive_failures;
        unsigned restarts;
        uint64_t jobs_done;             /* EXECUTE requests that succeeded */
        uint64_t next_id;
        /* skill_pool_release(): the workers were stopped on purpose and
         * are not restarted until skill_pool_warm() or a request. */
        bool released;
        bool warming;                   /* since skill_pool_warm(), until a worker is up */
        pool_event_fn state_fn;
        void *state_userdata;
};

/* Something skill_pool_workers_alive(), _busy(), _jobs_done() or
 * _last_error() report may have changed: tell the owner (who coalesces). */
static void pool_changed(struct skill_pool *p) {
        if (p->changed_fn)
                p->changed_fn(p, p->changed_userdata);
}

static void set_last_error(struct skill_pool *p, const char *text) {
        char *copy = strdup(text);

        if (copy) {
                free(p->last_error);
                p->last_error = copy;
        }
        pool_changed(p);
}

/* Released and every worker gone, or woken again: tell the lending
 * switch. */
static void pool_state_changed(struct skill_pool *p) {
        if (p->state_fn)
                p->state_fn(p, p->state_userdata);
}

static const char *op_to_string(enum pool_op op) {
        return op == POOL_EXECUTE ? "execute" : op == POOL_VERIFY ? "verify" : "price";
}

/* ---- Requests ---- */

static void queue_remove(struct skill_pool *p, struct pool_request *r) {
        if (!r->queued)
                return;
        if (r->prev)
                r->prev->next = r->next;
        else
                p->head = r->next;
        if (r->next)
                r->next->prev = r->prev;
        else
                p->tail = r->prev;
        r->prev = r->next = NULL;
        r->queued = false;
        p->n_queued--;
}

static void queue_push(struct skill_pool *p, struct pool_request *r, bool front) {
        if (front) {
                r->next = p->head;
                if (p->head)
                        p->head->prev = r;
                else
                        p->tail = r;
                p->head = r;
        } else {
                r->prev = p->tail;
                if (p->tail)
                        p->tail->next = r;
                else
                        p->head = r;
                p->tail = r;
        }
        r->queued = true;
        p->n_queued++;
}

/* Hands the result to the requester and frees the request. */
static void request_complete(struct pool_request *r, struct pool_result *result) {
        struct skill_pool *p = r->pool;

        queue_remove(p, r);
        if (r->worker) {
                r->worker->current = NULL;
                r->worker = NULL;
        }
        sd_event_source_disable_unref(r->deadline_timer);
        result->total_usec = now(CLOCK_MONOTONIC) - r->submitted;
        if (r->sent)
                result->queue_usec = r->sent - r->submitted;
        else
                result->queue_usec = result->total_usec;
        if (result->status >= 0)
                result->error = NULL;
        else if (!result->error)
                result->error = strerror(-result->status);
        if (r->op == POOL_EXECUTE && result->status >= 0)
                p->jobs_done++;
        pool_changed(p);

        r->done(r, result, r->userdata);
        swarm_values_free(result->outputs);
        swarm_values_free(result->proof);
        free(r);
}

static void request_fail(struct pool_request *r, int status, const char *error) {
        struct pool_result result = { .status = status, .error = error };

        request_complete(r, &result);
}

/* ---- Workers ---- */

static void worker_schedule_restart(struct worker *w, bool immediately);
static void pool_dispatch(struct skill_pool *p);
static void worker_stop(struct worker *w);
static int worker_start(struct worker *w);

static void worker_kill(struct worker *w) {
        if (w->pid > 0)
                (void) kill(w->pid, SIGKILL);
}

static void worker_became_idle(struct worker *w) {
        w->state = WORKER_IDLE;
        sd_event_source_disable_unref(w->kill_timer);
        w->kill_timer = NULL;
        if (w->pool->released) {
                /* A job that was left to finish: now its worker goes too. */
                worker_stop(w);
                return;
        }
        pool_dispatch(w->pool);
}

static int on_kill_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct worker *w = userdata;

        log_warning("Worker %u of %s (pid %d) did not stop within %.1fs of its job's deadline or "
                    "cancellation; killing it.", w->index, w->pool->log_name, (int) w->pid,
                    (double) w->pool->config.kill_grace_usec / 1e6);
        w->killed_for_deadline = true;
        worker_kill(w);
        return 0;
}

/* Asks the running job to stop: the worker sees the flag at once; the kill
 * timer makes sure it does. */
static void worker_request_stop(struct worker *w, int reason) {
        struct pool_request *r = w->current;

        if (!r || r->stop_reason)
                return;
        r->stop_reason = reason;
        __atomic_store_n((uint32_t *) w->control->addr, 1, __ATOMIC_RELAXED);
        if (!w->kill_timer)
                (void) sd_event_add_time_relative(w->pool->event, &w->kill_timer, CLOCK_MONOTONIC,
                                                  w->pool->config.kill_grace_usec, 1000,
                                                  on_kill_timer, w);
}

static void handle_hello(struct worker *w, struct wmsg *m) {
        struct skill_pool *p = w->pool;

        if (m->status < 0) {
                const char *why = m->text[WMSG_TEXT_ERROR] ?: strerror(-m->status);

                log_error("Worker %u of %s failed to start: %s", w->index, p->log_name, why);
                set_last_error(p, why);
                /* It exits by itself; the child handler restarts it with backoff. */
                return;
        }
        if (!p->ready) {
                p->info = (struct skill_info) {
                        .name = TAKE_PTR(m->text[WMSG_TEXT_NAME]),
                        .version = TAKE_PTR(m->text[WMSG_TEXT_VERSION]),
                        .description = TAKE_PTR(m->text[WMSG_TEXT_DESCRIPTION]),
                        .abi_version = (uint32_t) m->number,
                        .advert = TAKE_PTR(m->values[0]),
                };
                p->ready = true;
                log_info("Skill %s ready: plugin %s %s (%s).", p->log_name, p->info.name ?: "?",
                         p->info.version ?: "", p->info.description ?: "");
                if (p->ready_fn)
                        p->ready_fn(p, p->ready_userdata);
        }
        log_debug("Worker %u of %s (pid %d) ready.", w->index, p->log_name, (int) w->pid);
        p->consecutive_failures = 0;
        if (p->warming) {
                p->warming = false;
                log_info("Skill %s is warm again: worker %u is up.", p->log_name, w->index);
        }
        worker_became_idle(w);
}

static void handle_reply(struct worker *w, struct wmsg *m) {
        struct pool_request *r = w->current;
        struct pool_result result = {
                .status = m->status > 0 ? 0 : m->status,
                .error = m->text[WMSG_TEXT_ERROR],
        };

        /* The worker may notice the deadline before our timer fires. */
        if (!r->stop_reason && r->deadline > 0 && now(CLOCK_MONOTONIC) >= r->deadline)
                r->stop_reason = -ETIMEDOUT;

        if (r->stop_reason) {
                /* Late results are never returned: the requester has moved on. */
                result.status = r->stop_reason;
                result.error = r->stop_reason == -ECANCELED ? "job cancelled" :
                        "deadline passed while the job was running";
        } else if (m->type == WMSG_EXECUTE_REPLY && result.status >= 0) {
                result.outputs = TAKE_PTR(m->values[0]);
                result.proof = TAKE_PTR(m->values[1]);
                result.exec_usec = m->number;
        } else if (m->type == WMSG_PRICE_REPLY)
                result.price = m->number;
        else if (m->type == WMSG_VERIFY_REPLY)
                result.exec_usec = m->number;

        request_complete(r, &result);
        worker_became_idle(w);
}

/* A piece of output the skill emitted while executing: handed to the
 * request's listener, if any, unless the request is being stopped. */
static void handle_chunk(struct pool_request *r, const struct wmsg *m) {
        enum swarm_value_type type;
        const char *name;
        const void *data;
        size_t size;

        if (!r->chunk || r->stop_reason || !m->values[0] || swarm_values_count(m->values[0]) != 1)
                return;
        name = swarm_values_name(m->values[0], 0, &type);
        if (type != SWARM_VALUE_BYTES || swarm_values_get_bytes(m->values[0], name, &data, &size) < 0)
                return;
        r->chunk(r, name, data, size, r->chunk_userdata);
}

void skill_pool_request_on_chunk(struct pool_request *req, pool_chunk_fn chunk, void *userdata) {
        req->chunk = chunk;
        req->chunk_userdata = userdata;
}

static int on_worker_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct worker *w = userdata;
        static const enum wmsg_type expected[] = {
                [POOL_EXECUTE] = WMSG_EXECUTE_REPLY,
                [POOL_VERIFY] = WMSG_VERIFY_REPLY,
                [POOL_PRICE] = WMSG_PRICE_REPLY,
        };

        for (;;) {
                struct wmsg m;
                const char *reason;
                int r;

                r = wmsg_recv(fd, &m, &reason);
                if (r == -EAGAIN)
                        return 0;
                if (r < 0) {
                        if (r == -EBADMSG)
                                log_error("Worker %u of %s (pid %d) sent a malformed message (%s); killing it.",
                                          w->index, w->pool->log_name, (int) w->pid, reason);
                        else if (r != -ECONNRESET)
                                log_error_errno(r, "Failed to read from worker %u of %s: %m",
                                                w->index, w->pool->log_name);
                        /* The child handler does the rest once it has exited. */
                        sd_event_source_set_enabled(s, SD_EVENT_OFF);
                        worker_kill(w);
                        return 0;
                }

                if (w->state == WORKER_STARTING && m.type == WMSG_HELLO)
                        handle_hello(w, &m);
                else if (w->state == WORKER_BUSY && w->current && m.job_id == w->current->id &&
                         w->current->op == POOL_EXECUTE && m.type == WMSG_CHUNK)
                        handle_chunk(w->current, &m);
                else if (w->state == WORKER_BUSY && w->current && m.job_id == w->current->id &&
                         m.type == expected[w->current->op])
                        handle_reply(w, &m);
                else {
                        log_error("Worker %u of %s (pid %d) sent an unexpected %s; killing it.",
                                  w->index, w->pool->log_name, (int) w->pid, wmsg_type_to_string(m.type));
                        worker_kill(w);
                }
                wmsg_done(&m);
                if (w->state == WORKER_DOWN || w->fd < 0)
                        return 0;
        }
}

static void describe_exit(const siginfo_t *si, char *buf, size_t n) {
        if (si->si_code == CLD_EXITED) {
                if (si->si_status == CHILD_EXIT_CGROUP)
                        snprintf(buf, n, "could not join its cgroup");
                else
                        snprintf(buf, n, "exited with status %d", si->si_status);
        } else
                snprintf(buf, n, "killed by signal SIG%s", sigabbrev_np(si->si_status) ?: "?");
}

static void worker_close(struct worker *w) {
        w->io = sd_event_source_disable_unref(w->io);
        w->child = sd_event_source_disable_unref(w->child);
        w->kill_timer = sd_event_source_disable_unref(w->kill_timer);
        if (w->fd >= 0)
                close(w->fd);
        w->fd = -1;
        shm_block_free(w->control);
        w->control = NULL;
        w->pid = 0;
        w->state = WORKER_DOWN;
        pool_changed(w->pool);
}

static int on_worker_exit(sd_event_source *s, const siginfo_t *si, void *userdata) {
        struct worker *w = userdata;
        struct skill_pool *p = w->pool;
        struct pool_request *r = w->current;
        bool was_starting = w->state == WORKER_STARTING;
        bool for_deadline = w->killed_for_deadline, was_stopping = w->state == WORKER_STOPPING;
        bool stop_killed = w->stop_killed, for_release = r && r->stop_reason == -EAGAIN;
        char how[64], error[256];

        describe_exit(si, how, sizeof(how));
        if (p->config.cgroups)
                cgroup_forget(p->config.cgroups, w->pid);
        worker_close(w);
        w->killed_for_deadline = false;
        w->stop_killed = false;

        if (r) {
                if (r->stop_reason == -EAGAIN)
                        request_fail(r, -EAGAIN, "job stopped: the provider stopped lending and gave its GPU "
                                     "memory back (lending.release_device_memory)");
                else if (r->stop_reason == -ECANCELED)
                        request_fail(r, -ECANCELED, "job cancelled; its worker was killed");
                else if (r->stop_reason == -ETIMEDOUT || for_deadline) {
                        snprintf(error, sizeof(error), "job did not stop within %.1fs of its deadline; "
                                 "its worker was killed", (double) p->config.kill_grace_usec / 1e6);
                        request_fail(r, -ETIMEDOUT, error);
                } else {
                        snprintf(error, sizeof(error), "worker of skill %s crashed (%s) while running this job",
                                 p->log_name, how);
                        log_warning("Worker %u of %s %s while running request %" PRIu64 " (%s).",
                                    w->index, p->log_name, how, r->id, op_to_string(r->op));
                        set_last_error(p, error);
                        request_fail(r, -ECONNABORTED, error);
                }
        } else if (was_stopping) {
                if (stop_killed)
                        log_debug("Worker %u of %s was killed to release it.", w->index, p->log_name);
                else
                        log_debug("Worker %u of %s stopped to release it (%s).", w->index, p->log_name, how);
        } else if (!p->shutting_down) {
                log_warning("Worker %u of %s %s%s.", w->index, p->log_name, how,
                            was_starting ? " while starting" : "");
                if (!was_starting || !p->last_error) {
                        snprintf(error, sizeof(error), "worker %s%s", how, was_starting ? " while starting" : "");
                        set_last_error(p, error);
                }
        }

        if (p->shutting_down)
                return 0;
        if (p->released) {
                /* Stays down; the last one out says so. */
                if (skill_pool_stopped(p))
                        pool_state_changed(p);
                return 0;
        }
        if (was_stopping || for_release) {
                /* Woken while it was stopping: start again at once. */
                if (worker_start(w) < 0)
                        worker_schedule_restart(w, false);
                return 0;
        }
        p->restarts++;
        worker_schedule_restart(w, for_deadline);
        return 0;
}

/* In the child, between fork() and exec(): async-signal-safe calls only. */
_noreturn_ static void worker_exec(struct skill_pool *p, pid_t parent, int sock, int control, int procs) {
        sigset_t none;
        char *argv[] = { (char *) "swarm-worker", p->plugin_path, NULL };

        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);
        for (int sig = 1; sig < _NSIG; sig++)
                (void) signal(sig, SIG_DFL);
        /* Own process group: the signal fallback of cgroup pauses and
         * kills the worker with its children. */
        (void) setpgid(0, 0);
        /* Die with swarmd, whatever kills it. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                _exit(EXIT_FAILURE);
        if (procs >= 0 && write(procs, "0", 1) != 1)
                _exit(CHILD_EXIT_CGROUP);

        /* Move both out of the way of 3 and 4 first, then into place. */
        sock = fcntl(sock, F_DUPFD_CLOEXEC, 10);
        control = fcntl(control, F_DUPFD_CLOEXEC, 10);
        if (sock < 0 || control < 0 ||
            dup2(sock, WORKER_SOCKET_FD) < 0 || dup2(control, WORKER_CONTROL_FD) < 0)
                _exit(EXIT_FAILURE);
        (void) close_range(WORKER_CONTROL_FD + 1, ~0u, 0);

        execv(p->worker_path, argv);
        _exit(127);
}

static int worker_start(struct worker *w) {
        struct skill_pool *p = w->pool;
        _cleanup_close_ int procs = -1;
        struct wmsg init = { .type = WMSG_INIT };
        void (*release)(void *, uint64_t, void *);
        int pair[2], r;
        void *data, *block;
        pid_t parent = getpid(), pid;

        r = shm_allocate(sizeof(uint32_t), &data, &release, &block, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to create a control page for %s: %m", p->log_name);
        w->control = block;
        r = shm_seal_size(w->control);
        if (r < 0)
                goto fail_log;

        if (p->config.cgroups) {
                procs = cgroup_procs_fd(p->config.cgroups, p->log_name);
                if (procs < 0 && procs != -EOPNOTSUPP) {
                        r = procs;
                        goto fail_log;
                }
        }

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
                r = negative_errno();
                goto fail_log;
        }
        pid = fork();
        if (pid < 0) {
                r = negative_errno();
                close(pair[0]);
                close(pair[1]);
                goto fail_log;
        }
        if (pid == 0)
                worker_exec(p, parent, pair[1], w->control->fd, procs);

        close(pair[1]);
        w->fd = pair[0];
        w->pid = pid;
        w->state = WORKER_STARTING;
        if (fcntl(w->fd, F_SETFL, O_NONBLOCK) < 0) {
                r = negative_errno();
                goto fail_kill;
        }
        if (p->config.cgroups) {
                /* Already there when procs was open; this keeps the fallback's books. */
                r = cgroup_attach(p->config.cgroups, p->log_name, pid);
                if (r < 0)
                        log_warning_errno(r, "Worker %u of %s (pid %d) is not in its cgroup: %m",
                                          w->index, p->log_name, (int) pid);
        }

        r = sd_event_add_child(p->event, &w->child, pid, WEXITED, on_worker_exit, w);
        if (r < 0)
                goto fail_kill;
        r = sd_event_add_io(p->event, &w->io, w->fd, EPOLLIN, on_worker_io, w);
        if (r < 0)
                goto fail_kill;

        init.values[0] = (struct swarm_values *) p->config.skill_config;
        r = wmsg_send(w->fd, &init);
        init.values[0] = NULL;
        if (r < 0)
                goto fail_kill;

        log_debug("Started worker %u of %s (pid %d).", w->index, p->log_name, (int) pid);
        return 0;

fail_kill:
        /* The child source (if any) reaps it; otherwise reap here. */
        (void) kill(pid, SIGKILL);
        if (!w->child)
                (void) waitpid(pid, NULL, 0);
        else
                return log_error_errno(r, "Failed to set up worker %u of %s: %m", w->index, p->log_name);
        worker_close(w);
        return log_error_errno(r, "Failed to set up worker %u of %s: %m", w->index, p->log_name);
fail_log:
        shm_block_free(w->control);
        w->control = NULL;
        return log_error_errno(r, "Failed to start a worker for %s: %m", p->log_name);
}

static int on_restart_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct worker *w = userdata;

        w->restart_timer = sd_event_source_disable_unref(w->restart_timer);
        if (worker_start(w) < 0)
                worker_schedule_restart(w, false);
        return 0;
}

static void worker_schedule_restart(struct worker *w, bool immediately) {
        struct skill_pool *p = w->pool;
        uint64_t delay = p->config.restart_min_usec;

        if (!immediately) {
                unsigned f = p->consecutive_failures++;
                for (unsigned i = 0; i < f && delay < p->config.restart_max_usec; i++)
                        delay *= 2;
                if (delay > p->config.restart_max_usec)
                        delay = p->config.restart_max_usec;
        }
        log_debug("Restarting worker %u of %s in %.2fs.", w->index, p->log_name, (double) delay / 1e6);
        (void) sd_event_add_time_relative(p->event, &w->restart_timer, CLOCK_MONOTONIC, delay, 1000,
                                          on_restart_timer, w);
}

/* ---- Releasing the workers ---- */

static int on_stop_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct worker *w = userdata;

        w->kill_timer = sd_event_source_disable_unref(w->kill_timer);
        log_warning("Worker %u of %s (pid %d) did not stop within %.0fs of being asked to give its resources "
                    "back; killing it.", w->index, w->pool->log_name, (int) w->pid,
                    (double) RELEASE_STOP_TIMEOUT_USEC / 1e6);
        w->stop_killed = true;
        worker_kill(w);
        return 0;
}

/* Asks a worker between jobs (or still starting) to stop: the end of its
 * socket ends its loop, and it runs the skill's fini() on the way out; the
 * child handler sees it exit. */
static void worker_stop(struct worker *w) {
        w->io = sd_event_source_disable_unref(w->io);
        if (w->fd >= 0)
                close(w->fd);
        w->fd = -1;
        w->state = WORKER_STOPPING;
        w->kill_timer = sd_event_source_disable_unref(w->kill_timer);
        if (sd_event_add_time_relative(w->pool->event, &w->kill_timer, CLOCK_MONOTONIC,
                                       RELEASE_STOP_TIMEOUT_USEC, 10 * 1000, on_stop_timer, w) < 0)
                worker_kill(w);
        pool_changed(w->pool);
}

int skill_pool_release(struct skill_pool *p, bool kill_busy) {
        if (!p)
                return -EINVAL;
        if (p->shutting_down)
                return -ESHUTDOWN;
        if (p->n_queued > 0)
                return -EBUSY;
        if (p->released)
                return 0;
        p->released = true;
        p->warming = false;
        for (unsigned i = 0; i < p->n_workers; i++) {
                struct worker *w = &p->workers[i];

                w->restart_timer = sd_event_source_disable_unref(w->restart_timer);
                switch (w->state) {
                case WORKER_DOWN:
                case WORKER_STOPPING:
                        break;
                case WORKER_STARTING:
                case WORKER_IDLE:
                        worker_stop(w);
                        break;
                case WORKER_BUSY:
                        if (!kill_busy || !w->current)
                                break;  /* it stops once its job is done */
                        /* A frozen job cannot see a cancel flag: it dies
                         * (SIGKILL reaches frozen and stopped processes). */
                        w->current->stop_reason = -EAGAIN;
                        w->stop_killed = true;
                        worker_kill(w);
                        break;
                }
        }
        pool_changed(p);
        if (skill_pool_stopped(p))
                pool_state_changed(p);
        return 1;
}

int skill_pool_warm(struct skill_pool *p) {
        if (!p)
                return -EINVAL;
        if (!p->released)
                return 0;
        p->released = false;
        p->warming = true;
        for (unsigned i = 0; i < p->n_workers; i++) {
                struct worker *w = &p->workers[i];

                /* Those still stopping start again when they have exited. */
                if (w->state != WORKER_DOWN || w->restart_timer)
                        continue;
                if (worker_start(w) < 0)
                        worker_schedule_restart(w, false);
        }
        pool_changed(p);
        pool_state_changed(p);
        return 1;
}

bool skill_pool_released(const struct skill_pool *p) {
        return p->released;
}

bool skill_pool_warming(const struct skill_pool *p) {
        return p->warming;
}

bool skill_pool_stopped(const struct skill_pool *p) {
        for (unsigned i = 0; i < p->n_workers; i++)
                if (p->workers[i].pid > 0)
                        return false;
        return true;
}

unsigned skill_pool_workers_max(const struct skill_pool *p) {
        return p->n_workers;
}

pid_t skill_pool_worker_pid(const struct skill_pool *p, unsigned i) {
        return i < p->n_workers ? p->workers[i].pid : 0;
}

void skill_pool_set_state_callback(struct skill_pool *p, pool_event_fn fn, void *userdata) {
        p->state_fn = fn;
        p->state_userdata = userdata;
}

/* ---- Dispatch ---- */

static void request_send(struct worker *w, struct pool_request *r) {
        static const enum wmsg_type types[] = {
                [POOL_EXECUTE] = WMSG_EXECUTE,
                [POOL_VERIFY] = WMSG_VERIFY,
                [POOL_PRICE] = WMSG_PRICE,
        };
        struct wmsg m = {
                .type = types[r->op],
                .job_id = r->id,
                .number = r->op == POOL_EXECUTE ? r->deadline : 0,
                .values = {
                        (struct swarm_values *) r->inputs,
                        (struct swarm_values *) r->outputs,
                        (struct swarm_values *) r->proof,
                },
        };
        int k;

        __atomic_store_n((uint32_t *) w->control->addr, 0, __ATOMIC_RELAXED);
        w->current = r;
        r->worker = w;
        r->sent = now(CLOCK_MONOTONIC);
        w->state = WORKER_BUSY;

        k = wmsg_send(w->fd, &m);
        if (k == -E2BIG || k == -EINVAL || k == -EBUSY) {
                /* The request itself cannot travel: its fault, not the worker's. */
                w->current = NULL;
                r->worker = NULL;
                w->state = WORKER_IDLE;
                if (k == -EBUSY)
                        request_fail(r, -EBUSY, "job inputs are still mapped writable elsewhere and "
                                                "cannot be sealed");
                else
                        request_fail(r, -E2BIG, "job inputs exceed the worker message limits");
        } else if (k < 0) {
                /* The worker is gone; the request goes back to the front. */
                log_warning_errno(k, "Failed to send request to worker %u of %s: %m", w->index,
                                  w->pool->log_name);
                w->current = NULL;
                r->worker = NULL;
                r->sent = 0;
                queue_push(w->pool, r, true);
                worker_kill(w);
        }
}

static void pool_dispatch(struct skill_pool *p) {
        for (unsigned i = 0; i < p->n_workers && p->head && !p->shutting_down; i++) {
                struct worker *w = &p->workers[i];
                struct pool_request *r;

                if (w->state != WORKER_IDLE)
                        continue;
                r = p->head;
                queue_remove(p, r);
                request_send(w, r);
        }
        pool_changed(p);
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        struct pool_request *r = userdata;
        char error[128];

        r->deadline_timer = sd_event_source_disable_unref(r->deadline_timer);
        if (r->queued) {
                snprintf(error, sizeof(error), "deadline passed while queued for skill %s", r->pool->log_name);
                request_fail(r, -ETIMEDOUT, error);
        } else if (r->worker)
                worker_request_stop(r->worker, -ETIMEDOUT);
        return 0;
}

int skill_pool_submit(struct skill_pool *p, enum pool_op op,
                      const struct swarm_values *inputs,
                      const struct swarm_values *outputs, const struct swarm_values *proof,
                      uint64_t deadline_usec, pool_done_fn done, void *userdata,
                      struct pool_request **ret) {
        struct pool_request *r;
        int k;

        if (!done || !inputs || (op == POOL_VERIFY && !outputs))
                return -EINVAL;
        if (p->shutting_down)
                return -ESHUTDOWN;
        if (p->config.queue_max > 0 && p->n_queued >= p->config.queue_max)
                return -EBUSY;
        if (p->released) {
                /* Not lending (or the owner's own request would not be
                 * here): the request waits for the workers to warm up. */
                log_info("Skill %s: a local %s request starts its workers again (they gave their resources "
                         "back while this node was not lending).", p->log_name, op_to_string(op));
                (void) skill_pool_warm(p);
        }

        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        *r = (struct pool_request) {
                .pool = p,
                .op = op,
                .id = ++p->next_id,
                .inputs = inputs,
                .outputs = outputs,
                .proof = proof,
                .deadline = deadline_usec,
                .submitted = now(CLOCK_MONOTONIC),
                .done = done,
                .userdata = userdata,
        };
        if (deadline_usec > 0) {
                k = sd_event_add_time(p->event, &r->deadline_timer, CLOCK_MONOTONIC, deadline_usec, 1000,
                                      on_deadline, r);
                if (k < 0) {
                        free(r);
                        return k;
                }
        }
        queue_push(p, r, false);
        if (ret)
                *ret = r;
        pool_dispatch(p);
        return 0;
}

void pool_request_cancel(struct pool_request *r) {
        if (r->queued)
                request_fail(r, -ECANCELED, "job cancelled");
        else if (r->worker)
                worker_request_stop(r->worker, -ECANCELED);
}

pid_t pool_request_worker_pid(const struct pool_request *r) {
        return r->worker ? r->worker->pid : 0;
}

/* ---- The pool ---- */

int skill_pool_new(sd_event *event, const struct skill_pool_config *config, struct skill_pool **ret) {
        struct skill_pool *p;
        sigset_t mask;

        if (!config->name || !config->plugin_path || !config->worker_path || config->workers == 0)
                return -EINVAL;
        if (sigprocmask(SIG_SETMASK, NULL, &mask) < 0 || !sigismember(&mask, SIGCHLD))
                return log_error_errno(-EINVAL, "SIGCHLD must be blocked before creating a worker pool.");

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->event = sd_event_ref(event);
        p->config = *config;
        if (p->config.kill_grace_usec == 0)
                p->config.kill_grace_usec = 2 * 1000 * 1000;
        if (p->config.restart_min_usec == 0)
                p->config.restart_min_usec = 100 * 1000;
        if (p->config.restart_max_usec < p->config.restart_min_usec)
                p->config.restart_max_usec = 30 * 1000 * 1000;
        p->plugin_path = strdup(config->plugin_path);
        p->worker_path = strdup(config->worker_path);
        p->log_name = strdup(config->name);
        p->workers = calloc(config->workers, sizeof(struct worker));
        if (!p->plugin_path || !p->worker_path || !p->log_name || !p->workers) {
                skill_pool_free(p);
                return -ENOMEM;
        }
        p->n_workers = config->workers;
        for (unsigned i = 0; i < p->n_workers; i++)
                p->workers[i] = (struct worker) { .pool = p, .index = i, .fd = -1 };

        for (unsigned i = 0; i < p->n_workers; i++)
                if (worker_start(&p->workers[i]) < 0)
                        worker_schedule_restart(&p->workers[i], false);
        *ret = p;
        return 0;
}

static void stop_workers(struct skill_pool *p) {
        uint64_t give_up = now(CLOCK_MONOTONIC) + STOP_TIMEOUT_USEC;
        bool any;

        for (unsigned i = 0; i < p->n_workers; i++) {
                struct worker *w = &p->workers[i];

                w->restart_timer = sd_event_source_disable_unref(w->restart_timer);
                w->io = sd_event_source_disable_unref(w->io);
                w->child = sd_event_source_disable_unref(w->child);
                if (w->fd >= 0)
                        close(w->fd);   /* end of stream: a worker between jobs exits */
                w->fd = -1;
                if (w->pid > 0 && w->state == WORKER_BUSY)
                        (void) kill(w->pid, SIGTERM);
        }
        /* Bounded: at most a second, then SIGKILL. */
        do {
                any = false;
                for (unsigned i = 0; i < p->n_workers; i++) {
                        struct worker *w = &p->workers[i];
                        if (w->pid <= 0)
                                continue;
                        if (waitpid(w->pid, NULL, WNOHANG) == w->pid)
                                w->pid = 0;
                        else
                                any = true;
                }
                if (any)
                        usleep(5000);
        } while (any && now(CLOCK_MONOTONIC) < give_up);
        for (unsigned i = 0; i < p->n_workers; i++) {
                struct worker *w = &p->workers[i];
                if (w->pid > 0) {
                        (void) kill(w->pid, SIGKILL);
                        (void) waitpid(w->pid, NULL, 0);
                }
                worker_close(w);
        }
}

struct skill_pool *skill_pool_free(struct skill_pool *p) {
        if (!p)
                return NULL;
        p->shutting_down = true;
        while (p->head)
                request_fail(p->head, -ESHUTDOWN, "swarmd is shutting down");
        for (unsigned i = 0; p->workers && i < p->n_workers; i++)
                if (p->workers[i].current)
                        request_fail(p->workers[i].current, -ESHUTDOWN, "swarmd is shutting down");
        if (p->workers)
                stop_workers(p);
        free(p->workers);
        free(p->info.name);
        free(p->info.version);
        free(p->info.description);
        swarm_values_free(p->info.advert);
        free(p->last_error);
        free(p->plugin_path);
        free(p->worker_path);
        free(p->log_name);
        sd_event_unref(p->event);
        free(p);
        return NULL;
}

void skill_pool_set_changed_callback(struct skill_pool *p, pool_event_fn fn, void *userdata) {
        p->changed_fn = fn;
        p->changed_userdata = userdata;
}

void skill_pool_set_ready_callback(struct skill_pool *p, pool_event_fn fn, void *userdata) {
        p->ready_fn = fn;
        p->ready_userdata = userdata;
}

const struct skill_info *skill_pool_info(const struct skill_pool *p) {
        return p->ready ? &p->info : NULL;
}

const char *skill_pool_last_error(const struct skill_pool *p) {
        return p->last_error;
}

unsigned skill_pool_workers_alive(const struct skill_pool *p) {
        unsigned n = 0;

        for (unsigned i = 0; i < p->n_workers; i++)
                if (p->workers[i].state == WORKER_IDLE || p->workers[i].state == WORKER_BUSY)
                        n++;
        return n;
}

unsigned skill_pool_workers_busy(const struct skill_pool *p) {
        unsigned n = 0;

        for (unsigned i = 0; i < p->n_workers; i++)
                if (p->workers[i].state == WORKER_BUSY)
                        n++;
        return n;
}

unsigned skill_pool_queued(const struct skill_pool *p) {
        return p->n_queued;
}

unsigned skill_pool_restarts(const struct skill_pool *p) {
        return p->restarts;
}

uint64_t skill_pool_jobs_done(const struct skill_pool *p) {
        return p->jobs_done;
}

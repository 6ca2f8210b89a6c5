/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A pool of long-lived swarm-worker processes for one skill, driven from an
 * sd-event loop: requests (execute, verify, price) queue here and go to the
 * next idle worker.  The pool never blocks the loop on a worker: each one
 * is a non-blocking socket, a child-exit source and timers.
 *
 * Failure handling:
 *   - a worker that dies takes only its current request with it (failed
 *     with -ECONNABORTED and the signal or exit status in the error text);
 *     it is restarted with exponential backoff;
 *   - a request whose deadline passes is cancelled (the worker sees the
 *     flag in its control page), and its worker is killed when it has not
 *     answered kill_grace later;
 *   - a worker whose init() fails is retried with the same backoff; the
 *     error is kept for skill_pool_last_error().
 *
 * SIGCHLD must be blocked in the calling thread (sd-event requires it for
 * child sources). */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "swarm-host.h"

struct cgroup;
struct skill_pool;
struct pool_request;

enum pool_op {
        POOL_EXECUTE,
        POOL_VERIFY,
        POOL_PRICE,
};

struct skill_pool_config {
        const char *name;               /* the configured skill name: logs, cgroup */
        const char *plugin_path;
        const char *worker_path;        /* swarm-worker */
        unsigned workers;               /* ≥ 1 */
        unsigned queue_max;             /* queued (not running) requests; 0 = unlimited */
        uint64_t kill_grace_usec;       /* after a deadline, before SIGKILL */
        uint64_t restart_min_usec;      /* first backoff step */
        uint64_t restart_max_usec;
        const struct swarm_values *skill_config; /* sent to init(); borrowed, must outlive the pool */
        struct cgroup *cgroups;    /* NULL: workers stay in our cgroup; else
                                         * cgroup_add_skill(name) done */
};

/* The skill's self-description, from the first worker's HELLO. */
struct skill_info {
        char *name;
        char *version;
        char *description;
        uint32_t abi_version;
        struct swarm_values *advert;
};

struct pool_result {
        int status;                     /* 0 or negative errno */
        const char *error;              /* NULL when status is 0 */
        /* EXECUTE: the outputs and proof, in shared memory.  The callback may
         * take them (set to NULL); the pool frees what is left. */
        struct swarm_values *outputs;
        struct swarm_values *proof;
        uint64_t price;                 /* PRICE */
        uint64_t queue_usec;            /* submit → sent to a worker */
        uint64_t exec_usec;             /* EXECUTE, VERIFY: time in the skill, measured by the worker */
        uint64_t total_usec;            /* submit → result */
};

typedef void (*pool_done_fn)(struct pool_request *req, struct pool_result *result, void *userdata);
typedef void (*pool_event_fn)(struct skill_pool *pool, void *userdata);
/* A chunk an executing skill emitted (swarm_job_emit()): name and bytes,
 * valid during the call; in order, before the request's done. */
typedef void (*pool_chunk_fn)(struct pool_request *req, const char *name, const void *data, size_t size,
                              void *userdata);

int skill_pool_new(sd_event *event, const struct skill_pool_config *config, struct skill_pool **ret);
/* Stops every worker (SIGTERM, then SIGKILL after a second) and fails the
 * requests still queued or running with -ESHUTDOWN. */
struct skill_pool *skill_pool_free(struct skill_pool *p);

/* Called whenever workers alive or busy, jobs done or the last error may
 * have changed: often (every dispatch and completion), so whoever listens
 * coalesces. */
void skill_pool_set_changed_callback(struct skill_pool *p, pool_event_fn fn, void *userdata);

/* Called once the first worker has said hello (info available). */
void skill_pool_set_ready_callback(struct skill_pool *p, pool_event_fn fn, void *userdata);

const struct skill_info *skill_pool_info(const struct skill_pool *p);   /* NULL until ready */
const char *skill_pool_last_error(const struct skill_pool *p);          /* last init/crash, or NULL */
unsigned skill_pool_workers_alive(const struct skill_pool *p);
unsigned skill_pool_workers_busy(const struct skill_pool *p);
unsigned skill_pool_queued(const struct skill_pool *p);
unsigned skill_pool_restarts(const struct skill_pool *p);
/* Jobs (EXECUTE requests) that completed successfully since the pool started. */
uint64_t skill_pool_jobs_done(const struct skill_pool *p);

/* Gives back what the workers hold (device memory above all: a model, a
 * CUDA context), for the lending switch: every worker between jobs (or
 * still starting) is asked to stop — its socket is closed, so it leaves its
 * loop and runs the skill's fini() — and killed if it has not exited 5 s
 * later; a busy worker is killed at once with kill_busy (its request fails
 * with -EAGAIN, "the provider gave its GPU memory back": a frozen job
 * cannot be asked), else it stops once its job is done.  Released workers
 * are not restarted.  Returns 1 when releasing, 0 when already released,
 * -EBUSY (nothing done) while requests are queued, -ESHUTDOWN.
 *
 * A request submitted to a released pool starts its workers again (as
 * skill_pool_warm()) and waits for them: released pools serve the owner's
 * own requests (local jobs, verification); the swarm's are refused before
 * they get here (provider.c). */
int skill_pool_release(struct skill_pool *p, bool kill_busy);
/* Starts the workers of a released pool again: warming until one is up.
 * 1 when it was released, 0 when not. */
int skill_pool_warm(struct skill_pool *p);
/* Between skill_pool_release() and skill_pool_warm() (or a request). */
bool skill_pool_released(const struct skill_pool *p);
/* Since skill_pool_warm() (or a request woke it), until a worker is up. */
bool skill_pool_warming(const struct skill_pool *p);
/* No worker process exists (all exited). */
bool skill_pool_stopped(const struct skill_pool *p);
/* Called when a released pool's last worker has exited, and when a
 * released pool is woken (skill_pool_warm() or a request). */
void skill_pool_set_state_callback(struct skill_pool *p, pool_event_fn fn, void *userdata);
/* The configured number of workers, and worker i's pid (0 when down): to
 * match the processes NVML lists. */
unsigned skill_pool_workers_max(const struct skill_pool *p);
pid_t skill_pool_worker_pid(const struct skill_pool *p, unsigned i);

/* Queues a request.  inputs (and, for VERIFY, outputs and proof) are
 * borrowed until done is called; deadline_usec is CLOCK_MONOTONIC, 0 for
 * none.  -EBUSY when the queue is full.  done is called exactly once, from
 * the event loop (never from inside this call). */
int skill_pool_submit(struct skill_pool *p, enum pool_op op,
                      const struct swarm_values *inputs,
                      const struct swarm_values *outputs, const struct swarm_values *proof,
                      uint64_t deadline_usec, pool_done_fn done, void *userdata,
                      struct pool_request **ret);

/* Asks for the chunks an EXECUTE request's skill emits (none by default). */
void skill_pool_request_on_chunk(struct pool_request *req, pool_chunk_fn chunk, void *userdata);

/* Cancels a request: done is called with -ECANCELED, before this returns
 * for a queued request, from the event loop once the worker stops for a
 * running one. */
void pool_request_cancel(struct pool_request *req);

/* Test hook: the pid of the worker running req, or 0. */
pid_t pool_request_worker_pid(const struct pool_request *req);

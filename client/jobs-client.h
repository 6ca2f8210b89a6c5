/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The client side of the jobs socket (jobs-socket.h), for swarmctl submit,
 * the tests and the benchmarks: connect, submit any number of jobs, collect
 * their replies in completion order.  Blocking I/O, one connection per
 * client object; not thread-safe. */

#include <stdbool.h>
#include <stdint.h>

#include "swarm-host.h"

struct jobs_client;

struct jobs_submission {
        uint64_t id;                            /* chosen by the caller, unique among its jobs in flight */
        const char *skill;
        const struct swarm_values *inputs;      /* tensors in shared memory (shm_allocate) travel without a copy */
        uint64_t max_price;                     /* micro-credits */
        uint64_t deadline_usec;                 /* relative; 0: the daemon's default */
        bool hedge;
        bool stream;                            /* chunks to jobs_client_on_chunk()'s callback */
        const char *key;                        /* exactly-once: see JOBS_OPTION_KEY; NULL: none */
};

/* A piece of a streamed job's output (see jobs-proto.h): restart says that
 * what was shown of job id so far is void; name is NULL for a bare
 * restart.  Pointers are valid during the callback only. */
struct jobs_chunk {
        uint64_t id;
        uint32_t seq;
        bool restart;
        const char *name;
        const void *data;
        size_t size;
};
typedef void (*jobs_chunk_fn)(const struct jobs_chunk *c, void *userdata);

/* Where the chunks of jobs submitted with stream go while
 * jobs_client_wait() waits; NULL drops them. */
struct jobs_client;
void jobs_client_on_chunk(struct jobs_client *c, jobs_chunk_fn fn, void *userdata);

struct jobs_result {
        uint64_t id;
        int status;                     /* 0: verified; else a negative errno */
        char *error;                    /* why, when status != 0 */
        struct swarm_values *outputs;   /* verified outputs (status 0) */
        char *provider;                 /* node id, "local", or NULL when none ran it */
        uint64_t price;
        unsigned attempts, rerouted, rejected;
        uint64_t latency_usec;
        bool kept;                      /* the kept result of an earlier submission of its key */
        bool unchecked;                 /* accepted without a check (sampled verification) */
};

/* Frees what r holds and zeroes it. */
void jobs_result_done(struct jobs_result *r);

/* -ENOTCONN when nothing listens at path (swarmd not running), other
 * -errno otherwise. */
int jobs_client_connect(const char *path, struct jobs_client **ret);
struct jobs_client *jobs_client_free(struct jobs_client *c);

/* For poll(): readable when a reply is waiting. */
int jobs_client_fd(const struct jobs_client *c);

/* Sends one job (blocks while the socket is full).  Inputs in shared memory
 * (shm_allocate) go as memfds sealed against writing, shrinking and
 * growing: from here on they are read-only in this process too (a write
 * faults), so swarmd reads what it checked.  -E2BIG when the job does not
 * fit a message, -EBUSY when an input's memfd is still mapped writable
 * elsewhere, -ECONNRESET when swarmd went away. */
int jobs_client_submit(struct jobs_client *c, const struct jobs_submission *s);

/* Cancels job id: its reply still comes, with status -ECANCELED (unless
 * it had finished).  0, or -errno of the send. */
int jobs_client_cancel(struct jobs_client *c, uint64_t id);

/* Waits up to timeout_ms (-1: for ever) for the next reply.  0 and *ret
 * filled (jobs_result_done() it); -ETIMEDOUT; -ECONNRESET when swarmd
 * went away; -EBADMSG for a malformed reply. */
int jobs_client_wait(struct jobs_client *c, int timeout_ms, struct jobs_result *ret);

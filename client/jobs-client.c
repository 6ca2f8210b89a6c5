/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "jobs-client.h"
#include "jobs-proto.h"
#include "macro.h"
#include "time-util.h"
#include "worker-proto.h"

struct jobs_client {
        int fd;
        jobs_chunk_fn chunk;
        void *chunk_userdata;
};

void jobs_result_done(struct jobs_result *r) {
        free(r->error);
        free(r->provider);
        swarm_values_free(r->outputs);
        *r = (struct jobs_result) {};
}

int jobs_client_connect(const char *path, struct jobs_client **ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        struct jobs_client *c;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return errno == ENOENT || errno == ECONNREFUSED ? -ENOTCONN : negative_errno();
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fd = TAKE_FD(fd);
        *ret = c;
        return 0;
}

struct jobs_client *jobs_client_free(struct jobs_client *c) {
        if (c) {
                close(c->fd);
                free(c);
        }
        return NULL;
}

int jobs_client_fd(const struct jobs_client *c) {
        return c->fd;
}

int jobs_client_submit(struct jobs_client *c, const struct jobs_submission *s) {
        struct swarm_values *options = swarm_values_new();
        struct wmsg m = {
                .type = JOBS_MSG_SUBMIT,
                .job_id = s->id,
                .number = s->max_price,
        };
        int r;

        if (!options)
                return -ENOMEM;
        r = swarm_values_set_int(options, JOBS_OPTION_DEADLINE_MS,
                                 s->deadline_usec ? (int64_t) ((s->deadline_usec + 999) / 1000) : 0);
        if (r >= 0 && s->hedge)
                r = swarm_values_set_int(options, JOBS_OPTION_HEDGE, 1);
        if (r >= 0 && s->stream)
                r = swarm_values_set_int(options, JOBS_OPTION_STREAM, 1);
        if (r >= 0 && s->key)
                r = swarm_values_set_string(options, JOBS_OPTION_KEY, s->key);
        if (r >= 0) {
                /* wmsg_send only reads; the casts lend, they do not give. */
                m.text[JOBS_TEXT_SKILL] = (char *) s->skill;
                m.values[0] = (struct swarm_values *) s->inputs;
                m.values[1] = options;
                r = wmsg_send(c->fd, &m);
        }
        swarm_values_free(options);
        return r;
}

static uint64_t metric(const struct swarm_values *v, const char *name) {
        int64_t x = 0;

        (void) swarm_values_get_int(v, name, &x);
        return x > 0 ? (uint64_t) x : 0;
}

int jobs_client_cancel(struct jobs_client *c, uint64_t id) {
        struct wmsg m = { .type = JOBS_MSG_CANCEL, .job_id = id };

        return wmsg_send(c->fd, &m);
}

void jobs_client_on_chunk(struct jobs_client *c, jobs_chunk_fn fn, void *userdata) {
        c->chunk = fn;
        c->chunk_userdata = userdata;
}

/* A JOBS_MSG_CHUNK: to the callback. */
static int handle_chunk(struct jobs_client *c, struct wmsg *m) {
        struct jobs_chunk k = {
                .id = m->job_id,
                .seq = (uint32_t) m->number,
                .restart = m->status == 1,
        };
        enum swarm_value_type type;

        if (m->status < 0 || m->status > 1)
                return -EBADMSG;
        if (m->values[0]) {
                if (swarm_values_count(m->values[0]) != 1)
                        return -EBADMSG;
                k.name = swarm_values_name(m->values[0], 0, &type);
                if (type != SWARM_VALUE_BYTES || swarm_values_get_bytes(m->values[0], k.name, &k.data, &k.size) < 0)
                        return -EBADMSG;
        }
        if (c->chunk)
                c->chunk(&k, c->chunk_userdata);
        return 0;
}

int jobs_client_wait(struct jobs_client *c, int timeout_ms, struct jobs_result *ret) {
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        const char *reason = NULL, *provider = NULL;
        uint64_t deadline = timeout_ms >= 0 ? now(CLOCK_MONOTONIC) + (uint64_t) timeout_ms * 1000u : 0;
        struct wmsg m = {};
        int r;

        for (;;) {
                int wait_ms = timeout_ms;

                if (timeout_ms >= 0) {
                        uint64_t t = now(CLOCK_MONOTONIC);

                        wait_ms = t >= deadline ? 0 : (int) ((deadline - t + 999) / 1000);
                }
                do
                        r = poll(&p, 1, wait_ms);
                while (r < 0 && errno == EINTR);
                if (r < 0)
                        return negative_errno();
                if (r == 0)
                        return -ETIMEDOUT;
                r = wmsg_recv(c->fd, &m, &reason);
                if (r < 0)
                        return r;
                if (m.type != JOBS_MSG_CHUNK)
                        break;
                /* Chunks come ahead of their job's reply: on to the
                 * callback, and wait on. */
                r = handle_chunk(c, &m);
                wmsg_done(&m);
                if (r < 0)
                        return r;
        }
        if (m.type != JOBS_MSG_SUBMIT_REPLY) {
                wmsg_done(&m);
                return -EBADMSG;
        }
        *ret = (struct jobs_result) {
                .id = m.job_id,
                .status = m.status > 0 ? -EIO : m.status,
                .error = TAKE_PTR(m.text[JOBS_TEXT_ERROR]),
        };
        if (ret->status == 0)
                ret->outputs = TAKE_PTR(m.values[0]) ?: swarm_values_new();
        if (m.values[1]) {
                if (swarm_values_get_string(m.values[1], JOBS_METRIC_PROVIDER, &provider) >= 0 &&
                    strcmp(provider, "-") != 0)
                        ret->provider = strdup(provider);
                ret->price = metric(m.values[1], JOBS_METRIC_PRICE);
                ret->attempts = (unsigned) metric(m.values[1], JOBS_METRIC_ATTEMPTS);
                ret->rerouted = (unsigned) metric(m.values[1], JOBS_METRIC_REROUTED);
                ret->rejected = (unsigned) metric(m.values[1], JOBS_METRIC_REJECTED);
                ret->latency_usec = metric(m.values[1], JOBS_METRIC_LATENCY_US);
                ret->kept = metric(m.values[1], JOBS_METRIC_KEPT) != 0;
                ret->unchecked = metric(m.values[1], JOBS_METRIC_UNCHECKED) != 0;
        }
        if (ret->status < 0 && !ret->error)
                ret->error = strdup(strerror(-ret->status));
        wmsg_done(&m);
        return 0;
}

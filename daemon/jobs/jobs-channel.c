/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accounts.h"
#include "job-wire.h"
#include "job-send.h"
#include "jobs-channel.h"
#include "log.h"
#include "macro.h"
#include "network.h"
#include "time-util.h"

/* Answers to malformed messages, per second, over all peers: an answer is
 * always well-formed, so two nodes cannot bounce refusals forever, but a
 * peer spraying garbage should not get our CPU spent signing replies. */
#define MALFORMED_REPLIES_PER_SECOND 20u

struct jobs_channel {
        struct network *network;
        jobs_request_handler_fn on_request;
        void *request_userdata;
        jobs_result_handler_fn on_result;
        void *result_userdata;
        jobs_chunk_handler_fn on_chunk;
        void *chunk_userdata;
        struct accounts *accounts;
        uint64_t max_message_size;
        uint64_t reply_window_start;
        unsigned replies_in_window;
};

static bool reply_allowed(struct jobs_channel *c) {
        uint64_t t = now(CLOCK_MONOTONIC);

        if (t - c->reply_window_start >= 1000000u) {
                c->reply_window_start = t;
                c->replies_in_window = 0;
        }
        return c->replies_in_window++ < MALFORMED_REPLIES_PER_SECOND;
}

static void on_job_message(struct network *n, const uint8_t from[WIRE_NODE_ID_SIZE], const uint8_t *data,
                           size_t size, void *userdata) {
        _cleanup_(job_envelope_freep) Swarm__JobEnvelope *e = NULL;
        struct jobs_channel *c = userdata;
        const char *reason = NULL;
        char peer[2 * WIRE_NODE_ID_SIZE + 1];
        int r;

        r = job_decode(data, size, c->max_message_size, &e, &reason);
        if (r < 0) {
                char error[JOB_ERROR_MAX];

                for (size_t i = 0; i < WIRE_NODE_ID_SIZE; i++)
                        snprintf(peer + 2 * i, 3, "%02x", from[i]);
                log_debug("Refusing a malformed job message of %zu bytes from %.12s: %s.", size, peer,
                          reason ?: strerror(-r));
                /* A peer of another version would answer our answer in its
                 * version, and so on: say nothing to it. */
                if (r == -EPROTONOSUPPORT || r == -ENOMEM || !reply_allowed(c))
                        return;
                snprintf(error, sizeof(error), "malformed job message: %s", reason ?: strerror(-r));
                r = job_send_error(n, from, NULL, -EBADMSG, error, c->max_message_size);
                if (r < 0)
                        log_debug_errno(r, "Failed to answer a malformed job message: %m");
                return;
        }

        switch (e->body_case) {
        case SWARM__JOB_ENVELOPE__BODY_REQUEST:
                if (!c->on_request) {
                        r = job_send_error(n, from, e->request->job_id.data, -EOPNOTSUPP,
                                            "this node does not run jobs", c->max_message_size);
                        if (r < 0)
                                log_debug_errno(r, "Failed to refuse a job: %m");
                        return;
                }
                c->on_request(c->request_userdata, from, e->request);
                return;
        case SWARM__JOB_ENVELOPE__BODY_RESULT:
                if (c->on_result)
                        c->on_result(c->result_userdata, from, e->result);
                else
                        log_debug("Dropping a job result: this node has no requester.");
                return;
        case SWARM__JOB_ENVELOPE__BODY_CHUNK:
                if (c->on_chunk)
                        c->on_chunk(c->chunk_userdata, from, e->chunk);
                return;
        case SWARM__JOB_ENVELOPE__BODY_CHEQUE:
                accounts_handle_cheque(c->accounts, from, e->cheque);
                return;
        case SWARM__JOB_ENVELOPE__BODY_OPINIONS:
                accounts_handle_opinions(c->accounts, from, e->opinions);
                return;
        default:
                return;         /* job_decode() admits no other body */
        }
}

int jobs_channel_new(struct network *network, uint64_t max_message_size, struct jobs_channel **ret) {
        struct jobs_channel *c;

        if (!network || !ret || max_message_size == 0)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->network = network;
        c->max_message_size = max_message_size;
        network_set_job_handler(network, on_job_message, c);
        *ret = c;
        return 0;
}

struct jobs_channel *jobs_channel_free(struct jobs_channel *c) {
        if (!c)
                return NULL;
        network_set_job_handler(c->network, NULL, NULL);
        free(c);
        return NULL;
}

void jobs_channel_on_request(struct jobs_channel *c, jobs_request_handler_fn fn, void *userdata) {
        if (!c)
                return;
        c->on_request = fn;
        c->request_userdata = userdata;
}

void jobs_channel_on_result(struct jobs_channel *c, jobs_result_handler_fn fn, void *userdata) {
        if (!c)
                return;
        c->on_result = fn;
        c->result_userdata = userdata;
}

void jobs_channel_on_chunk(struct jobs_channel *c, jobs_chunk_handler_fn fn, void *userdata) {
        if (!c)
                return;
        c->on_chunk = fn;
        c->chunk_userdata = userdata;
}

void jobs_channel_set_accounts(struct jobs_channel *c, struct accounts *accounts) {
        if (c)
                c->accounts = accounts;
}

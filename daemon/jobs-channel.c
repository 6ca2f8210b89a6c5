/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accounts.h"
#include "job-wire.h"
#include "jobs-channel.h"
#include "log.h"
#include "macro.h"
#include "network.h"
#include "provider.h"
#include "requester.h"

/* Answers to malformed messages, per second, over all peers: an answer is
 * always well-formed, so two nodes cannot bounce refusals forever, but a
 * peer spraying garbage should not get our CPU spent signing replies. */
#define MALFORMED_REPLIES_PER_SECOND 20u

struct jobs_channel {
        struct network *network;
        struct provider *provider;
        struct requester *requester;
        struct accounts *accounts;
        uint64_t max_message_size;
        uint64_t reply_window_start;
        unsigned replies_in_window;
};

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

int jobs_pack_result(struct network *network, const Swarm__JobResult *r, uint64_t max_message_size,
                     uint8_t **ret, size_t *ret_size) {
        Swarm__SignedResult signed_result;
        Swarm__JobEnvelope e = SWARM__JOB_ENVELOPE__INIT;
        int k;

        k = job_result_sign(r, network_secret_key(network), &signed_result);
        if (k < 0)
                return k;
        e.body_case = SWARM__JOB_ENVELOPE__BODY_RESULT;
        e.result = &signed_result;
        k = job_encode(&e, max_message_size, ret, ret_size);
        job_signed_result_clear(&signed_result);
        return k;
}

int jobs_send_result(struct network *network, const uint8_t to[WIRE_NODE_ID_SIZE], const Swarm__JobResult *r,
                     uint64_t max_message_size) {
        _cleanup_free_ uint8_t *data = NULL;
        size_t size;
        int k;

        k = jobs_pack_result(network, r, max_message_size, &data, &size);
        if (k < 0)
                return k;
        return network_send_job(network, to, data, size);
}

int jobs_send_error(struct network *network, const uint8_t to[WIRE_NODE_ID_SIZE], const uint8_t *job_id,
                    int status, const char *error, uint64_t max_message_size) {
        Swarm__JobResult r = SWARM__JOB_RESULT__INIT;

        if (job_id)
                r.job_id = (ProtobufCBinaryData) { .len = JOB_ID_SIZE, .data = (uint8_t *) job_id };
        r.requester = (ProtobufCBinaryData) { .len = WIRE_NODE_ID_SIZE, .data = (uint8_t *) to };
        r.status = status < 0 ? status : -EIO;
        r.error = (char *) (error ?: "");
        return jobs_send_result(network, to, &r, max_message_size);
}

static bool reply_allowed(struct jobs_channel *c) {
        uint64_t now = now_usec();

        if (now - c->reply_window_start >= 1000000u) {
                c->reply_window_start = now;
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
                r = jobs_send_error(n, from, NULL, -EBADMSG, error, c->max_message_size);
                if (r < 0)
                        log_debug_errno(r, "Failed to answer a malformed job message: %m");
                return;
        }

        switch (e->body_case) {
        case SWARM__JOB_ENVELOPE__BODY_REQUEST:
                if (!c->provider) {
                        r = jobs_send_error(n, from, e->request->job_id.data, -EOPNOTSUPP,
                                            "this node does not run jobs", c->max_message_size);
                        if (r < 0)
                                log_debug_errno(r, "Failed to refuse a job: %m");
                        return;
                }
                provider_handle_request(c->provider, from, e->request);
                return;
        case SWARM__JOB_ENVELOPE__BODY_RESULT:
                if (c->requester)
                        requester_handle_result(c->requester, from, e->result);
                else
                        log_debug("Dropping a job result: this node has no requester.");
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

void jobs_channel_set_provider(struct jobs_channel *c, struct provider *provider) {
        if (c)
                c->provider = provider;
}

void jobs_channel_set_requester(struct jobs_channel *c, struct requester *requester) {
        if (c)
                c->requester = requester;
}

void jobs_channel_set_accounts(struct jobs_channel *c, struct accounts *accounts) {
        if (c)
                c->accounts = accounts;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The provider side of the jobs channel: takes JobRequests from peers,
 * admits them (the skill is hosted, this node lends, the price is within
 * the requester's max, the queue has room, the deadline is plausible),
 * runs them in the skill's worker pool under the requester's deadline, and
 * answers with a signed JobResult — a refusal included, with a readable
 * error.  A provider never runs a job after its deadline (the pool cancels
 * and kills).
 *
 * testing.corrupt_results makes it lie (one output element changed after
 * the job ran): a fault-injection switch for tests and the demo, loud in
 * the log. */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "swarm.pb-c.h"

struct accounts;
struct demand;
struct jobs_channel;
struct provider;
struct network;
struct skills;
struct lending;

struct provider_job_event {
        const char *job;                /* hex job id */
        const char *skill;
        const char *requester;          /* node id */
        int status;                     /* JobFinished: 0 or negative errno */
        uint64_t price;
        uint64_t exec_usec;
};

typedef void (*provider_event_fn)(const struct provider_job_event *e, bool finished, void *userdata);

/* lending may be NULL (always lends). */
int provider_new(sd_event *event, struct network *network, struct skills *skills, struct lending *lending,
                 uint64_t max_message_size, bool corrupt_results, struct provider **ret);
/* The goodbye: every job in flight is answered -ESHUTDOWN (signed, sent)
 * and cancelled.  Call it while the network and the pools still exist. */
void provider_stop(struct provider *p);
/* Frees, without a word to anyone: jobs still held are cancelled silently. */
struct provider *provider_free(struct provider *p);

/* Takes jobs only from these requesters (node ids as swarmd
 * --show-identity prints them); NULL or empty: from anyone.  -EINVAL for a
 * malformed id. */
/* testing.corrupt_stream: stream other chunks than the signed result's
 * stream_digest vouches for (fault injection). */
void provider_set_corrupt_stream(struct provider *p, bool corrupt);

int provider_set_allowed_requesters(struct provider *p, char *const *ids);

/* Refuses requesters whose unpaid debt passes ledger.debt_limit (-EDQUOT,
 * "unpaid debt …"), records every delivered job in the ledger, and prices
 * by the skill's demand multiplier.  Either may be NULL: no charge
 * recorded and no limit; base prices.  Borrowed: they must outlive the
 * provider or be unset. */
void provider_set_accounts(struct provider *p, struct accounts *accounts, struct demand *demand);

/* JobStarted/JobFinished for D-Bus. */
void provider_set_event_callback(struct provider *p, provider_event_fn fn, void *userdata);

/* The jobs channel hands JobRequests here, once provider_attach()ed; NULL
 * p detaches whatever provider the channel had. */
void provider_handle_request(struct provider *p, const uint8_t from[32], Swarm__JobRequest *req);
void provider_attach(struct provider *p, struct jobs_channel *channel);

unsigned provider_active_jobs(const struct provider *p);

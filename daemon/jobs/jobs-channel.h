/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The network's jobs channel: every message a peer sends on it is decoded
 * here (job_decode(), within network.max_message_size) and handed to the
 * module that owns its kind — a JobRequest to the provider, a SignedResult
 * to the requester (each registers its handler: provider_attach(),
 * requester_attach()), a SignedCheque or an OpinionBatch to the accounts.
 * Dispatch only: it never calls back into the roles beyond their handlers.
 * A message that does not decode is answered with a
 * signed JobResult of status -EBADMSG whose error says what was wrong (and
 * whose job_id is empty: nothing in it was trusted); the daemon carries
 * on.  A request reaching a node without a provider is answered with
 * -EOPNOTSUPP, "this node does not run jobs".
 *
 * Results and refusals are signed and sent by job-send.h. */

#include <stddef.h>
#include <stdint.h>

#include "swarm.pb-c.h"
#include "wire.h"

struct accounts;
struct jobs_channel;
struct network;

/* Borrowed by the handler for the call only. */
typedef void (*jobs_request_handler_fn)(void *userdata, const uint8_t from[WIRE_NODE_ID_SIZE],
                                        Swarm__JobRequest *request);
typedef void (*jobs_result_handler_fn)(void *userdata, const uint8_t from[WIRE_NODE_ID_SIZE],
                                       const Swarm__SignedResult *result);
typedef void (*jobs_chunk_handler_fn)(void *userdata, const uint8_t from[WIRE_NODE_ID_SIZE],
                                      const Swarm__JobChunk *chunk);

/* Installs itself as network's job handler (network_set_job_handler()).
 * The network must outlive the channel. */
int jobs_channel_new(struct network *network, uint64_t max_message_size, struct jobs_channel **ret);
/* Uninstalls the handler. */
struct jobs_channel *jobs_channel_free(struct jobs_channel *c);

/* The handler of requests (the provider's) and of results (the
 * requester's).  NULL unsets (requests are refused, results dropped);
 * userdata must outlive the channel or be unset first. */
void jobs_channel_on_request(struct jobs_channel *c, jobs_request_handler_fn fn, void *userdata);
void jobs_channel_on_result(struct jobs_channel *c, jobs_result_handler_fn fn, void *userdata);
/* Streamed chunks of running jobs (the requester's); NULL drops them. */
void jobs_channel_on_chunk(struct jobs_channel *c, jobs_chunk_handler_fn fn, void *userdata);
/* Cheques and opinions go here; NULL drops them. */
void jobs_channel_set_accounts(struct jobs_channel *c, struct accounts *accounts);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The network's jobs channel: every message a peer sends on it is decoded
 * here (job_decode(), within network.max_message_size) and handed to the
 * module that owns its kind — a JobRequest to the provider, a SignedResult
 * to the requester, a SignedCheque or an OpinionBatch to the accounts.  A message that does not decode is answered with a
 * signed JobResult of status -EBADMSG whose error says what was wrong (and
 * whose job_id is empty: nothing in it was trusted); the daemon carries
 * on.  A request reaching a node without a provider is answered with
 * -EOPNOTSUPP, "this node does not run jobs".
 *
 * Also the one place that signs, wraps and sends a JobResult, for the
 * provider and for the refusals above. */

#include <stddef.h>
#include <stdint.h>

#include "swarm.pb-c.h"
#include "wire.h"

struct accounts;
struct jobs_channel;
struct network;
struct provider;
struct requester;

/* Installs itself as network's job handler (network_set_job_handler()).
 * The network must outlive the channel. */
int jobs_channel_new(struct network *network, uint64_t max_message_size, struct jobs_channel **ret);
/* Uninstalls the handler. */
struct jobs_channel *jobs_channel_free(struct jobs_channel *c);

/* Either may be NULL (requests refused / results dropped); borrowed, they
 * must outlive the channel or be unset first. */
void jobs_channel_set_provider(struct jobs_channel *c, struct provider *provider);
void jobs_channel_set_requester(struct jobs_channel *c, struct requester *requester);
/* Cheques and opinions go here; NULL drops them. */
void jobs_channel_set_accounts(struct jobs_channel *c, struct accounts *accounts);

/* Signs r with this node's key (network_secret_key()), wraps it in a
 * JobEnvelope within max_message_size and sends it to `to`.  -EINVAL when
 * r breaks a rule of job_result_check(), -EMSGSIZE when it is too big. */
int jobs_send_result(struct network *network, const uint8_t to[WIRE_NODE_ID_SIZE], const Swarm__JobResult *r,
                     uint64_t max_message_size);

/* The signing and encoding of jobs_send_result() alone: the envelope
 * (malloc'd) to hand to network_send_job(). */
int jobs_pack_result(struct network *network, const Swarm__JobResult *r, uint64_t max_message_size,
                     uint8_t **ret, size_t *ret_size);

/* A refusal: a JobResult with status (negative errno), a one-line error
 * and nothing else.  job_id may be NULL (sent empty). */
int jobs_send_error(struct network *network, const uint8_t to[WIRE_NODE_ID_SIZE], const uint8_t *job_id,
                    int status, const char *error, uint64_t max_message_size);

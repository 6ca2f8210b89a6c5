/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The one place that signs, wraps and sends a JobResult: for the provider's
 * results and for every refusal (the jobs channel's included). */

#include <stddef.h>
#include <stdint.h>

#include "swarm.pb-c.h"
#include "wire.h"

struct network;

/* Signs r with this node's key (network_secret_key()), wraps it in a
 * JobEnvelope within max_message_size and sends it to `to`.  -EINVAL when
 * r breaks a rule of job_result_check(), -EMSGSIZE when it is too big. */
int job_send_result(struct network *network, const uint8_t to[WIRE_NODE_ID_SIZE], const Swarm__JobResult *r,
                     uint64_t max_message_size);

/* The signing and encoding of job_send_result() alone: the envelope
 * (malloc'd) to hand to network_send_job(). */
int job_send_pack_result(struct network *network, const Swarm__JobResult *r, uint64_t max_message_size,
                     uint8_t **ret, size_t *ret_size);

/* A refusal: a JobResult with status (negative errno), a one-line error
 * and nothing else.  job_id may be NULL (sent empty). */
int job_send_error(struct network *network, const uint8_t to[WIRE_NODE_ID_SIZE], const uint8_t *job_id,
                    int status, const char *error, uint64_t max_message_size);

/* A JobChunk of a running job, unsigned (the final result's stream_digest
 * covers it). */
int job_send_chunk(struct network *network, const uint8_t to[WIRE_NODE_ID_SIZE], const uint8_t *job_id, uint32_t seq,
                   const char *name, const void *data, size_t size, uint64_t max_message_size);

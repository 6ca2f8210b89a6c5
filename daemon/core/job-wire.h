/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The jobs channel's messages (proto/swarm.proto: JobEnvelope with a
 * JobRequest or a SignedResult), encoded and decoded with the same care as
 * the membership envelopes (daemon/core/wire.h): size checked first, an
 * allocation budget while unpacking, every field validated before use.
 * Jobs are bigger than membership messages, so the size limit is the
 * caller's (network.max_message_size).
 *
 * Values travel as JobValue: a named tensor (dtype, shape, raw bytes that
 * must be exactly n_elements × dtype size), string, integer or bytes —
 * the same four kinds as the skill SDK's swarm_values, converted with
 * job_values_to_wire() / job_values_from_wire().
 *
 * A result is signed by the provider over its exact encoded JobResult
 * bytes; the requester verifies it against the provider's node id (also
 * the transport-authenticated sender) before using anything in it. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sodium.h>

#include "skill-name.h"
#include "swarm-host.h"
#include "swarm.pb-c.h"
#include "wire.h"

#define JOB_ID_SIZE 16
#define JOB_VALUES_MAX 64u
#define JOB_SKILL_NAME_MAX SKILL_NAME_MAX
#define JOB_TEXT_MAX (1024u * 1024u)    /* a JobValue text (prompts), bytes of UTF-8 */
#define JOB_ERROR_MAX 1024u             /* JobResult.error */
#define JOB_STRING_MAX 256u             /* JobResult.device */
#define JOB_DEADLINE_MAX_MS (24ull * 3600 * 1000) /* longer budgets are refused */

/* What protobuf-c may allocate while unpacking size bytes of a job message
 * or result body.  Bytes fields are copied once, so a valid message needs
 * its size plus a few hundred bytes per value (at most JOB_VALUES_MAX of
 * them in each list); a message made of many tiny fields runs out of it. */
#define JOB_DECODE_BUDGET(size) ((size_t) (size) + (size_t) (size) / 2 + 256u * 1024u)

/* 0 and a decoded envelope (free with job_envelope_free()); -EMSGSIZE over
 * max_size; -EPROTONOSUPPORT for another version; -EBADMSG with *reason. */
int job_decode(const uint8_t *data, size_t size, size_t max_size, Swarm__JobEnvelope **ret, const char **reason);
void job_envelope_free(Swarm__JobEnvelope *e);
static inline void job_envelope_freep(Swarm__JobEnvelope **e) {
        job_envelope_free(*e);
}

/* Encodes e (version set) into a malloc'd buffer; -EMSGSIZE over max_size. */
int job_encode(Swarm__JobEnvelope *e, size_t max_size, uint8_t **ret, size_t *ret_size);

/* Signs r with the provider's Ed25519 secret key into out (body and
 * signature malloc'd; free with wire_signed_record_clear-like
 * job_signed_result_clear()). */
int job_result_sign(const Swarm__JobResult *r, const uint8_t sk[64], Swarm__SignedResult *out);
void job_signed_result_clear(Swarm__SignedResult *s);

/* Verifies s against provider (32 bytes) and decodes its body within
 * max_size: 0 and the result (free with job_result_free()); -EKEYREJECTED
 * for a bad signature; -EBADMSG with *reason. */
int job_result_open(const Swarm__SignedResult *s, const uint8_t provider[WIRE_NODE_ID_SIZE], size_t max_size,
                    Swarm__JobResult **ret, const char **reason);
void job_result_free(Swarm__JobResult *r);
static inline void job_result_freep(Swarm__JobResult **r) {
        job_result_free(*r);
}

/* The checks job_decode() and job_result_open() apply, for messages built
 * in memory (0 or -EBADMSG with *reason). */
int job_request_check(const Swarm__JobRequest *q, const char **reason);
int job_result_check(const Swarm__JobResult *r, const char **reason);
int job_chunk_check(const Swarm__JobChunk *c, const char **reason);

/* JobResult.stream_digest: what binds the streamed chunks to the signed
 * result (see proto/swarm.proto), computed alike on both ends. */
#define JOB_STREAM_DIGEST_SIZE 32
#define JOB_CHUNK_MAX 4096u             /* SWARM_JOB_CHUNK_MAX */
struct job_stream_digest {
        crypto_generichash_state state;
        uint32_t chunks;
};
void job_stream_digest_init(struct job_stream_digest *d);
void job_stream_digest_add(struct job_stream_digest *d, const char *name, const void *data, size_t size);
void job_stream_digest_final(struct job_stream_digest *d, uint8_t out[JOB_STREAM_DIGEST_SIZE]);

/* swarm_values → JobValue array (deep copies; free with
 * job_values_free_wire()). */
int job_values_to_wire(const struct swarm_values *v, Swarm__JobValue ***ret, size_t *ret_n);
void job_values_free_wire(Swarm__JobValue **values, size_t n);

/* Byte strings longer than this go through the allocator too (the worker
 * protocol sends shorter ones inline). */
#define JOB_BYTES_SHARED_MIN 4096u

/* JobValue array → a new swarm_values.  With allocate (the host passes
 * shm_allocate, so they are ready for a worker), its tensors and byte strings
 * longer than JOB_BYTES_SHARED_MIN live in memory from allocate; NULL keeps
 * them on the heap.  -EBADMSG with *reason for a tensor whose bytes do not
 * match its shape, an invalid name or dtype, a duplicate. */
int job_values_from_wire(Swarm__JobValue *const *values, size_t n, swarm_values_allocator_fn allocate,
                         struct swarm_values **ret, const char **reason);

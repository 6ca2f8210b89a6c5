/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The wire codec: proto/swarm.proto envelopes in and out, with every limit
 * checked before anything is allocated, and signed node records made and
 * opened.  Pure functions: no I/O, no clock, no global state, so the
 * daemon, the tests, the fuzz targets and the simulator share them.
 *
 * Decoding never trusts a length field: the datagram size is checked
 * first, protobuf-c unpacks with an allocator that refuses to go over a
 * budget proportional to that size, and then every repeated field, bytes
 * and string is checked against the limits below before the caller sees
 * it. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "swarm.pb-c.h"

#define WIRE_VERSION 1

#define WIRE_NODE_ID_SIZE 32            /* Ed25519 public key */
#define WIRE_BOOT_ID_SIZE 16            /* NodeRecord.boot_id: random per start */
#define WIRE_SIGNATURE_SIZE 64          /* Ed25519 signature */

#define WIRE_MESSAGE_MAX (256u * 1024u)         /* one envelope, encoded */
#define WIRE_RECORD_MAX (8u * 1024u)            /* one encoded NodeRecord */
#define WIRE_RUMORS_MAX 64u                     /* per Gossip */
#define WIRE_RECORDS_MAX 64u                    /* per Gossip or PushPull */
#define WIRE_DIGESTS_MAX 1024u                  /* per PushPull */
#define WIRE_ENDPOINTS_MAX 8u                   /* per NodeRecord */
#define WIRE_SKILLS_MAX 64u                     /* per NodeRecord */
#define WIRE_RELAYS_MAX 4u                      /* per NodeRecord */
#define WIRE_STRING_MAX 256u                    /* any string field */
#define WIRE_UNKNOWN_FIELDS_MAX 8u              /* per message: fields of newer versions */
#define WIRE_SKILL_NAME_MAX 63u                 /* SkillOffer.name, as the skill loader's */

/* What protobuf-c may allocate while unpacking size bytes (an envelope or
 * a record body): every allocation past it fails, and so does the decode.
 * Far above what any valid message needs (a few times its size), and
 * still bounded for a datagram made only of tiny fields. */
#define WIRE_DECODE_BUDGET(size) (32u * (size_t) (size) + 16u * 1024u)

/* Decodes one envelope.  0 and a message to free with wire_envelope_free();
 * -EMSGSIZE for a datagram over WIRE_MESSAGE_MAX, -EPROTONOSUPPORT for
 * another WIRE_VERSION, -EBADMSG for anything malformed or over a limit,
 * with what was wrong in *reason (static text: "rumor node_id is not 32
 * bytes"), -ENOMEM.
 *
 * What a decoded envelope guarantees (checked in one place, here):
 *   - exactly one body is set (a body of a type this build does not know
 *     arrives as an unknown field and is refused: "unknown message type");
 *   - ping.on_behalf_of and ack.target are empty or 32 bytes (empty: a
 *     direct probe / the answerer itself); ping_req.target is 32 bytes;
 *   - gossip may be NULL (nothing piggybacked); at most WIRE_RUMORS_MAX
 *     rumors, each with a 32-byte node_id and a known MemberState, and at
 *     most WIRE_RECORDS_MAX records;
 *   - push_pull.sender is set; at most WIRE_DIGESTS_MAX digests with
 *     32-byte node_ids and WIRE_RECORDS_MAX records;
 *   - every SignedRecord has a body of 1..WIRE_RECORD_MAX bytes and a
 *     64-byte signature.  Its body is not decoded nor verified here: that
 *     is wire_record_open()'s job, before anything uses it;
 *   - unknown fields (from a newer peer) are tolerated and kept, within
 *     the size and allocation limits; field number 0 is refused. */
int wire_decode(const uint8_t *data, size_t size, Swarm__Envelope **ret, const char **reason);
/* The same, and says in *ret_allocated how many bytes protobuf-c asked
 * for while unpacking (never over WIRE_DECODE_BUDGET(size)), for tests
 * and fuzzers. */
int wire_decode_counted(const uint8_t *data, size_t size, Swarm__Envelope **ret, const char **reason,
                        size_t *ret_allocated);
void wire_envelope_free(Swarm__Envelope *e);
static inline void wire_envelope_freep(Swarm__Envelope **e) {
        wire_envelope_free(*e);
}

/* Encodes e (version is set to WIRE_VERSION) into a malloc'd buffer.
 * -EMSGSIZE when it would exceed WIRE_MESSAGE_MAX; -EINVAL when e breaks
 * one of the rules wire_decode() checks (so that a peer would refuse it). */
int wire_encode(Swarm__Envelope *e, uint8_t **ret, size_t *ret_size);

/* Checks a node record against the rules wire_record_open() applies:
 * node_id of 32 bytes; at most WIRE_ENDPOINTS_MAX endpoints, each a
 * "tcp://", "ipc://" or "inproc://" address; at most WIRE_SKILLS_MAX
 * skills, each named by 1-63 characters of [a-z0-9_.-]; every string
 * valid UTF-8 of at most WIRE_STRING_MAX bytes.  0 or -EBADMSG with
 * *reason. */
int wire_record_check(const Swarm__NodeRecord *r, const char **reason);

/* Signs r with the Ed25519 secret key sk (libsodium's 64-byte form) into
 * out: body is the exact encoding of r, signature covers it.  out->body
 * and out->signature are malloc'd; free with wire_signed_record_clear().
 * -EINVAL when r fails wire_record_check() or its node_id is not sk's
 * public half; -EMSGSIZE when r encodes to more than WIRE_RECORD_MAX.
 * Like wire_record_open(), needs sodium_init() to have been called. */
int wire_record_sign(const Swarm__NodeRecord *r, const uint8_t sk[64], Swarm__SignedRecord *out);
void wire_signed_record_clear(Swarm__SignedRecord *s);

/* Opens a signed record: decodes the body within WIRE_RECORD_MAX and the
 * record limits, then verifies the signature against the body's own
 * node_id (a record is self-certifying).  With verify == NULL libsodium's
 * Ed25519 is used; the simulator passes a cheap stand-in.  0 and the
 * decoded record (free with wire_record_free()); -EBADMSG (malformed,
 * including a body that fails wire_record_check()) or -EKEYREJECTED (bad
 * signature: verify returned anything but 0) with *reason; -ENOMEM.  The
 * signature covers the body bytes as received, never a re-encoding.
 * (protobuf-c cuts a string at an embedded NUL: the decoded record may
 * show less than was signed, never something else.) */
typedef int (*wire_verify_fn)(const uint8_t *sig, const uint8_t *body, size_t size,
                              const uint8_t node_id[WIRE_NODE_ID_SIZE], void *userdata);
int wire_record_open(const Swarm__SignedRecord *s, wire_verify_fn verify, void *userdata,
                     Swarm__NodeRecord **ret, const char **reason);
void wire_record_free(Swarm__NodeRecord *r);
static inline void wire_record_freep(Swarm__NodeRecord **r) {
        wire_record_free(*r);
}

/* Deep-copies a signed record's bytes (for storing one taken from a
 * message that is about to be freed).  *to is overwritten, not freed
 * first; release it with wire_signed_record_clear().  0 or -ENOMEM (with
 * *to left empty). */
int wire_signed_record_copy(const Swarm__SignedRecord *from, Swarm__SignedRecord *to);

/* The encoded size of e as wire_encode() would make it (version set),
 * without encoding it (for byte accounting). */
size_t wire_encoded_size(const Swarm__Envelope *e);

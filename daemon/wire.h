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
#define WIRE_SIGNATURE_SIZE 64          /* Ed25519 signature */

#define WIRE_MESSAGE_MAX (256u * 1024u)         /* one envelope, encoded */
#define WIRE_RECORD_MAX (8u * 1024u)            /* one encoded NodeRecord */
#define WIRE_RUMORS_MAX 64u                     /* per Gossip */
#define WIRE_RECORDS_MAX 64u                    /* per Gossip or PushPull */
#define WIRE_DIGESTS_MAX 1024u                  /* per PushPull */
#define WIRE_ENDPOINTS_MAX 8u                   /* per NodeRecord */
#define WIRE_SKILLS_MAX 64u                     /* per NodeRecord */
#define WIRE_STRING_MAX 256u                    /* any string field */

/* Decodes one envelope.  0 and a message to free with wire_envelope_free();
 * -EMSGSIZE for a datagram over WIRE_MESSAGE_MAX, -EPROTONOSUPPORT for
 * another WIRE_VERSION, -EBADMSG for anything malformed or over a limit,
 * with what was wrong in *reason (static text: "rumor node_id is not 32
 * bytes"). */
int wire_decode(const uint8_t *data, size_t size, Swarm__Envelope **ret, const char **reason);
void wire_envelope_free(Swarm__Envelope *e);

/* Encodes e (version is set to WIRE_VERSION) into a malloc'd buffer.
 * -EMSGSIZE when it would exceed WIRE_MESSAGE_MAX. */
int wire_encode(Swarm__Envelope *e, uint8_t **ret, size_t *ret_size);

/* Signs r with the Ed25519 secret key sk (libsodium's 64-byte form) into
 * out: body is the exact encoding of r, signature covers it.  out->body
 * and out->signature are malloc'd; free with wire_signed_record_clear(). */
int wire_record_sign(const Swarm__NodeRecord *r, const uint8_t sk[64], Swarm__SignedRecord *out);
void wire_signed_record_clear(Swarm__SignedRecord *s);

/* Opens a signed record: decodes the body within WIRE_RECORD_MAX and the
 * record limits, then verifies the signature against the body's own
 * node_id (a record is self-certifying).  With verify == NULL libsodium's
 * Ed25519 is used; the simulator passes a cheap stand-in.  0 and the
 * decoded record (free with wire_record_free()); -EBADMSG (malformed) or
 * -EKEYREJECTED (bad signature) with *reason. */
typedef int (*wire_verify_fn)(const uint8_t *sig, const uint8_t *body, size_t size,
                              const uint8_t node_id[WIRE_NODE_ID_SIZE], void *userdata);
int wire_record_open(const Swarm__SignedRecord *s, wire_verify_fn verify, void *userdata,
                     Swarm__NodeRecord **ret, const char **reason);
void wire_record_free(Swarm__NodeRecord *r);

/* Deep-copies a signed record's bytes (for storing one taken from a
 * message that is about to be freed). */
int wire_signed_record_copy(const Swarm__SignedRecord *from, Swarm__SignedRecord *to);

/* The encoded size of e, without encoding it (for byte accounting). */
size_t wire_encoded_size(const Swarm__Envelope *e);

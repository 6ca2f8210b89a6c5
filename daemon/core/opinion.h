/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Signed opinions (proto/swarm.proto: Opinion, SignedOpinion): the codec
 * between reputation.h's entries and the wire.  Pure: no clock, no I/O.
 * An opinion is signed by its issuer over its exact encoded bytes, so it
 * can be relayed by anyone and forged by no one. */

#include <stddef.h>
#include <stdint.h>

#include "reputation.h"
#include "swarm.pb-c.h"

#define OPINION_MAX_ENTRIES 256
#define OPINION_MAX_SIZE (64u * 1024u)  /* an encoded SignedOpinion */
#define OPINION_BATCH_MAX 16            /* SignedOpinions in one OpinionBatch */

/* Encodes and signs (issuer's Ed25519 secret key sk, whose public half is
 * issuer) into out (body and signature malloc'd; cheque-like clear). */
int opinion_sign(const uint8_t issuer[32], uint64_t version, uint64_t issued_at,
                 const struct reputation_opinion_entry *entries, size_t n, const uint8_t sk[64],
                 Swarm__SignedOpinion *out);
void opinion_signed_clear(Swarm__SignedOpinion *s);

/* Verifies s against the issuer named inside and decodes it: 0 with
 * *issuer, *version and a malloc'd entries array; -EBADMSG (with *reason:
 * malformed, too many entries, an id not 32 bytes, a skill name not
 * [a-z0-9_.-]{1,63}, a count not finite or negative) or -EKEYREJECTED. */
int opinion_open(const Swarm__SignedOpinion *s, uint8_t issuer[32], uint64_t *version,
                 struct reputation_opinion_entry **entries, size_t *n, const char **reason);

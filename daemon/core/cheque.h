/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Cumulative payment cheques (proto/swarm.proto: Cheque, SignedCheque):
 * signing, opening and the rules a payee applies.  Pure: no clock, no I/O.
 *
 * A cheque says "payer has paid payee `amount` micro-credits in all"; the
 * payee keeps the highest it has seen.  Rules, in the order checked by
 * cheque_open(): the encoding is valid and within CHEQUE_MAX_SIZE, the
 * signature verifies against the payer named inside, the payee is us; and,
 * against what the payee holds, cheque_compare(): a higher amount replaces
 * it, the same amount is a harmless duplicate (a resend), a lower one goes
 * backwards and is refused. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "swarm.pb-c.h"

#define CHEQUE_ID_SIZE 32       /* node ids: Ed25519 public keys */
#define CHEQUE_JOB_SIZE 16
#define CHEQUE_MAX_SIZE 512     /* an encoded SignedCheque is ~200 bytes */

struct cheque {
        uint8_t payer[CHEQUE_ID_SIZE];
        uint8_t payee[CHEQUE_ID_SIZE];
        uint64_t amount;                /* cumulative micro-credits */
        uint8_t last_job[CHEQUE_JOB_SIZE];
        bool has_last_job;
        uint64_t issued_at;             /* µs since the epoch */
};

/* Encodes and signs c with the payer's Ed25519 secret key (whose public
 * half must be c->payer: -EINVAL otherwise) into a malloc'd encoded
 * SignedCheque. */
int cheque_sign(const struct cheque *c, const uint8_t payer_sk[64], uint8_t **ret, size_t *ret_size);

/* The same into a SignedCheque whose body and signature are malloc'd (for
 * a JobEnvelope); free with cheque_signed_clear(). */
int cheque_sign_message(const struct cheque *c, const uint8_t payer_sk[64], Swarm__SignedCheque *out);
void cheque_signed_clear(Swarm__SignedCheque *s);

/* Checks a received SignedCheque and decodes it into *ret.  self is the
 * payee we expect.  0; -EBADMSG (malformed, with *reason); -EKEYREJECTED
 * (bad signature); -EXDEV (made out to another payee).  *reason is always
 * set on failure, a static string. */
int cheque_open(const Swarm__SignedCheque *s, const uint8_t self[CHEQUE_ID_SIZE], struct cheque *ret,
                const char **reason);

/* The same from the encoded SignedCheque bytes (as stored in the ledger). */
int cheque_open_bytes(const uint8_t *data, size_t size, const uint8_t self[CHEQUE_ID_SIZE], struct cheque *ret,
                      const char **reason);

/* Against the amount the payee holds from this payer (0 when none):
 * 1 when amount is higher (keep the new cheque), 0 when equal (duplicate),
 * -ERANGE when lower (goes backwards: refused). */
int cheque_compare(uint64_t held, uint64_t amount);

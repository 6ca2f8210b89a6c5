/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Cumulative cheques (cheque.h).  The discipline of job-wire.c: the size
 * first, then a budgeted unpack, every field checked in one place before
 * anything reads it, and the signature over the exact bytes received.
 * Nothing here logs: callers say what a refusal means, with *reason. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cheque.h"
#include "macro.h"
#include "pb-util.h"

/* A SignedCheque is at most CHEQUE_MAX_SIZE bytes: its decoded structs,
 * the copies of its bytes fields and a few unknown fields of a newer
 * version fit well within this, whatever the input. */
#define CHEQUE_DECODE_BUDGET (16u * 1024u)
#define CHEQUE_UNKNOWN_FIELDS_MAX 8u

static void cheque_msg_freep(Swarm__Cheque **c) {
        if (*c)
                pb_free_unpacked(&(*c)->base);
}

static void signed_cheque_msg_freep(Swarm__SignedCheque **s) {
        if (*s)
                pb_free_unpacked(&(*s)->base);
}

/* The wire form of c; points into c, so c must outlive it. */
static void cheque_to_msg(const struct cheque *c, Swarm__Cheque *m) {
        swarm__cheque__init(m);
        m->payer = (ProtobufCBinaryData) { .len = CHEQUE_ID_SIZE, .data = (uint8_t *) c->payer };
        m->payee = (ProtobufCBinaryData) { .len = CHEQUE_ID_SIZE, .data = (uint8_t *) c->payee };
        m->amount = c->amount;
        if (c->has_last_job)
                m->last_job = (ProtobufCBinaryData) { .len = CHEQUE_JOB_SIZE, .data = (uint8_t *) c->last_job };
        m->issued_at = c->issued_at;
}

int cheque_sign_message(const struct cheque *c, const uint8_t payer_sk[64], Swarm__SignedCheque *out) {
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];
        Swarm__Cheque m;

        if (!out)
                return -EINVAL;
        swarm__signed_cheque__init(out);
        if (!c || !payer_sk)
                return -EINVAL;

        /* A cheque signed by anyone but the payer it names would be
         * refused by every payee: catch the mix-up here, where it is a bug. */
        if (crypto_sign_ed25519_sk_to_pk(pk, payer_sk) != 0 ||
            sodium_memcmp(pk, c->payer, sizeof(pk)) != 0)
                return -EINVAL;

        cheque_to_msg(c, &m);
        return pb_pack_signed(&m.base, CHEQUE_MAX_SIZE, payer_sk, &out->body, &out->signature);
}

void cheque_signed_clear(Swarm__SignedCheque *s) {
        if (!s)
                return;
        free(s->body.data);
        free(s->signature.data);
        swarm__signed_cheque__init(s);
}

int cheque_sign(const struct cheque *c, const uint8_t payer_sk[64], uint8_t **ret, size_t *ret_size) {
        _cleanup_(cheque_signed_clear) Swarm__SignedCheque s = SWARM__SIGNED_CHEQUE__INIT;
        int r;

        if (!ret || !ret_size)
                return -EINVAL;

        r = cheque_sign_message(c, payer_sk, &s);
        if (r < 0)
                return r;

        return pb_pack_alloc(&s.base, CHEQUE_MAX_SIZE, ret, ret_size);
}

static int cheque_msg_check(const Swarm__Cheque *m, const char **reason) {
        if (m->payer.len != CHEQUE_ID_SIZE) {
                *reason = "cheque payer is not 32 bytes";
                return -EBADMSG;
        }
        if (m->payee.len != CHEQUE_ID_SIZE) {
                *reason = "cheque payee is not 32 bytes";
                return -EBADMSG;
        }
        if (m->last_job.len != 0 && m->last_job.len != CHEQUE_JOB_SIZE) {
                *reason = "cheque last_job is neither empty nor 16 bytes";
                return -EBADMSG;
        }
        return 0;
}

int cheque_open(const Swarm__SignedCheque *s, const uint8_t self[CHEQUE_ID_SIZE], struct cheque *ret,
                const char **reason) {
        _cleanup_(cheque_msg_freep) Swarm__Cheque *m = NULL;
        const char *dummy;
        struct pb_budget b;
        int r;

        if (!reason)
                reason = &dummy;
        *reason = "invalid arguments";
        if (!s || !self || !ret)
                return -EINVAL;

        r = pb_signed_check(&s->body, &s->signature, CHEQUE_MAX_SIZE, PB_SIGNED_CHEQUE, reason);
        if (r < 0)
                return r;

        /* The key that signs is named inside the body, so the body is
         * unpacked first; under a small budget, whoever sent it. */
        r = pb_unpack_strict(&swarm__cheque__descriptor, s->body.data, s->body.len, CHEQUE_DECODE_BUDGET,
                             CHEQUE_UNKNOWN_FIELDS_MAX, &b, (ProtobufCMessage **) &m, reason,
                             "cheque body needs more memory than its size allows",
                             "cheque body is not a valid protobuf Cheque",
                             "cheque body has a field number 0 or too many unknown fields");
        if (r < 0)
                return r;
        r = cheque_msg_check(m, reason);
        if (r < 0)
                return r;

        /* Over the bytes as received, never a re-encoding. */
        if (crypto_sign_verify_detached(s->signature.data, s->body.data, s->body.len, m->payer.data) != 0) {
                *reason = "cheque signature does not verify against its payer's key";
                return -EKEYREJECTED;
        }
        if (memcmp(m->payee.data, self, CHEQUE_ID_SIZE) != 0) {
                *reason = "cheque is made out to another payee";
                return -EXDEV;
        }

        *ret = (struct cheque) {
                .amount = m->amount,
                .has_last_job = m->last_job.len == CHEQUE_JOB_SIZE,
                .issued_at = m->issued_at,
        };
        memcpy(ret->payer, m->payer.data, CHEQUE_ID_SIZE);
        memcpy(ret->payee, m->payee.data, CHEQUE_ID_SIZE);
        if (ret->has_last_job)
                memcpy(ret->last_job, m->last_job.data, CHEQUE_JOB_SIZE);
        *reason = NULL;
        return 0;
}

int cheque_open_bytes(const uint8_t *data, size_t size, const uint8_t self[CHEQUE_ID_SIZE], struct cheque *ret,
                      const char **reason) {
        _cleanup_(signed_cheque_msg_freep) Swarm__SignedCheque *s = NULL;
        const char *dummy;
        struct pb_budget b;
        int r;

        if (!reason)
                reason = &dummy;
        *reason = "invalid arguments";
        if ((!data && size > 0) || !self || !ret)
                return -EINVAL;

        if (size == 0) {
                *reason = "signed cheque is empty";
                return -EBADMSG;
        }
        if (size > CHEQUE_MAX_SIZE) {
                *reason = "signed cheque is over CHEQUE_MAX_SIZE";
                return -EBADMSG;
        }

        r = pb_unpack_strict(&swarm__signed_cheque__descriptor, data, size, CHEQUE_DECODE_BUDGET,
                             CHEQUE_UNKNOWN_FIELDS_MAX, &b, (ProtobufCMessage **) &s, reason,
                             "signed cheque needs more memory than its size allows",
                             "signed cheque is not a valid protobuf SignedCheque",
                             "signed cheque has a field number 0 or too many unknown fields");
        if (r < 0)
                return r;

        return cheque_open(s, self, ret, reason);
}

int cheque_compare(uint64_t held, uint64_t amount) {
        if (amount > held)
                return 1;
        if (amount == held)
                return 0;
        return -ERANGE;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Signed opinions (opinion.h).  The discipline of job-wire.c: sizes
 * first, a budgeted unpack, every field checked in one place, and the
 * signature over the bytes as received.  The issuer is named inside the
 * body, so the body is unpacked (under budget) before the signature can be
 * checked; nothing of it is used until the signature verifies. */

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "macro.h"
#include "opinion.h"
#include "pb-util.h"
#include "skill-name.h"
#include "wire.h"

_Static_assert(REPUTATION_SKILL_MAX == SKILL_NAME_MAX, "one skill name rule");

/* What unpacking an Opinion of `size` bytes may allocate: each entry costs
 * a struct and a pointer beyond its bytes, so more than the size itself. */
#define OPINION_DECODE_BUDGET(size) ((size_t) (size) * 4u + 64u * 1024u)

static void opinionp_free(Swarm__Opinion **o) {
        if (*o)
                pb_free_unpacked(&(*o)->base);
}

static bool count_is_valid(double x) {
        return isfinite(x) && x >= 0;
}

static int entry_check(const uint8_t *subject, size_t subject_len, const char *skill, double s, double f,
                       const char **reason) {
        if (subject_len != REPUTATION_ID_SIZE || !subject) {
                *reason = "opinion entry subject is not 32 bytes";
                return -EBADMSG;
        }
        if (!skill_name_valid(skill)) {
                *reason = "opinion entry skill is not 1-63 characters of [a-z0-9_.-]";
                return -EBADMSG;
        }
        if (!count_is_valid(s) || !count_is_valid(f)) {
                *reason = "opinion entry count is not finite and non-negative";
                return -EBADMSG;
        }
        return 0;
}

int opinion_sign(const uint8_t issuer[32], uint64_t version, uint64_t issued_at,
                 const struct reputation_opinion_entry *entries, size_t n, const uint8_t sk[64],
                 Swarm__SignedOpinion *out) {
        _cleanup_free_ Swarm__OpinionEntry *e = NULL;
        _cleanup_free_ Swarm__OpinionEntry **ep = NULL;
        Swarm__Opinion o = SWARM__OPINION__INIT;
        const char *reason;

        if (!out)
                return -EINVAL;
        swarm__signed_opinion__init(out);
        if (!issuer || !sk || (n > 0 && !entries) || n > OPINION_MAX_ENTRIES)
                return -EINVAL;

        e = calloc(n > 0 ? n : 1, sizeof(*e));
        ep = calloc(n > 0 ? n : 1, sizeof(*ep));
        if (!e || !ep)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const struct reputation_opinion_entry *x = &entries[i];

                if (strnlen(x->skill, sizeof(x->skill)) >= sizeof(x->skill) ||
                    entry_check(x->subject, REPUTATION_ID_SIZE, x->skill, x->successes, x->failures, &reason) < 0)
                        return -EINVAL;
                swarm__opinion_entry__init(&e[i]);
                e[i].subject = (ProtobufCBinaryData) { .len = REPUTATION_ID_SIZE, .data = (uint8_t *) x->subject };
                e[i].skill = (char *) x->skill;
                e[i].successes = x->successes;
                e[i].failures = x->failures;
                ep[i] = &e[i];
        }
        o.issuer = (ProtobufCBinaryData) { .len = 32, .data = (uint8_t *) issuer };
        o.version = version;
        o.issued_at = issued_at;
        o.n_entries = n;
        o.entries = ep;

        /* The body leaves room for the signature and the framing within
         * OPINION_MAX_SIZE, so whatever we sign, everyone accepts. */
        return pb_pack_signed(&o.base, OPINION_MAX_SIZE - 128, sk, &out->body, &out->signature);
}

void opinion_signed_clear(Swarm__SignedOpinion *s) {
        if (!s)
                return;
        free(s->body.data);
        free(s->signature.data);
        swarm__signed_opinion__init(s);
}

int opinion_open(const Swarm__SignedOpinion *s, uint8_t issuer[32], uint64_t *version,
                 struct reputation_opinion_entry **entries, size_t *n, const char **reason) {
        _cleanup_(opinionp_free) Swarm__Opinion *o = NULL;
        _cleanup_free_ struct reputation_opinion_entry *e = NULL;
        const char *dummy;
        struct pb_budget b;
        int r;

        if (!reason)
                reason = &dummy;
        *reason = NULL;
        if (!issuer || !version || !entries || !n)
                return -EINVAL;

        if (!s) {
                *reason = "signed opinion missing";
                return -EBADMSG;
        }
        r = pb_signed_check(&s->body, &s->signature, OPINION_MAX_SIZE, PB_SIGNED_OPINION, reason);
        if (r < 0)
                return r;

        r = pb_unpack_strict(&swarm__opinion__descriptor, s->body.data, s->body.len, OPINION_DECODE_BUDGET(s->body.len),
                             WIRE_UNKNOWN_FIELDS_MAX, &b, (ProtobufCMessage **) &o, reason,
                             "opinion body needs more memory than its size allows",
                             "opinion body is not a valid protobuf Opinion",
                             "opinion body has a field number 0 or too many unknown fields");
        if (r < 0)
                return r;
        if (o->issuer.len != 32 || !o->issuer.data) {
                *reason = "opinion issuer is not 32 bytes";
                return -EBADMSG;
        }
        /* Over the bytes as received, never a re-encoding. */
        if (crypto_sign_verify_detached(s->signature.data, s->body.data, s->body.len, o->issuer.data) != 0) {
                *reason = "opinion signature does not verify against its issuer's key";
                return -EKEYREJECTED;
        }
        if (o->n_entries > OPINION_MAX_ENTRIES) {
                *reason = "opinion has more than OPINION_MAX_ENTRIES entries";
                return -EBADMSG;
        }
        if (o->n_entries > 0 && !o->entries) {
                *reason = "opinion entries missing";
                return -EBADMSG;
        }

        e = calloc(o->n_entries > 0 ? o->n_entries : 1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        for (size_t i = 0; i < o->n_entries; i++) {
                const Swarm__OpinionEntry *x = o->entries[i];

                if (!x) {
                        *reason = "opinion entry missing";
                        return -EBADMSG;
                }
                r = entry_check(x->subject.data, x->subject.len, x->skill, x->successes, x->failures, reason);
                if (r < 0)
                        return r;
                memcpy(e[i].subject, x->subject.data, REPUTATION_ID_SIZE);
                strcpy(e[i].skill, x->skill);
                e[i].successes = x->successes;
                e[i].failures = x->failures;
        }

        memcpy(issuer, o->issuer.data, 32);
        *version = o->version;
        *n = o->n_entries;
        *entries = TAKE_PTR(e);
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Signed opinions: round trip, signatures, and every field check. */

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "opinion.h"
#include "pb-util.h"

static uint8_t pk[32], sk[64];

static void setup(void) {
        cr_assert_geq(sodium_init(), 0);
        crypto_sign_keypair(pk, sk);
}

TestSuite(opinion, .init = setup);

static struct reputation_opinion_entry entry(uint8_t subject, const char *skill, double s, double f) {
        struct reputation_opinion_entry e = { .successes = s, .failures = f };

        memset(e.subject, subject, sizeof(e.subject));
        strcpy(e.skill, skill);
        return e;
}

/* Signs a hand-built Opinion with n entries like `proto`, but a subject of
 * subject_len bytes: what a hostile issuer could send. */
static void sign_raw(const uint8_t *issuer, size_t issuer_len, size_t n, size_t subject_len, const char *skill,
                     double s, double f, Swarm__SignedOpinion *out) {
        Swarm__Opinion o = SWARM__OPINION__INIT;
        Swarm__OpinionEntry *e = calloc(n ? n : 1, sizeof(*e));
        Swarm__OpinionEntry **ep = calloc(n ? n : 1, sizeof(*ep));
        uint8_t subject[64];

        memset(subject, 7, sizeof(subject));
        for (size_t i = 0; i < n; i++) {
                swarm__opinion_entry__init(&e[i]);
                e[i].subject = (ProtobufCBinaryData) { .len = subject_len, .data = subject };
                e[i].skill = (char *) skill;
                e[i].successes = s;
                e[i].failures = f;
                ep[i] = &e[i];
        }
        o.issuer = (ProtobufCBinaryData) { .len = issuer_len, .data = (uint8_t *) issuer };
        o.version = 1;
        o.n_entries = n;
        o.entries = ep;
        swarm__signed_opinion__init(out);
        cr_assert_eq(pb_pack_signed(&o.base, SIZE_MAX, sk, &out->body, &out->signature), 0);
        free(e);
        free(ep);
}

static int open_it(const Swarm__SignedOpinion *s, const char **reason) {
        struct reputation_opinion_entry *e = NULL;
        uint8_t issuer[32];
        uint64_t version;
        size_t n = 0;
        int r;

        r = opinion_open(s, issuer, &version, &e, &n, reason);
        free(e);
        return r;
}

Test(opinion, round_trip) {
        struct reputation_opinion_entry in[3] = {
                entry(1, "gemm", 12.5, 0.25), entry(2, "gemm.f32", 0, 3), entry(3, "sort_v-2", 1e6, 0),
        };
        struct reputation_opinion_entry *out = NULL;
        Swarm__SignedOpinion s;
        uint8_t issuer[32];
        uint64_t version;
        const char *reason = NULL;
        size_t n = 0;

        cr_assert_eq(opinion_sign(pk, 42, 1700000000000000ull, in, 3, sk, &s), 0);
        cr_assert_eq(opinion_open(&s, issuer, &version, &out, &n, &reason), 0, "%s", reason);
        cr_assert_eq(memcmp(issuer, pk, 32), 0);
        cr_assert_eq(version, 42);
        cr_assert_eq(n, 3);
        for (size_t i = 0; i < 3; i++) {
                cr_assert_eq(memcmp(out[i].subject, in[i].subject, 32), 0);
                cr_assert_str_eq(out[i].skill, in[i].skill);
                cr_assert_eq(out[i].successes, in[i].successes);
                cr_assert_eq(out[i].failures, in[i].failures);
        }
        free(out);
        opinion_signed_clear(&s);
        cr_assert_null(s.body.data);
}

Test(opinion, empty_opinion_round_trips) {
        struct reputation_opinion_entry *out = NULL;
        Swarm__SignedOpinion s;
        uint8_t issuer[32];
        uint64_t version;
        size_t n = 5;

        cr_assert_eq(opinion_sign(pk, 1, 0, NULL, 0, sk, &s), 0);
        cr_assert_eq(opinion_open(&s, issuer, &version, &out, &n, NULL), 0);
        cr_assert_eq(n, 0);
        free(out);
        opinion_signed_clear(&s);
}

Test(opinion, bad_signature_is_rejected) {
        struct reputation_opinion_entry in = entry(1, "gemm", 1, 0);
        Swarm__SignedOpinion s;
        const char *reason = NULL;

        cr_assert_eq(opinion_sign(pk, 1, 0, &in, 1, sk, &s), 0);
        s.signature.data[5] ^= 1;
        cr_assert_eq(open_it(&s, &reason), -EKEYREJECTED);
        cr_assert_not_null(reason);
        s.signature.data[5] ^= 1;
        s.signature.len = 63;
        cr_assert_eq(open_it(&s, &reason), -EBADMSG);
        s.signature.len = 64;
        opinion_signed_clear(&s);
}

Test(opinion, signed_by_another_key_is_rejected) {
        struct reputation_opinion_entry in = entry(1, "gemm", 1, 0);
        uint8_t pk2[32], sk2[64];
        Swarm__SignedOpinion s;

        /* Names pk as issuer but signs with sk2. */
        crypto_sign_keypair(pk2, sk2);
        cr_assert_eq(opinion_sign(pk, 1, 0, &in, 1, sk2, &s), 0);
        cr_assert_eq(open_it(&s, NULL), -EKEYREJECTED);
        opinion_signed_clear(&s);
}

Test(opinion, tampered_body_is_rejected) {
        struct reputation_opinion_entry in = entry(1, "gemm", 1, 0);
        Swarm__SignedOpinion s;
        int r;

        cr_assert_eq(opinion_sign(pk, 1, 0, &in, 1, sk, &s), 0);
        for (size_t i = 0; i < s.body.len; i++) {
                s.body.data[i] ^= 0x10;
                r = open_it(&s, NULL);
                cr_assert(r == -EKEYREJECTED || r == -EBADMSG, "byte %zu: %d", i, r);
                s.body.data[i] ^= 0x10;
        }
        cr_assert_eq(open_it(&s, NULL), 0);
        s.body.len--;
        cr_assert_lt(open_it(&s, NULL), 0);
        s.body.len++;
        opinion_signed_clear(&s);
}

Test(opinion, bad_counts_are_rejected) {
        const double bad[] = { NAN, -1, INFINITY, -INFINITY, -0.001 };
        struct reputation_opinion_entry in;
        Swarm__SignedOpinion s;
        const char *reason;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                in = entry(1, "gemm", bad[i], 0);
                cr_assert_eq(opinion_sign(pk, 1, 0, &in, 1, sk, &s), -EINVAL);
                in = entry(1, "gemm", 0, bad[i]);
                cr_assert_eq(opinion_sign(pk, 1, 0, &in, 1, sk, &s), -EINVAL);

                sign_raw(pk, 32, 1, 32, "gemm", bad[i], 1, &s);
                reason = NULL;
                cr_assert_eq(open_it(&s, &reason), -EBADMSG, "%g", bad[i]);
                cr_assert_not_null(reason);
                opinion_signed_clear(&s);
                sign_raw(pk, 32, 1, 32, "gemm", 1, bad[i], &s);
                cr_assert_eq(open_it(&s, NULL), -EBADMSG, "%g", bad[i]);
                opinion_signed_clear(&s);
        }
}

Test(opinion, too_many_entries_are_rejected) {
        struct reputation_opinion_entry *in = calloc(OPINION_MAX_ENTRIES + 1, sizeof(*in));
        Swarm__SignedOpinion s;

        for (size_t i = 0; i <= OPINION_MAX_ENTRIES; i++)
                in[i] = entry((uint8_t) i, "gemm", 1, 0);
        cr_assert_eq(opinion_sign(pk, 1, 0, in, OPINION_MAX_ENTRIES + 1, sk, &s), -EINVAL);
        cr_assert_eq(opinion_sign(pk, 1, 0, in, OPINION_MAX_ENTRIES, sk, &s), 0);
        cr_assert_eq(open_it(&s, NULL), 0);
        opinion_signed_clear(&s);
        free(in);

        sign_raw(pk, 32, OPINION_MAX_ENTRIES + 1, 32, "gemm", 1, 0, &s);
        cr_assert_eq(open_it(&s, NULL), -EBADMSG);
        opinion_signed_clear(&s);
}

Test(opinion, bad_skill_names_are_rejected) {
        const char *bad[] = { "", "GEMM", "ge mm", "gémm", "gemm/x",
                              "a234567890123456789012345678901234567890123456789012345678901234" };
        Swarm__SignedOpinion s;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                sign_raw(pk, 32, 1, 32, bad[i], 1, 0, &s);
                cr_assert_eq(open_it(&s, NULL), -EBADMSG, "\"%s\"", bad[i]);
                opinion_signed_clear(&s);
        }
        sign_raw(pk, 32, 1, 32, "a23456789012345678901234567890123456789012345678901234567890123", 1, 0, &s);
        cr_assert_eq(open_it(&s, NULL), 0);
        opinion_signed_clear(&s);
}

Test(opinion, wrong_id_sizes_are_rejected) {
        uint8_t big[64] = { 0 };
        Swarm__SignedOpinion s;

        memcpy(big, pk, 32);
        sign_raw(pk, 32, 1, 31, "gemm", 1, 0, &s);
        cr_assert_eq(open_it(&s, NULL), -EBADMSG);
        opinion_signed_clear(&s);
        sign_raw(pk, 32, 1, 33, "gemm", 1, 0, &s);
        cr_assert_eq(open_it(&s, NULL), -EBADMSG);
        opinion_signed_clear(&s);
        sign_raw(pk, 32, 1, 0, "gemm", 1, 0, &s);
        cr_assert_eq(open_it(&s, NULL), -EBADMSG);
        opinion_signed_clear(&s);
        sign_raw(big, 33, 1, 32, "gemm", 1, 0, &s);
        cr_assert_eq(open_it(&s, NULL), -EBADMSG);
        opinion_signed_clear(&s);
        sign_raw(big, 0, 1, 32, "gemm", 1, 0, &s);
        cr_assert_eq(open_it(&s, NULL), -EBADMSG);
        opinion_signed_clear(&s);
}

Test(opinion, garbage_and_missing_are_rejected) {
        uint8_t junk[40], sig[64] = { 0 };
        Swarm__SignedOpinion s = SWARM__SIGNED_OPINION__INIT;

        cr_assert_eq(open_it(NULL, NULL), -EBADMSG);
        cr_assert_eq(open_it(&s, NULL), -EBADMSG);
        memset(junk, 0xff, sizeof(junk));
        s.body = (ProtobufCBinaryData) { .len = sizeof(junk), .data = junk };
        s.signature = (ProtobufCBinaryData) { .len = 64, .data = sig };
        cr_assert_eq(open_it(&s, NULL), -EBADMSG);
}

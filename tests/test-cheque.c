/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <criterion/criterion.h>
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "cheque.h"
#include "macro.h"

struct node {
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];
        uint8_t sk[crypto_sign_SECRETKEYBYTES];
};

static struct node alice, bob, carol;

static void setup(void) {
        cr_assert_geq(sodium_init(), 0);
        crypto_sign_keypair(alice.pk, alice.sk);
        crypto_sign_keypair(bob.pk, bob.sk);
        crypto_sign_keypair(carol.pk, carol.sk);
}

TestSuite(cheque, .init = setup);

static struct cheque make(const struct node *payer, const struct node *payee, uint64_t amount) {
        struct cheque c = {
                .amount = amount,
                .has_last_job = true,
                .issued_at = 1700000000000000ull,
        };

        memcpy(c.payer, payer->pk, sizeof(c.payer));
        memcpy(c.payee, payee->pk, sizeof(c.payee));
        memset(c.last_job, 0x5a, sizeof(c.last_job));
        return c;
}

static void sign(const struct cheque *c, const uint8_t sk[64], uint8_t **ret, size_t *ret_size) {
        cr_assert_eq(cheque_sign(c, sk, ret, ret_size), 0);
        cr_assert_leq(*ret_size, CHEQUE_MAX_SIZE);
}

Test(cheque, round_trip_keeps_every_field) {
        struct cheque c = make(&alice, &bob, 12345), got;
        _cleanup_free_ uint8_t *buf = NULL;
        const char *reason = "unset";
        size_t size;

        sign(&c, alice.sk, &buf, &size);
        cr_assert_eq(cheque_open_bytes(buf, size, bob.pk, &got, &reason), 0);
        cr_assert_null(reason);
        cr_assert_eq(memcmp(got.payer, alice.pk, 32), 0);
        cr_assert_eq(memcmp(got.payee, bob.pk, 32), 0);
        cr_assert_eq(got.amount, 12345);
        cr_assert(got.has_last_job);
        cr_assert_eq(memcmp(got.last_job, c.last_job, CHEQUE_JOB_SIZE), 0);
        cr_assert_eq(got.issued_at, c.issued_at);
}

Test(cheque, without_last_job_opens_without_it) {
        struct cheque c = make(&alice, &bob, 1), got;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size;

        c.has_last_job = false;
        sign(&c, alice.sk, &buf, &size);
        cr_assert_eq(cheque_open_bytes(buf, size, bob.pk, &got, NULL), 0);
        cr_assert_not(got.has_last_job);
}

Test(cheque, message_form_opens_like_the_bytes) {
        struct cheque c = make(&alice, &bob, UINT64_MAX), got;
        Swarm__SignedCheque s = SWARM__SIGNED_CHEQUE__INIT;

        cr_assert_eq(cheque_sign_message(&c, alice.sk, &s), 0);
        cr_assert_eq(s.signature.len, crypto_sign_BYTES);
        cr_assert_eq(cheque_open(&s, bob.pk, &got, NULL), 0);
        cr_assert_eq(got.amount, UINT64_MAX);
        cheque_signed_clear(&s);
        cr_assert_null(s.body.data);
        cr_assert_null(s.signature.data);
}

Test(cheque, signing_with_a_key_that_is_not_the_payers_is_refused) {
        struct cheque c = make(&alice, &bob, 10);
        Swarm__SignedCheque s = SWARM__SIGNED_CHEQUE__INIT;
        uint8_t *buf = NULL;
        size_t size = 0;

        cr_assert_eq(cheque_sign(&c, carol.sk, &buf, &size), -EINVAL);
        cr_assert_null(buf);
        cr_assert_eq(cheque_sign_message(&c, carol.sk, &s), -EINVAL);
        cr_assert_null(s.body.data);
}

Test(cheque, bad_signature_is_rejected) {
        struct cheque c = make(&alice, &bob, 10), got;
        Swarm__SignedCheque s = SWARM__SIGNED_CHEQUE__INIT;
        const char *reason = NULL;

        cr_assert_eq(cheque_sign_message(&c, alice.sk, &s), 0);
        s.signature.data[7] ^= 0x01;
        cr_assert_eq(cheque_open(&s, bob.pk, &got, &reason), -EKEYREJECTED);
        cr_assert_not_null(reason);
        s.signature.data[7] ^= 0x01;

        /* A body changed after signing: the amount raised by the payee. */
        cr_assert_eq(cheque_open(&s, bob.pk, &got, NULL), 0);
        s.body.data[s.body.len - 1] ^= 0x01;
        cr_assert_eq(cheque_open(&s, bob.pk, &got, &reason), -EKEYREJECTED);
        cheque_signed_clear(&s);
}

Test(cheque, signed_by_someone_else_in_the_payers_name_is_rejected) {
        struct cheque c = make(&alice, &bob, 10), got;
        Swarm__Cheque m = SWARM__CHEQUE__INIT;
        Swarm__SignedCheque s = SWARM__SIGNED_CHEQUE__INIT;
        uint8_t body[256], sig[crypto_sign_BYTES];
        size_t n;

        /* Carol writes a cheque from Alice and signs it herself. */
        m.payer = (ProtobufCBinaryData) { .len = 32, .data = c.payer };
        m.payee = (ProtobufCBinaryData) { .len = 32, .data = c.payee };
        m.amount = 1000000;
        n = protobuf_c_message_pack(&m.base, body);
        crypto_sign_detached(sig, NULL, body, n, carol.sk);
        s.body = (ProtobufCBinaryData) { .len = n, .data = body };
        s.signature = (ProtobufCBinaryData) { .len = sizeof(sig), .data = sig };
        cr_assert_eq(cheque_open(&s, bob.pk, &got, NULL), -EKEYREJECTED);
}

Test(cheque, made_out_to_another_payee_is_refused) {
        struct cheque c = make(&alice, &bob, 10), got;
        _cleanup_free_ uint8_t *buf = NULL;
        const char *reason = NULL;
        size_t size;

        sign(&c, alice.sk, &buf, &size);
        cr_assert_eq(cheque_open_bytes(buf, size, carol.pk, &got, &reason), -EXDEV);
        cr_assert_not_null(reason);
}

Test(cheque, every_truncation_is_malformed) {
        struct cheque c = make(&alice, &bob, 987654321), got;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size;

        sign(&c, alice.sk, &buf, &size);
        for (size_t n = 0; n < size; n++) {
                const char *reason = NULL;
                int r = cheque_open_bytes(buf, n, bob.pk, &got, &reason);

                /* A cut exactly between the fields is a valid encoding
                 * without the signature (or with the body only): still
                 * malformed, never accepted. */
                cr_assert_eq(r, -EBADMSG, "truncated to %zu of %zu bytes: %d", n, size, r);
                cr_assert_not_null(reason);
        }
}

Test(cheque, malformed_bytes_are_refused) {
        static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02 };
        uint8_t big[CHEQUE_MAX_SIZE + 1] = {};
        struct cheque got;
        const char *reason;

        cr_assert_eq(cheque_open_bytes(garbage, sizeof(garbage), bob.pk, &got, &reason), -EBADMSG);
        cr_assert_not_null(reason);
        cr_assert_eq(cheque_open_bytes(big, sizeof(big), bob.pk, &got, &reason), -EBADMSG);
        cr_assert_not_null(reason);
        cr_assert_eq(cheque_open_bytes(NULL, 0, bob.pk, &got, &reason), -EBADMSG);
}

/* Signs a hand-made Cheque body, so that only the field under test is
 * wrong and the signature is good. */
static int open_raw(const Swarm__Cheque *m, const uint8_t self[32]) {
        Swarm__SignedCheque s = SWARM__SIGNED_CHEQUE__INIT;
        uint8_t body[1024], sig[crypto_sign_BYTES];
        struct cheque got;
        const char *reason = NULL;
        size_t n;
        int r;

        n = protobuf_c_message_pack(&m->base, body);
        crypto_sign_detached(sig, NULL, body, n, alice.sk);
        s.body = (ProtobufCBinaryData) { .len = n, .data = body };
        s.signature = (ProtobufCBinaryData) { .len = sizeof(sig), .data = sig };
        r = cheque_open(&s, self, &got, &reason);
        if (r < 0)
                cr_assert_not_null(reason);
        return r;
}

Test(cheque, every_field_is_checked) {
        Swarm__Cheque m = SWARM__CHEQUE__INIT;
        uint8_t job[CHEQUE_JOB_SIZE + 1] = {}, big[CHEQUE_MAX_SIZE] = {};

        m.payer = (ProtobufCBinaryData) { .len = 32, .data = alice.pk };
        m.payee = (ProtobufCBinaryData) { .len = 32, .data = bob.pk };
        m.amount = 5;
        cr_assert_eq(open_raw(&m, bob.pk), 0);

        m.payer.len = 31;
        cr_assert_eq(open_raw(&m, bob.pk), -EBADMSG);
        m.payer.len = 32;

        m.payee.len = 33;
        m.payee.data = (uint8_t[33]) {};
        cr_assert_eq(open_raw(&m, bob.pk), -EBADMSG);
        m.payee.len = 0;
        cr_assert_eq(open_raw(&m, bob.pk), -EBADMSG);
        m.payee = (ProtobufCBinaryData) { .len = 32, .data = bob.pk };

        m.last_job = (ProtobufCBinaryData) { .len = CHEQUE_JOB_SIZE, .data = job };
        cr_assert_eq(open_raw(&m, bob.pk), 0);
        m.last_job.len = CHEQUE_JOB_SIZE + 1;
        cr_assert_eq(open_raw(&m, bob.pk), -EBADMSG);
        m.last_job.len = 8;
        cr_assert_eq(open_raw(&m, bob.pk), -EBADMSG);
        m.last_job.len = 0;

        /* A body over the size limit, signed properly. */
        m.last_job = (ProtobufCBinaryData) { .len = sizeof(big), .data = big };
        cr_assert_eq(open_raw(&m, bob.pk), -EBADMSG);
}

Test(cheque, signature_of_the_wrong_length_is_malformed) {
        struct cheque c = make(&alice, &bob, 10), got;
        Swarm__SignedCheque s = SWARM__SIGNED_CHEQUE__INIT;

        cr_assert_eq(cheque_sign_message(&c, alice.sk, &s), 0);
        s.signature.len = 63;
        cr_assert_eq(cheque_open(&s, bob.pk, &got, NULL), -EBADMSG);
        s.signature.len = 64;
        cheque_signed_clear(&s);
}

Test(cheque, higher_is_kept_equal_is_a_duplicate_lower_goes_backwards) {
        cr_assert_eq(cheque_compare(0, 1), 1);
        cr_assert_eq(cheque_compare(100, 101), 1);
        cr_assert_eq(cheque_compare(100, UINT64_MAX), 1);
        cr_assert_eq(cheque_compare(0, 0), 0);
        cr_assert_eq(cheque_compare(100, 100), 0);
        cr_assert_eq(cheque_compare(100, 99), -ERANGE);
        cr_assert_eq(cheque_compare(UINT64_MAX, 0), -ERANGE);
}

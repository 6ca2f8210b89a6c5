/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <criterion/criterion.h>
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "transfer.h"

struct node {
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];
        uint8_t sk[crypto_sign_SECRETKEYBYTES];
};

static struct node alice, bob, carol, issuer, mallory, sybil1, sybil2;

static void setup(void) {
        cr_assert_geq(sodium_init(), 0);
        crypto_sign_keypair(alice.pk, alice.sk);
        crypto_sign_keypair(bob.pk, bob.sk);
        crypto_sign_keypair(carol.pk, carol.sk);
        crypto_sign_keypair(issuer.pk, issuer.sk);
        crypto_sign_keypair(mallory.pk, mallory.sk);
        crypto_sign_keypair(sybil1.pk, sybil1.sk);
        crypto_sign_keypair(sybil2.pk, sybil2.sk);
}

TestSuite(transfer, .init = setup);

/* A signed transfer; deps are copied (any order: signing sorts them). */
static void make(struct transfer *t, const struct node *payer, uint64_t seq, const struct node *payee,
                 uint64_t amount, const uint8_t (*deps)[TRANSFER_ID_SIZE], size_t n_deps) {
        *t = (struct transfer) { .seq = seq, .amount = amount, .n_deps = n_deps };
        memcpy(t->payer, payer->pk, TRANSFER_KEY_SIZE);
        memcpy(t->payee, payee->pk, TRANSFER_KEY_SIZE);
        if (n_deps > 0) {
                t->deps = malloc(n_deps * TRANSFER_ID_SIZE);
                cr_assert_not_null(t->deps);
                memcpy(t->deps, deps, n_deps * TRANSFER_ID_SIZE);
        }
        cr_assert_eq(transfer_sign(t, payer->sk), 0);
}

static struct transfer_book *book_with_issuer(void) {
        struct transfer_book *b = transfer_book_new((const uint8_t (*)[TRANSFER_KEY_SIZE]) issuer.pk, 1);

        cr_assert_not_null(b);
        return b;
}

static void deliver_ok(struct transfer_book *b, const struct transfer *t) {
        const char *reason = NULL;
        int r = transfer_book_deliver(b, t, NULL, &reason);

        cr_assert_eq(r, 0, "deliver: %d %s", r, reason ? reason : "");
        cr_assert_null(reason);
        cr_assert_eq(transfer_book_check_invariants(b, &reason), 0, "%s", reason);
}

static int deliver(struct transfer_book *b, const struct transfer *t) {
        const char *reason = NULL;
        int r = transfer_book_deliver(b, t, NULL, &reason);

        if (r < 0)
                cr_assert_not_null(reason);
        cr_assert_eq(transfer_book_check_invariants(b, &reason), 0, "%s", reason);
        return r;
}

/* A payment from payer with its next seq, naming every pending transfer. */
static void pay(struct transfer *t, const struct transfer_book *b, const struct node *payer, const struct node *payee,
                uint64_t amount) {
        uint8_t ids[TRANSFER_MAX_DEPS][TRANSFER_ID_SIZE];
        struct transfer_account a;
        size_t n;

        transfer_book_account(b, payer->pk, &a);
        n = transfer_book_pending(b, payer->pk, ids, TRANSFER_MAX_DEPS);
        cr_assert_leq(n, TRANSFER_MAX_DEPS);
        make(t, payer, a.next_seq, payee, amount, (const uint8_t (*)[TRANSFER_ID_SIZE]) ids, n);
}

static void mint(struct transfer_book *b, const struct node *payee, uint64_t amount, uint8_t id[TRANSFER_ID_SIZE]) {
        struct transfer t;

        pay(&t, b, &issuer, payee, amount);
        deliver_ok(b, &t);
        if (id)
                transfer_id(&t, id);
        transfer_clear(&t);
}

static struct transfer_account account(const struct transfer_book *b, const struct node *n) {
        struct transfer_account a;

        transfer_book_account(b, n->pk, &a);
        return a;
}

/* Re-signs raw canonical bytes as the codec would, so a test can build
 * encodings that break a rule yet carry a valid signature. */
static void resign_raw(uint8_t *buf, size_t size, const struct node *payer) {
        static const char ctx[] = "swarm-transfer-v1";
        _cleanup_free_ uint8_t *msg = malloc(sizeof(ctx) - 1 + size - TRANSFER_SIG_SIZE);

        cr_assert_not_null(msg);
        memcpy(msg, ctx, sizeof(ctx) - 1);
        memcpy(msg + sizeof(ctx) - 1, buf, size - TRANSFER_SIG_SIZE);
        cr_assert_eq(crypto_sign_detached(buf + size - TRANSFER_SIG_SIZE, NULL, msg,
                                          sizeof(ctx) - 1 + size - TRANSFER_SIG_SIZE, payer->sk), 0);
}

static void encode(const struct transfer *t, uint8_t **buf, size_t *size) {
        cr_assert_eq(transfer_encode(t, buf, size), 0);
        cr_assert_eq(*size, transfer_encoded_size(t));
}

static void three_deps(uint8_t deps[3][TRANSFER_ID_SIZE]) {
        memset(deps[0], 0x30, TRANSFER_ID_SIZE);
        memset(deps[1], 0x10, TRANSFER_ID_SIZE);
        memset(deps[2], 0x20, TRANSFER_ID_SIZE);
}

/* The codec. */

Test(transfer, round_trip_keeps_every_field) {
        uint8_t deps[3][TRANSFER_ID_SIZE], id1[TRANSFER_ID_SIZE], id2[TRANSFER_ID_SIZE];
        _cleanup_(transfer_clear) struct transfer t = {}, got = {};
        _cleanup_free_ uint8_t *buf = NULL;
        const char *reason = "unset";
        size_t size;

        three_deps(deps);
        make(&t, &alice, 7, &bob, UINT64_MAX, (const uint8_t (*)[TRANSFER_ID_SIZE]) deps, 3);
        encode(&t, &buf, &size);
        cr_assert_eq(size, TRANSFER_MIN_SIZE + 3 * TRANSFER_ID_SIZE);
        cr_assert_eq(transfer_decode(buf, size, &got, &reason), 0, "%s", reason);
        cr_assert_null(reason);
        cr_assert_eq(memcmp(got.payer, alice.pk, 32), 0);
        cr_assert_eq(memcmp(got.payee, bob.pk, 32), 0);
        cr_assert_eq(got.seq, 7);
        cr_assert_eq(got.amount, UINT64_MAX);
        cr_assert_eq(got.n_deps, 3);
        /* Signing sorted them. */
        cr_assert_eq(got.deps[0][0], 0x10);
        cr_assert_eq(got.deps[1][0], 0x20);
        cr_assert_eq(got.deps[2][0], 0x30);
        cr_assert_eq(memcmp(got.signature, t.signature, TRANSFER_SIG_SIZE), 0);
        transfer_id(&t, id1);
        transfer_id(&got, id2);
        cr_assert_eq(memcmp(id1, id2, TRANSFER_ID_SIZE), 0);
}

Test(transfer, round_trip_without_dependencies) {
        _cleanup_(transfer_clear) struct transfer t = {}, got = {};
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size;

        make(&t, &alice, 1, &bob, 1, NULL, 0);
        encode(&t, &buf, &size);
        cr_assert_eq(size, TRANSFER_MIN_SIZE);
        cr_assert_eq(transfer_decode(buf, size, &got, NULL), 0);
        cr_assert_eq(got.n_deps, 0);
        cr_assert_null(got.deps);
}

Test(transfer, round_trip_with_the_most_dependencies) {
        _cleanup_free_ uint8_t (*deps)[TRANSFER_ID_SIZE] = malloc(TRANSFER_MAX_DEPS * TRANSFER_ID_SIZE);
        _cleanup_(transfer_clear) struct transfer t = {}, got = {};
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size;

        cr_assert_not_null(deps);
        randombytes_buf(deps, TRANSFER_MAX_DEPS * TRANSFER_ID_SIZE);
        make(&t, &alice, 1, &bob, 5, (const uint8_t (*)[TRANSFER_ID_SIZE]) deps, TRANSFER_MAX_DEPS);
        encode(&t, &buf, &size);
        cr_assert_eq(size, TRANSFER_MAX_SIZE);
        cr_assert_eq(transfer_decode(buf, size, &got, NULL), 0);
        cr_assert_eq(got.n_deps, TRANSFER_MAX_DEPS);
}

Test(transfer, encoding_is_fixed_width_little_endian) {
        _cleanup_(transfer_clear) struct transfer t = {};
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size;

        make(&t, &alice, 0x0102030405060708ull, &bob, 0x1112131415161718ull, NULL, 0);
        encode(&t, &buf, &size);
        cr_assert_eq(buf[0], TRANSFER_VERSION);
        cr_assert_eq(memcmp(buf + 1, alice.pk, 32), 0);
        cr_assert_eq(buf[33], 0x08);
        cr_assert_eq(buf[40], 0x01);
        cr_assert_eq(memcmp(buf + 41, bob.pk, 32), 0);
        cr_assert_eq(buf[73], 0x18);
        cr_assert_eq(buf[80], 0x11);
        cr_assert_eq(buf[81], 0);
        cr_assert_eq(buf[82], 0);
        cr_assert_eq(memcmp(buf + 83, t.signature, TRANSFER_SIG_SIZE), 0);
}

Test(transfer, decode_refuses_every_truncation) {
        uint8_t deps[3][TRANSFER_ID_SIZE];
        _cleanup_(transfer_clear) struct transfer t = {};
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size;

        three_deps(deps);
        make(&t, &alice, 1, &bob, 9, (const uint8_t (*)[TRANSFER_ID_SIZE]) deps, 3);
        encode(&t, &buf, &size);
        for (size_t n = 0; n < size; n++) {
                struct transfer got;
                const char *reason = NULL;

                cr_assert_eq(transfer_decode(buf, n, &got, &reason), -EBADMSG, "length %zu", n);
                cr_assert_not_null(reason);
                cr_assert_null(got.deps);
        }
}

Test(transfer, decode_refuses_trailing_bytes_and_oversize) {
        _cleanup_(transfer_clear) struct transfer t = {};
        _cleanup_free_ uint8_t *buf = NULL, *big = NULL;
        struct transfer got;
        const char *reason;
        size_t size;

        make(&t, &alice, 1, &bob, 9, NULL, 0);
        encode(&t, &buf, &size);
        big = calloc(1, TRANSFER_MAX_SIZE + 1);
        cr_assert_not_null(big);
        memcpy(big, buf, size);
        cr_assert_eq(transfer_decode(big, size + 1, &got, &reason), -EBADMSG);
        cr_assert_str_eq(reason, "transfer has trailing bytes");
        cr_assert_eq(transfer_decode(big, TRANSFER_MAX_SIZE + 1, &got, &reason), -EBADMSG);
        cr_assert_str_eq(reason, "transfer is over TRANSFER_MAX_SIZE");
}

Test(transfer, decode_refuses_an_unknown_version) {
        _cleanup_(transfer_clear) struct transfer t = {};
        _cleanup_free_ uint8_t *buf = NULL;
        struct transfer got;
        const char *reason;
        size_t size;

        make(&t, &alice, 1, &bob, 9, NULL, 0);
        encode(&t, &buf, &size);
        buf[0] = 2;
        resign_raw(buf, size, &alice);
        cr_assert_eq(transfer_decode(buf, size, &got, &reason), -EBADMSG);
        cr_assert_str_eq(reason, "transfer has an unknown version");
}

Test(transfer, decode_refuses_too_many_dependencies) {
        _cleanup_free_ uint8_t *buf = calloc(1, TRANSFER_MAX_SIZE + TRANSFER_ID_SIZE);
        size_t size = TRANSFER_MIN_SIZE + (TRANSFER_MAX_DEPS + 1) * TRANSFER_ID_SIZE;
        struct transfer got;
        const char *reason;

        cr_assert_not_null(buf);
        buf[0] = TRANSFER_VERSION;
        buf[81] = (TRANSFER_MAX_DEPS + 1) & 0xff;
        buf[82] = (TRANSFER_MAX_DEPS + 1) >> 8;
        /* Over the size limit as a whole, and by its count when it fits. */
        cr_assert_eq(transfer_decode(buf, size, &got, &reason), -EBADMSG);
        cr_assert_eq(transfer_decode(buf, TRANSFER_MAX_SIZE, &got, &reason), -EBADMSG);
        cr_assert_str_eq(reason, "transfer names more than TRANSFER_MAX_DEPS dependencies");
        buf[81] = buf[82] = 0xff;
        cr_assert_eq(transfer_decode(buf, TRANSFER_MIN_SIZE, &got, &reason), -EBADMSG);
        cr_assert_str_eq(reason, "transfer names more than TRANSFER_MAX_DEPS dependencies");
}

/* Breaks one rule in signed bytes, re-signs them validly, and expects the
 * rule's own refusal. */
static void expect_rule_refused(void (*breaker)(uint8_t *buf), const char *want) {
        uint8_t deps[3][TRANSFER_ID_SIZE];
        _cleanup_(transfer_clear) struct transfer t = {};
        _cleanup_free_ uint8_t *buf = NULL;
        struct transfer got;
        const char *reason;
        size_t size;

        three_deps(deps);
        make(&t, &alice, 3, &bob, 9, (const uint8_t (*)[TRANSFER_ID_SIZE]) deps, 3);
        encode(&t, &buf, &size);
        breaker(buf);
        resign_raw(buf, size, &alice);
        cr_assert_eq(transfer_decode(buf, size, &got, &reason), -EBADMSG);
        cr_assert_str_eq(reason, want);
        cr_assert_null(got.deps);
}

static void break_seq(uint8_t *buf) {
        memset(buf + 33, 0, 8);
}
static void break_amount(uint8_t *buf) {
        memset(buf + 73, 0, 8);
}
static void break_payee(uint8_t *buf) {
        memcpy(buf + 41, buf + 1, 32);
}
static void break_order(uint8_t *buf) {
        uint8_t tmp[TRANSFER_ID_SIZE];

        memcpy(tmp, buf + 83, 32);
        memcpy(buf + 83, buf + 115, 32);
        memcpy(buf + 115, tmp, 32);
}
static void break_duplicate(uint8_t *buf) {
        memcpy(buf + 115, buf + 83, 32);
}

Test(transfer, decode_refuses_seq_zero) {
        expect_rule_refused(break_seq, "transfer seq is 0 (seqs count from 1)");
}

Test(transfer, decode_refuses_zero_amount) {
        expect_rule_refused(break_amount, "transfer amount is 0");
}

Test(transfer, decode_refuses_payer_as_payee) {
        expect_rule_refused(break_payee, "transfer payer and payee are the same account");
}

Test(transfer, decode_refuses_unsorted_dependencies) {
        expect_rule_refused(break_order, "transfer dependencies are not in increasing order");
}

Test(transfer, decode_refuses_duplicate_dependencies) {
        expect_rule_refused(break_duplicate, "transfer names a dependency twice");
}

Test(transfer, tampered_byte_anywhere_is_refused) {
        uint8_t deps[2][TRANSFER_ID_SIZE];
        _cleanup_(transfer_clear) struct transfer t = {};
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size;

        randombytes_buf(deps, sizeof(deps));
        make(&t, &alice, 4, &bob, 100, (const uint8_t (*)[TRANSFER_ID_SIZE]) deps, 2);
        encode(&t, &buf, &size);
        for (size_t i = 0; i < size; i++)
                for (unsigned bit = 0; bit < 8; bit++) {
                        struct transfer got;
                        int r;

                        buf[i] ^= (uint8_t) (1u << bit);
                        r = transfer_decode(buf, size, &got, NULL);
                        cr_assert(r == -EBADMSG || r == -EKEYREJECTED, "byte %zu bit %u: %d", i, bit, r);
                        buf[i] ^= (uint8_t) (1u << bit);
                }
        {
                struct transfer got;

                cr_assert_eq(transfer_decode(buf, size, &got, NULL), 0);
                transfer_clear(&got);
        }
}

Test(transfer, signature_of_another_key_is_refused) {
        _cleanup_(transfer_clear) struct transfer t = {};
        _cleanup_free_ uint8_t *buf = NULL;
        struct transfer got;
        const char *reason;
        size_t size;

        make(&t, &alice, 1, &bob, 9, NULL, 0);
        encode(&t, &buf, &size);
        resign_raw(buf, size, &mallory);
        cr_assert_eq(transfer_decode(buf, size, &got, &reason), -EKEYREJECTED);
        cr_assert_str_eq(reason, "transfer signature does not verify against its payer's key");
}

Test(transfer, sign_refuses_another_key_and_broken_rules) {
        uint8_t deps[2][TRANSFER_ID_SIZE];
        struct transfer t = { .seq = 1, .amount = 1 };

        memcpy(t.payer, alice.pk, 32);
        memcpy(t.payee, bob.pk, 32);
        cr_assert_eq(transfer_sign(&t, bob.sk), -EINVAL);
        t.amount = 0;
        cr_assert_eq(transfer_sign(&t, alice.sk), -EBADMSG);
        t.amount = 1;
        memset(deps, 7, sizeof(deps));
        t.deps = deps;
        t.n_deps = 2;
        cr_assert_eq(transfer_sign(&t, alice.sk), -EBADMSG);
        t.n_deps = TRANSFER_MAX_DEPS + 1;
        cr_assert_eq(transfer_sign(&t, alice.sk), -EBADMSG);
        t.deps = NULL;
        t.n_deps = 0;
        cr_assert_eq(transfer_sign(&t, alice.sk), 0);
        cr_assert_eq(transfer_verify(&t, NULL), 0);
}

Test(transfer, id_covers_the_content_not_the_signature) {
        _cleanup_(transfer_clear) struct transfer a = {}, b = {};
        uint8_t ida[TRANSFER_ID_SIZE], idb[TRANSFER_ID_SIZE];

        make(&a, &alice, 1, &bob, 9, NULL, 0);
        make(&b, &alice, 1, &bob, 9, NULL, 0);
        b.signature[0] ^= 1;
        transfer_id(&a, ida);
        transfer_id(&b, idb);
        cr_assert_eq(memcmp(ida, idb, TRANSFER_ID_SIZE), 0);
        transfer_clear(&b);
        make(&b, &alice, 1, &bob, 10, NULL, 0);
        transfer_id(&b, idb);
        cr_assert_neq(memcmp(ida, idb, TRANSFER_ID_SIZE), 0);
}

/* Fraud proofs. */

Test(transfer, fraud_proof_is_two_signed_transfers_for_one_seq) {
        _cleanup_(transfer_clear) struct transfer a = {}, b = {};
        const char *reason = "unset";

        make(&a, &alice, 5, &bob, 10, NULL, 0);
        make(&b, &alice, 5, &carol, 10, NULL, 0);
        cr_assert_eq(transfer_fraud_proof_check(&a, &b, &reason), 0);
        cr_assert_null(reason);
        cr_assert_eq(transfer_fraud_proof_check(&b, &a, NULL), 0);
}

Test(transfer, fraud_proof_refuses_what_proves_nothing) {
        _cleanup_(transfer_clear) struct transfer a = {}, b = {}, c = {}, d = {};
        const char *reason;

        make(&a, &alice, 5, &bob, 10, NULL, 0);
        make(&b, &alice, 6, &carol, 10, NULL, 0);
        make(&c, &bob, 5, &carol, 10, NULL, 0);
        cr_assert_eq(transfer_fraud_proof_check(&a, &a, &reason), -EINVAL);
        cr_assert_str_eq(reason, "the two transfers are the same transfer");
        cr_assert_eq(transfer_fraud_proof_check(&a, &b, &reason), -EINVAL);
        cr_assert_str_eq(reason, "the two transfers have different seqs");
        cr_assert_eq(transfer_fraud_proof_check(&a, &c, &reason), -EINVAL);
        cr_assert_str_eq(reason, "the two transfers have different payers");

        /* Forged: a "conflict" alice never signed. */
        make(&d, &alice, 5, &carol, 10, NULL, 0);
        d.signature[10] ^= 0x40;
        cr_assert_eq(transfer_fraud_proof_check(&a, &d, &reason), -EKEYREJECTED);
        cr_assert_eq(transfer_fraud_proof_check(&d, &a, &reason), -EKEYREJECTED);
        d.signature[10] ^= 0x40;
        d.amount = 0;
        cr_assert_eq(transfer_fraud_proof_check(&a, &d, &reason), -EBADMSG);
}

/* Sequences. */

Test(transfer, seqs_deliver_one_by_one_and_a_gap_waits) {
        _cleanup_(transfer_book_freep) struct transfer_book *b = book_with_issuer();
        _cleanup_(transfer_clear) struct transfer m1 = {}, m2 = {}, m3 = {};
        const char *reason;

        make(&m1, &issuer, 1, &alice, 10, NULL, 0);
        make(&m2, &issuer, 2, &alice, 20, NULL, 0);
        make(&m3, &issuer, 3, &bob, 30, NULL, 0);
        cr_assert_eq(transfer_book_deliver(b, &m3, NULL, &reason), -EAGAIN);
        cr_assert_str_eq(reason, "transfer seq is ahead of its payer's next: an earlier one is not delivered yet");
        cr_assert_eq(deliver(b, &m2), -EAGAIN);
        deliver_ok(b, &m1);
        cr_assert_eq(deliver(b, &m3), -EAGAIN);
        deliver_ok(b, &m2);
        deliver_ok(b, &m3);
        cr_assert_eq(account(b, &issuer).next_seq, 4);
        cr_assert_eq(transfer_book_supply(b), 60);
        cr_assert_eq(transfer_book_n_delivered(b), 3);
}

Test(transfer, replay_is_refused_as_already_delivered) {
        _cleanup_(transfer_book_freep) struct transfer_book *b = book_with_issuer();
        _cleanup_(transfer_clear) struct transfer m = {};
        const char *reason;

        make(&m, &issuer, 1, &alice, 10, NULL, 0);
        deliver_ok(b, &m);
        cr_assert_eq(transfer_book_check(b, &m, NULL, &reason), -EALREADY);
        cr_assert_str_eq(reason, "transfer is already delivered (a replay)");
        cr_assert_eq(deliver(b, &m), -EALREADY);
        /* A forged copy is refused before anything else. */
        m.signature[0] ^= 1;
        cr_assert_eq(deliver(b, &m), -EKEYREJECTED);
        cr_assert_eq(transfer_book_supply(b), 10);
        cr_assert_eq(account(b, &alice).pending, 10);
}

Test(transfer, conflict_hands_back_a_fraud_proof) {
        _cleanup_(transfer_book_freep) struct transfer_book *b = book_with_issuer();
        _cleanup_(transfer_clear) struct transfer to_bob = {}, to_carol = {};
        const struct transfer *other = NULL;
        const char *reason;
        uint8_t id[TRANSFER_ID_SIZE];

        mint(b, &alice, 100, id);
        make(&to_bob, &alice, 1, &bob, 100, (const uint8_t (*)[TRANSFER_ID_SIZE]) id, 1);
        make(&to_carol, &alice, 1, &carol, 100, (const uint8_t (*)[TRANSFER_ID_SIZE]) id, 1);
        deliver_ok(b, &to_bob);
        cr_assert_eq(transfer_book_deliver(b, &to_carol, &other, &reason), -ENOTUNIQ);
        cr_assert_str_eq(reason, "another transfer with the same payer and seq is delivered: a proof of fraud");
        cr_assert_not_null(other);
        cr_assert_eq(memcmp(other->payee, bob.pk, 32), 0);
        cr_assert_eq(transfer_fraud_proof_check(other, &to_carol, NULL), 0);
        cr_assert_eq(account(b, &bob).pending, 100);
        cr_assert_eq(account(b, &carol).pending, 0);
        cr_assert_eq(transfer_book_check_invariants(b, NULL), 0);
}

Test(transfer, double_spend_delivers_one_in_either_order) {
        for (int order = 0; order < 2; order++) {
                _cleanup_(transfer_book_freep) struct transfer_book *b = book_with_issuer();
                _cleanup_(transfer_clear) struct transfer m = {}, x = {}, y = {};
                const struct transfer *other = NULL;
                uint8_t id[TRANSFER_ID_SIZE];

                make(&m, &issuer, 1, &alice, 50, NULL, 0);
                transfer_id(&m, id);
                make(&x, &alice, 1, &bob, 50, (const uint8_t (*)[TRANSFER_ID_SIZE]) id, 1);
                make(&y, &alice, 1, &carol, 50, (const uint8_t (*)[TRANSFER_ID_SIZE]) id, 1);
                /* Before the mint both wait; after it, the first wins. */
                cr_assert_eq(deliver(b, order ? &y : &x), -EAGAIN);
                deliver_ok(b, &m);
                deliver_ok(b, order ? &y : &x);
                cr_assert_eq(transfer_book_deliver(b, order ? &x : &y, &other, NULL), -ENOTUNIQ);
                cr_assert_eq(transfer_fraud_proof_check(&x, &y, NULL), 0);
                cr_assert_eq(account(b, &bob).pending + account(b, &carol).pending, 50);
                cr_assert_eq(transfer_book_check_invariants(b, NULL), 0);
        }
}

/* Dependencies. */

Test(transfer, counting_an_incoming_transfer_funds_a_payment) {
        _cleanup_(transfer_book_freep) struct transfer_book *b = book_with_issuer();
        _cleanup_(transfer_clear) struct transfer t = {};
        uint8_t id[TRANSFER_ID_SIZE], got[1][TRANSFER_ID_SIZE];
        struct transfer_account a;

        mint(b, &alice, 100, id);
        a = account(b, &alice);
        cr_assert_eq(a.balance, 0);
        cr_assert_eq(a.pending, 100);
        cr_assert_eq(a.n_pending, 1);
        cr_assert_eq(transfer_book_pending(b, alice.pk, got, 1), 1);
        cr_assert_eq(memcmp(got[0], id, TRANSFER_ID_SIZE), 0);

        make(&t, &alice, 1, &bob, 30, (const uint8_t (*)[TRANSFER_ID_SIZE]) id, 1);
        deliver_ok(b, &t);
        a = account(b, &alice);
        cr_assert_eq(a.balance, 70);
        cr_assert_eq(a.pending, 0);
        cr_assert_eq(a.n_pending, 0);
        cr_assert_eq(a.next_seq, 2);
        cr_assert_eq(account(b, &bob).pending, 30);
        cr_assert_eq(account(b, &bob).balance, 0);
}

Test(transfer, counting_a_dependency_twice_is_refused) {
        _cleanup_(transfer_book_freep) struct transfer_book *b = book_with_issuer();
        _cleanup_(transfer_clear) struct transfer t1 = {}, t2 = {};
        uint8_t id[TRANSFER_ID_SIZE];
        const char *reason;

        mint(b, &alice, 100, id);
        make(&t1, &alice, 1, &bob, 10, (const uint8_t (*)[TRANSFER_ID_SIZE]) id, 1);
        deliver_ok(b, &t1);
        make(&t2, &alice, 2, &bob, 10, (const uint8_t (*)[TRANSFER_ID_SIZE]) id, 1);
        cr_assert_eq(transfer_book_deliver(b, &t2, NULL, &reason), -EPERM);
        cr_assert_str_eq(reason, "transfer names a dependency its payer counted already");
        cr_assert_eq(account(b, &alice).balance, 90);
}

Test(transfer, depending_on_a_transfer_to_another_is_refused) {
        _cleanup_(transfer_book_freep) struct transfer_book *b = book_with_issuer();
        _cleanup_(transfer_clear) struct transfer t = {};
        uint8_t id[TRANSFER_ID_SIZE];
        const char *reason;

        mint(b, &bob, 100, id);
        make(&t, &alice, 1, &carol, 10, (const uint8_t (*)[TRANSFER_ID_SIZE]) id, 1);
        cr_assert_eq(transfer_book_deliver(b, &t, NULL, &reason), -EPERM);
        cr_assert_str_eq(reason, "transfer names a dependency paid to another account");
        cr_assert_eq(account(b, &bob).pending, 100);
        cr_assert_eq(account(b, &alice).next_seq, 1);
}

Test(transfer, undelivered_dependency_waits_then_delivers) {
        _cleanup_(transfer_book_freep) struct transfer_book *b = book_with_issuer();
        _cleanup_(transfer_clear) struct transfer m = {}, t = {}, u = {};
        uint8_t id[TRANSFER_ID_SIZE], ids[2][TRANSFER_ID_SIZE];
        const char *reason;

        make(&m, &issuer, 1, &alice, 40, NULL, 0);
        transfer_id(&m, id);
        make(&t, &alice, 1, &bob, 40, (const uint8_t (*)[TRANSFER_ID_SIZE]) id, 1);
        cr_assert_eq(transfer_book_deliver(b, &t, NULL, &reason), -EAGAIN);
        cr_assert_str_eq(reason, "transfer names a dependency that is not delivered yet");
        deliver_ok(b, &m);
        deliver_ok(b, &t);

        /* A dependency that never comes waits forever; one that is paid to
         * another refuses even while another is missing. */
        memcpy(ids[0], id, TRANSFER_ID_SIZE);
        randombytes_buf(ids[1], TRANSFER_ID_SIZE);
        make(&u, &bob, 1, &carol, 1, (const uint8_t (*)[TRANSFER_ID_SIZE]) ids + 1, 1);
        cr_assert_eq(deliver(b, &u), -EAGAIN);
        transfer_clear(&u);
        make(&u, &carol, 1, &alice, 1, (const uint8_t (*)[TRANSFER_ID_SIZE]) ids, 2);
        cr_assert_eq(deliver(b, &u), -EPERM);
}

Test(transfer, many_dependencies_are_counted_at_once) {
        _cleanup_(transfer_book_freep) struct transfer_book *b = book_with_issuer();
        _cleanup_(transfer_clear) struct transfer t = {};

        for (unsigned i = 1; i <= TRANSFER_MAX_DEPS; i++)
                mint(b, &alice, i, NULL);
        cr_assert_eq(account(b, &alice).n_pending, TRANSFER_MAX_DEPS);
        pay(&t, b, &alice, &bob, TRANSFER_MAX_DEPS * (TRANSFER_MAX_DEPS + 1) / 2);
        cr_assert_eq(t.n_deps, TRANSFER_MAX_DEPS);
        deliver_ok(b, &t);
        cr_assert_eq(account(b, &alice).balance, 0);
        cr_assert_eq(account(b, &alice).n_pending, 0);
}

/* Balances. */

Test(transfer, cannot_spend_more_than_counted) {
        _cleanup_(transfer_book_freep) struct transfer_book *b = book_with_issuer();
        _cleanup_(transfer_clear) struct transfer over = {}, exact = {}, more = {};
        uint8_t id[TRANSFER_ID_SIZE];
        const char *reason;

        mint(b, &alice, 100, id);
        make(&over, &alice, 1, &bob, 101, (const uint8_t (*)[TRANSFER_ID_SIZE]) id, 1);
        cr_assert_eq(transfer_book_deliver(b, &over, NULL, &reason), -EDQUOT);
        cr_assert_str_eq(reason, "transfer amount is over its payer's balance and dependencies");
        make(&exact, &alice, 1, &bob, 100, (const uint8_t (*)[TRANSFER_ID_SIZE]) id, 1);
        deliver_ok(b, &exact);
        make(&more, &alice, 2, &bob, 1, NULL, 0);
        cr_assert_eq(deliver(b, &more), -EDQUOT);
        cr_assert_eq(account(b, &alice).balance, 0);
}

Test(transfer, pending_credits_are_spent_only_by_naming_them) {
        _cleanup_(transfer_book_freep) struct transfer_book *b = book_with_issuer();
        _cleanup_(transfer_clear) struct transfer t = {};

        mint(b, &alice, 100, NULL);
        make(&t, &alice, 1, &bob, 1, NULL, 0);
        cr_assert_eq(deliver(b, &t), -EDQUOT);
}

Test(transfer, sybil_with_nothing_cannot_pay) {
        _cleanup_(transfer_book_freep) struct transfer_book *b = book_with_issuer();

        mint(b, &alice, 1000, NULL);
        for (uint64_t amount = 1; amount <= 1u << 20; amount <<= 1) {
                _cleanup_(transfer_clear) struct transfer t = {};

                make(&t, &sybil1, 1, &bob, amount, NULL, 0);
                cr_assert_eq(deliver(b, &t), -EDQUOT);
        }
        {
                _cleanup_(transfer_clear) struct transfer t = {};

                make(&t, &sybil1, 1, &bob, UINT64_MAX, NULL, 0);
                cr_assert_eq(deliver(b, &t), -EDQUOT);
        }
        cr_assert_eq(account(b, &sybil1).next_seq, 1);
        cr_assert_eq(account(b, &bob).pending, 0);
        cr_assert_eq(transfer_book_supply(b), 1000);
}

Test(transfer, two_sybils_paying_each_other_create_nothing) {
        _cleanup_(transfer_book_freep) struct transfer_book *b = book_with_issuer();
        const struct node *s[2] = { &sybil1, &sybil2 };

        /* With nothing: every payment either way, with or without naming
         * the other's (refused) transfers, is refused. */
        for (unsigned i = 0; i < 64; i++) {
                _cleanup_(transfer_clear) struct transfer t = {};

                pay(&t, b, s[i % 2], s[(i + 1) % 2], 1 + i);
                cr_assert_eq(deliver(b, &t), -EDQUOT);
        }
        cr_assert_eq(transfer_book_supply(b), 0);
        cr_assert_eq(transfer_book_n_delivered(b), 0);

        /* With 10 credits minted to one: they pass back and forth, and the
         * total never grows. */
        mint(b, &sybil1, 10, NULL);
        for (unsigned i = 0; i < 64; i++) {
                _cleanup_(transfer_clear) struct transfer t = {}, greedy = {};
                const struct node *from = s[i % 2], *to = s[(i + 1) % 2];
                struct transfer_account a = account(b, from);

                pay(&greedy, b, from, to, a.balance + a.pending + 1);
                cr_assert_eq(deliver(b, &greedy), -EDQUOT);
                pay(&t, b, from, to, a.balance + a.pending);
                deliver_ok(b, &t);
                cr_assert_eq(account(b, &sybil1).balance + account(b, &sybil1).pending +
                             account(b, &sybil2).balance + account(b, &sybil2).pending, 10);
        }
        cr_assert_eq(transfer_book_supply(b), 10);
}

/* Mints. */

Test(transfer, mints_come_only_from_configured_issuers) {
        _cleanup_(transfer_book_freep) struct transfer_book *b = book_with_issuer();
        _cleanup_(transfer_book_freep) struct transfer_book *none = transfer_book_new(NULL, 0);
        _cleanup_(transfer_clear) struct transfer m = {}, fake = {};

        cr_assert_not_null(none);
        make(&m, &issuer, 1, &alice, 500, NULL, 0);
        deliver_ok(b, &m);
        cr_assert_eq(transfer_book_supply(b), 500);
        cr_assert(account(b, &issuer).issuer);
        cr_assert_eq(account(b, &issuer).balance, 0);

        /* A book that does not accept this issuer sees an overspend. */
        cr_assert_eq(deliver(none, &m), -EDQUOT);
        cr_assert_eq(transfer_book_supply(none), 0);

        /* Mallory minting for herself is an overspend. */
        make(&fake, &mallory, 1, &alice, 500, NULL, 0);
        cr_assert_eq(deliver(b, &fake), -EDQUOT);
        cr_assert_eq(transfer_book_supply(b), 500);
}

Test(transfer, issuer_cannot_spend_others_credits) {
        _cleanup_(transfer_book_freep) struct transfer_book *b = book_with_issuer();
        _cleanup_(transfer_clear) struct transfer stolen = {}, grab = {}, back = {}, redeem = {};
        uint8_t id[TRANSFER_ID_SIZE], back_id[TRANSFER_ID_SIZE];
        const char *reason;

        mint(b, &alice, 100, id);

        /* Signing for alice's account: the signature is not alice's. */
        make(&stolen, &issuer, 1, &bob, 100, (const uint8_t (*)[TRANSFER_ID_SIZE]) id, 1);
        memcpy(stolen.payer, alice.pk, 32);
        cr_assert_eq(deliver(b, &stolen), -EKEYREJECTED);

        /* Naming alice's incoming transfer as its own dependency. */
        make(&grab, &issuer, 2, &bob, 100, (const uint8_t (*)[TRANSFER_ID_SIZE]) id, 1);
        cr_assert_eq(transfer_book_deliver(b, &grab, NULL, &reason), -EPERM);

        /* Credits paid to the issuer are redeemed: it cannot count them. */
        make(&back, &alice, 1, &issuer, 40, (const uint8_t (*)[TRANSFER_ID_SIZE]) id, 1);
        deliver_ok(b, &back);
        transfer_id(&back, back_id);
        make(&redeem, &issuer, 2, &bob, 40, (const uint8_t (*)[TRANSFER_ID_SIZE]) back_id, 1);
        cr_assert_eq(transfer_book_deliver(b, &redeem, NULL, &reason), -EPERM);
        cr_assert_str_eq(reason, "a mint names dependencies: what is paid to an issuer stays out of circulation");

        cr_assert_eq(account(b, &alice).balance, 60);
        cr_assert_eq(account(b, &issuer).pending, 40);
        cr_assert_eq(transfer_book_supply(b), 100);
        cr_assert_eq(transfer_book_check_invariants(b, NULL), 0);
}

Test(transfer, issuer_conflicting_mints_are_fraud_too) {
        _cleanup_(transfer_book_freep) struct transfer_book *b = book_with_issuer();
        _cleanup_(transfer_clear) struct transfer m1 = {}, m2 = {};
        const struct transfer *other;

        make(&m1, &issuer, 1, &alice, 5, NULL, 0);
        make(&m2, &issuer, 1, &alice, 6, NULL, 0);
        deliver_ok(b, &m1);
        cr_assert_eq(transfer_book_deliver(b, &m2, &other, NULL), -ENOTUNIQ);
        cr_assert_eq(transfer_fraud_proof_check(other, &m2, NULL), 0);
        cr_assert_eq(transfer_book_supply(b), 5);
}

Test(transfer, supply_cannot_overflow) {
        _cleanup_(transfer_book_freep) struct transfer_book *b = book_with_issuer();
        _cleanup_(transfer_clear) struct transfer m = {};
        const char *reason;

        mint(b, &alice, UINT64_MAX - 1, NULL);
        mint(b, &bob, 1, NULL);
        make(&m, &issuer, 3, &carol, 1, NULL, 0);
        cr_assert_eq(transfer_book_deliver(b, &m, NULL, &reason), -EOVERFLOW);
        cr_assert_str_eq(reason, "mint would take the supply past UINT64_MAX");
        cr_assert_eq(transfer_book_supply(b), UINT64_MAX);
}

Test(transfer, malformed_transfers_are_refused_by_the_book) {
        _cleanup_(transfer_book_freep) struct transfer_book *b = book_with_issuer();
        _cleanup_(transfer_clear) struct transfer m = {};

        make(&m, &issuer, 1, &alice, 5, NULL, 0);
        m.amount = 0;
        cr_assert_eq(deliver(b, &m), -EBADMSG);
        m.amount = 6;
        cr_assert_eq(deliver(b, &m), -EKEYREJECTED);
        cr_assert_eq(transfer_book_n_delivered(b), 0);
        cr_assert_eq(transfer_book_supply(b), 0);
}

/* The property: any order, the same book. */

#define P_ACCOUNTS 5
#define P_BOOKS 3

struct item {
        uint8_t *buf;
        size_t size;
        uint8_t id[TRANSFER_ID_SIZE];
        bool valid;             /* delivered by the generator */
        bool replay;            /* a second copy of a valid one */
};

static uint32_t rnd(uint32_t n) {
        return randombytes_uniform(n);
}

static void shuffle(size_t *v, size_t n) {
        for (size_t i = n; i > 1; i--) {
                size_t j = rnd((uint32_t) i), tmp = v[i - 1];

                v[i - 1] = v[j];
                v[j] = tmp;
        }
}

static void push(struct item *items, size_t *n, const struct transfer *t, bool valid, bool replay) {
        struct item *it = &items[(*n)++];

        cr_assert_eq(transfer_encode(t, &it->buf, &it->size), 0);
        transfer_id(t, it->id);
        it->valid = valid;
        it->replay = replay;
}

/* One random stream: the generator's book decides what is valid, the
 * stream holds those and refusable ones of every kind. */
static size_t generate(struct transfer_book *g, const struct node *acc, struct item *items, size_t n_steps,
                       uint64_t *minted) {
        size_t n = 0;

        for (size_t step = 0; step < n_steps; step++) {
                _cleanup_(transfer_clear) struct transfer t = {};
                uint8_t ids[TRANSFER_MAX_DEPS][TRANSFER_ID_SIZE], pick[TRANSFER_MAX_DEPS][TRANSFER_ID_SIZE];
                const struct node *payer = &acc[rnd(P_ACCOUNTS)], *payee;
                struct transfer_account a = account(g, payer);
                size_t n_ids = transfer_book_pending(g, payer->pk, ids, TRANSFER_MAX_DEPS), n_pick = 0;
                uint64_t funds = a.balance;
                uint32_t kind = rnd(100);

                do
                        payee = &acc[rnd(P_ACCOUNTS)];
                while (payee == payer);
                if (rnd(10) == 0)
                        payee = &issuer;
                for (size_t i = 0; i < n_ids; i++)
                        if (rnd(2)) {
                                memcpy(pick[n_pick++], ids[i], TRANSFER_ID_SIZE);
                                funds += transfer_book_get(g, ids[i])->amount;
                        }

                if (kind < 20) {
                        /* A mint. */
                        make(&t, &issuer, account(g, &issuer).next_seq, payee == &issuer ? payer : payee,
                             1 + rnd(1000), NULL, 0);
                        deliver_ok(g, &t);
                        *minted += t.amount;
                        push(items, &n, &t, true, false);
                        if (rnd(8) == 0)
                                push(items, &n, &t, true, true);
                        continue;
                }

                make(&t, payer, a.next_seq, payee, 1, (const uint8_t (*)[TRANSFER_ID_SIZE]) pick, n_pick);
                if (kind < 65) {
                        /* A valid payment of part of what it may spend. */
                        if (funds == 0)
                                continue;
                        cr_assert_lt(funds, UINT32_MAX);
                        t.amount = 1 + rnd((uint32_t) funds);
                        cr_assert_eq(transfer_sign(&t, payer->sk), 0);
                        deliver_ok(g, &t);
                        push(items, &n, &t, true, false);
                        if (rnd(8) == 0)
                                push(items, &n, &t, true, true);
                } else if (kind < 75) {
                        /* An overspend, naming everything pending. */
                        transfer_clear(&t);
                        make(&t, payer, a.next_seq, payee, a.balance + a.pending + 1 + rnd(100),
                             (const uint8_t (*)[TRANSFER_ID_SIZE]) ids, n_ids);
                        cr_assert_eq(transfer_book_check(g, &t, NULL, NULL), -EDQUOT);
                        push(items, &n, &t, false, false);
                } else if (kind < 83) {
                        /* Naming a transfer delivered to someone else or
                         * counted already. */
                        const struct item *other = &items[rnd((uint32_t) (n ? n : 1))];

                        if (n == 0 || !other->valid)
                                continue;
                        transfer_clear(&t);
                        make(&t, payer, a.next_seq, payee, 1, (const uint8_t (*)[TRANSFER_ID_SIZE]) other->id, 1);
                        if (transfer_book_check(g, &t, NULL, NULL) != -EPERM)
                                continue;       /* it is pending to the payer */
                        push(items, &n, &t, false, false);
                } else if (kind < 90) {
                        /* Far ahead: waits forever. */
                        t.seq = a.next_seq + 1000000;
                        cr_assert_eq(transfer_sign(&t, payer->sk), 0);
                        cr_assert_eq(transfer_book_check(g, &t, NULL, NULL), -EAGAIN);
                        push(items, &n, &t, false, false);
                } else {
                        /* A tampered valid-looking one: never decodes. */
                        push(items, &n, &t, false, false);
                        items[n - 1].buf[rnd((uint32_t) items[n - 1].size)] ^= (uint8_t) (1u << rnd(8));
                }
        }
        return n;
}

/* What the books answered, over every run: each kind must have come up. */
struct outcomes {
        size_t delivered, retried, undecodable, already, conflict, perm, quota;
};

/* Delivers the stream to b in a random order, retrying what waits, until a
 * round changes nothing; checks the invariants after every delivery. */
static void deliver_shuffled(struct transfer_book *b, const struct item *items, size_t n, struct outcomes *o) {
        _cleanup_free_ size_t *todo = calloc(n ? n : 1, sizeof(size_t));
        size_t n_todo = n;
        bool progress = true;

        cr_assert_not_null(todo);
        for (size_t i = 0; i < n; i++)
                todo[i] = i;

        while (progress && n_todo > 0) {
                size_t kept = 0;

                progress = false;
                shuffle(todo, n_todo);
                for (size_t i = 0; i < n_todo; i++) {
                        const struct item *it = &items[todo[i]];
                        _cleanup_(transfer_clear) struct transfer t = {};
                        const char *reason;
                        int r;

                        r = transfer_decode(it->buf, it->size, &t, &reason);
                        if (r < 0) {
                                cr_assert(r == -EBADMSG || r == -EKEYREJECTED);
                                cr_assert_not(it->valid);
                                o->undecodable++;
                                continue;
                        }
                        r = transfer_book_deliver(b, &t, NULL, &reason);
                        if (r == -EAGAIN) {
                                o->retried++;
                                todo[kept++] = todo[i];
                                continue;
                        }
                        if (r == 0) {
                                cr_assert(it->valid, "delivered an invalid transfer");
                                progress = true;
                                o->delivered++;
                        } else {
                                cr_assert(r == -EALREADY || r == -ENOTUNIQ || r == -EPERM || r == -EDQUOT,
                                          "%d %s", r, reason);
                                o->already += r == -EALREADY;
                                o->conflict += r == -ENOTUNIQ;
                                o->perm += r == -EPERM;
                                o->quota += r == -EDQUOT;
                        }
                        cr_assert_eq(transfer_book_check_invariants(b, &reason), 0, "%s", reason);
                }
                n_todo = kept;
        }
}

Test(transfer, random_streams_converge_in_any_order, .timeout = 100) {
        struct outcomes o = {};

        for (unsigned run = 0; run < 6; run++) {
                _cleanup_(transfer_book_freep) struct transfer_book *g = book_with_issuer();
                struct node acc[P_ACCOUNTS];
                struct item items[400] = {};
                uint8_t want[32];
                uint64_t minted = 0;
                size_t n, n_valid = 0;

                for (unsigned i = 0; i < P_ACCOUNTS; i++)
                        crypto_sign_keypair(acc[i].pk, acc[i].sk);
                n = generate(g, acc, items, 150, &minted);
                cr_assert_leq(n, ELEMENTSOF(items));
                cr_assert_eq(transfer_book_supply(g), minted);
                cr_assert_eq(transfer_book_check_invariants(g, NULL), 0);
                transfer_book_digest(g, want);
                for (size_t i = 0; i < n; i++)
                        n_valid += items[i].valid && !items[i].replay;
                cr_assert_eq(transfer_book_n_delivered(g), n_valid);

                for (unsigned k = 0; k < P_BOOKS; k++) {
                        _cleanup_(transfer_book_freep) struct transfer_book *b = book_with_issuer();
                        uint8_t got[32];

                        deliver_shuffled(b, items, n, &o);
                        transfer_book_digest(b, got);
                        cr_assert_eq(memcmp(got, want, 32), 0, "run %u book %u diverged", run, k);
                        cr_assert_eq(transfer_book_supply(b), minted);
                        cr_assert_eq(transfer_book_n_delivered(b), n_valid);
                        for (size_t i = 0; i < n; i++)
                                if (items[i].valid)
                                        cr_assert(transfer_book_has(b, items[i].id));
                        for (unsigned i = 0; i < P_ACCOUNTS; i++) {
                                struct transfer_account x = account(g, &acc[i]), y = account(b, &acc[i]);

                                cr_assert_eq(x.balance, y.balance);
                                cr_assert_eq(x.pending, y.pending);
                                cr_assert_eq(x.next_seq, y.next_seq);
                        }
                }
                for (size_t i = 0; i < n; i++)
                        free(items[i].buf);
        }
        cr_log_info("delivered %zu retried %zu undecodable %zu already %zu conflict %zu perm %zu quota %zu",
                    o.delivered, o.retried, o.undecodable, o.already, o.conflict, o.perm, o.quota);
        cr_assert(o.delivered > 0 && o.retried > 0 && o.undecodable > 0 && o.already > 0 && o.conflict > 0 &&
                  o.perm > 0 && o.quota > 0,
                  "delivered %zu retried %zu undecodable %zu already %zu conflict %zu perm %zu quota %zu",
                  o.delivered, o.retried, o.undecodable, o.already, o.conflict, o.perm, o.quota);
}

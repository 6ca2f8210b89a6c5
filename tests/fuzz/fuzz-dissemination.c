/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The intake of the dissemination (daemon/core/dissemination.c) from
 * anyone, two ways, chosen by the first byte.  Raw: the rest is a stream
 * of messages (a byte naming the sender, two of length, the bytes) handed
 * to dissemination_receive().  Scripted: every 8 bytes make one message
 * the harness signs for real — ECHO or READY, from one of four senders, of
 * a transfer by one of four payers (the first an issuer) with a seq, a
 * payee and an amount from the bytes — or a clock tick, so the protocol
 * itself is reached.  After every message the book's invariants hold
 * (supply = Σ mints = Σ balances + Σ pending) and every transfer it holds
 * verifies. */

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dissemination.h"
#include "fuzz.h"
#include "transfer.h"

#define ACCOUNTS 5              /* 0 the issuer, 4 this node */
#define SELF 4

static uint8_t pk[ACCOUNTS][32], sk[ACCOUNTS][64];
static uint64_t clock_usec;
static size_t sent;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        if (sodium_init() < 0)
                abort();
        for (int i = 0; i < ACCOUNTS; i++) {
                uint8_t seed[32] = { (uint8_t) (i + 1) };

                crypto_sign_seed_keypair(pk[i], sk[i], seed);
        }
        return 0;
}

static uint64_t io_now(void *userdata) {
        return clock_usec;
}

static void io_send(void *userdata, const uint8_t to[32], const uint8_t *data, size_t size) {
        FUZZ_CHECK(size > 0 && size <= DISSEMINATION_MESSAGE_MAX);
        sent++;
}

static void io_delivered(void *userdata, const struct transfer *t, const uint8_t id[32]) {
        FUZZ_CHECK(transfer_verify(t, NULL) == 0);
}

static void io_fraud(void *userdata, const struct transfer *a, const struct transfer *b) {
        FUZZ_CHECK(transfer_fraud_proof_check(a, b, NULL) == 0);
}

static void check(const struct transfer_book *b) {
        const char *reason;

        FUZZ_CHECK(transfer_book_check_invariants(b, &reason) == 0);
}

/* Mints 100 to accounts 1..3, straight into the book: payers with credits. */
static void fund(struct transfer_book *b) {
        for (int i = 1; i <= 3; i++) {
                struct transfer t = { .seq = (uint64_t) i, .amount = 100 };

                memcpy(t.payer, pk[0], 32);
                memcpy(t.payee, pk[i], 32);
                FUZZ_CHECK(transfer_sign(&t, sk[0]) == 0);
                FUZZ_CHECK(transfer_book_deliver(b, &t, NULL, NULL) == 0);
        }
}

static void scripted(struct dissemination *d, struct transfer_book *b, const uint8_t *p, size_t size) {
        for (; size >= 8; p += 8, size -= 8) {
                struct transfer t = {};
                uint8_t ids[4][TRANSFER_ID_SIZE];
                uint8_t *buf = NULL;
                size_t n, n_deps;
                unsigned payer = p[0] % 4, payee = p[1] % ACCOUNTS, from = p[2] % 4;

                if (p[0] >= 0xf0) {
                        clock_usec += 1000000u * (1 + p[1] % 4);
                        dissemination_tick(d);
                        check(b);
                        continue;
                }
                t.seq = 1 + p[3] % 6;
                t.amount = 1 + (uint64_t) p[4] % 150;
                memcpy(t.payer, pk[payer], 32);
                memcpy(t.payee, pk[payee == payer ? (payee + 1) % ACCOUNTS : payee], 32);
                /* Dependencies: some of what the book holds pending to the payer. */
                n_deps = payer == 0 ? 0 : transfer_book_pending(b, pk[payer], ids, 4);
                if (n_deps > 4)
                        n_deps = 4;
                n_deps = p[5] & 0x80 ? n_deps : 0;
                if (n_deps > 0) {
                        t.deps = malloc(n_deps * TRANSFER_ID_SIZE);
                        FUZZ_CHECK(t.deps);
                        memcpy(t.deps, ids, n_deps * TRANSFER_ID_SIZE);
                        t.n_deps = n_deps;
                }
                FUZZ_CHECK(transfer_sign(&t, sk[payer]) == 0);
                FUZZ_CHECK(dissemination_encode_transfer(p[5] & 1 ? DISSEMINATION_READY : DISSEMINATION_ECHO, &t,
                                                         &buf, &n) == 0);
                (void) dissemination_receive(d, pk[from], buf, n);
                free(buf);
                transfer_clear(&t);
                check(b);
        }
}

static void raw(struct dissemination *d, struct transfer_book *b, const uint8_t *p, size_t size) {
        while (size >= 3) {
                size_t len = (size_t) p[1] | (size_t) p[2] << 8;
                unsigned from = p[0] % ACCOUNTS;

                p += 3;
                size -= 3;
                if (len > size)
                        len = size;
                (void) dissemination_receive(d, pk[from], p, len);
                check(b);
                p += len;
                size -= len;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct dissemination_config c;
        struct dissemination_io io = {
                .now_usec = io_now,
                .send = io_send,
                .delivered = io_delivered,
                .fraud = io_fraud,
        };
        struct transfer_book *b;
        struct dissemination *d = NULL;

        if (size < 1)
                return 0;
        clock_usec = 1000;
        b = transfer_book_new((const uint8_t (*)[32]) pk, 1);
        FUZZ_CHECK(b);
        fund(b);
        dissemination_config_default(&c);
        c.max_slots = 64;
        c.max_unfunded = 8;
        FUZZ_CHECK(dissemination_new(&c, &io, pk[SELF], b, &d) == 0);
        FUZZ_CHECK(dissemination_set_peers(d, (const uint8_t (*)[32]) pk, ACCOUNTS) == 0);

        if (data[0] & 1)
                scripted(d, b, data + 1, size - 1);
        else
                raw(d, b, data + 1, size - 1);

        dissemination_free(d);
        transfer_book_free(b);
        return 0;
}

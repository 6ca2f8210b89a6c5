/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Transfers (daemon/core/transfer.c) from anywhere, two ways.  The raw
 * input through transfer_decode(): whatever decodes re-encodes to the same
 * bytes.  And the input as a script of signed transfers among four fixed
 * accounts (the first an issuer), delivered to a book, those answered
 * -EAGAIN retried after each later delivery: whatever the order, the book's
 * invariants hold after every delivery (supply = Σ mints = Σ balances +
 * Σ pending), a conflict always comes with its fraud proof, and a second
 * book fed what the first delivered, in the same order, ends identical. */

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "transfer.h"

#define ACCOUNTS 4
#define OPS_MAX 64

static uint8_t pk[ACCOUNTS][32], sk[ACCOUNTS][64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        if (sodium_init() < 0)
                abort();
        for (int i = 0; i < ACCOUNTS; i++) {
                uint8_t seed[32] = { (uint8_t) (i + 1) };

                crypto_sign_seed_keypair(pk[i], sk[i], seed);
        }
        return 0;
}

static void raw(const uint8_t *data, size_t size) {
        struct transfer t = {};
        uint8_t *enc = NULL;
        size_t n;

        if (transfer_decode(data, size, &t, NULL) < 0)
                return;
        FUZZ_CHECK(transfer_encode(&t, &enc, &n) == 0);
        FUZZ_CHECK(n == size && memcmp(enc, data, n) == 0);
        free(enc);
        transfer_clear(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct transfer made[OPS_MAX] = {};
        uint8_t ids[OPS_MAX][TRANSFER_ID_SIZE];
        bool waiting[OPS_MAX] = {}, delivered[OPS_MAX] = {};
        size_t order[OPS_MAX], n_order = 0, n_made = 0;
        struct transfer_book *a, *b;
        uint8_t da[32], db[32];

        raw(data, size);
        a = transfer_book_new((const uint8_t (*)[32]) pk, 1);
        b = transfer_book_new((const uint8_t (*)[32]) pk, 1);
        FUZZ_CHECK(a && b);
        /* Each op: payer, payee, seq, amount, deps bitmap (of the last 8 made). */
        for (size_t at = 0; at + 5 <= size && n_made < OPS_MAX; at += 5) {
                struct transfer *t = &made[n_made];
                uint8_t deps = data[at + 4];
                size_t nd = 0;

                memcpy(t->payer, pk[data[at] % ACCOUNTS], 32);
                memcpy(t->payee, pk[(data[at] / ACCOUNTS) % ACCOUNTS], 32);
                t->seq = 1 + data[at + 1] % 8;
                t->amount = 1 + (uint64_t) data[at + 2] * (data[at + 3] % 4 == 0 ? 1000 : 1);
                t->deps = calloc(8, TRANSFER_ID_SIZE);
                FUZZ_CHECK(t->deps);
                for (size_t k = 0; k < 8 && k < n_made; k++)
                        if (deps & (1u << k))
                                memcpy(t->deps[nd++], ids[n_made - 1 - k], TRANSFER_ID_SIZE);
                t->n_deps = nd;
                if (transfer_sign(t, sk[data[at] % ACCOUNTS]) < 0) {
                        transfer_clear(t);
                        continue;       /* payer == payee, or duplicate deps */
                }
                transfer_id(t, ids[n_made]);
                waiting[n_made++] = true;

                /* Deliver what can be, until nothing moves. */
                for (bool moved = true; moved;) {
                        moved = false;
                        for (size_t i = 0; i < n_made; i++) {
                                const struct transfer *conflict = NULL;
                                int r;

                                if (!waiting[i])
                                        continue;
                                r = transfer_book_deliver(a, &made[i], &conflict, NULL);
                                if (r == -EAGAIN)
                                        continue;
                                waiting[i] = false;
                                if (r == -ENOTUNIQ)
                                        FUZZ_CHECK(conflict && transfer_fraud_proof_check(conflict, &made[i], NULL) == 0);
                                if (r == 0) {
                                        delivered[i] = true;
                                        order[n_order++] = i;
                                        moved = true;
                                        FUZZ_CHECK(transfer_book_check_invariants(a, NULL) == 0);
                                }
                        }
                }
        }
        for (size_t i = 0; i < n_order; i++)
                FUZZ_CHECK(transfer_book_deliver(b, &made[order[i]], NULL, NULL) == 0);
        transfer_book_digest(a, da);
        transfer_book_digest(b, db);
        FUZZ_CHECK(memcmp(da, db, 32) == 0);
        for (size_t i = 0; i < n_made; i++)
                FUZZ_CHECK(!delivered[i] || transfer_book_has(a, ids[i]));
        for (size_t i = 0; i < n_made; i++)
                transfer_clear(&made[i]);
        transfer_book_free(a);
        transfer_book_free(b);
        return 0;
}

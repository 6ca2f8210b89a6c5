/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The ledger's cheque intake on anything a peer can send: past the decoder
 * into the comparison with what we hold and the durable write.  Byte 0
 * picks how the rest is used: odd, as the body of a cheque signed with the
 * payer key below (so the rules behind the signature are reached); even,
 * as an encoded SignedCheque as it comes off the wire.  One ledger lives
 * through the run, so cheques meet the ones kept before them.
 *
 * After every input: a kept cheque (1) is the highest we hold from its
 * payer, the books add up (what we received never goes down), and a
 * refusal says why. */

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cheque.h"
#include "fuzz.h"
#include "ledger.h"
#include "log.h"
#include "macro.h"
#include "swarm.pb-c.h"

static uint8_t pk[32], sk[64];
static struct ledger *ledger;
static uint64_t received;
static char dir[] = "/tmp/swarm-fuzz-ledger-XXXXXX";

static void cleanup(void) {
        char path[128];

        ledger = ledger_free(ledger);
        snprintf(path, sizeof(path), "%s/ledger.db", dir);
        (void) unlink(path);
        snprintf(path, sizeof(path), "%s/ledger.db-wal", dir);
        (void) unlink(path);
        snprintf(path, sizeof(path), "%s/ledger.db-shm", dir);
        (void) unlink(path);
        (void) rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        uint8_t seed[32] = { 'f', 'u', 'z', 'z' };
        char path[128], *error = NULL;

        if (sodium_init() < 0 || !mkdtemp(dir))
                abort();
        /* Payer and payee alike (the credits seeds are signed so). */
        crypto_sign_seed_keypair(pk, sk, seed);
        snprintf(path, sizeof(path), "%s/ledger.db", dir);
        log_set_max_level(LOG_CRIT);
        if (ledger_open(path, pk, &ledger, &error) < 0) {
                fprintf(stderr, "ledger_open: %s\n", error ?: "?");
                abort();
        }
        atexit(cleanup);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ uint8_t *signed_bytes = NULL;
        const uint8_t *cheque = data + 1;
        size_t cheque_size = size > 0 ? size - 1 : 0;
        struct ledger_balance b;
        const char *reason = NULL;
        int r;

        if (size < 1)
                return 0;
        if (data[0] & 1) {
                Swarm__SignedCheque s = SWARM__SIGNED_CHEQUE__INIT;
                uint8_t sig[crypto_sign_BYTES];

                crypto_sign_detached(sig, NULL, data + 1, size - 1, sk);
                s.body = (ProtobufCBinaryData) { .len = size - 1, .data = (uint8_t *) data + 1 };
                s.signature = (ProtobufCBinaryData) { .len = sizeof(sig), .data = sig };
                cheque_size = swarm__signed_cheque__get_packed_size(&s);
                signed_bytes = malloc(cheque_size);
                FUZZ_CHECK(signed_bytes);
                swarm__signed_cheque__pack(&s, signed_bytes);
                cheque = signed_bytes;
        }

        r = ledger_accept_cheque(ledger, cheque, cheque_size, 1700000000000000ull, &reason);
        if (getenv("FUZZ_LEDGER_TRACE"))        /* each verdict, to see how deep the seeds go */
                fprintf(stderr, "accept: %d %s\n", r, reason ?: "");
        FUZZ_CHECK(r == 0 || r == 1 || (r < 0 && reason));
        if (ledger_get_balance(ledger, &b) == -EOVERFLOW)
                return 0;       /* the sum over payers: refused, not wrong */
        FUZZ_CHECK(b.cheques_received >= received);     /* money in never goes away */
        FUZZ_CHECK(r != 1 || b.cheques_received > received);
        FUZZ_CHECK(r == 1 || b.cheques_received == received);
        received = b.cheques_received;
        return 0;
}

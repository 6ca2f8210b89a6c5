/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What peers send about money and reputation, on anything: the bytes as an
 * encoded SignedCheque (cheque_open_bytes()), as the body of a cheque and
 * of an opinion signed with a fixed key (so the decoders behind the
 * signature check are reached), and what opens fed to the reputation as a
 * peer's opinion.  What opens must sign and open again to the same. */

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cheque.h"
#include "fuzz.h"
#include "macro.h"
#include "opinion.h"
#include "reputation.h"

static uint8_t pk[32], sk[64], self[32];
static struct reputation *rep;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        uint8_t seed[32] = { 'f', 'u', 'z', 'z' };
        struct reputation_params p;

        if (sodium_init() < 0)
                abort();
        crypto_sign_seed_keypair(pk, sk, seed);
        memset(self, 0x5a, sizeof(self));
        reputation_params_default(&p);
        if (reputation_new(self, &p, &rep) < 0)
                abort();
        return 0;
}

static void cheque_bytes(const uint8_t *data, size_t size) {
        struct cheque c;
        const char *reason = NULL;
        int r;

        r = cheque_open_bytes(data, size, self, &c, &reason);
        FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -EKEYREJECTED || r == -EXDEV || r == -ENOMEM);
        FUZZ_CHECK(r == 0 || reason);
}

/* The bytes as a cheque body signed by pk, made out to pk. */
static void cheque_body(const uint8_t *data, size_t size) {
        Swarm__SignedCheque s = SWARM__SIGNED_CHEQUE__INIT;
        struct cheque c, again;
        const char *reason = NULL;
        uint8_t sig[64], *bytes = NULL;
        size_t n;
        int r;

        if (size == 0)
                return;
        crypto_sign_detached(sig, NULL, data, size, sk);
        s.body = (ProtobufCBinaryData) { .len = size, .data = (uint8_t *) data };
        s.signature = (ProtobufCBinaryData) { .len = sizeof(sig), .data = sig };
        r = cheque_open(&s, pk, &c, &reason);
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG || r == -EKEYREJECTED || r == -EXDEV || r == -ENOMEM);
                return;
        }
        /* Only the payer's key opens its cheques. */
        FUZZ_CHECK(memcmp(c.payer, pk, 32) == 0 && memcmp(c.payee, pk, 32) == 0);
        FUZZ_CHECK(cheque_sign(&c, sk, &bytes, &n) == 0);
        FUZZ_CHECK(cheque_open_bytes(bytes, n, pk, &again, &reason) == 0);
        FUZZ_CHECK(again.amount == c.amount && again.has_last_job == c.has_last_job);
        FUZZ_CHECK(cheque_compare(c.amount, again.amount) == 0);
        free(bytes);
}

/* The bytes as an opinion body signed by pk; what opens goes into the
 * reputation like a peer's. */
static void opinion_body(const uint8_t *data, size_t size) {
        Swarm__SignedOpinion s = SWARM__SIGNED_OPINION__INIT, resigned;
        _cleanup_free_ struct reputation_opinion_entry *entries = NULL, *again = NULL;
        struct reputation_view v;
        const char *reason = NULL;
        uint8_t sig[64], issuer[32], issuer2[32];
        uint64_t version, version2;
        size_t n = 0, n2 = 0;
        int r;

        if (size == 0)
                return;
        crypto_sign_detached(sig, NULL, data, size, sk);
        s.body = (ProtobufCBinaryData) { .len = size, .data = (uint8_t *) data };
        s.signature = (ProtobufCBinaryData) { .len = sizeof(sig), .data = sig };
        r = opinion_open(&s, issuer, &version, &entries, &n, &reason);
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG || r == -EKEYREJECTED || r == -ENOMEM);
                return;
        }
        FUZZ_CHECK(memcmp(issuer, pk, 32) == 0 && n <= OPINION_MAX_ENTRIES);
        for (size_t i = 0; i < n; i++)
                FUZZ_CHECK(isfinite(entries[i].successes) && entries[i].successes >= 0 &&
                           isfinite(entries[i].failures) && entries[i].failures >= 0);

        FUZZ_CHECK(opinion_sign(issuer, version, 0, entries, n, sk, &resigned) == 0);
        FUZZ_CHECK(opinion_open(&resigned, issuer2, &version2, &again, &n2, &reason) == 0);
        FUZZ_CHECK(version2 == version && n2 == n);
        opinion_signed_clear(&resigned);

        (void) reputation_add_opinion(rep, issuer, version, entries, n, 1000000);
        reputation_update_trust(rep, 1000000);
        for (size_t i = 0; i < n; i++) {
                reputation_get(rep, entries[i].subject, entries[i].skill, 1000000, &v);
                FUZZ_CHECK(isfinite(v.mean) && v.mean > 0 && v.mean < 1);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        cheque_bytes(data, size);
        cheque_body(data, size);
        opinion_body(data, size);
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wire_record_open() on anything.  The input is a signature (its first 64
 * bytes) and a record body (the rest).  Opened with a verifier that
 * accepts everything, so the decoder and the record checks see every
 * input, and with libsodium's, which must refuse what was not signed.  A
 * record that opens is re-signed with a key of ours and must open again,
 * field for field. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fuzz.h"
#include "macro.h"
#include "wire.h"

static uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        static const uint8_t seed[crypto_sign_SEEDBYTES] = { 'f', 'u', 'z', 'z' };

        if (sodium_init() < 0)
                abort();
        crypto_sign_seed_keypair(pk, sk, seed);
        return 0;
}

static int verify_anything(const uint8_t *sig, const uint8_t *body, size_t size,
                           const uint8_t node_id[WIRE_NODE_ID_SIZE], void *userdata) {
        return 0;
}

static bool strings_equal(const char *a, const char *b) {
        return strcmp(a ?: "", b ?: "") == 0;
}

static void check_resigned(Swarm__NodeRecord *rec) {
        _cleanup_(wire_record_freep) Swarm__NodeRecord *again = NULL;
        Swarm__SignedRecord s;
        ProtobufCBinaryData saved = rec->node_id;
        const char *reason = NULL;
        int r;

        /* Our key, so that wire_record_sign() will sign it. */
        rec->node_id = (ProtobufCBinaryData) { .len = sizeof(pk), .data = pk };
        r = wire_record_sign(rec, sk, &s);
        rec->node_id = saved;
        /* The canonical encoding is never longer than what arrived. */
        FUZZ_CHECK(r == 0);

        r = wire_record_open(&s, NULL, NULL, &again, &reason);
        if (r < 0)
                fprintf(stderr, "re-signed record does not open: %s\n", reason ?: "?");
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(memcmp(again->node_id.data, pk, sizeof(pk)) == 0);
        FUZZ_CHECK(again->version == rec->version && again->incarnation == rec->incarnation);
        FUZZ_CHECK(again->n_endpoints == rec->n_endpoints && again->n_skills == rec->n_skills);
        for (size_t i = 0; i < rec->n_endpoints; i++)
                FUZZ_CHECK(strcmp(again->endpoints[i], rec->endpoints[i]) == 0);
        for (size_t i = 0; i < rec->n_skills; i++) {
                FUZZ_CHECK(strings_equal(again->skills[i]->name, rec->skills[i]->name));
                FUZZ_CHECK(again->skills[i]->price == rec->skills[i]->price);
        }
        FUZZ_CHECK(strings_equal(again->name, rec->name));
        wire_signed_record_clear(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const uint8_t no_signature[WIRE_SIGNATURE_SIZE];
        _cleanup_(wire_record_freep) Swarm__NodeRecord *rec = NULL, *verified = NULL;
        Swarm__SignedRecord s = SWARM__SIGNED_RECORD__INIT;
        const char *reason = NULL;
        int r;

        if (size >= WIRE_SIGNATURE_SIZE) {
                s.signature = (ProtobufCBinaryData) { .len = WIRE_SIGNATURE_SIZE, .data = (uint8_t *) data };
                s.body = (ProtobufCBinaryData) { .len = size - WIRE_SIGNATURE_SIZE,
                                                 .data = (uint8_t *) data + WIRE_SIGNATURE_SIZE };
        } else {
                s.signature = (ProtobufCBinaryData) { .len = sizeof(no_signature), .data = (uint8_t *) no_signature };
                s.body = (ProtobufCBinaryData) { .len = size, .data = (uint8_t *) data };
        }

        r = wire_record_open(&s, verify_anything, NULL, &rec, &reason);
        if (r < 0) {
                FUZZ_CHECK(!rec);
                FUZZ_CHECK(r == -EBADMSG || r == -ENOMEM);
                FUZZ_CHECK(reason || r == -ENOMEM);
                /* The real verifier must not change the verdict on a
                 * malformed body. */
                FUZZ_CHECK(wire_record_open(&s, NULL, NULL, &verified, &reason) == r || r == -ENOMEM);
                return 0;
        }
        FUZZ_CHECK(rec && rec->node_id.len == WIRE_NODE_ID_SIZE);
        FUZZ_CHECK(wire_record_check(rec, NULL) == 0);

        r = wire_record_open(&s, NULL, NULL, &verified, &reason);
        FUZZ_CHECK(r == 0 || r == -EKEYREJECTED);
        FUZZ_CHECK((r == 0) ==
                   (crypto_sign_verify_detached(s.signature.data, s.body.data, s.body.len, rec->node_id.data) == 0));

        check_resigned(rec);
        return 0;
}

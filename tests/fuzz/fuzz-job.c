/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The jobs codec on anything: job_decode() of the bytes as a JobEnvelope,
 * and the same bytes as the body of a SignedResult (signed with a fixed
 * key, so job_result_open() gets past the signature to the body decoder).
 * What is accepted must re-encode canonically, and a request's inputs
 * must convert to swarm_values (the provider does that next). */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fuzz.h"
#include "job-wire.h"
#include "macro.h"

#define MAX_SIZE (1024u * 1024u)

static uint8_t pk[32], sk[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        uint8_t seed[32] = { 'f', 'u', 'z', 'z' };

        if (sodium_init() < 0)
                abort();
        crypto_sign_seed_keypair(pk, sk, seed);
        return 0;
}

static void envelope(const uint8_t *data, size_t size) {
        _cleanup_(job_envelope_freep) Swarm__JobEnvelope *e = NULL, *again = NULL;
        _cleanup_free_ uint8_t *first = NULL, *second = NULL;
        size_t first_size, second_size;
        const char *reason = NULL;
        int r;

        r = job_decode(data, size, MAX_SIZE, &e, &reason);
        if (r < 0) {
                FUZZ_CHECK(!e);
                FUZZ_CHECK(r == -EBADMSG || r == -EPROTONOSUPPORT || r == -EMSGSIZE || r == -ENOMEM);
                FUZZ_CHECK(reason || r == -ENOMEM);
                return;
        }
        FUZZ_CHECK(e && e->version == WIRE_VERSION);

        if (e->body_case == SWARM__JOB_ENVELOPE__BODY_REQUEST) {
                struct swarm_values *v = NULL;

                FUZZ_CHECK(job_request_check(e->request, NULL) == 0);
                r = job_values_from_wire(e->request->inputs, e->request->n_inputs, NULL, &v, &reason);
                FUZZ_CHECK(r == 0 || r == -ENOMEM || r == -EMFILE);
                FUZZ_CHECK(!v || swarm_values_count(v) == e->request->n_inputs);
                swarm_values_free(v);
        }

        FUZZ_CHECK(job_encode(e, MAX_SIZE, &first, &first_size) == 0);
        FUZZ_CHECK(first_size <= size);
        r = job_decode(first, first_size, MAX_SIZE, &again, &reason);
        if (r < 0)
                fprintf(stderr, "re-decoding failed: %s\n", reason ?: "?");
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(again->body_case == e->body_case);
        FUZZ_CHECK(job_encode(again, MAX_SIZE, &second, &second_size) == 0);
        FUZZ_CHECK(first_size == second_size && memcmp(first, second, first_size) == 0);
}

static void result_body(const uint8_t *data, size_t size) {
        _cleanup_(job_result_freep) Swarm__JobResult *res = NULL;
        Swarm__SignedResult s = SWARM__SIGNED_RESULT__INIT;
        Swarm__SignedResult resigned;
        uint8_t sig[64];
        const char *reason = NULL;
        int r;

        if (size == 0)
                return;
        crypto_sign_detached(sig, NULL, data, size, sk);
        s.body = (ProtobufCBinaryData) { .len = size, .data = (uint8_t *) data };
        s.signature = (ProtobufCBinaryData) { .len = sizeof(sig), .data = sig };

        r = job_result_open(&s, pk, MAX_SIZE, &res, &reason);
        if (r < 0) {
                FUZZ_CHECK(!res);
                FUZZ_CHECK(r == -EBADMSG || r == -ENOMEM);
                return;
        }
        FUZZ_CHECK(job_result_check(res, NULL) == 0);
        /* What opened can be signed again and opens again. */
        FUZZ_CHECK(job_result_sign(res, sk, &resigned) == 0);
        job_result_free(TAKE_PTR(res));
        FUZZ_CHECK(job_result_open(&resigned, pk, MAX_SIZE, &res, &reason) == 0);
        job_signed_result_clear(&resigned);

        /* The signature binds the provider: another key never opens it. */
        {
                uint8_t other[32];
                Swarm__JobResult *nope = NULL;

                memcpy(other, pk, sizeof(other));
                other[0] ^= 1;
                FUZZ_CHECK(job_result_open(&s, other, MAX_SIZE, &nope, &reason) < 0 && !nope);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        envelope(data, size);
        result_body(data, size);
        return 0;
}

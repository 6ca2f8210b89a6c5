/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The membership state machine on anything a peer can send: the decoded
 * message goes on into the records, rumors, probes and push-pulls it
 * carries, not only through the decoder.
 *
 * Input: byte 0 picks the sender (one of three known peers, or a stranger),
 * byte 1 how many probe periods pass afterwards (0-7, each ticked), the rest
 * is the datagram.  After it: the node still knows itself, alive, and every
 * member it lists reads back whole; nothing leaks (ASan). */

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "macro.h"
#include "membership.h"
#include "wire.h"

#define PEERS 3
#define PERIOD_USEC (200 * 1000)

static uint8_t self_pk[32], self_sk[64];
static uint8_t peer_pk[PEERS + 1][32], peer_sk[PEERS + 1][64];
static uint64_t clock_usec, rng_state;
static size_t sent;

static uint64_t io_now(void *userdata) {
        return clock_usec;
}

static uint64_t io_random(void *userdata) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return rng_state;
}

static void io_send(void *userdata, const uint8_t to[WIRE_NODE_ID_SIZE], const char *endpoint, const uint8_t *data,
                    size_t size) {
        sent += size;
}

static int io_sign(void *userdata, const Swarm__NodeRecord *r, Swarm__SignedRecord *out) {
        return wire_record_sign(r, self_sk, out);
}

static void record_of(Swarm__NodeRecord *r, char **endpoints, const uint8_t pk[32], uint64_t version) {
        swarm__node_record__init(r);
        r->node_id = (ProtobufCBinaryData) { .len = 32, .data = (uint8_t *) pk };
        r->version = version;
        r->incarnation = version;
        r->n_endpoints = 1;
        r->endpoints = endpoints;
        r->name = (char *) "fuzz";
        r->lending = true;
}

static void keypair(unsigned n, uint8_t pk[32], uint8_t sk[64]) {
        uint8_t seed[32];

        memset(seed, (int) n, sizeof(seed));
        crypto_sign_seed_keypair(pk, sk, seed);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        if (sodium_init() < 0)
                abort();
        keypair(1, self_pk, self_sk);
        for (unsigned i = 0; i <= PEERS; i++)
                keypair(i + 2, peer_pk[i], peer_sk[i]);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char endpoint[] = "tcp://127.0.0.1:7000", *endpoints[] = { endpoint };
        struct membership_config config;
        struct membership *m = NULL;
        struct member_info self;
        Swarm__NodeRecord r;
        unsigned from, periods;
        int k;
        struct membership_io io = {
                .now_usec = io_now,
                .random_u64 = io_random,
                .send = io_send,
                .sign = io_sign,
        };

        if (size < 2)
                return 0;
        from = data[0] % (PEERS + 1);
        periods = data[1] % 8;
        data += 2, size -= 2;

        clock_usec = 1000u * 1000u * 1000u;
        rng_state = 0x9e3779b97f4a7c15ull;
        membership_config_default(&config);
        config.probe_interval_usec = PERIOD_USEC;
        record_of(&r, endpoints, self_pk, 1);
        FUZZ_CHECK(membership_new(&config, &io, &r, &m) == 0);

        /* Three known peers (the fourth key is a stranger's). */
        for (unsigned i = 0; i < PEERS; i++) {
                char ep[32], *eps[] = { ep };
                Swarm__SignedRecord s;

                snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%u", 7001 + i);
                record_of(&r, eps, peer_pk[i], 1);
                FUZZ_CHECK(wire_record_sign(&r, peer_sk[i], &s) == 0);
                FUZZ_CHECK(membership_add_record(m, &s) >= 0);
                wire_signed_record_clear(&s);
        }

        k = membership_receive(m, peer_pk[from], data, size);
        /* membership.h's contract. */
        FUZZ_CHECK(k >= 0 || k == -EBADMSG || k == -EPROTONOSUPPORT || k == -ENOMEM);
        for (unsigned p = 0; p < periods; p++) {
                clock_usec += PERIOD_USEC;
                membership_tick(m);
        }

        FUZZ_CHECK(membership_find(m, self_pk, &self) == 0);
        FUZZ_CHECK(self.self && self.state == MEMBER_ALIVE);
        for (size_t i = 0; i < membership_count(m); i++) {
                struct member_info mi;

                FUZZ_CHECK(membership_get(m, i, &mi) == 0);
                FUZZ_CHECK(mi.id && mi.record && mi.signed_record);
                FUZZ_CHECK(memcmp(mi.record->node_id.data, mi.id, WIRE_NODE_ID_SIZE) == 0);
        }
        membership_free(m);
        return 0;
}

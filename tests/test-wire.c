/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <criterion/criterion.h>
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "swarm-host.h"
#include "wire.h"

static void setup(void) {
        cr_assert_geq(sodium_init(), 0);
}

TestSuite(wire, .init = setup);

/* ---- Helpers ---------------------------------------------------------- */

struct key {
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];
        uint8_t sk[crypto_sign_SECRETKEYBYTES];
};

static struct key key_new(void) {
        struct key k;

        crypto_sign_keypair(k.pk, k.sk);
        return k;
}

static uint8_t id_a[WIRE_NODE_ID_SIZE] = { 0xa1, 0xa2, 0xa3 };
static uint8_t id_b[WIRE_NODE_ID_SIZE] = { 0xb1, 0xb2, 0xb3 };
static uint8_t fake_sig[WIRE_SIGNATURE_SIZE] = { 0x51 };
static uint8_t fake_body[] = { 0x0a, 0x01, 0x00 };

static ProtobufCBinaryData bin(const void *p, size_t n) {
        return (ProtobufCBinaryData) { .len = n, .data = (uint8_t *) p };
}

static Swarm__SignedRecord fake_record(void) {
        Swarm__SignedRecord s = SWARM__SIGNED_RECORD__INIT;

        s.body = bin(fake_body, sizeof(fake_body));
        s.signature = bin(fake_sig, sizeof(fake_sig));
        return s;
}

static uint8_t *encode_ok(Swarm__Envelope *e, size_t *size) {
        uint8_t *buf = NULL;
        int r = wire_encode(e, &buf, size);

        cr_assert_eq(r, 0, "wire_encode: %s", strerror(-r));
        cr_assert_eq(*size, wire_encoded_size(e));
        return buf;
}

static Swarm__Envelope *decode_ok(const uint8_t *buf, size_t size) {
        Swarm__Envelope *e = NULL;
        const char *reason = NULL;
        int r = wire_decode(buf, size, &e, &reason);

        cr_assert_eq(r, 0, "wire_decode: %s (%s)", strerror(-r), reason ?: "no reason");
        cr_assert_not_null(e);
        cr_assert_eq(e->version, WIRE_VERSION);
        return e;
}

/* Encodes e with protobuf-c itself, bypassing wire_encode()'s checks, so
 * that the decoder sees what a hostile or buggy peer could send. */
static uint8_t *pack_raw(const ProtobufCMessage *m, size_t *size) {
        uint8_t *buf;

        *size = protobuf_c_message_get_packed_size(m);
        buf = malloc(*size + 1);
        cr_assert_not_null(buf);
        cr_assert_eq(protobuf_c_message_pack(m, buf), *size);
        return buf;
}

static int decode_raw(Swarm__Envelope *e, const char **reason) {
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_(wire_envelope_freep) Swarm__Envelope *d = NULL;
        size_t size;
        int r;

        buf = pack_raw(&e->base, &size);
        r = wire_decode(buf, size, &d, reason);
        if (r < 0)
                cr_assert_null(d);
        else
                cr_assert_not_null(d);
        return r;
}

static void expect_refused(Swarm__Envelope *e, int error, const char *what) {
        const char *reason = NULL;
        int r = decode_raw(e, &reason);

        cr_expect_eq(r, error, "%s: got %d (%s), expected %d", what, r, reason ?: "no reason", error);
        if (r < 0)
                cr_expect_not_null(reason, "%s: no reason", what);
        /* And the encoder refuses to make it in the first place. */
        if (error == -EBADMSG) {
                uint8_t *buf = NULL;
                size_t size;

                cr_expect_eq(wire_encode(e, &buf, &size), -EINVAL, "%s: wire_encode accepted it", what);
                free(buf);
        }
}

static Swarm__NodeRecord record_for(const uint8_t *node_id) {
        static char *endpoints[] = { "tcp://192.0.2.1:7946", "ipc:///run/swarmd/peer.sock" };
        static Swarm__SkillOffer gemm = SWARM__SKILL_OFFER__INIT, hash = SWARM__SKILL_OFFER__INIT;
        static Swarm__SkillOffer *skills[] = { &gemm, &hash };
        Swarm__NodeRecord r = SWARM__NODE_RECORD__INIT;

        gemm.name = "gemm";
        gemm.version = "1.0";
        gemm.price = 3;
        gemm.unit = "flop";
        gemm.throughput = 1000000000;
        gemm.device = "cuda: NVIDIA H100 — 80 GB";
        gemm.workers = 2;
        hash.name = "hash.sha256-v2";
        hash.unit = "byte";

        r.node_id = bin(node_id, WIRE_NODE_ID_SIZE);
        r.version = 7;
        r.incarnation = 3;
        r.n_endpoints = ELEMENTSOF(endpoints);
        r.endpoints = endpoints;
        r.n_skills = ELEMENTSOF(skills);
        r.skills = skills;
        r.capacity = 4;
        r.load = 1;
        r.lending = true;
        r.name = "büro-1";
        r.issued_at = 1700000000000000;
        return r;
}

/* ---- Round trips -------------------------------------------------------- */

Test(wire, ping_round_trips_with_gossip) {
        Swarm__Rumor rumor = SWARM__RUMOR__INIT, *rumors[] = { &rumor };
        Swarm__SignedRecord rec = fake_record(), *records[] = { &rec };
        Swarm__Gossip g = SWARM__GOSSIP__INIT;
        Swarm__Ping p = SWARM__PING__INIT;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_(wire_envelope_freep) Swarm__Envelope *d = NULL;
        size_t size;

        rumor.node_id = bin(id_b, sizeof(id_b));
        rumor.incarnation = 42;
        rumor.state = SWARM__MEMBER_STATE__SUSPECT;
        g.n_rumors = 1, g.rumors = rumors;
        g.n_records = 1, g.records = records;
        p.seq = 99;
        p.on_behalf_of = bin(id_a, sizeof(id_a));
        p.gossip = &g;
        e.body_case = SWARM__ENVELOPE__BODY_PING;
        e.ping = &p;

        buf = encode_ok(&e, &size);
        d = decode_ok(buf, size);
        cr_assert_eq(d->body_case, SWARM__ENVELOPE__BODY_PING);
        cr_assert_eq(d->ping->seq, 99);
        cr_assert_eq(d->ping->on_behalf_of.len, WIRE_NODE_ID_SIZE);
        cr_assert_arr_eq(d->ping->on_behalf_of.data, id_a, WIRE_NODE_ID_SIZE);
        cr_assert_not_null(d->ping->gossip);
        cr_assert_eq(d->ping->gossip->n_rumors, 1);
        cr_assert_arr_eq(d->ping->gossip->rumors[0]->node_id.data, id_b, WIRE_NODE_ID_SIZE);
        cr_assert_eq(d->ping->gossip->rumors[0]->incarnation, 42);
        cr_assert_eq(d->ping->gossip->rumors[0]->state, SWARM__MEMBER_STATE__SUSPECT);
        cr_assert_eq(d->ping->gossip->n_records, 1);
        cr_assert_eq(d->ping->gossip->records[0]->body.len, sizeof(fake_body));
        cr_assert_arr_eq(d->ping->gossip->records[0]->signature.data, fake_sig, sizeof(fake_sig));
}

Test(wire, direct_ping_without_gossip_round_trips) {
        Swarm__Ping p = SWARM__PING__INIT;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_(wire_envelope_freep) Swarm__Envelope *d = NULL;
        size_t size;

        e.body_case = SWARM__ENVELOPE__BODY_PING;
        e.ping = &p;
        buf = encode_ok(&e, &size);
        d = decode_ok(buf, size);
        cr_assert_eq(d->body_case, SWARM__ENVELOPE__BODY_PING);
        cr_assert_eq(d->ping->seq, 0);
        cr_assert_eq(d->ping->on_behalf_of.len, 0);
        cr_assert_null(d->ping->gossip);
}

Test(wire, ack_round_trips) {
        Swarm__Rumor rumor = SWARM__RUMOR__INIT, *rumors[] = { &rumor };
        Swarm__Gossip g = SWARM__GOSSIP__INIT;
        Swarm__Ack a = SWARM__ACK__INIT;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_(wire_envelope_freep) Swarm__Envelope *d = NULL;
        size_t size;

        rumor.node_id = bin(id_a, sizeof(id_a));
        rumor.state = SWARM__MEMBER_STATE__LEFT;
        g.n_rumors = 1, g.rumors = rumors;
        a.seq = UINT64_MAX;
        a.target = bin(id_b, sizeof(id_b));
        a.gossip = &g;
        e.body_case = SWARM__ENVELOPE__BODY_ACK;
        e.ack = &a;

        buf = encode_ok(&e, &size);
        d = decode_ok(buf, size);
        cr_assert_eq(d->body_case, SWARM__ENVELOPE__BODY_ACK);
        cr_assert_eq(d->ack->seq, UINT64_MAX);
        cr_assert_arr_eq(d->ack->target.data, id_b, WIRE_NODE_ID_SIZE);
        cr_assert_eq(d->ack->gossip->rumors[0]->state, SWARM__MEMBER_STATE__LEFT);
}

Test(wire, ping_req_round_trips) {
        Swarm__PingReq p = SWARM__PING_REQ__INIT;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_(wire_envelope_freep) Swarm__Envelope *d = NULL;
        size_t size;

        p.seq = 5;
        p.target = bin(id_b, sizeof(id_b));
        e.body_case = SWARM__ENVELOPE__BODY_PING_REQ;
        e.ping_req = &p;

        buf = encode_ok(&e, &size);
        d = decode_ok(buf, size);
        cr_assert_eq(d->body_case, SWARM__ENVELOPE__BODY_PING_REQ);
        cr_assert_eq(d->ping_req->seq, 5);
        cr_assert_arr_eq(d->ping_req->target.data, id_b, WIRE_NODE_ID_SIZE);
}

Test(wire, push_pull_round_trips_with_digests_and_records) {
        struct key k = key_new();
        Swarm__NodeRecord nr = record_for(k.pk);
        Swarm__SignedRecord own = SWARM__SIGNED_RECORD__INIT, other = fake_record();
        Swarm__SignedRecord *records[] = { &own, &other };
        Swarm__Digest d1 = SWARM__DIGEST__INIT, d2 = SWARM__DIGEST__INIT, *digests[] = { &d1, &d2 };
        Swarm__PushPull pp = SWARM__PUSH_PULL__INIT;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_(wire_envelope_freep) Swarm__Envelope *d = NULL;
        _cleanup_(wire_record_freep) Swarm__NodeRecord *opened = NULL;
        const char *reason = NULL;
        size_t size;

        cr_assert_eq(wire_record_sign(&nr, k.sk, &own), 0);
        d1.node_id = bin(id_a, sizeof(id_a));
        d1.version = 1;
        d2.node_id = bin(id_b, sizeof(id_b));
        d2.version = 2;
        pp.is_reply = true;
        pp.n_digests = ELEMENTSOF(digests), pp.digests = digests;
        pp.n_records = ELEMENTSOF(records), pp.records = records;
        pp.sender = &own;
        e.body_case = SWARM__ENVELOPE__BODY_PUSH_PULL;
        e.push_pull = &pp;

        buf = encode_ok(&e, &size);
        d = decode_ok(buf, size);
        cr_assert_eq(d->body_case, SWARM__ENVELOPE__BODY_PUSH_PULL);
        cr_assert(d->push_pull->is_reply);
        cr_assert_eq(d->push_pull->n_digests, 2);
        cr_assert_arr_eq(d->push_pull->digests[1]->node_id.data, id_b, WIRE_NODE_ID_SIZE);
        cr_assert_eq(d->push_pull->digests[1]->version, 2);
        cr_assert_eq(d->push_pull->n_records, 2);
        cr_assert_eq(d->push_pull->records[1]->body.len, sizeof(fake_body));

        /* The sender's record arrives byte for byte and opens. */
        cr_assert_eq(d->push_pull->sender->body.len, own.body.len);
        cr_assert_arr_eq(d->push_pull->sender->body.data, own.body.data, own.body.len);
        cr_assert_eq(wire_record_open(d->push_pull->sender, NULL, NULL, &opened, &reason), 0, "%s", reason);
        cr_assert_arr_eq(opened->node_id.data, k.pk, WIRE_NODE_ID_SIZE);
        cr_assert_eq(opened->n_skills, 2);
        cr_assert_str_eq(opened->skills[0]->device, "cuda: NVIDIA H100 — 80 GB");
        cr_assert_str_eq(opened->name, "büro-1");

        wire_signed_record_clear(&own);
}

Test(wire, encoded_size_counts_the_version_wire_encode_sets) {
        Swarm__PingReq p = SWARM__PING_REQ__INIT;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t predicted, size;

        p.target = bin(id_b, sizeof(id_b));
        e.body_case = SWARM__ENVELOPE__BODY_PING_REQ;
        e.ping_req = &p;
        cr_assert_eq(e.version, 0);
        predicted = wire_encoded_size(&e);
        cr_assert_eq(wire_encode(&e, &buf, &size), 0);
        cr_assert_eq(size, predicted);
}

Test(wire, unknown_fields_from_a_newer_peer_are_tolerated) {
        Swarm__Ping p = SWARM__PING__INIT;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        _cleanup_free_ uint8_t *buf = NULL, *ext = NULL;
        _cleanup_(wire_envelope_freep) Swarm__Envelope *d = NULL;
        size_t size;

        e.body_case = SWARM__ENVELOPE__BODY_PING;
        e.ping = &p;
        buf = encode_ok(&e, &size);
        /* Field 20, varint 1: something a later schema might add. */
        ext = malloc(size + 3);
        memcpy(ext, buf, size);
        ext[size] = 0x80 | (20 << 3), ext[size + 1] = 0x01, ext[size + 2] = 0x01;
        d = decode_ok(ext, size + 3);
        cr_assert_eq(d->body_case, SWARM__ENVELOPE__BODY_PING);
}

/* Hundreds of tiny unknown fields cost an entry each: refused, found by
 * the fuzzer (a message that fit the decode budget re-encoded into one
 * that did not). */
Test(wire, too_many_unknown_fields_are_refused) {
        Swarm__Ping p = SWARM__PING__INIT;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        _cleanup_free_ uint8_t *buf = NULL, *ext = NULL;
        Swarm__Envelope *d = NULL;
        const char *reason = NULL;
        size_t size;

        e.body_case = SWARM__ENVELOPE__BODY_PING;
        e.ping = &p;
        buf = encode_ok(&e, &size);
        ext = malloc(size + 2 * (WIRE_UNKNOWN_FIELDS_MAX + 1));
        memcpy(ext, buf, size);
        /* Field 8, varint 1, repeated: allowed up to the limit … */
        for (unsigned i = 0; i < WIRE_UNKNOWN_FIELDS_MAX; i++)
                ext[size + 2 * i] = 8 << 3, ext[size + 2 * i + 1] = 0x01;
        wire_envelope_free(decode_ok(ext, size + 2 * WIRE_UNKNOWN_FIELDS_MAX));
        /* … and refused beyond it. */
        ext[size + 2 * WIRE_UNKNOWN_FIELDS_MAX] = 8 << 3, ext[size + 2 * WIRE_UNKNOWN_FIELDS_MAX + 1] = 0x01;
        cr_assert_eq(wire_decode(ext, size + 2 * (WIRE_UNKNOWN_FIELDS_MAX + 1), &d, &reason), -EBADMSG);
        cr_assert_not_null(strstr(reason, "unknown fields"), "%s", reason);
}

/* ---- Sizes, truncation, lying lengths ------------------------------------ */

Test(wire, oversized_datagram_is_refused_before_decoding) {
        _cleanup_free_ uint8_t *buf = calloc(1, WIRE_MESSAGE_MAX + 1);
        Swarm__Envelope *e = NULL;
        const char *reason = NULL;
        size_t allocated = 1;

        cr_assert_not_null(buf);
        cr_assert_eq(wire_decode_counted(buf, WIRE_MESSAGE_MAX + 1, &e, &reason, &allocated), -EMSGSIZE);
        cr_assert_null(e);
        cr_assert_not_null(reason);
        cr_assert_eq(allocated, 0);
}

static uint8_t *big_push_pull(size_t *size) {
        struct key k = key_new();
        Swarm__NodeRecord nr = record_for(k.pk);
        static Swarm__SignedRecord own;
        static Swarm__Digest digests[WIRE_DIGESTS_MAX], *dp[WIRE_DIGESTS_MAX];
        static Swarm__SignedRecord *rp[WIRE_RECORDS_MAX];
        Swarm__PushPull pp = SWARM__PUSH_PULL__INIT;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;

        cr_assert_eq(wire_record_sign(&nr, k.sk, &own), 0);
        for (size_t i = 0; i < WIRE_DIGESTS_MAX; i++) {
                swarm__digest__init(&digests[i]);
                digests[i].node_id = bin(id_a, sizeof(id_a));
                digests[i].version = UINT64_MAX - i;
                dp[i] = &digests[i];
        }
        for (size_t i = 0; i < WIRE_RECORDS_MAX; i++)
                rp[i] = &own;
        pp.n_digests = WIRE_DIGESTS_MAX, pp.digests = dp;
        pp.n_records = WIRE_RECORDS_MAX, pp.records = rp;
        pp.sender = &own;
        e.body_case = SWARM__ENVELOPE__BODY_PUSH_PULL;
        e.push_pull = &pp;
        return encode_ok(&e, size);
}

Test(wire, largest_valid_message_decodes_within_its_budget) {
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_(wire_envelope_freep) Swarm__Envelope *d = NULL;
        const char *reason = NULL;
        size_t size, allocated = 0;

        buf = big_push_pull(&size);
        cr_assert_eq(wire_decode_counted(buf, size, &d, &reason, &allocated), 0, "%s", reason);
        cr_assert_eq(d->push_pull->n_digests, WIRE_DIGESTS_MAX);
        cr_assert_eq(d->push_pull->n_records, WIRE_RECORDS_MAX);
        /* A valid message needs a few times its size, far from the budget. */
        cr_assert_leq(allocated, 8 * size, "%zu bytes allocated for %zu", allocated, size);
}

Test(wire, every_truncation_fails_cleanly_or_validates) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size;

        buf = big_push_pull(&size);
        for (size_t n = 0; n < size; n++) {
                Swarm__Envelope *d = NULL;
                const char *reason = NULL;
                size_t allocated;
                int r = wire_decode_counted(buf, n, &d, &reason, &allocated);

                cr_assert_leq(allocated, WIRE_DECODE_BUDGET(n));
                if (r < 0) {
                        cr_assert(r == -EBADMSG || r == -EPROTONOSUPPORT, "%zu: %d", n, r);
                        cr_assert_not_null(reason);
                        cr_assert_null(d);
                } else {
                        /* A prefix that ends on a field boundary is a valid
                         * message with fewer fields; it passed the checks. */
                        cr_assert_eq(d->body_case, SWARM__ENVELOPE__BODY_PUSH_PULL);
                        wire_envelope_free(d);
                }
        }
}

Test(wire, truncated_length_delimited_field_is_refused) {
        Swarm__PingReq p = SWARM__PING_REQ__INIT;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        _cleanup_free_ uint8_t *buf = NULL;
        Swarm__Envelope *d = NULL;
        const char *reason = NULL;
        size_t size;

        p.target = bin(id_b, sizeof(id_b));
        e.body_case = SWARM__ENVELOPE__BODY_PING_REQ;
        e.ping_req = &p;
        buf = encode_ok(&e, &size);
        /* The last bytes are inside target: cut one off. */
        cr_assert_eq(wire_decode(buf, size - 1, &d, &reason), -EBADMSG);
        cr_assert_null(d);
        cr_assert_not_null(reason);
        cr_assert_eq(wire_decode(buf, size - WIRE_NODE_ID_SIZE, &d, &reason), -EBADMSG);
}

Test(wire, length_field_that_lies_allocates_nothing_large) {
        /* version 1, then ping (field 2) claiming 2^31 bytes, then a few. */
        uint8_t lie[20] = { 0x08, 0x01, 0x12, 0x80, 0x80, 0x80, 0x80, 0x08 };
        /* The same lie one level down: ping_req { target: 2^31 bytes }. */
        uint8_t nested[20] = { 0x08, 0x01, 0x22, 0x0c, 0x12, 0x80, 0x80, 0x80, 0x80, 0x08 };
        /* And a length beyond 64 bits of varint. */
        uint8_t huge[20] = { 0x08, 0x01, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
        const uint8_t *inputs[] = { lie, nested, huge };

        for (size_t i = 0; i < ELEMENTSOF(inputs); i++) {
                Swarm__Envelope *d = NULL;
                const char *reason = NULL;
                size_t allocated = SIZE_MAX;

                cr_assert_eq(wire_decode_counted(inputs[i], 20, &d, &reason, &allocated), -EBADMSG, "input %zu", i);
                cr_assert_null(d);
                cr_assert_not_null(reason);
                cr_assert_leq(allocated, 1024, "input %zu: %zu bytes allocated", i, allocated);
        }
}

Test(wire, datagram_of_tiny_fields_stays_within_the_budget) {
        /* 256 KiB of empty digests: each 2 bytes that protobuf-c would turn
         * into a struct, a pointer and bookkeeping. */
        size_t size = WIRE_MESSAGE_MAX, allocated = 0;
        _cleanup_free_ uint8_t *buf = malloc(size);
        Swarm__Envelope *d = NULL;
        const char *reason = NULL;
        size_t inner = size - 6;

        cr_assert_not_null(buf);
        buf[0] = 0x08, buf[1] = 0x01;
        buf[2] = 0x2a; /* push_pull, and its length in three varint bytes */
        buf[3] = 0x80 | (inner & 0x7f), buf[4] = 0x80 | ((inner >> 7) & 0x7f), buf[5] = (inner >> 14) & 0x7f;
        for (size_t i = 6; i < size; i += 2)
                buf[i] = 0x12, buf[i + 1] = 0x00;

        cr_assert_eq(wire_decode_counted(buf, size, &d, &reason, &allocated), -EBADMSG);
        cr_assert_null(d);
        cr_assert_leq(allocated, WIRE_DECODE_BUDGET(size));
}

/* ---- Versions and types --------------------------------------------------- */

Test(wire, other_versions_are_not_supported) {
        Swarm__Ping p = SWARM__PING__INIT;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        const char *reason = NULL;

        e.body_case = SWARM__ENVELOPE__BODY_PING;
        e.ping = &p;
        e.version = 2;
        cr_assert_eq(decode_raw(&e, &reason), -EPROTONOSUPPORT);
        cr_assert_not_null(reason);
        e.version = 0;
        cr_assert_eq(decode_raw(&e, &reason), -EPROTONOSUPPORT);
        e.version = WIRE_VERSION;
        cr_assert_eq(decode_raw(&e, &reason), 0);
}

Test(wire, unknown_message_type_is_refused) {
        /* version 1, and field 99 (length-delimited, 2 bytes): a body this
         * build does not know. */
        const uint8_t unknown[] = { 0x08, 0x01, 0x9a, 0x06, 0x02, 0x08, 0x01 };
        const uint8_t empty[] = { 0x08, 0x01 };
        Swarm__Envelope *d = NULL;
        const char *reason = NULL;

        cr_assert_eq(wire_decode(unknown, sizeof(unknown), &d, &reason), -EBADMSG);
        cr_assert_null(d);
        cr_assert_not_null(strstr(reason, "unknown message type"), "%s", reason);
        reason = NULL;
        cr_assert_eq(wire_decode(empty, sizeof(empty), &d, &reason), -EBADMSG);
        cr_assert_not_null(strstr(reason, "unknown message type"), "%s", reason);
        cr_assert_eq(wire_decode(NULL, 0, &d, &reason), -EPROTONOSUPPORT);
}

Test(wire, field_number_zero_is_refused) {
        /* A ping with an unknown field whose tag is 0 (wire type 0) spelled
         * in two bytes: protobuf-c takes it, but it is not protobuf. */
        const uint8_t top[] = { 0x08, 0x01, 0x12, 0x00, 0x80, 0x00, 0x05 };
        const uint8_t nested[] = { 0x08, 0x01, 0x12, 0x03, 0x80, 0x00, 0x05 };
        Swarm__Envelope *d = NULL;
        const char *reason = NULL;

        cr_assert_eq(wire_decode(top, sizeof(top), &d, &reason), -EBADMSG);
        cr_assert_null(d);
        cr_assert_eq(wire_decode(nested, sizeof(nested), &d, &reason), -EBADMSG);
        cr_assert_null(d);
        cr_assert_not_null(strstr(reason, "field number 0"), "%s", reason);
}

Test(wire, garbage_is_refused) {
        const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff };
        const uint8_t bad_wire_type[] = { 0x08, 0x01, 0x17 };
        Swarm__Envelope *d = NULL;
        const char *reason = NULL;

        cr_assert_eq(wire_decode(garbage, sizeof(garbage), &d, &reason), -EBADMSG);
        cr_assert_eq(wire_decode(bad_wire_type, sizeof(bad_wire_type), &d, &reason), -EBADMSG);
        cr_assert_null(d);
}

/* ---- Field checks ------------------------------------------------------- */

Test(wire, node_ids_of_the_wrong_size_are_refused) {
        uint8_t long_id[WIRE_NODE_ID_SIZE + 1] = {};
        size_t sizes[] = { 1, WIRE_NODE_ID_SIZE - 1, WIRE_NODE_ID_SIZE + 1 };

        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                Swarm__Rumor rumor = SWARM__RUMOR__INIT, *rumors[] = { &rumor };
                Swarm__Gossip g = SWARM__GOSSIP__INIT;
                Swarm__Ping p = SWARM__PING__INIT;
                Swarm__PingReq pr = SWARM__PING_REQ__INIT;
                Swarm__Ack a = SWARM__ACK__INIT;
                Swarm__Digest dg = SWARM__DIGEST__INIT, *digests[] = { &dg };
                Swarm__SignedRecord rec = fake_record();
                Swarm__PushPull pp = SWARM__PUSH_PULL__INIT;
                Swarm__Envelope e = SWARM__ENVELOPE__INIT;

                e.version = WIRE_VERSION;
                rumor.node_id = bin(long_id, sizes[i]);
                g.n_rumors = 1, g.rumors = rumors;
                p.gossip = &g;
                e.body_case = SWARM__ENVELOPE__BODY_PING, e.ping = &p;
                expect_refused(&e, -EBADMSG, "rumor node_id");

                p.gossip = NULL;
                p.on_behalf_of = bin(long_id, sizes[i]);
                expect_refused(&e, -EBADMSG, "ping on_behalf_of");

                a.target = bin(long_id, sizes[i]);
                e.body_case = SWARM__ENVELOPE__BODY_ACK, e.ack = &a;
                expect_refused(&e, -EBADMSG, "ack target");

                pr.target = bin(long_id, sizes[i]);
                e.body_case = SWARM__ENVELOPE__BODY_PING_REQ, e.ping_req = &pr;
                expect_refused(&e, -EBADMSG, "ping_req target");

                dg.node_id = bin(long_id, sizes[i]);
                pp.n_digests = 1, pp.digests = digests;
                pp.sender = &rec;
                e.body_case = SWARM__ENVELOPE__BODY_PUSH_PULL, e.push_pull = &pp;
                expect_refused(&e, -EBADMSG, "digest node_id");
        }
}

Test(wire, empty_ids_are_refused_where_the_schema_needs_one) {
        Swarm__Rumor rumor = SWARM__RUMOR__INIT, *rumors[] = { &rumor };
        Swarm__Gossip g = SWARM__GOSSIP__INIT;
        Swarm__Ping p = SWARM__PING__INIT;
        Swarm__PingReq pr = SWARM__PING_REQ__INIT;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;

        g.n_rumors = 1, g.rumors = rumors;
        p.gossip = &g;
        e.version = WIRE_VERSION;
        e.body_case = SWARM__ENVELOPE__BODY_PING, e.ping = &p;
        expect_refused(&e, -EBADMSG, "rumor without node_id");

        e.body_case = SWARM__ENVELOPE__BODY_PING_REQ, e.ping_req = &pr;
        expect_refused(&e, -EBADMSG, "ping_req without target");
}

Test(wire, push_pull_without_sender_is_refused) {
        Swarm__PushPull pp = SWARM__PUSH_PULL__INIT;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;

        e.version = WIRE_VERSION;
        e.body_case = SWARM__ENVELOPE__BODY_PUSH_PULL, e.push_pull = &pp;
        expect_refused(&e, -EBADMSG, "push_pull without sender");
}

Test(wire, too_many_rumors_records_or_digests_are_refused) {
        static Swarm__Rumor rumors[WIRE_RUMORS_MAX + 1];
        static Swarm__Rumor *rp[WIRE_RUMORS_MAX + 1];
        static Swarm__Digest digests[WIRE_DIGESTS_MAX + 1];
        static Swarm__Digest *dp[WIRE_DIGESTS_MAX + 1];
        static Swarm__SignedRecord *recp[WIRE_RECORDS_MAX + 1];
        Swarm__SignedRecord rec = fake_record();
        Swarm__Gossip g = SWARM__GOSSIP__INIT;
        Swarm__Ack a = SWARM__ACK__INIT;
        Swarm__PushPull pp = SWARM__PUSH_PULL__INIT;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        const char *reason;

        for (size_t i = 0; i <= WIRE_RUMORS_MAX; i++) {
                swarm__rumor__init(&rumors[i]);
                rumors[i].node_id = bin(id_a, sizeof(id_a));
                rp[i] = &rumors[i];
        }
        for (size_t i = 0; i <= WIRE_DIGESTS_MAX; i++) {
                swarm__digest__init(&digests[i]);
                digests[i].node_id = bin(id_b, sizeof(id_b));
                dp[i] = &digests[i];
        }
        for (size_t i = 0; i <= WIRE_RECORDS_MAX; i++)
                recp[i] = &rec;

        e.version = WIRE_VERSION;
        a.gossip = &g;
        e.body_case = SWARM__ENVELOPE__BODY_ACK, e.ack = &a;
        g.n_rumors = WIRE_RUMORS_MAX, g.rumors = rp;
        cr_assert_eq(decode_raw(&e, &reason), 0, "%s", reason);
        g.n_rumors++;
        expect_refused(&e, -EBADMSG, "rumors");
        g.n_rumors = 0;
        g.n_records = WIRE_RECORDS_MAX, g.records = recp;
        cr_assert_eq(decode_raw(&e, &reason), 0, "%s", reason);
        g.n_records++;
        expect_refused(&e, -EBADMSG, "gossip records");

        pp.sender = &rec;
        e.body_case = SWARM__ENVELOPE__BODY_PUSH_PULL, e.push_pull = &pp;
        pp.n_digests = WIRE_DIGESTS_MAX, pp.digests = dp;
        cr_assert_eq(decode_raw(&e, &reason), 0, "%s", reason);
        pp.n_digests++;
        expect_refused(&e, -EBADMSG, "digests");
        pp.n_digests = 0;
        pp.n_records = WIRE_RECORDS_MAX, pp.records = recp;
        cr_assert_eq(decode_raw(&e, &reason), 0, "%s", reason);
        pp.n_records++;
        expect_refused(&e, -EBADMSG, "push_pull records");
}

Test(wire, unknown_member_state_is_refused) {
        Swarm__Rumor rumor = SWARM__RUMOR__INIT, *rumors[] = { &rumor };
        Swarm__Gossip g = SWARM__GOSSIP__INIT;
        Swarm__Ping p = SWARM__PING__INIT;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        const char *reason = NULL;

        rumor.node_id = bin(id_a, sizeof(id_a));
        g.n_rumors = 1, g.rumors = rumors;
        p.gossip = &g;
        e.version = WIRE_VERSION;
        e.body_case = SWARM__ENVELOPE__BODY_PING, e.ping = &p;

        rumor.state = SWARM__MEMBER_STATE__LEFT;
        cr_assert_eq(decode_raw(&e, &reason), 0);
        rumor.state = (Swarm__MemberState) 4;
        expect_refused(&e, -EBADMSG, "state 4");
        rumor.state = (Swarm__MemberState) -1;
        expect_refused(&e, -EBADMSG, "state -1");
}

Test(wire, malformed_signed_records_in_an_envelope_are_refused) {
        static uint8_t big[WIRE_RECORD_MAX + 1];
        Swarm__SignedRecord rec = fake_record(), *records[] = { &rec };
        Swarm__Gossip g = SWARM__GOSSIP__INIT;
        Swarm__Ping p = SWARM__PING__INIT;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;

        g.n_records = 1, g.records = records;
        p.gossip = &g;
        e.version = WIRE_VERSION;
        e.body_case = SWARM__ENVELOPE__BODY_PING, e.ping = &p;

        rec.body = bin(big, sizeof(big));
        expect_refused(&e, -EBADMSG, "record body over WIRE_RECORD_MAX");
        rec.body = bin(NULL, 0);
        expect_refused(&e, -EBADMSG, "empty record body");
        rec = fake_record();
        rec.signature = bin(fake_sig, WIRE_SIGNATURE_SIZE - 1);
        expect_refused(&e, -EBADMSG, "short signature");
        rec.signature = bin(NULL, 0);
        expect_refused(&e, -EBADMSG, "no signature");
}

Test(wire, encode_refuses_messages_over_the_limit) {
        static uint8_t body[WIRE_RECORD_MAX];
        Swarm__SignedRecord rec = SWARM__SIGNED_RECORD__INIT;
        Swarm__SignedRecord *records[WIRE_RECORDS_MAX];
        Swarm__Gossip g = SWARM__GOSSIP__INIT;
        Swarm__Ping p = SWARM__PING__INIT;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        uint8_t *buf = NULL;
        size_t size = 0;

        rec.body = bin(body, sizeof(body));
        rec.signature = bin(fake_sig, sizeof(fake_sig));
        for (size_t i = 0; i < ELEMENTSOF(records); i++)
                records[i] = &rec;
        g.n_records = ELEMENTSOF(records), g.records = records;
        p.gossip = &g;
        e.body_case = SWARM__ENVELOPE__BODY_PING, e.ping = &p;

        cr_assert_gt(wire_encoded_size(&e), WIRE_MESSAGE_MAX);
        cr_assert_eq(wire_encode(&e, &buf, &size), -EMSGSIZE);
        cr_assert_null(buf);

        /* A quarter of it fits. */
        g.n_records = ELEMENTSOF(records) / 4;
        cr_assert_eq(wire_encode(&e, &buf, &size), 0);
        cr_assert_leq(size, WIRE_MESSAGE_MAX);
        free(buf);
}

/* ---- Signed records -------------------------------------------------------- */

Test(wire, record_signs_and_opens) {
        struct key k = key_new();
        Swarm__NodeRecord nr = record_for(k.pk);
        Swarm__SignedRecord s = SWARM__SIGNED_RECORD__INIT;
        _cleanup_(wire_record_freep) Swarm__NodeRecord *r = NULL;
        const char *reason = NULL;

        cr_assert_eq(wire_record_sign(&nr, k.sk, &s), 0);
        cr_assert_eq(s.signature.len, WIRE_SIGNATURE_SIZE);
        cr_assert_eq(s.body.len, protobuf_c_message_get_packed_size(&nr.base));
        cr_assert_eq(crypto_sign_verify_detached(s.signature.data, s.body.data, s.body.len, k.pk), 0);

        cr_assert_eq(wire_record_open(&s, NULL, NULL, &r, &reason), 0, "%s", reason);
        cr_assert_arr_eq(r->node_id.data, k.pk, WIRE_NODE_ID_SIZE);
        cr_assert_eq(r->version, 7);
        cr_assert_eq(r->incarnation, 3);
        cr_assert_eq(r->n_endpoints, 2);
        cr_assert_str_eq(r->endpoints[0], "tcp://192.0.2.1:7946");
        cr_assert_str_eq(r->skills[1]->name, "hash.sha256-v2");
        cr_assert_eq(r->skills[0]->throughput, 1000000000);
        cr_assert_eq(r->capacity, 4);
        cr_assert(r->lending);
        cr_assert_eq(r->issued_at, 1700000000000000);

        wire_signed_record_clear(&s);
        cr_assert_null(s.body.data);
        cr_assert_eq(s.body.len, 0);
}

static int verify_calls;
static int verify_counting(const uint8_t *sig, const uint8_t *body, size_t size,
                           const uint8_t node_id[WIRE_NODE_ID_SIZE], void *userdata) {
        verify_calls++;
        cr_assert_eq(userdata, &verify_calls);
        return crypto_sign_verify_detached(sig, body, size, node_id) == 0 ? 0 : -EKEYREJECTED;
}

static int verify_refuse(const uint8_t *sig, const uint8_t *body, size_t size,
                         const uint8_t node_id[WIRE_NODE_ID_SIZE], void *userdata) {
        return -EPERM;
}

Test(wire, record_open_uses_the_verify_callback) {
        struct key k = key_new();
        Swarm__NodeRecord nr = record_for(k.pk);
        Swarm__SignedRecord s = SWARM__SIGNED_RECORD__INIT;
        Swarm__NodeRecord *r = NULL;
        const char *reason = NULL;

        cr_assert_eq(wire_record_sign(&nr, k.sk, &s), 0);
        cr_assert_eq(wire_record_open(&s, verify_counting, &verify_calls, &r, &reason), 0);
        cr_assert_eq(verify_calls, 1);
        wire_record_free(r);
        r = NULL;
        cr_assert_eq(wire_record_open(&s, verify_refuse, NULL, &r, &reason), -EKEYREJECTED);
        cr_assert_null(r);
        cr_assert_not_null(reason);
        wire_signed_record_clear(&s);
}

Test(wire, any_flipped_bit_in_a_record_is_caught) {
        struct key k = key_new();
        Swarm__NodeRecord nr = record_for(k.pk);
        Swarm__SignedRecord s = SWARM__SIGNED_RECORD__INIT;

        cr_assert_eq(wire_record_sign(&nr, k.sk, &s), 0);
        for (size_t bit = 0; bit < 8 * s.body.len; bit++) {
                Swarm__NodeRecord *r = NULL;
                const char *reason = NULL;
                int ret;

                s.body.data[bit / 8] ^= 1u << (bit % 8);
                ret = wire_record_open(&s, NULL, NULL, &r, &reason);
                cr_assert(ret == -EKEYREJECTED || ret == -EBADMSG, "body bit %zu: %d", bit, ret);
                cr_assert_null(r);
                cr_assert_not_null(reason);
                s.body.data[bit / 8] ^= 1u << (bit % 8);
        }
        for (size_t bit = 0; bit < 8 * s.signature.len; bit++) {
                Swarm__NodeRecord *r = NULL;
                const char *reason = NULL;

                s.signature.data[bit / 8] ^= 1u << (bit % 8);
                cr_assert_eq(wire_record_open(&s, NULL, NULL, &r, &reason), -EKEYREJECTED, "signature bit %zu", bit);
                cr_assert_null(r);
                s.signature.data[bit / 8] ^= 1u << (bit % 8);
        }
        wire_signed_record_clear(&s);
}

Test(wire, record_signed_by_another_key_is_rejected) {
        struct key a = key_new(), b = key_new();
        Swarm__NodeRecord nr = record_for(b.pk);
        Swarm__SignedRecord s = SWARM__SIGNED_RECORD__INIT;
        _cleanup_free_ uint8_t *body = NULL;
        uint8_t sig[WIRE_SIGNATURE_SIZE];
        Swarm__NodeRecord *r = NULL;
        const char *reason = NULL;
        size_t size;

        /* wire_record_sign() will not sign a record naming another key... */
        cr_assert_eq(wire_record_sign(&nr, a.sk, &s), -EINVAL);
        cr_assert_null(s.body.data);

        /* ...but a forger would: A signs a record claiming to be B. */
        body = pack_raw(&nr.base, &size);
        crypto_sign_detached(sig, NULL, body, size, a.sk);
        s.body = bin(body, size);
        s.signature = bin(sig, sizeof(sig));
        cr_assert_eq(wire_record_open(&s, NULL, NULL, &r, &reason), -EKEYREJECTED);
        cr_assert_null(r);
        cr_assert_not_null(reason);
}

Test(wire, record_over_the_limit_is_refused) {
        static char endpoint[WIRE_STRING_MAX + 1];
        static char *endpoints[WIRE_ENDPOINTS_MAX];
        static Swarm__SkillOffer offers[WIRE_SKILLS_MAX];
        static Swarm__SkillOffer *skills[WIRE_SKILLS_MAX];
        static uint8_t big[WIRE_RECORD_MAX + 1];
        struct key k = key_new();
        Swarm__NodeRecord nr = record_for(k.pk);
        Swarm__SignedRecord s = SWARM__SIGNED_RECORD__INIT;
        Swarm__NodeRecord *r = NULL;
        const char *reason = NULL;

        /* Every field at its limit: still over WIRE_RECORD_MAX. */
        memset(endpoint, 'a', WIRE_STRING_MAX);
        memcpy(endpoint, "tcp://", 6);
        for (size_t i = 0; i < ELEMENTSOF(endpoints); i++)
                endpoints[i] = endpoint;
        for (size_t i = 0; i < ELEMENTSOF(offers); i++) {
                swarm__skill_offer__init(&offers[i]);
                offers[i].name = "s";
                offers[i].device = endpoint;
                skills[i] = &offers[i];
        }
        nr.n_endpoints = ELEMENTSOF(endpoints), nr.endpoints = endpoints;
        nr.n_skills = ELEMENTSOF(skills), nr.skills = skills;
        cr_assert_eq(wire_record_check(&nr, &reason), 0, "%s", reason);
        cr_assert_gt(protobuf_c_message_get_packed_size(&nr.base), WIRE_RECORD_MAX);
        cr_assert_eq(wire_record_sign(&nr, k.sk, &s), -EMSGSIZE);
        cr_assert_null(s.body.data);

        /* And one that arrives over it is refused unread. */
        s.body = bin(big, sizeof(big));
        s.signature = bin(fake_sig, sizeof(fake_sig));
        cr_assert_eq(wire_record_open(&s, verify_refuse, NULL, &r, &reason), -EBADMSG);
        cr_assert_null(r);
        s.body = bin(big, 0);
        cr_assert_eq(wire_record_open(&s, verify_refuse, NULL, &r, &reason), -EBADMSG);
        s.body = bin(fake_body, sizeof(fake_body));
        s.signature = bin(fake_sig, 63);
        cr_assert_eq(wire_record_open(&s, verify_refuse, NULL, &r, &reason), -EBADMSG);
}

/* Signs whatever nr is, bypassing wire_record_sign()'s checks, and opens it. */
static int open_forced(const Swarm__NodeRecord *nr, const struct key *k, const char **reason) {
        _cleanup_free_ uint8_t *body = NULL;
        uint8_t sig[WIRE_SIGNATURE_SIZE];
        Swarm__SignedRecord s = SWARM__SIGNED_RECORD__INIT;
        Swarm__NodeRecord *r = NULL;
        size_t size;
        int ret;

        body = pack_raw(&nr->base, &size);
        crypto_sign_detached(sig, NULL, body, size, k->sk);
        s.body = bin(body, size);
        s.signature = bin(sig, sizeof(sig));
        ret = wire_record_open(&s, NULL, NULL, &r, reason);
        if (ret < 0)
                cr_assert_null(r);
        wire_record_free(r);
        return ret;
}

static void expect_record_refused(const Swarm__NodeRecord *nr, const struct key *k, const char *what) {
        const char *reason = NULL;
        Swarm__SignedRecord s = SWARM__SIGNED_RECORD__INIT;

        cr_expect_eq(open_forced(nr, k, &reason), -EBADMSG, "%s opened", what);
        cr_expect_not_null(reason, "%s: no reason", what);
        cr_expect_eq(wire_record_check(nr, NULL), -EBADMSG, "%s passed the check", what);
        cr_expect_eq(wire_record_sign(nr, k->sk, &s), -EINVAL, "%s was signed", what);
}

Test(wire, record_fields_are_checked) {
        static char long_string[WIRE_STRING_MAX + 2];
        static char *many_endpoints[WIRE_ENDPOINTS_MAX + 1];
        static Swarm__SkillOffer offers[WIRE_SKILLS_MAX + 1];
        static Swarm__SkillOffer *many_skills[WIRE_SKILLS_MAX + 1];
        struct key k = key_new();
        Swarm__NodeRecord nr;
        Swarm__SkillOffer bad = SWARM__SKILL_OFFER__INIT, *bad_skills[] = { &bad };
        const char *reason = NULL;
        char *bad_endpoints[] = { NULL };
        const char *bad_endpoint_list[] = { "udp://192.0.2.1:1", "tcp://", "192.0.2.1:7946", "" };
        const char *bad_names[] = { "", "Gemm", "gemm/x", "gemm x", "0123456789012345678901234567890123456789012345678901234567890123" };

        memset(long_string, 'x', WIRE_STRING_MAX + 1);
        for (size_t i = 0; i <= WIRE_ENDPOINTS_MAX; i++)
                many_endpoints[i] = "inproc://n";
        for (size_t i = 0; i <= WIRE_SKILLS_MAX; i++) {
                swarm__skill_offer__init(&offers[i]);
                offers[i].name = "s";
                many_skills[i] = &offers[i];
        }

        nr = record_for(k.pk);
        cr_assert_eq(open_forced(&nr, &k, &reason), 0, "%s", reason);

        nr = record_for(k.pk);
        nr.node_id.len = WIRE_NODE_ID_SIZE - 1;
        expect_record_refused(&nr, &k, "31-byte node_id");

        nr = record_for(k.pk);
        nr.n_endpoints = WIRE_ENDPOINTS_MAX, nr.endpoints = many_endpoints;
        cr_assert_eq(open_forced(&nr, &k, &reason), 0, "%s", reason);
        nr.n_endpoints++;
        expect_record_refused(&nr, &k, "too many endpoints");

        for (size_t i = 0; i < ELEMENTSOF(bad_endpoint_list); i++) {
                nr = record_for(k.pk);
                bad_endpoints[0] = (char *) bad_endpoint_list[i];
                nr.n_endpoints = 1, nr.endpoints = bad_endpoints;
                expect_record_refused(&nr, &k, bad_endpoint_list[i]);
        }

        nr = record_for(k.pk);
        nr.n_skills = WIRE_SKILLS_MAX, nr.skills = many_skills;
        cr_assert_eq(open_forced(&nr, &k, &reason), 0, "%s", reason);
        nr.n_skills++;
        expect_record_refused(&nr, &k, "too many skills");

        for (size_t i = 0; i < ELEMENTSOF(bad_names); i++) {
                nr = record_for(k.pk);
                bad.name = (char *) bad_names[i];
                nr.n_skills = 1, nr.skills = bad_skills;
                expect_record_refused(&nr, &k, bad_names[i]);
        }
}

Test(wire, record_with_field_number_zero_is_refused) {
        struct key k = key_new();
        Swarm__NodeRecord nr = record_for(k.pk);
        Swarm__SignedRecord s = SWARM__SIGNED_RECORD__INIT;
        _cleanup_free_ uint8_t *body = NULL;
        uint8_t sig[WIRE_SIGNATURE_SIZE];
        Swarm__NodeRecord *r = NULL;
        const char *reason = NULL;
        size_t size;

        body = pack_raw(&nr.base, &size);
        body = realloc(body, size + 3);
        body[size] = 0x80, body[size + 1] = 0x00, body[size + 2] = 0x01;
        crypto_sign_detached(sig, NULL, body, size + 3, k.sk);
        s.body = bin(body, size + 3);
        s.signature = bin(sig, sizeof(sig));
        cr_assert_eq(wire_record_open(&s, NULL, NULL, &r, &reason), -EBADMSG);
        cr_assert_null(r);
        cr_assert_not_null(strstr(reason, "field number 0"), "%s", reason);
}

Test(wire, record_strings_are_bounded_utf8) {
        static char s_max[WIRE_STRING_MAX + 1], s_over[WIRE_STRING_MAX + 2];
        const char *bad_utf8[] = {
                "\xff",                 /* never valid */
                "caf\xc3",              /* cut short */
                "\xc0\xaf",             /* overlong '/' */
                "\xed\xa0\x80",         /* surrogate */
                "\xf4\x90\x80\x80",     /* past U+10FFFF */
        };
        struct key k = key_new();
        Swarm__NodeRecord nr;
        Swarm__SkillOffer *skill;
        const char *reason = NULL;

        memset(s_max, 'x', WIRE_STRING_MAX);
        memset(s_over, 'x', WIRE_STRING_MAX + 1);

        nr = record_for(k.pk);
        nr.name = s_max;
        cr_assert_eq(open_forced(&nr, &k, &reason), 0, "%s", reason);
        nr.name = s_over;
        expect_record_refused(&nr, &k, "oversized name");

        nr = record_for(k.pk);
        skill = nr.skills[0];
        skill->unit = s_over;
        expect_record_refused(&nr, &k, "oversized skill unit");
        skill->unit = "flop";

        for (size_t i = 0; i < ELEMENTSOF(bad_utf8); i++) {
                nr = record_for(k.pk);
                nr.name = (char *) bad_utf8[i];
                expect_record_refused(&nr, &k, "bad UTF-8 name");
                nr = record_for(k.pk);
                skill = nr.skills[0];
                skill->device = (char *) bad_utf8[i];
                expect_record_refused(&nr, &k, "bad UTF-8 device");
                skill->device = "cpu";
        }
}

Test(wire, signed_record_copy_is_deep) {
        uint8_t body[] = { 1, 2, 3, 4 }, sig[WIRE_SIGNATURE_SIZE];
        Swarm__SignedRecord from = SWARM__SIGNED_RECORD__INIT, to;

        memset(sig, 0x5a, sizeof(sig));
        from.body = bin(body, sizeof(body));
        from.signature = bin(sig, sizeof(sig));
        cr_assert_eq(wire_signed_record_copy(&from, &to), 0);
        cr_assert_eq(to.body.len, sizeof(body));
        cr_assert_eq(to.signature.len, sizeof(sig));
        cr_assert_neq(to.body.data, body);
        cr_assert_neq(to.signature.data, sig);
        cr_assert_arr_eq(to.body.data, body, sizeof(body));
        cr_assert_arr_eq(to.signature.data, sig, sizeof(sig));

        /* The original goes away; the copy stays. */
        memset(body, 0, sizeof(body));
        memset(sig, 0, sizeof(sig));
        cr_assert_eq(to.body.data[3], 4);
        cr_assert_eq(to.signature.data[63], 0x5a);
        wire_signed_record_clear(&to);
        cr_assert_null(to.body.data);
        cr_assert_null(to.signature.data);
}

Test(wire, skill_names_follow_the_skill_loader_rule) {
        const char *names[] = {
                "gemm", "hash.sha256-v2", "a", "_", "x-y_z.0",
                "012345678901234567890123456789012345678901234567890123456789012",
                "0123456789012345678901234567890123456789012345678901234567890123",
                "", "Gemm", "gemm/x", "gemm x", "g\xc3\xa9mm", "gemm\n",
        };
        static char *endpoints[] = { "tcp://h:1" };
        struct key k = key_new();
        Swarm__SkillOffer o = SWARM__SKILL_OFFER__INIT, *skills[] = { &o };
        Swarm__NodeRecord nr = SWARM__NODE_RECORD__INIT;

        nr.node_id = bin(k.pk, sizeof(k.pk));
        nr.n_endpoints = 1, nr.endpoints = endpoints;
        nr.n_skills = 1, nr.skills = skills;
        cr_assert_eq(SWARM_VALUE_NAME_MAX, WIRE_SKILL_NAME_MAX);
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                o.name = (char *) names[i];
                cr_expect_eq(wire_record_check(&nr, NULL) == 0, swarm_value_name_valid(names[i]),
                             "'%s' judged differently", names[i]);
        }
}

/* How a node is reached (issue 21): relays only in a PRIVATE record, at
 * most WIRE_RELAYS_MAX, each another node at a tcp:// endpoint. */
Test(wire, record_reachability_and_relays_are_checked) {
        struct key k = key_new(), relay_key = key_new();
        Swarm__RelayRef ref = SWARM__RELAY_REF__INIT, *refs[WIRE_RELAYS_MAX + 1];
        Swarm__NodeRecord nr;
        const char *reason = NULL;

        for (size_t i = 0; i <= WIRE_RELAYS_MAX; i++)
                refs[i] = &ref;
        ref.node_id = bin(relay_key.pk, WIRE_NODE_ID_SIZE);
        ref.endpoint = "tcp://10.200.0.11:7946";

        nr = record_for(k.pk);
        nr.reachability = SWARM__REACHABILITY__REACH_PRIVATE;
        nr.n_relays = 1, nr.relays = refs;
        cr_assert_eq(open_forced(&nr, &k, &reason), 0, "%s", reason);
        nr.n_relays = WIRE_RELAYS_MAX;
        cr_assert_eq(open_forced(&nr, &k, &reason), 0, "%s", reason);
        nr.n_relays++;
        expect_record_refused(&nr, &k, "too many relays");

        nr = record_for(k.pk);
        nr.reachability = SWARM__REACHABILITY__REACH_PUBLIC;
        nr.n_relays = 1, nr.relays = refs;
        expect_record_refused(&nr, &k, "relays in a PUBLIC record");

        nr = record_for(k.pk);
        nr.reachability = 4;
        expect_record_refused(&nr, &k, "reachability 4");

        nr = record_for(k.pk);
        nr.reachability = SWARM__REACHABILITY__REACH_PRIVATE;
        nr.n_relays = 1, nr.relays = refs;
        ref.endpoint = "ipc:///run/relay.sock";
        expect_record_refused(&nr, &k, "relay at an ipc:// endpoint");
        ref.endpoint = "tcp://10.200.0.11:7946";
        ref.node_id = bin(k.pk, WIRE_NODE_ID_SIZE);
        expect_record_refused(&nr, &k, "the node its own relay");
        ref.node_id.len = 31;
        expect_record_refused(&nr, &k, "31-byte relay id");
}

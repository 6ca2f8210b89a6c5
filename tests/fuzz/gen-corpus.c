/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Writes the seed corpora of the fuzz targets: a few valid inputs of every
 * kind each decoder takes, made with the real encoders (deterministic:
 * fixed keys, and Ed25519 signatures are deterministic).  Run once after
 * a schema change, and commit the result:
 *
 *   meson compile -C build fuzz-corpus
 *
 * Usage: gen-corpus DIR (writes DIR/envelope, DIR/record, DIR/worker-proto,
 * DIR/job, DIR/credits, DIR/provider, DIR/requester). */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <sodium.h>

#include "cheque.h"
#include "job-wire.h"
#include "macro.h"
#include "opinion.h"
#include "swarm/skill.h"
#include "wire.h"
#include "worker-proto.h"

static const char *out_dir;

static void write_file(const char *kind, const char *name, const void *data, size_t size) {
        char path[4096];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", out_dir, kind);
        if (mkdir(path, 0755) < 0 && errno != EEXIST) {
                fprintf(stderr, "%s: %m\n", path);
                exit(EXIT_FAILURE);
        }
        snprintf(path, sizeof(path), "%s/%s/%s", out_dir, kind, name);
        f = fopen(path, "we");
        if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
                fprintf(stderr, "%s: %m\n", path);
                exit(EXIT_FAILURE);
        }
}

static void check(int r, const char *what) {
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", what, strerror(-r));
                exit(EXIT_FAILURE);
        }
}

static void write_envelope(const char *name, Swarm__Envelope *e) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size;

        check(wire_encode(e, &buf, &size), name);
        write_file("envelope", name, buf, size);
}

static void write_record(const char *name, const Swarm__SignedRecord *s) {
        _cleanup_free_ uint8_t *buf = malloc(s->signature.len + s->body.len);

        if (!buf)
                exit(EXIT_FAILURE);
        memcpy(buf, s->signature.data, s->signature.len);
        memcpy(buf + s->signature.len, s->body.data, s->body.len);
        write_file("record", name, buf, s->signature.len + s->body.len);
}

struct key {
        uint8_t pk[32], sk[64];
};

static struct key key_from(char c) {
        uint8_t seed[crypto_sign_SEEDBYTES];
        struct key k;

        memset(seed, c, sizeof(seed));
        crypto_sign_seed_keypair(k.pk, k.sk, seed);
        return k;
}

static void envelopes_and_records(void) {
        struct key a = key_from('a'), b = key_from('b');
        static char *endpoints[] = { "tcp://192.0.2.1:7946", "ipc:///run/swarmd/swarm.sock", "inproc://sim-7" };
        Swarm__SkillOffer gemm = SWARM__SKILL_OFFER__INIT, hash = SWARM__SKILL_OFFER__INIT;
        Swarm__SkillOffer *skills[] = { &gemm, &hash };
        Swarm__NodeRecord ra = SWARM__NODE_RECORD__INIT, rb = SWARM__NODE_RECORD__INIT;
        Swarm__SignedRecord sa, sb, forged = SWARM__SIGNED_RECORD__INIT;
        Swarm__Rumor r1 = SWARM__RUMOR__INIT, r2 = SWARM__RUMOR__INIT, *rumors[] = { &r1, &r2 };
        Swarm__SignedRecord *records[] = { &sa, &sb };
        Swarm__Gossip g = SWARM__GOSSIP__INIT;
        Swarm__Digest d1 = SWARM__DIGEST__INIT, d2 = SWARM__DIGEST__INIT, *digests[] = { &d1, &d2 };
        Swarm__Ping ping = SWARM__PING__INIT;
        Swarm__Ack ack = SWARM__ACK__INIT;
        Swarm__PingReq req = SWARM__PING_REQ__INIT;
        Swarm__PushPull pp = SWARM__PUSH_PULL__INIT;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        _cleanup_free_ uint8_t *buf = NULL;
        uint8_t sig[64];
        size_t size;

        gemm.name = "gemm", gemm.version = "1.2.0", gemm.price = 3, gemm.unit = "flop";
        gemm.throughput = 900000000000, gemm.device = "cuda: NVIDIA H100 80GB HBM3", gemm.workers = 2;
        hash.name = "hash", hash.version = "1.0", hash.price = 1, hash.unit = "byte";
        hash.throughput = 2000000000, hash.device = "cpu: 16 cores", hash.workers = 16;

        ra.node_id = (ProtobufCBinaryData) { 32, a.pk };
        ra.version = 12, ra.incarnation = 2;
        ra.n_endpoints = ELEMENTSOF(endpoints), ra.endpoints = endpoints;
        ra.n_skills = ELEMENTSOF(skills), ra.skills = skills;
        ra.capacity = 18, ra.load = 3, ra.lending = true, ra.name = "gpu-box";
        ra.issued_at = 1700000000000000;
        check(wire_record_sign(&ra, a.sk, &sa), "sign a");

        rb.node_id = (ProtobufCBinaryData) { 32, b.pk };
        rb.version = 1;
        rb.n_endpoints = 1, rb.endpoints = endpoints;
        check(wire_record_sign(&rb, b.sk, &sb), "sign b");

        write_record("full", &sa);
        write_record("minimal", &sb);
        /* a claims to be b */
        rb.version = 2;
        buf = malloc(protobuf_c_message_get_packed_size(&rb.base));
        size = protobuf_c_message_pack(&rb.base, buf);
        crypto_sign_detached(sig, NULL, buf, size, a.sk);
        forged.body = (ProtobufCBinaryData) { size, buf };
        forged.signature = (ProtobufCBinaryData) { 64, sig };
        write_record("forged", &forged);

        r1.node_id = (ProtobufCBinaryData) { 32, a.pk };
        r1.incarnation = 2, r1.state = SWARM__MEMBER_STATE__SUSPECT;
        r2.node_id = (ProtobufCBinaryData) { 32, b.pk };
        r2.incarnation = 7, r2.state = SWARM__MEMBER_STATE__DEAD;
        g.n_rumors = ELEMENTSOF(rumors), g.rumors = rumors;
        g.n_records = ELEMENTSOF(records), g.records = records;

        ping.seq = 1;
        e.body_case = SWARM__ENVELOPE__BODY_PING, e.ping = &ping;
        write_envelope("ping-direct", &e);
        ping.seq = 1234567;
        ping.on_behalf_of = (ProtobufCBinaryData) { 32, b.pk };
        ping.gossip = &g;
        write_envelope("ping-gossip", &e);

        ack.seq = 1234567, ack.target = (ProtobufCBinaryData) { 32, a.pk };
        ack.gossip = &g;
        e.body_case = SWARM__ENVELOPE__BODY_ACK, e.ack = &ack;
        write_envelope("ack", &e);

        req.seq = 99, req.target = (ProtobufCBinaryData) { 32, b.pk };
        e.body_case = SWARM__ENVELOPE__BODY_PING_REQ, e.ping_req = &req;
        write_envelope("ping-req", &e);

        d1.node_id = (ProtobufCBinaryData) { 32, a.pk }, d1.version = 12;
        d2.node_id = (ProtobufCBinaryData) { 32, b.pk }, d2.version = 1;
        pp.n_digests = ELEMENTSOF(digests), pp.digests = digests;
        pp.n_records = 1, pp.records = records + 1;
        pp.sender = &sa;
        e.body_case = SWARM__ENVELOPE__BODY_PUSH_PULL, e.push_pull = &pp;
        write_envelope("push-pull", &e);
        pp.is_reply = true;
        pp.n_digests = 0;
        write_envelope("push-pull-reply", &e);

        wire_signed_record_clear(&sa);
        wire_signed_record_clear(&sb);
}

static void write_wmsg(int pair[2], const char *name, const struct wmsg *m) {
        uint8_t buf[128 * 1024];
        ssize_t n;

        check(wmsg_send(pair[0], m), name);
        n = recv(pair[1], buf, sizeof(buf), 0);
        if (n <= 0) {
                fprintf(stderr, "%s: recv: %m\n", name);
                exit(EXIT_FAILURE);
        }
        write_file("worker-proto", name, buf, (size_t) n);
}

static void worker_messages(void) {
        static const uint8_t bytes[] = { 0xde, 0xad, 0xbe, 0xef };
        int pair[2];
        struct wmsg m;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
                exit(EXIT_FAILURE);

        m = (struct wmsg) { .type = WMSG_INIT, .values[0] = swarm_values_new() };
        check(swarm_values_set_string(m.values[0], "device", "cpu"), "init");
        check(swarm_values_set_int(m.values[0], "threads", 4), "init");
        write_wmsg(pair, "init", &m);
        wmsg_done(&m);

        m = (struct wmsg) { .type = WMSG_HELLO, .number = 0x10000, .values[0] = swarm_values_new() };
        m.text[WMSG_TEXT_NAME] = strdup("gemm");
        m.text[WMSG_TEXT_VERSION] = strdup("1.2.0");
        m.text[WMSG_TEXT_DESCRIPTION] = strdup("C = A·B");
        check(swarm_values_set_string(m.values[0], "unit", "flop"), "hello");
        check(swarm_values_set_bytes(m.values[0], "blob", bytes, sizeof(bytes)), "hello");
        write_wmsg(pair, "hello", &m);
        wmsg_done(&m);

        m = (struct wmsg) { .type = WMSG_PRICE, .job_id = 7, .values[0] = swarm_values_new() };
        check(swarm_values_set_int(m.values[0], "n", 1024), "price");
        write_wmsg(pair, "price", &m);
        wmsg_done(&m);

        m = (struct wmsg) { .type = WMSG_PRICE_REPLY, .job_id = 7, .number = 123456 };
        write_wmsg(pair, "price-reply", &m);

        m = (struct wmsg) { .type = WMSG_EXECUTE_REPLY, .job_id = 8, .status = -EINVAL };
        m.text[WMSG_TEXT_ERROR] = strdup("input 'a' is not a matrix");
        write_wmsg(pair, "execute-reply-error", &m);
        wmsg_done(&m);

        m = (struct wmsg) { .type = WMSG_ADVERTISE };
        write_wmsg(pair, "advertise", &m);
}

static void write_job(const char *name, Swarm__JobEnvelope *e) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size;

        check(job_encode(e, 1024 * 1024, &buf, &size), name);
        write_file("job", name, buf, size);
}

/* Requests with every kind of value, signed results (a success and a
 * refusal), and a bare JobResult body (the target also opens its input as
 * one). */
static void job_messages(void) {
        static uint8_t id[JOB_ID_SIZE] = { 'j', 'o', 'b' };
        static float x[6] = { 1, 2, 3, 4, 5, 6 };
        static uint64_t shape[2] = { 2, 3 };
        struct key k = key_from('p'), requester = key_from('r');
        Swarm__Tensor t = SWARM__TENSOR__INIT;
        Swarm__JobValue v[4], *vp[4];
        Swarm__JobRequest q = SWARM__JOB_REQUEST__INIT;
        Swarm__JobResult res = SWARM__JOB_RESULT__INIT;
        Swarm__SignedResult s;
        Swarm__JobEnvelope e = SWARM__JOB_ENVELOPE__INIT;
        _cleanup_free_ uint8_t *body = NULL;
        size_t size;

        for (size_t i = 0; i < 4; i++) {
                swarm__job_value__init(&v[i]);
                vp[i] = &v[i];
        }
        t.dtype = SWARM_DTYPE_F32;
        t.shape = shape;
        t.n_shape = 2;
        t.data = (ProtobufCBinaryData) { .len = sizeof(x), .data = (uint8_t *) x };
        v[0].name = "x", v[0].value_case = SWARM__JOB_VALUE__VALUE_TENSOR, v[0].tensor = &t;
        v[1].name = "mode", v[1].value_case = SWARM__JOB_VALUE__VALUE_TEXT, v[1].text = "echo";
        v[2].name = "digest-size", v[2].value_case = SWARM__JOB_VALUE__VALUE_INTEGER, v[2].integer = 32;
        v[3].name = "data", v[3].value_case = SWARM__JOB_VALUE__VALUE_DATA;
        v[3].data = (ProtobufCBinaryData) { .len = 3, .data = (uint8_t *) "abc" };

        q.job_id = (ProtobufCBinaryData) { .len = JOB_ID_SIZE, .data = id };
        q.skill = "testskill";
        q.inputs = vp;
        q.n_inputs = 4;
        q.max_price = 1000;
        q.deadline_ms = 5000;
        e.body_case = SWARM__JOB_ENVELOPE__BODY_REQUEST;
        e.request = &q;
        write_job("request", &e);
        q.skill = "hash";
        q.inputs = vp + 3;
        q.n_inputs = 1;
        write_job("request-hash", &e);

        res.job_id = q.job_id;
        res.requester = (ProtobufCBinaryData) { .len = 32, .data = requester.pk };
        res.outputs = vp;
        res.n_outputs = 1;
        res.proof = vp + 2;
        res.n_proof = 1;
        res.price = 6;
        res.exec_us = 12;
        res.device = "cpu";
        check(job_result_sign(&res, k.sk, &s), "job result");
        e.body_case = SWARM__JOB_ENVELOPE__BODY_RESULT;
        e.result = &s;
        write_job("result", &e);
        job_signed_result_clear(&s);

        size = protobuf_c_message_get_packed_size(&res.base);
        body = malloc(size);
        protobuf_c_message_pack(&res.base, body);
        write_file("job", "result-body", body, size);

        swarm__job_result__init(&res);
        res.requester = (ProtobufCBinaryData) { .len = 32, .data = requester.pk };
        res.status = -EBADMSG;
        res.error = "malformed job message: tensor data length is not its element count times its dtype size";
        check(job_result_sign(&res, k.sk, &s), "job refusal");
        write_job("refusal", &e);
        job_signed_result_clear(&s);
}

/* Cheques and opinions: signed by the fuzz target's own key (seed "fuzz"),
 * so that their bodies, which the target signs again, open; and the same
 * in job envelopes. */
static void credit_messages(void) {
        static const uint8_t seed[32] = { 'f', 'u', 'z', 'z' };
        uint8_t pk[32], sk[64];
        struct cheque c = { .amount = 123456, .has_last_job = true, .issued_at = 1700000000000000 };
        struct reputation_opinion_entry entries[2] = {
                { .skill = "gemm", .successes = 12.5, .failures = 1 },
                { .skill = "hash", .successes = 3, .failures = 0 },
        };
        Swarm__SignedCheque sc;
        Swarm__SignedOpinion so, *list[1] = { &so };
        Swarm__OpinionBatch batch = SWARM__OPINION_BATCH__INIT;
        Swarm__JobEnvelope e = SWARM__JOB_ENVELOPE__INIT;
        _cleanup_free_ uint8_t *bytes = NULL;
        size_t size;

        crypto_sign_seed_keypair(pk, sk, seed);
        memcpy(c.payer, pk, 32);
        memcpy(c.payee, pk, 32);
        memset(c.last_job, 'j', sizeof(c.last_job));
        check(cheque_sign(&c, sk, &bytes, &size), "cheque");
        write_file("credits", "cheque-signed", bytes, size);
        check(cheque_sign_message(&c, sk, &sc), "cheque message");
        write_file("credits", "cheque-body", sc.body.data, sc.body.len);
        e.body_case = SWARM__JOB_ENVELOPE__BODY_CHEQUE;
        e.cheque = &sc;
        write_job("cheque", &e);
        cheque_signed_clear(&sc);

        memset(entries[0].subject, 's', 32);
        memset(entries[1].subject, 't', 32);
        check(opinion_sign(pk, 7, 1700000000000000, entries, 2, sk, &so), "opinion");
        write_file("credits", "opinion-body", so.body.data, so.body.len);
        batch.opinions = list;
        batch.n_opinions = 1;
        e.body_case = SWARM__JOB_ENVELOPE__BODY_OPINIONS;
        e.opinions = &batch;
        write_job("opinions", &e);
        opinion_signed_clear(&so);
}

/* ---- The state-machine targets: sequences of records (fuzz-provider.c,
 * fuzz-requester.c): an op byte, a 16-bit little-endian length, the
 * payload. */

struct input {
        uint8_t data[16384];
        size_t size;
};

static void in_raw(struct input *in, const void *p, size_t n) {
        if (in->size + n > sizeof(in->data)) {
                fprintf(stderr, "seed too long\n");
                exit(EXIT_FAILURE);
        }
        memcpy(in->data + in->size, p, n);
        in->size += n;
}

static void in_op(struct input *in, uint8_t op, const void *p, size_t n) {
        uint8_t h[3] = { op, (uint8_t) (n & 0xff), (uint8_t) (n >> 8) };

        in_raw(in, h, sizeof(h));
        in_raw(in, p, n);
}

static struct input in_new(uint8_t h0, uint8_t h1) {
        struct input in = { .data = { h0, h1 }, .size = 2 };

        return in;
}

/* A pool answer (world_parse_answer()): request i, status index s, price,
 * flags (outputs kind, proof, error text), data. */
static void in_answer_bytes(struct input *in, uint8_t op, uint8_t i, uint8_t s, uint32_t price, uint8_t flags,
                            const void *data, size_t n) {
        uint8_t p[7 + 8192] = { i, s };

        if (n > sizeof(p) - 7)
                exit(EXIT_FAILURE);
        memcpy(p + 2, &price, sizeof(price));
        p[6] = flags;
        if (n)
                memcpy(p + 7, data, n);
        in_op(in, op, p, 7 + n);
}

static void in_answer(struct input *in, uint8_t op, uint8_t i, uint8_t s, uint32_t price, uint8_t flags,
                      const char *text) {
        in_answer_bytes(in, op, i, s, price, flags, text, text ? strlen(text) : 0);
}

/* A JobRequest envelope, as a requester sends it, from peer. */
static void in_request(struct input *in, uint8_t peer, uint8_t id, const char *skill, uint64_t max_price,
                       uint64_t deadline_ms) {
        uint8_t job_id[JOB_ID_SIZE], msg[1024];
        Swarm__JobValue v = SWARM__JOB_VALUE__INIT, *vp[] = { &v };
        Swarm__JobRequest q = SWARM__JOB_REQUEST__INIT;
        Swarm__JobEnvelope e = SWARM__JOB_ENVELOPE__INIT;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size;

        memset(job_id, id, sizeof(job_id));
        v.name = "data", v.value_case = SWARM__JOB_VALUE__VALUE_DATA;
        v.data = (ProtobufCBinaryData) { .len = 3, .data = (uint8_t *) "abc" };
        q.job_id = (ProtobufCBinaryData) { .len = JOB_ID_SIZE, .data = job_id };
        q.skill = (char *) skill;
        q.inputs = vp;
        q.n_inputs = 1;
        q.max_price = max_price;
        q.deadline_ms = deadline_ms;
        e.body_case = SWARM__JOB_ENVELOPE__BODY_REQUEST;
        e.request = &q;
        check(job_encode(&e, 1024 * 1024, &buf, &size), "request");
        msg[0] = peer;
        memcpy(msg + 1, buf, size);
        in_op(in, 0, msg, size + 1);
}

static void provider_inputs(void) {
        static const uint8_t garbage[] = { 0, 0x08, 0x07, 0x1a, 0x03, 'x' };
        struct input in;

        /* Admitted, priced, streamed, answered. */
        in = in_new(0x01, 0);
        in_request(&in, 0, 1, "hash", 1000, 5000);
        in_answer(&in, 1, 0, 0, 5, 0, NULL);
        in_op(&in, 3, (uint8_t[]) { 0 }, 1);
        in_op(&in, 2, (uint8_t[]) { 0, 0, 'h', 'e', 'l' }, 5);
        in_op(&in, 2, (uint8_t[]) { 0, 1, 'l', 'o' }, 4);
        in_answer(&in, 1, 0, 0, 0, 0 | 8, "proof");
        write_file("provider", "run-stream", in.data, in.size);

        /* Every refusal before a job exists, and a price over the max. */
        in = in_new(0x08, 0);
        in_request(&in, 3, 2, "hash", 1000, 5000);
        in_request(&in, 0, 3, "nope", 1000, 5000);
        in_request(&in, 0, 4, "cold", 1000, 5000);
        in_request(&in, 0, 5, "hash", 1000, 0);
        in_request(&in, 0, 6, "hash", 1000, 1);
        in_op(&in, 0, garbage, sizeof(garbage));
        in_request(&in, 1, 7, "text", 0, 5000);
        in_answer(&in, 1, 0, 0, 9, 0, NULL);
        write_file("provider", "refusals", in.data, in.size);

        /* Not lending, then lending. */
        in = in_new(0x02, 0);
        in_request(&in, 1, 8, "hash", 1000, 5000);
        in_op(&in, 6, (uint8_t[]) { 1 }, 1);
        in_request(&in, 1, 9, "hash", 1000, 5000);
        in_answer(&in, 1, 0, 0, 7, 0, NULL);
        in_answer(&in, 1, 0, 0, 0, 1, "out");
        write_file("provider", "lending", in.data, in.size);

        /* A debt limit of 40: the second job would pass it; the first is
         * recorded before it is answered. */
        in = in_new(0x05, 1 << 2);
        in_request(&in, 0, 10, "hash", 1000, 5000);
        in_answer(&in, 1, 0, 0, 30, 0, NULL);
        in_answer(&in, 1, 0, 0, 0, 3, "12345678");
        in_request(&in, 0, 11, "hash", 1000, 5000);
        in_answer(&in, 1, 0, 0, 30, 0, NULL);
        in_op(&in, 5, (uint8_t[]) { 0 }, 1);
        in_request(&in, 2, 12, "hash", 1000, 5000);
        in_op(&in, 5, (uint8_t[]) { 2 | 4 }, 1);
        in_answer(&in, 1, 0, 0, 30, 0, NULL);
        in_answer(&in, 1, 0, 0, 0, 1, "x");
        write_file("provider", "debt", in.data, in.size);

        /* testing.corrupt_results and corrupt_stream, with demand. */
        in = in_new(0x01 | 0x10 | 0x20 | 0x40, 2 << 5);
        in_request(&in, 0, 13, "hash", 1000, 5000);
        in_answer(&in, 1, 0, 0, 5, 0, NULL);
        in_op(&in, 2, (uint8_t[]) { 0, 0, 'h', 'i' }, 4);
        in_answer_bytes(&in, 1, 0, 0, 0, 4, (const float[]) { 1.0f, 2.0f }, 2 * sizeof(float));
        write_file("provider", "corrupt", in.data, in.size);

        /* A queue of one: busy; then the goodbye with jobs in flight. */
        in = in_new(0x80, 0);
        in_request(&in, 0, 14, "hash", 1000, 5000);
        in_request(&in, 1, 15, "hash", 1000, 5000);
        in_answer(&in, 1, 0, 0, 5, 0, NULL);
        in_request(&in, 2, 16, "text", 1000, 5000);
        in_op(&in, 3, (uint8_t[]) { 0 }, 1);
        in_op(&in, 2, (uint8_t[]) { 0, 2, '.' }, 3);
        write_file("provider", "busy-shutdown", in.data, in.size);

        /* network.max_message_size 4096: a result too big to send, and
         * one the codec refuses (a string that is not UTF-8). */
        in = in_new(0x00, 3);
        in_request(&in, 0, 17, "hash", 1000, 5000);
        in_answer(&in, 1, 0, 0, 5, 0, NULL);
        {
                uint8_t big[5000];

                memset(big, 'z', sizeof(big));
                in_answer_bytes(&in, 1, 0, 0, 0, 1, big, sizeof(big));
        }
        in_request(&in, 0, 18, "hash", 1000, 5000);
        in_answer(&in, 1, 0, 0, 5, 0, NULL);
        in_answer(&in, 1, 0, 0, 0, 2, "\xff\xfe");
        write_file("provider", "unsendable", in.data, in.size);

        /* The network refuses a chunk, then the result; worker errors
         * (an errno with its text, a cancel, any negative number). */
        in = in_new(0x00, 0);
        in_request(&in, 0, 19, "hash", 1000, 5000);
        in_answer(&in, 1, 0, 0, 5, 0, NULL);
        in_op(&in, 7, (uint8_t[]) { 0x80 }, 1);
        in_op(&in, 2, (uint8_t[]) { 0, 0, 'a' }, 3);
        in_op(&in, 7, (uint8_t[]) { 0 }, 1);
        in_op(&in, 2, (uint8_t[]) { 0, 0, 'b' }, 3);
        in_answer(&in, 1, 0, 1, 0, 16, "input 'a' is\nnot a matrix");
        in_request(&in, 1, 20, "hash", 1000, 5000);
        in_answer(&in, 1, 0, 3, 0, 0, NULL);
        in_request(&in, 1, 21, "hash", 1000, 5000);
        in_answer(&in, 1, 0, 0, 5, 0, NULL);
        in_answer(&in, 1, 0, 0xff, 0x80000000u, 0, NULL);
        write_file("provider", "errors", in.data, in.size);
}

/* A JobResult body as a provider signs it (fuzz-requester.c puts in the
 * job id, the requester and the stream digest). */
static size_t result_body(int status, const char *error, uint64_t price, const char *out, uint8_t *buf,
                          size_t size) {
        Swarm__JobValue v = SWARM__JOB_VALUE__INIT, *vp[] = { &v };
        Swarm__JobResult r = SWARM__JOB_RESULT__INIT;
        size_t n;

        r.status = status;
        r.error = (char *) (error ?: "");
        r.price = price;
        r.device = "cpu";
        r.queue_us = 10;
        r.exec_us = 20;
        if (out) {
                v.name = "out", v.value_case = SWARM__JOB_VALUE__VALUE_DATA;
                v.data = (ProtobufCBinaryData) { .len = strlen(out), .data = (uint8_t *) out };
                r.outputs = vp;
                r.n_outputs = 1;
        }
        n = protobuf_c_message_get_packed_size(&r.base);
        if (n > size)
                exit(EXIT_FAILURE);
        return protobuf_c_message_pack(&r.base, buf);
}

static void in_result(struct input *in, uint8_t sel, uint8_t flags, int status, const char *error, uint64_t price,
                      const char *out) {
        uint8_t p[2 + 1024] = { sel, flags };

        in_op(in, 3, p, 2 + result_body(status, error, price, out, p + 2, sizeof(p) - 2));
}

/* A job: skill index (fuzz-requester.c's submit()), flags, pinned peer,
 * max price. */
static void in_submit(struct input *in, uint8_t skill, uint8_t flags, uint8_t pin, uint32_t max_price) {
        uint8_t p[8] = { skill, flags, pin };

        memcpy(p + 3, &max_price, sizeof(max_price));
        p[7] = 'x';
        in_op(in, 0, p, sizeof(p));
}

static void requester_inputs(void) {
        static const uint8_t loop[1] = { 0 };
        struct input in;

        /* Priced, asked, answered, verified, handed over. */
        in = in_new(0x01, 0);
        in_submit(&in, 0, 0, 0, 1000);
        in_answer(&in, 1, 0, 0, 10, 0, NULL);
        in_result(&in, 0, 0, 0, NULL, 10, "digest");
        in_answer(&in, 1, 0, 0, 0, 0, NULL);
        in_op(&in, 6, loop, 0);
        write_file("requester", "remote", in.data, in.size);

        /* Streamed: two chunks, the result vouching for them. */
        in = in_new(0x01, 0);
        in_submit(&in, 2, 8, 0, 1000);
        in_answer(&in, 1, 0, 0, 10, 0, NULL);
        in_op(&in, 4, (uint8_t[]) { 0, 0, 0, 0, 'h', 'e', 'l' }, 7);
        in_op(&in, 4, (uint8_t[]) { 0, 0, 0, 0, 'l', 'o' }, 6);
        in_result(&in, 0, 0, 0, NULL, 10, "hello");
        in_answer(&in, 1, 0, 0, 0, 0, NULL);
        in_op(&in, 6, loop, 0);
        write_file("requester", "stream", in.data, in.size);

        /* A refusal, a lie caught by verification, a third provider. */
        in = in_new(0x01, 7);
        in_submit(&in, 0, 8, 0, 100000);
        in_answer(&in, 1, 0, 0, 10, 0, NULL);
        in_op(&in, 4, (uint8_t[]) { 0, 0, 1, 0, 'x' }, 5);
        in_result(&in, 0, 0, -EBUSY, "busy", 0, NULL);
        in_result(&in, 1, 0, 0, NULL, 10, "wrong");
        in_answer(&in, 1, 0, 1, 0, 16, "result failed verification");
        in_result(&in, 2, 0, 0, NULL, 10, "right");
        in_answer(&in, 1, 0, 0, 0, 0, NULL);
        in_op(&in, 6, loop, 0);
        write_file("requester", "reroute", in.data, in.size);

        /* No network, a provider here: run in the local pool, streamed. */
        in = in_new(0x02, 0);
        in_submit(&in, 0, 8, 0, 1000);
        in_answer(&in, 1, 0, 0, 1, 0, NULL);
        in_op(&in, 2, (uint8_t[]) { 0, 0, 'h', 'i' }, 4);
        in_answer(&in, 1, 0, 0, 0, 0, NULL);
        in_answer(&in, 1, 0, 0, 0, 0, NULL);
        in_op(&in, 6, loop, 0);
        write_file("requester", "local", in.data, in.size);

        /* Hedged, kept under a key, paid through the accounts. */
        in = in_new(0x07, 0);
        in_submit(&in, 0, 1 | 4, 0, 1000);
        in_answer(&in, 1, 0, 0, 10, 0, NULL);
        in_result(&in, 0, 0, 0, NULL, 10, "digest");
        in_answer(&in, 1, 0, 0, 0, 0, NULL);
        in_op(&in, 6, loop, 0);
        in_op(&in, 7, (uint8_t[]) { 0 }, 1);
        in_op(&in, 6, loop, 0);
        write_file("requester", "paid", in.data, in.size);

        /* Forgeries: another signer, another requester, another sender,
         * over the max price, garbage; chunks out of order. */
        in = in_new(0x01, 0);
        in_submit(&in, 1, 0, 0, 1000);
        in_answer(&in, 1, 0, 0, 10, 0, NULL);
        in_result(&in, 0, 8, 0, NULL, 10, "a");
        in_result(&in, 0, 16, 0, NULL, 10, "b");
        in_result(&in, 0, 2, 0, NULL, 10, "c");
        in_result(&in, 0, 0, 0, NULL, 100000, "d");
        in_op(&in, 5, (uint8_t[]) { 0, 0x08, 0x01 }, 3);
        in_op(&in, 4, (uint8_t[]) { 0, 1, 0, 5, 'x' }, 5);
        write_file("requester", "forged", in.data, in.size);

        /* Cancelled, a provider dead, a job pinned, another variant. */
        in = in_new(0x01, 0);
        in_submit(&in, 0, 0, 0, 1000);
        in_submit(&in, 2, 2, 1, 1000);
        in_submit(&in, 1, 2, 2, 1000);
        in_answer(&in, 1, 0, 0, 10, 0, NULL);
        in_answer(&in, 1, 0, 0, 10, 0, NULL);
        in_op(&in, 8, (uint8_t[]) { 0 }, 1);
        in_op(&in, 9, (uint8_t[]) { 2, 2 }, 2);
        in_answer(&in, 1, 0, 0, 10, 0, NULL);
        in_op(&in, 6, loop, 0);
        write_file("requester", "cancel-pin", in.data, in.size);

        /* Jobs that cannot start. */
        in = in_new(0x03, 0);
        in_submit(&in, 5, 0, 0, 1000);
        in_submit(&in, 4, 0, 0, 1000);
        in_submit(&in, 3, 0, 0, 1000);
        in_submit(&in, 0, 16, 0, 1000);
        in_submit(&in, 0, 0, 0, 0);
        in_answer(&in, 1, 0, 0, 10, 0, NULL);
        in_op(&in, 6, loop, 0);
        write_file("requester", "cannot-start", in.data, in.size);

        /* A refusal whose status is not an errno, without a text (the
         * codec refuses it: a requester would negate INT_MIN). */
        in = in_new(0x01, 0);
        in_submit(&in, 0, 0, 0, 1000);
        in_answer(&in, 1, 0, 0, 10, 0, NULL);
        in_result(&in, 0, 0, INT32_MIN, NULL, 0, NULL);
        in_op(&in, 6, loop, 0);
        write_file("requester", "status-not-errno", in.data, in.size);
}

int main(int argc, char *argv[]) {
        if (argc != 2) {
                fprintf(stderr, "Usage: %s DIR\n", argv[0]);
                return EXIT_FAILURE;
        }
        out_dir = argv[1];
        if (mkdir(out_dir, 0755) < 0 && errno != EEXIST) {
                fprintf(stderr, "%s: %m\n", out_dir);
                return EXIT_FAILURE;
        }
        if (sodium_init() < 0)
                return EXIT_FAILURE;
        envelopes_and_records();
        worker_messages();
        job_messages();
        credit_messages();
        provider_inputs();
        requester_inputs();
        return EXIT_SUCCESS;
}

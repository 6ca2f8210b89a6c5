/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The requester on anything providers send back and anything its own
 * pools answer: jobs run through requester.c from submission to a
 * verified outcome — pricing in the local pool, routing over the members'
 * offers, requests out, then signed results, refusals and streamed chunks
 * in through the jobs channel (jobs-channel.c), matched to their attempts,
 * checked (signature, requester, status, price, stream digest), verified
 * in the local pool, paid and handed over.  The pools, the network,
 * membership and the accounts are jobs-world.h's fakes, driven by the
 * input; the rest is the daemon's code.
 *
 * Input: two header bytes (the node, config_of(); the router's random
 * seed), then records: an op byte, a 16-bit little-endian length and that
 * many bytes (p; fewer at the end of the input):
 *   0 submit   a job (submit())
 *   1 answer   a pool request: PRICE, a local EXECUTE, VERIFY (world_parse_answer())
 *   2 chunk    local request p[0] emits a chunk named by p[1], of the rest
 *   3 result   a JobResult from a provider, signed (result())
 *   4 chunk    a JobChunk from a provider (chunk())
 *   5 message  from peer p[0] % 4, the rest on the jobs channel as it is
 *   6 loop     the event loop turns until idle (finished jobs are handed
 *              over), and cancelled running requests stop
 *   7 ledger   the queued payments are written (p[0] bit 0: they fail);
 *              bit 1: writes fail from now on (bit 2) or no longer
 *   8 cancel   job p[0]
 *   9 member   member p[0] % 3 becomes alive, suspect, dead or left (p[1])
 *  10 network  sends to peer p[0] % 4 fail (bit 7) or work again
 *
 * Then requester_stop(), and: every job's done was called exactly once,
 * never from inside requester_submit(); a success hands over exactly the
 * outputs a VERIFY accepted, within the job's max price, from the pinned
 * provider if any; failures say why and hand nothing over; streamed
 * chunks reach the submitter numbered 0, 1, 2, … and a void chunk only
 * restarts; requests go out only to members offering the skill, with a
 * deadline within the job's; nothing leaks, no callback comes after its
 * object is gone (ASan). */

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "job-wire.h"
#include "jobs-channel.h"
#include "jobs-world.h"
#include "log.h"
#include "macro.h"
#include "membership.h"
#include "requester.h"
#include "time-util.h"

#define SUBMITS_MAX 16u
#define ASKED_MAX 64u
#define BUDGET_USEC (60 * USEC_PER_SEC)

struct submitted {
        uint64_t id;
        struct swarm_values *inputs;
        uint64_t max_price;
        int pinned;                     /* peer, or -1 */
        unsigned done;
        bool stream;
        uint32_t next_seq;
};

/* A request this node sent (and the network took). */
struct asked {
        unsigned to;
        uint8_t job_id[JOB_ID_SIZE];
        uint32_t chunks;                /* sent to it in order by chunk() */
        struct job_stream_digest stream;
};

static struct {
        struct requester *r;
        struct submitted subs[SUBMITS_MAX];
        size_t n_subs;
        bool submitting;
        struct asked asked[ASKED_MAX];
        size_t n_asked;
        uint64_t max_message_size;
        uint64_t rng;
} t;

static char fake_provider;      /* the requester only checks for one */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        world_init();
        log_set_max_level(getenv("FUZZ_REQUESTER_DEBUG") ? LOG_DEBUG : LOG_CRIT);
        return 0;
}

static uint64_t rng(void *userdata) {
        t.rng ^= t.rng << 13;
        t.rng ^= t.rng >> 7;
        t.rng ^= t.rng << 17;
        return t.rng;
}

/* Which skills the fake members offer (jobs-world.c's membership_init()). */
static bool offers(unsigned member, const char *skill) {
        static const char *const offered[WORLD_MEMBERS] = { " hash echo text ", " hash text ", " hash echo " };
        char word[80];

        snprintf(word, sizeof(word), " %s ", skill);
        return strstr(offered[member], word);
}

static void on_sent(unsigned to, const Swarm__JobEnvelope *e, bool delivered, void *userdata) {
        const Swarm__JobRequest *q = e->request;
        struct asked *a;

        if (e->body_case == SWARM__JOB_ENVELOPE__BODY_RESULT) {
                _cleanup_(job_result_freep) Swarm__JobResult *res = NULL;

                /* The channel's refusals: of what did not decode, and of
                 * requests (this node runs no provider). */
                FUZZ_CHECK(job_result_open(e->result, world.self_pk, t.max_message_size, &res, NULL) == 0);
                FUZZ_CHECK((res->job_id.len == 0 && res->status == -EBADMSG) || res->status == -EOPNOTSUPP);
                return;
        }
        FUZZ_CHECK(e->body_case == SWARM__JOB_ENVELOPE__BODY_REQUEST);
        FUZZ_CHECK(to < WORLD_MEMBERS && offers(to, q->skill));
        /* Within the job's budget (give or take how stale the loop's time
         * is against the clock the deadline was set by): not wrapped. */
        FUZZ_CHECK(q->deadline_ms > 0 && q->deadline_ms <= 2 * BUDGET_USEC / USEC_PER_MSEC);
        if (!delivered || t.n_asked >= ASKED_MAX)
                return;
        a = &t.asked[t.n_asked++];
        *a = (struct asked) { .to = to };
        memcpy(a->job_id, q->job_id.data, JOB_ID_SIZE);
        job_stream_digest_init(&a->stream);
}

static void on_chunk(uint64_t job, const struct job_chunk *c, void *userdata) {
        struct submitted *s = userdata;

        FUZZ_CHECK(job == s->id && s->stream && s->done == 0);
        FUZZ_CHECK(c->seq == s->next_seq);
        s->next_seq++;
        FUZZ_CHECK(c->name || (c->size == 0 && c->restart));
        FUZZ_CHECK(c->size == 0 || c->data);
}

static void on_done(uint64_t job, struct job_outcome *o, void *userdata) {
        struct submitted *s = userdata;

        FUZZ_CHECK(!t.submitting);              /* from the loop, never from inside submit */
        FUZZ_CHECK(job == s->id);
        FUZZ_CHECK(++s->done == 1);
        FUZZ_CHECK(o->status <= 0);
        FUZZ_CHECK(o->rejected <= o->attempts && o->rerouted <= o->attempts);
        if (o->status < 0) {
                FUZZ_CHECK(o->error && o->error[0]);
                FUZZ_CHECK(!o->outputs);
                return;
        }
        /* What was verified is what is handed over. */
        FUZZ_CHECK(world_outputs_verified(o->outputs));
        FUZZ_CHECK(o->attempts >= 1);
        FUZZ_CHECK(o->price <= s->max_price);
        if (s->pinned >= 0)
                FUZZ_CHECK(memcmp(o->provider_id, world.peer_pk[s->pinned], 32) == 0);
}

/* p[0]: the skill; p[1]: bit 0 hedge, bit 1 pinned to peer p[2] % 3,
 * bit 2 kept under a key, bit 3 streamed, bit 4 its deadline already
 * passed; p[3-6]: the max price (little-endian); the rest: the input
 * bytes. */
static void submit(const uint8_t *p, size_t n) {
        static const char *const skills[] = { "hash", "echo", "text", "cold", "hash-plugin", "nope" };
        uint8_t flags = n > 1 ? p[1] : 0;
        uint32_t max_price = 1000;
        struct submitted *s;
        struct job_spec spec;
        int r;

        if (n == 0 || t.n_subs >= SUBMITS_MAX)
                return;
        if (n > 6)
                memcpy(&max_price, p + 3, sizeof(max_price));
        s = &t.subs[t.n_subs];
        *s = (struct submitted) { .max_price = max_price, .pinned = -1, .stream = flags & 8 };
        s->inputs = swarm_values_new();
        FUZZ_CHECK(s->inputs);
        FUZZ_CHECK(swarm_values_set_bytes(s->inputs, "data", n > 7 ? p + 7 : p, n > 7 ? n - 7 : 0) == 0);
        if (flags & 2)
                s->pinned = (n > 2 ? p[2] : 0) % WORLD_MEMBERS;
        spec = (struct job_spec) {
                .chunk = s->stream ? on_chunk : NULL,
                .skill = skills[p[0] % ELEMENTSOF(skills)],
                .inputs = s->inputs,
                .max_price = max_price,
                .deadline_usec = flags & 16 ? 1 : now(CLOCK_MONOTONIC) + BUDGET_USEC,
                .hedge = flags & 1,
                .provider = s->pinned >= 0 ? world.peer_pk[s->pinned] : NULL,
                .keep_key = flags & 4 ? "fuzz-key" : NULL,
                .keep_owner = 1000,
        };
        t.submitting = true;
        r = requester_submit(t.r, &spec, on_done, s, &s->id);
        t.submitting = false;
        FUZZ_CHECK(r == 0);
        t.n_subs++;
}

static struct asked *asked_pick(uint8_t k) {
        return t.n_asked > 0 ? &t.asked[k % t.n_asked] : NULL;
}

/* A JobEnvelope around body (or s) as a provider sends it. */
static void envelope_send(unsigned from, Swarm__JobEnvelope *e) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size;

        e->version = WIRE_VERSION;
        size = protobuf_c_message_get_packed_size(&e->base);
        buf = malloc(size ?: 1);
        FUZZ_CHECK(buf);
        protobuf_c_message_pack(&e->base, buf);
        world_receive(from, buf, size);
}

/* p[0] picks the request answered (its provider, its job id); p[1]:
 * bit 0 the body's own job id, bit 1 its own requester, bit 2 its own
 * stream digest and count (else those of the chunks sent for it), bit 3
 * signed by another key, bit 4 sent by another peer, bit 5 the body as it
 * is (not decoded and re-encoded with the above); the rest: the JobResult
 * body. */
static void result(const uint8_t *p, size_t n) {
        static const uint8_t zero_id[JOB_ID_SIZE];
        uint8_t flags = n > 1 ? p[1] : 0, sig[crypto_sign_BYTES], digest[JOB_STREAM_DIGEST_SIZE];
        const uint8_t *body = n > 2 ? p + 2 : p, *job_id;
        size_t body_size = n > 2 ? n - 2 : 0;
        _cleanup_free_ uint8_t *packed = NULL;
        Swarm__SignedResult s = SWARM__SIGNED_RESULT__INIT;
        Swarm__JobEnvelope e = SWARM__JOB_ENVELOPE__INIT;
        Swarm__JobResult *res = NULL;
        struct asked *a;
        unsigned from, signer;

        if (n == 0)
                return;
        a = asked_pick(p[0]);
        from = a ? a->to : p[0] % WORLD_MEMBERS;
        job_id = a ? a->job_id : zero_id;
        if (flags & 16)
                from = (from + 1) % WORLD_PEERS;
        signer = flags & 8 ? (from + 1) % WORLD_PEERS : from;

        if (!(flags & 32))
                res = swarm__job_result__unpack(NULL, body_size, body);
        if (res) {
                ProtobufCBinaryData id = res->job_id, requester = res->requester, stream = res->stream_digest;
                uint32_t chunks = res->stream_chunks;

                if (!(flags & 1))
                        res->job_id = (ProtobufCBinaryData) { .len = JOB_ID_SIZE, .data = (uint8_t *) job_id };
                if (!(flags & 2))
                        res->requester = (ProtobufCBinaryData) { .len = 32, .data = world.self_pk };
                if (!(flags & 4) && a) {
                        struct job_stream_digest copy = a->stream;

                        job_stream_digest_final(&copy, digest);
                        res->stream_digest = (ProtobufCBinaryData) { .len = a->chunks ? sizeof(digest) : 0,
                                                                     .data = digest };
                        res->stream_chunks = a->chunks;
                }
                body_size = protobuf_c_message_get_packed_size(&res->base);
                packed = malloc(body_size ?: 1);
                FUZZ_CHECK(packed);
                protobuf_c_message_pack(&res->base, packed);
                body = packed;
                /* Ours again, for the free. */
                res->job_id = id;
                res->requester = requester;
                res->stream_digest = stream;
                res->stream_chunks = chunks;
                protobuf_c_message_free_unpacked(&res->base, NULL);
        }

        crypto_sign_detached(sig, NULL, body, body_size, world.peer_sk[signer]);
        s.body = (ProtobufCBinaryData) { .len = body_size, .data = (uint8_t *) body };
        s.signature = (ProtobufCBinaryData) { .len = sizeof(sig), .data = sig };
        e.body_case = SWARM__JOB_ENVELOPE__BODY_RESULT;
        e.result = &s;
        envelope_send(from, &e);
}

static const char *const chunk_names[] = { "text", "token", "log.1", "a_b-c", "Not A Name", "" };

/* p[0] picks the request it belongs to; p[1]: bit 0 numbered p[3] (else
 * the next in order), bit 1 sent by another peer; p[2]: the name; the
 * rest: the data. */
static void chunk(const uint8_t *p, size_t n) {
        Swarm__JobChunk c = SWARM__JOB_CHUNK__INIT;
        Swarm__JobEnvelope e = SWARM__JOB_ENVELOPE__INIT;
        uint8_t flags = n > 1 ? p[1] : 0;
        struct asked *a;
        unsigned from;
        bool in_order;

        if (n < 4)
                return;
        a = asked_pick(p[0]);
        if (!a)
                return;
        from = flags & 2 ? (a->to + 1) % WORLD_PEERS : a->to;
        in_order = !(flags & 1) && from == a->to;
        c.job_id = (ProtobufCBinaryData) { .len = JOB_ID_SIZE, .data = a->job_id };
        c.seq = flags & 1 ? p[3] : a->chunks;
        c.name = (char *) chunk_names[p[2] % ELEMENTSOF(chunk_names)];
        c.data = (ProtobufCBinaryData) { .len = n - 4, .data = (uint8_t *) p + 4 };
        if (in_order && c.data.len <= JOB_CHUNK_MAX && c.name[0] && strcmp(c.name, "Not A Name") != 0) {
                job_stream_digest_add(&a->stream, c.name, c.data.data, c.data.len);
                a->chunks++;
        }
        e.body_case = SWARM__JOB_ENVELOPE__BODY_CHUNK;
        e.chunk = &c;
        envelope_send(from, &e);
}

static void loop(void) {
        /* One source per iteration: until nothing is left to dispatch. */
        for (unsigned i = 0; i < 256; i++)
                if (sd_event_run(world.event, 0) <= 0)
                        break;
        world_requests_settle();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const uint64_t sizes[] = { 1024 * 1024, 64 * 1024, 8192, 4096 };
        static const int states[] = { MEMBER_ALIVE, MEMBER_SUSPECT, MEMBER_DEAD, MEMBER_LEFT };
        struct jobs_channel *channel = NULL;
        struct world_config config;
        bool networked, local;

        if (size < 2)
                return 0;
        /* Header byte 0: bit 0 networking (else this node is the only
         * candidate), bit 1 a provider runs here, bit 2 accounts, bit 3 a
         * queue of one per pool, bits 4-5 network.max_message_size.
         * Byte 1: the router's random seed. */
        networked = data[0] & 1;
        local = data[0] & 2;
        config = (struct world_config) {
                .max_message_size = sizes[data[0] >> 4 & 3],
                .accounts = data[0] & 4,
                .queue_max = data[0] & 8 ? 1 : 0,
                .local_hash = data[0] & 2,
        };
        t.max_message_size = config.max_message_size;
        t.rng = 0x9e3779b97f4a7c15ull ^ data[1];
        t.n_subs = t.n_asked = 0;
        data += 2, size -= 2;

        world_begin(&config);
        world.sent = on_sent;
        FUZZ_CHECK(requester_new(world.event, networked ? world.network : NULL, world.skills,
                                 local ? (struct provider *) &fake_provider : NULL, config.max_message_size,
                                 &t.r) == 0);
        requester_set_random(t.r, rng, NULL);
        requester_set_accounts(t.r, world.accounts);
        if (networked) {
                FUZZ_CHECK(jobs_channel_new(world.network, config.max_message_size, &channel) == 0);
                jobs_channel_set_accounts(channel, world.accounts);
                requester_attach(t.r, channel);
        }

        while (size >= 3) {
                uint8_t op = data[0];
                size_t n = (size_t) (data[1] | data[2] << 8);
                const uint8_t *q = data + 3;
                struct world_answer a;
                char error[256];
                size_t i;

                if (n > size - 3)
                        n = size - 3;
                data += 3 + n, size -= 3 + n;
                switch (op % 11) {
                case 0:
                        submit(q, n);
                        break;
                case 1:
                        i = world_parse_answer(q, n, &a, error, sizeof(error));
                        if (world_requests() > 0)
                                world_request_answer(i % world_requests(), &a);
                        break;
                case 2:
                        if (n >= 2 && world_requests() > 0)
                                world_request_chunk(q[0] % world_requests(),
                                                    chunk_names[q[1] % ELEMENTSOF(chunk_names)], q + 2, n - 2);
                        break;
                case 3:
                        result(q, n);
                        break;
                case 4:
                        chunk(q, n);
                        break;
                case 5:
                        if (n > 0)
                                world_receive(q[0] % WORLD_PEERS, q + 1, n - 1);
                        break;
                case 6:
                        loop();
                        break;
                case 7:
                        world_accounts_flush(n >= 1 && q[0] & 1 ? -EIO : 0);
                        if (n >= 1 && q[0] & 2)
                                world_accounts_set_failing(q[0] & 4);
                        break;
                case 8:
                        if (n >= 1 && t.n_subs > 0)
                                requester_cancel(t.r, t.subs[q[0] % t.n_subs].id);
                        break;
                case 9:
                        if (n >= 2)
                                world_set_member_state(q[0] % WORLD_MEMBERS, states[q[1] % ELEMENTSOF(states)]);
                        break;
                case 10:
                        if (n >= 1)
                                world_set_send_fails(q[0] % WORLD_PEERS, q[0] & 0x80);
                        break;
                }
        }

        /* The goodbye: every job ends, and says so. */
        requester_stop(t.r);
        FUZZ_CHECK(requester_active_jobs(t.r) == 0);
        for (size_t i = 0; i < t.n_subs; i++)
                FUZZ_CHECK(t.subs[i].done == 1);
        channel = jobs_channel_free(channel);
        t.r = requester_free(t.r);
        world_end();
        for (size_t i = 0; i < t.n_subs; i++)
                swarm_values_free(t.subs[i].inputs);
        return 0;
}

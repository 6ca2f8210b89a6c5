/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The provider's admission on anything peers send and anything its
 * skill's workers answer: the jobs channel (jobs-channel.c) decodes each
 * message and hands requests to provider.c, which admits them (allowed
 * requester, hosted and ready skill, lending, deadline, debt), prices
 * them in the skill's pool with this node's demand, runs them, streams
 * their chunks and answers with signed results (job-send.c).  The pools,
 * the network, lending and the accounts are jobs-world.h's fakes, driven
 * by the input; the rest is the daemon's code.
 *
 * Input: two header bytes (the node's configuration, config_of()), then
 * records: an op byte, a 16-bit little-endian length and that many bytes
 * (p; fewer at the end of the input):
 *   0 message  from peer p[0] % 4 (3: not a member), the rest on the jobs channel
 *   1 answer   a pool request (world_parse_answer())
 *   2 chunk    request p[0] emits a chunk named by p[1], of the rest
 *   3 start    a worker takes request p[0]
 *   4 settle   cancelled running requests stop
 *   5 ledger   the queued writes are done (p[0] bit 0: they fail);
 *              bit 1: writes fail from now on (bit 2) or no longer
 *   6 lending  p[0] bit 0: on
 *   7 network  sends to peer p[0] % 4 fail (bit 7) or work again
 *
 * Then the goodbye (ledger writes done, provider_stop(), pools drained),
 * and: every request the channel decoded was answered exactly once, by a
 * valid result signed by this node, made out to its sender, within the
 * request's max price when it succeeded, vouching for exactly the chunks
 * that went out (a failure: those or none); chunks went out only for jobs not yet answered, in
 * order; a message that did not decode got at most one refusal (without
 * a job id); nothing leaks. */

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
#include "node-id.h"
#include "provider.h"

/* Requests tracked per input; more are not delivered. */
#define JOBS_MAX 64u

struct job {
        unsigned from;
        uint8_t id[JOB_ID_SIZE];
        uint64_t max_price;
        bool duplicate;                 /* another unanswered job from the same peer has its id */
        unsigned answers;
        uint32_t chunks;                /* delivered */
        struct job_stream_digest stream;
};

static struct {
        struct job jobs[JOBS_MAX];
        size_t n_jobs;
        unsigned malformed, refusals;
        bool corrupt_stream;
        uint64_t max_message_size;
} t;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        world_init();
        log_set_max_level(getenv("FUZZ_PROVIDER_DEBUG") ? LOG_DEBUG : LOG_CRIT);
        return 0;
}

static struct job *job_find(unsigned from, const ProtobufCBinaryData *id, uint32_t chunk_seq, bool any_seq) {
        for (size_t i = 0; i < t.n_jobs; i++) {
                struct job *j = &t.jobs[i];

                if (j->from == from && j->answers == 0 && id->len == JOB_ID_SIZE &&
                    memcmp(j->id, id->data, JOB_ID_SIZE) == 0 && (any_seq || j->chunks == chunk_seq))
                        return j;
        }
        return NULL;
}

static void on_sent(unsigned to, const Swarm__JobEnvelope *e, bool delivered, void *userdata) {
        _cleanup_(job_result_freep) Swarm__JobResult *res = NULL;
        const char *reason = NULL;
        struct job *j;
        int r;

        switch (e->body_case) {
        case SWARM__JOB_ENVELOPE__BODY_CHUNK:
                j = job_find(to, &e->chunk->job_id, e->chunk->seq, false);
                if (!j)
                        j = job_find(to, &e->chunk->job_id, 0, true);
                FUZZ_CHECK(j);                  /* a job of that peer's, not answered yet */
                FUZZ_CHECK(j->duplicate || e->chunk->seq == j->chunks);
                if (delivered) {
                        job_stream_digest_add(&j->stream, e->chunk->name, e->chunk->data.data, e->chunk->data.len);
                        j->chunks++;
                }
                return;

        case SWARM__JOB_ENVELOPE__BODY_RESULT:
                r = job_result_open(e->result, world.self_pk, t.max_message_size, &res, &reason);
                if (r < 0)
                        fprintf(stderr, "a result that does not open: %s\n", reason ?: strerror(-r));
                FUZZ_CHECK(r == 0);
                FUZZ_CHECK(memcmp(res->requester.data, world.peer_pk[to], 32) == 0);
                FUZZ_CHECK(res->status <= 0);
                FUZZ_CHECK(res->status < 0 || !res->error || !res->error[0]);
                if (res->job_id.len == 0) {
                        /* The channel's answer to what did not decode. */
                        FUZZ_CHECK(res->status == -EBADMSG);
                        t.refusals++;
                        FUZZ_CHECK(t.refusals <= t.malformed);
                        return;
                }
                j = job_find(to, &res->job_id, 0, true);
                FUZZ_CHECK(j);                  /* asked, and not answered before */
                j->answers++;
                if (res->status == 0)
                        FUZZ_CHECK(res->price <= j->max_price);
                else
                        FUZZ_CHECK(res->price == 0 && res->n_outputs == 0);
                if (!j->duplicate) {
                        /* A provider vouches only for the chunks that went
                         * out: all of them in a success (a failure may
                         * vouch for none, when it could not be sent as
                         * it was and a plain refusal went instead). */
                        FUZZ_CHECK(res->stream_chunks == j->chunks || (res->status < 0 && res->stream_chunks == 0));
                        if (res->stream_chunks > 0 && !t.corrupt_stream) {
                                uint8_t digest[JOB_STREAM_DIGEST_SIZE];

                                job_stream_digest_final(&j->stream, digest);
                                FUZZ_CHECK(res->stream_digest.len == sizeof(digest));
                                FUZZ_CHECK(memcmp(res->stream_digest.data, digest, sizeof(digest)) == 0);
                        }
                }
                return;

        default:
                FUZZ_CHECK(!"the provider sends results and chunks only");
        }
}

/* Decodes as the channel will, to know what the provider is asked. */
static void message(unsigned from, const uint8_t *data, size_t size) {
        _cleanup_(job_envelope_freep) Swarm__JobEnvelope *e = NULL;
        const char *reason = NULL;
        struct job *j;
        int r;

        r = job_decode(data, size, t.max_message_size, &e, &reason);
        if (r < 0)
                t.malformed++;
        else if (e->body_case == SWARM__JOB_ENVELOPE__BODY_REQUEST) {
                if (t.n_jobs >= JOBS_MAX)
                        return;
                j = &t.jobs[t.n_jobs++];
                *j = (struct job) { .from = from, .max_price = e->request->max_price };
                memcpy(j->id, e->request->job_id.data, JOB_ID_SIZE);
                job_stream_digest_init(&j->stream);
                for (size_t i = 0; i + 1 < t.n_jobs; i++)
                        if (t.jobs[i].from == from && t.jobs[i].answers == 0 &&
                            memcmp(t.jobs[i].id, j->id, JOB_ID_SIZE) == 0)
                                t.jobs[i].duplicate = j->duplicate = true;
        }
        world_receive(from, data, size);
}

static const char *const chunk_names[] = { "text", "token", "log.1", "a_b-c", "Not A Name", "" };

static void config_of(const uint8_t h[2], struct world_config *c, bool *allowed, bool *corrupt_results) {
        static const uint64_t sizes[] = { 1024 * 1024, 64 * 1024, 8192, 4096 };
        static const double multipliers[] = { 1.0, 0.5, 1.5, 2.0, 4.0, 0.25, 10.0, 100.0 };

        *c = (struct world_config) {
                .max_message_size = sizes[h[1] & 3],
                .lending = (h[0] & 3) != 0,
                .lending_on = (h[0] & 3) != 2,
                .accounts = h[0] & 4,
                .debt_limit = (h[1] >> 2 & 7) == 0 ? 0 : UINT64_C(10) << (2 * (h[1] >> 2 & 7)),
                .demand = h[0] & 64,
                .demand_multiplier = multipliers[h[1] >> 5],
                .queue_max = h[0] & 128 ? 1 : 0,
        };
        *allowed = h[0] & 8;
        *corrupt_results = h[0] & 16;
        t.corrupt_stream = h[0] & 32;
        t.max_message_size = c->max_message_size;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct world_config config;
        struct provider *p = NULL;
        struct jobs_channel *channel = NULL;
        bool allowed, corrupt_results;

        if (size < 2)
                return 0;
        t.n_jobs = 0;
        t.malformed = t.refusals = 0;
        config_of(data, &config, &allowed, &corrupt_results);
        data += 2, size -= 2;

        world_begin(&config);
        world.sent = on_sent;
        FUZZ_CHECK(jobs_channel_new(world.network, config.max_message_size, &channel) == 0);
        FUZZ_CHECK(provider_new(world.event, world.network, world.skills, world.lending, config.max_message_size,
                                corrupt_results, &p) == 0);
        provider_set_corrupt_stream(p, t.corrupt_stream);
        provider_set_accounts(p, world.accounts, world.demand);
        jobs_channel_set_accounts(channel, world.accounts);
        if (allowed) {
                char a[NODE_ID_LEN + 1], b[NODE_ID_LEN + 1], *ids[] = { a, b, NULL };

                node_id_from_public_key(world.peer_pk[0], a);
                node_id_from_public_key(world.peer_pk[1], b);
                FUZZ_CHECK(provider_set_allowed_requesters(p, ids) == 0);
        }
        provider_attach(p, channel);

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
                switch (op & 7) {
                case 0:
                        if (n > 0)
                                message(q[0] % WORLD_PEERS, q + 1, n - 1);
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
                        if (n >= 1 && world_requests() > 0)
                                world_request_start(q[0] % world_requests());
                        break;
                case 4:
                        world_requests_settle();
                        break;
                case 5:
                        world_accounts_flush(n >= 1 && q[0] & 1 ? -EIO : 0);
                        if (n >= 1 && q[0] & 2)
                                world_accounts_set_failing(q[0] & 4);
                        break;
                case 6:
                        world_set_lending(n >= 1 && q[0] & 1);
                        break;
                case 7:
                        if (n >= 1)
                                world_set_send_fails(q[0] % WORLD_PEERS, q[0] & 0x80);
                        break;
                }
        }

        /* The goodbye, in the daemon's order: the accounts write what is
         * queued (results waiting on it go out), the provider answers
         * what it holds, then the pools and the rest go. */
        world_accounts_flush(0);
        provider_stop(p);
        FUZZ_CHECK(provider_active_jobs(p) == 0);
        channel = jobs_channel_free(channel);
        p = provider_free(p);
        world_end();

        for (size_t i = 0; i < t.n_jobs; i++)
                FUZZ_CHECK(t.jobs[i].answers == 1);
        return 0;
}

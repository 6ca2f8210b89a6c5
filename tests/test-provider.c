/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The provider, end to end in one process: two real network nodes on
 * loopback (CurveZMQ, no beacon), the provider node hosting the hash skill
 * and tests/plugins/testskill.c in real worker pools behind a real jobs
 * channel, and the test acting as the requester on the other node —
 * sending JobEnvelopes with network_send_job() and opening the signed
 * results it gets back. */

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "identity.h"
#include "job-wire.h"
#include "jobs-channel.h"
#include "lending.h"
#include "macro.h"
#include "network.h"
#include "provider.h"
#include "skills.h"

#define MAX_SIZE (4u * 1024u * 1024u)

static sd_event *event;
static char state_dir[2][64];
static struct identity *ids[2];
static struct config configs[2];
static struct network *provider_net, *requester_net;
static struct skills *skills;
static struct lending *lending;
static struct jobs_channel *channel;
static struct provider *provider;

/* What came back to the requester. */
static struct {
        unsigned n;
        int open_status;                /* job_result_open() */
        Swarm__JobResult *last;
} got;

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static void run_until(bool (*cond)(void), uint64_t timeout_usec, const char *what) {
        uint64_t end = now_usec() + timeout_usec;

        while (!cond()) {
                cr_assert_lt(now_usec(), end, "timed out waiting for %s", what);
                cr_assert_geq(sd_event_run(event, 10 * 1000), 0);
        }
}

static void on_result(struct network *n, const uint8_t from[WIRE_NODE_ID_SIZE], const uint8_t *data, size_t size,
                      void *userdata) {
        Swarm__JobEnvelope *e = NULL;
        const char *reason = NULL;

        cr_assert_eq(memcmp(from, ids[0]->public_key, WIRE_NODE_ID_SIZE), 0, "a result from someone else");
        cr_assert_eq(job_decode(data, size, MAX_SIZE, &e, &reason), 0, "the provider sent a bad message: %s",
                     reason ?: "");
        cr_assert_eq(e->body_case, SWARM__JOB_ENVELOPE__BODY_RESULT);
        job_result_free(got.last);
        got.last = NULL;
        got.open_status = job_result_open(e->result, ids[0]->public_key, MAX_SIZE, &got.last, &reason);
        got.n++;
        job_envelope_free(e);
}

static bool peers_know_each_other(void) {
        struct member_info m;

        return membership_find(network_membership(requester_net), ids[0]->public_key, &m) >= 0 &&
               membership_find(network_membership(provider_net), ids[1]->public_key, &m) >= 0;
}

static bool skills_up(void) {
        for (size_t i = 0; i < skills_count(skills); i++)
                if (!skill_pool_info(skills_pool(skills, i)))
                        return false;
        return true;
}

static void config_node(struct config *c, const char *seed) {
        cr_assert_eq(config_init(c), 0);
        free(c->network_bind);
        c->network_bind = strdup("tcp://127.0.0.1:0");
        c->network_beacon = false;
        c->network_max_message_size = MAX_SIZE;
        if (seed) {
                strv_free(c->network_seeds);
                c->network_seeds = calloc(2, sizeof(char *));
                c->network_seeds[0] = strdup(seed);
        }
}

static void start_provider(bool corrupt) {
        provider_stop(provider);
        provider = provider_free(provider);
        cr_assert_eq(provider_new(event, provider_net, skills, lending, MAX_SIZE, corrupt, &provider), 0);
        provider_attach(provider, channel);
}

static void setup(void) {
        const char *tests = getenv("TEST_PLUGIN_DIR"), *plugins = getenv("SKILL_BUILD_DIR");
        char seed[256], path[4096];
        sigset_t mask;

        cr_assert(tests && plugins && getenv("SWARM_WORKER"), "run through meson test");
        cr_assert_geq(sodium_init(), 0);
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        cr_assert_eq(sd_event_new(&event), 0);

        for (int i = 0; i < 2; i++) {
                snprintf(state_dir[i], sizeof(state_dir[i]), "/tmp/test-provider-XXXXXX");
                cr_assert_not_null(mkdtemp(state_dir[i]));
                cr_assert_eq(identity_load_or_create(state_dir[i], &ids[i], NULL), 0);
        }

        /* Node 0: the provider. */
        config_node(&configs[0], NULL);
        strv_free(configs[0].skills_enabled);
        configs[0].skills_enabled = calloc(3, sizeof(char *));
        snprintf(path, sizeof(path), "%s/hash/hash.so", plugins);
        configs[0].skills_enabled[0] = strdup(path);
        snprintf(path, sizeof(path), "%s/testskill.so", tests);
        configs[0].skills_enabled[1] = strdup(path);
        configs[0].skills_workers = 1;
        configs[0].skills_kill_grace = 500 * 1000;
        configs[0].skills_cgroups = SKILLS_CGROUPS_OFF;
        cr_assert_eq(network_new(event, &configs[0], ids[0], &provider_net), 0);
        cr_assert_eq(skills_new(event, &configs[0], NULL, NULL, &skills), 0);
        cr_assert_eq(skills_count(skills), 2, "hash or testskill did not load");
        cr_assert_eq(lending_new(event, NULL, &configs[0], skills, provider_net, &lending), 0);
        cr_assert_eq(jobs_channel_new(provider_net, MAX_SIZE, &channel), 0);
        start_provider(false);

        /* Node 1: the requester (this test), seeded with node 0. */
        snprintf(seed, sizeof(seed), "%s@%s", ids[0]->node_id, network_endpoint(provider_net));
        config_node(&configs[1], seed);
        cr_assert_eq(network_new(event, &configs[1], ids[1], &requester_net), 0);
        network_set_job_handler(requester_net, on_result, NULL);

        run_until(skills_up, 15 * 1000 * 1000, "the skill workers");
        run_until(peers_know_each_other, 10 * 1000 * 1000, "the nodes to meet");
        (void) network_update_record(provider_net, skills, true);
}

static void teardown(void) {
        char cmd[256];

        job_result_free(got.last);
        got.last = NULL;
        channel = jobs_channel_free(channel);
        provider_stop(provider);
        provider = provider_free(provider);
        lending_stop(lending);
        lending = lending_free(lending);
        requester_net = network_free(requester_net);
        provider_net = network_free(provider_net);
        skills = skills_free(skills);
        event = sd_event_unref(event);
        for (int i = 0; i < 2; i++) {
                identity_free(ids[i]);
                ids[i] = NULL;
                config_done(&configs[i]);
                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", state_dir[i]);
                (void) system(cmd);
        }
}

TestSuite(provider, .init = setup, .fini = teardown, .timeout = 60);

/* ---- Requests ---------------------------------------------------------- */

struct request {
        Swarm__JobEnvelope e;
        Swarm__JobRequest q;
        Swarm__JobValue v[4];
        Swarm__JobValue *vp[4];
        Swarm__Tensor t;
        uint64_t shape[1];
        float x[4];
        uint8_t id[JOB_ID_SIZE];
};

static void request_init(struct request *r, const char *skill) {
        memset(r, 0, sizeof(*r));
        swarm__job_envelope__init(&r->e);
        swarm__job_request__init(&r->q);
        randombytes_buf(r->id, sizeof(r->id));
        r->q.job_id = (ProtobufCBinaryData) { .len = JOB_ID_SIZE, .data = r->id };
        r->q.skill = (char *) skill;
        r->q.max_price = 1000000;
        r->q.deadline_ms = 10000;
        r->q.inputs = r->vp;
        r->e.body_case = SWARM__JOB_ENVELOPE__BODY_REQUEST;
        r->e.request = &r->q;
        for (size_t i = 0; i < ELEMENTSOF(r->v); i++) {
                swarm__job_value__init(&r->v[i]);
                r->vp[i] = &r->v[i];
        }
}

static void request_hash(struct request *r, const char *data) {
        request_init(r, "hash");
        r->v[0].name = "data";
        r->v[0].value_case = SWARM__JOB_VALUE__VALUE_DATA;
        r->v[0].data = (ProtobufCBinaryData) { .len = strlen(data), .data = (uint8_t *) data };
        r->q.n_inputs = 1;
}

static void request_testskill(struct request *r, const char *mode) {
        request_init(r, "testskill");
        swarm__tensor__init(&r->t);
        r->shape[0] = 4;
        for (size_t i = 0; i < 4; i++)
                r->x[i] = 1.5f + (float) i;
        r->t.dtype = SWARM_DTYPE_F32;
        r->t.shape = r->shape;
        r->t.n_shape = 1;
        r->t.data = (ProtobufCBinaryData) { .len = sizeof(r->x), .data = (uint8_t *) r->x };
        r->v[0].name = "x";
        r->v[0].value_case = SWARM__JOB_VALUE__VALUE_TENSOR;
        r->v[0].tensor = &r->t;
        r->v[1].name = "mode";
        r->v[1].value_case = SWARM__JOB_VALUE__VALUE_TEXT;
        r->v[1].text = (char *) mode;
        r->q.n_inputs = 2;
}

static unsigned expected;

static bool result_arrived(void) {
        return got.n >= expected;
}

static void send_bytes(const uint8_t *data, size_t size) {
        cr_assert_eq(network_send_job(requester_net, ids[0]->public_key, data, size), 0);
}

/* Sends r (raw: no encoder checks, so malformed requests go out too) and
 * waits for the answer, which must be signed by the provider and addressed
 * to us. */
static Swarm__JobResult *submit_raw(struct request *r, uint64_t timeout_usec) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size;

        r->e.version = WIRE_VERSION;
        size = protobuf_c_message_get_packed_size(&r->e.base);
        buf = malloc(size);
        cr_assert_eq(protobuf_c_message_pack(&r->e.base, buf), size);
        expected = got.n + 1;
        send_bytes(buf, size);
        run_until(result_arrived, timeout_usec, "the result");
        cr_assert_eq(got.open_status, 0, "the result does not verify: %s", strerror(-got.open_status));
        cr_assert_eq(memcmp(got.last->requester.data, ids[1]->public_key, WIRE_NODE_ID_SIZE), 0);
        return got.last;
}

static Swarm__JobResult *submit(struct request *r) {
        Swarm__JobResult *res = submit_raw(r, 10 * 1000 * 1000);

        cr_assert_eq(res->job_id.len, JOB_ID_SIZE);
        cr_assert_eq(memcmp(res->job_id.data, r->id, JOB_ID_SIZE), 0, "the answer is for another job");
        return res;
}

static const Swarm__JobValue *output(const Swarm__JobResult *res, const char *name) {
        for (size_t i = 0; i < res->n_outputs; i++)
                if (strcmp(res->outputs[i]->name, name) == 0)
                        return res->outputs[i];
        cr_assert_fail("no output %s", name);
        return NULL;
}

static void assert_hash_of_abc(void) {
        struct request r;
        Swarm__JobResult *res;
        const Swarm__JobValue *digest;
        uint8_t want[32];

        request_hash(&r, "abc");
        res = submit(&r);
        cr_assert_eq(res->status, 0, "hash failed: %s", res->error);
        digest = output(res, "digest");
        cr_assert_eq(digest->value_case, SWARM__JOB_VALUE__VALUE_DATA);
        crypto_generichash(want, sizeof(want), (const uint8_t *) "abc", 3, NULL, 0);
        cr_assert_eq(digest->data.len, sizeof(want));
        cr_assert_arr_eq(digest->data.data, want, sizeof(want));
        cr_assert_gt(res->price, 0);
        cr_assert_str_eq(res->device, "cpu");
}

/* ---- Tests ------------------------------------------------------------- */

Test(provider, hash_of_abc_comes_back_correct_and_signed) {
        assert_hash_of_abc();
        cr_assert_eq(provider_active_jobs(provider), 0);
}

/* A skill refusing a job with an error text that is not UTF-8 (its own
 * bytes, say in Latin-1): the result could not be encoded, and the
 * requester got -EPROTO ("produced a result that cannot be sent") —
 * blaming the provider and rerouting — instead of the skill's -EINVAL.
 * Found by fuzz-provider. */
Test(provider, skill_error_text_that_is_not_utf8_keeps_the_skill_status) {
        static const char latin1[] = "caf\xe9 is not a number";
        struct request r;
        Swarm__JobResult *res;

        request_testskill(&r, "status");
        r.v[2].name = "status";
        r.v[2].value_case = SWARM__JOB_VALUE__VALUE_INTEGER;
        r.v[2].integer = -EINVAL;
        r.v[3].name = "error";
        r.v[3].value_case = SWARM__JOB_VALUE__VALUE_DATA;
        r.v[3].data = (ProtobufCBinaryData) { .len = strlen(latin1), .data = (uint8_t *) latin1 };
        r.q.n_inputs = 4;
        res = submit(&r);
        cr_assert_eq(res->status, -EINVAL, "%d %s", res->status, res->error);
        cr_assert_str_eq(res->error, "caf? is not a number");

        /* And a plugin's status below any errno reads as a protocol error. */
        r.v[2].integer = INT32_MIN;
        r.q.n_inputs = 3;
        randombytes_buf(r.id, sizeof(r.id));
        res = submit(&r);
        cr_assert_eq(res->status, -EPROTO, "%d %s", res->status, res->error);
}

Test(provider, skill_not_hosted_is_refused) {
        struct request r;
        Swarm__JobResult *res;

        request_hash(&r, "abc");
        r.q.skill = "gemm";
        res = submit(&r);
        cr_assert_eq(res->status, -ENOENT);
        cr_assert(strstr(res->error, "skill gemm is not offered by this node"), "%s", res->error);
        cr_assert_eq(res->n_outputs, 0);
}

Test(provider, only_allowed_requesters_are_served) {
        char *only_provider[] = { ids[0]->node_id, NULL }, *requester[] = { ids[1]->node_id, NULL };
        char *bad[] = { (char *) "not-a-node-id", NULL };
        struct request r;
        Swarm__JobResult *res;

        cr_assert_eq(provider_set_allowed_requesters(provider, bad), -EINVAL);
        cr_assert_eq(provider_set_allowed_requesters(provider, only_provider), 0);
        request_hash(&r, "abc");
        res = submit(&r);
        cr_assert_eq(res->status, -EACCES);
        cr_assert(strstr(res->error, "jobs.allowed_requesters"), "%s", res->error);

        cr_assert_eq(provider_set_allowed_requesters(provider, requester), 0);
        assert_hash_of_abc();
        cr_assert_eq(provider_set_allowed_requesters(provider, NULL), 0);
        assert_hash_of_abc();
}

Test(provider, price_above_the_maximum_is_refused) {
        struct request r;
        Swarm__JobResult *res;

        request_hash(&r, "abc");
        r.q.max_price = 0;
        res = submit(&r);
        cr_assert_eq(res->status, -ERANGE);
        cr_assert(strstr(res->error, "exceeds your maximum 0"), "%s", res->error);
}

Test(provider, price_refusal_is_passed_on) {
        struct request r;
        Swarm__JobResult *res;

        /* hash wants bytes "data"; a text is refused by its price(). */
        request_hash(&r, "abc");
        r.v[0].value_case = SWARM__JOB_VALUE__VALUE_TEXT;
        r.v[0].text = "abc";
        res = submit(&r);
        cr_assert_lt(res->status, 0);
        cr_assert_neq(res->status, -ERANGE);
        cr_assert(strstr(res->error, "refused"), "%s", res->error);
}

Test(provider, node_not_lending_refuses) {
        struct request r;
        Swarm__JobResult *res;

        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_NEVER), 0);
        cr_assert(!lending_is_lending(lending));
        request_hash(&r, "abc");
        res = submit(&r);
        cr_assert_eq(res->status, -EAGAIN);
        cr_assert(strstr(res->error, "not lending"), "%s", res->error);

        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_ALWAYS), 0);
        assert_hash_of_abc();
}

static bool hash_warm(void) {
        return skill_pool_workers_alive(skills_get(skills, "hash")) > 0;
}

/* Workers released while not lending (lending.release_device_memory) and
 * started again: the swarm's jobs are refused, with a reason, until one is
 * up — then served. */
Test(provider, released_or_warming_skill_refuses_until_a_worker_is_up) {
        struct skill_pool *pool = skills_get(skills, "hash");
        struct request r;
        Swarm__JobResult *res;

        cr_assert_not_null(pool);
        cr_assert_eq(skill_pool_release(pool, true), 1);
        cr_assert(skill_pool_released(pool));
        request_hash(&r, "abc");
        res = submit(&r);
        cr_assert_eq(res->status, -EAGAIN);
        cr_assert(strstr(res->error, "skill hash is warming up"), "%s", res->error);
        cr_assert(skill_pool_released(pool), "a swarm job must not wake released workers");

        cr_assert_eq(skill_pool_warm(pool), 1);
        cr_assert(skill_pool_warming(pool));
        if (skill_pool_workers_alive(pool) == 0) {
                request_hash(&r, "abc");
                res = submit(&r);
                cr_assert_eq(res->status, -EAGAIN);
                cr_assert(strstr(res->error, "try another provider"), "%s", res->error);
        }
        run_until(hash_warm, 10 * 1000 * 1000, "the hash worker to warm up");
        cr_assert_not(skill_pool_warming(pool));
        assert_hash_of_abc();
}

Test(provider, missing_or_tiny_deadline_is_refused) {
        struct request r;
        Swarm__JobResult *res;

        request_hash(&r, "abc");
        r.q.deadline_ms = 0;
        res = submit(&r);
        cr_assert_eq(res->status, -ETIMEDOUT);
        request_hash(&r, "abc");
        r.q.deadline_ms = 1;
        res = submit(&r);
        cr_assert_eq(res->status, -ETIMEDOUT);
        cr_assert(strstr(res->error, "too short"), "%s", res->error);
}

Test(provider, job_past_its_deadline_times_out_and_frees_the_worker) {
        struct request r;
        Swarm__JobResult *res;
        struct skill_pool *pool = skills_get(skills, "testskill");
        uint64_t start = now_usec(), took;

        cr_assert_not_null(pool);
        request_testskill(&r, "sleep");
        r.q.deadline_ms = 400;
        res = submit(&r);
        took = now_usec() - start;
        cr_assert_eq(res->status, -ETIMEDOUT, "status %d: %s", res->status, res->error);
        /* Answered before the requester's deadline (the margin), well
         * before the kill grace. */
        cr_assert_lt(took, 400 * 1000 + 200 * 1000, "answered after %llu µs", (unsigned long long) took);
        cr_assert_eq(skill_pool_workers_busy(pool), 0, "the worker is still busy with the expired job");
        cr_assert_eq(provider_active_jobs(provider), 0);

        /* And it serves the next job. */
        request_testskill(&r, "echo");
        res = submit(&r);
        cr_assert_eq(res->status, 0, "%s", res->error);
}

Test(provider, malformed_request_gets_an_error_and_the_next_job_runs) {
        struct request r;
        Swarm__JobResult *res;
        static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0x01, 0x02 };

        request_testskill(&r, "echo");
        r.t.data.len = sizeof(r.x) - 2;         /* a tensor that lies about its size */
        res = submit_raw(&r, 10 * 1000 * 1000);
        cr_assert_eq(res->status, -EBADMSG);
        cr_assert(strstr(res->error, "tensor data length"), "%s", res->error);

        /* Not even protobuf: refused with an empty job id. */
        expected = got.n + 1;
        send_bytes(garbage, sizeof(garbage));
        run_until(result_arrived, 10 * 1000 * 1000, "the refusal");
        cr_assert_eq(got.open_status, 0);
        cr_assert_eq(got.last->status, -EBADMSG);
        cr_assert_eq(got.last->job_id.len, 0);
        cr_assert(strstr(got.last->error, "malformed"), "%s", got.last->error);

        request_testskill(&r, "echo");
        res = submit(&r);
        cr_assert_eq(res->status, 0, "%s", res->error);
        assert_hash_of_abc();
}

Test(provider, corrupt_results_returns_a_wrong_output) {
        struct request r;
        Swarm__JobResult *res;
        const Swarm__JobValue *y;
        float y0;

        request_testskill(&r, "echo");
        res = submit(&r);
        cr_assert_eq(res->status, 0, "%s", res->error);
        y = output(res, "y");
        memcpy(&y0, y->tensor->data.data, sizeof(y0));
        cr_assert_eq(y0, 2.0f * r.x[0], "the honest provider is right");

        start_provider(true);
        request_testskill(&r, "echo");
        res = submit(&r);
        cr_assert_eq(res->status, 0, "%s", res->error);
        y = output(res, "y");
        cr_assert_eq(y->tensor->data.len, sizeof(r.x));
        memcpy(&y0, y->tensor->data.data, sizeof(y0));
        cr_assert_neq(y0, 2.0f * r.x[0], "the cheating provider must lie (verify would reject it)");
        /* The rest is untouched: a single wrong element. */
        for (size_t i = 1; i < 4; i++) {
                float yi;
                memcpy(&yi, y->tensor->data.data + i * sizeof(float), sizeof(yi));
                cr_assert_eq(yi, 2.0f * r.x[i]);
        }
}

Test(provider, running_jobs_are_answered_when_the_provider_goes) {
        struct request r;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size;

        request_testskill(&r, "sleep");
        r.q.deadline_ms = 30000;
        cr_assert_eq(job_encode(&r.e, MAX_SIZE, &buf, &size), 0);
        expected = got.n + 1;
        send_bytes(buf, size);
        {
                uint64_t end = now_usec() + 10 * 1000 * 1000;
                while (provider_active_jobs(provider) == 0) {
                        cr_assert_lt(now_usec(), end, "the job did not start");
                        cr_assert_geq(sd_event_run(event, 10 * 1000), 0);
                }
        }
        provider_attach(NULL, channel);
        provider_stop(provider);
        provider = provider_free(provider);
        run_until(result_arrived, 10 * 1000 * 1000, "the shutdown answer");
        cr_assert_eq(got.open_status, 0);
        cr_assert_eq(got.last->status, -ESHUTDOWN);
        cr_assert_eq(memcmp(got.last->job_id.data, r.id, JOB_ID_SIZE), 0);

        /* Without a provider the node says it does not run jobs. */
        request_hash(&r, "abc");
        cr_assert_eq(submit(&r)->status, -EOPNOTSUPP);
}

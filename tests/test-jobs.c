/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Jobs end to end: real swarmd processes on loopback, one requester (node
 * 0, which lends nothing but can verify testskill) and providers hosting
 * testskill; jobs go in through the requester's jobs socket
 * (jobs-client.h), exactly as swarmctl submit sends them, and every output
 * that comes back is checked here against the inputs. */

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control-client.h"
#include "credits-harness.h"
#include "identity.h"
#include "job-wire.h"
#include "jobs-client.h"
#include "ledger.h"
#include "network.h"
#include "shm.h"
#include "sd-tiny.h"
#include "swarmd-harness.h"
#include "tiny-model.h"
#include "transport.h"
#include "wire.h"
#include "worker-proto.h"

#define NODES_MAX 4
#define WAIT_MS 30000
/* What node 1, the issuer, mints to the requester at start: a million
 * credits, far more than any test spends. */
#define REQUESTER_MINT (1000000ull * 1000 * 1000)

struct node {
        char dir[128], config[160], state[160], notify[160], log[160], control[192], jobs[192];
        struct notify_listener listener;
        struct identity *identity;
        pid_t pid;
};

static char root[64];
static struct node nodes[NODES_MAX];
static int seed_port;
/* Appended to node i's configuration as it is (whole sections). */
static const char *extra_config[NODES_MAX];
/* When set, the providers host textgen with this model instead of
 * testskill, and every node (the requester too, to verify) is told where
 * the model is. */
static char textgen_model[256];
/* When set, node 2 hosts this other model instead. */
static char textgen_other_model[256];
/* A node's skills.options instead of the model above on one thread. */
static char textgen_options[NODES_MAX][1200];
/* The skill those model options are for: textgen, or imagegen (whose
 * tests give every node its options). */
static const char *model_skill = "textgen";

/* What providers are configured with (a file name or a skill's name), and
 * the name they offer it under. */
static const char *enabled_skill = "testskill";
static const char *offered_skill = "testskill";
/* enabled_skill is one of the shipped plugins (conv2d). */
static bool shipped_skill;
/* A seed for node 0 (ID@ENDPOINT), so that a restarted requester rejoins
 * at once instead of waiting to be pinged; empty: none. */
static char node0_seed[200];

/* Node 0 requests (lends nothing); the others provide testskill.  extra is
 * appended under skills: (options) or as top-level sections. */
static void write_config(int i, const char *skill_options, bool cheat) {
        struct node *n = &nodes[i];
        const char *plugins = getenv("TEST_PLUGIN_DIR");
        FILE *f = fopen(n->config, "we");

        cr_assert_not_null(plugins, "TEST_PLUGIN_DIR not set (run through meson test)");
        cr_assert_not_null(f);
        fprintf(f, "node:\n  name: node%d\n", i);
        fprintf(f, "network:\n  bind: \"tcp://127.0.0.1:%d\"\n  beacon: false\n  probe_interval: 100ms\n",
                i == 0 ? seed_port : 0);
        if (i != 0)
                fprintf(f, "  seeds: [\"%s@tcp://127.0.0.1:%d\"]\n", nodes[0].identity->node_id, seed_port);
        else if (node0_seed[0])
                fprintf(f, "  seeds: [\"%s\"]\n", node0_seed);
        if (textgen_model[0]) {
                fprintf(f, "skills:\n  directory: \"%s\"\n", getenv("SKILL_BUILD_DIR"));
                if (i != 0)
                        fprintf(f, "  enabled: [%s]\n  workers: 1\n", model_skill);
                if (textgen_options[i][0])
                        fprintf(f, "  options: [%s]\n", textgen_options[i]);
                else
                        fprintf(f, "  options: [\"textgen.model=%s\", \"textgen.threads=1\"]\n",
                                i == 2 && textgen_other_model[0] ? textgen_other_model : textgen_model);
        } else {
                /* The shipped skills are in the build's plugins/NAME/NAME.so,
                 * the test skills in tests/. */
                fprintf(f, "skills:\n  directory: \"%s\"\n", shipped_skill ? getenv("SKILL_BUILD_DIR") : plugins);
                if (i != 0)
                        fprintf(f, "  enabled: [%s]\n  workers: 2\n  kill_grace: 200ms\n", enabled_skill);
                if (skill_options)
                        fprintf(f, "  options: [%s]\n", skill_options);
        }
        fprintf(f, "lending:\n  policy: %s\n", i == 0 ? "never" : "always");
        fprintf(f, "dbus:\n  bus: none\n");
        /* Node 1 is the swarm's issuer: it mints to the requester. */
        fprintf(f, "credits:\n  issuers: [\"%s\"]\n", nodes[1].identity->node_id);
        if (cheat)
                fprintf(f, "testing:\n  corrupt_results: true\n");
        if (extra_config[i])
                fputs(extra_config[i], f);
        cr_assert_eq(fclose(f), 0);
}

static void start_node(int i) {
        struct node *n = &nodes[i];
        const char *args[] = { "--config", n->config, "--state-dir", n->state, NULL };
        const char *binary = getenv("SWARMD_BINARY");
        int r;

        cr_assert_not_null(binary, "SWARMD_BINARY not set (run through meson test)");
        n->pid = swarmd_spawn(&(struct swarmd_spawn) {
                .binary = binary,
                .args = args,
                .notify_socket = n->notify,
                .stderr_path = n->log,
        });
        cr_assert_gt(n->pid, 0);
        r = notify_listener_wait(&n->listener, "READY=1", WAIT_MS, NULL, 0);
        cr_assert_eq(r, 0, "node %d not ready: %s", i, strerror(-r));
}

static void kill_node(int i) {
        kill(nodes[i].pid, SIGKILL);
        waitpid(nodes[i].pid, NULL, 0);
        nodes[i].pid = 0;
}

static void setup(void) {
        strcpy(root, "/tmp/jobs-test-XXXXXX");
        cr_assert_not_null(mkdtemp(root));
        seed_port = loopback_free_port();
        cr_assert_gt(seed_port, 0, "no free port: %s", strerror(-seed_port));
        cr_assert_geq(sodium_init(), 0);
        for (int i = 0; i < NODES_MAX; i++) {
                struct node *n = &nodes[i];
                char dir[100];
                bool created;

                snprintf(dir, sizeof(dir), "%.60s/node%d", root, i);
                cr_assert_eq(mkdir(dir, 0755), 0);
                snprintf(n->dir, sizeof(n->dir), "%s", dir);
                snprintf(n->config, sizeof(n->config), "%s/swarmd.yaml", dir);
                snprintf(n->state, sizeof(n->state), "%s/state", dir);
                snprintf(n->notify, sizeof(n->notify), "%s/notify", dir);
                snprintf(n->log, sizeof(n->log), "%s/log", dir);
                snprintf(n->control, sizeof(n->control), "%s/state/control.sock", dir);
                snprintf(n->jobs, sizeof(n->jobs), "%s/state/jobs.sock", dir);
                cr_assert_eq(identity_load_or_create(n->state, &n->identity, &created), 0);
                cr_assert_eq(notify_listener_open(&n->listener, n->notify), 0);
        }
}

static void teardown(void) {
        textgen_model[0] = '\0';
        textgen_other_model[0] = '\0';
        memset(textgen_options, 0, sizeof(textgen_options));
        model_skill = "textgen";
        node0_seed[0] = '\0';
        for (int i = 0; i < NODES_MAX; i++) {
                extra_config[i] = NULL;
                struct node *n = &nodes[i];
                if (n->pid > 0)
                        kill_node(i);
                notify_listener_close(&n->listener);
                identity_free(n->identity);
                n->identity = NULL;
        }
        /* KEEP_JOBS_TEST=1 keeps the daemons' logs and state for a look. */
        if (!getenv("KEEP_JOBS_TEST"))
                rm_rf(root);
}

/* How many alive, lending members node 0 sees offering testskill. */
static int providers_seen(void) {
        Swarm__ControlRequest req = SWARM__CONTROL_REQUEST__INIT;
        Swarm__PeersRequest peers = SWARM__PEERS_REQUEST__INIT;
        Swarm__ControlReply *reply;
        int n = 0;

        req.request_case = SWARM__CONTROL_REQUEST__REQUEST_PEERS;
        req.peers = &peers;
        if (control_client_call(nodes[0].control, &req, &reply) < 0)
                return -1;
        for (size_t i = 0; i < reply->n_peers; i++) {
                const Swarm__PeerInfo *p = reply->peers[i];
                if (p->self || p->state != SWARM__MEMBER_STATE__ALIVE || !p->lending)
                        continue;
                for (size_t s = 0; s < p->n_skills; s++)
                        if (strcmp(p->skills[s]->name, textgen_model[0] ? model_skill : offered_skill) == 0)
                                n++;
        }
        swarm__control_reply__free_unpacked(reply, NULL);
        return n;
}

/* Starts the requester and n providers (options and cheat per provider,
 * indexed from 1) and waits until the requester sees them all. */
static void start_swarm(int n, const char *const *options, const bool *cheat) {
        cr_assert_leq(n + 1, NODES_MAX);
        write_config(0, NULL, false);
        start_node(0);
        for (int i = 1; i <= n; i++) {
                write_config(i, options ? options[i] : NULL, cheat ? cheat[i] : false);
                start_node(i);
        }
        for (long long deadline = monotonic_usec() + WAIT_MS * 1000LL; providers_seen() < n;) {
                cr_assert_lt(monotonic_usec(), deadline, "the requester did not learn of %d providers", n);
                usleep(50 * 1000);
        }
        /* Nobody gets credits for free: the requester's come from node 1,
         * the issuer, before any job. */
        if (n >= 1) {
                char error[256] = "";
                int r = harness_mint(nodes[1].control, nodes[0].control, nodes[0].identity->public_key, REQUESTER_MINT,
                                     WAIT_MS, error, sizeof(error));

                cr_assert_eq(r, 0, "cannot fund the requester: %s", error);
        }
}

/* Waits until every payment of the requester is delivered at the n
 * providers (nodes 1..n that run): its books and theirs then agree.  A
 * provider that missed the last of them (killed, or restarted) catches up
 * by anti-entropy: a probe of one random peer every 5 s, 16 seqs per
 * payer each, so 64 behind can take most of a minute: a long wait. */
static void wait_payments_delivered(int n) {
        long long deadline = monotonic_usec() + 3 * WAIT_MS * 1000LL;
        struct harness_credits req = {}, prov = {};

        for (;;) {
                bool all = harness_credits_get(nodes[0].control, &req) && req.in_flight == 0;

                for (int i = 1; i <= n && all; i++)
                        all = nodes[i].pid <= 0 ||
                              (harness_credits_get(nodes[i].control, &prov) && prov.delivered >= req.delivered);
                if (all)
                        return;
                cr_assert_lt(monotonic_usec(), deadline,
                             "the requester's payments were not delivered everywhere (in flight %" PRIu64
                             ", delivered %" PRIu64 " there, %" PRIu64 " at a provider)",
                             req.in_flight, req.delivered, prov.delivered);
                usleep(50 * 1000);
        }
}

/* A testskill job: x[k] = base + k, mode and optional ms. */
static struct swarm_values *make_inputs(float base, unsigned n, const char *mode, int64_t ms) {
        struct swarm_values *v = swarm_values_new();
        struct swarm_tensor t;

        cr_assert_not_null(v);
        swarm_values_set_allocator(v, shm_allocate, NULL);
        cr_assert_eq(swarm_values_add_tensor(v, "x", SWARM_DTYPE_F32, 1, (uint64_t[]) { n }, &t), 0);
        for (unsigned k = 0; k < n; k++)
                ((float *) t.data)[k] = base + (float) k;
        cr_assert_eq(swarm_values_set_string(v, "mode", mode), 0);
        if (ms)
                cr_assert_eq(swarm_values_set_int(v, "ms", ms), 0);
        return v;
}

static void submit(struct jobs_client *c, uint64_t id, const char *skill, const struct swarm_values *in,
                   uint64_t max_price, uint64_t deadline_usec) {
        cr_assert_eq(jobs_client_submit(c, &(struct jobs_submission) {
                .id = id,
                .skill = skill,
                .inputs = in,
                .max_price = max_price,
                .deadline_usec = deadline_usec,
        }), 0);
}

static void wait_result(struct jobs_client *c, struct jobs_result *res) {
        int r = jobs_client_wait(c, WAIT_MS, res);
        cr_assert_eq(r, 0, "no reply from swarmd: %s", strerror(-r));
}

/* Exactly y = 2·x for the job with base. */
static bool output_is_right(const struct jobs_result *res, float base, unsigned n) {
        struct swarm_tensor y;

        if (swarm_values_get_tensor(res->outputs, "y", &y) < 0 || y.dtype != SWARM_DTYPE_F32 || y.n_elements != n)
                return false;
        for (unsigned k = 0; k < n; k++)
                if (((const float *) y.data)[k] != 2.0f * (base + (float) k))
                        return false;
        return true;
}

static bool is_node(const char *provider, int i) {
        return provider && strcmp(provider, nodes[i].identity->node_id) == 0;
}

/* Runs `count` echo (or slow) jobs over one connection and checks that
 * each comes back exactly once, right.  Returns how many were rerouted
 * and rejected. */
static void run_jobs(struct jobs_client *c, unsigned count, const char *mode, int64_t ms, int kill_after_ms,
                     int victim, unsigned *rerouted, unsigned *rejected, unsigned per_node[NODES_MAX]) {
        bool seen[256] = {};
        long long start = monotonic_usec();

        cr_assert_leq(count, 256);
        for (unsigned i = 0; i < count; i++) {
                struct swarm_values *in = make_inputs((float) i * 100.0f, 64, mode, ms);
                submit(c, i, "testskill", in, UINT64_MAX / 2, 20 * 1000 * 1000);
                swarm_values_free(in);
        }
        if (kill_after_ms > 0) {
                usleep((useconds_t) kill_after_ms * 1000);
                kill_node(victim);
        }
        for (unsigned done = 0; done < count; done++) {
                struct jobs_result res = {};

                wait_result(c, &res);
                cr_assert_lt(res.id, count, "reply for unknown job %llu", (unsigned long long) res.id);
                cr_assert(!seen[res.id], "job %llu answered twice", (unsigned long long) res.id);
                seen[res.id] = true;
                cr_assert_eq(res.status, 0, "job %llu failed: %s", (unsigned long long) res.id, res.error);
                cr_assert(output_is_right(&res, (float) res.id * 100.0f, 64),
                          "job %llu: a wrong result was accepted", (unsigned long long) res.id);
                cr_assert(!is_node(res.provider, 0), "the requester ran a job itself");
                for (int k = 0; k < NODES_MAX; k++)
                        if (per_node && is_node(res.provider, k))
                                per_node[k]++;
                *rerouted += res.rerouted;
                *rejected += res.rejected;
                jobs_result_done(&res);
        }
        cr_log_info("%u jobs in %.0f ms", count, (double) (monotonic_usec() - start) / 1e3);
}

static struct jobs_client *connect_requester(void) {
        struct jobs_client *c = NULL;
        int r = jobs_client_connect(nodes[0].jobs, &c);

        cr_assert_eq(r, 0, "cannot connect to %s: %s", nodes[0].jobs, strerror(-r));
        return c;
}

TestSuite(jobs, .init = setup, .fini = teardown, .timeout = 120);
TestSuite(credits, .init = setup, .fini = teardown, .timeout = 120);

Test(jobs, happy_path_every_job_verified_once_across_providers) {
        unsigned rerouted = 0, rejected = 0, per_node[NODES_MAX] = {};
        struct jobs_client *c;

        start_swarm(2, NULL, NULL);
        c = connect_requester();
        run_jobs(c, 40, "echo", 0, 0, 0, &rerouted, &rejected, per_node);
        cr_assert_eq(rejected, 0);
        cr_assert_eq(per_node[1] + per_node[2], 40, "jobs done by someone other than the providers");
        cr_log_info("node1 ran %u, node2 ran %u", per_node[1], per_node[2]);
        jobs_client_free(c);
}

/* Two providers as good as each other (one advertises 10% more speed, as
 * two measurements of the same hardware may) share a batch: routing counts
 * the jobs this requester already has running on each (its gossiped load
 * lags by a round), so power of two choices does not pile a burst onto the
 * better-scored one. */
Test(jobs, equal_providers_share_a_batch) {
        unsigned rerouted = 0, rejected = 0, per_node[NODES_MAX] = {};
        const char *options[] = { NULL, "\"testskill.throughput=1100000\"", NULL };
        struct jobs_client *c;

        start_swarm(2, options, NULL);
        c = connect_requester();
        /* In bursts of 50, as swarmctl keeps a window in flight (each
         * provider queues at most skills.queue_limit, 64). */
        for (int round = 0; round < 4; round++)
                run_jobs(c, 50, "slow", 5, 0, 0, &rerouted, &rejected, per_node);
        cr_log_info("node1 ran %u, node2 ran %u of 200", per_node[1], per_node[2]);
        cr_assert_eq(per_node[1] + per_node[2], 200);
        cr_assert(per_node[1] >= 70 && per_node[1] <= 130, "unfair split: %u / %u", per_node[1], per_node[2]);
        jobs_client_free(c);
}

/* ---- Streaming ---- */

static int swarmctl_on(int i, bool nobody, char *out, size_t size, const char *const *args);

struct stream_log {
        char text[256];                 /* "text" chunks since the last restart */
        unsigned chunks, restarts;
        uint32_t next_seq;
        bool out_of_order;
};

static void on_stream_chunk(const struct jobs_chunk *k, void *userdata) {
        struct stream_log *l = userdata;

        if (k->seq != l->next_seq)
                l->out_of_order = true;
        l->next_seq = k->seq + 1;
        l->chunks++;
        if (k->restart) {
                l->restarts++;
                l->text[0] = '\0';
        }
        if (k->name && strcmp(k->name, "text") == 0)
                strncat(l->text, k->data, k->size < sizeof(l->text) - strlen(l->text) - 1 ? k->size :
                                          sizeof(l->text) - strlen(l->text) - 1);
}

/* One streamed job through the swarm: returns its result, the log filled. */
static void stream_job(struct jobs_result *res, struct stream_log *l) {
        struct swarm_values *in = make_inputs(1.0f, 16, "stream", 0);
        struct jobs_client *c = connect_requester();

        jobs_client_on_chunk(c, on_stream_chunk, l);
        cr_assert_eq(jobs_client_submit(c, &(struct jobs_submission) {
                .id = 5,
                .skill = "testskill",
                .inputs = in,
                .max_price = UINT64_MAX / 2,
                .deadline_usec = 20 * 1000 * 1000,
                .stream = true,
        }), 0);
        wait_result(c, res);
        swarm_values_free(in);
        jobs_client_free(c);
}

/* What a provider's skill emits reaches the submitter in order, before
 * the verified result, which binds it (stream_digest). */
Test(jobs, streamed_chunks_reach_the_client_in_order_before_the_result) {
        struct stream_log l = {};
        struct jobs_result res = {};

        start_swarm(1, NULL, NULL);
        stream_job(&res, &l);
        cr_assert_eq(res.status, 0, "%s", res.error);
        cr_assert_str_eq(l.text, "one two three");
        cr_assert_eq(l.chunks, 4, "three text chunks and one of progress, got %u", l.chunks);
        cr_assert_eq(l.restarts, 0);
        cr_assert(!l.out_of_order);
        cr_assert(output_is_right(&res, 1.0f, 16));
        jobs_result_done(&res);
}

/* Runs streamed jobs until one was first given to node 1 (the router
 * explores now and then, so the first job may go to node 2): each must be
 * won by node 2 with the right text, and the one that went to node 1 first
 * must have restarted its stream once.  Returns the results rejected. */
static unsigned stream_until_node1_was_asked(void) {
        for (int tries = 0; tries < 10; tries++) {
                struct stream_log l = {};
                struct jobs_result res = {};
                unsigned rejected;

                stream_job(&res, &l);
                cr_assert_eq(res.status, 0, "%s", res.error);
                cr_assert(is_node(res.provider, 2), "the result is not the honest provider's");
                cr_assert_str_eq(l.text, "one two three");
                cr_assert(!l.out_of_order);
                rejected = res.rejected;
                jobs_result_done(&res);
                if (l.restarts == 1)
                        return rejected;
                cr_assert_eq(l.restarts, 0);
        }
        cr_assert_fail("node 1 was never asked first in 10 jobs");
        return 0;
}

/* The provider streaming dies mid-stream: the job goes to the other, and
 * the client is told the stream restarted (no text shown twice). */
Test(jobs, a_provider_dying_mid_stream_restarts_the_stream_elsewhere) {
        /* Node 1 is the faster on paper, so it is asked first. */
        const char *options[] = { NULL, "\"testskill.crash-after-stream=1\", \"testskill.throughput=3000000\"",
                                  NULL };

        start_swarm(2, options, NULL);
        (void) stream_until_node1_was_asked();
}

/* A provider that streams other chunks than its signed result vouches for
 * is caught: its result is rejected, and the stream restarts elsewhere. */
Test(jobs, a_stream_that_differs_from_the_signed_result_is_rejected) {
        const char *options[] = { NULL, "\"testskill.throughput=3000000\"", NULL };

        extra_config[1] = "testing:\n  corrupt_stream: true\n";
        start_swarm(2, options, NULL);
        cr_assert_geq(stream_until_node1_was_asked(), 1, "the lying provider's stream was not rejected");
}

/* swarmctl submit prints a single job's text as it streams. */
Test(jobs, swarmctl_submit_prints_streamed_text) {
        char out[16384], sock[200];

        start_swarm(1, NULL, NULL);
        snprintf(sock, sizeof(sock), "%s/jobs.sock", nodes[0].state);
        cr_assert_eq(swarmctl_on(-1, false, out, sizeof(out),
                                 (const char *[]) { "submit", "--socket", sock, "--skill", "testskill", "--input",
                                                    "mode=str:stream", "--input", "x=random:f32:4", NULL }), 0,
                     "%s", out);
        cr_assert(strstr(out, "one two three\njob         verified"), "%s", out);
}

static void on_textgen_chunk(const struct jobs_chunk *k, void *userdata) {
        struct stream_log *logs = userdata;

        cr_assert_lt(k->id, 4);
        on_stream_chunk(k, &logs[k->id]);
}

Test(jobs, textgen_runs_on_a_provider_and_is_verified_by_teacher_forcing) {
        struct stream_log streamed[4] = {};
        struct tiny_model_spec spec = tiny_model_spec_default();
        struct jobs_client *c;
        char err[256];

        snprintf(textgen_model, sizeof(textgen_model), "%s/tiny.gguf", root);
        snprintf(textgen_other_model, sizeof(textgen_other_model), "%s/other.gguf", root);
        spec.tokenizer = TINY_TOKENIZER_BPE;
        cr_assert_eq(tiny_model_write(&spec, textgen_model, err, sizeof(err)), 0, "%s", err);
        /* Node 2 serves another model: the requester, which verifies with
         * the first, must never route to it. */
        spec.seed = 99;
        cr_assert_eq(tiny_model_write(&spec, textgen_other_model, err, sizeof(err)), 0, "%s", err);
        start_swarm(2, NULL, NULL);
        c = connect_requester();

        for (unsigned i = 0; i < 4; i++) {
                struct swarm_values *in = swarm_values_new();
                char prompt[64];

                snprintf(prompt, sizeof(prompt), "Once upon a time %u", i);
                swarm_values_set_allocator(in, shm_allocate, NULL);
                cr_assert_eq(swarm_values_set_string(in, "prompt", prompt), 0);
                cr_assert_eq(swarm_values_set_int(in, "max_tokens", 12), 0);
                cr_assert_eq(swarm_values_set_string(in, "temperature", i % 2 ? "0.9" : "0"), 0);
                cr_assert_eq(swarm_values_set_int(in, "seed", i), 0);
                /* Streamed: the text arrives as it is generated. */
                cr_assert_eq(jobs_client_submit(c, &(struct jobs_submission) {
                        .id = i,
                        .skill = "textgen",
                        .inputs = in,
                        .max_price = UINT64_MAX / 2,
                        .deadline_usec = 30 * 1000 * 1000,
                        .stream = true,
                }), 0);
                swarm_values_free(in);
        }
        jobs_client_on_chunk(c, on_textgen_chunk, streamed);
        for (unsigned done = 0; done < 4; done++) {
                struct jobs_result res = {};
                const char *text, *finish;
                int64_t n;

                wait_result(c, &res);
                cr_assert_eq(res.status, 0, "textgen job %llu failed: %s", (unsigned long long) res.id, res.error);
                cr_assert(is_node(res.provider, 1), "not run by the provider of the requester's model");
                cr_assert_eq(res.rejected, 0, "an honest generation failed verification");
                cr_assert_eq(swarm_values_get_string(res.outputs, "text", &text), 0);
                cr_assert_eq(swarm_values_get_string(res.outputs, "finish_reason", &finish), 0);
                cr_assert_eq(swarm_values_get_int(res.outputs, "generated_tokens_count", &n), 0);
                cr_assert(n == 12 || strcmp(finish, "stop") == 0, "%lld tokens, finish %s", (long long) n, finish);
                cr_assert_lt(res.id, 4);
                cr_assert_str_eq(streamed[res.id].text, text, "streamed text is not the verified text: [%s] vs [%s]", streamed[res.id].text, text);
                cr_assert_eq(streamed[res.id].restarts, 0);
                jobs_result_done(&res);
        }
        jobs_client_free(c);
}

/* Sampled verification (verification.*): textgen results from a provider
 * are all checked until it has 3 verified results, then (check_percent 0)
 * none; a cheat is never measured, so every result of its is checked and
 * none accepted.  The counts show in swarmctl peers. */
Test(jobs, textgen_results_are_checked_until_the_provider_is_measured_then_sampled) {
        const bool cheat[] = { false, false, true };
        struct tiny_model_spec spec = tiny_model_spec_default();
        unsigned unchecked = 0, from_cheat = 0, rejected = 0;
        struct jobs_client *c;
        char err[256], out[16384];

        snprintf(textgen_model, sizeof(textgen_model), "%s/tiny.gguf", root);
        cr_assert_eq(tiny_model_write(&spec, textgen_model, err, sizeof(err)), 0, "%s", err);
        extra_config[0] = "verification:\n  check_percent: 0\n  after_failure_percent: 100\n  measured_at: 3\n";
        start_swarm(2, NULL, cheat);
        c = connect_requester();

        /* One at a time, so each verified result counts before the next. */
        for (unsigned i = 0; i < 10; i++) {
                struct swarm_values *in = swarm_values_new();
                struct jobs_result res = {};

                swarm_values_set_allocator(in, shm_allocate, NULL);
                cr_assert_eq(swarm_values_set_string(in, "prompt", "Once upon a time"), 0);
                cr_assert_eq(swarm_values_set_int(in, "max_tokens", 4), 0);
                cr_assert_eq(swarm_values_set_string(in, "temperature", "0"), 0);
                submit(c, i, "textgen", in, UINT64_MAX / 2, 30 * 1000 * 1000);
                swarm_values_free(in);
                wait_result(c, &res);
                cr_assert_eq(res.status, 0, "job %u failed: %s", i, res.error);
                from_cheat += is_node(res.provider, 2);
                unchecked += res.unchecked;
                rejected += res.rejected;
                jobs_result_done(&res);
        }
        cr_assert_eq(from_cheat, 0, "%u results of the cheat were accepted", from_cheat);
        cr_assert_eq(unchecked, 10 - 3, "%u of 10 accepted unchecked; after 3 checked, none should be checked",
                     unchecked);
        cr_log_info("%u results of the cheat rejected", rejected);
        cr_assert_eq(swarmctl_on(0, false, out, sizeof(out), (const char *[]) { "peers", NULL }), 0, "%s", out);
        cr_assert(strstr(out, "checks 0%: 3 passed, 0 failed, 7 unchecked"), "%s", out);
        cr_assert(strstr(out, "checks 100%: 0 passed,"), "the cheat is always checked: %s", out);
        jobs_client_free(c);
}

/* Providers of textgen that lie, each as test-textgen's checks catch: node 1
 * honest (on 2 threads, the requester verifies on 1), nodes 2 and 3 each
 * with a cheat (textgen's testing-cheat, or testing-claim-model: a Q4_0 copy
 * of the model announced as the F16 file).  Every job is run and verified;
 * none is accepted from a cheat, and the cheats were asked. */
static void textgen_cheats(const char *cheat2, const char *cheat3) {
        struct tiny_model_spec spec = tiny_model_spec_default();
        const char *cheats[] = { NULL, NULL, cheat2, cheat3 };
        unsigned from_cheat = 0, rejected = 0;
        char q4[256], err[256];
        struct jobs_client *c;

        snprintf(textgen_model, sizeof(textgen_model), "%s/f16.gguf", root);
        snprintf(q4, sizeof(q4), "%s/q4.gguf", root);
        spec.weight_type = spec.embd_type = NN_TYPE_F16;
        cr_assert_eq(tiny_model_write(&spec, textgen_model, err, sizeof(err)), 0, "%s", err);
        spec.weight_type = NN_TYPE_Q4_0;
        cr_assert_eq(tiny_model_write(&spec, q4, err, sizeof(err)), 0, "%s", err);
        snprintf(textgen_options[1], sizeof(textgen_options[1]), "\"textgen.model=%s\", \"textgen.threads=2\"",
                 textgen_model);
        for (int i = 2; i <= 3; i++) {
                if (strcmp(cheats[i], "substitute") == 0)
                        snprintf(textgen_options[i], sizeof(textgen_options[i]), "\"textgen.model=%s\", "
                                 "\"textgen.threads=1\", \"textgen.testing-claim-model=%s\"", q4, textgen_model);
                else
                        snprintf(textgen_options[i], sizeof(textgen_options[i]), "\"textgen.model=%s\", "
                                 "\"textgen.threads=1\", \"textgen.testing-cheat=%s\"", textgen_model, cheats[i]);
        }
        start_swarm(3, NULL, NULL);
        c = connect_requester();
        for (unsigned i = 0; i < 24; i++) {
                struct swarm_values *in = swarm_values_new();
                char prompt[64];

                snprintf(prompt, sizeof(prompt), "Once upon a time there were %u", i);
                swarm_values_set_allocator(in, shm_allocate, NULL);
                cr_assert_eq(swarm_values_set_string(in, "prompt", prompt), 0);
                cr_assert_eq(swarm_values_set_int(in, "max_tokens", 8), 0);
                cr_assert_eq(swarm_values_set_string(in, "temperature", i % 3 ? "0" : "0.8"), 0);
                cr_assert_eq(swarm_values_set_int(in, "seed", i), 0);
                submit(c, i, "textgen", in, UINT64_MAX / 2, 30 * 1000 * 1000);
                swarm_values_free(in);
        }
        for (unsigned done = 0; done < 24; done++) {
                struct jobs_result res = {};

                wait_result(c, &res);
                cr_assert_eq(res.status, 0, "job %llu failed: %s", (unsigned long long) res.id, res.error);
                from_cheat += is_node(res.provider, 2) || is_node(res.provider, 3);
                rejected += res.rejected;
                jobs_result_done(&res);
        }
        cr_assert_eq(from_cheat, 0, "%u results of the cheats (%s, %s) were accepted", from_cheat, cheat2, cheat3);
        cr_assert_geq(rejected, 2, "the cheats were asked %u times: the test proves little", rejected);
        jobs_client_free(c);
}

/* A requester without the model: each result is checked by a check job on
 * another provider of the same variant, which returns its verdict and
 * commitments; nodes 1 and 2 are honest, node 3 serves a Q4_0 copy under
 * the F16 file's identity, and either puts a forged "check" in its proofs
 * or commits to nothing.  Its results are rejected (a forgery is dropped,
 * an honest checker disagrees, and so does the third asked), and when it is the
 * checker of an honest result, its disagreement goes to a third provider,
 * which sides with the producer.  A submitter may not use check.* names. */
static void checked_elsewhere(const char *cheat) {
        struct tiny_model_spec spec = tiny_model_spec_default();
        unsigned from_cheat = 0, rejected = 0;
        char q4[256], err[256], out[16384];
        struct jobs_client *c;

        snprintf(textgen_model, sizeof(textgen_model), "%s/f16.gguf", root);
        snprintf(q4, sizeof(q4), "%s/q4.gguf", root);
        spec.weight_type = spec.embd_type = NN_TYPE_F16;
        cr_assert_eq(tiny_model_write(&spec, textgen_model, err, sizeof(err)), 0, "%s", err);
        spec.weight_type = NN_TYPE_Q4_0;
        cr_assert_eq(tiny_model_write(&spec, q4, err, sizeof(err)), 0, "%s", err);
        snprintf(textgen_options[0], sizeof(textgen_options[0]), "\"textgen.threads=1\"");
        snprintf(textgen_options[1], sizeof(textgen_options[1]), "\"textgen.model=%s\", \"textgen.threads=1\"",
                 textgen_model);
        snprintf(textgen_options[2], sizeof(textgen_options[2]), "\"textgen.model=%s\", \"textgen.threads=2\"",
                 textgen_model);
        /* The substitute also forges a check of its own into its proofs
         * and commits to nothing: neither may get it accepted. */
        snprintf(textgen_options[3], sizeof(textgen_options[3]), "\"textgen.model=%s\", \"textgen.threads=1\", "
                 "\"textgen.testing-claim-model=%s\", \"textgen.testing-cheat=%s\"", q4, textgen_model, cheat);
        extra_config[0] = "verification:\n  check_percent: 100\n";
        start_swarm(3, NULL, NULL);
        c = connect_requester();
        for (unsigned i = 0; i < 12; i++) {
                struct swarm_values *in = swarm_values_new();
                char prompt[64];

                snprintf(prompt, sizeof(prompt), "It was a dark and stormy night %u", i);
                swarm_values_set_allocator(in, shm_allocate, NULL);
                cr_assert_eq(swarm_values_set_string(in, "prompt", prompt), 0);
                cr_assert_eq(swarm_values_set_int(in, "max_tokens", 8), 0);
                cr_assert_eq(swarm_values_set_string(in, "temperature", "0"), 0);
                submit(c, i, "textgen", in, UINT64_MAX / 2, 30 * 1000 * 1000);
                swarm_values_free(in);
        }
        for (unsigned done = 0; done < 12; done++) {
                struct jobs_result res = {};

                wait_result(c, &res);
                cr_assert_eq(res.status, 0, "job %llu failed: %s", (unsigned long long) res.id, res.error);
                cr_assert(!res.unchecked, "a result accepted without its check");
                from_cheat += is_node(res.provider, 3);
                rejected += res.rejected;
                jobs_result_done(&res);
        }
        cr_assert_eq(from_cheat, 0, "%u results of the substituted model were accepted", from_cheat);
        cr_assert_geq(rejected, 1, "the substitute was never asked: the test proves little");
        {
                struct swarm_values *in = swarm_values_new();
                struct jobs_result res = {};
                struct swarm_tensor t;

                swarm_values_set_allocator(in, shm_allocate, NULL);
                cr_assert_eq(swarm_values_set_string(in, "prompt", "Hello"), 0);
                cr_assert_eq(swarm_values_add_tensor(in, "check.tokens", SWARM_DTYPE_I32, 1, (uint64_t[]) { 1 }, &t),
                             0);
                submit(c, 99, "textgen", in, UINT64_MAX / 2, 30 * 1000 * 1000);
                swarm_values_free(in);
                wait_result(c, &res);
                cr_assert_eq(res.status, -EINVAL);
                cr_assert(strstr(res.error, "reserved for check jobs"), "%s", res.error);
                jobs_result_done(&res);
        }
        cr_assert_eq(swarmctl_on(0, false, out, sizeof(out), (const char *[]) { "peers", NULL }), 0, "%s", out);
        jobs_client_free(c);
}

Test(jobs, a_requester_without_the_model_has_results_checked_by_other_providers) {
        checked_elsewhere("forge-check");
}

/* Commitments of -1 everywhere would leave nothing to compare: a
 * substitute whose greedy tokens agree would pass the checker's verdict. */
Test(jobs, a_result_that_commits_to_nothing_fails_its_check) {
        checked_elsewhere("blank-commitments");
}

Test(jobs, textgen_a_substituted_model_and_random_tokens_are_caught) {
        textgen_cheats("substitute", "random-tokens");
}

Test(jobs, textgen_an_ignored_prompt_and_a_truncated_answer_are_caught) {
        textgen_cheats("ignore-prompt", "truncate");
}

/* imagegen through real daemons, on a tiny random-weight SD checkpoint and
 * its tokenizer.  Verifiers re-run every step (verify-steps 4 of 4 steps),
 * so a cheat is caught whichever steps it faked.  With the model on the
 * requester: node 1 honest (2 threads), node 2 skips every other step,
 * node 3 runs another checkpoint under this one's identity.  Without it:
 * every result is checked by a check job on another provider, which must
 * be neither the producer nor one asked before, so nodes 1 and 2 are
 * honest and node 3 skips steps.  No cheat's image is accepted. */
static void imagegen_swarm(bool requester_has_model) {
        struct sd_tiny_spec spec = sd_tiny_spec_default();
        unsigned from_cheat = 0, rejected = 0;
        char other[256], vocab[256], merges[256], err[256];
        struct jobs_client *c;

        snprintf(textgen_model, sizeof(textgen_model), "%s/sd.safetensors", root);
        snprintf(other, sizeof(other), "%s/other.safetensors", root);
        snprintf(vocab, sizeof(vocab), "%s/vocab.json", root);
        snprintf(merges, sizeof(merges), "%s/merges.txt", root);
        cr_assert_eq(sd_tiny_write(&spec, textgen_model, NULL, err, sizeof(err)), 0, "%s", err);
        spec.seed = 5;
        cr_assert_eq(sd_tiny_write(&spec, other, NULL, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(sd_tiny_write_tokenizer(spec.vocab, vocab, merges, err, sizeof(err)), 0, "%s", err);
        model_skill = "imagegen";
        if (requester_has_model)
                snprintf(textgen_options[0], sizeof(textgen_options[0]), "\"imagegen.model=%s\", "
                         "\"imagegen.threads=1\", \"imagegen.verify-steps=4\"", textgen_model);
        else {
                snprintf(textgen_options[0], sizeof(textgen_options[0]), "\"imagegen.threads=1\"");
                extra_config[0] = "verification:\n  check_percent: 100\n";
        }
        snprintf(textgen_options[1], sizeof(textgen_options[1]), "\"imagegen.model=%s\", \"imagegen.threads=2\", "
                 "\"imagegen.verify-steps=4\"", textgen_model);
        snprintf(textgen_options[2], sizeof(textgen_options[2]), "\"imagegen.model=%s\", \"imagegen.threads=1\", "
                 "\"imagegen.verify-steps=4\"%s", textgen_model,
                 requester_has_model ? ", \"imagegen.testing-cheat=skip-steps\"" : "");
        if (requester_has_model)
                snprintf(textgen_options[3], sizeof(textgen_options[3]), "\"imagegen.model=%s\", "
                         "\"imagegen.threads=1\", \"imagegen.verify-steps=4\", \"imagegen.testing-claim-model=%s\"",
                         other, textgen_model);
        else
                snprintf(textgen_options[3], sizeof(textgen_options[3]), "\"imagegen.model=%s\", "
                         "\"imagegen.threads=1\", \"imagegen.verify-steps=4\", \"imagegen.testing-cheat=skip-steps\"",
                         textgen_model);
        start_swarm(3, NULL, NULL);
        c = connect_requester();
        for (unsigned i = 0; i < 9; i++) {
                struct swarm_values *in = swarm_values_new();
                char prompt[64];

                snprintf(prompt, sizeof(prompt), "an architectural concept, variation %u", i);
                swarm_values_set_allocator(in, shm_allocate, NULL);
                cr_assert_eq(swarm_values_set_string(in, "prompt", prompt), 0);
                cr_assert_eq(swarm_values_set_int(in, "width", 64), 0);
                cr_assert_eq(swarm_values_set_int(in, "height", 64), 0);
                cr_assert_eq(swarm_values_set_int(in, "steps", 4), 0);
                cr_assert_eq(swarm_values_set_int(in, "seed", i), 0);
                submit(c, i, "imagegen", in, UINT64_MAX / 2, 60 * 1000 * 1000);
                swarm_values_free(in);
        }
        for (unsigned done = 0; done < 9; done++) {
                struct jobs_result res = {};
                const void *png;
                size_t size;

                wait_result(c, &res);
                cr_assert_eq(res.status, 0, "job %llu failed: %s", (unsigned long long) res.id, res.error);
                cr_assert(!res.unchecked, "a result accepted without its check");
                cr_assert_eq(swarm_values_get_bytes(res.outputs, "image", &png, &size), 0);
                cr_assert_gt(size, 8);
                cr_assert_eq(memcmp(png, "\x89PNG", 4), 0);
                from_cheat += (requester_has_model && is_node(res.provider, 2)) || is_node(res.provider, 3);
                rejected += res.rejected;
                jobs_result_done(&res);
        }
        cr_assert_eq(from_cheat, 0, "%u images of the cheats were accepted", from_cheat);
        cr_assert_geq(rejected, 1, "the cheats were never asked: the test proves little");
        jobs_client_free(c);
}

Test(jobs, imagegen_results_are_verified_by_secret_steps_and_cheats_rejected) {
        imagegen_swarm(true);
}

Test(jobs, imagegen_a_requester_without_the_model_has_results_checked_elsewhere) {
        imagegen_swarm(false);
}

Test(jobs, provider_killed_mid_job_jobs_complete_elsewhere) {
        unsigned rerouted = 0, rejected = 0, per_node[NODES_MAX] = {};
        struct jobs_client *c;

        /* Node 2 asks twice the price, so node 1 is the first choice. */
        const char *const options[] = { NULL, NULL, "\"testskill.price=2\"" };

        start_swarm(2, options, NULL);
        c = connect_requester();
        /* 4 jobs of 600 ms: node 1 is running them when it dies; they must
         * finish on node 2, none twice, none lost. */
        run_jobs(c, 4, "slow", 600, 300, 1, &rerouted, &rejected, per_node);
        cr_assert_geq(rerouted, 1, "nothing was rerouted after the kill");
        cr_assert_eq(per_node[2], 4, "results from the dead provider: %u", per_node[1]);
        jobs_client_free(c);
}

Test(jobs, cheating_provider_is_caught_and_no_wrong_result_accepted) {
        const bool cheat[] = { false, false, true };
        unsigned rerouted = 0, rejected = 0, per_node[NODES_MAX] = {};
        struct jobs_client *c;

        start_swarm(2, NULL, cheat);
        c = connect_requester();
        run_jobs(c, 30, "echo", 0, 0, 0, &rerouted, &rejected, per_node);
        cr_assert_eq(per_node[2], 0, "%u results of the cheat were accepted", per_node[2]);
        cr_assert_eq(per_node[1], 30);
        cr_log_info("%u results rejected by verification, %u reroutes", rejected, rerouted);
        jobs_client_free(c);
}

/* y = conv(x, w) + bias with stride 1, padding 1, 3×3, in double. */
static double conv_reference(const float *x, const float *w, const float *b, uint32_t c, uint32_t h, uint32_t wd,
                             uint32_t k, uint32_t i, uint32_t j) {
        double s = b[k];

        for (uint32_t ci = 0; ci < c; ci++)
                for (int r = 0; r < 3; r++)
                        for (int t = 0; t < 3; t++) {
                                int ih = (int) i - 1 + r, iw = (int) j - 1 + t;

                                if (ih >= 0 && ih < (int) h && iw >= 0 && iw < (int) wd)
                                        s += (double) x[(ci * h + (uint32_t) ih) * wd + (uint32_t) iw] *
                                             w[((k * c + ci) * 3 + (uint32_t) r) * 3 + (uint32_t) t];
                        }
        return s;
}

/* The shipped conv2d skill end to end: providers run it on the engine, the
 * requester checks each result with the Freivalds check on the im2col form,
 * and a provider returning wrong convolutions gets none accepted. */
Test(jobs, conv2d_runs_on_providers_and_a_cheats_convolutions_are_rejected) {
        const bool cheat[] = { false, false, true };
        const char *const options[] = { NULL, "\"conv2d.threads=1\"", "\"conv2d.threads=1\"" };
        const uint32_t c = 6, h = 9, wd = 11, k = 5;
        unsigned per_node[NODES_MAX] = {}, rejected = 0;
        struct jobs_client *cl;

        enabled_skill = offered_skill = "conv2d";
        shipped_skill = true;
        start_swarm(2, options, cheat);
        cl = connect_requester();
        for (unsigned id = 0; id < 12; id++) {
                struct swarm_values *in = swarm_values_new();
                struct swarm_tensor t;

                swarm_values_set_allocator(in, shm_allocate, NULL);
                cr_assert_eq(swarm_values_add_tensor(in, "x", SWARM_DTYPE_F32, 4, (uint64_t[]) { 1, c, h, wd }, &t), 0);
                for (uint64_t i = 0; i < t.n_elements; i++)
                        ((float *) t.data)[i] = (float) ((i * 31 + id * 7) % 17) / 8.0f - 1.0f;
                cr_assert_eq(swarm_values_add_tensor(in, "w", SWARM_DTYPE_F32, 4, (uint64_t[]) { k, c, 3, 3 }, &t), 0);
                for (uint64_t i = 0; i < t.n_elements; i++)
                        ((float *) t.data)[i] = (float) ((i * 13 + id) % 11) / 5.0f - 1.0f;
                cr_assert_eq(swarm_values_add_tensor(in, "bias", SWARM_DTYPE_F32, 1, (uint64_t[]) { k }, &t), 0);
                for (uint64_t i = 0; i < k; i++)
                        ((float *) t.data)[i] = (float) i - 2.0f;
                cr_assert_eq(swarm_values_set_int(in, "padding", 1), 0);
                submit(cl, id, "conv2d", in, UINT64_MAX / 2, 20 * 1000 * 1000);
                swarm_values_free(in);
        }
        for (unsigned done = 0; done < 12; done++) {
                struct jobs_result res = {};
                struct swarm_tensor y;
                float x[6 * 9 * 11], w[5 * 6 * 9], b[5];

                wait_result(cl, &res);
                cr_assert_eq(res.status, 0, "job %llu failed: %s", (unsigned long long) res.id, res.error);
                cr_assert_eq(swarm_values_get_tensor(res.outputs, "y", &y), 0);
                cr_assert_eq(y.n_elements, (uint64_t) k * h * wd);
                for (uint64_t i = 0; i < c * h * wd; i++)
                        x[i] = (float) ((i * 31 + res.id * 7) % 17) / 8.0f - 1.0f;
                for (uint64_t i = 0; i < k * c * 9; i++)
                        w[i] = (float) ((i * 13 + res.id) % 11) / 5.0f - 1.0f;
                for (uint32_t i = 0; i < k; i++)
                        b[i] = (float) i - 2.0f;
                for (uint32_t kk = 0; kk < k; kk++)
                        for (uint32_t i = 0; i < h; i++)
                                for (uint32_t j = 0; j < wd; j++)
                                        cr_assert_float_eq(((float *) y.data)[(kk * h + i) * wd + j],
                                                           conv_reference(x, w, b, c, h, wd, kk, i, j), 1e-3,
                                                           "job %llu: y(%u, %u, %u)", (unsigned long long) res.id,
                                                           kk, i, j);
                for (int n = 0; n < NODES_MAX; n++)
                        if (is_node(res.provider, n))
                                per_node[n]++;
                rejected += res.rejected;
                jobs_result_done(&res);
        }
        cr_assert_eq(per_node[2], 0, "%u convolutions of the cheat were accepted", per_node[2]);
        cr_assert_eq(per_node[1], 12);
        /* A burst of 12 is spread over both providers (routing counts the
         * jobs in flight), so the cheat is asked and caught. */
        cr_assert_geq(rejected, 1, "the cheat was never asked: the test proves nothing");
        jobs_client_free(cl);
}

Test(jobs, no_provider_for_skill_and_expired_deadline_are_clear_errors) {
        struct swarm_values *in;
        struct jobs_result res = {};
        struct jobs_client *c;
        long long start;

        start_swarm(1, NULL, NULL);
        c = connect_requester();

        in = make_inputs(1.0f, 16, "echo", 0);
        submit(c, 7, "nosuchskill", in, UINT64_MAX / 2, 5 * 1000 * 1000);
        wait_result(c, &res);
        cr_assert_eq(res.id, 7);
        cr_assert_lt(res.status, 0);
        cr_assert(res.error && strstr(res.error, "nosuchskill"), "error does not name the skill: %s", res.error);
        cr_assert_null(res.outputs);
        jobs_result_done(&res);
        swarm_values_free(in);

        /* Sleeps until cancelled: the deadline must end it, with a reason. */
        in = make_inputs(1.0f, 16, "sleep", 0);
        start = monotonic_usec();
        submit(c, 8, "testskill", in, UINT64_MAX / 2, 1000 * 1000);
        wait_result(c, &res);
        cr_assert_eq(res.id, 8);
        cr_assert_lt(res.status, 0);
        cr_assert(res.error && res.error[0]);
        cr_assert_lt(monotonic_usec() - start, 10 * 1000 * 1000LL, "the deadline was not enforced");
        cr_log_info("deadline: %s after %.0f ms", res.error, (double) (monotonic_usec() - start) / 1e3);
        jobs_result_done(&res);
        swarm_values_free(in);

        /* The connection is still good. */
        in = make_inputs(3.0f, 16, "echo", 0);
        submit(c, 9, "testskill", in, UINT64_MAX / 2, 10 * 1000 * 1000);
        wait_result(c, &res);
        cr_assert_eq(res.status, 0, "%s", res.error);
        cr_assert(output_is_right(&res, 3.0f, 16));
        jobs_result_done(&res);
        swarm_values_free(in);
        jobs_client_free(c);
}

Test(jobs, price_above_max_is_not_routed_there) {
        /* 64 elements: node 1 asks 64, node 2 asks 6400. */
        const char *const options[] = { NULL, NULL, "\"testskill.price=100\"" };
        struct swarm_values *in = make_inputs(0.0f, 64, "echo", 0);
        struct jobs_client *c;
        struct jobs_result res = {};

        start_swarm(2, options, NULL);
        c = connect_requester();
        for (unsigned i = 0; i < 12; i++)
                submit(c, i, "testskill", in, 1000, 10 * 1000 * 1000);
        for (unsigned i = 0; i < 12; i++) {
                wait_result(c, &res);
                cr_assert_eq(res.status, 0, "%s", res.error);
                cr_assert(is_node(res.provider, 1), "job %llu routed to a provider above the max price",
                          (unsigned long long) res.id);
                cr_assert_leq(res.price, 1000);
                jobs_result_done(&res);
        }
        /* Below every price: refused before anything runs. */
        submit(c, 99, "testskill", in, 10, 10 * 1000 * 1000);
        wait_result(c, &res);
        cr_assert_lt(res.status, 0);
        cr_assert(res.error && strstr(res.error, "price"), "error does not mention the price: %s", res.error);
        jobs_result_done(&res);
        swarm_values_free(in);
        jobs_client_free(c);
}

/* ---- Hostile input ---- */

struct hostile {
        uint8_t pk[32], sk[64];
        struct transport *t;
        int status;
        bool answered;
};

static void hostile_receive(struct transport *t, const uint8_t from[WIRE_NODE_ID_SIZE], const uint8_t *data,
                            size_t size, void *userdata) {
        struct hostile *h = userdata;
        Swarm__JobEnvelope *e = NULL;
        Swarm__JobResult *res = NULL;
        const char *reason = NULL;

        if (size < 1 || data[0] != NETWORK_CHANNEL_JOBS)
                return;
        if (job_decode(data + 1, size - 1, 1 << 20, &e, &reason) < 0)
                return;
        if (e->body_case == SWARM__JOB_ENVELOPE__BODY_RESULT &&
            job_result_open(e->result, from, 1 << 20, &res, &reason) == 0) {
                h->status = res->status;
                h->answered = true;
                job_result_free(res);
        }
        job_envelope_free(e);
}

/* Joins the swarm honestly (a push-pull with its own signed record), so
 * that the daemon knows where to answer. */
static void hostile_join(struct hostile *h, const char *endpoint) {
        Swarm__NodeRecord r = SWARM__NODE_RECORD__INIT;
        Swarm__SignedRecord valid = SWARM__SIGNED_RECORD__INIT;
        Swarm__PushPull pp = SWARM__PUSH_PULL__INIT;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        char *endpoints[1] = { (char *) transport_endpoint(h->t) };
        uint8_t channel = NETWORK_CHANNEL_MEMBERSHIP, *data;
        size_t size;

        r.node_id.data = h->pk;
        r.node_id.len = 32;
        r.version = 1;
        r.incarnation = 1;
        r.endpoints = endpoints;
        r.n_endpoints = 1;
        r.name = (char *) "hostile";
        cr_assert_eq(wire_record_sign(&r, h->sk, &valid), 0);
        pp.sender = &valid;
        e.body_case = SWARM__ENVELOPE__BODY_PUSH_PULL;
        e.push_pull = &pp;
        cr_assert_eq(wire_encode(&e, &data, &size), 0);
        {
                struct iovec iov[2] = { { &channel, 1 }, { data, size } };
                cr_assert_eq(transport_sendv(h->t, nodes[0].identity->public_key, endpoint, iov, 2), 0);
        }
        free(data);
        wire_signed_record_clear(&valid);
}

Test(jobs, malformed_job_from_a_peer_is_refused_and_the_daemon_serves_on) {
        struct transport_config tc = {
                .bind = "tcp://127.0.0.1:0",
                .max_message_size = 1 << 20,
                .rate_per_second = 1000,
                .rate_burst = 1000,
                .send_queue = 100,
        };
        static const uint8_t garbage[] = { 0x0a, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x03, 'b', 'a', 'd' };
        char endpoint[64];
        struct hostile h = {};
        struct swarm_values *in;
        struct jobs_result res = {};
        struct jobs_client *c;
        sd_event *e = NULL;

        start_swarm(1, NULL, NULL);

        crypto_sign_keypair(h.pk, h.sk);
        cr_assert_geq(sd_event_new(&e), 0);
        cr_assert_eq(transport_new(e, &tc, h.sk, hostile_receive, &h, &h.t), 0);
        /* At the seed, which is the requester: it must refuse the job as
         * any provider would, and carry on. */
        snprintf(endpoint, sizeof(endpoint), "tcp://127.0.0.1:%d", seed_port);
        hostile_join(&h, endpoint);
        for (long long end = monotonic_usec() + 500 * 1000LL; monotonic_usec() < end;)
                sd_event_run(e, 10 * 1000);
        {
                uint8_t channel = NETWORK_CHANNEL_JOBS;
                struct iovec iov[2] = { { &channel, 1 }, { (void *) garbage, sizeof(garbage) } };
                cr_assert_eq(transport_sendv(h.t, nodes[0].identity->public_key, endpoint, iov, 2), 0);
        }
        for (long long deadline = monotonic_usec() + 10 * 1000 * 1000LL; !h.answered;) {
                cr_assert_lt(monotonic_usec(), deadline, "no error reply to a malformed job");
                sd_event_run(e, 10 * 1000);
        }
        cr_assert_lt(h.status, 0, "the malformed job was not refused");
        transport_free(h.t);
        sd_event_unref(e);

        /* Unaffected: a good job still goes through. */
        c = connect_requester();
        in = make_inputs(5.0f, 32, "echo", 0);
        submit(c, 1, "testskill", in, UINT64_MAX / 2, 10 * 1000 * 1000);
        wait_result(c, &res);
        cr_assert_eq(res.status, 0, "%s", res.error);
        cr_assert(output_is_right(&res, 5.0f, 32));
        jobs_result_done(&res);
        swarm_values_free(in);
        jobs_client_free(c);
        cr_assert_gt(nodes[0].pid, 0);
        cr_assert_eq(kill(nodes[0].pid, 0), 0, "the requester died");
}

/* The jobs socket itself: a garbage datagram gets an error reply and the
 * connection stays usable; a client that goes away has its jobs cancelled,
 * and a new connection reusing the same job ids gets only its own replies.
 * (Cancelling stops the requester's job; the wire has no cancel message
 * yet, so the provider runs its attempt out to the deadline.) */
Test(jobs, jobs_socket_answers_garbage_and_cancels_on_disconnect) {
        struct swarm_values *in;
        struct jobs_result res = {};
        struct jobs_client *c;
        int fd;

        start_swarm(1, NULL, NULL);
        c = connect_requester();
        fd = jobs_client_fd(c);
        cr_assert_eq(send(fd, "garbage", 7, 0), 7);
        wait_result(c, &res);
        cr_assert_eq(res.status, -EBADMSG);
        cr_assert(res.error && strstr(res.error, "malformed"), "%s", res.error);
        jobs_result_done(&res);

        /* A skill name that is no name. */
        in = make_inputs(1.0f, 4, "echo", 0);
        submit(c, 5, "", in, 10, 0);
        wait_result(c, &res);
        cr_assert_eq(res.id, 5);
        cr_assert_eq(res.status, -EINVAL);
        jobs_result_done(&res);
        swarm_values_free(in);

        /* Two sleeping jobs, then hang up. */
        in = make_inputs(1.0f, 4, "sleep", 0);
        submit(c, 1, "testskill", in, UINT64_MAX / 2, 2 * 1000 * 1000);
        submit(c, 2, "testskill", in, UINT64_MAX / 2, 2 * 1000 * 1000);
        swarm_values_free(in);
        usleep(300 * 1000);
        jobs_client_free(c);

        /* The same ids on a new connection: only the new jobs answer. */
        c = connect_requester();
        in = make_inputs(2.0f, 8, "echo", 0);
        submit(c, 1, "testskill", in, UINT64_MAX / 2, 20 * 1000 * 1000);
        submit(c, 2, "testskill", in, UINT64_MAX / 2, 20 * 1000 * 1000);
        for (int i = 0; i < 2; i++) {
                wait_result(c, &res);
                cr_assert_eq(res.status, 0, "job %llu after a cancel: %s", (unsigned long long) res.id, res.error);
                cr_assert(output_is_right(&res, 2.0f, 8));
                jobs_result_done(&res);
        }
        cr_assert_eq(jobs_client_wait(c, 500, &res), -ETIMEDOUT, "a cancelled job answered on another connection");
        swarm_values_free(in);
        jobs_client_free(c);
        cr_assert_eq(kill(nodes[0].pid, 0), 0, "the requester died");
}

/* ---- Credits ---- */

static void stop_node(int i) {
        int status;

        cr_assert_eq(kill(nodes[i].pid, SIGTERM), 0);
        status = wait_exit_timeout(nodes[i].pid, WAIT_MS);
        cr_assert_geq(status, 0, "node %d did not stop", i);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "node %d stopped badly (%d)", i, status);
        nodes[i].pid = 0;
}

static struct ledger *open_ledger(int i) {
        char path[200], *error = NULL;
        struct ledger *l = NULL;
        int r;

        snprintf(path, sizeof(path), "%s/ledger.db", nodes[i].state);
        r = ledger_open(path, nodes[i].identity->public_key, &l, &error);
        cr_assert_eq(r, 0, "cannot open node %d's ledger: %s", i, error ?: strerror(-r));
        free(error);
        return l;
}

static bool peer_get(struct ledger *l, const uint8_t id[32], struct ledger_peer *ret) {
        struct ledger_peer *peers = NULL;
        size_t n = 0;
        bool found = false;

        cr_assert_eq(ledger_list_peers(l, &peers, &n), 0);
        for (size_t i = 0; i < n; i++)
                if (memcmp(peers[i].id, id, 32) == 0) {
                        *ret = peers[i];
                        found = true;
                }
        free(peers);
        if (!found)
                *ret = (struct ledger_peer) {};
        return found;
}

/* Checks what the requester (node 0) paid against what each provider holds:
 * its transfers to a provider add up exactly to the jobs it recorded as
 * paid to it, each job paid once and naming its transfer, the provider
 * delivered them all (wait_payments_delivered() first), and a provider
 * was never paid for more than it delivered. */
static void check_books(int providers, uint64_t delivered_jobs, uint64_t delivered_credits) {
        struct ledger *req = open_ledger(0);
        struct ledger_balance b;
        uint64_t issued_total = 0, paid_jobs = 0;

        for (int p = 1; p <= providers; p++) {
                struct ledger_job *jobs = NULL;
                struct ledger_peer at_req, at_prov;
                struct ledger *prov = open_ledger(p);
                uint64_t sum = 0;
                size_t n = 0;

                (void) peer_get(req, nodes[p].identity->public_key, &at_req);
                cr_assert_eq(ledger_history(req, nodes[p].identity->public_key, 0, &jobs, &n), 0);
                for (size_t k = 0; k < n; k++) {
                        cr_assert_eq(jobs[k].role, LEDGER_ROLE_PAID);
                        cr_assert(jobs[k].paid_by_transfer, "a paid job names no transfer");
                        sum += jobs[k].price;
                        for (size_t j = 0; j < k; j++)
                                cr_assert(memcmp(jobs[j].job_id, jobs[k].job_id, 16) != 0, "a job paid twice");
                }
                free(jobs);
                cr_assert_eq(at_req.issued, sum, "node 0's transfers to node %d add up to %llu, its paid jobs to %llu",
                             p, (unsigned long long) at_req.issued, (unsigned long long) sum);
                cr_assert_eq(at_req.jobs_paid, n);
                (void) peer_get(prov, nodes[0].identity->public_key, &at_prov);
                cr_assert_eq(at_prov.received, at_req.issued,
                             "node %d delivered transfers for %llu, node 0 signed %llu", p,
                             (unsigned long long) at_prov.received, (unsigned long long) at_req.issued);
                cr_assert_geq(at_prov.served, at_prov.received, "node %d was paid for more than it served", p);
                cr_log_info("node %d: served %llu (%llu jobs), paid %llu (%llu jobs)", p,
                            (unsigned long long) at_prov.served, (unsigned long long) at_prov.jobs_served,
                            (unsigned long long) at_prov.received, (unsigned long long) at_req.jobs_paid);
                issued_total += at_req.issued;
                paid_jobs += at_req.jobs_paid;
                ledger_free(prov);
        }
        cr_assert_eq(ledger_get_balance(req, &b), 0);
        cr_assert_eq(b.spent + b.in_flight, issued_total);
        cr_assert_eq(b.in_flight, 0);
        cr_assert_eq(b.jobs_paid, paid_jobs);
        cr_assert_eq(b.earned, REQUESTER_MINT, "the requester earned only its mint");
        cr_assert_eq(b.balance, (int64_t) REQUESTER_MINT - (int64_t) issued_total);
        /* Every result handed to the client was paid first. */
        cr_assert_geq(paid_jobs, delivered_jobs);
        cr_assert_geq(issued_total, delivered_credits);
        ledger_free(req);
}

static const char *const fast_gossip = "reputation:\n  gossip_interval: 300ms\n";

static bool file_has(const char *path, const char *what) {
        char buf[65536];
        FILE *f = fopen(path, "re");
        size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

        if (f)
                fclose(f);
        buf[n] = '\0';
        return strstr(buf, what) != NULL;
}

static void wait_file_has(const char *path, const char *what) {
        for (long long deadline = monotonic_usec() + WAIT_MS * 1000LL; !file_has(path, what);) {
                cr_assert_lt(monotonic_usec(), deadline, "no \"%s\" in %s", what, path);
                usleep(100 * 1000);
        }
}

static void restart_requester(void) {
        char log[65536], *p;
        FILE *f = fopen(nodes[1].log, "re");
        size_t n = f ? fread(log, 1, sizeof(log) - 1, f) : 0;
        int port;

        if (f)
                fclose(f);
        log[n] = '\0';
        /* Node 1 as node 0's seed: it rejoins at once. */
        p = strstr(log, "Listening on tcp://127.0.0.1:");
        cr_assert_not_null(p, "node 1 did not say where it listens");
        port = atoi(p + strlen("Listening on tcp://127.0.0.1:"));
        snprintf(node0_seed, sizeof(node0_seed), "%s@tcp://127.0.0.1:%d", nodes[1].identity->node_id, port);
        kill_node(0);
        write_config(0, NULL, false);
        start_node(0);
        for (long long deadline = monotonic_usec() + 3 * WAIT_MS * 1000LL; providers_seen() < 1;) {
                cr_assert_lt(monotonic_usec(), deadline, "the restarted requester did not find the provider");
                usleep(50 * 1000);
        }
}

/* A requester killed with results it had not paid for comes back (another
 * boot_id): the provider writes off that unpaid work — it is not debt that
 * counts against the requester for ever — but no more than debt_limit a
 * day, so that restarting is no way to work for free.  (The requester here
 * never pays, testing.withhold_payments, so that the unpaid work is
 * exactly known: 10 jobs of 64 µcredits.) */
Test(credits, a_requester_restart_writes_off_its_unpaid_work_up_to_a_daily_cap) {
        unsigned rerouted = 0, rejected = 0;
        struct ledger *prov;
        struct jobs_client *c;
        uint64_t debt;

        extra_config[0] = "reputation:\n  gossip_interval: 300ms\ntesting:\n  withhold_payments: true\n";
        extra_config[1] = "reputation:\n  gossip_interval: 300ms\nledger:\n  debt_limit: 1000\n";
        start_swarm(1, NULL, NULL);
        c = connect_requester();
        run_jobs(c, 10, "echo", 0, 0, 0, &rerouted, &rejected, NULL);
        jobs_client_free(c);

        restart_requester();
        wait_file_has(nodes[1].log, "restarted: 640 µcredits of work it was served and never paid for");

        /* Again: 640 more unpaid, but only 360 left of the day's 1000. */
        c = connect_requester();
        run_jobs(c, 10, "echo", 0, 0, 0, &rerouted, &rejected, NULL);
        jobs_client_free(c);
        restart_requester();
        wait_file_has(nodes[1].log, "restarted: 360 µcredits");

        stop_node(1);
        prov = open_ledger(1);
        cr_assert_eq(ledger_debt(prov, nodes[0].identity->public_key, &debt), 0);
        cr_assert_eq(debt, 280, "debt after the capped write-off: %llu", (unsigned long long) debt);
        ledger_free(prov);
}

Test(credits, verified_jobs_are_paid_by_transfer_exactly_once) {
        uint64_t delivered = 0, credits = 0;
        struct jobs_client *c;

        for (int i = 0; i < NODES_MAX; i++)
                extra_config[i] = fast_gossip;
        start_swarm(2, NULL, NULL);
        c = connect_requester();
        for (unsigned i = 0; i < 30; i++) {
                struct swarm_values *in = make_inputs((float) i, 64, "echo", 0);
                submit(c, i, "testskill", in, UINT64_MAX / 2, 20 * 1000 * 1000);
                swarm_values_free(in);
        }
        for (unsigned i = 0; i < 30; i++) {
                struct jobs_result res = {};

                wait_result(c, &res);
                cr_assert_eq(res.status, 0, "%s", res.error);
                cr_assert_gt(res.price, 0);
                delivered++;
                credits += res.price;
                jobs_result_done(&res);
        }
        jobs_client_free(c);
        wait_payments_delivered(2);
        for (int i = 0; i <= 2; i++)
                stop_node(i);
        check_books(2, delivered, credits);
        {
                struct ledger *req = open_ledger(0);
                struct ledger_balance b;

                cr_assert_eq(ledger_get_balance(req, &b), 0);
                cr_assert_eq(b.jobs_paid, 30, "30 verified remote jobs, %llu paid", (unsigned long long) b.jobs_paid);
                cr_assert_eq(b.spent, credits);
                ledger_free(req);
        }
}

Test(credits, a_requester_that_does_not_pay_is_refused_at_the_debt_limit) {
        struct swarm_values *in = make_inputs(1.0f, 64, "echo", 0);
        struct jobs_result res = {};
        struct jobs_client *c;
        unsigned served = 0;

        /* testskill charges one per element: 64 a job; the limit admits 4. */
        extra_config[0] = "testing:\n  withhold_payments: true\n";
        extra_config[1] = "ledger:\n  debt_limit: 300\npricing:\n  interval: 0\n";
        start_swarm(1, NULL, NULL);
        c = connect_requester();
        for (unsigned i = 0; i < 6; i++) {
                submit(c, i, "testskill", in, UINT64_MAX / 2, 10 * 1000 * 1000);
                wait_result(c, &res);
                if (res.status == 0)
                        served++;
                else
                        cr_assert(res.error && strstr(res.error, "unpaid debt of 256"),
                                  "job %u refused for another reason: %s", i, res.error);
                jobs_result_done(&res);
        }
        cr_assert_eq(served, 4, "%u jobs served to a requester that pays nothing", served);
        swarm_values_free(in);
        jobs_client_free(c);
        stop_node(1);
        {
                struct ledger *prov = open_ledger(1);
                uint64_t debt = 0;

                cr_assert_eq(ledger_debt(prov, nodes[0].identity->public_key, &debt), 0);
                cr_assert_eq(debt, 256);
                ledger_free(prov);
        }
}

/* kill -9 at random points of many jobs, the requester or a provider in
 * turn; after every restart the books must still balance: nothing paid
 * twice, nothing paid without its job, no transfer lost for good. */
Test(credits, books_balance_after_kill_9_at_random_points, .timeout = 300) {
        uint64_t delivered = 0, credits = 0;
        unsigned seed = (unsigned) monotonic_usec();

        cr_log_info("seed %u", seed);
        srand(seed);
        for (int i = 0; i < NODES_MAX; i++)
                extra_config[i] = fast_gossip;
        start_swarm(2, NULL, NULL);
        for (int round = 0; round < 9; round++) {
                int victim = round % 3;
                int delay_ms = 20 + rand() % 400;
                struct jobs_client *c = connect_requester();

                for (unsigned i = 0; i < 24; i++) {
                        struct swarm_values *in = make_inputs((float) i, 64, "slow", 20 + rand() % 40);
                        submit(c, i, "testskill", in, UINT64_MAX / 2, 20 * 1000 * 1000);
                        swarm_values_free(in);
                }
                usleep((useconds_t) delay_ms * 1000);
                kill_node(victim);
                for (unsigned i = 0; i < 24; i++) {
                        struct jobs_result res = {};
                        int r = jobs_client_wait(c, WAIT_MS, &res);

                        if (victim == 0) {
                                if (r < 0)
                                        break;  /* the requester died with the rest */
                        } else
                                cr_assert_eq(r, 0, "round %d: no reply: %s", round, strerror(-r));
                        if (r == 0 && res.status == 0 && res.provider && strcmp(res.provider, "local") != 0) {
                                delivered++;
                                credits += res.price;
                        }
                        jobs_result_done(&res);
                }
                jobs_client_free(c);
                cr_log_info("round %d: node %d killed after %d ms", round, victim, delay_ms);
                start_node(victim);
                {
                        /* A restarted requester (no seeds of its own) is found
                         * again when a provider pings the members it thinks
                         * dead, every 5 s: slow under ASan, so a long wait. */
                        long long t0 = monotonic_usec(), deadline = t0 + 3 * WAIT_MS * 1000LL;

                        while (providers_seen() < 2) {
                                cr_assert_lt(monotonic_usec(), deadline,
                                             "round %d: the swarm did not come back together after node %d "
                                             "restarted", round, victim);
                                usleep(50 * 1000);
                        }
                        cr_log_info("round %d: swarm whole again %.1f s after the restart", round,
                                    (double) (monotonic_usec() - t0) / 1e6);
                }
        }
        /* Broadcasts again and probes settle what the kills interrupted. */
        wait_payments_delivered(2);
        for (int i = 0; i <= 2; i++)
                stop_node(i);
        check_books(2, delivered, credits);
}

/* ---- swarmctl balance, ledger and peers against the books ---- */

/* Runs $SWARMCTL args… with the control socket of node i (none for i < 0;
 * as nobody when nobody); stdout and stderr in out.  Returns the exit
 * status. */
static int swarmctl_on(int i, bool nobody, char *out, size_t size, const char *const *args) {
        const char *binary = getenv("SWARMCTL");
        const char *argv[24] = { binary };
        char out_path[200];
        size_t k = 1, n;
        pid_t pid;
        int status;
        FILE *f;

        cr_assert_not_null(binary, "SWARMCTL not set (run through meson test)");
        for (; *args && k < 20; args++)
                argv[k++] = *args;
        if (i >= 0) {
                argv[k++] = "--socket";
                argv[k++] = nodes[i].control;
        }
        argv[k] = NULL;
        snprintf(out_path, sizeof(out_path), "%s/swarmctl.out", root);
        pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);

                if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
                        _exit(98);
                if (nobody && (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0))
                        _exit(99);
                execv(binary, (char **) argv);
                _exit(127);
        }
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status), "swarmctl crashed");
        f = fopen(out_path, "re");
        cr_assert_not_null(f);
        n = fread(out, 1, size - 1, f);
        out[n] = '\0';
        fclose(f);
        return WEXITSTATUS(status);
}

/* The integer after "key": in JSON text (the first one). */
static long long json_int(const char *json, const char *key) {
        char pattern[64];
        const char *p;

        snprintf(pattern, sizeof(pattern), "\"%s\": ", key);
        p = strstr(json, pattern);
        cr_assert_not_null(p, "no %s in %s", key, json);
        return strtoll(p + strlen(pattern), NULL, 10);
}

static void assert_json_parses(const char *json) {
        char path[200], command[300];
        FILE *f;

        snprintf(path, sizeof(path), "%s/out.json", root);
        f = fopen(path, "we");
        cr_assert_not_null(f);
        fputs(json, f);
        cr_assert_eq(fclose(f), 0);
        snprintf(command, sizeof(command), "python3 -m json.tool %s >/dev/null 2>&1", path);
        cr_assert_eq(system(command), 0, "not JSON:\n%s", json);
}

Test(credits, swarmctl_balance_and_ledger_show_the_books) {
        char out[65536], provider[NODE_ID_LEN + 1], prefix[7];
        long long issued, served;
        uint64_t credits = 0;
        struct jobs_client *c;
        struct ledger_balance b;
        struct ledger *l;

        for (int i = 0; i < NODES_MAX; i++)
                extra_config[i] = fast_gossip;
        extra_config[0] = "reputation:\n  gossip_interval: 300ms\n";
        start_swarm(1, NULL, NULL);
        snprintf(provider, sizeof(provider), "%s", nodes[1].identity->node_id);
        c = connect_requester();
        for (unsigned i = 0; i < 5; i++) {
                struct swarm_values *in = make_inputs((float) i, 64, "echo", 0);
                struct jobs_result res = {};

                submit(c, i, "testskill", in, UINT64_MAX / 2, 20 * 1000 * 1000);
                swarm_values_free(in);
                wait_result(c, &res);
                cr_assert_eq(res.status, 0, "%s", res.error);
                credits += res.price;
                jobs_result_done(&res);
        }
        jobs_client_free(c);
        wait_payments_delivered(1);

        /* The requester's balance: its mint − what it paid, 5 jobs. */
        cr_assert_eq(swarmctl_on(0, false, out, sizeof(out), (const char *[]) { "balance", "--json", NULL }), 0,
                     "%s", out);
        assert_json_parses(out);
        cr_assert_eq(json_int(out, "earned"), (long long) REQUESTER_MINT);
        cr_assert_eq(json_int(out, "spent"), (long long) credits);
        cr_assert_eq(json_int(out, "in_flight"), 0);
        cr_assert_eq(json_int(out, "balance"), (long long) REQUESTER_MINT - (long long) credits);
        cr_assert_eq(json_int(out, "jobs_paid"), 5);
        issued = json_int(out, "spent");
        cr_assert_eq(swarmctl_on(0, false, out, sizeof(out), (const char *[]) { "balance", NULL }), 0, "%s", out);
        cr_assert(strstr(out, "Balance: ") && strstr(out, " credits (") && strstr(out, "In flight: "), "%s", out);
        /* The provider: what it earned, nothing pending once delivered. */
        cr_assert_eq(swarmctl_on(1, false, out, sizeof(out), (const char *[]) { "balance", "--json", NULL }), 0,
                     "%s", out);
        cr_assert_eq(json_int(out, "pending_delivery"), 0, "%s", out);

        /* Per peer on both sides, whole id and prefix. */
        cr_assert_eq(swarmctl_on(0, false, out, sizeof(out), (const char *[]) { "ledger", "--json", NULL }), 0,
                     "%s", out);
        assert_json_parses(out);
        cr_assert(strstr(out, provider), "the provider is not in the requester's ledger: %s", out);
        cr_assert_eq(json_int(out, "paid"), issued);
        cr_assert_eq(json_int(out, "jobs_paid"), 5);
        cr_assert(strstr(out, "\"role\": \"paid\""), "%s", out);
        cr_assert(strstr(out, "\"delivered\": true"), "the jobs' transfer is not shown delivered: %s", out);
        snprintf(prefix, sizeof(prefix), "%.6s", provider);
        cr_assert_eq(swarmctl_on(0, false, out, sizeof(out),
                                 (const char *[]) { "ledger", prefix, "--limit", "2", NULL }), 0, "%s", out);
        cr_assert(strstr(out, "The 2 most recent jobs:") && strstr(out, "testskill"), "%s", out);
        cr_assert_eq(swarmctl_on(1, false, out, sizeof(out), (const char *[]) { "ledger", "--json", NULL }), 0,
                     "%s", out);
        assert_json_parses(out);
        served = json_int(out, "served");
        cr_assert_eq(served, (long long) credits, "the provider served %lld, the requester paid %llu", served,
                     (unsigned long long) credits);
        cr_assert_eq(json_int(out, "jobs_served"), 5);
        cr_assert(strstr(out, "\"role\": \"served\""), "%s", out);
        cr_assert_eq(swarmctl_on(0, false, out, sizeof(out), (const char *[]) { "ledger", "zzzzzz", NULL }), 2,
                     "an unknown peer: %s", out);

        /* How the requester rates its provider, after 5 verified results. */
        cr_assert_eq(swarmctl_on(0, false, out, sizeof(out), (const char *[]) { "peers", "--json", NULL }), 0,
                     "%s", out);
        assert_json_parses(out);
        cr_assert(strstr(out, "\"reputation\": {\"mean\": 0."), "no reputation of the provider: %s", out);
        cr_assert(strstr(out, "\"demand\": "), "%s", out);

        /* Private: nobody is refused by swarmd itself. */
        if (geteuid() == 0) {
                cr_assert_eq(chmod(root, 0755), 0);
                cr_assert_eq(chmod(nodes[0].dir, 0755), 0);
                cr_assert_eq(chmod(nodes[0].state, 0755), 0);
                cr_assert_eq(swarmctl_on(0, true, out, sizeof(out), (const char *[]) { "balance", NULL }), 4, "%s",
                             out);
                cr_assert(strstr(out, "readable by root and the swarmd group only"), "%s", out);
                cr_assert_eq(swarmctl_on(0, true, out, sizeof(out), (const char *[]) { "ledger", NULL }), 4, "%s",
                             out);
                cr_assert_eq(swarmctl_on(0, true, out, sizeof(out), (const char *[]) { "peers", NULL }), 0,
                             "peers are public: %s", out);
        } else
                cr_log_warn("not root: cannot check that another user is refused the ledger");

        /* What swarmctl showed is what the ledger holds. */
        stop_node(0);
        stop_node(1);
        l = open_ledger(0);
        cr_assert_eq(ledger_get_balance(l, &b), 0);
        cr_assert_eq((long long) b.spent, issued);
        cr_assert_eq(b.earned, REQUESTER_MINT);
        cr_assert_eq(b.jobs_paid, 5);
        ledger_free(l);
}

/* swarmctl submit -o: paths print as given, without "//" for a trailing
 * slash, and a job that fails leaves no empty directory behind. */
Test(jobs, submit_output_dir_has_clean_paths_and_a_failed_job_leaves_none) {
        char out[16384], sock[200], ok_dir[200], bad_dir[200], doubled[220];
        struct stat st;

        start_swarm(1, NULL, NULL);
        snprintf(sock, sizeof(sock), "%s/jobs.sock", nodes[0].state);
        snprintf(ok_dir, sizeof(ok_dir), "%s/ok/", root);
        snprintf(bad_dir, sizeof(bad_dir), "%s/bad/", root);

        cr_assert_eq(swarmctl_on(-1, false, out, sizeof(out),
                                 (const char *[]) { "submit", "--socket", sock, "--skill", "testskill", "--input",
                                                    "mode=str:echo", "--input", "x=random:f32:4", "-o", ok_dir,
                                                    NULL }), 0, "%s", out);
        snprintf(doubled, sizeof(doubled), "%s/ok//", root);
        cr_assert(strstr(out, "/ok/"), "no output path printed: %s", out);
        cr_assert_null(strstr(out, doubled), "a doubled slash: %s", out);

        cr_assert_neq(swarmctl_on(-1, false, out, sizeof(out),
                                  (const char *[]) { "submit", "--socket", sock, "--skill", "no-such-skill",
                                                     "--input", "x=random:f32:4", "-o", bad_dir, NULL }), 0,
                      "%s", out);
        cr_assert_neq(stat(bad_dir, &st), 0, "the failed job left %s behind", bad_dir);
}

/* A job the skill refuses as malformed when pricing it: swarmctl shows the
 * skill's own reason, not strerror(), and exits 2 (a bad job description),
 * not 1 (a failure in the swarm). */
Test(jobs, a_job_the_skill_refuses_shows_its_reason_and_exits_2) {
        char out[16384], sock[200];

        start_swarm(2, NULL, NULL);
        snprintf(sock, sizeof(sock), "%s/jobs.sock", nodes[0].state);
        cr_assert_eq(swarmctl_on(-1, false, out, sizeof(out),
                                 (const char *[]) { "submit", "--socket", sock, "--skill", "testskill", "--input",
                                                    "mode=str:refuse", "--input", "x=random:f32:4", NULL }), 2,
                     "%s", out);
        cr_assert(strstr(out, "input \"x\" is refused on purpose"), "the skill's reason is lost: %s", out);
        cr_assert(strstr(out, "testskill refuses this job"), "%s", out);
        cr_assert_null(strstr(out, "Invalid argument"), "strerror() instead of the reason: %s", out);
}

/* A skill is known by its descriptor's name ("test.renamed"), whatever its
 * file is called (renamed.so): providers enabled by either name offer it
 * under that one name, a requester finds its verifier by it (node 0 hosts
 * nothing: it finds renamed.so by asking each plugin its name), and the
 * file name gets a hint, not a silent miss. */
static void routed_by_descriptor_name(const char *enabled) {
        char out[16384], sock[200];

        enabled_skill = enabled;
        offered_skill = "test.renamed";
        start_swarm(2, NULL, NULL);
        snprintf(sock, sizeof(sock), "%s/jobs.sock", nodes[0].state);
        cr_assert_eq(swarmctl_on(-1, false, out, sizeof(out),
                                 (const char *[]) { "submit", "--socket", sock, "--skill", "test.renamed",
                                                    "--input", "x=random:f32:4", "--input", "mode=str:echo", NULL }),
                     0, "enabled as %s: %s", enabled, out);

        snprintf(sock, sizeof(sock), "%s/jobs.sock", nodes[1].state);
        cr_assert_eq(swarmctl_on(-1, false, out, sizeof(out),
                                 (const char *[]) { "submit", "--socket", sock, "--skill", "renamed", "--input",
                                                    "x=random:f32:4", NULL }), 1, "%s", out);
        if (strcmp(enabled, "renamed") == 0)
                cr_assert(strstr(out, "the plugin renamed.so is skill test.renamed"), "no hint: %s", out);
}

Test(jobs, a_skill_enabled_by_file_name_is_routed_by_its_descriptor_name) {
        routed_by_descriptor_name("renamed");
}

Test(jobs, a_skill_can_be_enabled_by_its_descriptor_name) {
        routed_by_descriptor_name("test.renamed");
}

/* swarmd started by hand keeps its sockets in its state directory:
 * SWARM_STATE_DIR points every socket verb there, and without it the error
 * says where swarmctl looked and how to point it. */
Test(jobs, swarmctl_finds_a_daemon_started_by_hand_through_swarm_state_dir) {
        char out[16384];

        start_swarm(1, NULL, NULL);
        unsetenv("SWARM_CONTROL_SOCKET");
        unsetenv("SWARM_JOBS_SOCKET");
        setenv("SWARM_STATE_DIR", nodes[0].state, 1);
        cr_assert_eq(swarmctl_on(-1, false, out, sizeof(out), (const char *[]) { "peers", NULL }), 0, "%s", out);
        cr_assert(strstr(out, "node0"), "%s", out);
        cr_assert_eq(swarmctl_on(-1, false, out, sizeof(out),
                                 (const char *[]) { "submit", "--skill", "testskill", "--input", "x=random:f32:4",
                                                    "--input", "mode=str:echo", NULL }), 0, "%s", out);

        /* A batch job whose input file is missing names the batch line. */
        {
                char batch[256];
                FILE *f;

                snprintf(batch, sizeof(batch), "%s/jobs.yaml", root);
                f = fopen(batch, "we");
                cr_assert_not_null(f);
                fprintf(f, "- skill: testskill\n  inputs: {x: \"random:f32:4\", mode: echo}\n"
                           "- skill: testskill\n  inputs:\n    x: \"@%s/missing.npy\"\n", root);
                cr_assert_eq(fclose(f), 0);
                cr_assert_eq(swarmctl_on(-1, false, out, sizeof(out),
                                         (const char *[]) { "submit", "--batch", batch, "-q", NULL }), 2, "%s", out);
                cr_assert(strstr(out, "jobs.yaml:3: input x: ") && strstr(out, "missing.npy"),
                          "the batch line is not named: %s", out);
                cr_assert(strstr(out, "done (verified)      1"), "%s", out);
        }

        setenv("SWARM_STATE_DIR", root, 1);     /* no daemon there */
        cr_assert_eq(swarmctl_on(-1, false, out, sizeof(out), (const char *[]) { "peers", NULL }), 3, "%s", out);
        cr_assert(strstr(out, root) && strstr(out, "/run/swarmharness/control.sock"), "where it looked: %s", out);
        cr_assert(strstr(out, "SWARM_STATE_DIR=DIR"), "how to point it: %s", out);
        unsetenv("SWARM_STATE_DIR");
}

static bool same_file(const char *a, const char *b) {
        char x[4096], y[4096];
        FILE *f = fopen(a, "re"), *g = fopen(b, "re");
        size_t n = f ? fread(x, 1, sizeof(x), f) : 0, m = g ? fread(y, 1, sizeof(y), g) : 0;

        if (f)
                fclose(f);
        if (g)
                fclose(g);
        return f && g && n == m && n > 0 && memcmp(x, y, n) == 0;
}

/* Exactly-once delivery: a verified result submitted under a key is kept,
 * durably with its payment, and the same key gets it back — also after
 * the requester was killed and restarted — without a second job or a
 * second payment; another key is a new job. */
Test(credits, a_kept_result_comes_back_for_its_key_without_a_second_payment) {
        char out[16384], sock[200], first[200], again[200], a[260], b[260];
        const char *submit[] = { "submit", "--socket", sock, "--skill", "testskill", "--input", "x=random:f32:4:7",
                                 "--input", "mode=str:echo", "--key", "batch-7", "-o", NULL, NULL };

        start_swarm(1, NULL, NULL);
        snprintf(sock, sizeof(sock), "%s/jobs.sock", nodes[0].state);
        snprintf(first, sizeof(first), "%s/first", root);
        snprintf(again, sizeof(again), "%s/again", root);

        submit[12] = first;
        cr_assert_eq(swarmctl_on(-1, false, out, sizeof(out), submit), 0, "%s", out);
        cr_assert(strstr(out, "job         verified\n"), "%s", out);
        cr_assert_eq(swarmctl_on(0, false, out, sizeof(out), (const char *[]) { "balance", "--json", NULL }), 0);
        cr_assert(strstr(out, "\"jobs_paid\": 1,"), "%s", out);

        /* The requester dies and comes back: the kept result is still there. */
        restart_requester();
        submit[12] = again;
        cr_assert_eq(swarmctl_on(-1, false, out, sizeof(out), submit), 0, "%s", out);
        cr_assert(strstr(out, "verified earlier: its kept result"), "%s", out);
        snprintf(a, sizeof(a), "%s/y.npy", first);
        snprintf(b, sizeof(b), "%s/y.npy", again);
        cr_assert(same_file(a, b), "the kept result is not the result");
        cr_assert_eq(swarmctl_on(0, false, out, sizeof(out), (const char *[]) { "balance", "--json", NULL }), 0);
        cr_assert(strstr(out, "\"jobs_paid\": 1,"), "paid twice for one key: %s", out);

        /* One job per key at a time: a second submission of a key running
         * on another connection is refused, not run and paid twice. */
        {
                struct jobs_client *c1 = connect_requester(), *c2 = connect_requester();
                struct swarm_values *in = make_inputs(1.0f, 4, "slow", 500);
                struct jobs_result res = {};

                cr_assert_eq(jobs_client_submit(c1, &(struct jobs_submission) {
                        .id = 1, .skill = "testskill", .inputs = in, .max_price = UINT64_MAX / 2,
                        .deadline_usec = 20 * 1000 * 1000, .key = "running" }), 0);
                usleep(100 * 1000);
                cr_assert_eq(jobs_client_submit(c2, &(struct jobs_submission) {
                        .id = 2, .skill = "testskill", .inputs = in, .max_price = UINT64_MAX / 2,
                        .deadline_usec = 20 * 1000 * 1000, .key = "running" }), 0);
                wait_result(c2, &res);
                cr_assert_eq(res.status, -EALREADY, "%s", res.error);
                cr_assert(res.error && strstr(res.error, "is running"), "%s", res.error);
                jobs_result_done(&res);
                wait_result(c1, &res);
                cr_assert_eq(res.status, 0, "%s", res.error);
                jobs_result_done(&res);
                swarm_values_free(in);
                jobs_client_free(c1);
                jobs_client_free(c2);
        }

        /* Another key: a new job, paid. */
        submit[10] = "batch-8";
        submit[11] = NULL;      /* no -o */
        cr_assert_eq(swarmctl_on(-1, false, out, sizeof(out), submit), 0, "%s", out);
        cr_assert(strstr(out, "job         verified\n"), "%s", out);
        cr_assert_eq(swarmctl_on(0, false, out, sizeof(out), (const char *[]) { "balance", "--json", NULL }), 0);
        cr_assert(strstr(out, "\"jobs_paid\": 3,"), "%s", out);
}

/* The demand multiplier node 0 sees in provider i's gossiped offer of
 * testskill (0 when it sees none), and the price with it. */
static double demand_seen(int i, uint64_t *price) {
        Swarm__ControlRequest req = SWARM__CONTROL_REQUEST__INIT;
        Swarm__PeersRequest peers = SWARM__PEERS_REQUEST__INIT;
        Swarm__ControlReply *reply;
        double demand = 0;

        req.request_case = SWARM__CONTROL_REQUEST__REQUEST_PEERS;
        req.peers = &peers;
        if (control_client_call(nodes[0].control, &req, &reply) < 0)
                return 0;
        for (size_t k = 0; k < reply->n_peers; k++) {
                const Swarm__PeerInfo *p = reply->peers[k];

                if (p->node_id.len != 32 || memcmp(p->node_id.data, nodes[i].identity->public_key, 32) != 0)
                        continue;
                for (size_t s = 0; s < p->n_skills; s++)
                        if (strcmp(p->skills[s]->name, "testskill") == 0) {
                                demand = p->skills[s]->demand;
                                *price = p->skills[s]->price;
                        }
        }
        swarm__control_reply__free_unpacked(reply, NULL);
        return demand;
}

/* Under load a provider's price rises, step by bounded step, and the
 * requester sees it in gossip; idle, it falls back. */
Test(credits, price_follows_demand_and_is_gossiped) {
        struct jobs_client *c;
        double peak = 0, d;
        uint64_t price = 0, base_price = 0;
        unsigned sent = 0, done = 0;
        long long end;

        extra_config[1] = "pricing:\n  interval: 300ms\n  target_utilisation: 50\n  max_step: 25\n";
        start_swarm(1, NULL, NULL);
        d = demand_seen(1, &base_price);
        cr_assert_float_eq(d, 1.0, 1e-9, "an idle provider starts at its base price (demand %f)", d);

        /* Keep 8 slow jobs in flight on its 2 workers for a while. */
        c = connect_requester();
        for (end = monotonic_usec() + 4 * 1000 * 1000LL; monotonic_usec() < end || done < sent;) {
                struct jobs_result res = {};

                while (monotonic_usec() < end && sent - done < 8) {
                        struct swarm_values *in = make_inputs((float) sent, 16, "slow", 100);
                        submit(c, sent++, "testskill", in, UINT64_MAX / 2, 20 * 1000 * 1000);
                        swarm_values_free(in);
                }
                wait_result(c, &res);
                cr_assert_eq(res.status, 0, "%s", res.error);
                done++;
                jobs_result_done(&res);
                d = demand_seen(1, &price);
                if (d > peak)
                        peak = d;
        }
        jobs_client_free(c);
        cr_log_info("demand rose to %.3f (price %llu, base %llu) after %u jobs", peak,
                    (unsigned long long) price, (unsigned long long) base_price, done);
        cr_assert_gt(peak, 1.2, "the demand multiplier did not rise under load (peak %f)", peak);

        /* Idle: it comes down again. */
        for (end = monotonic_usec() + 20 * 1000 * 1000LL;; usleep(200 * 1000)) {
                d = demand_seen(1, &price);
                if (d < peak * 0.9)
                        break;
                cr_assert_lt(monotonic_usec(), end, "the demand multiplier stayed at %f once idle", d);
        }
}

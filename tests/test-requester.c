/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The requester on a node without a network: this node is the only
 * candidate, its jobs run in a real worker pool hosting
 * tests/plugins/testskill.c (which lies, sleeps or refuses on request) and
 * every result goes through the skill's verify() before it is returned.
 * The multi-daemon paths (remote providers, rerouting between them) are
 * tested with whole swarmds. */

#include <criterion/criterion.h>
#include <sodium.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "macro.h"
#include "requester.h"
#include "shm.h"
#include "skills.h"

static sd_event *event;
static struct config config;
static struct skills *skills;
static struct requester *requester;
static char fake_provider;      /* the requester only checks for one */

struct outcome {
        bool done;
        unsigned calls;
        int status;
        char error[512];
        char provider[64];
        struct swarm_values *outputs;
        uint64_t price;
        unsigned attempts, rejected;
};

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static bool run_until(const bool *flag, uint64_t timeout_usec) {
        uint64_t end = now_usec() + timeout_usec;

        while (!*flag && now_usec() < end)
                cr_assert_geq(sd_event_run(event, 10 * 1000), 0);
        return *flag;
}

static void start(bool host, bool with_provider) {
        sigset_t mask;
        const char *dir = getenv("TEST_PLUGIN_DIR");

        cr_assert(dir, "TEST_PLUGIN_DIR not set (run through meson test)");
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        cr_assert_eq(sd_event_new(&event), 0);
        cr_assert_eq(config_init(&config), 0);
        free(config.skills_directory);
        config.skills_directory = strdup(dir);
        if (host) {
                strv_free(config.skills_enabled);
                config.skills_enabled = calloc(2, sizeof(char *));
                config.skills_enabled[0] = strdup("testskill");
        }
        config.skills_workers = 1;
        config.skills_cgroups = SKILLS_CGROUPS_OFF;
        cr_assert_eq(skills_new(event, &config, NULL, NULL, &skills), 0);
        cr_assert_eq(requester_new(event, NULL, skills,
                                   with_provider ? (struct provider *) &fake_provider : NULL, 1 << 20, &requester),
                     0);
}

static void hosting(void) {
        start(true, true);
}

static void teardown(void) {
        requester_stop(requester);
        requester = requester_free(requester);
        skills = skills_free(skills);
        config_done(&config);
        event = sd_event_unref(event);
}

static void on_done(uint64_t job, struct job_outcome *o, void *userdata) {
        struct outcome *out = userdata;

        out->done = true;
        out->calls++;
        out->status = o->status;
        snprintf(out->error, sizeof(out->error), "%s", o->error ?: "");
        snprintf(out->provider, sizeof(out->provider), "%s", o->provider);
        out->outputs = TAKE_PTR(o->outputs);
        out->price = o->price;
        out->attempts = o->attempts;
        out->rejected = o->rejected;
}

static struct swarm_values *make_inputs(const char *mode, uint64_t n) {
        struct swarm_values *v = swarm_values_new();
        struct swarm_tensor t;

        swarm_values_set_allocator(v, shm_allocate, NULL);
        if (mode)
                cr_assert_eq(swarm_values_set_string(v, "mode", mode), 0);
        if (n) {
                cr_assert_eq(swarm_values_add_tensor(v, "x", SWARM_DTYPE_F32, 1, &n, &t), 0);
                for (uint64_t i = 0; i < n; i++)
                        ((float *) t.data)[i] = (float) i;
        }
        return v;
}

static struct outcome run_job(const char *skill, const struct swarm_values *in, uint64_t max_price,
                              uint64_t budget_usec) {
        struct outcome o = {};
        struct job_spec spec = {
                .skill = skill,
                .inputs = in,
                .max_price = max_price,
                .deadline_usec = now_usec() + budget_usec,
        };
        uint64_t id = 0;

        cr_assert_eq(requester_submit(requester, &spec, on_done, &o, &id), 0);
        cr_assert_gt(id, 0);
        cr_assert_not(o.done, "done must come from the loop");
        cr_assert(run_until(&o.done, budget_usec + 10 * 1000 * 1000), "no outcome");
        cr_assert_eq(o.calls, 1);
        return o;
}

Test(requester, local_job_is_run_and_verified, .init = hosting, .fini = teardown) {
        struct swarm_values *in = make_inputs(NULL, 100);
        struct outcome o = run_job("testskill", in, 1000, 10 * 1000 * 1000);
        struct requester_stats st;
        struct swarm_tensor y;

        cr_assert_eq(o.status, 0, "%s", o.error);
        cr_assert_str_eq(o.provider, "local");
        cr_assert_eq(o.attempts, 1);
        cr_assert_eq(o.rejected, 0);
        cr_assert_eq(o.price, 100);     /* testskill: one per element */
        cr_assert_eq(swarm_values_get_tensor(o.outputs, "y", &y), 0);
        cr_assert_eq(y.n_elements, 100);
        cr_assert_float_eq(((const float *) y.data)[7], 14.0f, 1e-6);

        cr_assert_eq(requester_get_stats(requester, NULL, "testskill", &st), 0);
        cr_assert_eq(st.successes, 1);
        cr_assert_eq(st.failures, 0);
        cr_assert_gt(st.latency_ewma_usec, 0);
        cr_assert_eq(requester_active_jobs(requester), 0);
        swarm_values_free(o.outputs);
        swarm_values_free(in);
}

Test(requester, wrong_result_is_never_returned, .init = hosting, .fini = teardown) {
        struct swarm_values *in = make_inputs("wrong", 10);
        struct outcome o = run_job("testskill", in, 1000, 10 * 1000 * 1000);
        struct requester_stats st;

        cr_assert_lt(o.status, 0);
        cr_assert_null(o.outputs);
        cr_assert_eq(o.rejected, 1);
        cr_assert_eq(o.attempts, 1);
        cr_assert(strstr(o.error, "all 1 provider failed"), "%s", o.error);
        cr_assert(strstr(o.error, "verification"), "%s", o.error);
        cr_assert_eq(requester_get_stats(requester, NULL, "testskill", &st), 0);
        cr_assert_eq(st.failures, 1);
        cr_assert_eq(st.successes, 0);
        swarm_values_free(in);
}

Test(requester, price_above_max_finds_no_candidate, .init = hosting, .fini = teardown) {
        struct swarm_values *in = make_inputs(NULL, 100);
        struct outcome o = run_job("testskill", in, 99, 10 * 1000 * 1000);

        cr_assert_eq(o.status, -ENOENT);
        cr_assert(strstr(o.error, "at or below max price 99 (1 offers it at all)"), "%s", o.error);
        cr_assert_eq(o.attempts, 0);
        swarm_values_free(in);
}

Test(requester, unknown_skill_is_enoent, .init = hosting, .fini = teardown) {
        struct swarm_values *in = make_inputs(NULL, 4);
        struct outcome o = run_job("nosuchskill", in, 1000, 1000 * 1000);

        cr_assert_eq(o.status, -ENOENT);
        cr_assert(strstr(o.error, "no node offers skill nosuchskill"), "%s", o.error);
        swarm_values_free(in);
}

static void hosting_without_provider(void) {
        start(true, false);
}

Test(requester, no_local_execution_without_a_provider, .init = hosting_without_provider, .fini = teardown) {
        struct swarm_values *in = make_inputs(NULL, 4);
        struct outcome o = run_job("testskill", in, 1000, 1000 * 1000);

        cr_assert_eq(o.status, -ENOENT, "%s", o.error);
        swarm_values_free(in);
}

Test(requester, invalid_inputs_fail_the_job_without_blame, .init = hosting, .fini = teardown) {
        struct swarm_values *in = make_inputs("echo", 0);      /* no x */
        struct outcome o = run_job("testskill", in, 1000, 10 * 1000 * 1000);
        struct requester_stats st = {};

        cr_assert_eq(o.status, -EINVAL, "%d %s", o.status, o.error);
        cr_assert(strstr(o.error, "input x"), "%s", o.error);
        (void) requester_get_stats(requester, NULL, "testskill", &st);
        cr_assert_eq(st.failures, 0);
        swarm_values_free(in);
}

/* A plugin returning INT_MIN: the host negated it (strerror(-status) in
 * the pool, the provider and the requester), which is undefined.  It
 * reads as a protocol error instead.  Found by fuzz-provider. */
Test(requester, a_status_that_is_not_an_errno_fails_the_job_as_a_protocol_error, .init = hosting,
     .fini = teardown) {
        struct swarm_values *in = make_inputs("status", 4);
        struct outcome o;

        cr_assert_eq(swarm_values_set_int(in, "status", INT32_MIN), 0);
        o = run_job("testskill", in, 1000, 10 * 1000 * 1000);
        cr_assert_eq(o.status, -EPROTO, "%d %s", o.status, o.error);
        cr_assert_null(o.outputs);
        swarm_values_free(in);
}

Test(requester, deadline_passes, .init = hosting, .fini = teardown) {
        struct swarm_values *in = make_inputs("sleep", 4);
        uint64_t t0 = now_usec();
        struct outcome o = run_job("testskill", in, 1000, 500 * 1000);

        cr_assert_eq(o.status, -ETIMEDOUT, "%d %s", o.status, o.error);
        cr_assert(strstr(o.error, "deadline passed after 1 attempt"), "%s", o.error);
        cr_assert_lt(now_usec() - t0, 3 * 1000 * 1000);
        swarm_values_free(in);
}

Test(requester, cancel_fails_the_job_from_the_loop, .init = hosting, .fini = teardown) {
        struct swarm_values *in = make_inputs("sleep", 4);
        struct outcome o = {};
        struct job_spec spec = {
                .skill = "testskill", .inputs = in, .max_price = 1000,
                .deadline_usec = now_usec() + 10 * 1000 * 1000,
        };
        uint64_t id, t0 = now_usec();

        cr_assert_eq(requester_submit(requester, &spec, on_done, &o, &id), 0);
        /* Let it reach the worker. */
        while (now_usec() - t0 < 300 * 1000)
                sd_event_run(event, 10 * 1000);
        cr_assert_not(o.done);
        requester_cancel(requester, id);
        cr_assert_not(o.done);
        cr_assert(run_until(&o.done, 5 * 1000 * 1000));
        cr_assert_eq(o.status, -ECANCELED);
        cr_assert_eq(o.calls, 1);
        requester_cancel(requester, id);        /* unknown by now: nothing */
        swarm_values_free(in);
}

Test(requester, free_fails_running_jobs_at_once, .init = hosting, .fini = teardown) {
        struct swarm_values *in = make_inputs("sleep", 4);
        struct outcome o = {};
        struct job_spec spec = {
                .skill = "testskill", .inputs = in, .max_price = 1000,
                .deadline_usec = now_usec() + 10 * 1000 * 1000,
        };
        uint64_t id, t0 = now_usec();

        cr_assert_eq(requester_submit(requester, &spec, on_done, &o, &id), 0);
        while (now_usec() - t0 < 300 * 1000)
                sd_event_run(event, 10 * 1000);
        requester_stop(requester);
        requester = requester_free(requester);
        cr_assert(o.done);
        cr_assert_eq(o.calls, 1);
        cr_assert_eq(o.status, -ESHUTDOWN);
        /* The pool's late callback for the cancelled request finds no job. */
        t0 = now_usec();
        while (now_usec() - t0 < 200 * 1000)
                sd_event_run(event, 10 * 1000);
        swarm_values_free(in);
}

Test(requester, invalid_spec_is_refused, .init = hosting, .fini = teardown) {
        struct job_spec spec = { .skill = "", .max_price = 1 };
        struct outcome o = {};

        cr_assert_eq(requester_submit(requester, &spec, on_done, &o, NULL), -EINVAL);
        spec.skill = "testskill";
        cr_assert_eq(requester_submit(requester, &spec, on_done, &o, NULL), -EINVAL);   /* no inputs */
        cr_assert_not(o.done);
}

static void not_hosting(void) {
        start(false, true);
}

Test(requester, verifier_pool_for_an_unhosted_skill, .init = not_hosting, .fini = teardown) {
        struct skill_pool *p = skills_verifier(skills, "testskill");
        uint64_t end = now_usec() + 10 * 1000 * 1000;

        cr_assert_not_null(p);
        cr_assert_eq(skills_verifier(skills, "testskill"), p);
        cr_assert_null(skills_get(skills, "testskill"));
        cr_assert_eq(skills_count(skills), 0);
        cr_assert_null(skills_verifier(skills, "nosuchskill"));
        cr_assert_null(skills_verifier(skills, "../testskill"));
        while (!skill_pool_info(p) && now_usec() < end)
                sd_event_run(event, 10 * 1000);
        cr_assert_not_null(skill_pool_info(p), "%s", skill_pool_last_error(p) ?: "?");
}

Test(requester, unhosted_skill_without_network_has_no_candidate, .init = not_hosting, .fini = teardown) {
        struct swarm_values *in = make_inputs(NULL, 4);
        struct outcome o = run_job("testskill", in, 1000, 1000 * 1000);

        cr_assert_eq(o.status, -ENOENT, "%s", o.error);
        swarm_values_free(in);
}

/* ---- Remote providers ----------------------------------------------------
 *
 * Two real network nodes in this process on loopback: node 0 hosts
 * testskill behind a real provider and jobs channel; node 1 is the
 * requester, with testskill found in the plugin directory for
 * verification only, or also hosted (a local candidate beside node 0). */

#include "identity.h"
#include "jobs-channel.h"
#include "lending.h"
#include "network.h"
#include "provider.h"

#define MAX_SIZE (4u * 1024u * 1024u)

static struct {
        char state_dir[2][64];
        struct identity *ids[2];
        struct config configs[2];
        struct network *nets[2];
        struct skills *skills[2];
        struct lending *lending;
        struct jobs_channel *channels[2];
        struct provider *provider;
} rn;

static bool remote_ready(void) {
        struct member_info m;

        if (membership_find(network_membership(rn.nets[1]), rn.ids[0]->public_key, &m) < 0)
                return false;
        if (!m.record->lending || m.record->n_skills == 0)
                return false;
        for (size_t i = 0; i < skills_count(rn.skills[0]); i++)
                if (!skill_pool_info(skills_pool(rn.skills[0], i)))
                        return false;
        return true;
}

static void remote_config(struct config *c, const char *seed) {
        cr_assert_eq(config_init(c), 0);
        free(c->network_bind);
        c->network_bind = strdup("tcp://127.0.0.1:0");
        c->network_beacon = false;
        c->network_max_message_size = MAX_SIZE;
        free(c->skills_directory);
        c->skills_directory = strdup(getenv("TEST_PLUGIN_DIR"));
        c->skills_workers = 1;
        c->skills_kill_grace = 500 * 1000;
        c->skills_cgroups = SKILLS_CGROUPS_OFF;
        if (seed) {
                strv_free(c->network_seeds);
                c->network_seeds = calloc(2, sizeof(char *));
                c->network_seeds[0] = strdup(seed);
        }
}

static void remote_start(bool corrupt, bool requester_hosts) {
        char seed[256];
        sigset_t mask;
        uint64_t end;

        cr_assert(getenv("TEST_PLUGIN_DIR") && getenv("SWARM_WORKER"), "run through meson test");
        cr_assert_geq(sodium_init(), 0);
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        cr_assert_eq(sd_event_new(&event), 0);
        for (int i = 0; i < 2; i++) {
                snprintf(rn.state_dir[i], sizeof(rn.state_dir[i]), "/tmp/test-requester-XXXXXX");
                cr_assert_not_null(mkdtemp(rn.state_dir[i]));
                cr_assert_eq(identity_load_or_create(rn.state_dir[i], &rn.ids[i], NULL), 0);
        }

        remote_config(&rn.configs[0], NULL);
        strv_free(rn.configs[0].skills_enabled);
        rn.configs[0].skills_enabled = calloc(2, sizeof(char *));
        rn.configs[0].skills_enabled[0] = strdup("testskill");
        cr_assert_eq(network_new(event, &rn.configs[0], rn.ids[0], &rn.nets[0]), 0);
        cr_assert_eq(skills_new(event, &rn.configs[0], NULL, NULL, &rn.skills[0]), 0);
        cr_assert_eq(lending_new(event, NULL, &rn.configs[0], rn.skills[0], rn.nets[0], &rn.lending), 0);
        cr_assert_eq(jobs_channel_new(rn.nets[0], MAX_SIZE, &rn.channels[0]), 0);
        cr_assert_eq(provider_new(event, rn.nets[0], rn.skills[0], rn.lending, MAX_SIZE, corrupt, &rn.provider), 0);
        provider_attach(rn.provider, rn.channels[0]);

        snprintf(seed, sizeof(seed), "%s@%s", rn.ids[0]->node_id, network_endpoint(rn.nets[0]));
        remote_config(&rn.configs[1], seed);
        if (requester_hosts) {
                strv_free(rn.configs[1].skills_enabled);
                rn.configs[1].skills_enabled = calloc(2, sizeof(char *));
                rn.configs[1].skills_enabled[0] = strdup("testskill");
        }
        cr_assert_eq(network_new(event, &rn.configs[1], rn.ids[1], &rn.nets[1]), 0);
        cr_assert_eq(skills_new(event, &rn.configs[1], NULL, NULL, &rn.skills[1]), 0);
        cr_assert_eq(jobs_channel_new(rn.nets[1], MAX_SIZE, &rn.channels[1]), 0);
        cr_assert_eq(requester_new(event, rn.nets[1], rn.skills[1],
                                   requester_hosts ? (struct provider *) &fake_provider : NULL, MAX_SIZE,
                                   &requester),
                     0);
        requester_attach(requester, rn.channels[1]);

        end = now_usec() + 20 * 1000 * 1000;
        while (!remote_ready()) {
                cr_assert_lt(now_usec(), end, "the nodes did not meet");
                (void) network_update_record(rn.nets[0], rn.skills[0], true);
                if (requester_hosts)
                        (void) network_update_record(rn.nets[1], rn.skills[1], true);
                cr_assert_geq(sd_event_run(event, 50 * 1000), 0);
        }
        if (requester_hosts) {
                end = now_usec() + 10 * 1000 * 1000;
                while (!skill_pool_info(skills_get(rn.skills[1], "testskill"))) {
                        cr_assert_lt(now_usec(), end, "the local worker did not start");
                        cr_assert_geq(sd_event_run(event, 50 * 1000), 0);
                }
                (void) network_update_record(rn.nets[1], rn.skills[1], true);
        }
}

static void remote_stop(void) {
        char cmd[128];

        requester_attach(NULL, rn.channels[1]);
        requester_stop(requester);
        requester = requester_free(requester);
        for (int i = 0; i < 2; i++)
                rn.channels[i] = jobs_channel_free(rn.channels[i]);
        provider_stop(rn.provider);
        rn.provider = provider_free(rn.provider);
        lending_stop(rn.lending);
        rn.lending = lending_free(rn.lending);
        for (int i = 0; i < 2; i++) {
                rn.nets[i] = network_free(rn.nets[i]);
                rn.skills[i] = skills_free(rn.skills[i]);
                identity_free(rn.ids[i]);
                rn.ids[i] = NULL;
                config_done(&rn.configs[i]);
                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", rn.state_dir[i]);
                (void) system(cmd);
        }
        event = sd_event_unref(event);
}

static void honest_remote(void) {
        remote_start(false, false);
}

static void lying_remote(void) {
        remote_start(true, false);
}

static void lying_remote_and_local(void) {
        remote_start(true, true);
}

Test(requester_remote, job_runs_on_the_provider_and_is_verified, .init = honest_remote, .fini = remote_stop,
     .timeout = 60) {
        struct swarm_values *in = make_inputs(NULL, 64);
        struct outcome o = run_job("testskill", in, 1000, 10 * 1000 * 1000);
        struct requester_stats st;
        struct swarm_tensor y;

        cr_assert_eq(o.status, 0, "%s", o.error);
        cr_assert_str_eq(o.provider, rn.ids[0]->node_id);
        cr_assert_eq(o.attempts, 1);
        cr_assert_eq(o.price, 64);
        cr_assert_eq(swarm_values_get_tensor(o.outputs, "y", &y), 0);
        cr_assert_float_eq(((const float *) y.data)[63], 126.0f, 1e-6);
        cr_assert_eq(requester_get_stats(requester, rn.ids[0]->public_key, "testskill", &st), 0);
        cr_assert_eq(st.successes, 1);
        swarm_values_free(o.outputs);

        /* A refusal for a bad job fails it, without blaming the provider. */
        swarm_values_free(in);
        in = make_inputs("echo", 0);
        o = run_job("testskill", in, 1000, 10 * 1000 * 1000);
        cr_assert_eq(o.status, -EINVAL, "%d %s", o.status, o.error);
        cr_assert_eq(requester_get_stats(requester, rn.ids[0]->public_key, "testskill", &st), 0);
        cr_assert_eq(st.failures, 0);
        swarm_values_free(in);
}

Test(requester_remote, lying_provider_is_rejected, .init = lying_remote, .fini = remote_stop, .timeout = 60) {
        struct swarm_values *in = make_inputs(NULL, 16);
        struct outcome o = run_job("testskill", in, 1000, 10 * 1000 * 1000);
        struct requester_stats st;

        cr_assert_lt(o.status, 0);
        cr_assert_null(o.outputs);
        cr_assert_eq(o.rejected, 1);
        cr_assert(strstr(o.error, "verification"), "%s", o.error);
        cr_assert_eq(requester_get_stats(requester, rn.ids[0]->public_key, "testskill", &st), 0);
        cr_assert_eq(st.failures, 1);
        swarm_values_free(in);
}

/* Small values: the router always explores (its uniform draw is 0) and
 * picks among the under-sampled by the counter; job ids stay distinct. */
static uint64_t counter_rng(void *userdata) {
        return (*(uint64_t *) userdata)++;
}

Test(requester_remote, lying_provider_is_rerouted_around, .init = lying_remote_and_local, .fini = remote_stop,
     .timeout = 60) {
        struct swarm_values *in = make_inputs(NULL, 16);
        struct requester_stats st;
        unsigned rejected = 0;
        uint64_t counter = 1;

        requester_set_random(requester, counter_rng, &counter);
        /* Whichever the router tries first, only the honest (local) result
         * comes back; the liar is asked at most once per job. */
        for (int i = 0; i < 6; i++) {
                struct outcome o = run_job("testskill", in, 1000, 10 * 1000 * 1000);

                cr_assert_eq(o.status, 0, "%s", o.error);
                cr_assert_str_eq(o.provider, "local");
                cr_assert_leq(o.rejected, 1);
                cr_assert_eq(o.attempts, 1 + o.rejected);
                rejected += o.rejected;
                swarm_values_free(o.outputs);
        }
        cr_assert_geq(rejected, 1, "the lying provider was never tried");
        cr_assert_eq(requester_get_stats(requester, rn.ids[0]->public_key, "testskill", &st), 0);
        cr_assert_eq(st.failures, rejected);
        cr_assert_eq(st.successes, 0);
        swarm_values_free(in);
}

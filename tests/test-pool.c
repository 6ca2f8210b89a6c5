/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The skill worker pool against real swarm-worker processes hosting
 * tests/plugins/testskill.c, which crashes, hangs or lies on request. */

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "shm.h"
#include "skill-pool.h"

static sd_event *event;
static struct skill_pool *pool;
static struct swarm_values *skill_config;

struct outcome {
        bool done;
        int status;
        char error[256];
        struct swarm_values *outputs;
        uint64_t price;
        pid_t pid;
};

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static char *plugin(const char *name) {
        static char path[4096];
        const char *dir = getenv("TEST_PLUGIN_DIR");

        cr_assert(dir, "TEST_PLUGIN_DIR not set (run through meson test)");
        snprintf(path, sizeof(path), "%s/%s.so", dir, name);
        return path;
}

static void setup(void) {
        sigset_t mask;

        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        cr_assert_eq(sd_event_new(&event), 0);
        skill_config = swarm_values_new();
}

static void teardown(void) {
        pool = skill_pool_free(pool);
        event = sd_event_unref(event);
        swarm_values_free(skill_config);
}

static int start_pool_with(const char *plugin_name, unsigned workers, unsigned queue_max, uint64_t grace) {
        struct skill_pool_config c = {
                .name = "testskill",
                .plugin_path = plugin(plugin_name),
                .worker_path = getenv("SWARM_WORKER"),
                .workers = workers,
                .queue_max = queue_max,
                .kill_grace_usec = grace,
                .restart_min_usec = 20 * 1000,
                .restart_max_usec = 200 * 1000,
                .skill_config = skill_config,
        };

        cr_assert(c.worker_path, "SWARM_WORKER not set");
        return skill_pool_new(event, &c, &pool);
}

/* Runs the loop until *flag or the timeout; true when flag became set. */
static bool run_until(const bool *flag, uint64_t timeout_usec) {
        uint64_t end = now_usec() + timeout_usec;

        while (!*flag && now_usec() < end)
                cr_assert_geq(sd_event_run(event, 10 * 1000), 0);
        return *flag;
}

static void wait_ready(void) {
        uint64_t end = now_usec() + 10 * 1000 * 1000;

        while (skill_pool_workers_alive(pool) == 0 && now_usec() < end)
                sd_event_run(event, 10 * 1000);
        cr_assert_gt(skill_pool_workers_alive(pool), 0, "no worker came up: %s",
                     skill_pool_last_error(pool) ?: "?");
}

static void on_done(struct pool_request *req, struct pool_result *res, void *userdata) {
        struct outcome *o = userdata;

        o->done = true;
        o->status = res->status;
        o->price = res->price;
        snprintf(o->error, sizeof(o->error), "%s", res->error ?: "");
        o->outputs = TAKE_PTR(res->outputs);
}

static struct swarm_values *make_inputs(const char *mode, uint64_t n) {
        struct swarm_values *v = swarm_values_new();
        struct swarm_tensor t;

        swarm_values_set_allocator(v, shm_allocate, NULL);
        cr_assert_eq(swarm_values_set_string(v, "mode", mode), 0);
        cr_assert_eq(swarm_values_add_tensor(v, "x", SWARM_DTYPE_F32, 1, &n, &t), 0);
        for (uint64_t i = 0; i < n; i++)
                ((float *) t.data)[i] = (float) i;
        return v;
}

static struct outcome submit(enum pool_op op, const struct swarm_values *in, uint64_t deadline_in,
                             struct pool_request **req_out) {
        struct outcome o = {};
        struct pool_request *req;
        int r;

        r = skill_pool_submit(pool, op, in, NULL, NULL, deadline_in ? now_usec() + deadline_in : 0,
                              on_done, &o, &req);
        cr_assert_eq(r, 0, "submit failed: %s", strerror(-r));
        if (req_out)
                *req_out = req;
        cr_assert(run_until(&o.done, 15 * 1000 * 1000), "request did not complete");
        return o;
}

TestSuite(pool, .init = setup, .fini = teardown, .timeout = 60);

struct chunks {
        char text[64];
        unsigned n, others;
        bool after_done;
        const bool *done;
};

static void on_chunk(struct pool_request *req, const char *name, const void *data, size_t size, void *userdata) {
        struct chunks *c = userdata;

        c->n++;
        if (*c->done)
                c->after_done = true;
        if (strcmp(name, "text") == 0)
                strncat(c->text, data, size < sizeof(c->text) - strlen(c->text) - 1 ? size
                                                                                      : sizeof(c->text) - strlen(c->text) - 1);
        else
                c->others++;
}

Test(pool, a_result_too_large_for_the_protocol_fails_the_job_not_the_worker) {
        struct swarm_values *big = make_inputs("bigtext", 4), *ok = make_inputs("echo", 4);
        struct outcome o;

        cr_assert_eq(start_pool_with("testskill", 1, 0, 0), 0);
        wait_ready();
        o = submit(POOL_EXECUTE, big, 0, NULL);
        cr_assert_eq(o.status, -E2BIG, "%s", o.error);
        cr_assert(strstr(o.error, "worker protocol"), "%s", o.error);
        o = submit(POOL_EXECUTE, ok, 0, NULL);
        cr_assert_eq(o.status, 0, "%s", o.error);
        swarm_values_free(o.outputs);
        cr_assert_eq(skill_pool_restarts(pool), 0, "the worker was restarted");
        swarm_values_free(big);
        swarm_values_free(ok);
}

Test(pool, chunks_an_executing_skill_emits_arrive_in_order_before_the_result) {
        struct swarm_values *in = make_inputs("stream", 4);
        struct outcome o = {};
        struct chunks c = { .done = &o.done };
        struct pool_request *req;

        cr_assert_eq(start_pool_with("testskill", 1, 0, 0), 0);
        wait_ready();
        cr_assert_eq(skill_pool_submit(pool, POOL_EXECUTE, in, NULL, NULL, 0, on_done, &o, &req), 0);
        skill_pool_request_on_chunk(req, on_chunk, &c);
        cr_assert(run_until(&o.done, 15 * 1000 * 1000));
        cr_assert_eq(o.status, 0, "%s", o.error);
        cr_assert_str_eq(c.text, "one two three");
        cr_assert_eq(c.others, 1);
        cr_assert_eq(c.n, 4);
        cr_assert_not(c.after_done);
        swarm_values_free(o.outputs);

        /* Without a listener the same job runs and its chunks are dropped. */
        o = submit(POOL_EXECUTE, in, 0, NULL);
        cr_assert_eq(o.status, 0, "%s", o.error);
        swarm_values_free(o.outputs);
        swarm_values_free(in);
}

Test(pool, executes_and_returns_outputs_in_shared_memory) {
        struct swarm_values *in = make_inputs("echo", 1 << 18);   /* 1 MiB */
        struct swarm_tensor y;
        struct outcome o;

        cr_assert_eq(start_pool_with("testskill", 1, 0, 0), 0);
        wait_ready();
        cr_assert_not_null(skill_pool_info(pool));
        cr_assert_str_eq(skill_pool_info(pool)->name, "testskill");

        o = submit(POOL_EXECUTE, in, 0, NULL);
        cr_assert_eq(o.status, 0, "%s", o.error);
        cr_assert_eq(swarm_values_get_tensor(o.outputs, "y", &y), 0);
        cr_assert_eq(y.n_elements, 1u << 18);
        cr_assert_float_eq(((float *) y.data)[12345], 24690.0f, 0.0f);
        /* Zero-copy: the worker's memfd, mapped here. */
        cr_assert_not_null(shm_block_of(o.outputs, "y"));
        swarm_values_free(o.outputs);
        swarm_values_free(in);
}

Test(pool, price_and_verify) {
        struct swarm_values *in = make_inputs("echo", 100), *bad = make_inputs("wrong", 100);
        struct outcome o, good_run, bad_run;

        cr_assert_eq(start_pool_with("testskill", 1, 0, 0), 0);
        o = submit(POOL_PRICE, in, 0, NULL);
        cr_assert_eq(o.status, 0);
        cr_assert_eq(o.price, 100);

        good_run = submit(POOL_EXECUTE, in, 0, NULL);
        bad_run = submit(POOL_EXECUTE, bad, 0, NULL);
        cr_assert_eq(good_run.status, 0);
        cr_assert_eq(bad_run.status, 0);

        o = (struct outcome) {};
        cr_assert_eq(skill_pool_submit(pool, POOL_VERIFY, in, good_run.outputs, NULL, 0, on_done, &o, NULL), 0);
        cr_assert(run_until(&o.done, 5000000));
        cr_assert_eq(o.status, 0, "%s", o.error);

        o = (struct outcome) {};
        cr_assert_eq(skill_pool_submit(pool, POOL_VERIFY, bad, bad_run.outputs, NULL, 0, on_done, &o, NULL), 0);
        cr_assert(run_until(&o.done, 5000000));
        cr_assert_eq(o.status, -EBADMSG);
        cr_assert(strstr(o.error, "y[0] is wrong"), "error: %s", o.error);

        swarm_values_free(good_run.outputs);
        swarm_values_free(bad_run.outputs);
        swarm_values_free(in);
        swarm_values_free(bad);
}

Test(pool, plugin_error_reaches_the_requester) {
        struct swarm_values *in = swarm_values_new();
        struct outcome o;

        cr_assert_eq(start_pool_with("testskill", 1, 0, 0), 0);
        o = submit(POOL_EXECUTE, in, 0, NULL);
        cr_assert_eq(o.status, -EINVAL);
        cr_assert_str_eq(o.error, "input x (f32 tensor) is missing");
        swarm_values_free(in);
}

Test(pool, crash_fails_only_that_job_and_worker_restarts) {
        struct swarm_values *crash = make_inputs("crash", 4), *slow = make_inputs("sleep", 4),
                *echo = make_inputs("echo", 4);
        struct outcome crashed = {}, slept = {}, after;

        cr_assert_eq(start_pool_with("testskill", 2, 0, 0), 0);
        wait_ready();
        /* The other worker's job survives the crash: it ends only at its deadline. */
        cr_assert_eq(skill_pool_submit(pool, POOL_EXECUTE, slow, NULL, NULL, now_usec() + 300 * 1000,
                                       on_done, &slept, NULL), 0);
        cr_assert_eq(skill_pool_submit(pool, POOL_EXECUTE, crash, NULL, NULL, 0, on_done, &crashed, NULL), 0);
        cr_assert(run_until(&crashed.done, 10000000));
        cr_assert_eq(crashed.status, -ECONNABORTED);
        cr_assert(strstr(crashed.error, "SIGSEGV"), "error: %s", crashed.error);
        cr_assert_not(slept.done, "the other worker's job was disturbed by the crash");

        cr_assert(run_until(&slept.done, 10000000));
        cr_assert_eq(slept.status, -ETIMEDOUT, "%s", slept.error);

        after = submit(POOL_EXECUTE, echo, 0, NULL);
        cr_assert_eq(after.status, 0, "%s", after.error);
        cr_assert_eq(skill_pool_restarts(pool), 1);
        swarm_values_free(after.outputs);
        swarm_values_free(crash);
        swarm_values_free(slow);
        swarm_values_free(echo);
}

Test(pool, exit_is_reported_with_status) {
        struct swarm_values *in = make_inputs("exit", 4);
        struct outcome o;

        cr_assert_eq(start_pool_with("testskill", 1, 0, 0), 0);
        o = submit(POOL_EXECUTE, in, 0, NULL);
        cr_assert_eq(o.status, -ECONNABORTED);
        cr_assert(strstr(o.error, "exited with status 3"), "error: %s", o.error);
        swarm_values_free(in);
}

Test(pool, deadline_cancels_a_cooperative_job_without_killing) {
        struct swarm_values *in = make_inputs("sleep", 4), *echo = make_inputs("echo", 4);
        struct outcome o;
        uint64_t start = now_usec();

        cr_assert_eq(start_pool_with("testskill", 1, 0, 5 * 1000 * 1000), 0);
        wait_ready();
        o = submit(POOL_EXECUTE, in, 100 * 1000, NULL);
        cr_assert_eq(o.status, -ETIMEDOUT);
        cr_assert(strstr(o.error, "deadline"), "error: %s", o.error);
        /* Well before the 5 s grace: the flag stopped it, not SIGKILL. */
        cr_assert_lt(now_usec() - start, 3 * 1000 * 1000);
        o = submit(POOL_EXECUTE, echo, 0, NULL);
        cr_assert_eq(o.status, 0);
        cr_assert_eq(skill_pool_restarts(pool), 0);
        swarm_values_free(o.outputs);
        swarm_values_free(in);
        swarm_values_free(echo);
}

static int count_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        (*(unsigned *) userdata)++;
        (void) sd_event_source_set_time_relative(s, 10 * 1000);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

Test(pool, hung_job_is_killed_after_grace_and_loop_keeps_running) {
        struct swarm_values *in = make_inputs("hang", 4), *echo = make_inputs("echo", 4);
        sd_event_source *tick = NULL;
        unsigned ticks = 0;
        struct outcome o;

        cr_assert_eq(start_pool_with("testskill", 1, 0, 200 * 1000), 0);
        wait_ready();
        cr_assert_eq(sd_event_add_time_relative(event, &tick, CLOCK_MONOTONIC, 10 * 1000, 0, count_tick, &ticks), 0);
        o = submit(POOL_EXECUTE, in, 100 * 1000, NULL);
        cr_assert_eq(o.status, -ETIMEDOUT);
        cr_assert(strstr(o.error, "worker was killed"), "error: %s", o.error);
        /* ~300 ms passed; a blocked loop would have missed the 10 ms ticks. */
        cr_assert_geq(ticks, 10, "event loop was blocked: %u ticks", ticks);
        sd_event_source_disable_unref(tick);

        o = submit(POOL_EXECUTE, echo, 0, NULL);
        cr_assert_eq(o.status, 0, "%s", o.error);
        swarm_values_free(o.outputs);
        swarm_values_free(in);
        swarm_values_free(echo);
}

Test(pool, cancel_queued_and_running) {
        struct swarm_values *slow = make_inputs("sleep", 4);
        struct outcome running = {}, queued = {};
        struct pool_request *r1, *r2;

        cr_assert_eq(start_pool_with("testskill", 1, 0, 0), 0);
        wait_ready();
        cr_assert_eq(skill_pool_submit(pool, POOL_EXECUTE, slow, NULL, NULL, 0, on_done, &running, &r1), 0);
        cr_assert_eq(skill_pool_submit(pool, POOL_EXECUTE, slow, NULL, NULL, 0, on_done, &queued, &r2), 0);
        cr_assert_eq(skill_pool_queued(pool), 1);
        pool_request_cancel(r2);
        cr_assert(queued.done);
        cr_assert_eq(queued.status, -ECANCELED);

        sd_event_run(event, 50 * 1000);
        cr_assert_gt(pool_request_worker_pid(r1), 0);
        pool_request_cancel(r1);
        cr_assert(run_until(&running.done, 5000000));
        cr_assert_eq(running.status, -ECANCELED);
        swarm_values_free(slow);
}

Test(pool, queue_limit) {
        struct swarm_values *slow = make_inputs("sleep", 4);
        struct outcome o[3] = {};
        struct pool_request *r;

        cr_assert_eq(start_pool_with("testskill", 1, 1, 0), 0);
        wait_ready();
        cr_assert_eq(skill_pool_submit(pool, POOL_EXECUTE, slow, NULL, NULL, 0, on_done, &o[0], &r), 0);
        cr_assert_eq(skill_pool_submit(pool, POOL_EXECUTE, slow, NULL, NULL, 0, on_done, &o[1], NULL), 0);
        cr_assert_eq(skill_pool_submit(pool, POOL_EXECUTE, slow, NULL, NULL, 0, on_done, &o[2], NULL), -EBUSY);
        pool_request_cancel(r);
        cr_assert(run_until(&o[0].done, 5000000));
        swarm_values_free(slow);
}

Test(pool, failed_init_is_reported_and_retried) {
        uint64_t end = now_usec() + 5 * 1000 * 1000;

        cr_assert_eq(swarm_values_set_int(skill_config, "fail-init", 1), 0);
        cr_assert_eq(start_pool_with("testskill", 1, 0, 0), 0);
        while (skill_pool_restarts(pool) < 2 && now_usec() < end)
                sd_event_run(event, 10 * 1000);
        cr_assert_geq(skill_pool_restarts(pool), 2, "init failure was not retried");
        cr_assert_null(skill_pool_info(pool));
        cr_assert(strstr(skill_pool_last_error(pool) ?: "", "init() of skill testskill failed"),
                  "last error: %s", skill_pool_last_error(pool) ?: "(none)");
}

Test(pool, abi_mismatch_is_refused_with_a_clear_message) {
        uint64_t end = now_usec() + 5 * 1000 * 1000;

        cr_assert_eq(start_pool_with("badabi", 1, 0, 0), 0);
        while (!skill_pool_last_error(pool) && now_usec() < end)
                sd_event_run(event, 10 * 1000);
        cr_assert_null(skill_pool_info(pool));
        cr_assert(strstr(skill_pool_last_error(pool) ?: "", "skill ABI 2.0, but this host runs ABI 1.x"),
                  "last error: %s", skill_pool_last_error(pool) ?: "(none)");
}

Test(pool, shutdown_fails_outstanding_requests) {
        struct swarm_values *slow = make_inputs("sleep", 4);
        struct outcome a = {}, b = {};

        cr_assert_eq(start_pool_with("testskill", 1, 0, 0), 0);
        wait_ready();
        cr_assert_eq(skill_pool_submit(pool, POOL_EXECUTE, slow, NULL, NULL, 0, on_done, &a, NULL), 0);
        cr_assert_eq(skill_pool_submit(pool, POOL_EXECUTE, slow, NULL, NULL, 0, on_done, &b, NULL), 0);
        sd_event_run(event, 20 * 1000);
        pool = skill_pool_free(pool);
        cr_assert(a.done && b.done);
        cr_assert_eq(a.status, -ESHUTDOWN);
        cr_assert_eq(b.status, -ESHUTDOWN);
        swarm_values_free(slow);
}

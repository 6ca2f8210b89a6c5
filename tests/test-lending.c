/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The lending switch.  Four suites:
 *   lending_pure     the schedule parser, windows at their boundaries and
 *                    across midnight, and the policy verdicts;
 *   lending_policy   the object without jobs: policies, schedule, reasons,
 *                    the changed callback;
 *   lending_logind   the idle policy against a fake logind on a private
 *                    dbus-daemon (skipped where dbus-daemon is missing);
 *   lending_jobs     real swarm-worker processes hosting testskill in mode
 *                    "sleep": freeze (signals, and the cgroup freezer as
 *                    root where cgroup2 is writable), kill and finish;
 *   lending_memory   lending.release_device_memory with a fake NVML
 *                    (tests/fake-nvml.c, loaded through SWARM_NVML_LIBRARY)
 *                    that says the workers hold GPU memory: freeze first,
 *                    release after the grace period, start again on
 *                    resume; and the idle policy's GPU check against the
 *                    same fake.
 *
 * Every wait is bounded; teardown stops the workers and the bus daemon and
 * removes the scratch cgroup even when an assertion failed. */

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "config.h"
#include "idle-backends.h"
#include "lending.h"
#include "macro.h"
#include "shm.h"
#include "skill-pool.h"
#include "skills.h"

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

/* ---- Pure ---- */

static struct lending_window parse_ok(const char *s) {
        struct lending_window w;
        char error[256] = "";
        int r = lending_window_parse(s, &w, error, sizeof(error));

        cr_assert_eq(r, 0, "\"%s\" was rejected: %s", s, error);
        return w;
}

static void parse_fails(const char *s, const char *expect) {
        struct lending_window w;
        char error[256] = "";

        cr_assert_eq(lending_window_parse(s, &w, error, sizeof(error)), -EINVAL, "\"%s\" was accepted", s);
        cr_assert(strstr(error, expect), "error for \"%s\" is \"%s\", expected it to mention \"%s\"", s, error,
                  expect);
}

/* wday: 0 = Sunday. */
static struct tm at(int wday, int hour, int minute) {
        return (struct tm) { .tm_wday = wday, .tm_hour = hour, .tm_min = minute, .tm_sec = 59 };
}

static bool in(const struct lending_window *w, int wday, int hour, int minute) {
        struct tm tm = at(wday, hour, minute);
        return lending_windows_contain(w, 1, &tm);
}

enum { SUN, MON, TUE, WED, THU, FRI, SAT };

Test(lending_pure, parses_days_and_times) {
        struct lending_window w;

        w = parse_ok("22:00-07:00");
        cr_assert_eq(w.days, 0x7f);
        cr_assert_eq(w.start_minute, 22 * 60);
        cr_assert_eq(w.end_minute, 7 * 60);

        w = parse_ok("mon-fri 09:30-17:45");
        cr_assert_eq(w.days, 0x3e);
        cr_assert_eq(w.start_minute, 9 * 60 + 30);
        cr_assert_eq(w.end_minute, 17 * 60 + 45);

        cr_assert_eq(parse_ok("sat,sun 00:00-24:00").days, (1 << SAT) | (1 << SUN));
        cr_assert_eq(parse_ok("sat,sun 00:00-24:00").end_minute, 24 * 60);
        cr_assert_eq(parse_ok("daily 01:00-02:00").days, 0x7f);
        cr_assert_eq(parse_ok("  Mon,wed-thu   01:00-02:00 ").days, (1 << MON) | (1 << WED) | (1 << THU));
        /* A range may wrap around the week. */
        cr_assert_eq(parse_ok("fri-mon 01:00-02:00").days, (1 << FRI) | (1 << SAT) | (1 << SUN) | (1 << MON));
}

Test(lending_pure, rejects_malformed_windows_with_a_reason) {
        parse_fails("", "empty");
        parse_fails("22:00", "HH:MM-HH:MM");
        parse_fails("weekdays 01:00-02:00", "\"weekdays\" is not a day");
        parse_fails("mon-xyz 01:00-02:00", "is not a day");
        parse_fails("mon, 01:00-02:00", "comma");
        parse_fails("1:00-02:00", "\"1:00\" is not a time");
        parse_fails("01:00-2:00", "\"2:00\" is not a time");
        parse_fails("01:60-02:00", "not a time of day");
        parse_fails("25:00-02:00", "not a time of day");
        parse_fails("24:00-02:00", "24:00 may only end a window");
        parse_fails("01:00-24:01", "not a time of day");
        parse_fails("mon-fri 01:00-02:00 extra", "is not a time");
}

Test(lending_pure, window_start_is_inclusive_and_end_exclusive) {
        struct lending_window w = parse_ok("mon-fri 09:00-17:00");

        cr_assert_not(in(&w, MON, 8, 59));
        cr_assert(in(&w, MON, 9, 0));
        cr_assert(in(&w, MON, 16, 59));
        cr_assert_not(in(&w, MON, 17, 0));
        cr_assert(in(&w, FRI, 12, 0));
        cr_assert_not(in(&w, SAT, 12, 0));
        cr_assert_not(in(&w, SUN, 9, 0));
}

Test(lending_pure, whole_day_ends_at_midnight) {
        struct lending_window w = parse_ok("sat,sun 00:00-24:00");

        cr_assert_not(in(&w, FRI, 23, 59));
        cr_assert(in(&w, SAT, 0, 0));
        cr_assert(in(&w, SUN, 23, 59));
        cr_assert_not(in(&w, MON, 0, 0));
}

Test(lending_pure, night_window_crosses_midnight_into_the_next_day) {
        /* Friday 22:00 to Saturday 07:00 belongs to Friday; Saturday night
         * is not listed, and Monday's early morning belongs to no window. */
        struct lending_window w = parse_ok("mon-fri 22:00-07:00");

        cr_assert_not(in(&w, MON, 21, 59));
        cr_assert(in(&w, MON, 22, 0));
        cr_assert(in(&w, MON, 23, 59));
        cr_assert(in(&w, TUE, 0, 0));
        cr_assert(in(&w, TUE, 6, 59));
        cr_assert_not(in(&w, TUE, 7, 0));
        cr_assert(in(&w, FRI, 23, 0));
        cr_assert(in(&w, SAT, 6, 59));
        cr_assert_not(in(&w, SAT, 22, 0));
        cr_assert_not(in(&w, SUN, 23, 0));
        cr_assert_not(in(&w, MON, 3, 0));
        cr_assert_not(in(&w, MON, 7, 0));
}

Test(lending_pure, equal_start_and_end_is_a_full_day_from_start) {
        struct lending_window w = parse_ok("wed 12:00-12:00");

        cr_assert_not(in(&w, WED, 11, 59));
        cr_assert(in(&w, WED, 12, 0));
        cr_assert(in(&w, THU, 11, 59));
        cr_assert_not(in(&w, THU, 12, 0));
}

Test(lending_pure, any_of_several_windows) {
        struct lending_window w[2] = { parse_ok("mon-fri 22:00-07:00"), parse_ok("sat,sun 00:00-24:00") };
        struct tm tm;

        tm = at(SAT, 12, 0);
        cr_assert(lending_windows_contain(w, 2, &tm));
        tm = at(WED, 3, 0);
        cr_assert(lending_windows_contain(w, 2, &tm));
        tm = at(WED, 12, 0);
        cr_assert_not(lending_windows_contain(w, 2, &tm));
        cr_assert_not(lending_windows_contain(w, 0, &tm));
}

Test(lending_pure, policy_verdicts) {
        struct lending_inputs idle = { .session_idle = true }, active = { .session_idle = false },
                              idle_gpu = { .session_idle = true, .gpu_busy = true },
                              scheduled = { .in_schedule = true }, off = {};

        cr_assert(lending_decide(LENDING_POLICY_ALWAYS, true, &active));
        cr_assert_not(lending_decide(LENDING_POLICY_NEVER, true, &idle));
        cr_assert(lending_decide(LENDING_POLICY_IDLE, true, &idle));
        cr_assert_not(lending_decide(LENDING_POLICY_IDLE, true, &active));
        cr_assert_not(lending_decide(LENDING_POLICY_IDLE, true, &idle_gpu));
        cr_assert(lending_decide(LENDING_POLICY_IDLE, false, &idle_gpu));
        cr_assert(lending_decide(LENDING_POLICY_SCHEDULE, true, &scheduled));
        cr_assert_not(lending_decide(LENDING_POLICY_SCHEDULE, true, &off));
}

#define SEC (1000u * 1000u)

Test(lending_pure, release_setting_parses_and_rejects_with_a_reason) {
        uint64_t usec = 1;
        char error[256] = "";

        cr_assert_eq(config_parse_release("immediately", &usec, error, sizeof(error)), 0);
        cr_assert_eq(usec, 0);
        cr_assert_eq(config_parse_release("never", &usec, error, sizeof(error)), 0);
        cr_assert_eq(usec, CONFIG_RELEASE_NEVER);
        cr_assert_eq(config_parse_release("after 10s", &usec, error, sizeof(error)), 0);
        cr_assert_eq(usec, 10 * SEC);
        cr_assert_eq(config_parse_release("after 2min", &usec, error, sizeof(error)), 0);
        cr_assert_eq(usec, 120 * (uint64_t) SEC);
        cr_assert_eq(config_parse_release("after 250ms", &usec, error, sizeof(error)), 0);
        cr_assert_eq(usec, 250 * 1000);
        cr_assert_eq(config_parse_release(CONFIG_RELEASE_DEFAULT, &usec, error, sizeof(error)), 0);

        cr_assert_eq(config_parse_release("later", &usec, error, sizeof(error)), -EINVAL);
        cr_assert(strstr(error, "\"immediately\", \"after DURATION\""), "%s", error);
        cr_assert_eq(config_parse_release("after soon", &usec, error, sizeof(error)), -EINVAL);
        cr_assert(strstr(error, "\"soon\" is not a duration"), "%s", error);
        cr_assert_eq(config_parse_release("after", &usec, error, sizeof(error)), -EINVAL);
        cr_assert_eq(config_parse_release("10s", &usec, error, sizeof(error)), -EINVAL);
}

Test(lending_pure, memory_is_held_during_the_grace_period_then_released_and_restored) {
        struct lending_memory m;

        lending_memory_init(&m, 10 * SEC);
        cr_assert_eq(lending_memory_deadline(&m), UINT64_MAX, "lending: nothing to release");
        cr_assert_not(lending_memory_due(&m, 1000 * SEC));

        lending_memory_stop(&m, 100 * SEC);
        cr_assert_eq(m.state, LENDING_MEMORY_GRACE);
        cr_assert_eq(lending_memory_deadline(&m), 110 * SEC);
        cr_assert_not(lending_memory_due(&m, 110 * SEC - 1));
        cr_assert_eq(m.state, LENDING_MEMORY_GRACE);
        cr_assert(lending_memory_due(&m, 110 * SEC));
        cr_assert_eq(m.state, LENDING_MEMORY_RELEASED);
        cr_assert_not(lending_memory_due(&m, 200 * SEC), "released once");

        /* Stopping again while released changes nothing. */
        lending_memory_stop(&m, 300 * SEC);
        cr_assert_eq(m.state, LENDING_MEMORY_RELEASED);

        cr_assert(lending_memory_start(&m), "released workers start again on resume");
        cr_assert_eq(m.state, LENDING_MEMORY_HELD);
        cr_assert_not(lending_memory_start(&m));
}

Test(lending_pure, lending_again_within_the_grace_period_keeps_the_memory) {
        struct lending_memory m;

        lending_memory_init(&m, 10 * SEC);
        lending_memory_stop(&m, 0);
        cr_assert_not(lending_memory_start(&m), "nothing was released");
        cr_assert_eq(lending_memory_deadline(&m), UINT64_MAX);
        cr_assert_not(lending_memory_due(&m, 20 * SEC));
}

Test(lending_pure, immediately_releases_at_the_stop_and_never_not_at_all) {
        struct lending_memory m;

        lending_memory_init(&m, 0);
        lending_memory_stop(&m, 5 * SEC);
        cr_assert(lending_memory_due(&m, 5 * SEC));

        lending_memory_init(&m, CONFIG_RELEASE_NEVER);
        lending_memory_stop(&m, 5 * SEC);
        cr_assert_eq(m.state, LENDING_MEMORY_HELD);
        cr_assert_eq(lending_memory_deadline(&m), UINT64_MAX);
        cr_assert_not(lending_memory_due(&m, UINT64_MAX - 1));
        cr_assert_not(lending_memory_start(&m));
}

Test(lending_pure, a_new_setting_applies_to_the_grace_period_under_way) {
        struct lending_memory m;

        lending_memory_init(&m, 60 * SEC);
        lending_memory_stop(&m, 100 * SEC);
        /* Shorter: counted from the stop, so it may be over at once. */
        lending_memory_set_after(&m, 10 * SEC, 130 * SEC);
        cr_assert_eq(lending_memory_deadline(&m), 110 * SEC);
        cr_assert(lending_memory_due(&m, 130 * SEC));

        /* never while in grace: held; then a duration again: from now. */
        lending_memory_init(&m, 60 * SEC);
        lending_memory_stop(&m, 100 * SEC);
        lending_memory_set_after(&m, CONFIG_RELEASE_NEVER, 101 * SEC);
        cr_assert_eq(m.state, LENDING_MEMORY_HELD);
        lending_memory_set_after(&m, 10 * SEC, 200 * SEC);
        cr_assert_eq(lending_memory_deadline(&m), 210 * SEC);

        /* While lending, a setting only waits for the next stop. */
        lending_memory_init(&m, 60 * SEC);
        lending_memory_set_after(&m, 0, 5 * SEC);
        cr_assert_eq(lending_memory_deadline(&m), UINT64_MAX);
        lending_memory_stop(&m, 7 * SEC);
        cr_assert(lending_memory_due(&m, 7 * SEC));
}

Test(lending_pure, workers_woken_while_released_get_a_new_grace_period) {
        struct lending_memory m;

        lending_memory_init(&m, 10 * SEC);
        lending_memory_stop(&m, 0);
        cr_assert(lending_memory_due(&m, 10 * SEC));
        lending_memory_woken(&m, 50 * SEC);
        cr_assert_eq(m.state, LENDING_MEMORY_GRACE);
        cr_assert_eq(lending_memory_deadline(&m), 60 * SEC);
        cr_assert(lending_memory_due(&m, 60 * SEC));

        /* Lending: a wake-up is no grace period. */
        cr_assert(lending_memory_start(&m));
        lending_memory_woken(&m, 70 * SEC);
        cr_assert_eq(m.state, LENDING_MEMORY_HELD);
}

/* ---- The object ---- */

static sd_event *event;
static struct config config;
static struct lending *lending;
static unsigned n_changed;

static void on_changed(struct lending *l, void *userdata) {
        n_changed++;
}

static void setup(void) {
        sigset_t mask;

        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        cr_assert_eq(sd_event_new(&event), 0);
        cr_assert_eq(config_init(&config), 0);
        n_changed = 0;
        /* No NVML unless a test loads the fake: a real driver on the test
         * machine must not change what these tests see. */
        setenv("SWARM_NVML_LIBRARY", "/nonexistent/libnvidia-ml.so.1", 1);
}

static void teardown(void) {
        lending_stop(lending);
        lending = lending_free(lending);
        config_done(&config);
        event = sd_event_unref(event);
}

static void set_schedule(char **windows) {
        strv_free(config.lending_schedule);
        config.lending_schedule = calloc(8, sizeof(char *));
        for (size_t i = 0; windows[i]; i++)
                config.lending_schedule[i] = strdup(windows[i]);
}

/* Runs the loop until lending is want or the timeout passes. */
static bool run_until_lending(bool want, uint64_t timeout_usec) {
        uint64_t end = now_usec() + timeout_usec;

        while (lending_is_lending(lending) != want && now_usec() < end)
                cr_assert_geq(sd_event_run(event, 10 * 1000), 0);
        return lending_is_lending(lending) == want;
}

static void run_for(uint64_t usec) {
        uint64_t end = now_usec() + usec;

        while (now_usec() < end)
                cr_assert_geq(sd_event_run(event, 10 * 1000), 0);
}

TestSuite(lending_policy, .init = setup, .fini = teardown, .timeout = 30);

Test(lending_policy, always_and_never_from_config_and_at_run_time) {
        cr_assert_eq(lending_new(event, NULL, &config, NULL, NULL, &lending), 0);
        lending_set_changed_callback(lending, on_changed, NULL);
        cr_assert(lending_is_lending(lending));
        cr_assert_eq(lending_get_policy(lending), LENDING_POLICY_ALWAYS);
        cr_assert_str_eq(lending_reason(lending), "policy always");

        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_NEVER), 0);
        cr_assert_not(lending_is_lending(lending));
        cr_assert_eq(lending_get_policy(lending), LENDING_POLICY_NEVER);
        cr_assert_str_eq(lending_reason(lending), "policy never");
        cr_assert_eq(n_changed, 1);

        /* No change, no callback. */
        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_NEVER), 0);
        cr_assert_eq(n_changed, 1);
        cr_assert_eq(lending_set_policy(lending, (enum lending_policy_config) 42), -EINVAL);

        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_ALWAYS), 0);
        cr_assert(lending_is_lending(lending));
        cr_assert_eq(n_changed, 2);
        /* No jobs ran: nothing was given back. */
        cr_assert_eq(lending_last_giveback_usec(lending), 0);
}

Test(lending_policy, never_in_config_starts_not_lending) {
        config.lending_policy = LENDING_POLICY_NEVER;
        cr_assert_eq(lending_new(event, NULL, &config, NULL, NULL, &lending), 0);
        cr_assert_not(lending_is_lending(lending));
}

Test(lending_policy, schedule_follows_windows) {
        config.lending_policy = LENDING_POLICY_SCHEDULE;
        set_schedule((char *[]) { "daily 00:00-24:00", NULL });
        cr_assert_eq(lending_new(event, NULL, &config, NULL, NULL, &lending), 0);
        lending_set_changed_callback(lending, on_changed, NULL);
        cr_assert(lending_is_lending(lending));
        cr_assert_str_eq(lending_reason(lending), "schedule policy: inside a window");
        cr_assert_str_eq(lending_get_schedule(lending)[0], "daily 00:00-24:00");
        cr_assert_null(lending_get_schedule(lending)[1]);

        /* No windows: never inside one. */
        cr_assert_eq(lending_set_schedule(lending, (char *[]) { NULL }, NULL, 0), 0);
        cr_assert_not(lending_is_lending(lending));
        cr_assert_str_eq(lending_reason(lending), "schedule policy: no windows configured");
        cr_assert_null(lending_get_schedule(lending)[0]);
        cr_assert_eq(n_changed, 1);

        /* Any weekday at any time: one of these two covers now. */
        cr_assert_eq(lending_set_schedule(lending, (char *[]) { "sun-wed 00:00-24:00", "thu-sat 00:00-24:00", NULL },
                                          NULL, 0), 0);
        cr_assert(lending_is_lending(lending));
        cr_assert_eq(n_changed, 2);
}

Test(lending_policy, invalid_schedule_is_rejected_and_nothing_changes) {
        char error[256] = "";

        config.lending_policy = LENDING_POLICY_SCHEDULE;
        set_schedule((char *[]) { "daily 00:00-24:00", NULL });
        cr_assert_eq(lending_new(event, NULL, &config, NULL, NULL, &lending), 0);

        cr_assert_eq(lending_set_schedule(lending, (char *[]) { "mon 01:00-02:00", "noon-ish", NULL }, error,
                                          sizeof(error)), -EINVAL);
        cr_assert(strstr(error, "\"noon-ish\""), "error: %s", error);
        cr_assert_str_eq(lending_get_schedule(lending)[0], "daily 00:00-24:00");
        cr_assert(lending_is_lending(lending));

        /* The same from the configuration: lending_new fails, a reload keeps
         * the old settings. */
        set_schedule((char *[]) { "sometimes", NULL });
        cr_assert_eq(lending_apply_config(lending, &config), -EINVAL);
        cr_assert_str_eq(lending_get_schedule(lending)[0], "daily 00:00-24:00");
        lending_stop(lending);
        lending = lending_free(lending);
        cr_assert_eq(lending_new(event, NULL, &config, NULL, NULL, &lending), -EINVAL);
}

Test(lending_policy, reload_applies_the_policy) {
        cr_assert_eq(lending_new(event, NULL, &config, NULL, NULL, &lending), 0);
        lending_set_changed_callback(lending, on_changed, NULL);
        config.lending_policy = LENDING_POLICY_NEVER;
        cr_assert_eq(lending_apply_config(lending, &config), 0);
        cr_assert_not(lending_is_lending(lending));
        cr_assert_eq(n_changed, 1);
        config.lending_policy = 17;
        cr_assert_eq(lending_apply_config(lending, &config), -EINVAL);
        cr_assert_not(lending_is_lending(lending));
}

Test(lending_policy, idle_without_a_bus_sees_no_session) {
        config.lending_policy = LENDING_POLICY_IDLE;
        cr_assert_eq(lending_new(event, NULL, &config, NULL, NULL, &lending), 0);
        /* And no NVML here (or no other GPU user): lending. */
        run_for(50 * 1000);
        cr_assert(lending_is_lending(lending), "reason: %s", lending_reason(lending));
        cr_assert_str_eq(lending_reason(lending), "idle policy: no logind, so no active session");
}

Test(lending_policy, idle_policy_follows_its_sources_session_and_gpu) {
        struct idle_source *session, *gpu;

        config.lending_policy = LENDING_POLICY_IDLE;
        config.lending_gpu_check = true;
        cr_assert_eq(lending_new(event, NULL, &config, NULL, NULL, &lending), 0);
        lending_set_changed_callback(lending, on_changed, NULL);
        cr_assert_eq(idle_fake_new(IDLE_SOURCE_WAITING, NULL, NULL, &session), 0);
        cr_assert_eq(idle_fake_new(IDLE_SOURCE_IDLE, NULL, NULL, &gpu), 0);
        lending_set_idle_sources(lending, session, gpu);
        cr_assert_str_eq(lending_reason(lending), "idle policy: waiting for logind");

        idle_fake_set(session, IDLE_SOURCE_BUSY);
        cr_assert_not(lending_is_lending(lending));
        cr_assert_str_eq(lending_reason(lending), "idle policy: a session is active");
        idle_fake_set(session, IDLE_SOURCE_IDLE);
        cr_assert(lending_is_lending(lending));
        cr_assert_str_eq(lending_reason(lending), "idle policy: every session is idle");
        idle_fake_set(gpu, IDLE_SOURCE_BUSY);
        cr_assert_not(lending_is_lending(lending));
        cr_assert_str_eq(lending_reason(lending), "idle policy: another process uses the GPU");

        /* gpu_check off: the GPU's answer no longer counts. */
        config.lending_gpu_check = false;
        cr_assert_eq(lending_apply_config(lending, &config), 0);
        cr_assert(lending_is_lending(lending), "reason: %s", lending_reason(lending));
        cr_assert_geq(n_changed, 4);
}

/* ---- A fake logind on a private bus ---- */

#define BUS_TEMPLATE "/tmp/test-lending-XXXXXX"
static char busdir[sizeof(BUS_TEMPLATE)];
static char bus_address[sizeof(BUS_TEMPLATE) + 64];
static pid_t bus_pid;
static sd_bus *client, *fake;
static sd_bus_slot *fake_slot;
static int fake_idle;

static int fake_get_idle(sd_bus *bus, const char *path, const char *interface, const char *property,
                         sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "b", fake_idle);
}

static const sd_bus_vtable fake_manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("IdleHint", "b", fake_get_idle, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_VTABLE_END,
};

static int bus_connect(sd_bus **ret) {
        sd_bus *b = NULL;
        int r;

        r = sd_bus_new(&b);
        if (r >= 0)
                r = sd_bus_set_address(b, bus_address);
        if (r >= 0)
                r = sd_bus_set_bus_client(b, 1);
        if (r >= 0)
                r = sd_bus_start(b);
        if (r >= 0)
                r = sd_bus_attach_event(b, event, 0);
        if (r < 0) {
                sd_bus_unref(b);
                return r;
        }
        *ret = b;
        return 0;
}

static void bus_setup(void) {
        char conf[sizeof(busdir) + 16];
        FILE *f;
        uint64_t end;

        setup();
        if (access("/usr/bin/dbus-daemon", X_OK) < 0)
                cr_skip_test("dbus-daemon is not installed");

        strcpy(busdir, BUS_TEMPLATE);
        cr_assert_not_null(mkdtemp(busdir));
        snprintf(conf, sizeof(conf), "%s/bus.conf", busdir);
        snprintf(bus_address, sizeof(bus_address), "unix:path=%s/bus", busdir);
        f = fopen(conf, "we");
        cr_assert_not_null(f);
        fprintf(f,
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\"\n"
                " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
                "<busconfig>\n"
                "  <type>session</type>\n"
                "  <listen>%s</listen>\n"
                "  <auth>EXTERNAL</auth>\n"
                "  <policy context=\"default\">\n"
                "    <allow user=\"*\"/>\n"
                "    <allow own=\"*\"/>\n"
                "    <allow send_destination=\"*\" eavesdrop=\"true\"/>\n"
                "    <allow eavesdrop=\"true\"/>\n"
                "  </policy>\n"
                "</busconfig>\n",
                bus_address);
        cr_assert_eq(fclose(f), 0);

        bus_pid = fork();
        cr_assert_geq(bus_pid, 0);
        if (bus_pid == 0) {
                int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (null >= 0)
                        (void) dup2(null, STDOUT_FILENO);
                execl("/usr/bin/dbus-daemon", "dbus-daemon", "--config-file", conf, "--nofork", "--nopidfile",
                      (char *) NULL);
                _exit(127);
        }

        end = now_usec() + 5 * 1000 * 1000;
        while (bus_connect(&client) < 0) {
                cr_assert_lt(now_usec(), end, "the private dbus-daemon did not come up");
                usleep(10 * 1000);
        }
}

static void fake_logind_start(int idle) {
        fake_idle = idle;
        cr_assert_eq(bus_connect(&fake), 0);
        cr_assert_geq(sd_bus_add_object_vtable(fake, &fake_slot, "/org/freedesktop/login1",
                                               "org.freedesktop.login1.Manager", fake_manager_vtable, NULL), 0);
        cr_assert_geq(sd_bus_request_name(fake, "org.freedesktop.login1", 0), 0);
}

static void fake_logind_set_idle(int idle) {
        fake_idle = idle;
        cr_assert_geq(sd_bus_emit_properties_changed(fake, "/org/freedesktop/login1",
                                                     "org.freedesktop.login1.Manager", "IdleHint", NULL), 0);
}

static void bus_teardown(void) {
        char path[sizeof(busdir) + 16];

        lending_stop(lending);
        lending = lending_free(lending);
        fake_slot = sd_bus_slot_unref(fake_slot);
        fake = sd_bus_flush_close_unref(fake);
        client = sd_bus_flush_close_unref(client);
        if (bus_pid > 0) {
                kill(bus_pid, SIGTERM);
                (void) waitpid(bus_pid, NULL, 0);
                bus_pid = 0;
        }
        if (busdir[0]) {
                snprintf(path, sizeof(path), "%s/bus.conf", busdir);
                (void) unlink(path);
                snprintf(path, sizeof(path), "%s/bus", busdir);
                (void) unlink(path);
                (void) rmdir(busdir);
                busdir[0] = '\0';
        }
        teardown();
}

TestSuite(lending_logind, .init = bus_setup, .fini = bus_teardown, .timeout = 30);

Test(lending_logind, idle_policy_follows_logind_idle_hint) {
        uint64_t t;

        fake_logind_start(false);
        config.lending_policy = LENDING_POLICY_IDLE;
        config.lending_gpu_check = false;
        cr_assert_eq(lending_new(event, client, &config, NULL, NULL, &lending), 0);
        lending_set_changed_callback(lending, on_changed, NULL);

        /* Until logind answers, not lending; then a session is active. */
        cr_assert_not(lending_is_lending(lending));
        run_for(200 * 1000);
        cr_assert_not(lending_is_lending(lending));
        cr_assert_str_eq(lending_reason(lending), "idle policy: a session is active");

        /* Followed by the signal, well before the next poll. */
        t = now_usec();
        fake_logind_set_idle(true);
        cr_assert(run_until_lending(true, 1500 * 1000), "IdleHint=true not followed: %s", lending_reason(lending));
        cr_assert_lt(now_usec() - t, 1500 * 1000);
        cr_assert_str_eq(lending_reason(lending), "idle policy: every session is idle");

        fake_logind_set_idle(false);
        cr_assert(run_until_lending(false, 1500 * 1000), "IdleHint=false not followed");
        cr_assert_str_eq(lending_reason(lending), "idle policy: a session is active");
        cr_assert_geq(n_changed, 3);
}

Test(lending_logind, signals_from_others_than_logind_are_ignored) {
        sd_bus *impostor = NULL;
        sd_bus_slot *slot = NULL;

        fake_logind_start(false);
        config.lending_policy = LENDING_POLICY_IDLE;
        config.lending_gpu_check = false;
        cr_assert_eq(lending_new(event, client, &config, NULL, NULL, &lending), 0);
        run_for(200 * 1000);
        cr_assert_not(lending_is_lending(lending));

        /* Another connection claims the same object path. */
        cr_assert_eq(bus_connect(&impostor), 0);
        cr_assert_geq(sd_bus_add_object_vtable(impostor, &slot, "/org/freedesktop/login1",
                                               "org.freedesktop.login1.Manager", fake_manager_vtable, NULL), 0);
        fake_idle = true;
        cr_assert_geq(sd_bus_emit_properties_changed(impostor, "/org/freedesktop/login1",
                                                     "org.freedesktop.login1.Manager", "IdleHint", NULL), 0);
        fake_idle = false;
        run_for(300 * 1000);
        cr_assert_not(lending_is_lending(lending));
        sd_bus_slot_unref(slot);
        sd_bus_flush_close_unref(impostor);
}

Test(lending_logind, no_logind_on_the_bus_means_no_active_session) {
        config.lending_policy = LENDING_POLICY_IDLE;
        config.lending_gpu_check = false;
        cr_assert_eq(lending_new(event, client, &config, NULL, NULL, &lending), 0);
        cr_assert(run_until_lending(true, 2 * 1000 * 1000), "reason: %s", lending_reason(lending));
        cr_assert_str_eq(lending_reason(lending), "idle policy: no logind, so no active session");

        /* logind arriving later is picked up. */
        fake_logind_start(false);
        cr_assert(run_until_lending(false, 2 * 1000 * 1000), "logind's arrival not noticed");
        fake_logind_set_idle(true);
        cr_assert(run_until_lending(true, 1500 * 1000));
}

static unsigned n_flips;
static bool last_seen;

static void on_changed_track(struct lending *l, void *userdata) {
        if (lending_is_lending(l) != last_seen)
                n_flips++;
        last_seen = lending_is_lending(l);
}

Test(lending_logind, switching_to_idle_while_idle_never_stops_lending) {
        fake_logind_start(true);
        cr_assert_eq(lending_new(event, client, &config, NULL, NULL, &lending), 0);
        last_seen = true;
        n_flips = 0;
        lending_set_changed_callback(lending, on_changed_track, NULL);
        cr_assert(lending_is_lending(lending));

        /* While logind's answer is on its way, lending stays as it was. */
        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_IDLE), 0);
        cr_assert(lending_is_lending(lending));
        run_for(300 * 1000);
        cr_assert(lending_is_lending(lending));
        cr_assert_str_eq(lending_reason(lending), "idle policy: every session is idle");
        cr_assert_eq(n_flips, 0);

        /* And the other way round: from always to idle with a session
         * active stops lending once logind has answered. */
        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_ALWAYS), 0);
        fake_idle = false;
        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_IDLE), 0);
        cr_assert(run_until_lending(false, 1500 * 1000));
        cr_assert_eq(n_flips, 1);
}

Test(lending_logind, leaving_the_idle_policy_stops_following) {
        fake_logind_start(true);
        config.lending_policy = LENDING_POLICY_IDLE;
        config.lending_gpu_check = false;
        cr_assert_eq(lending_new(event, client, &config, NULL, NULL, &lending), 0);
        cr_assert(run_until_lending(true, 1500 * 1000));

        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_ALWAYS), 0);
        fake_logind_set_idle(false);
        run_for(300 * 1000);
        cr_assert(lending_is_lending(lending));
        cr_assert_str_eq(lending_reason(lending), "policy always");
}

/* ---- Real jobs ---- */

static struct skills *skills;
static struct swarm_values *job_inputs;
static struct pool_request *job;
static bool job_done;
static int job_status;
static char cgroup_origin[4096], cgroup_scratch[4096];

static void on_job_done(struct pool_request *req, struct pool_result *res, void *userdata) {
        job_done = true;
        job_status = res->status;
        job = NULL;
}

static void jobs_setup(void) {
        setup();
        job = NULL;
        job_done = false;
        cgroup_origin[0] = cgroup_scratch[0] = '\0';
}

static int write_file(const char *path, const char *s) {
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return -errno;
        n = write(fd, s, strlen(s));
        n = n < 0 ? -errno : 0;
        close(fd);
        return (int) n;
}

static void jobs_teardown(void) {
        char path[4200];

        if (job)
                pool_request_cancel(job);
        lending_stop(lending);
        lending = lending_free(lending);
        skills = skills_free(skills);   /* stops the workers, removes the skill cgroups */
        swarm_values_free(job_inputs);
        job_inputs = NULL;
        if (cgroup_scratch[0]) {
                snprintf(path, sizeof(path), "%s/cgroup.procs", cgroup_origin);
                (void) write_file(path, "0");
                (void) rmdir(cgroup_scratch);
        }
        teardown();
}

/* Runs the test process's own share of the tree in a scratch cgroup, so
 * that skills_new() with cgroups on puts the workers below it and freezes
 * only them. */
static void cgroup_scratch_enter(void) {
        _cleanup_free_ char *own = NULL;
        char path[4200];
        int r;

        if (geteuid() != 0)
                cr_skip_test("not root: the cgroup freezer is tested as root only");
        r = cgroup_discover(&own);
        if (r < 0)
                cr_skip_test("no cgroup2 hierarchy (%s)", strerror(-r));
        snprintf(cgroup_origin, sizeof(cgroup_origin), "%s", own);
        snprintf(cgroup_scratch, sizeof(cgroup_scratch), "%s/test-lending-%d", own, (int) getpid());
        if (mkdir(cgroup_scratch, 0755) < 0) {
                cgroup_scratch[0] = '\0';
                cr_skip_test("cgroup2 at %s is not writable (%s)", own, strerror(errno));
        }
        snprintf(path, sizeof(path), "%s/cgroup.freeze", cgroup_scratch);
        if (access(path, F_OK) < 0)
                cr_skip_test("no cgroup.freeze (kernel before 5.2)");
        snprintf(path, sizeof(path), "%s/cgroup.procs", cgroup_scratch);
        r = write_file(path, "0");
        if (r < 0)
                cr_skip_test("cannot move into %s (%s)", cgroup_scratch, strerror(-r));
}

static bool scratch_frozen(void) {
        char path[4200], buf[512];
        FILE *f;
        size_t n;

        snprintf(path, sizeof(path), "%s/skills/cgroup.events", cgroup_scratch);
        f = fopen(path, "re");
        if (!f)
                return false;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        return strstr(buf, "frozen 1") != NULL;
}

static void skills_up(int cgroups, int preempt) {
        const char *dir = getenv("TEST_PLUGIN_DIR");
        uint64_t end = now_usec() + 10 * 1000 * 1000;
        struct skill_pool *p;

        cr_assert(dir, "TEST_PLUGIN_DIR not set (run through meson test)");
        cr_assert(getenv("SWARM_WORKER"), "SWARM_WORKER not set");
        strv_free(config.skills_enabled);
        config.skills_enabled = calloc(2, sizeof(char *));
        config.skills_enabled[0] = strdup("testskill");
        free(config.skills_directory);
        config.skills_directory = strdup(dir);
        config.skills_workers = 1;
        config.skills_cgroups = cgroups;
        config.lending_preempt = preempt;

        cr_assert_eq(skills_new(event, &config, NULL, NULL, &skills), 0);
        cr_assert_eq(skills_count(skills), 1, "testskill did not load");
        p = skills_pool(skills, 0);
        while (!skill_pool_info(p) && now_usec() < end)
                cr_assert_geq(sd_event_run(event, 10 * 1000), 0);
        cr_assert_not_null(skill_pool_info(p), "no worker came up: %s", skill_pool_last_error(p) ?: "?");
}

static void skills_start(int cgroups, int preempt) {
        skills_up(cgroups, preempt);
        cr_assert_eq(lending_new(event, NULL, &config, skills, NULL, &lending), 0);
}

/* Starts a job that sleeps until cancelled and returns its worker's pid. */
static pid_t job_start(void) {
        struct skill_pool *p = skills_pool(skills, 0);
        uint64_t end = now_usec() + 5 * 1000 * 1000;
        pid_t pid = 0;

        job_inputs = swarm_values_new();
        swarm_values_set_allocator(job_inputs, shm_allocate, NULL);
        cr_assert_eq(swarm_values_set_string(job_inputs, "mode", "sleep"), 0);
        cr_assert_eq(skill_pool_submit(p, POOL_EXECUTE, job_inputs, NULL, NULL, 0, on_job_done, NULL, &job), 0);
        while ((pid = job ? pool_request_worker_pid(job) : 0) == 0 || skill_pool_workers_busy(p) == 0) {
                cr_assert_lt(now_usec(), end, "the job did not start");
                cr_assert_geq(sd_event_run(event, 10 * 1000), 0);
        }
        return pid;
}

static char proc_state(pid_t pid) {
        char path[64], buf[512], *p;
        FILE *f;
        size_t n;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return '?';
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        p = strrchr(buf, ')');
        return p && p[1] == ' ' ? p[2] : '?';
}

/* SIGSTOP takes effect asynchronously: wait for the state, bounded. */
static bool wait_state(pid_t pid, bool stopped) {
        uint64_t end = now_usec() + 2 * 1000 * 1000;

        for (;;) {
                char s = proc_state(pid);
                if ((s == 'T' || s == 't') == stopped && s != '?')
                        return true;
                if (now_usec() >= end)
                        return false;
                usleep(1000);
        }
}

/* The job still answers: cancelled, it ends with -ECANCELED. */
static void job_cancel_and_expect_answer(void) {
        uint64_t end = now_usec() + 5 * 1000 * 1000;

        cr_assert_not_null(job);
        pool_request_cancel(job);
        while (!job_done && now_usec() < end)
                cr_assert_geq(sd_event_run(event, 10 * 1000), 0);
        cr_assert(job_done, "the thawed job did not answer");
        cr_assert_eq(job_status, -ECANCELED, "status %d", job_status);
}

TestSuite(lending_jobs, .init = jobs_setup, .fini = jobs_teardown, .timeout = 60);

Test(lending_jobs, never_freezes_a_running_job_and_always_thaws_it) {
        pid_t pid;

        skills_start(SKILLS_CGROUPS_OFF, LENDING_PREEMPT_FREEZE);
        pid = job_start();
        cr_assert(wait_state(pid, false));

        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_NEVER), 0);
        cr_assert_not(lending_is_lending(lending));
        cr_assert(wait_state(pid, true), "worker %d is in state %c, not stopped", (int) pid, proc_state(pid));
        cr_assert_gt(lending_last_giveback_usec(lending), 0);
        cr_assert_lt(lending_last_giveback_usec(lending), 1000 * 1000);
        run_for(100 * 1000);
        cr_assert_not(job_done);

        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_ALWAYS), 0);
        cr_assert(wait_state(pid, false), "worker %d still stopped", (int) pid);
        job_cancel_and_expect_answer();
}

Test(lending_jobs, never_freezes_the_job_cgroup) {
        pid_t pid;

        cgroup_scratch_enter();
        skills_start(SKILLS_CGROUPS_ON, LENDING_PREEMPT_FREEZE);
        pid = job_start();
        cr_assert_not(scratch_frozen());

        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_NEVER), 0);
        cr_assert(scratch_frozen(), "%s/skills is not frozen", cgroup_scratch);
        cr_assert_gt(lending_last_giveback_usec(lending), 0);
        run_for(100 * 1000);
        cr_assert_not(job_done);
        cr_assert_neq(proc_state(pid), '?');

        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_ALWAYS), 0);
        cr_assert_not(scratch_frozen());
        job_cancel_and_expect_answer();
}

Test(lending_jobs, kill_preemption_kills_the_job) {
        uint64_t end;
        pid_t pid;

        skills_start(SKILLS_CGROUPS_OFF, LENDING_PREEMPT_KILL);
        pid = job_start();

        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_NEVER), 0);
        cr_assert_gt(lending_last_giveback_usec(lending), 0);
        end = now_usec() + 5 * 1000 * 1000;
        while (!job_done && now_usec() < end)
                cr_assert_geq(sd_event_run(event, 10 * 1000), 0);
        cr_assert(job_done, "the killed job was not failed");
        cr_assert_eq(job_status, -ECONNABORTED, "status %d", job_status);
        cr_assert(kill(pid, 0) < 0 && errno == ESRCH, "worker %d survived", (int) pid);
}

Test(lending_jobs, finish_preemption_leaves_the_job_running) {
        pid_t pid;

        skills_start(SKILLS_CGROUPS_OFF, LENDING_PREEMPT_FINISH);
        pid = job_start();

        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_NEVER), 0);
        cr_assert_not(lending_is_lending(lending));
        run_for(200 * 1000);
        cr_assert_not(job_done);
        cr_assert(wait_state(pid, false));
        cr_assert_eq(lending_last_giveback_usec(lending), 0);
        job_cancel_and_expect_answer();
}

Test(lending_jobs, pause_jobs_is_independent_of_the_policy) {
        pid_t pid;

        skills_start(SKILLS_CGROUPS_OFF, LENDING_PREEMPT_FREEZE);
        pid = job_start();

        /* Paused while lending. */
        cr_assert_eq(lending_pause_jobs(lending), 0);
        cr_assert(lending_jobs_paused(lending));
        cr_assert(lending_is_lending(lending));
        cr_assert(wait_state(pid, true));

        /* Lending stops and resumes: the pause holds. */
        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_NEVER), 0);
        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_ALWAYS), 0);
        cr_assert(wait_state(pid, true));

        cr_assert_eq(lending_resume_jobs(lending), 0);
        cr_assert_not(lending_jobs_paused(lending));
        cr_assert(wait_state(pid, false));

        /* Frozen for lending, ResumeJobs does not thaw it: the policy does. */
        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_NEVER), 0);
        cr_assert(wait_state(pid, true));
        cr_assert_eq(lending_pause_jobs(lending), 0);
        cr_assert_eq(lending_resume_jobs(lending), 0);
        cr_assert(wait_state(pid, true));
        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_ALWAYS), 0);
        cr_assert(wait_state(pid, false));
        job_cancel_and_expect_answer();
}

Test(lending_jobs, idle_workers_are_not_frozen) {
        struct skill_pool *p;

        skills_start(SKILLS_CGROUPS_OFF, LENDING_PREEMPT_FREEZE);
        p = skills_pool(skills, 0);
        cr_assert_eq(skill_pool_workers_busy(p), 0);
        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_NEVER), 0);
        /* Local requests still run while not lending. */
        job_start();
        cr_assert_eq(lending_last_giveback_usec(lending), 0);
        job_cancel_and_expect_answer();
}

/* ---- Device memory, with a fake NVML ---- */

#define GIB (UINT64_C(1) << 30)

static char nvml_state[64];

/* What the fake driver lists from now on: lines "compute PID BYTES". */
_printf_(1, 2) static void nvml_set(const char *format, ...) {
        char tmp[80];
        va_list ap;
        FILE *f;

        snprintf(tmp, sizeof(tmp), "%s.new", nvml_state);
        f = fopen(tmp, "we");
        cr_assert_not_null(f);
        va_start(ap, format);
        vfprintf(f, format, ap);
        va_end(ap);
        cr_assert_eq(fclose(f), 0);
        cr_assert_eq(rename(tmp, nvml_state), 0);
}

static void memory_setup(void) {
        const char *library = getenv("FAKE_NVML");
        int fd;

        jobs_setup();
        cr_assert(library, "FAKE_NVML not set (run through meson test)");
        snprintf(nvml_state, sizeof(nvml_state), "/tmp/test-lending-nvml-XXXXXX");
        fd = mkstemp(nvml_state);
        cr_assert_geq(fd, 0);
        close(fd);
        setenv("SWARM_NVML_LIBRARY", library, 1);
        setenv("SWARM_FAKE_NVML_STATE", nvml_state, 1);
}

static void memory_teardown(void) {
        char tmp[80];

        jobs_teardown();
        snprintf(tmp, sizeof(tmp), "%s.new", nvml_state);
        (void) unlink(tmp);
        (void) unlink(nvml_state);
}

static void set_release(const char *value) {
        free(config.lending_release_device_memory);
        config.lending_release_device_memory = strdup(value);
}

/* testskill's worker, up, with the fake saying it holds 1 GiB. */
static struct skill_pool *memory_start(int preempt, const char *release) {
        struct skill_pool *p;
        uint64_t bytes = 0;

        set_release(release);
        skills_up(SKILLS_CGROUPS_OFF, preempt);
        p = skills_pool(skills, 0);
        cr_assert_gt(skill_pool_worker_pid(p, 0), 0);
        nvml_set("compute %d %" PRIu64 "\n", (int) skill_pool_worker_pid(p, 0), GIB);
        cr_assert_eq(lending_new(event, NULL, &config, skills, NULL, &lending), 0);
        cr_assert_eq(lending_skill_device_memory(lending, p, &bytes), 0, "NVML's figure was not read");
        cr_assert_eq(bytes, GIB);
        return p;
}

static bool run_until_stopped(struct skill_pool *p, uint64_t timeout_usec) {
        uint64_t end = now_usec() + timeout_usec;

        while (!skill_pool_stopped(p) && now_usec() < end)
                cr_assert_geq(sd_event_run(event, 10 * 1000), 0);
        return skill_pool_stopped(p);
}

/* The worker exited: the "driver" forgets it, and lending sees it gone. */
static void expect_release_reported(uint64_t bytes) {
        uint64_t end = now_usec() + 5 * SEC, usec = 0, got = 0;

        nvml_set("%s", "");
        while (lending_last_memory_release(lending, &usec, &got) < 0 && now_usec() < end)
                cr_assert_geq(sd_event_run(event, 10 * 1000), 0);
        cr_assert_eq(lending_last_memory_release(lending, &usec, &got), 0, "the release was not reported");
        cr_assert_eq(got, bytes);
        cr_assert_gt(usec, 0);
        cr_assert_lt(usec, 5 * SEC);
}

TestSuite(lending_memory, .init = memory_setup, .fini = memory_teardown, .timeout = 60);

Test(lending_memory, frozen_first_then_released_after_the_grace_period) {
        struct skill_pool *p = memory_start(LENDING_PREEMPT_FREEZE, "after 400ms");
        uint64_t stopped, bytes = 1;
        pid_t pid = job_start();

        /* Before the call: the grace period's timer starts inside it, and
         * a time taken after it would make an on-time release look early
         * on a busy machine. */
        stopped = now_usec();
        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_NEVER), 0);
        cr_assert(wait_state(pid, true), "the job was not frozen first");
        cr_assert_not(skill_pool_released(p), "released before the grace period");

        /* Within the grace period nothing more happens. */
        run_for(200 * 1000);
        cr_assert_not(skill_pool_released(p));
        cr_assert_not(job_done);
        cr_assert_eq(proc_state(pid), 'T');

        /* Then the frozen job is stopped, and its worker with it. */
        cr_assert(run_until_stopped(p, 5 * SEC), "the worker did not go");
        cr_assert_geq(now_usec() - stopped, 400 * 1000, "released before the grace period ended");
        cr_assert(skill_pool_released(p));
        cr_assert(job_done, "the frozen job was not answered");
        cr_assert_eq(job_status, -EAGAIN, "status %d: a requester must reroute it without blame", job_status);
        cr_assert(kill(pid, 0) < 0 && errno == ESRCH, "worker %d survived", (int) pid);
        expect_release_reported(GIB);
        cr_assert_eq(lending_skill_device_memory(lending, p, &bytes), 0);
        cr_assert_eq(bytes, 0);
        cr_assert_eq(skill_pool_workers_alive(p), 0);
        cr_assert_eq(skill_pool_restarts(p), 0, "a released worker is not restarted");
}

Test(lending_memory, idle_workers_run_fini_and_go_at_once_with_immediately) {
        struct skill_pool *p = memory_start(LENDING_PREEMPT_FREEZE, "immediately");
        pid_t pid = skill_pool_worker_pid(p, 0);

        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_NEVER), 0);
        cr_assert(skill_pool_released(p));
        cr_assert(run_until_stopped(p, 5 * SEC), "the idle worker did not stop");
        cr_assert(kill(pid, 0) < 0 && errno == ESRCH);
        expect_release_reported(GIB);
}

Test(lending_memory, resume_starts_the_workers_again_and_shows_the_warm_up) {
        struct skill_pool *p = memory_start(LENDING_PREEMPT_FREEZE, "immediately");
        uint64_t end;

        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_NEVER), 0);
        cr_assert(run_until_stopped(p, 5 * SEC));
        expect_release_reported(GIB);

        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_ALWAYS), 0);
        cr_assert_not(skill_pool_released(p));
        cr_assert(skill_pool_warming(p) || skill_pool_workers_alive(p) > 0);
        cr_assert_gt(skill_pool_worker_pid(p, 0), 0, "no worker started");
        end = now_usec() + 10 * SEC;
        while (skill_pool_workers_alive(p) == 0 && now_usec() < end)
                cr_assert_geq(sd_event_run(event, 10 * 1000), 0);
        cr_assert_eq(skill_pool_workers_alive(p), 1, "the worker did not come back");
        cr_assert_not(skill_pool_warming(p));
        /* And it serves. */
        job_start();
        job_cancel_and_expect_answer();
}

Test(lending_memory, lending_again_within_the_grace_period_keeps_the_workers) {
        struct skill_pool *p = memory_start(LENDING_PREEMPT_FREEZE, "after 300ms");
        pid_t pid = skill_pool_worker_pid(p, 0);

        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_NEVER), 0);
        run_for(100 * 1000);
        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_ALWAYS), 0);
        run_for(500 * 1000);
        cr_assert_not(skill_pool_released(p));
        cr_assert_eq(skill_pool_worker_pid(p, 0), pid, "the worker was replaced");
        cr_assert_eq(lending_last_memory_release(lending, NULL, NULL), -ENODATA);
}

Test(lending_memory, never_keeps_the_memory) {
        struct skill_pool *p = memory_start(LENDING_PREEMPT_FREEZE, "never");

        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_NEVER), 0);
        run_for(300 * 1000);
        cr_assert_not(skill_pool_released(p));
        cr_assert_eq(skill_pool_workers_alive(p), 1);
}

Test(lending_memory, a_skill_without_gpu_memory_is_not_released) {
        struct skill_pool *p;
        uint64_t bytes = 1;

        set_release("immediately");
        skills_up(SKILLS_CGROUPS_OFF, LENDING_PREEMPT_FREEZE);
        p = skills_pool(skills, 0);
        /* NVML works, and lists only someone else. */
        nvml_set("compute %d %" PRIu64 "\n", (int) getppid(), GIB);
        cr_assert_eq(lending_new(event, NULL, &config, skills, NULL, &lending), 0);
        cr_assert_eq(lending_skill_device_memory(lending, p, &bytes), 0);
        cr_assert_eq(bytes, 0);
        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_NEVER), 0);
        run_for(200 * 1000);
        cr_assert_not(skill_pool_released(p));
        cr_assert_eq(skill_pool_workers_alive(p), 1);
}

Test(lending_memory, without_nvml_memory_is_unknown_and_a_cpu_skill_is_kept) {
        struct skill_pool *p;
        uint64_t bytes;

        setenv("SWARM_NVML_LIBRARY", "/nonexistent/libnvidia-ml.so.1", 1);
        set_release("immediately");
        skills_start(SKILLS_CGROUPS_OFF, LENDING_PREEMPT_FREEZE);
        p = skills_pool(skills, 0);
        cr_assert_eq(lending_skill_device_memory(lending, p, &bytes), -ENODATA);
        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_NEVER), 0);
        run_for(200 * 1000);
        cr_assert_not(skill_pool_released(p), "testskill advertises device \"cpu\"");
}

Test(lending_memory, a_local_request_wakes_released_workers_and_they_go_again) {
        struct skill_pool *p = memory_start(LENDING_PREEMPT_FREEZE, "after 300ms");
        uint64_t end;

        cr_assert_eq(lending_set_policy(lending, LENDING_POLICY_NEVER), 0);
        cr_assert(run_until_stopped(p, 5 * SEC));
        cr_assert(skill_pool_released(p));

        /* The owner's own request (local, or verifying a result) waits for
         * the workers instead of failing. */
        job_start();
        cr_assert_not(skill_pool_released(p));
        job_cancel_and_expect_answer();
        nvml_set("compute %d %" PRIu64 "\n", (int) skill_pool_worker_pid(p, 0), GIB);

        /* Still not lending: released again after another grace period. */
        end = now_usec() + 5 * SEC;
        while (!skill_pool_released(p) && now_usec() < end)
                cr_assert_geq(sd_event_run(event, 10 * 1000), 0);
        cr_assert(skill_pool_released(p), "the woken workers were not released again");
        cr_assert(run_until_stopped(p, 5 * SEC));
}

/* The idle policy with NVML (the fake): our own processes on the GPU are
 * no reason to stop, another one is, within the poll (1 s). */
Test(lending_memory, idle_policy_sees_a_foreign_gpu_process) {
        struct idle_source *session, *gpu;
        uint64_t started;

        nvml_set("compute %d %" PRIu64 "\n", (int) getpid(), GIB);
        config.lending_policy = LENDING_POLICY_IDLE;
        cr_assert_eq(lending_new(event, NULL, &config, NULL, NULL, &lending), 0);
        cr_assert_eq(idle_fake_new(IDLE_SOURCE_IDLE, NULL, NULL, &session), 0);
        cr_assert_eq(idle_nvml_new(NULL, NULL, &gpu), 0, "the fake NVML did not load");
        lending_set_idle_sources(lending, session, gpu);
        cr_assert(lending_is_lending(lending), "swarmd's own GPU use counted: %s", lending_reason(lending));

        nvml_set("compute %d %" PRIu64 "\ngraphics %d 268435456\n", (int) getpid(), GIB, (int) getppid());
        started = now_usec();
        cr_assert(run_until_lending(false, 3 * SEC), "a foreign GPU process did not stop lending");
        cr_assert_lt(now_usec() - started, 1500 * 1000, "slower than the 1 s poll");
        cr_assert_str_eq(lending_reason(lending), "idle policy: another process uses the GPU");

        nvml_set("compute %d %" PRIu64 "\n", (int) getpid(), GIB);
        cr_assert(run_until_lending(true, 3 * SEC), "lending did not resume once it left");
}

/* Not lending from the start (policy never): a skill still loading when
 * the grace period ends is released once it is up. */
Test(lending_memory, a_skill_still_starting_is_released_once_up) {
        const char *dir = getenv("TEST_PLUGIN_DIR");
        struct skill_pool *p;
        uint64_t end;

        cr_assert(dir, "TEST_PLUGIN_DIR not set (run through meson test)");
        strv_free(config.skills_enabled);
        config.skills_enabled = calloc(2, sizeof(char *));
        config.skills_enabled[0] = strdup("testskill");
        free(config.skills_directory);
        config.skills_directory = strdup(dir);
        config.skills_workers = 1;
        config.skills_cgroups = SKILLS_CGROUPS_OFF;
        config.lending_policy = LENDING_POLICY_NEVER;
        set_release("immediately");
        cr_assert_eq(skills_new(event, &config, NULL, NULL, &skills), 0);
        p = skills_pool(skills, 0);
        cr_assert_gt(skill_pool_worker_pid(p, 0), 0);
        /* Still loading: not on the GPU yet. */
        nvml_set("%s", "");
        cr_assert_eq(lending_new(event, NULL, &config, skills, NULL, &lending), 0);
        cr_assert_not(lending_is_lending(lending));
        cr_assert_null(skill_pool_info(p), "the worker came up too soon to test this");
        cr_assert_not(skill_pool_released(p));

        /* Up, and holding its model. */
        end = now_usec() + 10 * SEC;
        while (!skill_pool_info(p) && now_usec() < end)
                cr_assert_geq(sd_event_run(event, 10 * 1000), 0);
        cr_assert_not_null(skill_pool_info(p));
        nvml_set("compute %d %" PRIu64 "\n", (int) skill_pool_worker_pid(p, 0), GIB);
        cr_assert(run_until_stopped(p, 5 * SEC), "the worker that came up was not released");
        cr_assert(skill_pool_released(p));
        expect_release_reported(GIB);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "idle-backends.h"
#include "lending.h"
#include "log.h"
#include "macro.h"
#include "network.h"
#include "nvml.h"
#include "skill-pool.h"
#include "skills.h"
#include "time-util.h"

/* How often the idle policy polls its sources (idle-source.h): the GPU
 * check sees another process on the GPU within a second, as soon as the
 * owner's session becoming active reaches us through logind's signal. */
#define IDLE_POLL_USEC (1000 * 1000)

/* How often the device memory of the skills' workers is read (with NVML). */
#define MEMORY_POLL_USEC (5 * 1000 * 1000)
/* After a release, how often and how long NVML is asked whether the
 * released workers' memory is gone. */
#define MEMORY_CONFIRM_USEC (20 * 1000)
#define MEMORY_CONFIRM_MAX_USEC (5 * 1000 * 1000)
/* A release that had to wait (a pool still starting, requests queued) is
 * tried again no sooner than this, whatever the grace period. */
#define MEMORY_RETRY_USEC (1000 * 1000)

/* ---- Pure parts ---- */

static const char *const day_names[7] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat" };

_printf_(4, 5) static int parse_error(char *error, size_t n, int r, const char *format, ...) {
        va_list ap;

        if (error && n > 0) {
                va_start(ap, format);
                (void) vsnprintf(error, n, format, ap);
                va_end(ap);
        }
        return r;
}

static int day_from_string(const char *s, size_t len) {
        for (int i = 0; i < 7; i++)
                if (len == 3 && strncasecmp(s, day_names[i], 3) == 0)
                        return i;
        return -1;
}

/* "mon-fri", "sat,sun", "fri-mon" (wraps), "daily". */
static int days_parse(const char *s, size_t len, uint8_t *ret, char *error, size_t n) {
        uint8_t days = 0;
        const char *p = s, *end = s + len;

        if (len == 5 && strncasecmp(s, "daily", 5) == 0) {
                *ret = 0x7f;
                return 0;
        }
        while (p < end) {
                const char *comma = memchr(p, ',', (size_t) (end - p)) ?: end;
                const char *dash = memchr(p, '-', (size_t) (comma - p));
                int a, b;

                if (dash) {
                        a = day_from_string(p, (size_t) (dash - p));
                        b = day_from_string(dash + 1, (size_t) (comma - dash - 1));
                } else
                        a = b = day_from_string(p, (size_t) (comma - p));
                if (a < 0 || b < 0)
                        return parse_error(error, n, -EINVAL,
                                           "\"%.*s\" is not a day (mon, tue, wed, thu, fri, sat, sun), "
                                           "a range of days (mon-fri) or \"daily\"",
                                           (int) (comma - p), p);
                for (int d = a;; d = (d + 1) % 7) {
                        days |= (uint8_t) (1u << d);
                        if (d == b)
                                break;
                }
                p = comma + (comma < end);
                if (comma < end && p == end)
                        return parse_error(error, n, -EINVAL, "the days end with a comma");
        }
        *ret = days;
        return 0;
}

/* "HH:MM" → minutes; 24:00 only where allow_24. */
static int time_parse(const char *s, size_t len, bool allow_24, uint16_t *ret, char *error, size_t n) {
        unsigned h, m;

        if (len != 5 || !isdigit((unsigned char) s[0]) || !isdigit((unsigned char) s[1]) || s[2] != ':' ||
            !isdigit((unsigned char) s[3]) || !isdigit((unsigned char) s[4]))
                return parse_error(error, n, -EINVAL, "\"%.*s\" is not a time HH:MM", (int) len, s);
        h = (unsigned) (s[0] - '0') * 10 + (unsigned) (s[1] - '0');
        m = (unsigned) (s[3] - '0') * 10 + (unsigned) (s[4] - '0');
        if (m > 59 || h > 24 || (h == 24 && (m != 0 || !allow_24)))
                return parse_error(error, n, -EINVAL, "\"%.*s\" is not a time of day%s", (int) len, s,
                                   h == 24 && m == 0 ? " (24:00 may only end a window)" : "");
        *ret = (uint16_t) (h * 60 + m);
        return 0;
}

int lending_window_parse(const char *s, struct lending_window *ret, char *error, size_t n) {
        struct lending_window w = { .days = 0x7f };
        const char *times, *dash, *end;
        int r;

        if (!s || !ret)
                return -EINVAL;
        while (isspace((unsigned char) *s))
                s++;
        end = s + strlen(s);
        while (end > s && isspace((unsigned char) end[-1]))
                end--;
        if (end == s)
                return parse_error(error, n, -EINVAL, "empty window");

        times = s;
        for (const char *p = s; p < end; p++)
                if (isspace((unsigned char) *p)) {
                        r = days_parse(s, (size_t) (p - s), &w.days, error, n);
                        if (r < 0)
                                return r;
                        times = p;
                        while (times < end && isspace((unsigned char) *times))
                                times++;
                        break;
                }

        dash = memchr(times, '-', (size_t) (end - times));
        if (!dash)
                return parse_error(error, n, -EINVAL, "\"%.*s\" is not a window HH:MM-HH:MM",
                                   (int) (end - times), times);
        r = time_parse(times, (size_t) (dash - times), false, &w.start_minute, error, n);
        if (r < 0)
                return r;
        r = time_parse(dash + 1, (size_t) (end - dash - 1), true, &w.end_minute, error, n);
        if (r < 0)
                return r;

        *ret = w;
        return 0;
}

static bool window_contains(const struct lending_window *w, int wday, unsigned minute) {
        int yesterday = (wday + 6) % 7;

        if (w->start_minute < w->end_minute)
                return (w->days & (1u << wday)) && minute >= w->start_minute && minute < w->end_minute;
        /* Crosses midnight: the evening of a listed day, or the morning after one. */
        return ((w->days & (1u << wday)) && minute >= w->start_minute) ||
                ((w->days & (1u << yesterday)) && minute < w->end_minute);
}

bool lending_windows_contain(const struct lending_window *w, size_t n, const struct tm *tm) {
        unsigned minute;

        if (!tm || tm->tm_wday < 0 || tm->tm_wday > 6 || tm->tm_hour < 0 || tm->tm_min < 0)
                return false;
        minute = (unsigned) tm->tm_hour * 60 + (unsigned) tm->tm_min;
        for (size_t i = 0; i < n; i++)
                if (window_contains(&w[i], tm->tm_wday, minute))
                        return true;
        return false;
}

bool lending_decide(enum lending_policy_config policy, bool gpu_check, const struct lending_inputs *in) {
        switch (policy) {
        case LENDING_POLICY_ALWAYS:
                return true;
        case LENDING_POLICY_NEVER:
                return false;
        case LENDING_POLICY_IDLE:
                return in->session_idle && !(gpu_check && in->gpu_busy);
        case LENDING_POLICY_SCHEDULE:
                return in->in_schedule;
        }
        return false;
}

void lending_memory_init(struct lending_memory *m, uint64_t release_after) {
        *m = (struct lending_memory) { .state = LENDING_MEMORY_HELD, .release_after = release_after, .lending = true };
}

void lending_memory_stop(struct lending_memory *m, uint64_t now) {
        m->lending = false;
        if (m->state == LENDING_MEMORY_RELEASED)
                return;
        m->state = m->release_after == CONFIG_RELEASE_NEVER ? LENDING_MEMORY_HELD : LENDING_MEMORY_GRACE;
        m->since = now;
}

bool lending_memory_start(struct lending_memory *m) {
        bool released = m->state == LENDING_MEMORY_RELEASED;

        m->lending = true;
        m->state = LENDING_MEMORY_HELD;
        return released;
}

void lending_memory_set_after(struct lending_memory *m, uint64_t release_after, uint64_t now) {
        bool was_never = m->release_after == CONFIG_RELEASE_NEVER;

        m->release_after = release_after;
        if (m->lending || m->state == LENDING_MEMORY_RELEASED)
                return;
        if (release_after == CONFIG_RELEASE_NEVER)
                m->state = LENDING_MEMORY_HELD;
        else if (m->state == LENDING_MEMORY_HELD || was_never) {
                m->state = LENDING_MEMORY_GRACE;
                m->since = now;
        }
}

void lending_memory_woken(struct lending_memory *m, uint64_t now) {
        if (m->lending)
                return;
        m->state = m->release_after == CONFIG_RELEASE_NEVER ? LENDING_MEMORY_HELD : LENDING_MEMORY_GRACE;
        m->since = now;
}

uint64_t lending_memory_deadline(const struct lending_memory *m) {
        if (m->state != LENDING_MEMORY_GRACE)
                return UINT64_MAX;
        return m->since > UINT64_MAX - m->release_after ? UINT64_MAX : m->since + m->release_after;
}

bool lending_memory_due(struct lending_memory *m, uint64_t now) {
        if (m->state != LENDING_MEMORY_GRACE || now < lending_memory_deadline(m))
                return false;
        m->state = LENDING_MEMORY_RELEASED;
        return true;
}

/* ---- The switch ---- */

/* What lending knows of one hosted skill's device memory. */
struct lending_pool {
        struct skill_pool *pool;
        uint64_t memory;                /* bytes its workers hold, as NVML last said */
        bool memory_known;
        bool released;                  /* we released it; started again when lending resumes */
        bool releasing;                 /* ... and its workers have not all exited yet */
};

struct lending {
        sd_event *event;
        sd_bus *bus;
        struct skills *skills;
        struct network *network;

        enum lending_policy_config policy;
        bool gpu_check;
        enum lending_preempt_config preempt;
        char **schedule;
        struct lending_window *windows;
        size_t n_windows;

        struct lending_inputs inputs;
        /* The idle policy's sources, while it is the policy: the session
         * (logind) and, with gpu_check, the GPU (NVML). */
        struct idle_source *session, *gpu;
        bool gpu_unavailable;           /* NVML could not be loaded: not tried again */
        bool fake_sources;              /* lending_set_idle_sources(): never replaced */

        sd_event_source *idle_timer, *schedule_timer;

        bool lending;
        bool started;
        bool frozen;                    /* we froze the jobs (skills_pause) */
        bool frozen_by_lending;         /* ... because lending stopped with preempt freeze */
        bool paused;                    /* PauseJobs() */
        uint64_t giveback_usec;
        char reason[128];

        /* Device memory (lending.release_device_memory). */
        struct lending_memory memory;
        struct lending_pool *pools;     /* one per hosted skill, in skills order */
        size_t n_pools;
        struct nvml *nvml;              /* NULL: memory figures unknown */
        sd_event_source *release_timer, *memory_timer, *confirm_timer;
        uint64_t release_started;
        pid_t *released_pids;           /* the workers released last, for NVML to confirm */
        size_t n_released_pids;
        uint64_t released_bytes;        /* what they held; UINT64_MAX unknown */
        char released_names[256];
        bool release_done;
        bool in_release;                /* memory_release() is asking the pools */
        uint64_t release_usec;

        lending_changed_fn changed;
        void *userdata;
};

static const char *policy_name(enum lending_policy_config p) {
        return (unsigned) p <= LENDING_POLICY_SCHEDULE ? lending_policy_names[p] : "?";
}

static size_t jobs_running(struct lending *l) {
        size_t busy = 0;

        for (size_t i = 0; i < skills_count(l->skills); i++)
                busy += skill_pool_workers_busy(skills_pool(l->skills, i));
        return busy;
}

static void format_usec(char *buf, size_t n, uint64_t usec) {
        if (usec < 1000)
                snprintf(buf, n, "%" PRIu64 " µs", usec);
        else if (usec < 1000 * 1000)
                snprintf(buf, n, "%.1f ms", (double) usec / 1000.0);
        else
                snprintf(buf, n, "%.2f s", (double) usec / 1e6);
}

/* Freezes or thaws so that the jobs are frozen exactly while PauseJobs()
 * or a preemption by freezing asks for it. */
static int jobs_sync(struct lending *l) {
        bool want = l->paused || l->frozen_by_lending;
        int r;

        if (!l->skills || want == l->frozen)
                return 0;
        if (want) {
                r = skills_pause(l->skills);
                if (r < 0)
                        return log_error_errno(r, "Failed to freeze the jobs: %m");
                if (r == 0)
                        log_warning("The jobs are still freezing after a second; the kernel will finish it.");
        } else {
                r = skills_resume(l->skills);
                if (r < 0)
                        return log_error_errno(r, "Failed to thaw the jobs: %m");
        }
        l->frozen = want;
        return 0;
}

static bool in_schedule_now(const struct lending *l) {
        time_t t = time(NULL);
        struct tm tm;

        if (!localtime_r(&t, &tm))
                return false;
        return lending_windows_contain(l->windows, l->n_windows, &tm);
}

/* Until the session source answered, the idle policy cannot decide. */
static bool session_waiting(const struct lending *l) {
        return !l->session || l->session->state == IDLE_SOURCE_WAITING;
}

static void reason_update(struct lending *l) {
        const char *r = "?";

        switch (l->policy) {
        case LENDING_POLICY_ALWAYS:
                r = "policy always";
                break;
        case LENDING_POLICY_NEVER:
                r = "policy never";
                break;
        case LENDING_POLICY_IDLE:
                if (session_waiting(l))
                        r = "idle policy: waiting for logind";
                else if (!l->inputs.session_idle)
                        r = "idle policy: a session is active";
                else if (l->gpu_check && l->inputs.gpu_busy)
                        r = "idle policy: another process uses the GPU";
                else if (l->session && l->session->absent)
                        r = "idle policy: no logind, so no active session";
                else
                        r = "idle policy: every session is idle";
                break;
        case LENDING_POLICY_SCHEDULE:
                if (l->n_windows == 0)
                        r = "schedule policy: no windows configured";
                else
                        r = l->inputs.in_schedule ? "schedule policy: inside a window" :
                                "schedule policy: outside the windows";
                break;
        }
        snprintf(l->reason, sizeof(l->reason), "%s", r);
}

/* ---- Device memory ---- */

static void notify_changed(struct lending *l);

static void format_bytes(char *buf, size_t n, uint64_t bytes) {
        if (bytes >= (UINT64_C(1) << 30))
                snprintf(buf, n, "%.1f GiB", (double) bytes / (double) (UINT64_C(1) << 30));
        else if (bytes >= (UINT64_C(1) << 20))
                snprintf(buf, n, "%.0f MiB", (double) bytes / (double) (UINT64_C(1) << 20));
        else
                snprintf(buf, n, "%" PRIu64 " bytes", bytes);
}

static struct lending_pool *pool_of(const struct lending *l, const struct skill_pool *p) {
        for (size_t i = 0; i < l->n_pools; i++)
                if (l->pools[i].pool == p)
                        return &l->pools[i];
        return NULL;
}

/* Reads every pool's device memory from NVML; true when a figure changed. */
static bool memory_measure(struct lending *l) {
        _cleanup_free_ struct nvml_process *procs = NULL;
        size_t n_procs = 0;
        bool changed = false, listed = false;

        if (l->nvml) {
                int r = nvml_list_processes(l->nvml, &procs, &n_procs);
                if (r < 0)
                        log_debug_errno(r, "NVML could not list the GPU's processes: %m");
                listed = r >= 0;
        }
        for (size_t i = 0; i < l->n_pools; i++) {
                struct lending_pool *lp = &l->pools[i];
                uint64_t bytes = 0;
                bool known = listed;

                for (unsigned w = 0; known && w < skill_pool_workers_max(lp->pool); w++) {
                        pid_t pid = skill_pool_worker_pid(lp->pool, w);

                        for (size_t k = 0; pid > 0 && k < n_procs; k++)
                                if (procs[k].pid == pid) {
                                        if (procs[k].memory == NVML_MEMORY_UNKNOWN)
                                                known = false;
                                        else
                                                bytes += procs[k].memory;
                                }
                }
                if (!known)
                        bytes = 0;
                if (known != lp->memory_known || bytes != lp->memory)
                        changed = true;
                lp->memory = bytes;
                lp->memory_known = known;
        }
        return changed;
}

static const char *advert_device(struct skill_pool *p) {
        const struct skill_info *info = skill_pool_info(p);
        const char *device = NULL;

        if (info && info->advert)
                (void) swarm_values_get_string(info->advert, "device", &device);
        return device;
}

/* Whether releasing the pool gives device memory back: what NVML measured,
 * else what the skill says it runs on. */
static bool pool_holds_device_memory(const struct lending_pool *lp) {
        const char *device;

        if (lp->memory_known)
                return lp->memory > 0;
        device = advert_device(lp->pool);
        return device && device[0] && strcmp(device, "cpu") != 0;
}

static int on_release_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* Arms the release timer for the grace period's end (not before
 * not_before), or stops it. */
static void memory_arm_after(struct lending *l, uint64_t not_before) {
        uint64_t deadline = lending_memory_deadline(&l->memory);
        int r;

        if (deadline != UINT64_MAX && deadline < not_before)
                deadline = not_before;
        if (deadline == UINT64_MAX) {
                l->release_timer = sd_event_source_disable_unref(l->release_timer);
                return;
        }
        if (l->release_timer) {
                r = sd_event_source_set_time(l->release_timer, deadline);
                if (r >= 0)
                        r = sd_event_source_set_enabled(l->release_timer, SD_EVENT_ONESHOT);
        } else {
                r = sd_event_add_time(l->event, &l->release_timer, CLOCK_MONOTONIC, deadline, 10 * 1000,
                                      on_release_timer, l);
                if (r >= 0)
                        (void) sd_event_source_set_description(l->release_timer, "lending-release");
        }
        if (r < 0)
                log_warning_errno(r, "Failed to schedule giving the GPU memory back: %m");
}

static void memory_arm(struct lending *l) {
        memory_arm_after(l, 0);
}

static void release_report(struct lending *l, bool confirmed) {
        char took[32], bytes[32];

        l->release_usec = now(CLOCK_MONOTONIC) - l->release_started;
        l->release_done = true;
        l->confirm_timer = sd_event_source_disable_unref(l->confirm_timer);
        format_usec(took, sizeof(took), l->release_usec);
        if (l->released_bytes == UINT64_MAX)
                log_notice("Lending: stopped the workers of %s in %s to give their GPU memory back (how much is "
                           "unknown: %s).", l->released_names, took,
                           l->nvml ? "NVML gives no figure for them" : "NVML is not available");
        else {
                format_bytes(bytes, sizeof(bytes), l->released_bytes);
                log_notice("Lending: gave %s of GPU memory back in %s (workers of %s stopped%s).", bytes, took,
                           l->released_names, confirmed ? "" : "; NVML still lists them");
        }
        (void) memory_measure(l);
        notify_changed(l);
}

/* Whether NVML still lists one of the released workers. */
static bool released_still_listed(struct lending *l) {
        _cleanup_free_ struct nvml_process *procs = NULL;
        size_t n = 0;

        if (!l->nvml || nvml_list_processes(l->nvml, &procs, &n) < 0)
                return false;
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k < l->n_released_pids; k++)
                        if (procs[i].pid == l->released_pids[k])
                                return true;
        return false;
}

static int on_confirm_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct lending *l = userdata;

        if (!released_still_listed(l)) {
                release_report(l, true);
                return 0;
        }
        if (now(CLOCK_MONOTONIC) - l->release_started >= MEMORY_CONFIRM_MAX_USEC) {
                release_report(l, false);
                return 0;
        }
        (void) sd_event_source_set_time_relative(s, MEMORY_CONFIRM_USEC);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

/* A released pool's workers have all exited: once every pool's have, and
 * NVML no longer lists them, the memory is back. */
static void release_check_done(struct lending *l) {
        if (l->in_release)
                return;
        for (size_t i = 0; i < l->n_pools; i++)
                if (l->pools[i].releasing)
                        return;
        if (!released_still_listed(l)) {
                release_report(l, true);
                return;
        }
        if (!l->confirm_timer &&
            sd_event_add_time_relative(l->event, &l->confirm_timer, CLOCK_MONOTONIC, MEMORY_CONFIRM_USEC, 1000,
                                       on_confirm_timer, l) < 0)
                release_report(l, false);
}

/* The grace period is over: the pools whose workers hold device memory
 * stop them.  Frozen jobs would hold theirs for as long as lending is off:
 * they are killed (their requesters reroute them). */
static void memory_release(struct lending *l) {
        bool kill_busy = l->frozen_by_lending, waiting = false;
        size_t n = 0, used = 0, max_pids = 0;
        pid_t *pids;

        if (l->n_pools == 0)
                return;
        (void) memory_measure(l);
        for (size_t i = 0; i < l->n_pools; i++)
                max_pids += skill_pool_workers_max(l->pools[i].pool);
        pids = reallocarray(l->released_pids, max_pids + 1, sizeof(pid_t));
        if (!pids) {
                log_oom();
                return;
        }
        l->released_pids = pids;
        l->n_released_pids = 0;
        l->released_bytes = 0;
        l->released_names[0] = '\0';
        l->release_started = now(CLOCK_MONOTONIC);
        l->confirm_timer = sd_event_source_disable_unref(l->confirm_timer);

        l->in_release = true;
        for (size_t i = 0; i < l->n_pools; i++) {
                struct lending_pool *lp = &l->pools[i];
                size_t first = l->n_released_pids;
                int r;

                if (lp->released)
                        continue;
                if (!pool_holds_device_memory(lp)) {
                        /* A skill still loading may hold memory once up. */
                        if (!skill_pool_info(lp->pool))
                                waiting = true;
                        continue;
                }
                /* Their pids before they go, for NVML to confirm. */
                for (unsigned w = 0; w < skill_pool_workers_max(lp->pool); w++)
                        if (skill_pool_worker_pid(lp->pool, w) > 0)
                                l->released_pids[l->n_released_pids++] = skill_pool_worker_pid(lp->pool, w);
                lp->released = lp->releasing = true;
                r = skill_pool_release(lp->pool, kill_busy);
                if (r < 0) {
                        lp->released = lp->releasing = false;
                        l->n_released_pids = first;
                        if (r == -EBUSY)
                                /* Requests are queued (the owner's own): later. */
                                waiting = true;
                        else
                                log_warning_errno(r, "Failed to release the workers of %s: %m",
                                                  skills_name(l->skills, i));
                        continue;
                }
                n++;
                if (!lp->memory_known || l->released_bytes == UINT64_MAX)
                        l->released_bytes = UINT64_MAX;
                else
                        l->released_bytes += lp->memory;
                used += (size_t) snprintf(l->released_names + used, sizeof(l->released_names) - used, "%s%s",
                                          used ? ", " : "", skills_name(l->skills, i));
                if (used >= sizeof(l->released_names))
                        used = sizeof(l->released_names) - 1;
        }
        l->in_release = false;
        if (kill_busy) {
                /* The frozen jobs are dead: thaw, so that the workers asked
                 * to stop can run their fini(). */
                l->frozen_by_lending = false;
                (void) jobs_sync(l);
        }
        if (waiting) {
                lending_memory_woken(&l->memory, now(CLOCK_MONOTONIC));
                memory_arm_after(l, now(CLOCK_MONOTONIC) + MEMORY_RETRY_USEC);
        }
        if (n == 0) {
                log_debug("Lending: no skill's workers hold device memory%s; nothing to give back.",
                          waiting ? " that could be released yet" : "");
                return;
        }
        notify_changed(l);
        release_check_done(l);
}

static int on_release_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct lending *l = userdata;

        if (lending_memory_due(&l->memory, now(CLOCK_MONOTONIC)))
                memory_release(l);
        else
                memory_arm(l);
        return 0;
}

/* After a change of lending or of the setting: release now if due, else
 * wait for the deadline. */
static void memory_update(struct lending *l) {
        if (lending_memory_due(&l->memory, now(CLOCK_MONOTONIC))) {
                l->release_timer = sd_event_source_disable_unref(l->release_timer);
                memory_release(l);
        } else
                memory_arm(l);
}

/* Lending resumed: the released pools start their workers again. */
static void memory_restore(struct lending *l) {
        bool released = lending_memory_start(&l->memory);

        l->release_timer = sd_event_source_disable_unref(l->release_timer);
        if (!released)
                return;
        l->confirm_timer = sd_event_source_disable_unref(l->confirm_timer);
        for (size_t i = 0; i < l->n_pools; i++) {
                struct lending_pool *lp = &l->pools[i];

                if (!lp->released)
                        continue;
                lp->released = lp->releasing = false;
                if (skill_pool_warm(lp->pool) > 0)
                        log_info("Skill %s: starting its workers again (warming up).", skills_name(l->skills, i));
        }
}

/* From a pool: its released workers have all exited, or it was woken. */
static void on_pool_state(struct skill_pool *p, void *userdata) {
        struct lending *l = userdata;
        struct lending_pool *lp = pool_of(l, p);

        if (!lp)
                return;
        if (skill_pool_released(p)) {
                if (lp->releasing && skill_pool_stopped(p)) {
                        lp->releasing = false;
                        release_check_done(l);
                }
                return;
        }
        if (!lp->released)
                return;
        /* Woken by a local request while not lending: released again
         * after another grace period. */
        lp->released = lp->releasing = false;
        lending_memory_woken(&l->memory, now(CLOCK_MONOTONIC));
        memory_arm(l);
        notify_changed(l);
}

static int on_memory_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct lending *l = userdata;

        if (memory_measure(l))
                notify_changed(l);
        (void) sd_event_source_set_time_relative(s, MEMORY_POLL_USEC);
        return sd_event_source_set_enabled(s, SD_EVENT_ON);
}

/* The pools to watch, and NVML to watch them with. */
static int memory_setup(struct lending *l) {
        size_t n = skills_count(l->skills);
        int r;

        if (n == 0)
                return 0;
        l->pools = calloc(n, sizeof(*l->pools));
        if (!l->pools)
                return -ENOMEM;
        l->n_pools = n;
        for (size_t i = 0; i < n; i++) {
                l->pools[i].pool = skills_pool(l->skills, i);
                skill_pool_set_state_callback(l->pools[i].pool, on_pool_state, l);
        }
        r = nvml_new(&l->nvml);
        if (r < 0) {
                log_info("No NVML (%s): the skills' GPU memory is unknown; when lending stops, the workers of "
                         "skills that advertise a device other than \"cpu\" give theirs back.", nvml_library());
                return 0;
        }
        (void) memory_measure(l);
        r = sd_event_add_time_relative(l->event, &l->memory_timer, CLOCK_MONOTONIC, MEMORY_POLL_USEC,
                                       100 * 1000, on_memory_timer, l);
        if (r < 0)
                return log_error_errno(r, "Failed to start reading the GPU memory: %m");
        (void) sd_event_source_set_description(l->memory_timer, "lending-memory");
        return 0;
}

static void lend_stop(struct lending *l, uint64_t decided) {
        char took[32] = "", jobs[96] = "no jobs were running";
        size_t busy = jobs_running(l);
        int r;

        /* First the record, so that the swarm stops routing here. */
        if (l->network) {
                r = network_update_record(l->network, l->skills, false);
                if (r < 0)
                        log_warning_errno(r, "Failed to publish that we stopped lending: %m");
        }

        switch (l->preempt) {
        case LENDING_PREEMPT_FREEZE:
                /* Only running jobs are frozen: idle workers stay available
                 * to local requests. */
                if (busy == 0 || !l->skills)
                        break;
                if (l->frozen) {
                        l->frozen_by_lending = true;
                        snprintf(jobs, sizeof(jobs), "%zu job%s already paused", busy, busy == 1 ? "" : "s");
                        break;
                }
                l->frozen_by_lending = true;
                r = jobs_sync(l);
                l->giveback_usec = now(CLOCK_MONOTONIC) - decided;
                format_usec(took, sizeof(took), l->giveback_usec);
                if (r < 0)
                        snprintf(jobs, sizeof(jobs), "freezing %zu job%s failed", busy, busy == 1 ? "" : "s");
                else
                        snprintf(jobs, sizeof(jobs), "%zu job%s frozen in %s", busy, busy == 1 ? "" : "s", took);
                break;
        case LENDING_PREEMPT_KILL:
                if (busy == 0 || !l->skills)
                        break;
                r = skills_kill_all(l->skills);
                /* Killing thaws: freeze again what PauseJobs() asked for. */
                l->frozen = false;
                (void) jobs_sync(l);
                l->giveback_usec = now(CLOCK_MONOTONIC) - decided;
                format_usec(took, sizeof(took), l->giveback_usec);
                if (r < 0)
                        snprintf(jobs, sizeof(jobs), "killing %zu job%s failed: %s", busy, busy == 1 ? "" : "s",
                                 strerror(-r));
                else
                        snprintf(jobs, sizeof(jobs), "%zu job%s killed in %s", busy, busy == 1 ? "" : "s", took);
                break;
        case LENDING_PREEMPT_FINISH:
                if (busy > 0)
                        snprintf(jobs, sizeof(jobs), "%zu job%s left to finish", busy, busy == 1 ? "" : "s");
                break;
        }
        log_notice("Lending stopped: %s (%s).", l->reason, jobs);

        lending_memory_stop(&l->memory, decided);
        memory_update(l);
}

static void lend_start(struct lending *l) {
        bool thaw = l->frozen_by_lending;
        int r;

        /* Jobs frozen for lending continue; the pool cancels any whose
         * deadline passed meanwhile. */
        l->frozen_by_lending = false;
        (void) jobs_sync(l);
        memory_restore(l);
        if (l->network) {
                r = network_update_record(l->network, l->skills, true);
                if (r < 0)
                        log_warning_errno(r, "Failed to publish that we lend again: %m");
        }
        log_notice("Lending resumed: %s%s.", l->reason,
                   thaw ? (l->paused ? " (jobs stay paused)" : " (frozen jobs continue)") : "");
}

static void notify_changed(struct lending *l) {
        if (l->changed)
                l->changed(l, l->userdata);
}

/* Re-decides from the current inputs and applies a change.  force_notify
 * for changes of policy or schedule that need the callback anyway. */
static void lending_update(struct lending *l, bool force_notify) {
        uint64_t decided = now(CLOCK_MONOTONIC);
        char old_reason[sizeof(l->reason)];
        bool lend;

        if (l->policy == LENDING_POLICY_SCHEDULE)
                l->inputs.in_schedule = in_schedule_now(l);
        l->inputs.session_idle = !l->session || l->session->state != IDLE_SOURCE_BUSY;
        l->inputs.gpu_busy = l->gpu_check && l->gpu && l->gpu->state == IDLE_SOURCE_BUSY;
        memcpy(old_reason, l->reason, sizeof(old_reason));
        reason_update(l);

        /* Until logind has answered, the idle policy keeps what was (and
         * does not lend at start-up): switching to it must not stop and
         * restart lending for the few milliseconds of the round trip. */
        if (l->policy == LENDING_POLICY_IDLE && session_waiting(l))
                lend = l->started ? l->lending : false;
        else
                lend = lending_decide(l->policy, l->gpu_check, &l->inputs);

        if (!l->started) {
                /* The first decision: nothing runs yet, only the record
                 * (which starts out lending) may need to say otherwise. */
                l->started = true;
                l->lending = lend;
                log_info("Lending %s: %s.", lend ? "on" : "off", l->reason);
                if (!lend && l->network) {
                        int r = network_update_record(l->network, l->skills, false);
                        if (r < 0)
                                log_warning_errno(r, "Failed to publish that we do not lend: %m");
                }
                if (!lend) {
                        lending_memory_stop(&l->memory, decided);
                        memory_update(l);
                }
                notify_changed(l);
                return;
        }

        if (lend == l->lending) {
                if (strcmp(old_reason, l->reason) != 0)
                        log_debug("Lending stays %s: %s.", lend ? "on" : "off", l->reason);
                if (force_notify || strcmp(old_reason, l->reason) != 0)
                        notify_changed(l);
                return;
        }

        l->lending = lend;
        if (lend)
                lend_start(l);
        else
                lend_stop(l, decided);
        notify_changed(l);
}

/* ---- Idle sources ---- */

static void on_idle_source_changed(struct idle_source *source, void *userdata) {
        lending_update(userdata, false);
}

static void idle_sources_start(struct lending *l) {
        if (l->fake_sources)
                return;
        if (!l->session)
                (void) idle_logind_new(l->bus, on_idle_source_changed, l, &l->session);
        if (l->gpu_check && !l->gpu && !l->gpu_unavailable &&
            idle_nvml_new(on_idle_source_changed, l, &l->gpu) < 0)
                l->gpu_unavailable = true;
}

/* ---- Timers ---- */

static int on_idle_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct lending *l = userdata;

        idle_source_poll(l->session);
        idle_source_poll(l->gpu);
        lending_update(l, false);
        (void) sd_event_source_set_time_relative(s, IDLE_POLL_USEC);
        return sd_event_source_set_enabled(s, SD_EVENT_ON);
}

static uint64_t next_minute_realtime(void) {
        uint64_t wall = now(CLOCK_REALTIME), minute = 60u * 1000 * 1000;

        return (wall / minute + 1) * minute;
}

static int on_schedule_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct lending *l = userdata;

        lending_update(l, false);
        (void) sd_event_source_set_time(s, next_minute_realtime());
        return sd_event_source_set_enabled(s, SD_EVENT_ON);
}

/* Runs the watchers the policy needs and stops the others. */
static int watchers_update(struct lending *l) {
        bool idle = l->policy == LENDING_POLICY_IDLE, schedule = l->policy == LENDING_POLICY_SCHEDULE;
        int r;

        if (idle) {
                if (!l->idle_timer) {
                        r = sd_event_add_time_relative(l->event, &l->idle_timer, CLOCK_MONOTONIC, IDLE_POLL_USEC,
                                                       0, on_idle_timer, l);
                        if (r < 0)
                                return log_error_errno(r, "Failed to start the idle check: %m");
                        (void) sd_event_source_set_description(l->idle_timer, "lending-idle");
                }
                idle_sources_start(l);
        } else {
                l->idle_timer = sd_event_source_disable_unref(l->idle_timer);
                if (!l->fake_sources) {
                        l->session = idle_source_free(l->session);
                        l->gpu = idle_source_free(l->gpu);
                }
        }

        if (schedule) {
                if (!l->schedule_timer) {
                        r = sd_event_add_time(l->event, &l->schedule_timer, CLOCK_REALTIME,
                                              next_minute_realtime(), 0, on_schedule_timer, l);
                        if (r < 0)
                                return log_error_errno(r, "Failed to start the schedule clock: %m");
                        (void) sd_event_source_set_description(l->schedule_timer, "lending-schedule");
                }
        } else
                l->schedule_timer = sd_event_source_disable_unref(l->schedule_timer);
        return 0;
}

/* ---- Configuration ---- */

static int strv_copy(char *const *l, char ***ret) {
        size_t n = 0;
        char **c;

        for (char *const *i = l; i && *i; i++)
                n++;
        c = calloc(n + 1, sizeof(char *));
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                c[i] = strdup(l[i]);
                if (!c[i]) {
                        strv_free(c);
                        return -ENOMEM;
                }
        }
        *ret = c;
        return 0;
}

static bool strv_equal(char *const *a, char *const *b) {
        for (; a && *a && b && *b; a++, b++)
                if (strcmp(*a, *b) != 0)
                        return false;
        return !(a && *a) && !(b && *b);
}

/* Parses every window; on error nothing is returned and error names the
 * window. */
static int schedule_parse(char *const *schedule, struct lending_window **ret, size_t *ret_n, char *error,
                          size_t n) {
        _cleanup_free_ struct lending_window *w = NULL;
        size_t count = 0;
        char why[200];

        for (char *const *i = schedule; i && *i; i++)
                count++;
        w = calloc(count ? count : 1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        for (size_t i = 0; i < count; i++) {
                int r = lending_window_parse(schedule[i], &w[i], why, sizeof(why));
                if (r < 0)
                        return parse_error(error, n, r, "lending.schedule: \"%s\": %s", schedule[i], why);
        }
        *ret = TAKE_PTR(w);
        *ret_n = count;
        return 0;
}

static int schedule_set(struct lending *l, char *const *schedule, char *error, size_t n, bool *changed) {
        _cleanup_free_ struct lending_window *w = NULL;
        _cleanup_strv_free_ char **copy = NULL;
        size_t count = 0;
        int r;

        r = schedule_parse(schedule, &w, &count, error, n);
        if (r < 0)
                return r;
        *changed = !strv_equal(l->schedule, schedule);
        if (!*changed)
                return 0;
        r = strv_copy(schedule, &copy);
        if (r < 0)
                return r;
        strv_free(l->schedule);
        l->schedule = TAKE_PTR(copy);
        free(l->windows);
        l->windows = TAKE_PTR(w);
        l->n_windows = count;
        return 0;
}

static bool policy_valid(int p) {
        return p >= LENDING_POLICY_ALWAYS && p <= LENDING_POLICY_SCHEDULE;
}

static bool preempt_valid(int p) {
        return p >= LENDING_PREEMPT_FREEZE && p <= LENDING_PREEMPT_FINISH;
}

int lending_apply_config(struct lending *l, const struct config *config) {
        char error[256];
        bool schedule_changed = false, policy_changed;
        uint64_t release_after;
        int r;

        if (!l || !config || !policy_valid(config->lending_policy) || !preempt_valid(config->lending_preempt))
                return -EINVAL;
        r = config_parse_release(config->lending_release_device_memory, &release_after, error, sizeof(error));
        if (r < 0)
                return log_error_errno(r, "lending.release_device_memory: %s; keeping the lending settings as "
                                       "they were.", error);

        r = schedule_set(l, config->lending_schedule, error, sizeof(error), &schedule_changed);
        if (r == -EINVAL)
                return log_error_errno(r, "%s; keeping the lending settings as they were.", error);
        if (r < 0)
                return log_oom();

        policy_changed = l->policy != (enum lending_policy_config) config->lending_policy;
        l->policy = config->lending_policy;
        if (l->gpu_check != config->lending_gpu_check)
                l->inputs.gpu_busy = false;
        l->gpu_check = config->lending_gpu_check;
        l->preempt = config->lending_preempt;
        lending_memory_set_after(&l->memory, release_after, now(CLOCK_MONOTONIC));

        r = watchers_update(l);
        lending_update(l, policy_changed || schedule_changed);
        memory_update(l);
        return r;
}

int lending_new(sd_event *event, sd_bus *bus, const struct config *config, struct skills *skills,
                struct network *network, struct lending **ret) {
        struct lending *l;
        int r;

        if (!event || !config || !ret)
                return -EINVAL;

        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->event = sd_event_ref(event);
        l->bus = bus ? sd_bus_ref(bus) : NULL;
        l->skills = skills;
        l->network = network;
        /* Until the first decision the record says we lend (its default). */
        l->lending = true;
        l->policy = LENDING_POLICY_ALWAYS;
        l->schedule = calloc(1, sizeof(char *));
        if (!l->schedule) {
                lending_free(l);
                return -ENOMEM;
        }
        lending_memory_init(&l->memory, CONFIG_RELEASE_NEVER);
        r = memory_setup(l);
        if (r < 0) {
                lending_free(l);
                return r;
        }

        r = lending_apply_config(l, config);
        if (r < 0) {
                lending_free(l);
                return r;
        }
        *ret = l;
        return 0;
}

void lending_stop(struct lending *l) {
        if (!l)
                return;
        /* Never leave jobs frozen behind us. */
        l->paused = l->frozen_by_lending = false;
        (void) jobs_sync(l);
}

struct lending *lending_free(struct lending *l) {
        if (!l)
                return NULL;
        sd_event_source_disable_unref(l->idle_timer);
        sd_event_source_disable_unref(l->schedule_timer);
        sd_event_source_disable_unref(l->release_timer);
        sd_event_source_disable_unref(l->memory_timer);
        sd_event_source_disable_unref(l->confirm_timer);
        for (size_t i = 0; i < l->n_pools; i++)
                skill_pool_set_state_callback(l->pools[i].pool, NULL, NULL);
        free(l->pools);
        free(l->released_pids);
        nvml_free(l->nvml);
        idle_source_free(l->session);
        idle_source_free(l->gpu);
        sd_bus_unref(l->bus);
        sd_event_unref(l->event);
        strv_free(l->schedule);
        free(l->windows);
        free(l);
        return NULL;
}

void lending_set_changed_callback(struct lending *l, lending_changed_fn fn, void *userdata) {
        l->changed = fn;
        l->userdata = userdata;
}

bool lending_is_lending(const struct lending *l) {
        return l && l->lending;
}

enum lending_policy_config lending_get_policy(const struct lending *l) {
        return l->policy;
}

char *const *lending_get_schedule(const struct lending *l) {
        return l->schedule;
}

const char *lending_reason(const struct lending *l) {
        return l->reason;
}

int lending_set_policy(struct lending *l, enum lending_policy_config policy) {
        int r;

        if (!l || !policy_valid((int) policy))
                return -EINVAL;
        if (policy == l->policy)
                return 0;
        log_info("Lending policy: %s (was %s).", policy_name(policy), policy_name(l->policy));
        l->policy = policy;
        r = watchers_update(l);
        lending_update(l, true);
        return r;
}

int lending_set_schedule(struct lending *l, char *const *windows, char *error, size_t n) {
        bool changed = false;
        int r;

        if (!l)
                return -EINVAL;
        r = schedule_set(l, windows, error, n, &changed);
        if (r < 0)
                return r;
        if (changed)
                lending_update(l, true);
        return 0;
}

int lending_pause_jobs(struct lending *l) {
        bool was;
        int r;

        if (!l)
                return -EINVAL;
        was = l->paused;
        l->paused = true;
        r = jobs_sync(l);
        if (r < 0) {
                l->paused = was;
                return r;
        }
        if (!was)
                log_notice("Jobs paused on request; they continue with ResumeJobs.");
        return 0;
}

int lending_resume_jobs(struct lending *l) {
        int r;

        if (!l)
                return -EINVAL;
        if (!l->paused)
                return 0;
        l->paused = false;
        r = jobs_sync(l);
        if (r < 0) {
                l->paused = true;
                return r;
        }
        log_notice("Jobs resumed on request%s.", l->frozen_by_lending ? "; those frozen while not lending stay frozen" : "");
        return 0;
}

bool lending_jobs_paused(const struct lending *l) {
        return l && l->paused;
}

uint64_t lending_last_giveback_usec(const struct lending *l) {
        return l ? l->giveback_usec : 0;
}

int lending_skill_device_memory(const struct lending *l, const struct skill_pool *pool, uint64_t *ret) {
        const struct lending_pool *lp = l ? pool_of(l, pool) : NULL;

        if (!lp || !lp->memory_known)
                return -ENODATA;
        *ret = lp->memory;
        return 0;
}

int lending_last_memory_release(const struct lending *l, uint64_t *ret_usec, uint64_t *ret_bytes) {
        if (!l || !l->release_done)
                return -ENODATA;
        if (ret_usec)
                *ret_usec = l->release_usec;
        if (ret_bytes)
                *ret_bytes = l->released_bytes;
        return 0;
}

void lending_set_idle_sources(struct lending *l, struct idle_source *session, struct idle_source *gpu) {
        idle_source_free(l->session);
        idle_source_free(l->gpu);
        l->session = session;
        l->gpu = gpu;
        l->fake_sources = true;
        if (session) {
                session->changed = on_idle_source_changed;
                session->userdata = l;
        }
        if (gpu) {
                gpu->changed = on_idle_source_changed;
                gpu->userdata = l;
        }
        lending_update(l, false);
}

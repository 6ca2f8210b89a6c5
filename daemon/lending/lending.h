/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The lending switch: whether this machine lends its skills to the swarm
 * right now, decided by a policy (always, never, idle, schedule) and
 * applied at once: the node's gossiped record says whether it lends (so
 * the swarm stops routing here), and running jobs are frozen, killed or
 * left to finish (lending.preempt); when lending resumes, frozen jobs
 * continue.
 *
 * The decision itself is pure (lending_decide() and the schedule parser
 * take the time and the inputs as arguments), so it is tested at window
 * boundaries without waiting for them; the object around it watches
 * logind's IdleHint over D-Bus, the GPU through NVML when available, and
 * the clock. */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "config.h"

struct lending;
struct skill_pool;
struct skills;
struct network;

/* ---- Pure parts ---- */

/* One schedule window: days (bit 0 = Sunday … bit 6 = Saturday) and
 * minutes since midnight; end <= start crosses midnight (into the next
 * day, which need not be in days). */
struct lending_window {
        uint8_t days;
        uint16_t start_minute, end_minute;
};

/* Parses "[DAYS ]HH:MM-HH:MM" (DAYS: "mon-fri", "sat,sun", "daily"; "24:00"
 * allowed as an end).  -EINVAL with a message naming what was wrong in
 * error (size n). */
int lending_window_parse(const char *s, struct lending_window *ret, char *error, size_t n);

/* Whether local time tm falls in any of the windows. */
bool lending_windows_contain(const struct lending_window *w, size_t n, const struct tm *tm);

struct lending_inputs {
        bool session_idle;              /* logind IdleHint of the active session (true when none) */
        bool gpu_busy;                  /* another process uses the GPU (NVML) */
        bool in_schedule;               /* now inside a schedule window */
};

/* The policy's verdict. */
bool lending_decide(enum lending_policy_config policy, bool gpu_check, const struct lending_inputs *in);

/* Device memory while not lending (lending.release_device_memory).  Held
 * while lending; when lending stops, a grace period starts (the jobs are
 * frozen or killed at once, as lending.preempt says), at whose end the
 * workers that hold device memory are stopped: released.  Lending again
 * starts them again.  release_after is in µs, CONFIG_RELEASE_NEVER for
 * never, 0 for at once; now is CLOCK_MONOTONIC µs, given by the caller. */
enum lending_memory_state {
        LENDING_MEMORY_HELD,            /* lending, or kept while not lending (never) */
        LENDING_MEMORY_GRACE,           /* not lending: released at the deadline */
        LENDING_MEMORY_RELEASED,        /* the workers holding it were stopped */
};

struct lending_memory {
        enum lending_memory_state state;
        uint64_t release_after;
        bool lending;
        uint64_t since;                 /* when the grace period started */
};

void lending_memory_init(struct lending_memory *m, uint64_t release_after);
/* Lending stopped at now. */
void lending_memory_stop(struct lending_memory *m, uint64_t now);
/* Lending resumed; true when released workers are to be started again. */
bool lending_memory_start(struct lending_memory *m);
/* A new lending.release_device_memory: a grace period under way keeps its
 * start (a shorter one may be over at once); one starts now where memory is
 * held while not lending; released memory stays released. */
void lending_memory_set_after(struct lending_memory *m, uint64_t release_after, uint64_t now);
/* While released, something started the workers again (a local request),
 * or could not be released yet: a new grace period from now. */
void lending_memory_woken(struct lending_memory *m, uint64_t now);
/* When the grace period ends (CLOCK_MONOTONIC µs); UINT64_MAX outside one. */
uint64_t lending_memory_deadline(const struct lending_memory *m);
/* True when the workers are to be released at now; the state is then
 * released. */
bool lending_memory_due(struct lending_memory *m, uint64_t now);

/* ---- The switch ---- */

typedef void (*lending_changed_fn)(struct lending *l, void *userdata);

/* bus may be NULL (no logind: idle means "no session is active"). skills
 * and network may be NULL; both are borrowed and must outlive the lending
 * object (free it first: it thaws what it froze).  -EINVAL, logged, for an
 * invalid lending.schedule.
 *
 * The idle policy reads org.freedesktop.login1.Manager's IdleHint on bus
 * (asynchronously, then following its PropertiesChanged signal and
 * re-reading every 10 s), lends only once logind has answered, and treats
 * a bus without logind like no bus.  With lending.gpu_check it also polls
 * NVML (libnvidia-ml.so.1, dlopen()ed at run time; nvml.h) every second
 * for GPU processes that are not swarmd's descendants; without NVML it
 * sees none.
 *
 * When lending stops, the record is republished first; then, with preempt
 * freeze or kill, running jobs are frozen or killed (idle workers are left
 * alone, so local requests still run); with finish they run on.  Then,
 * after lending.release_device_memory's grace period, the pools whose
 * workers hold device memory — as NVML measures it; without NVML, those
 * whose skill advertises a device other than "cpu" — are released
 * (skill_pool_release(): frozen jobs are killed, their requesters reroute;
 * jobs left to finish end first), and a log line says how much memory came
 * back and how long it took.  When lending resumes, released pools start
 * their workers again (their Skills state is "warming" until one is up). */
int lending_new(sd_event *event, sd_bus *bus, const struct config *config, struct skills *skills,
                struct network *network, struct lending **ret);
/* The goodbye: thaws whatever lending froze (jobs are never left frozen
 * behind us).  Call it while the pools still exist. */
void lending_stop(struct lending *l);
/* Frees; touches no job. */
struct lending *lending_free(struct lending *l);

/* Called after every change of Lending, LendingPolicy or Schedule (for
 * D-Bus PropertiesChanged and sd_notify STATUS). */
void lending_set_changed_callback(struct lending *l, lending_changed_fn fn, void *userdata);

/* Applies the live lending.* keys after a reload; the policy from the
 * configuration replaces one set at run time.  An invalid schedule fails
 * with -EINVAL (logged) and changes nothing. */
int lending_apply_config(struct lending *l, const struct config *config);

bool lending_is_lending(const struct lending *l);
enum lending_policy_config lending_get_policy(const struct lending *l);
/* The schedule as configured, NULL-terminated. */
char *const *lending_get_schedule(const struct lending *l);
/* Why lending is as it is, for humans: "idle policy: session active". */
const char *lending_reason(const struct lending *l);

/* SetLending(b) sets policy always (true) or never (false). */
int lending_set_policy(struct lending *l, enum lending_policy_config policy);
/* Replaces the schedule (validated first: -EINVAL with error filled). */
int lending_set_schedule(struct lending *l, char *const *windows, char *error, size_t n);

/* PauseJobs()/ResumeJobs(): freeze or thaw every running job regardless of
 * policy. */
int lending_pause_jobs(struct lending *l);
int lending_resume_jobs(struct lending *l);
bool lending_jobs_paused(const struct lending *l);

/* For benchmarks and tests: CLOCK_MONOTONIC µs between the last decision
 * to stop lending and every job being frozen or killed (0 if none yet). */
uint64_t lending_last_giveback_usec(const struct lending *l);

/* The device memory the workers of pool hold, in bytes, as NVML reports it
 * (refreshed every few seconds, and around a release): 0, or -ENODATA when
 * unknown (no NVML, or it gives no figure). */
int lending_skill_device_memory(const struct lending *l, const struct skill_pool *pool, uint64_t *ret);

/* The last release of device memory (lending.release_device_memory): how
 * long from its start (the end of the grace period; with "immediately",
 * the decision to stop lending) until the released workers had all exited
 * and, with NVML, NVML listed none of them any more; and how many bytes
 * NVML saw them hold before (UINT64_MAX: unknown).  -ENODATA before the
 * first completed release. */
int lending_last_memory_release(const struct lending *l, uint64_t *ret_usec, uint64_t *ret_bytes);

struct idle_source;

/* Replaces the idle policy's sources (idle-source.h) for good, taking
 * them: tests hand in idle_fake_new() ones.  Either may be NULL (no
 * session: waiting; no GPU source: never busy). */
void lending_set_idle_sources(struct lending *l, struct idle_source *session, struct idle_source *gpu);

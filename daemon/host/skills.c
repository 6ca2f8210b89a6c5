/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "cgroup.h"
#include "log.h"
#include "macro.h"
#include "skill-index.h"
#include "skill-loader.h"
#include "time-util.h"
#include "skills.h"

#define SETTLE_CHECK_USEC (50 * 1000)
/* How long `swarm-worker --name` may take to load a plugin and name it. */
#define DESCRIBE_TIMEOUT_USEC (10 * 1000 * 1000)
/* A name no plugin answered to is not looked for again this soon: each
 * search starts a process per plugin. */
#define MISS_TTL_USEC (30 * 1000 * 1000)
#define MISSES_MAX 16

struct hosted_skill {
        char *name;
        char *path;
        struct swarm_values *options;
        struct skill_pool *pool;
        bool settled;
};

struct skills {
        sd_event *event;
        struct cgroup *cgroups;
        struct hosted_skill *items;
        size_t n;
        char **failed;                  /* skills that could not even be started */
        /* Verification-only pools (skills_verifier()): not hosted, not
         * offered, outside the job cgroups (lending does not pause them). */
        struct hosted_skill *verifiers;
        size_t n_verifiers;
        char *dirs;
        char *worker;
        /* skills.options, kept for the verifiers started later: a skill
         * verifies with the settings it would be hosted with (textgen needs
         * its model). */
        char **options;
        uint64_t kill_grace;
        sd_event_source *settle_timer;
        skills_settled_fn settled;
        skills_changed_fn changed;
        void *changed_userdata;
        void *userdata;
        char description[1024];
        struct {
                char name[SWARM_VALUE_NAME_MAX + 1];
                uint64_t when;
        } misses[MISSES_MAX];
        size_t next_miss;
};

static int describe_with_worker(const char *path, void *userdata, char **ret) {
        struct skills *s = userdata;

        return skill_index_name_of(s->worker, path, DESCRIBE_TIMEOUT_USEC, ret);
}

/* The routing name of a hosted skill: its descriptor's, once a worker has
 * said it; until then the name it was configured by. */
static const char *routing_name(const struct hosted_skill *h) {
        const struct skill_info *info = h->pool ? skill_pool_info(h->pool) : NULL;

        return info && info->name ? info->name : h->name;
}

/* skills.options entries "SKILL.KEY=VALUE" for this skill. */
static int options_for(char *const *options, const char *skill, struct swarm_values **ret) {
        struct swarm_values *v = swarm_values_new();
        size_t l = strlen(skill);

        if (!v)
                return -ENOMEM;
        for (char *const *o = options; o && *o; o++) {
                const char *eq = strchr(*o, '='), *key = *o + l + 1;
                _cleanup_free_ char *k = NULL;
                char *end;
                long long x;
                int r;

                if (strncmp(*o, skill, l) != 0 || (*o)[l] != '.')
                        continue;
                if (!eq || eq <= key) {
                        swarm_values_free(v);
                        return log_error_errno(-EINVAL, "skills.options: \"%s\" is not SKILL.KEY=VALUE", *o);
                }
                k = strndup(key, (size_t) (eq - key));
                if (!k) {
                        swarm_values_free(v);
                        return -ENOMEM;
                }
                errno = 0;
                x = strtoll(eq + 1, &end, 0);
                if (eq[1] && !*end && errno == 0)
                        r = swarm_values_set_int(v, k, x);
                else
                        r = swarm_values_set_string(v, k, eq + 1);
                if (r < 0) {
                        swarm_values_free(v);
                        return log_error_errno(r, "skills.options: \"%s\": %s", *o,
                                               r == -EEXIST ? "key given twice" : "bad key");
                }
        }
        *ret = v;
        return 0;
}

static bool all_settled(struct skills *s) {
        for (size_t i = 0; i < s->n; i++) {
                struct hosted_skill *h = &s->items[i];
                if (!h->settled && (skill_pool_info(h->pool) || skill_pool_restarts(h->pool) > 0)) {
                        h->settled = true;
                        if (!skill_pool_info(h->pool))
                                log_error("Skill %s did not start: %s; retrying with backoff.", h->name,
                                          skill_pool_last_error(h->pool) ?: "unknown error");
                }
                if (!h->settled)
                        return false;
        }
        return true;
}

static int on_settle_check(sd_event_source *es, uint64_t usec, void *userdata) {
        struct skills *s = userdata;

        if (!all_settled(s)) {
                (void) sd_event_source_set_time_relative(es, SETTLE_CHECK_USEC);
                return sd_event_source_set_enabled(es, SD_EVENT_ONESHOT);
        }
        s->settle_timer = sd_event_source_disable_unref(s->settle_timer);
        if (s->settled)
                s->settled(s, s->userdata);
        return 0;
}

static int cgroups_setup(struct skills *s, const struct config *c) {
        bool under_systemd = getenv("INVOCATION_ID") != NULL;
        bool use = c->skills_cgroups == SKILLS_CGROUPS_ON ||
                (c->skills_cgroups == SKILLS_CGROUPS_AUTO && under_systemd);
        const char *why = c->skills_cgroups == SKILLS_CGROUPS_OFF ? "skills.cgroups is off" :
                "not running as a systemd service (skills.cgroups: auto)";

        if (use)
                /* Under systemd with Delegate=yes our cgroup is ours to split. */
                return cgroup_new(NULL, under_systemd ? CGROUP_MOVE_SELF : 0, &s->cgroups);

        log_info("Jobs run without cgroups, as %s; they are paused and stopped with signals.", why);
        return cgroup_new(NULL, CGROUP_SIGNALS_ONLY, &s->cgroups);
}

int skills_new(sd_event *event, const struct config *c, skills_settled_fn settled, void *userdata,
               struct skills **ret) {
        _cleanup_free_ char *dirs = NULL;
        _cleanup_free_ char *worker = NULL;
        struct cgroup_limits limits = {
                .memory_max = c->skills_memory_max,
                .cpu_max_percent = c->skills_cpu_max,
                .pids_max = c->skills_pids_max,
        };
        struct skills *s;
        size_t n = 0, n_failed = 0, n_options = 0;
        int r;

        for (char **e = c->skills_enabled; e && *e; e++)
                n++;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(event);
        s->settled = settled;
        s->userdata = userdata;
        for (char **o = c->skills_options; o && *o; o++)
                n_options++;
        s->options = calloc(n_options + 1, sizeof(char *));
        if (!s->options) {
                skills_free(s);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_options; i++) {
                s->options[i] = strdup(c->skills_options[i]);
                if (!s->options[i]) {
                        skills_free(s);
                        return -ENOMEM;
                }
        }
        s->items = calloc(n ? n : 1, sizeof(struct hosted_skill));
        s->failed = calloc(n + 1, sizeof(char *));
        worker = skill_worker_path();
        dirs = strdup(c->skills_directory[0] ? c->skills_directory : SKILLDIR);
        if (!s->items || !s->failed || !worker || !dirs) {
                skills_free(s);
                return -ENOMEM;
        }
        s->kill_grace = c->skills_kill_grace;
        s->worker = strdup(worker);
        s->dirs = strdup(dirs);
        if (!s->worker || !s->dirs) {
                skills_free(s);
                return -ENOMEM;
        }

        r = cgroups_setup(s, c);
        if (r < 0) {
                skills_free(s);
                return log_error_errno(r, "Failed to set up the job cgroups: %m");
        }

        for (char **e = c->skills_enabled; e && *e; e++) {
                struct hosted_skill *h = &s->items[s->n];
                struct skill_pool_config pc = {
                        .worker_path = worker,
                        .workers = (unsigned) c->skills_workers,
                        .queue_max = (unsigned) c->skills_queue_limit,
                        .kill_grace_usec = c->skills_kill_grace,
                        .cgroups = s->cgroups,
                };

                h->name = skill_name_from_path(*e);
                if (!h->name) {
                        skills_free(s);
                        return -ENOMEM;
                }
                /* A file name (gemm, example), else a descriptor's name
                 * (example.scale) that some plugin answers to. */
                r = skill_find(*e, dirs, &h->path);
                if (r == -ENOENT && !strchr(*e, '/'))
                        r = skill_index_find(dirs, *e, describe_with_worker, s, &h->path);
                if (r >= 0)
                        r = options_for(c->skills_options, h->name, &h->options);
                if (r >= 0)
                        r = cgroup_add_skill(s->cgroups, h->name, &limits);
                if (r >= 0) {
                        pc.name = h->name;
                        pc.plugin_path = h->path;
                        pc.skill_config = h->options;
                        r = skill_pool_new(event, &pc, &h->pool);
                }
                if (r < 0) {
                        if (r == -ENOENT)
                                log_error("Skill %s: no %s.so (or %s/%s.so) in %s; leaving it out.",
                                          h->name, h->name, h->name, h->name, dirs);
                        else
                                log_error_errno(r, "Skill %s: cannot start it (%m); leaving it out.", h->name);
                        s->failed[n_failed++] = TAKE_PTR(h->name);
                        free(h->path);
                        swarm_values_free(h->options);
                        *h = (struct hosted_skill) {};
                        continue;
                }
                s->n++;
        }

        r = sd_event_add_time_relative(event, &s->settle_timer, CLOCK_MONOTONIC, 0, 0, on_settle_check, s);
        if (r < 0) {
                skills_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

struct skills *skills_free(struct skills *s) {
        if (!s)
                return NULL;
        sd_event_source_disable_unref(s->settle_timer);
        for (size_t i = 0; i < s->n; i++) {
                skill_pool_free(s->items[i].pool);
                swarm_values_free(s->items[i].options);
                free(s->items[i].name);
                free(s->items[i].path);
        }
        free(s->items);
        for (size_t i = 0; i < s->n_verifiers; i++) {
                skill_pool_free(s->verifiers[i].pool);
                swarm_values_free(s->verifiers[i].options);
                free(s->verifiers[i].name);
                free(s->verifiers[i].path);
        }
        free(s->verifiers);
        free(s->dirs);
        free(s->worker);
        strv_free(s->options);
        strv_free(s->failed);
        cgroup_free(s->cgroups);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

const char *skills_describe(struct skills *s) {
        size_t used = 0, n_failed = 0;
        char *b = s->description;
        size_t size = sizeof(s->description);

        for (char **f = s->failed; *f; f++)
                n_failed++;
        used += (size_t) snprintf(b, size, "%zu skill%s", s->n, s->n == 1 ? "" : "s");
        for (size_t i = 0; i < s->n && used < size; i++) {
                const struct hosted_skill *h = &s->items[i];
                unsigned alive = skill_pool_workers_alive(h->pool);
                used += (size_t) snprintf(b + used, size - used, "%s%s (%u worker%s%s)", i ? ", " : ": ",
                                          h->name, alive, alive == 1 ? "" : "s",
                                          skill_pool_released(h->pool) ? ", released while not lending" :
                                          skill_pool_warming(h->pool) && alive == 0 ? ", warming up" :
                                          skill_pool_info(h->pool) ? "" : ", not started");
        }
        if (n_failed && used < size) {
                used += (size_t) snprintf(b + used, size - used, "; %zu failed:", n_failed);
                for (char **f = s->failed; *f && used < size; f++)
                        used += (size_t) snprintf(b + used, size - used, " %s", *f);
        }
        return b;
}

struct skill_pool *skills_get(struct skills *s, const char *name) {
        for (size_t i = 0; i < s->n; i++)
                if (strcmp(routing_name(&s->items[i]), name) == 0)
                        return s->items[i].pool;
        return NULL;
}

int skills_pause(struct skills *s) {
        return cgroup_freeze(s->cgroups);
}

int skills_resume(struct skills *s) {
        return cgroup_thaw(s->cgroups);
}

int skills_kill_all(struct skills *s) {
        return cgroup_kill(s->cgroups);
}

size_t skills_count(const struct skills *s) {
        return s ? s->n : 0;
}

const char *skills_name(const struct skills *s, size_t i) {
        return i < s->n ? routing_name(&s->items[i]) : NULL;
}

const char *skills_file_of(struct skills *s, const char *name) {
        for (size_t i = 0; s && i < s->n; i++)
                if (strcmp(s->items[i].name, name) == 0 && strcmp(routing_name(&s->items[i]), name) != 0)
                        return routing_name(&s->items[i]);
        return NULL;
}

struct skill_pool *skills_pool(const struct skills *s, size_t i) {
        return i < s->n ? s->items[i].pool : NULL;
}

struct skill_pool *skills_verifier(struct skills *s, const char *name) {
        struct hosted_skill h = {}, *grown;
        struct skill_pool_config pc = {
                .workers = 1,
                .kill_grace_usec = s->kill_grace,
        };
        struct skill_pool *p = skills_get(s, name);
        int r;

        if (p)
                return p;
        for (size_t i = 0; i < s->n_verifiers; i++)
                if (strcmp(s->verifiers[i].name, name) == 0)
                        return s->verifiers[i].pool;
        /* A name only: a path here would load whatever a requester names. */
        if (strchr(name, '/') || !s->dirs || !s->worker)
                return NULL;

        for (size_t i = 0; i < MISSES_MAX; i++)
                if (strcmp(s->misses[i].name, name) == 0 &&
                    now(CLOCK_MONOTONIC) < s->misses[i].when + MISS_TTL_USEC)
                        return NULL;
        r = skill_index_find(s->dirs, name, describe_with_worker, s, &h.path);
        if (r < 0) {
                log_debug("No plugin for skill %s in %s: cannot verify its results.", name, s->dirs);
                snprintf(s->misses[s->next_miss].name, sizeof(s->misses[0].name), "%s", name);
                s->misses[s->next_miss].when = now(CLOCK_MONOTONIC);
                s->next_miss = (s->next_miss + 1) % MISSES_MAX;
                return NULL;
        }
        h.name = strdup(name);
        if (options_for(s->options, name, &h.options) < 0)
                h.options = NULL;
        /* Tells the skill this worker only verifies (textgen then starts
         * without a model and has results checked by check jobs). */
        if (h.options && swarm_values_set_int(h.options, "verify-only", 1) < 0 &&
            swarm_values_get_int(h.options, "verify-only", &(int64_t) { 0 }) < 0) {
                swarm_values_free(h.options);
                h.options = NULL;
        }
        grown = reallocarray(s->verifiers, s->n_verifiers + 1, sizeof(*grown));
        if (grown)
                s->verifiers = grown;
        if (h.name && h.options && grown) {
                pc.name = h.name;
                pc.plugin_path = h.path;
                pc.worker_path = s->worker;
                pc.skill_config = h.options;
                r = skill_pool_new(s->event, &pc, &h.pool);
                if (r < 0)
                        log_error_errno(r, "Skill %s: cannot start a worker to verify its results: %m", name);
        }
        if (!h.pool) {
                free(h.name);
                free(h.path);
                swarm_values_free(h.options);
                return NULL;
        }
        log_info("Started a worker for skill %s (%s) to verify results from the swarm.", name, h.path);
        s->verifiers[s->n_verifiers++] = h;
        return h.pool;
}

static void on_pool_changed(struct skill_pool *pool, void *userdata) {
        struct skills *s = userdata;

        if (s->changed)
                s->changed(s, s->changed_userdata);
}

void skills_set_changed_callback(struct skills *s, skills_changed_fn fn, void *userdata) {
        if (!s)
                return;
        s->changed = fn;
        s->changed_userdata = userdata;
        for (size_t i = 0; i < skills_count(s); i++)
                if (skills_pool(s, i))
                        skill_pool_set_changed_callback(skills_pool(s, i), fn ? on_pool_changed : NULL, s);
}

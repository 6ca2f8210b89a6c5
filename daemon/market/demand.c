/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "demand.h"
#include "log.h"
#include "skill-pool.h"
#include "skills.h"

struct skill_demand {
        char *skill;
        double multiplier;
        double utilisation_sum;
        unsigned samples;
};

struct demand {
        struct skills *skills;
        struct pricing_params params;
        uint64_t interval_usec;
        struct skill_demand *list;
        size_t n;
        sd_event_source *sample_timer, *step_timer;
};

static struct skill_demand *find(const struct demand *d, const char *skill) {
        for (size_t i = 0; i < d->n; i++)
                if (strcmp(d->list[i].skill, skill) == 0)
                        return &d->list[i];
        return NULL;
}

static struct skill_demand *find_or_add(struct demand *d, const char *skill) {
        struct skill_demand *s = find(d, skill), *grown;

        if (s)
                return s;
        grown = reallocarray(d->list, d->n + 1, sizeof(*grown));
        if (!grown)
                return NULL;
        d->list = grown;
        s = &d->list[d->n];
        *s = (struct skill_demand) { .skill = strdup(skill), .multiplier = 1.0 };
        if (!s->skill)
                return NULL;
        d->n++;
        return s;
}

double demand_multiplier(const struct demand *d, const char *skill) {
        const struct skill_demand *s;

        if (!d || !skill)
                return 1.0;
        s = find(d, skill);
        return s ? s->multiplier : 1.0;
}

static void sample(struct demand *d) {
        for (size_t i = 0; i < skills_count(d->skills); i++) {
                struct skill_pool *p = skills_pool(d->skills, i);
                unsigned workers = skill_pool_workers_alive(p);
                struct skill_demand *s;

                if (!skill_pool_info(p) || workers == 0)
                        continue;
                s = find_or_add(d, skills_name(d->skills, i));
                if (!s)
                        continue;
                s->utilisation_sum += (double) (skill_pool_workers_busy(p) + skill_pool_queued(p)) / workers;
                s->samples++;
        }
}

static void step(struct demand *d) {
        for (size_t i = 0; i < d->n; i++) {
                struct skill_demand *s = &d->list[i];
                double u = s->samples ? s->utilisation_sum / s->samples : 0.0, before = s->multiplier;

                s->multiplier = pricing_step(s->multiplier, u, &d->params);
                s->utilisation_sum = 0;
                s->samples = 0;
                if (fabs(s->multiplier - before) > 1e-9)
                        log_debug("Skill %s: utilisation %.2f, demand multiplier %.3f → %.3f.", s->skill, u, before,
                                  s->multiplier);
        }
}

static int on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        struct demand *d = userdata;
        uint64_t interval;

        if (source == d->sample_timer) {
                sample(d);
                interval = DEMAND_SAMPLE_USEC;
        } else {
                step(d);
                interval = d->interval_usec;
        }
        (void) sd_event_source_set_time(source, usec + interval);
        (void) sd_event_source_set_enabled(source, SD_EVENT_ON);
        return 0;
}

int demand_new(sd_event *event, struct skills *skills, const struct pricing_params *params, uint64_t interval_usec,
               struct demand **ret) {
        struct demand *d;
        uint64_t now;
        int r;

        if (!event || !params || !ret)
                return -EINVAL;
        r = pricing_params_check(params);
        if (r < 0)
                return r;
        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        *d = (struct demand) { .skills = skills, .params = *params, .interval_usec = interval_usec };
        if (skills && interval_usec > 0) {
                r = sd_event_now(event, CLOCK_MONOTONIC, &now);
                if (r >= 0)
                        r = sd_event_add_time(event, &d->sample_timer, CLOCK_MONOTONIC, now + DEMAND_SAMPLE_USEC, 0,
                                              on_timer, d);
                if (r >= 0)
                        r = sd_event_add_time(event, &d->step_timer, CLOCK_MONOTONIC, now + interval_usec, 0,
                                              on_timer, d);
                if (r < 0) {
                        demand_free(d);
                        return r;
                }
        }
        *ret = d;
        return 0;
}

struct demand *demand_free(struct demand *d) {
        if (!d)
                return NULL;
        d->sample_timer = sd_event_source_disable_unref(d->sample_timer);
        d->step_timer = sd_event_source_disable_unref(d->step_timer);
        for (size_t i = 0; i < d->n; i++)
                free(d->list[i].skill);
        free(d->list);
        free(d);
        return NULL;
}

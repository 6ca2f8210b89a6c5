/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "challenge.h"
#include "identity.h"
#include "log.h"
#include "macro.h"
#include "membership.h"
#include "network.h"
#include "reputation.h"
#include "requester.h"
#include "shm.h"
#include "time-util.h"

/* How soon the next challenge follows while some provider was never
 * measured. */
#define CHALLENGE_NEWCOMER_USEC (1000u * 1000u)
/* A challenge gets this long before it counts as failed. */
#define CHALLENGE_DEADLINE_USEC (30u * USEC_PER_SEC)

struct challenged {
        uint8_t id[32];
        uint64_t last_usec;
};

struct challenge_run {
        struct challenge *c;            /* NULL once the challenge module is gone */
        uint8_t id[32];
        unsigned n;
        double advertised;
        struct swarm_values *inputs;
};

struct challenge {
        sd_event *event;
        struct requester *requester;
        struct network *network;
        uint64_t interval_usec, max_message_size;
        sd_event_source *timer;
        struct challenged *seen;
        size_t n_seen;
        struct challenge_run *running; /* at most one at a time */
};

static const Swarm__SkillOffer *gemm_offer(const struct member_info *m) {
        for (size_t i = 0; i < m->record->n_skills; i++)
                if (m->record->skills[i]->name && strcmp(m->record->skills[i]->name, CHALLENGE_SKILL) == 0)
                        return m->record->skills[i];
        return NULL;
}

static uint64_t last_challenged(struct challenge *c, const uint8_t id[32]) {
        for (size_t i = 0; i < c->n_seen; i++)
                if (memcmp(c->seen[i].id, id, 32) == 0)
                        return c->seen[i].last_usec;
        return 0;
}

static void mark_challenged(struct challenge *c, const uint8_t id[32], uint64_t now) {
        struct challenged *grown;

        for (size_t i = 0; i < c->n_seen; i++)
                if (memcmp(c->seen[i].id, id, 32) == 0) {
                        c->seen[i].last_usec = now;
                        return;
                }
        grown = reallocarray(c->seen, c->n_seen + 1, sizeof(*grown));
        if (!grown)
                return;
        c->seen = grown;
        memcpy(c->seen[c->n_seen].id, id, 32);
        c->seen[c->n_seen++].last_usec = now;
}

static struct swarm_values *random_inputs(unsigned n) {
        struct swarm_values *v = swarm_values_new();
        const char *names[] = { "a", "b" };

        if (!v)
                return NULL;
        swarm_values_set_allocator(v, shm_allocate, NULL);
        for (size_t k = 0; k < ELEMENTSOF(names); k++) {
                uint64_t shape[2] = { n, n }, state;
                struct swarm_tensor t;
                float *x;

                if (swarm_values_add_tensor(v, names[k], SWARM_DTYPE_F32, 2, shape, &t) < 0) {
                        swarm_values_free(v);
                        return NULL;
                }
                x = (float *) t.data;
                /* Uniform in [-1, 1) from xorshift64*, seeded unpredictably:
                 * the provider cannot precompute, and a few MiB of
                 * randombytes would hold up the event loop for longer. */
                randombytes_buf(&state, sizeof(state));
                state |= 1;
                for (size_t i = 0; i < (size_t) n * n; i++) {
                        state ^= state >> 12;
                        state ^= state << 25;
                        state ^= state >> 27;
                        x[i] = (float) ((state * UINT64_C(0x2545F4914F6CDD1D)) >> 40) * 0x1.0p-23f - 1.0f;
                }
        }
        return v;
}

static void on_done(uint64_t job, struct job_outcome *o, void *userdata) {
        struct challenge_run *run = userdata;
        struct challenge *c = run->c;
        char who[NODE_ID_LEN + 1];

        node_id_from_public_key(run->id, who);
        if (c) {
                c->running = NULL;
                if (o->status == 0) {
                        struct reputation *rep = requester_reputation(c->requester);
                        struct challenge_verdict v;
                        uint64_t now = accounts_now();

                        challenge_judge(2.0 * run->n * run->n * run->n, o->attempt_usec, o->queue_usec,
                                        o->exec_usec, run->advertised, &v);
                        (void) reputation_observe_throughput(rep, run->id, CHALLENGE_SKILL, v.measured,
                                                             run->advertised, now);
                        if (v.liar) {
                                for (unsigned f = 0; f < CHALLENGE_LIAR_PENALTY; f++)
                                        (void) reputation_observe(rep, run->id, CHALLENGE_SKILL, false, now);
                                log_notice("Provider %.12s ran a %ux%u GEMM challenge at %.1f GFLOP/s%s but "
                                           "advertises %.1f GFLOP/s (%.0f %%): counted as %u failures.",
                                           who, run->n, run->n, v.measured / 1e9,
                                           v.inconsistent ? " (its reported times do not fit the round trip)" : "",
                                           run->advertised / 1e9, v.ratio * 100, CHALLENGE_LIAR_PENALTY);
                        } else
                                log_info("Provider %.12s ran a %ux%u GEMM challenge at %.1f GFLOP/s (advertises "
                                         "%.1f, %.0f %%; %.1f GFLOP/s delivered, network included).", who,
                                         run->n, run->n, v.measured / 1e9, run->advertised / 1e9, v.ratio * 100,
                                         v.delivered / 1e9);
                } else
                        /* The requester already counted a provider failure. */
                        log_info("GEMM challenge of provider %.12s failed: %s", who, o->error ?: "?");
        }
        swarm_values_free(o->outputs);
        o->outputs = NULL;
        swarm_values_free(run->inputs);
        free(run);
}

static int challenge_start(struct challenge *c, const uint8_t id[32], double advertised) {
        struct challenge_run *run;
        struct job_spec spec;
        uint64_t now;
        int r;

        if (c->running)
                return -EBUSY;
        if (advertised <= 0)
                return -EINVAL;
        r = sd_event_now(c->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        run = calloc(1, sizeof(*run));
        if (!run)
                return -ENOMEM;
        run->c = c;
        memcpy(run->id, id, 32);
        run->advertised = advertised;
        run->n = challenge_size(advertised, c->max_message_size);
        run->inputs = random_inputs(run->n);
        if (!run->inputs) {
                free(run);
                return -ENOMEM;
        }
        spec = (struct job_spec) {
                .skill = CHALLENGE_SKILL,
                .inputs = run->inputs,
                .max_price = UINT64_MAX,
                .deadline_usec = now + CHALLENGE_DEADLINE_USEC,
                .provider = id,
        };
        mark_challenged(c, id, now);
        c->running = run;
        r = requester_submit(c->requester, &spec, on_done, run, NULL);
        if (r < 0) {
                c->running = NULL;
                swarm_values_free(run->inputs);
                free(run);
                return r;
        }
        return 0;
}

int challenge_now(struct challenge *c, const uint8_t id[32]) {
        struct member_info m;
        const Swarm__SkillOffer *o;

        if (!c || !c->network || membership_find(network_membership(c->network), id, &m) < 0)
                return -ENOENT;
        o = gemm_offer(&m);
        if (!o)
                return -ENOENT;
        return challenge_start(c, id, (double) o->throughput);
}

/* The alive, lending, remote gemm provider challenged longest ago (never,
 * first); true when another never challenged remains after it. */
static bool challenge_someone(struct challenge *c) {
        struct membership *ms = network_membership(c->network);
        const uint8_t *best = NULL;
        uint64_t best_last = UINT64_MAX;
        double advertised = 0;
        unsigned never = 0;

        for (size_t i = 0; i < membership_count(ms); i++) {
                const Swarm__SkillOffer *o;
                struct member_info m;
                uint64_t last;

                if (membership_get(ms, i, &m) < 0 || m.self || m.state != MEMBER_ALIVE || !m.record->lending)
                        continue;
                o = gemm_offer(&m);
                if (!o || o->throughput == 0)
                        continue;
                last = last_challenged(c, m.id);
                never += last == 0;
                if (last < best_last) {
                        best = m.id;
                        best_last = last;
                        advertised = (double) o->throughput;
                }
        }
        if (best) {
                int r = challenge_start(c, best, advertised);
                if (r < 0 && r != -EBUSY)
                        log_debug_errno(r, "Cannot start a GEMM challenge: %m");
                if (r >= 0 && best_last == 0)
                        never--;
        }
        return never > 0;
}

/* Newcomers are measured one after the other as they appear (their advert
 * is all the router knows of them), then everyone every interval. */
static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct challenge *c = userdata;
        bool newcomers = challenge_someone(c);

        (void) sd_event_source_set_time(s, usec + (newcomers && c->interval_usec > CHALLENGE_NEWCOMER_USEC ?
                                                   CHALLENGE_NEWCOMER_USEC : c->interval_usec));
        (void) sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

int challenge_new(sd_event *event, struct requester *requester, struct network *network, uint64_t interval_usec,
                  uint64_t max_message_size, struct challenge **ret) {
        struct challenge *c;
        uint64_t now;
        int r;

        if (!event || !requester || !ret)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        *c = (struct challenge) {
                .event = event,
                .requester = requester,
                .network = network,
                .interval_usec = interval_usec,
                .max_message_size = max_message_size,
        };
        if (network && interval_usec > 0) {
                r = sd_event_now(event, CLOCK_MONOTONIC, &now);
                if (r >= 0)
                        r = sd_event_add_time(event, &c->timer, CLOCK_MONOTONIC,
                                              now + (interval_usec < CHALLENGE_NEWCOMER_USEC ? interval_usec :
                                                     CHALLENGE_NEWCOMER_USEC), 0, on_timer, c);
                if (r < 0) {
                        free(c);
                        return r;
                }
        }
        *ret = c;
        return 0;
}

struct challenge *challenge_free(struct challenge *c) {
        if (!c)
                return NULL;
        /* The requester (freed after us) ends a running challenge and
         * calls on_done, which then only frees its own state. */
        if (c->running)
                c->running->c = NULL;
        c->timer = sd_event_source_disable_unref(c->timer);
        free(c->seen);
        free(c);
        return NULL;
}

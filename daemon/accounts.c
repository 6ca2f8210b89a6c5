/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accounts.h"
#include "identity.h"
#include "job-wire.h"
#include "log.h"
#include "macro.h"
#include "membership.h"
#include "network.h"
#include "opinion.h"
#include "skill-pool.h"
#include "skills.h"

#define USEC_PER_SEC UINT64_C(1000000)
/* Reputation goes to the ledger this often (and at exit). */
#define SAVE_INTERVAL_USEC (10 * USEC_PER_SEC)
/* Utilisation samples per pricing interval are taken this often. */
#define SAMPLE_INTERVAL_USEC (250 * UINT64_C(1000))
/* Peers each gossip round goes to. */
#define GOSSIP_FANOUT 3
/* Others' signed opinions kept for relaying. */
#define RELAY_MAX 64
/* A cheque or opinion batch is small; this is the envelope's limit. */
#define SMALL_MESSAGE_MAX (OPINION_BATCH_MAX * (OPINION_MAX_SIZE + 128u) + 1024u)

struct demand {
        char *skill;
        double multiplier;
        double utilisation_sum;
        unsigned samples;
};

struct relayed {
        uint8_t issuer[32];
        uint64_t version;
        uint8_t *body, *signature;
        size_t body_size;
};

struct accounts {
        sd_event *event;
        struct accounts_config config;
        const struct identity *identity;
        struct network *network;
        struct skills *skills;
        struct ledger *ledger;
        struct reputation *reputation;
        char *path;

        struct demand *demand;
        size_t n_demand;

        struct relayed relay[RELAY_MAX];
        size_t n_relay;
        bool trust_dirty;

        sd_event_source *save_timer, *gossip_timer, *sample_timer, *pricing_timer;
};

uint64_t accounts_now(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000u;
}

static void short_id(const uint8_t id[32], char out[13]) {
        char b[NODE_ID_LEN + 1];

        node_id_from_public_key(id, b);
        snprintf(out, 13, "%.12s", b);
}

static int rearm(sd_event_source *s, uint64_t interval) {
        uint64_t now;
        int r;

        r = sd_event_now(sd_event_source_get_event(s), CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        r = sd_event_source_set_time(s, now + interval);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(s, SD_EVENT_ON);
}

/* ---- Sending ---- */

static int send_envelope(struct accounts *a, const uint8_t to[32], Swarm__JobEnvelope *e) {
        _cleanup_free_ uint8_t *data = NULL;
        size_t size;
        int r;

        if (!a->network)
                return -ENETDOWN;
        r = job_encode(e, SMALL_MESSAGE_MAX, &data, &size);
        if (r < 0)
                return r;
        return network_send_job(a->network, to, data, size);
}

/* cheque: an encoded SignedCheque, as the ledger keeps it. */
static int send_cheque(struct accounts *a, const uint8_t to[32], const uint8_t *cheque, size_t size) {
        Swarm__JobEnvelope e = SWARM__JOB_ENVELOPE__INIT;
        Swarm__SignedCheque *s;
        int r;

        s = swarm__signed_cheque__unpack(NULL, size, cheque);
        if (!s)
                return -EBADMSG;
        e.body_case = SWARM__JOB_ENVELOPE__BODY_CHEQUE;
        e.cheque = s;
        r = send_envelope(a, to, &e);
        swarm__signed_cheque__free_unpacked(s, NULL);
        return r;
}

static bool peer_alive(struct accounts *a, const uint8_t id[32]) {
        struct member_info m;

        return a->network && membership_find(network_membership(a->network), id, &m) >= 0 && !m.self &&
               m.state == MEMBER_ALIVE;
}

/* Every payee's latest cheque, to those alive: covers cheques lost in
 * transit or to a crash between commit and send. */
static void resend_cheques(struct accounts *a) {
        struct ledger_peer *peers = NULL;
        size_t n = 0;

        if (ledger_list_peers(a->ledger, &peers, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ uint8_t *cheque = NULL;
                size_t size;

                if (peers[i].issued == 0 || !peer_alive(a, peers[i].id))
                        continue;
                if (ledger_latest_cheque(a->ledger, peers[i].id, &cheque, &size) >= 0)
                        (void) send_cheque(a, peers[i].id, cheque, size);
        }
        free(peers);
}

/* ---- Paying and being paid ---- */

int accounts_pay(struct accounts *a, const uint8_t job_id[16], const char *skill, const uint8_t payee[32],
                 uint64_t price) {
        _cleanup_free_ uint8_t *cheque = NULL;
        char who[13];
        size_t size;
        int r;

        if (!a || !job_id || !skill || !payee)
                return -EINVAL;
        short_id(payee, who);
        if (a->config.withhold_payments) {
                log_debug("Not paying %s for a %s job: testing.withhold_payments.", who, skill);
                return 0;
        }
        r = ledger_pay(a->ledger, job_id, skill, payee, price, a->identity->secret_key, accounts_now(), &cheque,
                       &size);
        if (r == -EALREADY)
                return 0;       /* paid before: not twice */
        if (r < 0)
                return log_error_errno(r, "Cannot pay %s for a %s job: %m", who, skill);
        r = send_cheque(a, payee, cheque, size);
        if (r < 0)
                /* Written, so not lost: the next resend carries it. */
                log_debug_errno(r, "Cannot send the cheque to %s now, it goes with the next resend: %m", who);
        return 0;
}

void accounts_handle_cheque(struct accounts *a, const uint8_t from[32], const Swarm__SignedCheque *cheque) {
        _cleanup_free_ uint8_t *data = NULL;
        const char *reason = NULL;
        char who[13];
        size_t size;
        int r;

        if (!a || !cheque)
                return;
        short_id(from, who);
        size = swarm__signed_cheque__get_packed_size(cheque);
        if (size > CHEQUE_MAX_SIZE) {
                log_warning("Refusing a cheque from %s: %zu bytes, over %u.", who, size, CHEQUE_MAX_SIZE);
                return;
        }
        data = malloc(size);
        if (!data)
                return;
        swarm__signed_cheque__pack(cheque, data);
        r = ledger_accept_cheque(a->ledger, data, size, accounts_now(), &reason);
        if (r < 0)
                log_warning("Refusing a cheque sent by %s: %s.", who, reason ?: strerror(-r));
        else if (r > 0)
                log_debug("Cheque from %s kept.", who);
}

int accounts_admit(struct accounts *a, const uint8_t requester[32], uint64_t price, char *error, size_t size) {
        uint64_t debt;
        int r;

        if (!a || a->config.debt_limit == 0)
                return 0;
        r = ledger_debt(a->ledger, requester, &debt);
        if (r < 0) {
                snprintf(error, size, "cannot read the ledger: %s", strerror(-r));
                return r;
        }
        if (debt > a->config.debt_limit || price > a->config.debt_limit - debt) {
                snprintf(error, size,
                         "unpaid debt of %" PRIu64 " micro-credits plus this job's %" PRIu64
                         " would pass this provider's limit of %" PRIu64,
                         debt, price, a->config.debt_limit);
                return -EDQUOT;
        }
        return 0;
}

int accounts_served(struct accounts *a, const uint8_t job_id[16], const char *skill, const uint8_t requester[32],
                    uint64_t price) {
        int r;

        if (!a)
                return 0;
        r = ledger_served(a->ledger, job_id, skill, requester, price, accounts_now());
        if (r == -EALREADY)
                return 0;
        if (r < 0)
                return log_error_errno(r, "Cannot record a served %s job in the ledger: %m", skill);
        return 0;
}

/* ---- Reputation ---- */

static int save_reputation(struct accounts *a) {
        _cleanup_free_ struct reputation_row *rows = NULL;
        _cleanup_free_ struct ledger_reputation *out = NULL;
        size_t n = 0;
        int r;

        r = reputation_export(a->reputation, accounts_now(), &rows, &n);
        if (r < 0 || n == 0)
                return r;
        out = calloc(n, sizeof(*out));
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                memcpy(out[i].peer, rows[i].peer, 32);
                snprintf(out[i].skill, sizeof(out[i].skill), "%s", rows[i].skill);
                out[i].successes = rows[i].successes;
                out[i].failures = rows[i].failures;
                out[i].latency_ewma_usec = rows[i].latency_ewma_usec;
                out[i].throughput_ratio = rows[i].throughput_ratio;
                out[i].updated_at = rows[i].updated_at;
        }
        r = ledger_save_reputation(a->ledger, out, n);
        if (r < 0)
                log_warning_errno(r, "Cannot save reputation to %s: %m", a->path);
        return r;
}

static int load_reputation(struct accounts *a) {
        _cleanup_free_ struct ledger_reputation *rows = NULL;
        size_t n = 0;
        int r;

        r = ledger_load_reputation(a->ledger, &rows, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                struct reputation_row row = {
                        .successes = rows[i].successes,
                        .failures = rows[i].failures,
                        .latency_ewma_usec = rows[i].latency_ewma_usec,
                        .throughput_ratio = rows[i].throughput_ratio,
                        .updated_at = rows[i].updated_at,
                };
                memcpy(row.peer, rows[i].peer, 32);
                snprintf(row.skill, sizeof(row.skill), "%s", rows[i].skill);
                (void) reputation_import(a->reputation, &row);
        }
        return 0;
}

static void relay_keep(struct accounts *a, const uint8_t issuer[32], uint64_t version,
                       const Swarm__SignedOpinion *s) {
        struct relayed *slot = NULL;

        for (size_t i = 0; i < a->n_relay; i++)
                if (memcmp(a->relay[i].issuer, issuer, 32) == 0)
                        slot = &a->relay[i];
        if (!slot) {
                if (a->n_relay < RELAY_MAX)
                        slot = &a->relay[a->n_relay++];
                else
                        slot = &a->relay[randombytes_uniform(RELAY_MAX)];
        }
        free(slot->body);
        free(slot->signature);
        *slot = (struct relayed) { .version = version };
        memcpy(slot->issuer, issuer, 32);
        slot->body = malloc(s->body.len);
        slot->signature = malloc(s->signature.len);
        if (!slot->body || !slot->signature) {
                free(slot->body);
                free(slot->signature);
                slot->body = slot->signature = NULL;
                return;
        }
        memcpy(slot->body, s->body.data, s->body.len);
        memcpy(slot->signature, s->signature.data, s->signature.len);
        slot->body_size = s->body.len;
}

void accounts_handle_opinions(struct accounts *a, const uint8_t from[32], const Swarm__OpinionBatch *batch) {
        char who[13];

        if (!a || !batch)
                return;
        short_id(from, who);
        for (size_t i = 0; i < batch->n_opinions; i++) {
                _cleanup_free_ struct reputation_opinion_entry *entries = NULL;
                const char *reason = NULL;
                uint8_t issuer[32];
                uint64_t version;
                size_t n = 0;
                int r;

                r = opinion_open(batch->opinions[i], issuer, &version, &entries, &n, &reason);
                if (r < 0) {
                        log_debug("Dropping an opinion relayed by %s: %s.", who, reason ?: strerror(-r));
                        continue;
                }
                if (memcmp(issuer, a->identity->public_key, 32) == 0)
                        continue;
                r = reputation_add_opinion(a->reputation, issuer, version, entries, n, accounts_now());
                if (r < 0)
                        continue;       /* not newer than what we hold */
                relay_keep(a, issuer, version, batch->opinions[i]);
                a->trust_dirty = true;
        }
}

/* Our own signed opinion and up to OPINION_BATCH_MAX - 1 others', to a
 * few random alive peers. */
static void gossip_opinions(struct accounts *a) {
        _cleanup_free_ struct reputation_opinion_entry *entries = NULL;
        Swarm__SignedOpinion own = SWARM__SIGNED_OPINION__INIT, relayed[OPINION_BATCH_MAX - 1];
        Swarm__SignedOpinion *list[OPINION_BATCH_MAX];
        Swarm__OpinionBatch batch = SWARM__OPINION_BATCH__INIT;
        Swarm__JobEnvelope e = SWARM__JOB_ENVELOPE__INIT;
        struct membership *ms;
        size_t n = 0, n_list = 0, count;
        uint64_t now = accounts_now();
        bool have_own = false;

        if (!a->network)
                return;
        ms = network_membership(a->network);
        count = membership_count(ms);
        if (count < 2)
                return;

        if (reputation_build_opinion(a->reputation, now, &entries, &n) >= 0 && n > 0 &&
            opinion_sign(a->identity->public_key, now, now, entries, n, a->identity->secret_key, &own) >= 0) {
                list[n_list++] = &own;
                have_own = true;
        }
        for (size_t i = 0; i < a->n_relay && n_list < OPINION_BATCH_MAX; i++) {
                /* A random sample when there are more than fit. */
                size_t j = a->n_relay <= OPINION_BATCH_MAX - 1 ? i : randombytes_uniform((uint32_t) a->n_relay);
                struct relayed *r = &a->relay[j];

                if (!r->body)
                        continue;
                relayed[n_list - have_own] = (Swarm__SignedOpinion) SWARM__SIGNED_OPINION__INIT;
                relayed[n_list - have_own].body = (ProtobufCBinaryData) { .len = r->body_size, .data = r->body };
                relayed[n_list - have_own].signature = (ProtobufCBinaryData) { .len = 64, .data = r->signature };
                list[n_list] = &relayed[n_list - have_own];
                n_list++;
        }
        if (n_list == 0)
                return;
        batch.opinions = list;
        batch.n_opinions = n_list;
        e.body_case = SWARM__JOB_ENVELOPE__BODY_OPINIONS;
        e.opinions = &batch;

        for (unsigned k = 0; k < GOSSIP_FANOUT; k++) {
                size_t start = randombytes_uniform((uint32_t) count);

                for (size_t i = 0; i < count; i++) {
                        struct member_info m;

                        if (membership_get(ms, (start + i) % count, &m) < 0 || m.self || m.state != MEMBER_ALIVE)
                                continue;
                        (void) send_envelope(a, m.id, &e);
                        break;
                }
        }
        if (have_own)
                opinion_signed_clear(&own);
}

/* ---- Pricing ---- */

static struct demand *demand_find(struct accounts *a, const char *skill, bool create) {
        struct demand *grown;

        for (size_t i = 0; i < a->n_demand; i++)
                if (strcmp(a->demand[i].skill, skill) == 0)
                        return &a->demand[i];
        if (!create)
                return NULL;
        grown = reallocarray(a->demand, a->n_demand + 1, sizeof(*grown));
        if (!grown)
                return NULL;
        a->demand = grown;
        grown = &a->demand[a->n_demand];
        *grown = (struct demand) { .skill = strdup(skill), .multiplier = 1.0 };
        if (!grown->skill)
                return NULL;
        a->n_demand++;
        return grown;
}

double accounts_demand(struct accounts *a, const char *skill) {
        struct demand *d;

        if (!a || !skill)
                return 1.0;
        d = demand_find(a, skill, false);
        return d ? d->multiplier : 1.0;
}

static void sample_utilisation(struct accounts *a) {
        for (size_t i = 0; i < skills_count(a->skills); i++) {
                struct skill_pool *p = skills_pool(a->skills, i);
                unsigned workers = skill_pool_workers_alive(p);
                struct demand *d;

                if (!skill_pool_info(p) || workers == 0)
                        continue;
                d = demand_find(a, skills_name(a->skills, i), true);
                if (!d)
                        continue;
                d->utilisation_sum += (double) (skill_pool_workers_busy(p) + skill_pool_queued(p)) / workers;
                d->samples++;
        }
}

static void step_prices(struct accounts *a) {
        for (size_t i = 0; i < a->n_demand; i++) {
                struct demand *d = &a->demand[i];
                double u = d->samples ? d->utilisation_sum / d->samples : 0.0, before = d->multiplier;

                d->multiplier = pricing_step(d->multiplier, u, &a->config.pricing);
                d->utilisation_sum = 0;
                d->samples = 0;
                if (fabs(d->multiplier - before) > 1e-9)
                        log_debug("Skill %s: utilisation %.2f, demand multiplier %.3f → %.3f.", d->skill, u,
                                  before, d->multiplier);
        }
}

/* ---- Timers ---- */

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct accounts *a = userdata;
        uint64_t interval;

        if (s == a->save_timer) {
                (void) save_reputation(a);
                interval = SAVE_INTERVAL_USEC;
        } else if (s == a->gossip_timer) {
                if (a->trust_dirty) {
                        reputation_update_trust(a->reputation, accounts_now());
                        a->trust_dirty = false;
                }
                gossip_opinions(a);
                resend_cheques(a);
                interval = a->config.gossip_interval_usec;
        } else if (s == a->sample_timer) {
                sample_utilisation(a);
                interval = SAMPLE_INTERVAL_USEC;
        } else {
                step_prices(a);
                interval = a->config.pricing_interval_usec;
        }
        (void) rearm(s, interval);
        return 0;
}

static int add_timer(struct accounts *a, sd_event_source **s, uint64_t interval) {
        uint64_t now;
        int r;

        if (interval == 0)
                return 0;
        r = sd_event_now(a->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        return sd_event_add_time(a->event, s, CLOCK_MONOTONIC, now + interval, 0, on_timer, a);
}

/* ---- Life cycle ---- */

int accounts_new(sd_event *event, const struct accounts_config *config, const struct identity *identity,
                 struct network *network, struct skills *skills, const char *path, struct accounts **ret,
                 char **error) {
        struct reputation_params rp;
        struct accounts *a;
        int r;

        *error = NULL;
        if (!event || !config || !identity || !path || !ret)
                return -EINVAL;
        r = pricing_params_check(&config->pricing);
        if (r < 0) {
                *error = strdup("pricing: invalid parameters (target, max_step, floor, cap)");
                return r;
        }
        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        *a = (struct accounts) {
                .event = event,
                .config = *config,
                .identity = identity,
                .network = network,
                .skills = skills,
                .path = strdup(path),
        };
        if (!a->path) {
                free(a);
                return -ENOMEM;
        }
        r = ledger_open(path, identity->public_key, config->allowance, &a->ledger, error);
        if (r < 0)
                goto fail;
        reputation_params_default(&rp);
        if (config->half_life_usec > 0)
                rp.half_life_usec = (double) config->half_life_usec;
        r = reputation_new(identity->public_key, &rp, &a->reputation);
        if (r < 0)
                goto fail;
        r = load_reputation(a);
        if (r < 0)
                log_warning_errno(r, "Cannot load the saved reputation from %s, starting afresh: %m", path);
        reputation_update_trust(a->reputation, accounts_now());

        r = add_timer(a, &a->save_timer, SAVE_INTERVAL_USEC);
        if (r >= 0 && network)
                r = add_timer(a, &a->gossip_timer, config->gossip_interval_usec);
        if (r >= 0 && skills && config->pricing_interval_usec > 0) {
                r = add_timer(a, &a->sample_timer, SAMPLE_INTERVAL_USEC);
                if (r >= 0)
                        r = add_timer(a, &a->pricing_timer, config->pricing_interval_usec);
        }
        if (r < 0)
                goto fail;
        if (config->withhold_payments)
                log_warning("testing.withhold_payments is on: this node does not pay for the work it gets "
                            "(a fault-injection switch). Providers will stop serving it at their debt limit.");
        *ret = a;
        return 0;
fail:
        if (!*error && asprintf(error, "%s: %s", path, strerror(-r)) < 0)
                *error = NULL;
        accounts_free(a);
        return r;
}

struct accounts *accounts_free(struct accounts *a) {
        if (!a)
                return NULL;
        if (a->ledger && a->reputation)
                (void) save_reputation(a);
        a->save_timer = sd_event_source_disable_unref(a->save_timer);
        a->gossip_timer = sd_event_source_disable_unref(a->gossip_timer);
        a->sample_timer = sd_event_source_disable_unref(a->sample_timer);
        a->pricing_timer = sd_event_source_disable_unref(a->pricing_timer);
        for (size_t i = 0; i < a->n_relay; i++) {
                free(a->relay[i].body);
                free(a->relay[i].signature);
        }
        for (size_t i = 0; i < a->n_demand; i++)
                free(a->demand[i].skill);
        free(a->demand);
        reputation_free(a->reputation);
        ledger_free(a->ledger);
        free(a->path);
        free(a);
        return NULL;
}

struct ledger *accounts_ledger(struct accounts *a) {
        return a ? a->ledger : NULL;
}

struct reputation *accounts_reputation(struct accounts *a) {
        return a ? a->reputation : NULL;
}

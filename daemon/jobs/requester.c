/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "accounts.h"
#include "attempt.h"
#include "check-sampling.h"
#include "identity.h"
#include "job-wire.h"
#include "ledger.h"
#include "pb-util.h"
#include "jobs-channel.h"
#include "list.h"
#include "log.h"
#include "macro.h"
#include "membership.h"
#include "network.h"
#include "reputation.h"
#include "requester.h"
#include "router.h"
#include "shm.h"
#include "skill-pool.h"
#include "skills.h"
#include "time-util.h"

/* How often a waiting attempt asks membership whether its provider is
 * still alive. */
#define POLL_USEC (100 * USEC_PER_MSEC)
/* Attempt timeout = expected time × this + ATTEMPT_SLACK_USEC. */
#define ATTEMPT_TIME_FACTOR 4.0
#define ATTEMPT_SLACK_USEC (2 * USEC_PER_SEC)
#define HEDGE_MIN_USEC (50 * USEC_PER_MSEC)
/* A job submitted without a deadline gets this much time. */
#define DEFAULT_BUDGET_USEC (60 * USEC_PER_SEC)
/* Streamed bytes kept per attempt for a replay (text: about 250k tokens). */
#define STREAM_KEEP_MAX (1024u * 1024u)
#define EXPLORATION 0.05
#define EXPLORE_BELOW 3

static const uint8_t local_only_id[WIRE_NODE_ID_SIZE];  /* self without a network */

/* A result we still expect from the loser of a hedged job: counted for
 * reputation when it comes, ignored otherwise. */
struct late_result {
        uint8_t job_id[JOB_ID_SIZE];
        uint8_t provider[WIRE_NODE_ID_SIZE];
        char *skill;
        uint64_t started_usec, expire_usec;
        struct late_result *next;
};

struct job;
struct attempt;

/* One request in a local pool.  It outlives its job when the job ends
 * first: the pool calls back later (a running request stops
 * asynchronously), and then the call frees itself. */
struct pool_call {
        struct job *job;                /* NULL once the job is gone */
        struct attempt *attempt;        /* NULL for PRICE */
        enum pool_op op;
        struct pool_request *req;
        struct swarm_values *outputs, *proof;   /* VERIFY: owned */
        uint64_t price;                 /* VERIFY: what the provider charges */
};

struct check_call;

struct attempt {
        struct job *job;
        struct check_call *check;       /* a check job running for this attempt's result */
        size_t cand;                    /* index in job->cands */
        enum attempt_state state;       /* moved only by attempt_move() */
        uint64_t started_usec, deadline_usec;   /* loop time */
        /* Read from the clock, not the loop: latencies below one loop
         * iteration still count. */
        uint64_t sent_clock_usec, latency_usec;
        uint64_t queue_usec, exec_usec;         /* as the provider reported them */
        sd_event_source *timer;
        struct pool_call *call;         /* local EXECUTE or VERIFY */
        /* What this attempt streamed: checked against its signed result's
         * stream_digest, and kept (up to STREAM_KEEP_MAX) to replay to the
         * client if this attempt takes the stream over. */
        struct job_stream_digest stream;
        uint32_t stream_seq;
        struct stream_chunk *chunks;
        size_t n_chunks, chunk_bytes;
        bool chunks_dropped;            /* over STREAM_KEEP_MAX: no replay */
};

struct stream_chunk {
        char *name;
        void *data;
        size_t size;
};

struct job {
        struct requester *r;
        LIST_FIELDS(struct job, jobs);  /* r->jobs while running, then r->finished */
        uint64_t id;
        uint8_t job_id[JOB_ID_SIZE];
        char *skill;
        const struct swarm_values *inputs;
        Swarm__JobValue **wire_inputs;
        size_t n_wire_inputs;
        uint64_t max_price, deadline_usec, submitted_usec;
        bool hedge;
        bool pinned;                    /* only pinned_id may run it */
        uint8_t pinned_id[WIRE_NODE_ID_SIZE];
        job_done_fn done;
        void *userdata;
        char *keep_key;                 /* kept for its submitter under this key, or NULL */
        uint32_t keep_owner;
        uint64_t submitted_clock_usec;
        /* Streaming to the submitter: one attempt's chunks at a time. */
        job_chunk_fn chunk;
        struct attempt *stream_owner;   /* whose chunks the submitter sees */
        uint32_t stream_out_seq;        /* chunks passed on, restarts included */
        bool stream_restart;            /* the next chunk passed on starts over */

        struct skill_pool *pool;        /* prices and verifies */
        struct pool_call *price_call;
        struct router_params params;
        struct router_candidate *cands;
        uint8_t (*ids)[WIRE_NODE_ID_SIZE];
        size_t n_cands, next_cand;
        struct attempt *attempts;       /* n_cands slots */
        size_t n_attempts;
        unsigned failed, rerouted, rejected;
        int last_status;
        char last_error[256];
        sd_event_source *hedge_timer;
        struct accounts_payment *payment;       /* the verified result's, until durable */
        uint64_t reserved;              /* of our credits, for the dearest remote candidate asked */

        bool finished;
        sd_event_source *defer;
        struct job_outcome outcome;
        char error[512];

        /* Check jobs (see requester.h): whom not to ask, which variant. */
        uint8_t (*exclude)[WIRE_NODE_ID_SIZE];
        size_t n_exclude;
        char *variant;
        bool is_check;                  /* this job checks another's result */
        bool any_variant;               /* routed to every variant (router_job.any_variant) */
};

/* A check job run for an attempt's result.  Outlives the attempt when the
 * job ends first (the check is cancelled, its done comes later). */
struct check_call {
        struct job *job;                /* NULL once the attempt is gone */
        struct attempt *attempt;
        uint64_t child;                 /* the check job's id */
        struct swarm_values *inputs;    /* the check job's: owned */
        struct swarm_values *outputs, *proof;   /* the producer's result: owned */
        uint64_t price;                 /* the producer's */
        uint8_t checkers[2][WIRE_NODE_ID_SIZE];
        unsigned n_checkers;            /* checks done */
        /* The first checker's outputs that the skill's advert names in
         * check-retry-inputs: given to a second checker as check.first.*
         * (imagegen: the step the first found wrong, which a second
         * checker's own random picks would likely miss). */
        struct swarm_values *first;
        bool child_running;
};

/* What this requester checked of one provider's results for one skill. */
struct check_count {
        uint8_t id[WIRE_NODE_ID_SIZE];
        char *skill;
        uint64_t checked, unchecked, failed;
};

struct requester {
        sd_event *event;
        struct network *network;
        struct skills *skills;
        struct provider *provider;
        uint64_t max_message_size;
        uint64_t (*rng)(void *userdata);
        void *rng_userdata;
        uint64_t next_id;
        struct job *jobs;               /* running */
        struct job *finished;           /* waiting for done from the loop */
        struct reputation *own_reputation;      /* without accounts */
        struct accounts *accounts;
        struct late_result *late;
        bool stopping;                  /* requester_stop(): the loop is not coming back */

        /* Sampled verification: the skills it applies to, the policy, and
         * the secret the draws are keyed with (never leaves this process). */
        char **sampled;
        struct check_policy check;
        uint8_t check_secret[CHECK_SECRET_SIZE];
        struct check_count *counts;
        size_t n_counts;
};

static uint64_t default_rng(void *userdata) {
        uint64_t x;

        randombytes_buf(&x, sizeof(x));
        return x;
}

static uint64_t now_usec(struct requester *r) {
        uint64_t t;

        if (sd_event_now(r->event, CLOCK_MONOTONIC, &t) >= 0)
                return t;
        return now(CLOCK_MONOTONIC);
}

static struct membership *members(struct requester *r) {
        return r->network ? network_membership(r->network) : NULL;
}

static const uint8_t *self_id(struct requester *r) {
        return r->network ? network_self_id(r->network) : local_only_id;
}

static void provider_name(struct requester *r, const uint8_t id[WIRE_NODE_ID_SIZE], bool local, char out[64]) {
        char b[NODE_ID_LEN + 1];

        if (local) {
                snprintf(out, 64, "local");
                return;
        }
        node_id_from_public_key(id, b);
        snprintf(out, 64, "%s", b);
}

/* ---- Provider statistics: the reputation ---- */

static struct reputation *rep(struct requester *r) {
        return r->accounts ? accounts_reputation(r->accounts) : r->own_reputation;
}

static void stats_record(struct requester *r, const uint8_t id[WIRE_NODE_ID_SIZE], const char *skill,
                         bool success, uint64_t latency_usec) {
        uint64_t now = accounts_now();

        (void) reputation_observe(rep(r), id, skill, success, now);
        if (success)
                (void) reputation_observe_latency(rep(r), id, skill, (double) (latency_usec ?: 1), now);
}

static bool skill_sampled(struct requester *r, const char *skill) {
        for (char **s = r->sampled; s && *s; s++)
                if (strcmp(*s, skill) == 0)
                        return true;
        return false;
}

/* The counters for (id, skill), made on first use; NULL without memory. */
static struct check_count *check_count_of(struct requester *r, const uint8_t id[WIRE_NODE_ID_SIZE],
                                          const char *skill, bool create) {
        struct check_count *c;

        for (size_t i = 0; i < r->n_counts; i++)
                if (memcmp(r->counts[i].id, id, WIRE_NODE_ID_SIZE) == 0 && strcmp(r->counts[i].skill, skill) == 0)
                        return &r->counts[i];
        if (!create)
                return NULL;
        c = reallocarray(r->counts, r->n_counts + 1, sizeof(*c));
        if (!c)
                return NULL;
        r->counts = c;
        c = &r->counts[r->n_counts];
        *c = (struct check_count) {};
        memcpy(c->id, id, WIRE_NODE_ID_SIZE);
        c->skill = strdup(skill);
        if (!c->skill)
                return NULL;
        r->n_counts++;
        return c;
}

int requester_set_check_policy(struct requester *r, const struct check_policy *policy, char *const *sampled) {
        size_t n = 0;
        char **copy;

        while (sampled && sampled[n])
                n++;
        copy = calloc(n + 1, sizeof(char *));
        if (!copy)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (!(copy[i] = strdup(sampled[i]))) {
                        strv_free(copy);
                        return -ENOMEM;
                }
        strv_free(r->sampled);
        r->sampled = copy;
        r->check = *policy;
        return 0;
}

void requester_get_checks(struct requester *r, const uint8_t id[32], const char *skill,
                          struct requester_checks *ret) {
        struct check_count *c = check_count_of(r, id, skill, false);
        struct reputation_view v;

        *ret = (struct requester_checks) { .percent = 100 };
        if (c) {
                ret->checked = c->checked;
                ret->unchecked = c->unchecked;
                ret->failed = c->failed;
        }
        if (skill_sampled(r, skill)) {
                ret->sampled = true;
                reputation_get(rep(r), id, skill, accounts_now(), &v);
                ret->percent = check_percent_for(&r->check, v.own_successes, v.own_failures);
        }
}

struct reputation *requester_reputation(struct requester *r) {
        return rep(r);
}

int requester_get_stats(struct requester *r, const uint8_t id[32], const char *skill,
                        struct requester_stats *ret) {
        struct reputation_view v;

        reputation_get(rep(r), id ?: self_id(r), skill, accounts_now(), &v);
        if (v.own_successes + v.own_failures <= 0 && v.latency_ewma_usec <= 0)
                return -ENOENT;
        *ret = (struct requester_stats) {
                .successes = (uint32_t) lround(v.own_successes),
                .failures = (uint32_t) lround(v.own_failures),
                .latency_ewma_usec = v.latency_ewma_usec,
                .throughput_ratio = v.throughput_ratio,
        };
        return 0;
}

static uint64_t advert_uint(const struct skill_info *info, const char *key) {
        int64_t x = 0;

        if (!info || !info->advert || swarm_values_get_int(info->advert, key, &x) < 0 || x < 0)
                return 0;
        return (uint64_t) x;
}

static const char *advert_str(const struct skill_info *info, const char *key) {
        const char *s = NULL;

        if (!info || !info->advert || swarm_values_get_string(info->advert, key, &s) < 0)
                return NULL;
        return s;
}

/* ---- Jobs ---- */

static bool is_job_error(int status) {
        return status == -EINVAL || status == -E2BIG;
}

/* A provider that says no for its own reasons (not lending, busy, our
 * debt to it) did nothing wrong: we go elsewhere without blaming it. */
static bool is_refusal(int status) {
        return status == -EAGAIN || status == -EBUSY || status == -EDQUOT || status == -EACCES;
}

static bool attempt_move(struct attempt *a, enum attempt_event event);
static void attempt_release(struct attempt *a);
static void job_start_next(struct job *job);
static int on_attempt_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void check_call_free(struct check_call *cc) {
        if (!cc)
                return;
        swarm_values_free(cc->inputs);
        swarm_values_free(cc->outputs);
        swarm_values_free(cc->proof);
        swarm_values_free(cc->first);
        free(cc);
}

static void pool_call_detach(struct pool_call *c) {
        if (!c)
                return;
        c->job = NULL;
        c->attempt = NULL;
        /* Calls back at once for a queued request (freeing c), later for a
         * running one. */
        pool_request_cancel(c->req);
}

static void pool_call_free(struct pool_call *c) {
        swarm_values_free(c->outputs);
        swarm_values_free(c->proof);
        free(c);
}

static int on_job_defer(sd_event_source *s, void *userdata);

static void attempt_chunks_free(struct attempt *a) {
        for (size_t i = 0; i < a->n_chunks; i++) {
                free(a->chunks[i].name);
                free(a->chunks[i].data);
        }
        free(a->chunks);
        a->chunks = NULL;
        a->n_chunks = a->chunk_bytes = 0;
}

/* A job pays for one result: it holds the price of the dearest remote
 * candidate it asked, so that the jobs running never cost more than this
 * node can spend (issue 22). */
static int job_reserve(struct job *job, uint64_t price) {
        int r;

        if (!job->r->accounts || price <= job->reserved)
                return 0;
        r = accounts_reserve(job->r->accounts, price - job->reserved);
        if (r < 0)
                return r;
        job->reserved = price;
        return 0;
}

static void job_unreserve(struct job *job) {
        accounts_unreserve(job->r->accounts, job->reserved);
        job->reserved = 0;
}

static void job_free(struct job *job) {
        job_unreserve(job);
        for (size_t i = 0; i < job->n_attempts; i++)
                attempt_chunks_free(&job->attempts[i]);
        free(job->exclude);
        free(job->variant);
        accounts_payment_forget(job->payment);
        job->hedge_timer = sd_event_source_disable_unref(job->hedge_timer);
        job->defer = sd_event_source_disable_unref(job->defer);
        swarm_values_free(job->outcome.outputs);
        job_values_free_wire(job->wire_inputs, job->n_wire_inputs);
        free(job->attempts);
        free(job->cands);
        free(job->ids);
        free(job->skill);
        free(job->keep_key);
        free(job);
}

static void late_add(struct job *job, struct attempt *a) {
        struct late_result *l = calloc(1, sizeof(*l));

        if (!l || !(l->skill = strdup(job->skill))) {
                free(l);
                return;
        }
        memcpy(l->job_id, job->job_id, JOB_ID_SIZE);
        memcpy(l->provider, job->ids[a->cand], WIRE_NODE_ID_SIZE);
        l->started_usec = a->sent_clock_usec;
        l->expire_usec = a->deadline_usec;
        l->next = job->r->late;
        job->r->late = l;
}

static void late_expire(struct requester *r, uint64_t now) {
        for (struct late_result **p = &r->late; *p;) {
                struct late_result *l = *p;
                if (l->expire_usec <= now) {
                        *p = l->next;
                        free(l->skill);
                        free(l);
                } else
                        p = &l->next;
        }
}

static void deliver(struct job *job) {
        struct requester *r = job->r;

        LIST_REMOVE(jobs, r->finished, job);
        job->defer = sd_event_source_disable_unref(job->defer);
        if (job->done)
                job->done(job->id, &job->outcome, job->userdata);
        job_free(job);
}

/* Ends the job: everything it still runs is stopped, done is called from
 * the loop. */
_printf_(3, 4)
static void job_finish(struct job *job, int status, const char *fmt, ...) {
        struct requester *r = job->r;
        uint64_t now = now_usec(r);
        int k;

        if (job->finished)
                return;
        job->finished = true;
        job->outcome.status = status;
        if (status != 0 && fmt) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(job->error, sizeof(job->error), fmt, ap);
                va_end(ap);
                job->outcome.error = job->error;
        }
        job->outcome.attempts = (unsigned) job->n_attempts;
        job->outcome.rerouted = job->rerouted;
        job->outcome.rejected = job->rejected;
        job->outcome.latency_usec = now - job->submitted_usec;

        job->hedge_timer = sd_event_source_disable_unref(job->hedge_timer);
        /* Paid (the payment holds its own reservation), or not at all. */
        job_unreserve(job);
        if (job->price_call) {
                pool_call_detach(TAKE_PTR(job->price_call));
        }
        for (size_t i = 0; i < job->n_attempts; i++) {
                struct attempt *a = &job->attempts[i];
                if (!attempt_state_is_live(a->state))
                        continue;
                /* A hedged loser's answer still tells us about it. */
                if (a->state == ATTEMPT_ASKED && !job->cands[a->cand].local && status == 0)
                        late_add(job, a);
                attempt_release(a);
                (void) attempt_move(a, ATTEMPT_EVENT_STOP);
        }

        if (status == 0)
                log_debug("Job %" PRIu64 " (%s) done by %s after %u attempt%s.", job->id, job->skill,
                          job->outcome.provider, job->outcome.attempts, job->outcome.attempts == 1 ? "" : "s");
        else
                log_debug("Job %" PRIu64 " (%s) failed: %s", job->id, job->skill, job->error);

        LIST_REMOVE(jobs, r->jobs, job);
        LIST_PREPEND(jobs, r->finished, job);
        if (job->payment)
                return;         /* on_paid() takes it from here */
        if (r->stopping)
                return;         /* requester_stop() delivers it */
        k = sd_event_add_defer(r->event, &job->defer, on_job_defer, job);
        if (k < 0) {
                /* No way back to the loop: say it now rather than never. */
                log_warning_errno(k, "Cannot defer the end of job %" PRIu64 ": %m", job->id);
                deliver(job);
        }
}

static int on_job_defer(sd_event_source *s, void *userdata) {
        deliver(userdata);
        return 0;
}

static size_t running_attempts(const struct job *job) {
        size_t n = 0;

        for (size_t i = 0; i < job->n_attempts; i++)
                n += attempt_state_is_live(job->attempts[i].state);
        return n;
}

/* Moves a to the state event leads to (core/attempt.h); an event the
 * state does not take is a bug here, logged and ignored. */
static bool attempt_move(struct attempt *a, enum attempt_event event) {
        int next = attempt_next(a->state, event);

        if (next < 0) {
                log_error("Job %" PRIu64 ": attempt %s cannot take event %s, ignored.", a->job->id,
                          attempt_state_to_string(a->state), attempt_event_to_string(event));
                return false;
        }
        a->state = next;
        return true;
}

/* Lets go of what a live attempt holds (its timer, its pool call). */
static void attempt_release(struct attempt *a) {
        a->timer = sd_event_source_disable_unref(a->timer);
        if (a->call)
                pool_call_detach(TAKE_PTR(a->call));
        if (a->check) {
                struct check_call *cc = TAKE_PTR(a->check);

                cc->job = NULL;
                cc->attempt = NULL;
                if (cc->child_running)
                        requester_cancel(a->job->r, cc->child);         /* its done frees it */
                else
                        check_call_free(cc);
        }
}

/* ---- Streaming ---- */

/* Passes one chunk on to the submitter, marking a restart when the stream
 * changed hands since the last one. */
static void stream_pass(struct job *job, const char *name, const void *data, size_t size) {
        struct job_chunk c = {
                .seq = job->stream_out_seq++,
                .restart = job->stream_restart,
                .name = name,
                .data = data,
                .size = size,
        };

        job->stream_restart = false;
        job->chunk(job->id, &c, job->userdata);
}

/* a takes the stream over: the submitter is told to start again, and gets
 * what a streamed so far. */
static void stream_take_over(struct job *job, struct attempt *a) {
        if (job->stream_owner == a)
                return;
        if (job->stream_out_seq > 0)
                job->stream_restart = true;
        job->stream_owner = a;
        for (size_t i = 0; i < a->n_chunks; i++)
                stream_pass(job, a->chunks[i].name, a->chunks[i].data, a->chunks[i].size);
}

/* The owner of the stream is gone: the next live attempt that streamed
 * takes over, else the first to stream from now on. */
static void stream_owner_lost(struct job *job, struct attempt *a) {
        if (job->stream_owner != a)
                return;
        job->stream_owner = NULL;
        if (job->stream_out_seq > 0)
                job->stream_restart = true;
        for (size_t i = 0; i < job->n_attempts; i++) {
                struct attempt *o = &job->attempts[i];

                if (o != a && attempt_state_is_live(o->state) && o->stream_seq > 0 && !o->chunks_dropped) {
                        stream_take_over(job, o);
                        return;
                }
        }
}

/* A chunk from attempt a, in order (seq is checked by the caller for
 * remote attempts). */
static void stream_chunk_add(struct job *job, struct attempt *a, const char *name, const void *data, size_t size) {
        job_stream_digest_add(&a->stream, name, data, size);
        a->stream_seq++;
        if (!job->chunk)
                return;
        /* Only an attempt whose chunks are all kept can be replayed whole. */
        if (!job->stream_owner && !a->chunks_dropped)
                stream_take_over(job, a);
        if (job->stream_owner == a)
                stream_pass(job, name, data, size);

        /* Kept for a replay, should a take over the stream later. */
        if (!a->chunks_dropped && a->chunk_bytes + size <= STREAM_KEEP_MAX) {
                struct stream_chunk *grown = reallocarray(a->chunks, a->n_chunks + 1, sizeof(*grown));
                struct stream_chunk k = { .name = strdup(name), .data = size ? malloc(size) : NULL, .size = size };

                if (!grown || !k.name || (size && !k.data)) {
                        free(k.name);
                        free(k.data);
                        if (grown)
                                a->chunks = grown;
                        a->chunks_dropped = true;
                        return;
                }
                a->chunks = grown;
                if (size)
                        memcpy(k.data, data, size);
                a->chunks[a->n_chunks++] = k;
                a->chunk_bytes += size;
        } else
                a->chunks_dropped = true;
}

/* At the end, the submitter's stream must be the winner's: if another
 * attempt's chunks were shown, start over with the winner's. */
static void stream_settle(struct job *job, struct attempt *winner) {
        if (!job->chunk || job->stream_owner == winner || job->stream_out_seq == 0)
                return;
        job->stream_owner = NULL;
        job->stream_restart = true;
        if (!winner->chunks_dropped)
                stream_take_over(job, winner);
        if (job->stream_restart)
                /* Nothing of the winner's to show (it streamed nothing, or
                 * too much to replay): still say the shown text is void;
                 * the outputs hold the result. */
                stream_pass(job, NULL, NULL, 0);
}

/* The attempt failed: the failure is the provider's unless said
 * otherwise; the job goes on with the next candidate unless another
 * attempt is still running or the job itself is bad. */
_printf_(4, 5)
static void attempt_fail(struct attempt *a, int status, bool blame, const char *fmt, ...) {
        struct job *job = a->job;
        struct router_candidate *c = &job->cands[a->cand];
        char who[64], what[200];
        va_list ap;

        if (!attempt_state_is_live(a->state) || job->finished)
                return;
        attempt_release(a);
        (void) attempt_move(a, ATTEMPT_EVENT_FAIL);
        stream_owner_lost(job, a);
        provider_name(job->r, job->ids[a->cand], c->local, who);
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        job->failed++;
        job->last_status = status;
        snprintf(job->last_error, sizeof(job->last_error), "%.12s: %s", who, what);
        log_debug("Job %" PRIu64 " (%s): provider %s failed: %s", job->id, job->skill, who, what);
        if (blame)
                stats_record(job->r, job->ids[a->cand], job->skill, false, 0);

        /* Routed to every variant (results checked elsewhere), a provider
         * of another model refusing the job ("not the model asked for")
         * says nothing of the job: the next may serve it. */
        if (is_job_error(status) && !job->any_variant) {
                job_finish(job, status, "%s", job->last_error);
                return;
        }
        if (running_attempts(job) > 0)
                return;
        job_start_next(job);
}

static void on_pool_done(struct pool_request *req, struct pool_result *res, void *userdata);

static int attempt_arm_timer(struct attempt *a, uint64_t now) {
        struct job *job = a->job;
        uint64_t at = a->deadline_usec;

        if (!job->cands[a->cand].local && now + POLL_USEC < at)
                at = now + POLL_USEC;
        if (a->timer)
                return sd_event_source_set_time(a->timer, at) < 0 ? -EIO :
                       sd_event_source_set_enabled(a->timer, SD_EVENT_ONESHOT);
        return sd_event_add_time(job->r->event, &a->timer, CLOCK_MONOTONIC, at, 0, on_attempt_timer, a);
}

static int attempt_send_remote(struct attempt *a, uint64_t now) {
        struct job *job = a->job;
        Swarm__JobRequest req = SWARM__JOB_REQUEST__INIT;
        Swarm__JobEnvelope env = SWARM__JOB_ENVELOPE__INIT;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size;
        int r;

        if (!job->r->network)
                return -ENETDOWN;
        req.job_id = (ProtobufCBinaryData) { .len = JOB_ID_SIZE, .data = job->job_id };
        req.skill = job->skill;
        req.inputs = job->wire_inputs;
        req.n_inputs = job->n_wire_inputs;
        req.max_price = job->max_price;
        /* Clocks are not shared: the budget, from the provider's receipt. */
        req.deadline_ms = (a->deadline_usec - now) / USEC_PER_MSEC;
        if (req.deadline_ms == 0)
                req.deadline_ms = 1;
        env.body_case = SWARM__JOB_ENVELOPE__BODY_REQUEST;
        env.request = &req;
        r = job_encode(&env, job->r->max_message_size, &buf, &size);
        if (r < 0)
                return r;
        return network_send_job(job->r->network, job->ids[a->cand], buf, size);
}

static void on_local_chunk(struct pool_request *req, const char *name, const void *data, size_t size,
                           void *userdata) {
        struct attempt *a = userdata;

        if (a->state == ATTEMPT_ASKED && !a->job->finished)
                stream_chunk_add(a->job, a, name, data, size);
}

static int attempt_run_local(struct attempt *a) {
        struct job *job = a->job;
        struct skill_pool *pool = job->r->skills ? skills_get(job->r->skills, job->skill) : NULL;
        struct pool_call *c;
        int r;

        if (!pool)
                return -ENOENT;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->job = job;
        c->attempt = a;
        c->op = POOL_EXECUTE;
        r = skill_pool_submit(pool, POOL_EXECUTE, job->inputs, NULL, NULL, a->deadline_usec, on_pool_done, c,
                              &c->req);
        if (r < 0) {
                free(c);
                return r;
        }
        skill_pool_request_on_chunk(c->req, on_local_chunk, a);
        a->call = c;
        return 0;
}

static int on_hedge_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* Asks candidate job->next_cand; false when it could not even be asked
 * (the failure is recorded). */
static bool attempt_start(struct job *job, uint64_t at) {
        struct attempt *a;
        struct router_candidate *c;
        double expected;
        uint64_t timeout;
        int r;

        /* Never asked when this node could not pay it: not the provider's
         * failure, so no attempt. */
        c = &job->cands[job->next_cand];
        if (!c->local && c->price > 0 && job_reserve(job, c->price) < 0) {
                job->next_cand++;
                job->last_status = -EDQUOT;
                snprintf(job->last_error, sizeof(job->last_error),
                         "this node cannot pay %" PRIu64 " µcredits: it can spend %" PRIu64 " now (credits held, "
                         "less its transfers in flight and what its running jobs hold; `swarmctl credits`)",
                         c->price, accounts_available(job->r->accounts));
                return false;
        }
        a = &job->attempts[job->n_attempts++];

        *a = (struct attempt) { .job = job, .cand = job->next_cand++, .started_usec = at, .state = ATTEMPT_ASKED,
                                .sent_clock_usec = now(CLOCK_MONOTONIC) };
        job_stream_digest_init(&a->stream);
        c = &job->cands[a->cand];
        expected = router_expected_usec(c, &job->params);
        timeout = expected * ATTEMPT_TIME_FACTOR < 1e15 ? (uint64_t) (expected * ATTEMPT_TIME_FACTOR) : (uint64_t) 1e15;
        timeout += ATTEMPT_SLACK_USEC;
        a->deadline_usec = at + timeout < job->deadline_usec ? at + timeout : job->deadline_usec;
        if (job->failed > 0)
                job->rerouted++;

        r = c->local ? attempt_run_local(a) : attempt_send_remote(a, at);
        if (r >= 0)
                r = attempt_arm_timer(a, at);
        if (r < 0) {
                char who[64];

                provider_name(job->r, job->ids[a->cand], c->local, who);
                attempt_release(a);
                (void) attempt_move(a, ATTEMPT_EVENT_FAIL);
                job->failed++;
                job->last_status = r;
                snprintf(job->last_error, sizeof(job->last_error), "%.12s: cannot send the job: %s", who,
                         strerror(-r));
                stats_record(job->r, job->ids[a->cand], job->skill, false, 0);
                return false;
        }

        if (job->hedge && job->n_attempts == 1 && job->next_cand < job->n_cands) {
                uint64_t delay = c->latency_ewma_usec > HEDGE_MIN_USEC ? (uint64_t) c->latency_ewma_usec
                                                                        : HEDGE_MIN_USEC;
                (void) sd_event_add_time(job->r->event, &job->hedge_timer, CLOCK_MONOTONIC, at + delay, 0,
                                         on_hedge_timer, job);
        }
        return true;
}

/* Goes on with the next candidate, or ends the job when none is left or
 * time is up. */
static void job_start_next(struct job *job) {
        uint64_t now = now_usec(job->r);

        while (!job->finished && now < job->deadline_usec && job->next_cand < job->n_cands)
                if (attempt_start(job, now))
                        return;
        if (job->finished || running_attempts(job) > 0)
                return;
        if (job->n_attempts == 0 && job->last_status == -EDQUOT)
                job_finish(job, -EDQUOT, "%s", job->last_error);
        else if (now >= job->deadline_usec)
                job_finish(job, -ETIMEDOUT, "deadline passed after %zu attempt%s%s%s", job->n_attempts,
                           job->n_attempts == 1 ? "" : "s", job->failed ? "; last: " : "",
                           job->failed ? job->last_error : "");
        else
                job_finish(job, job->last_status < 0 ? job->last_status : -EHOSTUNREACH,
                           "all %zu provider%s failed; last: %s", job->n_attempts,
                           job->n_attempts == 1 ? "" : "s", job->last_error);
}

static int on_hedge_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct job *job = userdata;
        uint64_t now = now_usec(job->r);

        job->hedge_timer = sd_event_source_disable_unref(job->hedge_timer);
        if (job->finished || running_attempts(job) != 1 || job->attempts[0].state != ATTEMPT_ASKED)
                return 0;
        while (!job->finished && now < job->deadline_usec && job->next_cand < job->n_cands)
                if (attempt_start(job, now)) {
                        log_debug("Job %" PRIu64 " (%s): hedged to a second provider.", job->id, job->skill);
                        break;
                }
        return 0;
}

static int on_attempt_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct attempt *a = userdata;
        struct job *job = a->job;
        uint64_t now = now_usec(job->r);
        struct member_info m;

        if (a->state != ATTEMPT_ASKED)
                return 0;
        if (now >= a->deadline_usec) {
                attempt_fail(a, -ETIMEDOUT, true, "no result within %" PRIu64 " ms",
                             (uint64_t) ((a->deadline_usec - a->started_usec) / USEC_PER_MSEC));
                return 0;
        }
        if (!job->cands[a->cand].local && members(job->r)) {
                if (membership_find(members(job->r), job->ids[a->cand], &m) < 0)
                        m.state = MEMBER_DEAD;
                if (m.state != MEMBER_ALIVE) {
                        attempt_fail(a, -EHOSTDOWN, true, "provider is %s", member_state_to_string(m.state));
                        return 0;
                }
        }
        if (attempt_arm_timer(a, now) < 0)
                attempt_fail(a, -EIO, false, "cannot arm a timer");
        return 0;
}

/* A result in hand (remote or local): the skill's verify() decides. */
static void attempt_accept(struct attempt *a, struct pool_call *c, bool checked);

/* ---- Check jobs ---- */

/* Adds value v to dst under name. */
static int values_copy_one(struct swarm_values *dst, const char *name, const struct swarm_value *v) {
        struct swarm_tensor t;
        int r;

        switch (v->type) {
        case SWARM_VALUE_TENSOR:
                r = swarm_values_add_tensor(dst, name, v->tensor.dtype, v->tensor.ndim, v->tensor.shape, &t);
                if (r >= 0)
                        memcpy(t.data, v->tensor.data, v->tensor.size);
                return r;
        case SWARM_VALUE_STRING:
                return swarm_values_set_string(dst, name, v->string);
        case SWARM_VALUE_INT:
                return swarm_values_set_int(dst, name, v->integer);
        case SWARM_VALUE_BYTES:
                return swarm_values_set_bytes(dst, name, v->data, v->size);
        }
        return -EINVAL;
}

/* Copies src's values into dst, each name prefixed (prefix "" for none);
 * only those in names (a comma-separated list) when names is not NULL.
 * Names that would pass the limit are left out. */
static int values_copy(struct swarm_values *dst, const struct swarm_values *src, const char *prefix,
                       const char *names) {
        struct swarm_value v;

        for (size_t i = 0; swarm_values_at(src, i, &v) >= 0; i++) {
                char name[64];
                int r;

                if (names) {
                        size_t l = strlen(v.name);
                        const char *p = names;
                        bool listed = false;

                        while ((p = strstr(p, v.name))) {
                                if ((p == names || p[-1] == ',') && (p[l] == ',' || p[l] == '\0'))
                                        listed = true;
                                p += l;
                        }
                        if (!listed)
                                continue;
                }
                if ((size_t) snprintf(name, sizeof(name), "%s%s", prefix, v.name) >= sizeof(name))
                        continue;
                r = values_copy_one(dst, name, &v);
                if (r < 0)
                        return r;
        }
        return 0;
}

static struct swarm_values *values_new_shm(void) {
        struct swarm_values *v = swarm_values_new();

        if (v)
                swarm_values_set_allocator(v, shm_allocate, NULL);
        return v;
}

/* Whether v holds a value named check.*: those are this requester's to
 * add, after a check job (a producer that sent its own would vouch for
 * itself), and its submitters' inputs may not use them. */
static bool has_check_values(const struct swarm_values *v) {
        struct swarm_value x;

        for (size_t i = 0; v && swarm_values_at(v, i, &x) >= 0; i++)
                if (strncmp(x.name, "check.", 6) == 0)
                        return true;
        return false;
}

/* *v without its check.* values. */
static int values_drop_check(struct swarm_values **v) {
        struct swarm_values *clean;
        struct swarm_value x;

        if (!has_check_values(*v))
                return 0;
        clean = values_new_shm();
        if (!clean)
                return -ENOMEM;
        for (size_t i = 0; swarm_values_at(*v, i, &x) >= 0; i++) {
                int r;

                if (strncmp(x.name, "check.", 6) == 0)
                        continue;
                r = values_copy_one(clean, x.name, &x);
                if (r < 0) {
                        swarm_values_free(clean);
                        return r;
                }
        }
        swarm_values_free(*v);
        *v = clean;
        return 0;
}

static int job_submit(struct requester *r, const struct job_spec *spec, bool is_check, job_done_fn done,
                      void *userdata, uint64_t *ret_job);
static void on_check_done(uint64_t id, struct job_outcome *o, void *userdata);

/* The variant provider id offers skill under, as gossiped; NULL if none. */
static const char *offer_variant(struct requester *r, const uint8_t id[WIRE_NODE_ID_SIZE], const char *skill) {
        struct membership *ms = members(r);
        struct member_info m;

        for (size_t i = 0; ms && i < membership_count(ms); i++) {
                if (membership_get(ms, i, &m) < 0 || memcmp(m.id, id, WIRE_NODE_ID_SIZE) != 0)
                        continue;
                for (size_t s = 0; s < m.record->n_skills; s++)
                        if (m.record->skills[s]->name && strcmp(m.record->skills[s]->name, skill) == 0)
                                return m.record->skills[s]->variant && m.record->skills[s]->variant[0]
                                               ? m.record->skills[s]->variant : NULL;
        }
        return NULL;
}

/* Asks a provider other than the producer and the checkers so far to check
 * the producer's result (cc holds it). */
static int check_start(struct attempt *a, struct check_call *cc) {
        struct job *job = a->job;
        const char *names = advert_str(skill_pool_info(job->pool), "check-inputs");
        const char *variant = offer_variant(job->r, job->ids[a->cand], job->skill);
        _cleanup_free_ uint8_t (*exclude)[WIRE_NODE_ID_SIZE] = NULL;
        size_t n_exclude = 0;
        uint64_t child = 0;
        int r;

        if (!names)
                return -EOPNOTSUPP;
        /* The checker must hold the producer's variant: one that left
         * (its offer forgotten) cannot be checked here. */
        if (!variant)
                return -EHOSTUNREACH;
        swarm_values_free(cc->inputs);
        cc->inputs = values_new_shm();
        if (!cc->inputs)
                return -ENOMEM;
        /* The outputs and proof values the skill names (textgen: the
         * tokens, the text, the provider's context), never commitments. */
        r = values_copy(cc->inputs, job->inputs, "", NULL);
        if (r >= 0)
                r = values_copy(cc->inputs, cc->outputs, "check.", names);
        if (r >= 0)
                r = values_copy(cc->inputs, cc->proof, "check.", names);
        if (r >= 0 && cc->first)
                r = values_copy(cc->inputs, cc->first, "check.first.", NULL);
        if (r < 0)
                return r;
        /* Not the producer, nor anyone else this job asked (a hedged rival
         * would gain by disagreeing), nor an earlier checker. */
        exclude = calloc(job->n_attempts + cc->n_checkers + 1, sizeof(*exclude));
        if (!exclude)
                return -ENOMEM;
        for (size_t i = 0; i < job->n_attempts; i++)
                memcpy(exclude[n_exclude++], job->ids[job->attempts[i].cand], WIRE_NODE_ID_SIZE);
        for (unsigned i = 0; i < cc->n_checkers; i++)
                memcpy(exclude[n_exclude++], cc->checkers[i], WIRE_NODE_ID_SIZE);
        a->check = cc;
        cc->job = job;
        cc->attempt = a;
        cc->child_running = true;
        r = job_submit(job->r, &(struct job_spec) {
                .skill = job->skill,
                .inputs = cc->inputs,
                .max_price = job->max_price,
                .deadline_usec = job->deadline_usec,
                .exclude = (const uint8_t (*)[32]) exclude,
                .n_exclude = n_exclude,
                .variant = variant,
        }, true, on_check_done, cc, &child);
        if (r < 0) {
                cc->child_running = false;
                a->check = NULL;
                return r;
        }
        /* Its done may have come already (a job that could not even start,
         * delivered at once when the loop cannot be asked): then cc is
         * gone. */
        if (a->check == cc && cc->child_running) {
                cc->child = child;
                log_debug("Job %" PRIu64 ": its result goes to check job %" PRIu64 ".", job->id, child);
        }
        return 0;
}

/* A check job ended: its outputs go into the producer's proof as check.*,
 * and the verifier judges the producer's result again. */
static void on_check_done(uint64_t id, struct job_outcome *o, void *userdata) {
        struct check_call *cc = userdata;
        struct attempt *a = cc->attempt;
        struct job *job = cc->job;
        struct pool_call *c;
        int r;

        cc->child_running = false;
        if (!job || !a || a->check != cc) {
                check_call_free(cc);    /* the attempt ended without it */
                return;
        }
        if (o->status < 0) {
                a->check = NULL;
                attempt_fail(a, -EREMOTE, false, "no independent provider could check the result: %s",
                             o->error ?: strerror(-o->status));
                check_call_free(cc);
                return;
        }
        if (cc->n_checkers < 2)
                memcpy(cc->checkers[cc->n_checkers++], o->provider_id, WIRE_NODE_ID_SIZE);
        if (cc->n_checkers == 1 && o->outputs) {
                const char *retry = advert_str(skill_pool_info(job->pool), "check-retry-inputs");

                /* Without it a second checker still decides, from its own
                 * picks alone. */
                swarm_values_free(cc->first);
                cc->first = retry ? swarm_values_new() : NULL;
                if (cc->first && values_copy(cc->first, o->outputs, "", retry) < 0) {
                        swarm_values_free(cc->first);
                        cc->first = NULL;
                }
        }
        c = calloc(1, sizeof(*c));
        if (c) {
                *c = (struct pool_call) { .job = job, .attempt = a, .op = POOL_VERIFY, .price = cc->price,
                                          .outputs = values_new_shm(), .proof = values_new_shm() };
                r = c->outputs && c->proof ? 0 : -ENOMEM;
                if (r >= 0)
                        r = values_copy(c->outputs, cc->outputs, "", NULL);
                if (r >= 0)
                        r = values_copy(c->proof, cc->proof, "", NULL);
                if (r >= 0 && o->outputs)
                        r = values_copy(c->proof, o->outputs, "check.", NULL);
                if (r >= 0)
                        r = skill_pool_submit(job->pool, POOL_VERIFY, job->inputs, c->outputs, c->proof,
                                              job->deadline_usec, on_pool_done, c, &c->req);
        } else
                r = -ENOMEM;
        if (r < 0) {
                pool_call_free(c);
                a->check = NULL;
                attempt_fail(a, r, false, "cannot judge the checked result: %s", strerror(-r));
                check_call_free(cc);
                return;
        }
        a->call = c;
}

static void attempt_verify(struct attempt *a, struct swarm_values *outputs, struct swarm_values *proof,
                           uint64_t price) {
        struct job *job = a->job;
        struct pool_call *c = calloc(1, sizeof(*c));
        int r;

        a->latency_usec = now(CLOCK_MONOTONIC) - a->sent_clock_usec;
        a->timer = sd_event_source_disable_unref(a->timer);
        /* check.* values are ours to add after a check job: a producer
         * that sent its own would vouch for itself. */
        r = c ? values_drop_check(&outputs) : -ENOMEM;
        if (r >= 0)
                r = values_drop_check(&proof);
        if (r < 0) {
                free(c);
                swarm_values_free(outputs);
                swarm_values_free(proof);
                attempt_fail(a, r, false, "out of memory");
                return;
        }
        *c = (struct pool_call) { .job = job, .attempt = a, .op = POOL_VERIFY, .outputs = outputs,
                                  .proof = proof, .price = price };
        if (!job->cands[a->cand].local && !job->is_check && skill_sampled(job->r, job->skill)) {
                struct reputation_view v;
                enum check_reason why;

                reputation_get(rep(job->r), job->ids[a->cand], job->skill, accounts_now(), &v);
                why = check_decide(&job->r->check, job->r->check_secret, job->job_id, sizeof(job->job_id),
                                   v.own_successes, v.own_failures);
                log_debug("Job %" PRIu64 ": %s.", job->id, check_reason_to_string(why));
                if (!check_reason_checks(why)) {
                        (void) attempt_move(a, ATTEMPT_EVENT_RESULT);
                        attempt_accept(a, c, false);
                        pool_call_free(c);
                        return;
                }
        }
        r = skill_pool_submit(job->pool, POOL_VERIFY, job->inputs, c->outputs, c->proof, job->deadline_usec,
                              on_pool_done, c, &c->req);
        if (r < 0) {
                pool_call_free(c);
                attempt_fail(a, r, false, "cannot verify the result: %s", strerror(-r));
                return;
        }
        a->call = c;
        (void) attempt_move(a, ATTEMPT_EVENT_RESULT);
}

static void on_paid(int status, void *userdata) {
        struct job *job = userdata;
        int k;

        job->payment = NULL;
        if (status < 0) {
                /* Not handed over what we could not record paying for. */
                swarm_values_free(job->outcome.outputs);
                job->outcome.outputs = NULL;
                job->outcome.status = -EIO;
                snprintf(job->error, sizeof(job->error), "verified, but the payment could not be recorded in the "
                         "ledger: %s", strerror(-status));
                job->outcome.error = job->error;
        }
        k = sd_event_add_defer(job->r->event, &job->defer, on_job_defer, job);
        if (k < 0)
                deliver(job);
}

/* A verified result as kept for its submitter (Swarm__KeptResult). */
static int kept_result_pack(struct job *job, const struct swarm_values *outputs, uint64_t price, uint8_t **ret,
                            size_t *ret_size) {
        Swarm__KeptResult k = SWARM__KEPT_RESULT__INIT;
        Swarm__JobValue **values = NULL;
        size_t n = 0;
        int r;

        r = job_values_to_wire(outputs, &values, &n);
        if (r < 0)
                return r;
        k.outputs = values;
        k.n_outputs = n;
        k.provider = job->outcome.provider;
        k.price = price;
        k.latency_us = now_usec(job->r) - job->submitted_clock_usec;
        k.attempts = (uint32_t) job->n_attempts;
        r = pb_pack_alloc(&k.base, LEDGER_KEEP_RESULT_MAX, ret, ret_size);
        job_values_free_wire(values, n);
        return r;
}

static void on_verified(struct attempt *a, struct pool_call *c, const struct pool_result *res) {
        struct job *job = a->job;
        struct check_count *cc = NULL;
        struct check_call *chk = a->check;      /* judged again after a check job */
        int r;

        a->call = NULL;
        if (!job->cands[a->cand].local && !job->is_check && skill_sampled(job->r, job->skill))
                cc = check_count_of(job->r, job->ids[a->cand], job->skill, true);
        if (res->status == -EREMOTE && !chk) {
                /* This node cannot judge it: another provider checks it. */
                chk = calloc(1, sizeof(*chk));
                r = chk ? 0 : -ENOMEM;
                if (chk) {
                        chk->outputs = TAKE_PTR(c->outputs);
                        chk->proof = TAKE_PTR(c->proof);
                        chk->price = c->price;
                        r = check_start(a, chk);
                }
                if (r < 0) {
                        check_call_free(chk);
                        attempt_fail(a, r, false, "this node cannot verify the result (%s), and cannot have it "
                                     "checked: %s", res->error ?: "no model", strerror(-r));
                }
                return;
        }
        if (chk && res->status == -EBADMSG && chk->n_checkers == 1) {
                /* The checker disagrees: a third provider decides. */
                log_info("Job %" PRIu64 ": a checker disagrees with the result (%s); asking another.", job->id,
                         res->error ?: "");
                r = check_start(a, chk);
                if (r < 0) {
                        a->check = NULL;
                        check_call_free(chk);
                        attempt_fail(a, r, false, "a checker disagrees with the result and no other could be "
                                     "asked: %s", strerror(-r));
                }
                return;
        }
        if (chk) {
                /* Decided: the producer is right (a first checker that
                 * disagreed was wrong), or wrong. */
                if (res->status == 0 && chk->n_checkers == 2) {
                        log_info("Job %" PRIu64 ": a second checker agrees with the result; the first was wrong.",
                                 job->id);
                        stats_record(job->r, chk->checkers[0], job->skill, false, 0);
                }
                a->check = NULL;
                check_call_free(chk);
        }
        if (res->status == -ETIMEDOUT || res->status == -ECANCELED || res->status == -ESHUTDOWN ||
            res->status == -EOPNOTSUPP || res->status == -EREMOTE) {
                /* Our verifier ran out of time or was stopped, or cannot
                 * judge this result here (textgen: the generation is longer
                 * than this node's context): not the provider's fault. */
                attempt_fail(a, res->status, false, "%s: %s",
                             res->status == -EOPNOTSUPP ? "this node cannot verify the result"
                                                        : "verification did not finish",
                             res->error ?: strerror(-res->status));
                return;
        }
        if (res->status < 0) {
                job->rejected++;
                if (cc)
                        cc->failed++;
                attempt_fail(a, res->status, true, "result failed verification: %s",
                             res->error ?: strerror(-res->status));
                return;
        }
        if (cc)
                cc->checked++;
        /* A check's result is only well formed here; whether it was right
         * is decided by comparison, so it earns the checker nothing yet. */
        if (!job->is_check)
                stats_record(job->r, job->ids[a->cand], job->skill, true, a->latency_usec);
        attempt_accept(a, c, true);
}

/* A result taken: verified (checked), or drawn out of sampled verification
 * (not checked: not counted as a success either, so a provider is
 * "measured" by checked results only).  Paid, kept, handed over. */
static void attempt_accept(struct attempt *a, struct pool_call *c, bool checked) {
        struct job *job = a->job;
        struct router_candidate *cand = &job->cands[a->cand];

        if (!checked) {
                struct check_count *cc = check_count_of(job->r, job->ids[a->cand], job->skill, true);

                if (cc)
                        cc->unchecked++;
                job->outcome.unchecked = true;
                /* How fast it answered is known whether or not it lied. */
                (void) reputation_observe_latency(rep(job->r), job->ids[a->cand], job->skill,
                                                  (double) (a->latency_usec ?: 1), accounts_now());
        }
        (void) attempt_move(a, ATTEMPT_EVENT_ACCEPT);
        stream_settle(job, a);
        provider_name(job->r, job->ids[a->cand], cand->local, job->outcome.provider);
        memcpy(job->outcome.provider_id, job->ids[a->cand], WIRE_NODE_ID_SIZE);
        job->outcome.price = c->price;
        job->outcome.attempt_usec = a->latency_usec;
        job->outcome.queue_usec = a->queue_usec;
        job->outcome.exec_usec = a->exec_usec;
        /* Verified: now it is paid for (our own node does not pay itself),
         * and handed over once the payment is durable (job_finish() waits
         * for on_paid()). */
        {
                /* With a key, the result is kept for its submitter, durably
                 * with the payment (exactly-once delivery: requester.h). */
                _cleanup_free_ uint8_t *kept = NULL;
                struct accounts_keep keep = { .owner = job->keep_owner, .key = job->keep_key };
                bool paying = !cand->local && c->price > 0 && job->r->accounts;

                if (job->keep_key && job->r->accounts) {
                        int k = kept_result_pack(job, c->outputs, c->price, &kept, &keep.size);

                        if (k < 0)
                                log_warning_errno(k, "Job %" PRIu64 ": its result cannot be kept for its "
                                                  "submitter (key \"%s\"): %m", job->id, job->keep_key);
                        else
                                keep.result = kept;
                }
                if (paying && accounts_pay_and_keep(job->r->accounts, job->job_id, job->skill, job->ids[a->cand],
                                                    c->price, keep.result ? &keep : NULL, on_paid, job,
                                                    &job->payment) < 0)
                        job->payment = NULL;
                if (!paying && keep.result && accounts_keep(job->r->accounts, &keep, job->job_id) < 0)
                        log_warning("Job %" PRIu64 ": cannot keep its result for its submitter.", job->id);
        }
        job->outcome.outputs = TAKE_PTR(c->outputs);
        job_finish(job, 0, NULL);
}

static void on_priced(struct job *job, const struct pool_result *res);

static void on_pool_done(struct pool_request *req, struct pool_result *res, void *userdata) {
        struct pool_call *c = userdata;
        struct attempt *a = c->attempt;
        struct job *job = c->job;

        if (!job || job->finished) {
                pool_call_free(c);
                return;
        }
        switch (c->op) {
        case POOL_PRICE:
                job->price_call = NULL;
                on_priced(job, res);
                break;
        case POOL_EXECUTE:
                a->call = NULL;
                if (res->status < 0)
                        attempt_fail(a, res->status, !is_job_error(res->status) && res->status != -ESHUTDOWN,
                                     "%s", res->error ?: strerror(-res->status));
                else
                        attempt_verify(a, TAKE_PTR(res->outputs), TAKE_PTR(res->proof),
                                       job->cands[a->cand].price);
                break;
        case POOL_VERIFY:
                on_verified(a, c, res);
                break;
        }
        pool_call_free(c);
}

/* Who offers the skill, and the offer. */
static const Swarm__SkillOffer *offer_of(const struct member_info *m, const char *skill) {
        for (size_t i = 0; i < m->record->n_skills; i++)
                if (m->record->skills[i]->name && strcmp(m->record->skills[i]->name, skill) == 0)
                        return m->record->skills[i];
        return NULL;
}

static bool can_run_locally(struct requester *r, const char *skill) {
        return r->provider && r->skills && skills_get(r->skills, skill);
}

static size_t count_offering(struct requester *r, const char *skill) {
        struct membership *ms = members(r);
        size_t n = 0;

        if (!ms)
                return can_run_locally(r, skill) ? 1 : 0;
        for (size_t i = 0; i < membership_count(ms); i++) {
                struct member_info m;
                if (membership_get(ms, i, &m) < 0 || m.state != MEMBER_ALIVE || !m.record->lending ||
                    !offer_of(&m, skill))
                        continue;
                if (m.self && !can_run_locally(r, skill))
                        continue;
                n++;
        }
        return n;
}

/* Attempts of ours running on provider id: the queue this requester is
 * building there, which its gossiped load shows only a round later.  Without
 * it, a batch routed in one burst saw every provider idle and piled onto the
 * best-scored one. */
static unsigned inflight_at(struct requester *r, const uint8_t *id) {
        unsigned n = 0;

        for (struct job *j = r->jobs; j; j = j->jobs_next)
                for (size_t i = 0; i < j->n_attempts; i++)
                        if (attempt_state_is_live(j->attempts[i].state) &&
                            memcmp(j->cands[j->attempts[i].cand].id, id, WIRE_NODE_ID_SIZE) == 0)
                                n++;
        return n;
}

static int add_candidate(struct job *job, const uint8_t *id, bool local, uint64_t price, uint64_t throughput,
                         unsigned load, unsigned capacity) {
        struct router_candidate *c = &job->cands[job->n_cands];
        struct reputation_view v;

        if (job->pinned && memcmp(id, job->pinned_id, WIRE_NODE_ID_SIZE) != 0)
                return 0;
        reputation_get(rep(job->r), id, job->skill, accounts_now(), &v);
        memcpy(job->ids[job->n_cands], id, WIRE_NODE_ID_SIZE);
        *c = (struct router_candidate) {
                .id = job->ids[job->n_cands],
                .local = local,
                .price = price,
                .throughput = (double) throughput,
                .load = load + inflight_at(job->r, id),
                .capacity = capacity,
        };
        c->successes = v.successes;
        c->failures = v.failures;
        c->latency_ewma_usec = v.latency_ewma_usec;
        c->throughput_ratio = v.throughput_ratio;
        job->n_cands++;
        return 0;
}

static bool is_excluded(const struct job *job, const uint8_t id[WIRE_NODE_ID_SIZE]) {
        for (size_t i = 0; i < job->n_exclude; i++)
                if (memcmp(job->exclude[i], id, WIRE_NODE_ID_SIZE) == 0)
                        return true;
        return false;
}

static void on_priced(struct job *job, const struct pool_result *res) {
        struct requester *r = job->r;
        const struct skill_info *info = skill_pool_info(job->pool);
        uint64_t local_price = res->price, list_price;
        struct membership *ms = members(r);
        size_t n_members = ms ? membership_count(ms) : 1, offering = 0;
        const char *price_unit, *unit, *variant;
        size_t other_variant = 0;
        struct router_job rj;

        if (res->status < 0) {
                /* -EINVAL and -E2BIG: the job itself is wrong (the SDK's
                 * contract), and the skill said why. */
                bool refused = res->status == -EINVAL || res->status == -E2BIG;

                job_finish(job, res->status, "skill %s %s: %s", job->skill,
                           refused ? "refuses this job" : "cannot price this job",
                           res->error ?: strerror(-res->status));
                return;
        }
        /* A skill whose instances differ (textgen: which model) is routed
         * only to providers of the variant our verifier holds: another one's
         * results could not be checked here. */
        variant = job->variant ?: advert_str(info, "variant");
        list_price = advert_uint(info, "price");
        price_unit = advert_str(info, "price-unit");
        unit = advert_str(info, "unit");
        rj = (struct router_job) {
                .variant = variant,
                /* A verifier without a variant that has results checked
                 * elsewhere (textgen without the model) takes any. */
                .any_variant = (job->any_variant = !variant && advert_str(info, "check-inputs")),
                .local_price = local_price,
                .list_price = list_price,
                .max_price = job->max_price,
        };
        job->params = (struct router_params) {
                .units = router_units(local_price, list_price, price_unit, unit),
                .exploration = EXPLORATION,
                .explore_below = EXPLORE_BELOW,
        };

        job->cands = calloc(n_members ? n_members : 1, sizeof(*job->cands));
        job->ids = calloc(n_members ? n_members : 1, sizeof(*job->ids));
        job->attempts = calloc(n_members ? n_members : 1, sizeof(*job->attempts));
        if (!job->cands || !job->ids || !job->attempts) {
                job_finish(job, -ENOMEM, "out of memory");
                return;
        }

        if (!ms) {
                struct skill_pool *p = skills_get(r->skills, job->skill);
                if (can_run_locally(r, job->skill)) {
                        offering++;
                        if (local_price <= job->max_price)
                                add_candidate(job, local_only_id, true, local_price,
                                              advert_uint(skill_pool_info(p), "throughput"),
                                              skill_pool_workers_busy(p), skill_pool_workers_alive(p));
                }
        } else
                for (size_t i = 0; i < n_members; i++) {
                        const Swarm__SkillOffer *o;
                        struct router_offer offer;
                        struct member_info m;
                        uint64_t est;

                        if (membership_get(ms, i, &m) < 0 || m.state != MEMBER_ALIVE || !m.record->lending)
                                continue;
                        o = offer_of(&m, job->skill);
                        if (!o || (m.self && !can_run_locally(r, job->skill)))
                                continue;
                        if (is_excluded(job, m.id))
                                continue;
                        offering++;
                        offer = (struct router_offer) { .local = m.self, .variant = o->variant, .price = o->price };
                        switch (router_consider(&rj, &offer, &est)) {
                        case ROUTER_OTHER_VARIANT:
                                other_variant++;
                                break;
                        case ROUTER_TOO_DEAR:
                                break;
                        case ROUTER_CANDIDATE:
                                add_candidate(job, m.id, m.self, est, o->throughput, m.record->load,
                                              m.record->capacity);
                                break;
                        }
                }

        if (job->n_cands == 0) {
                if (other_variant > 0)
                        job_finish(job, -ENOENT, "no node offers skill %s as this node verifies it (variant "
                                   "%.16s…); %zu offer%s another variant", job->skill, variant ?: "",
                                   other_variant, other_variant == 1 ? "s" : "");
                else
                        job_finish(job, -ENOENT, "no node offers skill %s at or below max price %" PRIu64
                                   " (%zu offer%s it at all)", job->skill, job->max_price, offering,
                                   offering == 1 ? "s" : "");
                return;
        }
        router_rank(job->cands, job->n_cands, &job->params, r->rng, r->rng_userdata);
        /* The ids moved with their candidates only as pointers: put them back in rank order. */
        {
                uint8_t (*ids)[WIRE_NODE_ID_SIZE] = calloc(job->n_cands, sizeof(*ids));
                if (!ids) {
                        job_finish(job, -ENOMEM, "out of memory");
                        return;
                }
                for (size_t i = 0; i < job->n_cands; i++) {
                        memcpy(ids[i], job->cands[i].id, WIRE_NODE_ID_SIZE);
                        job->cands[i].id = ids[i];
                }
                free(job->ids);
                job->ids = ids;
        }
        job_start_next(job);
}

/* ---- Results from the network ---- */

static struct attempt *attempt_of(struct job *job, const uint8_t from[WIRE_NODE_ID_SIZE]) {
        for (size_t i = 0; i < job->n_attempts; i++) {
                struct attempt *a = &job->attempts[i];
                if (a->state == ATTEMPT_ASKED && !job->cands[a->cand].local &&
                    memcmp(job->ids[a->cand], from, WIRE_NODE_ID_SIZE) == 0)
                        return a;
        }
        return NULL;
}

static void late_result_handle(struct requester *r, const uint8_t from[32], const Swarm__JobResult *res,
                               uint64_t at) {
        for (struct late_result **p = &r->late; *p; p = &(*p)->next) {
                struct late_result *l = *p;
                if (memcmp(l->job_id, res->job_id.data, JOB_ID_SIZE) != 0 ||
                    memcmp(l->provider, from, WIRE_NODE_ID_SIZE) != 0)
                        continue;
                if (res->status == 0 || !is_job_error(res->status))
                        stats_record(r, from, l->skill, res->status == 0, now(CLOCK_MONOTONIC) - l->started_usec);
                *p = l->next;
                free(l->skill);
                free(l);
                return;
        }
}

static bool stream_digest_matches(struct attempt *a, const Swarm__JobResult *res) {
        uint8_t digest[JOB_STREAM_DIGEST_SIZE];
        struct job_stream_digest copy = a->stream;

        if (res->stream_digest.len != JOB_STREAM_DIGEST_SIZE)
                return false;
        job_stream_digest_final(&copy, digest);
        return sodium_memcmp(digest, res->stream_digest.data, JOB_STREAM_DIGEST_SIZE) == 0;
}

void requester_handle_chunk(struct requester *r, const uint8_t from[32], const Swarm__JobChunk *c) {
        struct attempt *a;
        struct job *job;

        for (job = r->jobs; job; job = job->jobs_next)
                if (memcmp(job->job_id, c->job_id.data, JOB_ID_SIZE) == 0)
                        break;
        if (!job || job->finished)
                return;         /* late, or not ours */
        a = attempt_of(job, from);
        if (!a)
                return;
        if (c->seq != a->stream_seq) {
                attempt_fail(a, -EBADMSG, true, "streamed chunk %" PRIu32 " where %" PRIu32 " was due", c->seq,
                             a->stream_seq);
                return;
        }
        stream_chunk_add(job, a, c->name, c->data.data, c->data.len);
}

void requester_handle_result(struct requester *r, const uint8_t from[32], const Swarm__SignedResult *s) {
        _cleanup_(job_result_freep) Swarm__JobResult *res = NULL;
        struct swarm_values *outputs = NULL, *proof = NULL;
        const char *reason = NULL;
        uint64_t now = now_usec(r);
        struct attempt *a = NULL;
        struct job *job;
        int k;

        late_expire(r, now);
        k = job_result_open(s, from, r->max_message_size, &res, &reason);
        if (k < 0) {
                /* We cannot trust the job id inside: blame the first job
                 * waiting on this peer. */
                for (job = r->jobs; job && !a; job = job->jobs_next)
                        a = attempt_of(job, from);
                if (a)
                        attempt_fail(a, -EBADMSG, true, "%s", k == -EKEYREJECTED ? "bad signature on the result" :
                                     reason ?: "malformed result");
                return;
        }
        if (res->job_id.len != JOB_ID_SIZE) {
                /* The peer could not even read our request (the jobs
                 * channel answers those without a job id): it fails the
                 * first job waiting on it. */
                for (job = r->jobs; job && !a; job = job->jobs_next)
                        a = attempt_of(job, from);
                if (a && res->job_id.len == 0 && res->status < 0)
                        attempt_fail(a, -EPROTO, true, "could not read the request: %s",
                                     res->error && res->error[0] ? res->error : strerror(-res->status));
                return;
        }
        for (job = r->jobs; job; job = job->jobs_next)
                if (memcmp(job->job_id, res->job_id.data, JOB_ID_SIZE) == 0)
                        break;
        if (!job) {
                late_result_handle(r, from, res, now);
                return;
        }
        a = attempt_of(job, from);
        if (!a)
                return;         /* not asked, or already given up on */
        if (r->network && (res->requester.len != WIRE_NODE_ID_SIZE ||
                           memcmp(res->requester.data, self_id(r), WIRE_NODE_ID_SIZE) != 0)) {
                attempt_fail(a, -EBADMSG, true, "result made out to another requester");
                return;
        }
        if (res->status < 0) {
                bool job_error = is_job_error(res->status);
                attempt_fail(a, res->status, !job_error && !is_refusal(res->status), "%s%s",
                             job_error ? "refused the job: " : "",
                             res->error && res->error[0] ? res->error : strerror(-res->status));
                return;
        }
        if (res->status > 0) {
                attempt_fail(a, -EBADMSG, true, "invalid status %d", res->status);
                return;
        }
        if (res->price > job->max_price) {
                attempt_fail(a, -EBADMSG, true, "charged %" PRIu64 ", above the max price %" PRIu64, res->price,
                             job->max_price);
                return;
        }
        if (res->stream_chunks != a->stream_seq || (a->stream_seq > 0 && !stream_digest_matches(a, res))) {
                /* What it streamed (and we passed on) is not what it
                 * signs for: a lie, or chunks lost on the way. */
                job->rejected++;
                attempt_fail(a, -EBADMSG, true, "its stream (%" PRIu32 " chunks) is not the one its signed "
                             "result vouches for (%" PRIu32 " chunks)", a->stream_seq, res->stream_chunks);
                return;
        }
        k = job_values_from_wire(res->outputs, res->n_outputs, shm_allocate, &outputs, &reason);
        if (k >= 0) {
                k = job_values_from_wire(res->proof, res->n_proof, shm_allocate, &proof, &reason);
                if (k < 0) {
                        swarm_values_free(outputs);
                        outputs = NULL;
                }
        }
        if (k < 0) {
                job->rejected++;
                attempt_fail(a, -EBADMSG, true, "malformed outputs: %s", reason ?: strerror(-k));
                return;
        }
        a->queue_usec = res->queue_us;
        a->exec_usec = res->exec_us;
        attempt_verify(a, outputs, proof, res->price);
}

/* ---- Public API ---- */

int requester_new(sd_event *event, struct network *network, struct skills *skills, struct provider *provider,
                  uint64_t max_message_size, struct requester **ret) {
        struct requester *r;

        if (!event || !ret)
                return -EINVAL;
        if (sodium_init() < 0)
                return -EIO;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->event = sd_event_ref(event);
        r->network = network;
        r->skills = skills;
        r->provider = provider;
        r->max_message_size = max_message_size;
        r->rng = default_rng;
        r->next_id = 1;
        randombytes_buf(r->check_secret, sizeof(r->check_secret));
        r->check = (struct check_policy) { .percent = 100, .after_failure_percent = 100 };
        {
                struct reputation_params rp;
                int k;

                reputation_params_default(&rp);
                k = reputation_new(self_id(r), &rp, &r->own_reputation);
                if (k < 0) {
                        sd_event_unref(r->event);
                        free(r);
                        return k;
                }
        }
        *ret = r;
        return 0;
}

void requester_set_accounts(struct requester *r, struct accounts *accounts) {
        if (r)
                r->accounts = accounts;
}

void requester_set_random(struct requester *r, uint64_t (*rng)(void *userdata), void *userdata) {
        r->rng = rng ?: default_rng;
        r->rng_userdata = rng ? userdata : NULL;
}

void requester_stop(struct requester *r) {
        if (!r)
                return;
        r->stopping = true;
        while (r->jobs)
                job_finish(r->jobs, -ESHUTDOWN, "the daemon is shutting down");
        /* The loop will not turn for them again.  A result whose payment
         * is not durable yet is not handed over (the payment still goes
         * through, with the accounts' last write). */
        LIST_FOREACH(jobs, job, r->finished)
                if (job->payment) {
                        accounts_payment_forget(TAKE_PTR(job->payment));
                        swarm_values_free(job->outcome.outputs);
                        job->outcome.outputs = NULL;
                        job->outcome.status = -ESHUTDOWN;
                        job->outcome.error = "the daemon is shutting down";
                }
        while (r->finished)
                deliver(r->finished);
}

/* Lets go of a job without a word to whoever submitted it. */
static void job_discard(struct job *job) {
        if (job->price_call)
                pool_call_detach(TAKE_PTR(job->price_call));
        for (size_t i = 0; i < job->n_attempts; i++)
                attempt_release(&job->attempts[i]);
        job_free(job);
}

struct requester *requester_free(struct requester *r) {
        if (!r)
                return NULL;
        /* None left after requester_stop(). */
        while (r->jobs) {
                struct job *job = r->jobs;

                LIST_REMOVE(jobs, r->jobs, job);
                job_discard(job);
        }
        while (r->finished) {
                struct job *job = r->finished;

                LIST_REMOVE(jobs, r->finished, job);
                job_discard(job);
        }
        while (r->late) {
                struct late_result *l = r->late;
                r->late = l->next;
                free(l->skill);
                free(l);
        }
        reputation_free(r->own_reputation);
        for (size_t i = 0; i < r->n_counts; i++)
                free(r->counts[i].skill);
        free(r->counts);
        strv_free(r->sampled);
        sd_event_unref(r->event);
        free(r);
        return NULL;
}

int requester_submit(struct requester *r, const struct job_spec *spec, job_done_fn done, void *userdata,
                     uint64_t *ret_job) {
        return job_submit(r, spec, false, done, userdata, ret_job);
}

static int job_submit(struct requester *r, const struct job_spec *spec, bool is_check, job_done_fn done,
                      void *userdata, uint64_t *ret_job) {
        struct job *job;
        uint64_t now = now_usec(r);
        struct pool_call *c;
        const char *named;
        int k;

        if (!spec || !spec->skill || !spec->skill[0] || strlen(spec->skill) > JOB_SKILL_NAME_MAX || !spec->inputs)
                return -EINVAL;
        late_expire(r, now);

        job = calloc(1, sizeof(*job));
        if (!job)
                return -ENOMEM;
        job->r = r;
        job->id = r->next_id++;
        job->skill = strdup(spec->skill);
        job->inputs = spec->inputs;
        job->max_price = spec->max_price;
        job->submitted_usec = now;
        job->deadline_usec = spec->deadline_usec ?: now + DEFAULT_BUDGET_USEC;
        job->hedge = spec->hedge;
        if (spec->provider) {
                job->pinned = true;
                memcpy(job->pinned_id, spec->provider, WIRE_NODE_ID_SIZE);
        }
        job->done = done;
        job->userdata = userdata;
        job->chunk = spec->chunk;
        job->submitted_clock_usec = now_usec(r);
        job->keep_owner = spec->keep_owner;
        job->is_check = is_check;
        if (spec->n_exclude > 0) {
                job->exclude = calloc(spec->n_exclude, sizeof(*job->exclude));
                if (!job->exclude) {
                        job_free(job);
                        return -ENOMEM;
                }
                memcpy(job->exclude, spec->exclude, spec->n_exclude * sizeof(*job->exclude));
                job->n_exclude = spec->n_exclude;
        }
        if (spec->variant && !(job->variant = strdup(spec->variant))) {
                job_free(job);
                return -ENOMEM;
        }
        if (spec->keep_key) {
                job->keep_key = strdup(spec->keep_key);
                if (!job->keep_key) {
                        job_free(job);
                        return -ENOMEM;
                }
        }
        for (size_t i = 0; i < JOB_ID_SIZE; i += 8) {
                uint64_t x = r->rng(r->rng_userdata);
                memcpy(job->job_id + i, &x, 8);
        }
        if (!job->skill) {
                job_free(job);
                return -ENOMEM;
        }
        k = job_values_to_wire(spec->inputs, &job->wire_inputs, &job->n_wire_inputs);
        if (k < 0) {
                job_free(job);
                return k;
        }
        LIST_PREPEND(jobs, r->jobs, job);
        if (ret_job)
                *ret_job = job->id;

        if (!is_check && has_check_values(spec->inputs)) {
                job_finish(job, -EINVAL, "input names beginning with \"check.\" are reserved for check jobs");
                return 0;
        }
        /* A skill is routed by its descriptor's name, not its file's. */
        named = r->skills ? skills_file_of(r->skills, job->skill) : NULL;
        if (named) {
                job_finish(job, -ENOENT, "no skill is named %s: the plugin %s.so is skill %s (use that name)",
                           job->skill, job->skill, named);
                return 0;
        }
        if (count_offering(r, job->skill) == 0) {
                job_finish(job, -ENOENT, "no node offers skill %s", job->skill);
                return 0;
        }
        job->pool = r->skills ? skills_verifier(r->skills, job->skill) : NULL;
        if (!job->pool) {
                job_finish(job, -ENOPKG, "cannot verify results of skill %s: no local plugin", job->skill);
                return 0;
        }
        if (now >= job->deadline_usec) {
                job_finish(job, -ETIMEDOUT, "deadline passed before the job started");
                return 0;
        }

        c = calloc(1, sizeof(*c));
        if (!c) {
                job_finish(job, -ENOMEM, "out of memory");
                return 0;
        }
        *c = (struct pool_call) { .job = job, .op = POOL_PRICE };
        k = skill_pool_submit(job->pool, POOL_PRICE, job->inputs, NULL, NULL, job->deadline_usec, on_pool_done, c,
                              &c->req);
        if (k < 0) {
                free(c);
                job_finish(job, k, "cannot price the job: %s", strerror(-k));
                return 0;
        }
        job->price_call = c;
        return 0;
}

void requester_cancel(struct requester *r, uint64_t id) {
        for (struct job *job = r->jobs; job; job = job->jobs_next)
                if (job->id == id) {
                        job_finish(job, -ECANCELED, "cancelled");
                        return;
                }
}

size_t requester_active_jobs(const struct requester *r) {
        size_t n = 0;

        for (const struct job *job = r->jobs; job; job = job->jobs_next)
                n++;
        return n;
}

static void on_result(void *userdata, const uint8_t from[WIRE_NODE_ID_SIZE], const Swarm__SignedResult *result) {
        requester_handle_result(userdata, from, result);
}

static void on_chunk(void *userdata, const uint8_t from[WIRE_NODE_ID_SIZE], const Swarm__JobChunk *chunk) {
        requester_handle_chunk(userdata, from, chunk);
}

void requester_attach(struct requester *r, struct jobs_channel *channel) {
        jobs_channel_on_result(channel, r ? on_result : NULL, r);
        jobs_channel_on_chunk(channel, r ? on_chunk : NULL, r);
}

int requester_kept_result(struct requester *r, uint32_t owner, const char *key, struct job_outcome *ret) {
        _cleanup_free_ void *blob = NULL;
        Swarm__KeptResult *k = NULL;
        const char *reason = NULL;
        size_t size;
        int q;

        if (!r || !r->accounts || !key || !ret)
                return -ENOENT;
        q = accounts_kept_result(r->accounts, owner, key, &blob, &size);
        if (q < 0)
                return q;
        /* Our own ledger's bytes; the values are still checked below. */
        k = swarm__kept_result__unpack(NULL, size, blob);
        if (!k)
                return log_warning_errno(EBADMSG, "The result kept under key \"%s\" does not decode; ignoring it.",
                                         key);
        *ret = (struct job_outcome) {
                .price = k->price,
                .attempts = k->attempts,
                .latency_usec = k->latency_us,
        };
        snprintf(ret->provider, sizeof(ret->provider), "%s", k->provider ?: "");
        q = job_values_from_wire(k->outputs, k->n_outputs, shm_allocate, &ret->outputs, &reason);
        protobuf_c_message_free_unpacked(&k->base, NULL);
        if (q < 0)
                return log_warning_errno(q, "The result kept under key \"%s\" does not decode (%s); ignoring it.",
                                         key, reason ?: "?");
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The market in virtual time: 1,000 providers, some cheating, some lying
 * about their speed, and requesters that route with the real router
 * (router_rank()), remember with the real reputation.c, gossip opinions
 * (reputation_build_opinion() → reputation_add_opinion(), unsigned: the
 * codec is tested elsewhere) and pay prices moved by the real pricing.c.
 *
 *   sim-market [-t SECONDS] [-r RATE] [-s SEED] [--check]
 *
 * Providers: 85% honest, 10% cheaters (a wrong result 30% of the time,
 * always caught by verification: a failure observation, the job goes to
 * the next candidate and the cheater is not paid), 5% liars (advertise 3×
 * the throughput they have, and price themselves as that fast).  Every
 * provider has 2 workers; real throughput is log-uniform over 10×, the
 * base price grows with the advertised throughput.  The requesters are
 * 50 of the honest providers (a swarm node both lends and submits), so
 * trust can flow to them as it does in the swarm.  Each requester, with
 * probability CHALLENGE per job, runs the hardware challenge on one of
 * its ten best-ranked candidates that it has not measured yet.
 *
 * With --llm the skill is text generation, whose check (a teacher-forced
 * pass) costs VERIFY_SHARE of the generation, so requesters verify by
 * sampling with the real check-sampling.c at its defaults (10% of a
 * measured provider's results, 50% after a failure, all until 5 verified
 * results; a secret per requester): a checked wrong result is caught as
 * above, an unchecked one is accepted and paid.  The cheaters are of four
 * kinds, as tests/test-jobs.c and test-textgen.c catch them when checked:
 * a substituted model, one that ignores the prompt, random tokens (each
 * always wrong), and truncation (wrong on the half of jobs long enough to
 * cut).  Printed: the cheaters' share of first attempts, the wrong results
 * accepted unchecked, and the verification work as a share of all work. */

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "challenge-verdict.h"
#include "check-sampling.h"
#include "pricing.h"
#include "reputation.h"
#include "router.h"
#include "sim-rng.h"

#define SEC 1000000ull

#define N_PROVIDERS 1000
#define N_REQUESTERS 50
#define CHEATER_SHARE 0.10
#define LIAR_SHARE 0.05
#define CHEAT_RATE 0.30
#define LIAR_FACTOR 3.0
#define WORKERS 2
#define JOB_UNITS 20.0                  /* a job: 2-20 s of work */
#define THROUGHPUT_MIN 1.0              /* units/s, log-uniform to 10× */
#define CHALLENGE 0.05
#define CHALLENGE_TOP 10
#define GOSSIP_FANOUT 3
#define GOSSIP_USEC (30 * SEC)
#define PRICING_USEC (30 * SEC)
#define BUCKET_USEC (100 * SEC)
#define FALLBACKS 8
#define T0 (1700000000ull * SEC)
/* --llm: a teacher-forced check costs this share of the generation (a
 * CPU's figure from bench-textgen; a GPU's is far lower). */
#define VERIFY_SHARE 0.6

enum cheat { SUBSTITUTE, IGNORES_PROMPT, RANDOM_TOKENS, TRUNCATES, N_CHEATS };
static const char *const cheat_name[N_CHEATS] = { "substituted model", "ignores the prompt", "random tokens",
                                                  "truncates" };
static const double cheat_rate[N_CHEATS] = { 1.0, 1.0, 1.0, 0.5 };

enum kind { HONEST, CHEATER, LIAR, N_KINDS };
static const char *const kind_name[N_KINDS] = { "honest", "cheater", "liar" };

struct provider {
        uint8_t id[REPUTATION_ID_SIZE];
        enum kind kind;
        double real_throughput, advertised;
        unsigned long long base_price;
        double multiplier;
        enum cheat cheat;               /* --llm, a cheater: how */
        uint64_t free_at[WORKERS];
        unsigned in_system;
        double area;                    /* ∫ in_system dt over the pricing interval, µs */
        uint64_t area_since;
        double earnings;
};

struct requester {
        uint32_t node;                  /* its provider index */
        struct reputation *rep;
        uint64_t version;
        uint8_t secret[CHECK_SECRET_SIZE];      /* --llm: keys its draws */
};

struct job {
        uint32_t requester;
        uint32_t order[FALLBACKS];
        unsigned long long price[FALLBACKS];
        uint8_t n_order, attempt;
        uint64_t sent_at;
};

struct event {
        uint64_t time;
        uint32_t job;
};

struct bucket {
        uint64_t first[N_KINDS];        /* first attempts per kind */
        uint64_t jobs, done, failed_attempts;
        /* --llm */
        uint64_t wrong_accepted, checked, unchecked;
        double work, verify_work;       /* units of work */
};

struct market {
        uint64_t rng, now;
        struct provider p[N_PROVIDERS];
        struct requester q[N_REQUESTERS];
        struct pricing_params pricing;
        struct router_params router;
        struct router_candidate *cands;
        struct job *jobs;
        size_t n_jobs, n_jobs_allocated;
        struct event *heap;
        size_t n_heap, n_heap_allocated;
        struct bucket *buckets;
        size_t n_buckets;
        uint64_t n_kind[N_KINDS];
        uint64_t dropped;
        bool llm;
        struct check_policy check;
        uint64_t cheat_first[N_CHEATS], cheat_wrong_accepted[N_CHEATS], n_cheat[N_CHEATS];
};


static uint64_t router_rng(void *userdata) {
        return rng_next(userdata);
}

static double uniform(uint64_t *s) {
        return (double) (rng_next(s) >> 11) * 0x1.0p-53;
}

static void *xreallocarray(void *p, size_t n, size_t size) {
        p = reallocarray(p, n, size);
        if (!p) {
                fprintf(stderr, "out of memory\n");
                exit(EXIT_FAILURE);
        }
        return p;
}

static double now_s(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* ---- Events ---------------------------------------------------------- */

static void heap_push(struct market *m, uint64_t time, uint32_t job) {
        size_t i;

        if (m->n_heap >= m->n_heap_allocated) {
                m->n_heap_allocated = m->n_heap_allocated ? m->n_heap_allocated * 2 : 1024;
                m->heap = xreallocarray(m->heap, m->n_heap_allocated, sizeof(*m->heap));
        }
        for (i = m->n_heap++; i > 0 && m->heap[(i - 1) / 2].time > time; i = (i - 1) / 2)
                m->heap[i] = m->heap[(i - 1) / 2];
        m->heap[i] = (struct event) { time, job };
}

static struct event heap_pop(struct market *m) {
        struct event top = m->heap[0], last = m->heap[--m->n_heap];
        size_t i = 0;

        for (;;) {
                size_t c = 2 * i + 1;

                if (c >= m->n_heap)
                        break;
                if (c + 1 < m->n_heap && m->heap[c + 1].time < m->heap[c].time)
                        c++;
                if (m->heap[c].time >= last.time)
                        break;
                m->heap[i] = m->heap[c];
                i = c;
        }
        if (m->n_heap > 0)
                m->heap[i] = last;
        return top;
}

/* ---- Providers ------------------------------------------------------- */

static void area_update(struct market *m, struct provider *p) {
        p->area += (double) p->in_system * (double) (m->now - p->area_since);
        p->area_since = m->now;
}

/* Starts an attempt on provider i now; returns when it ends. */
static uint64_t provider_run(struct market *m, uint32_t i) {
        struct provider *p = &m->p[i];
        uint64_t exec = (uint64_t) (JOB_UNITS / p->real_throughput * (0.9 + 0.2 * uniform(&m->rng)) * SEC);
        size_t w = 0;

        for (size_t k = 1; k < WORKERS; k++)
                if (p->free_at[k] < p->free_at[w])
                        w = k;
        p->free_at[w] = (p->free_at[w] > m->now ? p->free_at[w] : m->now) + exec;
        area_update(m, p);
        p->in_system++;
        return p->free_at[w];
}

static void pricing_tick(struct market *m) {
        for (size_t i = 0; i < N_PROVIDERS; i++) {
                struct provider *p = &m->p[i];

                area_update(m, p);
                p->multiplier = pricing_step(p->multiplier, p->area / ((double) WORKERS * PRICING_USEC),
                                             &m->pricing);
                p->area = 0;
        }
}

/* ---- Requesters ------------------------------------------------------ */

static void gossip_tick(struct market *m) {
        for (size_t i = 0; i < N_REQUESTERS; i++) {
                struct requester *q = &m->q[i];
                struct reputation_opinion_entry *e = NULL;
                size_t n = 0;

                if (reputation_build_opinion(q->rep, m->now, &e, &n) < 0)
                        exit(EXIT_FAILURE);
                q->version++;
                for (size_t k = 0; k < GOSSIP_FANOUT; k++) {
                        size_t to = rng_next(&m->rng) % N_REQUESTERS;

                        if (to != i)
                                (void) reputation_add_opinion(m->q[to].rep, m->p[q->node].id, q->version, e, n,
                                                              m->now);
                }
                free(e);
        }
        for (size_t i = 0; i < N_REQUESTERS; i++)
                reputation_update_trust(m->q[i].rep, m->now);
}

static uint32_t provider_of(const struct market *m, const uint8_t *id) {
        return (uint32_t) ((const struct provider *) (const void *) (id - offsetof(struct provider, id)) - m->p);
}

static void challenge(struct market *m, struct requester *q, const struct router_candidate *c, size_t n) {
        size_t k = rng_next(&m->rng) % (n < CHALLENGE_TOP ? n : CHALLENGE_TOP);
        const struct provider *p;

        /* Nearest unmeasured from a random place in the top ten. */
        for (size_t j = 0; j < CHALLENGE_TOP && j < n; j++) {
                const struct router_candidate *x = &c[(k + j) % (n < CHALLENGE_TOP ? n : CHALLENGE_TOP)];

                if (x->throughput_ratio > 0)
                        continue;
                double measured;

                p = &m->p[provider_of(m, x->id)];
                measured = p->real_throughput * (0.95 + 0.1 * uniform(&m->rng));
                (void) reputation_observe_throughput(q->rep, p->id, "gemm", measured, p->advertised, m->now);
                /* The daemon's rule (daemon/jobs/challenge.c): far below its
                 * claim weighs as CHALLENGE_LIAR_PENALTY failed jobs. */
                if (measured < CHALLENGE_LIAR_RATIO * p->advertised)
                        for (unsigned f = 0; f < CHALLENGE_LIAR_PENALTY; f++)
                                (void) reputation_observe(q->rep, p->id, "gemm", false, m->now);
                return;
        }
}

static void job_submit(struct market *m, uint32_t requester) {
        struct requester *q = &m->q[requester];
        struct router_candidate *c = m->cands;
        struct bucket *b = &m->buckets[(m->now - T0) / BUCKET_USEC];
        struct job *j;
        size_t n = 0;
        uint32_t ji;

        for (uint32_t i = 0; i < N_PROVIDERS; i++) {
                struct provider *p = &m->p[i];
                struct reputation_view v;

                if (i == q->node)
                        continue;
                reputation_get(q->rep, p->id, "gemm", m->now, &v);
                c[n++] = (struct router_candidate) {
                        .id = p->id,
                        .price = pricing_apply(p->base_price, p->multiplier),
                        .throughput = p->advertised,
                        .load = p->in_system,
                        .capacity = WORKERS,
                        .successes = v.successes,
                        .failures = v.failures,
                        .latency_ewma_usec = v.latency_ewma_usec,
                        .throughput_ratio = v.throughput_ratio,
                };
        }
        router_rank(c, n, &m->router, router_rng, &m->rng);
        if (uniform(&m->rng) < CHALLENGE)
                challenge(m, q, c, n);

        if (m->n_jobs >= m->n_jobs_allocated) {
                m->n_jobs_allocated = m->n_jobs_allocated ? m->n_jobs_allocated * 2 : 4096;
                m->jobs = xreallocarray(m->jobs, m->n_jobs_allocated, sizeof(*m->jobs));
        }
        ji = (uint32_t) m->n_jobs++;
        j = &m->jobs[ji];
        *j = (struct job) { .requester = requester, .n_order = n < FALLBACKS ? (uint8_t) n : FALLBACKS };
        for (size_t k = 0; k < j->n_order; k++) {
                j->order[k] = provider_of(m, c[k].id);
                j->price[k] = c[k].price;
        }
        b->jobs++;
        b->first[m->p[j->order[0]].kind]++;
        if (m->llm && m->p[j->order[0]].kind == CHEATER)
                m->cheat_first[m->p[j->order[0]].cheat]++;
        j->sent_at = m->now;
        heap_push(m, provider_run(m, j->order[0]), ji);
}

static void job_attempt_done(struct market *m, uint32_t ji) {
        struct job *j = &m->jobs[ji];
        struct requester *q = &m->q[j->requester];
        struct provider *p = &m->p[j->order[j->attempt]];
        struct bucket *b = &m->buckets[(m->now - T0) / BUCKET_USEC < m->n_buckets ? (m->now - T0) / BUCKET_USEC
                                                                                  : m->n_buckets - 1];
        bool ok = p->kind != CHEATER || uniform(&m->rng) >= (m->llm ? cheat_rate[p->cheat] : CHEAT_RATE);

        area_update(m, p);
        p->in_system--;
        if (m->llm) {
                struct reputation_view v;
                uint64_t id[2] = { ji, j->attempt };
                bool checked;

                b->work += JOB_UNITS;
                reputation_get(q->rep, p->id, "gemm", m->now, &v);
                checked = check_reason_checks(check_decide(&m->check, q->secret, (const uint8_t *) id, sizeof(id),
                                                           v.own_successes, v.own_failures));
                if (!checked) {
                        /* Accepted and paid as it is; no reputation earned. */
                        b->unchecked++;
                        (void) reputation_observe_latency(q->rep, p->id, "gemm", (double) (m->now - j->sent_at),
                                                          m->now);
                        p->earnings += (double) j->price[j->attempt];
                        b->done++;
                        if (!ok) {
                                b->wrong_accepted++;
                                m->cheat_wrong_accepted[p->cheat]++;
                        }
                        return;
                }
                b->checked++;
                b->verify_work += JOB_UNITS * VERIFY_SHARE;
        }
        (void) reputation_observe(q->rep, p->id, "gemm", ok, m->now);
        if (ok) {
                (void) reputation_observe_latency(q->rep, p->id, "gemm", (double) (m->now - j->sent_at), m->now);
                p->earnings += (double) j->price[j->attempt];
                b->done++;
                return;
        }
        /* Failed verification: unpaid, and the next candidate gets it. */
        b->failed_attempts++;
        if (++j->attempt >= j->n_order) {
                m->dropped++;
                return;
        }
        j->sent_at = m->now;
        heap_push(m, provider_run(m, j->order[j->attempt]), ji);
}

/* ---- The market experiment ------------------------------------------ */

struct market_result {
        double share[2][64];            /* cheaters, liars: per bucket */
        size_t n_buckets;
        double t_below[2];              /* s until the share stays below 1%, -1: never */
        double earnings[N_KINDS];       /* per provider */
        double run_s;
        /* --llm */
        double verify_share;            /* verification work ÷ all work */
        double wrong_accepted_share[64];        /* of the bucket's accepted results */
        uint64_t wrong_accepted;
};

static void market_run(uint64_t seed, double seconds, double rate, bool llm, struct market_result *res) {
        struct market *m = calloc(1, sizeof(*m));
        struct reputation_params rp;
        uint64_t end, next_arrival, next_gossip, next_pricing, interval;
        double t_start = now_s();
        size_t requesters = 0;

        /* What only --llm draws comes from a stream of its own, so that
         * the other market runs exactly as it did without it. */
        uint64_t llm_rng = seed ^ 0x11e4d5a3c0ffee11ull;

        memset(res, 0, sizeof(*res));
        if (!m)
                exit(EXIT_FAILURE);
        m->rng = seed;
        m->now = T0;
        m->llm = llm;
        /* swarmd's defaults (etc/swarmd.yaml, verification). */
        m->check = (struct check_policy) { .percent = 10, .after_failure_percent = 50, .measured_at = 5,
                                           .recent_failures = 0.5 };
        pricing_params_default(&m->pricing);
        m->router = (struct router_params) { .units = JOB_UNITS, .exploration = 0.05, .explore_below = 3 };
        m->cands = xreallocarray(NULL, N_PROVIDERS, sizeof(*m->cands));
        m->n_buckets = (size_t) ceil(seconds * SEC / BUCKET_USEC);
        if (m->n_buckets > 64)
                m->n_buckets = 64;
        m->buckets = calloc(m->n_buckets, sizeof(*m->buckets));
        end = T0 + (uint64_t) m->n_buckets * BUCKET_USEC;

        for (size_t i = 0; i < N_PROVIDERS; i++) {
                struct provider *p = &m->p[i];
                double x = uniform(&m->rng);

                for (size_t k = 0; k < REPUTATION_ID_SIZE; k += 8) {
                        uint64_t r = rng_next(&m->rng);
                        memcpy(p->id + k, &r, 8);
                }
                p->kind = x < CHEATER_SHARE ? CHEATER : x < CHEATER_SHARE + LIAR_SHARE ? LIAR : HONEST;
                p->real_throughput = THROUGHPUT_MIN * pow(10.0, uniform(&m->rng));
                p->advertised = p->real_throughput * (p->kind == LIAR ? LIAR_FACTOR : 1.0);
                /* Faster costs more per job, not proportionally. */
                p->base_price = (unsigned long long) (1000.0 * sqrt(p->advertised / THROUGHPUT_MIN) *
                                                      (0.7 + 0.6 * uniform(&m->rng)));
                p->multiplier = 1.0;
                p->area_since = T0;
                m->n_kind[p->kind]++;
                if (p->kind == CHEATER) {
                        p->cheat = (enum cheat) (rng_next(&llm_rng) % N_CHEATS);
                        m->n_cheat[p->cheat]++;
                }
        }
        reputation_params_default(&rp);
        for (size_t i = 0; i < N_PROVIDERS && requesters < N_REQUESTERS; i++)
                if (m->p[i].kind == HONEST) {
                        m->q[requesters].node = (uint32_t) i;
                        for (size_t k = 0; k < CHECK_SECRET_SIZE; k += 8) {
                                uint64_t r = rng_next(&llm_rng);
                                memcpy(m->q[requesters].secret + k, &r, 8);
                        }
                        if (reputation_new(m->p[i].id, &rp, &m->q[requesters].rep) < 0)
                                exit(EXIT_FAILURE);
                        requesters++;
                }

        interval = (uint64_t) (SEC / rate);
        next_arrival = T0;
        next_gossip = T0 + GOSSIP_USEC;
        next_pricing = T0 + PRICING_USEC;
        while (next_arrival < end) {
                uint64_t t = next_arrival;

                if (next_gossip < t)
                        t = next_gossip;
                if (next_pricing < t)
                        t = next_pricing;
                while (m->n_heap > 0 && m->heap[0].time <= t) {
                        struct event e = heap_pop(m);

                        m->now = e.time;
                        job_attempt_done(m, e.job);
                }
                m->now = t;
                if (t == next_gossip) {
                        gossip_tick(m);
                        next_gossip += GOSSIP_USEC;
                } else if (t == next_pricing) {
                        pricing_tick(m);
                        next_pricing += PRICING_USEC;
                } else {
                        job_submit(m, (uint32_t) (rng_next(&m->rng) % N_REQUESTERS));
                        next_arrival += interval;
                }
        }
        while (m->n_heap > 0) {
                struct event e = heap_pop(m);

                m->now = e.time;
                job_attempt_done(m, e.job);
        }

        res->n_buckets = m->n_buckets;
        for (size_t k = 0; k < 2; k++) {
                res->t_below[k] = -1;
                for (size_t i = 0; i < m->n_buckets; i++) {
                        const struct bucket *b = &m->buckets[i];

                        res->share[k][i] = b->jobs ? (double) b->first[k + 1] / (double) b->jobs : 0;
                }
                for (size_t i = m->n_buckets; i > 0; i--) {
                        if (res->share[k][i - 1] >= 0.01)
                                break;
                        res->t_below[k] = (double) ((i - 1) * BUCKET_USEC) / SEC;
                }
        }
        for (size_t k = 0; k < N_KINDS; k++)
                res->earnings[k] = 0;
        for (size_t i = 0; i < N_PROVIDERS; i++)
                res->earnings[m->p[i].kind] += m->p[i].earnings;
        for (size_t k = 0; k < N_KINDS; k++)
                res->earnings[k] /= m->n_kind[k] ? (double) m->n_kind[k] : 1;

        printf("market%s: %d providers (%llu honest, %llu cheaters %s, %llu liars at %.0fx), "
               "%d requesters,\n  %.0f jobs/s for %.0f s of virtual time, challenge p=%.2f, gossip every %llu s to "
               "%d, pricing every %llu s\n",
               m->llm ? " (text generation, verified by sampling)" : "", N_PROVIDERS,
               (unsigned long long) m->n_kind[HONEST], (unsigned long long) m->n_kind[CHEATER],
               m->llm ? "of four kinds (below)" : "30% wrong", (unsigned long long) m->n_kind[LIAR], LIAR_FACTOR,
               N_REQUESTERS, rate,
               (double) (end - T0) / SEC, CHALLENGE, (unsigned long long) (GOSSIP_USEC / SEC), GOSSIP_FANOUT,
               (unsigned long long) (PRICING_USEC / SEC));
        if (m->llm)
                printf("  checks: %u%% of a measured provider's results, %u%% after a failure, all until %.0f "
                       "verified\n", m->check.percent, m->check.after_failure_percent, m->check.measured_at);
        putchar('\n');
        printf("%9s %9s %9s %9s %9s %9s", "t (s)", "jobs", "cheaters", "liars", "reroutes", "done");
        if (m->llm)
                printf(" %9s %9s %9s", "checked", "wrong ok", "verify");
        putchar('\n');
        {
                double work = 0, verify = 0;

                for (size_t i = 0; i < m->n_buckets; i++) {
                        const struct bucket *b = &m->buckets[i];

                        printf("%4llu-%-4llu %9llu %8.2f%% %8.2f%% %9llu %9llu",
                               (unsigned long long) (i * (BUCKET_USEC / SEC)),
                               (unsigned long long) ((i + 1) * (BUCKET_USEC / SEC)), (unsigned long long) b->jobs,
                               res->share[0][i] * 100, res->share[1][i] * 100,
                               (unsigned long long) b->failed_attempts, (unsigned long long) b->done);
                        res->wrong_accepted_share[i] = b->done ? (double) b->wrong_accepted / (double) b->done : 0;
                        if (m->llm)
                                printf(" %8.1f%% %8.3f%% %8.2f%%",
                                       100.0 * (double) b->checked / (double) (b->checked + b->unchecked ?: 1),
                                       100.0 * res->wrong_accepted_share[i],
                                       100.0 * b->verify_work / (b->work + b->verify_work > 0 ? b->work + b->verify_work
                                                                                              : 1));
                        putchar('\n');
                        work += b->work;
                        verify += b->verify_work;
                        res->wrong_accepted += b->wrong_accepted;
                }
                res->verify_share = work + verify > 0 ? verify / (work + verify) : 0;
        }
        if (m->llm) {
                printf("(checked: share of results verified, by sampling; wrong ok: wrong results accepted "
                       "unchecked, of\n those accepted; verify: the checks' work (%.0f%% of a generation each) of "
                       "all work)\n", VERIFY_SHARE * 100);
                printf("verification work in all: %.2f%% of all work; wrong results accepted unchecked: %llu\n",
                       100.0 * res->verify_share, (unsigned long long) res->wrong_accepted);
                for (size_t k = 0; k < N_CHEATS; k++)
                        printf("  %-20s %3llu providers, %7llu first attempts, %5llu wrong results accepted\n",
                               cheat_name[k], (unsigned long long) m->n_cheat[k],
                               (unsigned long long) m->cheat_first[k],
                               (unsigned long long) m->cheat_wrong_accepted[k]);
        }
        printf("(shares: first attempts; providers: %.0f%% cheaters, %.0f%% liars)\n",
               100.0 * (double) m->n_kind[CHEATER] / N_PROVIDERS, 100.0 * (double) m->n_kind[LIAR] / N_PROVIDERS);
        for (size_t k = 0; k < 2; k++) {
                if (res->t_below[k] >= 0)
                        printf("%s share below 1%% from t = %.0f s on\n", kind_name[k + 1], res->t_below[k]);
                else
                        printf("%s share never stays below 1%%\n", kind_name[k + 1]);
        }
        printf("\nearnings per provider (credits): ");
        for (size_t k = 0; k < N_KINDS; k++)
                printf("%s %.0f%s", kind_name[k], res->earnings[k] / 1e3, k + 1 < N_KINDS ? ", " : "");
        printf("   (x1000; jobs dropped after %d failures: %llu)\n\n", FALLBACKS, (unsigned long long) m->dropped);

        for (size_t i = 0; i < N_REQUESTERS; i++)
                reputation_free(m->q[i].rep);
        free(m->cands);
        free(m->jobs);
        free(m->heap);
        free(m->buckets);
        free(m);
        res->run_s = now_s() - t_start;
}

/* ---- The price response --------------------------------------------- */

/* One provider with 16 workers and 1 s jobs arriving at a fixed rate that
 * falls with its price (demand elasticity 1: rate = base rate ÷ m), at a
 * utilisation of 0.7 at m = 1; then the base rate doubles.  The
 * utilisation of each 30 s interval comes from the jobs' busy time in it. */
struct price_result {
        double m[128];
        size_t n, step_at;
        double final, overshoot;
        long settle;                    /* steps after the step, -1: never */
};

static void price_run(const struct pricing_params *pp, struct price_result *res) {
        const double workers = 16, exec_s = 1.0, interval_s = 30;
        double m = 1.0, rate0 = 0.7 * workers / exec_s, carry = 0;
        double peak;

        res->n = 100;
        res->step_at = 20;
        for (size_t k = 0; k < res->n; k++) {
                double rate = (k >= res->step_at ? 2 * rate0 : rate0) / m;
                /* Fixed-rate arrivals: whole jobs, the fraction carries over. */
                double jobs = rate * interval_s + carry, whole = floor(jobs);
                double u = whole * exec_s / (workers * interval_s);

                carry = jobs - whole;
                m = pricing_step(m, u, pp);
                res->m[k] = m;
        }
        res->final = 0;
        for (size_t k = res->n - 10; k < res->n; k++)
                res->final += res->m[k] / 10;
        peak = 0;
        for (size_t k = res->step_at; k < res->n; k++)
                peak = res->m[k] > peak ? res->m[k] : peak;
        res->overshoot = peak > res->final ? (peak - res->final) / res->final : 0;
        res->settle = -1;
        for (size_t k = res->n; k > res->step_at; k--) {
                if (fabs(res->m[k - 1] - res->final) > 0.02 * res->final)
                        break;
                res->settle = (long) (k - 1 - res->step_at) + 1;
        }

        printf("price response: 16 workers, 1 s jobs, demand ∝ 1/m, u = 0.7 at m = 1; demand doubles at step %zu\n",
               res->step_at);
        printf("(target %.2f, max step %.3f, pricing interval %.0f s)\n", pp->target, pp->max_step, interval_s);
        printf("%6s %10s\n", "step", "multiplier");
        for (size_t k = res->step_at - 2; k < res->n; k++)
                if (k < res->step_at + 12 || k % 5 == 0)
                        printf("%6zd %10.4f\n", (ssize_t) k - (ssize_t) res->step_at, res->m[k]);
        printf("final %.4f, overshoot %.2f%%, settled within 2%% after %ld steps (%.0f s)\n\n", res->final,
               res->overshoot * 100, res->settle, (double) res->settle * interval_s);
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "time", required_argument, NULL, 't' },
                { "rate", required_argument, NULL, 'r' },
                { "seed", required_argument, NULL, 's' },
                { "check", no_argument, NULL, 'C' },
                { "llm", no_argument, NULL, 'L' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        uint64_t seed = 0x5eed5eed12345678ull;
        double seconds = 0, rate = 60;
        bool check = false, llm = false, ok = true;
        struct market_result mr;
        struct price_result pr;
        struct pricing_params pp;
        int opt;

        while ((opt = getopt_long(argc, argv, "t:r:s:h", options, NULL)) >= 0)
                switch (opt) {
                case 't':
                        seconds = atof(optarg);
                        if (!(seconds >= 100 && seconds <= 6400)) {
                                fprintf(stderr, "-t: 100 to 6400 seconds\n");
                                return EXIT_FAILURE;
                        }
                        break;
                case 'r':
                        rate = atof(optarg);
                        if (!(rate > 0 && rate <= 1000)) {
                                fprintf(stderr, "-r: a rate in (0, 1000] jobs/s\n");
                                return EXIT_FAILURE;
                        }
                        break;
                case 's':
                        seed = strtoull(optarg, NULL, 0) | 1;
                        break;
                case 'C':
                        check = true;
                        break;
                case 'L':
                        llm = true;
                        break;
                case 'h':
                        printf("%s [-t SECONDS] [-r RATE] [-s SEED] [--llm] [--check]\n\n"
                               "Simulates a market of 1,000 providers (10%% cheaters, 5%% liars) and 50\n"
                               "requesters in virtual time: RATE jobs/s (default 60) for SECONDS (default\n"
                               "1500, --check 800), routed by router.c, judged by reputation.c, priced by\n"
                               "pricing.c; then a single provider's price response to a step in demand.\n"
                               "--check: exit 1 unless cheaters get under 1%% of first attempts by the end\n"
                               "and earn less than honest providers, liars get under 1%% by the end, and the\n"
                               "price settles with under 5%% overshoot.\n"
                               "--llm: text generation verified by sampling (check-sampling.c's defaults), with\n"
                               "four kinds of cheaters; --check then also wants wrong results accepted\n"
                               "unchecked under 0.1%% of the last interval's and verification under 5%% of\n"
                               "the work at the end.\n",
                               argv[0]);
                        return EXIT_SUCCESS;
                default:
                        return EXIT_FAILURE;
                }
        if (seconds == 0)
                seconds = check ? 800 : 1500;

        market_run(seed, seconds, rate, llm, &mr);
        pricing_params_default(&pp);
        price_run(&pp, &pr);
        fprintf(stderr, "market simulation %.1f s (wall clock)\n", mr.run_s);

        if (check) {
                double first = mr.share[1][0], last = mr.share[1][mr.n_buckets - 1];

                if (mr.share[0][mr.n_buckets - 1] >= 0.01) {
                        fprintf(stderr, "check: cheaters still get %.2f%% of first attempts at the end\n",
                                mr.share[0][mr.n_buckets - 1] * 100);
                        ok = false;
                }
                if (!(last < 0.01)) {
                        fprintf(stderr, "check: liars' share went from %.2f%% to %.2f%%, not under 1%%\n", first * 100,
                                last * 100);
                        ok = false;
                }
                if (!(mr.earnings[CHEATER] < mr.earnings[HONEST])) {
                        fprintf(stderr, "check: cheaters earn as much as honest providers\n");
                        ok = false;
                }
                if (llm && mr.wrong_accepted_share[mr.n_buckets - 1] >= 0.001) {
                        fprintf(stderr, "check: %.3f%% of the results accepted at the end were wrong\n",
                                mr.wrong_accepted_share[mr.n_buckets - 1] * 100);
                        ok = false;
                }
                if (pr.overshoot > 0.05 || pr.settle < 0) {
                        fprintf(stderr, "check: price overshoot %.2f%%, settled after %ld steps\n",
                                pr.overshoot * 100, pr.settle);
                        ok = false;
                }
                printf("check: %s\n", ok ? "passed" : "FAILED");
        }
        return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}

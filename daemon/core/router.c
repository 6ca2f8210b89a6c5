/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "macro.h"
#include "router.h"

/* Below this, a time estimate is noise; it keeps a zero-size job from
 * scoring 0 everywhere, where price would stop mattering. */
#define ROUTER_MIN_TIME_USEC 1000.0
/* A provider advertising no throughput: assume a second per job. */
#define ROUTER_UNKNOWN_EXEC_USEC 1e6
/* A provider with no alive worker queues as if four jobs were ahead. */
#define ROUTER_NO_CAPACITY_QUEUE 4.0
/* Observations weigh n / (n + this) against the advertised model. */
#define ROUTER_OBSERVED_PRIOR 2.0
/* A measured ÷ advertised throughput is believed within these bounds:
 * a provider faster than it says gains little, one far slower is
 * treated as what it delivers. */
#define ROUTER_RATIO_MIN 0.01
#define ROUTER_RATIO_MAX 1.5
/* Delivering under this share of the advertised throughput counts against
 * a provider's reputation (as CHALLENGE_LIAR_RATIO, daemon/jobs/challenge.h). */
#define ROUTER_HONEST_RATIO 0.5
/* The score divides by the Beta mean to this power.  At 1, a provider
 * that returns a wrong result 30% of the time (unpaid, so cheap for it)
 * pays only 1/0.7 in score and kept ~5% of the market's first attempts
 * in bench/sim-market; a wrong result is fraud, not bad luck. */
#define ROUTER_REPUTATION_EXPONENT 4.0
/* Power of two choices only between candidates this close in score: a
 * lighter load does not excuse a much worse price or record. */
#define ROUTER_P2C_SCORE_RATIO 2.0

static double queue_factor(const struct router_candidate *c) {
        if (c->capacity == 0)
                return ROUTER_NO_CAPACITY_QUEUE;
        return (double) c->load / (double) c->capacity;
}

double router_expected_usec(const struct router_candidate *c, const struct router_params *p) {
        double q = queue_factor(c), exec, model, t;
        double units = p->units > 0 ? p->units : 0;

        double throughput = c->throughput;

        if (c->throughput_ratio > 0)
                throughput *= c->throughput_ratio < ROUTER_RATIO_MIN ? ROUTER_RATIO_MIN :
                              c->throughput_ratio > ROUTER_RATIO_MAX ? ROUTER_RATIO_MAX : c->throughput_ratio;
        exec = throughput > 0 ? units / throughput * 1e6 : ROUTER_UNKNOWN_EXEC_USEC;
        /* Each busy worker share delays us by about one job of this size. */
        model = exec * (1.0 + q);
        t = model;
        if (c->latency_ewma_usec > 0) {
                double n = c->successes + c->failures;
                double w = n / (n + ROUTER_OBSERVED_PRIOR);
                double observed = c->latency_ewma_usec * (1.0 + q);

                if (w <= 0)
                        w = 0.5;        /* a latency without counts: trust it half */
                t = (1.0 - w) * model + w * observed;
        }
        return t > ROUTER_MIN_TIME_USEC ? t : ROUTER_MIN_TIME_USEC;
}

static double reputation(const struct router_candidate *c) {
        double s = c->successes > 0 ? c->successes : 0, f = c->failures > 0 ? c->failures : 0;
        double mean = (s + 1.0) / (s + f + 2.0), honesty = 1.0;

        /* A provider measured far below what it advertises lied about its
         * hardware: that weighs for as long as the measurement stands, not
         * only as a few failures that newer successes wash out. */
        if (c->throughput_ratio > 0 && c->throughput_ratio < ROUTER_HONEST_RATIO)
                honesty = pow(c->throughput_ratio / ROUTER_HONEST_RATIO, ROUTER_REPUTATION_EXPONENT);
        return pow(mean, ROUTER_REPUTATION_EXPONENT) * honesty;
}

double router_score(const struct router_candidate *c, const struct router_params *p) {
        double price = c->price > 0 ? (double) c->price : 1.0;

        return router_expected_usec(c, p) * price / reputation(c);
}

/* A uniform double in [0, 1). */
static double uniform(uint64_t (*rng)(void *), void *userdata) {
        return (double) (rng(userdata) >> 11) * 0x1.0p-53;
}

static void move_to_front(struct router_candidate *c, double *s, size_t i) {
        struct router_candidate t = c[i];
        double ts = s[i];

        memmove(c + 1, c, i * sizeof(*c));
        memmove(s + 1, s, i * sizeof(*s));
        c[0] = t;
        s[0] = ts;
}

struct ranked {
        double score;
        size_t index;
};

/* By score, NaN last, then by the caller's order: a stable, total order,
 * so the ranking is deterministic. */
static int ranked_compare(const void *a, const void *b) {
        const struct ranked *x = a, *y = b;
        bool xn = isnan(x->score), yn = isnan(y->score);

        if (xn != yn)
                return xn ? 1 : -1;
        if (!xn && x->score != y->score)
                return x->score < y->score ? -1 : 1;
        return x->index < y->index ? -1 : x->index > y->index;
}

/* Sorts c (and scores) by score.  The requester ranks every member that
 * offers the skill, a thousand or more: an insertion sort of that many
 * 80-byte candidates took a millisecond per job, so an index sort and one
 * permutation. */
static void sort_by_score(struct router_candidate *c, double *scores, size_t n) {
        struct ranked *r = malloc(n * sizeof(*r));
        struct router_candidate *copy = malloc(n * sizeof(*copy));

        if (!r || !copy) {
                free(r);
                free(copy);
                /* Out of memory: the same order, in place, slower. */
                for (size_t i = 1; i < n; i++) {
                        struct router_candidate t = c[i];
                        double ts = scores[i];
                        size_t j = i;

                        for (; j > 0 && ranked_compare(&(struct ranked) { scores[j - 1], 0 },
                                                       &(struct ranked) { ts, 1 }) > 0; j--) {
                                c[j] = c[j - 1];
                                scores[j] = scores[j - 1];
                        }
                        c[j] = t;
                        scores[j] = ts;
                }
                return;
        }
        for (size_t i = 0; i < n; i++)
                r[i] = (struct ranked) { scores[i], i };
        qsort(r, n, sizeof(*r), ranked_compare);
        memcpy(copy, c, n * sizeof(*c));
        for (size_t i = 0; i < n; i++) {
                c[i] = copy[r[i].index];
                scores[i] = r[i].score;
        }
        free(r);
        free(copy);
}

void router_rank(struct router_candidate *c, size_t n, const struct router_params *p,
                 uint64_t (*rng)(void *userdata), void *userdata) {
        _cleanup_free_ double *scores = NULL;

        if (n == 0)
                return;
        scores = malloc(n * sizeof(*scores));
        if (!scores) {
                /* Nothing to rank with: the caller's order stands. */
                return;
        }
        for (size_t i = 0; i < n; i++)
                scores[i] = router_score(&c[i], p);
        sort_by_score(c, scores, n);

        /* Power of two choices: of the two best, the less loaded first. */
        if (n >= 2 && scores[1] <= scores[0] * ROUTER_P2C_SCORE_RATIO && queue_factor(&c[1]) < queue_factor(&c[0]))
                move_to_front(c, scores, 1);

        /* Exploration: one draw per ranking whatever the outcome, so the
         * random sequence does not depend on the candidates. */
        if (rng && p->exploration > 0 && uniform(rng, userdata) < p->exploration) {
                size_t under = 0, pick;

                for (size_t i = 0; i < n; i++)
                        if (c[i].successes + c[i].failures < (double) p->explore_below)
                                under++;
                if (under == 0)
                        return;
                pick = (size_t) (rng(userdata) % under);
                for (size_t i = 0; i < n; i++)
                        if (c[i].successes + c[i].failures < (double) p->explore_below && pick-- == 0) {
                                move_to_front(c, scores, i);
                                return;
                        }
        }
}

/* ---- Candidates from adverts ---- */

/* How many of unit one price_unit holds: "MiB" of "byte" is 2^20,
 * "GFLOP" of "flop" 10^9; 1 when they do not relate that way. */
static double unit_scale(const char *price_unit, const char *unit) {
        static const struct {
                char prefix;
                double decimal, binary;
        } prefixes[] = {
                { 'k', 1e3, 1024.0 },
                { 'm', 1e6, 1048576.0 },
                { 'g', 1e9, 1073741824.0 },
                { 't', 1e12, 1099511627776.0 },
        };
        const char *rest;
        double scale = 1;

        if (!price_unit || !unit || !price_unit[0] || !unit[0] || strcasecmp(price_unit, unit) == 0)
                return 1;
        rest = price_unit;
        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++)
                if ((rest[0] | 0x20) == prefixes[i].prefix && rest[1]) {
                        if (rest[1] == 'i') {
                                scale = prefixes[i].binary;
                                rest += 2;
                        } else {
                                scale = prefixes[i].decimal;
                                rest += 1;
                        }
                        break;
                }
        if (strcasecmp(rest, unit) == 0)
                return scale;
        if (strcasecmp(rest, "B") == 0 && (strcasecmp(unit, "byte") == 0 || strcasecmp(unit, "bytes") == 0))
                return scale;
        return 1;
}

double router_units(uint64_t local_price, uint64_t list_price, const char *price_unit, const char *unit) {
        if (list_price == 0)
                return (double) local_price;
        return (double) local_price / (double) list_price * unit_scale(price_unit, unit);
}

/* The price a provider listing offer_price (per price unit) will ask for
 * a job that costs local_price at our list price local_list. */
uint64_t router_estimate_price(uint64_t local_price, uint64_t local_list, uint64_t offer_price) {
        double est;
        uint64_t whole;

        if (local_list == 0 || offer_price == 0)
                return local_price;
        est = (double) local_price / (double) local_list * (double) offer_price;
        if (est >= 1.8e19)
                return UINT64_MAX;
        whole = (uint64_t) est;
        return (double) whole < est ? whole + 1 : whole;        /* rounded up; no libm */
}

enum router_verdict router_consider(const struct router_job *job, const struct router_offer *o, uint64_t *ret_price) {
        uint64_t est;

        if (!job->any_variant && strcmp(o->variant ?: "", job->variant ?: "") != 0)
                return ROUTER_OTHER_VARIANT;
        est = o->local ? job->local_price : router_estimate_price(job->local_price, job->list_price, o->price);
        if (est > job->max_price)
                return ROUTER_TOO_DEAR;
        *ret_price = est;
        return ROUTER_CANDIDATE;
}

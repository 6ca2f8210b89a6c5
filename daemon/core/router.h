/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Chooses providers for a job: pure (no clock, no I/O; randomness passed
 * in), so it is tested exhaustively.
 *
 * Candidates are the alive, lending members offering the skill at an
 * estimated price within the job's max.  Each gets an expected completion
 * time — its queue (load/capacity) plus the job's size over its measured
 * throughput, corrected by what we observed of it (latency EWMA, and the
 * measured ÷ advertised throughput of the hardware challenge) — and a
 * score = time × price ÷ reputation, reputation being the posterior mean of
 * Beta(successes + 1, failures + 1) with the decayed counts of
 * reputation.h (failures include failed verification), to the fourth
 * power: a wrong result is fraud, and at the first power a provider wrong
 * 30% of the time lost only 1/0.7 in score (bench/sim-market).  A
 * provider measured at under half its advertised throughput has that
 * reputation scaled by (ratio ÷ 0.5)⁴ too: it lied about its hardware.
 * The ranking takes the two best-scored candidates and picks the less
 * loaded ("power of two choices"), and with a small
 * probability (exploration) first tries a candidate we have few samples
 * of, so newcomers get measured. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct router_candidate {
        const uint8_t *id;              /* 32 bytes */
        bool local;                     /* this node itself */
        uint64_t price;                 /* estimated price of this job, micro-credits */
        double throughput;              /* units per second, advertised */
        unsigned load, capacity;        /* busy and total workers, advertised */
        /* What we know of it (reputation_get() for this provider and skill). */
        double successes, failures;     /* decayed, own and trusted others' */
        double latency_ewma_usec;       /* 0 = unknown */
        double throughput_ratio;        /* measured ÷ advertised, 0 = unknown */
};

struct router_params {
        double units;                   /* the job's size in the skill's unit (e.g. FLOP) */
        double exploration;             /* share of jobs that try an under-sampled candidate, e.g. 0.05 */
        uint32_t explore_below;         /* "under-sampled": fewer results than this */
};

/* Orders candidates in place from first to last choice, given random64()
 * values from rng (called as needed). */
void router_rank(struct router_candidate *c, size_t n, const struct router_params *p,
                 uint64_t (*rng)(void *userdata), void *userdata);

/* The score of one candidate (lower is better), exposed for tests and
 * `swarmctl submit -v`. */
double router_score(const struct router_candidate *c, const struct router_params *p);

/* Appended: the expected completion time of the job on one candidate, in
 * µs (queue and execution, blended with the observed latency); the
 * requester derives its attempt timeout from it. */
double router_expected_usec(const struct router_candidate *c, const struct router_params *p);

/* ---- Candidates from adverts: which providers a job may go to ---- */

/* The job, as our own instance of the skill priced it. */
struct router_job {
        const char *variant;            /* our verifier's "variant" advert (textgen: the model); NULL: none */
        bool any_variant;               /* every variant: results are checked by check jobs, on their variant */
        uint64_t local_price;           /* what our instance asks for this job, micro-credits */
        uint64_t list_price;            /* our instance's list price per price unit */
        uint64_t max_price;             /* the most the requester pays */
};

/* One provider's offer of the skill, from its signed record. */
struct router_offer {
        bool local;                     /* this node itself: local_price applies */
        const char *variant;
        uint64_t price;                 /* list price per price unit */
};

enum router_verdict {
        ROUTER_CANDIDATE,
        ROUTER_OTHER_VARIANT,           /* results we could not verify */
        ROUTER_TOO_DEAR,                /* estimated over max_price */
};

/* Whether o may run job; for a candidate, *ret_price is the price it
 * will ask (router_estimate_price()). */
enum router_verdict router_consider(const struct router_job *job, const struct router_offer *o, uint64_t *ret_price);

/* The price a provider listing offer_price (per price unit) will ask for a
 * job that costs local_price at our list price local_list, rounded up. */
uint64_t router_estimate_price(uint64_t local_price, uint64_t local_list, uint64_t offer_price);

/* The job's size in the skill's unit ("flop"), from what our instance
 * charges for it and its list price per price_unit ("GFLOP"). */
double router_units(uint64_t local_price, uint64_t list_price, const char *price_unit, const char *unit);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Reputation: what this node believes of each provider, per skill.  Pure:
 * the clock is passed in (now, µs since the epoch, so decay carries over
 * restarts), no I/O.
 *
 * Own observations, per (peer, skill): a Beta(successes, failures) whose
 * counts decay exponentially (half-life in the params) — verified results
 * are successes, failed verification / timeouts / lost results failures —
 * plus EWMAs of latency and of measured ÷ advertised throughput (from the
 * hardware challenge).
 *
 * Opinions of others: every node publishes its own decayed counts
 * (reputation_build_opinion(), signed and gossiped by opinion.h); each
 * node keeps the latest per issuer and aggregates them EigenTrust-style:
 * local trust c_ij = max(0, s_ij − f_ij) normalised over j (all skills
 * together), global trust t = (1 − a)·Cᵀt + a·p with p the pre-trust
 * vector putting all its weight on ourselves (a = params.pretrust).  So
 * an issuer counts only as far as trust flows to it from our own
 * experience: a clique that praises itself, but that we (and those we
 * trust) found bad or never used, gets ~0 weight.  The score of a
 * provider adds others' counts to ours, each scaled by its issuer's trust
 * relative to our own (at most params.opinion_weight of an observation of
 * ours).  One report counts as at most 100 observations (scaled down,
 * ratio kept): trust bounds the weight of a report but not the counts in
 * it, and a clique that earned a sliver of trust must not outweigh what
 * we saw with 10⁹ made-up failures. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REPUTATION_ID_SIZE 32
#define REPUTATION_SKILL_MAX 63

struct reputation;

struct reputation_params {
        double half_life_usec;          /* decay of the counts, e.g. 1 h */
        double latency_alpha;           /* EWMA weight of a new latency sample, e.g. 0.3 */
        double throughput_alpha;        /* EWMA weight of a new throughput ratio, e.g. 0.5 */
        double pretrust;                /* EigenTrust a, weight on ourselves, e.g. 0.5 */
        double opinion_weight;          /* cap on another's count relative to ours, e.g. 0.5 */
        unsigned iterations;            /* EigenTrust power iterations, e.g. 20 */
        size_t max_issuers;             /* opinions kept, e.g. 1024 */
        size_t max_entries;             /* entries in one opinion, e.g. 256 */
};

/* Defaults as above. */
void reputation_params_default(struct reputation_params *p);

int reputation_new(const uint8_t self[REPUTATION_ID_SIZE], const struct reputation_params *p,
                   struct reputation **ret);
struct reputation *reputation_free(struct reputation *r);

/* ---- Own observations ---- */

/* A verified result (success) or a provider's failure. */
int reputation_observe(struct reputation *r, const uint8_t peer[REPUTATION_ID_SIZE], const char *skill,
                       bool success, uint64_t now);
/* Request → verified result, µs. */
int reputation_observe_latency(struct reputation *r, const uint8_t peer[REPUTATION_ID_SIZE], const char *skill,
                               double latency_usec, uint64_t now);
/* Achieved vs advertised throughput (units/s), e.g. a GEMM challenge's
 * FLOP/s against the offer's. */
int reputation_observe_throughput(struct reputation *r, const uint8_t peer[REPUTATION_ID_SIZE], const char *skill,
                                  double measured, double advertised, uint64_t now);

/* What the router weighs. */
struct reputation_view {
        double successes, failures;     /* own decayed counts + trusted others' */
        double own_successes, own_failures;
        double mean;                    /* (successes + 1) / (successes + failures + 2) */
        double trust;                   /* the peer's global (EigenTrust) trust, 0..1 */
        double latency_ewma_usec;       /* 0 = unknown */
        double throughput_ratio;        /* 0 = unknown */
};
/* Always fills ret (an unknown peer gets the prior: mean 0.5). */
void reputation_get(struct reputation *r, const uint8_t peer[REPUTATION_ID_SIZE], const char *skill, uint64_t now,
                    struct reputation_view *ret);

/* ---- Persistence (ledger.h) ---- */

struct reputation_row {
        uint8_t peer[REPUTATION_ID_SIZE];
        char skill[REPUTATION_SKILL_MAX + 1];
        double successes, failures;
        double latency_ewma_usec, throughput_ratio;
        uint64_t updated_at;            /* when the counts are as of (decay resumes from it) */
};
/* Own observations as rows (malloc'd array; decayed to now). */
int reputation_export(struct reputation *r, uint64_t now, struct reputation_row **ret, size_t *ret_n);
/* Restores one row (at start, before any observation). */
int reputation_import(struct reputation *r, const struct reputation_row *row);

/* ---- Opinions ---- */

struct reputation_opinion_entry {
        uint8_t subject[REPUTATION_ID_SIZE];
        char skill[REPUTATION_SKILL_MAX + 1];
        double successes, failures;
};

/* Our own decayed counts, at most params.max_entries, the most observed
 * first (malloc'd array). */
int reputation_build_opinion(struct reputation *r, uint64_t now, struct reputation_opinion_entry **ret,
                             size_t *ret_n);

/* Stores issuer's opinion (already verified by opinion.h), replacing an
 * older version.  -EALREADY when version is not newer than the one held;
 * an opinion of ourselves by ourselves is ignored (-EINVAL). Entries about
 * the issuer itself are dropped (nobody vouches for itself); of the same
 * (subject, skill) twice, the last counts.  -E2BIG over max_entries,
 * -EINVAL for a count not finite and ≥ 0 or a skill not 1-63 bytes.  When
 * max_issuers are held, the one with the least trust (the oldest of
 * equals) goes; -ENOBUFS when that would be the newcomer itself. */
int reputation_add_opinion(struct reputation *r, const uint8_t issuer[REPUTATION_ID_SIZE], uint64_t version,
                           const struct reputation_opinion_entry *entries, size_t n, uint64_t now);

/* Recomputes global trust (EigenTrust power iteration); the daemon calls
 * it after opinions arrive, at most every few seconds.  Until the first
 * call, only own observations count. */
void reputation_update_trust(struct reputation *r, uint64_t now);

/* The version of the opinion held from issuer (0 when none), for relaying. */
uint64_t reputation_opinion_version(struct reputation *r, const uint8_t issuer[REPUTATION_ID_SIZE]);

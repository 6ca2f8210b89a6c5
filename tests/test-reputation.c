/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Reputation: decay, EWMAs, persistence, opinions and EigenTrust, with a
 * clock of our own. */

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reputation.h"

#define HOUR 3600000000ull
#define T0 (1700000000ull * 1000000ull)

static void id(uint8_t out[REPUTATION_ID_SIZE], unsigned k) {
        memset(out, 0, REPUTATION_ID_SIZE);
        out[0] = (uint8_t) (k & 0xff);
        out[1] = (uint8_t) (k >> 8);
        out[31] = 0xa5;
}

static struct reputation *new_self(unsigned self) {
        struct reputation_params p;
        struct reputation *r = NULL;
        uint8_t s[32];

        reputation_params_default(&p);
        id(s, self);
        cr_assert_eq(reputation_new(s, &p, &r), 0);
        return r;
}

static struct reputation_view view(struct reputation *r, unsigned peer, const char *skill, uint64_t now) {
        struct reputation_view v;
        uint8_t p[32];

        id(p, peer);
        reputation_get(r, p, skill, now, &v);
        return v;
}

static void observe(struct reputation *r, unsigned peer, const char *skill, bool ok, unsigned times, uint64_t now) {
        uint8_t p[32];

        id(p, peer);
        for (unsigned i = 0; i < times; i++)
                cr_assert_eq(reputation_observe(r, p, skill, ok, now), 0);
}

static int opinion(struct reputation *r, unsigned issuer, uint64_t version, const struct reputation_opinion_entry *e,
                   size_t n, uint64_t now) {
        uint8_t i[32];

        id(i, issuer);
        return reputation_add_opinion(r, i, version, e, n, now);
}

static struct reputation_opinion_entry entry(unsigned subject, const char *skill, double s, double f) {
        struct reputation_opinion_entry e = { .successes = s, .failures = f };

        id(e.subject, subject);
        strcpy(e.skill, skill);
        return e;
}

Test(reputation, unknown_peer_gets_the_prior) {
        struct reputation *r = new_self(0);
        struct reputation_view v = view(r, 7, "gemm", T0);

        cr_assert_float_eq(v.mean, 0.5, 1e-12);
        cr_assert_eq(v.successes, 0);
        cr_assert_eq(v.trust, 0);
        cr_assert_eq(v.latency_ewma_usec, 0);
        cr_assert_eq(v.throughput_ratio, 0);
        reputation_free(r);
}

Test(reputation, observations_count_per_skill) {
        struct reputation *r = new_self(0);
        struct reputation_view v;

        observe(r, 1, "gemm", true, 8, T0);
        observe(r, 1, "gemm", false, 2, T0);
        observe(r, 1, "sort", false, 3, T0);
        v = view(r, 1, "gemm", T0);
        cr_assert_float_eq(v.own_successes, 8, 1e-9);
        cr_assert_float_eq(v.own_failures, 2, 1e-9);
        cr_assert_float_eq(v.mean, 9.0 / 12.0, 1e-9);
        v = view(r, 1, "sort", T0);
        cr_assert_float_eq(v.failures, 3, 1e-9);
        cr_assert_float_eq(v.mean, 1.0 / 5.0, 1e-9);
        reputation_free(r);
}

Test(reputation, half_life_halves_counts) {
        struct reputation *r = new_self(0);
        struct reputation_view v;

        observe(r, 1, "gemm", true, 8, T0);
        observe(r, 1, "gemm", false, 4, T0);
        v = view(r, 1, "gemm", T0 + HOUR);
        cr_assert_float_eq(v.own_successes, 4, 1e-9);
        cr_assert_float_eq(v.own_failures, 2, 1e-9);
        v = view(r, 1, "gemm", T0 + 2 * HOUR);
        cr_assert_float_eq(v.own_successes, 2, 1e-9);
        /* A new observation adds to the decayed count. */
        observe(r, 1, "gemm", true, 1, T0 + 2 * HOUR);
        v = view(r, 1, "gemm", T0 + 2 * HOUR);
        cr_assert_float_eq(v.own_successes, 3, 1e-9);
        cr_assert_float_eq(v.own_failures, 1, 1e-9);
        /* A clock that goes back does not inflate anything. */
        v = view(r, 1, "gemm", T0);
        cr_assert_float_eq(v.own_successes, 3, 1e-9);
        reputation_free(r);
}

Test(reputation, latency_and_throughput_ewmas) {
        struct reputation *r = new_self(0);
        struct reputation_view v;
        uint8_t p[32];

        id(p, 1);
        cr_assert_eq(reputation_observe_latency(r, p, "gemm", 1000, T0), 0);
        cr_assert_float_eq(view(r, 1, "gemm", T0).latency_ewma_usec, 1000, 1e-9);
        cr_assert_eq(reputation_observe_latency(r, p, "gemm", 2000, T0), 0);
        cr_assert_float_eq(view(r, 1, "gemm", T0).latency_ewma_usec, 0.7 * 1000 + 0.3 * 2000, 1e-9);
        cr_assert_eq(reputation_observe_latency(r, p, "gemm", NAN, T0), -EINVAL);
        cr_assert_eq(reputation_observe_latency(r, p, "gemm", -1, T0), -EINVAL);

        cr_assert_eq(reputation_observe_throughput(r, p, "gemm", 1e9, 3e9, T0), 0);
        cr_assert_float_eq(view(r, 1, "gemm", T0).throughput_ratio, 1.0 / 3.0, 1e-9);
        cr_assert_eq(reputation_observe_throughput(r, p, "gemm", 3e9, 3e9, T0), 0);
        v = view(r, 1, "gemm", T0);
        cr_assert_float_eq(v.throughput_ratio, 0.5 / 3.0 + 0.5, 1e-9);
        cr_assert_eq(reputation_observe_throughput(r, p, "gemm", 1e9, 0, T0), -EINVAL);
        cr_assert_eq(reputation_observe_throughput(r, p, "gemm", INFINITY, 1, T0), -EINVAL);
        /* Neither is a success or a failure. */
        cr_assert_eq(v.successes + v.failures, 0);
        reputation_free(r);
}

Test(reputation, rejects_bad_arguments) {
        struct reputation_params p;
        struct reputation *r = NULL;
        uint8_t s[32], peer[32];
        char longskill[80];

        id(s, 0);
        id(peer, 1);
        reputation_params_default(&p);
        p.half_life_usec = 0;
        cr_assert_eq(reputation_new(s, &p, &r), -EINVAL);
        reputation_params_default(&p);
        p.pretrust = NAN;
        cr_assert_eq(reputation_new(s, &p, &r), -EINVAL);

        r = new_self(0);
        memset(longskill, 'a', sizeof(longskill) - 1);
        longskill[sizeof(longskill) - 1] = 0;
        cr_assert_eq(reputation_observe(r, peer, "", true, T0), -EINVAL);
        cr_assert_eq(reputation_observe(r, peer, longskill, true, T0), -EINVAL);
        cr_assert_eq(reputation_observe(r, peer, NULL, true, T0), -EINVAL);
        reputation_free(r);
}

Test(reputation, export_import_round_trip) {
        struct reputation *r = new_self(0), *q = new_self(0);
        struct reputation_row *rows = NULL;
        struct reputation_view a, b;
        size_t n = 0;
        uint8_t p[32];

        id(p, 2);
        observe(r, 1, "gemm", true, 6, T0);
        observe(r, 1, "gemm", false, 2, T0);
        observe(r, 2, "sort", true, 3, T0);
        cr_assert_eq(reputation_observe_latency(r, p, "sort", 5000, T0), 0);
        cr_assert_eq(reputation_observe_throughput(r, p, "sort", 2, 4, T0), 0);

        cr_assert_eq(reputation_export(r, T0 + HOUR, &rows, &n), 0);
        cr_assert_eq(n, 2);
        for (size_t i = 0; i < n; i++)
                cr_assert_eq(reputation_import(q, &rows[i]), 0);
        free(rows);

        /* Decay carries over the restart: the same figures later on. */
        for (unsigned k = 1; k <= 2; k++) {
                const char *skill = k == 1 ? "gemm" : "sort";

                a = view(r, k, skill, T0 + 3 * HOUR);
                b = view(q, k, skill, T0 + 3 * HOUR);
                cr_assert_float_eq(a.own_successes, b.own_successes, 1e-9);
                cr_assert_float_eq(a.own_failures, b.own_failures, 1e-9);
                cr_assert_float_eq(a.latency_ewma_usec, b.latency_ewma_usec, 1e-9);
                cr_assert_float_eq(a.throughput_ratio, b.throughput_ratio, 1e-9);
        }
        cr_assert_float_eq(view(q, 1, "gemm", T0 + 3 * HOUR).own_successes, 6.0 / 8.0, 1e-9);

        struct reputation_row bad = { .successes = NAN };
        memcpy(bad.peer, p, 32);
        strcpy(bad.skill, "gemm");
        cr_assert_eq(reputation_import(q, &bad), -EINVAL);
        reputation_free(r);
        reputation_free(q);
}

Test(reputation, build_opinion_most_observed_first_and_bounded) {
        struct reputation_params p;
        struct reputation *r = NULL;
        struct reputation_opinion_entry *e = NULL;
        size_t n = 0;
        uint8_t s[32];

        reputation_params_default(&p);
        p.max_entries = 3;
        id(s, 0);
        cr_assert_eq(reputation_new(s, &p, &r), 0);
        for (unsigned k = 1; k <= 5; k++)
                observe(r, k, "gemm", k % 2, k, T0);
        cr_assert_eq(reputation_build_opinion(r, T0, &e, &n), 0);
        cr_assert_eq(n, 3);
        cr_assert_eq(e[0].subject[0], 5);
        cr_assert_eq(e[1].subject[0], 4);
        cr_assert_eq(e[2].subject[0], 3);
        cr_assert_float_eq(e[1].failures, 4, 1e-9);
        free(e);
        reputation_free(r);
}

Test(reputation, opinion_versions_must_increase) {
        struct reputation *r = new_self(0);
        struct reputation_opinion_entry e = entry(5, "gemm", 3, 0);
        uint8_t i[32];

        id(i, 1);
        cr_assert_eq(reputation_opinion_version(r, i), 0);
        cr_assert_eq(opinion(r, 1, 2, &e, 1, T0), 0);
        cr_assert_eq(reputation_opinion_version(r, i), 2);
        cr_assert_eq(opinion(r, 1, 2, &e, 1, T0), -EALREADY);
        cr_assert_eq(opinion(r, 1, 1, &e, 1, T0), -EALREADY);
        cr_assert_eq(opinion(r, 1, 3, &e, 1, T0), 0);
        cr_assert_eq(reputation_opinion_version(r, i), 3);
        /* From ourselves: not an opinion. */
        cr_assert_eq(opinion(r, 0, 9, &e, 1, T0), -EINVAL);
        e.successes = -1;
        cr_assert_eq(opinion(r, 1, 4, &e, 1, T0), -EINVAL);
        e.successes = INFINITY;
        cr_assert_eq(opinion(r, 1, 4, &e, 1, T0), -EINVAL);
        reputation_free(r);
}

Test(reputation, trusted_opinion_moves_an_unused_provider) {
        struct reputation *r = new_self(0);
        struct reputation_opinion_entry e[2] = { entry(9, "gemm", 40, 0), entry(10, "gemm", 0, 40) };
        struct reputation_view v;

        observe(r, 1, "gemm", true, 20, T0);
        cr_assert_eq(opinion(r, 1, 1, e, 2, T0), 0);
        /* Before the first trust update only our own observations count. */
        cr_assert_float_eq(view(r, 9, "gemm", T0).mean, 0.5, 1e-12);
        reputation_update_trust(r, T0);

        v = view(r, 9, "gemm", T0);
        cr_assert_gt(v.successes, 1);
        cr_assert_leq(v.successes, 0.5 * 40 + 1e-9);   /* never more than opinion_weight of ours */
        cr_assert_gt(v.mean, 0.9);
        cr_assert_eq(v.own_successes, 0);
        v = view(r, 10, "gemm", T0);
        cr_assert_lt(v.mean, 0.1);
        /* Trust flows: self → 1 → 9. */
        cr_assert_gt(view(r, 1, "gemm", T0).trust, 0.1);
        cr_assert_gt(view(r, 9, "gemm", T0).trust, 0.05);
        cr_assert_float_eq(view(r, 10, "gemm", T0).trust, 0, 1e-12);
        reputation_free(r);
}

Test(reputation, self_opinions_ignored) {
        struct reputation *r = new_self(0);
        struct reputation_opinion_entry e[2] = { entry(1, "gemm", 1000, 0), entry(2, "gemm", 1000, 0) };

        observe(r, 1, "gemm", true, 10, T0);
        observe(r, 1, "gemm", false, 10, T0);
        observe(r, 2, "gemm", true, 10, T0);
        /* 1 praises itself (dropped) and 2. */
        cr_assert_eq(opinion(r, 1, 1, e, 2, T0), 0);
        reputation_update_trust(r, T0);
        cr_assert_float_eq(view(r, 1, "gemm", T0).successes, 10, 1e-9);
        cr_assert_float_eq(view(r, 1, "gemm", T0).mean, 0.5, 1e-9);
        /* 1 has s = f with us: no local trust, so its praise of 2 is worth 0. */
        cr_assert_float_eq(view(r, 2, "gemm", T0).successes, 10, 1e-9);
        cr_assert_float_eq(view(r, 1, "gemm", T0).trust, 0, 1e-12);
        reputation_free(r);
}

/* Self (0) has good experience with 5 honest nodes (1-5), who know each
 * other well; 20 colluders (100-119) praise each other with huge counts
 * and slander the honest ones.  Optionally self had one good job from a
 * colluder, so some trust leaks into the clique. */
static void collusion(bool leak) {
        struct reputation *r = new_self(0);
        struct reputation_opinion_entry e[64];
        double colluder_trust = 0, honest_trust = 0;

        for (unsigned h = 1; h <= 5; h++)
                observe(r, h, "gemm", true, 20, T0);
        if (leak)
                observe(r, 100, "gemm", true, 1, T0);
        for (unsigned h = 1; h <= 5; h++) {
                size_t n = 0;

                for (unsigned o = 1; o <= 5; o++)
                        if (o != h)
                                e[n++] = entry(o, "gemm", 30, 0);
                /* and an honest node found the colluders bad */
                e[n++] = entry(100 + h, "gemm", 0, 10);
                cr_assert_eq(opinion(r, h, 1, e, n, T0), 0);
        }
        for (unsigned c = 100; c < 120; c++) {
                size_t n = 0;

                for (unsigned o = 100; o < 120; o++)
                        if (o != c)
                                e[n++] = entry(o, "gemm", 1e9, 0);
                for (unsigned h = 1; h <= 5; h++)
                        e[n++] = entry(h, "gemm", 0, 1e9);
                cr_assert_eq(opinion(r, c, 1, e, n, T0), 0);
        }
        reputation_update_trust(r, T0);

        for (unsigned c = 100; c < 120; c++) {
                struct reputation_view v = view(r, c, "gemm", T0);

                colluder_trust += v.trust;
                if (!leak) {
                        cr_assert_leq(v.mean, 0.5 + 1e-9, "colluder %u mean %g", c, v.mean);
                        cr_assert_float_eq(v.trust, 0, 1e-9);
                }
        }
        for (unsigned h = 1; h <= 5; h++) {
                struct reputation_view v = view(r, h, "gemm", T0);

                honest_trust += v.trust;
                cr_assert_gt(v.mean, 0.9, "honest %u mean %g", h, v.mean);
        }
        if (!leak)
                cr_assert_lt(colluder_trust, 1e-9);
        else {
                /* One job of 101 gives the clique at most its share of our
                 * row, damped by (1 − a) at every hop, and its 10⁹ counts
                 * count as 100 at that sliver of weight. */
                cr_assert_lt(colluder_trust, 0.05, "colluders %g", colluder_trust);
                for (unsigned c = 100; c < 120; c++)
                        cr_assert_lt(view(r, c, "gemm", T0).mean, 0.8, "colluder %u mean %g", c,
                                     view(r, c, "gemm", T0).mean);
        }
        cr_assert_gt(honest_trust, 0.4, "honest %g", honest_trust);
        reputation_free(r);
}

Test(reputation, collusion_clique_does_not_dominate) {
        collusion(false);
}

Test(reputation, collusion_clique_gets_little_from_a_leak) {
        collusion(true);
}

Test(reputation, least_trusted_issuer_goes_when_full) {
        struct reputation_params p;
        struct reputation *r = NULL;
        struct reputation_opinion_entry e = entry(50, "gemm", 10, 0);
        uint8_t s[32], i[32];

        reputation_params_default(&p);
        p.max_issuers = 2;
        id(s, 0);
        cr_assert_eq(reputation_new(s, &p, &r), 0);
        observe(r, 1, "gemm", true, 10, T0);
        cr_assert_eq(opinion(r, 1, 1, &e, 1, T0), 0);
        cr_assert_eq(opinion(r, 2, 1, &e, 1, T0 + 1), 0);
        reputation_update_trust(r, T0);
        /* 3 (no trust) pushes out 2 (no trust, older), not 1. */
        cr_assert_eq(opinion(r, 3, 1, &e, 1, T0 + 2), 0);
        id(i, 1);
        cr_assert_eq(reputation_opinion_version(r, i), 1);
        id(i, 2);
        cr_assert_eq(reputation_opinion_version(r, i), 0);
        reputation_free(r);
}

Test(reputation, many_peers_stay_consistent) {
        struct reputation *r = new_self(0);

        for (unsigned k = 1; k <= 3000; k++)
                observe(r, k, k % 2 ? "gemm" : "sort", k % 3 != 0, 1 + k % 4, T0);
        for (unsigned k = 1; k <= 3000; k++) {
                struct reputation_view v = view(r, k, k % 2 ? "gemm" : "sort", T0);

                cr_assert_float_eq(v.own_successes + v.own_failures, 1 + k % 4, 1e-9);
                cr_assert_eq(view(r, k, k % 2 ? "sort" : "gemm", T0).own_successes, 0);
        }
        reputation_update_trust(r, T0);
        reputation_free(r);
}

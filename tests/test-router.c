/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The router's scoring and ranking: pure, driven with a seeded generator. */

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "router.h"

static uint8_t ids[8][32];

static uint64_t splitmix(void *userdata) {
        uint64_t *s = userdata, z = (*s += 0x9e3779b97f4a7c15ULL);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static struct router_candidate cand(int i, uint64_t price, double throughput) {
        ids[i][0] = (uint8_t) i;
        return (struct router_candidate) {
                .id = ids[i],
                .price = price,
                .throughput = throughput,
                .load = 0,
                .capacity = 4,
                .successes = 20,
        };
}

static const struct router_params params = { .units = 1e6, .exploration = 0, .explore_below = 3 };

Test(router, cheaper_wins_at_equal_speed) {
        struct router_candidate c[3] = { cand(0, 300, 1e6), cand(1, 100, 1e6), cand(2, 200, 1e6) };
        uint64_t seed = 1;

        router_rank(c, 3, &params, splitmix, &seed);
        cr_assert_eq(c[0].id[0], 1);
        cr_assert_eq(c[1].id[0], 2);
        cr_assert_eq(c[2].id[0], 0);
}

Test(router, faster_wins_at_equal_price) {
        struct router_candidate c[3] = { cand(0, 100, 1e5), cand(1, 100, 1e7), cand(2, 100, 1e6) };
        uint64_t seed = 1;

        router_rank(c, 3, &params, splitmix, &seed);
        cr_assert_eq(c[0].id[0], 1);
        cr_assert_eq(c[1].id[0], 2);
        cr_assert_eq(c[2].id[0], 0);
}

Test(router, observed_latency_outweighs_advert) {
        struct router_candidate a = cand(0, 100, 1e7), b = cand(1, 100, 1e6);

        /* a advertises 10× b's speed but has been slow 20 times. */
        a.latency_ewma_usec = 50e6;
        b.latency_ewma_usec = 1e6;
        cr_assert_gt(router_score(&a, &params), router_score(&b, &params));
        cr_assert_gt(router_expected_usec(&a, &params), 10e6);
}

Test(router, provider_with_many_failures_sinks) {
        struct router_candidate c[3] = { cand(0, 100, 1e6), cand(1, 100, 1e6), cand(2, 100, 1e6) };
        uint64_t seed = 1;

        c[0].successes = 2;
        c[0].failures = 30;
        router_rank(c, 3, &params, splitmix, &seed);
        cr_assert_eq(c[2].id[0], 0);

        /* Even at half the price, a mostly failing provider loses. */
        c[2].price = 50;
        router_rank(c, 3, &params, splitmix, &seed);
        cr_assert_eq(c[2].id[0], 0);
}

Test(router, reputation_is_beta_posterior_mean_to_the_fourth) {
        struct router_candidate a = cand(0, 100, 1e6), b = a;

        a.successes = 0;
        a.failures = 0;
        b.successes = 1;
        b.failures = 1;
        /* (0+1)/(0+2) = (1+1)/(2+2) = 1/2. */
        cr_assert_float_eq(router_score(&a, &params), router_score(&b, &params), 1e-9);
        b.successes = 3;
        b.failures = 1;         /* 4/6 */
        cr_assert_float_eq(router_score(&a, &params) / router_score(&b, &params), pow((4.0 / 6.0) / 0.5, 4), 1e-9);
}

Test(router, power_of_two_picks_less_loaded_of_the_best_two) {
        struct router_candidate c[3] = { cand(0, 100, 1e6), cand(1, 110, 1e6), cand(2, 500, 1e6) };
        uint64_t seed = 1;

        /* 0 is cheaper but busier; its queue does not cost it the lead
         * in score when the job is tiny, yet power of two prefers 1. */
        struct router_params tiny = params;
        tiny.units = 1;
        c[0].load = 3;
        c[1].load = 1;
        cr_assert_lt(router_score(&c[0], &tiny), router_score(&c[1], &tiny));
        router_rank(c, 3, &tiny, splitmix, &seed);
        cr_assert_eq(c[0].id[0], 1);
        cr_assert_eq(c[1].id[0], 0);
}

Test(router, power_of_two_balances_load_over_equals) {
        struct router_candidate c[2];
        unsigned picked[2] = { 0, 0 };
        unsigned load[2] = { 0, 0 };
        uint64_t seed = 7;

        /* Two identical providers; every pick adds to the chosen one's
         * load: the router keeps them within one job of each other. */
        for (int i = 0; i < 40; i++) {
                c[0] = cand(0, 100, 1e6);
                c[1] = cand(1, 100, 1e6);
                c[0].capacity = c[1].capacity = 64;
                c[0].load = load[0];
                c[1].load = load[1];
                router_rank(c, 2, &params, splitmix, &seed);
                picked[c[0].id[0]]++;
                load[c[0].id[0]]++;
                cr_assert_leq(load[0] > load[1] ? load[0] - load[1] : load[1] - load[0], 1);
        }
        cr_assert_eq(picked[0], 20);
        cr_assert_eq(picked[1], 20);
}

Test(router, power_of_two_does_not_override_a_far_better_score) {
        struct router_candidate c[2] = { cand(0, 100, 1e6), cand(1, 1000, 1e6) };
        uint64_t seed = 1;

        c[0].load = 2;
        router_rank(c, 2, &params, splitmix, &seed);
        cr_assert_eq(c[0].id[0], 0);
}

Test(router, exploration_share_matches) {
        const unsigned trials = 20000;
        struct router_params p = params;
        unsigned explored = 0;
        uint64_t seed = 42;

        p.exploration = 0.05;
        for (unsigned t = 0; t < trials; t++) {
                struct router_candidate c[4] = { cand(0, 100, 1e6), cand(1, 120, 1e6), cand(2, 300, 1e6),
                                                 cand(3, 400, 1e6) };
                c[2].successes = 0;     /* newcomers */
                c[3].successes = 1;
                router_rank(c, 4, &p, splitmix, &seed);
                if (c[0].id[0] >= 2)
                        explored++;
                else
                        cr_assert_eq(c[0].id[0], 0);
        }
        cr_assert_gt(explored, trials * 4 / 100);
        cr_assert_lt(explored, trials * 6 / 100);
}

Test(router, exploration_is_deterministic_given_the_seed) {
        struct router_params p = params;

        p.exploration = 0.5;
        for (int round = 0; round < 2; round++) {
                static uint8_t first[2][64];
                uint64_t seed = 99;

                for (int t = 0; t < 64; t++) {
                        struct router_candidate c[3] = { cand(0, 100, 1e6), cand(1, 300, 1e6), cand(2, 300, 1e6) };
                        c[1].successes = c[2].successes = 0;
                        router_rank(c, 3, &p, splitmix, &seed);
                        first[round][t] = c[0].id[0];
                }
                if (round == 1)
                        cr_assert_eq(memcmp(first[0], first[1], sizeof(first[0])), 0);
        }
}

Test(router, exploration_without_newcomers_keeps_the_order) {
        struct router_candidate c[2] = { cand(0, 100, 1e6), cand(1, 300, 1e6) };
        struct router_params p = params;
        uint64_t seed = 3;

        p.exploration = 1.0;
        router_rank(c, 2, &p, splitmix, &seed);
        cr_assert_eq(c[0].id[0], 0);
}

Test(router, local_candidate_is_ranked_like_others) {
        struct router_candidate c[2] = { cand(0, 200, 1e6), cand(1, 100, 1e6) };
        uint64_t seed = 1;

        c[0].local = true;
        cr_assert_float_eq(router_score(&c[0], &params) / 2, router_score(&c[1], &params), 1e-6);
        router_rank(c, 2, &params, splitmix, &seed);
        cr_assert_eq(c[0].id[0], 1);
        cr_assert(c[1].local);

        c[0] = cand(0, 100, 1e6);
        c[0].local = true;
        c[1] = cand(1, 200, 1e6);
        router_rank(c, 2, &params, splitmix, &seed);
        cr_assert(c[0].local);
}

Test(router, zero_and_one_candidates) {
        struct router_candidate c[1] = { cand(0, 100, 1e6) };
        struct router_params p = params;
        uint64_t seed = 5;

        p.exploration = 1.0;
        router_rank(NULL, 0, &p, splitmix, &seed);
        router_rank(c, 1, &p, splitmix, &seed);
        cr_assert_eq(c[0].id[0], 0);
        c[0].successes = 0;
        router_rank(c, 1, &p, splitmix, &seed);
        cr_assert_eq(c[0].id[0], 0);
        router_rank(c, 1, &p, NULL, NULL);
        cr_assert_eq(c[0].id[0], 0);
}

Test(router, unknown_throughput_and_capacity_are_finite) {
        struct router_candidate c = cand(0, 0, 0);

        c.capacity = 0;
        c.load = 0;
        cr_assert_gt(router_score(&c, &params), 0);
        cr_assert_lt(router_expected_usec(&c, &params), 1e8);
}

Test(router, consider_skips_other_variants_and_offers_over_the_max_price) {
        struct router_job job = { .variant = "model-a", .local_price = 100, .list_price = 10, .max_price = 150 };
        uint64_t price = 0;

        /* Twice our list price: twice our price for this job. */
        cr_assert_eq(router_consider(&job, &(struct router_offer) { .variant = "model-a", .price = 20 }, &price),
                     ROUTER_TOO_DEAR);
        cr_assert_eq(router_consider(&job, &(struct router_offer) { .variant = "model-a", .price = 15 }, &price),
                     ROUTER_CANDIDATE);
        cr_assert_eq(price, 150);
        cr_assert_eq(router_consider(&job, &(struct router_offer) { .variant = "model-b", .price = 1 }, &price),
                     ROUTER_OTHER_VARIANT);
        {
                struct router_job any = { .any_variant = true, .local_price = 100, .list_price = 10,
                                          .max_price = 150 };

                cr_assert_eq(router_consider(&any, &(struct router_offer) { .variant = "model-b", .price = 10 },
                                             &price), ROUTER_CANDIDATE, "any variant, when results are checked");
        }
        cr_assert_eq(router_consider(&job, &(struct router_offer) { .variant = NULL, .price = 1 }, &price),
                     ROUTER_OTHER_VARIANT);
        /* Ourselves: our own price, whatever the list says. */
        cr_assert_eq(router_consider(&job, &(struct router_offer) { .local = true, .variant = "model-a",
                                                                    .price = 1000 }, &price),
                     ROUTER_CANDIDATE);
        cr_assert_eq(price, 100);
}

Test(router, estimated_prices_round_up_and_units_follow_the_price_unit) {
        cr_assert_eq(router_estimate_price(10, 3, 1), 4);
        cr_assert_eq(router_estimate_price(10, 0, 7), 10, "no list price: our own");
        cr_assert_eq(router_estimate_price(UINT64_MAX / 2, 1, 4), UINT64_MAX);
        cr_assert_float_eq(router_units(2000, 1000, "GFLOP", "flop"), 2e9, 1);
        cr_assert_float_eq(router_units(3, 1, "MiB", "byte"), 3.0 * 1048576.0, 1e-6);
        cr_assert_float_eq(router_units(5, 0, "GFLOP", "flop"), 5, 1e-9);
        cr_assert_float_eq(router_units(4, 2, "job", "flop"), 2, 1e-9, "unrelated units scale by 1");
}

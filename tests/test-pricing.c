/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Demand pricing: bounded steps, bounds, convergence. */

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>

#include "pricing.h"

static struct pricing_params defaults(void) {
        struct pricing_params p;

        pricing_params_default(&p);
        return p;
}

Test(pricing, defaults_are_valid) {
        struct pricing_params p = defaults();

        cr_assert_eq(pricing_params_check(&p), 0);
        cr_assert_float_eq(p.target, 0.7, 1e-12);
        cr_assert_float_eq(p.max_step, 0.125, 1e-12);
}

Test(pricing, params_check_rejects_nonsense) {
        struct pricing_params p;

        p = defaults(), p.target = 0;
        cr_assert_eq(pricing_params_check(&p), -EINVAL);
        p = defaults(), p.target = 1.5;
        cr_assert_eq(pricing_params_check(&p), -EINVAL);
        p = defaults(), p.target = 1;
        cr_assert_eq(pricing_params_check(&p), 0);
        p = defaults(), p.max_step = 0;
        cr_assert_eq(pricing_params_check(&p), -EINVAL);
        p = defaults(), p.max_step = 1;
        cr_assert_eq(pricing_params_check(&p), -EINVAL);
        p = defaults(), p.floor = 0;
        cr_assert_eq(pricing_params_check(&p), -EINVAL);
        p = defaults(), p.cap = 0.1;
        cr_assert_eq(pricing_params_check(&p), -EINVAL);
        p = defaults(), p.cap = INFINITY;
        cr_assert_eq(pricing_params_check(&p), -EINVAL);
        p = defaults(), p.target = NAN;
        cr_assert_eq(pricing_params_check(&p), -EINVAL);
        cr_assert_eq(pricing_params_check(NULL), -EINVAL);
}

Test(pricing, every_step_is_bounded) {
        struct pricing_params p = defaults();
        const double us[] = { 0, 0.1, 0.35, 0.7, 0.8, 1.0, 1.4, 3, 100, INFINITY, -5, NAN };

        for (double m = 0.5; m <= 10; m *= 1.37)
                for (size_t i = 0; i < sizeof(us) / sizeof(us[0]); i++) {
                        double n = pricing_step(m, us[i], &p);

                        cr_assert(isfinite(n));
                        cr_assert_leq(n, m * (1 + p.max_step) + 1e-12, "m %g u %g → %g", m, us[i], n);
                        cr_assert_geq(n, m * (1 - p.max_step) - 1e-12, "m %g u %g → %g", m, us[i], n);
                        cr_assert_geq(n, p.floor);
                        cr_assert_leq(n, p.cap);
                }
}

Test(pricing, step_follows_the_formula) {
        struct pricing_params p = defaults();

        cr_assert_float_eq(pricing_step(1, 0.7, &p), 1, 1e-12);
        cr_assert_float_eq(pricing_step(1, 1.4, &p), 1.125, 1e-12);
        cr_assert_float_eq(pricing_step(1, 5, &p), 1.125, 1e-12);
        cr_assert_float_eq(pricing_step(1, 0, &p), 0.875, 1e-12);
        cr_assert_float_eq(pricing_step(1, 0.35, &p), 1 - 0.0625, 1e-12);
        /* NaN and negative utilisation count as idle. */
        cr_assert_float_eq(pricing_step(1, NAN, &p), 0.875, 1e-12);
        cr_assert_float_eq(pricing_step(1, -1, &p), 0.875, 1e-12);
}

Test(pricing, floor_and_cap_hold) {
        struct pricing_params p = defaults();
        double m = 1;

        for (int i = 0; i < 200; i++)
                m = pricing_step(m, 10, &p);
        cr_assert_float_eq(m, p.cap, 1e-12);
        for (int i = 0; i < 200; i++)
                m = pricing_step(m, 0, &p);
        cr_assert_float_eq(m, p.floor, 1e-12);
        /* Sustained excess doubles the price in about six steps. */
        m = 1;
        for (int i = 0; i < 6; i++)
                m = pricing_step(m, 10, &p);
        cr_assert(m > 1.9 && m < 2.1);
}

/* A provider whose utilisation falls as its price rises (demand
 * elasticity 1): the multiplier settles where u = target. */
Test(pricing, converges_toward_target) {
        struct pricing_params p = defaults();
        double m = 1, u = 0;

        for (int i = 0; i < 300; i++) {
                u = 1.4 / m;
                m = pricing_step(m, u, &p);
        }
        cr_assert_float_eq(u, p.target, 1e-3);
        cr_assert_float_eq(m, 2.0, 1e-3);
}

Test(pricing, apply_rounds_up_and_saturates) {
        cr_assert_eq(pricing_apply(100, 1.0), 100);
        cr_assert_eq(pricing_apply(100, 1.234), 124);
        cr_assert_eq(pricing_apply(3, 0.01), 1);
        cr_assert_eq(pricing_apply(0, 5), 0);
        cr_assert_eq(pricing_apply(UINT64_MAX, 10), UINT64_MAX);
        cr_assert_eq(pricing_apply(1000, NAN), 1);
        cr_assert_eq(pricing_apply(1000, INFINITY), UINT64_MAX);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Demand pricing (pricing.h). */

#include <errno.h>
#include <math.h>
#include <stdint.h>

#include "pricing.h"

void pricing_params_default(struct pricing_params *p) {
        *p = (struct pricing_params) {
                .target = 0.7,
                .max_step = 0.125,
                .floor = 0.5,
                .cap = 10.0,
        };
}

int pricing_params_check(const struct pricing_params *p) {
        if (!p || !isfinite(p->target) || !isfinite(p->max_step) || !isfinite(p->floor) || !isfinite(p->cap))
                return -EINVAL;
        if (p->target <= 0 || p->target > 1 || p->max_step <= 0 || p->max_step >= 1 || p->floor <= 0 ||
            p->cap < p->floor)
                return -EINVAL;
        return 0;
}

double pricing_step(double multiplier, double utilisation, const struct pricing_params *p) {
        double u = isfinite(utilisation) ? utilisation : (utilisation > 0 ? INFINITY : 0);
        double x, m;

        /* NaN and negative count as idle; +∞ as far over target as can be. */
        if (!(u > 0))
                u = 0;
        x = (u - p->target) / p->target;
        if (x > 1)
                x = 1;
        else if (x < -1)
                x = -1;
        m = isfinite(multiplier) && multiplier > 0 ? multiplier : 1.0;
        m *= 1.0 + p->max_step * x;
        if (m < p->floor)
                m = p->floor;
        else if (m > p->cap)
                m = p->cap;
        return m;
}

unsigned long long pricing_apply(unsigned long long base, double multiplier) {
        double v;

        if (base == 0)
                return 0;
        if (!(multiplier > 0))
                return 1;
        v = ceil((double) base * multiplier);
        /* 2^64 as a double: anything from there up saturates. */
        if (!(v < 18446744073709551616.0))
                return UINT64_MAX;
        return v < 1 ? 1 : (unsigned long long) v;
}

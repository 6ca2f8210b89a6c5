/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Demand pricing: a provider's per-skill price multiplier, moved toward a
 * target utilisation like EIP-1559's base fee.  Pure arithmetic.
 *
 * Each step: m ← m × (1 + max_step × clamp((u − target) / target, −1, 1)),
 * then clamped to [floor, cap].  u is the skill's utilisation over the
 * last interval (busy + queued workers ÷ workers, so it can exceed 1 when
 * jobs queue).  The step is bounded (at most ±max_step, e.g. 12.5 %), so a
 * burst cannot make the price jump, and a sustained excess doubles it in
 * ~6 steps. */

struct pricing_params {
        double target;                  /* target utilisation, (0, 1], e.g. 0.7 */
        double max_step;                /* e.g. 0.125 */
        double floor, cap;              /* multiplier bounds, e.g. 0.5 and 10 */
};

void pricing_params_default(struct pricing_params *p);

/* -EINVAL when target ∉ (0, 1], max_step ∉ (0, 1), floor ≤ 0, cap < floor
 * (or any is not finite). */
int pricing_params_check(const struct pricing_params *p);

/* The next multiplier after an interval at utilisation u (negative or NaN
 * u counts as 0). */
double pricing_step(double multiplier, double utilisation, const struct pricing_params *p);

/* Price of a job: base (the skill's price()) × multiplier, rounded up,
 * saturating at UINT64_MAX; at least 1 when base > 0. */
unsigned long long pricing_apply(unsigned long long base, double multiplier);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Sampled verification's decision (daemon/core/check-sampling.c): who is
 * always checked, the share drawn, and that the draw depends on the
 * requester's secret and the job, not on the provider. */

#include <criterion/criterion.h>
#include <sodium.h>
#include <string.h>

#include "check-sampling.h"

static const struct check_policy policy = {
        .percent = 10,
        .after_failure_percent = 50,
        .measured_at = 5,
        .recent_failures = 0.5,
};

static void job_id(uint64_t n, uint8_t id[16]) {
        memset(id, 0, 16);
        memcpy(id, &n, sizeof(n));
}

Test(check_sampling, an_unmeasured_provider_is_always_checked) {
        uint8_t secret[CHECK_SECRET_SIZE] = { 1 }, id[16];

        for (uint64_t n = 0; n < 1000; n++) {
                job_id(n, id);
                cr_assert_eq(check_decide(&policy, secret, id, sizeof(id), 4.4, 0), CHECK_UNMEASURED);
        }
        cr_assert_eq(check_percent_for(&policy, 0, 0), 100);
        /* Decayed counts are rounded: 4.6 verified results are 5. */
        cr_assert_eq(check_percent_for(&policy, 4.6, 0), 10);
}

static unsigned drawn(const struct check_policy *p, const uint8_t secret[CHECK_SECRET_SIZE], double ok,
                      double failed, uint64_t n_jobs) {
        unsigned n = 0;
        uint8_t id[16];

        for (uint64_t k = 0; k < n_jobs; k++) {
                job_id(k, id);
                n += check_reason_checks(check_decide(p, secret, id, sizeof(id), ok, failed));
        }
        return n;
}

Test(check_sampling, a_measured_provider_is_checked_at_the_share_and_more_after_a_failure) {
        uint8_t secret[CHECK_SECRET_SIZE];
        unsigned n;

        randombytes_buf(secret, sizeof(secret));
        /* 100,000 draws at 10 %: within ±5 standard deviations (≈ 0.47 %). */
        n = drawn(&policy, secret, 50, 0, 100000);
        cr_assert(n > 9530 && n < 10470, "%u of 100000 checked at 10 %%", n);
        n = drawn(&policy, secret, 50, 1, 100000);
        cr_assert(n > 49200 && n < 50800, "%u of 100000 checked at 50 %% after a failure", n);
        cr_assert_eq(check_percent_for(&policy, 50, 1), 50);
        cr_assert_eq(check_percent_for(&policy, 50, 0.2), 10, "a failure long decayed no longer counts");

        struct check_policy none = policy, all = policy;
        none.percent = 0;
        none.after_failure_percent = 0;
        all.percent = 100;
        cr_assert_eq(drawn(&none, secret, 50, 0, 10000), 0);
        cr_assert_eq(drawn(&none, secret, 50, 3, 10000), 0);
        cr_assert_eq(drawn(&all, secret, 50, 0, 10000), 10000);
}

/* Another requester (another secret) draws other jobs: what one checks
 * tells nothing of what another will, and a provider that sees the job id
 * cannot compute the draw.  Two independent draws at 10 % agree on
 * 0.1² + 0.9² = 82 % of jobs; the same secret on all of them. */
Test(check_sampling, the_draw_is_keyed_by_the_requesters_secret) {
        uint8_t a[CHECK_SECRET_SIZE], b[CHECK_SECRET_SIZE], id[16];
        unsigned agree = 0, same = 0;

        randombytes_buf(a, sizeof(a));
        randombytes_buf(b, sizeof(b));
        for (uint64_t k = 0; k < 20000; k++) {
                enum check_reason x, y, z;

                job_id(k, id);
                x = check_decide(&policy, a, id, sizeof(id), 50, 0);
                y = check_decide(&policy, b, id, sizeof(id), 50, 0);
                z = check_decide(&policy, a, id, sizeof(id), 50, 0);
                agree += check_reason_checks(x) == check_reason_checks(y);
                same += x == z;
        }
        cr_assert_eq(same, 20000, "the same secret and job must give the same draw");
        cr_assert(agree > 16000 && agree < 16800, "two secrets agree on %u of 20000 jobs (expected ~16400)", agree);
}

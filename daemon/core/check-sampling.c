/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* check-sampling.h's decision: a keyed BLAKE2b of the job id, read as a
 * number in [0, 10000), against the share in hundredths of a percent. */

#include <sodium.h>
#include <string.h>

#include "check-sampling.h"

/* Counts decay (reputation.half_life): three results a minute ago are
 * 2.99 now, and still three results. */
static bool unmeasured(const struct check_policy *p, double own_successes) {
        return own_successes + 0.5 < p->measured_at;
}

unsigned check_percent_for(const struct check_policy *p, double own_successes, double own_failures) {
        if (unmeasured(p, own_successes))
                return 100;
        if (own_failures >= p->recent_failures && p->after_failure_percent > p->percent)
                return p->after_failure_percent > 100 ? 100 : p->after_failure_percent;
        return p->percent > 100 ? 100 : p->percent;
}

enum check_reason check_decide(const struct check_policy *p, const uint8_t secret[CHECK_SECRET_SIZE],
                               const uint8_t *job_id, size_t job_id_size, double own_successes,
                               double own_failures) {
        unsigned percent = check_percent_for(p, own_successes, own_failures);
        uint8_t h[8];
        uint64_t draw;

        if (unmeasured(p, own_successes))
                return CHECK_UNMEASURED;
        if (percent >= 100)
                return own_failures >= p->recent_failures && p->after_failure_percent > p->percent
                               ? CHECK_AFTER_FAILURE : CHECK_SAMPLED;
        crypto_generichash(h, sizeof(h), job_id, job_id_size, secret, CHECK_SECRET_SIZE);
        memcpy(&draw, h, sizeof(draw));
        if (draw % 10000 >= (uint64_t) percent * 100)
                return CHECK_NOT_SAMPLED;
        return percent == p->percent ? CHECK_SAMPLED : CHECK_AFTER_FAILURE;
}

const char *check_reason_to_string(enum check_reason r) {
        switch (r) {
        case CHECK_NOT_SAMPLED:
                return "not drawn for a check";
        case CHECK_SAMPLED:
                return "drawn for a check";
        case CHECK_UNMEASURED:
                return "checked: a provider not yet measured";
        case CHECK_AFTER_FAILURE:
                return "drawn for a check (a provider that failed recently)";
        }
        return "unknown";
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Which results a requester checks, for skills whose verification costs a
 * good share of the work (textgen: a teacher-forced pass over prompt and
 * output).  After Crynux: a secret random share of results is checked, all
 * of them from providers not yet measured, more from providers that failed
 * recently.  The decision is taken when the result is in, from a secret
 * only this requester holds and the job's id, so a provider cannot know,
 * while it works, whether this one will be checked; a result is checked or
 * not whoever ran it (no provider is spared by its id).
 *
 * Pure: the caller brings the secret, the job id and its reputation view. */

#include <stdbool.h>
#include <stdint.h>

#define CHECK_SECRET_SIZE 32

struct check_policy {
        unsigned percent;               /* share of results checked, 0…100 */
        unsigned after_failure_percent; /* ... from a provider with recent failures */
        double measured_at;             /* verified successes (decayed, rounded) before a provider is "measured" */
        double recent_failures;         /* decayed own failures from which after_failure_percent applies */
};

enum check_reason {
        CHECK_NOT_SAMPLED,      /* accepted without a check */
        CHECK_SAMPLED,          /* drawn at percent */
        CHECK_UNMEASURED,       /* fewer verified results than measured_at */
        CHECK_AFTER_FAILURE,    /* drawn at after_failure_percent */
};

/* own_successes/own_failures: this requester's decayed observations of
 * the provider for the skill (reputation_view.own_*). */
enum check_reason check_decide(const struct check_policy *p, const uint8_t secret[CHECK_SECRET_SIZE],
                               const uint8_t *job_id, size_t job_id_size, double own_successes,
                               double own_failures);

static inline bool check_reason_checks(enum check_reason r) {
        return r != CHECK_NOT_SAMPLED;
}

/* The share (percent) that applies to a provider now. */
unsigned check_percent_for(const struct check_policy *p, double own_successes, double own_failures);

const char *check_reason_to_string(enum check_reason r);

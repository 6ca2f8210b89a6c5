/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The pure half of the hardware challenge (jobs/challenge.h tells the
 * whole story): how big a challenge is, and the verdict on its timings. */

#include <stdbool.h>
#include <stdint.h>

#define CHALLENGE_SKILL "gemm"
#define CHALLENGE_TARGET_USEC 100000.0
#define CHALLENGE_LIAR_RATIO 0.5
#define CHALLENGE_LIAR_PENALTY 5u
#define CHALLENGE_CLOCK_SLACK_USEC 1000u

/* The matrix side for a provider advertising throughput FLOP/s, within
 * [CHALLENGE_N_MIN, CHALLENGE_N_MAX] and so that the three matrices fit in
 * max_message_size / 2.  Pure, for tests. */
#define CHALLENGE_N_MIN 64u
#define CHALLENGE_N_MAX 1024u
unsigned challenge_size(double throughput, uint64_t max_message_size);

/* The verdict on one challenge of flop floating-point operations: the
 * round trip we measured and the queue and execution times the provider
 * signed, all µs.  Pure, for tests. */
struct challenge_verdict {
        double measured;        /* FLOP/s on the provider's hardware (or delivered, when inconsistent) */
        double delivered;       /* FLOP/s over the whole round trip, network included */
        double ratio;           /* measured ÷ advertised */
        bool inconsistent;      /* the reported times do not fit the round trip */
        bool liar;              /* inconsistent, or ratio under CHALLENGE_LIAR_RATIO */
};
void challenge_judge(double flop, uint64_t attempt_usec, uint64_t queue_usec, uint64_t exec_usec,
                     double advertised, struct challenge_verdict *ret);

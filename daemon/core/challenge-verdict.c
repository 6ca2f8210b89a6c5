/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <math.h>

#include "challenge-verdict.h"

unsigned challenge_size(double throughput, uint64_t max_message_size) {
        double flop = throughput > 0 ? throughput * CHALLENGE_TARGET_USEC / 1e6 : 0;
        double n = cbrt(flop / 2.0);
        double fit = sqrt((double) max_message_size / 2.0 / (3.0 * sizeof(float)));

        if (!(n >= CHALLENGE_N_MIN))
                n = CHALLENGE_N_MIN;
        if (n > CHALLENGE_N_MAX)
                n = CHALLENGE_N_MAX;
        if (n > fit)
                n = fit;
        return n < 1 ? 1 : (unsigned) n;
}

void challenge_judge(double flop, uint64_t attempt_usec, uint64_t queue_usec, uint64_t exec_usec,
                     double advertised, struct challenge_verdict *ret) {
        *ret = (struct challenge_verdict) {};
        /* What the provider signed cannot take longer than what we saw. */
        ret->inconsistent = exec_usec == 0 || queue_usec > attempt_usec ||
                            exec_usec > attempt_usec - queue_usec + CHALLENGE_CLOCK_SLACK_USEC;
        ret->delivered = attempt_usec > 0 ? flop / ((double) attempt_usec / 1e6) : 0;
        ret->measured = ret->inconsistent ? ret->delivered : flop / ((double) exec_usec / 1e6);
        ret->ratio = advertised > 0 ? ret->measured / advertised : 0;
        ret->liar = ret->inconsistent || ret->ratio < CHALLENGE_LIAR_RATIO;
}

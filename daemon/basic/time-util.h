/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Time in µs, as sd-event counts it. */

#include <stdint.h>
#include <time.h>

#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_PER_MSEC UINT64_C(1000)
#define NSEC_PER_USEC UINT64_C(1000)

static inline uint64_t timespec_to_usec(const struct timespec *ts) {
        return (uint64_t) ts->tv_sec * USEC_PER_SEC + (uint64_t) ts->tv_nsec / NSEC_PER_USEC;
}

/* clock_gettime(clock) in µs; CLOCK_MONOTONIC and CLOCK_REALTIME cannot fail. */
static inline uint64_t now(clockid_t clock) {
        struct timespec ts;

        (void) clock_gettime(clock, &ts);
        return timespec_to_usec(&ts);
}

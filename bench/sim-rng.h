/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The simulators' random numbers: xorshift64*, seeded by the caller, so a
 * run is the same on every machine. */

#include <stdint.h>

static inline uint64_t rng_next(uint64_t *s) {
        uint64_t x = *s;

        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *s = x;
        return x * UINT64_C(2685821657736338717);
}

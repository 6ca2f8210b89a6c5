/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Demand pricing on the event loop: samples the utilisation of every
 * hosted skill (busy and queued workers per worker) every
 * DEMAND_SAMPLE_USEC and, every interval, moves the skill's demand
 * multiplier one pricing_step() (pricing.h) toward the target.  The
 * provider charges the skill's base price times it and the gossiped
 * record advertises the same (network_set_demand_callback()). */

#include <stdint.h>
#include <systemd/sd-event.h>

#include "pricing.h"

#define DEMAND_SAMPLE_USEC (250 * UINT64_C(1000))

struct demand;
struct skills;

/* interval_usec 0: fixed prices (every multiplier stays 1).  -EINVAL for
 * parameters pricing_params_check() refuses. */
int demand_new(sd_event *event, struct skills *skills, const struct pricing_params *params, uint64_t interval_usec,
               struct demand **ret);
struct demand *demand_free(struct demand *d);

/* The current multiplier of a hosted skill; 1 for an unknown skill or a
 * NULL d. */
double demand_multiplier(const struct demand *d, const char *skill);

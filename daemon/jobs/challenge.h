/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The hardware challenge: every interval, this node times a GEMM of random
 * matrices on one provider offering the gemm skill (the one challenged
 * longest ago), through the requester pinned to that provider — so the
 * result is verified (Freivalds) and paid like any job — and compares the
 * FLOP/s achieved with what the provider advertises.
 *
 * Providers never measured are challenged first, one a second as they
 * appear; then the one challenged longest ago, every interval.
 *
 * The time is the execution time the provider reports in its signed
 * result, checked against the round trip we measured: queue + execution
 * cannot exceed it.  Timing the round trip alone would judge the network,
 * not the hardware — a GPU computes a 1024² GEMM in well under a
 * millisecond and receives its 8 MiB of inputs in several — and would
 * brand every fast provider behind a slow link a liar.  So the ratio
 * (measured ÷ advertised) feeds the provider's throughput EWMA in the
 * reputation (the router multiplies advertised speed by it, and scales
 * reputation down under half), and a provider under CHALLENGE_LIAR_RATIO
 * of its claim, or whose reported times do not fit the round trip, also
 * gets CHALLENGE_LIAR_PENALTY failures, as many as that many failed jobs.
 *
 * What this catches: a provider whose hardware is slower than its advert
 * (misconfigured, or lying in its record but not in its timings).  What
 * it does not: a provider that also fakes its execution times within the
 * round trip; against that one the latency EWMA of its real jobs is what
 * the router weighs.  A challenge that cannot be gamed that way needs
 * inputs generated at the provider from a seed and a committed result,
 * which the gemm skill does not offer yet. */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "challenge-verdict.h"

struct challenge;
struct network;
struct requester;

/* interval_usec 0: never (challenge_new() still succeeds, does nothing). */
int challenge_new(sd_event *event, struct requester *requester, struct network *network, uint64_t interval_usec,
                  uint64_t max_message_size, struct challenge **ret);
struct challenge *challenge_free(struct challenge *c);

/* Challenges the provider `id` (32 bytes) now, outside the schedule. */
int challenge_now(struct challenge *c, const uint8_t id[32]);

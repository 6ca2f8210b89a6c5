/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The hardware challenge: every interval, this node times a GEMM of random
 * matrices on one provider offering the gemm skill (the one challenged
 * longest ago), through the requester pinned to that provider — so the
 * result is verified (Freivalds) and paid like any job — and compares the
 * FLOP/s achieved, request to verified result, with what the provider
 * advertises.  The ratio feeds the provider's throughput EWMA in the
 * reputation (the router multiplies advertised speed by it); a provider
 * delivering under CHALLENGE_LIAR_RATIO of its claim also gets
 * CHALLENGE_LIAR_PENALTY failures, as many as that many failed jobs.
 *
 * The matrices are sized to take about CHALLENGE_TARGET_USEC at the
 * advertised speed, so that transfer and scheduling overheads stay a
 * minor part of the time measured; since the measurement includes them,
 * the ratio is a lower bound, and an honest provider stays well above the
 * liar threshold. */

#include <stdint.h>
#include <systemd/sd-event.h>

#define CHALLENGE_SKILL "gemm"
#define CHALLENGE_TARGET_USEC 250000.0
#define CHALLENGE_LIAR_RATIO 0.5
#define CHALLENGE_LIAR_PENALTY 5u

struct challenge;
struct network;
struct requester;

/* interval_usec 0: never (challenge_new() still succeeds, does nothing). */
int challenge_new(sd_event *event, struct requester *requester, struct network *network, uint64_t interval_usec,
                  uint64_t max_message_size, struct challenge **ret);
struct challenge *challenge_free(struct challenge *c);

/* Challenges the provider `id` (32 bytes) now, outside the schedule. */
int challenge_now(struct challenge *c, const uint8_t id[32]);

/* The matrix side for a provider advertising throughput FLOP/s, within
 * [CHALLENGE_N_MIN, CHALLENGE_N_MAX] and so that the three matrices fit in
 * max_message_size / 2.  Pure, for tests. */
#define CHALLENGE_N_MIN 64u
#define CHALLENGE_N_MAX 2048u
unsigned challenge_size(double throughput, uint64_t max_message_size);

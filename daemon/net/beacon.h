/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The LAN beacon: every interval, our signed node record goes out as a UDP
 * broadcast (a PushPull reply, which nobody answers), and records heard
 * from others on the same port are handed to the caller, who joins them.
 * What is heard is only a hint: the record is checked (signature, shape)
 * here, and membership checks it again when the node is contacted. */

#include <stdint.h>
#include <systemd/sd-event.h>

#include "swarm.pb-c.h"

#define BEACON_MAX 4096         /* bytes of one announcement */

struct beacon;

/* What to announce now (borrowed); NULL: nothing this time. */
typedef const Swarm__SignedRecord *(*beacon_record_fn)(void *userdata);
/* A valid record with at least one endpoint, heard on the LAN (ours too:
 * the caller skips itself). */
typedef void (*beacon_heard_fn)(const Swarm__NodeRecord *record, void *userdata);

/* Listens on UDP port (shared: SO_REUSEPORT) and announces to address (an
 * IPv4 broadcast or unicast address) every interval_usec, the first time
 * at once.  Logs what failed. */
int beacon_new(sd_event *event, const char *address, uint16_t port, uint64_t interval_usec,
               beacon_record_fn record, beacon_heard_fn heard, void *userdata, struct beacon **ret);
struct beacon *beacon_free(struct beacon *b);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Our own node record, the one membership signs and gossips: who we are,
 * where to reach us, and what we offer at what price and load. */

#include <stdbool.h>
#include <stdint.h>

#include "swarm.pb-c.h"
#include "wire.h"

struct skills;

/* The demand factor of a skill (demand.h), which prices scale by. */
typedef double (*node_record_demand_fn)(const char *skill, void *userdata);

/* A record of ours with one endpoint and a name, lending, no offers yet.
 * Its version and incarnation start from the wall clock, so that a
 * restarted node outranks what the swarm remembers of its previous life
 * without a counter on disk.  public_key is borrowed.  NULL without
 * memory. */
Swarm__NodeRecord *node_record_new(const uint8_t public_key[WIRE_NODE_ID_SIZE], const char *endpoint,
                                   const char *name);
void node_record_free(Swarm__NodeRecord *r);

/* Refreshes r's offers (one per skill that is up, priced by demand,
 * throughput scaled by throughput_factor when above 1), capacity, load
 * and lending from skills.  1 when something changed (r is then to be
 * re-signed and gossiped), 0 when nothing did, -ENOMEM. */
int node_record_update(Swarm__NodeRecord *r, struct skills *skills, bool lending, node_record_demand_fn demand,
                       void *userdata, uint64_t throughput_factor);

/* Sets how r's node is reached (issue 21): its reachability, whether it
 * offers relaying, and the relays a PRIVATE node is registered with
 * (copied).  1 when something changed (re-sign and gossip), 0 when not,
 * -ENOMEM (r unchanged). */
int node_record_set_reach(Swarm__NodeRecord *r, Swarm__Reachability reachability, bool relay_offered,
                          const uint8_t *const *relay_ids, const char *const *relay_endpoints, size_t n_relays);

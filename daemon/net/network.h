/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The node on the network: glues the pure membership state machine to the
 * ZeroMQ transport and the sd-event clock, builds and re-signs the node's
 * own record (endpoints, skills with their adverts, capacity, load,
 * lending), contacts the configured seeds and runs the LAN beacon. */

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "identity.h"
#include "membership.h"

struct network;
struct skills;

int network_new(sd_event *event, const struct config *config, const struct identity *identity,
                struct network **ret);
struct network *network_free(struct network *n);

/* Re-reads what the node offers (skills and their adverts, capacity, load,
 * lending) and, when it changed, publishes a new version of the record. */
int network_update_record(struct network *n, struct skills *skills, bool lending);

/* The demand multiplier of a hosted skill (accounts.h): offers advertise
 * the plugin's list price times it, and carry it. */
typedef double (*network_demand_fn)(const char *skill, void *userdata);
void network_set_demand_callback(struct network *n, network_demand_fn fn, void *userdata);

/* Called when another member appeared, changed state or record, or was
 * forgotten. */
typedef void (*network_members_fn)(struct network *n, void *userdata);
void network_set_members_callback(struct network *n, network_members_fn fn, void *userdata);

/* Every message between nodes starts with a channel byte: membership
 * (SWIM and gossip, daemon/core/membership.c), jobs (requests and results)
 * or credits (transfers, daemon/core/dissemination.c). */
enum {
        NETWORK_CHANNEL_MEMBERSHIP = 'M',
        NETWORK_CHANNEL_JOBS = 'J',
        NETWORK_CHANNEL_CREDITS = 'C',
};

/* Messages on the jobs channel from the authenticated peer from (the
 * channel byte removed). */
typedef void (*network_job_fn)(struct network *n, const uint8_t from[WIRE_NODE_ID_SIZE], const uint8_t *data,
                               size_t size, void *userdata);
void network_set_job_handler(struct network *n, network_job_fn fn, void *userdata);

/* Sends on the jobs channel to a member (its endpoint from its record, or
 * an existing connection).  Never blocks; see transport_send(). */
int network_send_job(struct network *n, const uint8_t to[WIRE_NODE_ID_SIZE], const uint8_t *data, size_t size);

/* Messages on the credits channel (transfers, market/credits.c), as on the
 * jobs channel. */
void network_set_credits_handler(struct network *n, network_job_fn fn, void *userdata);
int network_send_credits(struct network *n, const uint8_t to[WIRE_NODE_ID_SIZE], const uint8_t *data, size_t size);

/* Refuses the peer's connections from now on and drops the one it has
 * (a payer proven to double-spend, say), with why in the log. */
void network_ban(struct network *n, const uint8_t id[WIRE_NODE_ID_SIZE], const char *why);

const uint8_t *network_self_id(const struct network *n);       /* Ed25519 public key */
const uint8_t *network_secret_key(const struct network *n);    /* for signing results */

const char *network_endpoint(const struct network *n);
struct membership *network_membership(const struct network *n);

/* "12 peers (11 alive, 1 suspect)" for STATUS= and logs. */
const char *network_describe(struct network *n);

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

const char *network_endpoint(const struct network *n);
struct membership *network_membership(const struct network *n);

/* "12 peers (11 alive, 1 suspect)" for STATUS= and logs. */
const char *network_describe(struct network *n);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The relay's side of relaying (issue 21): which NATed nodes it serves,
 * and whether one more message may pass to one of them.
 *
 * A client registers (and registers again before its lease runs out: the
 * registration is also its keep-alive, and refreshes the NAT mapping of
 * its connection).  A message for a client passes when the client is
 * registered, the sender and the client are both within their bandwidth
 * (a token bucket of bytes per second each, which may go into debt by one
 * message, so a message larger than the burst still passes once the
 * bucket is full), and the client talks with no more than max_circuits
 * distinct peers through this relay (a circuit is forgotten after a lease
 * without traffic).
 *
 * Pure: the caller passes the time (monotonic µs); nothing here sends,
 * logs or reads a clock.  Bounded: max_clients clients, max_circuits
 * circuits each, one bucket per sender heard recently (RELAY_SENDERS_MAX,
 * least recently used forgotten). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define RELAY_SENDERS_MAX 1024

struct relay_config {
        unsigned max_clients;           /* NATed nodes served at once, ≥ 1 */
        unsigned max_circuits;          /* peers one client reaches through us at once, ≥ 1 */
        uint64_t bytes_per_second;      /* per peer (sender, and client), ≥ 1 */
        uint64_t burst_bytes;           /* bucket size, ≥ 1 */
        uint64_t lease_usec;            /* a client not heard for this long is dropped */
};

/* max_clients 64, max_circuits 64, 4 MiB/s with a 16 MiB burst, 15 s lease. */
void relay_config_default(struct relay_config *c);

struct relay;

int relay_new(const struct relay_config *config, struct relay **ret);
struct relay *relay_free(struct relay *r);

/* Registers client (or renews its lease).  1 new, 0 renewed, -EUSERS when
 * max_clients others hold a lease. */
int relay_register(struct relay *r, const uint8_t client[WIRE_NODE_ID_SIZE], uint64_t now);

/* Drops a client (it went away, or is banned). */
void relay_unregister(struct relay *r, const uint8_t client[WIRE_NODE_ID_SIZE]);

bool relay_is_client(const struct relay *r, const uint8_t id[WIRE_NODE_ID_SIZE], uint64_t now);

/* May size bytes from sender pass to client now?  0 yes (and charged),
 * -ENOENT: client is not registered here (or its lease ran out), -EDQUOT:
 * the sender or the client is over its bandwidth, -EUSERS: the client
 * already has max_circuits other peers, -EINVAL: sender is client. */
int relay_admit(struct relay *r, const uint8_t sender[WIRE_NODE_ID_SIZE], const uint8_t client[WIRE_NODE_ID_SIZE],
                size_t size, uint64_t now);

/* Forgets clients and circuits whose lease ran out. */
void relay_expire(struct relay *r, uint64_t now);

struct relay_stats {
        uint64_t clients;               /* now */
        uint64_t forwarded, forwarded_bytes;
        uint64_t refused_not_client, refused_bandwidth, refused_circuits, refused_full;
};
void relay_get_stats(const struct relay *r, uint64_t now, struct relay_stats *ret);

/* ---- The relay channel's messages (RelayMessage, proto/swarm.proto) ---- */

/* Decodes one RelayMessage of at most max_size bytes, checked in this one
 * place: a known body; peers 32 bytes; nonces 16; a RelayForward's box at
 * least RELAY_BOX_OVERHEAD bytes; the error a string of at most
 * WIRE_STRING_MAX bytes.  0 and *ret to free with relay_message_free();
 * -EMSGSIZE over max_size; -EPROTONOSUPPORT for another WIRE_VERSION;
 * -EBADMSG with *reason (static text) for anything else; -ENOMEM. */
int relay_message_decode(const uint8_t *data, size_t size, size_t max_size, Swarm__RelayMessage **ret,
                         const char **reason);
void relay_message_free(Swarm__RelayMessage *m);

/* Encodes m (its version set to WIRE_VERSION) into a malloc'd buffer of at
 * most max_size bytes: 0, -EMSGSIZE, -ENOMEM. */
int relay_message_encode(Swarm__RelayMessage *m, size_t max_size, uint8_t **ret, size_t *ret_size);
static inline void relay_message_freep(Swarm__RelayMessage **m) {
        relay_message_free(*m);
}

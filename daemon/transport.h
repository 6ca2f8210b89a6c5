/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The node's ZeroMQ transport, driven from the sd-event loop.
 *
 * One ROUTER socket bound at the node's endpoint receives from every peer;
 * one DEALER per peer, connected on first send, carries what we send to
 * it.  CurveZMQ is on by default: our Curve25519 key pair is derived from
 * the node's Ed25519 identity (crypto_sign_ed25519_{pk,sk}_to_curve25519),
 * so connecting to a peer needs only its node id, and a ZAP handler binds
 * every incoming connection to the Ed25519 id of the key that connected —
 * the transport peer is the signer of its records.  Banned peers are
 * refused at the handshake.  Every received message is delivered with
 * that authenticated id.
 *
 * Limits: ZMQ_MAXMSGSIZE on the ROUTER, a per-peer token bucket for
 * incoming messages (excess is dropped and counted), a bounded send queue
 * per peer (ZMQ_SNDHWM; a full queue drops, never blocks the loop).
 *
 * Insecure mode (no CURVE, the peer id taken from the first frame the
 * peer sends) exists only for debugging behind network.insecure and logs a
 * warning at start and on every new peer. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "wire.h"

struct transport;

struct transport_config {
        const char *bind;               /* "tcp://0.0.0.0:7946"; port 0 picks one */
        bool insecure;                  /* no CurveZMQ: debugging only */
        uint64_t max_message_size;      /* ZMQ_MAXMSGSIZE */
        double rate_per_second;         /* per peer, incoming messages */
        unsigned rate_burst;
        unsigned send_queue;            /* ZMQ_SNDHWM per peer */
};

typedef void (*transport_receive_fn)(struct transport *t, const uint8_t from[WIRE_NODE_ID_SIZE],
                                     const uint8_t *data, size_t size, void *userdata);

/* ed25519_sk is libsodium's 64-byte secret key (seed ‖ public key). */
int transport_new(sd_event *event, const struct transport_config *config, const uint8_t ed25519_sk[64],
                  transport_receive_fn receive, void *userdata, struct transport **ret);
struct transport *transport_free(struct transport *t);

/* The endpoint peers can reach us at, with the port actually bound
 * ("tcp://127.0.0.1:40123"). */
const char *transport_endpoint(const struct transport *t);

/* Queues data for the peer with this id; endpoint is where to connect when
 * there is no connection yet (NULL: only an existing one).  Never blocks:
 * -EAGAIN when the peer's queue is full, -ENOTCONN without endpoint or
 * connection, -EMSGSIZE over max_message_size. */
int transport_send(struct transport *t, const uint8_t to[WIRE_NODE_ID_SIZE], const char *endpoint,
                   const uint8_t *data, size_t size);

/* Drops the connection to a peer (e.g. it is dead or banned). */
void transport_disconnect(struct transport *t, const uint8_t id[WIRE_NODE_ID_SIZE]);

/* Refuses (true) or again accepts connections from id. */
void transport_ban(struct transport *t, const uint8_t id[WIRE_NODE_ID_SIZE], bool banned);

struct transport_stats {
        uint64_t received, sent;
        uint64_t dropped_rate_limited, dropped_queue_full, refused_handshakes;
};
const struct transport_stats *transport_get_stats(const struct transport *t);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The node's ZeroMQ transport, driven from the sd-event loop.
 *
 * One ROUTER socket bound at the node's endpoint receives from every peer;
 * one DEALER per peer, connected on first send, carries what we send to
 * it.  A peer that cannot be dialled (behind a NAT, issue 21) is answered
 * over its own connection instead (transport_replyv()), which it reads on
 * its DEALERs (transport_set_read_replies()).  CurveZMQ is on by default: our Curve25519 key pair is derived from
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
 * Insecure mode (no CURVE, the peer id taken unchecked from the id in
 * front of each message) exists only for debugging behind
 * network.insecure and logs a warning at start and on every new peer.
 *
 * On the wire every message is one ZeroMQ frame: the sender's 32-byte
 * Ed25519 node id followed by the payload.  ZAP (RFC 27) only shows the
 * handler the client's Curve25519 key, which names an Ed25519 key only up
 * to the sign of x, so the handler vouches for the Curve key (as User-Id)
 * and the ROUTER accepts a message only when its claimed id converts to
 * that key.  A key's holder can sign for both ids sharing its Curve key, so
 * the claim is as good as the key.  Routing ids are left to the ROUTER:
 * were they the node id, anyone could squat on or take over another
 * node's id before the check.
 *
 * Bans refuse new connections at the handshake (ZAP status 400) and drop
 * what still arrives over connections made before the ban; ZeroMQ cannot
 * close one peer's connection to a ROUTER.
 *
 * Everything runs on the sd-event loop's thread and never blocks.  The
 * receive callback may send, disconnect and ban, but must not free the
 * transport. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "wire.h"

struct transport;

struct transport_config {
        const char *bind;               /* "tcp://0.0.0.0:7946"; port 0 picks one */
        bool insecure;                  /* no CurveZMQ: debugging only */
        uint64_t max_message_size;      /* payload bytes, 1 to 2^31-1; larger ones are dropped */
        double rate_per_second;         /* per peer, incoming messages; 0: no limit */
        unsigned rate_burst;            /* ≥ 1 unless rate_per_second is 0 */
        unsigned send_queue;            /* ZMQ_SNDHWM per peer, ≥ 1 */
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
 * connection, -EMSGSIZE over max_message_size, -EINVAL for an id that is
 * not an Ed25519 key or an endpoint that is not "tcp://…" (endpoints come
 * from peers: ipc:// or inproc:// would reach into this host).  Messages to
 * a peer not yet reachable wait in its queue (no ZMQ_IMMEDIATE), so the
 * first message to a new peer is not lost to the connection set-up. */
int transport_send(struct transport *t, const uint8_t to[WIRE_NODE_ID_SIZE], const char *endpoint,
                   const uint8_t *data, size_t size);

/* The same, the message gathered from n_iov pieces (one copy, into the
 * ZeroMQ message). */
struct iovec;
int transport_sendv(struct transport *t, const uint8_t to[WIRE_NODE_ID_SIZE], const char *endpoint,
                    const struct iovec *iov, size_t n_iov);

/* Sends over the peer's own connection to us (the one its last message
 * came in on), for a peer that cannot be dialled: a relay answers its
 * NATed clients so (issue 21).  -ENOTCONN when the peer never connected,
 * -EHOSTUNREACH when that connection is gone (forgotten then), -EAGAIN
 * when its queue is full, -EMSGSIZE over max_message_size.  The peer reads
 * it on the DEALER it connected with: every DEALER is read, and what
 * arrives on one is delivered like what the ROUTER receives, from the peer
 * it was dialled as — while transport_set_read_replies() is on. */
int transport_replyv(struct transport *t, const uint8_t to[WIRE_NODE_ID_SIZE], const struct iovec *iov,
                     size_t n_iov);
bool transport_can_reply(const struct transport *t, const uint8_t to[WIRE_NODE_ID_SIZE]);

/* Whether our DEALERs are read: on for a node that peers may answer over
 * its own connections (it cannot be dialled, or may not be), off (the
 * default) for one they always dial, which then costs nothing.  0, or the
 * first error watching a DEALER. */
int transport_set_read_replies(struct transport *t, bool on);

/* During the receive callback, for a message a peer sent over a
 * connection it dialled (the ROUTER): the IP address that connection came
 * from, as text ("192.0.2.7", "2001:db8::1"); NULL otherwise. */
const char *transport_receiving_address(const struct transport *t);

/* During the receive callback: true when the message came on one of our
 * DEALERs (a peer answering over our connection), false when a peer
 * dialled us (the ROUTER). */
bool transport_receiving_reverse(const struct transport *t);

/* Drops the connection to a peer (e.g. it is dead or banned) and what is
 * still queued for it. */
void transport_disconnect(struct transport *t, const uint8_t id[WIRE_NODE_ID_SIZE]);

/* Refuses (true) or again accepts connections from id, and drops (or
 * again delivers) its messages on connections already open.  A ban covers
 * the Curve25519 key, so also the other Ed25519 id that shares it. */
void transport_ban(struct transport *t, const uint8_t id[WIRE_NODE_ID_SIZE], bool banned);

struct transport_stats {
        uint64_t received, sent;
        uint64_t dropped_rate_limited, dropped_queue_full, refused_handshakes;
        uint64_t dropped_invalid;       /* malformed, oversized, or claiming an id not its key's */
        uint64_t dropped_banned;        /* from a banned peer over a connection opened before the ban */
};
const struct transport_stats *transport_get_stats(const struct transport *t);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* End-to-end boxes for messages that travel through a relay (issue 21).
 *
 * A relay must see only ciphertext and sizes, and must not be able to
 * forge, alter, reflect or replay what it carries.  Each message is sealed
 * with XSalsa20-Poly1305 (crypto_secretbox) under a key for one direction
 * between two exact ids: BLAKE2b, keyed with the X25519 secret shared by the
 * Curve25519 keys of the two nodes' Ed25519 identities (the keys their
 * CurveZMQ connections use), over the sender's id and the recipient's.
 * Only the two ends can make or open a box; a box opens only as from its
 * sender to its recipient, so it cannot be handed back to its sender as the
 * peer's, nor passed on under the sender's Curve "twin" id.
 *
 * Nonce (24 bytes, sent in front of the ciphertext): the sender's session
 * (16 bytes: its boot time, µs of the wall clock, big-endian, then 8 random
 * bytes) and a counter (8 bytes, big-endian) per recipient, whose top 32
 * bits are a generation the sender takes anew for each run of counters,
 * so a nonce is never used twice, even for a recipient it forgot.  The receiver keeps, per sender, the newest
 * session and a 64-box window below its highest counter: a replayed box, or
 * one of an older session (an earlier run of the sender), is refused.  A
 * sender whose wall clock went backwards across a restart is refused until
 * it passes its previous boot time — the price of needing no state on disk.
 * A sender gets its entry (and window) only once one of its boxes opened,
 * so boxes forged under made-up ids cannot push real senders out.
 *
 * Pure: no clock or randomness of its own (the caller passes its boot time
 * and random bytes), no I/O, no logging.  Peers are kept in a bounded
 * table (least recently used forgotten first). */

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define RELAY_BOX_NONCE_SIZE 24
#define RELAY_BOX_MAC_SIZE 16
#define RELAY_BOX_OVERHEAD (RELAY_BOX_NONCE_SIZE + RELAY_BOX_MAC_SIZE)
#define RELAY_BOX_PEERS_MAX 4096

struct relay_box;

/* ed25519_sk: libsodium's 64-byte secret key; boot_usec: the wall clock
 * at this start; random8: 8 random bytes.  -EINVAL for a key that does not
 * convert, -ENOMEM. */
int relay_box_new(const uint8_t ed25519_sk[64], uint64_t boot_usec, const uint8_t random8[8],
                  struct relay_box **ret);
struct relay_box *relay_box_free(struct relay_box *b);

/* Seals the concatenation of n pieces for the node to.  *ret is malloc'd,
 * size + RELAY_BOX_OVERHEAD bytes.  -EINVAL for an id that is not an
 * Ed25519 key, -ENOMEM. */
struct iovec;
int relay_box_seal(struct relay_box *b, const uint8_t to[WIRE_NODE_ID_SIZE], const struct iovec *iov, size_t n,
                   uint8_t **ret, size_t *ret_size);

/* Opens a box from the node from in place: on success *ret points into
 * box and *ret_size is its plaintext's size.  -EBADMSG: too short, or not
 * made by from for us (forged, altered, or from named wrongly); -ESTALE: a
 * replay, or an older session of from; -EINVAL for an id that is not an
 * Ed25519 key; -ENOMEM.  A box that fails leaves the window untouched. */
int relay_box_open(struct relay_box *b, const uint8_t from[WIRE_NODE_ID_SIZE], uint8_t *box, size_t size,
                   uint8_t **ret, size_t *ret_size);

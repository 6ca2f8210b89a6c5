/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Can others dial this node, and if not, which relays does it keep
 * (issue 21)?  The NATed node's side of relaying.
 *
 * Dial-back (after libp2p's AutoNAT): in mode auto, the node asks up to
 * dial_peers alive peers to dial its advertised endpoint and send back a
 * nonce.  A DialBack can only arrive over a connection a peer opened to
 * that endpoint, so one that arrives with the round's nonce proves it
 * reachable (PUBLIC); none within dial_timeout in two rounds in a row
 * means no peer could (PRIVATE).  Peers whose records say they can be
 * dialled are asked first, those still checking only to make up the
 * number, private ones never (they could not answer); a round that asked
 * no dialable peer proves nothing and does not count.  A round is repeated every recheck period, and at once when
 * the node had no peer to ask.
 *
 * Relays, while PRIVATE: the node keeps want_relays registrations with
 * peers that offer relaying and are PUBLIC, registering again every
 * keepalive (the registration is also what keeps the NAT's mapping of the
 * connection).  A relay that has not confirmed within relay_timeout, that
 * refused, or that left the set the caller passes (membership saw it die)
 * is given up and not asked again for relay_retry; another takes its
 * place.  Whenever the set of confirmed relays changes, the node must
 * publish its record again: reach_tick() and the handlers return 1 then.
 *
 * Pure: time, randomness and sending come from the caller (struct
 * reach_io); nothing here logs. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define REACH_NONCE_SIZE 16
#define REACH_RELAYS_MAX WIRE_RELAYS_MAX

enum reach_mode {
        REACH_MODE_AUTO,                /* find out by dial-back */
        REACH_MODE_PUBLIC,              /* configured: no dial-back, no relays */
        REACH_MODE_PRIVATE,             /* configured: relays, no dial-back */
};

/* The values of NodeRecord.reachability. */
enum reach_state {
        REACH_STATE_UNKNOWN = SWARM__REACHABILITY__REACH_UNKNOWN,
        REACH_STATE_PUBLIC = SWARM__REACHABILITY__REACH_PUBLIC,
        REACH_STATE_PRIVATE = SWARM__REACHABILITY__REACH_PRIVATE,
        REACH_STATE_CHECKING = SWARM__REACHABILITY__REACH_CHECKING,     /* auto, before the first answer */
};

const char *reach_state_to_string(enum reach_state s);

struct reach_config {
        enum reach_mode mode;
        unsigned dial_peers;            /* asked per round, ≥ 1 */
        uint64_t dial_timeout_usec;
        uint64_t recheck_usec;
        unsigned want_relays;           /* 1..REACH_RELAYS_MAX */
        uint64_t keepalive_usec;
        uint64_t relay_timeout_usec;
        uint64_t relay_retry_usec;
};

/* auto; 3 peers, 3 s, recheck 10 min; 2 relays, keep-alive 2 s, given up
 * after 5 s without a confirmation, not retried for 30 s. */
void reach_config_default(struct reach_config *c);

/* A peer as the caller's membership sees it: alive and suspect ones.  A
 * suspect relay is kept (suspicion is often a lost probe, and dropping
 * relays on it cascades: our own reachability hangs on them), but none is
 * chosen, nor asked to dial back. */
struct reach_peer {
        const uint8_t *id;              /* WIRE_NODE_ID_SIZE bytes */
        const char *endpoint;           /* where to reach it directly, or NULL */
        enum reach_state state;         /* what its record says */
        bool relay_offered;
        bool suspect;
};

struct reach_io {
        void *userdata;
        uint64_t (*random_u64)(void *userdata);
        void (*send_dial_request)(void *userdata, const uint8_t to[WIRE_NODE_ID_SIZE],
                                  const uint8_t nonce[REACH_NONCE_SIZE]);
        void (*send_register)(void *userdata, const uint8_t relay[WIRE_NODE_ID_SIZE], const char *endpoint,
                              uint64_t seq);
};

struct reach;

int reach_new(const struct reach_config *config, const struct reach_io *io, const uint8_t self[WIRE_NODE_ID_SIZE],
              struct reach **ret);
struct reach *reach_free(struct reach *r);

/* Starts rounds, concludes them, keeps relays registered, given the alive
 * peers now.  1 when the node's record must change (its state or its
 * confirmed relays did), else 0. */
int reach_tick(struct reach *r, uint64_t now, const struct reach_peer *peers, size_t n_peers);

/* A DialBack from a peer: 1 when it made the node PUBLIC, 0 when it
 * changed nothing, -ESTALE for a nonce not of the current round. */
int reach_on_dial_back(struct reach *r, const uint8_t from[WIRE_NODE_ID_SIZE], const uint8_t *nonce, size_t size,
                       uint64_t now);

/* A RelayRegistered from relay: status 0 confirms (lease_usec: when it
 * would drop us), < 0 refuses.  1 when the confirmed set changed, 0 when
 * not, -ENOENT when we did not ask that relay (or not with this seq). */
int reach_on_registered(struct reach *r, const uint8_t relay[WIRE_NODE_ID_SIZE], uint64_t seq, int status,
                        uint64_t lease_usec, uint64_t now);

/* A relay told us it refused to pass something on to us (-ENOENT: it no
 * longer knows us): register again at once.  0, or -ENOENT for a relay
 * not ours. */
int reach_on_relay_forgot(struct reach *r, const uint8_t relay[WIRE_NODE_ID_SIZE], uint64_t now);

enum reach_state reach_get_state(const struct reach *r);

/* The confirmed relays, at most max: ids (WIRE_NODE_ID_SIZE bytes each)
 * and endpoints, valid until the next call into r.  Their number. */
size_t reach_get_relays(const struct reach *r, const uint8_t **ids, const char **endpoints, size_t max);

/* Is id one of the relays we registered with (confirmed or asked)? */
bool reach_is_relay(const struct reach *r, const uint8_t id[WIRE_NODE_ID_SIZE]);

/* When reach_tick() must run next. */
uint64_t reach_next_deadline(const struct reach *r);

struct reach_stats {
        uint64_t rounds, dial_backs, relay_changes, relays_given_up;
};
const struct reach_stats *reach_get_stats(const struct reach *r);

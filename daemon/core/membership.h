/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Swarm membership: SWIM failure detection (ping, k indirect pings,
 * suspicion refuted by incarnation), piggybacked dissemination and
 * push-pull anti-entropy of signed node records.
 *
 * A pure state machine: it never reads a clock, draws randomness, touches
 * a socket or checks a signature by itself.  All of that comes through
 * struct membership_io, so swarmd drives it with real time and ZeroMQ,
 * the unit tests drive it message by message, and the simulator drives
 * thousands of instances in one process in virtual time.
 *
 * Driving it: call membership_receive() for every datagram that arrives,
 * and membership_tick() whenever now >= membership_next_deadline().  It
 * sends through io->send().  Nothing else.
 *
 * The API below is the contract between the core, swarmd's network glue
 * and the simulator; the implementation may add to it. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

struct membership;
struct member_info;

enum member_state {
        MEMBER_ALIVE = SWARM__MEMBER_STATE__ALIVE,
        MEMBER_SUSPECT = SWARM__MEMBER_STATE__SUSPECT,
        MEMBER_DEAD = SWARM__MEMBER_STATE__DEAD,
        MEMBER_LEFT = SWARM__MEMBER_STATE__LEFT,
};

const char *member_state_to_string(enum member_state s);

struct membership_config {
        uint64_t probe_interval_usec;   /* one probe per interval (SWIM period), e.g. 200 ms */
        uint64_t probe_timeout_usec;    /* direct ack wait before indirect probes, e.g. 80 ms */
        unsigned indirect_probes;       /* k helpers for PingReq, e.g. 3 */
        unsigned suspicion_mult;        /* suspicion timeout = mult × max(1, log10(N)) × probe interval */
        unsigned retransmit_mult;       /* a rumor is piggybacked mult × ceil(log10(N+1)) times */
        unsigned max_piggyback;         /* rumors + records per message (bounded bytes) */
        uint64_t push_pull_interval_usec;       /* anti-entropy with one random peer */
        unsigned push_pull_digests;     /* digests per push-pull (bounded bytes) */
        uint64_t dead_reap_usec;        /* forget dead members after this */
        /* Appended to the contract: */
        size_t max_message_bytes;       /* cap on an encoded Ping/Ack/PingReq, e.g. 1400 */
        size_t push_pull_max_bytes;     /* cap on the records of one push-pull message */
        uint64_t reconnect_interval_usec;       /* ping one DEAD member (heals partitions); 0: never */
};

/* Sensible defaults: probe 200 ms, ack timeout 80 ms, 3 indirect probes,
 * suspicion ×4, retransmit ×4, 16 items per message within 1400 bytes,
 * push-pull every 10 s with 64 digests and up to 32 KiB of records, dead
 * members forgotten after 120 s and pinged every 5 s meanwhile. */
void membership_config_default(struct membership_config *c);

struct membership_io {
        void *userdata;
        uint64_t (*now_usec)(void *userdata);           /* monotonic */
        uint64_t (*random_u64)(void *userdata);
        /* Sends an encoded Envelope to the node with this id, reachable at
         * endpoint (from its record; may be NULL when only the id is known
         * and the transport already has a connection). */
        void (*send)(void *userdata, const uint8_t to[WIRE_NODE_ID_SIZE], const char *endpoint,
                     const uint8_t *data, size_t size);
        /* Record signatures; NULL means libsodium Ed25519. */
        wire_verify_fn verify;
        /* Our own record is re-signed when the incarnation rises.  out's
         * body and signature are malloc'd (as wire_record_sign() makes
         * them); the core frees them with wire_signed_record_clear(). */
        int (*sign)(void *userdata, const Swarm__NodeRecord *r, Swarm__SignedRecord *out);
        /* Optional: a member appeared, changed state or record, or was
         * forgotten (state DEAD or LEFT and forgotten true).  m is valid
         * during the call only; the callback must not call back into the
         * membership. */
        void (*member_changed)(void *userdata, const struct member_info *m, bool forgotten);
        /* Optional: why something was dropped or failed (a message or a
         * record from peer, NULL when the trouble is ours), for the
         * caller's debug log: the core itself never logs. */
        void (*debug)(void *userdata, const uint8_t *peer, int error, const char *what);
};

/* A read-only view of a member. */
struct member_info {
        const uint8_t *id;              /* WIRE_NODE_ID_SIZE bytes */
        enum member_state state;
        uint64_t incarnation;
        uint64_t last_heard_usec;       /* io->now_usec() when last heard from or about */
        const Swarm__NodeRecord *record;        /* verified, decoded; never NULL */
        const Swarm__SignedRecord *signed_record;
        unsigned faults;                /* bad records/messages blamed on this peer */
        bool self;
};

/* self is our own record (its node_id is our id); it is copied, signed
 * with io->sign and checked with io->verify.  Its version must be above
 * any version of ours the swarm may still hold from an earlier run
 * (persist it, or derive it from the wall clock); if it is not, the core
 * notices a newer record of its own and jumps past it, at the price of a
 * fault counted against us by the peer that showed it. */
int membership_new(const struct membership_config *config, const struct membership_io *io,
                   const Swarm__NodeRecord *self, struct membership **ret);
struct membership *membership_free(struct membership *m);

/* Replaces our record (new skills, prices, load, lending): the version is
 * raised and the new record re-signed and disseminated. */
int membership_update_self(struct membership *m, const Swarm__NodeRecord *self);

/* Learns a signed record without a message (the daemon's cached peers
 * from its last run): verified with io->verify and taken like one that
 * arrived by gossip, but not disseminated.  0 when learned or already
 * known at that version, -EKEYREJECTED/-EBADMSG for a bad record,
 * -ESTALE for an older version. */
int membership_add_record(struct membership *m, const Swarm__SignedRecord *s);

/* Learns every ALIVE member that from knows and m does not, sharing the
 * verified records with from (reference counted, not thread-safe: both
 * instances must be used from one thread).  For the simulator's bootstrap
 * of thousands of instances in one process; m and from must use the same
 * record verifier. */
int membership_import(struct membership *m, const struct membership *from);

/* Contacts a seed peer (id and endpoint from the config or the LAN
 * beacon) with a push-pull, to join the swarm. */
int membership_join(struct membership *m, const uint8_t id[WIRE_NODE_ID_SIZE], const char *endpoint);

/* Handles one datagram from the authenticated peer from.  -EBADMSG (and
 * a fault counted against from) for a malformed message; -EPROTONOSUPPORT
 * (no fault) for another WIRE_VERSION.  Bad records inside a well-formed
 * message are dropped one by one (stats.rejected_records) and the message
 * still counts as handled (0).
 *
 * Faults: a record with a bad signature, a malformed body, an incarnation
 * going backwards, or a push-pull sender record that is not the peer's
 * own, is blamed on from.  An older version is dropped and counted, but
 * blamed only when from is the record's owner replaying its own past: a
 * third party relaying a version that was current when it queued it is
 * what epidemic dissemination does while a newer version overtakes it. */
int membership_receive(struct membership *m, const uint8_t from[WIRE_NODE_ID_SIZE],
                       const uint8_t *data, size_t size);

/* Runs what is due (probes, timeouts, suspicion expiry, push-pull). */
void membership_tick(struct membership *m);
uint64_t membership_next_deadline(const struct membership *m);       /* O(1) */

/* Leaves gracefully: disseminates LEFT for a while (the caller keeps
 * ticking for a few probe intervals before freeing). */
void membership_leave(struct membership *m);

size_t membership_count(const struct membership *m);            /* including self */
int membership_get(const struct membership *m, size_t i, struct member_info *ret);
int membership_find(const struct membership *m, const uint8_t id[WIRE_NODE_ID_SIZE], struct member_info *ret);

/* Counters for tests, the simulator and `swarmctl peers`. */
struct membership_stats {
        uint64_t sent_messages, sent_bytes;
        uint64_t received_messages, received_bytes;
        uint64_t rejected_messages;     /* malformed envelopes */
        uint64_t rejected_records;      /* bad signature, older version, malformed */
        uint64_t suspicions;            /* members we started suspecting (our probe failed) */
        uint64_t refutations;           /* times we raised our incarnation */
        /* Appended to the contract: */
        uint64_t accepted_records;      /* new members and newer versions taken */
        uint64_t deaths;                /* members we declared DEAD (our suspicion expired) */
        uint64_t probes, probes_indirect;       /* probes started, of which went indirect */
};
const struct membership_stats *membership_get_stats(const struct membership *m);

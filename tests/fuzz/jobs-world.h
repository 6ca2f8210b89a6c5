/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What the provider and the requester reach beyond themselves, faked for
 * their fuzz targets: the network (every message sent is decoded and
 * shown to the target), membership as the network sees it, the skills
 * and their worker pools (a request waits until the target answers it,
 * as a worker would), lending, demand and the accounts.
 *
 * These are definitions of the daemon's own functions (network.h,
 * membership.h, skills.h, skill-pool.h, lending.h, demand.h, accounts.h),
 * linked in place of daemon/net, daemon/host's pools, daemon/lending and
 * daemon/market; the code under test (jobs-channel.c, job-send.c,
 * provider.c, requester.c and the pure modules they use) is the daemon's
 * own.  The fakes keep the contracts of those headers (a pool never calls
 * done from inside skill_pool_submit(); a queued request cancelled is
 * answered -ECANCELED at once, a running one later; a payment forgotten
 * is never called back) and check that their callers keep theirs.
 *
 * One world at a time: world_begin() per input, world_end() after it. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "job-wire.h"
#include "skill-pool.h"
#include "swarm.pb-c.h"

/* Keys: this node, and peers 0-3.  Peers 0-2 are members that lend
 * (membership), peer 3 is a stranger that only talks to us. */
#define WORLD_PEERS 4
#define WORLD_MEMBERS 3

struct accounts;
struct demand;
struct lending;
struct network;
struct skills;

/* What a peer sends us: data goes through the jobs channel's handler. */
struct world_config {
        uint64_t max_message_size;
        bool lending;                   /* there is a lending switch (else: always lends) */
        bool lending_on;
        bool accounts;
        uint64_t debt_limit;            /* accounts: 0 = none */
        bool demand;
        double demand_multiplier;
        unsigned queue_max;             /* requests waiting in the pools; 0: the fake's own limit */
        bool local_hash;                /* this node's record offers hash (a provider runs here) */
};

/* A message this node sent to peer to, decoded (borrowed for the call);
 * delivered false when the network refused it (world_set_send_fails()). */
typedef void (*world_sent_fn)(unsigned to, const Swarm__JobEnvelope *e, bool delivered, void *userdata);

struct world {
        sd_event *event;
        struct network *network;
        struct skills *skills;
        struct lending *lending;        /* NULL unless config.lending */
        struct accounts *accounts;      /* NULL unless config.accounts */
        struct demand *demand;          /* NULL unless config.demand */
        uint8_t self_pk[32], self_sk[64];
        uint8_t peer_pk[WORLD_PEERS][32], peer_sk[WORLD_PEERS][64];
        world_sent_fn sent;
        void *sent_userdata;
        /* Counts, for the targets' invariants. */
        unsigned verified_ok;           /* VERIFY requests answered 0 */
        unsigned cheques, opinions;     /* handed to the accounts */
};

extern struct world world;

/* Once per process: keys. */
void world_init(void);
/* A fresh world for one input. */
void world_begin(const struct world_config *config);
/* Pools fail what they still hold (-ESHUTDOWN, as skill_pool_free()
 * does), the accounts call back what was not forgotten (-ECANCELED), and
 * everything is freed.  Call it after the roles under test are freed. */
void world_end(void);

/* Hands data to the jobs channel as from peer (0-3). */
void world_receive(unsigned peer, const uint8_t *data, size_t size);

/* Sends from now on to peer fail (-ENOBUFS: its queue is full) or not. */
void world_set_send_fails(unsigned peer, bool fail);
void world_set_lending(bool on);
void world_set_member_state(unsigned member, int state);

/* ---- The pools' requests, oldest first. ---- */

size_t world_requests(void);
enum pool_op world_request_op(size_t i);
/* Index of the oldest request of op, or -1. */
long world_request_find(enum pool_op op);

/* How a request is answered.  For a successful EXECUTE, outputs are made
 * of kind (0: a copy of the inputs, 1: bytes, 2: a string, 3: an integer,
 * 4: an f32 tensor, 5: an empty set, 6: none at all; data is their
 * content) and, with proof, a proof of bytes. */
struct world_answer {
        int status;
        const char *error;
        uint64_t price;
        unsigned kind;
        bool proof;
        const uint8_t *data;
        size_t size;
        uint64_t queue_usec, exec_usec;
};
/* Answers request i (a cancelled one -ECANCELED, whatever a says). */
void world_request_answer(size_t i, const struct world_answer *a);
/* A worker takes request i: from now on a cancel is answered later. */
void world_request_start(size_t i);
/* An EXECUTE request's skill emits a chunk (dropped for another op, or
 * a request without a chunk handler or cancelled, as the pool does). */
void world_request_chunk(size_t i, const char *name, const void *data, size_t size);
/* The workers of cancelled running requests stop: each is answered
 * -ECANCELED. */
void world_requests_settle(void);

/* ---- The accounts ---- */

/* The queued writes (payments, served jobs) become durable (status 0)
 * or fail: their callbacks are called, in order. */
void world_accounts_flush(int status);
/* accounts_served() and accounts_keep() fail from now on (-EIO) or not. */
void world_accounts_set_failing(bool fail);

/* Whether v is the outputs of a VERIFY request answered 0 in this input
 * (by identity: what was verified is what is handed over). */
bool world_outputs_verified(const struct swarm_values *v);

/* ---- Helpers for the targets ---- */

/* The peer (0-3) a key belongs to; -1 for this node, -2 for no one. */
int world_peer_of(const uint8_t id[32]);

/* An answer as a target's input spells it: p[0] picks the request
 * (returned), p[1] the status (an errno from a table; 0xff: the negative
 * of the 32-bit number that follows, as a plugin may return anything, and
 * below -ERRNO_MAX -EPROTO, as worker-proto.c receives it; others: -p[1]),
 * p[2-5] the price (little-endian), p[6] the outputs' kind (bits 0-2),
 * a proof (bit 3), an error text (bit 4: the data, into error); the rest
 * is the data. */
size_t world_parse_answer(const uint8_t *p, size_t n, struct world_answer *a, char *error, size_t error_size);

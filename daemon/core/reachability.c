/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "reachability.h"

#define GIVEN_UP_MAX 64
#define REACH_ROUNDS_TO_FAIL 2

enum slot_state {
        SLOT_FREE,
        SLOT_ASKED,                     /* registration sent, not confirmed yet */
        SLOT_CONFIRMED,
};

struct slot {
        enum slot_state state;
        uint8_t id[WIRE_NODE_ID_SIZE];
        char *endpoint;
        uint64_t first_seq, seq;        /* of the first and the last registration sent */
        uint64_t sent_usec;
        uint64_t asked_usec;            /* first registration sent */
        uint64_t ok_usec;               /* last confirmation */
};

struct given_up {
        uint8_t id[WIRE_NODE_ID_SIZE];
        uint64_t until_usec;
};

struct reach {
        struct reach_config config;
        struct reach_io io;
        uint8_t self[WIRE_NODE_ID_SIZE];
        enum reach_state state;

        bool round_open;
        bool round_telling;             /* a dialable peer was asked: silence means something */
        unsigned failed_rounds;         /* in a row */
        uint8_t nonce[REACH_NONCE_SIZE];
        uint64_t round_deadline;        /* open: when it concludes; closed: when the next starts */

        struct slot slots[REACH_RELAYS_MAX];
        struct given_up given_up[GIVEN_UP_MAX];
        size_t n_given_up;
        uint64_t seq;
        uint64_t next_deadline;
        struct reach_stats stats;
};

const char *reach_state_to_string(enum reach_state s) {
        switch (s) {
        case REACH_STATE_PUBLIC:
                return "public";
        case REACH_STATE_PRIVATE:
                return "private";
        case REACH_STATE_CHECKING:
                return "checking";
        default:
                return "unknown";
        }
}

void reach_config_default(struct reach_config *c) {
        *c = (struct reach_config) {
                .mode = REACH_MODE_AUTO,
                .dial_peers = 3,
                .dial_timeout_usec = 3ull * 1000 * 1000,
                .recheck_usec = 600ull * 1000 * 1000,
                .want_relays = 2,
                .keepalive_usec = 2ull * 1000 * 1000,
                .relay_timeout_usec = 5ull * 1000 * 1000,
                .relay_retry_usec = 30ull * 1000 * 1000,
        };
}

int reach_new(const struct reach_config *config, const struct reach_io *io, const uint8_t self[WIRE_NODE_ID_SIZE],
              struct reach **ret) {
        struct reach *r;

        if (!config || !io || !io->random_u64 || !io->send_dial_request || !io->send_register || !self || !ret ||
            config->dial_peers == 0 || config->want_relays == 0 || config->want_relays > REACH_RELAYS_MAX ||
            config->keepalive_usec == 0 || config->relay_timeout_usec == 0 || config->dial_timeout_usec == 0)
                return -EINVAL;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->config = *config;
        r->io = *io;
        memcpy(r->self, self, WIRE_NODE_ID_SIZE);
        r->state = config->mode == REACH_MODE_PUBLIC    ? REACH_STATE_PUBLIC
                   : config->mode == REACH_MODE_PRIVATE ? REACH_STATE_PRIVATE
                                                        : REACH_STATE_CHECKING;
        *ret = r;
        return 0;
}

static void slot_clear(struct slot *s) {
        free(s->endpoint);
        *s = (struct slot) {};
}

struct reach *reach_free(struct reach *r) {
        if (!r)
                return NULL;
        for (size_t i = 0; i < REACH_RELAYS_MAX; i++)
                slot_clear(&r->slots[i]);
        free(r);
        return NULL;
}

enum reach_state reach_get_state(const struct reach *r) {
        return r->state;
}

const struct reach_stats *reach_get_stats(const struct reach *r) {
        return &r->stats;
}

uint64_t reach_next_deadline(const struct reach *r) {
        return r->next_deadline;
}

static uint64_t random_below(struct reach *r, uint64_t n) {
        return n ? r->io.random_u64(r->io.userdata) % n : 0;
}

static void deadline(struct reach *r, uint64_t t) {
        if (t < r->next_deadline)
                r->next_deadline = t;
}

/* ---- Dial-back ---- */

static void round_start(struct reach *r, uint64_t now, const struct reach_peer *peers, size_t n_peers) {
        size_t asked = 0, start;

        if (n_peers == 0)
                return;         /* no one to ask: again at the next tick with peers */
        for (size_t i = 0; i < REACH_NONCE_SIZE; i += 8) {
                uint64_t x = r->io.random_u64(r->io.userdata);
                memcpy(r->nonce + i, &x, 8);
        }
        r->round_open = true;
        r->round_telling = false;
        r->round_deadline = now + r->config.dial_timeout_usec;
        r->stats.rounds++;
        /* A random run of the alive peers (their order is the caller's):
         * first those that say they can be dialled (or are from before
         * reachability), then those still checking; never a private one.
         * A peer dials back only an address the request came from, and a
         * request reaches a NATed peer through a relay or over its own
         * connection: it could never answer, and asking it alone would
         * make a reachable node think itself private. */
        start = (size_t) random_below(r, n_peers);
        for (int pass = 0; pass < 2; pass++)
                for (size_t k = 0; k < n_peers && asked < r->config.dial_peers; k++) {
                        const struct reach_peer *p = &peers[(start + k) % n_peers];
                        bool dialable = p->state == REACH_STATE_PUBLIC || p->state == REACH_STATE_UNKNOWN;

                        if (memcmp(p->id, r->self, WIRE_NODE_ID_SIZE) == 0 || p->suspect ||
                            p->state == REACH_STATE_PRIVATE || dialable != (pass == 0))
                                continue;
                        r->io.send_dial_request(r->io.userdata, p->id, r->nonce);
                        asked++;
                        if (dialable)
                                r->round_telling = true;
                }
        if (asked == 0) {
                /* Every peer suspect: ask again in a while, not at once
                 * (a deadline in the past would spin the event loop). */
                r->round_open = false;
                r->round_deadline = now + r->config.keepalive_usec;
        }
}

/* 1 when the state changed. */
static int round_conclude(struct reach *r, uint64_t now) {
        enum reach_state was = r->state;

        /* No dial-back arrived (reach_on_dial_back() closes a round it
         * proves).  Lost messages or busy peers can do that once: only
         * REACH_ROUNDS_TO_FAIL rounds in a row, one right after the other,
         * say that no one can reach us. */
        r->round_open = false;
        if (!r->round_telling) {
                /* Only peers still checking were asked (a swarm starting):
                 * they may be NATed themselves.  Ask again. */
                r->round_deadline = now;
                return 0;
        }
        if (++r->failed_rounds < REACH_ROUNDS_TO_FAIL) {
                r->round_deadline = now;
                return 0;
        }
        r->failed_rounds = 0;
        r->round_deadline = now + r->config.recheck_usec;
        r->state = REACH_STATE_PRIVATE;
        return r->state != was;
}

int reach_on_dial_back(struct reach *r, const uint8_t from[WIRE_NODE_ID_SIZE], const uint8_t *nonce, size_t size,
                       uint64_t now) {
        enum reach_state was = r->state;

        if (r->config.mode != REACH_MODE_AUTO || !r->round_open || size != REACH_NONCE_SIZE ||
            memcmp(nonce, r->nonce, REACH_NONCE_SIZE) != 0)
                return -ESTALE;
        r->stats.dial_backs++;
        r->round_open = false;
        r->failed_rounds = 0;
        r->round_deadline = now + r->config.recheck_usec;
        r->state = REACH_STATE_PUBLIC;
        if (was == REACH_STATE_PUBLIC)
                return 0;
        /* Dialable after all: relays are no longer needed. */
        for (size_t i = 0; i < REACH_RELAYS_MAX; i++)
                slot_clear(&r->slots[i]);
        r->next_deadline = now;
        return 1;
}

/* ---- Relays ---- */

static bool given_up(struct reach *r, const uint8_t *id, uint64_t now) {
        for (size_t i = 0; i < r->n_given_up; i++)
                if (memcmp(r->given_up[i].id, id, WIRE_NODE_ID_SIZE) == 0)
                        return now < r->given_up[i].until_usec;
        return false;
}

static void give_up(struct reach *r, struct slot *s, uint64_t now) {
        size_t i;

        for (i = 0; i < r->n_given_up; i++)
                if (memcmp(r->given_up[i].id, s->id, WIRE_NODE_ID_SIZE) == 0 || now >= r->given_up[i].until_usec)
                        break;
        if (i == r->n_given_up) {
                if (r->n_given_up < GIVEN_UP_MAX)
                        r->n_given_up++;
                else
                        i = (size_t) random_below(r, GIVEN_UP_MAX);
        }
        memcpy(r->given_up[i].id, s->id, WIRE_NODE_ID_SIZE);
        r->given_up[i].until_usec = now + r->config.relay_retry_usec;
        r->stats.relays_given_up++;
        slot_clear(s);
}

static struct slot *slot_find(struct reach *r, const uint8_t *id) {
        for (size_t i = 0; i < REACH_RELAYS_MAX; i++)
                if (r->slots[i].state != SLOT_FREE && memcmp(r->slots[i].id, id, WIRE_NODE_ID_SIZE) == 0)
                        return &r->slots[i];
        return NULL;
}

bool reach_is_relay(const struct reach *r, const uint8_t id[WIRE_NODE_ID_SIZE]) {
        return slot_find((struct reach *) r, id) != NULL;
}

static void slot_register(struct reach *r, struct slot *s, uint64_t now) {
        s->seq = ++r->seq;
        if (s->first_seq == 0)
                s->first_seq = s->seq;
        s->sent_usec = now;
        r->io.send_register(r->io.userdata, s->id, s->endpoint, s->seq);
}

static const struct reach_peer *peer_find(const struct reach_peer *peers, size_t n, const uint8_t *id) {
        for (size_t i = 0; i < n; i++)
                if (memcmp(peers[i].id, id, WIRE_NODE_ID_SIZE) == 0)
                        return &peers[i];
        return NULL;
}

/* 1 when the confirmed set changed. */
static int relays_tick(struct reach *r, uint64_t now, const struct reach_peer *peers, size_t n_peers) {
        unsigned used = 0;
        int changed = 0;

        for (size_t i = 0; i < REACH_RELAYS_MAX; i++) {
                struct slot *s = &r->slots[i];
                /* Silent since the first ask, or since the last confirmation
                 * (keep-alives do not count: they are ours). */
                uint64_t heard = s->state == SLOT_CONFIRMED ? s->ok_usec : s->asked_usec;

                if (s->state == SLOT_FREE)
                        continue;
                /* Silent too long, or dead in our membership: another one. */
                if (now >= heard + r->config.relay_timeout_usec || !peer_find(peers, n_peers, s->id)) {
                        changed |= s->state == SLOT_CONFIRMED;
                        give_up(r, s, now);
                        continue;
                }
                used++;
                if (now >= s->sent_usec + r->config.keepalive_usec)
                        slot_register(r, s, now);
                deadline(r, s->sent_usec + r->config.keepalive_usec);
                deadline(r, heard + r->config.relay_timeout_usec);
        }

        if (used < r->config.want_relays && n_peers > 0) {
                size_t start = (size_t) random_below(r, n_peers);

                for (size_t k = 0; k < n_peers && used < r->config.want_relays; k++) {
                        const struct reach_peer *p = &peers[(start + k) % n_peers];
                        struct slot *s = NULL;

                        if (!p->relay_offered || p->state != REACH_STATE_PUBLIC || !p->endpoint || p->suspect ||
                            memcmp(p->id, r->self, WIRE_NODE_ID_SIZE) == 0 || slot_find(r, p->id) ||
                            given_up(r, p->id, now))
                                continue;
                        for (size_t i = 0; i < REACH_RELAYS_MAX && !s; i++)
                                if (r->slots[i].state == SLOT_FREE)
                                        s = &r->slots[i];
                        if (!s)
                                break;
                        s->endpoint = strdup(p->endpoint);
                        if (!s->endpoint)
                                break;
                        memcpy(s->id, p->id, WIRE_NODE_ID_SIZE);
                        s->state = SLOT_ASKED;
                        s->asked_usec = now;
                        slot_register(r, s, now);
                        deadline(r, now + r->config.keepalive_usec);
                        used++;
                }
        }
        /* Short of relays: look again soon (one may come alive). */
        if (used < r->config.want_relays)
                deadline(r, now + r->config.keepalive_usec);
        if (changed)
                r->stats.relay_changes++;
        return changed;
}

int reach_tick(struct reach *r, uint64_t now, const struct reach_peer *peers, size_t n_peers) {
        int changed = 0;

        r->next_deadline = UINT64_MAX;
        if (r->config.mode == REACH_MODE_AUTO) {
                if (r->round_open && now >= r->round_deadline)
                        changed |= round_conclude(r, now);
                if (!r->round_open && now >= r->round_deadline)
                        round_start(r, now, peers, n_peers);
                if (r->round_open || n_peers > 0)
                        deadline(r, r->round_deadline);
                else
                        deadline(r, now + r->config.keepalive_usec);
        }
        if (r->state == REACH_STATE_PRIVATE)
                changed |= relays_tick(r, now, peers, n_peers);
        return changed;
}

int reach_on_registered(struct reach *r, const uint8_t relay[WIRE_NODE_ID_SIZE], uint64_t seq, int status,
                        uint64_t lease_usec, uint64_t now) {
        struct slot *s = slot_find(r, relay);
        bool was;

        /* An answer to any registration of this slot: a keep-alive may
         * have gone out before the answer to the one before came back. */
        if (!s || seq < s->first_seq || seq > s->seq)
                return -ENOENT;
        was = s->state == SLOT_CONFIRMED;
        if (status < 0) {
                give_up(r, s, now);
                r->next_deadline = now;         /* find another at the next tick */
                if (was)
                        r->stats.relay_changes++;
                return was;
        }
        s->state = SLOT_CONFIRMED;
        s->ok_usec = now;
        if (!was)
                r->stats.relay_changes++;
        return !was;
}

int reach_on_relay_forgot(struct reach *r, const uint8_t relay[WIRE_NODE_ID_SIZE], uint64_t now) {
        struct slot *s = slot_find(r, relay);

        if (!s)
                return -ENOENT;
        slot_register(r, s, now);
        return 0;
}

size_t reach_get_relays(const struct reach *r, const uint8_t **ids, const char **endpoints, size_t max) {
        size_t n = 0;

        for (size_t i = 0; i < REACH_RELAYS_MAX && n < max; i++)
                if (r->slots[i].state == SLOT_CONFIRMED) {
                        ids[n] = r->slots[i].id;
                        endpoints[n] = r->slots[i].endpoint;
                        n++;
                }
        return n;
}

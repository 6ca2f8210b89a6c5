/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "relay-box.h"

#define SESSION_SIZE 16
#define WINDOW 64
#define KEY_SIZE crypto_secretbox_KEYBYTES

/* What the direction keys are derived for: a box is for one direction
 * between two exact ids (see peer_keys()). */
static const char KEY_LABEL[] = "swarmharness relay box 1";

struct box_peer {
        uint8_t id[WIRE_NODE_ID_SIZE];
        uint8_t tx_key[KEY_SIZE];       /* us → this peer */
        uint64_t tx_next;               /* the next box's counter; 0: none yet */
        uint8_t rx_key[KEY_SIZE];       /* this peer → us */
        bool rx_seen;                   /* rx_session and rx_top are set */
        uint8_t rx_session[SESSION_SIZE];
        uint64_t rx_top;                /* highest counter opened in rx_session */
        uint64_t rx_window;             /* bit i: rx_top - i opened */
        uint64_t used;                  /* LRU tick */
};

struct relay_box {
        uint8_t curve_sk[crypto_box_SECRETKEYBYTES];
        uint8_t self[WIRE_NODE_ID_SIZE];
        uint8_t session[SESSION_SIZE];
        /* Counters run per peer, one after the other (so the receiver's
         * window takes boxes reordered by up to 64), and each run starts
         * a new generation in their top 32 bits: a nonce (session,
         * counter) is never used twice, even for a peer whose entry was
         * forgotten and made again. */
        uint32_t generations;
        struct box_peer *peers;
        size_t n_peers, n_allocated;
        uint64_t tick;
};

static void put_be64(uint8_t *p, uint64_t v) {
        for (int i = 7; i >= 0; i--) {
                p[i] = (uint8_t) v;
                v >>= 8;
        }
}

static uint64_t get_be64(const uint8_t *p) {
        uint64_t v = 0;

        for (int i = 0; i < 8; i++)
                v = (v << 8) | p[i];
        return v;
}

int relay_box_new(const uint8_t ed25519_sk[64], uint64_t boot_usec, const uint8_t random8[8],
                  struct relay_box **ret) {
        struct relay_box *b;

        if (!ed25519_sk || !random8 || !ret)
                return -EINVAL;
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        if (crypto_sign_ed25519_sk_to_curve25519(b->curve_sk, ed25519_sk) < 0 ||
            crypto_sign_ed25519_sk_to_pk(b->self, ed25519_sk) < 0) {
                free(b);
                return -EINVAL;
        }
        put_be64(b->session, boot_usec);
        memcpy(b->session + 8, random8, 8);
        *ret = b;
        return 0;
}

struct relay_box *relay_box_free(struct relay_box *b) {
        if (!b)
                return NULL;
        if (b->peers)
                sodium_memzero(b->peers, b->n_allocated * sizeof(*b->peers));
        free(b->peers);
        sodium_memzero(b->curve_sk, sizeof(b->curve_sk));
        free(b);
        return NULL;
}

/* One direction's key: BLAKE2b keyed with the X25519 secret the two share,
 * over the label, the sender's id and the recipient's id.  crypto_box alone
 * uses one key both ways and names no one, so a relay could hand a node
 * its own box back as the peer's, or pass a peer's box on under the peer's
 * Curve "twin" id (the same Curve25519 key, the Ed25519 sign bit flipped):
 * with the ids in the key, a box opens only as from its sender to its
 * recipient. */
static void direction_key(const uint8_t shared[crypto_box_BEFORENMBYTES], const uint8_t from[WIRE_NODE_ID_SIZE],
                          const uint8_t to[WIRE_NODE_ID_SIZE], uint8_t key[KEY_SIZE]) {
        crypto_generichash_state h;

        crypto_generichash_init(&h, shared, crypto_box_BEFORENMBYTES, KEY_SIZE);
        crypto_generichash_update(&h, (const uint8_t *) KEY_LABEL, sizeof(KEY_LABEL) - 1);
        crypto_generichash_update(&h, from, WIRE_NODE_ID_SIZE);
        crypto_generichash_update(&h, to, WIRE_NODE_ID_SIZE);
        crypto_generichash_final(&h, key, KEY_SIZE);
        sodium_memzero(&h, sizeof(h));
}

/* A fresh entry for id in *p (not yet in the table).  -EINVAL for an id
 * that is not an Ed25519 key, or a low-order point (no key to share). */
static int peer_keys(const struct relay_box *b, const uint8_t id[WIRE_NODE_ID_SIZE], struct box_peer *p) {
        uint8_t curve_pk[crypto_box_PUBLICKEYBYTES], shared[crypto_box_BEFORENMBYTES];

        *p = (struct box_peer) {};
        memcpy(p->id, id, WIRE_NODE_ID_SIZE);
        if (crypto_sign_ed25519_pk_to_curve25519(curve_pk, id) < 0 ||
            crypto_box_beforenm(shared, curve_pk, b->curve_sk) < 0)
                return -EINVAL;
        direction_key(shared, b->self, id, p->tx_key);
        direction_key(shared, id, b->self, p->rx_key);
        sodium_memzero(shared, sizeof(shared));
        return 0;
}

static struct box_peer *peer_find(struct relay_box *b, const uint8_t id[WIRE_NODE_ID_SIZE]) {
        for (size_t i = 0; i < b->n_peers; i++)
                if (memcmp(b->peers[i].id, id, WIRE_NODE_ID_SIZE) == 0) {
                        b->peers[i].used = ++b->tick;
                        return &b->peers[i];
                }
        return NULL;
}

/* Puts *fresh in the table; the least recently used is replaced when it
 * is full. */
static int peer_insert(struct relay_box *b, const struct box_peer *fresh, struct box_peer **ret) {
        struct box_peer *p;

        if (b->n_peers < RELAY_BOX_PEERS_MAX) {
                if (b->n_peers == b->n_allocated) {
                        size_t n = b->n_allocated ? 2 * b->n_allocated : 16;
                        struct box_peer *grown = realloc(b->peers, n * sizeof(*grown));

                        if (!grown)
                                return -ENOMEM;
                        b->peers = grown;
                        b->n_allocated = n;
                }
                p = &b->peers[b->n_peers++];
        } else {
                p = &b->peers[0];
                for (size_t i = 1; i < b->n_peers; i++)
                        if (b->peers[i].used < p->used)
                                p = &b->peers[i];
        }
        *p = *fresh;
        p->used = ++b->tick;
        *ret = p;
        return 0;
}

int relay_box_seal(struct relay_box *b, const uint8_t to[WIRE_NODE_ID_SIZE], const struct iovec *iov, size_t n,
                   uint8_t **ret, size_t *ret_size) {
        struct box_peer *p;
        size_t size = 0, off;
        uint8_t *out;
        int r;

        if (!b || !to || (!iov && n > 0) || !ret || !ret_size)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (iov[i].iov_len > SIZE_MAX / 2 - size)
                        return -EINVAL;
                size += iov[i].iov_len;
        }
        p = peer_find(b, to);
        if (!p) {
                struct box_peer fresh;

                r = peer_keys(b, to, &fresh);
                if (r >= 0)
                        r = peer_insert(b, &fresh, &p);
                sodium_memzero(&fresh, sizeof(fresh));
                if (r < 0)
                        return r;
        }
        if (p->tx_next == 0 || (uint32_t) p->tx_next == 0) {
                if (b->generations == UINT32_MAX)
                        return -EOVERFLOW;      /* 2³² runs: not in this session */
                p->tx_next = ((uint64_t) ++b->generations << 32) | 1;
        }

        out = malloc(RELAY_BOX_OVERHEAD + size);
        if (!out)
                return -ENOMEM;
        memcpy(out, b->session, SESSION_SIZE);
        put_be64(out + SESSION_SIZE, p->tx_next++);
        off = RELAY_BOX_OVERHEAD;
        for (size_t i = 0; i < n; i++) {
                if (iov[i].iov_len > 0)
                        memcpy(out + off, iov[i].iov_base, iov[i].iov_len);
                off += iov[i].iov_len;
        }
        /* Detached then placed: MAC after the nonce, ciphertext in place. */
        if (crypto_secretbox_detached(out + RELAY_BOX_OVERHEAD, out + RELAY_BOX_NONCE_SIZE, out + RELAY_BOX_OVERHEAD,
                                      size, out, p->tx_key) < 0) {
                free(out);
                return -EINVAL;
        }
        *ret = out;
        *ret_size = RELAY_BOX_OVERHEAD + size;
        return 0;
}

/* Where counter stands against the window: 1 new (above the top), 0 within
 * and unseen, -ESTALE seen or below the window. */
static int window_check(const struct box_peer *p, const uint8_t *session, uint64_t counter) {
        int c;

        if (!p->rx_seen)
                return 1;
        c = memcmp(session, p->rx_session, SESSION_SIZE);
        if (c > 0)
                return 1;       /* a newer session (the sender restarted) */
        if (c < 0)
                return -ESTALE;
        if (counter > p->rx_top)
                return 1;
        if (p->rx_top - counter >= WINDOW || (p->rx_window >> (p->rx_top - counter)) & 1)
                return -ESTALE;
        return 0;
}

static void window_mark(struct box_peer *p, const uint8_t *session, uint64_t counter) {
        if (!p->rx_seen || memcmp(session, p->rx_session, SESSION_SIZE) != 0) {
                memcpy(p->rx_session, session, SESSION_SIZE);
                p->rx_seen = true;
                p->rx_top = counter;
                p->rx_window = 1;
        } else if (counter > p->rx_top) {
                uint64_t shift = counter - p->rx_top;
                p->rx_window = shift >= WINDOW ? 1 : (p->rx_window << shift) | 1;
                p->rx_top = counter;
        } else
                p->rx_window |= UINT64_C(1) << (p->rx_top - counter);
}

int relay_box_open(struct relay_box *b, const uint8_t from[WIRE_NODE_ID_SIZE], uint8_t *box, size_t size,
                   uint8_t **ret, size_t *ret_size) {
        struct box_peer fresh = {}, *p;
        const struct box_peer *known;
        uint64_t counter;
        int r;

        if (!b || !from || (!box && size > 0) || !ret || !ret_size)
                return -EINVAL;
        if (size < RELAY_BOX_OVERHEAD)
                return -EBADMSG;
        counter = get_be64(box + SESSION_SIZE);
        if (counter == 0)
                return -EBADMSG;        /* senders count from 1 */
        /* A peer not in the table gets an entry only once its box has
         * opened: forged boxes naming made-up ids must not push real
         * peers' windows out (which would let their old boxes in again). */
        p = peer_find(b, from);
        if (!p) {
                r = peer_keys(b, from, &fresh);
                if (r < 0)
                        return r;
                known = &fresh;
        } else
                known = p;
        r = window_check(known, box, counter);
        if (r < 0)
                goto finish;
        if (crypto_secretbox_open_detached(box + RELAY_BOX_OVERHEAD, box + RELAY_BOX_OVERHEAD, box + RELAY_BOX_NONCE_SIZE,
                                           size - RELAY_BOX_OVERHEAD, box, known->rx_key) < 0) {
                r = -EBADMSG;
                goto finish;
        }
        if (!p) {
                r = peer_insert(b, &fresh, &p);
                if (r < 0)
                        goto finish;
        }
        /* Only a box that opened moves the window: a forger cannot push it. */
        window_mark(p, box, counter);
        *ret = box + RELAY_BOX_OVERHEAD;
        *ret_size = size - RELAY_BOX_OVERHEAD;
        r = 0;
finish:
        sodium_memzero(&fresh, sizeof(fresh));
        return r;
}

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

struct box_peer {
        uint8_t id[WIRE_NODE_ID_SIZE];
        uint8_t key[crypto_box_BEFORENMBYTES];  /* shared with this peer */
        uint64_t tx_counter;
        bool rx_seen;                   /* rx_session and rx_top are set */
        uint8_t rx_session[SESSION_SIZE];
        uint64_t rx_top;                /* highest counter opened in rx_session */
        uint64_t rx_window;             /* bit i: rx_top - i opened */
        uint64_t used;                  /* LRU tick */
};

struct relay_box {
        uint8_t curve_sk[crypto_box_SECRETKEYBYTES];
        uint8_t session[SESSION_SIZE];
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
        if (crypto_sign_ed25519_sk_to_curve25519(b->curve_sk, ed25519_sk) < 0) {
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

/* The peer's entry, made (and its shared key computed) on first use; the
 * least recently used is replaced when the table is full. */
static int peer_get(struct relay_box *b, const uint8_t id[WIRE_NODE_ID_SIZE], struct box_peer **ret) {
        uint8_t curve_pk[crypto_box_PUBLICKEYBYTES];
        struct box_peer *p = NULL;

        for (size_t i = 0; i < b->n_peers; i++)
                if (memcmp(b->peers[i].id, id, WIRE_NODE_ID_SIZE) == 0) {
                        p = &b->peers[i];
                        p->used = ++b->tick;
                        *ret = p;
                        return 0;
                }

        if (crypto_sign_ed25519_pk_to_curve25519(curve_pk, id) < 0)
                return -EINVAL;
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
        *p = (struct box_peer) { .used = ++b->tick };
        memcpy(p->id, id, WIRE_NODE_ID_SIZE);
        if (crypto_box_beforenm(p->key, curve_pk, b->curve_sk) < 0) {
                /* A low-order point: no key to share.  Forget the entry. */
                *p = b->peers[--b->n_peers];
                return -EINVAL;
        }
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
        r = peer_get(b, to, &p);
        if (r < 0)
                return r;

        out = malloc(RELAY_BOX_OVERHEAD + size);
        if (!out)
                return -ENOMEM;
        memcpy(out, b->session, SESSION_SIZE);
        put_be64(out + SESSION_SIZE, ++p->tx_counter);
        off = RELAY_BOX_OVERHEAD;
        for (size_t i = 0; i < n; i++) {
                if (iov[i].iov_len > 0)
                        memcpy(out + off, iov[i].iov_base, iov[i].iov_len);
                off += iov[i].iov_len;
        }
        /* Detached then placed: MAC after the nonce, ciphertext in place. */
        if (crypto_box_detached_afternm(out + RELAY_BOX_OVERHEAD, out + RELAY_BOX_NONCE_SIZE,
                                        out + RELAY_BOX_OVERHEAD, size, out, p->key) < 0) {
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
        struct box_peer *p;
        uint64_t counter;
        int r;

        if (!b || !from || (!box && size > 0) || !ret || !ret_size)
                return -EINVAL;
        if (size < RELAY_BOX_OVERHEAD)
                return -EBADMSG;
        counter = get_be64(box + SESSION_SIZE);
        if (counter == 0)
                return -EBADMSG;        /* senders count from 1 */
        r = peer_get(b, from, &p);
        if (r < 0)
                return r;
        r = window_check(p, box, counter);
        if (r < 0)
                return r;
        if (crypto_box_open_detached_afternm(box + RELAY_BOX_OVERHEAD, box + RELAY_BOX_OVERHEAD,
                                             box + RELAY_BOX_NONCE_SIZE, size - RELAY_BOX_OVERHEAD, box,
                                             p->key) < 0)
                return -EBADMSG;
        /* Only a box that opened moves the window: a forger cannot push it. */
        window_mark(p, box, counter);
        *ret = box + RELAY_BOX_OVERHEAD;
        *ret_size = size - RELAY_BOX_OVERHEAD;
        return 0;
}

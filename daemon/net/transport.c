/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <sys/uio.h>
#include <poll.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <zmq.h>

#include "identity.h"
#include "log.h"
#include "macro.h"
#include "time-util.h"
#include "transport.h"

#define KEY_SIZE 32                     /* Ed25519 id, Curve25519 key */
#define CLAIM_SIZE WIRE_NODE_ID_SIZE    /* the sender's id in front of every payload */
#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_DOMAIN "swarm"

/* A CurveZMQ MESSAGE command wraps the payload in 33 bytes ("\x07MESSAGE",
 * nonce, MAC, flags), and ZMQ_MAXMSGSIZE counts the wire frame, as it also
 * does the handshake commands (INITIATE with metadata is about 300 bytes).
 * The socket limit therefore has slack; the exact limit is checked on
 * every message received. */
#define CURVE_FRAME_OVERHEAD 64
#define HANDSHAKE_FRAME_MAX 1024

/* Messages handled per wakeup before other event sources get a turn; the
 * rest are picked up by a defer source, since ZMQ_FD will not signal them
 * again. */
#define DRAIN_BUDGET 256

/* Peers we only hear from (a rate bucket each) are forgotten, least recently
 * heard first, beyond this many; peers we send to are kept. */
#define PEERS_MAX 4096

/* Bytes the ROUTER queues per peer before it stops reading that peer's
 * connection (backpressure, not loss). */
#define ROUTER_QUEUE_BYTES (64u * 1024 * 1024)

#define RECONNECT_IVL_MS 100
#define RECONNECT_IVL_MAX_MS 5000
#define HANDSHAKE_IVL_MS 10000
#define HEARTBEAT_IVL_MS 10000
#define HEARTBEAT_TIMEOUT_MS 30000

/* ZeroMQ's routing ids are at most 255 bytes (ours: 5, made by the ROUTER). */
#define RID_MAX 255


/* A 32-byte key in a chained hash table.  Keys are chosen by peers, so
 * buckets are picked with keyed SipHash (crypto_shorthash). */
struct entry {
        uint8_t key[KEY_SIZE];
        struct entry *next;
};

struct table {
        struct entry **buckets;
        size_t n_buckets;               /* a power of two, or 0 */
        size_t n;
};

struct peer {
        struct entry entry;             /* key: Ed25519 node id; first member */
        struct transport *transport;
        uint8_t curve_pk[KEY_SIZE];
        void *dealer;                   /* NULL until we send to it */
        char *dealer_endpoint;          /* where dealer is connected */
        sd_event_source *dealer_io, *dealer_defer;      /* what the peer answers on it */
        uint8_t rid[RID_MAX];           /* ROUTER routing id of its last connection to us */
        size_t rid_len;                 /* 0: none known */
        double tokens;
        uint64_t refill_usec;
        uint64_t used_usec;
};

struct transport {
        sd_event *event;
        void *ctx;
        void *router;
        void *zap;                      /* REP at ZAP_ENDPOINT; NULL when insecure */
        sd_event_source *router_io, *router_defer;
        sd_event_source *zap_io, *zap_defer;
        char *endpoint;

        bool insecure;
        uint64_t max_message_size;
        double rate_per_second;
        double rate_burst;
        int send_queue;

        uint8_t id[KEY_SIZE];
        uint8_t curve_pk[KEY_SIZE];
        uint8_t curve_sk[KEY_SIZE];
        uint8_t hash_key[crypto_shorthash_KEYBYTES];

        struct table peers;             /* struct peer by Ed25519 id */
        struct table bans;              /* bare entries by Curve25519 key */

        transport_receive_fn receive;
        void *userdata;
        bool receiving_reverse;         /* during receive(): the message came on a DEALER */
        const char *receiving_address;  /* during receive(): the IP its connection came from */
        bool read_replies;              /* watch the DEALERs (transport_set_read_replies()) */
        struct transport_stats stats;
};

static uint64_t now_usec(const struct transport *t) {
        uint64_t u;

        if (sd_event_now(t->event, CLOCK_MONOTONIC, &u) >= 0)
                return u;
        return now(CLOCK_MONOTONIC);
}

static int zmq_negative_errno(void) {
        int e = zmq_errno();
        return e > 0 ? -e : -EIO;
}

/* The full id for the PEER= field and its short form for the message. */
struct peer_name {
        char full[NODE_ID_LEN + 1];
        char shrt[NODE_ID_SHORT_LEN + 1];
};

static const struct peer_name *peer_name(const uint8_t id[KEY_SIZE], struct peer_name *n) {
        node_id_from_public_key(id, n->full);
        memcpy(n->shrt, n->full, NODE_ID_SHORT_LEN);
        n->shrt[NODE_ID_SHORT_LEN] = '\0';
        return n;
}

/* ---- Key tables ---- */

static size_t table_slot(const struct transport *t, const struct table *tab, const uint8_t key[KEY_SIZE]) {
        uint8_t h[crypto_shorthash_BYTES];
        uint64_t v;

        crypto_shorthash(h, key, KEY_SIZE, t->hash_key);
        memcpy(&v, h, sizeof(v));
        return (size_t) (v & (tab->n_buckets - 1));
}

static struct entry *table_find(const struct transport *t, const struct table *tab, const uint8_t key[KEY_SIZE]) {
        if (tab->n == 0)
                return NULL;
        for (struct entry *e = tab->buckets[table_slot(t, tab, key)]; e; e = e->next)
                if (memcmp(e->key, key, KEY_SIZE) == 0)
                        return e;
        return NULL;
}

static int table_add(const struct transport *t, struct table *tab, struct entry *e) {
        size_t slot;

        if (tab->n >= tab->n_buckets) {
                size_t n = tab->n_buckets ? tab->n_buckets * 2 : 64;
                struct entry **b = calloc(n, sizeof(*b));
                struct table grown = { .buckets = b, .n_buckets = n };

                if (!b)
                        return -ENOMEM;
                for (size_t i = 0; i < tab->n_buckets; i++)
                        for (struct entry *x = tab->buckets[i], *next; x; x = next) {
                                next = x->next;
                                slot = table_slot(t, &grown, x->key);
                                x->next = b[slot];
                                b[slot] = x;
                        }
                free(tab->buckets);
                tab->buckets = b;
                tab->n_buckets = n;
        }
        slot = table_slot(t, tab, e->key);
        e->next = tab->buckets[slot];
        tab->buckets[slot] = e;
        tab->n++;
        return 0;
}

static void table_remove(const struct transport *t, struct table *tab, struct entry *e) {
        for (struct entry **p = &tab->buckets[table_slot(t, tab, e->key)]; *p; p = &(*p)->next)
                if (*p == e) {
                        *p = e->next;
                        tab->n--;
                        return;
                }
}

/* Frees every entry (with free_entry) and the table's own memory. */
static void table_clear(struct table *tab, void (*free_entry)(struct entry *e)) {
        for (size_t i = 0; i < tab->n_buckets; i++)
                for (struct entry *e = tab->buckets[i], *next; e; e = next) {
                        next = e->next;
                        free_entry(e);
                }
        free(tab->buckets);
        *tab = (struct table) {};
}

/* ---- ZeroMQ helpers ---- */

static int sockopt_int(void *s, int option, int value) {
        return zmq_setsockopt(s, option, &value, sizeof(value)) < 0 ? zmq_negative_errno() : 0;
}

/* > 0 when a message can be received now.  Also processes the socket's
 * pending commands, which is what resets its ZMQ_FD. */
static int socket_readable(void *s) {
        int events;
        size_t len = sizeof(events);

        if (zmq_getsockopt(s, ZMQ_EVENTS, &events, &len) < 0)
                return zmq_negative_errno();
        return !!(events & ZMQ_POLLIN);
}

static void socket_close(void **s) {
        if (*s) {
                (void) sockopt_int(*s, ZMQ_LINGER, 0);
                zmq_close(*s);
                *s = NULL;
        }
}

/* Receives the rest of a multipart message that we will not use. */
static void discard_more(void *s, zmq_msg_t *last) {
        while (zmq_msg_more(last)) {
                zmq_msg_close(last);
                zmq_msg_init(last);
                if (zmq_msg_recv(last, s, ZMQ_DONTWAIT) < 0)
                        break;
        }
}

static bool valid_endpoint(const char *endpoint) {
        return endpoint && strncmp(endpoint, "tcp://", 6) == 0 && endpoint[6] != '\0';
}

/* ---- Peers ---- */

static void dealer_unwatch(struct peer *p) {
        p->dealer_io = sd_event_source_disable_unref(p->dealer_io);
        p->dealer_defer = sd_event_source_disable_unref(p->dealer_defer);
}

static void dealer_close(struct peer *p) {
        dealer_unwatch(p);
        socket_close(&p->dealer);
}

static void peer_free(struct peer *p) {
        if (!p)
                return;
        dealer_close(p);
        free(p->dealer_endpoint);
        free(p);
}

static void peer_free_entry(struct entry *e) {
        peer_free((struct peer *) e);
}

static struct peer *peer_find(const struct transport *t, const uint8_t id[KEY_SIZE]) {
        return (struct peer *) table_find(t, &t->peers, id);
}

/* Makes room for a peer we are about to hear from: forgets the one heard
 * from least recently that we do not send to.  False when there is none. */
static bool peer_make_room(struct transport *t) {
        struct peer *victim = NULL;

        if (t->peers.n < PEERS_MAX)
                return true;
        for (size_t i = 0; i < t->peers.n_buckets; i++)
                for (struct entry *e = t->peers.buckets[i]; e; e = e->next) {
                        struct peer *p = (struct peer *) e;
                        if (!p->dealer && (!victim || p->used_usec < victim->used_usec))
                                victim = p;
                }
        if (!victim)
                return false;
        table_remove(t, &t->peers, &victim->entry);
        peer_free(victim);
        return true;
}

/* curve_pk is the id's Curve25519 key, already computed by the caller. */
static int peer_add(struct transport *t, const uint8_t id[KEY_SIZE], const uint8_t curve_pk[KEY_SIZE],
                    struct peer **ret) {
        struct peer *p = calloc(1, sizeof(*p));
        uint64_t now = now_usec(t);
        int r;

        if (!p)
                return -ENOMEM;
        memcpy(p->entry.key, id, KEY_SIZE);
        memcpy(p->curve_pk, curve_pk, KEY_SIZE);
        p->transport = t;
        p->tokens = t->rate_burst;
        p->refill_usec = p->used_usec = now;
        r = table_add(t, &t->peers, &p->entry);
        if (r < 0) {
                free(p);
                return r;
        }
        *ret = p;
        return 0;
}

static void ban_free_entry(struct entry *e) {
        free(e);
}

static bool curve_banned(const struct transport *t, const uint8_t curve_pk[KEY_SIZE]) {
        return table_find(t, &t->bans, curve_pk) != NULL;
}

/* Takes one token from the peer's bucket; false when it is empty. */
static bool peer_take_token(const struct transport *t, struct peer *p, uint64_t now) {
        if (t->rate_per_second <= 0)
                return true;
        if (now > p->refill_usec) {
                p->tokens += (double) (now - p->refill_usec) * t->rate_per_second / USEC_PER_SEC;
                if (p->tokens > t->rate_burst)
                        p->tokens = t->rate_burst;
                p->refill_usec = now;
        }
        if (p->tokens < 1)
                return false;
        p->tokens -= 1;
        return true;
}

static int dealer_watch(struct peer *p);

/* Messages queued on a socket we read, at most: about ROUTER_QUEUE_BYTES
 * of the largest ones, between 16 and 1000. */
static int receive_hwm(const struct transport *t) {
        uint64_t hwm = ROUTER_QUEUE_BYTES / (t->max_message_size + CLAIM_SIZE);

        return (int) (hwm < 16 ? 16 : hwm > 1000 ? 1000 : hwm);
}

static int peer_connect(struct transport *t, struct peer *p, const char *endpoint) {
        void *s = zmq_socket(t->ctx, ZMQ_DEALER);
        const int rcvhwm = receive_hwm(t);
        /* A peer answers on it only when we cannot be dialled (a relay
         * and its NATed client, issue 21): read like the ROUTER. */
        const struct {
                int option, value;
        } options[] = {
                { ZMQ_LINGER, 0 },
                { ZMQ_SNDHWM, t->send_queue },
                { ZMQ_RCVHWM, rcvhwm },   /* what a peer answering on it may queue */
                { ZMQ_RECONNECT_IVL, RECONNECT_IVL_MS },
                { ZMQ_RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS },
                { ZMQ_HANDSHAKE_IVL, HANDSHAKE_IVL_MS },
                { ZMQ_HEARTBEAT_IVL, HEARTBEAT_IVL_MS },
                { ZMQ_HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS },
                { ZMQ_IPV6, strchr(endpoint, '[') != NULL },
        };
        /* What the peer may answer on it: as much as the ROUTER takes (a
         * larger message would cost the connection). */
        uint64_t limit = t->max_message_size + CLAIM_SIZE + CURVE_FRAME_OVERHEAD;
        int64_t maxmsgsize = (int64_t) (limit < HANDSHAKE_FRAME_MAX ? HANDSHAKE_FRAME_MAX : limit);
        struct peer_name n;
        int r;

        if (!s)
                return zmq_negative_errno();
        for (size_t i = 0; i < ELEMENTSOF(options); i++) {
                r = sockopt_int(s, options[i].option, options[i].value);
                if (r < 0)
                        goto fail;
        }
        if (zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsgsize, sizeof(maxmsgsize)) < 0)
                goto fail_errno;
        if (!t->insecure &&
            (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, p->curve_pk, KEY_SIZE) < 0 ||
             zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, t->curve_pk, KEY_SIZE) < 0 ||
             zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, t->curve_sk, KEY_SIZE) < 0))
                goto fail_errno;
        if (zmq_connect(s, endpoint) < 0)
                goto fail_errno;

        free(p->dealer_endpoint);
        p->dealer_endpoint = strdup(endpoint);
        p->dealer = s;
        r = t->read_replies ? dealer_watch(p) : 0;
        if (r < 0) {
                dealer_close(p);
                return r;
        }
        log_fields(LOG_DEBUG, &(struct log_fields) { .peer = peer_name(p->entry.key, &n)->full },
                   "Connecting to %s at %s.", n.shrt, endpoint);
        return 0;

fail_errno:
        r = zmq_negative_errno();
fail:
        socket_close(&s);
        return r;
}

/* ---- Receiving ---- */

/* Checks one message from the ROUTER (frames: routing id, claim ‖ payload)
 * and hands it on. */
static void router_handle(struct transport *t, zmq_msg_t *rid, zmq_msg_t *msg) {
        const uint8_t *data = zmq_msg_data(msg);
        size_t size = zmq_msg_size(msg);
        uint8_t presented[KEY_SIZE] = {}, curve_pk[KEY_SIZE], from[KEY_SIZE];
        uint64_t now = now_usec(t);
        struct peer_name n;
        struct peer *p;

        if (size < CLAIM_SIZE || size - CLAIM_SIZE > t->max_message_size) {
                t->stats.dropped_invalid++;
                log_debug("Dropped a message of %zu bytes: too %s.", size, size < CLAIM_SIZE ? "short" : "large");
                return;
        }

        if (!t->insecure) {
                /* Set by our ZAP handler for this connection; without it the
                 * connection did not pass through it, so nothing vouches. */
                const char *user_id = zmq_msg_gets(msg, "User-Id");
                size_t len;

                if (!user_id || strlen(user_id) != 2 * KEY_SIZE ||
                    sodium_hex2bin(presented, KEY_SIZE, user_id, 2 * KEY_SIZE, NULL, &len, NULL) < 0 ||
                    len != KEY_SIZE) {
                        t->stats.dropped_invalid++;
                        log_debug("Dropped a message from a connection not vouched for by ZAP.");
                        return;
                }
        }

        p = peer_find(t, data);
        if (p)
                memcpy(curve_pk, p->curve_pk, KEY_SIZE);
        else if (crypto_sign_ed25519_pk_to_curve25519(curve_pk, data) < 0) {
                t->stats.dropped_invalid++;
                log_debug("Dropped a message claiming an id that is not an Ed25519 key.");
                return;
        }

        if (!t->insecure && sodium_memcmp(curve_pk, presented, KEY_SIZE) != 0) {
                t->stats.dropped_invalid++;
                log_fields(LOG_DEBUG, &(struct log_fields) { .peer = peer_name(data, &n)->full },
                           "Dropped a message claiming to be from %s over a connection authenticated "
                           "with another key.", n.shrt);
                return;
        }

        if (t->bans.n > 0 && curve_banned(t, curve_pk)) {
                t->stats.dropped_banned++;
                return;
        }

        if (!p) {
                if (!peer_make_room(t) || peer_add(t, data, curve_pk, &p) < 0) {
                        t->stats.dropped_rate_limited++;
                        log_debug("Dropped a message from a new peer: no room for its rate limit.");
                        return;
                }
                if (t->insecure)
                        log_fields(LOG_NOTICE, &(struct log_fields) { .peer = peer_name(data, &n)->full },
                                   "Message from %s, NOT authenticated (network.insecure is set).", n.shrt);
        }

        p->used_usec = now;
        if (!peer_take_token(t, p, now)) {
                t->stats.dropped_rate_limited++;
                log_fields(LOG_DEBUG, &(struct log_fields) { .peer = peer_name(data, &n)->full },
                           "Dropped a message from %s: over its rate limit.", n.shrt);
                return;
        }
        /* The way back over the peer's own connection, should it be one
         * we cannot dial (transport_reply()). */
        if (zmq_msg_size(rid) > 0 && zmq_msg_size(rid) <= RID_MAX) {
                p->rid_len = zmq_msg_size(rid);
                memcpy(p->rid, zmq_msg_data(rid), p->rid_len);
        }

        t->stats.received++;
        /* The callback may send to new peers, which can forget p. */
        memcpy(from, data, KEY_SIZE);
        t->receiving_address = zmq_msg_gets(msg, "Peer-Address");
        t->receive(t, from, data + CLAIM_SIZE, size - CLAIM_SIZE, t->userdata);
        t->receiving_address = NULL;
}

/* One message on our DEALER to p: from p (CURVE authenticated it with the
 * server key we dialled), claiming p's id or its Curve twin. */
static void dealer_handle(struct transport *t, struct peer *p, zmq_msg_t *msg) {
        const uint8_t *data = zmq_msg_data(msg);
        size_t size = zmq_msg_size(msg);
        uint8_t curve_pk[KEY_SIZE], from[KEY_SIZE];
        uint64_t now = now_usec(t);

        if (size < CLAIM_SIZE || size - CLAIM_SIZE > t->max_message_size ||
            (memcmp(data, p->entry.key, KEY_SIZE) != 0 &&
             (t->insecure || crypto_sign_ed25519_pk_to_curve25519(curve_pk, data) < 0 ||
              sodium_memcmp(curve_pk, p->curve_pk, KEY_SIZE) != 0))) {
                t->stats.dropped_invalid++;
                return;
        }
        if (t->bans.n > 0 && curve_banned(t, p->curve_pk)) {
                t->stats.dropped_banned++;
                return;
        }
        p->used_usec = now;
        if (!peer_take_token(t, p, now)) {
                t->stats.dropped_rate_limited++;
                return;
        }
        t->stats.received++;
        memcpy(from, data, KEY_SIZE);
        t->receiving_reverse = true;
        t->receive(t, from, data + CLAIM_SIZE, size - CLAIM_SIZE, t->userdata);
        t->receiving_reverse = false;
}

/* Drains p's DEALER (as socket_drain() does the ROUTER).  The callback may
 * close that DEALER (a disconnect), which ends the drain. */
static void dealer_drain(struct peer *p) {
        struct transport *t = p->transport;
        void *s = p->dealer;

        for (unsigned i = 0; i < DRAIN_BUDGET; i++) {
                zmq_msg_t msg;
                int r;

                if (!s || p->dealer != s)
                        return;
                r = socket_readable(s);
                if (r <= 0)
                        return;
                zmq_msg_init(&msg);
                if (zmq_msg_recv(&msg, s, ZMQ_DONTWAIT) < 0) {
                        zmq_msg_close(&msg);
                        return;
                }
                if (zmq_msg_more(&msg)) {
                        t->stats.dropped_invalid++;
                        discard_more(s, &msg);
                } else
                        dealer_handle(t, p, &msg);
                zmq_msg_close(&msg);
        }
        if (p->dealer == s)
                (void) sd_event_source_set_enabled(p->dealer_defer, SD_EVENT_ONESHOT);
}

/* Receives one message; 0 when there was none. */
static int router_receive_one(struct transport *t) {
        zmq_msg_t rid, msg;
        int r = 1;

        zmq_msg_init(&rid);
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&rid, t->router, ZMQ_DONTWAIT) < 0) {
                r = zmq_errno() == EAGAIN ? 0 : zmq_negative_errno();
                goto finish;
        }
        if (!zmq_msg_more(&rid) || zmq_msg_recv(&msg, t->router, ZMQ_DONTWAIT) < 0) {
                t->stats.dropped_invalid++;
                goto finish;
        }
        if (zmq_msg_more(&msg)) {
                /* We send one frame per message; more is not ours. */
                t->stats.dropped_invalid++;
                discard_more(t->router, &msg);
                goto finish;
        }
        router_handle(t, &rid, &msg);
finish:
        zmq_msg_close(&rid);
        zmq_msg_close(&msg);
        return r;
}

/* ZMQ_FD only says that something changed since ZMQ_EVENTS was last read,
 * and every send or receive can consume that news: so drain until
 * ZMQ_EVENTS has no POLLIN.  A budget keeps a busy peer set from starving
 * the loop; what is left is picked up by the defer source. */
static void socket_drain(struct transport *t, void *s, sd_event_source *defer, int (*one)(struct transport *t)) {
        for (unsigned i = 0; i < DRAIN_BUDGET; i++) {
                int r = socket_readable(s);
                if (r > 0)
                        r = one(t);
                if (r == -EINTR)
                        break;          /* try again on the next iteration */
                if (r < 0) {
                        /* Not retried at once, lest a broken socket spin the
                         * loop; its next event brings us back. */
                        log_warning_errno(r, "Failed to receive from a ZeroMQ socket: %m");
                        return;
                }
                if (r == 0 && socket_readable(s) == 0)
                        return;
        }
        (void) sd_event_source_set_enabled(defer, SD_EVENT_ONESHOT);
}

static int on_router_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct transport *t = userdata;

        socket_drain(t, t->router, t->router_defer, router_receive_one);
        return 0;
}

static int on_router_defer(sd_event_source *s, void *userdata) {
        return on_router_io(s, -1, 0, userdata);
}

/* ---- ZAP (RFC 27) ---- */

enum {
        ZAP_VERSION,
        ZAP_REQUEST_ID,
        ZAP_DOMAIN_FRAME,
        ZAP_ADDRESS,
        ZAP_IDENTITY,
        ZAP_MECHANISM,
        ZAP_CREDENTIALS,
        ZAP_FRAMES,
};

static bool frame_is(zmq_msg_t *m, const char *s) {
        return zmq_msg_size(m) == strlen(s) && memcmp(zmq_msg_data(m), s, strlen(s)) == 0;
}

static int zap_send_frame(void *s, const void *data, size_t size, bool more) {
        return zmq_send(s, data, size, ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0)) < 0 ? zmq_negative_errno() : 0;
}

/* Answers one ZAP request: CURVE, in our domain, with a key not banned.
 * The User-Id vouches for the Curve key; router_handle() binds the node id
 * to it.  0 when there was no request. */
static int zap_handle_one(struct transport *t) {
        zmq_msg_t frames[ZAP_FRAMES];
        size_t n = 0;
        char user_id[2 * KEY_SIZE + 1] = "";
        const char *status = "400", *text = "Malformed request";
        bool more = true;
        int r = 1;

        for (size_t i = 0; i < ZAP_FRAMES; i++)
                zmq_msg_init(&frames[i]);
        while (more && n < ZAP_FRAMES) {
                if (zmq_msg_recv(&frames[n], t->zap, ZMQ_DONTWAIT) < 0) {
                        if (n == 0) {
                                r = zmq_errno() == EAGAIN ? 0 : zmq_negative_errno();
                                goto finish;
                        }
                        break;  /* cannot happen: frames arrive together */
                }
                more = zmq_msg_more(&frames[n]);
                n++;
        }
        if (more) {
                discard_more(t->zap, &frames[n - 1]);
                n = 0;          /* more frames than CURVE sends: refuse */
        }

        if (n == ZAP_FRAMES && frame_is(&frames[ZAP_VERSION], "1.0") &&
            frame_is(&frames[ZAP_DOMAIN_FRAME], ZAP_DOMAIN) && frame_is(&frames[ZAP_MECHANISM], "CURVE") &&
            zmq_msg_size(&frames[ZAP_CREDENTIALS]) == KEY_SIZE) {
                const uint8_t *key = zmq_msg_data(&frames[ZAP_CREDENTIALS]);

                if (curve_banned(t, key))
                        text = "Banned";
                else {
                        status = "200";
                        text = "OK";
                        sodium_bin2hex(user_id, sizeof(user_id), key, KEY_SIZE);
                }
        }
        if (status[0] != '2') {
                t->stats.refused_handshakes++;
                log_debug("Refused a connection%s%.*s: %s.", n > ZAP_ADDRESS ? " from " : "",
                          n > ZAP_ADDRESS ? (int) zmq_msg_size(&frames[ZAP_ADDRESS]) : 0,
                          n > ZAP_ADDRESS ? (const char *) zmq_msg_data(&frames[ZAP_ADDRESS]) : "", text);
        }

        /* REP must answer every request, even one it could not read, or it
         * refuses the next; its sends drop rather than block. */
        if ((r = zap_send_frame(t->zap, "1.0", 3, true)) < 0 ||
            (r = zap_send_frame(t->zap, n > ZAP_REQUEST_ID ? zmq_msg_data(&frames[ZAP_REQUEST_ID]) : "",
                                n > ZAP_REQUEST_ID ? zmq_msg_size(&frames[ZAP_REQUEST_ID]) : 0, true)) < 0 ||
            (r = zap_send_frame(t->zap, status, 3, true)) < 0 ||
            (r = zap_send_frame(t->zap, text, strlen(text), true)) < 0 ||
            (r = zap_send_frame(t->zap, user_id, strlen(user_id), true)) < 0 ||
            (r = zap_send_frame(t->zap, "", 0, false)) < 0)
                log_warning_errno(r, "Failed to answer a ZAP request: %m");
        else
                r = 1;
finish:
        for (size_t i = 0; i < ZAP_FRAMES; i++)
                zmq_msg_close(&frames[i]);
        return r;
}

static int on_zap_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct transport *t = userdata;

        socket_drain(t, t->zap, t->zap_defer, zap_handle_one);
        return 0;
}

static int on_zap_defer(sd_event_source *s, void *userdata) {
        return on_zap_io(s, -1, 0, userdata);
}

/* ---- Setup ---- */

/* Watches a socket's ZMQ_FD; the defer source starts enabled so that what
 * arrived before the first wakeup is not left waiting for an edge. */
static int socket_watch(struct transport *t, void *s, sd_event_io_handler_t io, sd_event_handler_t defer,
                        sd_event_source **ret_io, sd_event_source **ret_defer) {
        int fd, r;
        size_t len = sizeof(fd);

        if (zmq_getsockopt(s, ZMQ_FD, &fd, &len) < 0)
                return zmq_negative_errno();
        r = sd_event_add_io(t->event, ret_io, fd, EPOLLIN, io, t);
        if (r < 0)
                return r;
        r = sd_event_add_defer(t->event, ret_defer, defer, t);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(*ret_defer, SD_EVENT_ONESHOT);
}

static int on_dealer_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        dealer_drain(userdata);
        return 0;
}

static int on_dealer_defer(sd_event_source *s, void *userdata) {
        dealer_drain(userdata);
        return 0;
}

static int dealer_watch(struct peer *p) {
        struct transport *t = p->transport;
        int fd, r;
        size_t len = sizeof(fd);

        if (zmq_getsockopt(p->dealer, ZMQ_FD, &fd, &len) < 0)
                return zmq_negative_errno();
        r = sd_event_add_io(t->event, &p->dealer_io, fd, EPOLLIN, on_dealer_io, p);
        if (r < 0)
                return r;
        r = sd_event_add_defer(t->event, &p->dealer_defer, on_dealer_defer, p);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(p->dealer_defer, SD_EVENT_ONESHOT);
}

static int router_setup(struct transport *t, const char *bind) {
        uint64_t limit = t->max_message_size + CLAIM_SIZE + CURVE_FRAME_OVERHEAD;
        int64_t maxmsgsize = (int64_t) (limit < HANDSHAKE_FRAME_MAX ? HANDSHAKE_FRAME_MAX : limit);
        char endpoint[256];
        size_t len = sizeof(endpoint);
        int r;

        t->router = zmq_socket(t->ctx, ZMQ_ROUTER);
        if (!t->router)
                return zmq_negative_errno();
        if ((r = sockopt_int(t->router, ZMQ_LINGER, 0)) < 0 ||
            (r = sockopt_int(t->router, ZMQ_RCVHWM, receive_hwm(t))) < 0 ||
            (r = sockopt_int(t->router, ZMQ_HANDSHAKE_IVL, HANDSHAKE_IVL_MS)) < 0 ||
            (r = sockopt_int(t->router, ZMQ_HEARTBEAT_IVL, HEARTBEAT_IVL_MS)) < 0 ||
            (r = sockopt_int(t->router, ZMQ_HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)) < 0 ||
            (r = sockopt_int(t->router, ZMQ_ROUTER_MANDATORY, 1)) < 0 ||
            (r = sockopt_int(t->router, ZMQ_IPV6, strchr(bind, '[') != NULL)) < 0)
                return r;
        if (zmq_setsockopt(t->router, ZMQ_MAXMSGSIZE, &maxmsgsize, sizeof(maxmsgsize)) < 0)
                return zmq_negative_errno();
        if (!t->insecure) {
                if ((r = sockopt_int(t->router, ZMQ_CURVE_SERVER, 1)) < 0)
                        return r;
                if (zmq_setsockopt(t->router, ZMQ_CURVE_SECRETKEY, t->curve_sk, KEY_SIZE) < 0 ||
                    zmq_setsockopt(t->router, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN)) < 0)
                        return zmq_negative_errno();
        }
        if (zmq_bind(t->router, bind) < 0)
                return zmq_negative_errno();
        if (zmq_getsockopt(t->router, ZMQ_LAST_ENDPOINT, endpoint, &len) < 0)
                return zmq_negative_errno();
        t->endpoint = strdup(endpoint);
        if (!t->endpoint)
                return -ENOMEM;
        return socket_watch(t, t->router, on_router_io, on_router_defer, &t->router_io, &t->router_defer);
}

/* Bound before the ROUTER, in its context, so no connection is ever
 * handshaken without it. */
static int zap_setup(struct transport *t) {
        int r;

        t->zap = zmq_socket(t->ctx, ZMQ_REP);
        if (!t->zap)
                return zmq_negative_errno();
        r = sockopt_int(t->zap, ZMQ_LINGER, 0);
        if (r < 0)
                return r;
        if (zmq_bind(t->zap, ZAP_ENDPOINT) < 0)
                return zmq_negative_errno();
        return socket_watch(t, t->zap, on_zap_io, on_zap_defer, &t->zap_io, &t->zap_defer);
}

static void transport_freep(struct transport **t) {
        transport_free(*t);
}

int transport_new(sd_event *event, const struct transport_config *config, const uint8_t ed25519_sk[64],
                  transport_receive_fn receive, void *userdata, struct transport **ret) {
        _cleanup_(transport_freep) struct transport *t = NULL;
        uint8_t check[KEY_SIZE];
        int r;

        if (!event || !config || !config->bind || !ed25519_sk || !receive || !ret)
                return -EINVAL;
        if (config->max_message_size == 0 || config->max_message_size > (uint64_t) INT32_MAX ||
            !(config->rate_per_second >= 0) || (config->rate_per_second > 0 && config->rate_burst == 0) ||
            config->send_queue == 0)
                return -EINVAL;
        if (sodium_init() < 0)
                return -EIO;

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->event = sd_event_ref(event);
        t->insecure = config->insecure;
        t->max_message_size = config->max_message_size;
        t->rate_per_second = config->rate_per_second;
        t->rate_burst = config->rate_burst;
        t->send_queue = config->send_queue > INT32_MAX ? INT32_MAX : (int) config->send_queue;
        t->receive = receive;
        t->userdata = userdata;
        randombytes_buf(t->hash_key, sizeof(t->hash_key));

        /* The Curve key pair must be the one of the Ed25519 key peers know
         * us by, or every handshake would fail far from the cause. */
        memcpy(t->id, ed25519_sk + 32, KEY_SIZE);
        if (crypto_sign_ed25519_sk_to_curve25519(t->curve_sk, ed25519_sk) < 0 ||
            crypto_sign_ed25519_pk_to_curve25519(t->curve_pk, t->id) < 0 ||
            crypto_scalarmult_base(check, t->curve_sk) < 0 || sodium_memcmp(check, t->curve_pk, KEY_SIZE) != 0)
                return -EINVAL;

        t->ctx = zmq_ctx_new();
        if (!t->ctx)
                return zmq_negative_errno();
        /* zmq_ctx_term() must never wait for unsent messages. */
        (void) zmq_ctx_set(t->ctx, ZMQ_BLOCKY, 0);

        if (t->insecure)
                log_warning("network.insecure is set: peers are NOT authenticated and traffic is NOT encrypted. "
                            "Anyone can send as any node. Use this for debugging only, never on a real network.");
        else {
                r = zap_setup(t);
                if (r < 0)
                        return log_error_errno(r, "Failed to set up the ZAP handler: %m");
        }

        r = router_setup(t, config->bind);
        if (r < 0)
                return log_error_errno(r, "Failed to bind %s: %m", config->bind);

        *ret = TAKE_PTR(t);
        return 0;
}

struct transport *transport_free(struct transport *t) {
        if (!t)
                return NULL;

        sd_event_source_disable_unref(t->router_io);
        sd_event_source_disable_unref(t->router_defer);
        sd_event_source_disable_unref(t->zap_io);
        sd_event_source_disable_unref(t->zap_defer);

        /* All sockets closed with LINGER 0 first: only then does
         * zmq_ctx_term() return, at once. */
        table_clear(&t->peers, peer_free_entry);
        table_clear(&t->bans, ban_free_entry);
        socket_close(&t->router);
        socket_close(&t->zap);
        if (t->ctx)
                while (zmq_ctx_term(t->ctx) < 0 && zmq_errno() == EINTR)
                        ;

        sodium_memzero(t->curve_sk, sizeof(t->curve_sk));
        sd_event_unref(t->event);
        free(t->endpoint);
        free(t);
        return NULL;
}

const char *transport_endpoint(const struct transport *t) {
        return t ? t->endpoint : NULL;
}

/* ---- Sending ---- */

int transport_send(struct transport *t, const uint8_t to[WIRE_NODE_ID_SIZE], const char *endpoint,
                   const uint8_t *data, size_t size) {
        struct iovec iov = { .iov_base = (void *) data, .iov_len = size };

        if (!data && size > 0)
                return -EINVAL;
        return transport_sendv(t, to, endpoint, &iov, 1);
}

int transport_sendv(struct transport *t, const uint8_t to[WIRE_NODE_ID_SIZE], const char *endpoint,
                    const struct iovec *iov, size_t n_iov) {
        struct peer *p;
        zmq_msg_t msg;
        size_t size = 0, offset;
        int r;

        if (!t || !to || (!iov && n_iov > 0))
                return -EINVAL;
        for (size_t i = 0; i < n_iov; i++) {
                if (!iov[i].iov_base && iov[i].iov_len > 0)
                        return -EINVAL;
                size += iov[i].iov_len;
        }
        if (size > t->max_message_size)
                return -EMSGSIZE;

        p = peer_find(t, to);
        /* A peer that restarted on another port publishes a new endpoint:
         * follow it rather than keep knocking at the old one. */
        if (p && p->dealer && endpoint && (!p->dealer_endpoint || strcmp(p->dealer_endpoint, endpoint) != 0)) {
                if (!valid_endpoint(endpoint))
                        return -EINVAL;
                dealer_close(p);
        }
        if (!p || !p->dealer) {
                if (!endpoint)
                        return -ENOTCONN;
                if (!valid_endpoint(endpoint))
                        return -EINVAL;
                if (!p) {
                        uint8_t curve_pk[KEY_SIZE];

                        if (crypto_sign_ed25519_pk_to_curve25519(curve_pk, to) < 0)
                                return -EINVAL;
                        r = peer_add(t, to, curve_pk, &p);
                        if (r < 0)
                                return r;
                }
                r = peer_connect(t, p, endpoint);
                if (r < 0)
                        return r;
        }

        if (zmq_msg_init_size(&msg, CLAIM_SIZE + size) < 0)
                return -ENOMEM;
        memcpy(zmq_msg_data(&msg), t->id, CLAIM_SIZE);
        offset = CLAIM_SIZE;
        for (size_t i = 0; i < n_iov; i++) {
                if (iov[i].iov_len > 0)
                        memcpy((uint8_t *) zmq_msg_data(&msg) + offset, iov[i].iov_base, iov[i].iov_len);
                offset += iov[i].iov_len;
        }
        if (zmq_msg_send(&msg, p->dealer, ZMQ_DONTWAIT) < 0) {
                r = zmq_negative_errno();
                zmq_msg_close(&msg);
                if (r == -EAGAIN)
                        t->stats.dropped_queue_full++;
                return r;
        }
        /* A send can consume the ZMQ_FD edge that announced a message
         * arriving on the same socket: look again on the next iteration. */
        if (p->dealer_defer)
                (void) sd_event_source_set_enabled(p->dealer_defer, SD_EVENT_ONESHOT);
        p->used_usec = now_usec(t);
        t->stats.sent++;
        return 0;
}

int transport_set_read_replies(struct transport *t, bool on) {
        int r = 0;

        if (!t || t->read_replies == on)
                return 0;
        t->read_replies = on;
        for (size_t i = 0; i < t->peers.n_buckets; i++)
                for (struct entry *e = t->peers.buckets[i]; e; e = e->next) {
                        struct peer *p = (struct peer *) e;

                        if (!p->dealer)
                                continue;
                        if (!on)
                                dealer_unwatch(p);
                        else if (!p->dealer_io) {
                                int k = dealer_watch(p);
                                if (k < 0) {
                                        dealer_unwatch(p);
                                        r = k;
                                }
                        }
                }
        return r;
}

bool transport_can_reply(const struct transport *t, const uint8_t to[WIRE_NODE_ID_SIZE]) {
        const struct peer *p = t && to ? peer_find(t, to) : NULL;

        return p && p->rid_len > 0;
}

const char *transport_receiving_address(const struct transport *t) {
        return t ? t->receiving_address : NULL;
}

bool transport_receiving_reverse(const struct transport *t) {
        return t && t->receiving_reverse;
}

int transport_replyv(struct transport *t, const uint8_t to[WIRE_NODE_ID_SIZE], const struct iovec *iov,
                     size_t n_iov) {
        struct peer *p;
        zmq_msg_t msg;
        size_t size = 0, offset;
        int r;

        if (!t || !to || (!iov && n_iov > 0))
                return -EINVAL;
        for (size_t i = 0; i < n_iov; i++) {
                if (!iov[i].iov_base && iov[i].iov_len > 0)
                        return -EINVAL;
                size += iov[i].iov_len;
        }
        if (size > t->max_message_size)
                return -EMSGSIZE;
        p = peer_find(t, to);
        if (!p || p->rid_len == 0)
                return -ENOTCONN;

        if (zmq_msg_init_size(&msg, CLAIM_SIZE + size) < 0)
                return -ENOMEM;
        memcpy(zmq_msg_data(&msg), t->id, CLAIM_SIZE);
        offset = CLAIM_SIZE;
        for (size_t i = 0; i < n_iov; i++) {
                if (iov[i].iov_len > 0)
                        memcpy((uint8_t *) zmq_msg_data(&msg) + offset, iov[i].iov_base, iov[i].iov_len);
                offset += iov[i].iov_len;
        }
        /* ROUTER_MANDATORY: a connection that is gone fails here
         * (EHOSTUNREACH) instead of dropping silently. */
        if (zmq_send(t->router, p->rid, p->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
            zmq_msg_send(&msg, t->router, ZMQ_DONTWAIT) < 0) {
                r = zmq_negative_errno();
                zmq_msg_close(&msg);
                if (r == -EHOSTUNREACH)
                        p->rid_len = 0;
                else if (r == -EAGAIN)
                        t->stats.dropped_queue_full++;
                return r;
        }
        (void) sd_event_source_set_enabled(t->router_defer, SD_EVENT_ONESHOT);
        p->used_usec = now_usec(t);
        t->stats.sent++;
        return 0;
}

void transport_disconnect(struct transport *t, const uint8_t id[WIRE_NODE_ID_SIZE]) {
        struct peer *p;

        if (!t || !id)
                return;
        p = peer_find(t, id);
        if (p) {
                dealer_close(p);
                p->rid_len = 0;
        }
}

void transport_ban(struct transport *t, const uint8_t id[WIRE_NODE_ID_SIZE], bool banned) {
        uint8_t curve_pk[KEY_SIZE];
        struct entry *e;

        if (!t || !id || crypto_sign_ed25519_pk_to_curve25519(curve_pk, id) < 0)
                return;
        e = table_find(t, &t->bans, curve_pk);
        if (banned && !e) {
                e = calloc(1, sizeof(*e));
                if (!e) {
                        log_oom();
                        return;
                }
                memcpy(e->key, curve_pk, KEY_SIZE);
                if (table_add(t, &t->bans, e) < 0) {
                        free(e);
                        log_oom();
                }
        } else if (!banned && e) {
                table_remove(t, &t->bans, e);
                free(e);
        }
}

const struct transport_stats *transport_get_stats(const struct transport *t) {
        return &t->stats;
}

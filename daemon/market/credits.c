/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Credits on the network (credits.h): the glue between the book, the
 * dissemination, the ledger and the network's credits channel. */

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "credits.h"
#include "dissemination.h"
#include "identity.h"
#include "ledger.h"
#include "log.h"
#include "macro.h"
#include "membership.h"
#include "network.h"
#include "node-id.h"
#include "time-util.h"

struct credits {
        sd_event *event;
        const struct identity *identity;
        struct network *network;
        struct ledger *ledger;
        struct transfer_book *book;
        struct dissemination *dissemination;
        uint8_t (*issuers)[TRANSFER_KEY_SIZE];
        size_t n_issuers;
        struct transfer *in_flight;     /* ours, signed and stored, not delivered here yet; by seq */
        size_t n_in_flight;
        size_t n_staged;                /* the last of in_flight: in a ledger transaction not yet committed */
        sd_event_source *timer;
        uint64_t next_probe;
        struct transfer *deferred;      /* at start: delivered rows the book could not take yet */
        size_t n_deferred;
        bool loading;                   /* replaying the ledger: deliveries are stored already */
        bool double_spend;              /* testing.double_spend_to */
        uint8_t twin_payee[TRANSFER_KEY_SIZE];
};

static uint64_t wall_usec(void) {
        return now(CLOCK_REALTIME);
}

static void short_id(const uint8_t key[TRANSFER_KEY_SIZE], char out[NODE_ID_LEN + 1]) {
        node_id_from_public_key(key, out);
}

/* ---- Dissemination I/O ---- */

static uint64_t io_now(void *userdata) {
        return now(CLOCK_MONOTONIC);
}

static void io_send(void *userdata, const uint8_t to[TRANSFER_KEY_SIZE], const uint8_t *data, size_t size) {
        struct credits *c = userdata;
        int r = c->network ? network_send_credits(c->network, to, data, size) : -ENETDOWN;

        if (r < 0 && r != -EAGAIN) {
                char id[NODE_ID_LEN + 1];

                short_id(to, id);
                log_debug_errno(r, "credits: cannot send to %.*s: %m", NODE_ID_SHORT_LEN, id);
        }
}

static void in_flight_remove(struct credits *c, const struct transfer *t) {
        for (size_t i = 0; i < c->n_in_flight; i++)
                if (c->in_flight[i].seq == t->seq) {
                        transfer_clear(&c->in_flight[i]);
                        memmove(&c->in_flight[i], &c->in_flight[i + 1],
                                (c->n_in_flight - i - 1) * sizeof(*c->in_flight));
                        c->n_in_flight--;
                        return;
                }
}

static void io_delivered(void *userdata, const struct transfer *t, const uint8_t id[TRANSFER_ID_SIZE]) {
        struct credits *c = userdata;
        char payer[NODE_ID_LEN + 1], payee[NODE_ID_LEN + 1];
        int r;

        if (memcmp(t->payer, c->identity->public_key, TRANSFER_KEY_SIZE) == 0)
                in_flight_remove(c, t);
        short_id(t->payer, payer);
        short_id(t->payee, payee);
        log_debug("credits: delivered %.*s #%" PRIu64 " → %.*s, %" PRIu64 " µcredits.", NODE_ID_SHORT_LEN, payer,
                  t->seq, NODE_ID_SHORT_LEN, payee, t->amount);
        if (c->loading)
                return;
        /* The book has it now; if this write is lost (the disk), a restart
         * forgets it and the probes fetch it again. */
        r = ledger_transfer_delivered(c->ledger, t, wall_usec());
        if (r < 0 && r != -EALREADY)
                log_warning_errno(r, "credits: cannot record the delivery of %.*s #%" PRIu64 " in the ledger: %m",
                                  NODE_ID_SHORT_LEN, payer, t->seq);
}

static void io_refused(void *userdata, const struct transfer *t, int error, const char *reason) {
        struct credits *c = userdata;
        char payer[NODE_ID_LEN + 1];

        short_id(t->payer, payer);
        if (memcmp(t->payer, c->identity->public_key, TRANSFER_KEY_SIZE) == 0) {
                in_flight_remove(c, t);
                log_error("credits: our own transfer #%" PRIu64 " was refused by the book (%s): this node's "
                          "ledger disagrees with the swarm's, and it can pay no more.", t->seq, reason);
                return;
        }
        log_fields(LOG_NOTICE, &(struct log_fields) { .peer = payer },
                   "credits: transfer %.*s #%" PRIu64 " is refused for good: %s.", NODE_ID_SHORT_LEN, payer, t->seq,
                   reason);
}

static void io_fraud(void *userdata, const struct transfer *a, const struct transfer *b) {
        struct credits *c = userdata;
        char payer[NODE_ID_LEN + 1];
        int r;

        short_id(a->payer, payer);
        if (!c->loading) {
                r = ledger_fraud_proof_add(c->ledger, a, b, wall_usec());
                if (r < 0)
                        log_warning_errno(r, "credits: cannot keep the fraud proof against %.*s: %m",
                                          NODE_ID_SHORT_LEN, payer);
        }
        log_fields(LOG_WARNING, &(struct log_fields) { .peer = payer },
                   "credits: %.*s signed two transfers for its seq %" PRIu64 " (a double spend); it is banned.",
                   NODE_ID_SHORT_LEN, payer, a->seq);
        if (c->network && memcmp(a->payer, c->identity->public_key, TRANSFER_KEY_SIZE) != 0)
                network_ban(c->network, a->payer, "it signed two transfers for one seq (a fraud proof)");
}

static void io_debug(void *userdata, const uint8_t *peer, int error, const char *what) {
        char id[NODE_ID_LEN + 1];

        if (!peer) {
                log_debug_errno(error, "credits: %s: %m", what);
                return;
        }
        short_id(peer, id);
        log_debug_errno(error, "credits: %s (peer %.*s): %m", what, NODE_ID_SHORT_LEN, id);
}

/* ---- The network ---- */

static void on_message(struct network *n, const uint8_t from[WIRE_NODE_ID_SIZE], const uint8_t *data, size_t size,
                       void *userdata) {
        struct credits *c = userdata;

        (void) dissemination_receive(c->dissemination, from, data, size);
}

/* The members we can reach: ECHO and READY go to them. */
static int refresh_peers(struct credits *c, uint8_t (**ret)[TRANSFER_KEY_SIZE], size_t *ret_n) {
        struct membership *m = c->network ? network_membership(c->network) : NULL;
        size_t count = m ? membership_count(m) : 0, k = 0;
        _cleanup_free_ uint8_t (*ids)[TRANSFER_KEY_SIZE] = calloc(count ? count : 1, TRANSFER_KEY_SIZE);
        int r;

        if (!ids)
                return -ENOMEM;
        for (size_t i = 0; i < count; i++) {
                struct member_info info;

                if (membership_get(m, i, &info) < 0 || info.self ||
                    (info.state != MEMBER_ALIVE && info.state != MEMBER_SUSPECT))
                        continue;
                memcpy(ids[k++], info.id, TRANSFER_KEY_SIZE);
        }
        r = dissemination_set_peers(c->dissemination, (const uint8_t (*)[TRANSFER_KEY_SIZE]) ids, k);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(ids);
        *ret_n = k;
        return 0;
}

/* Asks one random peer what follows the last transfer here of every
 * issuer and every peer. */
static void probe(struct credits *c, const uint8_t (*peers)[TRANSFER_KEY_SIZE], size_t n_peers) {
        _cleanup_free_ uint8_t (*payers)[TRANSFER_KEY_SIZE] = NULL;
        size_t n = 0, to;

        if (n_peers == 0)
                return;
        payers = calloc(c->n_issuers + n_peers + 1, TRANSFER_KEY_SIZE);
        if (!payers)
                return;
        memcpy(payers[n++], c->identity->public_key, TRANSFER_KEY_SIZE);
        for (size_t i = 0; i < c->n_issuers; i++)
                memcpy(payers[n++], c->issuers[i], TRANSFER_KEY_SIZE);
        for (size_t i = 0; i < n_peers; i++)
                memcpy(payers[n++], peers[i], TRANSFER_KEY_SIZE);
        to = randombytes_uniform((uint32_t) n_peers);
        /* At most DISSEMINATION_WANT_MAX payers a probe: start somewhere
         * random, so every one gets its turn. */
        if (n > DISSEMINATION_WANT_MAX) {
                size_t start = randombytes_uniform((uint32_t) (n - DISSEMINATION_WANT_MAX + 1));

                dissemination_probe(c->dissemination, peers[to], (const uint8_t (*)[TRANSFER_KEY_SIZE]) payers + start,
                                    DISSEMINATION_WANT_MAX);
                return;
        }
        dissemination_probe(c->dissemination, peers[to], (const uint8_t (*)[TRANSFER_KEY_SIZE]) payers, n);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct credits *c = userdata;
        _cleanup_free_ uint8_t (*peers)[TRANSFER_KEY_SIZE] = NULL;
        size_t n_peers = 0;

        if (refresh_peers(c, &peers, &n_peers) < 0)
                log_debug("credits: cannot refresh the peers (out of memory).");
        if (dissemination_next_deadline(c->dissemination) <= usec)
                dissemination_tick(c->dissemination);
        if (usec >= c->next_probe) {
                probe(c, (const uint8_t (*)[TRANSFER_KEY_SIZE]) peers, n_peers);
                c->next_probe = usec + CREDITS_PROBE_USEC;
        }
        (void) sd_event_source_set_time(s, usec + CREDITS_TICK_USEC);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

/* ---- Start: the ledger replayed ---- */

static int load_transfer(const struct transfer *t, bool delivered, void *userdata) {
        struct credits *c = userdata;
        const char *reason;
        int r;

        if (!delivered) {
                struct transfer *f;

                /* Ours, not seen delivered: in flight again. */
                f = reallocarray(c->in_flight, c->n_in_flight + 1, sizeof(*f));
                if (!f)
                        return -ENOMEM;
                c->in_flight = f;
                r = transfer_copy(t, &c->in_flight[c->n_in_flight]);
                if (r < 0)
                        return r;
                c->n_in_flight++;
                return 0;
        }
        r = transfer_book_deliver(c->book, t, NULL, &reason);
        if (r == -EAGAIN) {
                /* A delivery whose row was written before one it depends
                 * on (a write lost, then fetched again): after the rest. */
                struct transfer *f = reallocarray(c->deferred, c->n_deferred + 1, sizeof(*f));

                if (!f)
                        return -ENOMEM;
                c->deferred = f;
                r = transfer_copy(t, &c->deferred[c->n_deferred]);
                if (r < 0)
                        return r;
                c->n_deferred++;
                return 0;
        }
        if (r < 0 && r != -EALREADY) {
                char payer[NODE_ID_LEN + 1];

                short_id(t->payer, payer);
                /* In the order this node delivered them, each was
                 * deliverable: unless the issuers changed since. */
                log_warning("credits: the ledger's transfer %.*s #%" PRIu64 " does not replay (%s); skipped (were "
                            "credits.issuers changed?).", NODE_ID_SHORT_LEN, payer, t->seq, reason);
        }
        return 0;
}

/* The deferred rows, until none more goes in; what is left is logged and
 * left to the probes. */
static void load_deferred(struct credits *c) {
        bool moved = true;

        while (moved) {
                moved = false;
                for (size_t i = 0; i < c->n_deferred;) {
                        if (transfer_book_deliver(c->book, &c->deferred[i], NULL, NULL) == -EAGAIN) {
                                i++;
                                continue;
                        }
                        transfer_clear(&c->deferred[i]);
                        c->deferred[i] = c->deferred[--c->n_deferred];
                        moved = true;
                }
        }
        if (c->n_deferred > 0)
                log_warning("credits: %zu transfers of the ledger wait for transfers it lacks; the swarm is asked "
                            "for them.", c->n_deferred);
        for (size_t i = 0; i < c->n_deferred; i++)
                transfer_clear(&c->deferred[i]);
        free(c->deferred);
        c->deferred = NULL;
        c->n_deferred = 0;
}

static int load_fraud_proof(const struct transfer *a, const struct transfer *b, void *userdata) {
        struct credits *c = userdata;

        (void) dissemination_add_fraud_proof(c->dissemination, a, b);
        return 0;
}

/* ---- Life cycle ---- */

int credits_new(sd_event *event, const struct identity *identity, struct network *network, struct ledger *ledger,
                const uint8_t (*issuers)[TRANSFER_KEY_SIZE], size_t n_issuers, struct credits **ret) {
        struct dissemination_config dc;
        struct dissemination_io io = {
                .now_usec = io_now,
                .send = io_send,
                .delivered = io_delivered,
                .refused = io_refused,
                .fraud = io_fraud,
                .debug = io_debug,
        };
        struct credits *c;
        struct transfer_account self;
        int r;

        if (!event || !identity || !ledger || !ret || (n_issuers > 0 && !issuers))
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(event);
        c->identity = identity;
        c->network = network;
        c->ledger = ledger;
        if (n_issuers > 0) {
                c->issuers = calloc(n_issuers, TRANSFER_KEY_SIZE);
                if (!c->issuers) {
                        r = log_error_errno(-ENOMEM, "Out of memory.");
                        goto fail;
                }
                memcpy(c->issuers, issuers, n_issuers * TRANSFER_KEY_SIZE);
                c->n_issuers = n_issuers;
        }
        c->book = transfer_book_new((const uint8_t (*)[TRANSFER_KEY_SIZE]) c->issuers, c->n_issuers);
        if (!c->book) {
                r = log_error_errno(-ENOMEM, "Out of memory.");
                goto fail;
        }
        dissemination_config_default(&dc);
        io.userdata = c;
        r = dissemination_new(&dc, &io, identity->public_key, c->book, &c->dissemination);
        if (r < 0) {
                log_error_errno(r, "Cannot set up the dissemination of transfers: %m");
                goto fail;
        }

        c->loading = true;
        r = ledger_transfer_load(ledger, load_transfer, c);
        if (r >= 0)
                load_deferred(c);
        if (r >= 0)
                r = ledger_fraud_proof_load(ledger, load_fraud_proof, c);
        c->loading = false;
        if (r < 0) {
                log_error_errno(r, "Cannot read the transfers from the ledger: %m");
                goto fail;
        }

        if (network)
                network_set_credits_handler(network, on_message, c);
        r = sd_event_add_time_relative(event, &c->timer, CLOCK_MONOTONIC, CREDITS_TICK_USEC, 0, on_timer, c);
        if (r < 0) {
                log_error_errno(r, "Cannot add the credits timer: %m");
                goto fail;
        }
        c->next_probe = now(CLOCK_MONOTONIC) + CREDITS_TICK_USEC;

        /* What we signed and never saw delivered goes out again (after the
         * first peers are known: the timer's first tick sends the
         * retries). */
        for (size_t i = 0; i < c->n_in_flight;) {
                size_t before = c->n_in_flight;

                r = dissemination_broadcast(c->dissemination, &c->in_flight[i]);
                if (r < 0 && r != -EALREADY)
                        log_warning_errno(r, "credits: cannot broadcast our transfer #%" PRIu64 " again: %m",
                                          c->in_flight[i].seq);
                /* Delivered at once (this node holds more than 2/3 of the
                 * supply): it left in_flight. */
                if (c->n_in_flight == before)
                        i++;
        }

        transfer_book_account(c->book, identity->public_key, &self);
        log_info("Credits: %zu transfers in the book, supply %" PRIu64 " µcredits; this node holds %" PRIu64
                 " (+%" PRIu64 " pending), %zu of its transfers in flight; %zu issuer%s accepted%s.",
                 transfer_book_n_delivered(c->book), transfer_book_supply(c->book), self.balance, self.pending,
                 c->n_in_flight, c->n_issuers, c->n_issuers == 1 ? "" : "s",
                 self.issuer ? " (this node is one)" : c->n_issuers == 0 ? " (credits.issuers is empty: no credits "
                                                                          "can exist here)" : "");
        *ret = c;
        return 0;
fail:
        credits_free(c);
        return r;
}

struct credits *credits_free(struct credits *c) {
        if (!c)
                return NULL;
        if (c->network)
                network_set_credits_handler(c->network, NULL, NULL);
        sd_event_source_disable_unref(c->timer);
        dissemination_free(c->dissemination);
        transfer_book_free(c->book);
        for (size_t i = 0; i < c->n_in_flight; i++)
                transfer_clear(&c->in_flight[i]);
        free(c->in_flight);
        for (size_t i = 0; i < c->n_deferred; i++)
                transfer_clear(&c->deferred[i]);
        free(c->deferred);
        free(c->issuers);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}

/* ---- Paying ---- */

static bool named_in_flight(const struct credits *c, const uint8_t id[TRANSFER_ID_SIZE]) {
        for (size_t i = 0; i < c->n_in_flight; i++)
                for (size_t k = 0; k < c->in_flight[i].n_deps; k++)
                        if (memcmp(c->in_flight[i].deps[k], id, TRANSFER_ID_SIZE) == 0)
                                return true;
        return false;
}

/* What our next transfer may spend: the balance, plus what our transfers in
 * flight name, less what they spend; then what is pending to us that none
 * of them names (at most TRANSFER_MAX_DEPS of it), which it names: into
 * *ret_deps (malloc'd, NULL when none). */
static int next_funds(struct credits *c, uint64_t *ret_funds, uint8_t (**ret_deps)[TRANSFER_ID_SIZE],
                      size_t *ret_n_deps) {
        _cleanup_free_ uint8_t (*pending)[TRANSFER_ID_SIZE] = NULL, (*deps)[TRANSFER_ID_SIZE] = NULL;
        const uint8_t *self = c->identity->public_key;
        struct transfer_account a;
        unsigned __int128 funds;
        size_t n, n_deps = 0;

        transfer_book_account(c->book, self, &a);
        funds = a.balance;
        for (size_t i = 0; i < c->n_in_flight; i++) {
                for (size_t k = 0; k < c->in_flight[i].n_deps; k++) {
                        const struct transfer *d = transfer_book_get(c->book, c->in_flight[i].deps[k]);

                        if (d)
                                funds += d->amount;
                }
                funds -= funds < c->in_flight[i].amount ? funds : c->in_flight[i].amount;
        }
        n = transfer_book_pending(c->book, self, NULL, 0);
        if (n > 0) {
                pending = calloc(n, TRANSFER_ID_SIZE);
                deps = calloc(n < TRANSFER_MAX_DEPS ? n : TRANSFER_MAX_DEPS, TRANSFER_ID_SIZE);
                if (!pending || !deps)
                        return -ENOMEM;
                (void) transfer_book_pending(c->book, self, pending, n);
        }
        for (size_t i = 0; i < n && n_deps < TRANSFER_MAX_DEPS; i++) {
                if (named_in_flight(c, pending[i]))
                        continue;
                memcpy(deps[n_deps++], pending[i], TRANSFER_ID_SIZE);
                funds += transfer_book_get(c->book, pending[i])->amount;
        }
        *ret_funds = funds > UINT64_MAX ? UINT64_MAX : (uint64_t) funds;
        *ret_deps = n_deps > 0 ? TAKE_PTR(deps) : NULL;
        *ret_n_deps = n_deps;
        return 0;
}

uint64_t credits_spendable(struct credits *c) {
        _cleanup_free_ uint8_t (*deps)[TRANSFER_ID_SIZE] = NULL;
        struct transfer_account a;
        uint64_t funds;
        size_t n;

        if (!c || dissemination_is_banned(c->dissemination, c->identity->public_key))
                return 0;
        transfer_book_account(c->book, c->identity->public_key, &a);
        if (a.issuer)
                return UINT64_MAX;
        return next_funds(c, &funds, &deps, &n) < 0 ? 0 : funds;
}

int credits_sign(struct credits *c, const uint8_t payee[TRANSFER_KEY_SIZE], uint64_t amount, uint64_t seq,
                 struct transfer *ret) {
        _cleanup_(transfer_clear) struct transfer t = {};
        const uint8_t *self;
        struct transfer_account a;
        uint64_t funds;
        int r;

        if (!c || !payee || !ret || amount == 0 || memcmp(payee, c->identity->public_key, TRANSFER_KEY_SIZE) == 0)
                return -EINVAL;
        self = c->identity->public_key;
        if (dissemination_is_banned(c->dissemination, self))
                return -EPERM;
        transfer_book_account(c->book, self, &a);

        t = (struct transfer) { .amount = amount };
        memcpy(t.payer, self, TRANSFER_KEY_SIZE);
        memcpy(t.payee, payee, TRANSFER_KEY_SIZE);
        if (!a.issuer) {
                r = next_funds(c, &funds, &t.deps, &t.n_deps);
                if (r < 0)
                        return r;
                /* Never beyond what we hold. */
                if (funds < amount)
                        return -EDQUOT;
        }
        /* After every one of ours: delivered, in flight or staged. */
        t.seq = seq > a.next_seq ? seq : a.next_seq;
        for (size_t i = 0; i < c->n_in_flight; i++)
                if (c->in_flight[i].seq >= t.seq)
                        t.seq = c->in_flight[i].seq + 1;
        r = transfer_sign(&t, c->identity->secret_key);
        if (r < 0)
                return r;
        *ret = t;
        t = (struct transfer) {};
        return 0;
}

int credits_stage(struct credits *c, struct transfer *t) {
        struct transfer *f;

        if (!c || !t)
                return -EINVAL;
        f = reallocarray(c->in_flight, c->n_in_flight + 1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        c->in_flight = f;
        c->in_flight[c->n_in_flight++] = *t;
        *t = (struct transfer) {};
        c->n_staged++;
        return 0;
}

/* To every member known now, not as of the last tick. */
static void broadcast_ours(struct credits *c, const struct transfer *t) {
        _cleanup_free_ uint8_t (*peers)[TRANSFER_KEY_SIZE] = NULL;
        size_t n_peers;
        int r;

        (void) refresh_peers(c, &peers, &n_peers);
        r = dissemination_broadcast(c->dissemination, t);
        if (r < 0 && r != -EALREADY)
                log_warning_errno(r, "credits: cannot broadcast our transfer #%" PRIu64 " (it is stored, and goes "
                                  "out again at the next start): %m", t->seq);
}

void credits_staged_commit(struct credits *c) {
        size_t first;

        if (!c)
                return;
        first = c->n_in_flight - c->n_staged;
        c->n_staged = 0;
        /* By index: a delivery during the broadcast (a node holding every
         * credit delivers its own at once) takes it out of in_flight. */
        for (size_t i = first; i < c->n_in_flight;) {
                size_t before = c->n_in_flight;

                broadcast_ours(c, &c->in_flight[i]);
                if (c->n_in_flight == before)
                        i++;
        }
}

void credits_staged_abort(struct credits *c) {
        if (!c)
                return;
        for (; c->n_staged > 0; c->n_staged--)
                transfer_clear(&c->in_flight[--c->n_in_flight]);
}

void credits_set_double_spend(struct credits *c, const uint8_t twin_payee[TRANSFER_KEY_SIZE]) {
        c->double_spend = twin_payee != NULL;
        if (twin_payee) {
                memcpy(c->twin_payee, twin_payee, TRANSFER_KEY_SIZE);
                log_warning("testing.double_spend_to is on: this node signs a second transfer for the seq of each "
                            "payment it makes with `swarmctl pay` (a double spender, for tests); honest nodes will "
                            "ban it.");
        }
}

/* The double spender's twin of t (same seq, amount and dependencies, to
 * the twin payee), ECHOed to every other peer, before t's broadcast. */
static void send_twin(struct credits *c, const struct transfer *t) {
        _cleanup_(transfer_clear) struct transfer twin = {};
        _cleanup_free_ uint8_t (*peers)[TRANSFER_KEY_SIZE] = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        size_t n_peers = 0, size;

        if (memcmp(t->payee, c->twin_payee, TRANSFER_KEY_SIZE) == 0 || transfer_copy(t, &twin) < 0)
                return;
        memcpy(twin.payee, c->twin_payee, TRANSFER_KEY_SIZE);
        if (transfer_sign(&twin, c->identity->secret_key) < 0 ||
            dissemination_encode_transfer(DISSEMINATION_ECHO, &twin, &data, &size) < 0 ||
            refresh_peers(c, &peers, &n_peers) < 0)
                return;
        for (size_t i = 1; i < n_peers; i += 2)
                io_send(c, peers[i], data, size);
        log_warning("testing.double_spend_to: our transfer #%" PRIu64 " has a twin, sent to %zu of %zu peers.",
                    t->seq, n_peers / 2, n_peers);
}

int credits_pay(struct credits *c, const uint8_t payee[TRANSFER_KEY_SIZE], uint64_t amount,
                uint8_t ret_id[TRANSFER_ID_SIZE]) {
        _cleanup_(transfer_clear) struct transfer t = {};
        uint64_t seq;
        int r;

        if (!c || !payee || amount == 0)
                return -EINVAL;
        r = ledger_transfer_next_seq(c->ledger, &seq);
        if (r < 0)
                return r;
        r = credits_sign(c, payee, amount, seq, &t);
        if (r < 0)
                return r;
        r = ledger_transfer_signed(c->ledger, &t, wall_usec());
        if (r < 0)
                return r;
        if (ret_id)
                transfer_id(&t, ret_id);
        if (c->double_spend)
                send_twin(c, &t);
        r = credits_stage(c, &t);
        if (r < 0)
                return r;       /* stored: the next start sends it */
        credits_staged_commit(c);
        return 0;
}

void credits_get_view(struct credits *c, struct credits_view *ret) {
        struct transfer_account a;
        uint64_t in_flight = 0;

        transfer_book_account(c->book, c->identity->public_key, &a);
        for (size_t i = 0; i < c->n_in_flight; i++)
                in_flight += c->in_flight[i].amount;
        *ret = (struct credits_view) {
                .balance = a.balance,
                .pending = a.pending,
                .in_flight = in_flight,
                .supply = transfer_book_supply(c->book),
                .next_seq = a.next_seq + c->n_in_flight,
                .delivered = transfer_book_n_delivered(c->book),
                .fraud_proofs = dissemination_get_stats(c->dissemination)->fraud_proofs,
                .issuer = a.issuer,
        };
}

const struct transfer_book *credits_book(struct credits *c) {
        return c->book;
}

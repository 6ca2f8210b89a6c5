/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Byzantine reliable broadcast of transfers, weighted by credits held
 * (dissemination.h).  Slots live in a flat array: there are at most
 * max_slots of them, and every lookup is by (payer, seq) or by a
 * candidate's id.  A delivered slot leaves the array, since the book
 * remembers it; an undecided or refused one stays, so that this node never
 * echoes or readies a second transfer for a slot. */

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "dissemination.h"
#include "macro.h"
#include "pb-util.h"
#include "swarm.pb-c.h"
#include "wire.h"

/* Over any honest message's needs: two transfers and 128 small entries. */
#define DECODE_BUDGET(size) (4u * (size_t) (size) + 64u * 1024u)

/* The weight of a voter list, summed once per voter while the book stays
 * as it was (weights change only when it delivers). */
struct weight_sum {
        unsigned __int128 w;
        size_t n;                       /* voters summed */
        size_t version;                 /* the book's n_delivered + 1; 0: never summed */
};

struct candidate {
        uint8_t id[TRANSFER_ID_SIZE];
        struct transfer t;
        uint8_t (*echoes)[TRANSFER_KEY_SIZE];   /* who echoed it, self included */
        size_t n_echoes;
        uint8_t (*readies)[TRANSFER_KEY_SIZE];
        size_t n_readies;
        struct weight_sum echo_weight, ready_weight;
};

/* Who said what in a slot: the index of the candidate each sender echoed
 * and readied, -1: none.  Open addressing over the senders' keys, so that
 * a message costs O(1), not a scan of the N voters before it. */
struct voter {
        uint8_t key[TRANSFER_KEY_SIZE];
        int32_t echoed, readied;
};

struct slot {
        uint8_t payer[TRANSFER_KEY_SIZE];
        uint64_t seq;
        struct candidate *cands;
        size_t n_cands;
        int echoed;                     /* index of the candidate we echoed, -1: none */
        int readied;                    /* … we sent READY for */
        int decided;                    /* … whose READYs reached the quorum */
        int refused;                    /* the book's final error, 0: not refused */
        unsigned retries;
        uint64_t next_retry;
        bool unfunded;                  /* its payer held no credits here when it came */
        struct voter *voters;           /* n_voter_slots: 0 or a power of two */
        size_t n_voters, n_voter_slots;
};

struct dissemination {
        struct dissemination_config config;
        struct dissemination_io io;
        uint8_t self[TRANSFER_KEY_SIZE];
        struct transfer_book *book;
        uint8_t (*peers)[TRANSFER_KEY_SIZE];
        size_t n_peers;
        uint8_t (*banned)[TRANSFER_KEY_SIZE];
        size_t n_banned;
        struct slot **slots;
        size_t n_slots, n_unfunded;
        struct dissemination_stats stats;
        uint8_t hash_key[crypto_shorthash_KEYBYTES];    /* voter tables: random, so no sender picks its bucket */
};

void dissemination_config_default(struct dissemination_config *c) {
        *c = (struct dissemination_config) {
                .retry_interval_usec = 1000 * 1000,
                .max_retries = 8,
                .max_slots = 4096,
                .seq_window = 64,
                .max_unfunded = 256,
                .max_candidates = 4,
                .max_voters = 1024,
        };
}

const char *dissemination_state_to_string(enum dissemination_state s) {
        switch (s) {
        case DISSEMINATION_UNKNOWN:
                return "unknown";
        case DISSEMINATION_IN_FLIGHT:
                return "in flight";
        case DISSEMINATION_DECIDED:
                return "decided, waiting for earlier transfers";
        case DISSEMINATION_REFUSED:
                return "refused";
        case DISSEMINATION_DELIVERED:
                return "delivered";
        }
        return "invalid";
}

static void debug(struct dissemination *d, const uint8_t *peer, int error, const char *what) {
        if (d->io.debug)
                d->io.debug(d->io.userdata, peer, error, what);
}

static bool key_in(const uint8_t (*keys)[TRANSFER_KEY_SIZE], size_t n, const uint8_t *key) {
        for (size_t i = 0; i < n; i++)
                if (memcmp(keys[i], key, TRANSFER_KEY_SIZE) == 0)
                        return true;
        return false;
}

static int key_add(uint8_t (**keys)[TRANSFER_KEY_SIZE], size_t *n, const uint8_t *key) {
        uint8_t (*k)[TRANSFER_KEY_SIZE];

        if (key_in((const uint8_t (*)[TRANSFER_KEY_SIZE]) *keys, *n, key))
                return 0;
        k = reallocarray(*keys, *n + 1, TRANSFER_KEY_SIZE);
        if (!k)
                return -ENOMEM;
        memcpy(k[*n], key, TRANSFER_KEY_SIZE);
        *keys = k;
        (*n)++;
        return 1;
}

bool dissemination_is_banned(const struct dissemination *d, const uint8_t account[TRANSFER_KEY_SIZE]) {
        return key_in((const uint8_t (*)[TRANSFER_KEY_SIZE]) d->banned, d->n_banned, account);
}

/* ---- Slots ---- */

static void candidate_clear(struct candidate *c) {
        transfer_clear(&c->t);
        free(c->echoes);
        free(c->readies);
}

static void slot_free(struct slot *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n_cands; i++)
                candidate_clear(&s->cands[i]);
        free(s->cands);
        free(s->voters);
        free(s);
}

static struct slot *slot_find(const struct dissemination *d, const uint8_t payer[TRANSFER_KEY_SIZE], uint64_t seq) {
        for (size_t i = 0; i < d->n_slots; i++)
                if (d->slots[i]->seq == seq && memcmp(d->slots[i]->payer, payer, TRANSFER_KEY_SIZE) == 0)
                        return d->slots[i];
        return NULL;
}

static void slot_remove(struct dissemination *d, struct slot *s) {
        for (size_t i = 0; i < d->n_slots; i++)
                if (d->slots[i] == s) {
                        d->slots[i] = d->slots[--d->n_slots];
                        break;
                }
        if (s->unfunded)
                d->n_unfunded--;
        slot_free(s);
}

static int candidate_find(const struct slot *s, const uint8_t id[TRANSFER_ID_SIZE]) {
        for (size_t i = 0; i < s->n_cands; i++)
                if (memcmp(s->cands[i].id, id, TRANSFER_ID_SIZE) == 0)
                        return (int) i;
        return -1;
}

static size_t voter_hash(const struct dissemination *d, const uint8_t *key) {
        uint8_t h[crypto_shorthash_BYTES];
        uint64_t v;

        crypto_shorthash(h, key, TRANSFER_KEY_SIZE, d->hash_key);
        memcpy(&v, h, sizeof(v));
        return (size_t) v;
}

static struct voter *voter_get(const struct dissemination *d, const struct slot *s, const uint8_t *key) {
        if (s->n_voter_slots == 0)
                return NULL;
        for (size_t i = voter_hash(d, key) & (s->n_voter_slots - 1);; i = (i + 1) & (s->n_voter_slots - 1)) {
                struct voter *v = &s->voters[i];

                if (v->echoed == INT32_MIN)
                        return NULL;    /* an empty slot */
                if (memcmp(v->key, key, TRANSFER_KEY_SIZE) == 0)
                        return v;
        }
}

static void voter_place(const struct dissemination *d, struct voter *table, size_t n_slots, const struct voter *v) {
        size_t i = voter_hash(d, v->key) & (n_slots - 1);

        while (table[i].echoed != INT32_MIN)
                i = (i + 1) & (n_slots - 1);
        table[i] = *v;
}

/* key's entry in s, added (having said nothing) when new; NULL on -ENOMEM. */
static struct voter *voter_put(const struct dissemination *d, struct slot *s, const uint8_t *key) {
        struct voter *v = voter_get(d, s, key), nv;

        if (v)
                return v;
        if (2 * (s->n_voters + 1) > s->n_voter_slots) {
                size_t n = s->n_voter_slots ? 2 * s->n_voter_slots : 16;
                struct voter *table = reallocarray(NULL, n, sizeof(*table));

                if (!table)
                        return NULL;
                for (size_t i = 0; i < n; i++)
                        table[i].echoed = INT32_MIN;
                for (size_t i = 0; i < s->n_voter_slots; i++)
                        if (s->voters[i].echoed != INT32_MIN)
                                voter_place(d, table, n, &s->voters[i]);
                free(s->voters);
                s->voters = table;
                s->n_voter_slots = n;
        }
        nv = (struct voter) { .echoed = -1, .readied = -1 };
        memcpy(nv.key, key, TRANSFER_KEY_SIZE);
        voter_place(d, s->voters, s->n_voter_slots, &nv);
        s->n_voters++;
        return voter_get(d, s, key);
}

/* Whether from's ECHO (READY) for this slot is counted already: a peer's
 * first word counts, once per slot. */
static bool already_said(const struct dissemination *d, const struct slot *s, const uint8_t *from, bool ready) {
        const struct voter *v = voter_get(d, s, from);

        return v && (ready ? v->readied : v->echoed) >= 0;
}

/* Records key's ECHO (READY) for candidate i of s.  1 when counted, 0 when
 * key had said one for this slot already, -ENOMEM. */
static int vote(struct dissemination *d, struct slot *s, size_t i, const uint8_t *key, bool ready) {
        struct candidate *c = &s->cands[i];
        uint8_t (**list)[TRANSFER_KEY_SIZE] = ready ? &c->readies : &c->echoes;
        size_t *n = ready ? &c->n_readies : &c->n_echoes;
        uint8_t (*k)[TRANSFER_KEY_SIZE];
        struct voter *v;

        v = voter_put(d, s, key);
        if (!v)
                return -ENOMEM;
        if ((ready ? v->readied : v->echoed) >= 0)
                return 0;
        k = reallocarray(*list, *n + 1, TRANSFER_KEY_SIZE);
        if (!k)
                return -ENOMEM;
        memcpy(k[*n], key, TRANSFER_KEY_SIZE);
        *list = k;
        (*n)++;
        if (ready)
                v->readied = (int32_t) i;
        else
                v->echoed = (int32_t) i;
        return 1;
}

/* ---- Weights ---- */

/* Credits held: what a node could lose, so what its word weighs. */
static uint64_t weight(const struct dissemination *d, const uint8_t *key) {
        struct transfer_account a;

        transfer_book_account(d->book, key, &a);
        return a.balance + a.pending;   /* both within the supply: no wrap */
}

/* The voters' lists only grow, and a voter's weight changes only when the
 * book delivers: a message adds one voter's weight, not all N of them. */
static unsigned __int128 weight_of(const struct dissemination *d, struct weight_sum *sum,
                                   const uint8_t (*keys)[TRANSFER_KEY_SIZE], size_t n) {
        size_t version = transfer_book_n_delivered(d->book) + 1;

        if (sum->version != version || sum->n > n)
                *sum = (struct weight_sum) { .version = version };
        for (; sum->n < n; sum->n++)
                sum->w += weight(d, keys[sum->n]);
        return sum->w;
}

static bool payer_is_issuer(const struct dissemination *d, const uint8_t payer[TRANSFER_KEY_SIZE]) {
        struct transfer_account a;

        transfer_book_account(d->book, payer, &a);
        return a.issuer;
}

/* While nothing circulates, an issuer's own READY stands for the quorum. */
static bool bootstrap_ready(const struct dissemination *d, const struct slot *s, size_t i) {
        const struct voter *v;

        if (transfer_book_supply(d->book) != 0 || !payer_is_issuer(d, s->payer))
                return false;
        v = voter_get(d, s, s->payer);
        return v && v->readied == (int32_t) i;
}

/* More than 2W/3 of the READYs for candidate i: decided. */
static bool ready_quorum(const struct dissemination *d, struct slot *s, size_t i) {
        unsigned __int128 total = transfer_book_supply(d->book);
        struct candidate *c = &s->cands[i];

        if (total == 0)
                return bootstrap_ready(d, s, i);
        return 3 * weight_of(d, &c->ready_weight, (const uint8_t (*)[TRANSFER_KEY_SIZE]) c->readies, c->n_readies) >
               2 * total;
}

/* More than 2W/3 of the ECHOs, or more than W/3 of the READYs: send ours. */
static bool ready_due(const struct dissemination *d, struct slot *s, size_t i) {
        unsigned __int128 total = transfer_book_supply(d->book);
        struct candidate *c = &s->cands[i];

        if (total == 0)
                return bootstrap_ready(d, s, i);
        return 3 * weight_of(d, &c->echo_weight, (const uint8_t (*)[TRANSFER_KEY_SIZE]) c->echoes, c->n_echoes) >
                       2 * total ||
               3 * weight_of(d, &c->ready_weight, (const uint8_t (*)[TRANSFER_KEY_SIZE]) c->readies, c->n_readies) >
                       total;
}

/* ---- Sending ---- */

static void send_raw(struct dissemination *d, const uint8_t to[TRANSFER_KEY_SIZE], const uint8_t *data,
                     size_t size) {
        d->stats.sent_messages++;
        d->stats.sent_bytes += size;
        d->io.send(d->io.userdata, to, data, size);
}

static int encode_message(Swarm__CreditMessage *m, uint8_t **ret, size_t *ret_size) {
        m->version = DISSEMINATION_VERSION;
        return pb_pack_alloc(&m->base, DISSEMINATION_MESSAGE_MAX, ret, ret_size);
}

int dissemination_encode_transfer(enum dissemination_kind kind, const struct transfer *t, uint8_t **ret,
                                  size_t *ret_size) {
        _cleanup_free_ uint8_t *body = NULL;
        Swarm__CreditMessage m = SWARM__CREDIT_MESSAGE__INIT;
        size_t n;
        int r;

        if (!t || !ret || !ret_size || (kind != DISSEMINATION_ECHO && kind != DISSEMINATION_READY))
                return -EINVAL;
        r = transfer_encode(t, &body, &n);
        if (r < 0)
                return r == -EBADMSG ? -EINVAL : r;
        if (kind == DISSEMINATION_ECHO) {
                m.body_case = SWARM__CREDIT_MESSAGE__BODY_ECHO;
                m.echo = (ProtobufCBinaryData) { .len = n, .data = body };
        } else {
                m.body_case = SWARM__CREDIT_MESSAGE__BODY_READY;
                m.ready = (ProtobufCBinaryData) { .len = n, .data = body };
        }
        return encode_message(&m, ret, ret_size);
}

int dissemination_encode_fraud(const struct transfer *a, const struct transfer *b, uint8_t **ret,
                               size_t *ret_size) {
        _cleanup_free_ uint8_t *ba = NULL, *bb = NULL;
        Swarm__CreditMessage m = SWARM__CREDIT_MESSAGE__INIT;
        Swarm__FraudProof f = SWARM__FRAUD_PROOF__INIT;
        size_t na, nb;
        int r;

        if (!a || !b || !ret || !ret_size)
                return -EINVAL;
        r = transfer_encode(a, &ba, &na);
        if (r >= 0)
                r = transfer_encode(b, &bb, &nb);
        if (r < 0)
                return r == -EBADMSG ? -EINVAL : r;
        f.a = (ProtobufCBinaryData) { .len = na, .data = ba };
        f.b = (ProtobufCBinaryData) { .len = nb, .data = bb };
        m.body_case = SWARM__CREDIT_MESSAGE__BODY_FRAUD;
        m.fraud = &f;
        return encode_message(&m, ret, ret_size);
}

/* Sends t as kind to one peer, or to every peer (to NULL) except those
 * whose READY for candidate skip_cand of skip_slot we hold. */
static void send_transfer(struct dissemination *d, enum dissemination_kind kind, const struct transfer *t,
                          const uint8_t *to, const struct slot *skip_slot, int skip_cand) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t n;
        int r;

        r = dissemination_encode_transfer(kind, t, &buf, &n);
        if (r < 0) {
                debug(d, NULL, r, "cannot encode a transfer to send");
                return;
        }
        if (to) {
                send_raw(d, to, buf, n);
                return;
        }
        for (size_t i = 0; i < d->n_peers; i++) {
                const struct voter *v = skip_slot ? voter_get(d, skip_slot, d->peers[i]) : NULL;

                if (!v || v->readied != skip_cand)
                        send_raw(d, d->peers[i], buf, n);
        }
}

/* "Send me your READY for these", to one peer or to every peer. */
static void send_want(struct dissemination *d, const uint8_t *to, const uint8_t payer[TRANSFER_KEY_SIZE],
                      uint64_t first_seq, size_t n_seqs, const uint8_t (*ids)[TRANSFER_ID_SIZE], size_t n_ids) {
        Swarm__TransferSlot slots[DISSEMINATION_WANT_MAX], *slot_ptrs[DISSEMINATION_WANT_MAX];
        ProtobufCBinaryData id_data[DISSEMINATION_WANT_MAX];
        Swarm__CreditMessage m = SWARM__CREDIT_MESSAGE__INIT;
        Swarm__TransferWant w = SWARM__TRANSFER_WANT__INIT;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t n;

        if (n_seqs > DISSEMINATION_WANT_MAX)
                n_seqs = DISSEMINATION_WANT_MAX;
        if (n_ids > DISSEMINATION_WANT_MAX)
                n_ids = DISSEMINATION_WANT_MAX;
        if (n_seqs == 0 && n_ids == 0)
                return;
        for (size_t i = 0; i < n_seqs; i++) {
                slots[i] = (Swarm__TransferSlot) SWARM__TRANSFER_SLOT__INIT;
                slots[i].payer = (ProtobufCBinaryData) { .len = TRANSFER_KEY_SIZE, .data = (uint8_t *) payer };
                slots[i].seq = first_seq + i;
                slot_ptrs[i] = &slots[i];
        }
        for (size_t i = 0; i < n_ids; i++)
                id_data[i] = (ProtobufCBinaryData) { .len = TRANSFER_ID_SIZE, .data = (uint8_t *) ids[i] };
        w.n_slots = n_seqs;
        w.slots = slot_ptrs;
        w.n_ids = n_ids;
        w.ids = id_data;
        m.body_case = SWARM__CREDIT_MESSAGE__BODY_WANT;
        m.want = &w;
        if (encode_message(&m, &buf, &n) < 0) {
                debug(d, NULL, -ENOMEM, "cannot encode a WANT");
                return;
        }
        d->stats.wants_sent++;
        if (to) {
                send_raw(d, to, buf, n);
                return;
        }
        for (size_t i = 0; i < d->n_peers; i++)
                send_raw(d, d->peers[i], buf, n);
}

/* ---- Fraud ---- */

static void ban(struct dissemination *d, const struct transfer *a, const struct transfer *b) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t n;

        if (dissemination_is_banned(d, a->payer))
                return;
        if (key_add(&d->banned, &d->n_banned, a->payer) < 0) {
                debug(d, NULL, -ENOMEM, "cannot record a ban");
                return;
        }
        d->stats.fraud_proofs++;
        if (dissemination_encode_fraud(a, b, &buf, &n) >= 0)
                for (size_t i = 0; i < d->n_peers; i++)
                        send_raw(d, d->peers[i], buf, n);
        if (d->io.fraud)
                d->io.fraud(d->io.userdata, a, b);
}

int dissemination_add_fraud_proof(struct dissemination *d, const struct transfer *a, const struct transfer *b) {
        const char *reason;
        int r;

        if (!d || !a || !b)
                return -EINVAL;
        r = transfer_fraud_proof_check(a, b, &reason);
        if (r < 0)
                return r;
        ban(d, a, b);
        return 0;
}

/* ---- Deciding and delivering ---- */

/* Sends our READY for candidate i when it is due (at most one per slot),
 * then marks the slot decided when a candidate's READYs reach the quorum. */
static void slot_evaluate(struct dissemination *d, struct slot *s) {
        for (size_t i = 0; i < s->n_cands && s->readied < 0; i++) {
                struct candidate *c = &s->cands[i];

                if (!ready_due(d, s, i))
                        continue;
                if (vote(d, s, i, d->self, true) < 0) {
                        debug(d, NULL, -ENOMEM, "cannot record our READY");
                        return;
                }
                s->readied = (int) i;
                send_transfer(d, DISSEMINATION_READY, &c->t, NULL, NULL, -1);
        }
        for (size_t i = 0; i < s->n_cands && s->decided < 0; i++)
                if (ready_quorum(d, s, i))
                        s->decided = (int) i;
}

/* Asks for what keeps a decided transfer out of the book: the payer's
 * earlier seqs and dependencies that are neither delivered nor known. */
static void want_missing(struct dissemination *d, const uint8_t *to, const struct transfer *t) {
        uint8_t ids[DISSEMINATION_WANT_MAX][TRANSFER_ID_SIZE];
        struct transfer_account a;
        size_t n_ids = 0;
        uint64_t first;

        transfer_book_account(d->book, t->payer, &a);
        first = a.next_seq;
        while (first < t->seq && slot_find(d, t->payer, first))
                first++;
        for (size_t i = 0; i < t->n_deps && n_ids < DISSEMINATION_WANT_MAX; i++) {
                bool known = transfer_book_has(d->book, t->deps[i]);

                for (size_t j = 0; j < d->n_slots && !known; j++)
                        known = candidate_find(d->slots[j], t->deps[i]) >= 0;
                if (!known)
                        memcpy(ids[n_ids++], t->deps[i], TRANSFER_ID_SIZE);
        }
        send_want(d, to, t->payer, first, first < t->seq ? (size_t) (t->seq - first) : 0,
                  (const uint8_t (*)[TRANSFER_ID_SIZE]) ids, n_ids);
}

/* Tries to deliver a decided slot into the book.  1 when the slot is gone
 * (delivered), 0 otherwise. */
static int slot_apply(struct dissemination *d, struct slot *s) {
        const struct transfer *conflict = NULL;
        struct candidate *c;
        const char *reason;
        int r;

        if (s->decided < 0 || s->refused)
                return 0;
        c = &s->cands[s->decided];
        r = transfer_book_deliver(d->book, &c->t, &conflict, &reason);
        if (r == -EAGAIN || r == -ENOMEM)
                return 0;
        if (r == 0) {
                d->stats.delivered++;
                if (d->io.delivered)
                        d->io.delivered(d->io.userdata, &c->t, c->id);
                slot_remove(d, s);
                return 1;
        }
        if (r == -EALREADY) {
                slot_remove(d, s);
                return 1;
        }
        if (r == -ENOTUNIQ && conflict)
                ban(d, conflict, &c->t);
        /* Final: every honest book refuses it alike.  The slot stays, so
         * that nothing else is ever echoed or delivered for it. */
        s->refused = r;
        d->stats.refused++;
        if (d->io.refused)
                d->io.refused(d->io.userdata, &c->t, r, reason);
        return 0;
}

/* After anything changed: READYs that became due, decisions, deliveries;
 * a delivery changes weights and may unblock others, so go round until
 * nothing moves. */
static void settle(struct dissemination *d) {
        bool moved;

        do {
                moved = false;
                for (size_t i = 0; i < d->n_slots;) {
                        struct slot *s = d->slots[i];

                        slot_evaluate(d, s);
                        if (slot_apply(d, s) > 0) {
                                moved = true;
                                continue;       /* the last slot moved into i */
                        }
                        i++;
                }
        } while (moved);
}

/* What one message changed is one slot: evaluate it alone (a message must
 * not cost a pass over every slot), and go round them all only when it was
 * delivered, since weights changed. */
static void settle_from(struct dissemination *d, struct slot *s) {
        slot_evaluate(d, s);
        if (slot_apply(d, s) > 0)
                settle(d);
}

/* ---- Intake ---- */

static int slot_new(struct dissemination *d, const uint8_t *from, const struct transfer *t, struct slot **ret) {
        struct transfer_account a;
        struct slot **slots, *s;
        bool funded;

        transfer_book_account(d->book, t->payer, &a);
        if (t->seq - a.next_seq >= d->config.seq_window) {
                debug(d, from, -ERANGE, "transfer seq is beyond its payer's window (dissemination seq_window)");
                return -ERANGE;
        }
        funded = a.issuer || a.balance > 0 || a.pending > 0 || memcmp(t->payer, d->self, TRANSFER_KEY_SIZE) == 0;
        if (d->n_slots >= d->config.max_slots || (!funded && d->n_unfunded >= d->config.max_unfunded)) {
                debug(d, from, -ENOBUFS,
                      funded ? "no room for another transfer in flight (dissemination max_slots)"
                             : "no room for another transfer from a payer without credits (max_unfunded)");
                return -ENOBUFS;
        }
        slots = reallocarray(d->slots, d->n_slots + 1, sizeof(*slots));
        if (!slots)
                return -ENOMEM;
        d->slots = slots;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        memcpy(s->payer, t->payer, TRANSFER_KEY_SIZE);
        s->seq = t->seq;
        s->echoed = s->readied = s->decided = -1;
        s->unfunded = !funded;
        s->next_retry = d->io.now_usec(d->io.userdata) + d->config.retry_interval_usec;
        d->n_unfunded += s->unfunded;
        d->slots[d->n_slots++] = s;

        /* A gap before it: pull what we missed from whoever sent this. */
        if (from && t->seq > a.next_seq)
                want_missing(d, from, t);
        *ret = s;
        return 0;
}

static int candidate_add(struct dissemination *d, struct slot *s, const struct transfer *t,
                         const uint8_t id[TRANSFER_ID_SIZE], const uint8_t *from) {
        struct candidate *cands;
        int r;

        if (s->n_cands >= d->config.max_candidates) {
                debug(d, from, -ENOBUFS, "too many conflicting transfers for one slot (dissemination max_candidates)");
                return -ENOBUFS;
        }
        cands = reallocarray(s->cands, s->n_cands + 1, sizeof(*cands));
        if (!cands)
                return -ENOMEM;
        s->cands = cands;
        cands[s->n_cands] = (struct candidate) {};
        r = transfer_copy(t, &cands[s->n_cands].t);
        if (r < 0)
                return r;
        memcpy(cands[s->n_cands].id, id, TRANSFER_ID_SIZE);
        s->n_cands++;
        if (s->n_cands > 1)
                ban(d, &s->cands[0].t, t);
        return (int) s->n_cands - 1;
}

static void slot_echo(struct dissemination *d, struct slot *s, int i) {
        struct candidate *c = &s->cands[i];

        if (vote(d, s, (size_t) i, d->self, false) < 0) {
                debug(d, NULL, -ENOMEM, "cannot record our ECHO");
                return;
        }
        s->echoed = i;
        send_transfer(d, DISSEMINATION_ECHO, &c->t, NULL, NULL, -1);
}

static int on_transfer(struct dissemination *d, const uint8_t *from, bool ready, const struct transfer *t,
                       const uint8_t id[TRANSFER_ID_SIZE]) {
        const struct transfer *delivered;
        struct slot *s;
        int i, r;

        delivered = transfer_book_get_by_seq(d->book, t->payer, t->seq);
        if (delivered) {
                uint8_t did[TRANSFER_ID_SIZE];

                transfer_id(delivered, did);
                if (memcmp(did, id, TRANSFER_ID_SIZE) != 0)
                        ban(d, delivered, t);
                else if (!ready)
                        /* It echoes what we delivered long ago: it may have
                         * missed our READY.  One answer per ECHO. */
                        send_transfer(d, DISSEMINATION_READY, delivered, from, NULL, -1);
                return 0;
        }

        s = slot_find(d, t->payer, t->seq);
        if (!s) {
                r = slot_new(d, from, t, &s);
                if (r < 0)
                        return r;
        }
        i = candidate_find(s, id);
        if (i < 0) {
                i = candidate_add(d, s, t, id, from);
                if (i < 0)
                        return i;
        }

        if (!already_said(d, s, from, ready)) {
                struct candidate *c = &s->cands[i];
                size_t n = ready ? c->n_readies : c->n_echoes;

                /* Senders who hold nothing here weigh nothing: past
                 * max_voters, they are not even listed (Sybils cannot
                 * fill memory).  Issuers count at W = 0. */
                if (n >= d->config.max_voters && weight(d, from) == 0 && !payer_is_issuer(d, from)) {
                        debug(d, from, -ENOBUFS, "ECHO/READY from a sender without credits past max_voters, ignored");
                        return -ENOBUFS;
                }
                r = vote(d, s, (size_t) i, from, ready);
                if (r < 0)
                        return r;
        }

        /* The first transfer we see for a slot is the one we echo, unless
         * its payer is banned. */
        if (s->echoed < 0 && !s->refused && !dissemination_is_banned(d, t->payer))
                slot_echo(d, s, i);
        settle_from(d, s);
        return 0;
}

int dissemination_broadcast(struct dissemination *d, const struct transfer *t) {
        uint8_t id[TRANSFER_ID_SIZE];
        const struct transfer *delivered;
        struct slot *s;
        const char *reason;
        int i, r;

        if (!d || !t)
                return -EINVAL;
        if (memcmp(t->payer, d->self, TRANSFER_KEY_SIZE) != 0)
                return -EINVAL;
        r = transfer_verify(t, &reason);
        if (r < 0)
                return r;
        transfer_id(t, id);
        delivered = transfer_book_get_by_seq(d->book, t->payer, t->seq);
        if (delivered) {
                uint8_t did[TRANSFER_ID_SIZE];

                transfer_id(delivered, did);
                return memcmp(did, id, TRANSFER_ID_SIZE) == 0 ? -EALREADY : -ENOTUNIQ;
        }

        s = slot_find(d, t->payer, t->seq);
        if (!s) {
                r = slot_new(d, NULL, t, &s);
                if (r < 0)
                        return r;
        }
        i = candidate_find(s, id);
        if (s->echoed >= 0)
                return i == s->echoed ? -EALREADY : -ENOTUNIQ;
        if (i < 0) {
                i = candidate_add(d, s, t, id, NULL);
                if (i < 0)
                        return i;
        }
        slot_echo(d, s, i);
        /* Our own word as an issuer starts what nothing else can. */
        if (transfer_book_supply(d->book) == 0 && payer_is_issuer(d, t->payer) && s->readied < 0) {
                if (vote(d, s, (size_t) i, d->self, true) < 0)
                        return -ENOMEM;
                s->readied = i;
                send_transfer(d, DISSEMINATION_READY, &s->cands[i].t, NULL, NULL, -1);
        }
        settle(d);
        return 0;
}

/* Our READY (or, short of one, our ECHO) for what a peer asked for. */
static void answer_want(struct dissemination *d, const uint8_t *from, const struct transfer *t,
                        const struct slot *s) {
        if (!s) {
                send_transfer(d, DISSEMINATION_READY, t, from, NULL, -1);
                return;
        }
        if (s->readied >= 0)
                send_transfer(d, DISSEMINATION_READY, &s->cands[s->readied].t, from, NULL, -1);
        else if (s->echoed >= 0)
                send_transfer(d, DISSEMINATION_ECHO, &s->cands[s->echoed].t, from, NULL, -1);
}

static int on_want(struct dissemination *d, const uint8_t *from, const Swarm__TransferWant *w) {
        if (w->n_slots > DISSEMINATION_WANT_MAX || w->n_ids > DISSEMINATION_WANT_MAX) {
                debug(d, from, -EBADMSG, "WANT names more than 64 slots or ids");
                return -EBADMSG;
        }
        for (size_t i = 0; i < w->n_slots; i++)
                if (!w->slots[i] || w->slots[i]->payer.len != TRANSFER_KEY_SIZE || w->slots[i]->seq == 0) {
                        debug(d, from, -EBADMSG, "WANT names a slot without a 32-byte payer or with seq 0");
                        return -EBADMSG;
                }
        for (size_t i = 0; i < w->n_ids; i++)
                if (w->ids[i].len != TRANSFER_ID_SIZE) {
                        debug(d, from, -EBADMSG, "WANT names a transfer id that is not 32 bytes");
                        return -EBADMSG;
                }

        for (size_t i = 0; i < w->n_slots; i++) {
                const uint8_t *payer = w->slots[i]->payer.data;
                const struct transfer *t = transfer_book_get_by_seq(d->book, payer, w->slots[i]->seq);
                const struct slot *s = t ? NULL : slot_find(d, payer, w->slots[i]->seq);

                if (t || s)
                        answer_want(d, from, t, s);
        }
        for (size_t i = 0; i < w->n_ids; i++) {
                const struct transfer *t = transfer_book_get(d->book, w->ids[i].data);

                if (t) {
                        answer_want(d, from, t, NULL);
                        continue;
                }
                for (size_t j = 0; j < d->n_slots; j++)
                        if (candidate_find(d->slots[j], w->ids[i].data) >= 0) {
                                answer_want(d, from, NULL, d->slots[j]);
                                break;
                        }
        }
        d->stats.wants_answered++;
        return 0;
}

/* Whether t is, byte for byte, a transfer whose signature this node
 * verified already: the same id (so the same content) and the same
 * signature as a delivered transfer or a candidate.  Every peer's ECHO and
 * READY carry the same transfer: a node of a swarm of N verifies it once,
 * not 2N times (at N = 10,000, 2 * 10^8 Ed25519 verifications per transfer
 * in the swarm).  A copy with another signature is verified as it comes. */
static bool signature_verified(const struct dissemination *d, const struct transfer *t,
                               const uint8_t id[TRANSFER_ID_SIZE]) {
        const struct transfer *delivered = transfer_book_get(d->book, id);
        const struct slot *s;
        int i;

        if (delivered)
                return memcmp(delivered->signature, t->signature, TRANSFER_SIG_SIZE) == 0;
        s = slot_find(d, t->payer, t->seq);
        if (!s)
                return false;
        i = candidate_find(s, id);
        return i >= 0 && memcmp(s->cands[i].t.signature, t->signature, TRANSFER_SIG_SIZE) == 0;
}

/* Computes t's id into id and verifies t's signature unless
 * signature_verified(): 0, or transfer_verify()'s errors. */
static int check_signature(struct dissemination *d, const struct transfer *t, uint8_t id[TRANSFER_ID_SIZE],
                           const char **reason) {
        transfer_id(t, id);
        if (signature_verified(d, t, id))
                return 0;
        d->stats.signatures_verified++;
        return transfer_verify(t, reason);
}

static int on_fraud(struct dissemination *d, const uint8_t *from, const Swarm__FraudProof *f) {
        _cleanup_(transfer_clear) struct transfer a = {}, b = {};
        uint8_t ida[TRANSFER_ID_SIZE], idb[TRANSFER_ID_SIZE];
        const char *reason;
        int r;

        r = transfer_decode_unverified(f->a.data, f->a.len, &a, &reason);
        if (r >= 0)
                r = transfer_decode_unverified(f->b.data, f->b.len, &b, &reason);
        if (r >= 0)
                r = check_signature(d, &a, ida, &reason);
        if (r >= 0)
                r = check_signature(d, &b, idb, &reason);
        if (r >= 0 && (memcmp(a.payer, b.payer, TRANSFER_KEY_SIZE) != 0 || a.seq != b.seq ||
                       memcmp(ida, idb, TRANSFER_ID_SIZE) == 0)) {
                /* transfer_fraud_proof_check()'s rule, on transfers verified here */
                r = -EINVAL;
                reason = "the two transfers are not for one payer and seq, or are the same transfer";
        }
        if (r < 0) {
                debug(d, from, r, "fraud proof refused: its transfers do not decode or do not conflict");
                return r == -EINVAL ? -EBADMSG : r;
        }
        ban(d, &a, &b);
        return 0;
}

int dissemination_receive(struct dissemination *d, const uint8_t from[TRANSFER_KEY_SIZE], const uint8_t *data,
                          size_t size) {
        _cleanup_(transfer_clear) struct transfer t = {};
        Swarm__CreditMessage *m = NULL;
        const char *reason;
        struct pb_budget b;
        int r;

        if (!d || !from || (!data && size > 0))
                return -EINVAL;
        d->stats.received_messages++;
        d->stats.received_bytes += size;

        if (size > DISSEMINATION_MESSAGE_MAX) {
                r = -EBADMSG;
                reason = "credit message is over its size limit";
                goto refuse;
        }
        r = pb_unpack_strict(&swarm__credit_message__descriptor, data, size, DECODE_BUDGET(size),
                             WIRE_UNKNOWN_FIELDS_MAX, &b, (ProtobufCMessage **) &m, &reason,
                             "credit message needs more memory than its size allows",
                             "credit message is not a valid protobuf CreditMessage",
                             "credit message has a field number 0 or too many unknown fields");
        if (r < 0)
                goto refuse;
        if (m->version != DISSEMINATION_VERSION) {
                r = -EPROTONOSUPPORT;
                reason = "credit message of another version";
                goto refuse;
        }

        switch (m->body_case) {
        case SWARM__CREDIT_MESSAGE__BODY_ECHO:
        case SWARM__CREDIT_MESSAGE__BODY_READY: {
                const ProtobufCBinaryData *body =
                        m->body_case == SWARM__CREDIT_MESSAGE__BODY_ECHO ? &m->echo : &m->ready;

                uint8_t id[TRANSFER_ID_SIZE];

                r = transfer_decode_unverified(body->data, body->len, &t, &reason);
                if (r >= 0)
                        r = check_signature(d, &t, id, &reason);
                if (r < 0) {
                        if (r == -EKEYREJECTED)
                                r = -EBADMSG;
                        goto refuse;
                }
                r = on_transfer(d, from, m->body_case == SWARM__CREDIT_MESSAGE__BODY_READY, &t, id);
                break;
        }
        case SWARM__CREDIT_MESSAGE__BODY_FRAUD:
                r = on_fraud(d, from, m->fraud);
                break;
        case SWARM__CREDIT_MESSAGE__BODY_WANT:
                r = on_want(d, from, m->want);
                break;
        default:
                r = -EBADMSG;
                reason = "credit message of an unknown type (no body this version knows)";
                goto refuse;
        }
        pb_free_unpacked(&m->base);
        if (r < 0)
                d->stats.rejected_messages++;
        return r;

refuse:
        if (m)
                pb_free_unpacked(&m->base);
        d->stats.rejected_messages++;
        debug(d, from, r, reason);
        return r;
}

void dissemination_probe(struct dissemination *d, const uint8_t to[TRANSFER_KEY_SIZE],
                         const uint8_t (*payers)[TRANSFER_KEY_SIZE], size_t n) {
        Swarm__TransferSlot slots[DISSEMINATION_WANT_MAX], *slot_ptrs[DISSEMINATION_WANT_MAX];
        Swarm__CreditMessage m = SWARM__CREDIT_MESSAGE__INIT;
        Swarm__TransferWant w = SWARM__TRANSFER_WANT__INIT;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t k = 0, size, depth;

        if (n == 0)
                return;
        /* A node that was away may have missed several transfers of each
         * payer: ask for a few seqs past its last, as many as fit. */
        depth = DISSEMINATION_WANT_MAX / n;
        if (depth < 1)
                depth = 1;
        if (depth > DISSEMINATION_PROBE_DEPTH)
                depth = DISSEMINATION_PROBE_DEPTH;
        for (size_t i = 0; i < n && k < DISSEMINATION_WANT_MAX; i++) {
                struct transfer_account a;

                transfer_book_account(d->book, payers[i], &a);
                for (uint64_t seq = a.next_seq; seq < a.next_seq + depth && k < DISSEMINATION_WANT_MAX; seq++) {
                        if (slot_find(d, payers[i], seq))
                                continue;
                        slots[k] = (Swarm__TransferSlot) SWARM__TRANSFER_SLOT__INIT;
                        slots[k].payer = (ProtobufCBinaryData) { .len = TRANSFER_KEY_SIZE,
                                                                 .data = (uint8_t *) payers[i] };
                        slots[k].seq = seq;
                        slot_ptrs[k] = &slots[k];
                        k++;
                }
        }
        if (k == 0)
                return;
        w.n_slots = k;
        w.slots = slot_ptrs;
        m.body_case = SWARM__CREDIT_MESSAGE__BODY_WANT;
        m.want = &w;
        if (encode_message(&m, &buf, &size) < 0) {
                debug(d, NULL, -ENOMEM, "cannot encode a probe");
                return;
        }
        d->stats.wants_sent++;
        send_raw(d, to, buf, size);
}

/* ---- Time ---- */

/* Past max_retries a slot that is still not delivered keeps trying, with
 * the interval doubling up to this many times the first: on a loaded
 * machine (ASan, two test suites at once) every message of a round may be
 * lost or late, and a slot that stopped for good never delivered (its
 * payer's later transfers would wait on it forever). */
#define RETRY_BACKOFF_MAX 32

/* A banned payer's slot no longer resends its ECHO (a double spend's
 * slot never decides: its ECHOs went on for ever, at backing-off
 * intervals); its READY, which carries what some honest node may have
 * delivered, still goes out. */
static bool slot_retrying(const struct dissemination *d, const struct slot *s) {
        if (s->refused)
                return false;
        if (dissemination_is_banned(d, s->payer))
                return s->readied >= 0 || s->decided >= 0;
        return s->echoed >= 0 || s->readied >= 0 || s->decided >= 0;
}

static uint64_t retry_interval(const struct dissemination *d, const struct slot *s) {
        uint64_t factor = 1;

        for (unsigned i = d->config.max_retries; i < s->retries && factor < RETRY_BACKOFF_MAX; i++)
                factor *= 2;
        return d->config.retry_interval_usec * factor;
}

void dissemination_tick(struct dissemination *d) {
        uint64_t now = d->io.now_usec(d->io.userdata);

        for (size_t i = 0; i < d->n_slots; i++) {
                struct slot *s = d->slots[i];

                if (!slot_retrying(d, s) || s->next_retry > now)
                        continue;
                s->retries++;
                s->next_retry = now + retry_interval(d, s);
                d->stats.retries++;
                if (s->decided >= 0) {
                        /* Decided but not in the book: something before it
                         * is missing here. */
                        want_missing(d, NULL, &s->cands[s->decided].t);
                        continue;
                }
                /* Our word again, to whoever has not sent its READY. */
                if (s->echoed >= 0 && !dissemination_is_banned(d, s->payer)) {
                        const struct candidate *c = &s->cands[s->echoed];

                        send_transfer(d, DISSEMINATION_ECHO, &c->t, NULL, s, s->echoed);
                }
                if (s->readied >= 0) {
                        const struct candidate *c = &s->cands[s->readied];

                        send_transfer(d, DISSEMINATION_READY, &c->t, NULL, s, s->readied);
                }
        }
}

uint64_t dissemination_next_deadline(const struct dissemination *d) {
        uint64_t next = UINT64_MAX;

        for (size_t i = 0; i < d->n_slots; i++)
                if (slot_retrying(d, d->slots[i]) && d->slots[i]->next_retry < next)
                        next = d->slots[i]->next_retry;
        return next;
}

/* ---- Set-up and views ---- */

int dissemination_new(const struct dissemination_config *config, const struct dissemination_io *io,
                      const uint8_t self[TRANSFER_KEY_SIZE], struct transfer_book *book,
                      struct dissemination **ret) {
        struct dissemination *d;

        if (!config || !io || !io->now_usec || !io->send || !self || !book || !ret)
                return -EINVAL;
        if (config->max_candidates < 2 || config->seq_window < 1 || config->max_slots < 1 || config->max_voters < 1 ||
            config->retry_interval_usec == 0)
                return -EINVAL;
        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->config = *config;
        d->io = *io;
        memcpy(d->self, self, TRANSFER_KEY_SIZE);
        d->book = book;
        crypto_shorthash_keygen(d->hash_key);
        *ret = d;
        return 0;
}

struct dissemination *dissemination_free(struct dissemination *d) {
        if (!d)
                return NULL;
        for (size_t i = 0; i < d->n_slots; i++)
                slot_free(d->slots[i]);
        free(d->slots);
        free(d->peers);
        free(d->banned);
        free(d);
        return NULL;
}

static int cmp_key(const void *a, const void *b) {
        return memcmp(a, b, TRANSFER_KEY_SIZE);
}

int dissemination_set_peers(struct dissemination *d, const uint8_t (*peers)[TRANSFER_KEY_SIZE], size_t n) {
        uint8_t (*p)[TRANSFER_KEY_SIZE] = NULL;
        size_t k = 0;

        if (!d || (n > 0 && !peers))
                return -EINVAL;
        if (n > 0) {
                p = reallocarray(NULL, n, TRANSFER_KEY_SIZE);
                if (!p)
                        return -ENOMEM;
                memcpy(p, peers, n * TRANSFER_KEY_SIZE);
                /* Sorted, duplicates are neighbours: O(N log N) for a swarm
                 * of N, where a scan per peer would be O(N^2). */
                qsort(p, n, TRANSFER_KEY_SIZE, cmp_key);
        }
        for (size_t i = 0; i < n; i++)
                if (memcmp(p[i], d->self, TRANSFER_KEY_SIZE) != 0 &&
                    (k == 0 || memcmp(p[k - 1], p[i], TRANSFER_KEY_SIZE) != 0))
                        memmove(p[k++], p[i], TRANSFER_KEY_SIZE);
        free(d->peers);
        d->peers = p;
        d->n_peers = k;
        return 0;
}

enum dissemination_state dissemination_state(const struct dissemination *d, const uint8_t id[TRANSFER_ID_SIZE]) {
        if (transfer_book_has(d->book, id))
                return DISSEMINATION_DELIVERED;
        for (size_t i = 0; i < d->n_slots; i++) {
                const struct slot *s = d->slots[i];
                int c = candidate_find(s, id);

                if (c < 0)
                        continue;
                if (s->decided == c)
                        return s->refused ? DISSEMINATION_REFUSED : DISSEMINATION_DECIDED;
                return DISSEMINATION_IN_FLIGHT;
        }
        return DISSEMINATION_UNKNOWN;
}

const struct dissemination_stats *dissemination_get_stats(const struct dissemination *d) {
        return &d->stats;
}

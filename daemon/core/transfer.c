/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Accounts and transfers (transfer.h).  The codec is written by hand: the
 * signed bytes are the canonical bytes, so there is one encoding of a
 * transfer and nothing to re-encode before verifying.  The book keeps every
 * delivered transfer in a table by id and every account in a table by key;
 * both are open-addressed under SipHash with a per-book random key, so keys
 * a peer grinds cannot pile into one chain.  Nothing here logs. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "macro.h"
#include "transfer.h"

#define SIGN_CONTEXT "swarm-transfer-v1"
#define ID_CONTEXT "swarm-transfer-id-v1"
#define DIGEST_CONTEXT "swarm-transfer-book-v1"

static void put_u16(uint8_t *p, uint16_t v) {
        p[0] = (uint8_t) v;
        p[1] = (uint8_t) (v >> 8);
}

static void put_u64(uint8_t *p, uint64_t v) {
        for (unsigned i = 0; i < 8; i++)
                p[i] = (uint8_t) (v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p) {
        return (uint16_t) (p[0] | (p[1] << 8));
}

static uint64_t get_u64(const uint8_t *p) {
        uint64_t v = 0;

        for (unsigned i = 0; i < 8; i++)
                v |= (uint64_t) p[i] << (8 * i);
        return v;
}

void transfer_clear(struct transfer *t) {
        if (!t)
                return;
        free(t->deps);
        *t = (struct transfer) {};
}

int transfer_copy(const struct transfer *t, struct transfer *ret) {
        if (!t || !ret)
                return -EINVAL;

        *ret = *t;
        ret->deps = NULL;
        if (t->n_deps > 0) {
                ret->deps = malloc(t->n_deps * TRANSFER_ID_SIZE);
                if (!ret->deps) {
                        *ret = (struct transfer) {};
                        return -ENOMEM;
                }
                memcpy(ret->deps, t->deps, t->n_deps * TRANSFER_ID_SIZE);
        }
        return 0;
}

int transfer_validate(const struct transfer *t, const char **reason) {
        const char *dummy;

        if (!reason)
                reason = &dummy;
        if (!t) {
                *reason = "invalid arguments";
                return -EINVAL;
        }
        if (t->seq == 0) {
                *reason = "transfer seq is 0 (seqs count from 1)";
                return -EBADMSG;
        }
        if (t->amount == 0) {
                *reason = "transfer amount is 0";
                return -EBADMSG;
        }
        if (memcmp(t->payer, t->payee, TRANSFER_KEY_SIZE) == 0) {
                *reason = "transfer payer and payee are the same account";
                return -EBADMSG;
        }
        if (t->n_deps > TRANSFER_MAX_DEPS) {
                *reason = "transfer names more than TRANSFER_MAX_DEPS dependencies";
                return -EBADMSG;
        }
        if (t->n_deps > 0 && !t->deps) {
                *reason = "transfer dependencies missing";
                return -EBADMSG;
        }
        for (size_t i = 1; i < t->n_deps; i++) {
                int c = memcmp(t->deps[i - 1], t->deps[i], TRANSFER_ID_SIZE);

                if (c == 0) {
                        *reason = "transfer names a dependency twice";
                        return -EBADMSG;
                }
                if (c > 0) {
                        *reason = "transfer dependencies are not in increasing order";
                        return -EBADMSG;
                }
        }
        return 0;
}

/* The canonical bytes before the signature; buf holds at least
 * TRANSFER_HEADER_SIZE + n_deps * TRANSFER_ID_SIZE. */
static size_t transfer_write_content(const struct transfer *t, uint8_t *buf) {
        uint8_t *p = buf;

        *p++ = TRANSFER_VERSION;
        memcpy(p, t->payer, TRANSFER_KEY_SIZE);
        p += TRANSFER_KEY_SIZE;
        put_u64(p, t->seq);
        p += 8;
        memcpy(p, t->payee, TRANSFER_KEY_SIZE);
        p += TRANSFER_KEY_SIZE;
        put_u64(p, t->amount);
        p += 8;
        put_u16(p, (uint16_t) t->n_deps);
        p += 2;
        if (t->n_deps > 0) {
                memcpy(p, t->deps, t->n_deps * TRANSFER_ID_SIZE);
                p += t->n_deps * TRANSFER_ID_SIZE;
        }
        return (size_t) (p - buf);
}

/* The signed message: the context string, then the content.  At most
 * sizeof(SIGN_CONTEXT) + TRANSFER_MAX_SIZE bytes: on the stack. */
static size_t transfer_signed_message(const struct transfer *t, uint8_t *buf) {
        memcpy(buf, SIGN_CONTEXT, sizeof(SIGN_CONTEXT) - 1);
        return sizeof(SIGN_CONTEXT) - 1 + transfer_write_content(t, buf + sizeof(SIGN_CONTEXT) - 1);
}

static int cmp_id(const void *a, const void *b) {
        return memcmp(a, b, TRANSFER_ID_SIZE);
}

int transfer_sign(struct transfer *t, const uint8_t payer_sk[64]) {
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];
        uint8_t msg[sizeof(SIGN_CONTEXT) + TRANSFER_MAX_SIZE];
        size_t n;
        int r;

        if (!t || !payer_sk)
                return -EINVAL;
        if (crypto_sign_ed25519_sk_to_pk(pk, payer_sk) != 0 || sodium_memcmp(pk, t->payer, sizeof(pk)) != 0)
                return -EINVAL;
        if (t->n_deps > 1 && t->n_deps <= TRANSFER_MAX_DEPS && t->deps)
                qsort(t->deps, t->n_deps, TRANSFER_ID_SIZE, cmp_id);
        r = transfer_validate(t, NULL);
        if (r < 0)
                return r;

        n = transfer_signed_message(t, msg);
        if (crypto_sign_detached(t->signature, NULL, msg, n, payer_sk) != 0)
                return -EINVAL;
        return 0;
}

int transfer_verify(const struct transfer *t, const char **reason) {
        uint8_t msg[sizeof(SIGN_CONTEXT) + TRANSFER_MAX_SIZE];
        const char *dummy;
        size_t n;
        int r;

        if (!reason)
                reason = &dummy;
        r = transfer_validate(t, reason);
        if (r < 0)
                return r;

        n = transfer_signed_message(t, msg);
        if (crypto_sign_verify_detached(t->signature, msg, n, t->payer) != 0) {
                *reason = "transfer signature does not verify against its payer's key";
                return -EKEYREJECTED;
        }
        return 0;
}

void transfer_id(const struct transfer *t, uint8_t ret[TRANSFER_ID_SIZE]) {
        uint8_t buf[TRANSFER_MAX_SIZE];
        crypto_generichash_state s;
        size_t n;

        /* Every caller validated t; refuse anyway rather than overrun. */
        if (t->n_deps > TRANSFER_MAX_DEPS || (t->n_deps > 0 && !t->deps)) {
                memset(ret, 0, TRANSFER_ID_SIZE);
                return;
        }
        n = transfer_write_content(t, buf);
        crypto_generichash_init(&s, NULL, 0, TRANSFER_ID_SIZE);
        crypto_generichash_update(&s, (const uint8_t *) ID_CONTEXT, sizeof(ID_CONTEXT) - 1);
        crypto_generichash_update(&s, buf, n);
        crypto_generichash_final(&s, ret, TRANSFER_ID_SIZE);
}

size_t transfer_encoded_size(const struct transfer *t) {
        return TRANSFER_MIN_SIZE + t->n_deps * TRANSFER_ID_SIZE;
}

int transfer_encode(const struct transfer *t, uint8_t **ret, size_t *ret_size) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t n;
        int r;

        if (!t || !ret || !ret_size)
                return -EINVAL;
        r = transfer_validate(t, NULL);
        if (r < 0)
                return r;

        buf = malloc(transfer_encoded_size(t));
        if (!buf)
                return -ENOMEM;
        n = transfer_write_content(t, buf);
        memcpy(buf + n, t->signature, TRANSFER_SIG_SIZE);

        *ret_size = n + TRANSFER_SIG_SIZE;
        *ret = TAKE_PTR(buf);
        return 0;
}

int transfer_decode_unverified(const uint8_t *data, size_t size, struct transfer *ret, const char **reason) {
        struct transfer t = {};
        const uint8_t *p = data;
        const char *dummy;
        size_t n_deps;
        int r;

        if (!reason)
                reason = &dummy;
        *reason = "invalid arguments";
        if ((!data && size > 0) || !ret)
                return -EINVAL;
        *ret = (struct transfer) {};

        if (size < TRANSFER_MIN_SIZE) {
                *reason = "transfer is truncated";
                return -EBADMSG;
        }
        if (size > TRANSFER_MAX_SIZE) {
                *reason = "transfer is over TRANSFER_MAX_SIZE";
                return -EBADMSG;
        }
        if (p[0] != TRANSFER_VERSION) {
                *reason = "transfer has an unknown version";
                return -EBADMSG;
        }
        p++;
        memcpy(t.payer, p, TRANSFER_KEY_SIZE);
        p += TRANSFER_KEY_SIZE;
        t.seq = get_u64(p);
        p += 8;
        memcpy(t.payee, p, TRANSFER_KEY_SIZE);
        p += TRANSFER_KEY_SIZE;
        t.amount = get_u64(p);
        p += 8;
        n_deps = get_u16(p);
        p += 2;

        if (n_deps > TRANSFER_MAX_DEPS) {
                *reason = "transfer names more than TRANSFER_MAX_DEPS dependencies";
                return -EBADMSG;
        }
        if (size < TRANSFER_MIN_SIZE + n_deps * TRANSFER_ID_SIZE) {
                *reason = "transfer is truncated";
                return -EBADMSG;
        }
        if (size > TRANSFER_MIN_SIZE + n_deps * TRANSFER_ID_SIZE) {
                *reason = "transfer has trailing bytes";
                return -EBADMSG;
        }
        if (n_deps > 0) {
                t.deps = malloc(n_deps * TRANSFER_ID_SIZE);
                if (!t.deps)
                        return -ENOMEM;
                memcpy(t.deps, p, n_deps * TRANSFER_ID_SIZE);
                p += n_deps * TRANSFER_ID_SIZE;
        }
        t.n_deps = n_deps;
        memcpy(t.signature, p, TRANSFER_SIG_SIZE);

        r = transfer_validate(&t, reason);
        if (r < 0) {
                transfer_clear(&t);
                return r;
        }

        *ret = t;
        *reason = NULL;
        return 0;
}

int transfer_decode(const uint8_t *data, size_t size, struct transfer *ret, const char **reason) {
        const char *dummy;
        int r;

        if (!reason)
                reason = &dummy;
        r = transfer_decode_unverified(data, size, ret, reason);
        if (r < 0)
                return r;
        r = transfer_verify(ret, reason);
        if (r < 0) {
                transfer_clear(ret);
                return r;
        }
        return 0;
}

int transfer_fraud_proof_check(const struct transfer *a, const struct transfer *b, const char **reason) {
        uint8_t ida[TRANSFER_ID_SIZE], idb[TRANSFER_ID_SIZE];
        const char *dummy;
        int r;

        if (!reason)
                reason = &dummy;
        if (!a || !b) {
                *reason = "invalid arguments";
                return -EINVAL;
        }
        r = transfer_verify(a, reason);
        if (r < 0)
                return r;
        r = transfer_verify(b, reason);
        if (r < 0)
                return r;
        if (memcmp(a->payer, b->payer, TRANSFER_KEY_SIZE) != 0) {
                *reason = "the two transfers have different payers";
                return -EINVAL;
        }
        if (a->seq != b->seq) {
                *reason = "the two transfers have different seqs";
                return -EINVAL;
        }
        transfer_id(a, ida);
        transfer_id(b, idb);
        if (memcmp(ida, idb, TRANSFER_ID_SIZE) == 0) {
                *reason = "the two transfers are the same transfer";
                return -EINVAL;
        }
        *reason = NULL;
        return 0;
}

/* The book. */

struct entry {
        uint8_t id[TRANSFER_ID_SIZE];   /* first: the table's key */
        struct transfer t;
        bool counted;                   /* its payee named it as a dependency */
        bool mint;
};

struct account {
        uint8_t key[TRANSFER_KEY_SIZE]; /* first: the table's key */
        uint64_t balance;
        uint64_t pending;
        struct entry **sent;            /* delivered transfers from it, sent[seq - 1] */
        size_t n_sent, n_sent_alloc;
        uint8_t (*pending_ids)[TRANSFER_ID_SIZE]; /* increasing */
        size_t n_pending, n_pending_alloc;
        bool issuer;
};

/* Open addressing, linear probing, no deletion: the book only grows.  Each
 * value starts with its 32-byte key. */
struct table {
        void **slots;
        size_t n, n_slots;              /* n_slots: 0 or a power of two */
};

struct transfer_book {
        struct table accounts;
        struct table entries;
        uint8_t hash_key[crypto_shorthash_KEYBYTES];
        uint64_t supply;
};

static size_t table_hash(const struct transfer_book *b, const uint8_t *key) {
        uint8_t h[crypto_shorthash_BYTES];

        crypto_shorthash(h, key, 32, b->hash_key);
        return (size_t) get_u64(h);
}

static void *table_get(const struct transfer_book *b, const struct table *t, const uint8_t *key) {
        if (t->n_slots == 0)
                return NULL;
        for (size_t i = table_hash(b, key) & (t->n_slots - 1);; i = (i + 1) & (t->n_slots - 1)) {
                void *v = t->slots[i];

                if (!v)
                        return NULL;
                if (memcmp(v, key, 32) == 0)
                        return v;
        }
}

static void table_place(const struct transfer_book *b, void **slots, size_t n_slots, void *v) {
        size_t i = table_hash(b, v) & (n_slots - 1);

        while (slots[i])
                i = (i + 1) & (n_slots - 1);
        slots[i] = v;
}

/* Makes room for one more value (load at most 1/2). */
static int table_reserve(const struct transfer_book *b, struct table *t) {
        size_t n_slots;
        void **slots;

        if ((t->n + 1) * 2 <= t->n_slots)
                return 0;
        n_slots = t->n_slots ? t->n_slots * 2 : 64;
        slots = calloc(n_slots, sizeof(void *));
        if (!slots)
                return -ENOMEM;
        for (size_t i = 0; i < t->n_slots; i++)
                if (t->slots[i])
                        table_place(b, slots, n_slots, t->slots[i]);
        free(t->slots);
        t->slots = slots;
        t->n_slots = n_slots;
        return 0;
}

/* After table_reserve(). */
static void table_add(const struct transfer_book *b, struct table *t, void *v) {
        table_place(b, t->slots, t->n_slots, v);
        t->n++;
}

static struct account *account_new(const uint8_t key[TRANSFER_KEY_SIZE]) {
        struct account *a = calloc(1, sizeof(*a));

        if (a)
                memcpy(a->key, key, TRANSFER_KEY_SIZE);
        return a;
}

static void account_free(struct account *a) {
        if (!a)
                return;
        free(a->sent);
        free(a->pending_ids);
        free(a);
}

static void entry_free(struct entry *e) {
        if (!e)
                return;
        transfer_clear(&e->t);
        free(e);
}

struct transfer_book *transfer_book_free(struct transfer_book *b) {
        if (!b)
                return NULL;
        for (size_t i = 0; i < b->accounts.n_slots; i++)
                account_free(b->accounts.slots[i]);
        for (size_t i = 0; i < b->entries.n_slots; i++)
                entry_free(b->entries.slots[i]);
        free(b->accounts.slots);
        free(b->entries.slots);
        free(b);
        return NULL;
}

/* The account for key, created if new; NULL on -ENOMEM. */
static struct account *book_account(struct transfer_book *b, const uint8_t key[TRANSFER_KEY_SIZE]) {
        struct account *a = table_get(b, &b->accounts, key);

        if (a)
                return a;
        if (table_reserve(b, &b->accounts) < 0)
                return NULL;
        a = account_new(key);
        if (!a)
                return NULL;
        table_add(b, &b->accounts, a);
        return a;
}

struct transfer_book *transfer_book_new(const uint8_t (*issuers)[TRANSFER_KEY_SIZE], size_t n_issuers) {
        _cleanup_(transfer_book_freep) struct transfer_book *b = NULL;

        if (n_issuers > 0 && !issuers)
                return NULL;
        b = calloc(1, sizeof(*b));
        if (!b)
                return NULL;
        /* Only the tables' layout depends on it, never a result. */
        crypto_shorthash_keygen(b->hash_key);

        for (size_t i = 0; i < n_issuers; i++) {
                struct account *a = book_account(b, issuers[i]);

                if (!a)
                        return NULL;
                a->issuer = true;
        }
        return TAKE_PTR(b);
}

static const struct account *book_find(const struct transfer_book *b, const uint8_t key[TRANSFER_KEY_SIZE]) {
        return table_get(b, &b->accounts, key);
}

static const struct entry *book_entry(const struct transfer_book *b, const uint8_t id[TRANSFER_ID_SIZE]) {
        return table_get(b, &b->entries, id);
}

/* Everything but the signature and the seq, with t's id computed. */
static int book_check_id(const struct transfer_book *b, const struct transfer *t, const uint8_t id[TRANSFER_ID_SIZE],
                         const struct transfer **ret_conflict, const char **reason) {
        const struct account *payer = book_find(b, t->payer);
        uint64_t next = payer ? payer->n_sent + 1 : 1;
        bool issuer = payer && payer->issuer;
        uint64_t funds;
        bool missing = false;

        if (t->seq < next) {
                const struct entry *e = payer->sent[t->seq - 1];

                if (memcmp(e->id, id, TRANSFER_ID_SIZE) == 0) {
                        *reason = "transfer is already delivered (a replay)";
                        return -EALREADY;
                }
                if (ret_conflict)
                        *ret_conflict = &e->t;
                *reason = "another transfer with the same payer and seq is delivered: a proof of fraud";
                return -ENOTUNIQ;
        }
        if (t->seq > next) {
                *reason = "transfer seq is ahead of its payer's next: an earlier one is not delivered yet";
                return -EAGAIN;
        }

        if (issuer && t->n_deps > 0) {
                *reason = "a mint names dependencies: what is paid to an issuer stays out of circulation";
                return -EPERM;
        }

        funds = payer ? payer->balance : 0;
        for (size_t i = 0; i < t->n_deps; i++) {
                const struct entry *d = book_entry(b, t->deps[i]);

                if (!d) {
                        missing = true;
                        continue;
                }
                if (memcmp(d->t.payee, t->payer, TRANSFER_KEY_SIZE) != 0) {
                        *reason = "transfer names a dependency paid to another account";
                        return -EPERM;
                }
                if (d->counted) {
                        *reason = "transfer names a dependency its payer counted already";
                        return -EPERM;
                }
                /* Σ balances + pending <= supply <= UINT64_MAX: cannot wrap. */
                funds += d->t.amount;
        }
        if (missing) {
                *reason = "transfer names a dependency that is not delivered yet";
                return -EAGAIN;
        }

        if (issuer) {
                if (t->amount > UINT64_MAX - b->supply) {
                        *reason = "mint would take the supply past UINT64_MAX";
                        return -EOVERFLOW;
                }
                return 0;
        }
        if (funds < t->amount) {
                *reason = "transfer amount is over its payer's balance and dependencies";
                return -EDQUOT;
        }
        return 0;
}

int transfer_book_check(const struct transfer_book *b, const struct transfer *t,
                        const struct transfer **ret_conflict, const char **reason) {
        uint8_t id[TRANSFER_ID_SIZE];
        const char *dummy;
        int r;

        if (!reason)
                reason = &dummy;
        if (ret_conflict)
                *ret_conflict = NULL;
        if (!b || !t) {
                *reason = "invalid arguments";
                return -EINVAL;
        }
        r = transfer_verify(t, reason);
        if (r < 0)
                return r;
        transfer_id(t, id);
        r = book_check_id(b, t, id, ret_conflict, reason);
        if (r < 0)
                return r;
        *reason = NULL;
        return 0;
}

static int grow(void **p, size_t *n_alloc, size_t need, size_t size) {
        size_t n;
        void *q;

        if (need <= *n_alloc)
                return 0;
        n = *n_alloc ? *n_alloc * 2 : 8;
        if (n < need)
                n = need;
        q = reallocarray(*p, n, size);
        if (!q)
                return -ENOMEM;
        *p = q;
        *n_alloc = n;
        return 0;
}

/* Where id is, or would go, in a's increasing pending_ids. */
static size_t pending_index(const struct account *a, const uint8_t id[TRANSFER_ID_SIZE], bool *found) {
        size_t lo = 0, hi = a->n_pending;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = memcmp(a->pending_ids[mid], id, TRANSFER_ID_SIZE);

                if (c == 0) {
                        *found = true;
                        return mid;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *found = false;
        return lo;
}

int transfer_book_deliver(struct transfer_book *b, const struct transfer *t,
                          const struct transfer **ret_conflict, const char **reason) {
        struct account *payer, *payee;
        struct entry *e;
        uint8_t id[TRANSFER_ID_SIZE];
        const char *dummy;
        size_t at;
        bool found;
        int r;

        if (!reason)
                reason = &dummy;
        r = transfer_book_check(b, t, ret_conflict, reason);
        if (r < 0)
                return r;
        transfer_id(t, id);

        /* Every allocation first, so that a failure leaves the rules' state
         * as it was (a new empty account changes no result). */
        *reason = "out of memory";
        payer = book_account(b, t->payer);
        if (!payer)
                return -ENOMEM;
        payee = book_account(b, t->payee);
        if (!payee)
                return -ENOMEM;
        if (grow((void **) &payer->sent, &payer->n_sent_alloc, payer->n_sent + 1, sizeof(*payer->sent)) < 0 ||
            grow((void **) &payee->pending_ids, &payee->n_pending_alloc, payee->n_pending + 1,
                 sizeof(*payee->pending_ids)) < 0 ||
            table_reserve(b, &b->entries) < 0)
                return -ENOMEM;
        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        if (transfer_copy(t, &e->t) < 0) {
                free(e);
                return -ENOMEM;
        }
        memcpy(e->id, id, TRANSFER_ID_SIZE);
        e->mint = payer->issuer;

        /* Count the dependencies: each leaves the payer's pending set. */
        for (size_t i = 0; i < t->n_deps; i++) {
                struct entry *d = (struct entry *) book_entry(b, t->deps[i]);

                d->counted = true;
                at = pending_index(payer, d->id, &found);
                if (found) {
                        memmove(payer->pending_ids[at], payer->pending_ids[at + 1],
                                (payer->n_pending - at - 1) * TRANSFER_ID_SIZE);
                        payer->n_pending--;
                }
                payer->pending -= d->t.amount;
                payer->balance += d->t.amount;
        }
        if (e->mint)
                b->supply += t->amount;
        else
                payer->balance -= t->amount;
        payer->sent[payer->n_sent++] = e;

        at = pending_index(payee, id, &found);
        memmove(payee->pending_ids[at + 1], payee->pending_ids[at], (payee->n_pending - at) * TRANSFER_ID_SIZE);
        memcpy(payee->pending_ids[at], id, TRANSFER_ID_SIZE);
        payee->n_pending++;
        payee->pending += t->amount;

        table_add(b, &b->entries, e);
        *reason = NULL;
        return 0;
}

void transfer_book_account(const struct transfer_book *b, const uint8_t account[TRANSFER_KEY_SIZE],
                           struct transfer_account *ret) {
        const struct account *a = book_find(b, account);

        *ret = (struct transfer_account) { .next_seq = 1 };
        if (!a)
                return;
        *ret = (struct transfer_account) {
                .next_seq = a->n_sent + 1,
                .balance = a->balance,
                .pending = a->pending,
                .n_pending = a->n_pending,
                .issuer = a->issuer,
        };
}

size_t transfer_book_pending(const struct transfer_book *b, const uint8_t account[TRANSFER_KEY_SIZE],
                             uint8_t (*ids)[TRANSFER_ID_SIZE], size_t max) {
        const struct account *a = book_find(b, account);

        if (!a)
                return 0;
        if (ids && max > 0 && a->n_pending > 0)
                memcpy(ids, a->pending_ids, (max < a->n_pending ? max : a->n_pending) * TRANSFER_ID_SIZE);
        return a->n_pending;
}

bool transfer_book_has(const struct transfer_book *b, const uint8_t id[TRANSFER_ID_SIZE]) {
        return book_entry(b, id) != NULL;
}

const struct transfer *transfer_book_get(const struct transfer_book *b, const uint8_t id[TRANSFER_ID_SIZE]) {
        const struct entry *e = book_entry(b, id);

        return e ? &e->t : NULL;
}

const struct transfer *transfer_book_get_by_seq(const struct transfer_book *b,
                                                const uint8_t payer[TRANSFER_KEY_SIZE], uint64_t seq) {
        const struct account *a = book_find(b, payer);

        if (!a || seq == 0 || seq > a->n_sent)
                return NULL;
        return &a->sent[seq - 1]->t;
}

uint64_t transfer_book_supply(const struct transfer_book *b) {
        return b->supply;
}

size_t transfer_book_n_delivered(const struct transfer_book *b) {
        return b->entries.n;
}

int transfer_book_check_invariants(const struct transfer_book *b, const char **reason) {
        /* Wide sums: an invariant broken by a wrap must not hide. */
        unsigned __int128 minted = 0, held = 0, uncounted = 0, pending = 0;
        size_t n_uncounted = 0, n_pending = 0, n_sent = 0;
        const char *dummy;

        if (!reason)
                reason = &dummy;

        for (size_t i = 0; i < b->entries.n_slots; i++) {
                const struct entry *e = b->entries.slots[i];
                const struct account *payer;

                if (!e)
                        continue;
                payer = book_find(b, e->t.payer);
                if (!payer || e->t.seq > payer->n_sent || payer->sent[e->t.seq - 1] != e) {
                        *reason = "a delivered transfer is not in its payer's sequence";
                        return -EUCLEAN;
                }
                if (e->mint != payer->issuer) {
                        *reason = "a transfer's mint flag disagrees with its payer";
                        return -EUCLEAN;
                }
                if (e->mint)
                        minted += e->t.amount;
                if (!e->counted) {
                        uncounted += e->t.amount;
                        n_uncounted++;
                }
        }

        for (size_t i = 0; i < b->accounts.n_slots; i++) {
                const struct account *a = b->accounts.slots[i];
                unsigned __int128 recount = 0, spent = 0, mine = 0;

                if (!a)
                        continue;
                for (size_t s = 0; s < a->n_sent; s++) {
                        const struct entry *e = a->sent[s];

                        if (e->t.seq != s + 1 || memcmp(e->t.payer, a->key, TRANSFER_KEY_SIZE) != 0) {
                                *reason = "an account's sequence holds a transfer of another seq or payer";
                                return -EUCLEAN;
                        }
                        for (size_t d = 0; d < e->t.n_deps; d++) {
                                const struct entry *dep = book_entry(b, e->t.deps[d]);

                                if (!dep || !dep->counted ||
                                    memcmp(dep->t.payee, a->key, TRANSFER_KEY_SIZE) != 0) {
                                        *reason = "a counted dependency is missing, uncounted or not to its counter";
                                        return -EUCLEAN;
                                }
                                recount += dep->t.amount;
                        }
                        if (!e->mint)
                                spent += e->t.amount;
                }
                if (a->issuer ? a->balance != 0 || recount != 0 : recount - spent != a->balance || spent > recount) {
                        *reason = "an account's balance differs from its transfers' recount";
                        return -EUCLEAN;
                }
                for (size_t p = 0; p < a->n_pending; p++) {
                        const struct entry *e = book_entry(b, a->pending_ids[p]);

                        if (!e || e->counted || memcmp(e->t.payee, a->key, TRANSFER_KEY_SIZE) != 0 ||
                            (p > 0 && memcmp(a->pending_ids[p - 1], a->pending_ids[p], TRANSFER_ID_SIZE) >= 0)) {
                                *reason = "an account's pending set holds a transfer counted or to another";
                                return -EUCLEAN;
                        }
                        mine += e->t.amount;
                }
                if (mine != a->pending) {
                        *reason = "an account's pending sum differs from its pending transfers";
                        return -EUCLEAN;
                }
                held += a->balance;
                pending += a->pending;
                n_pending += a->n_pending;
                n_sent += a->n_sent;
        }

        if (n_sent != b->entries.n) {
                *reason = "the accounts' sequences do not hold every delivered transfer";
                return -EUCLEAN;
        }
        if (n_pending != n_uncounted || pending != uncounted) {
                *reason = "the pending sets differ from the uncounted transfers";
                return -EUCLEAN;
        }
        if (minted != b->supply) {
                *reason = "supply differs from the sum of mints";
                return -EUCLEAN;
        }
        if (held + pending != minted) {
                *reason = "balances and pending amounts do not add up to the supply";
                return -EUCLEAN;
        }
        *reason = NULL;
        return 0;
}

static int cmp_account(const void *a, const void *b) {
        const struct account *x = *(const struct account *const *) a, *y = *(const struct account *const *) b;

        return memcmp(x->key, y->key, TRANSFER_KEY_SIZE);
}

void transfer_book_digest(const struct transfer_book *b, uint8_t ret[32]) {
        _cleanup_free_ const struct account **sorted = NULL;
        crypto_generichash_state s;
        uint8_t u[8];
        size_t n = 0;

        crypto_generichash_init(&s, NULL, 0, 32);
        crypto_generichash_update(&s, (const uint8_t *) DIGEST_CONTEXT, sizeof(DIGEST_CONTEXT) - 1);
        put_u64(u, b->supply);
        crypto_generichash_update(&s, u, 8);

        sorted = calloc(b->accounts.n ? b->accounts.n : 1, sizeof(*sorted));
        if (!sorted) {
                /* A digest that equals no book's. */
                memset(ret, 0xff, 32);
                return;
        }
        for (size_t i = 0; i < b->accounts.n_slots; i++)
                if (b->accounts.slots[i])
                        sorted[n++] = b->accounts.slots[i];
        qsort(sorted, n, sizeof(*sorted), cmp_account);

        for (size_t i = 0; i < n; i++) {
                const struct account *a = sorted[i];

                /* An account created without a transfer of its own or to it
                 * (an issuer's, a payer refused for lack of memory) is
                 * state no result depends on: leave it out. */
                if (a->n_sent == 0 && a->n_pending == 0 && a->balance == 0)
                        continue;
                crypto_generichash_update(&s, a->key, TRANSFER_KEY_SIZE);
                put_u64(u, a->n_sent);
                crypto_generichash_update(&s, u, 8);
                put_u64(u, a->balance);
                crypto_generichash_update(&s, u, 8);
                put_u64(u, a->pending);
                crypto_generichash_update(&s, u, 8);
                put_u64(u, a->n_pending);
                crypto_generichash_update(&s, u, 8);
                if (a->n_pending > 0)
                        crypto_generichash_update(&s, (const uint8_t *) a->pending_ids,
                                                  a->n_pending * TRANSFER_ID_SIZE);
        }
        crypto_generichash_final(&s, ret, 32);
}

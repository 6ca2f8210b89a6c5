/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Payments at scale (issue 22): N instances of daemon/core/dissemination.c,
 * each over its own transfer_book, in one process, in virtual time, with a
 * latency of 20 ms ± 5 ms per message and 1% of the messages lost.  Every
 * message is really encoded, decoded and its transfer's signature checked
 * with Ed25519 as the daemon does (once per node and transfer, with the
 * dissemination's cache).
 *
 * Bootstrap: the issuer (node 0) signs one mint per other node, and every
 * book takes them directly (their signatures verified once here, then
 * trusted, as the daemon trusts its own ledger at start), as if the swarm
 * had been paid long ago: minting to 10,000 nodes through the broadcast
 * would measure the bootstrap rather than payments.
 *
 * Byzantine nodes (10%, holding 10% of the supply: less than the third the
 * quorums tolerate) run no dissemination: they never echo nor ready an
 * honest transfer and answer no WANT (silence).  Every fifth payment is a
 * double spend by a Byzantine payer that has not cheated yet: two transfers
 * for its next seq, each of all its credits, to two honest payees; one sent
 * (ECHO and READY) to one half of the honest nodes, the other to the other
 * half, and every other Byzantine node echoes and readies both to every
 * honest node.
 *
 *   sim-credits [-n N]... [-p PAYMENTS] [-l LOSS] [-b SHARE] [-s SEED] [-w SECONDS] [--check]
 *
 * Default: N = 1000, 20 payments.  Every honest node sends every transfer
 * to every node (Bracha, O(N) messages per node per transfer): at N =
 * 10,000 a payment is 2 * 10^8 messages, and every honest book holds
 * 10,000 mints, so 10,000 nodes need ~75 GB and ~30 min of CPU per payment
 * here; the O(log N) per node needs sampled broadcast, not built.
 *
 * Printed per N: the time from a payment's broadcast to its delivery at all
 * honest nodes (p50/p95/max over payments), messages and bytes sent per node
 * per payment (all messages, retries and WANTs included), the same for
 * honest payments alone and for double spends, Ed25519 verifications per node
 * per payment against the ECHOs and READYs received (what verifying each
 * would cost), honest nodes that delivered conflicting transfers (must be
 * 0), and whether every honest book agrees (one digest). */

#include <errno.h>
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dissemination.h"
#include "sim-rng.h"
#include "swarm.pb-c.h"

#define MSEC 1000ull
#define SEC (1000ull * MSEC)
#define LATENCY_MIN (15 * MSEC)
#define LATENCY_MAX (25 * MSEC)
#define PAYMENT_GAP (100 * MSEC)        /* between two payments' broadcasts */
#define SETTLE (5 * SEC)                /* after the last payment, virtual time */
#define MINT 1000000000ull              /* micro-credits minted to each node */
#define DOUBLE_SPEND_EVERY 5
#define T0 (1000 * SEC)

enum kind { KIND_ECHO, KIND_READY, KIND_WANT, KIND_FRAUD, KIND_OTHER, N_KINDS };
static const char *const kind_name[N_KINDS] = { "ECHO", "READY", "WANT", "fraud", "other" };

/* One message's bytes, shared by the copies a node sends to every peer. */
struct blob {
        uint32_t refs, size;
        int32_t payment;                /* the payment it is about, -1: none */
        uint8_t kind;
        uint8_t data[];
};

struct event {
        uint64_t time, seq;
        uint32_t to, from;              /* from == UINT32_MAX: a timer */
        struct blob *blob;
};

enum role { HONEST, SILENT, EQUIVOCATOR };

struct simnode {
        uint8_t pk[TRANSFER_KEY_SIZE];
        uint8_t sk[64];
        struct transfer_book *book;
        struct dissemination *d;        /* NULL: Byzantine */
        enum role role;
        uint32_t index;
        uint64_t scheduled;             /* pending timer, UINT64_MAX: none */
        uint64_t next_seq;              /* the seq it signs next */
        int32_t paying;                 /* its payment in flight, -1: none */
        bool cheated;
};

struct payment {
        uint32_t payer, payee[2];
        bool double_spend;
        uint64_t seq, t_start, t_all;   /* t_all: delivered at every honest node, 0: not yet */
        uint8_t id[2][TRANSFER_ID_SIZE];
        uint32_t delivered[2];          /* honest nodes that delivered each */
        uint64_t messages, bytes;
};

struct sim {
        size_t n, n_honest;
        struct simnode *nodes;
        uint32_t *id_table;
        size_t n_id_table;
        struct event *heap;
        size_t n_heap, n_heap_allocated;
        uint64_t now, seq, rng;
        double loss;
        struct blob *last;              /* the last blob sent, to share */
        uint32_t last_from;
        struct payment *payments;
        size_t n_payments;
        uint8_t *delivered_by;          /* [node * n_payments + p]: bit 0, 1: which was delivered */
        uint64_t messages[N_KINDS], bytes[N_KINDS], lost;
        uint64_t other_messages, other_bytes;
        bool trust_signatures;          /* bootstrap: the mints were verified once */
        uint64_t verifications;
};

static struct sim *S;

static double now_s(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void *xmalloc(size_t size) {
        void *p = malloc(size);

        if (!p) {
                fprintf(stderr, "out of memory\n");
                exit(EXIT_FAILURE);
        }
        return p;
}

static void *xcalloc(size_t n, size_t size) {
        void *p = calloc(n, size);

        if (!p) {
                fprintf(stderr, "out of memory\n");
                exit(EXIT_FAILURE);
        }
        return p;
}

/* Linked with --wrap: counts every Ed25519 verification in the process,
 * and lets the bootstrap skip those it did once already. */
int __real_crypto_sign_verify_detached(const unsigned char *sig, const unsigned char *m, unsigned long long mlen,
                                       const unsigned char *pk);
int __wrap_crypto_sign_verify_detached(const unsigned char *sig, const unsigned char *m, unsigned long long mlen,
                                       const unsigned char *pk);
int __wrap_crypto_sign_verify_detached(const unsigned char *sig, const unsigned char *m, unsigned long long mlen,
                                       const unsigned char *pk) {
        if (S && S->trust_signatures)
                return 0;
        if (S)
                S->verifications++;
        return __real_crypto_sign_verify_detached(sig, m, mlen, pk);
}

/* ---- Ids ------------------------------------------------------------- */

static size_t id_slot(const uint8_t *id, size_t n) {
        uint64_t k;

        memcpy(&k, id, sizeof(k));
        return (size_t) (k * UINT64_C(0x9e3779b97f4a7c15) >> 20) & (n - 1);
}

static int32_t id_to_index(const uint8_t *id) {
        for (size_t i = id_slot(id, S->n_id_table);; i = (i + 1) & (S->n_id_table - 1)) {
                uint32_t v = S->id_table[i];

                if (v == 0)
                        return -1;
                if (memcmp(S->nodes[v - 1].pk, id, TRANSFER_KEY_SIZE) == 0)
                        return (int32_t) v - 1;
        }
}

static int32_t payment_of(uint32_t payer, uint64_t seq) {
        for (size_t p = S->n_payments; p > 0; p--)
                if (S->payments[p - 1].payer == payer && S->payments[p - 1].seq == seq)
                        return (int32_t) (p - 1);
        return -1;
}

/* ---- Events ---------------------------------------------------------- */

static bool event_before(const struct event *a, const struct event *b) {
        return a->time < b->time || (a->time == b->time && a->seq < b->seq);
}

static void heap_push(struct event ev) {
        size_t i;

        if (S->n_heap >= S->n_heap_allocated) {
                S->n_heap_allocated = S->n_heap_allocated ? 2 * S->n_heap_allocated : 4096;
                S->heap = realloc(S->heap, S->n_heap_allocated * sizeof(struct event));
                if (!S->heap) {
                        fprintf(stderr, "out of memory\n");
                        exit(EXIT_FAILURE);
                }
        }
        ev.seq = S->seq++;
        for (i = S->n_heap++; i > 0; i = (i - 1) / 2) {
                struct event *parent = &S->heap[(i - 1) / 2];

                if (!event_before(&ev, parent))
                        break;
                S->heap[i] = *parent;
        }
        S->heap[i] = ev;
}

static struct event heap_pop(void) {
        struct event top = S->heap[0], last = S->heap[--S->n_heap];
        size_t i = 0;

        for (;;) {
                size_t c = 2 * i + 1;

                if (c >= S->n_heap)
                        break;
                if (c + 1 < S->n_heap && event_before(&S->heap[c + 1], &S->heap[c]))
                        c++;
                if (!event_before(&S->heap[c], &last))
                        break;
                S->heap[i] = S->heap[c];
                i = c;
        }
        if (S->n_heap > 0)
                S->heap[i] = last;
        return top;
}

static void schedule(struct simnode *nd) {
        uint64_t d;

        if (!nd->d)
                return;
        d = dissemination_next_deadline(nd->d);
        if (d < S->now)
                d = S->now;
        if (d >= nd->scheduled)
                return;
        nd->scheduled = d;
        heap_push((struct event) { .time = d, .to = nd->index, .from = UINT32_MAX });
}

static void blob_unref(struct blob *b) {
        if (b && --b->refs == 0)
                free(b);
}

/* What a message is and which payment it is about: read once per blob. */
static void blob_classify(struct blob *b) {
        Swarm__CreditMessage *m = swarm__credit_message__unpack(NULL, b->size, b->data);

        b->kind = KIND_OTHER;
        b->payment = -1;
        if (!m)
                return;
        if (m->body_case == SWARM__CREDIT_MESSAGE__BODY_ECHO || m->body_case == SWARM__CREDIT_MESSAGE__BODY_READY) {
                const ProtobufCBinaryData *t =
                        m->body_case == SWARM__CREDIT_MESSAGE__BODY_ECHO ? &m->echo : &m->ready;

                b->kind = m->body_case == SWARM__CREDIT_MESSAGE__BODY_ECHO ? KIND_ECHO : KIND_READY;
                /* version | payer[32] | u64 seq, little-endian */
                if (t->len >= 1 + TRANSFER_KEY_SIZE + 8) {
                        int32_t payer = id_to_index(t->data + 1);
                        uint64_t seq = 0;

                        for (size_t k = 0; k < 8; k++)
                                seq |= (uint64_t) t->data[1 + TRANSFER_KEY_SIZE + k] << (8 * k);
                        if (payer >= 0)
                                b->payment = payment_of((uint32_t) payer, seq);
                }
        } else if (m->body_case == SWARM__CREDIT_MESSAGE__BODY_WANT)
                b->kind = KIND_WANT;
        else if (m->body_case == SWARM__CREDIT_MESSAGE__BODY_FRAUD)
                b->kind = KIND_FRAUD;
        swarm__credit_message__free_unpacked(m, NULL);
}

static void send_from(uint32_t from, uint32_t to, const uint8_t *data, size_t size) {
        struct blob *b = S->last;

        if (!b || S->last_from != from || b->size != size || memcmp(b->data, data, size) != 0) {
                b = xmalloc(sizeof(*b) + size);
                b->refs = 1;            /* S->last's */
                b->size = (uint32_t) size;
                memcpy(b->data, data, size);
                blob_classify(b);
                blob_unref(S->last);
                S->last = b;
                S->last_from = from;
        }
        S->messages[b->kind]++;
        S->bytes[b->kind] += size;
        if (b->payment >= 0) {
                S->payments[b->payment].messages++;
                S->payments[b->payment].bytes += size;
        } else {
                S->other_messages++;
                S->other_bytes += size;
        }
        if ((double) (rng_next(&S->rng) >> 11) * 0x1.0p-53 < S->loss) {
                S->lost++;
                return;
        }
        if (!S->nodes[to].d)
                return;                 /* a Byzantine node: it ignores what it gets */
        b->refs++;
        heap_push((struct event) {
                .time = S->now + LATENCY_MIN + rng_next(&S->rng) % (LATENCY_MAX - LATENCY_MIN + 1),
                .to = to,
                .from = from,
                .blob = b,
        });
}

/* ---- The io ---------------------------------------------------------- */

static uint64_t sim_now(void *userdata) {
        return S->now;
}

static void sim_send(void *userdata, const uint8_t to[TRANSFER_KEY_SIZE], const uint8_t *data, size_t size) {
        const struct simnode *from = userdata;
        int32_t t = id_to_index(to);

        if (t >= 0)
                send_from(from->index, (uint32_t) t, data, size);
}

static void sim_delivered(void *userdata, const struct transfer *t, const uint8_t id[TRANSFER_ID_SIZE]) {
        const struct simnode *nd = userdata;
        int32_t payer = id_to_index(t->payer), pi;
        struct payment *p;
        unsigned which;

        if (payer < 0)
                return;
        pi = payment_of((uint32_t) payer, t->seq);
        if (pi < 0)
                return;
        p = &S->payments[pi];
        which = memcmp(id, p->id[0], TRANSFER_ID_SIZE) == 0 ? 0 : 1;
        S->delivered_by[(size_t) nd->index * S->n_payments + (size_t) pi] |= (uint8_t) (1u << which);
        p->delivered[which]++;
        if (!p->double_spend && p->delivered[0] == S->n_honest)
                p->t_all = S->now;
        if ((uint32_t) payer == nd->index)
                S->nodes[payer].paying = -1;
}

/* ---- Set-up ---------------------------------------------------------- */

static void sim_setup(size_t n, double loss, double byzantine, uint64_t seed, size_t n_payments) {
        struct dissemination_config c;
        uint8_t (*keys)[TRANSFER_KEY_SIZE];
        struct transfer *mints;
        size_t n_byzantine = (size_t) ((double) n * byzantine + 0.5);

        S = xcalloc(1, sizeof(*S));
        S->n = n;
        S->rng = seed;
        S->loss = loss;
        S->now = T0;
        S->nodes = xcalloc(n, sizeof(*S->nodes));
        S->n_id_table = 1;
        while (S->n_id_table < 4 * n)
                S->n_id_table *= 2;
        S->id_table = xcalloc(S->n_id_table, sizeof(uint32_t));
        S->payments = xcalloc(n_payments, sizeof(*S->payments));
        S->n_payments = n_payments;
        S->delivered_by = xcalloc(n * n_payments, 1);
        keys = xcalloc(n, TRANSFER_KEY_SIZE);

        for (size_t i = 0; i < n; i++) {
                struct simnode *nd = &S->nodes[i];
                size_t k;

                crypto_sign_keypair(nd->pk, nd->sk);
                memcpy(keys[i], nd->pk, TRANSFER_KEY_SIZE);
                nd->index = (uint32_t) i;
                nd->scheduled = UINT64_MAX;
                nd->next_seq = 1;
                nd->paying = -1;
                for (k = id_slot(nd->pk, S->n_id_table); S->id_table[k]; k = (k + 1) & (S->n_id_table - 1))
                        ;
                S->id_table[k] = (uint32_t) i + 1;
        }
        /* Byzantine nodes at random, never the issuer: half silent, half
         * equivocating. */
        for (size_t b = 0; b < n_byzantine;) {
                size_t i = 1 + rng_next(&S->rng) % (n - 1);

                if (S->nodes[i].role != HONEST)
                        continue;
                S->nodes[i].role = b % 2 ? EQUIVOCATOR : SILENT;
                b++;
        }
        S->n_honest = n - n_byzantine;

        /* The mints: signed once, verified once, delivered into every
         * honest book. */
        mints = xcalloc(n, sizeof(*mints));
        for (size_t i = 1; i < n; i++) {
                struct transfer *t = &mints[i];

                *t = (struct transfer) { .seq = S->nodes[0].next_seq++, .amount = MINT };
                memcpy(t->payer, S->nodes[0].pk, TRANSFER_KEY_SIZE);
                memcpy(t->payee, S->nodes[i].pk, TRANSFER_KEY_SIZE);
                if (transfer_sign(t, S->nodes[0].sk) < 0 || transfer_verify(t, NULL) < 0)
                        abort();
        }
        dissemination_config_default(&c);
        S->trust_signatures = true;
        for (size_t i = 0; i < n; i++) {
                struct simnode *nd = &S->nodes[i];
                struct dissemination_io io = {
                        .userdata = nd,
                        .now_usec = sim_now,
                        .send = sim_send,
                        .delivered = sim_delivered,
                };

                if (nd->role != HONEST && i != 0)
                        continue;
                nd->book = transfer_book_new((const uint8_t (*)[TRANSFER_KEY_SIZE]) S->nodes[0].pk, 1);
                if (!nd->book)
                        abort();
                for (size_t k = 1; k < n; k++)
                        if (transfer_book_deliver(nd->book, &mints[k], NULL, NULL) < 0)
                                abort();
                if (dissemination_new(&c, &io, nd->pk, nd->book, &nd->d) < 0 ||
                    dissemination_set_peers(nd->d, (const uint8_t (*)[TRANSFER_KEY_SIZE]) keys, n) < 0)
                        abort();
        }
        S->trust_signatures = false;
        for (size_t i = 1; i < n; i++)
                transfer_clear(&mints[i]);
        free(mints);
        free(keys);
}

static void sim_free(void) {
        for (size_t i = 0; i < S->n_heap; i++)
                blob_unref(S->heap[i].blob);
        blob_unref(S->last);
        for (size_t i = 0; i < S->n; i++) {
                dissemination_free(S->nodes[i].d);
                transfer_book_free(S->nodes[i].book);
        }
        free(S->heap);
        free(S->nodes);
        free(S->id_table);
        free(S->payments);
        free(S->delivered_by);
        free(S);
        S = NULL;
}

/* ---- Payments -------------------------------------------------------- */

static uint32_t random_node(enum role role, uint32_t not) {
        for (;;) {
                uint32_t i = (uint32_t) (1 + rng_next(&S->rng) % (S->n - 1));

                if (S->nodes[i].role == role && i != not)
                        return i;
        }
}

/* A transfer from payer to payee, naming what the book holds pending to
 * the payer as dependencies. */
static void make(struct transfer *t, const struct transfer_book *book, uint32_t payer, uint32_t payee,
                 uint64_t seq, uint64_t amount) {
        uint8_t ids[TRANSFER_MAX_DEPS][TRANSFER_ID_SIZE];
        size_t n = transfer_book_pending(book, S->nodes[payer].pk, ids, TRANSFER_MAX_DEPS);

        if (n > TRANSFER_MAX_DEPS)
                n = TRANSFER_MAX_DEPS;
        *t = (struct transfer) { .seq = seq, .amount = amount, .n_deps = n };
        memcpy(t->payer, S->nodes[payer].pk, TRANSFER_KEY_SIZE);
        memcpy(t->payee, S->nodes[payee].pk, TRANSFER_KEY_SIZE);
        if (n > 0) {
                t->deps = xmalloc(n * TRANSFER_ID_SIZE);
                memcpy(t->deps, ids, n * TRANSFER_ID_SIZE);
        }
        if (transfer_sign(t, S->nodes[payer].sk) < 0)
                abort();
}

static void say(uint32_t from, uint32_t to, enum dissemination_kind kind, const struct transfer *t) {
        uint8_t *buf;
        size_t n;

        if (dissemination_encode_transfer(kind, t, &buf, &n) < 0)
                abort();
        send_from(from, to, buf, n);
        free(buf);
}

static void pay_honest(size_t pi) {
        struct payment *p = &S->payments[pi];
        struct simnode *payer;
        struct transfer_account a;
        struct transfer t;
        uint64_t dep_sum = 0;

        do
                p->payer = random_node(HONEST, 0);
        while (S->nodes[p->payer].paying >= 0);
        payer = &S->nodes[p->payer];
        p->payee[0] = random_node(HONEST, p->payer);
        p->seq = payer->next_seq++;
        p->t_start = S->now;
        transfer_book_account(payer->book, payer->pk, &a);
        dep_sum = a.pending;
        make(&t, payer->book, p->payer, p->payee[0], p->seq, 1 + rng_next(&S->rng) % ((a.balance + dep_sum) / 4 + 1));
        transfer_id(&t, p->id[0]);
        payer->paying = (int32_t) pi;
        if (dissemination_broadcast(payer->d, &t) < 0)
                abort();
        transfer_clear(&t);
        schedule(payer);
}

static void pay_double(size_t pi) {
        struct payment *p = &S->payments[pi];
        struct transfer t[2];
        uint32_t k = 0;

        p->double_spend = true;
        do
                p->payer = (uint32_t) (1 + rng_next(&S->rng) % (S->n - 1));
        while (S->nodes[p->payer].role == HONEST || S->nodes[p->payer].cheated);
        S->nodes[p->payer].cheated = true;
        p->seq = S->nodes[p->payer].next_seq++;
        p->t_start = S->now;
        for (size_t w = 0; w < 2; w++) {
                p->payee[w] = random_node(HONEST, w ? p->payee[0] : 0);
                /* Its book would be empty: it reads the issuer's. */
                make(&t[w], S->nodes[0].book, p->payer, p->payee[w], p->seq, MINT);
                transfer_id(&t[w], p->id[w]);
        }
        for (uint32_t i = 0; i < S->n; i++) {
                if (S->nodes[i].role != HONEST)
                        continue;
                say(p->payer, i, DISSEMINATION_ECHO, &t[k % 2]);
                say(p->payer, i, DISSEMINATION_READY, &t[k % 2]);
                k++;
        }
        for (uint32_t b = 0; b < S->n; b++) {
                if (S->nodes[b].role != EQUIVOCATOR || b == p->payer)
                        continue;
                for (size_t w = 0; w < 2; w++)
                        for (uint32_t i = 0; i < S->n; i++)
                                if (S->nodes[i].role == HONEST) {
                                        say(b, i, DISSEMINATION_ECHO, &t[w]);
                                        say(b, i, DISSEMINATION_READY, &t[w]);
                                }
        }
        transfer_clear(&t[0]);
        transfer_clear(&t[1]);
}

/* ---- Running --------------------------------------------------------- */

static void run_until(uint64_t end) {
        while (S->n_heap > 0 && S->heap[0].time <= end) {
                struct event ev = heap_pop();
                struct simnode *nd = &S->nodes[ev.to];

                S->now = ev.time;
                if (ev.from == UINT32_MAX) {
                        if (ev.time != nd->scheduled)
                                continue;       /* superseded */
                        nd->scheduled = UINT64_MAX;
                        dissemination_tick(nd->d);
                } else {
                        (void) dissemination_receive(nd->d, S->nodes[ev.from].pk, ev.blob->data, ev.blob->size);
                        blob_unref(ev.blob);
                }
                schedule(nd);
        }
        if (S->now < end)
                S->now = end;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

struct result {
        size_t n, payments, honest_payments, undelivered;
        double p50_ms, p95_ms, max_ms;
        double msgs_per_node, bytes_per_node;
        double honest_msgs, honest_bytes, double_msgs, double_bytes;
        double verifications_per_node, received_verified_per_node, received_per_node;
        uint64_t conflicts, banned_everywhere;
        bool books_agree;
        double wall_s, setup_s;
};

static void run(size_t n, size_t n_payments, double loss, double byzantine, uint64_t seed, double wall_limit,
                struct result *res) {
        double t0 = now_s(), t_setup;
        uint64_t *times, msgs = 0, bytes = 0, verified = 0, received = 0;
        uint64_t honest_msgs = 0, honest_bytes = 0, double_msgs = 0, double_bytes = 0;
        size_t n_double = 0, done = 0, n_times = 0;
        uint8_t first[32], digest[32];
        bool have = false;

        sim_setup(n, loss, byzantine, seed, n_payments);
        t_setup = now_s();
        res->setup_s = t_setup - t0;
        memset(S->messages, 0, sizeof(S->messages));
        memset(S->bytes, 0, sizeof(S->bytes));
        S->verifications = 0;

        for (size_t pi = 0; pi < n_payments; pi++) {
                if (pi % DOUBLE_SPEND_EVERY == DOUBLE_SPEND_EVERY - 1)
                        pay_double(pi);
                else
                        pay_honest(pi);
                done = pi + 1;
                run_until(S->now + PAYMENT_GAP);
                if (wall_limit > 0 && now_s() - t_setup > wall_limit)
                        break;
        }
        run_until(S->now + SETTLE);
        res->wall_s = now_s() - t_setup;

        /* Figures over the payments made. */
        times = xcalloc(done, sizeof(uint64_t));
        res->undelivered = 0;
        for (size_t pi = 0; pi < done; pi++) {
                const struct payment *p = &S->payments[pi];

                if (p->double_spend) {
                        n_double++;
                        double_msgs += p->messages;
                        double_bytes += p->bytes;
                        continue;
                }
                honest_msgs += p->messages;
                honest_bytes += p->bytes;
                if (p->t_all)
                        times[n_times++] = p->t_all - p->t_start;
                else
                        res->undelivered++;
        }
        qsort(times, n_times, sizeof(*times), cmp_u64);
        res->n = n;
        res->payments = done;
        res->honest_payments = done - n_double;
        res->p50_ms = n_times ? (double) times[n_times / 2] / MSEC : -1;
        res->p95_ms = n_times ? (double) times[(n_times * 95) / 100 < n_times ? (n_times * 95) / 100 : n_times - 1] /
                                        MSEC
                              : -1;
        res->max_ms = n_times ? (double) times[n_times - 1] / MSEC : -1;
        free(times);

        for (size_t k = 0; k < N_KINDS; k++) {
                msgs += S->messages[k];
                bytes += S->bytes[k];
        }
        res->msgs_per_node = (double) msgs / (double) n / (double) done;
        res->bytes_per_node = (double) bytes / (double) n / (double) done;
        res->honest_msgs = res->honest_payments ? (double) honest_msgs / (double) n / (double) res->honest_payments : 0;
        res->honest_bytes = res->honest_payments ? (double) honest_bytes / (double) n / (double) res->honest_payments : 0;
        res->double_msgs = n_double ? (double) double_msgs / (double) n / (double) n_double : 0;
        res->double_bytes = n_double ? (double) double_bytes / (double) n / (double) n_double : 0;

        res->conflicts = 0;
        res->banned_everywhere = 0;
        res->books_agree = true;
        for (size_t i = 0; i < n; i++) {
                const struct simnode *nd = &S->nodes[i];
                const struct dissemination_stats *st;
                const char *reason;

                if (!nd->d)
                        continue;
                st = dissemination_get_stats(nd->d);
                verified += st->signatures_verified;
                received += st->received_messages;
                for (size_t pi = 0; pi < done; pi++)
                        if (S->delivered_by[i * n_payments + pi] == 3)
                                res->conflicts++;
                if (transfer_book_check_invariants(nd->book, &reason) < 0) {
                        fprintf(stderr, "node %zu's book: %s\n", i, reason);
                        res->books_agree = false;
                }
                transfer_book_digest(nd->book, digest);
                if (!have)
                        memcpy(first, digest, sizeof(first));
                have = true;
                if (memcmp(first, digest, sizeof(first)) != 0)
                        res->books_agree = false;
        }
        /* Conflicts across nodes: one honest node delivered a, another b. */
        for (size_t pi = 0; pi < done; pi++) {
                const struct payment *p = &S->payments[pi];

                if (p->double_spend && p->delivered[0] > 0 && p->delivered[1] > 0)
                        res->conflicts++;
                if (p->double_spend) {
                        bool all = true;

                        for (size_t i = 0; i < n && all; i++)
                                if (S->nodes[i].d)
                                        all = dissemination_is_banned(S->nodes[i].d, S->nodes[p->payer].pk);
                        res->banned_everywhere += all;
                }
        }
        res->verifications_per_node = (double) S->verifications / (double) S->n_honest / (double) done;
        res->received_verified_per_node = (double) verified / (double) S->n_honest / (double) done;
        res->received_per_node = (double) received / (double) S->n_honest / (double) done;

        printf("N = %zu: %zu honest, %zu Byzantine (silent; half of them also echo and ready both sides of\n"
               "every double spend), %.0f%% loss, latency 15-25 ms; %zu payments, one every %llu ms, %zu of them\n"
               "double spends; set-up %.1f s, run %.1f s (wall clock)\n",
               n, S->n_honest, n - S->n_honest, loss * 100, done, PAYMENT_GAP / MSEC, n_double, res->setup_s,
               res->wall_s);
        printf("  delivery at every honest node, honest payments: p50 %.1f ms, p95 %.1f ms, max %.1f ms "
               "(%zu of %zu not everywhere)\n",
               res->p50_ms, res->p95_ms, res->max_ms, res->undelivered, res->honest_payments);
        printf("  sent per node per payment: %.0f messages, %.0f bytes (all: retries, WANTs, fraud proofs)\n",
               res->msgs_per_node, res->bytes_per_node);
        printf("    honest payment: %.0f messages, %.0f bytes; double spend: %.0f messages, %.0f bytes\n",
               res->honest_msgs, res->honest_bytes, res->double_msgs, res->double_bytes);
        printf("    by kind (whole run): ");
        for (size_t k = 0; k < N_KINDS; k++)
                printf("%s %llu%s", kind_name[k], (unsigned long long) S->messages[k], k + 1 < N_KINDS ? ", " : "");
        printf("; lost %llu\n", (unsigned long long) S->lost);
        printf("  Ed25519 verifications per honest node per payment: %.1f (%.1f of messages received, of %.0f "
               "received)\n",
               res->verifications_per_node, res->received_verified_per_node, res->received_per_node);
        printf("  conflicting deliveries: %llu; double spenders banned at every honest node: %llu of %zu; "
               "honest books agree: %s\n\n",
               (unsigned long long) res->conflicts, (unsigned long long) res->banned_everywhere, n_double,
               res->books_agree ? "yes" : "NO");
        fflush(stdout);
        sim_free();
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "nodes", required_argument, NULL, 'n' },
                { "payments", required_argument, NULL, 'p' },
                { "loss", required_argument, NULL, 'l' },
                { "byzantine", required_argument, NULL, 'b' },
                { "seed", required_argument, NULL, 's' },
                { "wall", required_argument, NULL, 'w' },
                { "check", no_argument, NULL, 'C' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        size_t sizes[8], n_sizes = 0, n_payments = 20;
        double loss = 0.01, byzantine = 0.10, wall = 0;
        uint64_t seed = 0x5eed5eed12345678ull;
        bool check = false, ok = true;
        int opt;

        while ((opt = getopt_long(argc, argv, "n:p:l:b:s:w:h", options, NULL)) >= 0)
                switch (opt) {
                case 'n': {
                        long v = atol(optarg);

                        if (v < 10 || v > 100000 || n_sizes >= 8) {
                                fprintf(stderr, "-n: 10 to 100000 nodes, at most 8 sizes\n");
                                return EXIT_FAILURE;
                        }
                        sizes[n_sizes++] = (size_t) v;
                        break;
                }
                case 'p': {
                        long v = atol(optarg);

                        if (v < 1 || v > 100000) {
                                fprintf(stderr, "-p: 1 to 100000 payments\n");
                                return EXIT_FAILURE;
                        }
                        n_payments = (size_t) v;
                        break;
                }
                case 'l':
                        loss = atof(optarg);
                        if (!(loss >= 0 && loss < 0.5)) {
                                fprintf(stderr, "-l: a loss in [0, 0.5)\n");
                                return EXIT_FAILURE;
                        }
                        break;
                case 'b':
                        byzantine = atof(optarg);
                        if (!(byzantine >= 0 && byzantine < 0.33)) {
                                fprintf(stderr, "-b: a Byzantine share in [0, 0.33)\n");
                                return EXIT_FAILURE;
                        }
                        break;
                case 's':
                        seed = strtoull(optarg, NULL, 0) | 1;
                        break;
                case 'w':
                        wall = atof(optarg);
                        break;
                case 'C':
                        check = true;
                        break;
                case 'h':
                        printf("%s [-n N]... [-p PAYMENTS] [-l LOSS] [-b SHARE] [-s SEED] [-w SECONDS] [--check]\n\n"
                               "Simulates N nodes running the dissemination of transfers (Bracha's broadcast,\n"
                               "quorums weighted by credits) in virtual time: latency 15-25 ms, LOSS of the\n"
                               "messages lost (default 0.01), a SHARE of Byzantine nodes (default 0.10) that\n"
                               "are silent, echo both sides of double spends and make one in five payments a\n"
                               "double spend.  PAYMENTS (default 20) one every 100 ms, or as many as fit in\n"
                               "SECONDS of wall clock.  Default size: 1000 (10000 is an N^2 broadcast: about\n"
                               "75 GB of books and half an hour of CPU per payment; see daemon/README.md).\n"
                               "--check: exit 1 unless no honest node delivered conflicting transfers, every\n"
                               "honest payment reached every honest node, every double spender is banned\n"
                               "everywhere and every honest book agrees.\n",
                               argv[0]);
                        return EXIT_SUCCESS;
                default:
                        return EXIT_FAILURE;
                }
        if (sodium_init() < 0)
                return EXIT_FAILURE;
        if (n_sizes == 0)
                sizes[n_sizes++] = 1000;

        for (size_t k = 0; k < n_sizes; k++) {
                struct result r;

                run(sizes[k], n_payments, loss, byzantine, seed, wall, &r);
                if (r.conflicts > 0 || !r.books_agree || r.undelivered > 0 ||
                    r.banned_everywhere < r.payments - r.honest_payments)
                        ok = false;
        }
        if (check)
                printf("check: %s\n", ok ? "passed" : "FAILED");
        return !check || ok ? EXIT_SUCCESS : EXIT_FAILURE;
}

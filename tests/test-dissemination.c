/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The dissemination of transfers, driven message by message: a simulated
 * swarm of honest nodes (each a dissemination over its own book), a
 * message queue delivered in a random order (seeded), loss, nodes that are
 * down, and Byzantine nodes whose messages the tests write by hand. */

#include <criterion/criterion.h>
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "dissemination.h"
#include "macro.h"
#include "swarm.pb-c.h"

#define MAX_NODES 12

struct sim;

struct node {
        uint8_t pk[TRANSFER_KEY_SIZE];
        uint8_t sk[64];
        struct transfer_book *book;
        struct dissemination *d;        /* NULL: Byzantine, driven by the test */
        struct sim *sim;
        bool down;                      /* drops everything sent to it */
        size_t frauds;                  /* io->fraud calls */
        size_t refusals;
        uint64_t seq;                   /* the next seq it signs */
};

struct message {
        size_t from, to;
        uint8_t *data;
        size_t size;
};

struct sim {
        struct node nodes[MAX_NODES];
        size_t n;
        size_t issuer;                  /* index of the issuer's node */
        struct message *queue;
        size_t n_queue;
        uint64_t now;
        uint64_t rng;
        unsigned drop_percent;
};

static struct sim sim;

static uint64_t rnd(void) {
        /* xorshift64*: seeded, so a failure replays. */
        sim.rng ^= sim.rng >> 12;
        sim.rng ^= sim.rng << 25;
        sim.rng ^= sim.rng >> 27;
        return sim.rng * 2685821657736338717ULL;
}

static size_t index_of(const uint8_t *key) {
        for (size_t i = 0; i < sim.n; i++)
                if (memcmp(sim.nodes[i].pk, key, TRANSFER_KEY_SIZE) == 0)
                        return i;
        cr_assert_fail("message to an unknown node");
        return 0;
}

static void enqueue(size_t from, size_t to, const uint8_t *data, size_t size) {
        struct message *q;

        if (sim.nodes[to].down || !sim.nodes[to].d || (sim.drop_percent > 0 && rnd() % 100 < sim.drop_percent))
                return;
        q = reallocarray(sim.queue, sim.n_queue + 1, sizeof(*q));
        cr_assert_not_null(q);
        sim.queue = q;
        q[sim.n_queue] = (struct message) { .from = from, .to = to, .data = malloc(size), .size = size };
        cr_assert_not_null(q[sim.n_queue].data);
        memcpy(q[sim.n_queue].data, data, size);
        sim.n_queue++;
}

static uint64_t io_now(void *userdata) {
        return sim.now;
}

static void io_send(void *userdata, const uint8_t to[TRANSFER_KEY_SIZE], const uint8_t *data, size_t size) {
        struct node *n = userdata;

        enqueue((size_t) (n - sim.nodes), index_of(to), data, size);
}

static void io_fraud(void *userdata, const struct transfer *a, const struct transfer *b) {
        struct node *n = userdata;

        cr_assert_eq(transfer_fraud_proof_check(a, b, NULL), 0);
        n->frauds++;
}

static void io_refused(void *userdata, const struct transfer *t, int error, const char *reason) {
        struct node *n = userdata;

        cr_assert_lt(error, 0);
        cr_assert_not_null(reason);
        n->refusals++;
}

static void io_delivered(void *userdata, const struct transfer *t, const uint8_t id[TRANSFER_ID_SIZE]) {
        struct node *n = userdata;
        const char *reason;

        cr_assert(transfer_book_has(n->book, id));
        cr_assert_eq(transfer_book_check_invariants(n->book, &reason), 0, "%s", reason);
}

/* n nodes, node 0 the issuer; the nodes listed in byzantine run no
 * dissemination (the test speaks for them). */
static void sim_start_seeded(size_t n, const size_t *byzantine, size_t n_byzantine, uint64_t seed) {
        struct dissemination_config c;
        uint8_t peers[MAX_NODES][TRANSFER_KEY_SIZE];

        cr_assert_geq(sodium_init(), 0);
        cr_assert_leq(n, MAX_NODES);
        sim = (struct sim) { .n = n, .issuer = 0, .rng = seed, .now = 1000 };
        dissemination_config_default(&c);
        for (size_t i = 0; i < n; i++) {
                crypto_sign_keypair(sim.nodes[i].pk, sim.nodes[i].sk);
                memcpy(peers[i], sim.nodes[i].pk, TRANSFER_KEY_SIZE);
                sim.nodes[i].seq = 1;
        }
        for (size_t i = 0; i < n; i++) {
                struct node *node = &sim.nodes[i];
                struct dissemination_io io = {
                        .userdata = node,
                        .now_usec = io_now,
                        .send = io_send,
                        .fraud = io_fraud,
                        .refused = io_refused,
                        .delivered = io_delivered,
                };
                bool byz = false;

                for (size_t k = 0; k < n_byzantine; k++)
                        byz = byz || byzantine[k] == i;
                node->sim = &sim;
                node->book = transfer_book_new((const uint8_t (*)[TRANSFER_KEY_SIZE]) sim.nodes[0].pk, 1);
                cr_assert_not_null(node->book);
                if (byz)
                        continue;
                cr_assert_eq(dissemination_new(&c, &io, node->pk, node->book, &node->d), 0);
                cr_assert_eq(dissemination_set_peers(node->d, (const uint8_t (*)[TRANSFER_KEY_SIZE]) peers, n), 0);
        }
}

static void sim_start(size_t n, const size_t *byzantine, size_t n_byzantine) {
        sim_start_seeded(n, byzantine, n_byzantine, 0x9e3779b97f4a7c15ULL);
}

static void sim_stop(void) {
        for (size_t i = 0; i < sim.n_queue; i++)
                free(sim.queue[i].data);
        free(sim.queue);
        for (size_t i = 0; i < sim.n; i++) {
                dissemination_free(sim.nodes[i].d);
                transfer_book_free(sim.nodes[i].book);
        }
        sim = (struct sim) {};
}

/* Delivers queued messages in a random order; when none is left, moves
 * the clock to the next deadline and ticks.  Until nothing is queued or
 * due, or the clock passes limit_usec. */
static void sim_run(uint64_t limit_usec) {
        uint64_t end = sim.now + limit_usec;

        for (;;) {
                while (sim.n_queue > 0) {
                        size_t k = rnd() % sim.n_queue;
                        struct message m = sim.queue[k];

                        sim.queue[k] = sim.queue[--sim.n_queue];
                        if (!sim.nodes[m.to].down)
                                (void) dissemination_receive(sim.nodes[m.to].d, sim.nodes[m.from].pk, m.data,
                                                             m.size);
                        free(m.data);
                }
                uint64_t next = UINT64_MAX;
                for (size_t i = 0; i < sim.n; i++)
                        if (sim.nodes[i].d && !sim.nodes[i].down) {
                                uint64_t t = dissemination_next_deadline(sim.nodes[i].d);
                                if (t < next)
                                        next = t;
                        }
                if (next == UINT64_MAX || next > end)
                        return;
                if (next > sim.now)
                        sim.now = next;
                for (size_t i = 0; i < sim.n; i++)
                        if (sim.nodes[i].d && !sim.nodes[i].down)
                                dissemination_tick(sim.nodes[i].d);
        }
}

/* A transfer from payer's next seq; deps: what payer's own book holds
 * pending to it, when with_deps (a Byzantine payer's book is empty: it
 * reads the issuer's). */
static void make(struct transfer *t, size_t payer, size_t payee, uint64_t amount, bool with_deps) {
        struct node *p = &sim.nodes[payer];
        const struct transfer_book *book = p->d ? p->book : sim.nodes[sim.issuer].book;
        uint8_t ids[TRANSFER_MAX_DEPS][TRANSFER_ID_SIZE];
        size_t n = with_deps ? transfer_book_pending(book, p->pk, ids, TRANSFER_MAX_DEPS) : 0;

        *t = (struct transfer) { .seq = p->seq++, .amount = amount, .n_deps = n };
        memcpy(t->payer, p->pk, TRANSFER_KEY_SIZE);
        memcpy(t->payee, sim.nodes[payee].pk, TRANSFER_KEY_SIZE);
        if (n > 0) {
                t->deps = malloc(n * TRANSFER_ID_SIZE);
                cr_assert_not_null(t->deps);
                memcpy(t->deps, ids, n * TRANSFER_ID_SIZE);
        }
        cr_assert_eq(transfer_sign(t, p->sk), 0);
}

/* An honest node pays (or the issuer mints) and the swarm settles. */
static void pay(size_t payer, size_t payee, uint64_t amount, uint8_t id[TRANSFER_ID_SIZE]) {
        _cleanup_(transfer_clear) struct transfer t = {};

        make(&t, payer, payee, amount, payer != sim.issuer);
        if (id)
                transfer_id(&t, id);
        cr_assert_eq(dissemination_broadcast(sim.nodes[payer].d, &t), 0);
        sim_run(60 * 1000 * 1000);
}

/* A Byzantine node says kind about t to node to. */
static void say(size_t from, size_t to, enum dissemination_kind kind, const struct transfer *t) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t n;

        cr_assert_eq(dissemination_encode_transfer(kind, t, &buf, &n), 0);
        enqueue(from, to, buf, n);
}

/* Every node that runs the protocol (and is up) has the same book. */
static void assert_books_agree(void) {
        uint8_t first[32], digest[32];
        bool have = false;

        for (size_t i = 0; i < sim.n; i++) {
                const char *reason;

                if (!sim.nodes[i].d || sim.nodes[i].down)
                        continue;
                cr_assert_eq(transfer_book_check_invariants(sim.nodes[i].book, &reason), 0, "%s", reason);
                transfer_book_digest(sim.nodes[i].book, digest);
                if (!have) {
                        memcpy(first, digest, 32);
                        have = true;
                }
                cr_assert_arr_eq(first, digest, 32, "node %zu's book differs", i);
        }
}

static uint64_t held(size_t at, size_t who) {
        struct transfer_account a;

        transfer_book_account(sim.nodes[at].book, sim.nodes[who].pk, &a);
        return a.balance + a.pending;
}

/* The issuer mints amount to each of nodes 1..end-1. */
static void fund(size_t end, uint64_t amount) {
        for (size_t i = 1; i < end; i++) {
                _cleanup_(transfer_clear) struct transfer t = {};

                make(&t, sim.issuer, i, amount, false);
                if (sim.nodes[sim.issuer].d)
                        cr_assert_eq(dissemination_broadcast(sim.nodes[sim.issuer].d, &t), 0);
                sim_run(60 * 1000 * 1000);
        }
}

static void fund_all(uint64_t amount) {
        fund(sim.n, amount);
}

TestSuite(dissemination, .fini = sim_stop);

Test(dissemination, mints_reach_every_node_from_an_empty_supply) {
        sim_start(5, NULL, 0);
        fund_all(100);
        for (size_t i = 0; i < sim.n; i++) {
                cr_assert_eq(transfer_book_supply(sim.nodes[i].book), 400, "node %zu", i);
                cr_assert_eq(held(i, 3), 100);
        }
        assert_books_agree();
}

Test(dissemination, honest_payment_is_delivered_everywhere_with_bounded_messages_per_node) {
        uint64_t before[MAX_NODES];
        uint8_t id[TRANSFER_ID_SIZE];

        sim_start(8, NULL, 0);
        fund_all(100);
        for (size_t i = 0; i < sim.n; i++)
                before[i] = dissemination_get_stats(sim.nodes[i].d)->sent_messages;
        pay(1, 2, 60, id);
        for (size_t i = 0; i < sim.n; i++) {
                uint64_t sent = dissemination_get_stats(sim.nodes[i].d)->sent_messages - before[i];

                cr_assert_eq(dissemination_state(sim.nodes[i].d, id), DISSEMINATION_DELIVERED, "node %zu", i);
                cr_assert_eq(held(i, 1), 40);
                cr_assert_eq(held(i, 2), 160);
                /* An ECHO and a READY to each peer, and at most one READY
                 * in answer to each late ECHO. */
                cr_assert_leq(sent, 3 * (sim.n - 1), "node %zu sent %llu messages", i, (unsigned long long) sent);
                cr_assert_geq(sent, 2 * (sim.n - 1));
        }
        assert_books_agree();
}

Test(dissemination, payment_spending_what_was_just_received_is_delivered_after_its_dependency) {
        uint8_t id1[TRANSFER_ID_SIZE], id2[TRANSFER_ID_SIZE];

        sim_start(6, NULL, 0);
        fund_all(100);
        /* Node 5 misses the first payment altogether. */
        sim.nodes[5].down = true;
        pay(1, 2, 70, id1);
        sim.nodes[5].down = false;
        cr_assert_eq(dissemination_state(sim.nodes[5].d, id1), DISSEMINATION_UNKNOWN);

        /* Node 2 spends 150: its 100 and the 70 it was paid (a dependency
         * node 5 never saw: it pulls it). */
        pay(2, 3, 150, id2);
        for (size_t i = 0; i < sim.n; i++) {
                cr_assert_eq(dissemination_state(sim.nodes[i].d, id1), DISSEMINATION_DELIVERED, "node %zu", i);
                cr_assert_eq(dissemination_state(sim.nodes[i].d, id2), DISSEMINATION_DELIVERED, "node %zu", i);
                cr_assert_eq(held(i, 2), 20);
                cr_assert_eq(held(i, 3), 250);
        }
        cr_assert_gt(dissemination_get_stats(sim.nodes[5].d)->wants_sent, 0);
        assert_books_agree();
}

Test(dissemination, payments_reach_every_node_despite_lost_messages) {
        uint8_t ids[4][TRANSFER_ID_SIZE];

        sim_start(7, NULL, 0);
        fund_all(100);
        sim.drop_percent = 25;
        pay(1, 2, 10, ids[0]);
        pay(3, 4, 20, ids[1]);
        pay(2, 5, 105, ids[2]);
        pay(6, 1, 30, ids[3]);
        sim.drop_percent = 0;
        sim_run(60 * 1000 * 1000);
        for (size_t i = 0; i < sim.n; i++)
                for (size_t k = 0; k < 4; k++)
                        cr_assert_eq(dissemination_state(sim.nodes[i].d, ids[k]), DISSEMINATION_DELIVERED,
                                     "node %zu, payment %zu: %s", i, k,
                                     dissemination_state_to_string(dissemination_state(sim.nodes[i].d, ids[k])));
        /* The losses mattered: someone had to send again (which node
         * depends on the keys, made anew each run). */
        {
                uint64_t retries = 0;
                for (size_t i = 0; i < sim.n; i++)
                        retries += dissemination_get_stats(sim.nodes[i].d)->retries;
                cr_assert_gt(retries, 0);
        }
        assert_books_agree();
}

/* Mallory (node 6, 100 of 600 credits) signs two transfers for its seq 1
 * and shows each to half of the honest nodes. */
static void double_spend(size_t mallory, const size_t *colluders, size_t n_colluders, uint8_t id_a[32],
                         uint8_t id_b[32]) {
        _cleanup_(transfer_clear) struct transfer a = {}, b = {};

        make(&a, mallory, 1, 80, true);
        sim.nodes[mallory].seq = 1;
        make(&b, mallory, 2, 80, true);
        transfer_id(&a, id_a);
        transfer_id(&b, id_b);
        for (size_t i = 0; i < sim.n; i++) {
                if (i == mallory || !sim.nodes[i].d)
                        continue;
                say(mallory, i, DISSEMINATION_ECHO, i % 2 ? &a : &b);
                say(mallory, i, DISSEMINATION_READY, i % 2 ? &a : &b);
        }
        /* Colluders vouch for both, to everyone. */
        for (size_t k = 0; k < n_colluders; k++)
                for (size_t i = 0; i < sim.n; i++) {
                        if (!sim.nodes[i].d)
                                continue;
                        say(colluders[k], i, DISSEMINATION_ECHO, &a);
                        say(colluders[k], i, DISSEMINATION_ECHO, &b);
                        say(colluders[k], i, DISSEMINATION_READY, &a);
                        say(colluders[k], i, DISSEMINATION_READY, &b);
                }
        sim_run(60 * 1000 * 1000);
}

static void assert_at_most_one_delivered(size_t mallory, const uint8_t id_a[32], const uint8_t id_b[32]) {
        size_t with_a = 0, with_b = 0, honest = 0;

        for (size_t i = 0; i < sim.n; i++) {
                if (!sim.nodes[i].d)
                        continue;
                honest++;
                with_a += dissemination_state(sim.nodes[i].d, id_a) == DISSEMINATION_DELIVERED;
                with_b += dissemination_state(sim.nodes[i].d, id_b) == DISSEMINATION_DELIVERED;
                cr_assert(dissemination_is_banned(sim.nodes[i].d, sim.nodes[mallory].pk), "node %zu", i);
                cr_assert_eq(sim.nodes[i].frauds, 1, "node %zu saw %zu fraud proofs", i, sim.nodes[i].frauds);
        }
        cr_assert(with_a == 0 || with_b == 0, "%zu honest nodes delivered one, %zu the other", with_a, with_b);
        /* Whatever one honest node delivered, they all did. */
        cr_assert(with_a == 0 || with_a == honest);
        cr_assert(with_b == 0 || with_b == honest);
        assert_books_agree();
}

/* Which of the two wins (if any) depends on the order messages arrive in:
 * every scenario runs with many orders. */
#define DOUBLE_SPEND_SEEDS 40

Test(dissemination, double_spend_to_two_halves_is_delivered_by_no_two_honest_nodes_and_bans_the_payer) {
        const size_t byz[] = { 6 };
        uint8_t a[32], b[32];

        for (uint64_t seed = 1; seed <= DOUBLE_SPEND_SEEDS; seed++) {
                sim_start_seeded(7, byz, 1, seed * 0x9e3779b97f4a7c15ULL);
                fund_all(100);
                double_spend(6, NULL, 0, a, b);
                assert_at_most_one_delivered(6, a, b);
                sim_stop();
        }
}

Test(dissemination, double_spend_with_colluding_witnesses_under_a_third_is_delivered_at_most_once) {
        /* Mallory and two colluders hold 300 of 1100 credits (< 1/3). */
        const size_t byz[] = { 8, 9, 10 };
        const size_t colluders[] = { 9, 10 };
        uint8_t a[32], b[32];

        for (uint64_t seed = 1; seed <= DOUBLE_SPEND_SEEDS; seed++) {
                sim_start_seeded(12, byz, 3, seed * 0x9e3779b97f4a7c15ULL);
                fund_all(100);
                double_spend(8, colluders, 2, a, b);
                assert_at_most_one_delivered(8, a, b);
                sim_stop();
        }
}

Test(dissemination, double_spend_after_delivery_is_refused_everywhere_and_proven) {
        const size_t byz[] = { 5 };
        _cleanup_(transfer_clear) struct transfer a = {}, b = {};
        uint8_t id_a[32], id_b[32];

        sim_start(6, byz, 1);
        fund_all(100);
        make(&a, 5, 1, 90, true);
        sim.nodes[5].seq = 1;
        make(&b, 5, 2, 90, true);
        transfer_id(&a, id_a);
        transfer_id(&b, id_b);
        for (size_t i = 0; i < 5; i++)
                say(5, i, DISSEMINATION_ECHO, &a);
        sim_run(60 * 1000 * 1000);
        for (size_t i = 0; i < 5; i++)
                cr_assert_eq(dissemination_state(sim.nodes[i].d, id_a), DISSEMINATION_DELIVERED);

        /* Later, the conflicting one to a single node. */
        say(5, 3, DISSEMINATION_ECHO, &b);
        say(5, 3, DISSEMINATION_READY, &b);
        sim_run(60 * 1000 * 1000);
        for (size_t i = 0; i < 5; i++) {
                cr_assert_neq(dissemination_state(sim.nodes[i].d, id_b), DISSEMINATION_DELIVERED);
                cr_assert(dissemination_is_banned(sim.nodes[i].d, sim.nodes[5].pk), "node %zu", i);
                cr_assert_eq(held(i, 1), 190);
        }
        assert_books_agree();
}

Test(dissemination, banned_payer_gets_no_echo_for_later_transfers) {
        const size_t byz[] = { 5 };
        _cleanup_(transfer_clear) struct transfer a = {}, b = {}, c = {};
        uint8_t id_c[32];

        sim_start(6, byz, 1);
        fund_all(100);
        make(&a, 5, 1, 10, true);
        sim.nodes[5].seq = 1;
        make(&b, 5, 2, 10, true);
        cr_assert_eq(dissemination_add_fraud_proof(sim.nodes[0].d, &a, &b), 0);
        sim_run(60 * 1000 * 1000);
        for (size_t i = 0; i < 5; i++)
                cr_assert(dissemination_is_banned(sim.nodes[i].d, sim.nodes[5].pk), "node %zu", i);

        /* A third transfer for that seq, the first any honest node sees
         * for it: none echoes it, so it goes nowhere. */
        sim.nodes[5].seq = 1;
        make(&c, 5, 3, 10, false);
        transfer_id(&c, id_c);
        for (size_t i = 0; i < 5; i++)
                say(5, i, DISSEMINATION_ECHO, &c);
        sim_run(60 * 1000 * 1000);
        for (size_t i = 0; i < 5; i++)
                cr_assert_neq(dissemination_state(sim.nodes[i].d, id_c), DISSEMINATION_DELIVERED);
}

Test(dissemination, sybil_without_issued_credits_pays_no_one) {
        /* Node 5 is the Sybil: minted 100, which it spends first. */
        const size_t byz[] = { 5 };
        _cleanup_(transfer_clear) struct transfer spend = {}, t = {};
        uint8_t id[32];

        sim_start(6, byz, 1);
        fund_all(100);
        make(&spend, 5, 1, 100, true);
        for (size_t i = 0; i < 5; i++)
                say(5, i, DISSEMINATION_ECHO, &spend);
        sim_run(60 * 1000 * 1000);
        cr_assert_eq(held(0, 5), 0);

        make(&t, 5, 2, 1000, true);
        transfer_id(&t, id);
        for (size_t i = 0; i < 5; i++) {
                say(5, i, DISSEMINATION_ECHO, &t);
                say(5, i, DISSEMINATION_READY, &t);
        }
        sim_run(60 * 1000 * 1000);
        for (size_t i = 0; i < 5; i++) {
                enum dissemination_state s = dissemination_state(sim.nodes[i].d, id);

                cr_assert_eq(s, DISSEMINATION_REFUSED, "node %zu: %s", i, dissemination_state_to_string(s));
                cr_assert_eq(held(i, 2), 100);
                cr_assert_eq(held(i, 1), 200);
                cr_assert_eq(transfer_book_supply(sim.nodes[i].book), 500);
        }
        assert_books_agree();
}

Test(dissemination, self_dealing_between_two_sybils_creates_no_credits) {
        /* Sybils 5 and 6 hold nothing; they pay each other back and forth,
         * each naming the other's transfer as a dependency. */
        const size_t byz[] = { 5, 6 };
        _cleanup_(transfer_clear) struct transfer t1 = {}, t2 = {};
        uint8_t id1[32], id2[32];

        sim_start(7, byz, 2);
        fund(5, 100);
        make(&t1, 5, 6, 500, false);
        transfer_id(&t1, id1);
        t2 = (struct transfer) { .seq = 1, .amount = 500, .n_deps = 1 };
        memcpy(t2.payer, sim.nodes[6].pk, 32);
        memcpy(t2.payee, sim.nodes[5].pk, 32);
        t2.deps = malloc(TRANSFER_ID_SIZE);
        cr_assert_not_null(t2.deps);
        memcpy(t2.deps[0], id1, TRANSFER_ID_SIZE);
        cr_assert_eq(transfer_sign(&t2, sim.nodes[6].sk), 0);
        transfer_id(&t2, id2);
        for (size_t i = 0; i < 5; i++)
                for (size_t s = 5; s <= 6; s++) {
                        say(s, i, DISSEMINATION_ECHO, s == 5 ? &t1 : &t2);
                        say(s, i, DISSEMINATION_READY, s == 5 ? &t1 : &t2);
                }
        sim_run(60 * 1000 * 1000);
        for (size_t i = 0; i < 5; i++) {
                cr_assert_neq(dissemination_state(sim.nodes[i].d, id1), DISSEMINATION_DELIVERED);
                cr_assert_neq(dissemination_state(sim.nodes[i].d, id2), DISSEMINATION_DELIVERED);
                cr_assert_eq(held(i, 5) + held(i, 6), 0);
                cr_assert_eq(transfer_book_supply(sim.nodes[i].book), 400);
        }
        assert_books_agree();
}

Test(dissemination, transfer_over_the_balance_is_refused_by_every_node_alike) {
        _cleanup_(transfer_clear) struct transfer t = {};
        uint8_t id[32];

        sim_start(5, NULL, 0);
        fund_all(100);
        /* An honest node's key, used by a buggy payer: 101 of 100. */
        make(&t, 2, 3, 101, true);
        transfer_id(&t, id);
        cr_assert_eq(dissemination_broadcast(sim.nodes[2].d, &t), 0);
        sim_run(60 * 1000 * 1000);
        for (size_t i = 0; i < sim.n; i++) {
                cr_assert_eq(dissemination_state(sim.nodes[i].d, id), DISSEMINATION_REFUSED, "node %zu", i);
                cr_assert_eq(sim.nodes[i].refusals, 1);
                cr_assert_eq(held(i, 2), 100);
        }
        assert_books_agree();
}

Test(dissemination, replayed_transfer_changes_nothing) {
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_(transfer_clear) struct transfer t = {};
        uint8_t digest[32], again[32];
        size_t n;

        sim_start(4, NULL, 0);
        fund_all(100);
        make(&t, 1, 2, 10, true);
        cr_assert_eq(dissemination_broadcast(sim.nodes[1].d, &t), 0);
        sim_run(60 * 1000 * 1000);
        cr_assert_eq(dissemination_broadcast(sim.nodes[1].d, &t), -EALREADY);
        transfer_book_digest(sim.nodes[3].book, digest);
        cr_assert_eq(dissemination_encode_transfer(DISSEMINATION_READY, &t, &buf, &n), 0);
        for (int k = 0; k < 3; k++)
                cr_assert_eq(dissemination_receive(sim.nodes[3].d, sim.nodes[1].pk, buf, n), 0);
        sim_run(60 * 1000 * 1000);
        transfer_book_digest(sim.nodes[3].book, again);
        cr_assert_arr_eq(digest, again, 32);
        cr_assert_eq(held(3, 2), 110);
}

static int receive_from(size_t to, size_t from, const uint8_t *data, size_t size) {
        return dissemination_receive(sim.nodes[to].d, sim.nodes[from].pk, data, size);
}

Test(dissemination, malformed_messages_are_refused_with_reasons) {
        _cleanup_(transfer_clear) struct transfer t = {};
        _cleanup_free_ uint8_t *buf = NULL, *wire = NULL, *fraud = NULL;
        Swarm__CreditMessage m = SWARM__CREDIT_MESSAGE__INIT;
        Swarm__TransferWant w = SWARM__TRANSFER_WANT__INIT;
        Swarm__TransferSlot slot = SWARM__TRANSFER_SLOT__INIT, *slots[1] = { &slot };
        uint8_t garbage[40], big[DISSEMINATION_MESSAGE_MAX + 1] = {};
        size_t n, nw, nf;

        sim_start(4, NULL, 0);
        fund_all(100);
        memset(garbage, 0xff, sizeof(garbage));
        cr_assert_eq(receive_from(2, 1, garbage, sizeof(garbage)), -EBADMSG);
        cr_assert_eq(receive_from(2, 1, big, sizeof(big)), -EBADMSG);

        /* A transfer whose signature does not verify. */
        make(&t, 1, 2, 10, true);
        cr_assert_eq(dissemination_encode_transfer(DISSEMINATION_ECHO, &t, &buf, &n), 0);
        buf[n - 1] ^= 1;
        cr_assert_eq(receive_from(2, 1, buf, n), -EBADMSG);

        /* Another version. */
        m.version = DISSEMINATION_VERSION + 1;
        m.body_case = SWARM__CREDIT_MESSAGE__BODY_WANT;
        m.want = &w;
        nw = protobuf_c_message_get_packed_size(&m.base);
        wire = malloc(nw);
        cr_assert_not_null(wire);
        protobuf_c_message_pack(&m.base, wire);
        cr_assert_eq(receive_from(2, 1, wire, nw), -EPROTONOSUPPORT);
        free(wire);

        /* A WANT with a short payer. */
        m.version = DISSEMINATION_VERSION;
        slot.payer = (ProtobufCBinaryData) { .len = 31, .data = sim.nodes[1].pk };
        slot.seq = 1;
        w.n_slots = 1;
        w.slots = slots;
        nw = protobuf_c_message_get_packed_size(&m.base);
        wire = malloc(nw);
        cr_assert_not_null(wire);
        protobuf_c_message_pack(&m.base, wire);
        cr_assert_eq(receive_from(2, 1, wire, nw), -EBADMSG);

        /* A "fraud proof" of one transfer twice proves nothing. */
        cr_assert_eq(dissemination_encode_fraud(&t, &t, &fraud, &nf), 0);
        cr_assert_eq(receive_from(2, 3, fraud, nf), -EBADMSG);
        cr_assert_not(dissemination_is_banned(sim.nodes[2].d, sim.nodes[1].pk));

        cr_assert_eq(dissemination_get_stats(sim.nodes[2].d)->rejected_messages, 6);
}

Test(dissemination, seq_beyond_the_payers_window_is_refused) {
        struct dissemination_config c;
        _cleanup_(transfer_clear) struct transfer t = {};
        _cleanup_free_ uint8_t *buf = NULL;
        uint64_t wants;
        size_t n;

        sim_start(4, NULL, 0);
        fund_all(100);
        dissemination_config_default(&c);
        sim.nodes[1].seq = 1 + c.seq_window;
        make(&t, 1, 2, 10, false);
        cr_assert_eq(dissemination_encode_transfer(DISSEMINATION_ECHO, &t, &buf, &n), 0);
        cr_assert_eq(receive_from(2, 1, buf, n), -ERANGE);
        free(buf);
        buf = NULL;

        /* Just inside the window: taken, and the gap is pulled. */
        wants = dissemination_get_stats(sim.nodes[2].d)->wants_sent;
        transfer_clear(&t);
        sim.nodes[1].seq = c.seq_window;
        make(&t, 1, 2, 10, false);
        cr_assert_eq(dissemination_encode_transfer(DISSEMINATION_ECHO, &t, &buf, &n), 0);
        cr_assert_eq(receive_from(2, 1, buf, n), 0);
        cr_assert_eq(dissemination_get_stats(sim.nodes[2].d)->wants_sent, wants + 1);
}

Test(dissemination, payers_without_credits_share_a_bounded_number_of_slots) {
        struct dissemination_config c;
        uint8_t pk[32], sk[64];
        int r = 0;
        size_t taken = 0;

        sim_start(3, NULL, 0);
        fund_all(100);
        dissemination_config_default(&c);
        /* Fresh keys, each with one transfer it cannot pay. */
        for (size_t k = 0; k < c.max_unfunded + 10; k++) {
                struct transfer t = { .seq = 1, .amount = 5 };
                _cleanup_free_ uint8_t *buf = NULL;
                size_t n;

                crypto_sign_keypair(pk, sk);
                memcpy(t.payer, pk, 32);
                memcpy(t.payee, sim.nodes[1].pk, 32);
                cr_assert_eq(transfer_sign(&t, sk), 0);
                cr_assert_eq(dissemination_encode_transfer(DISSEMINATION_ECHO, &t, &buf, &n), 0);
                r = receive_from(1, 2, buf, n);
                if (r == 0)
                        taken++;
        }
        cr_assert_eq(taken, c.max_unfunded);
        cr_assert_eq(r, -ENOBUFS);

        /* A funded payer still gets through. */
        {
                uint8_t id[32];

                pay(2, 1, 10, id);
                cr_assert_eq(dissemination_state(sim.nodes[1].d, id), DISSEMINATION_DELIVERED);
        }
}

Test(dissemination, broadcast_refuses_a_transfer_of_another_payer) {
        _cleanup_(transfer_clear) struct transfer t = {};

        sim_start(3, NULL, 0);
        fund_all(100);
        make(&t, 1, 2, 10, true);
        cr_assert_eq(dissemination_broadcast(sim.nodes[2].d, &t), -EINVAL);
}

Test(dissemination, node_that_was_away_catches_up_by_probing_one_peer) {
        uint8_t ids[3][TRANSFER_ID_SIZE], keys[MAX_NODES][TRANSFER_KEY_SIZE];

        sim_start(6, NULL, 0);
        fund(5, 100);
        /* Node 5 is away for every transfer: two mints, payments to it. */
        sim.nodes[5].down = true;
        {
                _cleanup_(transfer_clear) struct transfer m = {};

                make(&m, 0, 5, 40, false);
                transfer_id(&m, ids[0]);
                cr_assert_eq(dissemination_broadcast(sim.nodes[0].d, &m), 0);
                sim_run(60 * 1000 * 1000);
        }
        pay(1, 5, 30, ids[1]);
        pay(2, 3, 20, ids[2]);
        sim.nodes[5].down = false;
        cr_assert_eq(transfer_book_n_delivered(sim.nodes[5].book), 4);    /* the first four mints only */

        for (size_t i = 0; i < sim.n; i++)
                memcpy(keys[i], sim.nodes[i].pk, TRANSFER_KEY_SIZE);
        for (int round = 0; round < 4; round++) {
                dissemination_probe(sim.nodes[5].d, sim.nodes[1 + round % 4].pk,
                                    (const uint8_t (*)[TRANSFER_KEY_SIZE]) keys, sim.n);
                sim_run(60 * 1000 * 1000);
        }
        for (size_t k = 0; k < 3; k++)
                cr_assert_eq(dissemination_state(sim.nodes[5].d, ids[k]), DISSEMINATION_DELIVERED, "transfer %zu", k);
        cr_assert_eq(held(5, 5), 70);
        assert_books_agree();
}

Test(dissemination, senders_without_credits_are_listed_only_up_to_max_voters) {
        struct dissemination_config c;
        struct dissemination *d = NULL;
        struct dissemination_io io = { .userdata = &sim.nodes[1], .now_usec = io_now, .send = io_send };
        _cleanup_(transfer_clear) struct transfer t = {};
        _cleanup_free_ uint8_t *buf = NULL;
        size_t n;

        sim_start(4, NULL, 0);
        fund_all(100);
        dissemination_config_default(&c);
        c.max_voters = 2;
        /* A second dissemination over node 1's book, to drive by hand. */
        cr_assert_eq(dissemination_new(&c, &io, sim.nodes[1].pk, sim.nodes[1].book, &d), 0);
        make(&t, 2, 3, 10, true);
        cr_assert_eq(dissemination_encode_transfer(DISSEMINATION_ECHO, &t, &buf, &n), 0);
        for (int k = 0; k < 4; k++) {
                uint8_t pk[32], sk[64];

                crypto_sign_keypair(pk, sk);
                /* Our own ECHO is the first listed: one Sybil more fits. */
                cr_assert_eq(dissemination_receive(d, pk, buf, n), k < 1 ? 0 : -ENOBUFS, "sybil %d", k);
        }
        /* Holders of credits are always heard. */
        cr_assert_eq(dissemination_receive(d, sim.nodes[3].pk, buf, n), 0);
        cr_assert_eq(dissemination_receive(d, sim.nodes[2].pk, buf, n), 0);
        dissemination_free(d);
}

Test(dissemination, signature_is_verified_once_per_node_and_transfer) {
        uint64_t before[MAX_NODES];
        uint8_t id[TRANSFER_ID_SIZE];

        sim_start(8, NULL, 0);
        fund_all(100);
        for (size_t i = 0; i < sim.n; i++)
                before[i] = dissemination_get_stats(sim.nodes[i].d)->signatures_verified;
        pay(1, 2, 60, id);
        for (size_t i = 0; i < sim.n; i++) {
                uint64_t v = dissemination_get_stats(sim.nodes[i].d)->signatures_verified - before[i];

                cr_assert_eq(dissemination_state(sim.nodes[i].d, id), DISSEMINATION_DELIVERED, "node %zu", i);
                /* 2 × 7 ECHOs and READYs came, one verification: the payer
                 * checked its own at broadcast. */
                cr_assert_eq(v, i == 1 ? 0 : 1, "node %zu verified %llu signatures", i, (unsigned long long) v);
        }
}

Test(dissemination, known_transfer_with_another_signature_is_verified_and_refused) {
        _cleanup_(transfer_clear) struct transfer t = {}, bad = {};
        _cleanup_free_ uint8_t *buf = NULL, *good = NULL;
        size_t n, ng;

        sim_start(4, NULL, 0);
        fund_all(100);
        make(&t, 1, 2, 10, true);
        cr_assert_eq(transfer_copy(&t, &bad), 0);
        bad.signature[0] ^= 1;
        cr_assert_eq(dissemination_encode_transfer(DISSEMINATION_ECHO, &bad, &buf, &n), 0);
        cr_assert_eq(dissemination_encode_transfer(DISSEMINATION_ECHO, &t, &good, &ng), 0);

        /* In flight at node 3: the same id, a forged signature. */
        cr_assert_eq(receive_from(3, 1, good, ng), 0);
        cr_assert_eq(receive_from(3, 2, buf, n), -EBADMSG);
        sim_run(60 * 1000 * 1000);

        /* Delivered: the same. */
        cr_assert_eq(receive_from(3, 0, buf, n), -EBADMSG);
        cr_assert_eq(receive_from(3, 0, good, ng), 0);
}

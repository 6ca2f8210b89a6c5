/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Transports of two or three nodes in one process, on one sd-event loop,
 * bound at tcp://127.0.0.1:0.  Every wait is bounded. */

#include <criterion/criterion.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "transport.h"

#define MSEC 1000ULL
#define SEC (1000 * MSEC)
#define MAX_KEPT 2048

struct node {
        struct transport *t;
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];
        uint8_t sk[crypto_sign_SECRETKEYBYTES];
        /* What arrived, in order. */
        size_t received;
        uint8_t from[MAX_KEPT][WIRE_NODE_ID_SIZE];
        uint32_t seq[MAX_KEPT];
        size_t size[MAX_KEPT];
        /* Reply to every message with "ack" (to the sender's endpoint). */
        struct node *reply_to;
};

static sd_event *event;

static void setup(void) {
        cr_assert_geq(sodium_init(), 0);
        cr_assert_geq(sd_event_new(&event), 0);
}

static void teardown(void) {
        sd_event_unref(event);
}

TestSuite(transport, .init = setup, .fini = teardown, .timeout = 30);

static struct transport_config config_default(void) {
        return (struct transport_config) {
                .bind = "tcp://127.0.0.1:0",
                .max_message_size = 64 * 1024,
                .rate_per_second = 1e6,
                .rate_burst = 1000000,
                .send_queue = 2000,
        };
}

static void on_receive(struct transport *t, const uint8_t from[WIRE_NODE_ID_SIZE], const uint8_t *data,
                       size_t size, void *userdata) {
        struct node *n = userdata;

        if (n->received < MAX_KEPT) {
                memcpy(n->from[n->received], from, WIRE_NODE_ID_SIZE);
                n->seq[n->received] = 0;
                if (size >= sizeof(uint32_t))
                        memcpy(&n->seq[n->received], data, sizeof(uint32_t));
                n->size[n->received] = size;
        }
        n->received++;
        if (n->reply_to)
                cr_assert_eq(transport_send(t, n->reply_to->pk, transport_endpoint(n->reply_to->t),
                                            (const uint8_t *) "ack", 3), 0);
}

static void node_start(struct node *n, const struct transport_config *c) {
        memset(n, 0, sizeof(*n));
        crypto_sign_keypair(n->pk, n->sk);
        cr_assert_eq(transport_new(event, c, n->sk, on_receive, n, &n->t), 0);
        cr_assert_not_null(transport_endpoint(n->t));
}

static void node_stop(struct node *n) {
        n->t = transport_free(n->t);
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* Runs the loop until *count reaches want or timeout passes; returns
 * whether it did. */
static bool run_until(const size_t *count, size_t want, uint64_t timeout) {
        uint64_t deadline = now_usec() + timeout;

        while (*count < want && now_usec() < deadline)
                cr_assert_geq(sd_event_run(event, 10 * MSEC), 0);
        return *count >= want;
}

static void run_for(uint64_t duration) {
        uint64_t deadline = now_usec() + duration;

        while (now_usec() < deadline)
                cr_assert_geq(sd_event_run(event, 10 * MSEC), 0);
}

static int send_seq(struct node *from, struct node *to, uint32_t seq) {
        return transport_send(from->t, to->pk, transport_endpoint(to->t), (const uint8_t *) &seq, sizeof(seq));
}

Test(transport, endpoint_has_the_bound_port) {
        struct transport_config c = config_default();
        struct node a;

        node_start(&a, &c);
        cr_assert(strncmp(transport_endpoint(a.t), "tcp://127.0.0.1:", 16) == 0, "%s", transport_endpoint(a.t));
        cr_assert_neq(atoi(transport_endpoint(a.t) + 16), 0);
        node_stop(&a);
}

Test(transport, round_trip_delivers_authenticated_sender) {
        struct transport_config c = config_default();
        struct node a, b;

        node_start(&a, &c);
        node_start(&b, &c);
        b.reply_to = &a;

        cr_assert_eq(send_seq(&a, &b, 7), 0);
        cr_assert(run_until(&a.received, 1, 5 * SEC));
        cr_assert_eq(b.received, 1);
        cr_assert_eq(memcmp(b.from[0], a.pk, WIRE_NODE_ID_SIZE), 0);
        cr_assert_eq(b.seq[0], 7);
        cr_assert_eq(memcmp(a.from[0], b.pk, WIRE_NODE_ID_SIZE), 0);
        cr_assert_eq(a.size[0], 3);

        /* The connection is kept: no endpoint needed now. */
        cr_assert_eq(transport_send(a.t, b.pk, NULL, (const uint8_t *) "x", 1), 0);
        cr_assert(run_until(&b.received, 2, 5 * SEC));
        cr_assert_eq(transport_get_stats(b.t)->received, 2);
        cr_assert_eq(transport_get_stats(a.t)->sent, 2);
        node_stop(&a);
        node_stop(&b);
}

Test(transport, burst_arrives_complete_and_in_order) {
        struct transport_config c = config_default();
        struct node a, b;

        node_start(&a, &c);
        node_start(&b, &c);
        for (uint32_t i = 0; i < 1000; i++)
                cr_assert_eq(send_seq(&a, &b, i), 0);
        cr_assert(run_until(&b.received, 1000, 5 * SEC), "received %zu", b.received);
        for (uint32_t i = 0; i < 1000; i++) {
                cr_assert_eq(b.seq[i], i);
                cr_assert_eq(memcmp(b.from[i], a.pk, WIRE_NODE_ID_SIZE), 0);
        }
        run_for(100 * MSEC);
        cr_assert_eq(b.received, 1000);
        node_stop(&a);
        node_stop(&b);
}

/* A raw DEALER authenticated with X's key: the ROUTER delivers what it
 * sends as X, and nothing that claims another id. */
Test(transport, claim_of_another_id_is_dropped) {
        struct transport_config c = config_default();
        uint8_t x_pk[32], x_sk[64], y_pk[32], y_sk[64];
        uint8_t x_curve_pk[32], x_curve_sk[32], b_curve_pk[32], frame[36];
        struct node b;
        void *ctx, *s;
        int zero = 0;

        node_start(&b, &c);
        crypto_sign_keypair(x_pk, x_sk);
        crypto_sign_keypair(y_pk, y_sk);
        cr_assert_eq(crypto_sign_ed25519_pk_to_curve25519(x_curve_pk, x_pk), 0);
        cr_assert_eq(crypto_sign_ed25519_sk_to_curve25519(x_curve_sk, x_sk), 0);
        cr_assert_eq(crypto_sign_ed25519_pk_to_curve25519(b_curve_pk, b.pk), 0);

        ctx = zmq_ctx_new();
        s = zmq_socket(ctx, ZMQ_DEALER);
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
        /* The routing id claims Y too: it must count for nothing. */
        zmq_setsockopt(s, ZMQ_ROUTING_ID, y_pk, 32);
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, b_curve_pk, 32);
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, x_curve_pk, 32);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, x_curve_sk, 32);
        cr_assert_eq(zmq_connect(s, transport_endpoint(b.t)), 0);

        memcpy(frame, y_pk, 32);
        memcpy(frame + 32, "evil", 4);
        for (int i = 0; i < 10; i++)
                cr_assert_eq(zmq_send(s, frame, sizeof(frame), ZMQ_DONTWAIT), (int) sizeof(frame));
        /* Then the truth, over the same connection. */
        memcpy(frame, x_pk, 32);
        memcpy(frame + 32, "good", 4);
        cr_assert_eq(zmq_send(s, frame, sizeof(frame), ZMQ_DONTWAIT), (int) sizeof(frame));

        cr_assert(run_until(&b.received, 1, 5 * SEC));
        run_for(100 * MSEC);
        cr_assert_eq(b.received, 1);
        cr_assert_eq(memcmp(b.from[0], x_pk, 32), 0);
        cr_assert_eq(transport_get_stats(b.t)->dropped_invalid, 10);

        zmq_close(s);
        zmq_ctx_term(ctx);
        node_stop(&b);
}

/* A DEALER without CURVE cannot talk to a CURVE ROUTER at all, and a
 * frame too short to carry a claim is dropped by an insecure one. */
Test(transport, plaintext_peer_and_short_frames_are_refused) {
        struct transport_config c = config_default();
        struct node b, ib;
        void *ctx, *s, *s2;
        int zero = 0;

        node_start(&b, &c);
        c.insecure = true;
        node_start(&ib, &c);

        ctx = zmq_ctx_new();
        s = zmq_socket(ctx, ZMQ_DEALER);
        s2 = zmq_socket(ctx, ZMQ_DEALER);
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
        zmq_setsockopt(s2, ZMQ_LINGER, &zero, sizeof(zero));
        cr_assert_eq(zmq_connect(s, transport_endpoint(b.t)), 0);
        cr_assert_eq(zmq_connect(s2, transport_endpoint(ib.t)), 0);
        uint8_t frame[40] = {};
        memcpy(frame, b.pk, 32);        /* a valid id, but no CURVE */
        zmq_send(s, frame, sizeof(frame), ZMQ_DONTWAIT);
        zmq_send(s2, "short", 5, ZMQ_DONTWAIT);
        zmq_send(s2, "a", 1, ZMQ_DONTWAIT | ZMQ_SNDMORE);
        zmq_send(s2, "b", 1, ZMQ_DONTWAIT);

        size_t dropped = 0;
        uint64_t deadline = now_usec() + 5 * SEC;
        while (dropped < 2 && now_usec() < deadline) {
                cr_assert_geq(sd_event_run(event, 10 * MSEC), 0);
                dropped = transport_get_stats(ib.t)->dropped_invalid;
        }
        cr_assert_eq(dropped, 2);
        run_for(300 * MSEC);
        cr_assert_eq(b.received, 0);
        cr_assert_eq(ib.received, 0);

        zmq_close(s);
        zmq_close(s2);
        zmq_ctx_term(ctx);
        node_stop(&b);
        node_stop(&ib);
}

Test(transport, banned_peer_is_refused_at_handshake_until_unbanned) {
        struct transport_config c = config_default();
        struct node a, b;

        node_start(&a, &c);
        node_start(&b, &c);
        transport_ban(b.t, a.pk, true);

        cr_assert_eq(send_seq(&a, &b, 1), 0);
        uint64_t deadline = now_usec() + 5 * SEC;
        while (transport_get_stats(b.t)->refused_handshakes == 0 && now_usec() < deadline)
                cr_assert_geq(sd_event_run(event, 10 * MSEC), 0);
        cr_assert_geq(transport_get_stats(b.t)->refused_handshakes, 1);
        run_for(300 * MSEC);
        cr_assert_eq(b.received, 0);

        /* Unbanned, a new connection gets through. */
        transport_ban(b.t, a.pk, false);
        transport_disconnect(a.t, b.pk);
        cr_assert_eq(transport_send(a.t, b.pk, NULL, (const uint8_t *) "x", 1), -ENOTCONN);
        cr_assert_eq(send_seq(&a, &b, 2), 0);
        cr_assert(run_until(&b.received, 1, 5 * SEC));
        cr_assert_eq(b.seq[0], 2);
        cr_assert_eq(memcmp(b.from[0], a.pk, WIRE_NODE_ID_SIZE), 0);
        node_stop(&a);
        node_stop(&b);
}

Test(transport, ban_drops_messages_on_an_open_connection) {
        struct transport_config c = config_default();
        struct node a, b;

        node_start(&a, &c);
        node_start(&b, &c);
        cr_assert_eq(send_seq(&a, &b, 1), 0);
        cr_assert(run_until(&b.received, 1, 5 * SEC));

        transport_ban(b.t, a.pk, true);
        transport_ban(b.t, a.pk, true);         /* twice is once */
        for (uint32_t i = 0; i < 5; i++)
                cr_assert_eq(send_seq(&a, &b, i), 0);
        uint64_t deadline = now_usec() + 5 * SEC;
        while (transport_get_stats(b.t)->dropped_banned < 5 && now_usec() < deadline)
                cr_assert_geq(sd_event_run(event, 10 * MSEC), 0);
        cr_assert_eq(transport_get_stats(b.t)->dropped_banned, 5);
        cr_assert_eq(b.received, 1);

        transport_ban(b.t, a.pk, false);
        cr_assert_eq(send_seq(&a, &b, 9), 0);
        cr_assert(run_until(&b.received, 2, 5 * SEC));
        cr_assert_eq(b.seq[1], 9);
        node_stop(&a);
        node_stop(&b);
}

Test(transport, wrong_server_key_delivers_nothing) {
        struct transport_config c = config_default();
        struct node a, b, cn;

        node_start(&a, &c);
        node_start(&b, &c);
        node_start(&cn, &c);
        /* To C's id, at B's endpoint: B cannot complete the handshake. */
        cr_assert_eq(transport_send(a.t, cn.pk, transport_endpoint(b.t), (const uint8_t *) "x", 1), 0);
        run_for(1 * SEC);
        cr_assert_eq(b.received, 0);
        cr_assert_eq(cn.received, 0);

        /* B still serves others. */
        cr_assert_eq(send_seq(&cn, &b, 3), 0);
        cr_assert(run_until(&b.received, 1, 5 * SEC));
        cr_assert_eq(memcmp(b.from[0], cn.pk, WIRE_NODE_ID_SIZE), 0);
        node_stop(&a);
        node_stop(&b);
        node_stop(&cn);
}

Test(transport, oversized_message_is_dropped_and_receiver_survives) {
        struct transport_config c = config_default();
        struct node a, b, cn;
        static uint8_t big[256 * 1024];
        size_t want;

        c.max_message_size = 4096;
        node_start(&b, &c);
        c.max_message_size = sizeof(big);
        node_start(&a, &c);
        node_start(&cn, &c);

        /* Exactly the limit is fine; one more byte is not. */
        cr_assert_eq(transport_send(a.t, b.pk, transport_endpoint(b.t), big, 4096), 0);
        cr_assert(run_until(&b.received, 1, 5 * SEC));
        cr_assert_eq(b.size[0], 4096);
        cr_assert_eq(transport_send(a.t, b.pk, NULL, big, 4097), 0);
        run_for(200 * MSEC);
        cr_assert_eq(b.received, 1);
        cr_assert_eq(transport_get_stats(b.t)->dropped_invalid, 1);

        /* Far over ZMQ_MAXMSGSIZE: libzmq drops A's connection. */
        cr_assert_eq(transport_send(a.t, b.pk, NULL, big, sizeof(big)), 0);
        run_for(300 * MSEC);
        cr_assert_eq(b.received, 1);

        /* B keeps serving others... */
        cr_assert_eq(send_seq(&cn, &b, 5), 0);
        cr_assert(run_until(&b.received, 2, 5 * SEC));
        cr_assert_eq(memcmp(b.from[1], cn.pk, WIRE_NODE_ID_SIZE), 0);

        /* ...and A again once its DEALER has reconnected. */
        want = 3;
        for (int i = 0; i < 50 && b.received < want; i++) {
                cr_assert_eq(transport_send(a.t, b.pk, NULL, (const uint8_t *) "ping", 4), 0);
                run_until(&b.received, want, 100 * MSEC);
        }
        cr_assert_geq(b.received, want);
        cr_assert_eq(memcmp(b.from[2], a.pk, WIRE_NODE_ID_SIZE), 0);

        /* What the sender itself can tell is too big never leaves. */
        cr_assert_eq(transport_send(b.t, a.pk, transport_endpoint(a.t), big, 4097), -EMSGSIZE);
        node_stop(&a);
        node_stop(&b);
        node_stop(&cn);
}

Test(transport, rate_limit_drops_the_excess_of_a_burst) {
        struct transport_config c = config_default();
        const struct transport_stats *st;
        struct node a, b;

        node_start(&a, &c);
        c.rate_per_second = 10;
        c.rate_burst = 5;
        node_start(&b, &c);
        st = transport_get_stats(b.t);

        uint64_t start = now_usec(), deadline = start + 5 * SEC;
        for (uint32_t i = 0; i < 100; i++)
                cr_assert_eq(send_seq(&a, &b, i), 0);
        while (st->received + st->dropped_rate_limited < 100 && now_usec() < deadline)
                cr_assert_geq(sd_event_run(event, 10 * MSEC), 0);
        cr_assert_eq(st->received + st->dropped_rate_limited, 100);
        /* The burst, and what 10/s refilled while the burst came in. */
        cr_assert_geq(st->received, 5);
        cr_assert_leq(st->received, 5 + 1 + 10 * (now_usec() - start) / SEC, "received %" PRIu64, st->received);
        /* The first five (the burst) are the ones delivered. */
        for (uint32_t i = 0; i < 5; i++)
                cr_assert_eq(b.seq[i], i);

        /* Tokens come back with time. */
        run_for(500 * MSEC);
        size_t before = b.received;
        cr_assert_eq(send_seq(&a, &b, 1000), 0);
        cr_assert(run_until(&b.received, before + 1, 5 * SEC));
        node_stop(&a);
        node_stop(&b);
}

Test(transport, insecure_round_trip) {
        struct transport_config c = config_default();
        struct node a, b, secure;

        c.insecure = true;
        node_start(&a, &c);
        node_start(&b, &c);
        b.reply_to = &a;
        cr_assert_eq(send_seq(&a, &b, 4), 0);
        cr_assert(run_until(&a.received, 1, 5 * SEC));
        cr_assert_eq(memcmp(b.from[0], a.pk, WIRE_NODE_ID_SIZE), 0);
        cr_assert_eq(memcmp(a.from[0], b.pk, WIRE_NODE_ID_SIZE), 0);

        /* Secure and insecure nodes do not talk. */
        c.insecure = false;
        node_start(&secure, &c);
        cr_assert_eq(send_seq(&secure, &b, 1), 0);
        cr_assert_eq(send_seq(&a, &secure, 1), 0);
        run_for(500 * MSEC);
        cr_assert_eq(b.received, 1);
        cr_assert_eq(secure.received, 0);
        node_stop(&a);
        node_stop(&b);
        node_stop(&secure);
}

/* Everything arrives while nobody runs the loop; the wakeups that follow
 * (one edge on ZMQ_FD, or none) must still deliver all of it. */
Test(transport, backlog_is_drained_without_further_edges) {
        struct transport_config c = config_default();
        struct node a, b;

        node_start(&a, &c);
        node_start(&b, &c);
        /* Connect and let the handshake finish first. */
        cr_assert_eq(send_seq(&a, &b, 0), 0);
        cr_assert(run_until(&b.received, 1, 5 * SEC));

        for (uint32_t i = 1; i <= 500; i++)
                cr_assert_eq(send_seq(&a, &b, i), 0);
        usleep(300 * 1000);
        cr_assert_eq(b.received, 1);
        cr_assert(run_until(&b.received, 501, 5 * SEC), "received %zu", b.received);
        for (uint32_t i = 0; i <= 500; i++)
                cr_assert_eq(b.seq[i], i);
        node_stop(&a);
        node_stop(&b);
}

Test(transport, send_errors) {
        struct transport_config c = config_default();
        struct node a, b;
        uint8_t bogus[32];
        int r, eagain = 0;

        c.send_queue = 10;
        node_start(&a, &c);
        node_start(&b, &c);

        cr_assert_eq(transport_send(a.t, b.pk, NULL, (const uint8_t *) "x", 1), -ENOTCONN);
        cr_assert_eq(transport_send(a.t, b.pk, "ipc:///tmp/x", (const uint8_t *) "x", 1), -EINVAL);
        cr_assert_eq(transport_send(a.t, b.pk, "inproc://zeromq.zap.01", (const uint8_t *) "x", 1), -EINVAL);
        /* Not a point on the curve. */
        memset(bogus, 0xff, sizeof(bogus));
        cr_assert_eq(transport_send(a.t, bogus, transport_endpoint(b.t), (const uint8_t *) "x", 1), -EINVAL);

        /* Nobody listens at port 1: the queue fills and then refuses. */
        for (int i = 0; i < 100; i++) {
                r = transport_send(a.t, b.pk, "tcp://127.0.0.1:1", (const uint8_t *) "x", 1);
                cr_assert(r == 0 || r == -EAGAIN, "%d", r);
                eagain += r == -EAGAIN;
        }
        cr_assert_geq(eagain, 80);
        cr_assert_eq(transport_get_stats(a.t)->dropped_queue_full, (uint64_t) eagain);
        cr_assert_eq(transport_get_stats(a.t)->sent, (uint64_t) (100 - eagain));
        node_stop(&a);
        node_stop(&b);
}

Test(transport, new_refuses_bad_config_and_keys) {
        struct transport_config c = config_default();
        struct transport *t = NULL;
        uint8_t pk[32], sk[64];

        crypto_sign_keypair(pk, sk);
        c.max_message_size = 0;
        cr_assert_eq(transport_new(event, &c, sk, on_receive, NULL, &t), -EINVAL);
        c = config_default();
        c.send_queue = 0;
        cr_assert_eq(transport_new(event, &c, sk, on_receive, NULL, &t), -EINVAL);
        c = config_default();
        c.rate_burst = 0;
        cr_assert_eq(transport_new(event, &c, sk, on_receive, NULL, &t), -EINVAL);
        c = config_default();
        c.bind = "nonsense";
        cr_assert_lt(transport_new(event, &c, sk, on_receive, NULL, &t), 0);
        /* A secret key whose public half is not its own. */
        c = config_default();
        sk[40] ^= 1;
        cr_assert_eq(transport_new(event, &c, sk, on_receive, NULL, &t), -EINVAL);
        cr_assert_null(t);
}

/* Queued messages both ways (in A's DEALERs, in B's ROUTER) and peers that
 * never answer: freeing returns at once. */
Test(transport, free_with_pending_messages_does_not_hang, .timeout = 10) {
        struct transport_config c = config_default();
        struct node a, b;
        uint64_t start;

        node_start(&a, &c);
        node_start(&b, &c);
        for (uint32_t i = 0; i < 1000; i++) {
                cr_assert_eq(send_seq(&a, &b, i), 0);
                (void) transport_send(b.t, a.pk, "tcp://127.0.0.1:1", (const uint8_t *) "x", 1);
        }
        usleep(100 * 1000);
        start = now_usec();
        node_stop(&b);
        node_stop(&a);
        cr_assert_lt(now_usec() - start, 2 * SEC);
}

/* A peer that restarts on another port: the next send with its new
 * endpoint must reach it there, not knock at the old one forever. */
Test(transport, follows_a_peer_to_its_new_endpoint) {
        struct transport_config c = config_default();
        struct node a, b1, b2;

        node_start(&a, &c);
        node_start(&b1, &c);
        cr_assert_eq(send_seq(&a, &b1, 1), 0);
        cr_assert(run_until(&b1.received, 1, 5 * SEC), "first message not delivered");

        /* The same key comes back on a new port. */
        memset(&b2, 0, sizeof(b2));
        memcpy(b2.pk, b1.pk, sizeof(b2.pk));
        memcpy(b2.sk, b1.sk, sizeof(b2.sk));
        node_stop(&b1);
        cr_assert_eq(transport_new(event, &c, b2.sk, on_receive, &b2, &b2.t), 0);
        cr_assert_eq(send_seq(&a, &b2, 2), 0);
        cr_assert(run_until(&b2.received, 1, 5 * SEC), "message to the new endpoint not delivered");
        cr_assert_eq(b2.seq[0], 2);
        node_stop(&b2);
        node_stop(&a);
}

/* A peer that dialled us is answered over its own connection (a relay and
 * its NATed client): it reads what arrives on its DEALER, from us. */
Test(transport, reply_travels_back_over_the_peers_own_connection) {
        struct transport_config c = config_default();
        struct node a, b;
        uint32_t seq = 41;
        struct iovec iov = { .iov_base = &seq, .iov_len = sizeof(seq) };

        node_start(&a, &c);
        node_start(&b, &c);
        cr_assert_not(transport_can_reply(b.t, a.pk));
        cr_assert_eq(transport_replyv(b.t, a.pk, &iov, 1), -ENOTCONN);

        cr_assert_eq(send_seq(&a, &b, 7), 0);
        cr_assert(run_until(&b.received, 1, 5 * SEC));
        cr_assert(transport_can_reply(b.t, a.pk));
        for (uint32_t i = 0; i < 10; i++) {
                seq = 100 + i;
                cr_assert_eq(transport_replyv(b.t, a.pk, &iov, 1), 0);
        }
        /* a reads its DEALERs only once told to (a node peers can dial
         * does not); what waited there is then read at once. */
        run_for(300 * MSEC);
        cr_assert_eq(a.received, 0);
        cr_assert_eq(transport_set_read_replies(a.t, true), 0);
        cr_assert(run_until(&a.received, 10, 5 * SEC));
        for (uint32_t i = 0; i < 10; i++) {
                cr_assert_eq(memcmp(a.from[i], b.pk, WIRE_NODE_ID_SIZE), 0);
                cr_assert_eq(a.seq[i], 100 + i);
        }
        /* b never dialled a: nothing was sent but over a's connection. */
        cr_assert_eq(transport_get_stats(a.t)->received, 10);
        /* Up to the size limit, as a dialled connection carries. */
        {
                static uint8_t big[60 * 1024];
                struct iovec big_iov = { .iov_base = big, .iov_len = sizeof(big) };

                cr_assert_eq(transport_replyv(b.t, a.pk, &big_iov, 1), 0);
                cr_assert(run_until(&a.received, 11, 5 * SEC));
                cr_assert_eq(a.size[10], sizeof(big));
        }

        /* Once a is gone, b learns it at the next reply. */
        node_stop(&a);
        run_for(300 * MSEC);
        seq = 1;
        cr_assert_eq(transport_replyv(b.t, a.pk, &iov, 1), -EHOSTUNREACH);
        cr_assert_not(transport_can_reply(b.t, a.pk));
        node_stop(&b);
}

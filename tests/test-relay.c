/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Relaying's pure parts (issue 21): end-to-end boxes and their replay
 * window (core/relay-box.c), the relay's clients and quotas
 * (core/relay.c), the relay channel's codec, and dial-back and relay
 * choice of a NATed node (core/reachability.c), driven message by message
 * in virtual time. */

#include <criterion/criterion.h>
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "endpoint.h"
#include "reachability.h"
#include "relay-box.h"
#include "relay.h"

#define SEC 1000000ull

struct key {
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];
        uint8_t sk[crypto_sign_SECRETKEYBYTES];
};

static void key_make(struct key *k) {
        crypto_sign_keypair(k->pk, k->sk);
}

static struct relay_box *box_for(const struct key *k, uint64_t boot) {
        static const uint8_t random8[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
        struct relay_box *b;

        cr_assert_eq(relay_box_new(k->sk, boot, random8, &b), 0);
        return b;
}

static void seal(struct relay_box *b, const struct key *to, const char *text, uint8_t **box, size_t *size) {
        struct iovec iov = { .iov_base = (void *) text, .iov_len = strlen(text) };

        cr_assert_eq(relay_box_seal(b, to->pk, &iov, 1, box, size), 0);
        cr_assert_eq(*size, strlen(text) + RELAY_BOX_OVERHEAD);
}

static int open_copy(struct relay_box *b, const struct key *from, const uint8_t *box, size_t size, char *out) {
        uint8_t *copy = malloc(size), *plain;
        size_t n;
        int r;

        cr_assert_not_null(copy);
        memcpy(copy, box, size);
        r = relay_box_open(b, from->pk, copy, size, &plain, &n);
        if (r == 0) {
                memcpy(out, plain, n);
                out[n] = '\0';
        }
        free(copy);
        return r;
}

static void init(void) {
        cr_assert_geq(sodium_init(), 0);
}

TestSuite(relay_box, .init = init);

Test(relay_box, only_the_named_receiver_opens_and_sees_the_sender) {
        struct key a, b, c;
        struct relay_box *ba, *bb, *bc;
        uint8_t *box;
        size_t size;
        char out[64];

        key_make(&a);
        key_make(&b);
        key_make(&c);
        ba = box_for(&a, 100);
        bb = box_for(&b, 100);
        bc = box_for(&c, 100);

        seal(ba, &b, "Mping", &box, &size);
        /* The plaintext is nowhere in the box: the relay sees ciphertext. */
        cr_assert_null(memmem(box, size, "Mping", 5));
        cr_assert_eq(open_copy(bb, &a, box, size, out), 0);
        cr_assert_str_eq(out, "Mping");
        /* c cannot open it, and b refuses it said to be from c. */
        cr_assert_eq(open_copy(bc, &a, box, size, out), -EBADMSG);
        cr_assert_eq(open_copy(bb, &c, box, size, out), -EBADMSG);
        free(box);
        relay_box_free(ba);
        relay_box_free(bb);
        relay_box_free(bc);
}

Test(relay_box, altered_or_short_box_is_refused) {
        struct key a, b;
        struct relay_box *ba, *bb;
        uint8_t *box;
        size_t size;
        char out[64];

        key_make(&a);
        key_make(&b);
        ba = box_for(&a, 1);
        bb = box_for(&b, 1);
        seal(ba, &b, "Jresult", &box, &size);
        for (size_t i = 0; i < size; i++) {
                box[i] ^= 0x20;
                cr_assert_eq(open_copy(bb, &a, box, size, out), -EBADMSG, "a flip at %zu opened", i);
                box[i] ^= 0x20;
        }
        cr_assert_eq(open_copy(bb, &a, box, RELAY_BOX_OVERHEAD - 1, out), -EBADMSG);
        /* The failures moved nothing: the real box still opens. */
        cr_assert_eq(open_copy(bb, &a, box, size, out), 0);
        free(box);
        relay_box_free(ba);
        relay_box_free(bb);
}

Test(relay_box, replay_is_refused_and_reordering_within_the_window_accepted) {
        struct key a, b;
        struct relay_box *ba, *bb;
        uint8_t *boxes[80];
        size_t sizes[80];
        char out[64];

        key_make(&a);
        key_make(&b);
        ba = box_for(&a, 5);
        bb = box_for(&b, 5);
        for (size_t i = 0; i < 80; i++)
                seal(ba, &b, "x", &boxes[i], &sizes[i]);

        cr_assert_eq(open_copy(bb, &a, boxes[10], sizes[10], out), 0);
        cr_assert_eq(open_copy(bb, &a, boxes[10], sizes[10], out), -ESTALE);
        /* Earlier ones arrive late: still taken, once. */
        cr_assert_eq(open_copy(bb, &a, boxes[3], sizes[3], out), 0);
        cr_assert_eq(open_copy(bb, &a, boxes[3], sizes[3], out), -ESTALE);
        /* Far ahead: the window moves; what fell below it is refused. */
        cr_assert_eq(open_copy(bb, &a, boxes[79], sizes[79], out), 0);
        cr_assert_eq(open_copy(bb, &a, boxes[11], sizes[11], out), -ESTALE);
        cr_assert_eq(open_copy(bb, &a, boxes[20], sizes[20], out), 0);
        for (size_t i = 0; i < 80; i++)
                free(boxes[i]);
        relay_box_free(ba);
        relay_box_free(bb);
}

Test(relay_box, a_restarted_sender_is_taken_and_its_old_session_refused) {
        struct key a, b;
        struct relay_box *old, *restarted, *bb;
        uint8_t *box_old, *box_new;
        size_t size_old, size_new;
        char out[64];

        key_make(&a);
        key_make(&b);
        old = box_for(&a, 1000);
        restarted = box_for(&a, 2000);
        bb = box_for(&b, 1);
        seal(old, &b, "before", &box_old, &size_old);
        seal(restarted, &b, "after", &box_new, &size_new);
        cr_assert_eq(open_copy(bb, &a, box_new, size_new, out), 0);
        cr_assert_str_eq(out, "after");
        /* Counter 1 in both, but the older boot time loses. */
        cr_assert_eq(open_copy(bb, &a, box_old, size_old, out), -ESTALE);
        free(box_old);
        free(box_new);
        relay_box_free(old);
        relay_box_free(restarted);
        relay_box_free(bb);
}

/* A relay holding a box from a to b hands it back to a as b's: a must not
 * take its own message for b's (crypto_box alone shares one key both ways). */
Test(relay_box, a_box_handed_back_to_its_sender_is_refused) {
        struct key a, b;
        struct relay_box *ba, *bb;
        uint8_t *box;
        size_t size;
        char out[64];

        key_make(&a);
        key_make(&b);
        ba = box_for(&a, 7);
        bb = box_for(&b, 7);
        seal(ba, &b, "Jpay 100", &box, &size);
        cr_assert_eq(open_copy(ba, &b, box, size, out), -EBADMSG);
        /* b's boxes to a still open at a. */
        free(box);
        seal(bb, &a, "Jresult", &box, &size);
        cr_assert_eq(open_copy(ba, &b, box, size, out), 0);
        cr_assert_str_eq(out, "Jresult");
        free(box);
        relay_box_free(ba);
        relay_box_free(bb);
}

/* Flipping the sign bit of an Ed25519 id gives another id with the same
 * Curve25519 key: a box from a must not open as from that twin (whose
 * window would be empty: every box of a's replayable once more). */
Test(relay_box, a_box_passed_on_under_the_senders_curve_twin_is_refused) {
        struct key a, b, twin;
        struct relay_box *ba, *bb;
        uint8_t *box, curve[crypto_box_PUBLICKEYBYTES], curve_twin[crypto_box_PUBLICKEYBYTES];
        size_t size;
        char out[64];

        key_make(&a);
        key_make(&b);
        twin = a;
        twin.pk[31] ^= 0x80;
        cr_assert_eq(crypto_sign_ed25519_pk_to_curve25519(curve, a.pk), 0);
        cr_assert_eq(crypto_sign_ed25519_pk_to_curve25519(curve_twin, twin.pk), 0);
        cr_assert_eq(memcmp(curve, curve_twin, sizeof(curve)), 0, "not a twin");
        ba = box_for(&a, 9);
        bb = box_for(&b, 9);
        seal(ba, &b, "Mgossip", &box, &size);
        cr_assert_eq(open_copy(bb, &a, box, size, out), 0);
        cr_assert_eq(open_copy(bb, &twin, box, size, out), -EBADMSG);
        free(box);
        relay_box_free(ba);
        relay_box_free(bb);
}

/* Boxes that do not open, under more made-up ids than the table holds,
 * leave real senders' windows alone: a's box stays a replay. */
Test(relay_box, forged_boxes_under_made_up_ids_do_not_push_a_sender_out) {
        struct key a, b, fake;
        struct relay_box *ba, *bb;
        uint8_t *box, junk[64];
        size_t size;
        char out[64];

        key_make(&a);
        key_make(&b);
        ba = box_for(&a, 3);
        bb = box_for(&b, 3);
        seal(ba, &b, "Jjob", &box, &size);
        cr_assert_eq(open_copy(bb, &a, box, size, out), 0);
        randombytes_buf(junk, sizeof(junk));
        junk[RELAY_BOX_NONCE_SIZE - 1] = 1;     /* counter 1 */
        for (size_t i = 0; i < RELAY_BOX_PEERS_MAX + 16; i++) {
                uint8_t *plain, copy[sizeof(junk)];
                size_t n;

                key_make(&fake);
                memcpy(copy, junk, sizeof(junk));
                cr_assert_eq(relay_box_open(bb, fake.pk, copy, sizeof(copy), &plain, &n), -EBADMSG);
        }
        cr_assert_eq(open_copy(bb, &a, box, size, out), -ESTALE);
        free(box);
        relay_box_free(ba);
        relay_box_free(bb);
}

/* A sender that forgets a peer's entry (more peers than its table holds)
 * and boxes for it again never repeats a nonce. */
Test(relay_box, nonces_never_repeat_even_after_a_peer_is_forgotten) {
        struct key a, b, other;
        struct relay_box *ba;
        uint8_t *first, *again;
        size_t size;

        key_make(&a);
        key_make(&b);
        ba = box_for(&a, 11);
        seal(ba, &b, "one", &first, &size);
        for (size_t i = 0; i < RELAY_BOX_PEERS_MAX + 1; i++) {
                uint8_t *box;

                key_make(&other);
                seal(ba, &other, "x", &box, &size);
                free(box);
        }
        seal(ba, &b, "two", &again, &size);
        cr_assert_neq(memcmp(first, again, RELAY_BOX_NONCE_SIZE), 0);
        free(first);
        free(again);
        relay_box_free(ba);
}

/* Boxes to one peer are counted on their own: sealing many for others in
 * between does not shrink how far boxes to it may be reordered. */
Test(relay_box, reordering_is_taken_however_many_boxes_went_to_others) {
        struct key a, b, c;
        struct relay_box *ba, *bb;
        uint8_t *boxes[10];
        size_t sizes[10];
        char out[64];

        key_make(&a);
        key_make(&b);
        key_make(&c);
        ba = box_for(&a, 13);
        bb = box_for(&b, 13);
        for (size_t i = 0; i < 10; i++) {
                seal(ba, &b, "x", &boxes[i], &sizes[i]);
                for (size_t k = 0; k < 100; k++) {
                        uint8_t *other;
                        size_t n;

                        seal(ba, &c, "y", &other, &n);
                        free(other);
                }
        }
        cr_assert_eq(open_copy(bb, &a, boxes[9], sizes[9], out), 0);
        for (size_t i = 0; i < 9; i++)
                cr_assert_eq(open_copy(bb, &a, boxes[i], sizes[i], out), 0, "box %zu, reordered, refused", i);
        for (size_t i = 0; i < 10; i++)
                free(boxes[i]);
        relay_box_free(ba);
        relay_box_free(bb);
}

/* ---- The relay's table ---- */

static void id_of(uint8_t id[WIRE_NODE_ID_SIZE], uint8_t n) {
        memset(id, 0, WIRE_NODE_ID_SIZE);
        id[0] = n;
}

Test(relay, passes_only_to_registered_clients_within_their_lease) {
        struct relay_config c;
        struct relay *r;
        uint8_t client[32], sender[32];

        relay_config_default(&c);
        cr_assert_eq(relay_new(&c, &r), 0);
        id_of(client, 1);
        id_of(sender, 2);
        cr_assert_eq(relay_admit(r, sender, client, 100, 0), -ENOENT);
        cr_assert_eq(relay_register(r, client, 0), 1);
        cr_assert_eq(relay_register(r, client, SEC), 0);
        cr_assert_eq(relay_admit(r, sender, client, 100, 2 * SEC), 0);
        cr_assert_eq(relay_admit(r, client, client, 100, 2 * SEC), -EINVAL);
        /* The lease runs from the last registration. */
        cr_assert(relay_is_client(r, client, SEC + c.lease_usec - 1));
        cr_assert_eq(relay_admit(r, sender, client, 100, SEC + c.lease_usec), -ENOENT);
        relay_free(r);
}

Test(relay, refuses_clients_beyond_max_clients_until_one_expires) {
        struct relay_config c;
        struct relay *r;
        uint8_t id[32];

        relay_config_default(&c);
        c.max_clients = 3;
        cr_assert_eq(relay_new(&c, &r), 0);
        for (uint8_t i = 0; i < 3; i++) {
                id_of(id, i);
                cr_assert_eq(relay_register(r, id, 0), 1);
        }
        id_of(id, 9);
        cr_assert_eq(relay_register(r, id, SEC), -EUSERS);
        cr_assert_eq(relay_register(r, id, c.lease_usec + 1), 1);
        relay_free(r);
}

Test(relay, bandwidth_quota_refuses_the_excess_and_refills) {
        struct relay_config c;
        struct relay *r;
        struct relay_stats st;
        uint8_t client[32], sender[32], other[32];

        relay_config_default(&c);
        c.bytes_per_second = 1000;
        c.burst_bytes = 2000;
        cr_assert_eq(relay_new(&c, &r), 0);
        id_of(client, 1);
        id_of(sender, 2);
        id_of(other, 3);
        cr_assert_eq(relay_register(r, client, 0), 1);
        /* One message larger than the burst passes once (the bucket owes). */
        cr_assert_eq(relay_admit(r, sender, client, 5000, 0), 0);
        cr_assert_eq(relay_admit(r, sender, client, 10, 0), -EDQUOT);
        /* The client's bucket is empty too: another sender waits as well. */
        cr_assert_eq(relay_admit(r, other, client, 10, 0), -EDQUOT);
        /* 3000 bytes owed: positive again after a little over 3 s. */
        cr_assert_eq(relay_admit(r, sender, client, 10, 3 * SEC), -EDQUOT);
        cr_assert_eq(relay_admit(r, sender, client, 10, 3 * SEC + SEC / 10), 0);
        relay_get_stats(r, 3 * SEC, &st);
        cr_assert_eq(st.forwarded, 2);
        cr_assert_eq(st.refused_bandwidth, 3);
        cr_assert_eq(st.clients, 1);
        relay_free(r);
}

Test(relay, circuits_per_client_are_bounded_and_expire) {
        struct relay_config c;
        struct relay *r;
        uint8_t client[32], s[32];

        relay_config_default(&c);
        c.max_circuits = 2;
        cr_assert_eq(relay_new(&c, &r), 0);
        id_of(client, 1);
        cr_assert_eq(relay_register(r, client, 0), 1);
        id_of(s, 10);
        cr_assert_eq(relay_admit(r, s, client, 1, 0), 0);
        id_of(s, 11);
        cr_assert_eq(relay_admit(r, s, client, 1, 0), 0);
        id_of(s, 12);
        cr_assert_eq(relay_admit(r, s, client, 1, 0), -EUSERS);
        /* An existing circuit still passes. */
        id_of(s, 10);
        cr_assert_eq(relay_admit(r, s, client, 1, SEC), 0);
        /* Circuit 11 idles out; 12 takes its place. */
        cr_assert_eq(relay_register(r, client, c.lease_usec), 0);
        id_of(s, 10);
        cr_assert_eq(relay_admit(r, s, client, 1, c.lease_usec), 0);
        id_of(s, 12);
        cr_assert_eq(relay_admit(r, s, client, 1, c.lease_usec + 1), 0);
        relay_free(r);
}

/* ---- The relay channel's codec ---- */

Test(relay_message, round_trip_and_malformed_bodies_are_refused) {
        Swarm__RelayMessage m = SWARM__RELAY_MESSAGE__INIT, *d = NULL;
        Swarm__RelayForward f = SWARM__RELAY_FORWARD__INIT;
        uint8_t peer[32] = { 7 }, box[RELAY_BOX_OVERHEAD + 3] = { 1 }, *buf;
        const char *reason;
        size_t size;

        f.peer.data = peer;
        f.peer.len = sizeof(peer);
        f.box.data = box;
        f.box.len = sizeof(box);
        m.body_case = SWARM__RELAY_MESSAGE__BODY_FORWARD;
        m.forward = &f;
        cr_assert_eq(relay_message_encode(&m, 4096, &buf, &size), 0);
        cr_assert_eq(relay_message_decode(buf, size, 4096, &d, &reason), 0);
        cr_assert_eq(d->body_case, SWARM__RELAY_MESSAGE__BODY_FORWARD);
        cr_assert_eq(d->forward->box.len, sizeof(box));
        relay_message_free(d);
        cr_assert_eq(relay_message_decode(buf, size, size - 1, &d, &reason), -EMSGSIZE);
        free(buf);

        /* A peer id of 31 bytes, a box shorter than its nonce and MAC. */
        f.peer.len = 31;
        cr_assert_eq(relay_message_encode(&m, 4096, &buf, &size), 0);
        cr_assert_eq(relay_message_decode(buf, size, 4096, &d, &reason), -EBADMSG);
        cr_assert_not_null(strstr(reason, "peer"));
        free(buf);
        f.peer.len = 32;
        f.box.len = RELAY_BOX_OVERHEAD - 1;
        cr_assert_eq(relay_message_encode(&m, 4096, &buf, &size), 0);
        cr_assert_eq(relay_message_decode(buf, size, 4096, &d, &reason), -EBADMSG);
        free(buf);

        /* No body; garbage. */
        m.body_case = SWARM__RELAY_MESSAGE__BODY__NOT_SET;
        cr_assert_eq(relay_message_encode(&m, 4096, &buf, &size), 0);
        cr_assert_eq(relay_message_decode(buf, size, 4096, &d, &reason), -EBADMSG);
        free(buf);
        cr_assert_eq(relay_message_decode((const uint8_t *) "\xff\xff\xff", 3, 4096, &d, &reason), -EBADMSG);
}

/* ---- Dial-back and relay choice ---- */

struct world {
        uint64_t rnd;
        size_t n_dial;
        uint8_t dialled[8][32];
        uint8_t nonce[REACH_NONCE_SIZE];
        size_t n_register;
        uint8_t registered[16][32];
        uint64_t seq[16];
};

static uint64_t w_random(void *userdata) {
        struct world *w = userdata;
        return w->rnd++;
}

static void w_dial(void *userdata, const uint8_t to[32], const uint8_t nonce[REACH_NONCE_SIZE]) {
        struct world *w = userdata;

        if (w->n_dial < 8)
                memcpy(w->dialled[w->n_dial], to, 32);
        w->n_dial++;
        memcpy(w->nonce, nonce, REACH_NONCE_SIZE);
}

static void w_register(void *userdata, const uint8_t relay[32], const char *endpoint, uint64_t seq) {
        struct world *w = userdata;

        cr_assert_not_null(endpoint);
        if (w->n_register < 16) {
                memcpy(w->registered[w->n_register], relay, 32);
                w->seq[w->n_register] = seq;
        }
        w->n_register++;
}

static struct reach *reach_make(struct world *w, enum reach_mode mode) {
        struct reach_config c;
        struct reach_io io = {
                .userdata = w,
                .random_u64 = w_random,
                .send_dial_request = w_dial,
                .send_register = w_register,
        };
        uint8_t self[32];
        struct reach *r;

        reach_config_default(&c);
        c.mode = mode;
        c.want_relays = 2;
        id_of(self, 200);
        cr_assert_eq(reach_new(&c, &io, self, &r), 0);
        return r;
}

static uint8_t peer_ids[6][32];
static struct reach_peer peers[6];

static void peers_make(void) {
        for (uint8_t i = 0; i < 6; i++) {
                id_of(peer_ids[i], i + 1);
                peers[i] = (struct reach_peer) {
                        .id = peer_ids[i],
                        .endpoint = "tcp://10.200.0.1:7946",
                        .state = REACH_STATE_PUBLIC,
                        .relay_offered = i < 3,         /* peers 0, 1, 2 relay */
                };
        }
}

Test(reach, a_dial_back_makes_the_node_public) {
        struct world w = {};
        struct reach *r = reach_make(&w, REACH_MODE_AUTO);

        peers_make();
        cr_assert_eq(reach_get_state(r), REACH_STATE_CHECKING);
        cr_assert_eq(reach_tick(r, 0, peers, 6), 0);
        cr_assert_eq(w.n_dial, 3);
        /* A wrong nonce proves nothing. */
        cr_assert_eq(reach_on_dial_back(r, peer_ids[0], (const uint8_t *) "0123456789abcdef", 16, SEC), -ESTALE);
        cr_assert_eq(reach_on_dial_back(r, peer_ids[0], w.nonce, 16, SEC), 1);
        cr_assert_eq(reach_get_state(r), REACH_STATE_PUBLIC);
        /* Public: no relays. */
        reach_tick(r, 2 * SEC, peers, 6);
        cr_assert_eq(w.n_register, 0);
        reach_free(r);
}

/* Dial-back's rule: a peer dials an advertised endpoint only when its
 * host is the address the request came from. */
Test(reach, a_dial_back_endpoint_must_be_the_address_the_request_came_from) {
        cr_assert(endpoint_host_is_address("tcp://10.200.0.10:7946", "10.200.0.10"));
        cr_assert(endpoint_host_is_address("tcp://10.200.0.10:7946", "::ffff:10.200.0.10"));
        cr_assert(endpoint_host_is_address("tcp://[2001:db8::1]:7946", "2001:db8:0::1"));
        cr_assert_not(endpoint_host_is_address("tcp://10.200.128.2:7946", "10.200.0.3"));
        cr_assert_not(endpoint_host_is_address("tcp://10.0.0.1:6379", "192.0.2.7"));
        cr_assert_not(endpoint_host_is_address("tcp://example.org:7946", "192.0.2.7"));
        cr_assert_not(endpoint_host_is_address("tcp://[2001:db8::1:7946", "2001:db8::1"));
        cr_assert_not(endpoint_host_is_address("udp://10.200.0.10:7946", "10.200.0.10"));
        cr_assert_not(endpoint_host_is_address("tcp://10.200.0.10:7946", ""));
        cr_assert_not(endpoint_host_is_address("tcp://10.200.0.10:7946", NULL));
}

/* Dial-back asks peers that can be dialled first, those still checking
 * only to make up the number, and never a private one (it could not
 * answer: a reachable node asking only NATed peers thought itself
 * private). */
Test(reach, dial_back_asks_dialable_peers_first_and_never_private_ones) {
        struct world w = {};
        struct reach *r = reach_make(&w, REACH_MODE_AUTO);

        peers_make();
        peers[0].state = REACH_STATE_PRIVATE;
        peers[1].state = REACH_STATE_PRIVATE;
        peers[2].state = REACH_STATE_CHECKING;
        peers[3].state = REACH_STATE_CHECKING;
        peers[4].state = REACH_STATE_PUBLIC;
        peers[5].state = REACH_STATE_UNKNOWN;
        reach_tick(r, 0, peers, 6);
        cr_assert_eq(w.n_dial, 3);
        {
                bool asked[6] = {};
                for (size_t i = 0; i < w.n_dial; i++)
                        asked[w.dialled[i][0] - 1] = true;
                cr_assert(asked[4] && asked[5], "a dialable peer was not asked");
                cr_assert_not(asked[0] || asked[1], "a private peer was asked");
        }
        reach_free(r);
        /* Only private peers: no one is asked, and no round fails. */
        w = (struct world) {};
        r = reach_make(&w, REACH_MODE_AUTO);
        for (size_t i = 0; i < 6; i++)
                peers[i].state = REACH_STATE_PRIVATE;
        reach_tick(r, 0, peers, 6);
        reach_tick(r, 60 * SEC, peers, 6);
        cr_assert_eq(w.n_dial, 0);
        cr_assert_eq(reach_get_state(r), REACH_STATE_CHECKING);
        reach_free(r);
}

/* Silence from peers that are still checking themselves proves nothing
 * (they may be NATed too): only rounds that asked a dialable peer count. */
Test(reach, only_rounds_that_asked_a_dialable_peer_can_make_it_private) {
        struct world w = {};
        struct reach *r = reach_make(&w, REACH_MODE_AUTO);

        peers_make();
        for (size_t i = 0; i < 6; i++)
                peers[i].state = REACH_STATE_CHECKING;
        for (uint64_t t = 0; t <= 30 * SEC; t += SEC)
                reach_tick(r, t, peers, 6);
        cr_assert_gt(w.n_dial, 6, "rounds were not repeated");
        cr_assert_eq(reach_get_state(r), REACH_STATE_CHECKING);
        /* One peer found itself public: two silent rounds now say private. */
        peers[0].state = REACH_STATE_PUBLIC;
        for (uint64_t t = 31 * SEC; t <= 60 * SEC && reach_get_state(r) == REACH_STATE_CHECKING; t += SEC)
                reach_tick(r, t, peers, 6);
        cr_assert_eq(reach_get_state(r), REACH_STATE_PRIVATE);
        reach_free(r);
}

/* With every peer suspect there is no one to ask: the next look is a
 * while away, not in the past (which spun the daemon's event loop). */
Test(reach, with_every_peer_suspect_the_next_round_is_not_at_once) {
        struct world w = {};
        struct reach *r = reach_make(&w, REACH_MODE_AUTO);

        peers_make();
        for (size_t i = 0; i < 6; i++)
                peers[i].suspect = true;
        reach_tick(r, 10 * SEC, peers, 6);
        cr_assert_eq(w.n_dial, 0);
        cr_assert_gt(reach_next_deadline(r), 10 * SEC);
        reach_tick(r, reach_next_deadline(r), peers, 6);
        cr_assert_gt(reach_next_deadline(r), 10 * SEC);
        /* Alive again: asked at the next look. */
        for (size_t i = 0; i < 6; i++)
                peers[i].suspect = false;
        reach_tick(r, reach_next_deadline(r), peers, 6);
        cr_assert_eq(w.n_dial, 3);
        reach_free(r);
}

Test(reach, two_silent_rounds_make_it_private_and_it_registers_with_relays) {
        struct world w = {};
        struct reach *r = reach_make(&w, REACH_MODE_AUTO);
        const uint8_t *ids[4];
        const char *endpoints[4];

        peers_make();
        cr_assert_eq(reach_tick(r, 0, peers, 6), 0);
        /* The first silent round is not enough. */
        cr_assert_eq(reach_tick(r, 3 * SEC, peers, 6), 0);
        cr_assert_eq(reach_get_state(r), REACH_STATE_CHECKING);
        cr_assert_eq(w.n_dial, 6);
        cr_assert_eq(reach_tick(r, 6 * SEC, peers, 6), 1);
        cr_assert_eq(reach_get_state(r), REACH_STATE_PRIVATE);
        /* Two relays asked, among those that offer. */
        cr_assert_eq(w.n_register, 2);
        for (size_t i = 0; i < 2; i++)
                cr_assert_lt(w.registered[i][0], 4, "asked peer %u, which does not relay", w.registered[i][0]);
        cr_assert_eq(reach_get_relays(r, ids, endpoints, 4), 0);
        /* Confirmed one by one: each is a change to publish. */
        cr_assert_eq(reach_on_registered(r, w.registered[0], w.seq[0], 0, 15 * SEC, 6 * SEC + 1), 1);
        cr_assert_eq(reach_on_registered(r, w.registered[0], w.seq[0], 0, 15 * SEC, 6 * SEC + 2), 0);
        cr_assert_eq(reach_on_registered(r, w.registered[1], w.seq[1] + 7, 0, 15 * SEC, 6 * SEC + 2), -ENOENT);
        cr_assert_eq(reach_on_registered(r, w.registered[1], w.seq[1], 0, 15 * SEC, 6 * SEC + 2), 1);
        cr_assert_eq(reach_get_relays(r, ids, endpoints, 4), 2);
        cr_assert(reach_is_relay(r, w.registered[0]));
        reach_free(r);
}

Test(reach, a_relay_that_dies_is_replaced_and_not_asked_again_soon) {
        struct world w = {};
        struct reach *r = reach_make(&w, REACH_MODE_PRIVATE);
        const uint8_t *ids[4];
        const char *endpoints[4];
        struct reach_peer alive[6];
        uint8_t dead[32];
        size_t k = 0;

        peers_make();
        cr_assert_eq(reach_get_state(r), REACH_STATE_PRIVATE);
        reach_tick(r, 0, peers, 6);
        cr_assert_eq(w.n_dial, 0, "configured private: no dial-back");
        cr_assert_eq(w.n_register, 2);
        reach_on_registered(r, w.registered[0], w.seq[0], 0, 15 * SEC, 1);
        reach_on_registered(r, w.registered[1], w.seq[1], 0, 15 * SEC, 1);
        memcpy(dead, w.registered[0], 32);

        /* Membership saw it die: it leaves the alive set. */
        for (size_t i = 0; i < 6; i++)
                if (memcmp(peers[i].id, dead, 32) != 0)
                        alive[k++] = peers[i];
        w.n_register = 0;
        cr_assert_eq(reach_tick(r, SEC, alive, k), 1);
        /* The remaining one and the third relay are (re)asked. */
        cr_assert_geq(w.n_register, 1);
        for (size_t i = 0; i < w.n_register && i < 16; i++)
                cr_assert_neq(memcmp(w.registered[i], dead, 32), 0);
        cr_assert_eq(reach_get_relays(r, ids, endpoints, 4), 1);

        /* Back among the living, it is not asked again at once. */
        w.n_register = 0;
        reach_tick(r, 2 * SEC, peers, 6);
        for (size_t i = 0; i < w.n_register && i < 16; i++)
                cr_assert_neq(memcmp(w.registered[i], dead, 32), 0);
        reach_free(r);
}

Test(reach, a_silent_relay_is_given_up_after_the_timeout) {
        struct world w = {};
        struct reach *r = reach_make(&w, REACH_MODE_PRIVATE);
        const uint8_t *ids[4];
        const char *endpoints[4];

        peers_make();
        reach_tick(r, 0, peers, 3);
        cr_assert_eq(w.n_register, 2);
        reach_on_registered(r, w.registered[0], w.seq[0], 0, 15 * SEC, 1);
        /* Keep-alives go out; only the first relay ever answers. */
        for (uint64_t t = SEC; t <= 8 * SEC; t += SEC) {
                size_t before = w.n_register;
                reach_tick(r, t, peers, 3);
                for (size_t i = before; i < w.n_register && i < 16; i++)
                        if (memcmp(w.registered[i], w.registered[0], 32) == 0)
                                reach_on_registered(r, w.registered[i], w.seq[i], 0, 15 * SEC, t);
        }
        cr_assert_eq(reach_get_relays(r, ids, endpoints, 4), 1);
        cr_assert_eq(memcmp(ids[0], w.registered[0], 32), 0);
        cr_assert_geq(reach_get_stats(r)->relays_given_up, 1);
        reach_free(r);
}

Test(reach, a_suspect_relay_is_kept_but_not_chosen) {
        struct world w = {};
        struct reach *r = reach_make(&w, REACH_MODE_PRIVATE);
        const uint8_t *ids[4];
        const char *endpoints[4];

        peers_make();
        reach_tick(r, 0, peers, 6);
        cr_assert_eq(w.n_register, 2);
        reach_on_registered(r, w.registered[0], w.seq[0], 0, 15 * SEC, 1);
        reach_on_registered(r, w.registered[1], w.seq[1], 0, 15 * SEC, 1);
        /* Every relay suspect: the two we have stay, none is added. */
        for (size_t i = 0; i < 6; i++)
                peers[i].suspect = true;
        cr_assert_eq(reach_tick(r, SEC, peers, 6), 0);
        cr_assert_eq(reach_get_relays(r, ids, endpoints, 4), 2);
        reach_free(r);
}

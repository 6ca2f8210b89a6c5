/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The membership state machine, driven by hand: a few instances on a fake
 * clock and random source, with a message queue pumped by the test.
 * Records are signed with real Ed25519 keys (fixed seeds) and checked by
 * wire_record_open()'s default verifier. */

#include <criterion/criterion.h>
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "membership.h"
#include "wire.h"

#define MAX_NODES 6
#define USEC 1ull
#define MSEC (1000ull * USEC)
#define SEC (1000ull * MSEC)

struct net;

struct node {
        struct net *net;
        unsigned index;
        uint8_t pk[32], sk[64];
        char endpoint[64];
        struct membership *m;
        bool down;                      /* sends and receives nothing */
        unsigned changes;               /* member_changed calls */
};

struct msg {
        unsigned from, to;
        uint8_t *data;
        size_t size;
};

struct net {
        uint64_t now, rng;
        struct membership_config config;
        struct node nodes[MAX_NODES];
        unsigned n;
        bool blocked[MAX_NODES][MAX_NODES];     /* from → to */
        struct msg *queue;
        size_t n_queue, n_allocated, head;
        /* What went out: the largest Ping/Ack/PingReq and the largest
         * piggyback it carried. */
        size_t max_gossip_message, max_items, sent_to_unknown;
};

static uint64_t fake_now(void *userdata) {
        struct node *n = userdata;
        return n->net->now;
}

static uint64_t fake_random(void *userdata) {
        struct node *n = userdata;
        uint64_t x = n->net->rng;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        n->net->rng = x;
        return x;
}

static int node_find(struct net *net, const uint8_t *id) {
        for (unsigned i = 0; i < net->n; i++)
                if (memcmp(net->nodes[i].pk, id, 32) == 0)
                        return (int) i;
        return -1;
}

static void fake_send(void *userdata, const uint8_t to[WIRE_NODE_ID_SIZE], const char *endpoint,
                      const uint8_t *data, size_t size) {
        struct node *from = userdata;
        struct net *net = from->net;
        Swarm__Envelope *e = NULL;
        int t = node_find(net, to);

        /* Every message a node sends must decode as the wire codec says. */
        cr_assert_eq(wire_decode(data, size, &e, NULL), 0);
        if (e->body_case != SWARM__ENVELOPE__BODY_PUSH_PULL) {
                const Swarm__Gossip *g = e->body_case == SWARM__ENVELOPE__BODY_PING ? e->ping->gossip :
                        e->body_case == SWARM__ENVELOPE__BODY_ACK ? e->ack->gossip : e->ping_req->gossip;
                size_t items = g ? g->n_rumors + g->n_records : 0;

                if (size > net->max_gossip_message)
                        net->max_gossip_message = size;
                if (items > net->max_items)
                        net->max_items = items;
        }
        wire_envelope_free(e);

        if (t < 0) {
                net->sent_to_unknown++;
                return;
        }
        if (from->down || net->nodes[t].down || net->blocked[from->index][t])
                return;

        if (net->n_queue >= net->n_allocated) {
                net->n_allocated = net->n_allocated ? net->n_allocated * 2 : 64;
                net->queue = realloc(net->queue, net->n_allocated * sizeof(struct msg));
                cr_assert_not_null(net->queue);
        }
        net->queue[net->n_queue++] = (struct msg) {
                .from = from->index,
                .to = (unsigned) t,
                .data = memcpy(malloc(size), data, size),
                .size = size,
        };
}

static int fake_sign(void *userdata, const Swarm__NodeRecord *r, Swarm__SignedRecord *out) {
        struct node *n = userdata;
        return wire_record_sign(r, n->sk, out);
}

static void fake_changed(void *userdata, const struct member_info *m, bool forgotten) {
        struct node *n = userdata;
        n->changes++;
}

static void record_fill(Swarm__NodeRecord *r, Swarm__SkillOffer *skill, Swarm__SkillOffer **skills,
                        char **endpoints, const uint8_t pk[32], uint64_t version) {
        swarm__node_record__init(r);
        swarm__skill_offer__init(skill);
        skill->name = (char *) "gemm";
        skill->version = (char *) "1.0";
        skill->price = 42;
        skill->unit = (char *) "flop";
        skill->throughput = 1000000;
        skill->device = (char *) "cpu";
        skill->workers = 2;
        skills[0] = skill;
        r->node_id = (ProtobufCBinaryData) { .len = 32, .data = (uint8_t *) pk };
        r->version = version;
        r->n_endpoints = 1;
        r->endpoints = endpoints;
        r->n_skills = 1;
        r->skills = skills;
        r->capacity = 4;
        r->name = (char *) "test";
}

static void keypair(unsigned seed_byte, uint8_t pk[32], uint8_t sk[64]) {
        uint8_t seed[32];

        memset(seed, (int) seed_byte, sizeof(seed));
        seed[0] = 0x5a;
        crypto_sign_seed_keypair(pk, sk, seed);
}

static void test_config(struct membership_config *c) {
        membership_config_default(c);
        c->push_pull_interval_usec = 2 * SEC;
        c->dead_reap_usec = 10 * SEC;
        c->reconnect_interval_usec = 1 * SEC;
}

static struct net *net_new_with(unsigned n, const struct membership_config *config) {
        struct net *net = calloc(1, sizeof(*net));

        cr_assert_not_null(net);
        cr_assert_geq(sodium_init(), 0);
        net->now = 1000 * SEC;
        net->rng = 0x9e3779b97f4a7c15ull;
        net->config = *config;

        for (unsigned i = 0; i < n; i++) {
                struct node *nd = &net->nodes[i];
                Swarm__NodeRecord r;
                Swarm__SkillOffer skill, *skills[1];
                char *endpoints[1];

                nd->net = net;
                nd->index = i;
                keypair(i + 1, nd->pk, nd->sk);
                snprintf(nd->endpoint, sizeof(nd->endpoint), "tcp://10.0.0.%u:7946", i + 1);
                endpoints[0] = nd->endpoint;
                record_fill(&r, &skill, skills, endpoints, nd->pk, 1);

                struct membership_io io = {
                        .userdata = nd,
                        .now_usec = fake_now,
                        .random_u64 = fake_random,
                        .send = fake_send,
                        .sign = fake_sign,
                        .member_changed = fake_changed,
                };
                cr_assert_eq(membership_new(&net->config, &io, &r, &nd->m), 0);
        }
        net->n = n;
        return net;
}

static struct net *net_new(unsigned n) {
        struct membership_config c;

        test_config(&c);
        return net_new_with(n, &c);
}

static void net_free(struct net *net) {
        for (size_t i = net->head; i < net->n_queue; i++)
                free(net->queue[i].data);
        free(net->queue);
        for (unsigned i = 0; i < net->n; i++)
                membership_free(net->nodes[i].m);
        free(net);
}

/* Delivers everything queued, and what that makes, at the current time. */
static void net_pump(struct net *net) {
        while (net->head < net->n_queue) {
                struct msg msg = net->queue[net->head++];
                struct node *to = &net->nodes[msg.to];

                if (!to->down)
                        membership_receive(to->m, net->nodes[msg.from].pk, msg.data, msg.size);
                free(msg.data);
        }
        net->head = net->n_queue = 0;
}

/* Runs every node's timers in order until the clock reaches t. */
static void net_run_until(struct net *net, uint64_t t) {
        for (;;) {
                uint64_t next = UINT64_MAX;

                net_pump(net);
                for (unsigned i = 0; i < net->n; i++)
                        if (!net->nodes[i].down) {
                                uint64_t d = membership_next_deadline(net->nodes[i].m);
                                if (d < next)
                                        next = d;
                        }
                if (next > t) {
                        net->now = t;
                        return;
                }
                if (next > net->now)
                        net->now = next;
                for (unsigned i = 0; i < net->n; i++)
                        if (!net->nodes[i].down && membership_next_deadline(net->nodes[i].m) <= net->now)
                                membership_tick(net->nodes[i].m);
        }
}

static void net_run(struct net *net, uint64_t usec) {
        net_run_until(net, net->now + usec);
}

/* Everyone joins node 0 and runs until the tables are full. */
static void net_converge(struct net *net) {
        for (unsigned i = 1; i < net->n; i++)
                cr_assert_eq(membership_join(net->nodes[i].m, net->nodes[0].pk, net->nodes[0].endpoint), 0);
        net_run(net, 5 * SEC);
        for (unsigned i = 0; i < net->n; i++)
                cr_assert_eq(membership_count(net->nodes[i].m), net->n, "node %u knows %zu of %u", i,
                             membership_count(net->nodes[i].m), net->n);
}

static enum member_state state_of(struct net *net, unsigned observer, unsigned subject) {
        struct member_info info;

        if (membership_find(net->nodes[observer].m, net->nodes[subject].pk, &info) < 0)
                return (enum member_state) -1;
        return info.state;
}

static struct member_info info_of(struct net *net, unsigned observer, unsigned subject) {
        struct member_info info;

        cr_assert_eq(membership_find(net->nodes[observer].m, net->nodes[subject].pk, &info), 0);
        return info;
}

/* Hands observer one Ping from `from` carrying this gossip. */
static int deliver_gossip(struct net *net, unsigned observer, const uint8_t *from, Swarm__Rumor **rumors,
                          size_t n_rumors, Swarm__SignedRecord **records, size_t n_records) {
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        Swarm__Ping ping = SWARM__PING__INIT;
        Swarm__Gossip g = SWARM__GOSSIP__INIT;
        uint8_t *buf;
        size_t size;
        int r;

        g.rumors = rumors;
        g.n_rumors = n_rumors;
        g.records = records;
        g.n_records = n_records;
        ping.seq = 999999;
        ping.gossip = &g;
        e.body_case = SWARM__ENVELOPE__BODY_PING;
        e.ping = &ping;
        cr_assert_eq(wire_encode(&e, &buf, &size), 0);
        r = membership_receive(net->nodes[observer].m, from, buf, size);
        free(buf);
        return r;
}

static int deliver_rumor(struct net *net, unsigned observer, unsigned from, unsigned subject,
                         uint64_t incarnation, enum member_state state) {
        Swarm__Rumor ru = SWARM__RUMOR__INIT, *rumors[1] = { &ru };

        ru.node_id = (ProtobufCBinaryData) { .len = 32, .data = net->nodes[subject].pk };
        ru.incarnation = incarnation;
        ru.state = (Swarm__MemberState) state;
        return deliver_gossip(net, observer, net->nodes[from].pk, rumors, 1, NULL, 0);
}

/* ---- Join and liveness -------------------------------------------------- */

Test(membership, join_by_push_pull_learns_both_records) {
        struct net *net = net_new(2);
        struct member_info info;

        cr_assert_eq(membership_count(net->nodes[0].m), 1);
        cr_assert_eq(membership_get(net->nodes[0].m, 0, &info), 0);
        cr_assert(info.self);
        cr_assert_eq(info.state, MEMBER_ALIVE);

        cr_assert_eq(membership_join(net->nodes[1].m, net->nodes[0].pk, net->nodes[0].endpoint), 0);
        net_pump(net);

        cr_assert_eq(membership_count(net->nodes[0].m), 2);
        cr_assert_eq(membership_count(net->nodes[1].m), 2);
        info = info_of(net, 0, 1);
        cr_assert_eq(info.state, MEMBER_ALIVE);
        cr_assert_eq(info.record->version, 1);
        cr_assert_str_eq(info.record->endpoints[0], "tcp://10.0.0.2:7946");
        cr_assert_eq(info.record->n_skills, 1);
        cr_assert_str_eq(info.record->skills[0]->name, "gemm");
        info = info_of(net, 1, 0);
        cr_assert_eq(info.state, MEMBER_ALIVE);
        cr_assert_eq(info.faults, 0);
        cr_assert_gt(net->nodes[0].changes, 0);
        net_free(net);
}

Test(membership, nodes_joining_one_seed_all_learn_each_other) {
        struct net *net = net_new(5);

        net_converge(net);
        for (unsigned i = 0; i < net->n; i++)
                for (unsigned j = 0; j < net->n; j++)
                        cr_assert_eq(state_of(net, i, j), MEMBER_ALIVE);
        net_free(net);
}

Test(membership, join_retries_a_seed_that_was_down) {
        struct net *net = net_new(2);

        net->nodes[0].down = true;
        cr_assert_eq(membership_join(net->nodes[1].m, net->nodes[0].pk, net->nodes[0].endpoint), 0);
        net_run(net, 2 * SEC);
        cr_assert_eq(membership_count(net->nodes[1].m), 1);

        net->nodes[0].down = false;
        net_run(net, 2 * SEC);
        cr_assert_eq(membership_count(net->nodes[1].m), 2);
        cr_assert_eq(membership_count(net->nodes[0].m), 2);
        net_free(net);
}

Test(membership, probes_and_acks_keep_everyone_alive) {
        struct net *net = net_new(4);

        net_converge(net);
        net_run(net, 30 * SEC);
        for (unsigned i = 0; i < net->n; i++) {
                const struct membership_stats *st = membership_get_stats(net->nodes[i].m);

                cr_assert_eq(st->suspicions, 0);
                cr_assert_eq(st->probes_indirect, 0);
                /* One probe per 200 ms interval. */
                cr_assert_geq(st->probes, 30 * 5 - 2);
                cr_assert_leq(st->probes, 35 * 5 + 2);
                cr_assert_eq(st->rejected_messages + st->rejected_records, 0);
                for (unsigned j = 0; j < net->n; j++)
                        cr_assert_eq(state_of(net, i, j), MEMBER_ALIVE);
        }
        net_free(net);
}

Test(membership, silent_node_is_suspected_then_dead_within_bound_then_forgotten) {
        struct net *net = net_new(4);
        uint64_t start, suspected_at = 0, dead_at = 0;
        /* Each of 3 others probes node 3 at least once per shuffled cycle
         * of 3 intervals (at worst at the start of one cycle and the end of
         * the next), then suspicion lasts 4 × max(1, log10 4) intervals. */
        const uint64_t interval = net->config.probe_interval_usec;
        const uint64_t detect_bound = 2 * 3 * interval + 2 * interval;
        const uint64_t suspicion = 4 * interval;

        net_converge(net);
        net->nodes[3].down = true;
        start = net->now;

        while (net->now < start + 10 * SEC && !dead_at) {
                bool all_dead = true;

                net_run(net, 10 * MSEC);
                for (unsigned i = 0; i < 3; i++) {
                        enum member_state s = state_of(net, i, 3);

                        if (!suspected_at && s != MEMBER_ALIVE)
                                suspected_at = net->now;
                        all_dead = all_dead && s == MEMBER_DEAD;
                }
                if (all_dead)
                        dead_at = net->now;
        }
        cr_assert_gt(suspected_at, 0);
        cr_assert_leq(suspected_at - start, detect_bound, "suspected after %llu ms",
                      (unsigned long long) (suspected_at - start) / MSEC);
        cr_assert_gt(dead_at, 0);
        cr_assert_geq(dead_at - suspected_at, suspicion);
        cr_assert_leq(dead_at - start, detect_bound + suspicion + 2 * interval, "dead everywhere after %llu ms",
                      (unsigned long long) (dead_at - start) / MSEC);

        /* Forgotten once dead_reap_usec has passed. */
        net_run(net, net->config.dead_reap_usec + 2 * SEC);
        for (unsigned i = 0; i < 3; i++) {
                cr_assert_eq(membership_count(net->nodes[i].m), 3);
                cr_assert_eq((int) state_of(net, i, 3), -1);
        }
        net_free(net);
}

Test(membership, suspect_is_refuted_by_higher_incarnation) {
        struct net *net = net_new(3);
        struct member_info info;

        net_converge(net);
        cr_assert_eq(info_of(net, 1, 0).incarnation, 0);

        /* Node 2 tells node 1 that node 0 is suspect. */
        cr_assert_eq(deliver_rumor(net, 1, 2, 0, 0, MEMBER_SUSPECT), 0);
        cr_assert_eq(state_of(net, 1, 0), MEMBER_SUSPECT);

        /* Gossip reaches node 0, which refutes; everyone takes it back. */
        net_run(net, 2 * SEC);
        cr_assert_eq(membership_get_stats(net->nodes[0].m)->refutations, 1);
        cr_assert_eq(membership_get(net->nodes[0].m, 0, &info), 0);
        cr_assert_eq(info.incarnation, 1);
        cr_assert_eq(info.record->version, 2);
        for (unsigned i = 1; i < 3; i++) {
                info = info_of(net, i, 0);
                cr_assert_eq(info.state, MEMBER_ALIVE);
                cr_assert_eq(info.incarnation, 1);
        }

        /* The old suspicion, replayed, is stale now. */
        cr_assert_eq(deliver_rumor(net, 1, 2, 0, 0, MEMBER_SUSPECT), 0);
        cr_assert_eq(state_of(net, 1, 0), MEMBER_ALIVE);
        net_free(net);
}

Test(membership, rumor_about_self_is_refuted_at_once) {
        struct net *net = net_new(2);
        struct member_info info;

        net_converge(net);
        cr_assert_eq(deliver_rumor(net, 0, 1, 0, 0, MEMBER_DEAD), 0);
        cr_assert_eq(membership_get(net->nodes[0].m, 0, &info), 0);
        cr_assert_eq(info.incarnation, 1);
        cr_assert_eq(info.state, MEMBER_ALIVE);

        /* A rumor at an incarnation we never had is unverifiable: ignored
         * (else anyone could push us to UINT64_MAX). */
        cr_assert_eq(deliver_rumor(net, 0, 1, 0, 1000, MEMBER_DEAD), 0);
        cr_assert_eq(membership_get(net->nodes[0].m, 0, &info), 0);
        cr_assert_eq(info.incarnation, 1);
        cr_assert_eq(membership_get_stats(net->nodes[0].m)->refutations, 1);
        net_free(net);
}

Test(membership, dead_node_rejoins_with_higher_incarnation) {
        struct net *net = net_new(3);

        net_converge(net);
        net->nodes[2].down = true;
        net_run(net, 4 * SEC);
        cr_assert_eq(state_of(net, 0, 2), MEMBER_DEAD);
        cr_assert_eq(state_of(net, 1, 2), MEMBER_DEAD);

        /* It comes back (a partition heals): the reconnect pings tell it it
         * is dead; it refutes with a new incarnation. */
        net->nodes[2].down = false;
        net_run(net, 3 * SEC);
        for (unsigned i = 0; i < 2; i++) {
                struct member_info info = info_of(net, i, 2);

                cr_assert_eq(info.state, MEMBER_ALIVE, "node %u sees node 2 %s", i,
                             member_state_to_string(info.state));
                cr_assert_geq(info.incarnation, 1);
        }
        net_free(net);
}

Test(membership, dead_node_rejoins_through_its_seed) {
        struct net *net = net_new(3);

        net_converge(net);
        net->config.reconnect_interval_usec = 0;
        net->nodes[2].down = true;
        net_run(net, 4 * SEC);
        cr_assert_eq(state_of(net, 0, 2), MEMBER_DEAD);

        /* Restarted with a fresh instance, version counter and all. */
        net->nodes[2].down = false;
        membership_free(net->nodes[2].m);
        {
                Swarm__NodeRecord r;
                Swarm__SkillOffer skill, *skills[1];
                char *endpoints[1] = { net->nodes[2].endpoint };
                struct membership_io io = {
                        .userdata = &net->nodes[2],
                        .now_usec = fake_now,
                        .random_u64 = fake_random,
                        .send = fake_send,
                        .sign = fake_sign,
                };

                record_fill(&r, &skill, skills, endpoints, net->nodes[2].pk, 1);
                cr_assert_eq(membership_new(&net->config, &io, &r, &net->nodes[2].m), 0);
        }
        cr_assert_eq(membership_join(net->nodes[2].m, net->nodes[0].pk, net->nodes[0].endpoint), 0);
        net_run(net, 3 * SEC);
        for (unsigned i = 0; i < 2; i++)
                cr_assert_eq(state_of(net, i, 2), MEMBER_ALIVE);
        cr_assert_eq(membership_count(net->nodes[2].m), 3);
        net_free(net);
}

/* ---- Records ------------------------------------------------------------ */

Test(membership, update_self_raises_version_and_spreads) {
        struct net *net = net_new(4);
        Swarm__NodeRecord r;
        Swarm__SkillOffer skill, *skills[1];
        char *endpoints[1] = { net->nodes[0].endpoint };
        struct member_info info;

        net_converge(net);
        record_fill(&r, &skill, skills, endpoints, net->nodes[0].pk, 0);
        r.load = 3;
        skill.price = 77;
        cr_assert_eq(membership_update_self(net->nodes[0].m, &r), 0);
        cr_assert_eq(membership_get(net->nodes[0].m, 0, &info), 0);
        cr_assert_eq(info.record->version, 2);

        net_run(net, 2 * SEC);
        for (unsigned i = 1; i < net->n; i++) {
                info = info_of(net, i, 0);
                cr_assert_eq(info.record->version, 2);
                cr_assert_eq(info.record->load, 3);
                cr_assert_eq(info.record->skills[0]->price, 77);
        }

        /* Someone else's id is refused. */
        r.node_id.data = net->nodes[1].pk;
        cr_assert_eq(membership_update_self(net->nodes[0].m, &r), -EINVAL);
        net_free(net);
}

static void sign_record(const uint8_t pk[32], const uint8_t sk[64], uint64_t version, Swarm__SignedRecord *out) {
        Swarm__NodeRecord r;
        Swarm__SkillOffer skill, *skills[1];
        char *endpoints[1] = { (char *) "tcp://192.0.2.9:7946" };

        record_fill(&r, &skill, skills, endpoints, pk, version);
        cr_assert_eq(wire_record_sign(&r, sk, out), 0);
}

Test(membership, tampered_record_is_dropped_and_blamed_on_the_sender) {
        struct net *net = net_new(2);
        uint8_t pk[32], sk[64];
        Swarm__SignedRecord s, *records[1] = { &s };

        net_converge(net);
        keypair(100, pk, sk);
        sign_record(pk, sk, 1, &s);

        /* One bit of the body flipped (the capacity field, near the end). */
        s.body.data[s.body.len - 8] ^= 0x01;
        cr_assert_eq(deliver_gossip(net, 0, net->nodes[1].pk, NULL, 0, records, 1), 0);
        cr_assert_eq(membership_count(net->nodes[0].m), 2);
        cr_assert_eq(membership_get_stats(net->nodes[0].m)->rejected_records, 1);
        cr_assert_eq(info_of(net, 0, 1).faults, 1);
        s.body.data[s.body.len - 8] ^= 0x01;

        /* A flipped signature bit. */
        s.signature.data[3] ^= 0x80;
        cr_assert_eq(deliver_gossip(net, 0, net->nodes[1].pk, NULL, 0, records, 1), 0);
        cr_assert_eq(membership_get_stats(net->nodes[0].m)->rejected_records, 2);
        cr_assert_eq(info_of(net, 0, 1).faults, 2);
        s.signature.data[3] ^= 0x80;

        /* A record signed by another key than its node_id says. */
        wire_signed_record_clear(&s);
        {
                Swarm__NodeRecord r;
                Swarm__SkillOffer skill, *skills[1];
                char *endpoints[1] = { (char *) "tcp://192.0.2.9:7946" };
                uint8_t sig[64];

                record_fill(&r, &skill, skills, endpoints, pk, 1);
                cr_assert_eq(wire_record_sign(&r, sk, &s), 0);
                crypto_sign_detached(sig, NULL, s.body.data, s.body.len, net->nodes[1].sk);
                memcpy(s.signature.data, sig, 64);
        }
        cr_assert_eq(deliver_gossip(net, 0, net->nodes[1].pk, NULL, 0, records, 1), 0);
        cr_assert_eq(membership_get_stats(net->nodes[0].m)->rejected_records, 3);
        cr_assert_eq(membership_count(net->nodes[0].m), 2);
        wire_signed_record_clear(&s);

        /* The intact record is taken. */
        sign_record(pk, sk, 1, &s);
        cr_assert_eq(deliver_gossip(net, 0, net->nodes[1].pk, NULL, 0, records, 1), 0);
        cr_assert_eq(membership_count(net->nodes[0].m), 3);
        cr_assert_eq(info_of(net, 0, 1).faults, 3);
        wire_signed_record_clear(&s);
        net_free(net);
}

Test(membership, replayed_older_record_is_dropped_and_counted) {
        struct net *net = net_new(3);
        Swarm__SignedRecord old, *records[1] = { &old };
        struct member_info info;

        net_converge(net);
        /* Node 1's version 1 record, as anyone who heard it could keep it. */
        cr_assert_eq(wire_signed_record_copy(&info_of(net, 0, 1).signed_record[0], &old), 0);

        for (unsigned v = 0; v < 2; v++) {
                Swarm__NodeRecord r;
                Swarm__SkillOffer skill, *skills[1];
                char *endpoints[1] = { net->nodes[1].endpoint };

                record_fill(&r, &skill, skills, endpoints, net->nodes[1].pk, 0);
                r.load = v + 1;
                cr_assert_eq(membership_update_self(net->nodes[1].m, &r), 0);
        }
        net_run(net, 2 * SEC);
        cr_assert_eq(info_of(net, 0, 1).record->version, 3);

        /* Replayed by its owner: dropped, counted, blamed. */
        cr_assert_eq(deliver_gossip(net, 0, net->nodes[1].pk, NULL, 0, records, 1), 0);
        info = info_of(net, 0, 1);
        cr_assert_eq(info.record->version, 3);
        cr_assert_eq(info.record->load, 2);
        cr_assert_eq(info.faults, 1);
        cr_assert_eq(membership_get_stats(net->nodes[0].m)->rejected_records, 1);

        /* Relayed by a third party: dropped and counted, but not blamed
         * (an older version still in flight is what gossip does). */
        cr_assert_eq(deliver_gossip(net, 0, net->nodes[2].pk, NULL, 0, records, 1), 0);
        cr_assert_eq(info_of(net, 0, 1).record->version, 3);
        cr_assert_eq(membership_get_stats(net->nodes[0].m)->rejected_records, 2);
        cr_assert_eq(info_of(net, 0, 2).faults, 0);

        /* And membership_add_record() says so. */
        cr_assert_eq(membership_add_record(net->nodes[0].m, &old), -ESTALE);
        wire_signed_record_clear(&old);
        net_free(net);
}

Test(membership, records_of_unknown_nodes_are_learned_rumors_are_not) {
        struct net *net = net_new(2);
        uint8_t pk[32], sk[64];
        Swarm__SignedRecord s, *records[1] = { &s };
        Swarm__Rumor ru = SWARM__RUMOR__INIT, *rumors[1] = { &ru };

        net_converge(net);
        keypair(101, pk, sk);

        /* A rumor (any state) about a node we have no record of. */
        ru.node_id = (ProtobufCBinaryData) { .len = 32, .data = pk };
        ru.state = SWARM__MEMBER_STATE__DEAD;
        cr_assert_eq(deliver_gossip(net, 0, net->nodes[1].pk, rumors, 1, NULL, 0), 0);
        ru.state = SWARM__MEMBER_STATE__ALIVE;
        cr_assert_eq(deliver_gossip(net, 0, net->nodes[1].pk, rumors, 1, NULL, 0), 0);
        cr_assert_eq(membership_count(net->nodes[0].m), 2);

        /* Its signed record, relayed by node 1, is. */
        sign_record(pk, sk, 7, &s);
        cr_assert_eq(deliver_gossip(net, 0, net->nodes[1].pk, NULL, 0, records, 1), 0);
        cr_assert_eq(membership_count(net->nodes[0].m), 3);
        cr_assert_eq(membership_add_record(net->nodes[0].m, &s), 0);  /* already known */
        wire_signed_record_clear(&s);
        net_free(net);
}

/* ---- Malformed messages ------------------------------------------------- */

Test(membership, oversized_and_truncated_frames_are_rejected) {
        struct net *net = net_new(2);
        const struct membership_stats *st;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        Swarm__Ping ping = SWARM__PING__INIT;
        uint8_t *buf, *big;
        size_t size;

        net_converge(net);
        st = membership_get_stats(net->nodes[0].m);

        ping.seq = 12345;
        ping.on_behalf_of = (ProtobufCBinaryData) { .len = 32, .data = net->nodes[1].pk };
        e.body_case = SWARM__ENVELOPE__BODY_PING;
        e.ping = &ping;
        cr_assert_eq(wire_encode(&e, &buf, &size), 0);

        /* Cut short anywhere: refused. */
        for (size_t cut = 1; cut < size; cut++)
                cr_assert_eq(membership_receive(net->nodes[0].m, net->nodes[1].pk, buf, cut), -EBADMSG,
                             "cut at %zu of %zu", cut, size);
        cr_assert_eq(st->rejected_messages, size - 1);
        cr_assert_eq(info_of(net, 0, 1).faults, size - 1);
        free(buf);

        /* Over WIRE_MESSAGE_MAX: refused before decoding. */
        big = calloc(1, WIRE_MESSAGE_MAX + 1);
        cr_assert_eq(membership_receive(net->nodes[0].m, net->nodes[1].pk, big, WIRE_MESSAGE_MAX + 1), -EBADMSG);
        free(big);

        /* Garbage. */
        cr_assert_eq(membership_receive(net->nodes[0].m, net->nodes[1].pk, (const uint8_t *) "\xff\xff\xff", 3),
                     -EBADMSG);
        cr_assert_eq(st->rejected_messages, size + 1);

        /* An unknown sender is counted too, blamed on nobody. */
        {
                uint8_t stranger[32];

                memset(stranger, 0xee, sizeof(stranger));
                cr_assert_eq(membership_receive(net->nodes[0].m, stranger, (const uint8_t *) "\x0a", 1), -EBADMSG);
                cr_assert_eq(st->rejected_messages, size + 2);
                cr_assert_eq(membership_count(net->nodes[0].m), 2);
        }
        net_free(net);
}

Test(membership, unknown_message_type_is_rejected) {
        struct net *net = net_new(2);
        /* version = 1, then field 9 (a body this version does not know),
         * length-delimited, empty. */
        static const uint8_t unknown[] = { 0x08, 0x01, 0x4a, 0x00 };
        /* version = 2. */
        static const uint8_t future[] = { 0x08, 0x02, 0x12, 0x00 };

        net_converge(net);
        cr_assert_eq(membership_receive(net->nodes[0].m, net->nodes[1].pk, unknown, sizeof(unknown)), -EBADMSG);
        cr_assert_eq(membership_get_stats(net->nodes[0].m)->rejected_messages, 1);
        cr_assert_eq(info_of(net, 0, 1).faults, 1);

        /* Another protocol version is refused but is no fault. */
        cr_assert_eq(membership_receive(net->nodes[0].m, net->nodes[1].pk, future, sizeof(future)),
                     -EPROTONOSUPPORT);
        cr_assert_eq(membership_get_stats(net->nodes[0].m)->rejected_messages, 2);
        cr_assert_eq(info_of(net, 0, 1).faults, 1);
        net_free(net);
}

Test(membership, push_pull_sender_must_be_the_peer) {
        struct net *net = net_new(3);
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        Swarm__PushPull pp = SWARM__PUSH_PULL__INIT;
        uint8_t pk[32], sk[64], *buf;
        Swarm__SignedRecord s;
        size_t size;

        net_converge(net);
        keypair(102, pk, sk);
        sign_record(pk, sk, 1, &s);

        /* Node 1 sends a push-pull whose sender record is someone else's. */
        pp.sender = &s;
        e.body_case = SWARM__ENVELOPE__BODY_PUSH_PULL;
        e.push_pull = &pp;
        cr_assert_eq(wire_encode(&e, &buf, &size), 0);
        cr_assert_eq(membership_receive(net->nodes[0].m, net->nodes[1].pk, buf, size), 0);
        free(buf);
        cr_assert_eq(membership_count(net->nodes[0].m), 3);
        cr_assert_eq(info_of(net, 0, 1).faults, 1);
        cr_assert_eq(membership_get_stats(net->nodes[0].m)->rejected_records, 1);
        wire_signed_record_clear(&s);
        net_free(net);
}

/* ---- Probing ------------------------------------------------------------ */

Test(membership, indirect_probe_keeps_unreachable_member_alive) {
        struct net *net = net_new(3);

        net_converge(net);
        /* 0 and 2 cannot talk to each other; 1 reaches both. */
        net->blocked[0][2] = net->blocked[2][0] = true;
        net_run(net, 30 * SEC);

        for (unsigned i = 0; i < 3; i++) {
                const struct membership_stats *st = membership_get_stats(net->nodes[i].m);

                cr_assert_eq(st->suspicions, 0, "node %u suspected %llu", i, (unsigned long long) st->suspicions);
                for (unsigned j = 0; j < 3; j++)
                        cr_assert_eq(state_of(net, i, j), MEMBER_ALIVE);
        }
        cr_assert_gt(membership_get_stats(net->nodes[0].m)->probes_indirect, 10);
        cr_assert_gt(membership_get_stats(net->nodes[2].m)->probes_indirect, 10);
        cr_assert_eq(membership_get_stats(net->nodes[1].m)->probes_indirect, 0);

        /* Without the helper, the suspicion comes. */
        net->nodes[1].down = true;
        net_run(net, 5 * SEC);
        cr_assert_eq(state_of(net, 0, 2), MEMBER_DEAD);
        cr_assert_eq(state_of(net, 2, 0), MEMBER_DEAD);
        net_free(net);
}

Test(membership, piggyback_stays_within_the_message_cap_with_1000_members) {
        struct net *net = net_new(2);
        const size_t n_extra = 1000;
        Swarm__SignedRecord *signed_records;

        net_converge(net);
        net->max_gossip_message = net->max_items = 0;

        /* 1000 more members, learned through gossip from node 1, so that
         * node 0's queue is full of records to pass on. */
        signed_records = calloc(n_extra, sizeof(Swarm__SignedRecord));
        for (size_t i = 0; i < n_extra; i++) {
                uint8_t pk[32], sk[64], seed[32] = { 0x77 };

                memcpy(seed + 1, &i, sizeof(i));
                crypto_sign_seed_keypair(pk, sk, seed);
                sign_record(pk, sk, 1, &signed_records[i]);
        }
        for (size_t i = 0; i < n_extra; i += 16) {
                Swarm__SignedRecord *records[16];
                size_t n = 0;

                for (; n < 16 && i + n < n_extra; n++)
                        records[n] = &signed_records[i + n];
                cr_assert_eq(deliver_gossip(net, 0, net->nodes[1].pk, NULL, 0, records, n), 0);
        }
        cr_assert_eq(membership_count(net->nodes[0].m), n_extra + 2);
        net_pump(net);

        for (unsigned cap = 0; cap < 2; cap++) {
                net->max_gossip_message = net->max_items = 0;
                /* Probes to the 1000 (not on this net) go unanswered, so
                 * there are PingReqs as well as Pings. */
                net_run(net, 5 * SEC);
                cr_assert_leq(net->max_gossip_message, net->config.max_message_bytes, "%zu bytes",
                              net->max_gossip_message);
                cr_assert_geq(net->max_gossip_message, net->config.max_message_bytes * 3 / 4);
                cr_assert_gt(net->max_items, 1);
                cr_assert_leq(net->max_items, net->config.max_piggyback);
        }
        cr_assert_gt(net->sent_to_unknown, 0);

        for (size_t i = 0; i < n_extra; i++)
                wire_signed_record_clear(&signed_records[i]);
        free(signed_records);
        net_free(net);
}

Test(membership, piggyback_honours_a_smaller_configured_cap) {
        struct membership_config c;
        struct net *net;

        test_config(&c);
        c.max_message_bytes = 512;
        c.max_piggyback = 64;
        net = net_new_with(4, &c);
        net_converge(net);
        /* Everyone changes at once: plenty to piggyback. */
        for (unsigned round = 0; round < 5; round++) {
                for (unsigned i = 0; i < net->n; i++) {
                        Swarm__NodeRecord r;
                        Swarm__SkillOffer skill, *skills[1];
                        char *endpoints[1] = { net->nodes[i].endpoint };

                        record_fill(&r, &skill, skills, endpoints, net->nodes[i].pk, 0);
                        r.load = round;
                        cr_assert_eq(membership_update_self(net->nodes[i].m, &r), 0);
                }
                net_run(net, 1 * SEC);
        }
        cr_assert_leq(net->max_gossip_message, 512);
        for (unsigned i = 0; i < net->n; i++)
                for (unsigned j = 0; j < net->n; j++)
                        cr_assert_eq(info_of(net, i, j).record->load, 4);
        net_free(net);
}

/* ---- Leaving ------------------------------------------------------------ */

Test(membership, left_member_is_marked_left_and_never_suspected) {
        struct net *net = net_new(4);
        struct member_info info;

        net_converge(net);
        membership_leave(net->nodes[0].m);
        cr_assert_eq(membership_get(net->nodes[0].m, 0, &info), 0);
        cr_assert_eq(info.state, MEMBER_LEFT);

        /* It keeps ticking a few intervals, then goes. */
        net_run(net, 1 * SEC);
        net->nodes[0].down = true;
        for (unsigned i = 1; i < net->n; i++)
                cr_assert_eq(state_of(net, i, 0), MEMBER_LEFT);

        net_run(net, 5 * SEC);
        for (unsigned i = 1; i < net->n; i++) {
                cr_assert_eq(state_of(net, i, 0), MEMBER_LEFT);
                cr_assert_eq(membership_get_stats(net->nodes[i].m)->suspicions, 0);
                cr_assert_eq(membership_get_stats(net->nodes[i].m)->deaths, 0);
        }

        /* And is forgotten after dead_reap_usec. */
        net_run(net, net->config.dead_reap_usec);
        for (unsigned i = 1; i < net->n; i++)
                cr_assert_eq(membership_count(net->nodes[i].m), 3);
        net_free(net);
}

/* ---- Configuration and views -------------------------------------------- */

Test(membership, bad_configuration_is_refused) {
        struct net *net = net_new(1);
        struct membership_config c;
        struct membership *m = NULL;
        Swarm__NodeRecord r;
        Swarm__SkillOffer skill, *skills[1];
        char *endpoints[1] = { net->nodes[0].endpoint };
        struct membership_io io = {
                .userdata = &net->nodes[0],
                .now_usec = fake_now,
                .random_u64 = fake_random,
                .send = fake_send,
                .sign = fake_sign,
        };

        record_fill(&r, &skill, skills, endpoints, net->nodes[0].pk, 1);
        membership_config_default(&c);
        c.probe_timeout_usec = c.probe_interval_usec;
        cr_assert_eq(membership_new(&c, &io, &r, &m), -EINVAL);
        membership_config_default(&c);
        c.max_message_bytes = 10;
        cr_assert_eq(membership_new(&c, &io, &r, &m), -EINVAL);

        /* A signer that signs with another key than the record names. */
        membership_config_default(&c);
        memcpy(net->nodes[0].sk + 32, net->nodes[0].pk, 32);
        r.node_id.data = (uint8_t *) "0123456789abcdef0123456789abcdef";
        cr_assert_lt(membership_new(&c, &io, &r, &m), 0);
        cr_assert_null(m);

        cr_assert_str_eq(member_state_to_string(MEMBER_SUSPECT), "suspect");
        cr_assert_eq(membership_get(net->nodes[0].m, 1, &(struct member_info) {}), -ENOENT);
        net_free(net);
}

/* ---- Restarts and bootstrap --------------------------------------------- */

static void node_restart(struct net *net, unsigned i, uint64_t version) {
        struct node *nd = &net->nodes[i];
        Swarm__NodeRecord r;
        Swarm__SkillOffer skill, *skills[1];
        char *endpoints[1] = { nd->endpoint };
        struct membership_io io = {
                .userdata = nd,
                .now_usec = fake_now,
                .random_u64 = fake_random,
                .send = fake_send,
                .sign = fake_sign,
        };

        membership_free(nd->m);
        record_fill(&r, &skill, skills, endpoints, nd->pk, version);
        r.name = (char *) "restarted";
        cr_assert_eq(membership_new(&net->config, &io, &r, &nd->m), 0);
}

Test(membership, restarted_node_that_lost_its_version_jumps_past_its_old_record) {
        struct net *net = net_new(3);
        struct member_info info;

        net_converge(net);
        for (unsigned v = 0; v < 3; v++) {
                Swarm__NodeRecord r;
                Swarm__SkillOffer skill, *skills[1];
                char *endpoints[1] = { net->nodes[2].endpoint };

                record_fill(&r, &skill, skills, endpoints, net->nodes[2].pk, 0);
                r.load = v;
                cr_assert_eq(membership_update_self(net->nodes[2].m, &r), 0);
        }
        net_run(net, 2 * SEC);
        cr_assert_eq(info_of(net, 0, 2).record->version, 4);

        /* Restarted at version 1: the seed's push-pull reply shows it its
         * own version 4, and it re-issues above it. */
        node_restart(net, 2, 1);
        cr_assert_eq(membership_join(net->nodes[2].m, net->nodes[0].pk, net->nodes[0].endpoint), 0);
        net_run(net, 3 * SEC);
        cr_assert_eq(membership_get(net->nodes[2].m, 0, &info), 0);
        cr_assert_geq(info.record->version, 5);
        cr_assert_geq(info.incarnation, 1);
        for (unsigned i = 0; i < 2; i++) {
                info = info_of(net, i, 2);
                cr_assert_geq(info.record->version, 5);
                cr_assert_str_eq(info.record->name, "restarted");
                cr_assert_eq(info.state, MEMBER_ALIVE);
        }
        cr_assert_eq(membership_count(net->nodes[2].m), 3);
        net_free(net);
}

Test(membership, import_shares_the_table_of_another_instance) {
        struct net *net = net_new(4);

        /* Node 0 learns 1..3 from their records, without messages. */
        for (unsigned i = 1; i < 4; i++) {
                struct member_info self;

                cr_assert_eq(membership_get(net->nodes[i].m, 0, &self), 0);
                cr_assert_eq(membership_add_record(net->nodes[0].m, self.signed_record), 0);
        }
        cr_assert_eq(membership_count(net->nodes[0].m), 4);
        cr_assert_eq(net->n_queue, 0);

        /* The others copy node 0's table; each keeps its own self. */
        for (unsigned i = 1; i < 4; i++) {
                struct member_info self;

                cr_assert_eq(membership_import(net->nodes[i].m, net->nodes[0].m), 0);
                cr_assert_eq(membership_count(net->nodes[i].m), 4);
                cr_assert_eq(membership_get(net->nodes[i].m, 0, &self), 0);
                cr_assert(self.self);
                cr_assert_eq(memcmp(self.id, net->nodes[i].pk, 32), 0);
        }

        /* And they run as a swarm. */
        net_run(net, 10 * SEC);
        for (unsigned i = 0; i < 4; i++) {
                cr_assert_eq(membership_get_stats(net->nodes[i].m)->suspicions, 0);
                for (unsigned j = 0; j < 4; j++)
                        cr_assert_eq(state_of(net, i, j), MEMBER_ALIVE);
        }

        /* Freeing the source first leaves the shared records alive. */
        membership_free(net->nodes[0].m);
        net->nodes[0].m = NULL;
        net->nodes[0].down = true;
        cr_assert_str_eq(info_of(net, 1, 2).record->name, "test");
        net_free(net);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The membership core at scale: N instances of daemon/core/membership.c in one
 * process, in virtual time, with per-message latency, loss and partitions.
 * Every message is really encoded and decoded by the wire codec; only the
 * record signatures are a cheap keyed checksum instead of Ed25519 (the
 * state machine takes the verifier from its io, the daemon passes none and
 * gets libsodium).
 *
 * Bootstrap: every instance starts knowing every other instance's signed
 * record (membership_import(), sharing one verified copy of each record),
 * as if it had joined long ago; then the swarm runs a warm-up before the
 * experiments.  Joining 10,000 nodes through seeds would measure the join
 * storm rather than the steady state.
 *
 *   sim-membership [-n N]... [-l LOSS] [-s SEED] [--no-partition]
 *
 * Default: N = 1000 and N = 10000, 1% loss, latency uniform in 1-10 ms. */

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "membership.h"
#include "sim-rng.h"
#include "wire.h"

#define MSEC 1000ull
#define SEC (1000ull * MSEC)

struct event {
        uint64_t time, seq;
        uint32_t to, from;              /* from == UINT32_MAX: a timer */
        uint32_t size;
        uint8_t *data;
};

struct simnode {
        struct membership *m;
        uint8_t id[WIRE_NODE_ID_SIZE];
        uint64_t scheduled;             /* pending timer event, UINT64_MAX: none */
        uint32_t index;
        uint8_t group;                  /* partition side */
        bool crashed;
        bool knows_update;              /* has the publisher's new version */
        bool saw_crashed_dead;
};

struct sim {
        size_t n;
        struct simnode *nodes;
        uint32_t *id_table;             /* open addressing over ids, index + 1 */
        size_t n_id_table;
        struct event *heap;
        size_t n_heap, n_heap_allocated;
        uint64_t now, seq, rng;
        double loss;
        uint64_t latency_min, latency_max;
        bool partitioned;
        uint64_t messages_delivered, messages_lost;

        /* What the experiments watch, through member_changed. */
        bool tracking;
        uint32_t publisher, crashed;
        uint64_t update_version;
        size_t n_know_update, n_saw_dead;
        uint64_t t_update, t_update_999, t_update_all;
        uint64_t t_crash, t_first_suspect, t_all_dead;
        uint64_t false_dead;            /* live nodes declared DEAD by someone */
};

static struct sim *S;


static double now_s(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
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
                if (memcmp(S->nodes[v - 1].id, id, WIRE_NODE_ID_SIZE) == 0)
                        return (int32_t) v - 1;
        }
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
                if (!S->heap)
                        abort();
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

        if (nd->crashed)
                return;
        d = membership_next_deadline(nd->m);
        if (d < S->now)
                d = S->now;
        if (d >= nd->scheduled)
                return;
        nd->scheduled = d;
        heap_push((struct event) { .time = d, .to = nd->index, .from = UINT32_MAX });
}

/* ---- The io ---------------------------------------------------------- */

static uint64_t sim_now(void *userdata) {
        return S->now;
}

static uint64_t sim_random(void *userdata) {
        return rng_next(&S->rng);
}

static void sim_send(void *userdata, const uint8_t to[WIRE_NODE_ID_SIZE], const char *endpoint,
                     const uint8_t *data, size_t size) {
        struct simnode *from = userdata;
        int32_t t = id_to_index(to);
        uint64_t latency;

        if (t < 0 || from->crashed)
                return;
        if (S->partitioned && S->nodes[t].group != from->group)
                return;
        if ((double) (rng_next(&S->rng) >> 11) / 9007199254740992.0 < S->loss) {
                S->messages_lost++;
                return;
        }

        latency = S->latency_min + rng_next(&S->rng) % (S->latency_max - S->latency_min + 1);
        heap_push((struct event) {
                .time = S->now + latency,
                .to = (uint32_t) t,
                .from = from->index,
                .size = (uint32_t) size,
                .data = memcpy(malloc(size), data, size),
        });
}

/* A keyed checksum in place of Ed25519: 10,000 nodes verifying each
 * other's records with real signatures would measure libsodium. */
static uint64_t cheap_mac(const uint8_t *body, size_t size, const uint8_t *node_id) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);

        for (size_t i = 0; i < WIRE_NODE_ID_SIZE; i++)
                h = (h ^ node_id[i]) * UINT64_C(0x100000001b3);
        for (size_t i = 0; i < size; i++)
                h = (h ^ body[i]) * UINT64_C(0x100000001b3);
        return h;
}

static int sim_verify(const uint8_t *sig, const uint8_t *body, size_t size,
                      const uint8_t node_id[WIRE_NODE_ID_SIZE], void *userdata) {
        uint64_t h = cheap_mac(body, size, node_id);

        return memcmp(sig, &h, sizeof(h)) == 0 ? 0 : -1;
}

static int sim_sign(void *userdata, const Swarm__NodeRecord *r, Swarm__SignedRecord *out) {
        size_t size = swarm__node_record__get_packed_size(r);
        uint8_t *body, *sig;
        uint64_t h;

        body = malloc(size);
        sig = calloc(1, WIRE_SIGNATURE_SIZE);
        if (!body || !sig) {
                free(body);
                free(sig);
                return -ENOMEM;
        }
        swarm__node_record__pack(r, body);
        h = cheap_mac(body, size, r->node_id.data);
        memcpy(sig, &h, sizeof(h));
        swarm__signed_record__init(out);
        out->body = (ProtobufCBinaryData) { .len = size, .data = body };
        out->signature = (ProtobufCBinaryData) { .len = WIRE_SIGNATURE_SIZE, .data = sig };
        return 0;
}

static void sim_changed(void *userdata, const struct member_info *m, bool forgotten) {
        struct simnode *observer = userdata;
        int32_t subject;

        if (!S->tracking || m->self)
                return;

        if (S->update_version > 0 && !observer->knows_update &&
            memcmp(m->id, S->nodes[S->publisher].id, WIRE_NODE_ID_SIZE) == 0 &&
            m->record->version >= S->update_version) {
                observer->knows_update = true;
                S->n_know_update++;
        }

        if (m->state != MEMBER_SUSPECT && m->state != MEMBER_DEAD)
                return;
        subject = id_to_index(m->id);
        if (subject < 0)
                return;
        if (!S->nodes[subject].crashed) {
                if (m->state == MEMBER_DEAD && !forgotten)
                        S->false_dead++;
                return;
        }
        if ((uint32_t) subject == S->crashed && S->t_crash > 0) {
                if (!S->t_first_suspect)
                        S->t_first_suspect = S->now;
                if (m->state == MEMBER_DEAD && !observer->saw_crashed_dead) {
                        observer->saw_crashed_dead = true;
                        S->n_saw_dead++;
                }
        }
}

/* ---- Running --------------------------------------------------------- */

static void deliver(struct event *ev) {
        struct simnode *nd = &S->nodes[ev->to];

        if (ev->from == UINT32_MAX) {
                if (nd->crashed || ev->time != nd->scheduled)
                        return;         /* superseded */
                nd->scheduled = UINT64_MAX;
                membership_tick(nd->m);
        } else {
                if (!nd->crashed) {
                        S->messages_delivered++;
                        (void) membership_receive(nd->m, S->nodes[ev->from].id, ev->data, ev->size);
                }
                free(ev->data);
        }
        schedule(nd);
}

/* Runs until virtual time t, or until done() says so (checked every
 * millisecond of virtual time). */
static void run_until(uint64_t t, bool (*done)(void)) {
        uint64_t next_check = S->now;

        while (S->n_heap > 0 && S->heap[0].time <= t) {
                struct event ev = heap_pop();

                S->now = ev.time;
                deliver(&ev);
                if (done && S->now >= next_check) {
                        if (done())
                                return;
                        next_check = S->now + MSEC;
                }
        }
        S->now = t;
}

static size_t n_live(void) {
        size_t n = 0;

        for (size_t i = 0; i < S->n; i++)
                n += !S->nodes[i].crashed;
        return n;
}

static uint64_t bytes_sent(void) {
        uint64_t b = 0;

        for (size_t i = 0; i < S->n; i++)
                b += membership_get_stats(S->nodes[i].m)->sent_bytes;
        return b;
}

static uint64_t sum_stat(size_t offset) {
        uint64_t b = 0;

        for (size_t i = 0; i < S->n; i++)
                b += *(const uint64_t *) ((const uint8_t *) membership_get_stats(S->nodes[i].m) + offset);
        return b;
}

static bool update_done(void) {
        size_t others = n_live() - 1;

        if (!S->t_update_999 && S->n_know_update * 1000 >= others * 999)
                S->t_update_999 = S->now;
        if (S->n_know_update >= others) {
                S->t_update_all = S->now;
                return true;
        }
        return false;
}

static bool crash_done(void) {
        return S->n_saw_dead >= n_live();
}

static void record_for(struct simnode *nd, uint64_t version, uint32_t load, Swarm__NodeRecord *r,
                       Swarm__SkillOffer *skills, Swarm__SkillOffer **skill_ptrs, char **endpoints, char *ep) {
        swarm__node_record__init(r);
        snprintf(ep, 48, "tcp://10.%u.%u.%u:7946", (nd->index >> 16) & 255, (nd->index >> 8) & 255,
                 nd->index & 255);
        endpoints[0] = ep;
        for (unsigned k = 0; k < 2; k++) {
                swarm__skill_offer__init(&skills[k]);
                skills[k].name = (char *) (k == 0 ? "gemm" : "hash");
                skills[k].version = (char *) "0.1.0";
                skills[k].price = 100 + nd->index % 50 + load;
                skills[k].unit = (char *) (k == 0 ? "flop" : "byte");
                skills[k].throughput = 1000000000ull;
                skills[k].device = (char *) (k == 0 ? "cuda: NVIDIA H100" : "cpu: x86_64");
                skills[k].workers = 4;
                skill_ptrs[k] = &skills[k];
        }
        r->node_id = (ProtobufCBinaryData) { .len = WIRE_NODE_ID_SIZE, .data = nd->id };
        r->version = version;
        r->n_endpoints = 1;
        r->endpoints = endpoints;
        r->n_skills = 2;
        r->skills = skill_ptrs;
        r->capacity = 8;
        r->load = load;
        r->lending = true;
        r->name = (char *) "sim";
        r->issued_at = 1700000000000000ull + version;
}

struct result {
        size_t n;
        double loss;
        double setup_s, run_s;
        double update_rounds_999, update_s_999, update_s_all;
        double detect_first_s, detect_all_s;
        double fp_per_node_s;
        uint64_t fp_suspicions, fp_dead;
        double bytes_node_s, bytes_node_s_update;
        double msg_node_s;
        double heal_s;
        size_t record_bytes;
        bool partition_run;
};

static size_t not_alive_pairs(void) {
        size_t bad = 0;

        for (size_t i = 0; i < S->n; i++) {
                struct membership *m = S->nodes[i].m;

                bad += S->n - membership_count(m);
                for (size_t j = 0; j < membership_count(m); j++) {
                        struct member_info info;

                        if (membership_get(m, j, &info) < 0 || info.state != MEMBER_ALIVE)
                                bad++;
                }
        }
        return bad;
}

static bool heal_done(void) {
        for (size_t i = 0; i < S->n; i++) {
                struct membership *m = S->nodes[i].m;

                if (membership_count(m) < S->n)
                        return false;
                for (size_t j = 0; j < membership_count(m); j++) {
                        struct member_info info;

                        if (membership_get(m, j, &info) < 0 || info.state != MEMBER_ALIVE)
                                return false;
                }
        }
        return true;
}

static void simulate(size_t n, double loss, uint64_t seed, bool partition, struct result *res) {
        struct membership_config config;
        struct sim sim = {
                .n = n,
                .rng = seed,
                .loss = loss,
                .latency_min = 1 * MSEC,
                .latency_max = 10 * MSEC,
                .now = 1000 * SEC,
        };
        double t0 = now_s(), t1;
        uint64_t b0, b1, w0;
        uint64_t probe;
        size_t suspicions_offset = offsetof(struct membership_stats, suspicions);

        S = &sim;
        *res = (struct result) { .n = n, .loss = loss };
        membership_config_default(&config);
        probe = config.probe_interval_usec;

        sim.nodes = calloc(n, sizeof(struct simnode));
        for (sim.n_id_table = 1; sim.n_id_table < 2 * n; sim.n_id_table *= 2)
                ;
        sim.id_table = calloc(sim.n_id_table, sizeof(uint32_t));
        if (!sim.nodes || !sim.id_table)
                abort();

        for (size_t i = 0; i < n; i++) {
                struct simnode *nd = &sim.nodes[i];
                Swarm__NodeRecord r;
                Swarm__SkillOffer skills[2], *skill_ptrs[2];
                char *endpoints[1], ep[48];
                size_t slot;
                int k;

                nd->index = (uint32_t) i;
                nd->scheduled = UINT64_MAX;
                for (size_t b = 0; b < WIRE_NODE_ID_SIZE; b += 8) {
                        uint64_t x = rng_next(&sim.rng);
                        memcpy(nd->id + b, &x, 8);
                }
                for (slot = id_slot(nd->id, sim.n_id_table); sim.id_table[slot]; slot = (slot + 1) & (sim.n_id_table - 1))
                        ;
                sim.id_table[slot] = (uint32_t) i + 1;

                record_for(nd, 1, 0, &r, skills, skill_ptrs, endpoints, ep);
                struct membership_io io = {
                        .userdata = nd,
                        .now_usec = sim_now,
                        .random_u64 = sim_random,
                        .send = sim_send,
                        .verify = sim_verify,
                        .sign = sim_sign,
                        .member_changed = sim_changed,
                };
                k = membership_new(&config, &io, &r, &nd->m);
                if (k < 0) {
                        fprintf(stderr, "membership_new: %s\n", strerror(-k));
                        exit(EXIT_FAILURE);
                }
        }

        /* Node 0 learns everyone's record, everyone else imports its table. */
        for (size_t i = 1; i < n; i++) {
                struct member_info info;

                (void) membership_get(sim.nodes[i].m, 0, &info);
                if (membership_add_record(sim.nodes[0].m, info.signed_record) < 0)
                        abort();
                if (i == 1)
                        res->record_bytes = info.signed_record->body.len + WIRE_SIGNATURE_SIZE;
        }
        for (size_t i = 1; i < n; i++)
                if (membership_import(sim.nodes[i].m, sim.nodes[0].m) < 0) {
                        fprintf(stderr, "out of memory importing the table at node %zu\n", i);
                        exit(EXIT_FAILURE);
                }
        for (size_t i = 0; i < n; i++)
                schedule(&sim.nodes[i]);
        t1 = now_s();
        res->setup_s = t1 - t0;

        /* Warm-up: every timer running, a push-pull round done. */
        run_until(sim.now + 12 * SEC, NULL);
        sim.tracking = true;

        /* 3, 4. False positives and bytes in the steady state with loss. */
        {
                const uint64_t window = 30 * SEC;
                uint64_t s0 = sum_stat(suspicions_offset), m0 = sum_stat(offsetof(struct membership_stats, sent_messages));

                b0 = bytes_sent();
                w0 = sim.now;
                run_until(sim.now + window, NULL);
                b1 = bytes_sent();
                res->fp_suspicions = sum_stat(suspicions_offset) - s0;
                res->fp_dead = sim.false_dead;
                res->fp_per_node_s = (double) res->fp_suspicions / (double) n / ((double) (sim.now - w0) / SEC);
                res->bytes_node_s = (double) (b1 - b0) / (double) n / ((double) (sim.now - w0) / SEC);
                res->msg_node_s = (double) (sum_stat(offsetof(struct membership_stats, sent_messages)) - m0) /
                        (double) n / ((double) (sim.now - w0) / SEC);
        }

        /* 1. A new record version spreads. */
        {
                struct simnode *p;
                struct member_info info;
                Swarm__NodeRecord r;
                Swarm__SkillOffer skills[2], *skill_ptrs[2];
                char *endpoints[1], ep[48];

                sim.publisher = (uint32_t) (rng_next(&sim.rng) % n);
                p = &sim.nodes[sim.publisher];
                (void) membership_get(p->m, 0, &info);
                sim.update_version = info.record->version + 1;
                record_for(p, sim.update_version, 3, &r, skills, skill_ptrs, endpoints, ep);
                b0 = bytes_sent();
                w0 = sim.now;
                sim.t_update = sim.now;
                if (membership_update_self(p->m, &r) < 0)
                        abort();
                schedule(p);
                run_until(sim.now + 60 * SEC, update_done);
                b1 = bytes_sent();
                res->update_s_999 = sim.t_update_999 ? (double) (sim.t_update_999 - sim.t_update) / SEC : -1;
                res->update_rounds_999 = sim.t_update_999 ?
                        (double) (sim.t_update_999 - sim.t_update) / (double) probe : -1;
                res->update_s_all = sim.t_update_all ? (double) (sim.t_update_all - sim.t_update) / SEC : -1;
                res->bytes_node_s_update = (double) (b1 - b0) / (double) n /
                        ((double) (sim.now - w0 > 0 ? sim.now - w0 : 1) / SEC);
        }

        /* 2. A node crashes. */
        {
                do
                        sim.crashed = (uint32_t) (rng_next(&sim.rng) % n);
                while (sim.crashed == sim.publisher);
                sim.nodes[sim.crashed].crashed = true;
                sim.t_crash = sim.now;
                run_until(sim.now + 60 * SEC, crash_done);
                res->detect_first_s = sim.t_first_suspect ? (double) (sim.t_first_suspect - sim.t_crash) / SEC : -1;
                res->detect_all_s = crash_done() ? (double) (sim.now - sim.t_crash) / SEC : -1;
        }

        /* 5. A partition in two halves for 20 s, then healed. */
        res->heal_s = -1;
        if (partition) {
                uint64_t heal_at;

                res->partition_run = true;
                /* The crashed node comes back, so that "everyone alive"
                 * is the end state. */
                sim.nodes[sim.crashed].crashed = false;
                sim.nodes[sim.crashed].scheduled = UINT64_MAX;  /* its timer event was dropped */
                schedule(&sim.nodes[sim.crashed]);
                for (size_t i = 0; i < n; i++)
                        sim.nodes[i].group = (uint8_t) (i < n / 2);
                sim.partitioned = true;
                run_until(sim.now + 20 * SEC, NULL);
                sim.partitioned = false;
                heal_at = sim.now;
                for (uint64_t t = 0; t < 120; t++) {
                        run_until(sim.now + SEC, NULL);
                        if (getenv("SIM_DEBUG"))
                                fprintf(stderr, "heal +%llu s: %zu (observer, member) pairs not ALIVE\n",
                                        (unsigned long long) t + 1, not_alive_pairs());
                        if (heal_done()) {
                                res->heal_s = (double) (sim.now - heal_at) / SEC;
                                break;
                        }
                }
        }

        res->run_s = now_s() - t1;

        while (sim.n_heap > 0) {
                struct event ev = heap_pop();
                free(ev.data);
        }
        free(sim.heap);
        for (size_t i = 0; i < n; i++)
                membership_free(sim.nodes[i].m);
        free(sim.nodes);
        free(sim.id_table);
        S = NULL;
}

static void print_cell(double v, int decimals) {
        if (v < 0)
                printf(" %9s", "-");
        else
                printf(" %9.*f", decimals, v);
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "nodes", required_argument, NULL, 'n' },
                { "loss", required_argument, NULL, 'l' },
                { "seed", required_argument, NULL, 's' },
                { "no-partition", no_argument, NULL, 'P' },
                { "check", no_argument, NULL, 'C' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        size_t sizes[8], n_sizes = 0;
        double loss = 0.01;
        uint64_t seed = 0x5eed5eed12345678ull;
        bool partition = true, check = false;
        struct result results[8];
        struct membership_config c;
        int opt;

        while ((opt = getopt_long(argc, argv, "n:l:s:h", options, NULL)) >= 0)
                switch (opt) {
                case 'n':
                        if (n_sizes >= 8 || atol(optarg) < 3) {
                                fprintf(stderr, "-n: 3 or more nodes, at most 8 sizes\n");
                                return EXIT_FAILURE;
                        }
                        sizes[n_sizes++] = (size_t) atol(optarg);
                        break;
                case 'l':
                        loss = atof(optarg);
                        break;
                case 's':
                        seed = strtoull(optarg, NULL, 0) | 1;
                        break;
                case 'P':
                        partition = false;
                        break;
                case 'C':
                        check = true;
                        break;
                case 'h':
                        printf("%s [-n NODES]... [-l LOSS] [-s SEED] [--no-partition] [--check]\n\n"
                               "Simulates NODES membership instances (default: 1000, then 10000) in\n"
                               "virtual time with LOSS message loss (default 0.01) and 1-10 ms latency.\n"
                               "The partition experiment runs for N <= 2000.  SIM_DEBUG=1 shows the heal.\n"
                               "--check: exit 1 unless every experiment reached all live nodes and no\n"
                               "live node was declared dead (the test suite runs a small swarm so).\n",
                               argv[0]);
                        return EXIT_SUCCESS;
                default:
                        return EXIT_FAILURE;
                }
        if (n_sizes == 0) {
                sizes[n_sizes++] = 1000;
                sizes[n_sizes++] = 10000;
        }

        membership_config_default(&c);
        printf("membership simulator: probe %llu ms, ack timeout %llu ms, k=%u indirect, suspicion x%u, "
               "retransmit x%u,\n  %u items / %zu bytes per message, push-pull every %llu s (%u digests), "
               "loss %.1f%%, latency 1-10 ms\n\n",
               (unsigned long long) c.probe_interval_usec / 1000, (unsigned long long) c.probe_timeout_usec / 1000,
               c.indirect_probes, c.suspicion_mult, c.retransmit_mult, c.max_piggyback, c.max_message_bytes,
               (unsigned long long) c.push_pull_interval_usec / SEC, c.push_pull_digests, loss * 100);

        for (size_t i = 0; i < n_sizes; i++) {
                simulate(sizes[i], loss, seed, partition && sizes[i] <= 2000, &results[i]);
                fprintf(stderr, "N=%zu: setup %.1f s, simulation %.1f s (wall clock)\n", sizes[i],
                        results[i].setup_s, results[i].run_s);
        }

        printf("%-22s %7s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s\n", "", "N", "rounds", "t99.9%", "t100%",
               "suspect", "all-dead", "FP/n/s", "FP-dead", "B/node/s", "B/n/s upd", "heal");
        printf("%-22s %7s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s\n", "", "", "(99.9%)", "(s)", "(s)",
               "(s)", "(s)", "", "", "steady", "spread", "(s)");
        for (size_t i = 0; i < n_sizes; i++) {
                const struct result *r = &results[i];

                printf("%-22s %7zu", "swarmd membership", r->n);
                print_cell(r->update_rounds_999, 1);
                print_cell(r->update_s_999, 2);
                print_cell(r->update_s_all, 2);
                print_cell(r->detect_first_s, 2);
                print_cell(r->detect_all_s, 2);
                printf(" %9.2g %9llu", r->fp_per_node_s, (unsigned long long) r->fp_dead);
                printf(" %9.0f %9.0f", r->bytes_node_s, r->bytes_node_s_update);
                print_cell(r->partition_run ? r->heal_s : -1, 1);
                printf("\n");
        }
        printf("%-22s %7s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s\n", "memberlist (reference)", "10000", "-",
               "2-3", "-", "-", "-", "-", "-", "~40000", "-", "-");
        printf("\nReference: HashiCorp memberlist/serf, published figures (LAN profile, 200 ms gossip):\n"
               "convergence of an update in ~2-3 s at 10,000 nodes, ~40 kB/s per node. Not measured here.\n"
               "rounds: probe intervals until 99.9%% of live nodes hold the new version. suspect: first\n"
               "suspicion of the crashed node anywhere; all-dead: every live node marks it DEAD.\n"
               "FP/n/s: suspicions of live nodes per node per second (%.0f s at %.0f%% loss, no failures);\n"
               "FP-dead: live nodes declared DEAD. Signed record: %zu bytes.\n",
               30.0, loss * 100, results[0].record_bytes);
        for (size_t i = 0; i < n_sizes; i++)
                printf("N=%zu: %.1f messages/node/s; %llu suspicions in the window\n", results[i].n,
                       results[i].msg_node_s, (unsigned long long) results[i].fp_suspicions);

        if (check)
                for (size_t i = 0; i < n_sizes; i++) {
                        const struct result *r = &results[i];
                        if (r->update_s_all < 0 || r->detect_all_s < 0 || r->fp_dead > 0 ||
                            (r->partition_run && r->heal_s < 0)) {
                                fprintf(stderr, "check failed at N=%zu: update %s, crash %s, %llu live nodes "
                                        "declared dead, partition %s\n", r->n,
                                        r->update_s_all < 0 ? "did not reach everyone" : "ok",
                                        r->detect_all_s < 0 ? "not detected everywhere" : "ok",
                                        (unsigned long long) r->fp_dead,
                                        r->partition_run && r->heal_s < 0 ? "did not heal" : "ok");
                                return EXIT_FAILURE;
                        }
                }
        return EXIT_SUCCESS;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Eight real swarmd processes on loopback: they find each other from one
 * seed, notice a node killed with SIGKILL, and take it back when it
 * restarts with a higher incarnation.  Membership is read the way an
 * operator reads it, through each daemon's control socket. */

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control-client.h"
#include "network.h"
#include "transport.h"
#include "wire.h"
#include "identity.h"
#include "swarmd-harness.h"

#define NODES 8
#define WAIT_MS 20000

struct node {
        char dir[128], config[160], state[160], notify[160], log[160], socket[192];
        struct notify_listener listener;
        struct identity *identity;
        pid_t pid;
};

static char root[64];
static struct node nodes[NODES];
static int seed_port;

static void write_config(struct node *n, int index) {
        FILE *f = fopen(n->config, "we");

        cr_assert_not_null(f);
        fprintf(f, "node:\n  name: node%d\n", index);
        fprintf(f, "network:\n  bind: \"tcp://127.0.0.1:%d\"\n  beacon: false\n  probe_interval: 100ms\n",
                index == 0 ? seed_port : 0);
        if (index != 0)
                fprintf(f, "  seeds: [\"%s@tcp://127.0.0.1:%d\"]\n", nodes[0].identity->node_id, seed_port);
        cr_assert_eq(fclose(f), 0);
}

static void start_node(int i) {
        struct node *n = &nodes[i];
        const char *args[] = { "--config", n->config, "--state-dir", n->state, NULL };
        const char *binary = getenv("SWARMD_BINARY");
        int r;

        cr_assert_not_null(binary, "SWARMD_BINARY not set (run through meson test)");
        n->pid = swarmd_spawn(&(struct swarmd_spawn) {
                .binary = binary,
                .args = args,
                .notify_socket = n->notify,
                .stderr_path = n->log,
        });
        cr_assert_gt(n->pid, 0);
        r = notify_listener_wait(&n->listener, "READY=1", WAIT_MS, NULL, 0);
        cr_assert_eq(r, 0, "node %d not ready: %s", i, strerror(-r));
}

static void setup(void) {
        strcpy(root, "/tmp/swarm-test-XXXXXX");
        cr_assert_not_null(mkdtemp(root));
        seed_port = loopback_free_port();
        cr_assert_gt(seed_port, 0, "no free port: %s", strerror(-seed_port));
        for (int i = 0; i < NODES; i++) {
                struct node *n = &nodes[i];
                char dir[100];
                bool created;

                snprintf(dir, sizeof(dir), "%.60s/node%d", root, i);
                cr_assert_eq(mkdir(dir, 0755), 0);
                snprintf(n->dir, sizeof(n->dir), "%s", dir);
                snprintf(n->config, sizeof(n->config), "%s/swarmd.yaml", dir);
                snprintf(n->state, sizeof(n->state), "%s/state", dir);
                snprintf(n->notify, sizeof(n->notify), "%s/notify", dir);
                snprintf(n->log, sizeof(n->log), "%s/log", dir);
                snprintf(n->socket, sizeof(n->socket), "%s/state/control.sock", dir);
                /* Identities first: every node's seed line names node 0's id. */
                cr_assert_eq(identity_load_or_create(n->state, &n->identity, &created), 0);
                cr_assert_eq(notify_listener_open(&n->listener, n->notify), 0);
        }
        for (int i = 0; i < NODES; i++)
                write_config(&nodes[i], i);
}

static void teardown(void) {
        for (int i = 0; i < NODES; i++) {
                struct node *n = &nodes[i];
                if (n->pid > 0) {
                        kill(n->pid, SIGKILL);
                        waitpid(n->pid, NULL, 0);
                }
                notify_listener_close(&n->listener);
                identity_free(n->identity);
                n->identity = NULL;
                n->pid = 0;
        }
        rm_rf(root);
}

/* The state node `observer` has for `subject`, and its incarnation;
 * -1 when it does not know it (or cannot be asked). */
static int state_of(int observer, int subject, uint64_t *incarnation) {
        Swarm__ControlRequest req = SWARM__CONTROL_REQUEST__INIT;
        Swarm__PeersRequest peers = SWARM__PEERS_REQUEST__INIT;
        Swarm__ControlReply *reply;
        int state = -1;

        req.request_case = SWARM__CONTROL_REQUEST__REQUEST_PEERS;
        req.peers = &peers;
        if (control_client_call(nodes[observer].socket, &req, &reply) < 0)
                return -1;
        for (size_t i = 0; i < reply->n_peers; i++)
                if (reply->peers[i]->node_id.len == 32 &&
                    memcmp(reply->peers[i]->node_id.data, nodes[subject].identity->public_key, 32) == 0) {
                        state = reply->peers[i]->state;
                        if (incarnation)
                                *incarnation = reply->peers[i]->incarnation;
                }
        swarm__control_reply__free_unpacked(reply, NULL);
        return state;
}

/* Waits until every running node other than `subject` sees it in `want`
 * (-1: not known at all or dead); returns the milliseconds it took. */
static long long wait_all_see(int subject, int want, int skip, const char *what) {
        long long start = monotonic_usec(), deadline = start + WAIT_MS * 1000LL;

        for (;;) {
                bool all = true;
                for (int o = 0; o < NODES && all; o++) {
                        int s;
                        if (o == subject || o == skip)
                                continue;
                        s = state_of(o, subject, NULL);
                        if (want == -1)
                                all = s == -1 || s == SWARM__MEMBER_STATE__DEAD;
                        else
                                all = s == want;
                }
                if (all)
                        return (monotonic_usec() - start) / 1000;
                cr_assert_lt(monotonic_usec(), deadline, "timed out waiting until %s", what);
                usleep(50 * 1000);
        }
}

/* What an operator sees: swarmctl peers lists every node, by name. */
static void check_swarmctl_peers(void) {
        const char *swarmctl = getenv("SWARMCTL");
        char cmd[512], out[16384];
        size_t n;
        FILE *p;

        cr_assert_not_null(swarmctl, "SWARMCTL not set");
        snprintf(cmd, sizeof(cmd), "%s peers --socket %s", swarmctl, nodes[0].socket);
        p = popen(cmd, "r");
        cr_assert_not_null(p);
        n = fread(out, 1, sizeof(out) - 1, p);
        out[n] = '\0';
        cr_assert_eq(pclose(p), 0, "swarmctl peers failed:\n%s", out);
        for (int i = 0; i < NODES; i++) {
                char name[16];
                snprintf(name, sizeof(name), "node%d ", i);
                cr_assert(strstr(out, name), "%s missing from swarmctl peers:\n%s", name, out);
        }
        cr_assert(strstr(out, "alive"), "no alive peers:\n%s", out);

        snprintf(cmd, sizeof(cmd), "%s peers --socket %s/nonexistent.sock 2>/dev/null", swarmctl, root);
        p = popen(cmd, "r");
        cr_assert_not_null(p);
        while (fread(out, 1, sizeof(out), p) > 0)
                ;
        n = (size_t) pclose(p);
        cr_assert(WIFEXITED((int) n) && WEXITSTATUS((int) n) == 3, "swarmctl peers without swarmd: status %zu", n);
}

TestSuite(swarm, .init = setup, .fini = teardown, .timeout = 120);

Test(swarm, eight_daemons_converge_detect_a_kill_and_take_it_back) {
        long long ms;
        uint64_t before = 0, after = 0;

        for (int i = 0; i < NODES; i++)
                start_node(i);

        /* Full membership at every node. */
        ms = 0;
        for (int s = 0; s < NODES; s++) {
                long long t = wait_all_see(s, SWARM__MEMBER_STATE__ALIVE, -1, "full membership");
                ms = t > ms ? t : ms;
        }
        cr_log_info("8 daemons converged to full membership in %lld ms", ms);
        check_swarmctl_peers();
        cr_assert_eq(state_of(1, 3, &before), SWARM__MEMBER_STATE__ALIVE);

        /* kill -9 node 3: everyone else marks it dead. */
        kill(nodes[3].pid, SIGKILL);
        waitpid(nodes[3].pid, NULL, 0);
        nodes[3].pid = 0;
        ms = wait_all_see(3, -1, 3, "the killed node is dead everywhere");
        cr_log_info("killed node marked dead at every node in %lld ms", ms);

        /* Restart it: it rejoins with a higher incarnation. */
        start_node(3);
        ms = wait_all_see(3, SWARM__MEMBER_STATE__ALIVE, -1, "the restarted node is alive everywhere");
        cr_assert_eq(state_of(1, 3, &after), SWARM__MEMBER_STATE__ALIVE);
        cr_assert_gt(after, before, "incarnation did not rise: %llu -> %llu",
                     (unsigned long long) before, (unsigned long long) after);
        cr_log_info("restarted node alive everywhere in %lld ms (incarnation %llu -> %llu)", ms,
                    (unsigned long long) before, (unsigned long long) after);
}

/* Zero configuration: no seeds, two nodes find each other by their UDP
 * beacons (loopback broadcast here, the LAN's broadcast address in real
 * life). */
Test(swarm, beacon_discovery_without_seeds) {
        int port = loopback_free_port();
        cr_assert_gt(port, 0, "no free port: %s", strerror(-port));

        for (int i = 0; i < 2; i++) {
                FILE *f = fopen(nodes[i].config, "we");
                cr_assert_not_null(f);
                fprintf(f, "node:\n  name: beacon%d\nnetwork:\n  bind: \"tcp://127.0.0.1:0\"\n"
                        "  beacon: true\n  beacon_address: \"127.255.255.255\"\n  beacon_port: %d\n"
                        "  beacon_interval: 200ms\n  probe_interval: 100ms\n", i, port);
                cr_assert_eq(fclose(f), 0);
                start_node(i);
        }
        for (long long deadline = monotonic_usec() + WAIT_MS * 1000LL;;) {
                if (state_of(0, 1, NULL) == SWARM__MEMBER_STATE__ALIVE &&
                    state_of(1, 0, NULL) == SWARM__MEMBER_STATE__ALIVE)
                        break;
                cr_assert_lt(monotonic_usec(), deadline, "the nodes did not find each other by beacon");
                usleep(50 * 1000);
        }
}

struct hostile {
        uint8_t pk[32], sk[64];
        struct transport *t;
        char seed_endpoint[64];
};

static void hostile_receive(struct transport *t, const uint8_t from[WIRE_NODE_ID_SIZE], const uint8_t *data,
                            size_t size, void *userdata) {
}

/* A push-pull from the hostile peer: its own valid record as sender, and
 * optionally a record of itself with a higher version and a broken
 * signature. */
static void hostile_push(struct hostile *h, uint64_t version, bool tampered) {
        Swarm__NodeRecord r = SWARM__NODE_RECORD__INIT;
        Swarm__SignedRecord valid = SWARM__SIGNED_RECORD__INIT, bad = SWARM__SIGNED_RECORD__INIT;
        Swarm__SignedRecord *records[1];
        Swarm__PushPull pp = SWARM__PUSH_PULL__INIT;
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        char *endpoints[1] = { (char *) transport_endpoint(h->t) };
        uint8_t *data;
        size_t size;

        r.node_id.data = h->pk;
        r.node_id.len = 32;
        r.version = 1;
        r.incarnation = 1;
        r.endpoints = endpoints;
        r.n_endpoints = 1;
        r.name = (char *) "hostile";
        cr_assert_eq(wire_record_sign(&r, h->sk, &valid), 0);
        pp.sender = &valid;
        if (tampered) {
                r.version = version;
                cr_assert_eq(wire_record_sign(&r, h->sk, &bad), 0);
                bad.signature.data[7] ^= 0x20;
                records[0] = &bad;
                pp.records = records;
                pp.n_records = 1;
        }
        e.body_case = SWARM__ENVELOPE__BODY_PUSH_PULL;
        e.push_pull = &pp;
        cr_assert_eq(wire_encode(&e, &data, &size), 0);
        {
                uint8_t channel = NETWORK_CHANNEL_MEMBERSHIP;
                struct iovec iov[2] = { { &channel, 1 }, { data, size } };
                cr_assert_eq(transport_sendv(h->t, nodes[0].identity->public_key, h->seed_endpoint, iov, 2), 0);
        }
        free(data);
        wire_signed_record_clear(&valid);
        if (tampered)
                wire_signed_record_clear(&bad);
}

static void pump(sd_event *e, int ms) {
        long long end = monotonic_usec() + ms * 1000LL;
        while (monotonic_usec() < end)
                sd_event_run(e, 10 * 1000);
}

static bool log_contains(const char *path, const char *needle) {
        char buf[65536];
        FILE *f = fopen(path, "re");
        size_t n;

        if (!f)
                return false;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = '\0';
        fclose(f);
        return strstr(buf, needle) != NULL;
}

/* A peer that keeps sending records with broken signatures is banned. */
Test(swarm, peer_sending_forged_records_is_banned) {
        struct transport_config tc = {
                .bind = "tcp://127.0.0.1:0",
                .max_message_size = 1 << 20,
                .rate_per_second = 1000,
                .rate_burst = 1000,
                .send_queue = 100,
        };
        struct hostile h = {};
        sd_event *e = NULL;
        FILE *f;

        f = fopen(nodes[0].config, "we");
        cr_assert_not_null(f);
        fprintf(f, "network:\n  bind: \"tcp://127.0.0.1:%d\"\n  beacon: false\n  ban_after_faults: 3\n", seed_port);
        cr_assert_eq(fclose(f), 0);
        start_node(0);

        cr_assert_geq(sodium_init(), 0);
        crypto_sign_keypair(h.pk, h.sk);
        snprintf(h.seed_endpoint, sizeof(h.seed_endpoint), "tcp://127.0.0.1:%d", seed_port);
        cr_assert_geq(sd_event_new(&e), 0);
        cr_assert_eq(transport_new(e, &tc, h.sk, hostile_receive, &h, &h.t), 0);

        /* Join honestly first: faults are counted against members. */
        hostile_push(&h, 0, false);
        pump(e, 500);
        for (uint64_t v = 2; v < 12; v++) {
                hostile_push(&h, v, true);
                pump(e, 100);
        }
        for (long long deadline = monotonic_usec() + WAIT_MS * 1000LL;
             !log_contains(nodes[0].log, "Banned peer");) {
                cr_assert_lt(monotonic_usec(), deadline, "the forging peer was not banned");
                usleep(50 * 1000);
        }
        transport_free(h.t);
        sd_event_unref(e);
}

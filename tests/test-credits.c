/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Credits through real swarmd processes on loopback (issue 22): node 0 is
 * the issuer every node accepts (credits.issuers); it mints with `swarmctl
 * pay`, nodes pay each other, and every daemon's book, read through its
 * control socket, must agree: the supply is the sum of the mints
 * everywhere, payments arrive once, even when the payer is killed with
 * SIGKILL right after signing, and a node that was down catches up; a
 * double spender (testing.double_spend_to) gets at most one of its two
 * transfers delivered and is banned; kill -9 at random points neither
 * loses nor creates a credit; a partition without a quorum delivers
 * nothing, and heals into one book. */

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control-client.h"
#include "identity.h"
#include "swarmd-harness.h"

#define NODES 4
#define WAIT_MS 30000

struct node {
        char config[160], state[160], notify[160], log[160], socket[192];
        struct notify_listener listener;
        struct identity *identity;
        pid_t pid;
};

static char root[64];
static struct node nodes[NODES];
static int ports[NODES];

static void write_config(struct node *n, int index) {
        FILE *f = fopen(n->config, "we");

        cr_assert_not_null(f);
        fprintf(f, "node:\n  name: node%d\n", index);
        fprintf(f, "network:\n  bind: \"tcp://127.0.0.1:%d\"\n  beacon: false\n  probe_interval: 100ms\n",
                ports[index]);
        /* Every other node is a seed: a restarted node finds them all at
         * once, and they find it again, whoever was killed. */
        fprintf(f, "  seeds: [");
        for (int i = 0, first = 1; i < NODES; i++)
                if (i != index) {
                        fprintf(f, "%s\"%s@tcp://127.0.0.1:%d\"", first ? "" : ", ", nodes[i].identity->node_id,
                                ports[i]);
                        first = 0;
                }
        fprintf(f, "]\n");
        fprintf(f, "credits:\n  issuers: [\"%s\"]\n", nodes[0].identity->node_id);
        if (getenv("CREDITS_TEST_DEBUG"))
                fprintf(f, "log:\n  level: debug\n");
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

static void kill_node(int i) {
        cr_assert_eq(kill(nodes[i].pid, SIGKILL), 0);
        cr_assert_eq(waitpid(nodes[i].pid, NULL, 0), nodes[i].pid);
        nodes[i].pid = 0;
}

/* A free port below Linux's ephemeral range (32768 and up), so that no
 * connection the daemons open takes it as its source port between now and
 * the node's start (every node binds a port of its own: they all seed each
 * other).  0 when none is found. */
static int pick_port(void) {
        for (int tries = 0; tries < 200; tries++) {
                int port = 20000 + (int) randombytes_uniform(12000), fd = socket(AF_INET, SOCK_STREAM, 0), r;
                struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port),
                                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

                if (fd < 0)
                        return 0;
                r = bind(fd, (struct sockaddr *) &a, sizeof(a));
                close(fd);
                if (r == 0)
                        return port;
        }
        return 0;
}

static void setup(void) {
        cr_assert_geq(sodium_init(), 0);
        strcpy(root, "/tmp/credits-test-XXXXXX");
        cr_assert_not_null(mkdtemp(root));
        for (int i = 0; i < NODES; i++) {
                ports[i] = pick_port();
                cr_assert_gt(ports[i], 0, "no free port below the ephemeral range");
        }
        for (int i = 0; i < NODES; i++) {
                struct node *n = &nodes[i];
                char dir[100];
                bool created;

                snprintf(dir, sizeof(dir), "%.60s/node%d", root, i);
                cr_assert_eq(mkdir(dir, 0755), 0);
                snprintf(n->config, sizeof(n->config), "%s/swarmd.yaml", dir);
                snprintf(n->state, sizeof(n->state), "%s/state", dir);
                snprintf(n->notify, sizeof(n->notify), "%s/notify", dir);
                snprintf(n->log, sizeof(n->log), "%s/log", dir);
                snprintf(n->socket, sizeof(n->socket), "%s/state/control.sock", dir);
                cr_assert_eq(identity_load_or_create(n->state, &n->identity, &created), 0);
                cr_assert_eq(notify_listener_open(&n->listener, n->notify), 0);
        }
        for (int i = 0; i < NODES; i++)
                write_config(&nodes[i], i);
        for (int i = 0; i < NODES; i++)
                start_node(i);
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
        if (!getenv("KEEP_CREDITS_TEST"))
                rm_rf(root);
}

TestSuite(credits, .init = setup, .fini = teardown, .timeout = 150);

/* Node i's credits view; false when it cannot be asked. */
static bool credits_of(int i, Swarm__Credits *ret) {
        Swarm__ControlRequest req = SWARM__CONTROL_REQUEST__INIT;
        Swarm__CreditsRequest credits = SWARM__CREDITS_REQUEST__INIT;
        Swarm__ControlReply *reply;
        bool ok;

        req.request_case = SWARM__CONTROL_REQUEST__REQUEST_CREDITS;
        req.credits = &credits;
        if (control_client_call(nodes[i].socket, &req, &reply) < 0)
                return false;
        ok = reply->error == 0 && reply->credits;
        if (ok) {
                /* The reply's strings and bytes go with it: copies, per node. */
                static uint8_t digests[NODES][32];
                static char errors[NODES][256];

                *ret = *reply->credits;
                ret->digest.len = reply->credits->digest.len < 32 ? reply->credits->digest.len : 32;
                if (ret->digest.len)
                        memcpy(digests[i], reply->credits->digest.data, ret->digest.len);
                ret->digest.data = digests[i];
                snprintf(errors[i], sizeof(errors[i]), "%s", reply->credits->invariant_error ?: "");
                ret->invariant_error = errors[i];
        }
        swarm__control_reply__free_unpacked(reply, NULL);
        return ok;
}

/* Node from pays node to through its control socket: the reply's error. */
static int pay(int from, int to, uint64_t amount) {
        Swarm__ControlRequest req = SWARM__CONTROL_REQUEST__INIT;
        Swarm__PayRequest p = SWARM__PAY_REQUEST__INIT;
        Swarm__ControlReply *reply;
        int r;

        p.payee = (ProtobufCBinaryData) { .len = 32, .data = nodes[to].identity->public_key };
        p.amount = amount;
        req.request_case = SWARM__CONTROL_REQUEST__REQUEST_PAY;
        req.pay = &p;
        r = control_client_call(nodes[from].socket, &req, &reply);
        cr_assert_eq(r, 0, "pay from node %d: %s", from, strerror(-r));
        r = reply->error;
        if (r == 0)
                cr_assert_eq(reply->transfer_id.len, 32);
        swarm__control_reply__free_unpacked(reply, NULL);
        return r;
}

/* The operator's way: swarmctl pay. */
static void swarmctl_pay(int from, int to, uint64_t amount) {
        const char *swarmctl = getenv("SWARMCTL");
        char cmd[512], out[1024];
        size_t n;
        FILE *p;

        cr_assert_not_null(swarmctl, "SWARMCTL not set");
        snprintf(cmd, sizeof(cmd), "%s pay --socket %s %s %" PRIu64 " 2>&1", swarmctl, nodes[from].socket,
                 nodes[to].identity->node_id, amount);
        p = popen(cmd, "r");
        cr_assert_not_null(p);
        n = fread(out, 1, sizeof(out) - 1, p);
        out[n] = '\0';
        cr_assert_eq(pclose(p), 0, "swarmctl pay failed:\n%s", out);
        cr_assert(strstr(out, "signed and broadcast"), "%s", out);
}

/* Waits until every running node's book holds supply and delivered
 * transfers, and node `who` holds balance + pending = held. */
static void wait_books(uint64_t supply, uint64_t delivered, int who, uint64_t held, const char *what) {
        long long deadline = monotonic_usec() + WAIT_MS * 1000LL;
        Swarm__Credits v = SWARM__CREDITS__INIT;

        for (;;) {
                bool all = true;

                for (int i = 0; i < NODES && all; i++) {
                        if (nodes[i].pid <= 0)
                                continue;
                        all = credits_of(i, &v) && v.supply == supply && v.delivered == delivered;
                        if (all && i == who)
                                all = v.balance + v.pending == held && v.in_flight == 0;
                }
                if (all)
                        return;
                cr_assert_lt(monotonic_usec(), deadline,
                             "timed out waiting until %s (a node shows supply %" PRIu64 ", %" PRIu64
                             " delivered, balance %" PRIu64 " + pending %" PRIu64 ", in flight %" PRIu64 ")",
                             what, v.supply, v.delivered, v.balance, v.pending, v.in_flight);
                usleep(100 * 1000);
        }
}

/* Node 1 gets 1000, node 2 500: every later quorum needs both. */
static void mint_start(void) {
        swarmctl_pay(0, 1, 1000);
        wait_books(1000, 1, 1, 1000, "the first mint is everywhere");
        swarmctl_pay(0, 2, 500);
        wait_books(1500, 2, 2, 500, "the second mint is everywhere");
}

Test(credits, issuer_mints_and_payments_reach_every_daemon) {
        Swarm__Credits v;

        mint_start();
        cr_assert_eq(pay(1, 3, 300), 0);
        wait_books(1500, 3, 3, 300, "node 1's payment is everywhere");
        cr_assert(credits_of(1, &v));
        cr_assert_eq(v.balance, 700);
        cr_assert_eq(v.pending, 0);
        cr_assert_eq(v.next_seq, 2);

        /* Node 3 spends what it was paid (a dependency it names). */
        cr_assert_eq(pay(3, 2, 250), 0);
        wait_books(1500, 4, 2, 750, "node 3's payment is everywhere");
        cr_assert(credits_of(3, &v));
        cr_assert_eq(v.balance, 50);
        cr_assert(credits_of(0, &v));
        cr_assert(v.issuer);
        cr_assert_eq(v.balance + v.pending, 0);
}

Test(credits, node_without_issued_credits_cannot_pay_and_never_beyond_its_balance) {
        mint_start();
        cr_assert_eq(pay(3, 1, 1), -EDQUOT);
        cr_assert_eq(pay(2, 1, 501), -EDQUOT);
        /* Two payments in flight at once spend no more than it holds. */
        cr_assert_eq(pay(2, 1, 300), 0);
        cr_assert_eq(pay(2, 3, 201), -EDQUOT);
        cr_assert_eq(pay(2, 3, 200), 0);
        wait_books(1500, 4, 3, 200, "both payments of node 2 are everywhere");
        cr_assert_eq(pay(2, 1, 1), -EDQUOT);
}

Test(credits, payment_signed_before_a_kill_9_is_delivered_once_after_the_restart) {
        Swarm__Credits v;

        mint_start();
        cr_assert_eq(pay(1, 2, 100), 0);
        kill_node(1);
        start_node(1);
        wait_books(1500, 3, 2, 600, "the payment made before the kill is everywhere");
        cr_assert(credits_of(1, &v));
        cr_assert_eq(v.balance + v.pending, 900);
        cr_assert_eq(v.next_seq, 2);
        /* It pays on from where it was. */
        cr_assert_eq(pay(1, 3, 50), 0);
        wait_books(1500, 4, 3, 50, "the payment after the restart is everywhere");
}

Test(credits, daemon_that_was_down_catches_up_with_the_swarm) {
        mint_start();
        kill_node(3);
        cr_assert_eq(pay(1, 3, 120), 0);
        swarmctl_pay(0, 3, 80);
        wait_books(1580, 4, 1, 880, "the payments made while node 3 was down are at the others");
        start_node(3);
        wait_books(1580, 4, 3, 200, "node 3 caught up");
}

/* Node i's config again, with extra appended, and a restart. */
static void restart_with(int i, const char *extra) {
        FILE *f;

        kill_node(i);
        write_config(&nodes[i], i);
        f = fopen(nodes[i].config, "ae");
        cr_assert_not_null(f);
        fputs(extra, f);
        cr_assert_eq(fclose(f), 0);
        start_node(i);
}

/* Pays without asserting (the payer may be down, or out of credits): the
 * reply's error, or the socket's. */
static int try_pay(int from, int to, uint64_t amount) {
        Swarm__ControlRequest req = SWARM__CONTROL_REQUEST__INIT;
        Swarm__PayRequest p = SWARM__PAY_REQUEST__INIT;
        Swarm__ControlReply *reply;
        int r;

        p.payee = (ProtobufCBinaryData) { .len = 32, .data = nodes[to].identity->public_key };
        p.amount = amount;
        req.request_case = SWARM__CONTROL_REQUEST__REQUEST_PAY;
        req.pay = &p;
        r = control_client_call(nodes[from].socket, &req, &reply);
        if (r < 0)
                return r;
        r = reply->error;
        swarm__control_reply__free_unpacked(reply, NULL);
        return r;
}

/* Waits until the running nodes of mask (bit i: node i) hold one same
 * book, whose supply is supply, with their invariants holding and nothing
 * of theirs in flight. */
static void wait_converged(unsigned mask, uint64_t supply, const char *what) {
        long long deadline = monotonic_usec() + WAIT_MS * 1000LL;
        Swarm__Credits v = SWARM__CREDITS__INIT;
        uint8_t digest[32];

        for (;;) {
                bool all = true, first = true;

                for (int i = 0; i < NODES && all; i++) {
                        if (!(mask & (1u << i)) || nodes[i].pid <= 0)
                                continue;
                        all = credits_of(i, &v) && v.supply == supply && v.in_flight == 0 && v.digest.len == 32;
                        if (all)
                                cr_assert_str_empty(v.invariant_error, "node %d's book is broken: %s", i,
                                                    v.invariant_error);
                        if (all && first)
                                memcpy(digest, v.digest.data, 32);
                        else if (all)
                                all = memcmp(digest, v.digest.data, 32) == 0;
                        first = false;
                }
                if (all)
                        return;
                if (monotonic_usec() >= deadline)
                        for (int i = 0; i < NODES; i++) {
                                Swarm__Credits w = SWARM__CREDITS__INIT;

                                if (credits_of(i, &w))
                                        cr_log_error("node %d: supply %" PRIu64 ", %" PRIu64 " delivered, %" PRIu64
                                                     " in flight, next seq %" PRIu64 ", holds %" PRIu64, i,
                                                     w.supply, w.delivered, w.in_flight, w.next_seq,
                                                     w.balance + w.pending);
                        }
                cr_assert_lt(monotonic_usec(), deadline,
                             "timed out waiting until %s (a node shows supply %" PRIu64 " of %" PRIu64
                             ", %" PRIu64 " delivered, %" PRIu64 " in flight)",
                             what, v.supply, supply, v.delivered, v.in_flight);
                usleep(100 * 1000);
        }
}

/* A modified node (testing.double_spend_to) signs two transfers for one
 * seq and sends them to different peers at once: the honest nodes deliver
 * at most one of them, all prove the fraud, and what the double spender
 * pays afterwards goes nowhere.  It holds 300 of 1,800 credits: less than
 * a third, which is what the guarantee asks. */
Test(credits, a_double_spend_from_a_modified_node_is_delivered_at_most_once_proved_and_banned) {
        char extra[200];
        Swarm__Credits v, one, two;
        uint64_t delivered;

        snprintf(extra, sizeof(extra), "testing:\n  double_spend_to: \"%s\"\n", nodes[2].identity->node_id);
        restart_with(3, extra);
        mint_start();
        swarmctl_pay(0, 3, 300);
        wait_books(1800, 3, 3, 300, "node 3's mint is everywhere");

        /* 200 to node 1, and its twin, 200 to node 2, for one seq. */
        cr_assert_eq(pay(3, 1, 200), 0);
        for (long long deadline = monotonic_usec() + WAIT_MS * 1000LL;;) {
                bool all = true;

                for (int i = 0; i < 3 && all; i++)
                        all = credits_of(i, &v) && v.fraud_proofs >= 1;
                if (all)
                        break;
                cr_assert_lt(monotonic_usec(), deadline, "the fraud proof did not reach every honest node");
                usleep(100 * 1000);
        }
        wait_converged(0x7, 1800, "the honest nodes agree on one book");
        cr_assert(credits_of(1, &one) && credits_of(2, &two));
        cr_assert_leq(one.balance + one.pending + two.balance + two.pending, 1000 + 500 + 200,
                      "both transfers of the one seq were delivered: node 1 holds %" PRIu64 ", node 2 %" PRIu64,
                      one.balance + one.pending, two.balance + two.pending);
        cr_log_info("after the double spend: node 1 holds %" PRIu64 ", node 2 %" PRIu64,
                    one.balance + one.pending, two.balance + two.pending);

        /* Banned: whatever it signs now is delivered nowhere honest. */
        cr_assert(credits_of(1, &v));
        delivered = v.delivered;
        (void) try_pay(3, 1, 10);
        usleep(2000 * 1000);
        for (int i = 0; i < 3; i++) {
                cr_assert(credits_of(i, &v));
                cr_assert_eq(v.delivered, delivered, "node %d delivered a banned payer's transfer", i);
        }
}

/* Whether node i sees every other node alive. */
static bool sees_everyone(int i) {
        Swarm__ControlRequest req = SWARM__CONTROL_REQUEST__INIT;
        Swarm__PeersRequest peers = SWARM__PEERS_REQUEST__INIT;
        Swarm__ControlReply *reply;
        int alive = 0;

        req.request_case = SWARM__CONTROL_REQUEST__REQUEST_PEERS;
        req.peers = &peers;
        if (control_client_call(nodes[i].socket, &req, &reply) < 0)
                return false;
        for (size_t k = 0; k < reply->n_peers; k++)
                alive += !reply->peers[k]->self && reply->peers[k]->state == SWARM__MEMBER_STATE__ALIVE;
        swarm__control_reply__free_unpacked(reply, NULL);
        return alive == NODES - 1;
}

/* Until the membership is whole again after a restart (SWIM's business,
 * not the credits': a node that several quick restarts left thinking the
 * others dead can stay alone, which the credits cannot fix). */
static void wait_membership_whole(void) {
        long long deadline = monotonic_usec() + WAIT_MS * 1000LL;

        for (;;) {
                bool all = true;

                for (int i = 0; i < NODES && all; i++)
                        all = sees_everyone(i);
                if (all)
                        return;
                cr_assert_lt(monotonic_usec(), deadline, "the membership did not come whole again");
                usleep(50 * 1000);
        }
}

/* kill -9 at random points while three nodes pay each other and the
 * issuer mints: no credit is lost or created — once the restarted nodes
 * caught up, every node's book is the same, its supply is the sum of the
 * mints the issuer signed, and supply = Σ balances + Σ pending holds. */
Test(credits, kill_9_at_random_points_loses_and_creates_no_credit, .timeout = 240) {
        unsigned seed = getenv("CREDITS_TEST_SEED") ? (unsigned) atoi(getenv("CREDITS_TEST_SEED"))
                                                    : (unsigned) monotonic_usec();
        uint64_t minted = 1500;

        cr_log_info("seed %u", seed);
        srand(seed);
        mint_start();
        for (int round = 0; round < 8; round++) {
                int victim = rand() % NODES;
                int at = rand() % 12;

                for (int k = 0; k < 12; k++) {
                        int from = 1 + rand() % 3, to = rand() % NODES;

                        if (k == at)
                                kill_node(victim);
                        if (from != to && nodes[from].pid > 0)
                                (void) try_pay(from, to, 1 + (uint64_t) (rand() % 40));
                        /* A mint counts once the issuer said it is stored. */
                        if (k % 4 == 0 && nodes[0].pid > 0 && try_pay(0, 1 + rand() % 3, 25) == 0)
                                minted += 25;
                        usleep((useconds_t) (rand() % 30) * 1000);
                }
                start_node(victim);
                wait_membership_whole();
                cr_log_info("round %d: node %d killed at step %d", round, victim, at);
        }
        wait_converged(0xf, minted, "every book is the same and holds every mint once");
}

/* A partition, then healing: nodes 2 and 3 are cut off (SIGSTOP: they
 * neither send nor answer) while nodes 0 and 1 go on paying.  Node 1 holds
 * 1000 of the 1,500 credits: exactly 2/3, not more, so no quorum exists on
 * its side and nothing it pays is delivered, not even there; once the
 * others are back, every payment is delivered everywhere and all books are
 * one. */
Test(credits, a_partition_delivers_nothing_without_a_quorum_and_heals_into_one_book) {
        Swarm__Credits v;

        mint_start();
        cr_assert_eq(kill(nodes[2].pid, SIGSTOP), 0);
        cr_assert_eq(kill(nodes[3].pid, SIGSTOP), 0);
        cr_assert_eq(pay(1, 3, 100), 0);
        cr_assert_eq(pay(1, 2, 50), 0);
        usleep(2000 * 1000);
        for (int i = 0; i < 2; i++) {
                cr_assert(credits_of(i, &v));
                cr_assert_eq(v.delivered, 2, "node %d delivered a payment without a quorum", i);
        }
        cr_assert(credits_of(1, &v));
        cr_assert_eq(v.in_flight, 150);

        cr_assert_eq(kill(nodes[2].pid, SIGCONT), 0);
        cr_assert_eq(kill(nodes[3].pid, SIGCONT), 0);
        wait_converged(0xf, 1500, "the healed swarm holds one book");
        wait_books(1500, 4, 3, 100, "node 3 holds what node 1 paid it during the partition");
        cr_assert(credits_of(2, &v));
        cr_assert_eq(v.balance + v.pending, 550);
}

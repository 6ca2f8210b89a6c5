/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Payments through real swarmd daemons on loopback (issue 22): four nodes,
 * node 0 the issuer that mints to the other three; then
 *   1. one payment at a time: the time from `swarmctl pay`'s request to
 *      its delivery in every node's book (p50/p95), polled through the
 *      control sockets (so ~1 ms of resolution);
 *   2. payments as fast as three payers sign them: payments/s until every
 *      book delivered them all;
 * next to Astro's published 10,000 payments/s (2 shards; Collins et al.,
 * DSN 2020), the anchor the issue names, which is not measured here.
 * Each payment a node signs is stored with a full fsync before it leaves
 * (credits_pay()); jobs' payments share the group commit instead.
 * Usage: build/bench/bench-credits [-n PAYMENTS] [BUILD_DIR] */

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "credits-harness.h"
#include "identity.h"
#include "macro.h"
#include "swarmd-harness.h"

#define NODES 4
#define MINT (1000ull * 1000 * 1000)

struct node {
        char dir[128], config[160], state[160], notify[160], log[160], socket[192];
        struct notify_listener listener;
        struct identity *identity;
        pid_t pid;
};

static char root[] = "/tmp/bench-credits-XXXXXX";
static struct node nodes[NODES];
static const char *swarmd;
static int seed_port;

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static void teardown(void) {
        for (int i = 0; i < NODES; i++) {
                if (nodes[i].pid > 0) {
                        kill(nodes[i].pid, SIGTERM);
                        if (wait_exit_timeout(nodes[i].pid, 5000) < 0) {
                                kill(nodes[i].pid, SIGKILL);
                                waitpid(nodes[i].pid, NULL, 0);
                        }
                }
                notify_listener_close(&nodes[i].listener);
                identity_free(nodes[i].identity);
        }
        rm_rf(root);
}

static _noreturn_ void die(const char *what) {
        fprintf(stderr, "bench-credits: %s\n", what);
        teardown();
        exit(EXIT_FAILURE);
}

static void start_node(int i) {
        struct node *n = &nodes[i];
        const char *args[] = { "--config", n->config, "--state-dir", n->state, NULL };
        FILE *f = fopen(n->config, "we");

        if (!f)
                die("cannot write a configuration");
        fprintf(f, "node:\n  name: node%d\n", i);
        fprintf(f, "network:\n  bind: \"tcp://127.0.0.1:%d\"\n  beacon: false\n  probe_interval: 100ms\n"
                   "  rate_limit: 1000000\n", i == 0 ? seed_port : 0);
        if (i != 0)
                fprintf(f, "  seeds: [\"%s@tcp://127.0.0.1:%d\"]\n", nodes[0].identity->node_id, seed_port);
        fprintf(f, "dbus:\n  bus: none\nlending:\n  policy: never\n");
        fprintf(f, "credits:\n  issuers: [\"%s\"]\n", nodes[0].identity->node_id);
        fclose(f);
        n->pid = swarmd_spawn(&(struct swarmd_spawn) {
                .binary = swarmd, .args = args, .notify_socket = n->notify, .stderr_path = n->log,
        });
        if (n->pid <= 0 || notify_listener_wait(&n->listener, "READY=1", 30000, NULL, 0) < 0)
                die("a swarmd did not become ready (see its log)");
}

static void setup(void) {
        if (!mkdtemp(root))
                die("mkdtemp failed");
        seed_port = loopback_free_port();
        if (seed_port <= 0)
                die("no free port on 127.0.0.1");
        for (int i = 0; i < NODES; i++) {
                struct node *n = &nodes[i];
                char dir[128];

                /* From a local copy: gcc sees n->dir → n->config as an overlap. */
                snprintf(dir, sizeof(dir), "%.60s/node%d", root, i);
                snprintf(n->dir, sizeof(n->dir), "%s", dir);
                if (mkdir(dir, 0755) < 0)
                        die("mkdir failed");
                snprintf(n->config, sizeof(n->config), "%s/swarmd.yaml", dir);
                snprintf(n->state, sizeof(n->state), "%s/state", dir);
                snprintf(n->notify, sizeof(n->notify), "%s/notify", dir);
                snprintf(n->log, sizeof(n->log), "%s/log", dir);
                snprintf(n->socket, sizeof(n->socket), "%s/state/control.sock", dir);
                if (identity_load_or_create(n->state, &n->identity, NULL) < 0 ||
                    notify_listener_open(&n->listener, n->notify) < 0)
                        die("cannot prepare a node");
        }
}

/* The fewest transfers any node's book holds. */
static uint64_t delivered_everywhere(void) {
        uint64_t least = UINT64_MAX;

        for (int i = 0; i < NODES; i++) {
                struct harness_credits v;

                if (!harness_credits_get(nodes[i].socket, &v))
                        die("a node does not answer");
                if (v.delivered < least)
                        least = v.delivered;
        }
        return least;
}

static void wait_delivered(uint64_t count, uint64_t timeout_usec) {
        uint64_t end = now_usec() + timeout_usec;

        while (delivered_everywhere() < count)
                if (now_usec() > end)
                        die("payments were not delivered everywhere in time (see the logs)");
}

static void pay(int from, int to, uint64_t amount) {
        char error[256];

        if (harness_pay(nodes[from].socket, nodes[to].identity->public_key, amount, error, sizeof(error)) < 0)
                die(error);
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

static uint64_t percentile(uint64_t *v, size_t n, double p) {
        qsort(v, n, sizeof(*v), cmp_u64);
        return v[(size_t) ((double) (n - 1) * p)];
}

int main(int argc, char *argv[]) {
        static char binary[512];
        const char *build = "build";
        uint64_t base, t0, elapsed, *lat;
        size_t n = 200;
        int opt;

        while ((opt = getopt(argc, argv, "n:")) != -1)
                if (opt == 'n')
                        n = (size_t) strtoul(optarg, NULL, 10);
        if (optind < argc)
                build = argv[optind];
        if (n < 10 || n > 100000) {
                fprintf(stderr, "Usage: bench-credits [-n PAYMENTS (10-100000)] [BUILD_DIR]\n");
                return EXIT_FAILURE;
        }
        snprintf(binary, sizeof(binary), "%s/daemon/swarmd", build);
        swarmd = binary;
        if (access(swarmd, X_OK) < 0) {
                fprintf(stderr, "bench-credits: no %s; pass the build directory\n", swarmd);
                return EXIT_FAILURE;
        }
        if (sodium_init() < 0)
                return EXIT_FAILURE;
        signal(SIGPIPE, SIG_IGN);
        lat = calloc(n, sizeof(*lat));
        if (!lat)
                return EXIT_FAILURE;

        setup();
        for (int i = 0; i < NODES; i++)
                start_node(i);
        for (int i = 1; i < NODES; i++) {
                char error[256];

                if (harness_mint(nodes[0].socket, nodes[i].socket, nodes[i].identity->public_key, MINT, 30000, error,
                                 sizeof(error)) < 0)
                        die(error);
        }
        wait_delivered(NODES - 1, 30 * 1000000ull);

        /* 1. One at a time: request to delivery at all four. */
        base = delivered_everywhere();
        for (size_t k = 0; k < n; k++) {
                int from = 1 + (int) (k % 3), to = 1 + (int) ((k + 1) % 3);

                t0 = now_usec();
                pay(from, to, 1 + k % 7);
                wait_delivered(base + k + 1, 10 * 1000000ull);
                lat[k] = now_usec() - t0;
        }

        /* 2. As fast as three payers sign: until all four delivered all. */
        base = delivered_everywhere();
        t0 = now_usec();
        for (size_t k = 0; k < n; k++)
                pay(1 + (int) (k % 3), 1 + (int) ((k + 2) % 3), 1);
        wait_delivered(base + n, 60 * 1000000ull);
        elapsed = now_usec() - t0;

        printf("\nPayments on loopback: 4 swarmd (1 issuer, 3 payers), Bracha's broadcast weighted by credits, "
               "%zu payments each\n\n", n);
        printf("%-58s %12s %12s\n", "", "p50 ms", "p95 ms");
        printf("%-58s %12.2f %12.2f\n", "one at a time: request -> delivered at all 4 nodes",
               (double) percentile(lat, n, 0.5) / 1000.0, (double) percentile(lat, n, 0.95) / 1000.0);
        printf("\n%-58s %12s\n", "", "payments/s");
        printf("%-58s %12.0f\n", "3 payers, requests back to back, until delivered at all 4",
               (double) n / ((double) elapsed / 1e6));
        printf("%-58s %12.0f\n", "Astro, 2 shards (DSN 2020; published, not measured here)", 10000.0);
        printf("\nEach payment made with `swarmctl pay` is signed, stored with a full fsync and then\n"
               "broadcast; every node verifies every ECHO and READY (3(N - 1) messages per node).\n");
        free(lat);
        teardown();
        return EXIT_SUCCESS;
}

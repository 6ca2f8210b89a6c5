/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Jobs end to end on loopback, with real swarmd processes: a requester
 * daemon (no skills) and up to four provider daemons hosting the hash
 * skill, jobs submitted through the requester's jobs socket
 * (client/jobs-client.h) and verified there before they come back.
 *
 *   1. round trip of one tiny hash job (sequential), p50/p99, against a
 *      bare ZeroMQ DEALER/ROUTER round trip measured in the same run
 *      (target: ≤ 3× at p50);
 *   2. throughput of tiny jobs through one requester to 3 providers;
 *   3. cheater: 4 providers, one with testing.corrupt_results; the share
 *      of wrong results the user gets (must be 0) and what the reroutes
 *      cost.
 *
 * Usage: bench-jobs [-n JOBS] [BUILD_DIR]   (BUILD_DIR: where swarmd,
 * swarm-worker and plugins/hash/hash.so are; default: the parent of this
 * binary's directory).  Run by hand; never fails the build. */

#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "credits-harness.h"
#include "identity.h"
#include "jobs-client.h"
#include "jobs-proto.h"
#include "socket-path.h"
#include "swarmd-harness.h"

#define PROVIDERS 4
#define NODES (PROVIDERS + 1)

struct node {
        char dir[256], config[300], state[300], notify[300], log[300];
        struct notify_listener listener;
        struct identity *identity;
        pid_t pid;
};

static char root[64] = "/tmp/bench-jobs-XXXXXX";
static char build[PATH_MAX], swarmd[PATH_MAX + 32], hash_plugin[PATH_MAX + 32];
static struct node nodes[NODES];
static int seed_port;

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static uint64_t percentile(uint64_t *v, size_t n, double p) {
        if (n == 0)
                return 0;
        qsort(v, n, sizeof(*v), cmp_u64);
        return v[(size_t) (p * (double) (n - 1))];
}

static void die(const char *what) {
        fprintf(stderr, "bench-jobs: %s\n", what);
        for (int i = 0; i < NODES; i++)
                if (nodes[i].pid > 0) {
                        kill(nodes[i].pid, SIGKILL);
                        waitpid(nodes[i].pid, NULL, 0);
                }
        fprintf(stderr, "bench-jobs: logs kept in %s\n", root);
        exit(EXIT_FAILURE);
}

static void write_config(int i, bool corrupt) {
        FILE *f = fopen(nodes[i].config, "we");

        if (!f)
                die("cannot write a configuration");
        fprintf(f, "node:\n  name: %s%d\n", i == 0 ? "requester" : "provider", i);
        fprintf(f, "network:\n  bind: \"tcp://127.0.0.1:%d\"\n  beacon: false\n  probe_interval: 100ms\n"
                   "  rate_limit: 1000000\n", i == 0 ? seed_port : 0);
        if (i != 0)
                fprintf(f, "  seeds: [\"%s@tcp://127.0.0.1:%d\"]\n", nodes[0].identity->node_id, seed_port);
        fprintf(f, "dbus:\n  bus: none\n");
        if (getenv("BENCH_JOBS_DEBUG"))         /* logs in the node directories, kept on failure */
                fprintf(f, "log:\n  level: debug\n");
        if (i == 0)             /* the requester verifies with its own copy of the plugin */
                fprintf(f, "skills:\n  directory: \"%s/plugins/hash\"\n", build);
        else
                fprintf(f, "skills:\n  enabled: [\"%s\"]\n  workers: 2\n  queue_limit: 1024\n  cgroups: off\n",
                        hash_plugin);
        fprintf(f, "testing:\n  corrupt_results: %s\n", corrupt ? "true" : "false");
        /* Node 1 is the swarm's issuer: it mints to the requester. */
        fprintf(f, "credits:\n  issuers: [\"%s\"]\n", nodes[1].identity->node_id);
        fclose(f);
}

static void start_node(int i, bool corrupt) {
        struct node *n = &nodes[i];
        const char *args[] = { "--config", n->config, "--state-dir", n->state, NULL };

        write_config(i, corrupt);
        n->pid = swarmd_spawn(&(struct swarmd_spawn) {
                .binary = swarmd,
                .args = args,
                .notify_socket = n->notify,
                .stderr_path = n->log,
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

                /* From a local copy: gcc -O0 takes n->dir → n->config for an overlap. */
                snprintf(dir, sizeof(dir), "%.60s/node%d", root, i);
                snprintf(n->dir, sizeof(n->dir), "%s", dir);
                if (mkdir(n->dir, 0755) < 0)
                        die("mkdir failed");
                snprintf(n->config, sizeof(n->config), "%s/swarmd.yaml", dir);
                snprintf(n->state, sizeof(n->state), "%s/state", dir);
                snprintf(n->notify, sizeof(n->notify), "%s/notify", dir);
                snprintf(n->log, sizeof(n->log), "%s/log", dir);
                if (identity_load_or_create(n->state, &n->identity, NULL) < 0 ||
                    notify_listener_open(&n->listener, n->notify) < 0)
                        die("cannot prepare a node");
        }
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

/* ---- The bare ZeroMQ reference ---------------------------------------- */

static void bare_round_trips(size_t n, uint64_t *lat) {
        void *ctx = zmq_ctx_new(), *router = zmq_socket(ctx, ZMQ_ROUTER), *dealer = zmq_socket(ctx, ZMQ_DEALER);
        char ep[64], payload[96], id[256], buf[256];
        size_t len = sizeof(ep);

        memset(payload, 'j', sizeof(payload));
        zmq_bind(router, "tcp://127.0.0.1:*");
        zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, ep, &len);
        zmq_connect(dealer, ep);
        for (size_t i = 0; i < n + 100; i++) {
                uint64_t t0 = now_usec();
                int idn;

                zmq_send(dealer, payload, sizeof(payload), 0);
                idn = zmq_recv(router, id, sizeof(id), 0);
                zmq_recv(router, buf, sizeof(buf), 0);
                zmq_send(router, id, (size_t) idn, ZMQ_SNDMORE);
                zmq_send(router, payload, sizeof(payload), 0);
                zmq_recv(dealer, buf, sizeof(buf), 0);
                if (i >= 100)           /* warm-up */
                        lat[i - 100] = now_usec() - t0;
        }
        zmq_close(dealer);
        zmq_close(router);
        zmq_ctx_term(ctx);
}

/* ---- Jobs through the requester --------------------------------------- */

static struct jobs_client *client;
static struct swarm_values *inputs;
static uint8_t want[32];

static void client_open(void) {
        char *path = socket_path(nodes[0].state, JOBS_SOCKET_NAME);

        if (!path || jobs_client_connect(path, &client) < 0)
                die("cannot connect to the requester's jobs socket");
        free(path);
        inputs = swarm_values_new();
        swarm_values_set_bytes(inputs, "data", "abc", 3);
        crypto_generichash(want, sizeof(want), (const uint8_t *) "abc", 3, NULL, 0);
}

static int submit(uint64_t id) {
        struct jobs_submission s = {
                .id = id,
                .skill = "hash",
                .inputs = inputs,
                .max_price = 1000000,
                .deadline_usec = 10 * 1000 * 1000,
        };
        return jobs_client_submit(client, &s);
}

static bool digest_is_right(const struct jobs_result *r) {
        const void *d;
        size_t n;

        return swarm_values_get_bytes(r->outputs, "digest", &d, &n) == 0 && n == sizeof(want) &&
               memcmp(d, want, n) == 0;
}

/* Until the requester knows `providers` providers (some job succeeds and
 * gossip has had time to spread the records). */
static void wait_for_swarm(void) {
        uint64_t end = now_usec() + 30 * 1000 * 1000;

        for (;;) {
                struct jobs_result r = {};

                if (submit(1) < 0 || jobs_client_wait(client, 15000, &r) < 0)
                        die("the requester does not answer");
                if (r.status == 0) {
                        jobs_result_done(&r);
                        break;
                }
                jobs_result_done(&r);
                if (now_usec() > end)
                        die("no provider became reachable");
                usleep(200 * 1000);
        }
        sleep(3);       /* records re-published every 2 s */
}

struct stats {
        size_t ok, failed, wrong, rerouted;
        uint64_t *lat, *lat_rerouted;
        size_t n_lat, n_lat_rerouted;
        uint64_t elapsed;
};

/* n jobs with up to `window` in flight. */
static void run_jobs(size_t n, size_t window, struct stats *st) {
        size_t sent = 0, done = 0;
        uint64_t t0 = now_usec();

        memset(st, 0, sizeof(*st));
        st->lat = calloc(n, sizeof(uint64_t));
        st->lat_rerouted = calloc(n, sizeof(uint64_t));
        while (done < n) {
                struct jobs_result r = {};

                while (sent < n && sent - done < window)
                        if (submit(100 + sent++) < 0)
                                die("submit failed");
                if (jobs_client_wait(client, 30000, &r) < 0)
                        die("a job did not come back");
                done++;
                if (r.status != 0) {
                        st->failed++;
                        if (st->failed <= 3)
                                fprintf(stderr, "bench-jobs: job failed: %s\n", r.error ?: "?");
                } else {
                        st->ok++;
                        if (!digest_is_right(&r))
                                st->wrong++;
                        if (r.rerouted > 0 || r.rejected > 0) {
                                st->rerouted++;
                                st->lat_rerouted[st->n_lat_rerouted++] = r.latency_usec;
                        } else
                                st->lat[st->n_lat++] = r.latency_usec;
                }
                jobs_result_done(&r);
        }
        st->elapsed = now_usec() - t0;
}

static void stats_free(struct stats *st) {
        free(st->lat);
        free(st->lat_rerouted);
}

int main(int argc, char *argv[]) {
        size_t n = 2000;
        uint64_t *bare;
        struct stats rt, tp, ch;
        char self[PATH_MAX];
        int c;

        while ((c = getopt(argc, argv, "n:h")) >= 0)
                switch (c) {
                case 'n':
                        n = strtoul(optarg, NULL, 10);
                        break;
                default:
                        fprintf(stderr, "Usage: %s [-n JOBS] [BUILD_DIR]\n", argv[0]);
                        return c == 'h' ? EXIT_SUCCESS : EXIT_FAILURE;
                }
        if (n < 10)
                n = 10;
        if (optind < argc)
                snprintf(build, sizeof(build), "%s", argv[optind]);
        else if (realpath(argv[0], self)) {
                snprintf(build, sizeof(build), "%s", dirname(dirname(self)));
        } else
                snprintf(build, sizeof(build), ".");
        snprintf(swarmd, sizeof(swarmd), "%s/daemon/swarmd", build);
        snprintf(hash_plugin, sizeof(hash_plugin), "%s/plugins/hash/hash.so", build);
        if (!getenv("SWARM_WORKER")) {
                char worker[PATH_MAX + 32];
                snprintf(worker, sizeof(worker), "%s/daemon/swarm-worker", build);
                setenv("SWARM_WORKER", worker, 1);
        }
        if (access(swarmd, X_OK) < 0 || access(hash_plugin, R_OK) < 0) {
                fprintf(stderr, "bench-jobs: no %s or %s; pass the build directory\n", swarmd, hash_plugin);
                return EXIT_FAILURE;
        }
        if (sodium_init() < 0)
                return EXIT_FAILURE;
        signal(SIGPIPE, SIG_IGN);

        setup();
        bare = calloc(n, sizeof(uint64_t));
        bare_round_trips(n, bare);

        /* 1. One provider, sequential jobs. */
        start_node(0, false);
        start_node(1, false);
        client_open();
        /* Nobody gets credits for free: the requester's come from node 1. */
        {
                char error[256] = "";
                char *issuer = socket_path(nodes[1].state, CONTROL_SOCKET_NAME),
                     *requester = socket_path(nodes[0].state, CONTROL_SOCKET_NAME);

                if (!issuer || !requester ||
                    harness_mint(issuer, requester, nodes[0].identity->public_key, 1000000ull * 1000 * 1000, 30000,
                                 error, sizeof(error)) < 0)
                        die(error[0] ? error : "cannot fund the requester");
                free(issuer);
                free(requester);
        }
        wait_for_swarm();
        run_jobs(n, 1, &rt);

        /* 2. Three providers, many jobs in flight. */
        start_node(2, false);
        start_node(3, false);
        wait_for_swarm();
        run_jobs(n * 5, 64, &tp);

        /* 3. A fourth provider that lies. */
        start_node(4, true);
        wait_for_swarm();
        run_jobs(n * 2, 16, &ch);

        printf("\nJobs on loopback: hash of 3 bytes, requester daemon -> provider daemon -> verified, "
               "via the jobs socket (%zu jobs)\n\n", n);
        printf("%-44s %10s %10s\n", "round trip (1 job in flight)", "p50 us", "p99 us");
        {
                uint64_t b50 = percentile(bare, n, 0.5), b99 = percentile(bare, n, 0.99);
                uint64_t j50 = percentile(rt.lat, rt.n_lat, 0.5), j99 = percentile(rt.lat, rt.n_lat, 0.99);

                printf("%-44s %10llu %10llu\n", "bare ZeroMQ DEALER/ROUTER (tcp, no CURVE)",
                       (unsigned long long) b50, (unsigned long long) b99);
                printf("%-44s %10llu %10llu\n", "swarmd job (CURVE, signed, verified)",
                       (unsigned long long) j50, (unsigned long long) j99);
                printf("%-44s %10.1fx %10.1fx   (target <= 3x at p50)\n", "ratio",
                       b50 ? (double) j50 / (double) b50 : 0, b99 ? (double) j99 / (double) b99 : 0);
                printf("  %zu ok, %zu failed\n\n", rt.ok, rt.failed);
        }
        printf("%-44s %10.0f jobs/s   (%zu ok, %zu failed, 64 in flight)\n\n", "throughput, 1 requester -> 3 providers",
               (double) tp.ok / ((double) tp.elapsed / 1e6), tp.ok, tp.failed);
        printf("cheater: 4 providers, 1 with testing.corrupt_results (%zu jobs, 16 in flight)\n", ch.ok + ch.failed);
        printf("  wrong results returned to the user: %zu of %zu (%.4f%%)   (must be 0)\n", ch.wrong, ch.ok,
               ch.ok ? 100.0 * (double) ch.wrong / (double) ch.ok : 0);
        printf("  jobs rerouted after a rejected result: %zu; failed: %zu\n", ch.rerouted, ch.failed);
        {
                uint64_t p50 = percentile(ch.lat, ch.n_lat, 0.5), r50 = percentile(ch.lat_rerouted, ch.n_lat_rerouted, 0.5);
                uint64_t r99 = percentile(ch.lat_rerouted, ch.n_lat_rerouted, 0.99);

                printf("  latency p50: %llu us direct, %llu us rerouted (p99 %llu us): +%lld us per reroute\n",
                       (unsigned long long) p50, (unsigned long long) r50, (unsigned long long) r99,
                       (long long) r50 - (long long) p50);
        }

        jobs_client_free(client);
        swarm_values_free(inputs);
        stats_free(&rt);
        stats_free(&tp);
        stats_free(&ch);
        free(bare);
        teardown();
        return EXIT_SUCCESS;
}

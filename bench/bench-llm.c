/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Text generation through the swarm, with real swarmd processes on
 * loopback and a random-weight model written as a real GGUF file:
 *
 *   1. time to first token and tokens/s of a streamed job, requester ->
 *      provider -> verified back to the submitter, against the same model
 *      and job run in this process through the textgen plugin (what
 *      `swarmctl skill run` does), measured in the same run;
 *   2. the cheater experiment: 4 providers of the model, one serving a
 *      Q4_0 copy under the F16 file's identity (textgen's
 *      testing-claim-model); the requester verifies by sampling at swarmd's
 *      defaults.  Wrong results accepted among checked ones (must be 0),
 *      wrong results accepted unchecked (paid before the cheat was
 *      caught), and the cheat's share of the results per window of jobs.
 *
 * Usage: bench-llm [-n JOBS] [BUILD_DIR]   (BUILD_DIR: where swarmd,
 * swarm-worker and plugins/textgen/textgen.so are; default: the parent of
 * this binary's directory).  Run by hand; never fails the build. */

#include <dlfcn.h>
#include <errno.h>
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

#include "credits-harness.h"
#include "identity.h"
#include "jobs-client.h"
#include "jobs-proto.h"
#include "shm.h"
#include "socket-path.h"
#include "swarm-host.h"
#include "swarmd-harness.h"
#include "tiny-model.h"

#define PROVIDERS 4
#define NODES (PROVIDERS + 1)
#define CHEAT 4                 /* the node that serves the substitute */
#define MAX_TOKENS 64
#define CHEAT_TOKENS 8
#define WINDOW 25

struct node {
        char dir[256], config[300], state[300], notify[300], log[300];
        struct notify_listener listener;
        struct identity *identity;
        pid_t pid;
};

static char root[64] = "/tmp/bench-llm-XXXXXX";
static char build[PATH_MAX], swarmd[PATH_MAX + 32], textgen[PATH_MAX + 32];
static char model[PATH_MAX], substitute[PATH_MAX];
static struct node nodes[NODES];
static int seed_port;

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return (x > y) - (x < y);
}

static uint64_t median(uint64_t *v, size_t n) {
        if (n == 0)
                return 0;
        qsort(v, n, sizeof(*v), cmp_u64);
        return v[n / 2];
}

static void die(const char *what) {
        fprintf(stderr, "bench-llm: %s\n", what);
        for (int i = 0; i < NODES; i++)
                if (nodes[i].pid > 0) {
                        kill(nodes[i].pid, SIGKILL);
                        waitpid(nodes[i].pid, NULL, 0);
                }
        fprintf(stderr, "bench-llm: logs kept in %s\n", root);
        exit(EXIT_FAILURE);
}

static void write_config(int i) {
        FILE *f = fopen(nodes[i].config, "we");

        if (!f)
                die("cannot write a configuration");
        fprintf(f, "node:\n  name: %s%d\n", i == 0 ? "requester" : "provider", i);
        fprintf(f, "network:\n  bind: \"tcp://127.0.0.1:%d\"\n  beacon: false\n  probe_interval: 100ms\n"
                   "  rate_limit: 1000000\n", i == 0 ? seed_port : 0);
        if (i != 0)
                fprintf(f, "  seeds: [\"%s@tcp://127.0.0.1:%d\"]\n", nodes[0].identity->node_id, seed_port);
        fprintf(f, "dbus:\n  bus: none\n");
        /* Node 1 is the swarm's issuer: it mints to the requester. */
        fprintf(f, "credits:\n  issuers: [\"%s\"]\n", nodes[1].identity->node_id);
        fprintf(f, "skills:\n  directory: \"%s/plugins\"\n  cgroups: off\n", build);
        if (i != 0)
                fprintf(f, "  enabled: [textgen]\n  workers: 1\n");
        if (i == CHEAT)
                fprintf(f, "  options: [\"textgen.model=%s\", \"textgen.threads=1\", "
                           "\"textgen.testing-claim-model=%s\"]\n", substitute, model);
        else
                fprintf(f, "  options: [\"textgen.model=%s\", \"textgen.threads=1\"]\n", model);
        fclose(f);
}

static void start_node(int i) {
        struct node *n = &nodes[i];
        const char *args[] = { "--config", n->config, "--state-dir", n->state, NULL };

        write_config(i);
        n->pid = swarmd_spawn(&(struct swarmd_spawn) {
                .binary = swarmd,
                .args = args,
                .notify_socket = n->notify,
                .stderr_path = n->log,
        });
        if (n->pid <= 0 || notify_listener_wait(&n->listener, "READY=1", 60000, NULL, 0) < 0)
                die("a swarmd did not become ready (see its log)");
}

static void setup(void) {
        struct tiny_model_spec spec = tiny_model_spec_default();
        char err[512];

        if (!mkdtemp(root))
                die("mkdtemp failed");
        seed_port = loopback_free_port();
        if (seed_port <= 0)
                die("no free port on 127.0.0.1");
        /* About 12M parameters: big enough that generation, not the
         * daemons, takes the time. */
        spec.n_vocab = 4096;
        spec.n_embd = 384;
        spec.n_layer = 6;
        spec.n_head = 6;
        spec.n_head_kv = 6;
        spec.n_ff = 1024;
        spec.n_ctx = 512;
        spec.weight_type = spec.embd_type = NN_TYPE_F16;
        snprintf(model, sizeof(model), "%s/model-f16.gguf", root);
        snprintf(substitute, sizeof(substitute), "%s/model-q4_0.gguf", root);
        if (tiny_model_write(&spec, model, err, sizeof(err)) < 0)
                die(err);
        spec.weight_type = NN_TYPE_Q4_0;
        if (tiny_model_write(&spec, substitute, err, sizeof(err)) < 0)
                die(err);
        for (int i = 0; i < NODES; i++) {
                struct node *n = &nodes[i];
                char dir[128];

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

static struct swarm_values *job_inputs(unsigned i, unsigned max_tokens) {
        struct swarm_values *in = swarm_values_new();
        char prompt[96];

        snprintf(prompt, sizeof(prompt), "Once upon a time, in a land far away, there lived %u", i);
        swarm_values_set_allocator(in, shm_allocate, NULL);
        swarm_values_set_string(in, "prompt", prompt);
        swarm_values_set_int(in, "max_tokens", max_tokens);
        swarm_values_set_string(in, "temperature", "0");
        return in;
}

/* ---- 1. In this process: the reference ------------------------------- */

struct first_chunk {
        uint64_t start, at;
};

static int on_emit(void *userdata, const char *name, const void *data, size_t size) {
        struct first_chunk *f = userdata;

        if (!f->at)
                f->at = now_usec();
        return 0;
}

/* Median time to the first emitted text and tokens/s after it. */
static void local_runs(unsigned runs, uint64_t *ttft, double *tps) {
        char path[PATH_MAX + 64];
        void *lib;
        swarm_skill_entry_fn entry;
        const struct swarm_skill *skill;
        struct swarm_values *config = swarm_values_new();
        uint64_t t[32], rate[32];
        void *state;

        snprintf(path, sizeof(path), "%s", textgen);
        lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!lib)
                die(dlerror());
        entry = (swarm_skill_entry_fn) dlsym(lib, SWARM_SKILL_ENTRY_SYMBOL);
        skill = entry();
        swarm_values_set_string(config, "model", model);
        swarm_values_set_int(config, "threads", 1);
        if (skill->init(config, &state) < 0)
                die("textgen init failed in this process");
        for (unsigned i = 0; i < runs && i < 32; i++) {
                struct swarm_values *in = job_inputs(1000 + i, MAX_TOKENS);
                struct first_chunk f = { .start = now_usec() };
                struct swarm_job job;
                int64_t n = 0;
                uint64_t end;

                swarm_job_init(&job, in, 0, NULL, NULL, NULL);
                job.emit = on_emit;
                job.emit_userdata = &f;
                if (skill->execute(state, &job) < 0)
                        die("textgen execute failed in this process");
                end = now_usec();
                swarm_values_get_int(swarm_job_outputs(&job), "generated_tokens_count", &n);
                t[i] = f.at - f.start;
                rate[i] = n > 1 && end > f.at ? (uint64_t) ((double) (n - 1) * 1e6 / (double) (end - f.at)) : 0;
                swarm_job_done(&job);
                swarm_values_free(in);
        }
        *ttft = median(t, runs);
        *tps = (double) median(rate, runs);
        skill->fini(state);
        swarm_values_free(config);
        dlclose(lib);
}

/* ---- 1. Through the swarm ---------------------------------------------- */

static struct jobs_client *client;

struct stream_clock {
        uint64_t first, last;
};

static void on_chunk(const struct jobs_chunk *k, void *userdata) {
        struct stream_clock *c = userdata;

        c->last = now_usec();
        if (!c->first)
                c->first = c->last;
}

/* Medians of the time to the first streamed text, tokens/s streamed after
 * it (to the last chunk), and the time from the last chunk to the verified
 * result (the requester's verification). */
static void swarm_runs(unsigned runs, uint64_t *ttft, double *tps, uint64_t *verify) {
        uint64_t t[32], rate[32], v[32];

        for (unsigned i = 0; i < runs && i < 32; i++) {
                struct swarm_values *in = job_inputs(2000 + i, MAX_TOKENS);
                struct stream_clock c = {};
                struct jobs_result r = {};
                uint64_t start = now_usec(), end;
                int64_t n = 0;

                jobs_client_on_chunk(client, on_chunk, &c);
                if (jobs_client_submit(client, &(struct jobs_submission) {
                            .id = i, .skill = "textgen", .inputs = in, .max_price = UINT64_MAX / 2,
                            .deadline_usec = 60 * 1000 * 1000, .stream = true }) < 0 ||
                    jobs_client_wait(client, 60000, &r) < 0 || r.status != 0)
                        die(r.error ?: "a streamed job failed");
                end = now_usec();
                swarm_values_get_int(r.outputs, "generated_tokens_count", &n);
                t[i] = (c.first ?: end) - start;
                /* Tokens streamed after the first: what the user sees
                 * arrive (chunks may carry several tokens each). */
                rate[i] = n > 1 && c.last > c.first ? (uint64_t) ((double) (n - 1) * 1e6 / (double) (c.last - c.first))
                                                     : 0;
                v[i] = end - (c.last ?: end);
                jobs_result_done(&r);
                swarm_values_free(in);
        }
        jobs_client_on_chunk(client, NULL, NULL);
        *ttft = median(t, runs);
        *tps = (double) median(rate, runs);
        *verify = median(v, runs);
}

/* ---- 2. The cheater experiment ------------------------------------------ */

static bool is_node(const char *provider, int i) {
        return provider && strcmp(provider, nodes[i].identity->node_id) == 0;
}

int main(int argc, char *argv[]) {
        size_t n = 200;
        char self[PATH_MAX];
        uint64_t local_ttft, swarm_ttft, swarm_verify;
        double local_tps, swarm_tps;
        size_t cheat_share[64] = {}, rejected[64] = {}, unchecked[64] = {}, windows;
        size_t from_cheat_checked = 0, from_cheat_unchecked = 0, failed = 0;
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
        if (n < WINDOW)
                n = WINDOW;
        if (n > 64 * WINDOW)
                n = 64 * WINDOW;
        if (optind < argc)
                snprintf(build, sizeof(build), "%s", argv[optind]);
        else if (realpath(argv[0], self))
                snprintf(build, sizeof(build), "%s", dirname(dirname(self)));
        else
                snprintf(build, sizeof(build), ".");
        snprintf(swarmd, sizeof(swarmd), "%s/daemon/swarmd", build);
        snprintf(textgen, sizeof(textgen), "%s/plugins/textgen/textgen.so", build);
        if (!getenv("SWARM_WORKER")) {
                char worker[PATH_MAX + 32];
                snprintf(worker, sizeof(worker), "%s/daemon/swarm-worker", build);
                setenv("SWARM_WORKER", worker, 1);
        }
        if (access(swarmd, X_OK) < 0 || access(textgen, R_OK) < 0) {
                fprintf(stderr, "bench-llm: no %s or %s; pass the build directory\n", swarmd, textgen);
                return EXIT_FAILURE;
        }
        if (sodium_init() < 0)
                return EXIT_FAILURE;
        signal(SIGPIPE, SIG_IGN);

        setup();
        local_runs(5, &local_ttft, &local_tps);

        start_node(0);
        start_node(1);
        /* Nobody gets credits for free: the requester's come from node 1,
         * the swarm's issuer. */
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
        {
                char *path = socket_path(nodes[0].state, JOBS_SOCKET_NAME);

                if (!path || jobs_client_connect(path, &client) < 0)
                        die("cannot connect to the requester's jobs socket");
                free(path);
        }
        /* Until the provider is known and measured. */
        for (uint64_t end = now_usec() + 60 * 1000 * 1000;;) {
                struct swarm_values *in = job_inputs(0, 4);
                struct jobs_result r = {};
                int k = jobs_client_submit(client, &(struct jobs_submission) {
                        .id = 1, .skill = "textgen", .inputs = in, .max_price = UINT64_MAX / 2,
                        .deadline_usec = 30 * 1000 * 1000 });

                if (k < 0 || jobs_client_wait(client, 30000, &r) < 0)
                        die("the requester does not answer");
                swarm_values_free(in);
                k = r.status;
                jobs_result_done(&r);
                if (k == 0)
                        break;
                if (now_usec() > end)
                        die("no provider became reachable");
                usleep(200 * 1000);
        }
        swarm_runs(5, &swarm_ttft, &swarm_tps, &swarm_verify);

        /* 2. Three more providers, one of them the substitute. */
        for (int i = 2; i <= PROVIDERS; i++)
                start_node(i);
        sleep(3);               /* records re-published every 2 s */
        windows = (n + WINDOW - 1) / WINDOW;
        for (size_t sent = 0, done = 0; done < n;) {
                struct jobs_result r = {};

                while (sent < n && sent - done < 8) {
                        struct swarm_values *in = job_inputs(3000 + (unsigned) sent, CHEAT_TOKENS);

                        if (jobs_client_submit(client, &(struct jobs_submission) {
                                    .id = 100 + sent, .skill = "textgen", .inputs = in,
                                    .max_price = UINT64_MAX / 2, .deadline_usec = 60 * 1000 * 1000 }) < 0)
                                die("submit failed");
                        swarm_values_free(in);
                        sent++;
                }
                if (jobs_client_wait(client, 60000, &r) < 0)
                        die("a job did not come back");
                done++;
                if (r.status != 0)
                        failed++;
                else {
                        size_t w = (r.id - 100) / WINDOW;

                        if (is_node(r.provider, CHEAT)) {
                                cheat_share[w]++;
                                if (r.unchecked) {
                                        unchecked[w]++;
                                        from_cheat_unchecked++;
                                } else
                                        from_cheat_checked++;
                        }
                        rejected[w] += r.rejected;
                }
                jobs_result_done(&r);
        }

        printf("\nText generation through the swarm: a %s-shaped random-weight model (F16, 6 layers, n_embd 384, "
               "vocab 4096),\ngreedy, %d new tokens, one thread per worker\n\n", "12M", MAX_TOKENS);
        printf("%-48s %14s %14s\n", "", "first token ms", "tokens/s after");
        printf("%-48s %14.1f %14.1f\n", "in this process (textgen.so, as skill run does)", (double) local_ttft / 1e3,
               local_tps);
        printf("%-48s %14.1f %14.1f\n", "through the swarm (requester -> provider, stream)", (double) swarm_ttft / 1e3,
               swarm_tps);
        printf("%-48s %+14.1f %13.2fx\n", "difference", (double) ((int64_t) swarm_ttft - (int64_t) local_ttft) / 1e3,
               local_tps > 0 ? swarm_tps / local_tps : 0);
        printf("then the requester's check of the result (teacher forced, a provider not yet measured): %.1f ms\n"
               "(tokens/s: after the first streamed text, to the last; the swarm's chunks come in pieces of\n"
               "UTF-8-stable text)\n\n", (double) swarm_verify / 1e3);

        printf("cheater: 4 providers, 1 serving a Q4_0 copy under the F16 model's identity; %zu jobs of %d tokens, "
               "8 in flight,\nverified by sampling at swarmd's defaults (10%% of a measured provider's results, all "
               "until 5 verified)\n", n, CHEAT_TOKENS);
        printf("  wrong results accepted after a check: %zu   (must be 0)\n", from_cheat_checked);
        printf("  wrong results accepted unchecked (paid before the cheat was caught): %zu\n", from_cheat_unchecked);
        printf("  failed jobs: %zu\n", failed);
        printf("  %-12s %14s %14s %14s\n", "jobs", "cheat's share", "unchecked", "rejected");
        for (size_t w = 0; w < windows; w++)
                printf("  %4zu-%-7zu %13.1f%% %14zu %14zu\n", w * WINDOW, (w + 1) * WINDOW - 1,
                       100.0 * (double) cheat_share[w] / WINDOW, unchecked[w], rejected[w]);

        jobs_client_free(client);
        teardown();
        return EXIT_SUCCESS;
}

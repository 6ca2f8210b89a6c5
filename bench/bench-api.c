/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* swarm-api's cost, on loopback with real daemons: a requester and a
 * textgen provider (a random-weight tiny model written by gguf-tiny), the
 * gateway in front of the requester's jobs socket.
 *
 *   1. one short completion, sequential: through HTTP (swarm-api) against
 *      the same job submitted over the jobs socket, in the same run —
 *      the gateway's overhead per request (p50, mean);
 *   2. a streamed completion of 64 tokens: Server-Sent Events against
 *      jobs-socket chunks — the overhead per streamed token;
 *   3. 256 streams held open at once (their jobs queued on the provider):
 *      swarm-api's resident memory per stream.
 *
 * Usage: bench-api [-n REQUESTS] [BUILD_DIR]   (default: the parent of this
 * binary's directory).  Run by hand; never fails the build. */

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "credits-harness.h"
#include "identity.h"
#include "socket-path.h"
#include "jobs-client.h"
#include "shm.h"
#include "swarmd-harness.h"

#define STREAMS 256
#define STREAM_TOKENS 64

struct node {
        char dir[128], config[160], state[160], notify[160], log[160];
        struct notify_listener listener;
        struct identity *identity;
        pid_t pid;
};

static char root[64] = "/tmp/bench-api-XXXXXX";
static char build[PATH_MAX], swarmd[PATH_MAX + 32], model[128], jobs_sock[200];
static struct node nodes[2];
static pid_t api_pid;
static int seed_port, api_port;

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static double p50_ms(uint64_t *v, size_t n) {
        qsort(v, n, sizeof(*v), cmp_u64);
        return (double) v[n / 2] / 1e3;
}

static double mean_ms(const uint64_t *v, size_t n) {
        double s = 0;

        for (size_t i = 0; i < n; i++)
                s += (double) v[i];
        return s / (double) n / 1e3;
}

static void teardown(void) {
        if (api_pid > 0) {
                kill(api_pid, SIGTERM);
                waitpid(api_pid, NULL, 0);
        }
        for (int i = 0; i < 2; i++) {
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

static void die(const char *what) {
        fprintf(stderr, "bench-api: %s (logs in %s)\n", what, root);
        exit(EXIT_FAILURE);
}

static void prepare_node(int i) {
        struct node *n = &nodes[i];
        char dir[128];

        /* From a local copy: gcc sees n->dir → n->config as an overlap. */
        snprintf(dir, sizeof(dir), "%.60s/node%d", root, i);
        snprintf(n->dir, sizeof(n->dir), "%s", dir);
        snprintf(n->config, sizeof(n->config), "%s/swarmd.yaml", dir);
        snprintf(n->state, sizeof(n->state), "%s/state", dir);
        snprintf(n->notify, sizeof(n->notify), "%s/notify", dir);
        snprintf(n->log, sizeof(n->log), "%s/log", dir);
        if (mkdir(n->dir, 0755) < 0 || identity_load_or_create(n->state, &n->identity, NULL) < 0 ||
            notify_listener_open(&n->listener, n->notify) < 0)
                die("cannot prepare a node");
}

static void start_node(int i) {
        struct node *n = &nodes[i];
        const char *args[] = { "--config", n->config, "--state-dir", n->state, NULL };
        FILE *f;

        f = fopen(n->config, "we");
        if (!f)
                die("cannot write a configuration");
        fprintf(f, "node:\n  name: %s\n", i == 0 ? "requester" : "provider");
        fprintf(f, "network:\n  bind: \"tcp://127.0.0.1:%d\"\n  beacon: false\n  probe_interval: 100ms\n",
                i == 0 ? seed_port : 0);
        if (i != 0)
                fprintf(f, "  seeds: [\"%s@tcp://127.0.0.1:%d\"]\n", nodes[0].identity->node_id, seed_port);
        fprintf(f, "dbus:\n  bus: none\nlending:\n  policy: %s\n", i == 0 ? "never" : "always");
        /* Node 1 is the swarm's issuer: it mints to the requester. */
        fprintf(f, "credits:\n  issuers: [\"%s\"]\n", nodes[1].identity->node_id);
        fprintf(f, "skills:\n  directory: \"%s/plugins\"\n  options: [\"textgen.model=%s\", \"textgen.threads=1\"]\n",
                build, model);
        if (i != 0)
                fprintf(f, "  enabled: [textgen]\n  queue_limit: 1024\n  cgroups: off\n");
        fclose(f);
        n->pid = swarmd_spawn(&(struct swarmd_spawn) {
                .binary = swarmd, .args = args, .notify_socket = n->notify, .stderr_path = n->log,
        });
        if (n->pid <= 0 || notify_listener_wait(&n->listener, "READY=1", 30000, NULL, 0) < 0)
                die("a swarmd did not become ready");
}

static void start_api(void) {
        char api[PATH_MAX + 32], listen_arg[64], log[160];

        snprintf(api, sizeof(api), "%s/gateway/swarm-api", build);
        snprintf(listen_arg, sizeof(listen_arg), "127.0.0.1:%d", api_port);
        snprintf(log, sizeof(log), "%s/api.log", root);
        api_pid = swarmd_spawn(&(struct swarmd_spawn) {
                .binary = api,
                .args = (const char *[]) { "--listen", listen_arg, "--jobs-socket", jobs_sock, "--max-streams", "300",
                                           "--deadline", "600", NULL },
                .stderr_path = log,
        });
        if (api_pid <= 0)
                die("cannot start swarm-api");
}

/* ---- A minimal HTTP client: one request per connection ---- */

static int http_connect(void) {
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t) api_port) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sin, sizeof(sin)) < 0) {
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        return fd;
}

static int http_send(int fd, const char *path, const char *body) {
        char head[256];
        int n = snprintf(head, sizeof(head), "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n", path, strlen(body));

        return write(fd, head, (size_t) n) == n && write(fd, body, strlen(body)) == (ssize_t) strlen(body) ? 0 : -1;
}

/* Reads to EOF; returns the response's bytes (malloc'd) and counts SSE
 * data lines in *events. */
static char *http_read_all(int fd, size_t *events) {
        size_t cap = 65536, len = 0;
        char *buf = malloc(cap);
        ssize_t k;

        while (buf && (k = read(fd, buf + len, cap - len - 1)) > 0) {
                len += (size_t) k;
                if (cap - len < 4096) {
                        char *g = realloc(buf, cap *= 2);
                        if (!g) {
                                free(buf);
                                return NULL;
                        }
                        buf = g;
                }
        }
        if (!buf)
                return NULL;
        buf[len] = '\0';
        *events = 0;
        for (char *p = buf; (p = strstr(p, "\ndata: {")); p++)
                (*events)++;
        return buf;
}

static uint64_t http_request(const char *body, size_t *events, bool *ok) {
        uint64_t t0 = (uint64_t) monotonic_usec();
        int fd = http_connect();
        char *resp;

        if (fd < 0 || http_send(fd, "/v1/completions", body) < 0)
                die("HTTP request failed");
        resp = http_read_all(fd, events);
        close(fd);
        *ok = resp && strncmp(resp, "HTTP/1.1 200", 12) == 0;
        if (!*ok)
                fprintf(stderr, "bench-api: %.200s\n", resp ?: "(no response)");
        free(resp);
        return (uint64_t) monotonic_usec() - t0;
}

/* ---- The same jobs over the jobs socket ---- */

static size_t chunks_seen;

static void on_chunk(const struct jobs_chunk *c, void *userdata) {
        chunks_seen++;
}

static uint64_t socket_job(struct jobs_client *c, uint64_t id, unsigned max_tokens, bool stream, bool *ok) {
        struct swarm_values *in = swarm_values_new();
        struct jobs_result res = {};
        uint64_t t0 = (uint64_t) monotonic_usec(), t;

        swarm_values_set_string(in, "prompt", "Once upon a time");
        swarm_values_set_int(in, "max_tokens", max_tokens);
        swarm_values_set_int(in, "seed", (int64_t) id);
        if (jobs_client_submit(c, &(struct jobs_submission) {
                    .id = id, .skill = "textgen", .inputs = in, .max_price = UINT64_MAX,
                    .deadline_usec = 60 * 1000 * 1000, .stream = stream }) < 0 ||
            jobs_client_wait(c, 60000, &res) < 0)
                die("a job over the jobs socket failed");
        t = (uint64_t) monotonic_usec() - t0;
        *ok = res.status == 0;
        jobs_result_done(&res);
        swarm_values_free(in);
        return t;
}

static long rss_kib(pid_t pid) {
        char path[64], line[256];
        long kib = -1;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
                        break;
        if (f)
                fclose(f);
        return kib;
}

int main(int argc, char *argv[]) {
        size_t n = 50, events = 0;
        char self[PATH_MAX], cmd[PATH_MAX * 2], body[512];
        uint64_t *http, *sock, t_sock, t_http;
        struct jobs_client *c;
        long rss0, rss1;
        int opt, fds[STREAMS];
        bool ok = true, good;

        while ((opt = getopt(argc, argv, "n:")) >= 0)
                if (opt == 'n')
                        n = strtoul(optarg, NULL, 10);
        if (n < 1)
                n = 1;
        if (optind < argc)
                snprintf(build, sizeof(build), "%s", argv[optind]);
        else {
                ssize_t k = readlink("/proc/self/exe", self, sizeof(self) - 1);
                if (k < 0)
                        die("cannot find myself");
                self[k] = '\0';
                snprintf(build, sizeof(build), "%s", dirname(dirname(self)));
        }
        snprintf(swarmd, sizeof(swarmd), "%s/daemon/swarmd", build);
        signal(SIGPIPE, SIG_IGN);
        if (!mkdtemp(root))
                die("mkdtemp failed");
        atexit(teardown);
        snprintf(model, sizeof(model), "%s/tiny.gguf", root);
        snprintf(cmd, sizeof(cmd), "'%s/tools/gguf-tiny/gguf-tiny' --tokenizer bpe --preset tiny --ctx 1024 '%s' >/dev/null",
                 build, model);
        if (system(cmd) != 0)
                die("gguf-tiny failed");
        seed_port = loopback_free_port();
        api_port = loopback_free_port();
        prepare_node(0);
        prepare_node(1);
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
        snprintf(jobs_sock, sizeof(jobs_sock), "%s/jobs.sock", nodes[0].state);
        if (jobs_client_connect(jobs_sock, &c) < 0)
                die("cannot connect to the jobs socket");
        jobs_client_on_chunk(c, on_chunk, NULL);
        /* Until the requester knows the provider. */
        for (int i = 0; i < 200; i++) {
                (void) socket_job(c, 1000 + (uint64_t) i, 1, false, &good);
                if (good)
                        break;
                usleep(100 * 1000);
        }
        start_api();
        for (int i = 0; i < 100; i++) {
                int fd = http_connect();
                if (fd >= 0) {
                        close(fd);
                        break;
                }
                usleep(50 * 1000);
        }

        printf("bench-api: %zu requests each way, one provider (tiny textgen model), loopback\n\n", n);
        http = calloc(n, sizeof(*http));
        sock = calloc(n, sizeof(*sock));
        /* Interleaved, so that drift hits both alike. */
        for (size_t i = 0; i < n; i++) {
                sock[i] = socket_job(c, i, 1, false, &good);
                ok &= good;
                snprintf(body, sizeof(body), "{\"model\": \"tiny-random-llama\", \"prompt\": \"Once upon a time\", "
                         "\"max_tokens\": 1, \"seed\": %zu}", i);
                http[i] = http_request(body, &events, &good);
                ok &= good;
        }
        printf("1. one-token completion, request → verified answer\n");
        printf("   jobs socket           p50 %7.2f ms   mean %7.2f ms\n", p50_ms(sock, n), mean_ms(sock, n));
        printf("   HTTP (swarm-api)      p50 %7.2f ms   mean %7.2f ms\n", p50_ms(http, n), mean_ms(http, n));
        printf("   gateway overhead      p50 %+7.2f ms   mean %+7.2f ms per request\n\n",
               p50_ms(http, n) - p50_ms(sock, n), mean_ms(http, n) - mean_ms(sock, n));

        chunks_seen = 0;
        t_sock = 0;
        t_http = 0;
        for (size_t i = 0; i < 5; i++) {
                t_sock += socket_job(c, 5000 + i, STREAM_TOKENS, true, &good);
                ok &= good;
                snprintf(body, sizeof(body), "{\"model\": \"tiny-random-llama\", \"prompt\": \"Once upon a time\", "
                         "\"max_tokens\": %d, \"seed\": %zu, \"stream\": true}", STREAM_TOKENS, 5000 + i);
                t_http += http_request(body, &events, &good);
                ok &= good;
        }
        printf("2. streamed completion of %d tokens (mean of 5)\n", STREAM_TOKENS);
        printf("   jobs socket chunks    %7.2f ms  (%zu chunks per job)\n", (double) t_sock / 5e3, chunks_seen / 5);
        printf("   HTTP SSE (swarm-api)  %7.2f ms  (%zu events in the last)\n", (double) t_http / 5e3, events);
        printf("   gateway overhead      %+7.3f ms per streamed token\n\n",
               ((double) t_http - (double) t_sock) / 5e3 / STREAM_TOKENS);

        /* Streams held: each a long generation, all but one queued on the
         * provider's single worker. */
        rss0 = rss_kib(api_pid);
        for (int i = 0; i < STREAMS; i++) {
                fds[i] = http_connect();
                snprintf(body, sizeof(body), "{\"model\": \"tiny-random-llama\", \"prompt\": \"Go\", \"max_tokens\": "
                         "100000, \"stream\": true, \"seed\": %d}", i);
                if (fds[i] < 0 || http_send(fds[i], "/v1/completions", body) < 0)
                        die("cannot open a stream");
        }
        usleep(1500 * 1000);
        rss1 = rss_kib(api_pid);
        printf("3. %d streams held open at once\n", STREAMS);
        printf("   swarm-api RSS         %ld KiB idle, %ld KiB with the streams: %.1f KiB per stream\n", rss0, rss1,
               (double) (rss1 - rss0) / STREAMS);
        for (int i = 0; i < STREAMS; i++)
                close(fds[i]);
        free(http);
        free(sock);
        jobs_client_free(c);
        printf("\n%s\n", ok ? "every request answered and verified" : "SOME REQUESTS FAILED");
        return ok ? 0 : 1;
}

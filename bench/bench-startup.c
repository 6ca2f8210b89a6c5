/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* How long swarmd takes to become ready, to reload and to stop, measured the
 * way systemd sees it (fork/exec to READY=1 on the notify socket, SIGHUP to
 * READY=1, SIGTERM to exit), side by side with fork/exec/exit of /bin/true
 * measured in the same run as the floor any service pays. */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "swarmd-harness.h"

#define ROUNDS 50
#define WAIT_MS 10000

static int cmp_ll(const void *a, const void *b) {
        long long x = *(const long long *) a, y = *(const long long *) b;
        return (x > y) - (x < y);
}

static void report(const char *what, long long *v, size_t n) {
        qsort(v, n, sizeof(*v), cmp_ll);
        printf("%-40s %10.1f %10.1f %10.1f\n", what,
               v[n / 2] / 1000.0, v[(n * 99) / 100] / 1000.0, v[n - 1] / 1000.0);
}

static int die(const char *what, int r) {
        fprintf(stderr, "bench-startup: %s: %s\n", what, strerror(-r));
        exit(EXIT_FAILURE);
}

int main(int argc, char *argv[]) {
        static long long t_true[ROUNDS], t_first[ROUNDS], t_ready[ROUNDS], t_reload[ROUNDS], t_stop[ROUNDS];
        char dir[] = "/tmp/swarmd-bench-XXXXXX", notify[128], config[128], state[160], cmd[256];
        const char *binary = argc > 1 ? argv[1] : getenv("SWARMD_BINARY");
        struct notify_listener l;
        int r;

        if (!binary) {
                fprintf(stderr, "usage: bench-startup PATH-TO-SWARMD\n");
                return EXIT_FAILURE;
        }
        if (!mkdtemp(dir))
                return die("mkdtemp", -errno);
        snprintf(notify, sizeof(notify), "%s/notify", dir);
        snprintf(config, sizeof(config), "%s/swarmd.yaml", dir);
        r = notify_listener_open(&l, notify);
        if (r < 0)
                die("notify socket", r);
        FILE *f = fopen(config, "we");
        if (!f)
                die(config, -errno);
        fputs("log:\n  level: warning\nnetwork:\n  bind: tcp://127.0.0.1:0\n  beacon: false\n", f);
        fclose(f);

        for (int i = 0; i < ROUNDS; i++) {
                const char *true_args[] = { NULL };
                long long t0 = monotonic_usec();
                pid_t pid = swarmd_spawn(&(struct swarmd_spawn) { .binary = "/bin/true", .args = true_args });

                if (pid < 0 || wait_exit_timeout(pid, WAIT_MS) < 0)
                        die("/bin/true", -EIO);
                t_true[i] = monotonic_usec() - t0;
        }

        for (int i = 0; i < ROUNDS; i++) {
                /* Even rounds start on a fresh state directory (identity
                 * created), odd ones reuse it (identity loaded). */
                snprintf(state, sizeof(state), "%s/state-%d", dir, i / 2);
                const char *args[] = { "--config", config, "--state-dir", state, NULL };
                long long t0 = monotonic_usec();
                pid_t pid = swarmd_spawn(&(struct swarmd_spawn) {
                        .binary = binary, .args = args, .notify_socket = notify,
                        .stderr_path = NULL,
                });

                if (pid < 0)
                        die("spawn swarmd", pid);
                if ((r = notify_listener_wait(&l, "READY=1", WAIT_MS, NULL, 0)) < 0)
                        die("waiting for READY=1", r);
                (i % 2 == 0 ? t_first : t_ready)[i / 2] = monotonic_usec() - t0;

                t0 = monotonic_usec();
                kill(pid, SIGHUP);
                if ((r = notify_listener_wait(&l, "READY=1", WAIT_MS, NULL, 0)) < 0)
                        die("waiting for READY=1 after SIGHUP", r);
                t_reload[i] = monotonic_usec() - t0;

                t0 = monotonic_usec();
                kill(pid, SIGTERM);
                r = wait_exit_timeout(pid, WAIT_MS);
                if (r < 0 || !WIFEXITED(r) || WEXITSTATUS(r) != 0)
                        die("clean exit after SIGTERM", r < 0 ? r : -EPROTO);
                t_stop[i] = monotonic_usec() - t0;
        }

        printf("swarmd lifecycle, %d rounds (ms)          %10s %10s %10s\n", ROUNDS, "p50", "p99", "max");
        report("reference: fork+exec+exit /bin/true", t_true, ROUNDS);
        report("exec -> READY=1, creating identity", t_first, ROUNDS / 2);
        report("exec -> READY=1, loading identity", t_ready, ROUNDS / 2);
        report("SIGHUP -> READY=1 (reload)", t_reload, ROUNDS);
        report("SIGTERM -> exit 0", t_stop, ROUNDS);

        notify_listener_close(&l);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        return system(cmd) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

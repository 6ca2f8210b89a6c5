/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Starts the real swarmd binary and speaks systemd's notify protocol to it,
 * the way the service manager does. */

#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control-client.h"
#include "identity.h"
#include "macro.h"
#include "swarmd-harness.h"

#define WAIT_MS 10000   /* bound on any one wait; generous for sanitizer builds */

struct harness {
        char dir[64];
        char config[128];
        char state[128];
        char notify_path[128];
        char stderr_path[128];
        char stdout_path[128];
        struct notify_listener notify;
        pid_t pid;
};

static struct harness h;

static void setup(void) {
        strcpy(h.dir, "/tmp/swarmd-lifecycle-XXXXXX");
        cr_assert_not_null(mkdtemp(h.dir));
        snprintf(h.config, sizeof(h.config), "%s/swarmd.yaml", h.dir);
        snprintf(h.state, sizeof(h.state), "%s/state", h.dir);
        snprintf(h.notify_path, sizeof(h.notify_path), "%s/notify", h.dir);
        snprintf(h.stderr_path, sizeof(h.stderr_path), "%s/stderr", h.dir);
        snprintf(h.stdout_path, sizeof(h.stdout_path), "%s/stdout", h.dir);
        cr_assert_eq(notify_listener_open(&h.notify, h.notify_path), 0);
        h.pid = 0;

        /* A drop-in keeps every daemon of the suite off the real ports (and
         * leaves the line numbers of the main file to the tests). */
        {
                char dropin[192];
                FILE *f;

                snprintf(dropin, sizeof(dropin), "%s.d", h.config);
                cr_assert_eq(mkdir(dropin, 0755), 0);
                snprintf(dropin, sizeof(dropin), "%s.d/00-test-network.yaml", h.config);
                f = fopen(dropin, "we");
                cr_assert_not_null(f);
                fputs("network:\n  bind: tcp://127.0.0.1:0\n  beacon: false\n", f);
                cr_assert_eq(fclose(f), 0);
        }
}

static void teardown(void) {
        if (h.pid > 0) {
                kill(h.pid, SIGKILL);
                waitpid(h.pid, NULL, 0);
        }
        notify_listener_close(&h.notify);
        rm_rf(h.dir);
}

TestSuite(lifecycle, .init = setup, .fini = teardown, .timeout = 60);

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "we");
        cr_assert_not_null(f, "cannot write %s", path);
        fputs(text, f);
        cr_assert_eq(fclose(f), 0);
}

/* Runs swarmd with args, its notify socket pointed at ours, stdout and
 * stderr captured. */
static pid_t spawn_swarmd(const char *const *args, unsigned long watchdog_usec) {
        const char *binary = getenv("SWARMD_BINARY");
        pid_t pid;

        cr_assert_not_null(binary, "SWARMD_BINARY is not set (run through meson test)");
        pid = swarmd_spawn(&(struct swarmd_spawn) {
                .binary = binary,
                .args = args,
                .notify_socket = h.notify_path,
                .stdout_path = h.stdout_path,
                .stderr_path = h.stderr_path,
                .watchdog_usec = watchdog_usec,
        });
        cr_assert_gt(pid, 0, "cannot start %s: %s", binary, strerror((int) -pid));
        return pid;
}

static pid_t start_daemon(unsigned long watchdog_usec) {
        const char *args[] = { "--config", h.config, "--state-dir", h.state, NULL };

        h.pid = spawn_swarmd(args, watchdog_usec);
        return h.pid;
}

static void expect_notify(const char *want, char *out, size_t out_size) {
        int r = notify_listener_wait(&h.notify, want, WAIT_MS, out, out_size);
        cr_assert_eq(r, 0, "no '%s' from swarmd within %d ms: %s", want, WAIT_MS, strerror(-r));
}

/* Waits for pid to exit and returns its wait status. */
static int wait_exit(pid_t pid) {
        int status = wait_exit_timeout(pid, WAIT_MS);

        cr_assert_geq(status, 0, "swarmd did not exit within %d ms: %s", WAIT_MS, strerror(-status));
        if (pid == h.pid)
                h.pid = 0;
        return status;
}

static char *read_file(const char *path) {
        static char buf[16384];
        FILE *f = fopen(path, "re");
        size_t n;

        cr_assert_not_null(f, "cannot read %s", path);
        n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = '\0';
        fclose(f);
        return buf;
}

static void assert_clean_exit(int status) {
        cr_assert(WIFEXITED(status), "swarmd did not exit normally (status 0x%x); stderr:\n%s",
                  status, read_file(h.stderr_path));
        cr_assert_eq(WEXITSTATUS(status), 0, "swarmd exited %d; stderr:\n%s",
                     WEXITSTATUS(status), read_file(h.stderr_path));
}

Test(lifecycle, ready_then_stopping_and_exit_0_on_sigterm) {
        struct stat st;

        write_file(h.config, "node:\n  name: test-node\n");
        start_daemon(0);
        expect_notify("READY=1", NULL, 0);

        /* READY means it is serving: the identity is in place. */
        cr_assert_eq(stat(h.state, &st), 0);
        cr_assert_eq(st.st_mode & 07777, 0700);

        cr_assert_eq(kill(h.pid, SIGTERM), 0);
        expect_notify("STOPPING=1", NULL, 0);
        assert_clean_exit(wait_exit(h.pid));
}

Test(lifecycle, sigint_stops_cleanly_like_ctrl_c) {
        write_file(h.config, "");
        start_daemon(0);
        expect_notify("READY=1", NULL, 0);
        cr_assert_eq(kill(h.pid, SIGINT), 0);
        expect_notify("STOPPING=1", NULL, 0);
        assert_clean_exit(wait_exit(h.pid));
}

Test(lifecycle, status_names_the_node) {
        char msg[4096];

        write_file(h.config, "node:\n  name: status-node\n");
        start_daemon(0);
        expect_notify("READY=1", msg, sizeof(msg));
        cr_assert(strstr(msg, "STATUS=") && strstr(msg, "status-node"), "READY message: %s", msg);
}

Test(lifecycle, watchdog_is_pinged_when_systemd_asks) {
        write_file(h.config, "");
        /* 200 ms: swarmd must ping within each 100 ms half-period; the
         * test only waits for the first ping, not for its timing. */
        start_daemon(200000);
        expect_notify("READY=1", NULL, 0);
        expect_notify("WATCHDOG=1", NULL, 0);
        expect_notify("WATCHDOG=1", NULL, 0);
}

Test(lifecycle, sighup_reloads_live_keys_and_reports_ready_again) {
        char msg[4096];

        write_file(h.config, "node:\n  name: before\n");
        start_daemon(0);
        expect_notify("READY=1", NULL, 0);

        write_file(h.config, "node:\n  name: after\n  state_directory: /nonexistent/elsewhere\n");
        cr_assert_eq(kill(h.pid, SIGHUP), 0);
        expect_notify("RELOADING=1", msg, sizeof(msg));
        cr_assert(strstr(msg, "MONOTONIC_USEC="), "RELOADING without MONOTONIC_USEC: %s", msg);
        expect_notify("READY=1", msg, sizeof(msg));
        cr_assert(strstr(msg, "after"), "node name not applied on reload: %s", msg);

        cr_assert_eq(kill(h.pid, SIGTERM), 0);
        assert_clean_exit(wait_exit(h.pid));
        /* The state directory needs a restart: the daemon said so and kept
         * using the old one. */
        cr_assert(strstr(read_file(h.stderr_path), "node.state_directory"),
                  "no restart notice for node.state_directory:\n%s", read_file(h.stderr_path));
}

Test(lifecycle, reload_option_signals_the_daemon_as_systemctl_reload_does) {
        char msg[4096], pid[32];
        const char *args[] = { "--reload", pid, NULL };
        const char *bad[] = { "--reload", "1x", NULL };
        int status;

        write_file(h.config, "node:\n  name: before\n");
        start_daemon(0);
        expect_notify("READY=1", NULL, 0);

        write_file(h.config, "node:\n  name: after\n");
        snprintf(pid, sizeof(pid), "%d", (int) h.pid);
        status = wait_exit(spawn_swarmd(args, 0));
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        expect_notify("RELOADING=1", NULL, 0);
        expect_notify("READY=1", msg, sizeof(msg));
        cr_assert(strstr(msg, "after"), "node name not applied on reload: %s", msg);

        status = wait_exit(spawn_swarmd(bad, 0));
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1);

        cr_assert_eq(kill(h.pid, SIGTERM), 0);
        assert_clean_exit(wait_exit(h.pid));
}

Test(lifecycle, sighup_with_broken_config_keeps_serving) {
        char msg[4096];

        write_file(h.config, "node:\n  name: steady\n");
        start_daemon(0);
        expect_notify("READY=1", NULL, 0);

        write_file(h.config, "node:\n  name: [oops\n");
        cr_assert_eq(kill(h.pid, SIGHUP), 0);
        expect_notify("READY=1", msg, sizeof(msg));
        cr_assert(strstr(msg, "steady"), "running configuration not kept: %s", msg);

        cr_assert_eq(kill(h.pid, SIGTERM), 0);
        assert_clean_exit(wait_exit(h.pid));
        cr_assert(strstr(read_file(h.stderr_path), "swarmd.yaml:"),
                  "reload error does not name the file:\n%s", read_file(h.stderr_path));
}

Test(lifecycle, invalid_config_refuses_to_start_with_file_line_column) {
        char expect[256];
        int status;

        write_file(h.config, "log:\n  level: loud\n");
        start_daemon(0);
        status = wait_exit(h.pid);
        cr_assert(WIFEXITED(status));
        cr_assert_eq(WEXITSTATUS(status), 78);
        snprintf(expect, sizeof(expect), "%s:2:10:", h.config);
        cr_assert(strstr(read_file(h.stderr_path), expect), "expected '%s' in:\n%s",
                  expect, read_file(h.stderr_path));
        cr_assert_neq(access(h.state, F_OK), 0, "state created despite the invalid config");
}

/* What passes --check-config starts; what would not start does not pass:
 * a name too long for the record, a port ZeroMQ would wrap, both 78. */
Test(lifecycle, limits_of_the_daemon_are_configuration_errors_at_check_and_start) {
        const char *args[] = { "--check-config", h.config, NULL };
        static const char *const bad[] = {
                "network:\n  bind: \"tcp://127.0.0.1:99999\"\n",
                NULL,   /* filled with a 1000-character name */
        };
        char name_yaml[1100];
        int status;

        snprintf(name_yaml, sizeof(name_yaml), "node:\n  name: %01000d\n", 7);
        for (size_t i = 0; i < 2; i++) {
                const char *yaml = bad[i] ?: name_yaml;

                write_file(h.config, yaml);
                status = wait_exit(spawn_swarmd(args, 0));
                cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 78, "--check-config passed:\n%s", yaml);
                start_daemon(0);
                status = wait_exit(h.pid);
                cr_assert(WIFEXITED(status));
                cr_assert_eq(WEXITSTATUS(status), 78, "started or failed otherwise (%d):\n%s", status, yaml);
                cr_assert(strstr(read_file(h.stderr_path), ":2:"), "%s", read_file(h.stderr_path));
        }
}

/* An address this host does not have fails every restart alike: a
 * configuration error (78), so Restart=on-failure does not loop on it. */
Test(lifecycle, binding_an_address_this_host_lacks_exits_78) {
        char dropin[192];
        int status;

        /* 192.0.2.0/24 is TEST-NET-1: never a local address.  A drop-in,
         * after the harness's own network one. */
        snprintf(dropin, sizeof(dropin), "%s.d/99-bind.yaml", h.config);
        write_file(dropin, "network:\n  bind: \"tcp://192.0.2.1:7946\"\n");
        start_daemon(0);
        status = wait_exit(h.pid);
        cr_assert(WIFEXITED(status));
        cr_assert_eq(WEXITSTATUS(status), 78, "%s", read_file(h.stderr_path));
        cr_assert(strstr(read_file(h.stderr_path), "192.0.2.1"), "%s", read_file(h.stderr_path));
}

Test(lifecycle, missing_explicit_config_refuses_to_start) {
        char dropin[192];
        int status;

        /* Nothing at all: neither the file nor drop-ins. */
        snprintf(dropin, sizeof(dropin), "%s.d/00-test-network.yaml", h.config);
        cr_assert_eq(unlink(dropin), 0);
        snprintf(dropin, sizeof(dropin), "%s.d", h.config);
        cr_assert_eq(rmdir(dropin), 0);
        start_daemon(0);   /* h.config was never written */
        status = wait_exit(h.pid);
        cr_assert(WIFEXITED(status));
        cr_assert_eq(WEXITSTATUS(status), 78);
}

Test(lifecycle, check_config_validates_without_starting) {
        const char *args[] = { "--check-config", h.config, NULL };
        int status;

        write_file(h.config, "log:\n  level: debug\n");
        status = wait_exit(spawn_swarmd(args, 0));
        cr_assert(WIFEXITED(status));
        cr_assert_eq(WEXITSTATUS(status), 0);

        write_file(h.config, "log:\n  levl: debug\n");
        status = wait_exit(spawn_swarmd(args, 0));
        cr_assert(WIFEXITED(status));
        cr_assert_eq(WEXITSTATUS(status), 78);
        cr_assert(strstr(read_file(h.stderr_path), ":2:3:"), "%s", read_file(h.stderr_path));
}

Test(lifecycle, show_identity_prints_the_id_the_daemon_created) {
        const char *args[] = { "--config", h.config, "--state-dir", h.state, "--show-identity", NULL };
        struct identity *id = NULL;
        char expect[NODE_ID_LEN + 2];
        int status;

        write_file(h.config, "");
        /* Nothing yet: refuses rather than inventing one. */
        status = wait_exit(spawn_swarmd(args, 0));
        cr_assert(WIFEXITED(status));
        cr_assert_eq(WEXITSTATUS(status), 1);

        start_daemon(0);
        expect_notify("READY=1", NULL, 0);
        kill(h.pid, SIGTERM);
        assert_clean_exit(wait_exit(h.pid));

        cr_assert_eq(identity_load(h.state, &id), 0);
        snprintf(expect, sizeof(expect), "%s\n", id->node_id);
        identity_free(id);

        status = wait_exit(spawn_swarmd(args, 0));
        cr_assert(WIFEXITED(status));
        cr_assert_eq(WEXITSTATUS(status), 0);
        cr_assert_str_eq(read_file(h.stdout_path), expect);
}

Test(lifecycle, corrupt_identity_refuses_to_start_and_is_kept) {
        char key[192];
        int status;

        write_file(h.config, "");
        cr_assert_eq(mkdir(h.state, 0700), 0);
        snprintf(key, sizeof(key), "%s/%s", h.state, IDENTITY_FILE);
        write_file(key, "not a key");
        cr_assert_eq(chmod(key, 0600), 0);

        start_daemon(0);
        status = wait_exit(h.pid);
        cr_assert(WIFEXITED(status));
        cr_assert_neq(WEXITSTATUS(status), 0);
        cr_assert_str_eq(read_file(key), "not a key");
}

static int count_children(pid_t parent) {
        char path[64], buf[4096];
        FILE *f;
        int n = 0;

        snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int) parent, (int) parent);
        f = fopen(path, "re");
        if (!f)
                return -1;
        if (fgets(buf, sizeof(buf), f))
                for (char *p = strtok(buf, " \n"); p; p = strtok(NULL, " \n"))
                        n++;
        fclose(f);
        return n;
}

Test(lifecycle, ready_only_once_configured_skills_are_up_and_workers_stop_with_it) {
        char config[1024], msg[4096];
        const char *plugins = getenv("SKILL_BUILD_DIR"), *tests = getenv("TEST_PLUGIN_DIR");

        cr_assert(plugins && tests, "SKILL_BUILD_DIR/TEST_PLUGIN_DIR not set");
        snprintf(config, sizeof(config),
                 "skills:\n  enabled: [hash, testskill, no-such-skill]\n  directory: \"%s:%s\"\n"
                 "  workers: 2\n", plugins, tests);
        write_file(h.config, config);
        start_daemon(0);
        expect_notify("READY=1", msg, sizeof(msg));
        cr_assert(strstr(msg, "hash (") && strstr(msg, "testskill (") &&
                  strstr(msg, "1 failed: no-such-skill"), "READY message: %s", msg);
        /* Two long-lived workers per skill. */
        cr_assert_eq(count_children(h.pid), 4, "children of swarmd: %d", count_children(h.pid));
        cr_assert(strstr(read_file(h.stderr_path), "no-such-skill"), "missing skill not reported");

        cr_assert_eq(kill(h.pid, SIGTERM), 0);
        assert_clean_exit(wait_exit(h.pid));
}

/* ---- control.sock: nobody can fill it ---- */

static int connect_control(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        cr_assert_geq(fd, 0);
        cr_assert_lt(strlen(path), sizeof(sa.sun_path));
        memcpy(sa.sun_path, path, strlen(path) + 1);
        cr_assert_eq(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0, "connect %s: %m", path);
        return fd;
}

static bool peer_closed(int fd) {
        char c;

        return recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

/* A local user holding many idle connections (the issue found 16 locked
 * everyone out) neither locks out the next query nor keeps them: a
 * connection that says nothing is closed within a second or so. */
Test(lifecycle, idle_connections_cannot_lock_out_the_control_socket) {
        Swarm__ControlRequest req = SWARM__CONTROL_REQUEST__INIT;
        Swarm__PeersRequest peers = SWARM__PEERS_REQUEST__INIT;
        Swarm__ControlReply *reply = NULL;
        char path[256];
        int idle[64];

        start_daemon(0);
        expect_notify("READY=1", NULL, 0);
        snprintf(path, sizeof(path), "%s/control.sock", h.state);
        for (size_t i = 0; i < ELEMENTSOF(idle); i++)
                idle[i] = connect_control(path);

        req.request_case = SWARM__CONTROL_REQUEST__REQUEST_PEERS;
        req.peers = &peers;
        cr_assert_eq(control_client_call(path, &req, &reply), 0, "a query was locked out");
        cr_assert_not_null(reply);
        swarm__control_reply__free_unpacked(reply, NULL);

        /* Silent connections go: the old ones at once (evicted), the rest
         * after the hello time. */
        usleep(1800 * 1000);
        for (size_t i = 0; i < ELEMENTSOF(idle); i++) {
                cr_assert(peer_closed(idle[i]), "idle connection %zu still open", i);
                close(idle[i]);
        }
        cr_assert(strstr(read_file(h.stderr_path), "Control socket: closed"), "evictions not logged:\n%s",
                  read_file(h.stderr_path));

        cr_assert_eq(kill(h.pid, SIGTERM), 0);
        assert_clean_exit(wait_exit(h.pid));
}

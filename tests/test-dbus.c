/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* swarmd's D-Bus API (org.swarmharness.Swarm1) on a private dbus-daemon
 * whose configuration is the stock system bus policy (deny by default,
 * holes punched by service files) plus the shipped
 * dbus/org.swarmharness.Swarm1.conf.  root stands in for the service user
 * swarmd; unprivileged callers are forked children that drop to nobody.
 * A fake polkit, served by a child of the test, answers as told. */

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include "build-config.h"
#include "control-client.h"
#include "identity.h"
#include "swarmd-harness.h"

#define NAME "org.swarmharness.Swarm1"
#define PATH "/org/swarmharness/Swarm1"
#define IFACE "org.swarmharness.Swarm1"
#define ERROR_NOT_AUTHORIZED "org.swarmharness.Swarm1.Error.NotAuthorized"
#define ERROR_INVALID_ARGUMENT "org.swarmharness.Swarm1.Error.InvalidArgument"
#define WAIT_MS 20000
#define NOBODY 65534
#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

struct node {
        char dir[128], config[160], state[160], notify[160], log[160];
        struct notify_listener listener;
        struct identity *identity;
        pid_t pid;
        int port;
};

static char root[64];
static char address[256];
static pid_t bus_pid = -1, polkit_pid = -1;
static struct node nodes[2];

/* ---- Fixture ---- */

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "we");

        cr_assert_not_null(f, "%s: %s", path, strerror(errno));
        fputs(text, f);
        cr_assert_eq(fclose(f), 0);
}

static char *read_all(const char *path) {
        static char buf[65536];
        FILE *f = fopen(path, "re");
        size_t n;

        if (!f)
                return strcpy(buf, "");
        n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = '\0';
        fclose(f);
        return buf;
}

/* The stock system.conf default policy, then the shipped service file:
 * what a distribution's system bus does with our policy installed. */
static void start_bus(void) {
        char conf[8192], path[160], addr_path[160], err_path[160];
        const char *src = getenv("SOURCE_ROOT");
        const struct passwd *pw = getpwuid(geteuid());
        const char *me = pw ? pw->pw_name : "root";
        long long deadline = monotonic_usec() + 10 * 1000000LL;

        cr_assert_not_null(src, "SOURCE_ROOT not set (run through meson test)");
        snprintf(conf, sizeof(conf),
                 "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\"\n"
                 " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
                 "<busconfig>\n"
                 "  <type>system</type>\n"
                 "  <listen>unix:path=%s/bus</listen>\n"
                 "  <policy context=\"default\">\n"
                 "    <allow user=\"*\"/>\n"
                 "    <deny own=\"*\"/>\n"
                 "    <deny send_type=\"method_call\"/>\n"
                 "    <allow send_type=\"signal\"/>\n"
                 "    <allow send_requested_reply=\"true\" send_type=\"method_return\"/>\n"
                 "    <allow send_requested_reply=\"true\" send_type=\"error\"/>\n"
                 "    <allow receive_type=\"method_call\"/>\n"
                 "    <allow receive_type=\"method_return\"/>\n"
                 "    <allow receive_type=\"error\"/>\n"
                 "    <allow receive_type=\"signal\"/>\n"
                 "    <allow send_destination=\"org.freedesktop.DBus\" send_interface=\"org.freedesktop.DBus\"/>\n"
                 "    <allow send_destination=\"org.freedesktop.DBus\"\n"
                 "           send_interface=\"org.freedesktop.DBus.Introspectable\"/>\n"
                 "    <allow send_destination=\"org.freedesktop.PolicyKit1\"/>\n"
                 "  </policy>\n"
                 "  <policy user=\"%s\"><allow own=\"org.freedesktop.PolicyKit1\"/></policy>\n"
                 "  <include>%s/dbus/org.swarmharness.Swarm1.conf</include>\n"
                 "  <!-- we play the service user swarmd here -->\n"
                 "  <policy user=\"%s\"><allow own=\"" NAME "\"/></policy>\n"
                 "</busconfig>\n",
                 root, me, src, me);
        snprintf(path, sizeof(path), "%s/bus.conf", root);
        write_file(path, conf);
        snprintf(addr_path, sizeof(addr_path), "%s/bus.address", root);
        snprintf(err_path, sizeof(err_path), "%s/bus.log", root);

        bus_pid = fork();
        cr_assert_geq(bus_pid, 0);
        if (bus_pid == 0) {
                int out = open(addr_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

                dup2(out, STDOUT_FILENO);
                dup2(err, STDERR_FILENO);
                execlp("dbus-daemon", "dbus-daemon", "--config-file", path, "--nofork", "--nopidfile",
                       "--print-address=1", (char *) NULL);
                _exit(127);
        }
        while (!strchr(read_all(addr_path), '\n')) {
                cr_assert(monotonic_usec() < deadline, "dbus-daemon did not start: %s", read_all(err_path));
                cr_assert_eq(waitpid(bus_pid, NULL, WNOHANG), 0, "dbus-daemon exited: %s", read_all(err_path));
                usleep(10000);
        }
        snprintf(address, sizeof(address), "%s", read_all(addr_path));
        address[strcspn(address, "\n")] = '\0';
        /* swarmd, swarmctl and busctl find the bus here. */
        setenv("DBUS_SYSTEM_BUS_ADDRESS", address, 1);
        setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/no-session-bus", 1);
}

static void setup(void) {
        strcpy(root, "/tmp/dbus-test-XXXXXX");
        cr_assert_not_null(mkdtemp(root));
        cr_assert_eq(chmod(root, 0755), 0);     /* nobody reaches the bus socket */
        for (int i = 0; i < 2; i++) {
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
                cr_assert_eq(identity_load_or_create(n->state, &n->identity, &created), 0);
                cr_assert_eq(notify_listener_open(&n->listener, n->notify), 0);
                n->port = loopback_free_port();
                cr_assert_gt(n->port, 0, "no free port: %s", strerror(-n->port));
                n->pid = -1;
        }
        start_bus();
}

static void stop(pid_t *pid, int sig) {
        if (*pid > 0) {
                kill(*pid, sig);
                if (wait_exit_timeout(*pid, 5000) == -ETIMEDOUT) {
                        kill(*pid, SIGKILL);
                        waitpid(*pid, NULL, 0);
                }
        }
        *pid = -1;
}

static void teardown(void) {
        for (int i = 0; i < 2; i++) {
                stop(&nodes[i].pid, SIGTERM);
                notify_listener_close(&nodes[i].listener);
                identity_free(nodes[i].identity);
                nodes[i].identity = NULL;
        }
        stop(&polkit_pid, SIGKILL);
        stop(&bus_pid, SIGTERM);
        rm_rf(root);
}

TestSuite(dbus, .init = setup, .fini = teardown, .timeout = 90);

/* cr_skip_test() leaves without the .fini: clean up first. */
#define skip_test(...)                          \
        do {                                    \
                teardown();                     \
                cr_skip_test(__VA_ARGS__);      \
        } while (0)

static int name_has_owner(sd_bus *bus, const char *name) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        int has = 0, r;

        r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "NameHasOwner", &error, &reply, "s", name);
        if (r >= 0)
                r = sd_bus_message_read(reply, "b", &has);
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);
        return r < 0 ? r : has;
}

static sd_bus *client(void) {
        sd_bus *bus = NULL;
        int r = sd_bus_open_system(&bus);

        cr_assert_geq(r, 0, "cannot connect to the private bus: %s", strerror(-r));
        return bus;
}

static void wait_for_name(const char *name) {
        sd_bus *bus = client();
        long long deadline = monotonic_usec() + WAIT_MS * 1000LL;

        while (name_has_owner(bus, name) <= 0) {
                cr_assert(monotonic_usec() < deadline, "%s never appeared on the bus", name);
                usleep(20000);
        }
        sd_bus_flush_close_unref(bus);
}

/* Node 0 serves D-Bus (extra: more YAML under dbus:); node 1, when
 * started, is a plain peer seeded to node 0 without D-Bus. */
/* dbus.bus of node 0, and more of its skills: section. */
static const char *node0_bus = "system";
static const char *node0_skills_extra = "";

static void start_node_full(int i, const char *dbus_extra, bool want_name) {
        struct node *n = &nodes[i];
        const char *args[] = { "--config", n->config, "--state-dir", n->state, NULL };
        const char *binary = getenv("SWARMD_BINARY"), *tests = getenv("TEST_PLUGIN_DIR");
        char config[2048], admin[128];
        int r;

        cr_assert(binary && tests, "SWARMD_BINARY/TEST_PLUGIN_DIR not set (run through meson test)");
        /* Unprivileged, we may change state through our own group. */
        if (!dbus_extra && geteuid() != 0) {
                const struct group *g = getgrgid(getegid());

                cr_assert_not_null(g);
                snprintf(admin, sizeof(admin), "  admin_group: \"%s\"\n", g->gr_name);
                dbus_extra = admin;
        }
        if (i == 0)
                snprintf(config, sizeof(config),
                         "node:\n  name: dbus-node\n"
                         "dbus:\n  bus: %s\n%s"
                         "network:\n  bind: \"tcp://127.0.0.1:%d\"\n  beacon: false\n  probe_interval: 100ms\n"
                         "skills:\n  enabled: [testskill]\n  directory: \"%s\"\n%s",
                         node0_bus, dbus_extra ?: "", n->port, tests, node0_skills_extra);
        else
                snprintf(config, sizeof(config),
                         "node:\n  name: peer\n"
                         "dbus:\n  bus: none\n"
                         "network:\n  bind: \"tcp://127.0.0.1:%d\"\n  beacon: false\n  probe_interval: 100ms\n"
                         "  seeds: [\"%s@tcp://127.0.0.1:%d\"]\n",
                         n->port, nodes[0].identity->node_id, nodes[0].port);
        write_file(n->config, config);

        n->pid = swarmd_spawn(&(struct swarmd_spawn) {
                .binary = binary,
                .args = args,
                .notify_socket = n->notify,
                .stderr_path = n->log,
        });
        cr_assert_gt(n->pid, 0);
        r = notify_listener_wait(&n->listener, "READY=1", WAIT_MS, NULL, 0);
        cr_assert_eq(r, 0, "node %d not ready (%s): %s", i, strerror(-r), read_all(n->log));
        if (want_name)
                wait_for_name(NAME);
}

static void start_node(int i, const char *dbus_extra) {
        start_node_full(i, dbus_extra, i == 0);
}

/* ---- Calls ---- */

static int get_bool(sd_bus *bus, const char *property) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int b = -1, r;

        r = sd_bus_get_property_trivial(bus, NAME, PATH, IFACE, property, &error, 'b', &b);
        cr_assert_geq(r, 0, "Get %s: %s", property, error.message ?: strerror(-r));
        return b;
}

static char *get_string(sd_bus *bus, const char *property) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char *s = NULL;
        int r;

        r = sd_bus_get_property_string(bus, NAME, PATH, IFACE, property, &error, &s);
        cr_assert_geq(r, 0, "Get %s: %s", property, error.message ?: strerror(-r));
        return s;
}

/* Calls method with a bool argument ("b") or none (NULL); returns the
 * error name, "" on success. */
static const char *call(sd_bus *bus, const char *method, int enabled, char *message, size_t n) {
        static char name[256];
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        if (strcmp(method, "SetLending") == 0)
                r = sd_bus_call_method(bus, NAME, PATH, IFACE, method, &error, NULL, "b", enabled);
        else
                r = sd_bus_call_method(bus, NAME, PATH, IFACE, method, &error, NULL, "");
        snprintf(name, sizeof(name), "%s", r < 0 ? (error.name ?: "?") : "");
        if (message)
                snprintf(message, n, "%s", error.message ?: "");
        sd_bus_error_free(&error);
        return name;
}

static const char *set_policy(sd_bus *bus, const char *policy, const char *window, char *message, size_t n) {
        static char name[256];
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        if (window)
                r = sd_bus_call_method(bus, NAME, PATH, IFACE, "SetPolicy", &error, NULL, "sas", policy, 1, window);
        else
                r = sd_bus_call_method(bus, NAME, PATH, IFACE, "SetPolicy", &error, NULL, "sas", policy, 0);
        snprintf(name, sizeof(name), "%s", r < 0 ? (error.name ?: "?") : "");
        if (message)
                snprintf(message, n, "%s", error.message ?: "");
        sd_bus_error_free(&error);
        return name;
}

enum as_op {
        AS_SET_LENDING_OFF,
        AS_READ_LENDING,
        AS_READ_BALANCE,
        AS_OWN_NAME,
};

/* Does op in a child that dropped to nobody (plus the supplementary
 * group, if any), and returns what happened: the error name, "" for
 * success, for AS_READ_LENDING "true"/"false", for AS_READ_BALANCE the
 * number. */
static const char *as_nobody(enum as_op op, gid_t group) {
        static char result[256];
        int fds[2];
        pid_t pid;
        ssize_t k;

        if (geteuid() != 0)
                skip_test("needs root to call as another user");
        cr_assert_eq(pipe(fds), 0);
        pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                char out[256] = "";
                sd_bus *bus = NULL;
                sd_bus_error error = SD_BUS_ERROR_NULL;
                int r;

                close(fds[0]);
                if (setgroups(group ? 1 : 0, &group) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
                        _exit(2);
                r = sd_bus_open_system(&bus);
                if (r < 0)
                        snprintf(out, sizeof(out), "connect: %s", strerror(-r));
                else if (op == AS_SET_LENDING_OFF) {
                        r = sd_bus_call_method(bus, NAME, PATH, IFACE, "SetLending", &error, NULL, "b", 0);
                        snprintf(out, sizeof(out), "%s", r < 0 ? (error.name ?: "?") : "");
                } else if (op == AS_READ_LENDING) {
                        int b;
                        r = sd_bus_get_property_trivial(bus, NAME, PATH, IFACE, "Lending", &error, 'b', &b);
                        snprintf(out, sizeof(out), "%s", r < 0 ? (error.name ?: "?") : b ? "true" : "false");
                } else if (op == AS_READ_BALANCE) {
                        int64_t x;
                        r = sd_bus_get_property_trivial(bus, NAME, PATH, IFACE, "Balance", &error, 'x', &x);
                        if (r < 0)
                                snprintf(out, sizeof(out), "%s", error.name ?: "?");
                        else
                                snprintf(out, sizeof(out), "%lld", (long long) x);
                } else {
                        r = sd_bus_request_name(bus, NAME, SD_BUS_NAME_QUEUE);
                        snprintf(out, sizeof(out), "%s", r < 0 ? strerror(-r) : "");
                }
                k = write(fds[1], out, strlen(out));
                _exit(k < 0 ? 3 : 0);
        }
        close(fds[1]);
        k = read(fds[0], result, sizeof(result) - 1);
        result[k > 0 ? k : 0] = '\0';
        close(fds[0]);
        cr_assert_eq(wait_exit_timeout(pid, WAIT_MS), 0, "child as nobody failed");
        return result;
}

/* ---- The fake polkit ---- */

static char polkit_answer_path[160], polkit_log_path[160];

static int fake_check_authorization(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *kind, *action;
        FILE *log;
        bool yes;
        int r;

        r = sd_bus_message_enter_container(m, 'r', "sa{sv}");
        if (r >= 0)
                r = sd_bus_message_read(m, "s", &kind);
        if (r >= 0)
                r = sd_bus_message_skip(m, "a{sv}");
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r >= 0)
                r = sd_bus_message_read(m, "s", &action);
        if (r < 0)
                return r;
        log = fopen(polkit_log_path, "ae");
        if (log) {
                fprintf(log, "%s %s\n", kind, action);
                fclose(log);
        }
        yes = strncmp(read_all(polkit_answer_path), "yes", 3) == 0;
        return sd_bus_reply_method_return(m, "(bba{ss})", yes, false, 0);
}

static const sd_bus_vtable fake_polkit_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("CheckAuthorization", "(sa{sv})sa{ss}us", "(bba{ss})", fake_check_authorization,
                      SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

static void start_fake_polkit(const char *answer) {
        snprintf(polkit_answer_path, sizeof(polkit_answer_path), "%s/polkit-answer", root);
        snprintf(polkit_log_path, sizeof(polkit_log_path), "%s/polkit-log", root);
        write_file(polkit_answer_path, answer);
        polkit_pid = fork();
        cr_assert_geq(polkit_pid, 0);
        if (polkit_pid == 0) {
                sd_bus *bus = NULL;

                if (sd_bus_open_system(&bus) < 0 ||
                    sd_bus_add_object_vtable(bus, NULL, "/org/freedesktop/PolicyKit1/Authority",
                                             "org.freedesktop.PolicyKit1.Authority", fake_polkit_vtable, NULL) < 0 ||
                    sd_bus_request_name(bus, "org.freedesktop.PolicyKit1", 0) < 0)
                        _exit(1);
                for (;;) {
                        int r = sd_bus_process(bus, NULL);
                        if (r < 0)
                                _exit(0);
                        if (r == 0 && sd_bus_wait(bus, UINT64_MAX) < 0)
                                _exit(0);
                }
        }
        wait_for_name("org.freedesktop.PolicyKit1");
}

/* ---- Introspection against the XML ---- */

static const char *attr(const char *tag, const char *name, char *buf, size_t n) {
        char key[64];
        const char *p, *end;

        snprintf(key, sizeof(key), " %s=\"", name);
        p = strstr(tag, key);
        if (!p) {
                buf[0] = '\0';
                return buf;
        }
        p += strlen(key);
        end = strchr(p, '"');
        snprintf(buf, n, "%.*s", end ? (int) (end - p) : 0, p);
        return buf;
}

static int cmp_lines(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Every member of interface iface in xml as one line, e.g.
 * "method SetPolicy(in s policy, in as schedule)" or
 * "property Version s read [org.freedesktop.DBus.Property.EmitsChangedSignal=const]",
 * sorted and joined by newlines. */
static char *interface_members(const char *xml, const char *iface) {
        char open_tag[128], *lines[64], current[1024] = "", *out;
        const char *p, *end;
        size_t n = 0, size = 1;
        bool in_member = false, first_arg = true;

        snprintf(open_tag, sizeof(open_tag), "<interface name=\"%s\">", iface);
        p = strstr(xml, open_tag);
        cr_assert_not_null(p, "interface %s not found in:\n%s", iface, xml);
        end = strstr(p, "</interface>");
        cr_assert_not_null(end);

        for (p += strlen(open_tag); p < end; ) {
                char tag[1024], name[128], type[64], direction[16], value[128];
                const char *close;
                size_t len;
                bool self_closing;

                p = strchr(p, '<');
                if (!p || p >= end)
                        break;
                if (strncmp(p, "<!--", 4) == 0) {
                        p = strstr(p, "-->");
                        cr_assert_not_null(p);
                        continue;
                }
                close = strchr(p, '>');
                cr_assert_not_null(close);
                len = (size_t) (close - p - 1);
                snprintf(tag, sizeof(tag), "%.*s", (int) len, p + 1);
                p = close + 1;
                self_closing = len > 0 && tag[len - 1] == '/';
                if (self_closing)
                        tag[len - 1] = '\0';

                if (strncmp(tag, "method ", 7) == 0 || strncmp(tag, "signal ", 7) == 0) {
                        snprintf(current, sizeof(current), "%.6s %s(", tag, attr(tag, "name", name, sizeof(name)));
                        in_member = true;
                        first_arg = true;
                } else if (strncmp(tag, "property ", 9) == 0) {
                        snprintf(current, sizeof(current), "property %s %s %s", attr(tag, "name", name, sizeof(name)),
                                 attr(tag, "type", type, sizeof(type)), attr(tag, "access", value, sizeof(value)));
                        in_member = true;
                } else if (strncmp(tag, "arg ", 4) == 0 && in_member) {
                        attr(tag, "direction", direction, sizeof(direction));
                        snprintf(current + strlen(current), sizeof(current) - strlen(current), "%s%s %s %s",
                                 first_arg ? "" : ", ", direction[0] ? direction : current[0] == 'm' ? "in" : "out",
                                 attr(tag, "type", type, sizeof(type)), attr(tag, "name", name, sizeof(name)));
                        first_arg = false;
                } else if (strncmp(tag, "annotation ", 11) == 0 && in_member) {
                        snprintf(current + strlen(current), sizeof(current) - strlen(current), " [%s=%s]",
                                 attr(tag, "name", name, sizeof(name)), attr(tag, "value", value, sizeof(value)));
                }

                if (in_member && (self_closing || strcmp(tag, "/method") == 0 || strcmp(tag, "/signal") == 0 ||
                                  strcmp(tag, "/property") == 0) &&
                    (self_closing ? strncmp(tag, "arg ", 4) != 0 && strncmp(tag, "annotation ", 11) != 0 : true)) {
                        if (current[0] != 'p')
                                strcat(current, ")");
                        cr_assert_lt(n, ELEMENTSOF(lines));
                        lines[n] = strdup(current);
                        size += strlen(current) + 1;
                        n++;
                        in_member = false;
                }
        }
        qsort(lines, n, sizeof(char *), cmp_lines);
        out = calloc(1, size);
        for (size_t i = 0; i < n; i++) {
                strcat(strcat(out, lines[i]), "\n");
                free(lines[i]);
        }
        return out;
}

Test(dbus, live_introspection_matches_the_interface_xml) {
        sd_bus *bus;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *live;
        char path[256], *contract, *served, *xml;
        int r;

        start_node(0, NULL);
        bus = client();
        r = sd_bus_call_method(bus, NAME, PATH, "org.freedesktop.DBus.Introspectable", "Introspect", &error, &reply,
                               "");
        cr_assert_geq(r, 0, "Introspect: %s", error.message ?: strerror(-r));
        cr_assert_geq(sd_bus_message_read(reply, "s", &live), 0);

        snprintf(path, sizeof(path), "%s/dbus/org.swarmharness.Swarm1.xml", getenv("SOURCE_ROOT"));
        xml = strdup(read_all(path));
        cr_assert(xml[0], "cannot read %s", path);
        contract = interface_members(xml, IFACE);
        served = interface_members(live, IFACE);
        cr_assert(strstr(contract, "method SetLending(in b enabled)"), "parser: %s", contract);
        cr_assert(strstr(contract, "EmitsChangedSignal=const"), "parser: %s", contract);
        cr_assert_str_eq(served, contract, "swarmd serves:\n%s\nthe XML says:\n%s", served, contract);
        free(contract);
        free(served);
        free(xml);
        sd_bus_message_unref(reply);
        sd_bus_flush_close_unref(bus);
}

/* ---- Properties and signals ---- */

static char *run_capture(const char *command) {
        static char out[8192];
        FILE *p = popen(command, "re");
        size_t n;

        cr_assert_not_null(p);
        n = fread(out, 1, sizeof(out) - 1, p);
        out[n] = '\0';
        cr_assert_eq(pclose(p), 0, "%s failed: %s", command, out);
        return out;
}

Test(dbus, properties_are_read_by_busctl) {
        char command[1024], expect[256];
        const char *out;

        start_node(0, NULL);
        snprintf(command, sizeof(command),
                 "busctl --address='%s' get-property " NAME " " PATH " " IFACE
                 " Lending LendingPolicy NodeId Version Peers ActiveJobs JobsPaused 2>&1",
                 address);
        out = run_capture(command);
        snprintf(expect, sizeof(expect), "b true\ns \"always\"\ns \"%s\"\ns \"%s\"\nu 0\nu 0\nb false\n",
                 nodes[0].identity->node_id, PACKAGE_VERSION);
        cr_assert_str_eq(out, expect);

        /* The skill list: name, state, version, price now, list price, unit, workers, busy, served. */
        snprintf(command, sizeof(command), "busctl --address='%s' get-property " NAME " " PATH " " IFACE " Skills 2>&1",
                 address);
        out = run_capture(command);
        cr_assert(strstr(out, "a(sssttsuut) 1 \"testskill\" \"ready\" \"0.0.1\" ") == out, "Skills: %s", out);
        cr_assert(strstr(out, " 1 0 0"), "one worker, none busy, none served: %s", out);

        /* Its GPU memory: unknown without NVML, 0 with a driver (testskill
         * runs on the CPU). */
        snprintf(command, sizeof(command), "busctl --address='%s' get-property " NAME " " PATH " " IFACE
                 " SkillDeviceMemory 2>&1", address);
        out = run_capture(command);
        cr_assert(strcmp(out, "a(sx) 1 \"testskill\" -1\n") == 0 || strcmp(out, "a(sx) 1 \"testskill\" 0\n") == 0,
                  "SkillDeviceMemory: %s", out);

        /* A fresh node holds nothing: nobody gets credits for free. */
        snprintf(command, sizeof(command), "busctl --address='%s' get-property " NAME " " PATH " " IFACE
                 " Balance 2>&1", address);
        out = run_capture(command);
        cr_assert_str_eq(out, "x 0\n");
}

struct changes {
        int lending;            /* -1 until a PropertiesChanged carried it */
        char policy[32];
        int peers;              /* the same */
};

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        struct changes *c = userdata;
        const char *iface, *name;
        int r;

        r = sd_bus_message_read(m, "s", &iface);
        if (r < 0 || strcmp(iface, IFACE) != 0)
                return 0;
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                r = sd_bus_message_read(m, "s", &name);
                if (r < 0)
                        break;
                if (strcmp(name, "Lending") == 0) {
                        int b;
                        r = sd_bus_message_read(m, "v", "b", &b);
                        c->lending = b;
                } else if (strcmp(name, "LendingPolicy") == 0) {
                        const char *s;
                        r = sd_bus_message_read(m, "v", "s", &s);
                        snprintf(c->policy, sizeof(c->policy), "%s", s);
                } else if (strcmp(name, "Peers") == 0) {
                        uint32_t u;
                        r = sd_bus_message_read(m, "v", "u", &u);
                        c->peers = (int) u;
                } else
                        r = sd_bus_message_skip(m, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        return 0;
}

static void watch_changes(sd_bus *bus, struct changes *c) {
        cr_assert_geq(sd_bus_match_signal(bus, NULL, NAME, PATH, "org.freedesktop.DBus.Properties",
                                          "PropertiesChanged", on_properties_changed, c), 0);
}

/* Processes the bus until a PropertiesChanged set *field to want. */
static void wait_change(sd_bus *bus, const int *field, int want, int seconds, const char *what) {
        long long deadline = monotonic_usec() + seconds * 1000000LL;

        while (*field != want) {
                int r;

                cr_assert(monotonic_usec() < deadline, "no PropertiesChanged with %s (last: %d)", what, *field);
                r = sd_bus_process(bus, NULL);
                cr_assert_geq(r, 0);
                if (r == 0)
                        (void) sd_bus_wait(bus, 100000);
        }
}

/* A minimal JSON checker: does text parse as one JSON value? */
static const char *json_value(const char *p);

static const char *json_ws(const char *p) {
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
                p++;
        return p;
}

static const char *json_string_end(const char *p) {
        if (*p++ != '"')
                return NULL;
        for (; *p && *p != '"'; p++)
                if (*p == '\\' && !*++p)
                        return NULL;
                else if ((unsigned char) *p < 0x20)
                        return NULL;
        return *p == '"' ? p + 1 : NULL;
}

static const char *json_value(const char *p) {
        p = json_ws(p);
        if (*p == '"')
                return json_string_end(p);
        if (*p == '{' || *p == '[') {
                char close = *p == '{' ? '}' : ']';
                bool object = *p == '{';

                p = json_ws(p + 1);
                if (*p == close)
                        return p + 1;
                for (;;) {
                        if (object) {
                                p = json_string_end(json_ws(p));
                                if (!p || *(p = json_ws(p)) != ':')
                                        return NULL;
                                p++;
                        }
                        p = json_value(p);
                        if (!p)
                                return NULL;
                        p = json_ws(p);
                        if (*p == close)
                                return p + 1;
                        if (*p++ != ',')
                                return NULL;
                }
        }
        if (strncmp(p, "true", 4) == 0 || strncmp(p, "null", 4) == 0)
                return p + 4;
        if (strncmp(p, "false", 5) == 0)
                return p + 5;
        if (*p == '-' || isdigit((unsigned char) *p)) {
                char *end;
                strtod(p, &end);
                return end;
        }
        return NULL;
}

static bool json_valid(const char *text) {
        const char *end = json_value(text);
        return end && *json_ws(end) == '\0';
}

/* Runs swarmctl ARGS… (as nobody when as_nobody); stdout to out; returns
 * the exit status. */
static int swarmctl(bool nobody, char *out, size_t n, const char *const *args) {
        const char *binary = getenv("SWARMCTL");
        const char *argv[16] = { binary };
        char out_path[160];
        size_t k = 1;
        pid_t pid;
        int status;

        cr_assert_not_null(binary, "SWARMCTL not set (run through meson test)");
        for (; args && *args && k < ELEMENTSOF(argv) - 1; args++)
                argv[k++] = *args;
        argv[k] = NULL;
        snprintf(out_path, sizeof(out_path), "%s/swarmctl.out", root);
        pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);

                dup2(fd, STDOUT_FILENO);
                dup2(null, STDIN_FILENO);
                if (nobody && (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0))
                        _exit(99);
                execv(binary, (char **) argv);
                _exit(127);
        }
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        if (out)
                snprintf(out, n, "%s", read_all(out_path));
        cr_assert(WIFEXITED(status), "swarmctl crashed");
        return WEXITSTATUS(status);
}

Test(dbus, set_lending_false_emits_properties_changed_and_swarmctl_shows_it) {
        struct changes changes = { .lending = -1 };
        char out[8192];
        sd_bus *bus;
        char *policy;

        start_node(0, NULL);
        bus = client();
        watch_changes(bus, &changes);
        cr_assert_eq(get_bool(bus, "Lending"), 1);

        cr_assert_str_eq(call(bus, "SetLending", false, NULL, 0), "");
        wait_change(bus, &changes.lending, 0, 5, "Lending=false");
        cr_assert_str_eq(changes.policy, "never");
        cr_assert_eq(get_bool(bus, "Lending"), 0);
        policy = get_string(bus, "LendingPolicy");
        cr_assert_str_eq(policy, "never");
        free(policy);

        cr_assert_eq(swarmctl(false, out, sizeof(out), (const char *[]) { "status", "--json", NULL }), 0);
        cr_assert(json_valid(out), "not JSON: %s", out);
        cr_assert(strstr(out, "\"lending\": false") && strstr(out, "\"policy\": \"never\""), "%s", out);
        cr_assert(strstr(out, nodes[0].identity->node_id), "%s", out);
        cr_assert(strstr(out, "\"balance\": 0,"), "%s", out);
        /* GPU memory: null without NVML (0 on a machine with a driver). */
        cr_assert(strstr(out, "\"device_memory\": null}") || strstr(out, "\"device_memory\": 0}"), "%s", out);
        cr_assert_eq(swarmctl(false, out, sizeof(out), (const char *[]) { "jobs", "--json", NULL }), 0);
        cr_assert(json_valid(out), "not JSON: %s", out);
        cr_assert_eq(swarmctl(false, out, sizeof(out), (const char *[]) { "status", NULL }), 0);
        cr_assert(strstr(out, "Lending: no") && strstr(out, "testskill"), "%s", out);
        cr_assert(strstr(out, "GPU MEMORY"), "%s", out);
        sd_bus_flush_close_unref(bus);
}

static int peer_lending(const char *socket_path, const struct identity *of) {
        Swarm__ControlRequest req = SWARM__CONTROL_REQUEST__INIT;
        Swarm__PeersRequest peers = SWARM__PEERS_REQUEST__INIT;
        Swarm__ControlReply *reply = NULL;
        int lending = -1;

        req.request_case = SWARM__CONTROL_REQUEST__REQUEST_PEERS;
        req.peers = &peers;
        if (control_client_call(socket_path, &req, &reply) < 0)
                return -1;
        for (size_t i = 0; i < reply->n_peers; i++) {
                const Swarm__PeerInfo *p = reply->peers[i];

                if (p->node_id.len == sizeof(of->public_key) &&
                    memcmp(p->node_id.data, of->public_key, sizeof(of->public_key)) == 0 &&
                    p->state == SWARM__MEMBER_STATE__ALIVE)
                        lending = p->lending;
        }
        swarm__control_reply__free_unpacked(reply, NULL);
        return lending;
}

static void wait_peer_lending(const char *socket_path, int want) {
        long long deadline = monotonic_usec() + WAIT_MS * 1000LL;

        while (peer_lending(socket_path, nodes[0].identity) != want) {
                cr_assert(monotonic_usec() < deadline, "the peer never saw node 0 with lending %s",
                          want ? "true" : "false");
                usleep(50000);
        }
}

Test(dbus, gossip_shows_the_node_not_lending_after_set_lending_false) {
        char socket_path[192];
        sd_bus *bus;

        start_node(0, NULL);
        start_node(1, NULL);
        snprintf(socket_path, sizeof(socket_path), "%s/control.sock", nodes[1].state);
        wait_peer_lending(socket_path, true);

        bus = client();
        cr_assert_str_eq(call(bus, "SetLending", false, NULL, 0), "");
        wait_peer_lending(socket_path, false);
        cr_assert_str_eq(call(bus, "SetLending", true, NULL, 0), "");
        wait_peer_lending(socket_path, true);
        sd_bus_flush_close_unref(bus);
}

Test(dbus, a_peer_joining_pushes_properties_changed_with_peers) {
        struct changes changes = { .lending = -1, .peers = -1 };
        sd_bus *bus;

        start_node(0, NULL);
        bus = client();
        watch_changes(bus, &changes);
        start_node(1, NULL);
        wait_change(bus, &changes.peers, 1, 10, "Peers=1");
        sd_bus_flush_close_unref(bus);
}

/* ---- Authorisation ---- */

Test(dbus, unprivileged_callers_may_read_but_not_change_state_without_polkit) {
        char out[8192];
        sd_bus *bus;

        start_node(0, NULL);
        cr_assert_str_eq(as_nobody(AS_READ_LENDING, 0), "true");
        cr_assert_str_eq(as_nobody(AS_SET_LENDING_OFF, 0), ERROR_NOT_AUTHORIZED);
        /* The balance is private; the rest of GetAll stays open. */
        cr_assert_str_eq(as_nobody(AS_READ_BALANCE, 0), ERROR_NOT_AUTHORIZED);
        cr_assert_eq(swarmctl(true, out, sizeof(out), (const char *[]) { "status", "--json", NULL }), 0);
        cr_assert(strstr(out, "\"balance\": null") && strstr(out, "\"lending\": true"), "%s", out);
        bus = client();
        cr_assert_eq(get_bool(bus, "Lending"), 1, "a refused call changed the state");
        sd_bus_flush_close_unref(bus);
}

Test(dbus, admin_group_members_may_change_state_without_polkit) {
        struct group *g = getgrnam("users");
        sd_bus *bus;

        if (!g)
                skip_test("no group \"users\" on this system");
        start_node(0, "  admin_group: users\n");
        cr_assert_str_eq(as_nobody(AS_SET_LENDING_OFF, 0), ERROR_NOT_AUTHORIZED);
        cr_assert_str_eq(as_nobody(AS_SET_LENDING_OFF, g->gr_gid), "");
        bus = client();
        cr_assert_eq(get_bool(bus, "Lending"), 0);
        sd_bus_flush_close_unref(bus);
}

Test(dbus, polkit_decides_for_unprivileged_callers) {
        sd_bus *bus;

        start_fake_polkit("no");
        start_node(0, NULL);
        cr_assert_str_eq(as_nobody(AS_SET_LENDING_OFF, 0), ERROR_NOT_AUTHORIZED);
        bus = client();
        cr_assert_eq(get_bool(bus, "Lending"), 1);
        cr_assert_str_eq(read_all(polkit_log_path), "system-bus-name org.swarmharness.manage-lending\n");

        write_file(polkit_answer_path, "yes");
        cr_assert_str_eq(as_nobody(AS_SET_LENDING_OFF, 0), "");
        cr_assert_eq(get_bool(bus, "Lending"), 0);

        /* root is not asked. */
        cr_assert_str_eq(call(bus, "SetLending", true, NULL, 0), "");
        cr_assert_str_eq(read_all(polkit_log_path),
                         "system-bus-name org.swarmharness.manage-lending\n"
                         "system-bus-name org.swarmharness.manage-lending\n");
        sd_bus_flush_close_unref(bus);
}

Test(dbus, only_the_service_user_may_own_the_name) {
        start_node(0, NULL);
        cr_assert_str_eq(as_nobody(AS_OWN_NAME, 0), strerror(EACCES));
}

/* ---- Methods ---- */

Test(dbus, invalid_arguments_are_refused_with_a_message_naming_them) {
        char message[512];
        sd_bus *bus;
        char *policy;

        start_node(0, NULL);
        bus = client();
        cr_assert_str_eq(set_policy(bus, "sometimes", NULL, message, sizeof(message)), ERROR_INVALID_ARGUMENT);
        cr_assert_str_eq(message, "unknown policy 'sometimes' (always, never, idle, schedule)");
        cr_assert_str_eq(set_policy(bus, "schedule", "mon-fry 22:00-07:00", message, sizeof(message)),
                         ERROR_INVALID_ARGUMENT);
        cr_assert(strstr(message, "'mon-fry 22:00-07:00'"), "%s", message);
        cr_assert_str_eq(set_policy(bus, "schedule", NULL, message, sizeof(message)), ERROR_INVALID_ARGUMENT);
        policy = get_string(bus, "LendingPolicy");
        cr_assert_str_eq(policy, "always", "a refused call changed the policy");
        free(policy);
        sd_bus_flush_close_unref(bus);
}

Test(dbus, set_policy_and_pause_resume_change_the_properties) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char **schedule = NULL;
        sd_bus *bus;
        char *policy;
        int r;

        start_node(0, NULL);
        bus = client();
        cr_assert_str_eq(set_policy(bus, "schedule", "mon-fri 22:00-07:00", NULL, 0), "");
        policy = get_string(bus, "LendingPolicy");
        cr_assert_str_eq(policy, "schedule");
        free(policy);
        r = sd_bus_get_property_strv(bus, NAME, PATH, IFACE, "Schedule", &error, &schedule);
        cr_assert_geq(r, 0, "%s", error.message ?: strerror(-r));
        cr_assert(schedule && schedule[0] && !schedule[1]);
        cr_assert_str_eq(schedule[0], "mon-fri 22:00-07:00");
        for (char **s = schedule; *s; s++)
                free(*s);
        free(schedule);

        /* An empty schedule keeps the windows. */
        cr_assert_str_eq(set_policy(bus, "idle", NULL, NULL, 0), "");
        policy = get_string(bus, "LendingPolicy");
        cr_assert_str_eq(policy, "idle");
        free(policy);

        cr_assert_str_eq(call(bus, "PauseJobs", 0, NULL, 0), "");
        cr_assert_eq(get_bool(bus, "JobsPaused"), 1);
        cr_assert_str_eq(call(bus, "ResumeJobs", 0, NULL, 0), "");
        cr_assert_eq(get_bool(bus, "JobsPaused"), 0);
        sd_bus_flush_close_unref(bus);
}

Test(dbus, a_reload_that_leaves_lending_alone_keeps_the_runtime_switch) {
        sd_bus *bus;

        start_node(0, NULL);
        bus = client();
        cr_assert_str_eq(call(bus, "SetLending", false, NULL, 0), "");
        cr_assert_eq(kill(nodes[0].pid, SIGHUP), 0);
        cr_assert_eq(notify_listener_wait(&nodes[0].listener, "RELOADING=1", WAIT_MS, NULL, 0), 0);
        cr_assert_eq(notify_listener_wait(&nodes[0].listener, "READY=1", WAIT_MS, NULL, 0), 0);
        cr_assert_eq(get_bool(bus, "Lending"), 0, "the reload switched lending back on");
        sd_bus_flush_close_unref(bus);
}

/* ---- swarmctl ---- */

Test(dbus, swarmctl_exit_codes_distinguish_failures) {
        char out[8192];
        sd_bus *bus;

        /* 3: nothing owns the name yet. */
        cr_assert_eq(swarmctl(false, NULL, 0, (const char *[]) { "status", NULL }), 3);
        cr_assert_eq(swarmctl(false, NULL, 0, (const char *[]) { "lend", "off", "--system", NULL }), 3);
        /* 2: bad arguments, checked before anything is asked. */
        cr_assert_eq(swarmctl(false, NULL, 0, (const char *[]) { "lend", "maybe", NULL }), 2);
        cr_assert_eq(swarmctl(false, NULL, 0, (const char *[]) { "policy", "sometimes", NULL }), 2);
        /* A schedule without windows would keep old ones silently. */
        cr_assert_eq(swarmctl(false, NULL, 0, (const char *[]) { "policy", "schedule", NULL }), 2);
        cr_assert_eq(swarmctl(false, NULL, 0, (const char *[]) { "policy", "always", "--window", "mon 01:00-02:00",
                                                                    NULL }), 2);
        cr_assert_eq(swarmctl(false, NULL, 0, (const char *[]) { "status", "--bogus", NULL }), 2);

        start_node(0, NULL);
        /* 2 as well when swarmd refuses an argument. */
        cr_assert_eq(swarmctl(false, NULL, 0,
                              (const char *[]) { "policy", "schedule", "--window", "25:00-26:00", NULL }), 2);
        /* 4: not authorised. */
        if (geteuid() == 0) {
                cr_assert_eq(swarmctl(true, NULL, 0, (const char *[]) { "lend", "off", NULL }), 4);
                cr_assert_eq(swarmctl(true, out, sizeof(out), (const char *[]) { "status", "--json", NULL }), 0);
                cr_assert(json_valid(out), "not JSON: %s", out);
        }
        /* 0: done, and it says so, also when not on a terminal. */
        cr_assert_eq(swarmctl(false, out, sizeof(out), (const char *[]) { "lend", "off", NULL }), 0);
        cr_assert(strstr(out, "Lending: no"), "lend off printed: %s", out);
        bus = client();
        cr_assert_eq(get_bool(bus, "Lending"), 0);
        cr_assert_eq(swarmctl(false, out, sizeof(out),
                              (const char *[]) { "policy", "schedule", "--window", "sat,sun 00:00-24:00", NULL }), 0);
        cr_assert(strstr(out, "Lending: "), "policy printed: %s", out);
        cr_assert_eq(swarmctl(false, NULL, 0, (const char *[]) { "pause", NULL }), 0);
        cr_assert_eq(get_bool(bus, "JobsPaused"), 1);
        cr_assert_eq(swarmctl(false, NULL, 0, (const char *[]) { "resume", NULL }), 0);
        cr_assert_eq(swarmctl(false, NULL, 0, (const char *[]) { "lend", "on", NULL }), 0);
        cr_assert_eq(get_bool(bus, "Lending"), 1);
        sd_bus_flush_close_unref(bus);
}

Test(dbus, swarmd_runs_without_a_bus) {
        /* The bus is optional: unreachable, swarmd still starts and serves. */
        setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/no-system-bus", 1);
        start_node_full(0, NULL, false);
        setenv("DBUS_SYSTEM_BUS_ADDRESS", address, 1);
        cr_assert(strstr(read_all(nodes[0].log), "running without the D-Bus API"), "%s", read_all(nodes[0].log));
        cr_assert_eq(kill(nodes[0].pid, 0), 0);
}

Test(dbus, auto_as_root_says_that_dbus_bus_session_exists) {
        /* As root, auto takes the system bus even where a session bus is
         * there; when the system bus fails, the log says how to choose. */
        if (geteuid() != 0)
                cr_skip_test("needs root: dbus.bus: auto chooses by euid");
        node0_bus = "auto";
        setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/no-system-bus", 1);
        setenv("DBUS_SESSION_BUS_ADDRESS", address, 1);
        start_node_full(0, NULL, false);
        setenv("DBUS_SYSTEM_BUS_ADDRESS", address, 1);
        setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/no-session-bus", 1);
        cr_assert(strstr(read_all(nodes[0].log), "set dbus.bus: session to use it"), "%s", read_all(nodes[0].log));
        cr_assert_eq(kill(nodes[0].pid, 0), 0);
}

/* The price now: one figure, with its unit, the same in status (D-Bus)
 * and peers (gossip), and the list price beside it where demand moved it. */
Test(dbus, status_and_peers_show_one_price_now_with_its_unit) {
        char out[8192], control[256];

        /* Idle, demand falls to the floor (50%) within a few 100 ms rounds. */
        node0_skills_extra = "  options: [\"testskill.price=1000\"]\npricing:\n  interval: 100ms\n  floor: 50\n";
        start_node(0, NULL);
        usleep(2500 * 1000);
        cr_assert_eq(swarmctl(false, out, sizeof(out), (const char *[]) { "status", NULL }), 0);
        cr_assert(strstr(out, "PRICE NOW"), "%s", out);
        cr_assert(strstr(out, "500 µcredits/element (list 1000)"), "status: %s", out);
        snprintf(control, sizeof(control), "%s/control.sock", nodes[0].state);
        cr_assert_eq(swarmctl(false, out, sizeof(out), (const char *[]) { "peers", "--socket", control, NULL }), 0);
        cr_assert(strstr(out, "500 µcredits/element (list 1000)"), "peers: %s", out);
        node0_skills_extra = "";
}

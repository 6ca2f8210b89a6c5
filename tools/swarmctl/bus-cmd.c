/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* swarmctl status|jobs|lend|policy|pause|resume: the D-Bus API of swarmd
 * (dbus/org.swarmharness.Swarm1.xml) from a terminal or a script.  A CLI
 * may block, so every call is synchronous. */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include "bus-cmd.h"
#include "bus-api.h"
#include "log.h"
#include "macro.h"

/* Interactive polkit authentication waits for a person. */
#define INTERACTIVE_TIMEOUT_USEC (120ULL * 1000 * 1000)

enum bus_choice {
        BUS_CHOICE_AUTO,
        BUS_CHOICE_SYSTEM,
        BUS_CHOICE_USER,
};

struct bus_options {
        enum bus_choice bus;
        bool json;
        char **windows;                 /* policy --window */
        size_t n_windows;
};

static void bus_options_done(struct bus_options *o) {
        strv_free(o->windows);
        o->windows = NULL;
}

/* ---- Connecting ---- */

static int name_has_owner(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int has, r;

        r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "NameHasOwner", &error, &reply, "s", BUS_SERVICE_NAME);
        sd_bus_error_free(&error);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "b", &has);
        return r < 0 ? r : has;
}

static int bus_try(bool system, sd_bus **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        r = system ? sd_bus_open_system(&bus) : sd_bus_open_user(&bus);
        if (r < 0)
                return r;
        r = name_has_owner(bus);
        if (r < 0)
                return r;
        if (r == 0)
                return -ESRCH;
        *ret = TAKE_PTR(bus);
        return 0;
}

/* Returns 0 or an exit status. */
static int bus_connect(enum bus_choice choice, sd_bus **ret) {
        int r_system = -ENOENT, r_user = -ENOENT;

        if (choice != BUS_CHOICE_USER) {
                r_system = bus_try(true, ret);
                if (r_system >= 0)
                        return 0;
        }
        if (choice != BUS_CHOICE_SYSTEM) {
                r_user = bus_try(false, ret);
                if (r_user >= 0)
                        return 0;
        }

        if (choice == BUS_CHOICE_SYSTEM)
                log_error("swarmd is not running: %s is not on the system bus (%s).", BUS_SERVICE_NAME,
                          r_system == -ESRCH ? "no owner" : strerror(-r_system));
        else if (choice == BUS_CHOICE_USER)
                log_error("swarmd is not running: %s is not on the session bus (%s).", BUS_SERVICE_NAME,
                          r_user == -ESRCH ? "no owner" : strerror(-r_user));
        else
                /* swarmd may well run, only not on a bus: say what still works. */
                log_error("swarmd is not running: %s is on neither the system bus (%s) nor the session "
                          "bus (%s). Start it with 'systemctl start swarmd'. A swarmd on no bus (dbus.bus: "
                          "none, or started by hand without one) does not serve this verb; peers, balance, "
                          "ledger and submit reach it over its sockets (SWARM_STATE_DIR=DIR).",
                          BUS_SERVICE_NAME, r_system == -ESRCH ? "no owner" : strerror(-r_system),
                          r_user == -ESRCH ? "no owner" : strerror(-r_user));
        return SWARMCTL_EXIT_NOT_RUNNING;
}

/* Maps a failed call to an exit status, and says what happened. */
static int bus_error_exit(const char *what, const sd_bus_error *e, int r) {
        const char *message = e && e->message ? e->message : strerror(-r);

        if (sd_bus_error_has_name(e, BUS_ERROR_NOT_AUTHORIZED) ||
            sd_bus_error_has_name(e, SD_BUS_ERROR_ACCESS_DENIED) ||
            sd_bus_error_has_name(e, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED)) {
                log_error("Not authorised to %s: %s", what, message);
                return SWARMCTL_EXIT_NOT_AUTHORIZED;
        }
        if (sd_bus_error_has_name(e, BUS_ERROR_INVALID_ARGUMENT) ||
            sd_bus_error_has_name(e, SD_BUS_ERROR_INVALID_ARGS)) {
                log_error("Cannot %s: %s", what, message);
                return SWARMCTL_EXIT_BAD_ARGS;
        }
        if (sd_bus_error_has_name(e, SD_BUS_ERROR_SERVICE_UNKNOWN) ||
            sd_bus_error_has_name(e, SD_BUS_ERROR_NAME_HAS_NO_OWNER) ||
            sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_OBJECT) || r == -ECONNRESET || r == -ENOTCONN) {
                log_error("swarmd went away: %s", message);
                return SWARMCTL_EXIT_NOT_RUNNING;
        }
        log_error("Failed to %s: %s", what, message);
        return SWARMCTL_EXIT_FAILURE;
}

/* Calls a state-changing method; 0 or an exit status. */
static int bus_call_change(sd_bus *bus, const char *what, const char *method, const char *types, ...) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        bool interactive = isatty(STDIN_FILENO) > 0;
        va_list ap;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, BUS_SERVICE_NAME, BUS_SERVICE_PATH, BUS_SERVICE_INTERFACE,
                                           method);
        if (r >= 0 && types) {
                va_start(ap, types);
                r = sd_bus_message_appendv(m, types, ap);
                va_end(ap);
        }
        /* On a terminal, polkit may ask for a password rather than refuse. */
        if (r >= 0)
                r = sd_bus_message_set_allow_interactive_authorization(m, interactive);
        if (r < 0) {
                log_error_errno(r, "Failed to build the call: %m");
                return SWARMCTL_EXIT_FAILURE;
        }
        r = sd_bus_call(bus, m, interactive ? INTERACTIVE_TIMEOUT_USEC : 0, &error, &reply);
        if (r < 0) {
                r = bus_error_exit(what, &error, r);
                sd_bus_error_free(&error);
                return r;
        }
        return 0;
}

/* ---- Reading the state ---- */

struct skill_status {
        const char *name, *state, *version, *price_unit;
        uint64_t price, list_price, jobs_served;
        uint32_t workers, busy;
        int64_t device_memory;          /* bytes; -1 unknown (no NVML, or a swarmd before SkillDeviceMemory) */
};

struct skill_memory {
        const char *name;
        int64_t bytes;
};

struct swarm_status {
        sd_bus_message *reply;          /* owns the strings below */
        const char *version, *node_id, *policy, *reason;
        int lending, paused;
        char **schedule;
        struct skill_status *skills;
        size_t n_skills;
        struct skill_memory *memory;    /* SkillDeviceMemory, matched to skills by name */
        size_t n_memory;
        uint32_t peers, active_jobs;
        bool has_balance;               /* Balance is private: absent for most users */
        int64_t balance;
};

static void swarm_status_done(struct swarm_status *s) {
        sd_bus_message_unref(s->reply);
        strv_free(s->schedule);
        free(s->skills);
        free(s->memory);
        *s = (struct swarm_status) {};
}

static int read_skills(sd_bus_message *m, struct swarm_status *s) {
        int r;

        r = sd_bus_message_enter_container(m, 'v', "a(sssttsuut)");
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(m, 'a', "(sssttsuut)");
        if (r < 0)
                return r;
        for (;;) {
                struct skill_status k;
                struct skill_status *grown;

                r = sd_bus_message_read(m, "(sssttsuut)", &k.name, &k.state, &k.version, &k.price, &k.list_price,
                                        &k.price_unit, &k.workers, &k.busy, &k.jobs_served);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                k.device_memory = -1;
                grown = realloc(s->skills, (s->n_skills + 1) * sizeof(*s->skills));
                if (!grown)
                        return -ENOMEM;
                s->skills = grown;
                s->skills[s->n_skills++] = k;
        }
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

static int read_memory(sd_bus_message *m, struct swarm_status *s) {
        int r;

        r = sd_bus_message_enter_container(m, 'v', "a(sx)");
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(m, 'a', "(sx)");
        if (r < 0)
                return r;
        for (;;) {
                struct skill_memory k, *grown;

                r = sd_bus_message_read(m, "(sx)", &k.name, &k.bytes);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                grown = realloc(s->memory, (s->n_memory + 1) * sizeof(*s->memory));
                if (!grown)
                        return -ENOMEM;
                s->memory = grown;
                s->memory[s->n_memory++] = k;
        }
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

static int read_property(sd_bus_message *m, const char *name, struct swarm_status *s) {
        if (strcmp(name, "Version") == 0)
                return sd_bus_message_read(m, "v", "s", &s->version);
        if (strcmp(name, "NodeId") == 0)
                return sd_bus_message_read(m, "v", "s", &s->node_id);
        if (strcmp(name, "Lending") == 0)
                return sd_bus_message_read(m, "v", "b", &s->lending);
        if (strcmp(name, "LendingPolicy") == 0)
                return sd_bus_message_read(m, "v", "s", &s->policy);
        if (strcmp(name, "LendingReason") == 0)
                return sd_bus_message_read(m, "v", "s", &s->reason);
        if (strcmp(name, "JobsPaused") == 0)
                return sd_bus_message_read(m, "v", "b", &s->paused);
        if (strcmp(name, "Peers") == 0)
                return sd_bus_message_read(m, "v", "u", &s->peers);
        if (strcmp(name, "ActiveJobs") == 0)
                return sd_bus_message_read(m, "v", "u", &s->active_jobs);
        if (strcmp(name, "Schedule") == 0) {
                int r = sd_bus_message_enter_container(m, 'v', "as");
                if (r < 0)
                        return r;
                r = sd_bus_message_read_strv(m, &s->schedule);
                if (r < 0)
                        return r;
                return sd_bus_message_exit_container(m);
        }
        if (strcmp(name, "Skills") == 0)
                return read_skills(m, s);
        if (strcmp(name, "SkillDeviceMemory") == 0)
                return read_memory(m, s);
        return sd_bus_message_skip(m, "v");        /* newer than us */
}

/* Returns 0 or an exit status. */
static int swarm_status_get(sd_bus *bus, struct swarm_status *ret) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        struct swarm_status s = { .version = "", .node_id = "", .policy = "", .reason = "" };
        int r;

        r = sd_bus_call_method(bus, BUS_SERVICE_NAME, BUS_SERVICE_PATH, "org.freedesktop.DBus.Properties", "GetAll",
                               &error, &s.reply, "s", BUS_SERVICE_INTERFACE);
        if (r < 0) {
                r = bus_error_exit("read swarmd's state", &error, r);
                sd_bus_error_free(&error);
                return r;
        }
        r = sd_bus_message_enter_container(s.reply, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(s.reply, 'e', "sv")) > 0) {
                const char *name;

                r = sd_bus_message_read(s.reply, "s", &name);
                if (r >= 0)
                        r = read_property(s.reply, name, &s);
                if (r >= 0)
                        r = sd_bus_message_exit_container(s.reply);
        }
        if (r < 0) {
                log_error_errno(r, "swarmd sent a malformed answer: %m");
                swarm_status_done(&s);
                return SWARMCTL_EXIT_FAILURE;
        }
        /* Explicit, so not in GetAll; refused unless we may read the ledger. */
        s.has_balance = sd_bus_get_property_trivial(bus, BUS_SERVICE_NAME, BUS_SERVICE_PATH, BUS_SERVICE_INTERFACE,
                                                    "Balance", NULL, 'x', &s.balance) >= 0;
        for (size_t i = 0; i < s.n_skills; i++)
                for (size_t k = 0; k < s.n_memory; k++)
                        if (strcmp(s.skills[i].name, s.memory[k].name) == 0)
                                s.skills[i].device_memory = s.memory[k].bytes;
        if (!s.schedule)
                s.schedule = calloc(1, sizeof(char *));
        if (!s.schedule) {
                log_oom();
                swarm_status_done(&s);
                return SWARMCTL_EXIT_FAILURE;
        }
        *ret = s;
        return 0;
}

/* ---- Printing ---- */

static const char *json_bool(int b) {
        return b ? "true" : "false";
}

/* Highlights only on a terminal. */
static const char *ansi(const char *code) {
        static int tty = -1;

        if (tty < 0)
                tty = isatty(STDOUT_FILENO) > 0 && !getenv("NO_COLOR");
        return tty ? code : "";
}
#define ANSI_GREEN "\033[0;32m"
#define ANSI_RED "\033[0;31m"
#define ANSI_BOLD "\033[1m"
#define ANSI_NORMAL "\033[0m"

/* "5.2 GiB", "310 MiB", "0", "unknown" (no NVML). */
static void format_device_memory(int64_t bytes, char *buf, size_t n) {
        if (bytes < 0)
                snprintf(buf, n, "unknown");
        else if (bytes >= (INT64_C(1) << 30))
                snprintf(buf, n, "%.1f GiB", (double) bytes / (double) (INT64_C(1) << 30));
        else if (bytes >= (INT64_C(1) << 20))
                snprintf(buf, n, "%.0f MiB", (double) bytes / (double) (INT64_C(1) << 20));
        else if (bytes > 0)
                snprintf(buf, n, "%" PRId64 " B", bytes);
        else
                snprintf(buf, n, "0");
}

static void print_status_json(const struct swarm_status *s) {
        printf("{\"node_id\": ");
        json_string(s->node_id);
        printf(", \"version\": ");
        json_string(s->version);
        printf(", \"lending\": %s, \"policy\": ", json_bool(s->lending));
        json_string(s->policy);
        printf(", \"reason\": ");
        json_string(s->reason);
        printf(", \"schedule\": [");
        for (char **w = s->schedule; *w; w++) {
                printf("%s", w == s->schedule ? "" : ", ");
                json_string(*w);
        }
        printf("], \"jobs_paused\": %s, \"active_jobs\": %" PRIu32 ", \"peers\": %" PRIu32 ", \"balance\": ",
               json_bool(s->paused), s->active_jobs, s->peers);
        if (s->has_balance)
                printf("%" PRId64, s->balance);
        else
                printf("null");
        printf(", \"skills\": [");
        for (size_t i = 0; i < s->n_skills; i++) {
                const struct skill_status *k = &s->skills[i];

                printf("%s{\"name\": ", i ? ", " : "");
                json_string(k->name);
                printf(", \"state\": ");
                json_string(k->state);
                printf(", \"version\": ");
                json_string(k->version);
                printf(", \"price\": %" PRIu64 ", \"list_price\": %" PRIu64 ", \"price_unit\": ", k->price,
                       k->list_price);
                json_string(k->price_unit);
                printf(", \"workers\": %" PRIu32 ", \"active_jobs\": %" PRIu32 ", \"jobs_served\": %" PRIu64,
                       k->workers, k->busy, k->jobs_served);
                if (k->device_memory >= 0)
                        printf(", \"device_memory\": %" PRId64 "}", k->device_memory);
                else
                        printf(", \"device_memory\": null}");
        }
        printf("]}\n");
}

static void print_status(const struct swarm_status *s) {
        printf("       Node: %s\n", s->node_id);
        printf("    Version: %s\n", s->version);
        printf("    Lending: %s%s%s%s%s%s\n", ansi(s->lending ? ANSI_GREEN : ANSI_RED), s->lending ? "yes" : "no",
               ansi(ANSI_NORMAL), s->reason[0] ? " (" : "", s->reason, s->reason[0] ? ")" : "");
        printf("     Policy: %s\n", s->policy);
        printf("   Schedule: ");
        if (!s->schedule[0])
                printf("none");
        for (char **w = s->schedule; *w; w++)
                printf("%s%s", w == s->schedule ? "" : ", ", *w);
        printf("\n       Jobs: %" PRIu32 " running%s\n", s->active_jobs,
               s->paused ? " (paused: swarmctl resume continues them)" : "");
        printf("      Peers: %" PRIu32 "\n", s->peers);
        if (s->has_balance) {
                char c[CREDITS_MAX];

                printf("    Balance: %s credits\n", format_credits(s->balance, c));
        }
        if (s->n_skills == 0) {
                printf("     Skills: none\n");
                return;
        }
        printf("\n%s%-16s %-9s %-10s %-34s %-8s %-7s %-7s %s%s\n", ansi(ANSI_BOLD), "SKILL", "STATE", "VERSION",
               "PRICE NOW", "WORKERS", "ACTIVE", "SERVED", "GPU MEMORY", ansi(ANSI_NORMAL));
        for (size_t i = 0; i < s->n_skills; i++) {
                const struct skill_status *k = &s->skills[i];
                char price[PRICE_MAX], memory[32];

                format_price(k->price, k->list_price, k->price_unit, price, sizeof(price));
                format_device_memory(k->device_memory, memory, sizeof(memory));
                printf("%-16s %-9s %-10s %-34s %-8" PRIu32 " %-7" PRIu32 " %-7" PRIu64 " %s\n", k->name, k->state,
                       k->version[0] ? k->version : "-", price, k->workers, k->busy, k->jobs_served, memory);
        }
}

static void print_jobs_json(const struct swarm_status *s) {
        printf("{\"active_jobs\": %" PRIu32 ", \"jobs_paused\": %s, \"skills\": [", s->active_jobs,
               json_bool(s->paused));
        for (size_t i = 0; i < s->n_skills; i++) {
                printf("%s{\"name\": ", i ? ", " : "");
                json_string(s->skills[i].name);
                printf(", \"active_jobs\": %" PRIu32 ", \"workers\": %" PRIu32 ", \"jobs_served\": %" PRIu64 "}",
                       s->skills[i].busy, s->skills[i].workers, s->skills[i].jobs_served);
        }
        printf("]}\n");
}

static void print_jobs(const struct swarm_status *s) {
        printf("%s%-16s %-7s %-8s %s%s\n", ansi(ANSI_BOLD), "SKILL", "ACTIVE", "WORKERS", "SERVED", ansi(ANSI_NORMAL));
        for (size_t i = 0; i < s->n_skills; i++)
                printf("%-16s %-7" PRIu32 " %-8" PRIu32 " %" PRIu64 "\n", s->skills[i].name, s->skills[i].busy,
                       s->skills[i].workers, s->skills[i].jobs_served);
        printf("\n%" PRIu32 " job%s running%s.\n", s->active_jobs, s->active_jobs == 1 ? "" : "s",
               s->paused ? ", paused" : "");
}

/* ---- Options ---- */

/* Parses the options every bus verb shares (and --window for policy);
 * leaves the operands at argv[optind..].  Returns -1 to go on, or an
 * exit status. */
static int parse_options(int argc, char *argv[], const char *usage, bool json_ok, bool window_ok,
                         struct bus_options *o) {
        static const struct option options[] = {
                { "system", no_argument, NULL, 'S' },
                { "user", no_argument, NULL, 'U' },
                { "json", no_argument, NULL, 'j' },
                { "window", required_argument, NULL, 'w' },
                { "schedule", required_argument, NULL, 'w' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        int c;

        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "w:h", options, NULL)) >= 0)
                switch (c) {
                case 'S':
                        o->bus = BUS_CHOICE_SYSTEM;
                        break;
                case 'U':
                        o->bus = BUS_CHOICE_USER;
                        break;
                case 'j':
                        if (!json_ok)
                                goto bad;
                        o->json = true;
                        break;
                case 'w': {
                        char **grown;

                        if (!window_ok)
                                goto bad;
                        grown = realloc(o->windows, (o->n_windows + 2) * sizeof(char *));
                        if (!grown)
                                return log_oom(), SWARMCTL_EXIT_FAILURE;
                        o->windows = grown;
                        o->windows[o->n_windows] = strdup(optarg);
                        o->windows[o->n_windows + 1] = NULL;
                        if (!o->windows[o->n_windows])
                                return log_oom(), SWARMCTL_EXIT_FAILURE;
                        o->n_windows++;
                        break;
                }
                case 'h':
                        printf("%s\n", usage);
                        return 0;
                default:
                bad:
                        log_error("%s: unknown or misplaced option \"%s\".\nUsage: %s", argv[0],
                                  argv[optind - 1] ?: "?", usage);
                        return SWARMCTL_EXIT_BAD_ARGS;
                }
        return -1;
}

static int parse_on_off(const char *s) {
        static const char *const on[] = { "on", "yes", "true", "1" }, *const off[] = { "off", "no", "false", "0" };

        for (size_t i = 0; i < ELEMENTSOF(on); i++) {
                if (strcmp(s, on[i]) == 0)
                        return 1;
                if (strcmp(s, off[i]) == 0)
                        return 0;
        }
        return -EINVAL;
}

/* ---- Verbs ---- */

static int show_state(int argc, char *argv[], bool jobs) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        struct bus_options o = {};
        struct swarm_status s;
        const char *usage = jobs ? "swarmctl jobs [--system|--user] [--json]"
                                 : "swarmctl status [--system|--user] [--json]";
        int r;

        r = parse_options(argc, argv, usage, true, false, &o);
        if (r >= 0)
                return r;
        if (optind != argc) {
                log_error("%s: unexpected argument \"%s\".", argv[0], argv[optind]);
                return SWARMCTL_EXIT_BAD_ARGS;
        }
        r = bus_connect(o.bus, &bus);
        if (r > 0)
                return r;
        r = swarm_status_get(bus, &s);
        if (r > 0)
                return r;
        if (jobs && o.json)
                print_jobs_json(&s);
        else if (jobs)
                print_jobs(&s);
        else if (o.json)
                print_status_json(&s);
        else
                print_status(&s);
        swarm_status_done(&s);
        return 0;
}

int verb_status(int argc, char *argv[]) {
        return show_state(argc, argv, false);
}

int verb_jobs(int argc, char *argv[]) {
        return show_state(argc, argv, true);
}

/* After a change, whoever ran it sees where things stand (colours only on
 * a terminal: ansi() knows). */
static void show_lending(sd_bus *bus) {
        struct swarm_status s;

        if (swarm_status_get(bus, &s) != 0)
                return;
        printf("Lending: %s%s%s (%s)%s\n", ansi(s.lending ? ANSI_GREEN : ANSI_RED), s.lending ? "yes" : "no",
               ansi(ANSI_NORMAL), s.reason[0] ? s.reason : s.policy, s.paused ? "; jobs paused" : "");
        swarm_status_done(&s);
}

int verb_lend(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        struct bus_options o = {};
        const char *usage = "swarmctl lend on|off [--system|--user]";
        int enabled, r;

        r = parse_options(argc, argv, usage, false, false, &o);
        if (r >= 0)
                return r;
        if (argc - optind != 1) {
                log_error("lend: expected on or off.\nUsage: %s", usage);
                return SWARMCTL_EXIT_BAD_ARGS;
        }
        enabled = parse_on_off(argv[optind]);
        if (enabled < 0) {
                log_error("lend: \"%s\" is neither on nor off.", argv[optind]);
                return SWARMCTL_EXIT_BAD_ARGS;
        }
        r = bus_connect(o.bus, &bus);
        if (r > 0)
                return r;
        r = bus_call_change(bus, enabled ? "turn lending on" : "turn lending off", "SetLending", "b", enabled);
        if (r > 0)
                return r;
        show_lending(bus);
        return 0;
}

int verb_policy(int argc, char *argv[]) {
        static const char *const policies[] = { "always", "never", "idle", "schedule" };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        struct bus_options o = {};
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *usage = "swarmctl policy always|never|idle|schedule [--window \"[DAYS ]HH:MM-HH:MM\"]... "
                            "[--system|--user]";
        bool known = false, interactive = isatty(STDIN_FILENO) > 0;
        int r;

        r = parse_options(argc, argv, usage, false, true, &o);
        if (r >= 0)
                goto finish;
        r = SWARMCTL_EXIT_BAD_ARGS;
        if (argc - optind != 1) {
                log_error("policy: expected one policy.\nUsage: %s", usage);
                goto finish;
        }
        for (size_t i = 0; i < ELEMENTSOF(policies); i++)
                known = known || strcmp(argv[optind], policies[i]) == 0;
        if (!known) {
                log_error("policy: unknown policy \"%s\" (always, never, idle, schedule).", argv[optind]);
                goto finish;
        }
        if (strcmp(argv[optind], "schedule") == 0 && o.n_windows == 0) {
                log_error("policy schedule: give the windows to lend in, e.g. --window \"mon-fri 22:00-07:00\" "
                          "(one --window each).");
                goto finish;
        }
        if (strcmp(argv[optind], "schedule") != 0 && o.n_windows > 0) {
                log_error("policy %s: --window is for the schedule policy.", argv[optind]);
                goto finish;
        }

        r = bus_connect(o.bus, &bus);
        if (r > 0)
                goto finish;
        r = sd_bus_message_new_method_call(bus, &m, BUS_SERVICE_NAME, BUS_SERVICE_PATH, BUS_SERVICE_INTERFACE,
                                           "SetPolicy");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", argv[optind]);
        if (r >= 0)
                r = sd_bus_message_append_strv(m, o.windows ?: (char *[]) { NULL });
        if (r >= 0)
                r = sd_bus_message_set_allow_interactive_authorization(m, interactive);
        if (r < 0) {
                log_error_errno(r, "Failed to build the call: %m");
                r = SWARMCTL_EXIT_FAILURE;
                goto finish;
        }
        r = sd_bus_call(bus, m, interactive ? INTERACTIVE_TIMEOUT_USEC : 0, &error, &reply);
        if (r < 0) {
                r = bus_error_exit("set the lending policy", &error, r);
                sd_bus_error_free(&error);
                goto finish;
        }
        show_lending(bus);
        r = 0;
finish:
        bus_options_done(&o);
        return r;
}

static int pause_or_resume(int argc, char *argv[], bool pause) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        struct bus_options o = {};
        int r;

        r = parse_options(argc, argv, pause ? "swarmctl pause [--system|--user]" : "swarmctl resume [--system|--user]",
                          false, false, &o);
        if (r >= 0)
                return r;
        if (optind != argc) {
                log_error("%s: unexpected argument \"%s\".", argv[0], argv[optind]);
                return SWARMCTL_EXIT_BAD_ARGS;
        }
        r = bus_connect(o.bus, &bus);
        if (r > 0)
                return r;
        r = bus_call_change(bus, pause ? "pause jobs" : "resume jobs", pause ? "PauseJobs" : "ResumeJobs", NULL);
        if (r > 0)
                return r;
        show_lending(bus);
        return 0;
}

int verb_pause(int argc, char *argv[]) {
        return pause_or_resume(argc, argv, true);
}

int verb_resume(int argc, char *argv[]) {
        return pause_or_resume(argc, argv, false);
}

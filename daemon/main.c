/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "config.h"
#include "daemon.h"
#include "identity.h"
#include "log.h"
#include "macro.h"

#define DEFAULT_CONFIG SYSCONFDIR "/swarmd.yaml"

enum action {
        ACTION_RUN,
        ACTION_CHECK_CONFIG,
        ACTION_SHOW_IDENTITY,
        ACTION_RELOAD,
};

static void help(void) {
        printf("Usage: swarmd [OPTIONS]\n"
               "       swarmd --check-config [FILE]\n"
               "       swarmd --show-identity [--state-dir DIR]\n"
               "       swarmd --reload PID\n"
               "\n"
               "The SwarmHarness daemon: lends this machine's GPU and CPU to a swarm\n"
               "of peers and submits work to it. Normally started by systemd\n"
               "(swarmd.service); runs in the foreground from a terminal too.\n"
               "\n"
               "  -c, --config FILE      Configuration file (default: %s);\n"
               "                         drop-ins are read from FILE.d/*.yaml\n"
               "  -s, --state-dir DIR    State directory: identity key and databases\n"
               "                         (default: node.state_directory, then\n"
               "                         $STATE_DIRECTORY, then %s)\n"
               "  -l, --log-level LEVEL  err, warning, notice, info or debug; overrides\n"
               "                         log.level in the configuration\n"
               "      --check-config     Validate the configuration (FILE, or --config)\n"
               "                         with its drop-ins, print what is wrong, exit\n"
               "      --show-identity    Print this node's id and exit\n"
               "      --reload PID       Ask the swarmd with this PID to reload its\n"
               "                         configuration (what `systemctl reload` runs)\n"
               "  -h, --help             Show this help\n"
               "      --version          Show the version\n",
               DEFAULT_CONFIG, STATEDIR);
}

static int check_config(const char *path) {
        _cleanup_free_ char *error = NULL;
        struct config c;
        int r;

        r = config_load(&c, path, true, &error);
        config_done(&c);
        if (r < 0) {
                fprintf(stderr, "%s\n", error ?: "invalid configuration");
                return EXIT_CONFIG;
        }
        printf("%s: configuration is valid.\n", path);
        return EXIT_SUCCESS;
}

/* SIGHUP to the running daemon, as ExecReload= runs it: systemd itself (< 253)
 * has no built-in way to signal for a reload, and /bin/kill is not on every
 * system (it comes with procps, which a minimal Debian lacks). */
static int reload_daemon(const char *pid_arg) {
        char *end;
        long pid;

        errno = 0;
        pid = strtol(pid_arg, &end, 10);
        if (errno != 0 || end == pid_arg || *end || pid <= 1 || pid > INT32_MAX) {
                log_error("Invalid --reload '%s': expected the PID of a running swarmd.", pid_arg);
                return EXIT_FAILURE;
        }
        if (kill((pid_t) pid, SIGHUP) < 0)
                return log_error_errno(errno, "Failed to signal swarmd (PID %ld) to reload: %m", pid), EXIT_FAILURE;
        return EXIT_SUCCESS;
}

static int show_identity(const char *config_path, bool config_required, const char *cli_state_dir) {
        _cleanup_(identity_freep) struct identity *id = NULL;
        _cleanup_free_ char *error = NULL, *dir = NULL;
        struct config c;
        int r;

        r = config_load(&c, config_path, config_required, &error);
        if (r < 0) {
                config_done(&c);
                fprintf(stderr, "%s\n", error ?: "invalid configuration");
                return EXIT_CONFIG;
        }
        dir = daemon_resolve_state_dir(cli_state_dir, c.state_directory);
        config_done(&c);
        if (!dir)
                return log_error_errno(ENOMEM, "Out of memory."), EXIT_FAILURE;

        r = identity_load(dir, &id);
        if (r == -ENOENT) {
                log_error("No identity in %s yet: swarmd creates one when it first starts there.", dir);
                return EXIT_FAILURE;
        }
        if (r < 0)
                return EXIT_FAILURE;

        printf("%s\n", id->node_id);
        return EXIT_SUCCESS;
}

int main(int argc, char *argv[]) {
        enum { ARG_CHECK_CONFIG = 0x100, ARG_SHOW_IDENTITY, ARG_RELOAD, ARG_VERSION };
        static const struct option options[] = {
                { "config",        required_argument, NULL, 'c' },
                { "state-dir",     required_argument, NULL, 's' },
                { "log-level",     required_argument, NULL, 'l' },
                { "check-config",  no_argument,       NULL, ARG_CHECK_CONFIG },
                { "show-identity", no_argument,       NULL, ARG_SHOW_IDENTITY },
                { "reload",        required_argument, NULL, ARG_RELOAD },
                { "help",          no_argument,       NULL, 'h' },
                { "version",       no_argument,       NULL, ARG_VERSION },
                {}
        };
        struct daemon_options o = {
                .config_path = DEFAULT_CONFIG,
                .log_level = -1,
        };
        enum action action = ACTION_RUN;
        const char *reload_pid = NULL;
        int c;

        log_setup("swarmd", LOG_TARGET_AUTO);

        while ((c = getopt_long(argc, argv, "c:s:l:h", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        o.config_path = optarg;
                        o.config_required = true;
                        break;
                case 's':
                        o.state_dir = optarg;
                        break;
                case 'l':
                        o.log_level = log_level_from_string(optarg);
                        if (o.log_level < 0) {
                                log_error("Invalid --log-level '%s': expected err, warning, notice, info or debug.", optarg);
                                return EXIT_FAILURE;
                        }
                        log_set_max_level(o.log_level);
                        break;
                case ARG_CHECK_CONFIG:
                        action = ACTION_CHECK_CONFIG;
                        break;
                case ARG_SHOW_IDENTITY:
                        action = ACTION_SHOW_IDENTITY;
                        break;
                case ARG_RELOAD:
                        action = ACTION_RELOAD;
                        reload_pid = optarg;
                        break;
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case ARG_VERSION:
                        printf("swarmd %s\n", PACKAGE_VERSION);
                        return EXIT_SUCCESS;
                default:
                        fprintf(stderr, "Try 'swarmd --help'.\n");
                        return EXIT_FAILURE;
                }

        if (action == ACTION_CHECK_CONFIG && optind == argc - 1) {
                o.config_path = argv[optind++];
                o.config_required = true;
        }
        if (optind < argc) {
                log_error("Unexpected argument '%s'. Try 'swarmd --help'.", argv[optind]);
                return EXIT_FAILURE;
        }

        switch (action) {
        case ACTION_CHECK_CONFIG:
                return check_config(o.config_path);
        case ACTION_SHOW_IDENTITY:
                return show_identity(o.config_path, o.config_required, o.state_dir);
        case ACTION_RELOAD:
                return reload_daemon(reload_pid);
        case ACTION_RUN:
        default:
                return daemon_run(&o);
        }
}

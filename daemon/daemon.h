/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* swarmd's process lifecycle: configuration and identity at start, the one
 * sd-event loop, the sd_notify protocol (READY/STATUS/WATCHDOG/RELOADING/
 * STOPPING), SIGHUP reload and clean shutdown on SIGTERM/SIGINT. */

#include <stdbool.h>

/* Exit status for an invalid configuration (sysexits' EX_CONFIG); the unit
 * lists it in RestartPreventExitStatus= so that systemd does not restart a
 * daemon that would only fail the same way again. */
#define EXIT_CONFIG 78

struct daemon_options {
        const char *config_path;        /* never NULL */
        bool config_required;           /* false: a missing file means defaults */
        const char *state_dir;          /* --state-dir, or NULL */
        int log_level;                  /* --log-level, or -1 to follow the config */
};

/* Resolves the state directory: --state-dir, then node.state_directory when
 * set, then $STATE_DIRECTORY (its first entry), then STATEDIR.  Returns a
 * malloc'd path or NULL on allocation failure. */
char *daemon_resolve_state_dir(const char *cli_state_dir, const char *config_state_dir);

/* Runs the daemon until SIGTERM/SIGINT; returns the process exit status. */
int daemon_run(const struct daemon_options *options);

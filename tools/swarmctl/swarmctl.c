/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* swarmctl: the command-line face of SwarmHarness.  One verb per module;
 * this file only dispatches. */

#include <stdio.h>
#include <string.h>

#include "build-config.h"
#include "log.h"
#include "peers-cmd.h"
#include "skill-cmd.h"

static int help(void) {
        printf("Usage: swarmctl COMMAND …\n\n"
               "Commands:\n"
               "  skill inspect PATH.so|NAME   describe a skill plugin: ABI, callbacks, advert\n"
               "  skill run PATH.so|NAME …     run one job through a real worker, verify it, time it\n"
               "  peers [--json]               the swarm's members as the local swarmd sees them\n"
               "\n"
               "Options:\n"
               "  -h, --help       this text\n"
               "      --version    print the version\n"
               "\nSee swarmctl(1).\n");
        return 0;
}

int main(int argc, char *argv[]) {
        log_setup("swarmctl", LOG_TARGET_CONSOLE);
        /* The pool's progress notes are for the daemon's log, not for a terminal. */
        log_set_max_level(LOG_NOTICE);

        if (argc < 2) {
                help();
                return 2;
        }
        if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)
                return help();
        if (strcmp(argv[1], "--version") == 0) {
                printf("swarmctl %s\n", PACKAGE_VERSION);
                return 0;
        }
        if (strcmp(argv[1], "skill") == 0)
                return verb_skill(argc - 1, argv + 1);
        if (strcmp(argv[1], "peers") == 0)
                return verb_peers(argc - 1, argv + 1);

        log_error("Unknown command \"%s\"; see swarmctl --help.", argv[1]);
        return 2;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* swarmctl: the command-line face of SwarmHarness.  One verb per module;
 * this file only dispatches. */

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "build-config.h"
#include "bus-cmd.h"
#include "ledger-cmd.h"
#include "credits-cmd.h"
#include "log.h"
#include "peers-cmd.h"
#include "skill-cmd.h"
#include "submit-cmd.h"

static int help(void) {
        printf("Usage: swarmctl COMMAND …\n\n"
               "Commands:\n"
               "  skill inspect PATH.so|NAME   describe a skill plugin: ABI, callbacks, advert\n"
               "  skill run PATH.so|NAME …     run one job through a real worker, verify it, time it\n"
               "  submit --skill NAME --input NAME=SPEC… | --batch FILE\n"
               "                               run jobs in the swarm: routed, verified, rerouted\n"
               "  peers [--json]               the swarm's members as the local swarmd sees them,\n"
               "                               with prices and how this node rates them\n"
               "  balance [--json]             this node's credits: balance, received, paid, owed\n"
               "  ledger [PEER] [--limit N] [--json]\n"
               "                               credits per peer, then the most recent jobs\n"
               "  credits [--json]             this node's credits as its book of transfers counts them\n"
               "  pay NODEID MICROCREDITS      pay a node with a signed transfer (an issuer mints)\n"
               "  status [--json]              this node: lending, policy, skills, peers, jobs (D-Bus)\n"
               "  jobs [--json]                jobs running on this node, per skill (D-Bus)\n"
               "  lend on|off                  start or stop lending this machine to the swarm\n"
               "  policy always|never|idle|schedule [--window \"[DAYS ]HH:MM-HH:MM\"]...\n"
               "                               choose when this machine lends\n"
               "  pause | resume               freeze or thaw every running job\n"
               "\n"
               "Options:\n"
               "  -h, --help       this text\n"
               "      --version    print the version\n"
               "\nThe D-Bus verbs take --system or --user (default: the bus swarmd is on);\n"
               "peers, balance, ledger, credits and pay take --socket PATH (swarmd's control socket).\n"
               "balance, ledger and credits are for root and the swarmd group only; pay for\n"
               "root and swarmd's own user.\n"
               "Exit status: 0 ok, 1 failure, 2 bad arguments, 3 swarmd not running,\n"
               "4 not authorised.\n"
               "\nSee swarmctl(1).\n");
        return 0;
}

int main(int argc, char *argv[]) {
        log_setup("swarmctl", LOG_TARGET_CONSOLE);
        /* A command's every error is for the person who ran it. */
        log_set_ratelimit(0, 0);
        /* A daemon that goes away mid-call is an error to report, not a
         * reason to die silently. */
        (void) signal(SIGPIPE, SIG_IGN);
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
        if (strcmp(argv[1], "submit") == 0)
                return verb_submit(argc - 1, argv + 1);
        if (strcmp(argv[1], "peers") == 0)
                return verb_peers(argc - 1, argv + 1);
        if (strcmp(argv[1], "balance") == 0)
                return verb_balance(argc - 1, argv + 1);
        if (strcmp(argv[1], "ledger") == 0)
                return verb_ledger(argc - 1, argv + 1);
        if (strcmp(argv[1], "credits") == 0)
                return verb_credits(argc - 1, argv + 1);
        if (strcmp(argv[1], "pay") == 0)
                return verb_pay(argc - 1, argv + 1);
        if (strcmp(argv[1], "status") == 0)
                return verb_status(argc - 1, argv + 1);
        if (strcmp(argv[1], "jobs") == 0)
                return verb_jobs(argc - 1, argv + 1);
        if (strcmp(argv[1], "lend") == 0)
                return verb_lend(argc - 1, argv + 1);
        if (strcmp(argv[1], "policy") == 0)
                return verb_policy(argc - 1, argv + 1);
        if (strcmp(argv[1], "pause") == 0)
                return verb_pause(argc - 1, argv + 1);
        if (strcmp(argv[1], "resume") == 0)
                return verb_resume(argc - 1, argv + 1);

        log_error("Unknown command \"%s\"; see swarmctl --help.", argv[1]);
        return 2;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* swarmctl balance|ledger: this node's credit ledger, over swarmd's control
 * socket.  Private: swarmd answers root, its own user and members of its
 * group only (exit 4 for others).  argv[0] is the verb.
 *
 *   swarmctl balance [--socket PATH] [--json]
 *   swarmctl ledger [PEER] [--limit N] [--socket PATH] [--json]
 *
 * Exit status as in common.h (3: swarmd is not running). */
int verb_balance(int argc, char *argv[]);
int verb_ledger(int argc, char *argv[]);

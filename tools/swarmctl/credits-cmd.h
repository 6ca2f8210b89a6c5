/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* swarmctl credits|pay: this node's credits as its book of transfers counts
 * them, and paying with a signed transfer (issue 22), over swarmd's control
 * socket.  credits is for root, swarmd's user and its group; pay for root
 * and swarmd's user only (exit 4 for others).  argv[0] is the verb.
 *
 *   swarmctl credits [--socket PATH] [--json]
 *   swarmctl pay NODEID MICROCREDITS [--socket PATH] [--json]
 *
 * Exit status as in common.h (3: swarmd is not running). */
int verb_credits(int argc, char *argv[]);
int verb_pay(int argc, char *argv[]);

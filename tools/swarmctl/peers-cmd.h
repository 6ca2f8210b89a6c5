/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* swarmctl peers [--socket PATH] [--json]: argv[0] is "peers".  Exit 3
 * when swarmd is not running. */
int verb_peers(int argc, char *argv[]);

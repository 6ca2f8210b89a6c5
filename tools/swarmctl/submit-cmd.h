/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* swarmctl submit …: argv[0] is "submit". */
int verb_submit(int argc, char *argv[]);

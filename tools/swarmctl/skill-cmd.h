/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* swarmctl skill …: argv[0] is "skill". */
int verb_skill(int argc, char *argv[]);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The swarmctl verbs that talk to swarmd over D-Bus
 * (org.swarmharness.Swarm1): status, jobs, lend, policy, pause, resume.
 * argv[0] is the verb.  Each takes --system/--user (default: the system bus
 * when swarmd is there, else the session bus) and, where it prints state,
 * --json.
 *
 * Exit status: 0 done; 1 other failure; 2 bad arguments (ours or refused
 * by swarmd as invalid); 3 swarmd is not running (not on the bus, or no
 * bus); 4 not authorised (common.h). */

#include "common.h"

int verb_status(int argc, char *argv[]);
int verb_jobs(int argc, char *argv[]);
int verb_lend(int argc, char *argv[]);
int verb_policy(int argc, char *argv[]);
int verb_pause(int argc, char *argv[]);
int verb_resume(int argc, char *argv[]);

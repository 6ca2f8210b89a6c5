/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What swarmctl's verbs share: exit statuses, JSON output, and one call
 * over swarmd's control socket (peers, balance, ledger). */

#include <stddef.h>
#include <stdint.h>

#include "control.pb-c.h"

/* Exit status: 0 done; 1 other failure; 2 bad arguments (ours or refused
 * by swarmd as invalid); 3 swarmd is not running; 4 not authorised. */
#define SWARMCTL_EXIT_FAILURE 1
#define SWARMCTL_EXIT_BAD_ARGS 2
#define SWARMCTL_EXIT_NOT_RUNNING 3
#define SWARMCTL_EXIT_NOT_AUTHORIZED 4

#define RUNTIME_SOCKET_DIR "/run/swarmharness"

/* Micro-credits as credits, exactly: "-12.000345", into buf of
 * CREDITS_MAX bytes.  Returns buf. */
#define CREDITS_MAX 24
const char *format_credits(int64_t micro, char *buf);
const char *format_ucredits(uint64_t micro, char *buf);

/* The price now as every verb shows it: "775 µcredits/GFLOP (list 1000)"
 * (the list price only where it differs), "per job (the skill's)" for a
 * skill without a list price, whose price() prices each job. */
#define PRICE_MAX 96
const char *format_price(uint64_t now, uint64_t list, const char *unit, char *buf, size_t size);

/* Prints s as a JSON string, quoted and escaped; NULL as "". */
void json_string(const char *s);

/* Where swarmd's local socket name ("control.sock", "jobs.sock") is, when
 * no --socket was given: $env (SWARM_CONTROL_SOCKET, SWARM_JOBS_SOCKET)
 * when set; else the first that exists of $SWARM_STATE_DIR/NAME,
 * /run/swarmharness/NAME (the service) and STATEDIR/NAME (swarmd started by
 * hand with the default state directory); else the service's.  Returns a
 * static string. */
const char *local_socket_default(const char *name, const char *env);
const char *control_socket_default(void);

/* After a failed connect to path: says that swarmd is not running, where
 * swarmctl looked and how to point it elsewhere.  Returns exit status 3. */
int log_not_running(const char *path, const char *name, const char *env);

/* Sends req to swarmd at path and returns 0 with *ret (free with
 * swarm__control_reply__free_unpacked()), or an exit status after saying
 * what went wrong: 3 when nothing listens, 4 when swarmd refused with
 * -EACCES, 1 for every other failure or refusal. */
int control_call(const char *path, const Swarm__ControlRequest *req, Swarm__ControlReply **ret);

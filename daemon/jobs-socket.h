/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The local job submission socket, "jobs.sock" next to control.sock: how
 * swarmctl submit (and anything else on this machine) hands jobs to the
 * requester (requester.h) and gets back verified results.
 *
 * AF_UNIX SOCK_SEQPACKET, one worker-proto message per datagram (tensors
 * and large byte strings travel as sealed memfds, never copied through the
 * socket).  A connection may have many jobs in flight, each named by an id
 * the client chooses:
 *
 *   client → swarmd  WMSG_SUBMIT        job_id, text[NAME] = skill,
 *                                       number = max price (micro-credits),
 *                                       values[0] = inputs,
 *                                       values[1] = options (below)
 *   swarmd → client  WMSG_SUBMIT_REPLY  the same job_id, status (0 or a
 *                                       negative errno), text[ERROR],
 *                                       values[0] = verified outputs,
 *                                       values[1] = metrics (below)
 *
 * Exactly one reply per accepted SUBMIT, in completion order.  Replies to
 * a malformed message carry job_id 0 when it could not be read.  Closing
 * the connection cancels the client's jobs that are still running.
 *
 * The socket is mode 0660: the user swarmd runs as and the members of its
 * group (swarmd under systemd) may submit jobs — and spend this node's
 * credits — as with docker's socket.  Authorising submissions per call
 * through D-Bus and polkit is still to come.
 *
 * swarmd never blocks on a client: a client that does not read its
 * replies has them queued up to a bound, then is disconnected (and its
 * jobs cancelled) with a log line. */

#include <systemd/sd-event.h>

/* values[1] of SUBMIT: integers. */
#define JOBS_OPTION_DEADLINE_MS "deadline-ms"   /* relative; absent or 0: JOBS_DEFAULT_DEADLINE_MS */
#define JOBS_OPTION_HEDGE "hedge"               /* nonzero: hedged requests */

/* values[1] of SUBMIT_REPLY. */
#define JOBS_METRIC_PROVIDER "provider"         /* string: node id, or "local" */
#define JOBS_METRIC_PRICE "price"               /* integers from here on */
#define JOBS_METRIC_ATTEMPTS "attempts"
#define JOBS_METRIC_REROUTED "rerouted"
#define JOBS_METRIC_REJECTED "rejected"
#define JOBS_METRIC_LATENCY_US "latency-us"

#define JOBS_DEFAULT_DEADLINE_MS (60 * 1000)
#define JOBS_MAX_DEADLINE_MS (24 * 3600 * 1000)

/* Jobs one connection may have in flight; more are refused with -EBUSY. */
#define JOBS_PER_CLIENT_MAX 1024u

struct jobs_socket;
struct requester;

/* Listens on path (a stale socket there is replaced), mode 0660.
 * requester may be NULL: every job is then refused with a reason. */
int jobs_socket_new(sd_event *event, const char *path, struct requester *requester, struct jobs_socket **ret);

/* Closes the socket and every connection.  Free it after the requester:
 * requester_free() calls back for every job still running. */
struct jobs_socket *jobs_socket_free(struct jobs_socket *j);

/* Where the jobs socket lives: the directory of control_socket_path()
 * ($RUNTIME_DIRECTORY under systemd, else the state directory); malloc'd. */
char *jobs_socket_path(const char *state_dir);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The protocol of the local job submission socket, "jobs.sock" next to
 * control.sock: how swarmctl submit (and anything else on this machine)
 * hands jobs to swarmd's requester and gets back verified results.  The
 * server is daemon/api/jobs-socket.c, the client jobs-client.c.
 *
 * AF_UNIX SOCK_SEQPACKET, one message per datagram in the framing of the
 * worker protocol (worker-proto.h: tensors and large byte strings travel as
 * sealed memfds, never copied through the socket).  A connection may have many jobs in flight, each named by an id
 * the client chooses:
 *
 *   client → swarmd  JOBS_MSG_SUBMIT    job_id, text[JOBS_TEXT_SKILL],
 *                                       number = max price (micro-credits),
 *                                       values[0] = inputs,
 *                                       values[1] = options (below)
 *   swarmd → client  JOBS_MSG_SUBMIT_REPLY  the same job_id, status (0 or a
 *                                       negative errno), text[JOBS_TEXT_ERROR],
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

#include "worker-proto.h"

/* The message types and texts of this protocol, numbered as the framing
 * numbers them: the worker protocol's own messages are not part of it. */
#define JOBS_MSG_SUBMIT WMSG_SUBMIT
#define JOBS_MSG_SUBMIT_REPLY WMSG_SUBMIT_REPLY
/* swarmd → client, for a job submitted with JOBS_OPTION_STREAM, before its
 * reply: job_id, number = seq (0, 1, …), status = 1 when what was shown of
 * the job so far is void (the stream restarted on another provider),
 * values[0] = one value (bytes): the piece, absent for a bare restart. */
#define JOBS_MSG_CHUNK WMSG_CHUNK
/* client → swarmd: job_id; the job is cancelled (not paid for) and gets
 * its one reply, status -ECANCELED.  An id not in flight is ignored. */
#define JOBS_MSG_CANCEL WMSG_CANCEL
#define JOBS_TEXT_ERROR WMSG_TEXT_ERROR
#define JOBS_TEXT_SKILL WMSG_TEXT_NAME

/* values[1] of SUBMIT: integers. */
#define JOBS_OPTION_DEADLINE_MS "deadline-ms"   /* relative; absent or 0: JOBS_DEFAULT_DEADLINE_MS */
#define JOBS_OPTION_HEDGE "hedge"               /* nonzero: hedged requests */
#define JOBS_OPTION_STREAM "stream"             /* nonzero: send JOBS_MSG_CHUNK as output is made */
/* string, 1-128 bytes: exactly-once delivery.  The verified result is kept
 * for this user (by uid) under the key, durably with its payment, for 24 h;
 * a SUBMIT with a key done before is answered with that result (metric
 * JOBS_METRIC_KEPT) and runs and pays nothing; one with a key running now
 * (another connection of the same user) is refused with -EALREADY. */
#define JOBS_OPTION_KEY "key"
#define JOBS_KEY_MAX 128

/* values[1] of SUBMIT_REPLY. */
#define JOBS_METRIC_PROVIDER "provider"         /* string: node id, or "local" */
#define JOBS_METRIC_PRICE "price"               /* integers from here on */
#define JOBS_METRIC_ATTEMPTS "attempts"
#define JOBS_METRIC_REROUTED "rerouted"
#define JOBS_METRIC_REJECTED "rejected"
#define JOBS_METRIC_LATENCY_US "latency-us"
#define JOBS_METRIC_KEPT "kept"                 /* 1: a kept result, from an earlier submission of its key */
/* 1: accepted without a check, its skill being verified by sampling
 * (verification.sampled_skills) and this result not drawn. */
#define JOBS_METRIC_UNCHECKED "unchecked"

#define JOBS_DEFAULT_DEADLINE_MS (60 * 1000)
#define JOBS_MAX_DEADLINE_MS (24 * 3600 * 1000)

/* Jobs one connection may have in flight; more are refused with -EBUSY. */
#define JOBS_PER_CLIENT_MAX 1024u

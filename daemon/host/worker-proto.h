/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The messages between swarmd (or swarmctl) and a swarm-worker, over an
 * AF_UNIX SOCK_SEQPACKET socketpair: one datagram per message, tensors and
 * large byte strings passed as sealed memfds (SCM_RIGHTS) so their bytes are
 * never copied through the socket.
 *
 *   host → worker              worker → host
 *   INIT (config)              HELLO (abi, name, version, description, advert)
 *   PRICE (inputs)             PRICE_REPLY (price)
 *   EXECUTE (deadline, inputs) EXECUTE_REPLY (exec µs, outputs, proof)
 *   VERIFY (inputs, outputs, proof)  VERIFY_REPLY
 *   ADVERTISE                  ADVERTISE_REPLY (advert)
 *                              CHUNK (a piece of output, during EXECUTE)
 *
 * The same codec carries the local job submissions (jobs-socket.h), from a
 * client such as swarmctl to swarmd:
 *
 *   client → swarmd            swarmd → client
 *   SUBMIT (skill, max price,  SUBMIT_REPLY (status, error, verified
 *     inputs, options)           outputs, metrics)
 *
 * Every reply carries the callback's status (0 or a negative errno; a
 * number below -ERRNO_MAX a plugin returned is received as -EPROTO) and
 * its error text.  A worker handles one request at a time; cancellation goes
 * through a shared page (see worker-control), not through the socket, so a
 * busy worker sees it without reading.
 *
 * Both sides distrust what they receive: every length is checked against
 * what is left of the datagram, every file descriptor index against what
 * arrived, and every memfd against its size and seals. */

#include <stdint.h>

#include "swarm-host.h"

#define WMSG_MAGIC UINT32_C(0x314b5753) /* "SWK1" */

enum wmsg_type {
        WMSG_INIT = 1,
        WMSG_HELLO,
        WMSG_PRICE,
        WMSG_PRICE_REPLY,
        WMSG_EXECUTE,
        WMSG_EXECUTE_REPLY,
        WMSG_VERIFY,
        WMSG_VERIFY_REPLY,
        WMSG_ADVERTISE,
        WMSG_ADVERTISE_REPLY,
        WMSG_SUBMIT,
        WMSG_SUBMIT_REPLY,
        WMSG_CHUNK,
        WMSG_CANCEL,                    /* the jobs socket only: a client cancels one job */
        _WMSG_TYPE_MAX,
};

enum {
        WMSG_TEXT_ERROR,
        WMSG_TEXT_NAME,
        WMSG_TEXT_VERSION,
        WMSG_TEXT_DESCRIPTION,
        WMSG_TEXTS,
};

#define WMSG_VALUE_SETS 3

/* Limits on what a peer may make us allocate. */
#define WMSG_INLINE_MAX (60u * 1024u)           /* larger payloads travel in a memfd */
#define WMSG_PAYLOAD_MAX (16u * 1024u * 1024u)
#define WMSG_TEXT_MAX (64u * 1024u)
#define WMSG_VALUES_MAX 128u
#define WMSG_FDS_MAX 200u                       /* below the kernel's SCM_MAX_FD */
#define WMSG_INLINE_BYTES_MAX 4096u             /* larger byte strings go in memfds */

struct wmsg {
        enum wmsg_type type;
        uint64_t job_id;
        int32_t status;
        /* PRICE_REPLY: the price; EXECUTE: the CLOCK_MONOTONIC deadline in µs
         * (0 = none); EXECUTE_REPLY, VERIFY_REPLY: time spent in the
         * callbacks in µs; HELLO: the ABI version; SUBMIT: the max price in
         * micro-credits. */
        uint64_t number;
        char *text[WMSG_TEXTS];
        /* EXECUTE, PRICE: [0] inputs.  EXECUTE_REPLY: [0] outputs, [1] proof.
         * VERIFY: inputs, outputs, proof.  INIT: [0] config.  HELLO,
         * ADVERTISE_REPLY: [0] advert.  SUBMIT: [0] inputs, [1] options.
         * SUBMIT_REPLY: [0] outputs, [1] metrics.  CHUNK: [0] one value, the
         * chunk swarm_job_emit() made (bytes under its name). */
        struct swarm_values *values[WMSG_VALUE_SETS];
};

const char *wmsg_type_to_string(enum wmsg_type t);

/* Frees the texts and value sets and zeroes m. */
void wmsg_done(struct wmsg *m);

/* Sends m on fd (blocking or not: a SEQPACKET send is all or nothing).
 * Tensors and byte strings already in shared memory are passed as they are,
 * others are copied into one memfd each.  -E2BIG when m exceeds the limits
 * above. */
int wmsg_send(int fd, const struct wmsg *m);

/* Receives one message into m (which the caller wmsg_done()s).  -EAGAIN
 * when none is waiting on a non-blocking fd, -ECONNRESET at end of stream,
 * -EBADMSG for a malformed one, with what was wrong in *reason (static
 * text). */
int wmsg_recv(int fd, struct wmsg *m, const char **reason);

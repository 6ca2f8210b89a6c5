/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The client side of the control socket (see control.h), for swarmctl and
 * the tests. */

#include "control.pb-c.h"

#define CONTROL_REPLY_MAX (64u * 1024u * 1024u)

/* One request, one reply.  -ENOTCONN when no swarmd listens at path,
 * -EBADMSG for a malformed reply, other -errno for I/O errors.  Free the
 * reply with swarm__control_reply__free_unpacked(reply, NULL). */
int control_client_call(const char *path, const Swarm__ControlRequest *req, Swarm__ControlReply **ret);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The local job submission socket's server: the protocol is
 * client/jobs-proto.h; jobs go to the requester (requester.h). */

#include <systemd/sd-event.h>

#include "jobs-proto.h"

struct jobs_socket;
struct requester;

/* Listens on path (a stale socket there is replaced), mode 0660.
 * requester may be NULL: every job is then refused with a reason. */
int jobs_socket_new(sd_event *event, const char *path, struct requester *requester, struct jobs_socket **ret);

/* Closes the socket and every connection.  Free it after the requester:
 * requester_stop() calls back for every job still running. */
struct jobs_socket *jobs_socket_free(struct jobs_socket *j);

/* Where the jobs socket lives: the directory of control_socket_path()
 * ($RUNTIME_DIRECTORY under systemd, else the state directory); malloc'd. */
char *jobs_socket_path(const char *state_dir);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Where swarmd puts its local sockets: $RUNTIME_DIRECTORY (its first entry)
 * when systemd sets it, else the state directory. */

#define CONTROL_SOCKET_NAME "control.sock"
#define JOBS_SOCKET_NAME "jobs.sock"

/* DIR/name by the rule above; malloc'd, NULL without memory. */
char *socket_path(const char *state_dir, const char *name);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The local control socket: views of the running daemon for swarmctl
 * (proto/control.proto), and paying with a transfer, one request and one
 * reply per connection, served from the event loop without ever blocking
 * it. */

#include <systemd/sd-event.h>

struct accounts;
struct control;
struct network;

/* Listens on path (a stale socket there is replaced), mode 0666: the
 * peers view is what any peer of the swarm can see anyway.  The balance
 * and the ledger are private and served only to root, the daemon's own
 * user and members of its group (the caller's SO_PEERCRED uid and gid, and
 * its groups in the group database); others get -EACCES. */
int control_new(sd_event *event, const char *path, struct network *network, struct control **ret);
struct control *control_free(struct control *c);

/* The ledger and reputation behind balance, ledger and peers views; NULL
 * until set (those views then say the ledger is not open).  Borrowed. */
void control_set_accounts(struct control *c, struct accounts *accounts);
/* The book of transfers behind the credits view and pay (spending: root
 * and the daemon's own user only).  Borrowed; NULL until set. */
struct credits;
void control_set_credits(struct control *c, struct credits *credits);
/* Its checks of each peer's results show in peers (requester_get_checks()). */
struct requester;
void control_set_requester(struct control *c, struct requester *requester);

/* Where the control socket lives: $RUNTIME_DIRECTORY (systemd) else the
 * state directory; malloc'd. */
char *control_socket_path(const char *state_dir);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Who may change swarmd's state over D-Bus.  Reading is open, but for the
 * ledger (authz_may_read_ledger() below); a method that changes state asks
 * here first:
 *   - root (effective uid 0) always may;
 *   - otherwise polkit decides (action org.swarmharness.manage-lending),
 *     asked asynchronously over the bus the call came on, so the event
 *     loop never waits for a person typing a password;
 *   - where polkit is not on the bus (or swarmd was built without it),
 *     members of the configured admin group may, and nobody else.
 *
 * The caller's identity comes from the bus daemon (GetConnectionCredentials
 * of the sender's unique name), never from the message body. */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

#define AUTHZ_ACTION_MANAGE_LENDING "org.swarmharness.manage-lending"

struct authz;

/* result: 1 allowed, 0 refused (why says why, for the error message sent
 * back), or a negative errno when the question could not be answered.  m
 * is the method call that asked; it stays valid during the call. */
typedef void (*authz_done_fn)(sd_bus_message *m, int result, const char *why, void *userdata);

/* admin_group may be NULL or "" (no group).  use_polkit false never asks
 * polkit (built without it, or tests). */
int authz_new(sd_bus *bus, const char *admin_group, bool use_polkit, struct authz **ret);
/* Answers the questions still pending with -ECANCELED first. */
struct authz *authz_free(struct authz *a);

/* Decides whether the sender of m may do action; done is called exactly
 * once, either before this returns (root, no polkit, bad credentials) or
 * later from the event loop (polkit).  Returns 0, or a negative errno when
 * the question could not even be asked (done is then not called). */
int authz_check(struct authz *a, sd_bus_message *m, const char *action, authz_done_fn done, void *userdata);

/* The rule without polkit, pure for tests: root, or a member of admin_gid
 * (as effective or supplementary group) when have_admin_gid. */
bool authz_local_allows(uid_t euid, gid_t egid, const gid_t *gids, size_t n_gids, bool have_admin_gid,
                        gid_t admin_gid);

/* Who may read the ledger (the balance, payments and job history, over the
 * control socket or D-Bus): root, the daemon's own user, and members of the
 * daemon's group, as the caller's effective or a supplementary group or in
 * the group database (a user just added to the group need not log in
 * again).  uid and gid are the caller's effective ids; gids may be NULL.
 * May ask NSS for uid's groups, only for callers that the ids alone do not
 * admit. */
bool authz_may_read_ledger(uid_t uid, gid_t gid, const gid_t *gids, size_t n_gids);

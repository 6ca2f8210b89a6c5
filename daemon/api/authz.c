/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "authz.h"
#include "log.h"
#include "macro.h"

#define POLKIT_SERVICE "org.freedesktop.PolicyKit1"
#define POLKIT_PATH "/org/freedesktop/PolicyKit1/Authority"
#define POLKIT_INTERFACE "org.freedesktop.PolicyKit1.Authority"
#define POLKIT_ALLOW_USER_INTERACTION 1u

/* A person may take a while to type a password; without interaction,
 * polkit answers at once. */
#define POLKIT_TIMEOUT_USEC (25ULL * 1000 * 1000)
#define POLKIT_INTERACTIVE_TIMEOUT_USEC (120ULL * 1000 * 1000)

struct authz_query {
        struct authz *authz;
        struct authz_query *prev, *next;
        sd_bus_message *message;        /* the method call being authorised (ref) */
        sd_bus_slot *slot;              /* the pending CheckAuthorization */
        char *action;
        uid_t euid;
        gid_t egid;
        gid_t *gids;
        size_t n_gids;
        authz_done_fn done;
        void *userdata;
};

struct authz {
        sd_bus *bus;
        char *admin_group;              /* NULL: none */
        bool use_polkit;
        struct authz_query *queries;
};

bool authz_local_allows(uid_t euid, gid_t egid, const gid_t *gids, size_t n_gids, bool have_admin_gid,
                        gid_t admin_gid) {
        if (euid == 0)
                return true;
        if (!have_admin_gid)
                return false;
        if (egid == admin_gid)
                return true;
        for (size_t i = 0; i < n_gids; i++)
                if (gids[i] == admin_gid)
                        return true;
        return false;
}

/* The rule without polkit.  The group database counts too: a user added
 * to the group after logging in has no such process gid yet, and the bus
 * daemon may not report supplementary groups at all. */
static bool authz_local_decide(const struct authz *a, uid_t euid, gid_t egid, const gid_t *gids, size_t n_gids) {
        const struct group *g;
        const struct passwd *pw;

        if (euid == 0)
                return true;
        if (!a->admin_group)
                return false;
        g = getgrnam(a->admin_group);
        if (!g) {
                log_warning("dbus.admin_group \"%s\" does not exist; only root may change state. "
                            "Create the group or fix swarmd.yaml.", a->admin_group);
                return false;
        }
        if (authz_local_allows(euid, egid, gids, n_gids, true, g->gr_gid))
                return true;

        pw = getpwuid(euid);
        if (!pw)
                return false;
        if (pw->pw_gid == g->gr_gid)
                return true;
        for (char **m = g->gr_mem; m && *m; m++)
                if (strcmp(*m, pw->pw_name) == 0)
                        return true;
        return false;
}

/* Whether uid's group list in the group database holds gid. */
static bool user_in_group(uid_t uid, gid_t gid) {
        struct passwd pw, *found = NULL;
        _cleanup_free_ char *buf = NULL;
        _cleanup_free_ gid_t *groups = NULL;
        long size = sysconf(_SC_GETPW_R_SIZE_MAX);
        int n = 32;

        if (size <= 0)
                size = 16384;
        buf = malloc((size_t) size);
        if (!buf || getpwuid_r(uid, &pw, buf, (size_t) size, &found) != 0 || !found)
                return false;
        for (;;) {
                gid_t *grown = realloc(groups, (size_t) n * sizeof(gid_t));
                int k = n;

                if (!grown)
                        return false;
                groups = grown;
                if (getgrouplist(pw.pw_name, pw.pw_gid, groups, &k) >= 0) {
                        n = k;
                        break;
                }
                if (k <= n || k > 65536)
                        return false;
                n = k;
        }
        for (int i = 0; i < n; i++)
                if (groups[i] == gid)
                        return true;
        return false;
}

bool authz_may_read_ledger(uid_t uid, gid_t gid, const gid_t *gids, size_t n_gids) {
        gid_t group = getegid();

        if (uid == 0 || uid == geteuid() || gid == group)
                return true;
        for (size_t i = 0; i < n_gids; i++)
                if (gids[i] == group)
                        return true;
        return user_in_group(uid, group);
}

static const char *authz_local_refusal(const struct authz *a, char *buf, size_t size) {
        if (a->admin_group)
                snprintf(buf, size, "Only root and members of group '%s' may change swarmd's state%s.",
                         a->admin_group, a->use_polkit ? " (polkit is not running)" : "");
        else
                snprintf(buf, size, "Only root may change swarmd's state%s.",
                         a->use_polkit ? " (polkit is not running)" : "");
        return buf;
}

static void authz_query_free(struct authz_query *q) {
        if (!q)
                return;
        if (q->authz) {
                if (q->prev)
                        q->prev->next = q->next;
                else
                        q->authz->queries = q->next;
                if (q->next)
                        q->next->prev = q->prev;
        }
        sd_bus_slot_unref(q->slot);
        sd_bus_message_unref(q->message);
        free(q->action);
        free(q->gids);
        free(q);
}

/* Calls done and frees the query: done may reply to the message, which
 * the query still holds. */
static void authz_query_finish(struct authz_query *q, int result, const char *why) {
        q->done(q->message, result, why, q->userdata);
        authz_query_free(q);
}

static int on_polkit_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        struct authz_query *q = userdata;
        char buf[256];
        int authorized, challenge, r;

        if (sd_bus_message_is_method_error(reply, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(reply);

                if (sd_bus_error_has_name(e, SD_BUS_ERROR_SERVICE_UNKNOWN) ||
                    sd_bus_error_has_name(e, SD_BUS_ERROR_NAME_HAS_NO_OWNER)) {
                        log_debug("polkit is not on the bus; deciding without it.");
                        if (authz_local_decide(q->authz, q->euid, q->egid, q->gids, q->n_gids))
                                authz_query_finish(q, 1, NULL);
                        else
                                authz_query_finish(q, 0, authz_local_refusal(q->authz, buf, sizeof(buf)));
                        return 0;
                }
                log_warning("polkit could not check %s for uid %u: %s", q->action, (unsigned) q->euid,
                            e && e->message ? e->message : "unknown error");
                snprintf(buf, sizeof(buf), "polkit could not decide: %s",
                         e && e->message ? e->message : "unknown error");
                authz_query_finish(q, 0, buf);
                return 0;
        }

        r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
        if (r >= 0)
                r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
        if (r < 0) {
                log_warning_errno(r, "polkit sent a malformed answer: %m");
                authz_query_finish(q, 0, "polkit sent a malformed answer.");
                return 0;
        }

        if (authorized)
                authz_query_finish(q, 1, NULL);
        else if (challenge)
                authz_query_finish(q, 0, "Authentication is required; run the command again where you "
                                          "can answer a password prompt (swarmctl on a terminal).");
        else {
                snprintf(buf, sizeof(buf), "polkit refused action %s.", q->action);
                authz_query_finish(q, 0, buf);
        }
        return 0;
}

static int authz_ask_polkit(struct authz_query *q, const char *sender) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        sd_bus *bus = sd_bus_message_get_bus(q->message);
        bool interactive = sd_bus_message_get_allow_interactive_authorization(q->message) > 0;
        int r;

        r = sd_bus_message_new_method_call(bus, &call, POLKIT_SERVICE, POLKIT_PATH, POLKIT_INTERFACE,
                                           "CheckAuthorization");
        if (r < 0)
                return r;
        /* Subject: the caller's unique name, so that polkit looks the
         * process up itself, race-free. */
        r = sd_bus_message_append(call, "(sa{sv})sa{ss}us", "system-bus-name", 1, "name", "s", sender,
                                  q->action, 0, interactive ? POLKIT_ALLOW_USER_INTERACTION : 0u, "");
        if (r < 0)
                return r;
        return sd_bus_call_async(bus, &q->slot, call, on_polkit_reply, q,
                                 interactive ? POLKIT_INTERACTIVE_TIMEOUT_USEC : POLKIT_TIMEOUT_USEC);
}

int authz_new(sd_bus *bus, const char *admin_group, bool use_polkit, struct authz **ret) {
        struct authz *a = calloc(1, sizeof(*a));

        if (!a)
                return -ENOMEM;
        a->bus = sd_bus_ref(bus);
        a->use_polkit = use_polkit;
        if (admin_group && admin_group[0]) {
                a->admin_group = strdup(admin_group);
                if (!a->admin_group) {
                        authz_free(a);
                        return -ENOMEM;
                }
                if (!getgrnam(admin_group))
                        log_warning("dbus.admin_group \"%s\" does not exist; without polkit only root "
                                    "may change state.", admin_group);
        }
        *ret = a;
        return 0;
}

struct authz *authz_free(struct authz *a) {
        if (!a)
                return NULL;
        while (a->queries)
                authz_query_finish(a->queries, -ECANCELED, "swarmd is shutting down.");
        sd_bus_unref(a->bus);
        free(a->admin_group);
        free(a);
        return NULL;
}

int authz_check(struct authz *a, sd_bus_message *m, const char *action, authz_done_fn done, void *userdata) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        const gid_t *gids = NULL;
        struct authz_query *q;
        const char *sender;
        char buf[256];
        uid_t euid;
        gid_t egid = (gid_t) -1;
        int n_gids = 0, r;

        sender = sd_bus_message_get_sender(m);
        if (!sender) {
                done(m, 0, "The caller has no bus name.", userdata);
                return 0;
        }

        r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID | SD_BUS_CREDS_EGID | SD_BUS_CREDS_SUPPLEMENTARY_GIDS |
                                      SD_BUS_CREDS_AUGMENT, &creds);
        if (r >= 0)
                r = sd_bus_creds_get_euid(creds, &euid);
        if (r < 0) {
                log_warning_errno(r, "Cannot tell who %s is; refusing its call: %m", sender);
                done(m, 0, "Cannot tell who the caller is.", userdata);
                return 0;
        }
        (void) sd_bus_creds_get_egid(creds, &egid);
        n_gids = sd_bus_creds_get_supplementary_gids(creds, &gids);
        if (n_gids < 0) {
                gids = NULL;
                n_gids = 0;
        }

        if (euid == 0) {
                done(m, 1, NULL, userdata);
                return 0;
        }
        if (!a->use_polkit) {
                if (authz_local_decide(a, euid, egid, gids, (size_t) n_gids))
                        done(m, 1, NULL, userdata);
                else
                        done(m, 0, authz_local_refusal(a, buf, sizeof(buf)), userdata);
                return 0;
        }

        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->message = sd_bus_message_ref(m);
        q->action = strdup(action);
        q->euid = euid;
        q->egid = egid;
        q->n_gids = (size_t) n_gids;
        q->gids = n_gids > 0 ? malloc(sizeof(gid_t) * (size_t) n_gids) : NULL;
        q->done = done;
        q->userdata = userdata;
        if (!q->action || (n_gids > 0 && !q->gids)) {
                authz_query_free(q);
                return -ENOMEM;
        }
        if (n_gids > 0)
                memcpy(q->gids, gids, sizeof(gid_t) * (size_t) n_gids);

        r = authz_ask_polkit(q, sender);
        if (r < 0) {
                authz_query_free(q);
                return log_warning_errno(r, "Failed to ask polkit about %s: %m", action);
        }
        q->authz = a;
        q->next = a->queries;
        if (a->queries)
                a->queries->prev = q;
        a->queries = q;
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "idle-backends.h"
#include "log.h"
#include "macro.h"

/* Polls between two reads of IdleHint besides following its signals:
 * logind does not signal idleness it derives from TTY access times. */
#define LOGIND_REFRESH_POLLS 10

#define LOGIND_SERVICE "org.freedesktop.login1"
#define LOGIND_PATH "/org/freedesktop/login1"
#define LOGIND_MANAGER "org.freedesktop.login1.Manager"

#define LOGIND_ABSENT "no logind"

struct idle_logind {
        struct idle_source source;      /* first: the interface */
        sd_bus *bus;
        sd_bus_slot *idle_match, *owner_match, *idle_call;
        unsigned polls;
        bool told_absent;
};

static void logind_absent(struct idle_logind *l, const sd_bus_error *error, bool notify) {
        if (!l->told_absent) {
                log_notice("logind is not reachable (%s): the idle policy sees no active session.",
                           error && error->message ? error->message : "no bus");
                l->told_absent = true;
        }
        if (notify)
                idle_source_set(&l->source, IDLE_SOURCE_IDLE, LOGIND_ABSENT);
        else {
                l->source.state = IDLE_SOURCE_IDLE;
                l->source.absent = LOGIND_ABSENT;
        }
}

static void logind_says(struct idle_logind *l, bool idle) {
        l->told_absent = false;
        idle_source_set(&l->source, idle ? IDLE_SOURCE_IDLE : IDLE_SOURCE_BUSY, NULL);
}

static int on_idle_hint_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        struct idle_logind *l = userdata;
        const sd_bus_error *e;
        int idle, r;

        l->idle_call = sd_bus_slot_unref(l->idle_call);

        e = sd_bus_message_get_error(m);
        if (e) {
                logind_absent(l, e, true);
                return 0;
        }
        r = sd_bus_message_read(m, "v", "b", &idle);
        if (r < 0) {
                log_warning_errno(r, "logind's IdleHint is not a boolean: %m");
                return 0;
        }
        logind_says(l, idle);
        return 0;
}

static int logind_refresh(struct idle_logind *l) {
        int r;

        if (!l->bus || l->idle_call)
                return 0;
        r = sd_bus_call_method_async(l->bus, &l->idle_call, LOGIND_SERVICE, LOGIND_PATH,
                                     "org.freedesktop.DBus.Properties", "Get", on_idle_hint_reply, l, "ss",
                                     LOGIND_MANAGER, "IdleHint");
        if (r < 0)
                return log_warning_errno(r, "Failed to ask logind for IdleHint: %m");
        return 0;
}

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        struct idle_logind *l = userdata;
        const char *interface;
        int r, idle = -1;

        r = sd_bus_message_read(m, "s", &interface);
        if (r < 0 || strcmp(interface, LOGIND_MANAGER) != 0)
                return 0;
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return 0;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *name;

                if (sd_bus_message_read(m, "s", &name) < 0)
                        return 0;
                if (strcmp(name, "IdleHint") == 0) {
                        int b;

                        if (sd_bus_message_read(m, "v", "b", &b) < 0)
                                return 0;
                        idle = b;
                } else if (sd_bus_message_skip(m, "v") < 0)
                        return 0;
                if (sd_bus_message_exit_container(m) < 0)
                        return 0;
        }
        if (sd_bus_message_exit_container(m) < 0)
                return 0;
        if (idle < 0) {
                /* Invalidated rather than sent: ask. */
                const char *name;

                if (sd_bus_message_enter_container(m, 'a', "s") < 0)
                        return 0;
                while (sd_bus_message_read(m, "s", &name) > 0)
                        if (strcmp(name, "IdleHint") == 0)
                                return logind_refresh(l);
                return 0;
        }
        logind_says(l, idle);
        return 0;
}

static int on_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        struct idle_logind *l = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0)
                return 0;
        if (strcmp(name, LOGIND_SERVICE) != 0)
                return 0;
        if (new_owner[0]) {
                log_debug("logind appeared on the bus; reading IdleHint.");
                return logind_refresh(l);
        }
        logind_absent(l, &SD_BUS_ERROR_MAKE_CONST(SD_BUS_ERROR_NAME_HAS_NO_OWNER, "logind left the bus"), true);
        return 0;
}

static int logind_watch(struct idle_logind *l) {
        int r;

        r = sd_bus_match_signal_async(l->bus, &l->idle_match, LOGIND_SERVICE, LOGIND_PATH,
                                      "org.freedesktop.DBus.Properties", "PropertiesChanged", on_properties_changed,
                                      NULL, l);
        if (r < 0)
                return log_warning_errno(r, "Failed to watch logind's IdleHint: %m");
        r = sd_bus_add_match_async(l->bus, &l->owner_match,
                                   "type='signal',sender='org.freedesktop.DBus',"
                                   "path='/org/freedesktop/DBus',interface='org.freedesktop.DBus',"
                                   "member='NameOwnerChanged',arg0='" LOGIND_SERVICE "'",
                                   on_owner_changed, NULL, l);
        if (r < 0)
                return log_warning_errno(r, "Failed to watch for logind: %m");
        return logind_refresh(l);
}

static void logind_poll(struct idle_source *s) {
        struct idle_logind *l = (struct idle_logind *) s;

        if (++l->polls % LOGIND_REFRESH_POLLS == 0)
                (void) logind_refresh(l);
}

static void logind_free(struct idle_source *s) {
        struct idle_logind *l = (struct idle_logind *) s;

        sd_bus_slot_unref(l->idle_match);
        sd_bus_slot_unref(l->owner_match);
        sd_bus_slot_unref(l->idle_call);
        sd_bus_unref(l->bus);
        free(l);
}

static const struct idle_source_ops logind_ops = {
        .name = "logind",
        .poll = logind_poll,
        .free = logind_free,
};

int idle_logind_new(sd_bus *bus, idle_source_changed_fn changed, void *userdata, struct idle_source **ret) {
        struct idle_logind *l = calloc(1, sizeof(*l));

        if (!l)
                return -ENOMEM;
        l->source = (struct idle_source) { .ops = &logind_ops, .state = IDLE_SOURCE_WAITING, .changed = changed,
                                           .userdata = userdata };
        if (!bus)
                logind_absent(l, NULL, false);
        else {
                l->bus = sd_bus_ref(bus);
                if (logind_watch(l) < 0)
                        logind_absent(l, NULL, false);
        }
        *ret = &l->source;
        return 0;
}

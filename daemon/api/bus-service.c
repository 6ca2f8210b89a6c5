/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "accounts.h"
#include "demand.h"
#include "pricing.h"
#include "authz.h"
#include "build-config.h"
#include "bus-service.h"
#include "identity.h"
#include "lending.h"
#include "log.h"
#include "macro.h"
#include "membership.h"
#include "network.h"
#include "skills.h"

/* What clients last saw of the properties that change, to emit
 * PropertiesChanged only for those that did. */
struct bus_snapshot {
        bool lending;
        int policy;
        char *reason;
        char *schedule;                 /* windows joined with '\n' */
        bool paused;
        char *skills;                   /* every field of Skills, serialised */
        char *memory;                   /* SkillDeviceMemory, serialised */
        unsigned peers;
        unsigned active_jobs;
};

struct bus_service {
        sd_event *event;
        sd_bus *bus;
        bool system;
        bool auto_chose_system;         /* dbus.bus: auto, and it took the system bus */
        char node_id[NODE_ID_LEN + 1];
        struct authz *authz;
        struct lending *lending;
        struct skills *skills;
        struct network *network;
        struct accounts *accounts;      /* borrowed; NULL while the ledger is not open */
        struct demand *demand;          /* borrowed; NULL: prices are list prices */
        sd_bus_slot *object_slot;
        sd_event_source *changes;       /* deferred check, armed by bus_service_changed() */
        struct bus_snapshot last;
        bool started;
};

/* A state change waiting for its authorisation. */
enum bus_op {
        BUS_OP_SET_LENDING,
        BUS_OP_SET_POLICY,
        BUS_OP_PAUSE_JOBS,
        BUS_OP_RESUME_JOBS,
};

struct bus_call {
        struct bus_service *service;
        enum bus_op op;
        bool enabled;                   /* SetLending */
        int policy;                     /* SetPolicy */
        char **schedule;                /* SetPolicy; NULL or empty keeps */
};

static void bus_call_free(struct bus_call *c) {
        if (!c)
                return;
        strv_free(c->schedule);
        free(c);
}

/* ---- Reading the state ---- */

static const char *skill_state(struct skill_pool *p) {
        if (skill_pool_released(p))
                return "released";
        if (skill_pool_workers_alive(p) > 0)
                return "ready";
        if (skill_pool_warming(p))
                return "warming";
        if (skill_pool_last_error(p))
                return "failed";
        return "starting";
}

struct skill_row {
        const char *name, *state, *version, *price_unit;
        uint64_t price, list_price, jobs_served;
        unsigned workers, busy;
};

/* price is the price now, the one this node gossips and charges: the list
 * price times the demand multiplier (market/demand.h). */
static void skill_row_get(const struct bus_service *s, size_t i, struct skill_row *ret) {
        struct skills *skills = s->skills;
        struct skill_pool *p = skills_pool(skills, i);
        const struct skill_info *info = skill_pool_info(p);
        int64_t price = 0;
        const char *unit = "";

        if (info && info->advert) {
                (void) swarm_values_get_int(info->advert, "price", &price);
                (void) swarm_values_get_string(info->advert, "price-unit", &unit);
        }
        *ret = (struct skill_row) {
                .name = skills_name(skills, i),
                .state = skill_state(p),
                .version = info && info->version ? info->version : "",
                .price = pricing_apply(price > 0 ? (uint64_t) price : 0,
                                       s->demand ? demand_multiplier(s->demand, skills_name(skills, i)) : 1.0),
                .list_price = price > 0 ? (uint64_t) price : 0,
                .price_unit = unit && unit[0] ? unit : "job",
                .workers = skill_pool_workers_alive(p),
                .busy = skill_pool_workers_busy(p),
                .jobs_served = skill_pool_jobs_done(p),
        };
}

static unsigned bus_service_peers(const struct bus_service *s) {
        struct membership *m;
        unsigned n = 0;

        if (!s->network)
                return 0;
        m = network_membership(s->network);
        for (size_t i = 0; i < membership_count(m); i++) {
                struct member_info mi;

                if (membership_get(m, i, &mi) >= 0 && !mi.self && mi.state == MEMBER_ALIVE)
                        n++;
        }
        return n;
}

static unsigned bus_service_active_jobs(const struct bus_service *s) {
        unsigned n = 0;

        for (size_t i = 0; s->skills && i < skills_count(s->skills); i++)
                n += skill_pool_workers_busy(skills_pool(s->skills, i));
        return n;
}

static char *strv_join_lines(char *const *l) {
        size_t size = 1;
        char *out, *p;

        for (char *const *i = l; i && *i; i++)
                size += strlen(*i) + 1;
        out = p = malloc(size);
        if (!out)
                return NULL;
        *p = '\0';
        for (char *const *i = l; i && *i; i++)
                p = stpcpy(stpcpy(p, *i), "\n");
        return out;
}

/* A skill's device memory in bytes, -1 when unknown (no NVML). */
static int64_t skill_device_memory(const struct bus_service *s, size_t i) {
        uint64_t bytes;

        if (!s->lending || lending_skill_device_memory(s->lending, skills_pool(s->skills, i), &bytes) < 0 ||
            bytes > INT64_MAX)
                return -1;
        return (int64_t) bytes;
}

static char *memory_serialise(const struct bus_service *s) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                return NULL;
        for (size_t i = 0; s->skills && i < skills_count(s->skills); i++)
                fprintf(f, "%s\t%lld\n", skills_name(s->skills, i), (long long) skill_device_memory(s, i));
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

static char *skills_serialise(const struct bus_service *s) {
        struct skills *skills = s->skills;
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                return NULL;
        for (size_t i = 0; skills && i < skills_count(skills); i++) {
                struct skill_row row;

                skill_row_get(s, i, &row);
                fprintf(f, "%s\t%s\t%s\t%llu\t%llu\t%s\t%u\t%u\t%llu\n", row.name, row.state, row.version,
                        (unsigned long long) row.price, (unsigned long long) row.list_price, row.price_unit,
                        row.workers, row.busy,
                        (unsigned long long) row.jobs_served);
        }
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

static void bus_snapshot_done(struct bus_snapshot *b) {
        free(b->reason);
        free(b->schedule);
        free(b->skills);
        free(b->memory);
        *b = (struct bus_snapshot) {};
}

static int bus_snapshot_take(const struct bus_service *s, struct bus_snapshot *ret) {
        struct bus_snapshot b = {
                .lending = s->lending ? lending_is_lending(s->lending) : false,
                .policy = s->lending ? (int) lending_get_policy(s->lending) : -1,
                .paused = s->lending ? lending_jobs_paused(s->lending) : false,
                .peers = bus_service_peers(s),
                .active_jobs = bus_service_active_jobs(s),
        };

        b.reason = strdup(s->lending ? lending_reason(s->lending) ?: "" : "");
        b.schedule = strv_join_lines(s->lending ? lending_get_schedule(s->lending) : NULL);
        b.skills = skills_serialise(s);
        b.memory = memory_serialise(s);
        if (!b.reason || !b.schedule || !b.skills || !b.memory) {
                bus_snapshot_done(&b);
                return -ENOMEM;
        }
        *ret = b;
        return 0;
}

/* ---- Properties ---- */

static int property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", PACKAGE_VERSION);
}

static int property_get_node_id(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        struct bus_service *s = userdata;

        return sd_bus_message_append(reply, "s", s->node_id);
}

static int property_get_lending(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        struct bus_service *s = userdata;

        return sd_bus_message_append(reply, "b", s->lending ? lending_is_lending(s->lending) : false);
}

static const char *policy_name(int policy) {
        if (policy < LENDING_POLICY_ALWAYS || policy > LENDING_POLICY_SCHEDULE)
                return "never";
        return lending_policy_names[policy];
}

static int property_get_policy(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        struct bus_service *s = userdata;

        return sd_bus_message_append(reply, "s",
                                     policy_name(s->lending ? (int) lending_get_policy(s->lending) : -1));
}

static int property_get_reason(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        struct bus_service *s = userdata;
        const char *reason = s->lending ? lending_reason(s->lending) : "lending is not available";

        return sd_bus_message_append(reply, "s", reason ?: "");
}

static int property_get_schedule(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        struct bus_service *s = userdata;
        char *const *l = s->lending ? lending_get_schedule(s->lending) : NULL;

        return sd_bus_message_append_strv(reply, (char **) (l ?: (char *const[]) { NULL }));
}

static int property_get_paused(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        struct bus_service *s = userdata;

        return sd_bus_message_append(reply, "b", s->lending ? lending_jobs_paused(s->lending) : false);
}

static int property_get_skills(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        struct bus_service *s = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(sssttsuut)");
        if (r < 0)
                return r;
        for (size_t i = 0; s->skills && i < skills_count(s->skills); i++) {
                struct skill_row row;

                skill_row_get(s, i, &row);
                r = sd_bus_message_append(reply, "(sssttsuut)", row.name, row.state, row.version, row.price,
                                          row.list_price, row.price_unit, row.workers, row.busy, row.jobs_served);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static int property_get_skill_device_memory(sd_bus *bus, const char *path, const char *interface,
                                           const char *property, sd_bus_message *reply, void *userdata,
                                           sd_bus_error *error) {
        struct bus_service *s = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(sx)");
        if (r < 0)
                return r;
        for (size_t i = 0; s->skills && i < skills_count(s->skills); i++) {
                r = sd_bus_message_append(reply, "(sx)", skills_name(s->skills, i), skill_device_memory(s, i));
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static int property_get_peers(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "u", bus_service_peers(userdata));
}

static int property_get_active_jobs(sd_bus *bus, const char *path, const char *interface, const char *property,
                                    sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "u", bus_service_active_jobs(userdata));
}

/* Private like the ledger itself: the caller's credentials come from the
 * bus daemon.  The vtable marks it explicit, so that GetAll, which every
 * user may call, leaves it out instead of failing. */
static int property_get_balance(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        struct bus_service *s = userdata;
        sd_bus_message *call = sd_bus_get_current_message(bus);
        struct ledger_balance b;
        const gid_t *gids = NULL;
        uid_t euid;
        gid_t egid = (gid_t) -1;
        int n_gids, r;

        r = call ? sd_bus_query_sender_creds(call, SD_BUS_CREDS_EUID | SD_BUS_CREDS_EGID |
                                                           SD_BUS_CREDS_SUPPLEMENTARY_GIDS | SD_BUS_CREDS_AUGMENT,
                                             &creds)
                 : -ENXIO;
        if (r >= 0)
                r = sd_bus_creds_get_euid(creds, &euid);
        if (r < 0)
                return sd_bus_error_set(error, BUS_ERROR_NOT_AUTHORIZED, "Cannot tell who the caller is.");
        (void) sd_bus_creds_get_egid(creds, &egid);
        n_gids = sd_bus_creds_get_supplementary_gids(creds, &gids);
        if (!authz_may_read_ledger(euid, egid, n_gids > 0 ? gids : NULL, n_gids > 0 ? (size_t) n_gids : 0))
                return sd_bus_error_set(error, BUS_ERROR_NOT_AUTHORIZED,
                                        "The balance is readable by root and the swarmd group only.");
        if (!s->accounts)
                return sd_bus_error_set(error, BUS_ERROR_FAILED, "The ledger is not open.");
        r = ledger_get_balance(accounts_ledger(s->accounts), &b);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Cannot read the ledger: %m");
        return sd_bus_message_append(reply, "x", b.balance);
}

/* ---- Methods ---- */

static const char *bus_op_name(enum bus_op op) {
        switch (op) {
        case BUS_OP_SET_LENDING: return "SetLending";
        case BUS_OP_SET_POLICY: return "SetPolicy";
        case BUS_OP_PAUSE_JOBS: return "PauseJobs";
        case BUS_OP_RESUME_JOBS: return "ResumeJobs";
        }
        return "?";
}

/* Does what an authorised call asked and replies. */
static int bus_call_apply(struct bus_call *c, sd_bus_message *m) {
        struct lending *l = c->service->lending;
        char error[256] = "";
        int r;

        switch (c->op) {
        case BUS_OP_SET_LENDING:
                r = lending_set_policy(l, c->enabled ? LENDING_POLICY_ALWAYS : LENDING_POLICY_NEVER);
                if (r >= 0)
                        log_info("Lending turned %s over D-Bus by %s.", c->enabled ? "on" : "off",
                                 sd_bus_message_get_sender(m));
                break;
        case BUS_OP_SET_POLICY:
                r = 0;
                if (c->schedule && c->schedule[0]) {
                        r = lending_set_schedule(l, c->schedule, error, sizeof(error));
                        if (r == -EINVAL)
                                return sd_bus_reply_method_errorf(m, BUS_ERROR_INVALID_ARGUMENT, "%s",
                                                                  error[0] ? error : "invalid schedule");
                }
                if (r >= 0)
                        r = lending_set_policy(l, c->policy);
                if (r >= 0)
                        log_info("Lending policy set to %s over D-Bus by %s.", policy_name(c->policy),
                                 sd_bus_message_get_sender(m));
                break;
        case BUS_OP_PAUSE_JOBS:
                r = lending_pause_jobs(l);
                if (r >= 0)
                        log_info("Jobs paused over D-Bus by %s.", sd_bus_message_get_sender(m));
                break;
        case BUS_OP_RESUME_JOBS:
                r = lending_resume_jobs(l);
                if (r >= 0)
                        log_info("Jobs resumed over D-Bus by %s.", sd_bus_message_get_sender(m));
                break;
        default:
                r = -EINVAL;
        }
        if (r < 0) {
                log_warning_errno(r, "%s over D-Bus failed: %m", bus_op_name(c->op));
                return sd_bus_reply_method_errorf(m, BUS_ERROR_FAILED, "%s failed: %s", bus_op_name(c->op),
                                                  strerror(-r));
        }
        bus_service_check_changes(c->service);
        return sd_bus_reply_method_return(m, NULL);
}

static void on_authorized(sd_bus_message *m, int result, const char *why, void *userdata) {
        struct bus_call *c = userdata;
        int r;

        if (result > 0)
                r = bus_call_apply(c, m);
        else if (result == 0) {
                log_info("Refused %s from %s: %s", bus_op_name(c->op), sd_bus_message_get_sender(m),
                         why ?: "not authorised");
                r = sd_bus_reply_method_errorf(m, BUS_ERROR_NOT_AUTHORIZED, "%s",
                                               why ?: "Not authorised to change swarmd's state.");
        } else
                r = sd_bus_reply_method_errorf(m, BUS_ERROR_FAILED, "Could not check authorisation: %s",
                                               why ?: strerror(-result));
        if (r < 0)
                log_debug_errno(r, "Failed to reply to %s: %m", bus_op_name(c->op));
        bus_call_free(c);
}

/* Arguments are checked before authorisation, so that a mistake is
 * reported at once, before anyone is asked for a password. */
static int bus_call_start(struct bus_service *s, sd_bus_message *m, struct bus_call *c, sd_bus_error *error) {
        int r;

        if (!s->lending) {
                bus_call_free(c);
                return sd_bus_error_set(error, BUS_ERROR_FAILED, "The lending switch is not available.");
        }
        c->service = s;
        r = authz_check(s->authz, m, AUTHZ_ACTION_MANAGE_LENDING, on_authorized, c);
        if (r < 0) {
                bus_call_free(c);
                return sd_bus_error_set_errnof(error, r, "Cannot check authorisation: %m");
        }
        return 1;       /* replied from on_authorized() */
}

static struct bus_call *bus_call_new(enum bus_op op) {
        struct bus_call *c = calloc(1, sizeof(*c));

        if (c)
                c->op = op;
        return c;
}

static int method_set_lending(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        struct bus_call *c;
        int enabled, r;

        r = sd_bus_message_read(m, "b", &enabled);
        if (r < 0)
                return r;
        c = bus_call_new(BUS_OP_SET_LENDING);
        if (!c)
                return -ENOMEM;
        c->enabled = enabled;
        return bus_call_start(userdata, m, c, error);
}

static int method_set_policy(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        struct bus_service *s = userdata;
        _cleanup_strv_free_ char **schedule = NULL;
        struct bus_call *c;
        const char *name;
        int policy = -1, r;

        r = sd_bus_message_read(m, "s", &name);
        if (r < 0)
                return r;
        r = sd_bus_message_read_strv(m, &schedule);
        if (r < 0)
                return r;

        for (int i = 0; lending_policy_names[i]; i++)
                if (strcmp(name, lending_policy_names[i]) == 0)
                        policy = i;
        if (policy < 0)
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "unknown policy '%s' (always, never, idle, schedule)", name);

        for (char **w = schedule; w && *w; w++) {
                struct lending_window window;
                char why[200] = "";

                if (lending_window_parse(*w, &window, why, sizeof(why)) < 0)
                        return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                                 "bad schedule window '%s': %s", *w,
                                                 why[0] ? why : "expected \"[DAYS ]HH:MM-HH:MM\"");
        }
        if (policy == LENDING_POLICY_SCHEDULE && (!schedule || !schedule[0]) && s->lending) {
                char *const *current = lending_get_schedule(s->lending);

                if (!current || !current[0])
                        return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                                 "policy 'schedule' needs at least one window, "
                                                 "e.g. \"mon-fri 22:00-07:00\"");
        }

        c = bus_call_new(BUS_OP_SET_POLICY);
        if (!c)
                return -ENOMEM;
        c->policy = policy;
        c->schedule = TAKE_PTR(schedule);
        return bus_call_start(s, m, c, error);
}

static int method_pause_jobs(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        struct bus_call *c = bus_call_new(BUS_OP_PAUSE_JOBS);

        if (!c)
                return -ENOMEM;
        return bus_call_start(userdata, m, c, error);
}

static int method_resume_jobs(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        struct bus_call *c = bus_call_new(BUS_OP_RESUME_JOBS);

        if (!c)
                return -ENOMEM;
        return bus_call_start(userdata, m, c, error);
}

/* Keep in step with dbus/org.swarmharness.Swarm1.xml (test-dbus compares
 * the two).  Methods are UNPRIVILEGED for sd-bus: authz.c decides. */
static const sd_bus_vtable swarm_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("NodeId", "s", property_get_node_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Lending", "b", property_get_lending, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LendingPolicy", "s", property_get_policy, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LendingReason", "s", property_get_reason, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Schedule", "as", property_get_schedule, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("JobsPaused", "b", property_get_paused, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Skills", "a(sssttsuut)", property_get_skills, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("SkillDeviceMemory", "a(sx)", property_get_skill_device_memory, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Peers", "u", property_get_peers, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ActiveJobs", "u", property_get_active_jobs, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        /* No change signal: the balance moves with every job, and a signal
         * would tell every listener on the bus. */
        SD_BUS_PROPERTY("Balance", "x", property_get_balance, 0, SD_BUS_VTABLE_PROPERTY_EXPLICIT),
        SD_BUS_METHOD_WITH_ARGS("SetLending", SD_BUS_ARGS("b", enabled), SD_BUS_NO_RESULT, method_set_lending,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SetPolicy", SD_BUS_ARGS("s", policy, "as", schedule), SD_BUS_NO_RESULT,
                                method_set_policy, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("PauseJobs", "", "", method_pause_jobs, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("ResumeJobs", "", "", method_resume_jobs, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("JobStarted", SD_BUS_ARGS("s", job, "s", skill, "s", requester), 0),
        SD_BUS_SIGNAL_WITH_ARGS("JobFinished",
                                SD_BUS_ARGS("s", job, "s", skill, "s", requester, "s", result, "t",
                                            duration_usec, "t", price),
                                0),
        SD_BUS_VTABLE_END
};

/* ---- Changes ---- */

void bus_service_check_changes(struct bus_service *s) {
        struct bus_snapshot now;
        const char *changed[10];
        size_t n = 0;
        int r;

        if (!s || !s->started)
                return;
        if (bus_snapshot_take(s, &now) < 0) {
                log_oom();
                return;
        }

        if (now.lending != s->last.lending)
                changed[n++] = "Lending";
        if (now.policy != s->last.policy)
                changed[n++] = "LendingPolicy";
        if (strcmp(now.reason, s->last.reason) != 0)
                changed[n++] = "LendingReason";
        if (strcmp(now.schedule, s->last.schedule) != 0)
                changed[n++] = "Schedule";
        if (now.paused != s->last.paused)
                changed[n++] = "JobsPaused";
        if (strcmp(now.skills, s->last.skills) != 0)
                changed[n++] = "Skills";
        if (strcmp(now.memory, s->last.memory) != 0)
                changed[n++] = "SkillDeviceMemory";
        if (now.peers != s->last.peers)
                changed[n++] = "Peers";
        if (now.active_jobs != s->last.active_jobs)
                changed[n++] = "ActiveJobs";
        changed[n] = NULL;

        bus_snapshot_done(&s->last);
        s->last = now;
        if (n == 0)
                return;
        r = sd_bus_emit_properties_changed_strv(s->bus, BUS_SERVICE_PATH, BUS_SERVICE_INTERFACE,
                                                (char **) changed);
        if (r < 0)
                log_debug_errno(r, "Failed to emit PropertiesChanged: %m");
}

static int on_changes(sd_event_source *source, void *userdata) {
        bus_service_check_changes(userdata);
        return 0;
}

void bus_service_changed(struct bus_service *s) {
        if (s && s->changes)
                (void) sd_event_source_set_enabled(s->changes, SD_EVENT_ONESHOT);
}

int bus_service_emit_job_started(struct bus_service *s, const char *job, const char *skill,
                                 const char *requester) {
        if (!s || !s->started)
                return 0;
        return sd_bus_emit_signal(s->bus, BUS_SERVICE_PATH, BUS_SERVICE_INTERFACE, "JobStarted", "sss", job,
                                  skill, requester);
}

int bus_service_emit_job_finished(struct bus_service *s, const char *job, const char *skill,
                                  const char *requester, const char *result, uint64_t duration_usec,
                                  uint64_t price) {
        if (!s || !s->started)
                return 0;
        return sd_bus_emit_signal(s->bus, BUS_SERVICE_PATH, BUS_SERVICE_INTERFACE, "JobFinished", "sssstt",
                                  job, skill, requester, result, duration_usec, price);
}

/* ---- Setup ---- */

static bool session_bus_present(void) {
        const char *e = getenv("DBUS_SESSION_BUS_ADDRESS"), *runtime = getenv("XDG_RUNTIME_DIR");
        _cleanup_free_ char *path = NULL;

        if (e && e[0])
                return true;
        if (!runtime || !runtime[0] || asprintf(&path, "%s/bus", runtime) < 0)
                return false;
        return access(path, F_OK) == 0;
}

/* dbus.bus: auto takes the system bus as root even where a session bus is
 * there (a root terminal in a desktop): when that fails, say how to choose. */
static const char *auto_hint(const struct bus_service *s) {
        return s && s->auto_chose_system && session_bus_present() ?
                " (dbus.bus: auto chose the system bus because swarmd runs as root; a session bus is "
                "also there: set dbus.bus: session to use it)" : "";
}

static int on_name_acquired(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        struct bus_service *s = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (e) {
                log_warning("Cannot own %s on the %s bus: %s. The desktop switch and swarmctl status, lend "
                            "and policy cannot reach this daemon; check that the bus policy "
                            "(org.swarmharness.Swarm1.conf) is installed and no other swarmd runs.%s",
                            BUS_SERVICE_NAME, s->system ? "system" : "session", e->message ?: e->name,
                            auto_hint(s));
                return 0;
        }
        log_info("Serving %s on the %s bus.", BUS_SERVICE_NAME, s->system ? "system" : "session");
        return 0;
}

int bus_service_new(sd_event *event, const struct config *config, const struct identity *identity,
                    struct bus_service **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        struct bus_service *s;
        bool system;
        int r;

        *ret = NULL;
        switch (config->dbus_bus) {
        case DBUS_BUS_NONE:
                log_info("D-Bus is off (dbus.bus: none): no desktop switch, no swarmctl status/lend.");
                return 0;
        case DBUS_BUS_SYSTEM:
                system = true;
                break;
        case DBUS_BUS_SESSION:
                system = false;
                break;
        default:
                /* A system service has no session bus, whatever its user. */
                system = geteuid() == 0 || !session_bus_present();
        }

        r = system ? sd_bus_open_system(&bus) : sd_bus_open_user(&bus);
        if (r >= 0)
                r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0) {
                bool hint = config->dbus_bus != DBUS_BUS_SYSTEM && config->dbus_bus != DBUS_BUS_SESSION &&
                            system && session_bus_present();

                log_warning_errno(r, "Cannot connect to the %s bus (%m); running without the D-Bus API "
                                  "(desktop switch, swarmctl status/lend/policy).%s",
                                  system ? "system" : "session",
                                  hint ? " dbus.bus: auto chose the system bus because swarmd runs as root; a "
                                         "session bus is also there: set dbus.bus: session to use it." : "");
                return 0;
        }
        (void) sd_bus_set_description(bus, "swarmd-api");

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(event);
        s->bus = TAKE_PTR(bus);
        s->system = system;
        s->auto_chose_system = system && config->dbus_bus != DBUS_BUS_SYSTEM;
        snprintf(s->node_id, sizeof(s->node_id), "%s", identity->node_id);
        r = authz_new(s->bus, config->dbus_admin_group, HAVE_POLKIT, &s->authz);
        if (r < 0) {
                bus_service_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

int bus_service_start(struct bus_service *s, struct lending *lending, struct skills *skills,
                      struct network *network) {
        int r;

        if (!s)
                return 0;
        s->lending = lending;
        s->skills = skills;
        s->network = network;

        r = sd_bus_add_object_vtable(s->bus, &s->object_slot, BUS_SERVICE_PATH, BUS_SERVICE_INTERFACE,
                                     swarm_vtable, s);
        if (r < 0)
                return log_error_errno(r, "Failed to publish %s: %m", BUS_SERVICE_PATH);
        r = bus_snapshot_take(s, &s->last);
        if (r < 0)
                return log_oom();
        r = sd_event_add_defer(s->event, &s->changes, on_changes, s);
        if (r < 0)
                return log_error_errno(r, "Failed to set up change notifications: %m");
        (void) sd_event_source_set_enabled(s->changes, SD_EVENT_OFF);
        (void) sd_event_source_set_description(s->changes, "bus-changes");
        s->started = true;

        r = sd_bus_request_name_async(s->bus, NULL, BUS_SERVICE_NAME, 0, on_name_acquired, s);
        if (r < 0)
                log_warning_errno(r, "Cannot request %s: %m", BUS_SERVICE_NAME);
        return 0;
}

struct bus_service *bus_service_free(struct bus_service *s) {
        if (!s)
                return NULL;
        /* Pending authorisations are answered while the bus still works. */
        s->authz = authz_free(s->authz);
        s->changes = sd_event_source_disable_unref(s->changes);
        s->object_slot = sd_bus_slot_unref(s->object_slot);
        s->bus = sd_bus_flush_close_unref(s->bus);
        s->event = sd_event_unref(s->event);
        bus_snapshot_done(&s->last);
        free(s);
        return NULL;
}

void bus_service_set_demand(struct bus_service *s, struct demand *d) {
        if (s)
                s->demand = d;
}

void bus_service_set_accounts(struct bus_service *s, struct accounts *a) {
        if (s)
                s->accounts = a;
}

sd_bus *bus_service_bus(const struct bus_service *s) {
        return s ? s->bus : NULL;
}

bool bus_service_is_system_bus(const struct bus_service *s) {
        return s && s->system;
}

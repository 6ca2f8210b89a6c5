/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "endpoint.h"
#include "macro.h"
#include "utf8-valid.h"


static const char *const log_target_names[] = {
        [LOG_TARGET_AUTO]    = "auto",
        [LOG_TARGET_CONSOLE] = "console",
        [LOG_TARGET_JOURNAL] = "journal",
        [LOG_TARGET_JOURNAL + 1] = NULL,
};

static const char *const skills_cgroups_names[] = {
        [SKILLS_CGROUPS_AUTO] = "auto",
        [SKILLS_CGROUPS_ON] = "on",
        [SKILLS_CGROUPS_OFF] = "off",
        NULL
};

static const char *const network_reachability_names[] = {
        [NETWORK_REACHABILITY_AUTO] = "auto",
        [NETWORK_REACHABILITY_PUBLIC] = "public",
        [NETWORK_REACHABILITY_PRIVATE] = "private",
        NULL
};

const char *const lending_policy_names[] = {
        [LENDING_POLICY_ALWAYS] = "always",
        [LENDING_POLICY_NEVER] = "never",
        [LENDING_POLICY_IDLE] = "idle",
        [LENDING_POLICY_SCHEDULE] = "schedule",
        NULL
};

const char *const lending_preempt_names[] = {
        [LENDING_PREEMPT_FREEZE] = "freeze",
        [LENDING_PREEMPT_KILL] = "kill",
        [LENDING_PREEMPT_FINISH] = "finish",
        NULL
};

static const char *const dbus_bus_names[] = {
        [DBUS_BUS_AUTO] = "auto",
        [DBUS_BUS_SYSTEM] = "system",
        [DBUS_BUS_SESSION] = "session",
        [DBUS_BUS_NONE] = "none",
        NULL
};

_Static_assert(LOG_EMERG == 0 && LOG_DEBUG == 7, "log.level names must be indexed by syslog priority");

/* ---- Checks beyond the type: what swarmd would refuse at start ---- */

static bool check_node_name(const char *s, char *error, size_t size) {
        size_t n = strlen(s);

        if (n > CONFIG_NODE_NAME_MAX) {
                snprintf(error, size, "%zu bytes long, at most %u", n, CONFIG_NODE_NAME_MAX);
                return false;
        }
        if (!utf8_valid(s, n)) {
                snprintf(error, size, "not valid UTF-8");
                return false;
        }
        return true;
}

static bool check_bind(const char *s, char *error, size_t size) {
        return endpoint_valid(s, ENDPOINT_BIND, error, size);
}

static bool check_advertise(const char *s, char *error, size_t size) {
        return !s[0] || endpoint_valid(s, 0, error, size);
}

/* "NODEID@tcp://HOST:PORT": the id's full check (its base32 padding) is
 * the network's; its shape is checked here. */
static bool check_seed(const char *s, char *error, size_t size) {
        const char *at = strchr(s, '@');

        if (!at || at - s != CONFIG_NODE_ID_LEN || strspn(s, "abcdefghijklmnopqrstuvwxyz234567") != CONFIG_NODE_ID_LEN) {
                snprintf(error, size, "\"%.80s\" is not NODEID@tcp://HOST:PORT (NODEID: the %u characters "
                         "swarmd --show-identity prints)", s, CONFIG_NODE_ID_LEN);
                return false;
        }
        return endpoint_valid(at + 1, 0, error, size);
}

static bool check_allowance_gone(const char *s, char *error, size_t size) {
        snprintf(error, size, "is gone: no identity gets credits for free any more; credits come only from the "
                 "mints of credits.issuers (remove this key)");
        return false;
}

static bool check_node_id(const char *s, char *error, size_t size);

static bool check_optional_node_id(const char *s, char *error, size_t size) {
        return s[0] == '\0' || check_node_id(s, error, size);
}

static bool check_node_id(const char *s, char *error, size_t size) {
        if (strlen(s) == CONFIG_NODE_ID_LEN && strspn(s, "abcdefghijklmnopqrstuvwxyz234567") == CONFIG_NODE_ID_LEN)
                return true;
        snprintf(error, size, "\"%.80s\" is not a node id (the %u characters swarmd --show-identity prints)", s,
                 CONFIG_NODE_ID_LEN);
        return false;
}

static bool check_ipv4(const char *s, char *error, size_t size) {
        struct in_addr a;

        if (inet_pton(AF_INET, s, &a) == 1)
                return true;
        snprintf(error, size, "\"%.80s\" is not an IPv4 address", s);
        return false;
}

int config_parse_release(const char *s, uint64_t *ret_usec, char *error, size_t n) {
        uint64_t usec;
        int r;

        if (!s || !ret_usec)
                return -EINVAL;
        if (strcmp(s, "immediately") == 0) {
                *ret_usec = 0;
                return 0;
        }
        if (strcmp(s, "never") == 0) {
                *ret_usec = CONFIG_RELEASE_NEVER;
                return 0;
        }
        if (strncmp(s, "after ", 6) != 0) {
                if (error && n > 0)
                        snprintf(error, n, "\"%.80s\" is not \"immediately\", \"after DURATION\" (e.g. "
                                 "\"after 10s\") or \"never\"", s);
                return -EINVAL;
        }
        s += 6;
        while (*s == ' ')
                s++;
        r = conf_parse_duration(s, &usec);
        if (r < 0 || usec == CONFIG_RELEASE_NEVER) {
                if (error && n > 0)
                        snprintf(error, n, "\"%.80s\" is not a duration (a number followed by ms, s, min, "
                                 "h or d)", s);
                return -EINVAL;
        }
        *ret_usec = usec;
        return 0;
}

static bool check_release(const char *s, char *error, size_t size) {
        uint64_t usec;

        return config_parse_release(s, &usec, error, size) >= 0;
}

/* Every key here is documented, with its default, in etc/swarmd.yaml. */
const struct conf_key config_keys[] = {
        {
                .path = "node.name",
                .type = CONF_STRING,
                .offset = offsetof(struct config, node_name),
                .check = check_node_name,
        },
        {
                /* The identity and ledgers live there; moving them under a
                 * running daemon is not something a reload can do. */
                .path = "node.state_directory",
                .type = CONF_STRING,
                .offset = offsetof(struct config, state_directory),
                .needs_restart = true,
        },
        {
                .path = "skills.enabled",
                .type = CONF_STRV,
                .offset = offsetof(struct config, skills_enabled),
                .needs_restart = true,
        },
        {
                .path = "skills.directory",
                .type = CONF_STRING,
                .offset = offsetof(struct config, skills_directory),
                .needs_restart = true,
        },
        {
                .path = "skills.workers",
                .type = CONF_UINT,
                .offset = offsetof(struct config, skills_workers),
                .min = 1,
                .max = 64,
                .needs_restart = true,
        },
        {
                .path = "skills.queue_limit",
                .type = CONF_UINT,
                .offset = offsetof(struct config, skills_queue_limit),
                .max = 1000000,
                .needs_restart = true,
        },
        {
                .path = "skills.kill_grace",
                .type = CONF_DURATION,
                .offset = offsetof(struct config, skills_kill_grace),
                .min = 10 * 1000,
                .max = 600ULL * 1000 * 1000,
                .needs_restart = true,
        },
        {
                .path = "skills.cgroups",
                .type = CONF_ENUM,
                .offset = offsetof(struct config, skills_cgroups),
                .names = skills_cgroups_names,
                .needs_restart = true,
        },
        {
                .path = "skills.memory_max",
                .type = CONF_SIZE,
                .offset = offsetof(struct config, skills_memory_max),
                .needs_restart = true,
        },
        {
                .path = "skills.cpu_max",
                .type = CONF_UINT,
                .offset = offsetof(struct config, skills_cpu_max),
                .max = 100000,
                .needs_restart = true,
        },
        {
                .path = "skills.pids_max",
                .type = CONF_UINT,
                .offset = offsetof(struct config, skills_pids_max),
                .max = 4194304,
                .needs_restart = true,
        },
        {
                .path = "skills.options",
                .type = CONF_STRV,
                .offset = offsetof(struct config, skills_options),
                .needs_restart = true,
        },
        {
                .path = "network.enabled",
                .type = CONF_BOOL,
                .offset = offsetof(struct config, network_enabled),
                .needs_restart = true,
        },
        {
                .path = "network.bind",
                .type = CONF_STRING,
                .offset = offsetof(struct config, network_bind),
                .check = check_bind,
                .needs_restart = true,
        },
        {
                .path = "network.advertise",
                .type = CONF_STRING,
                .offset = offsetof(struct config, network_advertise),
                .check = check_advertise,
                .needs_restart = true,
        },
        {
                .path = "network.seeds",
                .type = CONF_STRV,
                .offset = offsetof(struct config, network_seeds),
                .check = check_seed,
                .needs_restart = true,
        },
        {
                .path = "network.beacon",
                .type = CONF_BOOL,
                .offset = offsetof(struct config, network_beacon),
                .needs_restart = true,
        },
        {
                .path = "network.beacon_address",
                .type = CONF_STRING,
                .offset = offsetof(struct config, network_beacon_address),
                .check = check_ipv4,
                .needs_restart = true,
        },
        {
                .path = "network.beacon_port",
                .type = CONF_UINT,
                .offset = offsetof(struct config, network_beacon_port),
                .min = 1,
                .max = 65535,
                .needs_restart = true,
        },
        {
                .path = "network.beacon_interval",
                .type = CONF_DURATION,
                .offset = offsetof(struct config, network_beacon_interval),
                .min = 100 * 1000,
                .max = 3600ULL * 1000 * 1000,
                .needs_restart = true,
        },
        {
                .path = "network.insecure",
                .type = CONF_BOOL,
                .offset = offsetof(struct config, network_insecure),
                .needs_restart = true,
        },
        {
                .path = "network.max_message_size",
                .type = CONF_SIZE,
                .offset = offsetof(struct config, network_max_message_size),
                .min = 4096,
                .max = 1ULL << 30,
                .needs_restart = true,
        },
        {
                .path = "network.rate_limit",
                .type = CONF_UINT,
                .offset = offsetof(struct config, network_rate_limit),
                .min = 1,
                .max = 1000000,
                .needs_restart = true,
        },
        {
                .path = "network.probe_interval",
                .type = CONF_DURATION,
                .offset = offsetof(struct config, network_probe_interval),
                .min = 10 * 1000,
                .max = 60ULL * 1000 * 1000,
                .needs_restart = true,
        },
        {
                .path = "network.ban_after_faults",
                .type = CONF_UINT,
                .offset = offsetof(struct config, network_ban_after_faults),
                .max = 1000000,
                .needs_restart = true,
        },
        {
                .path = "network.reachability",
                .type = CONF_ENUM,
                .offset = offsetof(struct config, network_reachability),
                .names = network_reachability_names,
                .needs_restart = true,
        },
        {
                .path = "network.relays",
                .type = CONF_UINT,
                .offset = offsetof(struct config, network_relays),
                .min = 1,
                .max = 4,
                .needs_restart = true,
        },
        {
                .path = "relay.enabled",
                .type = CONF_BOOL,
                .offset = offsetof(struct config, relay_enabled),
                .needs_restart = true,
        },
        {
                .path = "relay.max_clients",
                .type = CONF_UINT,
                .offset = offsetof(struct config, relay_max_clients),
                .min = 1,
                .max = 65536,
                .needs_restart = true,
        },
        {
                .path = "relay.max_circuits",
                .type = CONF_UINT,
                .offset = offsetof(struct config, relay_max_circuits),
                .min = 1,
                .max = 65536,
                .needs_restart = true,
        },
        {
                .path = "relay.bandwidth",
                .type = CONF_SIZE,
                .offset = offsetof(struct config, relay_bandwidth),
                .min = 1024,
                .max = 1ULL << 40,
                .needs_restart = true,
        },
        {
                .path = "relay.burst",
                .type = CONF_SIZE,
                .offset = offsetof(struct config, relay_burst),
                .min = 1024,
                .max = 1ULL << 40,
                .needs_restart = true,
        },
        {
                .path = "jobs.allowed_requesters",
                .type = CONF_STRV,
                .offset = offsetof(struct config, jobs_allowed_requesters),
                .check = check_node_id,
                .needs_restart = true,
        },
        {
                /* Gone (issue 22): said so, rather than "unknown key". */
                .path = "ledger.allowance",
                .type = CONF_STRING,
                .offset = offsetof(struct config, ledger_allowance_gone),
                .check = check_allowance_gone,
        },
        {
                .path = "ledger.debt_limit",
                .type = CONF_UINT,
                .offset = offsetof(struct config, ledger_debt_limit),
                .max = INT64_MAX,
                .needs_restart = true,
        },
        {
                .path = "credits.issuers",
                .type = CONF_STRV,
                .offset = offsetof(struct config, credits_issuers),
                .check = check_node_id,
                .needs_restart = true,
        },
        {
                .path = "reputation.half_life",
                .type = CONF_DURATION,
                .offset = offsetof(struct config, reputation_half_life),
                .min = 1000 * 1000,
                .max = 365ULL * 24 * 3600 * 1000 * 1000,
                .needs_restart = true,
        },
        {
                .path = "reputation.gossip_interval",
                .type = CONF_DURATION,
                .offset = offsetof(struct config, reputation_gossip_interval),
                .max = 24ULL * 3600 * 1000 * 1000,
                .needs_restart = true,
        },
        {
                .path = "reputation.challenge_interval",
                .type = CONF_DURATION,
                .offset = offsetof(struct config, reputation_challenge_interval),
                .max = 7ULL * 24 * 3600 * 1000 * 1000,
                .needs_restart = true,
        },
        {
                .path = "pricing.interval",
                .type = CONF_DURATION,
                .offset = offsetof(struct config, pricing_interval),
                .max = 24ULL * 3600 * 1000 * 1000,
                .needs_restart = true,
        },
        {
                .path = "pricing.target_utilisation",
                .type = CONF_UINT,
                .offset = offsetof(struct config, pricing_target),
                .min = 1,
                .max = 100,
                .needs_restart = true,
        },
        {
                .path = "pricing.max_step",
                .type = CONF_UINT,
                .offset = offsetof(struct config, pricing_max_step),
                .min = 1,
                .max = 50,
                .needs_restart = true,
        },
        {
                .path = "pricing.floor",
                .type = CONF_UINT,
                .offset = offsetof(struct config, pricing_floor),
                .min = 1,
                .max = 100,
                .needs_restart = true,
        },
        {
                .path = "pricing.cap",
                .type = CONF_UINT,
                .offset = offsetof(struct config, pricing_cap),
                .min = 100,
                .max = 100000,
                .needs_restart = true,
        },
        {
                .path = "verification.check_percent",
                .type = CONF_UINT,
                .offset = offsetof(struct config, verification_check_percent),
                .max = 100,
                .needs_restart = true,
        },
        {
                .path = "verification.after_failure_percent",
                .type = CONF_UINT,
                .offset = offsetof(struct config, verification_after_failure_percent),
                .max = 100,
                .needs_restart = true,
        },
        {
                .path = "verification.measured_at",
                .type = CONF_UINT,
                .offset = offsetof(struct config, verification_measured_at),
                .max = 1000000,
                .needs_restart = true,
        },
        {
                .path = "verification.sampled_skills",
                .type = CONF_STRV,
                .offset = offsetof(struct config, verification_sampled_skills),
                .needs_restart = true,
        },
        {
                .path = "lending.policy",
                .type = CONF_ENUM,
                .offset = offsetof(struct config, lending_policy),
                .names = lending_policy_names,
        },
        {
                .path = "lending.schedule",
                .type = CONF_STRV,
                .offset = offsetof(struct config, lending_schedule),
        },
        {
                .path = "lending.gpu_check",
                .type = CONF_BOOL,
                .offset = offsetof(struct config, lending_gpu_check),
        },
        {
                .path = "lending.preempt",
                .type = CONF_ENUM,
                .offset = offsetof(struct config, lending_preempt),
                .names = lending_preempt_names,
        },
        {
                .path = "lending.release_device_memory",
                .type = CONF_STRING,
                .offset = offsetof(struct config, lending_release_device_memory),
                .check = check_release,
        },
        {
                .path = "dbus.bus",
                .type = CONF_ENUM,
                .offset = offsetof(struct config, dbus_bus),
                .names = dbus_bus_names,
                .needs_restart = true,
        },
        {
                .path = "dbus.admin_group",
                .type = CONF_STRING,
                .offset = offsetof(struct config, dbus_admin_group),
                .needs_restart = true,
        },
        {
                .path = "testing.corrupt_results",
                .type = CONF_BOOL,
                .offset = offsetof(struct config, testing_corrupt_results),
                .needs_restart = true,
        },
        {
                .path = "testing.corrupt_stream",
                .type = CONF_BOOL,
                .offset = offsetof(struct config, testing_corrupt_stream),
                .needs_restart = true,
        },
        {
                .path = "testing.withhold_payments",
                .type = CONF_BOOL,
                .offset = offsetof(struct config, testing_withhold_payments),
                .needs_restart = true,
        },
        {
                .path = "testing.double_spend_to",
                .type = CONF_STRING,
                .offset = offsetof(struct config, testing_double_spend_to),
                .check = check_optional_node_id,
                .needs_restart = true,
        },
        {
                .path = "testing.throughput_factor",
                .type = CONF_UINT,
                .offset = offsetof(struct config, testing_throughput_factor),
                .min = 1,
                .max = 1000,
                .needs_restart = true,
        },
        {
                .path = "log.level",
                .type = CONF_ENUM,
                .offset = offsetof(struct config, log_level),
                .names = log_level_names,
        },
        {
                .path = "log.target",
                .type = CONF_ENUM,
                .offset = offsetof(struct config, log_target),
                .names = log_target_names,
        },
};

const size_t config_n_keys = ELEMENTSOF(config_keys);

int config_init(struct config *c) {
        *c = (struct config) {
                .log_level = LOG_INFO,
                .log_target = LOG_TARGET_AUTO,
                .skills_workers = 1,
                .skills_queue_limit = 64,
                .skills_kill_grace = 2 * 1000 * 1000,
                .skills_cgroups = SKILLS_CGROUPS_AUTO,
                .network_enabled = true,
                .network_beacon = true,
                .network_beacon_port = 7947,
                .network_beacon_interval = 5 * 1000 * 1000,
                .network_max_message_size = 64 * 1024 * 1024,
                .network_rate_limit = 500,
                .network_probe_interval = 200 * 1000,
                .network_ban_after_faults = 20,
                .network_reachability = NETWORK_REACHABILITY_AUTO,
                .network_relays = 2,
                .relay_max_clients = 64,
                .relay_max_circuits = 64,
                .relay_bandwidth = 4ULL << 20,
                .relay_burst = 16ULL << 20,
                .ledger_debt_limit = 100ULL * 1000 * 1000,
                .reputation_half_life = 3600ULL * 1000 * 1000,
                .reputation_gossip_interval = 10ULL * 1000 * 1000,
                .reputation_challenge_interval = 300ULL * 1000 * 1000,
                .pricing_interval = 5ULL * 1000 * 1000,
                .pricing_target = 70,
                .pricing_max_step = 12,
                .pricing_floor = 50,
                .pricing_cap = 1000,
                .verification_check_percent = 10,
                .verification_after_failure_percent = 50,
                .verification_measured_at = 5,
                .testing_throughput_factor = 1,
                .lending_policy = LENDING_POLICY_ALWAYS,
                .lending_gpu_check = true,
                .lending_preempt = LENDING_PREEMPT_FREEZE,
                .dbus_bus = DBUS_BUS_AUTO,
        };

        c->node_name = strdup("");
        c->state_directory = strdup("");
        c->skills_directory = strdup("");
        c->skills_enabled = calloc(1, sizeof(char *));
        c->skills_options = calloc(1, sizeof(char *));
        c->network_bind = strdup("tcp://0.0.0.0:7946");
        c->network_advertise = strdup("");
        c->network_seeds = calloc(1, sizeof(char *));
        c->network_beacon_address = strdup("255.255.255.255");
        c->lending_schedule = calloc(1, sizeof(char *));
        c->lending_release_device_memory = strdup(CONFIG_RELEASE_DEFAULT);
        c->jobs_allowed_requesters = calloc(1, sizeof(char *));
        c->credits_issuers = calloc(1, sizeof(char *));
        c->verification_sampled_skills = calloc(2, sizeof(char *));
        if (c->verification_sampled_skills)
                c->verification_sampled_skills[0] = strdup("textgen");
        c->dbus_admin_group = strdup("");
        c->ledger_allowance_gone = strdup("");
        c->testing_double_spend_to = strdup("");
        if (!c->ledger_allowance_gone || !c->testing_double_spend_to || !c->node_name || !c->state_directory || !c->skills_directory ||
            !c->skills_enabled || !c->skills_options || !c->network_bind || !c->network_advertise ||
            !c->network_seeds || !c->network_beacon_address || !c->lending_schedule ||
            !c->lending_release_device_memory || !c->dbus_admin_group ||
            !c->jobs_allowed_requesters || !c->credits_issuers || !c->verification_sampled_skills || !c->verification_sampled_skills[0]) {
                config_done(c);
                return -ENOMEM;
        }
        return 0;
}

void config_done(struct config *c) {
        conf_free_values(config_keys, config_n_keys, c);
}

int config_load(struct config *c, const char *path, bool required, char **error) {
        int r;

        if (error)
                *error = NULL;

        r = config_init(c);
        if (r < 0)
                return r;

        r = conf_load(config_keys, config_n_keys, c, path, error);
        if (r == -ENOENT && !(error && *error)) {
                if (!required)
                        return 0;
                if (error && asprintf(error, "%s: %s", path, strerror(ENOENT)) < 0) {
                        *error = NULL;
                        return -ENOMEM;
                }
        }
        return r;
}

int config_apply_reload(struct config *running, struct config *fresh, char ***needs_restart) {
        _cleanup_strv_free_ char **l = NULL;
        size_t n = 0;

        /* Collect first, move after: running changes only once nothing
         * can fail any more. */
        l = calloc(config_n_keys + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;

        for (size_t i = 0; i < config_n_keys; i++) {
                const struct conf_key *key = config_keys + i;

                if (!key->needs_restart || conf_value_equal(key, running, fresh))
                        continue;
                l[n] = strdup(key->path);
                if (!l[n])
                        return -ENOMEM;
                n++;
        }

        for (size_t i = 0; i < config_n_keys; i++)
                if (!config_keys[i].needs_restart)
                        conf_value_move(config_keys + i, running, fresh);

        *needs_restart = TAKE_PTR(l);
        return 0;
}

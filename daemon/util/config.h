/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* swarmd's configuration: the typed struct, its defaults, and its schema for
 * conf.h.  Every key here is documented, with its default, in
 * etc/swarmd.yaml; a test checks that file parses to exactly these defaults. */

#include <stdbool.h>
#include <stdint.h>

#include "conf-parser.h"
#include "log.h"

/* What a node record can carry (core/wire.h's WIRE_STRING_MAX is 256
 * bytes, the hostname fallback fits) and a node id's length (node-id.h):
 * net/network.c checks both against the core's at build time. */
#define CONFIG_NODE_NAME_MAX 255u
#define CONFIG_NODE_ID_LEN 52u

struct config {
        /* node: */
        char *node_name;        /* node.name: label shown to peers; "" = the host name */
        char *state_directory;  /* node.state_directory: "" = $STATE_DIRECTORY, else STATEDIR; restart */

        /* skills: (all need a restart) */
        char **skills_enabled;  /* skills.enabled: names or paths of the plugins this node hosts */
        char *skills_directory; /* skills.directory: where names are looked up; "" = SKILLDIR */
        uint64_t skills_workers;        /* skills.workers: worker processes per skill */
        uint64_t skills_queue_limit;    /* skills.queue_limit: queued jobs per skill; 0 = unlimited */
        uint64_t skills_kill_grace;     /* skills.kill_grace: µs from deadline/cancel to SIGKILL */
        int skills_cgroups;             /* skills.cgroups: enum skills_cgroups_mode */
        uint64_t skills_memory_max;     /* skills.memory_max: bytes per skill; 0 = unlimited */
        uint64_t skills_cpu_max;        /* skills.cpu_max: percent of one CPU per skill; 0 = unlimited */
        uint64_t skills_pids_max;       /* skills.pids_max: processes per skill; 0 = unlimited */
        char **skills_options;  /* skills.options: "SKILL.KEY=VALUE" handed to the skill's init() */

        /* network: (all need a restart) */
        bool network_enabled;           /* network.enabled */
        char *network_bind;             /* network.bind: ZeroMQ endpoint of the ROUTER */
        char *network_advertise;        /* network.advertise: endpoint peers use; "" = derived */
        char **network_seeds;           /* network.seeds: "NODEID@tcp://host:port" */
        bool network_beacon;            /* network.beacon: LAN discovery */
        char *network_beacon_address;   /* network.beacon_address: broadcast address */
        uint64_t network_beacon_port;   /* network.beacon_port */
        uint64_t network_beacon_interval;       /* network.beacon_interval: µs */
        bool network_insecure;          /* network.insecure: no CurveZMQ (debugging) */
        uint64_t network_max_message_size;      /* network.max_message_size: bytes */
        uint64_t network_rate_limit;    /* network.rate_limit: messages/s per peer */
        uint64_t network_probe_interval;        /* network.probe_interval: µs */
        uint64_t network_ban_after_faults;      /* network.ban_after_faults: 0 = never */
        int network_reachability;       /* network.reachability: enum network_reachability */
        uint64_t network_relays;        /* network.relays: relays a NATed node keeps, 1-4 */

        /* relay: relaying for NATed nodes (all need a restart) */
        bool relay_enabled;             /* relay.enabled */
        uint64_t relay_max_clients;     /* relay.max_clients */
        uint64_t relay_max_circuits;    /* relay.max_circuits: peers per client */
        uint64_t relay_bandwidth;       /* relay.bandwidth: bytes/s per peer */
        uint64_t relay_burst;           /* relay.burst: bytes */

        /* jobs: (need a restart) */
        char **jobs_allowed_requesters; /* jobs.allowed_requesters: node ids; empty = anyone */

        /* ledger: (need a restart) */
        char *ledger_allowance_gone;    /* ledger.allowance: refused with why (issue 22) */
        uint64_t ledger_debt_limit;     /* ledger.debt_limit: micro-credits a requester may owe us; 0 = no limit */

        /* credits: (need a restart) */
        char **credits_issuers;         /* credits.issuers: node ids whose mints create credits here */

        /* reputation: (need a restart) */
        uint64_t reputation_half_life;          /* reputation.half_life: µs */
        uint64_t reputation_gossip_interval;    /* reputation.gossip_interval: µs; 0 = never */
        uint64_t reputation_challenge_interval; /* reputation.challenge_interval: µs; 0 = never */

        /* pricing: (need a restart) */
        uint64_t pricing_interval;      /* pricing.interval: µs; 0 = fixed prices */
        uint64_t pricing_target;        /* pricing.target_utilisation: percent */
        uint64_t pricing_max_step;      /* pricing.max_step: percent per interval */
        uint64_t pricing_floor;         /* pricing.floor: percent of the base price */
        uint64_t pricing_cap;           /* pricing.cap: percent of the base price */

        /* verification: (need a restart) */
        uint64_t verification_check_percent;    /* verification.check_percent: results checked */
        uint64_t verification_after_failure_percent; /* verification.after_failure_percent */
        uint64_t verification_measured_at;      /* verification.measured_at: verified results */
        char **verification_sampled_skills;     /* verification.sampled_skills: skills checked by sampling */

        /* lending: (live) */
        int lending_policy;             /* lending.policy: enum lending_policy_config */
        char **lending_schedule;        /* lending.schedule: "[DAYS ]HH:MM-HH:MM" windows */
        bool lending_gpu_check;         /* lending.gpu_check: idle means no other GPU process too */
        int lending_preempt;            /* lending.preempt: enum lending_preempt_config */
        char *lending_release_device_memory;    /* lending.release_device_memory: "immediately",
                                                 * "after DURATION" or "never" (config_parse_release()) */

        /* dbus: (need a restart) */
        int dbus_bus;                   /* dbus.bus: enum dbus_bus_config */
        char *dbus_admin_group;         /* dbus.admin_group: may change state without polkit */

        /* testing: (need a restart) */
        bool testing_corrupt_results;   /* testing.corrupt_results: return wrong results (fault injection) */
        bool testing_corrupt_stream;    /* testing.corrupt_stream: stream other chunks than signed */
        uint64_t testing_throughput_factor;     /* testing.throughput_factor: advertise N× the throughput */
        bool testing_withhold_payments; /* testing.withhold_payments: never pay (a freeloader) */
        char *testing_double_spend_to;  /* testing.double_spend_to: a node id, or "": sign a twin of every
                                         * transfer paid with `swarmctl pay`, to it (a double spender) */

        /* log: */
        int log_level;          /* log.level: syslog priority, LOG_ERR … LOG_DEBUG */
        int log_target;         /* log.target: enum log_target */
};

enum network_reachability {
        NETWORK_REACHABILITY_AUTO,      /* find out: peers dial back our endpoint */
        NETWORK_REACHABILITY_PUBLIC,
        NETWORK_REACHABILITY_PRIVATE,   /* behind NAT: reached through relays */
};

enum skills_cgroups_mode {
        SKILLS_CGROUPS_AUTO,    /* delegated cgroups under systemd, signals otherwise */
        SKILLS_CGROUPS_ON,      /* our own cgroup's subtree, even outside systemd */
        SKILLS_CGROUPS_OFF,     /* signals only */
};

enum lending_policy_config {
        LENDING_POLICY_ALWAYS,
        LENDING_POLICY_NEVER,
        LENDING_POLICY_IDLE,
        LENDING_POLICY_SCHEDULE,
};

enum lending_preempt_config {
        LENDING_PREEMPT_FREEZE,
        LENDING_PREEMPT_KILL,
        LENDING_PREEMPT_FINISH,
};

enum dbus_bus_config {
        DBUS_BUS_AUTO,          /* the system bus as root or without a session bus, else the session bus */
        DBUS_BUS_SYSTEM,
        DBUS_BUS_SESSION,
        DBUS_BUS_NONE,
};

/* lending.release_device_memory's default: freeze at once, give the GPU's
 * memory back 10 s later (see etc/swarmd.yaml for why 10 s). */
#define CONFIG_RELEASE_DEFAULT "after 10s"
/* "never": the workers keep their device memory while not lending. */
#define CONFIG_RELEASE_NEVER UINT64_MAX

/* Parses a lending.release_device_memory value: "immediately" (0), "after
 * DURATION" (e.g. "after 30s", "after 2min": its µs) or "never"
 * (CONFIG_RELEASE_NEVER).  -EINVAL with a reason in error (size n). */
int config_parse_release(const char *s, uint64_t *ret_usec, char *error, size_t n);

extern const char *const lending_policy_names[];
extern const char *const lending_preempt_names[];

extern const struct conf_key config_keys[];
extern const size_t config_n_keys;

/* Fills c with the built-in defaults; -ENOMEM on allocation failure. */
int config_init(struct config *c);
void config_done(struct config *c);

/* Loads the defaults, then path and its drop-ins (path.d/ *.yaml), into c.
 * With required false a missing path (and no drop-ins) leaves the defaults.
 * Returns 0, or a negative errno with *error set to a malloc'd
 * "FILE:LINE:COLUMN: message" (or "FILE: message"); c is left initialised
 * either way. */
int config_load(struct config *c, const char *path, bool required, char **error);

/* Applies a freshly loaded configuration to the running one on reload: the
 * values that can change live are moved from fresh into running, those that
 * need a restart are left as they were and their key paths returned in
 * *needs_restart (a NULL-terminated malloc'd list, possibly empty).
 * Returns 0 or -ENOMEM. */
int config_apply_reload(struct config *running, struct config *fresh, char ***needs_restart);

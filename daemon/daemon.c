/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "accounts.h"
#include "build-config.h"
#include "bus-service.h"
#include "challenge.h"
#include "config.h"
#include "daemon.h"
#include "demand.h"
#include "identity.h"
#include "jobs-channel.h"
#include "jobs-socket.h"
#include "lending.h"
#include "log.h"
#include "macro.h"
#include "control.h"
#include "credits.h"
#include "network.h"
#include "node-id.h"
#include "provider.h"
#include "requester.h"
#include "check-sampling.h"
#include "skills.h"
#include "time-util.h"

struct daemon {
        struct daemon_options options;
        sd_event *event;
        struct config config;
        char *state_dir;
        struct identity *identity;
        struct skills *skills;
        struct network *network;
        struct jobs_channel *jobs_channel;      /* the network's jobs channel, NULL without network */
        struct provider *provider;      /* runs peers' jobs; NULL without network */
        struct requester *requester;    /* runs our jobs in the swarm (or here) */
        struct accounts *accounts;      /* ledger, reputation */
        struct credits *credits;        /* transfers: the book and their broadcast; NULL without network */
        struct demand *demand;          /* prices that follow demand */
        struct challenge *challenge;    /* times gemm providers now and then */
        struct jobs_socket *jobs_socket;        /* local submissions, into the requester */
        struct control *control;
        struct lending *lending;
        sd_bus *system_bus;             /* for logind; may be the service's bus */
        struct bus_service *bus;        /* NULL without D-Bus */
        sd_event_source *record_timer;
        bool ready;
        char last_status[512];          /* the STATUS= last sent */
};

char *daemon_resolve_state_dir(const char *cli_state_dir, const char *config_state_dir) {
        const char *e;

        if (cli_state_dir)
                return strdup(cli_state_dir);
        if (config_state_dir && config_state_dir[0])
                return strdup(config_state_dir);

        /* systemd passes every StateDirectory= entry, colon-separated. */
        e = getenv("STATE_DIRECTORY");
        if (e && e[0])
                return strndup(e, strcspn(e, ":"));

        return strdup(STATEDIR);
}

static void daemon_apply_logging(const struct daemon *d) {
        log_setup(NULL, d->config.log_target);
        log_set_max_level(d->options.log_level >= 0 ? d->options.log_level : d->config.log_level);
}

static const char *daemon_node_name(const struct daemon *d, char *buf, size_t size) {
        if (d->config.node_name[0])
                return d->config.node_name;
        if (gethostname(buf, size) < 0 || !buf[0])
                return "unnamed";
        buf[size - 1] = '\0';
        return buf;
}

/* STATUS= only when it changed: a notification costs the service manager
 * a wake-up, and a notify socket nobody drains (a test harness) fills up
 * after a few datagrams, and then sd_notify() blocks the whole loop. */
static void daemon_notify_running(struct daemon *d, const char *extra) {
        char host[256], status[sizeof(d->last_status)];
        bool lending = lending_is_lending(d->lending);
        const char *reason = d->lending ? lending_reason(d->lending) : NULL;

        snprintf(status, sizeof(status), "STATUS=Running as node %.*s (%s); %s; %s; %s%s%s%s",
                 NODE_ID_SHORT_LEN, d->identity->node_id,
                 daemon_node_name(d, host, sizeof(host)), skills_describe(d->skills),
                 d->network ? network_describe(d->network) : "networking off",
                 lending ? "lending" : "not lending",
                 !lending && reason && reason[0] ? " (" : "", !lending && reason ? reason : "",
                 !lending && reason && reason[0] ? ")" : "");
        if (!extra[0] && strcmp(status, d->last_status) == 0)
                return;
        memcpy(d->last_status, status, sizeof(status));
        sd_notifyf(false, "%s%s", extra, status);
}

/* Lending, its policy or schedule changed: tell D-Bus clients and systemd. */
static void on_lending_changed(struct lending *l, void *userdata) {
        struct daemon *d = userdata;

        bus_service_changed(d->bus);
        if (d->ready)
                daemon_notify_running(d, "");
}

/* A skill's workers or the peers changed: D-Bus clients see it (Skills,
 * ActiveJobs, Peers) from the next loop iteration. */
static void on_skills_changed(struct skills *s, void *userdata) {
        struct daemon *d = userdata;

        bus_service_changed(d->bus);
}

static void on_members_changed(struct network *n, void *userdata) {
        struct daemon *d = userdata;

        bus_service_changed(d->bus);
}

/* Keeps the gossiped record (skills, load) current; a new version goes out
 * only when something changed. */
static int on_record_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct daemon *d = userdata;

        if (d->network)
                (void) network_update_record(d->network, d->skills, lending_is_lending(d->lending));
        if (d->ready)
                daemon_notify_running(d, "");
        (void) sd_event_source_set_time_relative(s, 2 * 1000 * 1000);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

/* READY=1 once every configured skill is up or has failed its first start:
 * only then does swarmd serve what it was configured to. */
static void on_skills_settled(struct skills *s, void *userdata) {
        struct daemon *d = userdata;

        d->ready = true;
        if (d->network) {
                int r = network_update_record(d->network, s, lending_is_lending(d->lending));
                if (r < 0)
                        log_warning_errno(r, "Failed to publish our skills: %m");
        }
        daemon_notify_running(d, "READY=1\n");
        log_info("Ready: %s. Stop with Ctrl-C or SIGTERM; reload the configuration with SIGHUP.",
                 skills_describe(s));
}

/* Whether every key under prefix ("lending.") has the same value. */
/* JobStarted/JobFinished on D-Bus for the jobs we run for peers. */
static void on_provider_event(const struct provider_job_event *e, bool finished, void *userdata) {
        struct daemon *d = userdata;
        const char *result;

        if (!d->bus)
                return;
        if (!finished) {
                (void) bus_service_emit_job_started(d->bus, e->job, e->skill, e->requester);
                return;
        }
        result = e->status == 0 ? "ok" :
                 e->status == -ETIMEDOUT ? "timeout" :
                 e->status == -ECANCELED || e->status == -ESHUTDOWN ? "cancelled" : "failed";
        (void) bus_service_emit_job_finished(d->bus, e->job, e->skill, e->requester, result, e->exec_usec,
                                             e->price);
}

static bool config_section_equal(const char *prefix, const struct config *a, const struct config *b) {
        size_t l = strlen(prefix);

        for (size_t i = 0; i < config_n_keys; i++)
                if (strncmp(config_keys[i].path, prefix, l) == 0 && !conf_value_equal(&config_keys[i], a, b))
                        return false;
        return true;
}

static int daemon_reload(struct daemon *d) {
        _cleanup_strv_free_ char **needs_restart = NULL;
        _cleanup_free_ char *error = NULL;
        struct config fresh;
        bool lending_changed;
        int r;

        sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=Reloading configuration from %s",
                   now(CLOCK_MONOTONIC), d->options.config_path);
        log_info("Reloading configuration from %s.", d->options.config_path);

        r = config_load(&fresh, d->options.config_path, d->options.config_required, &error);
        if (r < 0) {
                log_error("%s", error ?: "Failed to load the configuration");
                log_error("Keeping the running configuration; fix the file and reload again.");
                config_done(&fresh);
                daemon_notify_running(d, d->ready ? "READY=1\n" : "");
                return 0;
        }

        /* A reload that leaves lending.* alone keeps what was switched at
         * run time (swarmctl lend, the desktop toggle). */
        lending_changed = !config_section_equal("lending.", &d->config, &fresh);
        r = config_apply_reload(&d->config, &fresh, &needs_restart);
        config_done(&fresh);
        if (r < 0)
                return log_error_errno(r, "Failed to apply the new configuration: %m");

        for (char **k = needs_restart; k && *k; k++)
                log_warning("%s changed in the configuration; it takes effect when swarmd is restarted.", *k);

        daemon_apply_logging(d);
        if (lending_changed) {
                r = lending_apply_config(d->lending, &d->config);
                if (r < 0)
                        log_warning_errno(r, "Keeping the previous lending settings: %m");
        }
        log_info("Configuration reloaded.");
        daemon_notify_running(d, d->ready ? "READY=1\n" : "");
        return 0;
}

static int on_stop_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        struct daemon *d = userdata;

        log_info("Received %s, shutting down.", strsignal((int) si->ssi_signo));
        sd_notify(false, "STOPPING=1\nSTATUS=Shutting down");
        return sd_event_exit(d->event, 0);
}

static int on_reload_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        int r = daemon_reload(userdata);

        /* Never let a failed reload stop a serving daemon. */
        if (r < 0)
                log_warning_errno(r, "Reload incomplete: %m");
        return 0;
}

static int daemon_setup_event_loop(struct daemon *d) {
        sigset_t mask;
        int r;

        /* Signals are handled as sd-event sources, so block their default
         * delivery first. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGCHLD);      /* workers: child sources of the pools */
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(errno, "Failed to block signals: %m");
        signal(SIGPIPE, SIG_IGN);

        r = sd_event_default(&d->event);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate the event loop: %m");

        r = sd_event_add_signal(d->event, NULL, SIGTERM, on_stop_signal, d);
        if (r >= 0)
                r = sd_event_add_signal(d->event, NULL, SIGINT, on_stop_signal, d);
        if (r >= 0)
                r = sd_event_add_signal(d->event, NULL, SIGHUP, on_reload_signal, d);
        if (r < 0)
                return log_error_errno(r, "Failed to watch signals: %m");

        /* Sends WATCHDOG=1 at half of $WATCHDOG_USEC while the loop turns,
         * and nothing when systemd asked for no watchdog. */
        r = sd_event_set_watchdog(d->event, true);
        if (r < 0)
                return log_error_errno(r, "Failed to enable the watchdog: %m");
        if (r > 0)
                log_debug("Watchdog enabled.");

        return 0;
}

/* logind lives on the system bus, whichever bus serves our API (if any). */
static int daemon_open_system_bus(struct daemon *d) {
        int r;

        if (bus_service_is_system_bus(d->bus)) {
                d->system_bus = sd_bus_ref(bus_service_bus(d->bus));
                return 0;
        }
        r = sd_bus_open_system(&d->system_bus);
        if (r >= 0)
                r = sd_bus_attach_event(d->system_bus, d->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0) {
                log_debug_errno(r, "No system bus (%m): the idle policy cannot ask logind.");
                d->system_bus = sd_bus_flush_close_unref(d->system_bus);
        }
        return 0;
}

static double demand_of(const char *skill, void *userdata) {
        return demand_multiplier(userdata, skill);
}

/* Transfers, on the ledger and the network: the issuers come from
 * credits.issuers (checked as node ids when the config was read). */
static int daemon_open_credits(struct daemon *d) {
        _cleanup_free_ uint8_t (*issuers)[32] = NULL;
        size_t n = 0;
        int r;

        while (d->config.credits_issuers[n])
                n++;
        issuers = calloc(n ? n : 1, 32);
        if (!issuers)
                return log_error_errno(-ENOMEM, "Out of memory.");
        for (size_t i = 0; i < n; i++)
                if (node_id_to_public_key(d->config.credits_issuers[i], issuers[i]) < 0)
                        return log_error_errno(-EINVAL, "credits.issuers: \"%s\" is not a node id.",
                                               d->config.credits_issuers[i]);
        r = credits_new(d->event, d->identity, d->network, accounts_ledger(d->accounts),
                        (const uint8_t (*)[32]) issuers, n, &d->credits);
        if (r < 0)
                return log_error_errno(r, "Cannot set up credits: %m");
        if (d->config.testing_double_spend_to[0]) {
                uint8_t twin[32];

                if (node_id_to_public_key(d->config.testing_double_spend_to, twin) < 0)
                        return log_error_errno(-EINVAL, "testing.double_spend_to: \"%s\" is not a node id.",
                                               d->config.testing_double_spend_to);
                credits_set_double_spend(d->credits, twin);
        }
        return 0;
}

/* The ledger is money: without it this node neither pays nor gets paid,
 * so a ledger that cannot be opened stops the start, with the reason. */
static int daemon_open_accounts(struct daemon *d) {
        _cleanup_free_ char *path = NULL, *error = NULL;
        struct accounts_config ac = {
                .debt_limit = d->config.ledger_debt_limit,
                .half_life_usec = d->config.reputation_half_life,
                .gossip_interval_usec = d->config.reputation_gossip_interval,
                .withhold_payments = d->config.testing_withhold_payments,
        };
        struct pricing_params pricing = {
                .target = (double) d->config.pricing_target / 100.0,
                .max_step = (double) d->config.pricing_max_step / 100.0,
                .floor = (double) d->config.pricing_floor / 100.0,
                .cap = (double) d->config.pricing_cap / 100.0,
        };
        int r;

        if (asprintf(&path, "%s/ledger.db", d->state_dir) < 0)
                return log_error_errno(-ENOMEM, "Out of memory.");
        r = demand_new(d->event, d->skills, &pricing, d->config.pricing_interval, &d->demand);
        if (r < 0)
                return log_error_errno(r, "Cannot set up demand pricing (pricing.*): %m");
        r = accounts_new(d->event, &ac, d->identity, d->network, path, &d->accounts, &error);
        if (r < 0) {
                if (error)
                        log_error("Cannot open the ledger: %s", error);
                else
                        log_error_errno(r, "Cannot open the ledger %s: %m", path);
                return r;
        }
        if (d->network) {
                r = daemon_open_credits(d);
                if (r < 0)
                        return r;
                /* Jobs are paid by transfer. */
                accounts_set_credits(d->accounts, d->credits);
                network_set_demand_callback(d->network, demand_of, d->demand);
        }
        if (d->control) {
                control_set_accounts(d->control, d->accounts);
                control_set_credits(d->control, d->credits);
        }
        bus_service_set_accounts(d->bus, d->accounts);
        bus_service_set_demand(d->bus, d->demand);
        return 0;
}

static void daemon_done(struct daemon *d) {
        d->record_timer = sd_event_source_disable_unref(d->record_timer);
        skills_set_changed_callback(d->skills, NULL, NULL);
        if (d->network)
                network_set_members_callback(d->network, NULL, NULL);
        /* Jobs first: the provider answers and cancels what runs, while the
         * bus, network and pools still exist. */
        d->jobs_channel = jobs_channel_free(d->jobs_channel);
        /* Fails our jobs still running (done called now) while the pools
         * that price and verify them still exist; whoever submitted them
         * (the jobs socket) must be freed after this. */
        d->challenge = challenge_free(d->challenge);
        requester_stop(d->requester);
        if (d->control)
                control_set_requester(d->control, NULL);
        d->requester = requester_free(d->requester);
        d->jobs_socket = jobs_socket_free(d->jobs_socket);
        provider_stop(d->provider);
        /* Writes the ledger and sends what is owed, the results waiting
         * for their rows included, while the network exists. */
        accounts_stop(d->accounts);
        d->provider = provider_free(d->provider);
        /* After everything that pays or is paid; saves the reputation. */
        if (d->network)
                network_set_demand_callback(d->network, NULL, NULL);
        if (d->control) {
                control_set_accounts(d->control, NULL);
                control_set_credits(d->control, NULL);
        }
        accounts_set_credits(d->accounts, NULL);
        d->credits = credits_free(d->credits);
        bus_service_set_accounts(d->bus, NULL);
        bus_service_set_demand(d->bus, NULL);
        d->accounts = accounts_free(d->accounts);
        d->demand = demand_free(d->demand);
        /* The bus first (pending calls are answered), then lending, which
         * thaws what it froze while the pools still exist. */
        d->bus = bus_service_free(d->bus);
        lending_stop(d->lending);
        d->lending = lending_free(d->lending);
        d->system_bus = sd_bus_flush_close_unref(d->system_bus);
        d->control = control_free(d->control);
        d->network = network_free(d->network);
        d->skills = skills_free(d->skills);
        d->event = sd_event_unref(d->event);
        identity_free(d->identity);
        d->identity = NULL;
        free(d->state_dir);
        d->state_dir = NULL;
        config_done(&d->config);
}

int daemon_run(const struct daemon_options *options) {
        _cleanup_free_ char *error = NULL;
        struct daemon d = { .options = *options };
        bool created = false;
        int r, status = EXIT_FAILURE;

        r = config_load(&d.config, options->config_path, options->config_required, &error);
        if (r < 0) {
                log_error("%s", error ?: "Failed to load the configuration");
                log_error("Refusing to start with an invalid configuration; "
                          "check it with 'swarmd --check-config %s'.", options->config_path);
                config_done(&d.config);
                return EXIT_CONFIG;
        }
        daemon_apply_logging(&d);

        log_info("swarmd %s starting (configuration %s%s).", PACKAGE_VERSION, options->config_path,
                 r == 0 && access(options->config_path, F_OK) < 0 ? ", not present: using defaults" : "");

        d.state_dir = daemon_resolve_state_dir(options->state_dir, d.config.state_directory);
        if (!d.state_dir) {
                log_error_errno(ENOMEM, "Out of memory.");
                goto out;
        }

        r = identity_load_or_create(d.state_dir, &d.identity, &created);
        if (r < 0)
                goto out;       /* identity explains itself */
        log_info("%s node identity %s in %s.", created ? "Created" : "Loaded",
                 d.identity->node_id, d.state_dir);

        r = daemon_setup_event_loop(&d);
        if (r < 0)
                goto out;

        if (d.config.network_enabled) {
                sd_notify(false, "STATUS=Joining the swarm");
                r = network_new(d.event, &d.config, d.identity, &d.network);
                if (r < 0) {
                        /* An address this host does not have or a name it
                         * cannot resolve will not work on a restart either. */
                        if (r == -EINVAL || r == -EADDRNOTAVAIL || r == -ENODEV || r == -EACCES)
                                status = EXIT_CONFIG;
                        goto out;       /* network explains itself */
                }
        }

        {
                _cleanup_free_ char *path = control_socket_path(d.state_dir);
                if (!path || control_new(d.event, path, d.network, &d.control) < 0)
                        log_warning("No control socket: swarmctl cannot query this daemon.");
        }

        r = bus_service_new(d.event, &d.config, d.identity, &d.bus);
        if (r < 0) {
                log_error_errno(r, "Failed to set up the D-Bus service: %m");
                goto out;
        }

        sd_notify(false, "STATUS=Starting skill workers");
        r = skills_new(d.event, &d.config, on_skills_settled, &d, &d.skills);
        if (r < 0) {
                log_error_errno(r, "Failed to start the skills: %m");
                goto out;
        }

        r = daemon_open_system_bus(&d);
        if (r < 0)
                goto out;
        r = lending_new(d.event, d.system_bus, &d.config, d.skills, d.network, &d.lending);
        if (r < 0) {
                log_error_errno(r, "Failed to set up the lending switch: %m");
                if (r == -EINVAL)
                        status = EXIT_CONFIG;
                goto out;
        }
        lending_set_changed_callback(d.lending, on_lending_changed, &d);
        r = daemon_open_accounts(&d);
        if (r < 0)
                goto out;
        if (d.network) {
                r = jobs_channel_new(d.network, d.config.network_max_message_size, &d.jobs_channel);
                if (r >= 0)
                        r = provider_new(d.event, d.network, d.skills, d.lending, d.config.network_max_message_size,
                                         d.config.testing_corrupt_results, &d.provider);
                if (r < 0) {
                        log_error_errno(r, "Failed to set up the jobs channel: %m");
                        goto out;
                }
                provider_set_event_callback(d.provider, on_provider_event, &d);
                provider_set_corrupt_stream(d.provider, d.config.testing_corrupt_stream);
                r = provider_set_allowed_requesters(d.provider, d.config.jobs_allowed_requesters);
                if (r < 0) {
                        status = EXIT_CONFIG;
                        goto out;
                }
                provider_set_accounts(d.provider, d.accounts, d.demand);
                provider_attach(d.provider, d.jobs_channel);
                jobs_channel_set_accounts(d.jobs_channel, d.accounts);
        }
        r = requester_new(d.event, d.network, d.skills, d.provider, d.config.network_max_message_size,
                          &d.requester);
        if (r < 0) {
                log_error_errno(r, "Failed to set up the requester: %m");
                goto out;
        }
        requester_set_accounts(d.requester, d.accounts);
        r = requester_set_check_policy(d.requester, &(struct check_policy) {
                .percent = (unsigned) d.config.verification_check_percent,
                .after_failure_percent = (unsigned) d.config.verification_after_failure_percent,
                .measured_at = (double) d.config.verification_measured_at,
                /* A failure decays with reputation.half_life: half a
                 * failure left means one within about a half-life. */
                .recent_failures = 0.5,
        }, d.config.verification_sampled_skills);
        if (r < 0) {
                log_error_errno(r, "Failed to set up sampled verification: %m");
                goto out;
        }
        if (d.control)
                control_set_requester(d.control, d.requester);
        if (d.jobs_channel)
                requester_attach(d.requester, d.jobs_channel);
        r = challenge_new(d.event, d.requester, d.network, d.config.reputation_challenge_interval,
                          d.config.network_max_message_size, &d.challenge);
        if (r < 0) {
                log_error_errno(r, "Failed to set up the hardware challenge: %m");
                goto out;
        }
        {
                _cleanup_free_ char *path = jobs_socket_path(d.state_dir);
                if (!path || jobs_socket_new(d.event, path, d.requester, &d.jobs_socket) < 0)
                        log_warning("No jobs socket: swarmctl submit cannot reach this daemon.");
        }
        r = bus_service_start(d.bus, d.lending, d.skills, d.network);
        if (r < 0)
                goto out;
        skills_set_changed_callback(d.skills, on_skills_changed, &d);
        if (d.network)
                network_set_members_callback(d.network, on_members_changed, &d);
        r = sd_event_add_time_relative(d.event, &d.record_timer, CLOCK_MONOTONIC, 2 * 1000 * 1000, 0,
                                       on_record_timer, &d);
        if (r < 0) {
                log_error_errno(r, "Failed to set up a timer: %m");
                goto out;
        }

        r = sd_event_loop(d.event);
        if (r < 0) {
                log_error_errno(r, "Event loop failed: %m");
                goto out;
        }

        log_info("Stopped.");
        status = EXIT_SUCCESS;
out:
        daemon_done(&d);
        return status;
}

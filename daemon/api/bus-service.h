/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* swarmd on D-Bus: org.swarmharness.Swarm1 at /org/swarmharness/Swarm1,
 * the interface defined (and documented) in dbus/org.swarmharness.Swarm1.xml,
 * served from the sd-event loop with an sd-bus vtable.  Reading is open
 * but for Balance (authz_may_read_ledger()); state changes go through
 * authz.h.
 *
 * D-Bus is optional: when dbus.bus is none or the bus cannot be reached,
 * swarmd runs without it (logged), and every function here accepts a NULL
 * service and does nothing. */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bus-api.h"
#include "config.h"


struct accounts;
struct bus_service;
struct identity;
struct lending;
struct network;
struct skills;

/* Connects to the bus that dbus.bus names (auto: the system bus as root or
 * when there is no session bus, as for a system service running as its own
 * user; the session bus otherwise) and attaches it to event.  Returns 0 with
 * *ret NULL when D-Bus is off or unreachable (a warning says so). */
int bus_service_new(sd_event *event, const struct config *config, const struct identity *identity,
                    struct bus_service **ret);
struct bus_service *bus_service_free(struct bus_service *s);

/* The connection, or NULL; whether it is the system bus. */
sd_bus *bus_service_bus(const struct bus_service *s);
bool bus_service_is_system_bus(const struct bus_service *s);

/* Publishes the object and requests the name; lending, skills and network
 * are borrowed and must outlive the service (each may be NULL).  A name
 * that cannot be had is logged, not fatal. */
int bus_service_start(struct bus_service *s, struct lending *lending, struct skills *skills,
                      struct network *network);

/* The ledger behind the Balance property; NULL until set (Balance then
 * fails: the ledger is not open).  Borrowed: unset it before freeing. */
void bus_service_set_accounts(struct bus_service *s, struct accounts *a);
/* Where the price now comes from (the Skills property); NULL: list prices. */
struct demand;
void bus_service_set_demand(struct bus_service *s, struct demand *d);

/* Compares the properties with what clients last saw and emits
 * PropertiesChanged for those that differ, now. */
void bus_service_check_changes(struct bus_service *s);

/* Something a property shows may have changed (lending, a skill's
 * workers, the peers): bus_service_check_changes() runs once from the
 * loop, however many changes came before it.  NULL is fine. */
void bus_service_changed(struct bus_service *s);

/* JobStarted/JobFinished, for the jobs code once it runs remote jobs
 * (result: "ok", "failed", "cancelled", "timeout").  0 or negative errno;
 * 0 without a service. */
int bus_service_emit_job_started(struct bus_service *s, const char *job, const char *skill,
                                 const char *requester);
int bus_service_emit_job_finished(struct bus_service *s, const char *job, const char *skill,
                                  const char *requester, const char *result, uint64_t duration_usec,
                                  uint64_t price);

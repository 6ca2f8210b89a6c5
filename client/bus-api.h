/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* swarmd's names on D-Bus, for its clients and for the service itself
 * (daemon/api/bus-service.c); the interface is defined and documented in
 * dbus/org.swarmharness.Swarm1.xml. */

#define BUS_SERVICE_NAME "org.swarmharness.Swarm1"
#define BUS_SERVICE_PATH "/org/swarmharness/Swarm1"
#define BUS_SERVICE_INTERFACE "org.swarmharness.Swarm1"

#define BUS_ERROR_NOT_AUTHORIZED "org.swarmharness.Swarm1.Error.NotAuthorized"
#define BUS_ERROR_INVALID_ARGUMENT "org.swarmharness.Swarm1.Error.InvalidArgument"
#define BUS_ERROR_FAILED "org.swarmharness.Swarm1.Error.Failed"

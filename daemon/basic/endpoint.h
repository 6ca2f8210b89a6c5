/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The shape of the ZeroMQ endpoints swarmd binds, advertises and dials,
 * checked before anything is bound: "tcp://HOST:PORT", HOST an IPv4
 * address, a bracketed IPv6 address, a host or interface name, or "*" for
 * any (bind only); PORT a decimal 0-65535 (0, "any free port", for bind
 * only). */

#include <stdbool.h>
#include <stddef.h>

#define ENDPOINT_MAX 256u       /* a record's strings are at most this (WIRE_STRING_MAX) */

enum {
        ENDPOINT_BIND = 1 << 0, /* "*" and port 0 allowed */
};

/* true, or false with why (one short sentence) in error. */
bool endpoint_valid(const char *s, unsigned flags, char *error, size_t size);

/* Whether the endpoint's HOST is the IP address address (text, as ZeroMQ
 * reports a connection's Peer-Address; IPv4 and its IPv4-mapped IPv6 form
 * are the same).  A host name is never an address. */
bool endpoint_host_is_address(const char *endpoint, const char *address);

/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "endpoint.h"

static bool host_name_valid(const char *s, size_t n) {
        size_t label = 0;

        if (n == 0 || n > 253)
                return false;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];

                if (c == '.') {
                        if (label == 0)
                                return false;
                        label = 0;
                        continue;
                }
                if (!isalnum(c) && c != '-' && c != '_')
                        return false;
                if (++label > 63)
                        return false;
        }
        return label > 0;
}

bool endpoint_valid(const char *s, unsigned flags, char *error, size_t size) {
        const char *host, *colon, *p;
        char buf[INET6_ADDRSTRLEN + 1];
        unsigned long port = 0;
        size_t host_len;
        unsigned char addr[16];

        if (strlen(s) > ENDPOINT_MAX) {
                snprintf(error, size, "longer than %u characters", ENDPOINT_MAX);
                return false;
        }
        if (strncmp(s, "tcp://", 6) != 0) {
                snprintf(error, size, "\"%s\" is not tcp://HOST:PORT", s);
                return false;
        }
        host = s + 6;
        colon = strrchr(host, ':');
        if (!colon || colon == host) {
                snprintf(error, size, "\"%s\" has no HOST:PORT", s);
                return false;
        }
        host_len = (size_t) (colon - host);

        for (p = colon + 1; *p; p++) {
                if (!isdigit((unsigned char) *p) || port > 65535) {
                        snprintf(error, size, "\"%s\": the port is not a number from 0 to 65535", s);
                        return false;
                }
                port = port * 10 + (unsigned long) (*p - '0');
        }
        if (p == colon + 1 || port > 65535) {
                snprintf(error, size, "\"%s\": the port is not a number from 0 to 65535", s);
                return false;
        }
        if (port == 0 && !(flags & ENDPOINT_BIND)) {
                snprintf(error, size, "\"%s\": port 0 (any free port) is only for bind", s);
                return false;
        }

        if (host_len == 1 && host[0] == '*') {
                if (flags & ENDPOINT_BIND)
                        return true;
                snprintf(error, size, "\"%s\": \"*\" (any address) is only for bind", s);
                return false;
        }
        if (host[0] == '[') {
                if (host_len < 3 || host[host_len - 1] != ']' || host_len - 2 >= sizeof(buf))
                        goto bad_host;
                memcpy(buf, host + 1, host_len - 2);
                buf[host_len - 2] = '\0';
                if (inet_pton(AF_INET6, buf, addr) != 1)
                        goto bad_host;
                return true;
        }
        if (host_len < sizeof(buf)) {
                memcpy(buf, host, host_len);
                buf[host_len] = '\0';
                if (inet_pton(AF_INET, buf, addr) == 1)
                        return true;
        }
        /* Digits and dots only, and not an IPv4 address: a typo, not a name. */
        if (host_name_valid(host, host_len) && strspn(host, "0123456789.") < host_len)
                return true;
bad_host:
        snprintf(error, size, "\"%s\": \"%.*s\" is not an IPv4 address, a [bracketed] IPv6 address or a host name",
                 s, (int) host_len, host);
        return false;
}

/* An address as 16 bytes (IPv4 as ::ffff:a.b.c.d, as a dual-stack socket
 * reports it). */
static bool address_parse(const char *s, size_t n, unsigned char out[16]) {
        char buf[INET6_ADDRSTRLEN + 1];
        unsigned char v4[4];

        if (n == 0 || n >= sizeof(buf))
                return false;
        memcpy(buf, s, n);
        buf[n] = '\0';
        if (inet_pton(AF_INET, buf, v4) == 1) {
                memset(out, 0, 10);
                out[10] = out[11] = 0xff;
                memcpy(out + 12, v4, 4);
                return true;
        }
        return inet_pton(AF_INET6, buf, out) == 1;
}

bool endpoint_host_is_address(const char *endpoint, const char *address) {
        unsigned char a[16], b[16];
        const char *host, *end;

        if (!endpoint || !address || strncmp(endpoint, "tcp://", 6) != 0)
                return false;
        host = endpoint + 6;
        if (*host == '[') {
                host++;
                end = strchr(host, ']');
        } else
                end = strrchr(host, ':');
        if (!end)
                return false;
        return address_parse(host, (size_t) (end - host), a) && address_parse(address, strlen(address), b) &&
               memcmp(a, b, sizeof(a)) == 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "beacon.h"
#include "log.h"
#include "macro.h"
#include "wire.h"

struct beacon {
        int fd;
        sd_event_source *io, *timer;
        struct sockaddr_in to;
        uint64_t interval_usec;
        beacon_record_fn record;
        beacon_heard_fn heard;
        void *userdata;
};

static int beacon_send(struct beacon *b) {
        const Swarm__SignedRecord *self = b->record(b->userdata);
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        Swarm__PushPull pp = SWARM__PUSH_PULL__INIT;
        _cleanup_free_ uint8_t *data = NULL;
        size_t size;
        int r;

        if (!self)
                return -ENOENT;
        /* A reply is never answered: the beacon is an announcement. */
        pp.is_reply = true;
        pp.sender = (Swarm__SignedRecord *) self;
        e.body_case = SWARM__ENVELOPE__BODY_PUSH_PULL;
        e.push_pull = &pp;
        r = wire_encode(&e, &data, &size);
        if (r < 0)
                return r;
        if (sendto(b->fd, data, size, MSG_DONTWAIT, (struct sockaddr *) &b->to, sizeof(b->to)) < 0)
                return negative_errno();
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct beacon *b = userdata;
        int r = beacon_send(b);

        if (r < 0)
                log_debug_errno(r, "Beacon not sent: %m");
        (void) sd_event_source_set_time_relative(s, b->interval_usec);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct beacon *b = userdata;

        for (;;) {
                uint8_t buf[BEACON_MAX];
                Swarm__Envelope *e = NULL;
                Swarm__NodeRecord *rec = NULL;
                const char *reason;
                ssize_t k = recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);

                if (k < 0)
                        return 0;
                if ((size_t) k > sizeof(buf))
                        continue;       /* not one of ours */
                if (wire_decode(buf, (size_t) k, &e, &reason) < 0)
                        continue;
                if (e->body_case == SWARM__ENVELOPE__BODY_PUSH_PULL && e->push_pull->sender &&
                    wire_record_open(e->push_pull->sender, NULL, NULL, &rec, &reason) >= 0 && rec->n_endpoints > 0)
                        b->heard(rec, b->userdata);
                wire_record_free(rec);
                wire_envelope_free(e);
        }
}

int beacon_new(sd_event *event, const char *address, uint16_t port, uint64_t interval_usec,
               beacon_record_fn record, beacon_heard_fn heard, void *userdata, struct beacon **ret) {
        struct sockaddr_in addr = {
                .sin_family = AF_INET,
                .sin_port = htons(port),
                .sin_addr.s_addr = htonl(INADDR_ANY),
        };
        struct beacon *b;
        int one = 1, r;

        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        *b = (struct beacon) {
                .fd = -1,
                .to = { .sin_family = AF_INET, .sin_port = htons(port) },
                .interval_usec = interval_usec,
                .record = record,
                .heard = heard,
                .userdata = userdata,
        };
        if (inet_pton(AF_INET, address, &b->to.sin_addr) != 1) {
                r = log_error_errno(-EINVAL, "network.beacon_address: \"%s\" is not an IPv4 address", address);
                goto fail;
        }

        b->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (b->fd < 0) {
                r = log_error_errno(negative_errno(), "Failed to create the beacon socket: %m");
                goto fail;
        }
        /* Several nodes on one host (tests, containers) share the port. */
        (void) setsockopt(b->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        (void) setsockopt(b->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        (void) setsockopt(b->fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one));
        if (bind(b->fd, (struct sockaddr *) &addr, sizeof(addr)) < 0) {
                r = log_error_errno(negative_errno(), "Failed to bind the beacon to UDP port %u: %m", port);
                goto fail;
        }

        r = sd_event_add_io(event, &b->io, b->fd, EPOLLIN, on_io, b);
        if (r >= 0)
                r = sd_event_add_time_relative(event, &b->timer, CLOCK_MONOTONIC, 0, 0, on_timer, b);
        if (r < 0) {
                log_error_errno(r, "Failed to watch the beacon: %m");
                goto fail;
        }
        log_info("LAN beacon on UDP port %u, announcing to %s every %.1fs.", port, address,
                 (double) interval_usec / 1e6);
        *ret = b;
        return 0;
fail:
        beacon_free(b);
        return r;
}

struct beacon *beacon_free(struct beacon *b) {
        if (!b)
                return NULL;
        sd_event_source_disable_unref(b->io);
        sd_event_source_disable_unref(b->timer);
        if (b->fd >= 0)
                close(b->fd);
        free(b);
        return NULL;
}

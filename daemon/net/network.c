/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "beacon.h"
#include "endpoint.h"
#include "log.h"
#include "macro.h"
#include "network.h"
#include "node-record.h"
#include "time-util.h"
#include "transport.h"

struct network {
        sd_event *event;
        const struct identity *identity;
        struct transport *transport;
        struct membership *membership;
        sd_event_source *timer;
        struct beacon *beacon;          /* NULL: network.beacon off */
        char *advertise;
        char **seeds;                   /* "ID@endpoint", for re-joining when alone */
        sd_event_source *seed_timer;
        sd_event_source *police_timer;
        uint64_t ban_after_faults;
        uint8_t (*banned)[WIRE_NODE_ID_SIZE];
        size_t n_banned;
        Swarm__NodeRecord *self;        /* what we last published, owned */
        network_job_fn job_handler;
        void *job_userdata;
        network_job_fn credits_handler;
        void *credits_userdata;
        network_demand_fn demand_fn;
        void *demand_userdata;
        network_members_fn members_fn;
        void *members_userdata;
        uint64_t throughput_factor;     /* testing.throughput_factor */
        char description[128];
};

/* ---- Our own record ---- */

void network_set_demand_callback(struct network *n, network_demand_fn fn, void *userdata) {
        n->demand_fn = fn;
        n->demand_userdata = userdata;
}

int network_update_record(struct network *n, struct skills *skills, bool lending) {
        int r;

        r = node_record_update(n->self, skills, lending, n->demand_fn, n->demand_userdata, n->throughput_factor);
        if (r <= 0)
                return r;       /* unchanged: no new version, no gossip */
        return membership_update_self(n->membership, n->self);
}

/* ---- Membership I/O ---- */

static uint64_t io_now(void *userdata) {
        return now(CLOCK_MONOTONIC);
}

static uint64_t io_random(void *userdata) {
        uint64_t x;

        randombytes_buf(&x, sizeof(x));
        return x;
}

static int send_on(struct network *n, uint8_t channel, const uint8_t to[WIRE_NODE_ID_SIZE], const char *endpoint,
                   const uint8_t *data, size_t size) {
        struct iovec iov[2] = {
                { .iov_base = &channel, .iov_len = 1 },
                { .iov_base = (void *) data, .iov_len = size },
        };

        return transport_sendv(n->transport, to, endpoint, iov, 2);
}

static void io_send(void *userdata, const uint8_t to[WIRE_NODE_ID_SIZE], const char *endpoint,
                    const uint8_t *data, size_t size) {
        struct network *n = userdata;
        int r = send_on(n, NETWORK_CHANNEL_MEMBERSHIP, to, endpoint, data, size);

        if (r < 0 && r != -EAGAIN) {
                char id[NODE_ID_LEN + 1];
                node_id_from_public_key(to, id);
                log_debug_errno(r, "Cannot send to %.*s: %m", NODE_ID_SHORT_LEN, id);
        }
}

static int io_sign(void *userdata, const Swarm__NodeRecord *r, Swarm__SignedRecord *out) {
        struct network *n = userdata;

        return wire_record_sign(r, n->identity->secret_key, out);
}

static void io_member_changed(void *userdata, const struct member_info *m, bool forgotten) {
        struct network *n = userdata;
        char id[NODE_ID_LEN + 1];
        struct log_fields f = { .peer = id };

        if (m->self)
                return;
        if (n->members_fn)
                n->members_fn(n, n->members_userdata);
        node_id_from_public_key(m->id, id);
        if (forgotten)
                log_fields(LOG_INFO, &f, "Peer %.*s forgotten.", NODE_ID_SHORT_LEN, id);
        else
                log_fields(m->state == MEMBER_ALIVE ? LOG_INFO : LOG_NOTICE, &f,
                           "Peer %.*s (%s, %s) is %s, incarnation %" PRIu64 ".", NODE_ID_SHORT_LEN, id,
                           m->record->name && m->record->name[0] ? m->record->name : "unnamed",
                           m->record->n_endpoints > 0 ? m->record->endpoints[0] : "no endpoint",
                           member_state_to_string(m->state), m->incarnation);
}

static void io_debug(void *userdata, const uint8_t *peer, int error, const char *what) {
        char id[NODE_ID_LEN + 1];

        if (!peer) {
                log_debug_errno(error, "membership: %s: %m", what);
                return;
        }
        node_id_from_public_key(peer, id);
        log_debug_errno(error, "membership: %s (peer %.*s): %m", what, NODE_ID_SHORT_LEN, id);
}

static void rearm(struct network *n) {
        (void) sd_event_source_set_time(n->timer, membership_next_deadline(n->membership));
        (void) sd_event_source_set_enabled(n->timer, SD_EVENT_ONESHOT);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct network *n = userdata;

        membership_tick(n->membership);
        rearm(n);
        return 0;
}

static void on_receive(struct transport *t, const uint8_t from[WIRE_NODE_ID_SIZE], const uint8_t *data,
                       size_t size, void *userdata) {
        struct network *n = userdata;
        int r;

        /* The first byte says who the message is for. */
        if (size >= 1 && data[0] == NETWORK_CHANNEL_JOBS) {
                if (n->job_handler)
                        n->job_handler(n, from, data + 1, size - 1, n->job_userdata);
                return;
        }
        if (size >= 1 && data[0] == NETWORK_CHANNEL_CREDITS) {
                if (n->credits_handler)
                        n->credits_handler(n, from, data + 1, size - 1, n->credits_userdata);
                return;
        }
        if (size < 1 || data[0] != NETWORK_CHANNEL_MEMBERSHIP)
                r = -EBADMSG;
        else
                r = membership_receive(n->membership, from, data + 1, size - 1);

        if (r < 0) {
                char id[NODE_ID_LEN + 1];
                struct log_fields f = { .peer = id };
                node_id_from_public_key(from, id);
                log_fields(LOG_DEBUG, &f, "Dropped a message from %.*s: %s", NODE_ID_SHORT_LEN, id,
                           strerror(-r));
        }
        rearm(n);
}

/* ---- Seeds ---- */

static int parse_seed(const char *seed, uint8_t id[WIRE_NODE_ID_SIZE], const char **endpoint) {
        const char *at = strchr(seed, '@');
        char buf[NODE_ID_LEN + 1];

        if (!at || at - seed != NODE_ID_LEN || strncmp(at + 1, "tcp://", 6) != 0)
                return -EINVAL;
        memcpy(buf, seed, NODE_ID_LEN);
        buf[NODE_ID_LEN] = '\0';
        if (node_id_to_public_key(buf, id) < 0)
                return -EINVAL;
        *endpoint = at + 1;
        return 0;
}

static void join_seeds(struct network *n) {
        for (char **s = n->seeds; s && *s; s++) {
                uint8_t id[WIRE_NODE_ID_SIZE];
                const char *endpoint;

                if (parse_seed(*s, id, &endpoint) < 0 || memcmp(id, n->identity->public_key, WIRE_NODE_ID_SIZE) == 0)
                        continue;
                (void) membership_join(n->membership, id, endpoint);
        }
        rearm(n);
}

/* Seeds are retried while we know no one: a seed that was down when we
 * started must not leave us alone forever. */
static int on_seed_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct network *n = userdata;

        if (membership_count(n->membership) <= 1)
                join_seeds(n);
        (void) sd_event_source_set_time_relative(s, 5 * 1000 * 1000);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

/* ---- Bans ---- */

static bool is_banned(const struct network *n, const uint8_t *id) {
        for (size_t i = 0; i < n->n_banned; i++)
                if (memcmp(n->banned[i], id, WIRE_NODE_ID_SIZE) == 0)
                        return true;
        return false;
}

static int ban(struct network *n, const uint8_t id[WIRE_NODE_ID_SIZE]) {
        void *b;

        if (is_banned(n, id))
                return 0;
        b = realloc(n->banned, (n->n_banned + 1) * sizeof(*n->banned));
        if (!b)
                return -ENOMEM;
        n->banned = b;
        memcpy(n->banned[n->n_banned++], id, WIRE_NODE_ID_SIZE);
        transport_ban(n->transport, id, true);
        transport_disconnect(n->transport, id);
        return 1;
}

void network_ban(struct network *n, const uint8_t id[WIRE_NODE_ID_SIZE], const char *why) {
        char s[NODE_ID_LEN + 1];

        if (ban(n, id) <= 0)
                return;
        node_id_from_public_key(id, s);
        log_fields(LOG_WARNING, &(struct log_fields) { .peer = s }, "Banned peer %.*s: %s.", NODE_ID_SHORT_LEN, s,
                   why);
}

/* Bans peers that keep sending bad records or messages: their handshakes
 * are refused from then on. */
static int on_police_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct network *n = userdata;
        size_t count = membership_count(n->membership);

        for (size_t i = 0; i < count; i++) {
                struct member_info m;
                char id[NODE_ID_LEN + 1];

                if (membership_get(n->membership, i, &m) < 0 || m.self || m.faults < n->ban_after_faults ||
                    is_banned(n, m.id))
                        continue;
                if (ban(n, m.id) < 0)
                        break;
                node_id_from_public_key(m.id, id);
                log_fields(LOG_WARNING, &(struct log_fields) { .peer = id },
                           "Banned peer %.*s after %u bad records or messages (network.ban_after_faults).",
                           NODE_ID_SHORT_LEN, id, m.faults);
        }
        (void) sd_event_source_set_time_relative(s, 1000 * 1000);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

/* ---- LAN beacon ---- */

static const Swarm__SignedRecord *beacon_record(void *userdata) {
        struct network *n = userdata;
        struct member_info self;

        if (membership_find(n->membership, n->identity->public_key, &self) < 0)
                return NULL;
        return self.signed_record;
}

static void beacon_heard(const Swarm__NodeRecord *rec, void *userdata) {
        struct network *n = userdata;
        struct member_info known;
        char id[NODE_ID_LEN + 1];

        if (memcmp(rec->node_id.data, n->identity->public_key, WIRE_NODE_ID_SIZE) == 0 ||
            membership_find(n->membership, rec->node_id.data, &known) >= 0)
                return;
        node_id_from_public_key(rec->node_id.data, id);
        log_info("Heard node %.*s announcing itself at %s; joining it.", NODE_ID_SHORT_LEN, id, rec->endpoints[0]);
        (void) membership_join(n->membership, rec->node_id.data, rec->endpoints[0]);
        rearm(n);
}

/* ---- Set-up ---- */

/* "tcp://0.0.0.0:7946" → "tcp://<first non-loopback IPv4>:<bound port>". */
static int derive_advertise(const char *bound, char **ret) {
        struct ifaddrs *ifs = NULL;
        char addr[INET_ADDRSTRLEN] = "127.0.0.1";
        const char *port = strrchr(bound, ':');

        if (strncmp(bound, "tcp://0.0.0.0:", 14) != 0 && strncmp(bound, "tcp://*:", 8) != 0)
                return (*ret = strdup(bound)) ? 0 : -ENOMEM;
        if (getifaddrs(&ifs) == 0) {
                for (struct ifaddrs *i = ifs; i; i = i->ifa_next)
                        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && !(i->ifa_flags & IFF_LOOPBACK) &&
                            (i->ifa_flags & IFF_UP)) {
                                inet_ntop(AF_INET, &((struct sockaddr_in *) i->ifa_addr)->sin_addr, addr,
                                          sizeof(addr));
                                break;
                        }
                freeifaddrs(ifs);
        }
        return asprintf(ret, "tcp://%s%s", addr, port) < 0 ? -ENOMEM : 0;
}

_Static_assert(CONFIG_NODE_NAME_MAX <= WIRE_STRING_MAX, "a configured name must fit a record");
_Static_assert(CONFIG_NODE_ID_LEN == NODE_ID_LEN, "one node id length");
_Static_assert(ENDPOINT_MAX <= WIRE_STRING_MAX, "a configured endpoint must fit a record");

int network_new(sd_event *event, const struct config *c, const struct identity *identity,
                struct network **ret) {
        struct transport_config tc = {
                .bind = c->network_bind,
                .insecure = c->network_insecure,
                .max_message_size = c->network_max_message_size,
                .rate_per_second = (double) c->network_rate_limit,
                .rate_burst = (unsigned) (2 * c->network_rate_limit),
                .send_queue = 1000,
        };
        struct membership_config mc;
        struct membership_io io = {
                .now_usec = io_now,
                .random_u64 = io_random,
                .send = io_send,
                .sign = io_sign,
                .member_changed = io_member_changed,
                .debug = io_debug,
        };
        struct network *n;
        char host[256] = "";
        int r;

        for (char **s = c->network_seeds; s && *s; s++) {
                uint8_t id[WIRE_NODE_ID_SIZE];
                const char *endpoint;
                if (parse_seed(*s, id, &endpoint) < 0)
                        return log_error_errno(-EINVAL, "network.seeds: \"%s\" is not NODEID@tcp://HOST:PORT "
                                               "(NODEID as printed by swarmd --show-identity)", *s);
        }

        n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        n->event = sd_event_ref(event);
        n->identity = identity;
        n->throughput_factor = c->testing_throughput_factor;
        if (n->throughput_factor > 1)
                log_warning("testing.throughput_factor is %" PRIu64 ": this node advertises %" PRIu64 "× the "
                            "throughput its skills measured (a test of the hardware challenge).",
                            n->throughput_factor, n->throughput_factor);

        r = transport_new(event, &tc, identity->secret_key, on_receive, n, &n->transport);
        if (r < 0) {
                log_error_errno(r, "Failed to listen on %s: %m", c->network_bind);
                goto fail;
        }
        r = c->network_advertise[0] ? ((n->advertise = strdup(c->network_advertise)) ? 0 : -ENOMEM)
                                    : derive_advertise(transport_endpoint(n->transport), &n->advertise);
        if (r < 0)
                goto fail;

        if (!c->node_name[0])
                (void) gethostname(host, sizeof(host) - 1);
        n->self = node_record_new(identity->public_key, n->advertise, c->node_name[0] ? c->node_name : host);
        if (!n->self) {
                r = -ENOMEM;
                goto fail;
        }

        membership_config_default(&mc);
        mc.probe_interval_usec = c->network_probe_interval;
        mc.probe_timeout_usec = c->network_probe_interval * 2 / 5;
        io.userdata = n;
        r = membership_new(&mc, &io, n->self, &n->membership);
        if (r < 0) {
                log_error_errno(r, "Failed to set up membership: %m");
                goto fail;
        }

        r = sd_event_add_time(event, &n->timer, CLOCK_MONOTONIC, membership_next_deadline(n->membership), 1000,
                              on_timer, n);
        if (r < 0)
                goto fail;

        if (c->network_seeds && c->network_seeds[0]) {
                size_t k = 0;
                while (c->network_seeds[k])
                        k++;
                n->seeds = calloc(k + 1, sizeof(char *));
                if (!n->seeds) {
                        r = -ENOMEM;
                        goto fail;
                }
                for (size_t i = 0; i < k; i++)
                        if (!(n->seeds[i] = strdup(c->network_seeds[i]))) {
                                r = -ENOMEM;
                                goto fail;
                        }
                join_seeds(n);
                r = sd_event_add_time_relative(event, &n->seed_timer, CLOCK_MONOTONIC, 5 * 1000 * 1000, 0,
                                               on_seed_timer, n);
                if (r < 0)
                        goto fail;
        }

        n->ban_after_faults = c->network_ban_after_faults;
        if (n->ban_after_faults > 0) {
                r = sd_event_add_time_relative(event, &n->police_timer, CLOCK_MONOTONIC, 1000 * 1000, 0,
                                               on_police_timer, n);
                if (r < 0)
                        goto fail;
        }

        if (c->network_beacon) {
                r = beacon_new(event, c->network_beacon_address, (uint16_t) c->network_beacon_port,
                               c->network_beacon_interval, beacon_record, beacon_heard, n, &n->beacon);
                if (r < 0)
                        goto fail;
        }

        log_info("Listening on %s, advertised as %s%s.", transport_endpoint(n->transport), n->advertise,
                 c->network_insecure ? " (INSECURE: no authentication, no encryption)" : " (CurveZMQ)");
        *ret = n;
        return 0;
fail:
        network_free(n);
        return r;
}

struct network *network_free(struct network *n) {
        if (!n)
                return NULL;
        sd_event_source_disable_unref(n->timer);
        sd_event_source_disable_unref(n->seed_timer);
        sd_event_source_disable_unref(n->police_timer);
        free(n->banned);
        beacon_free(n->beacon);
        membership_free(n->membership);
        transport_free(n->transport);
        node_record_free(n->self);
        strv_free(n->seeds);
        free(n->advertise);
        sd_event_unref(n->event);
        free(n);
        return NULL;
}

void network_set_members_callback(struct network *n, network_members_fn fn, void *userdata) {
        n->members_fn = fn;
        n->members_userdata = userdata;
}

void network_set_job_handler(struct network *n, network_job_fn fn, void *userdata) {
        n->job_handler = fn;
        n->job_userdata = userdata;
}

static int send_to_member(struct network *n, uint8_t channel, const uint8_t to[WIRE_NODE_ID_SIZE],
                          const uint8_t *data, size_t size) {
        struct member_info m;
        const char *endpoint = NULL;

        if (membership_find(n->membership, to, &m) >= 0 && m.record->n_endpoints > 0)
                endpoint = m.record->endpoints[0];
        return send_on(n, channel, to, endpoint, data, size);
}

int network_send_job(struct network *n, const uint8_t to[WIRE_NODE_ID_SIZE], const uint8_t *data, size_t size) {
        return send_to_member(n, NETWORK_CHANNEL_JOBS, to, data, size);
}

void network_set_credits_handler(struct network *n, network_job_fn fn, void *userdata) {
        n->credits_handler = fn;
        n->credits_userdata = userdata;
}

int network_send_credits(struct network *n, const uint8_t to[WIRE_NODE_ID_SIZE], const uint8_t *data,
                         size_t size) {
        return send_to_member(n, NETWORK_CHANNEL_CREDITS, to, data, size);
}

const uint8_t *network_self_id(const struct network *n) {
        return n->identity->public_key;
}

const uint8_t *network_secret_key(const struct network *n) {
        return n->identity->secret_key;
}

const char *network_endpoint(const struct network *n) {
        return n->advertise;
}

struct membership *network_membership(const struct network *n) {
        return n->membership;
}

const char *network_describe(struct network *n) {
        size_t total = membership_count(n->membership);
        unsigned alive = 0, suspect = 0, dead = 0;

        for (size_t i = 0; i < total; i++) {
                struct member_info m;
                if (membership_get(n->membership, i, &m) < 0 || m.self)
                        continue;
                if (m.state == MEMBER_ALIVE)
                        alive++;
                else if (m.state == MEMBER_SUSPECT)
                        suspect++;
                else if (m.state == MEMBER_DEAD)
                        dead++;
        }
        snprintf(n->description, sizeof(n->description), "%u peer%s alive, %u suspect, %u dead",
                 alive, alive == 1 ? "" : "s", suspect, dead);
        return n->description;
}

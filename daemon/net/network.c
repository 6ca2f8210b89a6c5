/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdarg.h>
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
#include "reachability.h"
#include "relay-box.h"
#include "relay.h"
#include "time-util.h"
#include "transport.h"

/* Notices about misbehaving peers (a malformed relay frame, a peer over a
 * relay quota) per window, so a flood cannot flood the journal too. */
#define COMPLAINTS_PER_WINDOW 20
#define COMPLAINT_WINDOW_USEC (10ull * 1000 * 1000)

/* Relayed messages up to this size go through two relays (see
 * send_via_relay()). */
#define RELAY_DUPLICATE_MAX 4096

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

        /* Reaching and being reached through relays (issue 21). */
        uint64_t max_message_size;
        struct relay *relay;            /* NULL: relay.enabled off */
        struct relay_box *box;          /* end-to-end boxes through relays */
        struct reach *reach;            /* dial-back, and our relays when NATed */
        sd_event_source *reach_timer;
        unsigned complaints;
        uint64_t complaints_window;
        struct network_relay_stats relay_stats;
        uint64_t dial_backs_window;     /* start of the minute counted */
        unsigned dial_backs;            /* made in it */
        uint64_t throughput_factor;     /* testing.throughput_factor */
        char description[128];
};

static bool is_banned(const struct network *n, const uint8_t *id);

/* Dial-backs we make for others, at most this many a minute: each opens a
 * connection for a peer that asked. */
#define DIAL_BACKS_PER_MINUTE 30

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

static int send_via_relay(struct network *n, const uint8_t to[WIRE_NODE_ID_SIZE], const Swarm__NodeRecord *rec,
                          const struct iovec *iov, size_t n_iov);

/* How a message to `to` travels (issue 21):
 *   - back over its own connection to us when it is our relay client;
 *   - through one of its relays when its record says PRIVATE and names some;
 *   - back over its own connection when it is still CHECKING (or PRIVATE
 *     with no relay yet) and has one to us: what lets a NATed node join
 *     before it knows it is NATed;
 *   - else directly, at endpoint (dialling it if need be). */
static int send_routed(struct network *n, const uint8_t to[WIRE_NODE_ID_SIZE], const char *endpoint,
                       const struct iovec *iov, size_t n_iov) {
        struct member_info m;
        bool known = membership_find(n->membership, to, &m) >= 0;
        int r;

        if (n->relay && relay_is_client(n->relay, to, now(CLOCK_MONOTONIC))) {
                r = transport_replyv(n->transport, to, iov, n_iov);
                if (r != -ENOTCONN && r != -EHOSTUNREACH)
                        return r;
        }
        if (known && m.record->reachability == SWARM__REACHABILITY__REACH_PRIVATE && m.record->n_relays > 0) {
                r = send_via_relay(n, to, m.record, iov, n_iov);
                if (r >= 0 || r == -EAGAIN || r == -EMSGSIZE)
                        return r;
        }
        if (known && (m.record->reachability == SWARM__REACHABILITY__REACH_CHECKING ||
                      m.record->reachability == SWARM__REACHABILITY__REACH_PRIVATE) &&
            transport_can_reply(n->transport, to)) {
                r = transport_replyv(n->transport, to, iov, n_iov);
                if (r != -ENOTCONN && r != -EHOSTUNREACH)
                        return r;
        }
        return transport_sendv(n->transport, to, endpoint, iov, n_iov);
}

static int send_on(struct network *n, uint8_t channel, const uint8_t to[WIRE_NODE_ID_SIZE], const char *endpoint,
                   const uint8_t *data, size_t size) {
        struct iovec iov[2] = {
                { .iov_base = &channel, .iov_len = 1 },
                { .iov_base = (void *) data, .iov_len = size },
        };

        return send_routed(n, to, endpoint, iov, 2);
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

static void on_relay_message(struct network *n, const uint8_t from[WIRE_NODE_ID_SIZE], const uint8_t *data,
                             size_t size);

/* One message from the authenticated peer from, directly or out of a box
 * a relay passed on (relayed: a relay message inside is refused, so boxes
 * do not nest). */
static void dispatch(struct network *n, const uint8_t from[WIRE_NODE_ID_SIZE], const uint8_t *data, size_t size,
                     bool relayed) {
        int r;

        /* The first byte says who the message is for. */
        if (size >= 1 && data[0] == NETWORK_CHANNEL_RELAY) {
                if (!relayed)
                        on_relay_message(n, from, data + 1, size - 1);
                return;
        }
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

static void on_receive(struct transport *t, const uint8_t from[WIRE_NODE_ID_SIZE], const uint8_t *data,
                       size_t size, void *userdata) {
        dispatch(userdata, from, data, size, false);
}

/* ---- Relays and reachability (issue 21) ---- */

static void complain(struct network *n, const uint8_t *peer, const char *format, ...)
        _printf_(3, 4);

/* A notice naming the peer, COMPLAINTS_PER_WINDOW per window at most (then
 * debug): what a peer sends must not flood the journal either. */
static void complain(struct network *n, const uint8_t *peer, const char *format, ...) {
        uint64_t t = now(CLOCK_MONOTONIC);
        char id[NODE_ID_LEN + 1], text[384];
        va_list ap;

        if (t >= n->complaints_window + COMPLAINT_WINDOW_USEC) {
                n->complaints_window = t;
                n->complaints = 0;
        }
        va_start(ap, format);
        vsnprintf(text, sizeof(text), format, ap);
        va_end(ap);
        node_id_from_public_key(peer, id);
        log_fields(n->complaints++ < COMPLAINTS_PER_WINDOW ? LOG_NOTICE : LOG_DEBUG,
                   &(struct log_fields) { .peer = id }, "Peer %.*s: %s", NODE_ID_SHORT_LEN, id, text);
}

/* Encodes m and sends it on the relay channel: back over the peer's own
 * connection (reply), directly to endpoint (a registration, a dial-back:
 * they must take that path), or routed as any message. */
enum relay_path {
        RELAY_PATH_ROUTED,
        RELAY_PATH_DIRECT,
        RELAY_PATH_REPLY,
        RELAY_PATH_REPLY_ONLY,          /* a delivery to our client: its connection or nothing */
};

static int relay_send(struct network *n, const uint8_t to[WIRE_NODE_ID_SIZE], const char *endpoint,
                      Swarm__RelayMessage *m, enum relay_path path) {
        _cleanup_free_ uint8_t *buf = NULL;
        uint8_t channel = NETWORK_CHANNEL_RELAY;
        size_t size;
        int r;

        r = relay_message_encode(m, n->max_message_size - 1, &buf, &size);
        if (r < 0)
                return r;
        struct iovec iov[2] = {
                { .iov_base = &channel, .iov_len = 1 },
                { .iov_base = buf, .iov_len = size },
        };
        switch (path) {
        case RELAY_PATH_REPLY_ONLY:
                return transport_replyv(n->transport, to, iov, 2);
        case RELAY_PATH_REPLY:
                r = transport_replyv(n->transport, to, iov, 2);
                if (r != -ENOTCONN && r != -EHOSTUNREACH)
                        return r;
                return send_routed(n, to, endpoint, iov, 2);
        case RELAY_PATH_ROUTED:
                return send_routed(n, to, endpoint, iov, 2);
        default:
                return transport_sendv(n->transport, to, endpoint, iov, 2);
        }
}

static const char *member_endpoint(struct network *n, const uint8_t *id) {
        struct member_info m;

        if (membership_find(n->membership, id, &m) >= 0 && m.record->n_endpoints > 0)
                return m.record->endpoints[0];
        return NULL;
}

/* Seals the message for `to` once and hands it to its relays: an alive one
 * first (a suspect one only when none is alive).  A small message (a
 * probe, gossip) goes through two relays when it lists two: a relay that
 * dies then costs no probe, so the node behind it is not suspected before
 * the relay is; the receiver's replay window drops the second copy.  Jobs
 * go through one, and a lost one is the requester's to reroute. */
static int send_via_relay(struct network *n, const uint8_t to[WIRE_NODE_ID_SIZE], const Swarm__NodeRecord *rec,
                          const struct iovec *iov, size_t n_iov) {
        Swarm__RelayMessage m = SWARM__RELAY_MESSAGE__INIT;
        Swarm__RelayForward f = SWARM__RELAY_FORWARD__INIT;
        _cleanup_free_ uint8_t *box = NULL;
        size_t box_size = 0, sent = 0, want;
        bool tried[WIRE_RELAYS_MAX] = {};
        int r = -ENOTCONN;

        for (unsigned pass = 0; pass < 2; pass++)
                for (size_t i = 0; i < rec->n_relays && i < WIRE_RELAYS_MAX; i++) {
                        const Swarm__RelayRef *ref = rec->relays[i];
                        struct member_info relay;
                        const char *endpoint = ref->endpoint;
                        int k;

                        if (tried[i] || memcmp(ref->node_id.data, n->identity->public_key, WIRE_NODE_ID_SIZE) == 0)
                                continue;       /* us: it is not our client (any more) */
                        if (membership_find(n->membership, ref->node_id.data, &relay) >= 0) {
                                if (relay.state == MEMBER_DEAD || relay.state == MEMBER_LEFT ||
                                    (pass == 0 && relay.state != MEMBER_ALIVE))
                                        continue;
                                if (relay.record->n_endpoints > 0)
                                        endpoint = relay.record->endpoints[0];
                        } else if (pass == 0)
                                continue;
                        tried[i] = true;
                        if (!box) {
                                r = relay_box_seal(n->box, to, iov, n_iov, &box, &box_size);
                                if (r < 0)
                                        return r;
                                f.peer.data = (uint8_t *) to;
                                f.peer.len = WIRE_NODE_ID_SIZE;
                                f.box.data = box;
                                f.box.len = box_size;
                                m.body_case = SWARM__RELAY_MESSAGE__BODY_FORWARD;
                                m.forward = &f;
                        }
                        k = relay_send(n, ref->node_id.data, endpoint, &m, RELAY_PATH_DIRECT);
                        if (k < 0) {
                                r = k;
                                continue;
                        }
                        n->relay_stats.sent_relayed++;
                        n->relay_stats.sent_relayed_bytes += box_size;
                        r = 0;
                        want = box_size <= RELAY_DUPLICATE_MAX ? 2 : 1;
                        if (++sent >= want)
                                return 0;
                }
        return sent > 0 ? 0 : r;
}

/* Our record says how we are reached: after a change of reachability or
 * of the relays that confirmed us. */
static void reach_publish(struct network *n) {
        const uint8_t *ids[REACH_RELAYS_MAX];
        const char *endpoints[REACH_RELAYS_MAX];
        enum reach_state state = reach_get_state(n->reach);
        size_t k = state == REACH_STATE_PRIVATE ? reach_get_relays(n->reach, ids, endpoints, REACH_RELAYS_MAX) : 0;
        int r;

        r = node_record_set_reach(n->self, (Swarm__Reachability) state, n->relay != NULL, ids, endpoints, k);
        if (r <= 0)
                return;
        if (state == REACH_STATE_PRIVATE) {
                char list[REACH_RELAYS_MAX * (NODE_ID_SHORT_LEN + 2) + 1] = "";
                for (size_t i = 0; i < k; i++) {
                        char id[NODE_ID_LEN + 1];
                        node_id_from_public_key(ids[i], id);
                        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%.*s", i ? ", " : "",
                                 NODE_ID_SHORT_LEN, id);
                }
                if (k > 0)
                        log_info("Not reachable at %s (peers could not dial it back): reached through relay%s %s.",
                                 n->advertise, k == 1 ? "" : "s", list);
                else
                        log_notice("Not reachable at %s (peers could not dial it back), and no relay yet: peers "
                                   "that we did not contact cannot reach us. Some peer must set relay.enabled.",
                                   n->advertise);
        } else if (state == REACH_STATE_PUBLIC)
                log_info("Reachable at %s: peers dialled it back.", n->advertise);
        (void) membership_update_self(n->membership, n->self);
        rearm(n);
}

static uint64_t io_reach_random(void *userdata) {
        return io_random(userdata);
}

static void io_send_dial_request(void *userdata, const uint8_t to[WIRE_NODE_ID_SIZE],
                                 const uint8_t nonce[REACH_NONCE_SIZE]) {
        struct network *n = userdata;
        Swarm__RelayMessage m = SWARM__RELAY_MESSAGE__INIT;
        Swarm__DialBackRequest d = SWARM__DIAL_BACK_REQUEST__INIT;
        struct member_info self;

        if (membership_find(n->membership, n->identity->public_key, &self) < 0)
                return;
        d.nonce.data = (uint8_t *) nonce;
        d.nonce.len = REACH_NONCE_SIZE;
        d.record = (Swarm__SignedRecord *) self.signed_record;
        m.body_case = SWARM__RELAY_MESSAGE__BODY_DIAL_REQUEST;
        m.dial_request = &d;
        (void) relay_send(n, to, member_endpoint(n, to), &m, RELAY_PATH_ROUTED);
}

static void io_send_register(void *userdata, const uint8_t relay[WIRE_NODE_ID_SIZE], const char *endpoint,
                             uint64_t seq) {
        struct network *n = userdata;
        Swarm__RelayMessage m = SWARM__RELAY_MESSAGE__INIT;
        Swarm__RelayRegister reg = SWARM__RELAY_REGISTER__INIT;

        reg.seq = seq;
        m.body_case = SWARM__RELAY_MESSAGE__BODY_REGISTER;
        m.register_ = &reg;
        /* Over our own connection to it: the one it answers and relays on. */
        (void) relay_send(n, relay, endpoint, &m, RELAY_PATH_DIRECT);
}

static void reach_rearm(struct network *n) {
        uint64_t t = reach_next_deadline(n->reach), soon = now(CLOCK_MONOTONIC) + USEC_PER_SEC;

        /* At least every second: the relay's leases expire on it too. */
        (void) sd_event_source_set_time(n->reach_timer, t < soon ? t : soon);
        (void) sd_event_source_set_enabled(n->reach_timer, SD_EVENT_ONESHOT);
}

static void reach_run(struct network *n) {
        size_t count = membership_count(n->membership), k = 0;
        _cleanup_free_ struct reach_peer *peers = calloc(count ? count : 1, sizeof(*peers));
        uint64_t t = now(CLOCK_MONOTONIC);

        if (!peers) {
                log_oom();
                return;
        }
        for (size_t i = 0; i < count; i++) {
                struct member_info m;

                if (membership_get(n->membership, i, &m) < 0 || m.self ||
                    (m.state != MEMBER_ALIVE && m.state != MEMBER_SUSPECT))
                        continue;
                peers[k++] = (struct reach_peer) {
                        .id = m.id,
                        .endpoint = m.record->n_endpoints > 0 ? m.record->endpoints[0] : NULL,
                        .state = (enum reach_state) m.record->reachability,
                        .relay_offered = m.record->relay_offered,
                        .suspect = m.state == MEMBER_SUSPECT,
                };
        }
        if (reach_tick(n->reach, t, peers, k) > 0)
                reach_publish(n);
        if (n->relay)
                relay_expire(n->relay, t);
}

static int on_reach_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct network *n = userdata;

        reach_run(n);
        reach_rearm(n);
        return 0;
}

static void relay_refuse(struct network *n, const uint8_t *sender, const uint8_t *peer, int status) {
        Swarm__RelayMessage m = SWARM__RELAY_MESSAGE__INIT;
        Swarm__RelayRefused f = SWARM__RELAY_REFUSED__INIT;

        f.peer.data = (uint8_t *) peer;
        f.peer.len = WIRE_NODE_ID_SIZE;
        f.status = status;
        m.body_case = SWARM__RELAY_MESSAGE__BODY_REFUSED;
        m.refused = &f;
        (void) relay_send(n, sender, member_endpoint(n, sender), &m, RELAY_PATH_REPLY);
}

/* A relay's side: passes a box on to its client, or says why not. */
static void relay_pass_on(struct network *n, const uint8_t *from, const Swarm__RelayForward *f) {
        Swarm__RelayMessage m = SWARM__RELAY_MESSAGE__INIT;
        Swarm__RelayForward d = SWARM__RELAY_FORWARD__INIT;
        char to_id[NODE_ID_LEN + 1];
        int r;

        if (!n->relay) {
                complain(n, from, "asked us to relay, but relaying is off here (relay.enabled).");
                relay_refuse(n, from, f->peer.data, -EPERM);
                return;
        }
        if (is_banned(n, from) || is_banned(n, f->peer.data))
                return;
        r = relay_admit(n->relay, from, f->peer.data, f->box.len, now(CLOCK_MONOTONIC));
        if (r == 0) {
                d.peer.data = (uint8_t *) from;
                d.peer.len = WIRE_NODE_ID_SIZE;
                d.box = f->box;
                m.body_case = SWARM__RELAY_MESSAGE__BODY_DELIVER;
                m.deliver = &d;
                /* Not routed otherwise: through another relay it would be
                 * a box in a box, which the client refuses. */
                r = relay_send(n, f->peer.data, NULL, &m, RELAY_PATH_REPLY_ONLY);
                if (r >= 0) {
                        n->relay_stats.relayed++;
                        n->relay_stats.relayed_bytes += f->box.len;
                        return;
                }
                if (r == -ENOTCONN || r == -EHOSTUNREACH) {
                        /* Its connection is gone: it registers again
                         * (anew, or elsewhere) when it notices. */
                        relay_unregister(n->relay, f->peer.data);
                        r = -ENOENT;
                }
        }
        node_id_from_public_key(f->peer.data, to_id);
        if (r == -EDQUOT || r == -EUSERS)
                complain(n, from, "refused to relay %zu bytes to %.*s: %s (relay.bandwidth, relay.burst, "
                         "relay.max_circuits).", f->box.len, NODE_ID_SHORT_LEN, to_id,
                         r == -EDQUOT ? "over the bandwidth quota" : "the client has too many peers through us");
        else
                log_debug_errno(r, "Did not relay to %.*s: %m", NODE_ID_SHORT_LEN, to_id);
        if (r != -EAGAIN)
                relay_refuse(n, from, f->peer.data, r < 0 ? r : -EIO);
}

/* A NATed node's side: a box a relay passed on from a peer (the relay is
 * trusted for nothing: the box is sealed between the sender and us). */
static void relay_take_delivery(struct network *n, const uint8_t *relay, Swarm__RelayForward *f) {
        uint8_t *plain;
        size_t size;
        int r;

        /* From any peer: the box, not the relay, says who sent it.  A
         * relay we gave up may still hold our lease (and peers our old
         * record) for a while; what it passes on is as good.  A banned
         * sender is not heard through a relay either. */
        if (is_banned(n, f->peer.data))
                return;
        /* Opened in place: the decoded message owns the bytes. */
        r = relay_box_open(n->box, f->peer.data, f->box.data, f->box.len, &plain, &size);
        if (r == -ESTALE) {
                /* Mostly the second copy of a small message (it went
                 * through two relays); a replay is dropped the same way. */
                n->relay_stats.duplicates++;
                return;
        }
        if (r < 0) {
                char src[NODE_ID_LEN + 1];
                node_id_from_public_key(f->peer.data, src);
                complain(n, relay, "passed on a box said to be from %.*s that does not open (forged or altered); "
                         "dropped.", NODE_ID_SHORT_LEN, src);
                return;
        }
        n->relay_stats.received_relayed++;
        dispatch(n, f->peer.data, plain, size, true);
}

static void on_relay_message(struct network *n, const uint8_t from[WIRE_NODE_ID_SIZE], const uint8_t *data,
                             size_t size) {
        _cleanup_(relay_message_freep) Swarm__RelayMessage *m = NULL;
        const char *reason = NULL;
        uint64_t t = now(CLOCK_MONOTONIC);
        int r;

        r = relay_message_decode(data, size, n->max_message_size, &m, &reason);
        if (r < 0) {
                complain(n, from, "sent a malformed relay message (%s); dropped.", reason ?: strerror(-r));
                return;
        }

        switch (m->body_case) {
        case SWARM__RELAY_MESSAGE__BODY_REGISTER: {
                Swarm__RelayMessage a = SWARM__RELAY_MESSAGE__INIT;
                Swarm__RelayRegistered reg = SWARM__RELAY_REGISTERED__INIT;

                reg.seq = m->register_->seq;
                if (!n->relay) {
                        reg.status = -EPERM;
                        reg.error = (char *) "relaying is off on this node (relay.enabled)";
                } else if (transport_receiving_reverse(n->transport)) {
                        /* We could not answer or relay on that path. */
                        reg.status = -EPROTO;
                        reg.error = (char *) "register over your own connection to the relay";
                } else {
                        r = relay_register(n->relay, from, t);
                        if (r < 0) {
                                reg.status = r;
                                reg.error = (char *) (r == -EUSERS ? "this relay serves relay.max_clients nodes "
                                                                     "already"
                                                                   : "out of memory");
                                complain(n, from, "asked us to relay for it: refused, %s.", reg.error);
                        } else {
                                reg.lease_ms = 15000;
                                if (r > 0) {
                                        char id[NODE_ID_LEN + 1];
                                        node_id_from_public_key(from, id);
                                        log_fields(LOG_INFO, &(struct log_fields) { .peer = id },
                                                   "Relaying for %.*s from now on.", NODE_ID_SHORT_LEN, id);
                                }
                        }
                }
                a.body_case = SWARM__RELAY_MESSAGE__BODY_REGISTERED;
                a.registered = &reg;
                (void) relay_send(n, from, NULL, &a, RELAY_PATH_REPLY);
                break;
        }
        case SWARM__RELAY_MESSAGE__BODY_REGISTERED:
                r = reach_on_registered(n->reach, from, m->registered->seq, m->registered->status,
                                        (uint64_t) m->registered->lease_ms * 1000, t);
                if (r >= 0 && m->registered->status < 0)
                        complain(n, from, "will not relay for us: %s.", m->registered->error);
                if (r > 0)
                        reach_publish(n);
                reach_rearm(n);
                break;
        case SWARM__RELAY_MESSAGE__BODY_FORWARD:
                relay_pass_on(n, from, m->forward);
                break;
        case SWARM__RELAY_MESSAGE__BODY_DELIVER:
                relay_take_delivery(n, from, m->deliver);
                break;
        case SWARM__RELAY_MESSAGE__BODY_REFUSED: {
                char id[NODE_ID_LEN + 1];

                node_id_from_public_key(m->refused->peer.data, id);
                log_debug_errno(m->refused->status, "Relay did not pass our message on to %.*s: %m",
                                NODE_ID_SHORT_LEN, id);
                n->relay_stats.refused++;
                break;
        }
        case SWARM__RELAY_MESSAGE__BODY_DIAL_REQUEST: {
                /* Dial the first endpoint of the record the asker signed,
                 * and only when its address is the one the asker's
                 * connection came from (as AutoNAT does): a record can
                 * name any address, and no one may aim us at another
                 * host.  A NATed asker's own address is not where its
                 * connection comes from: it is not dialled, and learns
                 * so by the silence.  At most DIAL_BACKS_PER_MINUTE. */
                Swarm__RelayMessage a = SWARM__RELAY_MESSAGE__INIT;
                Swarm__DialBack d = SWARM__DIAL_BACK__INIT;
                Swarm__NodeRecord *rec = NULL;
                const char *source = transport_receiving_address(n->transport);

                r = wire_record_open(m->dial_request->record, NULL, NULL, &rec, &reason);
                if (r < 0 || memcmp(rec->node_id.data, from, WIRE_NODE_ID_SIZE) != 0 || rec->n_endpoints == 0 ||
                    strncmp(rec->endpoints[0], "tcp://", 6) != 0) {
                        complain(n, from, "asked to be dialled back with a record %s; ignored.",
                                 r < 0 ? reason ?: "that does not open" : "not its own or without a tcp:// endpoint");
                        wire_record_free(rec);
                        break;
                }
                if (!source || !endpoint_host_is_address(rec->endpoints[0], source)) {
                        log_debug("Not dialling back %s: the request came from %s.", rec->endpoints[0],
                                  source ?: "a relay or our own connection");
                        wire_record_free(rec);
                        break;
                }
                if (t >= n->dial_backs_window + 60 * USEC_PER_SEC) {
                        n->dial_backs_window = t;
                        n->dial_backs = 0;
                }
                if (++n->dial_backs > DIAL_BACKS_PER_MINUTE) {
                        complain(n, from, "asked to be dialled back: over %d dial-backs this minute; ignored.",
                                 DIAL_BACKS_PER_MINUTE);
                        wire_record_free(rec);
                        break;
                }
                d.nonce = m->dial_request->nonce;
                a.body_case = SWARM__RELAY_MESSAGE__BODY_DIAL_BACK;
                a.dial_back = &d;
                (void) relay_send(n, from, rec->endpoints[0], &a, RELAY_PATH_DIRECT);
                wire_record_free(rec);
                break;
        }
        case SWARM__RELAY_MESSAGE__BODY_DIAL_BACK:
                /* Only a connection the peer opened to us proves anything. */
                if (transport_receiving_reverse(n->transport))
                        break;
                if (reach_on_dial_back(n->reach, from, m->dial_back->nonce.data, m->dial_back->nonce.len, t) > 0)
                        reach_publish(n);
                reach_rearm(n);
                break;
        default:
                break;
        }
}

enum network_route network_route_of(struct network *n, const uint8_t id[WIRE_NODE_ID_SIZE], const uint8_t **via) {
        struct member_info m;

        *via = NULL;
        if (n->relay && relay_is_client(n->relay, id, now(CLOCK_MONOTONIC)))
                return NETWORK_ROUTE_BACK;
        if (membership_find(n->membership, id, &m) < 0)
                return NETWORK_ROUTE_DIRECT;
        if (m.record->reachability == SWARM__REACHABILITY__REACH_PRIVATE && m.record->n_relays > 0)
                for (size_t i = 0; i < m.record->n_relays; i++) {
                        struct member_info relay;
                        const uint8_t *rid = m.record->relays[i]->node_id.data;

                        if (memcmp(rid, n->identity->public_key, WIRE_NODE_ID_SIZE) == 0 ||
                            (membership_find(n->membership, rid, &relay) >= 0 &&
                             (relay.state == MEMBER_DEAD || relay.state == MEMBER_LEFT)))
                                continue;
                        *via = rid;
                        return NETWORK_ROUTE_RELAY;
                }
        if ((m.record->reachability == SWARM__REACHABILITY__REACH_CHECKING ||
             m.record->reachability == SWARM__REACHABILITY__REACH_PRIVATE) &&
            transport_can_reply(n->transport, id))
                return NETWORK_ROUTE_BACK;
        return NETWORK_ROUTE_DIRECT;
}

const char *network_reachability(const struct network *n) {
        return reach_state_to_string(reach_get_state(n->reach));
}

const struct network_relay_stats *network_get_relay_stats(struct network *n) {
        if (n->relay) {
                struct relay_stats rs;
                relay_get_stats(n->relay, now(CLOCK_MONOTONIC), &rs);
                n->relay_stats.clients = rs.clients;
                n->relay_stats.refused_quota = rs.refused_bandwidth + rs.refused_circuits + rs.refused_full;
        }
        return &n->relay_stats;
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

/* Dial-back, relays we use, relaying we offer: from the config. */
static int reach_setup(struct network *n, const struct config *c) {
        struct reach_config rc;
        struct reach_io io = {
                .userdata = n,
                .random_u64 = io_reach_random,
                .send_dial_request = io_send_dial_request,
                .send_register = io_send_register,
        };
        uint8_t random8[8];
        int r;

        randombytes_buf(random8, sizeof(random8));
        r = relay_box_new(n->identity->secret_key, now(CLOCK_REALTIME), random8, &n->box);
        if (r < 0)
                return r;

        reach_config_default(&rc);
        rc.mode = c->network_reachability == NETWORK_REACHABILITY_PUBLIC    ? REACH_MODE_PUBLIC
                  : c->network_reachability == NETWORK_REACHABILITY_PRIVATE ? REACH_MODE_PRIVATE
                                                                            : REACH_MODE_AUTO;
        rc.want_relays = (unsigned) c->network_relays;
        r = reach_new(&rc, &io, n->identity->public_key, &n->reach);
        if (r < 0)
                return r;

        if (c->relay_enabled) {
                struct relay_config cfg;

                relay_config_default(&cfg);
                cfg.max_clients = (unsigned) c->relay_max_clients;
                cfg.max_circuits = (unsigned) c->relay_max_circuits;
                cfg.bytes_per_second = c->relay_bandwidth;
                cfg.burst_bytes = c->relay_burst;
                r = relay_new(&cfg, &n->relay);
                if (r < 0)
                        return r;
                log_info("Relaying for NATed nodes: up to %" PRIu64 " of them, %" PRIu64 " bytes/s per peer "
                         "(relay.*).", c->relay_max_clients, c->relay_bandwidth);
        }
        /* Peers may answer over our connections while our record says
         * we cannot be dialled or do not know yet; one that found us
         * public may still hold that record for a while.  Only a node
         * configured public, whose every record says so, skips reading
         * its DEALERs. */
        r = transport_set_read_replies(n->transport, c->network_reachability != NETWORK_REACHABILITY_PUBLIC);
        if (r < 0)
                return r;
        return node_record_set_reach(n->self, (Swarm__Reachability) reach_get_state(n->reach), c->relay_enabled,
                                     NULL, NULL, 0) < 0 ? -ENOMEM : 0;
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
        n->max_message_size = c->network_max_message_size;
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

        r = reach_setup(n, c);
        if (r < 0)
                goto fail;

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

        r = sd_event_add_time(event, &n->reach_timer, CLOCK_MONOTONIC, now(CLOCK_MONOTONIC), 1000, on_reach_timer,
                              n);
        if (r < 0)
                goto fail;

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
        sd_event_source_disable_unref(n->reach_timer);
        reach_free(n->reach);
        relay_box_free(n->box);
        relay_free(n->relay);
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

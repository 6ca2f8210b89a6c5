/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "accounts.h"
#include "authz.h"
#include "control.h"
#include "control.pb-c.h"
#include "credits.h"
#include "ledger.h"
#include "list.h"
#include "log.h"
#include "macro.h"
#include "socket-path.h"
#include "membership.h"
#include "network.h"
#include "requester.h"
#include "time-util.h"

#define REQUEST_MAX 4096
/* The socket is open to every local user (mode 0666, for the public peers
 * view), so nobody may fill it: each user holds at most CLIENTS_PER_UID
 * connections, the oldest going when it opens another, and when all
 * CLIENTS_MAX are taken the oldest of whoever holds the most goes.  A
 * connection gets CLIENT_HELLO_USEC to start its request, CLIENT_TIMEOUT_USEC
 * in all. */
#define CLIENTS_MAX 256
#define CLIENTS_PER_UID 8
#define CLIENT_HELLO_USEC (1000 * 1000)
#define CLIENT_TIMEOUT_USEC (5 * 1000 * 1000)
/* Refusals and evictions are logged once per interval, with a count. */
#define REFUSAL_LOG_USEC (10 * 1000 * 1000)
#define LEDGER_LIMIT_DEFAULT 50
#define LEDGER_LIMIT_MAX 10000          /* keeps a reply far below CONTROL_REPLY_MAX */

struct client {
        struct control *control;
        LIST_FIELDS(struct client, clients);    /* newest first */
        uid_t uid;
        int fd;
        sd_event_source *io;
        sd_event_source *timeout;
        uint8_t request[REQUEST_MAX + 4];
        size_t got;
        uint8_t *reply;
        size_t reply_size, sent;
};

struct control {
        sd_event *event;
        int fd;
        char *path;
        sd_event_source *io;
        struct network *network;
        struct accounts *accounts;
        struct credits *credits;
        struct requester *requester;
        struct client *clients;
        size_t n_clients;
        uint64_t evictions_logged_usec;
        unsigned evictions_unlogged;
};

void control_set_requester(struct control *c, struct requester *requester) {
        if (c)
                c->requester = requester;
}

void control_set_accounts(struct control *c, struct accounts *accounts) {
        if (c)
                c->accounts = accounts;
}

void control_set_credits(struct control *c, struct credits *credits) {
        if (c)
                c->credits = credits;
}

char *control_socket_path(const char *state_dir) {
        return socket_path(state_dir, CONTROL_SOCKET_NAME);
}

static void client_free(struct client *cl) {
        struct control *c = cl->control;

        LIST_REMOVE(clients, c->clients, cl);
        c->n_clients--;
        sd_event_source_disable_unref(cl->io);
        sd_event_source_disable_unref(cl->timeout);
        close(cl->fd);
        free(cl->reply);
        free(cl);
}

/* What a reply points to until it is packed: the membership view and the
 * ledger's arrays are borrowed or owned here, never by the reply. */
struct reply_storage {
        Swarm__PeerInfo *infos;
        ProtobufCBinaryData *relays;    /* PeerInfo.relays, borrowed from the records */
        Swarm__PeerSkillView *views;
        Swarm__PeerSkillView **view_ptrs;
        Swarm__Balance balance;
        Swarm__Credits credits;
        uint8_t book_digest[32];
        uint8_t transfer_id[32];
        struct ledger_peer *ledger_peers;
        Swarm__LedgerPeer *peers;
        Swarm__LedgerPeer **peer_ptrs;
        struct ledger_job *jobs;
        Swarm__LedgerEntry *entries;
        Swarm__LedgerEntry **entry_ptrs;
};

static void reply_storage_done(struct reply_storage *st, Swarm__ControlReply *reply) {
        free(reply->peers);
        free(st->infos);
        free(st->relays);
        free(st->views);
        free(st->view_ptrs);
        free(st->ledger_peers);
        free(st->peers);
        free(st->peer_ptrs);
        free(st->jobs);
        free(st->entries);
        free(st->entry_ptrs);
}

/* This node's view of what peer p offers, skill by skill (none for
 * ourselves: we do not rate ourselves).  views has room for them. */
static size_t fill_reputation(struct reputation *rep, struct requester *req, const struct member_info *mi, uint64_t now,
                              Swarm__PeerSkillView *views, Swarm__PeerSkillView **ptrs) {
        size_t n = 0;

        if (!rep || mi->self)
                return 0;
        for (size_t s = 0; s < mi->record->n_skills; s++) {
                const char *skill = mi->record->skills[s]->name;
                struct reputation_view v;
                Swarm__PeerSkillView *o = &views[n];

                if (!skill || !skill[0])
                        continue;
                reputation_get(rep, mi->id, skill, now, &v);
                swarm__peer_skill_view__init(o);
                o->skill = (char *) skill;
                o->successes = v.successes;
                o->failures = v.failures;
                o->mean = v.mean;
                o->trust = v.trust;
                o->latency_ms = v.latency_ewma_usec / 1e3;
                o->throughput_ratio = v.throughput_ratio;
                if (req) {
                        struct requester_checks ch;

                        requester_get_checks(req, mi->id, skill, &ch);
                        o->checked = ch.checked;
                        o->unchecked = ch.unchecked;
                        o->check_failed = ch.failed;
                        o->check_percent = ch.percent;
                        o->sampled = ch.sampled;
                }
                ptrs[n++] = o;
        }
        return n;
}

static const char *reachability_name(Swarm__Reachability r) {
        switch (r) {
        case SWARM__REACHABILITY__REACH_PUBLIC:
                return "public";
        case SWARM__REACHABILITY__REACH_PRIVATE:
                return "private";
        case SWARM__REACHABILITY__REACH_CHECKING:
                return "checking";
        default:
                return "unknown";
        }
}

/* PeerInfo borrows every pointer from the membership view. */
static int build_peers(struct control *c, Swarm__ControlReply *reply, struct reply_storage *st) {
        struct membership *m = network_membership(c->network);
        struct reputation *rep = c->accounts ? accounts_reputation(c->accounts) : NULL;
        size_t n = membership_count(m), k = 0, n_views = 0, used = 0;
        uint64_t mono = now(CLOCK_MONOTONIC), wall = rep ? accounts_now() : 0;

        size_t n_relays = 0, relays_used = 0;

        for (size_t i = 0; i < n; i++) {
                struct member_info mi;

                if (membership_get(m, i, &mi) >= 0) {
                        if (rep)
                                n_views += mi.record->n_skills;
                        n_relays += mi.record->n_relays;
                }
        }
        st->relays = calloc(n_relays ? n_relays : 1, sizeof(ProtobufCBinaryData));
        if (!st->relays)
                return -ENOMEM;
        reply->peers = calloc(n ? n : 1, sizeof(Swarm__PeerInfo *));
        st->infos = calloc(n ? n : 1, sizeof(Swarm__PeerInfo));
        st->views = calloc(n_views ? n_views : 1, sizeof(Swarm__PeerSkillView));
        st->view_ptrs = calloc(n_views ? n_views : 1, sizeof(Swarm__PeerSkillView *));
        if (!reply->peers || !st->infos || !st->views || !st->view_ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                struct member_info mi;
                Swarm__PeerInfo *p = &st->infos[k];

                if (membership_get(m, i, &mi) < 0)
                        continue;
                swarm__peer_info__init(p);
                p->node_id.data = (uint8_t *) mi.id;
                p->node_id.len = WIRE_NODE_ID_SIZE;
                p->name = mi.record->name;
                p->n_endpoints = mi.record->n_endpoints;
                p->endpoints = mi.record->endpoints;
                p->state = (Swarm__MemberState) mi.state;
                p->incarnation = mi.incarnation;
                p->version = mi.record->version;
                p->last_heard_ms_ago = mono > mi.last_heard_usec ? (mono - mi.last_heard_usec) / 1000 : 0;
                p->n_skills = mi.record->n_skills;
                p->skills = mi.record->skills;
                p->capacity = mi.record->capacity;
                p->load = mi.record->load;
                p->lending = mi.record->lending;
                p->self = mi.self;
                p->faults = mi.faults;
                p->reachability = (char *) (mi.self ? network_reachability(c->network)
                                                    : reachability_name(mi.record->reachability));
                if (mi.record->n_relays > 0 && relays_used + mi.record->n_relays <= n_relays) {
                        p->relays = &st->relays[relays_used];
                        p->n_relays = mi.record->n_relays;
                        for (size_t r = 0; r < mi.record->n_relays; r++)
                                st->relays[relays_used++] = mi.record->relays[r]->node_id;
                }
                if (!mi.self) {
                        const uint8_t *via;
                        enum network_route route = network_route_of(c->network, mi.id, &via);

                        p->route = (char *) (route == NETWORK_ROUTE_RELAY  ? "relay"
                                             : route == NETWORK_ROUTE_BACK ? "back"
                                                                           : "direct");
                        if (via) {
                                p->via.data = (uint8_t *) via;
                                p->via.len = WIRE_NODE_ID_SIZE;
                        }
                }
                /* The count was taken in this same callback: the view
                 * cannot have grown since. */
                if (used + mi.record->n_skills <= n_views) {
                        p->reputation = &st->view_ptrs[used];
                        p->n_reputation = fill_reputation(rep, c->requester, &mi, wall, &st->views[used], &st->view_ptrs[used]);
                        used += p->n_reputation;
                }
                reply->peers[k++] = p;
        }
        reply->n_peers = k;
        return 0;
}

static int build_balance(struct control *c, Swarm__ControlReply *reply, struct reply_storage *st) {
        struct ledger_balance b;
        int r;

        r = ledger_get_balance(accounts_ledger(c->accounts), &b);
        if (r < 0)
                return r;
        swarm__balance__init(&st->balance);
        st->balance.balance = b.balance;
        st->balance.earned = b.earned;
        st->balance.spent = b.spent;
        st->balance.in_flight = b.in_flight;
        st->balance.reserved_for_jobs = accounts_reserved(c->accounts);
        st->balance.cheques_received = b.cheques_received;
        st->balance.cheques_issued = b.cheques_issued;
        st->balance.owed_to_us = b.owed_to_us;
        st->balance.jobs_paid = b.jobs_paid;
        st->balance.jobs_served = b.jobs_served;
        reply->balance = &st->balance;
        return 0;
}

/* Per-peer totals (only peer's, when given) and the newest limit jobs. */
static int build_ledger(struct control *c, const Swarm__LedgerRequest *req, Swarm__ControlReply *reply,
                        struct reply_storage *st) {
        struct ledger *l = accounts_ledger(c->accounts);
        const uint8_t *peer = req->peer.len > 0 ? req->peer.data : NULL;
        size_t limit = req->limit == 0 ? LEDGER_LIMIT_DEFAULT : (req->limit < LEDGER_LIMIT_MAX ? req->limit : LEDGER_LIMIT_MAX);
        size_t n_peers = 0, n_jobs = 0, k = 0;
        int r;

        r = ledger_list_peers(l, &st->ledger_peers, &n_peers);
        if (r >= 0)
                r = ledger_history(l, peer, limit, &st->jobs, &n_jobs);
        if (r < 0)
                return r;
        st->peers = calloc(n_peers ? n_peers : 1, sizeof(Swarm__LedgerPeer));
        st->peer_ptrs = calloc(n_peers ? n_peers : 1, sizeof(Swarm__LedgerPeer *));
        st->entries = calloc(n_jobs ? n_jobs : 1, sizeof(Swarm__LedgerEntry));
        st->entry_ptrs = calloc(n_jobs ? n_jobs : 1, sizeof(Swarm__LedgerEntry *));
        if (!st->peers || !st->peer_ptrs || !st->entries || !st->entry_ptrs)
                return -ENOMEM;

        for (size_t i = 0; i < n_peers; i++) {
                struct ledger_peer *lp = &st->ledger_peers[i];
                Swarm__LedgerPeer *o = &st->peers[k];

                if (peer && memcmp(lp->id, peer, sizeof(lp->id)) != 0)
                        continue;
                swarm__ledger_peer__init(o);
                o->node_id.data = lp->id;
                o->node_id.len = sizeof(lp->id);
                o->issued = lp->issued;
                o->received = lp->received;
                o->served = lp->served;
                o->jobs_paid = lp->jobs_paid;
                o->jobs_served = lp->jobs_served;
                o->last_at = lp->last_at;
                st->peer_ptrs[k++] = o;
        }
        reply->ledger_peers = st->peer_ptrs;
        reply->n_ledger_peers = k;

        for (size_t i = 0; i < n_jobs; i++) {
                struct ledger_job *j = &st->jobs[i];
                Swarm__LedgerEntry *o = &st->entries[i];

                swarm__ledger_entry__init(o);
                o->job_id.data = j->job_id;
                o->job_id.len = sizeof(j->job_id);
                o->role = j->role == LEDGER_ROLE_SERVED ? SWARM__LEDGER_ENTRY__ROLE__SERVED
                                                         : SWARM__LEDGER_ENTRY__ROLE__PAID;
                o->peer.data = j->peer;
                o->peer.len = sizeof(j->peer);
                j->skill[sizeof(j->skill) - 1] = '\0';
                o->skill = j->skill;
                o->price = j->price;
                if (j->paid_by_transfer) {
                        o->transfer.data = j->transfer;
                        o->transfer.len = sizeof(j->transfer);
                        o->delivered = j->transfer_delivered;
                }
                o->at = j->at;
                st->entry_ptrs[i] = o;
        }
        reply->ledger_entries = st->entry_ptrs;
        reply->n_ledger_entries = n_jobs;
        return 0;
}

/* The balance and the job history are private (authz_may_read_ledger()).
 * The socket is mode 0666 for the public peers view, so this is the only
 * gate. */
static bool client_may_read_ledger(const struct client *cl) {
        struct ucred cred;
        socklen_t len = sizeof(cred);

        if (getsockopt(cl->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof(cred))
                return false;
        return authz_may_read_ledger(cred.uid, cred.gid, NULL, 0);
}

/* Spending the node's credits: root and the daemon's own user. */
static bool client_may_spend(const struct client *cl) {
        struct ucred cred;
        socklen_t len = sizeof(cred);

        if (getsockopt(cl->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof(cred))
                return false;
        return cred.uid == 0 || cred.uid == geteuid();
}

static int reply_error(Swarm__ControlReply *reply, int error, const char *message) {
        reply->error = error;
        reply->message = (char *) message;
        return error;
}

/* 0, or the negative errno the reply carries. */
static int client_answer_request(struct client *cl, const Swarm__ControlRequest *req, Swarm__ControlReply *reply,
                                  struct reply_storage *st) {
        struct control *c = cl->control;
        int r;

        switch (req->request_case) {
        case SWARM__CONTROL_REQUEST__REQUEST_PEERS:
                if (!c->network)
                        return reply_error(reply, -ENETDOWN, "networking is disabled (network.enabled: false)");
                r = build_peers(c, reply, st);
                if (r < 0) {
                        reply->n_peers = 0;
                        return reply_error(reply, r, "out of memory");
                }
                return 0;
        case SWARM__CONTROL_REQUEST__REQUEST_BALANCE:
        case SWARM__CONTROL_REQUEST__REQUEST_LEDGER:
                if (!client_may_read_ledger(cl)) {
                        log_debug("Refused a ledger request from a user outside swarmd's group.");
                        return reply_error(reply, -EACCES,
                                           "the ledger is readable by root and the swarmd group only");
                }
                if (!c->accounts)
                        return reply_error(reply, -ENODATA, "the ledger is not open");
                if (req->request_case == SWARM__CONTROL_REQUEST__REQUEST_LEDGER &&
                    req->ledger->peer.len != 0 && req->ledger->peer.len != WIRE_NODE_ID_SIZE)
                        return reply_error(reply, -EINVAL, "peer must be a node id of 32 bytes");
                r = req->request_case == SWARM__CONTROL_REQUEST__REQUEST_BALANCE ? build_balance(c, reply, st)
                                                                                 : build_ledger(c, req->ledger, reply, st);
                if (r < 0) {
                        reply->balance = NULL;
                        reply->n_ledger_peers = reply->n_ledger_entries = 0;
                        log_warning_errno(r, "Reading the ledger for swarmctl failed: %m");
                        return reply_error(reply, r, r == -ENOMEM ? "out of memory" : "reading the ledger failed");
                }
                return 0;
        case SWARM__CONTROL_REQUEST__REQUEST_CREDITS: {
                struct credits_view v;

                if (!client_may_read_ledger(cl))
                        return reply_error(reply, -EACCES, "credits are readable by root and the swarmd group only");
                if (!c->credits)
                        return reply_error(reply, -ENETDOWN, "no credits without the network");
                credits_get_view(c->credits, &v);
                swarm__credits__init(&st->credits);
                transfer_book_digest(credits_book(c->credits), st->book_digest);
                st->credits.digest = (ProtobufCBinaryData) { .len = sizeof(st->book_digest), .data = st->book_digest };
                {
                        const char *why = NULL;

                        st->credits.invariant_error = (char *) (transfer_book_check_invariants(
                                                                 credits_book(c->credits), &why) < 0 ? why : "");
                }
                st->credits.balance = v.balance;
                st->credits.pending = v.pending;
                st->credits.in_flight = v.in_flight;
                st->credits.supply = v.supply;
                st->credits.next_seq = v.next_seq;
                st->credits.delivered = v.delivered;
                st->credits.fraud_proofs = v.fraud_proofs;
                st->credits.issuer = v.issuer;
                reply->credits = &st->credits;
                return 0;
        }
        case SWARM__CONTROL_REQUEST__REQUEST_PAY:
                if (!client_may_spend(cl))
                        return reply_error(reply, -EACCES, "only root and swarmd's own user may spend its credits");
                if (!c->credits)
                        return reply_error(reply, -ENETDOWN, "no credits without the network");
                if (req->pay->payee.len != WIRE_NODE_ID_SIZE)
                        return reply_error(reply, -EINVAL, "payee must be a node id of 32 bytes");
                if (req->pay->amount == 0)
                        return reply_error(reply, -EINVAL, "amount must be at least 1 micro-credit");
                r = credits_pay(c->credits, req->pay->payee.data, req->pay->amount, st->transfer_id);
                if (r == -EDQUOT)
                        return reply_error(reply, r, "this node does not hold that much (balance + pending, less "
                                                     "what its transfers in flight spend)");
                if (r == -EINVAL)
                        return reply_error(reply, r, "a node cannot pay itself");
                if (r == -EPERM)
                        return reply_error(reply, r, "this node is banned for a double spend");
                if (r < 0)
                        return reply_error(reply, r, "the transfer could not be signed and stored");
                reply->transfer_id = (ProtobufCBinaryData) { .len = 32, .data = st->transfer_id };
                return 0;
        default:
                return reply_error(reply, -EOPNOTSUPP, "unknown request (swarmctl newer than swarmd?)");
        }
}

static int client_answer(struct client *cl, uint32_t size) {
        Swarm__ControlReply reply = SWARM__CONTROL_REPLY__INIT;
        struct reply_storage st = {};
        Swarm__ControlRequest *req;
        size_t packed;

        req = swarm__control_request__unpack(NULL, size, cl->request + 4);
        if (!req)
                reply_error(&reply, -EBADMSG, "malformed request");
        else
                (void) client_answer_request(cl, req, &reply, &st);

        packed = swarm__control_reply__get_packed_size(&reply);
        cl->reply = malloc(packed + 4);
        if (cl->reply) {
                cl->reply[0] = packed & 0xff;
                cl->reply[1] = (packed >> 8) & 0xff;
                cl->reply[2] = (packed >> 16) & 0xff;
                cl->reply[3] = (packed >> 24) & 0xff;
                swarm__control_reply__pack(&reply, cl->reply + 4);
                cl->reply_size = packed + 4;
        }
        reply_storage_done(&st, &reply);
        if (req)
                swarm__control_request__free_unpacked(req, NULL);
        return cl->reply ? 0 : -ENOMEM;
}

static int on_client(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct client *cl = userdata;
        ssize_t k;

        if (!cl->reply) {
                uint32_t size;

                k = recv(fd, cl->request + cl->got, sizeof(cl->request) - cl->got, MSG_DONTWAIT);
                if (k < 0 && (errno == EAGAIN || errno == EINTR))
                        return 0;
                if (k <= 0)
                        goto done;
                if (cl->got == 0)
                        /* It speaks: the rest of its time to finish. */
                        (void) sd_event_source_set_time_relative(cl->timeout,
                                                                 CLIENT_TIMEOUT_USEC - CLIENT_HELLO_USEC);
                cl->got += (size_t) k;
                if (cl->got < 4)
                        return 0;
                size = (uint32_t) cl->request[0] | (uint32_t) cl->request[1] << 8 |
                       (uint32_t) cl->request[2] << 16 | (uint32_t) cl->request[3] << 24;
                if (size > REQUEST_MAX)
                        goto done;      /* not a swarmctl */
                if (cl->got < 4 + size)
                        return 0;
                if (client_answer(cl, size) < 0)
                        goto done;
                (void) sd_event_source_set_io_events(s, EPOLLOUT);
                return 0;
        }

        k = send(fd, cl->reply + cl->sent, cl->reply_size - cl->sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (k < 0)
                goto done;
        cl->sent += (size_t) k;
        if (cl->sent < cl->reply_size)
                return 0;
done:
        client_free(cl);
        return 0;
}

static int on_client_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        client_free(userdata);
        return 0;
}

/* Whom to let go to make room for a connection of uid: its own oldest
 * when uid is at its share, else, when the socket is full, the oldest of
 * whoever holds the most. */
static struct client *eviction_victim(struct control *c, uid_t uid) {
        struct client *oldest_of_uid = NULL, *victim = NULL;
        size_t n_uid = 0, most = 0;

        LIST_FOREACH(clients, cl, c->clients)
                if (cl->uid == uid) {
                        n_uid++;
                        oldest_of_uid = cl;
                }
        if (n_uid >= CLIENTS_PER_UID)
                return oldest_of_uid;
        if (c->n_clients < CLIENTS_MAX)
                return NULL;
        LIST_FOREACH(clients, cl, c->clients) {
                size_t n = 0;

                LIST_FOREACH(clients, other, c->clients)
                        n += other->uid == cl->uid;
                if (n >= most) {        /* the last, oldest, of the biggest holder */
                        most = n;
                        victim = cl;
                }
        }
        return victim;
}

static void log_eviction(struct control *c, uid_t uid) {
        uint64_t t = now(CLOCK_MONOTONIC);

        c->evictions_unlogged++;
        if (c->evictions_logged_usec != 0 && t - c->evictions_logged_usec < REFUSAL_LOG_USEC)
                return;
        log_notice("Control socket: closed %u waiting connection%s to make room (the last of uid %u; each "
                   "user holds at most %u).", c->evictions_unlogged, c->evictions_unlogged == 1 ? "" : "s",
                   (unsigned) uid, CLIENTS_PER_UID);
        c->evictions_logged_usec = t;
        c->evictions_unlogged = 0;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct control *c = userdata;

        for (;;) {
                int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                struct ucred cred = {};
                socklen_t len = sizeof(cred);
                struct client *cl, *victim;

                if (cfd < 0)
                        return 0;
                if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof(cred)) {
                        close(cfd);
                        continue;
                }
                victim = eviction_victim(c, cred.uid);
                if (victim) {
                        log_eviction(c, victim->uid);
                        client_free(victim);
                }
                cl = calloc(1, sizeof(*cl));
                if (!cl) {
                        close(cfd);
                        continue;
                }
                cl->control = c;
                cl->fd = cfd;
                cl->uid = cred.uid;
                if (sd_event_add_io(c->event, &cl->io, cfd, EPOLLIN, on_client, cl) < 0 ||
                    sd_event_add_time_relative(c->event, &cl->timeout, CLOCK_MONOTONIC, CLIENT_HELLO_USEC, 0,
                                               on_client_timeout, cl) < 0) {
                        sd_event_source_disable_unref(cl->io);
                        close(cfd);
                        free(cl);
                        continue;
                }
                LIST_PREPEND(clients, c->clients, cl);
                c->n_clients++;
        }
}

int control_new(sd_event *event, const char *path, struct network *network, struct control **ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct control *c;
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return log_error_errno(-ENAMETOOLONG, "Control socket path %s is too long", path);
        strcpy(sa.sun_path, path);

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fd = -1;
        c->event = sd_event_ref(event);
        c->network = network;
        c->path = strdup(path);
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (!c->path || c->fd < 0) {
                r = c->path ? negative_errno() : -ENOMEM;
                goto fail;
        }
        (void) unlink(path);
        if (bind(c->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || chmod(path, 0666) < 0 ||
            listen(c->fd, SOMAXCONN) < 0) {
                r = log_error_errno(negative_errno(), "Failed to listen on %s: %m", path);
                goto fail;
        }
        r = sd_event_add_io(event, &c->io, c->fd, EPOLLIN, on_accept, c);
        if (r < 0)
                goto fail;
        log_debug("Control socket at %s.", path);
        *ret = c;
        return 0;
fail:
        control_free(c);
        return r;
}

struct control *control_free(struct control *c) {
        if (!c)
                return NULL;
        while (c->clients)
                client_free(c->clients);
        sd_event_source_disable_unref(c->io);
        if (c->fd >= 0) {
                close(c->fd);
                if (c->path)
                        (void) unlink(c->path);
        }
        free(c->path);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}

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

#include "control.h"
#include "control.pb-c.h"
#include "log.h"
#include "macro.h"
#include "membership.h"
#include "network.h"

#define REQUEST_MAX 4096
#define CLIENTS_MAX 16
#define CLIENT_TIMEOUT_USEC (5 * 1000 * 1000)

struct client {
        struct control *control;
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
        struct client *clients[CLIENTS_MAX];
};

void control_set_accounts(struct control *c, struct accounts *accounts) {
        if (c)
                c->accounts = accounts;
}

char *control_socket_path(const char *state_dir) {
        const char *runtime = getenv("RUNTIME_DIRECTORY");
        char *p;

        if (runtime && runtime[0]) {
                if (asprintf(&p, "%.*s/control.sock", (int) strcspn(runtime, ":"), runtime) < 0)
                        return NULL;
                return p;
        }
        return asprintf(&p, "%s/control.sock", state_dir) < 0 ? NULL : p;
}

static void client_free(struct client *cl) {
        struct control *c = cl->control;

        for (size_t i = 0; i < CLIENTS_MAX; i++)
                if (c->clients[i] == cl)
                        c->clients[i] = NULL;
        sd_event_source_disable_unref(cl->io);
        sd_event_source_disable_unref(cl->timeout);
        close(cl->fd);
        free(cl->reply);
        free(cl);
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

/* PeerInfo borrows every pointer from the membership view. */
static int build_peers(struct control *c, Swarm__ControlReply *reply, Swarm__PeerInfo **ret_infos) {
        struct membership *m = network_membership(c->network);
        size_t n = membership_count(m), k = 0;
        uint64_t now = now_usec();
        Swarm__PeerInfo *infos;

        reply->peers = calloc(n ? n : 1, sizeof(Swarm__PeerInfo *));
        infos = calloc(n ? n : 1, sizeof(Swarm__PeerInfo));
        *ret_infos = infos;
        if (!reply->peers || !infos)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                struct member_info mi;
                Swarm__PeerInfo *p = &infos[k];

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
                p->last_heard_ms_ago = now > mi.last_heard_usec ? (now - mi.last_heard_usec) / 1000 : 0;
                p->n_skills = mi.record->n_skills;
                p->skills = mi.record->skills;
                p->capacity = mi.record->capacity;
                p->load = mi.record->load;
                p->lending = mi.record->lending;
                p->self = mi.self;
                p->faults = mi.faults;
                reply->peers[k++] = p;
        }
        reply->n_peers = k;
        return 0;
}

static int client_answer(struct client *cl, uint32_t size) {
        Swarm__ControlReply reply = SWARM__CONTROL_REPLY__INIT;
        Swarm__ControlRequest *req;
        Swarm__PeerInfo *infos = NULL;
        size_t packed;
        int r = 0;

        req = swarm__control_request__unpack(NULL, size, cl->request + 4);
        if (!req) {
                reply.error = -EBADMSG;
                reply.message = (char *) "malformed request";
        } else if (req->request_case == SWARM__CONTROL_REQUEST__REQUEST_PEERS) {
                if (!cl->control->network) {
                        reply.error = -ENETDOWN;
                        reply.message = (char *) "networking is disabled (network.enabled: false)";
                } else {
                        r = build_peers(cl->control, &reply, &infos);
                        if (r < 0) {
                                reply.error = r;
                                reply.message = (char *) "out of memory";
                                reply.n_peers = 0;
                        }
                }
        } else {
                reply.error = -EOPNOTSUPP;
                reply.message = (char *) "unknown request (swarmctl newer than swarmd?)";
        }
        if (req)
                swarm__control_request__free_unpacked(req, NULL);

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
        free(infos);
        free(reply.peers);
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

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct control *c = userdata;

        for (;;) {
                int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                struct client *cl;
                size_t slot = CLIENTS_MAX;

                if (cfd < 0)
                        return 0;
                for (size_t i = 0; i < CLIENTS_MAX; i++)
                        if (!c->clients[i]) {
                                slot = i;
                                break;
                        }
                cl = slot < CLIENTS_MAX ? calloc(1, sizeof(*cl)) : NULL;
                if (!cl) {
                        close(cfd);     /* busy: the client retries */
                        continue;
                }
                cl->control = c;
                cl->fd = cfd;
                if (sd_event_add_io(c->event, &cl->io, cfd, EPOLLIN, on_client, cl) < 0 ||
                    sd_event_add_time_relative(c->event, &cl->timeout, CLOCK_MONOTONIC, CLIENT_TIMEOUT_USEC, 0,
                                               on_client_timeout, cl) < 0) {
                        sd_event_source_disable_unref(cl->io);
                        close(cfd);
                        free(cl);
                        continue;
                }
                c->clients[slot] = cl;
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
            listen(c->fd, 16) < 0) {
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
        for (size_t i = 0; i < CLIENTS_MAX; i++)
                if (c->clients[i])
                        client_free(c->clients[i]);
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

/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pb-util.h"
#include "reachability.h"
#include "relay-box.h"
#include "relay.h"

#define RELAY_BOX_MIN RELAY_BOX_OVERHEAD
#define RELAY_NONCE_SIZE REACH_NONCE_SIZE

struct bucket {
        double tokens;                  /* may be negative: debt of one message */
        uint64_t refill_usec;
};

struct circuit {
        uint8_t peer[WIRE_NODE_ID_SIZE];
        uint64_t last_usec;
};

struct client {
        uint8_t id[WIRE_NODE_ID_SIZE];
        uint64_t lease_until;
        struct bucket bucket;
        struct circuit *circuits;       /* max_circuits */
        size_t n_circuits;
};

struct sender {
        uint8_t id[WIRE_NODE_ID_SIZE];
        struct bucket bucket;
        uint64_t used_usec;
};

struct relay {
        struct relay_config config;
        struct client *clients;         /* max_clients */
        size_t n_clients;
        struct sender *senders;         /* RELAY_SENDERS_MAX */
        size_t n_senders;
        struct relay_stats stats;
};

void relay_config_default(struct relay_config *c) {
        *c = (struct relay_config) {
                .max_clients = 64,
                .max_circuits = 64,
                .bytes_per_second = 4u << 20,
                .burst_bytes = 16u << 20,
                .lease_usec = 15ull * 1000 * 1000,
        };
}

int relay_new(const struct relay_config *config, struct relay **ret) {
        struct relay *r;

        if (!config || !ret || config->max_clients == 0 || config->max_circuits == 0 ||
            config->bytes_per_second == 0 || config->burst_bytes == 0 || config->lease_usec == 0 ||
            config->max_clients > 65536 || config->max_circuits > 65536)
                return -EINVAL;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->config = *config;
        r->clients = calloc(config->max_clients, sizeof(*r->clients));
        r->senders = calloc(RELAY_SENDERS_MAX, sizeof(*r->senders));
        if (!r->clients || !r->senders)
                return relay_free(r), -ENOMEM;
        *ret = r;
        return 0;
}

struct relay *relay_free(struct relay *r) {
        if (!r)
                return NULL;
        for (size_t i = 0; i < r->n_clients; i++)
                free(r->clients[i].circuits);
        free(r->clients);
        free(r->senders);
        free(r);
        return NULL;
}

static struct client *client_find(const struct relay *r, const uint8_t id[WIRE_NODE_ID_SIZE], uint64_t now) {
        for (size_t i = 0; i < r->n_clients; i++)
                if (memcmp(r->clients[i].id, id, WIRE_NODE_ID_SIZE) == 0)
                        return now < r->clients[i].lease_until ? &r->clients[i] : NULL;
        return NULL;
}

static void client_remove(struct relay *r, size_t i) {
        free(r->clients[i].circuits);
        r->clients[i] = r->clients[--r->n_clients];
}

void relay_expire(struct relay *r, uint64_t now) {
        for (size_t i = 0; i < r->n_clients;) {
                struct client *c = &r->clients[i];

                if (now >= c->lease_until) {
                        client_remove(r, i);
                        continue;
                }
                for (size_t k = 0; k < c->n_circuits;)
                        if (now >= c->circuits[k].last_usec + r->config.lease_usec)
                                c->circuits[k] = c->circuits[--c->n_circuits];
                        else
                                k++;
                i++;
        }
}

int relay_register(struct relay *r, const uint8_t client[WIRE_NODE_ID_SIZE], uint64_t now) {
        struct client *c;

        for (size_t i = 0; i < r->n_clients; i++)
                if (memcmp(r->clients[i].id, client, WIRE_NODE_ID_SIZE) == 0) {
                        r->clients[i].lease_until = now + r->config.lease_usec;
                        return 0;
                }
        if (r->n_clients >= r->config.max_clients)
                relay_expire(r, now);
        if (r->n_clients >= r->config.max_clients) {
                r->stats.refused_full++;
                return -EUSERS;
        }
        c = &r->clients[r->n_clients];
        *c = (struct client) {
                .lease_until = now + r->config.lease_usec,
                .bucket = { .tokens = (double) r->config.burst_bytes, .refill_usec = now },
        };
        c->circuits = calloc(r->config.max_circuits, sizeof(*c->circuits));
        if (!c->circuits)
                return -ENOMEM;
        memcpy(c->id, client, WIRE_NODE_ID_SIZE);
        r->n_clients++;
        return 1;
}

void relay_unregister(struct relay *r, const uint8_t client[WIRE_NODE_ID_SIZE]) {
        for (size_t i = 0; i < r->n_clients; i++)
                if (memcmp(r->clients[i].id, client, WIRE_NODE_ID_SIZE) == 0) {
                        client_remove(r, i);
                        return;
                }
}

bool relay_is_client(const struct relay *r, const uint8_t id[WIRE_NODE_ID_SIZE], uint64_t now) {
        return client_find(r, id, now) != NULL;
}

static void bucket_refill(const struct relay *r, struct bucket *b, uint64_t now) {
        if (now > b->refill_usec) {
                b->tokens += (double) (now - b->refill_usec) * (double) r->config.bytes_per_second / 1e6;
                if (b->tokens > (double) r->config.burst_bytes)
                        b->tokens = (double) r->config.burst_bytes;
                b->refill_usec = now;
        }
}

static struct sender *sender_get(struct relay *r, const uint8_t id[WIRE_NODE_ID_SIZE], uint64_t now) {
        struct sender *s = NULL;

        for (size_t i = 0; i < r->n_senders; i++)
                if (memcmp(r->senders[i].id, id, WIRE_NODE_ID_SIZE) == 0)
                        return &r->senders[i];
        if (r->n_senders < RELAY_SENDERS_MAX)
                s = &r->senders[r->n_senders++];
        else {
                /* The least recently used goes: a full bucket, which is
                 * all a sender forgotten for long would have anyway. */
                s = &r->senders[0];
                for (size_t i = 1; i < r->n_senders; i++)
                        if (r->senders[i].used_usec < s->used_usec)
                                s = &r->senders[i];
        }
        *s = (struct sender) { .bucket = { .tokens = (double) r->config.burst_bytes, .refill_usec = now } };
        memcpy(s->id, id, WIRE_NODE_ID_SIZE);
        return s;
}

int relay_admit(struct relay *r, const uint8_t sender[WIRE_NODE_ID_SIZE], const uint8_t client[WIRE_NODE_ID_SIZE],
                size_t size, uint64_t now) {
        struct client *c = client_find(r, client, now);
        struct circuit *circuit = NULL;
        struct sender *s;

        if (memcmp(sender, client, WIRE_NODE_ID_SIZE) == 0)
                return -EINVAL;
        if (!c) {
                r->stats.refused_not_client++;
                return -ENOENT;
        }
        for (size_t k = 0; k < c->n_circuits; k++)
                if (memcmp(c->circuits[k].peer, sender, WIRE_NODE_ID_SIZE) == 0) {
                        circuit = &c->circuits[k];
                        break;
                }
        if (!circuit) {
                for (size_t k = 0; k < c->n_circuits;)
                        if (now >= c->circuits[k].last_usec + r->config.lease_usec)
                                c->circuits[k] = c->circuits[--c->n_circuits];
                        else
                                k++;
                if (c->n_circuits >= r->config.max_circuits) {
                        r->stats.refused_circuits++;
                        return -EUSERS;
                }
        }

        s = sender_get(r, sender, now);
        bucket_refill(r, &s->bucket, now);
        bucket_refill(r, &c->bucket, now);
        s->used_usec = now;
        if (s->bucket.tokens <= 0 || c->bucket.tokens <= 0) {
                r->stats.refused_bandwidth++;
                return -EDQUOT;
        }
        s->bucket.tokens -= (double) size;
        c->bucket.tokens -= (double) size;

        if (!circuit) {
                circuit = &c->circuits[c->n_circuits++];
                memcpy(circuit->peer, sender, WIRE_NODE_ID_SIZE);
        }
        circuit->last_usec = now;
        r->stats.forwarded++;
        r->stats.forwarded_bytes += size;
        return 0;
}

void relay_get_stats(const struct relay *r, uint64_t now, struct relay_stats *ret) {
        *ret = r->stats;
        ret->clients = 0;
        for (size_t i = 0; i < r->n_clients; i++)
                if (now < r->clients[i].lease_until)
                        ret->clients++;
}

/* ---- Messages ---- */

static bool id_ok(const ProtobufCBinaryData *b) {
        return b->len == WIRE_NODE_ID_SIZE && b->data;
}

static int relay_message_check(const Swarm__RelayMessage *m, const char **reason) {
        if (m->version != WIRE_VERSION) {
                *reason = "relay message version is not WIRE_VERSION";
                return -EPROTONOSUPPORT;
        }
        switch (m->body_case) {
        case SWARM__RELAY_MESSAGE__BODY_REGISTER:
                if (!m->register_) {
                        *reason = "relay register missing";
                        return -EBADMSG;
                }
                return 0;
        case SWARM__RELAY_MESSAGE__BODY_REGISTERED:
                if (!m->registered || !m->registered->error ||
                    strnlen(m->registered->error, WIRE_STRING_MAX + 1) > WIRE_STRING_MAX ||
                    m->registered->status > 0) {
                        *reason = "relay registered has a positive status or an error over WIRE_STRING_MAX";
                        return -EBADMSG;
                }
                return 0;
        case SWARM__RELAY_MESSAGE__BODY_FORWARD:
        case SWARM__RELAY_MESSAGE__BODY_DELIVER: {
                const Swarm__RelayForward *f = m->body_case == SWARM__RELAY_MESSAGE__BODY_FORWARD ? m->forward
                                                                                                   : m->deliver;
                if (!f || !id_ok(&f->peer)) {
                        *reason = "relay forward peer is not 32 bytes";
                        return -EBADMSG;
                }
                if (f->box.len < RELAY_BOX_MIN || !f->box.data) {
                        *reason = "relay forward box is shorter than a box's nonce and MAC";
                        return -EBADMSG;
                }
                return 0;
        }
        case SWARM__RELAY_MESSAGE__BODY_REFUSED:
                if (!m->refused || !id_ok(&m->refused->peer) || m->refused->status >= 0) {
                        *reason = "relay refused peer is not 32 bytes, or its status is not an error";
                        return -EBADMSG;
                }
                return 0;
        case SWARM__RELAY_MESSAGE__BODY_DIAL_REQUEST:
                if (!m->dial_request || m->dial_request->nonce.len != RELAY_NONCE_SIZE ||
                    !m->dial_request->record || !m->dial_request->record->body.data ||
                    m->dial_request->record->body.len == 0 ||
                    m->dial_request->record->body.len > WIRE_RECORD_MAX ||
                    m->dial_request->record->signature.len != WIRE_SIGNATURE_SIZE) {
                        *reason = "dial-back request nonce is not 16 bytes, or its record is missing or malformed";
                        return -EBADMSG;
                }
                return 0;
        case SWARM__RELAY_MESSAGE__BODY_DIAL_BACK:
                if (!m->dial_back || m->dial_back->nonce.len != RELAY_NONCE_SIZE) {
                        *reason = "dial-back nonce is not 16 bytes";
                        return -EBADMSG;
                }
                return 0;
        default:
                *reason = "unknown relay message type (no body this version knows)";
                return -EBADMSG;
        }
}

void relay_message_free(Swarm__RelayMessage *m) {
        if (m)
                pb_free_unpacked(&m->base);
}

int relay_message_decode(const uint8_t *data, size_t size, size_t max_size, Swarm__RelayMessage **ret,
                         const char **reason) {
        Swarm__RelayMessage *m = NULL;
        struct pb_budget b = {};
        const char *dummy;
        int r;

        if (!reason)
                reason = &dummy;
        *reason = NULL;
        if (!ret || (!data && size > 0))
                return -EINVAL;
        if (size > max_size) {
                *reason = "relay message is over the message size limit";
                return -EMSGSIZE;
        }
        /* A box is one bytes field: protobuf-c copies it once; the rest is
         * small.  Twice the size and some slack is ample. */
        r = pb_unpack_strict(&swarm__relay_message__descriptor, data, size, 2 * size + 16 * 1024,
                             WIRE_UNKNOWN_FIELDS_MAX, &b, (ProtobufCMessage **) &m, reason,
                             "relay message needs more memory than its size allows",
                             "relay message is not a valid protobuf RelayMessage",
                             "relay message has a field number 0 or too many unknown fields");
        if (r < 0)
                return r;
        r = relay_message_check(m, reason);
        if (r < 0) {
                relay_message_free(m);
                return r;
        }
        *ret = m;
        return 0;
}

int relay_message_encode(Swarm__RelayMessage *m, size_t max_size, uint8_t **ret, size_t *ret_size) {
        if (!m || !ret || !ret_size)
                return -EINVAL;
        m->version = WIRE_VERSION;
        return pb_pack_alloc(&m->base, max_size, ret, ret_size);
}

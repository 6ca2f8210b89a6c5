/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Swarm membership: SWIM failure detection, piggybacked dissemination and
 * push-pull anti-entropy of signed node records, as a pure state machine
 * (see membership.h).
 *
 * State of a member.  A member is its latest verified SignedRecord plus a
 * liveness state.  The incarnation is the record's own: only the member
 * can raise it, by signing a new record, so a rumor (which nobody signs)
 * can only ever talk about the incarnation we already hold.  Precedence:
 *   - record with incarnation i > ours: ALIVE at i, whatever we thought
 *     (refutation, rejoin); a record at the same incarnation only updates
 *     the content (skills, load...) and leaves the state alone;
 *   - SUSPECT(i) applies to ALIVE(i); DEAD(i) and LEFT(i) apply to ALIVE(i)
 *     and SUSPECT(i);
 *   - a rumor at any other incarnation is ignored: lower is stale, higher
 *     is unverifiable (and would let anyone push a node's incarnation to
 *     UINT64_MAX).
 * A rumor about us at our incarnation is refuted at once: incarnation+1,
 * version+1, re-signed, disseminated.
 *
 * Bytes.  Ping, Ack and PingReq carry at most max_piggyback rumors and
 * records within max_message_bytes; a push-pull carries at most
 * push_pull_digests digests and push_pull_max_bytes of records.  So a node
 * sends O(1) bytes per probe interval whatever the swarm size: one probe
 * (two or three messages with indirect probes), acks for the probes it
 * receives (one on average), and a push-pull every push_pull_interval.
 *
 * Tables.  Members live in an array (index 0 is us) with an open
 * addressing hash table of indices keyed by the node id (salted, so ids
 * chosen to collide do not degrade it); the probe order is a shuffled
 * array of indices walked once per cycle (SWIM's round robin).  Members not
 * ALIVE are also on a small watch list, so timers cost O(suspects), not
 * O(members), per tick. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "membership.h"

#define ID_SIZE WIRE_NODE_ID_SIZE
#define QUEUE_MAX 4096u                 /* rumors and records waiting to be piggybacked */
#define INDIRECT_MAX 64u                /* PingReqs served at once */
#define SEEDS_MAX 16u
#define PUSH_PULL_PENDING_MAX 8u
/* Each nested length prefix (Gossip in Ping, Ping in Envelope) can grow by
 * a byte or two as items are added; the budget keeps this much spare. */
#define ENVELOPE_SLACK 8u

/* A verified record, immutable once made, shared by reference count
 * between the member table and the piggyback queue (and, through
 * membership_import(), between instances in the simulator). */
struct mrecord {
        unsigned n_ref;
        Swarm__SignedRecord s;          /* owns body and signature */
        Swarm__NodeRecord *r;           /* decoded from s.body, verified */
        uint32_t size;                  /* encoded size of s */
};

struct member {
        struct mrecord *rec;            /* never NULL; id, version, incarnation */
        uint64_t state_since_usec;
        uint64_t last_heard_usec;
        uint32_t faults;
        uint8_t state;                  /* enum member_state */
        bool watched;                   /* on the watch list */
        bool mark;                      /* scratch, push-pull */
};

enum {
        ITEM_RUMOR,
        ITEM_RECORD,
};

struct item {
        uint8_t id[ID_SIZE];
        uint8_t kind;
        uint8_t state;                  /* rumor */
        uint32_t transmits;
        uint64_t incarnation;           /* rumor */
        struct mrecord *rec;            /* record, a reference */
};

struct indirect {
        uint64_t seq;                   /* of our Ping to target */
        uint64_t requester_seq;
        uint64_t deadline;
        uint8_t requester[ID_SIZE];
        uint8_t target[ID_SIZE];
};

struct seed {
        uint8_t id[ID_SIZE];
        char *endpoint;
};

struct pending_push_pull {
        uint8_t peer[ID_SIZE];
        uint64_t deadline;
};

struct membership {
        struct membership_config config;
        struct membership_io io;
        uint64_t hash_salt;

        struct member *members;         /* [0] is us */
        size_t n_members, n_members_allocated;
        uint32_t *slots;                /* member index + 1; 0 is empty */
        size_t n_slots;                 /* a power of two */

        uint32_t *probe_order;
        size_t n_probe_order, n_probe_order_allocated, probe_cursor;

        uint8_t (*watch)[ID_SIZE];
        size_t n_watch, n_watch_allocated;
        uint64_t watch_deadline;        /* earliest suspicion expiry or reap on it */

        /* Sorted by transmits, fewest first; equal ones newest first. */
        struct item *queue;
        size_t n_queue, n_queue_allocated;

        struct indirect indirect[INDIRECT_MAX];
        size_t n_indirect;

        struct seed seeds[SEEDS_MAX];
        size_t n_seeds;

        struct pending_push_pull push_pulls[PUSH_PULL_PENDING_MAX];
        size_t n_push_pulls;

        struct {
                bool active, acked, indirect;
                uint8_t target[ID_SIZE];
                uint64_t seq, started_usec;
        } probe;

        uint64_t seq;
        uint64_t next_probe_usec, next_push_pull_usec, next_join_usec, next_reconnect_usec;
        bool leaving;

        struct membership_stats stats;
};

const char *member_state_to_string(enum member_state s) {
        switch (s) {
        case MEMBER_ALIVE:
                return "alive";
        case MEMBER_SUSPECT:
                return "suspect";
        case MEMBER_DEAD:
                return "dead";
        case MEMBER_LEFT:
                return "left";
        }
        return "unknown";
}

void membership_config_default(struct membership_config *c) {
        *c = (struct membership_config) {
                .probe_interval_usec = 200 * 1000,
                .probe_timeout_usec = 80 * 1000,
                .indirect_probes = 3,
                .suspicion_mult = 4,
                .retransmit_mult = 4,
                .max_piggyback = 16,
                .push_pull_interval_usec = 10 * 1000 * 1000,
                .push_pull_digests = 64,
                .dead_reap_usec = 120ull * 1000 * 1000,
                .max_message_bytes = 1400,
                .push_pull_max_bytes = 32 * 1024,
                .reconnect_interval_usec = 5 * 1000 * 1000,
        };
}

/* ---- Small helpers ------------------------------------------------------ */

static uint64_t now_usec(const struct membership *m) {
        return m->io.now_usec(m->io.userdata);
}

static uint64_t random_below(struct membership *m, uint64_t n) {
        return n == 0 ? 0 : m->io.random_u64(m->io.userdata) % n;
}

static const uint8_t *member_id(const struct member *mb) {
        return mb->rec->r->node_id.data;
}

static uint64_t member_version(const struct member *mb) {
        return mb->rec->r->version;
}

static uint64_t member_incarnation(const struct member *mb) {
        return mb->rec->r->incarnation;
}

static bool state_is_live(uint8_t s) {
        return s == MEMBER_ALIVE || s == MEMBER_SUSPECT;
}

static bool id_valid(const ProtobufCBinaryData *b) {
        return b->len == ID_SIZE && b->data;
}

static const uint8_t *self_id(const struct membership *m) {
        return member_id(&m->members[0]);
}

static bool is_self(const struct membership *m, const uint8_t *id) {
        return memcmp(id, self_id(m), ID_SIZE) == 0;
}

static size_t varint_size(uint64_t v) {
        size_t n = 1;
        while (v >= 0x80) {
                v >>= 7;
                n++;
        }
        return n;
}

/* Bytes a length-delimited field of len bytes takes (tags < 16). */
static size_t field_size(size_t len) {
        return 1 + varint_size(len) + len;
}

/* log10(n) to within 1/64, without libm. */
static double log10_of(size_t n) {
        double x = (double) n, r = 0;

        if (n <= 1)
                return 0;
        while (x >= 10) {
                x /= 10;
                r += 1;
        }
        for (double bit = 0.5; bit > 1.0 / 128; bit /= 2) {
                x *= x;
                if (x >= 10) {
                        x /= 10;
                        r += bit;
                }
        }
        return r;
}

/* memberlist's suspicionTimeout(): mult × max(1, log10(N)) × interval. */
static uint64_t suspicion_timeout_usec(const struct membership *m) {
        double l = log10_of(m->n_members);

        if (l < 1)
                l = 1;
        return (uint64_t) ((double) m->config.suspicion_mult * l * (double) m->config.probe_interval_usec);
}

/* memberlist's retransmitLimit(): mult × ceil(log10(N+1)), which is mult ×
 * the number of decimal digits of N. */
static uint32_t retransmit_limit(const struct membership *m) {
        uint32_t digits = 1;

        for (size_t n = m->n_members; n >= 10; n /= 10)
                digits++;
        return m->config.retransmit_mult * digits;
}

/* ---- Records ------------------------------------------------------------ */

static struct mrecord *mrecord_ref(struct mrecord *rec) {
        rec->n_ref++;
        return rec;
}

static void mrecord_unref(struct mrecord *rec) {
        if (!rec || --rec->n_ref > 0)
                return;
        wire_signed_record_clear(&rec->s);
        wire_record_free(rec->r);
        free(rec);
}

/* Takes s's buffers (on success and failure) and the decoded r. */
static struct mrecord *mrecord_new(Swarm__SignedRecord *s, Swarm__NodeRecord *r) {
        struct mrecord *rec;

        rec = calloc(1, sizeof(*rec));
        if (!rec) {
                wire_signed_record_clear(s);
                wire_record_free(r);
                return NULL;
        }
        rec->n_ref = 1;
        swarm__signed_record__init(&rec->s);
        rec->s.body = s->body;
        rec->s.signature = s->signature;
        s->body = (ProtobufCBinaryData) {};
        s->signature = (ProtobufCBinaryData) {};
        rec->r = r;
        rec->size = (uint32_t) swarm__signed_record__get_packed_size(&rec->s);
        return rec;
}

static bool mrecord_same_body(const struct mrecord *rec, const ProtobufCBinaryData *body) {
        return rec->s.body.len == body->len && memcmp(rec->s.body.data, body->data, body->len) == 0;
}

/* Reads node_id and version out of an encoded NodeRecord without decoding
 * it, so that the common case (a record we already hold, relayed again) is
 * dismissed without an allocation or a signature check.  The full decode
 * and verification in wire_record_open() still decide everything else. */
static int record_peek(const ProtobufCBinaryData *body, const uint8_t **ret_id, uint64_t *ret_version) {
        const uint8_t *p = body->data, *end = body->data + body->len;
        const uint8_t *id = NULL;
        uint64_t version = 0;

        if (!p && body->len > 0)
                return -EBADMSG;

        while (p < end) {
                uint64_t key = 0, v = 0;
                unsigned shift;

                for (shift = 0;; shift += 7) {
                        if (p >= end || shift > 63)
                                return -EBADMSG;
                        key |= (uint64_t) (*p & 0x7f) << shift;
                        if (!(*p++ & 0x80))
                                break;
                }

                switch (key & 7) {
                case 0: /* varint */
                        for (shift = 0;; shift += 7) {
                                if (p >= end || shift > 63)
                                        return -EBADMSG;
                                v |= (uint64_t) (*p & 0x7f) << shift;
                                if (!(*p++ & 0x80))
                                        break;
                        }
                        if (key >> 3 == 2)
                                version = v;
                        break;
                case 1: /* fixed64 */
                        if (end - p < 8)
                                return -EBADMSG;
                        p += 8;
                        break;
                case 2: /* length-delimited */
                        for (shift = 0;; shift += 7) {
                                if (p >= end || shift > 63)
                                        return -EBADMSG;
                                v |= (uint64_t) (*p & 0x7f) << shift;
                                if (!(*p++ & 0x80))
                                        break;
                        }
                        if (v > (uint64_t) (end - p))
                                return -EBADMSG;
                        if (key >> 3 == 1) {
                                if (v != ID_SIZE)
                                        return -EBADMSG;
                                id = p;
                        }
                        p += v;
                        break;
                case 5: /* fixed32 */
                        if (end - p < 4)
                                return -EBADMSG;
                        p += 4;
                        break;
                default:
                        return -EBADMSG;
                }
        }

        if (!id)
                return -EBADMSG;
        *ret_id = id;
        *ret_version = version;
        return 0;
}

/* ---- The member table --------------------------------------------------- */

static size_t id_hash(const struct membership *m, const uint8_t *id) {
        uint64_t k;

        /* Ids are public keys, uniformly random unless someone grinds them;
         * the per-instance salt and the mix make grinding pointless. */
        memcpy(&k, id, sizeof(k));
        k ^= m->hash_salt;
        k ^= k >> 33;
        k *= UINT64_C(0xff51afd7ed558ccd);
        k ^= k >> 33;
        k *= UINT64_C(0xc4ceb9fe1a85ec53);
        k ^= k >> 33;
        return (size_t) k & (m->n_slots - 1);
}

/* Index of the member with this id, or -1; *ret_slot is where it is or
 * would go. */
static ssize_t member_lookup(const struct membership *m, const uint8_t *id, size_t *ret_slot) {
        size_t mask = m->n_slots - 1;

        for (size_t i = id_hash(m, id);; i = (i + 1) & mask) {
                uint32_t s = m->slots[i];

                if (s == 0) {
                        if (ret_slot)
                                *ret_slot = i;
                        return -1;
                }
                if (memcmp(member_id(&m->members[s - 1]), id, ID_SIZE) == 0) {
                        if (ret_slot)
                                *ret_slot = i;
                        return (ssize_t) s - 1;
                }
        }
}

static struct member *member_get(const struct membership *m, const uint8_t *id) {
        ssize_t i = member_lookup(m, id, NULL);

        return i < 0 ? NULL : &m->members[i];
}

static int slots_resize(struct membership *m, size_t n_slots) {
        uint32_t *slots;

        slots = calloc(n_slots, sizeof(uint32_t));
        if (!slots)
                return -ENOMEM;
        free(m->slots);
        m->slots = slots;
        m->n_slots = n_slots;

        for (size_t i = 0; i < m->n_members; i++) {
                size_t slot;

                (void) member_lookup(m, member_id(&m->members[i]), &slot);
                m->slots[slot] = (uint32_t) i + 1;
        }
        return 0;
}

static int members_reserve(struct membership *m, size_t n) {
        if (n > UINT32_MAX - 1)
                return -E2BIG;

        /* Exactly n when asked for many at once (membership_import()),
         * doubling otherwise. */
        if (n > m->n_members_allocated) {
                size_t a = n > 2 * m->n_members_allocated ? n : 2 * m->n_members_allocated;
                struct member *p;

                p = reallocarray(m->members, a, sizeof(struct member));
                if (!p)
                        return -ENOMEM;
                m->members = p;
                m->n_members_allocated = a;
        }

        /* Load factor at most 3/4. */
        if (n * 4 > m->n_slots * 3) {
                size_t s = m->n_slots;

                while (n * 4 > s * 3)
                        s *= 2;
                int r = slots_resize(m, s);
                if (r < 0)
                        return r;
        }

        if (n > m->n_probe_order_allocated) {
                size_t a = n > 2 * m->n_probe_order_allocated ? n : 2 * m->n_probe_order_allocated;
                uint32_t *p;

                p = reallocarray(m->probe_order, a, sizeof(uint32_t));
                if (!p)
                        return -ENOMEM;
                m->probe_order = p;
                m->n_probe_order_allocated = a;
        }
        return 0;
}

static void member_info_fill(const struct membership *m, const struct member *mb, struct member_info *ret) {
        *ret = (struct member_info) {
                .id = member_id(mb),
                .state = mb->state,
                .incarnation = member_incarnation(mb),
                .last_heard_usec = mb->last_heard_usec,
                .record = mb->rec->r,
                .signed_record = &mb->rec->s,
                .faults = mb->faults,
                .self = mb == &m->members[0],
        };
}

static void member_notify(struct membership *m, const struct member *mb, bool forgotten) {
        struct member_info info;

        if (!m->io.member_changed)
                return;
        member_info_fill(m, mb, &info);
        m->io.member_changed(m->io.userdata, &info, forgotten);
}

/* Appends a member (the caller reserved room) holding a reference to rec. */
static size_t member_add(struct membership *m, struct mrecord *rec, uint8_t state, uint64_t now, size_t slot) {
        size_t idx = m->n_members++;

        m->members[idx] = (struct member) {
                .rec = mrecord_ref(rec),
                .state = state,
                .state_since_usec = now,
                .last_heard_usec = now,
        };
        m->slots[slot] = (uint32_t) idx + 1;

        /* Into the part of the probe order not walked yet, at a random
         * place (SWIM: a new member is probed within this cycle). */
        if (idx > 0) {
                size_t j = m->probe_cursor + random_below(m, m->n_probe_order - m->probe_cursor + 1);

                if (j < m->n_probe_order)
                        m->probe_order[m->n_probe_order] = m->probe_order[j];
                m->probe_order[j] = (uint32_t) idx;
                m->n_probe_order++;
        }
        return idx;
}

static void slot_delete(struct membership *m, size_t i) {
        size_t mask = m->n_slots - 1;

        /* Backward-shift deletion: no tombstones. */
        for (size_t j = i;;) {
                size_t k;

                j = (j + 1) & mask;
                if (m->slots[j] == 0)
                        break;
                k = id_hash(m, member_id(&m->members[m->slots[j] - 1]));
                /* Move j's entry into the hole unless its home k lies
                 * cyclically in (i, j]. */
                if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
                        m->slots[i] = m->slots[j];
                        i = j;
                }
        }
        m->slots[i] = 0;
}

/* Forgets member idx > 0.  The last member moves into its place.  The
 * probe order holds every index 1..n-1 once: the moved member's entry is
 * re-pointed and the forgotten one's dropped.  O(N), but members are
 * forgotten dead_reap_usec after they died, not per message. */
static void member_remove(struct membership *m, size_t idx) {
        size_t slot, last = m->n_members - 1, p_idx = SIZE_MAX, p_last = SIZE_MAX;

        if (idx == 0 || idx >= m->n_members)
                return;

        for (size_t p = 0; p < m->n_probe_order; p++) {
                if (m->probe_order[p] == idx)
                        p_idx = p;
                if (m->probe_order[p] == last)
                        p_last = p;
        }
        if (idx != last && p_last != SIZE_MAX)
                m->probe_order[p_last] = (uint32_t) idx;
        if (p_idx != SIZE_MAX) {
                /* Keep the walked and unwalked parts of the cycle apart. */
                if (p_idx < m->probe_cursor) {
                        m->probe_order[p_idx] = m->probe_order[--m->probe_cursor];
                        p_idx = m->probe_cursor;
                }
                m->probe_order[p_idx] = m->probe_order[--m->n_probe_order];
        }

        (void) member_lookup(m, member_id(&m->members[idx]), &slot);
        slot_delete(m, slot);
        mrecord_unref(m->members[idx].rec);

        if (idx != last) {
                (void) member_lookup(m, member_id(&m->members[last]), &slot);
                m->members[idx] = m->members[last];
                m->slots[slot] = (uint32_t) idx + 1;
        }
        m->n_members--;
}

static uint64_t watch_deadline_of(const struct membership *m, const struct member *mb, uint64_t suspicion) {
        if (mb->state == MEMBER_ALIVE)
                return UINT64_MAX;
        return mb->state_since_usec + (mb->state == MEMBER_SUSPECT ? suspicion : m->config.dead_reap_usec);
}

static int watch_add(struct membership *m, struct member *mb) {
        uint64_t d = watch_deadline_of(m, mb, suspicion_timeout_usec(m));

        if (d < m->watch_deadline)
                m->watch_deadline = d;
        if (mb->watched)
                return 0;

        if (m->n_watch >= m->n_watch_allocated) {
                size_t a = m->n_watch_allocated ? m->n_watch_allocated * 2 : 16;
                void *p = reallocarray(m->watch, a, ID_SIZE);

                if (!p)
                        return -ENOMEM;
                m->watch = p;
                m->n_watch_allocated = a;
        }
        memcpy(m->watch[m->n_watch++], member_id(mb), ID_SIZE);
        mb->watched = true;
        return 0;
}

static void member_blame(struct membership *m, const uint8_t *id) {
        struct member *mb;

        if (!id)
                return;
        mb = member_get(m, id);
        if (mb && mb != &m->members[0])
                mb->faults++;
}

/* ---- The piggyback queue ------------------------------------------------ */

static void queue_remove(struct membership *m, size_t i) {
        if (m->queue[i].kind == ITEM_RECORD)
                mrecord_unref(m->queue[i].rec);
        memmove(m->queue + i, m->queue + i + 1, (m->n_queue - i - 1) * sizeof(struct item));
        m->n_queue--;
}

static int queue_push_front(struct membership *m, const struct item *it) {
        if (m->n_queue >= QUEUE_MAX)
                queue_remove(m, m->n_queue - 1);        /* the most transmitted */

        if (m->n_queue >= m->n_queue_allocated) {
                size_t a = m->n_queue_allocated ? m->n_queue_allocated * 2 : 16;
                struct item *p = reallocarray(m->queue, a, sizeof(struct item));

                if (!p)
                        return -ENOMEM;
                m->queue = p;
                m->n_queue_allocated = a;
        }
        memmove(m->queue + 1, m->queue, m->n_queue * sizeof(struct item));
        m->queue[0] = *it;
        m->n_queue++;
        return 0;
}

/* A newer claim about a member replaces the older one queued, so that a
 * node never keeps relaying what it knows to be superseded. */
static int queue_rumor(struct membership *m, const uint8_t *id, uint64_t incarnation, uint8_t state) {
        for (size_t i = 0; i < m->n_queue;)
                if (m->queue[i].kind == ITEM_RUMOR && memcmp(m->queue[i].id, id, ID_SIZE) == 0)
                        queue_remove(m, i);
                else
                        i++;

        struct item it = {
                .kind = ITEM_RUMOR,
                .state = state,
                .incarnation = incarnation,
        };
        memcpy(it.id, id, ID_SIZE);
        return queue_push_front(m, &it);
}

static int queue_record(struct membership *m, struct mrecord *rec) {
        const uint8_t *id = rec->r->node_id.data;

        for (size_t i = 0; i < m->n_queue;) {
                struct item *it = &m->queue[i];

                if (memcmp(it->id, id, ID_SIZE) == 0 &&
                    (it->kind == ITEM_RECORD || it->incarnation < rec->r->incarnation))
                        queue_remove(m, i);
                else
                        i++;
        }

        struct item it = {
                .kind = ITEM_RECORD,
                .rec = mrecord_ref(rec),
        };
        memcpy(it.id, id, ID_SIZE);
        int r = queue_push_front(m, &it);
        if (r < 0)
                mrecord_unref(rec);
        return r;
}

/* ---- Gossip out --------------------------------------------------------- */

struct gossip_out {
        Swarm__Gossip gossip;
        Swarm__Rumor rumors[WIRE_RUMORS_MAX];
        Swarm__Rumor *rumor_ptrs[WIRE_RUMORS_MAX];
        Swarm__SignedRecord *record_ptrs[WIRE_RECORDS_MAX];
        uint32_t chosen[WIRE_RUMORS_MAX + WIRE_RECORDS_MAX];   /* queue indices, ascending */
        size_t n_chosen;
        size_t bytes;                   /* encoded size of the items */
};

static void gossip_init(struct gossip_out *g) {
        swarm__gossip__init(&g->gossip);
        g->gossip.rumors = g->rumor_ptrs;
        g->gossip.records = g->record_ptrs;
        g->n_chosen = 0;
        g->bytes = 0;
}

static bool gossip_add_rumor(struct gossip_out *g, const uint8_t *id, uint64_t incarnation, uint8_t state,
                             size_t budget) {
        Swarm__Rumor *ru;
        size_t sz;

        if (g->gossip.n_rumors >= WIRE_RUMORS_MAX)
                return false;

        ru = &g->rumors[g->gossip.n_rumors];
        swarm__rumor__init(ru);
        ru->node_id = (ProtobufCBinaryData) { .len = ID_SIZE, .data = (uint8_t *) id };
        ru->incarnation = incarnation;
        ru->state = state;

        sz = field_size(swarm__rumor__get_packed_size(ru));
        if (g->bytes + sz > budget)
                return false;
        g->bytes += sz;
        g->rumor_ptrs[g->gossip.n_rumors++] = ru;
        return true;
}

static bool gossip_add_record(struct gossip_out *g, struct mrecord *rec, size_t budget) {
        size_t sz = field_size(rec->size);

        if (g->gossip.n_records >= WIRE_RECORDS_MAX || g->bytes + sz > budget)
                return false;
        g->bytes += sz;
        g->record_ptrs[g->gossip.n_records++] = &rec->s;
        return true;
}

/* Picks what to piggyback from the queue: fewest transmissions first,
 * nothing about the destination itself (it knows better), within the
 * item count and the byte budget. */
static void gossip_fill(struct membership *m, struct gossip_out *g, const uint8_t *dest, size_t budget) {
        size_t max = m->config.max_piggyback;
        /* Past a few times what fits, looking further for something
         * small enough is not worth a scan of a long queue. */
        size_t scan = 4 * max + 16;

        for (size_t i = 0; i < m->n_queue && i < scan && g->gossip.n_rumors + g->gossip.n_records < max; i++) {
                struct item *it = &m->queue[i];
                bool added;

                if (g->bytes + 2 * ID_SIZE > budget)
                        break;          /* not even a rumor fits any more */
                if (dest && memcmp(it->id, dest, ID_SIZE) == 0)
                        continue;

                if (it->kind == ITEM_RUMOR)
                        added = gossip_add_rumor(g, it->id, it->incarnation, it->state, budget);
                else
                        added = gossip_add_record(g, it->rec, budget);
                if (added)
                        g->chosen[g->n_chosen++] = (uint32_t) i;
        }
}

/* After the message went out: count the transmissions, retire what was
 * sent often enough, keep the queue sorted. */
static void gossip_commit(struct membership *m, const struct gossip_out *g) {
        uint32_t limit = retransmit_limit(m);

        for (size_t c = g->n_chosen; c > 0; c--) {
                size_t i = g->chosen[c - 1];

                if (++m->queue[i].transmits >= limit) {
                        queue_remove(m, i);
                        continue;
                }
                /* Bubble towards the more transmitted end; chosen items
                 * further right were already handled. */
                for (; i + 1 < m->n_queue && m->queue[i + 1].transmits < m->queue[i].transmits; i++) {
                        struct item t = m->queue[i];

                        m->queue[i] = m->queue[i + 1];
                        m->queue[i + 1] = t;
                }
        }
}

/* ---- Sending ------------------------------------------------------------ */

static const char *endpoint_of(const struct membership *m, const uint8_t *id) {
        const struct member *mb = member_get(m, id);

        if (mb && mb->rec->r->n_endpoints > 0)
                return mb->rec->r->endpoints[0];
        for (size_t i = 0; i < m->n_seeds; i++)
                if (memcmp(m->seeds[i].id, id, ID_SIZE) == 0)
                        return m->seeds[i].endpoint;
        return NULL;
}

/* Tells the caller why something was dropped or failed; "what: why". */
static void debug(struct membership *m, const uint8_t *peer, int error, const char *what, const char *why) {
        char buf[256];

        if (!m->io.debug)
                return;
        if (why) {
                snprintf(buf, sizeof(buf), "%s: %s", what, why);
                what = buf;
        }
        m->io.debug(m->io.userdata, peer, error, what);
}

static int send_envelope(struct membership *m, const uint8_t *to, const char *endpoint, Swarm__Envelope *e) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size;
        int r;

        r = wire_encode(e, &buf, &size);
        if (r < 0)
                return r;

        m->stats.sent_messages++;
        m->stats.sent_bytes += size;
        m->io.send(m->io.userdata, to, endpoint ?: endpoint_of(m, to), buf, size);
        return 0;
}

/* The rumor a peer should hear about itself, if we think it is not well:
 * a suspect gets the chance to refute at once rather than when gossip
 * happens to reach it. */
static bool targeted_rumor(const struct membership *m, const uint8_t *peer, uint64_t *ret_incarnation,
                           uint8_t *ret_state) {
        const struct member *mb = member_get(m, peer);

        if (!mb || mb == &m->members[0] || mb->state == MEMBER_ALIVE)
                return false;
        *ret_incarnation = member_incarnation(mb);
        *ret_state = mb->state;
        return true;
}

/* Sends a Ping, Ack or PingReq (whose gossip field is g) with as much
 * piggyback as fits. */
static int send_with_gossip(struct membership *m, const uint8_t *to, Swarm__Envelope *e, struct gossip_out *g) {
        size_t base, budget;
        uint64_t inc;
        uint8_t state;
        int r;

        e->version = WIRE_VERSION;
        base = wire_encoded_size(e);
        budget = m->config.max_message_bytes > base + ENVELOPE_SLACK ?
                m->config.max_message_bytes - base - ENVELOPE_SLACK : 0;

        if (targeted_rumor(m, to, &inc, &state))
                (void) gossip_add_rumor(g, to, inc, state, budget);
        gossip_fill(m, g, to, budget);

        r = send_envelope(m, to, NULL, e);
        if (r < 0)
                return r;
        gossip_commit(m, g);
        return 0;
}

static int send_ping(struct membership *m, const uint8_t *to, uint64_t seq, const uint8_t *on_behalf_of) {
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        Swarm__Ping ping = SWARM__PING__INIT;
        struct gossip_out g;

        gossip_init(&g);
        ping.seq = seq;
        if (on_behalf_of)
                ping.on_behalf_of = (ProtobufCBinaryData) { .len = ID_SIZE, .data = (uint8_t *) on_behalf_of };
        ping.gossip = &g.gossip;
        e.body_case = SWARM__ENVELOPE__BODY_PING;
        e.ping = &ping;
        return send_with_gossip(m, to, &e, &g);
}

static int send_ack(struct membership *m, const uint8_t *to, uint64_t seq, const uint8_t *target) {
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        Swarm__Ack ack = SWARM__ACK__INIT;
        struct gossip_out g;

        gossip_init(&g);
        ack.seq = seq;
        if (target)
                ack.target = (ProtobufCBinaryData) { .len = ID_SIZE, .data = (uint8_t *) target };
        ack.gossip = &g.gossip;
        e.body_case = SWARM__ENVELOPE__BODY_ACK;
        e.ack = &ack;
        return send_with_gossip(m, to, &e, &g);
}

static int send_ping_req(struct membership *m, const uint8_t *to, uint64_t seq, const uint8_t *target) {
        Swarm__Envelope e = SWARM__ENVELOPE__INIT;
        Swarm__PingReq req = SWARM__PING_REQ__INIT;
        struct gossip_out g;

        gossip_init(&g);
        req.seq = seq;
        req.target = (ProtobufCBinaryData) { .len = ID_SIZE, .data = (uint8_t *) target };
        req.gossip = &g.gossip;
        e.body_case = SWARM__ENVELOPE__BODY_PING_REQ;
        e.ping_req = &req;
        return send_with_gossip(m, to, &e, &g);
}

/* ---- Our own record ----------------------------------------------------- */

/* Signs r as our new record, checks that it opens, installs it and (if
 * asked) queues it for dissemination. */
static int self_publish(struct membership *m, const Swarm__NodeRecord *r, bool disseminate) {
        Swarm__SignedRecord s = SWARM__SIGNED_RECORD__INIT;
        Swarm__NodeRecord *opened = NULL;
        struct mrecord *rec;
        const char *reason = NULL;
        int k;

        k = m->io.sign(m->io.userdata, r, &s);
        if (k < 0)
                return k;

        /* Our own record goes through the same door as everyone's: a
         * signer and verifier that disagree show up here, not at peers. */
        k = wire_record_open(&s, m->io.verify, m->io.userdata, &opened, &reason);
        if (k < 0) {
                wire_signed_record_clear(&s);
                debug(m, NULL, k, "our own record does not open", reason);
                return k;
        }
        if (!id_valid(&opened->node_id) || !m->members ||
            (m->n_members > 0 && memcmp(opened->node_id.data, self_id(m), ID_SIZE) != 0)) {
                wire_signed_record_clear(&s);
                wire_record_free(opened);
                return -EINVAL;
        }

        rec = mrecord_new(&s, opened);
        if (!rec)
                return -ENOMEM;

        if (m->n_members == 0) {
                size_t slot;

                (void) member_lookup(m, rec->r->node_id.data, &slot);
                member_add(m, rec, MEMBER_ALIVE, now_usec(m), slot);
        } else {
                mrecord_unref(m->members[0].rec);
                m->members[0].rec = mrecord_ref(rec);
        }

        k = 0;
        if (disseminate)
                k = queue_record(m, rec);
        mrecord_unref(rec);
        member_notify(m, &m->members[0], false);
        return k;
}

/* Re-issues our current record with a higher incarnation (refutation) or
 * version.  The copy is shallow: sign() only reads it. */
static int self_reissue(struct membership *m, uint64_t min_version, uint64_t min_incarnation) {
        Swarm__NodeRecord r = *m->members[0].rec->r;

        r.version = r.version + 1 > min_version ? r.version + 1 : min_version;
        if (r.incarnation < min_incarnation)
                r.incarnation = min_incarnation;
        return self_publish(m, &r, true);
}

static void self_refute(struct membership *m, uint64_t incarnation) {
        int r;

        r = self_reissue(m, 0, incarnation + 1);
        if (r < 0) {
                debug(m, NULL, r, "cannot refute a suspicion", NULL);
                return;
        }
        m->members[0].state = MEMBER_ALIVE;
        m->stats.refutations++;
}

/* ---- Taking records and rumors ------------------------------------------ */

static int record_reject(struct membership *m, const uint8_t *blame, int error, const char *what) {
        m->stats.rejected_records++;
        member_blame(m, blame);
        debug(m, blame, error, "dropped a record", what);
        return error;
}

/* Takes a signed record that arrived from the authenticated peer from
 * (NULL: handed in locally).  1 when learned (a new member or a newer
 * version), 0 when already known or harmlessly superseded, negative when
 * rejected.
 *
 * Who is blamed.  A bad signature, a malformed record or an incarnation
 * that goes backwards is the sender's fault: an honest node verifies
 * before it relays.  An older version is always dropped and counted
 * (rejected_records), but blamed only on a node that cannot be innocent:
 * the record's owner replaying its own past.  A third party relaying a
 * version that was current when it queued it is what epidemic
 * dissemination does while a newer version overtakes the older wave. */
static int record_take(struct membership *m, const uint8_t *from, const Swarm__SignedRecord *s, bool disseminate) {
        Swarm__SignedRecord copy = SWARM__SIGNED_RECORD__INIT;
        Swarm__NodeRecord *r = NULL;
        const char *reason = NULL;
        const uint8_t *id;
        struct mrecord *rec;
        struct member *mb;
        uint64_t version, now;
        ssize_t idx;
        size_t slot;
        int k;

        if (!s)
                return record_reject(m, from, -EBADMSG, "empty");
        k = record_peek(&s->body, &id, &version);
        if (k < 0)
                return record_reject(m, from, k, "malformed body");

        idx = member_lookup(m, id, &slot);
        if (idx >= 0) {
                mb = &m->members[idx];
                if (version < member_version(mb)) {
                        if (idx == 0)
                                return 0;       /* our own past, relayed */
                        m->stats.rejected_records++;
                        if (from && memcmp(from, id, ID_SIZE) == 0)
                                member_blame(m, from);
                        return -ESTALE;
                }
                if (version == member_version(mb) && mrecord_same_body(mb->rec, &s->body))
                        return 0;
        }

        k = wire_record_open(s, m->io.verify, m->io.userdata, &r, &reason);
        if (k < 0)
                return record_reject(m, from, k, reason ?: "does not open");
        if (!id_valid(&r->node_id) || memcmp(r->node_id.data, id, ID_SIZE) != 0 || r->version != version) {
                wire_record_free(r);
                return record_reject(m, from, -EBADMSG, "body read two ways");
        }

        if (idx == 0) {
                /* A valid record of ours at or above our version, other
                 * than the one we hold: we restarted and reused or forgot
                 * our counter.  Jump past it. */
                uint64_t inc = r->incarnation;

                wire_record_free(r);
                k = self_reissue(m, version + 1, inc + 1 > member_incarnation(&m->members[0]) ?
                                 inc + 1 : member_incarnation(&m->members[0]));
                return k < 0 ? k : 0;
        }

        if (idx > 0) {
                mb = &m->members[idx];
                if (version == member_version(mb)) {
                        /* Same version, other bytes, valid signature: the
                         * owner signed two records with one version.  Keep
                         * the first. */
                        wire_record_free(r);
                        mb->faults++;
                        m->stats.rejected_records++;
                        return 0;
                }
                if (r->incarnation < member_incarnation(mb)) {
                        wire_record_free(r);
                        return record_reject(m, from, -EBADMSG, "incarnation went backwards");
                }
        }

        k = wire_signed_record_copy(s, &copy);
        if (k < 0) {
                wire_record_free(r);
                return k;
        }
        rec = mrecord_new(&copy, r);
        if (!rec)
                return -ENOMEM;

        now = now_usec(m);
        if (idx < 0) {
                k = members_reserve(m, m->n_members + 1);
                if (k < 0) {
                        mrecord_unref(rec);
                        return k;
                }
                (void) member_lookup(m, id, &slot);     /* the table may have grown */
                idx = (ssize_t) member_add(m, rec, MEMBER_ALIVE, now, slot);
        } else {
                mb = &m->members[idx];
                if (rec->r->incarnation > member_incarnation(mb)) {
                        /* Refuted, or back from the dead. */
                        mb->state = MEMBER_ALIVE;
                        mb->state_since_usec = now;
                }
                mrecord_unref(mb->rec);
                mb->rec = mrecord_ref(rec);
                mb->last_heard_usec = now;
        }

        m->stats.accepted_records++;
        if (disseminate)
                (void) queue_record(m, rec);
        mrecord_unref(rec);
        member_notify(m, &m->members[idx], false);
        return 1;
}

static void member_set_state(struct membership *m, struct member *mb, uint8_t state, uint64_t now) {
        mb->state = state;
        mb->state_since_usec = now;
        mb->last_heard_usec = now;
        (void) watch_add(m, mb);
        (void) queue_rumor(m, member_id(mb), member_incarnation(mb), state);
        member_notify(m, mb, false);
}

static void rumor_take(struct membership *m, const Swarm__Rumor *ru) {
        struct member *mb;
        uint8_t state = (uint8_t) ru->state;

        mb = member_get(m, ru->node_id.data);
        if (!mb || ru->incarnation != member_incarnation(mb))
                return;         /* unknown, stale or unverifiable */

        if (mb == &m->members[0]) {
                if (state == MEMBER_ALIVE || m->leaving)
                        return;
                self_refute(m, ru->incarnation);
                return;
        }

        switch (state) {
        case MEMBER_SUSPECT:
                if (mb->state == MEMBER_ALIVE)
                        member_set_state(m, mb, MEMBER_SUSPECT, now_usec(m));
                break;
        case MEMBER_DEAD:
        case MEMBER_LEFT:
                if (state_is_live(mb->state))
                        member_set_state(m, mb, state, now_usec(m));
                break;
        default:
                break;          /* ALIVE comes only as a signed record */
        }
}

static void gossip_take(struct membership *m, const uint8_t *from, const Swarm__Gossip *g) {
        if (!g)
                return;
        /* Records first: a refutation in the same message outranks the
         * rumor it refutes. */
        for (size_t i = 0; i < g->n_records; i++)
                (void) record_take(m, from, g->records[i], true);
        for (size_t i = 0; i < g->n_rumors; i++)
                rumor_take(m, g->rumors[i]);
}

/* ---- Construction ------------------------------------------------------- */

int membership_new(const struct membership_config *config, const struct membership_io *io,
                   const Swarm__NodeRecord *self, struct membership **ret) {
        struct membership *m;
        uint64_t now;
        int r;

        if (!config || !io || !self || !ret)
                return -EINVAL;
        if (!io->now_usec || !io->random_u64 || !io->send || !io->sign)
                return -EINVAL;
        if (config->probe_interval_usec == 0 || config->probe_timeout_usec >= config->probe_interval_usec ||
            config->suspicion_mult == 0 || config->retransmit_mult == 0 || config->max_piggyback == 0 ||
            config->push_pull_interval_usec == 0 || config->push_pull_digests > WIRE_DIGESTS_MAX ||
            config->max_message_bytes < 256 || config->max_message_bytes > WIRE_MESSAGE_MAX ||
            config->push_pull_max_bytes < WIRE_RECORD_MAX || config->push_pull_max_bytes > WIRE_MESSAGE_MAX / 2)
                return -EINVAL;
        if (!id_valid(&self->node_id))
                return -EINVAL;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->config = *config;
        m->io = *io;
        m->hash_salt = m->io.random_u64(m->io.userdata);

        r = slots_resize(m, 16);
        if (r >= 0)
                r = members_reserve(m, 1);
        if (r >= 0)
                r = self_publish(m, self, false);
        if (r < 0) {
                membership_free(m);
                return r;
        }

        /* Spread everyone's timers over the interval. */
        now = now_usec(m);
        m->next_probe_usec = now + random_below(m, config->probe_interval_usec);
        m->next_push_pull_usec = now + random_below(m, config->push_pull_interval_usec);
        m->next_reconnect_usec = now + config->reconnect_interval_usec;
        m->next_join_usec = UINT64_MAX;
        m->watch_deadline = UINT64_MAX;

        *ret = m;
        return 0;
}

struct membership *membership_free(struct membership *m) {
        if (!m)
                return NULL;

        for (size_t i = 0; i < m->n_members; i++)
                mrecord_unref(m->members[i].rec);
        while (m->n_queue > 0)
                queue_remove(m, m->n_queue - 1);
        for (size_t i = 0; i < m->n_seeds; i++)
                free(m->seeds[i].endpoint);
        free(m->members);
        free(m->slots);
        free(m->probe_order);
        free(m->watch);
        free(m->queue);
        free(m);
        return NULL;
}

int membership_update_self(struct membership *m, const Swarm__NodeRecord *self) {
        const Swarm__NodeRecord *cur;
        Swarm__NodeRecord r;

        if (!m || !self || !id_valid(&self->node_id) || !is_self(m, self->node_id.data))
                return -EINVAL;

        cur = m->members[0].rec->r;
        r = *self;
        if (r.version <= cur->version)
                r.version = cur->version + 1;
        if (r.incarnation < cur->incarnation)
                r.incarnation = cur->incarnation;
        return self_publish(m, &r, true);
}

int membership_add_record(struct membership *m, const Swarm__SignedRecord *s) {
        int r;

        if (!m || !s)
                return -EINVAL;
        r = record_take(m, NULL, s, false);
        return r < 0 ? r : 0;
}

int membership_import(struct membership *m, const struct membership *from) {
        uint64_t now;
        int r;

        if (!m || !from)
                return -EINVAL;

        r = members_reserve(m, m->n_members + from->n_members);
        if (r < 0)
                return r;

        now = now_usec(m);
        for (size_t i = 0; i < from->n_members; i++) {
                const struct member *f = &from->members[i];
                size_t slot;

                if (f->state != MEMBER_ALIVE)
                        continue;
                if (member_lookup(m, member_id(f), &slot) >= 0)
                        continue;
                member_notify(m, &m->members[member_add(m, f->rec, MEMBER_ALIVE, now, slot)], false);
        }
        return 0;
}

/* ---- Push-pull ---------------------------------------------------------- */

struct push_pull_out {
        Swarm__Envelope e;
        Swarm__PushPull pp;
        Swarm__Digest *digests;
        Swarm__Digest **digest_ptrs;
        Swarm__SignedRecord *record_ptrs[WIRE_RECORDS_MAX];
        size_t max_digests, record_bytes;
};

static void push_pull_out_done(struct push_pull_out *o) {
        free(o->digests);
        free(o->digest_ptrs);
}

static int push_pull_out_init(struct membership *m, struct push_pull_out *o, bool reply) {
        *o = (struct push_pull_out) {
                .e = SWARM__ENVELOPE__INIT,
                .pp = SWARM__PUSH_PULL__INIT,
                .max_digests = m->config.push_pull_digests,
        };
        if (o->max_digests > 0) {
                o->digests = calloc(o->max_digests, sizeof(Swarm__Digest));
                o->digest_ptrs = calloc(o->max_digests, sizeof(Swarm__Digest *));
                if (!o->digests || !o->digest_ptrs) {
                        push_pull_out_done(o);
                        return -ENOMEM;
                }
        }
        o->pp.is_reply = reply;
        o->pp.digests = o->digest_ptrs;
        o->pp.records = o->record_ptrs;
        o->pp.sender = &m->members[0].rec->s;
        o->e.version = WIRE_VERSION;
        o->e.body_case = SWARM__ENVELOPE__BODY_PUSH_PULL;
        o->e.push_pull = &o->pp;
        return 0;
}

static bool push_pull_add_digest(struct push_pull_out *o, const uint8_t *id, uint64_t version) {
        Swarm__Digest *d;

        if (o->pp.n_digests >= o->max_digests)
                return false;
        d = &o->digests[o->pp.n_digests];
        swarm__digest__init(d);
        d->node_id = (ProtobufCBinaryData) { .len = ID_SIZE, .data = (uint8_t *) id };
        d->version = version;
        o->digest_ptrs[o->pp.n_digests++] = d;
        return true;
}

static bool push_pull_add_record(struct membership *m, struct push_pull_out *o, struct mrecord *rec) {
        size_t sz = field_size(rec->size);

        if (o->pp.n_records >= WIRE_RECORDS_MAX || o->record_bytes + sz > m->config.push_pull_max_bytes)
                return false;
        o->record_bytes += sz;
        o->record_ptrs[o->pp.n_records++] = &rec->s;
        return true;
}

static void push_pull_pending_add(struct membership *m, const uint8_t *peer) {
        struct pending_push_pull *p;

        if (m->n_push_pulls >= PUSH_PULL_PENDING_MAX) {
                memmove(m->push_pulls, m->push_pulls + 1, (PUSH_PULL_PENDING_MAX - 1) * sizeof(*p));
                m->n_push_pulls--;
        }
        p = &m->push_pulls[m->n_push_pulls++];
        memcpy(p->peer, peer, ID_SIZE);
        p->deadline = now_usec(m) + m->config.push_pull_interval_usec;
}

/* Whether we asked peer for a push-pull (and forgets it). */
static bool push_pull_pending_take(struct membership *m, const uint8_t *peer) {
        for (size_t i = 0; i < m->n_push_pulls; i++)
                if (memcmp(m->push_pulls[i].peer, peer, ID_SIZE) == 0) {
                        memmove(m->push_pulls + i, m->push_pulls + i + 1,
                                (m->n_push_pulls - i - 1) * sizeof(struct pending_push_pull));
                        m->n_push_pulls--;
                        return true;
                }
        return false;
}

/* A bounded sample of what we hold: push_pull_digests live members from a
 * random starting point, so that successive rounds cover the table. */
static int push_pull_send_request(struct membership *m, const uint8_t *to, const char *endpoint) {
        struct push_pull_out o;
        size_t start;
        int r;

        r = push_pull_out_init(m, &o, false);
        if (r < 0)
                return r;

        /* Members we think dead first (up to half): if they refuted
         * where we cannot hear, the peer's records bring them back. */
        start = random_below(m, m->n_watch);
        for (size_t n = 0; n < m->n_watch && o.pp.n_digests < o.max_digests / 2; n++) {
                const struct member *mb = member_get(m, m->watch[(start + n) % m->n_watch]);

                if (mb && !state_is_live(mb->state))
                        push_pull_add_digest(&o, member_id(mb), member_version(mb));
        }
        start = random_below(m, m->n_members);
        for (size_t n = 0; n < m->n_members && o.pp.n_digests < o.max_digests; n++) {
                const struct member *mb = &m->members[(start + n) % m->n_members];

                if (mb == &m->members[0] || !state_is_live(mb->state))
                        continue;
                push_pull_add_digest(&o, member_id(mb), member_version(mb));
        }

        r = send_envelope(m, to, endpoint, &o.e);
        push_pull_out_done(&o);
        if (r >= 0)
                push_pull_pending_add(m, to);
        return r;
}

/* Answers a push-pull: the records we hold newer than the digests, digests
 * of those we lack, then (within the budget) a random sample of others,
 * since a sample of digests says nothing about what the peer lacks
 * outside it. */
static int push_pull_send_reply(struct membership *m, const uint8_t *to, const Swarm__PushPull *req) {
        struct push_pull_out o;
        struct member *peer;
        size_t start;
        int r;

        r = push_pull_out_init(m, &o, true);
        if (r < 0)
                return r;

        /* The peer's own record, if it is behind ours (it restarted). */
        peer = member_get(m, to);
        if (peer && req->sender) {
                const uint8_t *id;
                uint64_t version;

                if (record_peek(&req->sender->body, &id, &version) >= 0 &&
                    (version < member_version(peer) ||
                     (version == member_version(peer) && !mrecord_same_body(peer->rec, &req->sender->body))))
                        push_pull_add_record(m, &o, peer->rec);
        }
        if (peer)
                peer->mark = true;

        for (size_t i = 0; i < req->n_digests; i++) {
                const Swarm__Digest *d = req->digests[i];
                struct member *mb = member_get(m, d->node_id.data);

                if (!mb) {
                        push_pull_add_digest(&o, d->node_id.data, 0);
                        continue;
                }
                if (mb->mark || mb == &m->members[0])
                        continue;
                mb->mark = true;
                if (member_version(mb) > d->version && state_is_live(mb->state))
                        push_pull_add_record(m, &o, mb->rec);
                else if (member_version(mb) < d->version)
                        push_pull_add_digest(&o, member_id(mb), member_version(mb));
        }

        start = random_below(m, m->n_members);
        for (size_t n = 0; n < m->n_members; n++) {
                struct member *mb = &m->members[(start + n) % m->n_members];

                if (mb == &m->members[0] || mb->mark || !state_is_live(mb->state))
                        continue;
                if (!push_pull_add_record(m, &o, mb->rec))
                        break;
        }

        /* Clear the marks. */
        if (peer)
                peer->mark = false;
        for (size_t i = 0; i < req->n_digests; i++) {
                struct member *mb = member_get(m, req->digests[i]->node_id.data);

                if (mb)
                        mb->mark = false;
        }

        r = send_envelope(m, to, NULL, &o.e);
        push_pull_out_done(&o);
        return r;
}

/* The third leg: the peer's reply listed digests of what it lacks. */
static int push_pull_send_wanted(struct membership *m, const uint8_t *to, const Swarm__PushPull *reply) {
        struct push_pull_out o;
        int r;

        r = push_pull_out_init(m, &o, true);
        if (r < 0)
                return r;
        o.pp.digests = NULL;
        o.max_digests = 0;

        for (size_t i = 0; i < reply->n_digests; i++) {
                struct member *mb = member_get(m, reply->digests[i]->node_id.data);

                if (mb && mb != &m->members[0] && state_is_live(mb->state) &&
                    member_version(mb) > reply->digests[i]->version)
                        if (!push_pull_add_record(m, &o, mb->rec))
                                break;
        }

        r = 0;
        if (o.pp.n_records > 0)
                r = send_envelope(m, to, NULL, &o.e);
        push_pull_out_done(&o);
        return r;
}

static int random_live_member(struct membership *m, const uint8_t *exclude, size_t *ret) {
        /* Random picks: O(1) in a large, mostly live table. */
        for (unsigned attempt = 0; attempt < 32 && m->n_members > 1; attempt++) {
                size_t i = 1 + random_below(m, m->n_members - 1);
                const struct member *mb = &m->members[i];

                if (!state_is_live(mb->state) || (exclude && memcmp(member_id(mb), exclude, ID_SIZE) == 0))
                        continue;
                *ret = i;
                return 0;
        }
        /* A small or mostly dead table: count and pick. */
        size_t n = 0;
        for (size_t i = 1; i < m->n_members; i++)
                if (state_is_live(m->members[i].state) &&
                    !(exclude && memcmp(member_id(&m->members[i]), exclude, ID_SIZE) == 0))
                        n++;
        if (n == 0)
                return -ENOENT;
        n = random_below(m, n);
        for (size_t i = 1; i < m->n_members; i++)
                if (state_is_live(m->members[i].state) &&
                    !(exclude && memcmp(member_id(&m->members[i]), exclude, ID_SIZE) == 0) && n-- == 0) {
                        *ret = i;
                        return 0;
                }
        return -ENOENT;
}

int membership_join(struct membership *m, const uint8_t id[WIRE_NODE_ID_SIZE], const char *endpoint) {
        struct seed *seed = NULL;

        if (!m || !id || is_self(m, id))
                return -EINVAL;

        for (size_t i = 0; i < m->n_seeds; i++)
                if (memcmp(m->seeds[i].id, id, ID_SIZE) == 0)
                        seed = &m->seeds[i];
        if (!seed) {
                if (m->n_seeds >= SEEDS_MAX)
                        return -E2BIG;
                seed = &m->seeds[m->n_seeds];
                *seed = (struct seed) {};
                memcpy(seed->id, id, ID_SIZE);
                m->n_seeds++;
        }
        if (endpoint) {
                char *e = strdup(endpoint);

                if (!e)
                        return -ENOMEM;
                free(seed->endpoint);
                seed->endpoint = e;
        }

        m->next_join_usec = now_usec(m) + 5 * m->config.probe_interval_usec;
        return push_pull_send_request(m, id, seed->endpoint);
}

/* ---- Receiving ---------------------------------------------------------- */

static void on_ping(struct membership *m, const uint8_t *from, const Swarm__Ping *ping) {
        gossip_take(m, from, ping->gossip);
        (void) send_ack(m, from, ping->seq, NULL);
}

static void on_ack(struct membership *m, const uint8_t *from, const Swarm__Ack *ack) {
        gossip_take(m, from, ack->gossip);

        if (m->probe.active && ack->seq == m->probe.seq &&
            (memcmp(from, m->probe.target, ID_SIZE) == 0 ||
             (ack->target.len == ID_SIZE && memcmp(ack->target.data, m->probe.target, ID_SIZE) == 0))) {
                m->probe.acked = true;
                return;
        }

        for (size_t i = 0; i < m->n_indirect; i++) {
                struct indirect *ind = &m->indirect[i];

                if (ind->seq != ack->seq || memcmp(ind->target, from, ID_SIZE) != 0)
                        continue;
                (void) send_ack(m, ind->requester, ind->requester_seq, ind->target);
                *ind = m->indirect[--m->n_indirect];
                return;
        }
}

static void on_ping_req(struct membership *m, const uint8_t *from, const Swarm__PingReq *req) {
        struct indirect *ind;

        gossip_take(m, from, req->gossip);

        if (is_self(m, req->target.data)) {
                (void) send_ack(m, from, req->seq, self_id(m));
                return;
        }

        if (m->n_indirect >= INDIRECT_MAX) {
                /* Drop the oldest. */
                memmove(m->indirect, m->indirect + 1, (INDIRECT_MAX - 1) * sizeof(struct indirect));
                m->n_indirect--;
        }
        ind = &m->indirect[m->n_indirect++];
        ind->seq = ++m->seq;
        ind->requester_seq = req->seq;
        ind->deadline = now_usec(m) + m->config.probe_interval_usec;
        memcpy(ind->requester, from, ID_SIZE);
        memcpy(ind->target, req->target.data, ID_SIZE);
        (void) send_ping(m, ind->target, ind->seq, from);
}

static void on_push_pull(struct membership *m, const uint8_t *from, const Swarm__PushPull *pp) {
        size_t learned = 0;

        if (pp->sender) {
                const uint8_t *id;
                uint64_t version;

                if (record_peek(&pp->sender->body, &id, &version) < 0 || memcmp(id, from, ID_SIZE) != 0)
                        (void) record_reject(m, from, -EBADMSG, "push-pull sender is not the peer");
                else
                        (void) record_take(m, from, pp->sender, true);
        }
        for (size_t i = 0; i < pp->n_records; i++)
                if (record_take(m, from, pp->records[i], true) > 0)
                        learned++;

        if (!pp->is_reply) {
                (void) push_pull_send_reply(m, from, pp);
                return;
        }

        /* A reply is never answered, except with the records it said it
         * lacks when it answers a push-pull we started. */
        if (!push_pull_pending_take(m, from))
                return;
        (void) push_pull_send_wanted(m, from, pp);

        /* Joining, or far behind: the reply was full of news, go again
         * soon rather than in a push-pull interval. */
        if (learned >= WIRE_RECORDS_MAX / 4) {
                uint64_t soon = now_usec(m) + m->config.probe_interval_usec;

                if (soon < m->next_push_pull_usec)
                        m->next_push_pull_usec = soon;
        }
}

int membership_receive(struct membership *m, const uint8_t from[WIRE_NODE_ID_SIZE],
                       const uint8_t *data, size_t size) {
        _cleanup_(wire_envelope_freep) Swarm__Envelope *e = NULL;
        const char *reason = NULL;
        struct member *mb;
        int r;

        if (!m || !from || (!data && size > 0))
                return -EINVAL;

        m->stats.received_messages++;
        m->stats.received_bytes += size;

        /* wire_decode() checks everything the handlers below rely on:
         * one known body, 32-byte ids, known rumor states, limits. */
        r = wire_decode(data, size, &e, &reason);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                m->stats.rejected_messages++;
                /* Another protocol version is not misbehaviour. */
                if (r != -EPROTONOSUPPORT)
                        member_blame(m, from);
                debug(m, from, r, "dropped a message", reason ?: "undecodable");
                return r == -EPROTONOSUPPORT ? r : -EBADMSG;
        }

        mb = member_get(m, from);
        if (mb)
                mb->last_heard_usec = now_usec(m);

        switch (e->body_case) {
        case SWARM__ENVELOPE__BODY_PING:
                on_ping(m, from, e->ping);
                break;
        case SWARM__ENVELOPE__BODY_ACK:
                on_ack(m, from, e->ack);
                break;
        case SWARM__ENVELOPE__BODY_PING_REQ:
                on_ping_req(m, from, e->ping_req);
                break;
        case SWARM__ENVELOPE__BODY_PUSH_PULL:
                on_push_pull(m, from, e->push_pull);
                break;
        default:
                break;          /* wire_decode() refused it */
        }
        return 0;
}

/* ---- Timers ------------------------------------------------------------- */

/* The next member to probe: each live member once per shuffled cycle. */
static ssize_t probe_next(struct membership *m) {
        for (unsigned pass = 0; pass < 2; pass++) {
                while (m->probe_cursor < m->n_probe_order) {
                        uint32_t idx = m->probe_order[m->probe_cursor++];

                        if (idx > 0 && idx < m->n_members && state_is_live(m->members[idx].state))
                                return idx;
                }

                /* A new cycle, freshly shuffled. */
                m->n_probe_order = m->n_members > 0 ? m->n_members - 1 : 0;
                for (size_t i = 0; i < m->n_probe_order; i++)
                        m->probe_order[i] = (uint32_t) i + 1;
                for (size_t i = m->n_probe_order; i > 1; i--) {
                        size_t j = random_below(m, i);
                        uint32_t t = m->probe_order[i - 1];

                        m->probe_order[i - 1] = m->probe_order[j];
                        m->probe_order[j] = t;
                }
                m->probe_cursor = 0;
        }
        return -1;
}

static void probe_finish(struct membership *m) {
        struct member *mb;

        if (!m->probe.active || m->probe.acked || m->leaving)
                return;
        mb = member_get(m, m->probe.target);
        if (!mb || mb->state != MEMBER_ALIVE)
                return;         /* already suspected, or gone meanwhile */

        m->stats.suspicions++;
        member_set_state(m, mb, MEMBER_SUSPECT, now_usec(m));
}

static void probe_start(struct membership *m, uint64_t now) {
        ssize_t idx = probe_next(m);

        m->probe.active = false;
        if (idx < 0)
                return;

        m->probe.active = true;
        m->probe.acked = false;
        m->probe.indirect = false;
        m->probe.seq = ++m->seq;
        m->probe.started_usec = now;
        memcpy(m->probe.target, member_id(&m->members[idx]), ID_SIZE);
        m->stats.probes++;
        (void) send_ping(m, m->probe.target, m->probe.seq, NULL);
}

static void probe_indirect(struct membership *m) {
        uint8_t helpers[16][ID_SIZE];
        unsigned k = m->config.indirect_probes < 16 ? m->config.indirect_probes : 16, n = 0;

        m->probe.indirect = true;
        m->stats.probes_indirect++;

        /* k distinct random helpers, neither us nor the target. */
        for (unsigned attempt = 0; n < k && attempt < 4 * k + 8; attempt++) {
                const uint8_t *id;
                bool dup = false;
                size_t idx;

                if (random_live_member(m, m->probe.target, &idx) < 0)
                        break;
                id = member_id(&m->members[idx]);
                for (unsigned i = 0; i < n; i++)
                        dup = dup || memcmp(helpers[i], id, ID_SIZE) == 0;
                if (!dup)
                        memcpy(helpers[n++], id, ID_SIZE);
        }
        for (unsigned i = 0; i < n; i++)
                (void) send_ping_req(m, helpers[i], m->probe.seq, m->probe.target);
}

static void watch_run(struct membership *m, uint64_t now) {
        uint64_t suspicion = suspicion_timeout_usec(m);

        if (now < m->watch_deadline)
                return;
        m->watch_deadline = UINT64_MAX;

        for (size_t i = 0; i < m->n_watch;) {
                ssize_t idx = member_lookup(m, m->watch[i], NULL);
                struct member *mb = idx >= 0 ? &m->members[idx] : NULL;

                if (!mb || mb->state == MEMBER_ALIVE) {
                        if (mb)
                                mb->watched = false;
                        memcpy(m->watch[i], m->watch[--m->n_watch], ID_SIZE);
                        continue;
                }

                if (mb->state == MEMBER_SUSPECT && now >= mb->state_since_usec + suspicion) {
                        m->stats.deaths++;
                        member_set_state(m, mb, MEMBER_DEAD, now);
                } else if (mb->state != MEMBER_SUSPECT && now >= mb->state_since_usec + m->config.dead_reap_usec) {
                        mb->watched = false;
                        member_notify(m, mb, true);
                        member_remove(m, (size_t) idx);
                        memcpy(m->watch[i], m->watch[--m->n_watch], ID_SIZE);
                        continue;
                }
                if (watch_deadline_of(m, mb, suspicion) < m->watch_deadline)
                        m->watch_deadline = watch_deadline_of(m, mb, suspicion);
                i++;
        }
}

static bool alone(const struct membership *m) {
        for (size_t i = 1; i < m->n_members; i++)
                if (state_is_live(m->members[i].state))
                        return false;
        return true;
}

static void join_run(struct membership *m, uint64_t now) {
        for (size_t i = 0; i < m->n_seeds; i++) {
                const struct member *mb = member_get(m, m->seeds[i].id);

                if (!mb || !state_is_live(mb->state))
                        (void) push_pull_send_request(m, m->seeds[i].id, m->seeds[i].endpoint);
        }
        /* Quickly while we know nobody, then now and then (after a long
         * partition everyone may have forgotten everyone). */
        m->next_join_usec = now + (alone(m) ? 5 * m->config.probe_interval_usec :
                                   6 * m->config.push_pull_interval_usec);
}

/* Pings a random DEAD or LEFT member with the news: if it is in fact alive
 * (a healed partition, or a forged LEFT rumor — rumors are unsigned), it
 * refutes and comes back. */
static void reconnect_run(struct membership *m) {
        size_t n_dead = 0, pick;

        for (size_t i = 0; i < m->n_watch; i++) {
                const struct member *mb = member_get(m, m->watch[i]);

                if (mb && (mb->state == MEMBER_DEAD || mb->state == MEMBER_LEFT))
                        n_dead++;
        }
        if (n_dead == 0)
                return;
        pick = random_below(m, n_dead);
        for (size_t i = 0; i < m->n_watch; i++) {
                const struct member *mb = member_get(m, m->watch[i]);

                if (mb && (mb->state == MEMBER_DEAD || mb->state == MEMBER_LEFT) && pick-- == 0) {
                        (void) send_ping(m, m->watch[i], ++m->seq, NULL);
                        return;
                }
        }
}

void membership_tick(struct membership *m) {
        uint64_t now;

        if (!m)
                return;
        now = now_usec(m);

        if (m->probe.active && !m->probe.acked && !m->probe.indirect &&
            now >= m->probe.started_usec + m->config.probe_timeout_usec)
                probe_indirect(m);

        if (now >= m->next_probe_usec) {
                probe_finish(m);
                probe_start(m, now);
                m->next_probe_usec += m->config.probe_interval_usec;
                if (m->next_probe_usec <= now)
                        m->next_probe_usec = now + m->config.probe_interval_usec;
        }

        watch_run(m, now);

        for (size_t i = 0; i < m->n_indirect;)
                if (now >= m->indirect[i].deadline)
                        m->indirect[i] = m->indirect[--m->n_indirect];
                else
                        i++;
        for (size_t i = 0; i < m->n_push_pulls;)
                if (now >= m->push_pulls[i].deadline) {
                        memmove(m->push_pulls + i, m->push_pulls + i + 1,
                                (m->n_push_pulls - i - 1) * sizeof(struct pending_push_pull));
                        m->n_push_pulls--;
                } else
                        i++;

        if (now >= m->next_push_pull_usec) {
                size_t idx;

                if (random_live_member(m, NULL, &idx) >= 0) {
                        uint8_t peer[ID_SIZE];

                        memcpy(peer, member_id(&m->members[idx]), ID_SIZE);
                        (void) push_pull_send_request(m, peer, NULL);
                }
                m->next_push_pull_usec = now + m->config.push_pull_interval_usec;
        }

        if (m->n_seeds > 0 && now >= m->next_join_usec)
                join_run(m, now);

        if (m->config.reconnect_interval_usec > 0 && now >= m->next_reconnect_usec) {
                reconnect_run(m);
                m->next_reconnect_usec = now + m->config.reconnect_interval_usec;
        }
}

uint64_t membership_next_deadline(const struct membership *m) {
        uint64_t d;

        if (!m)
                return UINT64_MAX;

        d = m->next_probe_usec;
        if (m->next_push_pull_usec < d)
                d = m->next_push_pull_usec;
        if (m->n_seeds > 0 && m->next_join_usec < d)
                d = m->next_join_usec;
        if (m->probe.active && !m->probe.acked && !m->probe.indirect &&
            m->probe.started_usec + m->config.probe_timeout_usec < d)
                d = m->probe.started_usec + m->config.probe_timeout_usec;

        /* The watch deadline is kept as members enter it, so that this
         * is O(1): the simulator calls it after every event. */
        if (m->watch_deadline < d)
                d = m->watch_deadline;
        if (m->n_watch > 0 && m->config.reconnect_interval_usec > 0 && m->next_reconnect_usec < d)
                d = m->next_reconnect_usec;
        return d;
}

void membership_leave(struct membership *m) {
        struct member *self;

        if (!m || m->leaving)
                return;

        m->leaving = true;
        self = &m->members[0];
        self->state = MEMBER_LEFT;
        self->state_since_usec = now_usec(m);
        (void) queue_rumor(m, self_id(m), member_incarnation(self), MEMBER_LEFT);
        member_notify(m, self, false);

        /* Tell a few members now; the probes of the next intervals carry
         * the rumor further. */
        for (unsigned i = 0; i < m->config.indirect_probes; i++) {
                uint8_t peer[ID_SIZE];
                size_t idx;

                if (random_live_member(m, NULL, &idx) < 0)
                        break;
                memcpy(peer, member_id(&m->members[idx]), ID_SIZE);
                (void) send_ping(m, peer, ++m->seq, NULL);
        }
}

/* ---- Views -------------------------------------------------------------- */

size_t membership_count(const struct membership *m) {
        return m ? m->n_members : 0;
}

int membership_get(const struct membership *m, size_t i, struct member_info *ret) {
        if (!m || !ret)
                return -EINVAL;
        if (i >= m->n_members)
                return -ENOENT;
        member_info_fill(m, &m->members[i], ret);
        return 0;
}

int membership_find(const struct membership *m, const uint8_t id[WIRE_NODE_ID_SIZE], struct member_info *ret) {
        const struct member *mb;

        if (!m || !id || !ret)
                return -EINVAL;
        mb = member_get(m, id);
        if (!mb)
                return -ENOENT;
        member_info_fill(m, mb, ret);
        return 0;
}

const struct membership_stats *membership_get_stats(const struct membership *m) {
        return m ? &m->stats : NULL;
}

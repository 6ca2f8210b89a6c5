/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The wire codec.  Everything a peer sends passes through here first:
 * size, then a budgeted unpack, then the limits and shapes in wire.h, and
 * for records the signature.  Nothing here logs: callers decide what a bad
 * message means and say so once, with the reason string. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "macro.h"
#include "pb-util.h"
#include "utf8-valid.h"
#include "wire.h"

/* ---- Field checks ---------------------------------------------------- */

/* protobuf-c hands strings out NUL-terminated; an absent proto3 string is
 * "" (never NULL from unpack, but a caller-built record may have NULL). */
static bool string_is_valid(const char *s) {
        size_t n;

        if (!s)
                return true;
        n = strnlen(s, WIRE_STRING_MAX + 1);
        return n <= WIRE_STRING_MAX && utf8_valid(s, n);
}

static bool endpoint_is_valid(const char *s) {
        static const char *const schemes[] = { "tcp://", "ipc://", "inproc://" };

        if (!s || !string_is_valid(s))
                return false;
        for (size_t i = 0; i < ELEMENTSOF(schemes); i++) {
                size_t k = strlen(schemes[i]);

                if (strncmp(s, schemes[i], k) == 0)
                        return s[k] != '\0';
        }
        return false;
}

/* The rule the skill loader applies to a plugin's name
 * (swarm_value_name_valid()), kept here so that the codec needs nothing
 * but libsodium and protobuf-c; test-wire checks that the two agree. */
static bool skill_name_is_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strnlen(s, WIRE_SKILL_NAME_MAX + 1);
        if (n == 0 || n > WIRE_SKILL_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
                      s[i] == '_' || s[i] == '.' || s[i] == '-'))
                        return false;
        return true;
}

static bool node_id_is_valid(const ProtobufCBinaryData *b) {
        return b->len == WIRE_NODE_ID_SIZE && b->data;
}

/* Empty, or a node id. */
static bool node_id_is_valid_or_empty(const ProtobufCBinaryData *b) {
        return b->len == 0 || node_id_is_valid(b);
}

static int signed_record_check(const Swarm__SignedRecord *s, const char **reason) {
        if (!s) {
                *reason = "signed record missing";
                return -EBADMSG;
        }
        return pb_signed_check(&s->body, &s->signature, WIRE_RECORD_MAX, PB_SIGNED_RECORD, reason);
}

static int signed_records_check(Swarm__SignedRecord *const *records, size_t n, const char **reason) {
        if (n > WIRE_RECORDS_MAX) {
                *reason = "more than WIRE_RECORDS_MAX records";
                return -EBADMSG;
        }
        if (n > 0 && !records) {
                *reason = "records missing";
                return -EBADMSG;
        }
        for (size_t i = 0; i < n; i++) {
                int r = signed_record_check(records[i], reason);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int gossip_check(const Swarm__Gossip *g, const char **reason) {
        if (!g)
                return 0;

        if (g->n_rumors > WIRE_RUMORS_MAX) {
                *reason = "more than WIRE_RUMORS_MAX rumors";
                return -EBADMSG;
        }
        if (g->n_rumors > 0 && !g->rumors) {
                *reason = "rumors missing";
                return -EBADMSG;
        }
        for (size_t i = 0; i < g->n_rumors; i++) {
                const Swarm__Rumor *m = g->rumors[i];

                if (!m) {
                        *reason = "rumor missing";
                        return -EBADMSG;
                }
                if (!node_id_is_valid(&m->node_id)) {
                        *reason = "rumor node_id is not 32 bytes";
                        return -EBADMSG;
                }
                /* proto3 keeps enum values it does not know; we do not. */
                switch (m->state) {
                case SWARM__MEMBER_STATE__ALIVE:
                case SWARM__MEMBER_STATE__SUSPECT:
                case SWARM__MEMBER_STATE__DEAD:
                case SWARM__MEMBER_STATE__LEFT:
                        break;
                default:
                        *reason = "rumor state is not a known MemberState";
                        return -EBADMSG;
                }
        }

        return signed_records_check(g->records, g->n_records, reason);
}

static int push_pull_check(const Swarm__PushPull *p, const char **reason) {
        int r;

        if (p->n_digests > WIRE_DIGESTS_MAX) {
                *reason = "more than WIRE_DIGESTS_MAX digests";
                return -EBADMSG;
        }
        if (p->n_digests > 0 && !p->digests) {
                *reason = "digests missing";
                return -EBADMSG;
        }
        for (size_t i = 0; i < p->n_digests; i++) {
                if (!p->digests[i]) {
                        *reason = "digest missing";
                        return -EBADMSG;
                }
                if (!node_id_is_valid(&p->digests[i]->node_id)) {
                        *reason = "digest node_id is not 32 bytes";
                        return -EBADMSG;
                }
        }

        r = signed_records_check(p->records, p->n_records, reason);
        if (r < 0)
                return r;

        if (!p->sender) {
                *reason = "push_pull sender record missing";
                return -EBADMSG;
        }
        return signed_record_check(p->sender, reason);
}

static int envelope_check(const Swarm__Envelope *e, const char **reason) {
        if (e->version != WIRE_VERSION) {
                *reason = "envelope version is not WIRE_VERSION";
                return -EPROTONOSUPPORT;
        }

        switch (e->body_case) {
        case SWARM__ENVELOPE__BODY_PING:
                if (!e->ping)
                        break;
                if (!node_id_is_valid_or_empty(&e->ping->on_behalf_of)) {
                        *reason = "ping on_behalf_of is neither empty nor 32 bytes";
                        return -EBADMSG;
                }
                return gossip_check(e->ping->gossip, reason);

        case SWARM__ENVELOPE__BODY_ACK:
                if (!e->ack)
                        break;
                if (!node_id_is_valid_or_empty(&e->ack->target)) {
                        *reason = "ack target is neither empty nor 32 bytes";
                        return -EBADMSG;
                }
                return gossip_check(e->ack->gossip, reason);

        case SWARM__ENVELOPE__BODY_PING_REQ:
                if (!e->ping_req)
                        break;
                if (!node_id_is_valid(&e->ping_req->target)) {
                        *reason = "ping_req target is not 32 bytes";
                        return -EBADMSG;
                }
                return gossip_check(e->ping_req->gossip, reason);

        case SWARM__ENVELOPE__BODY_PUSH_PULL:
                if (!e->push_pull)
                        break;
                return push_pull_check(e->push_pull, reason);

        default:
                break;
        }

        /* A body of a type added after this build arrives as an unknown
         * field, leaving the oneof unset. */
        *reason = "unknown message type (no body this version knows)";
        return -EBADMSG;
}

/* ---- Envelopes ------------------------------------------------------- */

int wire_decode_counted(const uint8_t *data, size_t size, Swarm__Envelope **ret, const char **reason,
                        size_t *ret_allocated) {
        _cleanup_(wire_envelope_freep) Swarm__Envelope *e = NULL;
        const char *dummy;
        struct pb_budget b = {};
        int r;

        if (!reason)
                reason = &dummy;
        *reason = NULL;
        if (ret_allocated)
                *ret_allocated = 0;
        if (!ret || (!data && size > 0))
                return -EINVAL;

        if (size > WIRE_MESSAGE_MAX) {
                *reason = "envelope is over WIRE_MESSAGE_MAX";
                return -EMSGSIZE;
        }

        r = pb_unpack_strict(&swarm__envelope__descriptor, data, size, WIRE_DECODE_BUDGET(size),
                             WIRE_UNKNOWN_FIELDS_MAX, &b, (ProtobufCMessage **) &e, reason,
                             "envelope needs more memory than its size allows",
                             "envelope is not a valid protobuf Envelope",
                             "envelope has a field number 0 or too many unknown fields");
        if (ret_allocated)
                *ret_allocated = b.used;
        if (r < 0)
                return r;

        r = envelope_check(e, reason);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(e);
        return 0;
}

int wire_decode(const uint8_t *data, size_t size, Swarm__Envelope **ret, const char **reason) {
        return wire_decode_counted(data, size, ret, reason, NULL);
}

void wire_envelope_free(Swarm__Envelope *e) {
        if (e)
                pb_free_unpacked(&e->base);
}

int wire_encode(Swarm__Envelope *e, uint8_t **ret, size_t *ret_size) {
        const char *reason;

        if (!e || !ret || !ret_size)
                return -EINVAL;

        e->version = WIRE_VERSION;
        if (envelope_check(e, &reason) < 0)
                return -EINVAL;
        return pb_pack_alloc(&e->base, WIRE_MESSAGE_MAX, ret, ret_size);
}

size_t wire_encoded_size(const Swarm__Envelope *e) {
        Swarm__Envelope copy;

        if (!e)
                return 0;
        copy = *e;
        copy.version = WIRE_VERSION;
        return protobuf_c_message_get_packed_size(&copy.base);
}

/* ---- Signed records -------------------------------------------------- */

int wire_record_check(const Swarm__NodeRecord *r, const char **reason) {
        const char *dummy;

        if (!reason)
                reason = &dummy;

        if (!r) {
                *reason = "record missing";
                return -EBADMSG;
        }
        if (!node_id_is_valid(&r->node_id)) {
                *reason = "record node_id is not 32 bytes";
                return -EBADMSG;
        }

        if (r->n_endpoints > WIRE_ENDPOINTS_MAX) {
                *reason = "record has more than WIRE_ENDPOINTS_MAX endpoints";
                return -EBADMSG;
        }
        if (r->n_endpoints > 0 && !r->endpoints) {
                *reason = "record endpoints missing";
                return -EBADMSG;
        }
        for (size_t i = 0; i < r->n_endpoints; i++)
                if (!endpoint_is_valid(r->endpoints[i])) {
                        *reason = "record endpoint is not a tcp://, ipc:// or inproc:// address of at most WIRE_STRING_MAX bytes";
                        return -EBADMSG;
                }

        if (r->n_skills > WIRE_SKILLS_MAX) {
                *reason = "record has more than WIRE_SKILLS_MAX skills";
                return -EBADMSG;
        }
        if (r->n_skills > 0 && !r->skills) {
                *reason = "record skills missing";
                return -EBADMSG;
        }
        for (size_t i = 0; i < r->n_skills; i++) {
                const Swarm__SkillOffer *o = r->skills[i];

                if (!o) {
                        *reason = "record skill missing";
                        return -EBADMSG;
                }
                if (!skill_name_is_valid(o->name)) {
                        *reason = "record skill name is not 1-63 characters of [a-z0-9_.-]";
                        return -EBADMSG;
                }
                if (!string_is_valid(o->version) || !string_is_valid(o->unit) || !string_is_valid(o->device) ||
                    !string_is_valid(o->variant) || !string_is_valid(o->model)) {
                        *reason = "record skill version, unit, device, variant or model is not UTF-8 of at most "
                                  "WIRE_STRING_MAX bytes";
                        return -EBADMSG;
                }
        }

        if (!string_is_valid(r->name)) {
                *reason = "record name is not UTF-8 of at most WIRE_STRING_MAX bytes";
                return -EBADMSG;
        }
        if (r->boot_id.len != 0 && r->boot_id.len != WIRE_BOOT_ID_SIZE) {
                *reason = "record boot_id is neither empty nor 16 bytes";
                return -EBADMSG;
        }

        if (r->reachability != SWARM__REACHABILITY__REACH_UNKNOWN &&
            r->reachability != SWARM__REACHABILITY__REACH_PUBLIC &&
            r->reachability != SWARM__REACHABILITY__REACH_PRIVATE &&
            r->reachability != SWARM__REACHABILITY__REACH_CHECKING) {
                *reason = "record reachability is not UNKNOWN, PUBLIC, PRIVATE or CHECKING";
                return -EBADMSG;
        }
        if (r->n_relays > WIRE_RELAYS_MAX) {
                *reason = "record has more than WIRE_RELAYS_MAX relays";
                return -EBADMSG;
        }
        if (r->n_relays > 0 && (!r->relays || r->reachability != SWARM__REACHABILITY__REACH_PRIVATE)) {
                *reason = "record lists relays but is not PRIVATE";
                return -EBADMSG;
        }
        for (size_t i = 0; i < r->n_relays; i++) {
                const Swarm__RelayRef *rr = r->relays[i];

                if (!rr || !node_id_is_valid(&rr->node_id) ||
                    memcmp(rr->node_id.data, r->node_id.data, WIRE_NODE_ID_SIZE) == 0) {
                        *reason = "record relay node_id is not 32 bytes, or is the node itself";
                        return -EBADMSG;
                }
                if (!endpoint_is_valid(rr->endpoint) || strncmp(rr->endpoint, "tcp://", 6) != 0) {
                        *reason = "record relay endpoint is not a tcp:// address of at most WIRE_STRING_MAX bytes";
                        return -EBADMSG;
                }
        }

        return 0;
}

int wire_record_sign(const Swarm__NodeRecord *r, const uint8_t sk[64], Swarm__SignedRecord *out) {
        if (!r || !sk || !out)
                return -EINVAL;
        swarm__signed_record__init(out);

        if (wire_record_check(r, NULL) < 0)
                return -EINVAL;
        /* libsodium's secret key is seed ‖ public key: a record can only be
         * signed by the key it names. */
        if (memcmp(r->node_id.data, sk + 32, WIRE_NODE_ID_SIZE) != 0)
                return -EINVAL;

        return pb_pack_signed(&r->base, WIRE_RECORD_MAX, sk, &out->body, &out->signature);
}

void wire_signed_record_clear(Swarm__SignedRecord *s) {
        if (!s)
                return;
        free(s->body.data);
        free(s->signature.data);
        swarm__signed_record__init(s);
}

int wire_record_open(const Swarm__SignedRecord *s, wire_verify_fn verify, void *userdata,
                     Swarm__NodeRecord **ret, const char **reason) {
        _cleanup_(wire_record_freep) Swarm__NodeRecord *rec = NULL;
        struct pb_budget b;
        const char *dummy;
        int r;

        if (!reason)
                reason = &dummy;
        *reason = NULL;
        if (!ret)
                return -EINVAL;

        r = signed_record_check(s, reason);
        if (r < 0)
                return r;

        r = pb_unpack_strict(&swarm__node_record__descriptor, s->body.data, s->body.len, WIRE_DECODE_BUDGET(s->body.len),
                             WIRE_UNKNOWN_FIELDS_MAX, &b, (ProtobufCMessage **) &rec, reason,
                             "record body needs more memory than its size allows",
                             "record body is not a valid protobuf NodeRecord",
                             "record body has a field number 0 or too many unknown fields");
        if (r < 0)
                return r;

        r = wire_record_check(rec, reason);
        if (r < 0)
                return r;

        /* Over the bytes as received, never a re-encoding: the signer's
         * encoder and ours need not agree on field order or unknown
         * fields. */
        if (verify)
                r = verify(s->signature.data, s->body.data, s->body.len, rec->node_id.data, userdata);
        else
                r = crypto_sign_verify_detached(s->signature.data, s->body.data, s->body.len,
                                                rec->node_id.data);
        if (r != 0) {
                *reason = "record signature does not verify against its node_id";
                return -EKEYREJECTED;
        }

        *ret = TAKE_PTR(rec);
        return 0;
}

void wire_record_free(Swarm__NodeRecord *r) {
        if (r)
                pb_free_unpacked(&r->base);
}

int wire_signed_record_copy(const Swarm__SignedRecord *from, Swarm__SignedRecord *to) {
        _cleanup_free_ uint8_t *body = NULL, *sig = NULL;

        if (!from || !to)
                return -EINVAL;
        swarm__signed_record__init(to);

        body = malloc(from->body.len > 0 ? from->body.len : 1);
        sig = malloc(from->signature.len > 0 ? from->signature.len : 1);
        if (!body || !sig)
                return -ENOMEM;
        if (from->body.len > 0)
                memcpy(body, from->body.data, from->body.len);
        if (from->signature.len > 0)
                memcpy(sig, from->signature.data, from->signature.len);

        to->body = (ProtobufCBinaryData) { .len = from->body.len, .data = TAKE_PTR(body) };
        to->signature = (ProtobufCBinaryData) { .len = from->signature.len, .data = TAKE_PTR(sig) };
        return 0;
}

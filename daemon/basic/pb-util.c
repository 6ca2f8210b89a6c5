/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>

#include "pb-util.h"

static void *budget_alloc(void *userdata, size_t size) {
        struct pb_budget *b = userdata;
        void *p;

        if (size > b->left) {
                b->exhausted = true;
                return NULL;
        }
        p = malloc(size > 0 ? size : 1);
        if (!p) {
                b->oom = true;
                return NULL;
        }
        b->left -= size;
        b->used += size;
        return p;
}

static void plain_free(void *userdata, void *p) {
        free(p);
}

static void *plain_alloc(void *userdata, size_t size) {
        return malloc(size > 0 ? size : 1);
}

ProtobufCMessage *pb_unpack_budgeted(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t size,
                                     size_t budget, struct pb_budget *b) {
        ProtobufCAllocator a = {
                .alloc = budget_alloc,
                .free = plain_free,
                .allocator_data = b,
        };

        *b = (struct pb_budget) { .left = budget };
        return protobuf_c_message_unpack(d, &a, size, data);
}

int pb_unpack_strict(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t size, size_t budget,
                     size_t max_unknown, struct pb_budget *b, ProtobufCMessage **ret, const char **reason,
                     const char *exhausted, const char *invalid, const char *unknown_fields) {
        ProtobufCMessage *m;

        m = pb_unpack_budgeted(d, data, size, budget, b);
        if (!m) {
                if (b->oom) {
                        *reason = "out of memory";
                        return -ENOMEM;
                }
                *reason = b->exhausted ? exhausted : invalid;
                return -EBADMSG;
        }
        if (!pb_unknown_fields_valid(m, max_unknown)) {
                pb_free_unpacked(m);
                *reason = unknown_fields;
                return -EBADMSG;
        }
        *ret = m;
        return 0;
}

int pb_pack_alloc(const ProtobufCMessage *m, size_t max_size, uint8_t **ret, size_t *ret_size) {
        size_t size = protobuf_c_message_get_packed_size(m);
        uint8_t *buf;

        if (size > max_size)
                return -EMSGSIZE;
        buf = malloc(size > 0 ? size : 1);
        if (!buf)
                return -ENOMEM;
        if (protobuf_c_message_pack(m, buf) != size) {
                free(buf);
                return -EIO;
        }
        *ret = buf;
        *ret_size = size;
        return 0;
}

void pb_free_unpacked(ProtobufCMessage *m) {
        ProtobufCAllocator a = {
                .alloc = plain_alloc,
                .free = plain_free,
        };

        if (m)
                protobuf_c_message_free_unpacked(m, &a);
}

/* Field number 0 does not exist, but protobuf-c 1.4 takes it as an
 * unknown field when its tag is spelled in more than one byte (it only
 * checks the first), and then re-encodes it in one byte, which it refuses
 * to decode.  And a newer peer adds a few fields, not hundreds: many
 * unknown fields cost memory out of proportion to their bytes (an entry
 * each) and would let a message that fits the decode budget re-encode into
 * one that does not.  Walks every message in m, generically (the schema
 * has no recursive types, so the depth is bounded). */
bool pb_unknown_fields_valid(const ProtobufCMessage *m, size_t max_unknown) {
        const ProtobufCMessageDescriptor *d = m->descriptor;

        if (m->n_unknown_fields > max_unknown)
                return false;
        for (size_t i = 0; i < m->n_unknown_fields; i++)
                if (m->unknown_fields[i].tag == 0)
                        return false;

        for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];
                const char *base = (const char *) m;

                if (f->type != PROTOBUF_C_TYPE_MESSAGE)
                        continue;
                if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                        size_t n = *(const size_t *) (base + f->quantifier_offset);
                        ProtobufCMessage *const *sub = *(ProtobufCMessage *const *const *) (base + f->offset);

                        for (size_t k = 0; k < n; k++)
                                if (sub[k] && !pb_unknown_fields_valid(sub[k], max_unknown))
                                        return false;
                } else {
                        const ProtobufCMessage *sub;

                        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                            *(const uint32_t *) (base + f->quantifier_offset) != f->id)
                                continue;
                        sub = *(ProtobufCMessage *const *) (base + f->offset);
                        if (sub && !pb_unknown_fields_valid(sub, max_unknown))
                                return false;
                }
        }
        return true;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
int pb_pack_signed(const ProtobufCMessage *m, size_t max_size, const uint8_t sk[64],
                   ProtobufCBinaryData *body, ProtobufCBinaryData *signature) {
        size_t size = protobuf_c_message_get_packed_size(m);
        uint8_t *b, *sig;

        if (size > max_size)
                return -EMSGSIZE;
        b = malloc(size > 0 ? size : 1);
        sig = malloc(crypto_sign_BYTES);
        if (!b || !sig || protobuf_c_message_pack(m, b) != size ||
            crypto_sign_detached(sig, NULL, b, size, sk) != 0) {
                int r = b && sig ? -EIO : -ENOMEM;
                free(b);
                free(sig);
                return r;
        }
        *body = (ProtobufCBinaryData) { .len = size, .data = b };
        *signature = (ProtobufCBinaryData) { .len = crypto_sign_BYTES, .data = sig };
        return 0;
}

int pb_signed_check(const ProtobufCBinaryData *body, const ProtobufCBinaryData *signature, size_t max_body,
                    enum pb_signed_kind kind, const char **reason) {
        static const char *const messages[_PB_SIGNED_KIND_MAX][3] = {
                [PB_SIGNED_RECORD] = { "signed record body is empty", "signed record body is over its size limit",
                                       "signed record signature is not 64 bytes" },
                [PB_SIGNED_RESULT] = { "signed result body is empty", "signed result body is over the message size limit",
                                       "signed result signature is not 64 bytes" },
                [PB_SIGNED_CHEQUE] = { "signed cheque body is empty", "signed cheque body is over CHEQUE_MAX_SIZE",
                                       "signed cheque signature is not 64 bytes" },
                [PB_SIGNED_OPINION] = { "signed opinion body is empty", "signed opinion body is over OPINION_MAX_SIZE",
                                        "signed opinion signature is not 64 bytes" },
        };

        if (body->len == 0 || !body->data) {
                *reason = messages[kind][0];
                return -EBADMSG;
        }
        if (body->len > max_body) {
                *reason = messages[kind][1];
                return -EBADMSG;
        }
        if (signature->len != crypto_sign_BYTES || !signature->data) {
                *reason = messages[kind][2];
                return -EBADMSG;
        }
        return 0;
}

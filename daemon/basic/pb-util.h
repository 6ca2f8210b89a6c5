/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What the protobuf-c codecs (wire.c for membership, job-wire.c for jobs)
 * share: unpacking under an allocation budget, and the checks protobuf-c
 * 1.4 does not do itself (field number 0, a flood of unknown fields,
 * strict UTF-8). */

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* protobuf-c allocates while it unpacks, before anything can be checked;
 * what it allocates is already bounded by the input, and the budget makes
 * that bound explicit and small instead of trusting the library's
 * arithmetic.  It counts every byte requested, freed or not, so the sum is
 * also a bound on the peak.  Blocks are plain malloc() blocks. */
struct pb_budget {
        size_t left;
        size_t used;
        bool exhausted;                 /* a request went over the budget */
        bool oom;                       /* malloc() failed */
};

/* Unpacks size bytes of data as d, allocating at most budget bytes;
 * NULL when the bytes are not a d, or b says why. */
ProtobufCMessage *pb_unpack_budgeted(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t size,
                                     size_t budget, struct pb_budget *b);

/* The opening every decoder of outside bytes shares: pb_unpack_budgeted(),
 * then pb_unknown_fields_valid(m, max_unknown).  0 and *ret; -ENOMEM; or
 * -EBADMSG with *reason the caller's words for what went wrong: exhausted
 * (the budget), invalid (not a d at all), unknown_fields. */
int pb_unpack_strict(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t size, size_t budget,
                     size_t max_unknown, struct pb_budget *b, ProtobufCMessage **ret, const char **reason,
                     const char *exhausted, const char *invalid, const char *unknown_fields);

/* Packs m into a malloc'd buffer: 0, -EMSGSIZE over max_size, -ENOMEM. */
int pb_pack_alloc(const ProtobufCMessage *m, size_t max_size, uint8_t **ret, size_t *ret_size);

/* Frees what pb_unpack_budgeted() returned. */
void pb_free_unpacked(ProtobufCMessage *m);

/* No field number 0 and at most max_unknown unknown fields in m or any
 * message below it. */
bool pb_unknown_fields_valid(const ProtobufCMessage *m, size_t max_unknown);

/* What a signed blob is (for the reasons below). */
enum pb_signed_kind {
        PB_SIGNED_RECORD,
        PB_SIGNED_RESULT,
        PB_SIGNED_CHEQUE,
        PB_SIGNED_OPINION,
        _PB_SIGNED_KIND_MAX,
};

/* The shape of a signed blob, before anything is decoded or verified: a
 * body of 1 to max_body bytes and a 64-byte signature.  0, or -EBADMSG
 * with *reason (static: "signed cheque body is empty", …). */
int pb_signed_check(const ProtobufCBinaryData *body, const ProtobufCBinaryData *signature, size_t max_body,
                    enum pb_signed_kind kind, const char **reason);

/* Packs m and signs the exact bytes with the Ed25519 secret key sk into
 * body and signature (both malloc'd).  -EMSGSIZE over max_size. */
int pb_pack_signed(const ProtobufCMessage *m, size_t max_size, const uint8_t sk[64],
                   ProtobufCBinaryData *body, ProtobufCBinaryData *signature);

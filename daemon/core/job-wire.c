/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The jobs codec (job-wire.h).  The same discipline as wire.c: the size
 * first, then a budgeted unpack, then every field checked in one place
 * before anyone reads it; signatures over the exact bytes received.
 * Nothing here logs: callers say once what a bad message means, with the
 * reason string. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cheque.h"
#include "job-wire.h"
#include "opinion.h"
#include "pb-util.h"
#include "macro.h"
#include "utf8-valid.h"

/* ---- Field checks ---------------------------------------------------- */


/* protobuf-c hands strings out NUL-terminated; a caller-built message may
 * leave one NULL, which encodes as "". */
static bool string_is_valid(const char *s, size_t max) {
        size_t n;

        if (!s)
                return true;
        n = strnlen(s, max + 1);
        return n <= max && utf8_valid(s, n);
}

static int tensor_check(const Swarm__Tensor *t, uint64_t *ret_size, const char **reason) {
        uint64_t n_elements, size;
        int r;

        if (!t) {
                *reason = "tensor missing";
                return -EBADMSG;
        }
        if (swarm_dtype_size((enum swarm_dtype) t->dtype) == 0) {
                *reason = "tensor dtype is not a known swarm_dtype";
                return -EBADMSG;
        }
        if (t->n_shape > SWARM_TENSOR_MAX_DIMS) {
                *reason = "tensor has more than 8 dimensions";
                return -EBADMSG;
        }
        if (t->n_shape > 0 && !t->shape) {
                *reason = "tensor shape missing";
                return -EBADMSG;
        }
        r = swarm_tensor_shape_check((enum swarm_dtype) t->dtype, (uint32_t) t->n_shape, t->shape,
                                     &n_elements, &size);
        if (r == -E2BIG) {
                *reason = "tensor shape overflows";
                return -EBADMSG;
        }
        if (r < 0) {
                *reason = "tensor has a zero dimension";
                return -EBADMSG;
        }
        if (t->data.len != size || (size > 0 && !t->data.data)) {
                *reason = "tensor data length is not its element count times its dtype size";
                return -EBADMSG;
        }
        if (ret_size)
                *ret_size = size;
        return 0;
}

static int values_check(Swarm__JobValue *const *values, size_t n, const char *what, const char **reason) {
        if (n > JOB_VALUES_MAX) {
                *reason = "more than JOB_VALUES_MAX values";
                return -EBADMSG;
        }
        if (n > 0 && !values) {
                *reason = "values missing";
                return -EBADMSG;
        }
        for (size_t i = 0; i < n; i++) {
                const Swarm__JobValue *v = values[i];
                int r;

                if (!v) {
                        *reason = "value missing";
                        return -EBADMSG;
                }
                if (!swarm_value_name_valid(v->name)) {
                        *reason = "value name is not 1-63 characters of [a-z0-9_.-]";
                        return -EBADMSG;
                }
                /* At most 64 values: quadratic is cheaper than a set. */
                for (size_t k = 0; k < i; k++)
                        if (strcmp(values[k]->name, v->name) == 0) {
                                *reason = "value name appears twice";
                                return -EBADMSG;
                        }
                switch (v->value_case) {
                case SWARM__JOB_VALUE__VALUE_TENSOR:
                        r = tensor_check(v->tensor, NULL, reason);
                        if (r < 0)
                                return r;
                        break;
                case SWARM__JOB_VALUE__VALUE_TEXT:
                        if (!v->text || !string_is_valid(v->text, JOB_TEXT_MAX)) {
                                *reason = "text value is not UTF-8 of at most JOB_TEXT_MAX bytes";
                                return -EBADMSG;
                        }
                        break;
                case SWARM__JOB_VALUE__VALUE_INTEGER:
                        break;
                case SWARM__JOB_VALUE__VALUE_DATA:
                        if (v->data.len > 0 && !v->data.data) {
                                *reason = "bytes value data missing";
                                return -EBADMSG;
                        }
                        break;
                default:
                        *reason = "value has no tensor, text, integer or data";
                        return -EBADMSG;
                }
        }
        (void) what;
        return 0;
}

int job_request_check(const Swarm__JobRequest *q, const char **reason) {
        const char *dummy;

        if (!reason)
                reason = &dummy;
        if (!q) {
                *reason = "request missing";
                return -EBADMSG;
        }
        if (q->job_id.len != JOB_ID_SIZE || !q->job_id.data) {
                *reason = "request job_id is not 16 bytes";
                return -EBADMSG;
        }
        if (!skill_name_valid(q->skill)) {
                *reason = "request skill is not 1-63 characters of [a-z0-9_.-]";
                return -EBADMSG;
        }
        return values_check(q->inputs, q->n_inputs, "inputs", reason);
}

int job_result_check(const Swarm__JobResult *r, const char **reason) {
        const char *dummy;
        int k;

        if (!reason)
                reason = &dummy;
        if (!r) {
                *reason = "result missing";
                return -EBADMSG;
        }
        /* Empty: the answer to a message so malformed its id was lost. */
        if ((r->job_id.len != JOB_ID_SIZE && r->job_id.len != 0) || (r->job_id.len > 0 && !r->job_id.data)) {
                *reason = "result job_id is neither empty nor 16 bytes";
                return -EBADMSG;
        }
        if (r->requester.len != WIRE_NODE_ID_SIZE || !r->requester.data) {
                *reason = "result requester is not 32 bytes";
                return -EBADMSG;
        }
        if (r->status > 0 || r->status < -ERRNO_MAX) {
                *reason = "result status is not 0 or a negative errno";
                return -EBADMSG;
        }
        if (!string_is_valid(r->error, JOB_ERROR_MAX)) {
                *reason = "result error is not UTF-8 of at most JOB_ERROR_MAX bytes";
                return -EBADMSG;
        }
        if (!string_is_valid(r->device, JOB_STRING_MAX)) {
                *reason = "result device is not UTF-8 of at most 256 bytes";
                return -EBADMSG;
        }
        if (r->stream_digest.len != 0 && (r->stream_digest.len != JOB_STREAM_DIGEST_SIZE || !r->stream_digest.data)) {
                *reason = "result stream_digest is neither empty nor 32 bytes";
                return -EBADMSG;
        }
        k = values_check(r->outputs, r->n_outputs, "outputs", reason);
        if (k < 0)
                return k;
        return values_check(r->proof, r->n_proof, "proof", reason);
}

int job_chunk_check(const Swarm__JobChunk *c, const char **reason) {
        const char *dummy;

        if (!reason)
                reason = &dummy;
        if (!c) {
                *reason = "chunk missing";
                return -EBADMSG;
        }
        if (c->job_id.len != JOB_ID_SIZE || !c->job_id.data) {
                *reason = "chunk job_id is not 16 bytes";
                return -EBADMSG;
        }
        if (!c->name || !swarm_value_name_valid(c->name)) {
                *reason = "chunk name is not 1-63 characters of [a-z0-9_.-]";
                return -EBADMSG;
        }
        if (c->data.len > JOB_CHUNK_MAX || (c->data.len > 0 && !c->data.data)) {
                *reason = "chunk data is over 4,096 bytes";
                return -EBADMSG;
        }
        return 0;
}

void job_stream_digest_init(struct job_stream_digest *d) {
        crypto_generichash_init(&d->state, NULL, 0, JOB_STREAM_DIGEST_SIZE);
        d->chunks = 0;
}

void job_stream_digest_add(struct job_stream_digest *d, const char *name, const void *data, size_t size) {
        uint8_t len[8];
        uint64_t n = size;

        for (size_t i = 0; i < 8; i++)
                len[i] = (uint8_t) (n >> (8 * i));
        crypto_generichash_update(&d->state, (const uint8_t *) name, strlen(name) + 1);
        crypto_generichash_update(&d->state, len, sizeof(len));
        if (size > 0)
                crypto_generichash_update(&d->state, data, size);
        d->chunks++;
}

void job_stream_digest_final(struct job_stream_digest *d, uint8_t out[JOB_STREAM_DIGEST_SIZE]) {
        crypto_generichash_final(&d->state, out, JOB_STREAM_DIGEST_SIZE);
}

static int signed_result_check(const Swarm__SignedResult *s, size_t max_size, const char **reason) {
        if (!s) {
                *reason = "signed result missing";
                return -EBADMSG;
        }
        return pb_signed_check(&s->body, &s->signature, max_size, PB_SIGNED_RESULT, reason);
}

static int opinion_batch_check(const Swarm__OpinionBatch *b, const char **reason) {
        if (b->n_opinions == 0 || b->n_opinions > OPINION_BATCH_MAX) {
                *reason = "opinion batch is empty or holds more than OPINION_BATCH_MAX opinions";
                return -EBADMSG;
        }
        for (size_t i = 0; i < b->n_opinions; i++) {
                int r;

                if (!b->opinions[i]) {
                        *reason = "opinion batch holds an empty opinion";
                        return -EBADMSG;
                }
                /* Shape only: opinion_open() checks the contents and the
                 * signature where they are used, as cheque_open() does. */
                r = pb_signed_check(&b->opinions[i]->body, &b->opinions[i]->signature, OPINION_MAX_SIZE,
                                    PB_SIGNED_OPINION, reason);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int envelope_check(const Swarm__JobEnvelope *e, size_t max_size, const char **reason) {
        if (e->version != WIRE_VERSION) {
                *reason = "job envelope version is not WIRE_VERSION";
                return -EPROTONOSUPPORT;
        }
        switch (e->body_case) {
        case SWARM__JOB_ENVELOPE__BODY_REQUEST:
                if (!e->request)
                        break;
                return job_request_check(e->request, reason);
        case SWARM__JOB_ENVELOPE__BODY_RESULT:
                if (!e->result)
                        break;
                return signed_result_check(e->result, max_size, reason);
        case SWARM__JOB_ENVELOPE__BODY_CHEQUE:
                if (!e->cheque)
                        break;
                return pb_signed_check(&e->cheque->body, &e->cheque->signature, CHEQUE_MAX_SIZE, PB_SIGNED_CHEQUE,
                                       reason);
        case SWARM__JOB_ENVELOPE__BODY_OPINIONS:
                if (!e->opinions)
                        break;
                return opinion_batch_check(e->opinions, reason);
        case SWARM__JOB_ENVELOPE__BODY_CHUNK:
                if (!e->chunk)
                        break;
                return job_chunk_check(e->chunk, reason);
        default:
                break;
        }
        *reason = "unknown job message type (no body this version knows)";
        return -EBADMSG;
}

/* ---- Envelopes ------------------------------------------------------- */

int job_decode(const uint8_t *data, size_t size, size_t max_size, Swarm__JobEnvelope **ret, const char **reason) {
        _cleanup_(job_envelope_freep) Swarm__JobEnvelope *e = NULL;
        const char *dummy;
        struct pb_budget b;
        int r;

        if (!reason)
                reason = &dummy;
        *reason = NULL;
        if (!ret || (!data && size > 0))
                return -EINVAL;

        if (size > max_size) {
                *reason = "job message is over the message size limit";
                return -EMSGSIZE;
        }

        r = pb_unpack_strict(&swarm__job_envelope__descriptor, data, size, JOB_DECODE_BUDGET(size),
                             WIRE_UNKNOWN_FIELDS_MAX, &b, (ProtobufCMessage **) &e, reason,
                             "job message needs more memory than its size allows",
                             "job message is not a valid protobuf JobEnvelope",
                             "job message has a field number 0 or too many unknown fields");
        if (r < 0)
                return r;
        r = envelope_check(e, max_size, reason);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(e);
        return 0;
}

void job_envelope_free(Swarm__JobEnvelope *e) {
        if (e)
                pb_free_unpacked(&e->base);
}

int job_encode(Swarm__JobEnvelope *e, size_t max_size, uint8_t **ret, size_t *ret_size) {
        const char *reason;

        if (!e || !ret || !ret_size)
                return -EINVAL;

        e->version = WIRE_VERSION;
        if (envelope_check(e, max_size, &reason) < 0)
                return -EINVAL;
        return pb_pack_alloc(&e->base, max_size, ret, ret_size);
}

/* ---- Signed results -------------------------------------------------- */

int job_result_sign(const Swarm__JobResult *r, const uint8_t sk[64], Swarm__SignedResult *out) {
        if (!r || !sk || !out)
                return -EINVAL;
        swarm__signed_result__init(out);

        if (job_result_check(r, NULL) < 0)
                return -EINVAL;

        return pb_pack_signed(&r->base, SIZE_MAX, sk, &out->body, &out->signature);
}

void job_signed_result_clear(Swarm__SignedResult *s) {
        if (!s)
                return;
        free(s->body.data);
        free(s->signature.data);
        swarm__signed_result__init(s);
}

int job_result_open(const Swarm__SignedResult *s, const uint8_t provider[WIRE_NODE_ID_SIZE], size_t max_size,
                    Swarm__JobResult **ret, const char **reason) {
        _cleanup_(job_result_freep) Swarm__JobResult *res = NULL;
        const char *dummy;
        struct pb_budget b;
        int r;

        if (!reason)
                reason = &dummy;
        *reason = NULL;
        if (!ret || !provider)
                return -EINVAL;

        r = signed_result_check(s, max_size, reason);
        if (r < 0)
                return r;

        /* The signature first: nobody but the provider gets to make us
         * unpack anything. Over the bytes as received, never a
         * re-encoding. */
        if (crypto_sign_verify_detached(s->signature.data, s->body.data, s->body.len, provider) != 0) {
                *reason = "result signature does not verify against the provider's key";
                return -EKEYREJECTED;
        }

        r = pb_unpack_strict(&swarm__job_result__descriptor, s->body.data, s->body.len, JOB_DECODE_BUDGET(s->body.len),
                             WIRE_UNKNOWN_FIELDS_MAX, &b, (ProtobufCMessage **) &res, reason,
                             "result body needs more memory than its size allows",
                             "result body is not a valid protobuf JobResult",
                             "result body has a field number 0 or too many unknown fields");
        if (r < 0)
                return r;
        r = job_result_check(res, reason);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(res);
        return 0;
}

void job_result_free(Swarm__JobResult *r) {
        if (r)
                pb_free_unpacked(&r->base);
}

/* ---- Values ---------------------------------------------------------- */

static void job_value_free(Swarm__JobValue *v) {
        if (!v)
                return;
        free(v->name);
        switch (v->value_case) {
        case SWARM__JOB_VALUE__VALUE_TENSOR:
                if (v->tensor) {
                        free(v->tensor->shape);
                        free(v->tensor->data.data);
                        free(v->tensor);
                }
                break;
        case SWARM__JOB_VALUE__VALUE_TEXT:
                free(v->text);
                break;
        case SWARM__JOB_VALUE__VALUE_DATA:
                free(v->data.data);
                break;
        default:
                break;
        }
        free(v);
}

void job_values_free_wire(Swarm__JobValue **values, size_t n) {
        if (!values)
                return;
        for (size_t i = 0; i < n; i++)
                job_value_free(values[i]);
        free(values);
}

static void *memdup_or_null(const void *p, size_t n) {
        void *q = malloc(n > 0 ? n : 1);

        if (q && n > 0)
                memcpy(q, p, n);
        return q;
}

static int value_to_wire(const struct swarm_values *v, size_t i, Swarm__JobValue **ret) {
        struct swarm_value x;
        Swarm__JobValue *w;

        if (swarm_values_at(v, i, &x) < 0 || !x.name)
                return -EINVAL;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        swarm__job_value__init(w);
        w->name = strdup(x.name);
        if (!w->name)
                goto oom;

        switch (x.type) {
        case SWARM_VALUE_TENSOR:
                w->value_case = SWARM__JOB_VALUE__VALUE_TENSOR;
                w->tensor = calloc(1, sizeof(*w->tensor));
                if (!w->tensor)
                        goto oom;
                swarm__tensor__init(w->tensor);
                w->tensor->dtype = (uint32_t) x.tensor.dtype;
                w->tensor->n_shape = x.tensor.ndim;
                w->tensor->shape = memdup_or_null(x.tensor.shape, x.tensor.ndim * sizeof(uint64_t));
                w->tensor->data.data = memdup_or_null(x.tensor.data, x.tensor.size);
                w->tensor->data.len = x.tensor.size;
                if (!w->tensor->shape || !w->tensor->data.data)
                        goto oom;
                break;
        case SWARM_VALUE_STRING:
                w->value_case = SWARM__JOB_VALUE__VALUE_TEXT;
                w->text = strdup(x.string ?: "");
                if (!w->text)
                        goto oom;
                break;
        case SWARM_VALUE_INT:
                w->value_case = SWARM__JOB_VALUE__VALUE_INTEGER;
                w->integer = x.integer;
                break;
        case SWARM_VALUE_BYTES:
                w->value_case = SWARM__JOB_VALUE__VALUE_DATA;
                w->data.data = memdup_or_null(x.data, x.size);
                w->data.len = x.size;
                if (!w->data.data)
                        goto oom;
                break;
        default:
                job_value_free(w);
                return -EINVAL;
        }
        *ret = w;
        return 0;
oom:
        job_value_free(w);
        return -ENOMEM;
}

int job_values_to_wire(const struct swarm_values *v, Swarm__JobValue ***ret, size_t *ret_n) {
        Swarm__JobValue **values;
        size_t n = swarm_values_count(v);

        if (!ret || !ret_n)
                return -EINVAL;
        *ret = NULL;
        *ret_n = 0;
        if (n == 0)
                return 0;
        if (n > JOB_VALUES_MAX)
                return -E2BIG;

        values = calloc(n, sizeof(*values));
        if (!values)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int r = value_to_wire(v, i, &values[i]);
                if (r < 0) {
                        job_values_free_wire(values, i);
                        return r;
                }
        }
        *ret = values;
        *ret_n = n;
        return 0;
}

static void swarm_valuesp(struct swarm_values **v) {
        swarm_values_free(*v);
}

int job_values_from_wire(Swarm__JobValue *const *values, size_t n, swarm_values_allocator_fn allocate,
                         struct swarm_values **ret, const char **reason) {
        _cleanup_(swarm_valuesp) struct swarm_values *v = NULL;
        const char *dummy;
        int r;

        if (!reason)
                reason = &dummy;
        *reason = NULL;
        if (!ret)
                return -EINVAL;

        r = values_check(values, n, "values", reason);
        if (r < 0)
                return r;

        v = swarm_values_new();
        if (!v)
                return -ENOMEM;
        /* With shm_allocate, tensors go straight into memfds a worker maps. */
        if (allocate)
                swarm_values_set_allocator(v, allocate, NULL);

        for (size_t i = 0; i < n; i++) {
                const Swarm__JobValue *w = values[i];

                switch (w->value_case) {
                case SWARM__JOB_VALUE__VALUE_TENSOR: {
                        const Swarm__Tensor *t = w->tensor;
                        struct swarm_tensor x;

                        r = swarm_values_add_tensor(v, w->name, (enum swarm_dtype) t->dtype, (uint32_t) t->n_shape,
                                                    t->shape, &x);
                        if (r >= 0 && x.size > 0)
                                memcpy(x.data, t->data.data, x.size);
                        break;
                }
                case SWARM__JOB_VALUE__VALUE_TEXT:
                        r = swarm_values_set_string(v, w->name, w->text);
                        break;
                case SWARM__JOB_VALUE__VALUE_INTEGER:
                        r = swarm_values_set_int(v, w->name, w->integer);
                        break;
                case SWARM__JOB_VALUE__VALUE_DATA:
                        if (allocate && w->data.len > JOB_BYTES_SHARED_MIN) {
                                void *data;
                                void (*release)(void *, uint64_t, void *);
                                void *userdata;

                                r = allocate(w->data.len, &data, &release, &userdata, NULL);
                                if (r < 0)
                                        break;
                                memcpy(data, w->data.data, w->data.len);
                                r = swarm_values_add_bytes_borrowed(v, w->name, data, w->data.len, release,
                                                                    userdata);
                                if (r < 0)
                                        release(data, w->data.len, userdata);
                        } else
                                r = swarm_values_set_bytes(v, w->name, w->data.data, w->data.len);
                        break;
                default:
                        r = -EINVAL;
                        break;
                }
                if (r < 0 && r != -EINVAL && r != -EEXIST && r != -E2BIG)
                        return r;       /* -ENOMEM, -EMFILE: ours, not the peer's */
                if (r < 0) {
                        *reason = "value cannot be stored (bad name, dtype or shape)";
                        return -EBADMSG;
                }
        }

        *ret = TAKE_PTR(v);
        return 0;
}

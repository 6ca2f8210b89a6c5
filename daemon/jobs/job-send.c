/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdlib.h>

#include "job-send.h"
#include "job-wire.h"
#include "macro.h"
#include "network.h"

int job_send_pack_result(struct network *network, const Swarm__JobResult *r, uint64_t max_message_size,
                     uint8_t **ret, size_t *ret_size) {
        Swarm__SignedResult signed_result;
        Swarm__JobEnvelope e = SWARM__JOB_ENVELOPE__INIT;
        int k;

        k = job_result_sign(r, network_secret_key(network), &signed_result);
        if (k < 0)
                return k;
        e.body_case = SWARM__JOB_ENVELOPE__BODY_RESULT;
        e.result = &signed_result;
        k = job_encode(&e, max_message_size, ret, ret_size);
        job_signed_result_clear(&signed_result);
        return k;
}

int job_send_result(struct network *network, const uint8_t to[WIRE_NODE_ID_SIZE], const Swarm__JobResult *r,
                     uint64_t max_message_size) {
        _cleanup_free_ uint8_t *data = NULL;
        size_t size;
        int k;

        k = job_send_pack_result(network, r, max_message_size, &data, &size);
        if (k < 0)
                return k;
        return network_send_job(network, to, data, size);
}

int job_send_error(struct network *network, const uint8_t to[WIRE_NODE_ID_SIZE], const uint8_t *job_id,
                    int status, const char *error, uint64_t max_message_size) {
        Swarm__JobResult r = SWARM__JOB_RESULT__INIT;

        if (job_id)
                r.job_id = (ProtobufCBinaryData) { .len = JOB_ID_SIZE, .data = (uint8_t *) job_id };
        r.requester = (ProtobufCBinaryData) { .len = WIRE_NODE_ID_SIZE, .data = (uint8_t *) to };
        r.status = status < 0 ? status : -EIO;
        r.error = (char *) (error ?: "");
        return job_send_result(network, to, &r, max_message_size);
}

int job_send_chunk(struct network *network, const uint8_t to[WIRE_NODE_ID_SIZE], const uint8_t *job_id, uint32_t seq,
                   const char *name, const void *data, size_t size, uint64_t max_message_size) {
        Swarm__JobEnvelope e = SWARM__JOB_ENVELOPE__INIT;
        Swarm__JobChunk c = SWARM__JOB_CHUNK__INIT;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t n;
        int k;

        c.job_id = (ProtobufCBinaryData) { .len = JOB_ID_SIZE, .data = (uint8_t *) job_id };
        c.seq = seq;
        c.name = (char *) name;
        c.data = (ProtobufCBinaryData) { .len = size, .data = (uint8_t *) data };
        e.body_case = SWARM__JOB_ENVELOPE__BODY_CHUNK;
        e.chunk = &c;
        k = job_encode(&e, max_message_size, &buf, &n);
        if (k < 0)
                return k;
        return network_send_job(network, to, buf, n);
}

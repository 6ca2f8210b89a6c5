/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "swarm-host.h"

int swarm_job_init(struct swarm_job *job, const struct swarm_values *inputs, uint64_t deadline_usec,
                   const volatile uint32_t *cancel_flag, swarm_values_allocator_fn allocate, void *userdata) {
        *job = (struct swarm_job) {
                .inputs = inputs,
                .deadline_usec = deadline_usec,
                .cancel_flag = cancel_flag,
        };
        job->outputs = swarm_values_new();
        job->proof = swarm_values_new();
        if (!job->outputs || !job->proof) {
                swarm_job_done(job);
                return -ENOMEM;
        }
        if (allocate) {
                swarm_values_set_allocator(job->outputs, allocate, userdata);
                swarm_values_set_allocator(job->proof, allocate, userdata);
        }
        return 0;
}

void swarm_job_done(struct swarm_job *job) {
        swarm_values_free(job->outputs);
        swarm_values_free(job->proof);
        job->outputs = job->proof = NULL;
}

int swarm_job_emit(struct swarm_job *job, const char *name, const void *data, size_t size) {
        if (!job || !name || !swarm_value_name_valid(name) || (size > 0 && !data))
                return -EINVAL;
        if (size > SWARM_JOB_CHUNK_MAX)
                return -E2BIG;
        if (swarm_job_cancelled(job))
                return -ECANCELED;
        if (!job->emit)
                return 0;
        return job->emit(job->emit_userdata, name, data, size);
}

const char *swarm_job_error(const struct swarm_job *job) {
        return job->error[0] ? job->error : NULL;
}

const struct swarm_values *swarm_job_inputs(const struct swarm_job *job) {
        return job->inputs;
}

struct swarm_values *swarm_job_outputs(struct swarm_job *job) {
        return job->outputs;
}

struct swarm_values *swarm_job_proof(struct swarm_job *job) {
        return job->proof;
}

uint64_t swarm_job_deadline_usec(const struct swarm_job *job) {
        return job->deadline_usec;
}

bool swarm_job_cancelled(const struct swarm_job *job) {
        struct timespec ts;

        if (job->cancel_flag && __atomic_load_n(job->cancel_flag, __ATOMIC_RELAXED))
                return true;
        if (job->deadline_usec == 0)
                return false;
        /* vDSO: no system call. */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u >= job->deadline_usec;
}

/* Where swarm_job_set_error(NULL, …) writes: the refusal of a price() call,
 * which has no job.  Per thread, like errno. */
static _Thread_local char call_error[SWARM_JOB_ERROR_MAX];

void swarm_job_set_error(struct swarm_job *job, const char *format, ...) {
        char *buf = job ? job->error : call_error;
        va_list ap;

        va_start(ap, format);
        if (vsnprintf(buf, SWARM_JOB_ERROR_MAX, format, ap) < 0)
                /* An encoding error leaves the buffer unspecified. */
                strcpy(buf, "(unprintable error message)");
        va_end(ap);
        /* One line: the requester sees it in a table. */
        buf[strcspn(buf, "\n")] = '\0';
}

void swarm_call_error_reset(void) {
        call_error[0] = '\0';
}

const char *swarm_call_error(void) {
        return call_error[0] ? call_error : NULL;
}

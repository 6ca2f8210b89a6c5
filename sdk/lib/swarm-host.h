/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Parts of the values API that only the host (swarmd, swarm-worker,
 * swarmctl) uses: where tensor memory comes from and goes to.  Not
 * installed. */

#include <stdbool.h>

#include "swarm/skill.h"

#define SWARM_VALUE_NAME_MAX 63

bool swarm_value_name_valid(const char *name);

/* Validates dtype and shape and computes the element count and byte size:
 * 0, -EINVAL (unknown dtype, too many dimensions, a zero dimension) or
 * -E2BIG (overflow). */
int swarm_tensor_shape_check(enum swarm_dtype dtype, uint32_t ndim, const uint64_t *shape,
                             uint64_t *n_elements, uint64_t *size);

/* The i-th value, whatever its type: what a walk over a set (encoding it,
 * printing it) needs, in one call.  Pointers are v's. */
struct swarm_value {
        const char *name;
        enum swarm_value_type type;
        int64_t integer;                /* SWARM_VALUE_INT */
        const char *string;             /* SWARM_VALUE_STRING */
        const void *data;               /* SWARM_VALUE_BYTES */
        size_t size;
        struct swarm_tensor tensor;     /* SWARM_VALUE_TENSOR */
};

/* 0, or -ERANGE past the end (or v NULL). */
int swarm_values_at(const struct swarm_values *v, size_t i, struct swarm_value *ret);

/* Allocates size bytes (zeroed, 64-byte aligned) for a new tensor and says
 * how to release them. */
typedef int (*swarm_values_allocator_fn)(uint64_t size, void **data,
                                         void (**release)(void *data, uint64_t size, void *userdata),
                                         void **release_userdata, void *userdata);

void swarm_values_set_allocator(struct swarm_values *v, swarm_values_allocator_fn allocate, void *userdata);

/* Adds a tensor whose memory the caller provides (a mapping of a received
 * memfd, say); release (may be NULL) is called when v is freed. */
int swarm_values_add_tensor_borrowed(struct swarm_values *v, const char *name, enum swarm_dtype dtype,
                                     uint32_t ndim, const uint64_t *shape, void *data,
                                     void (*release)(void *data, uint64_t size, void *userdata),
                                     void *userdata);

/* How the tensor or byte string named name is backed: its release function
 * and userdata as given to the allocator or a borrowed add (both NULL for
 * memory the values own).  -ENOENT, -EMEDIUMTYPE for other types. */
int swarm_values_get_backing(const struct swarm_values *v, const char *name,
                             void (**release)(void *data, uint64_t size, void *userdata), void **userdata);

/* Adds a byte string whose memory the caller provides (see above). */
int swarm_values_add_bytes_borrowed(struct swarm_values *v, const char *name, const void *data, size_t size,
                                    void (*release)(void *data, uint64_t size, void *userdata),
                                    void *userdata);

/* ---- Jobs ---- */

#define SWARM_JOB_ERROR_MAX 512

/* Public only to the host, which keeps one per job on its stack. */
struct swarm_job {
        const struct swarm_values *inputs;
        struct swarm_values *outputs;
        struct swarm_values *proof;
        /* Set by whoever cancels (the host, or swarmd through a shared
         * page); NULL = never cancelled. */
        const volatile uint32_t *cancel_flag;
        uint64_t deadline_usec;         /* CLOCK_MONOTONIC; 0 = none */
        char error[SWARM_JOB_ERROR_MAX];
        /* Where swarm_job_emit() delivers chunks (set by the host after
         * swarm_job_init(); NULL: they are dropped). */
        int (*emit)(void *userdata, const char *name, const void *data, size_t size);
        void *emit_userdata;
};

/* inputs must stay valid for the job's life; outputs and proof are created
 * (with allocator, when given) and freed by swarm_job_done(). */
int swarm_job_init(struct swarm_job *job, const struct swarm_values *inputs, uint64_t deadline_usec,
                   const volatile uint32_t *cancel_flag, swarm_values_allocator_fn allocate, void *userdata);
void swarm_job_done(struct swarm_job *job);
/* The message the plugin left with swarm_job_set_error(), or NULL. */
const char *swarm_job_error(const struct swarm_job *job);

/* The message a callback without a job (price()) left with
 * swarm_job_set_error(NULL, …) since the last reset, or NULL. */
void swarm_call_error_reset(void);
const char *swarm_call_error(void);

/* ---- Logging ---- */

/* Where swarm_log() goes; by default stderr. */
typedef void (*swarm_log_handler_fn)(int level, const char *message, void *userdata);
void swarm_log_set_handler(swarm_log_handler_fn handler, void *userdata);

/* ---- Declared inputs and outputs ---- */

/* The entry of list named name, or NULL (also for a NULL list). */
const struct swarm_param *swarm_params_find(const struct swarm_param *list, const char *name);

/* Checks values against a declared list: every value is declared, every
 * required one is there, each has the declared type, dtype and number of
 * dimensions.  what ("input", "output") starts the message written to err
 * on failure, e.g. 'input "x" is not one this skill takes (it takes a, b,
 * precision)'.  0, or -EINVAL.  A NULL list accepts anything. */
int swarm_params_check(const struct swarm_param *list, const struct swarm_values *values, const char *what,
                       char *err, size_t err_size);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The SwarmHarness skill SDK.
 *
 * A skill is a shared object that exports one function,
 *
 *     const struct swarm_skill *swarm_skill_entry(void);
 *
 * returning a pointer to a static, constant descriptor.  swarm-worker, the
 * host process, dlopen()s the plugin, checks the descriptor's ABI and size,
 * and calls its callbacks from one thread: never two callbacks of the same
 * worker at once.  A worker hosts one skill and serves many jobs in turn, so
 * expensive set-up (a CUDA context, a loaded model) belongs in init().
 *
 * Values: a job's inputs and outputs are named, typed values (tensors with a
 * dtype and a shape, strings, integers, byte strings) held in a struct
 * swarm_values, read and written only through the accessors below; a plugin
 * never parses a raw buffer.  Input tensors are mapped read-only from shared
 * memory; output tensors are allocated by the host (swarm_values_add_tensor)
 * so they travel back without a copy.
 *
 * Errors: every callback returns 0 (or a documented non-negative value) on
 * success and a negative errno on failure, and may explain the failure with
 * swarm_job_set_error(), which the requester sees:
 *   -EINVAL      the job is malformed: missing input, wrong dtype or shape,
 *                NaN where numbers are required (not retried elsewhere)
 *   -E2BIG       the job exceeds this skill's configured budget
 *   -ECANCELED   the job was cancelled or its deadline passed
 *   -ENODEV      the device the skill needs is gone
 *   -EBADMSG     verify(): the result is wrong
 *   other        an internal failure of this provider (retried elsewhere)
 *
 * ABI: SWARM_SKILL_ABI_MAJOR changes when a field is removed or changes
 * meaning; the host refuses a plugin of another major version.  Fields are
 * only ever appended (MINOR), and the host reads a field only when
 * struct_size says the plugin's descriptor has it.  Link with
 * `pkg-config --cflags --libs swarmharness-skill`. */

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SWARM_SKILL_ABI_MAJOR 1
#define SWARM_SKILL_ABI_MINOR 2
#define SWARM_SKILL_ABI_VERSION (((uint32_t) SWARM_SKILL_ABI_MAJOR << 16) | SWARM_SKILL_ABI_MINOR)
#define SWARM_SKILL_ABI_MAJOR_OF(v) ((uint32_t) (v) >> 16)

#define SWARM_SKILL_ENTRY_SYMBOL "swarm_skill_entry"

#if defined(__GNUC__)
#  define SWARM_SKILL_EXPORT __attribute__((visibility("default")))
#  define SWARM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#  define SWARM_SKILL_EXPORT
#  define SWARM_PRINTF(a, b)
#endif

/* ---- Values ------------------------------------------------------------ */

enum swarm_dtype {
        SWARM_DTYPE_F32 = 1,
        SWARM_DTYPE_F64 = 2,
        SWARM_DTYPE_F16 = 3,
        SWARM_DTYPE_BF16 = 4,
        SWARM_DTYPE_I8 = 5,
        SWARM_DTYPE_U8 = 6,
        SWARM_DTYPE_I32 = 7,
        SWARM_DTYPE_I64 = 8,
};

/* Bytes per element; 0 for an unknown dtype. */
size_t swarm_dtype_size(enum swarm_dtype dtype);
/* "f32", "bf16", …; NULL for an unknown dtype. */
const char *swarm_dtype_name(enum swarm_dtype dtype);

#define SWARM_TENSOR_MAX_DIMS 8

/* A dense, row-major tensor.  data is 64-byte aligned and stays valid until
 * the callback that received it returns (inputs) or until the job is done
 * (outputs).  Input tensors are read-only. */
struct swarm_tensor {
        enum swarm_dtype dtype;
        uint32_t ndim;
        uint64_t shape[SWARM_TENSOR_MAX_DIMS];
        uint64_t n_elements;
        uint64_t size;          /* bytes: n_elements * swarm_dtype_size(dtype) */
        void *data;
};

enum swarm_value_type {
        SWARM_VALUE_TENSOR = 1,
        SWARM_VALUE_STRING = 2,
        SWARM_VALUE_INT = 3,
        SWARM_VALUE_BYTES = 4,
};

/* A set of named values: a job's inputs, its outputs, or a skill's advert.
 * Names are 1–63 characters of [a-z0-9_.-]; each name appears once. */
struct swarm_values;

struct swarm_values *swarm_values_new(void);
void swarm_values_free(struct swarm_values *v);

size_t swarm_values_count(const struct swarm_values *v);
/* The i-th value's name and type, in insertion order; NULL past the end. */
const char *swarm_values_name(const struct swarm_values *v, size_t i, enum swarm_value_type *type);

/* Getters: 0, -ENOENT when there is no value of that name, -EMEDIUMTYPE
 * when it has another type.  Pointers stay valid as long as v. */
int swarm_values_get_tensor(const struct swarm_values *v, const char *name, struct swarm_tensor *ret);
int swarm_values_get_string(const struct swarm_values *v, const char *name, const char **ret);
int swarm_values_get_int(const struct swarm_values *v, const char *name, int64_t *ret);
int swarm_values_get_bytes(const struct swarm_values *v, const char *name, const void **data, size_t *size);

/* Setters copy name and value; -EEXIST when the name is taken, -EINVAL for
 * a bad name, dtype or shape, -ENOMEM. */
int swarm_values_set_string(struct swarm_values *v, const char *name, const char *s);
int swarm_values_set_int(struct swarm_values *v, const char *name, int64_t i);
int swarm_values_set_bytes(struct swarm_values *v, const char *name, const void *data, size_t size);
/* Allocates a zeroed tensor of dtype and shape and returns it in *ret for
 * the caller to fill (ret->data is writable). */
int swarm_values_add_tensor(struct swarm_values *v, const char *name, enum swarm_dtype dtype,
                            uint32_t ndim, const uint64_t *shape, struct swarm_tensor *ret);

/* ---- Jobs -------------------------------------------------------------- */

/* The job a callback works on.  Owned by the host; valid during the call. */
struct swarm_job;

const struct swarm_values *swarm_job_inputs(const struct swarm_job *job);
/* Where execute() puts its results and prove() its proof. */
struct swarm_values *swarm_job_outputs(struct swarm_job *job);
struct swarm_values *swarm_job_proof(struct swarm_job *job);

/* True once the requester cancelled the job or its deadline passed.  A
 * long-running execute() checks it between steps and returns -ECANCELED.
 * Cheap: a relaxed atomic load. */
bool swarm_job_cancelled(const struct swarm_job *job);
/* CLOCK_MONOTONIC µs by which the job must be done; 0 = none. */
uint64_t swarm_job_deadline_usec(const struct swarm_job *job);

/* Explains the failure the callback is about to return (shown to the
 * requester; keep it to one line).  The last call wins.  price(), which has
 * no job, passes NULL for job. */
void swarm_job_set_error(struct swarm_job *job, const char *format, ...) SWARM_PRINTF(2, 3);

/* Sends a piece of output while execute() is still running (ABI 1.1): text
 * tokens as they are generated, progress, a preview.  name is a value name
 * (see swarm_values); size ≤ SWARM_JOB_CHUNK_MAX.  Chunks reach whoever
 * listens (`swarmctl skill run` prints them) in the order they were
 * emitted; they are a preview, not the result: the outputs must still hold
 * everything, and a host with no listener drops them.  Returns 0 (also when
 * dropped), -EINVAL for a bad name, -E2BIG for a chunk over the limit, or
 * -ECANCELED once the job is cancelled (a cue to stop). */
#define SWARM_JOB_CHUNK_MAX 4096
int swarm_job_emit(struct swarm_job *job, const char *name, const void *data, size_t size);

/* Logs through the host (journal under systemd, with SKILL= and JOB=).
 * level is a syslog priority (LOG_ERR … LOG_DEBUG). */
void swarm_log(int level, const char *format, ...) SWARM_PRINTF(2, 3);

/* ---- What a skill takes and gives (ABI 1.2) ---------------------------- */

/* One input or output a skill declares.  The host checks every job against
 * the declared inputs before price() sees it — a value of another name, a
 * missing required value, another type, dtype or number of dimensions is
 * refused with a message naming the value — and checks outputs before
 * verify(); `swarmctl skill inspect` prints the lists.  The rules that
 * relate values to each other (a's columns are b's rows) stay the skill's
 * to check; shape says them for people. */
enum {
        SWARM_PARAM_OPTIONAL = 1u << 0,
};

struct swarm_param {
        const char *name;               /* NULL ends a list */
        enum swarm_value_type type;     /* 0: any (the skill checks it) */
        enum swarm_dtype dtype;         /* tensors: the one dtype accepted; 0: any */
        uint32_t ndim;                  /* tensors: the number of dimensions; 0: any */
        const char *shape;              /* tensors: the shape rule, e.g. "m×k"; may be NULL */
        uint32_t flags;                 /* SWARM_PARAM_OPTIONAL */
        const char *description;        /* one line */
};

/* "tensor", "string", "int", "bytes"; NULL for an unknown type. */
const char *swarm_value_type_name(enum swarm_value_type type);

/* ---- The descriptor ---------------------------------------------------- */

struct swarm_skill {
        uint32_t abi_version;   /* SWARM_SKILL_ABI_VERSION */
        uint32_t struct_size;   /* sizeof(struct swarm_skill) */
        const char *name;       /* "gemm.f32": [a-z0-9_.-], the name peers route by */
        const char *version;    /* the plugin's own version, "1.2.0" */
        const char *description;/* one line, for `swarmctl skill inspect` */

        /* Per-worker set-up, once, before any job: open the device, load a
         * model, measure throughput.  config holds the skill's settings from
         * swarmd.yaml (may be empty), plus verify-only = 1 (an int) in a
         * worker the host starts only to verify results of a skill it does
         * not host.  *state is handed to every other callback.  May take
         * seconds.  Optional.
         *
         * A verify() that cannot judge a result on this node but another
         * provider of the skill could returns -EREMOTE: the requester then
         * runs a check job (the original inputs plus check.<name> for each
         * output named in the advert's comma-separated "check-inputs") on
         * another provider, puts the checker's outputs in the proof as
         * check.<name> and calls verify() again.  When that verify() says
         * -EBADMSG, a second checker decides; it is also given the first
         * checker's outputs named in the advert's "check-retry-inputs", as
         * check.first.<name> (imagegen: the step the first found wrong). */
        int (*init)(const struct swarm_values *config, void **state);

        /* Releases what init() made.  Optional. */
        void (*fini)(void *state);

        /* Describes what this worker offers, into advert: at least "device"
         * (string), "unit" (string: "flop", "byte", "token"…) and
         * "throughput" (int: units per second, measured).  Called after
         * init(), and again when the host refreshes its adverts. */
        int (*advertise)(void *state, struct swarm_values *advert);

        /* Base price of the job whose inputs are given, in micro-credits,
         * into *price; also validates the inputs cheaply (shapes, dtypes,
         * budget) so that a bad job is refused before it is queued.  A
         * refusal is explained with swarm_job_set_error(NULL, …). */
        int (*price)(void *state, const struct swarm_values *inputs, uint64_t *price);

        /* Runs the job: reads swarm_job_inputs(), writes swarm_job_outputs().
         * Honours swarm_job_cancelled(). */
        int (*execute)(void *state, struct swarm_job *job);

        /* Adds to swarm_job_proof() what verify() needs besides the outputs
         * (commitments, hashes); may add nothing.  Optional. */
        int (*prove)(void *state, struct swarm_job *job);

        /* Requester side: checks swarm_job_outputs() (and the proof) against
         * the inputs, much more cheaply than execute().  Returns 0 when the
         * result is accepted, -EBADMSG when it is wrong, -EOPNOTSUPP when
         * this node cannot judge it (not the provider's fault), -EREMOTE
         * when another provider of the skill must check it (see init():
         * check jobs).  May be called in a worker that never ran init() for
         * execution: state is still what init() returned. */
        int (*verify)(void *state, struct swarm_job *job);

        /* ABI 1.2: what jobs hold and what results hold, as lists ended
         * by an entry whose name is NULL.  NULL: not declared (the host
         * checks nothing, the plugin everything).  Optional. */
        const struct swarm_param *inputs;
        const struct swarm_param *outputs;

        void *reserved[6];      /* zero; room to grow without a new major */
};

/* Every plugin defines this, e.g.
 *
 *     static const struct swarm_skill skill = {
 *             .abi_version = SWARM_SKILL_ABI_VERSION,
 *             .struct_size = sizeof(struct swarm_skill),
 *             .name = "hash.blake2b",
 *             …
 *     };
 *     SWARM_SKILL_EXPORT const struct swarm_skill *swarm_skill_entry(void) { return &skill; }
 */
SWARM_SKILL_EXPORT const struct swarm_skill *swarm_skill_entry(void);

typedef const struct swarm_skill *(*swarm_skill_entry_fn)(void);

#ifdef __cplusplus
}
#endif

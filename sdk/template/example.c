/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* example.scale: a SwarmHarness skill to copy and make your own.
 *
 * Multiplies an f32 tensor by an integer:
 *   inputs   "x"       f32 tensor, any shape (at most max-elements elements)
 *            "factor"  int, -2^24 … 2^24 (exact as a float)
 *   outputs  "y"       f32 tensor of x's shape, y[i] = x[i] × factor
 *   config   "max-elements"  int, default 2^26: bigger jobs are refused
 *
 * It shows what every skill does: validate cheaply in price(), honour
 * cancellation in execute(), explain failures with swarm_job_set_error(),
 * and check a provider's result in verify() for much less than the cost of
 * computing it: here by recomputing a few hundred elements at positions the
 * provider could not predict. */

/* clock_gettime() and getrandom() are POSIX and Linux, not ISO C. */
#define _GNU_SOURCE 1

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <syslog.h>
#include <time.h>

#include <swarm/skill.h>

#define FACTOR_MAX              (INT64_C(1) << 24)
#define DEFAULT_MAX_ELEMENTS    (UINT64_C(1) << 26)
#define CHUNK_ELEMENTS          (UINT64_C(1) << 20)    /* cancellation checked between chunks */
#define VERIFY_SAMPLES          256

/* What init() makes and every other callback gets. */
struct example {
        uint64_t max_elements;
        uint64_t throughput;    /* elements per second, measured in init() */
};

/* A job's inputs, validated. */
struct request {
        struct swarm_tensor x;
        float factor;
};

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static void scale(const float *x, float *y, uint64_t n, float factor) {
        for (uint64_t i = 0; i < n; i++)
                y[i] = x[i] * factor;
}

/* Tells the compiler that p's memory is read, so that a benchmark's work,
 * whose result nobody uses, is not optimised away. */
static void keep(void *p) {
        __asm__ volatile("" : : "r"(p) : "memory");
}

static int example_init(const struct swarm_values *config, void **state) {
        struct example *e;
        uint64_t start, elapsed, done = 0;
        float *buf;
        int64_t i;
        int r;

        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;

        e->max_elements = DEFAULT_MAX_ELEMENTS;
        r = swarm_values_get_int(config, "max-elements", &i);
        if (r == 0) {
                if (i < 1) {
                        swarm_log(LOG_ERR, "example.scale: max-elements must be at least 1, not %" PRIi64, i);
                        free(e);
                        return -EINVAL;
                }
                e->max_elements = (uint64_t) i;
        } else if (r != -ENOENT) {
                swarm_log(LOG_ERR, "example.scale: max-elements must be an integer");
                free(e);
                return -EINVAL;
        }

        /* Measure rather than guess: routers divide job sizes by this. */
        buf = calloc(2 * CHUNK_ELEMENTS, sizeof(float));
        if (!buf) {
                free(e);
                return -ENOMEM;
        }
        start = now_usec();
        do {
                scale(buf, buf + CHUNK_ELEMENTS, CHUNK_ELEMENTS, 3.0f);
                keep(buf);
                done += CHUNK_ELEMENTS;
                elapsed = now_usec() - start;
        } while (elapsed < 10000);
        free(buf);
        e->throughput = done * 1000000u / (elapsed ? elapsed : 1);

        *state = e;
        return 0;
}

static void example_fini(void *state) {
        free(state);
}

static int example_advertise(void *state, struct swarm_values *advert) {
        const struct example *e = state;
        int r;

        r = swarm_values_set_string(advert, "device", "cpu");
        if (r < 0)
                return r;
        r = swarm_values_set_string(advert, "unit", "element");
        if (r < 0)
                return r;
        return swarm_values_set_int(advert, "throughput", (int64_t) e->throughput);
}

/* Validates the inputs into *req and explains a refusal: job is NULL in
 * price(), and swarm_job_set_error(NULL, …) is how price() explains.  The
 * host has already checked what the declarations below say (names, types,
 * dtype); this checks what they cannot (sizes, ranges). */
static int parse_request(const struct example *e, const struct swarm_values *inputs, struct swarm_job *job,
                         struct request *req) {
        int64_t factor;
        int r;

        r = swarm_values_get_tensor(inputs, "x", &req->x);
        if (r < 0 || req->x.dtype != SWARM_DTYPE_F32) {
                swarm_job_set_error(job, "input \"x\" must be an f32 tensor");
                return -EINVAL;
        }
        if (req->x.n_elements > e->max_elements) {
                swarm_job_set_error(job, "input \"x\" has %" PRIu64 " elements, at most %" PRIu64
                                    " are accepted", req->x.n_elements, e->max_elements);
                return -E2BIG;
        }
        r = swarm_values_get_int(inputs, "factor", &factor);
        if (r < 0 || factor < -FACTOR_MAX || factor > FACTOR_MAX) {
                swarm_job_set_error(job, "input \"factor\" must be an integer between %" PRIi64
                                    " and %" PRIi64, -FACTOR_MAX, FACTOR_MAX);
                return -EINVAL;
        }
        req->factor = (float) factor;
        return 0;
}

static int example_price(void *state, const struct swarm_values *inputs, uint64_t *price) {
        struct request req;
        int r;

        r = parse_request(state, inputs, NULL, &req);
        if (r < 0)
                return r;
        /* One micro-credit per million elements, and at least one. */
        *price = 1 + req.x.n_elements / 1000000u;
        return 0;
}

static int example_execute(void *state, struct swarm_job *job) {
        struct swarm_tensor y;
        struct request req;
        const float *x;
        int r;

        r = parse_request(state, swarm_job_inputs(job), job, &req);
        if (r < 0)
                return r;
        x = req.x.data;
        for (uint64_t i = 0; i < req.x.n_elements; i++)
                if (!isfinite(x[i])) {
                        swarm_job_set_error(job, "input \"x\" element %" PRIu64 " is not a finite number", i);
                        return -EINVAL;
                }

        /* The host allocates outputs, so they travel back without a copy. */
        r = swarm_values_add_tensor(swarm_job_outputs(job), "y", SWARM_DTYPE_F32, req.x.ndim, req.x.shape, &y);
        if (r < 0)
                return r;

        for (uint64_t i = 0; i < req.x.n_elements; i += CHUNK_ELEMENTS) {
                uint64_t n = req.x.n_elements - i < CHUNK_ELEMENTS ? req.x.n_elements - i : CHUNK_ELEMENTS;

                if (swarm_job_cancelled(job)) {
                        swarm_job_set_error(job, "cancelled");
                        return -ECANCELED;
                }
                scale(x + i, (float *) y.data + i, n, req.factor);
        }
        return 0;
}

static int example_verify(void *state, struct swarm_job *job) {
        const float *x, *y;
        struct swarm_tensor t;
        struct request req;
        uint64_t seed;
        int r;

        r = parse_request(state, swarm_job_inputs(job), job, &req);
        if (r < 0)
                return r;

        /* The shape first: a result of the wrong shape is wrong. */
        r = swarm_values_get_tensor(swarm_job_outputs(job), "y", &t);
        if (r < 0 || t.dtype != SWARM_DTYPE_F32 || t.ndim != req.x.ndim ||
            memcmp(t.shape, req.x.shape, sizeof(t.shape[0]) * t.ndim) != 0) {
                swarm_job_set_error(job, "output \"y\" is missing or not an f32 tensor of x's shape");
                return -EBADMSG;
        }

        /* Then the values: every one of a small tensor, VERIFY_SAMPLES at
         * random of a big one.  A provider that got a fraction f of the
         * elements wrong escapes with probability (1 - f)^VERIFY_SAMPLES. */
        if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
                seed = now_usec();
        seed |= 1;
        x = req.x.data;
        y = t.data;
        for (uint64_t k = 0; k < req.x.n_elements && k < VERIFY_SAMPLES; k++) {
                uint64_t i = k;

                if (req.x.n_elements > VERIFY_SAMPLES) {
                        /* xorshift64: cheap, and unpredictable enough to the provider. */
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        i = seed % req.x.n_elements;
                }
                /* The same single multiplication as execute(): exact, so
                 * equality is the right comparison. */
                if (y[i] != x[i] * req.factor) {
                        swarm_job_set_error(job, "output \"y\" element %" PRIu64 " is wrong", i);
                        return -EBADMSG;
                }
        }
        return 0;
}

/* What a job holds and what a result holds (ABI 1.2): the host refuses a
 * job that does not match before price() sees it, and `swarmctl skill
 * inspect` shows these lists to requesters. */
static const struct swarm_param example_inputs[] = {
        { "x", SWARM_VALUE_TENSOR, SWARM_DTYPE_F32, 0, "any", 0, "the tensor to scale" },
        { "factor", SWARM_VALUE_INT, 0, 0, NULL, 0, "the integer to multiply by" },
        {}
};

static const struct swarm_param example_outputs[] = {
        { "y", SWARM_VALUE_TENSOR, SWARM_DTYPE_F32, 0, "x's shape", 0, "x · factor" },
        {}
};

static const struct swarm_skill example_skill = {
        .abi_version = SWARM_SKILL_ABI_VERSION,
        .struct_size = sizeof(struct swarm_skill),
        .name = "example.scale",
        .version = "1.0.0",
        .description = "Multiplies an f32 tensor by an integer (the SDK's template skill)",
        .init = example_init,
        .fini = example_fini,
        .advertise = example_advertise,
        .price = example_price,
        .execute = example_execute,
        .verify = example_verify,
        .inputs = example_inputs,
        .outputs = example_outputs,
};

/* The one symbol the plugin exports; everything else stays hidden
 * (-fvisibility=hidden in the Makefile). */
SWARM_SKILL_EXPORT const struct swarm_skill *swarm_skill_entry(void) {
        return &example_skill;
}

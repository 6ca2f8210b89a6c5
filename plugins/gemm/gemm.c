/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The gemm skill: C = A·B for f32 matrices, on OpenBLAS or cuBLAS, checked
 * by the requester with Freivalds' algorithm.  This file holds what does not
 * depend on the back end: configuration, validation of jobs, price, advert,
 * and verify.  See README.md for the inputs, outputs and settings. */

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "freivalds.h"
#include "gemm.h"

#define VERIFY_ROUNDS_DEFAULT 20
#define MEMORY_BUDGET_DEFAULT ((int64_t) 4 << 30)
#define PRICE_PER_GFLOP_DEFAULT 1000
#define PRICE_PER_GFLOP_MAX 1000000000
#define THREADS_MAX 4096
/* Long enough for a stable rate, short enough to keep init() well under
 * a second. */
#define BENCHMARK_MS 60
/* A job's error message is one line of at most this much. */
#define ERROR_MAX 512

enum gemm_device {
        GEMM_DEVICE_AUTO,
        GEMM_DEVICE_CPU,
        GEMM_DEVICE_CUDA,
};

struct gemm_state {
        unsigned verify_rounds;
        uint64_t memory_budget;
        enum gemm_device device;
        int cuda_index;                 /* -1: the first */
        int threads;
        uint64_t price_per_gflop;

        struct gemm_cuda *cuda;         /* NULL: jobs run on OpenBLAS */
        double throughput;              /* FLOP/s, fp32, measured in init() */
};

/* A validated job. */
struct gemm_job {
        struct swarm_tensor a, b;
        uint64_t m, k, n;
        enum gemm_precision precision;
};

static const char *const precision_names[_GEMM_PRECISION_MAX] = {
        [GEMM_PRECISION_FP32] = "fp32",
        [GEMM_PRECISION_TF32] = "tf32",
        [GEMM_PRECISION_BF16] = "bf16",
};

const char *gemm_precision_to_string(enum gemm_precision p) {
        return p < _GEMM_PRECISION_MAX ? precision_names[p] : NULL;
}

int gemm_precision_from_string(const char *s, enum gemm_precision *ret) {
        for (size_t i = 0; i < ELEMENTSOF(precision_names); i++)
                if (strcmp(s, precision_names[i]) == 0) {
                        *ret = (enum gemm_precision) i;
                        return 0;
                }
        return -EINVAL;
}

double gemm_precision_input_roundoff(enum gemm_precision p) {
        switch (p) {
        case GEMM_PRECISION_TF32:
                return 0x1p-11;         /* 10 explicit mantissa bits */
        case GEMM_PRECISION_BF16:
                return 0x1p-8;          /* 7 explicit mantissa bits */
        default:
                return 0;
        }
}

static void state_free(struct gemm_state *s) {
        if (!s)
                return;
        gemm_cuda_close(s->cuda);
        free(s);
}

static void state_freep(struct gemm_state **s) {
        state_free(*s);
}

/* ---- Configuration ---- */

static const char *const config_keys[] = {
        "verify-rounds", "memory-budget", "device", "threads", "price-per-gflop",
        "verify-only",          /* set by the host for a worker that only verifies */
};

/* An optional integer setting in [min, max]: 0 and *ret untouched when
 * absent, -EINVAL (logged, naming the key) when of another type or out of
 * range. */
static int config_int(const struct swarm_values *config, const char *key, int64_t min, int64_t max, int64_t *ret) {
        int64_t v;
        int r;

        r = swarm_values_get_int(config, key, &v);
        if (r == -ENOENT)
                return 0;
        if (r == -EMEDIUMTYPE) {
                swarm_log(LOG_ERR, "gemm: config key %s must be an integer", key);
                return -EINVAL;
        }
        if (r < 0) {
                swarm_log(LOG_ERR, "gemm: cannot read config key %s: %s", key, strerror(-r));
                return r;
        }
        if (v < min || v > max) {
                swarm_log(LOG_ERR, "gemm: config key %s is %" PRId64 ", must be in %" PRId64 "…%" PRId64,
                          key, v, min, max);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

static int config_device(const struct swarm_values *config, struct gemm_state *s) {
        const char *v;
        int r;

        r = swarm_values_get_string(config, "device", &v);
        if (r == -ENOENT)
                return 0;
        if (r < 0) {
                swarm_log(LOG_ERR, "gemm: config key device must be a string: auto, cpu, cuda or cuda:N");
                return -EINVAL;
        }

        if (strcmp(v, "auto") == 0)
                s->device = GEMM_DEVICE_AUTO;
        else if (strcmp(v, "cpu") == 0)
                s->device = GEMM_DEVICE_CPU;
        else if (strcmp(v, "cuda") == 0)
                s->device = GEMM_DEVICE_CUDA;
        else if (strncmp(v, "cuda:", 5) == 0) {
                char *end;
                long idx;

                errno = 0;
                idx = strtol(v + 5, &end, 10);
                if (errno != 0 || end == v + 5 || *end != '\0' || idx < 0 || idx > 1023) {
                        swarm_log(LOG_ERR, "gemm: config key device is \"%s\": the device index must be 0…1023", v);
                        return -EINVAL;
                }
                s->device = GEMM_DEVICE_CUDA;
                s->cuda_index = (int) idx;
        } else {
                swarm_log(LOG_ERR, "gemm: config key device is \"%s\", must be auto, cpu, cuda or cuda:N", v);
                return -EINVAL;
        }
        return 0;
}

static int config_parse(const struct swarm_values *config, struct gemm_state *s) {
        int64_t rounds = VERIFY_ROUNDS_DEFAULT, budget = MEMORY_BUDGET_DEFAULT, threads = 0,
                price = PRICE_PER_GFLOP_DEFAULT;
        int r;

        s->device = GEMM_DEVICE_AUTO;
        s->cuda_index = -1;
        if (config) {
                for (size_t i = 0; i < swarm_values_count(config); i++) {
                        const char *name = swarm_values_name(config, i, NULL);
                        bool known = false;

                        for (size_t j = 0; j < ELEMENTSOF(config_keys); j++)
                                known = known || strcmp(name, config_keys[j]) == 0;
                        if (!known)
                                swarm_log(LOG_WARNING, "gemm: ignoring unknown config key %s", name);
                }

                r = config_int(config, "verify-rounds", 1, FREIVALDS_ROUNDS_MAX, &rounds);
                if (r < 0)
                        return r;
                r = config_int(config, "memory-budget", 1, INT64_MAX, &budget);
                if (r < 0)
                        return r;
                r = config_int(config, "threads", 0, THREADS_MAX, &threads);
                if (r < 0)
                        return r;
                r = config_int(config, "price-per-gflop", 0, PRICE_PER_GFLOP_MAX, &price);
                if (r < 0)
                        return r;
                r = config_device(config, s);
                if (r < 0)
                        return r;
        }

        s->verify_rounds = (unsigned) rounds;
        s->memory_budget = (uint64_t) budget;
        s->threads = (int) threads;
        s->price_per_gflop = (uint64_t) price;
        return 0;
}

/* ---- Validation ---- */

/* Reads tensor name, which must be a 2-D f32 matrix. */
static int input_matrix(const struct swarm_values *inputs, const char *name, const char *shape,
                        struct swarm_tensor *ret, char *err, size_t err_size) {
        const char *dtype;
        int r;

        r = swarm_values_get_tensor(inputs, name, ret);
        if (r == -ENOENT) {
                snprintf(err, err_size, "missing input %s: an f32 tensor of shape %s", name, shape);
                return -EINVAL;
        }
        if (r < 0) {
                snprintf(err, err_size, "input %s must be an f32 tensor of shape %s", name, shape);
                return -EINVAL;
        }
        if (ret->ndim != 2) {
                snprintf(err, err_size, "input %s must be a 2-D tensor (%s) but has %" PRIu32 " dimension%s",
                         name, shape, ret->ndim, ret->ndim == 1 ? "" : "s");
                return -EINVAL;
        }
        if (ret->dtype != SWARM_DTYPE_F32) {
                dtype = swarm_dtype_name(ret->dtype);
                snprintf(err, err_size, "input %s has dtype %s; only f32 is accepted (precision selects the "
                         "compute format)", name, dtype ? dtype : "unknown");
                return -EINVAL;
        }
        if (ret->shape[0] == 0 || ret->shape[1] == 0 || !ret->data ||
            ret->n_elements != ret->shape[0] * ret->shape[1] ||
            ret->size != ret->n_elements * sizeof(float)) {
                snprintf(err, err_size, "input %s is an empty or inconsistent tensor", name);
                return -EINVAL;
        }
        if (ret->shape[0] > INT_MAX || ret->shape[1] > INT_MAX) {
                snprintf(err, err_size, "input %s is %" PRIu64 "x%" PRIu64 ": a dimension exceeds %d, "
                         "the largest BLAS accepts", name, ret->shape[0], ret->shape[1], INT_MAX);
                return -E2BIG;
        }
        return 0;
}

/* Validates a job's inputs: shapes, dtypes, precision and the memory
 * budget.  When executing, also that this worker can run the precision.
 * On failure returns -EINVAL or -E2BIG with a one-line reason in err. */
static int job_parse(const struct gemm_state *s, const struct swarm_values *inputs, bool executing,
                     struct gemm_job *j, char *err, size_t err_size) {
        uint64_t mk, kn, mn, elements, bytes;
        const char *precision;
        int r;

        memset(j, 0, sizeof(*j));

        r = input_matrix(inputs, "a", "m×k", &j->a, err, err_size);
        if (r < 0)
                return r;
        r = input_matrix(inputs, "b", "k×n", &j->b, err, err_size);
        if (r < 0)
                return r;

        j->m = j->a.shape[0];
        j->k = j->a.shape[1];
        j->n = j->b.shape[1];
        if (j->b.shape[0] != j->k) {
                snprintf(err, err_size, "a is %" PRIu64 "x%" PRIu64 " but b is %" PRIu64 "x%" PRIu64
                         ": inner dimensions differ (%" PRIu64 " vs %" PRIu64 ")",
                         j->m, j->k, j->b.shape[0], j->n, j->k, j->b.shape[0]);
                return -EINVAL;
        }
        if (j->k > FREIVALDS_K_MAX) {
                snprintf(err, err_size, "inner dimension %" PRIu64 " exceeds %" PRIu64 ": float32 sums that "
                         "long have no useful error bound and cannot be verified", j->k, FREIVALDS_K_MAX);
                return -E2BIG;
        }

        r = swarm_values_get_string(inputs, "precision", &precision);
        if (r == -ENOENT)
                j->precision = GEMM_PRECISION_FP32;
        else if (r < 0) {
                snprintf(err, err_size, "input precision must be a string: fp32, tf32 or bf16");
                return -EINVAL;
        } else if (gemm_precision_from_string(precision, &j->precision) < 0) {
                snprintf(err, err_size, "unknown precision \"%s\": use fp32, tf32 or bf16", precision);
                return -EINVAL;
        }
        if (executing && j->precision != GEMM_PRECISION_FP32 && !s->cuda) {
                snprintf(err, err_size, "precision %s needs a GPU; this worker runs on CPU (use fp32)",
                         gemm_precision_to_string(j->precision));
                return -EINVAL;
        }

        /* a, b and c together; each fits in memory already, the sum may
         * not fit in 64 bits. */
        if (__builtin_mul_overflow(j->m, j->k, &mk) ||
            __builtin_mul_overflow(j->k, j->n, &kn) ||
            __builtin_mul_overflow(j->m, j->n, &mn) ||
            __builtin_add_overflow(mk, kn, &elements) ||
            __builtin_add_overflow(elements, mn, &elements) ||
            __builtin_mul_overflow(elements, sizeof(float), &bytes))
                bytes = UINT64_MAX;
        if (bytes > s->memory_budget) {
                snprintf(err, err_size, "a (%" PRIu64 "x%" PRIu64 "), b (%" PRIu64 "x%" PRIu64 ") and c (%"
                         PRIu64 "x%" PRIu64 ") need %" PRIu64 " bytes, over this worker's memory budget of %"
                         PRIu64 " bytes", j->m, j->k, j->k, j->n, j->m, j->n, bytes, s->memory_budget);
                return -E2BIG;
        }
        return 0;
}

/* Checks that every element of the rows×cols matrix is finite; else
 * -EINVAL with the first offender in err. */
static int matrix_check_finite(const char *name, const float *data, uint64_t rows, uint64_t cols,
                               char *err, size_t err_size) {
        /* x·0 is NaN exactly when x is NaN or ±∞ (compilers may not fold it
         * without -ffast-math); in fixed groups of 16 lanes without an early
         * exit this vectorises.  The exact position is only looked for in a
         * block with a bad value. */
        const uint64_t total = rows * cols, block = 4096;

        for (uint64_t start = 0; start < total; start += block) {
                uint64_t end = total - start < block ? total : start + block, i = start;
                float probe[16] = {};
                bool bad = false;

                for (; i + 16 <= end; i += 16)
                        for (unsigned t = 0; t < 16; t++)
                                probe[t] += data[i + t] * 0.0f;
                for (; i < end; i++)
                        probe[0] += data[i] * 0.0f;
                for (unsigned t = 0; t < 16; t++)
                        bad = bad || isnan(probe[t]);
                if (!bad)
                        continue;

                for (i = start; i < end; i++)
                        if (!isfinite(data[i])) {
                                snprintf(err, err_size, "%s contains %s at (%" PRIu64 ", %" PRIu64 ")",
                                         name, isnan(data[i]) ? "NaN" : data[i] > 0 ? "+Inf" : "-Inf",
                                         i / cols, i % cols);
                                return -EINVAL;
                        }
        }
        return 0;
}

/* ---- Callbacks ---- */

static int gemm_init(const struct swarm_values *config, void **ret) {
        _cleanup_(state_freep) struct gemm_state *s = NULL;
        char why[256] = "";
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;

        r = config_parse(config, s);
        if (r < 0)
                return r;

        gemm_cpu_setup(s->threads);

        if (s->device != GEMM_DEVICE_CPU) {
                r = gemm_cuda_open(s->cuda_index, &s->cuda, why, sizeof(why));
                if (r < 0 && s->device == GEMM_DEVICE_CUDA) {
                        if (s->cuda_index >= 0)
                                swarm_log(LOG_ERR, "gemm: device cuda:%d requested but unusable: %s",
                                          s->cuda_index, why);
                        else
                                swarm_log(LOG_ERR, "gemm: device cuda requested but unusable: %s", why);
                        return r == -ENOMEM ? r : -ENODEV;
                }
                if (r == -ENODEV)
                        swarm_log(LOG_INFO, "gemm: no CUDA device (%s); using OpenBLAS", why);
                else if (r < 0)
                        swarm_log(LOG_WARNING, "gemm: CUDA device unusable (%s); using OpenBLAS", why);
        }

        if (s->cuda) {
                r = gemm_cuda_benchmark(s->cuda, BENCHMARK_MS, &s->throughput);
                if (r < 0 && s->device == GEMM_DEVICE_CUDA) {
                        swarm_log(LOG_ERR, "gemm: benchmark on %s failed: %s", gemm_cuda_name(s->cuda),
                                  strerror(-r));
                        return r;
                }
                if (r < 0) {
                        swarm_log(LOG_WARNING, "gemm: benchmark on %s failed (%s); using OpenBLAS",
                                  gemm_cuda_name(s->cuda), strerror(-r));
                        gemm_cuda_close(s->cuda);
                        s->cuda = NULL;
                } else
                        swarm_log(LOG_INFO, "gemm: %s, %.1f GFLOP/s fp32", gemm_cuda_name(s->cuda),
                                  s->throughput / 1e9);
        }
        if (!s->cuda) {
                r = gemm_cpu_benchmark(BENCHMARK_MS, &s->throughput);
                if (r < 0) {
                        swarm_log(LOG_ERR, "gemm: CPU benchmark failed: %s", strerror(-r));
                        return r;
                }
                swarm_log(LOG_INFO, "gemm: OpenBLAS on %s, %d thread%s, %.1f GFLOP/s fp32", gemm_cpu_model(),
                          gemm_cpu_threads(), gemm_cpu_threads() == 1 ? "" : "s", s->throughput / 1e9);
        }

        *ret = TAKE_PTR(s);
        return 0;
}

static void gemm_fini(void *state) {
        state_free(state);
}

static int gemm_advertise(void *state, struct swarm_values *advert) {
        struct gemm_state *s = state;
        char device[512];
        uint64_t memory;
        int r;

        if (s->cuda) {
                snprintf(device, sizeof(device), "cuda: %s", gemm_cuda_name(s->cuda));
                memory = gemm_cuda_memory(s->cuda);
        } else {
                snprintf(device, sizeof(device), "cpu: %s (%d thread%s)", gemm_cpu_model(), gemm_cpu_threads(),
                         gemm_cpu_threads() == 1 ? "" : "s");
                memory = gemm_cpu_memory();
        }

        r = swarm_values_set_string(advert, "device", device);
        if (r >= 0)
                r = swarm_values_set_int(advert, "memory", memory > INT64_MAX ? INT64_MAX : (int64_t) memory);
        if (r >= 0)
                r = swarm_values_set_string(advert, "unit", "flop");
        if (r >= 0)
                r = swarm_values_set_int(advert, "throughput", s->throughput >= 1 ? llround(s->throughput) : 1);
        if (r >= 0)
                r = swarm_values_set_string(advert, "precisions", s->cuda ? "fp32,tf32,bf16" : "fp32");
        if (r >= 0)
                r = swarm_values_set_int(advert, "verify-rounds", s->verify_rounds);
        if (r >= 0)
                r = swarm_values_set_int(advert, "memory-budget",
                                         s->memory_budget > INT64_MAX ? INT64_MAX : (int64_t) s->memory_budget);
        /* The list price peers see in gossip: micro-credits per GFLOP. */
        if (r >= 0)
                r = swarm_values_set_int(advert, "price",
                                         s->price_per_gflop > INT64_MAX ? INT64_MAX : (int64_t) s->price_per_gflop);
        if (r >= 0)
                r = swarm_values_set_string(advert, "price-unit", "GFLOP");
        return r < 0 ? r : 0;
}

static int gemm_price(void *state, const struct swarm_values *inputs, uint64_t *ret) {
        struct gemm_state *s = state;
        unsigned __int128 cost;
        struct gemm_job j;
        char err[ERROR_MAX];
        int r;

        r = job_parse(s, inputs, true, &j, err, sizeof(err));
        if (r < 0) {
                swarm_job_set_error(NULL, "%s", err);
                return r;
        }

        /* ⌈2·m·n·k / 10^9 · price_per_gflop⌉, exactly: each dimension is
         * below 2^31 and the rate below 2^30, so this fits in 128 bits. */
        cost = (unsigned __int128) 2 * j.m * j.n * j.k * s->price_per_gflop;
        cost = (cost + 999999999) / 1000000000;
        *ret = cost < 1 ? 1 : cost > UINT64_MAX ? UINT64_MAX : (uint64_t) cost;
        return 0;
}

static int gemm_execute(void *state, struct swarm_job *job) {
        struct gemm_state *s = state;
        char err[ERROR_MAX];
        struct swarm_tensor c;
        struct gemm_job j;
        int r;

        r = job_parse(s, swarm_job_inputs(job), true, &j, err, sizeof(err));
        if (r < 0) {
                swarm_job_set_error(job, "%s", err);
                return r;
        }
        if (swarm_job_cancelled(job)) {
                swarm_job_set_error(job, "cancelled before it started");
                return -ECANCELED;
        }

        r = matrix_check_finite("a", j.a.data, j.m, j.k, err, sizeof(err));
        if (r >= 0)
                r = matrix_check_finite("b", j.b.data, j.k, j.n, err, sizeof(err));
        if (r < 0) {
                swarm_job_set_error(job, "%s", err);
                return r;
        }

        r = swarm_values_add_tensor(swarm_job_outputs(job), "c", SWARM_DTYPE_F32, 2,
                                    (const uint64_t[]) { j.m, j.n }, &c);
        if (r < 0) {
                swarm_job_set_error(job, "cannot allocate c (%" PRIu64 "x%" PRIu64 " f32): %s",
                                    j.m, j.n, strerror(-r));
                return r;
        }

        if (s->cuda) {
                r = gemm_cuda_run(s->cuda, j.precision, j.a.data, j.b.data, c.data, j.m, j.k, j.n, job);
                if (r == -ENOMEM && j.precision == GEMM_PRECISION_FP32) {
                        swarm_log(LOG_WARNING, "gemm: %s lacks memory for a %" PRIu64 "x%" PRIu64 "x%" PRIu64
                                  " product; running it on OpenBLAS instead",
                                  gemm_cuda_name(s->cuda), j.m, j.k, j.n);
                        swarm_job_set_error(job, "%s", "");
                        r = gemm_cpu_run(j.a.data, j.b.data, c.data, j.m, j.k, j.n, job);
                }
        } else
                r = gemm_cpu_run(j.a.data, j.b.data, c.data, j.m, j.k, j.n, job);
        if (r < 0)
                return r;

        /* Finite inputs can still overflow; such a C cannot be verified and
         * is no use to anyone. */
        r = matrix_check_finite("c", c.data, j.m, j.n, err, sizeof(err));
        if (r < 0) {
                swarm_job_set_error(job, "the product overflows float32: %s", err);
                return r;
        }
        if (swarm_job_cancelled(job)) {
                swarm_job_set_error(job, "cancelled");
                return -ECANCELED;
        }
        return 0;
}

static int gemm_verify(void *state, struct swarm_job *job) {
        struct gemm_state *s = state;
        char err[ERROR_MAX];
        struct freivalds_report report;
        struct swarm_tensor c;
        struct gemm_job j;
        const char *dtype;
        int r;

        /* A malformed job is the requester's mistake, not a wrong result.
         * (Non-finite inputs are found by freivalds_check(), which reads
         * them anyway.) */
        r = job_parse(s, swarm_job_inputs(job), false, &j, err, sizeof(err));
        if (r < 0) {
                swarm_job_set_error(job, "%s", err);
                return r;
        }

        r = swarm_values_get_tensor(swarm_job_outputs(job), "c", &c);
        if (r == -ENOENT) {
                swarm_job_set_error(job, "the result has no output c");
                return -EBADMSG;
        }
        if (r < 0) {
                swarm_job_set_error(job, "the result's c is not a tensor");
                return -EBADMSG;
        }
        if (c.dtype != SWARM_DTYPE_F32) {
                dtype = swarm_dtype_name(c.dtype);
                swarm_job_set_error(job, "the result's c has dtype %s, expected f32", dtype ? dtype : "unknown");
                return -EBADMSG;
        }
        if (c.ndim != 2 || c.shape[0] != j.m || c.shape[1] != j.n || !c.data ||
            c.size != j.m * j.n * sizeof(float)) {
                swarm_job_set_error(job, "the result's c has %" PRIu32 " dimension%s (%" PRIu64 "x%" PRIu64
                                    "…), expected %" PRIu64 "x%" PRIu64, c.ndim, c.ndim == 1 ? "" : "s",
                                    c.shape[0], c.ndim > 1 ? c.shape[1] : 1, j.m, j.n);
                return -EBADMSG;
        }

        r = freivalds_check(j.a.data, j.b.data, c.data, j.m, j.k, j.n,
                            &(struct freivalds_params) {
                                    .rounds = s->verify_rounds,
                                    .input_roundoff = gemm_precision_input_roundoff(j.precision),
                                    /* As many as OpenBLAS uses: the check is compute-bound too. */
                                    .threads = (unsigned) gemm_cpu_threads(),
                            }, &report);
        if (r == -EDOM) {
                /* Says where. */
                r = matrix_check_finite("a", j.a.data, j.m, j.k, err, sizeof(err));
                if (r >= 0)
                        r = matrix_check_finite("b", j.b.data, j.k, j.n, err, sizeof(err));
                swarm_job_set_error(job, "%s", r < 0 ? err : "a or b is not finite");
                return -EINVAL;
        }
        if (r == -EBADMSG) {
                if (report.verdict == FREIVALDS_NOT_FINITE)
                        swarm_job_set_error(job, "the result's c(%" PRIu64 ", %" PRIu64 ") is %s",
                                            report.row, report.col, isnan(report.rhs) ? "NaN" : "infinite");
                else
                        swarm_job_set_error(job, "row %" PRIu64 ", round %u of %u: A·(B·x) = %.9g but C·x = %.9g, "
                                            "off by %.3g, beyond the %s tolerance %.3g",
                                            report.row, report.round + 1, s->verify_rounds, report.lhs, report.rhs,
                                            fabs(report.lhs - report.rhs), gemm_precision_to_string(j.precision),
                                            report.tolerance);
                return -EBADMSG;
        }
        if (r < 0) {
                swarm_job_set_error(job, "verification could not run: %s", strerror(-r));
                return r;
        }
        return 0;
}

static const struct swarm_param gemm_inputs[] = {
        { "a", SWARM_VALUE_TENSOR, SWARM_DTYPE_F32, 2, "m×k", 0, "the left matrix" },
        { "b", SWARM_VALUE_TENSOR, SWARM_DTYPE_F32, 2, "k×n", 0, "the right matrix" },
        { "precision", SWARM_VALUE_STRING, 0, 0, NULL, SWARM_PARAM_OPTIONAL,
          "fp32 (default), tf32 or bf16: the compute format; tf32 and bf16 need a GPU" },
        {}
};

static const struct swarm_param gemm_outputs[] = {
        { "c", SWARM_VALUE_TENSOR, SWARM_DTYPE_F32, 2, "m×n", 0, "the product a·b" },
        {}
};

static const struct swarm_skill skill = {
        .abi_version = SWARM_SKILL_ABI_VERSION,
        .struct_size = sizeof(struct swarm_skill),
        .name = "gemm",
        .version = "1.0.0",
        .description = "Dense f32 matrix product C = A·B (OpenBLAS or cuBLAS), verified by Freivalds' check",
        .init = gemm_init,
        .fini = gemm_fini,
        .advertise = gemm_advertise,
        .price = gemm_price,
        .execute = gemm_execute,
        /* Freivalds' check needs only the inputs and C: no proof. */
        .prove = NULL,
        .verify = gemm_verify,
        .inputs = gemm_inputs,
        .outputs = gemm_outputs,
};

SWARM_SKILL_EXPORT const struct swarm_skill *swarm_skill_entry(void) {
        return &skill;
}

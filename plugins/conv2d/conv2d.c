/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The conv2d skill: y = conv2d(x, w) + bias for f32 NCHW tensors on the
 * shared engine (OpenBLAS on the CPU, cuDNN on a GPU), checked by the
 * requester with a Freivalds check on the im2col form (conv-check.h), whose
 * arithmetic is rounds/(k/groups) of the convolution's (it measures a
 * quarter to three quarters of its time on a CPU: README.md).  See README.md
 * for the inputs, outputs and settings. */

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <swarm/skill.h>

#include "conv-check.h"
#include "nn-backend.h"
#include "nn-pool.h"

#define VERIFY_ROUNDS_DEFAULT 16
#define MEMORY_BUDGET_DEFAULT ((int64_t) 4 << 30)
#define PRICE_PER_GFLOP_DEFAULT 1000
#define PRICE_PER_GFLOP_MAX 1000000000
#define THREADS_MAX 4096
/* Long enough for a stable rate, short enough to keep init() well under a
 * second. */
#define BENCHMARK_MS 60
#define ERROR_MAX 512

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

enum conv_device {
        CONV_DEVICE_AUTO,
        CONV_DEVICE_CPU,
        CONV_DEVICE_CUDA,
};

struct conv_state {
        unsigned verify_rounds;
        uint64_t memory_budget;
        enum conv_device device;
        int cuda_index;
        int64_t threads;
        uint64_t price_per_gflop;

        struct nn_backend *be;
        bool on_gpu;
        struct nn_pool *pool;           /* the verification's threads */
        double throughput;              /* FLOP/s measured in init() */
};

/* A validated job. */
struct conv_job {
        struct nn_conv2d p;
        struct swarm_tensor x, w, bias;
        bool has_bias;
};

static void state_free(struct conv_state *s) {
        if (!s)
                return;
        nn_backend_free(s->be);
        if (s->pool)
                nn_pool_free(s->pool);
        free(s);
}

/* ---- Configuration ---- */

static const char *const config_keys[] = {
        "verify-rounds", "memory-budget", "device", "threads", "price-per-gflop",
        "verify-only",          /* set by the host for a worker that only verifies */
};

static int config_int(const struct swarm_values *config, const char *key, int64_t min, int64_t max, int64_t *ret) {
        int64_t v;
        int r;

        r = swarm_values_get_int(config, key, &v);
        if (r == -ENOENT)
                return 0;
        if (r < 0) {
                swarm_log(LOG_ERR, "conv2d: config key %s must be an integer", key);
                return -EINVAL;
        }
        if (v < min || v > max) {
                swarm_log(LOG_ERR, "conv2d: config key %s is %" PRId64 ", must be in %" PRId64 "…%" PRId64, key, v,
                          min, max);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

static int config_device(const struct swarm_values *config, struct conv_state *s) {
        const char *v;
        char *end;
        long idx;
        int r;

        s->device = CONV_DEVICE_AUTO;
        s->cuda_index = 0;
        r = swarm_values_get_string(config, "device", &v);
        if (r == -ENOENT)
                return 0;
        if (r < 0) {
                swarm_log(LOG_ERR, "conv2d: config key device must be a string: auto, cpu, cuda or cuda:N");
                return -EINVAL;
        }
        if (strcmp(v, "auto") == 0)
                s->device = CONV_DEVICE_AUTO;
        else if (strcmp(v, "cpu") == 0)
                s->device = CONV_DEVICE_CPU;
        else if (strcmp(v, "cuda") == 0)
                s->device = CONV_DEVICE_CUDA;
        else if (strncmp(v, "cuda:", 5) == 0) {
                errno = 0;
                idx = strtol(v + 5, &end, 10);
                if (errno != 0 || end == v + 5 || *end != '\0' || idx < 0 || idx > 1023) {
                        swarm_log(LOG_ERR, "conv2d: config key device is \"%s\": the device index must be 0…1023", v);
                        return -EINVAL;
                }
                s->device = CONV_DEVICE_CUDA;
                s->cuda_index = (int) idx;
        } else {
                swarm_log(LOG_ERR, "conv2d: config key device is \"%s\", must be auto, cpu, cuda or cuda:N", v);
                return -EINVAL;
        }
        return 0;
}

static int config_parse(const struct swarm_values *config, struct conv_state *s) {
        int64_t rounds = VERIFY_ROUNDS_DEFAULT, budget = MEMORY_BUDGET_DEFAULT, threads = 0,
                price = PRICE_PER_GFLOP_DEFAULT;
        int r = 0;

        s->device = CONV_DEVICE_AUTO;
        if (config) {
                for (size_t i = 0; i < swarm_values_count(config); i++) {
                        const char *name = swarm_values_name(config, i, NULL);
                        bool known = false;

                        for (size_t j = 0; j < ELEMENTSOF(config_keys); j++)
                                known = known || strcmp(name, config_keys[j]) == 0;
                        if (!known)
                                swarm_log(LOG_WARNING, "conv2d: ignoring unknown config key %s", name);
                }
                r = config_int(config, "verify-rounds", 1, CONV_CHECK_ROUNDS_MAX, &rounds);
                if (r >= 0)
                        r = config_int(config, "memory-budget", 1, INT64_MAX, &budget);
                if (r >= 0)
                        r = config_int(config, "threads", 0, THREADS_MAX, &threads);
                if (r >= 0)
                        r = config_int(config, "price-per-gflop", 0, PRICE_PER_GFLOP_MAX, &price);
                if (r >= 0)
                        r = config_device(config, s);
                if (r < 0)
                        return r;
        }
        s->verify_rounds = (unsigned) rounds;
        s->memory_budget = (uint64_t) budget;
        s->threads = threads;
        s->price_per_gflop = (uint64_t) price;
        return 0;
}

/* ---- Validation ---- */

static int input_tensor(const struct swarm_values *inputs, const char *name, uint32_t ndim, const char *shape,
                        bool optional, struct swarm_tensor *ret, char *err, size_t err_size) {
        const char *dtype;
        uint64_t n = 1;
        int r;

        r = swarm_values_get_tensor(inputs, name, ret);
        if (r == -ENOENT && optional)
                return 0;
        if (r == -ENOENT) {
                snprintf(err, err_size, "missing input %s: an f32 tensor of shape %s", name, shape);
                return -EINVAL;
        }
        if (r < 0) {
                snprintf(err, err_size, "input %s must be an f32 tensor of shape %s", name, shape);
                return -EINVAL;
        }
        if (ret->ndim != ndim) {
                snprintf(err, err_size, "input %s must have %" PRIu32 " dimensions (%s) but has %" PRIu32, name, ndim,
                         shape, ret->ndim);
                return -EINVAL;
        }
        if (ret->dtype != SWARM_DTYPE_F32) {
                dtype = swarm_dtype_name(ret->dtype);
                snprintf(err, err_size, "input %s has dtype %s; only f32 is accepted", name, dtype ? dtype : "unknown");
                return -EINVAL;
        }
        for (uint32_t i = 0; i < ndim; i++) {
                if (ret->shape[i] == 0 || ret->shape[i] > NN_CONV_DIM_MAX) {
                        snprintf(err, err_size, "input %s: dimension %" PRIu32 " is %" PRIu64 ", must be 1…%" PRIu32,
                                 name, i, ret->shape[i], NN_CONV_DIM_MAX);
                        return ret->shape[i] == 0 ? -EINVAL : -E2BIG;
                }
                if (__builtin_mul_overflow(n, ret->shape[i], &n)) {
                        snprintf(err, err_size, "input %s has more elements than fit in 64 bits", name);
                        return -E2BIG;
                }
        }
        if (!ret->data || ret->n_elements != n || ret->size != n * sizeof(float)) {
                snprintf(err, err_size, "input %s is an empty or inconsistent tensor", name);
                return -EINVAL;
        }
        return 1;
}

/* An optional int in [min, max], def when absent. */
static int input_int(const struct swarm_values *inputs, const char *name, int64_t min, int64_t max, int64_t def,
                     uint32_t *ret, char *err, size_t err_size) {
        int64_t v;
        int r;

        r = swarm_values_get_int(inputs, name, &v);
        if (r == -ENOENT)
                v = def;
        else if (r < 0) {
                snprintf(err, err_size, "input %s must be an int", name);
                return -EINVAL;
        }
        if (v < min || v > max) {
                snprintf(err, err_size, "input %s is %" PRId64 ", must be %" PRId64 "…%" PRId64, name, v, min, max);
                return -EINVAL;
        }
        *ret = (uint32_t) v;
        return 0;
}

/* Names the first element of a tensor that is not finite. */
static int check_finite(const char *name, const float *v, uint64_t n, char *err, size_t err_size) {
        if (conv_check_all_finite(v, n))
                return 0;
        for (uint64_t i = 0; i < n; i++)
                if (!isfinite(v[i])) {
                        snprintf(err, err_size, "input %s holds %s at element %" PRIu64, name,
                                 isnan(v[i]) ? "NaN" : v[i] > 0 ? "+Inf" : "-Inf", i);
                        break;
                }
        return -EINVAL;
}

static int job_parse(const struct conv_state *s, const struct swarm_values *inputs, bool executing,
                     struct conv_job *j, char *err, size_t err_size) {
        const char *precision;
        uint64_t bytes;
        int r;

        memset(j, 0, sizeof(*j));
        r = input_tensor(inputs, "x", 4, "n×c×h×w", false, &j->x, err, err_size);
        if (r >= 0)
                r = input_tensor(inputs, "w", 4, "k×(c/groups)×r×s", false, &j->w, err, err_size);
        if (r >= 0)
                r = input_tensor(inputs, "bias", 1, "k", true, &j->bias, err, err_size);
        if (r < 0)
                return r;
        j->has_bias = r > 0;

        r = input_int(inputs, "groups", 1, NN_CONV_DIM_MAX, 1, &j->p.groups, err, err_size);
        if (r >= 0)
                r = input_int(inputs, "stride", 1, NN_CONV_DIM_MAX, 1, &j->p.stride_h, err, err_size);
        if (r >= 0)
                r = input_int(inputs, "stride_w", 1, NN_CONV_DIM_MAX, j->p.stride_h, &j->p.stride_w, err, err_size);
        if (r >= 0)
                r = input_int(inputs, "padding", 0, NN_CONV_DIM_MAX, 0, &j->p.pad_h, err, err_size);
        if (r >= 0)
                r = input_int(inputs, "padding_w", 0, NN_CONV_DIM_MAX, j->p.pad_h, &j->p.pad_w, err, err_size);
        if (r >= 0)
                r = input_int(inputs, "dilation", 1, NN_CONV_DIM_MAX, 1, &j->p.dilation_h, err, err_size);
        if (r >= 0)
                r = input_int(inputs, "dilation_w", 1, NN_CONV_DIM_MAX, j->p.dilation_h, &j->p.dilation_w, err,
                              err_size);
        if (r < 0)
                return r;

        j->p.n = (uint32_t) j->x.shape[0];
        j->p.c = (uint32_t) j->x.shape[1];
        j->p.h = (uint32_t) j->x.shape[2];
        j->p.w = (uint32_t) j->x.shape[3];
        j->p.k = (uint32_t) j->w.shape[0];
        j->p.r = (uint32_t) j->w.shape[2];
        j->p.s = (uint32_t) j->w.shape[3];
        if (j->p.c % j->p.groups != 0 || j->w.shape[1] * j->p.groups != j->p.c) {
                snprintf(err, err_size, "x has %" PRIu32 " channels but w is %" PRIu64 "x%" PRIu64 "x%" PRIu64 "x%" PRIu64
                         " with groups %" PRIu32 ": w's second dimension must be channels / groups",
                         j->p.c, j->w.shape[0], j->w.shape[1], j->w.shape[2], j->w.shape[3], j->p.groups);
                return -EINVAL;
        }
        r = nn_conv2d_validate(&j->p, err, err_size);
        if (r < 0)
                return r;
        if (j->has_bias && j->bias.shape[0] != j->p.k) {
                snprintf(err, err_size, "bias has %" PRIu64 " elements but w has %" PRIu32 " output channels",
                         j->bias.shape[0], j->p.k);
                return -EINVAL;
        }
        if (nn_conv2d_dot_len(&j->p) > CONV_CHECK_DOT_MAX) {
                snprintf(err, err_size, "each output sums %" PRIu64 " products (channels/groups × kernel), over %"
                         PRIu64 ": float32 sums that long have no useful error bound and cannot be verified",
                         nn_conv2d_dot_len(&j->p), CONV_CHECK_DOT_MAX);
                return -E2BIG;
        }

        r = swarm_values_get_string(inputs, "precision", &precision);
        if (r == -ENOENT)
                precision = "fp32";
        else if (r < 0) {
                snprintf(err, err_size, "input precision must be a string: fp32 or tf32");
                return -EINVAL;
        }
        if (strcmp(precision, "tf32") == 0)
                j->p.allow_tf32 = true;
        else if (strcmp(precision, "fp32") != 0) {
                snprintf(err, err_size, "unknown precision \"%s\": use fp32 or tf32", precision);
                return -EINVAL;
        }
        if (executing && j->p.allow_tf32 && !s->on_gpu) {
                snprintf(err, err_size, "precision tf32 needs a GPU; this worker runs on CPU (use fp32)");
                return -EINVAL;
        }

        /* x, w, bias and y, each once on the device (CPU: copies of the
         * job's memory) and y once more in the result.  Each count is below
         * 2^40 (nn_conv2d_validate), so the sum fits. */
        /* Plus what the check holds: the projected weights (rounds per
         * group input), the signs, a report per tile of 32 pixels. */
        bytes = (nn_conv2d_x_elems(&j->p) + nn_conv2d_w_elems(&j->p) + j->p.k + 2 * nn_conv2d_y_elems(&j->p) +
                 (uint64_t) s->verify_rounds * (nn_conv2d_w_elems(&j->p) / (j->p.k / j->p.groups) + j->p.k)) *
                        sizeof(float) +
                (uint64_t) j->p.n * j->p.groups *
                        (((uint64_t) nn_conv2d_out_h(&j->p) * nn_conv2d_out_w(&j->p) + 31) / 32) * 64;
        if (bytes > s->memory_budget) {
                snprintf(err, err_size, "x (%" PRIu32 "x%" PRIu32 "x%" PRIu32 "x%" PRIu32 "), w and y (%" PRIu32
                         "x%" PRIu32 "x%" PRIu32 "x%" PRIu32 ") need %" PRIu64 " bytes, over this worker's memory "
                         "budget of %" PRIu64 " bytes", j->p.n, j->p.c, j->p.h, j->p.w, j->p.n, j->p.k,
                         nn_conv2d_out_h(&j->p), nn_conv2d_out_w(&j->p), bytes, s->memory_budget);
                return -E2BIG;
        }
        return 0;
}

/* ---- Running ---- */

/* One convolution on the backend: on a GPU the inputs written to it, the
 * op, the output read back into y (host memory).  Images one at a time, so
 * that a cancelled job stops between them. */
static int run_conv(struct conv_state *s, const struct nn_conv2d *p, const float *x, const float *w,
                    const float *bias, float *y, struct swarm_job *job) {
        struct nn_backend *be = s->be;
        struct nn_conv2d one = *p;
        uint64_t x_one = nn_conv2d_x_elems(p) / p->n, y_one = nn_conv2d_y_elems(p) / p->n;
        float *dx = NULL, *dw = NULL, *db = NULL, *dy = NULL;
        int r = 0;

        one.n = 1;
        if (!s->on_gpu) {
                /* The CPU backend's memory is the process's: it reads the
                 * job's tensors and writes the result where they are. */
                for (uint32_t i = 0; i < p->n; i++) {
                        if (job && swarm_job_cancelled(job)) {
                                swarm_job_set_error(job, "cancelled after %" PRIu32 " of %" PRIu32 " images", i, p->n);
                                return -ECANCELED;
                        }
                        be->ops->conv2d(be, &one, x + i * x_one, w, bias, y + i * y_one);
                }
                return be->ops->status(be);
        }
        dx = be->ops->alloc(be, x_one);
        dw = be->ops->alloc(be, nn_conv2d_w_elems(p));
        db = bias ? be->ops->alloc(be, p->k) : NULL;
        dy = be->ops->alloc(be, y_one);
        if (!dx || !dw || (bias && !db) || !dy) {
                r = -ENOMEM;
                if (job)
                        swarm_job_set_error(job, "cannot allocate the convolution's tensors on %s", be->ops->name);
                goto done;
        }
        be->ops->write(be, dw, w, nn_conv2d_w_elems(p));
        if (bias)
                be->ops->write(be, db, bias, p->k);
        for (uint32_t i = 0; i < p->n; i++) {
                if (job && swarm_job_cancelled(job)) {
                        swarm_job_set_error(job, "cancelled after %" PRIu32 " of %" PRIu32 " images", i, p->n);
                        r = -ECANCELED;
                        goto done;
                }
                be->ops->write(be, dx, x + i * x_one, x_one);
                be->ops->conv2d(be, &one, dx, dw, db, dy);
                be->ops->read(be, y + i * y_one, dy, y_one);
        }
        r = be->ops->status(be);
        if (r < 0 && job)
                swarm_job_set_error(job, "the convolution failed on %s: %s", be->ops->name, strerror(-r));
        if (r < 0) {
                /* A CUDA backend's errors are sticky: start afresh for the
                 * next job, or have the worker restarted if that fails. */
                char why[256];

                for (float **d = (float *[]) { dx, dw, db, dy }, **end = d + 4; d < end; d++)
                        if (*d)
                                be->ops->release(be, *d);
                dx = dw = db = dy = NULL;
                nn_backend_free(s->be);
                s->be = NULL;
                if (nn_cuda_backend_new(s->cuda_index, &s->be, why, sizeof(why)) < 0) {
                        swarm_log(LOG_ERR, "conv2d: the GPU cannot be used again (%s): exiting", why);
                        exit(EXIT_FAILURE);
                }
                return r;
        }
done:
        if (dx)
                be->ops->release(be, dx);
        if (dw)
                be->ops->release(be, dw);
        if (db)
                be->ops->release(be, db);
        if (dy)
                be->ops->release(be, dy);
        return r;
}

static double now_seconds(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

/* FLOP/s of a mid-sized 3×3 convolution, run for about BENCHMARK_MS. */
static int benchmark(struct conv_state *s) {
        const struct nn_conv2d p = {
                .n = 1, .c = 64, .h = 32, .w = 32, .k = 64, .r = 3, .s = 3, .stride_h = 1, .stride_w = 1,
                .pad_h = 1, .pad_w = 1, .dilation_h = 1, .dilation_w = 1, .groups = 1,
        };
        uint64_t nx = nn_conv2d_x_elems(&p), nw = nn_conv2d_w_elems(&p), ny = nn_conv2d_y_elems(&p);
        float *x = calloc(nx, sizeof(float)), *w = calloc(nw, sizeof(float)), *y = malloc(ny * sizeof(float));
        double start, elapsed = 0;
        unsigned runs = 0;
        int r = 0;

        if (!x || !w || !y) {
                r = -ENOMEM;
                goto done;
        }
        for (uint64_t i = 0; i < nx; i++)
                x[i] = (float) ((i * 7919) % 101) / 101.0f - 0.5f;
        for (uint64_t i = 0; i < nw; i++)
                w[i] = (float) ((i * 104729) % 97) / 97.0f - 0.5f;
        /* The first run chooses the algorithm (cuDNN) and warms caches. */
        r = run_conv(s, &p, x, w, NULL, y, NULL);
        start = now_seconds();
        while (r >= 0 && elapsed < BENCHMARK_MS / 1000.0) {
                r = run_conv(s, &p, x, w, NULL, y, NULL);
                runs++;
                elapsed = now_seconds() - start;
        }
        if (r >= 0)
                s->throughput = nn_conv2d_flops(&p) * runs / (elapsed > 0 ? elapsed : 1e-9);
done:
        free(x);
        free(w);
        free(y);
        return r;
}

/* ---- Callbacks ---- */

static int conv_init(const struct swarm_values *config, void **ret) {
        struct conv_state *s;
        char why[512] = "";
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        r = config_parse(config, s);
        if (r < 0)
                goto fail;

        if (s->device != CONV_DEVICE_CPU) {
                r = nn_cuda_backend_new(s->cuda_index, &s->be, why, sizeof(why));
                if (r < 0 && s->device == CONV_DEVICE_CUDA) {
                        swarm_log(LOG_ERR, "conv2d: device cuda:%d requested but unusable: %s", s->cuda_index, why);
                        r = r == -ENOMEM ? r : -ENODEV;
                        goto fail;
                }
                if (r < 0)
                        swarm_log(LOG_INFO, "conv2d: no CUDA device (%s); using OpenBLAS", why);
                s->on_gpu = r >= 0;
        }
        if (!s->be) {
                r = nn_cpu_backend_new((unsigned) s->threads, &s->be);
                if (r < 0) {
                        swarm_log(LOG_ERR, "conv2d: cannot start the CPU backend: %s", strerror(-r));
                        goto fail;
                }
        }
        /* Verification runs on the CPU whatever the device. */
        s->pool = nn_pool_new(s->threads > 0 ? (unsigned) s->threads : cpus > 0 ? (unsigned) cpus : 1);
        if (!s->pool) {
                r = -errno;
                goto fail;
        }

        r = benchmark(s);
        if (r < 0) {
                swarm_log(LOG_ERR, "conv2d: benchmark on %s failed: %s", s->be->ops->name, strerror(-r));
                goto fail;
        }
        swarm_log(LOG_INFO, "conv2d: %s (%s), %.1f GFLOP/s", s->be->ops->name, s->be->ops->libraries(s->be),
                  s->throughput / 1e9);
        *ret = s;
        return 0;
fail:
        state_free(s);
        return r;
}

static void conv_fini(void *state) {
        state_free(state);
}

static int conv_advertise(void *state, struct swarm_values *advert) {
        struct conv_state *s = state;
        int r;

        r = swarm_values_set_string(advert, "device", s->be->ops->name);
        if (r >= 0)
                r = swarm_values_set_string(advert, "libraries", s->be->ops->libraries(s->be));
        if (r >= 0)
                r = swarm_values_set_string(advert, "unit", "flop");
        if (r >= 0)
                r = swarm_values_set_int(advert, "throughput", s->throughput >= 1 ? llround(s->throughput) : 1);
        if (r >= 0)
                r = swarm_values_set_string(advert, "precisions", s->on_gpu ? "fp32,tf32" : "fp32");
        if (r >= 0)
                r = swarm_values_set_int(advert, "verify-rounds", s->verify_rounds);
        if (r >= 0)
                r = swarm_values_set_int(advert, "memory-budget",
                                         s->memory_budget > INT64_MAX ? INT64_MAX : (int64_t) s->memory_budget);
        if (r >= 0)
                r = swarm_values_set_int(advert, "price",
                                         s->price_per_gflop > INT64_MAX ? INT64_MAX : (int64_t) s->price_per_gflop);
        if (r >= 0)
                r = swarm_values_set_string(advert, "price-unit", "GFLOP");
        return r < 0 ? r : 0;
}

static int conv_price(void *state, const struct swarm_values *inputs, uint64_t *ret) {
        struct conv_state *s = state;
        char err[ERROR_MAX];
        struct conv_job j;
        double cost;
        int r;

        r = job_parse(s, inputs, true, &j, err, sizeof(err));
        if (r < 0) {
                swarm_job_set_error(NULL, "%s", err);
                return r;
        }
        /* FLOPs below 2^82 and a rate below 2^30: a double's rounding is
         * far below one credit at any size that fits in memory. */
        cost = ceil(nn_conv2d_flops(&j.p) / 1e9 * (double) s->price_per_gflop);
        *ret = cost < 1 ? 1 : cost >= 0x1p64 ? UINT64_MAX : (uint64_t) cost;
        return 0;
}

static int conv_execute(void *state, struct swarm_job *job) {
        struct conv_state *s = state;
        char err[ERROR_MAX];
        struct swarm_tensor y;
        struct conv_job j;
        int r;

        r = job_parse(s, swarm_job_inputs(job), true, &j, err, sizeof(err));
        if (r >= 0)
                r = check_finite("x", j.x.data, j.x.n_elements, err, sizeof(err));
        if (r >= 0)
                r = check_finite("w", j.w.data, j.w.n_elements, err, sizeof(err));
        if (r >= 0 && j.has_bias)
                r = check_finite("bias", j.bias.data, j.bias.n_elements, err, sizeof(err));
        if (r >= 0 && conv_check_inputs_in_range(&j.p, j.x.data, j.w.data, j.has_bias ? j.bias.data : NULL) < 0) {
                snprintf(err, sizeof(err), "x, w and bias are too large to verify in float (their products could "
                         "overflow): scale them down");
                r = -EINVAL;
        }
        if (r < 0) {
                swarm_job_set_error(job, "%s", err);
                return r;
        }

        r = swarm_values_add_tensor(swarm_job_outputs(job), "y", SWARM_DTYPE_F32, 4,
                                    (const uint64_t[]) { j.p.n, j.p.k, nn_conv2d_out_h(&j.p), nn_conv2d_out_w(&j.p) },
                                    &y);
        if (r < 0) {
                swarm_job_set_error(job, "cannot allocate y (%" PRIu64 " f32): %s", nn_conv2d_y_elems(&j.p),
                                    strerror(-r));
                return r;
        }
        r = run_conv(s, &j.p, j.x.data, j.w.data, j.has_bias ? j.bias.data : NULL, y.data, job);
        if (r < 0)
                return r;
        if (!conv_check_all_finite(y.data, y.n_elements)) {
                swarm_job_set_error(job, "the convolution overflows float32 (y holds an infinity)");
                return -ERANGE;
        }
        return 0;
}

static int conv_verify(void *state, struct swarm_job *job) {
        struct conv_state *s = state;
        struct conv_check_report report;
        char err[ERROR_MAX];
        struct swarm_tensor y;
        struct conv_job j;
        int r;

        r = job_parse(s, swarm_job_inputs(job), false, &j, err, sizeof(err));
        if (r < 0) {
                swarm_job_set_error(job, "%s", err);
                return r;
        }
        r = swarm_values_get_tensor(swarm_job_outputs(job), "y", &y);
        if (r < 0) {
                swarm_job_set_error(job, "the result has no tensor y");
                return -EBADMSG;
        }
        if (y.dtype != SWARM_DTYPE_F32 || y.ndim != 4 || y.shape[0] != j.p.n || y.shape[1] != j.p.k ||
            y.shape[2] != nn_conv2d_out_h(&j.p) || y.shape[3] != nn_conv2d_out_w(&j.p) || !y.data ||
            y.size != nn_conv2d_y_elems(&j.p) * sizeof(float)) {
                swarm_job_set_error(job, "the result's y is not an f32 tensor of %" PRIu32 "x%" PRIu32 "x%" PRIu32
                                    "x%" PRIu32, j.p.n, j.p.k, nn_conv2d_out_h(&j.p), nn_conv2d_out_w(&j.p));
                return -EBADMSG;
        }

        r = conv_check(&j.p, j.x.data, j.w.data, j.has_bias ? j.bias.data : NULL, y.data,
                       &(struct conv_check_params) {
                               /* With one output channel per group uᵀ·y is ±y:
                                * one round compares every output exactly. */
                               .rounds = j.p.k == j.p.groups ? 1 : s->verify_rounds,
                               /* TF32 may truncate rather than round: 10 bits. */
                               .input_roundoff = j.p.allow_tf32 ? 0x1p-10 : 0,
                               .pool = s->pool,
                       }, &report);
        if (r == -ERANGE) {
                swarm_job_set_error(job, "x, w and bias are too large to verify in float (their products could "
                                    "overflow)");
                return -EINVAL;
        }
        if (r == -EDOM) {
                r = check_finite("x", j.x.data, j.x.n_elements, err, sizeof(err));
                if (r >= 0)
                        r = check_finite("w", j.w.data, j.w.n_elements, err, sizeof(err));
                if (r >= 0 && j.has_bias)
                        r = check_finite("bias", j.bias.data, j.bias.n_elements, err, sizeof(err));
                swarm_job_set_error(job, "%s", r < 0 ? err : "x, w or bias is not finite");
                return -EINVAL;
        }
        if (r == -EBADMSG) {
                if (report.verdict == CONV_CHECK_NOT_FINITE)
                        swarm_job_set_error(job, "the result's y(%" PRIu32 ", %" PRIu32 ", pixel %" PRIu64 ") is %s",
                                            report.image, report.channel, report.pixel,
                                            isnan(report.rhs) ? "NaN" : "infinite");
                else if (report.verdict == CONV_CHECK_TOO_LARGE)
                        swarm_job_set_error(job, "the result's y(%" PRIu32 ", %" PRIu32 ", pixel %" PRIu64 ") is %.9g, "
                                            "larger than any output of these inputs (at most %.9g)", report.image,
                                            report.channel, report.pixel, report.rhs, report.tolerance);
                else
                        swarm_job_set_error(job, "image %" PRIu32 ", group %" PRIu32 ", pixel %" PRIu64 " (row %" PRIu64
                                            ", column %" PRIu64 "), round %u of %u: uᵀ·y = %.9g but (uᵀ·w)·x + "
                                            "uᵀ·bias = %.9g, off by %.3g, beyond the tolerance %.3g",
                                            report.image, report.group, report.pixel,
                                            report.pixel / nn_conv2d_out_w(&j.p), report.pixel % nn_conv2d_out_w(&j.p),
                                            report.round + 1, s->verify_rounds, report.lhs, report.rhs,
                                            fabs(report.lhs - report.rhs), report.tolerance);
                return -EBADMSG;
        }
        if (r < 0) {
                swarm_job_set_error(job, "verification could not run: %s", strerror(-r));
                return r;
        }
        return 0;
}

static const struct swarm_param conv_inputs[] = {
        { "x", SWARM_VALUE_TENSOR, SWARM_DTYPE_F32, 4, "n×c×h×w", 0, "the input, NCHW" },
        { "w", SWARM_VALUE_TENSOR, SWARM_DTYPE_F32, 4, "k×(c/groups)×r×s", 0, "the filters" },
        { "bias", SWARM_VALUE_TENSOR, SWARM_DTYPE_F32, 1, "k", SWARM_PARAM_OPTIONAL, "added to each output channel" },
        { "stride", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "the step (height and width), default 1" },
        { "stride_w", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "the width's step, default stride" },
        { "padding", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL,
          "zeros added on each side (height and width), default 0" },
        { "padding_w", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "the width's padding, default padding" },
        { "dilation", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL,
          "spacing of the kernel's taps (height and width), default 1" },
        { "dilation_w", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL, "the width's dilation, default dilation" },
        { "groups", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL,
          "channel groups, default 1 (c for a depthwise convolution)" },
        { "precision", SWARM_VALUE_STRING, 0, 0, NULL, SWARM_PARAM_OPTIONAL,
          "fp32 (default) or tf32 (a GPU's tensor cores)" },
        {}
};

static const struct swarm_param conv_outputs[] = {
        { "y", SWARM_VALUE_TENSOR, SWARM_DTYPE_F32, 4, "n×k×oh×ow", 0, "the convolution, NCHW" },
        {}
};

static const struct swarm_skill skill = {
        .abi_version = SWARM_SKILL_ABI_VERSION,
        .struct_size = sizeof(struct swarm_skill),
        .name = "conv2d",
        .version = "1.0.0",
        .description = "2-D convolution of f32 NCHW tensors (OpenBLAS or cuDNN), verified by a Freivalds check",
        .init = conv_init,
        .fini = conv_fini,
        .advertise = conv_advertise,
        .price = conv_price,
        .execute = conv_execute,
        /* The check needs only the inputs and y: no proof. */
        .prove = NULL,
        .verify = conv_verify,
        .inputs = conv_inputs,
        .outputs = conv_outputs,
};

SWARM_SKILL_EXPORT const struct swarm_skill *swarm_skill_entry(void) {
        return &skill;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Loads the built "gemm" skill the way swarm-worker does (dlopen, entry
 * symbol, descriptor checks) and drives its callbacks through the SDK's job
 * API: products against a double-precision reference, Freivalds' verify
 * against corrupted results, price, validation, config and cancellation.
 * The GPU cases skip themselves where no CUDA device is present. */

#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "swarm-host.h"

/* The tolerance's constants, so that the corruption sizes below follow the
 * documented bound rather than a copy of it. */
#include "../plugins/gemm/freivalds.h"

static void *module;
static const struct swarm_skill *skill;
static void *state;

static void load_module(void) {
        char path[PATH_MAX];
        const char *dir = getenv("SKILL_BUILD_DIR");
        swarm_skill_entry_fn entry;

        cr_assert_not_null(dir, "SKILL_BUILD_DIR is not set (run through meson test)");
        snprintf(path, sizeof(path), "%s/gemm/gemm.so", dir);
        module = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        cr_assert_not_null(module, "dlopen %s: %s", path, dlerror());
        entry = (swarm_skill_entry_fn) dlsym(module, SWARM_SKILL_ENTRY_SYMBOL);
        cr_assert_not_null(entry, "%s has no %s", path, SWARM_SKILL_ENTRY_SYMBOL);
        skill = entry();
        cr_assert_not_null(skill);
}

static void setup(void) {
        load_module();
        state = NULL;
}

static void teardown(void) {
        if (state)
                skill->fini(state);
        state = NULL;
        if (module)
                dlclose(module);
        module = NULL;
}

TestSuite(gemm, .init = setup, .fini = teardown, .timeout = 120);

/* ---- Helpers ---- */

/* A config pinned to the CPU (so that results do not depend on the
 * machine), plus whatever the caller adds. */
static struct swarm_values *config_cpu(void) {
        struct swarm_values *c = swarm_values_new();

        cr_assert_not_null(c);
        cr_assert_eq(swarm_values_set_string(c, "device", "cpu"), 0);
        return c;
}

static int try_start(struct swarm_values *config) {
        int r = skill->init(config, &state);

        swarm_values_free(config);
        if (r < 0)
                state = NULL;
        return r;
}

static void start(struct swarm_values *config) {
        cr_assert_eq(try_start(config), 0, "init failed");
}

static uint64_t rng_state;

static uint64_t rng_next(void) {
        /* splitmix64: reproducible runs. */
        uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static float rng_float(void) {
        return (float) ((double) (rng_next() >> 11) * 0x1p-52 - 1.0);
}

static uint64_t rng_below(uint64_t n) {
        return rng_next() % n;
}

static float *add_matrix(struct swarm_values *v, const char *name, uint64_t rows, uint64_t cols) {
        struct swarm_tensor t;

        cr_assert_eq(swarm_values_add_tensor(v, name, SWARM_DTYPE_F32, 2, (const uint64_t[]) { rows, cols }, &t), 0);
        for (uint64_t i = 0; i < rows * cols; i++)
                ((float *) t.data)[i] = rng_float();
        return t.data;
}

/* Inputs a (m×k) and b (k×n), uniform in [-1, 1). */
static struct swarm_values *make_inputs(uint64_t m, uint64_t k, uint64_t n, uint64_t seed) {
        struct swarm_values *in = swarm_values_new();

        cr_assert_not_null(in);
        rng_state = seed;
        add_matrix(in, "a", m, k);
        add_matrix(in, "b", k, n);
        return in;
}

static float *tensor_data(const struct swarm_values *v, const char *name, uint64_t *rows, uint64_t *cols) {
        struct swarm_tensor t;

        cr_assert_eq(swarm_values_get_tensor(v, name, &t), 0, "no tensor %s", name);
        cr_assert_eq(t.ndim, 2);
        if (rows)
                *rows = t.shape[0];
        if (cols)
                *cols = t.shape[1];
        return t.data;
}

/* ref = A·B and absref = |A|·|B| in double. */
static void reference(const float *a, const float *b, uint64_t m, uint64_t k, uint64_t n,
                      double *ref, double *absref) {
        for (uint64_t i = 0; i < m; i++)
                for (uint64_t j = 0; j < n; j++) {
                        double s = 0, t = 0;

                        for (uint64_t l = 0; l < k; l++) {
                                s += (double) a[i * k + l] * b[l * n + j];
                                t += fabs((double) a[i * k + l] * b[l * n + j]);
                        }
                        ref[i * n + j] = s;
                        if (absref)
                                absref[i * n + j] = t;
                }
}

/* The most the check's tolerance for row i may be (freivalds.h): the
 * worst-case honest bound T_i plus the check's own rounding, up to
 * σ·ρ·(h_i + Σ_j |c_ij|)/FREIVALDS_FLOAT_SHARE, with slack for the sums'
 * rounding and subnormals.  c is the honest row. */
static double row_bound(const float *a, const float *b, const float *c, uint64_t k, uint64_t n, uint64_t i,
                        double input_roundoff) {
        double ku = (double) (k + 2) * FREIVALDS_U, gamma = ku / (1 - ku);
        double rho = 2 * input_roundoff + input_roundoff * input_roundoff +
                     gamma * (1 + input_roundoff) * (1 + input_roundoff);
        double h = 0, c_abs = 0, a_norm2 = 0, worst, check;

        for (uint64_t l = 0; l < k; l++) {
                double g = 0;

                for (uint64_t j = 0; j < n; j++)
                        g += fabs(b[l * n + j]);
                h += fabs(a[i * k + l]) * g;
                a_norm2 += (double) a[i * k + l] * a[i * k + l];
        }
        for (uint64_t j = 0; j < n; j++)
                c_abs += fabs(c[i * n + j]);
        worst = FREIVALDS_SIGMA * rho * h;
        check = FREIVALDS_SIGMA * rho * (h + c_abs) / FREIVALDS_FLOAT_SHARE;
        /* √(k·‖a_i‖²) ≤ (k·‖a_i‖² + 1)/2, and no libm here. */
        return (worst + check) * (1 + 0x1p-8) + 2 * FLT_MIN * (((double) k * a_norm2 + 1) / 2 + (double) (k + n + 2));
}

static int run_execute(struct swarm_job *job, const struct swarm_values *inputs, const volatile uint32_t *cancel,
                       uint64_t deadline) {
        cr_assert_eq(swarm_job_init(job, inputs, deadline, cancel, NULL, NULL), 0);
        return skill->execute(state, job);
}

/* A job whose outputs hold c as given (NULL: no c), for verify(). */
static void job_with_result(struct swarm_job *job, const struct swarm_values *inputs, enum swarm_dtype dtype,
                            uint32_t ndim, const uint64_t *shape, const float *c) {
        struct swarm_tensor t;

        cr_assert_eq(swarm_job_init(job, inputs, 0, NULL, NULL, NULL), 0);
        if (ndim == 0)
                return;
        cr_assert_eq(swarm_values_add_tensor(swarm_job_outputs(job), "c", dtype, ndim, shape, &t), 0);
        if (c)
                memcpy(t.data, c, t.size);
}

static void expect_error(const struct swarm_job *job, const char *needle) {
        const char *e = swarm_job_error(job);

        cr_assert_not_null(e, "no error message, expected one with \"%s\"", needle);
        cr_assert_not_null(strstr(e, needle), "error \"%s\" does not mention \"%s\"", e, needle);
}

static int execute_inputs(struct swarm_values *in, char *error, size_t error_size) {
        struct swarm_job job;
        int r;

        r = run_execute(&job, in, NULL, 0);
        snprintf(error, error_size, "%s", swarm_job_error(&job) ?: "");
        swarm_job_done(&job);
        return r;
}

static bool have_cuda_worker(void) {
        struct swarm_values *advert = swarm_values_new();
        const char *device;
        bool cuda;

        cr_assert_eq(skill->advertise(state, advert), 0);
        cr_assert_eq(swarm_values_get_string(advert, "device", &device), 0);
        cuda = strncmp(device, "cuda:", 5) == 0;
        swarm_values_free(advert);
        return cuda;
}

/* ---- Descriptor, config, advert ---- */

Test(gemm, descriptor_is_abi_1_and_complete) {
        cr_assert_eq(skill->abi_version, SWARM_SKILL_ABI_VERSION);
        cr_assert_eq(SWARM_SKILL_ABI_MAJOR_OF(skill->abi_version), SWARM_SKILL_ABI_MAJOR);
        cr_assert_eq(skill->struct_size, sizeof(struct swarm_skill));
        cr_assert_str_eq(skill->name, "gemm");
        cr_assert_not_null(skill->version);
        cr_assert_not_null(skill->description);
        cr_assert_not_null(skill->init);
        cr_assert_not_null(skill->fini);
        cr_assert_not_null(skill->advertise);
        cr_assert_not_null(skill->price);
        cr_assert_not_null(skill->execute);
        cr_assert_not_null(skill->verify);
        for (size_t i = 0; i < sizeof(skill->reserved) / sizeof(skill->reserved[0]); i++)
                cr_assert_null(skill->reserved[i]);
}

Test(gemm, module_exports_only_the_entry_point) {
        cr_assert_null(dlsym(module, "freivalds_check"));
        cr_assert_null(dlsym(module, "gemm_cpu_run"));
}

Test(gemm, advertises_device_memory_and_measured_throughput) {
        struct swarm_values *advert = swarm_values_new();
        const char *s;
        int64_t i;

        start(config_cpu());
        cr_assert_eq(skill->advertise(state, advert), 0);
        cr_assert_eq(swarm_values_get_string(advert, "device", &s), 0);
        cr_assert_eq(strncmp(s, "cpu: ", 5), 0, "device is \"%s\"", s);
        cr_assert_not_null(strstr(s, " thread"), "device is \"%s\"", s);
        cr_assert_eq(swarm_values_get_string(advert, "unit", &s), 0);
        cr_assert_str_eq(s, "flop");
        cr_assert_eq(swarm_values_get_int(advert, "throughput", &i), 0);
        cr_assert_gt(i, 0);
        cr_log_info("measured throughput: %.2f GFLOP/s", (double) i / 1e9);
        cr_assert_eq(swarm_values_get_int(advert, "memory", &i), 0);
        cr_assert_gt(i, 0);
        cr_assert_eq(swarm_values_get_string(advert, "precisions", &s), 0);
        cr_assert_str_eq(s, "fp32");
        cr_assert_eq(swarm_values_get_int(advert, "verify-rounds", &i), 0);
        cr_assert_eq(i, 20);
        swarm_values_free(advert);
}

Test(gemm, init_accepts_every_documented_key) {
        struct swarm_values *c = config_cpu(), *advert = swarm_values_new();
        int64_t i;

        cr_assert_eq(swarm_values_set_int(c, "verify-rounds", 7), 0);
        cr_assert_eq(swarm_values_set_int(c, "memory-budget", 1 << 20), 0);
        cr_assert_eq(swarm_values_set_int(c, "threads", 1), 0);
        cr_assert_eq(swarm_values_set_int(c, "price-per-gflop", 5), 0);
        start(c);
        cr_assert_eq(skill->advertise(state, advert), 0);
        cr_assert_eq(swarm_values_get_int(advert, "verify-rounds", &i), 0);
        cr_assert_eq(i, 7);
        cr_assert_eq(swarm_values_get_int(advert, "memory-budget", &i), 0);
        cr_assert_eq(i, 1 << 20);
        swarm_values_free(advert);
}

Test(gemm, init_refuses_bad_config_values) {
        static const struct {
                const char *key;
                int64_t value;
        } bad_ints[] = {
                { "verify-rounds", 0 },
                { "verify-rounds", 1000 },
                { "verify-rounds", -1 },
                { "memory-budget", 0 },
                { "threads", -2 },
                { "price-per-gflop", -1 },
        };
        static const char *const bad_devices[] = { "tpu", "cuda:", "cuda:x", "cuda:-1", "" };
        struct swarm_values *c;

        for (size_t i = 0; i < sizeof(bad_ints) / sizeof(bad_ints[0]); i++) {
                c = config_cpu();
                cr_assert_eq(swarm_values_set_int(c, bad_ints[i].key, bad_ints[i].value), 0);
                cr_assert_eq(try_start(c), -EINVAL, "%s = %lld accepted", bad_ints[i].key,
                             (long long) bad_ints[i].value);
        }

        c = config_cpu();
        cr_assert_eq(swarm_values_set_string(c, "verify-rounds", "20"), 0);
        cr_assert_eq(try_start(c), -EINVAL);

        for (size_t i = 0; i < sizeof(bad_devices) / sizeof(bad_devices[0]); i++) {
                c = swarm_values_new();
                cr_assert_eq(swarm_values_set_string(c, "device", bad_devices[i]), 0);
                cr_assert_eq(try_start(c), -EINVAL, "device \"%s\" accepted", bad_devices[i]);
        }

        c = swarm_values_new();
        cr_assert_eq(swarm_values_set_int(c, "device", 0), 0);
        cr_assert_eq(try_start(c), -EINVAL);
}

Test(gemm, init_requiring_cuda_fails_without_a_device) {
        struct swarm_values *c = swarm_values_new();
        int r;

        cr_assert_eq(swarm_values_set_string(c, "device", "cuda"), 0);
        r = try_start(c);
        if (r == 0)
                cr_skip_test("a CUDA device is present");
        cr_assert_eq(r, -ENODEV);
}

Test(gemm, auto_device_falls_back_to_openblas) {
        start(swarm_values_new());
        if (have_cuda_worker())
                cr_skip_test("a CUDA device is present");
}

/* ---- Products ---- */

static void check_product(uint64_t m, uint64_t k, uint64_t n, uint64_t seed) {
        struct swarm_values *in = make_inputs(m, k, n, seed);
        const float *a = tensor_data(in, "a", NULL, NULL), *b = tensor_data(in, "b", NULL, NULL);
        double *ref = calloc(m * n, sizeof(double)), *absref = calloc(m * n, sizeof(double));
        uint64_t rows, cols;
        struct swarm_job job;
        const float *c;

        cr_assert(ref && absref);
        cr_assert_eq(run_execute(&job, in, NULL, 0), 0, "%llux%llux%llu: %s", (unsigned long long) m,
                     (unsigned long long) k, (unsigned long long) n, swarm_job_error(&job));
        c = tensor_data(swarm_job_outputs(&job), "c", &rows, &cols);
        cr_assert_eq(rows, m);
        cr_assert_eq(cols, n);

        reference(a, b, m, k, n, ref, absref);
        for (uint64_t i = 0; i < m * n; i++) {
                double bound = 2.0 * (double) (k + 2) * FREIVALDS_U * absref[i] + 1e-30;

                cr_assert_leq(fabs(c[i] - ref[i]), bound, "%llux%llux%llu: c[%llu] = %.9g, expected %.9g",
                              (unsigned long long) m, (unsigned long long) k, (unsigned long long) n,
                              (unsigned long long) i, c[i], ref[i]);
        }
        cr_assert_eq(skill->verify(state, &job), 0, "verify rejects a correct result: %s", swarm_job_error(&job));

        swarm_job_done(&job);
        swarm_values_free(in);
        free(ref);
        free(absref);
}

Test(gemm, product_matches_double_reference) {
        static const uint64_t shapes[][3] = {
                { 1, 1, 1 },
                { 1, 7, 1 },
                { 3, 1, 5 },
                { 2, 3, 4 },
                { 65, 33, 17 },
                { 17, 65, 33 },
                { 64, 64, 64 },
                { 100, 1, 100 },
                { 1, 300, 1 },
                { 129, 257, 31 },
        };

        start(config_cpu());
        for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
                check_product(shapes[i][0], shapes[i][1], shapes[i][2], 1000 + i);
}

Test(gemm, product_of_known_matrices_is_exact) {
        struct swarm_values *in = swarm_values_new();
        static const float a[] = { 1, 2, 3, 4, 5, 6 };                 /* 2×3 */
        static const float b[] = { 7, 8, 9, 10, 11, 12 };              /* 3×2 */
        static const float expected[] = { 58, 64, 139, 154 };
        struct swarm_tensor t;
        struct swarm_job job;
        const float *c;

        start(config_cpu());
        cr_assert_eq(swarm_values_add_tensor(in, "a", SWARM_DTYPE_F32, 2, (const uint64_t[]) { 2, 3 }, &t), 0);
        memcpy(t.data, a, sizeof(a));
        cr_assert_eq(swarm_values_add_tensor(in, "b", SWARM_DTYPE_F32, 2, (const uint64_t[]) { 3, 2 }, &t), 0);
        memcpy(t.data, b, sizeof(b));
        cr_assert_eq(swarm_values_set_string(in, "precision", "fp32"), 0);

        cr_assert_eq(run_execute(&job, in, NULL, 0), 0);
        c = tensor_data(swarm_job_outputs(&job), "c", NULL, NULL);
        cr_assert_arr_eq(c, expected, sizeof(expected));
        cr_assert_eq(skill->verify(state, &job), 0);
        swarm_job_done(&job);
        swarm_values_free(in);
}

Test(gemm, execute_works_with_one_blas_thread) {
        struct swarm_values *c = config_cpu();

        cr_assert_eq(swarm_values_set_int(c, "threads", 1), 0);
        start(c);
        check_product(70, 50, 90, 7);
}

/* ---- Verify ---- */

/* One element at a random position, off by 2–4 times the largest row
 * tolerance the check may use (so always caught): every one of 250 trials
 * must fail. */
Test(gemm, verify_rejects_any_single_corrupted_element) {
        static const uint64_t shapes[][3] = {
                { 48, 40, 56 },
                { 1, 64, 80 },
                { 90, 1, 30 },
                { 33, 129, 17 },
                { 300, 200, 150 },      /* several panels in the check */
        };
        unsigned rejected = 0;

        start(config_cpu());
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
                uint64_t m = shapes[s][0], k = shapes[s][1], n = shapes[s][2];
                struct swarm_values *in = make_inputs(m, k, n, 42 + s);
                const float *a = tensor_data(in, "a", NULL, NULL), *b = tensor_data(in, "b", NULL, NULL);
                struct swarm_job job;
                float *c;

                cr_assert_eq(run_execute(&job, in, NULL, 0), 0);
                c = tensor_data(swarm_job_outputs(&job), "c", NULL, NULL);
                cr_assert_eq(skill->verify(state, &job), 0);

                rng_state = 4242 + s;
                for (unsigned trial = 0; trial < 50; trial++) {
                        uint64_t i = rng_below(m), j = rng_below(n);
                        double bound = row_bound(a, b, c, k, n, i, 0), factor = 2.0 + 2.0 * (rng_float() + 1) / 2;
                        float saved = c[i * n + j];
                        char row[64];
                        int r;

                        c[i * n + j] = (float) (saved + (rng_next() & 1 ? factor : -factor) * bound);
                        cr_assert_geq(fabs((double) c[i * n + j] - saved), 2.0 * bound);
                        r = skill->verify(state, &job);
                        cr_assert_eq(r, -EBADMSG, "shape %zu trial %u: c(%llu, %llu) off by %g (row bound %g) "
                                     "accepted", s, trial, (unsigned long long) i, (unsigned long long) j,
                                     (double) c[i * n + j] - saved, bound);
                        snprintf(row, sizeof(row), "row %llu,", (unsigned long long) i);
                        expect_error(&job, row);
                        rejected++;
                        c[i * n + j] = saved;
                }
                cr_assert_eq(skill->verify(state, &job), 0);
                swarm_job_done(&job);
                swarm_values_free(in);
        }
        cr_assert_eq(rejected, 250);
}

/* A 1 % error on an element with |c| ≥ 2 of a 64³ product of values in
 * [-1, 1) is about twice the tolerance (≈ 10^-2 there, the float check's
 * own rounding included) and caught every time.  At 256³ the tolerance is
 * ≈ 0.5, about 10 % of a typical element, and smaller errors pass: the
 * price of a bound that never rejects an honest result (see freivalds.c). */
Test(gemm, verify_rejects_one_percent_error_on_small_products) {
        const uint64_t m = 64, k = 64, n = 64;
        struct swarm_values *in = make_inputs(m, k, n, 99);
        struct swarm_job job;
        unsigned tried = 0;
        float *c;

        start(config_cpu());
        cr_assert_eq(run_execute(&job, in, NULL, 0), 0);
        c = tensor_data(swarm_job_outputs(&job), "c", NULL, NULL);
        for (uint64_t e = 0; e < m * n && tried < 50; e += 37) {
                float saved = c[e];

                if (fabs(saved) < 2)
                        continue;
                c[e] = saved * 1.01f;
                cr_assert_eq(skill->verify(state, &job), -EBADMSG, "c[%llu] = %g scaled by 1.01 accepted",
                             (unsigned long long) e, saved);
                c[e] = saved;
                tried++;
        }
        cr_assert_gt(tried, 10);
        swarm_job_done(&job);
        swarm_values_free(in);
}

/* The worst rounding an honest float32 GEMM may make, on every element and
 * all in the same direction, still passes; also where the check's float
 * sums run over more than one run of a lane (k or n above 1024). */
Test(gemm, verify_accepts_worst_case_honest_rounding) {
        static const uint64_t shapes[][3] = {
                { 40, 96, 50 },
                { 24, 1500, 40 },
                { 16, 1200, 1100 },
        };

        start(config_cpu());
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
                uint64_t m = shapes[s][0], k = shapes[s][1], n = shapes[s][2];
                struct swarm_values *in = make_inputs(m, k, n, 5 + s);
                const float *a = tensor_data(in, "a", NULL, NULL), *b = tensor_data(in, "b", NULL, NULL);
                double *ref = calloc(m * n, sizeof(double)), *absref = calloc(m * n, sizeof(double));
                double ku = (double) k * FREIVALDS_U, gamma = ku / (1 - ku);
                float *c = calloc(m * n, sizeof(float));
                struct swarm_job job;

                cr_assert(ref && absref && c);
                reference(a, b, m, k, n, ref, absref);
                for (unsigned sign = 0; sign < 2; sign++) {
                        for (uint64_t i = 0; i < m * n; i++)
                                c[i] = (float) (ref[i] + (sign ? -1 : 1) * gamma * absref[i]);
                        job_with_result(&job, in, SWARM_DTYPE_F32, 2, (const uint64_t[]) { m, n }, c);
                        for (unsigned repeat = 0; repeat < 20; repeat++)
                                cr_assert_eq(skill->verify(state, &job), 0, "%llux%llux%llu: %s",
                                             (unsigned long long) m, (unsigned long long) k,
                                             (unsigned long long) n, swarm_job_error(&job));
                        swarm_job_done(&job);
                }
                swarm_values_free(in);
                free(ref);
                free(absref);
                free(c);
        }
}

/* Emulates a bf16 GEMM: inputs rounded to bfloat16, exact products, float
 * result.  Accepted as precision bf16, rejected as fp32. */
static float round_to_bf16(float f) {
        uint32_t u;

        memcpy(&u, &f, sizeof(u));
        u = (u + 0x7fffu + ((u >> 16) & 1)) & 0xffff0000u;
        memcpy(&f, &u, sizeof(u));
        return f;
}

Test(gemm, verify_tolerance_follows_requested_precision) {
        const uint64_t m = 32, k = 64, n = 48;
        struct swarm_values *in = make_inputs(m, k, n, 77);
        const float *a = tensor_data(in, "a", NULL, NULL), *b = tensor_data(in, "b", NULL, NULL);
        float *a16 = malloc(m * k * sizeof(float)), *b16 = malloc(k * n * sizeof(float)), *c = malloc(m * n * sizeof(float));
        double *ref = calloc(m * n, sizeof(double));
        struct swarm_job job;

        cr_assert(a16 && b16 && c && ref);
        start(config_cpu());
        for (uint64_t i = 0; i < m * k; i++)
                a16[i] = round_to_bf16(a[i]);
        for (uint64_t i = 0; i < k * n; i++)
                b16[i] = round_to_bf16(b[i]);
        reference(a16, b16, m, k, n, ref, NULL);
        for (uint64_t i = 0; i < m * n; i++)
                c[i] = (float) ref[i];

        job_with_result(&job, in, SWARM_DTYPE_F32, 2, (const uint64_t[]) { m, n }, c);
        cr_assert_eq(skill->verify(state, &job), -EBADMSG, "a bf16 result passed as fp32");
        expect_error(&job, "fp32 tolerance");
        swarm_job_done(&job);

        cr_assert_eq(swarm_values_set_string(in, "precision", "bf16"), 0);
        job_with_result(&job, in, SWARM_DTYPE_F32, 2, (const uint64_t[]) { m, n }, c);
        cr_assert_eq(skill->verify(state, &job), 0, "%s", swarm_job_error(&job));
        swarm_job_done(&job);

        free(a16);
        free(b16);
        free(c);
        free(ref);
        swarm_values_free(in);
}

Test(gemm, verify_rejects_missing_misshapen_or_non_finite_c) {
        const uint64_t m = 6, k = 5, n = 4;
        struct swarm_values *in = make_inputs(m, k, n, 3);
        const float *a = tensor_data(in, "a", NULL, NULL), *b = tensor_data(in, "b", NULL, NULL);
        double ref[6 * 4];
        float c[6 * 4];
        struct swarm_job job;

        start(config_cpu());
        reference(a, b, m, k, n, ref, NULL);
        for (size_t i = 0; i < m * n; i++)
                c[i] = (float) ref[i];

        job_with_result(&job, in, SWARM_DTYPE_F32, 2, (const uint64_t[]) { m, n }, c);
        cr_assert_eq(skill->verify(state, &job), 0, "%s", swarm_job_error(&job));
        swarm_job_done(&job);

        job_with_result(&job, in, SWARM_DTYPE_F32, 0, NULL, NULL);
        cr_assert_eq(skill->verify(state, &job), -EBADMSG);
        expect_error(&job, "no output c");
        swarm_job_done(&job);

        job_with_result(&job, in, SWARM_DTYPE_F32, 2, (const uint64_t[]) { n, m }, c);
        cr_assert_eq(skill->verify(state, &job), -EBADMSG);
        expect_error(&job, "expected 6x4");
        swarm_job_done(&job);

        job_with_result(&job, in, SWARM_DTYPE_F32, 1, (const uint64_t[]) { m * n }, c);
        cr_assert_eq(skill->verify(state, &job), -EBADMSG);
        swarm_job_done(&job);

        job_with_result(&job, in, SWARM_DTYPE_I32, 2, (const uint64_t[]) { m, n }, NULL);
        cr_assert_eq(skill->verify(state, &job), -EBADMSG);
        expect_error(&job, "dtype i32");
        swarm_job_done(&job);

        cr_assert_eq(swarm_job_init(&job, in, 0, NULL, NULL, NULL), 0);
        cr_assert_eq(swarm_values_set_string(swarm_job_outputs(&job), "c", "58"), 0);
        cr_assert_eq(skill->verify(state, &job), -EBADMSG);
        swarm_job_done(&job);

        c[2 * n + 3] = NAN;
        job_with_result(&job, in, SWARM_DTYPE_F32, 2, (const uint64_t[]) { m, n }, c);
        cr_assert_eq(skill->verify(state, &job), -EBADMSG);
        expect_error(&job, "c(2, 3) is NaN");
        swarm_job_done(&job);

        c[2 * n + 3] = INFINITY;
        job_with_result(&job, in, SWARM_DTYPE_F32, 2, (const uint64_t[]) { m, n }, c);
        cr_assert_eq(skill->verify(state, &job), -EBADMSG);
        expect_error(&job, "infinite");
        swarm_job_done(&job);

        swarm_values_free(in);
}

Test(gemm, verify_refuses_non_finite_inputs_as_malformed) {
        struct swarm_values *in = make_inputs(5, 300, 4, 3);
        float c[5 * 4] = {};
        struct swarm_job job;

        start(config_cpu());
        tensor_data(in, "a", NULL, NULL)[4 * 300 + 299] = NAN;
        job_with_result(&job, in, SWARM_DTYPE_F32, 2, (const uint64_t[]) { 5, 4 }, c);
        cr_assert_eq(skill->verify(state, &job), -EINVAL);
        expect_error(&job, "a contains NaN at (4, 299)");
        swarm_job_done(&job);
        swarm_values_free(in);
}

Test(gemm, verify_runs_the_configured_number_of_rounds) {
        const uint64_t m = 16, k = 16, n = 16;
        struct swarm_values *c = config_cpu(), *in = make_inputs(m, k, n, 8);
        struct swarm_job job;
        float *out;

        cr_assert_eq(swarm_values_set_int(c, "verify-rounds", 3), 0);
        start(c);
        cr_assert_eq(run_execute(&job, in, NULL, 0), 0);
        out = tensor_data(swarm_job_outputs(&job), "c", NULL, NULL);
        out[5] += 100;
        cr_assert_eq(skill->verify(state, &job), -EBADMSG);
        /* A single large error fails in the first round. */
        expect_error(&job, "round 1 of 3");
        swarm_job_done(&job);
        swarm_values_free(in);
}

/* ---- Price ---- */

static uint64_t price_of(uint64_t m, uint64_t k, uint64_t n) {
        struct swarm_values *in = make_inputs(m, k, n, 1);
        uint64_t p = 0;

        cr_assert_eq(skill->price(state, in, &p), 0);
        swarm_values_free(in);
        return p;
}

Test(gemm, price_scales_with_flops) {
        start(config_cpu());

        /* Default 1000 micro-credits per GFLOP: 2·200·100·50 = 2 MFLOP. */
        cr_assert_eq(price_of(200, 100, 50), 2);
        cr_assert_eq(price_of(500, 500, 500), 250);
        cr_assert_eq(price_of(1000, 500, 500), 2 * price_of(500, 500, 500));
        cr_assert_eq(price_of(500, 1000, 500), 2 * price_of(500, 500, 500));
        cr_assert_eq(price_of(500, 500, 1000), 2 * price_of(500, 500, 500));
        /* Never free, rounded up. */
        cr_assert_eq(price_of(1, 1, 1), 1);
        cr_assert_eq(price_of(101, 100, 50), 2);
        cr_assert_eq(price_of(101, 100, 5001), 102);
}

Test(gemm, price_follows_configured_rate) {
        struct swarm_values *c = config_cpu();

        cr_assert_eq(swarm_values_set_int(c, "price-per-gflop", 3000), 0);
        start(c);
        cr_assert_eq(price_of(500, 500, 500), 750);
}

Test(gemm, price_refuses_mismatched_shapes_and_bf16_on_cpu) {
        struct swarm_values *in = swarm_values_new();
        uint64_t p = 0;

        start(config_cpu());
        add_matrix(in, "a", 3, 4);
        add_matrix(in, "b", 5, 6);
        cr_assert_eq(skill->price(state, in, &p), -EINVAL);
        swarm_values_free(in);

        in = make_inputs(4, 4, 4, 2);
        cr_assert_eq(swarm_values_set_string(in, "precision", "bf16"), 0);
        cr_assert_eq(skill->price(state, in, &p), -EINVAL);
        swarm_values_free(in);
}

/* ---- Validation ---- */

Test(gemm, execute_refuses_mismatched_inner_dimensions) {
        struct swarm_values *in = swarm_values_new();
        char error[512];

        start(config_cpu());
        add_matrix(in, "a", 3, 4);
        add_matrix(in, "b", 5, 6);
        cr_assert_eq(execute_inputs(in, error, sizeof(error)), -EINVAL);
        cr_assert_str_eq(error, "a is 3x4 but b is 5x6: inner dimensions differ (4 vs 5)");
        swarm_values_free(in);
}

Test(gemm, execute_refuses_missing_vector_and_wrongly_typed_inputs) {
        struct swarm_values *in;
        struct swarm_tensor t;
        char error[512];

        start(config_cpu());

        in = swarm_values_new();
        add_matrix(in, "a", 3, 4);
        cr_assert_eq(execute_inputs(in, error, sizeof(error)), -EINVAL);
        cr_assert(strstr(error, "missing input b"), "%s", error);
        swarm_values_free(in);

        in = swarm_values_new();
        cr_assert_eq(swarm_values_add_tensor(in, "a", SWARM_DTYPE_F32, 1, (const uint64_t[]) { 4 }, &t), 0);
        add_matrix(in, "b", 4, 2);
        cr_assert_eq(execute_inputs(in, error, sizeof(error)), -EINVAL);
        cr_assert(strstr(error, "input a must be a 2-D tensor"), "%s", error);
        swarm_values_free(in);

        in = swarm_values_new();
        add_matrix(in, "a", 3, 4);
        cr_assert_eq(swarm_values_add_tensor(in, "b", SWARM_DTYPE_F32, 3, (const uint64_t[]) { 4, 2, 2 }, &t), 0);
        cr_assert_eq(execute_inputs(in, error, sizeof(error)), -EINVAL);
        cr_assert(strstr(error, "has 3 dimensions"), "%s", error);
        swarm_values_free(in);

        in = swarm_values_new();
        add_matrix(in, "a", 3, 4);
        cr_assert_eq(swarm_values_add_tensor(in, "b", SWARM_DTYPE_F64, 2, (const uint64_t[]) { 4, 2 }, &t), 0);
        cr_assert_eq(execute_inputs(in, error, sizeof(error)), -EINVAL);
        cr_assert(strstr(error, "input b has dtype f64"), "%s", error);
        swarm_values_free(in);

        in = swarm_values_new();
        cr_assert_eq(swarm_values_set_bytes(in, "a", "x", 1), 0);
        add_matrix(in, "b", 4, 2);
        cr_assert_eq(execute_inputs(in, error, sizeof(error)), -EINVAL);
        cr_assert(strstr(error, "input a must be an f32 tensor"), "%s", error);
        swarm_values_free(in);

        in = make_inputs(2, 2, 2, 1);
        cr_assert_eq(swarm_values_set_string(in, "precision", "fp64"), 0);
        cr_assert_eq(execute_inputs(in, error, sizeof(error)), -EINVAL);
        cr_assert(strstr(error, "unknown precision \"fp64\""), "%s", error);
        swarm_values_free(in);

        in = make_inputs(2, 2, 2, 1);
        cr_assert_eq(swarm_values_set_int(in, "precision", 32), 0);
        cr_assert_eq(execute_inputs(in, error, sizeof(error)), -EINVAL);
        swarm_values_free(in);
}

Test(gemm, execute_refuses_nan_and_inf_naming_the_tensor) {
        struct swarm_values *in;
        char error[512];
        float *b;

        start(config_cpu());

        in = make_inputs(3, 4, 5, 1);
        b = tensor_data(in, "b", NULL, NULL);
        b[1 * 5 + 2] = NAN;
        cr_assert_eq(execute_inputs(in, error, sizeof(error)), -EINVAL);
        cr_assert_str_eq(error, "b contains NaN at (1, 2)");
        swarm_values_free(in);

        /* Past the first block of the scan. */
        in = make_inputs(100, 100, 3, 1);
        tensor_data(in, "a", NULL, NULL)[99 * 100 + 7] = -INFINITY;
        cr_assert_eq(execute_inputs(in, error, sizeof(error)), -EINVAL);
        cr_assert_str_eq(error, "a contains -Inf at (99, 7)");
        swarm_values_free(in);
}

Test(gemm, execute_refuses_a_product_that_overflows) {
        struct swarm_values *in = make_inputs(2, 2, 2, 1);
        char error[512];

        start(config_cpu());
        tensor_data(in, "a", NULL, NULL)[0] = 3e38f;
        tensor_data(in, "b", NULL, NULL)[0] = 3e38f;
        cr_assert_eq(execute_inputs(in, error, sizeof(error)), -EINVAL);
        cr_assert(strstr(error, "overflows float32"), "%s", error);
        swarm_values_free(in);
}

Test(gemm, execute_refuses_jobs_over_the_memory_budget) {
        struct swarm_values *c = config_cpu(), *in;
        char error[512];
        uint64_t p;

        cr_assert_eq(swarm_values_set_int(c, "memory-budget", 1000), 0);
        start(c);

        /* 4·(8·8 + 8·8 + 8·8) = 768 bytes: fits. */
        in = make_inputs(8, 8, 8, 1);
        cr_assert_eq(execute_inputs(in, error, sizeof(error)), 0, "%s", error);
        swarm_values_free(in);

        /* 4·(10·10 · 3) = 1200 bytes. */
        in = make_inputs(10, 10, 10, 1);
        cr_assert_eq(skill->price(state, in, &p), -E2BIG);
        cr_assert_eq(execute_inputs(in, error, sizeof(error)), -E2BIG);
        cr_assert(strstr(error, "need 1200 bytes, over this worker's memory budget of 1000 bytes"), "%s", error);
        swarm_values_free(in);
}

Test(gemm, execute_refuses_bf16_and_tf32_on_cpu) {
        static const char *const precisions[] = { "bf16", "tf32" };
        char error[512], expected[128];

        start(config_cpu());
        for (size_t i = 0; i < 2; i++) {
                struct swarm_values *in = make_inputs(4, 4, 4, 1);

                cr_assert_eq(swarm_values_set_string(in, "precision", precisions[i]), 0);
                cr_assert_eq(execute_inputs(in, error, sizeof(error)), -EINVAL);
                snprintf(expected, sizeof(expected), "precision %s needs a GPU; this worker runs on CPU",
                         precisions[i]);
                cr_assert(strstr(error, expected), "%s", error);
                swarm_values_free(in);
        }
}

/* ---- Cancellation ---- */

Test(gemm, execute_returns_ecanceled_when_cancelled) {
        struct swarm_values *in = make_inputs(64, 64, 64, 1);
        volatile uint32_t cancel = 1;
        struct swarm_job job;

        start(config_cpu());
        cr_assert_eq(run_execute(&job, in, &cancel, 0), -ECANCELED);
        swarm_job_done(&job);

        /* A deadline long past counts as cancelled too. */
        cr_assert_eq(run_execute(&job, in, NULL, 1), -ECANCELED);
        swarm_job_done(&job);

        cancel = 0;
        cr_assert_eq(run_execute(&job, in, &cancel, 0), 0);
        swarm_job_done(&job);
        swarm_values_free(in);
}

/* ---- GPU ---- */

static void start_cuda_or_skip(void) {
        start(swarm_values_new());
        if (!have_cuda_worker())
                cr_skip_test("no CUDA device: the worker runs on OpenBLAS");
}

Test(gemm, cuda_fp32_product_matches_reference_and_verifies) {
        start_cuda_or_skip();
        check_product(1, 1, 1, 11);
        check_product(65, 33, 17, 12);
        check_product(300, 200, 500, 13);
}

Test(gemm, cuda_reduced_precisions_pass_their_own_verification) {
        static const char *const precisions[] = { "tf32", "bf16" };
        const uint64_t m = 257, k = 300, n = 129;
        struct swarm_values *advert = swarm_values_new();
        const char *s;

        start_cuda_or_skip();
        cr_assert_eq(skill->advertise(state, advert), 0);
        cr_assert_eq(swarm_values_get_string(advert, "precisions", &s), 0);
        cr_assert_str_eq(s, "fp32,tf32,bf16");
        swarm_values_free(advert);

        for (size_t i = 0; i < 2; i++) {
                struct swarm_values *in = make_inputs(m, k, n, 20 + i);
                struct swarm_job job;

                cr_assert_eq(swarm_values_set_string(in, "precision", precisions[i]), 0);
                cr_assert_eq(run_execute(&job, in, NULL, 0), 0, "%s: %s", precisions[i], swarm_job_error(&job));
                cr_assert_eq(skill->verify(state, &job), 0, "%s: %s", precisions[i], swarm_job_error(&job));
                swarm_job_done(&job);
                swarm_values_free(in);
        }
}

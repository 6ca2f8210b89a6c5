/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Loads the built "hash" skill the way swarm-worker does (dlopen, entry
 * symbol, descriptor checks) and drives its callbacks through the SDK's job
 * API. */

#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "swarm-host.h"

static void *module;
static const struct swarm_skill *skill;
static void *state;

static void load_module(void) {
        char path[PATH_MAX];
        const char *dir = getenv("SKILL_BUILD_DIR");
        swarm_skill_entry_fn entry;

        cr_assert_not_null(dir, "SKILL_BUILD_DIR is not set");
        snprintf(path, sizeof(path), "%s/hash/hash.so", dir);
        module = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        cr_assert_not_null(module, "dlopen %s: %s", path, dlerror());
        entry = (swarm_skill_entry_fn) dlsym(module, SWARM_SKILL_ENTRY_SYMBOL);
        cr_assert_not_null(entry, "%s has no %s", path, SWARM_SKILL_ENTRY_SYMBOL);
        skill = entry();
        cr_assert_not_null(skill);
        cr_assert_eq(sodium_init() < 0, false);
}

/* Loads the module and runs init() with config (NULL: empty). */
static void start(const struct swarm_values *config) {
        struct swarm_values *empty = NULL;

        if (!config)
                config = empty = swarm_values_new();
        cr_assert_eq(skill->init(config, &state), 0);
        swarm_values_free(empty);
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

TestSuite(hash, .init = setup, .fini = teardown, .timeout = 60);

/* Inputs with data (and digest-size when ds > 0). */
static struct swarm_values *make_inputs(const void *data, size_t size, int64_t ds) {
        struct swarm_values *in = swarm_values_new();

        cr_assert_not_null(in);
        cr_assert_eq(swarm_values_set_bytes(in, "data", data, size), 0);
        if (ds > 0)
                cr_assert_eq(swarm_values_set_int(in, "digest-size", ds), 0);
        return in;
}

/* Runs execute() on inputs; returns its result, the job kept for the
 * caller to inspect and swarm_job_done(). */
static int run_job(struct swarm_job *job, const struct swarm_values *inputs, const volatile uint32_t *cancel,
                   uint64_t deadline) {
        cr_assert_eq(swarm_job_init(job, inputs, deadline, cancel, NULL, NULL), 0);
        return skill->execute(state, job);
}

static void expect_digest(struct swarm_job *job, const void *data, size_t size, size_t ds) {
        uint8_t expected[64];
        const void *digest;
        size_t n;

        cr_assert_eq(swarm_values_get_bytes(swarm_job_outputs(job), "digest", &digest, &n), 0);
        cr_assert_eq(n, ds);
        cr_assert_eq(crypto_generichash(expected, ds, data, size, NULL, 0), 0);
        cr_assert_arr_eq(digest, expected, ds);
}

Test(hash, descriptor_is_abi_1_and_complete) {
        cr_assert_eq(skill->abi_version, SWARM_SKILL_ABI_VERSION);
        cr_assert_eq(SWARM_SKILL_ABI_MAJOR_OF(skill->abi_version), SWARM_SKILL_ABI_MAJOR);
        cr_assert_eq(skill->struct_size, sizeof(struct swarm_skill));
        cr_assert_str_eq(skill->name, "hash");
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

Test(hash, advertises_cpu_bytes_and_measured_throughput) {
        struct swarm_values *advert = swarm_values_new();
        const char *s;
        int64_t i;

        start(NULL);
        cr_assert_eq(skill->advertise(state, advert), 0);
        cr_assert_eq(swarm_values_get_string(advert, "device", &s), 0);
        cr_assert_str_eq(s, "cpu");
        cr_assert_eq(swarm_values_get_string(advert, "unit", &s), 0);
        cr_assert_str_eq(s, "byte");
        cr_assert_eq(swarm_values_get_int(advert, "throughput", &i), 0);
        /* Even a sanitizer build hashes more than 1 MiB/s. */
        cr_assert_gt(i, 1 << 20);
        cr_assert_eq(swarm_values_get_int(advert, "max-input", &i), 0);
        cr_assert_eq(i, 64 << 20);
        cr_assert_eq(swarm_values_get_int(advert, "memory", &i), 0);
        cr_assert_geq(i, 64 << 20);
        swarm_values_free(advert);
}

/* BLAKE2b-256 test vectors, independent of libsodium. */
Test(hash, blake2b_256_known_answers) {
        static const uint8_t abc[32] = {
                0xbd, 0xdd, 0x81, 0x3c, 0x63, 0x42, 0x39, 0x72, 0x31, 0x71, 0xef, 0x3f, 0xee, 0x98, 0x57, 0x9b,
                0x94, 0x96, 0x4e, 0x3b, 0xb1, 0xcb, 0x3e, 0x42, 0x72, 0x62, 0xc8, 0xc0, 0x68, 0xd5, 0x23, 0x19,
        };
        static const uint8_t empty[32] = {
                0x0e, 0x57, 0x51, 0xc0, 0x26, 0xe5, 0x43, 0xb2, 0xe8, 0xab, 0x2e, 0xb0, 0x60, 0x99, 0xda, 0xa1,
                0xd1, 0xe5, 0xdf, 0x47, 0x77, 0x8f, 0x77, 0x87, 0xfa, 0xab, 0x45, 0xcd, 0xf1, 0x2f, 0xe3, 0xa8,
        };
        struct { const char *data; const uint8_t *digest; } cases[] = {
                { "abc", abc },
                { "", empty },
        };

        start(NULL);
        for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
                struct swarm_values *in = make_inputs(cases[c].data, strlen(cases[c].data), 0);
                struct swarm_job job;
                const void *digest;
                size_t n;

                cr_assert_eq(run_job(&job, in, NULL, 0), 0, "%s", swarm_job_error(&job));
                cr_assert_eq(swarm_values_get_bytes(swarm_job_outputs(&job), "digest", &digest, &n), 0);
                cr_assert_eq(n, 32);
                cr_assert_arr_eq(digest, cases[c].digest, 32, "BLAKE2b-256(\"%s\")", cases[c].data);
                cr_assert_eq(skill->verify(state, &job), 0, "%s", swarm_job_error(&job));
                swarm_job_done(&job);
                swarm_values_free(in);
        }
}

Test(hash, multi_chunk_input_matches_one_shot_hash) {
        size_t size = 3 * (1 << 20) + 12345;
        uint8_t *data = malloc(size);
        struct swarm_values *in;
        struct swarm_job job;

        cr_assert_not_null(data);
        randombytes_buf(data, size);
        in = make_inputs(data, size, 0);
        start(NULL);
        cr_assert_eq(run_job(&job, in, NULL, 0), 0);
        expect_digest(&job, data, size, 32);
        cr_assert_eq(skill->verify(state, &job), 0);
        swarm_job_done(&job);
        swarm_values_free(in);
        free(data);
}

Test(hash, digest_size_is_respected) {
        static const int64_t sizes[] = { 16, 20, 32, 48, 64 };

        start(NULL);
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                struct swarm_values *in = make_inputs("hello", 5, sizes[i]);
                struct swarm_job job;

                cr_assert_eq(run_job(&job, in, NULL, 0), 0, "digest-size %lld", (long long) sizes[i]);
                expect_digest(&job, "hello", 5, (size_t) sizes[i]);
                cr_assert_eq(skill->verify(state, &job), 0);
                swarm_job_done(&job);
                swarm_values_free(in);
        }
}

Test(hash, bad_digest_size_is_einval_with_message) {
        static const int64_t sizes[] = { 15, 65, -1, INT64_MAX };
        uint64_t price;

        start(NULL);
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                struct swarm_values *in = make_inputs("x", 1, 0);
                struct swarm_job job;

                cr_assert_eq(swarm_values_set_int(in, "digest-size", sizes[i]), 0);
                cr_assert_eq(skill->price(state, in, &price), -EINVAL);
                cr_assert_eq(run_job(&job, in, NULL, 0), -EINVAL);
                cr_assert_not_null(swarm_job_error(&job));
                cr_assert_not_null(strstr(swarm_job_error(&job), "digest-size"), "%s", swarm_job_error(&job));
                cr_assert_eq(swarm_values_count(swarm_job_outputs(&job)), 0);
                swarm_job_done(&job);
                swarm_values_free(in);
        }

        /* The right name with the wrong type. */
        {
                struct swarm_values *in = make_inputs("x", 1, 0);
                struct swarm_job job;

                cr_assert_eq(swarm_values_set_string(in, "digest-size", "32"), 0);
                cr_assert_eq(run_job(&job, in, NULL, 0), -EINVAL);
                cr_assert_not_null(strstr(swarm_job_error(&job), "digest-size"));
                swarm_job_done(&job);
                swarm_values_free(in);
        }
}

Test(hash, input_over_max_input_is_e2big) {
        struct swarm_values *config = swarm_values_new();
        uint8_t data[101] = { 0 };
        struct swarm_values *in;
        struct swarm_job job;
        uint64_t price;

        cr_assert_eq(swarm_values_set_int(config, "max-input", 100), 0);
        start(config);
        swarm_values_free(config);

        in = make_inputs(data, 100, 0);
        cr_assert_eq(skill->price(state, in, &price), 0);
        cr_assert_eq(run_job(&job, in, NULL, 0), 0);
        swarm_job_done(&job);
        swarm_values_free(in);

        in = make_inputs(data, 101, 0);
        cr_assert_eq(skill->price(state, in, &price), -E2BIG);
        cr_assert_eq(run_job(&job, in, NULL, 0), -E2BIG);
        cr_assert_not_null(swarm_job_error(&job));
        cr_assert_not_null(strstr(swarm_job_error(&job), "at most 100"), "%s", swarm_job_error(&job));
        swarm_job_done(&job);
        swarm_values_free(in);
}

Test(hash, bad_config_is_refused) {
        struct swarm_values *config;
        void *s = NULL;

        config = swarm_values_new();
        cr_assert_eq(swarm_values_set_int(config, "max-input", -1), 0);
        cr_assert_eq(skill->init(config, &s), -EINVAL);
        swarm_values_free(config);

        config = swarm_values_new();
        cr_assert_eq(swarm_values_set_int(config, "price-per-mib", 0), 0);
        cr_assert_eq(skill->init(config, &s), -EINVAL);
        swarm_values_free(config);

        config = swarm_values_new();
        cr_assert_eq(swarm_values_set_string(config, "max-input", "64M"), 0);
        cr_assert_eq(skill->init(config, &s), -EINVAL);
        swarm_values_free(config);

        cr_assert_null(s);
}

Test(hash, missing_or_mistyped_data_is_einval) {
        struct swarm_values *in = swarm_values_new();
        struct swarm_job job;
        uint64_t price;

        start(NULL);
        cr_assert_eq(skill->price(state, in, &price), -EINVAL);
        cr_assert_eq(run_job(&job, in, NULL, 0), -EINVAL);
        cr_assert_not_null(strstr(swarm_job_error(&job), "\"data\""), "%s", swarm_job_error(&job));
        swarm_job_done(&job);

        cr_assert_eq(swarm_values_set_string(in, "data", "abc"), 0);
        cr_assert_eq(skill->price(state, in, &price), -EINVAL);
        cr_assert_eq(run_job(&job, in, NULL, 0), -EINVAL);
        cr_assert_not_null(strstr(swarm_job_error(&job), "\"data\""));
        swarm_job_done(&job);
        swarm_values_free(in);
}

/* Runs a job, replaces its outputs with digest (none when drop), as a
 * dishonest provider would send them, and returns verify(). */
static int verify_with(const void *data, size_t size, const void *digest, size_t digest_size, bool drop) {
        struct swarm_values *in = make_inputs(data, size, 0);
        struct swarm_job job;
        int r;

        cr_assert_eq(run_job(&job, in, NULL, 0), 0);
        swarm_values_free(job.outputs);
        job.outputs = swarm_values_new();
        if (!drop)
                cr_assert_eq(swarm_values_set_bytes(job.outputs, "digest", digest, digest_size), 0);
        r = skill->verify(state, &job);
        if (r < 0)
                cr_assert_not_null(swarm_job_error(&job));
        swarm_job_done(&job);
        swarm_values_free(in);
        return r;
}

Test(hash, verify_rejects_flipped_bit_truncation_and_absence) {
        static const char data[] = "the quick brown fox";
        uint8_t digest[32];

        start(NULL);
        cr_assert_eq(crypto_generichash(digest, sizeof(digest), (const uint8_t *) data, strlen(data), NULL, 0), 0);
        cr_assert_eq(verify_with(data, strlen(data), digest, 32, false), 0);

        for (size_t bit = 0; bit < 8 * sizeof(digest); bit += 37) {
                digest[bit / 8] ^= (uint8_t) (1u << (bit % 8));
                cr_assert_eq(verify_with(data, strlen(data), digest, 32, false), -EBADMSG, "bit %zu", bit);
                digest[bit / 8] ^= (uint8_t) (1u << (bit % 8));
        }
        cr_assert_eq(verify_with(data, strlen(data), digest, 31, false), -EBADMSG);
        cr_assert_eq(verify_with(data, strlen(data), digest, 0, false), -EBADMSG);
        cr_assert_eq(verify_with(data, strlen(data), NULL, 0, true), -EBADMSG);
        /* The right digest of other data. */
        cr_assert_eq(verify_with("the quick brown fix", strlen(data), digest, 32, false), -EBADMSG);
}

Test(hash, verify_rejects_digest_of_wrong_type) {
        struct swarm_values *in = make_inputs("abc", 3, 0);
        struct swarm_job job;

        start(NULL);
        cr_assert_eq(run_job(&job, in, NULL, 0), 0);
        swarm_values_free(job.outputs);
        job.outputs = swarm_values_new();
        cr_assert_eq(swarm_values_set_string(job.outputs, "digest", "bddd813c634239723171ef3fee98579b"), 0);
        cr_assert_eq(skill->verify(state, &job), -EBADMSG);
        cr_assert_not_null(swarm_job_error(&job));
        swarm_job_done(&job);
        swarm_values_free(in);
}

Test(hash, cancelled_job_is_ecanceled) {
        volatile uint32_t cancel = 1;
        size_t size = 2 * (1 << 20);
        uint8_t *data = calloc(1, size);
        struct swarm_values *in;
        struct swarm_job job;

        start(NULL);

        /* Flag raised, on a multi-chunk input and on an empty one. */
        in = make_inputs(data, size, 0);
        cr_assert_eq(run_job(&job, in, &cancel, 0), -ECANCELED);
        cr_assert_not_null(swarm_job_error(&job));
        cr_assert_eq(swarm_values_count(swarm_job_outputs(&job)), 0);
        swarm_job_done(&job);
        swarm_values_free(in);

        in = make_inputs("", 0, 0);
        cr_assert_eq(run_job(&job, in, &cancel, 0), -ECANCELED);
        swarm_job_done(&job);

        /* Deadline already passed (1 µs after boot). */
        cr_assert_eq(run_job(&job, in, NULL, 1), -ECANCELED);
        swarm_job_done(&job);

        /* Flag lowered: runs. */
        cancel = 0;
        cr_assert_eq(run_job(&job, in, &cancel, 0), 0);
        swarm_job_done(&job);
        swarm_values_free(in);
        free(data);
}

/* The price of hashing size bytes: borrowed from one lazily zeroed
 * buffer, not copied, since price() reads only the size. */
static uint64_t price_for(size_t size) {
        static uint8_t *zeros;
        struct swarm_values *in = swarm_values_new();
        uint64_t price = 0;

        if (!zeros)
                zeros = calloc(1, 64 << 20);
        cr_assert_not_null(zeros);
        cr_assert_leq(size, 64 << 20);
        cr_assert_eq(swarm_values_add_bytes_borrowed(in, "data", zeros, size, NULL, NULL), 0);
        cr_assert_eq(skill->price(state, in, &price), 0);
        swarm_values_free(in);
        return price;
}

Test(hash, price_is_monotonic_in_size_and_at_least_one) {
        static const size_t sizes[] = {
                0, 1, 1000, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 5 << 20, (32 << 20) + 7, 64 << 20,
        };
        uint64_t last = 0;

        start(NULL);
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                uint64_t p = price_for(sizes[i]);

                cr_assert_geq(p, 1, "size %zu", sizes[i]);
                cr_assert_geq(p, last, "price falls from %llu to %llu at size %zu",
                              (unsigned long long) last, (unsigned long long) p, sizes[i]);
                last = p;
        }
        /* Default: 10 micro-credits per MiB. */
        cr_assert_eq(price_for(1 << 20), 10);
        cr_assert_eq(price_for(64 << 20), 640);
        cr_assert_gt(price_for(64 << 20), price_for(1 << 20));
}

Test(hash, price_per_mib_is_configurable) {
        struct swarm_values *config = swarm_values_new();

        cr_assert_eq(swarm_values_set_int(config, "price-per-mib", 1000), 0);
        start(config);
        swarm_values_free(config);
        cr_assert_eq(price_for(1 << 20), 1000);
        cr_assert_eq(price_for(1 << 19), 500);
        cr_assert_eq(price_for(1), 1);
}

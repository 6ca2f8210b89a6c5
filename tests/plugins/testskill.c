/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* A skill that misbehaves on request, for the worker pool tests.
 *
 * Input string "mode":
 *   echo   y = 2·x for the f32 tensor x (the default)
 *   crash  dies with SIGSEGV
 *   exit   exits with status 3
 *   sleep  sleeps until cancelled, then returns -ECANCELED
 *   hang   spins forever, ignoring cancellation
 *   wrong  like echo, but y[0] is off by one (verify must catch it)
 *   slow   like echo after sleeping input int "ms" (default 200) milliseconds,
 *          or -ECANCELED when cancelled meanwhile
 *   bigtext like echo, plus an output string of 100,000 bytes (more than
 *          the worker protocol carries)
 *   stream like echo after emitting the chunks "text" = "one ", "two ",
 *          "three" and "progress" = 3 bytes (swarm_job_emit)
 *   status returns input int "status" (default -EIO), whatever it is (a
 *          plugin that breaks the SDK's negative-errno rule), with input
 *          bytes "error", whatever they are, as its error text
 * Config int "fail-init" makes init() fail; config int "price" (default 1)
 * is the list price per element, advertised and charged, so tests can make
 * one provider dearer than another. */

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "swarm/skill.h"

/* badabi.so claims ABI 2.0: a future major the host must refuse. */
#ifdef TEST_ABI_MAJOR
#define TEST_ABI_MINOR 0
#else
#define TEST_ABI_MAJOR SWARM_SKILL_ABI_MAJOR
#define TEST_ABI_MINOR SWARM_SKILL_ABI_MINOR
#endif

/* renamed.so is the same skill under another name than its file's. */
#ifndef TEST_SKILL_NAME
#define TEST_SKILL_NAME "testskill"
#endif

/* One skill per worker process: a global is the worker's state. */
static int64_t price_per_element = 1;
static int64_t throughput = 1000000;
static int64_t crash_after_stream;

static int test_init(const struct swarm_values *config, void **state) {
        int64_t fail = 0;

        (void) swarm_values_get_int(config, "fail-init", &fail);
        if (fail) {
                swarm_log(LOG_ERR, "testskill: failing init as configured");
                return -EIO;
        }
        (void) swarm_values_get_int(config, "price", &price_per_element);
        (void) swarm_values_get_int(config, "throughput", &throughput);
        (void) swarm_values_get_int(config, "crash-after-stream", &crash_after_stream);
        if (price_per_element < 1)
                price_per_element = 1;
        *state = NULL;
        return 0;
}

static int test_advertise(void *state, struct swarm_values *advert) {
        int r = swarm_values_set_string(advert, "device", "cpu");
        if (r >= 0)
                r = swarm_values_set_string(advert, "unit", "element");
        if (r >= 0)
                r = swarm_values_set_int(advert, "throughput", throughput);
        if (r >= 0)
                r = swarm_values_set_int(advert, "price", price_per_element);
        if (r >= 0)
                r = swarm_values_set_string(advert, "price-unit", "element");
        return r;
}

static const char *mode_of(const struct swarm_values *inputs);

static int test_price(void *state, const struct swarm_values *inputs, uint64_t *price) {
        struct swarm_tensor x;

        /* A job the skill finds malformed: the reason must reach the user. */
        if (strcmp(mode_of(inputs), "refuse") == 0) {
                swarm_job_set_error(NULL, "input \"x\" is refused on purpose (mode=refuse)");
                return -EINVAL;
        }

        *price = (swarm_values_get_tensor(inputs, "x", &x) >= 0 ? x.n_elements : 1) * (uint64_t) price_per_element;
        return 0;
}

static const char *mode_of(const struct swarm_values *inputs) {
        const char *mode = "echo";

        (void) swarm_values_get_string(inputs, "mode", &mode);
        return mode;
}

static int test_execute(void *state, struct swarm_job *job) {
        const struct swarm_values *in = swarm_job_inputs(job);
        const char *mode = mode_of(in);
        struct swarm_tensor x, y;
        int r;

        if (strcmp(mode, "crash") == 0) {
                /* Past any sanitizer's handler: a real crash. */
                signal(SIGSEGV, SIG_DFL);
                raise(SIGSEGV);
        }
        if (strcmp(mode, "exit") == 0)
                _exit(3);
        if (strcmp(mode, "sleep") == 0) {
                while (!swarm_job_cancelled(job))
                        nanosleep(&(struct timespec) { .tv_nsec = 1000000 }, NULL);
                return -ECANCELED;
        }
        if (strcmp(mode, "slow") == 0) {
                int64_t ms = 200;

                (void) swarm_values_get_int(in, "ms", &ms);
                for (int64_t i = 0; i < ms; i++) {
                        if (swarm_job_cancelled(job))
                                return -ECANCELED;
                        nanosleep(&(struct timespec) { .tv_nsec = 1000000 }, NULL);
                }
        }
        if (strcmp(mode, "hang") == 0)
                for (;;)
                        pause();
        if (strcmp(mode, "status") == 0) {
                int64_t status = -EIO;
                const void *error;
                size_t n;

                (void) swarm_values_get_int(in, "status", &status);
                if (swarm_values_get_bytes(in, "error", &error, &n) >= 0)
                        swarm_job_set_error(job, "%.*s", (int) n, (const char *) error);
                return (int) status;
        }
        if (strcmp(mode, "stream") == 0) {
                static const char *const words[] = { "one ", "two ", "three" };
                char big[SWARM_JOB_CHUNK_MAX + 1] = { 0 };

                for (size_t i = 0; i < 3; i++)
                        if (swarm_job_emit(job, "text", words[i], strlen(words[i])) < 0)
                                return -EIO;
                if (swarm_job_emit(job, "progress", "\x01\x02\x03", 3) < 0 ||
                    swarm_job_emit(job, "text", big, sizeof(big)) != -E2BIG ||
                    swarm_job_emit(job, "Bad Name", "x", 1) != -EINVAL)
                        return -EIO;
                /* A provider that dies mid-stream (skill option). */
                if (crash_after_stream) {
                        signal(SIGSEGV, SIG_DFL);
                        raise(SIGSEGV);
                }
        }

        if (swarm_values_get_tensor(in, "x", &x) < 0 || x.dtype != SWARM_DTYPE_F32) {
                swarm_job_set_error(job, "input x (f32 tensor) is missing");
                return -EINVAL;
        }
        r = swarm_values_add_tensor(swarm_job_outputs(job), "y", x.dtype, x.ndim, x.shape, &y);
        if (r < 0)
                return r;
        for (uint64_t i = 0; i < x.n_elements; i++)
                ((float *) y.data)[i] = 2.0f * ((const float *) x.data)[i];
        if (strcmp(mode, "wrong") == 0)
                ((float *) y.data)[0] += 1.0f;
        if (strcmp(mode, "bigtext") == 0) {
                char *big = malloc(100001);

                if (!big)
                        return -ENOMEM;
                memset(big, 'x', 100000);
                big[100000] = '\0';
                r = swarm_values_set_string(swarm_job_outputs(job), "text", big);
                free(big);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int test_verify(void *state, struct swarm_job *job) {
        struct swarm_tensor x, y;

        if (swarm_values_get_tensor(swarm_job_inputs(job), "x", &x) < 0 ||
            swarm_values_get_tensor(swarm_job_outputs(job), "y", &y) < 0 ||
            y.n_elements != x.n_elements) {
                swarm_job_set_error(job, "output y missing or of the wrong size");
                return -EBADMSG;
        }
        for (uint64_t i = 0; i < x.n_elements; i++)
                if (((const float *) y.data)[i] != 2.0f * ((const float *) x.data)[i]) {
                        swarm_job_set_error(job, "y[%llu] is wrong", (unsigned long long) i);
                        return -EBADMSG;
                }
        return 0;
}

static const struct swarm_skill skill = {
        .abi_version = ((uint32_t) TEST_ABI_MAJOR << 16) | TEST_ABI_MINOR,
        .struct_size = sizeof(struct swarm_skill),
        .name = TEST_SKILL_NAME,
        .version = "0.0.1",
        .description = "misbehaves on request, for tests",
        .init = test_init,
        .advertise = test_advertise,
        .price = test_price,
        .execute = test_execute,
        .verify = test_verify,
};

SWARM_SKILL_EXPORT const struct swarm_skill *swarm_skill_entry(void) {
        return &skill;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The "hash" skill: BLAKE2b (libsodium's crypto_generichash) of a byte
 * string, verified by recomputation.  The work is trivial on purpose: a job
 * of a few bytes costs almost nothing to run, so what a requester measures
 * end to end is the host's own overhead (routing, queueing, shared memory,
 * the worker round trip).
 *
 * Inputs:  "data" (bytes, 0 … max-input), "digest-size" (int, 16 … 64,
 *          default 32; optional)
 * Outputs: "digest" (bytes, digest-size long)
 * Config:  "max-input" (int, bytes, default 64 MiB), "price-per-mib" (int,
 *          micro-credits per MiB of input, default 10, at least 1) */

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <swarm/skill.h>

#define MIB                     (UINT64_C(1) << 20)
#define CHUNK_SIZE              MIB     /* cancellation is checked between chunks */
#define DEFAULT_MAX_INPUT       (64 * MIB)
#define DEFAULT_PRICE_PER_MIB   UINT64_C(10)
#define DEFAULT_DIGEST_SIZE     32
#define BENCH_USEC              UINT64_C(20000)

/* libsodium's bounds for BLAKE2b, pinned here because they are part of the
 * skill's contract with requesters, not a library detail. */
#define DIGEST_SIZE_MIN         16
#define DIGEST_SIZE_MAX         64
_Static_assert(DIGEST_SIZE_MIN >= crypto_generichash_BYTES_MIN, "digest-size minimum below BLAKE2b's");
_Static_assert(DIGEST_SIZE_MAX <= crypto_generichash_BYTES_MAX, "digest-size maximum above BLAKE2b's");

struct hash_state {
        uint64_t max_input;             /* bytes */
        uint64_t price_per_mib;         /* micro-credits */
        uint64_t throughput;            /* bytes per second, measured in init() */
};

/* A job's inputs, validated. */
struct hash_request {
        const uint8_t *data;
        size_t size;
        size_t digest_size;
};

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000) + (uint64_t) ts.tv_nsec / 1000u;
}

/* Reads an optional positive-or-zero integer setting; def when absent. */
static int config_get_uint(const struct swarm_values *config, const char *key, uint64_t min, uint64_t max,
                           uint64_t def, uint64_t *ret) {
        int64_t i;
        int r;

        r = swarm_values_get_int(config, key, &i);
        if (r == -ENOENT) {
                *ret = def;
                return 0;
        }
        if (r == -EMEDIUMTYPE) {
                swarm_log(LOG_ERR, "hash: setting \"%s\" must be an integer", key);
                return -EINVAL;
        }
        if (r < 0)
                return r;
        if (i < 0 || (uint64_t) i < min || (uint64_t) i > max) {
                swarm_log(LOG_ERR, "hash: setting \"%s\" is %" PRIi64 ", must be between %" PRIu64 " and %" PRIu64,
                          key, i, min, max);
                return -EINVAL;
        }
        *ret = (uint64_t) i;
        return 0;
}

/* Hashes 1 MiB over and over for about BENCH_USEC and returns bytes/s: the
 * figure advertise() offers and routers divide job sizes by. */
static uint64_t measure_throughput(void) {
        uint8_t digest[DEFAULT_DIGEST_SIZE];
        uint64_t start, elapsed, bytes = 0;
        uint8_t *buf;

        buf = malloc(CHUNK_SIZE);
        if (!buf)
                return 0;
        /* Any content will do; fixed so that runs are comparable. */
        memset(buf, 0xa5, CHUNK_SIZE);

        start = now_usec();
        do {
                crypto_generichash(digest, sizeof(digest), buf, CHUNK_SIZE, NULL, 0);
                bytes += CHUNK_SIZE;
                elapsed = now_usec() - start;
        } while (elapsed < BENCH_USEC);
        free(buf);

        return bytes * UINT64_C(1000000) / (elapsed ? elapsed : 1);
}

static int hash_init(const struct swarm_values *config, void **state) {
        struct hash_state *s;
        int r;

        if (sodium_init() < 0) {
                swarm_log(LOG_ERR, "hash: libsodium failed to initialise");
                return -EIO;
        }

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;

        r = config_get_uint(config, "max-input", 0, SIZE_MAX < INT64_MAX ? SIZE_MAX : INT64_MAX,
                            DEFAULT_MAX_INPUT, &s->max_input);
        if (r >= 0)
                r = config_get_uint(config, "price-per-mib", 1, INT64_MAX, DEFAULT_PRICE_PER_MIB,
                                    &s->price_per_mib);
        if (r < 0) {
                free(s);
                return r;
        }

        s->throughput = measure_throughput();
        if (s->throughput == 0) {
                free(s);
                return -ENOMEM;
        }
        swarm_log(LOG_INFO, "hash: BLAKE2b at %" PRIu64 " MiB/s, inputs up to %" PRIu64 " bytes",
                  s->throughput / MIB, s->max_input);

        *state = s;
        return 0;
}

static void hash_fini(void *state) {
        free(state);
}

static int hash_advertise(void *state, struct swarm_values *advert) {
        const struct hash_state *s = state;
        int r;

        r = swarm_values_set_string(advert, "device", "cpu");
        if (r < 0)
                return r;
        r = swarm_values_set_string(advert, "unit", "byte");
        if (r < 0)
                return r;
        r = swarm_values_set_int(advert, "throughput", (int64_t) s->throughput);
        if (r < 0)
                return r;
        /* The list price peers see in gossip: micro-credits per MiB. */
        r = swarm_values_set_int(advert, "price", (int64_t) s->price_per_mib);
        if (r < 0)
                return r;
        r = swarm_values_set_string(advert, "price-unit", "MiB");
        if (r < 0)
                return r;
        r = swarm_values_set_int(advert, "max-input", (int64_t) s->max_input);
        if (r < 0)
                return r;
        /* What one job costs in memory: its input mapping and a digest;
         * BLAKE2b's own state is a few hundred bytes on the stack. */
        return swarm_values_set_int(advert, "memory", (int64_t) (s->max_input + DIGEST_SIZE_MAX));
}

/* Validates inputs into *req and explains a refusal to the requester (job
 * is NULL in price(), see swarm_job_set_error()). */
static int parse_request(const struct hash_state *s, const struct swarm_values *inputs, struct swarm_job *job,
                         struct hash_request *req) {
        const void *data;
        size_t size;
        int64_t ds;
        int r;

        r = swarm_values_get_bytes(inputs, "data", &data, &size);
        if (r < 0) {
                swarm_job_set_error(job, r == -ENOENT ? "input \"data\" is missing"
                                                      : "input \"data\" must be bytes");
                return -EINVAL;
        }
        if (size > s->max_input) {
                swarm_job_set_error(job, "input \"data\" is %zu bytes, this provider hashes at most %" PRIu64,
                                    size, s->max_input);
                return -E2BIG;
        }

        r = swarm_values_get_int(inputs, "digest-size", &ds);
        if (r == -ENOENT)
                ds = DEFAULT_DIGEST_SIZE;
        else if (r < 0) {
                swarm_job_set_error(job, "input \"digest-size\" must be an integer");
                return -EINVAL;
        } else if (ds < DIGEST_SIZE_MIN || ds > DIGEST_SIZE_MAX) {
                swarm_job_set_error(job, "input \"digest-size\" is %" PRIi64 ", must be between %d and %d",
                                    ds, DIGEST_SIZE_MIN, DIGEST_SIZE_MAX);
                return -EINVAL;
        }

        *req = (struct hash_request) {
                .data = data,
                .size = size,
                .digest_size = (size_t) ds,
        };
        return 0;
}

/* ceil(size × price-per-mib / MiB), at least 1; saturates rather than
 * wraps, so the price never decreases as size grows. */
static uint64_t price_of(uint64_t size, uint64_t price_per_mib) {
        uint64_t whole, part, p;

        if (__builtin_mul_overflow(size / MIB, price_per_mib, &whole))
                return UINT64_MAX;
        /* (size % MiB) × price-per-mib can overflow too: split price-per-mib
         * the same way. */
        part = (size % MIB) * (price_per_mib / MIB) +
               ((size % MIB) * (price_per_mib % MIB) + MIB - 1) / MIB;
        if (__builtin_add_overflow(whole, part, &p))
                return UINT64_MAX;
        return p > 0 ? p : 1;
}

static int hash_price(void *state, const struct swarm_values *inputs, uint64_t *price) {
        const struct hash_state *s = state;
        struct hash_request req;
        int r;

        r = parse_request(s, inputs, NULL, &req);
        if (r < 0)
                return r;
        *price = price_of(req.size, s->price_per_mib);
        return 0;
}

/* BLAKE2b of req into digest, in CHUNK_SIZE steps so that a cancelled job
 * stops within a chunk's time (about a millisecond). */
static int compute_digest(struct swarm_job *job, const struct hash_request *req, uint8_t *digest) {
        crypto_generichash_state st;
        size_t offset = 0;

        if (crypto_generichash_init(&st, NULL, 0, req->digest_size) < 0)
                return -EIO;
        do {
                size_t n = req->size - offset < CHUNK_SIZE ? req->size - offset : CHUNK_SIZE;

                if (swarm_job_cancelled(job)) {
                        sodium_memzero(&st, sizeof(st));
                        swarm_job_set_error(job, "cancelled after %zu of %zu bytes", offset, req->size);
                        return -ECANCELED;
                }
                if (n > 0)
                        crypto_generichash_update(&st, req->data + offset, n);
                offset += n;
        } while (offset < req->size);

        return crypto_generichash_final(&st, digest, req->digest_size) < 0 ? -EIO : 0;
}

static int hash_execute(void *state, struct swarm_job *job) {
        const struct hash_state *s = state;
        uint8_t digest[DIGEST_SIZE_MAX];
        struct hash_request req;
        int r;

        r = parse_request(s, swarm_job_inputs(job), job, &req);
        if (r < 0)
                return r;
        r = compute_digest(job, &req, digest);
        if (r < 0)
                return r;
        return swarm_values_set_bytes(swarm_job_outputs(job), "digest", digest, req.digest_size);
}

static int hash_verify(void *state, struct swarm_job *job) {
        const struct hash_state *s = state;
        uint8_t expected[DIGEST_SIZE_MAX];
        struct hash_request req;
        const void *digest;
        size_t size;
        int r;

        /* Inputs this side would not hash itself (over its own max-input)
         * are not checked either: verifying costs as much as executing. */
        r = parse_request(s, swarm_job_inputs(job), job, &req);
        if (r < 0)
                return r;

        r = swarm_values_get_bytes(swarm_job_outputs(job), "digest", &digest, &size);
        if (r < 0) {
                swarm_job_set_error(job, r == -ENOENT ? "output \"digest\" is missing"
                                                      : "output \"digest\" is not bytes");
                return -EBADMSG;
        }
        if (size != req.digest_size) {
                swarm_job_set_error(job, "output \"digest\" is %zu bytes, %zu were asked for",
                                    size, req.digest_size);
                return -EBADMSG;
        }

        r = compute_digest(job, &req, expected);
        if (r < 0)
                return r;
        if (sodium_memcmp(digest, expected, size) != 0) {
                swarm_job_set_error(job, "output \"digest\" is not the BLAKE2b-%zu of the input",
                                    8 * req.digest_size);
                return -EBADMSG;
        }
        return 0;
}

static const struct swarm_param hash_inputs[] = {
        { "data", SWARM_VALUE_BYTES, 0, 0, NULL, 0, "the bytes to hash" },
        { "digest-size", SWARM_VALUE_INT, 0, 0, NULL, SWARM_PARAM_OPTIONAL,
          "digest length in bytes, 16 to 64 (default 32)" },
        {}
};

static const struct swarm_param hash_outputs[] = {
        { "digest", SWARM_VALUE_BYTES, 0, 0, NULL, 0, "BLAKE2b of data, digest-size bytes" },
        {}
};

static const struct swarm_skill hash_skill = {
        .abi_version = SWARM_SKILL_ABI_VERSION,
        .struct_size = sizeof(struct swarm_skill),
        .name = "hash",
        .version = "1.0.0",
        .description = "BLAKE2b of a byte string, verified by recomputation; measures the host's overhead",
        .init = hash_init,
        .fini = hash_fini,
        .advertise = hash_advertise,
        .price = hash_price,
        .execute = hash_execute,
        .verify = hash_verify,
        .inputs = hash_inputs,
        .outputs = hash_outputs,
};

SWARM_SKILL_EXPORT const struct swarm_skill *swarm_skill_entry(void) {
        return &hash_skill;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The requester side: runs one job somewhere in the swarm and hands back
 * only a verified result.
 *
 * For each job: candidates from the gossiped records (router.h), a
 * JobRequest to the first, a timer; on a signed result, the skill's own
 * verify() in a local worker pool; on a refusal, timeout, the provider
 * dying or failing verification, the next candidate — within the job's
 * deadline — with the failure recorded against that provider (which the
 * router weighs next time).  With hedge, a second candidate is asked when
 * the first is slower than its observed latency; the first verified result
 * wins.  The local node is a candidate like any other when it hosts the
 * skill and lends.
 *
 * A result that fails verification is never returned.
 *
 * Check jobs.  A verifier that cannot judge a result here (textgen on a
 * node without the model) says so with -EREMOTE.  The requester then asks
 * another provider of the same variant, not the producer, to check it: a
 * job of the same skill whose inputs are the original ones plus check.<name>
 * for each output the skill's advert lists in check-inputs.  The checker's
 * outputs come back into the producer's proof as check.<name>, and the
 * verifier judges again, now by comparing.  A disagreement goes to a third
 * provider: the side it agrees with wins; a checker found wrong is counted
 * a failure, a producer found wrong is not paid and the job moves on.
 * Checkers are paid for their checks like any job. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "swarm-host.h"
#include "swarm.pb-c.h"

struct accounts;
struct jobs_channel;
struct requester;
struct network;
struct skills;
struct provider;

/* A piece of a running job's output, as the provider streams it: text as
 * it is generated.  A preview: the outputs of the verified result hold all
 * of it.  seq counts the chunks passed on for this job (0, 1, …).  When the
 * stream changes hands (the provider that was streaming failed, another
 * took over, or another's result won), restart is set on the next chunk:
 * what was shown of this job so far is void and the stream starts again.
 * name NULL (and size 0) is a restart with nothing new yet. */
struct job_chunk {
        uint32_t seq;
        bool restart;
        const char *name;
        const void *data;
        size_t size;
};

typedef void (*job_chunk_fn)(uint64_t job, const struct job_chunk *c, void *userdata);

struct job_spec {
        job_chunk_fn chunk;                     /* NULL: no streaming; else called with done's userdata */
        const char *skill;
        const struct swarm_values *inputs;      /* borrowed until done is called */
        uint64_t max_price;                     /* micro-credits */
        uint64_t deadline_usec;                 /* CLOCK_MONOTONIC, absolute */
        bool hedge;
        const uint8_t *provider;                /* 32 bytes: only this node may run it (a challenge); NULL: any */
        /* Exactly-once delivery: the verified result is kept (with its
         * payment, in one transaction) for the local user keep_owner under
         * keep_key, so that the same key comes back to it instead of a
         * second job (requester_kept_result()).  NULL: not kept. */
        const char *keep_key;
        uint32_t keep_owner;
        /* Not these providers (32 bytes each), and only providers offering
         * this variant (NULL: the one our verifier holds, if any).  For
         * check jobs. */
        const uint8_t (*exclude)[32];
        size_t n_exclude;
        const char *variant;
};

struct job_outcome {
        int status;                     /* 0, or negative errno */
        const char *error;              /* why, when status != 0 */
        struct swarm_values *outputs;   /* verified; the callback may take it (set NULL) */
        char provider[64];              /* node id of who ran it ("local" for this node) */
        uint8_t provider_id[32];        /* the same as a public key (zeros: local without a network) */
        uint64_t attempt_usec;          /* request → result of the attempt that won (clock time) */
        uint64_t queue_usec, exec_usec; /* of that attempt, as a remote provider reported (and signed) them */
        uint64_t price;
        unsigned attempts;              /* providers asked */
        unsigned rerouted;              /* of which after a failure */
        unsigned rejected;              /* results that failed verification */
        /* Accepted without a check: a skill verified by sampling
         * (requester_set_check_policy()) whose result was not drawn. */
        bool unchecked;
        uint64_t latency_usec;          /* submit → verified result */
};

typedef void (*job_done_fn)(uint64_t job, struct job_outcome *o, void *userdata);

/* provider may be NULL (no local execution); it is only checked for
 * presence: local jobs go straight to the skill's pool.  network may be
 * NULL (networking off): then only this node is a candidate. */
int requester_new(sd_event *event, struct network *network, struct skills *skills, struct provider *provider,
                  uint64_t max_message_size, struct requester **ret);
/* The goodbye: every job still running ends -ESHUTDOWN and every done
 * callback is called.  Call it while the pools still exist. */
void requester_stop(struct requester *r);
/* Frees, calling back no one: jobs still held are dropped silently. */
struct requester *requester_free(struct requester *r);

/* Starts a job; done is called exactly once, from the event loop, also
 * when the job cannot even start: -ENOENT when no node offers the skill
 * (at that price), -ENOPKG when this node has no plugin to verify its
 * results, with the reason in the outcome's error.  Fails itself (done
 * not called) only for invalid arguments (-EINVAL) or lack of memory.
 * deadline_usec 0 means 60 s from now. */
int requester_submit(struct requester *r, const struct job_spec *spec, job_done_fn done, void *userdata,
                     uint64_t *ret_job);
void requester_cancel(struct requester *r, uint64_t job);

/* The jobs channel hands SignedResults here, once requester_attach()ed;
 * NULL r detaches whatever requester the channel had. */
/* A JobChunk from a provider (the jobs channel calls it). */
void requester_handle_chunk(struct requester *r, const uint8_t from[32], const Swarm__JobChunk *c);
void requester_handle_result(struct requester *r, const uint8_t from[32], const Swarm__SignedResult *res);
void requester_attach(struct requester *r, struct jobs_channel *channel);

/* Appended to the contract: */

/* requester_free() fails the jobs still running with -ESHUTDOWN and calls
 * their done at once (the loop will not turn for them again);
 * requester_cancel() fails one with -ECANCELED, done from the loop. */

/* Randomness for job ids and the router's choices; NULL restores
 * libsodium's randombytes. */
void requester_set_random(struct requester *r, uint64_t (*rng)(void *userdata), void *userdata);

/* Sampled verification (check-sampling.h) for the skills named in
 * sampled (NULL-terminated; copied): a remote provider's result for one of
 * them is checked only when drawn, and accepted unchecked otherwise; an
 * unchecked result is paid but not counted as a success of the provider.
 * Other skills' results are always verified.  Without a call: none
 * sampled. */
struct check_policy;
int requester_set_check_policy(struct requester *r, const struct check_policy *policy, char *const *sampled);

/* This requester's checks of a provider's results for a skill, since it
 * started; percent: the share it checks now (100 for skills not sampled). */
struct requester_checks {
        uint64_t checked, unchecked, failed;
        unsigned percent;
        bool sampled;                   /* the skill is verified by sampling here */
};
void requester_get_checks(struct requester *r, const uint8_t id[32], const char *skill,
                          struct requester_checks *ret);

/* What the router knows of a provider for a skill (id NULL: this node). */
struct requester_stats {
        uint32_t successes, failures;   /* own observations, decayed and rounded; failures include failed verification */
        double latency_ewma_usec;       /* request → result, 0 = none yet */
        double throughput_ratio;        /* measured ÷ advertised, 0 = never measured */
};
int requester_get_stats(struct requester *r, const uint8_t id[32], const char *skill,
                        struct requester_stats *ret);

size_t requester_active_jobs(const struct requester *r);

/* Observations go to the accounts' reputation (saved in the ledger, shared
 * as opinions, trusted others' opinions weighed in), and verified remote
 * results are paid through it (accounts_pay()).  Without accounts the
 * requester keeps a private reputation in memory and pays nothing. */
void requester_set_accounts(struct requester *r, struct accounts *accounts);
/* Where the router's counts come from (the accounts' or the private one). */
struct reputation *requester_reputation(struct requester *r);

/* The result kept for owner under key (see job_spec.keep_key), into *ret
 * (outputs in shared memory; the caller frees them); -ENOENT when none or
 * expired. */
int requester_kept_result(struct requester *r, uint32_t owner, const char *key, struct job_outcome *ret);

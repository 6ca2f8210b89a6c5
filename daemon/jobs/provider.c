/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The provider side of the jobs channel (provider.h).
 *
 * A job's life: validated and its inputs copied into shared memory;
 * admitted (hosted, lending, deadline, price ≤ max through the skill's own
 * price() in its pool); executed in the pool under the requester's
 * deadline less a margin for the way back; answered with a signed
 * JobResult.  Every path ends in exactly one answer to the requester. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accounts.h"
#include "demand.h"
#include "identity.h"
#include "job-wire.h"
#include "job-send.h"
#include "jobs-channel.h"
#include "lending.h"
#include "list.h"
#include "log.h"
#include "macro.h"
#include "network.h"
#include "provider.h"
#include "shm.h"
#include "skill-pool.h"
#include "pricing.h"
#include "skills.h"
#include "time-util.h"
#include "utf8-valid.h"

/* The share of the requester's budget kept for the answer's way back, and
 * the least execution time worth starting a job for. */
#define DEADLINE_MARGIN_DIVISOR 20u
#define DEADLINE_MARGIN_MIN_USEC 1000u
#define EXEC_BUDGET_MIN_USEC 1000u

struct provider_job {
        struct provider *provider;      /* NULL once orphaned by provider_free() */
        LIST_FIELDS(struct provider_job, jobs);
        uint8_t from[WIRE_NODE_ID_SIZE];
        uint8_t job_id[JOB_ID_SIZE];
        char job_hex[2 * JOB_ID_SIZE + 1];
        char requester_hex[2 * WIRE_NODE_ID_SIZE + 1];
        char skill[JOB_SKILL_NAME_MAX + 1];
        struct skill_pool *pool;
        struct swarm_values *inputs;    /* shm-backed; borrowed by the pool until done */
        struct pool_request *request;   /* the PRICE or EXECUTE in flight */
        uint64_t max_price;
        uint64_t received_usec;
        uint64_t deadline_usec;         /* for execution: the requester's less the margin */
        uint64_t price;
        uint64_t price_usec;            /* receipt → priced */
        bool executing;
        /* What was streamed to the requester, for the signed result. */
        struct job_stream_digest stream;
        uint32_t stream_seq;
};

struct provider {
        sd_event *event;
        struct network *network;
        struct skills *skills;
        struct lending *lending;
        uint64_t max_message_size;
        bool corrupt_results;
        bool corrupt_stream;
        provider_event_fn event_fn;
        void *event_userdata;
        struct provider_job *jobs;
        unsigned executing;
        uint8_t (*allowed)[32];         /* requesters allowed; NULL = anyone */
        struct accounts *accounts;      /* NULL: free of charge, no debt limit */
        struct demand *demand;          /* NULL: base prices */
        size_t n_allowed;
};

static void hex(const uint8_t *data, size_t n, char *out) {
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[data[i] >> 4];
                out[2 * i + 1] = digits[data[i] & 15];
        }
        out[2 * n] = '\0';
}

static void job_free(struct provider_job *j) {
        if (!j)
                return;
        swarm_values_free(j->inputs);
        free(j);
}

static void job_unlink(struct provider_job *j) {
        struct provider *p = j->provider;

        if (!p)
                return;
        LIST_REMOVE(jobs, p->jobs, j);
        if (j->executing)
                p->executing--;
        j->provider = NULL;
}

static void job_emit(struct provider_job *j, bool finished, int status, uint64_t exec_usec) {
        struct provider *p = j->provider;
        struct provider_job_event e = {
                .job = j->job_hex,
                .skill = j->skill,
                .requester = j->requester_hex,
                .status = status,
                .price = j->price,
                .exec_usec = exec_usec,
        };

        if (p && p->event_fn)
                p->event_fn(&e, finished, p->event_userdata);
}

/* Control characters would break the one-line promise; the length, the
 * codec's limit; and the codec takes UTF-8 only: a character cut at the
 * limit goes, and a text that is not UTF-8 (a plugin's own bytes, which
 * the worker protocol passes on as they are) comes out as ASCII — else
 * the whole answer could not be sent, and the requester would get
 * -EPROTO instead of the skill's status and reason. */
static void error_sanitize(const char *in, char *out, size_t size, bool ascii_only) {
        size_t n = 0;

        for (const char *i = in; i && *i && n + 1 < size && n + 1 < JOB_ERROR_MAX; i++) {
                unsigned char c = (unsigned char) *i;
                out[n++] = c < 0x20 || c == 0x7f ? ' ' : (ascii_only && c >= 0x80) ? '?' : (char) c;
        }
        out[n] = '\0';
        if (ascii_only || utf8_valid(out, n))
                return;
        for (size_t cut = 1; cut <= 3 && cut <= n; cut++)
                if (utf8_valid(out, n - cut)) {
                        out[n - cut] = '\0';
                        return;
                }
        error_sanitize(in, out, size, true);
}

/* The lie of testing.corrupt_results: one output changed after the job
 * ran, as a cheating provider would.  The change is a real one (a float
 * moved by 1000, not 1): a skill's verify() may rightly tolerate rounding
 * noise — gemm's Freivalds tolerance at n = 384 is about 1 — and the point
 * is to show it catches a wrong answer, not to test its tolerance. */
static void outputs_corrupt(Swarm__JobValue **values, size_t n) {
        for (size_t i = 0; i < n; i++) {
                Swarm__Tensor *t = values[i]->tensor;

                if (values[i]->value_case != SWARM__JOB_VALUE__VALUE_TENSOR || t->data.len == 0)
                        continue;
                if (t->dtype == SWARM_DTYPE_F32) {
                        float x;
                        memcpy(&x, t->data.data, sizeof(x));
                        x += 1000.0f;
                        memcpy(t->data.data, &x, sizeof(x));
                } else if (t->dtype == SWARM_DTYPE_F64) {
                        double x;
                        memcpy(&x, t->data.data, sizeof(x));
                        x += 1000.0;
                        memcpy(t->data.data, &x, sizeof(x));
                } else
                        t->data.data[0] ^= 1;
                return;
        }
        for (size_t i = 0; i < n; i++)
                if (values[i]->value_case == SWARM__JOB_VALUE__VALUE_DATA && values[i]->data.len > 0) {
                        values[i]->data.data[0] ^= 1;
                        return;
                }
        for (size_t i = 0; i < n; i++)
                if (values[i]->value_case == SWARM__JOB_VALUE__VALUE_INTEGER) {
                        values[i]->integer++;
                        return;
                }
}

/* Answers the job's requester (once), then lets go of the job unless the
 * pool still holds its inputs. */
/* A signed result waiting for its ledger row to be durable. */
struct result_pending {
        struct network *network;
        uint8_t to[WIRE_NODE_ID_SIZE];
        uint8_t *data;
        size_t size;
};

static void result_recorded(int status, void *userdata) {
        struct result_pending *rp = userdata;
        int r;

        /* Sent even when it could not be recorded: the work is done, only
         * our claim on it is lost.  Not when the accounts went away
         * unstopped (-ECANCELED). */
        if (status != -ECANCELED) {
                r = network_send_job(rp->network, rp->to, rp->data, rp->size);
                if (r < 0)
                        log_debug_errno(r, "Failed to send a result: %m");
        }
        free(rp->data);
        free(rp);
}

/* Owed from here on: recorded (durably, with others finishing now) before
 * it leaves, so a crash in between overstates the debt rather than losing
 * it.  Takes data. */
static int result_send_when_recorded(struct accounts *accounts, const struct provider_job *j,
                                     struct network *network, uint8_t *data, size_t size) {
        struct result_pending *rp;
        int r;

        rp = calloc(1, sizeof(*rp));
        if (!rp) {
                free(data);
                return -ENOMEM;
        }
        *rp = (struct result_pending) { .network = network, .data = data, .size = size };
        memcpy(rp->to, j->from, WIRE_NODE_ID_SIZE);
        r = accounts_served(accounts, j->job_id, j->skill, j->from, j->price, result_recorded, rp);
        if (r < 0) {
                log_warning_errno(r, "Cannot record job %s as served, sending its result anyway: %m", j->job_hex);
                result_recorded(r, rp);
        }
        return 0;
}

static void job_answer(struct provider_job *j, struct network *network, uint64_t max_message_size, int status,
                       const char *error, const struct pool_result *res, bool corrupt) {
        Swarm__JobResult r = SWARM__JOB_RESULT__INIT;
        Swarm__JobValue **outputs = NULL, **proof = NULL;
        _cleanup_free_ uint8_t *packed = NULL;
        size_t n_outputs = 0, n_proof = 0, packed_size = 0;
        char clean[JOB_ERROR_MAX], buf[JOB_ERROR_MAX];
        const char *device = NULL;
        const struct skill_info *info = j->pool ? skill_pool_info(j->pool) : NULL;
        uint8_t stream_digest[JOB_STREAM_DIGEST_SIZE];
        int k;

        if (status == 0 && res) {
                k = job_values_to_wire(res->outputs, &outputs, &n_outputs);
                if (k >= 0)
                        k = job_values_to_wire(res->proof, &proof, &n_proof);
                if (k < 0) {
                        status = k == -ENOMEM ? -ENOMEM : -EPROTO;
                        snprintf(buf, sizeof(buf), "skill %s produced outputs that cannot be sent: %s",
                                 j->skill, strerror(-k));
                        error = buf;
                } else if (corrupt)
                        outputs_corrupt(outputs, n_outputs);
        }
        if (info && info->advert)
                (void) swarm_values_get_string(info->advert, "device", &device);

        error_sanitize(status < 0 ? (error ?: strerror(-status)) : "", clean, sizeof(clean), false);
        r.job_id = (ProtobufCBinaryData) { .len = JOB_ID_SIZE, .data = j->job_id };
        r.requester = (ProtobufCBinaryData) { .len = WIRE_NODE_ID_SIZE, .data = j->from };
        r.status = status;
        r.error = clean;
        if (status == 0) {
                r.outputs = outputs;
                r.n_outputs = n_outputs;
                r.proof = proof;
                r.n_proof = n_proof;
        }
        r.price = status == 0 ? j->price : 0;
        if (j->stream_seq > 0) {
                job_stream_digest_final(&j->stream, stream_digest);
                r.stream_digest = (ProtobufCBinaryData) { .len = sizeof(stream_digest), .data = stream_digest };
                r.stream_chunks = j->stream_seq;
        }
        if (res) {
                r.queue_us = j->price_usec + res->queue_usec;
                r.exec_us = res->exec_usec;
        }
        r.device = (char *) (device && strlen(device) <= JOB_STRING_MAX ? device : "");

        k = job_send_pack_result(network, &r, max_message_size, &packed, &packed_size);
        if (k >= 0) {
                if (status == 0 && j->provider && j->provider->accounts)
                        k = result_send_when_recorded(j->provider->accounts, j, network, TAKE_PTR(packed),
                                                      packed_size);
                else
                        k = network_send_job(network, j->from, packed, packed_size);
        } else if (k == -EINVAL) {
                const char *reason = "?";

                /* Something the skill made breaks the codec's rules (a
                 * text output that is not UTF-8, say): say so instead. */
                (void) job_result_check(&r, &reason);
                snprintf(buf, sizeof(buf), "skill %s produced a result that cannot be sent: %s", j->skill, reason);
                error_sanitize(buf, clean, sizeof(clean), true);
                k = job_send_error(network, j->from, j->job_id, -EPROTO, clean, max_message_size);
        } else if (k == -EMSGSIZE) {
                snprintf(buf, sizeof(buf), "the result of skill %s is larger than this node's "
                         "network.max_message_size (%llu bytes)", j->skill, (unsigned long long) max_message_size);
                k = job_send_error(network, j->from, j->job_id, -EMSGSIZE, buf, max_message_size);
        }
        if (k < 0)
                log_debug_errno(k, "Failed to answer job %s of %.12s: %m", j->job_hex, j->requester_hex);

        job_values_free_wire(outputs, n_outputs);
        job_values_free_wire(proof, n_proof);
}

static void job_finish(struct provider_job *j, int status, const char *error, const struct pool_result *res) {
        struct provider *p = j->provider;
        bool corrupt = p->corrupt_results && status == 0 && res;

        log_debug("Job %s (%s) for %.12s: %s%s%s.", j->job_hex, j->skill, j->requester_hex,
                  status == 0 ? "done" : "failed: ", status == 0 ? "" : (error ?: strerror(-status)),
                  corrupt ? " (result corrupted: testing.corrupt_results)" : "");
        job_answer(j, p->network, p->max_message_size, status, error, res, corrupt);
        if (j->executing)
                job_emit(j, true, status, res ? res->exec_usec : 0);
        job_unlink(j);
}

static void on_execute_done(struct pool_request *req, struct pool_result *res, void *userdata) {
        struct provider_job *j = userdata;
        int status = res->status;
        const char *error = res->error;

        j->request = NULL;
        if (!j->provider) {             /* answered by provider_free() */
                job_free(j);
                return;
        }
        /* The pool says -ECANCELED when its deadline timer stopped the
         * worker first; to the requester that is a timeout. */
        if (status == -ECANCELED && now(CLOCK_MONOTONIC) >= j->deadline_usec) {
                status = -ETIMEDOUT;
                error = "deadline passed while the job was running";
        }
        job_finish(j, status, error, res);
        job_free(j);
}

/* A chunk the skill emitted: on to the requester at once, and into the
 * digest the signed result will carry. */
static void on_chunk(struct pool_request *req, const char *name, const void *data, size_t size, void *userdata) {
        struct provider_job *j = userdata;
        struct provider *p = j->provider;
        uint8_t lie[JOB_CHUNK_MAX];
        const void *sent = data;
        int r;

        if (!p || size > JOB_CHUNK_MAX)
                return;
        if (p->corrupt_stream && size > 0) {
                /* testing.corrupt_stream: not what the digest says. */
                memcpy(lie, data, size);
                lie[0] ^= 0x20;
                sent = lie;
        }
        /* Only what went out counts: a chunk the network could not take
         * (its queue to that peer full) is neither sent nor vouched for;
         * the result still holds it. */
        r = job_send_chunk(p->network, j->from, j->job_id, j->stream_seq, name, sent, size, p->max_message_size);
        if (r < 0) {
                log_debug_errno(r, "Failed to stream a chunk of job %s to %.12s: %m", j->job_hex, j->requester_hex);
                return;
        }
        j->stream_seq++;
        job_stream_digest_add(&j->stream, name, data, size);
}

static void on_price_done(struct pool_request *req, struct pool_result *res, void *userdata) {
        struct provider_job *j = userdata;
        struct provider *p = j->provider;
        char error[JOB_ERROR_MAX];
        int r;

        j->request = NULL;
        if (!p) {
                job_free(j);
                return;
        }
        j->price_usec = now(CLOCK_MONOTONIC) - j->received_usec;

        if (res->status < 0) {
                snprintf(error, sizeof(error), "skill %s refused the job: %s", j->skill,
                         res->error ?: strerror(-res->status));
                r = res->status;
                goto refuse;
        }
        /* The skill's base price times this node's current demand for it,
         * as the gossiped record advertises. */
        j->price = pricing_apply(res->price, demand_multiplier(p->demand, j->skill));
        if (j->price > j->max_price) {
                snprintf(error, sizeof(error), "price %llu exceeds your maximum %llu", (unsigned long long) j->price,
                         (unsigned long long) j->max_price);
                r = -ERANGE;
                goto refuse;
        }
        r = accounts_admit(p->accounts, j->from, j->price, error, sizeof(error));
        if (r < 0)
                goto refuse;
        if (now(CLOCK_MONOTONIC) + EXEC_BUDGET_MIN_USEC > j->deadline_usec) {
                snprintf(error, sizeof(error), "deadline passed before skill %s could start the job", j->skill);
                r = -ETIMEDOUT;
                goto refuse;
        }

        r = skill_pool_submit(j->pool, POOL_EXECUTE, j->inputs, NULL, NULL, j->deadline_usec, on_execute_done, j,
                              &j->request);
        if (r < 0) {
                if (r == -EBUSY)
                        snprintf(error, sizeof(error), "skill %s is busy: its queue is full", j->skill);
                else
                        snprintf(error, sizeof(error), "skill %s cannot take the job: %s", j->skill, strerror(-r));
                goto refuse;
        }
        job_stream_digest_init(&j->stream);
        skill_pool_request_on_chunk(j->request, on_chunk, j);
        j->executing = true;
        p->executing++;
        job_emit(j, false, 0, 0);
        return;

refuse:
        job_finish(j, r, error, NULL);
        job_free(j);
}

/* Refusals before a job object exists. */
static void refuse(struct provider *p, const uint8_t from[WIRE_NODE_ID_SIZE], const uint8_t *job_id, int status,
                   const char *error) {
        char peer[2 * WIRE_NODE_ID_SIZE + 1];
        int r;

        hex(from, WIRE_NODE_ID_SIZE, peer);
        log_debug("Refusing a job from %.12s: %s.", peer, error);
        r = job_send_error(p->network, from, job_id, status, error, p->max_message_size);
        if (r < 0)
                log_debug_errno(r, "Failed to refuse a job of %.12s: %m", peer);
}

static bool requester_allowed(const struct provider *p, const uint8_t *from) {
        if (!p->allowed)
                return true;
        for (size_t i = 0; i < p->n_allowed; i++)
                if (memcmp(p->allowed[i], from, 32) == 0)
                        return true;
        return false;
}

void provider_handle_request(struct provider *p, const uint8_t from[32], Swarm__JobRequest *req) {
        _cleanup_free_ struct provider_job *j = NULL;
        struct swarm_values *inputs = NULL;
        const uint8_t *job_id = NULL;
        const char *reason = NULL;
        char error[JOB_ERROR_MAX];
        struct skill_pool *pool;
        uint64_t budget = 0, margin = 0, t = now(CLOCK_MONOTONIC);
        int r;

        if (!p || !from || !req)
                return;
        if (req->job_id.len == JOB_ID_SIZE && req->job_id.data)
                job_id = req->job_id.data;

        /* job_decode() checked all this already; a caller that built the
         * request in memory gets the same rules. */
        r = job_request_check(req, &reason);
        if (r >= 0)
                r = job_values_from_wire(req->inputs, req->n_inputs, shm_allocate, &inputs, &reason);
        if (r < 0) {
                snprintf(error, sizeof(error), "malformed job request: %s", reason ?: strerror(-r));
                refuse(p, from, job_id, r == -ENOMEM ? -ENOMEM : -EBADMSG, error);
                return;
        }

        pool = p->skills ? skills_get(p->skills, req->skill) : NULL;
        if (!requester_allowed(p, from)) {
                snprintf(error, sizeof(error), "this node takes jobs only from the requesters it lists "
                         "(jobs.allowed_requesters)");
                r = -EACCES;
        } else if (!pool || !skill_pool_info(pool)) {
                snprintf(error, sizeof(error), "skill %s is not offered by this node", req->skill);
                r = -ENOENT;
        } else if (p->lending && !lending_is_lending(p->lending)) {
                snprintf(error, sizeof(error), "this node is not lending right now");
                r = -EAGAIN;
        } else if (skill_pool_released(pool) || (skill_pool_warming(pool) && skill_pool_workers_alive(pool) == 0)) {
                /* Refused rather than queued: a model can take many seconds
                 * to load, and the requester is better served by another
                 * provider at once than by waiting on this one's deadline. */
                snprintf(error, sizeof(error), "skill %s is warming up: this node gave its GPU memory back while "
                         "it was not lending and is starting its workers again; try another provider", req->skill);
                r = -EAGAIN;
        } else if (req->deadline_ms == 0) {
                snprintf(error, sizeof(error), "the job has no deadline (deadline_ms is 0)");
                r = -ETIMEDOUT;
        } else {
                budget = (req->deadline_ms > JOB_DEADLINE_MAX_MS ? JOB_DEADLINE_MAX_MS : req->deadline_ms) * 1000u;
                margin = budget / DEADLINE_MARGIN_DIVISOR;
                if (margin < DEADLINE_MARGIN_MIN_USEC)
                        margin = DEADLINE_MARGIN_MIN_USEC;
                if (budget < margin + EXEC_BUDGET_MIN_USEC) {
                        snprintf(error, sizeof(error), "a deadline of %llu ms is too short to run the job and answer",
                                 (unsigned long long) req->deadline_ms);
                        r = -ETIMEDOUT;
                } else
                        r = 0;
        }
        if (r < 0) {
                swarm_values_free(inputs);
                refuse(p, from, job_id, r, error);
                return;
        }

        j = calloc(1, sizeof(*j));
        if (!j) {
                swarm_values_free(inputs);
                refuse(p, from, job_id, -ENOMEM, "out of memory");
                return;
        }
        memcpy(j->from, from, WIRE_NODE_ID_SIZE);
        memcpy(j->job_id, job_id, JOB_ID_SIZE);
        hex(j->job_id, JOB_ID_SIZE, j->job_hex);
        hex(j->from, WIRE_NODE_ID_SIZE, j->requester_hex);
        snprintf(j->skill, sizeof(j->skill), "%s", req->skill);
        j->pool = pool;
        j->inputs = inputs;
        j->max_price = req->max_price;
        j->received_usec = t;
        j->deadline_usec = t + budget - margin;

        r = skill_pool_submit(pool, POOL_PRICE, j->inputs, NULL, NULL, j->deadline_usec, on_price_done, j,
                              &j->request);
        if (r < 0) {
                if (r == -EBUSY)
                        snprintf(error, sizeof(error), "skill %s is busy: its queue is full", j->skill);
                else
                        snprintf(error, sizeof(error), "skill %s cannot price the job: %s", j->skill, strerror(-r));
                swarm_values_free(j->inputs);
                j->inputs = NULL;
                refuse(p, from, job_id, r, error);
                return;
        }

        j->provider = p;
        LIST_PREPEND(jobs, p->jobs, j);
        j = NULL;       /* the list owns it */
}

void provider_set_corrupt_stream(struct provider *p, bool corrupt) {
        if (p)
                p->corrupt_stream = corrupt;
}

int provider_set_allowed_requesters(struct provider *p, char *const *ids) {
        uint8_t (*list)[32] = NULL;
        size_t n = 0;

        for (char *const *i = ids; i && *i; i++)
                n++;
        if (n > 0) {
                list = calloc(n, sizeof(*list));
                if (!list)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++)
                        if (node_id_to_public_key(ids[i], list[i]) < 0) {
                                free(list);
                                return log_error_errno(-EINVAL, "jobs.allowed_requesters: \"%s\" is not a node id", ids[i]);
                        }
        }
        free(p->allowed);
        p->allowed = list;
        p->n_allowed = n;
        return 0;
}

int provider_new(sd_event *event, struct network *network, struct skills *skills, struct lending *lending,
                 uint64_t max_message_size, bool corrupt_results, struct provider **ret) {
        struct provider *p;

        if (!event || !network || !ret || max_message_size == 0)
                return -EINVAL;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->event = sd_event_ref(event);
        p->network = network;
        p->skills = skills;
        p->lending = lending;
        p->max_message_size = max_message_size;
        p->corrupt_results = corrupt_results;
        if (corrupt_results)
                log_warning("testing.corrupt_results is on: this node returns WRONG results on purpose "
                            "(a fault-injection switch for tests and demos). Requesters will reject them and "
                            "route around this node. Turn it off in the configuration unless you are testing.");
        *ret = p;
        return 0;
}

/* Lets go of every job in flight: the pool gets the cancel and calls back
 * later (or at once, for a queued one), when the orphaned job is freed. */
static void jobs_drop(struct provider *p, bool answer) {
        while (p->jobs) {
                struct provider_job *j = p->jobs;
                struct pool_request *req = j->request;

                if (answer) {
                        if (j->executing)
                                job_emit(j, true, -ESHUTDOWN, 0);
                        job_answer(j, p->network, p->max_message_size, -ESHUTDOWN,
                                   "this node is shutting down", NULL, false);
                }
                job_unlink(j);
                if (req)
                        pool_request_cancel(req);
                else
                        job_free(j);
        }
}

void provider_stop(struct provider *p) {
        if (p)
                jobs_drop(p, true);
}

struct provider *provider_free(struct provider *p) {
        if (!p)
                return NULL;
        jobs_drop(p, false);    /* none left after provider_stop() */
        sd_event_unref(p->event);
        free(p->allowed);
        free(p);
        return NULL;
}

void provider_set_accounts(struct provider *p, struct accounts *accounts, struct demand *demand) {
        if (!p)
                return;
        p->accounts = accounts;
        p->demand = demand;
}

void provider_set_event_callback(struct provider *p, provider_event_fn fn, void *userdata) {
        if (!p)
                return;
        p->event_fn = fn;
        p->event_userdata = userdata;
}

unsigned provider_active_jobs(const struct provider *p) {
        return p ? p->executing : 0;
}

static void on_request(void *userdata, const uint8_t from[WIRE_NODE_ID_SIZE], Swarm__JobRequest *request) {
        provider_handle_request(userdata, from, request);
}

void provider_attach(struct provider *p, struct jobs_channel *channel) {
        jobs_channel_on_request(channel, p ? on_request : NULL, p);
}

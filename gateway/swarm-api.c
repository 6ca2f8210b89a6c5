/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* swarm-api: the OpenAI-compatible HTTP gateway.  Speaks HTTP with
 * libmicrohttpd, driven from an sd-event loop (MHD's epoll fd and timeout),
 * and to the local swarmd only as any client does: jobs go through the
 * jobs socket (jobs-client.h), the model list comes from the control
 * socket (control-client.h).  Each request is one textgen job, routed,
 * verified and paid by swarmd; streamed requests get the provider's chunks
 * as Server-Sent Events, the last one only once the result is verified. */

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "control-client.h"
#include "jobs-client.h"
#include "list.h"
#include "log.h"
#include "macro.h"
#include "openai.h"
#include "shm.h"
#include "socket-path.h"
#include "time-util.h"

#define DEFAULT_LISTEN "127.0.0.1:8080"
#define DEFAULT_RUNTIME_DIR "/run/swarmharness"
#define BODY_MAX_DEFAULT (1024u * 1024u)
#define STREAMS_MAX_DEFAULT 256u
#define DEADLINE_DEFAULT_USEC (120 * USEC_PER_SEC)
/* A client that sends nothing (or reads nothing) this long is dropped;
 * a stream sends a comment this often so that it never looks idle. */
#define CONNECTION_TIMEOUT_S 30u
#define KEEPALIVE_USEC (10 * USEC_PER_SEC)
#define API_KEYS_MAX 1024u

enum route {
        ROUTE_NONE,
        ROUTE_MODELS,
        ROUTE_CHAT,
        ROUTE_COMPLETIONS,
};

struct gateway;

struct request {
        struct gateway *g;
        LIST_FIELDS(struct request, requests);
        struct MHD_Connection *conn;
        enum route route;
        char *body;
        size_t size;
        bool too_big;
        bool authorised;

        /* The job, once submitted. */
        struct openai_request job;
        uint64_t id;                    /* jobs-client id */
        bool submitted, finished, suspended, gone, cancelled;
        /* While suspended MHD does not watch the socket: we do, so that a
         * client that goes away cancels its job at once. */
        sd_event_source *hangup;
        char cid[48];
        int64_t created;

        /* Non-streamed: the response to queue when the job ends. */
        unsigned status;
        char *reply;

        /* Streamed: events waiting to be read by MHD. */
        bool streaming;
        char *out;
        size_t out_len, out_off;
        bool sent_first, stream_done;
        uint64_t last_event_usec;
        /* The text streamed since the last restart: at the end it must be
         * the verified text, else the client is told to start over and gets
         * the verified text whole. */
        char *shown;
        size_t shown_len;
};

struct gateway {
        sd_event *event;
        struct MHD_Daemon *mhd;
        sd_event_source *mhd_io, *mhd_timer, *kick, *jobs_io, *keepalive;
        struct jobs_client *jobs;
        const char *jobs_path, *control_path;
        struct request *requests;
        unsigned streams, streams_max;
        size_t body_max;
        uint64_t deadline_usec, next_id;
        uint8_t (*keys)[crypto_hash_sha256_BYTES];     /* API keys, hashed; none: no check */
        size_t n_keys;
        bool loopback;
};

/* ---- MHD in the sd-event loop ---- */

static void mhd_run(struct gateway *g) {
        MHD_UNSIGNED_LONG_LONG ms = 0;
        enum MHD_Result have = MHD_NO;

        /* A run can leave work for the next (a connection resumed in it is
         * only processed in the run after): on while MHD says there is
         * work now. */
        for (int i = 0; i < 8; i++) {
                MHD_run(g->mhd);
                have = MHD_get_timeout(g->mhd, &ms);
                if (have != MHD_YES || ms > 0)
                        break;
        }
        if (have == MHD_YES) {
                (void) sd_event_source_set_time_relative(g->mhd_timer, ms * USEC_PER_MSEC);
                (void) sd_event_source_set_enabled(g->mhd_timer, SD_EVENT_ONESHOT);
        } else
                (void) sd_event_source_set_enabled(g->mhd_timer, SD_EVENT_OFF);
}

static int on_mhd_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        mhd_run(userdata);
        return 0;
}

static int on_mhd_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        mhd_run(userdata);
        return 0;
}

static int on_kick(sd_event_source *s, void *userdata) {
        mhd_run(userdata);
        return 0;
}

/* After a resume: MHD must run to notice it. */
static void kick(struct gateway *g) {
        (void) sd_event_source_set_enabled(g->kick, SD_EVENT_ONESHOT);
}

static void request_cancel(struct request *q) {
        if (!q->submitted || q->finished || q->cancelled || !q->g->jobs)
                return;
        q->cancelled = true;
        log_info("Client of %s went away before its job finished; cancelling it.", q->cid);
        (void) jobs_client_cancel(q->g->jobs, q->id);
}

/* The client closed its end while we waited for the swarm: its job is
 * cancelled now (and so not paid for); its reply, -ECANCELED, lets MHD
 * find the closed socket and end the request. */
static int on_hangup(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct request *q = userdata;

        (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        request_cancel(q);
        return 0;
}

static void request_suspend(struct request *q) {
        const union MHD_ConnectionInfo *info;

        q->suspended = true;
        MHD_suspend_connection(q->conn);
        if (!q->hangup) {
                info = MHD_get_connection_info(q->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
                if (info)
                        (void) sd_event_add_io(q->g->event, &q->hangup, info->connect_fd, EPOLLRDHUP, on_hangup, q);
        } else
                (void) sd_event_source_set_enabled(q->hangup, SD_EVENT_ON);
}

static void request_resume(struct request *q) {
        if (q->suspended && !q->gone) {
                q->suspended = false;
                MHD_resume_connection(q->conn);
                kick(q->g);
        }
}

/* ---- Responses ---- */

static enum MHD_Result queue_json(struct MHD_Connection *conn, unsigned status, char *json) {
        struct MHD_Response *r;
        enum MHD_Result ret;

        if (!json)
                return MHD_NO;
        r = MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE);
        if (!r) {
                free(json);
                return MHD_NO;
        }
        (void) MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        ret = MHD_queue_response(conn, status, r);
        MHD_destroy_response(r);
        return ret;
}

static enum MHD_Result queue_error(struct MHD_Connection *conn, unsigned status, const char *message,
                                   const char *type, const char *param, const char *code) {
        return queue_json(conn, status, openai_error(message, type, param, code));
}

/* A failed job as OpenAI's status and error type. */
static unsigned status_of(int status, const char **type, const char **code) {
        *code = NULL;
        switch (status) {
        case -EINVAL:
        case -E2BIG:
                *type = "invalid_request_error";
                return MHD_HTTP_BAD_REQUEST;
        case -ENOENT:
        case -EHOSTUNREACH:
        case -ENOPKG:
                *type = "service_unavailable";
                *code = "no_provider";
                return MHD_HTTP_SERVICE_UNAVAILABLE;
        case -ETIMEDOUT:
                *type = "timeout";
                return MHD_HTTP_GATEWAY_TIMEOUT;
        case -EDQUOT:
        case -ERANGE:
                *type = "insufficient_quota";
                *code = "insufficient_quota";
                return MHD_HTTP_PAYMENT_REQUIRED;
        case -EBUSY:
        case -EAGAIN:
                *type = "rate_limit_error";
                return MHD_HTTP_TOO_MANY_REQUESTS;
        case -EOPNOTSUPP:
        case -ESHUTDOWN:
        case -ECONNRESET:
                *type = "service_unavailable";
                return MHD_HTTP_SERVICE_UNAVAILABLE;
        default:
                *type = "api_error";
                return MHD_HTTP_BAD_GATEWAY;
        }
}

/* ---- Streaming ---- */

static int stream_append(struct request *q, char *event) {
        char *grown;
        size_t n;

        if (!event)
                return -ENOMEM;
        n = strlen(event);
        /* What was read is dropped first. */
        if (q->out_off > 0) {
                memmove(q->out, q->out + q->out_off, q->out_len - q->out_off);
                q->out_len -= q->out_off;
                q->out_off = 0;
        }
        grown = realloc(q->out, q->out_len + n);
        if (!grown) {
                free(event);
                return -ENOMEM;
        }
        memcpy(grown + q->out_len, event, n);
        q->out = grown;
        q->out_len += n;
        free(event);
        q->last_event_usec = now(CLOCK_MONOTONIC);
        request_resume(q);
        return 0;
}

static struct openai_result result_head(struct request *q) {
        return (struct openai_result) {
                .id = q->cid,
                .created = q->created,
                .model = q->job.model,
        };
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
        struct request *q = cls;
        size_t n;

        if (q->out_off < q->out_len) {
                n = q->out_len - q->out_off < max ? q->out_len - q->out_off : max;
                memcpy(buf, q->out + q->out_off, n);
                q->out_off += n;
                return (ssize_t) n;
        }
        if (q->stream_done)
                return MHD_CONTENT_READER_END_OF_STREAM;
        /* Nothing yet: wait without spinning until a chunk comes. */
        request_suspend(q);
        return 0;
}

/* ---- Jobs ---- */

static struct request *request_by_id(struct gateway *g, uint64_t id) {
        LIST_FOREACH(requests, q, g->requests)
                if (q->submitted && !q->finished && q->id == id)
                        return q;
        return NULL;
}

static int shown_add(struct request *q, const void *data, size_t size) {
        char *grown = realloc(q->shown, q->shown_len + size + 1);

        if (!grown)
                return -ENOMEM;
        memcpy(grown + q->shown_len, data, size);
        q->shown = grown;
        q->shown_len += size;
        q->shown[q->shown_len] = '\0';
        return 0;
}

static void on_chunk(const struct jobs_chunk *k, void *userdata) {
        struct gateway *g = userdata;
        struct request *q = request_by_id(g, k->id);
        struct openai_result h;

        if (!q || !q->streaming || q->gone)
                return;
        h = result_head(q);
        if (k->restart) {
                (void) stream_append(q, openai_stream_event(q->job.kind, &h, NULL, 0, false, true, false, false));
                q->shown_len = 0;
        }
        if (!k->name || strcmp(k->name, "text") != 0 || k->size == 0)
                return;
        if (shown_add(q, k->data, k->size) < 0)
                return;
        (void) stream_append(q, openai_stream_event(q->job.kind, &h, k->data, k->size, !q->sent_first, false,
                                                    false, false));
        q->sent_first = true;
}

static void job_finished(struct request *q, struct jobs_result *res) {
        struct openai_result r = result_head(q);
        const char *type, *code;
        int64_t prompt = 0, completion = 0;
        unsigned status;

        q->finished = true;
        if (res->status == 0) {
                (void) swarm_values_get_string(res->outputs, "text", &r.text);
                (void) swarm_values_get_string(res->outputs, "finish_reason", &r.finish_reason);
                (void) swarm_values_get_int(res->outputs, "prompt_tokens_count", &prompt);
                (void) swarm_values_get_int(res->outputs, "generated_tokens_count", &completion);
                r.prompt_tokens = prompt;
                r.completion_tokens = completion;
                r.cost_ucredits = res->price;
                r.provider = res->provider;
        }
        if (q->streaming) {
                if (res->status == 0) {
                        const char *text = r.text ?: "";
                        size_t n = strlen(text);

                        /* The stream must add up to the verified text (a
                         * provider that streams none, or other text): if
                         * not, start over with the verified text whole. */
                        if (q->shown_len != n || (n > 0 && memcmp(q->shown ?: "", text, n) != 0)) {
                                if (q->shown_len > 0)
                                        (void) stream_append(q, openai_stream_event(q->job.kind, &r, NULL, 0, false,
                                                                                    true, false, false));
                                if (n > 0)
                                        (void) stream_append(q, openai_stream_event(q->job.kind, &r, text, n,
                                                                                    !q->sent_first, false, false,
                                                                                    false));
                                q->sent_first = true;
                        }
                        (void) stream_append(q, openai_stream_event(q->job.kind, &r, NULL, 0, !q->sent_first, false,
                                                                    true, q->job.include_usage));
                }
                else {
                        char *e, *event = NULL;

                        (void) status_of(res->status, &type, &code);
                        e = openai_error(res->error, type, NULL, code);

                        if (e && asprintf(&event, "data: %s\n\n", e) < 0)
                                event = NULL;
                        free(e);
                        (void) stream_append(q, event);
                }
                (void) stream_append(q, strdup("data: [DONE]\n\n"));
                q->stream_done = true;
                request_resume(q);
                return;
        }
        if (res->status == 0) {
                q->status = MHD_HTTP_OK;
                q->reply = openai_response(q->job.kind, &r);
        } else {
                status = status_of(res->status, &type, &code);
                q->status = status;
                q->reply = openai_error(res->error, type, NULL, code);
        }
        request_resume(q);
}

static int on_jobs_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct gateway *g = userdata;

        for (;;) {
                struct jobs_result res = {};
                struct request *q;
                int r = jobs_client_wait(g->jobs, 0, &res);

                if (r == -ETIMEDOUT)
                        return 0;
                if (r < 0) {
                        /* swarmd went away: every job in flight fails. */
                        log_error_errno(r, "Lost the jobs socket %s: %m", g->jobs_path);
                        LIST_FOREACH(requests, k, g->requests)
                                if (k->submitted && !k->finished) {
                                        struct jobs_result lost = { .id = k->id, .status = -ECONNRESET,
                                                                    .error = (char *) "swarmd went away" };
                                        job_finished(k, &lost);
                                }
                        g->jobs_io = sd_event_source_disable_unref(g->jobs_io);
                        g->jobs = jobs_client_free(g->jobs);
                        return 0;
                }
                q = request_by_id(g, res.id);
                if (q)
                        job_finished(q, &res);
                jobs_result_done(&res);
        }
}

static int jobs_connect(struct gateway *g) {
        int r;

        if (g->jobs)
                return 0;
        r = jobs_client_connect(g->jobs_path, &g->jobs);
        if (r < 0)
                return r;
        jobs_client_on_chunk(g->jobs, on_chunk, g);
        r = sd_event_add_io(g->event, &g->jobs_io, jobs_client_fd(g->jobs), EPOLLIN, on_jobs_io, g);
        if (r < 0)
                g->jobs = jobs_client_free(g->jobs);
        return r;
}

static int model_offered(struct gateway *g, const char *model);

/* Makes the job of q and sends it; an error response when that fails. */
static enum MHD_Result submit(struct request *q) {
        struct gateway *g = q->g;
        enum openai_kind kind = q->route == ROUTE_CHAT ? OPENAI_CHAT : OPENAI_COMPLETION;
        const char *param = NULL;
        char err[512];
        int r;

        r = openai_parse_request(kind, q->body ?: "", q->size, shm_allocate, &q->job, err, sizeof(err), &param);
        if (r == -ENOMEM)
                return queue_error(q->conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory", "api_error", NULL,
                                   NULL);
        if (r < 0)
                return queue_error(q->conn, MHD_HTTP_BAD_REQUEST, err, "invalid_request_error", param, NULL);
        r = model_offered(g, q->job.model);
        if (r == 0) {
                char message[400];

                snprintf(message, sizeof(message), "The model '%.255s' is not offered in the swarm now "
                         "(GET /v1/models lists those that are)", q->job.model);
                return queue_error(q->conn, MHD_HTTP_NOT_FOUND, message, "invalid_request_error", "model",
                                   "model_not_found");
        }
        if (r < 0)
                return queue_error(q->conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                                   r == -ENOTCONN ? "swarmd is not running" : "cannot ask swarmd for its peers",
                                   "service_unavailable", NULL, NULL);
        if (q->job.stream && g->streams >= g->streams_max)
                return queue_error(q->conn, MHD_HTTP_TOO_MANY_REQUESTS, "too many streams open; try again later",
                                   "rate_limit_error", NULL, NULL);
        r = jobs_connect(g);
        if (r < 0)
                return queue_error(q->conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                                   r == -ENOTCONN ? "swarmd is not running" : "cannot reach swarmd",
                                   "service_unavailable", NULL, NULL);

        q->id = ++g->next_id;
        q->created = (int64_t) time(NULL);
        snprintf(q->cid, sizeof(q->cid), "%s-%016" PRIx64 "%08" PRIx32, kind == OPENAI_CHAT ? "chatcmpl" : "cmpl",
                 q->id, randombytes_random());
        r = jobs_client_submit(g->jobs, &(struct jobs_submission) {
                .id = q->id,
                .skill = "textgen",
                .inputs = q->job.inputs,
                .deadline_usec = g->deadline_usec,
                .max_price = UINT64_MAX,
                .stream = q->job.stream,
        });
        if (r < 0)
                return queue_error(q->conn, r == -E2BIG ? MHD_HTTP_CONTENT_TOO_LARGE : MHD_HTTP_BAD_GATEWAY,
                                   r == -E2BIG ? "the request is too large for a job" : "cannot hand the job to swarmd",
                                   r == -E2BIG ? "invalid_request_error" : "api_error", NULL, NULL);
        q->submitted = true;

        if (q->job.stream) {
                struct MHD_Response *resp;
                enum MHD_Result ret;

                q->streaming = true;
                g->streams++;
                resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, q, NULL);
                if (!resp)
                        return MHD_NO;
                (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
                (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
                ret = MHD_queue_response(q->conn, MHD_HTTP_OK, resp);
                MHD_destroy_response(resp);
                return ret;
        }
        /* Answered when the job ends (job_finished()). */
        request_suspend(q);
        return MHD_YES;
}

/* The textgen models the swarm offers now, from the control socket's peer
 * list, one entry per model identity; *reply owns the strings. */
static int offered_models(struct gateway *g, Swarm__ControlReply **reply, struct openai_model **ret, size_t *ret_n) {
        Swarm__ControlRequest req = SWARM__CONTROL_REQUEST__INIT;
        Swarm__PeersRequest peers = SWARM__PEERS_REQUEST__INIT;
        struct openai_model *m = NULL;
        size_t n = 0;
        int r;

        req.request_case = SWARM__CONTROL_REQUEST__REQUEST_PEERS;
        req.peers = &peers;
        r = control_client_call(g->control_path, &req, reply);
        if (r < 0)
                return r;
        for (size_t i = 0; i < (*reply)->n_peers; i++) {
                const Swarm__PeerInfo *p = (*reply)->peers[i];

                if (p->state != SWARM__MEMBER_STATE__ALIVE || !p->lending)
                        continue;
                for (size_t s = 0; s < p->n_skills; s++) {
                        const Swarm__SkillOffer *o = p->skills[s];
                        const char *name = o->model && o->model[0] ? o->model : o->variant;
                        size_t k;

                        if (strcmp(o->name, "textgen") != 0 || !name || !name[0])
                                continue;
                        /* The strings stay *reply's. */
                        for (k = 0; k < n; k++)
                                if (strcmp(m[k].model_id, o->variant ?: "") == 0)
                                        break;
                        if (k == n) {
                                struct openai_model *grown = reallocarray(m, n + 1, sizeof(*m));

                                if (!grown)
                                        continue;
                                m = grown;
                                m[n++] = (struct openai_model) { .id = name, .model_id = o->variant ?: "",
                                                                 .price_min = o->price, .price_max = o->price,
                                                                 .price_unit = o->price_unit };
                        }
                        m[k].providers++;
                        m[k].price_min = o->price < m[k].price_min ? o->price : m[k].price_min;
                        m[k].price_max = o->price > m[k].price_max ? o->price : m[k].price_max;
                }
        }
        *ret = m;
        *ret_n = n;
        return 0;
}

/* GET /v1/models. */
static enum MHD_Result models(struct request *q) {
        Swarm__ControlReply *reply = NULL;
        struct openai_model *m = NULL;
        size_t n = 0;
        char *json;
        int r;

        r = offered_models(q->g, &reply, &m, &n);
        if (r < 0)
                return queue_error(q->conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                                   r == -ENOTCONN ? "swarmd is not running" : "cannot ask swarmd for its peers",
                                   "service_unavailable", NULL, NULL);
        json = openai_models(m, n, (int64_t) time(NULL));
        free(m);
        swarm__control_reply__free_unpacked(reply, NULL);
        return queue_json(q->conn, MHD_HTTP_OK, json);
}

/* Whether the swarm offers model (by name or identity) now: 1, 0, or
 * -errno when swarmd cannot say. */
static int model_offered(struct gateway *g, const char *model) {
        Swarm__ControlReply *reply = NULL;
        struct openai_model *m = NULL;
        size_t n = 0;
        int r;

        r = offered_models(g, &reply, &m, &n);
        if (r < 0)
                return r;
        r = 0;
        for (size_t i = 0; i < n && !r; i++)
                r = strcmp(m[i].id, model) == 0 || strcmp(m[i].model_id, model) == 0;
        free(m);
        swarm__control_reply__free_unpacked(reply, NULL);
        return r;
}

/* ---- Access ---- */

static bool authorised(struct gateway *g, struct MHD_Connection *conn) {
        const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        uint8_t hash[crypto_hash_sha256_BYTES];
        bool ok = false;

        if (g->n_keys == 0)
                return true;
        if (!h || strncmp(h, "Bearer ", 7) != 0)
                return false;
        crypto_hash_sha256(hash, (const uint8_t *) h + 7, strlen(h + 7));
        for (size_t i = 0; i < g->n_keys; i++)
                ok |= sodium_memcmp(hash, g->keys[i], sizeof(hash)) == 0;
        return ok;
}

static enum route route_of(const char *method, const char *url, bool *bad_method) {
        enum route r = strcmp(url, "/v1/models") == 0 ? ROUTE_MODELS :
                       strcmp(url, "/v1/chat/completions") == 0 ? ROUTE_CHAT :
                       strcmp(url, "/v1/completions") == 0 ? ROUTE_COMPLETIONS : ROUTE_NONE;

        *bad_method = r != ROUTE_NONE && strcmp(method, r == ROUTE_MODELS ? "GET" : "POST") != 0;
        return r;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
        struct gateway *g = cls;
        struct request *q = *con_cls;
        bool bad_method;

        if (!q) {
                q = calloc(1, sizeof(*q));
                if (!q)
                        return MHD_NO;
                q->g = g;
                q->conn = conn;
                q->route = route_of(method, url, &bad_method);
                q->authorised = authorised(g, conn);
                LIST_PREPEND(requests, g->requests, q);
                *con_cls = q;
                if (bad_method)
                        q->status = MHD_HTTP_METHOD_NOT_ALLOWED;
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                /* The body, bounded: past the limit it is read and dropped. */
                if (!q->too_big && q->size + *upload_data_size <= g->body_max) {
                        char *grown = realloc(q->body, q->size + *upload_data_size + 1);

                        if (!grown)
                                return MHD_NO;
                        memcpy(grown + q->size, upload_data, *upload_data_size);
                        q->body = grown;
                        q->size += *upload_data_size;
                        q->body[q->size] = '\0';
                } else
                        q->too_big = true;
                *upload_data_size = 0;
                return MHD_YES;
        }

        /* The whole request is in. */
        if (q->reply) {
                enum MHD_Result ret = queue_json(conn, q->status, TAKE_PTR(q->reply));

                return ret;
        }
        if (q->submitted)
                return MHD_YES;         /* resumed before the job ended: wait on */
        if (!q->authorised)
                return queue_error(conn, MHD_HTTP_UNAUTHORIZED, "a valid API key is required (Authorization: "
                                   "Bearer KEY)", "invalid_request_error", NULL, "invalid_api_key");
        if (q->status == MHD_HTTP_METHOD_NOT_ALLOWED)
                return queue_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed on this path",
                                   "invalid_request_error", NULL, NULL);
        if (q->route == ROUTE_NONE)
                return queue_error(conn, MHD_HTTP_NOT_FOUND, "unknown path: the API is /v1/models, "
                                   "/v1/chat/completions and /v1/completions", "invalid_request_error", NULL,
                                   "unknown_url");
        if (q->too_big)
                return queue_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "the request body is too large",
                                   "invalid_request_error", NULL, NULL);
        if (q->route == ROUTE_MODELS)
                return models(q);
        return submit(q);
}

/* The connection is done, or gone: a job still running is cancelled (and
 * so not paid for). */
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
        struct gateway *g = cls;
        struct request *q = *con_cls;

        if (!q)
                return;
        *con_cls = NULL;
        q->gone = true;
        q->hangup = sd_event_source_disable_unref(q->hangup);
        request_cancel(q);
        if (q->streaming)
                g->streams--;
        LIST_REMOVE(requests, g->requests, q);
        openai_request_done(&q->job);
        free(q->body);
        free(q->reply);
        free(q->out);
        free(q->shown);
        free(q);
}

/* Streams that have said nothing for a while get an SSE comment: the client
 * and MHD see the connection alive. */
static int on_keepalive(sd_event_source *s, uint64_t usec, void *userdata) {
        struct gateway *g = userdata;
        uint64_t t = now(CLOCK_MONOTONIC);

        LIST_FOREACH(requests, q, g->requests)
                if (q->streaming && !q->stream_done && !q->gone && t - q->last_event_usec >= KEEPALIVE_USEC)
                        (void) stream_append(q, strdup(": waiting for the swarm\n\n"));
        (void) sd_event_source_set_time_relative(s, KEEPALIVE_USEC);
        return 0;
}

/* ---- Set-up ---- */

static int load_keys(struct gateway *g, const char *path) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        _cleanup_free_ char *line = NULL;
        size_t size = 0, lineno = 0;

        if (!f)
                return log_error_errno(negative_errno(), "--api-keys %s: %m", path);
        g->keys = calloc(API_KEYS_MAX, sizeof(*g->keys));
        if (!g->keys)
                return log_oom();
        while (getline(&line, &size, f) >= 0) {
                const char *hex = line;
                size_t bin_len = 0;

                lineno++;
                line[strcspn(line, "\r\n")] = '\0';
                if (!line[0] || line[0] == '#')
                        continue;
                if (strncmp(hex, "sha256:", 7) == 0)
                        hex += 7;
                if (g->n_keys >= API_KEYS_MAX ||
                    sodium_hex2bin(g->keys[g->n_keys], sizeof(g->keys[0]), hex, strlen(hex), NULL, &bin_len, NULL) < 0 ||
                    bin_len != sizeof(g->keys[0]))
                        return log_error_errno(EINVAL, "%s:%zu: expected sha256:HEX (64 hex digits), the hash of a key "
                                               "(swarm-api --hash-key KEY prints it)", path, lineno);
                g->n_keys++;
        }
        if (g->n_keys == 0)
                return log_error_errno(EINVAL, "%s: no keys in it", path);
        return 0;
}

static int parse_listen(const char *addr, struct sockaddr_in *ret) {
        _cleanup_free_ char *host = NULL;
        struct sockaddr_in sin = { .sin_family = AF_INET };
        const char *colon = strrchr(addr, ':');
        char *end;
        long port;

        if (!colon)
                return log_error_errno(EINVAL, "--listen %s: expected ADDRESS:PORT", addr);
        host = strndup(addr, (size_t) (colon - addr));
        errno = 0;
        port = strtol(colon + 1, &end, 10);
        if (!host || inet_pton(AF_INET, host, &sin.sin_addr) != 1 || errno || *end || end == colon + 1 ||
            port < 0 || port > 65535)
                return log_error_errno(EINVAL, "--listen %s: expected an IPv4 ADDRESS:PORT", addr);
        sin.sin_port = htons((uint16_t) port);
        *ret = sin;
        return 0;
}

static int listen_on(const char *addr, const struct sockaddr_in *sin) {
        int fd, one = 1;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_error_errno(errno, "socket: %m");
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (const struct sockaddr *) sin, sizeof(*sin)) < 0 || listen(fd, 128) < 0) {
                int r = -errno;

                close(fd);
                return log_error_errno(r, "Cannot listen on %s: %m", addr);
        }
        return fd;
}

/* Whether an inherited socket (systemd socket activation) is on loopback. */
static bool fd_is_loopback(int fd) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);

        if (getsockname(fd, (struct sockaddr *) &ss, &len) < 0)
                return false;
        if (ss.ss_family == AF_INET)
                return (ntohl(((struct sockaddr_in *) &ss)->sin_addr.s_addr) >> 24) == 127;
        if (ss.ss_family == AF_INET6)
                return IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *) &ss)->sin6_addr);
        return ss.ss_family == AF_UNIX;
}

static void help(void) {
        printf("swarm-api [OPTIONS]\n\n"
               "The OpenAI-compatible HTTP API of the local swarmd: point an OpenAI client at\n"
               "http://127.0.0.1:8080/v1.\n\n"
               "  -l, --listen ADDR:PORT      where to listen (default %s; systemd's socket,\n"
               "                              when started by swarm-api.socket)\n"
               "      --jobs-socket PATH      swarmd's jobs socket (default $SWARM_JOBS_SOCKET, else\n"
               "                              %s/jobs.sock)\n"
               "      --control-socket PATH   swarmd's control socket (default $SWARM_CONTROL_SOCKET,\n"
               "                              else next to the jobs socket)\n"
               "      --api-keys FILE         accept only requests bearing one of these keys (lines\n"
               "                              sha256:HEX); required off loopback\n"
               "      --hash-key KEY          print the line for KEY in an --api-keys file, and exit\n"
               "      --max-streams N         streamed responses at once (default %u)\n"
               "      --max-body BYTES        largest request body (default %u)\n"
               "      --deadline SECONDS      per request (default %u)\n"
               "  -h, --help                  this text\n",
               DEFAULT_LISTEN, DEFAULT_RUNTIME_DIR, STREAMS_MAX_DEFAULT, BODY_MAX_DEFAULT,
               (unsigned) (DEADLINE_DEFAULT_USEC / USEC_PER_SEC));
}

enum {
        ARG_JOBS = 0x100,
        ARG_CONTROL,
        ARG_KEYS,
        ARG_HASH_KEY,
        ARG_STREAMS,
        ARG_BODY,
        ARG_DEADLINE,
};

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "listen", required_argument, NULL, 'l' },
                { "jobs-socket", required_argument, NULL, ARG_JOBS },
                { "control-socket", required_argument, NULL, ARG_CONTROL },
                { "api-keys", required_argument, NULL, ARG_KEYS },
                { "hash-key", required_argument, NULL, ARG_HASH_KEY },
                { "max-streams", required_argument, NULL, ARG_STREAMS },
                { "max-body", required_argument, NULL, ARG_BODY },
                { "deadline", required_argument, NULL, ARG_DEADLINE },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        struct gateway g = {
                .streams_max = STREAMS_MAX_DEFAULT,
                .body_max = BODY_MAX_DEFAULT,
                .deadline_usec = DEADLINE_DEFAULT_USEC,
        };
        _cleanup_free_ char *jobs_default = NULL, *control_default = NULL;
        const char *listen_addr = NULL, *keys_path = NULL;
        int c, fd = -1, r, n_fds;
        char *end;
        unsigned long x;

        log_setup("swarm-api", LOG_TARGET_AUTO);
        if (sodium_init() < 0)
                return EXIT_FAILURE;
        while ((c = getopt_long(argc, argv, "l:h", options, NULL)) >= 0)
                switch (c) {
                case 'l':
                        listen_addr = optarg;
                        break;
                case ARG_JOBS:
                        g.jobs_path = optarg;
                        break;
                case ARG_CONTROL:
                        g.control_path = optarg;
                        break;
                case ARG_KEYS:
                        keys_path = optarg;
                        break;
                case ARG_HASH_KEY: {
                        uint8_t hash[crypto_hash_sha256_BYTES];
                        char hex[2 * sizeof(hash) + 1];

                        crypto_hash_sha256(hash, (const uint8_t *) optarg, strlen(optarg));
                        printf("sha256:%s\n", sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash)));
                        return EXIT_SUCCESS;
                }
                case ARG_STREAMS:
                case ARG_BODY:
                case ARG_DEADLINE:
                        errno = 0;
                        x = strtoul(optarg, &end, 10);
                        if (errno || *end || x == 0 ||
                            x > (c == ARG_BODY ? 64ul << 20 : c == ARG_DEADLINE ? 86400ul : 1000000ul)) {
                                log_error("--%s %s: expected a positive number%s", options[c - ARG_JOBS + 1].name,
                                          optarg, c == ARG_BODY ? " of bytes up to 64 MiB" : "");
                                return 2;
                        }
                        if (c == ARG_STREAMS)
                                g.streams_max = (unsigned) x;
                        else if (c == ARG_BODY)
                                g.body_max = x;
                        else
                                g.deadline_usec = x * USEC_PER_SEC;
                        break;
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                default:
                        return 2;
                }
        if (optind < argc) {
                log_error("Unexpected argument \"%s\".", argv[optind]);
                return 2;
        }

        if (!g.jobs_path) {
                const char *e = getenv("SWARM_JOBS_SOCKET");

                if (e && e[0])
                        g.jobs_path = e;
                else if (asprintf(&jobs_default, "%s/%s", DEFAULT_RUNTIME_DIR, JOBS_SOCKET_NAME) >= 0)
                        g.jobs_path = jobs_default;
        }
        if (!g.control_path) {
                const char *e = getenv("SWARM_CONTROL_SOCKET"), *slash = strrchr(g.jobs_path ?: "", '/');

                if (e && e[0])
                        g.control_path = e;
                else if (slash && asprintf(&control_default, "%.*s/%s", (int) (slash - g.jobs_path), g.jobs_path,
                                           CONTROL_SOCKET_NAME) >= 0)
                        g.control_path = control_default;
        }
        if (!g.jobs_path || !g.control_path)
                return log_oom(), EXIT_FAILURE;
        if (keys_path && load_keys(&g, keys_path) < 0)
                return EXIT_FAILURE;

        n_fds = sd_listen_fds(true);
        if (n_fds > 1) {
                log_error("Got %d sockets from systemd; expected one.", n_fds);
                return EXIT_FAILURE;
        }
        if (n_fds == 1 && !listen_addr) {
                fd = SD_LISTEN_FDS_START;
                g.loopback = fd_is_loopback(fd);
        } else {
                struct sockaddr_in sin;

                if (parse_listen(listen_addr ?: DEFAULT_LISTEN, &sin) < 0)
                        return 2;
                g.loopback = (ntohl(sin.sin_addr.s_addr) >> 24) == 127;
        }
        /* Checked before binding: such a socket is never opened at all. */
        if (!g.loopback && g.n_keys == 0) {
                log_error("Listening beyond loopback without --api-keys would let anyone spend this node's "
                          "credits; give an --api-keys file.");
                return 78;      /* EX_CONFIG */
        }
        if (fd < 0) {
                struct sockaddr_in sin;

                (void) parse_listen(listen_addr ?: DEFAULT_LISTEN, &sin);
                fd = listen_on(listen_addr ?: DEFAULT_LISTEN, &sin);
                if (fd < 0)
                        return EXIT_FAILURE;
        }

        (void) signal(SIGPIPE, SIG_IGN);
        r = sd_event_default(&g.event);
        if (r < 0)
                return log_error_errno(r, "sd-event: %m"), EXIT_FAILURE;
        g.mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                                 on_access, &g,
                                 MHD_OPTION_LISTEN_SOCKET, fd,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, &g,
                                 MHD_OPTION_CONNECTION_TIMEOUT, CONNECTION_TIMEOUT_S,
                                 MHD_OPTION_CONNECTION_LIMIT, g.streams_max + 64u,
                                 MHD_OPTION_END);
        if (!g.mhd)
                return log_error_errno(EIO, "Cannot start the HTTP server."), EXIT_FAILURE;
        r = sd_event_add_io(g.event, &g.mhd_io, MHD_get_daemon_info(g.mhd, MHD_DAEMON_INFO_EPOLL_FD)->epoll_fd,
                            EPOLLIN, on_mhd_io, &g);
        if (r >= 0)
                r = sd_event_add_time_relative(g.event, &g.mhd_timer, CLOCK_MONOTONIC, 0, 0, on_mhd_timer, &g);
        if (r >= 0)
                r = sd_event_add_defer(g.event, &g.kick, on_kick, &g);
        if (r >= 0)
                r = sd_event_add_time_relative(g.event, &g.keepalive, CLOCK_MONOTONIC, KEEPALIVE_USEC, 0,
                                               on_keepalive, &g);
        if (r >= 0)
                r = sd_event_source_set_enabled(g.keepalive, SD_EVENT_ON);
        if (r >= 0)
                r = sd_event_add_signal(g.event, NULL, SIGTERM | SD_EVENT_SIGNAL_PROCMASK, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(g.event, NULL, SIGINT | SD_EVENT_SIGNAL_PROCMASK, NULL, NULL);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the event loop: %m"), EXIT_FAILURE;
        (void) sd_event_source_set_enabled(g.kick, SD_EVENT_OFF);
        mhd_run(&g);

        log_info("Serving the OpenAI API%s, jobs through %s.", g.n_keys ? " (API keys required)" : "", g.jobs_path);
        (void) sd_notify(false, "READY=1\nSTATUS=Serving the OpenAI API");
        r = sd_event_loop(g.event);

        /* Every suspended connection back before MHD stops (its API). */
        LIST_FOREACH(requests, q, g.requests)
                request_resume(q);
        MHD_stop_daemon(g.mhd);
        sd_event_source_disable_unref(g.mhd_io);
        sd_event_source_disable_unref(g.mhd_timer);
        sd_event_source_disable_unref(g.kick);
        sd_event_source_disable_unref(g.keepalive);
        sd_event_source_disable_unref(g.jobs_io);
        jobs_client_free(g.jobs);
        sd_event_unref(g.event);
        free(g.keys);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

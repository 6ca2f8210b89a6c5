/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "jobs-socket.h"
#include "list.h"
#include "log.h"
#include "macro.h"
#include "socket-path.h"
#include "requester.h"
#include "utf8-valid.h"
#include "time-util.h"
#include "worker-proto.h"

#define CLIENTS_MAX 128u
/* Messages read per wake-up, so one busy client cannot starve the loop. */
#define RECV_BURST 64
/* Replies queued for a client that does not read them: one per job in
 * flight plus some error replies; beyond that it is dropped. */
#define QUEUE_MAX (JOBS_PER_CLIENT_MAX + 64u + STREAM_QUEUE_MAX)
/* Streamed chunks waiting for a slow reader, over all its jobs. */
#define STREAM_QUEUE_MAX 16384u
#define SKILL_NAME_MAX 63u

struct client;

/* One submitted job.  It is on its client's list while the client is
 * connected, on the socket's orphan list after the client has gone and
 * until the requester calls back. */
struct job {
        struct jobs_socket *owner;
        struct client *client;          /* NULL: orphaned */
        LIST_FIELDS(struct job, jobs);  /* its client's, or the orphans */
        uint64_t client_id;             /* the id the client chose */
        uint64_t id;                    /* the requester's */
        bool started;                   /* requester_submit() accepted it */
        struct swarm_values *inputs;    /* lent to the requester until done */
        char *key;                      /* JOBS_OPTION_KEY, or NULL */
        uid_t uid;
};

struct reply {
        struct reply *next;
        struct wmsg m;
};

struct client {
        struct jobs_socket *owner;
        LIST_FIELDS(struct client, clients);
        int fd;
        pid_t pid;
        uid_t uid;                      /* whose kept results it may collect */
        sd_event_source *io, *defer_free;
        struct job *jobs;
        unsigned n_jobs;
        struct reply *queue, *queue_tail;
        unsigned n_queued;
        bool broken;                    /* being dropped; sends nothing more */
};

struct jobs_socket {
        sd_event *event;
        int fd;
        char *path;
        sd_event_source *io;
        struct requester *requester;
        struct client *clients;
        unsigned n_clients;
        struct job *orphans;
};

char *jobs_socket_path(const char *state_dir) {
        return socket_path(state_dir, JOBS_SOCKET_NAME);
}

static void job_free(struct job *j) {
        if (!j)
                return;
        swarm_values_free(j->inputs);
        free(j->key);
        free(j);
}

/* Takes j off whichever list holds it. */
static void job_detach(struct job *j) {
        if (j->client) {
                LIST_REMOVE(jobs, j->client->jobs, j);
                j->client->n_jobs--;
                j->client = NULL;
        } else
                LIST_REMOVE(jobs, j->owner->orphans, j);
}

/* ---- Clients ---- */

static void client_free(struct client *cl) {
        struct jobs_socket *js = cl->owner;

        LIST_REMOVE(clients, js->clients, cl);
        js->n_clients--;

        /* Its jobs are no longer wanted.  Orphan each before cancelling:
         * the requester may call back from inside requester_cancel(). */
        while (cl->jobs) {
                struct job *j = cl->jobs;

                job_detach(j);
                LIST_PREPEND(jobs, js->orphans, j);
                if (j->started && js->requester)
                        requester_cancel(js->requester, j->id);
        }
        while (cl->queue) {
                struct reply *q = cl->queue;

                cl->queue = q->next;
                wmsg_done(&q->m);
                free(q);
        }
        sd_event_source_disable_unref(cl->io);
        sd_event_source_disable_unref(cl->defer_free);
        if (cl->fd >= 0)
                close(cl->fd);
        free(cl);
}

static int on_client_defer_free(sd_event_source *s, void *userdata) {
        client_free(userdata);
        return 0;
}

/* Drops a client from wherever we are: the freeing is deferred to the loop,
 * so that callers up the stack still hold a valid pointer. */
static void client_drop(struct client *cl, int level, const char *why) {
        if (cl->broken)
                return;
        cl->broken = true;
        if (why)
                log_full(level, "Dropping job client (pid %d, %u jobs in flight): %s.", (int) cl->pid, cl->n_jobs,
                         why);
        (void) sd_event_source_set_enabled(cl->io, SD_EVENT_OFF);
        if (sd_event_add_defer(cl->owner->event, &cl->defer_free, on_client_defer_free, cl) < 0)
                /* Nothing better to do: the loop will not call us back for
                 * this client again, free it now. */
                client_free(cl);
}

static void client_update_events(struct client *cl) {
        if (!cl->broken)
                (void) sd_event_source_set_io_events(cl->io, cl->queue ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

/* Sends what is queued, oldest first, until the socket is full. */
static void client_flush(struct client *cl) {
        while (cl->queue && !cl->broken) {
                struct reply *q = cl->queue;
                int r = wmsg_send(cl->fd, &q->m);

                if (r == -EAGAIN)
                        break;
                if (r < 0) {
                        client_drop(cl, r == -ECONNRESET ? LOG_DEBUG : LOG_WARNING,
                                    r == -ECONNRESET ? "it went away" : "cannot send it a reply");
                        return;
                }
                cl->queue = q->next;
                if (!cl->queue)
                        cl->queue_tail = NULL;
                cl->n_queued--;
                wmsg_done(&q->m);
                free(q);
        }
        client_update_events(cl);
}

/* Sends m or queues it; takes what m owns in every case. */
static void client_reply(struct client *cl, struct wmsg *m) {
        struct reply *q;
        int r;

        if (cl->broken) {
                wmsg_done(m);
                return;
        }
        if (!cl->queue) {
                r = wmsg_send(cl->fd, m);
                if (r == -E2BIG) {
                        /* The result does not fit a message: say so instead. */
                        uint64_t id = m->job_id;

                        log_warning("Result of job %" PRIu64 " is too large for the jobs socket.", id);
                        wmsg_done(m);
                        *m = (struct wmsg) { .type = JOBS_MSG_SUBMIT_REPLY, .job_id = id, .status = -E2BIG };
                        m->text[JOBS_TEXT_ERROR] = strdup("the verified result is too large to hand back");
                        r = wmsg_send(cl->fd, m);
                }
                if (r != -EAGAIN) {
                        wmsg_done(m);
                        if (r < 0)
                                client_drop(cl, r == -ECONNRESET ? LOG_DEBUG : LOG_WARNING,
                                            r == -ECONNRESET ? "it went away" : "cannot send it a reply");
                        return;
                }
        }
        if (cl->n_queued >= QUEUE_MAX) {
                wmsg_done(m);
                client_drop(cl, LOG_WARNING, "it does not read its replies");
                return;
        }
        q = calloc(1, sizeof(*q));
        if (!q) {
                wmsg_done(m);
                client_drop(cl, LOG_ERR, "out of memory");
                return;
        }
        q->m = *m;
        *m = (struct wmsg) {};
        if (cl->queue_tail)
                cl->queue_tail->next = q;
        else
                cl->queue = q;
        cl->queue_tail = q;
        cl->n_queued++;
        client_update_events(cl);
}

static void client_reply_error(struct client *cl, uint64_t job_id, int status, const char *format, ...)
        _printf_(4, 5);

static void client_reply_error(struct client *cl, uint64_t job_id, int status, const char *format, ...) {
        struct wmsg m = { .type = JOBS_MSG_SUBMIT_REPLY, .job_id = job_id, .status = status };
        va_list ap;

        va_start(ap, format);
        if (vasprintf(&m.text[JOBS_TEXT_ERROR], format, ap) < 0)
                m.text[JOBS_TEXT_ERROR] = NULL;
        va_end(ap);
        client_reply(cl, &m);
}

/* ---- Jobs ---- */

static struct swarm_values *metrics_of(const struct job_outcome *o) {
        struct swarm_values *v = swarm_values_new();
        int r;

        if (!v)
                return NULL;
        r = swarm_values_set_string(v, JOBS_METRIC_PROVIDER, o->provider[0] ? o->provider : "-");
        if (r >= 0)
                r = swarm_values_set_int(v, JOBS_METRIC_PRICE, (int64_t) o->price);
        if (r >= 0)
                r = swarm_values_set_int(v, JOBS_METRIC_ATTEMPTS, o->attempts);
        if (r >= 0)
                r = swarm_values_set_int(v, JOBS_METRIC_REROUTED, o->rerouted);
        if (r >= 0)
                r = swarm_values_set_int(v, JOBS_METRIC_REJECTED, o->rejected);
        if (r >= 0)
                r = swarm_values_set_int(v, JOBS_METRIC_LATENCY_US, (int64_t) o->latency_usec);
        if (r >= 0 && o->unchecked)
                r = swarm_values_set_int(v, JOBS_METRIC_UNCHECKED, 1);
        if (r < 0) {
                swarm_values_free(v);
                return NULL;
        }
        return v;
}

static void on_job_done(uint64_t id, struct job_outcome *o, void *userdata) {
        struct job *j = userdata;
        struct client *cl = j->client;
        struct wmsg m;

        job_detach(j);
        if (!cl || cl->broken) {
                job_free(j);    /* nobody is waiting for it */
                return;
        }

        m = (struct wmsg) {
                .type = JOBS_MSG_SUBMIT_REPLY,
                .job_id = j->client_id,
                .status = o->status > 0 ? -EIO : o->status,
        };
        if (m.status < 0)
                m.text[JOBS_TEXT_ERROR] = strdup(o->error && o->error[0] ? o->error : strerror(-m.status));
        else
                /* Only a verified result reaches us (requester.h). */
                m.values[0] = TAKE_PTR(o->outputs);
        m.values[1] = metrics_of(o);
        job_free(j);
        client_reply(cl, &m);
}

static void on_job_chunk(uint64_t id, const struct job_chunk *c, void *userdata) {
        struct job *j = userdata;
        struct client *cl = j->client;
        struct wmsg m;

        if (!cl || cl->broken)
                return;
        m = (struct wmsg) {
                .type = JOBS_MSG_CHUNK,
                .job_id = j->client_id,
                .number = c->seq,
                .status = c->restart ? 1 : 0,
        };
        if (c->name) {
                m.values[0] = swarm_values_new();
                if (!m.values[0] || swarm_values_set_bytes(m.values[0], c->name, c->data, c->size) < 0) {
                        wmsg_done(&m);
                        return;         /* a preview: the result still holds it */
                }
        }
        client_reply(cl, &m);
}

static bool key_running(struct jobs_socket *js, uid_t uid, const char *key) {
        LIST_FOREACH(clients, c, js->clients)
                LIST_FOREACH(jobs, j, c->jobs)
                        if (j->key && j->uid == uid && strcmp(j->key, key) == 0)
                                return true;
        LIST_FOREACH(jobs, j, js->orphans)
                if (j->key && j->uid == uid && strcmp(j->key, key) == 0)
                        return true;
        return false;
}

/* A client gives up on one of its jobs (an HTTP client went away, say):
 * the requester ends it with -ECANCELED, which is its reply. */
static void client_cancel(struct client *cl, uint64_t client_id) {
        LIST_FOREACH(jobs, j, cl->jobs)
                if (j->client_id == client_id && j->started) {
                        requester_cancel(cl->owner->requester, j->id);
                        return;
                }
}

/* Checks a SUBMIT and hands it to the requester; every refusal is a reply. */
static void client_submit(struct client *cl, struct wmsg *m) {
        struct jobs_socket *js = cl->owner;
        const char *skill = m->text[JOBS_TEXT_SKILL];
        int64_t deadline_ms = 0, hedge = 0, stream = 0;
        const char *key = NULL;
        struct job_spec spec;
        struct job *j;
        int r;

        if (!skill || !skill[0] || strlen(skill) > SKILL_NAME_MAX)
                return client_reply_error(cl, m->job_id, -EINVAL, "no skill named, or a name over %u characters",
                                          SKILL_NAME_MAX);
        if (m->values[1]) {
                r = swarm_values_get_int(m->values[1], JOBS_OPTION_DEADLINE_MS, &deadline_ms);
                if (r < 0 && r != -ENOENT)
                        return client_reply_error(cl, m->job_id, -EINVAL, "option %s must be an integer",
                                                  JOBS_OPTION_DEADLINE_MS);
                r = swarm_values_get_int(m->values[1], JOBS_OPTION_HEDGE, &hedge);
                if (r < 0 && r != -ENOENT)
                        return client_reply_error(cl, m->job_id, -EINVAL, "option %s must be an integer",
                                                  JOBS_OPTION_HEDGE);
                r = swarm_values_get_int(m->values[1], JOBS_OPTION_STREAM, &stream);
                if (r < 0 && r != -ENOENT)
                        return client_reply_error(cl, m->job_id, -EINVAL, "option %s must be an integer",
                                                  JOBS_OPTION_STREAM);
                r = swarm_values_get_string(m->values[1], JOBS_OPTION_KEY, &key);
                if (r < 0 && r != -ENOENT)
                        return client_reply_error(cl, m->job_id, -EINVAL, "option %s must be a string",
                                                  JOBS_OPTION_KEY);
                if (key && (!key[0] || strlen(key) > JOBS_KEY_MAX || !utf8_valid(key, strlen(key))))
                        return client_reply_error(cl, m->job_id, -EINVAL, "option %s must be 1 to %d bytes of UTF-8",
                                                  JOBS_OPTION_KEY, JOBS_KEY_MAX);
        }
        if (deadline_ms < 0 || deadline_ms > JOBS_MAX_DEADLINE_MS)
                return client_reply_error(cl, m->job_id, -EINVAL, "deadline %" PRId64 " ms is out of range (0 to %d)",
                                          deadline_ms, JOBS_MAX_DEADLINE_MS);
        if (deadline_ms == 0)
                deadline_ms = JOBS_DEFAULT_DEADLINE_MS;
        LIST_FOREACH(jobs, k, cl->jobs)
                if (k->client_id == m->job_id)
                        return client_reply_error(cl, m->job_id, -EEXIST, "job %" PRIu64 " is already running",
                                                  m->job_id);
        if (cl->n_jobs >= JOBS_PER_CLIENT_MAX)
                return client_reply_error(cl, m->job_id, -EBUSY,
                                          "%u jobs in flight on this connection; wait for some to finish",
                                          JOBS_PER_CLIENT_MAX);
        if (!js->requester)
                return client_reply_error(cl, m->job_id, -EOPNOTSUPP,
                                          "this swarmd does not route jobs (is network.enabled false?)");
        /* A key running now (another connection of this user): one job per
         * key, or both would run and be paid for. */
        if (key && key_running(js, cl->uid, key))
                return client_reply_error(cl, m->job_id, -EALREADY, "a job with key \"%s\" is running; "
                                          "its result will be kept: submit it again when it ends", key);
        /* A key done before: its kept result, not a second job or payment. */
        if (key) {
                struct job_outcome kept = {};

                if (requester_kept_result(js->requester, (uint32_t) cl->uid, key, &kept) >= 0) {
                        struct wmsg reply = { .type = JOBS_MSG_SUBMIT_REPLY, .job_id = m->job_id };

                        log_debug("Job %" PRIu64 " from pid %d: key \"%s\" was done before; its kept result.",
                                  m->job_id, (int) cl->pid, key);
                        reply.values[0] = TAKE_PTR(kept.outputs);
                        reply.values[1] = metrics_of(&kept);
                        if (reply.values[1])
                                (void) swarm_values_set_int(reply.values[1], JOBS_METRIC_KEPT, 1);
                        client_reply(cl, &reply);
                        return;
                }
        }

        j = calloc(1, sizeof(*j));
        if (!j)
                return client_reply_error(cl, m->job_id, -ENOMEM, "out of memory");
        j->owner = js;
        j->client_id = m->job_id;
        j->inputs = TAKE_PTR(m->values[0]) ?: swarm_values_new();
        if (!j->inputs) {
                free(j);
                return client_reply_error(cl, m->job_id, -ENOMEM, "out of memory");
        }
        j->uid = cl->uid;
        if (key && !(j->key = strdup(key))) {
                job_free(j);
                return client_reply_error(cl, m->job_id, -ENOMEM, "out of memory");
        }
        j->client = cl;
        LIST_PREPEND(jobs, cl->jobs, j);
        cl->n_jobs++;

        spec = (struct job_spec) {
                .skill = skill,
                .inputs = j->inputs,
                .max_price = m->number,
                .deadline_usec = now(CLOCK_MONOTONIC) + (uint64_t) deadline_ms * 1000u,
                .hedge = hedge != 0,
                .chunk = stream ? on_job_chunk : NULL,
                .keep_key = key,
                .keep_owner = (uint32_t) cl->uid,
        };
        r = requester_submit(js->requester, &spec, on_job_done, j, &j->id);
        if (r < 0) {
                uint64_t id = j->client_id;

                job_detach(j);
                job_free(j);
                if (r == -ENOENT)
                        return client_reply_error(cl, id, r,
                                                  "no provider in the swarm offers %s at a price of at most %" PRIu64,
                                                  skill, m->number);
                return client_reply_error(cl, id, r, "cannot start the job: %s", strerror(-r));
        }
        j->started = true;
        log_debug("Job %" PRIu64 " (%s) from pid %d started as %" PRIu64 ".", j->client_id, skill, (int) cl->pid,
                  j->id);
}

static int on_client_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct client *cl = userdata;

        if (revents & EPOLLOUT)
                client_flush(cl);

        for (int i = 0; i < RECV_BURST && !cl->broken; i++) {
                const char *reason = NULL;
                struct wmsg m = {};
                int r = wmsg_recv(fd, &m, &reason);

                if (r == -EAGAIN)
                        break;
                if (r == -EBADMSG) {
                        log_info("Malformed message on the jobs socket from pid %d: %s.", (int) cl->pid,
                                 reason ?: "unreadable");
                        client_reply_error(cl, 0, -EBADMSG, "malformed message: %s", reason ?: "unreadable");
                        continue;
                }
                if (r < 0) {
                        client_drop(cl, r == -ECONNRESET ? LOG_DEBUG : LOG_WARNING,
                                    r == -ECONNRESET ? "it disconnected" : "cannot read from it");
                        break;
                }
                if (m.type == JOBS_MSG_SUBMIT)
                        client_submit(cl, &m);
                else if (m.type == JOBS_MSG_CANCEL)
                        client_cancel(cl, m.job_id);
                else
                        client_reply_error(cl, m.job_id, -EBADMSG, "expected a submit message, not %s",
                                           wmsg_type_to_string(m.type));
                wmsg_done(&m);
        }
        if (!cl->broken && (revents & (EPOLLHUP | EPOLLERR)) && !(revents & EPOLLIN))
                client_drop(cl, LOG_DEBUG, "it disconnected");
        return 0;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct jobs_socket *js = userdata;

        for (;;) {
                int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                struct ucred cred = {};
                socklen_t l = sizeof(cred);
                struct client *cl;

                if (cfd < 0)
                        return 0;
                if (js->n_clients >= CLIENTS_MAX) {
                        log_warning("Refusing a job client: %u connections already.", CLIENTS_MAX);
                        close(cfd);
                        continue;
                }
                cl = calloc(1, sizeof(*cl));
                if (!cl) {
                        close(cfd);
                        continue;
                }
                cl->owner = js;
                cl->fd = cfd;
                if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &l) == 0) {
                        cl->pid = cred.pid;
                        cl->uid = cred.uid;
                }
                if (sd_event_add_io(js->event, &cl->io, cfd, EPOLLIN, on_client_io, cl) < 0) {
                        close(cfd);
                        free(cl);
                        continue;
                }
                LIST_PREPEND(clients, js->clients, cl);
                js->n_clients++;
                log_debug("Job client connected (pid %d).", (int) cl->pid);
        }
}

int jobs_socket_new(sd_event *event, const char *path, struct requester *requester, struct jobs_socket **ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct jobs_socket *js;
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return log_error_errno(-ENAMETOOLONG, "Jobs socket path %s is too long", path);
        strcpy(sa.sun_path, path);

        js = calloc(1, sizeof(*js));
        if (!js)
                return -ENOMEM;
        js->fd = -1;
        js->event = sd_event_ref(event);
        js->requester = requester;
        js->path = strdup(path);
        js->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (!js->path || js->fd < 0) {
                r = js->path ? negative_errno() : -ENOMEM;
                goto fail;
        }
        (void) unlink(path);
        /* 0660: our user and group submit; see jobs-socket.h. */
        if (bind(js->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || chmod(path, 0660) < 0 ||
            listen(js->fd, 64) < 0) {
                r = log_error_errno(negative_errno(), "Failed to listen on %s: %m", path);
                goto fail;
        }
        r = sd_event_add_io(event, &js->io, js->fd, EPOLLIN, on_accept, js);
        if (r < 0)
                goto fail;
        log_debug("Jobs socket at %s.", path);
        *ret = js;
        return 0;
fail:
        jobs_socket_free(js);
        return r;
}

struct jobs_socket *jobs_socket_free(struct jobs_socket *js) {
        if (!js)
                return NULL;
        while (js->clients)
                client_free(js->clients);
        /* requester_cancel() calls done later, from the loop, and
         * requester_stop() calls it for every job left: freed after the
         * requester (see jobs-socket.h), nothing is left here.  Whatever
         * is, the requester will never call back for. */
        while (js->orphans) {
                struct job *j = js->orphans;

                LIST_REMOVE(jobs, js->orphans, j);
                job_free(j);
        }
        sd_event_source_disable_unref(js->io);
        if (js->fd >= 0) {
                close(js->fd);
                if (js->path)
                        (void) unlink(js->path);
        }
        free(js->path);
        sd_event_unref(js->event);
        free(js);
        return NULL;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* swarm-worker: hosts one skill plugin in a process of its own, so that a
 * plugin that crashes, leaks or hangs takes only its current job with it.
 *
 *   swarm-worker PLUGIN.so
 *
 * fd 3 is a SOCK_SEQPACKET socket to swarmd (or swarmctl) speaking
 * worker-proto; fd 4, when open, is the shared control page whose first
 * word is the cancellation flag of the running job.  The worker answers
 * INIT with HELLO, then serves one request at a time until its socket
 * closes. */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "shm.h"
#include "skill-loader.h"
#include "time-util.h"
#include "worker-proto.h"

#define WORKER_SOCKET_FD 3
#define WORKER_CONTROL_FD 4

static const char *skill_name = "?";
static bool journal_prefix;

static void worker_log(int level, const char *message, void *userdata) {
        /* Under systemd stderr is a journal stream: "<N>" sets the priority. */
        if (journal_prefix)
                fprintf(stderr, "<%d>swarm-worker[%s]: %s\n", level, skill_name, message);
        else if (level <= LOG_INFO)
                fprintf(stderr, "swarm-worker[%s]: %s\n", skill_name, message);
}

static char *error_text(int r, const struct swarm_job *job) {
        const char *e = job ? swarm_job_error(job) : NULL;

        /* A plugin may return any negative number; -INT_MIN is undefined. */
        return strdup(e ? e : strerror(r < -ERRNO_MAX ? EPROTO : -r));
}

struct worker {
        struct loaded_skill loaded;
        const struct swarm_skill *skill;
        void *state;
        bool initialized;
        const volatile uint32_t *cancel;
        int fd;
};

static int reply(struct worker *w, struct wmsg *m) {
        int r = wmsg_send(w->fd, m);

        if (r < 0)
                swarm_log(LOG_ERR, "Failed to send %s: %s", wmsg_type_to_string(m->type), strerror(-r));
        return r;
}

struct emit_target {
        struct worker *w;
        uint64_t job_id;
};

/* swarm_job_emit(): the chunk goes to the host at once, ahead of the reply,
 * on the same socket, so chunks and the result arrive in order. */
static int emit_chunk(void *userdata, const char *name, const void *data, size_t size) {
        struct emit_target *t = userdata;
        struct wmsg m = { .type = WMSG_CHUNK, .job_id = t->job_id };
        int r;

        m.values[0] = swarm_values_new();
        if (!m.values[0])
                return -ENOMEM;
        r = swarm_values_set_bytes(m.values[0], name, data, size);
        if (r >= 0)
                r = reply(t->w, &m);
        wmsg_done(&m);
        return r < 0 ? r : 0;
}

/* Checks values against what the skill declared, before the skill sees
 * them; the reason goes where the skill's own would (job, or the call's
 * error for price()). */
static int check_declared(const struct swarm_param *declared, const struct swarm_values *values,
                          const char *what, struct swarm_job *job) {
        char err[SWARM_JOB_ERROR_MAX];
        int r;

        r = swarm_params_check(declared, values, what, err, sizeof(err));
        if (r < 0)
                swarm_job_set_error(job, "%s", err);
        return r;
}

static int handle_execute(struct worker *w, const struct wmsg *req) {
        struct wmsg rep = { .type = WMSG_EXECUTE_REPLY, .job_id = req->job_id };
        struct swarm_job job;
        uint64_t start;
        int r;

        struct emit_target target = { .w = w, .job_id = req->job_id };

        r = swarm_job_init(&job, req->values[0], req->number, w->cancel, shm_allocate, NULL);
        if (r < 0)
                return r;
        job.emit = emit_chunk;
        job.emit_userdata = &target;

        start = now(CLOCK_MONOTONIC);
        if (swarm_job_cancelled(&job))
                r = -ECANCELED;
        else if ((r = check_declared(skill_declared_inputs(w->skill), job.inputs, "input", &job)) < 0)
                ;
        else {
                r = w->skill->execute(w->state, &job);
                if (r >= 0 && w->skill->prove)
                        r = w->skill->prove(w->state, &job);
        }
        rep.number = now(CLOCK_MONOTONIC) - start;
        rep.status = r < 0 ? r : 0;
        if (r < 0)
                rep.text[WMSG_TEXT_ERROR] = error_text(r, &job);
        else {
                rep.values[0] = job.outputs;
                rep.values[1] = job.proof;
        }
        r = reply(w, &rep);
        rep.values[0] = rep.values[1] = NULL;
        wmsg_done(&rep);
        swarm_job_done(&job);
        if (r == -E2BIG) {
                /* The skill made more than the protocol carries (a string
                 * over WMSG_TEXT_MAX, say): that job fails, the worker and
                 * what init() loaded stay. */
                struct wmsg err = { .type = WMSG_EXECUTE_REPLY, .job_id = req->job_id, .status = -E2BIG };

                err.text[WMSG_TEXT_ERROR] = strdup("the skill's result exceeds what the worker protocol carries "
                                                   "(strings up to 64 KiB, 128 values)");
                r = reply(w, &err);
                wmsg_done(&err);
        }
        return r;
}

static int handle_verify(struct worker *w, const struct wmsg *req) {
        struct wmsg rep = { .type = WMSG_VERIFY_REPLY, .job_id = req->job_id };
        struct swarm_job job;
        uint64_t start;
        int r;

        r = swarm_job_init(&job, req->values[0], 0, w->cancel, NULL, NULL);
        if (r < 0)
                return r;
        /* verify() reads the result as if this job had produced it. */
        swarm_values_free(job.outputs);
        swarm_values_free(job.proof);
        job.outputs = req->values[1];
        job.proof = req->values[2];
        start = now(CLOCK_MONOTONIC);
        if (!job.outputs) {
                swarm_job_set_error(&job, "no outputs to verify");
                r = -EBADMSG;
        } else if (check_declared(skill_declared_outputs(w->skill), job.outputs, "output", &job) < 0)
                r = -EBADMSG;   /* a result that is not of the declared form is wrong */
        else
                r = w->skill->verify(w->state, &job);
        rep.number = now(CLOCK_MONOTONIC) - start;
        rep.status = r < 0 ? r : 0;
        if (r < 0)
                rep.text[WMSG_TEXT_ERROR] = error_text(r, &job);
        job.outputs = job.proof = NULL;
        r = reply(w, &rep);
        wmsg_done(&rep);
        swarm_job_done(&job);
        return r;
}

static int handle_price(struct worker *w, const struct wmsg *req) {
        struct wmsg rep = { .type = WMSG_PRICE_REPLY, .job_id = req->job_id };
        uint64_t price = 0;
        int r;

        swarm_call_error_reset();
        r = check_declared(skill_declared_inputs(w->skill), req->values[0], "input", NULL);
        if (r >= 0)
                r = w->skill->price(w->state, req->values[0], &price);
        rep.status = r < 0 ? r : 0;
        rep.number = price;
        if (r < 0)
                rep.text[WMSG_TEXT_ERROR] = strdup(swarm_call_error() ?: strerror(-r));
        r = reply(w, &rep);
        wmsg_done(&rep);
        return r;
}

static int advertise(struct worker *w, struct swarm_values **ret) {
        struct swarm_values *advert = swarm_values_new();
        int r;

        if (!advert)
                return -ENOMEM;
        r = w->skill->advertise(w->state, advert);
        if (r < 0) {
                swarm_values_free(advert);
                return r;
        }
        *ret = advert;
        return 0;
}

static int handle_advertise(struct worker *w, const struct wmsg *req) {
        struct wmsg rep = { .type = WMSG_ADVERTISE_REPLY, .job_id = req->job_id };
        int r;

        r = advertise(w, &rep.values[0]);
        rep.status = r < 0 ? r : 0;
        if (r < 0)
                rep.text[WMSG_TEXT_ERROR] = error_text(r, NULL);
        r = reply(w, &rep);
        wmsg_done(&rep);
        return r;
}

/* Blocks until a message arrives. */
static int receive(int fd, struct wmsg *m) {
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                const char *reason;
                int r;

                r = wmsg_recv(fd, m, &reason);
                if (r != -EAGAIN) {
                        if (r == -EBADMSG)
                                swarm_log(LOG_ERR, "Malformed message from the host: %s", reason);
                        return r;
                }
                if (poll(&p, 1, -1) < 0 && errno != EINTR)
                        return -errno;
        }
}

/* Loads the plugin and answers INIT with HELLO; on failure still answers,
 * so the host can say why. */
static int start(struct worker *w, const char *path) {
        struct wmsg init = {}, hello = { .type = WMSG_HELLO, .number = SWARM_SKILL_ABI_VERSION };
        char error[512];
        int r;

        r = receive(w->fd, &init);
        if (r < 0)
                return r;
        if (init.type != WMSG_INIT) {
                swarm_log(LOG_ERR, "Expected init from the host, got %s", wmsg_type_to_string(init.type));
                wmsg_done(&init);
                return -EPROTO;
        }

        r = skill_load(path, &w->loaded, error, sizeof(error));
        if (r >= 0) {
                w->skill = w->loaded.skill;
                skill_name = w->skill->name;
                hello.number = w->skill->abi_version;
                if (w->skill->init) {
                        r = w->skill->init(init.values[0], &w->state);
                        w->initialized = r >= 0;
                        if (r < 0)
                                snprintf(error, sizeof(error), "init() of skill %s failed: %s",
                                         w->skill->name, strerror(-r));
                }
                else
                        w->initialized = true;
                if (r >= 0) {
                        r = advertise(w, &hello.values[0]);
                        if (r < 0)
                                snprintf(error, sizeof(error), "advertise() of skill %s failed: %s",
                                         w->skill->name, strerror(-r));
                }
                hello.text[WMSG_TEXT_NAME] = strdup(w->skill->name);
                hello.text[WMSG_TEXT_VERSION] = strdup(w->skill->version ?: "");
                hello.text[WMSG_TEXT_DESCRIPTION] = strdup(w->skill->description ?: "");
        }
        hello.status = r < 0 ? r : 0;
        if (r < 0)
                hello.text[WMSG_TEXT_ERROR] = strdup(error);
        wmsg_done(&init);
        (void) reply(w, &hello);
        wmsg_done(&hello);
        return r;
}

int main(int argc, char *argv[]) {
        struct worker w = { .fd = WORKER_SOCKET_FD };
        struct shm_block *control = NULL;
        int r;

        /* --name: what swarmd asks to learn a plugin's skill name without
         * loading its code into swarmd (skill-index.h).  No init(). */
        if (argc == 3 && strcmp(argv[1], "--name") == 0) {
                struct loaded_skill loaded;
                char error[512];

                if (skill_load(argv[2], &loaded, error, sizeof(error)) < 0) {
                        fprintf(stderr, "%s\n", error);
                        return EXIT_FAILURE;
                }
                printf("%s\n", loaded.skill->name);
                return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        }
        if (argc != 2) {
                fprintf(stderr, "Usage: %s PLUGIN.so\n       %s --name PLUGIN.so\n"
                        "(started by swarmd and swarmctl, not by hand)\n", argv[0], argv[0]);
                return EXIT_FAILURE;
        }
        if (fcntl(WORKER_SOCKET_FD, F_GETFD) < 0) {
                fprintf(stderr, "swarm-worker: fd %d is not open: started by hand? It is run by swarmd.\n",
                        WORKER_SOCKET_FD);
                return EXIT_FAILURE;
        }
        journal_prefix = getenv("JOURNAL_STREAM") != NULL;
        swarm_log_set_handler(worker_log, NULL);

        if (fcntl(WORKER_CONTROL_FD, F_GETFD) >= 0) {
                r = shm_map_control(WORKER_CONTROL_FD, sizeof(uint32_t), &control);
                if (r < 0) {
                        swarm_log(LOG_ERR, "Control page unusable: %s", strerror(-r));
                        return EXIT_FAILURE;
                }
                w.cancel = control->addr;
        }

        r = start(&w, argv[1]);
        if (r < 0)
                goto finish;

        for (;;) {
                struct wmsg req;

                r = receive(w.fd, &req);
                if (r == -ECONNRESET) {
                        r = 0;          /* the host closed: we are done */
                        break;
                }
                if (r < 0)
                        break;
                switch (req.type) {
                case WMSG_EXECUTE:
                        r = handle_execute(&w, &req);
                        break;
                case WMSG_VERIFY:
                        r = handle_verify(&w, &req);
                        break;
                case WMSG_PRICE:
                        r = handle_price(&w, &req);
                        break;
                case WMSG_ADVERTISE:
                        r = handle_advertise(&w, &req);
                        break;
                default:
                        swarm_log(LOG_ERR, "Unexpected %s from the host", wmsg_type_to_string(req.type));
                        r = -EPROTO;
                }
                wmsg_done(&req);
                if (r < 0)
                        break;
        }

finish:
        if (w.initialized && w.skill->fini)
                w.skill->fini(w.state);
        skill_unload(&w.loaded);
        shm_block_free(control);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

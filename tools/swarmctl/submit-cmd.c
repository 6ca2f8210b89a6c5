/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* swarmctl submit: jobs to the swarm through the local swarmd's jobs
 * socket, one or a batch of thousands, a bounded number in flight over one
 * connection.  Only verified results come back, and only they are written. */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include "build-config.h"
#include "common.h"
#include "control-client.h"
#include "node-id.h"
#include "inputs.h"
#include "jobs-client.h"
#include "log.h"
#include "macro.h"
#include "npy.h"
#include "shm.h"
#include "socket-path.h"
#include "submit-cmd.h"
#include "time-util.h"

#define DEFAULT_PARALLEL 64u
#define PARALLEL_MAX 1024u
#define NO_PRICE_LIMIT ((uint64_t) INT64_MAX)
#define PROVIDERS_MAX 256

struct job {
        char *skill;
        char **inputs;          /* NAME=SPEC, NULL-terminated */
        uint64_t max_price;
        uint64_t deadline_usec; /* relative */
        bool hedge;
        char *output;           /* directory, or NULL */
        size_t line;            /* where the batch file describes it; 0: the command line */
        /* Filled in as it runs. */
        bool submitted, finished;
        int status;
};

struct provider_stats {
        char id[64];
        unsigned jobs;
        uint64_t latency_sum_usec;
        uint64_t credits;
};

struct batch {
        struct job *jobs;
        size_t n_jobs, allocated;
        /* Defaults from the command line. */
        const char *skill;
        char **inputs;
        size_t n_inputs;
        uint64_t max_price, deadline_usec;
        bool hedge;
        bool no_stream;                 /* --no-stream */
        const char *key;                /* --key: exactly-once (one job: KEY; batch: KEY/INDEX) */
        bool streamed;                  /* text went to stdout: end it with a newline */
        const char *output;
        bool batch_mode, verbose, quiet;
        const char *batch_file;         /* --batch, for messages */
        unsigned parallel;
        /* Progress and the summary. */
        size_t done, failed, in_flight, next;
        size_t malformed;               /* failed with -EINVAL: the description is wrong */
        size_t rerouted_jobs, rerouted_total, rejected_total;
        uint64_t credits, latency_sum_usec;
        struct provider_stats providers[PROVIDERS_MAX];
        size_t n_providers;
        Swarm__ControlReply *peers;     /* for names; may be NULL */
        bool tty;
        uint64_t last_progress_usec;
        size_t last_progress_line;
};

static void job_done(struct job *j) {
        free(j->skill);
        strv_free(j->inputs);
        free(j->output);
}

static int strv_push(char ***l, const char *s) {
        size_t n = 0;
        char **k;

        while (*l && (*l)[n])
                n++;
        k = realloc(*l, (n + 2) * sizeof(char *));
        if (!k)
                return -ENOMEM;
        *l = k;
        k[n] = strdup(s);
        k[n + 1] = NULL;
        return k[n] ? 0 : -ENOMEM;
}

static struct job *batch_add(struct batch *b) {
        struct job *j;

        if (b->n_jobs == b->allocated) {
                size_t n = b->allocated ? b->allocated * 2 : 64;
                j = realloc(b->jobs, n * sizeof(*j));
                if (!j)
                        return NULL;
                b->jobs = j;
                b->allocated = n;
        }
        j = &b->jobs[b->n_jobs++];
        *j = (struct job) {
                .max_price = b->max_price,
                .deadline_usec = b->deadline_usec,
                .hedge = b->hedge,
        };
        return j;
}

/* Command-line inputs apply to every job that does not name them itself. */
static int job_finish_defaults(struct batch *b, struct job *j) {
        if (!j->skill) {
                if (!b->skill)
                        return -EINVAL;
                j->skill = strdup(b->skill);
                if (!j->skill)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < b->n_inputs; i++) {
                size_t l = strcspn(b->inputs[i], "=");
                bool given = false;

                for (char **k = j->inputs; k && *k && !given; k++)
                        given = strncmp(*k, b->inputs[i], l) == 0 && (*k)[l] == '=';
                if (!given && strv_push(&j->inputs, b->inputs[i]) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* ---- The batch file: YAML, or one job per line ---- */

static const char *scalar(yaml_document_t *d, yaml_node_t *n) {
        return n && n->type == YAML_SCALAR_NODE ? (const char *) n->data.scalar.value : NULL;
}

static int parse_u64(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long x;

        if (!s || !*s || *s == '-')
                return -EINVAL;
        errno = 0;
        x = strtoull(s, &end, 0);
        if (errno || *end)
                return -EINVAL;
        *ret = x;
        return 0;
}

static int yaml_job(struct batch *b, const char *file, yaml_document_t *d, yaml_node_t *n) {
        uint64_t repeat = 1;
        struct job proto = {
                .max_price = b->max_price,
                .deadline_usec = b->deadline_usec,
                .hedge = b->hedge,
        };
        int r = -EINVAL;

        if (n->type != YAML_MAPPING_NODE) {
                log_error("%s:%zu: each job is a mapping (skill:, inputs:, …).", file, n->start_mark.line + 1);
                return -EINVAL;
        }
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
                yaml_node_t *kn = yaml_document_get_node(d, p->key), *vn = yaml_document_get_node(d, p->value);
                const char *k = scalar(d, kn), *v = scalar(d, vn);
                size_t line = (vn ? vn->start_mark.line : n->start_mark.line) + 1;

                if (!k) {
                        log_error("%s:%zu: keys must be plain names.", file, line);
                        goto fail;
                }
                if (strcmp(k, "inputs") == 0) {
                        if (!vn || vn->type != YAML_MAPPING_NODE) {
                                log_error("%s:%zu: inputs: is a mapping of NAME: SPEC.", file, line);
                                goto fail;
                        }
                        for (yaml_node_pair_t *q = vn->data.mapping.pairs.start; q < vn->data.mapping.pairs.top; q++) {
                                const char *name = scalar(d, yaml_document_get_node(d, q->key));
                                const char *spec = scalar(d, yaml_document_get_node(d, q->value));
                                _cleanup_free_ char *s = NULL;

                                if (!name || !spec || asprintf(&s, "%s=%s", name, spec) < 0 ||
                                    strv_push(&proto.inputs, s) < 0) {
                                        log_error("%s:%zu: input %s: expected NAME: SPEC.", file, line, name ?: "?");
                                        goto fail;
                                }
                        }
                        continue;
                }
                if (!v) {
                        log_error("%s:%zu: %s: expected a single value.", file, line, k);
                        goto fail;
                }
                if (strcmp(k, "skill") == 0) {
                        free(proto.skill);
                        proto.skill = strdup(v);
                } else if (strcmp(k, "max_price") == 0) {
                        if (parse_u64(v, &proto.max_price) < 0) {
                                log_error("%s:%zu: max_price: %s is not a number of micro-credits.", file, line, v);
                                goto fail;
                        }
                } else if (strcmp(k, "deadline") == 0) {
                        if (duration_parse(v, &proto.deadline_usec) < 0 || proto.deadline_usec == 0) {
                                log_error("%s:%zu: deadline: %s is not a duration such as 30s.", file, line, v);
                                goto fail;
                        }
                } else if (strcmp(k, "output") == 0) {
                        free(proto.output);
                        proto.output = strdup(v);
                } else if (strcmp(k, "hedge") == 0) {
                        proto.hedge = strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "on") == 0;
                } else if (strcmp(k, "repeat") == 0) {
                        if (parse_u64(v, &repeat) < 0 || repeat == 0 || repeat > 1000000) {
                                log_error("%s:%zu: repeat: expected 1 to 1000000.", file, line);
                                goto fail;
                        }
                } else {
                        log_error("%s:%zu: unknown key %s (skill, inputs, max_price, deadline, output, hedge, "
                                  "repeat).", file, line, k);
                        goto fail;
                }
        }
        if (!proto.skill && !b->skill) {
                log_error("%s:%zu: the job names no skill (and there is no --skill).", file,
                          n->start_mark.line + 1);
                goto fail;
        }
        for (uint64_t i = 0; i < repeat; i++) {
                struct job *j = batch_add(b);

                if (!j) {
                        r = log_oom();
                        goto fail;
                }
                j->line = n->start_mark.line + 1;
                j->max_price = proto.max_price;
                j->deadline_usec = proto.deadline_usec;
                j->hedge = proto.hedge;
                j->skill = proto.skill ? strdup(proto.skill) : NULL;
                for (char **k = proto.inputs; k && *k; k++)
                        if (strv_push(&j->inputs, *k) < 0) {
                                r = log_oom();
                                goto fail;
                        }
                /* With repeat, several jobs share an output: give each
                 * its own subdirectory. */
                if (proto.output && repeat > 1 && asprintf(&j->output, "%s/%" PRIu64, proto.output, i) < 0)
                        j->output = NULL;
                else if (proto.output && repeat == 1)
                        j->output = strdup(proto.output);
                r = job_finish_defaults(b, j);
                if (r < 0)
                        goto fail;
        }
        r = 0;
fail:
        job_done(&proto);
        return r;
}

/* "skill NAME=SPEC NAME=SPEC …", # comments and blank lines ignored. */
static int parse_lines(struct batch *b, const char *file, FILE *f) {
        _cleanup_free_ char *line = NULL;
        size_t size = 0, lineno = 0;

        while (getline(&line, &size, f) >= 0) {
                char *save = NULL, *w;
                struct job *j;

                lineno++;
                line[strcspn(line, "#\r\n")] = '\0';
                w = strtok_r(line, " \t", &save);
                if (!w)
                        continue;
                j = batch_add(b);
                if (!j)
                        return log_oom();
                j->line = lineno;
                j->skill = strdup(w);
                while ((w = strtok_r(NULL, " \t", &save)))
                        if (!strchr(w, '=') || strv_push(&j->inputs, w) < 0) {
                                log_error("%s:%zu: %s: expected NAME=SPEC.", file, lineno, w);
                                return -EINVAL;
                        }
                if (!j->skill || job_finish_defaults(b, j) < 0)
                        return log_oom();
        }
        return 0;
}

/* The format is decided once, before parsing, so that an error is
 * reported in the file's own format: YAML for a .yaml or .yml file, or when
 * the first line that is not blank or a comment starts a YAML list ("-"),
 * document ("---", "%YAML") or mapping ("skill:"); else one job per line. */
static bool batch_is_yaml(const char *file, FILE *f) {
        _cleanup_free_ char *line = NULL;
        const char *dot = strrchr(file, '.');
        size_t size = 0;
        bool yaml = false;

        if (dot && (strcmp(dot, ".yaml") == 0 || strcmp(dot, ".yml") == 0))
                return true;
        while (getline(&line, &size, f) >= 0) {
                const char *p = line + strspn(line, " \t");
                size_t word = strcspn(p, " \t\r\n");

                if (*p == '#' || *p == '\r' || *p == '\n' || *p == '\0')
                        continue;
                yaml = *p == '-' || *p == '%' || (word > 0 && p[word - 1] == ':');
                break;
        }
        rewind(f);
        return yaml;
}

static int parse_batch(struct batch *b, const char *file) {
        _cleanup_fclose_ FILE *f = fopen(file, "re");
        yaml_parser_t parser;
        yaml_document_t doc;
        yaml_node_t *root;
        int r = 0;

        if (!f)
                return log_error_errno(negative_errno(), "--batch %s: %m", file);
        if (!batch_is_yaml(file, f))
                return parse_lines(b, file, f);

        if (!yaml_parser_initialize(&parser))
                return log_oom();
        yaml_parser_set_input_file(&parser, f);
        if (!yaml_parser_load(&parser, &doc)) {
                /* libyaml's own position and words. */
                if (parser.context)
                        log_error("%s:%zu:%zu: YAML syntax error: %s %s begun at %zu:%zu.", file,
                                  parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                                  parser.problem ?: "malformed", parser.context, parser.context_mark.line + 1,
                                  parser.context_mark.column + 1);
                else
                        log_error("%s:%zu:%zu: YAML syntax error: %s.", file, parser.problem_mark.line + 1,
                                  parser.problem_mark.column + 1, parser.problem ?: "malformed");
                yaml_parser_delete(&parser);
                return -EINVAL;
        }
        root = yaml_document_get_root_node(&doc);
        if (root && root->type == YAML_SEQUENCE_NODE) {
                for (yaml_node_item_t *i = root->data.sequence.items.start; i < root->data.sequence.items.top && r >= 0; i++)
                        r = yaml_job(b, file, &doc, yaml_document_get_node(&doc, *i));
        } else if (root) {
                log_error("%s:%zu: expected a list of jobs (\"- skill: …\").", file, root->start_mark.line + 1);
                r = -EINVAL;
        }
        yaml_document_delete(&doc);
        yaml_parser_delete(&parser);
        return r;
}

/* ---- Results ---- */

static const char *provider_name(struct batch *b, const char *id, char *buf, size_t size) {
        if (!id)
                return "-";
        if (b->peers)
                for (size_t i = 0; i < b->peers->n_peers; i++) {
                        const Swarm__PeerInfo *p = b->peers->peers[i];
                        char pid[NODE_ID_LEN + 1];

                        if (p->node_id.len != 32 || !p->name || !p->name[0])
                                continue;
                        node_id_from_public_key(p->node_id.data, pid);
                        if (strcmp(pid, id) == 0) {
                                snprintf(buf, size, "%s (%.8s)", p->name, id);
                                return buf;
                        }
                }
        if (strlen(id) > 12) {
                snprintf(buf, size, "%.12s", id);
                return buf;
        }
        return id;
}

/* Names of the providers, from the control socket next to the jobs socket:
 * for people, best effort. */
static void load_peer_names(struct batch *b, const char *jobs_socket) {
        Swarm__ControlRequest req = SWARM__CONTROL_REQUEST__INIT;
        Swarm__PeersRequest peers = SWARM__PEERS_REQUEST__INIT;
        _cleanup_free_ char *copy = strdup(jobs_socket), *path = NULL;

        if (!copy || asprintf(&path, "%s/control.sock", dirname(copy)) < 0)
                return;
        req.request_case = SWARM__CONTROL_REQUEST__REQUEST_PEERS;
        req.peers = &peers;
        if (control_client_call(path, &req, &b->peers) < 0)
                b->peers = NULL;
}

static int write_outputs(const char *dir, const struct swarm_values *v, bool print) {
        size_t n = swarm_values_count(v);
        int ret = 0;

        if (dir && mkdir(dir, 0755) < 0 && errno != EEXIST)
                return log_error_errno(negative_errno(), "Cannot create %s: %m", dir);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *path = NULL;
                struct swarm_value x;
                const char *name;
                int r = 0;

                (void) swarm_values_at(v, i, &x);
                name = x.name;
                switch (x.type) {
                case SWARM_VALUE_TENSOR:
                        if (print) {
                                printf("  %-14s %s[", name, swarm_dtype_name(x.tensor.dtype) ?: "?");
                                for (uint32_t d = 0; d < x.tensor.ndim; d++)
                                        printf("%s%" PRIu64, d ? "x" : "", x.tensor.shape[d]);
                                printf("]");
                        }
                        if (dir) {
                                if (asprintf(&path, "%s/%s.npy", dir, name) < 0)
                                        return log_oom();
                                r = npy_write(path, &x.tensor);
                        }
                        break;
                case SWARM_VALUE_BYTES:
                        if (print) {
                                printf("  %-14s %zu bytes ", name, x.size);
                                for (size_t k = 0; k < x.size && k < 32; k++)
                                        printf("%02x", ((const uint8_t *) x.data)[k]);
                                printf("%s", x.size > 32 ? "…" : "");
                        }
                        if (dir) {
                                _cleanup_fclose_ FILE *f = NULL;

                                if (asprintf(&path, "%s/%s", dir, name) < 0)
                                        return log_oom();
                                f = fopen(path, "we");
                                r = f && fwrite(x.data, 1, x.size, f) == x.size && fflush(f) == 0 ? 0 : -EIO;
                        }
                        break;
                case SWARM_VALUE_INT:
                        if (print)
                                printf("  %-14s %" PRId64, name, x.integer);
                        break;
                case SWARM_VALUE_STRING:
                        if (print)
                                printf("  %-14s \"%s\"", name, x.string);
                        break;
                }
                if (r < 0)
                        ret = log_error_errno(r, "Failed to write %s: %m", path);
                else if (print)
                        printf("%s%s\n", path ? "  → " : "", path ?: "");
        }
        return ret;
}

static void progress(struct batch *b, bool force) {
        size_t finished = b->done + b->failed;
        uint64_t t = now(CLOCK_MONOTONIC);

        if (!b->batch_mode || b->quiet)
                return;
        if (b->tty) {
                char bar[41];
                size_t filled = b->n_jobs ? finished * 40 / b->n_jobs : 40;

                if (!force && t - b->last_progress_usec < 100000)
                        return;
                for (size_t i = 0; i < 40; i++)
                        bar[i] = i < filled ? '#' : '-';
                bar[40] = '\0';
                fprintf(stderr, "\r[%s] %zu/%zu  done %zu  failed %zu  rerouted %zu  in flight %zu ", bar, finished,
                        b->n_jobs, b->done, b->failed, b->rerouted_jobs, b->in_flight);
                if (force && finished == b->n_jobs)
                        fputc('\n', stderr);
                fflush(stderr);
        } else {
                /* Plain lines, about every tenth of the batch. */
                size_t step = b->n_jobs >= 10 ? b->n_jobs / 10 : 1;

                if (finished / step == b->last_progress_line && (!force || finished % step == 0))
                        return;
                b->last_progress_line = finished / step;
                fprintf(stderr, "progress: %zu/%zu finished, %zu done, %zu failed, %zu rerouted\n", finished,
                        b->n_jobs, b->done, b->failed, b->rerouted_jobs);
        }
        b->last_progress_usec = t;
}

/* Before a per-job line on a terminal: clear the progress bar. */
static void clear_progress(struct batch *b) {
        if (b->batch_mode && b->tty && !b->quiet)
                fprintf(stderr, "\r%*s\r", 110, "");
}

static void record(struct batch *b, struct jobs_result *res) {
        struct job *j = res->id < b->n_jobs ? &b->jobs[res->id] : NULL;
        char name[96];

        if (!j || !j->submitted || j->finished) {
                log_warning("swarmd answered for job %" PRIu64 ", which is not in flight; ignored.", res->id);
                return;
        }
        j->finished = true;
        j->status = res->status;
        b->in_flight--;
        if (b->streamed) {
                /* The streamed text ends; the verified result follows. */
                printf("\n");
                b->streamed = false;
        }
        if (res->rerouted > 0)
                b->rerouted_jobs++;
        b->rerouted_total += res->rerouted;
        b->rejected_total += res->rejected;

        if (res->status < 0) {
                b->failed++;
                /* The skill found the job description itself wrong. */
                if (res->status == -EINVAL)
                        b->malformed++;
                clear_progress(b);
                if (b->batch_mode)
                        fprintf(stderr, "job %" PRIu64 " (%s) failed: %s%s\n", res->id, j->skill,
                                res->error ?: strerror(-res->status),
                                res->rejected ? " (results that failed verification were rejected)" : "");
                else
                        log_error("The job failed: %s", res->error ?: strerror(-res->status));
                return;
        }

        b->done++;
        b->credits += res->price;
        b->latency_sum_usec += res->latency_usec;
        {
                const char *id = res->provider ?: "-";
                size_t k = 0;

                for (; k < b->n_providers; k++)
                        if (strcmp(b->providers[k].id, id) == 0)
                                break;
                if (k == b->n_providers && k < PROVIDERS_MAX) {
                        snprintf(b->providers[k].id, sizeof(b->providers[k].id), "%s", id);
                        b->n_providers++;
                }
                if (k < b->n_providers) {
                        b->providers[k].jobs++;
                        b->providers[k].latency_sum_usec += res->latency_usec;
                        b->providers[k].credits += res->price;
                }
        }

        if (!b->batch_mode) {
                if (res->kept)
                        printf("job         verified earlier: its kept result (--key %s), not run or paid again\n",
                               b->key);
                else if (res->unchecked)
                        printf("job         accepted without a check (its skill is verified by sampling, and this "
                               "result was not drawn: verification.check_percent)\n");
                else
                        printf("job         verified\n");
                printf("provider    %s\n", provider_name(b, res->provider, name, sizeof(name)));
                printf("price       %" PRIu64 " µcredits\n", res->price);
                printf("latency     %.3f ms\n", (double) res->latency_usec / 1e3);
                printf("attempts    %u (%u rerouted, %u results rejected by verification)\n", res->attempts,
                       res->rerouted, res->rejected);
                printf("outputs:\n");
                (void) write_outputs(b->output, res->outputs, true);
                return;
        }
        if (b->verbose) {
                clear_progress(b);
                printf("job %-5" PRIu64 " %-8s verified  by %-24s %8.1f ms  %6" PRIu64 " µcr%s%s\n", res->id, j->skill,
                       provider_name(b, res->provider, name, sizeof(name)), (double) res->latency_usec / 1e3,
                       res->price, res->rerouted ? "  rerouted" : "",
                       res->rejected ? "  (a wrong result was caught and rejected)" : "");
                fflush(stdout);
        }
        if (j->output && write_outputs(j->output, res->outputs, false) < 0) {
                /* Verified, but not stored: count it as failed. */
                b->done--;
                b->failed++;
                j->status = -EIO;
        }
}

static void print_summary(struct batch *b, uint64_t elapsed_usec) {
        char name[96];

        printf("\nSummary: %zu jobs in %.2f s\n", b->n_jobs, (double) elapsed_usec / 1e6);
        printf("  done (verified)      %zu\n", b->done);
        printf("  failed               %zu\n", b->failed);
        printf("  rerouted             %zu jobs (%zu reroutes)\n", b->rerouted_jobs, b->rerouted_total);
        printf("  rejected results     %zu (failed verification, never accepted)\n", b->rejected_total);
        printf("  credits spent        %.6f (%" PRIu64 " µcredits)\n", (double) b->credits / 1e6, b->credits);
        if (b->done)
                printf("  mean latency         %.1f ms\n", (double) b->latency_sum_usec / (double) b->done / 1e3);
        if (b->n_providers) {
                printf("  %-32s %6s %12s %14s\n", "provider", "jobs", "mean ms", "µcredits");
                for (size_t k = 0; k < b->n_providers; k++) {
                        const struct provider_stats *p = &b->providers[k];
                        printf("  %-32s %6u %12.1f %14" PRIu64 "\n",
                               provider_name(b, strcmp(p->id, "-") ? p->id : NULL, name, sizeof(name)), p->jobs,
                               (double) p->latency_sum_usec / (double) p->jobs / 1e3, p->credits);
                }
        }
}

/* Builds job i's inputs and sends it; a job whose inputs cannot be built
 * fails alone. */
static int submit_one(struct batch *b, struct jobs_client *c, size_t i) {
        struct job *j = &b->jobs[i];
        struct swarm_values *inputs = swarm_values_new();
        char key_buf[160];
        const char *job_key = NULL;
        int r = 0;

        if (b->key) {
                if (b->batch_mode)
                        snprintf(key_buf, sizeof(key_buf), "%s/%zu", b->key, i);
                else
                        snprintf(key_buf, sizeof(key_buf), "%s", b->key);
                job_key = key_buf;
        }

        if (!inputs)
                return log_oom();
        /* In shared memory from the start: passed to swarmd as they are. */
        swarm_values_set_allocator(inputs, shm_allocate, NULL);
        if (j->line > 0) {
                char where[PATH_MAX + 32];

                snprintf(where, sizeof(where), "%s:%zu: input", b->batch_file, j->line);
                input_set_context(where);
        }
        for (char **k = j->inputs; k && *k && r >= 0; k++)
                r = input_add(inputs, *k);
        input_set_context(NULL);
        j->submitted = true;
        if (r < 0) {
                j->finished = true;
                j->status = r;
                b->failed++;
                b->malformed++;
                if (j->line > 0)
                        fprintf(stderr, "job %zu (%s, %s:%zu) failed: bad input\n", i, j->skill, b->batch_file,
                                j->line);
                else
                        fprintf(stderr, "job %zu (%s) failed: bad input\n", i, j->skill);
                swarm_values_free(inputs);
                return 0;
        }
        r = jobs_client_submit(c, &(struct jobs_submission) {
                .id = i,
                .skill = j->skill,
                .inputs = inputs,
                .max_price = j->max_price,
                .deadline_usec = j->deadline_usec,
                .hedge = j->hedge,
                /* One job: its text on stdout as it is made. */
                .stream = !b->batch_mode && !b->no_stream,
                .key = job_key,
        });
        /* The memfds went with the message: ours can go. */
        swarm_values_free(inputs);
        if (r < 0) {
                j->finished = true;
                j->status = r;
                b->failed++;
                if (r == -E2BIG) {
                        fprintf(stderr, "job %zu (%s) failed: too many or too large inputs\n", i, j->skill);
                        return 0;
                }
                return log_error_errno(r, "Lost the connection to swarmd: %m");
        }
        b->in_flight++;
        return 0;
}

/* Streamed text to stdout as it comes (other chunks, progress say, are
 * not for a terminal); a restart is said on stderr, so that what stdout
 * holds before it is known to be void. */
static void print_chunk(const struct jobs_chunk *k, void *userdata) {
        struct batch *b = userdata;

        if (k->restart) {
                fflush(stdout);
                fprintf(stderr, "%s[the stream restarted on another provider: the text above is void]\n",
                        b->streamed ? "\n" : "");
                b->streamed = false;
        }
        if (!k->name || strcmp(k->name, "text") != 0 || k->size == 0)
                return;
        fwrite(k->data, 1, k->size, stdout);
        fflush(stdout);
        b->streamed = true;
}

static int run_batch(struct batch *b, const char *socket_path) {
        struct jobs_client *c = NULL;
        uint64_t start = now(CLOCK_MONOTONIC);
        int r;

        r = jobs_client_connect(socket_path, &c);
        if (r == -ENOTCONN)
                return log_not_running(socket_path, JOBS_SOCKET_NAME, "SWARM_JOBS_SOCKET");
        if (r < 0) {
                log_error_errno(r, "Cannot connect to swarmd at %s: %m", socket_path);
                return 3;
        }
        load_peer_names(b, socket_path);
        jobs_client_on_chunk(c, print_chunk, b);
        b->tty = isatty(STDERR_FILENO) > 0;
        if (b->batch_mode && !b->quiet)
                fprintf(stderr, "Submitting %zu jobs, at most %u in flight, through %s.\n", b->n_jobs, b->parallel,
                        socket_path);

        while (b->done + b->failed < b->n_jobs) {
                struct jobs_result res = {};

                while (b->next < b->n_jobs && b->in_flight < b->parallel) {
                        r = submit_one(b, c, b->next++);
                        if (r < 0)
                                goto lost;
                }
                if (b->in_flight == 0)
                        continue;
                r = jobs_client_wait(c, 250, &res);
                if (r == -ETIMEDOUT) {
                        progress(b, false);
                        continue;
                }
                if (r < 0) {
                        log_error_errno(r, "Lost the connection to swarmd: %m");
                        goto lost;
                }
                record(b, &res);
                jobs_result_done(&res);
                progress(b, false);
        }
        progress(b, true);
        jobs_client_free(c);
        if (b->batch_mode)
                print_summary(b, now(CLOCK_MONOTONIC) - start);
        return b->malformed ? SWARMCTL_EXIT_BAD_ARGS : b->failed ? 1 : 0;

lost:
        /* What was in flight or not yet sent did not finish. */
        for (size_t i = 0; i < b->n_jobs; i++)
                if (!b->jobs[i].finished) {
                        b->jobs[i].finished = true;
                        b->failed++;
                }
        progress(b, true);
        jobs_client_free(c);
        if (b->batch_mode)
                print_summary(b, now(CLOCK_MONOTONIC) - start);
        return 1;
}

static void help(void) {
        printf("swarmctl submit --skill NAME --input NAME=SPEC... [--max-price N] [--deadline DURATION]\n"
               "                [--hedge] [-o DIR] [--socket PATH]\n"
               "swarmctl submit --batch FILE [--parallel N] [-v] [-q] [defaults as above]\n\n"
               "Runs jobs in the swarm through the local swarmd: it routes each one to a provider,\n"
               "verifies the result, reroutes on failure.  Only verified results are written.\n\n"
               "  -k, --skill NAME        the skill (batch: for jobs that name none)\n"
               "  -i, --input NAME=SPEC   @FILE.npy, @FILE (bytes), random:f32:MxN[:SEED], int:N,\n"
               "                          str:TEXT, text:TEXT (bytes), or a bare integer or string\n"
               "  -p, --max-price N       at most N micro-credits per job (default: no limit)\n"
               "  -d, --deadline D        give up after D (30s, 500ms; default 60s)\n"
               "      --hedge             ask a second provider when the first is slow\n"
               "      --no-stream         do not print text as the provider makes it (one job)\n"
               "      --key KEY           exactly once: a KEY done before (by you, within 24 h) gets its\n"
               "                          kept result, not a second run and payment (batch: KEY/INDEX)\n"
               "  -o, --output-dir DIR    write outputs there (.npy for tensors, raw bytes);\n"
               "                          batch: DIR/INDEX/ for jobs without output:\n"
               "  -b, --batch FILE        a YAML list of jobs {skill, inputs: {NAME: SPEC}, max_price,\n"
               "                          deadline, output, hedge, repeat}, or one job per line:\n"
               "                          \"SKILL NAME=SPEC NAME=SPEC …\"\n"
               "  -j, --parallel N        jobs in flight at once (default %u)\n"
               "  -v, --verbose           a line per finished job\n"
               "  -q, --quiet             no progress\n"
               "  -s, --socket PATH       swarmd's jobs socket (default $SWARM_JOBS_SOCKET, else\n"
               "                          $SWARM_STATE_DIR/jobs.sock, %s/jobs.sock or\n"
               "                          %s/jobs.sock)\n\n"
               "Exit status: 0 all verified, 1 some failed, 2 bad arguments or a job the skill\n"
               "refuses as malformed, 3 swarmd not running.\n",
               DEFAULT_PARALLEL, RUNTIME_SOCKET_DIR, STATEDIR);
}

/* Creates the --output-dir (its parent must exist); *created says whether
 * it is new, to remove it again when no result lands in it.  0, or the exit
 * status for a directory that cannot be made. */
static int output_dir_create(const char *dir, bool *created) {
        *created = false;
        if (!dir)
                return 0;
        if (mkdir(dir, 0755) < 0) {
                if (errno == EEXIST)
                        return 0;
                log_error_errno(negative_errno(), "--output-dir %s: %m", dir);
                return SWARMCTL_EXIT_BAD_ARGS;
        }
        *created = true;
        return 0;
}

int verb_submit(int argc, char *argv[]) {
        struct batch b = {
                .max_price = NO_PRICE_LIMIT,
                .parallel = DEFAULT_PARALLEL,
        };
        const char *socket_path = local_socket_default(JOBS_SOCKET_NAME, "SWARM_JOBS_SOCKET"), *batch_file = NULL;
        _cleanup_strv_free_ char **inputs = NULL;
        _cleanup_free_ char *output_dir = NULL;
        bool created_output_dir = false;
        int c, r = 2;
        static const struct option options[] = {
                { "skill", required_argument, NULL, 'k' },
                { "input", required_argument, NULL, 'i' },
                { "max-price", required_argument, NULL, 'p' },
                { "deadline", required_argument, NULL, 'd' },
                { "hedge", no_argument, NULL, 'H' },
                { "no-stream", no_argument, NULL, 'S' },
                { "key", required_argument, NULL, 'K' },
                { "output-dir", required_argument, NULL, 'o' },
                { "batch", required_argument, NULL, 'b' },
                { "parallel", required_argument, NULL, 'j' },
                { "verbose", no_argument, NULL, 'v' },
                { "quiet", no_argument, NULL, 'q' },
                { "socket", required_argument, NULL, 's' },
                { "help", no_argument, NULL, 'h' },
                {}
        };

        while ((c = getopt_long(argc, argv, "k:i:p:d:o:b:j:vqs:h", options, NULL)) >= 0)
                switch (c) {
                case 'k':
                        b.skill = optarg;
                        break;
                case 'i':
                        if (!strchr(optarg, '=') || optarg[0] == '=') {
                                log_error("--input %s: expected NAME=SPEC", optarg);
                                return 2;
                        }
                        if (strv_push(&inputs, optarg) < 0)
                                return (void) log_oom(), 1;
                        break;
                case 'p':
                        if (parse_u64(optarg, &b.max_price) < 0) {
                                log_error("--max-price %s: expected a number of micro-credits", optarg);
                                return 2;
                        }
                        break;
                case 'd':
                        if (duration_parse(optarg, &b.deadline_usec) < 0 || b.deadline_usec == 0) {
                                log_error("--deadline %s: expected a duration such as 30s or 500ms", optarg);
                                return 2;
                        }
                        break;
                case 'H':
                        b.hedge = true;
                        break;
                case 'S':
                        b.no_stream = true;
                        break;
                case 'K':
                        if (!optarg[0] || strlen(optarg) > 100) {
                                log_error("--key %s: expected 1 to 100 bytes", optarg);
                                return 2;
                        }
                        b.key = optarg;
                        break;
                case 'o': {
                        size_t n = strlen(optarg);

                        /* "out/" and "out" alike: paths print without "//". */
                        while (n > 1 && optarg[n - 1] == '/')
                                n--;
                        free(output_dir);
                        output_dir = strndup(optarg, n);
                        if (!output_dir) {
                                (void) log_oom();
                                r = 1;
                                goto finish;
                        }
                        b.output = output_dir;
                        break;
                }
                case 'b':
                        batch_file = optarg;
                        break;
                case 'j': {
                        uint64_t n;
                        if (parse_u64(optarg, &n) < 0 || n == 0 || n > PARALLEL_MAX) {
                                log_error("--parallel %s: expected 1 to %u", optarg, PARALLEL_MAX);
                                return 2;
                        }
                        b.parallel = (unsigned) n;
                        break;
                }
                case 'v':
                        b.verbose = true;
                        break;
                case 'q':
                        b.quiet = true;
                        break;
                case 's':
                        socket_path = optarg;
                        break;
                case 'h':
                        help();
                        return 0;
                default:
                        return 2;
                }
        if (optind != argc) {
                log_error("submit: unexpected argument \"%s\" (inputs go with --input).", argv[optind]);
                return 2;
        }
        b.inputs = inputs;
        for (b.n_inputs = 0; inputs && inputs[b.n_inputs]; b.n_inputs++)
                ;

        if (batch_file) {
                b.batch_mode = true;
                b.batch_file = batch_file;
                if (parse_batch(&b, batch_file) < 0)
                        goto finish;
                if (b.n_jobs == 0) {
                        log_error("--batch %s: no jobs in it.", batch_file);
                        goto finish;
                }
                for (size_t i = 0; i < b.n_jobs; i++)
                        if (!b.jobs[i].output && b.output &&
                            asprintf(&b.jobs[i].output, "%s/%zu", b.output, i) < 0) {
                                (void) log_oom();
                                r = 1;
                                goto finish;
                        }
                r = output_dir_create(b.output, &created_output_dir);
                if (r != 0)
                        goto finish;
        } else {
                struct job *j;
                struct swarm_values *check;

                if (!b.skill) {
                        log_error("submit: which skill? (--skill NAME, or --batch FILE)");
                        goto finish;
                }
                j = batch_add(&b);
                if (!j || job_finish_defaults(&b, j) < 0) {
                        (void) log_oom();
                        r = 1;
                        goto finish;
                }
                /* Bad inputs are bad arguments: find them before connecting. */
                check = swarm_values_new();
                if (!check) {
                        (void) log_oom();
                        r = 1;
                        goto finish;
                }
                swarm_values_set_allocator(check, shm_allocate, NULL);
                for (char **k = j->inputs; k && *k; k++)
                        if (input_add(check, *k) < 0) {
                                swarm_values_free(check);
                                goto finish;
                        }
                swarm_values_free(check);
                r = output_dir_create(b.output, &created_output_dir);
                if (r != 0)
                        goto finish;
        }

        r = run_batch(&b, socket_path);
        /* Nothing came back to keep: no empty directory left behind. */
        if (created_output_dir)
                (void) rmdir(b.output);
finish:
        for (size_t i = 0; i < b.n_jobs; i++)
                job_done(&b.jobs[i]);
        free(b.jobs);
        if (b.peers)
                swarm__control_reply__free_unpacked(b.peers, NULL);
        return r;
}

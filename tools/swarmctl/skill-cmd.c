/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* swarmctl skill inspect|run: what a skill author needs to see a plugin
 * load, advertise itself and run one job through a real swarm-worker. */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "build-config.h"
#include "inputs.h"
#include "log.h"
#include "macro.h"
#include "npy.h"
#include "shm.h"
#include "skill-cmd.h"
#include "skill-index.h"
#include "skill-loader.h"
#include "skill-pool.h"
#include "time-util.h"

struct run_state {
        sd_event *event;
        struct skill_pool *pool;
        const struct swarm_values *inputs;
        uint64_t deadline_usec;         /* relative */
        unsigned repeat, done_runs;
        const char *output_dir;
        bool inspect_only;
        int status;
        /* Results of the last run, for printing and verification. */
        struct swarm_values *outputs, *proof;
        uint64_t price;
        uint64_t *round_trips, *exec_times;
        uint64_t price_usec, verify_usec;
        bool streamed;                  /* chunks were printed on the current line */
};

/* A skill argument is a path when it contains a slash, else a name looked
 * up in $SWARM_SKILL_PATH (colon-separated) and then the installed skill
 * directory. */
/* A tool may load plugins itself (skill inspect does): no process each. */
static int describe_in_process(const char *path, void *userdata, char **ret) {
        struct loaded_skill loaded;
        char error[512];
        int r;

        r = skill_load(path, &loaded, error, sizeof(error));
        if (r < 0)
                return r;
        *ret = strdup(loaded.skill->name);
        skill_unload(&loaded);
        return *ret ? 0 : -ENOMEM;
}

static int resolve_skill(const char *arg, char **ret) {
        const char *env = getenv("SWARM_SKILL_PATH");
        _cleanup_free_ char *dirs = NULL;
        int r;

        if (asprintf(&dirs, "%s%s%s", env ?: "", env ? ":" : "", SKILLDIR) < 0)
                return log_oom();
        /* A file name (gemm), else a skill's own name (example.scale). */
        r = skill_find(arg, dirs, ret);
        if (r == -ENOENT && !strchr(arg, '/'))
                r = skill_index_find(dirs, arg, describe_in_process, NULL, ret);
        if (r == -ENOENT && !strchr(arg, '/'))
                return log_error_errno(r, "No skill named %s in %s (give a path to a .so to use another).",
                                       arg, dirs);
        if (r < 0)
                return log_error_errno(r, "%s: %m", arg);
        return 0;
}

/* KEY=VALUE: an integer when VALUE parses as one, else a string. */
static int add_config(struct swarm_values *v, const char *arg) {
        _cleanup_free_ char *key = NULL;
        const char *eq = strchr(arg, '=');
        char *end;
        long long x;
        int r;

        if (!eq)
                return log_error_errno(-EINVAL, "--config %s: expected KEY=VALUE", arg);
        key = strndup(arg, (size_t) (eq - arg));
        if (!key)
                return log_oom();
        errno = 0;
        x = strtoll(eq + 1, &end, 0);
        if (eq[1] && !*end && errno == 0)
                r = swarm_values_set_int(v, key, x);
        else
                r = swarm_values_set_string(v, key, eq + 1);
        if (r < 0)
                return log_error_errno(r, "--config %s: %s", arg,
                                       r == -EEXIST ? "given twice" : "bad key (1-63 characters of [a-z0-9_.-])");
        return 0;
}

static void print_tensor_preview(const struct swarm_tensor *t) {
        uint64_t n = t->n_elements < 6 ? t->n_elements : 6;

        printf("  [");
        for (uint64_t i = 0; i < n; i++) {
                double x;
                switch (t->dtype) {
                case SWARM_DTYPE_F32: x = ((const float *) t->data)[i]; break;
                case SWARM_DTYPE_F64: x = ((const double *) t->data)[i]; break;
                case SWARM_DTYPE_I32: x = ((const int32_t *) t->data)[i]; break;
                case SWARM_DTYPE_I64: x = (double) ((const int64_t *) t->data)[i]; break;
                case SWARM_DTYPE_I8: x = ((const int8_t *) t->data)[i]; break;
                case SWARM_DTYPE_U8: x = ((const uint8_t *) t->data)[i]; break;
                default: printf("…]"); return;
                }
                printf("%s%g", i ? ", " : "", x);
        }
        printf("%s]", n < t->n_elements ? ", …" : "");
}

static void print_values(const char *title, const struct swarm_values *v, const char *output_dir) {
        size_t n = swarm_values_count(v);

        if (n == 0)
                return;
        printf("%s:\n", title);
        for (size_t i = 0; i < n; i++) {
                struct swarm_value x;
                const char *name;
                enum swarm_value_type type;

                (void) swarm_values_at(v, i, &x);
                name = x.name;
                type = x.type;
                printf("  %-14s ", name);
                switch (type) {
                case SWARM_VALUE_INT:
                        printf("%" PRId64 "\n", x.integer);
                        break;
                case SWARM_VALUE_STRING:
                        printf("\"%s\"\n", x.string);
                        break;
                case SWARM_VALUE_BYTES:
                        printf("%zu bytes ", x.size);
                        for (size_t k = 0; k < x.size && k < 32; k++)
                                printf("%02x", ((const uint8_t *) x.data)[k]);
                        printf("%s\n", x.size > 32 ? "…" : "");
                        break;
                case SWARM_VALUE_TENSOR:
                        printf("%s[", swarm_dtype_name(x.tensor.dtype) ?: "?");
                        for (uint32_t d = 0; d < x.tensor.ndim; d++)
                                printf("%s%" PRIu64, d ? "x" : "", x.tensor.shape[d]);
                        printf("]");
                        print_tensor_preview(&x.tensor);
                        printf("\n");
                        break;
                }
                if (output_dir && (type == SWARM_VALUE_TENSOR || type == SWARM_VALUE_BYTES)) {
                        _cleanup_free_ char *path = NULL;
                        int r;

                        if (asprintf(&path, "%s/%s%s", output_dir, name, type == SWARM_VALUE_TENSOR ? ".npy" : "") < 0)
                                continue;
                        if (type == SWARM_VALUE_TENSOR)
                                r = npy_write(path, &x.tensor);
                        else {
                                _cleanup_fclose_ FILE *f = fopen(path, "we");
                                r = f && fwrite(x.data, 1, x.size, f) == x.size && fflush(f) == 0 ? 0 : -EIO;
                        }
                        if (r < 0)
                                log_error_errno(r, "Failed to write %s: %m", path);
                        else
                                printf("  %-14s → %s\n", "", path);
                }
        }
}

static void finish(struct run_state *s, int status) {
        s->status = status;
        (void) sd_event_exit(s->event, status < 0 ? 1 : 0);
}

static void submit_next(struct run_state *s);

static void on_verified(struct pool_request *req, struct pool_result *res, void *userdata) {
        struct run_state *s = userdata;

        s->verify_usec = res->total_usec;
        if (res->status < 0) {
                printf("verify      FAILED: %s\n", res->error);
                finish(s, res->status);
                return;
        }
        printf("verify      passed  (%.3f ms)\n", (double) res->total_usec / 1e3);
        print_values("outputs", s->outputs, s->output_dir);
        print_values("proof", s->proof, NULL);
        finish(s, 0);
}

static int compare_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

/* What the skill emits while it runs (text tokens as they are generated)
 * is printed as it comes, on the first run only. */
static void on_chunk(struct pool_request *req, const char *name, const void *data, size_t size, void *userdata) {
        struct run_state *s = userdata;

        if (s->done_runs > 0)
                return;
        if (!s->streamed)
                printf("stream      ");
        s->streamed = true;
        if (strcmp(name, "text") == 0)
                fwrite(data, 1, size, stdout);
        else
                printf("[%s: %zu bytes]", name, size);
        fflush(stdout);
}

static void on_executed(struct pool_request *req, struct pool_result *res, void *userdata) {
        struct run_state *s = userdata;
        int r;

        if (s->streamed) {
                printf("\n");
                s->streamed = false;
        }

        if (res->status < 0) {
                printf("execute     FAILED: %s\n", res->error);
                finish(s, res->status);
                return;
        }
        s->round_trips[s->done_runs] = res->total_usec;
        s->exec_times[s->done_runs] = res->exec_usec;
        s->done_runs++;
        swarm_values_free(s->outputs);
        swarm_values_free(s->proof);
        s->outputs = TAKE_PTR(res->outputs);
        s->proof = TAKE_PTR(res->proof);
        if (s->done_runs < s->repeat) {
                submit_next(s);
                return;
        }

        if (s->repeat == 1)
                printf("execute     ok      (execution %.3f ms, round trip %.3f ms)\n",
                       (double) s->exec_times[0] / 1e3, (double) s->round_trips[0] / 1e3);
        else {
                qsort(s->round_trips, s->repeat, sizeof(uint64_t), compare_u64);
                qsort(s->exec_times, s->repeat, sizeof(uint64_t), compare_u64);
                printf("execute     ok      %u runs: execution p50 %.3f ms; round trip p50 %.3f ms, "
                       "p99 %.3f ms, min %.3f ms\n", s->repeat,
                       (double) s->exec_times[s->repeat / 2] / 1e3,
                       (double) s->round_trips[s->repeat / 2] / 1e3,
                       (double) s->round_trips[(s->repeat * 99) / 100] / 1e3,
                       (double) s->round_trips[0] / 1e3);
        }

        /* Never shown unverified: the result goes through the skill's own check. */
        r = skill_pool_submit(s->pool, POOL_VERIFY, s->inputs, s->outputs, s->proof, 0, on_verified, s, NULL);
        if (r < 0) {
                log_error_errno(r, "Failed to submit verification: %m");
                finish(s, r);
        }
}

static void submit_next(struct run_state *s) {
        uint64_t deadline = s->deadline_usec ? now(CLOCK_MONOTONIC) + s->deadline_usec : 0;
        struct pool_request *req;
        int r;

        r = skill_pool_submit(s->pool, POOL_EXECUTE, s->inputs, NULL, NULL, deadline, on_executed, s, &req);
        if (r < 0) {
                log_error_errno(r, "Failed to submit the job: %m");
                finish(s, r);
                return;
        }
        skill_pool_request_on_chunk(req, on_chunk, s);
}

static void on_priced(struct pool_request *req, struct pool_result *res, void *userdata) {
        struct run_state *s = userdata;

        if (res->status < 0) {
                printf("price       REFUSED: %s\n", res->error);
                finish(s, res->status);
                return;
        }
        s->price = res->price;
        printf("price       %" PRIu64 " µcredits  (%.3f ms)\n", res->price, (double) res->total_usec / 1e3);
        submit_next(s);
}

static void on_ready(struct skill_pool *pool, void *userdata) {
        struct run_state *s = userdata;
        const struct skill_info *info = skill_pool_info(pool);
        int r;

        if (s->inspect_only) {
                print_values("Advert", info->advert, NULL);
                finish(s, 0);
                return;
        }
        printf("skill       %s %s\n", info->name, info->version);
        r = skill_pool_submit(s->pool, POOL_PRICE, s->inputs, NULL, NULL, 0, on_priced, s, NULL);
        if (r < 0) {
                log_error_errno(r, "Failed to submit the price request: %m");
                finish(s, r);
        }
}

/* A worker that cannot start is retried with backoff by the pool; a tool
 * should say why and stop instead. */
static int on_start_timeout(sd_event_source *es, uint64_t usec, void *userdata) {
        struct run_state *s = userdata;

        if (skill_pool_info(s->pool))
                return 0;
        log_error("The skill's worker did not start: %s", skill_pool_last_error(s->pool) ?: "no answer");
        finish(s, -ETIMEDOUT);
        return 0;
}

static int on_restart_check(sd_event_source *es, uint64_t usec, void *userdata) {
        struct run_state *s = userdata;

        /* A failed start shows as restarts before the pool is ready. */
        if (!skill_pool_info(s->pool) && skill_pool_restarts(s->pool) > 0) {
                log_error("The skill's worker failed to start: %s",
                          skill_pool_last_error(s->pool) ?: "unknown error");
                finish(s, -ENOEXEC);
                return 0;
        }
        (void) sd_event_source_set_time_relative(es, 20 * 1000);
        return sd_event_source_set_enabled(es, SD_EVENT_ONESHOT);
}

#define SKILL_RUN_DEADLINE_USEC (60u * 1000u * 1000u)

static int run_pool(const char *plugin, const struct swarm_values *config, struct run_state *s) {
        _cleanup_free_ char *worker = NULL, *name = skill_name_from_path(plugin);
        sd_event_source *timeout = NULL, *check = NULL;
        struct skill_pool_config pc = {
                .name = name ?: "skill",
                .plugin_path = plugin,
                .workers = 1,
                .skill_config = config,
        };
        sigset_t mask;
        int r;

        worker = skill_worker_path();
        if (!worker)
                return log_oom();
        pc.worker_path = worker;

        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        r = sd_event_new(&s->event);
        if (r < 0)
                return log_error_errno(r, "Failed to create event loop: %m");
        r = skill_pool_new(s->event, &pc, &s->pool);
        if (r < 0) {
                sd_event_unref(s->event);
                return log_error_errno(r, "Failed to start %s with %s: %m", plugin, worker);
        }
        skill_pool_set_ready_callback(s->pool, on_ready, s);
        (void) sd_event_add_time_relative(s->event, &timeout, CLOCK_MONOTONIC, 60 * 1000 * 1000, 0,
                                          on_start_timeout, s);
        (void) sd_event_add_time_relative(s->event, &check, CLOCK_MONOTONIC, 20 * 1000, 0,
                                          on_restart_check, s);
        s->status = 0;
        r = sd_event_loop(s->event);
        sd_event_source_disable_unref(timeout);
        sd_event_source_disable_unref(check);
        s->pool = skill_pool_free(s->pool);
        s->event = sd_event_unref(s->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return s->status;
}

/* One line per declared value: name, form, whether required, what it is. */
static void print_params(const char *title, const struct swarm_param *list) {
        if (!list) {
                printf("%-13s (not declared: the skill checks its values itself)\n", title);
                return;
        }
        printf("%s\n", title);
        for (const struct swarm_param *p = list; p->name; p++) {
                char form[96], dims[16] = "";
                const char *dtype = p->dtype ? swarm_dtype_name(p->dtype) : "any";

                if (p->ndim > 0)
                        snprintf(dims, sizeof(dims), " %" PRIu32 "-D", p->ndim);
                if (p->type == SWARM_VALUE_TENSOR)
                        snprintf(form, sizeof(form), "%s tensor%s%s%s%s", dtype, dims, p->shape ? " [" : "",
                                 p->shape ?: "", p->shape ? "]" : "");
                else
                        snprintf(form, sizeof(form), "%s", p->type ? swarm_value_type_name(p->type) : "any");
                printf("  %-22s %-26s %-8s %s\n", p->name, form,
                       p->flags & SWARM_PARAM_OPTIONAL ? "optional" : "required", p->description ?: "");
        }
}

static int verb_inspect(int argc, char *argv[]) {
        _cleanup_free_ char *path = NULL;
        struct swarm_values *config = swarm_values_new();
        struct loaded_skill loaded;
        struct run_state s = { .inspect_only = true };
        char error[512], callbacks[128];
        int c, r;
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "help", no_argument, NULL, 'h' },
                {}
        };

        if (!config)
                return log_oom();
        while ((c = getopt_long(argc, argv, "c:h", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        if (add_config(config, optarg) < 0)
                                goto usage_error;
                        break;
                case 'h':
                        printf("swarmctl skill inspect PATH.so|NAME [--config KEY=VALUE]...\n");
                        swarm_values_free(config);
                        return 0;
                default:
                        goto usage_error;
                }
        if (optind + 1 != argc) {
                log_error("skill inspect: expected one skill (a path to a .so or an installed name).");
                goto usage_error;
        }
        r = resolve_skill(argv[optind], &path);
        if (r < 0)
                goto fail;

        r = skill_load(path, &loaded, error, sizeof(error));
        if (r < 0) {
                log_error("%s", error);
                goto fail;
        }
        printf("Skill:        %s\n", loaded.skill->name);
        printf("Version:      %s\n", loaded.skill->version ?: "(none)");
        printf("Description:  %s\n", loaded.skill->description ?: "(none)");
        printf("File:         %s\n", path);
        printf("ABI:          %u.%u (this host: %u.%u), descriptor %u bytes\n",
               SWARM_SKILL_ABI_MAJOR_OF(loaded.skill->abi_version), loaded.skill->abi_version & 0xffffu,
               SWARM_SKILL_ABI_MAJOR, SWARM_SKILL_ABI_MINOR, loaded.skill->struct_size);
        printf("Callbacks:    %s\n", skill_callbacks_string(loaded.skill, callbacks, sizeof(callbacks)));
        print_params("Inputs:", skill_declared_inputs(loaded.skill));
        print_params("Outputs:", skill_declared_outputs(loaded.skill));
        skill_unload(&loaded);
        fflush(stdout);

        /* The advert comes from a real worker: init() runs there, not here. */
        r = run_pool(path, config, &s);
fail:
        swarm_values_free(config);
        return r < 0 ? 1 : 0;
usage_error:
        swarm_values_free(config);
        return 2;
}

static int verb_run(int argc, char *argv[]) {
        _cleanup_free_ char *path = NULL;
        struct swarm_values *config = swarm_values_new(), *inputs = swarm_values_new();
        /* As swarmctl submit: a hanging skill is cancelled, not waited on. */
        struct run_state s = { .repeat = 1, .deadline_usec = SKILL_RUN_DEADLINE_USEC };
        int c, r = 0;
        static const struct option options[] = {
                { "input", required_argument, NULL, 'i' },
                { "config", required_argument, NULL, 'c' },
                { "deadline", required_argument, NULL, 'd' },
                { "repeat", required_argument, NULL, 'n' },
                { "output-dir", required_argument, NULL, 'o' },
                { "help", no_argument, NULL, 'h' },
                {}
        };

        if (!config || !inputs)
                return log_oom();
        /* Tensors are born in shared memory: sent to the worker as they are. */
        swarm_values_set_allocator(inputs, shm_allocate, NULL);
        while ((c = getopt_long(argc, argv, "i:c:d:n:o:h", options, NULL)) >= 0)
                switch (c) {
                case 'i':
                        if (input_add(inputs, optarg) < 0)
                                goto usage_error;
                        break;
                case 'c':
                        if (add_config(config, optarg) < 0)
                                goto usage_error;
                        break;
                case 'd':
                        if (duration_parse(optarg, &s.deadline_usec) < 0 || s.deadline_usec == 0) {
                                log_error("--deadline %s: expected a duration such as 30s or 500ms", optarg);
                                goto usage_error;
                        }
                        break;
                case 'n': {
                        char *end;
                        unsigned long n = strtoul(optarg, &end, 10);
                        if (*end || n == 0 || n > 1000000) {
                                log_error("--repeat %s: expected 1 to 1000000", optarg);
                                goto usage_error;
                        }
                        s.repeat = (unsigned) n;
                        break;
                }
                case 'o':
                        s.output_dir = optarg;
                        if (mkdir(optarg, 0755) < 0 && errno != EEXIST) {
                                log_error_errno(negative_errno(), "--output-dir %s: %m", optarg);
                                goto usage_error;
                        }
                        break;
                case 'h':
                        printf("swarmctl skill run PATH.so|NAME --input NAME=SPEC... [--config KEY=VALUE]...\n"
                               "                   [--deadline DURATION] [--repeat N] [--output-dir DIR]\n"
                               "SPEC: @FILE.npy (tensor), @FILE (bytes), random:f32:MxN, int:N, str:TEXT,\n"
                               "      text:TEXT (bytes), or a bare integer or string\n");
                        goto done;
                default:
                        goto usage_error;
                }
        if (optind + 1 != argc) {
                log_error("skill run: expected one skill (a path to a .so or an installed name).");
                goto usage_error;
        }
        r = resolve_skill(argv[optind], &path);
        if (r < 0)
                goto done;

        s.inputs = inputs;
        s.round_trips = calloc(s.repeat, sizeof(uint64_t));
        s.exec_times = calloc(s.repeat, sizeof(uint64_t));
        if (!s.round_trips || !s.exec_times)
                r = log_oom();
        else
                r = run_pool(path, config, &s);
done:
        free(s.round_trips);
        free(s.exec_times);
        swarm_values_free(s.outputs);
        swarm_values_free(s.proof);
        swarm_values_free(config);
        swarm_values_free(inputs);
        return r < 0 ? 1 : 0;
usage_error:
        swarm_values_free(config);
        swarm_values_free(inputs);
        return 2;
}

int verb_skill(int argc, char *argv[]) {
        if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
                printf("swarmctl skill inspect PATH.so|NAME      describe a skill plugin and its advert\n"
                       "swarmctl skill run PATH.so|NAME --input… run one job through a real worker and verify it\n");
                return argc < 2 ? 2 : 0;
        }
        if (strcmp(argv[1], "inspect") == 0)
                return verb_inspect(argc - 1, argv + 1);
        if (strcmp(argv[1], "run") == 0)
                return verb_run(argc - 1, argv + 1);
        log_error("Unknown skill command \"%s\" (try inspect or run).", argv[1]);
        return 2;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "openai.h"

/* textgen's own bounds (plugins/textgen): what is refused here is refused
 * with OpenAI's words, before a job is made. */
#define MAX_TOKENS_MAX (1 << 20)
#define MESSAGES_MAX 1024
#define ROLE_MAX 32

void openai_request_done(struct openai_request *r) {
        free(r->model);
        swarm_values_free(r->inputs);
        *r = (struct openai_request) {};
}

__attribute__((format(printf, 5, 6)))
static int fail(char *err, size_t n, const char **param, const char *field, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        vsnprintf(err, n, format, ap);
        va_end(ap);
        *param = field;
        return -EINVAL;
}

static const char *type_name(json_object *o) {
        switch (json_object_get_type(o)) {
        case json_type_null:
                return "null";
        case json_type_boolean:
                return "a boolean";
        case json_type_double:
        case json_type_int:
                return "a number";
        case json_type_object:
                return "an object";
        case json_type_array:
                return "an array";
        case json_type_string:
                return "a string";
        }
        return "a value";
}

/* A chat's messages, checked, as textgen's "messages" input takes them:
 * a JSON array of {"role", "content"} with string content. */
static int chat_messages(json_object *messages, char **ret, char *err, size_t n, const char **param) {
        json_object *clean;
        size_t count;

        if (!json_object_is_type(messages, json_type_array))
                return fail(err, n, param, "messages", "'messages' must be an array of messages, not %s",
                            type_name(messages));
        count = json_object_array_length(messages);
        if (count == 0 || count > MESSAGES_MAX)
                return fail(err, n, param, "messages", "'messages' must hold 1 to 1024 messages%s", "");
        clean = json_object_new_array();
        if (!clean)
                return -ENOMEM;
        for (size_t i = 0; i < count; i++) {
                json_object *m = json_object_array_get_idx(messages, i), *role, *content, *out;
                static char field[48];

                snprintf(field, sizeof(field), "messages[%zu]", i);
                if (!json_object_is_type(m, json_type_object)) {
                        json_object_put(clean);
                        return fail(err, n, param, field, "'%s' must be an object with role and content", field);
                }
                if (!json_object_object_get_ex(m, "role", &role) || !json_object_is_type(role, json_type_string) ||
                    json_object_get_string_len(role) == 0 || json_object_get_string_len(role) > ROLE_MAX) {
                        json_object_put(clean);
                        snprintf(field, sizeof(field), "messages[%zu].role", i);
                        return fail(err, n, param, field, "'%s' must be a string such as \"user\"", field);
                }
                if (!json_object_object_get_ex(m, "content", &content) ||
                    !json_object_is_type(content, json_type_string)) {
                        json_object_put(clean);
                        snprintf(field, sizeof(field), "messages[%zu].content", i);
                        return fail(err, n, param, field, "'%s' must be a string (text content only)", field);
                }
                out = json_object_new_object();
                if (!out || json_object_array_add(clean, out) < 0) {
                        json_object_put(out);
                        json_object_put(clean);
                        return -ENOMEM;
                }
                json_object_object_add(out, "role", json_object_get(role));
                json_object_object_add(out, "content", json_object_get(content));
        }
        *ret = strdup(json_object_to_json_string_ext(clean, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(clean);
        return *ret ? 0 : -ENOMEM;
}

static int number(json_object *o, double *ret) {
        if (!json_object_is_type(o, json_type_double) && !json_object_is_type(o, json_type_int))
                return -EINVAL;
        *ret = json_object_get_double(o);
        return isfinite(*ret) ? 0 : -EINVAL;
}

int openai_parse_request(enum openai_kind kind, const char *body, size_t size, swarm_values_allocator_fn allocate,
                         struct openai_request *ret, char *err, size_t err_size, const char **param) {
        struct openai_request r = { .kind = kind };
        json_tokener *tok = json_tokener_new();
        json_object *root = NULL, *v;
        char *messages = NULL, buf[32];
        double d;
        int k;

        *param = NULL;
        if (!tok)
                return -ENOMEM;
        root = json_tokener_parse_ex(tok, body, (int) size);
        if (!root || json_tokener_get_error(tok) != json_tokener_success ||
            json_tokener_get_parse_end(tok) < size) {
                snprintf(err, err_size, "the body is not valid JSON: %s",
                         root ? "text after the object" : json_tokener_error_desc(json_tokener_get_error(tok)));
                json_object_put(root);
                json_tokener_free(tok);
                return -EINVAL;
        }
        json_tokener_free(tok);
        if (!json_object_is_type(root, json_type_object)) {
                json_object_put(root);
                snprintf(err, err_size, "the body must be a JSON object");
                return -EINVAL;
        }
        r.inputs = swarm_values_new();
        if (!r.inputs) {
                k = -ENOMEM;
                goto finish;
        }
        if (allocate)
                swarm_values_set_allocator(r.inputs, allocate, NULL);

        if (!json_object_object_get_ex(root, "model", &v) || !json_object_is_type(v, json_type_string) ||
            json_object_get_string_len(v) == 0 || json_object_get_string_len(v) > 255) {
                k = fail(err, err_size, param, "model", "'model' must be the name of a model (GET /v1/models)%s", "");
                goto finish;
        }
        r.model = strdup(json_object_get_string(v));
        k = r.model ? swarm_values_set_string(r.inputs, "model", r.model) : -ENOMEM;
        if (k < 0)
                goto finish;

        if (kind == OPENAI_CHAT) {
                if (!json_object_object_get_ex(root, "messages", &v)) {
                        k = fail(err, err_size, param, "messages", "'messages' is required%s", "");
                        goto finish;
                }
                k = chat_messages(v, &messages, err, err_size, param);
                if (k >= 0)
                        k = swarm_values_set_string(r.inputs, "messages", messages);
        } else {
                if (!json_object_object_get_ex(root, "prompt", &v)) {
                        k = fail(err, err_size, param, "prompt", "'prompt' is required%s", "");
                        goto finish;
                }
                /* A list of one prompt is a prompt; more would be n jobs. */
                if (json_object_is_type(v, json_type_array) && json_object_array_length(v) == 1)
                        v = json_object_array_get_idx(v, 0);
                if (!json_object_is_type(v, json_type_string)) {
                        k = fail(err, err_size, param, "prompt", "'prompt' must be a string (or a list of one), "
                                 "not %s", type_name(v));
                        goto finish;
                }
                k = swarm_values_set_string(r.inputs, "prompt", json_object_get_string(v));
        }
        if (k < 0)
                goto finish;

        /* max_completion_tokens is the newer name of max_tokens. */
        if (json_object_object_get_ex(root, "max_tokens", &v) ||
            json_object_object_get_ex(root, "max_completion_tokens", &v)) {
                if (!json_object_is_type(v, json_type_null)) {
                        int64_t x = json_object_get_int64(v);

                        if (!json_object_is_type(v, json_type_int) || x < 1 || x > MAX_TOKENS_MAX) {
                                k = fail(err, err_size, param, "max_tokens",
                                         "'max_tokens' must be an integer from 1 to 1048576%s", "");
                                goto finish;
                        }
                        k = swarm_values_set_int(r.inputs, "max_tokens", x);
                        if (k < 0)
                                goto finish;
                }
        }
        if (json_object_object_get_ex(root, "temperature", &v) && !json_object_is_type(v, json_type_null)) {
                if (number(v, &d) < 0 || d < 0 || d > 2) {
                        k = fail(err, err_size, param, "temperature", "'temperature' must be a number from 0 to 2%s",
                                 "");
                        goto finish;
                }
                snprintf(buf, sizeof(buf), "%.6g", d);
                k = swarm_values_set_string(r.inputs, "temperature", buf);
                if (k < 0)
                        goto finish;
        }
        if (json_object_object_get_ex(root, "top_p", &v) && !json_object_is_type(v, json_type_null)) {
                if (number(v, &d) < 0 || d <= 0 || d > 1) {
                        k = fail(err, err_size, param, "top_p", "'top_p' must be a number above 0, at most 1%s", "");
                        goto finish;
                }
                snprintf(buf, sizeof(buf), "%.6g", d);
                k = swarm_values_set_string(r.inputs, "top_p", buf);
                if (k < 0)
                        goto finish;
        }
        if (json_object_object_get_ex(root, "seed", &v) && !json_object_is_type(v, json_type_null)) {
                if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0) {
                        k = fail(err, err_size, param, "seed", "'seed' must be a non-negative integer%s", "");
                        goto finish;
                }
                k = swarm_values_set_int(r.inputs, "seed", json_object_get_int64(v));
                if (k < 0)
                        goto finish;
        }
        if (json_object_object_get_ex(root, "stop", &v) && !json_object_is_type(v, json_type_null)) {
                if (json_object_is_type(v, json_type_array) && json_object_array_length(v) <= 1)
                        v = json_object_array_length(v) == 1 ? json_object_array_get_idx(v, 0) : NULL;
                if (v && (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0)) {
                        k = fail(err, err_size, param, "stop", "'stop' must be one non-empty string (one stop "
                                 "sequence is supported)%s", "");
                        goto finish;
                }
                if (v) {
                        k = swarm_values_set_string(r.inputs, "stop", json_object_get_string(v));
                        if (k < 0)
                                goto finish;
                }
        }
        if (json_object_object_get_ex(root, "n", &v) && !json_object_is_type(v, json_type_null) &&
            (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) != 1)) {
                k = fail(err, err_size, param, "n", "'n' must be 1: one choice per request%s", "");
                goto finish;
        }
        if (json_object_object_get_ex(root, "stream", &v) && !json_object_is_type(v, json_type_null)) {
                if (!json_object_is_type(v, json_type_boolean)) {
                        k = fail(err, err_size, param, "stream", "'stream' must be true or false%s", "");
                        goto finish;
                }
                r.stream = json_object_get_boolean(v);
        }
        if (json_object_object_get_ex(root, "stream_options", &v) && json_object_is_type(v, json_type_object)) {
                json_object *u;

                if (json_object_object_get_ex(v, "include_usage", &u))
                        r.include_usage = json_object_get_boolean(u);
        }
        k = 0;
finish:
        free(messages);
        json_object_put(root);
        if (k < 0) {
                if (k == -ENOMEM)
                        snprintf(err, err_size, "out of memory");
                openai_request_done(&r);
                return k;
        }
        *ret = r;
        return 0;
}

static char *to_string(json_object *o) {
        char *s = o ? strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                JSON_C_TO_STRING_NOSLASHESCAPE)) : NULL;

        json_object_put(o);
        return s;
}

static json_object *usage_of(const struct openai_result *r) {
        json_object *u = json_object_new_object();

        json_object_object_add(u, "prompt_tokens", json_object_new_int64(r->prompt_tokens));
        json_object_object_add(u, "completion_tokens", json_object_new_int64(r->completion_tokens));
        json_object_object_add(u, "total_tokens", json_object_new_int64(r->prompt_tokens + r->completion_tokens));
        return u;
}

/* The extension every response carries: what it cost, who ran it. */
static json_object *swarm_of(const struct openai_result *r, bool restart) {
        json_object *s = json_object_new_object();

        if (restart)
                json_object_object_add(s, "restart", json_object_new_boolean(1));
        else {
                json_object_object_add(s, "cost_ucredits", json_object_new_uint64(r->cost_ucredits));
                json_object_object_add(s, "provider", json_object_new_string(r->provider ?: ""));
                json_object_object_add(s, "verified", json_object_new_boolean(1));
        }
        return s;
}

static json_object *head(enum openai_kind kind, const struct openai_result *r, bool chunk) {
        json_object *o = json_object_new_object();

        json_object_object_add(o, "id", json_object_new_string(r->id));
        json_object_object_add(o, "object", json_object_new_string(kind == OPENAI_CHAT ?
                                                                   (chunk ? "chat.completion.chunk" : "chat.completion") :
                                                                   "text_completion"));
        json_object_object_add(o, "created", json_object_new_int64(r->created));
        json_object_object_add(o, "model", json_object_new_string(r->model));
        return o;
}

char *openai_response(enum openai_kind kind, const struct openai_result *r) {
        json_object *o = head(kind, r, false), *choices = json_object_new_array(), *c = json_object_new_object();

        json_object_object_add(c, "index", json_object_new_int(0));
        if (kind == OPENAI_CHAT) {
                json_object *m = json_object_new_object();

                json_object_object_add(m, "role", json_object_new_string("assistant"));
                json_object_object_add(m, "content", json_object_new_string(r->text ?: ""));
                json_object_object_add(c, "message", m);
        } else {
                json_object_object_add(c, "text", json_object_new_string(r->text ?: ""));
                json_object_object_add(c, "logprobs", NULL);
        }
        json_object_object_add(c, "finish_reason", json_object_new_string(r->finish_reason ?: "stop"));
        json_object_array_add(choices, c);
        json_object_object_add(o, "choices", choices);
        json_object_object_add(o, "usage", usage_of(r));
        json_object_object_add(o, "swarm", swarm_of(r, false));
        return to_string(o);
}

char *openai_stream_event(enum openai_kind kind, const struct openai_result *r, const char *text, size_t size,
                          bool first, bool restart, bool final, bool usage) {
        json_object *o = head(kind, r, true), *choices = json_object_new_array(), *c = json_object_new_object();
        char *json, *event = NULL;

        json_object_object_add(c, "index", json_object_new_int(0));
        if (kind == OPENAI_CHAT) {
                json_object *delta = json_object_new_object();

                if (first)
                        json_object_object_add(delta, "role", json_object_new_string("assistant"));
                if (text)
                        json_object_object_add(delta, "content", json_object_new_string_len(text, (int) size));
                json_object_object_add(c, "delta", delta);
        } else {
                json_object_object_add(c, "text", json_object_new_string_len(text ?: "", text ? (int) size : 0));
                json_object_object_add(c, "logprobs", NULL);
        }
        json_object_object_add(c, "finish_reason", final ? json_object_new_string(r->finish_reason ?: "stop") : NULL);
        json_object_array_add(choices, c);
        json_object_object_add(o, "choices", choices);
        if (final && usage)
                json_object_object_add(o, "usage", usage_of(r));
        if (final || restart)
                json_object_object_add(o, "swarm", swarm_of(r, restart));
        json = to_string(o);
        if (json && asprintf(&event, "data: %s\n\n", json) < 0)
                event = NULL;
        free(json);
        return event;
}

char *openai_error(const char *message, const char *type, const char *param, const char *code) {
        json_object *o = json_object_new_object(), *e = json_object_new_object();

        json_object_object_add(e, "message", json_object_new_string(message ?: ""));
        json_object_object_add(e, "type", json_object_new_string(type ?: "invalid_request_error"));
        json_object_object_add(e, "param", param ? json_object_new_string(param) : NULL);
        json_object_object_add(e, "code", code ? json_object_new_string(code) : NULL);
        json_object_object_add(o, "error", e);
        return to_string(o);
}

char *openai_models(const struct openai_model *m, size_t n, int64_t created) {
        json_object *o = json_object_new_object(), *data = json_object_new_array();

        json_object_object_add(o, "object", json_object_new_string("list"));
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_new_object(), *s = json_object_new_object();

                json_object_object_add(e, "id", json_object_new_string(m[i].id));
                json_object_object_add(e, "object", json_object_new_string("model"));
                json_object_object_add(e, "created", json_object_new_int64(created));
                json_object_object_add(e, "owned_by", json_object_new_string("swarm"));
                json_object_object_add(s, "model_id", json_object_new_string(m[i].model_id ?: ""));
                json_object_object_add(s, "providers", json_object_new_int64(m[i].providers));
                json_object_object_add(s, "price_min", json_object_new_uint64(m[i].price_min));
                json_object_object_add(s, "price_max", json_object_new_uint64(m[i].price_max));
                json_object_object_add(s, "price_unit", json_object_new_string(m[i].price_unit ?: ""));
                json_object_object_add(e, "swarm", s);
                json_object_array_add(data, e);
        }
        json_object_object_add(o, "data", data);
        return to_string(o);
}

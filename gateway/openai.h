/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The OpenAI API's shapes, mapped to and from swarm jobs of the textgen
 * skill: pure functions over JSON text (json-c), no I/O, so every rule is
 * unit-tested.  Requests: POST /v1/chat/completions and /v1/completions
 * with model, messages or prompt, max_tokens, temperature, top_p, seed,
 * stop, n (1 only), stream and stream_options.include_usage; other fields
 * OpenAI clients send (user, presence_penalty, …) are ignored.  Responses:
 * chat.completion / text_completion objects, their streamed chunks for
 * Server-Sent Events, and error objects. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "swarm-host.h"

enum openai_kind {
        OPENAI_CHAT,            /* /v1/chat/completions */
        OPENAI_COMPLETION,      /* /v1/completions */
};

struct openai_request {
        enum openai_kind kind;
        char *model;
        bool stream;
        bool include_usage;             /* stream_options.include_usage */
        struct swarm_values *inputs;    /* textgen's inputs */
};

void openai_request_done(struct openai_request *r);

/* Parses a request body into *ret.  On a bad request returns -EINVAL with
 * a message in err naming the field, and the field's name in *param (for
 * the error object); -ENOMEM.  inputs use allocate (NULL: malloc). */
int openai_parse_request(enum openai_kind kind, const char *body, size_t size, swarm_values_allocator_fn allocate,
                         struct openai_request *ret, char *err, size_t err_size, const char **param);

/* What a response needs of the finished job. */
struct openai_result {
        const char *id;                 /* "chatcmpl-…" / "cmpl-…" */
        int64_t created;                /* seconds since the epoch */
        const char *model;
        const char *text;
        const char *finish_reason;      /* "stop" or "length" */
        int64_t prompt_tokens, completion_tokens;
        uint64_t cost_ucredits;         /* what the swarm charged, micro-credits */
        const char *provider;           /* node id of who ran it */
};

/* The whole response (non-streamed), malloc'd JSON. */
char *openai_response(enum openai_kind kind, const struct openai_result *r);

/* One Server-Sent Event ("data: {…}\n\n", malloc'd) of a streamed
 * response: a piece of text (role first in a chat's first chunk), or the
 * end (finish set, text NULL; with usage when asked).  restart marks a
 * chunk after which the text streamed before is void (an extension:
 * "swarm": {"restart": true}). */
char *openai_stream_event(enum openai_kind kind, const struct openai_result *r, const char *text, size_t size,
                          bool first, bool restart, bool final, bool usage);

/* An error object, malloc'd JSON: {"error": {"message", "type", "param",
 * "code"}}. */
char *openai_error(const char *message, const char *type, const char *param, const char *code);

/* GET /v1/models: one entry per model the swarm offers. */
struct openai_model {
        const char *id;                 /* the model's name */
        const char *model_id;           /* its identity (the textgen variant) */
        unsigned providers;
        uint64_t price_min, price_max;  /* micro-credits per price_unit, the price now */
        const char *price_unit;
};
char *openai_models(const struct openai_model *m, size_t n, int64_t created);

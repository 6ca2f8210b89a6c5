/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The OpenAI request and response shapes (gateway/openai.h): every field
 * rule, and responses an OpenAI client parses. */

#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "openai.h"

static int parse(enum openai_kind kind, const char *body, struct openai_request *r, char *err, const char **param) {
        return openai_parse_request(kind, body, strlen(body), NULL, r, err, 256, param);
}

Test(openai, a_chat_request_becomes_textgen_inputs) {
        struct openai_request r;
        const char *param, *s;
        char err[256];
        int64_t i;

        cr_assert_eq(parse(OPENAI_CHAT, "{\"model\": \"tiny\", \"messages\": [{\"role\": \"system\", \"content\": "
                                        "\"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi \\\"you\\\"\", "
                                        "\"name\": \"x\"}], \"max_tokens\": 7, \"temperature\": 0.5, \"top_p\": 1, "
                                        "\"seed\": 3, \"stop\": [\"\\n\"], \"n\": 1, \"stream\": true, "
                                        "\"stream_options\": {\"include_usage\": true}, \"user\": \"u\"}",
                           &r, err, &param), 0, "%s", err);
        cr_assert_str_eq(r.model, "tiny");
        cr_assert(r.stream && r.include_usage);
        cr_assert_eq(swarm_values_get_string(r.inputs, "messages", &s), 0);
        cr_assert_str_eq(s, "[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                            "{\"role\":\"user\",\"content\":\"Hi \\\"you\\\"\"}]");
        cr_assert_eq(swarm_values_get_int(r.inputs, "max_tokens", &i), 0);
        cr_assert_eq(i, 7);
        cr_assert_eq(swarm_values_get_string(r.inputs, "temperature", &s), 0);
        cr_assert_str_eq(s, "0.5");
        cr_assert_eq(swarm_values_get_string(r.inputs, "stop", &s), 0);
        cr_assert_str_eq(s, "\n");
        cr_assert_eq(swarm_values_get_string(r.inputs, "model", &s), 0);
        openai_request_done(&r);

        cr_assert_eq(parse(OPENAI_COMPLETION, "{\"model\": \"m\", \"prompt\": [\"Once\"]}", &r, err, &param), 0,
                     "%s", err);
        cr_assert_eq(swarm_values_get_string(r.inputs, "prompt", &s), 0);
        cr_assert_str_eq(s, "Once");
        cr_assert(!r.stream);
        openai_request_done(&r);
}

Test(openai, bad_requests_name_the_field) {
        static const struct {
                enum openai_kind kind;
                const char *body, *param, *words;
        } cases[] = {
                { OPENAI_CHAT, "{\"model\": \"m\", \"messages\": ", NULL, "not valid JSON" },
                { OPENAI_CHAT, "[1]", NULL, "must be a JSON object" },
                { OPENAI_CHAT, "{\"messages\": []}", "model", "'model'" },
                { OPENAI_CHAT, "{\"model\": 3, \"messages\": []}", "model", "'model'" },
                { OPENAI_CHAT, "{\"model\": \"m\"}", "messages", "'messages' is required" },
                { OPENAI_CHAT, "{\"model\": \"m\", \"messages\": \"hi\"}", "messages", "not a string" },
                { OPENAI_CHAT, "{\"model\": \"m\", \"messages\": []}", "messages", "1 to 1024" },
                { OPENAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"content\": \"x\"}]}", "messages[0].role", "role" },
                { OPENAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": [1]}]}",
                  "messages[0].content", "text content only" },
                { OPENAI_COMPLETION, "{\"model\": \"m\", \"prompt\": 5}", "prompt", "not a number" },
                { OPENAI_COMPLETION, "{\"model\": \"m\", \"prompt\": [\"a\", \"b\"]}", "prompt", "'prompt'" },
                { OPENAI_COMPLETION, "{\"model\": \"m\", \"prompt\": \"p\", \"max_tokens\": 0}", "max_tokens",
                  "from 1" },
                { OPENAI_COMPLETION, "{\"model\": \"m\", \"prompt\": \"p\", \"max_tokens\": \"9\"}", "max_tokens",
                  "integer" },
                { OPENAI_COMPLETION, "{\"model\": \"m\", \"prompt\": \"p\", \"temperature\": 3}", "temperature",
                  "0 to 2" },
                { OPENAI_COMPLETION, "{\"model\": \"m\", \"prompt\": \"p\", \"top_p\": 0}", "top_p", "top_p" },
                { OPENAI_COMPLETION, "{\"model\": \"m\", \"prompt\": \"p\", \"seed\": -1}", "seed", "non-negative" },
                { OPENAI_COMPLETION, "{\"model\": \"m\", \"prompt\": \"p\", \"stop\": [\"a\", \"b\"]}", "stop",
                  "one stop" },
                { OPENAI_COMPLETION, "{\"model\": \"m\", \"prompt\": \"p\", \"n\": 2}", "n", "'n' must be 1" },
                { OPENAI_COMPLETION, "{\"model\": \"m\", \"prompt\": \"p\", \"stream\": \"yes\"}", "stream",
                  "true or false" },
                { OPENAI_COMPLETION, "{\"model\": \"m\", \"prompt\": \"p\"} trailing", NULL, "not valid JSON" },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct openai_request r;
                const char *param;
                char err[256];

                cr_assert_eq(parse(cases[i].kind, cases[i].body, &r, err, &param), -EINVAL, "case %zu accepted", i);
                cr_assert(strstr(err, cases[i].words), "case %zu: %s", i, err);
                if (cases[i].param)
                        cr_assert(param && strcmp(param, cases[i].param) == 0, "case %zu: param %s", i,
                                  param ?: "(none)");
                else
                        cr_assert_null(param, "case %zu", i);
        }
}

/* Parses JSON and returns the string at a dotted path ("choices.0.text"). */
static const char *at(json_object *o, const char *path) {
        char buf[128], *save = NULL;

        snprintf(buf, sizeof(buf), "%s", path);
        for (char *k = strtok_r(buf, ".", &save); k && o; k = strtok_r(NULL, ".", &save))
                o = json_object_is_type(o, json_type_array) ? json_object_array_get_idx(o, (size_t) atoi(k)) :
                    json_object_object_get_ex(o, k, &o) ? o : NULL;
        return o ? json_object_get_string(o) : NULL;
}

Test(openai, responses_have_the_shapes_clients_parse) {
        struct openai_result r = {
                .id = "chatcmpl-1", .created = 1700000000, .model = "tiny", .text = "Hello \"there\"\n",
                .finish_reason = "length", .prompt_tokens = 5, .completion_tokens = 3, .cost_ucredits = 42,
                .provider = "abc",
        };
        char *s = openai_response(OPENAI_CHAT, &r), *e;
        json_object *o = json_tokener_parse(s);

        cr_assert_not_null(o, "%s", s);
        cr_assert_str_eq(at(o, "object"), "chat.completion");
        cr_assert_str_eq(at(o, "choices.0.message.role"), "assistant");
        cr_assert_str_eq(at(o, "choices.0.message.content"), "Hello \"there\"\n");
        cr_assert_str_eq(at(o, "choices.0.finish_reason"), "length");
        cr_assert_str_eq(at(o, "usage.total_tokens"), "8");
        cr_assert_str_eq(at(o, "swarm.cost_ucredits"), "42");
        json_object_put(o);
        free(s);

        /* Streamed: data: lines; the role first, the end with its reason. */
        e = openai_stream_event(OPENAI_CHAT, &r, "He", 2, true, false, false, false);
        cr_assert(strncmp(e, "data: {", 7) == 0 && strcmp(e + strlen(e) - 2, "\n\n") == 0, "%s", e);
        o = json_tokener_parse(e + 6);
        cr_assert_str_eq(at(o, "object"), "chat.completion.chunk");
        cr_assert_str_eq(at(o, "choices.0.delta.role"), "assistant");
        cr_assert_str_eq(at(o, "choices.0.delta.content"), "He");
        cr_assert_null(at(o, "choices.0.finish_reason"));
        json_object_put(o);
        free(e);
        e = openai_stream_event(OPENAI_COMPLETION, &r, NULL, 0, false, false, true, true);
        o = json_tokener_parse(e + 6);
        cr_assert_str_eq(at(o, "object"), "text_completion");
        cr_assert_str_eq(at(o, "choices.0.finish_reason"), "length");
        cr_assert_str_eq(at(o, "usage.completion_tokens"), "3");
        json_object_put(o);
        free(e);

        s = openai_error("bad 'x'", NULL, "x", NULL);
        o = json_tokener_parse(s);
        cr_assert_str_eq(at(o, "error.type"), "invalid_request_error");
        cr_assert_str_eq(at(o, "error.param"), "x");
        json_object_put(o);
        free(s);
}

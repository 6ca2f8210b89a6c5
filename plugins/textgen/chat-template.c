/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The chat formats of chat-template.h, written out as the models' own Jinja
 * templates render them (with add_generation_prompt where they have it):
 *
 * Llama 3:  <|start_header_id|>{role}<|end_header_id|>\n\n{content, trimmed}<|eot_id|>
 *           … then <|start_header_id|>assistant<|end_header_id|>\n\n
 * ChatML:   <|im_start|>{role}\n{content}<|im_end|>\n
 *           … then <|im_start|>assistant\n
 *           (Qwen's own template adds a default system message when there is
 *           none; plain ChatML, written here, does not.)
 * Llama 2:  [INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] {user} [/INST]
 *           the system block is part of the first user turn, and each turn's
 *           whole text is trimmed as the template's .strip() does.
 * Mistral:  [INST] {system}\n\n{user} [/INST]{assistant}</s>[INST] {user} [/INST]
 *           untrimmed, the system text in the first user turn.
 * The first BOS is the tokenizer's to add; the later "<s>" of Llama 2 and
 * the other control tokens are written as text, for parse_special. */

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat-template.h"
#include "nn-error.h"

static const char *const template_names[] = {
        [CHAT_TEMPLATE_LLAMA2] = "llama2",
        [CHAT_TEMPLATE_LLAMA3] = "llama3",
        [CHAT_TEMPLATE_CHATML] = "chatml",
        [CHAT_TEMPLATE_MISTRAL] = "mistral",
};

#define N_TEMPLATES (sizeof(template_names) / sizeof(template_names[0]))

const char *chat_template_name(enum chat_template t) {
        if ((size_t) t >= N_TEMPLATES)
                return NULL;
        return template_names[t];
}

int chat_template_from_name(const char *name, enum chat_template *ret) {
        if (!name || !ret)
                return -EINVAL;
        for (size_t i = 0; i < N_TEMPLATES; i++)
                if (strcmp(name, template_names[i]) == 0) {
                        *ret = (enum chat_template) i;
                        return 0;
                }
        return -EINVAL;
}

int chat_template_detect(const char *jinja, enum chat_template *ret) {
        if (!jinja || !ret)
                return -EINVAL;

        /* The most specific markers first: a Llama 3 or ChatML template
         * may mention [INST] in a comment, never the other way round. */
        if (strstr(jinja, "<|start_header_id|>"))
                *ret = CHAT_TEMPLATE_LLAMA3;
        else if (strstr(jinja, "<|im_start|>"))
                *ret = CHAT_TEMPLATE_CHATML;
        else if (strstr(jinja, "[INST]"))
                *ret = strstr(jinja, "<<SYS>>") ? CHAT_TEMPLATE_LLAMA2 : CHAT_TEMPLATE_MISTRAL;
        else
                return -EOPNOTSUPP;
        return 0;
}

struct strbuf {
        char *p;
        size_t n, cap;
        bool oom;
};

static void strbuf_add(struct strbuf *b, const char *s, size_t n) {
        if (b->oom)
                return;
        if (b->cap - b->n <= n) {
                size_t cap = b->cap ? b->cap : 256;
                char *p;

                while (cap - b->n <= n) {
                        if (cap > SIZE_MAX / 2) {
                                b->oom = true;
                                return;
                        }
                        cap *= 2;
                }
                p = realloc(b->p, cap);
                if (!p) {
                        b->oom = true;
                        return;
                }
                b->p = p;
                b->cap = cap;
        }
        memcpy(b->p + b->n, s, n);
        b->n += n;
        b->p[b->n] = '\0';
}

static void strbuf_puts(struct strbuf *b, const char *s) {
        strbuf_add(b, s, strlen(s));
}

static bool is_jinja_space(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* s without the whitespace at either end, as Jinja's trim and Python's
 * strip() give it (ASCII whitespace only). */
static void strbuf_add_trimmed(struct strbuf *b, const char *s) {
        size_t n = strlen(s);

        while (n > 0 && is_jinja_space(*s))
                s++, n--;
        while (n > 0 && is_jinja_space(s[n - 1]))
                n--;
        strbuf_add(b, s, n);
}


enum role {
        ROLE_SYSTEM,
        ROLE_USER,
        ROLE_ASSISTANT,
};

static int parse_role(const char *s, enum role *ret) {
        if (!s)
                return -EINVAL;
        if (strcmp(s, "system") == 0)
                *ret = ROLE_SYSTEM;
        else if (strcmp(s, "user") == 0)
                *ret = ROLE_USER;
        else if (strcmp(s, "assistant") == 0)
                *ret = ROLE_ASSISTANT;
        else
                return -EINVAL;
        return 0;
}

/* The rules every template shares: known roles, a system message only
 * first; for the [INST] formats, user and assistant alternating from a user
 * turn and ending on one (the prompt ends where the assistant answers). */
static int check_roles(enum chat_template t, const struct chat_message *messages, size_t n, char *err,
                       size_t err_size) {
        bool alternate = t == CHAT_TEMPLATE_LLAMA2 || t == CHAT_TEMPLATE_MISTRAL;
        size_t first = 0;

        if (n == 0) {
                nn_error(err, err_size, 0, "no messages to format");
                return -EINVAL;
        }

        for (size_t i = 0; i < n; i++) {
                enum role role;

                if (parse_role(messages[i].role, &role) < 0) {
                        nn_error(err, err_size, 0, "message %zu has the role '%s'; %s knows system, user and assistant",
                               i, messages[i].role ? messages[i].role : "(none)", template_names[t]);
                        return -EINVAL;
                }
                if (!messages[i].content) {
                        nn_error(err, err_size, 0, "message %zu (%s) has no content", i, messages[i].role);
                        return -EINVAL;
                }
                if (role == ROLE_SYSTEM) {
                        if (i != 0) {
                                nn_error(err, err_size, 0, "message %zu is a system message; only the first may be one",
                                       i);
                                return -EINVAL;
                        }
                        first = 1;
                        continue;
                }
                if (alternate && (role == ROLE_USER) != ((i - first) % 2 == 0)) {
                        nn_error(err, err_size, 0,
                               "message %zu is from the %s; %s needs user and assistant to alternate, starting "
                               "with the user",
                               i, messages[i].role, template_names[t]);
                        return -EINVAL;
                }
        }

        if (alternate && (n - first) % 2 == 0) {
                nn_error(err, err_size, 0, "%s needs the conversation to end with a user message",
                       template_names[t]);
                return -EINVAL;
        }
        return 0;
}

static void apply_llama3(struct strbuf *b, const struct chat_message *messages, size_t n) {
        for (size_t i = 0; i < n; i++) {
                strbuf_puts(b, "<|start_header_id|>");
                strbuf_puts(b, messages[i].role);
                strbuf_puts(b, "<|end_header_id|>\n\n");
                strbuf_add_trimmed(b, messages[i].content);
                strbuf_puts(b, "<|eot_id|>");
        }
        strbuf_puts(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void apply_chatml(struct strbuf *b, const struct chat_message *messages, size_t n) {
        for (size_t i = 0; i < n; i++) {
                strbuf_puts(b, "<|im_start|>");
                strbuf_puts(b, messages[i].role);
                strbuf_puts(b, "\n");
                strbuf_puts(b, messages[i].content);
                strbuf_puts(b, "<|im_end|>\n");
        }
        strbuf_puts(b, "<|im_start|>assistant\n");
}

static void apply_llama2(struct strbuf *b, const struct chat_message *messages, size_t n) {
        const char *system = NULL;
        size_t first = 0;

        if (strcmp(messages[0].role, "system") == 0) {
                system = messages[0].content;
                first = 1;
        }
        for (size_t i = first; i < n; i++) {
                if (strcmp(messages[i].role, "assistant") == 0) {
                        strbuf_puts(b, " ");
                        strbuf_add_trimmed(b, messages[i].content);
                        strbuf_puts(b, " </s>");
                        continue;
                }
                if (i > first)
                        strbuf_puts(b, "<s>");
                strbuf_puts(b, "[INST] ");
                if (i == first && system) {
                        /* The template strips the turn as a whole: the
                         * system block's start and the user text's end. */
                        struct strbuf turn = {};

                        strbuf_puts(&turn, "<<SYS>>\n");
                        strbuf_puts(&turn, system);
                        strbuf_puts(&turn, "\n<</SYS>>\n\n");
                        strbuf_puts(&turn, messages[i].content);
                        if (turn.oom)
                                b->oom = true;
                        else
                                strbuf_add_trimmed(b, turn.p);
                        free(turn.p);
                } else
                        strbuf_add_trimmed(b, messages[i].content);
                strbuf_puts(b, " [/INST]");
        }
}

static void apply_mistral(struct strbuf *b, const struct chat_message *messages, size_t n) {
        const char *system = NULL;
        size_t first = 0;

        if (strcmp(messages[0].role, "system") == 0) {
                system = messages[0].content;
                first = 1;
        }
        for (size_t i = first; i < n; i++) {
                if (strcmp(messages[i].role, "assistant") == 0) {
                        strbuf_puts(b, messages[i].content);
                        strbuf_puts(b, "</s>");
                        continue;
                }
                strbuf_puts(b, "[INST] ");
                if (i == first && system) {
                        strbuf_puts(b, system);
                        strbuf_puts(b, "\n\n");
                }
                strbuf_puts(b, messages[i].content);
                strbuf_puts(b, " [/INST]");
        }
}

int chat_template_apply(enum chat_template t, const struct chat_message *messages, size_t n, char **ret,
                        char *err, size_t err_size) {
        struct strbuf b = {};
        int r;

        if ((size_t) t >= N_TEMPLATES || (!messages && n > 0) || !ret) {
                nn_error(err, err_size, 0, "invalid arguments");
                return -EINVAL;
        }
        r = check_roles(t, messages, n, err, err_size);
        if (r < 0)
                return r;

        switch (t) {
        case CHAT_TEMPLATE_LLAMA3:
                apply_llama3(&b, messages, n);
                break;
        case CHAT_TEMPLATE_CHATML:
                apply_chatml(&b, messages, n);
                break;
        case CHAT_TEMPLATE_LLAMA2:
                apply_llama2(&b, messages, n);
                break;
        case CHAT_TEMPLATE_MISTRAL:
                apply_mistral(&b, messages, n);
                break;
        }
        if (b.oom) {
                free(b.p);
                return -ENOMEM;
        }
        *ret = b.p;
        return 0;
}

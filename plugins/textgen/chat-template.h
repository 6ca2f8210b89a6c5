/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Chat templates: the few prompt formats that nearly every chat model uses,
 * recognised from the Jinja text in tokenizer.chat_template (no Jinja engine:
 * a template that matches none is refused, naming what it looks like). */

#include <stdbool.h>
#include <stddef.h>

enum chat_template {
        CHAT_TEMPLATE_LLAMA2,   /* [INST] <<SYS>> … <</SYS>> … [/INST] */
        CHAT_TEMPLATE_LLAMA3,   /* <|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|> */
        CHAT_TEMPLATE_CHATML,   /* <|im_start|>role\n…<|im_end|>\n (Qwen, many fine-tunes) */
        CHAT_TEMPLATE_MISTRAL,  /* [INST] … [/INST] with the system text in the first user turn */
};

struct chat_message {
        const char *role;       /* "system", "user", "assistant" */
        const char *content;
};

/* "llama2", "llama3", "chatml", "mistral"; by name for config and tests. */
const char *chat_template_name(enum chat_template t);
int chat_template_from_name(const char *name, enum chat_template *ret);

/* Recognises the template from its Jinja source.  -EOPNOTSUPP when none
 * matches. */
int chat_template_detect(const char *jinja, enum chat_template *ret);

/* Formats the messages as the model was trained to see them, ending with the
 * assistant's turn opened.  The BOS token is not written (the tokenizer adds
 * it as the model says); control tokens are written as their text, to be
 * encoded with parse_special.  -EINVAL (with a message in err) for a role the
 * template cannot express or roles out of order (e.g. Llama 2 and Mistral
 * need user/assistant to alternate after an optional system message). */
int chat_template_apply(enum chat_template t, const struct chat_message *messages, size_t n,
                        char **ret, char *err, size_t err_size);

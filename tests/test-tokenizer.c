/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat-template.h"
#include "gguf.h"
#include "tokenizer.h"

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* ---- vocabularies built here -------------------------------------------- */

/* A growing vocabulary: pieces, scores and types side by side. */
struct vocab {
        char *tokens[1024];
        float scores[1024];
        int32_t types[1024];
        size_t n;
        char *merges[256];
        size_t n_merges;
};

static int32_t vocab_add(struct vocab *v, const char *piece, float score, int32_t type) {
        cr_assert_lt(v->n, ELEMENTSOF(v->tokens));
        v->tokens[v->n] = strdup(piece);
        v->scores[v->n] = score;
        v->types[v->n] = type;
        return (int32_t) v->n++;
}

static int32_t vocab_id(const struct vocab *v, const char *piece) {
        for (size_t i = 0; i < v->n; i++)
                if (strcmp(v->tokens[i], piece) == 0)
                        return (int32_t) i;
        cr_assert_fail("no piece '%s' in the test vocabulary", piece);
        return -1;
}

static void vocab_done(struct vocab *v) {
        for (size_t i = 0; i < v->n; i++)
                free(v->tokens[i]);
        for (size_t i = 0; i < v->n_merges; i++)
                free(v->merges[i]);
        free(v);
}

/* SentencePiece: <unk> <s> </s>, the 256 byte tokens, "▁" and a few pieces
 * whose scores make "▁hello" and "▁world" in a known order of merges. */
static struct vocab *spm_vocab(bool with_bytes) {
        struct vocab *v = calloc(1, sizeof(*v));
        static const struct {
                const char *piece;
                float score;
        } pieces[] = {
                { "▁", -20 },  { "h", -21 },    { "e", -21 },       { "l", -21 },      { "o", -21 },
                { "w", -21 },  { "r", -21 },    { "d", -21 },       { "ll", -1 },      { "he", -2 },
                { "llo", -3 }, { "hello", -4 }, { "▁hello", -5 },   { "▁w", -6 },      { "or", -7 },
                { "ld", -8 },  { "▁wor", -9 },  { "▁world", -10 },
        };

        cr_assert_not_null(v);
        vocab_add(v, "<unk>", 0, TOKEN_TYPE_UNKNOWN);
        vocab_add(v, "<s>", 0, TOKEN_TYPE_CONTROL);
        vocab_add(v, "</s>", 0, TOKEN_TYPE_CONTROL);
        if (with_bytes)
                for (int b = 0; b < 256; b++) {
                        char piece[8];

                        snprintf(piece, sizeof(piece), "<0x%02X>", b);
                        vocab_add(v, piece, 0, TOKEN_TYPE_BYTE);
                }
        for (size_t i = 0; i < ELEMENTSOF(pieces); i++)
                vocab_add(v, pieces[i].piece, pieces[i].score, TOKEN_TYPE_NORMAL);
        return v;
}

static struct tokenizer *spm_new(const struct vocab *v) {
        struct tokenizer_spec spec = {
                .kind = TOKENIZER_SPM,
                .n_vocab = v->n,
                .tokens = (const char *const *) v->tokens,
                .scores = v->scores,
                .types = v->types,
                .bos = 1,
                .eos = 2,
                .eot = -1,
                .unk = 0,
                .pad = -1,
                .add_bos = true,
                .add_space_prefix = true,
        };
        struct tokenizer *t = NULL;
        char err[256] = "";

        cr_assert_eq(tokenizer_new(&spec, &t, err, sizeof(err)), 0, "%s", err);
        return t;
}

/* GPT-2's bytes_to_unicode(), written out again so that the test does not
 * trust the code under test for it. */
static void byte_piece(int b, char out[3]) {
        static int extra[256];
        static bool init;
        unsigned cp;

        if (!init) {
                int n = 0;

                for (int i = 0; i < 256; i++)
                        extra[i] = (i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174) ? -1 : n++;
                init = true;
        }
        cp = extra[b] < 0 ? (unsigned) b : 256u + (unsigned) extra[b];
        if (cp < 0x80) {
                out[0] = (char) cp;
                out[1] = '\0';
        } else {
                out[0] = (char) (0xc0 | (cp >> 6));
                out[1] = (char) (0x80 | (cp & 0x3f));
                out[2] = '\0';
        }
}

/* Merge chains that build each word of the pre-tokenizer tests, one piece
 * at a time from the left, the longest words first so that their chains
 * rank before the pairs inside them. */
static const char *const bpe_words[] = {
        "Ġnumbers", "Ġ12345", "Ġworld", "Hello", "!!ĊĊ", "ĊĊĠ", "123", "45", "'s", "'S", "Ġx",
};

static size_t utf8_char_len(const char *s) {
        unsigned char c = (unsigned char) s[0];

        return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}

static bool vocab_has(const struct vocab *v, const char *piece) {
        for (size_t i = 0; i < v->n; i++)
                if (strcmp(v->tokens[i], piece) == 0)
                        return true;
        return false;
}

static void add_merge(struct vocab *v, const char *left, const char *right) {
        char merge[128], joined[128];

        snprintf(merge, sizeof(merge), "%s %s", left, right);
        for (size_t i = 0; i < v->n_merges; i++)
                if (strcmp(v->merges[i], merge) == 0)
                        return;
        cr_assert_lt(v->n_merges, ELEMENTSOF(v->merges));
        v->merges[v->n_merges++] = strdup(merge);
        snprintf(joined, sizeof(joined), "%s%s", left, right);
        if (!vocab_has(v, joined))
                vocab_add(v, joined, 0, TOKEN_TYPE_NORMAL);
}

static struct vocab *bpe_vocab(void) {
        struct vocab *v = calloc(1, sizeof(*v));

        cr_assert_not_null(v);
        for (int b = 0; b < 256; b++) {
                char piece[3];

                byte_piece(b, piece);
                vocab_add(v, piece, 0, TOKEN_TYPE_NORMAL);
        }
        for (size_t w = 0; w < ELEMENTSOF(bpe_words); w++) {
                const char *word = bpe_words[w];
                size_t first = utf8_char_len(word);
                char prefix[64];

                snprintf(prefix, sizeof(prefix), "%.*s", (int) first, word);
                for (const char *p = word + first; *p; p += utf8_char_len(p)) {
                        char next[8];

                        snprintf(next, sizeof(next), "%.*s", (int) utf8_char_len(p), p);
                        add_merge(v, prefix, next);
                        strcat(prefix, next);
                }
        }
        vocab_add(v, "<|begin_of_text|>", 0, TOKEN_TYPE_CONTROL);
        vocab_add(v, "<|eot_id|>", 0, TOKEN_TYPE_CONTROL);
        vocab_add(v, "<|im_start|>", 0, TOKEN_TYPE_CONTROL);
        vocab_add(v, "<|im_end|>", 0, TOKEN_TYPE_CONTROL);
        vocab_add(v, "<|endoftext|>", 0, TOKEN_TYPE_CONTROL);
        vocab_add(v, "<tool", 0, TOKEN_TYPE_USER_DEFINED);
        vocab_add(v, "<tool_call>", 0, TOKEN_TYPE_CONTROL);
        /* Looks like an end of turn, but is ordinary text here. */
        vocab_add(v, "<|end|>", 0, TOKEN_TYPE_NORMAL);
        return v;
}

static struct tokenizer *bpe_new(const struct vocab *v, enum tokenizer_pre pre) {
        struct tokenizer_spec spec = {
                .kind = TOKENIZER_BPE,
                .pre = pre,
                .n_vocab = v->n,
                .tokens = (const char *const *) v->tokens,
                .types = v->types,
                .n_merges = v->n_merges,
                .merges = (const char *const *) v->merges,
                .bos = vocab_id(v, "<|begin_of_text|>"),
                .eos = vocab_id(v, "<|endoftext|>"),
                .eot = vocab_id(v, "<|eot_id|>"),
                .unk = -1,
                .pad = -1,
                .add_bos = true,
        };
        struct tokenizer *t = NULL;
        char err[256] = "";

        cr_assert_eq(tokenizer_new(&spec, &t, err, sizeof(err)), 0, "%s", err);
        return t;
}

/* ---- helpers ------------------------------------------------------------ */

static size_t encode(const struct tokenizer *t, const char *text, bool add_bos, bool parse_special, int32_t **ret) {
        size_t n = 0;

        cr_assert_eq(tokenizer_encode(t, text, strlen(text), add_bos, parse_special, ret, &n), 0);
        cr_assert_not_null(*ret);
        return n;
}

static void assert_ids(const int32_t *got, size_t n_got, const int32_t *want, size_t n_want) {
        cr_assert_eq(n_got, n_want, "%zu tokens, expected %zu", n_got, n_want);
        for (size_t i = 0; i < n_want; i++)
                cr_assert_eq(got[i], want[i], "token %zu is %d, expected %d", i, got[i], want[i]);
}

/* Encodes, decodes and compares. */
static void assert_round_trip(const struct tokenizer *t, const char *text, size_t len) {
        int32_t *ids = NULL;
        char *back = NULL;
        size_t n = 0;

        cr_assert_eq(tokenizer_encode(t, text, len, true, false, &ids, &n), 0);
        cr_assert_eq(tokenizer_decode(t, ids, n, true, &back), 0);
        cr_assert_eq(strlen(back), len, "'%s' came back as '%s'", text, back);
        cr_assert_eq(memcmp(back, text, len), 0, "'%s' came back as '%s'", text, back);
        free(ids);
        free(back);
}

/* The decoded tokens of text, joined with "|": shows where the splits are. */
static char *pieces_of(const struct tokenizer *t, const char *text) {
        int32_t *ids = NULL;
        size_t n = encode(t, text, false, false, &ids);
        char *out = calloc(1, 4096);
        size_t len = 0;

        cr_assert_not_null(out);
        for (size_t i = 0; i < n; i++) {
                int k;

                if (i > 0)
                        out[len++] = '|';
                k = tokenizer_decode_token(t, ids[i], false, out + len, 4000 - len);
                cr_assert_geq(k, 0);
                len += (size_t) k;
        }
        free(ids);
        return out;
}

/* ---- SentencePiece ------------------------------------------------------ */

Test(tokenizer_spm, hello_world_merges_by_score_into_known_pieces) {
        struct vocab *v = spm_vocab(true);
        struct tokenizer *t = spm_new(v);
        int32_t *ids = NULL;
        size_t n = encode(t, "hello world", false, false, &ids);
        int32_t want[] = { vocab_id(v, "▁hello"), vocab_id(v, "▁world") };

        assert_ids(ids, n, want, ELEMENTSOF(want));
        free(ids);
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_spm, pieces_without_a_merge_stay_characters) {
        struct vocab *v = spm_vocab(true);
        struct tokenizer *t = spm_new(v);
        int32_t *ids = NULL;
        size_t n = encode(t, "dew", false, false, &ids);
        int32_t want[] = { vocab_id(v, "▁"), vocab_id(v, "d"), vocab_id(v, "e"), vocab_id(v, "w") };

        assert_ids(ids, n, want, ELEMENTSOF(want));
        free(ids);
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_spm, equal_scores_merge_the_leftmost_pair_first) {
        struct vocab *v = spm_vocab(true);
        struct tokenizer *t = spm_new(v);
        int32_t *ids = NULL;
        size_t n = encode(t, "lll", false, false, &ids);
        int32_t want[] = { vocab_id(v, "▁"), vocab_id(v, "ll"), vocab_id(v, "l") };

        assert_ids(ids, n, want, ELEMENTSOF(want));
        free(ids);
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_spm, character_without_a_piece_becomes_byte_tokens) {
        struct vocab *v = spm_vocab(true);
        struct tokenizer *t = spm_new(v);
        int32_t *ids = NULL;
        size_t n = encode(t, "hé", false, false, &ids);
        int32_t want[] = { vocab_id(v, "▁"), vocab_id(v, "h"), vocab_id(v, "<0xC3>"), vocab_id(v, "<0xA9>") };

        assert_ids(ids, n, want, ELEMENTSOF(want));
        free(ids);
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_spm, character_without_piece_or_byte_tokens_is_one_unknown) {
        struct vocab *v = spm_vocab(false);
        struct tokenizer *t = spm_new(v);
        int32_t *ids = NULL;
        size_t n = encode(t, "hé", false, false, &ids);
        int32_t want[] = { vocab_id(v, "▁"), vocab_id(v, "h"), 0 };
        char *back = NULL;

        assert_ids(ids, n, want, ELEMENTSOF(want));
        cr_assert_eq(tokenizer_decode(t, ids, n, true, &back), 0);
        cr_assert_str_eq(back, "h\xef\xbf\xbd", "the unknown token decodes to U+FFFD");
        free(back);
        free(ids);
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_spm, round_trips_ascii_spaces_newlines_unicode_and_invalid_utf8) {
        struct vocab *v = spm_vocab(true);
        struct tokenizer *t = spm_new(v);
        static const char *const texts[] = {
                "hello world",
                "Hello, World! 42",
                " leading space",
                "double  space",
                "trailing space ",
                "   ",
                "line one\nline two\n\n",
                "é",
                "日本語",
                "emoji 🙂 here",
                "tab\there",
        };
        static const char invalid[] = "bad \xff\xfe utf8 \xc3 \xe2\x82 end\x80";

        for (size_t i = 0; i < ELEMENTSOF(texts); i++)
                assert_round_trip(t, texts[i], strlen(texts[i]));
        assert_round_trip(t, invalid, sizeof(invalid) - 1);
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_spm, empty_text_is_no_tokens_or_bos_alone) {
        struct vocab *v = spm_vocab(true);
        struct tokenizer *t = spm_new(v);
        int32_t *ids = NULL;
        size_t n = 99;

        cr_assert_eq(tokenizer_encode(t, "", 0, false, false, &ids, &n), 0);
        cr_assert_eq(n, 0);
        free(ids);
        cr_assert_eq(tokenizer_encode(t, "", 0, true, false, &ids, &n), 0);
        cr_assert_eq(n, 1);
        cr_assert_eq(ids[0], 1);
        free(ids);
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_spm, bos_is_added_only_when_asked) {
        struct vocab *v = spm_vocab(true);
        struct tokenizer *t = spm_new(v);
        int32_t *ids = NULL;
        size_t n;

        cr_assert(tokenizer_add_bos(t));
        n = encode(t, "hello", true, false, &ids);
        cr_assert_eq(n, 2);
        cr_assert_eq(ids[0], tokenizer_bos(t));
        cr_assert_eq(ids[1], vocab_id(v, "▁hello"));
        free(ids);

        n = encode(t, "hello", false, false, &ids);
        cr_assert_eq(n, 1);
        cr_assert_eq(ids[0], vocab_id(v, "▁hello"));
        free(ids);
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_spm, control_text_is_a_token_only_with_parse_special) {
        struct vocab *v = spm_vocab(true);
        struct tokenizer *t = spm_new(v);
        int32_t *ids = NULL;
        size_t n;
        /* llama.cpp's rule: the text after a special token gets the space
         * prefix again. */
        int32_t want[] = { vocab_id(v, "▁hello"), 1, vocab_id(v, "▁world") };

        n = encode(t, "hello<s>world", false, true, &ids);
        assert_ids(ids, n, want, ELEMENTSOF(want));
        free(ids);

        n = encode(t, "hello<s>world", false, false, &ids);
        for (size_t i = 0; i < n; i++)
                cr_assert_neq(ids[i], 1, "user text must not forge <s>");
        free(ids);
        assert_round_trip(t, "hello<s>world", strlen("hello<s>world"));
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_spm, decode_token_turns_the_visible_space_and_bytes_into_text) {
        struct vocab *v = spm_vocab(true);
        struct tokenizer *t = spm_new(v);
        char buf[16];

        cr_assert_eq(tokenizer_decode_token(t, vocab_id(v, "▁hello"), false, buf, sizeof(buf)), 6);
        cr_assert_eq(memcmp(buf, " hello", 6), 0);
        cr_assert_eq(tokenizer_decode_token(t, vocab_id(v, "<0x41>"), false, buf, sizeof(buf)), 1);
        cr_assert_eq(buf[0], 'A');
        cr_assert_eq(tokenizer_decode_token(t, 1, false, buf, sizeof(buf)), 0, "control tokens are silent");
        cr_assert_eq(tokenizer_decode_token(t, 1, true, buf, sizeof(buf)), 3);
        cr_assert_eq(memcmp(buf, "<s>", 3), 0);
        cr_assert_eq(tokenizer_decode_token(t, (int32_t) v->n, false, buf, sizeof(buf)), -EINVAL);
        cr_assert_eq(tokenizer_decode_token(t, -1, false, buf, sizeof(buf)), -EINVAL);
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_spm, decode_token_reports_the_size_it_needs_and_writes_nothing) {
        struct vocab *v = spm_vocab(true);
        struct tokenizer *t = spm_new(v);
        char buf[8];

        memset(buf, 'x', sizeof(buf));
        cr_assert_eq(tokenizer_decode_token(t, vocab_id(v, "▁world"), false, buf, 3), 6);
        for (size_t i = 0; i < sizeof(buf); i++)
                cr_assert_eq(buf[i], 'x');
        cr_assert_eq(tokenizer_decode_token(t, vocab_id(v, "▁world"), false, buf, 6), 6);
        cr_assert_eq(memcmp(buf, " world", 6), 0);
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_spm, decode_strips_only_the_prefix_space_when_asked) {
        struct vocab *v = spm_vocab(true);
        struct tokenizer *t = spm_new(v);
        int32_t ids[] = { 1, vocab_id(v, "▁hello"), vocab_id(v, "▁world"), 2 };
        char *s = NULL;

        cr_assert_eq(tokenizer_decode(t, ids, ELEMENTSOF(ids), true, &s), 0);
        cr_assert_str_eq(s, "hello world");
        free(s);
        cr_assert_eq(tokenizer_decode(t, ids, ELEMENTSOF(ids), false, &s), 0);
        cr_assert_str_eq(s, " hello world");
        free(s);
        cr_assert_eq(tokenizer_decode(t, ids, 0, true, &s), 0);
        cr_assert_str_eq(s, "");
        free(s);
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_spm, end_of_generation_is_eos_and_named_control_tokens) {
        struct vocab *v = spm_vocab(true);
        struct tokenizer *t = spm_new(v);

        cr_assert(tokenizer_is_eog(t, 2));
        cr_assert_not(tokenizer_is_eog(t, 1));
        cr_assert_not(tokenizer_is_eog(t, vocab_id(v, "▁hello")));
        cr_assert_not(tokenizer_is_eog(t, -1));
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_spm, accessors_report_the_spec) {
        struct vocab *v = spm_vocab(true);
        struct tokenizer *t = spm_new(v);

        cr_assert_eq(tokenizer_kind(t), TOKENIZER_SPM);
        cr_assert_eq(tokenizer_n_vocab(t), v->n);
        cr_assert_eq(tokenizer_bos(t), 1);
        cr_assert_eq(tokenizer_eos(t), 2);
        cr_assert_eq(tokenizer_eot(t), -1);
        cr_assert_str_eq(tokenizer_piece(t, 1), "<s>");
        cr_assert_null(tokenizer_piece(t, (int32_t) v->n));
        cr_assert_eq(tokenizer_find(t, "▁world"), vocab_id(v, "▁world"));
        cr_assert_eq(tokenizer_find(t, "nope"), -1);
        tokenizer_free(t);
        vocab_done(v);
}

/* ---- byte-level BPE ----------------------------------------------------- */

static const char split_text[] = "Hello world's 12345 numbers!!\n\n  x";

Test(tokenizer_bpe, llama3_splits_digits_in_groups_of_three) {
        struct vocab *v = bpe_vocab();
        struct tokenizer *t = bpe_new(v, TOKENIZER_PRE_LLAMA3);
        char *p = pieces_of(t, split_text);

        cr_assert_str_eq(p, "Hello| world|'s| |123|45| numbers|!!\n\n| | x");
        free(p);
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_bpe, qwen2_splits_single_digits) {
        struct vocab *v = bpe_vocab();
        struct tokenizer *t = bpe_new(v, TOKENIZER_PRE_QWEN2);
        char *p = pieces_of(t, split_text);

        cr_assert_str_eq(p, "Hello| world|'s| |1|2|3|4|5| numbers|!!\n\n| | x");
        free(p);
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_bpe, gpt2_keeps_numbers_whole_and_leaves_a_space_for_the_next_word) {
        struct vocab *v = bpe_vocab();
        struct tokenizer *t = bpe_new(v, TOKENIZER_PRE_DEFAULT);
        char *p = pieces_of(t, split_text);

        cr_assert_str_eq(p, "Hello| world|'s| 12345| numbers|!!|\n\n | x");
        free(p);
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_bpe, llama3_contractions_ignore_case_and_gpt2_does_not) {
        struct vocab *v = bpe_vocab();
        struct tokenizer *l3 = bpe_new(v, TOKENIZER_PRE_LLAMA3);
        struct tokenizer *g2 = bpe_new(v, TOKENIZER_PRE_DEFAULT);
        char *p;

        p = pieces_of(l3, "'S");
        cr_assert_str_eq(p, "'S");
        free(p);
        /* GPT-2's contractions are lower case: "'" is punctuation, "S" a word. */
        p = pieces_of(g2, "'S");
        cr_assert_str_eq(p, "'|S");
        free(p);
        tokenizer_free(l3);
        tokenizer_free(g2);
        vocab_done(v);
}

Test(tokenizer_bpe, known_words_merge_to_their_ids) {
        struct vocab *v = bpe_vocab();
        struct tokenizer *t = bpe_new(v, TOKENIZER_PRE_DEFAULT);
        int32_t *ids = NULL;
        size_t n = encode(t, "Hello world", true, false, &ids);
        int32_t want[] = { vocab_id(v, "<|begin_of_text|>"), vocab_id(v, "Hello"), vocab_id(v, "Ġworld") };

        assert_ids(ids, n, want, ELEMENTSOF(want));
        free(ids);
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_bpe, round_trips_any_bytes) {
        struct vocab *v = bpe_vocab();
        static const char *const texts[] = {
                "Hello world", " leading", "double  space", "trailing ", "a\nb\r\n\n c",
                "é", "日本語", "emoji 🙂!", "Ελληνικά и русский", "\t\x01\x7f",
        };
        static const char invalid[] = "bad \xff\xfe utf8 \xc3 \xe2\x82 end\x80";
        enum tokenizer_pre pres[] = { TOKENIZER_PRE_DEFAULT, TOKENIZER_PRE_LLAMA3, TOKENIZER_PRE_QWEN2 };

        for (size_t k = 0; k < ELEMENTSOF(pres); k++) {
                struct tokenizer *t = bpe_new(v, pres[k]);

                for (size_t i = 0; i < ELEMENTSOF(texts); i++)
                        assert_round_trip(t, texts[i], strlen(texts[i]));
                assert_round_trip(t, invalid, sizeof(invalid) - 1);
                tokenizer_free(t);
        }
        vocab_done(v);
}

Test(tokenizer_bpe, non_ascii_letters_and_digits_group_like_ascii) {
        struct vocab *v = bpe_vocab();
        struct tokenizer *t = bpe_new(v, TOKENIZER_PRE_DEFAULT);
        int32_t *a = NULL, *b = NULL;
        size_t na, nb;

        /* Without merges for these letters each byte is a token; what the
         * split shows is that a letter run is one pre-token: the words
         * before and after agree with a one-word text. */
        na = encode(t, "Ελληνικά", false, false, &a);
        cr_assert_eq(na, strlen("Ελληνικά"));
        free(a);
        na = encode(t, "x Ελληνικά", false, false, &a);
        nb = encode(t, " Ελληνικά", false, false, &b);
        cr_assert_eq(na, nb + 1);
        free(a);
        free(b);
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_bpe, control_tokens_parse_only_when_asked_longest_first) {
        struct vocab *v = bpe_vocab();
        struct tokenizer *t = bpe_new(v, TOKENIZER_PRE_LLAMA3);
        const char *text = "<|im_start|>Hello<tool_call><tool<|im_end|>";
        int32_t want[] = {
                vocab_id(v, "<|im_start|>"), vocab_id(v, "Hello"), vocab_id(v, "<tool_call>"),
                vocab_id(v, "<tool"),        vocab_id(v, "<|im_end|>"),
        };
        int32_t *ids = NULL;
        size_t n = encode(t, text, false, true, &ids);

        assert_ids(ids, n, want, ELEMENTSOF(want));
        free(ids);

        /* User-defined pieces are text; control tokens must not be forged. */
        n = encode(t, text, false, false, &ids);
        for (size_t i = 0; i < n; i++)
                cr_assert(ids[i] != want[0] && ids[i] != want[2] && ids[i] != want[4],
                          "plain text made the control token %d", ids[i]);
        free(ids);
        assert_round_trip(t, text, strlen(text));
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_bpe, end_of_generation_is_eos_eot_and_named_control_tokens) {
        struct vocab *v = bpe_vocab();
        struct tokenizer *t = bpe_new(v, TOKENIZER_PRE_LLAMA3);

        cr_assert(tokenizer_is_eog(t, vocab_id(v, "<|endoftext|>")));
        cr_assert(tokenizer_is_eog(t, vocab_id(v, "<|eot_id|>")));
        cr_assert(tokenizer_is_eog(t, vocab_id(v, "<|im_end|>")));
        cr_assert_not(tokenizer_is_eog(t, vocab_id(v, "<|end|>")), "a normal piece never ends a turn");
        cr_assert_not(tokenizer_is_eog(t, vocab_id(v, "<|im_start|>")));
        cr_assert_not(tokenizer_is_eog(t, vocab_id(v, "Hello")));
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_bpe, decode_token_maps_byte_code_points_back) {
        struct vocab *v = bpe_vocab();
        struct tokenizer *t = bpe_new(v, TOKENIZER_PRE_DEFAULT);
        char buf[16];
        char piece[3];

        cr_assert_eq(tokenizer_decode_token(t, vocab_id(v, "ĊĊĠ"), false, buf, sizeof(buf)), 3);
        cr_assert_eq(memcmp(buf, "\n\n ", 3), 0);
        byte_piece(0xff, piece);
        cr_assert_eq(tokenizer_decode_token(t, vocab_id(v, piece), false, buf, sizeof(buf)), 1);
        cr_assert_eq((unsigned char) buf[0], 0xff);
        cr_assert_eq(tokenizer_decode_token(t, vocab_id(v, "<|im_end|>"), false, buf, sizeof(buf)), 0);
        cr_assert_eq(tokenizer_decode_token(t, vocab_id(v, "<|im_end|>"), true, buf, sizeof(buf)), 10);
        cr_assert_eq(memcmp(buf, "<|im_end|>", 10), 0);
        cr_assert_eq(tokenizer_decode_token(t, vocab_id(v, "Ġnumbers"), false, buf, 4), 8);
        tokenizer_free(t);
        vocab_done(v);
}

/* Text drawn from a mix of ASCII classes, spaces, newlines and raw high
 * bytes (valid UTF-8 or not): every tokenizer gives it back unchanged. */
Test(tokenizer, round_trips_random_bytes) {
        static const char alphabet[] = "ab Z09'!\n\r\t.";
        struct vocab *spm = spm_vocab(true), *bpe = bpe_vocab();
        struct tokenizer *t[] = {
                spm_new(spm),
                bpe_new(bpe, TOKENIZER_PRE_DEFAULT),
                bpe_new(bpe, TOKENIZER_PRE_LLAMA3),
                bpe_new(bpe, TOKENIZER_PRE_QWEN2),
        };
        uint64_t x = 0x9e3779b97f4a7c15ull;
        char text[64];

        for (int round = 0; round < 500; round++) {
                size_t len;

                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                len = x % sizeof(text);
                for (size_t i = 0; i < len; i++) {
                        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                        text[i] = x % 3 == 0 ? (char) (0x80 + (x >> 8) % 0x80)
                                             : alphabet[(x >> 8) % (sizeof(alphabet) - 1)];
                }
                for (size_t k = 0; k < ELEMENTSOF(t); k++)
                        assert_round_trip(t[k], text, len);
        }
        for (size_t k = 0; k < ELEMENTSOF(t); k++)
                tokenizer_free(t[k]);
        vocab_done(spm);
        vocab_done(bpe);
}

/* ---- refused specs ------------------------------------------------------ */

Test(tokenizer_new, refuses_a_duplicate_piece) {
        const char *tokens[] = { "a", "b", "a" };
        struct tokenizer_spec spec = {
                .kind = TOKENIZER_BPE, .n_vocab = 3, .tokens = tokens,
                .bos = -1, .eos = -1, .eot = -1, .unk = -1, .pad = -1,
        };
        struct tokenizer *t = NULL;
        char err[256] = "";

        cr_assert_eq(tokenizer_new(&spec, &t, err, sizeof(err)), -EINVAL);
        cr_assert_not_null(strstr(err, "duplicate"), "%s", err);
        cr_assert_null(t);
}

Test(tokenizer_new, refuses_a_special_id_out_of_range) {
        const char *tokens[] = { "a", "b" };
        struct tokenizer_spec spec = {
                .kind = TOKENIZER_BPE, .n_vocab = 2, .tokens = tokens,
                .bos = -1, .eos = 2, .eot = -1, .unk = -1, .pad = -1,
        };
        struct tokenizer *t = NULL;
        char err[256] = "";

        cr_assert_eq(tokenizer_new(&spec, &t, err, sizeof(err)), -EINVAL);
        cr_assert_not_null(strstr(err, "EOS"), "%s", err);
}

Test(tokenizer_new, refuses_a_merge_of_unknown_pieces) {
        const char *tokens[] = { "a", "b", "ab" };
        const char *bad[] = { "a c" };
        const char *no_result[] = { "b a" };
        const char *no_space[] = { "ab" };
        struct tokenizer_spec spec = {
                .kind = TOKENIZER_BPE, .n_vocab = 3, .tokens = tokens, .n_merges = 1, .merges = bad,
                .bos = -1, .eos = -1, .eot = -1, .unk = -1, .pad = -1,
        };
        struct tokenizer *t = NULL;
        char err[256] = "";

        cr_assert_eq(tokenizer_new(&spec, &t, err, sizeof(err)), -EINVAL);
        cr_assert_not_null(strstr(err, "'a c'"), "%s", err);
        spec.merges = no_result;
        cr_assert_eq(tokenizer_new(&spec, &t, err, sizeof(err)), -EINVAL);
        cr_assert_not_null(strstr(err, "'b a'"), "%s", err);
        spec.merges = no_space;
        cr_assert_eq(tokenizer_new(&spec, &t, err, sizeof(err)), -EINVAL);
}

Test(tokenizer_new, refuses_spm_without_scores) {
        const char *tokens[] = { "a" };
        struct tokenizer_spec spec = {
                .kind = TOKENIZER_SPM, .n_vocab = 1, .tokens = tokens,
                .bos = -1, .eos = -1, .eot = -1, .unk = -1, .pad = -1,
        };
        struct tokenizer *t = NULL;

        cr_assert_eq(tokenizer_new(&spec, &t, NULL, 0), -EINVAL);
}

/* ---- GGUF --------------------------------------------------------------- */

static char gguf_dir[64];

static void gguf_setup(void) {
        strcpy(gguf_dir, "/tmp/test-tokenizer-XXXXXX");
        cr_assert_not_null(mkdtemp(gguf_dir));
}

static void gguf_teardown(void) {
        char path[128];

        snprintf(path, sizeof(path), "%s/vocab.gguf", gguf_dir);
        unlink(path);
        rmdir(gguf_dir);
}

/* Writes the test's vocabulary as a GGUF file; model and pre may be NULL to
 * leave the key out; n_scores lets a test write a wrong count. */
static void write_vocab(const struct vocab *v, const char *model, const char *pre, size_t n_scores) {
        struct gguf_writer *w = gguf_writer_new(3);
        char path[128];

        cr_assert_not_null(w);
        if (model)
                cr_assert_eq(gguf_writer_set_string(w, "tokenizer.ggml.model", model), 0);
        if (pre)
                cr_assert_eq(gguf_writer_set_string(w, "tokenizer.ggml.pre", pre), 0);
        cr_assert_eq(gguf_writer_set_string_array(w, "tokenizer.ggml.tokens", (const char *const *) v->tokens, v->n),
                     0);
        cr_assert_eq(gguf_writer_set_array(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v->scores, n_scores), 0);
        cr_assert_eq(gguf_writer_set_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v->types, v->n), 0);
        if (v->n_merges > 0)
                cr_assert_eq(gguf_writer_set_string_array(w, "tokenizer.ggml.merges",
                                                          (const char *const *) v->merges, v->n_merges),
                             0);
        cr_assert_eq(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1), 0);
        cr_assert_eq(gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2), 0);
        cr_assert_eq(gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0), 0);
        cr_assert_eq(gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true), 0);
        snprintf(path, sizeof(path), "%s/vocab.gguf", gguf_dir);
        cr_assert_eq(gguf_writer_write(w, path), 0);
        gguf_writer_free(w);
}

static int load_vocab(struct tokenizer **t, char *err, size_t err_size) {
        struct gguf *g = NULL;
        char path[128];
        int r;

        snprintf(path, sizeof(path), "%s/vocab.gguf", gguf_dir);
        cr_assert_eq(gguf_open(path, &g, err, err_size), 0, "%s", err);
        r = tokenizer_load(g, t, err, err_size);
        gguf_close(g);
        return r;
}

Test(tokenizer_gguf, loads_a_sentencepiece_vocabulary, .init = gguf_setup, .fini = gguf_teardown) {
        struct vocab *v = spm_vocab(true);
        struct tokenizer *t = NULL;
        char err[256] = "";
        int32_t *ids = NULL;
        size_t n;
        int32_t want[] = { 1, vocab_id(v, "▁hello"), vocab_id(v, "▁world") };

        write_vocab(v, "llama", NULL, v->n);
        cr_assert_eq(load_vocab(&t, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(tokenizer_kind(t), TOKENIZER_SPM);
        cr_assert(tokenizer_add_bos(t));
        n = encode(t, "hello world", tokenizer_add_bos(t), false, &ids);
        assert_ids(ids, n, want, ELEMENTSOF(want));
        free(ids);
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_gguf, loads_a_llama3_bpe_vocabulary, .init = gguf_setup, .fini = gguf_teardown) {
        struct vocab *v = bpe_vocab();
        struct tokenizer *t = NULL;
        char err[256] = "";
        char *p;

        write_vocab(v, "gpt2", "llama-bpe", v->n);
        cr_assert_eq(load_vocab(&t, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(tokenizer_kind(t), TOKENIZER_BPE);
        p = pieces_of(t, split_text);
        cr_assert_str_eq(p, "Hello| world|'s| |123|45| numbers|!!\n\n| | x");
        free(p);
        tokenizer_free(t);
        vocab_done(v);
}

Test(tokenizer_gguf, refuses_an_unknown_model_or_pre_tokenizer_by_name, .init = gguf_setup,
     .fini = gguf_teardown) {
        struct vocab *v = bpe_vocab();
        struct tokenizer *t = NULL;
        char err[256] = "";

        write_vocab(v, "bert", NULL, v->n);
        cr_assert_eq(load_vocab(&t, err, sizeof(err)), -EOPNOTSUPP);
        cr_assert_not_null(strstr(err, "'bert'"), "%s", err);

        write_vocab(v, "gpt2", "falcon", v->n);
        cr_assert_eq(load_vocab(&t, err, sizeof(err)), -EOPNOTSUPP);
        cr_assert_not_null(strstr(err, "'falcon'"), "%s", err);
        vocab_done(v);
}

Test(tokenizer_gguf, refuses_arrays_that_disagree_with_the_token_count, .init = gguf_setup,
     .fini = gguf_teardown) {
        struct vocab *v = spm_vocab(true);
        struct tokenizer *t = NULL;
        char err[256] = "";

        write_vocab(v, "llama", NULL, v->n - 1);
        cr_assert_eq(load_vocab(&t, err, sizeof(err)), -EBADMSG);
        cr_assert_not_null(strstr(err, "tokenizer.ggml.scores"), "%s", err);
        vocab_done(v);
}

/* ---- chat templates ----------------------------------------------------- */

static const struct chat_message conversation[] = {
        { "system", "You are terse." },
        { "user", "Hi!" },
        { "assistant", "Hello." },
        { "user", "Bye?" },
};

static void assert_applied(enum chat_template tmpl, const struct chat_message *m, size_t n, const char *want) {
        char *got = NULL;
        char err[256] = "";

        cr_assert_eq(chat_template_apply(tmpl, m, n, &got, err, sizeof(err)), 0, "%s", err);
        cr_assert_str_eq(got, want);
        free(got);
}

Test(chat_template, llama3_writes_headers_and_opens_the_assistant_turn) {
        assert_applied(CHAT_TEMPLATE_LLAMA3, conversation, ELEMENTSOF(conversation),
                       "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
                       "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
                       "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                       "<|start_header_id|>user<|end_header_id|>\n\nBye?<|eot_id|>"
                       "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

Test(chat_template, llama3_trims_the_content) {
        const struct chat_message m[] = { { "user", "  padded \n" } };

        assert_applied(CHAT_TEMPLATE_LLAMA3, m, 1,
                       "<|start_header_id|>user<|end_header_id|>\n\npadded<|eot_id|>"
                       "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

Test(chat_template, chatml_writes_im_blocks) {
        assert_applied(CHAT_TEMPLATE_CHATML, conversation, ELEMENTSOF(conversation),
                       "<|im_start|>system\nYou are terse.<|im_end|>\n"
                       "<|im_start|>user\nHi!<|im_end|>\n"
                       "<|im_start|>assistant\nHello.<|im_end|>\n"
                       "<|im_start|>user\nBye?<|im_end|>\n"
                       "<|im_start|>assistant\n");
}

Test(chat_template, llama2_puts_the_system_block_in_the_first_turn) {
        assert_applied(CHAT_TEMPLATE_LLAMA2, conversation, ELEMENTSOF(conversation),
                       "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi! [/INST] Hello. </s>"
                       "<s>[INST] Bye? [/INST]");
}

Test(chat_template, llama2_without_system_is_plain_inst) {
        assert_applied(CHAT_TEMPLATE_LLAMA2, conversation + 1, 1, "[INST] Hi! [/INST]");
}

Test(chat_template, mistral_puts_the_system_text_before_the_first_user_text) {
        assert_applied(CHAT_TEMPLATE_MISTRAL, conversation, ELEMENTSOF(conversation),
                       "[INST] You are terse.\n\nHi! [/INST]Hello.</s>[INST] Bye? [/INST]");
}

Test(chat_template, inst_formats_refuse_roles_out_of_order) {
        const struct chat_message two_users[] = { { "user", "a" }, { "user", "b" } };
        const struct chat_message starts_assistant[] = { { "assistant", "a" }, { "user", "b" } };
        const struct chat_message ends_assistant[] = { { "user", "a" }, { "assistant", "b" } };
        enum chat_template kinds[] = { CHAT_TEMPLATE_LLAMA2, CHAT_TEMPLATE_MISTRAL };

        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                char *s = NULL;
                char err[256] = "";

                cr_assert_eq(chat_template_apply(kinds[k], two_users, 2, &s, err, sizeof(err)), -EINVAL);
                cr_assert_not_null(strstr(err, "alternate"), "%s", err);
                cr_assert_eq(chat_template_apply(kinds[k], starts_assistant, 2, &s, err, sizeof(err)), -EINVAL);
                cr_assert_eq(chat_template_apply(kinds[k], ends_assistant, 2, &s, err, sizeof(err)), -EINVAL);
                cr_assert_null(s);
        }
}

Test(chat_template, every_template_refuses_a_late_system_message_or_unknown_role) {
        const struct chat_message late_system[] = { { "user", "a" }, { "system", "b" } };
        const struct chat_message odd_role[] = { { "narrator", "a" } };

        for (int k = CHAT_TEMPLATE_LLAMA2; k <= CHAT_TEMPLATE_MISTRAL; k++) {
                char *s = NULL;
                char err[256] = "";

                cr_assert_eq(chat_template_apply((enum chat_template) k, late_system, 2, &s, err, sizeof(err)),
                             -EINVAL);
                cr_assert_not_null(strstr(err, "system"), "%s", err);
                cr_assert_eq(chat_template_apply((enum chat_template) k, odd_role, 1, &s, err, sizeof(err)),
                             -EINVAL);
                cr_assert_not_null(strstr(err, "narrator"), "%s", err);
                cr_assert_eq(chat_template_apply((enum chat_template) k, odd_role, 0, &s, err, sizeof(err)),
                             -EINVAL);
        }
}

Test(chat_template, detects_the_kind_from_jinja_source) {
        static const char llama3[] =
                "{% set loop_messages = messages %}{% for message in loop_messages %}"
                "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
                "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
                "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
                "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
                "{% endif %}";
        static const char chatml[] =
                "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
                "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
                "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
        static const char llama2[] =
                "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
                "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
                "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
                "{% if loop.index0 == 0 and system_message != false %}"
                "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
                "{% else %}{% set content = message['content'] %}{% endif %}"
                "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
                "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
                "{% endif %}{% endfor %}";
        static const char mistral[] =
                "{{ bos_token }}{% for message in messages %}"
                "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
                "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
                "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
                "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% endif %}"
                "{% endfor %}";
        enum chat_template k;

        cr_assert_eq(chat_template_detect(llama3, &k), 0);
        cr_assert_eq(k, CHAT_TEMPLATE_LLAMA3);
        cr_assert_eq(chat_template_detect(chatml, &k), 0);
        cr_assert_eq(k, CHAT_TEMPLATE_CHATML);
        cr_assert_eq(chat_template_detect(llama2, &k), 0);
        cr_assert_eq(k, CHAT_TEMPLATE_LLAMA2);
        cr_assert_eq(chat_template_detect(mistral, &k), 0);
        cr_assert_eq(k, CHAT_TEMPLATE_MISTRAL);
}

Test(chat_template, refuses_a_template_it_does_not_know) {
        /* Gemma's turns. */
        static const char gemma[] =
                "{{ bos_token }}{% for message in messages %}"
                "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
                "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}";
        enum chat_template k;

        cr_assert_eq(chat_template_detect(gemma, &k), -EOPNOTSUPP);
        cr_assert_eq(chat_template_detect("", &k), -EOPNOTSUPP);
}

Test(chat_template, names_round_trip) {
        for (int k = CHAT_TEMPLATE_LLAMA2; k <= CHAT_TEMPLATE_MISTRAL; k++) {
                enum chat_template back;

                cr_assert_eq(chat_template_from_name(chat_template_name((enum chat_template) k), &back), 0);
                cr_assert_eq((int) back, k);
        }
        cr_assert_str_eq(chat_template_name(CHAT_TEMPLATE_CHATML), "chatml");
        cr_assert_eq(chat_template_from_name("vicuna", &(enum chat_template) { 0 }), -EINVAL);
}

/* The chat prompt and the tokenizer together: control tokens in the
 * template's text come out as their ids. */
Test(chat_template, chatml_prompt_encodes_its_control_tokens) {
        struct vocab *v = bpe_vocab();
        struct tokenizer *t = bpe_new(v, TOKENIZER_PRE_QWEN2);
        const struct chat_message m[] = { { "user", "Hello" } };
        char *prompt = NULL;
        int32_t *ids = NULL;
        size_t n;
        int32_t start = vocab_id(v, "<|im_start|>"), end = vocab_id(v, "<|im_end|>");

        cr_assert_eq(chat_template_apply(CHAT_TEMPLATE_CHATML, m, 1, &prompt, NULL, 0), 0);
        n = encode(t, prompt, false, true, &ids);
        cr_assert_gt(n, 4);
        cr_assert_eq(ids[0], start);
        {
                size_t n_start = 0, n_end = 0;

                for (size_t i = 0; i < n; i++) {
                        n_start += ids[i] == start;
                        n_end += ids[i] == end;
                }
                cr_assert_eq(n_start, 2);
                cr_assert_eq(n_end, 1);
        }
        free(ids);
        free(prompt);
        tokenizer_free(t);
        vocab_done(v);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CLIP's tokenizer and text encoder (plugins/imagegen/clip-tokenizer.c,
 * clip-text.c).  The tokenizer on vocabularies built here the way CLIP's
 * is (byte stand-ins, their "</w>" forms, one piece per merge, the two
 * special tokens), with merges chosen so the ids can be worked out by hand;
 * on the files sd-tiny writes; and on broken files, whose errors must name
 * the file and the line or entry.  The encoder on a tiny random-weight
 * checkpoint written by sd-tiny, against a plain double-precision
 * implementation of the same network, and on checkpoints with a tensor
 * missing or misshapen. */

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clip-text.h"
#include "clip-tokenizer.h"
#include "nn-backend.h"
#include "safetensors.h"
#include "sd-tiny.h"

static char dir[] = "/tmp/test-clip-XXXXXX";

static void setup(void) {
        cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        (void) system(cmd);
}

TestSuite(clip_tokenizer, .init = setup, .fini = teardown, .timeout = 60);
TestSuite(clip_text, .init = setup, .fini = teardown, .timeout = 120);

/* ---- A vocabulary made here ---- */

/* GPT-2's bytes_to_unicode(), written again: byte b is piece
 * byte_index[b], its stand-in is code point byte_cp[b]. */
static unsigned byte_index[256];
static unsigned byte_cp[256];

static bool printable(unsigned b) {
        return (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
}

static void init_bytes(void) {
        unsigned n = 0, extra = 0;

        for (unsigned b = 0; b < 256; b++)
                if (printable(b)) {
                        byte_index[b] = n++;
                        byte_cp[b] = b;
                }
        for (unsigned b = 0; b < 256; b++)
                if (!printable(b)) {
                        byte_index[b] = n++;
                        byte_cp[b] = 256 + extra++;
                }
}

/* The id of a byte's piece, alone or ending a word. */
static int32_t B(unsigned char b) {
        return (int32_t) byte_index[b];
}

static int32_t E(unsigned char b) {
        return (int32_t) byte_index[b] + 256;
}

static size_t put_utf8(unsigned cp, char *out) {
        if (cp < 0x80) {
                out[0] = (char) cp;
                return 1;
        }
        out[0] = (char) (0xc0 | (cp >> 6));
        out[1] = (char) (0x80 | (cp & 0x3f));
        return 2;
}

struct text {
        char *p;
        size_t n, cap;
};

static void text_add(struct text *t, const char *s, size_t n) {
        if (t->n + n + 1 > t->cap) {
                t->cap = 2 * (t->n + n + 1);
                t->p = realloc(t->p, t->cap);
                cr_assert_not_null(t->p);
        }
        memcpy(t->p + t->n, s, n);
        t->n += n;
        t->p[t->n] = '\0';
}

static void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(struct text *t, const char *fmt, ...) {
        char buf[512];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        text_add(t, buf, (size_t) n);
}

/* A JSON string of a piece: the stand-ins past ASCII as \u escapes (the
 * files sd-tiny writes have them raw), '"' and '\' escaped. */
static void json_piece(struct text *t, const char *s) {
        text_add(t, "\"", 1);
        for (const unsigned char *p = (const unsigned char *) s; *p;) {
                if (*p == '"' || *p == '\\') {
                        text_printf(t, "\\%c", *p);
                        p++;
                } else if (*p >= 0xc0) {
                        text_printf(t, "\\u%04x", (unsigned) ((p[0] & 0x1f) << 6 | (p[1] & 0x3f)));
                        p += 2;
                } else
                        text_add(t, (const char *) p++, 1);
        }
        text_add(t, "\"", 1);
}

/* vocab.json and merges.txt of CLIP's construction for these merges ("a b"
 * with the pieces as text, raw UTF-8): ids 0–255 the bytes, 256–511 with
 * "</w>", 512 + i merge i's result, then BOS and EOS. */
static void make_files(const char *const *merges, size_t n_merges, struct text *vocab, struct text *merges_txt) {
        char piece[16];
        size_t id = 0;

        init_bytes();
        *vocab = (struct text) {};
        *merges_txt = (struct text) {};
        text_add(vocab, "{", 1);
        for (int end = 0; end < 2; end++)
                for (unsigned i = 0; i < 256; i++)
                        for (unsigned b = 0; b < 256; b++)
                                if (byte_index[b] == i) {
                                        piece[put_utf8(byte_cp[b], piece)] = '\0';
                                        if (end)
                                                strcat(piece, "</w>");
                                        text_add(vocab, id ? ",\n" : "\n", id ? 2 : 1);
                                        json_piece(vocab, piece);
                                        text_printf(vocab, ": %zu", id++);
                                }
        text_add(merges_txt, "#version: 0.2\n", strlen("#version: 0.2\n"));
        for (size_t i = 0; i < n_merges; i++) {
                const char *sp = strchr(merges[i], ' ');
                char joined[128];

                cr_assert_not_null(sp);
                snprintf(joined, sizeof(joined), "%.*s%s", (int) (sp - merges[i]), merges[i], sp + 1);
                text_add(vocab, ",\n", 2);
                json_piece(vocab, joined);
                text_printf(vocab, ": %zu", id++);
                text_printf(merges_txt, "%s\n", merges[i]);
        }
        text_printf(vocab, ",\n\"<|startoftext|>\": %zu,\n\"<|endoftext|>\": %zu\n}\n", id, id + 1);
}

static struct clip_tokenizer *tokenizer_with(const char *const *merges, size_t n_merges) {
        struct clip_tokenizer *t = NULL;
        struct text v, m;
        char err[512] = "";
        int r;

        make_files(merges, n_merges, &v, &m);
        r = clip_tokenizer_parse(v.p, v.n, "vocab.json", m.p, m.n, "merges.txt", &t, err, sizeof(err));
        cr_assert_eq(r, 0, "%s", err);
        cr_assert_eq(clip_tokenizer_n_vocab(t), 514 + n_merges);
        free(v.p);
        free(m.p);
        return t;
}

static void expect_ids(const struct clip_tokenizer *t, const char *text, const int32_t *want, size_t n) {
        int32_t got[256];
        int k = clip_tokenizer_encode(t, text, strlen(text), got, 256);

        cr_assert_eq(k, (int) n, "\"%s\": %d ids, %zu expected", text, k, n);
        for (size_t i = 0; i < n; i++)
                cr_assert_eq(got[i], want[i], "\"%s\": id %zu is %d, %d expected", text, i, got[i], want[i]);
}

#define EXPECT_IDS(t, text, ...)                                                                             \
        expect_ids((t), (text), (const int32_t[]) { __VA_ARGS__ },                                           \
                   sizeof((const int32_t[]) { __VA_ARGS__ }) / sizeof(int32_t))
#define EXPECT_NO_IDS(t, text) expect_ids((t), (text), NULL, 0)

/* ---- The tokenizer ---- */

static const char *const hello_merges[] = {
        "h e", "l l", "he ll", "hell o</w>", "w o", "r l", "wo rl", "worl d</w>",
};

Test(clip_tokenizer, words_merge_into_their_pieces) {
        struct clip_tokenizer *t = tokenizer_with(hello_merges, 8);

        /* hello</w> is merge 3's result, world</w> merge 7's. */
        EXPECT_IDS(t, "hello world", 512 + 3, 512 + 7);
        cr_assert_eq(clip_tokenizer_bos(t), 520);
        cr_assert_eq(clip_tokenizer_eos(t), 521);
        cr_assert_str_eq(clip_tokenizer_piece(t, 515), "hello</w>");
        cr_assert_str_eq(clip_tokenizer_piece(t, 64), "a");
        cr_assert_str_eq(clip_tokenizer_piece(t, 320), "a</w>");
        cr_assert_null(clip_tokenizer_piece(t, 522));
        cr_assert_null(clip_tokenizer_piece(t, -1));
        /* As in CLIP's own vocabulary: "a" is 64 and "a</w>" 320. */
        EXPECT_IDS(t, "a", 320);
        /* Partial merges: "hell" ends in l</w>, which "l l" does not
         * take; "held" is "he" then bytes; "hellos" gets as far as "hell". */
        EXPECT_IDS(t, "hell", 512 + 0, B('l'), E('l'));
        EXPECT_IDS(t, "held", 512 + 0, B('l'), E('d'));
        EXPECT_IDS(t, "hellos", 512 + 2, B('o'), E('s'));
        clip_tokenizer_free(t);
}

Test(clip_tokenizer, the_lowest_rank_merges_first_at_every_place) {
        static const char *const merges[] = { "e l", "l l", "a a", "aa a</w>" };
        struct clip_tokenizer *t = tokenizer_with(merges, 4);

        /* "e l" outranks "l l": h el l o</w>. */
        EXPECT_IDS(t, "hello", B('h'), 512, B('l'), E('o'));
        /* "a a" merges left to right without overlap: a a a a</w> is
         * aa a a</w>, and no rule takes "aa a" or "a a</w>"; in a a a
         * a a</w>, aa aa a</w>, then "aa a</w>". */
        EXPECT_IDS(t, "aaaa", 514, B('a'), E('a'));
        EXPECT_IDS(t, "aaa", 515);
        EXPECT_IDS(t, "aaaaa", 514, 515);
        clip_tokenizer_free(t);
}

Test(clip_tokenizer, white_space_collapses_and_case_folds) {
        struct clip_tokenizer *t = tokenizer_with(hello_merges, 8);

        EXPECT_IDS(t, "  \tHeLLo \n\n WORLD \xe3\x80\x80", 515, 519);     /* U+3000 is white space */
        EXPECT_IDS(t, "hello\xc2\xa0world", 515, 519);                      /* so is U+00A0 */
        EXPECT_NO_IDS(t, "");
        EXPECT_NO_IDS(t, " \t\n ");
        clip_tokenizer_free(t);
}

Test(clip_tokenizer, digits_are_words_of_one_digit) {
        struct clip_tokenizer *t = tokenizer_with(NULL, 0);

        EXPECT_IDS(t, "2024", E('2'), E('0'), E('2'), E('4'));
        EXPECT_IDS(t, "4k", E('4'), E('k'));
        EXPECT_IDS(t, "v2", E('v'), E('2'));
        /* "²" and Arabic-Indic three are \p{N} too: a word each. */
        EXPECT_IDS(t, "x\xc2\xb2\xd9\xa3", E('x'), B(0xc2), E(0xb2), B(0xd9), E(0xa3));
        clip_tokenizer_free(t);
}

Test(clip_tokenizer, contractions_and_apostrophes) {
        static const char *const merges[] = { "' s</w>", "' t</w>", "' re</w>", "r e</w>" };
        struct clip_tokenizer *t = tokenizer_with(merges, 4);

        /* 's</w> is 512, 't</w> 513, 're</w> 514: ' r e</w> becomes ' re</w>
         * (rank 3), then 're</w> (rank 2): a round at a time, the lowest
         * rank among the pairs there are. */
        EXPECT_IDS(t, "it's", B('i'), E('t'), 512);
        EXPECT_IDS(t, "IT'S", B('i'), E('t'), 512);
        EXPECT_IDS(t, "don't", B('d'), B('o'), E('n'), 513);
        EXPECT_IDS(t, "you're", B('y'), B('o'), E('u'), 514);
        /* Not a contraction: a punctuation word of its own. */
        EXPECT_IDS(t, "rock'n'roll", B('r'), B('o'), B('c'), E('k'), E('\''), E('n'), E('\''), B('r'), B('o'),
                   B('l'), E('l'));
        /* "'s" only where an apostrophe starts a word: '' is one run. */
        EXPECT_IDS(t, "''s", B('\''), E('\''), E('s'));
        /* 'tis: 't matches first, as in the reference. */
        EXPECT_IDS(t, "'tis", 513, B('i'), E('s'));
        clip_tokenizer_free(t);
}

Test(clip_tokenizer, punctuation_runs_are_words) {
        struct clip_tokenizer *t = tokenizer_with(hello_merges, 8);

        EXPECT_IDS(t, "hello, world!!!", 515, E(','), 519, B('!'), B('!'), E('!'));
        EXPECT_IDS(t, "(hello)", E('('), 515, E(')'));
        EXPECT_IDS(t, "a-b", E('a'), E('-'), E('b'));
        EXPECT_IDS(t, "...?!", B('.'), B('.'), B('.'), B('?'), E('!'));
        clip_tokenizer_free(t);
}

Test(clip_tokenizer, non_ascii_text_is_bytes) {
        struct clip_tokenizer *t = tokenizer_with(NULL, 0);

        /* é is C3 A9; É lower-cases to it. */
        EXPECT_IDS(t, "\xc3\xa9", B(0xc3), E(0xa9));
        EXPECT_IDS(t, "\xc3\x89", B(0xc3), E(0xa9));
        EXPECT_IDS(t, "caf\xc3\xa9", B('c'), B('a'), B('f'), B(0xc3), E(0xa9));
        /* 日本 (E6 97 A5, E6 9C AC) is one word of letters. */
        EXPECT_IDS(t, "\xe6\x97\xa5\xe6\x9c\xac", B(0xe6), B(0x97), B(0xa5), B(0xe6), B(0x9c), E(0xac));
        cr_assert_eq(B(0xe6), 162);     /* as in CLIP's vocabulary */
        cr_assert_eq(B(0x97), 245);
        /* ΟΣ: a capital sigma ending a word lower-cases to ς (CF 82), one
         * before a letter to σ (CF 83), as Python's str.lower(). */
        EXPECT_IDS(t, "\xce\x9f\xce\xa3", B(0xce), B(0xbf), B(0xcf), E(0x82));
        EXPECT_IDS(t, "\xce\xa3\xce\x9f", B(0xcf), B(0x83), B(0xce), E(0xbf));
        /* İ lower-cases to i and U+0307 (CC 87), a mark: not a letter. */
        EXPECT_IDS(t, "\xc4\xb0", E('i'), B(0xcc), E(0x87));
        /* U+0345 is in none of the regex's classes (case-insensitive, it
         * is iota's variant): the reference drops it. */
        EXPECT_IDS(t, "a\xcd\x85" "b", E('a'), E('b'));
        /* An emoji is punctuation. */
        EXPECT_IDS(t, "\xf0\x9f\x99\x82!", B(0xf0), B(0x9f), B(0x99), B(0x82), E('!'));
        clip_tokenizer_free(t);
}

Test(clip_tokenizer, special_tokens_in_the_text_are_those_tokens) {
        struct clip_tokenizer *t = tokenizer_with(hello_merges, 8);

        EXPECT_IDS(t, "hello <|endoftext|> world", 515, 521, 519);
        EXPECT_IDS(t, "<|STARTOFTEXT|>hello", 520, 515);
        /* Inside a punctuation run the regex does not look for them. */
        EXPECT_IDS(t, "!<|endoftext|>", B('!'), B('<'), E('|'), B('e'), B('n'), B('d'), B('o'), B('f'), B('t'),
                   B('e'), B('x'), E('t'), B('|'), E('>'));
        clip_tokenizer_free(t);
}

Test(clip_tokenizer, text_that_is_not_utf8_is_refused) {
        struct clip_tokenizer *t = tokenizer_with(NULL, 0);
        static const char *const bad[] = {
                "\xff", "a\x80", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe6\x97",
        };
        int32_t ids[CLIP_CONTEXT];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                cr_assert_eq(clip_tokenizer_encode(t, bad[i], strlen(bad[i]), ids, CLIP_CONTEXT), -EILSEQ, "%zu", i);
                cr_assert_eq(clip_tokenizer_encode_prompt(t, bad[i], strlen(bad[i]), 0, ids), -EILSEQ);
        }
        /* Past the 75 ids that are kept, too. */
        {
                char text[400];

                memset(text, 'a', sizeof(text));
                for (size_t i = 0; i < 100; i++)
                        text[2 * i + 1] = ' ';
                text[sizeof(text) - 1] = '\xff';
                cr_assert_eq(clip_tokenizer_encode_prompt(t, text, sizeof(text), 0, ids), -EILSEQ);
        }
        clip_tokenizer_free(t);
}

Test(clip_tokenizer, a_prompt_is_bos_75_ids_eos_and_padding) {
        struct clip_tokenizer *t = tokenizer_with(hello_merges, 8);
        int32_t ids[CLIP_CONTEXT];
        char text[2048];
        size_t k = 0;

        cr_assert_eq(clip_tokenizer_encode_prompt(t, "Hello world", 11, 521, ids), 4);
        cr_assert_eq(ids[0], 520);
        cr_assert_eq(ids[1], 515);
        cr_assert_eq(ids[2], 519);
        for (size_t i = 3; i < CLIP_CONTEXT; i++)
                cr_assert_eq(ids[i], 521);
        /* SD 2.x pads with 0 ("!"). */
        cr_assert_eq(clip_tokenizer_encode_prompt(t, "hello", 5, 0, ids), 3);
        cr_assert_eq(ids[2], 521);
        cr_assert_eq(ids[3], 0);
        cr_assert_eq(ids[76], 0);
        cr_assert_eq(clip_tokenizer_encode_prompt(t, "", 0, 521, ids), 2);
        cr_assert_eq(ids[0], 520);
        cr_assert_eq(ids[1], 521);
        cr_assert_eq(clip_tokenizer_encode_prompt(t, "hello", 5, 522, ids), -EINVAL);
        cr_assert_eq(clip_tokenizer_encode_prompt(t, "hello", 5, -1, ids), -EINVAL);

        /* 75 words fill it exactly; 76 and 200 are cut to 75, EOS last. */
        for (size_t n_words = 75; n_words <= 200; n_words += n_words == 75 ? 1 : 124) {
                k = 0;
                for (size_t i = 0; i < n_words; i++)
                        k += (size_t) snprintf(text + k, sizeof(text) - k, "%s ", i % 2 ? "hello" : "world");
                cr_assert_eq(clip_tokenizer_encode_prompt(t, text, k, 521, ids), CLIP_CONTEXT);
                cr_assert_eq(ids[0], 520);
                for (size_t i = 1; i <= 75; i++)
                        cr_assert_eq(ids[i], i % 2 ? 519 : 515, "%zu words, id %zu", n_words, i);
                cr_assert_eq(ids[76], 521);
        }
        /* A word's pieces are cut too: "hell" is he l l</w>, and only "he"
         * fits. */
        k = 0;
        for (size_t i = 0; i < 74; i++)
                k += (size_t) snprintf(text + k, sizeof(text) - k, "hello ");
        k += (size_t) snprintf(text + k, sizeof(text) - k, "hell");
        cr_assert_eq(clip_tokenizer_encode_prompt(t, text, k, 521, ids), CLIP_CONTEXT);
        cr_assert_eq(ids[75], 512);
        cr_assert_eq(ids[76], 521);
        clip_tokenizer_free(t);
}

Test(clip_tokenizer, encode_writes_at_most_max_ids) {
        struct clip_tokenizer *t = tokenizer_with(hello_merges, 8);
        int32_t ids[8] = { -7, -7, -7, -7, -7, -7, -7, -7 };

        cr_assert_eq(clip_tokenizer_encode(t, "a b c d e", 9, ids, 3), 3);
        cr_assert_eq(ids[2], E('c'));
        cr_assert_eq(ids[3], -7);
        ids[2] = -7;
        cr_assert_eq(clip_tokenizer_encode(t, "held", 4, ids, 2), 2);
        cr_assert_eq(ids[1], B('l'));
        cr_assert_eq(ids[2], -7);
        cr_assert_eq(clip_tokenizer_encode(t, "held", 4, ids, 0), 0);
        clip_tokenizer_free(t);
}

Test(clip_tokenizer, a_long_word_costs_its_length) {
        static const char *const merges[] = { "a a", "aa aa", "aaaa aaaa" };
        struct clip_tokenizer *t = tokenizer_with(merges, 3);
        size_t n = 1 << 18;
        char *text = malloc(n);
        int32_t ids[CLIP_CONTEXT];

        /* 256 KiB of one word: the reference's loop, O(n²), would take
         * many minutes; the heap's rounds a fraction of a second. */
        memset(text, 'a', n);
        cr_assert_eq(clip_tokenizer_encode_prompt(t, text, n, 0, ids), CLIP_CONTEXT);
        for (size_t i = 1; i < 76; i++)
                cr_assert_eq(ids[i], 514);      /* aaaaaaaa */
        free(text);
        clip_tokenizer_free(t);
}

/* A broken pair of files, and the words its error must contain. */
static void expect_error(const char *vocab, const char *merges, int want, const char *needle1,
                         const char *needle2) {
        struct clip_tokenizer *t = NULL;
        char err[512] = "";
        int r;

        r = clip_tokenizer_parse(vocab, strlen(vocab), "vocab.json", merges, strlen(merges), "merges.txt", &t, err,
                                 sizeof(err));
        cr_assert_eq(r, want, "%d, %d expected: %s", r, want, err);
        cr_assert_null(t);
        cr_assert_not_null(strstr(err, needle1), "\"%s\" lacks \"%s\"", err, needle1);
        if (needle2)
                cr_assert_not_null(strstr(err, needle2), "\"%s\" lacks \"%s\"", err, needle2);
}

/* The good files with text replaced once. */
static char *edited(const struct text *t, const char *from, const char *to) {
        const char *at = strstr(t->p, from);
        char *s;

        cr_assert_not_null(at, "no \"%s\" to edit", from);
        cr_assert_geq(asprintf(&s, "%.*s%s%s", (int) (at - t->p), t->p, to, at + strlen(from)), 0);
        return s;
}

Test(clip_tokenizer, broken_files_are_refused_naming_the_place) {
        struct text v, m;
        char *s;

        make_files(hello_merges, 8, &v, &m);
        /* JSON that does not parse: the line and column of the fault. */
        s = edited(&v, "\n\"\\\"\": 1", "\n\"\\\"\" 1");
        expect_error(s, m.p, -EBADMSG, "vocab.json:3:", "not valid JSON");
        free(s);
        s = edited(&v, "\n}", "\n} x");
        expect_error(s, m.p, -EBADMSG, "vocab.json:524:3:", NULL);
        free(s);
        expect_error("{\n\"a\": 1,\n", m.p, -EBADMSG, "vocab.json:3:1: not valid JSON", "ends inside");
        s = edited(&v, "\"hell\": 514", "\"hello</w>\": 514");
        expect_error(s, m.p, -EBADMSG, "vocab.json: the id of \"<|endoftext|>\", 521, is out of range",
                     "a piece given twice");
        free(s);
        expect_error("[1, 2]", m.p, -EBADMSG, "vocab.json", "not a JSON object");
        expect_error("{}", m.p, -EBADMSG, "vocab.json", "0 pieces");
        /* Entries: the piece is named. */
        s = edited(&v, "\"hello</w>\": 515", "\"hello</w>\": \"515\"");
        expect_error(s, m.p, -EBADMSG, "vocab.json", "\"hello</w>\" is not an integer");
        free(s);
        s = edited(&v, "\"hello</w>\": 515", "\"hello</w>\": 5150");
        expect_error(s, m.p, -EBADMSG, "\"hello</w>\", 5150, is out of range", NULL);
        free(s);
        s = edited(&v, "\"hello</w>\": 515", "\"hello</w>\": 514");
        expect_error(s, m.p, -EBADMSG, "both have id 514", "hello</w>");
        free(s);
        s = edited(&v, "\"<|endoftext|>\"", "\"<|end|>\"");
        expect_error(s, m.p, -EBADMSG, "vocab.json: no piece \"<|endoftext|>\"", NULL);
        free(s);
        s = edited(&v, "\"z</w>\"", "\"zz</w>\"");
        expect_error(s, m.p, -EBADMSG, "vocab.json: no piece \"z</w>\", which stands for byte 0x7a", NULL);
        free(s);

        /* merges.txt: the line (the #version line is line 1). */
        s = edited(&m, "l l\n", "l  l\n");
        expect_error(v.p, s, -EBADMSG, "merges.txt:3:", "not two pieces");
        free(s);
        s = edited(&m, "l l\n", "ll\n");
        expect_error(v.p, s, -EBADMSG, "merges.txt:3:", "not two pieces");
        free(s);
        s = edited(&m, "w o\n", "w q</x>\n");
        expect_error(v.p, s, -EBADMSG, "merges.txt:6: \"q</x>\" is not in the vocabulary", NULL);
        free(s);
        s = edited(&m, "w o\n", "w p\n");
        expect_error(v.p, s, -EBADMSG, "merges.txt:6:", "\"wp\", which is not in the vocabulary");
        free(s);
        s = edited(&m, "w o\n", "\nw o\n");
        expect_error(v.p, s, -EBADMSG, "merges.txt:6: an empty line", NULL);
        free(s);
        /* Windows line ends and no final newline are fine. */
        {
                struct clip_tokenizer *t = NULL;
                char err[256] = "";
                const char *crlf = "#version: 0.2\r\nh e\r\nl l";

                cr_assert_eq(clip_tokenizer_parse(v.p, v.n, "vocab.json", crlf, strlen(crlf), "merges.txt", &t,
                                                  err, sizeof(err)), 0, "%s", err);
                EXPECT_IDS(t, "hello", 512, 513, E('o'));
                clip_tokenizer_free(t);
        }
        free(v.p);
        free(m.p);
}

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "w");

        cr_assert_not_null(f, "%s", path);
        cr_assert_eq(fputs(text, f) >= 0, true);
        cr_assert_eq(fclose(f), 0);
}

Test(clip_tokenizer, files_are_found_next_to_the_model) {
        struct clip_tokenizer *t = NULL;
        char model[256], sub[128], path[256], err[512];
        char *vocab = NULL, *merges = NULL;
        struct text v, m;

        make_files(hello_merges, 8, &v, &m);
        snprintf(model, sizeof(model), "%s/sd.safetensors", dir);
        cr_assert_eq(clip_tokenizer_find(model, &vocab, &merges), -ENOENT);

        /* diffusers' layout: tokenizer/ beside the weights. */
        snprintf(sub, sizeof(sub), "%s/tokenizer", dir);
        cr_assert_eq(mkdir(sub, 0755), 0);
        snprintf(path, sizeof(path), "%s/vocab.json", sub);
        write_file(path, v.p);
        cr_assert_eq(clip_tokenizer_find(model, &vocab, &merges), -ENOENT);     /* no merges.txt yet */
        snprintf(path, sizeof(path), "%s/merges.txt", sub);
        write_file(path, m.p);
        cr_assert_eq(clip_tokenizer_find(model, &vocab, &merges), 0);
        cr_assert_str_eq(vocab, strcat(strcpy(path, sub), "/vocab.json"));
        cr_assert_eq(clip_tokenizer_load(vocab, merges, &t, err, sizeof(err)), 0, "%s", err);
        EXPECT_IDS(t, "hello", 515);
        clip_tokenizer_free(t);
        free(vocab);
        free(merges);

        /* Files right beside the model come first. */
        snprintf(path, sizeof(path), "%s/vocab.json", dir);
        write_file(path, v.p);
        snprintf(path, sizeof(path), "%s/merges.txt", dir);
        write_file(path, m.p);
        cr_assert_eq(clip_tokenizer_find(model, &vocab, &merges), 0);
        cr_assert_str_eq(merges, path);
        free(vocab);
        free(merges);

        /* A file that is not there is named. */
        snprintf(path, sizeof(path), "%s/nothing.json", dir);
        cr_assert_eq(clip_tokenizer_load(path, path, &t, err, sizeof(err)), -ENOENT);
        cr_assert_not_null(strstr(err, path));
        free(v.p);
        free(m.p);
}

/* Pieces back to bytes: the stand-ins' bytes, "</w>" dropped. */
static size_t decode(const struct clip_tokenizer *t, const int32_t *ids, size_t n, char *out) {
        size_t k = 0;

        init_bytes();
        for (size_t i = 0; i < n; i++) {
                const unsigned char *p = (const unsigned char *) clip_tokenizer_piece(t, ids[i]);

                cr_assert_not_null(p);
                while (*p && strcmp((const char *) p, "</w>") != 0) {
                        unsigned cp = *p < 0x80 ? *p : (unsigned) ((p[0] & 0x1f) << 6 | (p[1] & 0x3f));
                        unsigned b = 0;

                        while (byte_cp[b] != cp)
                                b++;
                        out[k++] = (char) b;
                        p += *p < 0x80 ? 1 : 2;
                }
        }
        return k;
}

Test(clip_tokenizer, sd_tiny_writes_clip_shaped_files) {
        static const char *const prompts[] = {
                "a photo of an astronaut riding a horse on mars",
                "A painting of a fox, sitting in a field at sunrise; in the style of Claude Monet!",
                "portrait of a young woman with red hair, 4k, 8k, trending on artstation",
                "日本の城 über café",
        };
        struct clip_tokenizer *t = NULL;
        char vocab[256], merges[256], err[512];
        int32_t ids[CLIP_CONTEXT];

        snprintf(vocab, sizeof(vocab), "%s/vocab.json", dir);
        snprintf(merges, sizeof(merges), "%s/merges.txt", dir);
        cr_assert_eq(sd_tiny_write_tokenizer(513, vocab, merges, err, sizeof(err)), -EINVAL);

        /* The real size: CLIP's ids for the special tokens. */
        cr_assert_eq(sd_tiny_write_tokenizer(49408, vocab, merges, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(clip_tokenizer_load(vocab, merges, &t, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(clip_tokenizer_n_vocab(t), 49408);
        cr_assert_eq(clip_tokenizer_bos(t), 49406);
        cr_assert_eq(clip_tokenizer_eos(t), 49407);
        clip_tokenizer_free(t);

        /* The tiny model's: 1000 pieces, 486 merges.  Common words are few
         * pieces; every prompt's bytes come back, spaces aside. */
        cr_assert_eq(sd_tiny_write_tokenizer(1000, vocab, merges, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(clip_tokenizer_load(vocab, merges, &t, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(clip_tokenizer_n_vocab(t), 1000);
        cr_assert_eq(clip_tokenizer_bos(t), 998);
        cr_assert_eq(clip_tokenizer_eos(t), 999);
        cr_assert_eq(clip_tokenizer_encode(t, "photography", 11, ids, CLIP_CONTEXT), 1);
        cr_assert_str_eq(clip_tokenizer_piece(t, ids[0]), "photography</w>");
        for (size_t i = 0; i < sizeof(prompts) / sizeof(prompts[0]); i++) {
                char back[512], want[512];
                size_t k = 0, n_back;
                int n = clip_tokenizer_encode_prompt(t, prompts[i], strlen(prompts[i]), 999, ids);

                cr_assert_gt(n, 2);
                cr_assert_lt(n, (int) strlen(prompts[i]));
                for (const char *p = prompts[i]; *p; p++)
                        if (*p != ' ')
                                want[k++] = (char) (*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
                n_back = decode(t, ids + 1, (size_t) n - 2, back);
                cr_assert_eq(n_back, k, "%s", prompts[i]);
                cr_assert_eq(memcmp(back, want, k), 0, "%s", prompts[i]);
        }
        clip_tokenizer_free(t);
}

/* ---- The encoder ---- */

/* The tiny checkpoint of sd-tiny (CLIP width 64, 4 heads, 2 layers, MLP
 * 256, 1000 tokens, 77 positions, F16). */
static void write_tiny(const char *name, struct sd_tiny_spec *spec, char *path, size_t size) {
        char err[512];

        snprintf(path, size, "%s/%s", dir, name);
        cr_assert_eq(sd_tiny_write(spec, path, NULL, err, sizeof(err)), 0, "%s", err);
}

static float *read_tensor(const struct safetensors *f, size_t *n, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static float *read_tensor(const struct safetensors *f, size_t *n, const char *fmt, ...) {
        char name[512];
        const struct st_tensor *t;
        va_list ap;
        float *v;

        va_start(ap, fmt);
        vsnprintf(name, sizeof(name), fmt, ap);
        va_end(ap);
        t = safetensors_find(f, name);
        cr_assert_not_null(t, "%s", name);
        v = malloc(t->n_elements * sizeof(float));
        cr_assert_not_null(v);
        cr_assert_eq(safetensors_read_f32(t, 0, t->n_elements, v), 0);
        if (n)
                *n = t->n_elements;
        return v;
}

#define P "cond_stage_model.transformer.text_model."

static void ref_layer_norm(const double *x, size_t n, size_t d, const float *g, const float *b, double *y) {
        for (size_t t = 0; t < n; t++) {
                double mean = 0, var = 0;

                for (size_t j = 0; j < d; j++)
                        mean += x[t * d + j];
                mean /= (double) d;
                for (size_t j = 0; j < d; j++)
                        var += (x[t * d + j] - mean) * (x[t * d + j] - mean);
                var /= (double) d;
                for (size_t j = 0; j < d; j++)
                        y[t * d + j] = (x[t * d + j] - mean) / sqrt(var + 1e-5) * g[j] + b[j];
        }
}

static void ref_linear(const double *x, size_t n, size_t in, size_t out, const float *w, const float *b, double *y) {
        for (size_t t = 0; t < n; t++)
                for (size_t o = 0; o < out; o++) {
                        double s = b[o];

                        for (size_t i = 0; i < in; i++)
                                s += x[t * in + i] * w[o * in + i];
                        y[t * out + o] = s;
                }
}

/* The text encoder in double, straight from the file: out [n][d]. */
static void ref_clip(const struct safetensors *f, const int32_t *ids, size_t n, size_t layers, size_t heads,
                     bool causal, double *out) {
        size_t n_tok, d, ff, hd;
        float *tok = read_tensor(f, &n_tok, P "embeddings.token_embedding.weight");
        float *pos = read_tensor(f, NULL, P "embeddings.position_embedding.weight");
        float *fg = read_tensor(f, &d, P "final_layer_norm.weight");
        float *fb = read_tensor(f, NULL, P "final_layer_norm.bias");
        double *x, *h, *q, *k, *v, *a, *o, *fh;

        free(read_tensor(f, &ff, P "encoder.layers.0.mlp.fc1.bias"));
        hd = d / heads;
        x = calloc(n * d, sizeof(double));
        h = calloc(n * d, sizeof(double));
        q = calloc(n * d, sizeof(double));
        k = calloc(n * d, sizeof(double));
        v = calloc(n * d, sizeof(double));
        a = calloc(n * d, sizeof(double));
        o = calloc(n * d, sizeof(double));
        fh = calloc(n * ff, sizeof(double));
        for (size_t t = 0; t < n; t++)
                for (size_t j = 0; j < d; j++)
                        x[t * d + j] = (double) tok[(size_t) ids[t] * d + j] + pos[t * d + j];
        for (size_t l = 0; l < layers; l++) {
#define W(name) read_tensor(f, NULL, P "encoder.layers.%zu." name, l)
                float *ln1g = W("layer_norm1.weight"), *ln1b = W("layer_norm1.bias");
                float *qw = W("self_attn.q_proj.weight"), *qb = W("self_attn.q_proj.bias");
                float *kw = W("self_attn.k_proj.weight"), *kb = W("self_attn.k_proj.bias");
                float *vw = W("self_attn.v_proj.weight"), *vb = W("self_attn.v_proj.bias");
                float *ow = W("self_attn.out_proj.weight"), *ob = W("self_attn.out_proj.bias");
                float *ln2g = W("layer_norm2.weight"), *ln2b = W("layer_norm2.bias");
                float *f1w = W("mlp.fc1.weight"), *f1b = W("mlp.fc1.bias");
                float *f2w = W("mlp.fc2.weight"), *f2b = W("mlp.fc2.bias");
#undef W
                float *all[] = { ln1g, ln1b, qw, qb, kw, kb, vw, vb, ow, ob, ln2g, ln2b, f1w, f1b, f2w, f2b };

                ref_layer_norm(x, n, d, ln1g, ln1b, h);
                ref_linear(h, n, d, d, qw, qb, q);
                ref_linear(h, n, d, d, kw, kb, k);
                ref_linear(h, n, d, d, vw, vb, v);
                for (size_t hh = 0; hh < heads; hh++)
                        for (size_t i = 0; i < n; i++) {
                                size_t last = causal ? i : n - 1;
                                double s[CLIP_CONTEXT], max = -INFINITY, sum = 0;

                                for (size_t j = 0; j <= last; j++) {
                                        s[j] = 0;
                                        for (size_t e = 0; e < hd; e++)
                                                s[j] += q[i * d + hh * hd + e] * k[j * d + hh * hd + e];
                                        s[j] /= sqrt((double) hd);
                                        max = fmax(max, s[j]);
                                }
                                for (size_t j = 0; j <= last; j++)
                                        sum += s[j] = exp(s[j] - max);
                                for (size_t e = 0; e < hd; e++) {
                                        double acc = 0;

                                        for (size_t j = 0; j <= last; j++)
                                                acc += s[j] / sum * v[j * d + hh * hd + e];
                                        a[i * d + hh * hd + e] = acc;
                                }
                        }
                ref_linear(a, n, d, d, ow, ob, o);
                for (size_t i = 0; i < n * d; i++)
                        x[i] += o[i];
                ref_layer_norm(x, n, d, ln2g, ln2b, h);
                ref_linear(h, n, d, ff, f1w, f1b, fh);
                for (size_t i = 0; i < n * ff; i++)
                        fh[i] = fh[i] / (1 + exp(-1.702 * fh[i]));
                ref_linear(fh, n, ff, d, f2w, f2b, o);
                for (size_t i = 0; i < n * d; i++)
                        x[i] += o[i];
                for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
                        free(all[i]);
        }
        ref_layer_norm(x, n, d, fg, fb, out);
        free(tok);
        free(pos);
        free(fg);
        free(fb);
        free(x);
        free(h);
        free(q);
        free(k);
        free(v);
        free(a);
        free(o);
        free(fh);
}

/* Runs the encoder on ids and returns the largest difference from the
 * reference (of `layers` layers). */
static double encoder_error(struct nn_backend *be, struct clip_text *c, const struct safetensors *f,
                            const int32_t *ids, size_t n, uint32_t skip_last, double *ref_out) {
        size_t d = clip_text_dim(c);
        float *out = be->ops->alloc(be, n * d), *host = malloc(n * d * sizeof(float));
        double err = 0;

        cr_assert_not_null(out);
        cr_assert_eq(clip_text_encode(c, ids, n, skip_last, out), 0);
        be->ops->read(be, host, out, n * d);
        ref_clip(f, ids, n, clip_text_layers(c) - skip_last, clip_text_heads(c), true, ref_out);
        for (size_t i = 0; i < n * d; i++) {
                cr_assert(isfinite(host[i]));
                err = fmax(err, fabs(host[i] - ref_out[i]));
        }
        be->ops->release(be, out);
        free(host);
        return err;
}

Test(clip_text, the_encoder_matches_a_double_reference) {
        struct sd_tiny_spec spec = sd_tiny_spec_default();
        struct clip_tokenizer *tok = NULL;
        struct safetensors *f = NULL;
        struct nn_backend *be = NULL;
        struct clip_text *c = NULL;
        char path[256], vocab[256], merges[256], err[512];
        const char *prompt = "a photo of an astronaut riding a horse on mars, highly detailed";
        int32_t ids[CLIP_CONTEXT];
        double *ref = malloc(CLIP_CONTEXT * 64 * sizeof(double)), *noncausal = malloc(CLIP_CONTEXT * 64 * sizeof(double));
        double e, diff = 0;
        int n;

        write_tiny("tiny.safetensors", &spec, path, sizeof(path));
        snprintf(vocab, sizeof(vocab), "%s/vocab.json", dir);
        snprintf(merges, sizeof(merges), "%s/merges.txt", dir);
        cr_assert_eq(sd_tiny_write_tokenizer(spec.vocab, vocab, merges, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(clip_tokenizer_load(vocab, merges, &tok, err, sizeof(err)), 0, "%s", err);
        n = clip_tokenizer_encode_prompt(tok, prompt, strlen(prompt), clip_tokenizer_eos(tok), ids);
        cr_assert_gt(n, 5);

        cr_assert_eq(safetensors_open(path, &f, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(nn_cpu_backend_new(2, &be), 0);
        cr_assert_eq(clip_text_load(be, f, spec.text_heads, &c, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(clip_text_dim(c), 64);
        cr_assert_eq(clip_text_vocab(c), 1000);
        cr_assert_eq(clip_text_positions(c), 77);
        cr_assert_eq(clip_text_layers(c), 2);
        cr_assert_eq(clip_text_heads(c), 4);
        /* Embeddings, 2 × (4 projections, 2 LayerNorms, fc1, fc2), the final
         * LayerNorm. */
        cr_assert_eq(clip_text_parameters(c), 1000 * 64 + 77 * 64 +
                     2 * (4 * (64 * 64 + 64) + 4 * 64 + 256 * 64 + 256 + 64 * 256 + 64) + 2 * 64);

        /* The whole 77 of the prompt, padded with EOS as SD 1.x does.
         * Tolerance: the engine works in f32, where a dot product of 256
         * terms is off by about √256 · 2⁻²⁴ of its magnitude (O(1) after
         * the LayerNorms), some 1e-6; through two layers and the final
         * LayerNorm the largest difference measured is 2e-6.  1e-4 leaves
         * room for other BLAS builds' summation orders, while a wrong
         * mask, scale or bias moves the output by 1e-2 or more (the
         * non-causal case below shows it). */
        e = encoder_error(be, c, f, ids, CLIP_CONTEXT, 0, ref);
        cr_assert_lt(e, 1e-4, "largest difference %g", e);
        ref_clip(f, ids, CLIP_CONTEXT, 2, 4, false, noncausal);
        for (size_t i = 0; i < CLIP_CONTEXT * 64; i++)
                diff = fmax(diff, fabs(noncausal[i] - ref[i]));
        cr_assert_gt(diff, 1e-2, "the mask does not matter to this test: %g", diff);
        /* Causal: the first n outputs do not depend on what follows. */
        e = encoder_error(be, c, f, ids, (size_t) n, 0, noncausal);
        cr_assert_lt(e, 1e-4, "largest difference %g", e);
        for (size_t i = 0; i < (size_t) n * 64; i++)
                cr_assert_float_eq(noncausal[i], ref[i], 1e-9);
        /* The same ids give the same output, bit for bit. */
        {
                float *o1 = be->ops->alloc(be, 77 * 64), *o2 = be->ops->alloc(be, 77 * 64);
                float h1[77 * 64], h2[77 * 64];

                cr_assert_eq(clip_text_encode(c, ids, 77, 0, o1), 0);
                cr_assert_eq(clip_text_encode(c, ids, 77, 0, o2), 0);
                be->ops->read(be, h1, o1, 77 * 64);
                be->ops->read(be, h2, o2, 77 * 64);
                cr_assert_eq(memcmp(h1, h2, sizeof(h1)), 0);
                be->ops->release(be, o1);
                be->ops->release(be, o2);
        }
        clip_text_free(c);
        nn_backend_free(be);
        safetensors_close(f);
        clip_tokenizer_free(tok);
        free(ref);
        free(noncausal);
}

Test(clip_text, skipping_the_last_layers_matches_the_reference_of_fewer) {
        struct sd_tiny_spec spec = sd_tiny_spec_default();
        struct safetensors *f = NULL;
        struct nn_backend *be = NULL;
        struct clip_text *c = NULL;
        char path[256], err[512];
        int32_t ids[CLIP_CONTEXT];
        double *ref = malloc(CLIP_CONTEXT * 64 * sizeof(double)), e;

        spec.text_layers = 3;
        spec.dtype = ST_BF16;
        write_tiny("three.safetensors", &spec, path, sizeof(path));
        for (size_t i = 0; i < CLIP_CONTEXT; i++)
                ids[i] = (int32_t) ((i * 37 + 11) % 1000);
        cr_assert_eq(safetensors_open(path, &f, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(nn_cpu_backend_new(1, &be), 0);
        cr_assert_eq(clip_text_load(be, f, 4, &c, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(clip_text_layers(c), 3);
        for (uint32_t skip = 0; skip < 3; skip++) {
                e = encoder_error(be, c, f, ids, CLIP_CONTEXT, skip, ref);
                cr_assert_lt(e, 1e-4, "skip %u: largest difference %g", skip, e);
        }
        clip_text_free(c);
        nn_backend_free(be);
        safetensors_close(f);
        free(ref);
}

Test(clip_text, bad_inputs_are_refused_before_anything_runs) {
        struct sd_tiny_spec spec = sd_tiny_spec_default();
        struct safetensors *f = NULL;
        struct nn_backend *be = NULL;
        struct clip_text *c = NULL;
        char path[256], err[512];
        int32_t ids[CLIP_CONTEXT + 1] = {};
        float *out;

        write_tiny("tiny.safetensors", &spec, path, sizeof(path));
        cr_assert_eq(safetensors_open(path, &f, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(nn_cpu_backend_new(1, &be), 0);
        /* 64 wide: one head of 64 by default. */
        cr_assert_eq(clip_text_load(be, f, 0, &c, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(clip_text_heads(c), 1);
        out = be->ops->alloc(be, (CLIP_CONTEXT + 1) * 64);
        cr_assert_eq(clip_text_encode(c, ids, CLIP_CONTEXT, 0, out), 0);
        cr_assert_eq(clip_text_encode(c, ids, CLIP_CONTEXT + 1, 0, out), -EINVAL);
        cr_assert_eq(clip_text_encode(c, ids, 0, 0, out), -EINVAL);
        cr_assert_eq(clip_text_encode(c, ids, 5, 2, out), -EINVAL);
        ids[3] = 1000;
        cr_assert_eq(clip_text_encode(c, ids, 5, 0, out), -EINVAL);
        ids[3] = -1;
        cr_assert_eq(clip_text_encode(c, ids, 5, 0, out), -EINVAL);
        be->ops->release(be, out);
        clip_text_free(c);
        cr_assert_eq(clip_text_load(be, f, 3, &c, err, sizeof(err)), -EINVAL);
        cr_assert_not_null(strstr(err, "3 heads"), "%s", err);
        nn_backend_free(be);
        safetensors_close(f);
}

/* A copy of the CLIP tensors of src under prefix, with `drop` left out and
 * `reshape` given the shape {d0, d1} (same element count). */
static void write_edited(const struct safetensors *src, const char *path, const char *prefix, const char *drop,
                         const char *reshape, uint64_t d0, uint64_t d1) {
        struct safetensors_writer *w = NULL;
        char err[512], name[512];

        cr_assert_eq(safetensors_writer_new(&w), 0);
        for (size_t i = 0; i < safetensors_count(src); i++) {
                const struct st_tensor *t = safetensors_tensor(src, i);
                const uint64_t *shape = t->shape;
                uint64_t other[2] = { d0, d1 };
                uint32_t ndim = t->ndim;

                if (strncmp(t->name, P, strlen(P)) != 0)
                        continue;
                if (drop && strcmp(t->name + strlen(P), drop) == 0)
                        continue;
                if (reshape && strcmp(t->name + strlen(P), reshape) == 0) {
                        shape = other;
                        ndim = d1 ? 2 : 1;
                }
                snprintf(name, sizeof(name), "%s%s", prefix, t->name + strlen(P));
                cr_assert_eq(safetensors_writer_add(w, name, t->dtype, ndim, shape, t->data), 0);
        }
        cr_assert_eq(safetensors_writer_write(w, path, err, sizeof(err)), 0, "%s", err);
        safetensors_writer_free(w);
}

static void expect_load_error(struct nn_backend *be, const char *path, int want, const char *needle) {
        struct safetensors *f = NULL;
        struct clip_text *c = NULL;
        char err[512] = "";

        cr_assert_eq(safetensors_open(path, &f, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(clip_text_load(be, f, 4, &c, err, sizeof(err)), want, "%s", err);
        cr_assert_null(c);
        cr_assert_not_null(strstr(err, needle), "\"%s\" lacks \"%s\"", err, needle);
        safetensors_close(f);
}

Test(clip_text, broken_checkpoints_are_refused_naming_the_tensor) {
        struct sd_tiny_spec spec = sd_tiny_spec_default();
        struct safetensors *f = NULL;
        struct nn_backend *be = NULL;
        struct clip_text *c = NULL;
        char path[256], edit[256], err[512];

        spec.text_layers = 3;
        write_tiny("tiny.safetensors", &spec, path, sizeof(path));
        cr_assert_eq(safetensors_open(path, &f, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(nn_cpu_backend_new(1, &be), 0);
        snprintf(edit, sizeof(edit), "%s/edit.safetensors", dir);

        write_edited(f, edit, P, "encoder.layers.1.mlp.fc2.bias", NULL, 0, 0);
        expect_load_error(be, edit, -ENOENT, P "encoder.layers.1.mlp.fc2.bias");
        write_edited(f, edit, P, "final_layer_norm.weight", NULL, 0, 0);
        expect_load_error(be, edit, -ENOENT, P "final_layer_norm.weight");
        /* fc1 as [64][256] instead of [256][64]. */
        write_edited(f, edit, P, NULL, "encoder.layers.2.mlp.fc1.weight", 64, 256);
        expect_load_error(be, edit, -EBADMSG, P "encoder.layers.2.mlp.fc1.weight has shape [64, 256], [256, 64]");
        write_edited(f, edit, P, NULL, "encoder.layers.0.layer_norm2.bias", 32, 2);
        expect_load_error(be, edit, -EBADMSG, P "encoder.layers.0.layer_norm2.bias has shape [32, 2], [64]");
        write_edited(f, edit, P, NULL, "embeddings.position_embedding.weight", 154, 32);
        expect_load_error(be, edit, -EBADMSG, P "embeddings.position_embedding.weight is 32 wide");
        write_edited(f, edit, P, NULL, "embeddings.token_embedding.weight", 64000, 0);
        expect_load_error(be, edit, -EBADMSG, "token_embedding.weight has shape [64000], not a matrix");
        /* A gap in the layers. */
        write_edited(f, edit, P, "encoder.layers.1.self_attn.q_proj.weight", NULL, 0, 0);
        expect_load_error(be, edit, -ENOENT, "no tensor " P "encoder.layers.1.self_attn.q_proj.weight, but has "
                          P "encoder.layers.1.");
        /* No text encoder; SD 2.x's; diffusers' own file loads. */
        write_edited(f, edit, "something.else.", NULL, NULL, 0, 0);
        expect_load_error(be, edit, -ENOENT, "no CLIP text encoder");
        {
                struct safetensors_writer *w = NULL;
                uint16_t zero[64] = {};

                cr_assert_eq(safetensors_writer_new(&w), 0);
                cr_assert_eq(safetensors_writer_add(w, "cond_stage_model.model.token_embedding.weight", ST_F16, 2,
                                                    (const uint64_t[]) { 1, 64 }, zero), 0);
                cr_assert_eq(safetensors_writer_write(w, edit, err, sizeof(err)), 0, "%s", err);
                safetensors_writer_free(w);
        }
        expect_load_error(be, edit, -EOPNOTSUPP, "OpenCLIP");
        write_edited(f, edit, "text_model.", NULL, NULL, 0, 0);
        safetensors_close(f);
        cr_assert_eq(safetensors_open(edit, &f, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(clip_text_load(be, f, 4, &c, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(clip_text_layers(c), 3);
        clip_text_free(c);
        nn_backend_free(be);
        safetensors_close(f);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The two tokenizers of GGUF files (tokenizer.h), after the algorithms of
 * SentencePiece (as llama.cpp's llm_tokenizer_spm runs it) and of GPT-2's
 * byte-level BPE.  Both merge adjacent symbols through one binary heap of
 * candidate pairs, so a fragment of n characters costs O(n log n).
 *
 * The pre-tokenizer regexes are hand-written scanners; Unicode categories
 * are approximated by the range tables below: ASCII exactly, the letters of
 * the common scripts (Latin, Greek, Cyrillic, Armenian, Hebrew, Arabic, the
 * Indic scripts, Thai, Georgian, Hangul, kana, CJK, …) as \p{L}, decimal
 * digits and the usual number forms as \p{N}, Unicode White_Space as \s,
 * and everything else (marks, symbols, emoji, invalid bytes) as
 * punctuation.  Text in a script the tables miss is split differently from
 * the reference regex, never lost: every byte still reaches a token. */

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "nn-error.h"
#include "tokenizer.h"

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

#define TAKE_PTR(p)                             \
        ({                                      \
                __typeof__(p) _ptr_ = (p);      \
                (p) = NULL;                     \
                _ptr_;                          \
        })

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define _fallthrough_ __attribute__((fallthrough))

/* U+2581 LOWER ONE EIGHTH BLOCK: SentencePiece's visible space. */
#define SPM_SPACE "\xe2\x96\x81"
#define SPM_SPACE_LEN 3

/* What a token the tokenizer knows as unknown decodes to: U+FFFD. */
#define REPLACEMENT_CHAR "\xef\xbf\xbd"

/* GPT-2 maps the 256 bytes onto code points below this. */
#define BPE_CP_MAX 324

#define CP_INVALID UINT32_MAX

struct merge_slot {
        uint64_t key;                   /* left id << 32 | right id; UINT64_MAX: empty */
        int32_t rank;
        int32_t result;
};

struct special {
        int32_t id;
        uint32_t len;
        uint8_t first;                  /* byte of the text */
};

struct tokenizer {
        enum tokenizer_kind kind;
        enum tokenizer_pre pre;
        size_t n_vocab;

        char *text;                     /* all pieces, NUL-separated */
        const char **pieces;
        uint32_t *lens;
        float *scores;
        uint8_t *types;

        int32_t bos, eos, eot, unk, pad;
        bool add_bos;
        bool add_space_prefix;
        /* Llama 3 looks a whole pre-token up before merging it. */
        bool ignore_merges;

        int32_t *vocab_slots;           /* piece → id, open addressing; -1: empty */
        size_t vocab_mask;

        struct merge_slot *merge_slots;
        size_t merge_mask;

        int32_t byte_token[256];        /* SPM: "<0xNN>", -1 when absent */
        int32_t byte_symbol[256];       /* BPE: the piece of a byte's code point, -1 when absent */
        uint32_t byte_to_cp[256];
        int16_t cp_to_byte[BPE_CP_MAX];

        /* Control and user-defined tokens, longest first, grouped by their
         * first byte so that the scan of the text looks at few of them. */
        struct special *specials;
        size_t special_start[257];

        int32_t eog[8];
        size_t n_eog;
};

/* ---- small helpers ----------------------------------------------------- */

struct id_vec {
        int32_t *v;
        size_t n, cap;
};

static void id_vec_done(struct id_vec *v) {
        free(v->v);
}

static int id_vec_push(struct id_vec *v, int32_t id) {
        if (v->n == v->cap) {
                size_t cap = v->cap ? v->cap * 2 : 64;
                int32_t *p = realloc(v->v, cap * sizeof(*p));

                if (!p)
                        return -ENOMEM;
                v->v = p;
                v->cap = cap;
        }
        v->v[v->n++] = id;
        return 0;
}

struct byte_buf {
        char *p;
        size_t n, cap;
};

static void byte_buf_done(struct byte_buf *b) {
        free(b->p);
}

static int byte_buf_reserve(struct byte_buf *b, size_t extra) {
        size_t cap;
        char *p;

        if (b->cap - b->n >= extra)
                return 0;
        if (extra > SIZE_MAX / 2 - b->n)
                return -ENOMEM;
        cap = b->cap ? b->cap : 64;
        while (cap - b->n < extra)
                cap *= 2;
        p = realloc(b->p, cap);
        if (!p)
                return -ENOMEM;
        b->p = p;
        b->cap = cap;
        return 0;
}


static uint64_t hash_bytes(const char *s, size_t n) {
        uint64_t h = 0xcbf29ce484222325ull;

        for (size_t i = 0; i < n; i++) {
                h ^= (uint8_t) s[i];
                h *= 0x100000001b3ull;
        }
        return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdull;
        x ^= x >> 33;
        x *= 0xc4ceb9fe1a85ec53ull;
        return x ^ (x >> 33);
}

static size_t table_size_for(size_t n) {
        size_t size = 16;

        while (size < n * 2)
                size *= 2;
        return size;
}

/* Length of the UTF-8 sequence at s (at most n bytes), and its code point;
 * a byte that starts no valid sequence is a sequence of one, CP_INVALID. */
static size_t utf8_next(const uint8_t *s, size_t n, uint32_t *ret_cp) {
        uint32_t cp, min;
        size_t len;

        if (s[0] < 0x80) {
                *ret_cp = s[0];
                return 1;
        }
        if ((s[0] & 0xe0) == 0xc0) {
                len = 2, cp = s[0] & 0x1f, min = 0x80;
        } else if ((s[0] & 0xf0) == 0xe0) {
                len = 3, cp = s[0] & 0x0f, min = 0x800;
        } else if ((s[0] & 0xf8) == 0xf0) {
                len = 4, cp = s[0] & 0x07, min = 0x10000;
        } else {
                *ret_cp = CP_INVALID;
                return 1;
        }
        if (len > n)
                goto invalid;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        goto invalid;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                goto invalid;
        *ret_cp = cp;
        return len;

invalid:
        *ret_cp = CP_INVALID;
        return 1;
}

static size_t utf8_encode(uint32_t cp, char *out) {
        if (cp < 0x80) {
                out[0] = (char) cp;
                return 1;
        }
        if (cp < 0x800) {
                out[0] = (char) (0xc0 | (cp >> 6));
                out[1] = (char) (0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                out[0] = (char) (0xe0 | (cp >> 12));
                out[1] = (char) (0x80 | ((cp >> 6) & 0x3f));
                out[2] = (char) (0x80 | (cp & 0x3f));
                return 3;
        }
        out[0] = (char) (0xf0 | (cp >> 18));
        out[1] = (char) (0x80 | ((cp >> 12) & 0x3f));
        out[2] = (char) (0x80 | ((cp >> 6) & 0x3f));
        out[3] = (char) (0x80 | (cp & 0x3f));
        return 4;
}

/* ---- Unicode categories (approximate, see the top of the file) ---------- */

enum cp_class {
        CP_NONE,                /* past the end of the fragment */
        CP_OTHER,
        CP_LETTER,
        CP_NUMBER,
        CP_SPACE,
};

struct cp_range {
        uint32_t first, last;
};

static const struct cp_range letter_ranges[] = {
        { 0x41, 0x5a }, { 0x61, 0x7a }, { 0xaa, 0xaa }, { 0xb5, 0xb5 }, { 0xba, 0xba },
        { 0xc0, 0xd6 }, { 0xd8, 0xf6 }, { 0xf8, 0x2c1 }, { 0x2c6, 0x2d1 }, { 0x2e0, 0x2e4 },
        { 0x2ec, 0x2ec }, { 0x2ee, 0x2ee }, { 0x370, 0x374 }, { 0x376, 0x377 }, { 0x37a, 0x37d },
        { 0x37f, 0x37f }, { 0x386, 0x386 }, { 0x388, 0x3f5 }, { 0x3f7, 0x481 }, { 0x48a, 0x52f },
        { 0x531, 0x556 }, { 0x559, 0x559 }, { 0x560, 0x588 }, { 0x5d0, 0x5ea }, { 0x5ef, 0x5f2 },
        { 0x620, 0x64a }, { 0x66e, 0x66f }, { 0x671, 0x6d3 }, { 0x6d5, 0x6d5 }, { 0x6e5, 0x6e6 },
        { 0x6ee, 0x6ef }, { 0x6fa, 0x6fc }, { 0x6ff, 0x6ff }, { 0x710, 0x710 }, { 0x712, 0x72f },
        { 0x74d, 0x7a5 }, { 0x7b1, 0x7b1 }, { 0x7ca, 0x7ea }, { 0x904, 0x939 }, { 0x93d, 0x93d },
        { 0x950, 0x950 }, { 0x958, 0x961 }, { 0x971, 0x980 }, { 0x985, 0x9b9 }, { 0x9bd, 0x9bd },
        { 0x9ce, 0x9ce }, { 0x9dc, 0x9e1 }, { 0x9f0, 0x9f1 }, { 0xa05, 0xa39 }, { 0xa59, 0xa5e },
        { 0xa72, 0xa74 }, { 0xa85, 0xab9 }, { 0xabd, 0xabd }, { 0xad0, 0xae1 }, { 0xb05, 0xb39 },
        { 0xb3d, 0xb3d }, { 0xb5c, 0xb61 }, { 0xb71, 0xb71 }, { 0xb83, 0xbb9 }, { 0xbd0, 0xbd0 },
        { 0xc05, 0xc39 }, { 0xc3d, 0xc3d }, { 0xc58, 0xc61 }, { 0xc80, 0xc80 }, { 0xc85, 0xcb9 },
        { 0xcbd, 0xcbd }, { 0xcdd, 0xce1 }, { 0xcf1, 0xcf2 }, { 0xd04, 0xd3a }, { 0xd3d, 0xd3d },
        { 0xd4e, 0xd4e }, { 0xd54, 0xd56 }, { 0xd5f, 0xd61 }, { 0xd7a, 0xd7f }, { 0xd85, 0xdc6 },
        { 0xe01, 0xe30 }, { 0xe32, 0xe33 }, { 0xe40, 0xe46 }, { 0xe81, 0xeb0 }, { 0xeb2, 0xeb3 },
        { 0xebd, 0xec6 }, { 0xedc, 0xedf }, { 0xf00, 0xf00 }, { 0xf40, 0xf6c }, { 0xf88, 0xf8c },
        { 0x1000, 0x102a }, { 0x103f, 0x103f }, { 0x1050, 0x1055 }, { 0x10a0, 0x10fa },
        { 0x10fc, 0x135a }, { 0x13a0, 0x13fd }, { 0x1401, 0x166c }, { 0x166f, 0x167f },
        { 0x1681, 0x169a }, { 0x16a0, 0x16ea }, { 0x1780, 0x17b3 }, { 0x17d7, 0x17d7 },
        { 0x17dc, 0x17dc }, { 0x1820, 0x1878 }, { 0x1880, 0x18a8 }, { 0x1d00, 0x1dbf },
        { 0x1e00, 0x1fbc }, { 0x1fbe, 0x1fbe }, { 0x1fc2, 0x1fcc }, { 0x1fd0, 0x1fdb },
        { 0x1fe0, 0x1fec }, { 0x1ff2, 0x1ffc }, { 0x2071, 0x2071 }, { 0x207f, 0x207f },
        { 0x2090, 0x209c }, { 0x2102, 0x2102 }, { 0x2107, 0x2107 }, { 0x210a, 0x2113 },
        { 0x2115, 0x2115 }, { 0x2119, 0x211d }, { 0x2124, 0x2124 }, { 0x2126, 0x2126 },
        { 0x2128, 0x2128 }, { 0x212a, 0x212d }, { 0x212f, 0x2139 }, { 0x213c, 0x213f },
        { 0x2145, 0x2149 }, { 0x214e, 0x214e }, { 0x2183, 0x2184 }, { 0x2c00, 0x2ce4 },
        { 0x2ceb, 0x2cee }, { 0x2cf2, 0x2cf3 }, { 0x2d00, 0x2d25 }, { 0x2d27, 0x2d27 },
        { 0x2d2d, 0x2d2d }, { 0x2d30, 0x2d67 }, { 0x2d6f, 0x2d6f }, { 0x2d80, 0x2dde },
        { 0x2e2f, 0x2e2f }, { 0x3005, 0x3006 }, { 0x3031, 0x3035 }, { 0x303b, 0x303c },
        { 0x3041, 0x3096 }, { 0x309d, 0x309f }, { 0x30a1, 0x30fa }, { 0x30fc, 0x30ff },
        { 0x3105, 0x312f }, { 0x3131, 0x318e }, { 0x31a0, 0x31bf }, { 0x31f0, 0x31ff },
        { 0x3400, 0x4dbf }, { 0x4e00, 0xa48c }, { 0xa4d0, 0xa4fd }, { 0xa500, 0xa60c },
        { 0xa610, 0xa61f }, { 0xa62a, 0xa62b }, { 0xa640, 0xa66e }, { 0xa67f, 0xa69d },
        { 0xa6a0, 0xa6e5 }, { 0xa717, 0xa71f }, { 0xa722, 0xa788 }, { 0xa78b, 0xa7ff },
        { 0xab30, 0xab5a }, { 0xab5c, 0xab69 }, { 0xab70, 0xabe2 }, { 0xac00, 0xd7a3 },
        { 0xd7b0, 0xd7c6 }, { 0xd7cb, 0xd7fb }, { 0xf900, 0xfa6d }, { 0xfa70, 0xfad9 },
        { 0xfb00, 0xfb06 }, { 0xfb13, 0xfb17 }, { 0xfb1d, 0xfb1d }, { 0xfb1f, 0xfb28 },
        { 0xfb2a, 0xfbb1 }, { 0xfbd3, 0xfd3d }, { 0xfd50, 0xfdc7 }, { 0xfdf0, 0xfdfb },
        { 0xfe70, 0xfefc }, { 0xff21, 0xff3a }, { 0xff41, 0xff5a }, { 0xff66, 0xffbe },
        { 0xffc2, 0xffdc }, { 0x10000, 0x100fa }, { 0x10280, 0x1031f }, { 0x10330, 0x10340 },
        { 0x10342, 0x10349 }, { 0x10350, 0x10375 }, { 0x10380, 0x1039d }, { 0x10400, 0x1049d },
        { 0x1d400, 0x1d6c0 }, { 0x1d6c2, 0x1d7cb }, { 0x20000, 0x2a6df }, { 0x2a700, 0x2ebe0 },
        { 0x2f800, 0x2fa1d }, { 0x30000, 0x3134a },
};

static const struct cp_range number_ranges[] = {
        { 0x30, 0x39 }, { 0xb2, 0xb3 }, { 0xb9, 0xb9 }, { 0xbc, 0xbe }, { 0x660, 0x669 },
        { 0x6f0, 0x6f9 }, { 0x7c0, 0x7c9 }, { 0x966, 0x96f }, { 0x9e6, 0x9ef }, { 0x9f4, 0x9f9 },
        { 0xa66, 0xa6f }, { 0xae6, 0xaef }, { 0xb66, 0xb6f }, { 0xb72, 0xb77 }, { 0xbe6, 0xbf2 },
        { 0xc66, 0xc6f }, { 0xc78, 0xc7e }, { 0xce6, 0xcef }, { 0xd58, 0xd5e }, { 0xd66, 0xd78 },
        { 0xde6, 0xdef }, { 0xe50, 0xe59 }, { 0xed0, 0xed9 }, { 0xf20, 0xf33 }, { 0x1040, 0x1049 },
        { 0x1090, 0x1099 }, { 0x1369, 0x137c }, { 0x16ee, 0x16f0 }, { 0x17e0, 0x17e9 },
        { 0x17f0, 0x17f9 }, { 0x1810, 0x1819 }, { 0x1946, 0x194f }, { 0x19d0, 0x19da },
        { 0x1a80, 0x1a89 }, { 0x1a90, 0x1a99 }, { 0x1b50, 0x1b59 }, { 0x1bb0, 0x1bb9 },
        { 0x1c40, 0x1c49 }, { 0x1c50, 0x1c59 }, { 0x2070, 0x2070 }, { 0x2074, 0x2079 },
        { 0x2080, 0x2089 }, { 0x2150, 0x2182 }, { 0x2185, 0x2189 }, { 0x2460, 0x249b },
        { 0x24ea, 0x24ff }, { 0x2776, 0x2793 }, { 0x2cfd, 0x2cfd }, { 0x3007, 0x3007 },
        { 0x3021, 0x3029 }, { 0x3038, 0x303a }, { 0x3192, 0x3195 }, { 0x3220, 0x3229 },
        { 0x3248, 0x324f }, { 0x3251, 0x325f }, { 0x3280, 0x3289 }, { 0x32b1, 0x32bf },
        { 0xa620, 0xa629 }, { 0xa6e6, 0xa6ef }, { 0xa830, 0xa835 }, { 0xa8d0, 0xa8d9 },
        { 0xa900, 0xa909 }, { 0xa9d0, 0xa9d9 }, { 0xa9f0, 0xa9f9 }, { 0xaa50, 0xaa59 },
        { 0xabf0, 0xabf9 }, { 0xff10, 0xff19 }, { 0x10107, 0x10133 }, { 0x1d7ce, 0x1d7ff },
        { 0x1f100, 0x1f10c },
};

static bool in_ranges(const struct cp_range *r, size_t n, uint32_t cp) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (cp < r[mid].first)
                        hi = mid;
                else if (cp > r[mid].last)
                        lo = mid + 1;
                else
                        return true;
        }
        return false;
}

static bool cp_is_space(uint32_t cp) {
        return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
               (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
               cp == 0x205f || cp == 0x3000;
}

static enum cp_class cp_classify(uint32_t cp) {
        if (cp == CP_INVALID)
                return CP_OTHER;
        if (cp < 0x80) {
                if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z')
                        return CP_LETTER;
                if (cp >= '0' && cp <= '9')
                        return CP_NUMBER;
                return cp_is_space(cp) ? CP_SPACE : CP_OTHER;
        }
        if (cp_is_space(cp))
                return CP_SPACE;
        if (in_ranges(letter_ranges, ELEMENTSOF(letter_ranges), cp))
                return CP_LETTER;
        if (in_ranges(number_ranges, ELEMENTSOF(number_ranges), cp))
                return CP_NUMBER;
        return CP_OTHER;
}

/* ---- lookups ------------------------------------------------------------ */

static int32_t vocab_lookup(const struct tokenizer *t, const char *s, size_t n) {
        for (size_t i = hash_bytes(s, n) & t->vocab_mask;; i = (i + 1) & t->vocab_mask) {
                int32_t id = t->vocab_slots[i];

                if (id < 0)
                        return -1;
                if (t->lens[id] == n && memcmp(t->pieces[id], s, n) == 0)
                        return id;
        }
}

/* A piece the text may turn into: control and unused tokens only come from
 * their own ids, so that user text cannot forge them. */
static int32_t text_lookup(const struct tokenizer *t, const char *s, size_t n) {
        int32_t id = vocab_lookup(t, s, n);

        if (id < 0)
                return -1;
        switch (t->types[id]) {
        case TOKEN_TYPE_NORMAL:
        case TOKEN_TYPE_USER_DEFINED:
                return id;
        default:
                return -1;
        }
}

static const struct merge_slot *merge_lookup(const struct tokenizer *t, int32_t left, int32_t right) {
        uint64_t key = (uint64_t) (uint32_t) left << 32 | (uint32_t) right;

        for (size_t i = hash_u64(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
                const struct merge_slot *s = &t->merge_slots[i];

                if (s->key == UINT64_MAX)
                        return NULL;
                if (s->key == key)
                        return s;
        }
}

/* ---- the merge loop shared by SPM and BPE ------------------------------- */

struct symbol {
        size_t start;                   /* SPM: in the normalised text; BPE: in the word */
        size_t n;                       /* bytes; 0 once merged into its left neighbour */
        ptrdiff_t prev, next;
        int32_t id;                     /* BPE: the piece; -1 for a byte with none */
};

struct bigram {
        double priority;                /* SPM: the score; BPE: minus the rank */
        ptrdiff_t left, right;
        size_t n;                       /* of the pair when queued: stale once it differs */
        int32_t id;
};

struct bigram_heap {
        struct bigram *v;
        size_t n, cap;
};

/* Higher priority first; the leftmost pair among equals. */
static bool bigram_before(const struct bigram *a, const struct bigram *b) {
        if (a->priority != b->priority)
                return a->priority > b->priority;
        return a->left < b->left;
}

static int heap_push(struct bigram_heap *h, struct bigram b) {
        size_t i;

        if (h->n == h->cap) {
                size_t cap = h->cap ? h->cap * 2 : 64;
                struct bigram *p = realloc(h->v, cap * sizeof(*p));

                if (!p)
                        return -ENOMEM;
                h->v = p;
                h->cap = cap;
        }
        i = h->n++;
        while (i > 0) {
                size_t parent = (i - 1) / 2;

                if (!bigram_before(&b, &h->v[parent]))
                        break;
                h->v[i] = h->v[parent];
                i = parent;
        }
        h->v[i] = b;
        return 0;
}

static struct bigram heap_pop(struct bigram_heap *h) {
        struct bigram top = h->v[0], last = h->v[--h->n];
        size_t i = 0;

        for (;;) {
                size_t c = 2 * i + 1;

                if (c >= h->n)
                        break;
                if (c + 1 < h->n && bigram_before(&h->v[c + 1], &h->v[c]))
                        c++;
                if (!bigram_before(&h->v[c], &last))
                        break;
                h->v[i] = h->v[c];
                i = c;
        }
        if (h->n > 0)
                h->v[i] = last;
        return top;
}

struct merge_state {
        const struct tokenizer *t;
        const char *text;               /* what the symbols' start/n index */
        struct symbol *sym;
        struct bigram_heap heap;
};

static int try_add_bigram(struct merge_state *m, ptrdiff_t left, ptrdiff_t right) {
        const struct symbol *l, *r;
        struct bigram b;

        if (left < 0 || right < 0)
                return 0;
        l = &m->sym[left];
        r = &m->sym[right];

        if (m->t->kind == TOKENIZER_SPM) {
                /* Symbols are adjacent in the text, so the pair is a slice. */
                int32_t id = text_lookup(m->t, m->text + l->start, l->n + r->n);

                if (id < 0)
                        return 0;
                b = (struct bigram) { .priority = m->t->scores[id], .id = id };
        } else {
                const struct merge_slot *s;

                if (l->id < 0 || r->id < 0)
                        return 0;
                s = merge_lookup(m->t, l->id, r->id);
                if (!s)
                        return 0;
                b = (struct bigram) { .priority = -(double) s->rank, .id = s->result };
        }
        b.left = left;
        b.right = right;
        b.n = l->n + r->n;
        return heap_push(&m->heap, b);
}

/* Merges the best pair until none is left; sym[0..n) start linked in order. */
static int merge_symbols(struct merge_state *m, size_t n) {
        int r;

        for (size_t i = 1; i < n; i++) {
                r = try_add_bigram(m, (ptrdiff_t) i - 1, (ptrdiff_t) i);
                if (r < 0)
                        return r;
        }

        while (m->heap.n > 0) {
                struct bigram b = heap_pop(&m->heap);
                struct symbol *l = &m->sym[b.left], *rs = &m->sym[b.right];

                if (l->n == 0 || rs->n == 0 || l->next != b.right || l->n + rs->n != b.n)
                        continue;

                l->n += rs->n;
                l->id = b.id;
                rs->n = 0;
                l->next = rs->next;
                if (rs->next >= 0)
                        m->sym[rs->next].prev = b.left;

                r = try_add_bigram(m, l->prev, b.left);
                if (r < 0)
                        return r;
                r = try_add_bigram(m, b.left, l->next);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- SentencePiece ------------------------------------------------------ */

static int spm_emit_unknown(const struct tokenizer *t, const char *s, size_t n, struct id_vec *out) {
        bool all = true;
        int r;

        for (size_t i = 0; i < n; i++)
                if (t->byte_token[(uint8_t) s[i]] < 0)
                        all = false;
        if (all) {
                for (size_t i = 0; i < n; i++) {
                        r = id_vec_push(out, t->byte_token[(uint8_t) s[i]]);
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        /* Without a byte token for each byte the character is lost either
         * way: one <unk> says so once. */
        return t->unk >= 0 ? id_vec_push(out, t->unk) : 0;
}

static int spm_encode_fragment(const struct tokenizer *t, const char *text, size_t len, bool space_prefix,
                               struct id_vec *out) {
        _cleanup_free_ char *norm = NULL;
        _cleanup_free_ struct symbol *sym = NULL;
        struct merge_state m = { .t = t };
        size_t n_norm = 0, n_sym = 0;
        int r;

        if (len > (SIZE_MAX - SPM_SPACE_LEN) / SPM_SPACE_LEN)
                return -ENOMEM;
        norm = malloc((len + 1) * SPM_SPACE_LEN);
        if (!norm)
                return -ENOMEM;
        if (space_prefix) {
                memcpy(norm, SPM_SPACE, SPM_SPACE_LEN);
                n_norm = SPM_SPACE_LEN;
        }
        for (size_t i = 0; i < len; i++) {
                if (text[i] == ' ') {
                        memcpy(norm + n_norm, SPM_SPACE, SPM_SPACE_LEN);
                        n_norm += SPM_SPACE_LEN;
                } else
                        norm[n_norm++] = text[i];
        }

        sym = calloc(n_norm, sizeof(*sym));
        if (!sym)
                return -ENOMEM;
        for (size_t i = 0; i < n_norm;) {
                uint32_t cp;
                size_t k = utf8_next((const uint8_t *) norm + i, n_norm - i, &cp);

                sym[n_sym] = (struct symbol) {
                        .start = i,
                        .n = k,
                        .prev = (ptrdiff_t) n_sym - 1,
                        .next = i + k < n_norm ? (ptrdiff_t) n_sym + 1 : -1,
                        .id = -1,
                };
                n_sym++;
                i += k;
        }

        m.text = norm;
        m.sym = sym;
        r = merge_symbols(&m, n_sym);
        free(m.heap.v);
        if (r < 0)
                return r;

        for (ptrdiff_t i = n_sym > 0 ? 0 : -1; i >= 0; i = sym[i].next) {
                int32_t id = text_lookup(t, norm + sym[i].start, sym[i].n);

                r = id >= 0 ? id_vec_push(out, id) : spm_emit_unknown(t, norm + sym[i].start, sym[i].n, out);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- byte-level BPE ----------------------------------------------------- */

struct cp_text {
        const uint32_t *cp;
        size_t n;
};

static uint32_t cp_at(const struct cp_text *c, size_t i) {
        return i < c->n ? c->cp[i] : CP_INVALID;
}

static enum cp_class class_at(const struct cp_text *c, size_t i) {
        return i < c->n ? cp_classify(c->cp[i]) : CP_NONE;
}

static uint32_t ascii_lower(uint32_t cp) {
        return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
}

/* 's 't 're 've 'm 'll 'd at pos: the length matched, or 0. */
static size_t match_contraction(const struct cp_text *c, size_t pos, bool any_case) {
        uint32_t a, b;

        if (cp_at(c, pos) != '\'' || pos + 1 >= c->n)
                return 0;
        a = cp_at(c, pos + 1);
        b = cp_at(c, pos + 2);
        if (any_case) {
                a = ascii_lower(a);
                b = ascii_lower(b);
        }
        if (a == 's' || a == 't' || a == 'm' || a == 'd')
                return 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
                return 3;
        return 0;
}

/* Whitespace from pos: \s+(?!\S) leaves the last space of a run that a
 * non-space follows to start the next pre-token; else \s+ takes the run. */
static size_t match_spaces(const struct cp_text *c, size_t pos) {
        size_t n = 0;

        while (class_at(c, pos + n) == CP_SPACE)
                n++;
        if (n > 1 && pos + n < c->n)
                return pos + n - 1;
        return pos + (n > 0 ? n : 1);
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * The end of the pre-token that starts at pos. */
static size_t split_gpt2(const struct cp_text *c, size_t pos) {
        size_t k = match_contraction(c, pos, false);
        enum cp_class cls;

        if (k > 0)
                return pos + k;

        cls = cp_at(c, pos) == ' ' ? class_at(c, pos + 1) : class_at(c, pos);
        if (cls == CP_LETTER || cls == CP_NUMBER || cls == CP_OTHER) {
                if (cp_at(c, pos) == ' ')
                        pos++;
                while (class_at(c, pos) == cls)
                        pos++;
                return pos;
        }
        return match_spaces(c, pos);
}

/* Llama 3 (max_digits 3) and Qwen 2 (max_digits 1):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,N}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t split_llama3(const struct cp_text *c, size_t pos, size_t max_digits) {
        size_t k = match_contraction(c, pos, true);
        uint32_t cp = cp_at(c, pos);
        enum cp_class cls = class_at(c, pos), cls2;
        size_t n, last_newline = 0;

        if (k > 0)
                return pos + k;

        if (cp != '\r' && cp != '\n' && cls != CP_NUMBER &&
            (cls == CP_LETTER || class_at(c, pos + 1) == CP_LETTER)) {
                pos++;
                while (class_at(c, pos) == CP_LETTER)
                        pos++;
                return pos;
        }

        if (cls == CP_NUMBER) {
                for (n = 0; n < max_digits && class_at(c, pos) == CP_NUMBER; n++)
                        pos++;
                return pos;
        }

        cls2 = cp == ' ' ? class_at(c, pos + 1) : cls;
        if (cls2 == CP_OTHER) {
                if (cp == ' ')
                        pos++;
                while (class_at(c, pos) == CP_OTHER)
                        pos++;
                while (cp_at(c, pos) == '\r' || cp_at(c, pos) == '\n')
                        pos++;
                return pos;
        }

        /* \s*[\r\n]+: through the last newline of the run of spaces. */
        for (n = 0; class_at(c, pos + n) == CP_SPACE; n++)
                if (cp_at(c, pos + n) == '\r' || cp_at(c, pos + n) == '\n')
                        last_newline = pos + n + 1;
        if (last_newline > 0)
                return last_newline;

        return match_spaces(c, pos);
}

static int bpe_encode_word(const struct tokenizer *t, const char *word, size_t len, struct byte_buf *mapped,
                           struct symbol **sym_buf, size_t *sym_cap, struct id_vec *out) {
        struct merge_state m = { .t = t };
        struct symbol *sym;
        int r;

        if (t->ignore_merges) {
                int32_t id;

                mapped->n = 0;
                r = byte_buf_reserve(mapped, len * 2);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < len; i++)
                        mapped->n += utf8_encode(t->byte_to_cp[(uint8_t) word[i]], mapped->p + mapped->n);
                id = text_lookup(t, mapped->p, mapped->n);
                if (id >= 0)
                        return id_vec_push(out, id);
        }

        if (*sym_cap < len) {
                sym = realloc(*sym_buf, len * sizeof(*sym));
                if (!sym)
                        return -ENOMEM;
                *sym_buf = sym;
                *sym_cap = len;
        }
        sym = *sym_buf;
        for (size_t i = 0; i < len; i++)
                sym[i] = (struct symbol) {
                        .start = i,
                        .n = 1,
                        .prev = (ptrdiff_t) i - 1,
                        .next = i + 1 < len ? (ptrdiff_t) i + 1 : -1,
                        .id = t->byte_symbol[(uint8_t) word[i]],
                };

        m.sym = sym;
        r = merge_symbols(&m, len);
        free(m.heap.v);
        if (r < 0)
                return r;

        for (ptrdiff_t i = 0; i >= 0; i = sym[i].next) {
                /* Only a byte whose symbol the vocabulary lacks has no id. */
                if (sym[i].id >= 0)
                        r = id_vec_push(out, sym[i].id);
                else
                        r = t->unk >= 0 ? id_vec_push(out, t->unk) : 0;
                if (r < 0)
                        return r;
        }
        return 0;
}

static int bpe_encode_fragment(const struct tokenizer *t, const char *text, size_t len, struct id_vec *out) {
        _cleanup_free_ uint32_t *cps = NULL;
        _cleanup_free_ size_t *offsets = NULL;
        _cleanup_free_ struct symbol *sym = NULL;
        _cleanup_(byte_buf_done) struct byte_buf mapped = {};
        struct cp_text c;
        size_t n_cp = 0, sym_cap = 0;
        int r;

        cps = malloc(len * sizeof(*cps));
        offsets = malloc((len + 1) * sizeof(*offsets));
        if (!cps || !offsets)
                return -ENOMEM;
        for (size_t i = 0; i < len;) {
                offsets[n_cp] = i;
                i += utf8_next((const uint8_t *) text + i, len - i, &cps[n_cp]);
                n_cp++;
        }
        offsets[n_cp] = len;

        c = (struct cp_text) { .cp = cps, .n = n_cp };
        for (size_t pos = 0; pos < n_cp;) {
                size_t end;

                switch (t->pre) {
                case TOKENIZER_PRE_LLAMA3:
                        end = split_llama3(&c, pos, 3);
                        break;
                case TOKENIZER_PRE_QWEN2:
                        end = split_llama3(&c, pos, 1);
                        break;
                default:
                        end = split_gpt2(&c, pos);
                        break;
                }

                r = bpe_encode_word(t, text + offsets[pos], offsets[end] - offsets[pos], &mapped, &sym, &sym_cap,
                                    out);
                if (r < 0)
                        return r;
                pos = end;
        }
        return 0;
}

/* ---- encoding ----------------------------------------------------------- */

/* The longest control or user-defined token at text[pos], or NULL. */
static const struct special *match_special(const struct tokenizer *t, const char *text, size_t len, size_t pos) {
        uint8_t b = (uint8_t) text[pos];

        for (size_t i = t->special_start[b]; i < t->special_start[b + 1]; i++) {
                const struct special *s = &t->specials[i];

                if (s->len <= len - pos && memcmp(text + pos, t->pieces[s->id], s->len) == 0)
                        return s;
        }
        return NULL;
}

static int encode_fragment(const struct tokenizer *t, const char *text, size_t len, struct id_vec *out) {
        if (len == 0)
                return 0;
        if (t->kind == TOKENIZER_SPM)
                /* SentencePiece puts the space where a text starts; llama.cpp
                 * also after each special token, so every fragment gets it. */
                return spm_encode_fragment(t, text, len, t->add_space_prefix, out);
        return bpe_encode_fragment(t, text, len, out);
}

int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                     int32_t **ret, size_t *n_ret) {
        _cleanup_(id_vec_done) struct id_vec out = {};
        size_t start = 0;
        int r;

        if (!t || (!text && len > 0) || !ret || !n_ret)
                return -EINVAL;

        /* Room for one id: an empty result is still a malloc'd array. */
        r = id_vec_push(&out, 0);
        if (r < 0)
                return r;
        out.n = 0;

        if (add_bos && t->bos >= 0) {
                r = id_vec_push(&out, t->bos);
                if (r < 0)
                        return r;
        }

        for (size_t pos = 0; parse_special && pos < len;) {
                const struct special *s = match_special(t, text, len, pos);

                if (!s) {
                        pos++;
                        continue;
                }
                r = encode_fragment(t, text + start, pos - start, &out);
                if (r < 0)
                        return r;
                r = id_vec_push(&out, s->id);
                if (r < 0)
                        return r;
                pos += s->len;
                start = pos;
        }
        r = encode_fragment(t, text + start, len - start, &out);
        if (r < 0)
                return r;

        *n_ret = out.n;
        *ret = TAKE_PTR(out.v);
        return 0;
}

/* ---- decoding ----------------------------------------------------------- */

static int hex_digit(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1;
}

/* "<0xNN>": the byte, or -1. */
static int parse_byte_piece(const char *s, size_t n) {
        int hi, lo;

        if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
                return -1;
        hi = hex_digit(s[3]);
        lo = hex_digit(s[4]);
        if (hi < 0 || lo < 0)
                return -1;
        return hi << 4 | lo;
}

/* Writes the bytes of the token to out when out is not NULL; returns how
 * many there are. */
static size_t decode_piece(const struct tokenizer *t, int32_t token, bool render_special, char *out) {
        const char *s = t->pieces[token];
        size_t n = t->lens[token], k = 0;
        int byte;

        switch (t->types[token]) {
        case TOKEN_TYPE_CONTROL:
        case TOKEN_TYPE_UNUSED:
                if (!render_special)
                        return 0;
                _fallthrough_;
        case TOKEN_TYPE_USER_DEFINED:
                /* Added tokens are stored as their text, not escaped. */
                if (out)
                        memcpy(out, s, n);
                return n;
        case TOKEN_TYPE_UNKNOWN:
                if (render_special) {
                        if (out)
                                memcpy(out, s, n);
                        return n;
                }
                if (out)
                        memcpy(out, REPLACEMENT_CHAR, strlen(REPLACEMENT_CHAR));
                return strlen(REPLACEMENT_CHAR);
        case TOKEN_TYPE_BYTE:
                byte = parse_byte_piece(s, n);
                if (byte >= 0) {
                        if (out)
                                out[0] = (char) byte;
                        return 1;
                }
                break;
        default:
                break;
        }

        if (t->kind == TOKENIZER_SPM) {
                for (size_t i = 0; i < n;) {
                        if (n - i >= SPM_SPACE_LEN && memcmp(s + i, SPM_SPACE, SPM_SPACE_LEN) == 0) {
                                if (out)
                                        out[k] = ' ';
                                k++;
                                i += SPM_SPACE_LEN;
                        } else {
                                if (out)
                                        out[k] = s[i];
                                k++;
                                i++;
                        }
                }
                return k;
        }

        for (size_t i = 0; i < n;) {
                uint32_t cp;
                size_t len = utf8_next((const uint8_t *) s + i, n - i, &cp);

                if (cp < BPE_CP_MAX && t->cp_to_byte[cp] >= 0) {
                        if (out)
                                out[k] = (char) t->cp_to_byte[cp];
                        k++;
                } else {
                        /* Not one of the byte code points: the piece's own text. */
                        if (out)
                                memcpy(out + k, s + i, len);
                        k += len;
                }
                i += len;
        }
        return k;
}

int tokenizer_decode_token(const struct tokenizer *t, int32_t token, bool render_special, char *buf, size_t size) {
        size_t n;

        if (!t || token < 0 || (size_t) token >= t->n_vocab)
                return -EINVAL;
        n = decode_piece(t, token, render_special, NULL);
        if (n <= size && n > 0) {
                if (!buf)
                        return -EINVAL;
                decode_piece(t, token, render_special, buf);
        }
        return (int) n;
}

int tokenizer_decode(const struct tokenizer *t, const int32_t *tokens, size_t n, bool strip_leading_space,
                     char **ret) {
        _cleanup_(byte_buf_done) struct byte_buf b = {};
        int r;

        if (!t || (!tokens && n > 0) || !ret)
                return -EINVAL;

        r = byte_buf_reserve(&b, 1);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                size_t k;

                if (tokens[i] < 0 || (size_t) tokens[i] >= t->n_vocab)
                        return -EINVAL;
                k = decode_piece(t, tokens[i], false, NULL);
                r = byte_buf_reserve(&b, k + 1);
                if (r < 0)
                        return r;
                decode_piece(t, tokens[i], false, b.p + b.n);
                b.n += k;
        }
        b.p[b.n] = '\0';

        if (strip_leading_space && t->kind == TOKENIZER_SPM && t->add_space_prefix && b.p[0] == ' ')
                memmove(b.p, b.p + 1, b.n);

        *ret = TAKE_PTR(b.p);
        return 0;
}

/* ---- construction ------------------------------------------------------- */

void tokenizer_free(struct tokenizer *t) {
        if (!t)
                return;
        free(t->text);
        free(t->pieces);
        free(t->lens);
        free(t->scores);
        free(t->types);
        free(t->vocab_slots);
        free(t->merge_slots);
        free(t->specials);
        free(t);
}

static void tokenizer_freep(struct tokenizer **t) {
        tokenizer_free(*t);
}

static int check_special_id(int32_t id, const char *what, size_t n_vocab, char *err, size_t err_size) {
        if (id < -1 || (id >= 0 && (size_t) id >= n_vocab)) {
                nn_error(err, err_size, 0, "%s token id %d is outside the vocabulary of %zu tokens", what, id, n_vocab);
                return -EINVAL;
        }
        return 0;
}

static int build_vocab(struct tokenizer *t, const struct tokenizer_spec *spec, char *err, size_t err_size) {
        size_t total = 0, off = 0, size;

        for (size_t i = 0; i < spec->n_vocab; i++) {
                size_t n;

                if (!spec->tokens[i]) {
                        nn_error(err, err_size, 0, "token %zu has no text", i);
                        return -EINVAL;
                }
                n = strlen(spec->tokens[i]);
                if (n > UINT32_MAX / 2 || total > SIZE_MAX - n - 1)
                        return -ENOMEM;
                total += n + 1;
        }

        t->text = malloc(total);
        t->pieces = calloc(spec->n_vocab, sizeof(*t->pieces));
        t->lens = calloc(spec->n_vocab, sizeof(*t->lens));
        t->types = calloc(spec->n_vocab, sizeof(*t->types));
        t->scores = calloc(spec->n_vocab, sizeof(*t->scores));
        size = table_size_for(spec->n_vocab);
        t->vocab_slots = malloc(size * sizeof(*t->vocab_slots));
        if (!t->text || !t->pieces || !t->lens || !t->types || !t->scores || !t->vocab_slots)
                return -ENOMEM;
        t->vocab_mask = size - 1;
        memset(t->vocab_slots, 0xff, size * sizeof(*t->vocab_slots));

        for (size_t i = 0; i < spec->n_vocab; i++) {
                size_t n = strlen(spec->tokens[i]);
                int32_t type = spec->types ? spec->types[i] : TOKEN_TYPE_NORMAL;
                size_t slot;

                memcpy(t->text + off, spec->tokens[i], n + 1);
                t->pieces[i] = t->text + off;
                t->lens[i] = (uint32_t) n;
                off += n + 1;

                /* 0 is what llama.cpp calls undefined: a normal piece. */
                if (type == 0)
                        type = TOKEN_TYPE_NORMAL;
                if (type < TOKEN_TYPE_NORMAL || type > TOKEN_TYPE_BYTE) {
                        nn_error(err, err_size, 0, "token %zu has the unknown type %d", i, type);
                        return -EINVAL;
                }
                t->types[i] = (uint8_t) type;
                /* A NaN would make the merge order depend on the heap's
                 * history: such a piece is merged last. */
                if (spec->scores)
                        t->scores[i] = isnan(spec->scores[i]) ? -FLT_MAX : spec->scores[i];

                /* Some vocabularies pad with empty pieces: nothing finds them. */
                if (n == 0)
                        continue;
                for (slot = hash_bytes(t->pieces[i], n) & t->vocab_mask; t->vocab_slots[slot] >= 0;
                     slot = (slot + 1) & t->vocab_mask) {
                        int32_t other = t->vocab_slots[slot];

                        if (t->lens[other] == n && memcmp(t->pieces[other], t->pieces[i], n) == 0) {
                                nn_error(err, err_size, 0, "token %zu duplicates token %d ('%.40s')", i, other,
                                       t->pieces[i]);
                                return -EINVAL;
                        }
                }
                t->vocab_slots[slot] = (int32_t) i;
        }
        return 0;
}

static int build_merges(struct tokenizer *t, const char *const *merges, size_t n_merges, char *err,
                        size_t err_size) {
        _cleanup_(byte_buf_done) struct byte_buf joined = {};
        size_t size = table_size_for(n_merges);
        int r;

        if (n_merges > INT32_MAX) {
                nn_error(err, err_size, 0, "%zu merges are too many", n_merges);
                return -EINVAL;
        }
        if (n_merges > 0 && !merges) {
                nn_error(err, err_size, 0, "%zu merges but no merge list", n_merges);
                return -EINVAL;
        }
        t->merge_slots = malloc(size * sizeof(*t->merge_slots));
        if (!t->merge_slots)
                return -ENOMEM;
        t->merge_mask = size - 1;
        for (size_t i = 0; i < size; i++)
                t->merge_slots[i].key = UINT64_MAX;

        for (size_t i = 0; i < n_merges; i++) {
                const char *m = merges[i], *sp;
                int32_t left, right, result;
                uint64_t key;
                size_t slot;

                /* The separator is the first space after the first byte,
                 * as in llama.cpp (byte-level pieces hold no raw space). */
                sp = m && m[0] ? strchr(m + 1, ' ') : NULL;
                if (!sp || !sp[1]) {
                        nn_error(err, err_size, 0, "merge %zu ('%.40s') is not two pieces separated by a space", i,
                               m ? m : "");
                        return -EINVAL;
                }
                left = vocab_lookup(t, m, (size_t) (sp - m));
                right = vocab_lookup(t, sp + 1, strlen(sp + 1));
                if (left < 0 || right < 0) {
                        nn_error(err, err_size, 0, "merge %zu ('%.40s') names a piece not in the vocabulary", i, m);
                        return -EINVAL;
                }
                /* "a b" without its space is the piece the merge makes. */
                r = byte_buf_reserve(&joined, strlen(m));
                if (r < 0)
                        return r;
                joined.n = (size_t) (sp - m);
                memcpy(joined.p, m, joined.n);
                memcpy(joined.p + joined.n, sp + 1, strlen(sp + 1));
                joined.n += strlen(sp + 1);
                result = vocab_lookup(t, joined.p, joined.n);
                joined.n = 0;
                if (result < 0) {
                        nn_error(err, err_size, 0, "merge %zu ('%.40s') makes a piece not in the vocabulary", i, m);
                        return -EINVAL;
                }

                key = (uint64_t) (uint32_t) left << 32 | (uint32_t) right;
                for (slot = hash_u64(key) & t->merge_mask; t->merge_slots[slot].key != UINT64_MAX;
                     slot = (slot + 1) & t->merge_mask)
                        if (t->merge_slots[slot].key == key)
                                break;
                /* A repeated pair keeps its first (best) rank. */
                if (t->merge_slots[slot].key == key)
                        continue;
                t->merge_slots[slot] = (struct merge_slot) { .key = key, .rank = (int32_t) i, .result = result };
        }
        return 0;
}

/* By first byte, then longest first, so that a match is the longest. */
static int special_cmp(const void *a, const void *b) {
        const struct special *x = a, *y = b;

        if (x->first != y->first)
                return x->first < y->first ? -1 : 1;
        if (x->len != y->len)
                return x->len > y->len ? -1 : 1;
        return x->id < y->id ? -1 : x->id > y->id;
}

static int build_specials(struct tokenizer *t) {
        size_t n = 0, k = 0;

        for (size_t i = 0; i < t->n_vocab; i++)
                if ((t->types[i] == TOKEN_TYPE_CONTROL || t->types[i] == TOKEN_TYPE_USER_DEFINED) && t->lens[i] > 0)
                        n++;
        t->specials = calloc(n ? n : 1, sizeof(*t->specials));
        if (!t->specials)
                return -ENOMEM;
        for (size_t i = 0; i < t->n_vocab; i++)
                if ((t->types[i] == TOKEN_TYPE_CONTROL || t->types[i] == TOKEN_TYPE_USER_DEFINED) && t->lens[i] > 0)
                        t->specials[k++] = (struct special) {
                                .id = (int32_t) i,
                                .len = t->lens[i],
                                .first = (uint8_t) t->pieces[i][0],
                        };
        qsort(t->specials, n, sizeof(*t->specials), special_cmp);

        k = 0;
        for (size_t b = 0; b < 256; b++) {
                t->special_start[b] = k;
                while (k < n && t->specials[k].first == b)
                        k++;
        }
        t->special_start[256] = n;
        return 0;
}

static void add_eog(struct tokenizer *t, int32_t id) {
        if (id < 0 || t->n_eog >= ELEMENTSOF(t->eog))
                return;
        for (size_t i = 0; i < t->n_eog; i++)
                if (t->eog[i] == id)
                        return;
        t->eog[t->n_eog++] = id;
}

static void build_byte_maps(struct tokenizer *t) {
        uint32_t extra = 0;
        char buf[8];

        for (size_t i = 0; i < ELEMENTSOF(t->cp_to_byte); i++)
                t->cp_to_byte[i] = -1;
        /* GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for
         * themselves, the rest move to U+0100 onwards in order. */
        for (uint32_t b = 0; b < 256; b++) {
                bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
                uint32_t cp = printable ? b : 256 + extra++;

                t->byte_to_cp[b] = cp;
                t->cp_to_byte[cp] = (int16_t) b;
                t->byte_symbol[b] = text_lookup(t, buf, utf8_encode(cp, buf));

                snprintf(buf, sizeof(buf), "<0x%02X>", b);
                t->byte_token[b] = vocab_lookup(t, buf, 6);
                if (t->byte_token[b] >= 0 && t->types[t->byte_token[b]] != TOKEN_TYPE_BYTE)
                        /* Only a byte token decodes back to its byte. */
                        t->byte_token[b] = -1;
        }
}

int tokenizer_new(const struct tokenizer_spec *spec, struct tokenizer **ret, char *err, size_t err_size) {
        _cleanup_(tokenizer_freep) struct tokenizer *t = NULL;
        static const char *const eog_names[] = {
                "<|eot_id|>", "<|im_end|>", "<|end|>", "<|endoftext|>", "</s>",
        };
        int r;

        if (!spec || !ret)
                return -EINVAL;
        if (spec->kind != TOKENIZER_SPM && spec->kind != TOKENIZER_BPE) {
                nn_error(err, err_size, 0, "unknown tokenizer kind %d", (int) spec->kind);
                return -EINVAL;
        }
        if (spec->pre != TOKENIZER_PRE_DEFAULT && spec->pre != TOKENIZER_PRE_LLAMA3 &&
            spec->pre != TOKENIZER_PRE_QWEN2) {
                nn_error(err, err_size, 0, "unknown pre-tokenizer %d", (int) spec->pre);
                return -EINVAL;
        }
        if (spec->n_vocab == 0 || !spec->tokens) {
                nn_error(err, err_size, 0, "the vocabulary is empty");
                return -EINVAL;
        }
        if (spec->n_vocab > INT32_MAX) {
                nn_error(err, err_size, 0, "a vocabulary of %zu tokens is too large", spec->n_vocab);
                return -EINVAL;
        }
        if (spec->kind == TOKENIZER_SPM && !spec->scores) {
                nn_error(err, err_size, 0, "a SentencePiece vocabulary needs scores");
                return -EINVAL;
        }
        if ((r = check_special_id(spec->bos, "BOS", spec->n_vocab, err, err_size)) < 0 ||
            (r = check_special_id(spec->eos, "EOS", spec->n_vocab, err, err_size)) < 0 ||
            (r = check_special_id(spec->eot, "EOT", spec->n_vocab, err, err_size)) < 0 ||
            (r = check_special_id(spec->unk, "unknown", spec->n_vocab, err, err_size)) < 0 ||
            (r = check_special_id(spec->pad, "padding", spec->n_vocab, err, err_size)) < 0)
                return r;

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        *t = (struct tokenizer) {
                .kind = spec->kind,
                .pre = spec->pre,
                .n_vocab = spec->n_vocab,
                .bos = spec->bos,
                .eos = spec->eos,
                .eot = spec->eot,
                .unk = spec->unk,
                .pad = spec->pad,
                .add_bos = spec->add_bos,
                .add_space_prefix = spec->kind == TOKENIZER_SPM && spec->add_space_prefix,
                .ignore_merges = spec->kind == TOKENIZER_BPE && spec->pre == TOKENIZER_PRE_LLAMA3,
        };

        r = build_vocab(t, spec, err, err_size);
        if (r < 0)
                return r;
        /* SentencePiece merges by score: any merge list is not its own. */
        if (spec->kind == TOKENIZER_BPE)
                r = build_merges(t, spec->merges, spec->n_merges, err, err_size);
        else
                r = build_merges(t, NULL, 0, err, err_size);
        if (r < 0)
                return r;
        r = build_specials(t);
        if (r < 0)
                return r;
        build_byte_maps(t);

        add_eog(t, t->eos);
        add_eog(t, t->eot);
        for (size_t i = 0; i < ELEMENTSOF(eog_names); i++) {
                int32_t id = vocab_lookup(t, eog_names[i], strlen(eog_names[i]));

                if (id >= 0 && t->types[id] == TOKEN_TYPE_CONTROL)
                        add_eog(t, id);
        }

        *ret = TAKE_PTR(t);
        return 0;
}

/* ---- GGUF --------------------------------------------------------------- */

struct gguf_vocab {
        char *text;
        const char **tokens;
        float *scores;
        int32_t *types;
        char *merge_text;
        const char **merges;
};

static void gguf_vocab_done(struct gguf_vocab *v) {
        free(v->text);
        free(v->tokens);
        free(v->scores);
        free(v->types);
        free(v->merge_text);
        free(v->merges);
}

/* NUL-terminated copies of a string array, all in one block. */
static int copy_strings(const struct gguf *g, const char *key, char **ret_text, const char ***ret_strv,
                        uint64_t *ret_n, char *err, size_t err_size) {
        _cleanup_free_ char *text = NULL;
        _cleanup_free_ const char **strv = NULL;
        enum gguf_value_type type;
        const struct gguf_string *s;
        const void *data;
        uint64_t n;
        size_t total = 0, off = 0;
        int r;

        r = gguf_get_array(g, key, &type, &n, &data);
        if (r == -ENOENT) {
                nn_error(err, err_size, 0, "%s: no %s", gguf_path(g), key);
                return r;
        }
        if (r < 0 || type != GGUF_TYPE_STRING) {
                nn_error(err, err_size, 0, "%s: %s is not an array of strings", gguf_path(g), key);
                return -EBADMSG;
        }
        if (n > SIZE_MAX / sizeof(char *))
                return -ENOMEM;
        s = data;
        for (uint64_t i = 0; i < n; i++) {
                if (memchr(s[i].data, '\0', s[i].len)) {
                        nn_error(err, err_size, 0, "%s: %s[%" PRIu64 "] contains a NUL byte", gguf_path(g), key, i);
                        return -EBADMSG;
                }
                if (s[i].len > SIZE_MAX - total - 1)
                        return -ENOMEM;
                total += s[i].len + 1;
        }
        text = malloc(total ? total : 1);
        strv = calloc(n ? n : 1, sizeof(*strv));
        if (!text || !strv)
                return -ENOMEM;
        for (uint64_t i = 0; i < n; i++) {
                memcpy(text + off, s[i].data, s[i].len);
                text[off + s[i].len] = '\0';
                strv[i] = text + off;
                off += s[i].len + 1;
        }
        *ret_text = TAKE_PTR(text);
        *ret_strv = TAKE_PTR(strv);
        *ret_n = n;
        return 0;
}

/* A numeric array of exactly n entries; -ENOENT when absent. */
static int get_numeric_array(const struct gguf *g, const char *key, uint64_t n_expected,
                             enum gguf_value_type *ret_type, const void **ret_data, char *err, size_t err_size) {
        enum gguf_value_type type;
        const void *data;
        uint64_t n;
        int r;

        r = gguf_get_array(g, key, &type, &n, &data);
        if (r == -ENOENT)
                return r;
        if (r < 0 || type == GGUF_TYPE_STRING || type == GGUF_TYPE_ARRAY || type == GGUF_TYPE_BOOL) {
                nn_error(err, err_size, 0, "%s: %s is not a numeric array", gguf_path(g), key);
                return -EBADMSG;
        }
        if (n != n_expected) {
                nn_error(err, err_size, 0, "%s: %s has %" PRIu64 " entries for %" PRIu64 " tokens", gguf_path(g), key,
                       n, n_expected);
                return -EBADMSG;
        }
        *ret_type = type;
        *ret_data = data;
        return 0;
}

/* A token id key; stays at *ret (-1) when absent. */
static int get_token_id(const struct gguf *g, const char *key, int32_t *ret, char *err, size_t err_size) {
        uint64_t v;
        int r;

        r = gguf_get_u64(g, key, &v);
        if (r == -ENOENT)
                return 0;
        if (r < 0 || v > INT32_MAX) {
                nn_error(err, err_size, 0, "%s: %s is not a token id", gguf_path(g), key);
                return -EBADMSG;
        }
        *ret = (int32_t) v;
        return 0;
}

static int get_flag(const struct gguf *g, const char *key, bool *ret, char *err, size_t err_size) {
        int r = gguf_get_bool(g, key, ret);

        if (r == -ENOENT)
                return 0;
        if (r < 0) {
                nn_error(err, err_size, 0, "%s: %s is not a boolean", gguf_path(g), key);
                return -EBADMSG;
        }
        return 0;
}

int tokenizer_load(const struct gguf *g, struct tokenizer **ret, char *err, size_t err_size) {
        _cleanup_(gguf_vocab_done) struct gguf_vocab v = {};
        struct tokenizer_spec spec = {
                .bos = -1, .eos = -1, .eot = -1, .unk = -1, .pad = -1,
        };
        struct gguf_string s;
        enum gguf_value_type type;
        const void *data;
        uint64_t n_vocab, n_merges;
        int r;

        if (!g || !ret)
                return -EINVAL;

        r = gguf_get_string(g, "tokenizer.ggml.model", &s);
        if (r < 0) {
                nn_error(err, err_size, 0, "%s: %s", gguf_path(g),
                       r == -ENOENT ? "no tokenizer.ggml.model: the file has no tokenizer"
                                    : "tokenizer.ggml.model is not a string");
                return r == -ENOENT ? r : -EBADMSG;
        }
        if (gguf_string_eq(s, "llama"))
                spec.kind = TOKENIZER_SPM;
        else if (gguf_string_eq(s, "gpt2"))
                spec.kind = TOKENIZER_BPE;
        else {
                nn_error(err, err_size, 0, "%s: the tokenizer model '%.*s' is not supported (only 'llama' and 'gpt2')",
                       gguf_path(g), (int) (s.len > 64 ? 64 : s.len), s.data);
                return -EOPNOTSUPP;
        }

        if (spec.kind == TOKENIZER_BPE) {
                r = gguf_get_string(g, "tokenizer.ggml.pre", &s);
                if (r == -ENOENT || (r >= 0 && (gguf_string_eq(s, "default") || gguf_string_eq(s, "gpt2"))))
                        spec.pre = TOKENIZER_PRE_DEFAULT;
                else if (r < 0) {
                        nn_error(err, err_size, 0, "%s: tokenizer.ggml.pre is not a string", gguf_path(g));
                        return -EBADMSG;
                } else if (gguf_string_eq(s, "llama-bpe") || gguf_string_eq(s, "llama3"))
                        spec.pre = TOKENIZER_PRE_LLAMA3;
                else if (gguf_string_eq(s, "qwen2"))
                        spec.pre = TOKENIZER_PRE_QWEN2;
                else {
                        nn_error(err, err_size, 0,
                               "%s: the pre-tokenizer '%.*s' is not supported (only 'llama-bpe', 'qwen2' and 'gpt2')",
                               gguf_path(g), (int) (s.len > 64 ? 64 : s.len), s.data);
                        return -EOPNOTSUPP;
                }
        }

        r = copy_strings(g, "tokenizer.ggml.tokens", &v.text, &v.tokens, &n_vocab, err, err_size);
        if (r < 0)
                return r == -ENOENT ? -EBADMSG : r;
        if (n_vocab == 0 || n_vocab > INT32_MAX) {
                nn_error(err, err_size, 0, "%s: tokenizer.ggml.tokens has %" PRIu64 " tokens", gguf_path(g), n_vocab);
                return -EBADMSG;
        }
        spec.n_vocab = (size_t) n_vocab;
        spec.tokens = v.tokens;

        r = get_numeric_array(g, "tokenizer.ggml.scores", n_vocab, &type, &data, err, err_size);
        if (r == -ENOENT && spec.kind == TOKENIZER_SPM) {
                nn_error(err, err_size, 0, "%s: no tokenizer.ggml.scores for a SentencePiece vocabulary", gguf_path(g));
                return -EBADMSG;
        }
        if (r < 0 && r != -ENOENT)
                return r;
        if (r >= 0) {
                v.scores = malloc(n_vocab * sizeof(*v.scores));
                if (!v.scores)
                        return -ENOMEM;
                for (uint64_t i = 0; i < n_vocab; i++)
                        v.scores[i] = (float) gguf_array_f64(type, data, i);
                spec.scores = v.scores;
        }

        r = get_numeric_array(g, "tokenizer.ggml.token_type", n_vocab, &type, &data, err, err_size);
        if (r < 0 && r != -ENOENT)
                return r;
        if (r >= 0) {
                v.types = malloc(n_vocab * sizeof(*v.types));
                if (!v.types)
                        return -ENOMEM;
                for (uint64_t i = 0; i < n_vocab; i++) {
                        int64_t x = gguf_array_i64(type, data, i);

                        v.types[i] = x < INT32_MIN || x > INT32_MAX ? -1 : (int32_t) x;
                }
                spec.types = v.types;
        }

        if (spec.kind == TOKENIZER_BPE) {
                r = copy_strings(g, "tokenizer.ggml.merges", &v.merge_text, &v.merges, &n_merges, err, err_size);
                if (r < 0)
                        return r == -ENOENT ? -EBADMSG : r;
                spec.n_merges = (size_t) n_merges;
                spec.merges = v.merges;
        }

        if ((r = get_token_id(g, "tokenizer.ggml.bos_token_id", &spec.bos, err, err_size)) < 0 ||
            (r = get_token_id(g, "tokenizer.ggml.eos_token_id", &spec.eos, err, err_size)) < 0 ||
            (r = get_token_id(g, "tokenizer.ggml.eot_token_id", &spec.eot, err, err_size)) < 0 ||
            (r = get_token_id(g, "tokenizer.ggml.unknown_token_id", &spec.unk, err, err_size)) < 0 ||
            (r = get_token_id(g, "tokenizer.ggml.padding_token_id", &spec.pad, err, err_size)) < 0)
                return r;
        /* Some converters write a padding id past the vocabulary; nothing
         * here uses it, so it is dropped rather than refusing the model. */
        if (spec.pad >= 0 && (uint64_t) spec.pad >= n_vocab)
                spec.pad = -1;

        /* llama.cpp's defaults: SentencePiece and Llama 3 start with BOS. */
        spec.add_bos = spec.kind == TOKENIZER_SPM || spec.pre == TOKENIZER_PRE_LLAMA3;
        spec.add_space_prefix = spec.kind == TOKENIZER_SPM;
        if ((r = get_flag(g, "tokenizer.ggml.add_bos_token", &spec.add_bos, err, err_size)) < 0 ||
            (r = get_flag(g, "tokenizer.ggml.add_space_prefix", &spec.add_space_prefix, err, err_size)) < 0)
                return r;

        r = tokenizer_new(&spec, ret, err, err_size);
        if (r == -EINVAL)
                /* The spec came from the file: it is the file that is wrong. */
                return -EBADMSG;
        return r;
}

/* ---- accessors ---------------------------------------------------------- */

enum tokenizer_kind tokenizer_kind(const struct tokenizer *t) {
        return t->kind;
}

size_t tokenizer_n_vocab(const struct tokenizer *t) {
        return t->n_vocab;
}

int32_t tokenizer_bos(const struct tokenizer *t) {
        return t->bos;
}

int32_t tokenizer_eos(const struct tokenizer *t) {
        return t->eos;
}

int32_t tokenizer_eot(const struct tokenizer *t) {
        return t->eot;
}

bool tokenizer_add_bos(const struct tokenizer *t) {
        return t->add_bos;
}

bool tokenizer_is_eog(const struct tokenizer *t, int32_t token) {
        if (!t || token < 0)
                return false;
        for (size_t i = 0; i < t->n_eog; i++)
                if (t->eog[i] == token)
                        return true;
        return false;
}

const char *tokenizer_piece(const struct tokenizer *t, int32_t token) {
        if (!t || token < 0 || (size_t) token >= t->n_vocab)
                return NULL;
        return t->pieces[token];
}

int32_t tokenizer_find(const struct tokenizer *t, const char *piece) {
        if (!t || !piece)
                return -1;
        return vocab_lookup(t, piece, strlen(piece));
}

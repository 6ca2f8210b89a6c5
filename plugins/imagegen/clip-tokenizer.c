/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CLIP's tokenizer (clip-tokenizer.h).  Pieces are vocabulary ids from the
 * start: the 256 byte stand-ins and their "</w>" forms are looked up once,
 * and a merge maps a pair of ids to its rank and the id of the joined
 * piece (every merge's parts and result must be in the vocabulary, as in
 * CLIP's, where the vocabulary is made of the merges).
 *
 * A word is merged through a heap of candidate pairs ordered by (rank,
 * position), in rounds: all the places of the lowest-ranked pair are
 * merged left to right before the pairs those merges make join the heap.
 * That is the reference's loop exactly (min over the pairs, then every
 * occurrence of it left to right), whatever order the merges file has, in
 * O(n log n) for a word of n bytes instead of O(n²), so a prompt of one
 * enormous word costs no more than its length. */

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clip-tokenizer.h"
#include "clip-unicode.h"
#include "nn-error.h"

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

#define END_OF_WORD "</w>"
#define BOS_PIECE "<|startoftext|>"
#define EOS_PIECE "<|endoftext|>"

/* Tokenizer files far larger than CLIP's (1.6 MB and 0.5 MB) are refused
 * before they are read. */
#define FILE_MAX (64u << 20)
/* Ids are int32_t and ranks fit a merge key's 32 bits. */
#define VOCAB_MAX (1u << 24)

struct merge_slot {
        uint64_t key;                   /* left id << 32 | right id; UINT64_MAX: empty */
        uint32_t rank;
        int32_t result;
};

struct clip_tokenizer {
        size_t n_vocab;
        char **pieces;                  /* [n_vocab], into arena */
        size_t *lens;
        char *arena;
        int32_t *vocab_slots;           /* open addressing on the piece's bytes; -1: empty */
        size_t vocab_mask;
        struct merge_slot *merge_slots;
        size_t merge_mask;
        size_t n_merges;
        int32_t byte_id[256];           /* a byte's stand-in */
        int32_t byte_end_id[256];       /* … with "</w>": a word's last byte */
        int32_t bos, eos;
};

/* ---- hashing ------------------------------------------------------------ */

static uint64_t hash_bytes(const char *s, size_t n) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);     /* FNV-1a */

        for (size_t i = 0; i < n; i++) {
                h ^= (uint8_t) s[i];
                h *= UINT64_C(0x100000001b3);
        }
        return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
        x ^= x >> 33;
        x *= UINT64_C(0xff51afd7ed558ccd);
        x ^= x >> 33;
        x *= UINT64_C(0xc4ceb9fe1a85ec53);
        return x ^ (x >> 33);
}

static size_t table_size(size_t n) {
        size_t s = 16;

        while (s < 2 * n)
                s *= 2;
        return s;
}

static int32_t vocab_lookup(const struct clip_tokenizer *t, const char *s, size_t n) {
        for (size_t i = hash_bytes(s, n) & t->vocab_mask;; i = (i + 1) & t->vocab_mask) {
                int32_t id = t->vocab_slots[i];

                if (id < 0)
                        return -1;
                if (t->lens[id] == n && memcmp(t->pieces[id], s, n) == 0)
                        return id;
        }
}

static const struct merge_slot *merge_lookup(const struct clip_tokenizer *t, int32_t left, int32_t right) {
        uint64_t key = (uint64_t) (uint32_t) left << 32 | (uint32_t) right;

        for (size_t i = hash_u64(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
                const struct merge_slot *m = &t->merge_slots[i];

                if (m->key == key)
                        return m;
                if (m->key == UINT64_MAX)
                        return NULL;
        }
}

/* ---- UTF-8 and Unicode classes ----------------------------------------- */

/* The code point at s[0 … n), n > 0, into *cp; its length, or 0 when the
 * bytes there are not valid UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF). */
static size_t utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
        uint32_t c = s[0], min;
        size_t len;

        if (c < 0x80) {
                *cp = c;
                return 1;
        }
        if (c >= 0xc2 && c <= 0xdf) {
                len = 2;
                c &= 0x1f;
                min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
                len = 3;
                c &= 0x0f;
                min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
                len = 4;
                c &= 0x07;
                min = 0x10000;
        } else
                return 0;
        if (n < len)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                c = c << 6 | (s[i] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
                return 0;
        *cp = c;
        return len;
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

static bool in_ranges(const struct clip_cp_range *r, size_t n, uint32_t cp) {
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
        return in_ranges(clip_space_ranges, ELEMENTSOF(clip_space_ranges), cp);
}

/* In none of the pre-tokenizer's classes (see clip-unicode.h): skipped
 * like white space, but not collapsed by the cleanup. */
static bool cp_is_unmatched(uint32_t cp) {
        return cp >= 0x80 && in_ranges(clip_unmatched_ranges, ELEMENTSOF(clip_unmatched_ranges), cp);
}

static bool cp_is_letter(uint32_t cp) {
        if (cp < 0x80)
                return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
        return in_ranges(clip_letter_ranges, ELEMENTSOF(clip_letter_ranges), cp);
}

static bool cp_is_number(uint32_t cp) {
        if (cp < 0x80)
                return cp >= '0' && cp <= '9';
        return in_ranges(clip_number_ranges, ELEMENTSOF(clip_number_ranges), cp);
}

/* str.lower() of one code point, but for U+0130, whose lower case is two
 * (the caller's business). */
static uint32_t cp_lower(uint32_t cp) {
        size_t lo = 0, hi = ELEMENTSOF(clip_lower_runs);

        if (cp < 0x80)
                return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                const struct clip_case_run *r = &clip_lower_runs[mid];

                if (cp < r->first)
                        hi = mid;
                else if (cp > r->last)
                        lo = mid + 1;
                else
                        return (cp - r->first) % r->stride == 0 ? (uint32_t) ((int32_t) cp + r->delta) : cp;
        }
        return cp;
}

/* GPT-2's bytes_to_unicode(): the printable Latin-1 bytes stand for
 * themselves, the others for U+0100 onwards in byte order. */
static uint32_t byte_stand_in(uint8_t b) {
        uint32_t next = 0x100;

        if ((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae)
                return b;
        for (unsigned c = 0; c < b; c++)
                if (!((c >= '!' && c <= '~') || (c >= 0xa1 && c <= 0xac) || c >= 0xae))
                        next++;
        return next;
}

/* ---- loading ------------------------------------------------------------ */

static int read_file(const char *path, char **ret, size_t *ret_size, char *err, size_t err_size) {
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        size_t got = 0;
        int fd, r = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return nn_error(err, err_size, -errno, "%s: %s", path, strerror(errno));
        if (fstat(fd, &st) < 0) {
                r = nn_error(err, err_size, -errno, "%s: %s", path, strerror(errno));
                goto out;
        }
        if (!S_ISREG(st.st_mode) || st.st_size > (off_t) FILE_MAX) {
                r = nn_error(err, err_size, -EFBIG, "%s: %s", path,
                             S_ISREG(st.st_mode) ? "larger than 64 MiB, not a CLIP tokenizer file"
                                                 : "not a regular file");
                goto out;
        }
        buf = malloc((size_t) st.st_size + 1);
        if (!buf) {
                r = nn_error(err, err_size, -ENOMEM, "%s: out of memory", path);
                goto out;
        }
        while (got < (size_t) st.st_size) {
                ssize_t k = read(fd, buf + got, (size_t) st.st_size - got);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        r = nn_error(err, err_size, k < 0 ? -errno : -EIO, "%s: %s", path,
                                     k < 0 ? strerror(errno) : "shorter than its size");
                        goto out;
                }
                got += (size_t) k;
        }
        buf[got] = '\0';
        *ret_size = got;
        *ret = TAKE_PTR(buf);
out:
        close(fd);
        return r;
}

/* Line and column (from 1) of byte off of text. */
static void text_position(const char *text, size_t off, size_t *line, size_t *col) {
        const char *nl;

        *line = 1;
        *col = off + 1;
        for (const char *p = text; (nl = memchr(p, '\n', (size_t) (text + off - p))); p = nl + 1) {
                (*line)++;
                *col = (size_t) (text + off - nl);
        }
}

static int parse_vocab(struct clip_tokenizer *t, const char *text, size_t size, const char *name, char *err,
                       size_t err_size) {
        json_tokener *tok = NULL;
        json_object *root = NULL;
        size_t arena_size = 0, at = 0, line, col;
        int r = 0;

        if (size > INT_MAX)
                return nn_error(err, err_size, -EFBIG, "%s: too large", name);
        if (memchr(text, '\0', size))
                return nn_error(err, err_size, -EBADMSG, "%s: holds a NUL byte", name);
        tok = json_tokener_new();
        if (!tok)
                return nn_error(err, err_size, -ENOMEM, "%s: out of memory", name);
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        root = json_tokener_parse_ex(tok, text, (int) size);
        if (!root || json_tokener_get_error(tok) != json_tokener_success) {
                enum json_tokener_error e = json_tokener_get_error(tok);

                text_position(text, json_tokener_get_parse_end(tok), &line, &col);
                r = nn_error(err, err_size, -EBADMSG, "%s:%zu:%zu: not valid JSON: %s", name, line, col,
                             e == json_tokener_continue || e == json_tokener_success ? "the file ends inside it"
                                                                                   : json_tokener_error_desc(e));
                goto out;
        }
        for (size_t k = json_tokener_get_parse_end(tok); k < size; k++)
                if (!strchr(" \t\r\n", text[k])) {
                        text_position(text, k, &line, &col);
                        r = nn_error(err, err_size, -EBADMSG, "%s:%zu:%zu: text after the JSON object", name,
                                     line, col);
                        goto out;
                }
        if (!json_object_is_type(root, json_type_object)) {
                r = nn_error(err, err_size, -EBADMSG, "%s: not a JSON object of pieces and their ids", name);
                goto out;
        }
        t->n_vocab = (size_t) json_object_object_length(root);
        if (t->n_vocab == 0 || t->n_vocab > VOCAB_MAX) {
                r = nn_error(err, err_size, -EBADMSG, "%s: %zu pieces (1 to %u)", name, t->n_vocab, VOCAB_MAX);
                goto out;
        }
        t->pieces = calloc(t->n_vocab, sizeof(*t->pieces));
        t->lens = calloc(t->n_vocab, sizeof(*t->lens));
        t->vocab_mask = table_size(t->n_vocab) - 1;
        t->vocab_slots = malloc((t->vocab_mask + 1) * sizeof(*t->vocab_slots));
        if (!t->pieces || !t->lens || !t->vocab_slots) {
                r = nn_error(err, err_size, -ENOMEM, "%s: out of memory", name);
                goto out;
        }
        memset(t->vocab_slots, 0xff, (t->vocab_mask + 1) * sizeof(*t->vocab_slots));
        json_object_object_foreach(root, key0, value0) {
                (void) value0;
                arena_size += strlen(key0) + 1;
        }
        t->arena = malloc(arena_size);
        if (!t->arena) {
                r = nn_error(err, err_size, -ENOMEM, "%s: out of memory", name);
                goto out;
        }
        json_object_object_foreach(root, key, value) {
                size_t len = strlen(key), slot;
                int64_t id;

                if (!json_object_is_type(value, json_type_int)) {
                        r = nn_error(err, err_size, -EBADMSG, "%s: the id of \"%.64s\" is not an integer", name,
                                     key);
                        goto out;
                }
                id = json_object_get_int64(value);
                if (id < 0 || (uint64_t) id >= t->n_vocab) {
                        /* json-c keeps one of equal keys (and cuts keys at
                         * a \u0000): a piece given twice shows here. */
                        r = nn_error(err, err_size, -EBADMSG, "%s: the id of \"%.64s\", %lld, is out of range "
                                     "(0 to %zu: one per piece, and a piece given twice counts once)", name, key,
                                     (long long) id, t->n_vocab - 1);
                        goto out;
                }
                if (t->pieces[id]) {
                        r = nn_error(err, err_size, -EBADMSG, "%s: \"%.64s\" and \"%.64s\" both have id %lld",
                                     name, t->pieces[id], key, (long long) id);
                        goto out;
                }
                memcpy(t->arena + at, key, len + 1);
                t->pieces[id] = t->arena + at;
                t->lens[id] = len;
                at += len + 1;
                for (slot = hash_bytes(key, len) & t->vocab_mask; t->vocab_slots[slot] >= 0;
                     slot = (slot + 1) & t->vocab_mask)
                        ;
                t->vocab_slots[slot] = (int32_t) id;
        }
        /* n distinct ids below n: every id has its piece. */
out:
        json_object_put(root);
        json_tokener_free(tok);
        return r;
}

static int add_merge(struct clip_tokenizer *t, int32_t left, int32_t right, uint32_t rank, int32_t result) {
        uint64_t key = (uint64_t) (uint32_t) left << 32 | (uint32_t) right;
        size_t i;

        for (i = hash_u64(key) & t->merge_mask; t->merge_slots[i].key != UINT64_MAX; i = (i + 1) & t->merge_mask)
                if (t->merge_slots[i].key == key)
                        break;
        /* A pair listed twice keeps its last rank, as the reference's
         * dict(zip(merges, range(len(merges)))) does. */
        t->merge_slots[i] = (struct merge_slot) { .key = key, .rank = rank, .result = result };
        return 0;
}

static int parse_merges(struct clip_tokenizer *t, const char *text, size_t size, const char *name, char *err,
                        size_t err_size) {
        _cleanup_free_ char *joined = NULL;
        size_t n_lines = 0, line = 0, max_len = 0;
        uint32_t rank = 0;

        if (memchr(text, '\0', size))
                return nn_error(err, err_size, -EBADMSG, "%s: holds a NUL byte", name);
        for (size_t i = 0; i < size; i++)
                n_lines += text[i] == '\n';
        n_lines++;
        if (n_lines > VOCAB_MAX)
                return nn_error(err, err_size, -EBADMSG, "%s: more than %u lines", name, VOCAB_MAX);
        t->merge_mask = table_size(n_lines) - 1;
        t->merge_slots = malloc((t->merge_mask + 1) * sizeof(*t->merge_slots));
        for (size_t i = 0; i < t->n_vocab; i++)
                if (t->lens[i] > max_len)
                        max_len = t->lens[i];
        joined = malloc(2 * max_len + 1);
        if (!t->merge_slots || !joined)
                return nn_error(err, err_size, -ENOMEM, "%s: out of memory", name);
        for (size_t i = 0; i <= t->merge_mask; i++)
                t->merge_slots[i].key = UINT64_MAX;

        for (const char *p = text, *end = text + size; p < end;) {
                const char *eol = memchr(p, '\n', (size_t) (end - p)) ?: end, *sp, *le = eol;
                int32_t left, right, result;
                size_t ll, rl;

                line++;
                if (le > p && le[-1] == '\r')
                        le--;
                /* Hugging Face's files start "#version: 0.2"; the
                 * tokenizers library skips such lines. */
                if (le - p >= 8 && memcmp(p, "#version", 8) == 0)
                        goto next;
                if (le == p) {
                        /* Only the end of the file may be empty. */
                        for (const char *q = eol; q < end; q++)
                                if (!strchr("\r\n", *q))
                                        return nn_error(err, err_size, -EBADMSG, "%s:%zu: an empty line", name,
                                                        line);
                        break;
                }
                sp = memchr(p, ' ', (size_t) (le - p));
                if (!sp || sp == p || sp + 1 == le || memchr(sp + 1, ' ', (size_t) (le - sp - 1)))
                        return nn_error(err, err_size, -EBADMSG, "%s:%zu: \"%.*s\" is not two pieces separated "
                                        "by a space", name, line, (int) (le - p > 64 ? 64 : le - p), p);
                ll = (size_t) (sp - p);
                rl = (size_t) (le - sp - 1);
                left = vocab_lookup(t, p, ll);
                right = vocab_lookup(t, sp + 1, rl);
                if (left < 0 || right < 0)
                        return nn_error(err, err_size, -EBADMSG, "%s:%zu: \"%.*s\" is not in the vocabulary", name,
                                        line, (int) (left < 0 ? (ll > 64 ? 64 : ll) : (rl > 64 ? 64 : rl)),
                                        left < 0 ? p : sp + 1);
                memcpy(joined, p, ll);
                memcpy(joined + ll, sp + 1, rl);
                result = vocab_lookup(t, joined, ll + rl);
                if (result < 0)
                        return nn_error(err, err_size, -EBADMSG, "%s:%zu: the merge of \"%.*s\" makes \"%.*s%.*s\", "
                                        "which is not in the vocabulary", name, line, (int) (le - p > 64 ? 64 : le - p),
                                        p, (int) (ll > 64 ? 64 : ll), p, (int) (rl > 64 ? 64 : rl), sp + 1);
                add_merge(t, left, right, rank++, result);
        next:
                p = eol + 1;
        }
        t->n_merges = rank;
        return 0;
}

static int find_pieces(struct clip_tokenizer *t, const char *name, char *err, size_t err_size) {
        char buf[16];

        for (unsigned b = 0; b < 256; b++) {
                size_t n = utf8_encode(byte_stand_in((uint8_t) b), buf);

                t->byte_id[b] = vocab_lookup(t, buf, n);
                memcpy(buf + n, END_OF_WORD, strlen(END_OF_WORD));
                t->byte_end_id[b] = vocab_lookup(t, buf, n + strlen(END_OF_WORD));
                if (t->byte_id[b] < 0 || t->byte_end_id[b] < 0) {
                        buf[n + strlen(END_OF_WORD)] = '\0';
                        if (t->byte_id[b] < 0)
                                buf[n] = '\0';
                        return nn_error(err, err_size, -EBADMSG, "%s: no piece \"%s\", which stands for byte "
                                        "0x%02x", name, buf, b);
                }
        }
        t->bos = vocab_lookup(t, BOS_PIECE, strlen(BOS_PIECE));
        t->eos = vocab_lookup(t, EOS_PIECE, strlen(EOS_PIECE));
        if (t->bos < 0 || t->eos < 0)
                return nn_error(err, err_size, -EBADMSG, "%s: no piece \"%s\"", name,
                                t->bos < 0 ? BOS_PIECE : EOS_PIECE);
        return 0;
}

int clip_tokenizer_parse(const char *vocab, size_t vocab_size, const char *vocab_name, const char *merges,
                         size_t merges_size, const char *merges_name, struct clip_tokenizer **ret, char *err,
                         size_t err_size) {
        struct clip_tokenizer *t;
        int r;

        if (err && err_size > 0)
                err[0] = '\0';
        t = calloc(1, sizeof(*t));
        if (!t)
                return nn_error(err, err_size, -ENOMEM, "out of memory for the tokenizer");
        r = parse_vocab(t, vocab, vocab_size, vocab_name, err, err_size);
        if (r >= 0)
                r = find_pieces(t, vocab_name, err, err_size);
        if (r >= 0)
                r = parse_merges(t, merges, merges_size, merges_name, err, err_size);
        if (r < 0) {
                clip_tokenizer_free(t);
                return r;
        }
        *ret = t;
        return 0;
}

int clip_tokenizer_load(const char *vocab_path, const char *merges_path, struct clip_tokenizer **ret, char *err,
                        size_t err_size) {
        _cleanup_free_ char *vocab = NULL, *merges = NULL;
        size_t vocab_size, merges_size;
        int r;

        r = read_file(vocab_path, &vocab, &vocab_size, err, err_size);
        if (r < 0)
                return r;
        r = read_file(merges_path, &merges, &merges_size, err, err_size);
        if (r < 0)
                return r;
        return clip_tokenizer_parse(vocab, vocab_size, vocab_path, merges, merges_size, merges_path, ret, err,
                                    err_size);
}

int clip_tokenizer_find(const char *model_path, char **ret_vocab, char **ret_merges) {
        static const char *const dirs[] = { "", "tokenizer/" };
        const char *slash = strrchr(model_path, '/');
        int dir_len = slash ? (int) (slash - model_path + 1) : 0;

        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                _cleanup_free_ char *vocab = NULL, *merges = NULL;

                if (asprintf(&vocab, "%.*s%svocab.json", dir_len, model_path, dirs[i]) < 0) {
                        vocab = NULL;
                        return -ENOMEM;
                }
                if (asprintf(&merges, "%.*s%smerges.txt", dir_len, model_path, dirs[i]) < 0) {
                        merges = NULL;
                        return -ENOMEM;
                }
                if (access(vocab, R_OK) == 0 && access(merges, R_OK) == 0) {
                        *ret_vocab = TAKE_PTR(vocab);
                        *ret_merges = TAKE_PTR(merges);
                        return 0;
                }
        }
        return -ENOENT;
}

void clip_tokenizer_free(struct clip_tokenizer *t) {
        if (!t)
                return;
        free(t->pieces);
        free(t->lens);
        free(t->arena);
        free(t->vocab_slots);
        free(t->merge_slots);
        free(t);
}

size_t clip_tokenizer_n_vocab(const struct clip_tokenizer *t) {
        return t->n_vocab;
}

int32_t clip_tokenizer_bos(const struct clip_tokenizer *t) {
        return t->bos;
}

int32_t clip_tokenizer_eos(const struct clip_tokenizer *t) {
        return t->eos;
}

const char *clip_tokenizer_piece(const struct clip_tokenizer *t, int32_t id) {
        return id >= 0 && (size_t) id < t->n_vocab ? t->pieces[id] : NULL;
}

/* ---- BPE ---------------------------------------------------------------- */

struct symbol {
        int32_t id;
        int32_t prev, next;             /* -1: none */
};

struct candidate {
        uint32_t rank;
        uint32_t pos;                   /* the left symbol */
        int32_t left, right, result;
};

/* Scratch of one encode call, grown to the longest word. */
struct bpe_work {
        struct symbol *sym;
        struct candidate *heap, *pending;
        char *bytes;
        size_t cap;                     /* bytes of the longest word so far */
};

static void bpe_work_done(struct bpe_work *w) {
        free(w->sym);
        free(w->heap);
        free(w->pending);
        free(w->bytes);
}

static int bpe_work_reserve(struct bpe_work *w, size_t n) {
        size_t cap = w->cap ?: 64;
        void *p;

        if (n <= w->cap)
                return 0;
        while (cap < n)
                cap *= 2;
        /* Each merge adds at most two pairs to the n − 1 first ones. */
        if (!(p = realloc(w->sym, cap * sizeof(*w->sym))))
                return -ENOMEM;
        w->sym = p;
        if (!(p = realloc(w->heap, 3 * cap * sizeof(*w->heap))))
                return -ENOMEM;
        w->heap = p;
        if (!(p = realloc(w->pending, 2 * cap * sizeof(*w->pending))))
                return -ENOMEM;
        w->pending = p;
        if (!(p = realloc(w->bytes, cap)))
                return -ENOMEM;
        w->bytes = p;
        w->cap = cap;
        return 0;
}

static bool candidate_before(const struct candidate *a, const struct candidate *b) {
        return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(struct candidate *h, size_t *n, struct candidate c) {
        size_t i = (*n)++;

        while (i > 0 && candidate_before(&c, &h[(i - 1) / 2])) {
                h[i] = h[(i - 1) / 2];
                i = (i - 1) / 2;
        }
        h[i] = c;
}

static struct candidate heap_pop(struct candidate *h, size_t *n) {
        struct candidate top = h[0], last = h[--*n];
        size_t i = 0;

        for (;;) {
                size_t c = 2 * i + 1;

                if (c >= *n)
                        break;
                if (c + 1 < *n && candidate_before(&h[c + 1], &h[c]))
                        c++;
                if (!candidate_before(&h[c], &last))
                        break;
                h[i] = h[c];
                i = c;
        }
        if (*n > 0)
                h[i] = last;
        return top;
}

static void add_candidate(const struct clip_tokenizer *t, const struct symbol *sym, int32_t pos,
                          struct candidate *list, size_t *n, bool heap) {
        const struct merge_slot *m;
        struct candidate c;

        if (pos < 0 || sym[pos].next < 0)
                return;
        m = merge_lookup(t, sym[pos].id, sym[sym[pos].next].id);
        if (!m)
                return;
        c = (struct candidate) { .rank = m->rank, .pos = (uint32_t) pos, .left = sym[pos].id,
                                 .right = sym[sym[pos].next].id, .result = m->result };
        if (heap)
                heap_push(list, n, c);
        else
                list[(*n)++] = c;
}

/* Appends the ids of the word bytes[0 … n), n > 0, to ids[*n_ids …
 * max). */
static void bpe_word(const struct clip_tokenizer *t, struct bpe_work *w, size_t n, int32_t *ids, size_t *n_ids,
                     size_t max) {
        struct symbol *sym = w->sym;
        size_t n_heap = 0;

        for (size_t i = 0; i < n; i++)
                sym[i] = (struct symbol) {
                        .id = i + 1 < n ? t->byte_id[(uint8_t) w->bytes[i]] : t->byte_end_id[(uint8_t) w->bytes[i]],
                        .prev = (int32_t) i - 1,
                        .next = i + 1 < n ? (int32_t) i + 1 : -1,
                };
        for (size_t i = 0; i + 1 < n; i++)
                add_candidate(t, sym, (int32_t) i, w->heap, &n_heap, true);

        while (n_heap > 0) {
                uint32_t rank = w->heap[0].rank;
                size_t n_pending = 0;

                /* One round: every place of this pair, left to right; the
                 * pairs the merges make wait for the next round. */
                while (n_heap > 0 && w->heap[0].rank == rank) {
                        struct candidate c = heap_pop(w->heap, &n_heap);
                        struct symbol *s = &sym[c.pos];
                        int32_t right = s->next;

                        /* Symbols only grow, so a stale pair cannot match
                         * again: the left one merged, or its right one. */
                        if (s->id != c.left || right < 0 || sym[right].id != c.right)
                                continue;
                        s->id = c.result;
                        s->next = sym[right].next;
                        if (s->next >= 0)
                                sym[s->next].prev = (int32_t) c.pos;
                        sym[right].id = -1;
                        add_candidate(t, sym, s->prev, w->pending, &n_pending, false);
                        add_candidate(t, sym, (int32_t) c.pos, w->pending, &n_pending, false);
                }
                for (size_t i = 0; i < n_pending; i++)
                        heap_push(w->heap, &n_heap, w->pending[i]);
        }
        for (int32_t i = 0; i >= 0 && *n_ids < max; i = sym[i].next)
                ids[(*n_ids)++] = sym[i].id;
}

/* ---- encoding ----------------------------------------------------------- */

static bool match_ascii(const uint32_t *cp, size_t n, size_t pos, const char *s) {
        size_t len = strlen(s);

        if (n - pos < len)
                return false;
        for (size_t i = 0; i < len; i++)
                if (cp[pos + i] != (uint8_t) s[i])
                        return false;
        return true;
}

/* The length of the contraction ('s 't 're 've 'm 'll 'd) at cp[pos], or 0.
 * The reference matches case-insensitively, which after lower-casing
 * still lets U+017F LATIN SMALL LETTER LONG S stand for s. */
static size_t match_contraction(const uint32_t *cp, size_t n, size_t pos) {
        uint32_t a, b;

        if (cp[pos] != '\'' || pos + 1 >= n)
                return 0;
        a = cp[pos + 1];
        if (a == 's' || a == 0x17f || a == 't' || a == 'm' || a == 'd')
                return 2;
        if (pos + 2 >= n)
                return 0;
        b = cp[pos + 2];
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
                return 3;
        return 0;
}

/* The length of the pre-tokenizer's word at cp[pos] (not white space);
 * *special is BOS or EOS when the word is that token's text, else -1. */
static size_t split_word(const struct clip_tokenizer *t, const uint32_t *cp, size_t n, size_t pos,
                         int32_t *special) {
        size_t end = pos, k;

        *special = -1;
        if (match_ascii(cp, n, pos, BOS_PIECE)) {
                *special = t->bos;
                return strlen(BOS_PIECE);
        }
        if (match_ascii(cp, n, pos, EOS_PIECE)) {
                *special = t->eos;
                return strlen(EOS_PIECE);
        }
        k = match_contraction(cp, n, pos);
        if (k > 0)
                return k;
        if (cp_is_letter(cp[pos])) {
                while (end < n && cp_is_letter(cp[end]))
                        end++;
                return end - pos;
        }
        if (cp_is_number(cp[pos]))
                return 1;
        while (end < n && !cp_is_space(cp[end]) && !cp_is_letter(cp[end]) && !cp_is_number(cp[end]) &&
               !cp_is_unmatched(cp[end]))
                end++;
        return end - pos;
}

/* Python's lower case of U+03A3 GREEK CAPITAL LETTER SIGMA at s[i]: final
 * (U+03C2) after a cased letter and not before one, case-ignorable
 * characters between not counting (Unicode's Final_Sigma condition). */
static uint32_t lower_sigma(const uint32_t *s, size_t n, size_t i) {
        size_t j = i;

        while (j > 0 && in_ranges(clip_case_ignorable_ranges, ELEMENTSOF(clip_case_ignorable_ranges), s[j - 1]))
                j--;
        if (j == 0 || !in_ranges(clip_cased_ranges, ELEMENTSOF(clip_cased_ranges), s[j - 1]))
                return 0x3c3;
        for (j = i + 1; j < n && in_ranges(clip_case_ignorable_ranges, ELEMENTSOF(clip_case_ignorable_ranges), s[j]);)
                j++;
        return j < n && in_ranges(clip_cased_ranges, ELEMENTSOF(clip_cased_ranges), s[j]) ? 0x3c3 : 0x3c2;
}

/* Cleanup: text's code points with white space runs as one space and none
 * at the ends (into tmp), then lower-cased (into out).  Both hold len code
 * points: U+0130, whose lower case is two, takes two bytes.  -EILSEQ for
 * bytes that are not UTF-8. */
static int clean_text(const char *text, size_t len, uint32_t *tmp, uint32_t *out, size_t *n_out) {
        size_t n = 0, m = 0;
        bool space = false;

        for (size_t i = 0; i < len;) {
                uint32_t cp;
                size_t k = utf8_decode((const uint8_t *) text + i, len - i, &cp);

                if (k == 0)
                        return -EILSEQ;
                i += k;
                if (cp_is_space(cp)) {
                        space = n > 0;
                        continue;
                }
                if (space)
                        tmp[n++] = ' ';
                space = false;
                tmp[n++] = cp;
        }
        for (size_t i = 0; i < n; i++)
                if (tmp[i] == 0x130) {
                        out[m++] = 'i';
                        out[m++] = 0x307;
                } else if (tmp[i] == 0x3a3)
                        out[m++] = lower_sigma(tmp, n, i);
                else
                        out[m++] = cp_lower(tmp[i]);
        *n_out = m;
        return 0;
}

int clip_tokenizer_encode(const struct clip_tokenizer *t, const char *text, size_t len, int32_t *ids, size_t max) {
        _cleanup_free_ uint32_t *cp = NULL, *tmp = NULL;
        _cleanup_(bpe_work_done) struct bpe_work w = {};
        size_t n_cp, n_ids = 0;
        int r;

        if (!text && len > 0)
                return -EINVAL;
        if (max > INT_MAX)
                max = INT_MAX;
        tmp = malloc((len ?: 1) * sizeof(*tmp));
        cp = malloc((len ?: 1) * sizeof(*cp));
        if (!tmp || !cp)
                return -ENOMEM;
        r = clean_text(text, len, tmp, cp, &n_cp);
        if (r < 0)
                return r;

        for (size_t pos = 0; pos < n_cp && n_ids < max;) {
                size_t k, n_bytes = 0;
                int32_t special;

                if (cp_is_space(cp[pos]) || cp_is_unmatched(cp[pos])) {
                        pos++;
                        continue;
                }
                k = split_word(t, cp, n_cp, pos, &special);
                if (special >= 0) {
                        /* As the reference's BPE cache has them. */
                        ids[n_ids++] = special;
                        pos += k;
                        continue;
                }
                r = bpe_work_reserve(&w, 4 * k);
                if (r < 0)
                        return r;
                for (size_t i = pos; i < pos + k; i++)
                        n_bytes += utf8_encode(cp[i], w.bytes + n_bytes);
                bpe_word(t, &w, n_bytes, ids, &n_ids, max);
                pos += k;
        }
        return (int) n_ids;
}

int clip_tokenizer_encode_prompt(const struct clip_tokenizer *t, const char *text, size_t len, int32_t pad,
                                 int32_t ids[static CLIP_CONTEXT]) {
        int n;

        if (pad < 0 || (size_t) pad >= t->n_vocab)
                return -EINVAL;
        ids[0] = t->bos;
        n = clip_tokenizer_encode(t, text, len, ids + 1, CLIP_CONTEXT - 2);
        if (n < 0)
                return n;
        ids[++n] = t->eos;
        n++;
        for (size_t i = (size_t) n; i < CLIP_CONTEXT; i++)
                ids[i] = pad;
        return n;
}

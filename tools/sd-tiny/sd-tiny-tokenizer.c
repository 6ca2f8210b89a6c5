/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The CLIP tokenizer files of sd-tiny.h: vocab.json and merges.txt as
 * Hugging Face ships them for openai/clip-vit-large-patch14, made the way
 * CLIP's own vocabulary is (simple_tokenizer.py): the 256 byte stand-ins of
 * GPT-2's bytes_to_unicode(), the same with "</w>", one piece per merge in
 * rank order, then "<|startoftext|>" and "<|endoftext|>".  The merges are
 * learnt by byte-pair encoding on a few hundred words of the prompts people
 * write, so common words become few tokens as with the real files; when
 * that runs out before the size asked for (the real 49,408 pieces), filler
 * merges extend existing pieces by a letter. */

#include <assert.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn-error.h"
#include "sd-tiny.h"

#define END_OF_WORD "</w>"

static const char corpus[] =
        "a photo of an astronaut riding a horse on mars, highly detailed, digital art, trending on artstation. "
        "a painting of a fox sitting in a field at sunrise in the style of claude monet. "
        "a beautiful landscape with mountains and a lake, golden hour, cinematic lighting, sharp focus. "
        "portrait of a young woman with red hair, oil painting, intricate, elegant, by greg rutkowski. "
        "a cute cat wearing a hat, studio photograph, soft light, bokeh, high resolution. "
        "a futuristic city skyline at night, neon lights, rain, cyberpunk, concept art, octane render. "
        "an old man reading a book in a cozy library, warm light, watercolor illustration. "
        "a dog running on the beach, ocean waves, sunset, photorealistic, award winning photography. "
        "a castle on a hill surrounded by a dark forest, fantasy, matte painting, epic composition. "
        "a bowl of fruit on a wooden table, still life, impressionism, vibrant colors. "
        "a robot playing the piano in an empty concert hall, dramatic lighting, unreal engine. "
        "the quick brown fox jumps over the lazy dog. hello world. "
        "architectural concept of a modern house in the mountains, glass walls, minimalist, wide angle. "
        "a small wooden boat floating on a calm river, morning mist, trees, reflections, tranquil. "
        "a dragon flying over snowy mountains, clouds, majestic, detailed scales, fantasy illustration. "
        "a bustling market street in the rain, people with umbrellas, lanterns, evening, anime style. "
        "close up of a flower with dew drops, macro photography, shallow depth of field, green background. "
        "an astronaut floating in space above the earth, stars, nebula, science fiction, volumetric light. "
        "a cup of coffee next to a laptop on a desk, morning sunlight, window, plants, cozy interior. "
        "a knight in shining armor holding a sword, medieval, heroic pose, highly detailed, artstation. "
        "a white house with a red door and a garden full of roses, spring, blue sky, countryside. "
        "children playing in the park, autumn leaves, golden trees, happy, candid photography. "
        "an ancient temple in the jungle, overgrown with vines, mysterious, light rays, exploration. "
        "a train crossing a bridge over a canyon, steam, adventure, wide shot, western landscape. "
        "a lighthouse on a rocky coast during a storm, giant waves, lightning, dramatic sky. "
        "a girl with a balloon standing on a rooftop, city below, dreamy, pastel colors, illustration. "
        "a tiger resting in tall grass, wildlife photography, national geographic, telephoto lens. "
        "a bicycle leaning against a brick wall, street photography, black and white, film grain. "
        "a village of tiny houses built inside giant mushrooms, whimsical, magical, storybook art. "
        "a spaceship landing on an alien planet, purple sky, two moons, strange plants, epic scale. ";

/* GPT-2's bytes_to_unicode(), in its order: the printable Latin-1 bytes,
 * then the others as U+0100 onwards. */
static void byte_stand_ins(uint8_t order[256], uint32_t cp[256]) {
        unsigned n = 0, extra = 0;

        for (unsigned b = 0; b < 256; b++)
                if ((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae) {
                        order[n++] = (uint8_t) b;
                        cp[b] = b;
                }
        for (unsigned b = 0; b < 256; b++)
                if (!((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae)) {
                        order[n++] = (uint8_t) b;
                        cp[b] = 0x100 + extra++;
                }
}

static size_t utf8_encode(uint32_t c, char *out) {
        if (c < 0x80) {
                out[0] = (char) c;
                return 1;
        }
        out[0] = (char) (0xc0 | (c >> 6));     /* all stand-ins are below U+0800 */
        out[1] = (char) (0x80 | (c & 0x3f));
        return 2;
}

/* The pieces so far, and a hash set over them. */
struct pieces {
        char **s;
        size_t n, cap;
        int32_t *slots;                 /* -1: empty */
        size_t mask;
};

static uint64_t hash_str(const char *s) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);

        for (; *s; s++) {
                h ^= (uint8_t) *s;
                h *= UINT64_C(0x100000001b3);
        }
        return h ^ (h >> 29);
}

static int32_t pieces_find(const struct pieces *p, const char *s) {
        for (size_t i = hash_str(s) & p->mask;; i = (i + 1) & p->mask) {
                if (p->slots[i] < 0)
                        return -1;
                if (strcmp(p->s[p->slots[i]], s) == 0)
                        return p->slots[i];
        }
}

/* Takes s (malloc'd).  The set is sized for every piece at the start. */
static int32_t pieces_add(struct pieces *p, char *s) {
        size_t i;

        if (!s)
                return -ENOMEM;
        for (i = hash_str(s) & p->mask; p->slots[i] >= 0; i = (i + 1) & p->mask)
                ;
        p->slots[i] = (int32_t) p->n;
        p->s[p->n] = s;
        return (int32_t) p->n++;
}

static char *concat(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);
        char *s = malloc(la + lb + 1);

        if (s) {
                memcpy(s, a, la);
                memcpy(s + la, b, lb + 1);
        }
        return s;
}

struct word {
        int32_t *sym;
        size_t n;
        unsigned count;
};

struct pair_count {
        uint64_t key;
        unsigned count;
};

static int cmp_pair(const void *a, const void *b) {
        const struct pair_count *x = a, *y = b;

        return x->key < y->key ? -1 : x->key > y->key;
}

/* The corpus's distinct words (runs of letters) as byte pieces. */
static int corpus_words(const int32_t byte_id[256], const int32_t byte_end_id[256], struct word **ret,
                        size_t *n_ret) {
        struct word *w = NULL;
        size_t n = 0, cap = 0;

        for (const char *c = corpus; *c;) {
                const char *end = c;
                size_t len, k;

                while ((*end >= 'a' && *end <= 'z'))
                        end++;
                len = (size_t) (end - c);
                if (len == 0) {
                        c++;
                        continue;
                }
                for (k = 0; k < n; k++)
                        if (w[k].n == len) {
                                size_t i = 0;

                                while (i < len && w[k].sym[i] == (i + 1 < len ? byte_id : byte_end_id)[(uint8_t) c[i]])
                                        i++;
                                if (i == len)
                                        break;
                        }
                if (k < n)
                        w[k].count++;
                else {
                        if (n == cap) {
                                void *q = realloc(w, (cap = cap ? 2 * cap : 64) * sizeof(*w));

                                if (!q)
                                        goto oom;
                                w = q;
                        }
                        w[n] = (struct word) { .sym = malloc(len * sizeof(int32_t)), .n = len, .count = 1 };
                        if (!w[n].sym)
                                goto oom;
                        for (size_t i = 0; i < len; i++)
                                w[n].sym[i] = (i + 1 < len ? byte_id : byte_end_id)[(uint8_t) c[i]];
                        n++;
                }
                c = end;
        }
        *ret = w;
        *n_ret = n;
        return 0;
oom:
        for (size_t k = 0; k < n; k++)
                free(w[k].sym);
        free(w);
        return -ENOMEM;
}

/* The most frequent pair of the words whose joined piece is new, or
 * UINT64_MAX. */
static uint64_t best_pair(const struct pieces *p, const struct word *w, size_t n_words, struct pair_count *pc) {
        size_t n = 0, k = 0;
        uint64_t best = UINT64_MAX;
        unsigned best_count = 0;

        for (size_t i = 0; i < n_words; i++)
                for (size_t j = 0; j + 1 < w[i].n; j++)
                        pc[n++] = (struct pair_count) {
                                .key = (uint64_t) w[i].sym[j] << 32 | (uint32_t) w[i].sym[j + 1],
                                .count = w[i].count,
                        };
        qsort(pc, n, sizeof(*pc), cmp_pair);
        while (k < n) {
                uint64_t key = pc[k].key;
                unsigned count = 0;
                char *joined;
                bool fresh;

                for (; k < n && pc[k].key == key; k++)
                        count += pc[k].count;
                if (count <= best_count)
                        continue;
                joined = concat(p->s[key >> 32], p->s[(uint32_t) key]);
                fresh = joined && pieces_find(p, joined) < 0;
                free(joined);
                if (fresh) {
                        best = key;
                        best_count = count;
                }
        }
        return best;
}

static void merge_words(struct word *w, size_t n_words, int32_t left, int32_t right, int32_t result) {
        for (size_t i = 0; i < n_words; i++) {
                size_t out = 0;

                for (size_t j = 0; j < w[i].n; j++)
                        if (j + 1 < w[i].n && w[i].sym[j] == left && w[i].sym[j + 1] == right) {
                                w[i].sym[out++] = result;
                                j++;
                        } else
                                w[i].sym[out++] = w[i].sym[j];
                w[i].n = out;
        }
}

static int write_text(const char *path, const char *text, size_t len, char *err, size_t err_size) {
        FILE *f = fopen(path, "we");

        if (!f)
                return nn_error(err, err_size, -errno, "sd-tiny: %s: %s", path, strerror(errno));
        if (fwrite(text, 1, len, f) != len || fclose(f) != 0) {
                int r = -(errno ?: EIO);

                return nn_error(err, err_size, r, "sd-tiny: cannot write %s: %s", path, strerror(-r));
        }
        return 0;
}

int sd_tiny_write_tokenizer(uint32_t n_vocab, const char *vocab_path, const char *merges_path, char *err,
                            size_t err_size) {
        struct pieces p = {};
        struct word *words = NULL;
        struct pair_count *pc = NULL;
        int32_t (*merges)[2] = NULL, byte_id[256], byte_end_id[256];
        size_t n_words = 0, n_pairs = 0, n_merges = 0, filler = 0, letter = 0;
        uint32_t cp[256];
        uint8_t order[256];
        json_object *vocab = NULL;
        const char *json;
        char *text = NULL;
        size_t len = 0;
        FILE *f = NULL;
        int r = -ENOMEM;

        if (n_vocab < 514 || n_vocab > (1u << 24))
                return nn_error(err, err_size, -EINVAL, "sd-tiny: a CLIP vocabulary has 514 pieces (the bytes, "
                                "twice, and two special tokens) or more, not %u", n_vocab);
        p.mask = 2 * (size_t) n_vocab;
        while (p.mask & (p.mask - 1))
                p.mask &= p.mask - 1;
        p.mask = 2 * p.mask - 1;
        p.s = calloc(n_vocab, sizeof(*p.s));
        p.slots = malloc((p.mask + 1) * sizeof(*p.slots));
        merges = malloc((n_vocab - 514 + 1) * sizeof(*merges));
        if (!p.s || !p.slots || !merges)
                goto out;
        memset(p.slots, 0xff, (p.mask + 1) * sizeof(*p.slots));

        byte_stand_ins(order, cp);
        for (unsigned i = 0; i < 256; i++) {
                char b[8];

                b[utf8_encode(cp[order[i]], b)] = '\0';
                byte_id[order[i]] = pieces_add(&p, strdup(b));
                if (byte_id[order[i]] < 0)
                        goto out;
        }
        for (unsigned i = 0; i < 256; i++) {
                byte_end_id[order[i]] = pieces_add(&p, concat(p.s[i], END_OF_WORD));
                if (byte_end_id[order[i]] < 0)
                        goto out;
        }

        /* Byte-pair encoding of the corpus. */
        r = corpus_words(byte_id, byte_end_id, &words, &n_words);
        if (r < 0)
                goto out;
        r = -ENOMEM;
        for (size_t i = 0; i < n_words; i++)
                n_pairs += words[i].n;
        pc = malloc((n_pairs + 1) * sizeof(*pc));
        if (!pc)
                goto out;
        while (n_merges < n_vocab - 514) {
                uint64_t key = best_pair(&p, words, n_words, pc);
                int32_t left = (int32_t) (key >> 32), right = (int32_t) (uint32_t) key, id;

                if (key == UINT64_MAX)
                        break;
                id = pieces_add(&p, concat(p.s[left], p.s[right]));
                if (id < 0)
                        goto out;
                merges[n_merges][0] = left;
                merges[n_merges++][1] = right;
                merge_words(words, n_words, left, right, id);
        }
        /* Filler: each piece that does not end a word, extended by a letter
         * within the word and at its end. */
        while (n_merges < n_vocab - 514) {
                const char *s = p.s[filler];
                char l[8];
                int32_t right;
                char *joined;

                /* Each piece gives 52 more: never runs out. */
                assert(filler < p.n);
                if (strstr(s, END_OF_WORD) || !((s[0] >= 'a' && s[0] <= 'z'))) {
                        filler++;
                        letter = 0;
                        continue;
                }
                snprintf(l, sizeof(l), "%c%s", (char) ('a' + letter / 2), letter % 2 ? END_OF_WORD : "");
                right = pieces_find(&p, l);
                joined = concat(s, l);
                if (!joined)
                        goto out;
                if (pieces_find(&p, joined) < 0) {
                        pieces_add(&p, joined);
                        merges[n_merges][0] = (int32_t) filler;
                        merges[n_merges++][1] = right;
                } else
                        free(joined);
                if (++letter == 52) {
                        filler++;
                        letter = 0;
                }
        }
        if (pieces_add(&p, strdup("<|startoftext|>")) < 0 || pieces_add(&p, strdup("<|endoftext|>")) < 0)
                goto out;

        vocab = json_object_new_object();
        if (!vocab)
                goto out;
        for (size_t i = 0; i < p.n; i++)
                if (json_object_object_add(vocab, p.s[i], json_object_new_int((int32_t) i)) < 0)
                        goto out;
        json = json_object_to_json_string_ext(vocab, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!json)
                goto out;
        r = write_text(vocab_path, json, strlen(json), err, err_size);
        if (r < 0)
                goto done;

        r = -ENOMEM;
        f = open_memstream(&text, &len);
        if (!f)
                goto out;
        fputs("#version: 0.2\n", f);
        for (size_t i = 0; i < n_merges; i++)
                fprintf(f, "%s %s\n", p.s[merges[i][0]], p.s[merges[i][1]]);
        if (fclose(f) != 0)
                goto out;
        r = write_text(merges_path, text, len, err, err_size);
        goto done;
out:
        r = nn_error(err, err_size, r, "sd-tiny: out of memory for the tokenizer");
done:
        json_object_put(vocab);
        free(text);
        for (size_t i = 0; i < n_words; i++)
                free(words[i].sym);
        free(words);
        free(pc);
        free(merges);
        for (size_t i = 0; i < p.n; i++)
                free(p.s[i]);
        free(p.s);
        free(p.slots);
        return r;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* gguf-tiny: writes a Llama-family model with random weights as a real GGUF
 * file, for tests, benchmarks and trying textgen without a download. */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiny-model.h"

static void usage(FILE *f) {
        fprintf(f,
                "Usage: gguf-tiny [OPTIONS] OUTPUT.gguf\n"
                "Writes a Llama-family model with random weights in GGUF.\n\n"
                "  --arch llama|qwen2          architecture (llama)\n"
                "  --tokenizer spm|bpe         SentencePiece (Llama 2) or byte-level BPE (Llama 3) (spm)\n"
                "  --type TYPE                 matrices: f32 f16 bf16 q8_0 q4_0 q4_K q5_K q6_K (f32)\n"
                "  --embd-type TYPE            token embedding type (as --type)\n"
                "  --vocab N --embd N --layers N --heads N --kv-heads N --ff N --ctx N\n"
                "  --preset tiny|110m|1b       shapes of a test model, of a ~110M or a ~1B model\n"
                "  --tied                      no output.weight (reuse the embedding)\n"
                "  --rope-freqs                Llama 3.1 style rope_freqs.weight\n"
                "  --gguf-version 2|3          (3)\n"
                "  --seed N                    (1)\n");
}

static int parse_type(const char *s, enum nn_type *ret) {
        static const enum nn_type types[] = { NN_TYPE_F32, NN_TYPE_F16, NN_TYPE_BF16, NN_TYPE_Q8_0, NN_TYPE_Q4_0,
                                              NN_TYPE_Q4_K, NN_TYPE_Q5_K, NN_TYPE_Q6_K };

        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
                if (strcmp(s, nn_type_name(types[i])) == 0) {
                        *ret = types[i];
                        return 0;
                }
        fprintf(stderr, "gguf-tiny: unknown type \"%s\"\n", s);
        return -EINVAL;
}

static int parse_u32(const char *opt, const char *s, uint32_t *ret) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || end == s || *end || v == 0 || v > UINT32_MAX) {
                fprintf(stderr, "gguf-tiny: --%s %s: expected a positive integer\n", opt, s);
                return -EINVAL;
        }
        *ret = (uint32_t) v;
        return 0;
}

int main(int argc, char **argv) {
        struct tiny_model_spec spec = tiny_model_spec_default();
        bool embd_type_set = false;
        char err[512];
        int c, r;
        static const struct option opts[] = {
                { "arch", required_argument, NULL, 'a' },
                { "tokenizer", required_argument, NULL, 't' },
                { "type", required_argument, NULL, 'T' },
                { "embd-type", required_argument, NULL, 'E' },
                { "vocab", required_argument, NULL, 'v' },
                { "embd", required_argument, NULL, 'e' },
                { "layers", required_argument, NULL, 'l' },
                { "heads", required_argument, NULL, 'h' },
                { "kv-heads", required_argument, NULL, 'k' },
                { "ff", required_argument, NULL, 'f' },
                { "ctx", required_argument, NULL, 'c' },
                { "preset", required_argument, NULL, 'p' },
                { "tied", no_argument, NULL, 'i' },
                { "rope-freqs", no_argument, NULL, 'r' },
                { "gguf-version", required_argument, NULL, 'g' },
                { "seed", required_argument, NULL, 's' },
                { "help", no_argument, NULL, 'H' },
                {}
        };

        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                uint32_t u;

                r = 0;
                switch (c) {
                case 'a':
                        if (strcmp(optarg, "llama") != 0 && strcmp(optarg, "qwen2") != 0) {
                                fprintf(stderr, "gguf-tiny: --arch must be llama or qwen2\n");
                                return 2;
                        }
                        spec.arch = optarg;
                        break;
                case 't':
                        if (strcmp(optarg, "spm") == 0)
                                spec.tokenizer = TINY_TOKENIZER_SPM;
                        else if (strcmp(optarg, "bpe") == 0)
                                spec.tokenizer = TINY_TOKENIZER_BPE;
                        else {
                                fprintf(stderr, "gguf-tiny: --tokenizer must be spm or bpe\n");
                                return 2;
                        }
                        break;
                case 'T': r = parse_type(optarg, &spec.weight_type); break;
                case 'E': r = parse_type(optarg, &spec.embd_type); embd_type_set = true; break;
                case 'v': r = parse_u32("vocab", optarg, &spec.n_vocab); break;
                case 'e': r = parse_u32("embd", optarg, &spec.n_embd); break;
                case 'l': r = parse_u32("layers", optarg, &spec.n_layer); break;
                case 'h': r = parse_u32("heads", optarg, &spec.n_head); break;
                case 'k': r = parse_u32("kv-heads", optarg, &spec.n_head_kv); break;
                case 'f': r = parse_u32("ff", optarg, &spec.n_ff); break;
                case 'c': r = parse_u32("ctx", optarg, &spec.n_ctx); break;
                case 'p':
                        if (strcmp(optarg, "tiny") == 0)
                                break;
                        if (strcmp(optarg, "110m") == 0) {
                                /* llama2.c's stories110M shape. */
                                spec.n_vocab = 32000; spec.n_embd = 768; spec.n_layer = 12; spec.n_head = 12;
                                spec.n_head_kv = 12; spec.n_ff = 2048; spec.n_ctx = 1024;
                        } else if (strcmp(optarg, "1b") == 0) {
                                /* TinyLlama 1.1B's shape. */
                                spec.n_vocab = 32000; spec.n_embd = 2048; spec.n_layer = 22; spec.n_head = 32;
                                spec.n_head_kv = 4; spec.n_ff = 5632; spec.n_ctx = 2048;
                        } else {
                                fprintf(stderr, "gguf-tiny: --preset must be tiny, 110m or 1b\n");
                                return 2;
                        }
                        break;
                case 'i': spec.tied_output = true; break;
                case 'r': spec.rope_freqs = true; break;
                case 'g':
                        r = parse_u32("gguf-version", optarg, &u);
                        if (r == 0 && u != 2 && u != 3) {
                                fprintf(stderr, "gguf-tiny: --gguf-version must be 2 or 3\n");
                                return 2;
                        }
                        spec.gguf_version = u;
                        break;
                case 's': r = parse_u32("seed", optarg, &u); spec.seed = u; break;
                case 'H': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
                if (r < 0)
                        return 2;
        }
        if (optind != argc - 1) {
                usage(stderr);
                return 2;
        }
        if (!embd_type_set)
                spec.embd_type = spec.weight_type;
        r = tiny_model_write(&spec, argv[optind], err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "gguf-tiny: %s\n", err);
                return 1;
        }
        return 0;
}

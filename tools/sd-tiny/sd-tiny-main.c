/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* sd-tiny: writes a random-weight Stable Diffusion 1.x checkpoint in
 * safetensors, in the layout of the files people download, scaled down
 * (or, with --full, at SD 1.5's own widths: about 1.07 billion parameters).
 * With --tokenizer, also a CLIP tokenizer of the model's vocabulary size,
 * vocab.json and merges.txt beside OUT, where imagegen looks for them.
 *
 *   sd-tiny [--full] [--channels N] [--dtype f32|f16|bf16] [--seed N] [--tokenizer] OUT.safetensors */

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd-tiny.h"

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "full", no_argument, NULL, 'F' },
                { "channels", required_argument, NULL, 'c' },
                { "dtype", required_argument, NULL, 'd' },
                { "seed", required_argument, NULL, 's' },
                { "tokenizer", no_argument, NULL, 't' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        struct sd_tiny_spec spec = sd_tiny_spec_default();
        char err[512];
        bool tokenizer = false;
        size_t n;
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'F':
                        spec = sd_tiny_spec_full();
                        break;
                case 'c':
                        spec.model_channels = (uint32_t) strtoul(optarg, NULL, 10);
                        break;
                case 'd':
                        spec.dtype = strcmp(optarg, "f32") == 0 ? ST_F32 : strcmp(optarg, "bf16") == 0 ? ST_BF16
                                                                                                         : ST_F16;
                        break;
                case 's':
                        spec.seed = strtoull(optarg, NULL, 0);
                        break;
                case 't':
                        tokenizer = true;
                        break;
                case 'h':
                        printf("%s [--full] [--channels N] [--dtype f32|f16|bf16] [--seed N] [--tokenizer] "
                               "OUT.safetensors\n"
                               "  --tokenizer  also write vocab.json and merges.txt (CLIP's tokenizer, of the\n"
                               "               model's vocabulary size) in OUT's folder\n",
                               argv[0]);
                        return EXIT_SUCCESS;
                default:
                        return EXIT_FAILURE;
                }
        if (optind + 1 != argc) {
                fprintf(stderr, "sd-tiny: one output file, please (--help)\n");
                return EXIT_FAILURE;
        }
        if (sd_tiny_write(&spec, argv[optind], &n, err, sizeof(err)) < 0) {
                fprintf(stderr, "%s\n", err);
                return EXIT_FAILURE;
        }
        printf("%s: %zu tensors\n", argv[optind], n);
        if (tokenizer) {
                const char *slash = strrchr(argv[optind], '/');
                int dir = slash ? (int) (slash - argv[optind] + 1) : 0;
                char vocab[4096], merges[4096];

                snprintf(vocab, sizeof(vocab), "%.*svocab.json", dir, argv[optind]);
                snprintf(merges, sizeof(merges), "%.*smerges.txt", dir, argv[optind]);
                if (sd_tiny_write_tokenizer(spec.vocab, vocab, merges, err, sizeof(err)) < 0) {
                        fprintf(stderr, "%s\n", err);
                        return EXIT_FAILURE;
                }
                printf("%s, %s: %u pieces\n", vocab, merges, spec.vocab);
        }
        return EXIT_SUCCESS;
}

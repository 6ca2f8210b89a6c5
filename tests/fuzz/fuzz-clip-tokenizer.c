/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CLIP's tokenizer (plugins/imagegen/clip-tokenizer.c) on files and
 * prompts from anywhere: the input is vocab.json, a NUL, merges.txt, a NUL,
 * then the prompt (the seeds hold a valid pair of files, so mutations reach
 * the prompt's path: a peer's text).  Nothing may crash or read outside the
 * buffers; a refused file says why; a prompt either is not UTF-8 or gives
 * ids in the vocabulary, BOS first and EOS last, padded to 77, and the ids
 * of a prompt cut at k are the first k of all of them. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clip-tokenizer.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *vocab = (const char *) data, *merges, *text, *end = vocab + size;
        struct clip_tokenizer *t = NULL;
        int32_t ids[CLIP_CONTEXT], all[256], some[256];
        char err[512] = "";
        int n, n_all, n_some;

        if (size == 0)
                return 0;       /* memchr(NULL, …, 0) is undefined */
        merges = memchr(vocab, '\0', size);
        if (!merges)
                return 0;
        merges++;
        text = memchr(merges, '\0', (size_t) (end - merges));
        if (!text)
                return 0;
        text++;
        if (clip_tokenizer_parse(vocab, (size_t) (merges - 1 - vocab), "vocab.json", merges,
                                 (size_t) (text - 1 - merges), "merges.txt", &t, err, sizeof(err)) < 0) {
                FUZZ_CHECK(err[0] != '\0');
                return 0;
        }

        n = clip_tokenizer_encode_prompt(t, text, (size_t) (end - text), clip_tokenizer_eos(t), ids);
        if (n == -EILSEQ)
                goto out;
        FUZZ_CHECK(n >= 2 && n <= CLIP_CONTEXT);
        FUZZ_CHECK(ids[0] == clip_tokenizer_bos(t) && ids[n - 1] == clip_tokenizer_eos(t));
        for (int i = 0; i < CLIP_CONTEXT; i++)
                FUZZ_CHECK(ids[i] >= 0 && (size_t) ids[i] < clip_tokenizer_n_vocab(t));

        n_all = clip_tokenizer_encode(t, text, (size_t) (end - text), all, 256);
        FUZZ_CHECK(n_all >= n - 2 && n_all <= 256);
        FUZZ_CHECK(memcmp(all, ids + 1, (size_t) (n - 2) * sizeof(int32_t)) == 0);
        n_some = clip_tokenizer_encode(t, text, (size_t) (end - text), some, (size_t) n_all / 2);
        FUZZ_CHECK(n_some == n_all / 2);
        FUZZ_CHECK(memcmp(all, some, (size_t) n_some * sizeof(int32_t)) == 0);
out:
        clip_tokenizer_free(t);
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A checkpoint from anywhere: safetensors_parse() on the bytes, then every
 * tensor found by name, its first and last elements read as f32 where it is
 * a float tensor, and the metadata looked up.  Nothing may crash or read
 * outside the buffer; what parses must be self-consistent (tensors in data
 * order, covering it exactly, each size matching its shape). */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "safetensors.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct safetensors *s = NULL;
        char err[512];
        uint64_t at = 0;

        if (safetensors_parse(data, size, "fuzz", &s, err, sizeof(err)) < 0) {
                FUZZ_CHECK(err[0] != '\0');
                return 0;
        }
        for (size_t i = 0; i < safetensors_count(s); i++) {
                const struct st_tensor *t = safetensors_tensor(s, i);
                float f[2];

                FUZZ_CHECK(t->offset == at);
                FUZZ_CHECK(t->size == t->n_elements * st_dtype_size(t->dtype));
                FUZZ_CHECK(safetensors_find(s, t->name) == t);
                at += t->size;
                if (t->n_elements > 0 && safetensors_read_f32(t, 0, 1, f) == 0)
                        FUZZ_CHECK(safetensors_read_f32(t, t->n_elements - 1, 1, f + 1) == 0);
        }
        (void) safetensors_metadata(s, "format");
        safetensors_close(s);
        return 0;
}

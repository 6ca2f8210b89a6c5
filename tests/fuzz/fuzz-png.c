/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* An image from a provider: sd_png_decode() on the bytes (the imagegen
 * skill's check of a provider's image decodes it).  Nothing may crash, leak
 * or read outside the buffer; a refusal says why; what decodes is within
 * the limits, and encodes again (with its text, where the keys and values
 * are what the encoder takes) to a PNG that decodes to the same pixels. */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "sd-png.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct sd_png_image img, again;
        char err[512];
        size_t out_size;
        void *out;
        int r;

        if (sd_png_decode(data, size, &img, err, sizeof(err)) < 0) {
                FUZZ_CHECK(err[0] != '\0');
                return 0;
        }
        FUZZ_CHECK(img.width >= 1 && img.width <= SD_PNG_SIDE_MAX);
        FUZZ_CHECK(img.height >= 1 && img.height <= SD_PNG_SIDE_MAX);
        FUZZ_CHECK((uint64_t) img.width * img.height <= SD_PNG_PIXELS_MAX);
        for (size_t i = 0; i < img.n_text; i++)
                FUZZ_CHECK(strlen(img.text[i].key) + strlen(img.text[i].value) < 2 * size);

        r = sd_png_encode(img.rgb, img.width, img.height, img.text, img.n_text, &out, &out_size, err, sizeof(err));
        if (r < 0)      /* a key or value the encoder does not write */
                r = sd_png_encode(img.rgb, img.width, img.height, NULL, 0, &out, &out_size, err, sizeof(err));
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(sd_png_decode(out, out_size, &again, err, sizeof(err)) == 0);
        FUZZ_CHECK(again.width == img.width && again.height == img.height);
        FUZZ_CHECK(memcmp(again.rgb, img.rgb, (size_t) img.width * img.height * 3) == 0);
        sd_png_image_free(&again);
        free(out);
        sd_png_image_free(&img);
        return 0;
}

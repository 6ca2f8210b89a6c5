/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The imagegen skill's images as PNG, with libpng (the header is not
 * png.h, which would hide libpng's own from the include path): 8-bit RGB
 * encoded into memory (the skill returns the bytes), with text chunks for
 * the generation's parameters (prompt, seed, model hash: "parameters" as
 * other SD tools write it); and the decoder for tests and for checking an
 * image a provider sent, which is input from a peer: any PNG, limits
 * checked, errors returned, never logged.
 *
 * Encoding is deterministic: the same pixels and text give the same bytes
 * with the same libpng and zlib (no time chunk is written). */

#include <stddef.h>
#include <stdint.h>

/* Sides and pixels, encoding and decoding: 192 MiB of RGB at most. */
#define SD_PNG_SIDE_MAX 16384u
#define SD_PNG_PIXELS_MAX (UINT64_C(1) << 26)
/* A text value's bytes. */
#define SD_PNG_TEXT_MAX (UINT32_C(1) << 20)
/* Decoding: the bytes of a chunk other than IDAT (a text of
 * SD_PNG_TEXT_MAX with its key and headers), also what a compressed one may
 * inflate to; and the ancillary chunks kept (text chunks encoded, too). */
#define SD_PNG_CHUNK_MAX (SD_PNG_TEXT_MAX + 4096)
#define SD_PNG_CHUNKS_MAX 1000u

/* A text chunk.  key: 1 … 79 bytes of printable ASCII without leading,
 * trailing or consecutive spaces (the PNG keyword rules).  value: UTF-8,
 * SD_PNG_TEXT_MAX bytes at most; ASCII is written as tEXt, anything else as
 * an uncompressed iTXt (tEXt is Latin-1). */
struct sd_png_text {
        const char *key;
        const char *value;
};

/* rgb [height][width][3] → a PNG in *ret (malloc'd, *ret_size bytes; the
 * caller frees), the text chunks before the image data.  -EINVAL (a side
 * of 0, a bad key or value), -E2BIG (over the limits), -ENOMEM, -EIO
 * (libpng failed), with the reason in err. */
int sd_png_encode(const uint8_t *rgb, uint32_t width, uint32_t height, const struct sd_png_text *text,
                  size_t n_text, void **ret, size_t *ret_size, char *err, size_t err_size);

struct sd_png_image {
        uint32_t width, height;
        uint8_t *rgb;                   /* [height][width][3] */
        struct sd_png_text *text;       /* tEXt, zTXt and iTXt in file order, keys and values in UTF-8 */
        size_t n_text;
        char *strings;                  /* what text points into */
};

/* Any PNG (grey, palette, 16-bit, alpha, interlaced) as 8-bit RGB: 16-bit
 * samples keep their high byte, alpha is dropped without compositing.
 * Memory: the image's RGB, its text, and libpng's buffers, bounded by
 * size and the limits above whatever the chunks claim.  -EBADMSG (not a
 * PNG, or a corrupt or truncated one), -E2BIG (over the limits), -ENOMEM,
 * with the reason in err.  *ret is filled only on success; free it with
 * sd_png_image_free(). */
int sd_png_decode(const void *png, size_t size, struct sd_png_image *ret, char *err, size_t err_size);
void sd_png_image_free(struct sd_png_image *img);

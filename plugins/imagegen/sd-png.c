/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* sd-png.h with libpng.  libpng reports errors by longjmp from its error
 * callback: each setjmp is in a small function (encode_run, decode_run)
 * whose own locals are not changed after it, everything they fill lives in
 * the caller's structs, and the caller frees it whichever way they return. */

#include <errno.h>
#include <inttypes.h>
#include <png.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn-error.h"
#include "sd-png.h"

/* What libpng's callbacks share with the code around them. */
struct png_io {
        /* Writing: the PNG so far. */
        uint8_t *out;
        size_t out_size, out_alloc;
        /* Reading: the PNG given. */
        const uint8_t *in;
        size_t in_size, in_at;
        bool oom;               /* a failed allocation of ours */
        char message[256];      /* libpng's error */
};

static void on_error(png_structp png, png_const_charp msg) {
        struct png_io *io = png_get_error_ptr(png);

        snprintf(io->message, sizeof(io->message), "%s", msg);
        png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) {
        /* A codec does not log: warnings are ancillary data libpng skips. */
}

static void on_write(png_structp png, png_bytep data, size_t n) {
        struct png_io *io = png_get_io_ptr(png);

        if (n > io->out_alloc - io->out_size) {
                size_t want = io->out_alloc ? io->out_alloc : 65536;
                uint8_t *p;

                while (want - io->out_size < n) {
                        if (want > SIZE_MAX / 2) {
                                io->oom = true;
                                png_error(png, "the PNG is too large");
                        }
                        want *= 2;
                }
                p = realloc(io->out, want);
                if (!p) {
                        io->oom = true;
                        png_error(png, "out of memory");
                }
                io->out = p;
                io->out_alloc = want;
        }
        memcpy(io->out + io->out_size, data, n);
        io->out_size += n;
}

static void on_flush(png_structp png) {
}

static void on_read(png_structp png, png_bytep data, size_t n) {
        struct png_io *io = png_get_io_ptr(png);

        if (n > io->in_size - io->in_at)
                png_error(png, "the PNG is truncated");
        memcpy(data, io->in + io->in_at, n);
        io->in_at += n;
}

/* ---- Encoding ---- */

static bool key_valid(const char *key) {
        size_t n = strlen(key);

        if (n == 0 || n > 79 || key[0] == ' ' || key[n - 1] == ' ')
                return false;
        for (size_t i = 0; i < n; i++)
                if (key[i] < 32 || key[i] > 126 || (key[i] == ' ' && key[i + 1] == ' '))
                        return false;
        return true;
}

/* 1 for ASCII, 0 for other valid UTF-8 (no overlongs, surrogates or code
 * points past U+10FFFF), -1 for bytes that are not UTF-8. */
static int utf8_kind(const char *s) {
        const uint8_t *p = (const uint8_t *) s;
        bool ascii = true;

        while (*p) {
                uint32_t cp;
                size_t len;

                if (*p < 0x80) {
                        p++;
                        continue;
                }
                ascii = false;
                if ((*p & 0xe0) == 0xc0) {
                        cp = *p & 0x1f;
                        len = 2;
                } else if ((*p & 0xf0) == 0xe0) {
                        cp = *p & 0x0f;
                        len = 3;
                } else if ((*p & 0xf8) == 0xf0) {
                        cp = *p & 0x07;
                        len = 4;
                } else
                        return -1;
                for (size_t i = 1; i < len; i++) {
                        if ((p[i] & 0xc0) != 0x80)
                                return -1;
                        cp = cp << 6 | (p[i] & 0x3f);
                }
                if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
                    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return -1;
                p += len;
        }
        return ascii;
}

static int sides_valid(uint32_t width, uint32_t height, char *err, size_t err_size) {
        if (width == 0 || height == 0)
                return nn_error(err, err_size, -EINVAL, "an image of %" PRIu32 "×%" PRIu32 " is empty", width,
                                height);
        if (width > SD_PNG_SIDE_MAX || height > SD_PNG_SIDE_MAX || (uint64_t) width * height > SD_PNG_PIXELS_MAX)
                return nn_error(err, err_size, -E2BIG, "an image of %" PRIu32 "×%" PRIu32 " is over the %u pixels "
                                "a side and %" PRIu64 " pixels allowed", width, height, SD_PNG_SIDE_MAX,
                                SD_PNG_PIXELS_MAX);
        return 0;
}

static int encode_run(png_structp png, png_infop info, struct png_io *io, uint32_t width, uint32_t height,
                      png_bytepp rows, png_textp chunks, int n_chunks) {
        if (setjmp(png_jmpbuf(png)))
                return -1;
        png_set_write_fn(png, io, on_write, on_flush);
        png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        if (n_chunks > 0)
                png_set_text(png, info, chunks, n_chunks);
        png_write_info(png, info);
        png_write_image(png, rows);
        png_write_end(png, info);
        return 0;
}

int sd_png_encode(const uint8_t *rgb, uint32_t width, uint32_t height, const struct sd_png_text *text,
                  size_t n_text, void **ret, size_t *ret_size, char *err, size_t err_size) {
        struct png_io io = {};
        png_structp png = NULL;
        png_infop info = NULL;
        png_bytepp rows = NULL;
        png_textp chunks = NULL;
        int r;

        *ret = NULL;
        *ret_size = 0;
        r = sides_valid(width, height, err, err_size);
        if (r < 0)
                return r;
        if (n_text > SD_PNG_CHUNKS_MAX)
                return nn_error(err, err_size, -E2BIG, "%zu text chunks, over the %u allowed", n_text,
                                SD_PNG_CHUNKS_MAX);
        for (size_t i = 0; i < n_text; i++) {
                if (!key_valid(text[i].key))
                        return nn_error(err, err_size, -EINVAL, "PNG text key \"%s\" is not 1 … 79 printable ASCII "
                                        "characters without leading, trailing or double spaces", text[i].key);
                if (strlen(text[i].value) > SD_PNG_TEXT_MAX)
                        return nn_error(err, err_size, -E2BIG, "PNG text %s is over %" PRIu32 " bytes", text[i].key,
                                        SD_PNG_TEXT_MAX);
                if (utf8_kind(text[i].value) < 0)
                        return nn_error(err, err_size, -EINVAL, "PNG text %s is not UTF-8", text[i].key);
        }

        rows = malloc(height * sizeof(*rows));
        chunks = calloc(n_text ?: 1, sizeof(*chunks));
        if (!rows || !chunks) {
                r = nn_error(err, err_size, -ENOMEM, "out of memory for a PNG");
                goto finish;
        }
        /* libpng reads the rows and the texts, never writes them. */
        for (uint32_t y = 0; y < height; y++)
                rows[y] = (png_bytep) (rgb + (size_t) y * width * 3);
        for (size_t i = 0; i < n_text; i++) {
                bool ascii = utf8_kind(text[i].value) == 1;

                chunks[i] = (png_text) {
                        .compression = ascii ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE,
                        .key = (png_charp) text[i].key,
                        .text = (png_charp) text[i].value,
                        .text_length = ascii ? strlen(text[i].value) : 0,
                        .itxt_length = ascii ? 0 : strlen(text[i].value),
                        .lang = (png_charp) "",
                        .lang_key = (png_charp) "",
                };
        }

        png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &io, on_error, on_warning);
        if (png)
                info = png_create_info_struct(png);
        if (!png || !info) {
                r = nn_error(err, err_size, -ENOMEM, "out of memory for libpng");
                goto finish;
        }
        if (encode_run(png, info, &io, width, height, rows, chunks, (int) n_text) < 0) {
                r = nn_error(err, err_size, io.oom ? -ENOMEM : -EIO, "cannot encode the PNG: %s", io.message);
                goto finish;
        }
        *ret = io.out;
        *ret_size = io.out_size;
        io.out = NULL;
        r = 0;
finish:
        if (png)
                png_destroy_write_struct(&png, info ? &info : NULL);
        free(io.out);
        free(rows);
        free(chunks);
        return r;
}

/* ---- Decoding ---- */

struct decode_state {
        struct sd_png_image img;
        png_bytepp rows;
        int r;          /* an error of ours, found between libpng's calls */
};

/* Latin-1 (utf8 false) or UTF-8 src appended to *at as UTF-8, NUL ended:
 * at most 2·strlen(src) + 1 bytes. */
static const char *append_utf8(char **at, const char *src, bool utf8) {
        char *start = *at, *p = *at;

        for (const uint8_t *s = (const uint8_t *) src; *s; s++) {
                if (utf8 || *s < 0x80)
                        *p++ = (char) *s;
                else {
                        *p++ = (char) (0xc0 | *s >> 6);
                        *p++ = (char) (0x80 | (*s & 0x3f));
                }
        }
        *p++ = 0;
        *at = p;
        return start;
}

static int decode_text(png_structp png, png_infop info, struct decode_state *st) {
        png_textp chunks;
        int n = png_get_text(png, info, &chunks, NULL);
        size_t total = 0;
        char *at;

        if (n <= 0)
                return 0;
        for (int i = 0; i < n; i++)
                total += 2 * strlen(chunks[i].key) + 2 * (chunks[i].text ? strlen(chunks[i].text) : 0) + 2;
        st->img.text = calloc((size_t) n, sizeof(*st->img.text));
        st->img.strings = malloc(total);
        if (!st->img.text || !st->img.strings)
                return -ENOMEM;
        at = st->img.strings;
        for (int i = 0; i < n; i++) {
                bool itxt = chunks[i].compression >= PNG_ITXT_COMPRESSION_NONE;

                st->img.text[i].key = append_utf8(&at, chunks[i].key, false);
                st->img.text[i].value = append_utf8(&at, chunks[i].text ? chunks[i].text : "", itxt);
        }
        st->img.n_text = (size_t) n;
        return 0;
}

static int decode_run(png_structp png, png_infop info, struct png_io *io, struct decode_state *st) {
        png_uint_32 width, height;
        int depth, color, interlace;

        if (setjmp(png_jmpbuf(png)))
                return -1;
        png_set_read_fn(png, io, on_read);
        /* The limits are checked here, to tell them from corruption;
         * nothing is allocated by the image's size before. */
        png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
        /* What a compressed text or profile may inflate to, and how many
         * ancillary chunks libpng keeps (chunk_framing() bounds the rest). */
        png_set_chunk_malloc_max(png, SD_PNG_CHUNK_MAX);
        png_set_chunk_cache_max(png, SD_PNG_CHUNKS_MAX);
        png_read_info(png, info);
        png_get_IHDR(png, info, &width, &height, &depth, &color, &interlace, NULL, NULL);
        if (width > SD_PNG_SIDE_MAX || height > SD_PNG_SIDE_MAX || (uint64_t) width * height > SD_PNG_PIXELS_MAX) {
                st->r = -E2BIG;
                return 0;
        }
        /* To 8-bit RGB whatever it is. */
        png_set_expand(png);
        png_set_strip_16(png);
        png_set_strip_alpha(png);
        png_set_gray_to_rgb(png);
        png_set_interlace_handling(png);
        png_read_update_info(png, info);
        if (png_get_rowbytes(png, info) != (size_t) width * 3) {
                st->r = -EBADMSG;
                return 0;
        }
        st->img.width = width;
        st->img.height = height;
        st->img.rgb = malloc((size_t) width * height * 3);
        st->rows = malloc(height * sizeof(*st->rows));
        if (!st->img.rgb || !st->rows) {
                st->r = -ENOMEM;
                return 0;
        }
        for (png_uint_32 y = 0; y < height; y++)
                st->rows[y] = st->img.rgb + (size_t) y * width * 3;
        png_read_image(png, st->rows);
        png_read_end(png, info);
        st->r = decode_text(png, info, st);
        return 0;
}

void sd_png_image_free(struct sd_png_image *img) {
        free(img->rgb);
        free(img->text);
        free(img->strings);
        *img = (struct sd_png_image) {};
}

static uint32_t be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

/* The chunks' lengths, before libpng sees them: it allocates an ancillary
 * chunk's whole length before reading it (up to 2 GiB for a 12-byte
 * header, its "too large" being only a warning), so every chunk must lie
 * within the bytes given, and every one but IDAT within SD_PNG_CHUNK_MAX:
 * what libpng allocates is then bounded by the image and that. */
static int chunk_framing(const uint8_t *png, size_t size, char *err, size_t err_size) {
        for (size_t at = 8; at < size;) {
                uint32_t len;
                char type[5] = "";

                if (size - at < 12)
                        return nn_error(err, err_size, -EBADMSG, "a bad PNG: a chunk at byte %zu is truncated", at);
                len = be32(png + at);
                for (size_t i = 0; i < 4; i++)
                        type[i] = png[at + 4 + i] >= 'A' && png[at + 4 + i] <= 'z' ? (char) png[at + 4 + i] : '?';
                if (len > size - at - 12)
                        return nn_error(err, err_size, -EBADMSG, "a bad PNG: chunk %s at byte %zu claims %" PRIu32
                                        " bytes, past the end", type, at, len);
                if (len > SD_PNG_CHUNK_MAX && memcmp(png + at + 4, "IDAT", 4) != 0)
                        return nn_error(err, err_size, -E2BIG, "chunk %s at byte %zu has %" PRIu32 " bytes, over the "
                                        "%" PRIu32 " allowed", type, at, len, (uint32_t) SD_PNG_CHUNK_MAX);
                if (memcmp(png + at + 4, "IEND", 4) == 0)
                        break;
                at += 12 + (size_t) len;
        }
        return 0;
}

int sd_png_decode(const void *data, size_t size, struct sd_png_image *ret, char *err, size_t err_size) {
        struct png_io io = { .in = data, .in_size = size };
        struct decode_state st = {};
        png_structp png;
        png_infop info = NULL;
        int r;

        *ret = (struct sd_png_image) {};
        if (size < 8 || png_sig_cmp(data, 0, 8) != 0)
                return nn_error(err, err_size, -EBADMSG, "not a PNG (no PNG signature)");
        r = chunk_framing(data, size, err, err_size);
        if (r < 0)
                return r;
        png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &io, on_error, on_warning);
        if (png)
                info = png_create_info_struct(png);
        if (!png || !info) {
                r = nn_error(err, err_size, -ENOMEM, "out of memory for libpng");
                goto finish;
        }
        if (decode_run(png, info, &io, &st) < 0)
                r = nn_error(err, err_size, io.oom ? -ENOMEM : -EBADMSG, "a bad PNG: %s", io.message);
        else if (st.r == -E2BIG)
                r = nn_error(err, err_size, -E2BIG, "a PNG of %" PRIu32 "×%" PRIu32 ", over the %u pixels a "
                             "side and %" PRIu64 " pixels allowed", png_get_image_width(png, info),
                             png_get_image_height(png, info), SD_PNG_SIDE_MAX, SD_PNG_PIXELS_MAX);
        else if (st.r == -EBADMSG)
                r = nn_error(err, err_size, -EBADMSG, "a PNG libpng does not make 8-bit RGB of");
        else if (st.r < 0)
                r = nn_error(err, err_size, st.r, "out of memory for a PNG");
        else {
                *ret = st.img;
                st.img = (struct sd_png_image) {};
                r = 0;
        }
finish:
        if (png)
                png_destroy_read_struct(&png, info ? &info : NULL, NULL);
        sd_png_image_free(&st.img);
        free(st.rows);
        return r;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "utf8.h"

/* Length of the valid sequence at s (at most n bytes), or 0. */
static size_t valid_sequence(const uint8_t *s, size_t n) {
        uint32_t cp;
        size_t len;

        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                len = 2, cp = s[0] & 0x1f;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
                len = 3, cp = s[0] & 0x0f;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                len = 4, cp = s[0] & 0x07;
        else
                return 0;
        if (n < len)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return len;
}

size_t utf8_sanitized_len(const char *src, size_t n) {
        const uint8_t *s = (const uint8_t *) src;
        size_t i = 0, w = 0;

        while (i < n) {
                size_t len = valid_sequence(s + i, n - i);

                w += len ? len : 3;
                i += len ? len : 1;
        }
        return w;
}

size_t utf8_sanitize(const char *src, size_t n, char *dst) {
        const uint8_t *s = (const uint8_t *) src;
        size_t i = 0, w = 0;

        while (i < n) {
                size_t len = valid_sequence(s + i, n - i);

                if (len == 0) {
                        memcpy(dst + w, "\xef\xbf\xbd", 3);
                        w += 3;
                        i++;
                } else {
                        memcpy(dst + w, s + i, len);
                        w += len;
                        i += len;
                }
        }
        return w;
}

/* The bytes a lead byte announces, or 0 when it leads nothing. */
static size_t announced(uint8_t b) {
        return b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
}

size_t utf8_stable_prefix(const char *src, size_t n) {
        const uint8_t *s = (const uint8_t *) src;
        size_t i = 0;

        while (i < n) {
                size_t len = valid_sequence(s + i, n - i), want = announced(s[i]);

                if (len == 0 && want > n - i) {
                        /* Cut short: more bytes may still make it valid. */
                        bool could = true;

                        for (size_t k = i + 1; k < n; k++)
                                could = could && (s[k] & 0xc0) == 0x80;
                        if (could)
                                return i;
                }
                i += len ? len : 1;
        }
        return n;
}

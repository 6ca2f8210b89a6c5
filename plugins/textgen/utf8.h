/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Generated text as valid UTF-8.  A model's tokens are bytes: a byte-level
 * vocabulary can emit any byte sequence, and a generation cut by max_tokens
 * can end inside a character.  The text a skill returns travels as a
 * protocol string, which must be UTF-8, so each byte that does not begin a
 * valid sequence (RFC 3629: no overlongs, surrogates or code points past
 * U+10FFFF) becomes U+FFFD, as a text decoder would show it. */

#include <stddef.h>

/* Writes the sanitised form of src[0..n) to dst, which holds at least
 * UTF8_SANITIZED_MAX(n) bytes, and returns its length (no NUL added). */
#define UTF8_SANITIZED_MAX(n) (3 * (n))
size_t utf8_sanitize(const char *src, size_t n, char *dst);
/* The length utf8_sanitize() would return, without writing. */
size_t utf8_sanitized_len(const char *src, size_t n);

/* How much of src[0..n) sanitises the same whatever bytes follow: all of
 * it but a trailing sequence cut short.  Sanitising a text piece by piece
 * at such points gives the same bytes as sanitising it whole, which is
 * what lets a stream of text (the previews) equal the final result. */
size_t utf8_stable_prefix(const char *src, size_t n);

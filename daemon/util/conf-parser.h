/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A YAML configuration loader driven by a table of keys, in the spirit of
 * systemd's conf-parser: each daemon describes its keys once (dotted path,
 * type, range, where the value lives in its struct, whether a change needs a
 * restart) and this module does the parsing, validation, drop-in merging and
 * reload comparison for all of them.
 *
 * Knows nothing of swarmd: see config.h for its schema.  Never logs: errors
 * come back as a message "FILE:LINE:COLUMN: what is wrong" for the caller,
 * who decides whether it is fatal. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum conf_type {
        CONF_STRING,    /* char *, malloc'd, never NULL after init */
        CONF_BOOL,      /* bool: true/false (also yes/no, on/off) */
        CONF_UINT,      /* uint64_t in [min, max] */
        CONF_ENUM,      /* int: index into names[] */
        CONF_DURATION,  /* uint64_t µs in [min, max]: "250ms", "30s", "5min", "2h", "1d"; a bare number is seconds */
        CONF_SIZE,      /* uint64_t bytes in [min, max]: "512", "64K", "4M", "16G", "1T" (1024-based; also KiB…TiB) */
        CONF_STRV,      /* char **, NULL-terminated, malloc'd; a YAML sequence of strings; no value is an empty list */
};

/* A key given no value ("name:" or "name: ~") is an error, except for
 * CONF_STRV; a section given no value is empty.  Values may be plain or
 * quoted scalars.  Sections are nested mappings: "log: {level: info}" sets
 * "log.level", a dotted key name "log.level: info" is an error. */

struct conf_key {
        const char *path;               /* dotted path, e.g. "log.level" */
        enum conf_type type;
        size_t offset;                  /* of the field in the target struct */
        uint64_t min, max;              /* CONF_UINT/DURATION/SIZE; max == 0 means unbounded */
        const char *const *names;       /* CONF_ENUM: NULL-terminated */
        bool needs_restart;             /* a change is applied only by a restart */
        /* CONF_STRING, CONF_STRV (each item): a check of the text beyond its
         * type (an endpoint, a length); false with a short why in error. */
        bool (*check)(const char *value, char *error, size_t size);
};

/* Parses one YAML document from f (named name in messages) onto target:
 * every key present replaces the value target holds, keys absent are left
 * alone.  An empty document (or one of only comments) changes nothing.
 * Rejects unknown keys, duplicate keys, values of the wrong type or out of
 * range, and YAML syntax errors.  Returns 0, or a negative errno with *error
 * set to a malloc'd message.  On error target may hold some of the new
 * values, each of them valid; callers parse into a scratch copy. */
int conf_parse_stream(const struct conf_key *keys, size_t n_keys, void *target,
                      FILE *f, const char *name, char **error);

int conf_parse_file(const struct conf_key *keys, size_t n_keys, void *target,
                    const char *path, char **error);

/* Parses path, then every PATH.d/ *.yaml in lexical (strcmp) order of file
 * name, each overriding what came before, as systemd drop-ins do.  A missing
 * path is -ENOENT (and no message), unless drop-ins exist, which are then
 * applied on their own.  A missing or empty drop-in directory is fine. */
int conf_load(const struct conf_key *keys, size_t n_keys, void *target,
              const char *path, char **error);

/* Frees the strings and string lists target holds for keys (not target). */
void conf_free_values(const struct conf_key *keys, size_t n_keys, void *target);

/* A duration as CONF_DURATION spells it ("250ms", "30s", "5min"; a bare
 * number is seconds), in µs, for keys whose value holds a duration among
 * other words.  -EINVAL when malformed, -ERANGE on overflow. */
int conf_parse_duration(const char *s, uint64_t *ret);

bool conf_value_equal(const struct conf_key *key, const void *a, const void *b);

/* Moves key's value from src into dst, freeing what dst held and leaving
 * src's slot empty (NULL / zero) so that freeing src is still safe. */
void conf_value_move(const struct conf_key *key, void *dst, void *src);

/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

#include "conf-parser.h"
#include "macro.h"
#include "time-util.h"

/* One value of any conf_type, parsed before it replaces the target's. */
union conf_value {
        char *string;
        bool boolean;
        uint64_t number;        /* CONF_UINT, CONF_DURATION, CONF_SIZE */
        int index;              /* CONF_ENUM */
        char **strv;
};

struct conf_context {
        const struct conf_key *keys;
        size_t n_keys;
        void *target;
        const char *name;
        yaml_document_t *document;
        char **error;
        /* Errors so far: after one, parsing goes on to find the others (up
         * to CONF_ERRORS_MAX), each a line of *error. */
        size_t *n_errors;
};

#define CONF_ERRORS_MAX 20

struct conf_reader {
        FILE *f;
        int error;              /* errno of a failed read, 0 if none */
};

struct conf_unit {
        const char *suffix;
        uint64_t factor;
};

#define USEC_PER_MIN  (60 * USEC_PER_SEC)
#define USEC_PER_HOUR (60 * USEC_PER_MIN)
#define USEC_PER_DAY  (24 * USEC_PER_HOUR)

/* Largest first: conf_format_number() picks the first that divides exactly. */
static const struct conf_unit duration_units[] = {
        { "d",   USEC_PER_DAY },
        { "h",   USEC_PER_HOUR },
        { "min", USEC_PER_MIN },
        { "s",   USEC_PER_SEC },
        { "ms",  USEC_PER_MSEC },
        { "us",  1 },
};

static const struct conf_unit size_units[] = {
        { "T",   UINT64_C(1) << 40 },
        { "G",   UINT64_C(1) << 30 },
        { "M",   UINT64_C(1) << 20 },
        { "K",   UINT64_C(1) << 10 },
        { "TiB", UINT64_C(1) << 40 },
        { "GiB", UINT64_C(1) << 30 },
        { "MiB", UINT64_C(1) << 20 },
        { "KiB", UINT64_C(1) << 10 },
        { "",    1 },
};

static const char *const type_names[] = {
        [CONF_STRING]   = "a string",
        [CONF_BOOL]     = "a boolean",
        [CONF_UINT]     = "a number",
        [CONF_ENUM]     = "a string",
        [CONF_DURATION] = "a duration",
        [CONF_SIZE]     = "a size",
        [CONF_STRV]     = "a list",
};

static void yaml_parser_deletep(yaml_parser_t **p) {
        if (*p)
                yaml_parser_delete(*p);
}

/* Safe on a zeroed document too: yaml_parser_load() zeroes it first and
 * deletes it itself on failure. */
static void yaml_document_deletep(yaml_document_t *d) {
        yaml_document_delete(d);
}

static void *field_of(const struct conf_key *key, void *base) {
        return (char *) base + key->offset;
}

static const void *const_field_of(const struct conf_key *key, const void *base) {
        return (const char *) base + key->offset;
}

static size_t strv_length(char *const *l) {
        size_t n = 0;

        if (l)
                while (l[n])
                        n++;
        return n;
}

/* Sets *error to "NAME:LINE:COLUMN: message" and returns r; with libyaml's
 * 0-based marks shown 1-based, as editors count. */
_printf_(4, 5)
static int conf_error_at(const struct conf_context *c, int r, yaml_mark_t mark, const char *format, ...) {
        _cleanup_free_ char *message = NULL;
        va_list ap;
        int k;

        va_start(ap, format);
        k = vasprintf(&message, format, ap);
        va_end(ap);
        if (k < 0) {
                message = NULL;
                return -ENOMEM;
        }

        if (c->error) {
                size_t n = c->n_errors ? (*c->n_errors)++ : 0;
                char *joined = NULL;

                if (n >= CONF_ERRORS_MAX) {
                        if (n == CONF_ERRORS_MAX &&
                            asprintf(&joined, "%s\n%s: more errors follow; only the first %d are shown",
                                     *c->error, c->name, CONF_ERRORS_MAX) >= 0) {
                                free(*c->error);
                                *c->error = joined;
                        }
                        return r;
                }
                if (n > 0 && *c->error)
                        k = asprintf(&joined, "%s\n%s:%zu:%zu: %s", *c->error, c->name, mark.line + 1,
                                     mark.column + 1, message);
                else
                        k = asprintf(&joined, "%s:%zu:%zu: %s", c->name, mark.line + 1, mark.column + 1, message);
                if (k < 0)
                        return -ENOMEM;
                free(*c->error);
                *c->error = joined;
        }
        return r;
}

/* For errors without a position: "NAME: strerror". */
static int conf_error_errno(char **error, int r, const char *name) {
        if (error) {
                free(*error);
                if (asprintf(error, "%s: %s", name, strerror(-r)) < 0) {
                        *error = NULL;
                        return -ENOMEM;
                }
        }
        return r;
}

static const char *node_kind(const yaml_node_t *node) {
        switch (node->type) {
        case YAML_SCALAR_NODE:
                return "a scalar";
        case YAML_SEQUENCE_NODE:
                return "a list";
        case YAML_MAPPING_NODE:
                return "a mapping";
        default:
                return "nothing";
        }
}

static const char *scalar_text(const yaml_node_t *node) {
        return (const char *) node->data.scalar.value;
}

/* YAML's null: an empty or "~"/"null" plain scalar, or one tagged !!null.
 * Quoted "" and "null" are strings. */
static bool node_is_null(const yaml_node_t *node) {
        const char *v;

        if (node->type != YAML_SCALAR_NODE)
                return false;
        if (node->tag && strcmp((const char *) node->tag, YAML_NULL_TAG) == 0)
                return true;
        if (node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
                return false;

        v = scalar_text(node);
        return v[0] == '\0' || strcmp(v, "~") == 0 ||
                strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* Scalars may carry NUL bytes through "\0" escapes; no key or value may. */
static bool scalar_has_nul(const yaml_node_t *node) {
        return strlen(scalar_text(node)) != node->data.scalar.length;
}

static const struct conf_key *conf_find_key(const struct conf_context *c, const char *path) {
        for (size_t i = 0; i < c->n_keys; i++)
                if (strcmp(c->keys[i].path, path) == 0)
                        return c->keys + i;
        return NULL;
}

/* A section is a path that some key's path continues with ".…". */
static bool conf_is_section(const struct conf_context *c, const char *path) {
        size_t n = strlen(path);

        for (size_t i = 0; i < c->n_keys; i++)
                if (strncmp(c->keys[i].path, path, n) == 0 && c->keys[i].path[n] == '.')
                        return true;
        return false;
}

static char *strv_join(const char *const *l, const char *separator) {
        size_t n = 1, k = strlen(separator);
        char *s, *p;

        for (const char *const *i = l; *i; i++)
                n += strlen(*i) + k;

        s = p = malloc(n);
        if (!s)
                return NULL;
        *p = '\0';
        for (const char *const *i = l; *i; i++)
                p = stpcpy(i == l ? p : stpcpy(p, separator), *i);
        return s;
}

static void value_free(enum conf_type type, union conf_value *v) {
        if (type == CONF_STRING)
                free(v->string);
        else if (type == CONF_STRV)
                strv_free(v->strv);
}

/* The field of each type, read and written through the union so that the
 * per-type layout lives in one place. */
static void value_store(enum conf_type type, void *field, union conf_value *v) {
        switch (type) {
        case CONF_STRING:
                free(*(char **) field);
                *(char **) field = TAKE_PTR(v->string);
                break;
        case CONF_BOOL:
                *(bool *) field = v->boolean;
                break;
        case CONF_UINT:
        case CONF_DURATION:
        case CONF_SIZE:
                *(uint64_t *) field = v->number;
                break;
        case CONF_ENUM:
                *(int *) field = v->index;
                break;
        case CONF_STRV:
                strv_free(*(char ***) field);
                *(char ***) field = TAKE_PTR(v->strv);
                break;
        }
}

/* Parses decimal digits only: no sign, no space, no base prefix.  Returns the
 * number of characters consumed, 0 if none; -ERANGE on overflow. */
static int parse_digits(const char *s, uint64_t *ret) {
        uint64_t v = 0;
        int n = 0;

        for (; s[n] >= '0' && s[n] <= '9'; n++) {
                unsigned d = (unsigned) (s[n] - '0');

                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *ret = v;
        return n;
}

/* A number followed by one of units' suffixes (exact match), scaled by it.
 * Returns 0, -EINVAL on a malformed value, -ERANGE on overflow. */
static int parse_with_unit(const char *s, const struct conf_unit *units, size_t n_units,
                           const char *bare_suffix, uint64_t *ret) {
        uint64_t v;
        int n;

        n = parse_digits(s, &v);
        if (n < 0)
                return n;
        if (n == 0)
                return -EINVAL;

        /* The bare number has the unit bare_suffix names. */
        if (s[n] == '\0')
                s = bare_suffix;
        else
                s += n;

        for (size_t i = 0; i < n_units; i++)
                if (strcmp(s, units[i].suffix) == 0) {
                        if (v > UINT64_MAX / units[i].factor)
                                return -ERANGE;
                        *ret = v * units[i].factor;
                        return 0;
                }
        return -EINVAL;
}

int conf_parse_duration(const char *s, uint64_t *ret) {
        if (!s || !ret)
                return -EINVAL;
        return parse_with_unit(s, duration_units, ELEMENTSOF(duration_units), "s", ret);
}

/* The shortest exact spelling of v in units: 90000000 µs is "90s", 3 MiB is
 * "3M".  For the bounds in range messages. */
static void conf_format_number(enum conf_type type, uint64_t v, char *buf, size_t size) {
        const struct conf_unit *units = type == CONF_DURATION ? duration_units : size_units;
        size_t n_units = type == CONF_DURATION ? ELEMENTSOF(duration_units) : ELEMENTSOF(size_units);

        if (type == CONF_UINT || v == 0) {
                snprintf(buf, size, "%" PRIu64, v);
                return;
        }
        for (size_t i = 0; i < n_units; i++)
                if (v % units[i].factor == 0) {
                        snprintf(buf, size, "%" PRIu64 "%s", v / units[i].factor, units[i].suffix);
                        return;
                }
        snprintf(buf, size, "%" PRIu64, v);
}

static int conf_check_range(const struct conf_context *c, const struct conf_key *key,
                            const yaml_node_t *node, uint64_t v) {
        char min[32], max[32];

        if (v >= key->min && (key->max == 0 || v <= key->max))
                return 0;

        conf_format_number(key->type, key->min, min, sizeof(min));
        conf_format_number(key->type, key->max, max, sizeof(max));
        if (key->max == 0)
                return conf_error_at(c, -EINVAL, node->start_mark,
                                     "%s: value \"%s\" is out of range, must be at least %s",
                                     key->path, scalar_text(node), min);
        return conf_error_at(c, -EINVAL, node->start_mark,
                             "%s: value \"%s\" is out of range, must be between %s and %s",
                             key->path, scalar_text(node), min, max);
}

/* The key's own check of one string (conf_key.check). */
static int conf_check_text(const struct conf_context *c, const struct conf_key *key, const yaml_node_t *node) {
        char why[256];

        if (!key->check || key->check(scalar_text(node), why, sizeof(why)))
                return 0;
        return conf_error_at(c, -EINVAL, node->start_mark, "%s: %s", key->path, why);
}

static int conf_parse_string(const struct conf_context *c, const struct conf_key *key,
                             const yaml_node_t *node, union conf_value *ret) {
        int r;

        if (scalar_has_nul(node))
                return conf_error_at(c, -EINVAL, node->start_mark, "%s: value contains a NUL byte", key->path);
        r = conf_check_text(c, key, node);
        if (r < 0)
                return r;

        ret->string = strdup(scalar_text(node));
        return ret->string ? 0 : -ENOMEM;
}

static int conf_parse_bool(const struct conf_context *c, const struct conf_key *key,
                           const yaml_node_t *node, union conf_value *ret) {
        static const char *const yes[] = { "true", "yes", "on" }, *const no[] = { "false", "no", "off" };
        const char *v = scalar_text(node);

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(v, yes[i]) == 0) {
                        ret->boolean = true;
                        return 0;
                }
                if (strcasecmp(v, no[i]) == 0) {
                        ret->boolean = false;
                        return 0;
                }
        }
        return conf_error_at(c, -EINVAL, node->start_mark,
                             "%s: invalid boolean \"%s\", expected true/false, yes/no or on/off",
                             key->path, v);
}

static int conf_parse_enum(const struct conf_context *c, const struct conf_key *key,
                           const yaml_node_t *node, union conf_value *ret) {
        _cleanup_free_ char *allowed = NULL;
        const char *v = scalar_text(node);

        for (int i = 0; key->names[i]; i++)
                if (strcmp(v, key->names[i]) == 0) {
                        ret->index = i;
                        return 0;
                }

        allowed = strv_join(key->names, ", ");
        if (!allowed)
                return -ENOMEM;
        return conf_error_at(c, -EINVAL, node->start_mark,
                             "%s: invalid value \"%s\", expected one of: %s", key->path, v, allowed);
}

static int conf_parse_number(const struct conf_context *c, const struct conf_key *key,
                             const yaml_node_t *node, union conf_value *ret) {
        const char *v = scalar_text(node);
        uint64_t n;
        int r;

        switch (key->type) {
        case CONF_UINT:
                r = parse_digits(v, &n);
                if (r >= 0)
                        r = r > 0 && v[r] == '\0' ? 0 : -EINVAL;
                if (r == -EINVAL)
                        return conf_error_at(c, r, node->start_mark,
                                             "%s: invalid number \"%s\", expected decimal digits",
                                             key->path, v);
                break;
        case CONF_DURATION:
                r = parse_with_unit(v, duration_units, ELEMENTSOF(duration_units), "s", &n);
                if (r == -EINVAL)
                        return conf_error_at(c, r, node->start_mark,
                                             "%s: invalid duration \"%s\", expected a number followed by us, ms, s, min, h or d",
                                             key->path, v);
                break;
        case CONF_SIZE:
                r = parse_with_unit(v, size_units, ELEMENTSOF(size_units), "", &n);
                if (r == -EINVAL)
                        return conf_error_at(c, r, node->start_mark,
                                             "%s: invalid size \"%s\", expected a number optionally followed by K, M, G or T",
                                             key->path, v);
                break;
        default:
                return -EINVAL;
        }
        if (r == -ERANGE)
                return conf_error_at(c, -EINVAL, node->start_mark,
                                     "%s: value \"%s\" is too large", key->path, v);

        r = conf_check_range(c, key, node, n);
        if (r < 0)
                return r;

        ret->number = n;
        return 0;
}

static int conf_parse_strv(const struct conf_context *c, const struct conf_key *key,
                           const yaml_node_t *node, union conf_value *ret) {
        _cleanup_strv_free_ char **l = NULL;
        size_t n = 0;
        int r;

        l = calloc((size_t) (node->data.sequence.items.top - node->data.sequence.items.start) + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;

        for (yaml_node_item_t *i = node->data.sequence.items.start; i < node->data.sequence.items.top; i++) {
                yaml_node_t *item = yaml_document_get_node(c->document, *i);

                if (item->type != YAML_SCALAR_NODE)
                        return conf_error_at(c, -EINVAL, item->start_mark,
                                             "%s: expected a list of strings, got %s in the list",
                                             key->path, node_kind(item));
                if (node_is_null(item))
                        return conf_error_at(c, -EINVAL, item->start_mark,
                                             "%s: missing value in the list", key->path);
                if (scalar_has_nul(item))
                        return conf_error_at(c, -EINVAL, item->start_mark,
                                             "%s: value contains a NUL byte", key->path);
                r = conf_check_text(c, key, item);
                if (r < 0)
                        return r;

                l[n] = strdup(scalar_text(item));
                if (!l[n])
                        return -ENOMEM;
                n++;
        }

        ret->strv = TAKE_PTR(l);
        return 0;
}

/* Parses value into a scratch union, then replaces the target's: a key that
 * fails leaves the target's value as it was and leaks nothing. */
static int conf_parse_value(const struct conf_context *c, const struct conf_key *key,
                            const yaml_node_t *key_node, const yaml_node_t *value) {
        union conf_value v = {};
        int r;

        if (node_is_null(value)) {
                if (key->type != CONF_STRV)
                        return conf_error_at(c, -EINVAL, key_node->start_mark, "%s: missing value", key->path);

                /* An empty list: "peers:" with every entry commented out. */
                v.strv = calloc(1, sizeof(char *));
                if (!v.strv)
                        return -ENOMEM;
                value_store(key->type, field_of(key, c->target), &v);
                return 0;
        }

        if (key->type == CONF_STRV) {
                if (value->type != YAML_SEQUENCE_NODE)
                        return conf_error_at(c, -EINVAL, value->start_mark,
                                             "%s: expected a list, got %s", key->path, node_kind(value));
        } else if (value->type != YAML_SCALAR_NODE)
                return conf_error_at(c, -EINVAL, value->start_mark,
                                     "%s: expected %s, got %s", key->path, type_names[key->type], node_kind(value));

        switch (key->type) {
        case CONF_STRING:
                r = conf_parse_string(c, key, value, &v);
                break;
        case CONF_BOOL:
                r = conf_parse_bool(c, key, value, &v);
                break;
        case CONF_ENUM:
                r = conf_parse_enum(c, key, value, &v);
                break;
        case CONF_UINT:
        case CONF_DURATION:
        case CONF_SIZE:
                r = conf_parse_number(c, key, value, &v);
                break;
        case CONF_STRV:
                r = conf_parse_strv(c, key, value, &v);
                break;
        default:
                r = -EINVAL;
        }
        if (r < 0) {
                value_free(key->type, &v);
                return r;
        }

        value_store(key->type, field_of(key, c->target), &v);
        return 0;
}

static int conf_parse_mapping(const struct conf_context *c, const yaml_node_t *mapping, const char *prefix);

/* Checks that pair's key is a plain name not given before in mapping. */
static int conf_check_key(const struct conf_context *c, const yaml_node_t *mapping,
                          const yaml_node_pair_t *pair, const char *prefix) {
        const yaml_node_t *key = yaml_document_get_node(c->document, pair->key);
        const char *name;

        if (key->type != YAML_SCALAR_NODE)
                return conf_error_at(c, -EINVAL, key->start_mark,
                                     "expected a key name, got %s", node_kind(key));

        name = scalar_text(key);
        if (name[0] == '\0' || scalar_has_nul(key))
                return conf_error_at(c, -EINVAL, key->start_mark, "invalid empty key name");
        /* "log.level: info" at the top would bypass the duplicate check
         * against "log: {level: …}"; sections are nested mappings only. */
        if (strchr(name, '.'))
                return conf_error_at(c, -EINVAL, key->start_mark,
                                     "invalid key \"%s\": write sections as nested mappings, not dotted names",
                                     name);

        for (const yaml_node_pair_t *p = mapping->data.mapping.pairs.start; p < pair; p++) {
                const yaml_node_t *other = yaml_document_get_node(c->document, p->key);

                if (other->type == YAML_SCALAR_NODE && strcmp(scalar_text(other), name) == 0)
                        return conf_error_at(c, -EINVAL, key->start_mark,
                                             "duplicate key \"%s%s%s\" (first given at line %zu)",
                                             prefix ?: "", prefix ? "." : "", name,
                                             other->start_mark.line + 1);
        }
        return 0;
}

static int conf_parse_pair(const struct conf_context *c, const yaml_node_t *mapping,
                           const yaml_node_pair_t *pair, const char *prefix) {
        const yaml_node_t *key_node = yaml_document_get_node(c->document, pair->key);
        const yaml_node_t *value = yaml_document_get_node(c->document, pair->value);
        _cleanup_free_ char *path = NULL;
        const struct conf_key *key;
        int r;

        r = conf_check_key(c, mapping, pair, prefix);
        if (r < 0)
                return r;

        if (prefix)
                r = asprintf(&path, "%s.%s", prefix, scalar_text(key_node));
        else
                r = asprintf(&path, "%s", scalar_text(key_node));
        if (r < 0) {
                path = NULL;
                return -ENOMEM;
        }

        key = conf_find_key(c, path);
        if (key)
                return conf_parse_value(c, key, key_node, value);

        if (!conf_is_section(c, path))
                return conf_error_at(c, -EINVAL, key_node->start_mark, "unknown key \"%s\"", path);

        /* A section with everything below it commented out. */
        if (node_is_null(value))
                return 0;
        if (value->type != YAML_MAPPING_NODE)
                return conf_error_at(c, -EINVAL, value->start_mark,
                                     "%s: expected a section (a mapping of keys), got %s",
                                     path, node_kind(value));

        /* Recursion is bounded by the schema: only sections, which are
         * prefixes of the finite key paths, go deeper, so even an alias to
         * an enclosing mapping cannot loop. */
        return conf_parse_mapping(c, value, path);
}

static int conf_parse_mapping(const struct conf_context *c, const yaml_node_t *mapping, const char *prefix) {
        int first = 0, r;

        /* On past a bad key to report the others too; the first error is
         * the one returned. */
        for (yaml_node_pair_t *p = mapping->data.mapping.pairs.start; p < mapping->data.mapping.pairs.top; p++) {
                r = conf_parse_pair(c, mapping, p, prefix);
                if (r == -ENOMEM)
                        return r;
                if (r < 0 && first == 0)
                        first = r;
        }
        return first;
}

static int conf_read_handler(void *data, unsigned char *buffer, size_t size, size_t *size_read) {
        struct conf_reader *reader = data;

        *size_read = fread(buffer, 1, size, reader->f);
        if (*size_read == 0 && ferror(reader->f)) {
                reader->error = errno > 0 ? errno : EIO;
                return 0;
        }
        return 1;
}

/* Line and column (0-based, as libyaml's marks) of byte offset in f, read
 * again from its start; -ESPIPE and friends for a stream that cannot. */
static int offset_to_mark(FILE *f, size_t offset, yaml_mark_t *ret) {
        size_t line = 0, column = 0;

        if (fseek(f, 0, SEEK_SET) < 0)
                return negative_errno();
        for (size_t i = 0; i < offset; i++) {
                int ch = getc(f);

                if (ch == EOF)
                        return -EIO;
                if (ch == '\n') {
                        line++;
                        column = 0;
                } else if ((ch & 0xc0) != 0x80)
                        column++;       /* characters, not UTF-8 continuation bytes */
        }
        *ret = (yaml_mark_t) { .index = offset, .line = line, .column = column };
        return 0;
}

static int conf_parser_error(const struct conf_context *c, const yaml_parser_t *parser,
                             const struct conf_reader *reader) {
        if (reader->error > 0)
                return conf_error_errno(c->error, -reader->error, c->name);

        switch (parser->error) {
        case YAML_MEMORY_ERROR:
                return -ENOMEM;
        case YAML_READER_ERROR:
                /* Bad encoding: libyaml knows the byte offset, not the line;
                 * count the lines up to it where the file can be re-read. */
                if (c->error) {
                        yaml_mark_t mark = {};
                        int k;

                        if (offset_to_mark(reader->f, parser->problem_offset, &mark) >= 0)
                                k = asprintf(c->error, "%s:%zu:%zu: %s (byte offset %zu): not UTF-8 text",
                                             c->name, mark.line + 1, mark.column + 1,
                                             parser->problem ?: "invalid input", parser->problem_offset);
                        else
                                k = asprintf(c->error, "%s: %s at byte offset %zu: not UTF-8 text", c->name,
                                             parser->problem ?: "invalid input", parser->problem_offset);
                        if (k < 0) {
                                *c->error = NULL;
                                return -ENOMEM;
                        }
                }
                return -EBADMSG;
        default:
                if (parser->context)
                        return conf_error_at(c, -EBADMSG, parser->problem_mark, "%s at line %zu, column %zu: %s",
                                             parser->context, parser->context_mark.line + 1,
                                             parser->context_mark.column + 1, parser->problem ?: "syntax error");
                return conf_error_at(c, -EBADMSG, parser->problem_mark, "%s",
                                     parser->problem ?: "syntax error");
        }
}

int conf_parse_stream(const struct conf_key *keys, size_t n_keys, void *target,
                      FILE *f, const char *name, char **error) {
        _cleanup_(yaml_parser_deletep) yaml_parser_t *p = NULL;
        _cleanup_(yaml_document_deletep) yaml_document_t document = {};
        _cleanup_(yaml_document_deletep) yaml_document_t next = {};
        struct conf_reader reader = { .f = f };
        struct conf_context c = {
                .keys = keys,
                .n_keys = n_keys,
                .target = target,
                .name = name,
                .document = &document,
                .error = error,
        };
        yaml_parser_t parser;
        yaml_node_t *root, *extra;
        size_t n_errors = 0;

        c.n_errors = &n_errors;
        if (error)
                *error = NULL;

        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        p = &parser;
        yaml_parser_set_input(&parser, conf_read_handler, &reader);

        if (!yaml_parser_load(&parser, &document))
                return conf_parser_error(&c, &parser, &reader);

        /* Read to the end before changing anything, so that a syntax error
         * further down leaves target untouched. */
        if (!yaml_parser_load(&parser, &next))
                return conf_parser_error(&c, &parser, &reader);
        extra = yaml_document_get_root_node(&next);
        if (extra)
                return conf_error_at(&c, -EINVAL, extra->start_mark,
                                     "expected a single YAML document, found another one");

        root = yaml_document_get_root_node(&document);
        if (!root || node_is_null(root))
                return 0;
        if (root->type != YAML_MAPPING_NODE)
                return conf_error_at(&c, -EINVAL, root->start_mark,
                                     "expected a mapping of keys at the top level, got %s", node_kind(root));

        return conf_parse_mapping(&c, root, NULL);
}

int conf_parse_file(const struct conf_key *keys, size_t n_keys, void *target,
                    const char *path, char **error) {
        _cleanup_fclose_ FILE *f = NULL;

        if (error)
                *error = NULL;

        f = fopen(path, "re");
        if (!f)
                return conf_error_errno(error, negative_errno(), path);

        return conf_parse_stream(keys, n_keys, target, f, path, error);
}

static int cmp_strings(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

static bool dropin_name_is_valid(const char *name) {
        size_t n = strlen(name);

        /* Hidden files are editors' and package managers' leftovers. */
        return name[0] != '.' && n > strlen(".yaml") && strcmp(name + n - strlen(".yaml"), ".yaml") == 0;
}

/* Lists the regular files (or symlinks to them) "*.yaml" in dir, sorted by
 * file name; a missing directory is an empty list. */
static int conf_list_dropins(const char *dir, char ***ret, char **error) {
        _cleanup_(closedirp) DIR *d = NULL;
        _cleanup_strv_free_ char **names = NULL;
        size_t n = 0;
        struct dirent *de;

        names = calloc(1, sizeof(char *));
        if (!names)
                return -ENOMEM;

        d = opendir(dir);
        if (!d) {
                if (errno == ENOENT || errno == ENOTDIR) {
                        *ret = TAKE_PTR(names);
                        return 0;
                }
                return conf_error_errno(error, negative_errno(), dir);
        }

        for (;;) {
                struct stat st;
                char **grown;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno > 0)
                                return conf_error_errno(error, -errno, dir);
                        break;
                }

                if (!dropin_name_is_valid(de->d_name))
                        continue;
                /* Follows symlinks: a drop-in may link to a shared snippet. */
                if (fstatat(dirfd(d), de->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
                        continue;

                grown = realloc(names, (n + 2) * sizeof(char *));
                if (!grown)
                        return -ENOMEM;
                names = grown;
                names[n] = strdup(de->d_name);
                if (!names[n])
                        return -ENOMEM;
                names[++n] = NULL;
        }

        qsort(names, n, sizeof(char *), cmp_strings);

        for (size_t i = 0; i < n; i++) {
                char *full;

                if (asprintf(&full, "%s/%s", dir, names[i]) < 0)
                        return -ENOMEM;
                free(names[i]);
                names[i] = full;
        }

        *ret = TAKE_PTR(names);
        return 0;
}

/* Parses path onto target; a missing file is -ENOENT without a message. */
static int conf_parse_file_if_exists(const struct conf_key *keys, size_t n_keys, void *target,
                                     const char *path, char **error) {
        _cleanup_fclose_ FILE *f = NULL;

        f = fopen(path, "re");
        if (!f) {
                if (errno == ENOENT)
                        return -ENOENT;
                return conf_error_errno(error, negative_errno(), path);
        }

        return conf_parse_stream(keys, n_keys, target, f, path, error);
}

int conf_load(const struct conf_key *keys, size_t n_keys, void *target,
              const char *path, char **error) {
        _cleanup_strv_free_ char **dropins = NULL;
        _cleanup_free_ char *dir = NULL;
        int r;

        if (error)
                *error = NULL;

        if (asprintf(&dir, "%s.d", path) < 0) {
                dir = NULL;
                return -ENOMEM;
        }

        r = conf_list_dropins(dir, &dropins, error);
        if (r < 0)
                return r;

        r = conf_parse_file_if_exists(keys, n_keys, target, path, error);
        if (r == -ENOENT && !dropins[0])
                return -ENOENT;
        if (r < 0 && r != -ENOENT)
                return r;

        for (char **i = dropins; *i; i++) {
                r = conf_parse_file_if_exists(keys, n_keys, target, *i, error);
                /* Removed since we listed the directory: as if never there. */
                if (r < 0 && r != -ENOENT)
                        return r;
        }
        return 0;
}

void conf_free_values(const struct conf_key *keys, size_t n_keys, void *target) {
        for (size_t i = 0; i < n_keys; i++) {
                void *field = field_of(keys + i, target);

                if (keys[i].type == CONF_STRING) {
                        free(*(char **) field);
                        *(char **) field = NULL;
                } else if (keys[i].type == CONF_STRV) {
                        strv_free(*(char ***) field);
                        *(char ***) field = NULL;
                }
        }
}

static bool strv_equal(char *const *a, char *const *b) {
        size_t n = strv_length(a);

        /* NULL and an empty list both mean "no entries". */
        if (n != strv_length(b))
                return false;
        for (size_t i = 0; i < n; i++)
                if (strcmp(a[i], b[i]) != 0)
                        return false;
        return true;
}

bool conf_value_equal(const struct conf_key *key, const void *a, const void *b) {
        const void *fa = const_field_of(key, a), *fb = const_field_of(key, b);

        switch (key->type) {
        case CONF_STRING: {
                const char *sa = *(char *const *) fa, *sb = *(char *const *) fb;

                if (!sa || !sb)
                        return sa == sb;
                return strcmp(sa, sb) == 0;
        }
        case CONF_BOOL:
                return *(const bool *) fa == *(const bool *) fb;
        case CONF_UINT:
        case CONF_DURATION:
        case CONF_SIZE:
                return *(const uint64_t *) fa == *(const uint64_t *) fb;
        case CONF_ENUM:
                return *(const int *) fa == *(const int *) fb;
        case CONF_STRV:
                return strv_equal(*(char **const *) fa, *(char **const *) fb);
        }
        return false;
}

void conf_value_move(const struct conf_key *key, void *dst, void *src) {
        void *from = field_of(key, src);
        union conf_value v = {};

        switch (key->type) {
        case CONF_STRING:
                v.string = TAKE_PTR(*(char **) from);
                break;
        case CONF_BOOL:
                v.boolean = *(bool *) from;
                *(bool *) from = false;
                break;
        case CONF_UINT:
        case CONF_DURATION:
        case CONF_SIZE:
                v.number = *(uint64_t *) from;
                *(uint64_t *) from = 0;
                break;
        case CONF_ENUM:
                v.index = *(int *) from;
                *(int *) from = 0;
                break;
        case CONF_STRV:
                v.strv = TAKE_PTR(*(char ***) from);
                break;
        }

        value_store(key->type, field_of(key, dst), &v);
}

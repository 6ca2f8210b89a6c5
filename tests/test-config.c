/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conf-parser.h"
#include "config.h"
#include "macro.h"

/* A schema of every conf_type, so that conf.c is tested on all of them
 * whether or not swarmd uses them yet: a top-level key, sections, and a key
 * three levels down. */
struct sample {
        char *name;
        bool enabled;
        uint64_t workers;
        uint64_t count;
        int color;
        uint64_t timeout;
        uint64_t interval;
        uint64_t cache;
        uint64_t quota;
        char **peers;
        char *deep;
};

static const char *const color_names[] = { "red", "green", "blue", NULL };

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC  UINT64_C(1000000)
#define USEC_PER_HOUR (3600 * USEC_PER_SEC)

static const struct conf_key sample_keys[] = {
        { .path = "name",             .type = CONF_STRING,   .offset = offsetof(struct sample, name) },
        { .path = "features.enabled", .type = CONF_BOOL,     .offset = offsetof(struct sample, enabled) },
        { .path = "limits.workers",   .type = CONF_UINT,     .offset = offsetof(struct sample, workers),
          .min = 1, .max = 64 },
        { .path = "limits.count",     .type = CONF_UINT,     .offset = offsetof(struct sample, count) },
        { .path = "display.color",    .type = CONF_ENUM,     .offset = offsetof(struct sample, color),
          .names = color_names },
        { .path = "limits.timeout",   .type = CONF_DURATION, .offset = offsetof(struct sample, timeout),
          .min = USEC_PER_MSEC, .max = USEC_PER_HOUR },
        { .path = "limits.interval",  .type = CONF_DURATION, .offset = offsetof(struct sample, interval),
          .min = 0, .max = 0 },
        { .path = "limits.cache",     .type = CONF_SIZE,     .offset = offsetof(struct sample, cache),
          .min = 4096, .max = UINT64_C(1) << 30 },
        { .path = "limits.quota",     .type = CONF_SIZE,     .offset = offsetof(struct sample, quota) },
        { .path = "network.peers",    .type = CONF_STRV,     .offset = offsetof(struct sample, peers) },
        { .path = "a.b.c",            .type = CONF_STRING,   .offset = offsetof(struct sample, deep) },
};

static char tmpdir[] = "/tmp/test-config-XXXXXX";

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void setup(void) {
        cr_assert_not_null(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
}

static void teardown(void) {
        nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(config, .init = setup, .fini = teardown);

/* Returns the malloc'd path of name (relative to the test's directory). */
static char *test_path(const char *name) {
        char *path;

        cr_assert_geq(asprintf(&path, "%s/%s", tmpdir, name), 0);
        return path;
}

static char *write_file(const char *name, const char *contents) {
        _cleanup_fclose_ FILE *f = NULL;
        char *path = test_path(name);

        f = fopen(path, "we");
        cr_assert_not_null(f, "%s: %s", path, strerror(errno));
        cr_assert_geq(fputs(contents, f), 0);
        return path;
}

static char *make_dir(const char *name) {
        char *path = test_path(name);

        cr_assert_eq(mkdir(path, 0755), 0, "%s: %s", path, strerror(errno));
        return path;
}

static void sample_init(struct sample *s) {
        *s = (struct sample) {
                .name = strdup("default"),
                .workers = 4,
                .timeout = 30 * USEC_PER_SEC,
                .cache = 65536,
                .peers = calloc(2, sizeof(char *)),
                .deep = strdup(""),
        };
        cr_assert(s->name && s->peers && s->deep);
        s->peers[0] = strdup("seed");
        cr_assert_not_null(s->peers[0]);
}

static void sample_done(struct sample *s) {
        conf_free_values(sample_keys, ELEMENTSOF(sample_keys), s);
}

/* Writes yaml to test.yaml and parses it onto s. */
static int parse_sample(struct sample *s, const char *yaml, char **error) {
        _cleanup_free_ char *path = write_file("test.yaml", yaml);

        return conf_parse_file(sample_keys, ELEMENTSOF(sample_keys), s, path, error);
}

/* Checks error is "FILE:WHERE: MESSAGE", or starts with "FILE:WHERE: " when
 * message is NULL (libyaml's own wording may change between versions). */
static void assert_message(const char *error, const char *file, const char *where, const char *message) {
        _cleanup_free_ char *expected = NULL;

        cr_assert_not_null(error, "expected an error message at %s", where);
        cr_assert_geq(asprintf(&expected, "%s:%s: %s", file, where, message ?: ""), 0);
        if (message)
                cr_assert_str_eq(error, expected);
        else
                cr_assert(strncmp(error, expected, strlen(expected)) == 0,
                          "message \"%s\" does not start with \"%s\"", error, expected);
}

static void assert_sample_error(const char *yaml, int expected, const char *where, const char *message) {
        _cleanup_free_ char *error = NULL, *path = test_path("test.yaml");
        struct sample s;
        int r;

        sample_init(&s);
        r = parse_sample(&s, yaml, &error);
        cr_assert_eq(r, expected, "for:\n%s\ngot %d (%s), expected %d", yaml, r, error ?: "no message", expected);
        assert_message(error, path, where, message);
        sample_done(&s);
}

/* Parses yaml, which must be valid, onto s. */
static void reparse_sample_ok(struct sample *s, const char *yaml) {
        _cleanup_free_ char *error = NULL;
        int r;

        r = parse_sample(s, yaml, &error);
        cr_assert_eq(r, 0, "for:\n%s\ngot %d: %s", yaml, r, error ?: "no message");
        cr_assert_null(error);
}

/* Parses yaml, which must be valid, onto a default sample. */
static void parse_sample_ok(struct sample *s, const char *yaml) {
        sample_init(s);
        reparse_sample_ok(s, yaml);
}

/* ---- Values of every type ---- */

Test(config, string_accepts_plain_and_quoted_scalars) {
        struct sample s;

        parse_sample_ok(&s, "name: hello world\n"
                            "a:\n"
                            "  b:\n"
                            "    c: 'quoted: # not a comment'\n");
        cr_assert_str_eq(s.name, "hello world");
        cr_assert_str_eq(s.deep, "quoted: # not a comment");
        sample_done(&s);
}

Test(config, string_quoted_empty_is_an_empty_string_not_a_missing_value) {
        struct sample s;

        parse_sample_ok(&s, "name: \"\"\n");
        cr_assert_str_eq(s.name, "");
        sample_done(&s);
}

Test(config, string_keeps_the_text_of_a_number) {
        struct sample s;

        parse_sample_ok(&s, "name: 007\n");
        cr_assert_str_eq(s.name, "007");
        sample_done(&s);
}

Test(config, bool_accepts_true_false_yes_no_on_off_in_any_case) {
        static const struct {
                const char *text;
                bool value;
        } cases[] = {
                { "true", true }, { "False", false }, { "YES", true },
                { "no", false }, { "On", true }, { "off", false },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *yaml = NULL;
                struct sample s;

                cr_assert_geq(asprintf(&yaml, "features:\n  enabled: %s\n", cases[i].text), 0);
                sample_init(&s);
                s.enabled = !cases[i].value;
                reparse_sample_ok(&s, yaml);
                cr_assert_eq(s.enabled, cases[i].value, "%s", cases[i].text);
                sample_done(&s);
        }
}

Test(config, uint_parses_decimal_up_to_the_largest_uint64) {
        struct sample s;

        parse_sample_ok(&s, "limits:\n"
                            "  workers: 64\n"
                            "  count: 18446744073709551615\n");
        cr_assert_eq(s.workers, 64);
        cr_assert_eq(s.count, UINT64_MAX);
        sample_done(&s);
}

Test(config, enum_is_stored_as_the_index_of_its_name) {
        struct sample s;

        parse_sample_ok(&s, "display:\n  color: blue\n");
        cr_assert_eq(s.color, 2);
        sample_done(&s);
}

Test(config, duration_units_are_converted_to_microseconds) {
        static const struct {
                const char *text;
                uint64_t usec;
        } cases[] = {
                { "100us", 100 },
                { "250ms", 250 * USEC_PER_MSEC },
                { "30s", 30 * USEC_PER_SEC },
                { "45", 45 * USEC_PER_SEC },
                { "5min", 300 * USEC_PER_SEC },
                { "2h", 2 * USEC_PER_HOUR },
                { "1d", 24 * USEC_PER_HOUR },
                { "0", 0 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *yaml = NULL;
                struct sample s;

                cr_assert_geq(asprintf(&yaml, "limits:\n  interval: %s\n", cases[i].text), 0);
                parse_sample_ok(&s, yaml);
                cr_assert_eq(s.interval, cases[i].usec, "%s: %llu", cases[i].text,
                             (unsigned long long) s.interval);
                sample_done(&s);
        }
}

Test(config, size_suffixes_are_1024_based) {
        static const struct {
                const char *text;
                uint64_t bytes;
        } cases[] = {
                { "512", 512 },
                { "64K", UINT64_C(64) << 10 },
                { "4M", UINT64_C(4) << 20 },
                { "16G", UINT64_C(16) << 30 },
                { "2T", UINT64_C(2) << 40 },
                { "3KiB", UINT64_C(3) << 10 },
                { "5MiB", UINT64_C(5) << 20 },
                { "6GiB", UINT64_C(6) << 30 },
                { "7TiB", UINT64_C(7) << 40 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *yaml = NULL;
                struct sample s;

                cr_assert_geq(asprintf(&yaml, "limits:\n  quota: %s\n", cases[i].text), 0);
                parse_sample_ok(&s, yaml);
                cr_assert_eq(s.quota, cases[i].bytes, "%s", cases[i].text);
                sample_done(&s);
        }
}

Test(config, strv_replaces_the_list_in_block_and_flow_style) {
        struct sample s;

        parse_sample_ok(&s, "network:\n"
                            "  peers:\n"
                            "    - alpha\n"
                            "    - \"beta gamma\"\n");
        cr_assert_str_eq(s.peers[0], "alpha");
        cr_assert_str_eq(s.peers[1], "beta gamma");
        cr_assert_null(s.peers[2]);
        sample_done(&s);

        parse_sample_ok(&s, "network: {peers: [one]}\n");
        cr_assert_str_eq(s.peers[0], "one");
        cr_assert_null(s.peers[1]);
        sample_done(&s);
}

Test(config, strv_null_or_empty_flow_list_is_an_empty_list) {
        struct sample s;

        parse_sample_ok(&s, "network:\n  peers:\n  # - commented out\n");
        cr_assert_not_null(s.peers);
        cr_assert_null(s.peers[0]);
        sample_done(&s);

        parse_sample_ok(&s, "network:\n  peers: []\n");
        cr_assert_not_null(s.peers);
        cr_assert_null(s.peers[0]);
        sample_done(&s);
}

Test(config, keys_not_given_keep_their_values) {
        struct sample s;

        parse_sample_ok(&s, "limits:\n  workers: 8\n");
        cr_assert_eq(s.workers, 8);
        cr_assert_str_eq(s.name, "default");
        cr_assert_eq(s.timeout, 30 * USEC_PER_SEC);
        cr_assert_str_eq(s.peers[0], "seed");
        sample_done(&s);
}

Test(config, section_with_everything_commented_out_is_empty) {
        struct sample s;

        parse_sample_ok(&s, "limits:\n  # workers: 8\nname: x\n");
        cr_assert_eq(s.workers, 4);
        cr_assert_str_eq(s.name, "x");
        sample_done(&s);
}

Test(config, empty_and_comment_only_documents_change_nothing) {
        static const char *const documents[] = { "", "# nothing here\n\n  # still nothing\n", "---\n", "~\n" };

        for (size_t i = 0; i < ELEMENTSOF(documents); i++) {
                struct sample s;

                parse_sample_ok(&s, documents[i]);
                cr_assert_str_eq(s.name, "default");
                cr_assert_eq(s.workers, 4);
                sample_done(&s);
        }
}

/* ---- Errors: where and what ---- */

Test(config, syntax_error_is_ebadmsg_with_libyamls_mark) {
        assert_sample_error("name: a\nlimits:\n  workers: 1: 2\n", -EBADMSG, "3:13", NULL);
        assert_sample_error("name: [a, b\n", -EBADMSG, "2:1", NULL);
        assert_sample_error("name: \"unterminated\n", -EBADMSG, "2:1", NULL);
        /* With a directive, which libyaml hands to the document it frees. */
        assert_sample_error("%YAML 1.1\n---\nname: [a\n", -EBADMSG, "4:1", NULL);
}

Test(config, syntax_error_names_libyamls_problem) {
        _cleanup_free_ char *error = NULL;
        struct sample s;

        sample_init(&s);
        cr_assert_eq(parse_sample(&s, "name: a\nlimits:\n  workers: 1: 2\n", &error), -EBADMSG);
        cr_assert_not_null(strstr(error, "mapping values are not allowed"), "%s", error);
        sample_done(&s);
}

Test(config, syntax_error_further_down_changes_nothing) {
        _cleanup_free_ char *error = NULL;
        struct sample s;

        sample_init(&s);
        cr_assert_eq(parse_sample(&s, "name: changed\nlimits: {workers: 8\n", &error), -EBADMSG);
        cr_assert_str_eq(s.name, "default");
        sample_done(&s);
}

Test(config, invalid_utf8_is_ebadmsg_naming_the_file) {
        _cleanup_free_ char *path = test_path("test.yaml");
        _cleanup_free_ char *error = NULL, *prefix = NULL;
        struct sample s;

        sample_init(&s);
        cr_assert_eq(parse_sample(&s, "name: \xff\xfe\n", &error), -EBADMSG);
        /* A position for binary input too, counted from the byte offset. */
        cr_assert_geq(asprintf(&prefix, "%s:1:7: ", path), 0);
        cr_assert(strncmp(error, prefix, strlen(prefix)) == 0, "%s", error);
        sample_done(&s);
}

Test(config, unknown_key_is_rejected_with_line_and_column) {
        assert_sample_error("limits:\n  workers: 4\n  wrokers: 5\n", -EINVAL, "3:3",
                            "unknown key \"limits.wrokers\"");
}

Test(config, unknown_section_is_rejected_with_line_and_column) {
        assert_sample_error("name: x\nlimitz:\n  workers: 4\n", -EINVAL, "2:1", "unknown key \"limitz\"");
}

Test(config, unknown_key_below_a_deep_section_names_the_full_path) {
        assert_sample_error("a:\n  b:\n    d: x\n", -EINVAL, "3:5", "unknown key \"a.b.d\"");
}

Test(config, dotted_key_names_are_rejected) {
        assert_sample_error("limits.workers: 4\n", -EINVAL, "1:1",
                            "invalid key \"limits.workers\": write sections as nested mappings, not dotted names");
}

Test(config, duplicate_key_is_rejected_where_it_repeats) {
        assert_sample_error("limits:\n  workers: 4\n  cache: 8K\n  workers: 5\n", -EINVAL, "4:3",
                            "duplicate key \"limits.workers\" (first given at line 2)");
}

Test(config, duplicate_section_is_rejected) {
        assert_sample_error("limits:\n  workers: 4\nname: x\nlimits:\n  cache: 8K\n", -EINVAL, "4:1",
                            "duplicate key \"limits\" (first given at line 1)");
}

Test(config, wrong_type_is_rejected_for_every_type) {
        static const struct {
                const char *yaml, *where, *message;
        } cases[] = {
                { "name: {a: b}\n", "1:7", "name: expected a string, got a mapping" },
                { "name: [a]\n", "1:7", "name: expected a string, got a list" },
                { "features:\n  enabled: [yes]\n", "2:12", "features.enabled: expected a boolean, got a list" },
                { "limits:\n  workers: {n: 1}\n", "2:12", "limits.workers: expected a number, got a mapping" },
                { "display:\n  color: [red]\n", "2:10", "display.color: expected a string, got a list" },
                { "limits:\n  timeout: {s: 1}\n", "2:12", "limits.timeout: expected a duration, got a mapping" },
                { "limits:\n  cache: [1K]\n", "2:10", "limits.cache: expected a size, got a list" },
                { "network:\n  peers: seed\n", "2:10", "network.peers: expected a list, got a scalar" },
                { "network:\n  peers: {a: b}\n", "2:10", "network.peers: expected a list, got a mapping" },
                { "network:\n  peers:\n    - a\n    - [b]\n", "4:7",
                  "network.peers: expected a list of strings, got a list in the list" },
                { "network:\n  peers: [a, ~]\n", "2:14", "network.peers: missing value in the list" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                assert_sample_error(cases[i].yaml, -EINVAL, cases[i].where, cases[i].message);
}

Test(config, invalid_boolean_is_rejected) {
        assert_sample_error("features:\n  enabled: maybe\n", -EINVAL, "2:12",
                            "features.enabled: invalid boolean \"maybe\", expected true/false, yes/no or on/off");
        assert_sample_error("features:\n  enabled: 1\n", -EINVAL, "2:12",
                            "features.enabled: invalid boolean \"1\", expected true/false, yes/no or on/off");
}

Test(config, uint_accepts_only_decimal_digits) {
        static const char *const bad[] = { "-1", "+3", "0x10", "1.5", "12abc", "1e3", "\"\"", "\" 4\"" };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *yaml = NULL;

                cr_assert_geq(asprintf(&yaml, "limits:\n  count: %s\n", bad[i]), 0);
                assert_sample_error(yaml, -EINVAL, "2:10", NULL);
        }
        assert_sample_error("limits:\n  count: 0x10\n", -EINVAL, "2:10",
                            "limits.count: invalid number \"0x10\", expected decimal digits");
}

Test(config, bad_enum_value_lists_the_allowed_names) {
        assert_sample_error("display:\n  color: purple\n", -EINVAL, "2:10",
                            "display.color: invalid value \"purple\", expected one of: red, green, blue");
        /* Names are matched exactly. */
        assert_sample_error("display:\n  color: Red\n", -EINVAL, "2:10", NULL);
}

Test(config, bad_duration_suffix_is_rejected) {
        static const char *const bad[] = { "5y", "5m", "ms", "1.5s", "-1s", "5 min", "5S", "s5" };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *yaml = NULL, *message = NULL;

                cr_assert_geq(asprintf(&yaml, "limits:\n  interval: %s\n", bad[i]), 0);
                cr_assert_geq(asprintf(&message, "limits.interval: invalid duration \"%s\", "
                                       "expected a number followed by us, ms, s, min, h or d", bad[i]), 0);
                assert_sample_error(yaml, -EINVAL, "2:13", message);
        }
}

Test(config, bad_size_suffix_is_rejected) {
        static const char *const bad[] = { "4X", "4k", "4KB", "K", "-1", "1.5G", "4 K" };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *yaml = NULL, *message = NULL;

                cr_assert_geq(asprintf(&yaml, "limits:\n  quota: %s\n", bad[i]), 0);
                cr_assert_geq(asprintf(&message, "limits.quota: invalid size \"%s\", "
                                       "expected a number optionally followed by K, M, G or T", bad[i]), 0);
                assert_sample_error(yaml, -EINVAL, "2:10", message);
        }
}

Test(config, out_of_range_below_min_names_the_bounds) {
        assert_sample_error("limits:\n  workers: 0\n", -EINVAL, "2:12",
                            "limits.workers: value \"0\" is out of range, must be between 1 and 64");
        assert_sample_error("limits:\n  timeout: 500us\n", -EINVAL, "2:12",
                            "limits.timeout: value \"500us\" is out of range, must be between 1ms and 1h");
        assert_sample_error("limits:\n  cache: 1K\n", -EINVAL, "2:10",
                            "limits.cache: value \"1K\" is out of range, must be between 4K and 1G");
}

Test(config, out_of_range_above_max_names_the_bounds) {
        assert_sample_error("limits:\n  workers: 65\n", -EINVAL, "2:12",
                            "limits.workers: value \"65\" is out of range, must be between 1 and 64");
        assert_sample_error("limits:\n  timeout: 61min\n", -EINVAL, "2:12",
                            "limits.timeout: value \"61min\" is out of range, must be between 1ms and 1h");
        assert_sample_error("limits:\n  cache: 2G\n", -EINVAL, "2:10",
                            "limits.cache: value \"2G\" is out of range, must be between 4K and 1G");
}

Test(config, overflow_is_detected_for_numbers_durations_and_sizes) {
        assert_sample_error("limits:\n  count: 18446744073709551616\n", -EINVAL, "2:10",
                            "limits.count: value \"18446744073709551616\" is too large");
        /* Fits in 64 bits as a count of seconds, not of microseconds. */
        assert_sample_error("limits:\n  interval: 18446744073710s\n", -EINVAL, "2:13",
                            "limits.interval: value \"18446744073710s\" is too large");
        assert_sample_error("limits:\n  interval: 99999999999999999999us\n", -EINVAL, "2:13",
                            "limits.interval: value \"99999999999999999999us\" is too large");
        assert_sample_error("limits:\n  quota: 16777216T\n", -EINVAL, "2:10",
                            "limits.quota: value \"16777216T\" is too large");
}

Test(config, largest_values_that_fit_are_accepted) {
        struct sample s;

        parse_sample_ok(&s, "limits:\n  interval: 18446744073709s\n  quota: 16777215T\n");
        cr_assert_eq(s.interval, UINT64_C(18446744073709) * USEC_PER_SEC);
        cr_assert_eq(s.quota, UINT64_C(16777215) << 40);
        sample_done(&s);
}

Test(config, null_value_is_a_missing_value) {
        assert_sample_error("name:\nlimits:\n  workers: 4\n", -EINVAL, "1:1", "name: missing value");
        assert_sample_error("limits:\n  workers: ~\n", -EINVAL, "2:3", "limits.workers: missing value");
        assert_sample_error("features:\n  enabled: null\n", -EINVAL, "2:3", "features.enabled: missing value");
        assert_sample_error("display:\n  color:\n", -EINVAL, "2:3", "display.color: missing value");
        assert_sample_error("limits:\n  timeout:\n  cache:\n", -EINVAL, "2:3", NULL);
}

/* --check-config shows every error, not only the first, one per line and
 * each with its position; at most 20 and a line that says so. */
Test(config, every_error_is_reported_up_to_a_bound) {
        _cleanup_free_ char *path = test_path("test.yaml"), *error = NULL, *expected = NULL, *yaml = NULL;
        struct sample s;
        size_t lines = 0;
        FILE *f;
        size_t size = 0;

        sample_init(&s);
        cr_assert_eq(parse_sample(&s, "limits:\n  timeout:\n  cache:\nbogus: 1\nname: [a]\n", &error), -EINVAL);
        cr_assert_geq(asprintf(&expected, "%1$s:2:3: limits.timeout: missing value\n"
                                          "%1$s:3:3: limits.cache: missing value\n"
                                          "%1$s:4:1: unknown key \"bogus\"\n"
                                          "%1$s:5:7: name: expected a string, got a list", path), 0);
        cr_assert_str_eq(error, expected);
        sample_done(&s);

        f = open_memstream(&yaml, &size);
        cr_assert_not_null(f);
        for (int i = 0; i < 50; i++)
                fprintf(f, "unknown%d: 1\n", i);
        cr_assert_eq(fclose(f), 0);
        free(error);
        error = NULL;
        sample_init(&s);
        cr_assert_eq(parse_sample(&s, yaml, &error), -EINVAL);
        for (const char *p = error; p; p = strchr(p + 1, '\n'))
                lines++;
        cr_assert_eq(lines, 21, "%s", error);
        cr_assert(strstr(error, "only the first 20 are shown"), "%s", error);
        sample_done(&s);
}

Test(config, top_level_must_be_a_mapping) {
        assert_sample_error("- a\n- b\n", -EINVAL, "1:1",
                            "expected a mapping of keys at the top level, got a list");
        assert_sample_error("# a comment\njust words\n", -EINVAL, "2:1",
                            "expected a mapping of keys at the top level, got a scalar");
}

Test(config, section_given_a_value_is_rejected) {
        assert_sample_error("limits: 5\n", -EINVAL, "1:9",
                            "limits: expected a section (a mapping of keys), got a scalar");
        assert_sample_error("a:\n  b: [c]\n", -EINVAL, "2:6",
                            "a.b: expected a section (a mapping of keys), got a list");
}

Test(config, key_must_be_a_name) {
        assert_sample_error("[a]: b\n", -EINVAL, "1:1", "expected a key name, got a list");
        assert_sample_error("\"\": b\n", -EINVAL, "1:1", "invalid empty key name");
}

Test(config, second_document_is_rejected) {
        assert_sample_error("name: a\n---\nname: b\n", -EINVAL, "3:1",
                            "expected a single YAML document, found another one");
}

Test(config, failing_key_keeps_the_previous_value) {
        _cleanup_free_ char *error = NULL;
        struct sample s;

        sample_init(&s);
        cr_assert_eq(parse_sample(&s, "network:\n  peers: [a, [b]]\n", &error), -EINVAL);
        cr_assert_str_eq(s.peers[0], "seed");
        cr_assert_null(s.peers[1]);
        free(TAKE_PTR(error));

        cr_assert_eq(parse_sample(&s, "limits:\n  workers: 100\n", &error), -EINVAL);
        cr_assert_eq(s.workers, 4);
        sample_done(&s);
}

Test(config, later_file_replaces_values_in_place) {
        struct sample s;

        parse_sample_ok(&s, "name: first\nnetwork:\n  peers: [a, b]\n");
        reparse_sample_ok(&s, "name: second\nnetwork:\n  peers: [c]\n");
        cr_assert_str_eq(s.name, "second");
        cr_assert_str_eq(s.peers[0], "c");
        cr_assert_null(s.peers[1]);
        sample_done(&s);
}

Test(config, missing_file_is_enoent_with_a_message) {
        _cleanup_free_ char *path = test_path("absent.yaml"), *error = NULL, *expected = NULL;
        struct sample s;

        sample_init(&s);
        cr_assert_eq(conf_parse_file(sample_keys, ELEMENTSOF(sample_keys), &s, path, &error), -ENOENT);
        cr_assert_geq(asprintf(&expected, "%s: No such file or directory", path), 0);
        cr_assert_str_eq(error, expected);
        sample_done(&s);
}

Test(config, read_error_is_returned_as_errno) {
        _cleanup_free_ char *path = make_dir("dir.yaml"), *error = NULL, *expected = NULL;
        struct sample s;

        sample_init(&s);
        cr_assert_eq(conf_parse_file(sample_keys, ELEMENTSOF(sample_keys), &s, path, &error), -EISDIR);
        cr_assert_geq(asprintf(&expected, "%s: %s", path, strerror(EISDIR)), 0);
        cr_assert_str_eq(error, expected);
        sample_done(&s);
}

/* ---- Values as a whole ---- */

Test(config, value_move_leaves_the_source_empty_and_equal_compares) {
        struct sample a, b;

        sample_init(&a);
        sample_init(&b);
        for (size_t i = 0; i < ELEMENTSOF(sample_keys); i++)
                cr_assert(conf_value_equal(sample_keys + i, &a, &b), "%s", sample_keys[i].path);

        free(b.name);
        b.name = strdup("moved");
        cr_assert_not_null(b.name);
        b.workers = 9;
        cr_assert_not(conf_value_equal(&sample_keys[0], &a, &b));
        cr_assert_not(conf_value_equal(&sample_keys[2], &a, &b));

        conf_value_move(&sample_keys[0], &a, &b);
        conf_value_move(&sample_keys[2], &a, &b);
        conf_value_move(&sample_keys[9], &a, &b);
        cr_assert_str_eq(a.name, "moved");
        cr_assert_eq(a.workers, 9);
        cr_assert_str_eq(a.peers[0], "seed");
        cr_assert_null(b.name);
        cr_assert_eq(b.workers, 0);
        cr_assert_null(b.peers);

        sample_done(&a);
        sample_done(&b);
        /* Idempotent: the slots are left NULL. */
        sample_done(&b);
}

/* ---- Drop-ins ---- */

Test(config, dropins_override_in_lexical_order) {
        _cleanup_free_ char *path = write_file("main.yaml", "name: main\nlimits:\n  workers: 8\n"
                                                            "display:\n  color: red\n");
        _cleanup_free_ char *error = NULL;
        struct sample s;

        free(make_dir("main.yaml.d"));
        free(write_file("main.yaml.d/20-b.yaml", "name: b\n"));
        free(write_file("main.yaml.d/10-a.yaml", "name: a\ndisplay:\n  color: green\n"));
        /* strcmp order: "9-z" sorts after "20-b". */
        free(write_file("main.yaml.d/9-z.yaml", "display:\n  color: blue\n"));

        sample_init(&s);
        cr_assert_eq(conf_load(sample_keys, ELEMENTSOF(sample_keys), &s, path, &error), 0, "%s", error);
        cr_assert_str_eq(s.name, "b");
        cr_assert_eq(s.color, 2);
        cr_assert_eq(s.workers, 8);
        sample_done(&s);
}

Test(config, dropin_lists_replace_not_append) {
        _cleanup_free_ char *path = write_file("main.yaml", "network:\n  peers: [a, b]\n");
        _cleanup_free_ char *error = NULL;
        struct sample s;

        free(make_dir("main.yaml.d"));
        free(write_file("main.yaml.d/50-peers.yaml", "network:\n  peers:\n    - c\n"));

        sample_init(&s);
        cr_assert_eq(conf_load(sample_keys, ELEMENTSOF(sample_keys), &s, path, &error), 0, "%s", error);
        cr_assert_str_eq(s.peers[0], "c");
        cr_assert_null(s.peers[1]);
        sample_done(&s);
}

Test(config, only_regular_yaml_files_are_dropins) {
        _cleanup_free_ char *path = write_file("main.yaml", "name: main\n");
        _cleanup_free_ char *error = NULL;
        struct sample s;

        free(make_dir("main.yaml.d"));
        /* Each of these would fail to parse if it were read. */
        free(write_file("main.yaml.d/README", "not: yaml: at all\n"));
        free(write_file("main.yaml.d/30-backup.yaml.bak", "bogus: 1\n"));
        free(write_file("main.yaml.d/40-other.yml", "bogus: 1\n"));
        free(write_file("main.yaml.d/.50-hidden.yaml", "bogus: 1\n"));
        free(make_dir("main.yaml.d/60-dir.yaml"));
        free(write_file("main.yaml.d/70-ok.yaml", "name: dropin\n"));

        sample_init(&s);
        cr_assert_eq(conf_load(sample_keys, ELEMENTSOF(sample_keys), &s, path, &error), 0, "%s", error);
        cr_assert_str_eq(s.name, "dropin");
        sample_done(&s);
}

Test(config, error_in_a_dropin_names_the_dropin) {
        _cleanup_free_ char *path = write_file("main.yaml", "name: main\n");
        _cleanup_free_ char *error = NULL;
        _cleanup_free_ char *bad = NULL;
        struct sample s;

        free(make_dir("main.yaml.d"));
        bad = write_file("main.yaml.d/20-bad.yaml", "limits:\n  workers: lots\n");
        free(write_file("main.yaml.d/10-good.yaml", "name: good\n"));

        sample_init(&s);
        cr_assert_eq(conf_load(sample_keys, ELEMENTSOF(sample_keys), &s, path, &error), -EINVAL);
        assert_message(error, bad, "2:12", "limits.workers: invalid number \"lots\", expected decimal digits");
        sample_done(&s);
}

Test(config, dropins_apply_without_the_main_file) {
        _cleanup_free_ char *path = test_path("main.yaml");
        _cleanup_free_ char *error = NULL;
        struct sample s;

        free(make_dir("main.yaml.d"));
        free(write_file("main.yaml.d/10-only.yaml", "name: only\n"));

        sample_init(&s);
        cr_assert_eq(conf_load(sample_keys, ELEMENTSOF(sample_keys), &s, path, &error), 0, "%s", error);
        cr_assert_str_eq(s.name, "only");
        sample_done(&s);
}

Test(config, missing_file_without_dropins_is_enoent_without_message) {
        _cleanup_free_ char *path = test_path("main.yaml"), *error = NULL;
        struct sample s;

        sample_init(&s);
        cr_assert_eq(conf_load(sample_keys, ELEMENTSOF(sample_keys), &s, path, &error), -ENOENT);
        cr_assert_null(error);
        cr_assert_str_eq(s.name, "default");
        sample_done(&s);

        /* An empty drop-in directory is no drop-ins. */
        free(make_dir("main.yaml.d"));
        sample_init(&s);
        cr_assert_eq(conf_load(sample_keys, ELEMENTSOF(sample_keys), &s, path, &error), -ENOENT);
        cr_assert_null(error);
        sample_done(&s);
}

/* ---- swarmd's configuration ---- */

static void assert_config_is_default(const struct config *c) {
        struct config defaults;

        cr_assert_eq(config_init(&defaults), 0);
        for (size_t i = 0; i < config_n_keys; i++)
                cr_assert(conf_value_equal(config_keys + i, c, &defaults), "%s differs from its default",
                          config_keys[i].path);
        config_done(&defaults);
}

Test(config, defaults_are_info_auto_and_empty_strings) {
        struct config c;

        cr_assert_eq(config_init(&c), 0);
        cr_assert_str_eq(c.node_name, "");
        cr_assert_str_eq(c.state_directory, "");
        cr_assert_eq(c.log_level, LOG_INFO);
        cr_assert_eq(c.log_target, LOG_TARGET_AUTO);
        config_done(&c);
}

Test(config, missing_file_not_required_keeps_the_defaults) {
        _cleanup_free_ char *path = test_path("swarmd.yaml"), *error = NULL;
        struct config c;

        cr_assert_eq(config_load(&c, path, false, &error), 0);
        cr_assert_null(error);
        assert_config_is_default(&c);
        config_done(&c);
}

Test(config, missing_file_required_is_enoent_with_a_message) {
        _cleanup_free_ char *path = test_path("swarmd.yaml"), *error = NULL, *expected = NULL;
        struct config c;

        cr_assert_eq(config_load(&c, path, true, &error), -ENOENT);
        cr_assert_geq(asprintf(&expected, "%s: No such file or directory", path), 0);
        cr_assert_str_eq(error, expected);
        config_done(&c);
}

Test(config, empty_and_comment_only_files_keep_the_defaults) {
        static const char *const contents[] = { "", "# log:\n#   level: debug\n" };

        for (size_t i = 0; i < ELEMENTSOF(contents); i++) {
                _cleanup_free_ char *path = write_file("swarmd.yaml", contents[i]), *error = NULL;
                struct config c;

                cr_assert_eq(config_load(&c, path, true, &error), 0, "%s", error);
                assert_config_is_default(&c);
                config_done(&c);
        }
}

Test(config, every_swarmd_key_is_parsed) {
        _cleanup_free_ char *path = write_file("swarmd.yaml",
                                               "node:\n"
                                               "  name: worker-7\n"
                                               "  state_directory: /srv/swarm\n"
                                               "log:\n"
                                               "  level: warning\n"
                                               "  target: journal\n");
        _cleanup_free_ char *error = NULL;
        struct config c;

        cr_assert_eq(config_load(&c, path, true, &error), 0, "%s", error);
        cr_assert_str_eq(c.node_name, "worker-7");
        cr_assert_str_eq(c.state_directory, "/srv/swarm");
        cr_assert_eq(c.log_level, LOG_WARNING);
        cr_assert_eq(c.log_target, LOG_TARGET_JOURNAL);
        config_done(&c);
}

Test(config, log_level_names_are_syslog_priorities) {
        static const char *const names[] = { "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug" };

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                _cleanup_free_ char *yaml = NULL, *path = NULL, *error = NULL;
                struct config c;

                cr_assert_geq(asprintf(&yaml, "log:\n  level: %s\n", names[i]), 0);
                path = write_file("swarmd.yaml", yaml);
                cr_assert_eq(config_load(&c, path, true, &error), 0, "%s", error);
                cr_assert_eq(c.log_level, (int) i, "%s", names[i]);
                config_done(&c);
        }
}

Test(config, bad_log_level_lists_the_levels) {
        _cleanup_free_ char *path = write_file("swarmd.yaml",
                                               "node:\n"
                                               "  name: x\n"
                                               "log:\n"
                                               "  level: verbose\n");
        _cleanup_free_ char *error = NULL;
        struct config c;

        cr_assert_eq(config_load(&c, path, true, &error), -EINVAL);
        assert_message(error, path, "4:10",
                       "log.level: invalid value \"verbose\", expected one of: "
                       "emerg, alert, crit, err, warning, notice, info, debug");
        config_done(&c);
}

Test(config, unknown_swarmd_key_is_rejected) {
        _cleanup_free_ char *path = write_file("swarmd.yaml", "node:\n  nmae: x\n");
        _cleanup_free_ char *error = NULL;
        struct config c;

        cr_assert_eq(config_load(&c, path, false, &error), -EINVAL);
        assert_message(error, path, "2:3", "unknown key \"node.nmae\"");
        config_done(&c);
}

/* What swarmd would refuse at start (a name too long for its record, an
 * endpoint ZeroMQ would wrap or refuse) is refused here, with the line. */
static void assert_swarmd_error(const char *yaml, const char *where, const char *message) {
        _cleanup_free_ char *path = write_file("swarmd.yaml", yaml);
        _cleanup_free_ char *error = NULL;
        struct config c;

        cr_assert_eq(config_load(&c, path, true, &error), -EINVAL, "accepted:\n%s", yaml);
        assert_message(error, path, where, message);
        config_done(&c);
}

static void assert_swarmd_ok(const char *yaml) {
        _cleanup_free_ char *path = write_file("swarmd.yaml", yaml);
        _cleanup_free_ char *error = NULL;
        struct config c;

        cr_assert_eq(config_load(&c, path, true, &error), 0, "%s", error);
        config_done(&c);
}

Test(config, node_name_longer_than_a_record_holds_is_refused) {
        char yaml[1200];
        char name[1001];

        memset(name, 'n', 1000);
        name[1000] = '\0';
        snprintf(yaml, sizeof(yaml), "node:\n  name: %s\n", name);
        assert_swarmd_error(yaml, "2:9", "node.name: 1000 bytes long, at most 255");
        memset(name, 'n', 255);
        name[255] = '\0';
        snprintf(yaml, sizeof(yaml), "node:\n  name: %s\n", name);
        assert_swarmd_ok(yaml);
}

Test(config, endpoints_are_checked_port_host_and_scheme) {
        assert_swarmd_error("network:\n  bind: \"tcp://127.0.0.1:99999\"\n", "2:9",
                            "network.bind: \"tcp://127.0.0.1:99999\": the port is not a number from 0 to 65535");
        assert_swarmd_error("network:\n  bind: \"udp://127.0.0.1:7946\"\n", "2:9",
                            "network.bind: \"udp://127.0.0.1:7946\" is not tcp://HOST:PORT");
        assert_swarmd_error("network:\n  bind: \"tcp://127.0.0.1\"\n", "2:9",
                            "network.bind: \"tcp://127.0.0.1\" has no HOST:PORT");
        assert_swarmd_error("network:\n  bind: \"tcp://300.1.1.1:7946\"\n", "2:9",
                            "network.bind: \"tcp://300.1.1.1:7946\": \"300.1.1.1\" is not an IPv4 address, "
                            "a [bracketed] IPv6 address or a host name");
        assert_swarmd_error("network:\n  advertise: \"tcp://*:7946\"\n", "2:14",
                            "network.advertise: \"tcp://*:7946\": \"*\" (any address) is only for bind");
        assert_swarmd_error("network:\n  advertise: \"tcp://10.0.0.1:0\"\n", "2:14",
                            "network.advertise: \"tcp://10.0.0.1:0\": port 0 (any free port) is only for bind");
        assert_swarmd_error("network:\n  seeds: [\"nodeid@tcp://10.0.0.1:7946\"]\n", "2:11",
                            "network.seeds: \"nodeid@tcp://10.0.0.1:7946\" is not NODEID@tcp://HOST:PORT "
                            "(NODEID: the 52 characters swarmd --show-identity prints)");
        assert_swarmd_error("network:\n  seeds: [\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@tcp://10.0.0.1:65536\"]\n",
                            "2:11", "network.seeds: \"tcp://10.0.0.1:65536\": the port is not a number from 0 to 65535");
        assert_swarmd_error("network:\n  beacon_address: \"everyone\"\n", "2:19",
                            "network.beacon_address: \"everyone\" is not an IPv4 address");

        assert_swarmd_ok("network:\n  bind: \"tcp://*:0\"\n  advertise: \"tcp://node-1.lan:7946\"\n");
        assert_swarmd_ok("network:\n  bind: \"tcp://[::1]:7946\"\n  advertise: \"tcp://[2001:db8::1]:65535\"\n");
        assert_swarmd_ok("network:\n  bind: \"tcp://eth0:7946\"\n"
                         "  seeds: [\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@tcp://10.0.0.1:7946\"]\n");
}

Test(config, reload_moves_live_keys_and_reports_restart_keys) {
        _cleanup_free_ char *running_path = write_file("running.yaml",
                                                       "node:\n"
                                                       "  name: old\n"
                                                       "  state_directory: /srv/old\n");
        _cleanup_free_ char *fresh_path = write_file("fresh.yaml",
                                                     "node:\n"
                                                     "  name: new\n"
                                                     "  state_directory: /srv/new\n"
                                                     "log:\n"
                                                     "  level: debug\n"
                                                     "  target: console\n");
        _cleanup_strv_free_ char **needs_restart = NULL;
        _cleanup_free_ char *error = NULL;
        struct config running, fresh;

        cr_assert_eq(config_load(&running, running_path, true, &error), 0, "%s", error);
        cr_assert_eq(config_load(&fresh, fresh_path, true, &error), 0, "%s", error);

        cr_assert_eq(config_apply_reload(&running, &fresh, &needs_restart), 0);
        cr_assert_str_eq(running.node_name, "new");
        cr_assert_eq(running.log_level, LOG_DEBUG);
        cr_assert_eq(running.log_target, LOG_TARGET_CONSOLE);
        cr_assert_str_eq(running.state_directory, "/srv/old");
        cr_assert_not_null(needs_restart);
        cr_assert_str_eq(needs_restart[0], "node.state_directory");
        cr_assert_null(needs_restart[1]);

        config_done(&fresh);
        config_done(&running);
}

Test(config, reload_without_restart_changes_reports_nothing) {
        _cleanup_free_ char *path = write_file("swarmd.yaml", "log:\n  level: err\n");
        _cleanup_strv_free_ char **needs_restart = NULL;
        _cleanup_free_ char *error = NULL;
        struct config running, fresh;

        cr_assert_eq(config_init(&running), 0);
        cr_assert_eq(config_load(&fresh, path, true, &error), 0, "%s", error);

        cr_assert_eq(config_apply_reload(&running, &fresh, &needs_restart), 0);
        cr_assert_eq(running.log_level, LOG_ERR);
        cr_assert_not_null(needs_restart);
        cr_assert_null(needs_restart[0]);

        config_done(&fresh);
        config_done(&running);
}

/* Sets every key of c to something other than its default, so that a key
 * missing from a file shows up as not reset to the default. */
static void config_poison(struct config *c) {
        for (size_t i = 0; i < config_n_keys; i++) {
                const struct conf_key *key = config_keys + i;
                void *field = (char *) c + key->offset;

                /* Gone (issue 22), refused whatever its value: no file
                 * spells it out. */
                if (strcmp(key->path, "ledger.allowance") == 0)
                        continue;
                switch (key->type) {
                case CONF_STRING:
                        free(*(char **) field);
                        *(char **) field = strdup("\001poison");
                        cr_assert_not_null(*(char **) field);
                        break;
                case CONF_BOOL:
                        *(bool *) field = !*(bool *) field;
                        break;
                case CONF_UINT:
                case CONF_DURATION:
                case CONF_SIZE:
                        *(uint64_t *) field += 1;
                        break;
                case CONF_ENUM:
                        *(int *) field = -1;
                        break;
                case CONF_STRV:
                        strv_free(*(char ***) field);
                        *(char ***) field = calloc(2, sizeof(char *));
                        cr_assert_not_null(*(char ***) field);
                        (*(char ***) field)[0] = strdup("\001poison");
                        break;
                }
        }
}

Test(config, shipped_file_sets_every_key_to_its_default) {
        const char *root = getenv("SOURCE_ROOT");
        _cleanup_free_ char *path = NULL, *error = NULL;
        struct config c;

        cr_assert_not_null(root, "$SOURCE_ROOT must point at the source tree");
        cr_assert_geq(asprintf(&path, "%s/etc/swarmd.yaml", root), 0);

        cr_assert_eq(config_load(&c, path, true, &error), 0, "%s", error);
        assert_config_is_default(&c);

        /* Every key is spelled out, not merely left at its default. */
        config_poison(&c);
        cr_assert_eq(conf_parse_file(config_keys, config_n_keys, &c, path, &error), 0, "%s", error);
        assert_config_is_default(&c);
        config_done(&c);
}

/* Issue 22: nobody gets credits for free.  An old configuration that still
 * gives a newcomer allowance is refused saying why, not as an unknown key;
 * the double spender of the tests names a node, or nothing. */
Test(config, the_newcomer_allowance_is_refused_saying_it_is_gone) {
        assert_swarmd_error("ledger:\n  allowance: 1000000000\n", "2:14",
                            "ledger.allowance: is gone: no identity gets credits for free any more; credits come "
                            "only from the mints of credits.issuers (remove this key)");
        assert_swarmd_error("testing:\n  double_spend_to: \"nobody\"\n", "2:20",
                            "testing.double_spend_to: \"nobody\" is not a node id (the 52 characters swarmd "
                            "--show-identity prints)");
        assert_swarmd_ok("testing:\n  double_spend_to: \"\"\n");
}

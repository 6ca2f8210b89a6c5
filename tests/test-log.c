/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static char path[] = "/tmp/test-log-XXXXXX";
static int saved_stderr = -1;

static void capture(void) {
        int fd = mkstemp(path);

        cr_assert_geq(fd, 0);
        fflush(stderr);
        saved_stderr = dup(STDERR_FILENO);
        cr_assert_geq(dup2(fd, STDERR_FILENO), 0);
        close(fd);
        log_setup("test", LOG_TARGET_CONSOLE);
}

static char *captured(void) {
        static char buf[65536];
        FILE *f;
        size_t n;

        fflush(stderr);
        dup2(saved_stderr, STDERR_FILENO);
        f = fopen(path, "re");
        cr_assert_not_null(f);
        n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = '\0';
        fclose(f);
        unlink(path);
        return buf;
}

static unsigned count(const char *text, const char *needle) {
        unsigned n = 0;

        for (const char *p = text; (p = strstr(p, needle)); p++)
                n++;
        return n;
}

static void flood(unsigned n) {
        for (unsigned i = 0; i < n; i++)
                log_warning("Refusing client %u.", i);
}

Test(log, one_statement_is_limited_and_says_how_many_it_dropped) {
        char *out;

        capture();
        log_set_ratelimit(200 * 1000, 5);
        flood(1000);
        log_info("Another statement is not held back.");
        usleep(250 * 1000);
        flood(1);
        out = captured();

        cr_assert_eq(count(out, "Refusing client"), 6, "%s", out);
        cr_assert(strstr(out, "Refusing client 4."), "%s", out);
        cr_assert_null(strstr(out, "Refusing client 5."), "%s", out);
        cr_assert(strstr(out, "Another statement is not held back."), "%s", out);
        cr_assert(strstr(out, "Suppressed 995 messages like the next"), "%s", out);
        cr_assert(strstr(out, "test-log.c:"), "the note names the statement: %s", out);
}

Test(log, burst_zero_turns_the_limit_off) {
        char *out;

        capture();
        log_set_ratelimit(0, 0);
        flood(100);
        out = captured();
        cr_assert_eq(count(out, "Refusing client"), 100);
        cr_assert_null(strstr(out, "Suppressed"));
}

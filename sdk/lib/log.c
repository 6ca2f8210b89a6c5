/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <stdio.h>
#include <syslog.h>

#include "swarm-host.h"

static void log_to_stderr(int level, const char *message, void *userdata) {
        (void) userdata;
        if (level <= LOG_INFO)
                fprintf(stderr, "%s\n", message);
}

static swarm_log_handler_fn log_handler = log_to_stderr;
static void *log_userdata;

void swarm_log_set_handler(swarm_log_handler_fn handler, void *userdata) {
        log_handler = handler ? handler : log_to_stderr;
        log_userdata = handler ? userdata : NULL;
}

void swarm_log(int level, const char *format, ...) {
        char buf[1024];
        va_list ap;

        va_start(ap, format);
        if (vsnprintf(buf, sizeof(buf), format, ap) < 0)
                /* An encoding error leaves buf unspecified. */
                snprintf(buf, sizeof(buf), "(unprintable log message: %s)", format);
        va_end(ap);
        log_handler(level, buf, log_userdata);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/uio.h>
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "log.h"

static const char *log_program = "swarmd";
static int log_max_level = LOG_INFO;
static bool log_to_journal;

const char *const log_level_names[LOG_DEBUG + 2] = {
        [LOG_EMERG] = "emerg",
        [LOG_ALERT] = "alert",
        [LOG_CRIT] = "crit",
        [LOG_ERR] = "err",
        [LOG_WARNING] = "warning",
        [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info",
        [LOG_DEBUG] = "debug",
        [LOG_DEBUG + 1] = NULL,
};

/* systemd sets $JOURNAL_STREAM to "DEV:INODE" of the stream it connected to
 * our stderr; if stderr is still that stream, the journal is listening. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return st.st_dev == dev && st.st_ino == ino;
}

void log_setup(const char *program_name, enum log_target target) {
        if (program_name)
                log_program = program_name;

        switch (target) {
        case LOG_TARGET_JOURNAL:
                log_to_journal = true;
                break;
        case LOG_TARGET_CONSOLE:
                log_to_journal = false;
                break;
        case LOG_TARGET_AUTO:
        default:
                log_to_journal = stderr_is_journal();
                break;
        }
}

void log_set_max_level(int level) {
        if (level < LOG_EMERG)
                level = LOG_EMERG;
        if (level > LOG_DEBUG)
                level = LOG_DEBUG;
        log_max_level = level;
}

int log_get_max_level(void) {
        return log_max_level;
}

int log_level_from_string(const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i <= LOG_DEBUG; i++)
                if (strcasecmp(s, log_level_names[i]) == 0)
                        return (int) i;
        if (strcasecmp(s, "error") == 0)
                return LOG_ERR;
        if (strcasecmp(s, "warn") == 0)
                return LOG_WARNING;
        return -EINVAL;
}

const char *log_level_to_string(int level) {
        if (level < 0 || level > LOG_DEBUG)
                return NULL;
        return log_level_names[level];
}

static void log_write_journal(int level, int error, const char *file, int line,
                              const struct log_fields *f, const char *message) {
        char priority[32], code_file[512], code_line[32], errno_field[32];
        char peer[128], job[128], skill[128];
        _cleanup_free_ char *msg = NULL;
        struct iovec iov[9];
        size_t n = 0;

        if (asprintf(&msg, "MESSAGE=%s", message) < 0)
                return;

#define ADD(buf, ...)                                                           \
        do {                                                                    \
                snprintf(buf, sizeof(buf), __VA_ARGS__);                        \
                iov[n++] = (struct iovec) { .iov_base = buf, .iov_len = strlen(buf) }; \
        } while (0)

        iov[n++] = (struct iovec) { .iov_base = msg, .iov_len = strlen(msg) };
        ADD(priority, "PRIORITY=%d", level);
        ADD(code_file, "CODE_FILE=%s", file);
        ADD(code_line, "CODE_LINE=%d", line);
        if (error != 0)
                ADD(errno_field, "ERRNO=%d", error);
        if (f && f->peer)
                ADD(peer, "PEER=%s", f->peer);
        if (f && f->job)
                ADD(job, "JOB=%s", f->job);
        if (f && f->skill)
                ADD(skill, "SKILL=%s", f->skill);
#undef ADD

        sd_journal_sendv(iov, (int) n);
}

static void log_write_console(int level, const struct log_fields *f, const char *message) {
        char context[400] = "";

        if (f && (f->peer || f->job || f->skill))
                snprintf(context, sizeof(context), "[%s%s%s%s%s%s] ",
                         f->peer ? "peer=" : "", f->peer ?: "",
                         f->job ? (f->peer ? " job=" : "job=") : "", f->job ?: "",
                         f->skill ? (f->peer || f->job ? " skill=" : "skill=") : "", f->skill ?: "");

        fprintf(stderr, "%s: %s%s%s\n", log_program,
                level <= LOG_WARNING ? (level <= LOG_ERR ? "error: " : "warning: ") : "",
                context, message);
}

int log_internal(int level, int error, const char *file, int line,
                 const struct log_fields *fields, const char *format, ...) {
        int saved_errno = errno;
        char message[2048];
        va_list ap;

        error = __builtin_abs(error);
        if (level > log_max_level)
                return -error;

        /* Let %m print the error we were given rather than whatever errno
         * happens to hold. */
        errno = error;
        va_start(ap, format);
        vsnprintf(message, sizeof(message), format, ap);
        va_end(ap);

        if (log_to_journal)
                log_write_journal(level, error, file, line, fields, message);
        else
                log_write_console(level, fields, message);

        errno = saved_errno;
        return -error;
}

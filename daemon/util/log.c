/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/uio.h>
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "log.h"
#include "time-util.h"

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

/* ---- Rate limiting, per call site ---- */

/* One peer or local user must not flood the journal through one log
 * statement (the probe got 1,372 "Refusing a job client" lines in
 * seconds): each call site may log `burst` messages per `interval`; what
 * it loses is counted and said with its next message. */
#define RATELIMIT_SITES 256u

struct ratelimit_site {
        const char *file;       /* __FILE__: one literal per file, compared by address */
        int line;
        uint64_t window_start;
        unsigned logged, suppressed;
};

static struct ratelimit_site ratelimit_sites[RATELIMIT_SITES];
static uint64_t ratelimit_interval = LOG_RATELIMIT_INTERVAL_USEC;
static unsigned ratelimit_burst = LOG_RATELIMIT_BURST;

void log_set_ratelimit(uint64_t interval_usec, unsigned burst) {
        ratelimit_interval = interval_usec;
        ratelimit_burst = burst;
        memset(ratelimit_sites, 0, sizeof(ratelimit_sites));
}

static struct ratelimit_site *ratelimit_site_of(const char *file, int line) {
        size_t h = ((uintptr_t) file >> 3) * 31u + (size_t) line, i = h % RATELIMIT_SITES;

        for (size_t k = 0; k < RATELIMIT_SITES; k++, i = (i + 1) % RATELIMIT_SITES) {
                struct ratelimit_site *s = &ratelimit_sites[i];

                if (!s->file) {
                        *s = (struct ratelimit_site) { .file = file, .line = line };
                        return s;
                }
                if (s->file == file && s->line == line)
                        return s;
        }
        return NULL;    /* table full: not limited */
}

/* Whether this message may go out; *suppressed says how many of this
 * site's were dropped before it (to report first). */
static bool ratelimit_allow(const char *file, int line, unsigned *suppressed) {
        struct ratelimit_site *s;
        uint64_t t;

        *suppressed = 0;
        if (ratelimit_burst == 0 || !file)
                return true;
        s = ratelimit_site_of(file, line);
        if (!s)
                return true;
        t = now(CLOCK_MONOTONIC);
        if (s->window_start == 0 || t - s->window_start >= ratelimit_interval) {
                *suppressed = s->suppressed;
                s->window_start = t;
                s->logged = 0;
                s->suppressed = 0;
        }
        if (s->logged >= ratelimit_burst) {
                s->suppressed++;
                return false;
        }
        s->logged++;
        return true;
}

static void log_write(int level, int error, const char *file, int line, const struct log_fields *fields,
                      const char *message) {
        if (log_to_journal)
                log_write_journal(level, error, file, line, fields, message);
        else
                log_write_console(level, fields, message);
}

int log_internal(int level, int error, const char *file, int line,
                 const struct log_fields *fields, const char *format, ...) {
        int saved_errno = errno;
        char message[2048];
        unsigned suppressed;
        va_list ap;

        error = __builtin_abs(error);
        if (level > log_max_level)
                return -error;
        if (!ratelimit_allow(file, line, &suppressed))
                return -error;
        if (suppressed > 0) {
                char note[256];

                snprintf(note, sizeof(note), "Suppressed %u message%s like the next (%s:%d) in %.0f s.", suppressed,
                         suppressed == 1 ? "" : "s", file, line, (double) ratelimit_interval / 1e6);
                log_write(level, 0, file, line, fields, note);
        }

        /* Let %m print the error we were given rather than whatever errno
         * happens to hold. */
        errno = error;
        va_start(ap, format);
        vsnprintf(message, sizeof(message), format, ap);
        va_end(ap);

        log_write(level, error, file, line, fields, message);

        errno = saved_errno;
        return -error;
}

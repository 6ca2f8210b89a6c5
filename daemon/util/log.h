/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Logging for swarmd and its helpers.
 *
 * Under systemd (stderr connected to the journal, see $JOURNAL_STREAM) each
 * message goes to the journal with structured fields: PRIORITY=, CODE_FILE=,
 * CODE_LINE=, ERRNO= and, where the caller names them, PEER=, JOB= and SKILL=.
 * Otherwise messages go to stderr as "swarmd: message", with the same fields
 * shown as a "[peer=… job=… skill=…]" prefix.
 *
 * Messages above the maximum level are dropped before their arguments are
 * formatted, so debug logging costs one comparison when disabled. */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

#include "macro.h"

enum log_target {
        LOG_TARGET_AUTO,        /* journal when stderr is the journal, else console */
        LOG_TARGET_CONSOLE,
        LOG_TARGET_JOURNAL,
};

/* Who or what a message is about; any field may be NULL. */
struct log_fields {
        const char *peer;
        const char *job;
        const char *skill;
};

void log_setup(const char *program_name, enum log_target target);
void log_set_max_level(int level);
int log_get_max_level(void);

/* Parses "debug", "info", "notice", "warning", "err" (also "error") and
 * "crit" into a syslog priority; -EINVAL otherwise. */
int log_level_from_string(const char *s);
/* "emerg" … "debug", indexed by syslog priority, NULL-terminated. */
extern const char *const log_level_names[LOG_DEBUG + 2];
const char *log_level_to_string(int level);

/* Logs and returns -abs(error) (or 0 when error is 0), so that callers can
 * write 'return log_error_errno(r, "…: %m");'.  %m prints strerror(error). */
/* Each log statement (call site) logs at most LOG_RATELIMIT_BURST messages
 * per LOG_RATELIMIT_INTERVAL_USEC; the next one after a pause says how many
 * it suppressed.  log_set_ratelimit() changes both (burst 0: no limit). */
#define LOG_RATELIMIT_INTERVAL_USEC (10 * 1000 * 1000ULL)
#define LOG_RATELIMIT_BURST 20u
void log_set_ratelimit(uint64_t interval_usec, unsigned burst);

int log_internal(int level, int error, const char *file, int line,
                 const struct log_fields *fields, const char *format, ...) _printf_(6, 7);

#define log_full_errno_fields(level, error, fields, ...)                                \
        ({                                                                              \
                int _level_ = (level), _e_ = (error);                                   \
                _level_ <= log_get_max_level()                                          \
                        ? log_internal(_level_, _e_, __FILE__, __LINE__, (fields), __VA_ARGS__) \
                        : -__builtin_abs(_e_);                                          \
        })

#define log_full_errno(level, error, ...) log_full_errno_fields(level, error, NULL, __VA_ARGS__)
#define log_full(level, ...) (void) log_full_errno(level, 0, __VA_ARGS__)

#define log_debug(...)   log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)    log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...)  log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...)   log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...)   log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...)    log_full_errno(LOG_INFO, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...)   log_full_errno(LOG_ERR, e, __VA_ARGS__)

/* With structured context, e.g.
 *   log_fields(LOG_INFO, &(struct log_fields) { .peer = id }, "joined"); */
#define log_oom() log_error_errno(-ENOMEM, "Out of memory.")

#define log_fields(level, fields, ...) (void) log_full_errno_fields(level, 0, fields, __VA_ARGS__)

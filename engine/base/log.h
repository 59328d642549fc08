/*
 * Logging: one JSON object per line on stderr, written with a single
 * write(2) so lines from different threads never interleave.
 *
 *   {"ts":"2026-11-27T15:00:00.123Z","level":"info","msg":"...",
 *    "operationID":"...", <extra fields>}
 */
#ifndef IMP_LOG_H
#define IMP_LOG_H

#include "base/buf.h"

enum imp_log_level { IMP_LOG_DEBUG, IMP_LOG_INFO, IMP_LOG_WARN, IMP_LOG_ERROR };

void imp_log_set_level(int level);
int imp_log_level(void);
/* Parses "debug", "info", "warn", "error"; returns -1 for anything else. */
int imp_log_level_parse(const char *s);

/* A log line with a printf-formatted message. opid may be NULL. */
void imp_log(int level, const char *opid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A log line whose extra fields are given as pre-rendered JSON members
 * (`"key":value,...` without braces; may be NULL or empty). */
void imp_log_fields(int level, const char *opid, const char *msg, const char *fields);

#define imp_debug(...)                                                                             \
    do {                                                                                           \
        if (imp_log_level() <= IMP_LOG_DEBUG) imp_log(IMP_LOG_DEBUG, __VA_ARGS__);                 \
    } while (0)
#define imp_info(...)  imp_log(IMP_LOG_INFO, __VA_ARGS__)
#define imp_warn(...)  imp_log(IMP_LOG_WARN, __VA_ARGS__)
#define imp_error(...) imp_log(IMP_LOG_ERROR, __VA_ARGS__)

#endif

/*
 * Logging, one line per call, written with a single write(2) so lines from
 * different threads (and processes sharing a file) never interleave.
 *
 * Two formats. impulse's own, on stderr, when the config has no log.yml:
 *
 *   {"ts":"2026-11-27T15:00:00.123Z","level":"info","msg":"...",
 *    "operationID":"...", <extra fields>}
 *
 * and OpenIM's (log.yml, imp_log_openim_start): its JSON or console line,
 * to the rotating file <storageLocation>/openim-service-log.<period> and/or
 * stdout, as OpenIM's logger (openimsdk/tools log/zap.go) writes them:
 *
 *   {"level":"INFO","time":"2026-11-27 16:00:00.123","logger":"openim-push",
 *    "caller":"push/fanout.c:86","msg":"push<padded to 50>","PID":41,
 *    "version":"v3.8.3-patch.15","operationID":"...","opUserID":"...",
 *    <extra fields>,"error":"..."}
 *
 * Errors before the config is loaded (and a bad config) are not logged
 * here: main.c prints them on stderr.
 */
#ifndef IMP_LOG_H
#define IMP_LOG_H

#include <stdbool.h>
#include <time.h>

#include "base/buf.h"

enum imp_log_level { IMP_LOG_DEBUG, IMP_LOG_INFO, IMP_LOG_WARN, IMP_LOG_ERROR };

void imp_log_set_level(int level);
int imp_log_level(void);
/* Parses "debug", "info", "warn", "error"; returns -1 for anything else. */
int imp_log_level_parse(const char *s);
/* impulse's level for OpenIM's remainLogLevel: 6 and 5 debug, 4 info,
 * 3 warn, 2 (error), 1 (panic) and 0 (fatal) error; -1 out of 0..6. */
int imp_log_level_from_openim(int remain_log_level);

/* A log line with a printf-formatted message. opid may be NULL. file and
 * line are the caller's (the macros below pass __FILE__ and __LINE__). */
void imp_log_at(const char *file, int line, int level, const char *opid, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* A log line whose extra fields are given as pre-rendered JSON members
 * (`"key":value,...` without braces; may be NULL or empty). opuser (the
 * opUserID, may be NULL) appears only in OpenIM's format, as there. */
void imp_log_fields_at(const char *file, int line, int level, const char *opid, const char *opuser,
                       const char *msg, const char *fields);

#define imp_log(...) imp_log_at(__FILE__, __LINE__, __VA_ARGS__)
#define imp_log_fields(level, opid, msg, fields)                                                   \
    imp_log_fields_at(__FILE__, __LINE__, level, opid, NULL, msg, fields)

#define imp_debug(...)                                                                             \
    do {                                                                                           \
        if (imp_log_level() <= IMP_LOG_DEBUG) imp_log(IMP_LOG_DEBUG, __VA_ARGS__);                 \
    } while (0)
#define imp_info(...)  imp_log(IMP_LOG_INFO, __VA_ARGS__)
#define imp_warn(...)  imp_log(IMP_LOG_WARN, __VA_ARGS__)
#define imp_error(...) imp_log(IMP_LOG_ERROR, __VA_ARGS__)

/* ---- OpenIM's format (log.yml) ------------------------------------------ */

struct imp_log_openim {
    const char *dir;    /* storageLocation; NULL or "" = no file */
    int rotation_hours; /* rotationTime; 0 is taken as 24 */
    int remain_count;   /* remainRotationCount; 0 = keep files younger than 7 days */
    bool to_stdout;     /* isStdout: also to stdout */
    bool json;          /* isJson: JSON lines, else console lines */
    const char *logger; /* "openim-push" */
    const char *version;
};

/* Switches every later line to OpenIM's format, as o says (copied). Opens
 * the current file (creating the folder) and removes old ones. Call once,
 * before other threads log. Returns 0, or IMP_EIO with the reason in err
 * (then nothing changes). */
int imp_log_openim_start(const struct imp_log_openim *o, char *err, size_t errlen);
/* The file of the period holding local time `now` (a time_t):
 * <dir>/openim-service-log.%Y-%m-%d when rotation_hours is a multiple of
 * 24 (or 0), else .%Y-%m-%d_%H, the period start truncated in local time
 * as OpenIM's rotatelogs does. Cannot fail (truncates to outlen). */
void imp_log_file_name(char *out, size_t outlen, const char *dir, int rotation_hours, time_t now);
/* Removes files of dir named openim-service-log.* beyond the `keep` last in
 * lexical order (keep 0: those modified more than 7 days before now). A
 * file gone meanwhile (another process cleaning) is no error. Returns the
 * number removed. */
int imp_log_cleanup(const char *dir, int keep, time_t now);

/* One line of OpenIM's format into b (appended, with its newline): what
 * each line goes through, exposed for tests. */
struct imp_log_entry {
    int level;
    struct timespec ts;
    const char *file; /* caller, trimmed to its last two path parts */
    int line;
    const char *opid, *opuser; /* may be NULL */
    const char *msg;
    size_t msglen;
    const char *fields; /* JSON members without braces; may be NULL */
};
void imp_log_render_openim(struct imp_buf *b, const struct imp_log_openim *o, int pid,
                           const struct imp_log_entry *e);

#endif

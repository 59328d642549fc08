/*
 * JSON-lines logger. The level is a process-wide atomic; each line is
 * assembled in a local buffer and written with one write(2) call (POSIX
 * guarantees no interleaving for a single write on a pipe up to PIPE_BUF,
 * and in practice for regular files and terminals too).
 *
 * Called from every thread; never blocks beyond its one write(2).
 */
#include "base/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int current_level = IMP_LOG_INFO;

void imp_log_set_level(int level) { atomic_store(&current_level, level); }
int imp_log_level(void) { return atomic_load_explicit(&current_level, memory_order_relaxed); }

int imp_log_level_parse(const char *s)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

static const char *level_name(int level)
{
    switch (level) {
    case IMP_LOG_DEBUG: return "debug";
    case IMP_LOG_INFO: return "info";
    case IMP_LOG_WARN: return "warn";
    default: return "error";
    }
}

static void emit(int level, const char *opid, const char *msg, size_t msglen, const char *fields)
{
    char stackbuf[512];
    struct imp_buf b;
    struct timespec ts;
    struct tm tm;

    imp_buf_init(&b);
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stackbuf, sizeof(stackbuf), "%Y-%m-%dT%H:%M:%S", &tm);
    imp_buf_printf(&b, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"msg\":", stackbuf,
                   ts.tv_nsec / 1000000L, level_name(level));
    imp_buf_json_str(&b, msg, msglen);
    if (opid && *opid) {
        imp_buf_puts(&b, ",\"operationID\":");
        imp_buf_json_cstr(&b, opid);
    }
    if (fields && *fields) {
        imp_buf_putc(&b, ',');
        imp_buf_puts(&b, fields);
    }
    imp_buf_puts(&b, "}\n");
    const char *p = b.data;
    size_t left = b.len;
    while (left > 0) {
        ssize_t n = write(STDERR_FILENO, p, left);
        if (n <= 0) break;
        p += n;
        left -= (size_t)n;
    }
    imp_buf_dispose(&b);
}

void imp_log(int level, const char *opid, const char *fmt, ...)
{
    if (level < imp_log_level()) return;
    struct imp_buf m;
    va_list ap;
    imp_buf_init(&m);
    va_start(ap, fmt);
    imp_buf_vprintf(&m, fmt, ap);
    va_end(ap);
    emit(level, opid, m.data ? m.data : "", m.len, NULL);
    imp_buf_dispose(&m);
}

void imp_log_fields(int level, const char *opid, const char *msg, const char *fields)
{
    if (level < imp_log_level()) return;
    emit(level, opid, msg, strlen(msg), fields);
}

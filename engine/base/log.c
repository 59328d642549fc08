/*
 * Logger. The level is a process-wide atomic; each line is assembled in a
 * local buffer and written with one write(2) call per destination (POSIX
 * guarantees no interleaving for a single write on a pipe up to PIPE_BUF,
 * and O_APPEND makes each write land whole at the end of a regular file,
 * even one several impulse processes share, as OpenIM's services do).
 *
 * Until imp_log_openim_start, lines are impulse's JSON on stderr. After it
 * (config with a log.yml), they take OpenIM's format and go to a file
 * named for the current rotation period and/or stdout. The file keeps one
 * descriptor number for the life of the process: a new period's file is
 * opened aside and dup2()'d onto it, so a thread that loaded the number
 * just before the switch writes to the old or the new file, never to a
 * descriptor closed and reused meanwhile. The switch and the cleanup of
 * old files that follows it run under one mutex, taken only by a line
 * written after the open period's end; writers take no lock.
 *
 * Deliberately not OpenIM's: no ANSI colours in console lines; no `.1`,
 * `.2` files (rotatelogs names those only on a forced or size rotation,
 * which OpenIM does not configure); no `<file>_lock` around the cleanup
 * (a file another process removed first is skipped instead).
 *
 * Called from every thread; never blocks beyond its write(2) calls, and a
 * period switch (open, dup2, one directory scan) once per period.
 */
#include "base/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/common.h"

#define FILE_PREFIX "openim-service-log."
#define MSG_WIDTH   50 /* OpenIM's alignEncoder: fmt.Sprintf("%-50s", msg) */
#define MAX_AGE_S   (7 * 86400)

static atomic_int current_level = IMP_LOG_INFO;

/* OpenIM's settings: written once by imp_log_openim_start before other
 * threads log, read-only after (openim_on is the release point) */
static atomic_bool openim_on;
static struct {
    struct imp_log_openim o;
    char dir[PATH_MAX];
    char logger[64];
    char version[64];
    int pid;
    int fd;                  /* the file's fixed descriptor, -1 = no file */
    long long period;        /* the open file's period (under swap_mu) */
    atomic_llong next_check; /* when the period may end (epoch s): check then */
    pthread_mutex_t swap_mu; /* around a period switch */
} om = {.fd = -1, .swap_mu = PTHREAD_MUTEX_INITIALIZER};

void imp_log_set_level(int level) { atomic_store(&current_level, level); }
int imp_log_level(void) { return atomic_load_explicit(&current_level, memory_order_relaxed); }

int imp_log_level_parse(const char *s)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

int imp_log_level_from_openim(int v)
{
    /* openimsdk/tools log/zap.go logLevelMap; panic and fatal lines do
     * not exist in impulse, so those levels keep its errors */
    static const int map[7] = {IMP_LOG_ERROR, IMP_LOG_ERROR, IMP_LOG_ERROR, IMP_LOG_WARN,
                               IMP_LOG_INFO,  IMP_LOG_DEBUG, IMP_LOG_DEBUG};
    return v >= 0 && v <= 6 ? map[v] : -1;
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

static const char *level_upper(int level)
{
    switch (level) {
    case IMP_LOG_DEBUG: return "DEBUG";
    case IMP_LOG_INFO: return "INFO";
    case IMP_LOG_WARN: return "WARN";
    default: return "ERROR";
    }
}

static void write_all(int fd, const char *p, size_t left)
{
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        p += n;
        left -= (size_t)n;
    }
}

/* ---- impulse's format ---------------------------------------------------- */

static void render_impulse(struct imp_buf *b, int level, const struct timespec *ts,
                           const char *opid, const char *msg, size_t msglen, const char *fields)
{
    char when[64];
    struct tm tm;
    gmtime_r(&ts->tv_sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    imp_buf_printf(b, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"msg\":", when,
                   ts->tv_nsec / 1000000L, level_name(level));
    imp_buf_json_str(b, msg, msglen);
    if (opid && *opid) {
        imp_buf_puts(b, ",\"operationID\":");
        imp_buf_json_cstr(b, opid);
    }
    if (fields && *fields) {
        imp_buf_putc(b, ',');
        imp_buf_puts(b, fields);
    }
    imp_buf_puts(b, "}\n");
}

/* ---- OpenIM's format ----------------------------------------------------- */

/* The caller as zap's ShortCallerEncoder shows it: the last folder and the
 * file ("push/fanout.c"). */
static const char *trim_path(const char *file)
{
    if (!file) return "?";
    const char *last = strrchr(file, '/');
    if (!last) return file;
    const char *p = last;
    while (p > file && p[-1] != '/') p--;
    return p;
}

/* Appends s padded with spaces to `width` characters (UTF-8 code points,
 * as Go's %-50s counts runes), as a JSON string when json. */
static void put_padded(struct imp_buf *b, const char *s, size_t len, int width, bool json)
{
    int chars = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) chars++;
    size_t start = b->len;
    imp_buf_append(b, s, len);
    for (; chars < width; chars++) imp_buf_putc(b, ' ');
    if (json) {
        /* re-encode the padded text as a JSON string in place */
        size_t n = b->len - start;
        char *copy = imp_xmalloc(n + 1);
        memcpy(copy, b->data + start, n);
        b->len = start;
        imp_buf_json_str(b, copy, n);
        free(copy);
    }
}

/* Appends s, truncated or padded with spaces to width bytes, as OpenIM's
 * stringutil.FormatString(s, width, true). */
static void put_fixed(struct imp_buf *b, const char *s, size_t width)
{
    size_t len = strlen(s);
    imp_buf_append(b, s, len > width ? width : len);
    for (; len < width; len++) imp_buf_putc(b, ' ');
}

/* The end of the JSON member starting at p (`"key":value`): the ',' that
 * follows it at depth 0, or the terminating NUL. */
static const char *member_end(const char *p)
{
    int depth = 0;
    bool str = false;
    for (; *p; p++) {
        if (str) {
            if (*p == '\\' && p[1])
                p++;
            else if (*p == '"')
                str = false;
        } else if (*p == '"') {
            str = true;
        } else if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            depth--;
        } else if (*p == ',' && depth == 0) {
            break;
        }
    }
    return p;
}

/* The context (operationID, opUserID), then the fields, then, for warn and
 * error lines, the fields' "error" member last, as OpenIM's appendError
 * puts it; each member preceded by a comma unless first. */
static void put_members(struct imp_buf *b, const struct imp_log_entry *e)
{
    bool first = true;
    if (e->opid && *e->opid) {
        imp_buf_puts(b, "\"operationID\":");
        imp_buf_json_cstr(b, e->opid);
        first = false;
    }
    if (e->opuser && *e->opuser) {
        imp_buf_puts(b, first ? "\"opUserID\":" : ",\"opUserID\":");
        imp_buf_json_cstr(b, e->opuser);
        first = false;
    }
    if (!e->fields || !*e->fields) return;
    const char *err = NULL, *err_end = NULL;
    for (const char *p = e->fields; *p;) {
        const char *end = member_end(p);
        if (e->level >= IMP_LOG_WARN && !err && strncmp(p, "\"error\":", 8) == 0) {
            err = p;
            err_end = end;
        } else {
            if (!first) imp_buf_putc(b, ',');
            imp_buf_append(b, p, (size_t)(end - p));
            first = false;
        }
        p = *end ? end + 1 : end;
    }
    if (err) {
        if (!first) imp_buf_putc(b, ',');
        imp_buf_append(b, err, (size_t)(err_end - err));
    }
}

void imp_log_render_openim(struct imp_buf *b, const struct imp_log_openim *o, int pid,
                           const struct imp_log_entry *e)
{
    char when[64], caller[PATH_MAX + 32];
    struct tm tm;
    time_t sec = e->ts.tv_sec;
    localtime_r(&sec, &tm);
    size_t n = strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(when + n, sizeof(when) - n, ".%03ld", e->ts.tv_nsec / 1000000L);
    const char *logger = o->logger ? o->logger : "openim-push";
    const char *version = o->version ? o->version : "";
    if (o->json) {
        snprintf(caller, sizeof(caller), "%s:%d", trim_path(e->file), e->line);
        imp_buf_printf(b, "{\"level\":\"%s\",\"time\":\"%s\",\"logger\":", level_upper(e->level),
                       when);
        imp_buf_json_cstr(b, logger);
        imp_buf_puts(b, ",\"caller\":");
        imp_buf_json_cstr(b, caller);
        imp_buf_puts(b, ",\"msg\":");
        put_padded(b, e->msg, e->msglen, MSG_WIDTH, true);
        imp_buf_printf(b, ",\"PID\":%d,\"version\":", pid);
        imp_buf_json_cstr(b, version);
        size_t before = b->len;
        imp_buf_putc(b, ',');
        put_members(b, e);
        if (b->len == before + 1) b->len = before; /* no members */
        imp_buf_puts(b, "}\n");
        return;
    }
    /* console: zap's console encoder, tab-separated, with OpenIM's level
     * encoder (level, [PID:n], module, [version]) and caller encoder */
    char tmp[128];
    imp_buf_printf(b, "%s\t%s\t", when, level_upper(e->level));
    snprintf(tmp, sizeof(tmp), "[PID:%d]", pid);
    put_fixed(b, tmp, 15);
    imp_buf_putc(b, '\t');
    put_fixed(b, logger, 25);
    imp_buf_putc(b, '\t');
    if (*version) {
        snprintf(tmp, sizeof(tmp), "[%s]", version);
        put_fixed(b, tmp, 30);
        imp_buf_putc(b, '\t');
    }
    snprintf(caller, sizeof(caller), "[%s:%d]", trim_path(e->file), e->line);
    put_fixed(b, caller, 50);
    imp_buf_putc(b, '\t');
    put_padded(b, e->msg, e->msglen, MSG_WIDTH, false);
    size_t before = b->len;
    imp_buf_puts(b, "\t{");
    put_members(b, e);
    if (b->len == before + 2)
        b->len = before; /* zap writes no object when there are no fields */
    else
        imp_buf_putc(b, '}');
    imp_buf_putc(b, '\n');
}

/* ---- files --------------------------------------------------------------- */

static int period_hours(int rotation_hours) { return rotation_hours > 0 ? rotation_hours : 24; }

/* The period holding `now`, counted in local time as UTC: rotatelogs
 * truncates the local wall clock (fileutil.GenerateFn). *start is the
 * period's start in that count (format it with gmtime); *end_epoch, when
 * given, when it ends in real time at today's UTC offset (a DST change
 * before then moves the end: the check at *end_epoch computes again). */
static long long period_of(time_t now, int rotation_hours, time_t *start, time_t *end_epoch)
{
    struct tm tm;
    localtime_r(&now, &tm);
    /* Go's Truncate counts from its zero time, 0001-01-01 UTC, which only
     * matters for periods that do not divide a day */
    const long long zero = 62135596800LL;
    long long local = (long long)now + tm.tm_gmtoff + zero;
    long long len = (long long)period_hours(rotation_hours) * 3600;
    long long p = local / len;
    if (start) *start = (time_t)(p * len - zero);
    if (end_epoch) *end_epoch = (time_t)((p + 1) * len - zero - tm.tm_gmtoff);
    return p;
}

void imp_log_file_name(char *out, size_t outlen, const char *dir, int rotation_hours, time_t now)
{
    time_t start;
    struct tm tm;
    char stamp[64];
    period_of(now, rotation_hours, &start, NULL);
    gmtime_r(&start, &tm);
    /* rotationTime is whole hours in OpenIM (time.Duration(n) * time.Hour),
     * so its third pattern, _%H_%M_%S, never applies */
    strftime(stamp, sizeof(stamp),
             period_hours(rotation_hours) % 24 == 0 ? "%Y-%m-%d" : "%Y-%m-%d_%H", &tm);
    size_t dl = strlen(dir);
    snprintf(out, outlen, "%s%s" FILE_PREFIX "%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", stamp);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int imp_log_cleanup(const char *dir, int keep, time_t now)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        /* rotatelogs' glob is the pattern with %X made *: every file of
         * the prefix, its lock and symlink files excepted */
        if (strncmp(de->d_name, FILE_PREFIX, strlen(FILE_PREFIX)) != 0 ||
            ends_with(de->d_name, "_lock") || ends_with(de->d_name, "_symlink"))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            names = imp_xrealloc(names, cap * sizeof(*names));
        }
        names[n++] = imp_xstrdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(*names), cmp_names);
    int removed = 0;
    char path[PATH_MAX];
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        struct stat st;
        bool drop;
        if (keep > 0) {
            /* symlinks are kept, as rotatelogs does with a count */
            drop = i + (size_t)keep < n && lstat(path, &st) == 0 && !S_ISLNK(st.st_mode);
        } else {
            drop = stat(path, &st) == 0 && st.st_mtime < now - MAX_AGE_S;
        }
        if (drop && unlink(path) == 0) removed++; /* ENOENT: another process was first */
        free(names[i]);
    }
    free(names);
    return removed;
}

static int mkdirs(const char *dir)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s", dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return -1;
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}

/* Opens the file of `now`'s period. Returns the descriptor or -1 (errno). */
static int open_period(time_t now, char *name, size_t namelen)
{
    imp_log_file_name(name, namelen, om.dir, om.o.rotation_hours, now);
    if (mkdirs(om.dir) != 0) return -1;
    return open(name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

/* A line written at or after next_check: the first to see it opens the
 * new period's file onto the fixed descriptor and cleans up. */
static void switch_period(time_t now)
{
    char name[PATH_MAX + 64];
    pthread_mutex_lock(&om.swap_mu);
    time_t end;
    long long period = period_of(now, om.o.rotation_hours, NULL, &end);
    if (period != om.period) {
        int fd = open_period(now, name, sizeof(name));
        /* on failure the old file goes on, and the next period retries */
        om.period = period;
        if (fd < 0) {
            char line[PATH_MAX + 256];
            int n =
                snprintf(line, sizeof(line), "log: cannot open %s: %s\n", name, strerror(errno));
            write_all(STDERR_FILENO, line, n > 0 && (size_t)n < sizeof(line) ? (size_t)n : 0);
        } else {
            dup2(fd, om.fd);
            close(fd);
            imp_log_cleanup(om.dir, om.o.remain_count, now);
        }
    }
    atomic_store(&om.next_check, (long long)end);
    pthread_mutex_unlock(&om.swap_mu);
}

int imp_log_openim_start(const struct imp_log_openim *o, char *err, size_t errlen)
{
    char name[PATH_MAX + 64];
    om.o = *o;
    om.dir[0] = '\0';
    if (o->dir && o->dir[0]) {
        /* relative to the working directory, as OpenIM resolves it */
        size_t len = strlen(o->dir);
        if (len >= sizeof(om.dir)) {
            snprintf(err, errlen, "log.storageLocation: the path is too long");
            return IMP_EIO;
        }
        memcpy(om.dir, o->dir, len + 1);
        while (len > 1 && om.dir[len - 1] == '/') om.dir[--len] = '\0';
    }
    snprintf(om.logger, sizeof(om.logger), "%s", o->logger ? o->logger : "openim-push");
    snprintf(om.version, sizeof(om.version), "%s", o->version ? o->version : "");
    om.o.dir = om.dir;
    om.o.logger = om.logger;
    om.o.version = om.version;
    om.pid = (int)getpid();
    if (om.dir[0]) {
        time_t now = time(NULL);
        int fd = open_period(now, name, sizeof(name));
        if (fd < 0) {
            snprintf(err, errlen, "log.storageLocation: cannot open %s: %s", name, strerror(errno));
            return IMP_EIO;
        }
        if (om.fd >= 0) { /* started again (tests): keep the number */
            dup2(fd, om.fd);
            close(fd);
        } else {
            om.fd = fd;
        }
        time_t end;
        om.period = period_of(now, om.o.rotation_hours, NULL, &end);
        atomic_store(&om.next_check, (long long)end);
        imp_log_cleanup(om.dir, om.o.remain_count, now);
    }
    atomic_store_explicit(&openim_on, true, memory_order_release);
    return 0;
}

/* ---- emitting ------------------------------------------------------------ */

static void emit(const char *file, int line, int level, const char *opid, const char *opuser,
                 const char *msg, size_t msglen, const char *fields)
{
    struct imp_buf b;
    struct timespec ts;
    imp_buf_init(&b);
    clock_gettime(CLOCK_REALTIME, &ts);
    if (!atomic_load_explicit(&openim_on, memory_order_acquire)) {
        render_impulse(&b, level, &ts, opid, msg, msglen, fields);
        write_all(STDERR_FILENO, b.data, b.len);
        imp_buf_dispose(&b);
        return;
    }
    struct imp_log_entry e = {level, ts, file, line, opid, opuser, msg, msglen, fields};
    imp_log_render_openim(&b, &om.o, om.pid, &e);
    if (om.fd >= 0) {
        if (ts.tv_sec >= atomic_load_explicit(&om.next_check, memory_order_relaxed))
            switch_period(ts.tv_sec);
        write_all(om.fd, b.data, b.len);
    }
    if (om.o.to_stdout) write_all(STDOUT_FILENO, b.data, b.len);
    imp_buf_dispose(&b);
}

void imp_log_at(const char *file, int line, int level, const char *opid, const char *fmt, ...)
{
    if (level < imp_log_level()) return;
    struct imp_buf m;
    va_list ap;
    imp_buf_init(&m);
    va_start(ap, fmt);
    imp_buf_vprintf(&m, fmt, ap);
    va_end(ap);
    emit(file, line, level, opid, NULL, m.data ? m.data : "", m.len, NULL);
    imp_buf_dispose(&m);
}

void imp_log_fields_at(const char *file, int line, int level, const char *opid, const char *opuser,
                       const char *msg, const char *fields)
{
    if (level < imp_log_level()) return;
    emit(file, line, level, opid, opuser, msg, strlen(msg), fields);
}

/* Logging in OpenIM's format (log.yml): the level mapping, the file name of
 * each rotationTime, the line's key order and padding, the cleanup of old
 * files, and the config keys that choose it. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/config.h"
#include "base/log.h"
#include "t.h"

static char tmp[128];

static void test_levels(void)
{
    /* openimsdk/tools log/zap.go: 6 and 5 debug, 4 info, 3 warn, 2 error,
     * 1 panic, 0 fatal (those two: impulse's error) */
    static const int want[7] = {IMP_LOG_ERROR, IMP_LOG_ERROR, IMP_LOG_ERROR, IMP_LOG_WARN,
                                IMP_LOG_INFO,  IMP_LOG_DEBUG, IMP_LOG_DEBUG};
    for (int i = 0; i <= 6; i++) CHECK(imp_log_level_from_openim(i) == want[i]);
    CHECK(imp_log_level_from_openim(7) == -1);
    CHECK(imp_log_level_from_openim(-1) == -1);
}

static void test_file_names(void)
{
    char name[256];
    /* 2025-01-14 13:25:07 UTC; TZ=UTC (main) */
    time_t t = 1736861107;
    imp_log_file_name(name, sizeof(name), "/var/log/im", 24, t);
    CHECK_STR(name, "/var/log/im/openim-service-log.2025-01-14");
    imp_log_file_name(name, sizeof(name), "../../../../logs/", 24, t);
    CHECK_STR(name, "../../../../logs/openim-service-log.2025-01-14");
    imp_log_file_name(name, sizeof(name), "logs", 48, t); /* a multiple of 24: by day */
    CHECK_STR(name, "logs/openim-service-log.2025-01-14");
    imp_log_file_name(name, sizeof(name), "logs", 0, t); /* 0: as 24 */
    CHECK_STR(name, "logs/openim-service-log.2025-01-14");
    imp_log_file_name(name, sizeof(name), "logs", 1, t);
    CHECK_STR(name, "logs/openim-service-log.2025-01-14_13");
    imp_log_file_name(name, sizeof(name), "logs", 6, t); /* the period's start: 12:00 */
    CHECK_STR(name, "logs/openim-service-log.2025-01-14_12");
    /* 5 h periods count from Go's zero time, as time.Truncate: 04:00,
     * 09:00, 14:00 on that day (counted from the Unix epoch they would be
     * 02:00, 07:00, 12:00) */
    imp_log_file_name(name, sizeof(name), "logs", 5, t);
    CHECK_STR(name, "logs/openim-service-log.2025-01-14_09");
    /* local time, not UTC: 13:25 UTC is 22:25 in Tokyo, 08:25 in New York */
    setenv("TZ", "Asia/Tokyo", 1);
    tzset();
    imp_log_file_name(name, sizeof(name), "logs", 1, t);
    CHECK_STR(name, "logs/openim-service-log.2025-01-14_22");
    imp_log_file_name(name, sizeof(name), "logs", 24, t + 6 * 3600); /* 04:25 next day */
    CHECK_STR(name, "logs/openim-service-log.2025-01-15");
    setenv("TZ", "America/New_York", 1);
    tzset();
    imp_log_file_name(name, sizeof(name), "logs", 1, t);
    CHECK_STR(name, "logs/openim-service-log.2025-01-14_08");
    setenv("TZ", "UTC", 1);
    tzset();
}

static const struct imp_log_openim json_o = {
    NULL, 24, 2, true, true, "openim-push", "v3.8.3-patch.15",
};

static void test_json_line(void)
{
    struct imp_buf b;
    imp_buf_init(&b);
    struct imp_log_entry e = {IMP_LOG_WARN,
                              {1736861107, 123456789},
                              "/work/impulse/engine/push/fanout.c",
                              101,
                              "op-1",
                              "u1",
                              "gateway failed",
                              14,
                              "\"error\":\"unavailable\",\"clientMsgID\":\"c1\",\"nested\":"
                              "{\"error\":\"x\",\"a\":[1,\"b,c\"]}"};
    imp_log_render_openim(&b, &json_o, 41, &e);
    imp_buf_putc(&b, '\0');
    /* OpenIM's order (zap's JSON encoder, tools log/zap.go): level, time,
     * logger, caller, msg padded to 50, PID, version, operationID,
     * opUserID, the fields, and error last on warn and error lines */
    CHECK_STR(
        b.data,
        "{\"level\":\"WARN\",\"time\":\"2025-01-14 13:25:07.123\",\"logger\":\"openim-push\","
        "\"caller\":\"push/fanout.c:101\",\"msg\":\"gateway failed                            "
        "        \",\"PID\":41,\"version\":\"v3.8.3-patch.15\",\"operationID\":\"op-1\","
        "\"opUserID\":\"u1\",\"clientMsgID\":\"c1\",\"nested\":{\"error\":\"x\",\"a\":[1,\"b,"
        "c\"]},\"error\":\"unavailable\"}\n");

    /* an info line keeps its fields in place; no context: none written;
     * the padding counts characters (a message of 3 runes in 7 bytes),
     * and a message longer than 50 is not cut */
    imp_buf_reset(&b);
    struct imp_log_entry i = {IMP_LOG_INFO,
                              {1736861107, 5000000},
                              "main.c",
                              7,
                              NULL,
                              NULL,
                              "h\xc3\xa9\xe2\x82\xac",
                              6,
                              "\"error\":\"none\",\"n\":1"};
    imp_log_render_openim(&b, &json_o, 7, &i);
    imp_buf_putc(&b, '\0');
    char want[512];
    snprintf(want, sizeof(want),
             "{\"level\":\"INFO\",\"time\":\"2025-01-14 13:25:07.005\",\"logger\":\"openim-push\","
             "\"caller\":\"main.c:7\",\"msg\":\"h\xc3\xa9\xe2\x82\xac%47s\",\"PID\":7,\"version\":"
             "\"v3.8.3-patch.15\",\"error\":\"none\",\"n\":1}\n",
             "");
    CHECK_STR(b.data, want);
    imp_buf_reset(&b);
    char long_msg[80];
    memset(long_msg, 'x', 60);
    long_msg[60] = '\0';
    struct imp_log_entry l = {IMP_LOG_ERROR, {0, 0}, "a/b/c.c", 1, "", NULL, long_msg, 60, NULL};
    imp_log_render_openim(&b, &json_o, 7, &l);
    imp_buf_putc(&b, '\0');
    CHECK(strstr(b.data, "\"level\":\"ERROR\"") != NULL);
    CHECK(strstr(b.data, "\"caller\":\"b/c.c:1\"") != NULL);
    snprintf(want, sizeof(want), "\"msg\":\"%s\",\"PID\":7,\"version\":\"v3.8.3-patch.15\"}\n",
             long_msg);
    CHECK(strstr(b.data, want) != NULL);
    imp_buf_dispose(&b);
}

static void test_console_line(void)
{
    struct imp_log_openim o = json_o;
    o.json = false;
    struct imp_buf b;
    imp_buf_init(&b);
    struct imp_log_entry e = {
        IMP_LOG_INFO, {1736861107, 123000000}, "push/fanout.c", 86, "op-1", NULL, "push", 4,
        "\"n\":1"};
    imp_log_render_openim(&b, &o, 41, &e);
    imp_buf_putc(&b, '\0');
    char want[512];
    snprintf(want, sizeof(want),
             "2025-01-14 13:25:07.123\tINFO\t%-15s\t%-25s\t%-30s\t%-50s\t%-50s\t%s\n", "[PID:41]",
             "openim-push", "[v3.8.3-patch.15]", "[push/fanout.c:86]", "push",
             "{\"operationID\":\"op-1\",\"n\":1}");
    CHECK_STR(b.data, want);
    imp_buf_reset(&b);
    struct imp_log_entry bare = {IMP_LOG_DEBUG, {1736861107, 0}, "x.c", 1, NULL, NULL, "m", 1, ""};
    imp_log_render_openim(&b, &o, 41, &bare);
    imp_buf_putc(&b, '\0');
    CHECK(strncmp(b.data, "2025-01-14 13:25:07.000\tDEBUG\t", 30) == 0);
    CHECK(strchr(b.data, '{') == NULL); /* no fields: no object, as zap */
    imp_buf_dispose(&b);
}

static void touch(const char *name, time_t mtime)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", tmp, name);
    FILE *f = fopen(p, "w");
    if (f) fclose(f);
    struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
    utimensat(AT_FDCWD, p, ts, 0);
}

static int exists(const char *name)
{
    char p[256];
    struct stat st;
    snprintf(p, sizeof(p), "%s/%s", tmp, name);
    return stat(p, &st) == 0;
}

static void test_cleanup(void)
{
    time_t now = 1736861107;
    const char *days[] = {"openim-service-log.2025-01-10", "openim-service-log.2025-01-12",
                          "openim-service-log.2025-01-11", "openim-service-log.2025-01-14",
                          "openim-service-log.2025-01-13"};
    for (size_t i = 0; i < 5; i++) touch(days[i], now);
    touch("openim-service-log.2025-01-09_lock", now); /* rotatelogs' lock: not a log */
    touch("other.log", now);
    touch("openim-crontask-log.2025-01-01", now); /* another prefix */
    CHECK(imp_log_cleanup(tmp, 2, now) == 3);
    CHECK(!exists("openim-service-log.2025-01-10"));
    CHECK(!exists("openim-service-log.2025-01-11"));
    CHECK(!exists("openim-service-log.2025-01-12"));
    CHECK(exists("openim-service-log.2025-01-13"));
    CHECK(exists("openim-service-log.2025-01-14"));
    CHECK(exists("openim-service-log.2025-01-09_lock"));
    CHECK(exists("other.log"));
    CHECK(exists("openim-crontask-log.2025-01-01"));
    CHECK(imp_log_cleanup(tmp, 2, now) == 0); /* again: nothing more */
    CHECK(imp_log_cleanup(tmp, 1, now) == 1);
    CHECK(exists("openim-service-log.2025-01-14"));
    /* 0: the files modified in the last 7 days stay */
    touch("openim-service-log.2025-01-01", now - 8 * 86400);
    touch("openim-service-log.2025-01-08", now - 6 * 86400);
    CHECK(imp_log_cleanup(tmp, 0, now) == 1);
    CHECK(!exists("openim-service-log.2025-01-01"));
    CHECK(exists("openim-service-log.2025-01-08"));
    CHECK(imp_log_cleanup("/nonexistent/dir", 2, now) == 0);
}

/* imp_log_openim_start opens today's file in a folder it creates, removes
 * the oldest files, and lines then land there in OpenIM's JSON. */
static void test_start(void)
{
    char dir[256], name[512], err[256];
    snprintf(dir, sizeof(dir), "%s/sub/logs/", tmp);
    struct imp_log_openim o = {dir, 24, 2, false, true, "openim-push", "v3.8.3"};
    CHECK(imp_log_openim_start(&o, err, sizeof(err)) == 0);
    imp_log_set_level(IMP_LOG_INFO);
    imp_log(IMP_LOG_INFO, "op-x", "hello %d", 5);
    imp_debug(NULL, "not written");
    imp_log_file_name(name, sizeof(name), dir, 24, time(NULL));
    FILE *f = fopen(name, "r");
    CHECK(f != NULL);
    char line[1024] = "";
    if (f) {
        CHECK(fgets(line, sizeof(line), f) != NULL);
        CHECK(fgetc(f) == EOF); /* one line: the debug one is filtered */
        fclose(f);
    }
    CHECK(strncmp(line, "{\"level\":\"INFO\",\"time\":\"", 24) == 0);
    CHECK(strstr(line, "\"caller\":\"tests/test_log.c:") != NULL);
    CHECK(strstr(line, "\"msg\":\"hello 5      ") != NULL);
    CHECK(strstr(line, "\"version\":\"v3.8.3\",\"operationID\":\"op-x\"}\n") != NULL);
    struct imp_log_openim bad = {"/proc/nope", 24, 2, false, true, "openim-push", "v3.8.3"};
    CHECK(imp_log_openim_start(&bad, err, sizeof(err)) != 0);
    CHECK(strstr(err, "log.storageLocation") != NULL);
}

/* log.yml in a config folder, its IMENV_LOG_ overrides and the level */
static void write_file(const char *dir, const char *file, const char *text)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", dir, file);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
}

static void test_config(void)
{
    char dir[256], err[512];
    snprintf(dir, sizeof(dir), "%s/config", tmp);
    mkdir(dir, 0755);
    write_file(dir, "kafka.yml", "address: [127.0.0.1:9092]\n");
    write_file(dir, "redis.yml", "address: [127.0.0.1:6379]\n");
    write_file(dir, "discovery.yml", "enable: etcd\netcd:\n  address: [127.0.0.1:2379]\n");
    struct imp_config *c = imp_config_load(dir, err, sizeof(err));
    CHECK(c != NULL);
    if (c) { /* no log.yml: impulse's format, impulse's level */
        CHECK(!c->log_openim);
        CHECK_STR(c->log_level, "info");
        imp_config_destroy(c);
    }
    /* OpenIM's file as shipped (config/log.yml of v3.8.3-patch.15) */
    write_file(dir, "log.yml",
               "storageLocation: ../../../../logs/\nrotationTime: 24\nremainRotationCount: 2\n"
               "remainLogLevel: 6\nisStdout: false\nisJson: false\nisSimplify: true\n");
    c = imp_config_load(dir, err, sizeof(err));
    CHECK(c != NULL);
    if (c) {
        CHECK(c->log_openim);
        CHECK_STR(c->log_dir, "../../../../logs/");
        CHECK(c->log_rotation_hours == 24 && c->log_remain_count == 2);
        CHECK(!c->log_stdout && !c->log_json);
        CHECK_STR(c->log_level, "debug"); /* remainLogLevel 6 */
        CHECK_STR(c->log_level_origin, "log.remainLogLevel 6");
        imp_config_destroy(c);
    }
    /* docker's settings through the environment */
    setenv("IMENV_LOG_REMAINLOGLEVEL", "3", 1);
    setenv("IMENV_LOG_ISSTDOUT", "true", 1);
    setenv("IMENV_LOG_STORAGELOCATION", "/tmp/x", 1);
    c = imp_config_load(dir, err, sizeof(err));
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->log_level, "warn");
        CHECK(c->log_stdout);
        CHECK_STR(c->log_dir, "/tmp/x");
        CHECK(c->env_overrides && strstr(c->env_overrides, "log.remainLogLevel"));
        imp_config_destroy(c);
    }
    /* impulse.logLevel wins */
    setenv("IMENV_IMPULSE_LOGLEVEL", "error", 1);
    c = imp_config_load(dir, err, sizeof(err));
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->log_level, "error");
        CHECK(strstr(c->log_level_origin, "impulse.logLevel") != NULL);
        imp_config_destroy(c);
    }
    unsetenv("IMENV_IMPULSE_LOGLEVEL");
    /* impulse.logFormat: impulse keeps impulse's JSON on stderr */
    setenv("IMENV_IMPULSE_LOGFORMAT", "impulse", 1);
    c = imp_config_load(dir, err, sizeof(err));
    CHECK(c != NULL && !c->log_openim);
    if (c) CHECK_STR(c->log_level, "info");
    imp_config_destroy(c);
    setenv("IMENV_IMPULSE_LOGFORMAT", "zap", 1);
    c = imp_config_load(dir, err, sizeof(err));
    CHECK(c == NULL && strstr(err, "impulse.logFormat"));
    unsetenv("IMENV_IMPULSE_LOGFORMAT");
    setenv("IMENV_LOG_REMAINLOGLEVEL", "7", 1);
    c = imp_config_load(dir, err, sizeof(err));
    CHECK(c == NULL && strstr(err, "log.remainLogLevel") && !strchr(err, '\n'));
    unsetenv("IMENV_LOG_REMAINLOGLEVEL");
    unsetenv("IMENV_LOG_ISSTDOUT");
    unsetenv("IMENV_LOG_STORAGELOCATION");
}

int main(void)
{
    setenv("TZ", "UTC", 1);
    tzset();
    snprintf(tmp, sizeof(tmp), "/tmp/impulse-test-log-%d", (int)getpid());
    mkdir(tmp, 0755);
    test_levels();
    test_file_names();
    test_json_line();
    test_console_line();
    test_cleanup();
    test_start();
    test_config();
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return t_done("log");
}

/*
 * impulse: command line and process plumbing. Parses arguments, blocks
 * signals before any thread starts, starts the subsystems in order, and
 * on SIGTERM/SIGINT stops them in reverse order. Decides nothing else.
 */
#include <curl/curl.h>
#include <errno.h>
#include <ev.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "base/common.h"
#include "base/config.h"
#include "base/journal.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/ratelimit.h"
#include "daemon/admin.h"
#include "daemon/announce.h"
#include "daemon/dlq.h"
#include "daemon/engine.h"
#include "daemon/explain.h"
#include "daemon/notify.h"
#include "daemon/pushsvc.h"
#include "daemon/replay.h"
#include "daemon/watcher.h"
#include "net/grpc.h"
#include "net/kafka.h"
#include "net/producer.h"
#include "push/worker.h"
#include "script/vm.h"

#ifndef IMPULSE_VERSION
#define IMPULSE_VERSION "0.1.0"
#endif

static void usage(FILE *f)
{
    fprintf(f, "usage: impulse [run] -c <config> [-i <index>] [--shadow]\n"
               "                                     run the push engine (as openim-push -c -i);\n"
               "                                     --shadow: its own group, nothing sent\n"
               "       impulse check -c <config> [-i <index>] [--skip-kafka]\n"
               "                                     validate config, scripts and Kafka topics\n"
               "       impulse replay -c <config> [--from <dlq topic>] [--to <topic>] [--max N]\n"
               "                                     move dead letters back to their topic\n"
               "       impulse dlq ls -c <config> [--from <dlq topic>] [--max N] [--json]\n"
               "                                     list dead letters: reason, error, origin\n"
               "       impulse explain -c <config> [<record> | - | --from <topic:part:offset>]\n"
               "                 [--offline-data <file>] [--policy <file>] [--json]\n"
               "                                     one record through the policy in dry run,\n"
               "                                     each decision with its script line\n"
               "       impulse test [-c <config>] [busted arguments]\n"
               "                                     run busted specs inside the engine's VM\n"
               "       impulse version | --version\n"
               "       impulse <command> -h          the options of one command\n"
               "<config> is one YAML file or OpenIM's config folder. Linked or renamed as\n"
               "openim-push, the binary takes openim-push's command line.\n");
}

/* The options of the commands: openim-push's -c/--config_folder_path and
 * -i/--index (cobra: "-c x", "-cx", "-c=x", "--config_folder_path x" and
 * "=x"), plus each command's own. */
struct opt {
    char shrt;       /* 0: none */
    const char *lng; /* without the leading "--" */
    const char *alt; /* another long name, or NULL */
    int has_arg;
    const char *help;
    const char *val; /* the value given, or "1" for a flag given */
};

enum {
    O_CONF,
    O_INDEX,
    O_SKIP_KAFKA,
    O_FROM,
    O_TO,
    O_MAX,
    O_JSON,
    O_RECORD_FROM,
    O_OFFLINE_DATA,
    O_POLICY,
    O_SHADOW,
    O_COUNT
};

static void command_usage(FILE *f, const char *cmd, const struct opt *o, const int *allowed)
{
    fprintf(f, "usage: impulse %s%s [options]\n\noptions:\n", cmd,
            strcmp(cmd, "explain") == 0 ? " [<record file> | -]" : "");
    for (int i = 0; i < O_COUNT; i++) {
        if (!allowed[i]) continue;
        char names[96], shrt[8] = "    ";
        if (o[i].shrt) snprintf(shrt, sizeof(shrt), "-%c, ", o[i].shrt);
        snprintf(names, sizeof(names), "%s--%s%s%s%s", shrt, o[i].lng, o[i].alt ? ", --" : "",
                 o[i].alt ? o[i].alt : "", o[i].has_arg ? " <v>" : "");
        fprintf(f, "  %-46s %s\n", names, o[i].help);
    }
    fprintf(f, "  %-46s %s\n", "-h, --help", "this text");
}

/* Parses argv[first..argc) for cmd against the allowed options. Returns 0,
 * 1 after printing help (exit 0), or 2 after one line on stderr. */
static int parse_opts(const char *cmd, int argc, char **argv, int first, struct opt *o,
                      const int *allowed, const char **positional)
{
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            command_usage(stdout, cmd, o, allowed);
            return 1;
        }
        if ((a[0] != '-' || a[1] == '\0') && positional && !*positional) {
            *positional = a; /* explain's record file, or "-" */
            continue;
        }
        if (a[0] != '-' || a[1] == '\0') {
            fprintf(stderr, "impulse %s: unexpected argument '%s' (impulse %s -h)\n", cmd, a, cmd);
            return 2;
        }
        const char *inline_val = NULL;
        int k = -1;
        if (a[1] == '-') {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t n = eq ? (size_t)(eq - name) : strlen(name);
            for (int j = 0; j < O_COUNT && k < 0; j++)
                if (allowed[j] &&
                    ((strlen(o[j].lng) == n && strncmp(o[j].lng, name, n) == 0) ||
                     (o[j].alt && strlen(o[j].alt) == n && strncmp(o[j].alt, name, n) == 0)))
                    k = j;
            if (eq) inline_val = eq + 1;
        } else {
            for (int j = 0; j < O_COUNT && k < 0; j++)
                if (allowed[j] && o[j].shrt == a[1]) k = j;
            if (a[2]) inline_val = a[2] == '=' ? a + 3 : a + 2;
        }
        if (k < 0) {
            fprintf(stderr, "impulse %s: unknown option '%s' (impulse %s -h)\n", cmd, a, cmd);
            return 2;
        }
        if (!o[k].has_arg) {
            if (inline_val) {
                fprintf(stderr, "impulse %s: option '%s' takes no value\n", cmd, a);
                return 2;
            }
            o[k].val = "1";
            continue;
        }
        if (!inline_val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "impulse %s: option '%s' needs a value\n", cmd, a);
                return 2;
            }
            inline_val = argv[++i];
        }
        o[k].val = inline_val;
    }
    return 0;
}

/* -i's value: a number >= 0, as cobra's IntP reads it. */
static int index_of(const char *cmd, const char *v, int *index)
{
    char *end;
    long n = v ? strtol(v, &end, 10) : 0;
    if (v && (*end || end == v || n < 0 || n > 100000)) {
        fprintf(stderr, "impulse %s: -i '%s' is not a process index (0, 1, ...)\n", cmd, v);
        return 2;
    }
    *index = (int)n;
    return 0;
}

struct topic_check {
    const char *want[4];
    const char *keys[4];
    int found[4];
};

static void saw_topic(void *ud, const char *topic)
{
    struct topic_check *tc = ud;
    for (int i = 0; i < 4; i++)
        if (tc->want[i] && strcmp(tc->want[i], topic) == 0) tc->found[i] = 1;
}

/* The topics impulse reads and writes must exist: real clusters often
 * disable auto-create, and a missing dead-letter topic would hold a
 * partition's offsets back forever. */
static int check_topics(const struct imp_config *cfg)
{
    char err[512];
    struct topic_check tc = {
        .want = {cfg->topic_push, cfg->dlq_push, cfg->topic_offline_push, cfg->dlq_offline_push},
        .keys = {"kafka.toPushTopic", "impulse.deadLetterTopic", "kafka.toOfflinePushTopic",
                 "impulse.offlineDeadLetterTopic"},
    };
    if (imp_kafka_list_topics(cfg, 3000, saw_topic, &tc, err, sizeof(err)) != 0) {
        fprintf(stderr,
                "config: kafka.address: cannot list the cluster's topics: %s "
                "(impulse check --skip-kafka validates without Kafka)\n",
                err);
        return 2;
    }
    for (int i = 0; i < 4; i++) {
        if (!tc.found[i]) {
            fprintf(stderr,
                    "config: %s: topic '%s' does not exist on the Kafka cluster "
                    "(create it: auto-create is often disabled)\n",
                    tc.keys[i], tc.want[i]);
            return 2;
        }
    }
    return 0;
}

/* With autoSetPorts, OpenIM announces each process's metrics endpoint in
 * etcd for Prometheus' HTTP discovery (served by openim-api):
 * "openim/prometheus_discovery/<push service>" with no lease up to
 * v3.8.3-patch.10 and in v3.8.4-alpha.1 (OpenIM@v3.8.3:pkg/common/startrpc/
 * start.go:119-124), ".../<push service>/<index>" under a 300 s lease from
 * patch.11 (OpenIM@v3.8.3-patch.11:pkg/common/startrpc/start.go:161-179),
 * "<rootDirectory>/prometheus_discovery/<push service>/<index>" on main;
 * the value {"target":"<ip>:<port>","labels":{"namespace":"default"}}. */
static struct imp_announce *announce_metrics(struct ev_loop *loop, const struct imp_config *cfg,
                                             int port)
{
    char ip[64], key[512], value[256];
    if (cfg->rpc_register_ip[0])
        snprintf(ip, sizeof(ip), "%s", cfg->rpc_register_ip);
    else if (!imp_routable_ipv4(ip, sizeof(ip)))
        snprintf(ip, sizeof(ip), "127.0.0.1");
    int leased = cfg->openim_main || (!cfg->openim_v384 && cfg->openim_patch >= 11);
    size_t rl = strlen(cfg->etcd_root);
    if (rl && cfg->etcd_root[rl - 1] == '/') rl--;
    if (cfg->openim_main) /* under rootDirectory
                             (OpenIM@main:pkg/common/prommetrics/prommetrics.go:102-108) */
        snprintf(key, sizeof(key), "%.*s/prometheus_discovery/%s/%d", (int)rl, cfg->etcd_root,
                 cfg->svc_push, cfg->index);
    else if (leased)
        snprintf(key, sizeof(key), "openim/prometheus_discovery/%s/%d", cfg->svc_push, cfg->index);
    else
        snprintf(key, sizeof(key), "openim/prometheus_discovery/%s", cfg->svc_push);
    snprintf(value, sizeof(value), "{\"target\":\"%s:%d\",\"labels\":{\"namespace\":\"default\"}}",
             ip, port);
    return imp_announce_put(loop, cfg, key, value, leased ? 300 : 0);
}

struct main_ctx {
    struct ev_loop *loop;
    struct imp_engine *e;
    int sfd;
    ev_io sig_io;
    ev_timer watchdog;
    int begun;                 /* the shutdown has begun */
    struct imp_notify *notify; /* systemd's NOTIFY_SOCKET, or NULL */
    int ready_state;           /* -1 before the first check, then 0/1 */
    uint64_t last_watchdog_ms;
};

/* What SIGTERM may take beyond drainTimeoutMs: the final commits, the
 * dead letters' last acknowledgements, leaving the groups. */
#define SHUTDOWN_MARGIN_MS 4000

/* The last word on a shutdown: whatever still holds it up (a broker that
 * does not answer the final commit, a worker stuck in a C call) once
 * drainTimeoutMs + SHUTDOWN_MARGIN_MS have passed, the process exits.
 * What was not committed is consumed again by the partitions' next owner. */
static void *shutdown_guard(void *arg)
{
    struct imp_engine *e = arg;
    int ms = e->cfg->drain_timeout_ms + SHUTDOWN_MARGIN_MS;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {}
    int code = atomic_load(&e->stuck) ? 3 : 1;
    imp_error(NULL,
              "shutdown: still not done %d ms after it began (drainTimeoutMs + %d ms); "
              "exiting now (exit %d); what was not committed is consumed again",
              ms, SHUTDOWN_MARGIN_MS, code);
    _exit(code);
    return NULL;
}

/* Second half of a shutdown, once OpenIM no longer finds impulse in etcd:
 * refuse new calls, drain the workers. */
static void after_revoke(void *arg)
{
    struct main_ctx *m = arg;
    imp_pushsvc_shutdown(m->e->pushsvc);
    for (int i = 0; i < m->e->nworkers; i++) imp_worker_stop(m->e->workers[i]);
    ev_break(m->loop, EVBREAK_ALL);
}

static void begin_shutdown(struct main_ctx *m, const char *why)
{
    int was = 0;
    if (atomic_compare_exchange_strong(&m->e->stopping, &was, 1))
        imp_info(NULL, "%s: stopping (drain up to %d ms)", why, m->e->cfg->drain_timeout_ms);
    if (m->begun) return; /* a second signal: the first one's shutdown goes on */
    m->begun = 1;
    {
        char msg[200];
        snprintf(msg, sizeof(msg), "STOPPING=1\nSTATUS=draining (%s), up to %d ms", why,
                 m->e->cfg->drain_timeout_ms);
        imp_notify_send(m->notify, msg);
    }
    pthread_t guard;
    if (pthread_create(&guard, NULL, shutdown_guard, m->e) == 0) pthread_detach(guard);
    /* the etcd registration goes first, so callers stop choosing impulse */
    if (m->e->announce)
        imp_announce_revoke(m->e->announce, after_revoke, m);
    else
        after_revoke(m);
}

/* systemd (Type=notify): READY=1 the first time impulse would answer
 * /readyz 200, STATUS= whenever readiness changes, WATCHDOG=1 every half
 * WatchdogSec while this loop turns and no worker is stuck (a stuck one
 * that stays, workerStuckExit false, lets systemd's watchdog restart it). */
static void notify_tick(struct main_ctx *m)
{
    struct imp_buf why;
    imp_buf_init(&why);
    int ready = imp_engine_ready(m->e, &why);
    /* nothing before the first ready (systemd shows "activating"); READY=1
     * once; then STATUS= follows each change */
    if (ready != m->ready_state && (ready || m->ready_state != -1)) {
        struct imp_buf msg;
        imp_buf_init(&msg);
        if (m->ready_state == -1) imp_buf_puts(&msg, "READY=1\n");
        if (ready)
            imp_buf_printf(&msg, "STATUS=ready: %d workers", m->e->nworkers);
        else
            imp_buf_printf(&msg, "STATUS=not ready: %.*s", (int)(why.len > 2 ? why.len - 2 : 0),
                           why.len ? why.data : "");
        imp_notify_send(m->notify, msg.data);
        imp_buf_dispose(&msg);
        m->ready_state = ready;
    }
    imp_buf_dispose(&why);
    uint64_t usec = imp_notify_watchdog_usec(m->notify), now = imp_now_ms();
    if (usec && !atomic_load(&m->e->stuck) && now - m->last_watchdog_ms >= usec / 2000) {
        imp_notify_send(m->notify, "WATCHDOG=1");
        m->last_watchdog_ms = now;
    }
}

static void on_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct main_ctx *m = w->data;
    int id = imp_engine_watchdog(m->e);
    if (id >= 0 && m->e->cfg->worker_stuck_exit) {
        char why[64];
        snprintf(why, sizeof(why), "worker %d stuck", id);
        begin_shutdown(m, why);
    }
    if (m->notify && !m->begun) notify_tick(m);
}

static void on_signal(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct main_ctx *m = w->data;
    struct signalfd_siginfo si;
    while (read(m->sfd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            begin_shutdown(m, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
        } else if (si.ssi_signo == SIGHUP) {
            imp_info(NULL, "SIGHUP: reloading the scripts");
            imp_watcher_reload(m->e->watcher, "SIGHUP");
        }
    }
}

/* A provider check failure. impulse's own settings (impulse.providers, a
 * policy's providers list) stop the start and check with one line (returns
 * 1). The provider openim-push.enable names does not: openim-push starts
 * with empty keys (openim-docker ships geTui so) and fails at each push, so
 * impulse starts too, says so loudly (here, in /healthz) and counts and
 * dead-letters each push it cannot make (returns 0, *why set). */
static int provider_error(const struct imp_config *cfg, const char *err, char *why, size_t whylen)
{
    if (strncmp(err, "impulse.providers", 17) == 0 || strncmp(err, "impulse.apps", 12) == 0) {
        fprintf(stderr, "config: %s\n", err);
        return 1;
    }
    if (strncmp(err, "push.lua", 8) == 0) {
        fprintf(stderr, "script: %s\n", err);
        return 1;
    }
    snprintf(why, whylen, "openim-push.enable: %s: %s", cfg->offline_provider, err);
    return 0;
}

#define PROVIDER_WARNING                                                                           \
    "; impulse runs as openim-push does, and every offline push through it fails, is counted "     \
    "(impulse_offline_push_total{result=\"failed\"}, msg_offline_push_failed_total) and "          \
    "dead-lettered to the offline dead-letter topic: set the keys, or openim-push.enable: none"

/* The line that says where the log lines go and at which level (the
 * start logs it, `impulse check` prints it). */
static void log_destination(const struct imp_config *cfg, char *out, size_t outlen)
{
    char where[2 * PATH_MAX + 256] = "";
    if (!cfg->log_openim) {
        snprintf(out, outlen, "log: impulse's JSON lines on stderr, level %s (%s)", cfg->log_level,
                 cfg->log_level_origin);
        return;
    }
    if (cfg->log_dir[0]) {
        char name[PATH_MAX + 64], cwd[PATH_MAX];
        imp_log_file_name(name, sizeof(name), cfg->log_dir, cfg->log_rotation_hours, time(NULL));
        snprintf(where, sizeof(where), "%s%s%s (keeping %d)",
                 cfg->log_dir[0] != '/' && getcwd(cwd, sizeof(cwd)) ? cwd : "",
                 cfg->log_dir[0] != '/' ? "/" : "", name, cfg->log_remain_count);
    }
    snprintf(out, outlen, "log: OpenIM's %s lines (log.yml) to %s%s%s, level %s (%s)",
             cfg->log_json ? "JSON" : "console", where[0] ? where : "",
             where[0] && cfg->log_stdout ? " and " : "",
             cfg->log_stdout ? "stdout" : (where[0] ? "" : "nowhere"), cfg->log_level,
             cfg->log_level_origin);
}

static int cmd_check(const char *path, int index, int skip_kafka)
{
    char err[1024];
    struct imp_config *cfg = imp_config_load_index(path, index, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    /* the scripts load exactly as a worker loads them (same engine module) */
    struct imp_engine e = {0};
    struct imp_worker_env env;
    imp_engine_init(&e, cfg, 1);
    imp_engine_worker_env(&e, &env);
    struct imp_scripts *scripts = imp_scripts_read(cfg->scripts_dir);
    struct imp_worker *w = imp_worker_create(&env, 0, scripts, err, sizeof(err));
    imp_scripts_free(scripts);
    char apps[1024] = "";
    int bad_provider = w && imp_worker_check_provider(w, err, sizeof(err)) != 0;
    if (w && !bad_provider) snprintf(apps, sizeof(apps), "%s", err);
    if (w) imp_worker_destroy(w);
    imp_engine_dispose(&e);
    if (!w) {
        fprintf(stderr, "script: %s\n", err);
        imp_config_destroy(cfg);
        return 2;
    }
    char why[1200];
    if (bad_provider && provider_error(cfg, err, why, sizeof(why))) {
        imp_config_destroy(cfg);
        return 2;
    }
    if (bad_provider) printf("warning: %s%s\n", why, PROVIDER_WARNING);
    if (!skip_kafka) {
        int rc = check_topics(cfg);
        if (rc) {
            imp_config_destroy(cfg);
            return rc;
        }
    }
    char line[512];
    imp_config_openim_line(cfg, line, sizeof(line));
    printf("ok: %s (workers %d, scripts %s, Lua library %s%s)\n", path, cfg->workers,
           cfg->scripts_dir, cfg->lua_dir, skip_kafka ? ", Kafka not checked" : ", topics present");
    printf("%s\n", line);
    if (apps[0]) printf("%s\n", apps);
    {
        char where[3 * PATH_MAX];
        log_destination(cfg, where, sizeof(where));
        printf("%s\n", where);
    }
    if (cfg->env_overrides) printf("config: IMENV_ variables override %s\n", cfg->env_overrides);
    imp_config_discovery_line(cfg, line, sizeof(line));
    printf("%s\n", line);
    if (cfg->warnings) printf("%s\n", cfg->warnings);
    imp_config_destroy(cfg);
    return 0;
}

/* log.yml: lines in OpenIM's format to its file and/or stdout from here
 * on. A folder that cannot be opened stops the start with one line on
 * stderr, as OpenIM's logger init does. */
static int start_openim_log(const struct imp_config *cfg)
{
    char err[PATH_MAX + 256];
    if (!cfg->log_openim) return 0;
    struct imp_log_openim lo = {cfg->log_dir,       cfg->log_rotation_hours, cfg->log_remain_count,
                                cfg->log_stdout,    cfg->log_json,           "openim-push",
                                cfg->openim_version};
    if (imp_log_openim_start(&lo, err, sizeof(err)) != 0) {
        fprintf(stderr, "config: %s\n", err);
        return -1;
    }
    if (!cfg->log_dir[0] && !cfg->log_stdout)
        fprintf(stderr, "log: log.storageLocation is empty and log.isStdout false: impulse "
                        "writes no log lines (as OpenIM)\n");
    return 0;
}

static int cmd_run(const char *path, int index, int shadow)
{
    char err[1024];
    int rc = 0;
    struct imp_config *cfg = imp_config_load_index(path, index, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    if (shadow) {
        /* every series says it: a shadow's figures never add to the live ones */
        imp_config_shadow(cfg);
        imp_metrics_const_label("mode=\"shadow\"");
    }
    imp_log_set_level(imp_log_level_parse(cfg->log_level));
    if (start_openim_log(cfg) != 0) {
        imp_config_destroy(cfg);
        return 2;
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (imp_grpc_start() != 0) {
        fprintf(stderr, "cannot start gRPC\n");
        return 1;
    }

    struct imp_engine e = {0};
    struct imp_worker_env env;
    struct imp_watcher_hooks hooks;
    imp_engine_init(&e, cfg, 256);
    if (cfg->crash_journal && cfg->crash_journal[0]) {
        e.journal = imp_journal_open(cfg->crash_journal, cfg->workers, cfg->poison_deaths, err,
                                     sizeof(err));
        if (!e.journal && strcmp(cfg->crash_journal, IMP_DEFAULT_CRASH_JOURNAL) != 0 &&
            strcmp(cfg->crash_journal, IMP_DEFAULT_CRASH_JOURNAL "-shadow") != 0) {
            fprintf(stderr, "config: impulse.crashJournal: %s\n", err);
            imp_engine_dispose(&e);
            imp_config_destroy(cfg);
            return 2;
        }
        if (!e.journal)
            imp_warn(NULL, "impulse.crashJournal: %s; running without poison-pill memory", err);
    }
    imp_metric_set(imp_metrics_gauge("impulse_shadow", NULL,
                                     "1 when this process runs in shadow mode (impulse run "
                                     "--shadow): it consumes in its own group and sends nothing"),
                   cfg->shadow);
    imp_metric_set(imp_metrics_gauge("impulse_crash_journal_deaths", NULL,
                                     "Records the previous process died handling (crash "
                                     "journal, read at start)"),
                   imp_journal_found(e.journal));
    imp_engine_worker_env(&e, &env);
    imp_engine_watcher_hooks(&e, &hooks);
    /* every worker starts from one snapshot of the scripts */
    struct imp_scripts *scripts = imp_scripts_read(cfg->scripts_dir);
    char scripts_hash[17];
    memcpy(scripts_hash, scripts->hash, sizeof(scripts_hash));
    e.nworkers = cfg->workers;
    e.workers = imp_xcalloc((size_t)e.nworkers, sizeof(*e.workers));
    imp_barrier_init(&e.drain_barrier, (unsigned)e.nworkers);
    for (int i = 0; i < e.nworkers; i++) {
        e.workers[i] = imp_worker_create(&env, i, scripts, err, sizeof(err));
        if (!e.workers[i]) {
            fprintf(stderr, "script: %s\n", err);
            rc = 2;
            goto out;
        }
    }
    if (imp_worker_check_provider(e.workers[0], err, sizeof(err)) != 0) {
        char why[1200];
        if (provider_error(cfg, err, why, sizeof(why))) {
            rc = 2;
            goto out;
        }
        imp_error(NULL, "%s%s", why, PROVIDER_WARNING);
        e.provider_problem = imp_xstrdup(why);
    } else if (err[0]) {
        imp_info(NULL, "%s", err);
    }

    struct main_ctx m = {0};
    m.loop = ev_default_loop(0);
    m.e = &e;
    struct imp_admin *admin = imp_admin_create(m.loop, &e, cfg->admin_listen, IMP_ADMIN_FULL,
                                               cfg->admin_token, err, sizeof(err));
    if (!admin) {
        fprintf(stderr, "config: impulse.admin: %s\n", err);
        rc = 2;
        goto out;
    }
    struct imp_admin *prom = NULL;
    struct imp_announce *prom_announce = NULL;
    if (cfg->prometheus_enable) {
        /* a fixed port on every interface, or with autoSetPorts a free one
         * on rpc.listenIP, as OpenIM */
        char listen_at[96];
        if (cfg->prometheus_auto)
            snprintf(listen_at, sizeof(listen_at),
                     strchr(cfg->rpc_listen_ip, ':') ? "[%s]:0" : "%s:0", cfg->rpc_listen_ip);
        else if (cfg->openim_main) /* main binds listenIP
                                      (OpenIM@main:pkg/common/startrpc/start.go:126-139) */
            snprintf(listen_at, sizeof(listen_at),
                     strchr(cfg->rpc_listen_ip, ':') ? "[%s]:%d" : "%s:%d", cfg->rpc_listen_ip,
                     cfg->prometheus_port);
        else
            snprintf(listen_at, sizeof(listen_at), "0.0.0.0:%d", cfg->prometheus_port);
        prom =
            imp_admin_create(m.loop, &e, listen_at, IMP_ADMIN_METRICS_ONLY, "", err, sizeof(err));
        if (!prom) {
            fprintf(stderr, "config: openim-push.%s: %s\n",
                    cfg->prometheus_auto ? "rpc.listenIP" : "prometheus.ports", err);
            imp_admin_destroy(admin);
            rc = 2;
            goto out;
        }
        if (cfg->prometheus_auto && !cfg->shadow) /* a shadow is not openim-push's target */
            prom_announce = announce_metrics(m.loop, cfg, imp_admin_port(prom));
    }
    m.notify = imp_notify_open();
    m.ready_state = -1;
    m.sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    ev_io_init(&m.sig_io, on_signal, m.sfd, EV_READ);
    m.sig_io.data = &m;
    ev_io_start(m.loop, &m.sig_io);
    ev_timer_init(&m.watchdog, on_watchdog, 0.25, 0.25);
    m.watchdog.data = &m;
    ev_timer_start(m.loop, &m.watchdog);

    {
        /* past every check that stops the start (a bad config is one line) */
        char line[512];
        imp_config_openim_line(cfg, line, sizeof(line));
        imp_info(NULL, "%s", line);
        char where[3 * PATH_MAX];
        log_destination(cfg, where, sizeof(where));
        imp_info(NULL, "%s", where);
        if (cfg->env_overrides)
            imp_info(NULL, "config: IMENV_ variables override %s", cfg->env_overrides);
        imp_config_discovery_line(cfg, line, sizeof(line));
        imp_info(NULL, "%s", line);
        for (const char *w = cfg->warnings; w && *w;) {
            size_t n = strcspn(w, "\n");
            imp_warn(NULL, "%.*s", (int)n, w);
            w += n + (w[n] == '\n');
        }
    }
    imp_info(NULL, "impulse %s starting: %d workers, admin on port %d, scripts in %s",
             IMPULSE_VERSION, e.nworkers, imp_admin_port(admin), cfg->scripts_dir);
    if (cfg->shadow)
        imp_info(NULL,
                 "shadow mode: consuming %s in group %s; nothing is sent (gateways, "
                 "toOfflinePush, providers, webhooks, dead letters, writing RPCs and Redis "
                 "writes); metrics carry mode=\"shadow\"",
                 cfg->topic_push, cfg->group_push);
    else if (!cfg->consume_offline)
        imp_info(NULL, "toOfflinePush is not consumed (impulse.consumeOffline is false)");
    else if (!cfg->offline_provider || !cfg->offline_provider[0])
        imp_info(NULL, "no offline provider (openim-push.enable): offline pushes are counted, "
                       "not sent, unless the policy's provider() names one");
    e.watcher = imp_watcher_create(cfg, &e.shared, &hooks);
    imp_watcher_set_active_scripts(e.watcher, scripts_hash);
    imp_watcher_start(e.watcher);
    for (int i = 0; i < e.nworkers; i++) imp_worker_start(e.workers[i]);
    if (cfg->serve_rpc) {
        e.pushsvc = imp_pushsvc_start(cfg, e.workers, e.nworkers, err, sizeof(err));
        if (!e.pushsvc) {
            fprintf(stderr, "%s\n", err);
            imp_error(NULL, "%s", err);
            rc = 2;
            begin_shutdown(&m, "push service");
        } else if (!cfg->k8s && cfg->etcd_addrs.n) {
            /* in Kubernetes OpenIM registers nothing: callers find the
             * push Service by its name */
            e.announce = imp_announce_start(m.loop, cfg, imp_pushsvc_addr(e.pushsvc));
        }
    }

    if (!rc) ev_run(m.loop, 0);

    for (int i = 0; i < e.nworkers; i++)
        if (!imp_engine_worker_stuck(&e, i)) imp_worker_join(e.workers[i]);
    if (atomic_load(&e.stuck)) {
        /* a stuck thread never comes back: nothing it may touch is freed */
        imp_info(NULL, "impulse stopped (exit 3: %d worker%s stuck)", atomic_load(&e.stuck),
                 atomic_load(&e.stuck) == 1 ? "" : "s");
        _exit(3);
    }
    imp_pushsvc_destroy(e.pushsvc);
    e.pushsvc = NULL;
    imp_announce_destroy(e.announce);
    imp_announce_destroy(prom_announce);
    e.announce = NULL;
    imp_watcher_stop(e.watcher);
    ev_io_stop(m.loop, &m.sig_io);
    close(m.sfd);
    imp_notify_close(m.notify);
    imp_admin_destroy(prom);
    imp_admin_destroy(admin);
    if (atomic_load(&e.stopping) == 2 && !rc) rc = 1;
out:
    imp_scripts_free(scripts);
    for (int i = 0; i < e.nworkers; i++)
        if (e.workers[i]) imp_worker_join(e.workers[i]);
    imp_grpc_stop();
    if (e.watcher) imp_watcher_destroy(e.watcher);
    for (int i = 0; i < e.nworkers; i++) imp_worker_destroy(e.workers[i]);
    free(e.workers);
    imp_barrier_destroy(&e.drain_barrier);
    imp_journal_close(e.journal);
    imp_engine_dispose(&e);
    curl_global_cleanup();
    if (rc != 2) imp_info(NULL, "impulse stopped (exit %d)", rc); /* 2: the one line said why */
    imp_config_destroy(cfg);
    imp_ratelimit_shutdown();
    imp_metrics_shutdown();
    return rc;
}

/* LeakSanitizer's switch, present only in sanitizer builds. */
extern void __lsan_disable(void) __attribute__((weak));

/* impulse test: busted inside the engine. With -c, the servers of that
 * config (etcd discovery, Redis) are used by engine calls in specs. */
static int cmd_test(int argc, char **argv)
{
    char err[1024];
    /* busted ends the process with os.exit(), past every teardown: what
     * this command allocates is not a leak (`impulse run` is checked) */
    if (__lsan_disable) __lsan_disable();
    const char *path = NULL;
    int first = 2;
    if (argc > 3 && strcmp(argv[2], "-c") == 0) {
        path = argv[3];
        first = 4;
    }
    static const char defaults[] = "kafka: {address: [127.0.0.1:9092]}\n"
                                   "redis: {address: [127.0.0.1:6379]}\n"
                                   "discovery: {etcd: {address: [127.0.0.1:2379]}}\n";
    struct imp_config *cfg = path ? imp_config_load(path, err, sizeof(err))
                                  : imp_config_load_text(defaults, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    imp_log_set_level(imp_log_level_parse(cfg->log_level));
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    imp_grpc_start();
    struct imp_engine e = {0};
    struct imp_worker_env env;
    struct imp_watcher_hooks hooks;
    imp_engine_init(&e, cfg, 16);
    imp_engine_worker_env(&e, &env);
    imp_engine_watcher_hooks(&e, &hooks);
    imp_barrier_init(&e.drain_barrier, 1);
    if (path) {
        e.watcher = imp_watcher_create(cfg, &e.shared, &hooks);
        imp_watcher_start(e.watcher);
    }
    /* busted's `impulse` task in .busted: the default one re-runs busted
     * under another interpreter */
    int n = argc - first, has_run = 0;
    for (int i = first; i < argc; i++)
        if (strncmp(argv[i], "-r", 2) == 0 || strncmp(argv[i], "--run", 5) == 0) has_run = 1;
    char **args = imp_xcalloc((size_t)n + 2, sizeof(char *));
    int k = 0;
    if (!has_run) args[k++] = "--run=impulse";
    for (int i = first; i < argc; i++) args[k++] = argv[i];
    return imp_worker_run_tests(&env, k, args);
}

int main(int argc, char **argv)
{
    /* linked or renamed as openim-push, or started with options only
     * (openim-push -c <folder> -i <index>): run */
    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    int implicit = strcmp(base, "openim-push") == 0 ||
                   (argc >= 2 && argv[1][0] == '-' && strcmp(argv[1], "--version") != 0 &&
                    strcmp(argv[1], "--help") != 0 && strcmp(argv[1], "-h") != 0);
    if (argc < 2 && !implicit) {
        usage(stderr);
        return 2;
    }
    const char *cmd = implicit ? "run" : argv[1];
    int first = implicit ? 1 : 2;
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0 ||
        (implicit && argc == 2 && strcmp(argv[1], "--version") == 0)) {
        printf("impulse %s\n", IMPULSE_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "test") == 0) {
        if (argc > 2 && (strcmp(argv[2], "-h") == 0 || strcmp(argv[2], "--help") == 0)) {
            printf("usage: impulse test [-c <config>] [busted arguments]\n"
                   "runs busted (default: the specs .busted names for its impulse task) inside\n"
                   "the engine's VM; with -c, engine calls reach that config's servers\n");
            return 0;
        }
        return cmd_test(argc, argv);
    }
    struct opt o[O_COUNT] = {
        [O_CONF] = {'c', "config_folder_path", "config", 1,
                    "OpenIM's config folder, or one YAML file of every section", NULL},
        [O_INDEX] = {'i', "index", NULL, 1,
                     "process index: which of rpc.ports and prometheus.ports (0)", NULL},
        [O_SKIP_KAFKA] = {0, "skip-kafka", NULL, 0, "do not ask Kafka for the topics", NULL},
        [O_FROM] = {0, "from", NULL, 1, "the dead-letter topic (impulse.deadLetterTopic)", NULL},
        [O_TO] = {0, "to", NULL, 1, "the topic to move to (each record's origin)", NULL},
        [O_MAX] = {0, "max", NULL, 1, "at most this many records", NULL},
        [O_JSON] = {0, "json", NULL, 0, "one JSON object per record", NULL},
        [O_SHADOW] = {0, "shadow", NULL, 0,
                      "consume in the group <toPushGroupID>-shadow, run everything, send nothing",
                      NULL},
        [O_RECORD_FROM] = {0, "from", NULL, 1,
                           "topic:partition:offset: the record read from Kafka (no commit)", NULL},
        [O_OFFLINE_DATA] = {0, "offline-data", NULL, 1,
                            "answer reads from this JSON file instead of live services", NULL},
        [O_POLICY] = {0, "policy", NULL, 1,
                      "this policy file instead of the scripts folder's push.lua", NULL},
    };
    int run_opts[O_COUNT] = {[O_CONF] = 1, [O_INDEX] = 1, [O_SHADOW] = 1};
    int check_opts[O_COUNT] = {[O_CONF] = 1, [O_INDEX] = 1, [O_SKIP_KAFKA] = 1};
    int replay_opts[O_COUNT] = {[O_CONF] = 1, [O_FROM] = 1, [O_TO] = 1, [O_MAX] = 1};
    int dlq_opts[O_COUNT] = {[O_CONF] = 1, [O_FROM] = 1, [O_MAX] = 1, [O_JSON] = 1};
    int explain_opts[O_COUNT] = {
        [O_CONF] = 1, [O_RECORD_FROM] = 1, [O_OFFLINE_DATA] = 1, [O_POLICY] = 1, [O_JSON] = 1};
    if (strcmp(cmd, "dlq") == 0) { /* one subcommand: dlq ls */
        if (argc > 2 && (strcmp(argv[2], "-h") == 0 || strcmp(argv[2], "--help") == 0)) {
            printf("usage: impulse dlq ls -c <config> [--from <dlq topic>] [--max N] [--json]\n"
                   "lists the records of a dead-letter topic (reading only; nothing moves)\n");
            return 0;
        }
        if (argc < 3 || strcmp(argv[2], "ls") != 0) {
            fprintf(stderr, "impulse dlq: expected 'ls' (impulse dlq -h)\n");
            return 2;
        }
        cmd = "dlq ls";
        first = 3;
    }
    const int *allowed = strcmp(cmd, "run") == 0       ? run_opts
                         : strcmp(cmd, "check") == 0   ? check_opts
                         : strcmp(cmd, "replay") == 0  ? replay_opts
                         : strcmp(cmd, "dlq ls") == 0  ? dlq_opts
                         : strcmp(cmd, "explain") == 0 ? explain_opts
                                                       : NULL;
    if (!allowed) {
        fprintf(stderr, "impulse: unknown command '%s'\n", cmd);
        usage(stderr);
        return 2;
    }
    const char *record = NULL;
    int is_explain = strcmp(cmd, "explain") == 0;
    int rc = parse_opts(cmd, argc, argv, first, o, allowed, is_explain ? &record : NULL);
    if (rc) return rc == 1 ? 0 : 2;
    int index = 0;
    if (index_of(cmd, o[O_INDEX].val, &index)) return 2;
    /* openim-push's -c defaults to the working directory */
    const char *path = o[O_CONF].val ? o[O_CONF].val : implicit ? "." : NULL;
    if (!path) {
        fprintf(stderr, "impulse %s: -c <config> is required\n", cmd);
        return 2;
    }
    if (strcmp(cmd, "run") == 0) return cmd_run(path, index, o[O_SHADOW].val != NULL);
    if (strcmp(cmd, "check") == 0) return cmd_check(path, index, o[O_SKIP_KAFKA].val != NULL);
    char err[1024];
    struct imp_config *cfg = imp_config_load(path, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    if (is_explain) {
        struct imp_explain_opts eo = {.input = record,
                                      .from = o[O_RECORD_FROM].val,
                                      .offline_data = o[O_OFFLINE_DATA].val,
                                      .policy = o[O_POLICY].val,
                                      .json = o[O_JSON].val != NULL};
        /* explain ends the process with os.exit() from its Lua, past
         * every teardown, as busted does: what it allocates is no leak */
        if (__lsan_disable) __lsan_disable();
        imp_log_set_level(imp_log_level_parse(cfg->log_level));
        rc = imp_explain_run(cfg, &eo);
        if (rc == 2) imp_config_destroy(cfg); /* refused before the engine took cfg */
        return rc;
    }
    const char *max = o[O_MAX].val;
    char *end = NULL;
    long nmax = max ? strtol(max, &end, 10) : -1;
    if (max && (*end || end == max || nmax < 0)) {
        fprintf(stderr, "impulse %s: --max '%s' is not a count\n", cmd, max);
        imp_config_destroy(cfg);
        return 2;
    }
    if (strcmp(cmd, "dlq ls") == 0)
        rc = imp_dlq_list(cfg, o[O_FROM].val, nmax, o[O_JSON].val != NULL);
    else
        rc = imp_replay_run(cfg, o[O_FROM].val, o[O_TO].val, nmax);
    imp_config_destroy(cfg);
    return rc;
}

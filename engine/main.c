/*
 * impulse: command line and process plumbing. Parses arguments, blocks
 * signals before any thread starts, starts the subsystems in order, and
 * on SIGTERM/SIGINT stops them in reverse order. Decides nothing else.
 */
#include <curl/curl.h>
#include <errno.h>
#include <ev.h>
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
#include "daemon/admin.h"
#include "daemon/announce.h"
#include "daemon/engine.h"
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
    fprintf(f, "usage: impulse run -c <config>       run the push engine\n"
               "       impulse check -c <config> [--skip-kafka]\n"
               "                                     validate config, scripts and Kafka topics\n"
               "       impulse replay -c <config> [--from <dlq topic>] [--to <topic>] [--max N]\n"
               "                                     move dead letters back to their topic\n"
               "       impulse test [-c <config>] [busted arguments]\n"
               "                                     run busted specs inside the engine's VM\n"
               "       impulse version\n"
               "<config> is one YAML file or OpenIM's config folder.\n");
}

static const char *opt_arg(int argc, char **argv, const char *name)
{
    for (int i = 2; i < argc - 1; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return NULL;
}

static int has_flag(int argc, char **argv, const char *name)
{
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], name) == 0) return 1;
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
    if (imp_kafka_list_topics(cfg, 10000, saw_topic, &tc, err, sizeof(err)) != 0) {
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

static const char *config_arg(int argc, char **argv)
{
    for (int i = 2; i < argc - 1; i++)
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) return argv[i + 1];
    return NULL;
}

struct main_ctx {
    struct ev_loop *loop;
    struct imp_engine *e;
    int sfd;
    ev_io sig_io;
    ev_timer watchdog;
    int begun; /* the shutdown has begun */
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
    pthread_t guard;
    if (pthread_create(&guard, NULL, shutdown_guard, m->e) == 0) pthread_detach(guard);
    /* the etcd registration goes first, so callers stop choosing impulse */
    if (m->e->announce)
        imp_announce_revoke(m->e->announce, after_revoke, m);
    else
        after_revoke(m);
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

/* The one line of a provider check failure: the settings' own key when
 * impulse.providers is wrong, else the provider openim-push.enable names. */
static void provider_error(const struct imp_config *cfg, const char *err)
{
    if (strncmp(err, "impulse.providers", 17) == 0)
        fprintf(stderr, "config: %s\n", err);
    else if (strncmp(err, "push.lua", 8) == 0)
        fprintf(stderr, "script: %s\n", err);
    else
        fprintf(stderr, "openim-push.enable: %s: %s\n", cfg->offline_provider, err);
}

static int cmd_check(const char *path, int skip_kafka)
{
    char err[1024];
    struct imp_config *cfg = imp_config_load(path, err, sizeof(err));
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
    int bad_provider = w && imp_worker_check_provider(w, err, sizeof(err)) != 0;
    if (w) imp_worker_destroy(w);
    imp_engine_dispose(&e);
    if (!w) {
        fprintf(stderr, "script: %s\n", err);
        imp_config_destroy(cfg);
        return 2;
    }
    if (bad_provider) {
        provider_error(cfg, err);
        imp_config_destroy(cfg);
        return 2;
    }
    if (!skip_kafka) {
        int rc = check_topics(cfg);
        if (rc) {
            imp_config_destroy(cfg);
            return rc;
        }
    }
    char line[512];
    imp_config_openim_line(cfg, line, sizeof(line));
    printf("%s\n", line);
    printf("ok: %s (workers %d, scripts %s%s)\n", path, cfg->workers, cfg->scripts_dir,
           skip_kafka ? ", Kafka not checked" : ", topics present");
    imp_config_destroy(cfg);
    return 0;
}

static int cmd_run(const char *path)
{
    char err[1024];
    int rc = 0;
    struct imp_config *cfg = imp_config_load(path, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    imp_log_set_level(imp_log_level_parse(cfg->log_level));
    {
        char line[512];
        imp_config_openim_line(cfg, line, sizeof(line));
        imp_info(NULL, "%s", line);
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
        if (!e.journal && strcmp(cfg->crash_journal, IMP_DEFAULT_CRASH_JOURNAL) != 0) {
            fprintf(stderr, "config: impulse.crashJournal: %s\n", err);
            imp_engine_dispose(&e);
            imp_config_destroy(cfg);
            return 2;
        }
        if (!e.journal)
            imp_warn(NULL, "impulse.crashJournal: %s; running without poison-pill memory", err);
    }
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
        provider_error(cfg, err);
        rc = 2;
        goto out;
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
    if (cfg->prometheus_enable) {
        char listen_at[32];
        snprintf(listen_at, sizeof(listen_at), "0.0.0.0:%d", cfg->prometheus_port);
        prom =
            imp_admin_create(m.loop, &e, listen_at, IMP_ADMIN_METRICS_ONLY, "", err, sizeof(err));
        if (!prom) {
            fprintf(stderr, "config: openim-push.prometheus.ports: %s\n", err);
            imp_admin_destroy(admin);
            rc = 2;
            goto out;
        }
    }
    m.sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    ev_io_init(&m.sig_io, on_signal, m.sfd, EV_READ);
    m.sig_io.data = &m;
    ev_io_start(m.loop, &m.sig_io);
    ev_timer_init(&m.watchdog, on_watchdog, 0.25, 0.25);
    m.watchdog.data = &m;
    ev_timer_start(m.loop, &m.watchdog);

    imp_info(NULL, "impulse %s starting: %d workers, admin on port %d, scripts in %s",
             IMPULSE_VERSION, e.nworkers, imp_admin_port(admin), cfg->scripts_dir);
    if (!cfg->consume_offline)
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
        } else if (cfg->etcd_addrs.n) {
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
    e.announce = NULL;
    imp_watcher_stop(e.watcher);
    ev_io_stop(m.loop, &m.sig_io);
    close(m.sfd);
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
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("impulse %s\n", IMPULSE_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "test") == 0) return cmd_test(argc, argv);
    if (strcmp(argv[1], "run") == 0 || strcmp(argv[1], "check") == 0 ||
        strcmp(argv[1], "replay") == 0) {
        const char *path = config_arg(argc, argv);
        if (!path) {
            fprintf(stderr, "impulse %s: -c <config> is required\n", argv[1]);
            return 2;
        }
        if (strcmp(argv[1], "run") == 0) return cmd_run(path);
        if (strcmp(argv[1], "check") == 0)
            return cmd_check(path, has_flag(argc, argv, "--skip-kafka"));
        char err[1024];
        struct imp_config *cfg = imp_config_load(path, err, sizeof(err));
        if (!cfg) {
            fprintf(stderr, "%s\n", err);
            return 2;
        }
        const char *max = opt_arg(argc, argv, "--max");
        int rc = imp_replay_run(cfg, opt_arg(argc, argv, "--from"), opt_arg(argc, argv, "--to"),
                                max ? atol(max) : -1);
        imp_config_destroy(cfg);
        return rc;
    }
    fprintf(stderr, "impulse: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}

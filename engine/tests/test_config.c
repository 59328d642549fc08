/* Config: defaults, OpenIM key names, and one clear line per error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/common.h"
#include "base/config.h"
#include "t.h"

static const char *base = "kafka:\n  address: [127.0.0.1:9092]\n"
                          "redis:\n  address: [127.0.0.1:6379]\n  password: secret\n"
                          "discovery:\n  enable: etcd\n  etcd:\n    rootDirectory: openim\n    "
                          "address: [127.0.0.1:2379]\n";

static char path[64];

static struct imp_config *load(const char *extra, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    fputs(base, f);
    fputs(extra, f);
    fclose(f);
    return imp_config_load(path, err, errlen);
}

static void expect_error(const char *extra, const char *needle)
{
    char err[512] = "";
    struct imp_config *c = load(extra, err, sizeof(err));
    CHECK(c == NULL);
    if (!strstr(err, needle)) {
        t_fail++;
        fprintf(stderr, "error '%s' does not mention '%s'\n", err, needle);
    } else {
        t_pass++;
    }
    CHECK(strchr(err, '\n') == NULL);
    imp_config_destroy(c);
}

/* Loads text as the whole config file. */
static struct imp_config *load_text(const char *text, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return imp_config_load(path, err, errlen);
}

/* impulse.openim and its detection from the config layout
 * (docs/openim-versions.md). */
static void test_openim_profiles(void)
{
    char err[512] = "", line[512];
    struct imp_config *c = load("", err, sizeof(err));
    CHECK(c != NULL);
    if (c) { /* no mark of a later release: stock v3.8.3 */
        CHECK_STR(c->openim_version, "v3.8.3");
        CHECK_STR(c->openim_profile, "v3.8.3");
        CHECK(!c->op_user_admin);
        imp_config_openim_line(c, line, sizeof(line));
        CHECK(strstr(line, "v3.8.3") && strstr(line, "detected"));
        imp_config_destroy(c);
    }
    /* v3.8.4-alpha.1: discovery.yml rpcService names */
    c = load("  rpcService:\n    messageGateway: messagegateway-rpc-service\n", err, sizeof(err));
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->openim_version, "v3.8.4-alpha.1");
        CHECK_STR(c->svc_gateway, "messagegateway-rpc-service");
        CHECK_STR(c->svc_group, "group-rpc-service");
        CHECK_STR(c->svc_conversation, "conversation-rpc-service");
        CHECK(strstr(c->openim_origin, "discovery.rpcService"));
        imp_config_destroy(c);
    }
    /* main after v3.8.4-alpha.1: share.imAdminUser; `db` and redisMode read;
     * metrics always on (prometheus.enable is not read) */
    c = load_text("kafka:\n  address: [127.0.0.1:9092]\nredis:\n  address: [127.0.0.1:6379]\n"
                  "  redisMode: standalone\n  db: 2\n"
                  "discovery:\n  etcd:\n    address: [h:1]\n"
                  "  rpcService:\n    push: push-rpc-service\n"
                  "share:\n  imAdminUser:\n    userIDs: [root]\n"
                  "openim-push:\n  prometheus:\n    enable: false\n",
                  err, sizeof(err));
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->openim_version, "main");
        CHECK(c->openim_main && c->openim_v384 && c->prometheus_enable && c->redis_db == 2);
        CHECK_STR(c->im_admin_user, "root");
        CHECK_STR(c->svc_push, "push-rpc-service");
        CHECK(c->warnings == NULL);
        imp_config_destroy(c);
    }
    /* patch.5 to patch.11: share.yml rpcMaxBodySize; every push as the admin */
    c = load(
        "share:\n  imAdminUserID: [root]\n  rpcMaxBodySize:\n    requestMaxBodySize: 8388608\n",
        err, sizeof(err));
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->openim_version, "v3.8.3-patch.5");
        CHECK_STR(c->openim_profile, "v3.8.3-patch.5");
        CHECK(c->op_user_admin);
        CHECK_STR(c->im_admin_user, "root");
        imp_config_destroy(c);
    }
    /* patch.12: redis.yml redisMode; `db` is read (patch.7 on) */
    c = load_text("kafka:\n  address: [127.0.0.1:9092]\nredis:\n  address: [127.0.0.1:6379]\n"
                  "  redisMode: standalone\n  db: 3\ndiscovery:\n  etcd:\n    address: [h:1]\n",
                  err, sizeof(err));
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->openim_version, "v3.8.3-patch.12");
        CHECK(c->redis_db == 3);
        imp_config_destroy(c);
    }
    /* up to patch.6 OpenIM reads `storage`, so `db` is ignored: said */
    c = load_text("kafka:\n  address: [127.0.0.1:9092]\nredis:\n  address: [127.0.0.1:6379]\n"
                  "  db: 3\ndiscovery:\n  etcd:\n    address: [h:1]\n",
                  err, sizeof(err));
    CHECK(c != NULL && c->redis_db == 0);
    CHECK(c && c->warnings && strstr(c->warnings, "redis.db is ignored by v3.8.3"));
    imp_config_destroy(c);
    /* a key of v3.8.4's layout under a v3.8.3 profile: said */
    c = load("  rpcService:\n    push: p\nimpulse:\n  openim: v3.8.3\n", err, sizeof(err));
    CHECK(c && c->warnings && strstr(c->warnings, "discovery.rpcService belongs to v3.8.4"));
    imp_config_destroy(c);
    c = load("", err, sizeof(err));
    CHECK(c && c->warnings == NULL);
    imp_config_destroy(c);
    /* set explicitly: exact tags, aliases, and what is refused */
    static const struct {
        const char *v, *version, *profile;
    } ok[] = {
        {"v3.8.3", "v3.8.3", "v3.8.3"},
        {"v3.8.3-patch.2", "v3.8.3-patch.2", "v3.8.3"},
        {"v3.8.3-patch.4", "v3.8.3-patch.4", "v3.8.3-patch.3"},
        {"v3.8.3-patch.16", "v3.8.3-patch.16", "v3.8.3-patch.5"},
        {"v3.8.3-patch", "v3.8.3-patch.16", "v3.8.3-patch.5"},
        {"v3.8.4", "v3.8.4-alpha.1", "v3.8.4-alpha.1"},
        {"3.8.4-alpha.1", "v3.8.4-alpha.1", "v3.8.4-alpha.1"},
        {"main", "main", "main"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char extra[128];
        snprintf(extra, sizeof(extra), "impulse:\n  openim: %s\n", ok[i].v);
        c = load(extra, err, sizeof(err));
        CHECK(c != NULL);
        if (!c) {
            fprintf(stderr, "%s: %s\n", ok[i].v, err);
            continue;
        }
        CHECK_STR(c->openim_version, ok[i].version);
        CHECK_STR(c->openim_profile, ok[i].profile);
        CHECK(strstr(c->openim_origin, "impulse.openim"));
        imp_config_destroy(c);
    }
    c = load_text("kafka:\n  address: [127.0.0.1:9092]\nredis:\n  address: [127.0.0.1:6379]\n"
                  "  redisMode: cluster\ndiscovery:\n  etcd:\n    address: [h:1]\n",
                  err, sizeof(err));
    CHECK(c == NULL && strstr(err, "redis.redisMode") && strstr(err, "cluster"));
    expect_error("impulse:\n  openim: v3.9.0\n", "impulse.openim");
    expect_error("impulse:\n  openim: v3.8.3-patch.17\n", "impulse.openim");
    expect_error("impulse:\n  openim: v3.8.3-patch.0\n", "impulse.openim");
    expect_error("impulse:\n  openim: v3.8.3-patch.5\nshare:\n  imAdminUserID: []\n",
                 "share.imAdminUserID");
}

/* IMENV_<FILE>_<KEY PATH> overrides, as OpenIM's loader applies them. */
static void test_imenv(void)
{
    char err[512];
    setenv("IMENV_REDIS_PASSWORD", "from-env", 1);
    setenv("IMENV_KAFKA_ADDRESS", "k1:9092,k2:9093", 1);
    setenv("IMENV_DISCOVERY_ETCD_ROOTDIRECTORY", "tenant1", 1);
    setenv("IMENV_REDIS_USERNAME", "absent-from-the-file", 1); /* not in the file: ignored */
    setenv("IMENV_DISCOVERY_ETCD_ADDRESS", "", 1);             /* empty: ignored */
    setenv("IMENV_OPENIM_PUSH_RPC_AUTOSETPORTS", "false", 1);  /* a bool, unquoted */
    setenv("IMENV_OPENIM_PUSH_RPC_PORTS", "10170,10171", 1);
    struct imp_config *c =
        load("openim-push:\n  rpc:\n    autoSetPorts: true\n    ports: [1]\n", err, sizeof(err));
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->redis_password, "from-env");
        CHECK(c->kafka_addrs.n == 2);
        if (c->kafka_addrs.n == 2) {
            CHECK_STR(c->kafka_addrs.v[0], "k1:9092");
            CHECK_STR(c->kafka_addrs.v[1], "k2:9093");
        }
        CHECK_STR(c->etcd_root, "tenant1");
        CHECK_STR(c->redis_username, "");
        CHECK(c->etcd_addrs.n == 1);
        CHECK(c->rpc_port == 10170);
        CHECK(c->env_overrides && strstr(c->env_overrides, "redis.password") &&
              strstr(c->env_overrides, "kafka.address") &&
              !strstr(c->env_overrides, "redis.username"));
        imp_config_destroy(c);
    }
    c = imp_config_load_index(path, 1, err, sizeof(err));
    CHECK(c != NULL && c->rpc_port == 10171);
    if (c) CHECK_STR(c->admin_listen, "127.0.0.1:9471"); /* 9470 + index, when not set */
    imp_config_destroy(c);
    /* impulse's own keys come from the environment even without the section */
    setenv("IMENV_IMPULSE_ADMIN", "127.0.0.1:19470", 1);
    setenv("IMENV_IMPULSE_WORKERS", "3", 1);
    c = load("", err, sizeof(err));
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->admin_listen, "127.0.0.1:19470");
        CHECK(c->workers == 3);
        CHECK(c->env_overrides && strstr(c->env_overrides, "impulse.admin") &&
              strstr(c->env_overrides, "impulse.workers"));
        imp_config_destroy(c);
    }
    unsetenv("IMENV_IMPULSE_ADMIN");
    unsetenv("IMENV_IMPULSE_WORKERS");
    setenv("IMENV_KAFKA_ADDRESS", "not-an-address", 1);
    expect_error("", "kafka.address");
    unsetenv("IMENV_REDIS_PASSWORD");
    unsetenv("IMENV_KAFKA_ADDRESS");
    unsetenv("IMENV_DISCOVERY_ETCD_ROOTDIRECTORY");
    unsetenv("IMENV_REDIS_USERNAME");
    unsetenv("IMENV_DISCOVERY_ETCD_ADDRESS");
    unsetenv("IMENV_OPENIM_PUSH_RPC_AUTOSETPORTS");
    unsetenv("IMENV_OPENIM_PUSH_RPC_PORTS");
}

/* discovery.enable k8s: the API server from the pod's environment, the
 * service account's token and namespace, what Kubernetes mode refuses. */
static void test_kubernetes(void)
{
    char err[512] = "", sa[64], file[128];
    const char *k8s = "kafka:\n  address: [127.0.0.1:9092]\nredis:\n  address: [127.0.0.1:6379]\n"
                      "discovery:\n  enable: k8s\n";
    const char *ports = "openim-push:\n  rpc:\n    autoSetPorts: false\n    ports: [10170]\n"
                        "  prometheus:\n    ports: [12170]\n";
    char text[1024];

    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    snprintf(text, sizeof(text), "%s%s", k8s, ports);
    struct imp_config *c = load_text(text, err, sizeof(err));
    CHECK(c == NULL && strstr(err, "discovery.enable") && strstr(err, "KUBERNETES_SERVICE_HOST"));

    snprintf(sa, sizeof(sa), "/tmp/impulse-sa-%d", (int)getpid());
    mkdir(sa, 0700);
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    snprintf(text, sizeof(text), "%s%simpulse:\n  kubernetesServiceAccount: %s\n", k8s, ports, sa);
    c = load_text(text, err, sizeof(err));
    CHECK(c == NULL && strstr(err, "impulse.kubernetesServiceAccount") && strstr(err, "token"));

    snprintf(file, sizeof(file), "%s/token", sa);
    FILE *f = fopen(file, "w");
    fputs("tok\n", f);
    fclose(f);
    c = load_text(text, err, sizeof(err));
    CHECK(c != NULL);
    if (c) { /* no namespace anywhere: default; v3.8.3 in k8s hashes users */
        CHECK(c->k8s && c->etcd_addrs.n == 0);
        CHECK_STR(c->k8s_api, "https://10.96.0.1:443");
        CHECK_STR(c->k8s_namespace, "default");
        CHECK(c->gw_hash && c->gw_hash_port == 88);
        imp_config_destroy(c);
    }
    snprintf(file, sizeof(file), "%s/namespace", sa);
    f = fopen(file, "w");
    fputs("openim\n", f);
    fclose(f);
    snprintf(text, sizeof(text),
             "%s%sshare:\n  rpcRegisterName:\n    messageGateway: gw:10140\n"
             "  rpcMaxBodySize: {requestMaxBodySize: 8388608}\n"
             "impulse:\n  kubernetesServiceAccount: %s\n",
             k8s, ports, sa);
    c = load_text(text, err, sizeof(err));
    CHECK(c != NULL);
    if (c) { /* the pod's namespace; patch.5 layout: every gateway */
        CHECK_STR(c->k8s_namespace, "openim");
        CHECK(!c->gw_hash && c->gw_hash_port == 10140);
        imp_config_destroy(c);
    }
    snprintf(text, sizeof(text),
             "%s  kubernetes:\n    namespace: im\n%simpulse:\n  kubernetesServiceAccount: %s\n"
             "  gatewaySelection: all\n",
             k8s, ports, sa);
    c = load_text(text, err, sizeof(err));
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->k8s_namespace, "im");
        CHECK(!c->gw_hash);
        imp_config_destroy(c);
    }
    /* random ports cannot be found without etcd (as OpenIM refuses) */
    snprintf(text, sizeof(text), "%simpulse:\n  kubernetesServiceAccount: %s\n", k8s, sa);
    c = load_text(text, err, sizeof(err));
    CHECK(c == NULL && strstr(err, "openim-push.rpc.autoSetPorts"));
    snprintf(text, sizeof(text),
             "%s%simpulse:\n  kubernetesServiceAccount: %s\n  gatewaySelection: some\n", k8s, ports,
             sa);
    c = load_text(text, err, sizeof(err));
    CHECK(c == NULL && strstr(err, "impulse.gatewaySelection"));
    /* impulse.grpcClient: h2 (default) or core, anything else named */
    snprintf(text, sizeof(text), "%s%simpulse:\n  kubernetesServiceAccount: %s\n", k8s, ports, sa);
    c = load_text(text, err, sizeof(err));
    CHECK(c != NULL && c->gw_h2);
    imp_config_destroy(c);
    snprintf(text, sizeof(text),
             "%s%simpulse:\n  kubernetesServiceAccount: %s\n  grpcClient: core\n", k8s, ports, sa);
    c = load_text(text, err, sizeof(err));
    CHECK(c != NULL && !c->gw_h2);
    imp_config_destroy(c);
    snprintf(text, sizeof(text),
             "%s%simpulse:\n  kubernetesServiceAccount: %s\n  grpcClient: quic\n", k8s, ports, sa);
    c = load_text(text, err, sizeof(err));
    CHECK(c == NULL && strstr(err, "impulse.grpcClient"));
    /* v3.8.4-alpha.1 chooses Kubernetes in a pod whatever enable says */
    snprintf(text, sizeof(text),
             "kafka:\n  address: [127.0.0.1:9092]\nredis:\n  address: [127.0.0.1:6379]\n"
             "discovery:\n  enable: etcd\n  etcd:\n    address: [127.0.0.1:2379]\n"
             "  rpcService: {messageGateway: messagegateway-rpc-service}\n%s"
             "impulse:\n  kubernetesServiceAccount: %s\n",
             ports, sa);
    c = load_text(text, err, sizeof(err));
    CHECK(c != NULL && c->k8s && c->k8s_origin && strstr(c->k8s_origin, "v3.8.4-alpha.1"));
    imp_config_destroy(c);
    snprintf(text, sizeof(text),
             "kafka:\n  address: [127.0.0.1:9092]\nredis:\n  address: [127.0.0.1:6379]\n"
             "discovery:\n  enable: etcd\n  etcd:\n    address: [127.0.0.1:2379]\n"
             "  rpcService: {messageGateway: messagegateway-rpc-service}\n%s"
             "impulse:\n  kubernetesServiceAccount: %s\n  discovery: etcd\n",
             ports, sa);
    c = load_text(text, err, sizeof(err));
    CHECK(c != NULL && !c->k8s);
    imp_config_destroy(c);
    snprintf(text, sizeof(text), "%s%simpulse:\n  discovery: consul\n", k8s, ports);
    c = load_text(text, err, sizeof(err));
    CHECK(c == NULL && strstr(err, "impulse.discovery"));
    snprintf(text, sizeof(text),
             "kafka:\n  address: [127.0.0.1:9092]\nredis:\n  address: [127.0.0.1:6379]\n"
             "discovery:\n  enable: zookeeper\n");
    c = load_text(text, err, sizeof(err));
    CHECK(c == NULL && strstr(err, "discovery.enable") && strstr(err, "zookeeper"));

    snprintf(file, sizeof(file), "%s/token", sa);
    unlink(file);
    snprintf(file, sizeof(file), "%s/namespace", sa);
    unlink(file);
    rmdir(sa);
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
}

/* A relative path the config gives resolves against the config's folder;
 * a default does not. */
static void test_relative_paths(void)
{
    char dir[64], file[128], err[512] = "";
    snprintf(dir, sizeof(dir), "/tmp/impulse-rel-%d", (int)getpid());
    mkdir(dir, 0700);
    snprintf(file, sizeof(file), "%s/myscripts", dir);
    mkdir(file, 0700);
    snprintf(file, sizeof(file), "%s/impulse.yml", dir);
    FILE *f = fopen(file, "w");
    fprintf(f, "%simpulse:\n  scripts: myscripts\n  crashJournal: state/journal\n", base);
    fclose(f);
    struct imp_config *c = imp_config_load(file, err, sizeof(err));
    CHECK(c != NULL);
    if (c) {
        char want[128];
        snprintf(want, sizeof(want), "%s/myscripts", dir);
        CHECK_STR(c->scripts_dir, want);
        snprintf(want, sizeof(want), "%s/state/journal", dir);
        CHECK_STR(c->crash_journal, want);
        CHECK_STR(c->dlq_spool, "/var/lib/impulse/spool"); /* a default: as it is */
        imp_config_destroy(c);
    }
    /* a folder: against the folder itself */
    snprintf(file, sizeof(file), "%s/impulse.yml", dir);
    unlink(file);
    static const char *const files[][2] = {
        {"kafka.yml", "address: [127.0.0.1:9092]\n"},
        {"redis.yml", "address: [127.0.0.1:6379]\n"},
        {"discovery.yml", "etcd:\n  address: [127.0.0.1:2379]\n"},
        {"impulse.yml", "scripts: myscripts\n"},
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(file, sizeof(file), "%s/%s", dir, files[i][0]);
        f = fopen(file, "w");
        fputs(files[i][1], f);
        fclose(f);
    }
    c = imp_config_load(dir, err, sizeof(err));
    CHECK(c != NULL);
    if (c) {
        char want[128];
        snprintf(want, sizeof(want), "%s/myscripts", dir);
        CHECK_STR(c->scripts_dir, want);
        imp_config_destroy(c);
    } else {
        fprintf(stderr, "%s\n", err);
    }
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(file, sizeof(file), "%s/%s", dir, files[i][0]);
        unlink(file);
    }
    snprintf(file, sizeof(file), "%s/myscripts", dir);
    rmdir(file);
    rmdir(dir);
}

int main(void)
{
    char err[512];
    snprintf(path, sizeof(path), "/tmp/impulse-test-config-%d.yml", (int)getpid());

    struct imp_config *c = load("", err, sizeof(err));
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->topic_push, "toPush");
        CHECK_STR(c->group_push, "push");
        CHECK_STR(c->group_offline_push, "offlinePush");
        CHECK_STR(c->svc_gateway, "messageGateway");
        CHECK_STR(c->redis_password, "secret");
        CHECK_STR(c->auto_offset_reset, "latest");
        CHECK_STR(c->im_admin_user, "imAdmin");
        CHECK(c->full_user_cache);
        CHECK(c->workers >= 1);
        CHECK(c->drain_timeout_ms < 30000);
        CHECK(!c->shadow && c->consume_offline && c->serve_rpc);
        /* impulse run --shadow: its own group, no offline consumer, no push
         * service, its own crash journal */
        char *journal = c->crash_journal ? imp_xstrdup(c->crash_journal) : NULL;
        imp_config_shadow(c);
        CHECK(c->shadow && !c->consume_offline && !c->serve_rpc);
        CHECK_STR(c->group_push, "push-shadow");
        CHECK_STR(c->group_offline_push, "offlinePush");
        if (journal && journal[0])
            CHECK(strncmp(c->crash_journal, journal, strlen(journal)) == 0 &&
                  strcmp(c->crash_journal + strlen(journal), "-shadow") == 0);
        free(journal);
        imp_config_destroy(c);
    } else {
        fprintf(stderr, "%s\n", err);
    }

    c = load("share:\n  rpcRegisterName:\n    messageGateway: messagegateway-rpc-service\n"
             "  imAdminUserID: [root, other]\n",
             err, sizeof(err));
    CHECK(c && strcmp(c->svc_gateway, "messagegateway-rpc-service") == 0);
    CHECK(c && strcmp(c->im_admin_user, "root") == 0);
    imp_config_destroy(c);

    expect_error("openim-push:\n  fullUserCache: maybe\n", "openim-push.fullUserCache");
    expect_error("impulse:\n  workerz: 2\n", "impulse.workerz: unknown key");
    /* a map where a string belongs (it crashed the loader: fuzz_config) */
    expect_error("openim-push:\n  rpc:\n    listenIP: {a: b}\n", "openim-push.rpc.listenIP");
    expect_error("impulse:\n  workers: -1\n", "impulse.workers");
    expect_error("impulse:\n  autoOffsetReset: smallest\n", "impulse.autoOffsetReset");
    expect_error("impulse:\n  scripts: /nonexistent/dir\n", "impulse.scripts");
    expect_error("redis:\n  address: [a:1]\n", "duplicate key 'redis'");
    expect_error("share:\n  imAdminUserID: {a: b}\n", "share.imAdminUserID");
    expect_error("impulse:\n  maxInflight: lots\n", "impulse.maxInflight: expected an integer");

    /* Modes impulse does not support yet are refused, naming the key. */
    FILE *f = fopen(path, "w");
    fputs("kafka:\n  address: [127.0.0.1:9092]\nredis:\n  address: [127.0.0.1:6379]\n"
          "  clusterMode: true\ndiscovery:\n  enable: etcd\n  etcd:\n    address: [h:1]\n",
          f);
    fclose(f);
    c = imp_config_load(path, err, sizeof(err));
    CHECK(c == NULL && strstr(err, "redis.clusterMode"));
    f = fopen(path, "w");
    fputs("kafka:\n  address: [nohostport]\nredis:\n  address: [127.0.0.1:6379]\n"
          "discovery:\n  etcd:\n    address: [h:1]\n",
          f);
    fclose(f);
    c = imp_config_load(path, err, sizeof(err));
    CHECK(c == NULL && strstr(err, "kafka.address") && strstr(err, "nohostport"));
    f = fopen(path, "w");
    fputs("kafka: [\n", f);
    fclose(f);
    c = imp_config_load(path, err, sizeof(err));
    CHECK(c == NULL && strstr(err, "line"));
    CHECK(imp_config_load("/nonexistent.yml", err, sizeof(err)) == NULL &&
          strstr(err, "/nonexistent.yml"));
    test_openim_profiles();
    test_kubernetes();
    test_relative_paths();
    /* main's share.yml: imAdminUser.userIDs */
    c = load("share:\n  imAdminUser:\n    userIDs: [boss]\n", err, sizeof(err));
    CHECK(c != NULL);
    if (c) CHECK_STR(c->im_admin_user, "boss");
    imp_config_destroy(c);
    /* keys match regardless of case, as viper matches them (main says getui:) */
    c = load("share:\n  imadminuserid: [root]\nopenim-push:\n  getui:\n    appKey: k1\n", err,
             sizeof(err));
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->im_admin_user, "root");
        CHECK(c->providers_json && strstr(c->providers_json, "\"geTui\":{\"appKey\":\"k1\"}"));
        imp_config_destroy(c);
    }
    test_imenv();
    unlink(path);
    return t_done("config");
}

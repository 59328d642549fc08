/* Config: defaults, OpenIM key names, and one clear line per error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    fputs("kafka:\n  address: [127.0.0.1:9092]\nredis:\n  address: [127.0.0.1:6379]\n"
          "discovery:\n  enable: k8s\n  etcd:\n    address: [h:1]\n",
          f);
    fclose(f);
    c = imp_config_load(path, err, sizeof(err));
    CHECK(c == NULL && strstr(err, "discovery.enable") && strstr(err, "k8s"));
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
    unlink(path);
    return t_done("config");
}

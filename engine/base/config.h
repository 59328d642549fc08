/*
 * impulse's configuration: OpenIM's sections and key names (kafka, redis,
 * discovery, share, openim-push, local-cache) plus an `impulse:` section.
 *
 * `-c` names either one YAML file holding every section as a top-level
 * key, or a directory holding OpenIM's files (kafka.yml, redis.yml,
 * discovery.yml, share.yml, openim-push.yml, local-cache.yml, webhooks.yml,
 * log.yml) plus an optional impulse.yml; each file's top level becomes its
 * section.
 *
 * Every problem is reported as one line naming the key:
 *   "config: kafka.address: expected a list of host:port strings (line 4)"
 */
#ifndef IMP_CONFIG_H
#define IMP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

struct imp_strlist {
    size_t n;
    char **v;
};

struct imp_lru_config {
    char *topic;
    int slot_num;
    int slot_size;
    int success_expire_s;
    int failed_expire_s;
};

struct imp_webhook {
    bool enable;
    int timeout_s;        /* 0 means OpenIM's client default, 15 s */
    bool failed_continue; /* on a failed call, push anyway (OpenIM ignores it) */
};

struct imp_config {
    char *path;
    int index;           /* -i, as openim-push's: which of rpc.ports / prometheus.ports */
    char *env_overrides; /* keys IMENV_ variables overrode ("redis.address, ..."), or NULL */
    char *warnings;      /* lines about keys of another release's layout, or NULL */

    /* impulse.openim: the OpenIM release whose openim-push impulse copies
     * (docs/openim-versions.md). Set, or detected from the config layout. */
    char openim_version[32]; /* the tag: v3.8.3, v3.8.3-patch.N, v3.8.4-alpha.1 */
    char openim_profile[32]; /* its behaviour group: v3.8.3 | v3.8.3-patch.3 |
                                v3.8.3-patch.5 | v3.8.4-alpha.1 | main */
    char openim_origin[256]; /* how it was chosen, for the start line and check */
    int openim_patch;        /* N of v3.8.3-patch.N; 0 otherwise */
    bool openim_v384;        /* v3.8.4-alpha.1 or main: discovery.yml rpcService names */
    bool openim_main;        /* open-im-server's main after v3.8.4-alpha.1 (its layout) */
    bool op_user_admin;      /* patch.5 on: every toPush record runs as the admin */
    bool rpc_temp_admin;     /* main: toPush calls carry OpenIM's temp-admin metadata */

    /* kafka */
    struct imp_strlist kafka_addrs;
    char *kafka_username;
    char *kafka_password;
    bool kafka_tls;
    char *kafka_tls_ca;
    char *kafka_tls_cert;
    char *kafka_tls_key;
    char *kafka_tls_key_password;
    bool kafka_tls_insecure;
    char *topic_push;
    char *topic_offline_push;
    char *group_push;
    char *group_offline_push;
    char *dlq_push;         /* impulse.deadLetterTopic, default "<toPushTopic>.dlq" */
    char *dlq_offline_push; /* impulse.offlineDeadLetterTopic */
    char *dlq_spool;        /* impulse.deadLetterSpool: full copies of cut dead letters */
    int dlq_spool_mb;       /* impulse.deadLetterSpoolMB: its bound; 0 = keep none */

    /* redis */
    char *redis_addr; /* host:port (first of redis.address) */
    char *redis_username;
    char *redis_password;
    int redis_db;

    /* discovery */
    bool k8s;            /* Kubernetes API discovery (net/k8s.c) instead of etcd */
    char *k8s_namespace; /* where the services' Endpoints are read */
    char *k8s_api;       /* https://host:port of the API server */
    char *k8s_sa_dir;    /* impulse.kubernetesServiceAccount: token, ca.crt, namespace */
    bool gw_hash;        /* impulse.gatewaySelection: hash (OpenIM's K8sStaticConsistentHash) */
    bool gw_h2;          /* impulse.grpcClient h2: the workers' gRPC over net/grpcc.c */
    int gw_hash_port;    /* the port in the ring's host names (messageGateway's ":port", 88) */
    char *k8s_origin;    /* why Kubernetes discovery (for the start line), or NULL */
    struct imp_strlist etcd_addrs;
    char *etcd_root;
    char *etcd_username;
    char *etcd_password;

    /* share */
    char *svc_gateway;
    char *svc_user;
    char *svc_group;
    char *svc_conversation;
    char *svc_msg;
    char *svc_push;
    char *im_admin_user;

    /* openim-push */
    bool full_user_cache;
    bool prometheus_enable;
    bool prometheus_auto;  /* rpc.autoSetPorts: a free port, announced in etcd */
    int prometheus_port;   /* prometheus.ports[index]; 0 with autoSetPorts */
    char *rpc_listen_ip;   /* rpc.listenIP */
    char *rpc_register_ip; /* rpc.registerIP; "" = the first non-loopback IPv4 */
    int rpc_port;          /* rpc.ports[0]; 0 with rpc.autoSetPorts (a free port) */

    /* webhooks */
    char *webhook_url;
    struct imp_webhook wh_before_online;
    struct imp_webhook wh_before_group_online;
    struct imp_webhook wh_before_offline;

    /* local-cache */
    struct imp_lru_config cache_group;
    struct imp_lru_config cache_user;

    /* impulse */
    int workers;
    char *scripts_dir;
    char *lua_dir;
    char *admin_listen;      /* host:port, loopback by default */
    char *admin_token;       /* impulse.adminToken: "" = none (then admin must be loopback) */
    int max_inflight;        /* messages held per worker before pausing */
    int gateway_timeout_ms;  /* deadline of one SuperGroupOnlineBatchPushOneMsg */
    int rpc_timeout_ms;      /* deadline of the other OpenIM RPCs */
    int drain_timeout_ms;    /* SIGTERM drain bound */
    int long_time_push_ms;   /* msg_long_time_push_total threshold */
    int max_grpc_message;    /* bytes, send and receive */
    int route_log_users;     /* user IDs listed per route log line */
    char *auto_offset_reset; /* latest | earliest */
    int session_timeout_ms;
    int heartbeat_interval_ms;
    int commit_interval_ms;
    int fetch_wait_ms; /* fetch.wait.max.ms: latency of an idle fetch */
    char *log_level;
    int script_budget_ms;        /* Lua CPU time per message; 0 = unlimited */
    int script_memory_mb;        /* per worker VM */
    bool script_jit;             /* JIT on: faster, but the budget cannot stop a compiled loop */
    bool serve_rpc;              /* serve openim.push.PushMsgService and register in etcd */
    bool consume_offline;        /* consume toOfflinePush (group offlinePush) */
    bool shadow;                 /* impulse run --shadow: runs everything, sends nothing */
    bool offline_dedupe;         /* an offline push to a (user, clientMsgID, device) sent once */
    int offline_dedupe_window_s; /* how long a sent push is remembered */
    char *offline_provider;      /* openim-push.enable, lower-cased; "" = none */
    char *providers_json;        /* geTui, fcm, jpush, iosPush, impulse.providers */
    int register_ttl_s;          /* lease of the etcd registration */
    int reload_quiet_ms;         /* the scripts folder is quiet this long before a reload */
    int gw_breaker_failures;     /* failed gateway calls in a row that open its breaker; 0 = off */
    int gw_breaker_open_ms;      /* how long an open gateway is skipped before a probe */
    int worker_stuck_ms;         /* CPU time of one step that declares a worker stuck; 0 = off */
    bool worker_stuck_exit;      /* a stuck worker stops the process (else: not ready) */
    char *crash_journal;         /* impulse.crashJournal: poison-pill memory; "" = none */
    int poison_deaths;           /* deaths on one record that dead-letter it unrun; 0 = never */

    /* log (log.yml): OpenIM's logger settings, used when log_openim */
    bool log_openim;           /* a log.yml (or impulse.logFormat: openim) */
    char *log_dir;             /* storageLocation; "" = no file */
    int log_rotation_hours;    /* rotationTime */
    int log_remain_count;      /* remainRotationCount; 0 = files of the last 7 days */
    int log_remain_level;      /* remainLogLevel, 0..6 */
    bool log_stdout;           /* isStdout */
    bool log_json;             /* isJson */
    char log_level_origin[96]; /* where log_level came from, for the start line */
};

/* impulse.crashJournal when the config does not name one. */
#define IMP_DEFAULT_CRASH_JOURNAL "/var/lib/impulse/crash-journal"

/* Loads and validates. Returns NULL with "config: <key>: <problem>" in err. */
struct imp_config *imp_config_load(const char *path, char *err, size_t errlen);
/* The same for process index `index` (openim-push's -i): the ports it
 * takes from rpc.ports and prometheus.ports. */
struct imp_config *imp_config_load_index(const char *path, int index, char *err, size_t errlen);
/* The same from YAML text (for built-in defaults). */
struct imp_config *imp_config_load_text(const char *text, char *err, size_t errlen);
void imp_config_destroy(struct imp_config *c);

/* Turns c into a shadow's config (impulse run --shadow): its own consumer
 * group "<toPushGroupID>-shadow", toOfflinePush not consumed (its hand-offs
 * run in-process), no push service or etcd registration, its own crash
 * journal. Cannot fail. */
void imp_config_shadow(struct imp_config *c);

/* <prefix>/share/impulse of an installed binary (the folder beside its
 * bin/ that holds lua/impulse), in out; -1 when the binary is not installed
 * (run from its build folder). */
int imp_config_share_dir(char *out, size_t cap);
/* One line: how services are found (etcd or the Kubernetes API) and which
 * gateways get a user's push; logged at start, printed by check. */
void imp_config_discovery_line(const struct imp_config *c, char *out, size_t outlen);
/* The one line that says which OpenIM release impulse behaves as. */
void imp_config_openim_line(const struct imp_config *c, char *out, size_t outlen);

/* Splits "host:port" (IPv6 as [::1]:port). Returns 0 or IMP_EINVAL. */
int imp_split_hostport(const char *s, char *host, size_t hostlen, int *port);

#endif

/*
 * impulse explain: reads one record, then runs lua/impulse/explain.lua in
 * an engine VM on this thread (the loop `impulse test` uses), with the
 * engine's real calls behind it: the group cache, gRPC to OpenIM's
 * services through discovery, Redis. Deciding what may run and what only
 * gets recorded (the online fan-out, the hand-off, provider requests,
 * writes) is the Lua side's job; this file only reads the record, hands it
 * over as a table (protobuf decoded here) or JSON text, and waits for
 * discovery so the first RPC finds its service.
 *
 * A record read from Kafka is taken by assign and seek: no group is
 * joined, no offset committed, so explaining a record in a live topic
 * changes nothing for the consumers of that topic.
 */
#include "daemon/explain.h"

#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "base/buf.h"
#include "base/common.h"
#include "base/log.h"
#include "daemon/engine.h"
#include "daemon/watcher.h"
#include "net/grpc.h"
#include "net/kafka.h"
#include "push.pb-c.h"
#include "push/worker.h"
#include "script/pbtable.h"
#include "state/registry.h"

/* The record as read: its bytes, and where it came from. */
struct record {
    struct imp_buf data;
    const char *topic; /* from --from, else NULL */
    int partition;
    long long offset;
    char *opid; /* the operationID header, or NULL */
    const struct imp_explain_opts *o;
    const struct imp_config *cfg;
};

static int read_stream(FILE *f, struct imp_buf *b)
{
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) imp_buf_append(b, chunk, n);
    return ferror(f) ? -1 : 0;
}

/* "topic:partition:offset" (the topic may hold colons: the last two
 * fields are the numbers). Returns 0, or -1 after a line on stderr. */
static int parse_from(const char *from, char *topic, size_t tlen, int *partition, long long *offset)
{
    const char *c2 = strrchr(from, ':');
    const char *c1 = NULL;
    for (const char *p = from; c2 && p < c2; p++)
        if (*p == ':') c1 = p;
    char *end;
    if (!c1 || c1 == from || (size_t)(c1 - from) >= tlen) goto bad;
    long p = strtol(c1 + 1, &end, 10);
    if (end != c2 || end == c1 + 1 || p < 0 || p > 100000) goto bad;
    long long off = strtoll(c2 + 1, &end, 10);
    if (*end || end == c2 + 1 || off < 0) goto bad;
    snprintf(topic, tlen, "%.*s", (int)(c1 - from), from);
    *partition = (int)p;
    *offset = off;
    return 0;
bad:
    fprintf(stderr, "impulse explain: --from '%s' is not topic:partition:offset\n", from);
    return -1;
}

/* One record of topic/partition at offset: the consumer assigns itself
 * that partition at that offset (no group join, no commit) and polls for
 * up to 15 s. Returns 0, or -1 after a line on stderr. */
static int read_kafka(const struct imp_config *cfg, struct record *r, const char *topic)
{
    char err[512];
    rd_kafka_conf_t *cc = rd_kafka_conf_new();
    rd_kafka_t *cons = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    int rc = -1;
    if (imp_kafka_conf_common(cc, cfg, "impulse-explain", err, sizeof(err)) ||
        rd_kafka_conf_set(cc, "group.id", "impulse-explain", err, sizeof(err)) ||
        rd_kafka_conf_set(cc, "enable.auto.commit", "false", err, sizeof(err)) ||
        rd_kafka_conf_set(cc, "enable.auto.offset.store", "false", err, sizeof(err)) ||
        rd_kafka_conf_set(cc, "enable.partition.eof", "true", err, sizeof(err))) {
        fprintf(stderr, "impulse explain: kafka: %s\n", err);
        rd_kafka_conf_destroy(cc);
        return -1;
    }
    cons = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof(err));
    if (!cons) {
        fprintf(stderr, "impulse explain: kafka: %s\n", err);
        rd_kafka_conf_destroy(cc);
        return -1;
    }
    parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, topic, r->partition)->offset = r->offset;
    if (rd_kafka_assign(cons, parts) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "impulse explain: cannot read %s[%d]\n", topic, r->partition);
        goto out;
    }
    for (int waited = 0; waited < 30; waited++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 500);
        if (!m) continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            fprintf(stderr, "impulse explain: %s[%d] has no record at offset %lld\n", topic,
                    r->partition, r->offset);
            rd_kafka_message_destroy(m);
            goto out;
        }
        if (m->err) {
            fprintf(stderr, "impulse explain: %s[%d]@%lld: %s\n", topic, r->partition, r->offset,
                    rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            if (m->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
                m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
                m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)
                goto out;
            continue;
        }
        if (m->offset != r->offset) { /* compacted away: the next one came */
            fprintf(stderr, "impulse explain: %s[%d] has no record at offset %lld (next: %lld)\n",
                    topic, r->partition, r->offset, (long long)m->offset);
            rd_kafka_message_destroy(m);
            goto out;
        }
        imp_buf_append(&r->data, m->payload, m->len);
        rd_kafka_headers_t *h = NULL;
        const void *v;
        size_t n;
        if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            rd_kafka_header_get_last(h, "operationID", &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR && v)
            r->opid = imp_xstrndup(v, n);
        rd_kafka_message_destroy(m);
        rc = 0;
        break;
    }
    if (rc) fprintf(stderr, "impulse explain: nothing from %s[%d] in 15 s\n", topic, r->partition);
out:
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_consumer_close(cons);
    rd_kafka_destroy(cons);
    return rc;
}

static void set_str(lua_State *co, const char *k, const char *v)
{
    if (!v) return;
    lua_pushstring(co, v);
    lua_setfield(co, -2, k);
}

/* explain.main's one argument: {record = table | json = text, topic,
 * partition, offset, operationID, offline_data, policy, json_out,
 * scripts_dir}. Stack: +1. */
static int push_args(lua_State *co, void *ud)
{
    struct record *r = ud;
    lua_createtable(co, 0, 12);
    size_t i = 0;
    while (i < r->data.len && isspace((unsigned char)r->data.data[i])) i++;
    if (i < r->data.len && r->data.data[i] == '{') {
        lua_pushlstring(co, r->data.data, r->data.len);
        lua_setfield(co, -2, "json");
    } else {
        Openim__Push__PushMsgReq *req =
            openim__push__push_msg_req__unpack(NULL, r->data.len, (const uint8_t *)r->data.data);
        if (req) {
            imp_pb_push(co, &req->base);
            lua_setfield(co, -2, "record");
            openim__push__push_msg_req__free_unpacked(req, NULL);
        } else {
            lua_pushfstring(co, "the record (%d bytes) is neither JSON nor a PushMsgReq",
                            (int)r->data.len);
            lua_setfield(co, -2, "error");
        }
    }
    set_str(co, "topic", r->topic);
    if (r->topic) {
        lua_pushinteger(co, r->partition);
        lua_setfield(co, -2, "partition");
        lua_pushnumber(co, (lua_Number)r->offset);
        lua_setfield(co, -2, "offset");
    }
    set_str(co, "operationID", r->opid);
    set_str(co, "offline_data", r->o->offline_data);
    set_str(co, "policy", r->o->policy);
    set_str(co, "scripts_dir", r->cfg->scripts_dir);
    set_str(co, "input", r->topic ? NULL : r->o->input ? r->o->input : "-");
    lua_pushboolean(co, r->o->json);
    lua_setfield(co, -2, "json_out");
    return 1;
}

/* Waits up to 5 s for discovery to list the services the policy may call,
 * so the first RPC does not fail for a registry still empty. */
static void wait_discovery(struct imp_engine *e, const struct imp_config *cfg)
{
    const char *names[] = {cfg->svc_group, cfg->svc_user, cfg->svc_conversation, cfg->svc_msg};
    for (int tries = 0; tries < 100; tries++) {
        int missing = 0;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            struct imp_svclist *l = imp_registry_fetch(e->shared.registry, names[i]);
            if (!l || l->n == 0) missing++;
            if (l) imp_svclist_release(l);
        }
        if (!missing) return;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int imp_explain_run(struct imp_config *cfg, const struct imp_explain_opts *o)
{
    struct record r = {.o = o, .cfg = cfg};
    char topic[256];
    imp_buf_init(&r.data);
    if (o->from && o->input) {
        fprintf(stderr, "impulse explain: give a file or --from, not both\n");
        return 2;
    }
    if (o->from) {
        if (parse_from(o->from, topic, sizeof(topic), &r.partition, &r.offset) ||
            read_kafka(cfg, &r, topic))
            return 2;
        r.topic = topic;
    } else if (!o->input || strcmp(o->input, "-") == 0) {
        if (read_stream(stdin, &r.data)) {
            fprintf(stderr, "impulse explain: cannot read stdin: %s\n", strerror(errno));
            return 2;
        }
    } else {
        FILE *f = fopen(o->input, "rb");
        if (!f || read_stream(f, &r.data)) {
            fprintf(stderr, "impulse explain: %s: %s\n", o->input, strerror(errno));
            if (f) fclose(f);
            return 2;
        }
        fclose(f);
    }
    if (r.data.len == 0) {
        fprintf(stderr, "impulse explain: the record is empty\n");
        return 2;
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    imp_grpc_start();
    /* the engine lives until the process exits (explain.lua exits it) */
    struct imp_engine *e = imp_xcalloc(1, sizeof(*e));
    struct imp_worker_env env;
    struct imp_watcher_hooks hooks;
    imp_engine_init(e, cfg, 16);
    imp_engine_worker_env(e, &env);
    imp_engine_watcher_hooks(e, &hooks);
    imp_barrier_init(&e->drain_barrier, 1);
    if (!o->offline_data) { /* live: discovery and Redis */
        e->watcher = imp_watcher_create(cfg, &e->shared, &hooks);
        imp_watcher_start(e->watcher);
        wait_discovery(e, cfg);
    }
    char *argv[] = {NULL};
    int rc =
        imp_worker_run_chunk(&env, "impulse explain", "return require('impulse.explain').main(...)",
                             0, argv, push_args, &r);
    /* explain.lua exits with its own code; reaching here means it raised */
    return rc ? 1 : 0;
}

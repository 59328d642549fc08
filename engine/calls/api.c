/*
 * Script engine calls. Every network call follows task.h's pattern: start
 * the operation on this worker's loop, mark the task waiting, return true;
 * the answer pushes (value) or (nil, err, code) on the coroutine and
 * resumes it. Each call has a deadline: gRPC's own, curl's, and a timer
 * for Redis (hiredis 0.14 has no async timeouts); a reply that comes after
 * its deadline is dropped.
 *
 * Called from a task's coroutine on its worker's loop; never blocks.
 */
#include "calls/api.h"

#include <ctype.h>
#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "base/common.h"
#include "base/config.h"
#include "base/log.h"
#include "base/metrics.h"
#include "net/http.h"
#include "net/producer.h"
#include "script/pbtable.h"
#include "script/task.h"
#include "script/vm.h"

struct imp_api_clients {
    struct imp_host *host;
    struct imp_http *http;
    redisAsyncContext *redis;
    int redis_up;
};

static struct imp_api_clients *clients(struct imp_host *host)
{
    struct imp_api_clients **pc = &host->api;
    if (!*pc) {
        *pc = imp_xcalloc(1, sizeof(**pc));
        (*pc)->host = host;
    }
    return *pc;
}

void imp_api_clients_destroy(struct imp_api_clients *c)
{
    if (!c) return;
    if (c->redis) {
        redisAsyncContext *ac = c->redis;
        c->redis = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    imp_http_destroy(c->http);
    free(c);
}

static struct imp_task *need_task(lua_State *L, const char *what)
{
    struct imp_task *t = imp_task_current(L);
    if (!t) luaL_error(L, "%s called outside a message coroutine", what);
    return t;
}

static int pending(lua_State *L, struct imp_task *t)
{
    imp_task_wait(t);
    lua_pushboolean(L, 1);
    return 1;
}

/* false, nil, err, code: answered at once with a failure */
static int failed_now(lua_State *L, const char *err, const char *code)
{
    lua_pushboolean(L, 0);
    lua_pushnil(L);
    lua_pushstring(L, err);
    lua_pushstring(L, code);
    return 4;
}

/* ---------- shadow mode (impulse run --shadow) ----------
 * A shadow runs everything and sends nothing: reads go out, writes do not.
 * An RPC whose method reads (Get..., Check..., Is..., Find..., Search...,
 * List..., in either case: OpenIM writes getGroupMemberUserIDs) is made; any other is answered at
 * once with an empty reply, as if it had succeeded, so the policy goes on as it would live. A Redis
 * command that is not a read fails with code SHADOW; HTTP requests
 * (webhooks: scripts/webhooks.lua skips them first) fail with SHADOW;
 * produce succeeds without producing. Each skip is counted. */

static void shadow_skip(const char *what)
{
    char labels[64];
    snprintf(labels, sizeof(labels), "call=\"%s\"", what);
    imp_metrics_inc("impulse_shadow_skipped_total", labels, 1);
}

static int rpc_reads(const char *path)
{
    const char *name = strrchr(path, '/');
    name = name ? name + 1 : path;
    static const char *const verbs[] = {"Get", "Check", "Is", "Find", "Search", "List"};
    for (size_t i = 0; i < IMP_ARRAY_LEN(verbs); i++)
        if (strncasecmp(name, verbs[i], strlen(verbs[i])) == 0) return 1; /* getUserStatus too */
    return 0;
}

static int redis_reads(const char *cmd)
{
    static const char *const reads[] = {
        "GET",    "MGET",        "HGET",     "HMGET",         "HGETALL",   "HEXISTS",
        "HLEN",   "HKEYS",       "HVALS",    "EXISTS",        "TTL",       "PTTL",
        "TYPE",   "STRLEN",      "GETRANGE", "SMEMBERS",      "SISMEMBER", "SMISMEMBER",
        "SCARD",  "SRANDMEMBER", "ZRANGE",   "ZRANGEBYSCORE", "ZREVRANGE", "ZREVRANGEBYSCORE",
        "ZSCORE", "ZMSCORE",     "ZCARD",    "ZCOUNT",        "ZRANK",     "ZREVRANK",
        "LRANGE", "LLEN",        "LINDEX",   "SCAN",          "SSCAN",     "HSCAN",
        "ZSCAN",  "PING",        "DBSIZE",
    };
    for (size_t i = 0; i < IMP_ARRAY_LEN(reads); i++)
        if (strcmp(cmd, reads[i]) == 0) return 1;
    return 0;
}

/* ---------- OpenIM RPCs ---------- */

struct rpc {
    struct imp_task *t;
    const ProtobufCMethodDescriptor *m;
    char service[32];
};

static const char *service_of(const struct imp_config *cfg, const char *pkg)
{
    if (strcmp(pkg, "openim.group.group") == 0) return cfg->svc_group;
    if (strcmp(pkg, "openim.user.user") == 0) return cfg->svc_user;
    if (strcmp(pkg, "openim.conversation.conversation") == 0) return cfg->svc_conversation;
    if (strcmp(pkg, "openim.msg.msg") == 0) return cfg->svc_msg;
    if (strcmp(pkg, "openim.msggateway.msgGateway") == 0) return cfg->svc_gateway;
    return NULL;
}

static void on_rpc(void *arg, const struct imp_grpc_result *r)
{
    struct rpc *rc = arg;
    struct imp_task *t = rc->t;
    lua_State *co = imp_task_co(t);
    char sname[16], labels[200];
    const char *code = imp_grpc_status_name(r->status, sname, sizeof(sname));
    snprintf(labels, sizeof(labels), "path=\"/%s\",code=\"%d\"", rc->m->name, r->status);
    imp_metrics_inc("impulse_rpc_client_total", labels, 1);
    if (r->status != 0) {
        lua_pushnil(co);
        lua_pushfstring(co, "%s service: %s: %s", rc->service, code, r->details);
        lua_pushstring(co, code);
    } else {
        ProtobufCMessage *resp = protobuf_c_message_unpack(rc->m->output, NULL, r->len, r->data);
        if (!resp) {
            lua_pushnil(co);
            lua_pushfstring(co, "%s service: unparseable %s reply", rc->service, rc->m->name);
            lua_pushliteral(co, "BAD_REPLY");
        } else {
            imp_pb_push(co, resp);
            protobuf_c_message_free_unpacked(resp, NULL);
            lua_pushnil(co);
            lua_pushnil(co);
        }
    }
    free(rc);
    imp_task_resume(t, 3);
}

/* rpc(method, request, opuserid?, timeout_ms?) -> true | false, nil, err, code */
int imp_lua_rpc(lua_State *L)
{
    struct imp_task *t = need_task(L, "rpc");
    struct imp_host *host = t->host;
    const struct imp_config *cfg = host->cfg;
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    const char *opuser = luaL_optstring(L, 3, NULL);
    int timeout = (int)luaL_optnumber(L, 4, cfg->rpc_timeout_ms);
    const char *pkg = NULL;
    const ProtobufCMethodDescriptor *m = imp_pb_method(path, &pkg);
    if (!m) return luaL_error(L, "unknown OpenIM method '%s'", path);
    const char *svc = service_of(cfg, pkg);
    if (!svc) return luaL_error(L, "impulse does not call %s", path);
    if (cfg->shadow && !rpc_reads(path)) {
        /* not made: an empty reply, as if it had succeeded */
        ProtobufCMessage *empty = imp_xcalloc(1, m->output->sizeof_message);
        protobuf_c_message_init(m->output, empty);
        shadow_skip("rpc");
        imp_debug(NULL, "shadow mode: %s not called", path);
        lua_pushboolean(L, 0);
        imp_pb_push(L, empty);
        free(empty);
        return 2;
    }
    char err[300];
    uint64_t t0 = imp_now_ns();
    ProtobufCMessage *req = imp_pb_from_table(L, 2, m->input, err, sizeof(err));
    if (!req) return luaL_error(L, "bad request for %s: %s", path, err);
    size_t n = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = imp_xmalloc(n ? n : 1);
    protobuf_c_message_pack(req, buf);
    protobuf_c_message_free_unpacked(req, NULL);
    imp_vm_exclude(imp_task_vm(t), t0);

    struct imp_grpc_channel *ch = imp_host_service(host, svc);
    if (!ch) {
        free(buf);
        char why[200];
        snprintf(why, sizeof(why), "no %s service node registered in etcd", svc);
        return failed_now(L, why, "UNAVAILABLE");
    }
    struct imp_grpc_md md[IMP_TASK_GRPC_MD];
    imp_task_grpc_md(t, md);
    if (opuser) md[IMP_TASK_MD_OPUSER].value = opuser; /* admin calls (dismissGroup) */
    struct rpc *rc = imp_xcalloc(1, sizeof(*rc));
    rc->t = t;
    rc->m = m;
    snprintf(rc->service, sizeof(rc->service), "%s", svc);
    int rv = imp_host_unary(host, ch, path, buf, n, timeout, md, IMP_TASK_GRPC_MD, on_rpc, rc);
    free(buf);
    if (rv != 0) {
        free(rc);
        return failed_now(L, "cannot start the call", "UNAVAILABLE");
    }
    return pending(L, t);
}

/* ---------- Redis ---------- */

struct rcmd {
    ev_timer timer;
    struct imp_task *t; /* NULL once answered by the timer */
    struct imp_host *host;
};

static void push_reply(lua_State *co, const redisReply *r, int depth)
{
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS: lua_pushlstring(co, r->str, r->len); break;
    case REDIS_REPLY_INTEGER: lua_pushnumber(co, (lua_Number)r->integer); break;
    case REDIS_REPLY_NIL: lua_pushlightuserdata(co, NULL); break; /* cjson.null */
    case REDIS_REPLY_ARRAY:
        lua_createtable(co, (int)r->elements, 0);
        for (size_t i = 0; i < r->elements; i++) {
            if (depth < 8)
                push_reply(co, r->element[i], depth + 1);
            else
                lua_pushnil(co);
            lua_rawseti(co, -2, (int)i + 1);
        }
        break;
    default: lua_pushnil(co); break;
    }
}

static void on_redis_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    struct rcmd *c = priv;
    redisReply *r = reply;
    if (!c->t) { /* answered by its deadline already */
        free(c);
        return;
    }
    struct imp_task *t = c->t;
    lua_State *co = imp_task_co(t);
    ev_timer_stop(c->host->loop, &c->timer);
    if (!r) {
        lua_pushnil(co);
        lua_pushstring(co, ac && ac->errstr[0] ? ac->errstr : "redis connection lost");
        lua_pushliteral(co, "REDIS_CONNECTION");
    } else if (r->type == REDIS_REPLY_ERROR) {
        lua_pushnil(co);
        lua_pushlstring(co, r->str, r->len);
        lua_pushliteral(co, "REDIS_ERROR");
    } else {
        push_reply(co, r, 0);
        lua_pushnil(co);
        lua_pushnil(co);
    }
    free(c);
    imp_task_resume(t, 3);
}

static void on_redis_timeout(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    struct rcmd *c = (struct rcmd *)tm;
    struct imp_task *t = c->t;
    c->t = NULL; /* the reply, if it ever comes, frees c */
    lua_State *co = imp_task_co(t);
    lua_pushnil(co);
    lua_pushliteral(co, "redis: timed out");
    lua_pushliteral(co, "TIMEOUT");
    imp_task_resume(t, 3);
}

static void on_redis_connect(const redisAsyncContext *ac, int status)
{
    struct imp_api_clients *c = ac->data;
    if (!c) return;
    if (status != REDIS_OK) {
        imp_warn(NULL, "redis (scripts): connect failed: %s", ac->errstr);
        c->redis = NULL; /* hiredis frees it */
        c->redis_up = 0;
    }
}

static void on_redis_disconnect(const redisAsyncContext *ac, int status)
{
    struct imp_api_clients *c = ac->data;
    (void)status;
    if (!c) return;
    c->redis = NULL; /* hiredis frees it; the next call reconnects */
    c->redis_up = 0;
}

static redisAsyncContext *redis_conn(struct imp_api_clients *c)
{
    if (c->redis) return c->redis;
    const struct imp_config *cfg = c->host->cfg;
    char host[256];
    int port;
    imp_split_hostport(cfg->redis_addr, host, sizeof(host), &port);
    redisAsyncContext *ac = redisAsyncConnect(host, port);
    if (!ac || ac->err) {
        if (ac) redisAsyncFree(ac);
        return NULL;
    }
    ac->data = c;
    redisLibevAttach(c->host->loop, ac);
    redisAsyncSetConnectCallback(ac, on_redis_connect);
    redisAsyncSetDisconnectCallback(ac, on_redis_disconnect);
    if (cfg->redis_password[0]) {
        if (cfg->redis_username[0])
            redisAsyncCommand(ac, NULL, NULL, "AUTH %s %s", cfg->redis_username,
                              cfg->redis_password);
        else
            redisAsyncCommand(ac, NULL, NULL, "AUTH %s", cfg->redis_password);
    }
    if (cfg->redis_db) redisAsyncCommand(ac, NULL, NULL, "SELECT %d", cfg->redis_db);
    c->redis = ac;
    c->redis_up = 1;
    return ac;
}

/* redis(cmd, args...) -> true | false, nil, err, code */
int imp_lua_redis(lua_State *L)
{
    struct imp_task *t = need_task(L, "redis");
    struct imp_host *host = t->host;
    int argc = lua_gettop(L);
    if (argc < 1) return luaL_error(L, "redis: a command is required");
    /* every argument checked before anything is allocated (luaL_error
     * does not return); a command takes as many as Lua can pass (MGET of a
     * chunk's tokens, the dedupe's EVAL of 1,000 keys) */
    for (int i = 0; i < argc; i++)
        if (!lua_isstring(L, i + 1))
            return luaL_error(L, "redis: argument #%d is a %s, not a string or number", i + 1,
                              luaL_typename(L, i + 1));
    char cmd[32];
    snprintf(cmd, sizeof(cmd), "%s", lua_tostring(L, 1));
    for (char *p = cmd; *p; p++) *p = (char)toupper((unsigned char)*p);
    if (!strcmp(cmd, "SUBSCRIBE") || !strcmp(cmd, "PSUBSCRIBE") || !strcmp(cmd, "MONITOR"))
        return luaL_error(L, "redis: %s is not available to scripts", cmd);
    if (host->cfg->shadow && !redis_reads(cmd)) {
        char why[96];
        snprintf(why, sizeof(why), "redis: %s is a write, not made in shadow mode", cmd);
        shadow_skip("redis");
        return failed_now(L, why, "SHADOW");
    }
    redisAsyncContext *ac = redis_conn(clients(host));
    if (!ac) return failed_now(L, "redis: cannot connect", "REDIS_CONNECTION");
    const char **argv = imp_xcalloc((size_t)argc, sizeof(*argv));
    size_t *lens = imp_xcalloc((size_t)argc, sizeof(*lens));
    for (int i = 0; i < argc; i++) argv[i] = lua_tolstring(L, i + 1, &lens[i]);
    struct rcmd *c = imp_xcalloc(1, sizeof(*c));
    c->t = t;
    c->host = host;
    /* hiredis formats the command into its own buffer: argv is ours */
    int sent = redisAsyncCommandArgv(ac, on_redis_reply, c, argc, argv, lens);
    free(argv);
    free(lens);
    if (sent != REDIS_OK) {
        free(c);
        return failed_now(L, "redis: cannot send the command", "REDIS_CONNECTION");
    }
    ev_timer_init(&c->timer, on_redis_timeout, host->cfg->rpc_timeout_ms / 1000.0, 0.);
    ev_timer_start(host->loop, &c->timer);
    return pending(L, t);
}

/* ---------- HTTP ---------- */

struct hreq {
    struct imp_task *t;
};

static void on_http(void *arg, int err, long status, const char *body, size_t len,
                    const char *errmsg)
{
    struct hreq *h = arg;
    struct imp_task *t = h->t;
    lua_State *co = imp_task_co(t);
    free(h);
    if (err) {
        lua_pushnil(co);
        lua_pushfstring(co, "http: %s", errmsg);
        lua_pushstring(co, err == IMP_ETIMEDOUT ? "TIMEOUT" : "HTTP_CONNECTION");
    } else {
        lua_createtable(co, 0, 2);
        lua_pushnumber(co, (lua_Number)status);
        lua_setfield(co, -2, "status");
        lua_pushlstring(co, body, len);
        lua_setfield(co, -2, "body");
        lua_pushnil(co);
        lua_pushnil(co);
    }
    imp_task_resume(t, 3);
}

/* http({method, url, headers = {name = value}, body, timeout_ms}) ->
 * true | false, nil, err, code; the answer is {status, body} */
int imp_lua_http(lua_State *L)
{
    struct imp_task *t = need_task(L, "http");
    struct imp_host *host = t->host;
    luaL_checktype(L, 1, LUA_TTABLE);
    if (host->cfg->shadow) {
        shadow_skip("http");
        return failed_now(L, "http: not sent in shadow mode", "SHADOW");
    }
    lua_getfield(L, 1, "url");
    const char *url = lua_tostring(L, -1);
    if (!url) return luaL_error(L, "http: url is required");
    lua_getfield(L, 1, "method");
    const char *method = luaL_optstring(L, -1, "GET");
    lua_getfield(L, 1, "body");
    size_t blen = 0;
    const char *body = lua_tolstring(L, -1, &blen);
    lua_getfield(L, 1, "timeout_ms");
    int timeout = (int)luaL_optnumber(L, -1, host->cfg->rpc_timeout_ms);
    const char *headers[33] = {0};
    char *hbuf[32] = {0};
    int nh = 0;
    lua_getfield(L, 1, "headers");
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2) && nh < 32) {
            if (lua_type(L, -2) == LUA_TSTRING && lua_isstring(L, -1)) {
                struct imp_buf b;
                imp_buf_init(&b);
                imp_buf_printf(&b, "%s: %s", lua_tostring(L, -2), lua_tostring(L, -1));
                hbuf[nh] = imp_buf_steal(&b, NULL);
                headers[nh] = hbuf[nh];
                nh++;
            }
            lua_pop(L, 1);
        }
    }
    struct imp_api_clients *c = clients(host);
    if (!c->http) c->http = imp_http_create(host->loop);
    struct hreq *h = imp_xmalloc(sizeof(*h));
    h->t = t;
    struct imp_http_opts o = {.method = method,
                              .url = url,
                              .headers = headers,
                              .body = body,
                              .body_len = blen,
                              .timeout_ms = timeout,
                              .connect_timeout_ms = IMP_MIN(timeout, 3000),
                              .on_done = on_http,
                              .arg = h};
    struct imp_http_req *r = imp_http_request(c->http, &o);
    for (int i = 0; i < nh; i++) free(hbuf[i]);
    if (!r) {
        free(h);
        return failed_now(L, "http: cannot start the request", "HTTP_CONNECTION");
    }
    return pending(L, t);
}

/* ---------- Kafka ---------- */

static void on_produced(void *arg, int err, const char *errstr)
{
    struct imp_task *t = arg;
    lua_State *co = imp_task_co(t);
    if (err) {
        lua_pushnil(co);
        lua_pushfstring(co, "kafka: %s", errstr);
        lua_pushliteral(co, "KAFKA");
    } else {
        lua_pushboolean(co, 1);
        lua_pushnil(co);
        lua_pushnil(co);
    }
    imp_task_resume(t, 3);
}

/* produce(topic, key, value, headers?) -> true (pending) | false, nil, err,
 * code. headers: a list of {name, value} pairs, kept in order. */
int imp_lua_produce(lua_State *L)
{
    struct imp_task *t = need_task(L, "produce");
    struct imp_host *host = t->host;
    const char *topic = luaL_checkstring(L, 1);
    size_t klen, vlen;
    const char *key = luaL_optlstring(L, 2, "", &klen);
    const char *value = luaL_checklstring(L, 3, &vlen);
    struct imp_producer *p = host->producer;
    if (host->cfg->shadow) { /* not produced; the script goes on as if acknowledged */
        shadow_skip("produce");
        lua_pushboolean(L, 0);
        lua_pushboolean(L, 1);
        return 2;
    }
    if (!p) return failed_now(L, "kafka: no producer on this worker", "KAFKA");
    rd_kafka_headers_t *h = NULL;
    if (lua_istable(L, 4)) {
        h = rd_kafka_headers_new(4);
        size_t n = lua_objlen(L, 4);
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, 4, (int)i);
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2);
            size_t nl, hl;
            const char *name = lua_tolstring(L, -2, &nl);
            const char *hv = lua_tolstring(L, -1, &hl);
            if (name) rd_kafka_header_add(h, name, (ssize_t)nl, hv, hv ? (ssize_t)hl : 0);
            lua_pop(L, 3);
        }
    }
    int rc = imp_producer_send(p, topic, key, klen, value, vlen, h, on_produced, t);
    if (rc != 0) {
        if (h) rd_kafka_headers_destroy(h);
        return failed_now(L, rd_kafka_err2str(rc), "KAFKA");
    }
    return pending(L, t);
}

/* ---------- metrics ---------- */

/* metric(kind, name, labels?, value): kind "counter" (add), "gauge" (set),
 * "histogram" (observe). Labels: a table of strings, rendered sorted. */
int imp_lua_metric(lua_State *L)
{
    const char *kind = luaL_checkstring(L, 1);
    const char *name = luaL_checkstring(L, 2);
    double v = luaL_optnumber(L, 4, 1);
    if (!isalpha((unsigned char)name[0])) return luaL_error(L, "bad metric name '%s'", name);
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            return luaL_error(L, "bad metric name '%s' (letters, digits and _)", name);
    int k = !strcmp(kind, "counter")     ? IMP_METRIC_COUNTER
            : !strcmp(kind, "gauge")     ? IMP_METRIC_GAUGE
            : !strcmp(kind, "histogram") ? IMP_METRIC_HISTOGRAM
                                         : -1;
    if (k < 0) return luaL_error(L, "bad metric kind '%s'", kind);
    int have = imp_metrics_kind(name);
    if (have >= 0 && have != k) return luaL_error(L, "metric '%s' is not a %s", name, kind);
    /* labels, sorted by name so the same set renders the same */
    struct imp_buf lb;
    imp_buf_init(&lb);
    if (lua_istable(L, 3)) {
        const char *keys[16];
        int nk = 0;
        lua_pushnil(L);
        while (lua_next(L, 3) && nk < 16) {
            if (lua_type(L, -2) == LUA_TSTRING) keys[nk++] = lua_tostring(L, -2);
            lua_pop(L, 1);
        }
        for (int i = 1; i < nk; i++)
            for (int j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
                const char *x = keys[j];
                keys[j] = keys[j - 1];
                keys[j - 1] = x;
            }
        for (int i = 0; i < nk; i++) {
            lua_getfield(L, 3, keys[i]);
            const char *val = lua_tostring(L, -1);
            imp_buf_printf(&lb, "%s%s=", i ? "," : "", keys[i]);
            imp_buf_json_cstr(&lb, val ? val : "");
            lua_pop(L, 1);
        }
    }
    struct imp_metric *m =
        k == IMP_METRIC_COUNTER ? imp_metrics_counter(name, lb.data, "from a script")
        : k == IMP_METRIC_GAUGE ? imp_metrics_gauge(name, lb.data, "from a script")
                                : imp_metrics_histogram(name, lb.data, "from a script");
    imp_buf_dispose(&lb);
    if (k == IMP_METRIC_COUNTER)
        imp_metric_add(m, (int64_t)v);
    else if (k == IMP_METRIC_GAUGE)
        imp_metric_set(m, (int64_t)v);
    else
        imp_metric_observe(m, v);
    return 0;
}

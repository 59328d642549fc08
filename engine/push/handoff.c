/*
 * The offline hand-off: core.offline_handoff produces a toPush message's
 * offline recipients to toOfflinePush as OpenIM's PushMsgReq{msgData,
 * userIDs} records (its key, its four headers, split so no record passes
 * 1,000,000 bytes), and the message's coroutine waits until every record
 * is acknowledged, so its toPush offset is stored only after that. The
 * same record writer serves core.offline_dead_letter (deadletter.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/common.h"
#include "base/config.h"
#include "base/metrics.h"
#include "base/pbcheck.h"
#include "net/producer.h"
#include "push/worker_int.h"
#include "script/vm.h"

struct handoff {
    struct msg *t;
    int pending; /* records not yet acknowledged */
    int failed;
    char error[256];
};

/* A hand-off for m's coroutine, held (pending 1) while its records are
 * produced; imp_handoff_return drops that hold. */
struct handoff *imp_handoff_new(struct msg *m)
{
    struct handoff *ho = imp_xcalloc(1, sizeof(*ho));
    ho->t = m;
    ho->pending = 1;
    return ho;
}

static void on_handoff_ack(void *arg, int err, const char *errstr)
{
    struct handoff *ho = arg;
    if (err && !ho->failed) {
        ho->failed = 1;
        snprintf(ho->error, sizeof(ho->error), "%s", errstr);
    }
    if (--ho->pending > 0) return;
    struct msg *t = ho->t;
    lua_State *co = t->task.co;
    if (ho->failed) {
        lua_pushnil(co);
        lua_pushfstring(co, "toOfflinePush: %s", ho->error);
        imp_metrics_inc("group_chat_msg_process_failed_total", NULL, 1);
    } else {
        lua_pushboolean(co, 1);
        lua_pushnil(co);
    }
    free(ho);
    imp_task_resume(&t->task, 2);
}

/* Produces PushMsgReq{msgData = md, userIDs = the strings of the Lua list
 * at users_idx} records to topic, split so no record passes OpenIM's
 * 1,000,000 bytes, each with a copy of hdrs; every record is counted in
 * ho->pending and acknowledged through on_handoff_ack. Returns the number
 * of records produced; a refused produce marks ho failed and stops. */
size_t imp_handoff_produce(struct imp_worker *w, lua_State *L, int users_idx, const char *topic,
                           const struct imp_buf *key, const struct imp_buf *md,
                           rd_kafka_headers_t *hdrs, struct handoff *ho)
{
    size_t n = lua_objlen(L, users_idx), first = 1, records = 0;
    const size_t max = 1000000 - 4096; /* OpenIM's cap, minus key and headers */
    struct imp_buf rec;
    imp_buf_init(&rec);
    while (first <= n) {
        imp_buf_reset(&rec);
        imp_buf_pb_bytes(&rec, 1, md->data, md->len);
        size_t i = first;
        for (; i <= n; i++) {
            lua_rawgeti(L, users_idx, (int)i);
            size_t ul;
            const char *u = lua_tolstring(L, -1, &ul);
            size_t add = 1 + imp_pb_varint_len(ul) + ul;
            if (u && i > first && rec.len + add > max) {
                lua_pop(L, 1);
                break;
            }
            if (u) imp_buf_pb_bytes(&rec, 3, u, ul);
            lua_pop(L, 1);
        }
        first = i;
        rd_kafka_headers_t *h = hdrs ? rd_kafka_headers_copy(hdrs) : NULL;
        ho->pending++;
        int rc = imp_producer_send(w->host.producer, topic, key->data, key->len, rec.data, rec.len,
                                   h, on_handoff_ack, ho);
        if (rc != 0) {
            if (h) rd_kafka_headers_destroy(h);
            ho->pending--;
            ho->failed = 1;
            snprintf(ho->error, sizeof(ho->error), "%s", rd_kafka_err2str(rc));
            break;
        }
        records++;
    }
    imp_buf_dispose(&rec);
    return records;
}

/* The end of a produce started in a Lua call: nothing in flight (every
 * produce refused at once) answers now, else the coroutine waits. */
int imp_handoff_return(lua_State *L, struct msg *t, struct handoff *ho, const char *what)
{
    if (--ho->pending == 0) {
        int failed = ho->failed;
        char e[320];
        snprintf(e, sizeof(e), "%s: %s", what, ho->error);
        free(ho);
        lua_pushboolean(L, 0);
        if (failed) {
            lua_pushnil(L);
            lua_pushstring(L, e);
            return 3;
        }
        lua_pushboolean(L, 1);
        return 2;
    }
    t->task.waiting = 1;
    lua_pushboolean(L, 1);
    return 1;
}

/* A string field of a Lua table, or NULL. */
static char *field_str(lua_State *L, int idx, const char *name)
{
    lua_getfield(L, idx, name);
    char *v = lua_type(L, -1) == LUA_TSTRING ? (char *)lua_tostring(L, -1) : NULL;
    lua_pop(L, 1); /* the string stays alive: the table holds it */
    return v;
}

/* md = t's msgData (the bytes as consumed, t->msgdata) with the
 * offlinePushInfo the notice table at index 2 gives: {offlinePushInfo =
 * {...}} replaces it whole (unset fields empty), {title, content} set its
 * title and desc over the message's own. The new field is spliced into the
 * bytes in field order, so the rest stays byte for byte what came; the
 * decoded message is packed again only if the bytes do not scan. */
static void msgdata_with_notice(lua_State *L, struct msg *t, struct imp_buf *md)
{
    Openim__Sdkws__MsgData *m = t->req->msgdata;
    Openim__Sdkws__OfflinePushInfo info = OPENIM__SDKWS__OFFLINE_PUSH_INFO__INIT;
    Openim__Sdkws__OfflinePushInfo *saved = m->offlinepushinfo;
    char *v;
    lua_getfield(L, 2, "offlinePushInfo"); /* stays on the stack: its strings are used */
    if (lua_istable(L, -1)) {
        int at = lua_gettop(L);
        if ((v = field_str(L, at, "title"))) info.title = v;
        if ((v = field_str(L, at, "desc"))) info.desc = v;
        if ((v = field_str(L, at, "ex"))) info.ex = v;
        if ((v = field_str(L, at, "iOSPushSound"))) info.iospushsound = v;
        if ((v = field_str(L, at, "signalInfo"))) info.signalinfo = v;
        lua_getfield(L, at, "iOSBadgeCount");
        info.iosbadgecount = lua_toboolean(L, -1);
        lua_pop(L, 1);
    } else {
        if (saved) info = *saved;
        if ((v = field_str(L, 2, "title"))) info.title = v;
        if ((v = field_str(L, 2, "content"))) info.desc = v;
    }
    struct imp_buf ib;
    imp_buf_init(&ib);
    size_t ilen = openim__sdkws__offline_push_info__get_packed_size(&info);
    imp_buf_reserve(&ib, ilen);
    openim__sdkws__offline_push_info__pack(&info, (uint8_t *)ib.data);
    ib.len = ilen;
    int spliced = imp_pb_replace_field((const uint8_t *)t->msgdata.data, t->msgdata.len, 20,
                                       ib.data, ib.len, md) == 0;
    imp_buf_dispose(&ib);
    if (!spliced) {
        m->offlinepushinfo = &info;
        size_t mlen = openim__sdkws__msg_data__get_packed_size(m);
        imp_buf_reset(md);
        imp_buf_reserve(md, mlen);
        openim__sdkws__msg_data__pack(m, (uint8_t *)md->data);
        md->len = mlen;
        m->offlinepushinfo = saved;
    }
}

/* offline_handoff(users, notice?) -> true (pending) | false, nil, err
 * Produces PushMsgReq{msgData, userIDs} records to toOfflinePush for
 * users: OpenIM's key (the sorted sendID and recvID), its four headers
 * (operationID, opUserID, platform, connID, in that order, empty when the
 * message had none: tools@v0.0.50-alpha.67:mq/kafka/util.go:14-25),
 * librdkafka's fnv1a partitioner, split so no record passes 1,000,000
 * bytes. msgData is the message as consumed (status 1 → 2), as OpenIM
 * writes it (OpenIM@v3.8.3:pkg/common/storage/controller/push.go:58),
 * except that notice {offlinePushInfo = {...}} replaces its
 * offlinePushInfo (a beforeOfflinePush reply, callback.go:63-65) and a
 * policy's own notice {title, content} sets its title and desc. The
 * message resumes when every record is acknowledged, so its toPush offset
 * is stored only after that. */
int imp_lua_offline_handoff(lua_State *L)
{
    struct imp_worker *w = worker_of(L);
    struct msg *t = msg_current(L);
    if (!t || !t->req) return luaL_error(L, "offline_handoff called outside a message coroutine");
    uint64_t t0 = imp_now_ns();
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!w->host.producer || w->cfg->shadow) { /* a shadow runs its offline leg in-process */
        lua_pushboolean(L, 0);
        lua_pushnil(L);
        lua_pushstring(L, w->cfg->shadow ? "toOfflinePush: not written in shadow mode"
                                         : "toOfflinePush: no producer on this worker");
        return 3;
    }
    Openim__Sdkws__MsgData *m = t->req->msgdata;

    /* msgData as the gateways got it, or with the policy's notice */
    struct imp_buf md;
    imp_buf_init(&md);
    if (lua_istable(L, 2))
        msgdata_with_notice(L, t, &md);
    else
        imp_buf_append(&md, t->msgdata.data, t->msgdata.len);

    /* OpenIM's key: sendID and recvID sorted, joined by '_' */
    const char *a = m->sendid ? m->sendid : "", *b = m->recvid ? m->recvid : "";
    if (strcmp(a, b) > 0) {
        const char *x = a;
        a = b;
        b = x;
    }
    struct imp_buf key;
    imp_buf_init(&key);
    imp_buf_printf(&key, "%s_%s", a, b);

    /* the four headers from the message's context, as OpenIM writes them */
    rd_kafka_headers_t *made = rd_kafka_headers_new(4);
    for (int i = 0; i < 4; i++)
        rd_kafka_header_add(made, imp_md_header_names[i], -1, t->task.md[i] ? t->task.md[i] : "",
                            -1);

    struct handoff *ho = imp_handoff_new(t);
    size_t n = lua_objlen(L, 1);
    size_t records = imp_handoff_produce(w, L, 1, w->cfg->topic_offline_push, &key, &md, made, ho);
    imp_buf_dispose(&key);
    imp_buf_dispose(&md);
    rd_kafka_headers_destroy(made);
    imp_metrics_inc("impulse_offline_handoff_records_total", NULL, (int64_t)records);
    imp_metrics_inc("impulse_offline_handoff_users_total", NULL, (int64_t)n);
    imp_vm_exclude(t->task.vm, t0);
    return imp_handoff_return(L, t, ho, "toOfflinePush");
}

/* providers() -> the payload modules of this VM (name -> module), as a
 * toOfflinePush record's call gets them: a shadow (impulse run --shadow)
 * runs a message's offline leg in-process with them instead of a
 * hand-off. Cannot fail. */
int imp_lua_providers(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "impulse.providers");
    return 1;
}

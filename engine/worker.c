/*
 * Worker thread. Everything here runs on the worker's own loop; other
 * threads reach it only through its inbox (commands, gRPC completions).
 *
 * Message lifecycle:
 *   fetched ──decode──► keyed queue ──head of its key──► runnable
 *   runnable ──► coroutine: driver.handle(policy, fields, opid)
 *        route() ─(may yield on RPCs)─► push_online ─(yields on fan-out)─►
 *        returns ──► done: offset tracker, next message of the key
 * Runnable messages are started from one loop (run_ready), never by
 * recursion, so a long chain of same-key messages that finish at once
 * cannot grow the C stack.
 */
#include "worker.h"

#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "buf.h"
#include "common.h"
#include "engine.h"
#include "gateway.h"
#include "group.h"
#include "grpc.h"
#include "httpbatch.h"
#include "inbox.h"
#include "kafka.h"
#include "keyq.h"
#include "log.h"
#include "metrics.h"
#include "online.h"
#include "presence.h"
#include "producer.h"
#include "provider.h"
#include "push.pb-c.h"
#include "registry.h"
#include "strset.h"
#include "task.h"
#include "vm.h"
#include "watcher.h"

#define TASKS_KEY   IMP_VM_TASKS_KEY
#define ADOPTED_KEY IMP_VM_ADOPTED_KEY

/* Where a message came from: a toPush record, or a call to the push
 * service (PushMsg, DelUserPushToken) answered when the task ends. */
enum { K_KAFKA, K_PUSHMSG, K_DELTOKEN };

/* The two consumed topics. toPush records are routed and pushed online;
 * toOfflinePush records (PushMsgReq{msgData, userIDs}) go to the offline
 * providers. Each has its own consumer group, keyed queue and in-flight
 * count (a full stream pauses only its own partitions), and the same
 * at-least-once rules. */
enum { S_PUSH, S_OFFLINE, S_COUNT };

struct stream {
    struct imp_worker *w;
    int id;
    const char *topic, *group, *dlq; /* from the config */
    const char *label;               /* metrics: "toPush" | "toOfflinePush" */
    struct imp_consumer *consumer;
    struct imp_keyq keyq;
    int inflight;
    atomic_int assigned_once;
    atomic_int partitions;
    struct imp_metric *m_ok;
};

struct task {
    struct imp_keyq_node qnode; /* first: container of the node */
    struct task *next, *prev;   /* worker's task list */
    struct task *run_next;
    struct imp_worker *w;
    int kind;
    struct stream *s;           /* K_KAFKA: where the record came from */
    struct imp_grpc_scall *rpc; /* K_PUSHMSG, K_DELTOKEN: the call to answer */
    Openim__Push__DelUserPushTokenReq *del;
    rd_kafka_message_t *rkm;
    struct imp_msgref ref;
    Openim__Push__PushMsgReq *req;
    char *hdr[4];      /* operationID, opUserID, platform, connID */
    struct imp_vm *vm; /* the VM the message runs on, to its end */
    lua_State *co;
    int co_ref;
    int waiting;             /* yielded inside an engine call */
    int stopped;             /* over budget while waiting: finish when the call answers */
    const char *fail_reason; /* set when the message failed (dead-letter reason) */
    char *fail_error;
    int dead_lettered; /* its offset is stored when the dead letter is acked */
    uint64_t lua_ns;   /* Lua time used so far (the budget) */
    int started;
    uint64_t start_ms;
    struct imp_buf msgdata; /* MsgData re-encoded with status 2 */
    /* online push */
    struct imp_strset users;
    char **online;
    size_t nonline;
    unsigned char *online_flags; /* per user in users: online */
    struct imp_svclist *gws;
};

enum { H_OPID, H_OPUSER, H_PLATFORM, H_CONNID };
static const char *header_names[4] = {"operationID", "opUserID", "platform", "connID"};

struct chan {
    char *addr;
    struct imp_grpc_channel *ch;
};

/* A message coroutine blocked in core.wait(event) until core.signal(event)
 * or its timeout. */
struct evwait {
    ev_timer timer; /* first: the timer callback finds the struct */
    struct evwait *next, *prev;
    struct imp_worker *w;
    struct task *t;
    double event;
};

/* A push-service call waiting to reach the worker's loop. */
struct rpc_job {
    struct rpc_job *next;
    struct imp_grpc_scall *c;
    int kind;
    const uint8_t *req;
    size_t len;
};

struct imp_worker {
    struct imp_engine *e;
    const struct imp_config *cfg;
    int id;
    char client_id[96];
    pthread_t thread;
    int thread_started;
    struct ev_loop *loop;
    struct imp_inbox inbox;
    struct imp_vm *vm;      /* new messages start here */
    struct imp_vm *retired; /* replaced VMs still running messages */
    int test_mode;          /* impulse test: one task, no Kafka */
    struct stream streams[S_COUNT];
    int nstreams;                    /* S_OFFLINE too when impulse.consumeOffline */
    struct imp_producer *producer;   /* dead letters, scripts' produce */
    struct imp_api_clients *api;     /* scripts' Redis and HTTP clients */
    struct imp_httpbatch *httpbatch; /* the providers' HTTP/2 requests */
    int dead_pending;                /* dead letters sent, not acknowledged */
    struct task *tasks;
    struct task *runq_head, *runq_tail;
    int inflight; /* tasks of every stream, and calls */
    int stopping;
    int finished;
    ev_timer drain_timer;
    struct chan *chans;
    size_t nchans;
    struct imp_svclist *gw_seen; /* gateway list the channels follow */
    size_t service_rr;
    struct evwait *evwaits; /* coroutines blocked in core.wait */
    double next_event;      /* ids handed out by core.event */
    atomic_int inflight_pub;
    pthread_mutex_t rpc_lock; /* guards rpc_jobs, rpc_closed */
    struct rpc_job *rpc_jobs;
    int rpc_closed;
    struct imp_metric *m_lua_ms, *m_msg_ms;
    struct imp_metric *m_long;
};

static void run_ready(struct imp_worker *w);
static void task_resume(struct task *t, int nargs);

/* ---------- channels ---------- */

static struct imp_grpc_channel *channel_for(struct imp_worker *w, const char *addr)
{
    for (size_t i = 0; i < w->nchans; i++)
        if (strcmp(w->chans[i].addr, addr) == 0) return w->chans[i].ch;
    w->chans = imp_xrealloc(w->chans, (w->nchans + 1) * sizeof(*w->chans));
    w->chans[w->nchans].addr = imp_xstrdup(addr);
    w->chans[w->nchans].ch = imp_grpc_channel_create(addr, w->cfg->max_grpc_message);
    return w->chans[w->nchans++].ch;
}

static void channel_drop(struct imp_worker *w, const char *addr)
{
    for (size_t i = 0; i < w->nchans; i++) {
        if (strcmp(w->chans[i].addr, addr) != 0) continue;
        imp_grpc_channel_destroy(w->chans[i].ch);
        free(w->chans[i].addr);
        w->chans[i] = w->chans[--w->nchans];
        return;
    }
}

/* The current gateway list, with channels for gateways that left closed. */
static struct imp_svclist *gateways(struct imp_worker *w)
{
    struct imp_svclist *cur = imp_registry_fetch(w->e->registry, w->cfg->svc_gateway);
    if (w->gw_seen && w->gw_seen->version != cur->version) {
        for (size_t i = 0; i < w->gw_seen->n; i++) {
            int still = 0;
            for (size_t j = 0; j < cur->n && !still; j++)
                still = strcmp(w->gw_seen->addrs[i], cur->addrs[j]) == 0;
            if (!still) channel_drop(w, w->gw_seen->addrs[i]);
        }
    }
    if (w->gw_seen != cur) {
        imp_svclist_release(w->gw_seen);
        w->gw_seen = cur;
        atomic_fetch_add((_Atomic int *)&cur->refs, 1);
    }
    return cur; /* the caller owns one reference */
}

/* ---------- tasks ---------- */

/* The task of coroutine L: L is a message's own coroutine (TASKS maps it
 * to its task) or one a script created while handling it (ADOPTED maps it,
 * weakly, to the message's coroutine). A coroutine kept past its message
 * finds no task: its engine calls fail instead of touching a freed one. */
static struct task *current_task(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, TASKS_KEY);
    lua_pushthread(L);
    lua_rawget(L, -2);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_getfield(L, LUA_REGISTRYINDEX, ADOPTED_KEY);
        lua_pushthread(L);
        lua_rawget(L, -2);
        lua_remove(L, -2);
        lua_rawget(L, -2);
    }
    struct task *t = lua_touserdata(L, -1);
    lua_pop(L, 2);
    return t;
}

/* adopt(co): engine calls made inside co (a coroutine the script created)
 * belong to the current message. */
static int l_adopt(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTHREAD);
    if (!current_task(L)) return 0;
    /* the message's own coroutine: this one, or the one this was adopted by */
    lua_getfield(L, LUA_REGISTRYINDEX, TASKS_KEY);
    lua_pushthread(L);
    lua_rawget(L, -2);
    int own = !lua_isnil(L, -1);
    lua_pop(L, 2);
    lua_getfield(L, LUA_REGISTRYINDEX, ADOPTED_KEY);
    lua_pushvalue(L, 1);
    if (own) {
        lua_pushthread(L);
    } else {
        lua_pushthread(L);
        lua_rawget(L, -3);
    }
    lua_rawset(L, -3);
    lua_pop(L, 1);
    return 0;
}

static void task_grpc_md(const struct task *t, struct imp_grpc_md md[4])
{
    md[0] = (struct imp_grpc_md){"operationid", t->hdr[H_OPID]};
    md[1] = (struct imp_grpc_md){"opuserid", t->hdr[H_OPUSER]};
    md[2] = (struct imp_grpc_md){"platform", t->hdr[H_PLATFORM]};
    md[3] = (struct imp_grpc_md){"connid", t->hdr[H_CONNID]};
}

/* A retired VM (replaced by a reload) whose last message finished. */
static void retire_done(struct imp_worker *w, struct imp_vm *vm)
{
    struct imp_vm **pp = &w->retired;
    while (*pp && *pp != vm) pp = &(*pp)->next;
    if (*pp) *pp = vm->next;
    imp_info(NULL, "worker %d: scripts %s closed (their last message is done)", w->id, vm->hash);
    imp_vm_destroy(vm);
}

static void task_free(struct task *t)
{
    struct imp_worker *w = t->w;
    if (t->co_ref != LUA_NOREF) {
        lua_State *L = t->vm->L;
        lua_getfield(L, LUA_REGISTRYINDEX, TASKS_KEY);
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->co_ref);
        lua_pushnil(L);
        lua_rawset(L, -3);
        lua_pop(L, 1);
        luaL_unref(L, LUA_REGISTRYINDEX, t->co_ref);
    }
    if (t->req) openim__push__push_msg_req__free_unpacked(t->req, NULL);
    if (t->del) openim__push__del_user_push_token_req__free_unpacked(t->del, NULL);
    if (t->rkm) rd_kafka_message_destroy(t->rkm);
    for (int i = 0; i < 4; i++) free(t->hdr[i]);
    imp_buf_dispose(&t->msgdata);
    free(t->fail_error);
    imp_strset_dispose(&t->users);
    free(t->online);
    free(t->online_flags);
    imp_svclist_release(t->gws);
    if (t->prev)
        t->prev->next = t->next;
    else
        w->tasks = t->next;
    if (t->next) t->next->prev = t->prev;
    if (t->vm && --t->vm->tasks == 0 && t->vm != w->vm) retire_done(w, t->vm);
    free(t);
}

static void maybe_finish(struct imp_worker *w);

/* Queues a message that may start now (the head of its key). */
static void runq_push(struct imp_worker *w, struct task *t)
{
    t->run_next = NULL;
    if (w->runq_tail)
        w->runq_tail->run_next = t;
    else
        w->runq_head = t;
    w->runq_tail = t;
}

static const char *const rpc_names[] = {"", "PushMsg", "DelUserPushToken"};

/* A push-service call's task ended: answer it (an empty reply message, or
 * INTERNAL with the failure) and count it. */
static void rpc_answer(struct task *t)
{
    char labels[96], detail[600];
    const char *result = t->fail_reason ? t->fail_reason : "ok";
    snprintf(labels, sizeof(labels), "method=\"%s\",result=\"%s\"", rpc_names[t->kind], result);
    imp_metrics_inc("impulse_rpc_total", labels, 1);
    if (t->fail_reason) {
        int bad = strcmp(t->fail_reason, "bad_request") == 0;
        snprintf(detail, sizeof(detail), "%s: %s", t->fail_reason,
                 t->fail_error ? t->fail_error : "");
        imp_grpc_scall_reply(t->rpc, bad ? 3 /* INVALID_ARGUMENT */ : 13 /* INTERNAL */, detail,
                             NULL, 0);
    } else {
        imp_grpc_scall_reply(t->rpc, 0, "", NULL, 0);
    }
    t->rpc = NULL;
}

/* The message is fully handled: store its offset, release the next
 * message of its key, resume fetching when below the low-water mark. */
static void task_done(struct task *t)
{
    struct imp_worker *w = t->w;
    struct stream *s = t->kind == K_KAFKA ? t->s : NULL;
    if (t->kind != K_KAFKA) {
        rpc_answer(t);
    } else if (s->consumer && !t->dead_lettered) {
        /* a dead-lettered message's offset waits for the dead letter's ack */
        imp_consumer_done(s->consumer, t->ref);
    }
    if (t->started && !w->test_mode) {
        imp_metric_observe(w->m_lua_ms, t->lua_ns / 1e6);
        imp_metric_observe(w->m_msg_ms, (double)(imp_now_ms() - t->start_ms));
    }
    if (t->started && s) {
        struct imp_keyq_node *next = imp_keyq_pop(&s->keyq, &t->qnode);
        if (next) runq_push(w, (struct task *)next);
    }
    task_free(t);
    w->inflight--;
    atomic_store(&w->inflight_pub, w->inflight);
    if (s) {
        s->inflight--;
        if (s->consumer && imp_consumer_paused(s->consumer) && !w->stopping &&
            s->inflight <= w->cfg->max_inflight / 2)
            imp_consumer_resume(s->consumer);
    }
    maybe_finish(w);
}

static const char *opid_of(const struct task *t) { return t->hdr[H_OPID] ? t->hdr[H_OPID] : ""; }

/* A new task of w, in its task list and in-flight count. */
static struct task *task_new(struct imp_worker *w)
{
    struct task *t = imp_xcalloc(1, sizeof(*t));
    t->w = w;
    t->co_ref = LUA_NOREF;
    imp_buf_init(&t->msgdata);
    imp_strset_init(&t->users);
    t->next = w->tasks;
    if (w->tasks) w->tasks->prev = t;
    w->tasks = t;
    w->inflight++;
    atomic_store(&w->inflight_pub, w->inflight);
    return t;
}

/* The task's coroutine, on its VM, registered (registry ref, and the
 * tasks table that maps it back to t). */
static void task_new_co(struct task *t)
{
    lua_State *L = t->vm->L;
    t->co = lua_newthread(L);
    t->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, LUA_REGISTRYINDEX, TASKS_KEY);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->co_ref);
    lua_pushlightuserdata(L, t);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

/* Pushes the decoded message as a plain table of fields onto L. */
static void push_fields(lua_State *L, const struct task *t)
{
    const Openim__Sdkws__MsgData *m = t->req->msgdata;
    lua_createtable(L, 0, 28);
#define S(name, v) (lua_pushstring(L, (v) ? (v) : ""), lua_setfield(L, -2, name))
#define I(name, v) (lua_pushnumber(L, (lua_Number)(v)), lua_setfield(L, -2, name))
    S("sendID", m->sendid);
    S("recvID", m->recvid);
    S("groupID", m->groupid);
    S("clientMsgID", m->clientmsgid);
    S("serverMsgID", m->servermsgid);
    I("senderPlatformID", m->senderplatformid);
    S("senderNickname", m->sendernickname);
    S("senderFaceURL", m->senderfaceurl);
    I("sessionType", m->sessiontype);
    I("msgFrom", m->msgfrom);
    I("contentType", m->contenttype);
    lua_pushlstring(L, (const char *)m->content.data, m->content.len);
    lua_setfield(L, -2, "content");
    I("seq", m->seq);
    I("sendTime", m->sendtime);
    I("createTime", m->createtime);
    I("status", m->status);
    lua_pushboolean(L, m->isread);
    lua_setfield(L, -2, "isRead");
    lua_createtable(L, 0, (int)m->n_options);
    for (size_t i = 0; i < m->n_options; i++) {
        if (!m->options[i]->key) continue;
        lua_pushboolean(L, m->options[i]->value);
        lua_setfield(L, -2, m->options[i]->key);
    }
    lua_setfield(L, -2, "options");
    if (m->offlinepushinfo) {
        const Openim__Sdkws__OfflinePushInfo *o = m->offlinepushinfo;
        lua_createtable(L, 0, 6);
        S("title", o->title);
        S("desc", o->desc);
        S("ex", o->ex);
        S("iOSPushSound", o->iospushsound);
        lua_pushboolean(L, o->iosbadgecount);
        lua_setfield(L, -2, "iOSBadgeCount");
        S("signalInfo", o->signalinfo);
        lua_setfield(L, -2, "offlinePushInfo");
    }
    lua_createtable(L, (int)m->n_atuseridlist, 0);
    for (size_t i = 0; i < m->n_atuseridlist; i++) {
        lua_pushstring(L, m->atuseridlist[i] ? m->atuseridlist[i] : "");
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "atUserIDList");
    S("attachedInfo", m->attachedinfo);
    S("ex", m->ex);
    S("conversationID", t->req->conversationid);
#undef S
#undef I
}

/* The message's coroutine, registered as a task, with driver.handle and
 * the policy pushed on it. */
static void task_coroutine(struct task *t)
{
    task_new_co(t);
    lua_rawgeti(t->co, LUA_REGISTRYINDEX, t->vm->handle_ref);
    lua_rawgeti(t->co, LUA_REGISTRYINDEX, t->vm->policy_ref);
}

/* Pushes driver.handle's call table {op = op, users = the request's
 * userIDs} on the task's coroutine. */
static void push_call(struct task *t, const char *op)
{
    lua_State *co = t->co;
    lua_createtable(co, 0, 3);
    lua_pushstring(co, op);
    lua_setfield(co, -2, "op");
    lua_createtable(co, (int)t->req->n_userids, 0);
    for (size_t i = 0; i < t->req->n_userids; i++) {
        lua_pushstring(co, t->req->userids[i] ? t->req->userids[i] : "");
        lua_rawseti(co, -2, (int)i + 1);
    }
    lua_setfield(co, -2, "users");
}

/* Starts a runnable message: coroutine running driver.handle. */
static void task_start(struct task *t)
{
    struct imp_worker *w = t->w;
    t->vm = w->vm; /* a reload from now on does not move this message */
    t->vm->tasks++;

    t->started = 1;
    t->start_ms = imp_now_ms();
    if (t->kind == K_DELTOKEN) {
        task_coroutine(t);
        lua_pushnil(t->co);
        lua_pushstring(t->co, opid_of(t));
        lua_createtable(t->co, 0, 3);
        lua_pushliteral(t->co, "del_push_token");
        lua_setfield(t->co, -2, "op");
        lua_pushstring(t->co, t->del->userid ? t->del->userid : "");
        lua_setfield(t->co, -2, "userID");
        lua_pushinteger(t->co, t->del->platformid);
        lua_setfield(t->co, -2, "platformID");
        task_resume(t, 4);
        return;
    }
    Openim__Sdkws__MsgData *m = t->req->msgdata;
    if (t->kind == K_KAFKA && t->s->id == S_OFFLINE) {
        /* a toOfflinePush record: its users, and the payload modules */
        task_coroutine(t);
        push_fields(t->co, t);
        lua_pushstring(t->co, opid_of(t));
        push_call(t, "offline");
        lua_getfield(t->co, LUA_REGISTRYINDEX, "impulse.providers");
        lua_setfield(t->co, -2, "providers");
        task_resume(t, 4);
        return;
    }
    if (m->status == 1) m->status = 2; /* sending → sent, as OpenIM does */
    int64_t age = (int64_t)imp_wall_ms() - m->sendtime;
    if (m->sendtime > 0 && age > w->cfg->long_time_push_ms) imp_metric_add(w->m_long, 1);
    size_t len = openim__sdkws__msg_data__get_packed_size(m);
    imp_buf_reserve(&t->msgdata, len);
    openim__sdkws__msg_data__pack(m, (uint8_t *)t->msgdata.data);
    t->msgdata.len = len;

    task_coroutine(t);
    push_fields(t->co, t);
    lua_pushstring(t->co, opid_of(t));
    if (t->kind == K_PUSHMSG) { /* the users are given: no route() */
        push_call(t, "push");
        task_resume(t, 4);
        return;
    }
    task_resume(t, 3);
}

static void log_failure(struct task *t, const char *what, const char *detail)
{
    struct imp_buf b;
    const Openim__Sdkws__MsgData *m = t->req ? t->req->msgdata : NULL;
    imp_buf_init(&b);
    imp_buf_puts(&b, "\"error\":");
    imp_buf_json_cstr(&b, detail);
    if (m) {
        imp_buf_puts(&b, ",\"clientMsgID\":");
        imp_buf_json_cstr(&b, m->clientmsgid);
    }
    if (t->kind != K_KAFKA)
        imp_buf_printf(&b, ",\"rpc\":\"%s\"", rpc_names[t->kind]);
    else
        imp_buf_printf(&b, ",\"topic\":\"%s\",\"partition\":%d,\"offset\":%lld", t->s->label,
                       (int)t->ref.partition, t->rkm ? (long long)t->rkm->offset : -1LL);
    imp_log_fields(IMP_LOG_ERROR, opid_of(t), what, b.data);
    imp_buf_dispose(&b);
}

/* ---------- failures and dead letters ---------- */

/* A failed message: logged with its operationID, counted by reason, and
 * remembered for the dead letter. */
static void task_fail(struct task *t, const char *reason, const char *what, const char *detail)
{
    struct imp_worker *w = t->w;
    char labels[96];
    log_failure(t, what, detail);
    (void)w;
    if (t->kind == K_KAFKA) { /* calls are counted when answered */
        snprintf(labels, sizeof(labels), "topic=\"%s\",result=\"%s\"", t->s->label, reason);
        imp_metrics_inc("impulse_messages_total", labels, 1);
    }
    t->fail_reason = reason;
    free(t->fail_error);
    t->fail_error = imp_xstrdup(detail);
}

struct dead {
    ev_timer retry;
    struct imp_worker *w;
    struct stream *s;
    struct imp_msgref ref;
    rd_kafka_message_t *rkm; /* the original record */
    const char *reason;
    char *error;
    int attempts;
};

static void dead_send(struct dead *d);

static void dead_free(struct dead *d)
{
    struct imp_worker *w = d->w;
    rd_kafka_message_destroy(d->rkm);
    free(d->error);
    free(d);
    w->dead_pending--;
    maybe_finish(w);
}

static void on_dead_ack(void *arg, int err, const char *errstr)
{
    struct dead *d = arg;
    struct imp_worker *w = d->w;
    struct stream *s = d->s;
    char labels[128];
    if (err) {
        int delay = d->attempts < 6 ? 500 << d->attempts : 30000;
        imp_warn(NULL,
                 "dead letter to %s failed (%s); retrying in %d ms; the offset of "
                 "%s[%d]@%lld waits",
                 s->dlq, errstr, delay, s->topic, (int)d->ref.partition, (long long)d->rkm->offset);
        snprintf(labels, sizeof(labels), "topic=\"%s\",result=\"retry\"", s->dlq);
        imp_metrics_inc("impulse_dead_letters_total", labels, 1);
        ev_timer_set(&d->retry, delay / 1000.0, 0.);
        ev_timer_start(w->loop, &d->retry);
        return;
    }
    snprintf(labels, sizeof(labels), "topic=\"%s\",result=\"ok\"", s->dlq);
    imp_metrics_inc("impulse_dead_letters_total", labels, 1);
    if (s->consumer) imp_consumer_done(s->consumer, d->ref);
    dead_free(d);
}

static void on_dead_retry(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    dead_send((struct dead *)tm);
}

static void dead_send(struct dead *d)
{
    struct imp_worker *w = d->w;
    rd_kafka_headers_t *orig = NULL, *h;
    char origin[512];
    d->attempts++;
    /* the original headers, in order, then the failure (DLQ only: a fifth
     * header on a topic openim-push reads would crash it) */
    if (rd_kafka_message_headers(d->rkm, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR && orig)
        h = rd_kafka_headers_copy(orig);
    else
        h = rd_kafka_headers_new(4);
    snprintf(origin, sizeof(origin), "%s/%d/%lld", d->s->topic, (int)d->ref.partition,
             (long long)d->rkm->offset);
    rd_kafka_header_add(h, "impulse-reason", -1, d->reason, -1);
    rd_kafka_header_add(h, "impulse-error", -1, d->error, (ssize_t)IMP_MIN(strlen(d->error), 4000));
    rd_kafka_header_add(h, "impulse-origin", -1, origin, -1);
    int rc = w->producer ? imp_producer_send(w->producer, d->s->dlq, d->rkm->key, d->rkm->key_len,
                                             d->rkm->payload, d->rkm->len, h, on_dead_ack, d)
                         : -1;
    if (rc != 0) {
        rd_kafka_headers_destroy(h);
        on_dead_ack(d, rc ? rc : -1, w->producer ? rd_kafka_err2str(rc) : "no producer");
    }
}

/* Sends the failed message t to the dead-letter topic; its offset is
 * stored only once the dead letter is acknowledged (task_done skips it). */
static void dead_letter(struct task *t)
{
    struct imp_worker *w = t->w;
    if (!t->fail_reason || !t->rkm) return;
    struct dead *d = imp_xcalloc(1, sizeof(*d));
    d->w = w;
    d->s = t->s;
    d->ref = t->ref;
    d->rkm = t->rkm;
    t->rkm = NULL; /* the dead letter owns the record now */
    d->reason = t->fail_reason;
    d->error = imp_xstrdup(t->fail_error ? t->fail_error : "");
    ev_timer_init(&d->retry, on_dead_retry, 0., 0.);
    t->dead_lettered = 1;
    w->dead_pending++;
    dead_send(d);
}

static void task_resume(struct task *t, int nargs)
{
    struct imp_worker *w = t->w;
    char err[4096];
    if (t->stopped) {
        /* stopped while an engine call was in flight: that call's answer
         * has come back; nothing is resumed */
        lua_settop(t->co, 0);
        dead_letter(t);
        task_done(t);
        return;
    }
    t->waiting = 0;
    int st = imp_vm_resume(t->vm, t->co, nargs, &t->lua_ns, err, sizeof(err));
    if (st == 1) {
        if (t->waiting) return;
        task_fail(t, "script_error", "script error", "the policy yielded outside an engine call");
    } else if (st == 0) {
        if (lua_gettop(t->co) >= 2 && lua_isnil(t->co, 1)) {
            const char *e = lua_tostring(t->co, 2);
            if (t->kind == K_KAFKA && t->s->id == S_OFFLINE)
                task_fail(t, "push_failed", "offline push failed", e ? e : "(no reason)");
            else
                task_fail(t, "route_failed", "route failed", e ? e : "(no reason)");
        } else if (t->kind == K_KAFKA) {
            imp_metric_add(t->s->m_ok, 1);
        }
    } else if (st == IMP_ETIMEDOUT) {
        task_fail(t, "script_budget", "script stopped", err);
        if (t->waiting) { /* the engine call in flight still has to answer */
            t->stopped = 1;
            return;
        }
    } else if (st == IMP_ENOMEM) {
        task_fail(t, "script_memory", "script stopped", err);
        lua_gc(t->vm->L, LUA_GCCOLLECT, 0);
        /* an allocation failed somewhere inside the scripts' state: start
         * new messages on fresh VMs (this one finishes its messages) */
        if (w->e->watcher) imp_watcher_reload(w->e->watcher, "out of memory");
    } else if (w->test_mode) {
        /* busted ends a failed run by raising (its exit() under LuaJIT) */
        if (!strstr(err, "error object is not a string")) fprintf(stderr, "%s\n", err);
    } else {
        task_fail(t, "script_error", "script error", err);
    }
    if (t->fail_reason) dead_letter(t);
    task_done(t);
}

static void run_ready(struct imp_worker *w)
{
    while (w->runq_head) {
        struct task *t = w->runq_head;
        w->runq_head = t->run_next;
        if (!w->runq_head) w->runq_tail = NULL;
        task_start(t);
    }
}

/* ---------- Kafka ---------- */

static char *header_dup(rd_kafka_headers_t *h, const char *name)
{
    const void *v;
    size_t n;
    if (!h || rd_kafka_header_get_last(h, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR || !v)
        return NULL;
    return imp_xstrndup(v, n);
}

static void on_message(void *arg, rd_kafka_message_t *m, struct imp_msgref ref)
{
    struct stream *s = arg;
    struct imp_worker *w = s->w;
    struct task *t = task_new(w);
    rd_kafka_headers_t *hdrs = NULL;

    t->s = s;
    t->rkm = m;
    t->ref = ref;
    s->inflight++;

    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR)
        for (int i = 0; i < 4; i++) t->hdr[i] = header_dup(hdrs, header_names[i]);

    t->req = openim__push__push_msg_req__unpack(NULL, m->len, m->payload);
    if (!t->req || !t->req->msgdata) {
        char why[128];
        snprintf(why, sizeof(why), "the record is not a PushMsgReq%s (%zu bytes)",
                 t->req ? " with msgData" : "", m->len);
        task_fail(t, "bad_record", "bad record", why);
        dead_letter(t);
        task_done(t);
        return;
    }
    if (imp_keyq_push(&s->keyq, m->key, m->key_len, &t->qnode)) runq_push(w, t);
    if (s->inflight >= w->cfg->max_inflight) imp_consumer_pause(s->consumer);
    run_ready(w);
}

static void on_assigned(void *arg, int n)
{
    struct stream *s = arg;
    atomic_store(&s->partitions, n);
    atomic_store(&s->assigned_once, 1);
}

/* ---------- push-service calls ---------- */

static void rpc_refuse(struct imp_grpc_scall *c, int kind, const char *why)
{
    char labels[96];
    snprintf(labels, sizeof(labels), "method=\"%s\",result=\"unavailable\"", rpc_names[kind]);
    imp_metrics_inc("impulse_rpc_total", labels, 1);
    imp_grpc_scall_reply(c, 14 /* UNAVAILABLE */, why, NULL, 0);
}

/* A call reached the loop: it becomes a task like a toPush record, except
 * that it has no Kafka key (calls are not ordered among themselves: the
 * caller waits for each) and its end answers the call. */
static void rpc_start(struct imp_worker *w, struct rpc_job *j)
{
    static const char *const md_keys[4] = {"operationid", "opuserid", "platform", "connid"};
    char v[512];
    if (w->stopping) {
        rpc_refuse(j->c, j->kind, "impulse is stopping");
        return;
    }
    struct task *t = task_new(w);
    t->kind = j->kind;
    t->rpc = j->c;
    for (int i = 0; i < 4; i++) {
        const char *val = imp_grpc_scall_md(j->c, md_keys[i], v, sizeof(v));
        if (val) t->hdr[i] = imp_xstrdup(val);
    }
    const char *bad = NULL;
    if (t->kind == K_PUSHMSG) {
        t->req = openim__push__push_msg_req__unpack(NULL, j->len, j->req);
        if (!t->req || !t->req->msgdata) bad = "the request is not a PushMsgReq with msgData";
    } else {
        t->del = openim__push__del_user_push_token_req__unpack(NULL, j->len, j->req);
        if (!t->del)
            bad = "the request is not a DelUserPushTokenReq";
        else if (!t->del->userid || !t->del->userid[0])
            bad = "userID is empty";
    }
    if (bad) {
        task_fail(t, "bad_request", "bad request", bad);
        task_done(t);
        return;
    }
    if (t->kind == K_PUSHMSG && t->req->n_userids == 0) { /* nobody to push to */
        task_done(t);
        return;
    }
    runq_push(w, t);
    run_ready(w);
}

static void cmd_rpc(void *arg)
{
    struct imp_worker *w = arg;
    pthread_mutex_lock(&w->rpc_lock);
    struct rpc_job *jobs = w->rpc_jobs, *rev = NULL;
    w->rpc_jobs = NULL;
    pthread_mutex_unlock(&w->rpc_lock);
    while (jobs) { /* oldest first */
        struct rpc_job *n = jobs->next;
        jobs->next = rev;
        rev = jobs;
        jobs = n;
    }
    while (rev) {
        struct rpc_job *n = rev->next;
        rpc_start(w, rev);
        free(rev);
        rev = n;
    }
}

int imp_worker_rpc(struct imp_worker *w, struct imp_grpc_scall *c, int kind, const uint8_t *req,
                   size_t len)
{
    struct rpc_job *j = imp_xcalloc(1, sizeof(*j));
    j->c = c;
    j->kind = kind;
    j->req = req;
    j->len = len;
    pthread_mutex_lock(&w->rpc_lock);
    if (w->rpc_closed) {
        pthread_mutex_unlock(&w->rpc_lock);
        free(j);
        return IMP_ECLOSED;
    }
    int first = w->rpc_jobs == NULL;
    j->next = w->rpc_jobs;
    w->rpc_jobs = j;
    pthread_mutex_unlock(&w->rpc_lock);
    if (first) imp_inbox_post(&w->inbox, cmd_rpc, w);
    return 0;
}

/* The worker is ending: calls not answered yet get UNAVAILABLE (the caller
 * can retry on another node); later ones are refused by imp_worker_rpc. */
static void rpc_close(struct imp_worker *w)
{
    pthread_mutex_lock(&w->rpc_lock);
    w->rpc_closed = 1;
    struct rpc_job *jobs = w->rpc_jobs;
    w->rpc_jobs = NULL;
    pthread_mutex_unlock(&w->rpc_lock);
    while (jobs) {
        struct rpc_job *n = jobs->next;
        rpc_refuse(jobs->c, jobs->kind, "impulse is stopping");
        free(jobs);
        jobs = n;
    }
    for (struct task *t = w->tasks; t; t = t->next) {
        if (!t->rpc) continue;
        rpc_refuse(t->rpc, t->kind, "impulse stopped before the call finished");
        t->rpc = NULL;
    }
}

/* ---------- task.h: what engine calls need ---------- */

struct task *imp_task_current(lua_State *L) { return current_task(L); }
struct imp_worker *imp_task_worker(struct task *t) { return t->w; }
struct imp_vm *imp_task_vm(struct task *t) { return t->vm; }
lua_State *imp_task_co(struct task *t) { return t->co; }
const char *imp_task_opid(struct task *t) { return opid_of(t); }
void imp_task_grpc_md(struct task *t, struct imp_grpc_md md[4]) { task_grpc_md(t, md); }
void imp_task_wait(struct task *t) { t->waiting = 1; }

void imp_task_resume(struct task *t, int nargs)
{
    struct imp_worker *w = t->w;
    task_resume(t, nargs);
    run_ready(w);
}

struct imp_engine *imp_worker_engine(struct imp_worker *w) { return w->e; }
const struct imp_config *imp_worker_config(struct imp_worker *w) { return w->cfg; }
struct imp_inbox *imp_worker_inbox(struct imp_worker *w) { return &w->inbox; }
struct ev_loop *imp_worker_loop(struct imp_worker *w) { return w->loop; }
struct imp_grpc_channel *imp_worker_channel(struct imp_worker *w, const char *addr)
{
    return channel_for(w, addr);
}

struct imp_api_clients **imp_worker_api(struct imp_worker *w) { return &w->api; }
struct imp_httpbatch **imp_worker_httpbatch(struct imp_worker *w) { return &w->httpbatch; }
struct imp_producer *imp_worker_producer(struct imp_worker *w) { return w->producer; }

struct imp_grpc_channel *imp_worker_service(struct imp_worker *w, const char *name)
{
    struct imp_svclist *l = imp_registry_fetch(w->e->registry, name);
    struct imp_grpc_channel *ch = NULL;
    if (l->n) ch = channel_for(w, l->addrs[w->service_rr++ % l->n]);
    imp_svclist_release(l);
    return ch;
}

/* ---------- Lua: impulse.core ---------- */

static struct imp_worker *self(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

/* log(level, operationID, text) */
static int l_log(lua_State *L)
{
    const char *lv = luaL_checkstring(L, 1);
    const char *opid = luaL_optstring(L, 2, NULL);
    const char *text = luaL_checkstring(L, 3);
    int level = imp_log_level_parse(lv);
    if (level < 0) return luaL_error(L, "bad log level '%s'", lv);
    struct imp_buf b;
    imp_buf_init(&b);
    imp_buf_printf(&b, "\"worker\":%d,\"source\":\"script\"", self(L)->id);
    imp_log_fields(level, opid, text, b.data);
    imp_buf_dispose(&b);
    return 0;
}

static void json_users(struct imp_buf *b, char *const *users, size_t n, size_t cap)
{
    imp_buf_putc(b, '[');
    for (size_t i = 0; i < n && i < cap; i++) {
        if (i) imp_buf_putc(b, ',');
        imp_buf_json_cstr(b, users[i]);
    }
    imp_buf_putc(b, ']');
}

/* One line per message: who it was for, who was online, which gateways
 * were called and whom they reached. Lists are capped (routeLogUsers). */
static void log_route(struct task *t, const struct imp_fanout *f)
{
    const Openim__Sdkws__MsgData *m = t->req->msgdata;
    size_t cap = (size_t)t->w->cfg->route_log_users;
    struct imp_buf b;
    char **tmp;
    size_t n;

    if (imp_log_level() > IMP_LOG_INFO) return;
    imp_buf_init(&b);
    imp_buf_puts(&b, "\"clientMsgID\":");
    imp_buf_json_cstr(&b, m->clientmsgid);
    imp_buf_printf(&b, ",\"sessionType\":%d,\"contentType\":%d,\"sendID\":", m->sessiontype,
                   m->contenttype);
    imp_buf_json_cstr(&b, m->sendid);
    imp_buf_puts(&b, ",\"recvID\":");
    imp_buf_json_cstr(&b, m->recvid);
    imp_buf_puts(&b, ",\"groupID\":");
    imp_buf_json_cstr(&b, m->groupid);
    imp_buf_printf(&b, ",\"recipients\":%zu,\"online\":", t->users.n);
    json_users(&b, t->online, t->nonline, cap);
    tmp = imp_xcalloc(t->users.n ? t->users.n : 1, sizeof(char *));
    n = 0;
    for (size_t i = 0; i < t->users.n; i++)
        if (!t->online_flags[i]) tmp[n++] = t->users.items[i];
    imp_buf_puts(&b, ",\"offline\":");
    json_users(&b, tmp, n, cap);
    n = 0;
    for (size_t i = 0; i < t->nonline; i++)
        if (f->reached[i]) tmp[n++] = t->online[i];
    imp_buf_puts(&b, ",\"reached\":");
    json_users(&b, tmp, n, cap);
    free(tmp);
    imp_buf_puts(&b, ",\"gateways\":[");
    for (size_t g = 0; g < f->ngw; g++) {
        if (g) imp_buf_putc(&b, ',');
        imp_buf_puts(&b, "{\"addr\":");
        imp_buf_json_cstr(&b, f->gw[g].addr);
        imp_buf_printf(&b, ",\"calls\":%d,\"reached\":%zu", f->gw[g].calls, f->gw[g].reached);
        if (f->gw[g].failed) {
            imp_buf_puts(&b, ",\"error\":");
            imp_buf_json_cstr(&b, f->gw[g].error);
        }
        imp_buf_putc(&b, '}');
    }
    imp_buf_printf(&b, "],\"ms\":%llu,\"luaMs\":%.2f",
                   (unsigned long long)(imp_now_ms() - t->start_ms), t->lua_ns / 1e6);
    imp_log_fields(IMP_LOG_INFO, opid_of(t), "push", b.data);
    imp_buf_dispose(&b);
}

static void on_fanout(struct imp_fanout *f, void *arg)
{
    struct task *t = arg;
    struct imp_worker *w = t->w;
    lua_State *co = t->co;

    log_route(t, f);
    imp_metrics_inc("impulse_online_push_users_total", "result=\"reached\"", (int64_t)f->nreached);
    imp_metrics_inc("impulse_online_push_users_total", "result=\"not_reached\"",
                    (int64_t)(t->users.n - f->nreached));

    /* result = { recipients = n, reached = {...}, not_reached = {...} } */
    lua_createtable(co, 0, 3);
    lua_pushnumber(co, (lua_Number)t->users.n);
    lua_setfield(co, -2, "recipients");
    lua_createtable(co, (int)f->nreached, 0);
    lua_createtable(co, (int)(t->users.n - f->nreached), 0);
    int nr = 0, nn = 0;
    size_t oi = 0;
    for (size_t i = 0; i < t->users.n; i++) {
        const char *u = t->users.items[i];
        int reached = 0;
        /* online[] preserves users' order, so one pass matches them */
        if (oi < t->nonline && t->online[oi] == u) reached = f->reached[oi++];
        lua_pushstring(co, u);
        lua_rawseti(co, reached ? -3 : -2, reached ? ++nr : ++nn);
    }
    lua_setfield(co, -3, "not_reached");
    lua_setfield(co, -2, "reached");
    imp_fanout_destroy(f);
    task_resume(t, 1);
    run_ready(w);
}

/* push_online(users) -> true (pending): the online push of the current
 * message to users (a list of strings; duplicates are pushed once). */
static void start_fanout(struct task *t)
{
    struct imp_worker *w = t->w;
    t->nonline = 0;
    for (size_t i = 0; i < t->users.n; i++)
        if (t->online_flags[i]) t->online[t->nonline++] = t->users.items[i];
    t->gws = gateways(w);
    struct imp_grpc_channel **chs = imp_xcalloc(t->gws->n ? t->gws->n : 1, sizeof(*chs));
    for (size_t g = 0; g < t->gws->n; g++) chs[g] = channel_for(w, t->gws->addrs[g]);
    struct imp_grpc_md md[4];
    task_grpc_md(t, md);
    struct imp_fanout_req req = {
        .msgdata = t->msgdata.data,
        .msgdata_len = t->msgdata.len,
        .users = t->online,
        .nusers = t->nonline,
        .channels = chs,
        .addrs = t->gws->addrs,
        .nchannels = t->gws->n,
        .timeout_ms = w->cfg->gateway_timeout_ms,
        .max_request = (size_t)w->cfg->max_grpc_message - 1024,
        .md = md,
        .nmd = 4,
        .inbox = &w->inbox,
        .done = on_fanout,
        .arg = t,
    };
    if (!imp_fanout_start(&req)) {
        /* the inbox is closed: the worker is past its drain deadline */
        imp_warn(opid_of(t), "online push abandoned: the worker is stopping");
    }
    free(chs);
}

/* push_online(users) -> true (pending): the online push of the current
 * message to users (a list of strings; duplicates are pushed once). The
 * coroutine resumes with { recipients, reached, not_reached }. */
static int l_push_online(lua_State *L)
{
    struct imp_worker *w = self(L);
    struct task *t = current_task(L);
    if (!t || !t->req) return luaL_error(L, "push_online called outside a message coroutine");
    uint64_t t0 = imp_now_ns();
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t n = lua_objlen(L, 1);
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, (int)i);
        size_t len;
        const char *u = lua_tolstring(L, -1, &len);
        if (u && len) imp_strset_add(&t->users, u, len);
        lua_pop(L, 1);
    }
    t->online = imp_xcalloc(t->users.n ? t->users.n : 1, sizeof(char *));
    t->online_flags = imp_xcalloc(t->users.n ? t->users.n : 1, 1);
    t->waiting = 1;
    if (imp_presence_lookup(t, t->users.items, t->users.n, t->online_flags, start_fanout) == 0)
        start_fanout(t);
    imp_vm_exclude(t->vm, t0);
    (void)w;
    lua_pushboolean(L, 1);
    return 1;
}

/* log_level() -> "debug" | "info" | "warn" | "error" (fixed at start) */
static int l_log_level(lua_State *L)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    int lv = imp_log_level();
    lua_pushstring(L, names[lv >= 0 && lv < 4 ? lv : 1]);
    return 1;
}

/* log_fields(level, operationID, msg, json) -- json: an encoded object whose
 * members become fields of the log line */
static int l_log_fields(lua_State *L)
{
    const char *lv = luaL_checkstring(L, 1);
    const char *opid = luaL_optstring(L, 2, NULL);
    const char *msg = luaL_checkstring(L, 3);
    size_t len;
    const char *json = luaL_optlstring(L, 4, "{}", &len);
    int level = imp_log_level_parse(lv);
    if (level < 0) return luaL_error(L, "bad log level '%s'", lv);
    struct imp_buf b;
    imp_buf_init(&b);
    imp_buf_printf(&b, "\"worker\":%d", self(L)->id);
    if (len > 2 && json[0] == '{' && json[len - 1] == '}') {
        imp_buf_putc(&b, ',');
        imp_buf_append(&b, json + 1, len - 2);
    }
    imp_log_fields(level, opid, msg, b.data);
    imp_buf_dispose(&b);
    return 0;
}

/* ---------- the offline hand-off ---------- */

struct handoff {
    struct task *t;
    int pending; /* records not yet acknowledged */
    int failed;
    char error[256];
};

static void on_handoff_ack(void *arg, int err, const char *errstr)
{
    struct handoff *ho = arg;
    if (err && !ho->failed) {
        ho->failed = 1;
        snprintf(ho->error, sizeof(ho->error), "%s", errstr);
    }
    if (--ho->pending > 0) return;
    struct task *t = ho->t;
    lua_State *co = t->co;
    if (ho->failed) {
        lua_pushnil(co);
        lua_pushfstring(co, "toOfflinePush: %s", ho->error);
        imp_metrics_inc("group_chat_msg_process_failed_total", NULL, 1);
    } else {
        lua_pushboolean(co, 1);
        lua_pushnil(co);
    }
    struct imp_worker *w = t->w; /* t may be freed by the resume */
    free(ho);
    task_resume(t, 2);
    run_ready(w);
}

/* Produces PushMsgReq{msgData = md, userIDs = the strings of the Lua list
 * at users_idx} records to topic, split so no record passes OpenIM's
 * 1,000,000 bytes, each with a copy of hdrs; every record is counted in
 * ho->pending and acknowledged through on_handoff_ack. Returns the number
 * of records produced; a refused produce marks ho failed and stops. */
static size_t produce_user_records(struct imp_worker *w, lua_State *L, int users_idx,
                                   const char *topic, const struct imp_buf *key,
                                   const struct imp_buf *md, rd_kafka_headers_t *hdrs,
                                   struct handoff *ho)
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
        int rc = imp_producer_send(w->producer, topic, key->data, key->len, rec.data, rec.len, h,
                                   on_handoff_ack, ho);
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
static int handoff_return(lua_State *L, struct task *t, struct handoff *ho, const char *what)
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
    t->waiting = 1;
    lua_pushboolean(L, 1);
    return 1;
}

/* offline_handoff(users, notice?) -> true (pending) | false, nil, err
 * Produces PushMsgReq{msgData, userIDs} records to toOfflinePush for
 * users: OpenIM's key (the sorted sendID and recvID), its four headers
 * copied, librdkafka's fnv1a partitioner, split so no record passes
 * 1,000,000 bytes. notice {title, content} goes into msgData's
 * offlinePushInfo when given. The message resumes when every record is
 * acknowledged, so its toPush offset is stored only after that. */
static int l_offline_handoff(lua_State *L)
{
    struct imp_worker *w = self(L);
    struct task *t = current_task(L);
    if (!t || !t->req) return luaL_error(L, "offline_handoff called outside a message coroutine");
    uint64_t t0 = imp_now_ns();
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!w->producer) {
        lua_pushboolean(L, 0);
        lua_pushnil(L);
        lua_pushliteral(L, "toOfflinePush: no producer on this worker");
        return 3;
    }
    Openim__Sdkws__MsgData *m = t->req->msgdata;

    /* msgData, with the notice when the policy chose one */
    struct imp_buf md;
    imp_buf_init(&md);
    Openim__Sdkws__OfflinePushInfo info = OPENIM__SDKWS__OFFLINE_PUSH_INFO__INIT;
    Openim__Sdkws__OfflinePushInfo *saved = m->offlinepushinfo;
    if (lua_istable(L, 2)) {
        if (saved) info = *saved;
        lua_getfield(L, 2, "title");
        lua_getfield(L, 2, "content");
        if (lua_isstring(L, -2)) info.title = (char *)lua_tostring(L, -2);
        if (lua_isstring(L, -1)) info.desc = (char *)lua_tostring(L, -1);
        m->offlinepushinfo = &info;
    }
    size_t mlen = openim__sdkws__msg_data__get_packed_size(m);
    imp_buf_reserve(&md, mlen);
    openim__sdkws__msg_data__pack(m, (uint8_t *)md.data);
    md.len = mlen;
    m->offlinepushinfo = saved;

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

    rd_kafka_headers_t *orig = NULL, *made = NULL;
    if (t->rkm) rd_kafka_message_headers(t->rkm, &orig);
    if (t->kind == K_PUSHMSG) { /* a call: the four headers from its metadata */
        made = orig = rd_kafka_headers_new(4);
        for (int i = 0; i < 4; i++)
            rd_kafka_header_add(made, header_names[i], -1, t->hdr[i] ? t->hdr[i] : "", -1);
    }

    struct handoff *ho = imp_xcalloc(1, sizeof(*ho));
    ho->t = t;
    ho->pending = 1; /* held while producing */
    size_t n = lua_objlen(L, 1);
    size_t records = produce_user_records(w, L, 1, w->cfg->topic_offline_push, &key, &md, orig, ho);
    imp_buf_dispose(&key);
    imp_buf_dispose(&md);
    if (made) rd_kafka_headers_destroy(made);
    imp_metrics_inc("impulse_offline_handoff_records_total", NULL, (int64_t)records);
    imp_metrics_inc("impulse_offline_handoff_users_total", NULL, (int64_t)n);
    imp_vm_exclude(t->vm, t0);
    return handoff_return(L, t, ho, "toOfflinePush");
}

/* offline_dead_letter(users, reason, error) -> true (pending) | false, ok, err
 * The users of this toOfflinePush record whose sends failed for good: a
 * PushMsgReq{msgData, userIDs = users} to the offline dead-letter topic,
 * with the record's key and four headers plus impulse-reason,
 * impulse-error and impulse-origin, so `impulse replay` sends only them
 * again. The record's offset is stored after the acknowledgement (the
 * coroutine waits for it). */
static int l_offline_dead_letter(lua_State *L)
{
    struct imp_worker *w = self(L);
    struct task *t = current_task(L);
    if (!t || !t->req || !t->rkm || t->kind != K_KAFKA || t->s->id != S_OFFLINE)
        return luaL_error(L, "offline_dead_letter called outside a toOfflinePush record");
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *reason = luaL_checkstring(L, 2);
    size_t elen;
    const char *error = luaL_checklstring(L, 3, &elen);
    if (!w->producer) {
        lua_pushboolean(L, 0);
        lua_pushnil(L);
        lua_pushliteral(L, "dead letter: no producer on this worker");
        return 3;
    }
    uint64_t t0 = imp_now_ns();
    struct imp_buf md, key;
    imp_buf_init(&md);
    imp_buf_init(&key);
    size_t mlen = openim__sdkws__msg_data__get_packed_size(t->req->msgdata);
    imp_buf_reserve(&md, mlen);
    openim__sdkws__msg_data__pack(t->req->msgdata, (uint8_t *)md.data);
    md.len = mlen;
    imp_buf_append(&key, t->rkm->key ? t->rkm->key : "", t->rkm->key ? t->rkm->key_len : 0);

    rd_kafka_headers_t *orig = NULL, *h;
    if (rd_kafka_message_headers(t->rkm, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR && orig)
        h = rd_kafka_headers_copy(orig);
    else
        h = rd_kafka_headers_new(7);
    char origin[512];
    snprintf(origin, sizeof(origin), "%s/%d/%lld", t->s->topic, (int)t->ref.partition,
             (long long)t->rkm->offset);
    rd_kafka_header_add(h, "impulse-reason", -1, reason, -1);
    rd_kafka_header_add(h, "impulse-error", -1, error, (ssize_t)IMP_MIN(elen, 4000));
    rd_kafka_header_add(h, "impulse-origin", -1, origin, -1);

    struct handoff *ho = imp_xcalloc(1, sizeof(*ho));
    ho->t = t;
    ho->pending = 1;
    size_t records = produce_user_records(w, L, 1, t->s->dlq, &key, &md, h, ho);
    rd_kafka_headers_destroy(h);
    imp_buf_dispose(&key);
    imp_buf_dispose(&md);
    char labels[160];
    snprintf(labels, sizeof(labels), "topic=\"%s\",result=\"partial\"", t->s->dlq);
    imp_metrics_inc("impulse_dead_letters_total", labels, (int64_t)records);
    imp_vm_exclude(t->vm, t0);
    return handoff_return(L, t, ho, t->s->dlq);
}

/* wall_ms() -> milliseconds since the epoch */
static int l_wall_ms(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)imp_wall_ms());
    return 1;
}

/* config() -> the settings scripts may read */
static int l_config(lua_State *L)
{
    const struct imp_config *cfg = self(L)->cfg;
    lua_createtable(L, 0, 6);
    lua_pushstring(L, cfg->im_admin_user);
    lua_setfield(L, -2, "imAdminUserID");
    lua_pushstring(L, cfg->topic_push);
    lua_setfield(L, -2, "toPushTopic");
    lua_pushstring(L, cfg->topic_offline_push);
    lua_setfield(L, -2, "toOfflinePushTopic");
    lua_pushboolean(L, cfg->full_user_cache);
    lua_setfield(L, -2, "fullUserCache");
    lua_pushnumber(L, cfg->rpc_timeout_ms);
    lua_setfield(L, -2, "rpcTimeoutMs");
    {
        /* the folder of the config (a file's folder, or the folder given):
         * relative credential paths are resolved against it, as OpenIM does */
        struct stat st;
        const char *path = cfg->path ? cfg->path : ".";
        const char *slash = strrchr(path, '/');
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            lua_pushstring(L, path);
        else if (slash)
            lua_pushlstring(L, path, (size_t)(slash - path));
        else
            lua_pushliteral(L, ".");
        lua_setfield(L, -2, "configDir");
    }
    lua_pushstring(L, cfg->offline_provider ? cfg->offline_provider : "");
    lua_setfield(L, -2, "offlineProvider");
    lua_pushstring(L, cfg->providers_json ? cfg->providers_json : "{}");
    lua_setfield(L, -2, "providersJSON");
    /* webhooks = { url = ..., beforeOnlinePush = { enable, timeout, failedContinue }, ... } */
    lua_createtable(L, 0, 4);
    lua_pushstring(L, cfg->webhook_url ? cfg->webhook_url : "");
    lua_setfield(L, -2, "url");
    const struct imp_webhook *hooks[] = {&cfg->wh_before_online, &cfg->wh_before_group_online,
                                         &cfg->wh_before_offline};
    const char *names[] = {"beforeOnlinePush", "beforeGroupOnlinePush", "beforeOfflinePush"};
    for (int i = 0; i < 3; i++) {
        lua_createtable(L, 0, 3);
        lua_pushboolean(L, hooks[i]->enable);
        lua_setfield(L, -2, "enable");
        lua_pushnumber(L, hooks[i]->timeout_s);
        lua_setfield(L, -2, "timeout");
        lua_pushboolean(L, hooks[i]->failed_continue);
        lua_setfield(L, -2, "failedContinue");
        lua_setfield(L, -2, names[i]);
    }
    lua_setfield(L, -2, "webhooks");
    return 1;
}

/* now_ms() -> milliseconds on the monotonic clock */
static int l_now_ms(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)imp_now_ms());
    return 1;
}

/* event() -> a new event id, for wait/signal between this VM's coroutines */
static int l_event(lua_State *L)
{
    struct imp_worker *w = self(L);
    lua_pushnumber(L, ++w->next_event);
    return 1;
}

static void evwait_unlink(struct evwait *ew)
{
    struct imp_worker *w = ew->w;
    if (ew->prev)
        ew->prev->next = ew->next;
    else
        w->evwaits = ew->next;
    if (ew->next) ew->next->prev = ew->prev;
    ev_timer_stop(w->loop, &ew->timer);
}

/* Resumes a woken waiter from the inbox (never from inside signal). */
static void evwait_wake(void *arg)
{
    struct evwait *ew = arg;
    struct imp_worker *w = ew->w;
    struct task *t = ew->t;
    free(ew);
    lua_pushboolean(t->co, 1);
    task_resume(t, 1);
    run_ready(w);
}

static void evwait_timeout(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    struct evwait *ew = (struct evwait *)tm;
    struct imp_worker *w = ew->w;
    struct task *t = ew->t;
    evwait_unlink(ew);
    free(ew);
    lua_pushnil(t->co);
    lua_pushliteral(t->co, "timeout");
    task_resume(t, 2);
    run_ready(w);
}

/* wait(event, timeout_ms) -> true (pending): the coroutine yields until
 * signal(event) (resumed with true) or the timeout (nil, "timeout"). */
static int l_wait(lua_State *L)
{
    struct imp_worker *w = self(L);
    struct task *t = current_task(L);
    double event = luaL_checknumber(L, 1);
    double timeout = luaL_optnumber(L, 2, w->cfg->rpc_timeout_ms);
    if (!t) return luaL_error(L, "wait called outside a message coroutine");
    struct evwait *ew = imp_xcalloc(1, sizeof(*ew));
    ew->w = w;
    ew->t = t;
    ew->event = event;
    ew->next = w->evwaits;
    if (w->evwaits) w->evwaits->prev = ew;
    w->evwaits = ew;
    ev_timer_init(&ew->timer, evwait_timeout, timeout > 0 ? timeout / 1000.0 : 0.001, 0.);
    ev_timer_start(w->loop, &ew->timer);
    t->waiting = 1;
    lua_pushboolean(L, 1);
    return 1;
}

/* signal(event) -> number of coroutines woken (they resume later, on this
 * worker's loop, after the signalling coroutine yields or returns). */
static int l_signal(lua_State *L)
{
    struct imp_worker *w = self(L);
    double event = luaL_checknumber(L, 1);
    int n = 0;
    struct evwait *ew = w->evwaits;
    while (ew) {
        struct evwait *next = ew->next;
        if (ew->event == event) {
            evwait_unlink(ew);
            imp_inbox_post(&w->inbox, evwait_wake, ew);
            n++;
        }
        ew = next;
    }
    lua_pushinteger(L, n);
    return 1;
}

static const luaL_Reg core_funcs[] = {
    {"log", l_log},
    {"now_ms", l_now_ms},
    {"log_fields", l_log_fields},
    {"log_level", l_log_level},
    {"offline_handoff", l_offline_handoff},
    {"offline_dead_letter", l_offline_dead_letter},
    {"wall_ms", l_wall_ms},
    {"config", l_config},
    {"rpc", imp_lua_rpc},
    {"redis", imp_lua_redis},
    {"http", imp_lua_http},
    {"produce", imp_lua_produce},
    {"metric", imp_lua_metric},
    {"adopt", l_adopt},
    {"event", l_event},
    {"wait", l_wait},
    {"signal", l_signal},
    {"group_member_ids", imp_lua_group_member_ids},
    {"push_online", l_push_online},
    {"provider_skip", imp_lua_provider_skip},
    {"http_batch", imp_lua_http_batch},
    {"jwt_sign", imp_lua_jwt_sign},
    {"b64url", imp_lua_b64url},
    {"sha256_hex", imp_lua_sha256_hex},
    {"token_get", imp_lua_token_get},
    {"token_set", imp_lua_token_set},
    {NULL, NULL},
};

/* ---------- lifecycle ---------- */

static void finish(struct imp_worker *w)
{
    if (w->finished) return;
    w->finished = 1;
    ev_timer_stop(w->loop, &w->drain_timer);
    rpc_close(w);
    /* Every worker is drained (or past the deadline) and has committed
     * before any leaves the group: a leave starts a rebalance, and the group
     * refuses commits while one is in progress. */
    pthread_barrier_wait(&w->e->drain_barrier);
    imp_api_clients_destroy(w->api);
    w->api = NULL;
    imp_httpbatch_destroy(w->httpbatch);
    w->httpbatch = NULL;
    if (w->producer) { /* dead letters still unacknowledged get 5 s */
        imp_producer_destroy(w->producer, 5000);
        w->producer = NULL;
    }
    for (int i = 0; i < w->nstreams; i++)
        if (w->streams[i].consumer) imp_consumer_commit(w->streams[i].consumer);
    pthread_barrier_wait(&w->e->drain_barrier);
    for (int i = 0; i < w->nstreams; i++) {
        if (!w->streams[i].consumer) continue;
        imp_consumer_close(w->streams[i].consumer);
        w->streams[i].consumer = NULL;
    }
    imp_info(NULL, "worker %d stopped (%d messages abandoned)", w->id, w->inflight);
    ev_break(w->loop, EVBREAK_ALL);
}

static void maybe_finish(struct imp_worker *w)
{
    if (w->test_mode && w->inflight == 0) { /* impulse test: the specs ended */
        ev_break(w->loop, EVBREAK_ALL);
        return;
    }
    if (w->stopping && w->inflight == 0 && w->dead_pending == 0) finish(w);
}

static void on_drain_timeout(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    struct imp_worker *w = tm->data;
    imp_warn(NULL,
             "worker %d: drain deadline passed with %d messages in flight; they will "
             "be consumed again after restart",
             w->id, w->inflight);
    finish(w);
}

static void cmd_consume(void *arg)
{
    struct imp_worker *w = arg;
    char err[512];
    if (w->streams[S_PUSH].consumer || w->stopping) return;
    w->producer = imp_producer_create(w->loop, w->cfg, w->client_id, err, sizeof(err));
    if (!w->producer) imp_error(NULL, "worker %d: no dead-letter producer: %s", w->id, err);
    for (int i = 0; i < w->nstreams; i++) {
        struct stream *s = &w->streams[i];
        struct imp_consumer_handler h = {on_message, on_assigned, s};
        s->consumer = imp_consumer_create(w->loop, w->cfg, s->topic, s->group, w->client_id, &h,
                                          err, sizeof(err));
        if (!s->consumer || imp_consumer_start(s->consumer, err, sizeof(err)) != 0) {
            imp_error(NULL, "worker %d: %s", w->id, err);
            atomic_store(&w->e->stopping, 2);
            kill(getpid(), SIGTERM);
            return;
        }
        imp_info(NULL, "worker %d joined group %s on %s", w->id, s->group, s->topic);
    }
}

static void cmd_stop(void *arg)
{
    struct imp_worker *w = arg;
    if (w->stopping) return;
    w->stopping = 1;
    for (int i = 0; i < w->nstreams; i++)
        if (w->streams[i].consumer) imp_consumer_stop_fetching(w->streams[i].consumer);
    if (w->inflight == 0) {
        finish(w);
        return;
    }
    imp_info(NULL, "worker %d draining %d messages", w->id, w->inflight);
    ev_timer_set(&w->drain_timer, w->cfg->drain_timeout_ms / 1000.0, 0.);
    ev_timer_start(w->loop, &w->drain_timer);
}

static void *worker_main(void *arg)
{
    struct imp_worker *w = arg;
    imp_inbox_start(&w->inbox);
    ev_run(w->loop, 0);
    return NULL;
}

static struct imp_worker *worker_alloc(struct imp_engine *e, int id)
{
    struct imp_worker *w = imp_xcalloc(1, sizeof(*w));
    char host[64] = "impulse";
    w->e = e;
    w->cfg = e->cfg;
    w->id = id;
    gethostname(host, sizeof(host) - 1);
    snprintf(w->client_id, sizeof(w->client_id), "impulse-%s-w%d", host, id);
    w->loop = ev_loop_new(EVFLAG_AUTO);
    imp_inbox_init(&w->inbox, w->loop);
    for (int i = 0; i < S_COUNT; i++) {
        struct stream *s = &w->streams[i];
        s->w = w;
        s->id = i;
        imp_keyq_init(&s->keyq);
    }
    w->streams[S_PUSH].topic = w->cfg->topic_push;
    w->streams[S_PUSH].group = w->cfg->group_push;
    w->streams[S_PUSH].dlq = w->cfg->dlq_push;
    w->streams[S_PUSH].label = "toPush";
    w->streams[S_OFFLINE].topic = w->cfg->topic_offline_push;
    w->streams[S_OFFLINE].group = w->cfg->group_offline_push;
    w->streams[S_OFFLINE].dlq = w->cfg->dlq_offline_push;
    w->streams[S_OFFLINE].label = "toOfflinePush";
    w->nstreams = w->cfg->consume_offline ? 2 : 1;
    pthread_mutex_init(&w->rpc_lock, NULL);
    ev_timer_init(&w->drain_timer, on_drain_timeout, 0., 0.);
    w->drain_timer.data = w;
    /* the outcomes, registered so they show (at 0) before the first one */
    static const char *const results[] = {"ok",           "bad_record",   "route_failed",
                                          "push_failed",  "script_error", "script_budget",
                                          "script_memory"};
    for (int i = 0; i < S_COUNT; i++) {
        char labels[96];
        for (size_t r = 0; r < sizeof(results) / sizeof(results[0]); r++) {
            snprintf(labels, sizeof(labels), "topic=\"%s\",result=\"%s\"", w->streams[i].label,
                     results[r]);
            struct imp_metric *m = imp_metrics_counter("impulse_messages_total", labels,
                                                       "Messages handled, by topic and outcome");
            if (r == 0) w->streams[i].m_ok = m;
        }
    }
    w->m_lua_ms = imp_metrics_histogram("impulse_script_lua_ms", NULL,
                                        "Lua time per message, ms (what scriptBudgetMs bounds)");
    w->m_msg_ms = imp_metrics_histogram("impulse_message_duration_ms", NULL,
                                        "From the start of a message to its end, ms");
    w->m_long = imp_metrics_counter("msg_long_time_push_total", NULL,
                                    "Messages older than longTimePushMs when consumed");
    return w;
}

struct imp_worker *imp_worker_create(struct imp_engine *e, int id, char *err, size_t errlen)
{
    struct imp_worker *w = worker_alloc(e, id);
    w->vm = imp_vm_create(e->cfg, core_funcs, w, err, errlen);
    if (!w->vm) {
        imp_worker_destroy(w);
        return NULL;
    }
    return w;
}

/* Runs `chunk` (busted's runner) as one engine coroutine on this thread's
 * loop, so specs can make real engine calls; returns when it ends (busted
 * itself usually exits the process with its result first). */
int imp_worker_run_tests(struct imp_engine *e, int argc, char **argv)
{
    char err[1024];
    struct imp_worker *w = worker_alloc(e, 0);
    w->test_mode = 1;
    w->vm = imp_vm_create_test(e->cfg, core_funcs, w, err, sizeof(err));
    if (!w->vm) {
        fprintf(stderr, "impulse test: %s\n", err);
        imp_worker_destroy(w);
        return 2;
    }
    lua_State *L = w->vm->L;
    lua_createtable(L, argc, 1); /* arg, as busted's command line reads it */
    lua_pushliteral(L, "impulse test");
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");

    struct task *t = task_new(w);
    t->s = &w->streams[S_PUSH];
    t->vm = w->vm;
    t->vm->tasks++;
    task_new_co(t);
    if (luaL_loadstring(t->co, "require('busted.runner')({ standalone = false })") != 0) {
        fprintf(stderr, "impulse test: %s\n", lua_tostring(t->co, -1));
        return 2;
    }
    imp_inbox_start(&w->inbox);
    task_resume(t, 0);
    if (w->inflight) ev_run(w->loop, 0); /* engine calls in flight: serve them */
    return imp_metric_value(w->streams[S_PUSH].m_ok) > 0 ? 0 : 1;
}

int imp_worker_start(struct imp_worker *w)
{
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) return IMP_EIO;
    w->thread_started = 1;
    return 0;
}

void imp_worker_consume(struct imp_worker *w) { imp_inbox_post(&w->inbox, cmd_consume, w); }
void imp_worker_stop(struct imp_worker *w) { imp_inbox_post(&w->inbox, cmd_stop, w); }

void imp_worker_join(struct imp_worker *w)
{
    if (w->thread_started) pthread_join(w->thread, NULL);
    w->thread_started = 0;
}

void imp_worker_destroy(struct imp_worker *w)
{
    if (!w) return;
    while (w->evwaits) {
        struct evwait *ew = w->evwaits;
        evwait_unlink(ew);
        free(ew);
    }
    while (w->tasks) task_free(w->tasks);
    for (size_t i = 0; i < w->nchans; i++) {
        imp_grpc_channel_destroy(w->chans[i].ch);
        free(w->chans[i].addr);
    }
    free(w->chans);
    imp_svclist_release(w->gw_seen);
    imp_api_clients_destroy(w->api);
    imp_httpbatch_destroy(w->httpbatch);
    imp_vm_destroy(w->vm);
    while (w->retired) {
        struct imp_vm *vm = w->retired;
        w->retired = vm->next;
        imp_vm_destroy(vm);
    }
    for (int i = 0; i < S_COUNT; i++) imp_keyq_dispose(&w->streams[i].keyq);
    while (w->rpc_jobs) { /* never reached the loop (it never ran) */
        struct rpc_job *j = w->rpc_jobs;
        w->rpc_jobs = j->next;
        free(j);
    }
    pthread_mutex_destroy(&w->rpc_lock);
    imp_inbox_dispose(&w->inbox);
    ev_loop_destroy(w->loop);
    free(w);
}

int imp_worker_assigned(const struct imp_worker *w)
{
    struct imp_worker *mw = (struct imp_worker *)w;
    for (int i = 0; i < mw->nstreams; i++)
        if (!atomic_load(&mw->streams[i].assigned_once)) return 0;
    return 1;
}
int imp_worker_partitions(const struct imp_worker *w, int offline)
{
    struct imp_worker *mw = (struct imp_worker *)w;
    int i = offline ? S_OFFLINE : S_PUSH;
    return i < mw->nstreams ? atomic_load(&mw->streams[i].partitions) : -1;
}
int imp_worker_inflight(const struct imp_worker *w)
{
    return atomic_load(&((struct imp_worker *)w)->inflight_pub);
}

struct imp_vm *imp_worker_build_vm(struct imp_worker *w, char *err, size_t errlen)
{
    return imp_vm_create(w->cfg, core_funcs, w, err, errlen);
}

int imp_worker_check_provider(struct imp_worker *w, char *err, size_t errlen)
{
    const char *name = w->cfg->offline_provider ? w->cfg->offline_provider : "";
    if (!w->vm) return 0;
    lua_State *L = w->vm->L;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "impulse.offline");
    if (imp_vm_pcall(w->vm, L, 1, 1, err, errlen)) return IMP_EINVAL;
    lua_getfield(L, -1, "check_provider");
    lua_remove(L, -2);
    lua_pushstring(L, name);
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->vm->policy_ref);
    if (imp_vm_pcall(w->vm, L, 2, 2, err, errlen)) return IMP_EINVAL;
    int ok = lua_toboolean(L, -2);
    if (!ok) snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no reason)");
    lua_pop(L, 2);
    return ok ? 0 : IMP_EINVAL;
}

static void cmd_install(void *arg)
{
    struct imp_vm *vm = arg;
    struct imp_worker *w = vm->next_owner;
    struct imp_vm *old = w->vm;
    vm->next_owner = NULL;
    w->vm = vm;
    if (old->tasks == 0) {
        imp_vm_destroy(old);
    } else {
        old->next = w->retired;
        w->retired = old;
    }
    imp_info(NULL, "worker %d: scripts %s active", w->id, vm->hash);
}

void imp_worker_install_vm(struct imp_worker *w, struct imp_vm *vm)
{
    vm->next_owner = w;
    if (imp_inbox_post(&w->inbox, cmd_install, vm) != 0) imp_vm_destroy(vm);
}

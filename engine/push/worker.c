/*
 * The worker: its thread and loop, its Kafka streams and the message
 * lifecycle. Everything here runs on the worker's own loop; other threads
 * reach it only through its inbox (commands, gRPC completions, calls).
 *
 * Message lifecycle:
 *   fetched ──decode──► keyed queue ──head of its key──► runnable
 *   runnable ──► coroutine: driver.handle(policy, fields, opid)
 *        route() ─(may yield on RPCs)─► push_online ─(yields on fan-out)─►
 *        returns ──► done: offset tracker, next message of the key
 * Runnable messages are started from one loop (imp_worker_run_ready),
 * never by recursion, so a long chain of same-key messages that finish at
 * once cannot grow the C stack. The online push (fanout.c), the offline
 * hand-off (handoff.c), dead letters (deadletter.c) and push-service calls
 * (svccall.c) are their own files; this one never blocks and never calls
 * up into the engine (daemon/): the engine's wishes arrive as commands
 * and its services as the env callbacks.
 */
#include "push/worker_int.h"

#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/barrier.h"
#include "base/buf.h"
#include "base/common.h"
#include "base/config.h"
#include "base/journal.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/pbcheck.h"
#include "calls/api.h"
#include "calls/httpbatch.h"
#include "net/chans.h"
#include "net/grpcc.h"
#include "net/producer.h"
#include "script/vm.h"
#include "state/registry.h"
#include "state/shared.h"

static void task_start(struct msg *t);
static void msg_resume(struct msg *t, int nargs);

/* ---------- steps ----------
 * A step is what the thread does synchronously for one message: a record's
 * decode, a run of the scripts with the engine calls it makes and what
 * follows from its result. The watchdog (daemon/engine.c) reads the step
 * to find a thread stuck in one (a C call no budget can interrupt); a
 * Kafka record's step is marked in the crash journal, so a death inside it
 * counts against that record on the next start. */

static void step_begin(struct msg *t)
{
    struct imp_worker *w = t->w;
    if (w->step_depth++) return;
    int64_t offset = t->rkm ? t->rkm->offset : -1;
    int record = t->kind == K_KAFKA && t->rkm;
    if (record) imp_journal_enter(w->env.journal, w->id, t->s->topic, t->ref.partition, offset);
    /* raw fields only: the watchdog formats them if it ever needs them */
    const char *opid = msg_opid(t);
    size_t n = opid ? strnlen(opid, sizeof(w->step_opid) - 1) : 0;
    pthread_mutex_lock(&w->step_lock);
    w->step_seq++;
    w->step_busy = 1;
    w->step_label = record ? t->s->label : NULL;
    w->step_kind = t->kind;
    w->step_partition = t->ref.partition;
    w->step_offset = offset;
    if (n) memcpy(w->step_opid, opid, n);
    w->step_opid[n] = '\0';
    pthread_mutex_unlock(&w->step_lock);
}

static void step_end(struct imp_worker *w)
{
    if (--w->step_depth) return;
    imp_journal_leave(w->env.journal, w->id);
    pthread_mutex_lock(&w->step_lock);
    w->step_busy = 0;
    pthread_mutex_unlock(&w->step_lock);
}

int imp_worker_step(struct imp_worker *w, unsigned long *seq, double *cpu_ms, char *what,
                    size_t whatlen, char *opid, size_t opidlen)
{
    pthread_mutex_lock(&w->step_lock);
    int busy = w->step_busy && w->thread_started;
    if (busy) {
        *seq = w->step_seq;
        if (w->step_label)
            snprintf(what, whatlen, "%s[%d]@%lld", w->step_label, (int)w->step_partition,
                     (long long)w->step_offset);
        else
            snprintf(what, whatlen, "a %s call", imp_svccall_names[w->step_kind]);
        snprintf(opid, opidlen, "%s", w->step_opid);
    }
    pthread_mutex_unlock(&w->step_lock);
    if (!busy) return 0;
    clockid_t cid;
    struct timespec ts;
    if (pthread_getcpuclockid(w->thread, &cid) != 0 || clock_gettime(cid, &ts) != 0) return 0;
    *cpu_ms = ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
    return 1;
}

/* ---------- messages ---------- */

/* A retired VM (replaced by a reload) whose last message finished. */
static void retire_done(struct imp_worker *w, struct imp_vm *vm)
{
    struct imp_vm **pp = &w->retired;
    while (*pp && *pp != vm) pp = &(*pp)->next;
    if (*pp) *pp = vm->next;
    imp_info(NULL, "worker %d: scripts %s closed (their last message is done)", w->id, vm->hash);
    imp_vm_destroy(vm);
}

static void msg_free(struct msg *t)
{
    struct imp_worker *w = t->w;
    struct imp_vm *vm = t->task.vm;
    imp_task_dispose(&t->task);
    if (t->req) openim__push__push_msg_req__free_unpacked(t->req, NULL);
    if (t->del) openim__push__del_user_push_token_req__free_unpacked(t->del, NULL);
    if (t->rkm) rd_kafka_message_destroy(t->rkm);
    imp_buf_dispose(&t->msgdata);
    free(t->fail_error);
    imp_strset_dispose(&t->users);
    free(t->online);
    free(t->online_flags);
    imp_svclist_release(t->gws);
    if (t->prev)
        t->prev->next = t->next;
    else
        w->msgs = t->next;
    if (t->next) t->next->prev = t->prev;
    if (vm && --vm->tasks == 0 && vm != w->vm) retire_done(w, vm);
    free(t);
}

void imp_msg_runnable(struct imp_worker *w, struct msg *t)
{
    t->run_next = NULL;
    if (w->runq_tail)
        w->runq_tail->run_next = t;
    else
        w->runq_head = t;
    w->runq_tail = t;
}

/* The message is fully handled: store its offset, release the next
 * message of its key, resume fetching when below the low-water mark. */
void imp_msg_done(struct msg *t)
{
    struct imp_worker *w = t->w;
    struct stream *s = t->kind == K_KAFKA ? t->s : NULL;
    if (t->kind != K_KAFKA) {
        imp_svccall_answer(t);
    } else {
        if (s->consumer && !t->dead_lettered) {
            /* a dead-lettered message's offset waits for the dead letter's ack */
            imp_consumer_done(s->consumer, t->ref);
        }
        /* handled: the deaths counted against it (if any) are forgiven */
        if (t->rkm) imp_journal_forget(w->env.journal, s->topic, t->ref.partition, t->rkm->offset);
    }
    if (t->started && !t->skipped && !w->test_mode) {
        imp_metric_observe(w->m_lua_ms, t->lua_ns / 1e6);
        imp_metric_observe(w->m_msg_ms, (double)(imp_now_ms() - t->start_ms));
        if (t->send_ms > 0) {
            /* clocks of two hosts: a send "in the future" counts as 0 */
            int64_t d = (int64_t)imp_wall_ms() - t->send_ms;
            imp_metric_observe(w->m_e2e_ms, d > 0 ? (double)d : 0.);
        }
    }
    if (t->started && s) {
        struct imp_keyq_node *next = imp_keyq_pop(&s->keyq, &t->qnode);
        if (next) imp_msg_runnable(w, (struct msg *)next);
    }
    msg_free(t);
    w->inflight--;
    atomic_store(&w->inflight_pub, w->inflight);
    if (s) {
        s->inflight--;
        if (s->consumer && imp_consumer_paused(s->consumer) && !w->stopping &&
            s->inflight <= w->cfg->max_inflight / 2)
            imp_consumer_resume(s->consumer);
    }
    imp_worker_maybe_finish(w);
}

/* A new message of w, in its list and in-flight count. */
struct msg *imp_msg_new(struct imp_worker *w)
{
    struct msg *t = imp_xcalloc(1, sizeof(*t));
    t->w = w;
    imp_task_init(&t->task, &w->host);
    imp_buf_init(&t->msgdata);
    imp_strset_init(&t->users);
    t->next = w->msgs;
    if (w->msgs) w->msgs->prev = t;
    w->msgs = t;
    w->inflight++;
    atomic_store(&w->inflight_pub, w->inflight);
    return t;
}

/* Pushes the decoded message as a plain table of fields onto L. */
static void push_fields(lua_State *L, const struct msg *t)
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

/* The message's coroutine, bound to its VM as a task, with driver.handle
 * and the policy pushed on it. */
static void task_coroutine(struct msg *t)
{
    imp_task_bind(&t->task, t->task.vm);
    lua_rawgeti(t->task.co, LUA_REGISTRYINDEX, t->task.vm->handle_ref);
    lua_rawgeti(t->task.co, LUA_REGISTRYINDEX, t->task.vm->policy_ref);
}

/* Pushes driver.handle's call table {op = op, users = the request's
 * userIDs} on the task's coroutine. */
static void push_call(struct msg *t, const char *op)
{
    lua_State *co = t->task.co;
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

/* t's msgData bytes as the record holds them, with a status of 1 made 2
 * in place: what OpenIM hands on, byte for byte (Go re-marshals the
 * canonical message msgtransfer wrote to the same bytes, map entries with
 * a false value included, which protobuf-c would leave out). -1 when the
 * bytes are unusual (msgData or status given twice, a status of 1 written
 * in more than one byte): then the decoded message is packed again. */
static int msgdata_as_consumed(struct msg *t, int was_sending)
{
    const uint8_t *p = t->rkm->payload;
    size_t off, len, soff, slen;
    if (imp_pb_find_field(p, t->rkm->len, 1, 2, &off, &len) != 1) return -1;
    int ns = imp_pb_find_field(p + off, len, 17, 0, &soff, &slen);
    if (ns < 0 || ns > 1) return -1;
    int patch = was_sending;
    if (patch && (ns != 1 || slen != 1 || p[off + soff] != 1)) return -1;
    imp_buf_reset(&t->msgdata);
    imp_buf_append(&t->msgdata, p + off, len);
    if (patch) t->msgdata.data[soff] = 2;
    return 0;
}

/* Starts a runnable message: coroutine running driver.handle. */
static void task_start(struct msg *t)
{
    struct imp_worker *w = t->w;
    if (t->kind == K_KAFKA && t->s->consumer && !imp_consumer_current(t->s->consumer, t->ref)) {
        /* Its partition was revoked while it waited behind its key: the
         * partition's next owner (maybe this worker, after the rebalance)
         * consumes it again from the last commit, so running it here would
         * only push it twice. */
        t->started = 1;
        t->skipped = 1;
        imp_metric_add(t->s->m_revoked, 1);
        imp_msg_done(t);
        return;
    }
    t->task.vm = w->vm; /* a reload from now on does not move this message */
    t->task.vm->tasks++;

    t->started = 1;
    t->start_ms = imp_now_ms();
    if (t->kind == K_DELTOKEN) {
        task_coroutine(t);
        lua_pushnil(t->task.co);
        lua_pushstring(t->task.co, msg_opid(t));
        lua_createtable(t->task.co, 0, 3);
        lua_pushliteral(t->task.co, "del_push_token");
        lua_setfield(t->task.co, -2, "op");
        lua_pushstring(t->task.co, t->del->userid ? t->del->userid : "");
        lua_setfield(t->task.co, -2, "userID");
        lua_pushinteger(t->task.co, t->del->platformid);
        lua_setfield(t->task.co, -2, "platformID");
        msg_resume(t, 4);
        return;
    }
    Openim__Sdkws__MsgData *m = t->req->msgdata;
    if (t->kind == K_KAFKA && t->s->id == S_OFFLINE) {
        /* a toOfflinePush record: its users, and the payload modules */
        task_coroutine(t);
        push_fields(t->task.co, t);
        lua_pushstring(t->task.co, msg_opid(t));
        push_call(t, "offline");
        lua_getfield(t->task.co, LUA_REGISTRYINDEX, "impulse.providers");
        lua_setfield(t->task.co, -2, "providers");
        msg_resume(t, 4);
        return;
    }
    int was_sending = m->status == 1;
    if (was_sending) m->status = 2; /* sending → sent, as OpenIM does */
    if (t->kind == K_KAFKA) {
        /* counted and logged, still pushed; whole seconds, as OpenIM
         * (OpenIM@v3.8.3:internal/push/push_handler.go:102-108) */
        t->send_ms = m->sendtime;
        int64_t now_s = (int64_t)(imp_wall_ms() / 1000), sent_s = m->sendtime / 1000;
        if (now_s - sent_s > w->cfg->long_time_push_ms / 1000) {
            imp_metric_add(w->m_long, 1);
            imp_warn(msg_opid(t),
                     "it's been a while since the message was sent: sendTime %" PRId64
                     " s, now %" PRId64 " s (%" PRId64 " s late; impulse.longTimePushMs %d)",
                     sent_s, now_s, now_s - sent_s, w->cfg->long_time_push_ms);
        }
    }
    if (t->kind != K_KAFKA || msgdata_as_consumed(t, was_sending) != 0) {
        size_t len = openim__sdkws__msg_data__get_packed_size(m);
        imp_buf_reset(&t->msgdata);
        imp_buf_reserve(&t->msgdata, len);
        openim__sdkws__msg_data__pack(m, (uint8_t *)t->msgdata.data);
        t->msgdata.len = len;
    }

    task_coroutine(t);
    push_fields(t->task.co, t);
    lua_pushstring(t->task.co, msg_opid(t));
    if (t->kind == K_PUSHMSG) { /* the users are given: no route() */
        push_call(t, "push");
        msg_resume(t, 4);
        return;
    }
    msg_resume(t, 3);
}

static void log_failure(struct msg *t, const char *what, const char *detail)
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
        imp_buf_printf(&b, ",\"rpc\":\"%s\"", imp_svccall_names[t->kind]);
    else
        imp_buf_printf(&b, ",\"topic\":\"%s\",\"partition\":%d,\"offset\":%lld", t->s->label,
                       (int)t->ref.partition, t->rkm ? (long long)t->rkm->offset : -1LL);
    imp_log_fields_at(__FILE__, __LINE__, IMP_LOG_ERROR, msg_opid(t), msg_opuser(t), what, b.data);
    imp_buf_dispose(&b);
}

/* A failed message: logged with its operationID, counted by reason, and
 * remembered for the dead letter. */
void imp_msg_fail(struct msg *t, const char *reason, const char *what, const char *detail)
{
    char labels[96];
    log_failure(t, what, detail);
    if (t->kind == K_KAFKA) { /* calls are counted when answered */
        snprintf(labels, sizeof(labels), "topic=\"%s\",result=\"%s\"", t->s->label, reason);
        imp_metrics_inc("impulse_messages_total", labels, 1);
    }
    t->fail_reason = reason;
    free(t->fail_error);
    t->fail_error = imp_xstrdup(detail);
}

/* Runs the message's coroutine and acts on how it came back: 0 when it
 * waits for an engine call, 1 when the message has ended. */
static int msg_run(struct msg *t, int nargs)
{
    struct imp_worker *w = t->w;
    char err[4096];
    if (t->stopped) {
        /* stopped while an engine call was in flight: that call's answer
         * has come back; nothing is resumed */
        lua_settop(t->task.co, 0);
        imp_deadletter_record(t);
        return 1;
    }
    t->task.waiting = 0;
    int st = imp_vm_resume(t->task.vm, t->task.co, nargs, &t->lua_ns, err, sizeof(err));
    if (st == 1) {
        if (t->task.waiting) return 0;
        imp_msg_fail(t, "script_error", "script error",
                     "the policy yielded outside an engine call");
    } else if (st == 0) {
        if (lua_gettop(t->task.co) >= 2 && lua_isnil(t->task.co, 1)) {
            const char *e = lua_tostring(t->task.co, 2);
            if (t->kind == K_KAFKA && t->s->id == S_OFFLINE)
                imp_msg_fail(t, "push_failed", "offline push failed", e ? e : "(no reason)");
            else
                imp_msg_fail(t, "route_failed", "route failed", e ? e : "(no reason)");
        } else if (t->kind == K_KAFKA) {
            imp_metric_add(t->s->m_ok, 1);
        }
    } else if (st == IMP_ETIMEDOUT) {
        imp_msg_fail(t, "script_budget", "script stopped", err);
        if (t->task.waiting) { /* the engine call in flight still has to answer */
            t->stopped = 1;
            return 0;
        }
    } else if (st == IMP_ENOMEM) {
        imp_msg_fail(t, "script_memory", "script stopped", err);
        lua_gc(t->task.vm->L, LUA_GCCOLLECT, 0);
        /* an allocation failed somewhere inside the scripts' state: start
         * new messages on fresh VMs (this one finishes its messages) */
        if (w->env.reload) w->env.reload(w->env.arg, "out of memory");
    } else if (w->test_mode) {
        /* busted ends a failed run by raising (its exit() under LuaJIT) */
        if (!strstr(err, "error object is not a string")) fprintf(stderr, "%s\n", err);
    } else {
        imp_msg_fail(t, "script_error", "script error", err);
    }
    if (t->fail_reason) imp_deadletter_record(t);
    return 1;
}

static void msg_resume(struct msg *t, int nargs)
{
    struct imp_worker *w = t->w;
    step_begin(t);
    int ended = msg_run(t, nargs);
    /* the step ends before the message does: its end may finish the
     * worker (a drain), which is not this record's doing */
    step_end(w);
    if (ended) imp_msg_done(t);
}

void imp_worker_run_ready(struct imp_worker *w)
{
    while (w->runq_head) {
        struct msg *t = w->runq_head;
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
    struct msg *t = imp_msg_new(w);
    rd_kafka_headers_t *hdrs = NULL;

    t->s = s;
    t->rkm = m;
    t->ref = ref;
    s->inflight++;

    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR)
        for (int i = 0; i < 4; i++) t->task.md[i] = header_dup(hdrs, imp_md_header_names[i]);
    t->task.temp_admin = s->id == S_PUSH && w->cfg->rpc_temp_admin;
    if (s->id == S_PUSH && w->cfg->op_user_admin) {
        /* v3.8.3-patch.5 on: every consumed toPush record runs as the
         * first IM admin, for its calls and its toOfflinePush headers
         * (OpenIM@v3.8.3-patch.5:internal/push/push_handler.go:143-146) */
        free(t->task.md[IMP_MD_OPUSER]);
        t->task.md[IMP_MD_OPUSER] = imp_xstrdup(w->cfg->im_admin_user);
    }

    int deaths = imp_journal_poison(w->env.journal, s->topic, ref.partition, m->offset)
                     ? imp_journal_deaths(w->env.journal, s->topic, ref.partition, m->offset)
                     : 0;
    if (deaths) {
        /* the engine died this often while handling it: not run again */
        char why[160];
        snprintf(why, sizeof(why),
                 "the engine died %d times while handling this record (impulse.poisonDeaths "
                 "%d): dead-lettered without decoding it or running the scripts",
                 deaths, w->cfg->poison_deaths);
        imp_metric_add(w->m_poison, 1);
        imp_msg_fail(t, "poison_record", "poison record", why);
        imp_deadletter_record(t);
        imp_msg_done(t);
        return;
    }
    step_begin(t);
    t->req = openim__push__push_msg_req__unpack(NULL, m->len, m->payload);
    /* a field numbered 0 (base/pbcheck.h): it could not be handed on */
    int bad = !t->req || !t->req->msgdata || imp_pb_has_field_zero(&t->req->base);
    step_end(w);
    if (bad) {
        char why[128];
        snprintf(why, sizeof(why), "the record is not a PushMsgReq%s (%zu bytes)",
                 !t->req            ? ""
                 : !t->req->msgdata ? " with msgData"
                                    : " (a field numbered 0)",
                 m->len);
        imp_msg_fail(t, "bad_record", "bad record", why);
        imp_deadletter_record(t);
        imp_msg_done(t);
        return;
    }
    if (imp_keyq_push(&s->keyq, m->key, m->key_len, &t->qnode)) imp_msg_runnable(w, t);
    if (s->inflight >= w->cfg->max_inflight) imp_consumer_pause(s->consumer);
    imp_worker_run_ready(w);
}

static void on_assigned(void *arg, int n)
{
    struct stream *s = arg;
    atomic_store(&s->partitions, n);
    atomic_store(&s->assigned_once, 1);
}

/* ---------- lifecycle ---------- */

static void finish(struct imp_worker *w)
{
    if (w->finished) return;
    w->finished = 1;
    ev_timer_stop(w->loop, &w->drain_timer);
    imp_svccall_close(w);
    /* Every worker is drained (or past the deadline) and has committed
     * before any leaves the group: a leave starts a rebalance, and the group
     * refuses commits while one is in progress. */
    imp_barrier_wait(w->env.drain_barrier);
    imp_api_clients_destroy(w->host.api);
    w->host.api = NULL;
    imp_httpbatch_destroy(w->host.httpbatch);
    w->host.httpbatch = NULL;
    if (w->host.producer) { /* dead letters still unacknowledged get 5 s */
        struct imp_producer *p = w->host.producer;
        w->host.producer = NULL; /* what its last reports resume sees no producer */
        imp_producer_destroy(p, 5000);
    }
    /* librdkafka's destroy waits until every message object it handed out
     * is released: the records of messages still in flight (past the
     * deadline: a hung gateway, a stuck provider) and of unacknowledged dead
     * letters are released now. Their offsets are not stored, so the
     * partition's next owner consumes them again. */
    imp_deadletter_abandon(w);
    for (struct msg *m = w->msgs; m; m = m->next) {
        if (!m->rkm) continue;
        rd_kafka_message_destroy(m->rkm);
        m->rkm = NULL;
    }
    for (int i = 0; i < w->nstreams; i++)
        if (w->streams[i].consumer) imp_consumer_commit(w->streams[i].consumer);
    imp_barrier_wait(w->env.drain_barrier);
    for (int i = 0; i < w->nstreams; i++) {
        if (!w->streams[i].consumer) continue;
        imp_consumer_close(w->streams[i].consumer);
        w->streams[i].consumer = NULL;
    }
    imp_info(NULL, "worker %d stopped (%d messages abandoned)", w->id, w->inflight);
    ev_break(w->loop, EVBREAK_ALL);
}

void imp_worker_maybe_finish(struct imp_worker *w)
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
    w->host.producer = imp_producer_create(w->loop, w->cfg, w->client_id, err, sizeof(err));
    if (!w->host.producer) imp_error(NULL, "worker %d: no dead-letter producer: %s", w->id, err);
    for (int i = 0; i < w->nstreams; i++) {
        struct stream *s = &w->streams[i];
        struct imp_consumer_handler h = {on_message, on_assigned, s};
        s->consumer = imp_consumer_create(w->loop, w->cfg, s->topic, s->group, w->client_id, &h,
                                          err, sizeof(err));
        if (!s->consumer || imp_consumer_start(s->consumer, err, sizeof(err)) != 0) {
            imp_error(NULL, "worker %d: %s", w->id, err);
            w->env.fatal(w->env.arg, err);
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

/* The pipeline's side of the task runtime (script/task.h). */
static void ops_resume(struct imp_task *t, int nargs) { msg_resume(msg_of(t), nargs); }
static void ops_run_ready(struct imp_host *h) { imp_worker_run_ready((struct imp_worker *)h); }
static const struct imp_task_ops task_ops = {ops_resume, ops_run_ready};

static struct imp_worker *worker_alloc(const struct imp_worker_env *env, int id)
{
    struct imp_worker *w = imp_xcalloc(1, sizeof(*w));
    char host[64] = "impulse";
    w->env = *env;
    w->cfg = env->cfg;
    w->id = id;
    gethostname(host, sizeof(host) - 1);
    snprintf(w->client_id, sizeof(w->client_id), "impulse-%s-w%d", host, id);
    w->loop = ev_loop_new(EVFLAG_AUTO);
    imp_inbox_init(&w->inbox, w->loop);
    w->host = (struct imp_host){
        .id = id,
        .loop = w->loop,
        .inbox = &w->inbox,
        .cfg = env->cfg,
        .shared = env->shared,
        .chans = imp_chans_create(env->cfg->max_grpc_message),
        .ops = &task_ops,
    };
    imp_chans_breaker(w->host.chans, env->cfg->gw_breaker_failures, env->cfg->gw_breaker_open_ms,
                      env->cfg->gateway_timeout_ms + 1000);
    /* requests are sized by their callers (the gateway fan-out splits at
     * maxGrpcMessageBytes; the filter at 3 MiB): 64 MiB is only a bound */
    if (env->cfg->gw_h2) w->grpcc = imp_grpcc_create(w->loop, 64 << 20);
    w->host.grpcc = w->grpcc;
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
    pthread_mutex_init(&w->step_lock, NULL);
    ev_timer_init(&w->drain_timer, on_drain_timeout, 0., 0.);
    w->drain_timer.data = w;
    /* the outcomes, registered so they show (at 0) before the first one */
    static const char *const results[] = {
        "ok",           "bad_record",    "route_failed",  "push_failed",
        "script_error", "script_budget", "script_memory", "poison_record",
        "revoked"};
    for (int i = 0; i < S_COUNT; i++) {
        char labels[96];
        for (size_t r = 0; r < sizeof(results) / sizeof(results[0]); r++) {
            snprintf(labels, sizeof(labels), "topic=\"%s\",result=\"%s\"", w->streams[i].label,
                     results[r]);
            struct imp_metric *m = imp_metrics_counter("impulse_messages_total", labels,
                                                       "Messages handled, by topic and outcome");
            if (r == 0) w->streams[i].m_ok = m;
            if (strcmp(results[r], "revoked") == 0) w->streams[i].m_revoked = m;
        }
    }
    w->m_lua_ms = imp_metrics_histogram("impulse_script_lua_ms", NULL,
                                        "Lua time per message, ms (what scriptBudgetMs bounds)");
    w->m_msg_ms = imp_metrics_histogram("impulse_message_duration_ms", NULL,
                                        "From the start of a message to its end, ms");
    w->m_e2e_ms = imp_metrics_histogram(
        "impulse_message_latency_ms", NULL,
        "toPush records: from the message's sendTime to the end of its push, ms");
    w->m_long = imp_metrics_counter("msg_long_time_push_total", NULL,
                                    "toPush records older than longTimePushMs when consumed");
    /* OpenIM's push metrics exist at 0 from the start, as its prommetrics
     * registers them (OpenIM@v3.8.3:pkg/common/prommetrics/grpc_push.go:22-29) */
    imp_metrics_counter("msg_offline_push_failed_total", NULL,
                        "Offline pushes a provider refused for good");
    w->m_poison = imp_metrics_counter(
        "impulse_poison_records_total", NULL,
        "Records dead-lettered unrun: the engine died poisonDeaths times handling each");
    return w;
}

struct imp_worker *imp_worker_create(const struct imp_worker_env *env, int id,
                                     const struct imp_scripts *scripts, char *err, size_t errlen)
{
    struct imp_worker *w = worker_alloc(env, id);
    w->vm = imp_vm_create(env->cfg, scripts, imp_core_libs, &w->host, err, errlen);
    if (!w->vm) {
        imp_worker_destroy(w);
        return NULL;
    }
    return w;
}

/* Runs `code` as one engine coroutine on this thread's loop in a VM
 * without the sandbox (impulse test, impulse explain), so it can make real
 * engine calls; the global arg is {[0] = name, argv...} and push(co, ud),
 * when given, pushes the chunk's arguments (returns how many). Returns 0
 * when the chunk returned, 1 when it raised or was never run (busted and
 * explain usually exit the process themselves first). */
int imp_worker_run_chunk(const struct imp_worker_env *env, const char *name, const char *code,
                         int argc, char **argv, int (*push)(struct lua_State *co, void *ud),
                         void *ud)
{
    char err[1024];
    struct imp_worker *w = worker_alloc(env, 0);
    w->test_mode = 1;
    w->vm = imp_vm_create_test(env->cfg, imp_core_libs, &w->host, err, sizeof(err));
    if (!w->vm) {
        fprintf(stderr, "%s: %s\n", name, err);
        imp_worker_destroy(w);
        return 2;
    }
    lua_State *L = w->vm->L;
    lua_createtable(L, argc, 1); /* arg, as busted's command line reads it */
    lua_pushstring(L, name);
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");

    struct msg *t = imp_msg_new(w);
    t->s = &w->streams[S_PUSH];
    w->vm->tasks++;
    imp_task_bind(&t->task, w->vm);
    if (luaL_loadstring(t->task.co, code) != 0) {
        fprintf(stderr, "%s: %s\n", name, lua_tostring(t->task.co, -1));
        return 2;
    }
    int nargs = push ? push(t->task.co, ud) : 0;
    imp_inbox_start(&w->inbox);
    msg_resume(t, nargs);
    if (w->inflight) ev_run(w->loop, 0); /* engine calls in flight: serve them */
    return imp_metric_value(w->streams[S_PUSH].m_ok) > 0 ? 0 : 1;
}

int imp_worker_run_tests(const struct imp_worker_env *env, int argc, char **argv)
{
    return imp_worker_run_chunk(env, "impulse test",
                                "require('busted.runner')({ standalone = false })", argc, argv,
                                NULL, NULL);
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
    imp_host_dispose(&w->host);
    while (w->msgs) msg_free(w->msgs);
    imp_chans_destroy(w->host.chans);
    imp_api_clients_destroy(w->host.api);
    imp_httpbatch_destroy(w->host.httpbatch);
    imp_ring_destroy(w->ring);
    imp_grpcc_destroy(w->grpcc);
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
    pthread_mutex_destroy(&w->step_lock);
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
int imp_worker_dead_letters_stuck(const struct imp_worker *w)
{
    return atomic_load(&((struct imp_worker *)w)->dead_stuck);
}

int imp_worker_inflight(const struct imp_worker *w)
{
    return atomic_load(&((struct imp_worker *)w)->inflight_pub);
}

struct imp_vm *imp_worker_build_vm(struct imp_worker *w, const struct imp_scripts *scripts,
                                   char *err, size_t errlen)
{
    return imp_vm_create(w->cfg, scripts, imp_core_libs, &w->host, err, errlen);
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
    /* on success, what was checked beside the configured provider (the
     * apps of impulse.apps), or "" */
    else
        snprintf(err, errlen, "%s", lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "");
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

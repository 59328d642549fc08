/*
 * The task runtime (task.h): which task a coroutine belongs to, the
 * adoption of coroutines a script creates, resuming through the owner's
 * ops, and core.event / wait / signal between the coroutines of one VM.
 *
 * A VM's registry maps each task's coroutine to its task (IMP_VM_TASKS_KEY)
 * and each adopted coroutine, weakly, to the task's coroutine
 * (IMP_VM_ADOPTED_KEY). Runs only on the host's loop thread; never blocks;
 * never resumes a coroutine from inside the Lua call that asked for it
 * (wake-ups of core.signal go through the inbox).
 */
#include "script/task.h"

#include <stdlib.h>

#include "base/common.h"
#include "base/config.h"
#include "net/chans.h"
#include "net/grpcc.h"
#include "script/vm.h"
#include "state/shared.h"

const char *const imp_md_header_names[IMP_MD_COUNT] = {"operationID", "opUserID", "platform",
                                                       "connID"};

void imp_task_init(struct imp_task *t, struct imp_host *h)
{
    t->host = h;
    t->co_ref = LUA_NOREF;
}

void imp_task_bind(struct imp_task *t, struct imp_vm *vm)
{
    lua_State *L = vm->L;
    t->vm = vm;
    t->co = lua_newthread(L);
    t->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, LUA_REGISTRYINDEX, IMP_VM_TASKS_KEY);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->co_ref);
    lua_pushlightuserdata(L, t);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

void imp_task_dispose(struct imp_task *t)
{
    if (t->co_ref != LUA_NOREF) {
        lua_State *L = t->vm->L;
        lua_getfield(L, LUA_REGISTRYINDEX, IMP_VM_TASKS_KEY);
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->co_ref);
        lua_pushnil(L);
        lua_rawset(L, -3);
        lua_pop(L, 1);
        luaL_unref(L, LUA_REGISTRYINDEX, t->co_ref);
        t->co_ref = LUA_NOREF;
    }
    for (int i = 0; i < IMP_MD_COUNT; i++) {
        free(t->md[i]);
        t->md[i] = NULL;
    }
}

/* TASKS maps a task's own coroutine; ADOPTED maps a script's coroutine to
 * the task's coroutine, which TASKS then maps. Stack: unchanged. */
struct imp_task *imp_task_current(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, IMP_VM_TASKS_KEY);
    lua_pushthread(L);
    lua_rawget(L, -2);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_getfield(L, LUA_REGISTRYINDEX, IMP_VM_ADOPTED_KEY);
        lua_pushthread(L);
        lua_rawget(L, -2);
        lua_remove(L, -2);
        lua_rawget(L, -2);
    }
    struct imp_task *t = lua_touserdata(L, -1);
    lua_pop(L, 2);
    return t;
}

const char *imp_task_opid(const struct imp_task *t)
{
    return t->md[IMP_MD_OPID] ? t->md[IMP_MD_OPID] : "";
}

void imp_task_grpc_md(const struct imp_task *t, struct imp_grpc_md md[IMP_TASK_GRPC_MD])
{
    md[0] = (struct imp_grpc_md){"ctximtempadminkey", t->temp_admin ? "1" : NULL};
    md[1] = (struct imp_grpc_md){"customheader", t->temp_admin ? "ctxImTempAdminKey" : NULL};
    /* operationid always: OpenIM's servers refuse a call without exactly
     * one (tools@v0.0.50-alpha.67:mw/rpc_server_interceptor.go:53-54) */
    md[2] = (struct imp_grpc_md){"operationid", t->md[IMP_MD_OPID] ? t->md[IMP_MD_OPID] : ""};
    md[IMP_TASK_MD_OPUSER] = (struct imp_grpc_md){"opuserid", t->md[IMP_MD_OPUSER]};
    md[4] = (struct imp_grpc_md){"platform", t->md[IMP_MD_PLATFORM]};
    md[5] = (struct imp_grpc_md){"connid", t->md[IMP_MD_CONNID]};
}

void imp_task_resume(struct imp_task *t, int nargs)
{
    struct imp_host *h = t->host; /* t may be freed by the resume */
    h->ops->resume(t, nargs);
    h->ops->run_ready(h);
}

struct imp_grpc_channel *imp_host_service(struct imp_host *h, const char *name)
{
    return imp_chans_service(h->chans, h->shared->registry, name);
}

int imp_host_unary(struct imp_host *h, struct imp_grpc_channel *ch, const char *method,
                   const void *req, size_t len, int timeout_ms, const struct imp_grpc_md *md,
                   size_t nmd, imp_grpc_cb cb, void *arg)
{
    const char *addr = imp_grpc_channel_addr(ch);
    if (h->grpcc && imp_grpcc_can_dial(addr))
        return imp_grpcc_unary(h->grpcc, addr, method, req, len, timeout_ms, md, nmd, cb, arg);
    return imp_grpc_unary(ch, method, req, len, timeout_ms, md, nmd, h->inbox, cb, arg);
}

/* ---------- Lua: adopt, event, wait, signal ---------- */

/* adopt(co): engine calls made inside co (a coroutine the script created)
 * belong to the current task. */
static int l_adopt(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTHREAD);
    if (!imp_task_current(L)) return 0;
    /* the task's own coroutine: this one, or the one this was adopted by */
    lua_getfield(L, LUA_REGISTRYINDEX, IMP_VM_TASKS_KEY);
    lua_pushthread(L);
    lua_rawget(L, -2);
    int own = !lua_isnil(L, -1);
    lua_pop(L, 2);
    lua_getfield(L, LUA_REGISTRYINDEX, IMP_VM_ADOPTED_KEY);
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

/* A task's coroutine blocked in core.wait(event) until core.signal(event)
 * or its timeout. */
struct imp_evwait {
    ev_timer timer; /* first: the timer callback finds the struct */
    struct imp_evwait *next, *prev;
    struct imp_host *h;
    struct imp_task *t;
    double event;
};

/* event() -> a new event id, for wait/signal between this VM's coroutines */
static int l_event(lua_State *L)
{
    struct imp_host *h = imp_host_of(L);
    lua_pushnumber(L, ++h->next_event);
    return 1;
}

static void evwait_unlink(struct imp_evwait *ew)
{
    struct imp_host *h = ew->h;
    if (ew->prev)
        ew->prev->next = ew->next;
    else
        h->evwaits = ew->next;
    if (ew->next) ew->next->prev = ew->prev;
    ev_timer_stop(h->loop, &ew->timer);
}

/* Resumes a woken waiter from the inbox (never from inside signal). */
static void evwait_wake(void *arg)
{
    struct imp_evwait *ew = arg;
    struct imp_task *t = ew->t;
    free(ew);
    lua_pushboolean(t->co, 1);
    imp_task_resume(t, 1);
}

static void evwait_timeout(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    struct imp_evwait *ew = (struct imp_evwait *)tm;
    struct imp_task *t = ew->t;
    evwait_unlink(ew);
    free(ew);
    lua_pushnil(t->co);
    lua_pushliteral(t->co, "timeout");
    imp_task_resume(t, 2);
}

/* wait(event, timeout_ms) -> true (pending): the coroutine yields until
 * signal(event) (resumed with true) or the timeout (nil, "timeout"). */
static int l_wait(lua_State *L)
{
    struct imp_host *h = imp_host_of(L);
    struct imp_task *t = imp_task_current(L);
    double event = luaL_checknumber(L, 1);
    double timeout = luaL_optnumber(L, 2, h->cfg->rpc_timeout_ms);
    if (!t) return luaL_error(L, "wait called outside a message coroutine");
    struct imp_evwait *ew = imp_xcalloc(1, sizeof(*ew));
    ew->h = h;
    ew->t = t;
    ew->event = event;
    ew->next = h->evwaits;
    if (h->evwaits) h->evwaits->prev = ew;
    h->evwaits = ew;
    ev_timer_init(&ew->timer, evwait_timeout, timeout > 0 ? timeout / 1000.0 : 0.001, 0.);
    ev_timer_start(h->loop, &ew->timer);
    t->waiting = 1;
    lua_pushboolean(L, 1);
    return 1;
}

/* signal(event) -> number of coroutines woken (they resume later, on this
 * loop, after the signalling coroutine yields or returns). */
static int l_signal(lua_State *L)
{
    struct imp_host *h = imp_host_of(L);
    double event = luaL_checknumber(L, 1);
    int n = 0;
    struct imp_evwait *ew = h->evwaits;
    while (ew) {
        struct imp_evwait *next = ew->next;
        if (ew->event == event) {
            evwait_unlink(ew);
            imp_inbox_post(h->inbox, evwait_wake, ew);
            n++;
        }
        ew = next;
    }
    lua_pushinteger(L, n);
    return 1;
}

void imp_host_dispose(struct imp_host *h)
{
    while (h->evwaits) {
        struct imp_evwait *ew = h->evwaits;
        evwait_unlink(ew);
        free(ew);
    }
}

const luaL_Reg imp_task_lib[] = {
    {"adopt", l_adopt}, {"event", l_event}, {"wait", l_wait}, {"signal", l_signal}, {NULL, NULL},
};

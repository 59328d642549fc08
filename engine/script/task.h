/*
 * The task runtime: the coroutine and yield machinery every engine call
 * made from Lua rides on (DESIGN.md §4, §7). A task is one unit of work
 * running in its own coroutine on a worker's loop: a Kafka record, a
 * push-service call, `impulse test`'s busted run. The push pipeline
 * (push/) embeds a struct imp_task in its message and says, through
 * imp_task_ops, what a resume means for it; the engine calls (calls/)
 * use only this header and the host's fields, never the worker.
 *
 * The pattern: a C function called from the task's coroutine starts the
 * operation, marks the task waiting (imp_task_wait) and returns; its Lua
 * wrapper yields. When the answer arrives on the host's loop, the module
 * pushes the results on t->co and calls imp_task_resume(t, nresults).
 * Answers from other threads must first be posted to h->inbox.
 *
 * Everything here runs on the host's loop thread; nothing blocks.
 */
#ifndef IMP_TASK_H
#define IMP_TASK_H

#include <lauxlib.h>
#include <lua.h>

#include "base/inbox.h"
#include "net/grpc.h"

struct imp_config;
struct imp_shared;
struct imp_chans;
struct imp_producer;
struct imp_api_clients;
struct imp_httpbatch;
struct imp_vm;
struct imp_task;
struct imp_host;
struct imp_evwait;

/* What a task's owner does when a task is resumed. */
struct imp_task_ops {
    /* Resumes t's coroutine with the nargs values pushed on it and acts
     * on the outcome (finished, failed, waiting again). t may be freed
     * when this returns. */
    void (*resume)(struct imp_task *t, int nargs);
    /* Starts whatever became runnable meanwhile. */
    void (*run_ready)(struct imp_host *h);
};

/* One loop's context: what the engine calls of its tasks reach. Owned by
 * the worker (push/worker.c), which fills every field; the calls modules
 * create their own clients here on first use (api, httpbatch), and the
 * worker destroys them when it ends. */
struct imp_host {
    int id; /* the worker's number, for logs */
    struct ev_loop *loop;
    struct imp_inbox *inbox;
    const struct imp_config *cfg;
    struct imp_shared *shared;       /* the tables every thread reads */
    struct imp_chans *chans;         /* this loop's gRPC channels */
    struct imp_producer *producer;   /* NULL before the worker consumes, and in tests */
    struct imp_api_clients *api;     /* calls/api.c: scripts' Redis and HTTP clients */
    struct imp_httpbatch *httpbatch; /* calls/httpbatch.c: the providers' sender */
    struct imp_grpcc *grpcc;         /* impulse.grpcClient h2: gRPC on this loop (net/grpcc.c) */
    const struct imp_task_ops *ops;
    struct imp_evwait *evwaits; /* coroutines blocked in core.wait */
    double next_event;          /* ids handed out by core.event */
};

/* OpenIM's four Kafka headers and gRPC metadata, in this order. */
enum { IMP_MD_OPID, IMP_MD_OPUSER, IMP_MD_PLATFORM, IMP_MD_CONNID, IMP_MD_COUNT };
extern const char *const imp_md_header_names[IMP_MD_COUNT]; /* operationID, ... */

struct imp_task {
    struct imp_host *host;
    struct imp_vm *vm;      /* the VM it runs on, to its end */
    lua_State *co;          /* its coroutine (on vm), NULL until bound */
    int co_ref;             /* registry reference that keeps co alive */
    int waiting;            /* yielded inside an engine call */
    char *md[IMP_MD_COUNT]; /* owned; NULL where absent */
    int temp_admin;         /* calls carry OpenIM main's temp-admin metadata */
};

/* Entries imp_task_grpc_md fills (absent ones have a NULL value), and
 * where opuserid is among them. */
#define IMP_TASK_GRPC_MD   6
#define IMP_TASK_MD_OPUSER 3

/* Cannot fail. */
void imp_task_init(struct imp_task *t, struct imp_host *h);
/* Gives t a new coroutine on vm, registered so imp_task_current finds t
 * from it (and from coroutines the script adopts into it). */
void imp_task_bind(struct imp_task *t, struct imp_vm *vm);
/* Unregisters the coroutine and frees the metadata; t's memory stays the
 * caller's. */
void imp_task_dispose(struct imp_task *t);

/* The task whose coroutine is L (its own, or one a script created and
 * adopted while running it), or NULL: a coroutine kept past its task finds
 * none, so its engine calls fail instead of touching a freed task. */
struct imp_task *imp_task_current(lua_State *L);

static inline lua_State *imp_task_co(struct imp_task *t) { return t->co; }
static inline struct imp_vm *imp_task_vm(struct imp_task *t) { return t->vm; }
/* The coroutine is about to yield inside an engine call. */
static inline void imp_task_wait(struct imp_task *t) { t->waiting = 1; }
/* The operationID, "" when absent. */
const char *imp_task_opid(const struct imp_task *t);
/* OpenIM's outgoing metadata (operationid, opuserid, platform, connid;
 * with temp_admin first ctximtempadminkey and customheader, as OpenIM main's
 * client interceptor sends custom keys before the four: tools@v0.0.50-
 * alpha.117:mw/grpc/client/context.go:13-47), valid while the task lives. */
void imp_task_grpc_md(const struct imp_task *t, struct imp_grpc_md md[IMP_TASK_GRPC_MD]);

/* Resumes the coroutine with the nargs values pushed on its stack
 * (through the owner's ops), then starts whatever became runnable. t may
 * be freed when this returns. */
void imp_task_resume(struct imp_task *t, int nargs);

/* A node of OpenIM service `name` on h's channels, round robin; NULL when
 * none is registered. */
struct imp_grpc_channel *imp_host_service(struct imp_host *h, const char *name);
/* A unary call to ch's node, as imp_grpc_unary, the callback on h's
 * thread: through h's own HTTP/2 client when it has one and can dial the
 * node's address, else through the gRPC C core and h's inbox. */
int imp_host_unary(struct imp_host *h, struct imp_grpc_channel *ch, const char *method,
                   const void *req, size_t len, int timeout_ms, const struct imp_grpc_md *md,
                   size_t nmd, imp_grpc_cb cb, void *arg);
/* Frees what the runtime keeps on h (waiters of core.wait). */
void imp_host_dispose(struct imp_host *h);

/* The host of an impulse.core function: its upvalue 1 (script/vm.c). */
static inline struct imp_host *imp_host_of(lua_State *L)
{
    return (struct imp_host *)lua_touserdata(L, lua_upvalueindex(1));
}

/* impulse.core functions of the runtime: adopt(co), event(),
 * wait(event, timeout_ms), signal(event). Upvalue 1: the host. */
extern const luaL_Reg imp_task_lib[];

#endif

/*
 * What engine calls made from Lua need from the worker: the message being
 * handled (a task), its coroutine, and how to resume it when the answer
 * comes. Modules that give scripts an engine call (group.c, later redis,
 * http, kafka) use only this, never the worker's internals.
 *
 * The pattern (DESIGN.md §7): a C function called from the message's
 * coroutine starts the operation, marks the task waiting (imp_task_wait)
 * and returns true; its Lua wrapper yields. When the answer arrives on the
 * worker's loop, the module pushes the results on imp_task_co(t) and calls
 * imp_task_resume(t, nresults). Answers from other threads must first be
 * posted to imp_worker_inbox(w).
 */
#ifndef IMP_TASK_H
#define IMP_TASK_H

#include <lua.h>

#include "grpc.h"
#include "inbox.h"

struct task;
struct imp_worker;
struct imp_engine;
struct imp_config;

/* The task whose coroutine is L, or NULL when L is not a message coroutine. */
struct task *imp_task_current(lua_State *L);
struct imp_worker *imp_task_worker(struct task *t);
struct imp_vm *imp_task_vm(struct task *t);
lua_State *imp_task_co(struct task *t);
const char *imp_task_opid(struct task *t);
/* OpenIM's outgoing metadata of the message (operationid, opuserid,
 * platform, connid), valid while the task lives. */
void imp_task_grpc_md(struct task *t, struct imp_grpc_md md[4]);
/* The coroutine is about to yield inside an engine call. */
void imp_task_wait(struct task *t);
/* Resumes the coroutine with the nargs values pushed on its stack, then
 * starts whatever became runnable. t may be freed when this returns. */
void imp_task_resume(struct task *t, int nargs);

struct imp_engine *imp_worker_engine(struct imp_worker *w);
const struct imp_config *imp_worker_config(struct imp_worker *w);
struct imp_inbox *imp_worker_inbox(struct imp_worker *w);
struct ev_loop *imp_worker_loop(struct imp_worker *w);
/* The worker's channel to addr (created on first use, kept). */
struct imp_grpc_channel *imp_worker_channel(struct imp_worker *w, const char *addr);
/* The worker's lazily created clients for script engine calls (api.c). */
struct imp_api_clients **imp_worker_api(struct imp_worker *w);
/* The worker's batch sender for the providers' transports (httpbatch.c). */
struct imp_httpbatch **imp_worker_httpbatch(struct imp_worker *w);
/* The worker's Kafka producer (NULL before it consumes, and in tests). */
struct imp_producer *imp_worker_producer(struct imp_worker *w);
/* A node of service name, round robin; NULL when none is registered. */
struct imp_grpc_channel *imp_worker_service(struct imp_worker *w, const char *name);

#endif

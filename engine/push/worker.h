/*
 * A worker thread: a libev loop, a LuaJIT VM holding the policy, Kafka
 * consumers of toPush (group `push`) and toOfflinePush, and its own gRPC
 * channels. The push pipeline's entry point; push/worker_int.h lists the
 * files behind it.
 *
 * Per message: decode PushMsgReq, queue it behind earlier messages of its
 * Kafka key, run the policy's route() in a coroutine, look recipients up in
 * the online table, fan out to every gateway, log the route, then mark the
 * message done so its offset can be stored. A bad record, a failing script
 * or a failing peer costs that message only.
 */
#ifndef IMP_WORKER_H
#define IMP_WORKER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct imp_vm;
struct imp_scripts;
struct imp_config;
struct imp_shared;
struct imp_worker;
struct imp_barrier;
struct imp_journal;

/* What a worker gets from the engine above it: the config, the shared
 * tables, and two calls back up. Copied by imp_worker_create. */
struct imp_worker_env {
    const struct imp_config *cfg;
    struct imp_shared *shared;
    /* every worker waits here twice on its way out (drained, committed) */
    struct imp_barrier *drain_barrier;
    /* poison-pill memory: slot = worker id; NULL: none */
    struct imp_journal *journal;
    /* a consumer could not start: stop the process with exit code 1 */
    void (*fatal)(void *arg, const char *why);
    /* a VM ran out of memory: start new messages on fresh VMs */
    void (*reload)(void *arg, const char *why);
    void *arg;
};

/* Builds the worker and its VM (scripts are loaded here, so a broken script
 * stops the start). Returns NULL with the reason in err. */
struct imp_worker *imp_worker_create(const struct imp_worker_env *env, int id,
                                     const struct imp_scripts *scripts, char *err, size_t errlen);
/* Starts the thread. */
int imp_worker_start(struct imp_worker *w);
/* Asks the worker to create its consumer and join the group. Thread-safe. */
void imp_worker_consume(struct imp_worker *w);
/* Asks the worker to stop fetching, drain in-flight messages (bounded by
 * drainTimeoutMs), commit and exit its thread. Thread-safe. */
void imp_worker_stop(struct imp_worker *w);
void imp_worker_join(struct imp_worker *w);
/* Frees the worker; its thread must be joined and gRPC stopped. */
void imp_worker_destroy(struct imp_worker *w);

/* What the worker's thread is doing synchronously now (a record's decode,
 * a run of the scripts and the engine calls it makes), for the engine's
 * stuck-worker watchdog. 0 when idle; else 1 with the step's number (each
 * step has a new one), the thread's CPU time so far in ms, and the step
 * described in what ("toPush[3]@1234") and its operationID in opid.
 * Thread-safe. */
int imp_worker_step(struct imp_worker *w, unsigned long *seq, double *cpu_ms, char *what,
                    size_t whatlen, char *opid, size_t opidlen);

/* Push-service calls (openim.push.PushMsgService) the worker runs. */
enum { IMP_RPC_PUSHMSG = 1, IMP_RPC_DELTOKEN = 2 };
struct imp_grpc_scall;
/* Hands a call to the worker (any thread; req valid until the call is
 * answered). The worker answers it when its task ends. IMP_ECLOSED when the
 * worker has finished: the caller answers. */
/* OpenIM's rpc_count{name,path,code}: one per call the push service
 * answers, as OpenIM's server interceptor counts them (name: the push
 * service's register name; path: the full method; code: the gRPC status)
 * (OpenIM@v3.8.3:pkg/common/prommetrics/rpc.go:16-22, startrpc/start.go:216-232). */
void imp_rpc_count(const char *service, const char *path, int code);

int imp_worker_rpc(struct imp_worker *w, struct imp_grpc_scall *c, int kind, const uint8_t *req,
                   size_t len);

/* Readiness: every consumer (toPush, and toOfflinePush unless
 * impulse.consumeOffline is off) has had its first assignment. */
int imp_worker_assigned(const struct imp_worker *w);
/* Partitions of toPush (offline 0) or toOfflinePush (offline 1) held now,
 * -1 when that topic is not consumed; messages in flight. Thread-safe
 * (approximate). */
int imp_worker_partitions(const struct imp_worker *w, int offline);
int imp_worker_inflight(const struct imp_worker *w);
/* Dead letters of this worker failing for good (after 5 attempts): the
 * engine is not ready while any is. Thread-safe. */
int imp_worker_dead_letters_stuck(const struct imp_worker *w);
/* The configured offline provider's settings and credentials, and every
 * account of impulse.apps, checked in the worker's VM before it runs (the
 * start, `impulse check`). 0 with what else was checked in err ("" or
 * "apps: shop (getui, fcm)"), or an error with one line in err. */
int imp_worker_check_provider(struct imp_worker *w, char *err, size_t errlen);

/* impulse test: runs busted (argv: its arguments) in one engine coroutine
 * on the calling thread, in a VM without the sandbox. Returns an exit code
 * (busted usually exits the process itself). */
int imp_worker_run_tests(const struct imp_worker_env *env, int argc, char **argv);

struct lua_State;
/* impulse explain (and test): runs the Lua chunk `code` in one engine
 * coroutine on the calling thread, in a VM without the sandbox (scripts
 * are loaded into it sandboxed, as in production), with the global arg =
 * {[0] = name, argv...} and the arguments push(co, ud) pushes (it returns
 * their count; NULL: none). Returns 0 when the chunk returned, 1 when it
 * raised (the error on stderr), 2 when it could not start. */
int imp_worker_run_chunk(const struct imp_worker_env *env, const char *name, const char *code,
                         int argc, char **argv, int (*push)(struct lua_State *co, void *ud),
                         void *ud);

/* Hot reload. build_vm makes a VM with this worker's engine calls, the
 * scripts of the snapshot, and their check() run (any thread; NULL
 * with "file:line: message" in err). install_vm hands it over: the worker
 * starts new messages on it; messages in flight finish on the old VM,
 * which is closed when the last of them is done. Thread-safe. */
struct imp_vm *imp_worker_build_vm(struct imp_worker *w, const struct imp_scripts *scripts,
                                   char *err, size_t errlen);
void imp_worker_install_vm(struct imp_worker *w, struct imp_vm *vm);

#endif

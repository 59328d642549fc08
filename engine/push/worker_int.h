/*
 * The push pipeline's shared internals: the worker, its two streams and
 * the message every file of push/ works on. Only the .c files of push/
 * include this; the rest of the engine sees worker.h.
 *
 * Who owns what:
 *   worker.c    the thread, its loop, the Kafka streams, the message
 *               lifecycle (decode, keyed queue, start, resume, done),
 *               drain and stop, VM install;
 *   svccall.c   push-service calls (PushMsg, DelUserPushToken) as messages;
 *   fanout.c    core.push_online: presence lookup, gateway fan-out, the
 *               route log line;
 *   handoff.c   core.offline_handoff: records to toOfflinePush;
 *   deadletter.c dead letters: a failed record, and core.offline_dead_letter;
 *   corelib.c   the impulse.core module assembled from every layer.
 * Everything runs on the worker's loop thread.
 */
#ifndef IMP_WORKER_INT_H
#define IMP_WORKER_INT_H

#include <librdkafka/rdkafka.h>
#include <lua.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "base/barrier.h"
#include "base/buf.h"
#include "base/inbox.h"
#include "base/keyq.h"
#include "base/ring.h"
#include "base/strset.h"
#include "net/kafka.h"
#include "push.pb-c.h"
#include "push/worker.h"
#include "script/task.h"

/* Where a message came from: a toPush or toOfflinePush record, or a call
 * to the push service (PushMsg, DelUserPushToken) answered when the
 * message ends. */
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
    struct imp_metric *m_ok, *m_revoked;
};

/* A message: one record or one call, from arrival to its end. */
struct msg {
    struct imp_keyq_node qnode; /* first: container of the node */
    struct imp_task task;       /* its coroutine, VM and metadata */
    struct msg *next, *prev;    /* the worker's list */
    struct msg *run_next;
    struct imp_worker *w;
    int kind;
    struct stream *s;           /* K_KAFKA: where the record came from */
    struct imp_grpc_scall *rpc; /* K_PUSHMSG, K_DELTOKEN: the call to answer */
    Openim__Push__DelUserPushTokenReq *del;
    rd_kafka_message_t *rkm;
    struct imp_msgref ref;
    Openim__Push__PushMsgReq *req;
    int stopped;             /* over budget while waiting: finish when the call answers */
    const char *fail_reason; /* set when the message failed (dead-letter reason) */
    char *fail_error;
    int dead_lettered; /* its offset is stored when the dead letter is acked */
    uint64_t lua_ns;   /* Lua time used so far (the budget) */
    int started;
    int skipped; /* never run: its partition was revoked before it started */
    uint64_t start_ms;
    int64_t send_ms;        /* a toPush record's sendTime (wall clock), 0 otherwise */
    struct imp_buf msgdata; /* MsgData re-encoded with status 2 */
    /* online push (fanout.c) */
    struct imp_strset users;
    char **online;
    size_t nonline;
    unsigned char *online_flags; /* per user in users: online */
    struct imp_svclist *gws;
};

static inline struct msg *msg_of(struct imp_task *t)
{
    return (struct msg *)((char *)t - offsetof(struct msg, task));
}

/* The message running the coroutine L, or NULL. */
static inline struct msg *msg_current(lua_State *L)
{
    struct imp_task *t = imp_task_current(L);
    return t ? msg_of(t) : NULL;
}

/* The worker of an impulse.core function: upvalue 1 is the worker's host,
 * its first member. */
static inline struct imp_worker *worker_of(lua_State *L)
{
    return (struct imp_worker *)imp_host_of(L);
}

static inline const char *msg_opid(const struct msg *m) { return imp_task_opid(&m->task); }
/* its opUserID header, or NULL (OpenIM's log lines carry it) */
static inline const char *msg_opuser(const struct msg *m) { return m->task.md[IMP_MD_OPUSER]; }

struct dead;

/* A push-service call waiting to reach the worker's loop. */
struct rpc_job {
    struct rpc_job *next;
    struct imp_grpc_scall *c;
    int kind;
    const uint8_t *req;
    size_t len;
};

struct imp_worker {
    struct imp_host host; /* what the engine calls of its messages reach */
    struct imp_worker_env env;
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
    int nstreams;          /* S_OFFLINE too when impulse.consumeOffline */
    int dead_pending;      /* dead letters sent, not acknowledged */
    struct dead *deads;    /* those dead letters (deadletter.c) */
    atomic_int dead_stuck; /* of those, failing for good (readiness) */
    struct msg *msgs;
    struct msg *runq_head, *runq_tail;
    int inflight; /* messages of every stream, and calls */
    int stopping;
    int finished;
    ev_timer drain_timer;
    atomic_int inflight_pub;
    pthread_mutex_t rpc_lock; /* guards rpc_jobs, rpc_closed */
    struct rpc_job *rpc_jobs;
    int rpc_closed;
    struct imp_metric *m_lua_ms, *m_msg_ms, *m_e2e_ms;
    struct imp_metric *m_long, *m_poison;
    /* impulse.gatewaySelection hash: the gateways' ring, built again when
     * the gateway list's version moves (fanout.c) */
    struct imp_ring *ring;
    uint64_t ring_version;
    /* impulse.grpcClient h2: the gRPC calls of this loop (net/grpcc.c) */
    struct imp_grpcc *grpcc;
    /* the synchronous step running now (imp_worker_step); step_depth is
     * the thread's own, the rest is read by the watchdog under step_lock */
    int step_depth;
    pthread_mutex_t step_lock;
    unsigned long step_seq;
    int step_busy;
    const char *step_label; /* the stream's label, or NULL for a call */
    int step_kind;
    int32_t step_partition;
    int64_t step_offset;
    char step_opid[96];
};

/* worker.c */
struct msg *imp_msg_new(struct imp_worker *w);
/* Queues a message that may start now (the head of its key). */
void imp_msg_runnable(struct imp_worker *w, struct msg *m);
/* Starts every runnable message, from one loop (never by recursion). */
void imp_worker_run_ready(struct imp_worker *w);
/* Logs the failure with the message's operationID, counts it by reason
 * and remembers it for the dead letter or the call's answer. */
void imp_msg_fail(struct msg *m, const char *reason, const char *what, const char *detail);
/* The message is fully handled: offset, next message of its key, free. */
void imp_msg_done(struct msg *m);
/* Finishes the worker once it is stopping and nothing is in flight. */
void imp_worker_maybe_finish(struct imp_worker *w);

/* svccall.c */
extern const char *const imp_svccall_names[]; /* by kind: "", PushMsg, ... */
/* A call's message ended: answer it (empty reply, or the failure). */
void imp_svccall_answer(struct msg *m);
/* The worker is ending: answer every call not answered yet with
 * UNAVAILABLE and refuse later ones. */
void imp_svccall_close(struct imp_worker *w);

/* deadletter.c */
/* Sends the failed record of m to its stream's dead-letter topic; its
 * offset is stored only once the dead letter is acknowledged (imp_msg_done
 * skips it). Nothing for a message that did not fail or has no record. */
void imp_deadletter_record(struct msg *m);
/* Shutdown past the drain deadline: drops the dead letters not yet
 * acknowledged (their records are released, their offsets not stored, so
 * the partition's next owner consumes them again). */
void imp_deadletter_abandon(struct imp_worker *w);
int imp_lua_offline_dead_letter(lua_State *L);
int imp_lua_providers(lua_State *L);

/* handoff.c */
struct handoff;
/* Produces PushMsgReq{msgData = md, userIDs = the strings of the Lua list
 * at users_idx} records to topic, split under OpenIM's 1,000,000 bytes,
 * each with a copy of hdrs; see handoff.c. */
struct handoff *imp_handoff_new(struct msg *m);
size_t imp_handoff_produce(struct imp_worker *w, lua_State *L, int users_idx, const char *topic,
                           const struct imp_buf *key, const struct imp_buf *md,
                           rd_kafka_headers_t *hdrs, struct handoff *ho);
int imp_handoff_return(lua_State *L, struct msg *m, struct handoff *ho, const char *what);
int imp_lua_offline_handoff(lua_State *L);

/* fanout.c */
int imp_lua_push_online(lua_State *L);

/* corelib.c */
extern const luaL_Reg *const imp_core_libs[];

#endif

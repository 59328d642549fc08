/*
 * The engine: the process's threads (workers, watcher) and the state they
 * share, with start-up readiness, status and reload. Owned by main.c;
 * everything here outlives every thread. The layers below never see this
 * struct: the workers get a struct imp_worker_env, the watcher a struct
 * imp_watcher_hooks, the engine calls the shared tables through their host.
 */
#ifndef IMP_ENGINE_H
#define IMP_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>

#include "base/buf.h"
#include "base/config.h"
#include "daemon/watcher.h"
#include "push/worker.h"
#include "state/shared.h"

struct imp_pushsvc;
struct imp_announce;

struct imp_engine {
    struct imp_config *cfg;
    struct imp_shared shared; /* online table, registry, caches */
    struct imp_watcher *watcher;
    struct imp_worker **workers;
    int nworkers;
    struct imp_pushsvc *pushsvc;   /* main thread */
    struct imp_announce *announce; /* main thread */
    atomic_int online_loaded;      /* the first full online load finished */
    atomic_int consuming;          /* workers were told to join the groups */
    atomic_int stopping;           /* 1: stopping; 2: stopping after a fatal error */
    /* Workers leave their consumer groups only once every worker has
     * drained and committed: a worker leaving early would start a rebalance
     * that revokes partitions from a worker still finishing messages (their
     * offsets could no longer be stored) and makes the group refuse the
     * other workers' final commits. Used twice: drained, then committed. */
    pthread_barrier_t drain_barrier;
};

/* Creates the shared tables for cfg (shards: of the online table); the
 * rest of e is zero. imp_engine_dispose frees them. */
void imp_engine_init(struct imp_engine *e, struct imp_config *cfg, unsigned shards);
void imp_engine_dispose(struct imp_engine *e);

/* What e gives its workers and its watcher: the shared tables and the
 * calls back up (a fatal consumer error, a reload request; the online
 * table loaded, a reload to build and install). */
void imp_engine_worker_env(struct imp_engine *e, struct imp_worker_env *env);
void imp_engine_watcher_hooks(struct imp_engine *e, struct imp_watcher_hooks *hooks);

/* 1 when ready to take traffic; otherwise 0 with the reason appended. */
int imp_engine_ready(struct imp_engine *e, struct imp_buf *why);

/* Appends a JSON object describing the engine (for /healthz). */
void imp_engine_status_json(struct imp_engine *e, struct imp_buf *out);

#endif

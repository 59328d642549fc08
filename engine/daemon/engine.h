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

#include "base/barrier.h"
#include "base/buf.h"
#include "base/config.h"
#include "daemon/watcher.h"
#include "push/worker.h"
#include "state/shared.h"

struct imp_pushsvc;
struct imp_announce;
struct imp_journal;
struct imp_watch;

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
    struct imp_barrier drain_barrier;
    struct imp_journal *journal; /* poison-pill memory, or NULL */
    atomic_int stuck;            /* workers found stuck in one step */
    struct imp_watch *watch;     /* the watchdog's view of each worker */
    /* what is wrong with openim-push.enable's provider (its keys empty...),
     * or NULL: impulse starts anyway, as openim-push does, and says so */
    char *provider_problem;
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

/* The stuck-worker watchdog, every few hundred ms on the main thread. A
 * worker whose current step (imp_worker_step) has used workerStuckMs of CPU
 * time, or twelve times that of wall time, is stuck in a call nothing can
 * interrupt: it is logged with the step's operationID and record, counted
 * (impulse_worker_stuck_total), readiness turns 503, and its party leaves
 * the drain barrier so the others can drain and commit without it. Returns
 * that worker's id (once), else -1; the caller then stops the process for
 * its supervisor to restart it (exit code 3), and the crash journal makes
 * the record that did it a poison pill after impulse.poisonDeaths such
 * deaths. */
int imp_engine_watchdog(struct imp_engine *e);
/* 1 when the watchdog found worker i stuck (main thread). */
int imp_engine_worker_stuck(const struct imp_engine *e, int i);

/* 1 when ready to take traffic; otherwise 0 with the reason appended. */
int imp_engine_ready(struct imp_engine *e, struct imp_buf *why);

/* Appends a JSON object describing the engine (for /healthz). */
void imp_engine_status_json(struct imp_engine *e, struct imp_buf *out);

#endif

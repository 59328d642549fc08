/*
 * The engine: state shared by the main thread, the watcher and the
 * workers. Owned by main.c; everything here outlives every thread.
 */
#ifndef IMP_ENGINE_H
#define IMP_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>

#include "buf.h"
#include "config.h"
#include "online.h"
#include "registry.h"

struct imp_worker;
struct imp_watcher;
struct imp_localcache;
struct imp_slot;
struct imp_pushsvc;
struct imp_announce;

struct imp_engine {
    struct imp_config *cfg;
    struct imp_online *online;
    struct imp_registry *registry;
    struct imp_localcache *group_cache; /* GROUP_MEMBER_IDS:<groupID> */
    struct imp_slot *online_lru;        /* fullUserCache: false only */
    struct imp_watcher *watcher;
    struct imp_worker **workers;
    int nworkers;
    struct imp_pushsvc *pushsvc;   /* main thread */
    struct imp_announce *announce; /* main thread */
    atomic_int online_loaded;      /* the first full online load finished */
    atomic_int consuming;          /* workers were told to join the groups */
    atomic_int stopping;
    /* Workers leave their consumer groups only once every worker has
     * drained and committed: a worker leaving early would start a rebalance
     * that revokes partitions from a worker still finishing messages (their
     * offsets could no longer be stored) and makes the group refuse the
     * other workers' final commits. Used twice: drained, then committed. */
    pthread_barrier_t drain_barrier;
};

/* Called on the watcher thread when the online table is loaded: the first
 * time, tells every worker to join its consumer group (OpenIM's order:
 * subscribe, load, apply the buffer, then consume). */
void imp_engine_online_loaded(struct imp_engine *e);

/* 1 when ready to take traffic; otherwise 0 with the reason appended. */
int imp_engine_ready(struct imp_engine *e, struct imp_buf *why);

/* Appends a JSON object describing the engine (for /healthz). */
void imp_engine_status_json(struct imp_engine *e, struct imp_buf *out);

#endif

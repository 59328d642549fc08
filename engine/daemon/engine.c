/*
 * The engine's own decisions: the shared state's life, OpenIM's start-up
 * order (the workers join their consumer groups only once the online table
 * is loaded), reload (a VM per worker built aside, all installed or none),
 * a fatal consumer error, readiness and status. Readiness and status read
 * the threads' published atomics: no locks, no waiting.
 */
#include "daemon/engine.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/common.h"
#include "base/log.h"
#include "base/metrics.h"
#include "calls/group.h"
#include "calls/presence.h"
#include "daemon/announce.h"
#include "daemon/pushsvc.h"
#include "net/chans.h"
#include "script/vm.h"
#include "state/cache/localcache.h"
#include "state/cache/slot.h"
#include "state/online.h"
#include "state/registry.h"

void imp_engine_init(struct imp_engine *e, struct imp_config *cfg, unsigned shards)
{
    const char *svcs[] = {cfg->svc_gateway, cfg->svc_user, cfg->svc_group, cfg->svc_conversation,
                          cfg->svc_msg};
    e->cfg = cfg;
    e->shared.online = imp_online_create(shards);
    e->shared.registry = imp_registry_create(svcs, IMP_ARRAY_LEN(svcs));
    e->shared.group_cache = imp_group_cache_create(cfg);
    e->shared.online_lru = imp_presence_lru_create(cfg);
    imp_metrics_counter("impulse_worker_stuck_total", NULL,
                        "Workers found stuck in one step (the process then restarts)");
}

void imp_engine_dispose(struct imp_engine *e)
{
    free(e->watch);
    free(e->provider_problem);
    imp_registry_destroy(e->shared.registry);
    imp_localcache_destroy(e->shared.group_cache);
    imp_slot_destroy(e->shared.online_lru);
    imp_online_destroy(e->shared.online);
}

/* The watcher loaded the online table: the first time, every worker joins
 * its consumer groups (OpenIM's order: subscribe, load, apply the buffer,
 * then consume). */
static void online_loaded(void *arg)
{
    struct imp_engine *e = arg;
    atomic_store(&e->online_loaded, 1);
    if (atomic_exchange(&e->consuming, 1)) return;
    if (atomic_load(&e->stopping)) return;
    for (int i = 0; i < e->nworkers; i++) imp_worker_consume(e->workers[i]);
}

/* On the watcher thread: a VM per worker from one snapshot of the scripts,
 * each checked; installed only if every one built. */
static int reload(void *arg, const struct imp_scripts *scripts, char *err, size_t errlen)
{
    struct imp_engine *e = arg;
    struct imp_vm **vms = imp_xcalloc((size_t)e->nworkers + 1, sizeof(*vms));
    int ok = 1;
    for (int i = 0; i < e->nworkers && ok; i++) {
        vms[i] = imp_worker_build_vm(e->workers[i], scripts, err, errlen);
        ok = vms[i] != NULL;
    }
    for (int i = 0; i < e->nworkers; i++) {
        if (ok)
            imp_worker_install_vm(e->workers[i], vms[i]);
        else
            imp_vm_destroy(vms[i]);
    }
    free(vms);
    return ok ? 0 : IMP_ESCRIPT;
}

/* A worker's consumer could not start: stop the process, exit code 1. */
static void fatal(void *arg, const char *why)
{
    struct imp_engine *e = arg;
    (void)why; /* the worker logged it */
    atomic_store(&e->stopping, 2);
    kill(getpid(), SIGTERM);
}

/* A VM ran out of memory: fresh VMs for new messages. */
static void reload_request(void *arg, const char *why)
{
    struct imp_engine *e = arg;
    if (e->watcher) imp_watcher_reload(e->watcher, why);
}

void imp_engine_worker_env(struct imp_engine *e, struct imp_worker_env *env)
{
    *env = (struct imp_worker_env){
        .cfg = e->cfg,
        .shared = &e->shared,
        .drain_barrier = &e->drain_barrier,
        .journal = e->journal,
        .fatal = fatal,
        .reload = reload_request,
        .arg = e,
    };
}

void imp_engine_watcher_hooks(struct imp_engine *e, struct imp_watcher_hooks *hooks)
{
    *hooks = (struct imp_watcher_hooks){.online_loaded = online_loaded, .reload = reload, .arg = e};
}

/* What the watchdog last saw of a worker's step. */
struct imp_watch {
    unsigned long seq; /* the step */
    double cpu_ms;     /* the thread's CPU time when first seen */
    uint64_t wall_ms;  /* and the clock's */
    int busy;
    int stuck; /* declared stuck: its thread is never waited for again */
};

int imp_engine_watchdog(struct imp_engine *e)
{
    int limit = e->cfg->worker_stuck_ms;
    if (!limit) return -1;
    if (!e->watch) e->watch = imp_xcalloc((size_t)e->nworkers, sizeof(*e->watch));
    for (int i = 0; i < e->nworkers; i++) {
        struct imp_watch *v = &e->watch[i];
        if (v->stuck) continue;
        unsigned long seq;
        double cpu;
        char what[160], opid[96];
        if (!imp_worker_step(e->workers[i], &seq, &cpu, what, sizeof(what), opid, sizeof(opid))) {
            v->busy = 0;
            continue;
        }
        uint64_t now = imp_now_ms();
        if (!v->busy || v->seq != seq) { /* a step not seen before */
            *v = (struct imp_watch){.seq = seq, .cpu_ms = cpu, .wall_ms = now, .busy = 1};
            continue;
        }
        double used = cpu - v->cpu_ms;
        uint64_t waited = now - v->wall_ms;
        if (used < limit && waited < (uint64_t)limit * 12) continue;
        imp_log(IMP_LOG_ERROR, opid[0] ? opid : NULL,
                "worker %d is stuck: one step on %s has run %.0f ms of CPU time (%llu ms "
                "in all; impulse.workerStuckMs %d), in a call no budget can stop; %s",
                i, what, used, (unsigned long long)waited, limit,
                e->cfg->worker_stuck_exit
                    ? "impulse exits (code 3) for its supervisor to restart it, and the record "
                      "counts a death in the crash journal"
                    : "impulse stays up, not ready (impulse.workerStuckExit is false), until "
                      "it is stopped");
        imp_metrics_inc("impulse_worker_stuck_total", NULL, 1);
        v->stuck = 1;
        atomic_fetch_add(&e->stuck, 1);
        imp_barrier_leave(&e->drain_barrier);
        return i;
    }
    return -1;
}

int imp_engine_worker_stuck(const struct imp_engine *e, int i)
{
    return e->watch && e->watch[i].stuck;
}

int imp_engine_ready(struct imp_engine *e, struct imp_buf *why)
{
    int ok = 1;
    int stuck = atomic_load(&e->stuck);
    if (stuck) {
        imp_buf_printf(why, "%d worker%s stuck in one step (see the log); ", stuck,
                       stuck == 1 ? "" : "s");
        ok = 0;
    }
    if (atomic_load(&e->stopping)) {
        imp_buf_puts(why, "shutting down; ");
        ok = 0;
    }
    if (!atomic_load(&e->online_loaded)) {
        imp_buf_puts(why, "online table not loaded; ");
        ok = 0;
    }
    for (int i = 0; i < e->nworkers; i++) {
        if (!imp_worker_assigned(e->workers[i])) {
            imp_buf_printf(why, "worker %d has no partition assignment yet; ", i);
            ok = 0;
        }
        int stuck = imp_worker_dead_letters_stuck(e->workers[i]);
        if (stuck) {
            imp_buf_printf(why, "worker %d: %d dead letters failing for good (see the log); ", i,
                           stuck);
            ok = 0;
        }
    }
    return ok;
}

/* "gateways":{...}, the nodes discovery lists now, each with how many
 * workers' breakers skip it (for the status page). */
static void gateways_json(struct imp_engine *e, struct imp_buf *out)
{
    struct imp_svclist *l = imp_registry_fetch(e->shared.registry, e->cfg->svc_gateway);
    imp_buf_puts(out, "\"gateways\":{\"service\":");
    imp_buf_json_cstr(out, e->cfg->svc_gateway);
    imp_buf_printf(out, ",\"breakerFailures\":%d,\"nodes\":[", e->cfg->gw_breaker_failures);
    for (size_t i = 0; i < l->n; i++) {
        imp_buf_puts(out, i ? ",{\"addr\":" : "{\"addr\":");
        imp_buf_json_cstr(out, l->addrs[i]);
        imp_buf_printf(out, ",\"breakersOpen\":%d}", imp_chans_breakers_open(l->addrs[i]));
    }
    imp_buf_puts(out, "]},");
    imp_svclist_release(l);
}

void imp_engine_status_json(struct imp_engine *e, struct imp_buf *out)
{
    struct imp_buf why;
    imp_buf_init(&why);
    int ready = imp_engine_ready(e, &why);
    imp_buf_printf(out, "{\"status\":\"ok\",\"ready\":%s,", ready ? "true" : "false");
    if (!ready) {
        imp_buf_puts(out, "\"notReady\":");
        imp_buf_json_str(out, why.data, why.len > 2 ? why.len - 2 : why.len);
        imp_buf_putc(out, ',');
    }
    imp_buf_printf(out,
                   "\"onlineUsers\":%zu,\"redisSubscribed\":%s,\"discovery\":\"%s\","
                   "\"etcdSynced\":%s,\"onlineLoads\":%ld,\"workers\":[",
                   imp_online_count(e->shared.online),
                   imp_watcher_redis_subscribed(e->watcher) ? "true" : "false",
                   e->cfg->k8s ? "kubernetes" : "etcd",
                   imp_watcher_etcd_synced(e->watcher) ? "true" : "false",
                   imp_watcher_online_loads(e->watcher));
    for (int i = 0; i < e->nworkers; i++)
        imp_buf_printf(out,
                       "%s{\"id\":%d,\"partitions\":%d,\"offlinePartitions\":%d,"
                       "\"inflight\":%d}",
                       i ? "," : "", i, imp_worker_partitions(e->workers[i], 0),
                       imp_worker_partitions(e->workers[i], 1), imp_worker_inflight(e->workers[i]));
    imp_buf_puts(out, "],");
    gateways_json(e, out);
    if (e->pushsvc) {
        imp_buf_puts(out, "\"pushService\":{\"addr\":");
        imp_buf_json_cstr(out, imp_pushsvc_addr(e->pushsvc));
        if (e->announce) {
            imp_buf_puts(out, ",\"etcd\":");
            imp_announce_status_json(e->announce, out);
        }
        imp_buf_puts(out, "},");
    }
    if (e->provider_problem) {
        imp_buf_puts(out, "\"offlineProvider\":{\"name\":");
        imp_buf_json_cstr(out, e->cfg->offline_provider);
        imp_buf_puts(out, ",\"configured\":false,\"error\":");
        imp_buf_json_cstr(out, e->provider_problem);
        imp_buf_puts(out, "},");
    }
    imp_watcher_scripts_json(e->watcher, out);
    imp_buf_putc(out, '}');
    imp_buf_dispose(&why);
}

/*
 * Engine-wide readiness and status, computed from the threads' published
 * atomics; no locks, no waiting.
 */
#include "engine.h"

#include <stdio.h>

#include "announce.h"
#include "pushsvc.h"
#include "watcher.h"
#include "worker.h"

void imp_engine_online_loaded(struct imp_engine *e)
{
    atomic_store(&e->online_loaded, 1);
    if (atomic_exchange(&e->consuming, 1)) return;
    if (atomic_load(&e->stopping)) return;
    for (int i = 0; i < e->nworkers; i++) imp_worker_consume(e->workers[i]);
}

int imp_engine_ready(struct imp_engine *e, struct imp_buf *why)
{
    int ok = 1;
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
    }
    return ok;
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
                   "\"onlineUsers\":%zu,\"redisSubscribed\":%s,\"etcdSynced\":%s,"
                   "\"onlineLoads\":%ld,\"workers\":[",
                   imp_online_count(e->online),
                   imp_watcher_redis_subscribed(e->watcher) ? "true" : "false",
                   imp_watcher_etcd_synced(e->watcher) ? "true" : "false",
                   imp_watcher_online_loads(e->watcher));
    for (int i = 0; i < e->nworkers; i++)
        imp_buf_printf(out,
                       "%s{\"id\":%d,\"partitions\":%d,\"offlinePartitions\":%d,"
                       "\"inflight\":%d}",
                       i ? "," : "", i, imp_worker_partitions(e->workers[i], 0),
                       imp_worker_partitions(e->workers[i], 1), imp_worker_inflight(e->workers[i]));
    imp_buf_puts(out, "],");
    if (e->pushsvc) {
        imp_buf_puts(out, "\"pushService\":{\"addr\":");
        imp_buf_json_cstr(out, imp_pushsvc_addr(e->pushsvc));
        if (e->announce) {
            imp_buf_puts(out, ",\"etcd\":");
            imp_announce_status_json(e->announce, out);
        }
        imp_buf_puts(out, "},");
    }
    imp_watcher_scripts_json(e->watcher, out);
    imp_buf_putc(out, '}');
    imp_buf_dispose(&why);
}

/*
 * The watcher thread: the process's only Redis subscriber (online_change),
 * the etcd watch of the OpenIM services, and the loader of the online
 * table.
 *
 * Start-up follows OpenIM's phases: subscribe to online_change and buffer
 * what arrives, page getAllOnlineUsers into the table, apply the buffer,
 * and only then let the workers join their consumer groups. After a Redis
 * reconnect the same sequence runs again (changes published while
 * disconnected were missed); users that did not reappear in the reload are
 * swept from the table.
 */
#ifndef IMP_WATCHER_H
#define IMP_WATCHER_H

#include "base/buf.h"

struct imp_config;
struct imp_scripts;
struct imp_shared;
struct imp_watcher;

/* What the watcher asks of the engine that owns it; both run on the
 * watcher thread. */
struct imp_watcher_hooks {
    /* the online table was (re)loaded; the engine acts on the first time */
    void (*online_loaded)(void *arg);
    /* builds a VM per worker from scripts (one snapshot of the folder) and
     * installs them all, or none: 0, or an error ("file:line: message") */
    int (*reload)(void *arg, const struct imp_scripts *scripts, char *err, size_t errlen);
    void *arg;
};

/* A watcher filling st (online table, registry, caches) from cfg's Redis
 * and etcd. Not started. */
struct imp_watcher *imp_watcher_create(const struct imp_config *cfg, struct imp_shared *st,
                                       const struct imp_watcher_hooks *hooks);
int imp_watcher_start(struct imp_watcher *w);
/* Stops the loop and joins the thread. */
void imp_watcher_stop(struct imp_watcher *w);
void imp_watcher_destroy(struct imp_watcher *w);

/* Hot reload: asks the engine (hooks.reload) to rebuild every worker's VM
 * from the scripts on disk, check them, and install them only if all
 * succeed; otherwise the old scripts stay and the failure is reported (log,
 * impulse_script_reload_total, /healthz). Triggered by a change under the scripts folder (inotify,
 * debounced), SIGHUP and POST /admin/reload. Thread-safe. */
void imp_watcher_reload(struct imp_watcher *w, const char *why);
/* The scripts the workers were started with. Call before starting. */
void imp_watcher_set_active_scripts(struct imp_watcher *w, const char *hash);
/* Appends `"scripts":{...}` (active hash, reload counts, last error). */
void imp_watcher_scripts_json(struct imp_watcher *w, struct imp_buf *out);

/* Thread-safe snapshots for /healthz. */
int imp_watcher_redis_subscribed(struct imp_watcher *w);
int imp_watcher_etcd_synced(struct imp_watcher *w);
long imp_watcher_online_loads(struct imp_watcher *w);

#endif

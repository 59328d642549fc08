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

struct imp_engine;
struct imp_watcher;

struct imp_watcher *imp_watcher_create(struct imp_engine *e);
int imp_watcher_start(struct imp_watcher *w);
/* Stops the loop and joins the thread. */
void imp_watcher_stop(struct imp_watcher *w);
void imp_watcher_destroy(struct imp_watcher *w);

/* Thread-safe snapshots for /healthz. */
int imp_watcher_redis_subscribed(struct imp_watcher *w);
int imp_watcher_etcd_synced(struct imp_watcher *w);
long imp_watcher_online_loads(struct imp_watcher *w);

#endif

/*
 * Local cache (OpenIM pkg/localcache cache.go): the cache the engine puts
 * in front of RPCs such as GetGroupMemberUserIDs. A slot LRU (slot.h) of
 * either kind, as OpenIM's expirationEvict option chooses, plus key links
 * (link.h) and delete hooks:
 *  - get / get_link: asynchronous single flight (IMP_LAZY_HIT / FETCH /
 *    WAIT as lazy.h); get_link also links the key to other keys, so that
 *    deleting any of them deletes it;
 *  - del: runs the delete hooks (the engine publishes the keys on Redis
 *    for the other instances), then deletes locally, linked keys
 *    included; del_local deletes without hooks (remote invalidation);
 *  - imp_localcache_invalidate_json: a DELETE_CACHE_* payload from Redis.
 * An entry evicted (capacity) or expired (expirable kind) takes its
 * linked keys with it, as OpenIM's onEvict does, so links do not outlive
 * the entries.
 *
 * Thread-safe, except imp_localcache_add_del_hook (call it before sharing
 * the cache). Notifications, hooks and eviction handling run outside every
 * lock, on the calling (completing) thread.
 */
#ifndef IMP_CACHE_LOCALCACHE_H
#define IMP_CACHE_LOCALCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "state/cache/blob.h"
#include "state/cache/lazy.h"

struct imp_localcache;

struct imp_localcache_config {
    unsigned slot_num;       /* OpenIM localSlotNum; 0: no local cache (every get fetches) */
    size_t slot_size;        /* localSlotSize, entries per slot; 0: no local cache */
    unsigned link_slot_num;  /* linkSlotNum; 0: links are not recorded */
    uint64_t success_ttl_ms; /* localSuccessTTL; 0: never expire */
    uint64_t failed_ttl_ms;  /* localFailedTTL (lazy kind; 0: failures not cached) */
    int expiration_evict;    /* 0: lazy LRUs (default); 1: expirable LRUs */
};

/* A delete hook: called by imp_localcache_del with the keys (borrowed for
 * the call), before the local delete. */
typedef void (*imp_localcache_del_fn)(void *ud, const char *const *keys, const size_t *klens,
                                      size_t n);

/* A new cache; NULL when cfg is NULL. Cannot fail otherwise. */
struct imp_localcache *imp_localcache_create(const struct imp_localcache_config *cfg);
/* Notifies pending waiters with IMP_ECLOSED, frees everything. Call once no
 * leader will complete any more. NULL is ignored. */
void imp_localcache_destroy(struct imp_localcache *c);
/* Appends a delete hook (OpenIM's delFn). Not thread-safe: call before the
 * cache is shared. Cannot fail. */
void imp_localcache_add_del_hook(struct imp_localcache *c, imp_localcache_del_fn fn, void *ud);

/* imp_localcache_get_link with no links. */
int imp_localcache_get(struct imp_localcache *c, const char *key, size_t klen, uint64_t now_ms,
                       struct imp_blob **val, int *err, char *errbuf, size_t errlen,
                       struct imp_lazy_waiter *w);
/* imp_localcache_get that copies a value of at most cap bytes into buf
 * (imp_lazy_get_copy's results: HIT with *val NULL and *err 0 means *vlen
 * bytes copied). Small values of a lazy cache hit without a lock. */
int imp_localcache_get_copy(struct imp_localcache *c, const char *key, size_t klen, uint64_t now_ms,
                            void *buf, size_t cap, size_t *vlen, struct imp_blob **val, int *err,
                            char *errbuf, size_t errlen, struct imp_lazy_waiter *w);
/* Looks key up as imp_lazy_get (same results and ownership). When the
 * caller becomes the leader (IMP_LAZY_FETCH), key is linked to
 * links[0..nlinks) (borrowed) before the fetch starts, as OpenIM links
 * inside its fetch function: a delete of a linked key during the fetch
 * then drops the fetched value instead of caching a stale one. Without a
 * local cache, always returns IMP_LAZY_FETCH (no single flight). */
int imp_localcache_get_link(struct imp_localcache *c, const char *key, size_t klen,
                            const char *const *links, const size_t *llens, size_t nlinks,
                            uint64_t now_ms, struct imp_blob **val, int *err, char *errbuf,
                            size_t errlen, struct imp_lazy_waiter *w);
/* The leader's result, as imp_slot_complete (val and errmsg borrowed).
 * Lazy kind: a failure is cached for failed_ttl_ms when cache_error;
 * expirable kind: a failure is never cached. Cannot fail. */
void imp_localcache_complete(struct imp_localcache *c, const char *key, size_t klen,
                             struct imp_blob *val, int err, const char *errmsg, int cache_error,
                             uint64_t now_ms);
/* As imp_lazy_cancel: 1 when w was dequeued, 0 when its notify has run or
 * is running. */
int imp_localcache_cancel(struct imp_localcache *c, const char *key, size_t klen,
                          struct imp_lazy_waiter *w);

/* Runs every delete hook with keys[0..n) (borrowed), then deletes them
 * locally as imp_localcache_del_local. */
void imp_localcache_del(struct imp_localcache *c, const char *const *keys, const size_t *klens,
                        size_t n);
/* Deletes each key and every key linked to it, transitively; a fetch in
 * flight for any of them will not be cached. No hooks. */
void imp_localcache_del_local(struct imp_localcache *c, const char *const *keys,
                              const size_t *klens, size_t n);

/* Remote invalidation: payload[0..len) is a DELETE_CACHE_* message, a JSON
 * array of key strings (openim-wire.md §5); every key is deleted locally
 * (no hooks). Returns 0, or IMP_EINVAL with the reason in err (nothing
 * deleted) when the payload is not a JSON array of strings. */
int imp_localcache_invalidate_json(struct imp_localcache *c, const char *payload, size_t len,
                                   char *err, size_t errlen);

/* Drops every entry (after a gap in the invalidation channel, nothing
 * cached can be trusted); fetches in flight will not be cached. Links are
 * kept: they only ever widen a delete. Returns how many entries went. */
size_t imp_localcache_purge(struct imp_localcache *c);

/* Expirable kind: removes expired entries (with their linked keys);
 * returns how many. Lazy kind: 0. Call periodically (watcher's loop). */
size_t imp_localcache_sweep(struct imp_localcache *c, uint64_t now_ms);
/* Entries held over all slots. */
size_t imp_localcache_len(struct imp_localcache *c);
/* Asserts the invariants (IMP_ASSERT, fatal); for tests, at rest. */
void imp_localcache_check(struct imp_localcache *c);

#endif

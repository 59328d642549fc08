/*
 * What the cache family (slot.c, localcache.c) needs from a lazy LRU
 * beyond the engine's contract in lazy.h: calls that take the key's
 * FNV-1a-64 hash computed once by the caller, a leader token so a batch
 * can complete only the flights it leads, and an eviction hook. Not for
 * the engine.
 */
#ifndef IMP_CACHE_LAZY_INT_H
#define IMP_CACHE_LAZY_INT_H

#include "state/cache/lazy.h"

/* Called for each entry evicted to make room (not for deletes or
 * replacements), after the cache's lock is released, on the thread that
 * caused the eviction; it may call back into any cache. */
typedef void (*imp_lazy_evict_fn)(void *ud, const char *key, size_t klen);

/* Starts loading the bucket that hash falls in, without the lock and
 * without reading it: a batch calls it a few keys ahead of its gets.
 * c's first cache line should already be on its way (prefetch c). */
void imp_lazy_prefetch(struct imp_lazy *c, uint64_t hash);
/* Reads that bucket without the lock (it should be in cache by now) and
 * starts loading its first entry and that entry's blob. */
void imp_lazy_prefetch_entry(struct imp_lazy *c, uint64_t hash);

/* Sets the eviction hook; call before the cache is shared. */
void imp_lazy_on_evict(struct imp_lazy *c, imp_lazy_evict_fn fn, void *ud);

/* imp_lazy_get with hash = imp_fnv1a64(key, klen); a FETCH records leader
 * (any token, NULL for a single getter) as the flight's leader. */
int imp_lazy_get_h(struct imp_lazy *c, uint64_t hash, const char *key, size_t klen, uint64_t now_ms,
                   struct imp_blob **val, int *err, char *errbuf, size_t errlen,
                   struct imp_lazy_waiter *w, const void *leader);

/* imp_lazy_get_copy with the hash and a leader token, as imp_lazy_get_h. */
int imp_lazy_get_copy_h(struct imp_lazy *c, uint64_t hash, const char *key, size_t klen,
                        uint64_t now_ms, void *buf, size_t cap, size_t *vlen, struct imp_blob **val,
                        int *err, char *errbuf, size_t errlen, struct imp_lazy_waiter *w,
                        const void *leader);

/* imp_lazy_complete with the hash; when only_leader is not NULL, completes
 * the flight only if that token leads it. Returns 1 when a flight was
 * completed, 0 when key was not in flight (nothing happens). */
int imp_lazy_complete_h(struct imp_lazy *c, uint64_t hash, const char *key, size_t klen,
                        struct imp_blob *val, int err, const char *errmsg, int cache_error,
                        uint64_t now_ms, const void *only_leader);

int imp_lazy_cancel_h(struct imp_lazy *c, uint64_t hash, const char *key, size_t klen,
                      struct imp_lazy_waiter *w);
int imp_lazy_set_h(struct imp_lazy *c, uint64_t hash, const char *key, size_t klen,
                   struct imp_blob *val, uint64_t now_ms, int only_if_present);
int imp_lazy_del_h(struct imp_lazy *c, uint64_t hash, const char *key, size_t klen);
/* Deletes every entry (no eviction hook) and marks every flight so its
 * result is not stored. Returns the number of entries dropped. */
size_t imp_lazy_purge(struct imp_lazy *c);

#endif

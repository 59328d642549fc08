/*
 * Expirable LRU (hashicorp golang-lru expirable, used by OpenIM's
 * localcache when expirationEvict is set): a simple LRU (lru.h) whose
 * entries expire ttl_ms after they were added. An expired entry is a miss;
 * it is removed (with the eviction callback) when a get finds it, or by a
 * sweep. Expiry is kept in 100 buckets: an entry goes in the bucket of
 * its expiry time (ttl/100 wide), and a sweep empties the buckets whose
 * time has passed. add and get first sweep whatever is due (peek and
 * contains change nothing); the engine also sweeps periodically (through
 * imp_slot_sweep / imp_localcache_sweep, from the watcher's loop), so no
 * thread runs per cache.
 *
 * Not thread-safe, like lru.h: callers lock (the slot LRU does).
 */
#ifndef IMP_CACHE_EXPIRABLE_H
#define IMP_CACHE_EXPIRABLE_H

#include <stddef.h>
#include <stdint.h>

#include "state/cache/lru.h"

#define IMP_ELRU_BUCKETS 100

struct imp_elru;

/* A new cache of at most size entries (> 0; else NULL) whose entries live
 * ttl_ms (0: they never expire, as golang-lru). type and on_evict as in
 * lru.h; on_evict also runs for entries removed because they expired. */
struct imp_elru *imp_elru_create(size_t size, uint64_t ttl_ms, const struct imp_lru_type *type,
                                 imp_lru_evict_fn on_evict, void *ud);
/* Frees every entry through type->free (no callbacks). NULL is ignored. */
void imp_elru_destroy(struct imp_elru *c);

/* Adds key (copied) with val (as lru.h: dup'd or owned) expiring at
 * now_ms + ttl_ms, at the front; re-adding a key replaces its value and
 * renews its expiry. Returns 1 when the oldest entry was evicted to make
 * room. Cannot fail (aborts on OOM). */
int imp_elru_add(struct imp_elru *c, const char *key, size_t klen, void *val, uint64_t now_ms);
/* Returns 1 and *val (borrowed, valid until the entry leaves the cache)
 * when key is present and unexpired, moving it to the front. An expired
 * entry is removed (callback) and 0 returned. val may be NULL. */
int imp_elru_get(struct imp_elru *c, const char *key, size_t klen, uint64_t now_ms, void **val);
/* As get, without moving or removing anything. */
int imp_elru_peek(struct imp_elru *c, const char *key, size_t klen, uint64_t now_ms, void **val);
/* 1 when key is present and unexpired; moves nothing. */
int imp_elru_contains(struct imp_elru *c, const char *key, size_t klen, uint64_t now_ms);
/* Removes key (callback). Returns 1 when it was present, expired or not. */
int imp_elru_remove(struct imp_elru *c, const char *key, size_t klen);
/* Removes the oldest entry (callback). Returns 0 when empty. */
int imp_elru_remove_oldest(struct imp_elru *c);
/* Calls fn for every entry, expired ones not yet swept included, oldest
 * to newest; fn must not change the cache. Returns the number. */
size_t imp_elru_keys(struct imp_elru *c,
                     void (*fn)(void *ud, const char *key, size_t klen, void *val), void *ud);
/* Entries held, expired ones not yet swept included. Cannot fail. */
size_t imp_elru_len(const struct imp_elru *c);
/* Removes every entry (callback for each). */
void imp_elru_purge(struct imp_elru *c);
/* Empties every bucket whose time has passed by now_ms, removing (with
 * the callback) the entries expired in it. Returns how many. Cheap when
 * nothing is due; at most the 100 buckets once. */
size_t imp_elru_sweep(struct imp_elru *c, uint64_t now_ms);
/* Asserts the invariants (IMP_ASSERT, fatal); for tests. */
void imp_elru_check(struct imp_elru *c);

#endif

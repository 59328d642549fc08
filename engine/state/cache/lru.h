/*
 * Simple LRU (hashicorp golang-lru simplelru, which OpenIM's localcache is
 * built on): a bounded map from byte-string keys to values, ordered by
 * recent use, with an eviction callback.
 *
 * Keys are copied into the entry. Values are void * handled through a
 * type table: the cache owns what the table frees.
 *
 * Not thread-safe: callers lock (the slot LRU holds one lock per LRU).
 */
#ifndef IMP_CACHE_LRU_H
#define IMP_CACHE_LRU_H

#include <stddef.h>

struct imp_lru;

/* How the cache handles values. Either function may be NULL. */
struct imp_lru_type {
    /* add stores dup(val) (the caller keeps val); NULL: add stores val
     * itself and the cache takes ownership of it. */
    void *(*dup)(void *val);
    /* Drops a value the cache holds (removed, replaced, evicted, purged or
     * destroyed). NULL: the cache never frees values. */
    void (*free)(void *val);
};

/* Called when an entry leaves the cache by eviction (add over the size),
 * remove, remove_oldest or purge; not on replacement or destroy. key and
 * val are valid during the call, after which val goes to type->free. It
 * must not call into this cache. */
typedef void (*imp_lru_evict_fn)(void *ud, const char *key, size_t klen, void *val);

/* A new cache of at most size entries (> 0; else NULL). type is copied
 * (NULL: values are neither copied nor freed); on_evict may be NULL. */
struct imp_lru *imp_lru_create(size_t size, const struct imp_lru_type *type,
                               imp_lru_evict_fn on_evict, void *ud);
/* Frees every entry through type->free (no eviction callbacks) and the
 * cache. NULL is ignored. */
void imp_lru_destroy(struct imp_lru *c);

/* Adds key (copied) with val, at the front. An existing key gets the new
 * value (the old one goes to type->free, no callback) and moves to the
 * front, evicting nothing. Returns 1 when the oldest entry was evicted to
 * make room, else 0. Cannot fail (aborts on OOM). */
int imp_lru_add(struct imp_lru *c, const char *key, size_t klen, void *val);
/* Returns 1 and *val (borrowed: valid until the entry leaves the cache)
 * when key is present, moving it to the front; else 0. val may be NULL. */
int imp_lru_get(struct imp_lru *c, const char *key, size_t klen, void **val);
/* As get, without moving the entry. */
int imp_lru_peek(struct imp_lru *c, const char *key, size_t klen, void **val);
/* 1 when key is present; does not move it. */
int imp_lru_contains(struct imp_lru *c, const char *key, size_t klen);
/* Removes key, calling the eviction callback. Returns 1 when present. */
int imp_lru_remove(struct imp_lru *c, const char *key, size_t klen);
/* Removes the oldest entry, calling the eviction callback (which sees its
 * key and value). Returns 1, or 0 when the cache is empty. */
int imp_lru_remove_oldest(struct imp_lru *c);
/* The oldest entry without moving it: 1 with *key, *klen and *val borrowed, or
 * 0 when empty. Any out-pointer may be NULL. */
int imp_lru_get_oldest(struct imp_lru *c, const char **key, size_t *klen, void **val);
/* Calls fn for every entry from oldest to newest; fn must not change the
 * cache. Returns the number of entries. */
size_t imp_lru_keys(struct imp_lru *c,
                    void (*fn)(void *ud, const char *key, size_t klen, void *val), void *ud);
/* Entries held. Cannot fail. */
size_t imp_lru_len(const struct imp_lru *c);
/* Removes every entry, oldest first, calling the eviction callback. */
void imp_lru_purge(struct imp_lru *c);
/* Asserts the invariants (IMP_ASSERT, fatal); for tests. */
void imp_lru_check(const struct imp_lru *c);

#endif

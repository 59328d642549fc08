/*
 * Lazy LRU (OpenIM pkg/localcache lru_lazy.go), asynchronous and
 * thread-safe: each entry holds a value or an error with its expiry; a
 * success is kept for success_ttl, a failure for failed_ttl. A miss makes
 * the caller the leader of a single flight for that key: it starts the
 * fetch (an RPC, on its own loop) and later completes it; concurrent
 * getters of the same key become waiters and are notified with the result.
 * No lock is held across a fetch; nobody blocks.
 *
 * Time is a parameter (now_ms) everywhere. Values are blobs.
 *
 * Thread-safety: one mutex per lazy LRU (a slot LRU is N of them); hits
 * on small values through imp_lazy_get_copy take no lock (a seqlock,
 * lazy.c). Eviction is CLOCK (second chance) from 64 entries up, exact
 * LRU below.
 * Waiter callbacks run on the completing (or destroying) thread, outside the
 * lock; the engine's callback only posts to the waiter's own loop.
 */
#ifndef IMP_CACHE_LAZY_H
#define IMP_CACHE_LAZY_H

#include <stddef.h>
#include <stdint.h>

#include "state/cache/blob.h"
#include "state/cache/waiter.h"

struct imp_lazy;

enum imp_lazy_result {
    IMP_LAZY_HIT = 0,   /* *val (a new reference) or a cached error (*err) */
    IMP_LAZY_FETCH = 1, /* the caller leads: fetch, then imp_lazy_complete */
    IMP_LAZY_WAIT = 2,  /* w queued behind the leader's fetch */
};

struct imp_lazy_config {
    size_t size;             /* entries, > 0 */
    uint64_t success_ttl_ms; /* 0: values never expire */
    uint64_t failed_ttl_ms;  /* 0: failures are not cached */
};

/* A new cache, or NULL when cfg is NULL or cfg->size is 0. */
struct imp_lazy *imp_lazy_create(const struct imp_lazy_config *cfg);
/* Every pending waiter is notified with IMP_ECLOSED first, then entries
 * and flights are freed. Call it once no leader will complete any more and
 * no other thread uses c. NULL is ignored. */
void imp_lazy_destroy(struct imp_lazy *c);

/* Looks key up; w must not be NULL. HIT: *val is a new reference, or NULL
 * with *err and the cached message copied into errbuf (a cached failure).
 * FETCH: the key was missing or expired and is now in flight; the caller
 * must call imp_lazy_complete for it exactly once; *val is NULL. WAIT:
 * another caller's fetch is in flight; w is queued and will be notified;
 * *val is NULL. In a cache of fewer than 64 entries a hit moves the entry
 * to the front (exact LRU); in a larger one it sets the entry's CLOCK bit
 * and eviction gives marked entries a second chance (lazy.c). Takes the
 * cache's lock. Thread-safe. */
int imp_lazy_get(struct imp_lazy *c, const char *key, size_t klen, uint64_t now_ms,
                 struct imp_blob **val, int *err, char *errbuf, size_t errlen,
                 struct imp_lazy_waiter *w);

/* Values of at most this many bytes are also kept inline in their entry,
 * and imp_lazy_get_copy can hit on them without the lock. */
#define IMP_LAZY_INLINE_MAX 256

/* imp_lazy_get that copies a value of at most cap bytes into buf: HIT
 * with *val NULL and *err 0 means *vlen bytes were copied (a value that
 * fits); HIT with *val set is a new reference to a larger value; HIT with
 * *val NULL and *err set is a cached failure (message in errbuf). FETCH
 * and WAIT as imp_lazy_get. A hit on a value kept inline (cache of 64
 * entries or more, value <= IMP_LAZY_INLINE_MAX, not expired) takes no
 * lock and writes nothing shared; anything else takes the locked path.
 * Thread-safe. */
int imp_lazy_get_copy(struct imp_lazy *c, const char *key, size_t klen, uint64_t now_ms, void *buf,
                      size_t cap, size_t *vlen, struct imp_blob **val, int *err, char *errbuf,
                      size_t errlen, struct imp_lazy_waiter *w);

/* The leader's result for key: val (borrowed; the cache takes its own
 * reference) or NULL with err/errmsg (borrowed; NULL with err 0 counts as
 * IMP_ENOTFOUND). Stores it (unless the key was deleted meanwhile, or err
 * is set and cache_error is 0 — a cancelled fetch —, or failed_ttl_ms is
 * 0), then notifies every waiter outside the lock, on this thread, with
 * val or err/errmsg: a failing or cancelled leader wakes them all with its
 * error. A key not in flight is ignored. Thread-safe; cannot fail. */
void imp_lazy_complete(struct imp_lazy *c, const char *key, size_t klen, struct imp_blob *val,
                       int err, const char *errmsg, int cache_error, uint64_t now_ms);

/* Removes w if it is still queued: returns 1 (notify will not run) or 0
 * (notify has run or is running: keep w valid until it returns). A waiter
 * whose own deadline passed calls this; its leader and the other waiters
 * are unaffected. Thread-safe. */
int imp_lazy_cancel(struct imp_lazy *c, const char *key, size_t klen, struct imp_lazy_waiter *w);

/* Sets key to val (borrowed; the cache takes its own reference) with the
 * success TTL, at the front; set_has replaces only an existing entry
 * (fresh, expired or failed). Return 1 when stored. A fetch in flight for
 * key still completes and then overwrites it. Thread-safe. */
int imp_lazy_set(struct imp_lazy *c, const char *key, size_t klen, struct imp_blob *val,
                 uint64_t now_ms);
int imp_lazy_set_has(struct imp_lazy *c, const char *key, size_t klen, struct imp_blob *val,
                     uint64_t now_ms);
/* Deletes key; a fetch in flight for it will not be cached (its waiters
 * still get its result). Returns 1 when something was removed or marked.
 * Thread-safe. */
int imp_lazy_del(struct imp_lazy *c, const char *key, size_t klen);
/* Entries held (fresh, expired or failed; not flights). Thread-safe. */
size_t imp_lazy_len(struct imp_lazy *c);
/* Asserts the invariants (IMP_ASSERT, fatal); for tests. Thread-safe. */
void imp_lazy_check(struct imp_lazy *c);

#endif

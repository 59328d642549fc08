/*
 * Slot LRU (OpenIM pkg/localcache lru_slot.go): N independent LRUs, each
 * with its own lock; a key lives in slot FNV-1a-64(key) % N. The hash is
 * computed once per call and serves both the slot choice and the lookup.
 *
 * Two kinds, as OpenIM's expirationEvict option chooses:
 *  - IMP_SLOT_LAZY (default): N lazy LRUs (lazy.h). Values and cached
 *    failures expire per entry (success / failed TTL); an expired entry is
 *    a miss and is re-fetched in place.
 *  - IMP_SLOT_EXPIRABLE: N expirable LRUs (expirable.h) with the success
 *    TTL, each behind a slot mutex with its own single-flight table. A
 *    failed fetch is never cached: the key is removed (OpenIM
 *    lru_expiration.go). Expired entries are swept on access and by
 *    imp_slot_sweep.
 * Both give the same asynchronous single flight as lazy.h: a miss makes
 * the caller the leader (IMP_LAZY_FETCH), concurrent getters wait
 * (IMP_LAZY_WAIT) and are notified outside the locks.
 *
 * Batches (OpenIM's GetBatch, used by the online-LRU mode): one call looks
 * up N keys across slots; hits are answered at once, keys being fetched
 * by someone else are waited for through one batch waiter that counts
 * outstanding keys, and the caller leads every remaining miss so that ONE
 * fetch serves them all. See imp_slot_batch_*.
 *
 * Thread-safety: every function is thread-safe unless it says otherwise.
 * Waiter notifications, batch done callbacks and eviction hooks run on the
 * completing (sweeping, evicting) thread, outside every lock.
 */
#ifndef IMP_CACHE_SLOT_H
#define IMP_CACHE_SLOT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "state/cache/blob.h"
#include "state/cache/lazy.h"

struct imp_slot;

enum imp_slot_kind {
    IMP_SLOT_LAZY = 0,
    IMP_SLOT_EXPIRABLE = 1,
};

/* An entry left because of capacity or expiry (not del, not a failed
 * fetch, not a replacement). Runs outside the slot locks and may call back
 * into the cache. */
typedef void (*imp_slot_evict_fn)(void *ud, const char *key, size_t klen);

struct imp_slot_config {
    unsigned nslots;         /* > 0 */
    size_t slot_size;        /* entries per slot, > 0 */
    uint64_t success_ttl_ms; /* 0: values never expire */
    uint64_t failed_ttl_ms;  /* lazy kind: 0 = failures not cached; expirable: unused */
    enum imp_slot_kind kind;
    imp_slot_evict_fn on_evict; /* may be NULL */
    void *evict_ud;
};

/* A new slot LRU, or NULL when cfg is NULL or nslots or slot_size is 0. */
struct imp_slot *imp_slot_create(const struct imp_slot_config *cfg);
/* Notifies every pending waiter with IMP_ECLOSED, then frees everything.
 * Call once no leader will complete any more. NULL is ignored. */
void imp_slot_destroy(struct imp_slot *s);

/* imp_lazy_get routed by key (same arguments, results and ownership):
 * HIT with *val a new reference (or, lazy kind, a cached failure in *err
 * and errbuf), FETCH (complete it exactly once), or WAIT (w queued). */
int imp_slot_get(struct imp_slot *s, const char *key, size_t klen, uint64_t now_ms,
                 struct imp_blob **val, int *err, char *errbuf, size_t errlen,
                 struct imp_lazy_waiter *w);
/* imp_lazy_get_copy routed by key (same results: a value of at most cap
 * bytes is copied into buf, *val NULL, *err 0). The lazy kind hits on
 * small values without a lock; the expirable kind copies under its slot
 * lock. */
int imp_slot_get_copy(struct imp_slot *s, const char *key, size_t klen, uint64_t now_ms, void *buf,
                      size_t cap, size_t *vlen, struct imp_blob **val, int *err, char *errbuf,
                      size_t errlen, struct imp_lazy_waiter *w);
/* imp_lazy_complete routed by key. val and errmsg are borrowed. Expirable
 * kind: a failure is never cached and removes the key. Cannot fail. */
void imp_slot_complete(struct imp_slot *s, const char *key, size_t klen, struct imp_blob *val,
                       int err, const char *errmsg, int cache_error, uint64_t now_ms);
/* imp_lazy_cancel routed by key: 1 when w was dequeued (no notify), 0 when
 * its notify has run or is running. */
int imp_slot_cancel(struct imp_slot *s, const char *key, size_t klen, struct imp_lazy_waiter *w);
/* imp_lazy_set / imp_lazy_set_has routed by key (val borrowed). Return 1
 * when stored. */
int imp_slot_set(struct imp_slot *s, const char *key, size_t klen, struct imp_blob *val,
                 uint64_t now_ms);
int imp_slot_set_has(struct imp_slot *s, const char *key, size_t klen, struct imp_blob *val,
                     uint64_t now_ms);
/* imp_lazy_del routed by key: removes the entry and marks a flight so its
 * result is not stored. Returns 1 when something was removed or marked. */
int imp_slot_del(struct imp_slot *s, const char *key, size_t klen);
/* Drops every entry of every slot (one lock at a time; no on_evict) and
 * marks every flight so that its result is not stored: for when the
 * cached data may have missed invalidations (a gap in a subscription).
 * Waiters still get their leader's result. Returns the entries dropped. */
size_t imp_slot_purge(struct imp_slot *s);
/* Expirable kind: removes expired entries from every slot (one lock at a
 * time), reporting them to on_evict; returns how many. Lazy kind: 0. The
 * engine calls it periodically from the watcher's loop. */
size_t imp_slot_sweep(struct imp_slot *s, uint64_t now_ms);
/* Entries over all slots (a sum of per-slot snapshots). */
size_t imp_slot_len(struct imp_slot *s);
/* Asserts every slot's invariants (IMP_ASSERT, fatal); for tests. */
void imp_slot_check(struct imp_slot *s);

/* ---- batches ------------------------------------------------------------
 *
 * A batch is N keys looked up together (keys may repeat and may fall in
 * any slots). Use:
 *
 *   b = imp_slot_batch_create(keys, klens, n, done, ud);
 *   if (imp_slot_get_batch(s, b, now)) ... done(b) will be called later;
 *   for the keys with state[i] == IMP_LAZY_FETCH: fetch them in ONE call,
 *   then imp_slot_complete() each key the fetch returned, and
 *   imp_slot_batch_finish(s, b, 0, NULL, 0, now) for the rest (their
 *   waiters get IMP_ENOTFOUND and nothing is cached), or, when the fetch
 *   failed, imp_slot_batch_finish(s, b, err, msg, cache_error, now);
 *   read vals/errs (HIT and, after done, WAIT keys);
 *   imp_slot_batch_destroy(b).
 *
 * The caller must finish every batch that led a fetch, or those keys stay
 * in flight for good.
 */
struct imp_slot_batch_waiter;

struct imp_slot_batch {
    size_t n;
    const char *const *keys; /* borrowed until destroy */
    const size_t *klens;
    unsigned char *state;   /* per key: IMP_LAZY_HIT, _FETCH or _WAIT */
    struct imp_blob **vals; /* per key: a reference owned by the batch, or NULL */
    int *errs;              /* per key: 0 or an IMP_E* code */
    size_t nhit, nfetch, nwait;
    void (*done)(struct imp_slot_batch *b); /* after the last waited key */
    void *ud;
    /* private */
    uint64_t *hashes;
    struct imp_slot_batch_waiter *waiters;
    int waiting;
    atomic_size_t pending;
};

/* A batch over keys[0..n) (borrowed, valid until destroy); done (called at
 * most once, on the notifying thread, outside every lock) and ud are the
 * caller's. Cannot fail (aborts on OOM). */
struct imp_slot_batch *imp_slot_batch_create(const char *const *keys, const size_t *klens, size_t n,
                                             void (*done)(struct imp_slot_batch *b), void *ud);
/* Releases the batch's value references and frees it. Call after the
 * batch was finished and done ran (or get_batch returned 0, or cancel
 * returned 1). NULL is ignored. */
void imp_slot_batch_destroy(struct imp_slot_batch *b);

/* Looks every key up once, filling state, vals and errs, nhit, nfetch and
 * nwait. HIT: vals[i] is a reference (or NULL with errs[i], a cached
 * failure). FETCH: the batch leads key i (vals[i] NULL). WAIT: another
 * getter's fetch is in flight; vals[i]/errs[i] are filled when it
 * completes (a key listed twice waits for the batch's own fetch).
 * Returns 1 when b->done will be called once every WAIT key has been
 * notified (it may already be running), 0 when nothing is waited for
 * (then done is never called, and every WAIT key is already filled in).
 * Call once per batch. */
int imp_slot_get_batch(struct imp_slot *s, struct imp_slot_batch *b, uint64_t now_ms);

/* Completes every flight the batch still leads (those the caller did not
 * complete with imp_slot_complete): err 0 means "not returned by the
 * fetch": their waiters get IMP_ENOTFOUND and nothing is cached; else the
 * fetch failed: waiters get err/errmsg, cached as a failure only when
 * cache_error (lazy kind). Only flights led by b are touched. */
void imp_slot_batch_finish(struct imp_slot *s, struct imp_slot_batch *b, int err,
                           const char *errmsg, int cache_error, uint64_t now_ms);

/* The caller's deadline passed: dequeues the batch's waiters still queued.
 * Returns 1 when done will not be called (destroy at will), 0 when done
 * has run or is running (wait for it). Leaders are unaffected: finish the
 * batch as well if it led fetches. */
int imp_slot_batch_cancel(struct imp_slot *s, struct imp_slot_batch *b);

#endif

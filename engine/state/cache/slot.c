/*
 * Slot LRU: an array of N lazy LRUs (lazy.c, each with its own mutex) or
 * of N expirable slots {mutex, imp_elru, flights} defined here; the key's
 * FNV-1a-64 hash, computed once per call, picks the slot (hash % N) and is
 * handed down for the lookup (lazy_int.h).
 *
 * Expirable slots reproduce lazy.c's single flight with flight.h: a miss
 * starts a flight (or queues behind one) under the slot lock; completion
 * stores the value (or, on failure, removes the key: OpenIM never caches a
 * failure in this mode) and notifies outside the lock. Keys the inner LRU
 * evicts (capacity, expiry) are copied onto a per-slot list under the
 * lock and reported to on_evict after it, so the hook can call back into
 * the cache (OpenIM's onEvict deletes linked keys, possibly in the same
 * slot, which would deadlock a non-recursive lock).
 *
 * Batches keep, per key, an intrusive waiter pointing back at the batch.
 * A counter of outstanding waits starts at n + 1 before the first lookup
 * (a waiter may be notified before the scan ends) and drops by one per
 * key not waited for, plus one when the scan ends; each notify and each
 * successful cancel drops one more. Whoever brings it to zero decides:
 * a notify calls done, the scan or a cancel reports that done will not
 * run. The batch's own address is the leader token of the flights it
 * starts, so finish completes exactly those it still leads.
 *
 * Thread-safe; used by the local cache (localcache.c) and the online LRU
 * (calls/presence.c); no I/O, callbacks run outside every lock.
 */
#include "state/cache/slot.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "state/cache/expirable.h"
#include "state/cache/flight.h"
#include "state/cache/lazy_int.h"

struct evicted {
    struct evicted *next;
    size_t klen;
    char key[];
};

struct eslot {
    _Alignas(64) pthread_mutex_t lock;
    struct imp_elru *lru;
    struct imp_flights flights;
    struct evicted *evicted; /* reported after the lock is released */
    int quiet;               /* removing on purpose: not an eviction */
    struct imp_slot *owner;
};

struct imp_slot {
    unsigned n;
    enum imp_slot_kind kind;
    struct imp_lazy **lazy;
    struct eslot *es;
    imp_slot_evict_fn on_evict;
    void *evict_ud;
};

struct imp_slot_batch_waiter {
    struct imp_lazy_waiter w;
    struct imp_slot_batch *b;
    size_t i;
};

/* ---- expirable slots ---------------------------------------------------- */

static void *blob_dup(void *v) { return imp_blob_fetch(v); }
static void blob_free(void *v) { imp_blob_release(v); }
static const struct imp_lru_type blob_type = {.dup = blob_dup, .free = blob_free};

static void es_evicted(void *ud, const char *key, size_t klen, void *val)
{
    struct eslot *es = ud;
    if (es->quiet || !es->owner->on_evict) return;
    struct evicted *ev = imp_xmalloc(sizeof(*ev) + klen);
    ev->klen = klen;
    memcpy(ev->key, key, klen);
    ev->next = es->evicted;
    es->evicted = ev;
}

/* Called with the lock held: takes the keys evicted meanwhile. */
static struct evicted *es_take(struct eslot *es)
{
    struct evicted *ev = es->evicted;
    es->evicted = NULL;
    return ev;
}

static void report(struct imp_slot *s, struct evicted *ev)
{
    while (ev) {
        struct evicted *next = ev->next;
        s->on_evict(s->evict_ud, ev->key, ev->klen);
        free(ev);
        ev = next;
    }
}

static int es_get(struct imp_slot *s, struct eslot *es, uint64_t h, const char *key, size_t klen,
                  uint64_t now_ms, struct imp_blob **val, int *err, struct imp_lazy_waiter *w,
                  const void *leader)
{
    int r;
    void *v;
    *err = 0;
    pthread_mutex_lock(&es->lock);
    if (imp_elru_get(es->lru, key, klen, now_ms, &v)) {
        *val = imp_blob_fetch(v);
        r = IMP_LAZY_HIT;
    } else {
        *val = NULL;
        struct imp_flight *fl = imp_flights_find(&es->flights, h, key, klen);
        if (fl) {
            imp_flight_wait(fl, w);
            r = IMP_LAZY_WAIT;
        } else {
            imp_flights_start(&es->flights, h, key, klen, leader);
            r = IMP_LAZY_FETCH;
        }
    }
    struct evicted *ev = es_take(es);
    pthread_mutex_unlock(&es->lock);
    report(s, ev);
    return r;
}

static int es_complete(struct imp_slot *s, struct eslot *es, uint64_t h, const char *key,
                       size_t klen, struct imp_blob *val, int err, const char *errmsg,
                       uint64_t now_ms, const void *only_leader)
{
    pthread_mutex_lock(&es->lock);
    struct imp_flight *fl = imp_flights_find(&es->flights, h, key, klen);
    if (!fl || (only_leader && fl->leader != only_leader)) {
        pthread_mutex_unlock(&es->lock);
        return 0;
    }
    imp_flights_remove(&es->flights, fl);
    if (!fl->deleted) {
        if (val) {
            imp_elru_add(es->lru, key, klen, val, now_ms);
        } else {
            es->quiet = 1;
            imp_elru_remove(es->lru, key, klen);
            es->quiet = 0;
        }
    }
    struct evicted *ev = es_take(es);
    pthread_mutex_unlock(&es->lock);
    imp_flight_notify(fl->head, val, err, errmsg);
    free(fl);
    report(s, ev);
    return 1;
}

static int es_cancel(struct eslot *es, uint64_t h, const char *key, size_t klen,
                     struct imp_lazy_waiter *w)
{
    pthread_mutex_lock(&es->lock);
    struct imp_flight *fl = imp_flights_find(&es->flights, h, key, klen);
    int r = fl ? imp_flight_cancel(fl, w) : 0;
    pthread_mutex_unlock(&es->lock);
    return r;
}

static int es_set(struct imp_slot *s, struct eslot *es, const char *key, size_t klen,
                  struct imp_blob *val, uint64_t now_ms, int only_if_present)
{
    int stored = 0;
    pthread_mutex_lock(&es->lock);
    if (!only_if_present || imp_elru_contains(es->lru, key, klen, now_ms)) {
        imp_elru_add(es->lru, key, klen, val, now_ms);
        stored = 1;
    }
    struct evicted *ev = es_take(es);
    pthread_mutex_unlock(&es->lock);
    report(s, ev);
    return stored;
}

static int es_del(struct eslot *es, uint64_t h, const char *key, size_t klen)
{
    pthread_mutex_lock(&es->lock);
    es->quiet = 1;
    int r = imp_elru_remove(es->lru, key, klen);
    es->quiet = 0;
    struct imp_flight *fl = imp_flights_find(&es->flights, h, key, klen);
    if (fl) {
        fl->deleted = 1;
        r = 1;
    }
    pthread_mutex_unlock(&es->lock);
    return r;
}

/* ---- routing -------------------------------------------------------------- */

struct imp_slot *imp_slot_create(const struct imp_slot_config *cfg)
{
    if (!cfg || cfg->nslots == 0 || cfg->slot_size == 0) return NULL;
    struct imp_slot *s = imp_xcalloc(1, sizeof(*s));
    s->n = cfg->nslots;
    s->kind = cfg->kind;
    s->on_evict = cfg->on_evict;
    s->evict_ud = cfg->evict_ud;
    pthread_mutexattr_t ma; /* short critical sections: spin before sleeping */
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    if (cfg->kind == IMP_SLOT_EXPIRABLE) {
        s->es = aligned_alloc(_Alignof(struct eslot), s->n * sizeof(struct eslot));
        if (!s->es) abort();
        memset(s->es, 0, s->n * sizeof(struct eslot));
        for (unsigned i = 0; i < s->n; i++) {
            struct eslot *es = &s->es[i];
            pthread_mutex_init(&es->lock, &ma);
            es->owner = s;
            es->lru =
                imp_elru_create(cfg->slot_size, cfg->success_ttl_ms, &blob_type, es_evicted, es);
            imp_flights_init(&es->flights);
        }
    } else {
        struct imp_lazy_config lc = {.size = cfg->slot_size,
                                     .success_ttl_ms = cfg->success_ttl_ms,
                                     .failed_ttl_ms = cfg->failed_ttl_ms};
        s->lazy = imp_xcalloc(s->n, sizeof(*s->lazy));
        for (unsigned i = 0; i < s->n; i++) {
            s->lazy[i] = imp_lazy_create(&lc);
            if (!s->lazy[i]) abort();
            if (cfg->on_evict) imp_lazy_on_evict(s->lazy[i], cfg->on_evict, cfg->evict_ud);
        }
    }
    pthread_mutexattr_destroy(&ma);
    return s;
}

void imp_slot_destroy(struct imp_slot *s)
{
    if (!s) return;
    for (unsigned i = 0; i < s->n; i++) {
        if (s->lazy) {
            imp_lazy_destroy(s->lazy[i]);
            continue;
        }
        struct eslot *es = &s->es[i];
        pthread_mutex_lock(&es->lock);
        struct imp_lazy_waiter *ws = imp_flights_close(&es->flights);
        pthread_mutex_unlock(&es->lock);
        imp_flight_notify(ws, NULL, IMP_ECLOSED, "cache destroyed");
        imp_flights_dispose(&es->flights);
        imp_elru_destroy(es->lru);
        struct evicted *ev = es->evicted;
        while (ev) {
            struct evicted *next = ev->next;
            free(ev);
            ev = next;
        }
        pthread_mutex_destroy(&es->lock);
    }
    free(s->lazy);
    free(s->es);
    free(s);
}

static inline unsigned slot_of(const struct imp_slot *s, uint64_t h)
{
    return (unsigned)(h % s->n);
}

static int get_h(struct imp_slot *s, uint64_t h, const char *key, size_t klen, uint64_t now_ms,
                 struct imp_blob **val, int *err, char *errbuf, size_t errlen,
                 struct imp_lazy_waiter *w, const void *leader)
{
    unsigned i = slot_of(s, h);
    if (s->lazy)
        return imp_lazy_get_h(s->lazy[i], h, key, klen, now_ms, val, err, errbuf, errlen, w,
                              leader);
    return es_get(s, &s->es[i], h, key, klen, now_ms, val, err, w, leader);
}

static int complete_h(struct imp_slot *s, uint64_t h, const char *key, size_t klen,
                      struct imp_blob *val, int err, const char *errmsg, int cache_error,
                      uint64_t now_ms, const void *only_leader)
{
    unsigned i = slot_of(s, h);
    if (s->lazy)
        return imp_lazy_complete_h(s->lazy[i], h, key, klen, val, err, errmsg, cache_error, now_ms,
                                   only_leader);
    if (val) err = 0;
    if (!val && !err) {
        err = IMP_ENOTFOUND;
        if (!errmsg) errmsg = "no value";
    }
    return es_complete(s, &s->es[i], h, key, klen, val, err, errmsg ? errmsg : "", now_ms,
                       only_leader);
}

static int cancel_h(struct imp_slot *s, uint64_t h, const char *key, size_t klen,
                    struct imp_lazy_waiter *w)
{
    unsigned i = slot_of(s, h);
    if (s->lazy) return imp_lazy_cancel_h(s->lazy[i], h, key, klen, w);
    return es_cancel(&s->es[i], h, key, klen, w);
}

int imp_slot_get(struct imp_slot *s, const char *key, size_t klen, uint64_t now_ms,
                 struct imp_blob **val, int *err, char *errbuf, size_t errlen,
                 struct imp_lazy_waiter *w)
{
    return get_h(s, imp_fnv1a64(key, klen), key, klen, now_ms, val, err, errbuf, errlen, w, NULL);
}

int imp_slot_get_copy(struct imp_slot *s, const char *key, size_t klen, uint64_t now_ms, void *buf,
                      size_t cap, size_t *vlen, struct imp_blob **val, int *err, char *errbuf,
                      size_t errlen, struct imp_lazy_waiter *w)
{
    uint64_t h = imp_fnv1a64(key, klen);
    if (s->lazy)
        return imp_lazy_get_copy_h(s->lazy[slot_of(s, h)], h, key, klen, now_ms, buf, cap, vlen,
                                   val, err, errbuf, errlen, w, NULL);
    *vlen = 0;
    int r = get_h(s, h, key, klen, now_ms, val, err, errbuf, errlen, w, NULL);
    if (r == IMP_LAZY_HIT && *val && (*val)->len <= cap) {
        memcpy(buf, (*val)->data, (*val)->len);
        *vlen = (*val)->len;
        imp_blob_release(*val);
        *val = NULL;
    }
    return r;
}

void imp_slot_complete(struct imp_slot *s, const char *key, size_t klen, struct imp_blob *val,
                       int err, const char *errmsg, int cache_error, uint64_t now_ms)
{
    complete_h(s, imp_fnv1a64(key, klen), key, klen, val, err, errmsg, cache_error, now_ms, NULL);
}

int imp_slot_cancel(struct imp_slot *s, const char *key, size_t klen, struct imp_lazy_waiter *w)
{
    return cancel_h(s, imp_fnv1a64(key, klen), key, klen, w);
}

static int set_any(struct imp_slot *s, const char *key, size_t klen, struct imp_blob *val,
                   uint64_t now_ms, int only_if_present)
{
    uint64_t h = imp_fnv1a64(key, klen);
    unsigned i = slot_of(s, h);
    if (s->lazy) return imp_lazy_set_h(s->lazy[i], h, key, klen, val, now_ms, only_if_present);
    return es_set(s, &s->es[i], key, klen, val, now_ms, only_if_present);
}

int imp_slot_set(struct imp_slot *s, const char *key, size_t klen, struct imp_blob *val,
                 uint64_t now_ms)
{
    return set_any(s, key, klen, val, now_ms, 0);
}

int imp_slot_set_has(struct imp_slot *s, const char *key, size_t klen, struct imp_blob *val,
                     uint64_t now_ms)
{
    return set_any(s, key, klen, val, now_ms, 1);
}

int imp_slot_del(struct imp_slot *s, const char *key, size_t klen)
{
    uint64_t h = imp_fnv1a64(key, klen);
    unsigned i = slot_of(s, h);
    if (s->lazy) return imp_lazy_del_h(s->lazy[i], h, key, klen);
    return es_del(&s->es[i], h, key, klen);
}

size_t imp_slot_purge(struct imp_slot *s)
{
    size_t n = 0;
    for (unsigned i = 0; i < s->n; i++) {
        if (s->lazy) {
            n += imp_lazy_purge(s->lazy[i]);
            continue;
        }
        struct eslot *es = &s->es[i];
        pthread_mutex_lock(&es->lock);
        n += imp_elru_len(es->lru);
        es->quiet = 1;
        imp_elru_purge(es->lru);
        es->quiet = 0;
        imp_flights_mark_deleted(&es->flights);
        pthread_mutex_unlock(&es->lock);
    }
    return n;
}

size_t imp_slot_sweep(struct imp_slot *s, uint64_t now_ms)
{
    if (s->lazy) return 0;
    size_t removed = 0;
    for (unsigned i = 0; i < s->n; i++) {
        struct eslot *es = &s->es[i];
        pthread_mutex_lock(&es->lock);
        removed += imp_elru_sweep(es->lru, now_ms);
        struct evicted *ev = es_take(es);
        pthread_mutex_unlock(&es->lock);
        report(s, ev);
    }
    return removed;
}

size_t imp_slot_len(struct imp_slot *s)
{
    size_t n = 0;
    for (unsigned i = 0; i < s->n; i++) {
        if (s->lazy) {
            n += imp_lazy_len(s->lazy[i]);
            continue;
        }
        pthread_mutex_lock(&s->es[i].lock);
        n += imp_elru_len(s->es[i].lru);
        pthread_mutex_unlock(&s->es[i].lock);
    }
    return n;
}

void imp_slot_check(struct imp_slot *s)
{
    IMP_ASSERT(s->n > 0);
    IMP_ASSERT((s->lazy == NULL) != (s->es == NULL));
    for (unsigned i = 0; i < s->n; i++) {
        if (s->lazy) {
            imp_lazy_check(s->lazy[i]);
            continue;
        }
        struct eslot *es = &s->es[i];
        pthread_mutex_lock(&es->lock);
        imp_elru_check(es->lru);
        imp_flights_check(&es->flights);
        IMP_ASSERT(es->evicted == NULL); /* reported before every unlock */
        IMP_ASSERT(!es->quiet);
        pthread_mutex_unlock(&es->lock);
    }
}

/* ---- batches -------------------------------------------------------------- */

struct imp_slot_batch *imp_slot_batch_create(const char *const *keys, const size_t *klens, size_t n,
                                             void (*done)(struct imp_slot_batch *b), void *ud)
{
    size_t sz = sizeof(struct imp_slot_batch);
    size_t off_h = sz;
    size_t off_w = off_h + n * sizeof(uint64_t);
    size_t off_v = off_w + n * sizeof(struct imp_slot_batch_waiter);
    size_t off_e = off_v + n * sizeof(struct imp_blob *);
    size_t off_s = off_e + n * sizeof(int);
    char *p = imp_xmalloc(off_s + n);
    struct imp_slot_batch *b = (struct imp_slot_batch *)p;
    memset(b, 0, sizeof(*b));
    b->n = n;
    b->keys = keys;
    b->klens = klens;
    b->hashes = (uint64_t *)(p + off_h);
    b->waiters = (struct imp_slot_batch_waiter *)(p + off_w);
    b->vals = (struct imp_blob **)(p + off_v);
    b->errs = (int *)(p + off_e);
    b->state = (unsigned char *)(p + off_s);
    b->done = done;
    b->ud = ud;
    memset(b->vals, 0, n * sizeof(*b->vals));
    memset(b->errs, 0, n * sizeof(*b->errs));
    atomic_init(&b->pending, 0);
    return b;
}

void imp_slot_batch_destroy(struct imp_slot_batch *b)
{
    if (!b) return;
    for (size_t i = 0; i < b->n; i++) imp_blob_release(b->vals[i]);
    free(b);
}

static void batch_notify(struct imp_lazy_waiter *w, struct imp_blob *val, int err,
                         const char *errmsg)
{
    struct imp_slot_batch_waiter *bw = (struct imp_slot_batch_waiter *)w;
    struct imp_slot_batch *b = bw->b;
    b->vals[bw->i] = val ? imp_blob_fetch(val) : NULL;
    b->errs[bw->i] = val ? 0 : err;
    /* Nothing of b may be touched after this decrement unless it was the
     * last: the caller may free b as soon as it sees done. */
    if (atomic_fetch_sub_explicit(&b->pending, 1, memory_order_acq_rel) == 1) b->done(b);
}

/* How many keys ahead a batch prefetches: the slot's lock line, then (2/3
 * as far ahead) the bucket, then (1/3) the entry and its blob. Enough to
 * cover a trip to DRAM at each stage, few enough to stay in L1. */
#define AHEAD 12

int imp_slot_get_batch(struct imp_slot *s, struct imp_slot_batch *b, uint64_t now_ms)
{
    size_t unwaited = 1; /* the scan's own share */
    b->nhit = b->nfetch = b->nwait = 0;
    atomic_store_explicit(&b->pending, b->n + 1, memory_order_relaxed);
    for (size_t i = 0; i < b->n; i++) {
        uint64_t h = imp_fnv1a64(b->keys[i], b->klens[i]);
        b->hashes[i] = h;
        if (s->lazy && i < AHEAD) __builtin_prefetch(s->lazy[slot_of(s, h)], 1, 3);
    }
    for (size_t i = 0; i < b->n; i++) {
        const char *key = b->keys[i];
        size_t klen = b->klens[i];
        uint64_t h = b->hashes[i];
        struct imp_slot_batch_waiter *bw = &b->waiters[i];
        if (s->lazy) {
            if (i + AHEAD < b->n)
                __builtin_prefetch(s->lazy[slot_of(s, b->hashes[i + AHEAD])], 1, 3);
            if (i + AHEAD * 2 / 3 < b->n) {
                uint64_t ha = b->hashes[i + AHEAD * 2 / 3];
                imp_lazy_prefetch(s->lazy[slot_of(s, ha)], ha);
            }
            if (i + AHEAD / 3 < b->n) {
                uint64_t ha = b->hashes[i + AHEAD / 3];
                imp_lazy_prefetch_entry(s->lazy[slot_of(s, ha)], ha);
            }
        }
        bw->w.notify = batch_notify;
        bw->w.next = NULL;
        bw->b = b;
        bw->i = i;
        /* vals[i]/errs[i] of a WAIT key belong to its notifier from here:
         * get_h writes them (NULL/0) before queueing the waiter. */
        int r = get_h(s, h, key, klen, now_ms, &b->vals[i], &b->errs[i], NULL, 0, &bw->w, b);
        b->state[i] = (unsigned char)r;
        if (r == IMP_LAZY_WAIT) {
            b->nwait++;
            continue;
        }
        unwaited++;
        if (r == IMP_LAZY_HIT)
            b->nhit++;
        else
            b->nfetch++;
    }
    size_t before = atomic_fetch_sub_explicit(&b->pending, unwaited, memory_order_acq_rel);
    b->waiting = before != unwaited;
    return b->waiting;
}

void imp_slot_batch_finish(struct imp_slot *s, struct imp_slot_batch *b, int err,
                           const char *errmsg, int cache_error, uint64_t now_ms)
{
    if (err == 0) {
        err = IMP_ENOTFOUND;
        errmsg = "not returned by the fetch";
        cache_error = 0;
    }
    for (size_t i = 0; i < b->n; i++)
        if (b->state[i] == IMP_LAZY_FETCH)
            complete_h(s, b->hashes[i], b->keys[i], b->klens[i], NULL, err, errmsg, cache_error,
                       now_ms, b);
}

int imp_slot_batch_cancel(struct imp_slot *s, struct imp_slot_batch *b)
{
    if (!b->waiting) return 1;
    size_t removed = 0;
    for (size_t i = 0; i < b->n; i++)
        if (b->state[i] == IMP_LAZY_WAIT)
            removed += (size_t)cancel_h(s, b->hashes[i], b->keys[i], b->klens[i], &b->waiters[i].w);
    if (removed == 0) return 0;
    size_t before = atomic_fetch_sub_explicit(&b->pending, removed, memory_order_acq_rel);
    return before == removed;
}

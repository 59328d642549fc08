/*
 * Lazy LRU (lazy.h): a bounded LRU of entries {value blob or failure,
 * expiry}, one mutex, and a separate table of single flights (flight.h).
 *
 * Design:
 *  - Entries are intrusive: one allocation holds the hash chain link, the
 *    list links, the value and the key, so a hit touches the bucket array,
 *    the entry and the blob's count, nothing else. The hash table is
 *    chained, indexed by the top bits of hash * golden ratio (keys of one
 *    slot share hash % N), and doubles when entries outnumber buckets.
 *  - A hit costs two dependent memory reads, the entry and then its blob
 *    (whose count it takes); on a cache larger than the CPU's, each one is
 *    a trip to DRAM. So each bucket also keeps a copy of its first entry's
 *    blob pointer (the hint), and a lookup prefetches that blob for writing
 *    while it reads the entry: for the common one-entry chain both misses
 *    overlap. The hint is maintained under the lock like the chain itself
 *    (every change of a chain's head or of the head's value updates it).
 *  - Batches (slot.c) know their keys in advance and prefetch a few keys
 *    ahead: the cache's first line, then the key's bucket, then the
 *    bucket's first entry and blob (imp_lazy_prefetch*), so the misses of
 *    many keys overlap. Those reads take no lock: the table pointer with
 *    its size is one atomic word, bucket heads and hints are written with
 *    atomic stores, and a bucket array replaced by a grow is kept (it is
 *    smaller than its successor) until destroy, so a late reader never
 *    reads freed memory; entries and blobs are only prefetched, never read.
 *  - Flights are kept apart from entries: evicting, replacing or deleting
 *    an entry never touches a flight, so no fetch or waiter is ever lost.
 *    Only imp_lazy_complete (or destroy) ends a flight. A delete while in
 *    flight marks the flight, and its result is then handed to the waiters
 *    but not stored.
 *  - Waiters are notified, evicted entries reported and freed, after the
 *    lock is released: a notify or an eviction hook may call back into
 *    any cache, this one included.
 *  - Cheap hits. Moving an entry to the front writes three or four cache
 *    lines that other threads' hits then miss on. Each insert or promotion
 *    takes a tick of a per-cache clock and stamps the entry; an entry can
 *    have drifted back at most (clock - stamp) places since, so a hit
 *    promotes it only when that distance reaches a quarter of the size.
 *    The hottest quarter of the cache is thus never rewritten on a hit,
 *    and the list is LRU up to that quarter: an entry hit recently enough
 *    to be in the front quarter is not evicted before a quarter of the
 *    size of newer inserts or promotions. Caches smaller than 64 entries
 *    are exact LRU.
 *
 * Does not: expire entries in the background (an expired entry is a miss
 * and stays until re-fetched, replaced or evicted, as OpenIM's lazy LRU),
 * or bound the number of flights or waiters.
 */
#include "state/cache/lazy.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "state/cache/flight.h"
#include "state/cache/lazy_int.h"

#define EXACT_BELOW 64 /* caches smaller than this promote on every hit */

struct failure {
    int err;
    char msg[];
};

struct ent {
    struct ent *hnext; /* hash chain; also the graveyard link once removed */
    uint64_t hash;
    uint64_t expires;        /* valid while now_ms < expires */
    struct imp_blob *val;    /* one reference, or NULL for a cached failure */
    struct failure *fail;    /* when val is NULL */
    struct ent *prev, *next; /* list: head is the most recent */
    uint64_t stamp;          /* clock when last put at the front */
    uint32_t klen;
    char key[];
};

struct bucket {
    struct ent *head;
    struct imp_blob *hint; /* head ? head->val : NULL */
};

struct imp_lazy {
    pthread_mutex_t lock;
    /* buckets | bits (arrays are 64-byte aligned), for imp_lazy_prefetch:
     * one atomic word, so a reader without the lock never pairs an array
     * with another array's size. */
    uintptr_t table;
    struct bucket *buckets;
    unsigned bits;
    /* the rest of what a hit reads, near the above */
    uint64_t clock;  /* ticks on every insert and promotion */
    uint64_t window; /* hits within this distance of the front do not promote */
    struct ent *head, *tail;
    size_t n;
    size_t size;
    uint64_t success_ttl_ms;
    uint64_t failed_ttl_ms;
    struct imp_flights flights;
    imp_lazy_evict_fn on_evict;
    void *evict_ud;
    /* Arrays replaced by a grow, freed only by destroy: a prefetcher may
     * still read them. Together smaller than the current one. */
    struct bucket *retired[64];
    unsigned nretired;
};

/* Entries taken out under the lock, freed after it. */
struct grave {
    struct ent *evicted; /* report to on_evict, then free */
    struct ent *deleted; /* free only */
};

/* A zeroed bucket array of 1 << bits (>= 4) buckets, 64-byte aligned. */
static struct bucket *new_buckets(unsigned bits)
{
    size_t sz = ((size_t)1 << bits) * sizeof(struct bucket);
    struct bucket *b = aligned_alloc(64, sz);
    if (!b) abort();
    memset(b, 0, sz);
    return b;
}

struct imp_lazy *imp_lazy_create(const struct imp_lazy_config *cfg)
{
    if (!cfg || cfg->size == 0) return NULL;
    /* Own cache lines: slots' mutexes must not share one. */
    size_t sz = (sizeof(struct imp_lazy) + 63) & ~(size_t)63;
    struct imp_lazy *c = aligned_alloc(64, sz);
    if (!c) return NULL;
    memset(c, 0, sz);
    /* Critical sections are a few memory reads: spin a little before
     * sleeping in the kernel when two threads meet in one slot. */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&c->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    c->bits = 4;
    c->buckets = new_buckets(c->bits);
    c->table = (uintptr_t)c->buckets | c->bits;
    c->size = cfg->size;
    c->window = cfg->size < EXACT_BELOW ? 0 : cfg->size / 4;
    c->success_ttl_ms = cfg->success_ttl_ms;
    c->failed_ttl_ms = cfg->failed_ttl_ms;
    imp_flights_init(&c->flights);
    return c;
}

static void ent_free(struct ent *e)
{
    imp_blob_release(e->val);
    free(e->fail);
    free(e);
}

static void bury(struct imp_lazy *c, struct grave *g)
{
    while (g->evicted) {
        struct ent *e = g->evicted;
        g->evicted = e->hnext;
        if (c->on_evict) c->on_evict(c->evict_ud, e->key, e->klen);
        ent_free(e);
    }
    while (g->deleted) {
        struct ent *e = g->deleted;
        g->deleted = e->hnext;
        ent_free(e);
    }
}

void imp_lazy_destroy(struct imp_lazy *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    struct imp_lazy_waiter *ws = imp_flights_close(&c->flights);
    pthread_mutex_unlock(&c->lock);
    imp_flight_notify(ws, NULL, IMP_ECLOSED, "cache destroyed");
    struct ent *e = c->head;
    while (e) {
        struct ent *next = e->next;
        ent_free(e);
        e = next;
    }
    imp_flights_dispose(&c->flights);
    for (unsigned i = 0; i < c->nretired; i++) free(c->retired[i]);
    free(c->buckets);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void imp_lazy_on_evict(struct imp_lazy *c, imp_lazy_evict_fn fn, void *ud)
{
    c->on_evict = fn;
    c->evict_ud = ud;
}

/* ---- table and list (lock held) ------------------------------------------ */

static struct ent *lookup(const struct imp_lazy *c, uint64_t h, const char *key, size_t klen)
{
    const struct bucket *b = &c->buckets[imp_flight_bucket(h, c->bits)];
    if (b->hint) __builtin_prefetch(b->hint, 1, 3);
    struct ent *e = b->head;
    for (; e; e = e->hnext)
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0) return e;
    return NULL;
}

static void grow(struct imp_lazy *c)
{
    unsigned bits = c->bits + 1;
    size_t nb = (size_t)1 << c->bits;
    struct bucket *b = new_buckets(bits);
    for (size_t i = 0; i < nb; i++) {
        struct ent *e = c->buckets[i].head;
        while (e) {
            struct ent *next = e->hnext;
            size_t j = imp_flight_bucket(e->hash, bits);
            e->hnext = b[j].head;
            b[j].head = e;
            b[j].hint = e->val;
            e = next;
        }
    }
    IMP_ASSERT(c->nretired < IMP_ARRAY_LEN(c->retired));
    c->retired[c->nretired++] = c->buckets;
    c->buckets = b;
    c->bits = bits;
    /* Release: prefetchers that see the new array see it filled in. */
    __atomic_store_n(&c->table, (uintptr_t)b | bits, __ATOMIC_RELEASE);
}

/* A bucket's head and hint are read by prefetchers without the lock:
 * they are written with (relaxed, so plain) atomic stores. */
static inline void set_head(struct bucket *b, struct ent *head)
{
    __atomic_store_n(&b->head, head, __ATOMIC_RELAXED);
    __atomic_store_n(&b->hint, head ? head->val : NULL, __ATOMIC_RELAXED);
}

static void table_remove(struct imp_lazy *c, struct ent *e)
{
    struct bucket *b = &c->buckets[imp_flight_bucket(e->hash, c->bits)];
    if (b->head == e) {
        set_head(b, e->hnext);
        return;
    }
    struct ent **pp = &b->head->hnext;
    while (*pp != e) pp = &(*pp)->hnext;
    *pp = e->hnext;
}

static void table_insert(struct imp_lazy *c, struct ent *e)
{
    if (c->n >= ((size_t)1 << c->bits)) grow(c);
    struct bucket *b = &c->buckets[imp_flight_bucket(e->hash, c->bits)];
    e->hnext = b->head;
    set_head(b, e);
}

/* e's value changed: keep its bucket's hint in step. */
static void sync_hint(struct imp_lazy *c, struct ent *e)
{
    struct bucket *b = &c->buckets[imp_flight_bucket(e->hash, c->bits)];
    if (b->head == e) set_head(b, e);
}

static void list_unlink(struct imp_lazy *c, struct ent *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
}

static void list_push_front(struct imp_lazy *c, struct ent *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    else
        c->tail = e;
    c->head = e;
    e->stamp = ++c->clock;
}

static void to_front(struct imp_lazy *c, struct ent *e)
{
    if (c->head != e) {
        list_unlink(c, e);
        list_push_front(c, e);
    } else {
        e->stamp = ++c->clock;
    }
}

/* A hit: promote only when the entry may have left the front window. */
static inline void touch(struct imp_lazy *c, struct ent *e)
{
    if (c->clock - e->stamp >= c->window) to_front(c, e);
}

static void remove_ent(struct imp_lazy *c, struct ent *e, struct ent **list)
{
    table_remove(c, e);
    list_unlink(c, e);
    c->n--;
    e->hnext = *list;
    *list = e;
}

static void set_value(struct ent *e, struct imp_blob *val, int err, const char *errmsg,
                      uint64_t expires)
{
    imp_blob_release(e->val);
    free(e->fail);
    e->val = NULL;
    e->fail = NULL;
    if (val) {
        e->val = imp_blob_fetch(val);
    } else {
        size_t ml = errmsg ? strlen(errmsg) : 0;
        e->fail = imp_xmalloc(sizeof(*e->fail) + ml + 1);
        e->fail->err = err;
        memcpy(e->fail->msg, errmsg ? errmsg : "", ml + 1);
    }
    e->expires = expires;
}

/* Stores val (or the failure) for key at the front, evicting the oldest
 * entry into g when the cache overflows. */
static void store(struct imp_lazy *c, uint64_t h, const char *key, size_t klen,
                  struct imp_blob *val, int err, const char *errmsg, uint64_t expires,
                  struct grave *g)
{
    struct ent *e = lookup(c, h, key, klen);
    if (e) {
        set_value(e, val, err, errmsg, expires);
        sync_hint(c, e);
        to_front(c, e);
        return;
    }
    IMP_ASSERT(klen <= UINT32_MAX);
    e = imp_xmalloc(sizeof(*e) + klen);
    e->hash = h;
    e->klen = (uint32_t)klen;
    memcpy(e->key, key, klen);
    e->val = NULL;
    e->fail = NULL;
    set_value(e, val, err, errmsg, expires);
    table_insert(c, e);
    list_push_front(c, e);
    c->n++;
    if (c->n > c->size) remove_ent(c, c->tail, &g->evicted);
}

static uint64_t expiry(uint64_t now_ms, uint64_t ttl_ms)
{
    if (ttl_ms == 0 || now_ms > UINT64_MAX - ttl_ms) return UINT64_MAX;
    return now_ms + ttl_ms;
}

/* ---- operations ------------------------------------------------------------ */

void imp_lazy_prefetch(struct imp_lazy *c, uint64_t h)
{
    uintptr_t t = __atomic_load_n(&c->table, __ATOMIC_ACQUIRE);
    const struct bucket *b = (const struct bucket *)(t & ~(uintptr_t)63);
    __builtin_prefetch(&b[imp_flight_bucket(h, (unsigned)(t & 63))], 0, 3);
}

void imp_lazy_prefetch_entry(struct imp_lazy *c, uint64_t h)
{
    uintptr_t t = __atomic_load_n(&c->table, __ATOMIC_ACQUIRE);
    struct bucket *b = (struct bucket *)(t & ~(uintptr_t)63);
    b += imp_flight_bucket(h, (unsigned)(t & 63));
    /* The array may be retired (still allocated) and the entry and blob
     * freed meanwhile: prefetches never fault, and nothing is read
     * through these pointers. */
    __builtin_prefetch(__atomic_load_n(&b->head, __ATOMIC_RELAXED), 0, 3);
    struct imp_blob *hint = __atomic_load_n(&b->hint, __ATOMIC_RELAXED);
    if (hint) __builtin_prefetch(hint, 1, 3);
}

int imp_lazy_get_h(struct imp_lazy *c, uint64_t h, const char *key, size_t klen, uint64_t now_ms,
                   struct imp_blob **val, int *err, char *errbuf, size_t errlen,
                   struct imp_lazy_waiter *w, const void *leader)
{
    pthread_mutex_lock(&c->lock);
    struct ent *e = lookup(c, h, key, klen);
    if (e && now_ms < e->expires) {
        if (e->val) {
            *val = imp_blob_fetch(e->val);
            *err = 0;
        } else {
            *val = NULL;
            *err = e->fail->err;
            if (errbuf && errlen) snprintf(errbuf, errlen, "%s", e->fail->msg);
        }
        touch(c, e);
        pthread_mutex_unlock(&c->lock);
        return IMP_LAZY_HIT;
    }
    *val = NULL;
    *err = 0;
    struct imp_flight *fl = imp_flights_find(&c->flights, h, key, klen);
    if (fl) {
        imp_flight_wait(fl, w);
        pthread_mutex_unlock(&c->lock);
        return IMP_LAZY_WAIT;
    }
    imp_flights_start(&c->flights, h, key, klen, leader);
    pthread_mutex_unlock(&c->lock);
    return IMP_LAZY_FETCH;
}

int imp_lazy_get(struct imp_lazy *c, const char *key, size_t klen, uint64_t now_ms,
                 struct imp_blob **val, int *err, char *errbuf, size_t errlen,
                 struct imp_lazy_waiter *w)
{
    return imp_lazy_get_h(c, imp_fnv1a64(key, klen), key, klen, now_ms, val, err, errbuf, errlen, w,
                          NULL);
}

int imp_lazy_complete_h(struct imp_lazy *c, uint64_t h, const char *key, size_t klen,
                        struct imp_blob *val, int err, const char *errmsg, int cache_error,
                        uint64_t now_ms, const void *only_leader)
{
    struct grave g = {0};
    if (!val && !err) {
        err = IMP_ENOTFOUND;
        if (!errmsg) errmsg = "no value";
    }
    if (val) err = 0;
    pthread_mutex_lock(&c->lock);
    struct imp_flight *fl = imp_flights_find(&c->flights, h, key, klen);
    if (!fl || (only_leader && fl->leader != only_leader)) {
        pthread_mutex_unlock(&c->lock);
        return 0;
    }
    imp_flights_remove(&c->flights, fl);
    if (!fl->deleted) {
        if (val)
            store(c, h, key, klen, val, 0, NULL, expiry(now_ms, c->success_ttl_ms), &g);
        else if (cache_error && c->failed_ttl_ms)
            store(c, h, key, klen, NULL, err, errmsg, expiry(now_ms, c->failed_ttl_ms), &g);
    }
    pthread_mutex_unlock(&c->lock);
    imp_flight_notify(fl->head, val, err, errmsg ? errmsg : "");
    free(fl);
    bury(c, &g);
    return 1;
}

void imp_lazy_complete(struct imp_lazy *c, const char *key, size_t klen, struct imp_blob *val,
                       int err, const char *errmsg, int cache_error, uint64_t now_ms)
{
    imp_lazy_complete_h(c, imp_fnv1a64(key, klen), key, klen, val, err, errmsg, cache_error, now_ms,
                        NULL);
}

int imp_lazy_cancel_h(struct imp_lazy *c, uint64_t h, const char *key, size_t klen,
                      struct imp_lazy_waiter *w)
{
    pthread_mutex_lock(&c->lock);
    struct imp_flight *fl = imp_flights_find(&c->flights, h, key, klen);
    int r = fl ? imp_flight_cancel(fl, w) : 0;
    pthread_mutex_unlock(&c->lock);
    return r;
}

int imp_lazy_cancel(struct imp_lazy *c, const char *key, size_t klen, struct imp_lazy_waiter *w)
{
    return imp_lazy_cancel_h(c, imp_fnv1a64(key, klen), key, klen, w);
}

int imp_lazy_set_h(struct imp_lazy *c, uint64_t h, const char *key, size_t klen,
                   struct imp_blob *val, uint64_t now_ms, int only_if_present)
{
    struct grave g = {0};
    int stored = 0;
    pthread_mutex_lock(&c->lock);
    if (!only_if_present || lookup(c, h, key, klen)) {
        store(c, h, key, klen, val, 0, NULL, expiry(now_ms, c->success_ttl_ms), &g);
        stored = 1;
    }
    pthread_mutex_unlock(&c->lock);
    bury(c, &g);
    return stored;
}

int imp_lazy_set(struct imp_lazy *c, const char *key, size_t klen, struct imp_blob *val,
                 uint64_t now_ms)
{
    return imp_lazy_set_h(c, imp_fnv1a64(key, klen), key, klen, val, now_ms, 0);
}

int imp_lazy_set_has(struct imp_lazy *c, const char *key, size_t klen, struct imp_blob *val,
                     uint64_t now_ms)
{
    return imp_lazy_set_h(c, imp_fnv1a64(key, klen), key, klen, val, now_ms, 1);
}

int imp_lazy_del_h(struct imp_lazy *c, uint64_t h, const char *key, size_t klen)
{
    struct grave g = {0};
    int r = 0;
    pthread_mutex_lock(&c->lock);
    struct ent *e = lookup(c, h, key, klen);
    if (e) {
        remove_ent(c, e, &g.deleted);
        r = 1;
    }
    struct imp_flight *fl = imp_flights_find(&c->flights, h, key, klen);
    if (fl) {
        fl->deleted = 1;
        r = 1;
    }
    pthread_mutex_unlock(&c->lock);
    bury(c, &g);
    return r;
}

int imp_lazy_del(struct imp_lazy *c, const char *key, size_t klen)
{
    return imp_lazy_del_h(c, imp_fnv1a64(key, klen), key, klen);
}

size_t imp_lazy_purge(struct imp_lazy *c)
{
    struct grave g = {0};
    pthread_mutex_lock(&c->lock);
    size_t n = c->n;
    while (c->tail) remove_ent(c, c->tail, &g.deleted);
    imp_flights_mark_deleted(&c->flights);
    pthread_mutex_unlock(&c->lock);
    bury(c, &g);
    return n;
}

size_t imp_lazy_len(struct imp_lazy *c)
{
    pthread_mutex_lock(&c->lock);
    size_t n = c->n;
    pthread_mutex_unlock(&c->lock);
    return n;
}

void imp_lazy_check(struct imp_lazy *c)
{
    pthread_mutex_lock(&c->lock);
    size_t n = 0;
    const struct ent *prev = NULL;
    /* The promotion rule rests on: an entry's distance from the front never
     * exceeds the ticks since it was stamped. */
    for (const struct ent *e = c->head; e; prev = e, e = e->next) {
        IMP_ASSERT(e->prev == prev);
        IMP_ASSERT(lookup(c, e->hash, e->key, e->klen) == e);
        IMP_ASSERT(e->hash == imp_fnv1a64(e->key, e->klen));
        IMP_ASSERT((e->val == NULL) != (e->fail == NULL));
        IMP_ASSERT(e->stamp <= c->clock && c->clock - e->stamp >= n);
        n++;
    }
    IMP_ASSERT(prev == c->tail);
    IMP_ASSERT(n == c->n);
    IMP_ASSERT(c->n <= c->size);
    size_t in_table = 0, nb = (size_t)1 << c->bits;
    for (size_t i = 0; i < nb; i++) {
        const struct bucket *b = &c->buckets[i];
        IMP_ASSERT(b->hint == (b->head ? b->head->val : NULL));
        for (const struct ent *e = b->head; e; e = e->hnext) {
            IMP_ASSERT(imp_flight_bucket(e->hash, c->bits) == i);
            in_table++;
        }
    }
    IMP_ASSERT(in_table == c->n);
    imp_flights_check(&c->flights);
    pthread_mutex_unlock(&c->lock);
}

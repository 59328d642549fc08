/*
 * Lazy LRU (lazy.h): a bounded LRU of entries {value blob or failure,
 * expiry}, one mutex, and a separate table of single flights (flight.h).
 *
 * Design:
 *  - Entries are intrusive: one block holds the hash chain link, the list
 *    links, the value (and an inline copy of a small one) and the key, so
 *    a copying hit touches the bucket array and the entry, nothing else.
 *    The hash table is chained, indexed by the top bits of hash * golden
 *    ratio (keys of one slot share hash % N), and doubles when entries
 *    outnumber buckets.
 *  - A locked hit (imp_lazy_get, batches) costs two dependent memory
 *    reads, the entry and then its blob (whose count it takes); on a
 *    cache larger than the CPU's, each one is a trip to DRAM. So each
 *    bucket also keeps a copy of its first entry's blob pointer (the
 *    hint), and a lookup prefetches that blob for writing while it reads
 *    the entry: for the common one-entry chain both misses overlap. The
 *    hint is maintained under the lock like the chain itself (every
 *    change of a chain's head or of the head's value updates it).
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
 *  - Hits without the lock (imp_lazy_get_copy_h). A value of at most
 *    IMP_LAZY_INLINE_MAX bytes is also copied into its entry, after the
 *    key, so a hit that copies it out reads the bucket and one entry and
 *    writes nothing shared: no mutex, no reference count, no list links.
 *    Such a reader validates with the cache's sequence (a seqlock): every
 *    change readers can see (bucket heads, chains, an entry's key, value,
 *    expiry; recycling an entry) happens between two increments of seq
 *    under the lock, and a reader that saw seq odd or changed falls back
 *    to the locked path. Readers may thus read an entry while it is being
 *    rewritten, so entry memory is type-stable: an entry removed from the
 *    cache goes to a free list of its size class and is reused only for an
 *    entry of that class, never returned to malloc before destroy; every
 *    pointer ever stored in a chain link is an entry (or NULL), each
 *    entry's capacity never changes, and a reader bounds its walk and
 *    every length by that capacity. The free lists hold at most the peak
 *    number of entries of each class. Values over IMP_LAZY_INLINE_MAX,
 *    cached failures and expired entries take the locked path.
 *  - Cheap hits, CLOCK promotion. Moving an entry to the front on every
 *    hit writes three or four cache lines (the entry's neighbours, the
 *    head) that are each a memory miss on a large cache, and that other
 *    threads' hits then miss on. In a cache of EXACT_BELOW entries or more
 *    a hit only sets the entry's reference bit (when not set already: a
 *    hot entry is written once, not per hit); eviction is second chance:
 *    the entry at the tail is evicted if its bit is clear, else the bit is
 *    cleared and the entry goes back to the front, and the next tail is
 *    tried (at most n times). So an entry hit since it last reached the
 *    tail is never the one evicted, and entries nobody hit leave in the
 *    order they were stored, as golang-lru's. Only which key a full cache
 *    evicts can differ from golang-lru's exact LRU; what is cached, when
 *    it expires and what a delete removes are unchanged. Caches smaller
 *    than EXACT_BELOW (no production cache; tests pin exact order on
 *    them) are exact LRU: every hit moves the entry, under the lock, and
 *    they serve no hit without it.
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

#define EXACT_BELOW 64         /* caches smaller than this promote on every hit */
#define NO_INLINE   UINT32_MAX /* ent.ilen: the value is not copied inline */
#define MAX_WALK    64         /* a lock-free reader's longest chain walk */
#define NCLASS      96         /* size classes: 16-byte steps to 1 KiB, then 2^k */

/* Lock-free readers race with writers by design (the seqlock decides
 * what a reader keeps). Under TSan every racing access is an atomic, so
 * the checker verifies the rest; elsewhere the bytes are plain memcpy, as
 * the atomics would compile to on x86 anyway. */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define fence_release()  __atomic_thread_fence(__ATOMIC_RELEASE)
#define fence_acquire()  __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define racy_copy        memcpy
#define racy_write       memcpy
#define racy_eq(a, b, n) (memcmp(a, b, n) == 0)
#else
/* TSan does not model fences; every access a reader races with is an
 * atomic under TSan, so the fences are left out there. */
#define fence_release() ((void)0)
#define fence_acquire() ((void)0)
static void racy_copy(void *dst, const void *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ((char *)dst)[i] = __atomic_load_n((const char *)src + i, __ATOMIC_RELAXED);
}
static void racy_write(void *dst, const void *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        __atomic_store_n((char *)dst + i, ((const char *)src)[i], __ATOMIC_RELAXED);
}
static int racy_eq(const void *a, const void *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (__atomic_load_n((const char *)a + i, __ATOMIC_RELAXED) != ((const char *)b)[i])
            return 0;
    return 1;
}
#endif

struct failure {
    int err;
    char msg[];
};

struct ent {
    /* what a lock-free hit reads, first */
    struct ent *hnext; /* hash chain; the graveyard, then free list link once removed */
    uint64_t hash;
    uint64_t expires; /* valid while now_ms < expires */
    uint32_t klen;
    uint32_t ilen; /* bytes of the value copied after the key, or NO_INLINE */
    uint32_t cap;  /* bytes of data[]: fixed for the life of the block */
    uint8_t ref;   /* CLOCK bit: hit since it was stored or last reached the tail */
    uint8_t cls;   /* size class, fixed with cap */
    /* the rest only under the lock */
    struct imp_blob *val;    /* one reference, or NULL for a cached failure */
    struct failure *fail;    /* when val is NULL */
    struct ent *prev, *next; /* list: head is the most recent */
    char data[];             /* klen bytes of key, then ilen bytes of value */
};

/* A table of 1 << bits buckets is one block: the chain heads, then the
 * hints (hint[i] == head[i] ? head[i]->val : NULL). Split so that a
 * copying hit reads 8-byte heads only: W1's 100 x 2048 heads are 1.6 MB,
 * half the {head, hint} pairs', and stay in the L2 more often. */
static inline struct imp_blob **hints_of(struct ent **heads, unsigned bits)
{
    return (struct imp_blob **)(heads + ((size_t)1 << bits));
}

struct imp_lazy {
    /* Read by lock-free hits: its own cache line, written only by writers.
     * buckets | bits (arrays are 64-byte aligned): one atomic word, so a
     * reader without the lock never pairs an array with another array's
     * size. */
    uintptr_t table;
    unsigned seq; /* odd while a writer changes what readers see */
    int exact;    /* size < EXACT_BELOW: exact LRU, no lock-free hits */
    _Alignas(64) pthread_mutex_t lock;
    struct ent **heads; /* and the hints after them (hints_of) */
    unsigned bits;
    struct ent *head, *tail;
    size_t n;
    size_t size;
    uint64_t success_ttl_ms;
    uint64_t failed_ttl_ms;
    struct imp_flights flights;
    imp_lazy_evict_fn on_evict;
    void *evict_ud;
    /* Arrays replaced by a grow, freed only by destroy: a prefetcher or a
     * lock-free reader may still read them. Together smaller than the
     * current one. */
    struct ent **retired[64];
    unsigned nretired;
    struct ent *freel[NCLASS]; /* removed entries by size class (hnext) */
};

/* Entries taken out under the lock, freed after it. */
struct grave {
    struct ent *evicted; /* report to on_evict, then free */
    struct ent *deleted; /* free only */
};

/* A zeroed table of 1 << bits (>= 4) buckets, 64-byte aligned. */
static struct ent **new_buckets(unsigned bits)
{
    size_t sz = ((size_t)2 << bits) * sizeof(void *);
    struct ent **b = aligned_alloc(64, sz);
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
    c->heads = new_buckets(c->bits);
    c->table = (uintptr_t)c->heads | c->bits;
    c->size = cfg->size;
    c->exact = cfg->size < EXACT_BELOW;
    c->success_ttl_ms = cfg->success_ttl_ms;
    c->failed_ttl_ms = cfg->failed_ttl_ms;
    imp_flights_init(&c->flights);
    return c;
}

/* Writers bracket every change a lock-free reader could see (lock held). */
static inline void wbegin(struct imp_lazy *c)
{
    __atomic_store_n(&c->seq, c->seq + 1, __ATOMIC_RELAXED);
    fence_release();
}

static inline void wend(struct imp_lazy *c)
{
    __atomic_store_n(&c->seq, c->seq + 1, __ATOMIC_RELEASE);
}

/* Size class of an entry with need bytes of data: 16-byte steps up to
 * 1 KiB of entry, then powers of two. */
static unsigned size_class(size_t need, size_t *cap)
{
    size_t total = sizeof(struct ent) + need;
    if (total <= 1024) {
        size_t t = (total + 15) & ~(size_t)15;
        *cap = t - sizeof(struct ent);
        return (unsigned)(t / 16 - 1); /* 0..63 */
    }
    unsigned k = 11;
    while (((size_t)1 << k) < total) k++;
    IMP_ASSERT(64 + (k - 11) < NCLASS);
    *cap = ((size_t)1 << k) - sizeof(struct ent);
    return 64 + (k - 11);
}

/* The data capacity of class cls's blocks. */
static size_t cap_of(unsigned cls)
{
    if (cls < 64) return (size_t)(cls + 1) * 16 - sizeof(struct ent);
    return ((size_t)1 << (cls - 64 + 11)) - sizeof(struct ent);
}

/* An entry block able to hold need bytes of data (lock held): from the
 * free list of its class, else new. */
static struct ent *ent_alloc(struct imp_lazy *c, size_t need)
{
    size_t cap;
    unsigned cls = size_class(need, &cap);
    struct ent *e = c->freel[cls];
    if (e) {
        c->freel[cls] = e->hnext;
        return e;
    }
    e = imp_xmalloc(sizeof(*e) + cap);
    IMP_ASSERT(cap <= UINT32_MAX);
    e->cap = (uint32_t)cap;
    e->cls = (uint8_t)cls;
    e->hnext = NULL;
    e->hash = 0;
    e->expires = 0;
    e->klen = 0;
    e->ilen = NO_INLINE;
    e->ref = 0;
    return e;
}

/* Drops what an entry holds; the block itself stays for reuse. */
static void ent_clear(struct ent *e)
{
    imp_blob_release(e->val);
    free(e->fail);
    e->val = NULL;
    e->fail = NULL;
}

static void bury(struct imp_lazy *c, struct grave *g)
{
    if (!g->evicted && !g->deleted) return;
    struct ent *all = NULL;
    while (g->evicted) {
        struct ent *e = g->evicted;
        g->evicted = e->hnext;
        if (c->on_evict) c->on_evict(c->evict_ud, e->data, e->klen);
        ent_clear(e);
        __atomic_store_n(&e->hnext, all, __ATOMIC_RELEASE);
        all = e;
    }
    while (g->deleted) {
        struct ent *e = g->deleted;
        g->deleted = e->hnext;
        ent_clear(e);
        __atomic_store_n(&e->hnext, all, __ATOMIC_RELEASE);
        all = e;
    }
    /* To the free lists: a reader may still be reading them (its seq
     * check then fails), so they stay allocated. */
    pthread_mutex_lock(&c->lock);
    wbegin(c);
    while (all) {
        struct ent *e = all;
        all = e->hnext;
        __atomic_store_n(&e->hnext, c->freel[e->cls], __ATOMIC_RELEASE);
        c->freel[e->cls] = e;
    }
    wend(c);
    pthread_mutex_unlock(&c->lock);
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
        ent_clear(e);
        free(e);
        e = next;
    }
    for (unsigned i = 0; i < NCLASS; i++)
        while (c->freel[i]) {
            e = c->freel[i];
            c->freel[i] = e->hnext;
            free(e);
        }
    imp_flights_dispose(&c->flights);
    for (unsigned i = 0; i < c->nretired; i++) free(c->retired[i]);
    free(c->heads);
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
    size_t i = imp_flight_bucket(h, c->bits);
    struct imp_blob *hint = hints_of(c->heads, c->bits)[i];
    if (hint) __builtin_prefetch(hint, 1, 3);
    struct ent *e = c->heads[i];
    for (; e; e = e->hnext)
        if (e->hash == h && e->klen == klen && memcmp(e->data, key, klen) == 0) return e;
    return NULL;
}

static void grow(struct imp_lazy *c)
{
    unsigned bits = c->bits + 1;
    size_t nb = (size_t)1 << c->bits;
    struct ent **b = new_buckets(bits);
    struct imp_blob **hints = hints_of(b, bits);
    for (size_t i = 0; i < nb; i++) {
        struct ent *e = c->heads[i];
        while (e) {
            struct ent *next = e->hnext;
            size_t j = imp_flight_bucket(e->hash, bits);
            __atomic_store_n(&e->hnext, b[j], __ATOMIC_RELEASE);
            b[j] = e;
            hints[j] = e->val;
            e = next;
        }
    }
    IMP_ASSERT(c->nretired < IMP_ARRAY_LEN(c->retired));
    c->retired[c->nretired++] = c->heads;
    c->heads = b;
    c->bits = bits;
    /* Release: prefetchers that see the new array see it filled in. */
    __atomic_store_n(&c->table, (uintptr_t)b | bits, __ATOMIC_RELEASE);
}

/* A bucket's head and hint are read by prefetchers and lock-free readers
 * without the lock: atomic stores, release so that a reader that loads
 * the pointer sees the entry's fixed fields (cap, cls) written. */
static inline void set_head(struct imp_lazy *c, size_t i, struct ent *head)
{
    __atomic_store_n(&c->heads[i], head, __ATOMIC_RELEASE);
    __atomic_store_n(&hints_of(c->heads, c->bits)[i], head ? head->val : NULL, __ATOMIC_RELAXED);
}

static void table_remove(struct imp_lazy *c, struct ent *e)
{
    size_t i = imp_flight_bucket(e->hash, c->bits);
    if (c->heads[i] == e) {
        set_head(c, i, e->hnext);
        return;
    }
    struct ent **pp = &c->heads[i]->hnext;
    while (*pp != e) pp = &(*pp)->hnext;
    __atomic_store_n(pp, e->hnext, __ATOMIC_RELEASE);
}

static void table_insert(struct imp_lazy *c, struct ent *e)
{
    if (c->n >= ((size_t)1 << c->bits)) grow(c);
    size_t i = imp_flight_bucket(e->hash, c->bits);
    __atomic_store_n(&e->hnext, c->heads[i], __ATOMIC_RELEASE);
    set_head(c, i, e);
}

/* e's value changed: keep its bucket's hint in step. */
static void sync_hint(struct imp_lazy *c, struct ent *e)
{
    size_t i = imp_flight_bucket(e->hash, c->bits);
    if (c->heads[i] == e) set_head(c, i, e);
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
}

static void to_front(struct imp_lazy *c, struct ent *e)
{
    if (c->head != e) {
        list_unlink(c, e);
        list_push_front(c, e);
    }
}

/* Sets e's CLOCK bit; a hot entry's line is written once, not per hit.
 * Lock-free readers call it too (after validating), possibly on an entry
 * recycled meanwhile: a stray bit only gives that entry a second chance. */
static inline void mark(struct ent *e)
{
    if (!__atomic_load_n(&e->ref, __ATOMIC_RELAXED)) __atomic_store_n(&e->ref, 1, __ATOMIC_RELAXED);
}

/* A hit under the lock: exact LRU moves the entry, CLOCK marks it. */
static inline void touch(struct imp_lazy *c, struct ent *e)
{
    if (c->exact)
        to_front(c, e);
    else
        mark(e);
}

/* The entry to evict (lock held, cache not empty): the tail in an exact
 * cache; else second chance: a marked tail is cleared and goes back to
 * the front, at most n times (readers may mark entries meanwhile). */
static struct ent *victim(struct imp_lazy *c)
{
    if (c->exact) return c->tail;
    for (size_t i = 0; i < c->n && __atomic_load_n(&c->tail->ref, __ATOMIC_RELAXED); i++) {
        struct ent *e = c->tail;
        __atomic_store_n(&e->ref, 0, __ATOMIC_RELAXED);
        to_front(c, e);
    }
    return c->tail;
}

static void remove_ent(struct imp_lazy *c, struct ent *e, struct ent **list)
{
    table_remove(c, e);
    list_unlink(c, e);
    c->n--;
    __atomic_store_n(&e->hnext, *list, __ATOMIC_RELEASE);
    *list = e;
}

/* Data bytes an entry for key and val needs: the key, and the value
 * when it is copied inline. */
static size_t need_of(size_t klen, const struct imp_blob *val)
{
    return klen + (val && val->len <= IMP_LAZY_INLINE_MAX ? val->len : 0);
}

/* Sets e's value (lock held, inside wbegin/wend; e has room for
 * need_of(e->klen, val)). */
static void set_value(struct ent *e, struct imp_blob *val, int err, const char *errmsg,
                      uint64_t expires)
{
    ent_clear(e);
    __atomic_store_n(&e->ilen, NO_INLINE, __ATOMIC_RELAXED);
    if (val) {
        e->val = imp_blob_fetch(val);
        if (val->len <= IMP_LAZY_INLINE_MAX) {
            racy_write(e->data + e->klen, val->data, val->len);
            __atomic_store_n(&e->ilen, val->len, __ATOMIC_RELAXED);
        }
    } else {
        size_t ml = errmsg ? strlen(errmsg) : 0;
        e->fail = imp_xmalloc(sizeof(*e->fail) + ml + 1);
        e->fail->err = err;
        memcpy(e->fail->msg, errmsg ? errmsg : "", ml + 1);
    }
    __atomic_store_n(&e->expires, expires, __ATOMIC_RELAXED);
}

/* Stores val (or the failure) for key at the front, evicting an entry
 * into g first when the cache is full (lock held, inside wbegin/wend).
 * An entry whose block is too small for the new inline value is replaced
 * by a new one, in place in the list. */
static void store(struct imp_lazy *c, uint64_t h, const char *key, size_t klen,
                  struct imp_blob *val, int err, const char *errmsg, uint64_t expires,
                  struct grave *g)
{
    size_t need = need_of(klen, val);
    struct ent *e = lookup(c, h, key, klen);
    if (e && need <= e->cap) {
        set_value(e, val, err, errmsg, expires);
        sync_hint(c, e);
        __atomic_store_n(&e->ref, 0, __ATOMIC_RELAXED);
        to_front(c, e);
        return;
    }
    if (e)
        remove_ent(c, e, &g->deleted); /* a replacement, not an eviction */
    else if (c->n >= c->size)
        remove_ent(c, victim(c), &g->evicted);
    IMP_ASSERT(klen <= UINT32_MAX);
    e = ent_alloc(c, need);
    e->val = NULL;
    e->fail = NULL;
    __atomic_store_n(&e->hash, h, __ATOMIC_RELAXED);
    __atomic_store_n(&e->klen, (uint32_t)klen, __ATOMIC_RELAXED);
    __atomic_store_n(&e->ref, 0, __ATOMIC_RELAXED);
    racy_write(e->data, key, klen);
    set_value(e, val, err, errmsg, expires);
    table_insert(c, e);
    list_push_front(c, e);
    c->n++;
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
    struct ent **b = (struct ent **)(t & ~(uintptr_t)63);
    size_t i = imp_flight_bucket(h, (unsigned)(t & 63));
    __builtin_prefetch(&b[i], 0, 3);
    __builtin_prefetch(&hints_of(b, (unsigned)(t & 63))[i], 0, 3);
}

void imp_lazy_prefetch_entry(struct imp_lazy *c, uint64_t h)
{
    uintptr_t t = __atomic_load_n(&c->table, __ATOMIC_ACQUIRE);
    struct ent **b = (struct ent **)(t & ~(uintptr_t)63);
    size_t i = imp_flight_bucket(h, (unsigned)(t & 63));
    /* The array may be retired (still allocated) and the entry recycled
     * and the blob freed meanwhile: prefetches never fault, and nothing is
     * read through these pointers. */
    __builtin_prefetch(__atomic_load_n(&b[i], __ATOMIC_RELAXED), 0, 3);
    struct imp_blob *hint = __atomic_load_n(&hints_of(b, (unsigned)(t & 63))[i], __ATOMIC_RELAXED);
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

/* A hit without the lock: 1 with the value's inline copy in buf, 0 when
 * the locked path must answer (absent, expired, a failure, not inline,
 * larger than cap, or a writer got in the way). */
static int get_fast(struct imp_lazy *c, uint64_t h, const char *key, size_t klen, uint64_t now_ms,
                    void *buf, size_t cap, size_t *vlen)
{
    unsigned s1 = __atomic_load_n(&c->seq, __ATOMIC_ACQUIRE);
    if ((s1 & 1) || c->exact) return 0;
    uintptr_t t = __atomic_load_n(&c->table, __ATOMIC_ACQUIRE);
    struct ent **b = (struct ent **)(t & ~(uintptr_t)63);
    struct ent *e = __atomic_load_n(&b[imp_flight_bucket(h, (unsigned)(t & 63))], __ATOMIC_ACQUIRE);
    for (int i = 0; e && i < MAX_WALK; i++, e = __atomic_load_n(&e->hnext, __ATOMIC_ACQUIRE)) {
        if (__atomic_load_n(&e->hash, __ATOMIC_RELAXED) != h) continue;
        uint32_t kl = __atomic_load_n(&e->klen, __ATOMIC_RELAXED);
        if (kl != klen || kl > e->cap || !racy_eq(e->data, key, klen)) continue;
        uint32_t il = __atomic_load_n(&e->ilen, __ATOMIC_RELAXED);
        uint64_t exp = __atomic_load_n(&e->expires, __ATOMIC_RELAXED);
        if (il == NO_INLINE || il > cap || il > e->cap - kl || !(now_ms < exp)) return 0;
        racy_copy(buf, e->data + kl, il);
        fence_acquire();
        if (__atomic_load_n(&c->seq, __ATOMIC_RELAXED) != s1) return 0;
        *vlen = il;
        mark(e);
        return 1;
    }
    return 0;
}

int imp_lazy_get_copy_h(struct imp_lazy *c, uint64_t h, const char *key, size_t klen,
                        uint64_t now_ms, void *buf, size_t cap, size_t *vlen, struct imp_blob **val,
                        int *err, char *errbuf, size_t errlen, struct imp_lazy_waiter *w,
                        const void *leader)
{
    *vlen = 0;
    if (get_fast(c, h, key, klen, now_ms, buf, cap, vlen)) {
        *val = NULL;
        *err = 0;
        return IMP_LAZY_HIT;
    }
    int r = imp_lazy_get_h(c, h, key, klen, now_ms, val, err, errbuf, errlen, w, leader);
    if (r == IMP_LAZY_HIT && *val && (*val)->len <= cap) {
        memcpy(buf, (*val)->data, (*val)->len);
        *vlen = (*val)->len;
        imp_blob_release(*val);
        *val = NULL;
    }
    return r;
}

int imp_lazy_get_copy(struct imp_lazy *c, const char *key, size_t klen, uint64_t now_ms, void *buf,
                      size_t cap, size_t *vlen, struct imp_blob **val, int *err, char *errbuf,
                      size_t errlen, struct imp_lazy_waiter *w)
{
    return imp_lazy_get_copy_h(c, imp_fnv1a64(key, klen), key, klen, now_ms, buf, cap, vlen, val,
                               err, errbuf, errlen, w, NULL);
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
    wbegin(c);
    if (!fl->deleted) {
        if (val)
            store(c, h, key, klen, val, 0, NULL, expiry(now_ms, c->success_ttl_ms), &g);
        else if (cache_error && c->failed_ttl_ms)
            store(c, h, key, klen, NULL, err, errmsg, expiry(now_ms, c->failed_ttl_ms), &g);
    }
    wend(c);
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
        wbegin(c);
        store(c, h, key, klen, val, 0, NULL, expiry(now_ms, c->success_ttl_ms), &g);
        wend(c);
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
        wbegin(c);
        remove_ent(c, e, &g.deleted);
        wend(c);
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
    wbegin(c);
    while (c->tail) remove_ent(c, c->tail, &g.deleted);
    wend(c);
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
    IMP_ASSERT((c->seq & 1) == 0);
    IMP_ASSERT(c->exact == (c->size < EXACT_BELOW));
    for (const struct ent *e = c->head; e; prev = e, e = e->next) {
        IMP_ASSERT(e->prev == prev);
        IMP_ASSERT(lookup(c, e->hash, e->data, e->klen) == e);
        IMP_ASSERT(e->hash == imp_fnv1a64(e->data, e->klen));
        IMP_ASSERT((e->val == NULL) != (e->fail == NULL));
        IMP_ASSERT(__atomic_load_n(&e->ref, __ATOMIC_RELAXED) <= 1);
        size_t cap;
        IMP_ASSERT(size_class(e->klen, &cap) <= e->cls && e->cap == cap_of(e->cls));
        /* the inline copy is exactly the small value's bytes */
        if (e->val && e->val->len <= IMP_LAZY_INLINE_MAX)
            IMP_ASSERT(e->ilen == e->val->len && e->klen + e->ilen <= e->cap &&
                       memcmp(e->data + e->klen, e->val->data, e->ilen) == 0);
        else
            IMP_ASSERT(e->ilen == NO_INLINE);
        n++;
    }
    IMP_ASSERT(prev == c->tail);
    IMP_ASSERT(n == c->n);
    IMP_ASSERT(c->n <= c->size);
    size_t in_table = 0, nb = (size_t)1 << c->bits;
    for (size_t i = 0; i < nb; i++) {
        const struct ent *head = c->heads[i];
        IMP_ASSERT(hints_of(c->heads, c->bits)[i] == (head ? head->val : NULL));
        for (const struct ent *e = head; e; e = e->hnext) {
            IMP_ASSERT(imp_flight_bucket(e->hash, c->bits) == i);
            in_table++;
        }
    }
    IMP_ASSERT(in_table == c->n);
    for (unsigned i = 0; i < NCLASS; i++)
        for (const struct ent *e = c->freel[i]; e; e = e->hnext)
            IMP_ASSERT(e->cls == i && e->val == NULL && e->fail == NULL);
    imp_flights_check(&c->flights);
    pthread_mutex_unlock(&c->lock);
}

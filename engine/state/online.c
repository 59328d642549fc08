/*
 * The online table, built to hold millions of users in about 20 bytes each.
 *
 * A user ID hashes (FNV-1a, then a finalizer) to one of nshards shards,
 * each behind a rwlock. Workers look up in parallel; writers (normally only
 * the watcher, but any thread may write) take it exclusively, and growth
 * and compaction happen under it too. The lock prefers writers, so a busy
 * worker pool cannot starve the watcher's updates. A shard holds two
 * things.
 *
 * An arena of records, packed back to back without alignment in pages of
 * about 4 KiB, so a user is no allocation of its own:
 *
 *     [len] [gen] [platforms lo] [platforms hi] [ID bytes ...]
 *
 * An ID of 255 bytes or more stores 255 in len and its length in 4 more
 * header bytes; a record bigger than a page gets a page of its own. That is
 * the slow path for long IDs: stored exactly, just not compactly (OpenIM's
 * IDs are short). The empty ID is a key like any other.
 *
 * An index: linear probing over 32-bit slots, 0 for empty, otherwise
 * (offset + 1) << tagbits | tag, where the offset is page << 12 | position
 * and the tag is tagbits bits of the hash, so a probe reads the arena only
 * when the tag matches (1 in 256 for another key). tagbits is 8 until a
 * shard's records pass 16 MiB (4096 pages); each time the offset needs one
 * more bit, tagbits gives one up and the slots are re-encoded in place,
 * down to 0 bits and 4 GiB per shard. Capacity is any number (a
 * multiply-shift maps hashes onto it), kept between 60 % and 80 % load.
 *
 * For a 9-byte ID a user costs 13 bytes of record, 5 to 6.7 bytes of index
 * and, per shard, half a page of slack and a 128-byte header: about 20
 * bytes at a million users (bench_micro's online.memory measures the RSS).
 *
 * Deletion marks the record dead (platforms 0) and leaves its slot pointing
 * at it, as a tombstone. A key owns at most one slot, live or dead: a user
 * coming back is revived in place, and a lookup stops at the first slot
 * whose key matches. A rebuild reclaims the dead: it copies live records
 * into fresh pages and indexes them again into a new array. It runs when
 * dead bytes pass a quarter of the live ones (plus a page), or when an
 * insert would take the index past 80 % load, so each byte is copied O(1)
 * times on average.
 *
 * Generations are kept modulo 256 and sweep compares them for equality.
 * That is exact as long as the entries present at a sweep were stamped
 * with fewer than 256 consecutive generation numbers. The watcher
 * guarantees this: it stamps only its live generation g and the generation
 * g + 1 it is loading, and the sweep that ends each load leaves every
 * survivor at one generation. If that failed, the only possible error
 * would be a stale entry surviving a sweep. An entry stamped with the
 * sweep's own generation always matches, so no current entry is ever
 * dropped.
 *
 * Platforms are a 16-bit set (IMP_ONLINE_MAX_PLATFORM is 15). Bits above
 * it are ignored by set.
 *
 * Not done: a lock-free read path (a seqlock would need deferred freeing of
 * pages and index); handing memory back to the system (freed pages and
 * index arrays stay with malloc for the next growth).
 *
 * Written by the watcher (daemon/watcher.c), read by every worker
 * (calls/presence.c); no I/O, no lock held across a call out.
 */
#include "state/online.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"

#define PAGE_BITS 12
/* Record bytes per page: with malloc's chunk header, one page of memory. */
#define PAGE_SIZE ((1u << PAGE_BITS) - 16)
#define TAG_BITS  8
#define HDR       4 /* len, gen, platforms lo, hi */
#define HDR_LONG  8 /* ... and a 4-byte length when len is LEN_LONG */
#define LEN_LONG  255
#define NO_PAGE   UINT32_MAX
#define MIN_CAP   16
#define PLATFORMS ((1u << (IMP_ONLINE_MAX_PLATFORM + 1)) - 1)

_Static_assert(IMP_ONLINE_MAX_PLATFORM <= 15, "platforms are stored in 16 bits");

struct page {
    unsigned char *p;
    uint32_t used; /* bytes of records, packed from 0 */
};

struct shard {
    _Alignas(64) pthread_rwlock_t lock; /* a shard per cache line pair: no false sharing */
    uint32_t *slots;
    struct page *pages;
    uint32_t cap;   /* slots */
    uint32_t used;  /* slots in use: n + ndead */
    uint32_t n;     /* live records (users) */
    uint32_t ndead; /* dead records, each still owning its slot */
    uint32_t npages, pagecap;
    uint32_t cur;     /* the page being filled, or NO_PAGE */
    uint32_t tagbits; /* TAG_BITS, fewer once the offset needs the room */
    size_t live_bytes, dead_bytes;
};

struct imp_online {
    unsigned nshards;
    atomic_size_t count;
    struct shard *shards;
};

/* ---- hashing and encoding ---------------------------------------------- */

static uint64_t key_hash(const char *uid, size_t len)
{
    /* FNV-1a's low bits only depend on the input's low bits: finish with
     * murmur3's fmix64 so that shard, home slot and tag all see every byte. */
    uint64_t h = imp_fnv1a64(uid, len);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* x in [0, 2^32) onto [0, n) without a division (Lemire). */
static inline uint32_t reduce(uint32_t x, uint32_t n)
{
    return (uint32_t)(((uint64_t)x * n) >> 32);
}

/* Shard from the hash's top bits, home slot from its low half, tag from
 * bits 32..39: independent for any shard count up to 2^24. */
static inline struct shard *shard_of(struct imp_online *t, uint64_t h)
{
    return &t->shards[reduce((uint32_t)(h >> 32), t->nshards)];
}

static inline uint32_t tag_of(uint64_t h, uint32_t tagbits)
{
    return (uint32_t)(h >> 32) & ((1u << tagbits) - 1);
}

/* Pages an offset can name next to tagbits bits of tag: (off + 1) << tagbits
 * must fit 32 bits, and positions stay below PAGE_SIZE < 2^PAGE_BITS - 1. */
static inline uint32_t max_pages(uint32_t tagbits) { return 1u << (32 - PAGE_BITS - tagbits); }

static inline unsigned char *rec_at(const struct shard *s, uint32_t off)
{
    return s->pages[off >> PAGE_BITS].p + (off & ((1u << PAGE_BITS) - 1));
}

static inline uint32_t slot_off(const struct shard *s, uint32_t v) { return (v >> s->tagbits) - 1; }

static inline size_t rec_hdr(const unsigned char *r) { return r[0] == LEN_LONG ? HDR_LONG : HDR; }

static inline size_t rec_len(const unsigned char *r)
{
    uint32_t n;
    if (r[0] != LEN_LONG) return r[0];
    memcpy(&n, r + HDR, sizeof(n));
    return n;
}

static inline size_t rec_size(const unsigned char *r) { return rec_hdr(r) + rec_len(r); }
static inline const char *rec_id(const unsigned char *r) { return (const char *)r + rec_hdr(r); }
static inline uint32_t rec_platforms(const unsigned char *r) { return r[2] | (uint32_t)r[3] << 8; }

static inline void rec_stamp(unsigned char *r, uint32_t platforms, uint32_t gen)
{
    r[1] = (unsigned char)gen;
    r[2] = (unsigned char)platforms;
    r[3] = (unsigned char)(platforms >> 8);
}

static inline int rec_eq(const unsigned char *r, const char *uid, size_t len)
{
    if (len < LEN_LONG) return r[0] == len && memcmp(r + HDR, uid, len) == 0;
    return r[0] == LEN_LONG && rec_len(r) == len && memcmp(r + HDR_LONG, uid, len) == 0;
}

/* ---- shard internals (write lock held, except find under either) -------- */

/* The slot holding uid's record, live or dead, or else the empty slot that
 * ends its probe sequence. There always is one: load stays at most 80 %. */
static uint32_t find(const struct shard *s, uint64_t h, const char *uid, size_t len)
{
    const uint32_t tb = s->tagbits, tmask = (1u << tb) - 1, tag = tag_of(h, tb), cap = s->cap;
    const uint32_t *slots = s->slots;
    uint32_t i = reduce((uint32_t)h, cap);
    for (;;) {
        uint32_t v = slots[i];
        if (v == 0) return i;
        if ((v & tmask) == tag && rec_eq(rec_at(s, (v >> tb) - 1), uid, len)) return i;
        if (++i == cap) i = 0;
    }
}

/* Gives up one tag bit so that offsets can name twice as many pages. */
static void narrow_tags(struct shard *s)
{
    if (s->tagbits == 0) {
        fprintf(stderr, "impulse: online table shard over 4 GiB\n");
        abort();
    }
    uint32_t old = s->tagbits, nb = old - 1, nmask = (1u << nb) - 1;
    for (uint32_t i = 0; i < s->cap; i++) {
        uint32_t v = s->slots[i];
        if (v) s->slots[i] = (v >> old) << nb | (v & nmask);
    }
    s->tagbits = nb;
}

static uint32_t page_add(struct shard *s, size_t size)
{
    if (s->npages >= max_pages(s->tagbits)) narrow_tags(s);
    if (s->npages == s->pagecap) {
        s->pagecap = s->pagecap ? s->pagecap * 2 : 4;
        s->pages = imp_xrealloc(s->pages, s->pagecap * sizeof(*s->pages));
    }
    s->pages[s->npages] = (struct page){imp_xmalloc(size), 0};
    return s->npages++;
}

/* Room for a record of size bytes at the arena's end; sets *off. */
static unsigned char *rec_reserve(struct shard *s, size_t size, uint32_t *off)
{
    uint32_t pg;
    if (size > PAGE_SIZE) {
        pg = page_add(s, size); /* a page of its own */
    } else {
        if (s->cur == NO_PAGE || s->pages[s->cur].used + size > PAGE_SIZE)
            s->cur = page_add(s, PAGE_SIZE);
        pg = s->cur;
    }
    struct page *p = &s->pages[pg];
    *off = pg << PAGE_BITS | p->used;
    unsigned char *r = p->p + p->used;
    p->used += (uint32_t)size;
    s->live_bytes += size;
    return r;
}

static uint32_t rec_append(struct shard *s, const char *uid, size_t len, uint32_t platforms,
                           uint32_t gen)
{
    size_t hdr = len < LEN_LONG ? HDR : HDR_LONG;
    uint32_t off;
    unsigned char *r = rec_reserve(s, hdr + len, &off);
    r[0] = len < LEN_LONG ? (unsigned char)len : LEN_LONG;
    rec_stamp(r, platforms, gen);
    if (hdr == HDR_LONG) {
        uint32_t n = (uint32_t)len;
        memcpy(r + HDR, &n, sizeof(n));
    }
    memcpy(r + hdr, uid, len);
    return off;
}

/* Drops dead records (copying the live ones, in order, into fresh pages)
 * and indexes the live ones into a new array at 60 % load, counting `room`
 * users about to be added. */
static void rebuild(struct shard *s, uint32_t room)
{
    uint64_t want = ((uint64_t)s->n + room) * 5 / 3 + 1;
    if (want > UINT32_MAX / 2) {
        fprintf(stderr, "impulse: online table shard over 2^31 slots\n");
        abort();
    }
    free(s->slots);
    s->cap = (uint32_t)IMP_MAX(want, MIN_CAP);
    s->slots = imp_xcalloc(s->cap, sizeof(*s->slots));
    s->used = 0;
    s->tagbits = TAG_BITS; /* page_add narrows it on the empty index as needed */
    if (s->dead_bytes) {
        struct page *old = s->pages;
        uint32_t nold = s->npages;
        s->pages = NULL;
        s->npages = s->pagecap = 0;
        s->cur = NO_PAGE;
        s->live_bytes = s->dead_bytes = 0;
        s->ndead = 0;
        for (uint32_t k = 0; k < nold; k++) {
            for (uint32_t pos = 0; pos < old[k].used;) {
                const unsigned char *r = old[k].p + pos;
                size_t size = rec_size(r);
                uint32_t off;
                if (rec_platforms(r)) memcpy(rec_reserve(s, size, &off), r, size);
                pos += (uint32_t)size;
            }
            free(old[k].p);
        }
        free(old);
    }
    while (s->npages > max_pages(s->tagbits)) s->tagbits--;
    for (uint32_t k = 0; k < s->npages; k++) {
        for (uint32_t pos = 0; pos < s->pages[k].used;) {
            const unsigned char *r = s->pages[k].p + pos;
            uint64_t h = key_hash(rec_id(r), rec_len(r));
            uint32_t i = reduce((uint32_t)h, s->cap);
            while (s->slots[i])
                if (++i == s->cap) i = 0;
            s->slots[i] = ((k << PAGE_BITS | pos) + 1) << s->tagbits | tag_of(h, s->tagbits);
            s->used++;
            pos += (uint32_t)rec_size(r);
        }
    }
}

static void kill_record(struct shard *s, unsigned char *r)
{
    size_t size = rec_size(r);
    rec_stamp(r, 0, r[1]);
    s->n--;
    s->ndead++;
    s->live_bytes -= size;
    s->dead_bytes += size;
}

/* The garbage bound imp_online_check asserts. */
static int too_much_garbage(const struct shard *s)
{
    return s->dead_bytes > s->live_bytes / 4 + PAGE_SIZE;
}

/* ---- public ------------------------------------------------------------ */

struct imp_online *imp_online_create(unsigned nshards)
{
    if (nshards == 0) nshards = 64;
    struct imp_online *t = imp_xcalloc(1, sizeof(*t));
    t->nshards = nshards;
    t->shards = aligned_alloc(_Alignof(struct shard), nshards * sizeof(struct shard));
    if (!t->shards) {
        fprintf(stderr, "impulse: out of memory\n");
        abort();
    }
    memset(t->shards, 0, nshards * sizeof(struct shard));
    atomic_init(&t->count, 0);
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* glibc prefers readers by default: a busy worker pool could starve the
     * watcher's updates. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    for (unsigned i = 0; i < nshards; i++) {
        struct shard *s = &t->shards[i];
        pthread_rwlock_init(&s->lock, &attr);
        s->cap = MIN_CAP;
        s->slots = imp_xcalloc(MIN_CAP, sizeof(*s->slots));
        s->cur = NO_PAGE;
        s->tagbits = TAG_BITS;
    }
    pthread_rwlockattr_destroy(&attr);
    return t;
}

void imp_online_destroy(struct imp_online *t)
{
    if (!t) return;
    for (unsigned i = 0; i < t->nshards; i++) {
        struct shard *s = &t->shards[i];
        for (uint32_t k = 0; k < s->npages; k++) free(s->pages[k].p);
        free(s->pages);
        free(s->slots);
        pthread_rwlock_destroy(&s->lock);
    }
    free(t->shards);
    free(t);
}

void imp_online_set(struct imp_online *t, const char *uid, size_t len, uint64_t platforms,
                    uint32_t gen)
{
    if (len > UINT32_MAX - HDR_LONG) return; /* cannot be stored: never online */
    uint32_t set = (uint32_t)(platforms & PLATFORMS);
    uint64_t h = key_hash(uid, len);
    struct shard *s = shard_of(t, h);
    pthread_rwlock_wrlock(&s->lock);
    uint32_t i = find(s, h, uid, len);
    uint32_t v = s->slots[i];
    if (v) {
        unsigned char *r = rec_at(s, slot_off(s, v));
        uint32_t was = rec_platforms(r);
        if (set) {
            if (!was) { /* revive the dead record in place */
                size_t size = rec_size(r);
                s->n++;
                s->ndead--;
                s->live_bytes += size;
                s->dead_bytes -= size;
                atomic_fetch_add_explicit(&t->count, 1, memory_order_relaxed);
            }
            rec_stamp(r, set, gen);
        } else if (was) {
            kill_record(s, r);
            atomic_fetch_sub_explicit(&t->count, 1, memory_order_relaxed);
            if (too_much_garbage(s)) rebuild(s, 0);
        }
    } else if (set) {
        if ((uint64_t)(s->used + 1) * 5 > (uint64_t)s->cap * 4) {
            rebuild(s, 1);
            i = find(s, h, uid, len);
        }
        uint32_t off = rec_append(s, uid, len, set, gen);
        /* rec_append may have narrowed the tags: encode afterwards */
        s->slots[i] = (off + 1) << s->tagbits | tag_of(h, s->tagbits);
        s->used++;
        s->n++;
        atomic_fetch_add_explicit(&t->count, 1, memory_order_relaxed);
    }
    pthread_rwlock_unlock(&s->lock);
}

uint64_t imp_online_get(struct imp_online *t, const char *uid, size_t len)
{
    uint64_t h = key_hash(uid, len);
    struct shard *s = shard_of(t, h);
    uint64_t p = 0;
    pthread_rwlock_rdlock(&s->lock);
    uint32_t v = s->slots[find(s, h, uid, len)];
    if (v) p = rec_platforms(rec_at(s, slot_off(s, v)));
    pthread_rwlock_unlock(&s->lock);
    return p;
}

size_t imp_online_sweep(struct imp_online *t, uint32_t gen)
{
    size_t removed = 0;
    unsigned char g = (unsigned char)gen;
    for (unsigned k = 0; k < t->nshards; k++) {
        struct shard *s = &t->shards[k];
        pthread_rwlock_wrlock(&s->lock);
        size_t before = s->n;
        for (uint32_t pg = 0; pg < s->npages; pg++) {
            for (uint32_t pos = 0; pos < s->pages[pg].used;) {
                unsigned char *r = s->pages[pg].p + pos;
                pos += (uint32_t)rec_size(r);
                if (rec_platforms(r) && r[1] != g) kill_record(s, r);
            }
        }
        if (too_much_garbage(s)) rebuild(s, 0);
        removed += before - s->n;
        atomic_fetch_sub_explicit(&t->count, before - s->n, memory_order_relaxed);
        pthread_rwlock_unlock(&s->lock);
    }
    return removed;
}

size_t imp_online_count(struct imp_online *t)
{
    return atomic_load_explicit(&t->count, memory_order_relaxed);
}

int imp_online_parse_change(const char *payload, size_t len, const char **uid, size_t *uidlen,
                            uint64_t *platforms, char *err, size_t errlen)
{
    const char *end = payload + len;
    const char *last = payload;
    for (const char *p = payload; p < end; p++)
        if (*p == ':') last = p + 1;
    if (last == end) {
        snprintf(err, errlen, "empty userID in online_change payload");
        return IMP_EINVAL;
    }
    uint64_t set = 0;
    const char *p = payload;
    while (p < last) {
        const char *colon = memchr(p, ':', (size_t)(last - p));
        size_t n = (size_t)(colon - p);
        long v = 0;
        if (n == 0 || n > 9) goto bad;
        for (size_t i = 0; i < n; i++) {
            if (p[i] < '0' || p[i] > '9') goto bad;
            v = v * 10 + (p[i] - '0');
        }
        if (v > IMP_ONLINE_MAX_PLATFORM) {
            snprintf(err, errlen, "platform %ld out of range in online_change payload", v);
            return IMP_EINVAL;
        }
        set |= 1ULL << v;
        p = colon + 1;
        continue;
    bad:
        snprintf(err, errlen, "non-integer platform '%.*s' in online_change payload",
                 (int)IMP_MIN(n, 32), p);
        return IMP_EINVAL;
    }
    *uid = last;
    *uidlen = (size_t)(end - last);
    *platforms = set;
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static void check_shard(struct imp_online *t, unsigned k)
{
    struct shard *s = &t->shards[k];
    IMP_ASSERT(s->cap >= MIN_CAP && s->slots);
    IMP_ASSERT((uint64_t)s->used * 5 <= (uint64_t)s->cap * 4);
    IMP_ASSERT(s->used == s->n + s->ndead);
    IMP_ASSERT(s->tagbits <= TAG_BITS && s->npages <= max_pages(s->tagbits));
    IMP_ASSERT(s->npages <= s->pagecap);
    IMP_ASSERT(s->cur == NO_PAGE || s->cur < s->npages);
    IMP_ASSERT(!too_much_garbage(s));
    /* the arena: every record well formed, counts and bytes add up; offs
     * lists record starts in increasing order */
    uint32_t *offs = imp_xmalloc(((size_t)s->used + 1) * sizeof(*offs));
    size_t nrec = 0, live = 0, dead = 0, live_b = 0, dead_b = 0;
    for (uint32_t pg = 0; pg < s->npages; pg++) {
        const struct page *p = &s->pages[pg];
        IMP_ASSERT(p->p && p->used > 0);
        if (p->used > PAGE_SIZE) IMP_ASSERT(rec_size(p->p) == p->used); /* a page of its own */
        for (uint32_t pos = 0; pos < p->used;) {
            const unsigned char *r = p->p + pos;
            size_t size = rec_size(r);
            IMP_ASSERT(r[0] < LEN_LONG || rec_len(r) >= LEN_LONG);
            IMP_ASSERT(pos + size <= p->used);
            IMP_ASSERT(nrec < s->used);
            offs[nrec++] = pg << PAGE_BITS | pos;
            if (rec_platforms(r)) {
                live++;
                live_b += size;
            } else {
                dead++;
                dead_b += size;
            }
            pos += (uint32_t)size;
        }
    }
    IMP_ASSERT(live == s->n && dead == s->ndead);
    IMP_ASSERT(live_b == s->live_bytes && dead_b == s->dead_bytes);
    /* the index: every slot names a record start, whose key hashes to this
     * shard and tag and is found at this very slot (so no key has two) */
    size_t inuse = 0;
    for (uint32_t i = 0; i < s->cap; i++) {
        uint32_t v = s->slots[i];
        if (!v) continue;
        inuse++;
        uint32_t off = slot_off(s, v);
        IMP_ASSERT(bsearch(&off, offs, nrec, sizeof(*offs), cmp_u32) != NULL);
        const unsigned char *r = rec_at(s, off);
        uint64_t h = key_hash(rec_id(r), rec_len(r));
        IMP_ASSERT(shard_of(t, h) == s);
        IMP_ASSERT((v & ((1u << s->tagbits) - 1)) == tag_of(h, s->tagbits));
        IMP_ASSERT(find(s, h, rec_id(r), rec_len(r)) == i);
    }
    IMP_ASSERT(inuse == s->used && inuse == nrec);
    free(offs);
}

void imp_online_check(struct imp_online *t)
{
    /* Every shard read-locked at once (in order: nobody else holds two) so
     * that the total can be compared with the count. */
    size_t total = 0;
    for (unsigned k = 0; k < t->nshards; k++) pthread_rwlock_rdlock(&t->shards[k].lock);
    for (unsigned k = 0; k < t->nshards; k++) {
        check_shard(t, k);
        total += t->shards[k].n;
    }
    IMP_ASSERT(total == atomic_load(&t->count));
    for (unsigned k = t->nshards; k-- > 0;) pthread_rwlock_unlock(&t->shards[k].lock);
}

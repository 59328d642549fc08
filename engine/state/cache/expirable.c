/*
 * Expirable LRU: lru.h holds items {user value, expiry, bucket links,
 * key}; the items of one expiry bucket form a doubly linked list, so an
 * item leaves its bucket in O(1) whichever way it leaves the cache (the
 * inner LRU's free hook unlinks it).
 *
 * Time is cut in ticks of ceil(ttl/100) ms; an item expiring at t goes in
 * bucket (t / tick) % 100, and tick slot s is due when now >= (s+1)*tick.
 * A sweep walks the due slots since the last sweep (at most 100, the
 * whole ring) and removes their expired items. Since every expiry lies
 * within ttl of now, a due bucket can also hold items one lap ahead, which
 * are not expired: the sweep checks each item's time rather than emptying
 * blindly. Golang-lru instead sleeps until the newest entry of the next
 * bucket expires; with time as a parameter, checking is the equivalent.
 *
 * The item keeps its own copy of the key so a sweep can remove it through
 * the inner LRU's public interface; the expirable mode is the non-default
 * one, and the copy keeps lru.h free of entry handles.
 *
 * Not thread-safe: the slot LRU (slot.c) calls it under the slot's lock.
 */
#include "state/cache/expirable.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"

struct item {
    struct item *bprev, *bnext;
    struct imp_elru *owner;
    void *val;
    uint64_t expires; /* valid while now_ms < expires; UINT64_MAX: never */
    int bucket;       /* -1: in no bucket (no TTL) */
    size_t klen;
    char key[];
};

struct imp_elru {
    struct imp_lru *lru;
    uint64_t ttl_ms;
    uint64_t tick_ms;
    uint64_t next_slot; /* the first tick slot not swept yet */
    uint64_t due_ms;    /* (next_slot + 1) * tick: a sweep is due from then */
    struct item *buckets[IMP_ELRU_BUCKETS];
    struct imp_lru_type type;
    imp_lru_evict_fn on_evict;
    void *ud;
};

static void bucket_unlink(struct imp_elru *c, struct item *it)
{
    if (it->bucket < 0) return;
    if (it->bprev)
        it->bprev->bnext = it->bnext;
    else
        c->buckets[it->bucket] = it->bnext;
    if (it->bnext) it->bnext->bprev = it->bprev;
    it->bprev = it->bnext = NULL;
    it->bucket = -1;
}

static void bucket_link(struct imp_elru *c, struct item *it)
{
    if (it->expires == UINT64_MAX) {
        it->bucket = -1;
        return;
    }
    it->bucket = (int)((it->expires / c->tick_ms) % IMP_ELRU_BUCKETS);
    it->bprev = NULL;
    it->bnext = c->buckets[it->bucket];
    if (it->bnext) it->bnext->bprev = it;
    c->buckets[it->bucket] = it;
}

/* The inner LRU's free hook: whichever way an item goes, it leaves its
 * bucket and its value goes to the user's free. */
static void item_free(void *v)
{
    struct item *it = v;
    bucket_unlink(it->owner, it);
    if (it->owner->type.free) it->owner->type.free(it->val);
    free(it);
}

static void item_evicted(void *ud, const char *key, size_t klen, void *v)
{
    struct imp_elru *c = ud;
    struct item *it = v;
    if (c->on_evict) c->on_evict(c->ud, key, klen, it->val);
}

struct imp_elru *imp_elru_create(size_t size, uint64_t ttl_ms, const struct imp_lru_type *type,
                                 imp_lru_evict_fn on_evict, void *ud)
{
    if (size == 0) return NULL;
    struct imp_elru *c = imp_xcalloc(1, sizeof(*c));
    const struct imp_lru_type inner = {.dup = NULL, .free = item_free};
    c->lru = imp_lru_create(size, &inner, item_evicted, c);
    c->ttl_ms = ttl_ms;
    c->tick_ms = ttl_ms ? (ttl_ms + IMP_ELRU_BUCKETS - 1) / IMP_ELRU_BUCKETS : 1;
    c->next_slot = 0;
    c->due_ms = c->tick_ms;
    if (type) c->type = *type;
    c->on_evict = on_evict;
    c->ud = ud;
    return c;
}

void imp_elru_destroy(struct imp_elru *c)
{
    if (!c) return;
    imp_lru_destroy(c->lru);
    free(c);
}

size_t imp_elru_sweep(struct imp_elru *c, uint64_t now_ms)
{
    if (c->ttl_ms == 0 || now_ms < c->due_ms) return 0;
    uint64_t cur = now_ms / c->tick_ms; /* slots below cur are due */
    uint64_t s = c->next_slot;
    if (cur - s > IMP_ELRU_BUCKETS) s = cur - IMP_ELRU_BUCKETS;
    size_t removed = 0;
    for (; s < cur; s++) {
        struct item *it = c->buckets[s % IMP_ELRU_BUCKETS];
        while (it) {
            struct item *next = it->bnext;
            if (it->expires <= now_ms) {
                imp_lru_remove(c->lru, it->key, it->klen);
                removed++;
            }
            it = next;
        }
    }
    c->next_slot = cur;
    c->due_ms = (cur + 1) * c->tick_ms;
    return removed;
}

int imp_elru_add(struct imp_elru *c, const char *key, size_t klen, void *val, uint64_t now_ms)
{
    imp_elru_sweep(c, now_ms);
    struct item *it = imp_xmalloc(sizeof(*it) + klen);
    it->owner = c;
    it->val = c->type.dup ? c->type.dup(val) : val;
    it->expires =
        c->ttl_ms == 0 || now_ms > UINT64_MAX - 1 - c->ttl_ms ? UINT64_MAX : now_ms + c->ttl_ms;
    it->klen = klen;
    memcpy(it->key, key, klen);
    bucket_link(c, it);
    return imp_lru_add(c->lru, key, klen, it);
}

int imp_elru_get(struct imp_elru *c, const char *key, size_t klen, uint64_t now_ms, void **val)
{
    imp_elru_sweep(c, now_ms);
    void *v;
    if (!imp_lru_get(c->lru, key, klen, &v)) return 0;
    struct item *it = v;
    if (now_ms >= it->expires) {
        imp_lru_remove(c->lru, key, klen);
        return 0;
    }
    if (val) *val = it->val;
    return 1;
}

int imp_elru_peek(struct imp_elru *c, const char *key, size_t klen, uint64_t now_ms, void **val)
{
    void *v;
    if (!imp_lru_peek(c->lru, key, klen, &v)) return 0;
    struct item *it = v;
    if (now_ms >= it->expires) return 0;
    if (val) *val = it->val;
    return 1;
}

int imp_elru_contains(struct imp_elru *c, const char *key, size_t klen, uint64_t now_ms)
{
    return imp_elru_peek(c, key, klen, now_ms, NULL);
}

int imp_elru_remove(struct imp_elru *c, const char *key, size_t klen)
{
    return imp_lru_remove(c->lru, key, klen);
}

int imp_elru_remove_oldest(struct imp_elru *c) { return imp_lru_remove_oldest(c->lru); }

struct keys_ctx {
    void (*fn)(void *ud, const char *key, size_t klen, void *val);
    void *ud;
};

static void keys_item(void *ud, const char *key, size_t klen, void *v)
{
    struct keys_ctx *k = ud;
    if (k->fn) k->fn(k->ud, key, klen, ((struct item *)v)->val);
}

size_t imp_elru_keys(struct imp_elru *c,
                     void (*fn)(void *ud, const char *key, size_t klen, void *val), void *ud)
{
    struct keys_ctx k = {fn, ud};
    return imp_lru_keys(c->lru, keys_item, &k);
}

size_t imp_elru_len(const struct imp_elru *c) { return imp_lru_len(c->lru); }

void imp_elru_purge(struct imp_elru *c) { imp_lru_purge(c->lru); }

struct check_ctx {
    struct imp_elru *c;
    size_t bucketed;
};

static void check_item(void *ud, const char *key, size_t klen, void *v)
{
    struct check_ctx *k = ud;
    struct item *it = v;
    IMP_ASSERT(it->owner == k->c);
    IMP_ASSERT(it->klen == klen && memcmp(it->key, key, klen) == 0);
    if (it->expires == UINT64_MAX) {
        IMP_ASSERT(it->bucket == -1);
        return;
    }
    IMP_ASSERT(it->bucket == (int)((it->expires / k->c->tick_ms) % IMP_ELRU_BUCKETS));
    k->bucketed++;
}

void imp_elru_check(struct imp_elru *c)
{
    imp_lru_check(c->lru);
    struct check_ctx k = {c, 0};
    imp_lru_keys(c->lru, check_item, &k);
    size_t linked = 0;
    for (int b = 0; b < IMP_ELRU_BUCKETS; b++) {
        const struct item *prev = NULL;
        for (const struct item *it = c->buckets[b]; it; prev = it, it = it->bnext) {
            IMP_ASSERT(it->bucket == b);
            IMP_ASSERT(it->bprev == prev);
            IMP_ASSERT(imp_lru_contains(c->lru, it->key, it->klen));
            linked++;
        }
    }
    IMP_ASSERT(linked == k.bucketed);
    IMP_ASSERT(c->due_ms == (c->next_slot + 1) * c->tick_ms);
}

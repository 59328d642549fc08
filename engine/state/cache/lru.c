/*
 * Simple LRU: a chained hash table over entries that also sit on a doubly
 * linked list, most recent at the head. One allocation per entry holds the
 * links, the hash, the value pointer and the key. The table doubles when
 * entries outnumber buckets (so a large size costs nothing until used)
 * and is indexed by the top bits of hash * golden ratio.
 *
 * Invariants (imp_lru_check): the list and the table hold the same n
 * entries, n <= size, every entry is in the bucket of its hash.
 *
 * Exact LRU: every get moves the entry. The shared, multi-threaded caches
 * (lazy.c) use their own cheaper promotion rule; this one is the plain
 * container, as golang-lru's simplelru.
 *
 * Not thread-safe: the expirable LRU (expirable.c) calls it under its
 * slot's lock.
 */
#include "state/cache/lru.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"

struct lent {
    struct lent *hnext;
    struct lent *prev, *next; /* head is the most recent */
    uint64_t hash;
    void *val;
    size_t klen;
    char key[];
};

struct imp_lru {
    struct lent **buckets;
    unsigned bits;
    struct lent *head, *tail;
    size_t n;
    size_t size;
    struct imp_lru_type type;
    imp_lru_evict_fn on_evict;
    void *ud;
};

static inline size_t bucket(uint64_t h, unsigned bits)
{
    return (size_t)((h * 0x9e3779b97f4a7c15ULL) >> (64 - bits));
}

struct imp_lru *imp_lru_create(size_t size, const struct imp_lru_type *type,
                               imp_lru_evict_fn on_evict, void *ud)
{
    if (size == 0) return NULL;
    struct imp_lru *c = imp_xcalloc(1, sizeof(*c));
    c->bits = 4;
    c->buckets = imp_xcalloc((size_t)1 << c->bits, sizeof(*c->buckets));
    c->size = size;
    if (type) c->type = *type;
    c->on_evict = on_evict;
    c->ud = ud;
    return c;
}

static void drop(struct imp_lru *c, struct lent *e)
{
    if (c->type.free) c->type.free(e->val);
    free(e);
}

void imp_lru_destroy(struct imp_lru *c)
{
    if (!c) return;
    struct lent *e = c->head;
    while (e) {
        struct lent *next = e->next;
        drop(c, e);
        e = next;
    }
    free(c->buckets);
    free(c);
}

static struct lent *lookup(const struct imp_lru *c, uint64_t h, const char *key, size_t klen)
{
    for (struct lent *e = c->buckets[bucket(h, c->bits)]; e; e = e->hnext)
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0) return e;
    return NULL;
}

static void list_unlink(struct imp_lru *c, struct lent *e)
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

static void list_push_front(struct imp_lru *c, struct lent *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    else
        c->tail = e;
    c->head = e;
}

static void to_front(struct imp_lru *c, struct lent *e)
{
    if (c->head == e) return;
    list_unlink(c, e);
    list_push_front(c, e);
}

static void grow(struct imp_lru *c)
{
    unsigned bits = c->bits + 1;
    size_t nb = (size_t)1 << c->bits;
    struct lent **b = imp_xcalloc((size_t)1 << bits, sizeof(*b));
    for (size_t i = 0; i < nb; i++) {
        struct lent *e = c->buckets[i];
        while (e) {
            struct lent *next = e->hnext;
            size_t j = bucket(e->hash, bits);
            e->hnext = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->bits = bits;
}

/* Takes e out of table and list, reports it, frees it. */
static void remove_ent(struct imp_lru *c, struct lent *e, int report)
{
    struct lent **pp = &c->buckets[bucket(e->hash, c->bits)];
    while (*pp != e) pp = &(*pp)->hnext;
    *pp = e->hnext;
    list_unlink(c, e);
    c->n--;
    if (report && c->on_evict) c->on_evict(c->ud, e->key, e->klen, e->val);
    drop(c, e);
}

int imp_lru_add(struct imp_lru *c, const char *key, size_t klen, void *val)
{
    uint64_t h = imp_fnv1a64(key, klen);
    void *v = c->type.dup ? c->type.dup(val) : val;
    struct lent *e = lookup(c, h, key, klen);
    if (e) {
        void *old = e->val;
        e->val = v;
        to_front(c, e);
        if (c->type.free) c->type.free(old);
        return 0;
    }
    e = imp_xmalloc(sizeof(*e) + klen);
    e->hash = h;
    e->val = v;
    e->klen = klen;
    memcpy(e->key, key, klen);
    if (c->n >= ((size_t)1 << c->bits)) grow(c);
    size_t i = bucket(h, c->bits);
    e->hnext = c->buckets[i];
    c->buckets[i] = e;
    list_push_front(c, e);
    c->n++;
    if (c->n <= c->size) return 0;
    remove_ent(c, c->tail, 1);
    return 1;
}

int imp_lru_get(struct imp_lru *c, const char *key, size_t klen, void **val)
{
    struct lent *e = lookup(c, imp_fnv1a64(key, klen), key, klen);
    if (!e) return 0;
    to_front(c, e);
    if (val) *val = e->val;
    return 1;
}

int imp_lru_peek(struct imp_lru *c, const char *key, size_t klen, void **val)
{
    struct lent *e = lookup(c, imp_fnv1a64(key, klen), key, klen);
    if (!e) return 0;
    if (val) *val = e->val;
    return 1;
}

int imp_lru_contains(struct imp_lru *c, const char *key, size_t klen)
{
    return lookup(c, imp_fnv1a64(key, klen), key, klen) != NULL;
}

int imp_lru_remove(struct imp_lru *c, const char *key, size_t klen)
{
    struct lent *e = lookup(c, imp_fnv1a64(key, klen), key, klen);
    if (!e) return 0;
    remove_ent(c, e, 1);
    return 1;
}

int imp_lru_remove_oldest(struct imp_lru *c)
{
    if (!c->tail) return 0;
    remove_ent(c, c->tail, 1);
    return 1;
}

int imp_lru_get_oldest(struct imp_lru *c, const char **key, size_t *klen, void **val)
{
    struct lent *e = c->tail;
    if (!e) return 0;
    if (key) *key = e->key;
    if (klen) *klen = e->klen;
    if (val) *val = e->val;
    return 1;
}

size_t imp_lru_keys(struct imp_lru *c,
                    void (*fn)(void *ud, const char *key, size_t klen, void *val), void *ud)
{
    size_t n = 0;
    for (struct lent *e = c->tail; e; e = e->prev, n++)
        if (fn) fn(ud, e->key, e->klen, e->val);
    return n;
}

size_t imp_lru_len(const struct imp_lru *c) { return c->n; }

void imp_lru_purge(struct imp_lru *c)
{
    while (c->tail) remove_ent(c, c->tail, 1);
}

void imp_lru_check(const struct imp_lru *c)
{
    size_t n = 0;
    const struct lent *prev = NULL;
    for (const struct lent *e = c->head; e; prev = e, e = e->next) {
        IMP_ASSERT(e->prev == prev);
        IMP_ASSERT(e->hash == imp_fnv1a64(e->key, e->klen));
        IMP_ASSERT(lookup(c, e->hash, e->key, e->klen) == e);
        n++;
    }
    IMP_ASSERT(prev == c->tail);
    IMP_ASSERT(n == c->n);
    IMP_ASSERT(c->n <= c->size);
    size_t in_table = 0, nb = (size_t)1 << c->bits;
    for (size_t i = 0; i < nb; i++)
        for (const struct lent *e = c->buckets[i]; e; e = e->hnext) {
            IMP_ASSERT(bucket(e->hash, c->bits) == i);
            in_table++;
        }
    IMP_ASSERT(in_table == c->n);
}

/*
 * Each shard maps a key to the set of keys linked to it (a small array:
 * link sets are a handful of keys, so membership is a linear scan over
 * hashes). Linking key to k records k in key's set (key's shard) and key in
 * k's set (k's shard), one lock at a time, as OpenIM does; a delete walks
 * the component depth-first, taking each key's whole set out of its shard
 * under that shard's lock, and remembers visited keys in a strset.
 *
 * Between the two halves of a link, or while a delete walks, another
 * thread can see a one-sided link; the invariant (every link has its
 * reverse) therefore holds only at rest, which is when imp_link_check runs.
 * A one-sided link costs at most an extra local delete, never a missed
 * one: a delete removes everything reachable from either side.
 *
 * Thread-safe; used by the local cache (localcache.c).
 */
#include "state/cache/link.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/strset.h"

struct ref {
    uint64_t hash;
    size_t klen;
    char *key; /* NUL-terminated copy */
};

struct node {
    struct node *next;
    uint64_t hash;
    size_t klen;
    char *key;
    struct ref *refs;
    size_t nrefs, cap;
};

struct shard {
    _Alignas(64) pthread_mutex_t lock;
    struct node **buckets;
    unsigned bits;
    size_t n;
};

struct imp_link {
    unsigned n;
    struct shard *shards;
    /* held by add and del for their whole change: a link's two halves and
     * a transitive delete never interleave (an add between a delete's
     * visits left a one-way link behind: found by c/cache_stress_tsan) */
    pthread_mutex_t change;
};

static inline size_t bucket(uint64_t h, unsigned bits)
{
    return (size_t)((h * 0x9e3779b97f4a7c15ULL) >> (64 - bits));
}

struct imp_link *imp_link_create(unsigned nshards)
{
    if (nshards == 0) nshards = 64;
    struct imp_link *l = imp_xcalloc(1, sizeof(*l));
    l->n = nshards;
    pthread_mutex_init(&l->change, NULL);
    l->shards = aligned_alloc(_Alignof(struct shard), nshards * sizeof(struct shard));
    if (!l->shards) abort();
    memset(l->shards, 0, nshards * sizeof(struct shard));
    for (unsigned i = 0; i < nshards; i++) {
        pthread_mutex_init(&l->shards[i].lock, NULL);
        l->shards[i].bits = 4;
        l->shards[i].buckets = imp_xcalloc(16, sizeof(struct node *));
    }
    return l;
}

static void node_free(struct node *nd)
{
    for (size_t i = 0; i < nd->nrefs; i++) free(nd->refs[i].key);
    free(nd->refs);
    free(nd->key);
    free(nd);
}

void imp_link_destroy(struct imp_link *l)
{
    if (!l) return;
    for (unsigned i = 0; i < l->n; i++) {
        struct shard *sh = &l->shards[i];
        size_t nb = (size_t)1 << sh->bits;
        for (size_t j = 0; j < nb; j++) {
            struct node *nd = sh->buckets[j];
            while (nd) {
                struct node *next = nd->next;
                node_free(nd);
                nd = next;
            }
        }
        free(sh->buckets);
        pthread_mutex_destroy(&sh->lock);
    }
    free(l->shards);
    pthread_mutex_destroy(&l->change);
    free(l);
}

static struct node **find(struct shard *sh, uint64_t h, const char *key, size_t klen)
{
    struct node **pp = &sh->buckets[bucket(h, sh->bits)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0)
            return pp;
    return pp;
}

static void grow(struct shard *sh)
{
    unsigned bits = sh->bits + 1;
    size_t nb = (size_t)1 << sh->bits;
    struct node **b = imp_xcalloc((size_t)1 << bits, sizeof(*b));
    for (size_t i = 0; i < nb; i++) {
        struct node *nd = sh->buckets[i];
        while (nd) {
            struct node *next = nd->next;
            size_t j = bucket(nd->hash, bits);
            nd->next = b[j];
            b[j] = nd;
            nd = next;
        }
    }
    free(sh->buckets);
    sh->buckets = b;
    sh->bits = bits;
}

/* Adds other to key's set in key's shard. */
static void link_one(struct imp_link *l, uint64_t h, const char *key, size_t klen, uint64_t oh,
                     const char *other, size_t olen)
{
    struct shard *sh = &l->shards[h % l->n];
    pthread_mutex_lock(&sh->lock);
    struct node **pp = find(sh, h, key, klen);
    struct node *nd = *pp;
    if (!nd) {
        if (sh->n >= ((size_t)1 << sh->bits)) {
            grow(sh);
            pp = find(sh, h, key, klen);
        }
        nd = imp_xcalloc(1, sizeof(*nd));
        nd->hash = h;
        nd->klen = klen;
        nd->key = imp_xstrndup(key, klen);
        *pp = nd;
        sh->n++;
    }
    for (size_t i = 0; i < nd->nrefs; i++) {
        const struct ref *r = &nd->refs[i];
        if (r->hash == oh && r->klen == olen && memcmp(r->key, other, olen) == 0) {
            pthread_mutex_unlock(&sh->lock);
            return;
        }
    }
    if (nd->nrefs == nd->cap) {
        nd->cap = nd->cap ? nd->cap * 2 : 2;
        nd->refs = imp_xrealloc(nd->refs, nd->cap * sizeof(*nd->refs));
    }
    nd->refs[nd->nrefs++] = (struct ref){oh, olen, imp_xstrndup(other, olen)};
    pthread_mutex_unlock(&sh->lock);
}

void imp_link_add(struct imp_link *l, const char *key, size_t klen, const char *const *links,
                  const size_t *lens, size_t n)
{
    uint64_t h = imp_fnv1a64(key, klen);
    pthread_mutex_lock(&l->change);
    for (size_t i = 0; i < n; i++) {
        uint64_t oh = imp_fnv1a64(links[i], lens[i]);
        if (oh == h && lens[i] == klen && memcmp(links[i], key, klen) == 0) continue;
        link_one(l, h, key, klen, oh, links[i], lens[i]);
        link_one(l, oh, links[i], lens[i], h, key, klen);
    }
    pthread_mutex_unlock(&l->change);
}

size_t imp_link_del(struct imp_link *l, const char *key, size_t klen,
                    void (*fn)(void *ud, const char *key, size_t klen), void *ud)
{
    struct imp_strset seen;
    imp_strset_init(&seen);
    /* Stack of keys to visit: own copies, since nodes are freed on the way. */
    size_t sn = 0, scap = 8;
    struct ref *stack = imp_xmalloc(scap * sizeof(*stack));
    stack[sn++] = (struct ref){imp_fnv1a64(key, klen), klen, imp_xstrndup(key, klen)};
    pthread_mutex_lock(&l->change);
    while (sn) {
        struct ref cur = stack[--sn];
        if (!imp_strset_add(&seen, cur.key, cur.klen)) {
            free(cur.key);
            continue;
        }
        struct shard *sh = &l->shards[cur.hash % l->n];
        pthread_mutex_lock(&sh->lock);
        struct node **pp = find(sh, cur.hash, cur.key, cur.klen);
        struct node *nd = *pp;
        if (nd) {
            *pp = nd->next;
            sh->n--;
        }
        pthread_mutex_unlock(&sh->lock);
        free(cur.key);
        if (!nd) continue;
        for (size_t i = 0; i < nd->nrefs; i++) {
            if (imp_strset_find(&seen, nd->refs[i].key, nd->refs[i].klen) != (size_t)-1) continue;
            if (sn == scap) {
                scap *= 2;
                stack = imp_xrealloc(stack, scap * sizeof(*stack));
            }
            stack[sn++] = nd->refs[i]; /* the stack takes the key copy */
            nd->refs[i].key = NULL;
        }
        node_free(nd);
    }
    pthread_mutex_unlock(&l->change);
    free(stack);
    size_t n = seen.n;
    if (fn)
        for (size_t i = 0; i < n; i++) fn(ud, seen.items[i], strlen(seen.items[i]));
    imp_strset_dispose(&seen);
    return n;
}

size_t imp_link_count(struct imp_link *l)
{
    size_t n = 0;
    for (unsigned i = 0; i < l->n; i++) {
        pthread_mutex_lock(&l->shards[i].lock);
        n += l->shards[i].n;
        pthread_mutex_unlock(&l->shards[i].lock);
    }
    return n;
}

/* Whether other is in key's set. */
static int linked(struct imp_link *l, const struct ref *key, const char *other, size_t olen)
{
    struct shard *sh = &l->shards[key->hash % l->n];
    pthread_mutex_lock(&sh->lock);
    struct node *nd = *find(sh, key->hash, key->key, key->klen);
    int found = 0;
    for (size_t i = 0; nd && i < nd->nrefs && !found; i++)
        found = nd->refs[i].klen == olen && memcmp(nd->refs[i].key, other, olen) == 0;
    pthread_mutex_unlock(&sh->lock);
    return found;
}

void imp_link_check(struct imp_link *l)
{
    for (unsigned s = 0; s < l->n; s++) {
        struct shard *sh = &l->shards[s];
        pthread_mutex_lock(&sh->lock);
        size_t n = 0, nb = (size_t)1 << sh->bits;
        struct ref *all = NULL;
        size_t nall = 0;
        for (size_t b = 0; b < nb; b++)
            for (struct node *nd = sh->buckets[b]; nd; nd = nd->next) {
                IMP_ASSERT(bucket(nd->hash, sh->bits) == b);
                IMP_ASSERT(nd->hash % l->n == s);
                IMP_ASSERT(nd->hash == imp_fnv1a64(nd->key, nd->klen));
                IMP_ASSERT(nd->nrefs > 0 && nd->nrefs <= nd->cap);
                n++;
            }
        IMP_ASSERT(n == sh->n);
        /* Copy the links out, then check each reverse with one lock at a time. */
        for (size_t b = 0; b < nb; b++)
            for (struct node *nd = sh->buckets[b]; nd; nd = nd->next) {
                all = imp_xrealloc(all, (nall + 2 * nd->nrefs) * sizeof(*all));
                for (size_t i = 0; i < nd->nrefs; i++) {
                    IMP_ASSERT(nd->refs[i].hash == imp_fnv1a64(nd->refs[i].key, nd->refs[i].klen));
                    all[nall++] = (struct ref){nd->refs[i].hash, nd->refs[i].klen,
                                               imp_xstrndup(nd->refs[i].key, nd->refs[i].klen)};
                    all[nall++] = (struct ref){nd->hash, nd->klen, imp_xstrndup(nd->key, nd->klen)};
                }
            }
        pthread_mutex_unlock(&sh->lock);
        for (size_t i = 0; i < nall; i += 2) {
            IMP_ASSERT(linked(l, &all[i], all[i + 1].key, all[i + 1].klen));
            free(all[i].key);
            free(all[i + 1].key);
        }
        free(all);
    }
}

/*
 * Hash map from key to a FIFO of nodes, chained buckets, doubling when the
 * number of keys passes the bucket count. The head of each FIFO is the
 * node running; the entry is freed when its FIFO empties, so memory follows
 * the number of conversations in flight, not ever seen.
 *
 * Used by a worker on its own loop (push/worker.c); not thread-safe.
 */
#include "base/keyq.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"

struct imp_keyq_ent {
    struct imp_keyq_ent *next; /* bucket chain */
    uint64_t hash;
    struct imp_keyq_node *head, *tail;
    size_t klen;
    char key[];
};

void imp_keyq_init(struct imp_keyq *q)
{
    q->nbuckets = 64;
    q->buckets = imp_xcalloc(q->nbuckets, sizeof(*q->buckets));
    q->nkeys = 0;
    q->nnodes = 0;
}

void imp_keyq_dispose(struct imp_keyq *q)
{
    for (size_t i = 0; i < q->nbuckets; i++) {
        struct imp_keyq_ent *e = q->buckets[i];
        while (e) {
            struct imp_keyq_ent *n = e->next;
            free(e);
            e = n;
        }
    }
    free(q->buckets);
    memset(q, 0, sizeof(*q));
}

static void rehash(struct imp_keyq *q)
{
    size_t nb = q->nbuckets * 2;
    struct imp_keyq_ent **b = imp_xcalloc(nb, sizeof(*b));
    for (size_t i = 0; i < q->nbuckets; i++) {
        struct imp_keyq_ent *e = q->buckets[i];
        while (e) {
            struct imp_keyq_ent *n = e->next;
            e->next = b[e->hash % nb];
            b[e->hash % nb] = e;
            e = n;
        }
    }
    free(q->buckets);
    q->buckets = b;
    q->nbuckets = nb;
}

int imp_keyq_push(struct imp_keyq *q, const char *key, size_t klen, struct imp_keyq_node *n)
{
    n->next = NULL;
    q->nnodes++;
    if (klen == 0) {
        n->ent = NULL;
        return 1;
    }
    uint64_t h = imp_fnv1a64(key, klen);
    struct imp_keyq_ent *e;
    for (e = q->buckets[h % q->nbuckets]; e; e = e->next)
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0) break;
    if (e) {
        n->ent = e;
        e->tail->next = n;
        e->tail = n;
        return 0;
    }
    if (q->nkeys >= q->nbuckets) rehash(q);
    e = imp_xmalloc(sizeof(*e) + klen);
    e->hash = h;
    e->klen = klen;
    memcpy(e->key, key, klen);
    e->head = e->tail = n;
    e->next = q->buckets[h % q->nbuckets];
    q->buckets[h % q->nbuckets] = e;
    q->nkeys++;
    n->ent = e;
    return 1;
}

struct imp_keyq_node *imp_keyq_pop(struct imp_keyq *q, struct imp_keyq_node *n)
{
    struct imp_keyq_ent *e = n->ent;
    q->nnodes--;
    if (!e) return NULL;
    assert(e->head == n);
    e->head = n->next;
    n->next = NULL;
    n->ent = NULL;
    if (e->head) return e->head;
    struct imp_keyq_ent **pp = &q->buckets[e->hash % q->nbuckets];
    while (*pp != e) pp = &(*pp)->next;
    *pp = e->next;
    free(e);
    q->nkeys--;
    return NULL;
}

void imp_keyq_check(const struct imp_keyq *q)
{
    size_t keys = 0, nodes = 0;
    for (size_t i = 0; i < q->nbuckets; i++) {
        for (const struct imp_keyq_ent *e = q->buckets[i]; e; e = e->next) {
            IMP_ASSERT(e->hash % q->nbuckets == i);
            IMP_ASSERT(e->head && e->tail);
            keys++;
            const struct imp_keyq_node *last = NULL;
            for (const struct imp_keyq_node *n = e->head; n; n = n->next) {
                IMP_ASSERT(n->ent == e);
                nodes++;
                last = n;
            }
            IMP_ASSERT(last == e->tail);
        }
    }
    IMP_ASSERT(keys == q->nkeys);
    IMP_ASSERT(nodes <= q->nnodes); /* keyless nodes are counted but not stored */
}

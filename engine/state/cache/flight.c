/*
 * Flights live in a chained hash table separate from the cached entries,
 * so evicting, replacing or deleting an entry can never lose a fetch in
 * flight or its waiters: only completion (or closing the cache) removes a
 * flight. The table is small (keys being fetched right now) and doubles
 * when flights outnumber buckets; it never shrinks.
 *
 * Waiters are intrusive (caller memory); a flight keeps head and tail so
 * waiters are notified in arrival order. Cancelling is a linear walk of
 * one key's queue, which is short in practice.
 */
#include "state/cache/flight.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"

void imp_flights_init(struct imp_flights *f)
{
    f->bits = 4;
    f->buckets = imp_xcalloc((size_t)1 << f->bits, sizeof(*f->buckets));
    f->n = 0;
}

void imp_flights_dispose(struct imp_flights *f)
{
    size_t nb = (size_t)1 << f->bits;
    for (size_t i = 0; i < nb; i++) {
        struct imp_flight *fl = f->buckets[i];
        while (fl) {
            struct imp_flight *next = fl->next;
            free(fl);
            fl = next;
        }
    }
    free(f->buckets);
    memset(f, 0, sizeof(*f));
}

struct imp_flight *imp_flights_find(const struct imp_flights *f, uint64_t hash, const char *key,
                                    size_t klen)
{
    if (f->n == 0) return NULL;
    struct imp_flight *fl = f->buckets[imp_flight_bucket(hash, f->bits)];
    for (; fl; fl = fl->next)
        if (fl->hash == hash && fl->klen == klen && memcmp(fl->key, key, klen) == 0) return fl;
    return NULL;
}

static void grow(struct imp_flights *f)
{
    unsigned bits = f->bits + 1;
    size_t nb = (size_t)1 << f->bits;
    struct imp_flight **b = imp_xcalloc((size_t)1 << bits, sizeof(*b));
    for (size_t i = 0; i < nb; i++) {
        struct imp_flight *fl = f->buckets[i];
        while (fl) {
            struct imp_flight *next = fl->next;
            size_t j = imp_flight_bucket(fl->hash, bits);
            fl->next = b[j];
            b[j] = fl;
            fl = next;
        }
    }
    free(f->buckets);
    f->buckets = b;
    f->bits = bits;
}

struct imp_flight *imp_flights_start(struct imp_flights *f, uint64_t hash, const char *key,
                                     size_t klen, const void *leader)
{
    if (f->n >= ((size_t)1 << f->bits)) grow(f);
    struct imp_flight *fl = imp_xmalloc(sizeof(*fl) + klen);
    fl->hash = hash;
    fl->leader = leader;
    fl->head = fl->tail = NULL;
    fl->deleted = 0;
    fl->klen = klen;
    memcpy(fl->key, key, klen);
    size_t i = imp_flight_bucket(hash, f->bits);
    fl->next = f->buckets[i];
    f->buckets[i] = fl;
    f->n++;
    return fl;
}

void imp_flights_remove(struct imp_flights *f, struct imp_flight *fl)
{
    struct imp_flight **pp = &f->buckets[imp_flight_bucket(fl->hash, f->bits)];
    while (*pp != fl) pp = &(*pp)->next;
    *pp = fl->next;
    fl->next = NULL;
    f->n--;
}

struct imp_lazy_waiter *imp_flights_close(struct imp_flights *f)
{
    struct imp_lazy_waiter *head = NULL, **tailp = &head;
    size_t nb = (size_t)1 << f->bits;
    for (size_t i = 0; i < nb; i++) {
        struct imp_flight *fl = f->buckets[i];
        while (fl) {
            struct imp_flight *next = fl->next;
            if (fl->head) {
                *tailp = fl->head;
                tailp = &fl->tail->next;
            }
            free(fl);
            fl = next;
        }
        f->buckets[i] = NULL;
    }
    f->n = 0;
    return head;
}

void imp_flights_mark_deleted(struct imp_flights *f)
{
    size_t nb = (size_t)1 << f->bits;
    for (size_t i = 0; i < nb; i++)
        for (struct imp_flight *fl = f->buckets[i]; fl; fl = fl->next) fl->deleted = 1;
}

void imp_flight_wait(struct imp_flight *fl, struct imp_lazy_waiter *w)
{
    w->next = NULL;
    if (fl->tail)
        fl->tail->next = w;
    else
        fl->head = w;
    fl->tail = w;
}

int imp_flight_cancel(struct imp_flight *fl, struct imp_lazy_waiter *w)
{
    struct imp_lazy_waiter *prev = NULL;
    for (struct imp_lazy_waiter *x = fl->head; x; prev = x, x = x->next) {
        if (x != w) continue;
        if (prev)
            prev->next = x->next;
        else
            fl->head = x->next;
        if (fl->tail == x) fl->tail = prev;
        w->next = NULL;
        return 1;
    }
    return 0;
}

void imp_flight_notify(struct imp_lazy_waiter *head, struct imp_blob *val, int err,
                       const char *errmsg)
{
    while (head) {
        struct imp_lazy_waiter *next = head->next;
        head->next = NULL;
        head->notify(head, val, err, errmsg);
        head = next;
    }
}

void imp_flights_check(const struct imp_flights *f)
{
    size_t n = 0, nb = (size_t)1 << f->bits;
    for (size_t i = 0; i < nb; i++) {
        for (const struct imp_flight *fl = f->buckets[i]; fl; fl = fl->next) {
            IMP_ASSERT(imp_flight_bucket(fl->hash, f->bits) == i);
            IMP_ASSERT((fl->head == NULL) == (fl->tail == NULL));
            const struct imp_lazy_waiter *last = NULL;
            for (const struct imp_lazy_waiter *w = fl->head; w; w = w->next) last = w;
            IMP_ASSERT(last == fl->tail);
            n++;
        }
    }
    IMP_ASSERT(n == f->n);
}

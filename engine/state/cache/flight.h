/*
 * Single flights: the keys whose value is being fetched, each with the
 * queue of getters waiting for that fetch. Internal to the cache family
 * (lazy.c and slot.c's expirable slots); the engine codes against lazy.h
 * and slot.h.
 *
 * Not thread-safe: the owning cache calls every function under its own
 * lock, except imp_flight_notify, which runs after the flight has left the
 * table, outside any lock.
 */
#ifndef IMP_CACHE_FLIGHT_H
#define IMP_CACHE_FLIGHT_H

#include <stddef.h>
#include <stdint.h>

#include "state/cache/blob.h"
#include "state/cache/waiter.h"

struct imp_flight {
    struct imp_flight *next; /* bucket chain */
    uint64_t hash;
    const void *leader;                  /* who completes it: a batch, or NULL */
    struct imp_lazy_waiter *head, *tail; /* FIFO of waiters */
    int deleted;                         /* deleted while in flight: do not store the result */
    size_t klen;
    char key[];
};

struct imp_flights {
    struct imp_flight **buckets;
    unsigned bits; /* 1 << bits buckets */
    size_t n;
};

/* Bucket index from a 64-bit key hash: Fibonacci hashing takes the top
 * bits of a multiplication, which depend on every bit of the hash (a slot
 * LRU routes by hash % N, so the low bits of one slot's keys are alike).
 * Cannot fail. */
static inline size_t imp_flight_bucket(uint64_t hash, unsigned bits)
{
    return (size_t)((hash * 0x9e3779b97f4a7c15ULL) >> (64 - bits));
}

void imp_flights_init(struct imp_flights *f);
/* Frees the table and any flight left (without notifying: call
 * imp_flights_close first). */
void imp_flights_dispose(struct imp_flights *f);

/* The flight for key, or NULL. */
struct imp_flight *imp_flights_find(const struct imp_flights *f, uint64_t hash, const char *key,
                                    size_t klen);
/* Starts a flight for key (copied), which must not be in flight; leader
 * is an opaque token (NULL for a single getter). Cannot fail. */
struct imp_flight *imp_flights_start(struct imp_flights *f, uint64_t hash, const char *key,
                                     size_t klen, const void *leader);
/* Takes fl out of the table; the caller notifies its waiters (outside its
 * lock) and then frees fl with free(). */
void imp_flights_remove(struct imp_flights *f, struct imp_flight *fl);
/* Takes every flight out of the table and frees them; returns their
 * waiters as one list (linked through next) to notify with an error. */
struct imp_lazy_waiter *imp_flights_close(struct imp_flights *f);

/* Marks every flight deleted: none of their results will be stored. */
void imp_flights_mark_deleted(struct imp_flights *f);

/* Queues w behind fl's fetch. Cannot fail. */
void imp_flight_wait(struct imp_flight *fl, struct imp_lazy_waiter *w);
/* Unlinks w from fl's queue: 1 when it was there, else 0. */
int imp_flight_cancel(struct imp_flight *fl, struct imp_lazy_waiter *w);

/* Calls notify on every waiter of the list head (a detached queue), each
 * exactly once, reading each next pointer before the call (a notified
 * waiter may be freed at once). val is borrowed. */
void imp_flight_notify(struct imp_lazy_waiter *head, struct imp_blob *val, int err,
                       const char *errmsg);

void imp_flights_check(const struct imp_flights *f);

#endif

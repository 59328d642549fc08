/*
 * A getter waiting for another getter's fetch: what a lazy LRU (lazy.h)
 * hands its callers and what a single flight (flight.h) queues. Its own
 * header so that the flights, below the lazy LRU, need nothing of it.
 */
#ifndef IMP_CACHE_WAITER_H
#define IMP_CACHE_WAITER_H

#include "state/cache/blob.h"

/* A getter waiting for another getter's fetch. Embedded in the caller's
 * memory, which must stay valid until notify runs or imp_lazy_cancel
 * returns 1. notify runs exactly once unless cancelled: val is a borrowed
 * reference (fetch it to keep it) or NULL with err (an IMP_E* code) and
 * errmsg set. */
struct imp_lazy_waiter {
    void (*notify)(struct imp_lazy_waiter *w, struct imp_blob *val, int err, const char *errmsg);
    /* private */
    struct imp_lazy_waiter *next;
};

#endif

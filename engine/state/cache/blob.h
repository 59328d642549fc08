/*
 * A blob: immutable, reference-counted bytes. What the shared C caches
 * hold as values, so a hit hands out a reference (no copy under the lock)
 * and the reader copies into Lua outside any lock.
 */
#ifndef IMP_BLOB_H
#define IMP_BLOB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct imp_blob {
    atomic_uint refs;
    uint32_t len;
    char data[]; /* len bytes, then a NUL (not counted) */
};

/* A new blob holding a copy of data (one reference). Aborts on OOM. */
struct imp_blob *imp_blob_create(const void *data, size_t len);

/* Takes another reference; returns b. Cannot fail. */
static inline struct imp_blob *imp_blob_fetch(struct imp_blob *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

/* Drops a reference; frees at zero. NULL is ignored. */
void imp_blob_release(struct imp_blob *b);

#endif

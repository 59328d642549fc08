/*
 * Blobs: one allocation holding a reference count, the length and the
 * bytes (NUL-terminated for convenience). A blob never changes after
 * imp_blob_create returns, so readers need no lock; only the count moves.
 * The last release frees it; acquire-release ordering on that decrement
 * makes every earlier reader's accesses happen before the free.
 *
 * Shared by every cache and its readers on any thread.
 */
#include "state/cache/blob.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"

struct imp_blob *imp_blob_create(const void *data, size_t len)
{
    IMP_ASSERT(len <= UINT32_MAX);
    struct imp_blob *b = imp_xmalloc(sizeof(*b) + len + 1);
    atomic_init(&b->refs, 1);
    b->len = (uint32_t)len;
    if (len) memcpy(b->data, data, len);
    b->data[len] = '\0';
    return b;
}

void imp_blob_release(struct imp_blob *b)
{
    if (!b) return;
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) free(b);
}

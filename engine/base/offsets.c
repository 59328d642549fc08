/*
 * Ring buffer of (offset, done) in add order. head..tail are live entries;
 * done() sets a flag and, when the flag is at head, pops every finished
 * entry from the front. The ring grows by doubling, keeping seq % cap
 * positions valid by re-inserting live entries.
 *
 * Used by a Kafka consumer on its worker's loop (net/kafka.c); not
 * thread-safe.
 */
#include "base/offsets.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"

void imp_offsets_init(struct imp_offsets *t)
{
    memset(t, 0, sizeof(*t));
    t->last_added = -1;
}

void imp_offsets_dispose(struct imp_offsets *t)
{
    free(t->off);
    free(t->done);
    imp_offsets_init(t);
}

static void grow(struct imp_offsets *t)
{
    size_t ncap = t->cap ? t->cap * 2 : 64;
    int64_t *off = imp_xcalloc(ncap, sizeof(*off));
    unsigned char *done = imp_xcalloc(ncap, 1);
    for (uint64_t s = t->head; s < t->tail; s++) {
        off[s % ncap] = t->off[s % t->cap];
        done[s % ncap] = t->done[s % t->cap];
    }
    free(t->off);
    free(t->done);
    t->off = off;
    t->done = done;
    t->cap = ncap;
}

int imp_offsets_add(struct imp_offsets *t, int64_t offset, uint64_t *seq)
{
    if (offset <= t->last_added) return IMP_EINVAL;
    if (t->tail - t->head == t->cap) grow(t);
    t->off[t->tail % t->cap] = offset;
    t->done[t->tail % t->cap] = 0;
    *seq = t->tail++;
    t->last_added = offset;
    return 0;
}

int64_t imp_offsets_done(struct imp_offsets *t, uint64_t seq)
{
    if (seq < t->head || seq >= t->tail) return -1;
    if (t->done[seq % t->cap]) return -1;
    t->done[seq % t->cap] = 1;
    if (seq != t->head) return -1;
    int64_t last = -1;
    while (t->head < t->tail && t->done[t->head % t->cap]) {
        last = t->off[t->head % t->cap];
        t->head++;
    }
    return last + 1;
}

size_t imp_offsets_pending(const struct imp_offsets *t) { return (size_t)(t->tail - t->head); }

void imp_offsets_check(const struct imp_offsets *t)
{
    IMP_ASSERT(t->head <= t->tail);
    IMP_ASSERT(t->tail - t->head <= t->cap);
    if (t->head < t->tail) IMP_ASSERT(!t->done[t->head % t->cap]);
    for (uint64_t s = t->head; s + 1 < t->tail; s++)
        IMP_ASSERT(t->off[s % t->cap] < t->off[(s + 1) % t->cap]);
    if (t->tail > t->head) IMP_ASSERT(t->off[(t->tail - 1) % t->cap] == t->last_added);
}

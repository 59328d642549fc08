/*
 * Per-partition offset tracker for at-least-once consumption.
 *
 * Messages of a partition are added in fetch order and may finish in any
 * order (different keys run concurrently). The offset to store is always
 * one past the last message of the longest finished prefix, so a crash
 * replays, never skips: an offset is stored only when its message and every
 * earlier message of the partition are handled.
 *
 * Not thread-safe: each tracker belongs to one worker.
 */
#ifndef IMP_OFFSETS_H
#define IMP_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

struct imp_offsets {
    int64_t *off; /* ring of offsets, indexed by seq % cap */
    unsigned char *done;
    size_t cap;
    uint64_t head;      /* seq of the oldest unfinished entry */
    uint64_t tail;      /* seq the next add gets */
    int64_t last_added; /* highest offset added, -1 before the first */
};

void imp_offsets_init(struct imp_offsets *t);
void imp_offsets_dispose(struct imp_offsets *t);

/* Tracks offset (must exceed every offset added before: a lower or equal one
 * is a redelivery of a message already tracked and gets IMP_EINVAL).
 * On success stores the entry's sequence number in *seq and returns 0. */
int imp_offsets_add(struct imp_offsets *t, int64_t offset, uint64_t *seq);

/* Marks seq finished. Returns the offset to store (next offset to consume)
 * when the finished prefix grew, else -1. Cannot fail; an unknown or
 * repeated seq is ignored and returns -1. */
int64_t imp_offsets_done(struct imp_offsets *t, uint64_t seq);

/* Entries added and not yet part of the finished prefix. */
size_t imp_offsets_pending(const struct imp_offsets *t);

/* Asserts the invariants (tests call this). */
void imp_offsets_check(const struct imp_offsets *t);

#endif

/*
 * Keyed queue: messages with the same Kafka key (one conversation) run one
 * after another; different keys run concurrently. Nodes are intrusive (the
 * caller embeds struct imp_keyq_node in its message) and never copied.
 * An empty key means "no ordering": such a node always runs at once.
 *
 * Not thread-safe: each worker owns one.
 */
#ifndef IMP_KEYQ_H
#define IMP_KEYQ_H

#include <stddef.h>

struct imp_keyq_ent;

struct imp_keyq_node {
    struct imp_keyq_node *next;
    struct imp_keyq_ent *ent;
};

struct imp_keyq {
    struct imp_keyq_ent **buckets;
    size_t nbuckets;
    size_t nkeys;  /* keys with at least one node */
    size_t nnodes; /* nodes held (running + waiting) */
};

void imp_keyq_init(struct imp_keyq *q);
void imp_keyq_dispose(struct imp_keyq *q);

/* Adds n under key (copied). Returns 1 when n is the first of its key and
 * may run now, 0 when it waits behind earlier ones. Cannot fail. */
int imp_keyq_push(struct imp_keyq *q, const char *key, size_t klen, struct imp_keyq_node *n);

/* n (which must be the running head of its key) finished: removes it and
 * returns the next node of the same key, which may run now, or NULL. */
struct imp_keyq_node *imp_keyq_pop(struct imp_keyq *q, struct imp_keyq_node *n);

void imp_keyq_check(const struct imp_keyq *q);

#endif

/*
 * Key links (OpenIM pkg/localcache/link): bidirectional links between
 * cache keys, so that deleting one key deletes every key linked to it,
 * transitively (the whole connected component), e.g. a group's member
 * list and the member entries derived from it.
 *
 * Sharded by FNV-1a-64(key) % N, a mutex per shard; no function holds two
 * shard locks at once. Keys are byte strings without NUL bytes, copied.
 *
 * Thread-safe.
 */
#ifndef IMP_CACHE_LINK_H
#define IMP_CACHE_LINK_H

#include <stddef.h>

struct imp_link;

/* A link table of nshards shards (0: 64). Cannot fail (aborts on OOM). */
struct imp_link *imp_link_create(unsigned nshards);
/* Frees everything. NULL is ignored. */
void imp_link_destroy(struct imp_link *l);

/* Records key <-> links[i] for each i (keys copied; duplicates and
 * existing links are ignored; a key linked to itself is not recorded).
 * n == 0 does nothing. Cannot fail. */
void imp_link_add(struct imp_link *l, const char *key, size_t klen, const char *const *links,
                  const size_t *lens, size_t n);

/* Removes key and, transitively, every key linked to it, from the table;
 * calls fn (may be NULL) once for each removed key, key itself included,
 * after every lock is released (fn may call back into l). The key pointer
 * is valid during the call. Returns the number of keys (>= 1). */
size_t imp_link_del(struct imp_link *l, const char *key, size_t klen,
                    void (*fn)(void *ud, const char *key, size_t klen), void *ud);

/* Keys that have at least one link. */
size_t imp_link_count(struct imp_link *l);
/* Asserts the invariants (IMP_ASSERT, fatal); for tests. Takes one shard
 * lock at a time, so run it while no other thread changes l. */
void imp_link_check(struct imp_link *l);

#endif

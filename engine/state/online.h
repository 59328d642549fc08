/*
 * The online table (OpenIM's fullUserCache mode): every online user and
 * the set of platforms it is connected on, shared by all workers.
 *
 * Sharded, a rwlock per shard; each shard packs its users' IDs into an
 * arena of pages indexed by an open-addressing table of 32-bit slots, about
 * 20 bytes per user (online.c). Platforms are a set of IDs 0..15 (OpenIM's
 * are 1..10), passed as a uint64_t bit set. A user with no platform is
 * absent. Each entry carries the generation of the load that last wrote it
 * (its low 8 bits: see online.c), so a reload can drop users that went
 * offline while Redis was unreachable without ever emptying the table under
 * the workers' feet.
 */
#ifndef IMP_ONLINE_H
#define IMP_ONLINE_H

#include <stddef.h>
#include <stdint.h>

#define IMP_ONLINE_MAX_PLATFORM 15

struct imp_online;

/* A table of nshards shards (0 means 64): more shards, less contention.
 * Cannot fail (aborts on OOM). */
struct imp_online *imp_online_create(unsigned nshards);
void imp_online_destroy(struct imp_online *t);

/* Sets the user's platform set (0 removes the user), stamping gen; bits
 * above IMP_ONLINE_MAX_PLATFORM are ignored. IDs of any length up to 4 GiB
 * are stored (long ones less compactly); set ignores a longer one, which is
 * never online. Thread-safe. Cannot fail (aborts on OOM). */
void imp_online_set(struct imp_online *t, const char *uid, size_t len, uint64_t platforms,
                    uint32_t gen);
/* The user's platform set, 0 when offline. Thread-safe. */
uint64_t imp_online_get(struct imp_online *t, const char *uid, size_t len);
/* Removes every user whose generation differs from gen (compared modulo
 * 256: see online.c); returns how many. Thread-safe. */
size_t imp_online_sweep(struct imp_online *t, uint32_t gen);
/* Users online. Thread-safe, lock-free. */
size_t imp_online_count(struct imp_online *t);

/* Parses an online_change payload "<p1>:<p2>:...:<userID>": the full
 * remaining platform set, userID last; a bare "<userID>" means offline.
 * On success returns 0 with *uid pointing into payload. Returns IMP_EINVAL
 * with a reason in err for an empty user, a non-integer or out-of-range
 * platform. */
int imp_online_parse_change(const char *payload, size_t len, const char **uid, size_t *uidlen,
                            uint64_t *platforms, char *err, size_t errlen);

/* Asserts the table's invariants (IMP_ASSERT: always on). For tests. */
void imp_online_check(struct imp_online *t);

#endif

/*
 * Who is online, for a message's recipients, in either of OpenIM's modes:
 *
 *  - fullUserCache: true — the online table (online.h), loaded at start and
 *    kept by online_change: answered at once;
 *  - fullUserCache: false — the online LRU (a slot lazy LRU, 1024 × 2048,
 *    15 min / 3 s): hits answered at once, users being fetched by another
 *    message waited for, and every other miss fetched in ONE
 *    /openim.user.user/getUserStatus call per batch (chunked under the gRPC
 *    size limit); online_change updates only users already cached.
 *
 * Users whose status cannot be learnt (user service down, timeout) count
 * as not online, with a warning and impulse_presence_errors_total.
 */
#ifndef IMP_PRESENCE_H
#define IMP_PRESENCE_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"

struct imp_task;
struct imp_slot;

#define IMP_USER_STATUS_METHOD "/openim.user.user/getUserStatus"

/* The online LRU for fullUserCache: false (NULL in full mode). */
struct imp_slot *imp_presence_lru_create(const struct imp_config *cfg);

/* Fills online[i] (1 online, 0 not) for users[0..n) of task t. Returns 0
 * when done at once, 1 when done(t) will run later on t's loop. */
int imp_presence_lookup(struct imp_task *t, char *const *users, size_t n, unsigned char *online,
                        void (*done)(struct imp_task *t));

/* online_change in LRU mode: replaces the user's cached status only if the
 * user is cached. */
void imp_presence_lru_update(struct imp_slot *lru, const char *uid, size_t len, uint64_t platforms,
                             uint64_t now_ms);

#endif

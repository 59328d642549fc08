/*
 * Rate limits shared by every worker of the process: a token bucket per
 * name (a provider's pool) with priority lanes, and per-device counters.
 * Time is a parameter in both.
 */
#ifndef IMP_RATELIMIT_H
#define IMP_RATELIMIT_H

#include <stdint.h>

/* Lanes, highest priority first: 0 direct (single chats), 1 groups,
 * 2 bulk (notifications, broadcasts). */
#define IMP_RATELIMIT_LANES 3

struct imp_ratelimit;

/* The process's bucket of that name, created unlimited on first use;
 * never freed before imp_ratelimit_shutdown. Cannot fail. */
struct imp_ratelimit *imp_ratelimit_fetch(const char *name);

/* rate tokens a second up to burst (at least 1); rate <= 0: unlimited.
 * A change keeps the tokens there (capped at the new burst). */
void imp_ratelimit_set(struct imp_ratelimit *rl, double rate, double burst);

/* Takes a token for a request of lane (0 .. LANES-1) at now_us: 1 taken;
 * 0 not now, and *retry_us is when to try again. A take is refused while a
 * request of a higher lane waits for a token anywhere in the process
 * (imp_ratelimit_waiting), so higher lanes go first across workers. */
int imp_ratelimit_take(struct imp_ratelimit *rl, int lane, uint64_t now_us, uint64_t *retry_us);

/* A request of lane starts (+1) or stops (-1) waiting for a token. */
void imp_ratelimit_waiting(struct imp_ratelimit *rl, int lane, int delta);

/* Tokens taken since start (for tests and metrics). */
uint64_t imp_ratelimit_taken(struct imp_ratelimit *rl);

/* Per-device limit: may device (a hash, nonzero) take one more push in the
 * window of interval_s seconds that holds now_s, at most max per window?
 * 1 yes (counted); 0 no, and *retry_s is when the next window starts.
 * Devices whose hashes share one of the table's 2^20 slots share its
 * count: a limit is at times stricter than asked, never looser. */
int imp_ratelimit_device(uint64_t device, int max, int interval_s, uint64_t now_s,
                         uint64_t *retry_s);

/* Frees every bucket and the device table; pointers handed out die. */
void imp_ratelimit_shutdown(void);

#endif

/*
 * impulse replay: moves dead letters back to the topic they came from.
 *
 *   impulse replay -c impulse.yml [--from toPush.dlq] [--to toPush] [--max N]
 *
 * Reads the dead-letter topic in consumer group `impulse-replay` (so a
 * second run continues where the first stopped), and produces each record
 * to its origin topic (the impulse-origin header, or --to) with its key,
 * value and exactly the four original headers — operationID, opUserID,
 * platform, connID — never the impulse-* ones: openim-push crashes on a
 * fifth header. Commits after every acknowledged batch; stops at the end
 * of every partition or after N records.
 */
#ifndef IMP_REPLAY_H
#define IMP_REPLAY_H

#include "base/config.h"

/* Returns the process exit code; prints a summary line on stdout and
 * errors on stderr. */
int imp_replay_run(const struct imp_config *cfg, const char *from, const char *to, long max);

#endif

/*
 * impulse dlq ls: what a dead-letter topic holds, one line per record,
 * without moving or committing anything.
 *
 *   impulse dlq ls -c impulse.yml [--from toPush.dlq] [--max N] [--json]
 *
 * Each line names the record (topic[partition]@offset), when it was
 * dead-lettered, why (impulse-reason), the error (impulse-error), where it
 * came from (impulse-origin), its operationID and key; a summary by reason
 * follows. --json writes one JSON object per record instead.
 */
#ifndef IMP_DLQ_H
#define IMP_DLQ_H

#include "base/config.h"

/* Returns the process exit code (0, or 1 with a line on stderr). */
int imp_dlq_list(const struct imp_config *cfg, const char *from, long max, int json);

#endif

/*
 * impulse explain: one record through the whole policy in dry run.
 *
 *   impulse explain -c impulse.yml [FILE | -] [--from topic:partition:offset]
 *                   [--offline-data FILE] [--policy FILE] [--json]
 *
 * The record is a PushMsgReq, protobuf or JSON (the tables pbtable gives:
 * {msgData = {...}, conversationID = ...}, or the MsgData alone), from a
 * file, stdin, or one Kafka record read by offset (assign and seek: no
 * group joined, nothing committed). A record of the toOfflinePush topic
 * (or one that lists userIDs) takes the offline leg alone.
 *
 * This file reads the record and starts an engine VM on the calling
 * thread with the config's services (discovery, Redis) unless
 * --offline-data stubs every read; the decisions are made and printed by
 * lua/impulse/explain.lua, which keeps every side effect from happening.
 */
#ifndef IMP_EXPLAIN_H
#define IMP_EXPLAIN_H

#include "base/config.h"

struct imp_explain_opts {
    const char *input;        /* a file, "-" or NULL: stdin (unless from) */
    const char *from;         /* "topic:partition:offset", or NULL */
    const char *offline_data; /* stub data (JSON), or NULL: live services */
    const char *policy;       /* a policy file instead of the scripts' push.lua */
    int json;                 /* one JSON document instead of text */
};

/* Returns the process exit code: 0 explained, 1 the policy failed on the
 * record (still explained), 2 bad input or options (one line on stderr).
 * Takes ownership of cfg (the engine keeps it until the process exits),
 * except when it returns 2: its input was refused before the engine
 * started, and cfg is the caller's to free. */
int imp_explain_run(struct imp_config *cfg, const struct imp_explain_opts *o);

#endif

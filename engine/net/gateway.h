/*
 * Online push fan-out: one message to every gateway node at once.
 *
 * The users are split into chunks so no request exceeds the gRPC message
 * limit (OpenIM's servers keep gRPC's 4 MiB default); every chunk goes to
 * every gateway in parallel, each call with its own deadline. Each gateway
 * answers one result per user; a user counts as reached when any gateway
 * says onlinePush for it (results are OR'd and de-duplicated). A gateway
 * that times out, fails or answers garbage costs only its own results.
 */
#ifndef IMP_GATEWAY_H
#define IMP_GATEWAY_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "net/grpc.h"
#include "net/grpcc.h"

#define IMP_GATEWAY_METHOD "/openim.msggateway.msgGateway/SuperGroupOnlineBatchPushOneMsg"

struct imp_fanout_gw {
    const char *addr;
    int calls;       /* requests sent to this gateway */
    int failed;      /* requests that failed */
    int status;      /* last failing gRPC status, 0 when all succeeded */
    char error[200]; /* last failure, "" when none */
    size_t reached;  /* users this gateway reached */
};

struct imp_fanout {
    size_t nusers;
    char **users;           /* borrowed from the caller until done */
    unsigned char *reached; /* per user: 1 when any gateway reached it */
    size_t nreached;
    size_t ngw;
    struct imp_fanout_gw *gw;
    /* private */
    int pending;
    size_t *index; /* hash table of user positions */
    size_t *pos;   /* with gw_of: each user's place in the by-gateway order */
    size_t index_cap;
    void (*done)(struct imp_fanout *f, void *arg);
    void *arg;
};

struct imp_fanout_req {
    const void *msgdata; /* encoded MsgData */
    size_t msgdata_len;
    char **users; /* online users to push to */
    size_t nusers;
    struct imp_grpc_channel **channels; /* one per gateway; NULL: skip it (failed) */
    struct imp_grpcc *h2;               /* non-NULL: calls go through it (net/grpcc.h) to
                                           the addresses it can dial, not the channels */
    const size_t *gw_of;                /* NULL: every user to every gateway; else per user the
                                           one gateway it goes to ((size_t)-1: none) */
    const char *skip_reason;            /* the error of a skipped gateway */
    char *const *addrs;                 /* their addresses, borrowed until done */
    size_t nchannels;
    int timeout_ms;
    size_t max_request; /* bytes per request */
    const struct imp_grpc_md *md;
    size_t nmd;
    struct imp_inbox *inbox;
    void (*done)(struct imp_fanout *f, void *arg);
    void *arg;
};

/* Starts the fan-out. done(f, arg) runs once, later, on inbox's thread when
 * every call has finished (also when there are no users or gateways); it
 * may free f with imp_fanout_destroy. Returns NULL (done not called) only
 * when the inbox is closed. */
struct imp_fanout *imp_fanout_start(const struct imp_fanout_req *r);
void imp_fanout_destroy(struct imp_fanout *f);

/* Encodes OnlineBatchPushOneMsgReq for users[0..n) (exposed for tests). */
void imp_gateway_encode(struct imp_buf *out, const void *msgdata, size_t len, char *const *users,
                        size_t n);

/* Walks an encoded OnlineBatchPushOneMsgResp without unpacking it:
 * fn(arg, userID, its length, onlinePush) for each SingleMsgToUserResults
 * in order, with the values an unpack keeps (the last of a repeated
 * field). Returns how many there were, or -1, having reported nothing,
 * when protobuf-c would refuse the bytes (malformed, or a known field of
 * the wrong wire type, nested messages included). fn may be NULL. */
int imp_gateway_reply_scan(const uint8_t *p, size_t n,
                           void (*fn)(void *arg, const char *uid, size_t len, int online),
                           void *arg);

#endif

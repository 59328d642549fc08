/*
 * Unary gRPC calls over cleartext HTTP/2 (prior knowledge) with nghttp2,
 * on one libev loop: the engine's own client, used for the gateways'
 * SuperGroupOnlineBatchPushOneMsg and the services when impulse.grpcClient is h2
 * (issue 16). No thread, no completion queue: the frames of every call
 * started in one loop turn leave in one write when the loop is about to
 * block, and answers are read on the same loop.
 *
 * What it does: one connection per address (numeric IPv4 or IPv6
 * host:port), many streams on it (the server's MAX_CONCURRENT_STREAMS
 * respected; nghttp2 queues the rest), 16 MiB stream and connection
 * windows for replies, gRPC's 5-byte message prefix, te: trailers,
 * grpc-timeout from the deadline, the status from the trailers (or a
 * trailers-only answer; an HTTP status other than 200 mapped as gRPC
 * does), GOAWAY (streams the server did not take fail UNAVAILABLE, new
 * calls open a new connection), and a connection that fails or cannot be
 * made fails its calls UNAVAILABLE; after a failed connect, calls to that
 * address fail at once for a backoff that doubles from 100 ms to 1 s.
 * What it leaves out: TLS, name resolution, compression (a compressed
 * reply is refused as UNIMPLEMENTED), keepalive pings.
 *
 * Callbacks run on the loop from a prepare watcher, never inside
 * imp_grpcc_unary or nghttp2's callbacks, exactly once per started call.
 */
#ifndef IMP_GRPCC_H
#define IMP_GRPCC_H

#include <ev.h>
#include <stddef.h>

#include "net/grpc.h"

struct imp_grpcc;

/* A client on loop; max_msg bounds sent messages (replies up to 64 MiB). */
struct imp_grpcc *imp_grpcc_create(struct ev_loop *loop, int max_msg);
/* Closes every connection; calls not answered are dropped: their callbacks
 * do not run, and their records (with the callbacks' arguments) stay
 * allocated until the process exits. At shutdown only. */
void imp_grpcc_destroy(struct imp_grpcc *c);

/* 1 when addr is host:port with a numeric host this client can dial. */
int imp_grpcc_can_dial(const char *addr);

/* Starts a unary call of method ("/pkg.Service/Method") to addr with the
 * encoded request (copied) and the metadata whose value is not NULL. cb(arg,
 * result) runs later on the loop. Returns
 * 0, or IMP_EINVAL when addr cannot be dialled (cb is then not called). */
int imp_grpcc_unary(struct imp_grpcc *c, const char *addr, const char *method, const void *req,
                    size_t len, int timeout_ms, const struct imp_grpc_md *md, size_t nmd,
                    imp_grpc_cb cb, void *arg);

/* Calls started and not yet answered. */
long imp_grpcc_in_flight(const struct imp_grpcc *c);

#endif

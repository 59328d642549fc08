/*
 * Unary gRPC client calls over the gRPC C core, completed on the caller's
 * loop.
 *
 * One completion queue and one thread for the process: the thread blocks in
 * grpc_completion_queue_next and forwards each finished call to the inbox of
 * the thread that started it, where the callback runs. A completion queue
 * has no file descriptor, hence the thread.
 *
 * Every call carries a deadline and metadata (lower-case keys; OpenIM needs
 * `operationid`). The callback always runs exactly once per started call,
 * on the caller's inbox, unless imp_grpc_unary returned an error.
 */
#ifndef IMP_GRPC_H
#define IMP_GRPC_H

#include <stddef.h>
#include <stdint.h>

#include "base/inbox.h"

struct imp_grpc_channel;
struct imp_grpc_call;

struct imp_grpc_result {
    int status;          /* grpc_status_code; 0 is OK */
    const char *details; /* status message, never NULL */
    const uint8_t *data; /* reply message (status 0 only) */
    size_t len;
};

typedef void (*imp_grpc_cb)(void *arg, const struct imp_grpc_result *r);

struct imp_grpc_md {
    const char *key; /* lower-case */
    const char *value;
};

/* Initializes gRPC and starts the completion thread. Once per process,
 * before any other thread that uses gRPC starts. */
int imp_grpc_start(void);
/* Cancels the client calls still waiting, shuts the queue down and joins
 * the thread: bounded, whatever the peers do. Every loop that owns calls
 * must have stopped (their completions are dropped). */
void imp_grpc_stop(void);

/* A channel to host:port. max_msg bounds sent messages (received ones may
 * be up to 64 MiB).
 * Connects lazily; reconnect backoff is capped at ~1 s so a gateway that
 * comes back is used again quickly. Cannot fail (aborts on OOM). */
struct imp_grpc_channel *imp_grpc_channel_create(const char *addr, int max_msg);
/* Destroys the channel; calls still in flight fail and complete normally. */
void imp_grpc_channel_destroy(struct imp_grpc_channel *ch);
const char *imp_grpc_channel_addr(const struct imp_grpc_channel *ch);

/* Starts a unary call of method ("/pkg.Service/Method") with the encoded
 * request (copied). cb(arg, result) runs later on inbox's thread. Returns 0,
 * or IMP_EIO when gRPC refused to start the call (cb is then not called). */
int imp_grpc_unary(struct imp_grpc_channel *ch, const char *method, const void *req, size_t len,
                   int timeout_ms, const struct imp_grpc_md *md, size_t nmd,
                   struct imp_inbox *inbox, imp_grpc_cb cb, void *arg);

/* ---------- server ---------- */

struct imp_grpc_server;
struct imp_grpc_scall; /* one incoming call */

/* An incoming unary call with its request message. Runs on the completion
 * thread: it must only hand the call on (post it to an inbox) or reply.
 * req stays valid until the call is replied to. */
typedef void (*imp_grpc_handler)(void *arg, struct imp_grpc_scall *c, const char *method,
                                 const uint8_t *req, size_t len);

/* Listens on listen ("ip:port", port 0 picks a free one) without TLS and
 * hands every call to handler. Sets *port to the bound port. NULL with err
 * set when the address cannot be bound. After imp_grpc_start. */
struct imp_grpc_server *imp_grpc_server_start(const char *listen, int max_msg,
                                              imp_grpc_handler handler, void *arg, int *port,
                                              char *err, size_t errlen);
/* The value of the request metadata key (lower-case), copied into buf;
 * NULL when absent. */
const char *imp_grpc_scall_md(const struct imp_grpc_scall *c, const char *key, char *buf,
                              size_t buflen);
/* Answers the call (from any thread) and releases it: status 0 sends reply
 * (len bytes, may be 0) as the message; any other status sends details. */
void imp_grpc_scall_reply(struct imp_grpc_scall *c, int status, const char *details,
                          const void *reply, size_t len);
/* Stops taking new calls; calls in progress go on. Idempotent. */
void imp_grpc_server_shutdown(struct imp_grpc_server *s);
/* Cancels what is left, waits for gRPC to let go, frees. Every handler's
 * inbox must be closed or drained first. Before imp_grpc_stop. */
void imp_grpc_server_destroy(struct imp_grpc_server *s);

/* Calls started and not yet completed, process-wide (for shutdown checks). */
long imp_grpc_calls_in_flight(void);

/* A short name for a status code ("DEADLINE_EXCEEDED", or the number). */
const char *imp_grpc_status_name(int status, char *buf, size_t buflen);

#endif

/*
 * A loop's gRPC channels, one per peer address, created on first use and
 * kept: every call a worker makes (gateway fan-out, the OpenIM services
 * scripts call, the online status fetch) goes through its own set, so no
 * channel is shared between threads. Not thread-safe: one owner loop.
 */
#ifndef IMP_CHANS_H
#define IMP_CHANS_H

#include <stddef.h>
#include <stdint.h>

struct imp_chans;
struct imp_grpc_channel;
struct imp_registry;
struct imp_svclist;

/* An empty set whose channels accept messages up to max_message bytes.
 * Cannot fail. */
struct imp_chans *imp_chans_create(int max_message);
/* Destroys every channel. NULL is ignored. */
void imp_chans_destroy(struct imp_chans *c);

/* The channel to addr (created on first use, kept). Cannot fail. */
struct imp_grpc_channel *imp_chans_get(struct imp_chans *c, const char *addr);

/* A node of service `name` in reg, round robin; NULL when none is
 * registered. */
struct imp_grpc_channel *imp_chans_service(struct imp_chans *c, struct imp_registry *reg,
                                           const char *name);

/* Circuit breaker of the peer at addr, per loop. A peer whose calls failed
 * `failures` times in a row is open for open_ms: imp_chans_admit answers
 * NULL. Then one caller is let through as a probe (half
 * open; the others still skip): its success closes the breaker, its
 * failure opens it again; a probe not reported within probe_ms lets
 * another through. now_ms: the monotonic clock. failures 0 (the default)
 * turns the breaker off. */
void imp_chans_breaker(struct imp_chans *c, int failures, int open_ms, int probe_ms);
/* The channel to addr as imp_chans_get, or NULL while its breaker is open
 * (skip the peer: fail fast, no call). */
struct imp_grpc_channel *imp_chans_admit(struct imp_chans *c, const char *addr, uint64_t now_ms);
/* One call to addr ended (ok or not). Returns 1 when this report opened
 * the breaker. */
int imp_chans_report(struct imp_chans *c, const char *addr, int ok, uint64_t now_ms);
/* How many loops' breakers for addr are open or probing now (the gauge
 * impulse_gateway_breakers_open; 0 for an address never opened). Any
 * thread; cannot fail. */
int imp_chans_breakers_open(const char *addr);

/* The current node list of service `name` (the caller owns one reference:
 * imp_svclist_release). When the list changed since the last call, the
 * channels of nodes that left are closed: the gateways follow etcd. */
struct imp_svclist *imp_chans_follow(struct imp_chans *c, struct imp_registry *reg,
                                     const char *name);

#endif

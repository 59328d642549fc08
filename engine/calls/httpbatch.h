/*
 * Batches of HTTP requests for the offline providers' transports
 * (lua/impulse/transport/<name>.lua), on the worker's loop.
 *
 *   core.http_batch(requests, opts) -> true (pending; the coroutine yields
 *                                      for the results) | false, nil, err
 *     requests: { { method = "POST", url = ..., headers = { "Name: v", ... },
 *                   body = string }, ... }
 *     opts: pool (name of the concurrency limit, e.g. the provider),
 *           concurrency (requests in flight per worker and pool, 64),
 *           timeout_ms (one attempt, 10000), attempts (4),
 *           backoff_ms (first retry delay, 500), max_backoff_ms (30000),
 *           deadline_ms (every attempt of the batch, 60000),
 *           ca_file (trust these CAs for https)
 *   results: { { status = n (0: none), body = string, error = string|nil,
 *                attempts = n, retry_after_s = n|nil }, ... } in order
 *
 * HTTPS goes over HTTP/2 with PIPEWAIT and at most 4 connections per host,
 * so a burst multiplexes on one connection. A network error, 429, 500, 502,
 * 503 or 504 is retried after max(Retry-After, backoff × 2^n, jittered
 * ±50%) while attempts and the batch's deadline allow; other statuses are
 * final and the transport decides what they mean.
 */
#ifndef IMP_HTTPBATCH_H
#define IMP_HTTPBATCH_H

#include <lua.h>

struct imp_httpbatch;

int imp_lua_http_batch(lua_State *L);
void imp_httpbatch_destroy(struct imp_httpbatch *hb);

#endif

/*
 * HTTP/2 over TLS on a libev loop, with nghttp2 and OpenSSL: what the
 * offline providers' batch sender (httpbatch.c) uses for https URLs.
 *
 * libcurl 7.88 sends each request's frames in their own write and, when a
 * connection's socket turns readable, runs every transfer multiplexed on it
 * (each polling the socket again): a third of h2load's rate from one worker
 * (bench/README.md). Here the frames of everything submitted in one loop
 * iteration leave in one TLS write, and a readable socket costs one read.
 *
 * Same options and callbacks as http.h (imp_http_opts). Per origin (host,
 * port, CA file): up to max_conns connections; a request goes to the least
 * busy ready connection and another connection is opened only when every
 * ready one is at the server's stream limit and none is being set up (what
 * CURLOPT_PIPEWAIT does). Requests nghttp2 reports refused (GOAWAY past
 * them, REFUSED_STREAM) were not processed by the server and are sent again
 * on another connection (at most 3 times). A connection that answers
 * nothing between a request's submission and its timeout is closed as dead;
 * one that cannot be set up fails the requests waiting for it (the batch
 * retries them with its backoff) rather than being retried at once; a
 * session nghttp2 ends after a protocol error is closed with that reason.
 * An origin whose TLS handshake does not select h2
 * (ALPN) is remembered and its requests go through the libcurl client
 * (HTTP/1.1), as do http:// URLs. Names are resolved off the loop.
 */
#ifndef IMP_H2_H
#define IMP_H2_H

#include <ev.h>

#include "net/http.h"

struct imp_h2;
struct imp_h2_req;

/* fallback: the libcurl client used for what is not h2 (owned by the caller,
 * must outlive this client). */
struct imp_h2 *imp_h2_create(struct ev_loop *loop, struct imp_http *fallback, int max_conns);
/* Closes every connection; pending requests' done callbacks are not called. */
void imp_h2_destroy(struct imp_h2 *c);

/* Starts a request (opts as for imp_http_request; pipewait is implied). The
 * strings, header list and body of o are borrowed, not copied: they must
 * stay valid until done is called or the request is cancelled. done is
 * called exactly once, never from inside this call. NULL (done not called)
 * only when the fallback (libcurl) refused it. */
struct imp_h2_req *imp_h2_request(struct imp_h2 *c, const struct imp_http_opts *o);
/* Cancels a request whose done has not run (not from inside its callbacks). */
void imp_h2_cancel(struct imp_h2_req *r);

#endif

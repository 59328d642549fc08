/*
 * HTTP client on a libev loop through libcurl's multi-socket interface.
 *
 * One struct imp_http per loop. Requests complete through a callback on
 * that loop; a streaming request (etcd's watch) also gets each chunk of
 * the body as it arrives. Used by the watcher for etcd's JSON gateway; the
 * providers and webhooks (later issues) use the same client in workers.
 */
#ifndef IMP_HTTP_H
#define IMP_HTTP_H

#include <ev.h>
#include <stddef.h>

struct imp_http;
struct imp_http_req;

/* Body so far is complete: err is 0 or an IMP_E* code with errmsg set;
 * status is the HTTP status (0 when no response). body is only valid
 * during the call. Not called for a streaming request's chunks. */
typedef void (*imp_http_done_cb)(void *arg, int err, long status, const char *body, size_t len,
                                 const char *errmsg);
/* A streaming chunk; return 0 to go on, non-zero to abort the transfer
 * (done is then called with IMP_ECLOSED). */
typedef int (*imp_http_chunk_cb)(void *arg, const char *data, size_t len);
/* A response header line as received ("Name: value\r\n"), for callers
 * that need one (Retry-After). */
typedef void (*imp_http_header_cb)(void *arg, const char *line, size_t len);

struct imp_http_opts {
    const char *method; /* "GET", "POST"... */
    const char *url;
    const char *const *headers; /* NULL-terminated "Name: value" list, may be NULL */
    const void *body;
    size_t body_len;
    int timeout_ms; /* whole transfer; 0 = none (streams) */
    int connect_timeout_ms;
    imp_http_chunk_cb on_chunk; /* NULL: buffer the body for done */
    imp_http_header_cb on_header;
    const char *ca_file; /* https: trust these CAs instead of the system's */
    int pipewait;        /* HTTP/2: wait to multiplex on a connection being set
                            up rather than open another (a burst shares one) */
    imp_http_done_cb on_done;
    void *arg;
};

struct imp_http *imp_http_create(struct ev_loop *loop);
/* At most n connections per host (0: no limit). HTTPS goes over HTTP/2
 * (libcurl's default) and requests multiplex on them. */
void imp_http_set_max_host_connections(struct imp_http *h, long n);
/* Cancels every request (their done callbacks are not called). */
void imp_http_destroy(struct imp_http *h);

/* Starts a request. Returns NULL (done not called) only if curl refused it. */
struct imp_http_req *imp_http_request(struct imp_http *h, const struct imp_http_opts *o);
/* Cancels a request whose done has not run; done will not run. Must not be
 * called from inside this request's own callbacks (return non-zero from
 * on_chunk instead). */
void imp_http_cancel(struct imp_http_req *r);

#endif

/*
 * Unary gRPC over cleartext HTTP/2 on a libev loop (grpcc.h).
 *
 * A call is submitted to its connection's nghttp2 session at once (nghttp2
 * holds streams beyond the server's concurrency limit); the session's
 * frames are gathered with nghttp2_session_mem_send and written with one
 * write() per connection from the prepare watcher, when the loop is about
 * to block. Finished calls wait in a ready list that the same watcher
 * delivers, so no callback runs inside nghttp2 or inside imp_grpcc_unary.
 */
#include "net/grpcc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/common.h"

#define WINDOW        (16 * 1024 * 1024) /* our stream and connection windows */
#define MAX_REPLY     (64 * 1024 * 1024) /* a reply beyond this fails the call */
#define READ_CHUNK    (64 * 1024)
#define OUT_HIGH      (4 * 1024 * 1024) /* unwritten bytes before mem_send pauses */
#define BACKOFF_MIN   100
#define BACKOFF_MAX   1000
#define MAX_MD        16
#define DETAILS_BYTES 256

struct gconn;

struct call {
    struct imp_grpcc *c;
    struct gconn *k; /* NULL once finished */
    int32_t sid;
    imp_grpc_cb cb;
    void *arg;
    uint8_t *req; /* 5-byte prefix + message */
    size_t req_len, req_pos;
    struct imp_buf resp;
    int http_status;
    int grpc_status; /* -1 until the trailers say */
    int overflow;
    char message[DETAILS_BYTES]; /* grpc-message, percent-decoded */
    ev_timer timer;
    int status; /* the result, once finished */
    char details[DETAILS_BYTES];
    struct call *prev, *next; /* the connection's calls */
    struct call *ready_next;
};

struct dest {
    char *addr;
    struct sockaddr_storage sa;
    socklen_t salen;
    struct gconn *conn; /* the one new calls go to; NULL: none yet, or draining */
    uint64_t retry_at_ms;
    int backoff_ms;
    char error[128];
    struct dest *next;
};

struct gconn {
    struct imp_grpcc *c;
    struct dest *d;
    int fd;
    ev_io io;
    int io_events;
    nghttp2_session *s;
    int connected, draining, dead;
    struct imp_buf out;
    size_t out_pos;
    struct call *calls;
    int in_dirty;
    struct gconn *dirty_next;
    struct gconn *next; /* every live connection */
};

struct imp_grpcc {
    struct ev_loop *loop;
    int max_msg;
    struct dest *dests;
    struct gconn *conns;
    struct gconn *dirty;
    struct call *ready_head, *ready_tail;
    ev_prepare prep;
    ev_idle idle;
    nghttp2_session_callbacks *cbs;
    long inflight;
};

static void conn_fail(struct gconn *k, const char *why);

/* Calls a destroyed client never answered: their callbacks cannot run (the
 * owners' state is gone at shutdown), so their records, and through them
 * the callbacks' arguments, are kept here until the process exits. */
static struct call *abandoned;
static pthread_mutex_t abandoned_lock = PTHREAD_MUTEX_INITIALIZER;

static void call_abandon(struct call *cl)
{
    pthread_mutex_lock(&abandoned_lock);
    cl->ready_next = abandoned;
    abandoned = cl;
    pthread_mutex_unlock(&abandoned_lock);
}

/* ---- scheduling ---------------------------------------------------------- */

/* Work for the prepare watcher: started on demand; the idle watcher keeps
 * the loop from blocking when the kick came from another prepare watcher
 * of the same turn (which ours may already have followed). */
static void kick(struct imp_grpcc *c)
{
    if (!ev_is_active(&c->prep)) ev_prepare_start(c->loop, &c->prep);
    if (!ev_is_active(&c->idle)) ev_idle_start(c->loop, &c->idle);
}

static void on_idle(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)revents;
    ev_idle_stop(loop, w);
}

static void mark_dirty(struct gconn *k)
{
    if (k->in_dirty || k->dead) return;
    k->in_dirty = 1;
    k->dirty_next = k->c->dirty;
    k->c->dirty = k;
    kick(k->c);
}

static void call_unlink(struct call *cl)
{
    struct gconn *k = cl->k;
    if (!k) return;
    if (cl->prev)
        cl->prev->next = cl->next;
    else
        k->calls = cl->next;
    if (cl->next) cl->next->prev = cl->prev;
    cl->prev = cl->next = NULL;
    cl->k = NULL;
}

/* The call's result is known: off its stream and connection, into the
 * ready list. */
static void call_finish(struct call *cl, int status, const char *details)
{
    struct imp_grpcc *c = cl->c;
    if (cl->k && cl->sid > 0 && cl->k->s && !cl->k->dead)
        nghttp2_session_set_stream_user_data(cl->k->s, cl->sid, NULL);
    call_unlink(cl);
    ev_timer_stop(c->loop, &cl->timer);
    cl->status = status;
    snprintf(cl->details, sizeof(cl->details), "%s", details ? details : "");
    cl->ready_next = NULL;
    if (c->ready_tail)
        c->ready_tail->ready_next = cl;
    else
        c->ready_head = cl;
    c->ready_tail = cl;
    kick(c);
}

static void call_free(struct call *cl)
{
    free(cl->req);
    imp_buf_dispose(&cl->resp);
    free(cl);
}

/* ---- nghttp2 callbacks ------------------------------------------------------ */

static void percent_decode(char *out, size_t cap, const uint8_t *v, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        unsigned hi, lo;
        if (v[i] == '%' && i + 2 < n && sscanf((const char *)v + i + 1, "%1x%1x", &hi, &lo) == 2) {
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = (char)v[i];
        }
    }
    out[o] = '\0';
}

static int on_header_cb(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *ud)
{
    (void)flags;
    (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    struct call *cl = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!cl) return 0;
    char v[16];
    size_t n = IMP_MIN(valuelen, sizeof(v) - 1);
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        memcpy(v, value, n);
        v[n] = '\0';
        int st = atoi(v);
        if (st >= 200) cl->http_status = st;
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        memcpy(v, value, n);
        v[n] = '\0';
        cl->grpc_status = atoi(v);
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        percent_decode(cl->message, sizeof(cl->message), value, valuelen);
    }
    return 0;
}

static int on_data_cb(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                      size_t len, void *ud)
{
    (void)flags;
    (void)ud;
    struct call *cl = nghttp2_session_get_stream_user_data(s, id);
    if (!cl || cl->overflow) return 0;
    if (cl->resp.len + len > (size_t)MAX_REPLY + 5) {
        cl->overflow = 1;
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        return 0;
    }
    imp_buf_append(&cl->resp, data, len);
    return 0;
}

/* An HTTP status other than 200, as gRPC maps it. */
static int http_to_grpc(int st)
{
    switch (st) {
    case 400: return 13; /* INTERNAL */
    case 401: return 16; /* UNAUTHENTICATED */
    case 403: return 7;  /* PERMISSION_DENIED */
    case 404: return 12; /* UNIMPLEMENTED */
    case 429:
    case 502:
    case 503:
    case 504: return 14; /* UNAVAILABLE */
    default: return 2;   /* UNKNOWN */
    }
}

static int on_close_cb(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    (void)ud;
    struct call *cl = nghttp2_session_get_stream_user_data(s, id);
    if (!cl) return 0;
    char d[DETAILS_BYTES];
    if (cl->overflow) {
        snprintf(d, sizeof(d), "reply larger than %d bytes", MAX_REPLY);
        call_finish(cl, 8, d); /* RESOURCE_EXHAUSTED */
    } else if (cl->grpc_status >= 0) {
        if (cl->grpc_status != 0) {
            call_finish(cl, cl->grpc_status, cl->message);
        } else if (cl->resp.len < 5) {
            call_finish(cl, 13, "no reply message"); /* INTERNAL */
        } else {
            const uint8_t *p = (const uint8_t *)cl->resp.data;
            uint32_t mlen =
                (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
            if (p[0] != 0)
                call_finish(cl, 12, "compressed reply"); /* UNIMPLEMENTED */
            else if ((size_t)mlen != cl->resp.len - 5)
                call_finish(cl, 13, "reply message length does not match its frame");
            else
                call_finish(cl, 0, "");
        }
    } else if (cl->http_status && cl->http_status != 200) {
        snprintf(d, sizeof(d), "HTTP status %d", cl->http_status);
        call_finish(cl, http_to_grpc(cl->http_status), d);
    } else if (code == NGHTTP2_REFUSED_STREAM) {
        call_finish(cl, 14, "stream refused by the server"); /* UNAVAILABLE */
    } else if (code != NGHTTP2_NO_ERROR) {
        snprintf(d, sizeof(d), "stream reset: %s", nghttp2_http2_strerror(code));
        call_finish(cl, code == NGHTTP2_CANCEL ? 1 : 13, d);
    } else {
        call_finish(cl, 2, "no grpc-status in the answer"); /* UNKNOWN */
    }
    return 0;
}

static int on_frame_cb(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    struct gconn *k = ud;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        /* streams the server did not take close as refused; new calls go
         * to a new connection */
        k->draining = 1;
        if (k->d->conn == k) k->d->conn = NULL;
    }
    return 0;
}

static int on_not_send_cb(nghttp2_session *s, const nghttp2_frame *f, int lib_error, void *ud)
{
    (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    struct call *cl = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!cl) return 0;
    char d[DETAILS_BYTES];
    snprintf(d, sizeof(d), "not sent: %s", nghttp2_strerror(lib_error));
    call_finish(cl, 14, d);
    return 0;
}

static ssize_t body_read_cb(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)id;
    (void)ud;
    struct call *cl = src->ptr;
    size_t n = IMP_MIN(len, cl->req_len - cl->req_pos);
    memcpy(buf, cl->req + cl->req_pos, n);
    cl->req_pos += n;
    if (cl->req_pos == cl->req_len) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* ---- connections ------------------------------------------------------------- */

static void conn_set_io(struct gconn *k, int events)
{
    if (k->io_events == events) return;
    ev_io_stop(k->c->loop, &k->io);
    ev_io_set(&k->io, k->fd, events);
    ev_io_start(k->c->loop, &k->io);
    k->io_events = events;
}

/* Gathers the session's frames and writes them: one write() when the
 * socket takes them all. 0, or -1 when the connection failed. */
static int conn_flush(struct gconn *k)
{
    if (k->dead || !k->connected) return 0;
    while (k->out.len - k->out_pos < OUT_HIGH) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(k->s, &data);
        if (n < 0) {
            conn_fail(k, nghttp2_strerror((int)n));
            return -1;
        }
        if (n == 0) break;
        imp_buf_append(&k->out, data, (size_t)n);
    }
    while (k->out_pos < k->out.len) {
        ssize_t w = write(k->fd, k->out.data + k->out_pos, k->out.len - k->out_pos);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) break;
        if (w <= 0) {
            char why[96];
            snprintf(why, sizeof(why), "write: %s", strerror(errno));
            conn_fail(k, why);
            return -1;
        }
        k->out_pos += (size_t)w;
    }
    if (k->out_pos == k->out.len) {
        imp_buf_reset(&k->out);
        k->out_pos = 0;
    }
    int more = k->out_pos < k->out.len || nghttp2_session_want_write(k->s);
    conn_set_io(k, EV_READ | (more ? EV_WRITE : 0));
    return 0;
}

static void conn_read(struct gconn *k)
{
    uint8_t buf[READ_CHUNK];
    for (;;) {
        ssize_t n = read(k->fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        if (n <= 0) {
            char why[96];
            snprintf(why, sizeof(why), "%s",
                     n == 0 ? "connection closed by the server" : strerror(errno));
            conn_fail(k, why);
            return;
        }
        ssize_t rv = nghttp2_session_mem_recv(k->s, buf, (size_t)n);
        if (rv < 0) {
            conn_fail(k, nghttp2_strerror((int)rv));
            return;
        }
        if ((size_t)n < sizeof(buf)) break;
    }
    if (nghttp2_session_want_write(k->s)) mark_dirty(k);
}

static void connect_failed(struct gconn *k, int err)
{
    struct dest *d = k->d;
    d->backoff_ms = d->backoff_ms ? IMP_MIN(d->backoff_ms * 2, BACKOFF_MAX) : BACKOFF_MIN;
    d->retry_at_ms = imp_now_ms() + (uint64_t)d->backoff_ms;
    snprintf(d->error, sizeof(d->error), "connect to %s: %s", d->addr, strerror(err));
    conn_fail(k, d->error);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct gconn *k = w->data;
    if (!k->connected) {
        int err = 0;
        socklen_t l = sizeof(err);
        if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &l) != 0) err = errno;
        if (err == EINPROGRESS) return;
        if (err) {
            connect_failed(k, err);
            return;
        }
        k->connected = 1;
        k->d->backoff_ms = 0;
        conn_flush(k);
        return;
    }
    if (revents & EV_READ) conn_read(k);
    if (!k->dead && (revents & EV_WRITE)) conn_flush(k);
}

/* A new connection to d, connecting; NULL when the connect failed at once
 * (d->error says why, and d is in its backoff). */
static struct gconn *conn_open(struct imp_grpcc *c, struct dest *d)
{
    int fd = socket(d->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || (connect(fd, (struct sockaddr *)&d->sa, d->salen) != 0 && errno != EINPROGRESS)) {
        int err = errno;
        if (fd >= 0) close(fd);
        d->backoff_ms = d->backoff_ms ? IMP_MIN(d->backoff_ms * 2, BACKOFF_MAX) : BACKOFF_MIN;
        d->retry_at_ms = imp_now_ms() + (uint64_t)d->backoff_ms;
        snprintf(d->error, sizeof(d->error), "connect to %s: %s", d->addr, strerror(err));
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct gconn *k = imp_xcalloc(1, sizeof(*k));
    k->c = c;
    k->d = d;
    k->fd = fd;
    imp_buf_init(&k->out);
    nghttp2_session_client_new(&k->s, c->cbs, k);
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WINDOW},
    };
    nghttp2_submit_settings(k->s, NGHTTP2_FLAG_NONE, iv, 2);
    nghttp2_session_set_local_window_size(k->s, NGHTTP2_FLAG_NONE, 0, WINDOW);
    ev_io_init(&k->io, on_io, fd, EV_WRITE);
    k->io.data = k;
    ev_io_start(c->loop, &k->io);
    k->io_events = EV_WRITE;
    k->next = c->conns;
    c->conns = k;
    d->conn = k;
    return k;
}

/* Every call of k fails UNAVAILABLE; k is closed and freed from the
 * prepare watcher. */
static void conn_fail(struct gconn *k, const char *why)
{
    if (k->dead) return;
    k->dead = 1;
    if (k->d->conn == k) k->d->conn = NULL;
    char d[DETAILS_BYTES];
    snprintf(d, sizeof(d), "%s: %s", k->d->addr, why);
    while (k->calls) {
        struct call *cl = k->calls;
        call_unlink(cl); /* the session goes: no stream user data to clear */
        cl->k = NULL;
        call_finish(cl, 14, d);
    }
    if (k->io_events) ev_io_stop(k->c->loop, &k->io);
    k->io_events = 0;
    kick(k->c);
}

static void conn_free(struct gconn *k)
{
    if (k->io_events) ev_io_stop(k->c->loop, &k->io);
    if (k->fd >= 0) close(k->fd);
    nghttp2_session_del(k->s);
    imp_buf_dispose(&k->out);
    free(k);
}

/* Frees dead connections, and closes draining ones with nothing left. */
static void reap(struct imp_grpcc *c)
{
    for (struct gconn **pk = &c->conns; *pk;) {
        struct gconn *k = *pk;
        if (!k->dead && k->draining && !k->calls) conn_fail(k, "drained");
        if (k->dead && !k->in_dirty) {
            *pk = k->next;
            conn_free(k);
        } else {
            pk = &k->next;
        }
    }
}

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    struct imp_grpcc *c = w->data;
    for (;;) {
        while (c->ready_head) {
            struct call *cl = c->ready_head;
            c->ready_head = cl->ready_next;
            if (!c->ready_head) c->ready_tail = NULL;
            struct imp_grpc_result r = {
                .status = cl->status,
                .details = cl->details,
                .data = cl->status == 0 ? (const uint8_t *)cl->resp.data + 5 : NULL,
                .len = cl->status == 0 ? cl->resp.len - 5 : 0,
            };
            c->inflight--;
            cl->cb(cl->arg, &r);
            call_free(cl);
        }
        if (!c->dirty) break;
        while (c->dirty) {
            struct gconn *k = c->dirty;
            c->dirty = k->dirty_next;
            k->in_dirty = 0;
            conn_flush(k);
        }
    }
    reap(c);
    if (!c->ready_head && !c->dirty) ev_prepare_stop(loop, w);
}

/* ---- calls ------------------------------------------------------------------- */

static int parse_addr(const char *addr, struct sockaddr_storage *sa, socklen_t *salen)
{
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof(host)) return -1;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535) return -1;
    size_t hl = (size_t)(colon - addr);
    if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']') {
        memcpy(host, addr + 1, hl - 2);
        host[hl - 2] = '\0';
    } else {
        memcpy(host, addr, hl);
        host[hl] = '\0';
    }
    memset(sa, 0, sizeof(*sa));
    struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *salen = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *salen = sizeof(*v6);
        return 0;
    }
    return -1;
}

int imp_grpcc_can_dial(const char *addr)
{
    struct sockaddr_storage sa;
    socklen_t l;
    return addr && parse_addr(addr, &sa, &l) == 0;
}

static struct dest *dest_of(struct imp_grpcc *c, const char *addr)
{
    for (struct dest *d = c->dests; d; d = d->next)
        if (strcmp(d->addr, addr) == 0) return d;
    struct dest *d = imp_xcalloc(1, sizeof(*d));
    if (parse_addr(addr, &d->sa, &d->salen) != 0) {
        free(d);
        return NULL;
    }
    d->addr = imp_xstrdup(addr);
    d->next = c->dests;
    c->dests = d;
    return d;
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct call *cl = w->data;
    struct gconn *k = cl->k;
    if (k && cl->sid > 0 && !k->dead) {
        nghttp2_submit_rst_stream(k->s, NGHTTP2_FLAG_NONE, cl->sid, NGHTTP2_CANCEL);
        mark_dirty(k);
    }
    call_finish(cl, 4, "Deadline Exceeded"); /* DEADLINE_EXCEEDED */
}

#define NV(n, v, vl)                                                                               \
    (nghttp2_nv) { (uint8_t *)(n), (uint8_t *)(v), strlen(n), (vl), NGHTTP2_NV_FLAG_NONE }

int imp_grpcc_unary(struct imp_grpcc *c, const char *addr, const char *method, const void *req,
                    size_t len, int timeout_ms, const struct imp_grpc_md *md, size_t nmd,
                    imp_grpc_cb cb, void *arg)
{
    struct dest *d = dest_of(c, addr);
    if (!d) return IMP_EINVAL;
    struct call *cl = imp_xcalloc(1, sizeof(*cl));
    cl->c = c;
    cl->cb = cb;
    cl->arg = arg;
    cl->grpc_status = -1;
    imp_buf_init(&cl->resp);
    ev_timer_init(&cl->timer, on_timer, (timeout_ms > 0 ? timeout_ms : 1) / 1000.0, 0.);
    cl->timer.data = cl;
    c->inflight++;
    if (c->max_msg > 0 && len > (size_t)c->max_msg) {
        char m[DETAILS_BYTES];
        snprintf(m, sizeof(m), "Sent message larger than max (%zu vs. %d)", len, c->max_msg);
        call_finish(cl, 8, m); /* RESOURCE_EXHAUSTED, as gRPC says it */
        return 0;
    }
    if (d->retry_at_ms > imp_now_ms()) {
        call_finish(cl, 14, d->error); /* in the reconnect backoff: fail fast */
        return 0;
    }
    struct gconn *k = d->conn ? d->conn : conn_open(c, d);
    if (!k) {
        call_finish(cl, 14, d->error);
        return 0;
    }
    cl->req_len = len + 5;
    cl->req = imp_xmalloc(cl->req_len);
    cl->req[0] = 0;
    cl->req[1] = (uint8_t)(len >> 24);
    cl->req[2] = (uint8_t)(len >> 16);
    cl->req[3] = (uint8_t)(len >> 8);
    cl->req[4] = (uint8_t)len;
    if (len) memcpy(cl->req + 5, req, len);

    char tmo[24];
    snprintf(tmo, sizeof(tmo), "%dm", timeout_ms > 0 ? timeout_ms : 1);
    nghttp2_nv nva[8 + MAX_MD];
    size_t nh = 0;
    nva[nh++] = NV(":method", "POST", 4);
    nva[nh++] = NV(":scheme", "http", 4);
    nva[nh++] = NV(":path", method, strlen(method));
    nva[nh++] = NV(":authority", addr, strlen(addr));
    nva[nh++] = NV("content-type", "application/grpc", 16);
    nva[nh++] = NV("te", "trailers", 8);
    nva[nh++] = NV("grpc-timeout", tmo, strlen(tmo));
    nva[nh++] = NV("user-agent", "grpc-c/impulse", 14);
    for (size_t i = 0; i < nmd && i < MAX_MD; i++) {
        if (!md[i].value) continue; /* absent, as the C core leaves it out */
        nva[nh++] = NV(md[i].key, md[i].value, strlen(md[i].value));
    }
    nghttp2_data_provider prd = {.source.ptr = cl, .read_callback = body_read_cb};
    int32_t sid = nghttp2_submit_request(k->s, NULL, nva, nh, &prd, cl);
    if (sid == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
        /* 2^30 calls on this connection: it drains, a new one takes over */
        k->draining = 1;
        if (d->conn == k) d->conn = NULL;
        kick(c);
        if (!(k = conn_open(c, d))) {
            call_finish(cl, 14, d->error);
            return 0;
        }
        sid = nghttp2_submit_request(k->s, NULL, nva, nh, &prd, cl);
    }
    cl->k = k;
    cl->next = k->calls;
    if (k->calls) k->calls->prev = cl;
    k->calls = cl;
    if (sid < 0) {
        call_finish(cl, 13, nghttp2_strerror(sid));
        return 0;
    }
    cl->sid = sid;
    ev_timer_start(c->loop, &cl->timer);
    mark_dirty(k);
    return 0;
}

long imp_grpcc_in_flight(const struct imp_grpcc *c) { return c ? c->inflight : 0; }

struct imp_grpcc *imp_grpcc_create(struct ev_loop *loop, int max_msg)
{
    struct imp_grpcc *c = imp_xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->max_msg = max_msg;
    ev_prepare_init(&c->prep, on_prepare);
    c->prep.data = c;
    ev_idle_init(&c->idle, on_idle);
    nghttp2_session_callbacks_new(&c->cbs);
    nghttp2_session_callbacks_set_on_header_callback(c->cbs, on_header_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c->cbs, on_data_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(c->cbs, on_close_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(c->cbs, on_frame_cb);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(c->cbs, on_not_send_cb);
    return c;
}

void imp_grpcc_destroy(struct imp_grpcc *c)
{
    if (!c) return;
    ev_prepare_stop(c->loop, &c->prep);
    ev_idle_stop(c->loop, &c->idle);
    while (c->conns) {
        struct gconn *k = c->conns;
        c->conns = k->next;
        while (k->calls) {
            struct call *cl = k->calls;
            call_unlink(cl);
            ev_timer_stop(c->loop, &cl->timer);
            call_abandon(cl);
        }
        conn_free(k);
    }
    while (c->ready_head) {
        struct call *cl = c->ready_head;
        c->ready_head = cl->ready_next;
        call_abandon(cl);
    }
    while (c->dests) {
        struct dest *d = c->dests;
        c->dests = d->next;
        free(d->addr);
        free(d);
    }
    nghttp2_session_callbacks_del(c->cbs);
    free(c);
}

/*
 * HTTP/2 over TLS with nghttp2 and OpenSSL on a libev loop (h2.h). One
 * client per worker loop, used by the providers' batch sender
 * (calls/httpbatch.c); everything runs on that loop except name
 * resolution (a thread per lookup, answered through an ev_async). Never
 * blocks the loop; never calls a request's done callback from inside
 * nghttp2's callbacks or the submitting call (answers are delivered from
 * the prepare watcher).
 */
#include "net/h2.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/common.h"
#include "base/metrics.h"

#define OUT_CHUNK      (64 * 1024)       /* bytes gathered before one SSL_write */
#define MAX_RESP       (4 * 1024 * 1024) /* a response body beyond this is refused */
#define IDLE_CLOSE_S   60.0              /* a connection without streams this long is closed */
#define STREAMS_PRESET 100               /* assumed before the server's SETTINGS arrive */
#define MAX_ADDRS      4                 /* of a name's addresses, tried in turn */

enum rstate { R_PENDING, R_STREAM, R_DONE, R_CURL };
enum cstate { C_RESOLVE, C_CONNECT, C_HANDSHAKE, C_READY };

struct origin;
struct conn;
struct imp_h2_req;

/* A list of requests; a request is on at most one (its state says which). */
struct rlist {
    struct imp_h2_req *head, *tail;
};

struct imp_h2_req {
    struct imp_h2_req *next,
        *prev; /* in an rlist: origin's pend, conn's streams, c's done or curls */
    struct imp_h2 *c;
    struct origin *o;
    struct conn *conn;
    enum rstate where;
    int32_t stream_id;
    int zombie;        /* cancelled or answered early: kept until nghttp2 closes the stream */
    int refused;       /* times the server refused it unseen (REFUSED_STREAM, GOAWAY) */
    ev_tstamp sent_at; /* submitted on its connection */
    int overflow;      /* response too large: reset, failed when the stream closes */
    /* the caller's, borrowed until done or cancel (h2.h) */
    const char *url, *method, *path, *body, *ca_file;
    const char *const *lines; /* header lines, NULL-terminated, or NULL */
    size_t body_len, body_off;
    int timeout_ms, connect_timeout_ms;
    ev_timer timer;
    imp_http_header_cb on_header;
    imp_http_done_cb on_done;
    void *arg;
    long status;
    struct imp_buf resp;
    int err;
    char errmsg[200];
    struct imp_http_req *curl;
};

struct conn {
    struct conn *next;
    struct imp_h2 *c;
    struct origin *o;
    struct rlist streams; /* requests submitted on the session */
    enum cstate state;
    int fd;
    SSL *ssl;
    nghttp2_session *s;
    ev_io io;
    ev_timer tm;         /* connect + handshake deadline, then idle close */
    ev_tstamp last_used; /* a stream opened or closed */
    ev_tstamp last_recv; /* a response frame (HEADERS, DATA) or a PING's answer came in */
    int nstreams;        /* opened on the session and not closed yet */
    int goaway, dead, in_dirty;
    struct conn *dirty_next;
    unsigned char *out;
    size_t out_len, out_off, out_cap;
    struct job *job;                         /* name resolution in flight */
    struct sockaddr_storage addr[MAX_ADDRS]; /* tried in order until one connects */
    socklen_t addr_len[MAX_ADDRS];
    int naddr, ai;
};

struct origin {
    struct origin *next;
    struct imp_h2 *c;
    char *host, *authority, *ca_file; /* ca_file "" = the system's CAs */
    int port, is_ip, no_h2, nconns;
    struct conn *conns;
    struct rlist pend; /* waiting for a connection with room */
    int connect_timeout_ms;
    int kicked; /* dispatch from the prepare watcher (never from inside conn_close) */
};

struct ctx {
    struct ctx *next;
    char *ca_file;
    SSL_CTX *ctx;
    char *error; /* the CA file could not be loaded */
};

/* Name resolution off the loop: a thread per lookup reports through an
 * ev_async; the shared part outlives the client while lookups run. */
struct resolver {
    pthread_mutex_t mu;
    int refs;
    struct imp_h2 *c; /* NULL once the client is gone */
    struct job *done;
};

struct job {
    struct job *next;
    struct resolver *r;
    struct conn *conn; /* NULL when the connection went away first */
    char host[256], port[8];
    struct sockaddr_storage addr[MAX_ADDRS];
    socklen_t addr_len[MAX_ADDRS];
    int naddr;
    char error[320];
};

struct imp_h2 {
    struct ev_loop *loop;
    struct imp_http *fallback;
    int max_conns;
    struct origin *origins;
    struct ctx *ctxs;
    struct rlist done;  /* answered, to deliver from the prepare watcher */
    struct rlist curls; /* handed to libcurl */
    struct conn *dirty;
    ev_prepare prep;
    ev_async async;
    struct resolver *res;
    nghttp2_session_callbacks *cbs;
    int destroying; /* no metrics from the teardown */
};

static void conn_close(struct conn *k, int err, const char *msg);
static void origin_dispatch(struct origin *o);
static void req_free(struct imp_h2_req *r);

/* ---- small helpers --------------------------------------------------------- */

static void kick(struct imp_h2 *c)
{
    if (!ev_is_active(&c->prep)) ev_prepare_start(c->loop, &c->prep);
}

/* k has frames to send: written, gathered, before the loop blocks. */
static void mark_dirty(struct conn *k)
{
    if (k->in_dirty || k->dead) return;
    k->in_dirty = 1;
    k->dirty_next = k->c->dirty;
    k->c->dirty = k;
    kick(k->c);
}

static void rl_unlink(struct rlist *l, struct imp_h2_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->next = r->prev = NULL;
}

static void rl_push(struct rlist *l, struct imp_h2_req *r, int front)
{
    if (front) {
        r->prev = NULL;
        r->next = l->head;
        if (l->head)
            l->head->prev = r;
        else
            l->tail = r;
        l->head = r;
    } else {
        r->next = NULL;
        r->prev = l->tail;
        if (l->tail)
            l->tail->next = r;
        else
            l->head = r;
        l->tail = r;
    }
}

static void stream_link(struct conn *k, struct imp_h2_req *r)
{
    r->where = R_STREAM;
    r->conn = k;
    rl_push(&k->streams, r, 1);
}

static void pend_push(struct origin *o, struct imp_h2_req *r, int front)
{
    r->where = R_PENDING;
    r->conn = NULL;
    r->stream_id = 0;
    rl_push(&o->pend, r, front);
}

/* The request has its answer (or error): delivered from the prepare watcher,
 * never inside nghttp2's callbacks or the call that started it. */
static void req_finish(struct imp_h2_req *r, int err, const char *msg)
{
    struct imp_h2 *c = r->c;
    ev_timer_stop(c->loop, &r->timer);
    r->err = err;
    if (err && msg) snprintf(r->errmsg, sizeof(r->errmsg), "%s", msg);
    r->where = R_DONE;
    r->conn = NULL;
    rl_push(&c->done, r, 0);
    kick(c);
}

/* ---- the libcurl path (not https, or the origin does not speak h2) --------- */

static void curl_done(void *arg, int err, long status, const char *body, size_t len,
                      const char *errmsg)
{
    struct imp_h2_req *r = arg;
    r->curl = NULL;
    rl_unlink(&r->c->curls, r);
    r->on_done(r->arg, err, status, body, len, errmsg);
    req_free(r);
}

static void curl_header(void *arg, const char *line, size_t len)
{
    struct imp_h2_req *r = arg;
    r->on_header(r->arg, line, len);
}

/* Hands r to the libcurl client; 0, or -1 when curl refused it. */
static int to_curl(struct imp_h2_req *r)
{
    struct imp_http_opts o = {.method = r->method,
                              .url = r->url,
                              .headers = r->lines,
                              .body = r->body,
                              .body_len = r->body_len,
                              .timeout_ms = r->timeout_ms,
                              .connect_timeout_ms = r->connect_timeout_ms,
                              .on_header = r->on_header ? curl_header : NULL,
                              .ca_file = r->ca_file,
                              .pipewait = 1,
                              .on_done = curl_done,
                              .arg = r};
    ev_timer_stop(r->c->loop, &r->timer);
    r->curl = imp_http_request(r->c->fallback, &o);
    if (!r->curl) return -1;
    r->where = R_CURL;
    rl_push(&r->c->curls, r, 0);
    return 0;
}

/* ---- TLS contexts ---------------------------------------------------------- */

static struct ctx *ctx_of(struct imp_h2 *c, const char *ca_file)
{
    for (struct ctx *x = c->ctxs; x; x = x->next)
        if (strcmp(x->ca_file, ca_file) == 0) return x;
    struct ctx *x = imp_xcalloc(1, sizeof(*x));
    x->ca_file = imp_xstrdup(ca_file);
    x->next = c->ctxs;
    c->ctxs = x;
    x->ctx = SSL_CTX_new(TLS_client_method());
    if (!x->ctx) {
        x->error = imp_xstrdup("TLS: cannot create a context");
        return x;
    }
    SSL_CTX_set_min_proto_version(x->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(x->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(x->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
    static const unsigned char alpn[] = "\x02h2\x08http/1.1";
    SSL_CTX_set_alpn_protos(x->ctx, alpn, sizeof(alpn) - 1);
    int ok = ca_file[0] ? SSL_CTX_load_verify_locations(x->ctx, ca_file, NULL)
                        : SSL_CTX_set_default_verify_paths(x->ctx);
    if (ok != 1) {
        char e[256], buf[600];
        ERR_error_string_n(ERR_get_error(), e, sizeof(e));
        snprintf(buf, sizeof(buf), "TLS: cannot load CA file %s: %s", ca_file, e);
        x->error = imp_xstrdup(buf);
        ERR_clear_error();
    }
    return x;
}

/* ---- name resolution ------------------------------------------------------- */

static void resolver_unref(struct resolver *rs)
{
    pthread_mutex_lock(&rs->mu);
    int left = --rs->refs;
    pthread_mutex_unlock(&rs->mu);
    if (left == 0) {
        pthread_mutex_destroy(&rs->mu);
        for (struct job *j = rs->done, *n; j; j = n) {
            n = j->next;
            free(j);
        }
        free(rs);
    }
}

static void *resolve_thread(void *arg)
{
    struct job *j = arg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_ADDRCONFIG},
                    *ai = NULL;
    int rc = getaddrinfo(j->host, j->port, &hints, &ai);
    if (rc != 0 || !ai) {
        snprintf(j->error, sizeof(j->error), "cannot resolve %s: %s", j->host,
                 rc ? gai_strerror(rc) : "no address");
    } else {
        for (struct addrinfo *a = ai; a && j->naddr < MAX_ADDRS; a = a->ai_next) {
            memcpy(&j->addr[j->naddr], a->ai_addr, a->ai_addrlen);
            j->addr_len[j->naddr++] = a->ai_addrlen;
        }
    }
    if (ai) freeaddrinfo(ai);
    struct resolver *rs = j->r;
    pthread_mutex_lock(&rs->mu);
    j->next = rs->done;
    rs->done = j;
    if (rs->c) ev_async_send(rs->c->loop, &rs->c->async);
    pthread_mutex_unlock(&rs->mu);
    resolver_unref(rs);
    return NULL;
}

static void conn_connect(struct conn *k);
static void conn_connect_failed(struct conn *k, int err);
static void conn_start(struct conn *k);

static void on_async(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    struct imp_h2 *c = w->data;
    pthread_mutex_lock(&c->res->mu);
    struct job *list = c->res->done;
    c->res->done = NULL;
    pthread_mutex_unlock(&c->res->mu);
    for (struct job *j = list, *n; j; j = n) {
        n = j->next;
        struct conn *k = j->conn;
        if (k) {
            k->job = NULL;
            if (j->error[0]) {
                conn_close(k, IMP_EIO, j->error);
            } else {
                memcpy(k->addr, j->addr, sizeof(k->addr));
                memcpy(k->addr_len, j->addr_len, sizeof(k->addr_len));
                k->naddr = j->naddr;
                conn_connect(k);
            }
        }
        free(j);
    }
}

/* ---- nghttp2 callbacks ----------------------------------------------------- */

static int on_header_cb(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *ud)
{
    (void)flags;
    (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    struct imp_h2_req *r = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!r || r->zombie || r->overflow) return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        char v[8];
        size_t n = IMP_MIN(valuelen, sizeof(v) - 1);
        memcpy(v, value, n);
        v[n] = '\0';
        long st = atol(v);
        if (st >= 200) r->status = st; /* 1xx: informational, the real one follows */
        return 0;
    }
    if (r->on_header && namelen + valuelen + 4 <= 1024) { /* as "name: value\r\n" */
        char line[1024];
        memcpy(line, name, namelen);
        memcpy(line + namelen, ": ", 2);
        memcpy(line + namelen + 2, value, valuelen);
        memcpy(line + namelen + 2 + valuelen, "\r\n", 2);
        r->on_header(r->arg, line, namelen + valuelen + 4);
    }
    return 0;
}

static int on_data_cb(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                      size_t len, void *ud)
{
    (void)flags;
    (void)ud;
    struct imp_h2_req *r = nghttp2_session_get_stream_user_data(s, id);
    if (!r || r->zombie || r->overflow) return 0;
    if (r->resp.len + len > MAX_RESP) {
        r->overflow = 1; /* failed when the reset stream closes */
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        return 0;
    }
    imp_buf_append(&r->resp, data, len);
    return 0;
}

/* The stream will not be sent (e.g. the server's GOAWAY came first). */
static void stream_gone(struct conn *k, struct imp_h2_req *r, uint32_t code)
{
    rl_unlink(&k->streams, r);
    if (r->zombie) {
        req_free(r);
        return;
    }
    if (r->overflow) {
        req_finish(r, IMP_EPROTO, "response body over 4 MiB");
        return;
    }
    if (code == NGHTTP2_REFUSED_STREAM && r->status == 0 && ++r->refused <= 3) {
        /* not processed by the server (GOAWAY or refused): send again,
         * not on this connection if it takes no more (origin_dispatch) */
        imp_buf_reset(&r->resp);
        r->body_off = 0;
        pend_push(k->o, r, 1);
        k->o->kicked = 1;
        kick(k->c);
        return;
    }
    if (code == NGHTTP2_NO_ERROR && r->status > 0) {
        req_finish(r, 0, NULL);
        return;
    }
    char msg[120];
    if (code == NGHTTP2_NO_ERROR)
        snprintf(msg, sizeof(msg), "HTTP/2 stream closed without a response");
    else
        snprintf(msg, sizeof(msg), "HTTP/2 stream reset: %s", nghttp2_http2_strerror(code));
    req_finish(r, IMP_EIO, msg);
}

static int on_close_cb(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    struct conn *k = ud;
    if (k->dead) return 0;
    if (id % 2 == 0) return 0; /* not ours (a pushed stream) */
    k->nstreams--;
    k->last_used = ev_now(k->c->loop);
    struct imp_h2_req *r = nghttp2_session_get_stream_user_data(s, id);
    if (r && r->where == R_STREAM && r->conn == k) stream_gone(k, r, code);
    return 0;
}

/* A request's HEADERS that nghttp2 did not send (after a GOAWAY). nghttp2
 * 1.52 opens the stream before deciding, so on_close_cb answers it and
 * this returns early; the lookup by id is for a version that does not
 * (a request never answered would be lost). */
static int on_not_send_cb(nghttp2_session *s, const nghttp2_frame *f, int lib_error, void *ud)
{
    struct conn *k = ud;
    if (lib_error == NGHTTP2_ERR_START_STREAM_NOT_ALLOWED ||
        lib_error == NGHTTP2_ERR_SESSION_CLOSING)
        k->goaway = 1; /* no new streams on this session */
    /* a stream that was opened is closed by nghttp2 next (on_close_cb) */
    if (k->dead || f->hd.type != NGHTTP2_HEADERS || nghttp2_session_find_stream(s, f->hd.stream_id))
        return 0;
    for (struct imp_h2_req *r = k->streams.head; r; r = r->next)
        if (r->stream_id == f->hd.stream_id) {
            k->nstreams--;
            stream_gone(k, r, NGHTTP2_REFUSED_STREAM);
            break;
        }
    return 0;
}

static int on_frame_cb(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    struct conn *k = ud;
    if (f->hd.type == NGHTTP2_GOAWAY) k->goaway = 1;
    if (f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA ||
        (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK)))
        k->last_recv = ev_now(k->c->loop);
    return 0;
}

static ssize_t body_read_cb(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)src;
    (void)ud;
    struct imp_h2_req *r = nghttp2_session_get_stream_user_data(s, id);
    if (!r || r->zombie) { /* cancelled: the stream is being reset */
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
    }
    size_t n = IMP_MIN(len, r->body_len - r->body_off);
    memcpy(buf, r->body + r->body_off, n);
    r->body_off += n;
    if (r->body_off == r->body_len) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* ---- connections ----------------------------------------------------------- */

static void conn_set_io(struct conn *k, int events)
{
    if (ev_is_active(&k->io) && k->io.events == events) return;
    ev_io_stop(k->c->loop, &k->io);
    ev_io_set(&k->io, k->fd, events);
    ev_io_start(k->c->loop, &k->io);
}

static void ssl_error(struct conn *k, int rc, const char *what, char *buf, size_t len)
{
    int saved = errno;
    int e = SSL_get_error(k->ssl, rc);
    unsigned long q = ERR_peek_error();
    long v = SSL_get_verify_result(k->ssl);
    if (v != X509_V_OK && k->state == C_HANDSHAKE) {
        snprintf(buf, len, "%s with %s:%d: certificate verify failed: %s", what, k->o->host,
                 k->o->port, X509_verify_cert_error_string(v));
    } else if (q) {
        char e2[200];
        ERR_error_string_n(q, e2, sizeof(e2));
        snprintf(buf, len, "%s with %s:%d: %s", what, k->o->host, k->o->port, e2);
    } else if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && saved == 0)) {
        snprintf(buf, len, "%s with %s:%d: connection closed by the server", what, k->o->host,
                 k->o->port);
    } else {
        snprintf(buf, len, "%s with %s:%d: %s", what, k->o->host, k->o->port, strerror(saved));
    }
    ERR_clear_error();
}

/* Writes what nghttp2 has queued, gathered into large TLS writes. Returns
 * -1 when the connection was closed. */
static int conn_flush(struct conn *k)
{
    for (;;) {
        if (k->out_off < k->out_len) {
            ERR_clear_error();
            errno = 0;
            int n = SSL_write(k->ssl, k->out + k->out_off, (int)(k->out_len - k->out_off));
            if (n <= 0) {
                int e = SSL_get_error(k->ssl, n);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    conn_set_io(k, EV_READ | EV_WRITE);
                    return 0;
                }
                char msg[240];
                ssl_error(k, n, "TLS write", msg, sizeof(msg));
                conn_close(k, IMP_EIO, msg);
                return -1;
            }
            k->out_off += (size_t)n;
            continue;
        }
        k->out_off = k->out_len = 0;
        while (k->out_len < OUT_CHUNK) {
            const uint8_t *p;
            ssize_t n = nghttp2_session_mem_send(k->s, &p);
            if (n < 0) {
                char msg[160];
                snprintf(msg, sizeof(msg), "HTTP/2 with %s:%d: %s", k->o->host, k->o->port,
                         nghttp2_strerror((int)n));
                conn_close(k, IMP_EPROTO, msg);
                return -1;
            }
            if (n == 0) break;
            if (k->out_len + (size_t)n > k->out_cap) {
                k->out_cap = IMP_MAX((size_t)OUT_CHUNK, k->out_len + (size_t)n);
                k->out = imp_xrealloc(k->out, k->out_cap);
            }
            memcpy(k->out + k->out_len, p, (size_t)n);
            k->out_len += (size_t)n;
        }
        if (k->out_len == 0) break;
    }
    conn_set_io(k, EV_READ);
    if (k->goaway && k->nstreams == 0) {
        conn_close(k, IMP_ECLOSED, "connection closed by the server (GOAWAY)");
        return -1;
    }
    if (!nghttp2_session_want_read(k->s) && !nghttp2_session_want_write(k->s)) {
        /* nghttp2 ended the session (a protocol error: its GOAWAY is out) */
        char msg[160];
        snprintf(msg, sizeof(msg), "HTTP/2 with %s:%d: session ended after a protocol error",
                 k->o->host, k->o->port);
        conn_close(k, IMP_EPROTO, msg);
        return -1;
    }
    if (k->o->pend.head) origin_dispatch(k->o);
    return 0;
}

static int stream_limit(struct conn *k)
{
    /* no SETTINGS yet, or no limit announced: STREAMS_PRESET */
    uint32_t m = nghttp2_session_get_remote_settings(k->s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    return m > 1000 ? STREAMS_PRESET : (int)m;
}

static void conn_ready(struct conn *k)
{
    const unsigned char *p = NULL;
    unsigned int plen = 0;
    SSL_get0_alpn_selected(k->ssl, &p, &plen);
    if (plen != 2 || memcmp(p, "h2", 2) != 0) {
        /* the server does not speak h2: libcurl (HTTP/1.1) from now on */
        struct origin *o = k->o;
        o->no_h2 = 1;
        conn_close(k, 0, NULL);
        origin_dispatch(o);
        return;
    }
    conn_start(k);
}

/* The TLS connection k speaks h2: its session, our SETTINGS, and the
 * origin's waiting requests on it. */
static void conn_start(struct conn *k)
{
    struct imp_h2 *c = k->c;
    if (nghttp2_session_client_new(&k->s, c->cbs, k) != 0) {
        k->s = NULL;
        conn_close(k, IMP_ENOMEM, "HTTP/2: cannot create a session");
        return;
    }
    k->last_recv = ev_now(c->loop);
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                   {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};
    nghttp2_submit_settings(k->s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    nghttp2_session_set_local_window_size(k->s, NGHTTP2_FLAG_NONE, 0, 16 << 20);
    k->state = C_READY;
    imp_metrics_inc("impulse_http2_connections_opened_total", NULL, 1);
    ev_timer_stop(c->loop, &k->tm);
    k->last_used = ev_now(c->loop);
    ev_timer_set(&k->tm, IDLE_CLOSE_S, 0.);
    ev_timer_start(c->loop, &k->tm);
    conn_set_io(k, EV_READ);
    mark_dirty(k);
    origin_dispatch(k->o);
}

static void conn_handshake(struct conn *k)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(k->ssl);
    if (rc == 1) {
        conn_ready(k);
        return;
    }
    int e = SSL_get_error(k->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) {
        conn_set_io(k, EV_READ);
    } else if (e == SSL_ERROR_WANT_WRITE) {
        conn_set_io(k, EV_WRITE);
    } else {
        char msg[240];
        ssl_error(k, rc, "TLS handshake", msg, sizeof(msg));
        conn_close(k, IMP_EIO, msg);
    }
}

/* Bytes from the server (after TLS) into the session: frames parsed, the
 * callbacks above run. Returns -1 when a protocol error closed k (freed),
 * else 0; what the session wants to send is left for conn_flush. */
static int conn_recv(struct conn *k, const uint8_t *data, size_t len)
{
    ssize_t rv = nghttp2_session_mem_recv(k->s, data, len);
    if (rv < 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "HTTP/2 with %s:%d: %s", k->o->host, k->o->port,
                 nghttp2_strerror((int)rv));
        conn_close(k, IMP_EPROTO, msg);
        return -1;
    }
    return 0;
}

static void conn_read(struct conn *k)
{
    unsigned char buf[32768];
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int n = SSL_read(k->ssl, buf, sizeof(buf));
        if (n > 0) {
            if (conn_recv(k, buf, (size_t)n) != 0) return;
            continue;
        }
        int e = SSL_get_error(k->ssl, n);
        if (e == SSL_ERROR_WANT_READ) break;
        if (e == SSL_ERROR_WANT_WRITE) { /* TLS needs to write first: come back when writable */
            conn_set_io(k, EV_READ | EV_WRITE);
            return;
        }
        char msg[240];
        ssl_error(k, n, "TLS read", msg, sizeof(msg));
        conn_close(k, IMP_EIO, msg);
        return;
    }
    conn_flush(k);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct conn *k = w->data;
    if (k->state == C_CONNECT) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            conn_connect_failed(k, err);
            return;
        }
        k->state = C_HANDSHAKE;
        conn_handshake(k);
        return;
    }
    if (k->state == C_HANDSHAKE) {
        conn_handshake(k);
        return;
    }
    if (revents & EV_READ)
        conn_read(k);
    else if (revents & EV_WRITE)
        conn_flush(k);
}

static void on_conn_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *k = w->data;
    if (k->state != C_READY) {
        char msg[160];
        snprintf(msg, sizeof(msg), "connect to %s:%d: timed out", k->o->host, k->o->port);
        conn_close(k, IMP_ETIMEDOUT, msg);
    } else {
        ev_tstamp idle = ev_now(loop) - k->last_used;
        if (k->nstreams == 0 && idle >= IDLE_CLOSE_S) {
            conn_close(k, 0, NULL);
            return;
        }
        ev_timer_set(w, k->nstreams ? IDLE_CLOSE_S : IDLE_CLOSE_S - idle, 0.);
        ev_timer_start(loop, w);
    }
}

/* The TCP connect to the current address failed (err: an errno): the next
 * address of the name, or the end of this connection. */
static void conn_connect_failed(struct conn *k, int err)
{
    if (k->ai + 1 < k->naddr) {
        SSL_free(k->ssl);
        k->ssl = NULL;
        ev_io_stop(k->c->loop, &k->io);
        close(k->fd);
        k->fd = -1;
        k->ai++;
        conn_connect(k);
        return;
    }
    char msg[200];
    snprintf(msg, sizeof(msg), "connect to %s:%d: %s", k->o->host, k->o->port, strerror(err));
    conn_close(k, IMP_EIO, msg);
}

static void conn_connect(struct conn *k)
{
    struct origin *o = k->o;
    k->fd = socket(k->addr[k->ai].ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (k->fd < 0) {
        conn_close(k, IMP_EIO, "cannot create a socket");
        return;
    }
    int one = 1;
    setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(k->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    struct ctx *x = ctx_of(k->c, o->ca_file);
    if (x->error) { /* not kept: the next connection tries the file again */
        char msg[600];
        snprintf(msg, sizeof(msg), "%s", x->error);
        for (struct ctx **pp = &k->c->ctxs; *pp; pp = &(*pp)->next)
            if (*pp == x) {
                *pp = x->next;
                break;
            }
        if (x->ctx) SSL_CTX_free(x->ctx);
        free(x->ca_file);
        free(x->error);
        free(x);
        conn_close(k, IMP_EIO, msg);
        return;
    }
    k->ssl = SSL_new(x->ctx);
    if (!k->ssl) {
        conn_close(k, IMP_ENOMEM, "TLS: cannot create a connection");
        return;
    }
    SSL_set_fd(k->ssl, k->fd);
    SSL_set_connect_state(k->ssl);
    if (o->is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(k->ssl), o->host);
    } else {
        SSL_set_tlsext_host_name(k->ssl, o->host);
        SSL_set1_host(k->ssl, o->host);
    }
    k->state = C_CONNECT;
    if (connect(k->fd, (struct sockaddr *)&k->addr[k->ai], k->addr_len[k->ai]) == 0) {
        k->state = C_HANDSHAKE;
        conn_handshake(k);
        return;
    }
    if (errno != EINPROGRESS) {
        conn_connect_failed(k, errno);
        return;
    }
    conn_set_io(k, EV_WRITE);
}

/* A new connection of o, in its list, with its watchers set up (not
 * started) and no socket yet. */
static struct conn *conn_add(struct origin *o)
{
    struct conn *k = imp_xcalloc(1, sizeof(*k));
    k->c = o->c;
    k->o = o;
    k->fd = -1;
    k->next = o->conns;
    o->conns = k;
    o->nconns++;
    ev_init(&k->io, on_io);
    k->io.data = k;
    ev_init(&k->tm, on_conn_timer);
    k->tm.data = k;
    return k;
}

static void conn_open(struct origin *o)
{
    struct imp_h2 *c = o->c;
    struct conn *k = conn_add(o);
    ev_timer_set(&k->tm, (o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 5000) / 1000.0, 0.);
    ev_timer_start(c->loop, &k->tm);
    k->state = C_RESOLVE;
    if (o->is_ip) {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&k->addr[0];
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&k->addr[0];
        k->naddr = 1;
        if (inet_pton(AF_INET, o->host, &a4->sin_addr) == 1) {
            a4->sin_family = AF_INET;
            a4->sin_port = htons((uint16_t)o->port);
            k->addr_len[0] = sizeof(*a4);
        } else {
            inet_pton(AF_INET6, o->host, &a6->sin6_addr);
            a6->sin6_family = AF_INET6;
            a6->sin6_port = htons((uint16_t)o->port);
            k->addr_len[0] = sizeof(*a6);
        }
        conn_connect(k);
        return;
    }
    struct job *j = imp_xcalloc(1, sizeof(*j));
    j->r = c->res;
    j->conn = k;
    snprintf(j->host, sizeof(j->host), "%s", o->host);
    snprintf(j->port, sizeof(j->port), "%d", o->port);
    pthread_mutex_lock(&c->res->mu);
    c->res->refs++;
    pthread_mutex_unlock(&c->res->mu);
    k->job = j;
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &at, resolve_thread, j);
    pthread_attr_destroy(&at);
    if (rc != 0) {
        k->job = NULL;
        free(j);
        resolver_unref(c->res);
        conn_close(k, IMP_EIO, "cannot start a resolver thread");
    }
}

/* Ends a connection. Requests whose HEADERS never left wait for another
 * connection; the others fail with msg (msg NULL: an idle close or a switch
 * to HTTP/1.1, nothing is left on it). When a connection that was never
 * ready was the origin's last, the requests waiting for one fail too. */
static void conn_close(struct conn *k, int err, const char *msg)
{
    if (k->dead) return;
    struct imp_h2 *c = k->c;
    struct origin *o = k->o;
    int was_ready = k->state == C_READY;
    k->dead = 1;
    if (!c->destroying) {
        const char *why = !was_ready             ? (err ? "setup_failed" : "no_h2")
                          : !err                 ? "idle"
                          : err == IMP_EPROTO    ? "protocol_error"
                          : err == IMP_ETIMEDOUT ? "silent"
                          : err == IMP_ECLOSED   ? "goaway"
                                                 : "io_error";
        char labels[48];
        snprintf(labels, sizeof(labels), "reason=\"%s\"", why);
        imp_metrics_inc("impulse_http2_connections_closed_total", labels, 1);
    }
    ev_io_stop(c->loop, &k->io);
    ev_timer_stop(c->loop, &k->tm);
    if (k->job) k->job->conn = NULL; /* the lookup's answer is dropped */
    while (k->streams.head) {
        struct imp_h2_req *r = k->streams.head;
        rl_unlink(&k->streams, r);
        if (r->zombie)
            req_free(r);
        else if (k->s && !nghttp2_session_find_stream(k->s, r->stream_id))
            pend_push(o, r, 1); /* not sent: the server never saw it */
        else
            req_finish(r, err ? err : IMP_EIO, msg ? msg : "connection closed");
    }
    if (k->s) nghttp2_session_del(k->s); /* no callbacks from here */
    k->s = NULL;
    if (k->ssl) SSL_free(k->ssl);
    if (k->fd >= 0) close(k->fd);
    free(k->out);
    for (struct conn **pp = &o->conns; *pp; pp = &(*pp)->next)
        if (*pp == k) {
            *pp = k->next;
            break;
        }
    o->nconns--;
    if (k->in_dirty)
        for (struct conn **pp = &c->dirty; *pp; pp = &(*pp)->dirty_next)
            if (*pp == k) {
                *pp = k->dirty_next;
                break;
            }
    free(k);
    if (err && !was_ready && !o->no_h2) {
        /* a connection could not be set up: the requests waiting for one
         * fail now (the batch retries them with its backoff) rather than
         * reconnect at once, over and over */
        while (o->pend.head) {
            struct imp_h2_req *r = o->pend.head;
            rl_unlink(&o->pend, r);
            req_finish(r, err, msg);
        }
    }
    if (o->pend.head) { /* e.g. never-sent requests of a closed connection */
        o->kicked = 1;
        kick(c);
    }
}

/* ---- requests -------------------------------------------------------------- */

static int skip_header(const char *name, size_t n)
{
    static const char *const drop[] = {
        "host",    "connection", "keep-alive",    "proxy-connection", "transfer-encoding",
        "upgrade", "te",         "content-length"};
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        if (strlen(drop[i]) == n && strncasecmp(drop[i], name, n) == 0) return 1;
    return 0;
}

static void submit(struct conn *k, struct imp_h2_req *r)
{
    enum { MAXNV = 48 };
    nghttp2_nv nv[MAXNV];
    char names[2048]; /* header names, lowercased */
    size_t used = 0;
    int n = 0;
#define NV(nm, nl, vl, vlen)                                                                       \
    nv[n++] = (nghttp2_nv){(uint8_t *)(nm), (uint8_t *)(vl), (nl), (vlen), NGHTTP2_NV_FLAG_NONE}
    NV(":method", 7, r->method, strlen(r->method));
    NV(":scheme", 7, "https", 5);
    NV(":authority", 10, k->o->authority, strlen(k->o->authority));
    NV(":path", 5, r->path, strlen(r->path));
    char clen[24];
    if (r->body) {
        size_t cl = (size_t)snprintf(clen, sizeof(clen), "%zu", r->body_len);
        NV("content-length", 14, clen, cl);
    }
    for (const char *const *l = r->lines; l && *l && n < MAXNV; l++) {
        const char *colon = strchr(*l, ':');
        if (!colon || colon == *l) continue;
        size_t nl = (size_t)(colon - *l);
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t') v++;
        size_t vl = strlen(v);
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\r' || v[vl - 1] == '\n')) vl--;
        if (vl == 0 || skip_header(*l, nl) || used + nl > sizeof(names))
            continue; /* "Name:" removes */
        char *nm = names + used;
        for (size_t i = 0; i < nl; i++)
            nm[i] = (char)((*l)[i] >= 'A' && (*l)[i] <= 'Z' ? (*l)[i] + 32 : (*l)[i]);
        used += nl;
        NV(nm, nl, v, vl);
    }
#undef NV
    nghttp2_data_provider prd = {.source.ptr = r, .read_callback = body_read_cb};
    r->body_off = 0;
    int32_t id = nghttp2_submit_request(k->s, NULL, nv, (size_t)n, r->body ? &prd : NULL, r);
    if (id < 0) {
        char msg[120];
        snprintf(msg, sizeof(msg), "HTTP/2: %s", nghttp2_strerror(id));
        req_finish(r, IMP_EPROTO, msg);
        return;
    }
    r->stream_id = id;
    r->sent_at = ev_now(k->c->loop);
    k->nstreams++;
    k->last_used = ev_now(k->c->loop);
    stream_link(k, r);
    mark_dirty(k);
}

/* Sends waiting requests on the origin's connections, opening one when
 * every ready connection is full and none is being set up. */
static void origin_dispatch(struct origin *o)
{
    struct imp_h2 *c = o->c;
    while (o->pend.head) {
        struct imp_h2_req *r = o->pend.head;
        if (o->no_h2) {
            rl_unlink(&o->pend, r);
            if (to_curl(r) != 0) req_finish(r, IMP_EIO, "cannot start the request");
            continue;
        }
        struct conn *best = NULL;
        int setting_up = 0;
        for (struct conn *k = o->conns; k; k = k->next) {
            if (k->dead) continue;
            if (k->state != C_READY) {
                setting_up = 1;
                continue;
            }
            if (k->goaway || k->nstreams >= stream_limit(k) ||
                !nghttp2_session_check_request_allowed(k->s))
                continue;
            if (!best || k->nstreams < best->nstreams) best = k;
        }
        if (!best) {
            if (!setting_up && o->nconns < c->max_conns) conn_open(o);
            return;
        }
        rl_unlink(&o->pend, r);
        submit(best, r);
    }
}

static void on_req_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct imp_h2_req *r = w->data;
    char msg[80];
    snprintf(msg, sizeof(msg), "timed out after %d ms", r->timeout_ms);
    if (r->where == R_PENDING) {
        rl_unlink(&r->o->pend, r);
        req_finish(r, IMP_ETIMEDOUT, msg);
    } else if (r->where == R_STREAM && !r->zombie) {
        struct conn *k = r->conn;
        if (k->last_recv <= r->sent_at) {
            /* no answer to anything since it was sent: the connection is dead */
            char m2[160];
            snprintf(m2, sizeof(m2), "connection to %s:%d silent for %d ms", k->o->host, k->o->port,
                     r->timeout_ms);
            conn_close(k, IMP_ETIMEDOUT, m2);
            return; /* r is answered (or resent if never sent) with the rest */
        }
        /* answer now; the request object stays until nghttp2 closes the stream */
        nghttp2_submit_rst_stream(k->s, NGHTTP2_FLAG_NONE, r->stream_id, NGHTTP2_CANCEL);
        mark_dirty(k);
        r->zombie = 1;
        r->on_done(r->arg, IMP_ETIMEDOUT, 0, "", 0, msg);
    }
}

static void req_free(struct imp_h2_req *r)
{
    ev_timer_stop(r->c->loop, &r->timer);
    imp_buf_dispose(&r->resp);
    free(r);
}

/* https://host[:port][/path]: host (brackets dropped), port, path. */
static int parse_url(const char *url, char *host, size_t hlen, int *port, const char **path)
{
    if (strncasecmp(url, "https://", 8) != 0) return -1;
    const char *p = url + 8, *end;
    if (*p == '[') {
        end = strchr(p, ']');
        if (!end) return -1;
        p++;
    } else {
        end = p + strcspn(p, ":/?#");
    }
    size_t n = (size_t)(end - p);
    if (n == 0 || n >= hlen || memchr(p, '@', n)) return -1;
    memcpy(host, p, n);
    host[n] = '\0';
    if (*end == ']') end++;
    *port = 443;
    if (*end == ':') {
        char *e;
        long v = strtol(end + 1, &e, 10);
        if (v <= 0 || v > 65535) return -1;
        *port = (int)v;
        end = e;
    }
    if (*end != '\0' && *end != '/') return -1; /* "?q" without a path: libcurl */
    if (strchr(end, '#')) return -1;            /* a fragment: libcurl drops it */
    *path = end;
    return 0;
}

static struct origin *origin_of(struct imp_h2 *c, const char *host, int port, const char *ca)
{
    for (struct origin *o = c->origins; o; o = o->next)
        if (o->port == port && strcmp(o->host, host) == 0 && strcmp(o->ca_file, ca) == 0) return o;
    struct origin *o = imp_xcalloc(1, sizeof(*o));
    o->c = c;
    o->host = imp_xstrdup(host);
    o->port = port;
    o->ca_file = imp_xstrdup(ca);
    struct in6_addr tmp;
    o->is_ip = inet_pton(AF_INET, host, &tmp) == 1 || inet_pton(AF_INET6, host, &tmp) == 1;
    char auth[300];
    int v6 = strchr(host, ':') != NULL;
    if (port == 443)
        snprintf(auth, sizeof(auth), v6 ? "[%s]" : "%s", host);
    else
        snprintf(auth, sizeof(auth), v6 ? "[%s]:%d" : "%s:%d", host, port);
    o->authority = imp_xstrdup(auth);
    o->next = c->origins;
    c->origins = o;
    return o;
}

struct imp_h2_req *imp_h2_request(struct imp_h2 *c, const struct imp_http_opts *o)
{
    char host[256];
    int port;
    const char *path;
    int h2 = parse_url(o->url, host, sizeof(host), &port, &path) == 0;
    struct imp_h2_req *r = imp_xcalloc(1, sizeof(*r));
    r->c = c;
    r->url = o->url;
    r->method = o->method ? o->method : "GET";
    r->ca_file = o->ca_file && o->ca_file[0] ? o->ca_file : NULL;
    r->lines = o->headers;
    r->body = o->body;
    r->body_len = o->body ? o->body_len : 0;
    r->timeout_ms = o->timeout_ms;
    r->connect_timeout_ms = o->connect_timeout_ms;
    r->on_header = o->on_header;
    r->on_done = o->on_done;
    r->arg = o->arg;
    imp_buf_init(&r->resp);
    ev_init(&r->timer, on_req_timer);
    r->timer.data = r;
    if (!h2) { /* http://, or a URL this parser does not take: libcurl */
        if (to_curl(r) != 0) {
            req_free(r);
            return NULL;
        }
        return r;
    }
    r->path = path[0] ? path : "/"; /* inside url */
    r->o = origin_of(c, host, port, r->ca_file ? r->ca_file : "");
    if (o->connect_timeout_ms) r->o->connect_timeout_ms = o->connect_timeout_ms;
    if (r->timeout_ms > 0) {
        ev_timer_set(&r->timer, r->timeout_ms / 1000.0, 0.);
        ev_timer_start(c->loop, &r->timer);
    }
    pend_push(r->o, r, 0);
    origin_dispatch(r->o);
    return r;
}

void imp_h2_cancel(struct imp_h2_req *r)
{
    if (!r) return;
    switch (r->where) {
    case R_PENDING: rl_unlink(&r->o->pend, r); break;
    case R_DONE: rl_unlink(&r->c->done, r); break;
    case R_CURL:
        imp_http_cancel(r->curl);
        rl_unlink(&r->c->curls, r);
        break;
    case R_STREAM:
        if (!r->zombie) {
            struct conn *k = r->conn;
            nghttp2_submit_rst_stream(k->s, NGHTTP2_FLAG_NONE, r->stream_id, NGHTTP2_CANCEL);
            mark_dirty(k);
            r->zombie = 1;
            ev_timer_stop(r->c->loop, &r->timer);
        }
        return; /* freed when the stream closes */
    }
    req_free(r);
}

/* Before the loop blocks: answers to their callers, then frames to the wire. */
static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    struct imp_h2 *c = w->data;
    for (;;) {
        for (struct origin *o = c->origins; o; o = o->next)
            if (o->kicked) {
                o->kicked = 0;
                origin_dispatch(o);
            }
        if (!c->done.head && !c->dirty) break;
        while (c->done.head) {
            struct imp_h2_req *r = c->done.head;
            rl_unlink(&c->done, r);
            r->on_done(r->arg, r->err, r->err ? 0 : r->status, r->resp.data ? r->resp.data : "",
                       r->resp.len, r->errmsg);
            req_free(r);
        }
        while (c->dirty) {
            struct conn *k = c->dirty;
            c->dirty = k->dirty_next;
            k->in_dirty = 0;
            conn_flush(k);
        }
    }
    ev_prepare_stop(loop, w);
}

struct imp_h2 *imp_h2_create(struct ev_loop *loop, struct imp_http *fallback, int max_conns)
{
    struct imp_h2 *c = imp_xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->fallback = fallback;
    c->max_conns = max_conns > 0 ? max_conns : 4;
    ev_prepare_init(&c->prep, on_prepare);
    c->prep.data = c;
    ev_async_init(&c->async, on_async);
    c->async.data = c;
    ev_async_start(loop, &c->async);
    ev_unref(loop); /* the async watcher alone does not keep the loop running */
    c->res = imp_xcalloc(1, sizeof(*c->res));
    pthread_mutex_init(&c->res->mu, NULL);
    c->res->refs = 1;
    c->res->c = c;
    nghttp2_session_callbacks_new(&c->cbs);
    nghttp2_session_callbacks_set_on_header_callback(c->cbs, on_header_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c->cbs, on_data_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(c->cbs, on_close_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(c->cbs, on_frame_cb);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(c->cbs, on_not_send_cb);
    return c;
}

void imp_h2_destroy(struct imp_h2 *c)
{
    if (!c) return;
    c->destroying = 1;
    while (c->origins) {
        struct origin *o = c->origins;
        c->origins = o->next;
        /* requests are dropped without callbacks */
        while (o->pend.head) {
            struct imp_h2_req *r = o->pend.head;
            rl_unlink(&o->pend, r);
            req_free(r);
        }
        while (o->conns) {
            struct conn *k = o->conns;
            while (k->streams.head) {
                struct imp_h2_req *r = k->streams.head;
                rl_unlink(&k->streams, r);
                req_free(r);
            }
            conn_close(k, 0, NULL);
        }
        free(o->host);
        free(o->authority);
        free(o->ca_file);
        free(o);
    }
    while (c->done.head) {
        struct imp_h2_req *r = c->done.head;
        rl_unlink(&c->done, r);
        req_free(r);
    }
    while (c->curls.head) {
        struct imp_h2_req *r = c->curls.head;
        imp_http_cancel(r->curl);
        rl_unlink(&r->c->curls, r);
        req_free(r);
    }
    ev_prepare_stop(c->loop, &c->prep);
    ev_ref(c->loop);
    ev_async_stop(c->loop, &c->async);
    pthread_mutex_lock(&c->res->mu);
    c->res->c = NULL;
    pthread_mutex_unlock(&c->res->mu);
    resolver_unref(c->res);
    while (c->ctxs) {
        struct ctx *x = c->ctxs;
        c->ctxs = x->next;
        if (x->ctx) SSL_CTX_free(x->ctx);
        free(x->ca_file);
        free(x->error);
        free(x);
    }
    nghttp2_session_callbacks_del(c->cbs);
    free(c);
}

/*
 * libcurl multi-socket on libev. curl tells us which sockets to watch
 * (socket callback) and when to time out (timer callback); we call
 * curl_multi_socket_action from ev watchers and collect finished transfers.
 * A socket watcher is stopped on CURL_POLL_REMOVE before curl closes the fd,
 * so a reused fd number never fires a stale watcher. curl is never called
 * re-entrantly: a zero timeout is deferred to the loop.
 *
 * One client per loop: the watcher's etcd client, a worker's core.http and
 * the providers' HTTP/1.1 fallback; never blocks.
 */
#include "net/http.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/common.h"

struct imp_http {
    struct ev_loop *loop;
    CURLM *multi;
    ev_timer timer;
    struct imp_http_req *reqs; /* live requests */
};

struct imp_http_req {
    struct imp_http_req *next, *prev;
    struct imp_http *h;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    struct imp_buf resp;
    imp_http_chunk_cb on_chunk;
    imp_http_header_cb on_header;
    imp_http_done_cb on_done;
    void *arg;
    int aborted_by_chunk;
    char errbuf[CURL_ERROR_SIZE];
};

struct sock {
    ev_io io;
    struct imp_http *h;
    curl_socket_t fd;
};

static void check_done(struct imp_http *h);

static void req_unlink_free(struct imp_http_req *r)
{
    struct imp_http *h = r->h;
    if (r->prev)
        r->prev->next = r->next;
    else
        h->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    curl_multi_remove_handle(h->multi, r->easy);
    curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->body);
    imp_buf_dispose(&r->resp);
    free(r);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct sock *s = (struct sock *)w;
    struct imp_http *h = s->h;
    int flags = 0, running;
    if (revents & EV_READ) flags |= CURL_CSELECT_IN;
    if (revents & EV_WRITE) flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(h->multi, s->fd, flags, &running);
    check_done(h);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct imp_http *h = w->data;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(h);
}

static int sock_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)e;
    struct imp_http *h = userp;
    struct sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            ev_io_stop(h->loop, &s->io);
            curl_multi_assign(h->multi, fd, NULL);
            free(s);
        }
        return 0;
    }
    int events = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    if (!s) {
        s = imp_xcalloc(1, sizeof(*s));
        s->h = h;
        s->fd = fd;
        curl_multi_assign(h->multi, fd, s);
    } else {
        ev_io_stop(h->loop, &s->io);
    }
    ev_io_init(&s->io, on_io, fd, events);
    ev_io_start(h->loop, &s->io);
    return 0;
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    struct imp_http *h = userp;
    ev_timer_stop(h->loop, &h->timer);
    if (timeout_ms >= 0) {
        ev_timer_set(&h->timer, (double)timeout_ms / 1000.0, 0.0);
        ev_timer_start(h->loop, &h->timer);
    }
    return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct imp_http_req *r = userdata;
    size_t n = size * nmemb;
    if (r->on_chunk) {
        if (r->on_chunk(r->arg, ptr, n) != 0) {
            r->aborted_by_chunk = 1;
            return 0;
        }
        return n;
    }
    imp_buf_append(&r->resp, ptr, n);
    return n;
}

static size_t header_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct imp_http_req *r = userdata;
    r->on_header(r->arg, ptr, size * nmemb);
    return size * nmemb;
}

static void check_done(struct imp_http *h)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(h->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        struct imp_http_req *r = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        CURLcode rc = m->data.result;
        long status = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        int err = 0;
        const char *msg = "";
        if (rc != CURLE_OK) {
            err = r->aborted_by_chunk              ? IMP_ECLOSED
                  : rc == CURLE_OPERATION_TIMEDOUT ? IMP_ETIMEDOUT
                                                   : IMP_EIO;
            msg = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
        }
        r->on_done(r->arg, err, status, r->resp.data ? r->resp.data : "", r->resp.len, msg);
        req_unlink_free(r);
    }
}

struct imp_http *imp_http_create(struct ev_loop *loop)
{
    struct imp_http *h = imp_xcalloc(1, sizeof(*h));
    h->loop = loop;
    h->multi = curl_multi_init();
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    ev_timer_init(&h->timer, on_timer, 0., 0.);
    h->timer.data = h;
    return h;
}

void imp_http_set_max_host_connections(struct imp_http *h, long n)
{
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, n);
}

void imp_http_destroy(struct imp_http *h)
{
    if (!h) return;
    while (h->reqs) req_unlink_free(h->reqs);
    ev_timer_stop(h->loop, &h->timer);
    curl_multi_cleanup(h->multi);
    free(h);
}

struct imp_http_req *imp_http_request(struct imp_http *h, const struct imp_http_opts *o)
{
    struct imp_http_req *r = imp_xcalloc(1, sizeof(*r));
    r->h = h;
    r->on_chunk = o->on_chunk;
    r->on_header = o->on_header;
    r->on_done = o->on_done;
    r->arg = o->arg;
    imp_buf_init(&r->resp);
    r->easy = curl_easy_init();
    if (!r->easy) {
        free(r);
        return NULL;
    }
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, o->url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(o->connect_timeout_ms ? o->connect_timeout_ms : 3000));
    if (o->timeout_ms) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)o->timeout_ms);
    if (o->on_header) {
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    }
    if (o->ca_file && o->ca_file[0]) curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file);
    if (o->pipewait) curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    if (o->method && strcmp(o->method, "GET") != 0)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method);
    if (o->body) {
        r->body = imp_xmalloc(o->body_len + 1);
        memcpy(r->body, o->body, o->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)o->body_len);
    }
    for (const char *const *hd = o->headers; hd && *hd; hd++)
        r->headers = curl_slist_append(r->headers, *hd);
    /* curl adds "Expect: 100-continue" to larger POSTs; etcd does not need it */
    r->headers = curl_slist_append(r->headers, "Expect:");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);

    r->next = h->reqs;
    if (h->reqs) h->reqs->prev = r;
    h->reqs = r;
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        r->on_done = NULL;
        req_unlink_free(r);
        return NULL;
    }
    return r;
}

void imp_http_cancel(struct imp_http_req *r)
{
    if (r) req_unlink_free(r);
}

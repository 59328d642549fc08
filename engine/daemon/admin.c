/*
 * Each connection reads until the end of the request head, answers, and
 * closes. Request bodies are not read (no endpoint needs one yet).
 *
 * The status page (GET / and /status, engine/daemon/status.html compiled
 * in) is static: its script reads /healthz and /metrics like any client.
 * A browser cannot send a Bearer header when it opens a URL, so the page
 * alone also takes the token as ?token=<token>; its script then sends the
 * header. Without it the page answers 401 with a form asking for it.
 *
 * Runs on the main thread's loop (main.c creates it); reads the engine's
 * status without locks and asks the watcher for reloads.
 */
#include "daemon/admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/common.h"
#include "base/config.h"
#include "base/metrics.h"
#include "daemon/engine.h"
#include "daemon/watcher.h"
#include "status_html.h" /* generated: engine/tools/embed.cmake */

#define MAX_REQ 8192

struct imp_admin {
    struct ev_loop *loop;
    struct imp_engine *e;
    int fd;
    int port;
    enum imp_admin_kind kind;
    char *token; /* "" = none */
    ev_io accept_io;
};

struct conn {
    ev_io io;
    ev_timer timeout;
    struct imp_admin *a;
    int fd;
    size_t len;
    char req[MAX_REQ + 1];
    struct imp_buf out;
    size_t sent;
};

static void conn_close(struct conn *c)
{
    ev_io_stop(c->a->loop, &c->io);
    ev_timer_stop(c->a->loop, &c->timeout);
    close(c->fd);
    imp_buf_dispose(&c->out);
    free(c);
}

static void respond(struct conn *c, int status, const char *ctype, const char *body, size_t len)
{
    const char *reason = status == 200   ? "OK"
                         : status == 202 ? "Accepted"
                         : status == 401 ? "Unauthorized"
                         : status == 404 ? "Not Found"
                         : status == 405 ? "Method Not Allowed"
                         : status == 503 ? "Service Unavailable"
                                         : "Bad Request";
    imp_buf_printf(&c->out,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                   "%s%sConnection: close\r\n\r\n",
                   status, reason, ctype, len,
                   status == 401 ? "WWW-Authenticate: Bearer realm=\"impulse\"\r\n" : "",
                   strncmp(ctype, "text/html", 9) == 0
                       ? "Cache-Control: no-store\r\nReferrer-Policy: no-referrer\r\n"
                       : "");
    imp_buf_append(&c->out, body, len);
}

/* 1 when v[0..vl) is the token, compared in constant time. */
static int same_secret(const char *v, size_t vl, const char *token)
{
    size_t tl = strlen(token);
    unsigned diff = vl != tl;
    for (size_t i = 0; i < tl; i++)
        diff |= (unsigned char)token[i] ^ (unsigned char)v[i < vl ? i : 0];
    return diff == 0;
}

/* 1 when the request head carries "Authorization: Bearer <token>" (the
 * header name in any case). */
static int authorized(const char *req, const char *token)
{
    for (const char *l = strchr(req, '\n'); l; l = strchr(l, '\n')) {
        l++;
        if (strncasecmp(l, "authorization:", 14) != 0) continue;
        const char *v = l + 14;
        while (*v == ' ' || *v == '\t') v++;
        if (strncasecmp(v, "bearer ", 7) != 0) return 0;
        v += 7;
        return same_secret(v, strcspn(v, "\r\n"), token);
    }
    return 0;
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* 1 when the query string (after '?', NULL for none) has token=<token>,
 * percent-encoded or not ('+' is a space, as a form sends it). */
static int query_authorized(const char *query, const char *token)
{
    char v[256];
    for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, "token=", 6) != 0) continue;
        size_t n = 0;
        for (p += 6; *p && *p != '&' && n < sizeof(v); p++) {
            int hi, lo;
            if (*p == '%' && (hi = hexval(p[1])) >= 0 && (lo = hexval(p[2])) >= 0) {
                v[n++] = (char)(hi << 4 | lo);
                p += 2;
            } else {
                v[n++] = *p == '+' ? ' ' : *p;
            }
        }
        return *p && *p != '&' ? 0 : same_secret(v, n, token); /* longer than v: not it */
    }
    return 0;
}

/* The page's answer to a browser without the token: a form that opens the
 * page again with ?token=. */
static const char token_form[] =
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>impulse</title>"
    "</head><body style=\"font:14px sans-serif;margin:40px\"><h1>impulse</h1>"
    "<p>This admin listener needs impulse.adminToken.</p>"
    "<form method=\"get\" action=\"/\"><label>Token <input type=\"password\" name=\"token\" "
    "autofocus></label> <button>Open</button></form></body></html>\n";

static void route(struct conn *c)
{
    char method[16], path[256];
    struct imp_buf body;
    imp_buf_init(&body);
    if (sscanf(c->req, "%15s %255s", method, path) != 2) {
        respond(c, 400, "text/plain", "bad request\n", 12);
        return;
    }
    char *q = strchr(path, '?');
    if (q) *q++ = '\0';
    int page =
        c->a->kind == IMP_ADMIN_FULL && (strcmp(path, "/") == 0 || strcmp(path, "/status") == 0);
    if (c->a->token[0] && !authorized(c->req, c->a->token) &&
        !(page && query_authorized(q, c->a->token))) {
        if (page)
            respond(c, 401, "text/html; charset=utf-8", token_form, sizeof(token_form) - 1);
        else
            respond(c, 401, "text/plain", "unauthorized\n", 13);
    } else if (c->a->kind == IMP_ADMIN_METRICS_ONLY && strcmp(path, "/metrics") != 0) {
        respond(c, 404, "text/plain", "not found\n", 10);
    } else if (page) {
        respond(c, 200, "text/html; charset=utf-8", (const char *)imp_status_html,
                imp_status_html_len);
    } else if (strcmp(path, "/healthz") == 0) {
        imp_engine_status_json(c->a->e, &body);
        imp_buf_putc(&body, '\n');
        respond(c, 200, "application/json", body.data, body.len);
    } else if (strcmp(path, "/readyz") == 0) {
        struct imp_buf why;
        imp_buf_init(&why);
        int ready = imp_engine_ready(c->a->e, &why);
        if (ready)
            imp_buf_puts(&body, "ready\n");
        else
            imp_buf_printf(&body, "not ready: %s\n", why.data);
        imp_buf_dispose(&why);
        respond(c, ready ? 200 : 503, "text/plain", body.data, body.len);
    } else if (strcmp(path, "/admin/reload") == 0) {
        if (strcmp(method, "POST") != 0) {
            respond(c, 405, "text/plain", "use POST\n", 9);
        } else {
            imp_watcher_reload(c->a->e->watcher, "POST /admin/reload");
            static const char msg[] =
                "{\"status\":\"reload requested\",\"result\":\"see /healthz\"}\n";
            respond(c, 202, "application/json", msg, sizeof(msg) - 1);
        }
    } else if (strcmp(path, "/metrics") == 0) {
        imp_metrics_render(&body);
        respond(c, 200, "text/plain; version=0.0.4", body.data ? body.data : "", body.len);
    } else {
        respond(c, 404, "text/plain", "not found\n", 10);
    }
    imp_buf_dispose(&body);
}

static void on_conn(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = (struct conn *)w;
    (void)loop;
    if (revents & EV_READ) {
        ssize_t n = read(c->fd, c->req + c->len, MAX_REQ - c->len);
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
            conn_close(c);
            return;
        }
        c->len += (size_t)n;
        c->req[c->len] = '\0';
        if (!strstr(c->req, "\r\n\r\n") && !strstr(c->req, "\n\n")) {
            if (c->len >= MAX_REQ) conn_close(c);
            return;
        }
        route(c);
        ev_io_stop(c->a->loop, &c->io);
        ev_io_set(&c->io, c->fd, EV_WRITE);
        ev_io_start(c->a->loop, &c->io);
        return;
    }
    if (revents & EV_WRITE) {
        ssize_t n = write(c->fd, c->out.data + c->sent, c->out.len - c->sent);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (n <= 0) {
            conn_close(c);
            return;
        }
        c->sent += (size_t)n;
        if (c->sent == c->out.len) conn_close(c);
    }
}

static void on_conn_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    conn_close(t->data);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct imp_admin *a = w->data;
    for (;;) {
        int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        struct conn *c = imp_xcalloc(1, sizeof(*c));
        c->a = a;
        c->fd = fd;
        imp_buf_init(&c->out);
        ev_io_init(&c->io, on_conn, fd, EV_READ);
        ev_timer_init(&c->timeout, on_conn_timeout, 5., 0.);
        c->timeout.data = c;
        ev_io_start(loop, &c->io);
        ev_timer_start(loop, &c->timeout);
    }
}

struct imp_admin *imp_admin_create(struct ev_loop *loop, struct imp_engine *e,
                                   const char *listen_at, enum imp_admin_kind kind,
                                   const char *token, char *err, size_t errlen)
{
    char host[256], port[16];
    int p;
    if (imp_split_hostport(listen_at, host, sizeof(host), &p) != 0) {
        snprintf(err, errlen, "admin listener '%s' is not host:port", listen_at);
        return NULL;
    }
    snprintf(port, sizeof(port), "%d", p);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "admin listener %s: %s", listen_at, gai_strerror(rc));
        return NULL;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        snprintf(err, errlen, "admin listener %s: %s", listen_at, strerror(errno));
        if (fd >= 0) close(fd);
        freeaddrinfo(res);
        return NULL;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    struct imp_admin *a = imp_xcalloc(1, sizeof(*a));
    a->loop = loop;
    a->e = e;
    a->fd = fd;
    a->kind = kind;
    a->token = imp_xstrdup(token ? token : "");
    a->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                       : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    ev_io_init(&a->accept_io, on_accept, fd, EV_READ);
    a->accept_io.data = a;
    ev_io_start(loop, &a->accept_io);
    return a;
}

int imp_admin_port(const struct imp_admin *a) { return a->port; }

void imp_admin_destroy(struct imp_admin *a)
{
    if (!a) return;
    ev_io_stop(a->loop, &a->accept_io);
    close(a->fd);
    free(a->token);
    free(a);
}

/*
 * States: [AUTH] → GRANT → PUT → KEPT ──every TTL/3──► KEEPALIVE → KEPT
 *                    ▲                                     │
 *                    └──── the answer has no TTL (expired) ┘
 * Any failure retries the same step after a backoff (200 ms doubling to
 * 5 s) on the next endpoint. REVOKE ends it.
 *
 * Runs on the main thread's loop (main.c); revoked first on shutdown.
 */
#include "daemon/announce.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/log.h"
#include "base/metrics.h"
#include "net/etcd.h"
#include "net/http.h"

enum step { S_AUTH, S_GRANT, S_PUT, S_KEEPALIVE, S_KEPT, S_REVOKE, S_DONE };

struct imp_announce {
    struct ev_loop *loop;
    const struct imp_config *cfg;
    struct imp_http *http;
    struct imp_http_req *req;
    ev_timer timer; /* retry or next keep-alive */
    int step;
    int backoff_ms;
    size_t endpoint;
    char token[512];
    char lease[32]; /* etcd's int64 lease ID, kept as text */
    char *key;
    char *value;
    int ttl_s; /* the lease; 0: none (a key that stays, as OpenIM's metrics key) */
    int registered;
    void (*revoked)(void *);
    void *revoked_arg;
};

static void run(struct imp_announce *a);
static void revoke_finished(struct imp_announce *a);

static void retry(struct imp_announce *a, const char *why)
{
    imp_warn(NULL, "etcd registration (%s): %s; retrying in %d ms", a->key, why, a->backoff_ms);
    imp_metrics_inc("impulse_etcd_errors_total", NULL, 1);
    a->endpoint = (a->endpoint + 1) % a->cfg->etcd_addrs.n;
    ev_timer_stop(a->loop, &a->timer);
    ev_timer_set(&a->timer, a->backoff_ms / 1000.0, 0.);
    ev_timer_start(a->loop, &a->timer);
    a->backoff_ms = a->backoff_ms * 2 > 5000 ? 5000 : a->backoff_ms * 2;
}

static void on_reply(void *arg, int err, long status, const char *body, size_t len,
                     const char *errmsg);

static void post(struct imp_announce *a, const char *path, const char *body, int timeout_ms)
{
    a->req = imp_etcd_post(a->http, a->cfg->etcd_addrs.v[a->endpoint], a->token, path, body,
                           timeout_ms, on_reply, NULL, a);
    if (a->req) return;
    if (a->step == S_REVOKE)
        revoke_finished(a);
    else
        retry(a, "cannot start an HTTP request");
}

static const char *str_field(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void keepalive_later(struct imp_announce *a)
{
    a->step = S_KEPT;
    a->backoff_ms = 200;
    ev_timer_stop(a->loop, &a->timer);
    ev_timer_set(&a->timer, a->ttl_s / 3.0, 0.);
    ev_timer_start(a->loop, &a->timer);
}

static void revoke_finished(struct imp_announce *a)
{
    a->step = S_DONE;
    a->registered = 0;
    ev_timer_stop(a->loop, &a->timer);
    if (a->revoked) {
        void (*done)(void *) = a->revoked;
        a->revoked = NULL;
        done(a->revoked_arg);
    }
}

static void on_reply(void *arg, int err, long status, const char *body, size_t len,
                     const char *errmsg)
{
    struct imp_announce *a = arg;
    char why[300];
    a->req = NULL;
    cJSON *j = err ? NULL : cJSON_ParseWithLength(body, len);
    if (a->step == S_REVOKE) {
        /* a lease etcd no longer knows is as good as revoked */
        if (err)
            imp_warn(NULL, "etcd registration: revoke failed (%s); %s expires with its lease",
                     errmsg, a->key);
        else
            imp_info(NULL, "etcd registration: %s removed (lease revoked)", a->key);
        cJSON_Delete(j);
        revoke_finished(a);
        return;
    }
    if (a->step == S_AUTH && !err && imp_etcd_auth_not_enabled(status, body, len)) {
        /* credentials configured, auth disabled on the server: as OpenIM's
         * clientv3, register without a token */
        imp_warn(NULL, "etcd registration: authentication is not enabled on the server; "
                       "registering without a token");
        cJSON_Delete(j);
        a->token[0] = '\0';
        a->step = a->ttl_s ? S_GRANT : S_PUT;
        run(a);
        return;
    }
    if (err || status != 200 || !j) {
        snprintf(why, sizeof(why), "%s: %s (HTTP %ld) %.*s",
                 a->step == S_AUTH    ? "authenticate"
                 : a->step == S_GRANT ? "lease grant"
                 : a->step == S_PUT   ? "put"
                                      : "keep-alive",
                 err ? errmsg : "", status, (int)IMP_MIN(len, 200), body ? body : "");
        cJSON_Delete(j);
        if (a->cfg->etcd_username[0])
            a->step = S_AUTH; /* the token may have expired: start over */
        else if (a->step == S_KEEPALIVE)
            a->step = S_KEPT; /* try the keep-alive again */
        retry(a, why);
        return;
    }
    switch (a->step) {
    case S_AUTH: {
        const char *t = str_field(j, "token");
        if (!t || strlen(t) >= sizeof(a->token)) {
            cJSON_Delete(j);
            retry(a, "authenticate: no token in the reply");
            return;
        }
        snprintf(a->token, sizeof(a->token), "%s", t);
        a->step = a->ttl_s ? S_GRANT : S_PUT;
        break;
    }
    case S_GRANT: {
        const char *id = str_field(j, "ID");
        if (!id || strlen(id) >= sizeof(a->lease)) {
            cJSON_Delete(j);
            retry(a, "lease grant: no ID in the reply");
            return;
        }
        snprintf(a->lease, sizeof(a->lease), "%s", id);
        a->step = S_PUT;
        break;
    }
    case S_PUT:
        a->registered = 1;
        cJSON_Delete(j);
        if (!a->ttl_s) {
            imp_info(NULL, "etcd registration: %s = %s (no lease)", a->key, a->value);
            a->step = S_DONE;
            return;
        }
        imp_info(NULL, "etcd registration: %s = %s (lease %s, %d s)", a->key, a->value, a->lease,
                 a->ttl_s);
        keepalive_later(a);
        return;
    case S_KEEPALIVE: {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "result");
        const char *ttl = str_field(r, "TTL");
        if (!ttl || atol(ttl) <= 0) {
            imp_warn(NULL, "etcd registration: lease %s expired; registering %s again", a->lease,
                     a->key);
            a->registered = 0;
            a->step = S_GRANT;
            break;
        }
        cJSON_Delete(j);
        keepalive_later(a);
        return;
    }
    default: break;
    }
    cJSON_Delete(j);
    run(a);
}

/* Sends the request of the current step. */
static void run(struct imp_announce *a)
{
    struct imp_buf b;
    imp_buf_init(&b);
    switch (a->step) {
    case S_AUTH:
        a->token[0] = '\0';
        imp_etcd_auth_body(&b, a->cfg);
        post(a, "/v3/auth/authenticate", b.data, 5000);
        break;
    case S_GRANT:
        imp_buf_printf(&b, "{\"TTL\":%d}", a->ttl_s);
        post(a, "/v3/lease/grant", b.data, 5000);
        break;
    case S_PUT:
        imp_buf_puts(&b, "{\"key\":\"");
        imp_buf_base64(&b, a->key, strlen(a->key));
        imp_buf_puts(&b, "\",\"value\":\"");
        imp_buf_base64(&b, a->value, strlen(a->value));
        if (a->ttl_s)
            imp_buf_printf(&b, "\",\"lease\":\"%s\"}", a->lease);
        else
            imp_buf_puts(&b, "\"}");
        post(a, "/v3/kv/put", b.data, 5000);
        break;
    case S_KEPT:
        a->step = S_KEEPALIVE;
        imp_buf_printf(&b, "{\"ID\":\"%s\"}", a->lease);
        post(a, "/v3/lease/keepalive", b.data, 5000);
        break;
    default: break;
    }
    imp_buf_dispose(&b);
}

static void on_timer(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    struct imp_announce *a = tm->data;
    if (a->step == S_REVOKE) { /* etcd did not answer the revoke in time */
        if (a->req) imp_http_cancel(a->req);
        a->req = NULL;
        imp_warn(NULL, "etcd registration: revoke timed out; %s expires with its lease", a->key);
        revoke_finished(a);
        return;
    }
    run(a);
}

struct imp_announce *imp_announce_put(struct ev_loop *loop, const struct imp_config *cfg,
                                      const char *key, const char *value, int ttl_s)
{
    struct imp_announce *a = imp_xcalloc(1, sizeof(*a));
    a->loop = loop;
    a->cfg = cfg;
    a->http = imp_http_create(loop);
    a->backoff_ms = 200;
    ev_timer_init(&a->timer, on_timer, 0., 0.);
    a->timer.data = a;
    a->key = imp_xstrdup(key);
    a->value = imp_xstrdup(value);
    a->ttl_s = ttl_s;
    a->step = cfg->etcd_username[0] ? S_AUTH : ttl_s ? S_GRANT : S_PUT;
    run(a);
    return a;
}

struct imp_announce *imp_announce_start(struct ev_loop *loop, const struct imp_config *cfg,
                                        const char *addr)
{
    char key[512], value[512];
    snprintf(key, sizeof(key), "%s/%s/%s", cfg->etcd_root, cfg->svc_push, addr);
    /* exactly OpenIM's value (some clients parse it) */
    snprintf(value, sizeof(value), "{\"Op\":0,\"Addr\":\"%s\",\"Metadata\":null}", addr);
    return imp_announce_put(loop, cfg, key, value, cfg->register_ttl_s);
}

void imp_announce_revoke(struct imp_announce *a, void (*done)(void *arg), void *arg)
{
    if (!a || a->step == S_DONE || a->step == S_REVOKE) {
        if (done) done(arg);
        return;
    }
    if (a->req) imp_http_cancel(a->req);
    a->req = NULL;
    ev_timer_stop(a->loop, &a->timer);
    a->revoked = done;
    a->revoked_arg = arg;
    if (!a->lease[0]) { /* nothing granted yet */
        revoke_finished(a);
        return;
    }
    a->step = S_REVOKE;
    char body[64];
    snprintf(body, sizeof(body), "{\"ID\":\"%s\"}", a->lease);
    ev_timer_set(&a->timer, 2.0, 0.);
    ev_timer_start(a->loop, &a->timer);
    post(a, "/v3/lease/revoke", body, 2000);
}

void imp_announce_destroy(struct imp_announce *a)
{
    if (!a) return;
    ev_timer_stop(a->loop, &a->timer);
    imp_http_destroy(a->http); /* cancels a request in flight */
    free(a->key);
    free(a->value);
    free(a);
}

void imp_announce_status_json(const struct imp_announce *a, struct imp_buf *out)
{
    imp_buf_puts(out, "{\"key\":");
    imp_buf_json_cstr(out, a->key);
    imp_buf_puts(out, ",\"lease\":");
    imp_buf_json_cstr(out, a->lease);
    imp_buf_printf(out, ",\"registered\":%s}", a->registered ? "true" : "false");
}

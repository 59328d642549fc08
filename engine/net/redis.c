/*
 * Subscriber lifecycle: CONNECTING --connect cb--> AUTH + SUBSCRIBE sent
 * --every channel confirmed--> SUBSCRIBED --error/EOF--> lost, reconnect.
 * Callbacks from a context we already abandoned are ignored by comparing
 * the context pointer with the live one.
 *
 * The watcher's subscriber (daemon/watcher.c); never blocks its loop.
 */
#include "net/redis.h"

#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/log.h"
#include "base/metrics.h"

struct imp_redis_sub {
    struct ev_loop *loop;
    const struct imp_config *cfg;
    char **channels;
    size_t nchannels;
    struct imp_redis_sub_handler h;

    redisAsyncContext *ac;
    int connected;
    size_t confirmed; /* channels confirmed on this connection */
    int backoff_ms;
    ev_timer retry;
    ev_timer connect_timeout;
};

static void start_connect(struct imp_redis_sub *s);

static void drop(struct imp_redis_sub *s, const char *why)
{
    int was = s->confirmed == s->nchannels && s->connected;
    redisAsyncContext *ac = s->ac;
    s->ac = NULL;
    s->connected = 0;
    s->confirmed = 0;
    ev_timer_stop(s->loop, &s->connect_timeout);
    if (ac) redisAsyncFree(ac); /* its callbacks see ac != s->ac and return */
    imp_warn(NULL, "redis %s: %s; reconnecting in %d ms", s->cfg->redis_addr, why, s->backoff_ms);
    imp_metrics_inc("impulse_redis_errors_total", "role=\"subscriber\"", 1);
    if (was && s->h.lost) s->h.lost(s->h.arg);
    ev_timer_set(&s->retry, s->backoff_ms / 1000.0, 0.);
    ev_timer_start(s->loop, &s->retry);
    s->backoff_ms = s->backoff_ms * 2 > 5000 ? 5000 : s->backoff_ms * 2;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct imp_redis_sub *s = ac->data;
    if (!s || ac != s->ac) return;
    /* hiredis frees ac itself after this callback */
    s->ac = NULL;
    char why[256];
    snprintf(why, sizeof(why), "connection lost (%s)", status == REDIS_OK ? "closed" : ac->errstr);
    drop(s, why);
}

static void on_auth(redisAsyncContext *ac, void *r, void *priv)
{
    (void)priv;
    struct imp_redis_sub *s = ac->data;
    redisReply *reply = r;
    if (!s || ac != s->ac || !reply) return;
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[256];
        snprintf(why, sizeof(why), "AUTH failed: %s", reply->str);
        drop(s, why);
    }
}

static void on_sub(redisAsyncContext *ac, void *r, void *priv)
{
    (void)priv;
    struct imp_redis_sub *s = ac->data;
    redisReply *reply = r;
    if (!s || ac != s->ac || !reply) return;
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[256];
        snprintf(why, sizeof(why), "SUBSCRIBE failed: %s", reply->str);
        drop(s, why);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) return;
    const char *kind = reply->element[0]->str;
    if (!kind) return;
    if (strcmp(kind, "subscribe") == 0) {
        if (++s->confirmed == s->nchannels) {
            s->backoff_ms = 200;
            imp_info(NULL, "redis %s: subscribed to %zu channels", s->cfg->redis_addr,
                     s->nchannels);
            if (s->h.subscribed) s->h.subscribed(s->h.arg);
        }
    } else if (strcmp(kind, "message") == 0 && reply->element[1]->type == REDIS_REPLY_STRING &&
               reply->element[2]->type == REDIS_REPLY_STRING) {
        s->h.message(s->h.arg, reply->element[1]->str, reply->element[2]->str,
                     reply->element[2]->len);
    }
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct imp_redis_sub *s = ac->data;
    if (!s || ac != s->ac) return;
    ev_timer_stop(s->loop, &s->connect_timeout);
    if (status != REDIS_OK) {
        char why[256];
        snprintf(why, sizeof(why), "connect failed: %s", ac->errstr);
        s->ac = NULL; /* hiredis frees a context whose connect failed */
        drop(s, why);
        return;
    }
    s->connected = 1;
    redisEnableKeepAlive(&ac->c);
    if (s->cfg->redis_password[0]) {
        if (s->cfg->redis_username[0])
            redisAsyncCommand(ac, on_auth, NULL, "AUTH %s %s", s->cfg->redis_username,
                              s->cfg->redis_password);
        else
            redisAsyncCommand(ac, on_auth, NULL, "AUTH %s", s->cfg->redis_password);
    }
    for (size_t i = 0; i < s->nchannels; i++)
        redisAsyncCommand(ac, on_sub, NULL, "SUBSCRIBE %s", s->channels[i]);
}

static void on_connect_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    drop(w->data, "connect timed out");
}

static void start_connect(struct imp_redis_sub *s)
{
    char host[256];
    int port;
    imp_split_hostport(s->cfg->redis_addr, host, sizeof(host), &port);
    redisAsyncContext *ac = redisAsyncConnect(host, port);
    if (!ac || ac->err) {
        char why[256];
        snprintf(why, sizeof(why), "connect failed: %s", ac ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        drop(s, why);
        return;
    }
    ac->data = s;
    s->ac = ac;
    s->confirmed = 0;
    redisLibevAttach(s->loop, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    ev_timer_set(&s->connect_timeout, 3.0, 0.);
    ev_timer_start(s->loop, &s->connect_timeout);
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    start_connect(w->data);
}

struct imp_redis_sub *imp_redis_sub_create(struct ev_loop *loop, const struct imp_config *cfg,
                                           const char *const *channels, size_t nchannels,
                                           const struct imp_redis_sub_handler *h)
{
    struct imp_redis_sub *s = imp_xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->cfg = cfg;
    s->h = *h;
    s->nchannels = nchannels;
    s->channels = imp_xcalloc(nchannels, sizeof(char *));
    for (size_t i = 0; i < nchannels; i++) s->channels[i] = imp_xstrdup(channels[i]);
    s->backoff_ms = 200;
    ev_timer_init(&s->retry, on_retry, 0., 0.);
    s->retry.data = s;
    ev_timer_init(&s->connect_timeout, on_connect_timeout, 0., 0.);
    s->connect_timeout.data = s;
    return s;
}

void imp_redis_sub_start(struct imp_redis_sub *s) { start_connect(s); }

void imp_redis_sub_destroy(struct imp_redis_sub *s)
{
    if (!s) return;
    ev_timer_stop(s->loop, &s->retry);
    ev_timer_stop(s->loop, &s->connect_timeout);
    if (s->ac) {
        redisAsyncContext *ac = s->ac;
        s->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    for (size_t i = 0; i < s->nchannels; i++) free(s->channels[i]);
    free(s->channels);
    free(s);
}

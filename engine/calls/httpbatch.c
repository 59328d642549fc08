/*
 * Batches of HTTP requests with per-pool concurrency and retries
 * (httpbatch.h): core.http_batch, called by the providers' transports from
 * a toOfflinePush message's coroutine. Owns the worker's batch sender
 * (h->httpbatch, created on first use, destroyed by the worker), its pools
 * and retry timers; https goes to the HTTP/2 client (net/h2.c), the rest to
 * libcurl (net/http.c). Runs only on the worker's loop; never blocks; the
 * coroutine is resumed once, when the whole batch is final.
 *
 * Rate limits and lanes: a pool's requests wait in one queue per lane
 * (0 direct, 1 groups, 2 bulk: a batch's opts.lane) and the pump serves
 * the highest lane first. A batch that gives opts.rate makes its pool take
 * a token of the process-wide bucket of that pool (base/ratelimit.c) per
 * request sent, retries included, so the provider never sees more than
 * rate a second plus burst from the whole process; a refused head request
 * makes lower lanes wait across every worker. A request with a device
 * (opts.device_max per opts.device_interval_s) that is over its device's
 * limit is held until the next window; a newer one to the same device
 * that is held in its turn supersedes it: the older ends "collapsed", not
 * sent (the providers' collapse keys would replace it on the phone
 * anyway).
 */
#include "calls/httpbatch.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/common.h"
#include "base/config.h"
#include "base/metrics.h"
#include "base/ratelimit.h"
#include "net/h2.h"
#include "net/http.h"
#include "script/task.h"
#include "script/vm.h"

#define MAX_BODY_KEPT     (64 * 1024) /* of a response, handed to Lua */
#define MAX_HEADERS       32
#define RETRY_AFTER_MAX_S 86400L

struct item;

/* Requests of every batch of a worker that share a concurrency limit. */
struct pool {
    struct pool *next;
    char *name;
    int inflight;
    /* ready to be sent, per lane, oldest first */
    struct item *wait_head[IMP_RATELIMIT_LANES], *wait_tail[IMP_RATELIMIT_LANES];
    struct imp_ratelimit *rl; /* the process's bucket, when a batch set a rate */
    ev_timer rate_timer;      /* pump again when a token may be there */
    struct imp_httpbatch *hb;
    struct item *held; /* over their device's limit, until its next window */
};

struct imp_httpbatch {
    struct imp_http *http; /* HTTP/1.1 (what is not h2) */
    struct imp_h2 *h2;
    struct ev_loop *loop;
    struct pool *pools;
    struct batch *batches; /* live ones, to free on destroy */
};

struct batch {
    struct batch *next, *prev;
    struct imp_httpbatch *hb;
    struct imp_task *t;
    struct pool *pool;
    struct item *items;
    int n, remaining;
    int limit; /* concurrency of the pool, as this batch asked */
    int lane;  /* 0 .. IMP_RATELIMIT_LANES-1 */
    int device_max, device_interval_s;
    int timeout_ms, attempts, backoff_ms, max_backoff_ms;
    uint64_t deadline;    /* imp_now_ms: the batch's start + deadline_ms (device holds) */
    uint64_t deadline_ms; /* each request's attempts, from its first send */
    char *ca_file;
    ev_timer fin; /* the last answer is in: resume from the loop */
};

struct item {
    ev_timer retry; /* first: the timer callback finds the item */
    struct batch *b;
    struct item *wait_next;
    struct imp_h2_req *req;
    char *method, *url, *body;
    size_t body_len;
    char *headers[MAX_HEADERS + 1];
    int tries;
    long status;
    long retry_after_s; /* -1: none */
    char *resp;
    size_t resp_len;
    char *error;
    int done;
    uint64_t device;        /* hash of the request's device; 0: none */
    int rl_waiting;         /* counted in its bucket's waiting[lane] */
    int collapsed;          /* superseded (or dropped) by the device limit */
    struct item *held_next; /* in its pool's held list */
    int held;
    int drop_when_due; /* held to the deadline: dropped when its timer fires */
    uint64_t deadline; /* imp_now_ms: first send + deadline_ms */
};

static void pump(struct imp_httpbatch *hb, struct pool *p);

static void on_rate_timer(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    struct pool *p = tm->data;
    pump(p->hb, p);
}

static struct pool *pool_of(struct imp_httpbatch *hb, const char *name)
{
    for (struct pool *p = hb->pools; p; p = p->next)
        if (strcmp(p->name, name) == 0) return p;
    struct pool *p = imp_xcalloc(1, sizeof(*p));
    p->name = imp_xstrdup(name);
    p->hb = hb;
    ev_timer_init(&p->rate_timer, on_rate_timer, 0., 0.);
    p->rate_timer.data = p;
    p->next = hb->pools;
    hb->pools = p;
    return p;
}

static void wait_push(struct pool *p, struct item *it)
{
    int l = it->b->lane;
    it->wait_next = NULL;
    if (p->wait_tail[l])
        p->wait_tail[l]->wait_next = it;
    else
        p->wait_head[l] = it;
    p->wait_tail[l] = it;
}

static void wait_pop(struct pool *p, int l)
{
    struct item *it = p->wait_head[l];
    p->wait_head[l] = it->wait_next;
    if (!p->wait_head[l]) p->wait_tail[l] = NULL;
    if (it->rl_waiting && p->rl) imp_ratelimit_waiting(p->rl, l, -1);
    it->rl_waiting = 0;
}

static void held_unlink(struct pool *p, struct item *it)
{
    for (struct item **pp = &p->held; *pp; pp = &(*pp)->held_next)
        if (*pp == it) {
            *pp = it->held_next;
            break;
        }
    it->held = 0;
}

static void batch_free(struct batch *b)
{
    struct imp_httpbatch *hb = b->hb;
    for (int i = 0; i < b->n; i++) {
        struct item *it = &b->items[i];
        if (it->held) held_unlink(b->pool, it);
        if (it->rl_waiting && b->pool->rl) imp_ratelimit_waiting(b->pool->rl, b->lane, -1);
        ev_timer_stop(hb->loop, &it->retry);
        if (it->req) imp_h2_cancel(it->req);
        free(it->method);
        free(it->url);
        free(it->body);
        for (int k = 0; it->headers[k]; k++) free(it->headers[k]);
        free(it->resp);
        free(it->error);
    }
    ev_timer_stop(hb->loop, &b->fin);
    if (b->prev)
        b->prev->next = b->next;
    else
        hb->batches = b->next;
    if (b->next) b->next->prev = b->prev;
    free(b->items);
    free(b->ca_file);
    free(b);
}

/* Every request has its final answer: the results go to the coroutine. */
static void batch_finish(struct batch *b)
{
    struct imp_task *t = b->t;
    lua_State *co = imp_task_co(t);
    lua_createtable(co, b->n, 0);
    for (int i = 0; i < b->n; i++) {
        struct item *it = &b->items[i];
        lua_createtable(co, 0, 5);
        lua_pushnumber(co, (lua_Number)it->status);
        lua_setfield(co, -2, "status");
        lua_pushlstring(co, it->resp ? it->resp : "", it->resp_len);
        lua_setfield(co, -2, "body");
        if (it->error) {
            lua_pushstring(co, it->error);
            lua_setfield(co, -2, "error");
        }
        lua_pushinteger(co, it->tries);
        lua_setfield(co, -2, "attempts");
        if (it->collapsed) {
            lua_pushboolean(co, 1);
            lua_setfield(co, -2, "collapsed");
        }
        if (it->retry_after_s >= 0) {
            lua_pushnumber(co, (lua_Number)it->retry_after_s);
            lua_setfield(co, -2, "retry_after_s");
        }
        lua_rawseti(co, -2, i + 1);
    }
    lua_pushnil(co);
    batch_free(b);
    imp_task_resume(t, 2);
}

static void on_fin(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    batch_finish(tm->data);
}

/* A request has its final answer; the batch ends (asynchronously, so never
 * inside the call that started it) when it was the last. */
static void item_final(struct item *it)
{
    struct batch *b = it->b;
    it->done = 1;
    if (--b->remaining == 0) {
        ev_timer_set(&b->fin, 0., 0.);
        ev_timer_start(b->hb->loop, &b->fin);
    }
}

static int retryable(int err, long status)
{
    return err != 0 || status == 429 || status == 500 || status == 502 || status == 503 ||
           status == 504;
}

static void collapse(struct item *it, const char *reason, const char *why);

static void on_retry_timer(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    struct item *it = (struct item *)tm;
    if (it->held) {
        held_unlink(it->b->pool, it);
        if (it->drop_when_due) {
            collapse(it, "over_limit",
                     "dropped: over its device's limit until past the batch's deadline");
            return;
        }
    }
    wait_push(it->b->pool, it);
    pump(it->b->hb, it->b->pool);
}

/* An item not sent on purpose: superseded, or past its deadline under its
 * device's limit. */
static void collapse(struct item *it, const char *reason, const char *why)
{
    char labels[160];
    it->collapsed = 1;
    free(it->error);
    it->error = imp_xstrdup(why);
    snprintf(labels, sizeof(labels), "pool=\"%s\",reason=\"%s\"", it->b->pool->name, reason);
    imp_metrics_inc("impulse_provider_collapsed_total", labels, 1);
    item_final(it);
}

/* it is over its device's limit until retry_s (seconds of imp_now_ms): held
 * until then, superseding an older held request to the same device. */
static void hold(struct pool *p, struct item *it, uint64_t retry_s)
{
    for (struct item *o = p->held; o; o = o->held_next) {
        if (o->device != it->device) continue;
        held_unlink(p, o);
        ev_timer_stop(p->hb->loop, &o->retry);
        collapse(o, "superseded", "collapsed: a newer notification to this device superseded it");
        break;
    }
    uint64_t now = imp_now_ms(), at = retry_s * 1000;
    it->drop_when_due = at > it->b->deadline; /* held until the deadline, then dropped */
    if (it->drop_when_due) at = it->b->deadline;
    it->held = 1;
    it->held_next = p->held;
    p->held = it;
    ev_timer_set(&it->retry, at > now ? (double)(at - now) / 1000.0 : 0.001, 0.);
    ev_timer_start(p->hb->loop, &it->retry);
}

static void on_header(void *arg, const char *line, size_t len)
{
    struct item *it = arg;
    static const char name[] = "retry-after:";
    if (len <= sizeof(name) - 1 || strncasecmp(line, name, sizeof(name) - 1) != 0) return;
    char v[32];
    size_t n = IMP_MIN(len - (sizeof(name) - 1), sizeof(v) - 1);
    memcpy(v, line + sizeof(name) - 1, n);
    v[n] = '\0';
    char *end;
    long s = strtol(v, &end, 10);
    while (*end == ' ' || *end == '\r' || *end == '\n') end++;
    /* HTTP-dates: ignored; beyond a day: a day (past any batch's deadline;
     * an unbounded one made the delay in ms overflow its conversion) */
    if (end != v && *end == '\0' && s >= 0) it->retry_after_s = IMP_MIN(s, RETRY_AFTER_MAX_S);
}

static void on_done(void *arg, int err, long status, const char *body, size_t len,
                    const char *errmsg)
{
    struct item *it = arg;
    struct batch *b = it->b;
    struct pool *p = b->pool;
    it->req = NULL;
    p->inflight--;
    it->status = err ? 0 : status;
    free(it->resp);
    it->resp_len = IMP_MIN(len, MAX_BODY_KEPT);
    it->resp = imp_xmalloc(it->resp_len + 1);
    memcpy(it->resp, body, it->resp_len);
    it->resp[it->resp_len] = '\0';
    free(it->error);
    it->error = err ? imp_xstrdup(errmsg && errmsg[0] ? errmsg : "request failed") : NULL;

    if (retryable(err, it->status) && it->tries < b->attempts) {
        /* exponential backoff, ±50% jitter, at least what Retry-After asks */
        double delay = b->backoff_ms;
        for (int i = 1; i < it->tries && delay < b->max_backoff_ms; i++) delay *= 2;
        if (delay > b->max_backoff_ms) delay = b->max_backoff_ms;
        delay *= 0.5 + (double)(random() % 1000) / 1000.0;
        if (it->retry_after_s >= 0 && delay < it->retry_after_s * 1000.0)
            delay = it->retry_after_s * 1000.0;
        if (imp_now_ms() + (uint64_t)delay < it->deadline) {
            char labels[160];
            snprintf(labels, sizeof(labels), "pool=\"%s\",status=\"%ld\"", p->name, it->status);
            imp_metrics_inc("impulse_provider_retries_total", labels, 1);
            ev_timer_set(&it->retry, delay / 1000.0, 0.);
            ev_timer_start(b->hb->loop, &it->retry);
            pump(b->hb, p);
            return;
        }
    }
    item_final(it);
    pump(b->hb, p);
}

static void send_item(struct imp_httpbatch *hb, struct item *it)
{
    struct batch *b = it->b;
    uint64_t now = imp_now_ms();
    if (!it->tries) it->deadline = now + b->deadline_ms; /* time in the queue does not count */
    int timeout = b->timeout_ms;
    if (now + (uint64_t)timeout > it->deadline)
        timeout = it->deadline > now ? (int)(it->deadline - now) : 1;
    it->tries++;
    it->retry_after_s = -1;
    struct imp_http_opts o = {.method = it->method,
                              .url = it->url,
                              .headers = (const char *const *)it->headers,
                              .body = it->body,
                              .body_len = it->body_len,
                              .timeout_ms = timeout,
                              .connect_timeout_ms = IMP_MIN(timeout, 5000),
                              .on_header = on_header,
                              .ca_file = b->ca_file,
                              .pipewait = 1,
                              .on_done = on_done,
                              .arg = it};
    b->pool->inflight++;
    it->req = imp_h2_request(hb->h2, &o);
    if (!it->req) { /* curl refused it: final */
        b->pool->inflight--;
        it->error = imp_xstrdup("cannot start the request");
        item_final(it);
    }
}

/* Starts waiting requests, highest lane first, while the pool has room
 * and its bucket a token. */
static void pump(struct imp_httpbatch *hb, struct pool *p)
{
    uint64_t now_us = imp_now_ns() / 1000;
    for (int l = 0; l < IMP_RATELIMIT_LANES; l++) {
        while (p->wait_head[l]) {
            struct item *it = p->wait_head[l];
            if (p->inflight >= it->b->limit) return;
            uint64_t retry_us;
            if (p->rl && !imp_ratelimit_take(p->rl, l, now_us, &retry_us)) {
                if (!it->rl_waiting) {
                    char labels[160];
                    it->rl_waiting = 1;
                    imp_ratelimit_waiting(p->rl, l, 1);
                    snprintf(labels, sizeof(labels), "pool=\"%s\"", p->name);
                    imp_metrics_inc("impulse_provider_rate_limited_total", labels, 1);
                }
                if (!ev_is_active(&p->rate_timer)) {
                    ev_timer_set(&p->rate_timer, (double)(retry_us - now_us) / 1e6, 0.);
                    ev_timer_start(hb->loop, &p->rate_timer);
                }
                return; /* lower lanes wait behind it */
            }
            wait_pop(p, l);
            uint64_t retry_s;
            if (it->device && it->b->device_max > 0 &&
                !imp_ratelimit_device(it->device, it->b->device_max, it->b->device_interval_s,
                                      imp_now_ms() / 1000, &retry_s)) {
                hold(p, it, retry_s);
                continue;
            }
            send_item(hb, it);
        }
    }
}

static int opt_int(lua_State *L, int idx, const char *name, int def, int min, int max)
{
    lua_getfield(L, idx, name);
    int v = lua_isnumber(L, -1) ? (int)lua_tonumber(L, -1) : def;
    lua_pop(L, 1);
    return v < min ? min : v > max ? max : v;
}

static struct imp_httpbatch *batcher(struct imp_host *host)
{
    struct imp_httpbatch **pp = &host->httpbatch;
    if (!*pp) {
        struct imp_httpbatch *hb = imp_xcalloc(1, sizeof(*hb));
        hb->loop = host->loop;
        hb->http = imp_http_create(hb->loop);
        imp_http_set_max_host_connections(hb->http, 4);
        hb->h2 = imp_h2_create(hb->loop, hb->http, 4);
        *pp = hb;
    }
    return *pp;
}

int imp_lua_http_batch(lua_State *L)
{
    struct imp_task *t = imp_task_current(L);
    if (!t) return luaL_error(L, "http_batch called outside a message coroutine");
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!lua_istable(L, 2)) lua_newtable(L);
    int n = (int)lua_objlen(L, 1);
    if (n == 0) { /* nothing to send */
        lua_pushboolean(L, 0);
        lua_newtable(L);
        return 2;
    }
    if (t->host->cfg->shadow) {
        /* the offline leg builds and counts in shadow mode, never sends:
         * a request that gets here fails, unsent */
        lua_pushboolean(L, 0);
        lua_createtable(L, n, 0);
        for (int i = 1; i <= n; i++) {
            lua_createtable(L, 0, 3);
            lua_pushinteger(L, 0);
            lua_setfield(L, -2, "status");
            lua_pushliteral(L, "");
            lua_setfield(L, -2, "body");
            lua_pushliteral(L, "not sent in shadow mode");
            lua_setfield(L, -2, "error");
            lua_rawseti(L, -2, i);
        }
        imp_metrics_inc("impulse_shadow_skipped_total", "call=\"http_batch\"", n);
        return 2;
    }
    struct imp_httpbatch *hb = batcher(t->host);
    lua_getfield(L, 2, "pool");
    const char *pool = luaL_optstring(L, -1, "default");
    lua_getfield(L, 2, "ca_file");
    const char *ca = lua_tostring(L, -1);

    struct batch *b = imp_xcalloc(1, sizeof(*b));
    b->hb = hb;
    b->t = t;
    b->pool = pool_of(hb, pool);
    b->limit = opt_int(L, 2, "concurrency", 64, 1, 10000);
    b->timeout_ms = opt_int(L, 2, "timeout_ms", 10000, 1, 600000);
    b->attempts = opt_int(L, 2, "attempts", 4, 1, 100);
    b->backoff_ms = opt_int(L, 2, "backoff_ms", 500, 1, 600000);
    b->max_backoff_ms = opt_int(L, 2, "max_backoff_ms", 30000, 1, 3600000);
    b->deadline_ms = (uint64_t)opt_int(L, 2, "deadline_ms", 60000, 1, 86400000);
    b->deadline = imp_now_ms() + b->deadline_ms;
    b->ca_file = ca && ca[0] ? imp_xstrdup(ca) : NULL;
    b->lane = opt_int(L, 2, "lane", 2, 1, IMP_RATELIMIT_LANES) - 1;
    b->device_max = opt_int(L, 2, "device_max", 0, 0, 1000000);
    b->device_interval_s = opt_int(L, 2, "device_interval_s", 60, 1, 86400);
    {
        /* opts.rate: requests a second for the pool's process-wide bucket */
        lua_getfield(L, 2, "rate");
        double rate = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 0;
        lua_getfield(L, 2, "burst");
        double burst = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : rate;
        lua_pop(L, 2);
        if (rate > 0) {
            if (!b->pool->rl) b->pool->rl = imp_ratelimit_fetch(b->pool->name);
            imp_ratelimit_set(b->pool->rl, rate, burst);
        } else if (b->pool->rl) {
            imp_ratelimit_set(b->pool->rl, 0, 0);
        }
    }
    b->n = b->remaining = n;
    ev_timer_init(&b->fin, on_fin, 0., 0.);
    b->fin.data = b;
    b->items = imp_xcalloc((size_t)n, sizeof(*b->items));
    b->next = hb->batches;
    if (hb->batches) hb->batches->prev = b;
    hb->batches = b;

    for (int i = 0; i < n; i++) {
        struct item *it = &b->items[i];
        it->b = b;
        it->retry_after_s = -1;
        ev_timer_init(&it->retry, on_retry_timer, 0., 0.);
        lua_rawgeti(L, 1, i + 1);
        if (!lua_istable(L, -1)) {
            batch_free(b);
            return luaL_error(L, "http_batch: request %d is not a table", i + 1);
        }
        lua_getfield(L, -1, "device");
        size_t dlen;
        const char *dev = lua_tolstring(L, -1, &dlen);
        it->device = dev && dlen ? (imp_fnv1a64(dev, dlen) | 1) : 0;
        lua_pop(L, 1);
        lua_getfield(L, -1, "url");
        lua_getfield(L, -2, "method");
        lua_getfield(L, -3, "body");
        const char *url = lua_tostring(L, -3);
        if (!url) {
            batch_free(b);
            return luaL_error(L, "http_batch: request %d has no url", i + 1);
        }
        it->url = imp_xstrdup(url);
        it->method = imp_xstrdup(lua_isstring(L, -2) ? lua_tostring(L, -2) : "POST");
        size_t blen = 0;
        const char *body = lua_tolstring(L, -1, &blen);
        if (body) {
            it->body = imp_xmalloc(blen + 1);
            memcpy(it->body, body, blen);
            it->body_len = blen;
        }
        lua_pop(L, 3);
        lua_getfield(L, -1, "headers");
        if (lua_istable(L, -1)) {
            int nh = (int)lua_objlen(L, -1);
            for (int k = 0; k < nh && k < MAX_HEADERS; k++) {
                lua_rawgeti(L, -1, k + 1);
                const char *hd = lua_tostring(L, -1);
                if (hd) it->headers[k] = imp_xstrdup(hd);
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 2);
    }
    for (int i = 0; i < n; i++) wait_push(b->pool, &b->items[i]);
    imp_task_wait(t);
    pump(hb, b->pool);
    lua_pushboolean(L, 1);
    return 1;
}

void imp_httpbatch_destroy(struct imp_httpbatch *hb)
{
    if (!hb) return;
    while (hb->batches) batch_free(hb->batches);
    imp_h2_destroy(hb->h2);
    imp_http_destroy(hb->http);
    while (hb->pools) {
        struct pool *p = hb->pools;
        ev_timer_stop(hb->loop, &p->rate_timer);
        hb->pools = p->next;
        free(p->name);
        free(p);
    }
    free(hb);
}

/*
 * The online push of a message (core.push_online): the recipients'
 * presence (calls/presence.c), then one fan-out to every gateway etcd
 * lists (net/gateway.c, OpenIM's SuperGroupOnlineBatchPushOneMsg), then
 * the route log line (who was for, online, reached, per gateway) and the
 * result the coroutine resumes with. Runs on the worker's loop; the
 * coroutine waits from the call until the last gateway answers or times
 * out.
 */
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/common.h"
#include "base/config.h"
#include "base/log.h"
#include "base/metrics.h"
#include "calls/presence.h"
#include "net/chans.h"
#include "net/gateway.h"
#include "push/worker_int.h"
#include "script/vm.h"
#include "state/registry.h"
#include "state/shared.h"

static void json_users(struct imp_buf *b, char *const *users, size_t n, size_t cap)
{
    imp_buf_putc(b, '[');
    for (size_t i = 0; i < n && i < cap; i++) {
        if (i) imp_buf_putc(b, ',');
        imp_buf_json_cstr(b, users[i]);
    }
    imp_buf_putc(b, ']');
}

/* One line per message: who it was for, who was online, which gateways
 * were called and whom they reached. Lists are capped (routeLogUsers). */
static void log_route(struct msg *t, const struct imp_fanout *f)
{
    const Openim__Sdkws__MsgData *m = t->req->msgdata;
    size_t cap = (size_t)t->w->cfg->route_log_users;
    struct imp_buf b;
    char **tmp;
    size_t n;

    if (imp_log_level() > IMP_LOG_INFO) return;
    imp_buf_init(&b);
    imp_buf_puts(&b, "\"clientMsgID\":");
    imp_buf_json_cstr(&b, m->clientmsgid);
    imp_buf_printf(&b, ",\"sessionType\":%d,\"contentType\":%d,\"sendID\":", m->sessiontype,
                   m->contenttype);
    imp_buf_json_cstr(&b, m->sendid);
    imp_buf_puts(&b, ",\"recvID\":");
    imp_buf_json_cstr(&b, m->recvid);
    imp_buf_puts(&b, ",\"groupID\":");
    imp_buf_json_cstr(&b, m->groupid);
    imp_buf_printf(&b, ",\"recipients\":%zu,\"online\":", t->users.n);
    json_users(&b, t->online, t->nonline, cap);
    tmp = imp_xcalloc(t->users.n ? t->users.n : 1, sizeof(char *));
    n = 0;
    for (size_t i = 0; i < t->users.n; i++)
        if (!t->online_flags[i]) tmp[n++] = t->users.items[i];
    imp_buf_puts(&b, ",\"offline\":");
    json_users(&b, tmp, n, cap);
    n = 0;
    for (size_t i = 0; i < t->nonline; i++)
        if (f->reached[i]) tmp[n++] = t->online[i];
    imp_buf_puts(&b, ",\"reached\":");
    json_users(&b, tmp, n, cap);
    free(tmp);
    imp_buf_puts(&b, ",\"gateways\":[");
    for (size_t g = 0; g < f->ngw; g++) {
        if (g) imp_buf_putc(&b, ',');
        imp_buf_puts(&b, "{\"addr\":");
        imp_buf_json_cstr(&b, f->gw[g].addr);
        imp_buf_printf(&b, ",\"calls\":%d,\"reached\":%zu", f->gw[g].calls, f->gw[g].reached);
        if (f->gw[g].failed) {
            imp_buf_puts(&b, ",\"error\":");
            imp_buf_json_cstr(&b, f->gw[g].error);
        }
        imp_buf_putc(&b, '}');
    }
    if (t->w->cfg->shadow) /* nothing was sent: reached = who would have been pushed to */
        imp_buf_printf(&b, "],\"shadow\":true,\"wouldCall\":%zu",
                       t->nonline && t->gws ? t->gws->n : 0);
    imp_buf_printf(&b, "%s\"ms\":%llu,\"luaMs\":%.2f,\"scripts\":\"%s\"",
                   t->w->cfg->shadow ? "," : "],", (unsigned long long)(imp_now_ms() - t->start_ms),
                   t->lua_ns / 1e6, t->task.vm->hash);
    imp_log_fields_at(__FILE__, __LINE__, IMP_LOG_INFO, msg_opid(t), msg_opuser(t), "push", b.data);
    imp_buf_dispose(&b);
}

static void on_fanout(struct imp_fanout *f, void *arg)
{
    struct msg *t = arg;
    lua_State *co = t->task.co;

    if (t->w->cfg->shadow && f->nusers) {
        /* no gateway was called: every online user counts as reached, as
         * the gateways would answer for users they hold */
        memset(f->reached, 1, f->nusers);
        f->nreached = f->nusers;
        imp_metrics_inc("impulse_shadow_gateway_calls_total", NULL,
                        (int64_t)(t->gws ? t->gws->n : 0));
    }

    /* each gateway called: its breaker learns how it went */
    uint64_t now = imp_now_ms();
    for (size_t g = 0; g < f->ngw; g++) {
        if (f->gw[g].calls == 0) continue; /* skipped, or nobody to push to */
        if (imp_chans_report(t->w->host.chans, f->gw[g].addr, f->gw[g].failed == 0, now)) {
            char labels[160];
            imp_warn(msg_opid(t),
                     "gateway %s: circuit breaker open after %d failed calls in a row (%s); "
                     "skipped for %d ms, then probed",
                     f->gw[g].addr, t->w->cfg->gw_breaker_failures, f->gw[g].error,
                     t->w->cfg->gw_breaker_open_ms);
            snprintf(labels, sizeof(labels), "gateway=\"%s\"", f->gw[g].addr);
            imp_metrics_inc("impulse_gateway_breaker_opened_total", labels, 1);
        }
    }
    log_route(t, f);
    imp_metrics_inc("impulse_online_push_users_total", "result=\"reached\"", (int64_t)f->nreached);
    imp_metrics_inc("impulse_online_push_users_total", "result=\"not_reached\"",
                    (int64_t)(t->users.n - f->nreached));

    /* result = { recipients = n, reached = {...}, not_reached = {...} } */
    lua_createtable(co, 0, 3);
    lua_pushnumber(co, (lua_Number)t->users.n);
    lua_setfield(co, -2, "recipients");
    lua_createtable(co, (int)f->nreached, 0);
    lua_createtable(co, (int)(t->users.n - f->nreached), 0);
    int nr = 0, nn = 0;
    size_t oi = 0;
    for (size_t i = 0; i < t->users.n; i++) {
        const char *u = t->users.items[i];
        int reached = 0;
        /* online[] preserves users' order, so one pass matches them */
        if (oi < t->nonline && t->online[oi] == u) reached = f->reached[oi++];
        lua_pushstring(co, u);
        lua_rawseti(co, reached ? -3 : -2, reached ? ++nr : ++nn);
    }
    lua_setfield(co, -3, "not_reached");
    lua_setfield(co, -2, "reached");
    imp_fanout_destroy(f);
    imp_task_resume(&t->task, 1);
}

/* The recipients' presence is known: call every gateway. */
static void start_fanout(struct msg *t)
{
    struct imp_worker *w = t->w;
    t->nonline = 0;
    for (size_t i = 0; i < t->users.n; i++)
        if (t->online_flags[i]) t->online[t->nonline++] = t->users.items[i];
    t->gws = imp_chans_follow(w->host.chans, w->env.shared->registry, w->cfg->svc_gateway);
    struct imp_grpc_channel **chs = imp_xcalloc(t->gws->n ? t->gws->n : 1, sizeof(*chs));
    uint64_t now = imp_now_ms();
    int skipped = 0;
    for (size_t g = 0; g < t->gws->n; g++) {
        /* an open breaker (NULL): the gateway is skipped, its users take the
         * path of a failed call (not reached), and nobody waits for it */
        chs[g] = imp_chans_admit(w->host.chans, t->gws->addrs[g], now);
        skipped |= chs[g] == NULL;
    }
    char skip[160] = "";
    if (skipped)
        snprintf(skip, sizeof(skip),
                 "circuit breaker open: %d calls in a row failed; probed again every %d ms",
                 w->cfg->gw_breaker_failures, w->cfg->gw_breaker_open_ms);
    /* impulse.gatewaySelection hash: each user to the gateway its ID hashes
     * to on the ring of the gateways' pod host names, as OpenIM's
     * K8sStaticConsistentHash (OpenIM@v3.8.3:internal/push/onlinepusher.go:144-198) */
    size_t *gw_of = NULL;
    if (w->cfg->gw_hash && t->gws->keys) {
        if (!w->ring || w->ring_version != t->gws->version) {
            imp_ring_destroy(w->ring);
            w->ring = imp_ring_build(t->gws->keys, t->gws->n);
            w->ring_version = t->gws->version;
        }
        gw_of = imp_xcalloc(t->nonline ? t->nonline : 1, sizeof(size_t));
        for (size_t i = 0; i < t->nonline; i++)
            gw_of[i] = imp_ring_get(w->ring, t->online[i], strlen(t->online[i]));
    }
    struct imp_grpc_md md[IMP_TASK_GRPC_MD];
    imp_task_grpc_md(&t->task, md);
    struct imp_fanout_req req = {
        .msgdata = t->msgdata.data,
        .msgdata_len = t->msgdata.len,
        .users = t->online,
        .nusers = t->nonline,
        .channels = chs,
        .h2 = w->cfg->shadow ? NULL : w->grpcc,
        .gw_of = gw_of,
        .skip_reason = skip,
        .addrs = t->gws->addrs,
        .nchannels = w->cfg->shadow ? 0 : t->gws->n, /* shadow: no call, done deferred */
        .timeout_ms = w->cfg->gateway_timeout_ms,
        .max_request = (size_t)w->cfg->max_grpc_message - 1024,
        .md = md,
        .nmd = IMP_TASK_GRPC_MD,
        .inbox = &w->inbox,
        .done = on_fanout,
        .arg = t,
    };
    if (!imp_fanout_start(&req)) {
        /* the inbox is closed: the worker is past its drain deadline */
        imp_warn(msg_opid(t), "online push abandoned: the worker is stopping");
    }
    free(gw_of);
    free(chs);
}

static void on_presence(struct imp_task *task) { start_fanout(msg_of(task)); }

/* push_online(users) -> true (pending): the online push of the current
 * message to users (a list of strings; duplicates are pushed once). The
 * coroutine resumes with { recipients, reached, not_reached }. */
int imp_lua_push_online(lua_State *L)
{
    struct msg *t = msg_current(L);
    if (!t || !t->req) return luaL_error(L, "push_online called outside a message coroutine");
    uint64_t t0 = imp_now_ns();
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t n = lua_objlen(L, 1);
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, (int)i);
        size_t len;
        const char *u = lua_tolstring(L, -1, &len);
        if (u && len) imp_strset_add(&t->users, u, len);
        lua_pop(L, 1);
    }
    t->online = imp_xcalloc(t->users.n ? t->users.n : 1, sizeof(char *));
    t->online_flags = imp_xcalloc(t->users.n ? t->users.n : 1, 1);
    t->task.waiting = 1;
    if (imp_presence_lookup(&t->task, t->users.items, t->users.n, t->online_flags, on_presence) ==
        0)
        start_fanout(t);
    imp_vm_exclude(t->task.vm, t0);
    lua_pushboolean(L, 1);
    return 1;
}

/*
 * member_ids through the shared cache. Three ways a call goes:
 *   hit    — the list (or a cached failure) is returned at once;
 *   leader — this message fetches: the RPC runs on this worker's loop and
 *            its answer completes the cache entry, which notifies every
 *            waiter, then resumes this coroutine;
 *   waiter — another message (maybe on another worker) is fetching: a
 *            waiter is queued; its notify runs on the leader's thread and
 *            only posts to this worker's inbox; a timer gives up after
 *            rpcTimeoutMs if the waiter can still be dequeued.
 * Failures are cached for local-cache.group.failedExpire, as OpenIM does.
 *
 * Called from a task's coroutine on its worker's loop; never blocks and
 * never holds a cache lock across the RPC.
 */
#include "calls/group.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/log.h"
#include "base/metrics.h"
#include "group.pb-c.h"
#include "script/task.h"
#include "state/cache/localcache.h"
#include "state/shared.h"

struct imp_localcache *imp_group_cache_create(const struct imp_config *cfg)
{
    struct imp_localcache_config lc = {
        .slot_num = (unsigned)cfg->cache_group.slot_num,
        .slot_size = (size_t)cfg->cache_group.slot_size,
        .link_slot_num = 0,
        .success_ttl_ms = (uint64_t)cfg->cache_group.success_expire_s * 1000,
        .failed_ttl_ms = (uint64_t)cfg->cache_group.failed_expire_s * 1000,
        .expiration_evict = 0,
    };
    return imp_localcache_create(&lc);
}

struct imp_blob *imp_group_members_encode(char *const *ids, size_t n)
{
    size_t len = 4;
    for (size_t i = 0; i < n; i++) len += 4 + strlen(ids[i]);
    char *buf = imp_xmalloc(len);
    char *p = buf;
    uint32_t v = (uint32_t)n;
    memcpy(p, &v, 4);
    p += 4;
    for (size_t i = 0; i < n; i++) {
        v = (uint32_t)strlen(ids[i]);
        memcpy(p, &v, 4);
        memcpy(p + 4, ids[i], v);
        p += 4 + v;
    }
    struct imp_blob *b = imp_blob_create(buf, len);
    free(buf);
    return b;
}

int imp_group_members_push(lua_State *L, const struct imp_blob *b)
{
    return imp_group_members_push_bytes(L, b->data, b->len);
}

int imp_group_members_push_bytes(lua_State *L, const char *data, size_t len)
{
    uint32_t n, l;
    const char *p = data, *end = data + len;
    if (len < 4) return IMP_EPROTO;
    memcpy(&n, p, 4);
    p += 4;
    if (n > len / 4) return IMP_EPROTO;
    lua_createtable(L, (int)n, 0);
    for (uint32_t i = 0; i < n; i++) {
        if (end - p < 4) goto bad;
        memcpy(&l, p, 4);
        if ((size_t)(end - p - 4) < l) goto bad;
        lua_pushlstring(L, p + 4, l);
        lua_rawseti(L, -2, (int)i + 1);
        p += 4 + l;
    }
    return 0;
bad:
    lua_pop(L, 1);
    return IMP_EPROTO;
}

/* Pushes (ids, nil) or (nil, err) for a cache result. */
static void push_result(lua_State *co, struct imp_blob *val, const char *errmsg)
{
    if (val && imp_group_members_push(co, val) == 0) {
        lua_pushnil(co);
        return;
    }
    lua_pushnil(co);
    lua_pushstring(co, val ? "group cache: corrupt member list" : errmsg);
}

static void cache_key(const char *gid, size_t len, char **key, size_t *klen)
{
    size_t pl = sizeof(IMP_GROUP_CACHE_PREFIX) - 1;
    *key = imp_xmalloc(pl + len + 1);
    memcpy(*key, IMP_GROUP_CACHE_PREFIX, pl);
    memcpy(*key + pl, gid, len);
    (*key)[pl + len] = '\0';
    *klen = pl + len;
}

/* ---- leader ---- */

struct fetch {
    struct imp_task *t;
    char *key;
    size_t klen;
};

static void on_reply(void *arg, const struct imp_grpc_result *r)
{
    struct fetch *f = arg;
    struct imp_task *t = f->t;
    struct imp_host *host = t->host;
    struct imp_localcache *cache = host->shared->group_cache;
    struct imp_blob *val = NULL;
    char errmsg[300] = "";
    char sname[16];
    int err = 0;

    if (r->status != 0) {
        snprintf(errmsg, sizeof(errmsg), "group service: %s: %s",
                 imp_grpc_status_name(r->status, sname, sizeof(sname)), r->details);
        err = r->status == 5 || r->status == 1004 ? IMP_ENOTFOUND : IMP_EIO;
    } else {
        Openim__Group__GetGroupMemberUserIDsResp *resp =
            openim__group__get_group_member_user_ids_resp__unpack(NULL, r->len, r->data);
        if (!resp) {
            snprintf(errmsg, sizeof(errmsg), "group service: unparseable reply (%zu bytes)",
                     r->len);
            err = IMP_EPROTO;
        } else {
            val = imp_group_members_encode(resp->userids, resp->n_userids);
            openim__group__get_group_member_user_ids_resp__free_unpacked(resp, NULL);
        }
    }
    char labels[160];
    snprintf(labels, sizeof(labels), "path=\"%s\",code=\"%d\"", IMP_GROUP_MEMBERS_METHOD,
             r->status);
    imp_metrics_inc("impulse_rpc_client_total", labels, 1);
    /* completing notifies the waiters (posts to their workers) */
    imp_localcache_complete(cache, f->key, f->klen, val, err, errmsg, 1, imp_now_ms());
    free(f->key);
    free(f);
    push_result(imp_task_co(t), val, errmsg);
    imp_blob_release(val);
    imp_task_resume(t, 2);
}

/* Starts the RPC; on failure to start completes the flight with an error
 * and returns it in errmsg. */
static int start_fetch(struct imp_task *t, const char *gid, char *key, size_t klen, char *errmsg,
                       size_t errlen)
{
    struct imp_host *host = t->host;
    const struct imp_config *cfg = host->cfg;
    struct imp_localcache *cache = host->shared->group_cache;
    struct imp_grpc_channel *ch = imp_host_service(host, cfg->svc_group);
    if (!ch) {
        snprintf(errmsg, errlen, "no %s service node registered in etcd", cfg->svc_group);
        /* not cached: a node may register any moment */
        imp_localcache_complete(cache, key, klen, NULL, IMP_ENOTFOUND, errmsg, 0, imp_now_ms());
        return IMP_ENOTFOUND;
    }
    Openim__Group__GetGroupMemberUserIDsReq req =
        OPENIM__GROUP__GET_GROUP_MEMBER_USER_IDS_REQ__INIT;
    req.groupid = (char *)gid;
    size_t n = openim__group__get_group_member_user_ids_req__get_packed_size(&req);
    uint8_t *buf = imp_xmalloc(n);
    openim__group__get_group_member_user_ids_req__pack(&req, buf);
    struct imp_grpc_md md[IMP_TASK_GRPC_MD];
    imp_task_grpc_md(t, md);
    struct fetch *f = imp_xmalloc(sizeof(*f));
    f->t = t;
    f->key = key;
    f->klen = klen;
    int rc = imp_host_unary(host, ch, IMP_GROUP_MEMBERS_METHOD, buf, n, cfg->rpc_timeout_ms, md,
                            IMP_TASK_GRPC_MD, on_reply, f);
    free(buf);
    if (rc != 0) {
        free(f);
        snprintf(errmsg, errlen, "group service: cannot start the call");
        imp_localcache_complete(cache, key, klen, NULL, IMP_EIO, errmsg, 0, imp_now_ms());
        return IMP_EIO;
    }
    return 0;
}

/* ---- waiter ---- */

struct waiter {
    struct imp_lazy_waiter lw; /* first: notify finds the struct */
    ev_timer timer;
    struct imp_task *t;
    struct imp_host *host;
    char *key;
    size_t klen;
    struct imp_blob *val;
    char errmsg[300];
};

static void waiter_free(struct waiter *wt)
{
    imp_blob_release(wt->val);
    free(wt->key);
    free(wt);
}

/* On the waiter's worker: the leader's result arrived. */
static void waiter_deliver(void *arg)
{
    struct waiter *wt = arg;
    struct imp_task *t = wt->t;
    ev_timer_stop(wt->host->loop, &wt->timer);
    push_result(imp_task_co(t), wt->val, wt->errmsg);
    waiter_free(wt);
    imp_task_resume(t, 2);
}

/* On the leader's thread, outside the cache's locks. */
static void waiter_notify(struct imp_lazy_waiter *lw, struct imp_blob *val, int err,
                          const char *errmsg)
{
    struct waiter *wt = (struct waiter *)lw;
    (void)err;
    wt->val = val ? imp_blob_fetch(val) : NULL;
    snprintf(wt->errmsg, sizeof(wt->errmsg), "%s", errmsg ? errmsg : "group members unavailable");
    if (imp_inbox_post(wt->host->inbox, waiter_deliver, wt) != 0) {
        /* the waiter's worker is gone (shutdown): nothing to resume */
    }
}

static void waiter_timeout(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    struct waiter *wt = tm->data;
    struct imp_localcache *cache = wt->host->shared->group_cache;
    if (imp_localcache_cancel(cache, wt->key, wt->klen, &wt->lw) != 1)
        return; /* notified meanwhile: waiter_deliver is on its way */
    struct imp_task *t = wt->t;
    lua_State *co = imp_task_co(t);
    lua_pushnil(co);
    lua_pushfstring(co, "timed out waiting for another message's fetch of %s", wt->key);
    waiter_free(wt);
    imp_task_resume(t, 2);
}

/* ---- Lua ---- */

int imp_lua_group_member_ids(lua_State *L)
{
    struct imp_task *t = imp_task_current(L);
    size_t len;
    const char *gid = luaL_checklstring(L, 1, &len);
    if (!t) return luaL_error(L, "group_member_ids called outside a message coroutine");
    struct imp_host *host = t->host;
    struct imp_localcache *cache = host->shared->group_cache;
    char *key;
    size_t klen;
    cache_key(gid, len, &key, &klen);

    struct waiter *wt = imp_xcalloc(1, sizeof(*wt));
    wt->lw.notify = waiter_notify;
    wt->t = t;
    wt->host = host;
    struct imp_blob *val = NULL;
    int err = 0;
    char errbuf[300] = "";
    /* small member lists are copied out without a lock (lazy.c) */
    char small[IMP_LAZY_INLINE_MAX];
    size_t slen = 0;
    int rc = imp_localcache_get_copy(cache, key, klen, imp_now_ms_coarse(), small, sizeof(small),
                                     &slen, &val, &err, errbuf, sizeof(errbuf), &wt->lw);
    if (rc == IMP_LAZY_HIT) {
        free(wt);
        free(key);
        imp_metrics_inc("impulse_cache_requests_total", "cache=\"group\",result=\"hit\"", 1);
        lua_pushboolean(L, 0);
        if (!val && !err) {
            if (imp_group_members_push_bytes(L, small, slen) == 0) {
                lua_pushnil(L);
            } else {
                lua_pushnil(L);
                lua_pushstring(L, "group cache: corrupt member list");
            }
            return 3;
        }
        push_result(L, val, errbuf[0] ? errbuf : "group members unavailable");
        imp_blob_release(val);
        return 3;
    }
    imp_metrics_inc("impulse_cache_requests_total", "cache=\"group\",result=\"miss\"", 1);
    if (rc == IMP_LAZY_WAIT) {
        wt->key = key;
        wt->klen = klen;
        ev_timer_init(&wt->timer, waiter_timeout, host->cfg->rpc_timeout_ms / 1000.0, 0.);
        wt->timer.data = wt;
        ev_timer_start(host->loop, &wt->timer);
        imp_task_wait(t);
        lua_pushboolean(L, 1);
        return 1;
    }
    free(wt);
    if (start_fetch(t, gid, key, klen, errbuf, sizeof(errbuf)) != 0) {
        free(key);
        lua_pushboolean(L, 0);
        lua_pushnil(L);
        lua_pushstring(L, errbuf);
        return 3;
    }
    imp_task_wait(t);
    lua_pushboolean(L, 1);
    return 1;
}

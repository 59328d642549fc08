/*
 * Watcher thread: etcd discovery, the online_change subscription and the
 * online table loader, all on one libev loop.
 *
 * Loader states: need_load is raised by every (re)subscription; a load
 * starts once Redis is subscribed and etcd has listed the services, pages
 * getAllOnlineUsers into a new generation, sweeps entries of older
 * generations, applies what was buffered meanwhile, and only then marks
 * the table loaded. Losing Redis mid-load abandons the load; the next
 * subscription starts a fresh one.
 *
 * Its own thread; the engine (daemon/engine.c) owns it and answers its
 * hooks; reloads are asked for from any thread (imp_watcher_reload).
 */
#include "daemon/watcher.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/common.h"
#include "base/inbox.h"
#include "base/log.h"
#include "base/metrics.h"
#include "calls/presence.h"
#include "net/etcd.h"
#include "net/grpc.h"
#include "net/http.h"
#include "net/k8s.h"
#include "net/redis.h"
#include "script/vm.h"
#include "state/cache/localcache.h"
#include "state/cache/slot.h"
#include "state/online.h"
#include "state/registry.h"
#include "state/shared.h"
#include "user.pb-c.h"

#define ALL_ONLINE_METHOD "/openim.user.user/getAllOnlineUsers"
#define ONLINE_CHANNEL    "online_change"

struct pending_change {
    struct pending_change *next;
    size_t len;
    char payload[];
};

struct imp_watcher {
    const struct imp_config *cfg;
    struct imp_shared *st;
    struct imp_watcher_hooks hooks;
    pthread_t thread;
    int started;
    struct ev_loop *loop;
    struct imp_inbox inbox;
    struct imp_http *http;
    struct imp_etcd *etcd; /* discovery: etcd, or */
    struct imp_k8s *k8s;   /* the Kubernetes API (discovery.enable k8s) */
    struct imp_redis_sub *sub;
    ev_timer load_retry;
    ev_timer sweep; /* expired cache entries, once a second */

    /* online loader */
    int subscribed;
    int was_subscribed; /* subscribed at least once before */
    int need_load;
    int loading;
    uint32_t gen;      /* generation of the live table */
    uint32_t load_gen; /* generation being loaded */
    uint32_t gens;     /* generations handed out: a restarted load never
                          reuses the number of an abandoned one, whose
                          stale entries must not survive the sweep */
    uint64_t cursor;
    uint64_t load_seq; /* tags page requests so a stale reply is ignored */
    size_t loaded_users;
    int retry_ms;
    int warned_no_user;
    struct pending_change *buf_head, **buf_tail;
    size_t buffered;
    struct imp_grpc_channel *user_ch;

    /* hot reload */
    int inotify_fd;
    ev_io inotify_io;
    ev_timer debounce;
    pthread_mutex_t scripts_lock; /* guards the fields below */
    char active_hash[17];
    long reloads_ok, reloads_failed;
    char *last_error;
    uint64_t last_error_at;
    char *last_why;
    struct imp_metric *m_reload_ok, *m_reload_err;

    atomic_int pub_subscribed;
    atomic_int pub_synced;
    atomic_long pub_loads;

    struct imp_metric *m_change, *m_change_bad, *m_online, *m_inval, *m_inval_bad;
};

static void try_load(struct imp_watcher *w);

static void apply_change(struct imp_watcher *w, const char *payload, size_t len, uint32_t gen)
{
    const char *uid;
    size_t uidlen;
    uint64_t platforms;
    char err[160];
    if (imp_online_parse_change(payload, len, &uid, &uidlen, &platforms, err, sizeof(err)) != 0) {
        struct imp_buf b;
        imp_buf_init(&b);
        imp_buf_puts(&b, "\"channel\":\"" ONLINE_CHANNEL "\",\"payload\":");
        imp_buf_json_str(&b, payload, IMP_MIN(len, 200));
        imp_buf_puts(&b, ",\"error\":");
        imp_buf_json_cstr(&b, err);
        imp_log_fields(IMP_LOG_WARN, NULL, "bad online_change message dropped", b.data);
        imp_buf_dispose(&b);
        imp_metric_add(w->m_change_bad, 1);
        return;
    }
    if (w->st->online_lru) /* LRU mode: only users already cached */
        imp_presence_lru_update(w->st->online_lru, uid, uidlen, platforms, imp_now_ms());
    else
        imp_online_set(w->st->online, uid, uidlen, platforms, gen);
    imp_metric_add(w->m_change, 1);
}

static void buffer_clear(struct imp_watcher *w)
{
    while (w->buf_head) {
        struct pending_change *n = w->buf_head->next;
        free(w->buf_head);
        w->buf_head = n;
    }
    w->buf_tail = &w->buf_head;
    w->buffered = 0;
}

/* DELETE_CACHE_GROUP: a JSON array of cache keys another instance (or
 * OpenIM) changed; deleted here, never fetched again until asked for. */
static void invalidate(struct imp_watcher *w, const char *channel, const char *payload, size_t len)
{
    char err[200];
    if (imp_localcache_invalidate_json(w->st->group_cache, payload, len, err, sizeof(err)) != 0) {
        struct imp_buf b;
        imp_buf_init(&b);
        imp_buf_puts(&b, "\"channel\":");
        imp_buf_json_cstr(&b, channel);
        imp_buf_puts(&b, ",\"payload\":");
        imp_buf_json_str(&b, payload, IMP_MIN(len, 200));
        imp_buf_puts(&b, ",\"error\":");
        imp_buf_json_cstr(&b, err);
        imp_log_fields(IMP_LOG_WARN, NULL, "bad cache invalidation dropped", b.data);
        imp_buf_dispose(&b);
        imp_metric_add(w->m_inval_bad, 1);
        return;
    }
    imp_metric_add(w->m_inval, 1);
}

static void on_redis_message(void *arg, const char *channel, const char *payload, size_t len)
{
    struct imp_watcher *w = arg;
    if (strcmp(channel, w->cfg->cache_group.topic) == 0) {
        invalidate(w, channel, payload, len);
        return;
    }
    if (strcmp(channel, ONLINE_CHANNEL) != 0) return;
    if (w->loading || w->need_load) {
        struct pending_change *p = imp_xmalloc(sizeof(*p) + len);
        p->next = NULL;
        p->len = len;
        memcpy(p->payload, payload, len);
        *w->buf_tail = p;
        w->buf_tail = &p->next;
        w->buffered++;
        return;
    }
    apply_change(w, payload, len, w->gen);
    imp_metric_set(w->m_online, (int64_t)imp_online_count(w->st->online));
}

static void on_subscribed(void *arg)
{
    struct imp_watcher *w = arg;
    if (w->was_subscribed) {
        /* DELETE_CACHE_* published while we were away were missed */
        size_t n = imp_localcache_purge(w->st->group_cache);
        imp_info(NULL, "group cache flushed after the Redis gap (%zu entries)", n);
    }
    w->was_subscribed = 1;
    w->subscribed = 1;
    w->need_load = 1;
    w->cursor = 0;
    w->load_seq++; /* replies of an earlier load are stale now */
    w->loading = 0;
    atomic_store(&w->pub_subscribed, 1);
    buffer_clear(w);
    try_load(w);
}

static void on_lost(void *arg)
{
    struct imp_watcher *w = arg;
    w->subscribed = 0;
    atomic_store(&w->pub_subscribed, 0);
    if (w->loading) imp_warn(NULL, "online table load abandoned: Redis connection lost");
    w->loading = 0;
    w->need_load = 1;
    w->cursor = 0;
    w->load_seq++;
    buffer_clear(w);
}

/* Discovery has listed the services at least once. */
static int disc_synced(const struct imp_watcher *w)
{
    return w->k8s ? imp_k8s_synced(w->k8s) : imp_etcd_synced(w->etcd);
}

/* ... and answers now. */
static int disc_up(const struct imp_watcher *w)
{
    return w->k8s ? imp_k8s_up(w->k8s) : imp_etcd_up(w->etcd);
}

static void on_disc_synced(void *arg)
{
    struct imp_watcher *w = arg;
    atomic_store(&w->pub_synced, disc_up(w));
    try_load(w);
}

static void schedule_load_retry(struct imp_watcher *w)
{
    ev_timer_stop(w->loop, &w->load_retry);
    ev_timer_set(&w->load_retry, w->retry_ms / 1000.0, 0.);
    ev_timer_start(w->loop, &w->load_retry);
    w->retry_ms = w->retry_ms * 2 > 5000 ? 5000 : w->retry_ms * 2;
}

static void request_page(struct imp_watcher *w);

static void load_finished(struct imp_watcher *w)
{
    size_t swept = imp_online_sweep(w->st->online, w->load_gen);
    size_t applied = w->buffered;
    for (struct pending_change *p = w->buf_head; p; p = p->next)
        apply_change(w, p->payload, p->len, w->load_gen);
    buffer_clear(w);
    w->gen = w->load_gen;
    w->loading = 0;
    w->need_load = 0;
    w->retry_ms = 200;
    size_t count = imp_online_count(w->st->online);
    imp_metric_set(w->m_online, (int64_t)count);
    atomic_fetch_add(&w->pub_loads, 1);
    imp_info(NULL,
             "online table loaded: %zu users online (%zu paged, %zu buffered changes "
             "applied, %zu stale removed)",
             count, w->loaded_users, applied, swept);
    w->hooks.online_loaded(w->hooks.arg);
}

struct page_req {
    struct imp_watcher *w;
    uint64_t seq;
};

static void on_page(void *arg, const struct imp_grpc_result *r)
{
    struct page_req *pr = arg;
    struct imp_watcher *w = pr->w;
    int stale = pr->seq != w->load_seq || !w->loading;
    char sname[16];
    free(pr);
    if (stale) return; /* that load was abandoned */
    if (r->status != 0) {
        imp_warn(NULL, "getAllOnlineUsers (cursor %llu) failed: %s: %s; retrying in %d ms",
                 (unsigned long long)w->cursor,
                 imp_grpc_status_name(r->status, sname, sizeof(sname)), r->details, w->retry_ms);
        w->loading = 0; /* try_load resumes from the same cursor */
        schedule_load_retry(w);
        return;
    }
    Openim__User__GetAllOnlineUsersResp *resp =
        openim__user__get_all_online_users_resp__unpack(NULL, r->len, r->data);
    if (!resp) {
        imp_warn(NULL, "getAllOnlineUsers: unparseable reply (%zu bytes); retrying", r->len);
        w->loading = 0;
        schedule_load_retry(w);
        return;
    }
    for (size_t i = 0; i < resp->n_statuslist; i++) {
        const Openim__User__OnlineStatus *s = resp->statuslist[i];
        if (!s->userid || !s->userid[0]) continue;
        uint64_t set = 0;
        for (size_t k = 0; k < s->n_platformids; k++)
            if (s->platformids[k] >= 0 && s->platformids[k] <= IMP_ONLINE_MAX_PLATFORM)
                set |= 1ULL << s->platformids[k];
        if (!set) continue;
        imp_online_set(w->st->online, s->userid, strlen(s->userid), set, w->load_gen);
        w->loaded_users++;
    }
    w->cursor = resp->nextcursor;
    openim__user__get_all_online_users_resp__free_unpacked(resp, NULL);
    if (w->cursor == 0)
        load_finished(w);
    else
        request_page(w);
}

static void request_page(struct imp_watcher *w)
{
    struct imp_svclist *l = imp_registry_fetch(w->st->registry, w->cfg->svc_user);
    if (l->n == 0) {
        if (!w->warned_no_user)
            imp_warn(NULL, "online table: no '%s' service discovered yet; waiting",
                     w->cfg->svc_user);
        w->warned_no_user = 1;
        imp_svclist_release(l);
        w->loading = 0;
        schedule_load_retry(w);
        return;
    }
    const char *addr = l->addrs[w->cursor % l->n];
    if (!w->user_ch || strcmp(imp_grpc_channel_addr(w->user_ch), addr) != 0) {
        imp_grpc_channel_destroy(w->user_ch);
        w->user_ch = imp_grpc_channel_create(addr, 64 << 20);
    }
    imp_svclist_release(l);

    Openim__User__GetAllOnlineUsersReq req = OPENIM__USER__GET_ALL_ONLINE_USERS_REQ__INIT;
    req.cursor = w->cursor;
    uint8_t buf[32];
    size_t n = openim__user__get_all_online_users_req__pack(&req, buf);
    char opid[64];
    snprintf(opid, sizeof(opid), "impulse-online-load-%llu", (unsigned long long)imp_wall_ms());
    struct imp_grpc_md md[1] = {{"operationid", opid}};
    struct page_req *pr = imp_xmalloc(sizeof(*pr));
    pr->w = w;
    pr->seq = w->load_seq;
    if (imp_grpc_unary(w->user_ch, ALL_ONLINE_METHOD, buf, n, w->cfg->rpc_timeout_ms, md, 1,
                       &w->inbox, on_page, pr) != 0) {
        free(pr);
        w->loading = 0;
        schedule_load_retry(w);
    }
}

static void try_load(struct imp_watcher *w)
{
    if (w->st->online_lru && w->subscribed && w->need_load) {
        /* LRU mode: nothing to load; statuses are fetched on demand, and
         * the ones cached before a gap may be stale */
        w->need_load = 0;
        imp_slot_purge(w->st->online_lru);
        atomic_fetch_add(&w->pub_loads, 1);
        imp_info(NULL, "online LRU mode: subscribed, statuses fetched on demand");
        w->hooks.online_loaded(w->hooks.arg);
        return;
    }
    if (!w->need_load || w->loading || !w->subscribed || !disc_synced(w)) return;
    if (ev_is_active(&w->load_retry)) return; /* a retry is scheduled */
    if (w->cursor == 0) {
        w->load_gen = ++w->gens;
        w->loaded_users = 0;
    }
    w->loading = 1;
    request_page(w);
}

static void on_load_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct imp_watcher *w = t->data;
    ev_timer_stop(w->loop, t);
    try_load(w);
}

static void on_sweep(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct imp_watcher *w = t->data;
    uint64_t now = imp_now_ms();
    imp_localcache_sweep(w->st->group_cache, now);
    if (w->st->online_lru) imp_slot_sweep(w->st->online_lru, now);
    /* /healthz: listed, and etcd answering now (the registry keeps the
     * last list while it does not) */
    atomic_store(&w->pub_synced, disc_synced(w) && disc_up(w));
}

/* ---------- hot reload ---------- */

static void do_reload(struct imp_watcher *w, const char *why, int only_if_changed)
{
    char hash[17], err[4096];
    /* one snapshot: its hash decides whether anything changed, and every
     * worker's VM is built from it */
    struct imp_scripts *scripts = imp_scripts_read(w->cfg->scripts_dir);
    memcpy(hash, scripts->hash, sizeof(hash));
    pthread_mutex_lock(&w->scripts_lock);
    int same = strcmp(hash, w->active_hash) == 0;
    int cleared = same && only_if_changed && w->last_error;
    if (cleared) { /* a failed edit was undone: the files are the active scripts again */
        free(w->last_error);
        w->last_error = NULL;
    }
    pthread_mutex_unlock(&w->scripts_lock);
    if (cleared) {
        char f[64];
        snprintf(f, sizeof(f), "\"scripts\":\"%s\"", hash);
        imp_log_fields(IMP_LOG_INFO, NULL, "scripts back to the active version", f);
    }
    if (same && only_if_changed) {
        imp_scripts_free(scripts);
        return;
    }

    uint64_t t0 = imp_now_ms();
    int ok = w->hooks.reload(w->hooks.arg, scripts, err, sizeof(err)) == 0;
    imp_scripts_free(scripts);
    struct imp_buf b;
    imp_buf_init(&b);
    imp_buf_puts(&b, "\"trigger\":");
    imp_buf_json_cstr(&b, why);
    if (!ok) {
        imp_buf_puts(&b, ",\"error\":");
        imp_buf_json_cstr(&b, err);
        imp_buf_puts(&b, ",\"kept\":");
        pthread_mutex_lock(&w->scripts_lock);
        imp_buf_json_cstr(&b, w->active_hash);
        w->reloads_failed++;
        free(w->last_error);
        w->last_error = imp_xstrdup(err);
        w->last_error_at = imp_wall_ms();
        pthread_mutex_unlock(&w->scripts_lock);
        imp_log_fields(IMP_LOG_ERROR, NULL, "script reload failed; the old scripts stay", b.data);
        imp_metric_add(w->m_reload_err, 1);
    } else {
        pthread_mutex_lock(&w->scripts_lock);
        memcpy(w->active_hash, hash, sizeof(hash));
        w->reloads_ok++;
        free(w->last_why);
        w->last_why = imp_xstrdup(why);
        pthread_mutex_unlock(&w->scripts_lock);
        imp_buf_printf(&b, ",\"scripts\":\"%s\",\"ms\":%llu", hash,
                       (unsigned long long)(imp_now_ms() - t0));
        imp_log_fields(IMP_LOG_INFO, NULL, "scripts reloaded", b.data);
        imp_metric_add(w->m_reload_ok, 1);
    }
    imp_buf_dispose(&b);
}

struct reload_req {
    struct imp_watcher *w;
    char why[64];
};

static void cmd_reload(void *arg)
{
    struct reload_req *r = arg;
    do_reload(r->w, r->why, 0);
    free(r);
}

void imp_watcher_reload(struct imp_watcher *w, const char *why)
{
    struct reload_req *r = imp_xmalloc(sizeof(*r));
    r->w = w;
    snprintf(r->why, sizeof(r->why), "%s", why);
    if (imp_inbox_post(&w->inbox, cmd_reload, r) != 0) free(r);
}

void imp_watcher_set_active_scripts(struct imp_watcher *w, const char *hash)
{
    pthread_mutex_lock(&w->scripts_lock);
    snprintf(w->active_hash, sizeof(w->active_hash), "%s", hash);
    pthread_mutex_unlock(&w->scripts_lock);
}

void imp_watcher_scripts_json(struct imp_watcher *w, struct imp_buf *out)
{
    pthread_mutex_lock(&w->scripts_lock);
    imp_buf_printf(out, "\"scripts\":{\"active\":\"%s\",\"reloads\":%ld,\"reloadFailures\":%ld",
                   w->active_hash, w->reloads_ok, w->reloads_failed);
    if (w->last_why) {
        imp_buf_puts(out, ",\"lastReloadTrigger\":");
        imp_buf_json_cstr(out, w->last_why);
    }
    if (w->last_error) {
        imp_buf_puts(out, ",\"lastError\":");
        imp_buf_json_cstr(out, w->last_error);
        imp_buf_printf(out, ",\"lastErrorAt\":%llu", (unsigned long long)w->last_error_at);
    }
    imp_buf_putc(out, '}');
    pthread_mutex_unlock(&w->scripts_lock);
}

#define SCRIPT_EVENTS (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE)

static void watch_providers(struct imp_watcher *w)
{
    char sub[1024];
    snprintf(sub, sizeof(sub), "%s/providers", w->cfg->scripts_dir);
    if (w->inotify_fd >= 0) inotify_add_watch(w->inotify_fd, sub, SCRIPT_EVENTS);
}

/* A change under the scripts folder: wait for the editor to finish
 * (debounce), then reload if the scripts differ from the active ones. */
static void on_inotify(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct imp_watcher *w = io->data;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    int lua = 0;
    ssize_t n;
    while ((n = read(w->inotify_fd, buf, sizeof(buf))) > 0) {
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            size_t nl = ev->len ? strlen(ev->name) : 0;
            if (nl > 4 && strcmp(ev->name + nl - 4, ".lua") == 0) lua = 1;
            /* a Kubernetes ConfigMap volume: kubelet writes the new files
             * into a fresh folder and swaps the ..data symlink atomically */
            if (nl && strcmp(ev->name, "..data") == 0) lua = 1;
            if (ev->mask & IN_ISDIR) {
                lua = 1;
                /* providers/ made after the start: watch it too */
                if ((ev->mask & (IN_CREATE | IN_MOVED_TO)) && strcmp(ev->name, "providers") == 0)
                    watch_providers(w);
            }
            p += sizeof(*ev) + ev->len;
        }
    }
    if (!lua) return;
    ev_timer_stop(loop, &w->debounce);
    ev_timer_set(&w->debounce, w->cfg->reload_quiet_ms / 1000.0, 0.);
    ev_timer_start(loop, &w->debounce);
}

static void on_debounce(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    do_reload(t->data, "scripts changed", 1);
}

static void watch_scripts(struct imp_watcher *w)
{
    const uint32_t mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE;
    w->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->inotify_fd < 0) {
        imp_warn(NULL,
                 "inotify unavailable (%s): scripts reload on SIGHUP or POST /admin/reload "
                 "only",
                 strerror(errno));
        return;
    }
    if (inotify_add_watch(w->inotify_fd, w->cfg->scripts_dir, mask) < 0)
        imp_warn(NULL, "cannot watch %s: %s", w->cfg->scripts_dir, strerror(errno));
    watch_providers(w); /* may not exist yet: then on its creation */
    ev_io_init(&w->inotify_io, on_inotify, w->inotify_fd, EV_READ);
    w->inotify_io.data = w;
    ev_io_start(w->loop, &w->inotify_io);
}

static void *watcher_main(void *arg)
{
    struct imp_watcher *w = arg;
    imp_inbox_start(&w->inbox);
    ev_timer_start(w->loop, &w->sweep);
    watch_scripts(w);
    if (w->k8s)
        imp_k8s_start(w->k8s);
    else
        imp_etcd_start(w->etcd);
    imp_redis_sub_start(w->sub);
    ev_run(w->loop, 0);
    return NULL;
}

struct imp_watcher *imp_watcher_create(const struct imp_config *cfg, struct imp_shared *st,
                                       const struct imp_watcher_hooks *hooks)
{
    struct imp_watcher *w = imp_xcalloc(1, sizeof(*w));
    w->cfg = cfg;
    w->st = st;
    w->hooks = *hooks;
    w->loop = ev_loop_new(EVFLAG_AUTO);
    imp_inbox_init(&w->inbox, w->loop);
    w->http = imp_http_create(w->loop);
    if (cfg->k8s)
        w->k8s = imp_k8s_create(w->loop, w->http, cfg, st->registry, on_disc_synced, w);
    else
        w->etcd = imp_etcd_create(w->loop, w->http, cfg, st->registry, on_disc_synced, w);
    const char *channels[] = {ONLINE_CHANNEL, cfg->cache_group.topic};
    struct imp_redis_sub_handler h = {on_subscribed, on_lost, on_redis_message, w};
    w->sub = imp_redis_sub_create(w->loop, cfg, channels, 2, &h);
    w->buf_tail = &w->buf_head;
    w->retry_ms = 200;
    ev_timer_init(&w->load_retry, on_load_retry, 0., 0.);
    w->load_retry.data = w;
    ev_timer_init(&w->sweep, on_sweep, 1., 1.);
    w->sweep.data = w;
    ev_timer_init(&w->debounce, on_debounce, 0.2, 0.);
    w->debounce.data = w;
    w->inotify_fd = -1;
    pthread_mutex_init(&w->scripts_lock, NULL);
    w->m_reload_ok = imp_metrics_counter("impulse_script_reload_total", "result=\"ok\"",
                                         "Script reloads, by result");
    w->m_reload_err = imp_metrics_counter("impulse_script_reload_total", "result=\"error\"", NULL);
    w->m_change =
        imp_metrics_counter("impulse_online_changes_total", NULL, "online_change messages applied");
    w->m_change_bad = imp_metrics_counter("impulse_online_changes_bad_total", NULL,
                                          "online_change messages dropped as malformed");
    w->m_online = imp_metrics_gauge("impulse_online_users", NULL, "Users in the online table");
    w->m_inval = imp_metrics_counter("impulse_cache_invalidations_total", "cache=\"group\"",
                                     "DELETE_CACHE_* messages applied");
    w->m_inval_bad = imp_metrics_counter("impulse_cache_invalidations_bad_total", "cache=\"group\"",
                                         "DELETE_CACHE_* messages dropped as malformed");
    return w;
}

int imp_watcher_start(struct imp_watcher *w)
{
    if (pthread_create(&w->thread, NULL, watcher_main, w) != 0) return IMP_EIO;
    w->started = 1;
    return 0;
}

static void cmd_stop(void *arg)
{
    struct imp_watcher *w = arg;
    ev_break(w->loop, EVBREAK_ALL);
}

void imp_watcher_stop(struct imp_watcher *w)
{
    if (!w->started) return;
    imp_inbox_post(&w->inbox, cmd_stop, w);
    pthread_join(w->thread, NULL);
    w->started = 0;
}

void imp_watcher_destroy(struct imp_watcher *w)
{
    if (!w) return;
    ev_timer_stop(w->loop, &w->load_retry);
    ev_timer_stop(w->loop, &w->sweep);
    ev_timer_stop(w->loop, &w->debounce);
    if (w->inotify_fd >= 0) {
        ev_io_stop(w->loop, &w->inotify_io);
        close(w->inotify_fd);
    }
    free(w->last_error);
    free(w->last_why);
    pthread_mutex_destroy(&w->scripts_lock);
    imp_redis_sub_destroy(w->sub);
    imp_etcd_destroy(w->etcd);
    imp_k8s_destroy(w->k8s);
    imp_http_destroy(w->http);
    imp_grpc_channel_destroy(w->user_ch);
    buffer_clear(w);
    imp_inbox_dispose(&w->inbox);
    ev_loop_destroy(w->loop);
    free(w);
}

int imp_watcher_redis_subscribed(struct imp_watcher *w) { return atomic_load(&w->pub_subscribed); }
int imp_watcher_etcd_synced(struct imp_watcher *w) { return atomic_load(&w->pub_synced); }
long imp_watcher_online_loads(struct imp_watcher *w) { return atomic_load(&w->pub_loads); }

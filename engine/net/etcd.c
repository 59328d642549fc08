/*
 * etcd client state machine:
 *
 *   AUTH (only with a username) → LIST → WATCH ──stream ends──► WATCH again
 *                                   ▲            (from last revision + 1)
 *                                   └── compacted / canceled / error body
 *
 * Failures back off (200 ms doubling to 5 s) and rotate through the
 * configured endpoints. The key set is a plain array: OpenIM deployments
 * register tens of nodes, not thousands. Watch responses arrive as
 * newline-delimited JSON objects; a partial line waits for the next chunk.
 *
 * Runs on the watcher's loop (daemon/watcher.c); never blocks it.
 */
#include "net/etcd.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/common.h"
#include "base/log.h"
#include "base/metrics.h"

enum state { ST_IDLE, ST_AUTH, ST_LIST, ST_WATCH };

struct imp_etcd {
    struct ev_loop *loop;
    struct imp_http *http;
    const struct imp_config *cfg;
    struct imp_registry *reg;
    void (*on_synced)(void *);
    void *arg;

    int state;
    size_t endpoint;
    char *prefix; /* "<root>/" */
    char token[512];
    long long revision;
    int synced;
    int up;       /* the last list succeeded and the watch since then is alive */
    int auth_off; /* credentials configured, but the server has auth disabled */
    int backoff_ms;
    ev_timer retry;
    struct imp_http_req *req;
    struct imp_buf line; /* partial watch line */
    int watch_events;    /* events seen on the current stream */

    size_t nkeys;
    char **keys;
};

static void do_list(struct imp_etcd *e);
static void do_watch(struct imp_etcd *e);
static void do_auth(struct imp_etcd *e);

static void schedule_retry(struct imp_etcd *e, const char *why)
{
    e->req = NULL;
    e->up = 0;
    e->state = ST_IDLE;
    imp_warn(NULL, "etcd %s: %s; retrying in %d ms", e->cfg->etcd_addrs.v[e->endpoint], why,
             e->backoff_ms);
    imp_metrics_inc("impulse_etcd_errors_total", NULL, 1);
    e->endpoint = (e->endpoint + 1) % e->cfg->etcd_addrs.n;
    ev_timer_set(&e->retry, e->backoff_ms / 1000.0, 0.);
    ev_timer_start(e->loop, &e->retry);
    e->backoff_ms = e->backoff_ms * 2 > 5000 ? 5000 : e->backoff_ms * 2;
}

/* Appends `"key":"<b64 prefix>","range_end":"<b64 prefix end>"`: every key
 * under the prefix (the range end is the prefix with its last byte + 1). */
static void range_json(const struct imp_etcd *e, struct imp_buf *b)
{
    size_t n = strlen(e->prefix);
    char *end = imp_xstrndup(e->prefix, n);
    end[n - 1]++;
    imp_buf_puts(b, "\"key\":\"");
    imp_buf_base64(b, e->prefix, n);
    imp_buf_puts(b, "\",\"range_end\":\"");
    imp_buf_base64(b, end, n);
    imp_buf_putc(b, '"');
    free(end);
}

struct imp_http_req *imp_etcd_post(struct imp_http *http, const char *endpoint, const char *token,
                                   const char *path, const char *body, int timeout_ms,
                                   imp_http_done_cb done, imp_http_chunk_cb chunk, void *arg)
{
    char url[512], auth[600];
    const char *headers[3] = {"Content-Type: application/json", NULL, NULL};
    if (token && token[0]) {
        snprintf(auth, sizeof(auth), "Authorization: %s", token);
        headers[1] = auth;
    }
    snprintf(url, sizeof(url), "http://%s%s", endpoint, path);
    struct imp_http_opts o = {
        .method = "POST",
        .url = url,
        .headers = headers,
        .body = body,
        .body_len = strlen(body),
        .timeout_ms = timeout_ms,
        .connect_timeout_ms = 2000,
        .on_chunk = chunk,
        .on_done = done,
        .arg = arg,
    };
    return imp_http_request(http, &o);
}

void imp_etcd_auth_body(struct imp_buf *b, const struct imp_config *cfg)
{
    imp_buf_puts(b, "{\"name\":");
    imp_buf_json_cstr(b, cfg->etcd_username);
    imp_buf_puts(b, ",\"password\":");
    imp_buf_json_cstr(b, cfg->etcd_password);
    imp_buf_putc(b, '}');
}

static void post(struct imp_etcd *e, const char *path, const char *body, imp_http_done_cb done,
                 imp_http_chunk_cb chunk, int timeout_ms)
{
    e->req = imp_etcd_post(e->http, e->cfg->etcd_addrs.v[e->endpoint], e->token, path, body,
                           timeout_ms, done, chunk, e);
    if (!e->req) schedule_retry(e, "cannot start an HTTP request");
}

/* A revision beyond any real store's: the bound keeps revision + 1 and a
 * double's conversion defined. */
#define MAX_REVISION (1LL << 53)

/* An etcd int64 field (a string in its JSON, a number from some proxies):
 * 0 when missing, negative or beyond MAX_REVISION. */
static long long json_int(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    long long n = 0;
    if (cJSON_IsString(v))
        n = strtoll(v->valuestring, NULL, 10);
    else if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= (double)MAX_REVISION)
        n = (long long)v->valuedouble;
    return n < 0 || n > MAX_REVISION ? 0 : n;
}

static int b64_field(const cJSON *o, const char *key, struct imp_buf *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    imp_buf_reset(out);
    if (!cJSON_IsString(v)) return IMP_EINVAL;
    return imp_base64_decode(out, v->valuestring, strlen(v->valuestring));
}

static void keys_clear(struct imp_etcd *e)
{
    for (size_t i = 0; i < e->nkeys; i++) free(e->keys[i]);
    free(e->keys);
    e->keys = NULL;
    e->nkeys = 0;
}

/* A key outside the prefix is ignored: etcd answers only the range asked
 * for, but a key from a broken server or proxy that is shorter than the
 * prefix would make publish() read past it. */
static void key_put(struct imp_etcd *e, const char *k)
{
    if (strncmp(k, e->prefix, strlen(e->prefix)) != 0) return;
    for (size_t i = 0; i < e->nkeys; i++)
        if (strcmp(e->keys[i], k) == 0) return;
    e->keys = imp_xrealloc(e->keys, (e->nkeys + 1) * sizeof(char *));
    e->keys[e->nkeys++] = imp_xstrdup(k);
}

static void key_del(struct imp_etcd *e, const char *k)
{
    for (size_t i = 0; i < e->nkeys; i++) {
        if (strcmp(e->keys[i], k) == 0) {
            free(e->keys[i]);
            e->keys[i] = e->keys[--e->nkeys];
            return;
        }
    }
}

/* Recomputes every tracked service's address set from the key set. */
static void publish(struct imp_etcd *e)
{
    const char *const *names;
    size_t nn = imp_registry_names(e->reg, &names);
    size_t plen = strlen(e->prefix);
    char **addrs = imp_xcalloc(e->nkeys ? e->nkeys : 1, sizeof(char *));
    for (size_t s = 0; s < nn; s++) {
        size_t na = 0, sl = strlen(names[s]);
        for (size_t i = 0; i < e->nkeys; i++) {
            const char *k = e->keys[i] + plen;
            if (strncmp(k, names[s], sl) != 0 || k[sl] != '/') continue;
            const char *last = strrchr(k + sl, '/') + 1;
            if (*last) addrs[na++] = (char *)last;
        }
        if (imp_registry_publish(e->reg, names[s], addrs, na) == 1) {
            struct imp_buf b;
            imp_buf_init(&b);
            imp_buf_puts(&b, "\"service\":");
            imp_buf_json_cstr(&b, names[s]);
            imp_buf_puts(&b, ",\"addrs\":[");
            for (size_t i = 0; i < na; i++) {
                if (i) imp_buf_putc(&b, ',');
                imp_buf_json_cstr(&b, addrs[i]);
            }
            imp_buf_puts(&b, "]");
            imp_log_fields(IMP_LOG_INFO, NULL, "service nodes changed", b.data);
            imp_buf_dispose(&b);
        }
    }
    free(addrs);
}

/* ---- auth ---- */

int imp_etcd_auth_not_enabled(long status, const char *body, size_t len)
{
    static const char needle[] = "authentication is not enabled";
    return status == 412 && body && memmem(body, len, needle, sizeof(needle) - 1) != NULL;
}

static void on_auth(void *arg, int err, long status, const char *body, size_t len,
                    const char *errmsg)
{
    struct imp_etcd *e = arg;
    char why[300];
    e->req = NULL;
    if (!err && imp_etcd_auth_not_enabled(status, body, len)) {
        imp_warn(NULL,
                 "etcd %s: authentication is not enabled on the server; going on without a "
                 "token (discovery.etcd.username is ignored until it is)",
                 e->cfg->etcd_addrs.v[e->endpoint]);
        e->auth_off = 1;
        e->token[0] = '\0';
        if (e->synced)
            do_watch(e);
        else
            do_list(e);
        return;
    }
    if (err || status != 200) {
        snprintf(why, sizeof(why), "authenticate failed: %s (HTTP %ld) %.*s", err ? errmsg : "",
                 status, (int)IMP_MIN(len, 200), body);
        schedule_retry(e, why);
        return;
    }
    cJSON *j = cJSON_ParseWithLength(body, len);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "token");
    if (!cJSON_IsString(t) || strlen(t->valuestring) >= sizeof(e->token)) {
        cJSON_Delete(j);
        schedule_retry(e, "authenticate: no token in the reply");
        return;
    }
    snprintf(e->token, sizeof(e->token), "%s", t->valuestring);
    cJSON_Delete(j);
    if (e->synced)
        do_watch(e);
    else
        do_list(e);
}

static void do_auth(struct imp_etcd *e)
{
    struct imp_buf b;
    imp_buf_init(&b);
    imp_etcd_auth_body(&b, e->cfg);
    e->state = ST_AUTH;
    e->token[0] = '\0';
    post(e, "/v3/auth/authenticate", b.data, on_auth, NULL, 5000);
    imp_buf_dispose(&b);
}

static int needs_auth(const struct imp_etcd *e)
{
    return e->cfg->etcd_username[0] != '\0' && !e->auth_off;
}

/* ---- list ---- */

/* Takes a range reply's body (the keys under the prefix and the store's
 * revision) as the whole key set, and publishes it. 0, or -1 when the body
 * is not a reply (no header): the key set is unchanged then. */
static int list_apply(struct imp_etcd *e, const char *body, size_t len)
{
    cJSON *j = cJSON_ParseWithLength(body, len);
    const cJSON *hdr = cJSON_GetObjectItemCaseSensitive(j, "header");
    if (!cJSON_IsObject(hdr)) {
        cJSON_Delete(j);
        return -1;
    }
    keys_clear(e);
    struct imp_buf k;
    imp_buf_init(&k);
    const cJSON *kvs = cJSON_GetObjectItemCaseSensitive(j, "kvs");
    const cJSON *kv;
    cJSON_ArrayForEach(kv, kvs)
    {
        if (b64_field(kv, "key", &k) == 0 && k.len) key_put(e, k.data);
    }
    imp_buf_dispose(&k);
    e->revision = json_int(hdr, "revision");
    cJSON_Delete(j);
    publish(e);
    return 0;
}

static void on_list(void *arg, int err, long status, const char *body, size_t len,
                    const char *errmsg)
{
    struct imp_etcd *e = arg;
    char why[300];
    e->req = NULL;
    if (err || status != 200) {
        snprintf(why, sizeof(why), "list failed: %s (HTTP %ld) %.*s", err ? errmsg : "", status,
                 (int)IMP_MIN(len, 200), body);
        if (status == 401 && e->cfg->etcd_username[0]) { /* auth enabled since, or expired */
            e->auth_off = 0;
            e->token[0] = '\0';
        }
        schedule_retry(e, why);
        return;
    }
    if (list_apply(e, body, len) != 0) {
        schedule_retry(e, "list: the reply has no header");
        return;
    }
    e->backoff_ms = 200;
    if (!e->synced)
        imp_info(NULL, "etcd: listed %zu keys under %s at revision %lld", e->nkeys, e->prefix,
                 e->revision);
    e->synced = 1;
    e->up = 1;
    if (e->on_synced) e->on_synced(e->arg);
    do_watch(e);
}

static void do_list(struct imp_etcd *e)
{
    if (needs_auth(e) && !e->token[0]) {
        do_auth(e);
        return;
    }
    struct imp_buf b;
    imp_buf_init(&b);
    imp_buf_putc(&b, '{');
    range_json(e, &b);
    imp_buf_putc(&b, '}');
    e->state = ST_LIST;
    post(e, "/v3/kv/range", b.data, on_list, NULL, 5000);
    imp_buf_dispose(&b);
}

/* ---- watch ---- */

/* Handles one JSON object of the watch stream. Returns 0 to go on, 1 to
 * list again (compaction or cancel), -1 to reconnect. */
static int watch_line(struct imp_etcd *e, const char *s, size_t len)
{
    cJSON *j = cJSON_ParseWithLength(s, len);
    if (!j) {
        imp_warn(NULL, "etcd: unparseable watch line: %.*s", (int)IMP_MIN(len, 200), s);
        return -1;
    }
    int rc = 0;
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(j, "result");
    if (!res) {
        const cJSON *er = cJSON_GetObjectItemCaseSensitive(j, "error");
        char *txt = cJSON_PrintUnformatted(er ? er : j);
        imp_warn(NULL, "etcd: watch error: %s", txt ? txt : "?");
        free(txt);
        if (needs_auth(e)) e->token[0] = '\0';
        cJSON_Delete(j);
        return -1;
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res, "created"))) {
        e->backoff_ms = 200;
        e->up = 1;
    }
    if (json_int(res, "compact_revision") > 0) {
        imp_warn(NULL, "etcd: watch revision %lld was compacted; listing again", e->revision + 1);
        rc = 1;
    } else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res, "canceled"))) {
        imp_warn(NULL, "etcd: watch canceled by the server; listing again");
        rc = 1;
    } else {
        struct imp_buf k;
        imp_buf_init(&k);
        int changed = 0;
        const cJSON *ev;
        cJSON_ArrayForEach(ev, cJSON_GetObjectItemCaseSensitive(res, "events"))
        {
            const cJSON *kv = cJSON_GetObjectItemCaseSensitive(ev, "kv");
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
            if (b64_field(kv, "key", &k) != 0 || !k.len) continue;
            if (cJSON_IsString(type) && strcmp(type->valuestring, "DELETE") == 0)
                key_del(e, k.data);
            else
                key_put(e, k.data);
            long long mr = json_int(kv, "mod_revision");
            if (mr > e->revision) e->revision = mr;
            changed = 1;
            e->watch_events++;
        }
        imp_buf_dispose(&k);
        const cJSON *hdr = cJSON_GetObjectItemCaseSensitive(res, "header");
        long long hr = json_int(hdr, "revision");
        /* A progress or creation header carries the store's revision; only
         * events move our position (a header revision could be ahead of
         * events not yet delivered on this stream). */
        if (changed && hr > e->revision) e->revision = hr;
        if (changed) publish(e);
    }
    cJSON_Delete(j);
    return rc;
}

static int on_watch_line(void *arg, const char *s, size_t n) { return watch_line(arg, s, n); }

static int on_watch_chunk(void *arg, const char *data, size_t len)
{
    struct imp_etcd *e = arg;
    int rc = imp_buf_take_lines(&e->line, data, len, on_watch_line, e);
    if (rc == 0) return 0;
    e->state = rc == 1 ? ST_LIST : ST_IDLE;
    return 1; /* abort the stream; on_watch_done decides what next */
}

static void on_watch_done(void *arg, int err, long status, const char *body, size_t len,
                          const char *errmsg)
{
    (void)body;
    (void)len;
    struct imp_etcd *e = arg;
    char why[300];
    e->req = NULL;
    if (e->state == ST_LIST) { /* compaction: list again now */
        do_list(e);
        return;
    }
    snprintf(why, sizeof(why), "watch stream ended: %s (HTTP %ld)",
             err ? errmsg : "closed by the server", status);
    imp_buf_reset(&e->line);
    schedule_retry(e, why);
}

static void do_watch(struct imp_etcd *e)
{
    if (needs_auth(e) && !e->token[0]) {
        do_auth(e);
        return;
    }
    struct imp_buf b;
    imp_buf_init(&b);
    imp_buf_puts(&b, "{\"create_request\":{");
    range_json(e, &b);
    imp_buf_printf(&b, ",\"start_revision\":\"%lld\",\"progress_notify\":true}}", e->revision + 1);
    e->state = ST_WATCH;
    e->watch_events = 0;
    imp_buf_reset(&e->line);
    post(e, "/v3/watch", b.data, on_watch_done, on_watch_chunk, 0);
    imp_buf_dispose(&b);
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct imp_etcd *e = w->data;
    if (e->synced)
        do_watch(e);
    else
        do_list(e);
}

struct imp_etcd *imp_etcd_create(struct ev_loop *loop, struct imp_http *http,
                                 const struct imp_config *cfg, struct imp_registry *reg,
                                 void (*on_synced)(void *arg), void *arg)
{
    struct imp_etcd *e = imp_xcalloc(1, sizeof(*e));
    e->loop = loop;
    e->http = http;
    e->cfg = cfg;
    e->reg = reg;
    e->on_synced = on_synced;
    e->arg = arg;
    e->backoff_ms = 200;
    size_t rl = strlen(cfg->etcd_root);
    e->prefix = imp_xmalloc(rl + 2);
    memcpy(e->prefix, cfg->etcd_root, rl);
    /* "openim" and "openim/" both mean the folder openim/ */
    if (rl && cfg->etcd_root[rl - 1] == '/') rl--;
    e->prefix[rl] = '/';
    e->prefix[rl + 1] = '\0';
    imp_buf_init(&e->line);
    ev_timer_init(&e->retry, on_retry, 0., 0.);
    e->retry.data = e;
    return e;
}

void imp_etcd_start(struct imp_etcd *e) { do_list(e); }

int imp_etcd_synced(const struct imp_etcd *e) { return e->synced; }
int imp_etcd_up(const struct imp_etcd *e) { return e->up; }

void imp_etcd_destroy(struct imp_etcd *e)
{
    if (!e) return;
    ev_timer_stop(e->loop, &e->retry);
    if (e->req) imp_http_cancel(e->req);
    keys_clear(e);
    imp_buf_dispose(&e->line);
    free(e->prefix);
    free(e);
}

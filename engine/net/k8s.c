/*
 * Kubernetes API client state machine:
 *
 *   LIST ──► WATCH ──stream ends──► WATCH again (from the last resourceVersion)
 *    ▲         │
 *    └─────────┘ 410 Gone / "too old resource version"
 *
 * Failures back off (200 ms doubling to 5 s). One list and one watch cover
 * the whole namespace's Endpoints; objects of other names are ignored.
 * Watch events arrive as newline-delimited JSON; a partial line waits for
 * the next chunk.
 */
#include "net/k8s.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/common.h"
#include "base/log.h"
#include "base/metrics.h"

enum state { ST_IDLE, ST_LIST, ST_WATCH, ST_RELIST };

/* One tracked service: its Endpoints name and what the object says now. */
struct svc {
    const char *name; /* the registry's name */
    char *ep;         /* the Endpoints object's name */
    int port_hint;    /* the name's ":port", 0 when none */
    size_t n;
    char **addrs;
    char **keys;
    int warned_port; /* said once that no port could be chosen */
};

struct imp_k8s {
    struct ev_loop *loop;
    struct imp_http *http;
    const struct imp_config *cfg;
    struct imp_registry *reg;
    void (*on_synced)(void *);
    void *arg;

    int state;
    char rv[64]; /* resourceVersion to watch from */
    int synced;
    int up;
    int backoff_ms;
    ev_timer retry;
    struct imp_http_req *req;
    struct imp_buf line;
    uint64_t watch_started_ms;
    int watch_events;
    char ca[600];

    size_t nsvc;
    struct svc *svcs;
};

static void do_list(struct imp_k8s *k);
static void do_watch(struct imp_k8s *k);

static void retry_in(struct imp_k8s *k, int ms)
{
    ev_timer_stop(k->loop, &k->retry);
    ev_timer_set(&k->retry, ms / 1000.0, 0.);
    ev_timer_start(k->loop, &k->retry);
}

static void schedule_retry(struct imp_k8s *k, const char *why)
{
    k->req = NULL;
    k->up = 0;
    k->state = ST_IDLE;
    imp_warn(NULL, "kubernetes %s: %s; retrying in %d ms", k->cfg->k8s_api, why, k->backoff_ms);
    imp_metrics_inc("impulse_kubernetes_errors_total", NULL, 1);
    retry_in(k, k->backoff_ms);
    k->backoff_ms = k->backoff_ms * 2 > 5000 ? 5000 : k->backoff_ms * 2;
}

void imp_k8s_ring_name(char *out, size_t cap, const char *pod, const char *ns, int port)
{
    size_t n = strlen(pod), d = n;
    while (d > 0 && pod[d - 1] >= '0' && pod[d - 1] <= '9') d--;
    size_t base = d < n && d > 0 && pod[d - 1] == '-' ? d - 1 : n;
    snprintf(out, cap, "%s.%.*s-headless.%s.svc.cluster.local:%d", pod, (int)base, pod, ns, port);
}

/* ---- what an Endpoints object says ---- */

static void svc_clear(struct svc *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->addrs[i]);
        free(s->keys[i]);
    }
    free(s->addrs);
    free(s->keys);
    s->addrs = s->keys = NULL;
    s->n = 0;
}

static struct svc *svc_of(struct imp_k8s *k, const char *ep)
{
    for (size_t i = 0; i < k->nsvc; i++)
        if (strcmp(k->svcs[i].ep, ep) == 0) return &k->svcs[i];
    return NULL;
}

/* The port of a subset impulse dials: the one named "grpc" (OpenIM's
 * rule, tools@v0.0.50-alpha.106:discovery/kubernetes/kubernetes.go:86-151);
 * else one whose name starts with "grpc" (OpenIM main's own manifests name
 * it "grpc-10140"); else the port the configured name gives; else the only
 * one. 0 when none fits. */
static int pick_port(struct svc *s, const cJSON *ports)
{
    const cJSON *p;
    int prefixed = 0, hinted = 0, only = 0, count = 0;
    cJSON_ArrayForEach(p, ports)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(p, "name");
        const cJSON *num = cJSON_GetObjectItemCaseSensitive(p, "port");
        if (!cJSON_IsNumber(num) || num->valuedouble < 1 || num->valuedouble > 65535) continue;
        int port = (int)num->valuedouble;
        count++;
        only = port;
        if (cJSON_IsString(name) && strcmp(name->valuestring, "grpc") == 0) return port;
        if (cJSON_IsString(name) && strncmp(name->valuestring, "grpc", 4) == 0 && !prefixed)
            prefixed = port;
        if (port == s->port_hint) hinted = port;
    }
    return prefixed ? prefixed : hinted ? hinted : count == 1 ? only : 0;
}

/* Takes an Endpoints object (NULL: deleted) as what service s has now. */
static void svc_take(struct imp_k8s *k, struct svc *s, const cJSON *obj)
{
    svc_clear(s);
    const cJSON *sub;
    char addr[128], key[512];
    const cJSON *subsets = NULL;
    if (obj) subsets = cJSON_GetObjectItemCaseSensitive(obj, "subsets");
    cJSON_ArrayForEach(sub, subsets)
    {
        int port = pick_port(s, cJSON_GetObjectItemCaseSensitive(sub, "ports"));
        const cJSON *addrs = cJSON_GetObjectItemCaseSensitive(sub, "addresses");
        if (!port) {
            if (cJSON_GetArraySize(addrs) > 0 && !s->warned_port) {
                imp_warn(NULL,
                         "kubernetes: Endpoints '%s' lists no port impulse can use: name the "
                         "gRPC port \"grpc\" (as OpenIM requires); its addresses are ignored",
                         s->ep);
                s->warned_port = 1;
            }
            continue;
        }
        const cJSON *a;
        /* only ready addresses: notReadyAddresses are not dialled */
        cJSON_ArrayForEach(a, addrs)
        {
            const cJSON *ip = cJSON_GetObjectItemCaseSensitive(a, "ip");
            unsigned char bin[16];
            /* an address that is not an IP (a broken or hostile server) is
             * skipped, never dialled or cut */
            if (!cJSON_IsString(ip) || (inet_pton(AF_INET, ip->valuestring, bin) != 1 &&
                                        inet_pton(AF_INET6, ip->valuestring, bin) != 1))
                continue;
            snprintf(addr, sizeof(addr), strchr(ip->valuestring, ':') ? "[%s]:%d" : "%s:%d",
                     ip->valuestring, port);
            const cJSON *ref = cJSON_GetObjectItemCaseSensitive(a, "targetRef");
            const cJSON *pod = cJSON_GetObjectItemCaseSensitive(ref, "name");
            const cJSON *host = cJSON_GetObjectItemCaseSensitive(a, "hostname");
            const char *pn = NULL;
            if (cJSON_IsString(pod))
                pn = pod->valuestring;
            else if (cJSON_IsString(host))
                pn = host->valuestring;
            if (pn && pn[0])
                imp_k8s_ring_name(key, sizeof(key), pn, k->cfg->k8s_namespace,
                                  k->cfg->gw_hash_port);
            else
                snprintf(key, sizeof(key), "%s", addr);
            s->addrs = imp_xrealloc(s->addrs, (s->n + 1) * sizeof(char *));
            s->keys = imp_xrealloc(s->keys, (s->n + 1) * sizeof(char *));
            s->addrs[s->n] = imp_xstrdup(addr);
            s->keys[s->n] = imp_xstrdup(key);
            s->n++;
        }
    }
}

static void publish(struct imp_k8s *k)
{
    for (size_t i = 0; i < k->nsvc; i++) {
        struct svc *s = &k->svcs[i];
        if (imp_registry_publish_keyed(k->reg, s->name, s->addrs, s->keys, s->n) != 1) continue;
        struct imp_buf b;
        imp_buf_init(&b);
        imp_buf_puts(&b, "\"service\":");
        imp_buf_json_cstr(&b, s->name);
        imp_buf_puts(&b, ",\"endpoints\":");
        imp_buf_json_cstr(&b, s->ep);
        imp_buf_puts(&b, ",\"addrs\":[");
        for (size_t j = 0; j < s->n; j++) {
            if (j) imp_buf_putc(&b, ',');
            imp_buf_json_cstr(&b, s->addrs[j]);
        }
        imp_buf_putc(&b, ']');
        imp_log_fields(IMP_LOG_INFO, NULL, "service nodes changed", b.data);
        imp_buf_dispose(&b);
    }
}

static const char *obj_name(const cJSON *obj)
{
    const cJSON *n =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "name");
    return cJSON_IsString(n) ? n->valuestring : NULL;
}

static void take_rv(struct imp_k8s *k, const cJSON *obj)
{
    const cJSON *rv = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "resourceVersion");
    if (cJSON_IsString(rv) && rv->valuestring[0] && strlen(rv->valuestring) < sizeof(k->rv))
        snprintf(k->rv, sizeof(k->rv), "%s", rv->valuestring);
}

/* ---- requests ---- */

static struct imp_http_req *get(struct imp_k8s *k, const char *query, imp_http_done_cb done,
                                imp_http_chunk_cb chunk, int timeout_ms)
{
    char url[1024], tokpath[600], auth[4200];
    const char *headers[3] = {"Accept: application/json", NULL, NULL};
    snprintf(tokpath, sizeof(tokpath), "%s/token", k->cfg->k8s_sa_dir);
    FILE *f = fopen(tokpath, "r");
    if (f) {
        char tok[4096];
        size_t n = fread(tok, 1, sizeof(tok) - 1, f);
        fclose(f);
        tok[n] = '\0';
        tok[strcspn(tok, "\r\n")] = '\0';
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
        headers[1] = auth;
    }
    snprintf(url, sizeof(url), "%s/api/v1/namespaces/%s/endpoints%s", k->cfg->k8s_api,
             k->cfg->k8s_namespace, query);
    struct imp_http_opts o = {
        .method = "GET",
        .url = url,
        .headers = headers,
        .timeout_ms = timeout_ms,
        .connect_timeout_ms = 3000,
        .on_chunk = chunk,
        .ca_file = k->ca,
        .on_done = done,
        .arg = k,
    };
    return imp_http_request(k->http, &o);
}

/* ---- list ---- */

/* Takes an EndpointsList reply as what every tracked service has now, and
 * publishes it. 0, or -1 when the body is not such a list (nothing changes). */
static int list_apply(struct imp_k8s *k, const char *body, size_t len)
{
    cJSON *j = cJSON_ParseWithLength(body, len);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "items");
    if (!cJSON_IsArray(items)) {
        cJSON_Delete(j);
        return -1;
    }
    for (size_t i = 0; i < k->nsvc; i++) svc_clear(&k->svcs[i]);
    const cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *name = obj_name(it);
        struct svc *s = name ? svc_of(k, name) : NULL;
        if (s) svc_take(k, s, it);
    }
    take_rv(k, j);
    cJSON_Delete(j);
    publish(k);
    return 0;
}

static void on_list(void *arg, int err, long status, const char *body, size_t len,
                    const char *errmsg)
{
    struct imp_k8s *k = arg;
    char why[400];
    k->req = NULL;
    if (err || status != 200) {
        snprintf(why, sizeof(why), "list of Endpoints in namespace %s failed: %s (HTTP %ld) %.*s",
                 k->cfg->k8s_namespace, err ? errmsg : "", status, (int)IMP_MIN(len, 240), body);
        schedule_retry(k, why);
        return;
    }
    if (list_apply(k, body, len) != 0) {
        schedule_retry(k, "list: the reply is not an EndpointsList");
        return;
    }
    if (!k->synced) {
        imp_info(NULL, "kubernetes: listed the Endpoints of namespace %s at resourceVersion %s",
                 k->cfg->k8s_namespace, k->rv);
        for (size_t i = 0; i < k->nsvc; i++)
            if (k->svcs[i].n == 0)
                imp_warn(NULL,
                         "kubernetes: no ready address in Endpoints '%s' of namespace %s (service "
                         "%s)%s",
                         k->svcs[i].ep, k->cfg->k8s_namespace, k->svcs[i].name,
                         strpbrk(k->svcs[i].ep, "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
                             ? ": Kubernetes names are lower case; set the service name "
                               "(share.yml rpcRegisterName, discovery.yml rpcService) to the "
                               "Service's name"
                             : "");
    }
    k->backoff_ms = 200;
    k->synced = 1;
    k->up = 1;
    if (k->on_synced) k->on_synced(k->arg);
    do_watch(k);
}

static void do_list(struct imp_k8s *k)
{
    k->state = ST_LIST;
    k->req = get(k, "", on_list, NULL, 10000);
    if (!k->req) schedule_retry(k, "cannot start an HTTP request");
}

/* ---- watch ---- */

/* One event. 0 to go on, 1 to list again, -1 to reconnect. */
static int watch_line(struct imp_k8s *k, const char *line, size_t len)
{
    cJSON *j = cJSON_ParseWithLength(line, len);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(j, "object");
    int rc = 0;
    if (!cJSON_IsString(type) || !cJSON_IsObject(obj)) {
        imp_warn(NULL, "kubernetes: unparseable watch event: %.*s", (int)IMP_MIN(len, 200), line);
        rc = -1;
    } else if (strcmp(type->valuestring, "ERROR") == 0) {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(obj, "code");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(obj, "message");
        int gone = cJSON_IsNumber(code) && code->valuedouble == 410;
        imp_warn(NULL, "kubernetes: watch error %d: %s%s",
                 cJSON_IsNumber(code) ? code->valueint : 0,
                 cJSON_IsString(msg) ? msg->valuestring : "?", gone ? "; listing again" : "");
        rc = gone ? 1 : -1;
    } else {
        take_rv(k, obj);
        k->watch_events++;
        k->up = 1;
        const char *name = obj_name(obj);
        struct svc *s = name ? svc_of(k, name) : NULL;
        if (s && strcmp(type->valuestring, "BOOKMARK") != 0) {
            svc_take(k, s, strcmp(type->valuestring, "DELETED") == 0 ? NULL : obj);
            publish(k);
        }
    }
    cJSON_Delete(j);
    return rc;
}

static int on_watch_line(void *arg, const char *s, size_t n) { return watch_line(arg, s, n); }

static int on_watch_chunk(void *arg, const char *data, size_t len)
{
    struct imp_k8s *k = arg;
    int rc = imp_buf_take_lines(&k->line, data, len, on_watch_line, k);
    if (rc == 0) return 0;
    k->state = rc == 1 ? ST_RELIST : ST_IDLE;
    return 1; /* abort the stream; on_watch_done decides what next */
}

static void on_watch_done(void *arg, int err, long status, const char *body, size_t len,
                          const char *errmsg)
{
    struct imp_k8s *k = arg;
    char why[400];
    k->req = NULL;
    imp_buf_reset(&k->line);
    if (k->state == ST_RELIST || status == 410) {
        do_list(k);
        return;
    }
    if (!err && status == 200 && k->state == ST_WATCH) {
        /* the server ended the stream (its timeout): watch on from where it
         * stopped; at once if it was a healthy stream */
        int lived = imp_now_ms() - k->watch_started_ms >= 1000 || k->watch_events > 0;
        if (lived) k->backoff_ms = 200;
        k->state = ST_IDLE;
        retry_in(k, lived ? 0 : k->backoff_ms);
        if (!lived) k->backoff_ms = k->backoff_ms * 2 > 5000 ? 5000 : k->backoff_ms * 2;
        return;
    }
    snprintf(why, sizeof(why), "watch ended: %s (HTTP %ld) %.*s",
             err ? errmsg : "closed by the server", status, (int)IMP_MIN(len, 240),
             body ? body : "");
    schedule_retry(k, why);
}

static void do_watch(struct imp_k8s *k)
{
    char q[256];
    /* the server ends a watch after timeoutSeconds; bookmarks keep the
     * resourceVersion fresh so a resumed watch rarely meets 410 */
    snprintf(q, sizeof(q), "?watch=1&allowWatchBookmarks=true&timeoutSeconds=290%s%s",
             k->rv[0] ? "&resourceVersion=" : "", k->rv);
    k->state = ST_WATCH;
    k->watch_events = 0;
    k->watch_started_ms = imp_now_ms();
    imp_buf_reset(&k->line);
    k->req = get(k, q, on_watch_done, on_watch_chunk, 0);
    if (!k->req) schedule_retry(k, "cannot start an HTTP request");
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct imp_k8s *k = w->data;
    if (k->synced)
        do_watch(k);
    else
        do_list(k);
}

struct imp_k8s *imp_k8s_create(struct ev_loop *loop, struct imp_http *http,
                               const struct imp_config *cfg, struct imp_registry *reg,
                               void (*on_synced)(void *arg), void *arg)
{
    struct imp_k8s *k = imp_xcalloc(1, sizeof(*k));
    k->loop = loop;
    k->http = http;
    k->cfg = cfg;
    k->reg = reg;
    k->on_synced = on_synced;
    k->arg = arg;
    k->backoff_ms = 200;
    snprintf(k->ca, sizeof(k->ca), "%s/ca.crt", cfg->k8s_sa_dir);
    const char *const *names;
    k->nsvc = imp_registry_names(reg, &names);
    k->svcs = imp_xcalloc(k->nsvc ? k->nsvc : 1, sizeof(*k->svcs));
    for (size_t i = 0; i < k->nsvc; i++) {
        struct svc *s = &k->svcs[i];
        const char *colon = strrchr(names[i], ':');
        s->name = names[i];
        s->ep = colon ? imp_xstrndup(names[i], (size_t)(colon - names[i])) : imp_xstrdup(names[i]);
        s->port_hint = colon ? atoi(colon + 1) : 0;
    }
    imp_buf_init(&k->line);
    ev_timer_init(&k->retry, on_retry, 0., 0.);
    k->retry.data = k;
    return k;
}

void imp_k8s_start(struct imp_k8s *k) { do_list(k); }
int imp_k8s_synced(const struct imp_k8s *k) { return k->synced; }
int imp_k8s_up(const struct imp_k8s *k) { return k->up; }

void imp_k8s_destroy(struct imp_k8s *k)
{
    if (!k) return;
    ev_timer_stop(k->loop, &k->retry);
    if (k->req) imp_http_cancel(k->req);
    for (size_t i = 0; i < k->nsvc; i++) {
        svc_clear(&k->svcs[i]);
        free(k->svcs[i].ep);
    }
    free(k->svcs);
    imp_buf_dispose(&k->line);
    free(k);
}

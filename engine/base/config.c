/*
 * Config loader. Reads the YAML tree section by section with typed getters
 * that know the key's full dotted name, so every error names it. Keys that
 * OpenIM's files carry but impulse does not use are ignored (those files are
 * shared with the rest of an OpenIM deployment); unknown keys in the
 * `impulse:` section are errors, since a typo there would silently fall
 * back to a default.
 *
 * Called at start and by `impulse check` (main.c); the config is
 * read-only afterwards and shared by every thread without a lock.
 */
#include "base/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/common.h"
#include "base/log.h"
#include "base/yamltree.h"

#ifndef IMPULSE_LUA_DIR
#define IMPULSE_LUA_DIR "lua"
#endif

struct reader {
    char *err;
    size_t errlen;
    int failed;
    int index;        /* -i: which of rpc.ports and prometheus.ports, as OpenIM */
    const char *base; /* the config's folder: relative paths it gives resolve here */
};

static void fail(struct reader *r, const char *section, const char *key, const struct imp_yaml *at,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void fail(struct reader *r, const char *section, const char *key, const struct imp_yaml *at,
                 const char *fmt, ...)
{
    if (r->failed) return;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (at && at->line > 0)
        snprintf(r->err, r->errlen, "config: %s%s%s: %s (line %d)", section, key ? "." : "",
                 key ? key : "", what, at->line);
    else
        snprintf(r->err, r->errlen, "config: %s%s%s: %s", section, key ? "." : "", key ? key : "",
                 what);
    r->failed = 1;
}

/* A key of a map, as OpenIM's loader (viper) matches keys: regardless of
 * case (main's openim-push.yml says getui: where v3.8.3's says geTui:),
 * the exact spelling first. */
static struct imp_yaml *yget(const struct imp_yaml *map, const char *key)
{
    struct imp_yaml *y = imp_yaml_get(map, key);
    if (y || !map || map->kind != IMP_YAML_MAP) return y;
    for (size_t i = 0; i < map->n; i++)
        if (strcasecmp(map->keys[i], key) == 0) return map->items[i];
    return NULL;
}

/* Resolves a dotted key ("etcd.address") inside a section map. */
static const struct imp_yaml *lookup(const struct imp_yaml *sec, const char *key)
{
    char part[128];
    const char *p = key;
    const struct imp_yaml *n = sec;
    while (n && *p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len >= sizeof(part)) return NULL;
        memcpy(part, p, len);
        part[len] = '\0';
        n = yget(n, part);
        p = dot ? dot + 1 : p + len;
    }
    return n;
}

static bool is_null(const struct imp_yaml *n)
{
    return n && n->kind == IMP_YAML_SCALAR && !n->quoted &&
           (n->scalar[0] == '\0' || strcmp(n->scalar, "~") == 0 || strcmp(n->scalar, "null") == 0);
}

static char *get_str(struct reader *r, const struct imp_yaml *sec, const char *sname,
                     const char *key, const char *def)
{
    const struct imp_yaml *n = lookup(sec, key);
    if (!n || (is_null(n) && def)) return def ? imp_xstrdup(def) : NULL;
    if (n->kind != IMP_YAML_SCALAR) {
        fail(r, sname, key, n, "expected a string");
        return NULL;
    }
    return imp_xstrdup(n->scalar);
}

/* A path the config gives (not a default) that is relative resolves against
 * the config's folder, as OpenIM resolves fcm.filePath against -c: the
 * result does not depend on the working directory. Rewrites the node. */
static void resolve_node(const struct reader *r, struct imp_yaml *n)
{
    if (!r->base || !n || n->kind != IMP_YAML_SCALAR || !n->scalar || !n->scalar[0] ||
        n->scalar[0] == '/')
        return;
    size_t len = strlen(r->base) + strlen(n->scalar) + 2;
    char *p = imp_xmalloc(len);
    snprintf(p, len, "%s/%s", r->base, n->scalar);
    free(n->scalar);
    n->scalar = p;
}

/* resolve_node for the node at key under sec, if any. */
static void resolve_key(const struct reader *r, const struct imp_yaml *sec, const char *key)
{
    resolve_node(r, (struct imp_yaml *)lookup(sec, key));
}

static long get_int(struct reader *r, const struct imp_yaml *sec, const char *sname,
                    const char *key, long def, long min, long max)
{
    const struct imp_yaml *n = lookup(sec, key);
    if (!n || is_null(n)) return def;
    char *end = NULL;
    errno = 0;
    long v = n->kind == IMP_YAML_SCALAR ? strtol(n->scalar, &end, 10) : 0;
    if (n->kind != IMP_YAML_SCALAR || n->quoted || !end || end == n->scalar || *end || errno) {
        fail(r, sname, key, n, "expected an integer");
        return def;
    }
    if (v < min || v > max) {
        fail(r, sname, key, n, "%ld is out of range [%ld, %ld]", v, min, max);
        return def;
    }
    return v;
}

static bool get_bool(struct reader *r, const struct imp_yaml *sec, const char *sname,
                     const char *key, bool def)
{
    const struct imp_yaml *n = lookup(sec, key);
    if (!n || is_null(n)) return def;
    if (n->kind == IMP_YAML_SCALAR && !n->quoted) {
        if (!strcasecmp(n->scalar, "true") || !strcasecmp(n->scalar, "yes") ||
            !strcasecmp(n->scalar, "on"))
            return true;
        if (!strcasecmp(n->scalar, "false") || !strcasecmp(n->scalar, "no") ||
            !strcasecmp(n->scalar, "off"))
            return false;
    }
    fail(r, sname, key, n, "expected true or false");
    return def;
}

/* A list of strings; a single scalar is accepted as a one-item list. */
static void get_list(struct reader *r, const struct imp_yaml *sec, const char *sname,
                     const char *key, struct imp_strlist *out)
{
    const struct imp_yaml *n = lookup(sec, key);
    out->n = 0;
    out->v = NULL;
    if (!n || is_null(n)) return;
    if (n->kind == IMP_YAML_SCALAR) {
        out->v = imp_xcalloc(1, sizeof(char *));
        out->v[0] = imp_xstrdup(n->scalar);
        out->n = 1;
        return;
    }
    if (n->kind != IMP_YAML_SEQ) {
        fail(r, sname, key, n, "expected a list of strings");
        return;
    }
    out->v = imp_xcalloc(n->n, sizeof(char *));
    for (size_t i = 0; i < n->n; i++) {
        if (n->items[i]->kind != IMP_YAML_SCALAR) {
            fail(r, sname, key, n->items[i], "item %zu is not a string", i + 1);
            return;
        }
        out->v[out->n++] = imp_xstrdup(n->items[i]->scalar);
    }
}

static void free_list(struct imp_strlist *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int imp_split_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon;
    size_t hl;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return -2;
        hl = (size_t)(close - s - 1);
        if (hl >= hostlen) return -2;
        memcpy(host, s + 1, hl);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) return -2;
        hl = (size_t)(colon - s);
        if (hl == 0 || hl >= hostlen) return -2;
        memcpy(host, s, hl);
    }
    host[hl] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || p < 0 || p > 65535) return -2;
    *port = (int)p;
    return 0;
}

/* openim-push's key (rpc.ports, prometheus.ports): the port of this
 * process's index (-i), as OpenIM takes ports[index]. 0 after a failure. */
static int pick_port(struct reader *r, const struct imp_yaml *s, const char *key, const char *why)
{
    struct imp_strlist ports;
    get_list(r, s, "openim-push", key, &ports);
    int port = 0;
    if ((size_t)r->index >= ports.n) {
        fail(r, "openim-push", key, lookup(s, key),
             "%s but there is no port for index %d (-i; %zu listed)", why, r->index, ports.n);
    } else {
        char *end;
        long p = strtol(ports.v[r->index], &end, 10);
        if (*end || p <= 0 || p > 65535)
            fail(r, "openim-push", key, lookup(s, key), "'%s' is not a port", ports.v[r->index]);
        else
            port = (int)p;
    }
    free_list(&ports);
    return port;
}

/* 127.0.0.0/8, ::1 or localhost */
static bool is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

static void check_addrs(struct reader *r, const char *sname, const char *key,
                        const struct imp_yaml *sec, const struct imp_strlist *l, bool required)
{
    char host[256];
    int port;
    if (required && l->n == 0) {
        fail(r, sname, key, lookup(sec, key), "at least one host:port is required");
        return;
    }
    for (size_t i = 0; i < l->n; i++) {
        if (imp_split_hostport(l->v[i], host, sizeof(host), &port) < 0 || port == 0) {
            fail(r, sname, key, lookup(sec, key), "'%s' is not host:port", l->v[i]);
            return;
        }
    }
}

static void read_lru(struct reader *r, const struct imp_yaml *sec, const char *which,
                     struct imp_lru_config *c, const char *topic)
{
    char k[64];
#define K(x) (snprintf(k, sizeof(k), "%s.%s", which, x), k)
    c->topic = get_str(r, sec, "local-cache", K("topic"), topic);
    c->slot_num = (int)get_int(r, sec, "local-cache", K("slotNum"), 100, 1, 1 << 20);
    c->slot_size = (int)get_int(r, sec, "local-cache", K("slotSize"), 2000, 1, 1 << 24);
    c->success_expire_s =
        (int)get_int(r, sec, "local-cache", K("successExpire"), 300, 0, 86400 * 30);
    c->failed_expire_s = (int)get_int(r, sec, "local-cache", K("failedExpire"), 5, 0, 86400 * 30);
#undef K
}

static const char *impulse_keys[] = {
    "workers",
    "scripts",
    "luaPath",
    "admin",
    "maxInflight",
    "gatewayTimeoutMs",
    "rpcTimeoutMs",
    "drainTimeoutMs",
    "longTimePushMs",
    "maxGrpcMessageBytes",
    "routeLogUsers",
    "autoOffsetReset",
    "sessionTimeoutMs",
    "heartbeatIntervalMs",
    "commitIntervalMs",
    "logLevel",
    "scriptBudgetMs",
    "scriptMemoryMB",
    "scriptJit",
    "deadLetterTopic",
    "offlineDeadLetterTopic",
    "deadLetterSpool",
    "deadLetterSpoolMB",
    "fetchWaitMs",
    "serveRpc",
    "consumeOffline",
    "offlineDedupe",
    "offlineDedupeWindowS",
    "providers",
    "apps",
    "registerTtlS",
    "reloadQuietMs",
    "gatewayBreakerFailures",
    "gatewayBreakerOpenMs",
    "workerStuckMs",
    "workerStuckExit",
    "crashJournal",
    "poisonDeaths",
    "openim",
    "adminToken",
    "discovery",
    "kubernetesServiceAccount",
    "gatewaySelection",
    "grpcClient",
    "logFormat",
    NULL,
};

/* A YAML subtree as JSON: unquoted true/false become booleans, unquoted
 * numbers numbers, other scalars strings. */
static void yaml_json(struct imp_buf *b, const struct imp_yaml *y)
{
    if (!y) {
        imp_buf_puts(b, "null");
        return;
    }
    if (y->kind == IMP_YAML_SCALAR) {
        const char *v = y->scalar ? y->scalar : "";
        char *end;
        if (!y->quoted && (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)) {
            imp_buf_puts(b, v);
            return;
        }
        if (!y->quoted && v[0] && (strtod(v, &end), *end == '\0') &&
            strspn(v, "0123456789.-+eE") == strlen(v)) {
            imp_buf_puts(b, v);
            return;
        }
        imp_buf_json_cstr(b, v);
        return;
    }
    imp_buf_putc(b, y->kind == IMP_YAML_MAP ? '{' : '[');
    for (size_t i = 0; i < y->n; i++) {
        if (i) imp_buf_putc(b, ',');
        if (y->kind == IMP_YAML_MAP) {
            imp_buf_json_cstr(b, y->keys[i]);
            imp_buf_putc(b, ':');
        }
        yaml_json(b, y->items[i]);
    }
    imp_buf_putc(b, y->kind == IMP_YAML_MAP ? '}' : ']');
}

/* The providers' settings as one JSON object for the transports (Lua):
 * OpenIM's geTui, fcm, jpush and iosPush of openim-push,
 * impulse.providers, and impulse.apps (each app's own accounts, as
 * written). Validated by the transports (impulse.transport.common). */
static char *providers_json(const struct imp_yaml *push, const struct imp_yaml *imp)
{
    static const char *const openim[] = {"geTui", "fcm", "jpush", "iosPush"};
    struct imp_buf b;
    imp_buf_init(&b);
    imp_buf_putc(&b, '{');
    for (size_t i = 0; i < IMP_ARRAY_LEN(openim); i++) {
        imp_buf_printf(&b, "\"%s\":", openim[i]);
        yaml_json(&b, push ? yget(push, openim[i]) : NULL);
        imp_buf_putc(&b, ',');
    }
    imp_buf_puts(&b, "\"impulse\":");
    yaml_json(&b, imp ? yget(imp, "providers") : NULL);
    imp_buf_puts(&b, ",\"apps\":");
    yaml_json(&b, imp ? yget(imp, "apps") : NULL);
    imp_buf_putc(&b, '}');
    return imp_buf_steal(&b, NULL);
}

/* impulse.openim: which OpenIM release's openim-push to copy where
 * releases differ (docs/openim-versions.md has the table, each row with
 * OpenIM's file and line). Accepted: v3.8.3, v3.8.3-patch.1 … patch.16,
 * v3.8.3-patch (= the newest patch read, .16), v3.8.4-alpha.1, v3.8.4 (=
 * alpha.1: there is no v3.8.4 tag). Absent: detected from the layout of
 * OpenIM's own files, which changed at v3.8.4-alpha.1 (discovery.yml
 * rpcService), patch.12 (redis.yml redisMode) and patch.5 (share.yml
 * rpcMaxBodySize); v3.8.3 to patch.4 share one layout. */
/* Appends one line (a newline before it when b is not empty). */
static void add_line(struct imp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_line(struct imp_buf *b, const char *fmt, ...)
{
    va_list ap;
    if (b->len) imp_buf_putc(b, '\n');
    va_start(ap, fmt);
    imp_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

#define OPENIM_NEWEST_PATCH 16

static void read_openim(struct reader *r, struct imp_config *c, const struct imp_yaml *root)
{
    const struct imp_yaml *imp = yget(root, "impulse");
    const struct imp_yaml *n = imp && imp->kind == IMP_YAML_MAP ? yget(imp, "openim") : NULL;
    int patch = 0;
    bool v384 = false, main = false;
    if (n && !is_null(n)) {
        const char *v = n->kind == IMP_YAML_SCALAR ? n->scalar : "";
        if (*v == 'v' || *v == 'V') v++;
        int len = -1;
        if (strcmp(v, "3.8.3") == 0) {
            patch = 0;
        } else if (strcmp(v, "3.8.3-patch") == 0) {
            patch = OPENIM_NEWEST_PATCH;
        } else if (strcmp(v, "3.8.4") == 0 || strcmp(v, "3.8.4-alpha.1") == 0) {
            v384 = true;
        } else if (strcmp(v, "main") == 0) {
            v384 = main = true;
        } else if (sscanf(v, "3.8.3-patch.%d%n", &patch, &len) == 1 && len == (int)strlen(v) &&
                   patch >= 1 && patch <= OPENIM_NEWEST_PATCH && v[strlen("3.8.3-patch.")] != '0') {
            /* an exact patch tag */
        } else if (len == (int)strlen(v) && patch > OPENIM_NEWEST_PATCH) {
            fail(r, "impulse", "openim", n,
                 "v3.8.3-patch.%d has not been read yet (the newest read is patch.%d; name it if "
                 "its push path is unchanged)",
                 patch, OPENIM_NEWEST_PATCH);
            return;
        } else {
            fail(r, "impulse", "openim", n,
                 "unknown OpenIM release '%s' (supported: v3.8.3, v3.8.3-patch.1 to "
                 "v3.8.3-patch.%d, v3.8.3-patch, v3.8.4-alpha.1, v3.8.4, main)",
                 n->kind == IMP_YAML_SCALAR ? n->scalar : "(not a string)", OPENIM_NEWEST_PATCH);
            return;
        }
        snprintf(c->openim_origin, sizeof(c->openim_origin), "set by impulse.openim '%s'",
                 n->scalar);
    } else {
        const struct imp_yaml *disc = yget(root, "discovery");
        const struct imp_yaml *redis = yget(root, "redis");
        const struct imp_yaml *share = yget(root, "share");
        const char *why;
        if (lookup(share, "imAdminUser") || lookup(disc, "kubernetes") ||
            lookup(redis, "sentinelMode")) {
            v384 = main = true;
            why = "share.imAdminUser, discovery.kubernetes or redis.sentinelMode is set (the "
                  "layout of open-im-server's main after v3.8.4-alpha.1)";
        } else if (lookup(disc, "rpcService")) {
            v384 = true;
            why = "discovery.rpcService is set (v3.8.4's layout)";
        } else if (lookup(redis, "redisMode")) {
            patch = 12;
            why = "redis.redisMode is set (the layout of patch.12 and later)";
        } else if (lookup(share, "rpcMaxBodySize")) {
            patch = 5;
            why = "share.rpcMaxBodySize is set (the layout of patch.5 to patch.11)";
        } else {
            why = "no mark of a later release in the config (v3.8.3 to patch.4 share one layout: "
                  "set impulse.openim for patch.3 or patch.4)";
        }
        snprintf(c->openim_origin, sizeof(c->openim_origin), "detected: %s", why);
    }
    c->openim_patch = patch;
    c->openim_v384 = v384;
    c->openim_main = main;
    if (main)
        snprintf(c->openim_version, sizeof(c->openim_version), "main");
    else if (v384)
        snprintf(c->openim_version, sizeof(c->openim_version), "v3.8.4-alpha.1");
    else if (patch)
        snprintf(c->openim_version, sizeof(c->openim_version), "v3.8.3-patch.%d", patch);
    else
        snprintf(c->openim_version, sizeof(c->openim_version), "v3.8.3");
    /* behaviour groups: the push path is byte-identical inside each one */
    snprintf(c->openim_profile, sizeof(c->openim_profile), "%s",
             main         ? "main"
             : v384       ? "v3.8.4-alpha.1"
             : patch >= 5 ? "v3.8.3-patch.5"
             : patch >= 3 ? "v3.8.3-patch.3"
                          : "v3.8.3");
    c->op_user_admin = !v384 && patch >= 5;
    /* main runs every consumed toPush record as a temporary admin: its calls
     * carry customheader ctxImTempAdminKey and ctximtempadminkey 1, which
     * main's group service needs for GetGroupMemberUserIDs
     * (OpenIM@main:internal/push/push.go:111, pkg/authverify/token.go:93-111) */
    c->rpc_temp_admin = main;

    /* keys of another release's layout: that release reads them, this one
     * does not (docs/openim-versions.md); said, not refused */
    struct imp_buf w;
    imp_buf_init(&w);
    const struct imp_yaml *disc = yget(root, "discovery"), *redis = yget(root, "redis"),
                          *share = yget(root, "share");
    if (!v384 && lookup(disc, "rpcService"))
        add_line(&w,
                 "config: discovery.rpcService belongs to v3.8.4's layout; %s reads the service "
                 "names from share.rpcRegisterName",
                 c->openim_version);
    if (v384 && lookup(share, "rpcRegisterName"))
        add_line(&w,
                 "config: share.rpcRegisterName belongs to v3.8.3's layout; %s reads the service "
                 "names from discovery.rpcService",
                 c->openim_version);
    const struct imp_yaml *db = lookup(redis, "db");
    if (((v384 && !main) || (!v384 && patch < 7)) && db && db->kind == IMP_YAML_SCALAR &&
        strcmp(db->scalar, "0") != 0 && !lookup(redis, "storage"))
        add_line(&w,
                 "config: redis.db is ignored by %s, which reads the database from redis.storage "
                 "(OpenIM's services use database 0 then; patch.7 reads db)",
                 c->openim_version);
    if (((v384 && !main) || (!v384 && patch < 12)) && lookup(redis, "redisMode"))
        add_line(&w,
                 "config: redis.redisMode belongs to the layout of v3.8.3-patch.12 and later; %s "
                 "reads redis.clusterMode",
                 c->openim_version);
    c->warnings = w.len ? imp_buf_steal(&w, NULL) : (imp_buf_dispose(&w), NULL);
}

int imp_config_share_dir(char *out, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0) return -1;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return -1;
    *slash = '\0'; /* <prefix>/bin */
    snprintf(out, cap, "%s/../share/impulse", exe);
    char lua[PATH_MAX + 32];
    snprintf(lua, sizeof(lua), "%s/lua/impulse", out);
    struct stat st;
    if (stat(lua, &st) != 0 || !S_ISDIR(st.st_mode)) return -1;
    char real[PATH_MAX];
    if (realpath(out, real)) snprintf(out, cap, "%s", real);
    return 0;
}

void imp_config_discovery_line(const struct imp_config *c, char *out, size_t outlen)
{
    const char *gws = c->gw_hash ? "each user to the gateway its ID hashes to "
                                   "(K8sStaticConsistentHash)"
                                 : "every gateway gets every push";
    if (c->k8s)
        snprintf(out, outlen,
                 "discovery: Kubernetes API %s, namespace %s (%s); gateways: %s; nothing is "
                 "registered",
                 c->k8s_api, c->k8s_namespace, c->k8s_origin, gws);
    else
        snprintf(out, outlen, "discovery: etcd %s%s%s under %s/; gateways: %s",
                 c->etcd_addrs.n ? c->etcd_addrs.v[0] : "", c->etcd_addrs.n > 1 ? " (and " : "",
                 c->etcd_addrs.n > 1 ? "more)" : "", c->etcd_root, gws);
}

void imp_config_openim_line(const struct imp_config *c, char *out, size_t outlen)
{
    static const char *const groups[][2] = {
        {"v3.8.3", "v3.8.3, patch.1, patch.2"},      {"v3.8.3-patch.3", "patch.3, patch.4"},
        {"v3.8.3-patch.5", "patch.5 to patch.16"},   {"v3.8.4-alpha.1", "v3.8.4-alpha.1"},
        {"main", "open-im-server main at 7848d7c7"},
    };
    const char *tags = "";
    for (size_t i = 0; i < IMP_ARRAY_LEN(groups); i++)
        if (strcmp(groups[i][0], c->openim_profile) == 0) tags = groups[i][1];
    snprintf(out, outlen, "openim: behaving as openim-push %s (profile %s: %s), %s",
             c->openim_version, c->openim_profile, tags, c->openim_origin);
}

/* Reads a small file's first line (a namespace) into a new string, or NULL. */
static char *read_line_file(const char *path)
{
    char buf[256];
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n \t")] = '\0';
    return buf[0] ? imp_xstrdup(buf) : NULL;
}

/* etcd or Kubernetes (docs/research/openim-operator-dropin.md section 3).
 * discovery.enable "k8s" selects Kubernetes up to v3.8.3-patch.16
 * (OpenIM@v3.8.3:pkg/common/discoveryregister/discoveryregister.go:28-43);
 * v3.8.4-alpha.1 selects it whenever the pod's service-account folder exists,
 * whatever enable says (tools@v0.0.50-alpha.72:utils/runtimeenv/runtime.go).
 * impulse.discovery forces either. In Kubernetes mode impulse reads the
 * services' Endpoints through the API with the pod's service account, as
 * OpenIM's tools ConnManager does (net/k8s.c), and registers nothing. */
static void read_discovery(struct reader *r, struct imp_config *c, const struct imp_yaml *root,
                           const struct imp_yaml *s)
{
    const struct imp_yaml *imp = yget(root, "impulse");
    char *mode = get_str(r, s, "discovery", "enable", "etcd");
    char *force = get_str(r, imp, "impulse", "discovery", "");
    char origin[200] = "";
    struct stat st;
    resolve_key(r, imp, "kubernetesServiceAccount");
    c->k8s_sa_dir = get_str(r, imp, "impulse", "kubernetesServiceAccount",
                            "/var/run/secrets/kubernetes.io/serviceaccount");
    if (!mode || !force || !c->k8s_sa_dir) goto out;
    for (char *q = mode; *q; q++) *q = (char)tolower((unsigned char)*q);
    bool in_pod = stat(c->k8s_sa_dir, &st) == 0 && S_ISDIR(st.st_mode);
    if (force[0]) {
        if (strcmp(force, "etcd") != 0 && strcmp(force, "kubernetes") != 0) {
            fail(r, "impulse", "discovery", lookup(imp, "discovery"),
                 "'%s': expected etcd or kubernetes (empty: as discovery.enable says)", force);
            goto out;
        }
        c->k8s = strcmp(force, "kubernetes") == 0;
        if (c->k8s) snprintf(origin, sizeof(origin), "impulse.discovery");
    } else if (strcmp(mode, "k8s") == 0 || strcmp(mode, "kubernetes") == 0) {
        c->k8s = true;
        snprintf(origin, sizeof(origin), "discovery.enable '%s'", mode);
    } else if (strcmp(mode, "etcd") != 0) {
        fail(r, "discovery", "enable", lookup(s, "enable"),
             "unknown discovery '%s' (use etcd or k8s)", mode);
        goto out;
    } else if (c->openim_v384 && in_pod) {
        c->k8s = true;
        snprintf(origin, sizeof(origin),
                 "%s chooses Kubernetes in a pod (%s exists) whatever discovery.enable says",
                 c->openim_version, c->k8s_sa_dir);
    }
    if (!c->k8s) goto out;
    c->k8s_origin = imp_xstrdup(origin);

    /* the API server, as client-go's InClusterConfig finds it */
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !host[0] || !port || !port[0]) {
        fail(r, "discovery", "enable", lookup(s, "enable"),
             "Kubernetes discovery (%s) runs in a pod: KUBERNETES_SERVICE_HOST and "
             "KUBERNETES_SERVICE_PORT are not set",
             origin);
        goto out;
    }
    char api[300];
    snprintf(api, sizeof(api), strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host, port);
    c->k8s_api = imp_xstrdup(api);
    char path[600];
    snprintf(path, sizeof(path), "%s/token", c->k8s_sa_dir);
    if (access(path, R_OK) != 0) {
        fail(r, "impulse", "kubernetesServiceAccount", lookup(imp, "kubernetesServiceAccount"),
             "cannot read %s (the pod's service-account token): %s", path, strerror(errno));
        goto out;
    }
    /* the namespace: discovery.kubernetes.namespace (v3.8.4-alpha.1 on),
     * else the pod's own. OpenIM v3.8.3-patch.11 to .16 hard-code
     * "default" (docs/openim-versions.md, deliberate differences). */
    char *ns = get_str(r, s, "discovery", "kubernetes.namespace", "");
    if (ns && !ns[0]) {
        free(ns);
        snprintf(path, sizeof(path), "%s/namespace", c->k8s_sa_dir);
        ns = read_line_file(path);
        if (!ns) ns = imp_xstrdup("default");
    }
    c->k8s_namespace = ns;
out:
    free(mode);
    free(force);
}

/* log.yml (OpenIM@v3.8.3-patch.15:config/log.yml; the logger:
 * docs/research/openim-operator-dropin.md §4). With it (OpenIM always
 * ships one), lines take OpenIM's format and destinations; without it,
 * impulse's JSON on stderr. impulse.logFormat overrides the choice. A key
 * log.yml lacks takes the value OpenIM's shipped file gives it. The level:
 * remainLogLevel, unless impulse.logLevel is set (impulse's key wins). */
static void read_log_yml(struct reader *r, struct imp_config *c, const struct imp_yaml *root)
{
    const struct imp_yaml *s = yget(root, "log"), *imp = yget(root, "impulse");
    if (s && !is_null(s) && s->kind != IMP_YAML_MAP) {
        fail(r, "log", NULL, s, "expected a map");
        return;
    }
    char *fmt = get_str(r, imp, "impulse", "logFormat", s ? "openim" : "impulse");
    if (fmt && strcmp(fmt, "openim") != 0 && strcmp(fmt, "impulse") != 0)
        fail(r, "impulse", "logFormat", lookup(imp, "logFormat"),
             "expected openim (OpenIM's log.yml and line format) or impulse (JSON on stderr)");
    c->log_openim = fmt && strcmp(fmt, "openim") == 0;
    free(fmt);
    c->log_dir = get_str(r, s, "log", "storageLocation", "../../../../logs/");
    c->log_rotation_hours = (int)get_int(r, s, "log", "rotationTime", 24, 0, 24 * 366);
    c->log_remain_count = (int)get_int(r, s, "log", "remainRotationCount", 2, 0, 100000);
    c->log_remain_level = (int)get_int(r, s, "log", "remainLogLevel", 6, 0, 6);
    c->log_stdout = get_bool(r, s, "log", "isStdout", false);
    c->log_json = get_bool(r, s, "log", "isJson", false);
    const struct imp_yaml *lv = lookup(imp, "logLevel");
    if (!c->log_openim || r->failed) {
        snprintf(c->log_level_origin, sizeof(c->log_level_origin), "%s",
                 lv && !is_null(lv) ? "impulse.logLevel" : "the default");
    } else if (lv && !is_null(lv)) {
        snprintf(c->log_level_origin, sizeof(c->log_level_origin),
                 "impulse.logLevel, which wins over log.remainLogLevel %d", c->log_remain_level);
    } else {
        static const char *const names[] = {"debug", "info", "warn", "error"};
        free(c->log_level);
        c->log_level = imp_xstrdup(names[imp_log_level_from_openim(c->log_remain_level)]);
        snprintf(c->log_level_origin, sizeof(c->log_level_origin), "log.remainLogLevel %d",
                 c->log_remain_level);
    }
}

static void read_all(struct reader *r, struct imp_config *c, const struct imp_yaml *root)
{
    const struct imp_yaml *s;

    read_openim(r, c, root);

    /* kafka */
    s = yget(root, "kafka");
    if (!s) fail(r, "kafka", NULL, NULL, "section is missing");
    get_list(r, s, "kafka", "address", &c->kafka_addrs);
    check_addrs(r, "kafka", "address", s, &c->kafka_addrs, true);
    c->kafka_username = get_str(r, s, "kafka", "username", "");
    c->kafka_password = get_str(r, s, "kafka", "password", "");
    c->kafka_tls = get_bool(r, s, "kafka", "tls.enableTLS", false);
    c->kafka_tls_ca = get_str(r, s, "kafka", "tls.caCrt", "");
    c->kafka_tls_cert = get_str(r, s, "kafka", "tls.clientCrt", "");
    c->kafka_tls_key = get_str(r, s, "kafka", "tls.clientKey", "");
    c->kafka_tls_key_password = get_str(r, s, "kafka", "tls.clientKeyPwd", "");
    c->kafka_tls_insecure = get_bool(r, s, "kafka", "tls.insecureSkipVerify", false);
    c->topic_push = get_str(r, s, "kafka", "toPushTopic", "toPush");
    c->topic_offline_push = get_str(r, s, "kafka", "toOfflinePushTopic", "toOfflinePush");
    c->group_push = get_str(r, s, "kafka", "toPushGroupID", "push");
    c->group_offline_push = get_str(r, s, "kafka", "toOfflinePushGroupID", "offlinePush");

    /* redis */
    s = yget(root, "redis");
    if (!s) fail(r, "redis", NULL, NULL, "section is missing");
    struct imp_strlist raddr;
    get_list(r, s, "redis", "address", &raddr);
    check_addrs(r, "redis", "address", s, &raddr, true);
    c->redis_addr = raddr.n ? imp_xstrdup(raddr.v[0]) : NULL;
    if (raddr.n > 1)
        fail(r, "redis", "address", lookup(s, "address"),
             "more than one address means Redis cluster mode (as in OpenIM), which is not "
             "supported yet; give one address");
    free_list(&raddr);
    c->redis_username = get_str(r, s, "redis", "username", "");
    c->redis_password = get_str(r, s, "redis", "password", "");
    /* Up to patch.6, and in v3.8.4-alpha.1, OpenIM reads the database from
     * `storage` (its struct tag; OpenIM@v3.8.3:pkg/common/config/config.go:361),
     * so redis.yml's `db` is ignored and every service uses what `storage`
     * says (0 when absent); patch.7 reads `db`. Follow the release, so impulse
     * reads the database OpenIM's services write. */
    c->redis_db = (int)get_int(
        r, s, "redis",
        c->openim_main || (c->openim_patch >= 7 && !c->openim_v384) ? "db" : "storage", 0, 0, 1024);
    if (get_bool(r, s, "redis", "clusterMode", false))
        fail(r, "redis", "clusterMode", lookup(s, "clusterMode"),
             "Redis cluster mode is not supported yet; point redis.address at one server");
    {
        /* patch.12 replaced clusterMode with redisMode
         * (OpenIM@v3.8.3-patch.12:config/redis.yml:4-5) */
        char *rm = get_str(r, s, "redis", "redisMode", "standalone");
        if (rm && strcmp(rm, "standalone") != 0)
            fail(r, "redis", "redisMode", lookup(s, "redisMode"),
                 "'%s' is not supported yet; use standalone and point redis.address at one server",
                 rm);
        free(rm);
    }
    if (lookup(s, "sentinel") && !is_null(lookup(s, "sentinel")) &&
        lookup(lookup(s, "sentinel"), "masterName") &&
        !is_null(lookup(lookup(s, "sentinel"), "masterName")))
        fail(r, "redis", "sentinel", lookup(s, "sentinel"),
             "Redis sentinel mode is not supported yet");

    /* discovery */
    s = yget(root, "discovery");
    if (!s) fail(r, "discovery", NULL, NULL, "section is missing");
    read_discovery(r, c, root, s);
    get_list(r, s, "discovery", "etcd.address", &c->etcd_addrs);
    check_addrs(r, "discovery", "etcd.address", s, &c->etcd_addrs, !c->k8s);
    c->etcd_root = get_str(r, s, "discovery", "etcd.rootDirectory", "openim");
    c->etcd_username = get_str(r, s, "discovery", "etcd.username", "");
    c->etcd_password = get_str(r, s, "discovery", "etcd.password", "");

    /* service names: share.yml rpcRegisterName up to v3.8.3-patch.16
     * (OpenIM@v3.8.3:config/share.yml:2-11), discovery.yml rpcService from
     * v3.8.4-alpha.1 (OpenIM@v3.8.4-alpha.1:config/discovery.yml:8-17) */
    {
        struct {
            char **dst;
            const char *name; /* the key under rpcRegisterName / rpcService */
        } svcs[] = {{&c->svc_gateway, "messageGateway"},
                    {&c->svc_user, "user"},
                    {&c->svc_group, "group"},
                    {&c->svc_conversation, "conversation"},
                    {&c->svc_msg, "msg"},
                    {&c->svc_push, "push"}};
        const char *sec = c->openim_v384 ? "discovery" : "share";
        s = yget(root, sec);
        for (size_t i = 0; i < IMP_ARRAY_LEN(svcs); i++) {
            char key[64], def[64];
            snprintf(key, sizeof(key), "%s.%s", c->openim_v384 ? "rpcService" : "rpcRegisterName",
                     svcs[i].name);
            if (c->openim_v384) { /* messagegateway-rpc-service, user-rpc-service, ... */
                size_t j = 0;
                for (; svcs[i].name[j] && j < 40; j++)
                    def[j] = (char)tolower((unsigned char)svcs[i].name[j]);
                snprintf(def + j, sizeof(def) - j, "-rpc-service");
            } else {
                snprintf(def, sizeof(def), "%s", svcs[i].name);
            }
            *svcs[i].dst = get_str(r, s, sec, key, def);
        }
    }
    s = yget(root, "share");
    struct imp_strlist admins;
    /* main (after v3.8.4-alpha.1) moved it to imAdminUser.userIDs
     * (docs/research/openim-operator-dropin.md §6): read either */
    get_list(r, s, "share",
             !lookup(s, "imAdminUserID") && lookup(s, "imAdminUser.userIDs") ? "imAdminUser.userIDs"
                                                                             : "imAdminUserID",
             &admins);
    /* from patch.5 every toPush record runs as imAdminUserID[0]
     * (OpenIM@v3.8.3-patch.5:internal/push/push_handler.go:145), which
     * panics when the list is empty: refuse to start instead */
    if (c->op_user_admin && admins.n == 0 && lookup(s, "imAdminUserID"))
        fail(r, "share", "imAdminUserID", lookup(s, "imAdminUserID"),
             "is empty, but %s runs every push as its first user (impulse.openim)",
             c->openim_version);
    c->im_admin_user = imp_xstrdup(admins.n ? admins.v[0] : "imAdmin");
    free_list(&admins);

    /* openim-push */
    s = yget(root, "openim-push");
    c->full_user_cache = get_bool(r, s, "openim-push", "fullUserCache", true);
    /* OpenIM serves /metrics on prometheus.ports[index], or with
     * rpc.autoSetPorts on a free port it announces in etcd under
     * prometheus_discovery (main.c) */
    c->prometheus_enable = get_bool(r, s, "openim-push", "prometheus.enable", false);
    /* main never reads prometheus.enable: the metrics listener always starts
     * (OpenIM@main:pkg/common/startrpc/start.go:126-139, 175-204) */
    if (c->openim_main) c->prometheus_enable = true;
    c->prometheus_auto = get_bool(r, s, "openim-push", "rpc.autoSetPorts", true);
    c->prometheus_port = c->prometheus_enable && !c->prometheus_auto
                             ? pick_port(r, s, "prometheus.ports", "prometheus is enabled")
                             : 0;
    /* the offline provider: OpenIM's `enable`, lower-cased as OpenIM does
     * (geTui works); OpenIM falls back to a dummy pusher on anything else,
     * impulse refuses it rather than drop every offline push */
    {
        char *p = get_str(r, s, "openim-push", "enable", "");
        if (p) {
            for (char *q = p; *q; q++) *q = (char)tolower((unsigned char)*q);
            if (strcmp(p, "none") == 0 || strcmp(p, "dummy") == 0) p[0] = '\0';
            if (p[0] && strcmp(p, "getui") && strcmp(p, "fcm") && strcmp(p, "jpush") &&
                strcmp(p, "apns") && strcmp(p, "log"))
                fail(r, "openim-push", "enable", lookup(s, "enable"),
                     "'%s' is not a provider: expected getui, fcm, jpush, apns, log or none", p);
        }
        c->offline_provider = p;
    }
    /* the push service's own gRPC listener (openim.push.PushMsgService) */
    c->rpc_listen_ip = get_str(r, s, "openim-push", "rpc.listenIP", "0.0.0.0");
    if (c->rpc_listen_ip && !c->rpc_listen_ip[0]) { /* NULL: not a string, already failed */
        free(c->rpc_listen_ip);
        c->rpc_listen_ip = imp_xstrdup("0.0.0.0");
    }
    c->rpc_register_ip = get_str(r, s, "openim-push", "rpc.registerIP", "");
    c->rpc_port = 0; /* autoSetPorts: a free port */
    if (!get_bool(r, s, "openim-push", "rpc.autoSetPorts", true))
        c->rpc_port = pick_port(r, s, "rpc.ports", "rpc.autoSetPorts is false");
    else if (c->k8s) /* as OpenIM@v3.8.3-patch.15:pkg/common/startrpc/start.go:129-131 */
        fail(r, "openim-push", "rpc.autoSetPorts", lookup(s, "rpc.autoSetPorts"),
             "must be false with Kubernetes discovery (%s): nothing could find random ports; "
             "give rpc.ports and prometheus.ports",
             c->k8s_origin);

    /* webhooks (webhooks.yml): only the three push hooks are read */
    s = yget(root, "webhooks");
    c->webhook_url = get_str(r, s, "webhooks", "url", "");
    struct {
        const char *name;
        struct imp_webhook *wh;
    } hooks[] = {{"beforeOnlinePush", &c->wh_before_online},
                 {"beforeGroupOnlinePush", &c->wh_before_group_online},
                 {"beforeOfflinePush", &c->wh_before_offline}};
    for (size_t i = 0; i < IMP_ARRAY_LEN(hooks); i++) {
        char k[64];
        snprintf(k, sizeof(k), "%s.enable", hooks[i].name);
        hooks[i].wh->enable = get_bool(r, s, "webhooks", k, false);
        snprintf(k, sizeof(k), "%s.timeout", hooks[i].name);
        hooks[i].wh->timeout_s = (int)get_int(r, s, "webhooks", k, 5, 0, 600);
        snprintf(k, sizeof(k), "%s.failedContinue", hooks[i].name);
        hooks[i].wh->failed_continue = get_bool(r, s, "webhooks", k, true);
        if (hooks[i].wh->enable && (!c->webhook_url || !c->webhook_url[0])) {
            snprintf(k, sizeof(k), "%s.enable", hooks[i].name);
            fail(r, "webhooks", "url", lookup(s, "url"), "is empty but webhooks.%s is true", k);
        }
    }

    /* local-cache */
    s = yget(root, "local-cache");
    read_lru(r, s, "group", &c->cache_group, "DELETE_CACHE_GROUP");
    read_lru(r, s, "user", &c->cache_user, "DELETE_CACHE_USER");

    /* impulse */
    s = yget(root, "impulse");
    {
        const struct imp_yaml *pv = s ? yget(s, "providers") : NULL;
        if (pv && pv->kind != IMP_YAML_MAP)
            fail(r, "impulse", "providers", pv, "must be a map of provider settings");
        const struct imp_yaml *push = yget(root, "openim-push");
        resolve_key(r, push, "fcm.filePath");
        resolve_key(r, pv, "caFile");
        resolve_key(r, pv, "apns.keyFile");
        static const char *const own[] = {"getui", "fcm", "jpush", "apns"};
        for (size_t i = 0; pv && i < IMP_ARRAY_LEN(own); i++)
            resolve_key(r, yget(pv, own[i]), "caFile");
        /* impulse.apps: several accounts per provider, one per app; each
         * app's paths resolve as the default's */
        const struct imp_yaml *apps = s ? yget(s, "apps") : NULL;
        if (apps && apps->kind != IMP_YAML_MAP && !is_null(apps))
            fail(r, "impulse", "apps", apps, "must be a map of apps (name: settings)");
        for (size_t a = 0; apps && apps->kind == IMP_YAML_MAP && a < apps->n; a++) {
            const struct imp_yaml *app = apps->items[a], *apv = yget(app, "providers");
            resolve_key(r, app, "fcm.filePath");
            resolve_key(r, apv, "caFile");
            resolve_key(r, apv, "apns.keyFile");
            for (size_t i = 0; apv && i < IMP_ARRAY_LEN(own); i++)
                resolve_key(r, yget(apv, own[i]), "caFile");
        }
        c->providers_json = providers_json(push, s);
    }
    if (s && s->kind == IMP_YAML_MAP) {
        for (size_t i = 0; i < s->n; i++) {
            int known = 0;
            for (const char **k = impulse_keys; *k; k++)
                if (strcasecmp(*k, s->keys[i]) == 0) known = 1;
            if (!known) fail(r, "impulse", s->keys[i], s->items[i], "unknown key");
        }
    } else if (s && !is_null(s)) {
        fail(r, "impulse", NULL, s, "expected a map");
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    c->workers = (int)get_int(r, s, "impulse", "workers", 0, 0, 256);
    if (c->workers == 0) c->workers = ncpu > 0 ? (int)ncpu : 1;
    static const char *const paths[] = {"scripts", "luaPath", "deadLetterSpool", "crashJournal"};
    for (size_t i = 0; i < IMP_ARRAY_LEN(paths); i++) resolve_key(r, s, paths[i]);
    {
        /* defaults: an installed binary (<prefix>/bin/impulse beside
         * <prefix>/share/impulse) takes its Lua library and default scripts
         * from there; one run from its build folder, the source tree's
         * library (built in) and ./scripts */
        char share[PATH_MAX], lua[PATH_MAX + 8], scripts[PATH_MAX + 16];
        bool installed = imp_config_share_dir(share, sizeof(share)) == 0;
        snprintf(lua, sizeof(lua), "%s/lua", share);
        snprintf(scripts, sizeof(scripts), "%s/scripts", share);
        c->scripts_dir = get_str(r, s, "impulse", "scripts", installed ? scripts : "scripts");
        c->lua_dir = get_str(r, s, "impulse", "luaPath", installed ? lua : IMPULSE_LUA_DIR);
    }
    {
        /* one port per process index: OpenIM's start scripts run several
         * processes of one config (-i 0..7) on a host */
        char def[32];
        snprintf(def, sizeof(def), "127.0.0.1:%d", 9470 + r->index);
        c->admin_listen = get_str(r, s, "impulse", "admin", def);
    }
    c->admin_token = get_str(r, s, "impulse", "adminToken", "");
    {
        /* /healthz, /readyz and the /admin/ paths stay off the network unless a token
         * guards them (every request then needs Authorization: Bearer) */
        char host[256];
        int port;
        if (c->admin_listen && imp_split_hostport(c->admin_listen, host, sizeof(host), &port) != 0)
            fail(r, "impulse", "admin", lookup(s, "admin"), "'%s' is not host:port",
                 c->admin_listen);
        else if (c->admin_listen && !is_loopback(host) && c->admin_token && !c->admin_token[0])
            fail(r, "impulse", "admin", lookup(s, "admin"),
                 "'%s' is not a loopback address: set impulse.adminToken (requests then need "
                 "'Authorization: Bearer <token>') or listen on 127.0.0.1",
                 c->admin_listen);
    }
    c->max_inflight = (int)get_int(r, s, "impulse", "maxInflight", 1024, 1, 1 << 20);
    c->gateway_timeout_ms = (int)get_int(r, s, "impulse", "gatewayTimeoutMs", 5000, 10, 600000);
    c->rpc_timeout_ms = (int)get_int(r, s, "impulse", "rpcTimeoutMs", 5000, 10, 600000);
    c->drain_timeout_ms = (int)get_int(r, s, "impulse", "drainTimeoutMs", 25000, 0, 29000);
    c->long_time_push_ms = (int)get_int(r, s, "impulse", "longTimePushMs", 10000, 0, 86400000);
    c->max_grpc_message =
        (int)get_int(r, s, "impulse", "maxGrpcMessageBytes", 3584 * 1024, 4096, 64 << 20);
    c->route_log_users = (int)get_int(r, s, "impulse", "routeLogUsers", 20, 0, 100000);
    c->auto_offset_reset = get_str(r, s, "impulse", "autoOffsetReset", "latest");
    if (c->auto_offset_reset && strcmp(c->auto_offset_reset, "latest") != 0 &&
        strcmp(c->auto_offset_reset, "earliest") != 0)
        fail(r, "impulse", "autoOffsetReset", lookup(s, "autoOffsetReset"),
             "expected latest or earliest, not '%s'", c->auto_offset_reset);
    c->session_timeout_ms = (int)get_int(r, s, "impulse", "sessionTimeoutMs", 10000, 3001, 3600000);
    c->heartbeat_interval_ms =
        (int)get_int(r, s, "impulse", "heartbeatIntervalMs", 3000, 100, 3600000);
    c->commit_interval_ms = (int)get_int(r, s, "impulse", "commitIntervalMs", 1000, 100, 60000);
    c->fetch_wait_ms = (int)get_int(r, s, "impulse", "fetchWaitMs", 50, 1, 5000);
    if (c->heartbeat_interval_ms >= c->session_timeout_ms)
        fail(r, "impulse", "heartbeatIntervalMs", lookup(s, "heartbeatIntervalMs"),
             "must be lower than sessionTimeoutMs (%d)", c->session_timeout_ms);
    c->script_budget_ms = (int)get_int(r, s, "impulse", "scriptBudgetMs", 50, 0, 60000);
    c->script_memory_mb = (int)get_int(r, s, "impulse", "scriptMemoryMB", 256, 16, 65536);
    c->script_jit = get_bool(r, s, "impulse", "scriptJit", false);
    c->serve_rpc = get_bool(r, s, "impulse", "serveRpc", true);
    c->consume_offline = get_bool(r, s, "impulse", "consumeOffline", true);
    c->offline_dedupe = get_bool(r, s, "impulse", "offlineDedupe", true);
    c->offline_dedupe_window_s =
        (int)get_int(r, s, "impulse", "offlineDedupeWindowS", 600, 10, 7 * 86400);
    c->register_ttl_s = (int)get_int(r, s, "impulse", "registerTtlS", 30, 5, 3600);
    c->reload_quiet_ms = (int)get_int(r, s, "impulse", "reloadQuietMs", 1000, 50, 60000);
    c->gw_breaker_failures = (int)get_int(r, s, "impulse", "gatewayBreakerFailures", 3, 0, 1000000);
    c->gw_breaker_open_ms =
        (int)get_int(r, s, "impulse", "gatewayBreakerOpenMs", 5000, 100, 3600000);
    c->dlq_spool = get_str(r, s, "impulse", "deadLetterSpool", "/var/lib/impulse/spool");
    c->dlq_spool_mb = (int)get_int(r, s, "impulse", "deadLetterSpoolMB", 1024, 0, 1 << 20);
    c->worker_stuck_ms = (int)get_int(r, s, "impulse", "workerStuckMs", 5000, 0, 3600000);
    c->worker_stuck_exit = get_bool(r, s, "impulse", "workerStuckExit", true);
    c->crash_journal = get_str(r, s, "impulse", "crashJournal", IMP_DEFAULT_CRASH_JOURNAL);
    c->poison_deaths = (int)get_int(r, s, "impulse", "poisonDeaths", 2, 0, 1000);
    c->log_level = get_str(r, s, "impulse", "logLevel", "info");
    {
        /* which gateways get a user: every one (OpenIM's DefaultAllNode), or
         * the one its ID hashes to (K8sStaticConsistentHash, which OpenIM
         * uses with discovery k8s up to v3.8.3-patch.2; from patch.3 it is
         * chosen too but, as read, reaches no gateway: docs/openim-versions.md) */
        char *sel = get_str(r, s, "impulse", "gatewaySelection", "");
        if (sel && !sel[0])
            c->gw_hash = c->k8s && c->openim_patch < 3 && !c->openim_v384;
        else if (sel && strcmp(sel, "hash") == 0)
            c->gw_hash = true;
        else if (sel && strcmp(sel, "all") != 0)
            fail(r, "impulse", "gatewaySelection", lookup(s, "gatewaySelection"),
                 "'%s': expected all or hash", sel);
        if (c->gw_hash && !c->k8s)
            fail(r, "impulse", "gatewaySelection", lookup(s, "gatewaySelection"),
                 "hash needs Kubernetes discovery (the ring is made of the gateway pods' names)");
        free(sel);
        /* the ring's host names end in messageGateway's ":port", else 88
         * (OpenIM@v3.8.3:pkg/common/discoveryregister/kubernetes/kubernetes.go:106-118) */
        const char *colon = c->svc_gateway ? strrchr(c->svc_gateway, ':') : NULL;
        c->gw_hash_port = colon && atoi(colon + 1) > 0 ? atoi(colon + 1) : 88;
    }
    {
        /* how the workers call the gateways and OpenIM's services: through
         * the engine's HTTP/2 client on each worker's loop (net/grpcc.c;
         * addresses it cannot dial still go through the C core), or only
         * through the gRPC C core (its own thread and completion queue) */
        char *tr = get_str(r, s, "impulse", "grpcClient", "h2");
        if (tr && strcmp(tr, "h2") == 0)
            c->gw_h2 = true;
        else if (tr && strcmp(tr, "core") != 0)
            fail(r, "impulse", "grpcClient", lookup(s, "grpcClient"), "'%s': expected core or h2",
                 tr);
        free(tr);
    }
    char dlq[512];
    snprintf(dlq, sizeof(dlq), "%s.dlq", c->topic_push ? c->topic_push : "toPush");
    c->dlq_push = get_str(r, s, "impulse", "deadLetterTopic", dlq);
    snprintf(dlq, sizeof(dlq), "%s.dlq",
             c->topic_offline_push ? c->topic_offline_push : "toOfflinePush");
    c->dlq_offline_push = get_str(r, s, "impulse", "offlineDeadLetterTopic", dlq);
    if (c->dlq_push && c->topic_push && strcmp(c->dlq_push, c->topic_push) == 0)
        fail(r, "impulse", "deadLetterTopic", lookup(s, "deadLetterTopic"),
             "must differ from kafka.toPushTopic");
    if (c->log_level && strcmp(c->log_level, "debug") && strcmp(c->log_level, "info") &&
        strcmp(c->log_level, "warn") && strcmp(c->log_level, "error"))
        fail(r, "impulse", "logLevel", lookup(s, "logLevel"),
             "expected debug, info, warn or error");

    struct stat st;
    if (!r->failed && (stat(c->scripts_dir, &st) != 0 || !S_ISDIR(st.st_mode)))
        fail(r, "impulse", "scripts", lookup(s, "scripts"), "'%s' is not a directory",
             c->scripts_dir);
    if (!r->failed && (stat(c->lua_dir, &st) != 0 || !S_ISDIR(st.st_mode)))
        fail(r, "impulse", "luaPath", lookup(s, "luaPath"), "'%s' is not a directory", c->lua_dir);

    read_log_yml(r, c, root);
}

/* OpenIM's environment overrides (viper's AutomaticEnv, prefix IMENV_ and
 * the file's name, "." and "-" made "_", upper case; OpenIM@v3.8.3-patch.15
 * pkg/common/config/load_config.go, docs/research/openim-operator-dropin.md
 * §1): every leaf key a file holds, even empty, may be overridden by
 * IMENV_<FILE>_<KEY PATH>; an empty variable is ignored; a list takes a
 * comma-separated value; a key the file does not hold cannot be added.
 * The keys overridden are listed in *note ("redis.address, ..."). */
static void env_name_append(char *name, size_t cap, const char *part)
{
    size_t n = strlen(name);
    if (n + 1 < cap) name[n++] = '_';
    for (const char *p = part; *p && n + 1 < cap; p++)
        name[n++] = (*p == '.' || *p == '-') ? '_' : (char)toupper((unsigned char)*p);
    name[n] = '\0';
}

static void apply_env_node(struct imp_yaml *map, char *name, size_t cap, char *path, size_t pathcap,
                           struct imp_buf *note)
{
    size_t nlen = strlen(name), plen = strlen(path);
    for (size_t i = 0; i < map->n; i++) {
        struct imp_yaml *y = map->items[i];
        env_name_append(name, cap, map->keys[i]);
        snprintf(path + plen, pathcap - plen, ".%s", map->keys[i]);
        if (y->kind == IMP_YAML_MAP) {
            apply_env_node(y, name, cap, path, pathcap, note);
        } else {
            const char *v = getenv(name);
            if (v && v[0]) {
                if (y->kind == IMP_YAML_SEQ) {
                    for (size_t k = 0; k < y->n; k++) imp_yaml_destroy(y->items[k]);
                    free(y->items);
                    y->items = NULL;
                    y->n = 0;
                    for (const char *p = v;;) {
                        size_t len = strcspn(p, ",");
                        struct imp_yaml *item = imp_yaml_scalar(p, len);
                        item->line = y->line;
                        y->items = imp_xrealloc(y->items, (y->n + 1) * sizeof(*y->items));
                        y->items[y->n++] = item;
                        if (!p[len]) break;
                        p += len + 1;
                    }
                } else {
                    free(y->scalar);
                    y->scalar = imp_xstrdup(v);
                    y->quoted = 0;
                }
                imp_buf_printf(note, "%s%s", note->len ? ", " : "", path + 1);
            }
        }
        name[nlen] = '\0';
        path[plen] = '\0';
    }
}

static char *apply_env(struct imp_yaml *root)
{
    struct imp_buf note;
    imp_buf_init(&note);
    /* impulse's own section takes IMENV_IMPULSE_<KEY> for every key it
     * knows even without an impulse.yml, so an OpenIM config folder runs
     * unchanged with impulse's settings in the environment */
    struct imp_yaml *imp = yget(root, "impulse");
    if (imp && imp->kind != IMP_YAML_MAP) imp = NULL;
    for (const char **k = impulse_keys; *k; k++) {
        char name[128] = "IMENV_IMPULSE";
        env_name_append(name, sizeof(name), *k);
        const char *v = getenv(name);
        if (!v || !v[0] || (imp && yget(imp, *k))) continue; /* held: below */
        if (!imp) {
            if (yget(root, "impulse")) break; /* not a map: the reader says so */
            imp = imp_yaml_new_map();
            imp_yaml_set(root, "impulse", imp);
        }
        imp_yaml_set(imp, *k, imp_yaml_scalar(v, strlen(v))); /* noted below */
    }
    for (size_t i = 0; i < root->n; i++) {
        if (root->items[i]->kind != IMP_YAML_MAP) continue;
        char name[512] = "IMENV", path[512] = "";
        env_name_append(name, sizeof(name), root->keys[i]);
        snprintf(path, sizeof(path), ".%s", root->keys[i]);
        apply_env_node(root->items[i], name, sizeof(name), path, sizeof(path), &note);
    }
    return note.len ? imp_buf_steal(&note, NULL) : (imp_buf_dispose(&note), NULL);
}

/* A directory of OpenIM files: each file becomes the section of its name. */
static struct imp_yaml *load_dir(const char *dir, char *err, size_t errlen)
{
    static const char *sections[] = {"kafka",       "redis",    "discovery", "share", "openim-push",
                                     "local-cache", "webhooks", "impulse",   "log",   NULL};
    struct imp_yaml *root = imp_yaml_new_map();
    char path[PATH_MAX];
    for (const char **s = sections; *s; s++) {
        snprintf(path, sizeof(path), "%s/%s.yml", dir, *s);
        if (access(path, F_OK) != 0) continue;
        struct imp_yaml *y = imp_yaml_load_file(path, err, errlen);
        if (!y) {
            imp_yaml_destroy(root);
            return NULL;
        }
        imp_yaml_set(root, *s, y);
    }
    return root;
}

struct imp_config *imp_config_load_text(const char *text, char *err, size_t errlen)
{
    char inner[512];
    struct imp_yaml *root = imp_yaml_load_string(text, strlen(text), inner, sizeof(inner));
    if (!root) {
        snprintf(err, errlen, "config: %s", inner);
        return NULL;
    }
    struct imp_config *c = imp_xcalloc(1, sizeof(*c));
    struct reader r = {err, errlen, 0, 0};
    c->path = imp_xstrdup("(built-in)");
    read_all(&r, c, root);
    imp_yaml_destroy(root);
    if (r.failed) {
        imp_config_destroy(c);
        return NULL;
    }
    return c;
}

struct imp_config *imp_config_load(const char *path, char *err, size_t errlen)
{
    return imp_config_load_index(path, 0, err, errlen);
}

struct imp_config *imp_config_load_index(const char *path, int index, char *err, size_t errlen)
{
    char inner[512];
    struct stat st;
    struct imp_yaml *root;

    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "config: cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    root = S_ISDIR(st.st_mode) ? load_dir(path, inner, sizeof(inner))
                               : imp_yaml_load_file(path, inner, sizeof(inner));
    if (!root) {
        snprintf(err, errlen, "config: %s", inner);
        return NULL;
    }
    if (root->kind != IMP_YAML_MAP) {
        snprintf(err, errlen, "config: %s: the top level must be a map of sections", path);
        imp_yaml_destroy(root);
        return NULL;
    }
    struct imp_config *c = imp_xcalloc(1, sizeof(*c));
    char base[PATH_MAX];
    snprintf(base, sizeof(base), "%s", path);
    if (!S_ISDIR(st.st_mode)) { /* a file: its folder */
        char *slash = strrchr(base, '/');
        if (slash == base)
            base[1] = '\0';
        else if (slash)
            *slash = '\0';
        else
            snprintf(base, sizeof(base), ".");
    }
    struct reader r = {err, errlen, 0, index, base};
    c->path = imp_xstrdup(path);
    c->index = index;
    c->env_overrides = apply_env(root);
    read_all(&r, c, root);
    imp_yaml_destroy(root);
    if (r.failed) {
        imp_config_destroy(c);
        return NULL;
    }
    return c;
}

void imp_config_shadow(struct imp_config *c)
{
    char *g = imp_xcalloc(1, strlen(c->group_push) + sizeof("-shadow"));
    strcat(strcpy(g, c->group_push), "-shadow");
    free(c->group_push);
    c->group_push = g;
    if (c->crash_journal && c->crash_journal[0]) {
        char *j = imp_xcalloc(1, strlen(c->crash_journal) + sizeof("-shadow"));
        strcat(strcpy(j, c->crash_journal), "-shadow");
        free(c->crash_journal);
        c->crash_journal = j;
    }
    c->shadow = true;
    c->consume_offline = false;
    c->serve_rpc = false;
}

void imp_config_destroy(struct imp_config *c)
{
    if (!c) return;
    free_list(&c->kafka_addrs);
    free_list(&c->etcd_addrs);
    char **strs[] = {
        &c->path,
        &c->kafka_username,
        &c->kafka_password,
        &c->kafka_tls_ca,
        &c->kafka_tls_cert,
        &c->kafka_tls_key,
        &c->kafka_tls_key_password,
        &c->topic_push,
        &c->topic_offline_push,
        &c->group_push,
        &c->group_offline_push,
        &c->dlq_push,
        &c->dlq_offline_push,
        &c->webhook_url,
        &c->redis_addr,
        &c->redis_username,
        &c->redis_password,
        &c->etcd_root,
        &c->k8s_namespace,
        &c->k8s_api,
        &c->k8s_sa_dir,
        &c->k8s_origin,
        &c->etcd_username,
        &c->rpc_listen_ip,
        &c->rpc_register_ip,
        &c->etcd_password,
        &c->svc_gateway,
        &c->svc_user,
        &c->svc_group,
        &c->svc_conversation,
        &c->svc_msg,
        &c->svc_push,
        &c->im_admin_user,
        &c->cache_group.topic,
        &c->cache_user.topic,
        &c->scripts_dir,
        &c->lua_dir,
        &c->admin_listen,
        &c->admin_token,
        &c->env_overrides,
        &c->warnings,
        &c->auto_offset_reset,
        &c->log_level,
        &c->offline_provider,
        &c->providers_json,
        &c->dlq_spool,
        &c->crash_journal,
        &c->log_dir,
    };
    for (size_t i = 0; i < IMP_ARRAY_LEN(strs); i++) free(*strs[i]);
    free(c);
}

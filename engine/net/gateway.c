/*
 * The request is hand-encoded: field 1 is the MsgData bytes encoded once
 * per message, field 2 the user IDs of the chunk, so a 100,000-member
 * group does not re-encode the message per chunk or per gateway. Replies
 * are decoded with protobuf-c. User positions are found through an
 * open-addressing table of indices built once per fan-out.
 *
 * Started by a worker's online push (push/fanout.c) on its loop; the
 * answers come back through the worker's inbox.
 */
#include "net/gateway.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/common.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/pbcheck.h"

struct call_ctx {
    struct imp_fanout *f;
    size_t gw;
    size_t first, count; /* users of this chunk */
};

void imp_gateway_encode(struct imp_buf *out, const void *msgdata, size_t len, char *const *users,
                        size_t n)
{
    imp_buf_pb_bytes(out, 1, msgdata, len);
    for (size_t i = 0; i < n; i++) imp_buf_pb_bytes(out, 2, users[i], strlen(users[i]));
}

static void index_build(struct imp_fanout *f)
{
    size_t cap = 16;
    while (cap < f->nusers * 2) cap *= 2;
    f->index_cap = cap;
    f->index = imp_xmalloc(cap * sizeof(size_t));
    for (size_t i = 0; i < cap; i++) f->index[i] = (size_t)-1;
    for (size_t u = 0; u < f->nusers; u++) {
        size_t i = imp_fnv1a64(f->users[u], strlen(f->users[u])) & (cap - 1);
        while (f->index[i] != (size_t)-1) i = (i + 1) & (cap - 1);
        f->index[i] = u;
    }
}

static size_t index_find(const struct imp_fanout *f, const char *uid, size_t len)
{
    size_t i = imp_fnv1a64(uid, len) & (f->index_cap - 1);
    while (f->index[i] != (size_t)-1) {
        const char *u = f->users[f->index[i]];
        if (strncmp(u, uid, len) == 0 && u[len] == '\0') return f->index[i];
        i = (i + 1) & (f->index_cap - 1);
    }
    return (size_t)-1;
}

/* Every field of a SingleMsgToUserPlatform well formed, as protobuf-c
 * requires of a reply it unpacks. */
static int platform_ok(const uint8_t *p, size_t n)
{
    size_t i = 0, off, len;
    uint32_t num;
    int wt;
    while (i < n) {
        if (imp_pb_next(p, n, &i, &num, &wt, &off, &len) != 0) return 0;
        if ((num == 1 || num == 3) && wt != 0) return 0;
        if (num == 2 && wt != 2) return 0;
    }
    return 1;
}

/* One SingleMsgToUserResults: the last userID and onlinePush, as an
 * unpack keeps them. 0 when malformed. */
static int result_read(const uint8_t *p, size_t n, const char **uid, size_t *ulen, int *online)
{
    size_t i = 0, off, len;
    uint32_t num;
    int wt;
    *uid = "";
    *ulen = 0;
    *online = 0;
    while (i < n) {
        if (imp_pb_next(p, n, &i, &num, &wt, &off, &len) != 0) return 0;
        if (num == 1) {
            if (wt != 2) return 0;
            *uid = (const char *)p + off;
            *ulen = len;
        } else if (num == 2) {
            if (wt != 2 || !platform_ok(p + off, len)) return 0;
        } else if (num == 3) {
            /* protobuf-c takes a bool of any wire type: true when any byte
             * of it (a length prefix included) has a low bit set */
            int v = wt == 2 && len > 0;
            for (size_t k = 0; wt != 2 && k < len; k++) v |= (p[off + k] & 0x7f) != 0;
            *online = v;
        }
    }
    return 1;
}

int imp_gateway_reply_scan(const uint8_t *p, size_t n,
                           void (*fn)(void *arg, const char *uid, size_t len, int online),
                           void *arg)
{
    /* twice: nothing is reported from a reply that turns out malformed */
    for (int pass = 0; pass < 2; pass++) {
        size_t i = 0, off, len, count = 0;
        uint32_t num;
        int wt;
        if (pass == 1 && !fn) return 0;
        while (i < n) {
            if (imp_pb_next(p, n, &i, &num, &wt, &off, &len) != 0) return -1;
            if (num != 1) continue;
            const char *uid;
            size_t ulen;
            int online;
            if (wt != 2 || !result_read(p + off, len, &uid, &ulen, &online)) return -1;
            if (pass == 1) fn(arg, uid, ulen, online);
            count++;
        }
        if (pass == 1) return (int)(count > INT32_MAX ? INT32_MAX : count);
    }
    return 0;
}

static void finish_one(struct imp_fanout *f)
{
    if (--f->pending == 0) f->done(f, f->arg);
}

static void deferred_done(void *arg)
{
    struct imp_fanout *f = arg;
    finish_one(f);
}

/* The counters a reply updates, found once per thread instead of three
 * label strings and registry lookups (under its lock) per reply; metrics
 * live until the process ends. */
static struct imp_metric *result_metric(const char *result)
{
    static __thread const char *names[8];
    static __thread struct imp_metric *found[8];
    for (int i = 0; i < 8 && names[i]; i++)
        if (names[i] == result) return found[i];
    char labels[64];
    snprintf(labels, sizeof(labels), "result=\"%s\"", result);
    struct imp_metric *m = imp_metrics_counter("impulse_gateway_calls_total", labels, NULL);
    for (int i = 0; i < 8; i++)
        if (!names[i]) {
            names[i] = result; /* one of on_reply's literals */
            found[i] = m;
            break;
        }
    return m;
}

struct gw_metrics {
    char addr[128]; /* "" when unused; addresses this long or longer are not kept */
    struct imp_metric *asked, *reached;
};

#define GW_METRICS 64 /* gateways remembered per thread; the oldest is replaced */

static struct gw_metrics *gw_metrics_of(const char *addr, struct gw_metrics *scratch)
{
    static __thread struct gw_metrics cache[GW_METRICS];
    static __thread unsigned next;
    size_t len = strlen(addr);
    struct gw_metrics *e = scratch;
    if (len > 0 && len < sizeof(e->addr)) {
        for (int i = 0; i < GW_METRICS && cache[i].addr[0]; i++)
            if (strcmp(cache[i].addr, addr) == 0) return &cache[i];
        e = &cache[next++ % GW_METRICS];
        memcpy(e->addr, addr, len + 1);
    }
    char gl[192 + sizeof(e->addr)];
    snprintf(gl, sizeof(gl), "gateway=\"%s\",result=\"asked\"", addr);
    e->asked = imp_metrics_counter("impulse_gateway_users_total", gl, NULL);
    snprintf(gl, sizeof(gl), "gateway=\"%s\",result=\"reached\"", addr);
    e->reached = imp_metrics_counter("impulse_gateway_users_total", gl, NULL);
    return e;
}

struct reply_walk {
    struct imp_fanout *f;
    struct imp_fanout_gw *g;
    const struct call_ctx *cc;
    size_t reached; /* users of this chunk the gateway pushed to */
};

static void reply_user(void *arg, const char *uid, size_t len, int online)
{
    struct reply_walk *rw = arg;
    struct imp_fanout *f = rw->f;
    if (!online || len == 0) return;
    size_t idx = index_find(f, uid, len);
    /* only users of this chunk count: a gateway cannot reach users it was
     * not asked about */
    if (idx == (size_t)-1) return;
    size_t at = f->pos ? f->pos[idx] : idx; /* its place in the call order */
    if (at == (size_t)-1 || at < rw->cc->first || at >= rw->cc->first + rw->cc->count) return;
    rw->g->reached++;
    rw->reached++;
    if (!f->reached[idx]) {
        f->reached[idx] = 1;
        f->nreached++;
    }
}

static void on_reply(void *arg, const struct imp_grpc_result *r)
{
    struct call_ctx *cc = arg;
    struct imp_fanout *f = cc->f;
    struct imp_fanout_gw *g = &f->gw[cc->gw];
    char sname[16];
    const char *result = "ok";
    size_t reached = 0;

    if (r->status != 0) {
        g->failed++;
        g->status = r->status;
        snprintf(g->error, sizeof(g->error), "%s: %s",
                 imp_grpc_status_name(r->status, sname, sizeof(sname)), r->details);
        result = r->status == 4 ? "timeout" : r->status == 14 ? "unavailable" : "error";
    } else {
        struct reply_walk rw = {f, g, cc, 0};
        if (imp_gateway_reply_scan(r->data, r->len, reply_user, &rw) < 0) {
            g->failed++;
            g->status = -1;
            snprintf(g->error, sizeof(g->error), "unparseable reply (%zu bytes)", r->len);
            result = "garbage";
        }
        reached = rw.reached;
    }
    struct gw_metrics scratch;
    struct gw_metrics *gm = gw_metrics_of(g->addr ? g->addr : "", &scratch);
    imp_metric_add(result_metric(result), 1);
    /* the fan-out per gateway: users asked about, and those it reached */
    imp_metric_add(gm->asked, (int64_t)cc->count);
    imp_metric_add(gm->reached, (int64_t)reached);
    free(cc);
    finish_one(f);
}

/* How many of users[0..n) fit in one request (at least one). */
static size_t chunk_len(const struct imp_fanout_req *r, char *const *users, size_t n, size_t base)
{
    size_t size = base, count = 0;
    while (count < n) {
        size_t ul = strlen(users[count]);
        size_t add = 1 + imp_pb_varint_len(ul) + ul;
        if (count > 0 && size + add > r->max_request) break;
        size += add;
        count++;
    }
    return count;
}

/* Sends req (users [first, first + count) of the call order) to gateway g. */
static void call(struct imp_fanout *f, const struct imp_fanout_req *r, size_t g,
                 const struct imp_buf *req, size_t first, size_t count)
{
    if (!r->channels[g]) { /* skipped by the caller (circuit open) */
        f->gw[g].failed++;
        f->gw[g].status = -1;
        snprintf(f->gw[g].error, sizeof(f->gw[g].error), "%s",
                 r->skip_reason ? r->skip_reason : "skipped");
        return;
    }
    struct call_ctx *cc = imp_xmalloc(sizeof(*cc));
    cc->f = f;
    cc->gw = g;
    cc->first = first;
    cc->count = count;
    f->gw[g].calls++;
    f->pending++;
    int rc;
    if (r->h2 && imp_grpcc_can_dial(r->addrs[g]))
        rc = imp_grpcc_unary(r->h2, r->addrs[g], IMP_GATEWAY_METHOD, req->data, req->len,
                             r->timeout_ms, r->md, r->nmd, on_reply, cc);
    else
        rc = imp_grpc_unary(r->channels[g], IMP_GATEWAY_METHOD, req->data, req->len, r->timeout_ms,
                            r->md, r->nmd, r->inbox, on_reply, cc);
    if (rc != 0) {
        f->pending--;
        f->gw[g].failed++;
        f->gw[g].status = -1;
        snprintf(f->gw[g].error, sizeof(f->gw[g].error), "could not start the call");
        free(cc);
    }
}

/* Each user to its own gateway only (r->gw_of): the users are put in
 * gateway order, each gateway's run chunked and sent to it alone. */
static void by_gateway(struct imp_fanout *f, const struct imp_fanout_req *r)
{
    size_t ng = r->nchannels, *start = imp_xcalloc(ng + 1, sizeof(size_t));
    char **users = imp_xmalloc(r->nusers * sizeof(char *));
    f->pos = imp_xmalloc(r->nusers * sizeof(size_t));
    for (size_t u = 0; u < r->nusers; u++) {
        f->pos[u] = (size_t)-1;
        if (r->gw_of[u] < ng) start[r->gw_of[u] + 1]++;
    }
    for (size_t g = 0; g < ng; g++) start[g + 1] += start[g];
    size_t *fill = imp_xmalloc((ng ? ng : 1) * sizeof(size_t));
    memcpy(fill, start, ng * sizeof(size_t));
    for (size_t u = 0; u < r->nusers; u++) {
        if (r->gw_of[u] >= ng) continue; /* no gateway: not reached */
        size_t p = fill[r->gw_of[u]]++;
        users[p] = r->users[u];
        f->pos[u] = p;
    }
    size_t base = 1 + imp_pb_varint_len(r->msgdata_len) + r->msgdata_len;
    struct imp_buf req;
    imp_buf_init(&req);
    for (size_t g = 0; g < ng; g++) {
        size_t first = start[g];
        while (first < start[g + 1]) {
            size_t count = chunk_len(r, users + first, start[g + 1] - first, base);
            imp_buf_reset(&req);
            imp_gateway_encode(&req, r->msgdata, r->msgdata_len, users + first, count);
            call(f, r, g, &req, first, count);
            first += count;
        }
    }
    imp_buf_dispose(&req);
    free(fill);
    free(users);
    free(start);
}

struct imp_fanout *imp_fanout_start(const struct imp_fanout_req *r)
{
    struct imp_fanout *f = imp_xcalloc(1, sizeof(*f));
    f->users = r->users;
    f->nusers = r->nusers;
    f->reached = imp_xcalloc(r->nusers ? r->nusers : 1, 1);
    f->ngw = r->nchannels;
    f->gw = imp_xcalloc(r->nchannels ? r->nchannels : 1, sizeof(*f->gw));
    f->done = r->done;
    f->arg = r->arg;
    for (size_t g = 0; g < r->nchannels; g++) f->gw[g].addr = r->addrs[g];
    f->pending = 1; /* held until every call is started */
    if (r->nusers == 0 || r->nchannels == 0) goto out;
    index_build(f);

    if (r->gw_of) {
        by_gateway(f, r);
        goto out;
    }
    /* Chunk boundaries: as many users as fit under max_request. */
    size_t base = 1 + imp_pb_varint_len(r->msgdata_len) + r->msgdata_len;
    struct imp_buf req;
    imp_buf_init(&req);
    size_t first = 0;
    while (first < r->nusers) {
        size_t count = chunk_len(r, r->users + first, r->nusers - first, base);
        imp_buf_reset(&req);
        imp_gateway_encode(&req, r->msgdata, r->msgdata_len, r->users + first, count);
        for (size_t g = 0; g < r->nchannels; g++) call(f, r, g, &req, first, count);
        first += count;
    }
    imp_buf_dispose(&req);
out:
    /* Never complete inside start: the caller's done may free f. */
    if (f->pending == 1) {
        if (imp_inbox_post(r->inbox, deferred_done, f) != 0) {
            imp_fanout_destroy(f);
            return NULL;
        }
    } else {
        f->pending--;
    }
    return f;
}

void imp_fanout_destroy(struct imp_fanout *f)
{
    if (!f) return;
    free(f->reached);
    free(f->gw);
    free(f->index);
    free(f->pos);
    free(f);
}

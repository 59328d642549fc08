/*
 * The floor (issue 16): the least work a push needs, written plainly, to
 * measure impulse against. One thread, one libev loop:
 *
 *   consume toPush (librdkafka, the engine's consumer settings) -> unpack
 *   PushMsgReq (protobuf-c) -> status 1 -> 2, MsgData packed once ->
 *   recipients: the receiver (single chat) or the group's members from an
 *   in-memory map -> who is online, from an in-memory table -> one
 *   SuperGroupOnlineBatchPushOneMsg per chunk (<= 3.5 MiB) to every
 *   gateway over cleartext HTTP/2 (nghttp2, prior knowledge, one
 *   connection per gateway, many streams; every frame a loop turn
 *   produced written with one write, from an ev_prepare) -> grpc-status
 *   from the trailers -> for groups, the replies walked in place (no
 *   protobuf-c unpack: it allocated per user and was half the floor's
 *   CPU) and the members no gateway reached (onlinePush OR-ed over the
 *   gateways), minus the sender, produced to toOfflinePush
 *   as PushMsgReq{1 msgData, 3 userIDs} (records under 1,000,000 bytes,
 *   OpenIM's four headers copied, key sendID_recvID sorted, fnv1a
 *   partitioner) -> once every gateway answered and every offline record
 *   is acknowledged, the record's offset is stored (per partition in
 *   order, so auto commit covers only finished messages).
 *
 *   build/bench_floor --brokers HOST:PORT --gateway HOST:PORT [--gateway ...]
 *       --online FILE --group FILE [--status FILE] [--consumer-group push]
 *       [--fetch-wait-ms 50] [--max-inflight 4096] [--offset-reset latest]
 *
 * --online FILE: lines "userID platformID" (any platform counts as online).
 * --group FILE: one line per group, "groupID member member ...".
 * --status FILE: {"done":N,"failed":N,"assigned":N}, rewritten (tmp +
 * rename) at most every 100 ms when it changed: done = messages finished
 * with every gateway answering grpc-status 0 and every offline record
 * acknowledged; failed = the others (their offsets are stored all the
 * same: no retries); assigned = partitions held.
 *
 * One thread on purpose: the comparison is CPU per message, which a
 * second thread would not lower (it adds hand-offs), and on the 2-core
 * bench machine the other core runs the broker and the gateways.
 * librdkafka's own threads are there as in impulse.
 *
 * What it leaves out, compared with impulse and openim-push: Redis (the
 * online table and group members are files read at start; no
 * online_change, no DELETE_CACHE_*), the user and group services (no
 * getAllOnlineUsers, getUserStatus or getGroupMemberUserIDs; an unknown
 * group fails the message), etcd discovery (gateways are given), the
 * sender of a single chat (senderSync) and single-chat offline pushes
 * (OpenIM sends those to the provider inline), member quit / kicked /
 * dismissed handling (SetConversationMaxSeq, dismissGroup), webhooks, the
 * conversation filter call (GetConversationOfflinePushUserIDs), content
 * type rules (only the offlinePush option is honoured), the policy and its
 * Lua VM, the keyed queue (no per-conversation ordering beyond the one
 * connection per gateway carrying requests in consume order), retries,
 * deadlines (a hung gateway hangs its messages), breakers, dead letters,
 * rebalance bookkeeping (offsets of a revoked partition may be stored
 * late), a new connection when HTTP/2 stream IDs run out (2^30 calls),
 * reconnect backoff, metrics, logs other than errors, TLS, SASL, and the
 * toOfflinePush consumer and offline providers.
 */
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "push.pb-c.h"
#include "sdkws.pb-c.h"

#define PATH        "/openim.msggateway.msgGateway/SuperGroupOnlineBatchPushOneMsg"
#define MAX_REQUEST (3584 * 1024 - 1024) /* impulse's maxGrpcMessageBytes - 1 KiB */
#define MAX_RECORD  (1000000 - 4096)     /* OpenIM's cap, minus key and headers */
#define MAX_GW      64

/* ---- small things ---- */

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) abort();
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) abort();
    return p;
}

static uint64_t fnv1a(const void *s, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    for (const uint8_t *p = s; n--; p++) h = (h ^ *p) * 1099511628211ull;
    return h;
}

struct buf {
    uint8_t *p;
    size_t len, cap;
};

static void buf_put(struct buf *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->len + n) c *= 2;
        b->p = xrealloc(b->p, c);
        b->cap = c;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) v >>= 7, n++;
    return n;
}

static void buf_varint(struct buf *b, uint64_t v)
{
    uint8_t t[10];
    size_t n = 0;
    while (v >= 0x80) t[n++] = (uint8_t)(v | 0x80), v >>= 7;
    t[n++] = (uint8_t)v;
    buf_put(b, t, n);
}

/* a length-delimited protobuf field */
static void buf_field(struct buf *b, unsigned field, const void *d, size_t n)
{
    buf_varint(b, (uint64_t)field << 3 | 2);
    buf_varint(b, n);
    buf_put(b, d, n);
}

static unsigned long n_errors;

static void error_line(const char *fmt, const char *a, const char *b)
{
    /* errors only, and not a flood of them */
    if (++n_errors <= 20) fprintf(stderr, fmt, a, b);
    if (n_errors == 20) fprintf(stderr, "bench_floor: further errors are not printed\n");
}

/* ---- string maps: the online table, the groups ---- */

struct map {
    char **keys;
    void **vals;
    size_t cap, n;
};

static size_t map_slot(const struct map *m, const char *k)
{
    size_t i = fnv1a(k, strlen(k)) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], k) != 0) i = (i + 1) & (m->cap - 1);
    return i;
}

static void *map_get(const struct map *m, const char *k)
{
    if (!m->cap) return NULL;
    size_t i = map_slot(m, k);
    return m->keys[i] ? m->vals[i] : NULL;
}

/* Adds k (copied) unless present; returns the value slot. */
static void **map_put(struct map *m, const char *k)
{
    if ((m->n + 1) * 2 > m->cap) {
        struct map old = *m;
        m->cap = m->cap ? m->cap * 2 : 1024;
        m->keys = xcalloc(m->cap, sizeof(char *));
        m->vals = xcalloc(m->cap, sizeof(void *));
        m->n = 0;
        for (size_t i = 0; i < old.cap; i++) {
            if (!old.keys[i]) continue;
            size_t j = map_slot(m, old.keys[i]);
            m->keys[j] = old.keys[i];
            m->vals[j] = old.vals[i];
            m->n++;
        }
        free(old.keys);
        free(old.vals);
    }
    size_t i = map_slot(m, k);
    if (!m->keys[i]) {
        m->keys[i] = strdup(k);
        if (!m->keys[i]) abort();
        m->n++;
    }
    return &m->vals[i];
}

struct group {
    char **members;
    size_t n;
};

static struct map online, groups;

static int load_online(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return perror(path), -1;
    char *line = NULL, *save;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        char *u = strtok_r(line, " \t\r\n", &save);
        if (u) *map_put(&online, u) = (void *)1;
    }
    free(line);
    fclose(f);
    return 0;
}

static int load_groups(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return perror(path), -1;
    char *line = NULL, *save;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        char *id = strtok_r(line, " \t\r\n", &save), *u;
        if (!id) continue;
        struct group *g = xcalloc(1, sizeof(*g));
        size_t gcap = 0;
        while ((u = strtok_r(NULL, " \t\r\n", &save))) {
            if (g->n == gcap) {
                gcap = gcap ? gcap * 2 : 16;
                g->members = xrealloc(g->members, gcap * sizeof(char *));
            }
            g->members[g->n] = strdup(u);
            if (!g->members[g->n++]) abort();
        }
        *map_put(&groups, id) = g;
    }
    free(line);
    fclose(f);
    return 0;
}

/* ---- messages ---- */

struct msg {
    int32_t partition;
    int64_t offset;
    rd_kafka_headers_t *headers; /* the record's, copied */
    Openim__Push__PushMsgReq *req;
    struct buf msgdata;  /* MsgData, status 2, packed once */
    struct group *group; /* sessionType 3 */
    char **users;        /* online recipients, in member order */
    size_t nusers;
    uint8_t *reached;         /* per users[i]: a gateway pushed to it (groups only) */
    size_t *index, index_cap; /* users by ID, built when a reply is out of order */
    int pending;              /* gateway calls and offline records unanswered */
    int gateways_done;
    int failed;
    int finished;
    struct msg *next; /* in its partition's order */
};

struct part {
    struct msg *head, *tail;
};

static rd_kafka_t *consumer, *producer;
static struct part *parts;
static size_t nparts;
static long inflight, max_inflight = 4096;
static int more_queued; /* consumption stopped at max_inflight */
static unsigned long long n_done, n_failed;
static int n_assigned;

struct gw;
static void gw_submit(struct gw *g, struct msg *m, struct buf *body_src, size_t first, size_t count,
                      void *shared);
static struct gw *gws[MAX_GW];
static int ngw;

static int option(const Openim__Sdkws__MsgData *md, const char *key)
{
    for (size_t i = 0; i < md->n_options; i++)
        if (strcmp(md->options[i]->key, key) == 0) return md->options[i]->value;
    return 1; /* a missing key means true */
}

static void msg_finish(struct msg *m)
{
    m->finished = 1;
    inflight--;
    if (m->failed)
        n_failed++;
    else
        n_done++;
    openim__push__push_msg_req__free_unpacked(m->req, NULL);
    m->req = NULL;
    free(m->msgdata.p);
    free(m->users);
    free(m->reached);
    free(m->index);
    if (m->headers) rd_kafka_headers_destroy(m->headers);
    m->headers = NULL;

    /* store the offset after the longest finished run at the partition's head */
    int32_t partition = m->partition; /* m may be freed below */
    struct part *p = &parts[partition];
    int64_t next = -1;
    while (p->head && p->head->finished) {
        struct msg *h = p->head;
        next = h->offset + 1;
        p->head = h->next;
        free(h);
    }
    if (!p->head) p->tail = NULL;
    if (next >= 0) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, "toPush", partition)->offset = next;
        rd_kafka_resp_err_t e = rd_kafka_offsets_store(consumer, l);
        if (e && e != RD_KAFKA_RESP_ERR__STATE)
            error_line("bench_floor: storing an offset: %s%s\n", rd_kafka_err2str(e), "");
        rd_kafka_topic_partition_list_destroy(l);
    }
}

/* The offline hand-off (groups): members no gateway reached, minus the
 * sender, as PushMsgReq{1 msgData, 3 userIDs} records. */
static void offline(struct msg *m)
{
    const Openim__Sdkws__MsgData *md = m->req->msgdata;
    struct group *g = m->group;
    struct buf rec = {0};
    char key[512];
    const char *a = md->sendid, *b = md->recvid;
    if (strcmp(a, b) > 0) a = md->recvid, b = md->sendid;
    snprintf(key, sizeof(key), "%s_%s", a, b);

    size_t j = 0; /* users is a subsequence of members, in order */
    for (size_t i = 0; i <= g->n; i++) {
        const char *u = i < g->n ? g->members[i] : NULL;
        int skip = 0;
        if (u && j < m->nusers && m->users[j] == u) skip = m->reached[j++];
        if (u && !skip && strcmp(u, md->sendid) == 0) skip = 1;
        size_t ul = u ? strlen(u) : 0;
        if (rec.len && (!u || (!skip && rec.len + 1 + varint_len(ul) + ul > MAX_RECORD))) {
            rd_kafka_headers_t *hs = m->headers ? rd_kafka_headers_copy(m->headers) : NULL;
            rd_kafka_resp_err_t e = rd_kafka_producev(
                producer, RD_KAFKA_V_TOPIC("toOfflinePush"), RD_KAFKA_V_KEY(key, strlen(key)),
                RD_KAFKA_V_VALUE(rec.p, rec.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                RD_KAFKA_V_HEADERS(hs), RD_KAFKA_V_OPAQUE(m), RD_KAFKA_V_END);
            if (e) {
                error_line("bench_floor: toOfflinePush: %s%s\n", rd_kafka_err2str(e), "");
                m->failed = 1;
                free(rec.p);
                if (hs) rd_kafka_headers_destroy(hs);
            } else {
                m->pending++;
            }
            rec = (struct buf){0};
        }
        if (!u || skip) continue;
        if (!rec.len) buf_field(&rec, 1, m->msgdata.p, m->msgdata.len);
        buf_field(&rec, 3, u, ul);
    }
}

/* One answer (a gateway call, an offline record's delivery) less. */
static void msg_step(struct msg *m)
{
    if (--m->pending > 0) return;
    if (!m->gateways_done) {
        m->gateways_done = 1;
        m->pending = 1;
        if (m->reached && !m->failed) offline(m);
        if (--m->pending > 0) return;
    }
    msg_finish(m);
}

static void on_record(rd_kafka_message_t *rk)
{
    if (rk->err) {
        if (rk->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            error_line("bench_floor: consumer: %s%s\n", rd_kafka_message_errstr(rk), "");
        rd_kafka_message_destroy(rk);
        return;
    }
    struct msg *m = xcalloc(1, sizeof(*m));
    m->partition = rk->partition;
    m->offset = rk->offset;
    rd_kafka_headers_t *h;
    if (rd_kafka_message_headers(rk, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
        m->headers = rd_kafka_headers_copy(h);
    if ((size_t)m->partition >= nparts) {
        size_t n = (size_t)m->partition + 1;
        parts = xrealloc(parts, n * sizeof(*parts));
        memset(parts + nparts, 0, (n - nparts) * sizeof(*parts));
        nparts = n;
    }
    struct part *p = &parts[m->partition];
    if (p->tail)
        p->tail->next = m;
    else
        p->head = m;
    p->tail = m;
    inflight++;
    m->pending = 1; /* held until every call is started */
    m->gateways_done = 0;

    m->req = openim__push__push_msg_req__unpack(NULL, rk->len, rk->payload);
    rd_kafka_message_destroy(rk);
    if (!m->req || !m->req->msgdata) {
        error_line("bench_floor: a toPush record that is not a PushMsgReq%s%s\n", "", "");
        m->failed = 1;
        m->gateways_done = 1;
        msg_step(m);
        return;
    }
    Openim__Sdkws__MsgData *md = m->req->msgdata;
    if (md->status == 1) md->status = 2;
    m->msgdata.cap = m->msgdata.len = openim__sdkws__msg_data__get_packed_size(md);
    m->msgdata.p = xrealloc(NULL, m->msgdata.len);
    openim__sdkws__msg_data__pack(md, m->msgdata.p);

    char **cand = &md->recvid;
    size_t ncand = 1;
    if (md->sessiontype == 3) {
        m->group = map_get(&groups, md->groupid);
        if (!m->group) {
            error_line("bench_floor: unknown group %s%s\n", md->groupid, "");
            m->failed = 1;
            m->gateways_done = 1;
            msg_step(m);
            return;
        }
        cand = m->group->members;
        ncand = m->group->n;
    }
    m->users = xrealloc(NULL, ncand * sizeof(char *));
    for (size_t i = 0; i < ncand; i++)
        if (map_get(&online, cand[i])) m->users[m->nusers++] = cand[i];
    if (m->group && option(md, "offlinePush")) m->reached = xcalloc(m->nusers, 1);

    /* chunks of users, each encoded once and sent to every gateway */
    size_t base = 1 + varint_len(m->msgdata.len) + m->msgdata.len, first = 0;
    while (first < m->nusers) {
        size_t size = base, count = 0;
        while (first + count < m->nusers) {
            size_t ul = strlen(m->users[first + count]);
            size_t add = 1 + varint_len(ul) + ul;
            if (count && size + add > MAX_REQUEST) break;
            size += add;
            count++;
        }
        struct buf body = {0};
        uint8_t prefix[5] = {0, (uint8_t)(size >> 24), (uint8_t)(size >> 16), (uint8_t)(size >> 8),
                             (uint8_t)size};
        body.cap = size + 5;
        body.p = xrealloc(NULL, body.cap);
        buf_put(&body, prefix, 5);
        buf_field(&body, 1, m->msgdata.p, m->msgdata.len);
        for (size_t i = first; i < first + count; i++)
            buf_field(&body, 2, m->users[i], strlen(m->users[i]));
        int *refs = xcalloc(1, sizeof(int));
        *refs = ngw;
        for (int g = 0; g < ngw; g++) gw_submit(gws[g], m, &body, first, count, refs);
        first += count;
    }
    msg_step(m);
}

static void drain(void)
{
    rd_kafka_message_t *rk;
    more_queued = 0;
    while (inflight < max_inflight) {
        if (!(rk = rd_kafka_consumer_poll(consumer, 0))) return;
        on_record(rk);
    }
    more_queued = 1;
}

/* ---- gateways: gRPC over cleartext HTTP/2 ---- */

struct body {
    int *refs; /* shared by the chunk's calls, one per gateway */
    uint8_t *p;
    size_t len;
};

struct call {
    struct gw *g;
    struct msg *m;
    struct body body;
    size_t sent, first, count;
    int http_status, grpc_status;
    struct buf resp;
    struct call *prev, *next; /* the connection's calls */
};

struct gw {
    char addr[256];
    struct sockaddr_storage sa;
    socklen_t salen;
    int fd, connecting, dirty;
    ev_io rio, wio;
    nghttp2_session *s;
    struct buf out; /* what nghttp2 produced, not yet written */
    struct call *calls;
};

static struct ev_loop *loop;
static nghttp2_session_callbacks *h2cbs;

static int same(const char *a, const uint8_t *b, size_t blen)
{
    return strncmp(a, (const char *)b, blen) == 0 && a[blen] == 0;
}

/* users[] position of uid, SIZE_MAX if absent; gateways answer in request
 * order, so guess is checked first */
static size_t user_pos(struct msg *m, size_t guess, const uint8_t *uid, size_t len)
{
    if (guess < m->nusers && same(m->users[guess], uid, len)) return guess;
    if (!m->index) { /* answers out of order: find users by ID */
        m->index_cap = 16;
        while (m->index_cap < m->nusers * 2) m->index_cap *= 2;
        m->index = xrealloc(NULL, m->index_cap * sizeof(size_t));
        for (size_t i = 0; i < m->index_cap; i++) m->index[i] = SIZE_MAX;
        for (size_t u = 0; u < m->nusers; u++) {
            size_t i = fnv1a(m->users[u], strlen(m->users[u])) & (m->index_cap - 1);
            while (m->index[i] != SIZE_MAX) i = (i + 1) & (m->index_cap - 1);
            m->index[i] = u;
        }
    }
    size_t i = fnv1a(uid, len) & (m->index_cap - 1);
    for (; m->index[i] != SIZE_MAX; i = (i + 1) & (m->index_cap - 1))
        if (same(m->users[m->index[i]], uid, len)) return m->index[i];
    return SIZE_MAX;
}

static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

static int skip_field(const uint8_t **p, const uint8_t *end, unsigned wire)
{
    uint64_t v;
    switch (wire) {
    case 0: return get_varint(p, end, &v);
    case 1: v = 8; break;
    case 2:
        if (get_varint(p, end, &v)) return -1;
        break;
    case 5: v = 4; break;
    default: return -1;
    }
    if (v > (uint64_t)(end - *p)) return -1;
    *p += v;
    return 0;
}

/* An OnlineBatchPushOneMsgResp{1 singlePushResult: {1 userID, 2 resp,
 * 3 onlinePush}} walked in place (no allocation): the users it pushed to
 * are marked reached. -1 when it does not parse. */
static int read_reply(struct msg *m, size_t first, const uint8_t *p, const uint8_t *end)
{
    for (size_t k = 0; p < end; k++) {
        uint64_t key, len, v;
        if (get_varint(&p, end, &key)) return -1;
        if (key != (1 << 3 | 2)) {
            if (skip_field(&p, end, key & 7)) return -1;
            continue;
        }
        if (get_varint(&p, end, &len) || len > (uint64_t)(end - p)) return -1;
        const uint8_t *q = p, *qend = p + len, *uid = NULL;
        size_t ulen = 0;
        int online = 0;
        while (q < qend) {
            if (get_varint(&q, qend, &key)) return -1;
            if (key == (1 << 3 | 2)) {
                if (get_varint(&q, qend, &len) || len > (uint64_t)(qend - q)) return -1;
                uid = q, ulen = len, q += len;
            } else if (key == (3 << 3 | 0)) {
                if (get_varint(&q, qend, &v)) return -1;
                online = v != 0;
            } else if (skip_field(&q, qend, key & 7)) {
                return -1;
            }
        }
        if (online && uid) {
            size_t pos = user_pos(m, first + k, uid, ulen);
            if (pos != SIZE_MAX) m->reached[pos] = 1;
        }
        p = qend;
    }
    return 0;
}

static void call_done(struct call *c, int ok, const char *why)
{
    struct gw *g = c->g;
    struct msg *m = c->m;
    if (c->prev)
        c->prev->next = c->next;
    else
        g->calls = c->next;
    if (c->next) c->next->prev = c->prev;
    if (ok && m->reached) { /* who was reached: the reply's onlinePush */
        if (c->resp.len < 5 || c->resp.p[0] != 0 ||
            read_reply(m, c->first, c->resp.p + 5, c->resp.p + c->resp.len)) {
            ok = 0;
            why = "an undecodable reply";
        }
    }
    if (!ok) {
        error_line("bench_floor: gateway %s: %s\n", g->addr, why);
        m->failed = 1;
    }
    if (--*c->body.refs == 0) {
        free(c->body.p);
        free(c->body.refs);
    }
    free(c->resp.p);
    free(c);
    msg_step(m);
}

static void gw_fail(struct gw *g, const char *why)
{
    if (g->s) nghttp2_session_del(g->s); /* calls no callback */
    g->s = NULL;
    ev_io_stop(loop, &g->rio);
    ev_io_stop(loop, &g->wio);
    if (g->fd >= 0) close(g->fd);
    g->fd = -1;
    g->out.len = 0;
    g->dirty = 0;
    while (g->calls) call_done(g->calls, 0, why);
}

/* Everything nghttp2 has to send, gathered and written with one write
 * (the rest when the socket is writable again). */
static void gw_flush(struct gw *g)
{
    g->dirty = 0;
    if (!g->s || g->connecting) return;
    for (;;) {
        const uint8_t *d;
        ssize_t n = nghttp2_session_mem_send(g->s, &d);
        if (n < 0) return gw_fail(g, nghttp2_strerror((int)n));
        if (n == 0) break;
        buf_put(&g->out, d, (size_t)n);
    }
    if (g->out.len) {
        ssize_t w = write(g->fd, g->out.p, g->out.len);
        if (w < 0 && errno != EAGAIN) return gw_fail(g, strerror(errno));
        if (w > 0) {
            memmove(g->out.p, g->out.p + w, g->out.len - (size_t)w);
            g->out.len -= (size_t)w;
        }
    }
    if (g->out.len)
        ev_io_start(loop, &g->wio);
    else
        ev_io_stop(loop, &g->wio);
    /* after a GOAWAY: the next call opens a new connection */
    if (!g->out.len && !nghttp2_session_want_read(g->s) && !nghttp2_session_want_write(g->s))
        gw_fail(g, "the gateway ended the connection");
}

static void on_gw_read(struct ev_loop *l, ev_io *w, int revents)
{
    struct gw *g = w->data;
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = read(g->fd, buf, sizeof(buf));
        if (n == 0) return gw_fail(g, "connection closed");
        if (n < 0) {
            if (errno == EAGAIN) break;
            return gw_fail(g, strerror(errno));
        }
        ssize_t r = nghttp2_session_mem_recv(g->s, buf, (size_t)n);
        if (r < 0) return gw_fail(g, nghttp2_strerror((int)r));
        if ((size_t)n < sizeof(buf)) break;
    }
    g->dirty = 1; /* WINDOW_UPDATE, SETTINGS and PING acknowledgements */
}

static void on_gw_write(struct ev_loop *l, ev_io *w, int revents)
{
    struct gw *g = w->data;
    if (g->connecting) {
        int e = 0;
        socklen_t el = sizeof(e);
        getsockopt(g->fd, SOL_SOCKET, SO_ERROR, &e, &el);
        if (e) return gw_fail(g, strerror(e));
        g->connecting = 0;
        ev_io_start(loop, &g->rio);
    }
    gw_flush(g);
}

static int gw_connect(struct gw *g)
{
    g->fd = socket(g->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (g->fd < 0) return -1;
    int one = 1;
    setsockopt(g->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(g->fd, (struct sockaddr *)&g->sa, g->salen) != 0 && errno != EINPROGRESS) {
        close(g->fd);
        g->fd = -1;
        return -1;
    }
    g->connecting = 1;
    nghttp2_session_client_new(&g->s, h2cbs, g);
    /* room for large replies (a 50,000-user answer is ~2.5 MB) */
    nghttp2_settings_entry set[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 16 << 20}};
    nghttp2_submit_settings(g->s, NGHTTP2_FLAG_NONE, set, 1);
    nghttp2_session_set_local_window_size(g->s, NGHTTP2_FLAG_NONE, 0, 64 << 20);
    ev_io_set(&g->rio, g->fd, EV_READ);
    ev_io_set(&g->wio, g->fd, EV_WRITE);
    ev_io_start(loop, &g->wio);
    return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    struct call *c = src->ptr;
    size_t n = c->body.len - c->sent < len ? c->body.len - c->sent : len;
    memcpy(buf, c->body.p + c->sent, n);
    c->sent += n;
    if (c->sent == c->body.len) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1,                              \
            NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE                           \
    }

static void gw_submit(struct gw *g, struct msg *m, struct buf *b, size_t first, size_t count,
                      void *shared)
{
    struct call *c = xcalloc(1, sizeof(*c));
    c->g = g;
    c->m = m;
    c->body = (struct body){.refs = shared, .p = b->p, .len = b->len};
    c->first = first;
    c->count = count;
    c->grpc_status = -1;
    c->next = g->calls;
    if (g->calls) g->calls->prev = c;
    g->calls = c;
    m->pending++;
    if (!g->s && gw_connect(g) != 0) return call_done(c, 0, "cannot connect");

    const void *opid = NULL;
    size_t oplen = 0;
    if (m->headers) rd_kafka_header_get_last(m->headers, "operationID", &opid, &oplen);
    nghttp2_nv h[] = {
        NV(":method", "POST"),
        NV(":scheme", "http"),
        NV(":path", PATH),
        {(uint8_t *)":authority", (uint8_t *)g->addr, 10, strlen(g->addr),
         NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE},
        NV("content-type", "application/grpc"),
        NV("te", "trailers"),
        {(uint8_t *)"operationid", (uint8_t *)(opid ? opid : ""), 11, opid ? oplen : 0,
         NGHTTP2_NV_FLAG_NO_COPY_NAME},
    };
    nghttp2_data_provider dp = {.source.ptr = c, .read_callback = read_body};
    int32_t id = nghttp2_submit_request(g->s, NULL, h, opid ? 7 : 6, &dp, c);
    if (id < 0) return call_done(c, 0, nghttp2_strerror(id));
    g->dirty = 1;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    struct call *c = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!c) return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0)
        c->http_status = atoi((const char *)value);
    else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
        c->grpc_status = atoi((const char *)value);
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *ud)
{
    struct call *c = nghttp2_session_get_stream_user_data(s, id);
    if (!c) return 0;
    if (c->resp.len < 5 && c->resp.len + len >= 5) { /* room for the whole reply at once */
        uint8_t h[5];
        size_t have = c->resp.len;
        memcpy(h, c->resp.p, have);
        memcpy(h + have, data, 5 - have);
        size_t want = 5 + ((size_t)h[1] << 24 | (size_t)h[2] << 16 | (size_t)h[3] << 8 | h[4]);
        if (want > c->resp.cap && want <= 64u << 20) {
            c->resp.p = xrealloc(c->resp.p, want);
            c->resp.cap = want;
        }
    }
    buf_put(&c->resp, data, len);
    return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    struct call *c = nghttp2_session_get_stream_user_data(s, id);
    if (!c) return 0;
    char why[64];
    if (code)
        snprintf(why, sizeof(why), "stream reset (%u)", code);
    else if (c->http_status != 200)
        snprintf(why, sizeof(why), "HTTP status %d", c->http_status);
    else
        snprintf(why, sizeof(why), "grpc-status %d", c->grpc_status);
    call_done(c, !code && c->http_status == 200 && c->grpc_status == 0, why);
    return 0;
}

/* ---- the loop ---- */

static const char *status_path;

static void write_status(void)
{
    static unsigned long long last_done = ~0ull, last_failed;
    static int last_assigned;
    if (!status_path ||
        (n_done == last_done && n_failed == last_failed && n_assigned == last_assigned))
        return;
    last_done = n_done, last_failed = n_failed, last_assigned = n_assigned;
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", status_path);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    fprintf(f, "{\"done\":%llu,\"failed\":%llu,\"assigned\":%d}\n", n_done, n_failed, n_assigned);
    fclose(f);
    rename(tmp, status_path);
}

/* Before the loop waits: consume what stopped at max_inflight, then write
 * each connection's frames of this turn at once. */
static void on_prepare(struct ev_loop *l, ev_prepare *w, int revents)
{
    if (more_queued && inflight < max_inflight) drain();
    for (int i = 0; i < ngw; i++)
        if (gws[i]->dirty) gw_flush(gws[i]);
}

static void on_consumer_wake(struct ev_loop *l, ev_io *w, int revents)
{
    char b[64];
    while (read(w->fd, b, sizeof(b)) > 0) {}
    drain();
}

static void on_producer_wake(struct ev_loop *l, ev_io *w, int revents)
{
    char b[64];
    while (read(w->fd, b, sizeof(b)) > 0) {}
    rd_kafka_poll(producer, 0);
}

static void on_tick(struct ev_loop *l, ev_timer *t, int revents)
{
    drain();
    rd_kafka_poll(producer, 0);
    write_status();
}

static void on_stop(struct ev_loop *l, ev_signal *s, int revents) { ev_break(l, EVBREAK_ALL); }

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *r, void *opaque)
{
    struct msg *m = r->_private;
    if (r->err) {
        error_line("bench_floor: toOfflinePush: %s%s\n", rd_kafka_err2str(r->err), "");
        m->failed = 1;
    }
    msg_step(m);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *l, void *opaque)
{
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        rd_kafka_assign(rk, l);
        n_assigned = l->cnt;
    } else {
        rd_kafka_assign(rk, NULL);
        n_assigned = 0;
    }
}

static void conf(rd_kafka_conf_t *c, const char *k, const char *v)
{
    char e[512];
    if (rd_kafka_conf_set(c, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "bench_floor: %s: %s\n", k, e);
        exit(1);
    }
}

/* A pipe librdkafka writes to when q gets its first element, on the loop. */
static void wake_on(rd_kafka_queue_t *q, ev_io *w, void (*cb)(struct ev_loop *, ev_io *, int))
{
    int fd[2];
    if (pipe2(fd, O_NONBLOCK | O_CLOEXEC) != 0) {
        perror("bench_floor: pipe");
        exit(1);
    }
    rd_kafka_queue_io_event_enable(q, fd[1], "1", 1);
    ev_io_init(w, cb, fd[0], EV_READ);
    ev_io_start(loop, w);
}

static int usage(void)
{
    fprintf(stderr,
            "usage: bench_floor --brokers HOST:PORT --gateway HOST:PORT [--gateway ...]\n"
            "         --online FILE --group FILE [--status FILE] [--consumer-group push]\n"
            "         [--fetch-wait-ms 50] [--max-inflight 4096] [--offset-reset latest]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *brokers = NULL, *online_path = NULL, *group_path = NULL, *cgroup = "push";
    const char *fetch_wait = "50", *reset = "latest";
    loop = ev_default_loop(0);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return usage();
        i++;
        if (strcmp(a, "--brokers") == 0)
            brokers = v;
        else if (strcmp(a, "--online") == 0)
            online_path = v;
        else if (strcmp(a, "--group") == 0)
            group_path = v;
        else if (strcmp(a, "--status") == 0)
            status_path = v;
        else if (strcmp(a, "--consumer-group") == 0)
            cgroup = v;
        else if (strcmp(a, "--fetch-wait-ms") == 0)
            fetch_wait = v;
        else if (strcmp(a, "--offset-reset") == 0)
            reset = v;
        else if (strcmp(a, "--max-inflight") == 0 && atol(v) > 0)
            max_inflight = atol(v);
        else if (strcmp(a, "--gateway") == 0 && ngw < MAX_GW) {
            struct gw *g = xcalloc(1, sizeof(*g));
            char host[256];
            const char *colon = strrchr(v, ':');
            struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
            if (!colon || (size_t)(colon - v) >= sizeof(host)) return usage();
            memcpy(host, v, (size_t)(colon - v));
            host[colon - v] = 0;
            if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) {
                fprintf(stderr, "bench_floor: cannot resolve %s\n", v);
                return 1;
            }
            memcpy(&g->sa, ai->ai_addr, ai->ai_addrlen);
            g->salen = ai->ai_addrlen;
            freeaddrinfo(ai);
            snprintf(g->addr, sizeof(g->addr), "%s", v);
            g->fd = -1;
            ev_init(&g->rio, on_gw_read);
            ev_init(&g->wio, on_gw_write);
            g->rio.data = g->wio.data = g;
            gws[ngw++] = g;
        } else
            return usage();
    }
    if (!brokers || !online_path || !group_path || !ngw) return usage();
    if (load_online(online_path) || load_groups(group_path)) return 1;
    signal(SIGPIPE, SIG_IGN);

    nghttp2_session_callbacks_new(&h2cbs);
    nghttp2_session_callbacks_set_on_header_callback(h2cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(h2cbs, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(h2cbs, on_close);

    /* the consumer: the engine's settings (net/kafka.c, spec/helpers.lua) */
    char e[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    conf(c, "bootstrap.servers", brokers);
    conf(c, "client.id", "bench_floor");
    conf(c, "group.id", cgroup);
    conf(c, "partition.assignment.strategy", "range");
    conf(c, "enable.auto.commit", "true");
    conf(c, "enable.auto.offset.store", "false");
    conf(c, "auto.offset.reset", reset);
    conf(c, "enable.partition.eof", "false");
    conf(c, "fetch.wait.max.ms", fetch_wait);
    conf(c, "auto.commit.interval.ms", "200");
    conf(c, "session.timeout.ms", "6000");
    conf(c, "heartbeat.interval.ms", "1000");
    rd_kafka_conf_set_rebalance_cb(c, on_rebalance);
    if (!(consumer = rd_kafka_new(RD_KAFKA_CONSUMER, c, e, sizeof(e)))) {
        fprintf(stderr, "bench_floor: consumer: %s\n", e);
        return 1;
    }
    rd_kafka_poll_set_consumer(consumer);

    /* the producer: impulse's for toOfflinePush (net/producer.c) */
    rd_kafka_conf_t *p = rd_kafka_conf_new();
    conf(p, "bootstrap.servers", brokers);
    conf(p, "client.id", "bench_floor");
    conf(p, "acks", "all");
    conf(p, "partitioner", "fnv1a");
    conf(p, "message.max.bytes", "1000000");
    conf(p, "linger.ms", "2");
    conf(p, "message.timeout.ms", "30000");
    rd_kafka_conf_set_dr_msg_cb(p, on_delivery);
    if (!(producer = rd_kafka_new(RD_KAFKA_PRODUCER, p, e, sizeof(e)))) {
        fprintf(stderr, "bench_floor: producer: %s\n", e);
        return 1;
    }

    rd_kafka_queue_t *cq = rd_kafka_queue_get_consumer(consumer);
    rd_kafka_queue_t *pq = rd_kafka_queue_get_main(producer);
    ev_io cw, pw;
    wake_on(cq, &cw, on_consumer_wake);
    wake_on(pq, &pw, on_producer_wake);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, "toPush", RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(consumer, t);
    rd_kafka_topic_partition_list_destroy(t);
    if (err) {
        fprintf(stderr, "bench_floor: subscribe: %s\n", rd_kafka_err2str(err));
        return 1;
    }

    ev_prepare prep;
    ev_prepare_init(&prep, on_prepare);
    ev_prepare_start(loop, &prep);
    ev_timer tick;
    ev_timer_init(&tick, on_tick, 0.1, 0.1);
    ev_timer_start(loop, &tick);
    ev_signal s1, s2;
    ev_signal_init(&s1, on_stop, SIGINT);
    ev_signal_init(&s2, on_stop, SIGTERM);
    ev_signal_start(loop, &s1);
    ev_signal_start(loop, &s2);
    write_status();
    ev_run(loop, 0);

    /* stop: commit what is stored, deliver what is produced */
    rd_kafka_queue_destroy(cq);
    rd_kafka_queue_destroy(pq);
    rd_kafka_consumer_close(consumer);
    rd_kafka_flush(producer, 2000);
    write_status();
    rd_kafka_destroy(consumer);
    rd_kafka_destroy(producer);
    return 0;
}

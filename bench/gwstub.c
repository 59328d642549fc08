/*
 * A fast msggateway stand-in for benchmarks (issue 16): answers OpenIM's
 * SuperGroupOnlineBatchPushOneMsg over cleartext HTTP/2 (gRPC, prior
 * knowledge) from one thread, so a benchmark measures impulse, not the
 * Node stand-in.
 *
 *   build/bench_gwstub [--port N] [--info FILE] [--offline-every K] [--latency FILE]
 *
 * Every user asked about is reported pushed online (onlinePush true, one
 * platform result), except every K-th user when --offline-every is given.
 * Nothing is kept per message. Once a second, when anything changed, it
 * prints "requests N users N bytes N" to stdout; --info gets
 * {"grpc":"127.0.0.1:PORT"} once it listens. What it leaves out: metadata
 * checks, deadlines (grpc-timeout is ignored), TLS, the real gateway's
 * connection table: it is a sink with OpenIM's wire shape.
 *
 * --latency FILE (bench/latency.lua): each request's msgData.ex is read
 * as the produce time (CLOCK_REALTIME microseconds, decimal, as
 * bench_loadgen writes it) and receipt − produce time is kept as one
 * int32 sample of microseconds per request, "receipt" being the wall
 * clock read once per read() of the socket the request's last bytes came
 * in. On SIGUSR1, and at exit, the samples so far go to FILE (written
 * aside and renamed in, so a reader never sees half a file) and the list
 * starts again: a first line "# requests N users N samples N untimed N"
 * (untimed: requests whose ex held no number), then one sample a line.
 * The loadgen and the stub must share a machine (one wall clock).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PATH "/openim.msggateway.msgGateway/SuperGroupOnlineBatchPushOneMsg"

struct stream {
    int32_t id;
    int ok_path;
    uint8_t *req; /* the request body (gRPC frame) */
    size_t len, cap;
    uint8_t *resp; /* the reply's gRPC frame */
    size_t rlen, rpos;
};

struct conn {
    int fd;
    ev_io rio, wio;
    nghttp2_session *s;
    uint8_t *out; /* what nghttp2 produced, not yet written */
    size_t olen, ocap;
};

static struct ev_loop *loop;
static long offline_every;
static unsigned long long n_requests, n_users, n_bytes, last_printed;
/* --latency: the samples since the last dump (µs), and the wall clock at
 * the current read() */
static const char *lat_path;
static int32_t *lat;
static size_t nlat, caplat;
static unsigned long long n_untimed;
static int64_t recv_us;

static void *grow(void *p, size_t *cap, size_t need)
{
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    p = realloc(p, c);
    if (!p) abort();
    *cap = c;
    return p;
}

/* ---- protobuf, by hand ---- */

static int varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

static size_t put_varint(uint8_t *o, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        o[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    o[n++] = (uint8_t)v;
    return n;
}

/* msgData.ex of an OnlineBatchPushOneMsgReq body as a decimal number,
 * or -1: the produce time bench_loadgen put there. */
static int64_t produce_time(const uint8_t *body, size_t len)
{
    const uint8_t *p = body, *end = body + len;
    int inside = 0;
    while (p < end) {
        uint64_t key, l;
        if (varint(&p, end, &key)) return -1;
        if ((key & 7) == 0) { /* varint: skip */
            if (varint(&p, end, &l)) return -1;
            continue;
        }
        if ((key & 7) != 2 || varint(&p, end, &l) || l > (uint64_t)(end - p)) return -1;
        if (!inside && key >> 3 == 1) { /* msgData: descend */
            end = p + l;
            inside = 1;
            continue;
        }
        if (inside && key >> 3 == 23) { /* ex */
            int64_t v = 0;
            if (l == 0 || l > 18) return -1;
            for (uint64_t i = 0; i < l; i++) {
                if (p[i] < '0' || p[i] > '9') return -1;
                v = v * 10 + (p[i] - '0');
            }
            return v;
        }
        p += l;
    }
    return -1;
}

static void record_latency(const uint8_t *body, size_t len)
{
    int64_t ts = produce_time(body, len);
    if (ts < 0) {
        n_untimed++;
        return;
    }
    int64_t d = recv_us - ts;
    if (d > INT32_MAX) d = INT32_MAX;
    if (d < INT32_MIN) d = INT32_MIN;
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 1 << 16;
        lat = realloc(lat, caplat * sizeof(*lat));
        if (!lat) abort();
    }
    lat[nlat++] = (int32_t)d;
}

static void dump_latency(void)
{
    if (!lat_path) return;
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", lat_path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        perror(tmp);
        return;
    }
    fprintf(f, "# requests %llu users %llu samples %zu untimed %llu\n", n_requests, n_users, nlat,
            n_untimed);
    for (size_t i = 0; i < nlat; i++) fprintf(f, "%d\n", lat[i]);
    if (fclose(f) == 0) rename(tmp, lat_path);
    nlat = 0;
}

/* The reply to an OnlineBatchPushOneMsgReq body (without the gRPC
 * prefix): one SingleMsgToUserResults per pushToUserIDs entry. */
static void answer(struct stream *st, const uint8_t *body, size_t len)
{
    const uint8_t *p = body, *end = body + len;
    size_t cap = 5 + len * 2 + 64, out = 5;
    uint8_t *r = malloc(cap);
    if (!r) abort();
    long i = 0;
    while (p < end) {
        uint64_t key, l;
        if (varint(&p, end, &key)) break;
        if ((key & 7) != 2 || varint(&p, end, &l) || l > (uint64_t)(end - p)) break;
        if ((key >> 3) == 2) { /* a user ID */
            int online = !(offline_every > 0 && ++i % offline_every == 0);
            /* SingleMsgToUserResults{userID=1, resp=2{ResultCode 0, RecvID, RecvPlatFormID 1},
             * onlinePush=3} */
            uint8_t plat[24 + 256];
            size_t pl = 0;
            if (l < 200) {
                plat[pl++] = 0x12; /* RecvID */
                pl += put_varint(plat + pl, l);
                memcpy(plat + pl, p, l);
                pl += l;
                plat[pl++] = 0x18; /* RecvPlatFormID */
                plat[pl++] = 1;
            }
            size_t inner = 1 + 5 + l + (pl ? 1 + 5 + pl : 0) + (online ? 2 : 0);
            if (out + 1 + 5 + inner > cap) {
                cap = (out + 1 + 5 + inner) * 2;
                r = realloc(r, cap);
                if (!r) abort();
            }
            uint8_t tmp[16];
            size_t ilen = 1 + put_varint(tmp, l) + l + (pl ? 1 + put_varint(tmp, pl) + pl : 0) +
                          (online ? 2 : 0);
            r[out++] = 0x0a; /* singlePushResult */
            out += put_varint(r + out, ilen);
            r[out++] = 0x0a; /* userID */
            out += put_varint(r + out, l);
            memcpy(r + out, p, l);
            out += l;
            if (pl) {
                r[out++] = 0x12; /* resp */
                out += put_varint(r + out, pl);
                memcpy(r + out, plat, pl);
                out += pl;
            }
            if (online) {
                r[out++] = 0x18; /* onlinePush */
                r[out++] = 1;
            }
            n_users++;
        }
        p += l;
    }
    size_t msg = out - 5;
    r[0] = 0;
    r[1] = (uint8_t)(msg >> 24);
    r[2] = (uint8_t)(msg >> 16);
    r[3] = (uint8_t)(msg >> 8);
    r[4] = (uint8_t)msg;
    st->resp = r;
    st->rlen = out;
}

/* ---- HTTP/2 ---- */

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)id;
    (void)ud;
    struct stream *st = src->ptr;
    size_t n = st->rlen - st->rpos < len ? st->rlen - st->rpos : len;
    memcpy(buf, st->resp + st->rpos, n);
    st->rpos += n;
    if (st->rpos == st->rlen) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        static const nghttp2_nv trailers[] = {
            {(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, NGHTTP2_NV_FLAG_NONE},
        };
        nghttp2_submit_trailer(s, st->id, trailers, 1);
    }
    return (ssize_t)n;
}

static void respond(nghttp2_session *s, struct stream *st)
{
    if (!st->ok_path || st->len < 5) {
        static const nghttp2_nv h[] = {
            {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
            {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16,
             NGHTTP2_NV_FLAG_NONE},
            {(uint8_t *)"grpc-status", (uint8_t *)"12", 11, 2, NGHTTP2_NV_FLAG_NONE},
        };
        nghttp2_submit_response(s, st->id, h, 3, NULL);
        return;
    }
    size_t len =
        (size_t)st->req[1] << 24 | (size_t)st->req[2] << 16 | (size_t)st->req[3] << 8 | st->req[4];
    if (len > st->len - 5) len = st->len - 5;
    if (lat_path) record_latency(st->req + 5, len);
    answer(st, st->req + 5, len);
    n_requests++;
    n_bytes += st->len;
    static const nghttp2_nv h[] = {
        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = read_body};
    nghttp2_submit_response(s, st->id, h, 2, &dp);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    struct stream *st = calloc(1, sizeof(*st));
    if (!st) abort();
    st->id = f->hd.stream_id;
    nghttp2_session_set_stream_user_data(s, st->id, st);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    (void)flags;
    (void)ud;
    struct stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (st && namelen == 5 && memcmp(name, ":path", 5) == 0)
        st->ok_path = valuelen == sizeof(PATH) - 1 && memcmp(value, PATH, valuelen) == 0;
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *ud)
{
    (void)flags;
    (void)ud;
    struct stream *st = nghttp2_session_get_stream_user_data(s, id);
    if (!st) return 0;
    st->req = grow(st->req, &st->cap, st->len + len);
    memcpy(st->req + st->len, data, len);
    st->len += len;
    return 0;
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        struct stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
        if (st) respond(s, st);
    }
    return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    (void)code;
    (void)ud;
    struct stream *st = nghttp2_session_get_stream_user_data(s, id);
    if (st) {
        free(st->req);
        free(st->resp);
        free(st);
    }
    return 0;
}

static void conn_close(struct conn *c)
{
    ev_io_stop(loop, &c->rio);
    ev_io_stop(loop, &c->wio);
    nghttp2_session_del(c->s);
    close(c->fd);
    free(c->out);
    free(c);
}

/* Everything nghttp2 has to send, in one buffer, written with one call
 * (the rest waits for the socket to be writable). */
static int flush(struct conn *c)
{
    for (;;) {
        const uint8_t *d;
        ssize_t n = nghttp2_session_mem_send(c->s, &d);
        if (n < 0) return -1;
        if (n == 0) break;
        c->out = grow(c->out, &c->ocap, c->olen + (size_t)n);
        memcpy(c->out + c->olen, d, (size_t)n);
        c->olen += (size_t)n;
    }
    while (c->olen) {
        ssize_t w = write(c->fd, c->out, c->olen);
        if (w < 0) {
            if (errno == EAGAIN) break;
            return -1;
        }
        memmove(c->out, c->out + w, c->olen - (size_t)w);
        c->olen -= (size_t)w;
    }
    if (c->olen)
        ev_io_start(loop, &c->wio);
    else
        ev_io_stop(loop, &c->wio);
    if (!c->olen && !nghttp2_session_want_read(c->s) && !nghttp2_session_want_write(c->s))
        return -1;
    return 0;
}

static void on_read(struct ev_loop *l, ev_io *w, int revents)
{
    (void)l;
    (void)revents;
    struct conn *c = w->data;
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof(buf));
        if (lat_path) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            recv_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
        }
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
            conn_close(c);
            return;
        }
        if (n < 0) break;
        if (nghttp2_session_mem_recv(c->s, buf, (size_t)n) < 0) {
            conn_close(c);
            return;
        }
        if ((size_t)n < sizeof(buf)) break;
    }
    if (flush(c)) conn_close(c);
}

static void on_write(struct ev_loop *l, ev_io *w, int revents)
{
    (void)l;
    (void)revents;
    struct conn *c = w->data;
    if (flush(c)) conn_close(c);
}

static nghttp2_session_callbacks *cbs;

static void on_accept(struct ev_loop *l, ev_io *w, int revents)
{
    (void)revents;
    for (;;) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) abort();
        c->fd = fd;
        nghttp2_session_server_new(&c->s, cbs, c);
        nghttp2_settings_entry set[] = {
            {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000},
            {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 16 << 20},
        };
        nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, set, 2);
        nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0, 64 << 20);
        ev_io_init(&c->rio, on_read, fd, EV_READ);
        ev_io_init(&c->wio, on_write, fd, EV_WRITE);
        c->rio.data = c->wio.data = c;
        ev_io_start(l, &c->rio);
        if (flush(c)) conn_close(c);
    }
}

static void on_tick(struct ev_loop *l, ev_timer *t, int revents)
{
    (void)l;
    (void)t;
    (void)revents;
    if (n_requests == last_printed) return;
    last_printed = n_requests;
    printf("requests %llu users %llu bytes %llu\n", n_requests, n_users, n_bytes);
    fflush(stdout);
}

static void on_stop(struct ev_loop *l, ev_signal *s, int revents)
{
    (void)s;
    (void)revents;
    on_tick(l, NULL, 0);
    dump_latency();
    ev_break(l, EVBREAK_ALL);
}

static void on_dump(struct ev_loop *l, ev_signal *s, int revents)
{
    (void)l;
    (void)s;
    (void)revents;
    dump_latency();
}

int main(int argc, char **argv)
{
    int port = 0;
    const char *info = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--info") == 0 && i + 1 < argc)
            info = argv[++i];
        else if (strcmp(argv[i], "--offline-every") == 0 && i + 1 < argc)
            offline_every = atol(argv[++i]);
        else if (strcmp(argv[i], "--latency") == 0 && i + 1 < argc)
            lat_path = argv[++i];
        else {
            fprintf(stderr, "usage: bench_gwstub [--port N] [--info FILE] [--offline-every K] "
                            "[--latency FILE]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    loop = ev_default_loop(0);
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 512) ||
        getsockname(fd, (struct sockaddr *)&a, &al)) {
        perror("bench_gwstub: listen");
        return 1;
    }
    if (info) {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp", info);
        FILE *f = fopen(tmp, "w");
        if (!f) {
            perror(info);
            return 1;
        }
        fprintf(f, "{\"grpc\":\"127.0.0.1:%d\"}\n", ntohs(a.sin_port));
        fclose(f);
        rename(tmp, info);
    }
    ev_io lio;
    ev_io_init(&lio, on_accept, fd, EV_READ);
    ev_io_start(loop, &lio);
    ev_timer tick;
    ev_timer_init(&tick, on_tick, 1., 1.);
    ev_timer_start(loop, &tick);
    ev_signal s1, s2, s3;
    ev_signal_init(&s1, on_stop, SIGINT);
    ev_signal_init(&s2, on_stop, SIGTERM);
    ev_signal_init(&s3, on_dump, SIGUSR1);
    ev_signal_start(loop, &s1);
    ev_signal_start(loop, &s2);
    ev_signal_start(loop, &s3);
    ev_run(loop, 0);
    nghttp2_session_callbacks_del(cbs);
    return 0;
}

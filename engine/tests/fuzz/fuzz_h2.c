/* libFuzzer: the HTTP/2 client (net/h2.c) on a connection whose server
 * sends the input: the bytes after TLS, from the server's first frame
 * (SETTINGS) on. Three requests are on the connection first, as the
 * providers' sender makes them (a small POST, a POST with headers, and a
 * 100 KB POST that waits for the server's WINDOW_UPDATE). The input goes
 * through the client's real receive path (conn_recv: nghttp2's parser and
 * impulse's callbacks: status, headers, body, stream close, GOAWAY,
 * REFUSED_STREAM resends) in pieces of 1 to 509 bytes, each followed by
 * the client's flush and its prepare watcher (answers delivered, frames
 * written); at the end the connection is closed as on a read error.
 *
 * What must hold: every request is answered exactly once (or was still
 * waiting for a connection when the input ended), with status 0 on an
 * error, a body within the 4 MiB cap and header lines as "name: value\r\n";
 * the connection's open-stream count matches its list of streams; no
 * crash, leak or undefined behaviour.
 *
 * h2.c is compiled in whole (the connection's functions are static).
 * TLS is replaced by the input: SSL_write below takes every byte the
 * client sends (nghttp2's frames are discarded), and no socket is opened
 * (the connection's fd is /dev/null, never polled: the loop never runs). */
#include "net/h2.c"

#include <fcntl.h>

int SSL_write(SSL *ssl, const void *buf, int num)
{
    (void)ssl;
    (void)buf;
    return num;
}

#define NREQ 3

static struct answer {
    int done, cancelled, err;
    long status;
    size_t len;
} answers[NREQ];

static void on_done(void *arg, int err, long status, const char *body, size_t len,
                    const char *errmsg)
{
    struct answer *a = arg;
    (void)body;
    (void)errmsg;
    if (a->done || a->cancelled) __builtin_trap(); /* answered twice */
    if (err && status != 0) __builtin_trap();
    if (len > MAX_RESP || (len && !body)) __builtin_trap();
    a->done = 1;
    a->err = err;
    a->status = status;
    a->len = len;
}

static void on_header(void *arg, const char *line, size_t len)
{
    (void)arg;
    if (len < 4 || len > 1024 || line[len - 2] != '\r' || line[len - 1] != '\n') __builtin_trap();
    if (!memchr(line, ':', len)) __builtin_trap();
}

static void check(struct conn *k)
{
    int n = 0;
    for (struct imp_h2_req *r = k->streams.head; r; r = r->next) {
        if (r->where != R_STREAM || r->conn != k) __builtin_trap();
        n++;
    }
    if (k->nstreams < 0 || k->nstreams != n) __builtin_trap();
}

static int alive(struct origin *o, struct conn *k)
{
    for (struct conn *x = o->conns; x; x = x->next)
        if (x == k) return 1;
    return 0;
}

/* The requests still waiting for a connection are cancelled: with the
 * connection gone the client would open another (a name lookup, a
 * socket), which this target does not do. */
static void cancel_waiting(struct origin *o, struct imp_h2_req **reqs)
{
    for (int i = 0; i < NREQ; i++)
        if (!o->conns && reqs[i] && !answers[i].done && !answers[i].cancelled &&
            reqs[i]->where == R_PENDING) {
            imp_h2_cancel(reqs[i]);
            answers[i].cancelled = 1;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ev_loop *loop;
    static struct imp_h2 *c;
    static char big[100 * 1024];
    static const char *const lines[] = {"authorization: bearer x", "apns-topic: im.example",
                                        "apns-push-type: alert", "content-type: application/json",
                                        NULL};
    if (!loop) {
        loop = ev_loop_new(EVFLAG_AUTO);
        c = imp_h2_create(loop, NULL, 1); /* one connection: ours */
        memset(big, 'x', sizeof(big));
    }
    memset(answers, 0, sizeof(answers));

    struct origin *o = origin_of(c, "push.example", 443, "");
    struct conn *k = conn_add(o);
    k->fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    conn_start(k);

    struct imp_http_opts opts[NREQ] = {
        {.method = "POST",
         .url = "https://push.example/v1/projects/p/messages:send",
         .body = "{\"message\":{}}",
         .body_len = 14},
        {.method = "POST",
         .url = "https://push.example/3/device/abc",
         .headers = lines,
         .body = "{\"aps\":{}}",
         .body_len = 10,
         .on_header = on_header},
        {.method = "POST",
         .url = "https://push.example/push",
         .body = big,
         .body_len = sizeof(big)},
    };
    struct imp_h2_req *reqs[NREQ];
    for (int i = 0; i < NREQ; i++) {
        opts[i].on_done = on_done;
        opts[i].arg = &answers[i];
        reqs[i] = imp_h2_request(c, &opts[i]);
    }
    on_prepare(loop, &c->prep, 0); /* the preface, SETTINGS and requests "sent" */

    size_t off = 0, piece = size % 509 + 1;
    while (off < size && alive(o, k)) {
        size_t n = IMP_MIN(piece, size - off);
        if (conn_recv(k, data + off, n) == 0 && conn_flush(k) == 0) check(k);
        off += n;
        cancel_waiting(o, reqs);
        on_prepare(loop, &c->prep, 0);
    }
    if (alive(o, k)) conn_close(k, IMP_EIO, "fuzz: the input ended");
    cancel_waiting(o, reqs);
    on_prepare(loop, &c->prep, 0);
    for (int i = 0; i < NREQ; i++) {
        if (!answers[i].done && !answers[i].cancelled) __builtin_trap(); /* never answered */
        if (getenv("FUZZ_H2_PRINT")) /* what a corpus input does: FUZZ_H2_PRINT=1 fuzz_h2 file */
            fprintf(stderr, "request %d: %s, err %d, status %ld, %zu body bytes\n", i + 1,
                    answers[i].cancelled ? "waiting" : "answered", answers[i].err,
                    answers[i].status, answers[i].len);
    }
    if (o->conns || o->pend.head || c->done.head) __builtin_trap();
    return 0;
}

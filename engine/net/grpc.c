/*
 * gRPC C core client plumbing. A call owns everything the batch points at
 * (metadata slices, the send buffer, the receive slots) until its tag comes
 * back from the completion queue: gRPC may touch them until then, even
 * after a deadline or cancel. The completion thread does no work beyond
 * forwarding; decoding and callbacks run on the owner's loop.
 *
 * Calls are started on their owner's loop (the workers, the watcher); the
 * server side feeds daemon/pushsvc.c.
 */
#include "net/grpc.h"

#include <dlfcn.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/common.h"
#include "base/log.h"

#define MAX_MD 8

struct imp_grpc_channel {
    grpc_channel *ch;
    char *addr;
};

/* Every tag given to the completion queue starts with this: the
 * completion thread calls on_event and nothing else. */
struct tag {
    void (*on_event)(struct tag *t, int ok);
};

struct imp_grpc_call {
    struct tag tag;                    /* first */
    struct imp_grpc_call *next, *prev; /* live calls (calls_lock) */
    /* Release/acquire handoff to the completion thread: gRPC passes the tag
     * through its own synchronization, which ThreadSanitizer cannot see in
     * Debian's uninstrumented libgrpc; this makes the ordering explicit. */
    atomic_int published;
    grpc_call *call;
    struct imp_inbox *inbox;
    imp_grpc_cb cb;
    void *arg;
    int ok; /* the batch completed successfully */
    grpc_metadata md[MAX_MD];
    size_t nmd;
    grpc_byte_buffer *send;
    grpc_metadata_array initial_md;
    grpc_metadata_array trailing_md;
    grpc_byte_buffer *recv;
    grpc_status_code status;
    grpc_slice details;
};

static grpc_completion_queue *cq;
static pthread_t cq_thread;
static atomic_long in_flight;

/* Every client call from start to free, so imp_grpc_stop can cancel what
 * is still waiting (a hung peer would otherwise hold the completion queue
 * open until each call's deadline). */
static pthread_mutex_t calls_lock = PTHREAD_MUTEX_INITIALIZER;
static struct imp_grpc_call *calls;

static void call_link(struct imp_grpc_call *c)
{
    pthread_mutex_lock(&calls_lock);
    c->next = calls;
    if (calls) calls->prev = c;
    calls = c;
    pthread_mutex_unlock(&calls_lock);
}

static void call_unlink(struct imp_grpc_call *c)
{
    pthread_mutex_lock(&calls_lock);
    if (c->prev)
        c->prev->next = c->next;
    else if (calls == c)
        calls = c->next;
    if (c->next) c->next->prev = c->prev;
    c->next = c->prev = NULL;
    pthread_mutex_unlock(&calls_lock);
}

static void call_free(struct imp_grpc_call *c)
{
    call_unlink(c);
    for (size_t i = 0; i < c->nmd; i++) {
        grpc_slice_unref(c->md[i].key);
        grpc_slice_unref(c->md[i].value);
    }
    if (c->send) grpc_byte_buffer_destroy(c->send);
    if (c->recv) grpc_byte_buffer_destroy(c->recv);
    grpc_metadata_array_destroy(&c->initial_md);
    grpc_metadata_array_destroy(&c->trailing_md);
    grpc_slice_unref(c->details);
    if (c->call) grpc_call_unref(c->call);
    free(c);
    atomic_fetch_sub(&in_flight, 1);
}

/* Runs on the owner's loop. */
static void call_complete(void *arg)
{
    struct imp_grpc_call *c = arg;
    struct imp_grpc_result r = {0};
    char detail[256];
    grpc_slice all = grpc_empty_slice();

    if (!c->ok) {
        r.status = GRPC_STATUS_UNKNOWN;
        r.details = "call failed in the completion queue";
    } else {
        r.status = c->status;
        size_t dl = GRPC_SLICE_LENGTH(c->details);
        if (dl >= sizeof(detail)) dl = sizeof(detail) - 1;
        memcpy(detail, GRPC_SLICE_START_PTR(c->details), dl);
        detail[dl] = '\0';
        r.details = detail;
        if (r.status == GRPC_STATUS_OK) {
            if (c->recv) {
                grpc_byte_buffer_reader rd;
                if (grpc_byte_buffer_reader_init(&rd, c->recv)) {
                    all = grpc_byte_buffer_reader_readall(&rd);
                    grpc_byte_buffer_reader_destroy(&rd);
                }
                r.data = GRPC_SLICE_START_PTR(all);
                r.len = GRPC_SLICE_LENGTH(all);
            } else {
                /* OK without a message: a server bug; report, don't crash */
                r.status = GRPC_STATUS_INTERNAL;
                r.details = "server returned OK without a reply message";
            }
        }
    }
    c->cb(c->arg, &r);
    grpc_slice_unref(all);
    call_free(c);
}

/* Completion thread: a client call is forwarded to its owner's inbox. */
static void call_event(struct tag *tag, int ok)
{
    struct imp_grpc_call *c = (struct imp_grpc_call *)tag;
    (void)atomic_load_explicit(&c->published, memory_order_acquire);
    c->ok = ok;
    if (imp_inbox_post(c->inbox, call_complete, c) != 0) {
        imp_warn(NULL, "grpc: completion for a closed loop dropped");
        call_free(c);
    }
}

static void *cq_main(void *arg)
{
    (void)arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type != GRPC_OP_COMPLETE) continue;
        struct tag *t = ev.tag;
        t->on_event(t, ev.success);
    }
    return NULL;
}

static void grpc_log_bridge(gpr_log_func_args *a)
{
    int level = a->severity == GPR_LOG_SEVERITY_ERROR  ? IMP_LOG_ERROR
                : a->severity == GPR_LOG_SEVERITY_INFO ? IMP_LOG_INFO
                                                       : IMP_LOG_DEBUG;
    imp_log(level, NULL, "grpc: %s (%s:%d)", a->message, a->file, a->line);
}

/* Debian's abseil is built with deadlock detection on: every absl::Mutex
 * lock inside gRPC updates a global lock graph (GraphCycles: ~3% of the
 * engine's CPU in bench/cpu.lua). It is a debugging aid; turn it off
 * through absl::SetMutexDeadlockDetectionMode(OnDeadlockCycle::kIgnore),
 * looked up at run time so another abseil build simply skips this. */
static void absl_deadlock_detection_off(void)
{
    static const char *const names[] = {
        "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
        "_ZN4absl12lts_2022062329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
        "_ZN4absl29SetMutexDeadlockDetectionModeENS_15OnDeadlockCycleE",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *sym = dlsym(RTLD_DEFAULT, names[i]);
        if (sym) {
            void (*set_mode)(int);
            memcpy(&set_mode, &sym, sizeof set_mode);
            set_mode(0); /* kIgnore */
            return;
        }
    }
}

int imp_grpc_start(void)
{
    absl_deadlock_detection_off();
    gpr_set_log_function(grpc_log_bridge);
    gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR);
    grpc_init();
    cq = grpc_completion_queue_create_for_next(NULL);
    if (pthread_create(&cq_thread, NULL, cq_main, NULL) != 0) {
        grpc_completion_queue_destroy(cq);
        grpc_shutdown();
        return IMP_EIO;
    }
    return 0;
}

void imp_grpc_stop(void)
{
    if (!cq) return;
    /* calls still waiting (a hung gateway, past the drain deadline) end
     * now, with CANCELLED; their completions find their loops closed */
    pthread_mutex_lock(&calls_lock);
    for (struct imp_grpc_call *c = calls; c; c = c->next)
        if (c->call) grpc_call_cancel(c->call, NULL);
    pthread_mutex_unlock(&calls_lock);
    grpc_completion_queue_shutdown(cq);
    pthread_join(cq_thread, NULL);
    grpc_completion_queue_destroy(cq);
    cq = NULL;
    grpc_shutdown();
}

struct imp_grpc_channel *imp_grpc_channel_create(const char *addr, int max_msg)
{
    grpc_arg args[] = {
        /* replies are OpenIM's to size (a 100,000-member group's IDs pass
         * 4 MiB): accept big ones; what we send stays under max_msg */
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = 64 << 20},
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
         .value.integer = max_msg},
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
         .value.integer = 200},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, .value.integer = 200},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, .value.integer = 1000},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_TIME_MS, .value.integer = 30000},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS, .value.integer = 10000},
        /* per-call cost (bench/cpu.lua): no transparent retries (the retry
         * filter copies every send), no channelz bookkeeping, the minimal
         * filter stack (sizes are bounded by the callers), deadlines kept */
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ENABLE_RETRIES, .value.integer = 0},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ENABLE_CHANNELZ, .value.integer = 0},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MINIMAL_STACK, .value.integer = 1},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ENABLE_DEADLINE_CHECKS, .value.integer = 1},
    };
    grpc_channel_args cargs = {IMP_ARRAY_LEN(args), args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    struct imp_grpc_channel *ch = imp_xcalloc(1, sizeof(*ch));
    ch->addr = imp_xstrdup(addr);
    ch->ch = grpc_channel_create(addr, creds, &cargs);
    grpc_channel_credentials_release(creds);
    return ch;
}

void imp_grpc_channel_destroy(struct imp_grpc_channel *ch)
{
    if (!ch) return;
    grpc_channel_destroy(ch->ch);
    free(ch->addr);
    free(ch);
}

const char *imp_grpc_channel_addr(const struct imp_grpc_channel *ch) { return ch->addr; }

long imp_grpc_calls_in_flight(void) { return atomic_load(&in_flight); }

int imp_grpc_unary(struct imp_grpc_channel *ch, const char *method, const void *req, size_t len,
                   int timeout_ms, const struct imp_grpc_md *md, size_t nmd,
                   struct imp_inbox *inbox, imp_grpc_cb cb, void *arg)
{
    struct imp_grpc_call *c = imp_xcalloc(1, sizeof(*c));
    grpc_op ops[6];
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    grpc_slice mslice = grpc_slice_from_copied_string(method);

    atomic_fetch_add(&in_flight, 1);
    c->tag.on_event = call_event;
    c->inbox = inbox;
    c->cb = cb;
    c->arg = arg;
    c->details = grpc_empty_slice();
    grpc_metadata_array_init(&c->initial_md);
    grpc_metadata_array_init(&c->trailing_md);
    c->call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, mslice, NULL,
                                       deadline, NULL);
    grpc_slice_unref(mslice);
    if (!c->call) goto fail;
    call_link(c);
    for (size_t i = 0; i < nmd && c->nmd < MAX_MD; i++) {
        /* absent keys are not sent; empty ones are, as OpenIM's client
         * interceptor sends every key its context holds
         * (tools@v0.0.50-alpha.67:mw/rpc_client_interceptor.go:78-112) */
        if (!md[i].value) continue;
        c->md[c->nmd].key = grpc_slice_from_copied_string(md[i].key);
        c->md[c->nmd].value = grpc_slice_from_copied_string(md[i].value);
        c->nmd++;
    }
    grpc_slice body = grpc_slice_from_copied_buffer(req, len);
    c->send = grpc_raw_byte_buffer_create(&body, 1);
    grpc_slice_unref(body);

    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = c->nmd;
    ops[0].data.send_initial_metadata.metadata = c->md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->trailing_md;
    ops[5].data.recv_status_on_client.status = &c->status;
    ops[5].data.recv_status_on_client.status_details = &c->details;
    atomic_store_explicit(&c->published, 1, memory_order_release);
    if (grpc_call_start_batch(c->call, ops, IMP_ARRAY_LEN(ops), &c->tag, NULL) != GRPC_CALL_OK)
        goto fail;
    return 0;
fail:
    call_free(c);
    return IMP_EIO;
}

/* ---------- server ---------- */

#define REQUESTS_OUTSTANDING 4

enum { SC_REQUESTED, SC_RECEIVING, SC_REPLYING };

struct imp_grpc_server {
    grpc_server *srv;
    imp_grpc_handler handler;
    void *arg;
    struct tag shutdown_tag;
    atomic_int shutting;
    atomic_long calls; /* server calls alive */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int shut_done;
};

struct imp_grpc_scall {
    struct tag tag; /* first */
    atomic_int published;
    int stage;
    struct imp_grpc_server *s;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_byte_buffer *recv;
    grpc_slice payload;
    char method[128];
    grpc_byte_buffer *send;
    grpc_slice status_details;
    int cancelled;
};

static void scall_event(struct tag *tag, int ok);

static void scall_free(struct imp_grpc_scall *c)
{
    struct imp_grpc_server *s = c->s;
    if (c->call) grpc_call_unref(c->call);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->md);
    if (c->recv) grpc_byte_buffer_destroy(c->recv);
    if (c->send) grpc_byte_buffer_destroy(c->send);
    grpc_slice_unref(c->payload);
    grpc_slice_unref(c->status_details);
    free(c);
    atomic_fetch_sub(&s->calls, 1);
}

/* Asks gRPC for the next incoming call (completion thread or start). */
static void request_next(struct imp_grpc_server *s)
{
    if (atomic_load(&s->shutting)) return;
    struct imp_grpc_scall *c = imp_xcalloc(1, sizeof(*c));
    c->tag.on_event = scall_event;
    c->s = s;
    c->stage = SC_REQUESTED;
    c->payload = grpc_empty_slice();
    c->status_details = grpc_empty_slice();
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    atomic_fetch_add(&s->calls, 1);
    atomic_store_explicit(&c->published, 1, memory_order_release);
    if (grpc_server_request_call(s->srv, &c->call, &c->details, &c->md, cq, cq, &c->tag) !=
        GRPC_CALL_OK) {
        imp_warn(NULL, "grpc server: cannot request a call");
        scall_free(c);
    }
}

/* Completion thread. */
static void scall_event(struct tag *tag, int ok)
{
    struct imp_grpc_scall *c = (struct imp_grpc_scall *)tag;
    (void)atomic_load_explicit(&c->published, memory_order_acquire);
    switch (c->stage) {
    case SC_REQUESTED: {
        if (!ok) { /* the server is shutting down */
            scall_free(c);
            return;
        }
        request_next(c->s);
        size_t ml = GRPC_SLICE_LENGTH(c->details.method);
        if (ml >= sizeof(c->method)) ml = sizeof(c->method) - 1;
        memcpy(c->method, GRPC_SLICE_START_PTR(c->details.method), ml);
        c->method[ml] = '\0';
        grpc_op op;
        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &c->recv;
        c->stage = SC_RECEIVING;
        atomic_store_explicit(&c->published, 1, memory_order_release);
        if (grpc_call_start_batch(c->call, &op, 1, &c->tag, NULL) != GRPC_CALL_OK) scall_free(c);
        return;
    }
    case SC_RECEIVING:
        if (!ok || !c->recv) {
            imp_grpc_scall_reply(c, GRPC_STATUS_INVALID_ARGUMENT, "no request message", NULL, 0);
            return;
        }
        {
            grpc_byte_buffer_reader rd;
            if (grpc_byte_buffer_reader_init(&rd, c->recv)) {
                c->payload = grpc_byte_buffer_reader_readall(&rd);
                grpc_byte_buffer_reader_destroy(&rd);
            }
        }
        c->s->handler(c->s->arg, c, c->method, GRPC_SLICE_START_PTR(c->payload),
                      GRPC_SLICE_LENGTH(c->payload));
        return;
    default: scall_free(c);
    }
}

static void server_shutdown_event(struct tag *tag, int ok)
{
    (void)ok;
    struct imp_grpc_server *s =
        (struct imp_grpc_server *)((char *)tag - offsetof(struct imp_grpc_server, shutdown_tag));
    pthread_mutex_lock(&s->mu);
    s->shut_done = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

struct imp_grpc_server *imp_grpc_server_start(const char *listen, int max_msg,
                                              imp_grpc_handler handler, void *arg, int *port,
                                              char *err, size_t errlen)
{
    grpc_arg args[] = {
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = 64 << 20},
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
         .value.integer = max_msg},
    };
    grpc_channel_args cargs = {IMP_ARRAY_LEN(args), args};
    struct imp_grpc_server *s = imp_xcalloc(1, sizeof(*s));
    s->handler = handler;
    s->arg = arg;
    s->shutdown_tag.on_event = server_shutdown_event;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->srv = grpc_server_create(&cargs, NULL);
    grpc_server_register_completion_queue(s->srv, cq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    *port = grpc_server_add_http2_port(s->srv, listen, creds);
    grpc_server_credentials_release(creds);
    if (*port <= 0) {
        snprintf(err, errlen, "cannot listen on %s", listen);
        grpc_server_destroy(s->srv);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return NULL;
    }
    grpc_server_start(s->srv);
    for (int i = 0; i < REQUESTS_OUTSTANDING; i++) request_next(s);
    return s;
}

const char *imp_grpc_scall_md(const struct imp_grpc_scall *c, const char *key, char *buf,
                              size_t buflen)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i < c->md.count; i++) {
        const grpc_metadata *m = &c->md.metadata[i];
        if (GRPC_SLICE_LENGTH(m->key) != kl || memcmp(GRPC_SLICE_START_PTR(m->key), key, kl) != 0)
            continue;
        size_t vl = GRPC_SLICE_LENGTH(m->value);
        if (vl >= buflen) vl = buflen - 1;
        memcpy(buf, GRPC_SLICE_START_PTR(m->value), vl);
        buf[vl] = '\0';
        return buf;
    }
    return NULL;
}

void imp_grpc_scall_reply(struct imp_grpc_scall *c, int status, const char *details,
                          const void *reply, size_t len)
{
    grpc_op ops[4];
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    n++;
    if (status == GRPC_STATUS_OK) {
        grpc_slice body = grpc_slice_from_copied_buffer(reply ? reply : "", len);
        c->send = grpc_raw_byte_buffer_create(&body, 1);
        grpc_slice_unref(body);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = c->send;
        n++;
    }
    c->status_details = grpc_slice_from_copied_string(details ? details : "");
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)status;
    ops[n].data.send_status_from_server.status_details = &c->status_details;
    n++;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n].data.recv_close_on_server.cancelled = &c->cancelled;
    n++;
    c->stage = SC_REPLYING;
    atomic_store_explicit(&c->published, 1, memory_order_release);
    if (grpc_call_start_batch(c->call, ops, n, &c->tag, NULL) != GRPC_CALL_OK) scall_free(c);
}

void imp_grpc_server_shutdown(struct imp_grpc_server *s)
{
    int was = 0;
    if (!s || !atomic_compare_exchange_strong(&s->shutting, &was, 1)) return;
    grpc_server_shutdown_and_notify(s->srv, cq, &s->shutdown_tag);
}

void imp_grpc_server_destroy(struct imp_grpc_server *s)
{
    if (!s) return;
    imp_grpc_server_shutdown(s);
    grpc_server_cancel_all_calls(s->srv);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&s->mu);
    while (!s->shut_done)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &until) != 0) break;
    int done = s->shut_done;
    pthread_mutex_unlock(&s->mu);
    if (!done) {
        /* never destroy a server gRPC still reports to: leak it instead */
        imp_warn(NULL, "grpc server: shutdown did not complete in 10 s");
        return;
    }
    grpc_server_destroy(s->srv);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

const char *imp_grpc_status_name(int status, char *buf, size_t buflen)
{
    static const char *names[] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    if (status >= 0 && (size_t)status < IMP_ARRAY_LEN(names)) return names[status];
    snprintf(buf, buflen, "%d", status);
    return buf;
}

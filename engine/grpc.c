/*
 * gRPC C core client plumbing. A call owns everything the batch points at
 * (metadata slices, the send buffer, the receive slots) until its tag comes
 * back from the completion queue: gRPC may touch them until then, even
 * after a deadline or cancel. The completion thread does no work beyond
 * forwarding; decoding and callbacks run on the owner's loop.
 */
#include "grpc.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "log.h"

#define MAX_MD 8

struct imp_grpc_channel {
    grpc_channel *ch;
    char *addr;
};

struct imp_grpc_call {
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

static void call_free(struct imp_grpc_call *c)
{
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

static void *cq_main(void *arg)
{
    (void)arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type != GRPC_OP_COMPLETE) continue;
        struct imp_grpc_call *c = ev.tag;
        (void)atomic_load_explicit(&c->published, memory_order_acquire);
        c->ok = ev.success;
        if (imp_inbox_post(c->inbox, call_complete, c) != 0) {
            imp_warn(NULL, "grpc: completion for a closed loop dropped");
            call_free(c);
        }
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

int imp_grpc_start(void)
{
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
    for (size_t i = 0; i < nmd && c->nmd < MAX_MD; i++) {
        if (!md[i].value || !md[i].value[0]) continue;
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
    if (grpc_call_start_batch(c->call, ops, IMP_ARRAY_LEN(ops), c, NULL) != GRPC_CALL_OK) goto fail;
    return 0;
fail:
    call_free(c);
    return IMP_EIO;
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

/*
 * A loop's gRPC channels by address (chans.h). A linear list: a worker
 * talks to a handful of gateways and service nodes, and a lookup is a few
 * string compares. Channels are closed only when their node leaves the
 * followed list (imp_chans_follow) or the set is destroyed.
 *
 * Breakers are per loop, so no other thread may read them; what the admin
 * listener shows is the gauge impulse_gateway_breakers_open{gateway=addr},
 * the number of loops whose breaker for addr is open or probing, kept in
 * step by every change of state here (an atomic add: no lock).
 */
#include "net/chans.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/metrics.h"
#include "net/grpc.h"
#include "state/registry.h"

enum { B_CLOSED, B_OPEN, B_PROBING };

struct chan {
    char *addr;
    struct imp_grpc_channel *ch;
    int state;                 /* breaker */
    int failures;              /* in a row */
    uint64_t until;            /* B_OPEN: skip until then; B_PROBING: the probe's deadline */
    struct imp_metric *m_open; /* impulse_gateway_breakers_open, once it opened */
};

struct imp_chans {
    int max_message;
    int breaker_failures; /* 0: no breaker */
    int breaker_open_ms;
    int breaker_probe_ms;
    struct chan *v;
    size_t n;
    struct imp_svclist *seen; /* the list imp_chans_follow last returned */
    size_t rr;                /* round robin over service nodes */
};

#define M_OPEN "impulse_gateway_breakers_open"

static struct imp_metric *open_gauge(const char *addr)
{
    char labels[320];
    snprintf(labels, sizeof(labels), "gateway=\"%s\"", addr);
    return imp_metrics_gauge(
        M_OPEN, labels, "Worker loops whose circuit breaker for the gateway is open or probing");
}

/* Moves ch's breaker to state, keeping the gauge in step. */
static void set_state(struct chan *ch, int state)
{
    int was = ch->state != B_CLOSED, now = state != B_CLOSED;
    ch->state = state;
    if (was == now) return;
    if (!ch->m_open) ch->m_open = open_gauge(ch->addr);
    imp_metric_add(ch->m_open, now ? 1 : -1);
}

int imp_chans_breakers_open(const char *addr)
{
    char labels[320];
    snprintf(labels, sizeof(labels), "gateway=\"%s\"", addr);
    return (int)imp_metrics_get(M_OPEN, labels);
}

struct imp_chans *imp_chans_create(int max_message)
{
    struct imp_chans *c = imp_xcalloc(1, sizeof(*c));
    c->max_message = max_message;
    return c;
}

void imp_chans_destroy(struct imp_chans *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) {
        set_state(&c->v[i], B_CLOSED);
        imp_grpc_channel_destroy(c->v[i].ch);
        free(c->v[i].addr);
    }
    free(c->v);
    imp_svclist_release(c->seen);
    free(c);
}

static struct chan *find(struct imp_chans *c, const char *addr)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].addr, addr) == 0) return &c->v[i];
    c->v = imp_xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
    c->v[c->n] = (struct chan){
        .addr = imp_xstrdup(addr),
        .ch = imp_grpc_channel_create(addr, c->max_message),
    };
    return &c->v[c->n++];
}

struct imp_grpc_channel *imp_chans_get(struct imp_chans *c, const char *addr)
{
    return find(c, addr)->ch;
}

void imp_chans_breaker(struct imp_chans *c, int failures, int open_ms, int probe_ms)
{
    c->breaker_failures = failures;
    c->breaker_open_ms = open_ms;
    c->breaker_probe_ms = probe_ms;
}

struct imp_grpc_channel *imp_chans_admit(struct imp_chans *c, const char *addr, uint64_t now_ms)
{
    struct chan *ch = find(c, addr);
    if (!c->breaker_failures || ch->state == B_CLOSED) return ch->ch;
    if (now_ms >= ch->until) {    /* open and due, or a probe never reported */
        set_state(ch, B_PROBING); /* this caller probes; the others skip */
        ch->until = now_ms + (uint64_t)c->breaker_probe_ms;
        return ch->ch;
    }
    return NULL;
}

int imp_chans_report(struct imp_chans *c, const char *addr, int ok, uint64_t now_ms)
{
    if (!c->breaker_failures) return 0;
    struct chan *ch = find(c, addr);
    if (ok) {
        ch->failures = 0;
        set_state(ch, B_CLOSED);
        return 0;
    }
    ch->failures++;
    if (ch->state == B_PROBING || (ch->state == B_CLOSED && ch->failures >= c->breaker_failures)) {
        set_state(ch, B_OPEN);
        ch->until = now_ms + (uint64_t)c->breaker_open_ms;
        return 1;
    }
    return 0;
}

static void drop(struct imp_chans *c, const char *addr)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->v[i].addr, addr) != 0) continue;
        set_state(&c->v[i], B_CLOSED); /* a gateway that left is no longer open here */
        imp_grpc_channel_destroy(c->v[i].ch);
        free(c->v[i].addr);
        c->v[i] = c->v[--c->n];
        return;
    }
}

struct imp_grpc_channel *imp_chans_service(struct imp_chans *c, struct imp_registry *reg,
                                           const char *name)
{
    struct imp_svclist *l = imp_registry_fetch(reg, name);
    struct imp_grpc_channel *ch = NULL;
    if (l->n) ch = imp_chans_get(c, l->addrs[c->rr++ % l->n]);
    imp_svclist_release(l);
    return ch;
}

struct imp_svclist *imp_chans_follow(struct imp_chans *c, struct imp_registry *reg,
                                     const char *name)
{
    struct imp_svclist *cur = imp_registry_fetch(reg, name);
    if (c->seen && c->seen->version != cur->version) {
        for (size_t i = 0; i < c->seen->n; i++) {
            int still = 0;
            for (size_t j = 0; j < cur->n && !still; j++)
                still = strcmp(c->seen->addrs[i], cur->addrs[j]) == 0;
            if (!still) drop(c, c->seen->addrs[i]);
        }
    }
    if (c->seen != cur) {
        imp_svclist_release(c->seen);
        c->seen = cur;
        atomic_fetch_add((_Atomic int *)&cur->refs, 1);
    }
    return cur; /* the caller owns one reference */
}

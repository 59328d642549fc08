/*
 * A loop's gRPC channels by address (chans.h). A linear list: a worker
 * talks to a handful of gateways and service nodes, and a lookup is a few
 * string compares. Channels are closed only when their node leaves the
 * followed list (imp_chans_follow) or the set is destroyed.
 */
#include "net/chans.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "net/grpc.h"
#include "state/registry.h"

struct chan {
    char *addr;
    struct imp_grpc_channel *ch;
};

struct imp_chans {
    int max_message;
    struct chan *v;
    size_t n;
    struct imp_svclist *seen; /* the list imp_chans_follow last returned */
    size_t rr;                /* round robin over service nodes */
};

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
        imp_grpc_channel_destroy(c->v[i].ch);
        free(c->v[i].addr);
    }
    free(c->v);
    imp_svclist_release(c->seen);
    free(c);
}

struct imp_grpc_channel *imp_chans_get(struct imp_chans *c, const char *addr)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].addr, addr) == 0) return c->v[i].ch;
    c->v = imp_xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
    c->v[c->n].addr = imp_xstrdup(addr);
    c->v[c->n].ch = imp_grpc_channel_create(addr, c->max_message);
    return c->v[c->n++].ch;
}

static void drop(struct imp_chans *c, const char *addr)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->v[i].addr, addr) != 0) continue;
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

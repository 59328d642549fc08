/*
 * A mutex guards the table of current snapshots; fetch takes a reference
 * under it, so the publisher can drop the registry's own reference right
 * after swapping without racing a reader.
 *
 * Published by the etcd client on the watcher's loop (net/etcd.c);
 * fetched by the workers' channel sets (net/chans.c) and the watcher.
 */
#include "state/registry.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"

struct svc {
    char *name;
    struct imp_svclist *cur;
};

struct imp_registry {
    pthread_mutex_t lock;
    size_t n;
    struct svc *svcs;
    const char **names;
    struct imp_svclist empty;
};

static struct imp_svclist *list_new(char *const *addrs, char *const *keys, size_t n,
                                    uint64_t version)
{
    struct imp_svclist *l = imp_xcalloc(1, sizeof(*l));
    l->refs = 1;
    l->version = version;
    l->addrs = imp_xcalloc(n ? n : 1, sizeof(char *));
    if (keys) l->keys = imp_xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        l->addrs[l->n] = imp_xstrdup(addrs[i]);
        if (keys) l->keys[l->n] = imp_xstrdup(keys[i] ? keys[i] : addrs[i]);
        l->n++;
    }
    return l;
}

struct imp_registry *imp_registry_create(const char *const *names, size_t n)
{
    struct imp_registry *r = imp_xcalloc(1, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    r->n = n;
    r->svcs = imp_xcalloc(n ? n : 1, sizeof(*r->svcs));
    r->names = imp_xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        r->svcs[i].name = imp_xstrdup(names[i]);
        r->svcs[i].cur = list_new(NULL, NULL, 0, 0);
        r->names[i] = r->svcs[i].name;
    }
    r->empty.refs = 1 << 30; /* never freed */
    return r;
}

void imp_svclist_release(struct imp_svclist *l)
{
    if (!l) return;
    if (atomic_fetch_sub((_Atomic int *)&l->refs, 1) != 1) return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->addrs[i]);
        if (l->keys) free(l->keys[i]);
    }
    free(l->addrs);
    free(l->keys);
    free(l);
}

void imp_registry_destroy(struct imp_registry *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) {
        imp_svclist_release(r->svcs[i].cur);
        free(r->svcs[i].name);
    }
    free(r->svcs);
    free(r->names);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static struct svc *find(struct imp_registry *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->svcs[i].name, name) == 0) return &r->svcs[i];
    return NULL;
}

struct imp_svclist *imp_registry_fetch(struct imp_registry *r, const char *name)
{
    struct imp_svclist *l = &r->empty;
    pthread_mutex_lock(&r->lock);
    struct svc *s = find(r, name);
    if (s) l = s->cur;
    atomic_fetch_add((_Atomic int *)&l->refs, 1);
    pthread_mutex_unlock(&r->lock);
    return l;
}

/* An address with its ring name, sorted by address. */
struct pair {
    char *addr, *key;
};

static int cmp_pair(const void *a, const void *b)
{
    return strcmp(((const struct pair *)a)->addr, ((const struct pair *)b)->addr);
}

static int same_str(const char *a, const char *b) { return a == b || (a && b && !strcmp(a, b)); }

int imp_registry_publish_keyed(struct imp_registry *r, const char *name, char *const *addrs,
                               char *const *keys, size_t n)
{
    struct pair *sorted = imp_xcalloc(n ? n : 1, sizeof(*sorted));
    char **a = imp_xcalloc(n ? n : 1, sizeof(char *));
    char **k = imp_xcalloc(n ? n : 1, sizeof(char *));
    size_t m = 0;
    for (size_t i = 0; i < n; i++) sorted[i] = (struct pair){addrs[i], keys ? keys[i] : NULL};
    qsort(sorted, n, sizeof(*sorted), cmp_pair);
    for (size_t i = 0; i < n; i++)
        if (m == 0 || strcmp(a[m - 1], sorted[i].addr) != 0) {
            a[m] = sorted[i].addr;
            k[m++] = sorted[i].key;
        }

    pthread_mutex_lock(&r->lock);
    struct svc *s = find(r, name);
    if (!s) {
        pthread_mutex_unlock(&r->lock);
        free(sorted);
        free(a);
        free(k);
        return IMP_ENOTFOUND;
    }
    int same = s->cur->n == m && (s->cur->keys != NULL) == (keys != NULL);
    for (size_t i = 0; same && i < m; i++)
        same = strcmp(s->cur->addrs[i], a[i]) == 0 && (!keys || same_str(s->cur->keys[i], k[i]));
    struct imp_svclist *old = NULL;
    if (!same) {
        old = s->cur;
        s->cur = list_new(a, keys ? k : NULL, m, old->version + 1);
    }
    pthread_mutex_unlock(&r->lock);
    imp_svclist_release(old);
    free(sorted);
    free(a);
    free(k);
    return same ? 0 : 1;
}

int imp_registry_publish(struct imp_registry *r, const char *name, char *const *addrs, size_t n)
{
    return imp_registry_publish_keyed(r, name, addrs, NULL, n);
}

size_t imp_registry_names(const struct imp_registry *r, const char *const **names)
{
    *names = (const char *const *)r->names;
    return r->n;
}

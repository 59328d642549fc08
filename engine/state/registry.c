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

static struct imp_svclist *list_new(char *const *addrs, size_t n, uint64_t version)
{
    struct imp_svclist *l = imp_xcalloc(1, sizeof(*l));
    l->refs = 1;
    l->version = version;
    l->addrs = imp_xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) l->addrs[l->n++] = imp_xstrdup(addrs[i]);
    return l;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
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
        r->svcs[i].cur = list_new(NULL, 0, 0);
        r->names[i] = r->svcs[i].name;
    }
    r->empty.refs = 1 << 30; /* never freed */
    return r;
}

void imp_svclist_release(struct imp_svclist *l)
{
    if (!l) return;
    if (atomic_fetch_sub((_Atomic int *)&l->refs, 1) != 1) return;
    for (size_t i = 0; i < l->n; i++) free(l->addrs[i]);
    free(l->addrs);
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

int imp_registry_publish(struct imp_registry *r, const char *name, char *const *addrs, size_t n)
{
    char **sorted = imp_xcalloc(n ? n : 1, sizeof(char *));
    size_t m = 0;
    memcpy(sorted, addrs, n * sizeof(char *));
    qsort(sorted, n, sizeof(char *), cmp_str);
    for (size_t i = 0; i < n; i++)
        if (m == 0 || strcmp(sorted[m - 1], sorted[i]) != 0) sorted[m++] = sorted[i];

    pthread_mutex_lock(&r->lock);
    struct svc *s = find(r, name);
    if (!s) {
        pthread_mutex_unlock(&r->lock);
        free(sorted);
        return IMP_ENOTFOUND;
    }
    int same = s->cur->n == m;
    for (size_t i = 0; same && i < m; i++) same = strcmp(s->cur->addrs[i], sorted[i]) == 0;
    struct imp_svclist *old = NULL;
    if (!same) {
        old = s->cur;
        s->cur = list_new(sorted, m, old->version + 1);
    }
    pthread_mutex_unlock(&r->lock);
    imp_svclist_release(old);
    free(sorted);
    return same ? 0 : 1;
}

size_t imp_registry_names(const struct imp_registry *r, const char *const **names)
{
    *names = (const char *const *)r->names;
    return r->n;
}

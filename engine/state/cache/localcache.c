/*
 * Local cache: a slot LRU (lazy or expirable), an optional link table and
 * a list of delete hooks.
 *
 * Deleting key k deletes k, then takes k's whole link component out of the
 * link table and deletes each of its keys. Evictions (capacity, expiry)
 * are reported by the slot LRU after its lock is released; when the
 * evicted key had links, its component is deleted as well, and the key
 * itself once more: between the eviction and this report another thread
 * may have fetched the key again and linked it anew, and those fresh links
 * have just been dropped, so the fresh entry (or flight) goes too rather
 * than outlive a later invalidation of a linked key. OpenIM does the same
 * under the LRU's lock, which deadlocks when a linked key lives in the
 * same slot; here no lock is held.
 *
 * Does not: publish anything itself (the engine's delete hook does), or
 * parse anything but the DELETE_CACHE_* payload.
 *
 * Thread-safe; read by the workers (calls/group.c), invalidated and swept
 * by the watcher (daemon/watcher.c).
 */
#include "state/cache/localcache.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "state/cache/link.h"
#include "state/cache/slot.h"

struct hook {
    imp_localcache_del_fn fn;
    void *ud;
};

struct imp_localcache {
    struct imp_slot *slot; /* NULL: no local cache */
    struct imp_link *link; /* NULL: no links */
    struct hook *hooks;
    size_t nhooks;
};

struct comp_ctx {
    struct imp_localcache *c;
    const char *skip;
    size_t skiplen;
};

static void del_linked(void *ud, const char *key, size_t klen)
{
    struct comp_ctx *x = ud;
    if (klen == x->skiplen && memcmp(key, x->skip, klen) == 0) return;
    imp_slot_del(x->c->slot, key, klen);
}

static void evicted(void *ud, const char *key, size_t klen)
{
    struct imp_localcache *c = ud;
    struct comp_ctx x = {c, key, klen};
    if (imp_link_del(c->link, key, klen, del_linked, &x) > 1) imp_slot_del(c->slot, key, klen);
}

struct imp_localcache *imp_localcache_create(const struct imp_localcache_config *cfg)
{
    if (!cfg) return NULL;
    struct imp_localcache *c = imp_xcalloc(1, sizeof(*c));
    if (cfg->slot_num > 0 && cfg->slot_size > 0) {
        if (cfg->link_slot_num > 0) c->link = imp_link_create(cfg->link_slot_num);
        struct imp_slot_config sc = {
            .nslots = cfg->slot_num,
            .slot_size = cfg->slot_size,
            .success_ttl_ms = cfg->success_ttl_ms,
            .failed_ttl_ms = cfg->failed_ttl_ms,
            .kind = cfg->expiration_evict ? IMP_SLOT_EXPIRABLE : IMP_SLOT_LAZY,
            .on_evict = c->link ? evicted : NULL,
            .evict_ud = c,
        };
        c->slot = imp_slot_create(&sc);
    }
    return c;
}

void imp_localcache_destroy(struct imp_localcache *c)
{
    if (!c) return;
    imp_slot_destroy(c->slot);
    imp_link_destroy(c->link);
    free(c->hooks);
    free(c);
}

void imp_localcache_add_del_hook(struct imp_localcache *c, imp_localcache_del_fn fn, void *ud)
{
    c->hooks = imp_xrealloc(c->hooks, (c->nhooks + 1) * sizeof(*c->hooks));
    c->hooks[c->nhooks++] = (struct hook){fn, ud};
}

int imp_localcache_get_link(struct imp_localcache *c, const char *key, size_t klen,
                            const char *const *links, const size_t *llens, size_t nlinks,
                            uint64_t now_ms, struct imp_blob **val, int *err, char *errbuf,
                            size_t errlen, struct imp_lazy_waiter *w)
{
    if (!c->slot) {
        *val = NULL;
        *err = 0;
        return IMP_LAZY_FETCH;
    }
    int r = imp_slot_get(c->slot, key, klen, now_ms, val, err, errbuf, errlen, w);
    if (r == IMP_LAZY_FETCH && c->link && nlinks)
        imp_link_add(c->link, key, klen, links, llens, nlinks);
    return r;
}

int imp_localcache_get(struct imp_localcache *c, const char *key, size_t klen, uint64_t now_ms,
                       struct imp_blob **val, int *err, char *errbuf, size_t errlen,
                       struct imp_lazy_waiter *w)
{
    return imp_localcache_get_link(c, key, klen, NULL, NULL, 0, now_ms, val, err, errbuf, errlen,
                                   w);
}

int imp_localcache_get_copy(struct imp_localcache *c, const char *key, size_t klen, uint64_t now_ms,
                            void *buf, size_t cap, size_t *vlen, struct imp_blob **val, int *err,
                            char *errbuf, size_t errlen, struct imp_lazy_waiter *w)
{
    *vlen = 0;
    if (!c->slot) {
        *val = NULL;
        *err = 0;
        return IMP_LAZY_FETCH;
    }
    return imp_slot_get_copy(c->slot, key, klen, now_ms, buf, cap, vlen, val, err, errbuf, errlen,
                             w);
}

void imp_localcache_complete(struct imp_localcache *c, const char *key, size_t klen,
                             struct imp_blob *val, int err, const char *errmsg, int cache_error,
                             uint64_t now_ms)
{
    if (c->slot) imp_slot_complete(c->slot, key, klen, val, err, errmsg, cache_error, now_ms);
}

int imp_localcache_cancel(struct imp_localcache *c, const char *key, size_t klen,
                          struct imp_lazy_waiter *w)
{
    return c->slot ? imp_slot_cancel(c->slot, key, klen, w) : 0;
}

void imp_localcache_del_local(struct imp_localcache *c, const char *const *keys,
                              const size_t *klens, size_t n)
{
    if (!c->slot) return;
    for (size_t i = 0; i < n; i++) {
        imp_slot_del(c->slot, keys[i], klens[i]);
        if (!c->link) continue;
        struct comp_ctx x = {c, keys[i], klens[i]};
        imp_link_del(c->link, keys[i], klens[i], del_linked, &x);
    }
}

void imp_localcache_del(struct imp_localcache *c, const char *const *keys, const size_t *klens,
                        size_t n)
{
    for (size_t i = 0; i < c->nhooks; i++) c->hooks[i].fn(c->hooks[i].ud, keys, klens, n);
    imp_localcache_del_local(c, keys, klens, n);
}

int imp_localcache_invalidate_json(struct imp_localcache *c, const char *payload, size_t len,
                                   char *err, size_t errlen)
{
    int rc = 0;
    const char **keys = NULL;
    size_t *klens = NULL;
    const char *end = NULL; /* not cJSON_GetErrorPtr(): a global, racy across workers */
    cJSON *root = cJSON_ParseWithLengthOpts(payload, len, &end, 0);
    if (!root) {
        snprintf(err, errlen, "invalid JSON near byte %td", end ? end - payload : (ptrdiff_t)0);
        rc = IMP_EINVAL;
        goto out;
    }
    if (!cJSON_IsArray(root)) {
        snprintf(err, errlen, "not a JSON array of keys");
        rc = IMP_EINVAL;
        goto out;
    }
    size_t n = (size_t)cJSON_GetArraySize(root), i = 0;
    keys = imp_xcalloc(n, sizeof(*keys));
    klens = imp_xcalloc(n, sizeof(*klens));
    for (cJSON *it = root->child; it; it = it->next, i++) {
        if (!cJSON_IsString(it) || !it->valuestring) {
            snprintf(err, errlen, "element %zu is not a string", i);
            rc = IMP_EINVAL;
            goto out;
        }
        keys[i] = it->valuestring;
        klens[i] = strlen(it->valuestring);
    }
    imp_localcache_del_local(c, keys, klens, i);
out:
    free(klens);
    free(keys);
    cJSON_Delete(root);
    return rc;
}

size_t imp_localcache_sweep(struct imp_localcache *c, uint64_t now_ms)
{
    return c->slot ? imp_slot_sweep(c->slot, now_ms) : 0;
}

size_t imp_localcache_len(struct imp_localcache *c) { return c->slot ? imp_slot_len(c->slot) : 0; }

void imp_localcache_check(struct imp_localcache *c)
{
    IMP_ASSERT(c->slot || !c->link);
    if (c->slot) imp_slot_check(c->slot);
    if (c->link) imp_link_check(c->link);
}

size_t imp_localcache_purge(struct imp_localcache *c)
{
    return c->slot ? imp_slot_purge(c->slot) : 0;
}

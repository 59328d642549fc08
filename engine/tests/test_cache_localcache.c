/* Local cache: get/get_link over both kinds, cascade delete through links,
 * delete hooks (del) versus del_local, remote invalidation from a
 * DELETE_CACHE_* payload (valid and invalid JSON), a delete of a linked key
 * during a fetch, eviction taking linked keys with it, and the expirable
 * kind's failed fetch (not cached) and sweep. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "state/cache/localcache.h"
#include "t.h"

struct tw {
    struct imp_lazy_waiter w;
    int notified;
    int err;
};

static void tw_notify(struct imp_lazy_waiter *w, struct imp_blob *val, int err, const char *msg)
{
    (void)val;
    (void)msg;
    ((struct tw *)w)->notified++;
    ((struct tw *)w)->err = err;
}

static struct tw W = {.w = {.notify = tw_notify}};

static int get(struct imp_localcache *c, const char *k, uint64_t now)
{
    struct imp_blob *v;
    int err;
    int r = imp_localcache_get(c, k, strlen(k), now, &v, &err, NULL, 0, &W.w);
    imp_blob_release(v);
    return r;
}

/* get_link with up to two links, then complete with "v" when leading. */
static int fill(struct imp_localcache *c, const char *k, const char *l1, const char *l2,
                uint64_t now)
{
    const char *ls[2] = {l1, l2};
    size_t lens[2] = {l1 ? strlen(l1) : 0, l2 ? strlen(l2) : 0};
    struct imp_blob *v;
    int err;
    int r = imp_localcache_get_link(c, k, strlen(k), ls, lens,
                                    l2   ? 2
                                    : l1 ? 1
                                         : 0,
                                    now, &v, &err, NULL, 0, &W.w);
    imp_blob_release(v);
    if (r == IMP_LAZY_FETCH) {
        struct imp_blob *b = imp_blob_create("v", 1);
        imp_localcache_complete(c, k, strlen(k), b, 0, NULL, 1, now);
        imp_blob_release(b);
    }
    return r;
}

static int hook_calls;
static char hook_keys[256];

static void hook(void *ud, const char *const *keys, const size_t *klens, size_t n)
{
    hook_calls += *(int *)ud;
    hook_keys[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strncat(hook_keys, keys[i], klens[i]);
        strcat(hook_keys, " ");
    }
}

static void del1(struct imp_localcache *c, const char *k, int local)
{
    const char *ks[1] = {k};
    size_t ls[1] = {strlen(k)};
    if (local)
        imp_localcache_del_local(c, ks, ls, 1);
    else
        imp_localcache_del(c, ks, ls, 1);
}

static void cascade(int expirable)
{
    struct imp_localcache_config cfg = {.slot_num = 8,
                                        .slot_size = 100,
                                        .link_slot_num = 4,
                                        .success_ttl_ms = 10000,
                                        .failed_ttl_ms = 1000,
                                        .expiration_evict = expirable};
    struct imp_localcache *c = imp_localcache_create(&cfg);
    int one = 1, ten = 10;
    hook_calls = 0;
    imp_localcache_add_del_hook(c, hook, &one);
    imp_localcache_add_del_hook(c, hook, &ten);

    /* g1 <- m1, m2 ; m2 <- x ; y independent. */
    CHECK(fill(c, "g1", NULL, NULL, 0) == IMP_LAZY_FETCH);
    CHECK(fill(c, "m1", "g1", NULL, 0) == IMP_LAZY_FETCH);
    CHECK(fill(c, "m2", "g1", NULL, 0) == IMP_LAZY_FETCH);
    CHECK(fill(c, "x", "m2", NULL, 0) == IMP_LAZY_FETCH);
    CHECK(fill(c, "y", NULL, NULL, 0) == IMP_LAZY_FETCH);
    CHECK(fill(c, "m1", "zzz", NULL, 0) == IMP_LAZY_HIT); /* a hit links nothing */
    CHECK(imp_localcache_len(c) == 5);
    imp_localcache_check(c);

    /* del: hooks first (all of them, with the keys given), then the local
     * cascade g1 -> m1, m2 -> x. */
    del1(c, "g1", 0);
    CHECK(hook_calls == 11);
    CHECK_STR(hook_keys, "g1 ");
    CHECK(get(c, "g1", 1) == IMP_LAZY_FETCH);
    CHECK(get(c, "m1", 1) == IMP_LAZY_FETCH);
    CHECK(get(c, "m2", 1) == IMP_LAZY_FETCH);
    CHECK(get(c, "x", 1) == IMP_LAZY_FETCH);
    for (const char *const *k = (const char *const[]){"g1", "m1", "m2", "x", NULL}; *k; k++)
        imp_localcache_complete(c, *k, strlen(*k), NULL, IMP_ECLOSED, "cancel", 0, 1);
    CHECK(fill(c, "y", NULL, NULL, 1) == IMP_LAZY_HIT);
    CHECK(fill(c, "zzz", NULL, NULL, 1) == IMP_LAZY_FETCH); /* was never linked */

    /* del_local: no hooks. */
    fill(c, "a", "b", NULL, 2);
    fill(c, "b", NULL, NULL, 2);
    del1(c, "a", 1);
    CHECK(hook_calls == 11);
    CHECK(get(c, "b", 2) == IMP_LAZY_FETCH);
    imp_localcache_complete(c, "b", 1, NULL, IMP_EIO, "", 0, 2);

    /* A linked key deleted during the fetch: the fetched value is dropped. */
    CHECK(fill(c, "p", NULL, NULL, 3) == IMP_LAZY_FETCH);
    const char *ls[1] = {"p"};
    size_t ll[1] = {1};
    struct imp_blob *v;
    int err;
    CHECK(imp_localcache_get_link(c, "q", 1, ls, ll, 1, 3, &v, &err, NULL, 0, &W.w) ==
          IMP_LAZY_FETCH);
    del1(c, "p", 1); /* invalidation arrives while q is being fetched */
    struct imp_blob *b = imp_blob_create("stale", 5);
    imp_localcache_complete(c, "q", 1, b, 0, NULL, 1, 3);
    imp_blob_release(b);
    CHECK(get(c, "q", 3) == IMP_LAZY_FETCH);
    imp_localcache_complete(c, "q", 1, NULL, IMP_EIO, "", 0, 3);

    /* Remote invalidation. */
    fill(c, "GROUP_MEMBER_IDS:123", NULL, NULL, 4);
    fill(c, "GROUP_MEMBER_INFO:123:u1", "GROUP_MEMBER_IDS:123", NULL, 4);
    fill(c, "keep", NULL, NULL, 4);
    char e[128] = "";
    const char *ok = "[\"GROUP_MEMBER_IDS:123\", \"unknown\"]";
    CHECK(imp_localcache_invalidate_json(c, ok, strlen(ok), e, sizeof(e)) == 0);
    CHECK(hook_calls == 11);
    CHECK(get(c, "GROUP_MEMBER_IDS:123", 4) == IMP_LAZY_FETCH);
    CHECK(get(c, "GROUP_MEMBER_INFO:123:u1", 4) == IMP_LAZY_FETCH);
    imp_localcache_complete(c, "GROUP_MEMBER_IDS:123", 20, NULL, IMP_EIO, "", 0, 4);
    imp_localcache_complete(c, "GROUP_MEMBER_INFO:123:u1", 24, NULL, IMP_EIO, "", 0, 4);
    CHECK(get(c, "keep", 4) == IMP_LAZY_HIT);
    const char *bad[] = {"[\"a\", 1]", "{\"a\":1}", "[\"a\"", "", "\"a\"", "[\"keep\", null]"};
    for (size_t i = 0; i < IMP_ARRAY_LEN(bad); i++) {
        e[0] = '\0';
        CHECK(imp_localcache_invalidate_json(c, bad[i], strlen(bad[i]), e, sizeof(e)) ==
              IMP_EINVAL);
        CHECK(e[0] != '\0');
    }
    CHECK(get(c, "keep", 4) == IMP_LAZY_HIT); /* nothing deleted by a bad payload */
    const char *empty = "[]";
    CHECK(imp_localcache_invalidate_json(c, empty, 2, e, sizeof(e)) == 0);
    /* Not NUL-terminated: only len bytes are read. */
    const char *trail = "[\"keep\"]garbage";
    CHECK(imp_localcache_invalidate_json(c, trail, 8, e, sizeof(e)) == 0);
    CHECK(get(c, "keep", 4) == IMP_LAZY_FETCH);
    imp_localcache_complete(c, "keep", 4, NULL, IMP_EIO, "", 0, 4);

    imp_localcache_check(c);
    imp_localcache_destroy(c);
}

/* Eviction takes linked keys with it (and drops the links). */
static void eviction(int expirable)
{
    struct imp_localcache_config cfg = {.slot_num = 1,
                                        .slot_size = 3,
                                        .link_slot_num = 2,
                                        .success_ttl_ms = 1000,
                                        .expiration_evict = expirable};
    struct imp_localcache *c = imp_localcache_create(&cfg);
    fill(c, "parent", NULL, NULL, 0);
    fill(c, "child", "parent", NULL, 0);
    fill(c, "other", NULL, NULL, 0);
    CHECK(get(c, "child", 0) == IMP_LAZY_HIT);
    CHECK(get(c, "other", 0) == IMP_LAZY_HIT);
    fill(c, "new", NULL, NULL, 0); /* evicts parent (oldest): child goes too */
    CHECK(imp_localcache_len(c) == 2);
    CHECK(get(c, "child", 0) == IMP_LAZY_FETCH);
    imp_localcache_complete(c, "child", 5, NULL, IMP_EIO, "", 0, 0);
    CHECK(get(c, "other", 0) == IMP_LAZY_HIT);
    imp_localcache_check(c);
    if (expirable) {
        /* Expiry also takes linked keys; sweep is the engine's timer. */
        fill(c, "a", "other", NULL, 500);
        CHECK(imp_localcache_sweep(c, 1100) == 2);  /* other and new expired at 1000 */
        CHECK(get(c, "a", 1100) == IMP_LAZY_FETCH); /* linked to other: deleted */
        imp_localcache_complete(c, "a", 1, NULL, IMP_EIO, "", 0, 1100);
    } else {
        CHECK(imp_localcache_sweep(c, 1100) == 0);
    }
    imp_localcache_check(c);
    imp_localcache_destroy(c);
}

static void expirable_failures(void)
{
    struct imp_localcache_config cfg = {.slot_num = 4,
                                        .slot_size = 10,
                                        .success_ttl_ms = 1000,
                                        .failed_ttl_ms = 1000,
                                        .expiration_evict = 1};
    struct imp_localcache *c = imp_localcache_create(&cfg);
    struct tw w = {.w = {.notify = tw_notify}};
    struct imp_blob *v;
    int err;
    CHECK(get(c, "k", 0) == IMP_LAZY_FETCH);
    CHECK(imp_localcache_get(c, "k", 1, 0, &v, &err, NULL, 0, &w.w) == IMP_LAZY_WAIT);
    imp_localcache_complete(c, "k", 1, NULL, IMP_EIO, "down", 1, 0);
    CHECK(w.notified == 1 && w.err == IMP_EIO);
    CHECK(get(c, "k", 0) == IMP_LAZY_FETCH); /* a failure is never cached */
    imp_localcache_complete(c, "k", 1, NULL, IMP_EIO, "down", 1, 0);
    CHECK(imp_localcache_cancel(c, "k", 1, &w.w) == 0);
    imp_localcache_destroy(c);

    /* No local cache: every get fetches, nothing is stored. */
    struct imp_localcache_config off = {.slot_num = 0};
    c = imp_localcache_create(&off);
    CHECK(get(c, "k", 0) == IMP_LAZY_FETCH);
    CHECK(fill(c, "k", "l", NULL, 0) == IMP_LAZY_FETCH);
    CHECK(get(c, "k", 0) == IMP_LAZY_FETCH);
    CHECK(imp_localcache_len(c) == 0);
    del1(c, "k", 0);
    imp_localcache_check(c);
    imp_localcache_destroy(c);
}

int main(void)
{
    cascade(0);
    cascade(1);
    eviction(0);
    eviction(1);
    expirable_failures();
    return t_done("cache_localcache");
}

/* Slot LRU: routing across slots, both kinds (lazy and expirable: a failed
 * fetch is not cached and removes the key; TTL sweep), eviction hooks that
 * call back into the cache (they run outside the slot locks), and batches:
 * hits, keys waited for behind other leaders, keys led by the batch, partial
 * fetch results (keys not returned get IMP_ENOTFOUND, nothing cached), a
 * failed batch fetch, duplicates, and cancelling a batch. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "state/cache/slot.h"
#include "t.h"

struct tw {
    struct imp_lazy_waiter w;
    int notified;
    struct imp_blob *val;
    int err;
};

static void tw_notify(struct imp_lazy_waiter *w, struct imp_blob *val, int err, const char *msg)
{
    struct tw *t = (struct tw *)w;
    (void)msg;
    t->val = val ? imp_blob_fetch(val) : NULL;
    t->err = err;
    t->notified++;
}

static void tw_init(struct tw *t)
{
    memset(t, 0, sizeof(*t));
    t->w.notify = tw_notify;
}

static void tw_reset(struct tw *t)
{
    imp_blob_release(t->val);
    tw_init(t);
}

static struct imp_blob *B(const char *s) { return imp_blob_create(s, strlen(s)); }

static int is(struct imp_blob *b, const char *s)
{
    return b && b->len == strlen(s) && memcmp(b->data, s, b->len) == 0;
}

static int get(struct imp_slot *s, const char *k, uint64_t now, struct imp_blob **v, int *err,
               struct tw *w)
{
    return imp_slot_get(s, k, strlen(k), now, v, err, NULL, 0, &w->w);
}

static void complete(struct imp_slot *s, const char *k, const char *val, uint64_t now)
{
    struct imp_blob *b = val ? B(val) : NULL;
    imp_slot_complete(s, k, strlen(k), b, val ? 0 : IMP_EIO, val ? NULL : "boom", 1, now);
    imp_blob_release(b);
}

static void routing(enum imp_slot_kind kind)
{
    struct imp_slot_config cfg = {
        .nslots = 7, .slot_size = 100, .success_ttl_ms = 1000, .failed_ttl_ms = 1000, .kind = kind};
    struct imp_slot *s = imp_slot_create(&cfg);
    struct imp_slot_config bad = cfg;
    bad.nslots = 0;
    CHECK(imp_slot_create(&bad) == NULL);
    struct tw w;
    tw_init(&w);
    struct imp_blob *v;
    int err;
    char k[32], val[32];
    int fetches = 0;
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof(k), "GROUP_MEMBER_IDS:%d", i);
        snprintf(val, sizeof(val), "v%d", i);
        if (get(s, k, 0, &v, &err, &w) == IMP_LAZY_FETCH) fetches++;
        complete(s, k, val, 0);
    }
    CHECK(fetches == 300);
    CHECK(imp_slot_len(s) == 300);
    int hits = 0;
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof(k), "GROUP_MEMBER_IDS:%d", i);
        snprintf(val, sizeof(val), "v%d", i);
        if (get(s, k, 999, &v, &err, &w) == IMP_LAZY_HIT && is(v, val)) hits++;
        imp_blob_release(v);
    }
    CHECK(hits == 300);
    imp_slot_check(s);

    /* Single flight through the slots. */
    CHECK(get(s, "x", 0, &v, &err, &w) == IMP_LAZY_FETCH);
    CHECK(get(s, "x", 0, &v, &err, &w) == IMP_LAZY_WAIT);
    complete(s, "x", NULL, 0); /* fails */
    CHECK(w.notified == 1 && w.err == IMP_EIO);
    tw_reset(&w);
    /* Lazy caches the failure; expirable never does and removes the key. */
    int r = get(s, "x", 1, &v, &err, &w);
    if (kind == IMP_SLOT_LAZY)
        CHECK(r == IMP_LAZY_HIT && v == NULL && err == IMP_EIO);
    else
        CHECK(r == IMP_LAZY_FETCH);
    if (r == IMP_LAZY_FETCH) complete(s, "x", "1", 1);

    /* set, set_has, del, cancel. */
    struct imp_blob *b = B("s");
    CHECK(imp_slot_set_has(s, "s", 1, b, 0) == 0);
    CHECK(imp_slot_set(s, "s", 1, b, 0) == 1);
    CHECK(imp_slot_set_has(s, "s", 1, b, 0) == 1);
    imp_blob_release(b);
    CHECK(imp_slot_del(s, "s", 1) == 1);
    CHECK(imp_slot_del(s, "s", 1) == 0);
    CHECK(get(s, "y", 0, &v, &err, &w) == IMP_LAZY_FETCH);
    CHECK(get(s, "y", 0, &v, &err, &w) == IMP_LAZY_WAIT);
    CHECK(imp_slot_cancel(s, "y", 1, &w.w) == 1);
    CHECK(imp_slot_del(s, "y", 1) == 1); /* marks the flight */
    complete(s, "y", "late", 0);
    CHECK(w.notified == 0);
    CHECK(get(s, "y", 0, &v, &err, &w) == IMP_LAZY_FETCH); /* not cached */
    complete(s, "y", "1", 0);

    /* TTL: everything expires; the expirable kind sweeps it away. */
    size_t swept = imp_slot_sweep(s, 5000);
    if (kind == IMP_SLOT_EXPIRABLE) {
        CHECK(swept == imp_slot_len(s) + swept && imp_slot_len(s) == 0);
        CHECK(swept == 302);
    } else {
        CHECK(swept == 0);
    }
    CHECK(get(s, "GROUP_MEMBER_IDS:1", 5000, &v, &err, &w) == IMP_LAZY_FETCH);
    imp_slot_check(s);

    /* Purge: every entry goes, no eviction hook; a flight's result is handed
     * to its waiters but not stored. */
    struct imp_blob *pb = B("p");
    imp_slot_set(s, "p1", 2, pb, 5000);
    imp_slot_set(s, "p2", 2, pb, 5000);
    imp_blob_release(pb);
    CHECK(get(s, "p3", 5000, &v, &err, &w) == IMP_LAZY_FETCH);
    CHECK(get(s, "p3", 5000, &v, &err, &w) == IMP_LAZY_WAIT);
    size_t before = imp_slot_len(s);
    CHECK(before >= 2);
    CHECK(imp_slot_purge(s) == before);
    CHECK(imp_slot_len(s) == 0);
    complete(s, "p3", "p3!", 5000);
    CHECK(w.notified == 1 && is(w.val, "p3!"));
    tw_reset(&w);
    CHECK(get(s, "p3", 5000, &v, &err, &w) == IMP_LAZY_FETCH);
    complete(s, "p3", "x", 5000);
    CHECK(get(s, "p1", 5000, &v, &err, &w) == IMP_LAZY_FETCH);
    complete(s, "p1", "x", 5000);
    imp_slot_check(s);
    /* Destroy wakes the waiters. */
    CHECK(get(s, "GROUP_MEMBER_IDS:1", 5000, &v, &err, &w) == IMP_LAZY_WAIT);
    imp_slot_destroy(s);
    CHECK(w.notified == 1 && w.err == IMP_ECLOSED);
}

/* Eviction hooks run outside the slot locks: this one calls back into the
 * very slot that evicted (a single slot), which would self-deadlock under
 * the lock. */
static struct imp_slot *hook_slot;
static int hook_calls;
static char hook_last[32];

static void hook(void *ud, const char *key, size_t klen)
{
    (void)ud;
    hook_calls++;
    snprintf(hook_last, sizeof(hook_last), "%.*s", (int)klen, key);
    imp_slot_del(hook_slot, "victim", 6);
}

static void evict_hooks(enum imp_slot_kind kind)
{
    struct imp_slot_config cfg = {.nslots = 1,
                                  .slot_size = 2,
                                  .success_ttl_ms = 100,
                                  .failed_ttl_ms = 0,
                                  .kind = kind,
                                  .on_evict = hook};
    struct imp_slot *s = hook_slot = imp_slot_create(&cfg);
    hook_calls = 0;
    struct imp_blob *b = B("v");
    imp_slot_set(s, "a", 1, b, 0);
    imp_slot_set(s, "victim", 6, b, 0);
    imp_slot_set(s, "c", 1, b, 0); /* evicts a: the hook deletes victim */
    CHECK(hook_calls == 1);
    CHECK_STR(hook_last, "a");
    CHECK(imp_slot_len(s) == 1);
    CHECK(imp_slot_del(s, "c", 1) == 1); /* a delete is not an eviction */
    CHECK(hook_calls == 1);
    imp_slot_set(s, "d", 1, b, 0);
    if (kind == IMP_SLOT_EXPIRABLE) {
        CHECK(imp_slot_sweep(s, 1000) == 1); /* expiry is an eviction */
        CHECK(hook_calls == 2);
        CHECK_STR(hook_last, "d");
    }
    imp_blob_release(b);
    imp_slot_check(s);
    imp_slot_destroy(s);
}

/* ---- batches -------------------------------------------------------------- */

static int done_calls;
static void batch_done(struct imp_slot_batch *b)
{
    (void)b;
    done_calls++;
}

static void batches(enum imp_slot_kind kind)
{
    struct imp_slot_config cfg = {
        .nslots = 5, .slot_size = 64, .success_ttl_ms = 1000, .failed_ttl_ms = 1000, .kind = kind};
    struct imp_slot *s = imp_slot_create(&cfg);
    struct imp_blob *v;
    int err;
    /* u0..u3 cached; u4, u5 in flight behind another getter (with a waiter
     * of its own on u6 later); u6..u9 missing. u2 listed twice. */
    const char *keys[] = {"u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "u2"};
    size_t klens[11];
    for (int i = 0; i < 11; i++) klens[i] = 2;
    for (int i = 0; i < 4; i++) {
        struct imp_blob *b = B(keys[i]);
        imp_slot_set(s, keys[i], 2, b, 0);
        imp_blob_release(b);
    }
    struct tw other;
    tw_init(&other);
    CHECK(get(s, "u4", 0, &v, &err, &other) == IMP_LAZY_FETCH);
    CHECK(get(s, "u5", 0, &v, &err, &other) == IMP_LAZY_FETCH);

    done_calls = 0;
    struct imp_slot_batch *b = imp_slot_batch_create(keys, klens, 11, batch_done, NULL);
    CHECK(imp_slot_get_batch(s, b, 10) == 1);
    CHECK(b->nhit == 5 && b->nwait == 2 && b->nfetch == 4);
    for (int i = 0; i < 4; i++) CHECK(b->state[i] == IMP_LAZY_HIT && is(b->vals[i], keys[i]));
    CHECK(b->state[10] == IMP_LAZY_HIT && is(b->vals[10], "u2"));
    CHECK(b->state[4] == IMP_LAZY_WAIT && b->state[5] == IMP_LAZY_WAIT);
    for (int i = 6; i < 10; i++) CHECK(b->state[i] == IMP_LAZY_FETCH && b->vals[i] == NULL);
    imp_slot_check(s);

    /* Someone else waits on a key the batch leads. */
    CHECK(get(s, "u6", 10, &v, &err, &other) == IMP_LAZY_WAIT);

    /* ONE fetch for u6..u9 returns u6 and u8 only. */
    complete(s, "u6", "u6!", 10);
    CHECK(other.notified == 1 && is(other.val, "u6!"));
    tw_reset(&other);
    complete(s, "u8", "u8!", 10);
    CHECK(get(s, "u7", 10, &v, &err, &other) == IMP_LAZY_WAIT);
    imp_slot_batch_finish(s, b, 0, NULL, 0, 10);
    CHECK(other.notified == 1 && other.val == NULL && other.err == IMP_ENOTFOUND);
    tw_reset(&other);
    /* Only what the fetch returned is cached. */
    CHECK(get(s, "u6", 11, &v, &err, &other) == IMP_LAZY_HIT && is(v, "u6!"));
    imp_blob_release(v);
    CHECK(get(s, "u8", 11, &v, &err, &other) == IMP_LAZY_HIT);
    imp_blob_release(v);
    CHECK(get(s, "u7", 11, &v, &err, &other) == IMP_LAZY_FETCH);
    complete(s, "u7", "x", 11);
    CHECK(get(s, "u9", 11, &v, &err, &other) == IMP_LAZY_FETCH);
    complete(s, "u9", "x", 11);

    /* The other leader completes u4 (value) and u5 (failure): done runs once. */
    CHECK(done_calls == 0);
    complete(s, "u4", "u4!", 12);
    CHECK(done_calls == 0);
    complete(s, "u5", NULL, 12);
    CHECK(done_calls == 1);
    CHECK(is(b->vals[4], "u4!") && b->errs[4] == 0);
    CHECK(b->vals[5] == NULL && b->errs[5] == IMP_EIO);
    CHECK(imp_slot_batch_cancel(s, b) == 0); /* too late: done has run */
    imp_slot_batch_destroy(b);
    imp_slot_check(s);

    /* All hits: nothing to wait for, done never called. */
    const char *hk[] = {"u0", "u6"};
    size_t hl[] = {2, 2};
    done_calls = 0;
    b = imp_slot_batch_create(hk, hl, 2, batch_done, NULL);
    CHECK(imp_slot_get_batch(s, b, 20) == 0);
    CHECK(b->nhit == 2 && is(b->vals[1], "u6!"));
    CHECK(imp_slot_batch_cancel(s, b) == 1);
    imp_slot_batch_destroy(b);
    CHECK(done_calls == 0);

    /* A failed batch fetch: every led key's waiters get the error; cached
     * as a failure only in the lazy kind, and only when asked. */
    const char *fk[] = {"f1", "f2", "f1"};
    size_t fl[] = {2, 2, 2};
    b = imp_slot_batch_create(fk, fl, 3, batch_done, NULL);
    CHECK(imp_slot_get_batch(s, b, 30) == 1); /* f1 twice: waits on its own flight */
    CHECK(b->nfetch == 2 && b->nwait == 1 && b->state[2] == IMP_LAZY_WAIT);
    CHECK(get(s, "f2", 30, &v, &err, &other) == IMP_LAZY_WAIT);
    imp_slot_batch_finish(s, b, IMP_ETIMEDOUT, "rpc timeout", 1, 30);
    CHECK(done_calls == 1);
    CHECK(b->vals[2] == NULL && b->errs[2] == IMP_ETIMEDOUT);
    CHECK(other.notified == 1 && other.err == IMP_ETIMEDOUT);
    tw_reset(&other);
    int r = get(s, "f1", 31, &v, &err, &other);
    CHECK(kind == IMP_SLOT_LAZY ? r == IMP_LAZY_HIT && err == IMP_ETIMEDOUT : r == IMP_LAZY_FETCH);
    if (r == IMP_LAZY_FETCH) complete(s, "f1", "1", 31);
    imp_slot_batch_destroy(b);

    /* Cancelling a batch: its waiters leave; done will not run; its own
     * flights are unaffected (finish them). */
    CHECK(get(s, "c1", 40, &v, &err, &other) == IMP_LAZY_FETCH);
    const char *ck[] = {"c1", "c2"};
    size_t cl[] = {2, 2};
    done_calls = 0;
    b = imp_slot_batch_create(ck, cl, 2, batch_done, NULL);
    CHECK(imp_slot_get_batch(s, b, 40) == 1);
    CHECK(b->state[0] == IMP_LAZY_WAIT && b->state[1] == IMP_LAZY_FETCH);
    CHECK(imp_slot_batch_cancel(s, b) == 1);
    complete(s, "c1", "c1!", 41);
    CHECK(done_calls == 0 && b->vals[0] == NULL);
    imp_slot_batch_finish(s, b, 0, NULL, 0, 41);
    CHECK(get(s, "c2", 41, &v, &err, &other) == IMP_LAZY_FETCH); /* nothing cached */
    complete(s, "c2", "x", 41);
    imp_slot_batch_destroy(b);

    /* finish touches only the flights the batch leads. */
    const char *lk[] = {"l1"};
    size_t ll[] = {2};
    b = imp_slot_batch_create(lk, ll, 1, batch_done, NULL);
    CHECK(imp_slot_get_batch(s, b, 50) == 0 && b->nfetch == 1);
    complete(s, "l1", "l1!", 50); /* the batch completed it by key */
    CHECK(get(s, "l1", 5000, &v, &err, &other) == IMP_LAZY_FETCH); /* expired: a new leader */
    imp_slot_batch_finish(s, b, 0, NULL, 0, 5000);
    CHECK(get(s, "l1", 5000, &v, &err, &other) == IMP_LAZY_WAIT); /* still in flight */
    CHECK(imp_slot_cancel(s, "l1", 2, &other.w) == 1);
    complete(s, "l1", "new", 5000);
    imp_slot_batch_destroy(b);

    imp_slot_check(s);
    imp_slot_destroy(s);
}

int main(void)
{
    routing(IMP_SLOT_LAZY);
    routing(IMP_SLOT_EXPIRABLE);
    evict_hooks(IMP_SLOT_LAZY);
    evict_hooks(IMP_SLOT_EXPIRABLE);
    batches(IMP_SLOT_LAZY);
    batches(IMP_SLOT_EXPIRABLE);
    return t_done("cache_slot");
}

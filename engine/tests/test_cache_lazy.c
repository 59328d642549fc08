/* Lazy LRU: hit/fetch/wait, success and failed TTLs, cancelled and failed
 * leaders, delete during a flight, set/set_has, eviction order (exact and
 * CLOCK), lock-free copying gets, eviction of an entry in flight, and single flight under
 * concurrency: 100 waiters with exactly one fetch; a failed leader; a
 * waiter cancelling while the leader completes, looped across 2 threads.
 * Time is a parameter: no sleeps. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "state/cache/lazy.h"
#include "t.h"

struct tw {
    struct imp_lazy_waiter w;
    atomic_int notified;
    struct imp_blob *val;
    int err;
    char msg[64];
};

static void tw_notify(struct imp_lazy_waiter *w, struct imp_blob *val, int err, const char *msg)
{
    struct tw *t = (struct tw *)w;
    t->val = val ? imp_blob_fetch(val) : NULL;
    t->err = err;
    snprintf(t->msg, sizeof(t->msg), "%s", msg ? msg : "");
    atomic_fetch_add(&t->notified, 1);
}

static void tw_init(struct tw *t)
{
    memset(t, 0, sizeof(*t));
    t->w.notify = tw_notify;
    atomic_init(&t->notified, 0);
}

static void tw_reset(struct tw *t)
{
    imp_blob_release(t->val);
    tw_init(t);
}

static struct imp_blob *B(const char *s) { return imp_blob_create(s, strlen(s)); }

static int get(struct imp_lazy *c, const char *k, uint64_t now, struct imp_blob **v, int *err,
               struct tw *w)
{
    char eb[64];
    return imp_lazy_get(c, k, strlen(k), now, v, err, eb, sizeof(eb), &w->w);
}

static int is(struct imp_blob *b, const char *s)
{
    return b && b->len == strlen(s) && memcmp(b->data, s, b->len) == 0 && b->data[b->len] == 0;
}

static void basics(void)
{
    struct imp_lazy_config cfg = {.size = 8, .success_ttl_ms = 1000, .failed_ttl_ms = 100};
    struct imp_lazy *c = imp_lazy_create(&cfg);
    struct imp_lazy_config bad = {.size = 0};
    CHECK(imp_lazy_create(&bad) == NULL);
    struct imp_blob *v = (void *)1;
    int err = 1;
    struct tw w1, w2;
    tw_init(&w1);
    tw_init(&w2);
    uint64_t t = 10000;

    CHECK(get(c, "g", t, &v, &err, &w1) == IMP_LAZY_FETCH);
    CHECK(v == NULL && err == 0);
    CHECK(get(c, "g", t, &v, &err, &w1) == IMP_LAZY_WAIT);
    CHECK(get(c, "g", t, &v, &err, &w2) == IMP_LAZY_WAIT);
    CHECK(imp_lazy_len(c) == 0); /* a flight is not an entry */
    imp_lazy_check(c);
    struct imp_blob *val = B("members");
    imp_lazy_complete(c, "g", 1, val, 0, NULL, 1, t);
    CHECK(atomic_load(&w1.notified) == 1 && is(w1.val, "members") && w1.err == 0);
    CHECK(atomic_load(&w2.notified) == 1 && is(w2.val, "members"));
    CHECK(atomic_load(&val->refs) == 4); /* ours, the cache's, two waiters' */
    imp_blob_release(val);
    CHECK(imp_lazy_len(c) == 1);

    /* Hit until the success TTL passes; then a miss (re-fetched in place). */
    CHECK(get(c, "g", t + 999, &v, &err, &w1) == IMP_LAZY_HIT);
    CHECK(is(v, "members") && err == 0);
    imp_blob_release(v);
    CHECK(get(c, "g", t + 1000, &v, &err, &w1) == IMP_LAZY_FETCH);
    CHECK(v == NULL);
    tw_reset(&w1);
    CHECK(get(c, "g", t + 1000, &v, &err, &w1) == IMP_LAZY_WAIT); /* expired entry + flight */
    CHECK(imp_lazy_len(c) == 1);

    /* A failure cached for failed_ttl: waiters get it, later getters hit it. */
    imp_lazy_complete(c, "g", 1, NULL, IMP_EIO, "rpc down", 1, t + 1000);
    CHECK(atomic_load(&w1.notified) == 1 && w1.val == NULL && w1.err == IMP_EIO);
    CHECK_STR(w1.msg, "rpc down");
    char eb[64] = "";
    CHECK(imp_lazy_get(c, "g", 1, t + 1099, &v, &err, eb, sizeof(eb), &w2.w) == IMP_LAZY_HIT);
    CHECK(v == NULL && err == IMP_EIO);
    CHECK_STR(eb, "rpc down");
    CHECK(get(c, "g", t + 1100, &v, &err, &w2) == IMP_LAZY_FETCH);

    /* A cancelled fetch (cache_error 0) wakes the waiters with its error and
     * caches nothing. */
    tw_reset(&w1);
    CHECK(get(c, "g", t + 1100, &v, &err, &w1) == IMP_LAZY_WAIT);
    imp_lazy_complete(c, "g", 1, NULL, IMP_ETIMEDOUT, "deadline", 0, t + 1100);
    CHECK(atomic_load(&w1.notified) == 1 && w1.err == IMP_ETIMEDOUT);
    CHECK(get(c, "g", t + 1100, &v, &err, &w1) == IMP_LAZY_FETCH);

    /* Deleted during the flight: the result goes to the waiters, not the cache. */
    tw_reset(&w2);
    CHECK(get(c, "g", t + 1100, &v, &err, &w2) == IMP_LAZY_WAIT);
    CHECK(imp_lazy_del(c, "g", 1) == 1);
    val = B("stale");
    imp_lazy_complete(c, "g", 1, val, 0, NULL, 1, t + 1100);
    imp_blob_release(val);
    CHECK(atomic_load(&w2.notified) == 1 && is(w2.val, "stale"));
    CHECK(get(c, "g", t + 1100, &v, &err, &w2) == IMP_LAZY_FETCH);
    imp_lazy_complete(c, "g", 1, NULL, IMP_EIO, "x", 1, t + 1100);
    CHECK(imp_lazy_del(c, "g", 1) == 1); /* the cached failure */
    CHECK(imp_lazy_del(c, "g", 1) == 0);
    CHECK(imp_lazy_len(c) == 0);

    /* A complete for a key not in flight is ignored. */
    val = B("x");
    imp_lazy_complete(c, "nobody", 6, val, 0, NULL, 1, t);
    CHECK(imp_lazy_len(c) == 0);

    /* set and set_has. */
    CHECK(imp_lazy_set_has(c, "s", 1, val, t) == 0);
    CHECK(imp_lazy_set(c, "s", 1, val, t) == 1);
    struct imp_blob *val2 = B("y");
    CHECK(imp_lazy_set_has(c, "s", 1, val2, t) == 1);
    CHECK(get(c, "s", t, &v, &err, &w1) == IMP_LAZY_HIT && is(v, "y"));
    imp_blob_release(v);
    imp_blob_release(val);
    imp_blob_release(val2);

    /* failed_ttl 0: failures are never cached. */
    struct imp_lazy_config nf = {.size = 8, .success_ttl_ms = 0, .failed_ttl_ms = 0};
    struct imp_lazy *c2 = imp_lazy_create(&nf);
    CHECK(get(c2, "k", t, &v, &err, &w1) == IMP_LAZY_FETCH);
    imp_lazy_complete(c2, "k", 1, NULL, IMP_EIO, "x", 1, t);
    CHECK(get(c2, "k", t, &v, &err, &w1) == IMP_LAZY_FETCH);
    val = B("forever");
    imp_lazy_complete(c2, "k", 1, val, 0, NULL, 1, t);
    imp_blob_release(val);
    CHECK(get(c2, "k", UINT64_MAX - 1, &v, &err, &w1) == IMP_LAZY_HIT); /* success_ttl 0 */
    imp_blob_release(v);
    imp_lazy_check(c2);
    imp_lazy_destroy(c2);

    /* Destroy wakes every waiter with IMP_ECLOSED. */
    tw_reset(&w1);
    tw_reset(&w2);
    CHECK(get(c, "d", t, &v, &err, &w1) == IMP_LAZY_FETCH);
    CHECK(get(c, "d", t, &v, &err, &w1) == IMP_LAZY_WAIT);
    CHECK(get(c, "e", t, &v, &err, &w2) == IMP_LAZY_FETCH);
    CHECK(get(c, "e", t, &v, &err, &w2) == IMP_LAZY_WAIT);
    imp_lazy_check(c);
    imp_lazy_destroy(c);
    CHECK(atomic_load(&w1.notified) == 1 && w1.err == IMP_ECLOSED);
    CHECK(atomic_load(&w2.notified) == 1 && w2.err == IMP_ECLOSED);
    tw_reset(&w1);
    tw_reset(&w2);
}

static void cancel(void)
{
    struct imp_lazy_config cfg = {.size = 8, .success_ttl_ms = 1000, .failed_ttl_ms = 100};
    struct imp_lazy *c = imp_lazy_create(&cfg);
    struct tw w[3];
    struct imp_blob *v;
    int err;
    for (int i = 0; i < 3; i++) tw_init(&w[i]);
    CHECK(get(c, "k", 0, &v, &err, &w[0]) == IMP_LAZY_FETCH);
    for (int i = 0; i < 3; i++) CHECK(get(c, "k", 0, &v, &err, &w[i]) == IMP_LAZY_WAIT);
    CHECK(imp_lazy_cancel(c, "k", 1, &w[1].w) == 1); /* the middle one */
    CHECK(imp_lazy_cancel(c, "k", 1, &w[1].w) == 0);
    CHECK(imp_lazy_cancel(c, "other", 5, &w[0].w) == 0);
    imp_lazy_check(c);
    CHECK(imp_lazy_cancel(c, "k", 1, &w[2].w) == 1); /* the tail */
    struct imp_blob *val = B("v");
    imp_lazy_complete(c, "k", 1, val, 0, NULL, 1, 0);
    imp_blob_release(val);
    CHECK(atomic_load(&w[0].notified) == 1 && is(w[0].val, "v"));
    CHECK(atomic_load(&w[1].notified) == 0);
    CHECK(atomic_load(&w[2].notified) == 0);
    CHECK(imp_lazy_cancel(c, "k", 1, &w[0].w) == 0); /* already notified */
    for (int i = 0; i < 3; i++) tw_reset(&w[i]);
    imp_lazy_destroy(c);
}

static void eviction(void)
{
    /* Small caches are exact LRU. */
    struct imp_lazy_config cfg = {.size = 3, .success_ttl_ms = 0, .failed_ttl_ms = 0};
    struct imp_lazy *c = imp_lazy_create(&cfg);
    struct imp_blob *val = B("v"), *v;
    struct tw w;
    int err;
    tw_init(&w);
    imp_lazy_set(c, "a", 1, val, 0);
    imp_lazy_set(c, "b", 1, val, 0);
    imp_lazy_set(c, "c", 1, val, 0);
    CHECK(get(c, "a", 0, &v, &err, &w) == IMP_LAZY_HIT); /* a to the front */
    imp_blob_release(v);
    imp_lazy_set(c, "d", 1, val, 0); /* evicts b */
    CHECK(get(c, "b", 0, &v, &err, &w) == IMP_LAZY_FETCH);
    /* b is in flight; its eviction-to-be is irrelevant: evict c and a too. */
    imp_lazy_set(c, "e", 1, val, 0);
    imp_lazy_set(c, "f", 1, val, 0);
    CHECK(get(c, "a", 0, &v, &err, &w) == IMP_LAZY_FETCH);
    imp_lazy_complete(c, "a", 1, NULL, IMP_EIO, "x", 0, 0);
    imp_lazy_check(c);
    imp_lazy_destroy(c);

    /* An entry in flight evicted meanwhile: the flight and its waiters survive. */
    struct imp_lazy_config c2cfg = {.size = 2, .success_ttl_ms = 10, .failed_ttl_ms = 0};
    c = imp_lazy_create(&c2cfg);
    imp_lazy_set(c, "x", 1, val, 0);
    CHECK(get(c, "x", 10, &v, &err, &w) == IMP_LAZY_FETCH); /* expired: re-fetch */
    struct tw w2;
    tw_init(&w2);
    CHECK(get(c, "x", 10, &v, &err, &w2) == IMP_LAZY_WAIT);
    imp_lazy_set(c, "y", 1, val, 10);
    imp_lazy_set(c, "z", 1, val, 10); /* evicts x's expired entry */
    CHECK(imp_lazy_len(c) == 2);
    struct imp_blob *fresh = B("fresh");
    imp_lazy_complete(c, "x", 1, fresh, 0, NULL, 1, 10);
    imp_blob_release(fresh);
    CHECK(atomic_load(&w2.notified) == 1 && is(w2.val, "fresh"));
    CHECK(get(c, "x", 11, &v, &err, &w) == IMP_LAZY_HIT && is(v, "fresh"));
    imp_blob_release(v);
    tw_reset(&w2);
    imp_lazy_check(c);
    imp_lazy_destroy(c);

    /* CLOCK (size >= 64): a hit marks the entry; a full cache evicts the
     * oldest unmarked entry, and a marked one at the tail gets a second
     * chance at the front. k0 is hit through the locked get, k90 through a
     * lock-free copying get. */
    struct imp_lazy_config c3cfg = {.size = 100, .success_ttl_ms = 0, .failed_ttl_ms = 0};
    c = imp_lazy_create(&c3cfg);
    char k[16], buf[8];
    size_t vl;
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        imp_lazy_set(c, k, strlen(k), val, 0);
    }
    CHECK(get(c, "k0", 0, &v, &err, &w) == IMP_LAZY_HIT); /* oldest: marked */
    imp_blob_release(v);
    CHECK(imp_lazy_get_copy(c, "k90", 3, 0, buf, sizeof(buf), &vl, &v, &err, NULL, 0, &w.w) ==
              IMP_LAZY_HIT &&
          v == NULL && err == 0 && vl == val->len && memcmp(buf, val->data, vl) == 0);
    imp_lazy_check(c);
    for (int i = 100; i < 190; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        imp_lazy_set(c, k, strlen(k), val, 0);
    }
    /* 90 inserts: k0 went back to the front, k1..k89 were evicted in
     * order, k90 went back to the front, and k91 was evicted. */
    int present0 = get(c, "k0", 0, &v, &err, &w) == IMP_LAZY_HIT;
    if (present0) imp_blob_release(v);
    CHECK(present0);
    CHECK(get(c, "k89", 0, &v, &err, &w) == IMP_LAZY_FETCH);
    imp_lazy_complete(c, "k89", 3, NULL, IMP_EIO, "", 0, 0);
    CHECK(get(c, "k91", 0, &v, &err, &w) == IMP_LAZY_FETCH);
    imp_lazy_complete(c, "k91", 3, NULL, IMP_EIO, "", 0, 0);
    CHECK(get(c, "k90", 0, &v, &err, &w) == IMP_LAZY_HIT);
    imp_blob_release(v);
    CHECK(get(c, "k92", 0, &v, &err, &w) == IMP_LAZY_HIT);
    imp_blob_release(v);
    CHECK(imp_lazy_len(c) == 100);
    imp_lazy_check(c);

    /* Copying gets: a value larger than the buffer comes as a reference; a
     * replaced value is seen at once; an expired one is a miss; a deleted
     * key is a miss. */
    struct imp_blob *big = B("a value longer than eight bytes");
    imp_lazy_set(c, "big", 3, big, 0);
    CHECK(imp_lazy_get_copy(c, "big", 3, 0, buf, sizeof(buf), &vl, &v, &err, NULL, 0, &w.w) ==
              IMP_LAZY_HIT &&
          v == big && vl == 0);
    imp_blob_release(v);
    struct imp_blob *small = B("tiny");
    imp_lazy_set(c, "big", 3, small, 0);
    CHECK(imp_lazy_get_copy(c, "big", 3, 0, buf, sizeof(buf), &vl, &v, &err, NULL, 0, &w.w) ==
              IMP_LAZY_HIT &&
          v == NULL && vl == 4 && memcmp(buf, "tiny", 4) == 0);
    imp_lazy_set(c, "big", 3, big, 0); /* needs a larger block: replaced */
    CHECK(imp_lazy_get_copy(c, "big", 3, 0, buf, sizeof(buf), &vl, &v, &err, NULL, 0, &w.w) ==
              IMP_LAZY_HIT &&
          v == big);
    imp_blob_release(v);
    CHECK(imp_lazy_del(c, "big", 3) == 1);
    CHECK(imp_lazy_get_copy(c, "big", 3, 0, buf, sizeof(buf), &vl, &v, &err, NULL, 0, &w.w) ==
          IMP_LAZY_FETCH);
    imp_lazy_complete(c, "big", 3, NULL, IMP_EIO, "", 0, 0);
    imp_lazy_check(c);
    imp_lazy_destroy(c);
    struct imp_lazy_config c4cfg = {.size = 100, .success_ttl_ms = 10, .failed_ttl_ms = 0};
    c = imp_lazy_create(&c4cfg);
    imp_lazy_set(c, "e", 1, small, 100);
    CHECK(imp_lazy_get_copy(c, "e", 1, 109, buf, sizeof(buf), &vl, &v, &err, NULL, 0, &w.w) ==
              IMP_LAZY_HIT &&
          vl == 4);
    CHECK(imp_lazy_get_copy(c, "e", 1, 110, buf, sizeof(buf), &vl, &v, &err, NULL, 0, &w.w) ==
          IMP_LAZY_FETCH);
    imp_lazy_complete(c, "e", 1, small, 0, NULL, 1, 110);
    CHECK(imp_lazy_get_copy(c, "e", 1, 110, buf, sizeof(buf), &vl, &v, &err, NULL, 0, &w.w) ==
              IMP_LAZY_HIT &&
          vl == 4);
    imp_lazy_check(c);
    imp_lazy_destroy(c);
    imp_blob_release(big);
    imp_blob_release(small);
    imp_blob_release(val);
}

/* ---- concurrency ---------------------------------------------------------- */

enum { NTHREADS = 100 };

struct crowd {
    struct imp_lazy *c;
    pthread_barrier_t start;
    atomic_int returned, fetches, waits, hits, got_value, got_error;
    int fail; /* the leader fails */
};

struct member {
    struct crowd *cr;
    struct tw w;
};

static void *crowd_member(void *arg)
{
    struct member *m = arg;
    struct crowd *cr = m->cr;
    struct imp_blob *v;
    int err;
    char eb[32];
    pthread_barrier_wait(&cr->start);
    int r = imp_lazy_get(cr->c, "hot", 3, 500, &v, &err, eb, sizeof(eb), &m->w.w);
    atomic_fetch_add(&cr->returned, 1);
    if (r == IMP_LAZY_FETCH) {
        atomic_fetch_add(&cr->fetches, 1);
        /* Complete only once everyone is queued, so all of them wait. */
        while (atomic_load(&cr->returned) < NTHREADS) sched_yield();
        if (cr->fail) {
            imp_lazy_complete(cr->c, "hot", 3, NULL, IMP_EIO, "leader failed", 0, 500);
        } else {
            struct imp_blob *val = B("the value");
            imp_lazy_complete(cr->c, "hot", 3, val, 0, NULL, 1, 500);
            imp_blob_release(val);
        }
        return NULL;
    }
    if (r == IMP_LAZY_HIT) {
        atomic_fetch_add(&cr->hits, 1);
        imp_blob_release(v);
        return NULL;
    }
    atomic_fetch_add(&cr->waits, 1);
    while (atomic_load(&m->w.notified) == 0) sched_yield();
    if (is(m->w.val, "the value")) atomic_fetch_add(&cr->got_value, 1);
    if (!m->w.val && m->w.err == IMP_EIO && strcmp(m->w.msg, "leader failed") == 0)
        atomic_fetch_add(&cr->got_error, 1);
    return NULL;
}

static void single_flight(int fail)
{
    struct imp_lazy_config cfg = {.size = 16, .success_ttl_ms = 1000, .failed_ttl_ms = 1000};
    struct crowd cr;
    memset(&cr, 0, sizeof(cr));
    cr.c = imp_lazy_create(&cfg);
    cr.fail = fail;
    pthread_barrier_init(&cr.start, NULL, NTHREADS);
    static struct member m[NTHREADS];
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        m[i].cr = &cr;
        tw_init(&m[i].w);
        pthread_create(&th[i], NULL, crowd_member, &m[i]);
    }
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    CHECK(atomic_load(&cr.fetches) == 1);
    CHECK(atomic_load(&cr.waits) == NTHREADS - 1);
    CHECK(atomic_load(&cr.hits) == 0);
    if (fail) {
        CHECK(atomic_load(&cr.got_error) == NTHREADS - 1);
        CHECK(imp_lazy_len(cr.c) == 0); /* not cached (cache_error 0) */
    } else {
        CHECK(atomic_load(&cr.got_value) == NTHREADS - 1);
        CHECK(imp_lazy_len(cr.c) == 1);
    }
    for (int i = 0; i < NTHREADS; i++) CHECK(atomic_load(&m[i].w.notified) <= 1);
    for (int i = 0; i < NTHREADS; i++) tw_reset(&m[i].w);
    imp_lazy_check(cr.c);
    imp_lazy_destroy(cr.c);
    pthread_barrier_destroy(&cr.start);
}

/* A waiter cancels while its leader completes: either cancel wins (1, no
 * notify ever) or the notify does (0, exactly one notify). */
enum { RACES = 20000 };

struct race {
    struct imp_lazy *c;
    pthread_barrier_t b;
    char key[32];
    int klen;
    struct tw w;
    int cancelled_ok, bad;
};

static void *race_waiter(void *arg)
{
    struct race *r = arg;
    struct imp_blob *v;
    int err;
    for (int i = 0; i < RACES; i++) {
        pthread_barrier_wait(&r->b); /* the leader has its flight */
        tw_init(&r->w);
        if (imp_lazy_get(r->c, r->key, (size_t)r->klen, 0, &v, &err, NULL, 0, &r->w.w) !=
            IMP_LAZY_WAIT)
            r->bad++;
        pthread_barrier_wait(&r->b); /* go */
        int cancelled = imp_lazy_cancel(r->c, r->key, (size_t)r->klen, &r->w.w);
        pthread_barrier_wait(&r->b); /* the leader's complete has returned */
        int n = atomic_load(&r->w.notified);
        if (cancelled ? n != 0 : n != 1) r->bad++;
        if (!cancelled && !(r->w.err == IMP_EIO || is(r->w.val, "v"))) r->bad++;
        r->cancelled_ok += cancelled;
        imp_blob_release(r->w.val);
        r->w.val = NULL;
        pthread_barrier_wait(&r->b); /* checked */
    }
    return NULL;
}

static void cancel_race(void)
{
    struct imp_lazy_config cfg = {.size = 64, .success_ttl_ms = 0, .failed_ttl_ms = 0};
    static struct race r;
    memset(&r, 0, sizeof(r));
    r.c = imp_lazy_create(&cfg);
    pthread_barrier_init(&r.b, NULL, 2);
    pthread_t th;
    pthread_create(&th, NULL, race_waiter, &r);
    struct imp_blob *val = B("v"), *v;
    int err;
    struct tw dummy;
    tw_init(&dummy);
    int bad = 0;
    for (int i = 0; i < RACES; i++) {
        r.klen = snprintf(r.key, sizeof(r.key), "race-%d", i);
        if (imp_lazy_get(r.c, r.key, (size_t)r.klen, 0, &v, &err, NULL, 0, &dummy.w) !=
            IMP_LAZY_FETCH)
            bad++;
        pthread_barrier_wait(&r.b);
        pthread_barrier_wait(&r.b);
        if (i % 2)
            imp_lazy_complete(r.c, r.key, (size_t)r.klen, val, 0, NULL, 1, 0);
        else
            imp_lazy_complete(r.c, r.key, (size_t)r.klen, NULL, IMP_EIO, "x", 0, 0);
        pthread_barrier_wait(&r.b);
        pthread_barrier_wait(&r.b);
    }
    pthread_join(th, NULL);
    CHECK(bad == 0);
    CHECK(r.bad == 0);
    /* Both outcomes should occur; the figure is informative, not checked. */
    printf("cancel race: %d of %d cancels won\n", r.cancelled_ok, RACES);
    CHECK(imp_lazy_len(r.c) <= 64);
    imp_lazy_check(r.c);
    imp_lazy_destroy(r.c);
    imp_blob_release(val);
    pthread_barrier_destroy(&r.b);
}

int main(void)
{
    basics();
    cancel();
    eviction();
    single_flight(0);
    single_flight(1);
    cancel_race();
    return t_done("cache_lazy");
}

/* Stress: 4 threads doing random get / complete / set / del / batch get /
 * sweep / purge on small slot LRUs of both kinds (so entries are evicted while
 * their keys are in flight), waiters that wait or cancel at random, and a
 * local cache with links, deletes and remote invalidations. Checks: every
 * notification arrives exactly once (never after a successful cancel),
 * values belong to their key, invariants hold at the end. Meant to run
 * under ASan and TSan as well (see CMake's IMPULSE_ASAN / IMPULSE_TSAN). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "state/cache/localcache.h"
#include "state/cache/slot.h"
#include "t.h"

enum { THREADS = 4, MAX_LEADS = 3, SPINS = 200 };

static int nkeys = 40; /* keys drawn from k0..k<nkeys-1> */

static int ops = 60000;
static atomic_uint_fast64_t clock_ms = 1000;
static atomic_int bad;
/* What happened, printed so a run that exercised nothing shows. */
static atomic_int n_hits, n_fetches, n_waits, n_cancelled, n_batch_waits, n_batch_cancelled;

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

struct waiter {
    struct imp_lazy_waiter w;
    atomic_int notified;
    char key[16];
};

/* A value names its key: "<key>#<n>". */
static int belongs_bytes(const char *data, size_t len, const char *key)
{
    size_t kl = strlen(key);
    return len > kl && memcmp(data, key, kl) == 0 && data[kl] == '#';
}

static int belongs(struct imp_blob *v, const char *key)
{
    return belongs_bytes(v->data, v->len, key);
}

static void waiter_notify(struct imp_lazy_waiter *w, struct imp_blob *val, int err, const char *msg)
{
    struct waiter *x = (struct waiter *)w;
    (void)msg;
    if (val ? !belongs(val, x->key) : err == 0) atomic_fetch_add(&bad, 1);
    if (atomic_fetch_add(&x->notified, 1) != 0) atomic_fetch_add(&bad, 1);
}

/* Waiters whose cancel succeeded: they must never be notified. */
struct graveyard {
    struct waiter **w;
    size_t n, cap;
};

static void bury(struct graveyard *g, struct waiter *w)
{
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 64;
        g->w = realloc(g->w, g->cap * sizeof(*g->w));
    }
    g->w[g->n++] = w;
}

static void graveyard_check(struct graveyard *g)
{
    for (size_t i = 0; i < g->n; i++) {
        if (atomic_load(&g->w[i]->notified) != 0) atomic_fetch_add(&bad, 1);
        free(g->w[i]);
    }
    free(g->w);
}

struct lead {
    char key[16];
};

/* ---- slot LRU ------------------------------------------------------------- */

struct slot_run {
    struct imp_slot *s;
    int id;
    struct graveyard g;
};

static void complete_lead(struct imp_slot *s, const char *key, uint64_t *seed)
{
    uint64_t now = atomic_load(&clock_ms);
    int r = (int)(rnd(seed) % 4);
    if (r == 0) {
        imp_slot_complete(s, key, strlen(key), NULL, IMP_EIO, "boom", 1, now);
    } else if (r == 1) {
        imp_slot_complete(s, key, strlen(key), NULL, IMP_ETIMEDOUT, "cancelled", 0, now);
    } else {
        char v[32];
        int n = snprintf(v, sizeof(v), "%s#%llu", key, (unsigned long long)rnd(seed) % 1000);
        struct imp_blob *b = imp_blob_create(v, (size_t)n);
        imp_slot_complete(s, key, strlen(key), b, 0, NULL, 1, now);
        imp_blob_release(b);
    }
}

/* Waits a little, then cancels; when the cancel loses, the notify is
 * running: wait for it. */
static void wait_or_cancel(struct imp_slot *s, struct waiter *w, uint64_t *seed,
                           struct graveyard *g)
{
    int spins = (int)(rnd(seed) % SPINS);
    for (int i = 0; i < spins && !atomic_load(&w->notified); i++) sched_yield();
    if (!atomic_load(&w->notified) && imp_slot_cancel(s, w->key, strlen(w->key), &w->w) == 1) {
        atomic_fetch_add(&n_cancelled, 1);
        bury(g, w);
        return;
    }
    while (!atomic_load(&w->notified)) sched_yield();
    free(w);
}

static void batch_done(struct imp_slot_batch *b) { atomic_store((atomic_int *)b->ud, 1); }

static void batch_op(struct imp_slot *s, uint64_t *seed)
{
    enum { N = 6 };
    char keys[N][16];
    const char *kp[N];
    size_t kl[N];
    for (int i = 0; i < N; i++) {
        kl[i] =
            (size_t)snprintf(keys[i], sizeof(keys[i]), "k%d", (int)(rnd(seed) % (uint64_t)nkeys));
        kp[i] = keys[i];
    }
    atomic_int *done = malloc(sizeof(*done));
    atomic_init(done, 0);
    struct imp_slot_batch *b = imp_slot_batch_create(kp, kl, N, batch_done, done);
    int waiting = imp_slot_get_batch(s, b, atomic_load(&clock_ms));
    for (int i = 0; i < N; i++)
        if (b->state[i] == IMP_LAZY_HIT && b->vals[i] && !belongs(b->vals[i], keys[i]))
            atomic_fetch_add(&bad, 1);
    /* The batch's fetch returns some of its keys. */
    for (int i = 0; i < N; i++)
        if (b->state[i] == IMP_LAZY_FETCH && rnd(seed) % 2) complete_lead(s, keys[i], seed);
    imp_slot_batch_finish(s, b, rnd(seed) % 5 ? 0 : IMP_EIO, "batch failed", 1,
                          atomic_load(&clock_ms));
    if (waiting) {
        atomic_fetch_add(&n_batch_waits, 1);
        int spins = (int)(rnd(seed) % SPINS);
        for (int i = 0; i < spins && !atomic_load(done); i++) sched_yield();
        if (!atomic_load(done) && imp_slot_batch_cancel(s, b) == 1) {
            atomic_fetch_add(&n_batch_cancelled, 1);
            if (atomic_load(done)) atomic_fetch_add(&bad, 1);
        } else {
            while (!atomic_load(done)) sched_yield();
            for (int i = 0; i < N; i++)
                if (b->state[i] == IMP_LAZY_WAIT && b->vals[i] && !belongs(b->vals[i], keys[i]))
                    atomic_fetch_add(&bad, 1);
        }
    }
    imp_slot_batch_destroy(b);
    free(done);
}

static void *slot_thread(void *arg)
{
    struct slot_run *run = arg;
    struct imp_slot *s = run->s;
    uint64_t seed = 0x1234567ULL * (uint64_t)(run->id + 1);
    struct lead leads[MAX_LEADS];
    int nleads = 0;
    for (int op = 0; op < ops; op++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", (int)(rnd(&seed) % (uint64_t)nkeys));
        uint64_t now = atomic_load(&clock_ms);
        int r = (int)(rnd(&seed) % 100);
        if (run->id == 0 && r < 5) atomic_fetch_add(&clock_ms, rnd(&seed) % 10);
        if (r < 50) {
            struct waiter *w = calloc(1, sizeof(*w));
            w->w.notify = waiter_notify;
            snprintf(w->key, sizeof(w->key), "%s", key);
            struct imp_blob *v;
            int err;
            char eb[32], buf[IMP_LAZY_INLINE_MAX];
            size_t vl = 0;
            /* half the gets copy the value out (lock-free hits on the lazy
             * kind), into a buffer that is sometimes too small */
            int copy = r < 25, g;
            size_t cap = (r & 1) ? sizeof(buf) : 4;
            if (copy)
                g = imp_slot_get_copy(s, key, strlen(key), now, buf, cap, &vl, &v, &err, eb,
                                      sizeof(eb), &w->w);
            else
                g = imp_slot_get(s, key, strlen(key), now, &v, &err, eb, sizeof(eb), &w->w);
            if (g == IMP_LAZY_HIT) {
                atomic_fetch_add(&n_hits, 1);
                if (copy && !v && err == 0) {
                    if (!belongs_bytes(buf, vl, key) || vl > cap) atomic_fetch_add(&bad, 1);
                } else if (v ? !belongs(v, key) || (copy && v->len <= cap) : err == 0)
                    atomic_fetch_add(&bad, 1);
                imp_blob_release(v);
                free(w);
            } else if (g == IMP_LAZY_FETCH) {
                atomic_fetch_add(&n_fetches, 1);
                free(w);
                if (nleads == MAX_LEADS) {
                    complete_lead(s, leads[0].key, &seed);
                    memmove(leads, leads + 1, sizeof(leads[0]) * (MAX_LEADS - 1));
                    nleads--;
                }
                snprintf(leads[nleads++].key, sizeof(leads[0].key), "%s", key);
            } else {
                atomic_fetch_add(&n_waits, 1);
                wait_or_cancel(s, w, &seed, &run->g);
            }
        } else if (r < 60) {
            char v[32];
            int n = snprintf(v, sizeof(v), "%s#set", key);
            struct imp_blob *b = imp_blob_create(v, (size_t)n);
            if (r < 55)
                imp_slot_set(s, key, strlen(key), b, now);
            else
                imp_slot_set_has(s, key, strlen(key), b, now);
            imp_blob_release(b);
        } else if (r < 70) {
            imp_slot_del(s, key, strlen(key));
        } else if (r < 76) {
            batch_op(s, &seed);
        } else if (r < 78) {
            imp_slot_sweep(s, now);
        } else if (r < 79) {
            if (rnd(&seed) % 8)
                imp_slot_check(s);
            else
                imp_slot_purge(s);
        } else if (nleads) {
            int i = (int)(rnd(&seed) % (uint64_t)nleads);
            complete_lead(s, leads[i].key, &seed);
            leads[i] = leads[--nleads];
        }
    }
    while (nleads) complete_lead(s, leads[--nleads].key, &seed);
    return NULL;
}

static void slot_stress(enum imp_slot_kind kind, size_t slot_size, int keys)
{
    nkeys = keys;
    struct imp_slot_config cfg = {.nslots = 4,
                                  .slot_size = slot_size,
                                  .success_ttl_ms = 50,
                                  .failed_ttl_ms = 20,
                                  .kind = kind};
    struct imp_slot *s = imp_slot_create(&cfg);
    pthread_t th[THREADS];
    struct slot_run run[THREADS];
    for (int i = 0; i < THREADS; i++) {
        run[i] = (struct slot_run){.s = s, .id = i};
        pthread_create(&th[i], NULL, slot_thread, &run[i]);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    imp_slot_check(s);
    CHECK(imp_slot_len(s) <= 4 * slot_size);
    /* Every flight was completed: a get of each key leads or hits. */
    int in_flight = 0;
    for (int k = 0; k < nkeys; k++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", k);
        struct waiter w = {.w = {.notify = waiter_notify}};
        struct imp_blob *v;
        int err;
        int g = imp_slot_get(s, key, strlen(key), atomic_load(&clock_ms), &v, &err, NULL, 0, &w.w);
        imp_blob_release(v);
        if (g == IMP_LAZY_WAIT) {
            in_flight++;
            imp_slot_cancel(s, key, strlen(key), &w.w);
        }
        if (g == IMP_LAZY_FETCH) imp_slot_complete(s, key, strlen(key), NULL, IMP_EIO, "", 0, 0);
    }
    CHECK(in_flight == 0);
    imp_slot_destroy(s);
    for (int i = 0; i < THREADS; i++) graveyard_check(&run[i].g);
    CHECK(atomic_load(&bad) == 0);
    printf(
        "slot %s %zux%d keys: %d hits, %d fetches, %d waits (%d cancelled), %d batches waited (%d "
        "cancelled)\n",
        kind == IMP_SLOT_LAZY ? "lazy" : "expirable", slot_size, keys, atomic_load(&n_hits),
        atomic_load(&n_fetches), atomic_load(&n_waits), atomic_load(&n_cancelled),
        atomic_load(&n_batch_waits), atomic_load(&n_batch_cancelled));
    CHECK(atomic_load(&n_waits) > 0 && atomic_load(&n_batch_waits) > 0);
    atomic_store(&n_hits, 0);
    atomic_store(&n_fetches, 0);
    atomic_store(&n_waits, 0);
    atomic_store(&n_cancelled, 0);
    atomic_store(&n_batch_waits, 0);
    atomic_store(&n_batch_cancelled, 0);
}

/* Tables that grow while batches prefetch from them without the lock: one
 * thread fills fresh caches, the others batch-get the keys being added. */
struct grow_run {
    struct imp_slot *s;
    int id;
    atomic_int *stop;
};

static void *grow_thread(void *arg)
{
    struct grow_run *g = arg;
    uint64_t seed = 0x5151ULL * (uint64_t)(g->id + 3);
    char key[16];
    if (g->id == 0) {
        for (int i = 0; i < 3000; i++) {
            int n = snprintf(key, sizeof(key), "k%d", i);
            char v[32];
            int vn = snprintf(v, sizeof(v), "%s#g", key);
            struct imp_blob *b = imp_blob_create(v, (size_t)vn);
            imp_slot_set(g->s, key, (size_t)n, b, 0);
            imp_blob_release(b);
        }
        atomic_store(g->stop, 1);
        return NULL;
    }
    while (!atomic_load(g->stop)) batch_op(g->s, &seed);
    return NULL;
}

static void grow_race(void)
{
    nkeys = 3000; /* before the threads start: they read it */
    for (int round = 0; round < 20; round++) {
        struct imp_slot_config cfg = {
            .nslots = 2, .slot_size = 4096, .success_ttl_ms = 0, .kind = IMP_SLOT_LAZY};
        struct imp_slot *s = imp_slot_create(&cfg);
        atomic_int stop;
        atomic_init(&stop, 0);
        pthread_t th[3];
        struct grow_run g[3];
        for (int i = 0; i < 3; i++) {
            g[i] = (struct grow_run){.s = s, .id = i, .stop = &stop};
            pthread_create(&th[i], NULL, grow_thread, &g[i]);
        }
        for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
        imp_slot_check(s);
        CHECK(imp_slot_len(s) == 3000);
        imp_slot_destroy(s);
    }
    nkeys = 40;
    CHECK(atomic_load(&bad) == 0);
}

/* ---- local cache with links ------------------------------------------------ */

struct lc_run {
    struct imp_localcache *c;
    int id;
    struct graveyard g;
};

static atomic_int hook_calls;

static void del_hook(void *ud, const char *const *keys, const size_t *klens, size_t n)
{
    (void)ud;
    (void)keys;
    (void)klens;
    atomic_fetch_add(&hook_calls, (int)n);
}

static void lc_complete(struct imp_localcache *c, const char *key, uint64_t *seed)
{
    char v[32];
    int n = snprintf(v, sizeof(v), "%s#x", key);
    struct imp_blob *b = rnd(seed) % 4 ? imp_blob_create(v, (size_t)n) : NULL;
    imp_localcache_complete(c, key, strlen(key), b, b ? 0 : IMP_EIO, "x", 1,
                            atomic_load(&clock_ms));
    imp_blob_release(b);
}

static void *lc_thread(void *arg)
{
    struct lc_run *run = arg;
    struct imp_localcache *c = run->c;
    uint64_t seed = 0xabcdefULL * (uint64_t)(run->id + 7);
    for (int op = 0; op < ops / 2; op++) {
        char key[16], l1[16], l2[16];
        snprintf(key, sizeof(key), "k%d", (int)(rnd(&seed) % (uint64_t)nkeys));
        snprintf(l1, sizeof(l1), "k%d", (int)(rnd(&seed) % (uint64_t)nkeys));
        snprintf(l2, sizeof(l2), "k%d", (int)(rnd(&seed) % (uint64_t)nkeys));
        const char *links[2] = {l1, l2};
        size_t llens[2] = {strlen(l1), strlen(l2)};
        uint64_t now = atomic_load(&clock_ms);
        int r = (int)(rnd(&seed) % 100);
        if (run->id == 0 && r < 5) atomic_fetch_add(&clock_ms, rnd(&seed) % 10);
        if (r < 60) {
            struct waiter *w = calloc(1, sizeof(*w));
            w->w.notify = waiter_notify;
            snprintf(w->key, sizeof(w->key), "%s", key);
            struct imp_blob *v;
            int err;
            int g = imp_localcache_get_link(c, key, strlen(key), links, llens, rnd(&seed) % 3, now,
                                            &v, &err, NULL, 0, &w->w);
            if (g == IMP_LAZY_HIT) {
                if (v ? !belongs(v, key) : err == 0) atomic_fetch_add(&bad, 1);
                imp_blob_release(v);
                free(w);
            } else if (g == IMP_LAZY_FETCH) {
                free(w);
                lc_complete(c, key, &seed);
            } else {
                int spins = (int)(rnd(&seed) % SPINS);
                for (int i = 0; i < spins && !atomic_load(&w->notified); i++) sched_yield();
                if (!atomic_load(&w->notified) &&
                    imp_localcache_cancel(c, key, strlen(key), &w->w) == 1) {
                    bury(&run->g, w);
                } else {
                    while (!atomic_load(&w->notified)) sched_yield();
                    free(w);
                }
            }
        } else if (r < 75) {
            imp_localcache_del_local(c, links, llens, 2);
        } else if (r < 85) {
            const char *ks[1] = {key};
            size_t kl[1] = {strlen(key)};
            imp_localcache_del(c, ks, kl, 1);
        } else if (r < 95) {
            char json[64], e[64];
            int n = snprintf(json, sizeof(json), "[\"%s\",\"%s\"]", l1, l2);
            if (imp_localcache_invalidate_json(c, json, (size_t)n, e, sizeof(e)) != 0)
                atomic_fetch_add(&bad, 1);
        } else {
            imp_localcache_sweep(c, now);
        }
    }
    return NULL;
}

static void localcache_stress(int expirable)
{
    struct imp_localcache_config cfg = {.slot_num = 3,
                                        .slot_size = 5,
                                        .link_slot_num = 3,
                                        .success_ttl_ms = 50,
                                        .failed_ttl_ms = 20,
                                        .expiration_evict = expirable};
    struct imp_localcache *c = imp_localcache_create(&cfg);
    imp_localcache_add_del_hook(c, del_hook, NULL);
    pthread_t th[THREADS];
    struct lc_run run[THREADS];
    for (int i = 0; i < THREADS; i++) {
        run[i] = (struct lc_run){.c = c, .id = i};
        pthread_create(&th[i], NULL, lc_thread, &run[i]);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    imp_localcache_check(c);
    CHECK(imp_localcache_len(c) <= 15);
    CHECK(atomic_load(&hook_calls) > 0);
    imp_localcache_destroy(c);
    for (int i = 0; i < THREADS; i++) graveyard_check(&run[i].g);
    CHECK(atomic_load(&bad) == 0);
}

int main(int argc, char **argv)
{
    if (argc > 1) ops = atoi(argv[1]);
    /* 16 entries for 40 keys: eviction under flights all the time. */
    slot_stress(IMP_SLOT_LAZY, 4, 40);
    slot_stress(IMP_SLOT_EXPIRABLE, 4, 40);
    slot_stress(IMP_SLOT_LAZY, 512, 3000);
    slot_stress(IMP_SLOT_LAZY, 64, 400); /* CLOCK eviction under lock-free hits */
    nkeys = 40;
    grow_race();
    localcache_stress(0);
    localcache_stress(1);
    return t_done("cache_stress");
}

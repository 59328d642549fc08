/*
 * bench_cache: the shared C caches under the workloads OpenIM's Go
 * localcache sees, fixed so the figures compare run to run:
 *
 *   W1  slot lazy LRU 100 x 2000, 100k keys GROUP_MEMBER_IDS:<i> preloaded
 *       with 64-byte values, uniform random gets (all hits), 1 and 2
 *       threads. Each hit copies the value out (imp_slot_get_copy), as the
 *       engine's group cache reads it.
 *   W2  the same cache, keys Zipf(1.1) over 1M keys; a miss leads the
 *       flight and completes it at once with a new 64-byte blob.
 *   W3  the online table (online.h), 1M users u<10000000+i> on platforms
 *       {1, 2}: RSS growth per user and a random lookup.
 *   W4  online-LRU mode: slot lazy LRU 1024 x 2048, batch gets of 500 users
 *       drawn Zipf(1.1) over 1M; the fetch returns every key (a small blob
 *       of platform IDs): time per user, hit ratio.
 *
 * W1 and W2 read the clock on every get, as the engine (calls/group.c)
 * and OpenIM's lazy LRU (time.Now per Get) do: the engine's per-lookup
 * clock, imp_now_ms_coarse (CLOCK_MONOTONIC_COARSE through the vDSO).
 * Fixed-seed xorshift PRNG; Zipf samples are drawn before timing; keys are
 * formatted in the loop (as the engine builds them from a message, in
 * cache) rather than read from a table that would add a memory miss of
 * its own; every timed loop is warmed up first. Each figure is the median
 * of 5 runs, with the range: the machine is a VM whose last-level cache
 * and DRAM are shared with neighbours, so single runs vary by 2x. M0
 * measures that memory's latency, the floor for a cache bigger than the
 * CPU's: a W1 hit reads the key's bucket and then its entry (key and
 * value inline), so on this working set (100k entries of ~160 bytes and
 * their bucket arrays, ~20 MB) it costs one DRAM miss and one mostly
 * cached read; W1s runs the same code on 2,000 keys, which stay in the
 * CPU's caches, to show what the code path itself costs. W3 runs first,
 * so its RSS growth is not hidden by memory the others freed. Threads are
 * pinned one per CPU. Prints one line per figure. Not a test: nothing is
 * asserted.
 *
 *   build/bench_cache            all workloads
 *   build/bench_cache W1 W4      some (M0, W1, W1s, W2, W3, W4)
 */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/common.h"
#include "state/cache/slot.h"
#include "state/online.h"

#define REPS 5 /* runs per figure: the median is reported */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0) kib = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kib;
}

static inline uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Uniform in [0, n) without a division. */
static inline uint32_t below(uint64_t *s, uint32_t n)
{
    return (uint32_t)(((rnd(s) >> 32) * (uint64_t)n) >> 32);
}

/* Zipf(s) over ranks 0..n-1 by inverting the CDF. */
struct zipf {
    double *cdf;
    uint32_t n;
};

static void zipf_init(struct zipf *z, uint32_t n, double s)
{
    z->n = n;
    z->cdf = imp_xmalloc(n * sizeof(double));
    double sum = 0;
    for (uint32_t i = 0; i < n; i++) z->cdf[i] = (sum += pow((double)i + 1, -s));
    for (uint32_t i = 0; i < n; i++) z->cdf[i] /= sum;
}

static uint32_t zipf_draw(const struct zipf *z, uint64_t *seed)
{
    double u = (double)(rnd(seed) >> 11) / 9007199254740992.0; /* [0, 1) */
    uint32_t lo = 0, hi = z->n - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (z->cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* buf = prefix (already there, plen bytes) + decimal n; returns the length. */
static inline size_t fmt_key(char *buf, size_t plen, uint32_t n)
{
    char tmp[10];
    int i = 10;
    do {
        tmp[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    memcpy(buf + plen, tmp + i, (size_t)(10 - i));
    return plen + (size_t)(10 - i);
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % CPU_SETSIZE, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median, min and max of REPS values (sorts v). */
struct stat3 {
    double med, min, max;
};

static struct stat3 stat3(double *v)
{
    qsort(v, REPS, sizeof(double), cmp_double);
    return (struct stat3){v[REPS / 2], v[0], v[REPS - 1]};
}

static void no_notify(struct imp_lazy_waiter *w, struct imp_blob *v, int e, const char *m)
{
    (void)w;
    (void)v;
    (void)e;
    (void)m;
    abort(); /* single-threaded or all hits: nobody waits */
}

/* ---- M0 --------------------------------------------------------------------- */

static volatile size_t sink;

/* Dependent random loads over mb MiB: what one miss costs here when the
 * data is that big (8 MiB: the caches and TLB still hold it; 32: DRAM). */
static void bench_m0_size(int mb)
{
    enum { LOADS = 4000000 };
    size_t n = (size_t)mb << 20 >> 6; /* one pointer per 64-byte line */
    size_t *a = imp_xmalloc(n * 64);
    uint32_t *perm = imp_xmalloc(n * sizeof(uint32_t));
    uint64_t seed = 88172645463325252ULL;
    for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = rnd(&seed) % (i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t i = 0; i < n; i++) a[(size_t)perm[i] * 8] = (size_t)perm[(i + 1) % n] * 8;
    double v[REPS];
    size_t p = 0;
    for (int r = 0; r < REPS; r++) {
        double t0 = now_s();
        for (long i = 0; i < LOADS; i++) p = a[p];
        v[r] = (now_s() - t0) / LOADS * 1e9;
    }
    struct stat3 m = stat3(v);
    sink = p;
    printf("M0 memory     %6.1f ns/load  [%.1f-%.1f]  (dependent random loads over %d MiB, "
           "4 KiB pages%s)\n",
           m.med, m.min, m.max, mb, mb == 32 ? ": this machine's DRAM latency" : "");
    free(perm);
    free(a);
}

static void bench_m0(void)
{
    bench_m0_size(8);
    bench_m0_size(16);
    bench_m0_size(32);
}

/* ---- W1 --------------------------------------------------------------------- */

enum { W1_KEYS = 100000, W1_OPS = 4000000, W1_WARM = 2000000 };
static const char w1_prefix[] = "GROUP_MEMBER_IDS:";

struct w1 {
    struct imp_slot *s;
    uint32_t nkeys;
    pthread_barrier_t *bar;
    uint64_t seed;
    int cpu;
    long misses;
};

static long w1_loop(struct w1 *a, long ops)
{
    struct imp_lazy_waiter w = {.notify = no_notify};
    char key[32], val[IMP_LAZY_INLINE_MAX];
    memcpy(key, w1_prefix, sizeof(w1_prefix) - 1);
    long misses = 0;
    /* The seed in a local: the two threads' struct w1 share a cache line,
     * and a store to it per get (the compiler must make one before each
     * call) was false sharing of the benchmark's own making. */
    uint64_t seed = a->seed;
    for (long i = 0; i < ops; i++) {
        size_t kl = fmt_key(key, sizeof(w1_prefix) - 1, below(&seed, a->nkeys));
        struct imp_blob *v;
        int err;
        size_t vl;
        /* the clock read OpenIM's lazy LRU does on every Get (time.Now);
         * the value copied out as calls/group.c takes it */
        int r = imp_slot_get_copy(a->s, key, kl, imp_now_ms_coarse(), val, sizeof(val), &vl, &v,
                                  &err, NULL, 0, &w);
        misses += r != IMP_LAZY_HIT || vl != 64;
        imp_blob_release(v);
    }
    a->seed = seed;
    return misses;
}

static void *w1_thread(void *arg)
{
    struct w1 *a = arg;
    pin(a->cpu);
    w1_loop(a, W1_WARM);
    for (int r = 0; r < REPS; r++) {
        pthread_barrier_wait(a->bar);
        a->misses += w1_loop(a, W1_OPS);
        pthread_barrier_wait(a->bar);
    }
    return NULL;
}

/* nkeys W1_KEYS: the workload; fewer: the same code on data that stays in
 * the CPU's caches (what the code path itself costs). */
static void bench_w1(uint32_t nkeys)
{
    struct imp_slot_config cfg = {.nslots = 100,
                                  .slot_size = 2000,
                                  .success_ttl_ms = 3600000,
                                  .failed_ttl_ms = 1000,
                                  .kind = IMP_SLOT_LAZY};
    struct imp_slot *s = imp_slot_create(&cfg);
    char val[64], key[32];
    memset(val, 'm', sizeof(val));
    memcpy(key, w1_prefix, sizeof(w1_prefix) - 1);
    for (uint32_t i = 0; i < nkeys; i++) {
        struct imp_blob *b = imp_blob_create(val, sizeof(val));
        imp_slot_set(s, key, fmt_key(key, sizeof(w1_prefix) - 1, i), b, imp_now_ms());
        imp_blob_release(b);
    }
    for (int nth = 1; nth <= 2; nth++) {
        pthread_barrier_t bar;
        pthread_barrier_init(&bar, NULL, (unsigned)nth + 1);
        struct w1 a[2];
        pthread_t th[2];
        for (int t = 0; t < nth; t++) {
            a[t] = (struct w1){.s = s,
                               .nkeys = nkeys,
                               .bar = &bar,
                               .seed = 0x9e3779b97f4a7c15ULL + (uint64_t)t * 7919,
                               .cpu = t};
            pthread_create(&th[t], NULL, w1_thread, &a[t]);
        }
        double ns[REPS], mops[REPS];
        for (int r = 0; r < REPS; r++) {
            pthread_barrier_wait(&bar);
            double t0 = now_s();
            pthread_barrier_wait(&bar);
            double dt = now_s() - t0;
            ns[r] = dt / W1_OPS * 1e9;
            mops[r] = nth * (double)W1_OPS / dt / 1e6;
        }
        long misses = 0;
        for (int t = 0; t < nth; t++) {
            pthread_join(th[t], NULL);
            misses += a[t].misses;
        }
        struct stat3 n = stat3(ns), m = stat3(mops);
        if (nkeys != W1_KEYS)
            printf("W1s %d thread%s %6.1f ns/op  [%.1f-%.1f]  %5.2f Mops/s  (diagnostic: the same "
                   "cache with %u keys, which stay in the CPU caches)\n",
                   nth, nth > 1 ? "s" : " ", n.med, n.min, n.max, m.med, nkeys);
        else if (nth == 1)
            printf("W1 1 thread   %6.1f ns/op  [%.1f-%.1f]  %5.2f Mops/s  (slot lazy 100x2000, "
                   "100k keys, 64-byte values, all hits; misses %ld)\n",
                   n.med, n.min, n.max, m.med, misses);
        else
            printf("W1 2 threads  %6.1f ns/op  [%.1f-%.1f]  %5.2f Mops/s aggregate [%.2f-%.2f]  "
                   "(per thread: time per get)\n",
                   n.med, n.min, n.max, m.med, m.min, m.max);
        pthread_barrier_destroy(&bar);
    }
    imp_slot_check(s);
    imp_slot_destroy(s);
}

/* ---- W2 --------------------------------------------------------------------- */

enum { ZIPF_N = 1000000, W2_OPS = 2000000, W2_WARM = 4000000 };

static void bench_w2(const struct zipf *z)
{
    struct imp_slot_config cfg = {.nslots = 100,
                                  .slot_size = 2000,
                                  .success_ttl_ms = 3600000,
                                  .failed_ttl_ms = 1000,
                                  .kind = IMP_SLOT_LAZY};
    struct imp_slot *s = imp_slot_create(&cfg);
    long total = W2_WARM + (long)REPS * W2_OPS;
    uint32_t *draw = imp_xmalloc((size_t)total * sizeof(uint32_t));
    uint64_t seed = 0x2545f4914f6cdd1dULL;
    for (long i = 0; i < total; i++) draw[i] = zipf_draw(z, &seed);
    char val[64], key[32];
    memset(val, 'z', sizeof(val));
    memcpy(key, w1_prefix, sizeof(w1_prefix) - 1);
    struct imp_lazy_waiter w = {.notify = no_notify};
    double ns[REPS];
    long hits = 0, timed = 0;
    for (int r = -1; r < REPS; r++) { /* r = -1: warm-up */
        const uint32_t *d = r < 0 ? draw : draw + W2_WARM + (long)r * W2_OPS;
        long ops = r < 0 ? W2_WARM : W2_OPS, h = 0;
        double t0 = now_s();
        for (long i = 0; i < ops; i++) {
            size_t kl = fmt_key(key, sizeof(w1_prefix) - 1, d[i]);
            struct imp_blob *v;
            int err;
            uint64_t now = imp_now_ms_coarse(); /* per get, as OpenIM's time.Now */
            if (imp_slot_get(s, key, kl, now, &v, &err, NULL, 0, &w) == IMP_LAZY_HIT) {
                h++;
                imp_blob_release(v);
            } else { /* FETCH: the fetch returns at once */
                struct imp_blob *b = imp_blob_create(val, sizeof(val));
                imp_slot_complete(s, key, kl, b, 0, NULL, 1, now);
                imp_blob_release(b);
            }
        }
        if (r < 0) continue;
        ns[r] = (now_s() - t0) / W2_OPS * 1e9;
        hits += h;
        timed += ops;
    }
    struct stat3 n = stat3(ns);
    printf("W2 1 thread   %6.1f ns/op  [%.1f-%.1f]  hit ratio %.3f  (same cache, Zipf 1.1 over "
           "1M keys, misses fetched at once)\n",
           n.med, n.min, n.max, (double)hits / (double)timed);
    imp_slot_check(s);
    imp_slot_destroy(s);
    free(draw);
}

/* ---- W3 --------------------------------------------------------------------- */

enum { W3_USERS = 1000000, W3_OPS = 2000000 };

static void bench_w3(void)
{
    char id[32] = "u";
    long before = rss_kib();
    struct imp_online *t = imp_online_create(256);
    for (uint32_t i = 0; i < W3_USERS; i++)
        imp_online_set(t, id, fmt_key(id, 1, 10000000 + i), (1u << 1) | (1u << 2), 1);
    long after = rss_kib();
    uint64_t seed = 0x853c49e6748fea9bULL, found = 0;
    double ns[REPS];
    for (int r = -1; r < REPS; r++) {
        found = 0;
        double t0 = now_s();
        for (long i = 0; i < W3_OPS; i++) {
            size_t kl = fmt_key(id, 1, 10000000 + below(&seed, W3_USERS));
            found += imp_online_get(t, id, kl) != 0;
        }
        if (r >= 0) ns[r] = (now_s() - t0) / W3_OPS * 1e9;
    }
    struct stat3 n = stat3(ns);
    printf("W3 memory     %6.1f bytes/user  (online table: RSS +%ld KiB for %d users on "
           "platforms {1,2}, 256 shards)\n",
           (double)(after - before) * 1024.0 / W3_USERS, after - before, W3_USERS);
    printf("W3 lookup     %6.1f ns/op  [%.1f-%.1f]  (random online users, 1 thread; found %llu "
           "of %d)\n",
           n.med, n.min, n.max, (unsigned long long)found, W3_OPS);
    imp_online_destroy(t);
}

/* ---- W4 --------------------------------------------------------------------- */

enum { W4_BATCH = 500, W4_BATCHES = 1600, W4_WARM = 4000 };

static void w4_done(struct imp_slot_batch *b) { (void)b; }

static void bench_w4(const struct zipf *z)
{
    struct imp_slot_config cfg = {.nslots = 1024,
                                  .slot_size = 2048,
                                  .success_ttl_ms = 3600000,
                                  .failed_ttl_ms = 1000,
                                  .kind = IMP_SLOT_LAZY};
    struct imp_slot *s = imp_slot_create(&cfg);
    long total = (long)(W4_WARM + REPS * W4_BATCHES) * W4_BATCH;
    uint32_t *draw = imp_xmalloc((size_t)total * sizeof(uint32_t));
    uint64_t seed = 0xda942042e4dd58b5ULL;
    for (long i = 0; i < total; i++) draw[i] = zipf_draw(z, &seed);
    static char kbuf[W4_BATCH][16];
    const char *kp[W4_BATCH];
    size_t kl[W4_BATCH];
    for (int i = 0; i < W4_BATCH; i++) {
        kbuf[i][0] = 'u';
        kp[i] = kbuf[i];
    }
    static const char platforms[] = {1, 2};
    double ns[REPS];
    long users = 0, hits = 0;
    const uint32_t *d = draw;
    for (int r = -1; r < REPS; r++) {
        int nb = r < 0 ? W4_WARM : W4_BATCHES;
        long h = 0;
        double t0 = now_s();
        for (int bi = 0; bi < nb; bi++, d += W4_BATCH) {
            for (int i = 0; i < W4_BATCH; i++) kl[i] = fmt_key(kbuf[i], 1, 10000000 + d[i]);
            struct imp_slot_batch *b = imp_slot_batch_create(kp, kl, W4_BATCH, w4_done, NULL);
            imp_slot_get_batch(s, b, 1000);
            /* One fetch for all the misses; it returns every key. */
            for (int i = 0; i < W4_BATCH; i++) {
                if (b->state[i] != IMP_LAZY_FETCH) continue;
                struct imp_blob *v = imp_blob_create(platforms, sizeof(platforms));
                imp_slot_complete(s, kp[i], kl[i], v, 0, NULL, 1, 1000);
                imp_blob_release(v);
            }
            imp_slot_batch_finish(s, b, 0, NULL, 0, 1000);
            h += (long)b->nhit;
            imp_slot_batch_destroy(b);
        }
        if (r < 0) continue;
        ns[r] = (now_s() - t0) / ((double)nb * W4_BATCH) * 1e9;
        users += (long)nb * W4_BATCH;
        hits += h;
    }
    struct stat3 n = stat3(ns);
    printf("W4 batch      %6.1f ns/user  [%.1f-%.1f]  hit ratio %.3f  (slot lazy 1024x2048, "
           "batches of %d users, Zipf 1.1 over 1M)\n",
           n.med, n.min, n.max, (double)hits / (double)users, W4_BATCH);
    imp_slot_check(s);
    imp_slot_destroy(s);
    free(draw);
}

static int want(int argc, char **argv, const char *w)
{
    if (argc < 2) return 1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], w) == 0) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (want(argc, argv, "W3")) bench_w3(); /* first: RSS growth must be its own */
    if (want(argc, argv, "M0")) bench_m0();
    if (want(argc, argv, "W1")) bench_w1(W1_KEYS);
    if (want(argc, argv, "W1s")) bench_w1(2000);
    struct zipf z = {0};
    if (want(argc, argv, "W2") || want(argc, argv, "W4")) zipf_init(&z, ZIPF_N, 1.1);
    if (want(argc, argv, "W2")) bench_w2(&z);
    if (want(argc, argv, "W4")) bench_w4(&z);
    free(z.cdf);
    return 0;
}

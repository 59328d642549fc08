/* Online table and online_change parsing. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "state/online.h"
#include "t.h"

static int parse(const char *p, const char **uid, size_t *ul, uint64_t *set)
{
    char err[160];
    return imp_online_parse_change(p, strlen(p), uid, ul, set, err, sizeof(err));
}

static void parsing(void)
{
    const char *uid;
    size_t ul;
    uint64_t set;
    CHECK(parse("1:5:user42", &uid, &ul, &set) == 0);
    CHECK(ul == 6 && memcmp(uid, "user42", 6) == 0);
    CHECK(set == ((1ULL << 1) | (1ULL << 5)));
    CHECK(parse("user42", &uid, &ul, &set) == 0); /* bare user: offline */
    CHECK(set == 0 && ul == 6);
    CHECK(parse("2:u", &uid, &ul, &set) == 0 && set == (1ULL << 2));
    CHECK(parse("x:user", &uid, &ul, &set) == IMP_EINVAL); /* non-integer platform */
    CHECK(parse("1:", &uid, &ul, &set) == IMP_EINVAL);     /* empty user */
    CHECK(parse("", &uid, &ul, &set) == IMP_EINVAL);
    CHECK(parse("1::u", &uid, &ul, &set) == IMP_EINVAL); /* empty platform */
    /* the table stores platforms 0..15 (OpenIM's are 1..10) */
    CHECK(parse("15:u", &uid, &ul, &set) == 0 && set == (1ULL << 15));
    CHECK(parse("16:u", &uid, &ul, &set) == IMP_EINVAL); /* out of range */
    CHECK(parse("64:u", &uid, &ul, &set) == IMP_EINVAL);
    CHECK(parse("-1:u", &uid, &ul, &set) == IMP_EINVAL);
    CHECK(parse("1.5:u", &uid, &ul, &set) == IMP_EINVAL);
}

static void table(void)
{
    struct imp_online *t = imp_online_create(4);
    char id[32];
    for (int i = 0; i < 10000; i++) {
        int n = snprintf(id, sizeof(id), "u%d", i);
        imp_online_set(t, id, (size_t)n, 1ULL << (i % 10 + 1), 1);
    }
    CHECK(imp_online_count(t) == 10000);
    CHECK(imp_online_get(t, "u7", 2) == 1ULL << 8);
    CHECK(imp_online_get(t, "nobody", 6) == 0);
    /* removing every other user keeps the rest findable */
    for (int i = 0; i < 10000; i += 2) {
        int n = snprintf(id, sizeof(id), "u%d", i);
        imp_online_set(t, id, (size_t)n, 0, 1);
    }
    imp_online_check(t);
    int found = 0;
    for (int i = 0; i < 10000; i++) {
        int n = snprintf(id, sizeof(id), "u%d", i);
        if (imp_online_get(t, id, (size_t)n))
            found++;
        else if (i % 2)
            found = -100000;
    }
    CHECK(found == 5000);
    /* a reload: users written at gen 2 survive the sweep, others go */
    imp_online_set(t, "u1", 2, 1ULL << 1, 2);
    imp_online_set(t, "u3", 2, 1ULL << 1, 2);
    CHECK(imp_online_sweep(t, 2) == 4998);
    CHECK(imp_online_count(t) == 2);
    CHECK(imp_online_get(t, "u5", 2) == 0);
    imp_online_check(t);
    /* bits above platform 15 are not stored: only they means offline */
    imp_online_set(t, "p", 1, (1ULL << 40) | (1ULL << 3), 2);
    CHECK(imp_online_get(t, "p", 1) == 1ULL << 3);
    imp_online_set(t, "p", 1, 1ULL << 40, 2);
    CHECK(imp_online_get(t, "p", 1) == 0 && imp_online_count(t) == 2);
    /* the empty ID is a key like any other */
    imp_online_set(t, "", 0, 1ULL << 2, 2);
    CHECK(imp_online_get(t, "", 0) == 1ULL << 2 && imp_online_count(t) == 3);
    imp_online_check(t);
    imp_online_destroy(t);
}

/* The production shape: u10000000, u10000001, ... */
static size_t uid(char *buf, int i) { return (size_t)snprintf(buf, 16, "u%d", 10000000 + i); }

static uint64_t plat(int i, int round) { return 1ULL << ((i + round) % 15 + 1) | 1ULL << 1; }

/* How many of users [0, n) do not read as want(i) (0 for offline). */
static int mismatches(struct imp_online *t, int n, uint64_t (*want)(int))
{
    char id[16];
    int bad = 0;
    for (int i = 0; i < n; i++) bad += imp_online_get(t, id, uid(id, i)) != want(i);
    return bad;
}

enum { MANY = 200000 };

static uint64_t all_r0(int i) { return i < MANY ? plat(i, 0) : 0; }
static uint64_t quarter_r0(int i) { return i < MANY && i % 4 == 0 ? plat(i, 0) : 0; }
static uint64_t back_r1(int i) { return i % 4 == 1 && i < MANY ? plat(i, 1) : quarter_r0(i); }
static uint64_t churned(int i) { return i % 4 == 1 && i < MANY ? plat(i, 2) : quarter_r0(i); }

/* Many users, then holes: imp_online_check asserts that dead records never
 * pass a quarter of the live bytes plus a page, so it fails unless deletion
 * compacts. */
static void many(void)
{
    enum { N = MANY };
    struct imp_online *t = imp_online_create(16);
    char id[16];
    for (int i = 0; i < N; i++) imp_online_set(t, id, uid(id, i), plat(i, 0), 1);
    CHECK(imp_online_count(t) == N);
    imp_online_check(t);
    CHECK(mismatches(t, 2 * N, all_r0) == 0); /* users N.. were never online */
    /* three in four go offline */
    for (int i = 0; i < N; i++)
        if (i % 4) imp_online_set(t, id, uid(id, i), 0, 1);
    CHECK(imp_online_count(t) == N / 4);
    imp_online_check(t);
    CHECK(mismatches(t, 2 * N, quarter_r0) == 0);
    /* a third of them come back, on other platforms */
    for (int i = 1; i < N; i += 4) imp_online_set(t, id, uid(id, i), plat(i, 1), 1);
    CHECK(imp_online_count(t) == N / 2);
    imp_online_check(t);
    CHECK(mismatches(t, 2 * N, back_r1) == 0);
    /* flapping: off and on again (revives dead records in place) */
    for (int r = 0; r < 3; r++)
        for (int i = 1; i < N; i += 4) {
            imp_online_set(t, id, uid(id, i), 0, 1);
            imp_online_set(t, id, uid(id, i), plat(i, 2), 1);
        }
    imp_online_check(t);
    CHECK(mismatches(t, 2 * N, churned) == 0);
    /* removing an absent user changes nothing */
    imp_online_set(t, id, uid(id, 2), 0, 1);
    imp_online_set(t, "nobody", 6, 0, 1);
    CHECK(imp_online_count(t) == N / 2);
    /* everyone goes: the table shrinks back and still works */
    for (int i = 0; i < N; i++) imp_online_set(t, id, uid(id, i), 0, 1);
    CHECK(imp_online_count(t) == 0);
    imp_online_check(t);
    imp_online_set(t, id, uid(id, 5), 1ULL << 3, 1);
    CHECK(imp_online_get(t, id, uid(id, 5)) == 1ULL << 3 && imp_online_count(t) == 1);
    imp_online_check(t);
    imp_online_destroy(t);
}

static void sweeping(void)
{
    struct imp_online *t = imp_online_create(8);
    char id[16];
    for (int i = 0; i < 1000; i++) imp_online_set(t, id, uid(id, i), plat(i, 0), 255);
    /* the reload sees half of them, across the 8-bit wrap of generations */
    for (int i = 0; i < 1000; i += 2) imp_online_set(t, id, uid(id, i), plat(i, 1), 256);
    CHECK(imp_online_sweep(t, 256) == 500);
    CHECK(imp_online_count(t) == 500);
    imp_online_check(t);
    int bad = 0;
    for (int i = 0; i < 1000; i++)
        bad += imp_online_get(t, id, uid(id, i)) != (i % 2 ? 0 : plat(i, 1));
    CHECK(bad == 0);
    CHECK(imp_online_sweep(t, 256) == 0); /* nothing stale left */
    /* a user removed during the load and back before the sweep survives */
    imp_online_set(t, id, uid(id, 0), 0, 257);
    imp_online_set(t, id, uid(id, 0), 1ULL << 4, 257);
    CHECK(imp_online_sweep(t, 257) == 499);
    CHECK(imp_online_count(t) == 1 && imp_online_get(t, id, uid(id, 0)) == 1ULL << 4);
    imp_online_check(t);
    /* generations are compared modulo 256 (documented in online.c) */
    imp_online_set(t, id, uid(id, 1), 1ULL << 2, 1);
    CHECK(imp_online_sweep(t, 257) == 0 && imp_online_count(t) == 2);
    /* a load that finds nobody empties the table, which then refills */
    CHECK(imp_online_sweep(t, 258) == 2 && imp_online_count(t) == 0);
    imp_online_check(t);
    for (int i = 0; i < 1000; i++) imp_online_set(t, id, uid(id, i), plat(i, 3), 259);
    CHECK(imp_online_count(t) == 1000);
    imp_online_check(t);
    imp_online_destroy(t);
}

/* IDs around every length boundary of the record format: the 1-byte length
 * (255 takes the long header), a page (4080 bytes with the header), and far
 * beyond. They are prefixes of each other, so lengths must be compared. */
static void long_ids(void)
{
    static const size_t lens[] = {0,    1,    9,    253,  254,  255,   256,    300,
                                  4071, 4072, 4073, 4080, 4100, 10000, 100000, 1 << 20};
    enum { NL = IMP_ARRAY_LEN(lens) };
    char *buf = malloc((1 << 20) + 8);
    for (int i = 0; i < (1 << 20) + 8; i++) buf[i] = (char)('a' + i % 26);
    struct imp_online *t = imp_online_create(4);
    char id[16];
    for (int r = 0; r < 2; r++) {
        for (int k = 0; k < NL; k++) {
            imp_online_set(t, buf, lens[k], 1ULL << (k % 15 + 1), 1);
            /* short users in between, to share pages with the long ones */
            for (int i = 0; i < 300; i++)
                imp_online_set(t, id, uid(id, k * 300 + i), plat(i, 0), 1);
        }
        CHECK(imp_online_count(t) == NL * 301);
        imp_online_check(t);
        int bad = 0;
        for (int k = 0; k < NL; k++) {
            bad += imp_online_get(t, buf, lens[k]) != 1ULL << (k % 15 + 1);
            bad += imp_online_get(t, buf, lens[k] + 5) != 0; /* a length not stored */
        }
        CHECK(bad == 0);
        /* same length, last byte differs */
        buf[4099] = '#';
        CHECK(imp_online_get(t, buf, 4100) == 0);
        buf[4099] = (char)('a' + 4099 % 26);
        /* the long ones go (odd ones first), come back, go again */
        for (int k = 1; k < NL; k += 2) imp_online_set(t, buf, lens[k], 0, 1);
        imp_online_check(t);
        bad = 0;
        for (int k = 0; k < NL; k++)
            bad += imp_online_get(t, buf, lens[k]) != (k % 2 ? 0 : 1ULL << (k % 15 + 1));
        CHECK(bad == 0);
        for (int k = 1; k < NL; k += 2) imp_online_set(t, buf, lens[k], 1ULL << 9, 1);
        CHECK(imp_online_get(t, buf, lens[NL - 1]) == 1ULL << 9);
        for (int k = 0; k < NL; k++) imp_online_set(t, buf, lens[k], 0, 1);
        CHECK(imp_online_count(t) == NL * 300);
        imp_online_check(t);
    }
    imp_online_destroy(t);
    /* 4000 IDs, each a prefix of the next, in one shard, longest first: a
     * probe passes slots of longer IDs, some with a matching tag, and only
     * the length tells those keys apart */
    t = imp_online_create(1);
    for (int n = 3999; n >= 0; n--) imp_online_set(t, buf, (size_t)n, 1ULL << (n % 15 + 1), 1);
    imp_online_check(t);
    int bad = 0;
    for (int n = 0; n < 4000; n++) bad += imp_online_get(t, buf, (size_t)n) != 1ULL << (n % 15 + 1);
    CHECK(bad == 0);
    imp_online_destroy(t);
    free(buf);
}

/* A shard whose records pass 16 MiB: each 4200-byte ID takes a page of its
 * own, so 4200 of them need more pages than 24 bits of offset can name and
 * the index gives up a tag bit; removing half lets it take it back. */
static void big_shard(void)
{
    enum { NBIG = 4200, LEN = 4200 };
    struct imp_online *t = imp_online_create(1);
    char *big = malloc(LEN);
    char id[16];
    memset(big, 'w', LEN);
    for (int i = 0; i < NBIG; i++) {
        memcpy(big, id, uid(id, i));
        imp_online_set(t, big, LEN, plat(i, 0), 1);
        imp_online_set(t, id, uid(id, i), plat(i, 1), 1);
    }
    CHECK(imp_online_count(t) == 2 * NBIG);
    imp_online_check(t);
    int bad = 0;
    for (int i = 0; i < NBIG; i++) {
        memcpy(big, id, uid(id, i));
        bad += imp_online_get(t, big, LEN) != plat(i, 0);
        bad += imp_online_get(t, id, uid(id, i)) != plat(i, 1);
    }
    CHECK(bad == 0);
    for (int i = 0; i < NBIG; i += 2) {
        memcpy(big, id, uid(id, i));
        imp_online_set(t, big, LEN, 0, 1);
    }
    imp_online_check(t);
    bad = 0;
    for (int i = 0; i < NBIG; i++) {
        memcpy(big, id, uid(id, i));
        bad += imp_online_get(t, big, LEN) != (i % 2 ? plat(i, 0) : 0);
        bad += imp_online_get(t, id, uid(id, i)) != plat(i, 1);
    }
    CHECK(bad == 0);
    CHECK(imp_online_count(t) == NBIG + NBIG / 2);
    imp_online_destroy(t);
    free(big);
}

/* ---- concurrency ---------------------------------------------------------
 * One writer sets, deletes, mass-deletes and sweeps; two readers check that
 * every value they see is absent or one the writer could have written for
 * that key, and that pinned users (rewritten each round, never removed)
 * never disappear, whatever growth or compaction is under way. */

enum { CKEYS = 6000, CPINNED = 200, CROUNDS = 28 };

struct conc {
    struct imp_online *t;
    atomic_int started, done;
    atomic_long bad, reads;
};

/* Key k: mostly short, every 50th a 300-byte ID (a long header). */
static size_t ckey(char *buf, int k)
{
    int n = snprintf(buf, 16, "c%d", k);
    if (k % 50) return (size_t)n;
    memset(buf + n, 'L', 300 - (size_t)n);
    return 300;
}

/* The values ever written for key k: 1, 2 or 3 shifted by k % 13 + 1. */
static uint64_t cval(int k, int round) { return (uint64_t)(round % 3 + 1) << (k % 13 + 1); }

static int callowed(int k, uint64_t v)
{
    int sh = k % 13 + 1;
    return (v & ((1ULL << sh) - 1)) == 0 && (v >> sh) >= 1 && (v >> sh) <= 3;
}

static uint64_t cpin(int p) { return 1ULL << (p % 15 + 1); }

static void *reader(void *arg)
{
    struct conc *c = arg;
    char buf[320], pid[16];
    atomic_fetch_add(&c->started, 1);
    do {
        for (int k = 0; k < CKEYS; k++) {
            uint64_t v = imp_online_get(c->t, buf, ckey(buf, k));
            if (v && !callowed(k, v)) atomic_fetch_add(&c->bad, 1);
        }
        for (int p = 0; p < CPINNED; p++) {
            int n = snprintf(pid, sizeof(pid), "pin%d", p);
            if (imp_online_get(c->t, pid, (size_t)n) != cpin(p)) atomic_fetch_add(&c->bad, 1);
        }
        if (imp_online_count(c->t) > CKEYS + CPINNED) atomic_fetch_add(&c->bad, 1);
        atomic_fetch_add(&c->reads, 1);
    } while (!atomic_load(&c->done));
    return NULL;
}

static void set_pinned(struct imp_online *t, uint32_t gen)
{
    char pid[16];
    for (int p = 0; p < CPINNED; p++) {
        int n = snprintf(pid, sizeof(pid), "pin%d", p);
        imp_online_set(t, pid, (size_t)n, cpin(p), gen);
    }
}

static void *writer(void *arg)
{
    struct conc *c = arg;
    char buf[320];
    while (atomic_load(&c->started) < 2) {}
    for (int r = 0; r < CROUNDS; r++) {
        uint32_t gen = (uint32_t)r + 2;
        for (int k = 0; k < CKEYS; k++) {
            switch ((k + r) % 4) {
            case 0: imp_online_set(c->t, buf, ckey(buf, k), 0, gen); break;
            case 3: break; /* left at its old generation: the sweep takes it */
            default: imp_online_set(c->t, buf, ckey(buf, k), cval(k, r), gen);
            }
        }
        set_pinned(c->t, gen);
        if (r % 5 == 4) { /* everyone but the pinned logs out, a few return */
            for (int k = 0; k < CKEYS; k++) imp_online_set(c->t, buf, ckey(buf, k), 0, gen);
            for (int k = 0; k < CKEYS; k += 7)
                imp_online_set(c->t, buf, ckey(buf, k), cval(k, r), gen);
        }
        imp_online_sweep(c->t, gen);
        imp_online_check(c->t);
    }
    atomic_store(&c->done, 1);
    return NULL;
}

static void concurrent(void)
{
    struct conc c = {.t = imp_online_create(4)};
    set_pinned(c.t, 1);
    pthread_t rd[2], wr;
    for (int i = 0; i < 2; i++) pthread_create(&rd[i], NULL, reader, &c);
    pthread_create(&wr, NULL, writer, &c);
    pthread_join(wr, NULL);
    for (int i = 0; i < 2; i++) pthread_join(rd[i], NULL);
    CHECK(atomic_load(&c.bad) == 0);
    CHECK(atomic_load(&c.reads) >= 2);
    imp_online_check(c.t);
    /* the last round swept all but its own writes */
    char buf[320];
    long bad = 0;
    for (int k = 0, r = CROUNDS - 1; k < CKEYS; k++) {
        int m = (k + r) % 4, kept = r % 5 == 4 ? k % 7 == 0 : m == 1 || m == 2;
        bad += imp_online_get(c.t, buf, ckey(buf, k)) != (kept ? cval(k, r) : 0);
    }
    CHECK(bad == 0);
    imp_online_destroy(c.t);
}

/* Writes are safe from any thread: two writers on disjoint users, each also
 * sweeping (at the generation both use, so it removes nothing). */
struct wctx {
    struct imp_online *t;
    char prefix;
    atomic_long swept;
};

static void *writer2(void *arg)
{
    struct wctx *w = arg;
    char id[16];
    for (int i = 0; i < 20000; i++) {
        int n = snprintf(id, sizeof(id), "%c%d", w->prefix, i);
        imp_online_set(w->t, id, (size_t)n, plat(i, 0), 1);
        if (i % 3 == 0) imp_online_set(w->t, id, (size_t)n, 0, 1);
        if (i % 5000 == 0) atomic_fetch_add(&w->swept, (long)imp_online_sweep(w->t, 1));
    }
    return NULL;
}

static void two_writers(void)
{
    struct imp_online *t = imp_online_create(8);
    struct wctx w[2] = {{.t = t, .prefix = 'a'}, {.t = t, .prefix = 'b'}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, writer2, &w[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    CHECK(atomic_load(&w[0].swept) + atomic_load(&w[1].swept) == 0);
    imp_online_check(t);
    char id[16];
    int bad = 0;
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < 20000; i++) {
            int n = snprintf(id, sizeof(id), "%c%d", "ab"[p], i);
            bad += imp_online_get(t, id, (size_t)n) != (i % 3 ? plat(i, 0) : 0);
        }
    CHECK(bad == 0);
    CHECK(imp_online_count(t) == 2 * (20000 - 6667));
    imp_online_destroy(t);
}

int main(void)
{
    parsing();
    table();
    many();
    sweeping();
    long_ids();
    big_shard();
    concurrent();
    two_writers();
    return t_done("online");
}

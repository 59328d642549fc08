/* Expirable LRU: TTL misses, renewal on re-add, the 100-bucket sweep (lazy
 * on access and explicit), eviction order, no-TTL caches, and a model
 * check of the sweep over many laps of the bucket ring. Time is a
 * parameter: no sleeps. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/cache/expirable.h"
#include "t.h"

static int nevicted;
static char last_evicted[32];

static void on_evict(void *ud, const char *key, size_t klen, void *val)
{
    (void)ud;
    (void)val;
    nevicted++;
    snprintf(last_evicted, sizeof(last_evicted), "%.*s", (int)klen, key);
}

static int add(struct imp_elru *c, const char *k, intptr_t v, uint64_t now)
{
    return imp_elru_add(c, k, strlen(k), (void *)v, now);
}

static intptr_t get(struct imp_elru *c, const char *k, uint64_t now)
{
    void *v;
    return imp_elru_get(c, k, strlen(k), now, &v) ? (intptr_t)v : -1;
}

static void ttl(void)
{
    struct imp_elru *c = imp_elru_create(10, 1000, NULL, on_evict, NULL);
    CHECK(imp_elru_create(0, 1000, NULL, NULL, NULL) == NULL);
    uint64_t t0 = 1000000;
    add(c, "a", 1, t0);
    add(c, "b", 2, t0 + 500);
    CHECK(get(c, "a", t0 + 999) == 1);
    CHECK(imp_elru_contains(c, "a", 1, t0 + 999) == 1);
    /* Expired: peek and contains miss but keep it; get removes it. */
    void *v;
    CHECK(imp_elru_peek(c, "a", 1, t0 + 1000, &v) == 0);
    CHECK(imp_elru_contains(c, "a", 1, t0 + 1000) == 0);
    CHECK(imp_elru_len(c) == 2);
    CHECK(nevicted == 0);
    CHECK(get(c, "a", t0 + 1000) == -1);
    CHECK(nevicted == 1);
    CHECK_STR(last_evicted, "a");
    CHECK(imp_elru_len(c) == 1);
    imp_elru_check(c);

    /* Re-adding renews the expiry (and replaces the value). */
    CHECK(add(c, "b", 3, t0 + 1400) == 0);
    CHECK(get(c, "b", t0 + 2399) == 3);
    CHECK(imp_elru_sweep(c, t0 + 2300) == 0);
    CHECK(get(c, "b", t0 + 2400) == -1);
    imp_elru_check(c);
    imp_elru_destroy(c);
}

static void sweep(void)
{
    /* ttl 1000: ticks of 10 ms, 100 buckets. */
    struct imp_elru *c = imp_elru_create(100, 1000, NULL, on_evict, NULL);
    uint64_t t0 = 5000000;
    char k[16];
    for (int i = 0; i < 20; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        add(c, k, i, t0 + (uint64_t)i * 50); /* expiries t0+1000 .. t0+1950 */
    }
    imp_elru_check(c);
    nevicted = 0;
    /* Nothing expired yet. */
    CHECK(imp_elru_sweep(c, t0 + 999) == 0);
    /* k0 expires at t0+1000, in the slot [t0+1000, t0+1010): swept once that
     * slot has passed, not before. */
    CHECK(imp_elru_sweep(c, t0 + 1005) == 0);
    CHECK(imp_elru_len(c) == 20);
    CHECK(imp_elru_sweep(c, t0 + 1010) == 1);
    CHECK_STR(last_evicted, "k0");
    CHECK(nevicted == 1);
    /* Half the entries. */
    CHECK(imp_elru_sweep(c, t0 + 1460) == 9); /* k1..k9 (k9 expires at 1450) */
    CHECK(imp_elru_len(c) == 10);
    imp_elru_check(c);
    /* Lazily on access: an add long after sweeps everything due. */
    add(c, "late", 99, t0 + 10000);
    CHECK(imp_elru_len(c) == 1);
    CHECK(nevicted == 20);
    CHECK(get(c, "late", t0 + 10999) == 99);
    imp_elru_check(c);
    imp_elru_purge(c);
    CHECK(nevicted == 21);
    CHECK(imp_elru_len(c) == 0);
    imp_elru_destroy(c);
}

static char keys[256];

static void key_cat(void *ud, const char *key, size_t klen, void *val)
{
    (void)ud;
    (void)val;
    strncat(keys, key, klen);
    strcat(keys, ",");
}

static void order_and_no_ttl(void)
{
    struct imp_elru *c = imp_elru_create(3, 0, NULL, on_evict, NULL);
    add(c, "a", 1, 0);
    add(c, "b", 2, 0);
    add(c, "c", 3, 0);
    CHECK(get(c, "a", 1) == 1);
    CHECK(add(c, "d", 4, 2) == 1);
    CHECK_STR(last_evicted, "b");
    keys[0] = '\0';
    CHECK(imp_elru_keys(c, key_cat, NULL) == 3);
    CHECK_STR(keys, "c,a,d,");
    /* No TTL: nothing ever expires. */
    CHECK(get(c, "c", UINT64_MAX - 1) == 3);
    CHECK(imp_elru_sweep(c, UINT64_MAX - 1) == 0);
    CHECK(imp_elru_remove_oldest(c) == 1);
    CHECK_STR(last_evicted, "a");
    CHECK(imp_elru_remove(c, "d", 1) == 1);
    CHECK(imp_elru_remove(c, "d", 1) == 0);
    imp_elru_check(c);
    imp_elru_destroy(c);
}

/* The sweep against a model, over many laps of the ring, with adds,
 * re-adds and removes at random times. */
static uint64_t rnd_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

static void model(void)
{
    enum { K = 300 };
    const uint64_t ttl = 777, tick = 8; /* ceil(777 / 100) */
    static uint64_t exp_at[K];          /* 0: absent */
    struct imp_elru *c = imp_elru_create(K + 1, ttl, NULL, NULL, NULL);
    uint64_t now = 123456;
    char k[16];
    int bad = 0;
    for (int step = 0; step < 200000; step++) {
        now += rnd() % 7;
        int i = (int)(rnd() % K);
        snprintf(k, sizeof(k), "m%d", i);
        switch (rnd() % 8) {
        case 0:
        case 1:
        case 2:
            add(c, k, i, now);
            exp_at[i] = now + ttl;
            break;
        case 3:
            imp_elru_remove(c, k, strlen(k));
            exp_at[i] = 0;
            break;
        case 4: {
            imp_elru_sweep(c, now);
            /* Exactly the entries of the passed tick slots are gone. */
            for (int j = 0; j < K; j++) {
                char kj[16];
                snprintf(kj, sizeof(kj), "m%d", j);
                int present = imp_elru_peek(c, kj, strlen(kj), 0, NULL);
                int want = exp_at[j] != 0 && exp_at[j] >= (now / tick) * tick;
                if (present != want) bad++;
                if (!present) exp_at[j] = 0;
            }
            break;
        }
        default: {
            intptr_t v = get(c, k, now);
            int want = exp_at[i] > now;
            if ((v == i) != want) bad++;
            if (!want) exp_at[i] = 0;
        }
        }
        if (step % 10007 == 0) imp_elru_check(c);
    }
    CHECK(bad == 0);
    imp_elru_check(c);
    imp_elru_destroy(c);
}

static int nfree;
static void *ptr_dup(void *v) { return v; }
static void ptr_free(void *v)
{
    (void)v;
    nfree++;
}

static void types(void)
{
    const struct imp_lru_type t = {.dup = ptr_dup, .free = ptr_free};
    struct imp_elru *c = imp_elru_create(2, 100, &t, NULL, NULL);
    add(c, "a", 1, 0);
    add(c, "a", 2, 10); /* replaced */
    add(c, "b", 3, 10);
    add(c, "c", 4, 10); /* evicts a */
    CHECK(nfree == 2);
    CHECK(get(c, "b", 200) == -1); /* expired: the access sweeps b and c */
    CHECK(nfree == 4);
    CHECK(imp_elru_len(c) == 0);
    add(c, "d", 5, 300);
    imp_elru_destroy(c);
    CHECK(nfree == 5);
}

int main(void)
{
    ttl();
    sweep();
    order_and_no_ttl();
    model();
    types();
    return t_done("cache_expirable");
}

/*
 * base/ratelimit.c: the token bucket's refill and burst with time as a
 * parameter, strict priority of lanes through the waiting counts, the
 * per-device windows, and the bucket shared by two threads never handing
 * out more than rate x time + burst.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "base/ratelimit.h"
#include "t.h"

static int take(struct imp_ratelimit *rl, int lane, uint64_t now_us)
{
    uint64_t retry = 0;
    return imp_ratelimit_take(rl, lane, now_us, &retry);
}

static void test_bucket(void)
{
    struct imp_ratelimit *rl = imp_ratelimit_fetch("t-bucket");
    CHECK(rl == imp_ratelimit_fetch("t-bucket")); /* one per name */
    /* unlimited until set */
    for (int i = 0; i < 1000; i++) CHECK(take(rl, 2, 1000));
    imp_ratelimit_set(rl, 100, 10); /* 100/s, burst 10: full at first */
    uint64_t t = 1000000;
    int got = 0;
    while (take(rl, 1, t)) got++;
    CHECK(got == 10);
    uint64_t retry = 0;
    CHECK(!imp_ratelimit_take(rl, 1, t, &retry));
    CHECK(retry > t && retry <= t + 10001); /* one token in 10 ms */
    /* a second later: 100 more, capped at the burst of 10 */
    t += 1000000;
    got = 0;
    while (take(rl, 1, t)) got++;
    CHECK(got == 10);
    /* 1 s in 1 ms steps: 100 tokens, give or take the one being refilled */
    got = 0;
    for (int ms = 1; ms <= 1000; ms++)
        while (take(rl, 1, t + (uint64_t)ms * 1000)) got++;
    CHECK(got >= 99 && got <= 101);
}

static void test_lanes(void)
{
    struct imp_ratelimit *rl = imp_ratelimit_fetch("t-lanes");
    imp_ratelimit_set(rl, 10, 1);
    uint64_t t = 5000000;
    CHECK(take(rl, 2, t)); /* the burst */
    CHECK(!take(rl, 0, t));
    /* lane 0 waits for a token: lanes 1 and 2 may not take one */
    imp_ratelimit_waiting(rl, 0, 1);
    t += 200000; /* two tokens' worth, one kept (burst 1) */
    CHECK(!take(rl, 2, t));
    CHECK(!take(rl, 1, t));
    CHECK(take(rl, 0, t));
    imp_ratelimit_waiting(rl, 0, -1);
    t += 200000;
    CHECK(take(rl, 2, t)); /* nobody above waits: the bulk lane goes */
}

static void test_devices(void)
{
    uint64_t retry = 0;
    /* 2 per 60 s window */
    CHECK(imp_ratelimit_device(42, 2, 60, 600, &retry));
    CHECK(imp_ratelimit_device(42, 2, 60, 610, &retry));
    CHECK(!imp_ratelimit_device(42, 2, 60, 659, &retry));
    CHECK(retry == 660);
    CHECK(imp_ratelimit_device(43, 2, 60, 659, &retry)); /* another device */
    CHECK(imp_ratelimit_device(42, 2, 60, 660, &retry)); /* the next window */
    /* a slot shared by two hashes (same low 20 bits) shares its count */
    uint64_t a = 7, b = 7 | ((uint64_t)1 << 40);
    CHECK(imp_ratelimit_device(a, 1, 60, 6000, &retry));
    CHECK(!imp_ratelimit_device(b, 1, 60, 6000, &retry));
    CHECK(imp_ratelimit_device(a, 0, 60, 6000, &retry)); /* max 0: no limit */
}

/* Two threads take from one bucket as fast as they can over 200 ms of
 * simulated time: never more than rate x time + burst in all. */
struct racer {
    struct imp_ratelimit *rl;
    int got;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    for (uint64_t us = 10000000; us <= 10200000; us += 10)
        if (take(r->rl, 1, us)) r->got++;
    return NULL;
}

static void test_threads(void)
{
    struct imp_ratelimit *rl = imp_ratelimit_fetch("t-threads");
    imp_ratelimit_set(rl, 1000, 5);
    struct racer a = {rl, 0}, b = {rl, 0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, race, &a);
    pthread_create(&tb, NULL, race, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    /* 200 ms at 1000/s plus the burst of 5 (plus one being refilled) */
    CHECK(a.got + b.got <= 206);
    CHECK(a.got + b.got >= 150); /* and the bucket did hand them out */
    CHECK(imp_ratelimit_taken(rl) == (uint64_t)(a.got + b.got));
}

int main(void)
{
    test_bucket();
    test_lanes();
    test_devices();
    test_threads();
    imp_ratelimit_shutdown();
    return t_done("ratelimit");
}

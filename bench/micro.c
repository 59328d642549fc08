/*
 * bench_micro: hot-path micro-benchmarks of the walking skeleton.
 *
 *   online:  set and get of 1,000,000 users (u10000000.., platforms
 *            {1,2}) in the online table, lookups in insertion and in random
 *            order, and the resident memory the table costs;
 *   decode:  PushMsgReq unpack + MsgData repack (what each message costs
 *            before the policy runs);
 *   encode:  the gateway request for a 100,000-member group.
 *
 * Prints one line per figure. Not a test: nothing is asserted.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/common.h"
#include "net/gateway.h"
#include "push.pb-c.h"
#include "state/online.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
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

/* Lookups of n pre-built 9-byte IDs, read in sequence (as a caller holds
 * the ID it asks about in cache); ns per lookup. */
static double online_gets(struct imp_online *t, const char (*ids)[10], int n, uint64_t *hits)
{
    double t0 = now_s();
    for (int i = 0; i < n; i++) *hits += imp_online_get(t, ids[i], 9) != 0;
    return (now_s() - t0) / n * 1e9;
}

struct online_reader {
    struct imp_online *t;
    const char (*ids)[10];
    int n;
    uint64_t hits;
    double ns;
};

static void *online_reader(void *arg)
{
    struct online_reader *r = arg;
    r->ns = online_gets(r->t, r->ids, r->n, &r->hits);
    return NULL;
}

static void bench_online(void)
{
    enum { N = 1000000 };
    /* OpenIM-shaped IDs u10000000.. (9 bytes), built before the clock and
     * the memory baseline; ids[N..2N) are never online */
    char(*ids)[10] = malloc(2 * (size_t)N * sizeof(*ids));
    for (int i = 0; i < 2 * N; i++) snprintf(ids[i], sizeof(ids[i]), "u%d", 10000000 + i);
    /* the same, each half shuffled: random hits, then random misses */
    char(*shuf)[10] = malloc(2 * (size_t)N * sizeof(*shuf));
    memcpy(shuf, ids, 2 * (size_t)N * sizeof(*shuf));
    uint64_t x = 88172645463325252ULL;
    for (int h = 0; h < 2; h++)
        for (int i = N - 1; i > 0; i--) {
            char tmp[10];
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            uint32_t j = (uint32_t)(x % (uint64_t)(i + 1));
            memcpy(tmp, shuf[h * N + i], 10);
            memcpy(shuf[h * N + i], shuf[h * N + j], 10);
            memcpy(shuf[h * N + j], tmp, 10);
        }
    const uint64_t phone_pc = (1ULL << 1) | (1ULL << 2); /* iOS and Android */
    long before = rss_kib();
    struct imp_online *t = imp_online_create(256);
    double t0 = now_s();
    for (int i = 0; i < N; i++) imp_online_set(t, ids[i], 9, phone_pc, 1);
    double t1 = now_s();
    long after = rss_kib();
    uint64_t hits = 0, rhits = 0, mhits = 0;
    double seq = online_gets(t, ids, N, &hits);
    double rnd = online_gets(t, shuf, N, &rhits);
    double miss = online_gets(t, shuf + N, N, &mhits);
    struct online_reader rd[2] = {{t, shuf, N, 0, 0}, {t, shuf, N, 0, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, online_reader, &rd[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    /* a full reload that finds everyone (sweep keeps all), then half logging out */
    double t2 = now_s();
    for (int i = 0; i < N; i++) imp_online_set(t, ids[i], 9, phone_pc, 2);
    size_t swept = imp_online_sweep(t, 2);
    double t3 = now_s();
    for (int i = 0; i < N; i += 2) imp_online_set(t, ids[i], 9, 0, 2);
    double t4 = now_s();
    printf("online.set      %8.0f ns/op  (%d users, 9-byte IDs, platforms {1,2})\n",
           (t1 - t0) / N * 1e9, N);
    printf("online.get      %8.0f ns/op  (hits in insertion order: %llu found)\n", seq,
           (unsigned long long)hits);
    printf("online.get.rand %8.0f ns/op  (hits in random order: %llu found)\n", rnd,
           (unsigned long long)rhits);
    printf("online.get.miss %8.0f ns/op  (misses in random order: %llu found)\n", miss,
           (unsigned long long)mhits);
    printf("online.get.2thr %8.0f ns/op  (hits in random order, 2 threads at once, per thread)\n",
           (rd[0].ns + rd[1].ns) / 2);
    printf("online.reload   %8.0f ns/user (set at a new generation + sweep, %zu swept)\n",
           (t3 - t2) / N * 1e9, swept);
    printf("online.delete   %8.0f ns/op  (half the users go offline, compactions included)\n",
           (t4 - t3) / (N / 2) * 1e9);
    printf("online.memory   %8.1f bytes/user  (RSS +%ld KiB, IDs included)\n",
           (after - before) * 1024.0 / N, after - before);
    imp_online_destroy(t);
    free(shuf);
    free(ids);
}

static void bench_decode(void)
{
    enum { N = 200000 };
    Openim__Sdkws__MsgData m = OPENIM__SDKWS__MSG_DATA__INIT;
    Openim__Push__PushMsgReq r = OPENIM__PUSH__PUSH_MSG_REQ__INIT;
    Openim__Sdkws__MsgData__OptionsEntry o1 = OPENIM__SDKWS__MSG_DATA__OPTIONS_ENTRY__INIT;
    Openim__Sdkws__MsgData__OptionsEntry *opts[1] = {&o1};
    o1.key = "senderSync";
    o1.value = 1;
    m.sendid = "user-000123";
    m.recvid = "user-000456";
    m.clientmsgid = "f0e1d2c3b4a5968778695a4b3c2d1e0f";
    m.servermsgid = "5a4b3c2d1e0ff0e1d2c3b4a596877869";
    m.sessiontype = 1;
    m.contenttype = 101;
    m.content.data = (uint8_t *)"{\"content\":\"hello, this is a typical short text message\"}";
    m.content.len = strlen((char *)m.content.data);
    m.sendtime = 1764000000000;
    m.status = 1;
    m.n_options = 1;
    m.options = opts;
    r.msgdata = &m;
    size_t len = openim__push__push_msg_req__get_packed_size(&r);
    uint8_t *buf = malloc(len);
    openim__push__push_msg_req__pack(&r, buf);
    uint8_t out[4096];
    double t0 = now_s();
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        Openim__Push__PushMsgReq *d = openim__push__push_msg_req__unpack(NULL, len, buf);
        d->msgdata->status = 2;
        total += openim__sdkws__msg_data__pack(d->msgdata, out);
        openim__push__push_msg_req__free_unpacked(d, NULL);
    }
    double t1 = now_s();
    printf("decode+repack   %8.0f ns/msg  (%zu-byte record; %zu bytes out)\n", (t1 - t0) / N * 1e9,
           len, total / N);
    free(buf);
}

static void bench_encode_group(void)
{
    enum { MEMBERS = 100000, ROUNDS = 50 };
    char **users = malloc(MEMBERS * sizeof(char *));
    for (int i = 0; i < MEMBERS; i++) {
        users[i] = malloc(24);
        snprintf(users[i], 24, "member-%09d", i);
    }
    char msgdata[300];
    memset(msgdata, 'x', sizeof(msgdata));
    struct imp_buf b;
    imp_buf_init(&b);
    double t0 = now_s();
    for (int r = 0; r < ROUNDS; r++) {
        imp_buf_reset(&b);
        imp_gateway_encode(&b, msgdata, sizeof(msgdata), users, MEMBERS);
    }
    double t1 = now_s();
    printf("encode.group    %8.2f ms/request  (100,000 members, %zu bytes)\n",
           (t1 - t0) / ROUNDS * 1e3, b.len);
    imp_buf_dispose(&b);
    for (int i = 0; i < MEMBERS; i++) free(users[i]);
    free(users);
}

/* `bench_micro rss [N...]`: the online table's resident memory against its
 * users, each size on a fresh table: N users "u<10000000+i>" on {1, 2},
 * the whole process's RSS growth (IDs included), as online.memory. */
static void bench_rss(int argc, char **argv)
{
    static const long sizes[] = {1000000, 2000000, 5000000, 10000000};
    int n = argc > 0 ? argc : (int)(sizeof(sizes) / sizeof(sizes[0]));
    printf("# users  rss_growth_kib  bytes_per_user  process_rss_kib\n");
    for (int k = 0; k < n; k++) {
        long users = argc > 0 ? atol(argv[k]) : sizes[k];
        long before = rss_kib();
        struct imp_online *t = imp_online_create(256);
        char id[16];
        for (long i = 0; i < users; i++) {
            int len = snprintf(id, sizeof(id), "u%ld", 10000000 + i);
            imp_online_set(t, id, (size_t)len, (1ULL << 1) | (1ULL << 2), 1);
        }
        long after = rss_kib();
        printf("%ld %ld %.1f %ld\n", users, after - before, (after - before) * 1024.0 / users,
               after);
        fflush(stdout);
        imp_online_destroy(t);
        malloc_trim(0);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "rss") == 0) {
        bench_rss(argc - 2, argv + 2);
        return 0;
    }
    bench_online();
    bench_decode();
    bench_encode_group();
    return 0;
}

/*
 * bench_micro: hot-path micro-benchmarks of the walking skeleton.
 *
 *   online:  set and get of 1,000,000 users in the online table, and the
 *            resident memory the table costs (baseline for issue 3's
 *            compact table);
 *   decode:  PushMsgReq unpack + MsgData repack (what each message costs
 *            before the policy runs);
 *   encode:  the gateway request for a 100,000-member group.
 *
 * Prints one line per figure. Not a test: nothing is asserted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "common.h"
#include "gateway.h"
#include "online.h"
#include "push.pb-c.h"

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

static void bench_online(void)
{
    enum { N = 1000000 };
    char id[32];
    long before = rss_kib();
    struct imp_online *t = imp_online_create(256);
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        int n = snprintf(id, sizeof(id), "%010lld", (long long)i * 7919);
        imp_online_set(t, id, (size_t)n, 1ULL << (i % 3 + 1), 1);
    }
    double t1 = now_s();
    uint64_t hits = 0;
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < N; i++) {
            int n = snprintf(id, sizeof(id), "%010lld", (long long)i * 7919 + (r ? 1 : 0));
            hits += imp_online_get(t, id, (size_t)n) != 0;
        }
    double t2 = now_s();
    long after = rss_kib();
    printf("online.set      %8.0f ns/op  (%d users)\n", (t1 - t0) / N * 1e9, N);
    printf("online.get      %8.0f ns/op  (half hits, half misses; hits %llu)\n",
           (t2 - t1) / (2.0 * N) * 1e9, (unsigned long long)hits);
    printf("online.memory   %8.1f bytes/user  (RSS +%ld KiB)\n", (after - before) * 1024.0 / N,
           after - before);
    imp_online_destroy(t);
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

int main(void)
{
    bench_online();
    bench_decode();
    bench_encode_group();
    return 0;
}

/*
 * Load generator for the latency and capacity benchmark (issue 16):
 * produces OpenIM-format toPush records at a set rate, or consumes a
 * topic as fast as a plain librdkafka consumer can.
 *
 *   build/bench_loadgen --brokers H:P [--topic toPush] [--rate N] [--count N | --seconds S]
 *                       [--users N] [--tick-us U] [--linger-ms L] [--progress-ms P]
 *   build/bench_loadgen --consume --brokers H:P [--topic toPush] [--count N]
 *                       [--group G] [--fetch-wait-ms W] [--idle-ms I]
 *
 * Producing: single-chat PushMsgReq{1 msgData, 2 conversationID} records
 * as msgtransfer writes them (OpenIM's four headers, key = the two user
 * IDs sorted and joined by "_", librdkafka's fnv1a partitioner, which is
 * OpenIM's), message i from "chat<(i+1)%users+1>" to "chat<i%users+1>",
 * option senderSync false (one recipient). MsgData.ex holds the produce
 * time, CLOCK_REALTIME in microseconds, as decimal digits: impulse hands
 * msgData to the gateways byte for byte as consumed (only a status of 1
 * becomes 2, push/worker.c msgdata_as_consumed), so bench_gwstub
 * --latency reads it there. The rate is kept in ticks of --tick-us (1 ms):
 * at each tick every message due by then (rate × elapsed) is produced, so
 * the stream is steady, not a burst each second. --rate 0 produces as
 * fast as the producer takes records (a backlog). Every --progress-ms a
 * line "progress <ms since start> <produced> <delivered>" goes to stdout;
 * at the end "produced N in S s: R msg/s (offered R0); delivered N,
 * failed N". SIGINT/SIGTERM end the run early, with the report.
 *
 * Consuming (--consume): a consumer in a fresh group from the earliest
 * offset that polls and counts records, nothing else: the intake ceiling
 * the engine's consumer is measured against. It stops after --count
 * records or --idle-ms without one (after the first) and prints
 * "consumed N records (B bytes) in S s: R records/s (first record to
 * last); S2 s from the assignment: R2 records/s; ..." (the first record
 * comes with a whole fetch, so the first rate is polling alone and the
 * second includes fetching).
 *
 * What it leaves out: groups (the key would be the groupID), offline
 * pushes (every receiver is expected online), delivery-time checks.
 */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "push.pb-c.h"
#include "sdkws.pb-c.h"

static volatile sig_atomic_t stop;
static unsigned long long delivered, failed;
static int64_t assigned_at; /* --consume: when the partitions came */

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_until_mono(int64_t us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0 && !stop) {}
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err)
        failed++;
    else
        delivered++;
}

static int conf_set(rd_kafka_conf_t *c, const char *k, const char *v)
{
    char e[512];
    if (rd_kafka_conf_set(c, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "bench_loadgen: %s=%s: %s\n", k, v, e);
        return -1;
    }
    return 0;
}

struct opts {
    const char *brokers, *topic, *group;
    double rate, seconds;
    long long count;
    long users, tick_us, linger_ms, progress_ms, fetch_wait_ms, idle_ms;
    int consume;
};

static int produce(const struct opts *o)
{
    char num[32];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    snprintf(num, sizeof(num), "%ld", o->linger_ms);
    if (conf_set(conf, "bootstrap.servers", o->brokers) || conf_set(conf, "linger.ms", num) ||
        conf_set(conf, "partitioner", "fnv1a") ||
        conf_set(conf, "queue.buffering.max.messages", "1000000") ||
        conf_set(conf, "queue.buffering.max.kbytes", "1048576"))
        return 1;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    char e[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
    if (!rk) {
        fprintf(stderr, "bench_loadgen: producer: %s\n", e);
        return 1;
    }

    long long count = o->count;
    if (count <= 0 && o->rate > 0 && o->seconds > 0) count = (long long)(o->rate * o->seconds);
    if (count <= 0 && o->seconds <= 0) count = 10000;
    int64_t limit_us = o->seconds > 0 ? (int64_t)(o->seconds * 1e6) : INT64_MAX;

    /* one message, rewritten per record: only its IDs and times change */
    Openim__Sdkws__MsgData__OptionsEntry sync = OPENIM__SDKWS__MSG_DATA__OPTIONS_ENTRY__INIT;
    sync.key = "senderSync";
    sync.value = 0;
    Openim__Sdkws__MsgData__OptionsEntry *options[] = {&sync};
    Openim__Sdkws__MsgData md = OPENIM__SDKWS__MSG_DATA__INIT;
    Openim__Push__PushMsgReq req = OPENIM__PUSH__PUSH_MSG_REQ__INIT;
    static const char content[] = "{\"content\":\"hello\"}";
    char send[32], recv[32], cmid[48], smid[48], ex[24], conv[80], key[72];
    md.sendid = send;
    md.recvid = recv;
    md.clientmsgid = cmid;
    md.servermsgid = smid;
    md.senderplatformid = 1;
    md.sessiontype = 1;
    md.msgfrom = 100;
    md.contenttype = 101;
    md.content.data = (uint8_t *)content;
    md.content.len = sizeof(content) - 1;
    md.status = 1;
    md.n_options = 1;
    md.options = options;
    md.ex = ex;
    req.msgdata = &md;
    req.conversationid = conv;
    uint8_t buf[1024];
    long pid = (long)getpid();

    int64_t t0 = mono_us(), next_progress = t0 + o->progress_ms * 1000, last = t0;
    long long i = 0;
    while (!stop && (count <= 0 || i < count)) {
        int64_t now = mono_us();
        if (now - t0 >= limit_us) break;
        long long due =
            o->rate > 0 ? (long long)((double)(now - t0) * o->rate / 1e6) + 1 : i + 1000;
        if (count > 0 && due > count) due = count;
        while (i < due && !stop) {
            long r = (long)(i % o->users) + 1, s = (long)((i + 1) % o->users) + 1;
            snprintf(recv, sizeof(recv), "chat%ld", r);
            snprintf(send, sizeof(send), "chat%ld", s);
            const char *lo = strcmp(send, recv) < 0 ? send : recv;
            const char *hi = lo == send ? recv : send;
            int klen = snprintf(key, sizeof(key), "%s_%s", lo, hi);
            snprintf(conv, sizeof(conv), "si_%s", key);
            snprintf(cmid, sizeof(cmid), "lg-%ld-%lld", pid, i + 1);
            snprintf(smid, sizeof(smid), "lgs-%ld-%lld", pid, i + 1);
            md.seq = i + 1;
            int64_t ts = wall_us();
            md.sendtime = md.createtime = ts / 1000;
            snprintf(ex, sizeof(ex), "%" PRId64, ts);
            size_t len = openim__push__push_msg_req__pack(&req, buf);
            rd_kafka_resp_err_t err = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(o->topic), RD_KAFKA_V_KEY(key, (size_t)klen),
                RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_HEADER("operationID", cmid, -1), RD_KAFKA_V_HEADER("opUserID", send, -1),
                RD_KAFKA_V_HEADER("platform", "iOS", -1), RD_KAFKA_V_HEADER("connID", "c1", -1),
                RD_KAFKA_V_END);
            if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(rk, 10);
                continue;
            }
            if (err) {
                fprintf(stderr, "bench_loadgen: produce: %s\n", rd_kafka_err2str(err));
                stop = 1;
                break;
            }
            i++;
            last = mono_us();
        }
        rd_kafka_poll(rk, 0);
        now = mono_us();
        if (o->progress_ms > 0 && now >= next_progress) {
            printf("progress %lld %lld %llu\n", (long long)((now - t0) / 1000), i, delivered);
            fflush(stdout);
            while (next_progress <= now) next_progress += o->progress_ms * 1000;
        }
        if (o->rate > 0) {
            /* the next tick on the grid t0 + k × tick */
            int64_t k = (now - t0) / o->tick_us + 1;
            sleep_until_mono(t0 + k * o->tick_us);
        }
    }
    double secs = (double)(last - t0) / 1e6;
    rd_kafka_flush(rk, 30000);
    printf("progress %lld %lld %llu\n", (long long)((mono_us() - t0) / 1000), i, delivered);
    printf("produced %lld in %.3f s: %.0f msg/s (offered %.0f); delivered %llu, failed %llu\n", i,
           secs, secs > 0 ? (double)i / secs : 0, o->rate, delivered, failed);
    fflush(stdout);
    rd_kafka_destroy(rk);
    return failed || delivered != (unsigned long long)i ? 1 : 0;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    (void)opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (!assigned_at) assigned_at = mono_us();
        rd_kafka_assign(rk, parts);
    } else {
        rd_kafka_assign(rk, NULL);
    }
}

static int consume(const struct opts *o)
{
    char num[32], group[64];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    snprintf(group, sizeof(group), "loadgen-%ld", (long)getpid());
    snprintf(num, sizeof(num), "%ld", o->fetch_wait_ms);
    if (conf_set(conf, "bootstrap.servers", o->brokers) ||
        conf_set(conf, "group.id", o->group ? o->group : group) ||
        conf_set(conf, "auto.offset.reset", "earliest") ||
        conf_set(conf, "enable.auto.commit", "false") || conf_set(conf, "fetch.wait.max.ms", num))
        return 1;
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    char e[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
    if (!rk) {
        fprintf(stderr, "bench_loadgen: consumer: %s\n", e);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, o->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, t);
    rd_kafka_topic_partition_list_destroy(t);
    if (err) {
        fprintf(stderr, "bench_loadgen: subscribe: %s\n", rd_kafka_err2str(err));
        return 1;
    }
    long long n = 0;
    unsigned long long bytes = 0;
    int64_t first = 0, last = 0, start = mono_us();
    while (!stop && (o->count <= 0 || n < o->count)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        int64_t now = mono_us();
        if (!m) {
            if ((first && now - last > o->idle_ms * 1000) || (!first && now - start > 30000000))
                break;
            continue;
        }
        if (!m->err) {
            if (!first) first = now;
            last = now;
            n++;
            bytes += m->len;
        }
        rd_kafka_message_destroy(m);
    }
    double secs = (double)(last - first) / 1e6, asecs = (double)(last - assigned_at) / 1e6;
    printf("consumed %lld records (%llu bytes) in %.3f s: %.0f records/s (first record to last); "
           "%.3f s from the assignment: %.0f records/s; %.3f s from start to the first\n",
           n, bytes, secs, secs > 0 ? (double)(n - 1) / secs : 0, asecs,
           asecs > 0 ? (double)n / asecs : 0, (double)(first - start) / 1e6);
    fflush(stdout);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n > 0 ? 0 : 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_loadgen --brokers H:P [--topic T] [--rate N] [--count N | "
                    "--seconds S] [--users N] [--tick-us U] [--linger-ms L] [--progress-ms P]\n"
                    "       bench_loadgen --consume --brokers H:P [--topic T] [--count N] "
                    "[--group G] [--fetch-wait-ms W] [--idle-ms I]\n");
}

int main(int argc, char **argv)
{
    struct opts o = {.topic = "toPush",
                     .users = 1000,
                     .tick_us = 1000,
                     .linger_ms = 1,
                     .progress_ms = 100,
                     .fetch_wait_ms = 50,
                     .idle_ms = 2000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--consume") == 0) {
            o.consume = 1;
            continue;
        }
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (strcmp(a, "--brokers") == 0)
            o.brokers = v;
        else if (strcmp(a, "--topic") == 0)
            o.topic = v;
        else if (strcmp(a, "--group") == 0)
            o.group = v;
        else if (strcmp(a, "--rate") == 0)
            o.rate = atof(v);
        else if (strcmp(a, "--count") == 0)
            o.count = atoll(v);
        else if (strcmp(a, "--seconds") == 0)
            o.seconds = atof(v);
        else if (strcmp(a, "--users") == 0)
            o.users = atol(v);
        else if (strcmp(a, "--tick-us") == 0)
            o.tick_us = atol(v);
        else if (strcmp(a, "--linger-ms") == 0)
            o.linger_ms = atol(v);
        else if (strcmp(a, "--progress-ms") == 0)
            o.progress_ms = atol(v);
        else if (strcmp(a, "--fetch-wait-ms") == 0)
            o.fetch_wait_ms = atol(v);
        else if (strcmp(a, "--idle-ms") == 0)
            o.idle_ms = atol(v);
        else {
            usage();
            return 2;
        }
    }
    if (!o.brokers || o.users < 1 || o.tick_us < 1) {
        usage();
        return 2;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    return o.consume ? consume(&o) : produce(&o);
}

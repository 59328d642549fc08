/*
 * A blocking tool, not part of the daemon: plain librdkafka calls, one
 * producer and one consumer, no loop. Offsets are committed only after
 * the records before them were acknowledged by the target topic, so an
 * interrupted replay repeats a few records rather than losing any.
 *
 * Called by `impulse replay` (main.c) only.
 */
#include "daemon/replay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "net/kafka.h"

static const char *const original[4] = {"operationID", "opUserID", "platform", "connID"};

static int set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char e[256];
    if (rd_kafka_conf_set(conf, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "impulse replay: kafka setting %s: %s\n", k, e);
        return -1;
    }
    return 0;
}

/* The four original headers, in OpenIM's order, copied from h. */
static rd_kafka_headers_t *four_headers(rd_kafka_headers_t *h)
{
    rd_kafka_headers_t *out = rd_kafka_headers_new(4);
    for (int i = 0; i < 4; i++) {
        const void *v;
        size_t n;
        if (h && rd_kafka_header_get_last(h, original[i], &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR)
            rd_kafka_header_add(out, original[i], -1, v, (ssize_t)n);
    }
    return out;
}

static int delivery_err;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err && !delivery_err) delivery_err = m->err;
}

int imp_replay_run(const struct imp_config *cfg, const char *from, const char *to, long max)
{
    char err[512];
    rd_kafka_conf_t *pc = rd_kafka_conf_new(), *cc = rd_kafka_conf_new();
    rd_kafka_t *prod = NULL, *cons = NULL;
    long moved = 0;
    int rc = 1;
    int64_t *end = NULL;
    unsigned char *done = NULL;
    if (!from) from = cfg->dlq_push;

    if (imp_kafka_conf_common(pc, cfg, "impulse-replay", err, sizeof(err)) ||
        set(pc, "acks", "all") || set(pc, "partitioner", "fnv1a")) {
        fprintf(stderr, "impulse replay: %s\n", err);
        goto out;
    }
    rd_kafka_conf_set_dr_msg_cb(pc, on_delivery);
    if (imp_kafka_conf_common(cc, cfg, "impulse-replay", err, sizeof(err)) ||
        set(cc, "group.id", "impulse-replay") || set(cc, "enable.auto.commit", "false") ||
        set(cc, "auto.offset.reset", "earliest") || set(cc, "enable.partition.eof", "true") ||
        set(cc, "session.timeout.ms", "6000") || set(cc, "heartbeat.interval.ms", "1000")) {
        fprintf(stderr, "impulse replay: %s\n", err);
        goto out;
    }
    prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof(err));
    if (!prod) goto fail_new;
    pc = NULL;
    cons = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof(err));
    if (!cons) goto fail_new;
    cc = NULL;
    rd_kafka_poll_set_consumer(cons);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, from, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t se = rd_kafka_subscribe(cons, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (se) {
        fprintf(stderr, "impulse replay: subscribe to %s: %s\n", from, rd_kafka_err2str(se));
        goto out;
    }

    /* Replay what the topic holds now: stop each partition at its end as
     * of this moment, so a record that fails again and comes back to the
     * dead-letter topic is not replayed in a loop by this same run. */
    rd_kafka_resp_err_t me;
    int nparts = imp_kafka_partition_count(cons, from, 10000, &me);
    if (nparts < 0) {
        fprintf(stderr, "impulse replay: topic %s: %s\n", from, rd_kafka_err2str(me));
        goto out;
    }
    end = imp_xcalloc((size_t)nparts, sizeof(int64_t));
    done = imp_xcalloc((size_t)nparts, 1);
    int ndone = 0;
    for (int p = 0; p < nparts; p++) {
        int64_t low = 0, high = 0;
        if (rd_kafka_query_watermark_offsets(cons, from, p, &low, &high, 10000) != 0) high = 0;
        end[p] = high;
    }

    int idle = 0;
    while ((max < 0 || moved < max) && ndone < nparts) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 500);
        if (!m) {
            if (++idle > 60) { /* 30 s without a record or an assignment */
                fprintf(stderr, "impulse replay: nothing from %s for 30 s; stopping\n", from);
                break;
            }
            continue;
        }
        idle = 0;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF ||
            (!m->err && m->partition < nparts && m->offset >= end[m->partition])) {
            if (m->partition >= 0 && m->partition < nparts && !done[m->partition]) {
                done[m->partition] = 1;
                ndone++;
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err) {
            fprintf(stderr, "impulse replay: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            goto out;
        }
        rd_kafka_headers_t *h = NULL;
        rd_kafka_message_headers(m, &h);
        char target[256];
        const void *v;
        size_t n;
        if (to) {
            snprintf(target, sizeof(target), "%s", to);
        } else if (h && rd_kafka_header_get_last(h, "impulse-origin", &v, &n) == 0 && n > 0) {
            /* "<topic>/<partition>/<offset>" */
            const char *slash = memchr(v, '/', n);
            size_t tl = slash ? (size_t)(slash - (const char *)v) : n;
            snprintf(target, sizeof(target), "%.*s", (int)IMP_MIN(tl, sizeof(target) - 1),
                     (const char *)v);
        } else {
            snprintf(target, sizeof(target), "%s", cfg->topic_push);
        }
        rd_kafka_headers_t *out = four_headers(h);
        rd_kafka_resp_err_t pe = rd_kafka_producev(
            prod, RD_KAFKA_V_TOPIC(target), RD_KAFKA_V_KEY(m->key, m->key_len),
            RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(out), RD_KAFKA_V_END);
        if (pe) {
            rd_kafka_headers_destroy(out);
            fprintf(stderr, "impulse replay: produce to %s: %s\n", target, rd_kafka_err2str(pe));
            rd_kafka_message_destroy(m);
            goto out;
        }
        /* acknowledge before committing past it */
        rd_kafka_flush(prod, 30000);
        if (delivery_err) {
            fprintf(stderr, "impulse replay: delivery to %s failed: %s\n", target,
                    rd_kafka_err2str(delivery_err));
            rd_kafka_message_destroy(m);
            goto out;
        }
        rd_kafka_resp_err_t ce = rd_kafka_commit_message(cons, m, 0);
        if (ce) {
            fprintf(stderr,
                    "impulse replay: commit after %s[%d]@%lld failed: %s (it will be "
                    "replayed again next time)\n",
                    from, (int)m->partition, (long long)m->offset, rd_kafka_err2str(ce));
        }
        if (m->offset >= end[m->partition] - 1 && !done[m->partition]) {
            done[m->partition] = 1;
            ndone++;
        }
        rd_kafka_message_destroy(m);
        moved++;
    }
    printf("replayed %ld records from %s\n", moved, from);
    rc = 0;
    goto out;
fail_new:
    fprintf(stderr, "impulse replay: %s\n", err);
out:
    free(end);
    free(done);
    if (pc) rd_kafka_conf_destroy(pc);
    if (cc) rd_kafka_conf_destroy(cc);
    if (cons) {
        rd_kafka_consumer_close(cons);
        rd_kafka_destroy(cons);
    }
    if (prod) {
        rd_kafka_flush(prod, 10000);
        rd_kafka_destroy(prod);
    }
    return rc;
}

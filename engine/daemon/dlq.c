/*
 * A blocking tool like replay.c: one consumer that assigns itself every
 * partition from its beginning to its end as of the start (no group
 * offsets are read or committed), prints, and stops.
 */
#include "daemon/dlq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/common.h"
#include "net/kafka.h"

#define MAX_REASONS 32

struct reason {
    char name[64];
    long n;
};

static int header(rd_kafka_headers_t *h, const char *name, const char **v, size_t *n)
{
    const void *p = NULL;
    *v = "";
    *n = 0;
    if (!h || rd_kafka_header_get_last(h, name, &p, n) != RD_KAFKA_RESP_ERR_NO_ERROR || !p) {
        *n = 0;
        return -1;
    }
    *v = p;
    return 0;
}

static void count(struct reason *r, int *nr, const char *name, size_t len)
{
    if (!len) name = "(none)", len = 6;
    for (int i = 0; i < *nr; i++)
        if (strlen(r[i].name) == len && memcmp(r[i].name, name, len) == 0) {
            r[i].n++;
            return;
        }
    if (*nr == MAX_REASONS) return;
    snprintf(r[*nr].name, sizeof(r[*nr].name), "%.*s", (int)IMP_MIN(len, 63), name);
    r[(*nr)++].n = 1;
}

static void print_record(const rd_kafka_message_t *m, const char *topic, int json)
{
    rd_kafka_headers_t *h = NULL;
    rd_kafka_message_headers(m, &h);
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    char when[32] = "-";
    if (ts > 0) {
        time_t s = (time_t)(ts / 1000);
        struct tm tm;
        gmtime_r(&s, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    static const char *const names[] = {"impulse-reason", "impulse-error", "impulse-origin",
                                        "operationID",    "opUserID",      "impulse-truncated",
                                        "impulse-spool"};
    const char *v[7];
    size_t n[7];
    for (int i = 0; i < 7; i++) header(h, names[i], &v[i], &n[i]);
    struct imp_buf b;
    imp_buf_init(&b);
    if (json) {
        imp_buf_puts(&b, "{\"record\":");
        char rec[300];
        snprintf(rec, sizeof(rec), "%s[%d]@%lld", topic, (int)m->partition, (long long)m->offset);
        imp_buf_json_cstr(&b, rec);
        imp_buf_puts(&b, ",\"time\":");
        imp_buf_json_cstr(&b, when);
        static const char *const keys[] = {"reason",   "error",     "origin", "operationID",
                                           "opUserID", "truncated", "spool"};
        for (int i = 0; i < 7; i++) {
            if (!n[i] && i >= 5) continue;
            imp_buf_printf(&b, ",\"%s\":", keys[i]);
            imp_buf_json_str(&b, v[i], n[i]);
        }
        imp_buf_puts(&b, ",\"key\":");
        imp_buf_json_str(&b, m->key ? m->key : "", m->key ? m->key_len : 0);
        imp_buf_printf(&b, ",\"bytes\":%zu}\n", m->len);
    } else {
        imp_buf_printf(
            &b, "%s[%d]@%lld  %s  %.*s  from %.*s  op %.*s  key %.*s  %zu bytes%s\n    %.*s\n",
            topic, (int)m->partition, (long long)m->offset, when, (int)(n[0] ? n[0] : 6),
            n[0] ? v[0] : "(none)", (int)(n[2] ? n[2] : 1), n[2] ? v[2] : "?",
            (int)(n[3] ? n[3] : 1), n[3] ? v[3] : "-", (int)(m->key ? m->key_len : 1),
            m->key ? (const char *)m->key : "-", m->len, n[5] ? " (cut; whole record spooled)" : "",
            (int)IMP_MIN(n[1], 400), v[1]);
    }
    fwrite(b.data, 1, b.len, stdout);
    imp_buf_dispose(&b);
}

int imp_dlq_list(const struct imp_config *cfg, const char *from, long max, int json)
{
    char err[512];
    rd_kafka_conf_t *cc = rd_kafka_conf_new();
    rd_kafka_t *cons = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    int64_t *end = NULL;
    int rc = 1;
    if (!from) from = cfg->dlq_push;
    if (imp_kafka_conf_common(cc, cfg, "impulse-dlq", err, sizeof(err)) ||
        rd_kafka_conf_set(cc, "group.id", "impulse-dlq-ls", err, sizeof(err)) ||
        rd_kafka_conf_set(cc, "enable.auto.commit", "false", err, sizeof(err)) ||
        rd_kafka_conf_set(cc, "enable.auto.offset.store", "false", err, sizeof(err))) {
        fprintf(stderr, "impulse dlq: %s\n", err);
        rd_kafka_conf_destroy(cc);
        return 1;
    }
    cons = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof(err));
    if (!cons) {
        fprintf(stderr, "impulse dlq: %s\n", err);
        rd_kafka_conf_destroy(cc);
        return 1;
    }
    rd_kafka_resp_err_t me;
    int nparts = imp_kafka_partition_count(cons, from, 10000, &me);
    if (nparts < 0) {
        fprintf(stderr, "impulse dlq: topic %s: %s\n", from, rd_kafka_err2str(me));
        goto out;
    }
    end = imp_xcalloc((size_t)nparts + 1, sizeof(int64_t));
    parts = rd_kafka_topic_partition_list_new(nparts ? nparts : 1);
    long total = 0, want = 0;
    for (int p = 0; p < nparts; p++) {
        int64_t low = 0, high = 0;
        if (rd_kafka_query_watermark_offsets(cons, from, p, &low, &high, 10000) != 0) continue;
        end[p] = high;
        if (high > low) {
            rd_kafka_topic_partition_list_add(parts, from, p)->offset = low;
            want += high - low;
        }
    }
    struct reason reasons[MAX_REASONS];
    int nr = 0, left = parts->cnt;
    if (left && rd_kafka_assign(cons, parts) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "impulse dlq: cannot read %s\n", from);
        goto out;
    }
    int idle = 0;
    while (left > 0 && (max < 0 || total < max)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 500);
        if (!m) {
            if (++idle > 60) {
                fprintf(stderr, "impulse dlq: nothing from %s for 30 s; stopping\n", from);
                break;
            }
            continue;
        }
        idle = 0;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "impulse dlq: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->partition >= 0 && m->partition < nparts && m->offset < end[m->partition]) {
            print_record(m, from, json);
            rd_kafka_headers_t *h = NULL;
            rd_kafka_message_headers(m, &h);
            const char *v;
            size_t n;
            header(h, "impulse-reason", &v, &n);
            count(reasons, &nr, v, n);
            total++;
            if (m->offset + 1 >= end[m->partition]) left--;
        }
        rd_kafka_message_destroy(m);
    }
    if (!json) {
        printf("%ld dead letter%s in %s", total, total == 1 ? "" : "s", from);
        if (total < want) printf(" (of %ld)", want);
        for (int i = 0; i < nr; i++)
            printf("%s%s %ld", i ? ", " : " (by reason: ", reasons[i].name, reasons[i].n);
        printf("%s\n", nr ? ")" : "");
    }
    rc = 0;
out:
    if (parts) rd_kafka_topic_partition_list_destroy(parts);
    free(end);
    rd_kafka_consumer_close(cons);
    rd_kafka_destroy(cons);
    return rc;
}

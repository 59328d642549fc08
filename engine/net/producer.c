/*
 * Producer glue. Delivery reports are served by rd_kafka_poll on the loop
 * thread (the dr_msg_cb runs inside it), so callbacks never race the
 * worker. Each record carries a small request as its opaque.
 *
 * One producer per worker (push/worker.c); the blocking topic listing is
 * for `impulse check` only.
 */
#include "net/producer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/common.h"
#include "base/log.h"
#include "net/kafka.h"

struct imp_producer {
    struct ev_loop *loop;
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    struct imp_kafka_wakeup wake;
    int pending;
};

struct req {
    imp_produce_cb cb;
    void *arg;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct imp_producer *p = opaque;
    struct req *r = m->_private;
    p->pending--;
    if (r) {
        r->cb(r->arg, m->err, m->err ? rd_kafka_err2str(m->err) : "");
        free(r);
    }
}

/* The main queue holds the delivery reports: poll serves them. */
static void serve(void *arg)
{
    struct imp_producer *p = arg;
    rd_kafka_poll(p->rk, 0);
}

struct imp_producer *imp_producer_create(struct ev_loop *loop, const struct imp_config *cfg,
                                         const char *client_id, char *err, size_t errlen)
{
    struct imp_producer *p = imp_xcalloc(1, sizeof(*p));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char e[512];
    p->wake.fd[0] = p->wake.fd[1] = -1;
    if (imp_kafka_conf_common(conf, cfg, client_id, err, errlen) ||
        imp_kafka_conf_set(conf, "acks", "all", err, errlen) ||
        imp_kafka_conf_set(conf, "partitioner", "fnv1a", err, errlen) ||
        imp_kafka_conf_set(conf, "message.max.bytes", "1000000", err, errlen) ||
        imp_kafka_conf_set(conf, "linger.ms", "2", err, errlen) ||
        imp_kafka_conf_set(conf, "message.timeout.ms", "30000", err, errlen))
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
    if (!p->rk) {
        snprintf(err, errlen, "kafka: cannot create a producer: %s", e);
        goto fail;
    }
    conf = NULL;
    p->q = rd_kafka_queue_get_main(p->rk);
    if (imp_kafka_wakeup_init(&p->wake, loop, p->q, 0.5, serve, p, err, errlen)) goto fail;
    p->loop = loop;
    imp_kafka_wakeup_start(&p->wake);
    return p;
fail:
    if (conf) rd_kafka_conf_destroy(conf);
    if (p->q) rd_kafka_queue_destroy(p->q);
    if (p->rk) rd_kafka_destroy(p->rk);
    imp_kafka_wakeup_dispose(&p->wake);
    free(p);
    return NULL;
}

int imp_producer_send(struct imp_producer *p, const char *topic, const void *key, size_t klen,
                      const void *value, size_t vlen, rd_kafka_headers_t *headers,
                      imp_produce_cb cb, void *arg)
{
    struct req *r = imp_xmalloc(sizeof(*r));
    r->cb = cb;
    r->arg = arg;
    rd_kafka_vu_t vus[5];
    size_t n = 0;
    vus[n].vtype = RD_KAFKA_VTYPE_TOPIC;
    vus[n++].u.cstr = topic;
    vus[n].vtype = RD_KAFKA_VTYPE_KEY;
    vus[n].u.mem.ptr = (void *)key;
    vus[n++].u.mem.size = klen;
    vus[n].vtype = RD_KAFKA_VTYPE_VALUE;
    vus[n].u.mem.ptr = (void *)value;
    vus[n++].u.mem.size = vlen;
    vus[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vus[n++].u.i = RD_KAFKA_MSG_F_COPY;
    vus[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
    vus[n++].u.ptr = r;
    rd_kafka_vu_t all[6];
    memcpy(all, vus, sizeof(vus));
    size_t cnt = n;
    if (headers) {
        all[cnt].vtype = RD_KAFKA_VTYPE_HEADERS;
        all[cnt++].u.headers = headers;
    }
    rd_kafka_error_t *e = rd_kafka_produceva(p->rk, all, cnt);
    if (e) {
        int code = rd_kafka_error_code(e);
        rd_kafka_error_destroy(e);
        free(r);
        return code ? code : -1;
    }
    p->pending++;
    return 0;
}

int imp_producer_pending(const struct imp_producer *p) { return p->pending; }

void imp_producer_destroy(struct imp_producer *p, int timeout_ms)
{
    if (!p) return;
    rd_kafka_flush(p->rk, timeout_ms); /* serves delivery reports */
    /* what is still queued or in flight (a broker down, a record refused
     * and retried) fails now, its report served here, so rd_kafka_destroy
     * never waits for it */
    if (rd_kafka_outq_len(p->rk) > 0) {
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(p->rk, 1000);
    }
    imp_kafka_wakeup_stop(&p->wake);
    rd_kafka_queue_destroy(p->q);
    rd_kafka_destroy(p->rk);
    imp_kafka_wakeup_dispose(&p->wake);
    free(p);
}

int imp_kafka_list_topics(const struct imp_config *cfg, int timeout_ms,
                          void (*fn)(void *ud, const char *topic), void *ud, char *errstr,
                          size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char e[512];
    if (imp_kafka_conf_common(conf, cfg, "impulse-check", errstr, errlen)) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
    if (!rk) {
        snprintf(errstr, errlen, "%s", e);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t rc = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    if (rc) {
        snprintf(errstr, errlen, "%s", rd_kafka_err2str(rc));
    } else {
        for (int i = 0; i < md->topic_cnt; i++) fn(ud, md->topics[i].topic);
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_destroy(rk);
    return rc;
}

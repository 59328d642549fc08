/*
 * librdkafka consumer glue. All callbacks (rebalance, messages) run on the
 * worker thread inside rd_kafka_consumer_poll, so the trackers need no lock.
 * Trackers live in an array indexed by partition and are rebuilt on every
 * assignment with a new generation number.
 *
 * One consumer per worker and topic (push/worker.c); never blocks the
 * loop: polls are non-blocking, woken by the queue's IO event.
 *
 * Lag: at most once a second each assigned partition's
 * impulse_consumer_lag{topic,partition} gauge is set to the high watermark
 * librdkafka last saw in a fetch reply (no request of its own) minus the
 * offset impulse would commit, so records fetched but not yet handled
 * count as lag. A partition's gauge is its owner's alone (one member of
 * the group holds it); revoked partitions are set to 0.
 */
#include "net/kafka.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/common.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/offsets.h"

struct imp_consumer {
    struct ev_loop *loop;
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    char *topic;
    struct imp_consumer_handler h;
    struct imp_kafka_wakeup wake;
    uint32_t gen;
    int32_t ntrack;
    struct imp_offsets *track; /* by partition; NULL entries unassigned */
    int *assigned_flag;
    int64_t *next;           /* by partition: offset to commit, -1 unknown */
    struct imp_metric **lag; /* by partition: the lag gauge, NULL until set */
    uint64_t lag_at_ms;
    int nassigned;
    int paused;       /* the partitions are paused in librdkafka */
    int held;         /* not polled: maxInflight reached */
    uint64_t held_at; /* since when, ms */
    int stopping;
};

/* A hold longer than this becomes a pause in librdkafka, so that
 * rebalances and errors are served again (a pause drops the prefetched
 * records, which are fetched again on resume: costly, hence the hold). */
#define HOLD_MAX_MS 3000

static void kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    int l = level <= LOG_ERR       ? IMP_LOG_ERROR
            : level <= LOG_WARNING ? IMP_LOG_WARN
            : level <= LOG_INFO    ? IMP_LOG_INFO
                                   : IMP_LOG_DEBUG;
    imp_log(l, NULL, "kafka %s: %s", fac, buf);
}

static void kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    (void)opaque;
    imp_warn(NULL, "kafka: %s: %s", rd_kafka_err2name(err), reason);
    imp_metrics_inc("impulse_kafka_errors_total", NULL, 1);
}

int imp_kafka_conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *err,
                       size_t errlen)
{
    char e[256];
    if (rd_kafka_conf_set(conf, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "kafka setting %s: %s", k, e);
        return IMP_EINVAL;
    }
    return 0;
}

int imp_kafka_conf_common(rd_kafka_conf_t *conf, const struct imp_config *cfg,
                          const char *client_id, char *err, size_t errlen)
{
    struct imp_buf brokers;
    int rc = 0;
    imp_buf_init(&brokers);
    for (size_t i = 0; i < cfg->kafka_addrs.n; i++) {
        if (i) imp_buf_putc(&brokers, ',');
        imp_buf_puts(&brokers, cfg->kafka_addrs.v[i]);
    }
    int sasl = cfg->kafka_username[0] || cfg->kafka_password[0];
    const char *proto = sasl ? (cfg->kafka_tls ? "sasl_ssl" : "sasl_plaintext")
                             : (cfg->kafka_tls ? "ssl" : "plaintext");
    if ((rc = imp_kafka_conf_set(conf, "bootstrap.servers", brokers.data, err, errlen)) ||
        (rc = imp_kafka_conf_set(conf, "client.id", client_id, err, errlen)) ||
        (rc = imp_kafka_conf_set(conf, "security.protocol", proto, err, errlen)))
        goto out;
    if (sasl &&
        ((rc = imp_kafka_conf_set(conf, "sasl.mechanisms", "PLAIN", err, errlen)) ||
         (rc = imp_kafka_conf_set(conf, "sasl.username", cfg->kafka_username, err, errlen)) ||
         (rc = imp_kafka_conf_set(conf, "sasl.password", cfg->kafka_password, err, errlen))))
        goto out;
    if (cfg->kafka_tls) {
        if (cfg->kafka_tls_ca[0] &&
            (rc = imp_kafka_conf_set(conf, "ssl.ca.location", cfg->kafka_tls_ca, err, errlen)))
            goto out;
        if (cfg->kafka_tls_cert[0] && (rc = imp_kafka_conf_set(conf, "ssl.certificate.location",
                                                               cfg->kafka_tls_cert, err, errlen)))
            goto out;
        if (cfg->kafka_tls_key[0] &&
            (rc = imp_kafka_conf_set(conf, "ssl.key.location", cfg->kafka_tls_key, err, errlen)))
            goto out;
        if (cfg->kafka_tls_key_password[0] &&
            (rc = imp_kafka_conf_set(conf, "ssl.key.password", cfg->kafka_tls_key_password, err,
                                     errlen)))
            goto out;
        if (cfg->kafka_tls_insecure &&
            (rc = imp_kafka_conf_set(conf, "enable.ssl.certificate.verification", "false", err,
                                     errlen)))
            goto out;
    }
    rd_kafka_conf_set_log_cb(conf, kafka_log);
    rd_kafka_conf_set_error_cb(conf, kafka_error);
out:
    imp_buf_dispose(&brokers);
    return rc;
}

static void drop_trackers(struct imp_consumer *c)
{
    for (int32_t i = 0; i < c->ntrack; i++) {
        if (c->assigned_flag[i]) imp_offsets_dispose(&c->track[i]);
        if (c->lag[i]) imp_metric_set(c->lag[i], 0); /* no longer ours */
    }
    free(c->track);
    free(c->assigned_flag);
    free(c->next);
    free(c->lag);
    c->track = NULL;
    c->assigned_flag = NULL;
    c->next = NULL;
    c->lag = NULL;
    c->ntrack = 0;
    c->nassigned = 0;
}

static void pause_all(struct imp_consumer *c, int pause)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(c->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR || !parts) return;
    if (parts->cnt) {
        if (pause)
            rd_kafka_pause_partitions(c->rk, parts);
        else
            rd_kafka_resume_partitions(c->rk, parts);
    }
    rd_kafka_topic_partition_list_destroy(parts);
}

static void rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct imp_consumer *c = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        drop_trackers(c);
        c->gen++;
        int32_t maxp = -1;
        for (int i = 0; i < parts->cnt; i++)
            if (parts->elems[i].partition > maxp) maxp = parts->elems[i].partition;
        c->ntrack = maxp + 1;
        c->track = imp_xcalloc((size_t)(c->ntrack ? c->ntrack : 1), sizeof(*c->track));
        c->assigned_flag = imp_xcalloc((size_t)(c->ntrack ? c->ntrack : 1), sizeof(int));
        c->next = imp_xcalloc((size_t)(c->ntrack ? c->ntrack : 1), sizeof(*c->next));
        c->lag = imp_xcalloc((size_t)(c->ntrack ? c->ntrack : 1), sizeof(*c->lag));
        for (int32_t i = 0; i < c->ntrack; i++) c->next[i] = -1;
        c->lag_at_ms = 0; /* report the new partitions at the next poll */
        for (int i = 0; i < parts->cnt; i++) {
            imp_offsets_init(&c->track[parts->elems[i].partition]);
            c->assigned_flag[parts->elems[i].partition] = 1;
        }
        c->nassigned = parts->cnt;
        rd_kafka_assign(rk, parts);
        if (c->paused && parts->cnt) rd_kafka_pause_partitions(rk, parts);
        struct imp_buf b;
        imp_buf_init(&b);
        imp_buf_puts(&b, "\"topic\":");
        imp_buf_json_cstr(&b, c->topic);
        imp_buf_puts(&b, ",\"partitions\":[");
        for (int i = 0; i < parts->cnt; i++)
            imp_buf_printf(&b, "%s%d", i ? "," : "", (int)parts->elems[i].partition);
        imp_buf_putc(&b, ']');
        imp_log_fields(IMP_LOG_INFO, NULL, "partitions assigned", b.data);
        imp_buf_dispose(&b);
        if (c->h.assigned) c->h.assigned(c->h.arg, parts->cnt);
    } else {
        if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
            /* Commit what is stored before the partitions go to another
             * member; unfinished messages will replay there. */
            rd_kafka_resp_err_t ce = rd_kafka_commit(rk, NULL, 0);
            if (ce && ce != RD_KAFKA_RESP_ERR__NO_OFFSET)
                imp_warn(NULL, "kafka: commit on revoke failed: %s", rd_kafka_err2str(ce));
            imp_info(NULL, "kafka: %d partitions of %s revoked", parts->cnt, c->topic);
        } else {
            imp_warn(NULL, "kafka: rebalance error: %s", rd_kafka_err2str(err));
        }
        drop_trackers(c);
        c->gen++;
        rd_kafka_assign(rk, NULL);
    }
}

static void handle(struct imp_consumer *c, rd_kafka_message_t *m)
{
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            imp_warn(NULL, "kafka consumer: %s", rd_kafka_message_errstr(m));
            imp_metrics_inc("impulse_kafka_errors_total", NULL, 1);
        }
        rd_kafka_message_destroy(m);
        return;
    }
    int32_t p = m->partition;
    if (c->stopping || p < 0 || p >= c->ntrack || !c->assigned_flag[p]) {
        rd_kafka_message_destroy(m);
        return;
    }
    struct imp_msgref ref = {p, c->gen, 0};
    if (c->next[p] < 0) c->next[p] = m->offset;
    if (imp_offsets_add(&c->track[p], m->offset, &ref.seq) != 0) {
        /* Already tracked in this assignment: a refetch after pause. */
        imp_debug(NULL, "kafka: redelivered %s[%d]@%lld ignored", c->topic, (int)p,
                  (long long)m->offset);
        rd_kafka_message_destroy(m);
        return;
    }
    c->h.message(c->h.arg, m, ref);
}

/* Sets each assigned partition's lag gauge (see the top). Before the
 * partition's first record the fetch position stands for the offset to
 * commit; a partition with neither that nor a high watermark is skipped. */
static void report_lag(struct imp_consumer *c)
{
    if (!c->nassigned) return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(c->nassigned);
    for (int32_t p = 0; p < c->ntrack; p++)
        if (c->assigned_flag[p]) rd_kafka_topic_partition_list_add(l, c->topic, p);
    if (rd_kafka_position(c->rk, l) != RD_KAFKA_RESP_ERR_NO_ERROR) goto done;
    for (int i = 0; i < l->cnt; i++) {
        int32_t p = l->elems[i].partition;
        int64_t lo, hi, at = c->next[p] >= 0 ? c->next[p] : l->elems[i].offset;
        if (at < 0 || rd_kafka_get_watermark_offsets(c->rk, c->topic, p, &lo, &hi) || hi < 0)
            continue;
        if (!c->lag[p]) {
            char labels[160];
            snprintf(labels, sizeof(labels), "topic=\"%s\",partition=\"%d\"", c->topic, (int)p);
            c->lag[p] = imp_metrics_gauge("impulse_consumer_lag", labels,
                                          "Records of the partition not yet handled");
        }
        imp_metric_set(c->lag[p], hi > at ? hi - at : 0);
    }
done:
    rd_kafka_topic_partition_list_destroy(l);
}

static void drain(struct imp_consumer *c)
{
    rd_kafka_message_t *m;
    if (c->held) {
        if (imp_now_ms() - c->held_at < HOLD_MAX_MS) return;
        c->held = 0; /* held too long: paused, and polled for the group's events */
        if (!c->paused) {
            c->paused = 1;
            pause_all(c, 1);
        }
    }
    while (c->rk && !c->held && (m = rd_kafka_consumer_poll(c->rk, 0))) handle(c, m);
    uint64_t now = imp_now_ms();
    if (c->rk && !c->stopping && now - c->lag_at_ms >= 1000) {
        c->lag_at_ms = now;
        report_lag(c);
    }
}

static void serve(void *arg) { drain(arg); }

static void on_wake_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct imp_kafka_wakeup *k = w->data;
    char buf[64];
    while (read(k->fd[0], buf, sizeof(buf)) > 0) {}
    k->serve(k->arg);
}

static void on_wake_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct imp_kafka_wakeup *k = t->data;
    k->serve(k->arg);
}

int imp_kafka_wakeup_init(struct imp_kafka_wakeup *k, struct ev_loop *loop, rd_kafka_queue_t *q,
                          double tick_s, void (*serve_fn)(void *), void *arg, char *err,
                          size_t errlen)
{
    k->loop = loop;
    k->serve = serve_fn;
    k->arg = arg;
    if (pipe2(k->fd, O_NONBLOCK | O_CLOEXEC) != 0) {
        k->fd[0] = k->fd[1] = -1;
        snprintf(err, errlen, "kafka: pipe: %s", strerror(errno));
        return IMP_EIO;
    }
    rd_kafka_queue_io_event_enable(q, k->fd[1], "1", 1);
    ev_io_init(&k->io, on_wake_io, k->fd[0], EV_READ);
    k->io.data = k;
    ev_timer_init(&k->tick, on_wake_tick, tick_s, tick_s);
    k->tick.data = k;
    return 0;
}

void imp_kafka_wakeup_start(struct imp_kafka_wakeup *k)
{
    ev_io_start(k->loop, &k->io);
    ev_timer_start(k->loop, &k->tick);
}

void imp_kafka_wakeup_stop(struct imp_kafka_wakeup *k)
{
    if (!k->loop) return;
    ev_io_stop(k->loop, &k->io);
    ev_timer_stop(k->loop, &k->tick);
}

void imp_kafka_wakeup_dispose(struct imp_kafka_wakeup *k)
{
    imp_kafka_wakeup_stop(k);
    if (k->fd[0] >= 0) close(k->fd[0]);
    if (k->fd[1] >= 0) close(k->fd[1]);
    k->fd[0] = k->fd[1] = -1;
}

struct imp_consumer *imp_consumer_create(struct ev_loop *loop, const struct imp_config *cfg,
                                         const char *topic, const char *group,
                                         const char *client_id,
                                         const struct imp_consumer_handler *h, char *err,
                                         size_t errlen)
{
    char num[32];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    struct imp_consumer *c = imp_xcalloc(1, sizeof(*c));
    c->wake.fd[0] = c->wake.fd[1] = -1;
    if (imp_kafka_conf_common(conf, cfg, client_id, err, errlen) ||
        imp_kafka_conf_set(conf, "group.id", group, err, errlen) ||
        imp_kafka_conf_set(conf, "partition.assignment.strategy", "range", err, errlen) ||
        imp_kafka_conf_set(conf, "enable.auto.commit", "true", err, errlen) ||
        imp_kafka_conf_set(conf, "enable.auto.offset.store", "false", err, errlen) ||
        imp_kafka_conf_set(conf, "auto.offset.reset", cfg->auto_offset_reset, err, errlen) ||
        imp_kafka_conf_set(conf, "enable.partition.eof", "false", err, errlen) || 0)
        goto fail;
    /* a push is latency-bound: an idle fetch must not wait librdkafka's 500 ms */
    snprintf(num, sizeof(num), "%d", cfg->fetch_wait_ms);
    if (imp_kafka_conf_set(conf, "fetch.wait.max.ms", num, err, errlen)) goto fail;
    snprintf(num, sizeof(num), "%d", cfg->commit_interval_ms);
    if (imp_kafka_conf_set(conf, "auto.commit.interval.ms", num, err, errlen)) goto fail;
    snprintf(num, sizeof(num), "%d", cfg->session_timeout_ms);
    if (imp_kafka_conf_set(conf, "session.timeout.ms", num, err, errlen)) goto fail;
    snprintf(num, sizeof(num), "%d", cfg->heartbeat_interval_ms);
    if (imp_kafka_conf_set(conf, "heartbeat.interval.ms", num, err, errlen)) goto fail;
    rd_kafka_conf_set_rebalance_cb(conf, rebalance);
    rd_kafka_conf_set_opaque(conf, c);

    char e[512];
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
    if (!c->rk) {
        snprintf(err, errlen, "kafka: cannot create consumer: %s", e);
        goto fail;
    }
    conf = NULL; /* owned by rk now */
    rd_kafka_poll_set_consumer(c->rk);
    c->q = rd_kafka_queue_get_consumer(c->rk);
    if (imp_kafka_wakeup_init(&c->wake, loop, c->q, 0.2, serve, c, err, errlen)) goto fail;
    c->loop = loop;
    c->topic = imp_xstrdup(topic);
    c->h = *h;
    return c;
fail:
    if (conf) rd_kafka_conf_destroy(conf);
    if (c->q) rd_kafka_queue_destroy(c->q);
    if (c->rk) rd_kafka_destroy(c->rk);
    imp_kafka_wakeup_dispose(&c->wake);
    free(c);
    return NULL;
}

int imp_consumer_start(struct imp_consumer *c, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, c->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, t);
    rd_kafka_topic_partition_list_destroy(t);
    if (e) {
        snprintf(err, errlen, "kafka: subscribe to %s: %s", c->topic, rd_kafka_err2str(e));
        return IMP_EIO;
    }
    imp_kafka_wakeup_start(&c->wake);
    drain(c);
    return 0;
}

void imp_consumer_done(struct imp_consumer *c, struct imp_msgref ref)
{
    if (ref.gen != c->gen || ref.partition >= c->ntrack || !c->assigned_flag[ref.partition]) return;
    int64_t next = imp_offsets_done(&c->track[ref.partition], ref.seq);
    if (next < 0) return;
    c->next[ref.partition] = next;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, c->topic, ref.partition)->offset = next;
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(c->rk, l);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) e = l->elems[0].err;
    if (e)
        imp_warn(NULL, "kafka: storing offset %lld of %s[%d]: %s", (long long)next, c->topic,
                 (int)ref.partition, rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
}

void imp_consumer_pause(struct imp_consumer *c)
{
    if (c->paused || c->held) return;
    c->held = 1;
    c->held_at = imp_now_ms();
    imp_metrics_inc("impulse_consumer_pauses_total", NULL, 1);
}

void imp_consumer_resume(struct imp_consumer *c)
{
    if ((!c->paused && !c->held) || c->stopping) return;
    c->held = 0;
    if (c->paused) {
        c->paused = 0;
        pause_all(c, 0);
    }
    /* what waits in the queue raised no wake-up while it was not polled:
     * poll on the loop's next turn */
    if (c->wake.fd[1] >= 0 && write(c->wake.fd[1], "1", 1) < 0) {
        /* the pipe is full: a wake-up is pending anyway */
    }
}

int imp_consumer_paused(const struct imp_consumer *c) { return c->paused || c->held; }
int imp_consumer_assigned(const struct imp_consumer *c) { return c->nassigned; }

int imp_consumer_current(const struct imp_consumer *c, struct imp_msgref ref)
{
    return ref.gen == c->gen && ref.partition >= 0 && ref.partition < c->ntrack &&
           c->assigned_flag[ref.partition];
}

void imp_consumer_stop_fetching(struct imp_consumer *c)
{
    c->stopping = 1;
    c->held = 0;
    if (!c->paused) {
        c->paused = 1;
        pause_all(c, 1);
    }
}

int imp_consumer_commit(struct imp_consumer *c)
{
    rd_kafka_resp_err_t e = rd_kafka_commit(c->rk, NULL, 0);
    if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        imp_warn(NULL, "kafka: commit of %s failed: %s", c->topic, rd_kafka_err2str(e));
        return IMP_EIO;
    }
    return 0;
}

void imp_consumer_close(struct imp_consumer *c)
{
    if (!c) return;
    imp_kafka_wakeup_stop(&c->wake);
    c->stopping = 1;
    rd_kafka_consumer_close(c->rk);
    rd_kafka_queue_destroy(c->q);
    rd_kafka_destroy(c->rk);
    c->rk = NULL;
    drop_trackers(c);
    imp_kafka_wakeup_dispose(&c->wake);
    free(c->topic);
    free(c);
}

int imp_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms,
                              rd_kafka_resp_err_t *err)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    rd_kafka_topic_destroy(rkt);
    if (!e && md->topic_cnt != 1) e = RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
    if (!e) e = md->topics[0].err;
    int n = e ? -1 : md->topics[0].partition_cnt;
    if (md) rd_kafka_metadata_destroy(md);
    *err = e;
    return n;
}

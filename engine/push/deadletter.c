/*
 * Dead letters. A record that failed (bad record, script error, route or
 * push failure, budget, memory) is produced, unchanged and with its
 * headers, to its stream's dead-letter topic with impulse-reason,
 * impulse-error and impulse-origin added; its offset is stored only once
 * the broker acknowledges, and a refused or failed produce is retried
 * with backoff, so nothing is lost. core.offline_dead_letter writes only
 * the users of a toOfflinePush record whose sends failed for good.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/common.h"
#include "base/log.h"
#include "base/metrics.h"
#include "net/producer.h"
#include "push/worker_int.h"
#include "script/vm.h"

struct dead {
    ev_timer retry;
    struct imp_worker *w;
    struct stream *s;
    struct imp_msgref ref;
    rd_kafka_message_t *rkm; /* the original record */
    const char *reason;
    char *error;
    int attempts;
};

static void dead_send(struct dead *d);

static void dead_free(struct dead *d)
{
    struct imp_worker *w = d->w;
    rd_kafka_message_destroy(d->rkm);
    free(d->error);
    free(d);
    w->dead_pending--;
    imp_worker_maybe_finish(w);
}

static void on_dead_ack(void *arg, int err, const char *errstr)
{
    struct dead *d = arg;
    struct imp_worker *w = d->w;
    struct stream *s = d->s;
    char labels[128];
    if (err) {
        int delay = d->attempts < 6 ? 500 << d->attempts : 30000;
        imp_warn(NULL,
                 "dead letter to %s failed (%s); retrying in %d ms; the offset of "
                 "%s[%d]@%lld waits",
                 s->dlq, errstr, delay, s->topic, (int)d->ref.partition, (long long)d->rkm->offset);
        snprintf(labels, sizeof(labels), "topic=\"%s\",result=\"retry\"", s->dlq);
        imp_metrics_inc("impulse_dead_letters_total", labels, 1);
        ev_timer_set(&d->retry, delay / 1000.0, 0.);
        ev_timer_start(w->loop, &d->retry);
        return;
    }
    snprintf(labels, sizeof(labels), "topic=\"%s\",result=\"ok\"", s->dlq);
    imp_metrics_inc("impulse_dead_letters_total", labels, 1);
    if (s->consumer) imp_consumer_done(s->consumer, d->ref);
    dead_free(d);
}

static void on_dead_retry(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    dead_send((struct dead *)tm);
}

static void dead_send(struct dead *d)
{
    struct imp_worker *w = d->w;
    rd_kafka_headers_t *orig = NULL, *h;
    char origin[512];
    d->attempts++;
    /* the original headers, in order, then the failure (DLQ only: a fifth
     * header on a topic openim-push reads would crash it) */
    if (rd_kafka_message_headers(d->rkm, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR && orig)
        h = rd_kafka_headers_copy(orig);
    else
        h = rd_kafka_headers_new(4);
    snprintf(origin, sizeof(origin), "%s/%d/%lld", d->s->topic, (int)d->ref.partition,
             (long long)d->rkm->offset);
    rd_kafka_header_add(h, "impulse-reason", -1, d->reason, -1);
    rd_kafka_header_add(h, "impulse-error", -1, d->error, (ssize_t)IMP_MIN(strlen(d->error), 4000));
    rd_kafka_header_add(h, "impulse-origin", -1, origin, -1);
    int rc = w->host.producer
                 ? imp_producer_send(w->host.producer, d->s->dlq, d->rkm->key, d->rkm->key_len,
                                     d->rkm->payload, d->rkm->len, h, on_dead_ack, d)
                 : -1;
    if (rc != 0) {
        rd_kafka_headers_destroy(h);
        on_dead_ack(d, rc ? rc : -1, w->host.producer ? rd_kafka_err2str(rc) : "no producer");
    }
}

/* Sends the failed message t to the dead-letter topic; its offset is
 * stored only once the dead letter is acknowledged (task_done skips it). */
void imp_deadletter_record(struct msg *t)
{
    struct imp_worker *w = t->w;
    if (!t->fail_reason || !t->rkm) return;
    struct dead *d = imp_xcalloc(1, sizeof(*d));
    d->w = w;
    d->s = t->s;
    d->ref = t->ref;
    d->rkm = t->rkm;
    t->rkm = NULL; /* the dead letter owns the record now */
    d->reason = t->fail_reason;
    d->error = imp_xstrdup(t->fail_error ? t->fail_error : "");
    ev_timer_init(&d->retry, on_dead_retry, 0., 0.);
    t->dead_lettered = 1;
    w->dead_pending++;
    dead_send(d);
}

/* offline_dead_letter(users, reason, error) -> true (pending) | false, ok, err
 * The users of this toOfflinePush record whose sends failed for good: a
 * PushMsgReq{msgData, userIDs = users} to the offline dead-letter topic,
 * with the record's key and four headers plus impulse-reason,
 * impulse-error and impulse-origin, so `impulse replay` sends only them
 * again. The record's offset is stored after the acknowledgement (the
 * coroutine waits for it). */
int imp_lua_offline_dead_letter(lua_State *L)
{
    struct imp_worker *w = worker_of(L);
    struct msg *t = msg_current(L);
    if (!t || !t->req || !t->rkm || t->kind != K_KAFKA || t->s->id != S_OFFLINE)
        return luaL_error(L, "offline_dead_letter called outside a toOfflinePush record");
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *reason = luaL_checkstring(L, 2);
    size_t elen;
    const char *error = luaL_checklstring(L, 3, &elen);
    if (!w->host.producer) {
        lua_pushboolean(L, 0);
        lua_pushnil(L);
        lua_pushliteral(L, "dead letter: no producer on this worker");
        return 3;
    }
    uint64_t t0 = imp_now_ns();
    struct imp_buf md, key;
    imp_buf_init(&md);
    imp_buf_init(&key);
    size_t mlen = openim__sdkws__msg_data__get_packed_size(t->req->msgdata);
    imp_buf_reserve(&md, mlen);
    openim__sdkws__msg_data__pack(t->req->msgdata, (uint8_t *)md.data);
    md.len = mlen;
    imp_buf_append(&key, t->rkm->key ? t->rkm->key : "", t->rkm->key ? t->rkm->key_len : 0);

    rd_kafka_headers_t *orig = NULL, *h;
    if (rd_kafka_message_headers(t->rkm, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR && orig)
        h = rd_kafka_headers_copy(orig);
    else
        h = rd_kafka_headers_new(7);
    char origin[512];
    snprintf(origin, sizeof(origin), "%s/%d/%lld", t->s->topic, (int)t->ref.partition,
             (long long)t->rkm->offset);
    rd_kafka_header_add(h, "impulse-reason", -1, reason, -1);
    rd_kafka_header_add(h, "impulse-error", -1, error, (ssize_t)IMP_MIN(elen, 4000));
    rd_kafka_header_add(h, "impulse-origin", -1, origin, -1);

    struct handoff *ho = imp_handoff_new(t);
    size_t records = imp_handoff_produce(w, L, 1, t->s->dlq, &key, &md, h, ho);
    rd_kafka_headers_destroy(h);
    imp_buf_dispose(&key);
    imp_buf_dispose(&md);
    char labels[160];
    snprintf(labels, sizeof(labels), "topic=\"%s\",result=\"partial\"", t->s->dlq);
    imp_metrics_inc("impulse_dead_letters_total", labels, (int64_t)records);
    imp_vm_exclude(t->task.vm, t0);
    return imp_handoff_return(L, t, ho, t->s->dlq);
}

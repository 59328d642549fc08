/*
 * Dead letters. A record that failed (bad record, script error, route or
 * push failure, budget, memory) is produced, unchanged and with its
 * headers, to its stream's dead-letter topic with impulse-reason,
 * impulse-error and impulse-origin added; its offset is stored only once
 * the broker acknowledges, and a refused or failed produce is retried
 * with backoff, so nothing is lost. core.offline_dead_letter writes only
 * the users of a toOfflinePush record whose sends failed for good.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/common.h"
#include "base/config.h"
#include "base/log.h"
#include "base/metrics.h"
#include "net/producer.h"
#include "push/worker_int.h"
#include "script/vm.h"

/* A dead letter's value when the whole record is refused for its size
 * (the broker's and the producer's message.max.bytes default to 1,000,000). */
#define CUT_BYTES (256 * 1024)
/* Failed attempts (0.5 + 1 + 2 + 4 + 8 s of backoff) before a dead letter
 * counts as failing for good: the engine reports not ready until it goes. */
#define STUCK_ATTEMPTS 5

struct dead {
    ev_timer retry;
    struct dead *next, *prev; /* the worker's pending dead letters */
    struct imp_worker *w;
    struct stream *s;
    struct imp_msgref ref;
    rd_kafka_message_t *rkm; /* the original record */
    const char *reason;
    char *error;
    int attempts;
    int cut;     /* 0: the whole value; 1: its first CUT_BYTES; 2: none of it */
    char *spool; /* when cut: the file with the whole value, or "not kept: why" */
    int stuck;   /* counted in the worker's dead_stuck */
};

static void dead_send(struct dead *d);

static void dead_unlink(struct dead *d)
{
    struct imp_worker *w = d->w;
    if (d->prev)
        d->prev->next = d->next;
    else
        w->deads = d->next;
    if (d->next) d->next->prev = d->prev;
    ev_timer_stop(w->loop, &d->retry);
    if (d->stuck) atomic_fetch_sub(&w->dead_stuck, 1);
    rd_kafka_message_destroy(d->rkm);
    free(d->error);
    free(d->spool);
    free(d);
    w->dead_pending--;
}

static void dead_free(struct dead *d)
{
    struct imp_worker *w = d->w;
    dead_unlink(d);
    imp_worker_maybe_finish(w);
}

void imp_deadletter_abandon(struct imp_worker *w)
{
    while (w->deads) {
        struct dead *d = w->deads;
        imp_warn(NULL,
                 "dead letter to %s abandoned at shutdown; %s[%d]@%lld will be consumed "
                 "again",
                 d->s->dlq, d->s->topic, (int)d->ref.partition, (long long)d->rkm->offset);
        dead_unlink(d);
    }
}

/* mkdir -p: 0, or -1 with errno. */
static int make_dirs(const char *dir)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s", dir);
    for (char *c = p + 1; *c; c++) {
        if (*c != '/') continue;
        *c = '\0';
        if (mkdir(p, 0750) != 0 && errno != EEXIST) return -1;
        *c = '/';
    }
    return mkdir(p, 0750) != 0 && errno != EEXIST ? -1 : 0;
}

static unsigned long long dir_bytes(const char *dir)
{
    unsigned long long total = 0;
    DIR *dp = opendir(dir);
    struct dirent *de;
    if (!dp) return 0;
    while ((de = readdir(dp))) {
        char p[1280];
        struct stat st;
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) total += (unsigned long long)st.st_size;
    }
    closedir(dp);
    return total;
}

/* Keeps the whole value of a record whose dead letter must be cut: a file
 * <topic>-<partition>-<offset>.record in impulse.deadLetterSpool, within
 * impulse.deadLetterSpoolMB. Returns its path, or "not kept: <why>". Blocks
 * the worker for one file write, which only a record too big for the
 * dead-letter topic costs. */
static char *spool_record(struct dead *d)
{
    const struct imp_config *cfg = d->w->cfg;
    const char *dir = cfg->dlq_spool;
    char out[1400], tmp[1500], msg[1700];
    unsigned long long cap = (unsigned long long)cfg->dlq_spool_mb << 20, used;
    if (cap == 0) return imp_xstrdup("not kept: impulse.deadLetterSpoolMB is 0");
    if (make_dirs(dir) != 0) {
        snprintf(out, sizeof(out), "not kept: cannot create %s: %s", dir, strerror(errno));
        return imp_xstrdup(out);
    }
    used = dir_bytes(dir);
    if (used + d->rkm->len > cap) {
        snprintf(out, sizeof(out), "not kept: %s holds %llu MB (impulse.deadLetterSpoolMB %d)", dir,
                 used >> 20, cfg->dlq_spool_mb);
        return imp_xstrdup(out);
    }
    snprintf(out, sizeof(out), "%s/%s-%d-%lld.record", dir, d->s->topic, (int)d->ref.partition,
             (long long)d->rkm->offset);
    snprintf(tmp, sizeof(tmp), "%s.tmp", out);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    size_t done = 0;
    while (fd >= 0 && done < d->rkm->len) {
        ssize_t n = write(fd, (const char *)d->rkm->payload + done, d->rkm->len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += (size_t)n;
    }
    int ok = fd >= 0 && done == d->rkm->len && fsync(fd) == 0;
    int saved = errno;
    if (fd >= 0) close(fd);
    if (!ok || rename(tmp, out) != 0) {
        if (ok) saved = errno;
        unlink(tmp);
        snprintf(msg, sizeof(msg), "not kept: cannot write %s: %s", out, strerror(saved));
        return imp_xstrdup(msg);
    }
    return imp_xstrdup(out);
}

static int too_big(int err)
{
    return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
           err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

/* The dead letter was refused for its size: the whole value goes to the
 * spool and the dead letter is sent again with its value cut (then with
 * none), flagged by impulse-truncated and impulse-spool. */
static void cut_and_resend(struct dead *d)
{
    char labels[128];
    if (!d->spool) d->spool = spool_record(d);
    d->cut++;
    imp_warn(NULL,
             "dead letter to %s refused for its size (%zu bytes); sent again %s; the whole "
             "record: %s",
             d->s->dlq, d->rkm->len,
             d->cut == 1 ? "with its value cut to 256 KiB" : "with no value", d->spool);
    snprintf(labels, sizeof(labels), "topic=\"%s\",result=\"cut\"", d->s->dlq);
    imp_metrics_inc("impulse_dead_letters_total", labels, 1);
    dead_send(d);
}

static void on_dead_ack(void *arg, int err, const char *errstr)
{
    struct dead *d = arg;
    struct imp_worker *w = d->w;
    struct stream *s = d->s;
    char labels[128];
    if (err && too_big(err) && d->cut < 2) {
        cut_and_resend(d);
        return;
    }
    if (err) {
        int delay = d->attempts < 6 ? 500 << d->attempts : 30000;
        imp_warn(NULL,
                 "dead letter to %s failed (%s); retrying in %d ms; the offset of "
                 "%s[%d]@%lld waits",
                 s->dlq, errstr, delay, s->topic, (int)d->ref.partition, (long long)d->rkm->offset);
        snprintf(labels, sizeof(labels), "topic=\"%s\",result=\"retry\"", s->dlq);
        imp_metrics_inc("impulse_dead_letters_total", labels, 1);
        if (d->attempts >= STUCK_ATTEMPTS && !d->stuck) {
            d->stuck = 1;
            atomic_fetch_add(&w->dead_stuck, 1);
            imp_error(NULL,
                      "dead letter to %s failing for good after %d attempts (%s): impulse "
                      "reports not ready until it is written",
                      s->dlq, d->attempts, errstr);
        }
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
    size_t vlen = d->cut == 0 ? d->rkm->len : d->cut == 1 ? IMP_MIN(d->rkm->len, CUT_BYTES) : 0;
    if (d->cut) {
        char n[32];
        snprintf(n, sizeof(n), "%zu", d->rkm->len);
        rd_kafka_header_add(h, "impulse-truncated", -1, n, -1);
        rd_kafka_header_add(h, "impulse-spool", -1, d->spool, -1);
    }
    int rc = w->host.producer
                 ? imp_producer_send(w->host.producer, d->s->dlq, d->rkm->key, d->rkm->key_len,
                                     d->rkm->payload, vlen, h, on_dead_ack, d)
                 : -1;
    if (rc != 0) {
        rd_kafka_headers_destroy(h);
        if (too_big(rc) && d->cut < 2) {
            cut_and_resend(d);
            return;
        }
        on_dead_ack(d, rc ? rc : -1, w->host.producer ? rd_kafka_err2str(rc) : "no producer");
    }
}

/* Sends the failed message t to the dead-letter topic; its offset is
 * stored only once the dead letter is acknowledged (task_done skips it). */
void imp_deadletter_record(struct msg *t)
{
    struct imp_worker *w = t->w;
    if (!t->fail_reason || !t->rkm) return;
    if (w->cfg->shadow) { /* logged and counted as failed already; nothing is written */
        imp_metrics_inc("impulse_shadow_dead_letters_total", NULL, 1);
        return;
    }
    struct dead *d = imp_xcalloc(1, sizeof(*d));
    d->w = w;
    d->s = t->s;
    d->ref = t->ref;
    d->rkm = t->rkm;
    t->rkm = NULL; /* the dead letter owns the record now */
    d->reason = t->fail_reason;
    d->error = imp_xstrdup(t->fail_error ? t->fail_error : "");
    ev_timer_init(&d->retry, on_dead_retry, 0., 0.);
    d->next = w->deads;
    if (w->deads) w->deads->prev = d;
    w->deads = d;
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
    if (!w->host.producer || w->cfg->shadow) {
        lua_pushboolean(L, 0);
        lua_pushnil(L);
        lua_pushstring(L, w->cfg->shadow ? "dead letter: not written in shadow mode"
                                         : "dead letter: no producer on this worker");
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

/*
 * The LRU path of a lookup, as a small state machine owned by the task:
 *   get_batch ─► hits filled; WAIT keys → the batch's done (another
 *                thread) posts back here; FETCH keys → getUserStatus
 *                chunks on this loop
 *   every chunk answered and the batch's waits over ─► finish the batch
 *   (keys the service did not return are not cached) ─► done(t)
 * A timer bounds the wait for other messages' fetches.
 *
 * Called by the online push (push/fanout.c) on a worker's loop; never
 * blocks.
 */
#include "calls/presence.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/common.h"
#include "base/log.h"
#include "base/metrics.h"
#include "script/task.h"
#include "state/cache/slot.h"
#include "state/online.h"
#include "state/shared.h"
#include "user.pb-c.h"

struct imp_slot *imp_presence_lru_create(const struct imp_config *cfg)
{
    if (cfg->full_user_cache) return NULL;
    struct imp_slot_config sc = {
        .nslots = 1024,
        .slot_size = 2048,
        .success_ttl_ms = 15 * 60 * 1000,
        .failed_ttl_ms = 3 * 1000,
        .kind = IMP_SLOT_LAZY,
    };
    return imp_slot_create(&sc);
}

static struct imp_blob *status_blob(uint64_t platforms)
{
    return imp_blob_create(&platforms, sizeof(platforms));
}

static uint64_t blob_platforms(const struct imp_blob *b)
{
    uint64_t p = 0;
    if (b && b->len == sizeof(p)) memcpy(&p, b->data, sizeof(p));
    return p;
}

void imp_presence_lru_update(struct imp_slot *lru, const char *uid, size_t len, uint64_t platforms,
                             uint64_t now_ms)
{
    struct imp_blob *b = status_blob(platforms);
    imp_slot_set_has(lru, uid, len, b, now_ms);
    imp_blob_release(b);
}

struct lookup {
    struct imp_task *t;
    struct imp_host *host;
    struct imp_slot *lru;
    char *const *users;
    size_t n;
    size_t *klens;
    unsigned char *online;
    struct imp_slot_batch *b;
    unsigned char *fetched; /* per user: answered by our own fetch */
    int pending;            /* RPC chunks + the batch's waits */
    int waiting;            /* the batch's done is outstanding */
    int errors;
    ev_timer timer;
    void (*done)(struct imp_task *t);
};

/* Fills online[] from the batch, frees the lookup, then calls done unless
 * the lookup finished inside imp_presence_lookup itself (done == NULL). */
static void finish(struct lookup *lk)
{
    struct imp_task *t = lk->t;
    void (*done)(struct imp_task *) = lk->done;
    ev_timer_stop(lk->host->loop, &lk->timer);
    imp_slot_batch_finish(lk->lru, lk->b, 0, NULL, 0, imp_now_ms());
    for (size_t i = 0; i < lk->n; i++)
        if (!lk->fetched[i] && lk->b->vals[i]) lk->online[i] = blob_platforms(lk->b->vals[i]) != 0;
    if (lk->errors) imp_metrics_inc("impulse_presence_errors_total", NULL, lk->errors);
    imp_slot_batch_destroy(lk->b);
    free(lk->klens);
    free(lk->fetched);
    free(lk);
    if (done) done(t);
}

static void one_less(struct lookup *lk)
{
    if (--lk->pending == 0) finish(lk);
}

/* The batch's waits are over: posted from the notifying thread. */
static void batch_waited(void *arg)
{
    struct lookup *lk = arg;
    if (!lk->waiting) return; /* the timer gave up on it already */
    lk->waiting = 0;
    one_less(lk);
}

static void batch_done(struct imp_slot_batch *b)
{
    struct lookup *lk = b->ud;
    imp_inbox_post(lk->host->inbox, batch_waited, lk);
}

static void wait_timeout(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    struct lookup *lk = tm->data;
    if (!lk->waiting || imp_slot_batch_cancel(lk->lru, lk->b) != 1) return;
    imp_warn(imp_task_opid(lk->t), "presence: gave up waiting for other messages' status fetches");
    lk->errors++;
    lk->waiting = 0;
    one_less(lk);
}

struct chunk {
    struct lookup *lk;
    size_t first, count; /* positions in the lookup's FETCH list */
    size_t *idx;         /* user index of each position */
};

static void on_status(void *arg, const struct imp_grpc_result *r)
{
    struct chunk *c = arg;
    struct lookup *lk = c->lk;
    uint64_t now = imp_now_ms();
    char sname[16];
    Openim__User__GetUserStatusResp *resp = NULL;
    char labels[128];
    snprintf(labels, sizeof(labels), "path=\"%s\",code=\"%d\"", IMP_USER_STATUS_METHOD, r->status);
    imp_metrics_inc("impulse_rpc_client_total", labels, 1);
    if (r->status == 0) resp = openim__user__get_user_status_resp__unpack(NULL, r->len, r->data);
    if (!resp) {
        char why[300];
        snprintf(why, sizeof(why), "user service: %s: %s",
                 r->status ? imp_grpc_status_name(r->status, sname, sizeof(sname)) : "garbage",
                 r->status ? r->details : "unparseable getUserStatus reply");
        imp_warn(imp_task_opid(lk->t), "presence: %s (%zu users count as not online)", why,
                 c->count);
        lk->errors++;
        for (size_t k = 0; k < c->count; k++) {
            size_t i = c->idx[k];
            imp_slot_complete(lk->lru, lk->users[i], lk->klens[i], NULL, IMP_EIO, why, 1, now);
            lk->fetched[i] = 1;
        }
    } else {
        for (size_t s = 0; s < resp->n_statuslist; s++) {
            const Openim__User__OnlineStatus *st = resp->statuslist[s];
            if (!st->userid) continue;
            /* only users of this chunk: the reply cannot speak for others */
            for (size_t k = 0; k < c->count; k++) {
                size_t i = c->idx[k];
                if (lk->fetched[i] || strcmp(lk->users[i], st->userid) != 0) continue;
                uint64_t set = 0;
                if (st->status == 1)
                    for (size_t p = 0; p < st->n_platformids; p++)
                        if (st->platformids[p] >= 0 &&
                            st->platformids[p] <= IMP_ONLINE_MAX_PLATFORM)
                            set |= 1ULL << st->platformids[p];
                struct imp_blob *b = status_blob(set);
                imp_slot_complete(lk->lru, lk->users[i], lk->klens[i], b, 0, NULL, 0, now);
                imp_blob_release(b);
                lk->online[i] = set != 0;
                lk->fetched[i] = 1;
                break;
            }
        }
        openim__user__get_user_status_resp__free_unpacked(resp, NULL);
    }
    free(c->idx);
    free(c);
    one_less(lk);
}

/* Sends getUserStatus for the users at idx[0..n), in chunks under the
 * message limit. Returns the number of calls started. */
static int fetch(struct lookup *lk, size_t *idx, size_t n)
{
    const struct imp_config *cfg = lk->host->cfg;
    size_t max = (size_t)cfg->max_grpc_message - 1024, first = 0;
    int calls = 0;
    struct imp_grpc_md md[IMP_TASK_GRPC_MD];
    imp_task_grpc_md(lk->t, md);
    struct imp_grpc_channel *ch = imp_host_service(lk->host, cfg->svc_user);
    while (first < n) {
        size_t size = 0, count = 0;
        while (first + count < n) {
            size_t l = lk->klens[idx[first + count]];
            if (count && size + l + 8 > max) break;
            size += l + 8;
            count++;
        }
        struct chunk *c = imp_xcalloc(1, sizeof(*c));
        c->lk = lk;
        c->count = count;
        c->idx = imp_xmalloc(count * sizeof(size_t));
        memcpy(c->idx, idx + first, count * sizeof(size_t));
        struct imp_buf req;
        imp_buf_init(&req);
        for (size_t k = 0; k < count; k++) /* field 2: userIDs (OpenIM leaves 1 empty) */
            imp_buf_pb_bytes(&req, 2, lk->users[c->idx[k]], lk->klens[c->idx[k]]);
        lk->pending++;
        int rc = ch ? imp_host_unary(lk->host, ch, IMP_USER_STATUS_METHOD, req.data, req.len,
                                     cfg->rpc_timeout_ms, md, IMP_TASK_GRPC_MD, on_status, c)
                    : IMP_ENOTFOUND;
        imp_buf_dispose(&req);
        if (rc != 0) {
            /* as if the call failed at once (the start hold keeps the
             * lookup alive through on_status) */
            struct imp_grpc_result r = {.status = 14,
                                        .details = ch ? "cannot start the call"
                                                      : "no user service node in etcd"};
            on_status(c, &r);
        }
        calls++;
        first += count;
    }
    return calls;
}

int imp_presence_lookup(struct imp_task *t, char *const *users, size_t n, unsigned char *online,
                        void (*done)(struct imp_task *t))
{
    struct imp_host *host = t->host;
    struct imp_shared *e = host->shared;
    if (!e->online_lru) {
        for (size_t i = 0; i < n; i++)
            online[i] = imp_online_get(e->online, users[i], strlen(users[i])) != 0;
        return 0;
    }
    memset(online, 0, n);
    if (n == 0) return 0;
    struct lookup *lk = imp_xcalloc(1, sizeof(*lk));
    lk->t = t;
    lk->host = host;
    lk->lru = e->online_lru;
    lk->users = users;
    lk->n = n;
    lk->online = online;
    lk->done = done;
    lk->klens = imp_xmalloc(n * sizeof(size_t));
    lk->fetched = imp_xcalloc(n, 1);
    for (size_t i = 0; i < n; i++) lk->klens[i] = strlen(users[i]);
    lk->b = imp_slot_batch_create((const char *const *)users, lk->klens, n, batch_done, lk);
    ev_timer_init(&lk->timer, wait_timeout, host->cfg->rpc_timeout_ms * 2 / 1000.0, 0.);
    lk->timer.data = lk;
    lk->pending = 1; /* held while starting */
    if (imp_slot_get_batch(lk->lru, lk->b, imp_now_ms())) {
        lk->waiting = 1;
        lk->pending++;
        ev_timer_start(host->loop, &lk->timer);
    }
    imp_metrics_inc("impulse_cache_requests_total", "cache=\"online\",result=\"hit\"",
                    (int64_t)lk->b->nhit);
    imp_metrics_inc("impulse_cache_requests_total", "cache=\"online\",result=\"miss\"",
                    (int64_t)(lk->b->nfetch + lk->b->nwait));
    if (lk->b->nfetch) {
        size_t *idx = imp_xmalloc(lk->b->nfetch * sizeof(size_t)), m = 0;
        for (size_t i = 0; i < n; i++)
            if (lk->b->state[i] == IMP_LAZY_FETCH) idx[m++] = i;
        fetch(lk, idx, m);
        free(idx);
    }
    if (lk->pending == 1) {
        /* answered at once: finish here, without calling done */
        lk->done = NULL;
        finish(lk);
        return 0;
    }
    lk->pending--; /* release the start hold */
    return 1;
}

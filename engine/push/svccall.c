/*
 * Push-service calls (openim.push.PushMsgService: PushMsg,
 * DelUserPushToken) as messages of the worker. The gRPC server thread
 * (daemon/pushsvc.c) hands a call over with imp_worker_rpc; the call
 * reaches the loop through the inbox, becomes a message like a toPush
 * record (without a Kafka key: the caller waits for each call, so calls
 * need no order among themselves), and is answered when that message
 * ends. A worker that is ending answers UNAVAILABLE so the caller can try
 * another node.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/metrics.h"
#include "net/grpc.h"
#include "push/worker_int.h"

const char *const imp_svccall_names[] = {"", "PushMsg", "DelUserPushToken"};

void imp_rpc_count(const char *service, const char *path, int code)
{
    char labels[512];
    snprintf(labels, sizeof(labels), "name=\"%s\",path=\"%s\",code=\"%d\"", service, path, code);
    imp_metrics_inc("rpc_count", labels, 1);
}

/* rpc_count for a push-service call of this kind */
static void count_call(const struct imp_config *cfg, int kind, int code)
{
    char path[96];
    snprintf(path, sizeof(path), "/openim.push.PushMsgService/%s", imp_svccall_names[kind]);
    imp_rpc_count(cfg->svc_push, path, code);
}

/* A push-service call's task ended: answer it (an empty reply message, or
 * INTERNAL with the failure) and count it. */
void imp_svccall_answer(struct msg *t)
{
    char labels[96], detail[600];
    const char *result = t->fail_reason ? t->fail_reason : "ok";
    snprintf(labels, sizeof(labels), "method=\"%s\",result=\"%s\"", imp_svccall_names[t->kind],
             result);
    imp_metrics_inc("impulse_rpc_total", labels, 1);
    if (t->fail_reason) {
        int bad = strcmp(t->fail_reason, "bad_request") == 0;
        snprintf(detail, sizeof(detail), "%s: %s", t->fail_reason,
                 t->fail_error ? t->fail_error : "");
        imp_grpc_scall_reply(t->rpc, bad ? 3 /* INVALID_ARGUMENT */ : 13 /* INTERNAL */, detail,
                             NULL, 0);
        count_call(t->w->cfg, t->kind, bad ? 3 : 13);
    } else {
        imp_grpc_scall_reply(t->rpc, 0, "", NULL, 0);
        count_call(t->w->cfg, t->kind, 0);
    }
    t->rpc = NULL;
}

static void rpc_refuse(struct imp_worker *w, struct imp_grpc_scall *c, int kind, const char *why)
{
    char labels[96];
    snprintf(labels, sizeof(labels), "method=\"%s\",result=\"unavailable\"",
             imp_svccall_names[kind]);
    imp_metrics_inc("impulse_rpc_total", labels, 1);
    imp_grpc_scall_reply(c, 14 /* UNAVAILABLE */, why, NULL, 0);
    count_call(w->cfg, kind, 14);
}

/* A call reached the loop: it becomes a task like a toPush record, except
 * that it has no Kafka key (calls are not ordered among themselves: the
 * caller waits for each) and its end answers the call. */
static void rpc_start(struct imp_worker *w, struct rpc_job *j)
{
    static const char *const md_keys[4] = {"operationid", "opuserid", "platform", "connid"};
    char v[512];
    if (w->stopping) {
        rpc_refuse(w, j->c, j->kind, "impulse is stopping");
        return;
    }
    struct msg *t = imp_msg_new(w);
    t->kind = j->kind;
    t->rpc = j->c;
    for (int i = 0; i < 4; i++) {
        const char *val = imp_grpc_scall_md(j->c, md_keys[i], v, sizeof(v));
        if (val) t->task.md[i] = imp_xstrdup(val);
    }
    const char *bad = NULL;
    if (t->kind == K_PUSHMSG) {
        t->req = openim__push__push_msg_req__unpack(NULL, j->len, j->req);
        if (!t->req || !t->req->msgdata) bad = "the request is not a PushMsgReq with msgData";
    } else {
        t->del = openim__push__del_user_push_token_req__unpack(NULL, j->len, j->req);
        if (!t->del)
            bad = "the request is not a DelUserPushTokenReq";
        else if (!t->del->userid || !t->del->userid[0])
            bad = "userID is empty";
    }
    if (bad) {
        imp_msg_fail(t, "bad_request", "bad request", bad);
        imp_msg_done(t);
        return;
    }
    if (t->kind == K_PUSHMSG && t->req->n_userids == 0) { /* nobody to push to */
        imp_msg_done(t);
        return;
    }
    imp_msg_runnable(w, t);
    imp_worker_run_ready(w);
}

static void cmd_rpc(void *arg)
{
    struct imp_worker *w = arg;
    pthread_mutex_lock(&w->rpc_lock);
    struct rpc_job *jobs = w->rpc_jobs, *rev = NULL;
    w->rpc_jobs = NULL;
    pthread_mutex_unlock(&w->rpc_lock);
    while (jobs) { /* oldest first */
        struct rpc_job *n = jobs->next;
        jobs->next = rev;
        rev = jobs;
        jobs = n;
    }
    while (rev) {
        struct rpc_job *n = rev->next;
        rpc_start(w, rev);
        free(rev);
        rev = n;
    }
}

int imp_worker_rpc(struct imp_worker *w, struct imp_grpc_scall *c, int kind, const uint8_t *req,
                   size_t len)
{
    struct rpc_job *j = imp_xcalloc(1, sizeof(*j));
    j->c = c;
    j->kind = kind;
    j->req = req;
    j->len = len;
    pthread_mutex_lock(&w->rpc_lock);
    if (w->rpc_closed) {
        pthread_mutex_unlock(&w->rpc_lock);
        free(j);
        return IMP_ECLOSED;
    }
    int first = w->rpc_jobs == NULL;
    j->next = w->rpc_jobs;
    w->rpc_jobs = j;
    pthread_mutex_unlock(&w->rpc_lock);
    if (first) imp_inbox_post(&w->inbox, cmd_rpc, w);
    return 0;
}

/* The worker is ending: calls not answered yet get UNAVAILABLE (the caller
 * can retry on another node); later ones are refused by imp_worker_rpc. */
void imp_svccall_close(struct imp_worker *w)
{
    pthread_mutex_lock(&w->rpc_lock);
    w->rpc_closed = 1;
    struct rpc_job *jobs = w->rpc_jobs;
    w->rpc_jobs = NULL;
    pthread_mutex_unlock(&w->rpc_lock);
    while (jobs) {
        struct rpc_job *n = jobs->next;
        rpc_refuse(w, jobs->c, jobs->kind, "impulse is stopping");
        free(jobs);
        jobs = n;
    }
    for (struct msg *t = w->msgs; t; t = t->next) {
        if (!t->rpc) continue;
        rpc_refuse(w, t->rpc, t->kind, "impulse stopped before the call finished");
        t->rpc = NULL;
    }
}

/*
 * Mutex-protected FIFO plus ev_async. Items are run in post order; a
 * callback may post again (it lands in the next drain round).
 *
 * Posted to from any thread; run only on the owner's loop (a worker, the
 * watcher).
 */
#include "base/inbox.h"

#include <stdlib.h>

#include "base/common.h"

struct imp_inbox_item {
    struct imp_inbox_item *next;
    imp_inbox_fn fn;
    void *arg;
};

static void on_async(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    imp_inbox_drain(w->data);
}

void imp_inbox_init(struct imp_inbox *ib, struct ev_loop *loop)
{
    ib->loop = loop;
    ib->head = ib->tail = NULL;
    ib->closed = 0;
    pthread_mutex_init(&ib->lock, NULL);
    ev_async_init(&ib->async, on_async);
    ib->async.data = ib;
}

void imp_inbox_start(struct imp_inbox *ib)
{
    ev_async_start(ib->loop, &ib->async);
    /* posts made before the start signalled a watcher that was not running:
     * wake once so they run on the first loop iteration */
    ev_async_send(ib->loop, &ib->async);
}

int imp_inbox_post(struct imp_inbox *ib, imp_inbox_fn fn, void *arg)
{
    struct imp_inbox_item *it = imp_xmalloc(sizeof(*it));
    it->next = NULL;
    it->fn = fn;
    it->arg = arg;
    pthread_mutex_lock(&ib->lock);
    if (ib->closed) {
        pthread_mutex_unlock(&ib->lock);
        free(it);
        return IMP_ECLOSED;
    }
    if (ib->tail)
        ib->tail->next = it;
    else
        ib->head = it;
    ib->tail = it;
    pthread_mutex_unlock(&ib->lock);
    ev_async_send(ib->loop, &ib->async);
    return 0;
}

void imp_inbox_drain(struct imp_inbox *ib)
{
    for (;;) {
        pthread_mutex_lock(&ib->lock);
        struct imp_inbox_item *it = ib->head;
        ib->head = ib->tail = NULL;
        pthread_mutex_unlock(&ib->lock);
        if (!it) return;
        while (it) {
            struct imp_inbox_item *next = it->next;
            it->fn(it->arg);
            free(it);
            it = next;
        }
    }
}

void imp_inbox_close(struct imp_inbox *ib)
{
    pthread_mutex_lock(&ib->lock);
    ib->closed = 1;
    pthread_mutex_unlock(&ib->lock);
    imp_inbox_drain(ib);
    ev_async_stop(ib->loop, &ib->async);
}

void imp_inbox_dispose(struct imp_inbox *ib)
{
    struct imp_inbox_item *it = ib->head;
    while (it) {
        struct imp_inbox_item *next = it->next;
        free(it);
        it = next;
    }
    ib->head = ib->tail = NULL;
    pthread_mutex_destroy(&ib->lock);
}

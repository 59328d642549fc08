/*
 * An inbox: how other threads hand work to a thread that owns a libev loop.
 *
 * Completions from gRPC, librdkafka and friends arrive on foreign threads;
 * they post (fn, arg) here and the owning thread runs fn(arg) on its loop.
 * ev_async coalesces wake-ups, so every wake-up drains the whole queue.
 */
#ifndef IMP_INBOX_H
#define IMP_INBOX_H

#include <ev.h>
#include <pthread.h>

typedef void (*imp_inbox_fn)(void *arg);

struct imp_inbox_item;

struct imp_inbox {
    struct ev_loop *loop;
    ev_async async;
    pthread_mutex_t lock;
    struct imp_inbox_item *head, *tail;
    int closed;
};

/* Binds the inbox to loop (not started until imp_inbox_start). */
void imp_inbox_init(struct imp_inbox *ib, struct ev_loop *loop);
/* Starts the watcher; call on the owning thread. */
void imp_inbox_start(struct imp_inbox *ib);
/* Queues fn(arg) to run on the owner's loop. Thread-safe. Returns 0, or
 * IMP_ECLOSED after imp_inbox_close (fn is then not called, and the
 * caller keeps ownership of arg). */
int imp_inbox_post(struct imp_inbox *ib, imp_inbox_fn fn, void *arg);
/* Runs everything queued now (owner thread). */
void imp_inbox_drain(struct imp_inbox *ib);
/* Refuses further posts, runs what is queued, stops the watcher. */
void imp_inbox_close(struct imp_inbox *ib);
/* Frees what is still queued without running it (the process is ending and
 * the owner's loop is gone) and releases the lock. */
void imp_inbox_dispose(struct imp_inbox *ib);

#endif

/*
 * The process's one Redis subscriber, on the watcher's loop (hiredis async
 * on libev). Subscribes to a fixed set of channels, reconnects with backoff
 * after any failure, and tells its owner when every channel is subscribed
 * (so the owner can load what the subscription now keeps fresh) and when
 * the connection is lost (everything published meanwhile is missed).
 *
 * hiredis 0.14 has no async timeouts: a connect that hangs is abandoned by
 * our own timer.
 */
#ifndef IMP_REDIS_H
#define IMP_REDIS_H

#include <ev.h>
#include <stddef.h>

#include "base/config.h"

struct imp_redis_sub;

struct imp_redis_sub_handler {
    void (*subscribed)(void *arg); /* all channels confirmed */
    void (*lost)(void *arg);       /* the connection went away */
    void (*message)(void *arg, const char *channel, const char *payload, size_t len);
    void *arg;
};

struct imp_redis_sub *imp_redis_sub_create(struct ev_loop *loop, const struct imp_config *cfg,
                                           const char *const *channels, size_t nchannels,
                                           const struct imp_redis_sub_handler *h);
void imp_redis_sub_start(struct imp_redis_sub *s);
void imp_redis_sub_destroy(struct imp_redis_sub *s);

#endif

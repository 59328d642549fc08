/*
 * Registration of impulse in etcd as OpenIM services register themselves:
 * key "<root>/<share.rpcRegisterName.push>/<ip:port>", value
 * {"Op":0,"Addr":"<ip:port>","Metadata":null}, under a lease of
 * impulse.registerTtlS (30 s) kept alive every third of it. A lease that
 * expired (etcd unreachable for longer than the TTL) is granted again and
 * the key put again. Runs on one loop (the main thread's) with its own
 * HTTP client; etcd's JSON gateway, as etcd.c.
 */
#ifndef IMP_ANNOUNCE_H
#define IMP_ANNOUNCE_H

#include <ev.h>

#include "base/buf.h"
#include "base/config.h"

struct imp_announce;

struct imp_announce *imp_announce_start(struct ev_loop *loop, const struct imp_config *cfg,
                                        const char *addr);
/* Any key and value, under a lease of ttl_s kept alive, or with no lease
 * (ttl_s 0: put once, retried until etcd takes it, left at revoke). */
struct imp_announce *imp_announce_put(struct ev_loop *loop, const struct imp_config *cfg,
                                      const char *key, const char *value, int ttl_s);
/* Revokes the lease (the key goes with it) and calls done(arg) on the loop
 * when etcd answered or after 2 s; no keep-alive after this. */
void imp_announce_revoke(struct imp_announce *a, void (*done)(void *arg), void *arg);
void imp_announce_destroy(struct imp_announce *a);
/* {"key":...,"lease":...,"registered":true|false} for /healthz. */
void imp_announce_status_json(const struct imp_announce *a, struct imp_buf *out);

#endif

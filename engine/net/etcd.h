/*
 * Service discovery through etcd v3's JSON gateway (plain HTTP/1.1).
 *
 * Lists every key under "<root>/", then watches that prefix from the
 * listed revision + 1, resuming from the last seen revision after a broken
 * stream and listing again after a compaction. Keys are OpenIM's
 * "<root>/<service>/<ip:port>"; the address is the key's last path segment
 * (as OpenIM reads it). Each tracked service's address set is published to
 * the registry whenever it changes. Runs on the watcher's loop.
 */
#ifndef IMP_ETCD_H
#define IMP_ETCD_H

#include <ev.h>

#include "base/config.h"
#include "net/http.h"
#include "state/registry.h"

struct imp_etcd;

/* on_synced runs on the loop after every successful full listing. */
struct imp_etcd *imp_etcd_create(struct ev_loop *loop, struct imp_http *http,
                                 const struct imp_config *cfg, struct imp_registry *reg,
                                 void (*on_synced)(void *arg), void *arg);
void imp_etcd_start(struct imp_etcd *e);
void imp_etcd_destroy(struct imp_etcd *e);
/* 1 after the first successful listing. */
int imp_etcd_synced(const struct imp_etcd *e);
/* 1 while etcd answers: the last listing succeeded and the watch started
 * since then is open; 0 from the first failure until it is again. */
int imp_etcd_up(const struct imp_etcd *e);

/* 1 when an /v3/auth/authenticate reply says the server has authentication
 * disabled (HTTP 412 "authentication is not enabled"). OpenIM's etcd client
 * (clientv3) then goes on without a token, and so do impulse's. */
int imp_etcd_auth_not_enabled(long status, const char *body, size_t len);

/* For the other etcd clients (announce.c): a JSON POST of body to
 * http://<endpoint><path> with the auth token, if any; NULL when libcurl
 * refused it. */
struct imp_http_req *imp_etcd_post(struct imp_http *http, const char *endpoint, const char *token,
                                   const char *path, const char *body, int timeout_ms,
                                   imp_http_done_cb done, imp_http_chunk_cb chunk, void *arg);
/* The /v3/auth/authenticate body for cfg's etcd username and password. */
struct imp_buf;
void imp_etcd_auth_body(struct imp_buf *b, const struct imp_config *cfg);

#endif

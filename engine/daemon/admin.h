/*
 * The admin listener: a minimal HTTP/1.1 server on the main thread's loop
 * for /healthz (alive, with status), /readyz (online table loaded and
 * partitions assigned: 200, else 503), /metrics (Prometheus text) and the
 * status page at / and /status (engine/daemon/status.html, compiled in).
 * One request per connection; requests over 8 KiB or slower than 5 s are
 * dropped. Not meant for the internet: bind it to loopback.
 */
#ifndef IMP_ADMIN_H
#define IMP_ADMIN_H

#include <ev.h>
#include <stddef.h>

struct imp_engine;
struct imp_admin;

/* What a listener serves: everything (the admin listener), or /metrics
 * alone (openim-push's prometheus.ports, open to the network as OpenIM's). */
enum imp_admin_kind { IMP_ADMIN_FULL, IMP_ADMIN_METRICS_ONLY };

/* Listens on host:port ("127.0.0.1:0" picks a port). token, when not
 * empty, is required on every request (Authorization: Bearer <token>;
 * 401 without); the status page also takes it as ?token=<token>, since a
 * browser opening a URL cannot send the header. Returns NULL with the
 * reason in err. */
struct imp_admin *imp_admin_create(struct ev_loop *loop, struct imp_engine *e, const char *listen,
                                   enum imp_admin_kind kind, const char *token, char *err,
                                   size_t errlen);
/* The bound port (useful with port 0). */
int imp_admin_port(const struct imp_admin *a);
void imp_admin_destroy(struct imp_admin *a);

#endif

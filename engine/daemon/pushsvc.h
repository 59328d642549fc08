/*
 * impulse as OpenIM's push service: serves openim.push.PushMsgService on
 * openim-push.rpc (listenIP, ports[0] or a free port with autoSetPorts) and
 * hands each call to a worker, round robin:
 *   DelUserPushToken: deletes FCM_TOKEN:<userID>:<platformID> (the policy's
 *     del_push_token hook may do more);
 *   PushMsg: pushes msgData to userIDs along the toPush path, minus route()
 *     (OpenIM leaves it unimplemented).
 * Other methods answer UNIMPLEMENTED.
 */
#ifndef IMP_PUSHSVC_H
#define IMP_PUSHSVC_H

#include <stddef.h>

struct imp_config;
struct imp_worker;
struct imp_pushsvc;

/* Listens, handing calls to workers[0..nworkers) (which must outlive the
 * service). NULL with "config: openim-push.rpc...: <why>" in err. */
struct imp_pushsvc *imp_pushsvc_start(const struct imp_config *cfg,
                                      struct imp_worker *const *workers, int nworkers, char *err,
                                      size_t errlen);
/* "ip:port" to publish: rpc.registerIP, else the first non-loopback IPv4
 * address of the machine (127.0.0.1 when there is none). */
const char *imp_pushsvc_addr(const struct imp_pushsvc *p);
/* The first IPv4 address of an interface that is up and not loopback, as
 * OpenIM publishes when rpc.registerIP is empty; 0 if there is none. */
int imp_routable_ipv4(char *out, size_t outlen);
int imp_pushsvc_port(const struct imp_pushsvc *p);
/* Stops taking calls (those in progress finish). */
void imp_pushsvc_shutdown(struct imp_pushsvc *p);
/* After the workers are joined, before imp_grpc_stop. */
void imp_pushsvc_destroy(struct imp_pushsvc *p);

#endif

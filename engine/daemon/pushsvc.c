/*
 * The push service's calls. The handler runs on gRPC's completion thread
 * and only hands the call to a worker; decoding and the work run there.
 *
 * Started by main.c; hands calls to push/svccall.c through
 * imp_worker_rpc and never waits for them.
 */
#include "daemon/pushsvc.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/config.h"
#include "base/log.h"
#include "base/metrics.h"
#include "net/grpc.h"
#include "push/worker.h"

#define SERVICE "/openim.push.PushMsgService/"

struct imp_pushsvc {
    const struct imp_config *cfg;
    struct imp_worker *const *workers;
    int nworkers;
    struct imp_grpc_server *srv;
    int port;
    char addr[80];
    atomic_uint rr;
};

static void on_call(void *arg, struct imp_grpc_scall *c, const char *method, const uint8_t *req,
                    size_t len)
{
    struct imp_pushsvc *p = arg;
    int kind = 0;
    if (strcmp(method, SERVICE "PushMsg") == 0)
        kind = IMP_RPC_PUSHMSG;
    else if (strcmp(method, SERVICE "DelUserPushToken") == 0)
        kind = IMP_RPC_DELTOKEN;
    if (!kind) {
        char why[200];
        snprintf(why, sizeof(why), "impulse does not serve %s", method);
        imp_metrics_inc("impulse_rpc_total", "method=\"other\",result=\"unimplemented\"", 1);
        imp_grpc_scall_reply(c, 12 /* UNIMPLEMENTED */, why, NULL, 0);
        imp_rpc_count(p->cfg->svc_push, method, 12);
        return;
    }
    unsigned n = atomic_fetch_add(&p->rr, 1);
    struct imp_worker *w = p->workers[n % (unsigned)p->nworkers];
    if (imp_worker_rpc(w, c, kind, req, len) != 0) {
        imp_metrics_inc("impulse_rpc_total",
                        kind == IMP_RPC_PUSHMSG
                            ? "method=\"PushMsg\",result=\"unavailable\""
                            : "method=\"DelUserPushToken\",result=\"unavailable\"",
                        1);
        imp_grpc_scall_reply(c, 14 /* UNAVAILABLE */, "impulse is stopping", NULL, 0);
        imp_rpc_count(p->cfg->svc_push, method, 14);
    }
}

/* The first IPv4 address of an interface that is up and not loopback. */
int imp_routable_ipv4(char *out, size_t outlen)
{
    struct ifaddrs *ifs, *i;
    int found = 0;
    if (getifaddrs(&ifs) != 0) return 0;
    for (i = ifs; i && !found; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
        if (!(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK)) continue;
        const struct sockaddr_in *sin = (const struct sockaddr_in *)i->ifa_addr;
        if (inet_ntop(AF_INET, &sin->sin_addr, out, (socklen_t)outlen)) found = 1;
    }
    freeifaddrs(ifs);
    return found;
}

struct imp_pushsvc *imp_pushsvc_start(const struct imp_config *cfg,
                                      struct imp_worker *const *workers, int nworkers, char *err,
                                      size_t errlen)
{
    struct imp_pushsvc *p = imp_xcalloc(1, sizeof(*p));
    char listen[96], why[160];
    p->cfg = cfg;
    p->workers = workers;
    p->nworkers = nworkers;
    if (strchr(cfg->rpc_listen_ip, ':'))
        snprintf(listen, sizeof(listen), "[%s]:%d", cfg->rpc_listen_ip, cfg->rpc_port);
    else
        snprintf(listen, sizeof(listen), "%s:%d", cfg->rpc_listen_ip, cfg->rpc_port);
    p->srv = imp_grpc_server_start(listen, cfg->max_grpc_message, on_call, p, &p->port, why,
                                   sizeof(why));
    if (!p->srv) {
        snprintf(err, errlen, "config: openim-push.%s: %s",
                 cfg->rpc_port ? "rpc.ports" : "rpc.listenIP", why);
        free(p);
        return NULL;
    }
    char ip[64];
    if (cfg->rpc_register_ip[0]) {
        snprintf(ip, sizeof(ip), "%s", cfg->rpc_register_ip);
    } else if (!imp_routable_ipv4(ip, sizeof(ip))) {
        imp_warn(NULL, "push service: no non-loopback IPv4 address; registering 127.0.0.1 "
                       "(set openim-push.rpc.registerIP)");
        snprintf(ip, sizeof(ip), "127.0.0.1");
    }
    snprintf(p->addr, sizeof(p->addr), "%s:%d", ip, p->port);
    imp_info(NULL, "push service: openim.push.PushMsgService on %s (published as %s)", listen,
             p->addr);
    return p;
}

const char *imp_pushsvc_addr(const struct imp_pushsvc *p) { return p->addr; }
int imp_pushsvc_port(const struct imp_pushsvc *p) { return p->port; }

void imp_pushsvc_shutdown(struct imp_pushsvc *p)
{
    if (p) imp_grpc_server_shutdown(p->srv);
}

void imp_pushsvc_destroy(struct imp_pushsvc *p)
{
    if (!p) return;
    imp_grpc_server_destroy(p->srv);
    free(p);
}

/*
 * Service discovery through the Kubernetes API, as OpenIM's tools
 * ConnManager reads it (docs/research/openim-operator-dropin.md section 3):
 * the Endpoints object named after each service (the part of the configured
 * name before any ":port"), its ready addresses, the port named "grpc".
 *
 * Lists the namespace's Endpoints, then watches them from the listed
 * resourceVersion, resuming after a stream ends and listing again when the
 * server says the version is gone (410). Authenticates with the pod's
 * service-account token (read again for every request: projected tokens
 * rotate) and trusts only the service account's CA. Publishes each
 * service's addresses to the registry, with each gateway's host name for
 * the hash ring (base/ring.h). Registers nothing, as OpenIM registers
 * nothing in Kubernetes. Runs on the watcher's loop.
 */
#ifndef IMP_K8S_H
#define IMP_K8S_H

#include <ev.h>

#include "base/config.h"
#include "net/http.h"
#include "state/registry.h"

struct imp_k8s;

/* on_synced runs on the loop after every successful full listing. */
struct imp_k8s *imp_k8s_create(struct ev_loop *loop, struct imp_http *http,
                               const struct imp_config *cfg, struct imp_registry *reg,
                               void (*on_synced)(void *arg), void *arg);
void imp_k8s_start(struct imp_k8s *k);
void imp_k8s_destroy(struct imp_k8s *k);
/* 1 after the first successful listing. */
int imp_k8s_synced(const struct imp_k8s *k);
/* 1 while the API server answers: the last listing succeeded and the watch
 * since then is open. */
int imp_k8s_up(const struct imp_k8s *k);

/* The ring name OpenIM v3.8.3 gives gateway pod `pod` (a StatefulSet's
 * "<release>-openim-msggateway-<i>"): "<pod>.<pod without -<i>>-headless.
 * <ns>.svc.cluster.local:<port>" (OpenIM@v3.8.3:pkg/common/
 * discoveryregister/kubernetes/kubernetes.go:106-130). Exposed for tests. */
void imp_k8s_ring_name(char *out, size_t cap, const char *pod, const char *ns, int port);

#endif

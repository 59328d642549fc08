/* The consistent-hash ring against a brute-force reading of
 * stathat/consistent's rule, CRC-32's check value, and OpenIM v3.8.3's host
 * names for gateway pods. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/ring.h"
#include "net/k8s.h"
#include "t.h"

/* The rule written the slow way: every point, the smallest hash strictly
 * above the key's, else the smallest of all; on equal hashes the later node. */
static size_t brute(char *const *names, size_t n, const char *key)
{
    uint32_t h = imp_crc32(key, strlen(key));
    int have_above = 0, have_min = 0;
    uint32_t best_above = 0, best_min = 0;
    size_t node_above = 0, node_min = 0;
    char buf[512];
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < IMP_RING_REPLICAS; k++) {
            snprintf(buf, sizeof(buf), "%d%s", k, names[i]);
            uint32_t p = imp_crc32(buf, strlen(buf));
            if (p > h && (!have_above || p <= best_above)) {
                have_above = 1;
                best_above = p;
                node_above = i;
            }
            if (!have_min || p <= best_min) {
                have_min = 1;
                best_min = p;
                node_min = i;
            }
        }
    return have_above ? node_above : node_min;
}

int main(void)
{
    CHECK(imp_crc32("123456789", 9) == 0xCBF43926u); /* the CRC-32/IEEE check value */
    CHECK(imp_crc32("", 0) == 0);

    char pod[64], name[256];
    imp_k8s_ring_name(name, sizeof(name), "openimserver-openim-msggateway-0", "im", 88);
    CHECK_STR(name, "openimserver-openim-msggateway-0.openimserver-openim-msggateway-headless.im."
                    "svc.cluster.local:88");
    imp_k8s_ring_name(name, sizeof(name), "gateway", "default", 10140); /* no ordinal */
    CHECK_STR(name, "gateway.gateway-headless.default.svc.cluster.local:10140");

    enum { N = 7 };
    char *names[N];
    for (int i = 0; i < N; i++) {
        snprintf(pod, sizeof(pod), "openimserver-openim-msggateway-%d", i);
        imp_k8s_ring_name(name, sizeof(name), pod, "openim", 88);
        names[i] = strdup(name);
    }
    struct imp_ring *r = imp_ring_build(names, N);
    size_t per[N] = {0};
    int mismatches = 0;
    for (int u = 0; u < 5000; u++) {
        char uid[32];
        snprintf(uid, sizeof(uid), "%d", 1000000000 + u * 7919);
        size_t got = imp_ring_get(r, uid, strlen(uid));
        CHECK(got < N);
        if (got < N) per[got]++;
        if (got != brute(names, N, uid)) mismatches++;
    }
    CHECK(mismatches == 0);
    for (int i = 0; i < N; i++) CHECK(per[i] > 0); /* every node owns some users */

    /* removing one node moves only its users */
    struct imp_ring *r6 = imp_ring_build(names, N - 1);
    int moved = 0;
    for (int u = 0; u < 5000; u++) {
        char uid[32];
        snprintf(uid, sizeof(uid), "%d", 1000000000 + u * 7919);
        size_t a = imp_ring_get(r, uid, strlen(uid)), b = imp_ring_get(r6, uid, strlen(uid));
        if (a != N - 1 && a != b) moved++;
    }
    CHECK(moved == 0);
    imp_ring_destroy(r6);

    struct imp_ring *empty = imp_ring_build(names, 0);
    CHECK(imp_ring_get(empty, "u", 1) == (size_t)-1);
    imp_ring_destroy(empty);
    imp_ring_destroy(r);
    for (int i = 0; i < N; i++) free(names[i]);
    return t_done("ring");
}

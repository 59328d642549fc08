/* Registry snapshots: sorted, de-duplicated, stable while held. */
#include "base/common.h"
#include "state/registry.h"
#include "t.h"

int main(void)
{
    const char *names[] = {"messageGateway", "group"};
    struct imp_registry *r = imp_registry_create(names, 2);
    struct imp_svclist *l = imp_registry_fetch(r, "messageGateway");
    CHECK(l->n == 0 && l->version == 0);
    char *a[] = {"10.0.0.2:1", "10.0.0.1:1", "10.0.0.2:1"};
    CHECK(imp_registry_publish(r, "messageGateway", a, 3) == 1);
    CHECK(imp_registry_publish(r, "messageGateway", a, 3) == 0); /* unchanged */
    CHECK(imp_registry_publish(r, "nope", a, 1) == IMP_ENOTFOUND);
    struct imp_svclist *l2 = imp_registry_fetch(r, "messageGateway");
    CHECK(l2->n == 2 && l2->version == 1);
    CHECK_STR(l2->addrs[0], "10.0.0.1:1");
    CHECK_STR(l2->addrs[1], "10.0.0.2:1");
    CHECK(l->n == 0); /* the old snapshot is untouched while held */
    CHECK(imp_registry_publish(r, "messageGateway", a, 1) == 1);
    CHECK(l2->n == 2);
    imp_svclist_release(l);
    imp_svclist_release(l2);

    /* keyed: names follow their address through the sort; a renamed
     * address is a change */
    char *ka[] = {"10.0.0.9:88", "10.0.0.3:88"};
    char *kk[] = {"gw-1.gw-headless.ns.svc.cluster.local:88",
                  "gw-0.gw-headless.ns.svc.cluster.local:88"};
    CHECK(imp_registry_publish_keyed(r, "messageGateway", ka, kk, 2) == 1);
    CHECK(imp_registry_publish_keyed(r, "messageGateway", ka, kk, 2) == 0);
    struct imp_svclist *k1 = imp_registry_fetch(r, "messageGateway");
    CHECK(k1->keys != NULL && k1->n == 2);
    CHECK_STR(k1->addrs[0], "10.0.0.3:88");
    CHECK_STR(k1->keys[0], "gw-0.gw-headless.ns.svc.cluster.local:88");
    CHECK_STR(k1->keys[1], "gw-1.gw-headless.ns.svc.cluster.local:88");
    char *kk2[] = {"gw-1.gw-headless.ns.svc.cluster.local:88",
                   "gw-2.gw-headless.ns.svc.cluster.local:88"};
    CHECK(imp_registry_publish_keyed(r, "messageGateway", ka, kk2, 2) == 1);
    CHECK(imp_registry_publish(r, "messageGateway", ka, 2) == 1); /* names dropped */
    struct imp_svclist *k2 = imp_registry_fetch(r, "messageGateway");
    CHECK(k2->keys == NULL);
    CHECK_STR(k1->keys[0], "gw-0.gw-headless.ns.svc.cluster.local:88"); /* held: unchanged */
    imp_svclist_release(k1);
    imp_svclist_release(k2);

    struct imp_svclist *u = imp_registry_fetch(r, "unknown");
    CHECK(u->n == 0);
    imp_svclist_release(u);
    imp_registry_destroy(r);
    return t_done("registry");
}

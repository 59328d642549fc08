/*
 * Service registry: for each OpenIM service impulse calls (messageGateway,
 * user, group, conversation, msg), the current list of addresses, as an
 * immutable reference-counted snapshot.
 *
 * The watcher publishes a new snapshot when etcd changes; workers fetch the
 * current one, use it for a message, and release it. A snapshot is freed
 * when the registry and every worker holding it have let go, so a worker
 * never sees a list change under its feet.
 */
#ifndef IMP_REGISTRY_H
#define IMP_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

struct imp_svclist {
    int refs;         /* atomic */
    uint64_t version; /* grows with every publish of this service */
    size_t n;
    char **addrs; /* sorted, unique */
    char **keys;  /* NULL, or per address its name on a hash ring (state/ring.h) */
};

struct imp_registry;

/* names: the services to track (copied). Cannot fail. */
struct imp_registry *imp_registry_create(const char *const *names, size_t n);
void imp_registry_destroy(struct imp_registry *r);

/* Borrows the current list of name (an empty list for an unknown name or a
 * service with no nodes). Never NULL. Release with imp_svclist_release. */
struct imp_svclist *imp_registry_fetch(struct imp_registry *r, const char *name);
void imp_svclist_release(struct imp_svclist *l);

/* Replaces name's list with addrs (copied, sorted, de-duplicated) if it
 * differs. Returns 1 when it changed, 0 when not, IMP_ENOTFOUND for an
 * untracked name. Thread-safe. */
int imp_registry_publish(struct imp_registry *r, const char *name, char *const *addrs, size_t n);
/* The same with each address's ring name (keys[i] for addrs[i]; NULL: none).
 * A change of names alone is a change. */
int imp_registry_publish_keyed(struct imp_registry *r, const char *name, char *const *addrs,
                               char *const *keys, size_t n);

/* The tracked names (valid for the registry's life). */
size_t imp_registry_names(const struct imp_registry *r, const char *const **names);

#endif

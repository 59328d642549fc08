/*
 * The tables every thread reads: the online table (or, with
 * fullUserCache false, the online LRU), the service registry etcd fills
 * and the group member cache. Created and destroyed by the engine
 * (daemon/engine.c), which outlives every thread; the workers, the watcher
 * and the engine calls get a pointer to it, never to the engine.
 */
#ifndef IMP_SHARED_H
#define IMP_SHARED_H

struct imp_online;
struct imp_registry;
struct imp_localcache;
struct imp_slot;

struct imp_shared {
    struct imp_online *online;          /* fullUserCache: true */
    struct imp_slot *online_lru;        /* fullUserCache: false, else NULL */
    struct imp_registry *registry;      /* OpenIM's services, from etcd */
    struct imp_localcache *group_cache; /* GROUP_MEMBER_IDS:<groupID> */
};

#endif

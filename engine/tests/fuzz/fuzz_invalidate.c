/* libFuzzer: a DELETE_CACHE_* payload (a JSON array of keys) applied to a
 * local cache holding a few keys; the cache must stay usable. */
#include <stddef.h>
#include <stdint.h>

#include "state/cache/localcache.h"

static struct imp_localcache *cache;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    if (!cache) {
        struct imp_localcache_config cfg = {
            .slot_num = 4,
            .slot_size = 16,
            .link_slot_num = 4,
            .success_ttl_ms = 60000,
            .failed_ttl_ms = 1000,
        };
        cache = imp_localcache_create(&cfg);
    }
    imp_localcache_invalidate_json(cache, (const char *)data, size, err, sizeof(err));
    return 0;
}

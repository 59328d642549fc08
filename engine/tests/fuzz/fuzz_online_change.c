/* libFuzzer: an online_change payload from Redis ("<p1>:...:<userID>"),
 * parsed and applied to an online table, whose invariants are checked. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/common.h"
#include "state/online.h"

static struct imp_online *table;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *uid;
    size_t uidlen;
    uint64_t platforms;
    char err[256];
    if (!table) table = imp_online_create(4);
    if (imp_online_parse_change((const char *)data, size, &uid, &uidlen, &platforms, err,
                                sizeof(err)) != 0)
        return 0;
    if (uid < (const char *)data || uid + uidlen > (const char *)data + size) __builtin_trap();
    imp_online_set(table, uid, uidlen, platforms, 1);
    if (imp_online_get(table, uid, uidlen) != platforms) __builtin_trap();
    imp_online_check(table);
    return 0;
}

/* libFuzzer: what impulse's etcd client reads from etcd's JSON gateway.
 * The input's first line is the body of a /v3/kv/range reply (the list),
 * the rest the /v3/watch stream (newline-delimited JSON objects), handed
 * to the client's real chunk handler in pieces of 1 to 61 bytes so lines
 * arrive split; a line that ends the stream (an error, a compaction, a
 * cancel) starts a new stream with what follows, as the client does after
 * listing or reconnecting. After each piece: the key set has no duplicate
 * and every key is under the prefix, the revision is not negative and
 * only a list moves it back; no crash, leak or undefined behaviour.
 *
 * The client's file is compiled in whole (its stream handler and reply
 * parsers are static); no request is ever started: the HTTP client is
 * NULL and the state machine is driven by hand. */
#include "net/etcd.c"

#include "base/log.h"

static const char *const names[] = {"messageGateway", "user", "group", "push"};

static void check(const struct imp_etcd *e, long long floor)
{
    size_t plen = strlen(e->prefix);
    for (size_t i = 0; i < e->nkeys; i++) {
        if (strncmp(e->keys[i], e->prefix, plen) != 0) __builtin_trap();
        for (size_t j = i + 1; j < e->nkeys; j++)
            if (strcmp(e->keys[i], e->keys[j]) == 0) __builtin_trap();
    }
    if (e->revision < floor || e->revision < 0) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ev_loop *loop;
    static char *addrs[] = {"127.0.0.1:2379"};
    if (!loop) {
        loop = ev_loop_new(EVFLAG_AUTO);
        imp_log_set_level(IMP_LOG_ERROR); /* the client's warnings: not per input */
    }
    struct imp_config cfg = {0};
    cfg.etcd_addrs.n = 1;
    cfg.etcd_addrs.v = addrs;
    cfg.etcd_root = "openim";
    cfg.etcd_username = "";
    struct imp_registry *reg = imp_registry_create(names, sizeof(names) / sizeof(names[0]));
    struct imp_etcd *e = imp_etcd_create(loop, NULL, &cfg, reg, NULL, NULL);

    const char *s = (const char *)data;
    const char *nl = memchr(s, '\n', size);
    size_t first = nl ? (size_t)(nl - s) : size;
    if (list_apply(e, s, first) == 0) e->synced = 1;
    check(e, 0);

    size_t off = nl ? first + 1 : size, piece = size % 61 + 1;
    e->state = ST_WATCH;
    while (off < size) {
        size_t n = IMP_MIN(piece, size - off);
        long long before = e->revision;
        if (on_watch_chunk(e, s + off, n) != 0) {
            /* the stream ended: a new one (after a list, or a reconnect) */
            e->state = ST_WATCH;
            imp_buf_reset(&e->line);
        }
        check(e, before);
        off += n;
    }
    imp_etcd_destroy(e);
    imp_registry_destroy(reg);
    return 0;
}

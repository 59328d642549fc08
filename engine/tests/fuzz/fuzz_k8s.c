/* libFuzzer: what impulse's Kubernetes discovery reads from the API
 * server. The input's first line is the body of an EndpointsList reply
 * (the list), the rest the watch stream (newline-delimited {"type",
 * "object"} events), handed to the client's real chunk handler in pieces
 * of 1 to 61 bytes so lines arrive split; a line that ends the stream (an
 * ERROR event, garbage) starts a new one with what follows, as the client
 * does after listing again or reconnecting. After each piece: every
 * tracked service's list holds addresses with a port and a ring name each,
 * the registry agrees with it, and the resourceVersion stays a bounded
 * string; no crash, leak or undefined behaviour.
 *
 * The client's file is compiled in whole (its handlers are static); no
 * request is ever started: the HTTP client is NULL and the state machine
 * is driven by hand. */
#include "net/k8s.c"

#include "base/log.h"

static const char *const names[] = {"msggateway", "openimserver-openim-msggateway:88", "user",
                                    "group"};

static void check(struct imp_k8s *k)
{
    if (strlen(k->rv) >= sizeof(k->rv)) __builtin_trap();
    for (size_t i = 0; i < k->nsvc; i++) {
        const struct svc *s = &k->svcs[i];
        for (size_t a = 0; a < s->n; a++) {
            const char *colon = strrchr(s->addrs[a], ':');
            if (!colon || atoi(colon + 1) <= 0 || !s->keys[a][0]) __builtin_trap();
        }
        struct imp_svclist *l = imp_registry_fetch(k->reg, s->name);
        if (l->n > s->n) __builtin_trap(); /* sorted and de-duplicated: never more */
        for (size_t a = 0; a < l->n; a++)
            if (!l->keys || !l->keys[a]) __builtin_trap();
        imp_svclist_release(l);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ev_loop *loop;
    if (!loop) {
        loop = ev_loop_new(EVFLAG_AUTO);
        imp_log_set_level(IMP_LOG_ERROR); /* the client's warnings: not per input */
    }
    struct imp_config cfg = {0};
    cfg.k8s = true;
    cfg.k8s_namespace = "openim";
    cfg.k8s_api = "https://127.0.0.1:6443";
    cfg.k8s_sa_dir = "/nonexistent";
    cfg.gw_hash_port = 88;
    struct imp_registry *reg = imp_registry_create(names, sizeof(names) / sizeof(names[0]));
    struct imp_k8s *k = imp_k8s_create(loop, NULL, &cfg, reg, NULL, NULL);

    const char *s = (const char *)data;
    const char *nl = memchr(s, '\n', size);
    size_t first = nl ? (size_t)(nl - s) : size;
    if (list_apply(k, s, first) == 0) k->synced = 1;
    check(k);

    size_t off = nl ? first + 1 : size, piece = size % 61 + 1;
    k->state = ST_WATCH;
    while (off < size) {
        size_t n = IMP_MIN(piece, size - off);
        if (on_watch_chunk(k, s + off, n) != 0) {
            k->state = ST_WATCH; /* the stream ended: a new one */
            imp_buf_reset(&k->line);
        }
        check(k);
        off += n;
    }
    imp_k8s_destroy(k);
    imp_registry_destroy(reg);
    return 0;
}

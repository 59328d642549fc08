/*
 * Linear probing over indices into items; the index doubles at 50% load.
 *
 * Used by one thread at a time: a message's recipients (push/fanout.c),
 * the walk of a link delete (state/cache/link.c).
 */
#include "base/strset.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"

#define EMPTY ((size_t)-1)

void imp_strset_init(struct imp_strset *s) { memset(s, 0, sizeof(*s)); }

void imp_strset_dispose(struct imp_strset *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->items[i]);
    free(s->items);
    free(s->index);
    memset(s, 0, sizeof(*s));
}

static void reindex(struct imp_strset *s, size_t icap)
{
    free(s->index);
    s->icap = icap;
    s->index = imp_xmalloc(icap * sizeof(size_t));
    for (size_t i = 0; i < icap; i++) s->index[i] = EMPTY;
    for (size_t k = 0; k < s->n; k++) {
        size_t i = imp_fnv1a64(s->items[k], strlen(s->items[k])) & (icap - 1);
        while (s->index[i] != EMPTY) i = (i + 1) & (icap - 1);
        s->index[i] = k;
    }
}

size_t imp_strset_find(const struct imp_strset *s, const char *str, size_t len)
{
    if (!s->icap) return EMPTY;
    size_t i = imp_fnv1a64(str, len) & (s->icap - 1);
    while (s->index[i] != EMPTY) {
        const char *it = s->items[s->index[i]];
        if (strncmp(it, str, len) == 0 && it[len] == '\0') return s->index[i];
        i = (i + 1) & (s->icap - 1);
    }
    return EMPTY;
}

int imp_strset_add(struct imp_strset *s, const char *str, size_t len)
{
    if (imp_strset_find(s, str, len) != EMPTY) return 0;
    if ((s->n + 1) * 2 > s->icap) reindex(s, s->icap ? s->icap * 2 : 16);
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->items = imp_xrealloc(s->items, s->cap * sizeof(char *));
    }
    s->items[s->n] = imp_xstrndup(str, len);
    size_t i = imp_fnv1a64(str, len) & (s->icap - 1);
    while (s->index[i] != EMPTY) i = (i + 1) & (s->icap - 1);
    s->index[i] = s->n++;
    return 1;
}

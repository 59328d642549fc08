/* Links: both directions recorded, deleting a key deletes its whole
 * connected component (transitively, across shards), and nothing else. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/cache/link.h"
#include "t.h"

static char got[1024];
static int ngot;

static void collect(void *ud, const char *key, size_t klen)
{
    (void)ud;
    ngot++;
    strncat(got, key, klen);
    strcat(got, " ");
}

static size_t del(struct imp_link *l, const char *k)
{
    got[0] = '\0';
    ngot = 0;
    return imp_link_del(l, k, strlen(k), collect, NULL);
}

static int has(const char *k)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "%s ", k);
    for (const char *p = got; (p = strstr(p, pat)); p++)
        if (p == got || p[-1] == ' ') return 1;
    return 0;
}

static void lnk(struct imp_link *l, const char *k, const char *a, const char *b)
{
    const char *ls[2] = {a, b};
    size_t lens[2] = {strlen(a), b ? strlen(b) : 0};
    imp_link_add(l, k, strlen(k), ls, lens, b ? 2 : 1);
}

int main(void)
{
    struct imp_link *l = imp_link_create(4);

    /* Unlinked: only the key itself. */
    CHECK(del(l, "alone") == 1 && has("alone"));

    /* A chain g1 - m1 - m2 - g2 and a separate pair x - y. */
    lnk(l, "GROUP_MEMBER_IDS:g1", "GROUP_MEMBER_INFO:g1:m1", NULL);
    lnk(l, "GROUP_MEMBER_INFO:g1:m1", "GROUP_MEMBER_INFO:g1:m2", NULL);
    lnk(l, "GROUP_MEMBER_IDS:g2", "GROUP_MEMBER_INFO:g1:m2", "GROUP_MEMBER_IDS:g2");
    lnk(l, "x", "y", "y"); /* duplicates ignored */
    CHECK(imp_link_count(l) == 6);
    imp_link_check(l);

    /* Deleting from the middle removes the whole component, transitively. */
    CHECK(del(l, "GROUP_MEMBER_INFO:g1:m2") == 4);
    CHECK(has("GROUP_MEMBER_IDS:g1") && has("GROUP_MEMBER_INFO:g1:m1"));
    CHECK(has("GROUP_MEMBER_INFO:g1:m2") && has("GROUP_MEMBER_IDS:g2"));
    CHECK(!has("x") && !has("y"));
    CHECK(imp_link_count(l) == 2);
    imp_link_check(l);
    CHECK(del(l, "GROUP_MEMBER_IDS:g1") == 1); /* the links went with it */

    /* From the other side of a pair. */
    CHECK(del(l, "y") == 2 && has("x") && has("y"));
    CHECK(imp_link_count(l) == 0);

    /* A cycle and a star across many keys. */
    char k[32], k2[32];
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof(k), "c%d", i);
        snprintf(k2, sizeof(k2), "c%d", (i + 1) % 100);
        lnk(l, k, k2, NULL);
    }
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof(k), "leaf%d", i);
        lnk(l, "hub", k, NULL);
    }
    imp_link_check(l);
    CHECK(imp_link_count(l) == 151);
    CHECK(del(l, "leaf7") == 51 && has("hub") && has("leaf49") && !has("c0"));
    CHECK(del(l, "c42") == 100 && ngot == 100);
    CHECK(imp_link_count(l) == 0);
    imp_link_check(l);

    /* Destroy with links left. */
    lnk(l, "a", "b", "c");
    imp_link_destroy(l);
    return t_done("cache_link");
}

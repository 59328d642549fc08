/* Simple LRU: eviction order, add/get/peek/contains/remove semantics, the
 * eviction callback, keys oldest to newest, purge, the type table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/cache/lru.h"
#include "t.h"

static char evicted[64][16];
static int nevicted, nfreed, ndup;

static void on_evict(void *ud, const char *key, size_t klen, void *val)
{
    (void)ud;
    (void)val;
    snprintf(evicted[nevicted++ % 64], 16, "%.*s", (int)klen, key);
}

static void *int_dup(void *v)
{
    ndup++;
    int *p = malloc(sizeof(int));
    *p = *(int *)v;
    return p;
}

static void int_free(void *v)
{
    nfreed++;
    free(v);
}

static const struct imp_lru_type int_type = {.dup = int_dup, .free = int_free};

static int add(struct imp_lru *c, const char *k, int v) { return imp_lru_add(c, k, strlen(k), &v); }

static int get(struct imp_lru *c, const char *k)
{
    void *v;
    return imp_lru_get(c, k, strlen(k), &v) ? *(int *)v : -1;
}

static char keys[256];

static void key_cat(void *ud, const char *key, size_t klen, void *val)
{
    (void)ud;
    (void)val;
    strncat(keys, key, klen);
    strcat(keys, ",");
}

static const char *list(struct imp_lru *c)
{
    keys[0] = '\0';
    imp_lru_keys(c, key_cat, NULL);
    return keys;
}

static void basics(void)
{
    struct imp_lru *c = imp_lru_create(3, &int_type, on_evict, NULL);
    CHECK(imp_lru_create(0, &int_type, NULL, NULL) == NULL);
    CHECK(add(c, "a", 1) == 0);
    CHECK(add(c, "b", 2) == 0);
    CHECK(add(c, "c", 3) == 0);
    CHECK_STR(list(c), "a,b,c,");
    CHECK(imp_lru_len(c) == 3);
    imp_lru_check(c);

    /* Add of an existing key: new value, to the front, no eviction. */
    CHECK(add(c, "a", 10) == 0);
    CHECK(nevicted == 0);
    CHECK(nfreed == 1); /* the old value of a */
    CHECK_STR(list(c), "b,c,a,");
    CHECK(get(c, "a") == 10);

    /* Get moves to the front; the oldest goes first. */
    CHECK(get(c, "b") == 2);
    CHECK_STR(list(c), "c,a,b,");
    CHECK(add(c, "d", 4) == 1);
    CHECK(nevicted == 1);
    CHECK_STR(evicted[0], "c");
    CHECK_STR(list(c), "a,b,d,");
    CHECK(get(c, "c") == -1);

    /* Peek and contains do not move. */
    void *v;
    CHECK(imp_lru_peek(c, "a", 1, &v) == 1 && *(int *)v == 10);
    CHECK(imp_lru_contains(c, "a", 1) == 1);
    CHECK(imp_lru_contains(c, "zz", 2) == 0);
    CHECK(imp_lru_peek(c, "zz", 2, &v) == 0);
    CHECK_STR(list(c), "a,b,d,");
    CHECK(add(c, "e", 5) == 1);
    CHECK_STR(evicted[1], "a");
    CHECK_STR(list(c), "b,d,e,");

    /* Oldest. */
    const char *k;
    size_t kl;
    CHECK(imp_lru_get_oldest(c, &k, &kl, &v) == 1 && kl == 1 && k[0] == 'b' && *(int *)v == 2);
    CHECK(imp_lru_remove_oldest(c) == 1);
    CHECK_STR(evicted[2], "b");
    CHECK_STR(list(c), "d,e,");

    /* Remove calls the callback and frees. */
    int before = nfreed;
    CHECK(imp_lru_remove(c, "d", 1) == 1);
    CHECK_STR(evicted[3], "d");
    CHECK(nfreed == before + 1);
    CHECK(imp_lru_remove(c, "d", 1) == 0);
    CHECK(imp_lru_len(c) == 1);
    imp_lru_check(c);

    /* Purge: callback for each, oldest first. */
    add(c, "f", 6);
    add(c, "g", 7);
    nevicted = 0;
    imp_lru_purge(c);
    CHECK(nevicted == 3);
    CHECK_STR(evicted[0], "e");
    CHECK_STR(evicted[2], "g");
    CHECK(imp_lru_len(c) == 0);
    CHECK(imp_lru_remove_oldest(c) == 0);
    CHECK(imp_lru_get_oldest(c, NULL, NULL, NULL) == 0);
    CHECK_STR(list(c), "");
    imp_lru_check(c);

    /* Destroy frees without callbacks. */
    add(c, "h", 8);
    nevicted = 0;
    before = nfreed;
    imp_lru_destroy(c);
    CHECK(nevicted == 0);
    CHECK(nfreed == before + 1);
    CHECK(ndup == nfreed);
}

/* Binary keys, a growing table, and ownership without a dup. */
static void many(void)
{
    enum { N = 5000, SIZE = 1000 };
    nfreed = 0;
    const struct imp_lru_type own = {.dup = NULL, .free = int_free};
    struct imp_lru *c = imp_lru_create(SIZE, &own, NULL, NULL);
    char key[16];
    for (int i = 0; i < N; i++) {
        int *v = malloc(sizeof(int));
        *v = i;
        memset(key, 0, sizeof(key));
        memcpy(key, &i, sizeof(i)); /* embedded NULs */
        imp_lru_add(c, key, sizeof(key), v);
        if (i % 997 == 0) imp_lru_check(c);
    }
    CHECK(imp_lru_len(c) == SIZE);
    CHECK(nfreed == N - SIZE);
    int hits = 0;
    for (int i = 0; i < N; i++) {
        void *v;
        memset(key, 0, sizeof(key));
        memcpy(key, &i, sizeof(i));
        if (imp_lru_peek(c, key, sizeof(key), &v)) {
            hits++;
            CHECK(*(int *)v == i && i >= N - SIZE);
        }
    }
    CHECK(hits == SIZE);
    imp_lru_check(c);
    imp_lru_destroy(c);
    CHECK(nfreed == N);

    /* No type table: values are neither copied nor freed. */
    static int x = 42;
    c = imp_lru_create(1, NULL, NULL, NULL);
    imp_lru_add(c, "k", 1, &x);
    imp_lru_add(c, "j", 1, &x);
    void *v = NULL;
    CHECK(imp_lru_get(c, "j", 1, &v) == 1 && v == &x);
    imp_lru_destroy(c);
}

int main(void)
{
    basics();
    many();
    return t_done("cache_lru");
}

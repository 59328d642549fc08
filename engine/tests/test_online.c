/* Online table and online_change parsing. */
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "online.h"
#include "t.h"

static int parse(const char *p, const char **uid, size_t *ul, uint64_t *set)
{
    char err[160];
    return imp_online_parse_change(p, strlen(p), uid, ul, set, err, sizeof(err));
}

static void parsing(void)
{
    const char *uid;
    size_t ul;
    uint64_t set;
    CHECK(parse("1:5:user42", &uid, &ul, &set) == 0);
    CHECK(ul == 6 && memcmp(uid, "user42", 6) == 0);
    CHECK(set == ((1ULL << 1) | (1ULL << 5)));
    CHECK(parse("user42", &uid, &ul, &set) == 0); /* bare user: offline */
    CHECK(set == 0 && ul == 6);
    CHECK(parse("2:u", &uid, &ul, &set) == 0 && set == (1ULL << 2));
    CHECK(parse("x:user", &uid, &ul, &set) == IMP_EINVAL); /* non-integer platform */
    CHECK(parse("1:", &uid, &ul, &set) == IMP_EINVAL);     /* empty user */
    CHECK(parse("", &uid, &ul, &set) == IMP_EINVAL);
    CHECK(parse("1::u", &uid, &ul, &set) == IMP_EINVAL); /* empty platform */
    CHECK(parse("64:u", &uid, &ul, &set) == IMP_EINVAL); /* out of range */
    CHECK(parse("-1:u", &uid, &ul, &set) == IMP_EINVAL);
    CHECK(parse("1.5:u", &uid, &ul, &set) == IMP_EINVAL);
}

static void table(void)
{
    struct imp_online *t = imp_online_create(4);
    char id[32];
    for (int i = 0; i < 10000; i++) {
        int n = snprintf(id, sizeof(id), "u%d", i);
        imp_online_set(t, id, (size_t)n, 1ULL << (i % 10 + 1), 1);
    }
    CHECK(imp_online_count(t) == 10000);
    CHECK(imp_online_get(t, "u7", 2) == 1ULL << 8);
    CHECK(imp_online_get(t, "nobody", 6) == 0);
    /* removing every other user keeps the rest findable */
    for (int i = 0; i < 10000; i += 2) {
        int n = snprintf(id, sizeof(id), "u%d", i);
        imp_online_set(t, id, (size_t)n, 0, 1);
    }
    imp_online_check(t);
    int found = 0;
    for (int i = 0; i < 10000; i++) {
        int n = snprintf(id, sizeof(id), "u%d", i);
        if (imp_online_get(t, id, (size_t)n))
            found++;
        else if (i % 2)
            found = -100000;
    }
    CHECK(found == 5000);
    /* a reload: users written at gen 2 survive the sweep, others go */
    imp_online_set(t, "u1", 2, 1ULL << 1, 2);
    imp_online_set(t, "u3", 2, 1ULL << 1, 2);
    CHECK(imp_online_sweep(t, 2) == 4998);
    CHECK(imp_online_count(t) == 2);
    CHECK(imp_online_get(t, "u5", 2) == 0);
    imp_online_check(t);
    imp_online_destroy(t);
}

int main(void)
{
    parsing();
    table();
    return t_done("online");
}

/* Keyed queue: same key in order, one at a time; keys independent. */
#include <stdlib.h>

#include "base/keyq.h"
#include "t.h"

struct item {
    struct imp_keyq_node node;
    int id;
};

int main(void)
{
    struct imp_keyq q;
    struct item it[6];
    imp_keyq_init(&q);
    for (int i = 0; i < 6; i++) it[i].id = i;

    CHECK(imp_keyq_push(&q, "a_b", 3, &it[0].node) == 1);
    CHECK(imp_keyq_push(&q, "a_b", 3, &it[1].node) == 0);
    CHECK(imp_keyq_push(&q, "g1", 2, &it[2].node) == 1);
    CHECK(imp_keyq_push(&q, "a_b", 3, &it[3].node) == 0);
    CHECK(imp_keyq_push(&q, "", 0, &it[4].node) == 1); /* no key: runs at once */
    CHECK(imp_keyq_push(&q, "", 0, &it[5].node) == 1);
    CHECK(q.nkeys == 2);
    CHECK(q.nnodes == 6);
    imp_keyq_check(&q);

    CHECK((struct item *)imp_keyq_pop(&q, &it[0].node) == &it[1]);
    CHECK(imp_keyq_pop(&q, &it[2].node) == NULL);
    CHECK(q.nkeys == 1);
    CHECK((struct item *)imp_keyq_pop(&q, &it[1].node) == &it[3]);
    CHECK(imp_keyq_pop(&q, &it[3].node) == NULL);
    CHECK(imp_keyq_pop(&q, &it[4].node) == NULL);
    CHECK(imp_keyq_pop(&q, &it[5].node) == NULL);
    CHECK(q.nkeys == 0);
    CHECK(q.nnodes == 0);
    imp_keyq_check(&q);

    /* Growth past the initial buckets, with a key reused after it empties. */
    enum { N = 3000 };
    struct item *many = calloc(N * 2, sizeof(*many));
    char key[32];
    int firsts = 0;
    for (int i = 0; i < N * 2; i++) {
        int n = snprintf(key, sizeof(key), "conv-%d", i % N);
        firsts += imp_keyq_push(&q, key, (size_t)n, &many[i].node);
    }
    CHECK(firsts == N);
    CHECK(q.nkeys == N);
    imp_keyq_check(&q);
    int chained = 0;
    for (int i = 0; i < N; i++)
        if (imp_keyq_pop(&q, &many[i].node) == &many[i + N].node) chained++;
    CHECK(chained == N);
    for (int i = N; i < N * 2; i++) imp_keyq_pop(&q, &many[i].node);
    CHECK(q.nkeys == 0 && q.nnodes == 0);
    CHECK(imp_keyq_push(&q, "conv-1", 6, &many[0].node) == 1);
    imp_keyq_pop(&q, &many[0].node);
    imp_keyq_check(&q);
    free(many);
    imp_keyq_dispose(&q);
    return t_done("keyq");
}

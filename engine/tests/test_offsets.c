/* Offset tracker: the stored offset only ever covers a finished prefix. */
#include <stdlib.h>

#include "base/common.h"
#include "base/offsets.h"
#include "t.h"

static void in_order(void)
{
    struct imp_offsets t;
    uint64_t s[3];
    imp_offsets_init(&t);
    CHECK(imp_offsets_add(&t, 10, &s[0]) == 0);
    CHECK(imp_offsets_add(&t, 11, &s[1]) == 0);
    CHECK(imp_offsets_add(&t, 12, &s[2]) == 0);
    CHECK(imp_offsets_done(&t, s[0]) == 11);
    CHECK(imp_offsets_done(&t, s[1]) == 12);
    CHECK(imp_offsets_done(&t, s[2]) == 13);
    CHECK(imp_offsets_pending(&t) == 0);
    imp_offsets_check(&t);
    imp_offsets_dispose(&t);
}

static void out_of_order(void)
{
    struct imp_offsets t;
    uint64_t s[4];
    imp_offsets_init(&t);
    imp_offsets_add(&t, 5, &s[0]);
    imp_offsets_add(&t, 7, &s[1]); /* gaps (compaction, markers) are fine */
    imp_offsets_add(&t, 8, &s[2]);
    imp_offsets_add(&t, 20, &s[3]);
    CHECK(imp_offsets_done(&t, s[2]) == -1); /* 5 and 7 still running */
    CHECK(imp_offsets_done(&t, s[1]) == -1);
    CHECK(imp_offsets_pending(&t) == 4);
    CHECK(imp_offsets_done(&t, s[0]) == 9);  /* 5, 7, 8 finished: next is 9 */
    CHECK(imp_offsets_done(&t, s[0]) == -1); /* repeated: ignored */
    CHECK(imp_offsets_done(&t, s[3]) == 21);
    CHECK(imp_offsets_done(&t, 999) == -1); /* unknown: ignored */
    imp_offsets_check(&t);
    imp_offsets_dispose(&t);
}

static void redelivery(void)
{
    struct imp_offsets t;
    uint64_t s;
    imp_offsets_init(&t);
    CHECK(imp_offsets_add(&t, 3, &s) == 0);
    CHECK(imp_offsets_add(&t, 3, &s) == IMP_EINVAL);
    CHECK(imp_offsets_add(&t, 2, &s) == IMP_EINVAL);
    imp_offsets_dispose(&t);
}

/* Many entries finishing in random order: the stored offset never moves
 * past an unfinished one, and ends one past the last. */
static void random_order(void)
{
    enum { N = 5000 };
    struct imp_offsets t;
    static uint64_t seq[N];
    static int order[N], done[N];
    imp_offsets_init(&t);
    for (int i = 0; i < N; i++) {
        CHECK(imp_offsets_add(&t, 100 + i * 2, &seq[i]) == 0);
        order[i] = i;
    }
    srand(42);
    for (int i = N - 1; i > 0; i--) {
        int j = rand() % (i + 1);
        int x = order[i];
        order[i] = order[j];
        order[j] = x;
    }
    int64_t stored = -1;
    int bad = 0;
    for (int k = 0; k < N; k++) {
        int i = order[k];
        done[i] = 1;
        int64_t next = imp_offsets_done(&t, seq[i]);
        if (next >= 0) {
            if (next <= stored) bad++;
            stored = next;
            /* every entry below next must be done */
            for (int j = 0; j < N && 100 + j * 2 < next; j++)
                if (!done[j]) bad++;
        }
        if (k % 500 == 0) imp_offsets_check(&t);
    }
    CHECK(bad == 0);
    CHECK(stored == 100 + (N - 1) * 2 + 1);
    imp_offsets_dispose(&t);
}

int main(void)
{
    in_order();
    out_of_order();
    redelivery();
    random_order();
    return t_done("offsets");
}

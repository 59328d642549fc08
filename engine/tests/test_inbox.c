/* Inbox: posts made before the owner starts are not lost; posts from
 * another thread run on the owner's loop, in order. */
#include <pthread.h>

#include "base/inbox.h"
#include "t.h"

static int order[8], n;

static void record(void *arg) { order[n++] = (int)(long)arg; }

static void *poster(void *arg)
{
    struct imp_inbox *ib = arg;
    for (long i = 3; i <= 5; i++) imp_inbox_post(ib, record, (void *)i);
    return NULL;
}

static void stop(void *arg) { ev_break(arg, EVBREAK_ALL); }

int main(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct imp_inbox ib;
    imp_inbox_init(&ib, loop);
    /* before the owner starts: must run once it does */
    imp_inbox_post(&ib, record, (void *)1);
    imp_inbox_post(&ib, record, (void *)2);
    imp_inbox_start(&ib);
    ev_run(loop, EVRUN_NOWAIT);
    CHECK(n == 2 && order[0] == 1 && order[1] == 2);

    pthread_t th;
    pthread_create(&th, NULL, poster, &ib);
    pthread_join(th, NULL);
    imp_inbox_post(&ib, stop, loop);
    ev_run(loop, 0);
    CHECK(n == 5 && order[2] == 3 && order[3] == 4 && order[4] == 5);

    imp_inbox_close(&ib);
    CHECK(imp_inbox_post(&ib, record, (void *)9) != 0); /* refused after close */
    CHECK(n == 5);
    imp_inbox_dispose(&ib);
    ev_loop_destroy(loop);
    return t_done("inbox");
}

/*
 * A barrier a party can leave: like pthread_barrier_t, but when one of
 * its threads will never arrive (a worker stuck in a C call), the engine
 * takes that party off and the others are not held up by it.
 */
#ifndef IMP_BARRIER_H
#define IMP_BARRIER_H

#include <pthread.h>

struct imp_barrier {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned parties; /* who must arrive to release a round */
    unsigned arrived; /* in the current round */
    unsigned long round;
};

void imp_barrier_init(struct imp_barrier *b, unsigned parties);
void imp_barrier_destroy(struct imp_barrier *b);
/* Waits until every party of this round has arrived (or left). */
void imp_barrier_wait(struct imp_barrier *b);
/* One party will not come again: every later round (and the current one,
 * if the others are all waiting in it) releases without it. */
void imp_barrier_leave(struct imp_barrier *b);

#endif

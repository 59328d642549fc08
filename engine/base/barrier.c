/*
 * A barrier a party can leave (base/barrier.h): a round ends when
 * `arrived` reaches `parties`; its waiters watch the round number, so a
 * spurious wake-up or the next round's arrivals never release them early
 * or late.
 */
#include "base/barrier.h"

static void release_round(struct imp_barrier *b)
{
    b->arrived = 0;
    b->round++;
    pthread_cond_broadcast(&b->cond);
}

void imp_barrier_init(struct imp_barrier *b, unsigned parties)
{
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    b->parties = parties;
    b->arrived = 0;
    b->round = 0;
}

void imp_barrier_destroy(struct imp_barrier *b)
{
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->lock);
}

void imp_barrier_wait(struct imp_barrier *b)
{
    pthread_mutex_lock(&b->lock);
    unsigned long round = b->round;
    if (++b->arrived >= b->parties) {
        release_round(b);
    } else {
        while (b->round == round) pthread_cond_wait(&b->cond, &b->lock);
    }
    pthread_mutex_unlock(&b->lock);
}

void imp_barrier_leave(struct imp_barrier *b)
{
    pthread_mutex_lock(&b->lock);
    if (b->parties > 0) b->parties--;
    if (b->arrived > 0 && b->arrived >= b->parties) release_round(b);
    pthread_mutex_unlock(&b->lock);
}

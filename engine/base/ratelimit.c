/*
 * Rate limits shared by the workers (ratelimit.h).
 *
 * Buckets: one per name in a process-wide list (a handful: one per
 * provider or app pool), each under its own mutex. A take refills the
 * bucket from the time since the last one (rate per second, up to
 * burst), then takes a token if one is there and no higher lane has a
 * request waiting for a token; the waiting counts are atomics every
 * worker raises while its head request of a lane is refused, so strict
 * priority holds across workers without a shared queue. Lower lanes can
 * starve while higher ones have more demand than the rate: that is what
 * the lanes are for.
 *
 * Devices: 2^20 slots of 64 bits (8 MiB, allocated on first use), each
 * the window number (high 32 bits) and the count in it (low 32), updated
 * by compare-and-swap. A slot whose window is old counts from zero.
 * Nothing is ever evicted; a device's slot is its hash's low 20 bits.
 */
#include "base/ratelimit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"

struct imp_ratelimit {
    struct imp_ratelimit *next;
    char *name;
    pthread_mutex_t lock;
    double rate, burst; /* rate <= 0: unlimited */
    double tokens;
    uint64_t last_us;
    _Atomic uint64_t taken;
    _Atomic int waiting[IMP_RATELIMIT_LANES];
};

static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct imp_ratelimit *buckets;

#define DEVICE_BITS 20
static _Atomic(_Atomic uint64_t *) devices;

struct imp_ratelimit *imp_ratelimit_fetch(const char *name)
{
    pthread_mutex_lock(&list_lock);
    struct imp_ratelimit *rl = buckets;
    while (rl && strcmp(rl->name, name) != 0) rl = rl->next;
    if (!rl) {
        rl = imp_xcalloc(1, sizeof(*rl));
        rl->name = imp_xstrdup(name);
        pthread_mutex_init(&rl->lock, NULL);
        rl->next = buckets;
        buckets = rl;
    }
    pthread_mutex_unlock(&list_lock);
    return rl;
}

void imp_ratelimit_set(struct imp_ratelimit *rl, double rate, double burst)
{
    pthread_mutex_lock(&rl->lock);
    if (rate != rl->rate || burst != rl->burst) {
        if (rl->rate <= 0) rl->tokens = burst < 1 ? 1 : burst; /* newly limited: full */
        rl->rate = rate;
        rl->burst = burst < 1 ? 1 : burst;
        if (rl->tokens > rl->burst) rl->tokens = rl->burst;
    }
    pthread_mutex_unlock(&rl->lock);
}

int imp_ratelimit_take(struct imp_ratelimit *rl, int lane, uint64_t now_us, uint64_t *retry_us)
{
    for (int l = 0; l < lane && l < IMP_RATELIMIT_LANES; l++) {
        if (atomic_load(&rl->waiting[l]) > 0) {
            /* a higher lane is short of tokens: try again in a while */
            *retry_us = now_us + 2000;
            return 0;
        }
    }
    int ok = 0;
    pthread_mutex_lock(&rl->lock);
    if (rl->rate <= 0) {
        ok = 1;
    } else {
        if (rl->last_us && now_us > rl->last_us) {
            rl->tokens += (double)(now_us - rl->last_us) * rl->rate / 1e6;
            if (rl->tokens > rl->burst) rl->tokens = rl->burst;
        }
        if (now_us > rl->last_us || !rl->last_us) rl->last_us = now_us;
        if (rl->tokens >= 1) {
            rl->tokens -= 1;
            ok = 1;
        } else {
            *retry_us = now_us + (uint64_t)((1 - rl->tokens) * 1e6 / rl->rate) + 1;
        }
    }
    pthread_mutex_unlock(&rl->lock);
    if (ok) atomic_fetch_add(&rl->taken, 1);
    return ok;
}

void imp_ratelimit_waiting(struct imp_ratelimit *rl, int lane, int delta)
{
    if (lane >= 0 && lane < IMP_RATELIMIT_LANES) atomic_fetch_add(&rl->waiting[lane], delta);
}

uint64_t imp_ratelimit_taken(struct imp_ratelimit *rl) { return atomic_load(&rl->taken); }

int imp_ratelimit_device(uint64_t device, int max, int interval_s, uint64_t now_s,
                         uint64_t *retry_s)
{
    if (max <= 0 || interval_s <= 0) return 1;
    _Atomic uint64_t *table = atomic_load(&devices);
    if (!table) {
        _Atomic uint64_t *made = imp_xcalloc((size_t)1 << DEVICE_BITS, sizeof(*made));
        _Atomic uint64_t *none = NULL;
        if (atomic_compare_exchange_strong(&devices, &none, made))
            table = made;
        else {
            free(made);
            table = none;
        }
    }
    _Atomic uint64_t *slot = &table[device & (((uint64_t)1 << DEVICE_BITS) - 1)];
    uint64_t window = now_s / (uint64_t)interval_s;
    uint64_t cur = atomic_load(slot);
    for (;;) {
        uint64_t w = cur >> 32, n = cur & 0xffffffffu;
        if (w != (window & 0xffffffffu)) n = 0;
        if (n >= (uint64_t)max) {
            *retry_s = (window + 1) * (uint64_t)interval_s;
            return 0;
        }
        uint64_t next = ((window & 0xffffffffu) << 32) | (n + 1);
        if (atomic_compare_exchange_weak(slot, &cur, next)) return 1;
    }
}

void imp_ratelimit_shutdown(void)
{
    pthread_mutex_lock(&list_lock);
    while (buckets) {
        struct imp_ratelimit *rl = buckets;
        buckets = rl->next;
        pthread_mutex_destroy(&rl->lock);
        free(rl->name);
        free(rl);
    }
    pthread_mutex_unlock(&list_lock);
    free((void *)atomic_exchange(&devices, NULL));
}

/*
 * Each shard is a linear-probing table of entries {hash, key, platforms,
 * gen}; deletion shifts later entries back (no tombstones), the table
 * doubles at 70% load. Keys are one allocation each holding length and
 * bytes; issue 3 replaces this with an arena for 1M+ users.
 */
#include "online.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

struct entry {
    uint64_t hash; /* 0 marks an empty slot (real hashes are forced odd) */
    char *key;     /* len bytes, not NUL-terminated */
    uint32_t len;
    uint32_t gen;
    uint64_t platforms;
};

struct shard {
    pthread_rwlock_t lock;
    struct entry *e;
    size_t cap; /* power of two */
    size_t n;
};

struct imp_online {
    unsigned nshards;
    struct shard *shards;
};

struct imp_online *imp_online_create(unsigned nshards)
{
    if (nshards == 0) nshards = 64;
    struct imp_online *t = imp_xcalloc(1, sizeof(*t));
    t->nshards = nshards;
    t->shards = imp_xcalloc(nshards, sizeof(*t->shards));
    for (unsigned i = 0; i < nshards; i++) {
        pthread_rwlock_init(&t->shards[i].lock, NULL);
        t->shards[i].cap = 16;
        t->shards[i].e = imp_xcalloc(16, sizeof(struct entry));
    }
    return t;
}

void imp_online_destroy(struct imp_online *t)
{
    if (!t) return;
    for (unsigned i = 0; i < t->nshards; i++) {
        struct shard *s = &t->shards[i];
        for (size_t j = 0; j < s->cap; j++) free(s->e[j].key);
        free(s->e);
        pthread_rwlock_destroy(&s->lock);
    }
    free(t->shards);
    free(t);
}

static uint64_t key_hash(const char *uid, size_t len) { return imp_fnv1a64(uid, len) | 1; }

static struct shard *shard_of(struct imp_online *t, uint64_t h)
{
    return &t->shards[(h >> 32) % t->nshards];
}

static size_t find(const struct shard *s, uint64_t h, const char *uid, size_t len, int *found)
{
    size_t mask = s->cap - 1, i = h & mask;
    for (;;) {
        const struct entry *e = &s->e[i];
        if (e->hash == 0) {
            *found = 0;
            return i;
        }
        if (e->hash == h && e->len == len && memcmp(e->key, uid, len) == 0) {
            *found = 1;
            return i;
        }
        i = (i + 1) & mask;
    }
}

static void grow(struct shard *s)
{
    size_t ocap = s->cap;
    struct entry *old = s->e;
    s->cap = ocap * 2;
    s->e = imp_xcalloc(s->cap, sizeof(struct entry));
    for (size_t i = 0; i < ocap; i++) {
        if (!old[i].hash) continue;
        size_t j = old[i].hash & (s->cap - 1);
        while (s->e[j].hash) j = (j + 1) & (s->cap - 1);
        s->e[j] = old[i];
    }
    free(old);
}

/* Backward-shift deletion keeps every probe chain unbroken. */
static void remove_at(struct shard *s, size_t i)
{
    size_t mask = s->cap - 1;
    free(s->e[i].key);
    s->e[i].hash = 0;
    s->e[i].key = NULL;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!s->e[j].hash) break;
        size_t home = s->e[j].hash & mask;
        /* move j back to i when i lies cyclically in [home, j) */
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            s->e[i] = s->e[j];
            s->e[j].hash = 0;
            s->e[j].key = NULL;
            i = j;
        }
    }
    s->n--;
}

void imp_online_set(struct imp_online *t, const char *uid, size_t len, uint64_t platforms,
                    uint32_t gen)
{
    uint64_t h = key_hash(uid, len);
    struct shard *s = shard_of(t, h);
    int found;
    pthread_rwlock_wrlock(&s->lock);
    size_t i = find(s, h, uid, len, &found);
    if (found) {
        if (platforms) {
            s->e[i].platforms = platforms;
            s->e[i].gen = gen;
        } else {
            remove_at(s, i);
        }
    } else if (platforms) {
        if ((s->n + 1) * 10 > s->cap * 7) {
            grow(s);
            i = find(s, h, uid, len, &found);
        }
        s->e[i].hash = h;
        s->e[i].key = imp_xstrndup(uid, len);
        s->e[i].len = (uint32_t)len;
        s->e[i].platforms = platforms;
        s->e[i].gen = gen;
        s->n++;
    }
    pthread_rwlock_unlock(&s->lock);
}

uint64_t imp_online_get(struct imp_online *t, const char *uid, size_t len)
{
    uint64_t h = key_hash(uid, len), p = 0;
    struct shard *s = shard_of(t, h);
    int found;
    pthread_rwlock_rdlock(&s->lock);
    size_t i = find(s, h, uid, len, &found);
    if (found) p = s->e[i].platforms;
    pthread_rwlock_unlock(&s->lock);
    return p;
}

size_t imp_online_sweep(struct imp_online *t, uint32_t gen)
{
    size_t removed = 0;
    for (unsigned k = 0; k < t->nshards; k++) {
        struct shard *s = &t->shards[k];
        pthread_rwlock_wrlock(&s->lock);
        size_t i = 0;
        while (i < s->cap) {
            if (s->e[i].hash && s->e[i].gen != gen) {
                remove_at(s, i); /* may shift a later entry into i: look again */
                removed++;
                continue;
            }
            i++;
        }
        pthread_rwlock_unlock(&s->lock);
    }
    return removed;
}

size_t imp_online_count(struct imp_online *t)
{
    size_t n = 0;
    for (unsigned k = 0; k < t->nshards; k++) {
        pthread_rwlock_rdlock(&t->shards[k].lock);
        n += t->shards[k].n;
        pthread_rwlock_unlock(&t->shards[k].lock);
    }
    return n;
}

int imp_online_parse_change(const char *payload, size_t len, const char **uid, size_t *uidlen,
                            uint64_t *platforms, char *err, size_t errlen)
{
    const char *end = payload + len;
    const char *last = payload;
    for (const char *p = payload; p < end; p++)
        if (*p == ':') last = p + 1;
    if (last == end) {
        snprintf(err, errlen, "empty userID in online_change payload");
        return IMP_EINVAL;
    }
    uint64_t set = 0;
    const char *p = payload;
    while (p < last) {
        const char *colon = memchr(p, ':', (size_t)(last - p));
        size_t n = (size_t)(colon - p);
        long v = 0;
        if (n == 0 || n > 9) goto bad;
        for (size_t i = 0; i < n; i++) {
            if (p[i] < '0' || p[i] > '9') goto bad;
            v = v * 10 + (p[i] - '0');
        }
        if (v > IMP_ONLINE_MAX_PLATFORM) {
            snprintf(err, errlen, "platform %ld out of range in online_change payload", v);
            return IMP_EINVAL;
        }
        set |= 1ULL << v;
        p = colon + 1;
        continue;
    bad:
        snprintf(err, errlen, "non-integer platform '%.*s' in online_change payload",
                 (int)IMP_MIN(n, 32), p);
        return IMP_EINVAL;
    }
    *uid = last;
    *uidlen = (size_t)(end - last);
    *platforms = set;
    return 0;
}

void imp_online_check(struct imp_online *t)
{
    for (unsigned k = 0; k < t->nshards; k++) {
        struct shard *s = &t->shards[k];
        pthread_rwlock_rdlock(&s->lock);
        size_t n = 0;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->e[i].hash) continue;
            n++;
            IMP_ASSERT(s->e[i].platforms != 0);
            int found;
            size_t j = find(s, s->e[i].hash, s->e[i].key, s->e[i].len, &found);
            IMP_ASSERT(found && j == i);
        }
        IMP_ASSERT(n == s->n);
        pthread_rwlock_unlock(&s->lock);
    }
}

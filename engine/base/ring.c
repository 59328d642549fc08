/*
 * The points are a sorted array of (hash, node); a collision keeps one
 * point, the later node's, as stathat/consistent's map assignment does
 * (consistent.go:81-88); lookup is a binary search for the first hash
 * strictly greater than the key's (consistent.go:155-164).
 */
#include "base/ring.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"

struct point {
    uint32_t hash;
    uint32_t node;
    uint32_t seq; /* insertion order: the later one wins a collision */
};

struct imp_ring {
    size_t n;
    struct point *p;
};

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t imp_crc32(const void *data, size_t len)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, crc_init);
    const unsigned char *s = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) c = crc_table[(c ^ s[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static int cmp_point(const void *a, const void *b)
{
    const struct point *x = a, *y = b;
    if (x->hash != y->hash) return x->hash < y->hash ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

struct imp_ring *imp_ring_build(char *const *names, size_t n)
{
    struct imp_ring *r = imp_xcalloc(1, sizeof(*r));
    r->p = imp_xcalloc(n ? n * IMP_RING_REPLICAS : 1, sizeof(*r->p));
    char key[512];
    uint32_t seq = 0;
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < IMP_RING_REPLICAS; k++) {
            int len = snprintf(key, sizeof(key), "%d%s", k, names[i]);
            if (len < 0) continue;
            size_t l = (size_t)len < sizeof(key) ? (size_t)len : sizeof(key) - 1;
            r->p[r->n++] = (struct point){imp_crc32(key, l), (uint32_t)i, seq++};
        }
    }
    qsort(r->p, r->n, sizeof(*r->p), cmp_point);
    /* of equal hashes keep the last (the latest added) */
    size_t m = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (m && r->p[m - 1].hash == r->p[i].hash)
            r->p[m - 1] = r->p[i];
        else
            r->p[m++] = r->p[i];
    }
    r->n = m;
    return r;
}

void imp_ring_destroy(struct imp_ring *r)
{
    if (!r) return;
    free(r->p);
    free(r);
}

size_t imp_ring_get(const struct imp_ring *r, const char *key, size_t len)
{
    if (r->n == 0) return (size_t)-1;
    uint32_t h = imp_crc32(key, len);
    size_t lo = 0, hi = r->n; /* first point with hash > h */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->p[mid].hash > h)
            hi = mid;
        else
            lo = mid + 1;
    }
    if (lo == r->n) lo = 0;
    return r->p[lo].node;
}

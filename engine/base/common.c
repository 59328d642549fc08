/*
 * Error names, clocks and the aborting allocators. Nothing here keeps state.
 *
 * Called from every layer and thread.
 */
#include "base/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *imp_strerror(int err)
{
    switch (err) {
    case IMP_OK: return "ok";
    case IMP_ENOMEM: return "out of memory";
    case IMP_EINVAL: return "invalid argument";
    case IMP_EIO: return "i/o error";
    case IMP_ETIMEDOUT: return "timed out";
    case IMP_ECLOSED: return "closed";
    case IMP_EPROTO: return "protocol error";
    case IMP_EFULL: return "full";
    case IMP_ENOTFOUND: return "not found";
    case IMP_ESCRIPT: return "script error";
    default: return "unknown error";
    }
}

static uint64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t imp_now_ms(void) { return clock_ms(CLOCK_MONOTONIC); }
uint64_t imp_wall_ms(void) { return clock_ms(CLOCK_REALTIME); }
uint64_t imp_now_ms_coarse(void) { return clock_ms(CLOCK_MONOTONIC_COARSE); }

static void oom(size_t n)
{
    fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"out of memory allocating %zu bytes\"}\n", n);
    abort();
}

void *imp_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *imp_xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) oom(n * sz);
    return p;
}

void *imp_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *imp_xstrdup(const char *s) { return imp_xstrndup(s, strlen(s)); }

char *imp_xstrndup(const char *s, size_t n)
{
    char *p = imp_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void imp_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "%s:%d: invariant violated: %s\n", file, line, expr);
    abort();
}

/*
 * Shared error codes and small helpers used by every engine module.
 *
 * Functions return 0 or a negative IMP_E* code; imp_strerror() names it.
 * Detail text goes into a caller-supplied (char *err, size_t errlen).
 */
#ifndef IMP_COMMON_H
#define IMP_COMMON_H

#include <stddef.h>
#include <stdint.h>

enum {
    IMP_OK = 0,
    IMP_ENOMEM = -1,    /* allocation failed */
    IMP_EINVAL = -2,    /* bad argument or malformed input */
    IMP_EIO = -3,       /* network or system call failed */
    IMP_ETIMEDOUT = -4, /* a deadline passed */
    IMP_ECLOSED = -5,   /* the object was closed or is shutting down */
    IMP_EPROTO = -6,    /* a peer answered something we cannot parse */
    IMP_EFULL = -7,     /* a bound was reached */
    IMP_ENOTFOUND = -8, /* no such key, service or peer */
    IMP_ESCRIPT = -9,   /* a Lua script raised or returned garbage */
};

/* Names an IMP_E* code ("timed out", ...). Cannot fail. */
const char *imp_strerror(int err);

/* Milliseconds on the monotonic and on the wall clock. Cannot fail. */
uint64_t imp_now_ms(void);
uint64_t imp_wall_ms(void);
/* Monotonic milliseconds from the kernel's tick (CLOCK_MONOTONIC_COARSE:
 * 1-4 ms behind imp_now_ms, no TSC read and no LFENCE, ~5 ns against ~25
 * here): for per-lookup TTL checks, where a few ms do not matter and a
 * serializing clock read per hit would. Cannot fail. */
uint64_t imp_now_ms_coarse(void);

/* malloc that aborts on failure: used only for small bookkeeping where an
 * out-of-memory process cannot do anything useful anyway. */
void *imp_xmalloc(size_t n);
void *imp_xcalloc(size_t n, size_t sz);
void *imp_xrealloc(void *p, size_t n);
char *imp_xstrdup(const char *s);
char *imp_xstrndup(const char *s, size_t n);

/* 64-bit FNV-1a, the hash every sharded structure uses. Cannot fail. */
static inline uint64_t imp_fnv1a64(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Invariant checks for the *_check() functions tests call: always on,
 * whatever NDEBUG says, and fatal. */
void imp_assert_fail(const char *expr, const char *file, int line);
#define IMP_ASSERT(cond) ((cond) ? (void)0 : imp_assert_fail(#cond, __FILE__, __LINE__))

#define IMP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define IMP_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define IMP_MAX(a, b)    ((a) > (b) ? (a) : (b))

#endif

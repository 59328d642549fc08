/*
 * A growable byte buffer with JSON helpers. Used for log lines, HTTP
 * bodies, metrics pages and hand-encoded protobuf. Appends abort on
 * out-of-memory (imp_xrealloc); the buffer is always NUL-terminated.
 */
#ifndef IMP_BUF_H
#define IMP_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct imp_buf {
    char *data;
    size_t len;
    size_t cap;
};

void imp_buf_init(struct imp_buf *b);
void imp_buf_dispose(struct imp_buf *b);
void imp_buf_reset(struct imp_buf *b);
void imp_buf_reserve(struct imp_buf *b, size_t extra);
void imp_buf_append(struct imp_buf *b, const void *data, size_t len);
/* A stream of newline-delimited records (etcd's and Kubernetes' watches):
 * appends data to b, which holds the unfinished last line between chunks,
 * and calls line() for each complete non-empty line. A non-zero return of
 * line() stops there: b is emptied and that value returned; else 0. */
int imp_buf_take_lines(struct imp_buf *b, const char *data, size_t len,
                       int (*line)(void *arg, const char *s, size_t n), void *arg);
void imp_buf_puts(struct imp_buf *b, const char *s);
void imp_buf_putc(struct imp_buf *b, char c);
void imp_buf_printf(struct imp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void imp_buf_vprintf(struct imp_buf *b, const char *fmt, va_list ap);
/* Appends s as a quoted JSON string, escaping as RFC 8259 requires. Bytes
 * that are not valid UTF-8 are written as \u00XX so the line stays valid. */
void imp_buf_json_str(struct imp_buf *b, const char *s, size_t len);
static inline void imp_buf_json_cstr(struct imp_buf *b, const char *s)
{
    imp_buf_json_str(b, s ? s : "", s ? strlen(s) : 0);
}
/* Takes the data out: the caller owns the returned pointer (free()) and
 * the buffer is empty afterwards. */
char *imp_buf_steal(struct imp_buf *b, size_t *len);

/* Protobuf wire helpers for hand-encoded hot-path messages. */
void imp_buf_pb_varint(struct imp_buf *b, uint64_t v);
void imp_buf_pb_bytes(struct imp_buf *b, unsigned field, const void *data, size_t len);
size_t imp_pb_varint_len(uint64_t v);

/* Base64 (standard alphabet, padded). Decode returns 0, or IMP_EINVAL on a
 * character outside the alphabet; whitespace is not accepted. */
void imp_buf_base64(struct imp_buf *b, const void *data, size_t len);
int imp_base64_decode(struct imp_buf *out, const char *in, size_t len);
#endif

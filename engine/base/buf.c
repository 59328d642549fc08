/*
 * Growable buffer. Capacity doubles; data is kept NUL-terminated so it can
 * be handed to functions that want C strings.
 *
 * Used by every layer, one thread per buffer (no lock); it cannot fail
 * (out of memory aborts).
 */
#include "base/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"

void imp_buf_init(struct imp_buf *b) { memset(b, 0, sizeof(*b)); }

void imp_buf_dispose(struct imp_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void imp_buf_reset(struct imp_buf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void imp_buf_reserve(struct imp_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    b->data = imp_xrealloc(b->data, cap);
    b->cap = cap;
}

void imp_buf_append(struct imp_buf *b, const void *data, size_t len)
{
    imp_buf_reserve(b, len);
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void imp_buf_puts(struct imp_buf *b, const char *s) { imp_buf_append(b, s, strlen(s)); }

void imp_buf_putc(struct imp_buf *b, char c) { imp_buf_append(b, &c, 1); }

void imp_buf_vprintf(struct imp_buf *b, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n <= 0) return;
    imp_buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void imp_buf_printf(struct imp_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    imp_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

/* Length of the valid UTF-8 sequence starting at s (at most n bytes), or 0
 * when the bytes there are not valid UTF-8. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4;
    else
        return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return len;
}

void imp_buf_json_str(struct imp_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    imp_buf_reserve(b, len + 2);
    imp_buf_putc(b, '"');
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            size_t j = i;
            while (j < len && p[j] >= 0x20 && p[j] != '"' && p[j] != '\\' && p[j] < 0x80) j++;
            imp_buf_append(b, s + i, j - i);
            i = j;
            continue;
        }
        if (c >= 0x80) {
            size_t n = utf8_seq(p + i, len - i);
            if (n) {
                imp_buf_append(b, s + i, n);
                i += n;
                continue;
            }
        }
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t elen = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        imp_buf_append(b, esc, elen);
        i++;
    }
    imp_buf_putc(b, '"');
}

char *imp_buf_steal(struct imp_buf *b, size_t *len)
{
    char *d = b->data ? b->data : imp_xstrdup("");
    if (len) *len = b->len;
    memset(b, 0, sizeof(*b));
    return d;
}

size_t imp_pb_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

void imp_buf_pb_varint(struct imp_buf *b, uint64_t v)
{
    unsigned char tmp[10];
    size_t n = 0;
    while (v >= 0x80) {
        tmp[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (unsigned char)v;
    imp_buf_append(b, tmp, n);
}

void imp_buf_pb_bytes(struct imp_buf *b, unsigned field, const void *data, size_t len)
{
    imp_buf_pb_varint(b, ((uint64_t)field << 3) | 2);
    imp_buf_pb_varint(b, len);
    imp_buf_append(b, data, len);
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void imp_buf_base64(struct imp_buf *b, const void *data, size_t len)
{
    const unsigned char *p = data;
    imp_buf_reserve(b, (len + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        char q[4] = {b64chars[p[i] >> 2], b64chars[((p[i] & 3) << 4) | (p[i + 1] >> 4)],
                     b64chars[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)], b64chars[p[i + 2] & 63]};
        imp_buf_append(b, q, 4);
    }
    if (i < len) {
        char q[4] = {b64chars[p[i] >> 2], 0, '=', '='};
        if (i + 1 < len) {
            q[1] = b64chars[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
            q[2] = b64chars[(p[i + 1] & 15) << 2];
        } else {
            q[1] = b64chars[(p[i] & 3) << 4];
        }
        imp_buf_append(b, q, 4);
    }
}

int imp_base64_decode(struct imp_buf *out, const char *in, size_t len)
{
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '=') break;
        const char *pos = memchr(b64chars, c, 64);
        if (!pos || c == '\0') return IMP_EINVAL;
        acc = (acc << 6) | (uint32_t)(pos - b64chars);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            imp_buf_putc(out, (char)((acc >> bits) & 0xff));
        }
    }
    return 0;
}

int imp_buf_take_lines(struct imp_buf *b, const char *data, size_t len,
                       int (*line)(void *arg, const char *s, size_t n), void *arg)
{
    imp_buf_append(b, data, len);
    size_t start = 0;
    for (size_t i = 0; i < b->len; i++) {
        if (b->data[i] != '\n') continue;
        if (i > start) {
            int rc = line(arg, b->data + start, i - start);
            if (rc != 0) {
                imp_buf_reset(b);
                return rc;
            }
        }
        start = i + 1;
    }
    memmove(b->data, b->data + start, b->len - start);
    b->len -= start;
    b->data[b->len] = '\0';
    return 0;
}

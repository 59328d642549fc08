/*
 * imp_pb_has_field_zero (pbcheck.h): a walk over the message's descriptor,
 * into every message field. Pure: no allocation, no state; called by the
 * worker on every record it decodes (push/worker.c) and by fuzz_pushmsg.
 * imp_pb_find_field: a scan of the wire format's top level, for the
 * worker to hand on msgData's bytes as they came.
 * Depth is bounded by what protobuf-c decoded (its own recursion limit).
 */
#include "base/pbcheck.h"

#include "base/buf.h"

#include <stddef.h>
#include <stdint.h>

int imp_pb_has_field_zero(const ProtobufCMessage *m)
{
    if (!m) return 0;
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0) return 1;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned f = 0; f < d->n_fields; f++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[f];
        if (fd->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        const char *base = (const char *)m + fd->offset;
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + fd->quantifier_offset);
            ProtobufCMessage *const *v = *(ProtobufCMessage *const *const *)base;
            for (size_t k = 0; k < n; k++)
                if (imp_pb_has_field_zero(v[k])) return 1;
        } else if (imp_pb_has_field_zero(*(ProtobufCMessage *const *)base)) {
            return 1;
        }
    }
    return 0;
}

/* One varint at p[*i..n): its value, *i moved past it; -1 if malformed. */
static int read_varint(const uint8_t *p, size_t n, size_t *i, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*i >= n) return -1;
        uint8_t b = p[(*i)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

int imp_pb_next(const uint8_t *p, size_t n, size_t *i, uint32_t *num, int *wt, size_t *off,
                size_t *len)
{
    uint64_t tag, v;
    if (read_varint(p, n, i, &tag) != 0 || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) return -1;
    *num = (uint32_t)(tag >> 3);
    *wt = (int)(tag & 7);
    *off = *i;
    switch (*wt) {
    case 0:
        if (read_varint(p, n, i, &v) != 0) return -1;
        break;
    case 1:
        if (n - *i < 8) return -1;
        *i += 8;
        break;
    case 2:
        if (read_varint(p, n, i, &v) != 0 || v > n - *i) return -1;
        *off = *i;
        *i += (size_t)v;
        break;
    case 5:
        if (n - *i < 4) return -1;
        *i += 4;
        break;
    default: /* groups (3, 4) are not in OpenIM's messages */ return -1;
    }
    *len = *i - *off;
    return 0;
}

int imp_pb_find_field(const uint8_t *p, size_t n, uint32_t num, int wt, size_t *off, size_t *len)
{
    size_t i = 0;
    int found = 0;
    while (i < n) {
        uint32_t f;
        int t;
        size_t o, l;
        if (imp_pb_next(p, n, &i, &f, &t, &o, &l) != 0) return -1;
        if (f != num) continue;
        if (t != wt) return -1;
        *off = o;
        *len = l;
        found = found < 2 ? found + 1 : 2;
    }
    return found;
}

int imp_pb_replace_field(const uint8_t *p, size_t n, uint32_t num, const void *val, size_t vlen,
                         struct imp_buf *out)
{
    size_t i = 0;
    int put = 0;
    imp_buf_reset(out);
    while (i < n) {
        size_t start = i, o, l;
        uint32_t f;
        int t;
        if (imp_pb_next(p, n, &i, &f, &t, &o, &l) != 0) return -1;
        if (!put && f > num) {
            imp_buf_pb_bytes(out, num, val, vlen);
            put = 1;
        }
        if (f != num) imp_buf_append(out, p + start, i - start);
    }
    if (!put) imp_buf_pb_bytes(out, num, val, vlen);
    return 0;
}

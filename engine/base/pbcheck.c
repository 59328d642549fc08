/*
 * imp_pb_has_field_zero (pbcheck.h): a walk over the message's descriptor,
 * into every message field. Pure: no allocation, no state; called by the
 * worker on every record it decodes (push/worker.c) and by fuzz_pushmsg.
 * Depth is bounded by what protobuf-c decoded (its own recursion limit).
 */
#include "base/pbcheck.h"

#include <stddef.h>

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

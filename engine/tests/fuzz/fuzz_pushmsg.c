/* libFuzzer: a toPush / toOfflinePush record as the worker decodes it
 * (PushMsgReq with protobuf-c, refused when it has a field numbered 0, as
 * push/worker.c does), then encoded again: any input is either refused or
 * round-trips to the same size and decodes again. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/pbcheck.h"
#include "push.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Openim__Push__PushMsgReq *r = openim__push__push_msg_req__unpack(NULL, size, data);
    if (!r) return 0;
    if (!r->msgdata || imp_pb_has_field_zero(&r->base)) {
        openim__push__push_msg_req__free_unpacked(r, NULL);
        return 0; /* a bad record: dead-lettered unchanged */
    }
    /* the worker hands msgData on as it came when the scan finds it once:
     * those bytes must decode to the message protobuf-c decoded */
    size_t off, len;
    if (imp_pb_find_field(data, size, 1, 2, &off, &len) == 1) {
        Openim__Sdkws__MsgData *md = openim__sdkws__msg_data__unpack(NULL, len, data + off);
        if (!md) abort();
        if (strcmp(md->clientmsgid, r->msgdata->clientmsgid) != 0 || md->seq != r->msgdata->seq)
            abort();
        openim__sdkws__msg_data__free_unpacked(md, NULL);
    }
    size_t n = openim__push__push_msg_req__get_packed_size(r);
    uint8_t *out = malloc(n ? n : 1);
    size_t m = openim__push__push_msg_req__pack(r, out);
    if (m != n) abort();
    Openim__Push__PushMsgReq *again = openim__push__push_msg_req__unpack(NULL, m, out);
    if (!again) abort(); /* what we encode, we decode */
    openim__push__push_msg_req__free_unpacked(again, NULL);
    free(out);
    openim__push__push_msg_req__free_unpacked(r, NULL);
    return 0;
}

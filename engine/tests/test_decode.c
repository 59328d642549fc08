/*
 * Decoding what OpenIM writes and encoding what the gateways read: bytes
 * built by hand from the protobuf wire format (not by protobuf-c), so a
 * wrong field number in proto/ fails here.
 */
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/pbcheck.h"
#include "msggateway.pb-c.h"
#include "net/gateway.h"
#include "push.pb-c.h"
#include "t.h"

static void field_str(struct imp_buf *b, unsigned num, const char *s)
{
    imp_buf_pb_bytes(b, num, s, strlen(s));
}

static void field_varint(struct imp_buf *b, unsigned num, uint64_t v)
{
    imp_buf_pb_varint(b, (uint64_t)num << 3);
    imp_buf_pb_varint(b, v);
}

/* imp_pb_find_field: the top-level scan the worker uses to hand msgData on
 * as it came. */
static void test_find_field(void)
{
    struct imp_buf b;
    imp_buf_init(&b);
    field_str(&b, 1, "msgdata");
    field_varint(&b, 17, 1);
    imp_buf_pb_varint(&b, (23u << 3) | 5); /* a fixed32, skipped */
    imp_buf_append(&b, "\1\2\3\4", 4);
    size_t off = 0, len = 0;
    const uint8_t *p = (const uint8_t *)b.data;
    CHECK(imp_pb_find_field(p, b.len, 1, 2, &off, &len) == 1);
    CHECK(len == 7 && memcmp(p + off, "msgdata", 7) == 0);
    CHECK(imp_pb_find_field(p, b.len, 17, 0, &off, &len) == 1);
    CHECK(len == 1 && p[off] == 1);
    CHECK(imp_pb_find_field(p, b.len, 9, 0, &off, &len) == 0);
    CHECK(imp_pb_find_field(p, b.len, 1, 0, &off, &len) == -1); /* wrong wire type */
    field_varint(&b, 17, 300);
    p = (const uint8_t *)b.data;
    CHECK(imp_pb_find_field(p, b.len, 17, 0, &off, &len) == 2); /* twice; the last: 2 bytes */
    CHECK(len == 2);
    CHECK(imp_pb_find_field(p, b.len - 1, 17, 0, &off, &len) == -1); /* cut in a varint */
    imp_buf_reset(&b);
    imp_buf_pb_varint(&b, (1u << 3) | 2);
    imp_buf_pb_varint(&b, 100); /* longer than what follows */
    imp_buf_append(&b, "x", 1);
    CHECK(imp_pb_find_field((const uint8_t *)b.data, b.len, 1, 2, &off, &len) == -1);
    imp_buf_reset(&b);
    imp_buf_pb_varint(&b, 3); /* field 0 */
    CHECK(imp_pb_find_field((const uint8_t *)b.data, b.len, 1, 2, &off, &len) == -1);
    imp_buf_dispose(&b);
}

/* imp_pb_replace_field: offlinePushInfo (20) spliced into msgData's bytes
 * in field order, every other byte as it came. */
static void test_replace_field(void)
{
    struct imp_buf in, out, want;
    imp_buf_init(&in);
    imp_buf_init(&out);
    imp_buf_init(&want);
    field_str(&in, 1, "s");
    field_varint(&in, 17, 2);
    field_str(&in, 21, "at");
    /* absent: put before field 21 */
    CHECK(imp_pb_replace_field((const uint8_t *)in.data, in.len, 20, "new", 3, &out) == 0);
    field_str(&want, 1, "s");
    field_varint(&want, 17, 2);
    field_str(&want, 20, "new");
    field_str(&want, 21, "at");
    CHECK(out.len == want.len && memcmp(out.data, want.data, want.len) == 0);
    /* present (twice): both replaced by one, in the first one's place */
    imp_buf_reset(&in);
    field_str(&in, 1, "s");
    field_str(&in, 20, "old");
    field_str(&in, 21, "at");
    field_str(&in, 20, "old2");
    CHECK(imp_pb_replace_field((const uint8_t *)in.data, in.len, 20, "new", 3, &out) == 0);
    imp_buf_reset(&want);
    field_str(&want, 1, "s");
    field_str(&want, 20, "new");
    field_str(&want, 21, "at");
    CHECK(out.len == want.len && memcmp(out.data, want.data, want.len) == 0);
    /* nothing higher: appended */
    imp_buf_reset(&in);
    field_str(&in, 1, "s");
    CHECK(imp_pb_replace_field((const uint8_t *)in.data, in.len, 20, "", 0, &out) == 0);
    CHECK(out.len == in.len + 3 && (uint8_t)out.data[in.len] == 0xa2 && out.data[in.len + 2] == 0);
    /* malformed: refused */
    CHECK(imp_pb_replace_field((const uint8_t *)in.data, in.len - 1, 20, "", 0, &out) == -1);
    imp_buf_dispose(&in);
    imp_buf_dispose(&out);
    imp_buf_dispose(&want);
}

int main(void)
{
    struct imp_buf md, opt, rec;
    test_find_field();
    test_replace_field();
    imp_buf_init(&md);
    imp_buf_init(&opt);
    imp_buf_init(&rec);

    /* MsgData as openim-wire.md §2 numbers it */
    field_str(&md, 1, "alice");               /* sendID */
    field_str(&md, 2, "bob");                 /* recvID */
    field_str(&md, 3, "g1");                  /* groupID */
    field_str(&md, 4, "cmsg");                /* clientMsgID */
    field_varint(&md, 9, 3);                  /* sessionType */
    field_varint(&md, 11, 1504);              /* contentType */
    field_str(&md, 12, "{\"detail\":\"x\"}"); /* content */
    field_varint(&md, 14, 77);                /* seq (no field 13) */
    field_varint(&md, 15, 1764000000123ULL);  /* sendTime */
    field_varint(&md, 17, 1);                 /* status: sending */
    field_str(&opt, 1, "senderSync");         /* map entry: key */
    field_varint(&opt, 2, 0);                 /*            value false */
    imp_buf_pb_bytes(&md, 19, opt.data, opt.len);
    field_str(&md, 21, "carol"); /* atUserIDList */
    field_str(&md, 21, "dave");
    field_str(&md, 23, "ex-data"); /* ex */

    imp_buf_pb_bytes(&rec, 1, md.data, md.len); /* PushMsgReq.msgData */
    field_str(&rec, 2, "sg_g1");                /* conversationID */

    Openim__Push__PushMsgReq *r =
        openim__push__push_msg_req__unpack(NULL, rec.len, (const uint8_t *)rec.data);
    CHECK(r != NULL);
    if (r) {
        Openim__Sdkws__MsgData *m = r->msgdata;
        CHECK(m != NULL);
        CHECK_STR(r->conversationid, "sg_g1");
        CHECK_STR(m->sendid, "alice");
        CHECK_STR(m->recvid, "bob");
        CHECK_STR(m->groupid, "g1");
        CHECK_STR(m->clientmsgid, "cmsg");
        CHECK(m->sessiontype == 3);
        CHECK(m->contenttype == 1504);
        CHECK(m->content.len == 14 && memcmp(m->content.data, "{\"detail\":\"x\"}", 14) == 0);
        CHECK(m->seq == 77);
        CHECK(m->sendtime == 1764000000123LL);
        CHECK(m->status == 1);
        CHECK(m->n_options == 1 && strcmp(m->options[0]->key, "senderSync") == 0 &&
              !m->options[0]->value);
        CHECK(m->n_atuseridlist == 2 && strcmp(m->atuseridlist[1], "dave") == 0);
        CHECK_STR(m->ex, "ex-data");
        openim__push__push_msg_req__free_unpacked(r, NULL);
    }

    /* garbage is refused, not half-decoded */
    CHECK(openim__push__push_msg_req__unpack(NULL, 4, (const uint8_t *)"\xff\xff\xff\xff") == NULL);
    CHECK(openim__push__push_msg_req__unpack(NULL, rec.len - 3, (const uint8_t *)rec.data) == NULL);

    /* the gateway request: field 1 the MsgData bytes, field 2 each user */
    struct imp_buf req;
    imp_buf_init(&req);
    char *users[] = {"u1", "u2", "u3"};
    imp_gateway_encode(&req, md.data, md.len, users, 3);
    Openim__Msggateway__OnlineBatchPushOneMsgReq *g =
        openim__msggateway__online_batch_push_one_msg_req__unpack(NULL, req.len,
                                                                  (const uint8_t *)req.data);
    CHECK(g != NULL);
    if (g) {
        CHECK(g->n_pushtouserids == 3 && strcmp(g->pushtouserids[2], "u3") == 0);
        CHECK(g->msgdata && g->msgdata->seq == 77 && strcmp(g->msgdata->recvid, "bob") == 0);
        openim__msggateway__online_batch_push_one_msg_req__free_unpacked(g, NULL);
    }

    imp_buf_dispose(&md);
    imp_buf_dispose(&opt);
    imp_buf_dispose(&rec);
    imp_buf_dispose(&req);
    /* a field numbered 0, written with a two-byte tag, at the top and nested
     * in msgData's offlinePushInfo (field 19): decoded by protobuf-c, refused
     * by the worker (found by fuzz_pushmsg) */
    {
        static const uint8_t top[] = {0x0a, 0x00, 0x80, 0x00, 0x05};
        static const uint8_t nested[] = {0x0a, 0x0b, 0x9a, 0x01, 0x08, 0x0a, 0x01,
                                         0x74, 0x0a, 0x00, 0x80, 0x00, 0x0a};
        static const uint8_t fine[] = {0x0a, 0x03, 0x0a, 0x01, 0x61}; /* sendID "a" */
        const uint8_t *in[] = {top, nested, fine};
        size_t len[] = {sizeof(top), sizeof(nested), sizeof(fine)};
        int want[] = {1, 1, 0};
        for (int i = 0; i < 3; i++) {
            Openim__Push__PushMsgReq *r = openim__push__push_msg_req__unpack(NULL, len[i], in[i]);
            CHECK(r != NULL);
            if (!r) continue;
            CHECK(imp_pb_has_field_zero(&r->base) == want[i]);
            openim__push__push_msg_req__free_unpacked(r, NULL);
        }
    }
    return t_done("decode");
}

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

/* The gateway reply walker against protobuf-c: on well-formed replies and
 * on random mutations of them, the same verdict and the same users. */
struct seen {
    char ids[64][40];
    int online[64];
    int n;
};

static void seen_user(void *arg, const char *uid, size_t len, int online)
{
    struct seen *s = arg;
    if (s->n < 64) {
        snprintf(s->ids[s->n], sizeof(s->ids[0]), "%.*s", (int)(len < 39 ? len : 39), uid);
        s->online[s->n] = online;
    }
    s->n++;
}

static int agree(const uint8_t *p, size_t n)
{
    struct seen s = {0};
    int got = imp_gateway_reply_scan(p, n, seen_user, &s);
    Openim__Msggateway__OnlineBatchPushOneMsgResp *r =
        openim__msggateway__online_batch_push_one_msg_resp__unpack(NULL, n, p);
    int ok;
    if (!r) {
        ok = got == -1 && s.n == 0;
    } else if (got == -1 && imp_pb_has_field_zero(&r->base)) {
        ok = s.n == 0; /* a field numbered 0: refused by design (base/pbcheck.h) */
    } else {
        ok = got == (int)r->n_singlepushresult && s.n == got;
        for (size_t i = 0; ok && i < r->n_singlepushresult && i < 64; i++) {
            const Openim__Msggateway__SingleMsgToUserResults *u = r->singlepushresult[i];
            char want[40];
            snprintf(want, sizeof(want), "%.39s", u->userid ? u->userid : "");
            /* an ID holding a NUL: protobuf-c's C string stops there, the
             * walker keeps the bytes; compare what both can see */
            ok = strncmp(want, s.ids[i], strlen(want)) == 0 && s.online[i] == !!u->onlinepush;
        }
        openim__msggateway__online_batch_push_one_msg_resp__free_unpacked(r, NULL);
    }
    if (!ok) {
        fprintf(stderr, "reply walker and protobuf-c disagree on %zu bytes:", n);
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %02x", p[i]);
        fprintf(stderr, " (walker %d)\n", got);
    }
    return ok;
}

static void test_gateway_reply(void)
{
    Openim__Msggateway__SingleMsgToUserPlatform plat =
        OPENIM__MSGGATEWAY__SINGLE_MSG_TO_USER_PLATFORM__INIT;
    Openim__Msggateway__SingleMsgToUserPlatform *plats[] = {&plat};
    plat.resultcode = -1;
    plat.recvid = "u2";
    plat.recvplatformid = 2;
    Openim__Msggateway__SingleMsgToUserResults u[3];
    Openim__Msggateway__SingleMsgToUserResults *us[3];
    const char *ids[] = {"u1", "u2", "member000003"};
    for (int i = 0; i < 3; i++) {
        openim__msggateway__single_msg_to_user_results__init(&u[i]);
        u[i].userid = (char *)ids[i];
        u[i].onlinepush = i != 1;
        u[i].n_resp = 1;
        u[i].resp = plats;
        us[i] = &u[i];
    }
    Openim__Msggateway__OnlineBatchPushOneMsgResp resp =
        OPENIM__MSGGATEWAY__ONLINE_BATCH_PUSH_ONE_MSG_RESP__INIT;
    resp.n_singlepushresult = 3;
    resp.singlepushresult = us;
    uint8_t buf[256];
    size_t n = openim__msggateway__online_batch_push_one_msg_resp__pack(&resp, buf);
    struct seen s = {0};
    CHECK(imp_gateway_reply_scan(buf, n, seen_user, &s) == 3);
    CHECK(s.n == 3 && strcmp(s.ids[2], "member000003") == 0 && s.online[0] && !s.online[1]);
    CHECK(agree(buf, n));
    CHECK(imp_gateway_reply_scan(buf, 0, seen_user, &s) == 0);
    /* a wrong wire type for onlinePush, and a cut nested platform message:
     * refused, nothing reported */
    static const uint8_t badwt[] = {0x0a, 0x06, 0x0a, 0x02, 0x75, 0x31, 0x1d, 0x01};
    static const uint8_t cut[] = {0x0a, 0x07, 0x0a, 0x01, 0x75, 0x12, 0x02, 0x08, 0x80};
    s.n = 0;
    CHECK(imp_gateway_reply_scan(badwt, sizeof(badwt), seen_user, &s) == -1 && s.n == 0);
    CHECK(imp_gateway_reply_scan(cut, sizeof(cut), seen_user, &s) == -1 && s.n == 0);
    CHECK(agree(badwt, sizeof(badwt)) && agree(cut, sizeof(cut)));
    /* random mutations: flipped bytes, truncations, insertions */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int bad = 0;
    for (int round = 0; round < 20000; round++) {
        uint8_t m[300];
        size_t mn = n;
        memcpy(m, buf, n);
        int edits = 1 + round % 4;
        for (int e = 0; e < edits; e++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t at = (size_t)(x % (mn ? mn : 1));
            switch ((x >> 32) % 4) {
            case 0: m[at] = (uint8_t)(x >> 40); break;
            case 1: mn = at; break;
            case 2:
                if (mn < sizeof(m)) {
                    memmove(m + at + 1, m + at, mn - at);
                    m[at] = (uint8_t)(x >> 48);
                    mn++;
                }
                break;
            default: m[at] ^= (uint8_t)(1u << ((x >> 50) % 8)); break;
            }
        }
        if (!agree(m, mn) && ++bad > 5) break;
    }
    CHECK(bad == 0);
}

int main(void)
{
    struct imp_buf md, opt, rec;
    test_find_field();
    test_replace_field();
    test_gateway_reply();
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

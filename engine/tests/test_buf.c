/* Buffer, JSON escaping, protobuf and base64 helpers. */
#include "base/buf.h"
#include "base/common.h"
#include "t.h"

int main(void)
{
    struct imp_buf b;
    imp_buf_init(&b);
    imp_buf_json_cstr(&b, "a\"b\\c\n\x01");
    CHECK_STR(b.data, "\"a\\\"b\\\\c\\n\\u0001\"");
    imp_buf_reset(&b);
    imp_buf_json_str(&b, "\xe4\xbd\xa0\xff", 4); /* valid UTF-8 kept, a stray byte escaped */
    CHECK_STR(b.data, "\"\xe4\xbd\xa0\\u00ff\"");
    imp_buf_reset(&b);
    imp_buf_pb_varint(&b, 300);
    CHECK(b.len == 2 && (unsigned char)b.data[0] == 0xac && b.data[1] == 0x02);
    CHECK(imp_pb_varint_len(300) == 2 && imp_pb_varint_len(0) == 1);
    imp_buf_reset(&b);
    imp_buf_pb_bytes(&b, 2, "u1", 2);
    CHECK(b.len == 4 && b.data[0] == 0x12 && b.data[1] == 2 && b.data[2] == 'u');
    imp_buf_reset(&b);
    imp_buf_base64(&b, "openim/", 7);
    CHECK_STR(b.data, "b3BlbmltLw==");
    struct imp_buf d;
    imp_buf_init(&d);
    CHECK(imp_base64_decode(&d, b.data, b.len) == 0);
    CHECK_STR(d.data, "openim/");
    imp_buf_reset(&d);
    CHECK(imp_base64_decode(&d, "b3Bl*", 5) == IMP_EINVAL);
    imp_buf_reset(&b);
    for (int i = 0; i < 1000; i++) imp_buf_printf(&b, "%d,", i);
    CHECK(b.len == 3890);
    imp_buf_dispose(&b);
    imp_buf_dispose(&d);
    return t_done("buf");
}

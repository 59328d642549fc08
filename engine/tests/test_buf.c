/* Buffer, JSON escaping, protobuf and base64 helpers. */
#include <string.h>

#include "base/buf.h"
#include "base/common.h"
#include "t.h"

/* collects lines into a "|"-joined string; stops at "stop" (rc 7) */
static int collect(void *arg, const char *s, size_t n)
{
    struct imp_buf *seen = arg;
    if (n == 4 && memcmp(s, "stop", 4) == 0) return 7;
    imp_buf_append(seen, s, n);
    imp_buf_putc(seen, '|');
    return 0;
}

static void test_lines(void)
{
    struct imp_buf line, seen;
    imp_buf_init(&line);
    imp_buf_init(&seen);
    /* a line split across chunks, empty lines skipped, the tail kept */
    CHECK(imp_buf_take_lines(&line, "ab", 2, collect, &seen) == 0 && seen.len == 0);
    CHECK(imp_buf_take_lines(&line, "c\n\nd", 4, collect, &seen) == 0);
    CHECK_STR(seen.data, "abc|");
    CHECK(line.len == 1 && line.data[0] == 'd');
    CHECK(imp_buf_take_lines(&line, "e\nf\n", 4, collect, &seen) == 0);
    CHECK_STR(seen.data, "abc|de|f|");
    CHECK(line.len == 0);
    /* a callback's stop empties the buffer and is returned */
    CHECK(imp_buf_take_lines(&line, "g\nstop\nh\ni", 10, collect, &seen) == 7);
    CHECK_STR(seen.data, "abc|de|f|g|");
    CHECK(line.len == 0);
    imp_buf_dispose(&line);
    imp_buf_dispose(&seen);
}

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
    test_lines();
    return t_done("buf");
}

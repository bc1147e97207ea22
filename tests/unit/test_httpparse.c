/* Unit tests of the HTTP/1.1 framing (httpparse.c): what a complete head
 * yields, what needs more bytes, every refusal with its status, and the
 * chunked decoder fed a byte at a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <libwebsockets.h>
#include <string.h>

#include "pushbridge/event/frame.h"
#include "pushbridge/api/httpparse.h"

static int parse(const char *text, struct pb_http_head *h)
{
    const char *why = NULL;
    int rc = pb_http_head_parse(text, strlen(text), h, &why);
    if (rc != 0 && rc != 1)
        assert_non_null(why);
    return rc;
}

static void test_complete_head(void **state)
{
    (void)state;
    struct pb_http_head h;
    const char *req = "POST /push?a=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n"
                      "Authorization:  Bearer k1 \r\nConnection: Keep-Alive, Upgrade\r\n\r\nBODY";
    assert_int_equal(parse(req, &h), 1);
    assert_int_equal(h.method, LWSHUMETH_POST);
    assert_int_equal(h.minor, 1);
    assert_int_equal(h.target_len, strlen("/push?a=1"));
    assert_memory_equal(h.target, "/push?a=1", h.target_len);
    assert_int_equal(h.content_length, 12);
    assert_int_equal(h.auth_len, strlen("Bearer k1"));
    assert_memory_equal(h.auth, "Bearer k1", h.auth_len);
    assert_int_equal(h.keep_alive, 1);
    assert_int_equal(h.head_len, strlen(req) - 4);
}

static void test_incomplete_needs_more(void **state)
{
    (void)state;
    struct pb_http_head h;
    assert_int_equal(parse("GET /healthz HTTP/1.1\r\nHost: x\r\n", &h), 0);
    assert_int_equal(parse("GET /healthz HTTP/1.1\r\nHost: x\r\n\r", &h), 0);
    assert_int_equal(parse("", &h), 0);
}

static void test_keep_alive_rules(void **state)
{
    (void)state;
    struct pb_http_head h;
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &h), 1);
    assert_int_equal(h.keep_alive, 0);
    assert_int_equal(parse("GET / HTTP/1.0\r\n\r\n", &h), 1);
    assert_int_equal(h.keep_alive, 0);
    assert_int_equal(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &h), 1);
    assert_int_equal(h.keep_alive, 1);
}

static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *req;
        int status;
    } cases[] = {
        {"GET / HTTP/1.1\nHost: x\n\n", 400},                                    /* bare LF */
        {"GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n", 400},                         /* bare CR */
        {"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400},                 /* obs-fold */
        {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},                              /* space before : */
        {"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400},                    /* two Hosts */
        {"GET / HTTP/1.1\r\n\r\n", 400},                                          /* no Host */
        {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
         400},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
        {"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
        {"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505},
        {"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400},                       /* absolute-form */
        {"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
        {"GET /a#f HTTP/1.1\r\nHost: x\r\n\r\n", 400},
        {"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n", 417},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pb_http_head h;
        int rc = parse(cases[i].req, &h);
        if (rc != cases[i].status)
            fail_msg("case %zu: got %d, want %d", i, rc, cases[i].status);
    }
    /* A NUL anywhere in the head. */
    struct pb_http_head h;
    const char *why;
    assert_int_equal(pb_http_head_parse("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 26, &h, &why), 400);
}

static void test_head_size_bound(void **state)
{
    (void)state;
    static char big[PB_HTTP_MAX_HEAD + 64];
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    struct pb_http_head h;
    const char *why;
    assert_int_equal(pb_http_head_parse(big, sizeof(big), &h, &why), 431);
}

static void test_unknown_method_is_parsed(void **state)
{
    (void)state;
    struct pb_http_head h;
    assert_int_equal(parse("BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", &h), 1);
    assert_int_equal(h.method, -1);
}

static void test_huge_content_length_saturates(void **state)
{
    (void)state;
    struct pb_http_head h;
    assert_int_equal(
        parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", &h),
        1);
    assert_true(h.content_length > 1000000000000LL);
}

/* Feeds text a byte at a time, keeping what the decoder leaves. */
static int feed_bytewise(const char *text, struct pb_buf *out, size_t max, size_t *consumed)
{
    struct pb_chunked ck;
    memset(&ck, 0, sizeof(ck));
    size_t len = strlen(text), have = 0;
    for (size_t fed = 1; fed <= len; fed++) {
        size_t used;
        int rc = pb_chunked_feed(&ck, text + have, fed - have, &used, out, max);
        have += used;
        if (rc) {
            *consumed = have;
            return rc;
        }
    }
    *consumed = have;
    return 0;
}

static void test_chunked(void **state)
{
    (void)state;
    struct pb_buf out;
    size_t used;
    pb_buf_init(&out, 1024);
    const char *body = "4\r\nWiki\r\n6;name=v\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nT: 1\r\n\r\nNEXT";
    assert_int_equal(feed_bytewise(body, &out, 1000, &used), 1);
    assert_int_equal(used, strlen(body) - 4);
    assert_int_equal(out.len, 24);
    assert_memory_equal(out.data, "Wikipedia in \r\n\r\nchunks.", 24);
    pb_buf_reset(&out);
    assert_int_equal(feed_bytewise("5\r\nabcde\r\n0\r\n\r\n", &out, 4, &used), -2); /* too big */
    pb_buf_reset(&out);
    assert_int_equal(feed_bytewise("5\r\nabcdeXX0\r\n\r\n", &out, 100, &used), -1); /* no CRLF */
    pb_buf_reset(&out);
    assert_int_equal(feed_bytewise("ffffffffffffffff\r\nab", &out, 100, &used), -1); /* 16 digits */
    pb_buf_reset(&out);
    assert_int_equal(feed_bytewise("zz\r\n", &out, 100, &used), -1);
    pb_buf_reset(&out);
    assert_int_equal(feed_bytewise("3\nabc\r\n", &out, 100, &used), -1); /* bare LF */
    pb_buf_free(&out);
}

static void check_header(size_t len, const unsigned char *want, size_t want_len)
{
    struct pb_frame *f = pb_frame_new(len);
    assert_non_null(f);
    assert_int_equal(pb_frame_wire_len(f), want_len + len);
    assert_memory_equal(pb_frame_wire(f), want, want_len);
    assert_ptr_equal(pb_frame_wire(f) + want_len, pb_frame_payload(f));
    pb_frame_unref(f);
}

static void test_frame_headers(void **state)
{
    (void)state;
    check_header(0, (const unsigned char *)"\x81\x00", 2);
    check_header(125, (const unsigned char *)"\x81\x7d", 2);
    check_header(126, (const unsigned char *)"\x81\x7e\x00\x7e", 4);
    check_header(65535, (const unsigned char *)"\x81\x7e\xff\xff", 4);
    check_header(65536, (const unsigned char *)"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_complete_head),
        cmocka_unit_test(test_incomplete_needs_more),
        cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_head_size_bound),
        cmocka_unit_test(test_unknown_method_is_parsed),
        cmocka_unit_test(test_huge_content_length_saturates),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_frame_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

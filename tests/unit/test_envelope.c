/* Unit tests of the envelope module: bytes in, a validated event out. They check that the
 * producer's `data` survives byte for byte, that every drop reason is reported for the inputs
 * SPEC section 1 calls malformed, the target rules for Kafka keys, the HTTP aliases, the
 * array splitter used for batch pushes, and that deep nesting costs no C stack. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pushbridge/event/envelope.h"

/* ---- helpers ---- */

static int parse(const char *json, int flags, struct pb_event *ev)
{
    pb_event_init(ev);
    return pb_envelope_parse(json, strlen(json), flags, ev);
}

static void expect_data(const struct pb_event *ev, const char *raw)
{
    if (ev->data_len != strlen(raw) || memcmp(ev->data, raw, ev->data_len) != 0)
        fail_msg("data is \"%.*s\", expected \"%s\"", (int)ev->data_len, ev->data, raw);
}

/* Parses json (flags) and asserts the drop reason; the detail must then say something. */
static void expect_drop_flags(const char *json, int flags, int reason)
{
    struct pb_event ev;
    int rc = parse(json, flags, &ev);
    if (rc != reason)
        fail_msg("%s: got %s (%s), expected %s", json, pb_drop_reason_name(rc), ev.detail,
                 pb_drop_reason_name(reason));
    if (reason != PB_DROP_NONE) {
        assert_true(ev.detail[0] != '\0');
        assert_null(strchr(ev.detail, '\n'));
    }
    pb_event_clear(&ev);
}

static void expect_drop(const char *json, int reason)
{
    expect_drop_flags(json, 0, reason);
}

/* A string of n copies of ch (caller frees). */
static char *repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

/* ---- valid envelopes ---- */

static void test_valid_envelope(void **state)
{
    (void)state;
    struct pb_event ev;
    const char *json = "{\"event\":\"task.progress\",\"id\":\"e-1\",\"user_id\":\"123\","
                       "\"task\":\"job-9\",\"final\":true,"
                       "\"data\":{\"pct\":50},\"extra\":[1,2]}";
    assert_int_equal(parse(json, 0, &ev), PB_DROP_NONE);
    assert_string_equal(ev.event, "task.progress");
    assert_string_equal(pb_event_name(&ev), "task.progress");
    assert_string_equal(ev.id, "e-1");
    assert_string_equal(ev.user_id, "123");
    assert_string_equal(ev.task, "job-9");
    assert_null(ev.group);
    assert_int_equal(ev.final, 1);
    expect_data(&ev, "{\"pct\":50}");
    assert_false(ev.data_is_string);
    assert_null(ev.data_text);
    assert_int_equal(pb_event_set_target(&ev, NULL, 0), PB_DROP_NONE);
    assert_int_equal(ev.target_kind, PB_TARGET_USER);
    assert_int_equal(ev.target_len, 3);
    assert_memory_equal(ev.target, "123", 3);
    pb_event_clear(&ev);
    /* Cleared events are back to the initial state. */
    assert_null(ev.event);
    assert_null(ev.user_id);
    expect_data(&ev, "null");
}

static void test_data_byte_for_byte(void **state)
{
    (void)state;
    static const char *const values[] = {
        "1.0e+2",
        "-0.0",
        "1E-7",
        "12345678901234567890123456789",
        "true",
        "false",
        "\"caf\\u00e9 \\ud83d\\ude00\"",
        "\"back\\\\slash \\\"quoted\\\" }]{[,\"",
        "[ ]",
        "{ }",
        "{ \"a\" : 1.0e+2 ,\n\t\"b\" : [ 1 , [ 2 , { \"c\" : \"\\u00e9\" } ] ] }",
        "[{\"k\":\"}\"},\"]\",[[[]]],{\"data\":7}]",
        "{\"x\":\"\\\\\",\"y\":\"\\\"\"}",
    };
    /* Each value at the start, the middle and the end of the object, with and without
     * whitespace around it. */
    static const char *const shapes[] = {
        "{\"data\":%s}",
        "{\"event\":\"e\",\"data\":%s,\"user_id\":\"u\"}",
        "{ \"id\" : \"1\" , \"data\" :\n\t %s \r\n , \"x\" : 0 }",
        "{\"x\":{\"data\":1},\"s\":\"\\\"data\\\":5\",\"data\":%s}",
    };
    char json[512];
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
            struct pb_event ev;
            snprintf(json, sizeof(json), shapes[k], values[i]);
            int rc = parse(json, 0, &ev);
            if (rc != PB_DROP_NONE)
                fail_msg("%s: %s (%s)", json, pb_drop_reason_name(rc), ev.detail);
            expect_data(&ev, values[i]);
            /* data points into the input buffer, not a copy. */
            assert_true(ev.data >= json && ev.data + ev.data_len <= json + strlen(json));
            pb_event_clear(&ev);
        }
    }
}

static void test_data_nested_member_named_data_is_not_taken(void **state)
{
    (void)state;
    struct pb_event ev;
    assert_int_equal(parse("{\"data\":2,\"x\":{\"data\":1},\"y\":[{\"data\":3}]}", 0, &ev),
                     PB_DROP_NONE);
    expect_data(&ev, "2");
    pb_event_clear(&ev);
}

static void test_data_string_decoded(void **state)
{
    (void)state;
    struct pb_event ev;
    assert_int_equal(parse("{\"data\":\"Hello \\\"W\\u00f6rld\\\" \\\\ \\n\"}", 0, &ev),
                     PB_DROP_NONE);
    assert_true(ev.data_is_string);
    assert_non_null(ev.data_text);
    assert_string_equal(ev.data_text, "Hello \"W\xc3\xb6rld\" \\ \n");
    assert_int_equal(ev.data_text_len, strlen("Hello \"W\xc3\xb6rld\" \\ \n"));
    expect_data(&ev, "\"Hello \\\"W\\u00f6rld\\\" \\\\ \\n\"");
    pb_event_clear(&ev);

    /* An escaped NUL is part of the text: the length says so. */
    assert_int_equal(parse("{\"data\":\"a\\u0000b\"}", 0, &ev), PB_DROP_NONE);
    assert_int_equal(ev.data_text_len, 3);
    assert_memory_equal(ev.data_text, "a\0b", 3);
    pb_event_clear(&ev);

    /* The empty string is a string too. */
    assert_int_equal(parse("{\"data\":\"\"}", 0, &ev), PB_DROP_NONE);
    assert_true(ev.data_is_string);
    assert_int_equal(ev.data_text_len, 0);
    expect_data(&ev, "\"\"");
    pb_event_clear(&ev);

    /* Non-strings have no decoded text. */
    assert_int_equal(parse("{\"data\":[\"a\"]}", 0, &ev), PB_DROP_NONE);
    assert_false(ev.data_is_string);
    assert_null(ev.data_text);
    pb_event_clear(&ev);
}

static void test_data_absent_or_null(void **state)
{
    (void)state;
    struct pb_event ev;
    assert_int_equal(parse("{\"user_id\":\"u\"}", 0, &ev), PB_DROP_NONE);
    expect_data(&ev, "null");
    assert_false(ev.data_is_string);
    assert_null(ev.data_text);
    pb_event_clear(&ev);

    assert_int_equal(parse("{\"data\":null}", 0, &ev), PB_DROP_NONE);
    expect_data(&ev, "null");
    assert_false(ev.data_is_string);
    pb_event_clear(&ev);
}

static void test_event_name_default(void **state)
{
    (void)state;
    struct pb_event ev;
    assert_int_equal(parse("{\"data\":1}", 0, &ev), PB_DROP_NONE);
    assert_null(ev.event);
    assert_string_equal(pb_event_name(&ev), "message");
    pb_event_clear(&ev);

    assert_int_equal(parse("{\"event\":null,\"data\":1}", 0, &ev), PB_DROP_NONE);
    assert_string_equal(pb_event_name(&ev), "message");
    pb_event_clear(&ev);

    assert_int_equal(parse("{\"event\":\"order.new\"}", 0, &ev), PB_DROP_NONE);
    assert_string_equal(pb_event_name(&ev), "order.new");
    pb_event_clear(&ev);
}

static void test_optional_fields(void **state)
{
    (void)state;
    struct pb_event ev;
    assert_int_equal(parse("{\"final\":false,\"id\":null,\"task\":null}", 0, &ev), PB_DROP_NONE);
    assert_int_equal(ev.final, 0);
    assert_null(ev.id);
    assert_null(ev.task);
    pb_event_clear(&ev);

    assert_int_equal(parse("{\"final\":null}", 0, &ev), PB_DROP_NONE);
    assert_int_equal(ev.final, 0);
    pb_event_clear(&ev);

    /* Unknown members of any type are ignored. */
    assert_int_equal(parse("{\"x\":{\"event\":5},\"y\":[true,null],\"z\":\"s\",\"w\":1}", 0, &ev),
                     PB_DROP_NONE);
    assert_null(ev.event);
    pb_event_clear(&ev);
}

static void test_numeric_ids(void **state)
{
    (void)state;
    struct pb_event ev;
    assert_int_equal(parse("{\"user_id\":123,\"id\":42,\"task\":7}", 0, &ev), PB_DROP_NONE);
    assert_string_equal(ev.user_id, "123");
    assert_string_equal(ev.id, "42");
    assert_string_equal(ev.task, "7");
    assert_int_equal(pb_event_set_target(&ev, NULL, 0), PB_DROP_NONE);
    assert_int_equal(ev.target_kind, PB_TARGET_USER);
    assert_int_equal(ev.target_len, 3);
    assert_memory_equal(ev.target, "123", 3);
    pb_event_clear(&ev);

    /* A numeric user_id agrees with the same key. */
    assert_int_equal(parse("{\"user_id\":123}", 0, &ev), PB_DROP_NONE);
    assert_int_equal(pb_event_set_target(&ev, "123", 3), PB_DROP_NONE);
    pb_event_clear(&ev);
}

static void test_duplicates_last_wins(void **state)
{
    (void)state;
    struct pb_event ev;
    assert_int_equal(parse("{\"event\":\"a\",\"data\":\"first\",\"user_id\":\"u1\","
                           "\"event\":\"b\",\"data\":{\"x\":2},\"user_id\":\"u2\"}",
                           0, &ev),
                     PB_DROP_NONE);
    assert_string_equal(ev.event, "b");
    assert_string_equal(ev.user_id, "u2");
    expect_data(&ev, "{\"x\":2}");
    assert_false(ev.data_is_string);
    assert_null(ev.data_text);
    pb_event_clear(&ev);

    assert_int_equal(parse("{\"data\":[1],\"data\":\"last\"}", 0, &ev), PB_DROP_NONE);
    expect_data(&ev, "\"last\"");
    assert_true(ev.data_is_string);
    assert_string_equal(ev.data_text, "last");
    pb_event_clear(&ev);

    assert_int_equal(parse("{\"data\":\"s\",\"data\":5}", 0, &ev), PB_DROP_NONE);
    expect_data(&ev, "5");
    assert_false(ev.data_is_string);
    assert_null(ev.data_text);
    pb_event_clear(&ev);

    assert_int_equal(parse("{\"id\":\"x\",\"id\":null}", 0, &ev), PB_DROP_NONE);
    assert_null(ev.id);
    pb_event_clear(&ev);
}

/* A member name may be written with escapes ("d\u0061ta" is "data"). Whatever the parser
 * makes of that, the raw span and the decoded text must describe the same value, or plain
 * clients and native clients would be shown different data for one event. */
static void test_escaped_data_name_consistent(void **state)
{
    (void)state;
    static const char *const inputs[] = {
        "{\"d\\u0061ta\":\"x\"}",
        "{\"data\":{\"a\":1},\"d\\u0061ta\":\"x\"}",
        "{\"data\":\"x\",\"d\\u0061ta\":{\"a\":1}}",
        "{\"d\\u0061ta\":\"x\",\"data\":[1]}",
    };
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        struct pb_event ev;
        int rc = parse(inputs[i], 0, &ev);
        if (rc == PB_DROP_NONE) {
            int raw_is_string = ev.data_len > 0 && ev.data[0] == '"';
            if (raw_is_string != !!ev.data_is_string)
                fail_msg("%s: data is %.*s but data_is_string is %d", inputs[i], (int)ev.data_len,
                         ev.data, ev.data_is_string);
        } else {
            assert_int_equal(rc, PB_DROP_BAD_FIELD);
        }
        pb_event_clear(&ev);
    }
}

/* ---- drop reasons ---- */

static void test_not_json(void **state)
{
    (void)state;
    static const char *const inputs[] = {
        "",
        "   ",
        "{",
        "{\"data\":",
        "{\"data\":[1,2}",
        "{\"event\":\"a\"",
        "{\"a\":1} x",
        "{\"a\":1}{}",
        "{\"a\":1},",
        "{'a':1}",
        "{a:1}",
        "{\"a\":1,}",
        "{\"a\":01}",
        "{\"a\":NaN}",
        "/* c */ {}",
        "{\"event\":\"\xff\"}",
        "{\"data\":\"\xc3(\"}",
        "{\"data\":\"tab\tinside\"}",
    };
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++)
        expect_drop(inputs[i], PB_DROP_NOT_JSON);

    struct pb_event ev;
    assert_int_equal(parse("{\"a\":1} x", 0, &ev), PB_DROP_NOT_JSON);
    assert_non_null(strstr(ev.detail, "JSON"));
    pb_event_clear(&ev);

    /* Embedded NUL bytes in the input are not JSON either. */
    static const char nul[] = "{\"a\":1}\0";
    pb_event_init(&ev);
    assert_int_equal(pb_envelope_parse(nul, sizeof(nul) - 1, 0, &ev), PB_DROP_NOT_JSON);
    pb_event_clear(&ev);
}

/* JSON text must be UTF-8 (RFC 8259), and a WebSocket text frame that is not valid UTF-8 makes
 * the browser fail the connection (RFC 6455 8.1): bytes yajl lets through (overlongs, encoded
 * surrogates, code points past U+10FFFF) must not reach a client as `data`. */
static void test_strict_utf8(void **state)
{
    (void)state;
    static const char *const inputs[] = {
        "{\"data\":\"\xc0\xaf\"}",
        "{\"data\":\"\xe0\x80\xaf\"}",
        "{\"data\":\"\xed\xa0\x80\"}",
        "{\"data\":\"\xf4\x90\x80\x80\"}",
        "{\"data\":{\"k\":[\"\xed\xbf\xbf\"]}}",
        "{\"event\":\"\xc1\xbf\"}",
        "{\"\xed\xa0\x80\":1}",
    };
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        struct pb_event ev;
        int rc = parse(inputs[i], 0, &ev);
        if (rc != PB_DROP_NOT_JSON)
            fail_msg("input #%zu: got %s, expected not_json", i, pb_drop_reason_name(rc));
        pb_event_clear(&ev);
    }
    /* Valid multi-byte characters up to U+10FFFF pass. */
    expect_drop("{\"data\":\"\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"}",
                PB_DROP_NONE);
}

static void test_not_object(void **state)
{
    (void)state;
    static const char *const inputs[] = {
        "[]", "[{\"data\":1}]", "\"str\"", "123", "1.5", "null", "true", " false ",
    };
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++)
        expect_drop(inputs[i], PB_DROP_NOT_OBJECT);
}

static void test_bad_field(void **state)
{
    (void)state;
    struct {
        const char *json;
        const char *field;
    } cases[] = {
        {"{\"event\":1}", "event"},
        {"{\"event\":{}}", "event"},
        {"{\"event\":[\"a\"]}", "event"},
        {"{\"event\":true}", "event"},
        {"{\"event\":\"\"}", "event"},
        {"{\"final\":\"true\"}", "final"},
        {"{\"final\":1}", "final"},
        {"{\"final\":{}}", "final"},
        {"{\"id\":{}}", "id"},
        {"{\"id\":[1]}", "id"},
        {"{\"id\":false}", "id"},
        {"{\"user_id\":true}", "user_id"},
        {"{\"user_id\":[\"u\"]}", "user_id"},
        {"{\"user_id\":\"\"}", "user_id"},
        {"{\"task\":{}}", "task"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pb_event ev;
        int rc = parse(cases[i].json, 0, &ev);
        if (rc != PB_DROP_BAD_FIELD)
            fail_msg("%s: got %s, expected bad_field", cases[i].json, pb_drop_reason_name(rc));
        if (!strstr(ev.detail, cases[i].field))
            fail_msg("%s: detail \"%s\" does not name %s", cases[i].json, ev.detail,
                     cases[i].field);
        pb_event_clear(&ev);
    }
}

static void test_field_length_limits(void **state)
{
    (void)state;
    char json[600];
    struct pb_event ev;
    char *u256 = repeat('u', PB_MAX_ID_BYTES);
    char *u257 = repeat('u', PB_MAX_ID_BYTES + 1);

    snprintf(json, sizeof(json), "{\"user_id\":\"%s\"}", u256);
    assert_int_equal(parse(json, 0, &ev), PB_DROP_NONE);
    assert_int_equal(strlen(ev.user_id), PB_MAX_ID_BYTES);
    pb_event_clear(&ev);

    snprintf(json, sizeof(json), "{\"user_id\":\"%s\"}", u257);
    assert_int_equal(parse(json, 0, &ev), PB_DROP_BAD_FIELD);
    assert_non_null(strstr(ev.detail, "user_id"));
    pb_event_clear(&ev);

    snprintf(json, sizeof(json), "{\"event\":\"%s\"}", u257);
    expect_drop(json, PB_DROP_BAD_FIELD);

    /* The limit is on decoded bytes: 128 two-byte characters fit exactly. */
    char *p = json + snprintf(json, sizeof(json), "{\"user_id\":\"");
    for (int i = 0; i < 128; i++)
        p += sprintf(p, "\xc3\xa9");
    strcpy(p, "\"}");
    assert_int_equal(parse(json, 0, &ev), PB_DROP_NONE);
    assert_int_equal(strlen(ev.user_id), 256);
    pb_event_clear(&ev);

    free(u256);
    free(u257);
}

/* A NUL escaped into an ID must not make it a different (shorter) ID: "a\u0000b" is not user
 * "a". Either the field is refused or the whole three bytes are the target. */
static void test_user_id_with_nul_is_not_truncated(void **state)
{
    (void)state;
    struct pb_event ev;
    int rc = parse("{\"user_id\":\"a\\u0000b\"}", 0, &ev);
    if (rc == PB_DROP_NONE) {
        assert_int_not_equal(pb_event_set_target(&ev, "a", 1), PB_DROP_NONE);
        pb_event_clear(&ev);
        assert_int_equal(parse("{\"user_id\":\"a\\u0000b\"}", 0, &ev), PB_DROP_NONE);
        if (pb_event_set_target(&ev, NULL, 0) == PB_DROP_NONE)
            assert_int_equal(ev.target_len, 3);
    } else {
        assert_int_equal(rc, PB_DROP_BAD_FIELD);
    }
    pb_event_clear(&ev);
}

/* ---- targets ---- */

static int target(const char *json, const char *key, size_t keylen, struct pb_event *ev)
{
    int rc = parse(json, 0, ev);
    assert_int_equal(rc, PB_DROP_NONE);
    return pb_event_set_target(ev, key, keylen);
}

static void test_target_user_key(void **state)
{
    (void)state;
    struct pb_event ev;
    assert_int_equal(target("{\"data\":1}", "u-7", 3, &ev), PB_DROP_NONE);
    assert_int_equal(ev.target_kind, PB_TARGET_USER);
    assert_int_equal(ev.target_len, 3);
    assert_memory_equal(ev.target, "u-7", 3);
    pb_event_clear(&ev);

    /* Key and user_id agree. */
    assert_int_equal(target("{\"user_id\":\"u-7\"}", "u-7", 3, &ev), PB_DROP_NONE);
    assert_int_equal(ev.target_kind, PB_TARGET_USER);
    pb_event_clear(&ev);

    /* A UTF-8 key of exactly 256 bytes. */
    char *k256 = repeat('k', PB_MAX_ID_BYTES);
    assert_int_equal(target("{}", k256, PB_MAX_ID_BYTES, &ev), PB_DROP_NONE);
    assert_int_equal(ev.target_len, PB_MAX_ID_BYTES);
    pb_event_clear(&ev);
    free(k256);

    assert_int_equal(target("{}", "\xc3\xa9t\xc3\xa9", 6, &ev), PB_DROP_NONE);
    pb_event_clear(&ev);
}

static void test_target_all_and_group(void **state)
{
    (void)state;
    struct pb_event ev;
    assert_int_equal(target("{\"data\":1}", "*", 1, &ev), PB_DROP_NONE);
    assert_int_equal(ev.target_kind, PB_TARGET_ALL);
    pb_event_clear(&ev);

    assert_int_equal(target("{\"data\":1}", "group:ops", 9, &ev), PB_DROP_NONE);
    assert_int_equal(ev.target_kind, PB_TARGET_GROUP);
    assert_int_equal(ev.target_len, 3);
    assert_memory_equal(ev.target, "ops", 3);
    pb_event_clear(&ev);

    /* "**" and "group" are plain user IDs. */
    assert_int_equal(target("{}", "**", 2, &ev), PB_DROP_NONE);
    assert_int_equal(ev.target_kind, PB_TARGET_USER);
    pb_event_clear(&ev);
    assert_int_equal(target("{}", "group", 5, &ev), PB_DROP_NONE);
    assert_int_equal(ev.target_kind, PB_TARGET_USER);
    pb_event_clear(&ev);
}

static void test_no_target(void **state)
{
    (void)state;
    struct pb_event ev;
    assert_int_equal(target("{\"data\":1}", NULL, 0, &ev), PB_DROP_NO_TARGET);
    assert_true(ev.detail[0] != '\0');
    pb_event_clear(&ev);
    /* An empty key is no key. */
    assert_int_equal(target("{\"data\":1}", "", 0, &ev), PB_DROP_NO_TARGET);
    pb_event_clear(&ev);

    static const char *const bad_keys[] = {
        "\xff",             /* never valid */
        "u\xc3",            /* truncated sequence */
        "\xc0\xaf",         /* overlong '/' */
        "\xe0\x80\xaf",     /* overlong, three bytes */
        "\xed\xa0\x80",     /* UTF-16 surrogate */
        "\xf4\x90\x80\x80", /* beyond U+10FFFF */
        "group:",           /* empty group name */
    };
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
        int rc = target("{\"user_id\":\"u\"}", bad_keys[i], strlen(bad_keys[i]), &ev);
        if (rc != PB_DROP_NO_TARGET)
            fail_msg("key #%zu: got %s, expected no_target", i, pb_drop_reason_name(rc));
        pb_event_clear(&ev);
    }

    char *k257 = repeat('k', PB_MAX_ID_BYTES + 1);
    assert_int_equal(target("{}", k257, PB_MAX_ID_BYTES + 1, &ev), PB_DROP_NO_TARGET);
    pb_event_clear(&ev);
    char gkey[6 + PB_MAX_ID_BYTES + 2];
    snprintf(gkey, sizeof(gkey), "group:%s", k257);
    assert_int_equal(target("{}", gkey, strlen(gkey), &ev), PB_DROP_NO_TARGET);
    pb_event_clear(&ev);
    free(k257);
}

static void test_key_mismatch(void **state)
{
    (void)state;
    struct pb_event ev;
    assert_int_equal(target("{\"user_id\":\"u1\"}", "u2", 2, &ev), PB_DROP_KEY_MISMATCH);
    assert_true(ev.detail[0] != '\0');
    pb_event_clear(&ev);
    /* A prefix is not a match, in either direction. */
    assert_int_equal(target("{\"user_id\":\"u1\"}", "u12", 3, &ev), PB_DROP_KEY_MISMATCH);
    pb_event_clear(&ev);
    assert_int_equal(target("{\"user_id\":\"u12\"}", "u1", 2, &ev), PB_DROP_KEY_MISMATCH);
    pb_event_clear(&ev);
    assert_int_equal(target("{\"user_id\":123}", "124", 3, &ev), PB_DROP_KEY_MISMATCH);
    pb_event_clear(&ev);
}

/* ---- HTTP aliases ---- */

static void test_http_aliases(void **state)
{
    (void)state;
    struct pb_event ev;
    static const char *const user_forms[] = {
        "{\"userId\":\"u9\",\"data\":1}",
        "{\"uid\":\"u9\",\"data\":1}",
        "{\"user_id\":\"u9\",\"data\":1}",
    };
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(parse(user_forms[i], PB_ENV_HTTP_ALIASES, &ev), PB_DROP_NONE);
        assert_non_null(ev.user_id);
        assert_string_equal(ev.user_id, "u9");
        pb_event_clear(&ev);
    }
    assert_int_equal(parse("{\"uid\":9}", PB_ENV_HTTP_ALIASES, &ev), PB_DROP_NONE);
    assert_string_equal(ev.user_id, "9");
    pb_event_clear(&ev);

    assert_int_equal(
        parse("{\"uid\":\"u1\",\"message\":\"Hello World\"}", PB_ENV_HTTP_ALIASES, &ev),
        PB_DROP_NONE);
    expect_data(&ev, "\"Hello World\"");
    assert_true(ev.data_is_string);
    assert_string_equal(ev.data_text, "Hello World");
    pb_event_clear(&ev);

    assert_int_equal(parse("{\"message\":{\"a\": [1]}}", PB_ENV_HTTP_ALIASES, &ev), PB_DROP_NONE);
    expect_data(&ev, "{\"a\": [1]}");
    assert_false(ev.data_is_string);
    assert_null(ev.data_text);
    pb_event_clear(&ev);

    /* "data" wins over "message", whichever comes first. */
    static const char *const both[] = {
        "{\"data\":\"from data\",\"message\":\"from message\"}",
        "{\"message\":\"from message\",\"data\":\"from data\"}",
    };
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(parse(both[i], PB_ENV_HTTP_ALIASES, &ev), PB_DROP_NONE);
        expect_data(&ev, "\"from data\"");
        assert_string_equal(ev.data_text, "from data");
        pb_event_clear(&ev);
    }
    assert_int_equal(parse("{\"message\":\"m\",\"data\":[2]}", PB_ENV_HTTP_ALIASES, &ev),
                     PB_DROP_NONE);
    expect_data(&ev, "[2]");
    assert_false(ev.data_is_string);
    assert_null(ev.data_text);
    pb_event_clear(&ev);

    /* Aliases are type-checked like the real fields. */
    expect_drop_flags("{\"uid\":{}}", PB_ENV_HTTP_ALIASES, PB_DROP_BAD_FIELD);

    /* "group" belongs to broadcast bodies; on Kafka the key says group:NAME. */
    assert_int_equal(parse("{\"group\":\"ops\",\"data\":1}", PB_ENV_HTTP_ALIASES, &ev),
                     PB_DROP_NONE);
    assert_string_equal(ev.group, "ops");
    pb_event_clear(&ev);
    expect_drop_flags("{\"group\":1}", PB_ENV_HTTP_ALIASES, PB_DROP_BAD_FIELD);
    expect_drop_flags("{\"group\":[\"ops\"]}", PB_ENV_HTTP_ALIASES, PB_DROP_BAD_FIELD);
    assert_int_equal(parse("{\"group\":\"ops\",\"data\":1}", 0, &ev), PB_DROP_NONE);
    assert_null(ev.group);
    pb_event_clear(&ev);
    expect_drop("{\"group\":1}", PB_DROP_NONE);

    /* Without the flag (Kafka) the aliases are ordinary unknown members. */
    assert_int_equal(parse("{\"uid\":\"u1\",\"userId\":\"u2\",\"message\":\"m\"}", 0, &ev),
                     PB_DROP_NONE);
    assert_null(ev.user_id);
    expect_data(&ev, "null");
    assert_false(ev.data_is_string);
    assert_int_equal(pb_event_set_target(&ev, NULL, 0), PB_DROP_NO_TARGET);
    pb_event_clear(&ev);
}

/* ---- event name override ---- */

static void test_set_name(void **state)
{
    (void)state;
    struct pb_event ev;
    assert_int_equal(parse("{\"event\":\"from.body\"}", 0, &ev), PB_DROP_NONE);
    assert_int_equal(pb_event_set_name(&ev, "from.header", 11), PB_DROP_NONE);
    assert_string_equal(pb_event_name(&ev), "from.header");
    /* Only len bytes are taken. */
    assert_int_equal(pb_event_set_name(&ev, "abcdef", 3), PB_DROP_NONE);
    assert_string_equal(pb_event_name(&ev), "abc");

    assert_int_equal(pb_event_set_name(&ev, "", 0), PB_DROP_BAD_FIELD);
    assert_true(ev.detail[0] != '\0');
    assert_int_equal(pb_event_set_name(&ev, "\xff\xfe", 2), PB_DROP_BAD_FIELD);
    char *n257 = repeat('n', PB_MAX_ID_BYTES + 1);
    assert_int_equal(pb_event_set_name(&ev, n257, PB_MAX_ID_BYTES + 1), PB_DROP_BAD_FIELD);
    assert_int_equal(pb_event_set_name(&ev, n257, PB_MAX_ID_BYTES), PB_DROP_NONE);
    assert_int_equal(strlen(pb_event_name(&ev)), PB_MAX_ID_BYTES);
    free(n257);
    pb_event_clear(&ev);

    /* On an event that named none. */
    assert_int_equal(parse("{}", 0, &ev), PB_DROP_NONE);
    assert_int_equal(pb_event_set_name(&ev, "x", 1), PB_DROP_NONE);
    assert_string_equal(pb_event_name(&ev), "x");
    pb_event_clear(&ev);
}

static void test_drop_reason_names(void **state)
{
    (void)state;
    assert_string_equal(pb_drop_reason_name(PB_DROP_NONE), "none");
    assert_string_equal(pb_drop_reason_name(PB_DROP_NOT_JSON), "not_json");
    assert_string_equal(pb_drop_reason_name(PB_DROP_NOT_OBJECT), "not_object");
    assert_string_equal(pb_drop_reason_name(PB_DROP_NO_TARGET), "no_target");
    assert_string_equal(pb_drop_reason_name(PB_DROP_OVERSIZED), "oversized");
    assert_string_equal(pb_drop_reason_name(PB_DROP_KEY_MISMATCH), "key_mismatch");
    assert_string_equal(pb_drop_reason_name(PB_DROP_BAD_FIELD), "bad_field");
    assert_string_equal(pb_drop_reason_name(PB_DROP_STALE), "stale");
    assert_string_equal(pb_drop_reason_name(PB_DROP__COUNT), "unknown");
    assert_string_equal(pb_drop_reason_name(-1), "unknown");
}

/* ---- JSON helpers ---- */

struct spans {
    int n;
    int stop_at; /* callback number that returns 1; 0 = never */
    char text[16][64];
};

static int collect(const char *el, size_t len, void *ud)
{
    struct spans *s = ud;
    assert_true(s->n < 16 && len < 64);
    memcpy(s->text[s->n], el, len);
    s->text[s->n][len] = '\0';
    s->n++;
    return s->stop_at && s->n == s->stop_at;
}

static void test_array_each(void **state)
{
    (void)state;
    static const char *const elems[] = {
        "1",    "\"a,]\\\"[\"", "[1,[2,3],\"]\"]", "{\"k\":\"}\",\"l\":[{}]}",
        "null", "-1.5e3",       "\"\\\\\"",        "true",
    };
    const char *input = " [ 1 , \"a,]\\\"[\" ,\n[1,[2,3],\"]\"],{\"k\":\"}\",\"l\":[{}]}, null,"
                        "-1.5e3 ,\"\\\\\",true ] ";
    assert_int_equal(pb_json_validate(input, strlen(input), NULL, 0), 0);
    struct spans s = {0};
    assert_int_equal(pb_json_array_each(input, strlen(input), collect, &s), 8);
    assert_int_equal(s.n, 8);
    for (int i = 0; i < 8; i++)
        assert_string_equal(s.text[i], elems[i]);

    /* No callback: just the count (batch size check). */
    assert_int_equal(pb_json_array_each(input, strlen(input), NULL, NULL), 8);

    /* A callback may stop the walk. */
    struct spans stop = {.stop_at = 2};
    assert_int_equal(pb_json_array_each(input, strlen(input), collect, &stop), 2);
    assert_int_equal(stop.n, 2);

    struct spans none = {0};
    assert_int_equal(pb_json_array_each("[]", 2, collect, &none), 0);
    assert_int_equal(pb_json_array_each(" [ \n ] ", 7, collect, &none), 0);
    assert_int_equal(none.n, 0);
    assert_int_equal(pb_json_array_each("[[]]", 4, NULL, NULL), 1);
    assert_int_equal(pb_json_array_each("[{},{}]", 7, NULL, NULL), 2);

    assert_int_equal(pb_json_array_each("{\"a\":[1,2]}", 11, collect, &none), -1);
    assert_int_equal(pb_json_array_each("\"[1]\"", 5, collect, &none), -1);
    assert_int_equal(pb_json_array_each("", 0, collect, &none), -1);
    assert_int_equal(none.n, 0);

    assert_true(pb_json_is_array(" \n[1]", 5));
    assert_false(pb_json_is_array("{\"a\":[1]}", 9));
    assert_false(pb_json_is_array("", 0));
}

static void test_validate(void **state)
{
    (void)state;
    static const char *const good[] = {
        "{}", "[]", "1", "\"s\"", "null", " {\"a\":[1,{\"b\":null}]} ", "\"\\ud83d\\ude00\"",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char detail[128] = "";
        if (pb_json_validate(good[i], strlen(good[i]), detail, sizeof(detail)) != 0)
            fail_msg("%s: refused (%s)", good[i], detail);
    }
    static const char *const bad[] = {
        "", "{", "{} {}", "[1,]", "{\"a\"}", "tru", "\"\xff\"", "[1] x", "'s'",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char detail[128] = "";
        if (pb_json_validate(bad[i], strlen(bad[i]), detail, sizeof(detail)) != -1)
            fail_msg("%s: accepted", bad[i]);
        assert_null(strchr(detail, '\n'));
    }
    char detail[128] = "";
    assert_int_equal(pb_json_validate("{\"a\":", 5, detail, sizeof(detail)), -1);
    assert_true(detail[0] != '\0');
}

/* ---- deep nesting ---- */

#define DEEP 100000

static void test_deep_nesting(void **state)
{
    (void)state;
    const char *head = "{\"event\":\"deep\",\"data\":";
    size_t hlen = strlen(head);
    size_t len = hlen + 2 * DEEP + 1;
    char *json = malloc(len + 1);
    assert_non_null(json);
    memcpy(json, head, hlen);
    memset(json + hlen, '[', DEEP);
    memset(json + hlen + DEEP, ']', DEEP);
    json[len - 1] = '}';
    json[len] = '\0';

    struct pb_event ev;
    pb_event_init(&ev);
    int rc = pb_envelope_parse(json, len, 0, &ev);
    /* Accepted with the data span intact, or refused; never a crash. */
    if (rc == PB_DROP_NONE) {
        assert_int_equal(ev.data_len, 2 * DEEP);
        assert_ptr_equal(ev.data, json + hlen);
        assert_string_equal(pb_event_name(&ev), "deep");
    }
    pb_event_clear(&ev);
    char detail[128];
    assert_int_equal(pb_json_validate(json + hlen, 2 * DEEP, detail, sizeof(detail)) == 0,
                     rc == PB_DROP_NONE);
    assert_int_equal(pb_json_array_each(json + hlen, 2 * DEEP, NULL, NULL), 1);

    /* Unbalanced: 100000 '[' and nothing else inside data. */
    json[hlen + DEEP] = '}';
    pb_event_init(&ev);
    assert_int_equal(pb_envelope_parse(json, hlen + DEEP + 1, 0, &ev), PB_DROP_NOT_JSON);
    pb_event_clear(&ev);

    /* Deep objects inside data, and deep nesting in an unknown member. */
    char *obj = malloc(8 * DEEP + 64);
    assert_non_null(obj);
    char *p = obj + sprintf(obj, "{\"x\":");
    for (int i = 0; i < DEEP; i++)
        p += sprintf(p, "{\"a\":");
    p += sprintf(p, "1");
    memset(p, '}', DEEP);
    p += DEEP;
    p += sprintf(p, ",\"data\":7}");
    pb_event_init(&ev);
    assert_int_equal(pb_envelope_parse(obj, (size_t)(p - obj), 0, &ev), PB_DROP_NONE);
    expect_data(&ev, "7");
    pb_event_clear(&ev);

    free(obj);
    free(json);
}

/* One rule for every identity (issue 14 item 4), and the raw-escape check
 * that sees what yajl's decoding hides. */
static void test_identity_rules(void **state)
{
    (void)state;
    assert_null(pb_id_problem("bob", 3));
    assert_null(pb_id_problem("b\xc3\xb6" "b", 4));
    assert_non_null(pb_id_problem("", 0));
    assert_non_null(pb_id_problem("a\0b", 3));
    assert_non_null(pb_id_problem("eve\xed\xb0\x80", 6)); /* U+DC00 encoded */
    char big[258];
    memset(big, 'a', sizeof(big));
    assert_null(pb_id_problem(big, 256));
    assert_non_null(pb_id_problem(big, 257));

    const char *paired[] = {"\"bob\"", "\"\\ud83d\\ude00\"", "\"\\\\ud800\"", "\"\\u0041\"",
                            "\"a\\\\\\\\ud800\""};
    for (size_t i = 0; i < sizeof(paired) / sizeof(paired[0]); i++)
        assert_true(pb_json_surrogates_paired(paired[i], strlen(paired[i])));
    const char *lone[] = {"\"bob\\ud800\"", "\"bob\\udbff\"", "\"eve\\udc00\"",
                          "\"\\ud800\\u0041\"", "\"\\ud800\\ud800\"", "\"x\\\\\\ud800\""};
    for (size_t i = 0; i < sizeof(lone) / sizeof(lone[0]); i++)
        assert_false(pb_json_surrogates_paired(lone[i], strlen(lone[i])));

    /* Kafka / HTTP user_id: "bob\ud800" is not "bob?". */
    struct pb_event ev;
    pb_event_init(&ev);
    const char *body = "{\"user_id\":\"bob\\ud800\",\"data\":1}";
    assert_int_equal(pb_envelope_parse(body, strlen(body), 0, &ev), PB_DROP_BAD_FIELD);
    pb_event_clear(&ev);
    body = "{\"user_id\":\"bob?\",\"data\":1}";
    assert_int_equal(pb_envelope_parse(body, strlen(body), 0, &ev), PB_DROP_NONE);
    pb_event_clear(&ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_envelope),
        cmocka_unit_test(test_data_byte_for_byte),
        cmocka_unit_test(test_data_nested_member_named_data_is_not_taken),
        cmocka_unit_test(test_data_string_decoded),
        cmocka_unit_test(test_data_absent_or_null),
        cmocka_unit_test(test_event_name_default),
        cmocka_unit_test(test_optional_fields),
        cmocka_unit_test(test_numeric_ids),
        cmocka_unit_test(test_duplicates_last_wins),
        cmocka_unit_test(test_escaped_data_name_consistent),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_strict_utf8),
        cmocka_unit_test(test_not_object),
        cmocka_unit_test(test_bad_field),
        cmocka_unit_test(test_field_length_limits),
        cmocka_unit_test(test_user_id_with_nul_is_not_truncated),
        cmocka_unit_test(test_target_user_key),
        cmocka_unit_test(test_target_all_and_group),
        cmocka_unit_test(test_no_target),
        cmocka_unit_test(test_key_mismatch),
        cmocka_unit_test(test_http_aliases),
        cmocka_unit_test(test_set_name),
        cmocka_unit_test(test_drop_reason_names),
        cmocka_unit_test(test_array_each),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_identity_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of the envelope's fast path (envelope_fast.c): it decides the
 * envelopes producers usually write, exactly as the full parse would, and
 * leaves every unusual or malformed one, untouched, to the full parse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pushbridge/event/envelope.h"
#include "pushbridge/event/envelope_fast.h"
#include "../fuzz/event_same.h"

/* Asserts what pb_envelope_parse says of json is what the full parse says,
 * member for member, and returns what the fast path alone said. */
static int check(const char *json, int flags)
{
    struct pb_event fast, full, whole;
    pb_event_init(&fast);
    pb_event_init(&full);
    pb_event_init(&whole);
    int fast_rc = pb_envelope_parse_fast(json, strlen(json), flags, &fast);
    int full_rc = pb_envelope_parse(json, strlen(json), flags | PB_ENV_FULL_PARSE, &full);
    int rc = pb_envelope_parse(json, strlen(json), flags, &whole);
    if (rc != full_rc)
        fail_msg("%s: %s with the fast path, %s without", json, pb_drop_reason_name(rc),
                 pb_drop_reason_name(full_rc));
    if (rc == PB_DROP_NONE && !pb_test_event_same(&whole, &full))
        fail_msg("%s: the fast path read other members than the full parse", json);
    if (fast_rc == PB_ENVELOPE_SLOW) {
        /* Untouched: the full parse starts from a clean event. */
        struct pb_event clean;
        pb_event_init(&clean);
        assert_true(pb_test_event_same(&fast, &clean));
    } else {
        assert_int_equal(fast_rc, PB_DROP_NONE);
        assert_true(pb_test_event_same(&fast, &full));
    }
    pb_event_clear(&fast);
    pb_event_clear(&full);
    pb_event_clear(&whole);
    return fast_rc;
}

static void expect_fast(const char *json, int flags)
{
    if (check(json, flags) != PB_DROP_NONE)
        fail_msg("%s: expected the fast path to decide it", json);
}

static void expect_slow(const char *json, int flags)
{
    if (check(json, flags) != PB_ENVELOPE_SLOW)
        fail_msg("%s: expected the fast path to leave it to the full parse", json);
}

static void test_usual_envelopes(void **state)
{
    (void)state;
    expect_fast("{\"event\":\"order.created\",\"data\":{\"id\":42,\"total\":9.5}}", 0);
    expect_fast("{}", 0);
    expect_fast(" {\n\t\"data\" : [1, -0, 2.5e-3, 1E+9, true, false, null, \"a\\u00e9\\n\"] }\r\n", 0);
    expect_fast("{\"id\":17,\"user_id\":-5,\"task\":1.5e2,\"final\":true,\"data\":\"done\"}", 0);
    expect_fast("{\"event\":\"x\",\"final\":false,\"data\":null}", 0);
    expect_fast("{\"event\":null,\"id\":null,\"final\":null,\"data\":{}}", 0);
    expect_fast("{\"data\":{\"event\":1,\"data\":[{\"data\":{}}]},\"other\":{\"x\":\"\\\"\"}}", 0);
    expect_fast("{\"event\":\"\xc3\xa9t\xc3\xa9\",\"data\":\"caf\xc3\xa9\"}", 0);
    expect_fast("{\"userId\":\"u1\",\"group\":\"ops\",\"data\":1}", PB_ENV_HTTP_ALIASES);
    expect_fast("{\"group\":{\"not\":\"read\"},\"data\":1}", 0); /* no aliases: another member */
}

static void test_left_to_the_full_parse(void **state)
{
    (void)state;
    /* Malformed: the full parse names the fault. */
    const char *bad[] = {
        "", "   ", "[]", "\"s\"", "1", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{\"a\":1 \"b\":2}",
        "{\"a\":[1,]}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":-}", "{\"a\":1e}",
        "{\"a\":tru}", "{\"a\":nul}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}", "{\"a\":\"\x01\"}",
        "{} {}", "{}x", "{\"a\":1}\f", "\f{}", "{\"a\":[}", "{\"a\":{]}", "{\"a\":{\"b\"]}",
        "{\"event\":1}", "{\"event\":\"\"}", "{\"event\":[]}", "{\"final\":\"yes\"}", "{\"final\":1}",
        "{\"id\":{}}", "{\"data\":1,\"data\":2}", "{\"event\":\"a\",\"event\":\"b\"}",
        "{\"a\":1}garbage", "{\"a\":\"unterminated}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_slow(bad[i], 0);
    /* Valid but unusual: escapes where the bridge reads, a name written with
     * escapes, a '?' that might be a decoded lone surrogate, the alias. */
    expect_slow("{\"event\":\"a\\nb\",\"data\":1}", 0);
    expect_slow("{\"d\\u0061ta\":1}", 0);
    expect_slow("{\"data\":\"line\\nbreak\"}", 0);
    expect_slow("{\"user_id\":\"who?\",\"data\":\"\\ud800\"}", 0);
    expect_slow("{\"message\":\"hi\",\"userId\":\"u1\"}", PB_ENV_HTTP_ALIASES);
    expect_slow("{\"uid\":\"a\",\"user_id\":\"b\"}", PB_ENV_HTTP_ALIASES);
}

static void test_depth_limit(void **state)
{
    (void)state;
    /* A member's value nested as deep as the fast path follows (the root
     * object aside), and one level more, which it leaves. */
    for (int depth = PB_ENVELOPE_FAST_MAX_DEPTH; depth <= PB_ENVELOPE_FAST_MAX_DEPTH + 1; depth++) {
        char json[512];
        int n = snprintf(json, sizeof(json), "{\"data\":");
        for (int d = 0; d < depth; d++)
            json[n++] = '[';
        for (int d = 0; d < depth; d++)
            json[n++] = ']';
        snprintf(json + n, sizeof(json) - (size_t)n, "}");
        if (depth > PB_ENVELOPE_FAST_MAX_DEPTH)
            expect_slow(json, 0);
        else
            expect_fast(json, 0);
    }
}

static void test_id_length_bound(void **state)
{
    (void)state;
    char json[600];
    char id[PB_MAX_ID_BYTES + 2];
    memset(id, 'a', sizeof(id) - 1);
    id[PB_MAX_ID_BYTES] = '\0'; /* 256 bytes: accepted */
    snprintf(json, sizeof(json), "{\"user_id\":\"%s\"}", id);
    expect_fast(json, 0);
    id[PB_MAX_ID_BYTES] = 'a'; /* 257: the full parse refuses it */
    id[PB_MAX_ID_BYTES + 1] = '\0';
    snprintf(json, sizeof(json), "{\"user_id\":\"%s\"}", id);
    expect_slow(json, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usual_envelopes),
        cmocka_unit_test(test_left_to_the_full_parse),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_id_length_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of the SSE framing: the length sized before writing must be
 * exactly what is written, whatever line breaks the producer's data holds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pushbridge/public/sse.h"

static void check(const char *json, const char *pos, const char *want)
{
    size_t len = strlen(json), pl = pos ? strlen(pos) : 0;
    size_t need = pb_sse_format_len(json, len, pl);
    char *out = malloc(need + 1);
    assert_non_null(out);
    size_t n = pb_sse_format(out, json, len, pos, pl);
    assert_int_equal(n, need);
    out[n] = '\0';
    assert_string_equal(out, want);
    free(out);
}

static void test_line_breaks(void **state)
{
    (void)state;
    check("{\"a\":1}", NULL, "data: {\"a\":1}\n\n");
    check("{\"a\":1}", "1.5.x~2", "id: 1.5.x~2\ndata: {\"a\":1}\n\n");
    check("{\n\"a\":1\n}", NULL, "data: {\ndata: \"a\":1\ndata: }\n\n");
    check("{\r\n\"a\":1\r\n}", NULL, "data: {\ndata: \"a\":1\ndata: }\n\n");
    check("{\r\"a\":1}", NULL, "data: {\ndata: \"a\":1}\n\n");
    check("\r\n\r\n", NULL, "data: \ndata: \ndata: \n\n");
    check("x\r", NULL, "data: x\ndata: \n\n");
}

static void test_frame_pos(void **state)
{
    (void)state;
    const char *f = "{\"type\":\"event\",\"event\":\"e\",\"pos\":\"1.2.ab-0~3\",\"data\":{\"pos\":\"no\"}}";
    size_t pl = 0;
    const char *p = pb_sse_frame_pos(f, strlen(f), &pl);
    assert_non_null(p);
    assert_int_equal(pl, 10);
    assert_memory_equal(p, "1.2.ab-0~3", 10);
    const char *g = "{\"type\":\"event\",\"event\":\"e\",\"data\":{\"pos\":\"no\"}}";
    assert_null(pb_sse_frame_pos(g, strlen(g), &pl));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_breaks),
        cmocka_unit_test(test_frame_pos),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

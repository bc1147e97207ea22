/* The per-connection records an idle connection holds, against the sizes
 * docs/PERFORMANCE.md counts in its RSS per idle connection (issue 19: at
 * most 2.5 KiB in all, most of it lws's): a field added to one of them
 * shows up here first, with the bound to re-measure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pushbridge/hub/conns.h"
#include "pushbridge/hub/hub.h"
#include "pushbridge/public/worker.h"

/* malloc's chunk for n bytes on 64-bit glibc: n + 8 rounded up to 16, at
 * least 32. What RSS pays, not sizeof. */
static size_t chunk(size_t n)
{
    size_t c = (n + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

static void test_worker_connection_record(void **state)
{
    (void)state;
    /* pb_conn: 264 bytes (a 272-byte chunk) before 2026-12-07. */
    assert_true(sizeof(struct pb_conn) <= 152);
    assert_int_equal(chunk(sizeof(struct pb_conn)), 160);
}

static void test_lws_session_data(void **state)
{
    (void)state;
    /* pb_pss, allocated by lws for every connection: 216 before; an SSE
     * stream's own fields are apart (sse.c). */
    assert_true(sizeof(struct pb_pss) <= 144);
    assert_int_equal(chunk(sizeof(struct pb_pss)), 160);
}

static void test_hub_member(void **state)
{
    (void)state;
    /* pb_member, the hub's record of a logged-in connection: 128 before. */
    assert_true(sizeof(struct pb_member) <= 120);
    assert_int_equal(chunk(sizeof(struct pb_member)), 128);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worker_connection_record),
        cmocka_unit_test(test_lws_session_data),
        cmocka_unit_test(test_hub_member),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

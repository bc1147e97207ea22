/* Unit tests of the held resuming logins (held.c): first in, first out;
 * only due entries are taken unless all are; a dropped entry (its
 * connection closed) leaves the list whole, the tail included. Members are
 * opaque here, so fake addresses stand in for them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "pushbridge/hub/held.h"

#define MB(n) ((struct pb_member *)(uintptr_t)(0x1000 * (n)))

static void add(struct pb_held_list *l, int n, int64_t until)
{
    assert_int_equal(pb_held_add(l, MB(n), strdup("1.5.x~3"), until), 0);
}

static void take_is(struct pb_held_list *l, int64_t now, int all, int n)
{
    struct pb_held *e = pb_held_take(l, now, all);
    assert_non_null(e);
    assert_ptr_equal(e->mb, MB(n));
    assert_string_equal(e->resume, "1.5.x~3");
    pb_held_free(e);
}

static void test_fifo_and_due(void **state)
{
    (void)state;
    struct pb_held_list l = {0};
    add(&l, 1, 100);
    add(&l, 2, 200);
    assert_null(pb_held_take(&l, 99, 0)); /* nothing due yet */
    take_is(&l, 100, 0, 1);
    assert_null(pb_held_take(&l, 150, 0));
    take_is(&l, 150, 1, 2); /* all: due or not */
    assert_null(pb_held_take(&l, 1000, 1));
    assert_int_equal(l.n, 0);
    add(&l, 3, 10); /* the emptied list takes new entries */
    take_is(&l, 10, 0, 3);
}

static void test_drop_keeps_the_list_whole(void **state)
{
    (void)state;
    struct pb_held_list l = {0};
    for (int i = 1; i <= 4; i++)
        add(&l, i, i);
    pb_held_drop(&l, MB(4)); /* the last: the tail moves back */
    add(&l, 5, 5);
    pb_held_drop(&l, MB(2)); /* a middle one */
    pb_held_drop(&l, MB(1)); /* the head */
    pb_held_drop(&l, MB(9)); /* never held: nothing happens */
    assert_int_equal(l.n, 2);
    take_is(&l, 100, 0, 3);
    take_is(&l, 100, 0, 5);
    pb_held_drop(&l, MB(5)); /* empty list */
    add(&l, 6, 6);
    take_is(&l, 6, 0, 6);
    assert_null(l.head);
    assert_null(l.tail);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_and_due),
        cmocka_unit_test(test_drop_keeps_the_list_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

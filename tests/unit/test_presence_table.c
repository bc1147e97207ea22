/* Unit tests of presence's user tables (src/kafka/presence_table.c): counts set, changed
 * and removed; the budget shared by several tables refuses an insert past it and frees
 * room on removal; swapping a snapshot's table in keeps the budget right; the tables
 * grow past their first bucket array. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../src/kafka/presence_table.h"

static void set_get_remove(void **state)
{
    (void)state;
    size_t used = 0;
    struct pb_utable t;
    pb_utable_init(&t, &used, 100, 42);
    assert_int_equal(pb_utable_get(&t, "alice", 5), 0);
    assert_int_equal(pb_utable_set(&t, "alice", 5, 2), 0);
    assert_int_equal(pb_utable_set(&t, "bob", 3, 1), 0);
    assert_int_equal(pb_utable_get(&t, "alice", 5), 2);
    assert_int_equal(pb_utable_get(&t, "alic", 4), 0);
    assert_int_equal(pb_utable_set(&t, "alice", 5, 3), 0); /* a change: no new entry */
    assert_int_equal(used, 2);
    assert_int_equal(pb_utable_set(&t, "alice", 5, 0), 0); /* 0 removes */
    assert_int_equal(pb_utable_get(&t, "alice", 5), 0);
    assert_int_equal(used, 1);
    assert_int_equal(pb_utable_set(&t, "nobody", 6, 0), 0); /* removing nothing is fine */
    pb_utable_clear(&t);
    assert_int_equal(used, 0);
}

static void budget_is_shared(void **state)
{
    (void)state;
    size_t used = 0;
    struct pb_utable a, b;
    pb_utable_init(&a, &used, 3, 1);
    pb_utable_init(&b, &used, 3, 1);
    assert_int_equal(pb_utable_set(&a, "1", 1, 1), 0);
    assert_int_equal(pb_utable_set(&a, "2", 1, 1), 0);
    assert_int_equal(pb_utable_set(&b, "3", 1, 1), 0);
    assert_int_equal(pb_utable_set(&b, "4", 1, 1), -1); /* over the budget: refused */
    assert_int_equal(pb_utable_get(&b, "4", 1), 0);
    assert_int_equal(pb_utable_set(&a, "2", 1, 5), 0); /* a change still works */
    assert_int_equal(pb_utable_set(&a, "1", 1, 0), 0);
    assert_int_equal(pb_utable_set(&b, "4", 1, 1), 0); /* room again */
    assert_int_equal(used, 3);
    pb_utable_clear(&a);
    pb_utable_clear(&b);
    assert_int_equal(used, 0);
}

static void swap_in_a_snapshot(void **state)
{
    (void)state;
    size_t used = 0;
    struct pb_utable live, building;
    pb_utable_init(&live, &used, 1000, 7);
    pb_utable_init(&building, &used, 1000, 7);
    pb_utable_set(&live, "old", 3, 4);
    pb_utable_set(&building, "new", 3, 1);
    pb_utable_set(&building, "newer", 5, 2);
    assert_int_equal(used, 3);
    pb_utable_swap_in(&live, &building);
    assert_int_equal(used, 2);
    assert_int_equal(pb_utable_get(&live, "old", 3), 0);
    assert_int_equal(pb_utable_get(&live, "newer", 5), 2);
    assert_int_equal(building.n, 0);
    assert_int_equal(pb_utable_set(&building, "again", 5, 1), 0); /* still usable */
    pb_utable_clear(&building);
    pb_utable_clear(&live);
    assert_int_equal(used, 0);
}

static void count(void *arg, const char *id, size_t len, uint32_t n)
{
    (void)id;
    (void)len;
    *(uint64_t *)arg += n;
}

static void grows(void **state)
{
    (void)state;
    size_t used = 0;
    struct pb_utable t;
    pb_utable_init(&t, &used, 100000, 3);
    char id[32];
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(id, sizeof(id), "user-%d", i);
        assert_int_equal(pb_utable_set(&t, id, (size_t)n, (uint32_t)(i % 3 + 1)), 0);
    }
    assert_true(t.nb >= 4096);
    uint64_t sum = 0;
    pb_utable_each(&t, count, &sum);
    uint64_t want = 0;
    for (int i = 0; i < 5000; i++)
        want += (uint64_t)(i % 3 + 1);
    assert_int_equal(sum, want);
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(id, sizeof(id), "user-%d", i);
        assert_int_equal(pb_utable_get(&t, id, (size_t)n), (uint32_t)(i % 3 + 1));
    }
    pb_utable_clear(&t);
    assert_int_equal(used, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(set_get_remove),
        cmocka_unit_test(budget_is_shared),
        cmocka_unit_test(swap_in_a_snapshot),
        cmocka_unit_test(grows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

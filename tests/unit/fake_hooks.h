/* The transport side of a connection for unit tests (test_hub.c,
 * test_tokenlife.c): hooks that only count what pb_conns asked of them, so a
 * test looks straight at the queues and at these counts. Include after
 * cmocka.h, once per test file; fake_hooks_reset() in each setup. */
#ifndef PB_TEST_FAKE_HOOKS_H
#define PB_TEST_FAKE_HOOKS_H

#include <string.h>

#include "pushbridge/hub/conns.h"

static struct {
    int want_write;
    int kill;
    int cut;
    struct pb_conn *last_killed;
    int last_kill_code;
} hooks_seen;

static void fake_want_write(struct pb_conn *c)
{
    assert_non_null(c);
    assert_non_null(pb_conn_peek(c)); /* only asked for when there is something to write */
    hooks_seen.want_write++;
}

static void fake_kill(struct pb_conn *c)
{
    hooks_seen.kill++;
    hooks_seen.last_killed = c;
    hooks_seen.last_kill_code = c->close_code;
}

static void fake_cut(struct pb_conn *c)
{
    assert_true(c->closing);
    hooks_seen.cut++;
}

static const struct pb_conn_hooks fake_hooks = {
    .want_write = fake_want_write,
    .kill = fake_kill,
    .cut = fake_cut,
};

static inline void fake_hooks_reset(void)
{
    memset(&hooks_seen, 0, sizeof(hooks_seen));
}

#endif

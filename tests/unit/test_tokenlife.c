/* Unit tests of token lifetime (tokenlife.c, SPEC 2): when a connection on a
 * token with exp is asked for a new one, that it is asked once, that seed-form
 * clients are never asked, and that a connection still on an expired token is
 * closed with 4004 once the leeway has passed. The connections run with fake hooks;
 * times are passed in, so nothing here waits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pushbridge/hub/conns.h"
#include "pushbridge/hub/tokenlife.h"

#include "fake_hooks.h"

struct fixture {
    struct pb_config cfg;
    struct pb_metrics m;
    struct pb_conns_shared shared;
    struct pb_conns *cs;
};

/* A fixed wall clock: 2026-01-01T00:00:00Z. */
#define NOW 1767225600000LL

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(pb_config_init(&fx->cfg), 0);
    fx->cfg.auth_jwt_leeway_s = 5;
    pb_metrics_init(&fx->m);
    fx->cs = pb_conns_new(&fx->cfg, &fx->m, &fx->shared, &fake_hooks);
    assert_non_null(fx->cs);
    fake_hooks_reset();
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    pb_conns_free(fx->cs);
    pb_config_free(&fx->cfg);
    free(fx);
    return 0;
}

/* A connection logged in as user in form, on a token expiring at exp_ms
 * (0: no exp), scheduled as the transports do right after login. */
static struct pb_conn *login(struct fixture *fx, const char *user, int form, int64_t exp_ms)
{
    struct pb_conn *c = pb_conns_new_conn(fx->cs, NULL);
    assert_non_null(c);
    /* What the worker keeps once the hub took the login (worker.c). */
    assert_non_null(c->ident.user = strdup(user));
    c->ident.form = form;
    c->ident.exp_ms = exp_ms;
    c->authed = 1;
    pb_token_schedule(c, NOW);
    return c;
}

/* Pops the head frame and asserts it is exactly text. */
static void expect_pop(struct fixture *fx, struct pb_conn *c, const char *text)
{
    struct pb_frame *f = pb_conn_peek(c);
    if (!f)
        fail_msg("the queue is empty, expected %s", text);
    if (f->len != strlen(text) || memcmp(pb_frame_payload(f), text, f->len) != 0)
        fail_msg("frame is \"%.*s\", expected \"%s\"", (int)f->len, (char *)pb_frame_payload(f),
                 text);
    pb_conn_pop(fx->cs, c);
}

/* A long-lived token is asked for again PB_TOKEN_REFRESH_AHEAD_MS before
 * exp, once, with the time it has left; then closed with 4004 at exp plus
 * auth.jwt_leeway_s, not before. */
static void test_refresh_ahead_then_close_after_leeway(void **state)
{
    struct fixture *fx = *state;
    int64_t exp = NOW + 600000; /* ten minutes */
    struct pb_conn *c = login(fx, "u", PB_FORM_NATIVE, exp);
    assert_int_equal(c->refresh_at_ms, exp - PB_TOKEN_REFRESH_AHEAD_MS);
    assert_int_equal(pb_token_expires_in(c, NOW), 600000);

    assert_int_equal(pb_token_check(fx->cs, c, exp - PB_TOKEN_REFRESH_AHEAD_MS - 1), 0);
    assert_null(pb_conn_peek(c));
    assert_int_equal(pb_token_check(fx->cs, c, exp - PB_TOKEN_REFRESH_AHEAD_MS), 0);
    expect_pop(fx, c, "{\"type\":\"refresh\",\"expires_in_ms\":30000}");
    assert_true(c->refresh_asked);
    assert_int_equal(pb_token_check(fx->cs, c, exp - 1000), 0); /* asked once */
    assert_null(pb_conn_peek(c));

    assert_int_equal(pb_token_check(fx->cs, c, exp), 0); /* expired, within the leeway */
    assert_int_equal(pb_token_check(fx->cs, c, exp + 4999), 0);
    assert_false(c->closing);
    assert_int_equal(pb_token_expires_in(c, exp + 1), 0);
    assert_int_equal(pb_token_check(fx->cs, c, exp + 5000), 1);
    assert_true(c->closing);
    assert_int_equal(c->close_code, PB_CLOSE_TOKEN_EXPIRED);
    assert_int_equal(hooks_seen.kill, 1);
    assert_int_equal(hooks_seen.last_kill_code, PB_CLOSE_TOKEN_EXPIRED);
    assert_int_equal(pb_token_check(fx->cs, c, exp + 6000), 0); /* closed once */
    assert_int_equal(hooks_seen.kill, 1);
}

/* A short-lived token is asked for at half its remaining life, so that the
 * client has time to answer. */
static void test_short_token_asked_at_half_life(void **state)
{
    struct fixture *fx = *state;
    struct pb_conn *c = login(fx, "u", PB_FORM_NATIVE, NOW + 20000);
    assert_int_equal(c->refresh_at_ms, NOW + 10000);
    assert_int_equal(pb_token_check(fx->cs, c, NOW + 9999), 0);
    assert_null(pb_conn_peek(c));
    assert_int_equal(pb_token_check(fx->cs, c, NOW + 10000), 0);
    expect_pop(fx, c, "{\"type\":\"refresh\",\"expires_in_ms\":10000}");
}

/* An accepted refresh (a new exp, scheduled again) starts over: asked again
 * before the new exp, not closed at the old one. */
static void test_refresh_accepted_starts_over(void **state)
{
    struct fixture *fx = *state;
    int64_t exp = NOW + 60000;
    struct pb_conn *c = login(fx, "u", PB_FORM_NATIVE, exp);
    assert_int_equal(pb_token_check(fx->cs, c, exp - 30000), 0);
    expect_pop(fx, c, "{\"type\":\"refresh\",\"expires_in_ms\":30000}");
    c->ident.exp_ms = exp + 60000; /* what ws.c does with a valid refresh */
    pb_token_schedule(c, exp - 20000);
    assert_false(c->refresh_asked);
    assert_int_equal(pb_token_check(fx->cs, c, exp + 10000), 0);
    assert_false(c->closing);
    assert_int_equal(pb_token_check(fx->cs, c, exp + 30000), 0);
    expect_pop(fx, c, "{\"type\":\"refresh\",\"expires_in_ms\":30000}");
}

/* Seed-form clients get each event's data alone and could not tell a
 * refresh request from data: never asked, closed at exp + leeway. */
static void test_plain_form_never_asked(void **state)
{
    struct fixture *fx = *state;
    int64_t exp = NOW + 60000;
    struct pb_conn *c = login(fx, "seed", PB_FORM_PLAIN, exp);
    for (int64_t t = NOW; t < exp + 5000; t += 1000)
        assert_int_equal(pb_token_check(fx->cs, c, t), 0);
    assert_null(pb_conn_peek(c));
    assert_int_equal(pb_token_check(fx->cs, c, exp + 5000), 1);
    assert_int_equal(c->close_code, PB_CLOSE_TOKEN_EXPIRED);
}

/* No exp (a token without one, auth.mode none): the connection lives as
 * long as it likes; a connection not logged in is not the sweep's business. */
static void test_no_exp_and_not_logged_in(void **state)
{
    struct fixture *fx = *state;
    struct pb_conn *c = login(fx, "forever", PB_FORM_NATIVE, 0);
    assert_int_equal(pb_token_expires_in(c, NOW), 0);
    assert_int_equal(pb_token_check(fx->cs, c, NOW + 365LL * 24 * 3600 * 1000), 0);
    assert_null(pb_conn_peek(c));
    assert_false(c->closing);

    struct pb_conn *pending = pb_conns_new_conn(fx->cs, NULL);
    assert_non_null(pending);
    pending->ident.exp_ms = NOW; /* not authed: ignored */
    assert_int_equal(pb_token_check(fx->cs, pending, NOW + 10000000), 0);
    assert_false(pending->closing);
    assert_int_equal(hooks_seen.kill, 0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_refresh_ahead_then_close_after_leeway),
        T(test_short_token_asked_at_half_life),
        T(test_refresh_accepted_starts_over),
        T(test_plain_form_never_asked),
        T(test_no_exp_and_not_logged_in),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}

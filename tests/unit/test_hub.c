/* Unit tests of the hub: who is connected and fan-out. The WebSocket side is replaced by fake
 * hooks (fake_hooks.h) that count want_write, kill and cut calls, so every test can look straight at the
 * connection queues (pb_conn_peek/pb_conn_pop) and at the metrics the hub keeps. Run under
 * ASan these also check that closing and freeing connections releases every frame. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pushbridge/hub/hub.h"
#include "pushbridge/hub/keepalive.h"

#include "fake_hooks.h"
#include "fake_worker.h"

struct fixture {
    struct pb_config cfg;
    struct pb_metrics m;
    struct pb_conns_shared shared;
    struct pb_conns *cs; /* the one worker's connections */
    struct pb_hub *h;
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(pb_config_init(&fx->cfg), 0);
    pb_metrics_init(&fx->m);
    fx->cs = pb_conns_new(&fx->cfg, &fx->m, &fx->shared, &fake_hooks);
    assert_non_null(fx->cs);
    struct pb_hub_out out = fake_out(fx->cs);
    fx->h = pb_hub_new(&fx->cfg, &fx->m, NULL, &out);
    assert_non_null(fx->h);
    pb_conns_on_closing(fx->cs, fake_tell_closing, fx->h);
    fake_hooks_reset();
    fake_start_frames = 0; /* these tests look at what follows the welcome */
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    pb_hub_free(fx->h);
    pb_conns_free(fx->cs);
    pb_config_free(&fx->cfg);
    free(fx);
    return 0;
}

/* ---- identities and connections ---- */

/* A NULL-terminated list of names as an owned string vector. */
static char **strv(const char *const *names, size_t *n)
{
    *n = 0;
    if (!names)
        return NULL;
    while (names[*n])
        (*n)++;
    char **v = calloc(*n ? *n : 1, sizeof(char *));
    assert_non_null(v);
    for (size_t i = 0; i < *n; i++)
        assert_non_null(v[i] = strdup(names[i]));
    return v;
}

static struct pb_identity make_ident(const char *user, int form, const char *const *events,
                                     const char *const *groups)
{
    struct pb_identity id = {0};
    assert_non_null(id.user = strdup(user));
    id.form = form;
    id.events = strv(events, &id.nevents);
    id.groups = strv(groups, &id.ngroups);
    return id;
}

/* A new connection logged in as user; asserts every step succeeds. */
static struct pb_conn *connect_as(struct fixture *fx, const char *user, int form,
                                  const char *const *events, const char *const *groups)
{
    struct pb_conn *c = pb_conns_new_conn(fx->cs, NULL);
    assert_non_null(c);
    struct pb_identity id = make_ident(user, form, events, groups);
    assert_int_equal(fake_login(fx->h, c, &id, NULL), 0);
    assert_null(id.user); /* moved into the connection */
    return c;
}

static struct pb_conn *native(struct fixture *fx, const char *user)
{
    return connect_as(fx, user, PB_FORM_NATIVE, NULL, NULL);
}

static struct pb_conn *plain(struct fixture *fx, const char *user)
{
    return connect_as(fx, user, PB_FORM_PLAIN, NULL, NULL);
}

/* ---- events ---- */

/* Parses json, targets it with key (NULL: the user_id field) and delivers it. */
static long deliver(struct fixture *fx, const char *key, const char *json)
{
    struct pb_event ev;
    pb_event_init(&ev);
    assert_int_equal(pb_envelope_parse(json, strlen(json), 0, &ev), PB_DROP_NONE);
    assert_int_equal(pb_event_set_target(&ev, key, key ? strlen(key) : 0), PB_DROP_NONE);
    ev.ts_ms = 1234;
    long n = pb_hub_deliver(fx->h, &ev, PB_SOURCE_HTTP);
    pb_hub_flush(fx->h); /* as the main loop does before it sleeps */
    pb_event_clear(&ev);
    return n;
}

/* Delivers {"data":n} to user without the flush the main loop does before
 * it sleeps: the frames stay staged in the hub. */
static long deliver_staged(struct fixture *fx, const char *user, int n)
{
    char json[32];
    snprintf(json, sizeof(json), "{\"data\":%d}", n);
    struct pb_event ev;
    pb_event_init(&ev);
    assert_int_equal(pb_envelope_parse(json, strlen(json), 0, &ev), PB_DROP_NONE);
    assert_int_equal(pb_event_set_target(&ev, user, strlen(user)), PB_DROP_NONE);
    long r = pb_hub_deliver(fx->h, &ev, PB_SOURCE_HTTP);
    pb_event_clear(&ev);
    return r;
}

/* An event for user whose data is the number n, or with pad > 0 the array [n,"xxx..."]
 * (pad bytes of text) so that frame sizes can be steered. */
static long deliver_n(struct fixture *fx, const char *user, int n, size_t pad)
{
    char *json = malloc(pad + 64);
    assert_non_null(json);
    if (pad == 0) {
        sprintf(json, "{\"data\":%d}", n);
    } else {
        int len = sprintf(json, "{\"data\":[%d,\"", n);
        memset(json + len, 'x', pad);
        strcpy(json + len + pad, "\"]}");
    }
    long r = deliver(fx, user, json);
    free(json);
    return r;
}

static size_t queued(const struct pb_conn *c)
{
    return c->q_len;
}

/* Asserts the head frame's payload is exactly text, then pops it. */
static void expect_pop(struct fixture *fx, struct pb_conn *c, const char *text)
{
    struct pb_frame *f = pb_conn_peek(c);
    if (!f)
        fail_msg("queue of connection %llu is empty, expected %s", (unsigned long long)c->id, text);
    if (f->len != strlen(text) || memcmp(pb_frame_payload(f), text, f->len) != 0)
        fail_msg("frame is \"%.*s\", expected \"%s\"", (int)f->len, (char *)pb_frame_payload(f),
                 text);
    pb_conn_pop(fx->cs, c);
}

static void drain(struct fixture *fx, struct pb_conn *c)
{
    while (pb_conn_peek(c))
        pb_conn_pop(fx->cs, c);
}

/* ---- tests ---- */

static void test_login_and_user_lists(void **state)
{
    struct fixture *fx = *state;
    struct pb_conn *anon = pb_conns_new_conn(fx->cs, (void *)0x1);
    assert_non_null(anon);
    assert_ptr_equal(anon->transport, (void *)0x1);
    assert_false(anon->authed);
    struct pb_conn *a1 = native(fx, "u1");
    struct pb_conn *a2 = plain(fx, "u1");
    struct pb_conn *b1 = native(fx, "u2");

    assert_true(a1->authed);
    assert_string_equal(a1->ident.user, "u1");
    assert_int_equal(a2->ident.form, PB_FORM_PLAIN);
    assert_true(anon->id < a1->id && a1->id < a2->id && a2->id < b1->id);

    assert_int_equal(pb_conns_count(fx->cs), 4);
    assert_int_equal(pb_hub_users(fx->h), 2);
    assert_int_equal(pb_hub_user_connections(fx->h, "u1", 2), 2);
    assert_int_equal(pb_hub_user_connections(fx->h, "u2", 2), 1);
    assert_int_equal(pb_hub_user_connections(fx->h, "u3", 2), 0);
    /* Lookups use the length, not a terminator. */
    assert_int_equal(pb_hub_user_connections(fx->h, "u1x", 2), 2);
    assert_int_equal(pb_hub_user_connections(fx->h, "u", 1), 0);
}

static void test_deliver_to_user(void **state)
{
    struct fixture *fx = *state;
    struct pb_conn *a1 = native(fx, "u1");
    struct pb_conn *a2 = native(fx, "u1");
    struct pb_conn *b1 = native(fx, "u2");
    struct pb_conn *b2 = native(fx, "u10");

    assert_int_equal(
        deliver(fx, "u1", "{\"event\":\"task.progress\",\"id\":\"e1\",\"data\":{\"pct\": 50}}"), 2);
    const char *want = "{\"type\":\"event\",\"event\":\"task.progress\",\"id\":\"e1\","
                       "\"data\":{\"pct\": 50}}";
    assert_int_equal(queued(a1), 1);
    assert_int_equal(queued(a2), 1);
    assert_null(pb_conn_peek(b1));
    assert_null(pb_conn_peek(b2));
    assert_int_equal(pb_conn_peek(a1)->ts_ms, 1234);
    assert_int_equal(pb_conn_peek(a1)->source, PB_SOURCE_HTTP);
    expect_pop(fx, a1, want);
    expect_pop(fx, a2, want);
    assert_int_equal(fx->m.src[PB_SOURCE_HTTP].delivered, 2);

    /* A user with no connection: nothing queued, not an error. */
    assert_int_equal(deliver(fx, "nobody", "{\"data\":1}"), 0);
    /* The user_id field targets when there is no key. */
    assert_int_equal(deliver(fx, NULL, "{\"user_id\":\"u2\",\"data\":[1]}"), 1);
    expect_pop(fx, b1, "{\"type\":\"event\",\"event\":\"message\",\"data\":[1]}");
    assert_null(pb_conn_peek(a1));
    assert_null(pb_conn_peek(b2));
    assert_int_equal(fx->m.src[PB_SOURCE_HTTP].delivered, 3);
}

static void test_order_preserved(void **state)
{
    struct fixture *fx = *state;
    struct pb_conn *c = native(fx, "u1");
    /* More than the initial ring, with pops in between so the ring wraps. */
    for (int i = 0; i < 40; i++) {
        assert_int_equal(deliver_n(fx, "u1", i, 0), 1);
        if (i % 3 == 2) {
            char want[96];
            snprintf(want, sizeof(want), "{\"type\":\"event\",\"event\":\"message\",\"data\":%d}",
                     i / 3);
            expect_pop(fx, c, want);
        }
    }
    for (int i = 40 / 3; i < 40; i++) {
        char want[96];
        snprintf(want, sizeof(want), "{\"type\":\"event\",\"event\":\"message\",\"data\":%d}", i);
        expect_pop(fx, c, want);
    }
    assert_null(pb_conn_peek(c));
}

/* A batch of events is one hand-off per worker, posted when the loop is
 * about to sleep (pb_hub_flush), in event order; a message of another kind
 * for that worker (a login's welcome) posts what was staged first; past
 * 4,096 staged frames they are posted at once (the bound on staging). */
static void test_frames_staged_until_flush(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.ws_queue_max_messages = 10000;
    fx->cfg.ws_queue_max_bytes = 16 * 1024 * 1024;
    struct pb_conn *a = native(fx, "u1");
    struct pb_conn *b = native(fx, "u2");
    fake_frame_posts = 0;
    for (int i = 0; i < 3; i++)
        assert_int_equal(deliver_staged(fx, "u1", i), 1); /* counted when staged */
    assert_int_equal(deliver_staged(fx, "u2", 7), 1);
    assert_null(pb_conn_peek(a));
    assert_null(pb_conn_peek(b));
    assert_int_equal(fake_frame_posts, 0);

    pb_hub_flush(fx->h);
    assert_int_equal(fake_frame_posts, 1); /* four frames, one message */
    expect_pop(fx, a, "{\"type\":\"event\",\"event\":\"message\",\"data\":0}");
    expect_pop(fx, a, "{\"type\":\"event\",\"event\":\"message\",\"data\":1}");
    expect_pop(fx, a, "{\"type\":\"event\",\"event\":\"message\",\"data\":2}");
    expect_pop(fx, b, "{\"type\":\"event\",\"event\":\"message\",\"data\":7}");
    pb_hub_flush(fx->h);
    assert_int_equal(fake_frame_posts, 1); /* nothing staged: nothing posted */

    assert_int_equal(deliver_staged(fx, "u1", 8), 1);
    native(fx, "u3"); /* its START goes to the same worker */
    assert_int_equal(fake_frame_posts, 2);
    expect_pop(fx, a, "{\"type\":\"event\",\"event\":\"message\",\"data\":8}");

    for (int i = 0; i < 4096; i++)
        assert_int_equal(deliver_staged(fx, "u1", i), 1);
    assert_int_equal(fake_frame_posts, 3);
    assert_int_equal(queued(a), 4096);
    assert_int_equal(deliver_staged(fx, "u1", 4096), 1);
    assert_int_equal(queued(a), 4096);
    pb_hub_flush(fx->h);
    assert_int_equal(queued(a), 4097);
}

static void test_frame_shared_once(void **state)
{
    struct fixture *fx = *state;
    struct pb_conn *n[3] = {native(fx, "u1"), native(fx, "u1"), native(fx, "u1")};
    struct pb_conn *p[2] = {plain(fx, "u1"), plain(fx, "u1")};
    assert_int_equal(deliver(fx, "u1", "{\"data\":\"hi\"}"), 5);

    struct pb_frame *nf = pb_conn_peek(n[0]);
    struct pb_frame *pf = pb_conn_peek(p[0]);
    assert_non_null(nf);
    assert_non_null(pf);
    assert_ptr_not_equal(nf, pf);
    assert_ptr_equal(pb_conn_peek(n[1]), nf);
    assert_ptr_equal(pb_conn_peek(n[2]), nf);
    assert_ptr_equal(pb_conn_peek(p[1]), pf);
    /* The hub kept no reference of its own: one per queue. */
    assert_int_equal(nf->refs, 3);
    assert_int_equal(pf->refs, 2);
    pb_conn_pop(fx->cs, n[0]);
    assert_int_equal(nf->refs, 2);
    pb_conn_pop(fx->cs, p[0]);
    assert_int_equal(pf->refs, 1);
    expect_pop(fx, p[1], "hi");
    expect_pop(fx, n[1], "{\"type\":\"event\",\"event\":\"message\",\"data\":\"hi\"}");
    assert_int_equal(nf->refs, 1);
    /* n[2] still holds the frame; the hub frees it at teardown. */
}

static void test_plain_and_native_formats(void **state)
{
    struct fixture *fx = *state;
    struct pb_conn *nc = native(fx, "u1");
    struct pb_conn *pc = plain(fx, "u1");
    struct {
        const char *json;
        const char *native;
        const char *plain;
    } cases[] = {
        {"{\"data\":\"Hello World\"}",
         "{\"type\":\"event\",\"event\":\"message\",\"data\":\"Hello World\"}", "Hello World"},
        {"{\"event\":\"e\",\"id\":\"7\",\"data\":{ \"a\" : 1.0e+2 }}",
         "{\"type\":\"event\",\"event\":\"e\",\"id\":\"7\",\"data\":{ \"a\" : 1.0e+2 }}",
         "{ \"a\" : 1.0e+2 }"},
        {"{\"data\":1.0e+2}", "{\"type\":\"event\",\"event\":\"message\",\"data\":1.0e+2}",
         "1.0e+2"},
        {"{\"event\":\"x\"}", "{\"type\":\"event\",\"event\":\"x\",\"data\":null}", "null"},
        {"{\"data\":\"caf\\u00e9 \\\"q\\\"\"}",
         "{\"type\":\"event\",\"event\":\"message\",\"data\":\"caf\\u00e9 \\\"q\\\"\"}",
         "caf\xc3\xa9 \"q\""},
        {"{\"event\":\"a\\\"b\",\"id\":42,\"data\":[]}",
         "{\"type\":\"event\",\"event\":\"a\\\"b\",\"id\":\"42\",\"data\":[]}", "[]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(deliver(fx, "u1", cases[i].json), 2);
        expect_pop(fx, nc, cases[i].native);
        expect_pop(fx, pc, cases[i].plain);
    }
}

static void test_event_filters(void **state)
{
    struct fixture *fx = *state;
    static const char *const only_a[] = {"a", NULL};
    static const char *const a_and_b[] = {"a", "b", NULL};
    static const char *const only_message[] = {"message", NULL};
    struct pb_conn *ca = connect_as(fx, "u1", PB_FORM_NATIVE, only_a, NULL);
    struct pb_conn *cab = connect_as(fx, "u1", PB_FORM_PLAIN, a_and_b, NULL);
    struct pb_conn *call = native(fx, "u1");
    struct pb_conn *cmsg = connect_as(fx, "u1", PB_FORM_PLAIN, only_message, NULL);

    assert_int_equal(deliver(fx, "u1", "{\"event\":\"a\",\"data\":1}"), 3);
    assert_int_equal(deliver(fx, "u1", "{\"event\":\"b\",\"data\":2}"), 2);
    assert_int_equal(deliver(fx, "u1", "{\"event\":\"c\",\"data\":3}"), 1);
    /* No name is "message". */
    assert_int_equal(deliver(fx, "u1", "{\"data\":4}"), 2);
    /* Names match whole, not by prefix. */
    assert_int_equal(deliver(fx, "u1", "{\"event\":\"ab\",\"data\":5}"), 1);

    assert_int_equal(queued(ca), 1);
    expect_pop(fx, ca, "{\"type\":\"event\",\"event\":\"a\",\"data\":1}");
    assert_int_equal(queued(cab), 2);
    expect_pop(fx, cab, "1");
    expect_pop(fx, cab, "2");
    assert_int_equal(queued(call), 5);
    assert_int_equal(queued(cmsg), 1);
    expect_pop(fx, cmsg, "4");
}

static void test_target_all(void **state)
{
    struct fixture *fx = *state;
    struct pb_conn *anon = pb_conns_new_conn(fx->cs, NULL);
    struct pb_conn *a1 = native(fx, "u1");
    struct pb_conn *a2 = plain(fx, "u1");
    struct pb_conn *b = native(fx, "u2");
    static const char *const only_x[] = {"x", NULL};
    struct pb_conn *fx_only = connect_as(fx, "u3", PB_FORM_NATIVE, only_x, NULL);

    assert_int_equal(deliver(fx, "*", "{\"event\":\"notice\",\"data\":\"all\"}"), 3);
    assert_null(pb_conn_peek(anon)); /* not logged in: receives nothing */
    assert_null(pb_conn_peek(fx_only));
    expect_pop(fx, a1, "{\"type\":\"event\",\"event\":\"notice\",\"data\":\"all\"}");
    expect_pop(fx, a2, "all");
    expect_pop(fx, b, "{\"type\":\"event\",\"event\":\"notice\",\"data\":\"all\"}");
    assert_int_equal(deliver(fx, "*", "{\"event\":\"x\"}"), 4);
}

static void test_target_group(void **state)
{
    struct fixture *fx = *state;
    static const char *const ops[] = {"ops", NULL};
    static const char *const dev[] = {"dev", NULL};
    static const char *const both[] = {"dev", "ops", NULL};
    static const char *const only_a[] = {"a", NULL};
    struct pb_conn *a_ops = connect_as(fx, "u1", PB_FORM_NATIVE, NULL, ops);
    struct pb_conn *a_dev = connect_as(fx, "u1", PB_FORM_NATIVE, NULL, dev);
    struct pb_conn *b_both = connect_as(fx, "u2", PB_FORM_PLAIN, NULL, both);
    struct pb_conn *c_none = native(fx, "u3");
    struct pb_conn *d_ops_a = connect_as(fx, "u4", PB_FORM_NATIVE, only_a, ops);

    assert_int_equal(deliver(fx, "group:ops", "{\"event\":\"a\",\"data\":1}"), 3);
    assert_int_equal(queued(a_ops), 1);
    assert_int_equal(queued(a_dev), 0);
    assert_int_equal(queued(b_both), 1);
    assert_int_equal(queued(c_none), 0);
    assert_int_equal(queued(d_ops_a), 1);

    assert_int_equal(deliver(fx, "group:ops", "{\"event\":\"b\",\"data\":2}"), 2);
    assert_int_equal(queued(d_ops_a), 1); /* filtered out */

    assert_int_equal(deliver(fx, "group:dev", "{\"data\":3}"), 2);
    assert_int_equal(queued(a_dev), 1);
    assert_int_equal(queued(b_both), 3);
    expect_pop(fx, b_both, "1");
    expect_pop(fx, b_both, "2");
    expect_pop(fx, b_both, "3");

    /* Group names match whole. */
    assert_int_equal(deliver(fx, "group:op", "{\"data\":4}"), 0);
    assert_int_equal(deliver(fx, "group:opsx", "{\"data\":4}"), 0);
    assert_int_equal(deliver(fx, "group:u1", "{\"data\":4}"), 0);
}

static void test_max_connections(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.ws_max_connections = 2;
    struct pb_conn *c1 = pb_conns_new_conn(fx->cs, NULL);
    struct pb_conn *c2 = native(fx, "u1");
    assert_non_null(c1);
    assert_null(pb_conns_new_conn(fx->cs, NULL));
    assert_null(pb_conns_new_conn(fx->cs, NULL));
    assert_int_equal(fx->m.connections_refused, 2);
    assert_int_equal(pb_conns_count(fx->cs), 2);

    fake_close(fx->h, fx->cs, c1);
    assert_non_null(pb_conns_new_conn(fx->cs, NULL));
    assert_int_equal(fx->m.connections_refused, 2);
    (void)c2;
}

static void test_max_connections_per_user(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.ws_max_connections_per_user = 2;
    struct pb_conn *a1 = native(fx, "u1");
    native(fx, "u1");
    struct pb_conn *a3 = pb_conns_new_conn(fx->cs, NULL);
    assert_non_null(a3);
    struct pb_identity id = make_ident("u1", PB_FORM_NATIVE, NULL, NULL);
    assert_int_equal(fake_login(fx->h, a3, &id, NULL), -1);
    assert_null(id.user); /* freed by the hub */
    assert_false(a3->authed);
    assert_int_equal(pb_hub_user_connections(fx->h, "u1", 2), 2);
    assert_int_equal(deliver(fx, "u1", "{\"data\":1}"), 2);
    assert_null(pb_conn_peek(a3));

    /* Other users are not affected. */
    native(fx, "u2");
    assert_int_equal(pb_hub_users(fx->h), 2);

    /* The refused connection is closed (4008, by its transport); a slot
     * frees up when another connection goes. */
    fake_close(fx->h, fx->cs, a3);
    fake_close(fx->h, fx->cs, a1);
    struct pb_conn *a4 = pb_conns_new_conn(fx->cs, NULL);
    assert_non_null(a4);
    id = make_ident("u1", PB_FORM_NATIVE, NULL, NULL);
    assert_int_equal(fake_login(fx->h, a4, &id, NULL), 0);
    assert_int_equal(pb_hub_user_connections(fx->h, "u1", 2), 2);
}

static void test_slow_client_close_by_messages(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.ws_queue_max_messages = 3;
    fx->cfg.ws_slow_client = PB_SLOW_CLOSE;
    struct pb_conn *slow = native(fx, "u1");
    struct pb_conn *fast = native(fx, "u1");

    for (int i = 0; i < 3; i++) {
        assert_int_equal(deliver_n(fx, "u1", i, 0), 2);
        drain(fx, fast);
    }
    assert_int_equal(queued(slow), 3);
    assert_int_equal(hooks_seen.kill, 0);

    /* The fourth does not fit: slow is closed, fast still gets it. Both
     * were handed it, which is what delivered counts on every worker (a
     * threaded one closes slow only later, on its own thread). */
    assert_int_equal(deliver_n(fx, "u1", 3, 0), 2);
    assert_int_equal(hooks_seen.kill, 1);
    assert_ptr_equal(hooks_seen.last_killed, slow);
    assert_int_equal(hooks_seen.last_kill_code, PB_CLOSE_SLOW);
    assert_int_equal(slow->close_code, PB_CLOSE_SLOW);
    assert_true(slow->closing);
    assert_true(slow->close_reason[0] != '\0');
    assert_null(pb_conn_peek(slow));
    assert_int_equal(slow->q_bytes, 0);
    assert_int_equal(fx->m.slow_client_closes, 1);
    expect_pop(fx, fast, "{\"type\":\"event\",\"event\":\"message\",\"data\":3}");
    assert_int_equal(pb_conns_queue_bytes(fx->cs), 0);

    /* Nothing more is handed to a closing connection, and it is closed once. */
    assert_int_equal(deliver_n(fx, "u1", 4, 0), 1);
    assert_null(pb_conn_peek(slow));
    assert_int_equal(hooks_seen.kill, 1);
    assert_int_equal(fx->m.slow_client_closes, 1);
    assert_int_equal(fx->m.queue_drops, 0);
}

static void test_slow_client_close_by_bytes(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.ws_queue_max_bytes = 1024;
    fx->cfg.ws_slow_client_grace_ms = 0; /* the soft bound applies at once */
    fx->cfg.ws_slow_client = PB_SLOW_CLOSE;
    struct pb_conn *c = native(fx, "u1");

    /* Each frame is 328 bytes: three fit in 1024, the fourth does not. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(deliver_n(fx, "u1", i, 280), 1);
    assert_int_equal(queued(c), 3);
    assert_int_equal(c->q_bytes, 3 * 328);
    assert_int_equal(pb_conns_queue_bytes(fx->cs), c->q_bytes);

    /* Handed over (counted), then closed by the worker as a slow client. */
    assert_int_equal(deliver_n(fx, "u1", 3, 280), 1);
    assert_int_equal(hooks_seen.kill, 1);
    assert_int_equal(c->close_code, PB_CLOSE_SLOW);
    assert_null(pb_conn_peek(c));
    assert_int_equal(fx->m.slow_client_closes, 1);
    assert_int_equal(pb_conns_queue_bytes(fx->cs), 0);
}

static void test_drop_oldest_by_messages(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.ws_queue_max_messages = 3;
    fx->cfg.ws_slow_client = PB_SLOW_DROP_OLDEST;
    struct pb_conn *c = native(fx, "u1");

    for (int i = 1; i <= 5; i++)
        assert_int_equal(deliver_n(fx, "u1", i, 0), 1);
    assert_int_equal(queued(c), 3);
    assert_int_equal(fx->m.queue_drops, 2);
    assert_int_equal(hooks_seen.kill, 0);
    assert_false(c->closing);
    assert_int_equal(fx->m.slow_client_closes, 0);
    for (int i = 3; i <= 5; i++) {
        char want[96];
        snprintf(want, sizeof(want), "{\"type\":\"event\",\"event\":\"message\",\"data\":%d}", i);
        expect_pop(fx, c, want);
    }
    assert_null(pb_conn_peek(c));
    assert_int_equal(pb_conns_queue_bytes(fx->cs), 0);
}

static void test_drop_oldest_by_bytes(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.ws_queue_max_bytes = 1024;
    fx->cfg.ws_slow_client_grace_ms = 0; /* the soft bound applies at once */
    fx->cfg.ws_slow_client = PB_SLOW_DROP_OLDEST;
    struct pb_conn *c = native(fx, "u1");

    /* Frames of 448 bytes: two fit in 1024. */
    for (int i = 1; i <= 4; i++)
        assert_int_equal(deliver_n(fx, "u1", i, 400), 1);
    assert_int_equal(queued(c), 2);
    assert_int_equal(fx->m.queue_drops, 2);
    assert_true(c->q_bytes <= 1024);
    assert_int_equal(pb_conns_queue_bytes(fx->cs), c->q_bytes);
    assert_int_equal(hooks_seen.kill, 0);
    struct pb_frame *f = pb_conn_peek(c);
    assert_non_null(strstr((char *)pb_frame_payload(f), "\"data\":[3,"));
    pb_conn_pop(fx->cs, c);
    f = pb_conn_peek(c);
    assert_non_null(strstr((char *)pb_frame_payload(f), "\"data\":[4,"));
    pb_conn_pop(fx->cs, c);
    assert_int_equal(pb_conns_queue_bytes(fx->cs), 0);
}

/* A frame bigger than the whole byte bound. Evicting the queue and then dropping the new frame
 * as well loses everything: either the queue is kept and only the new frame is dropped, or the
 * queue is evicted to make room and the newest frame is kept. */
static void test_drop_oldest_oversized_frame(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.ws_queue_max_bytes = 1024;
    fx->cfg.ws_slow_client_grace_ms = 0; /* the soft bound applies at once */
    fx->cfg.ws_slow_client = PB_SLOW_DROP_OLDEST;
    struct pb_conn *c = native(fx, "u1");
    assert_int_equal(deliver_n(fx, "u1", 1, 0), 1);
    assert_int_equal(deliver_n(fx, "u1", 2, 0), 1);

    long n = deliver_n(fx, "u1", 3, 2000);
    assert_int_equal(hooks_seen.kill, 0);
    if (n == 0) { /* the new frame was dropped: the queue must be intact */
        assert_int_equal(fx->m.queue_drops, 1);
        assert_int_equal(queued(c), 2);
        expect_pop(fx, c, "{\"type\":\"event\",\"event\":\"message\",\"data\":1}");
        expect_pop(fx, c, "{\"type\":\"event\",\"event\":\"message\",\"data\":2}");
    } else { /* the oldest were dropped: the newest must be there */
        assert_int_equal(n, 1);
        assert_int_equal(fx->m.queue_drops, 2);
        assert_int_equal(queued(c), 1);
        assert_non_null(strstr((char *)pb_frame_payload(pb_conn_peek(c)), "\"data\":[3,"));
    }
}

/* SPEC 2 closes a client "that does not read"; one whose queue is empty is keeping up, so one
 * frame bigger than ws.queue_max_bytes (an event near kafka.max_event_bytes plus the envelope)
 * must not close it as a slow consumer. */
static void test_oversized_frame_does_not_close_reading_client(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.ws_queue_max_bytes = 1024;
    fx->cfg.ws_slow_client_grace_ms = 0; /* the soft bound applies at once */
    fx->cfg.ws_slow_client = PB_SLOW_CLOSE;
    struct pb_conn *c = native(fx, "u1");

    long n = deliver_n(fx, "u1", 1, 2000);
    assert_int_equal(hooks_seen.kill, 0);
    assert_false(c->closing);
    assert_int_equal(fx->m.slow_client_closes, 0);
    if (n == 1)
        assert_int_equal(queued(c), 1);
    else
        assert_int_equal(fx->m.queue_drops, 1);
}

static void test_want_write_on_empty_to_non_empty(void **state)
{
    struct fixture *fx = *state;
    struct pb_conn *c = native(fx, "u1");
    assert_int_equal(hooks_seen.want_write, 0);
    deliver_n(fx, "u1", 1, 0);
    assert_int_equal(hooks_seen.want_write, 1);
    deliver_n(fx, "u1", 2, 0);
    deliver_n(fx, "u1", 3, 0);
    assert_int_equal(hooks_seen.want_write, 1);
    pb_conn_pop(fx->cs, c);
    deliver_n(fx, "u1", 4, 0);
    assert_int_equal(hooks_seen.want_write, 1);
    drain(fx, c);
    deliver_n(fx, "u1", 5, 0);
    assert_int_equal(hooks_seen.want_write, 2);

    /* Control frames follow the same rule. */
    drain(fx, c);
    struct pb_frame *f = pb_frame_from("{\"type\":\"pong\"}", 15);
    assert_int_equal(pb_conns_send(fx->cs, c, f), 1);
    assert_int_equal(f->refs, 2);
    pb_frame_unref(f);
    assert_int_equal(hooks_seen.want_write, 3);
    assert_int_equal(pb_conns_queue_bytes(fx->cs), 15);
    expect_pop(fx, c, "{\"type\":\"pong\"}");
    /* An unauthenticated connection may get control frames (errors). */
    struct pb_conn *anon = pb_conns_new_conn(fx->cs, NULL);
    f = pb_frame_from("{}", 2);
    assert_int_equal(pb_conns_send(fx->cs, anon, f), 1);
    pb_frame_unref(f);
    assert_int_equal(hooks_seen.want_write, 4);
    expect_pop(fx, anon, "{}");
    /* Popping an empty queue is harmless. */
    pb_conn_pop(fx->cs, anon);
    assert_int_equal(pb_conns_queue_bytes(fx->cs), 0);
}

static void test_close(void **state)
{
    struct fixture *fx = *state;
    struct pb_conn *a = native(fx, "u1");
    struct pb_conn *b = native(fx, "u2");
    deliver_n(fx, "u1", 1, 10);
    deliver_n(fx, "u1", 2, 10);
    assert_true(pb_conns_queue_bytes(fx->cs) > 0);

    pb_conns_close(fx->cs, a, PB_CLOSE_AUTH_TIMEOUT, "authentication timeout");
    assert_int_equal(hooks_seen.kill, 1);
    assert_int_equal(a->close_code, PB_CLOSE_AUTH_TIMEOUT);
    assert_string_equal(a->close_reason, "authentication timeout");
    assert_null(pb_conn_peek(a));
    assert_int_equal(pb_conns_queue_bytes(fx->cs), 0);
    /* A second close does not override the first. */
    pb_conns_close(fx->cs, a, PB_CLOSE_SLOW, "x");
    assert_int_equal(hooks_seen.kill, 1);
    assert_int_equal(a->close_code, PB_CLOSE_AUTH_TIMEOUT);
    /* Still registered until freed, but receives nothing. */
    assert_int_equal(pb_hub_user_connections(fx->h, "u1", 2), 1);
    assert_int_equal(deliver_n(fx, "u1", 3, 0), 0);

    pb_conns_close_all(fx->cs, PB_CLOSE_GOING_AWAY, "server shutting down");
    assert_int_equal(hooks_seen.kill, 2);
    assert_int_equal(b->close_code, PB_CLOSE_GOING_AWAY);
    assert_int_equal(a->close_code, PB_CLOSE_AUTH_TIMEOUT);
}

static void test_conn_free_removes_everything(void **state)
{
    struct fixture *fx = *state;
    static const char *const ops[] = {"ops", NULL};
    static const char *const ev[] = {"a", NULL};
    struct pb_conn *a1 = connect_as(fx, "u1", PB_FORM_NATIVE, ev, ops);
    struct pb_conn *a2 = native(fx, "u1");
    struct pb_conn *b = native(fx, "u2");
    deliver_n(fx, "u1", 1, 100);
    deliver(fx, "group:ops", "{\"event\":\"a\"}");
    deliver(fx, "*", "{\"event\":\"a\"}");
    assert_int_equal(queued(a1), 2);
    assert_int_equal(queued(a2), 2);
    struct pb_frame *shared = pb_conn_peek(a2);
    assert_int_equal(shared->refs, 1); /* a1 filters out "message" */
    struct pb_frame *bcast = a2->q[(a2->q_head + 1) % a2->q_cap];
    assert_int_equal(bcast->refs, 3);

    fake_close(fx->h, fx->cs, a1);
    assert_int_equal(bcast->refs, 2);
    assert_int_equal(pb_hub_user_connections(fx->h, "u1", 2), 1);
    assert_int_equal(pb_hub_users(fx->h), 2);
    assert_int_equal(pb_conns_count(fx->cs), 2);
    assert_int_equal(deliver(fx, "group:ops", "{\"event\":\"a\"}"), 0);

    fake_close(fx->h, fx->cs, a2);
    assert_int_equal(pb_hub_user_connections(fx->h, "u1", 2), 0);
    assert_int_equal(pb_hub_users(fx->h), 1);
    assert_int_equal(pb_conns_count(fx->cs), 1);
    assert_int_equal(deliver_n(fx, "u1", 2, 0), 0);
    /* Only b's broadcast frame is left queued. */
    assert_int_equal(bcast->refs, 1);
    assert_int_equal(pb_conns_queue_bytes(fx->cs), bcast->len);

    fake_close(fx->h, fx->cs, b);
    assert_int_equal(pb_hub_users(fx->h), 0);
    assert_int_equal(pb_conns_count(fx->cs), 0);
    assert_int_equal(pb_conns_queue_bytes(fx->cs), 0);
    assert_int_equal(deliver(fx, "*", "{}"), 0);

    /* Freeing a connection that never logged in, and NULL. */
    struct pb_conn *anon = pb_conns_new_conn(fx->cs, NULL);
    fake_close(fx->h, fx->cs, anon);
    fake_close(fx->h, fx->cs, NULL);
    assert_int_equal(pb_conns_count(fx->cs), 0);

    /* The user can log in again from scratch. */
    native(fx, "u1");
    assert_int_equal(pb_hub_user_connections(fx->h, "u1", 2), 1);
}

static void test_hub_free_releases_queues(void **state)
{
    struct fixture *fx = *state;
    /* Connections with queued frames left at teardown: ASan reports a leak if pb_hub_free
     * (the members) or pb_conns_free (the queues) misses any. */
    for (int i = 0; i < 4; i++)
        native(fx, "u1");
    plain(fx, "u2");
    pb_conns_new_conn(fx->cs, NULL);
    for (int i = 0; i < 20; i++) {
        deliver_n(fx, "u1", i, 50);
        deliver(fx, "*", "{\"data\":\"x\"}");
    }
    assert_true(pb_conns_queue_bytes(fx->cs) > 0);
    int kills = hooks_seen.kill;
    pb_hub_free(fx->h);
    pb_conns_free(fx->cs);
    assert_int_equal(hooks_seen.kill, kills); /* no hooks on the way out */
    fx->cs = pb_conns_new(&fx->cfg, &fx->m, &fx->shared, &fake_hooks);
    assert_non_null(fx->cs);
    struct pb_hub_out out = fake_out(fx->cs);
    fx->h = pb_hub_new(&fx->cfg, &fx->m, NULL, &out);
    assert_non_null(fx->h);
    pb_conns_on_closing(fx->cs, fake_tell_closing, fx->h);
}

#define MANY 10000

static void test_many_users(void **state)
{
    struct fixture *fx = *state;
    struct pb_conn **conns = calloc(MANY, sizeof(*conns));
    assert_non_null(conns);
    char user[32];
    for (int i = 0; i < MANY; i++) {
        snprintf(user, sizeof(user), "user-%d", i);
        conns[i] = native(fx, user);
    }
    assert_int_equal(pb_hub_users(fx->h), MANY);
    assert_int_equal(pb_conns_count(fx->cs), MANY);
    for (int i = 0; i < MANY; i++) {
        snprintf(user, sizeof(user), "user-%d", i);
        assert_int_equal(pb_hub_user_connections(fx->h, user, strlen(user)), 1);
        assert_int_equal(deliver_n(fx, user, i, 0), 1);
    }
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(queued(conns[i]), 1);
        char want[96];
        snprintf(want, sizeof(want), "{\"type\":\"event\",\"event\":\"message\",\"data\":%d}", i);
        expect_pop(fx, conns[i], want);
    }
    /* A second connection for every other user. */
    for (int i = 0; i < MANY; i += 2) {
        snprintf(user, sizeof(user), "user-%d", i);
        native(fx, user);
        assert_int_equal(pb_hub_user_connections(fx->h, user, strlen(user)), 2);
    }
    assert_int_equal(pb_hub_users(fx->h), MANY);
    /* Freeing the first connection of each odd user removes the user. */
    for (int i = 1; i < MANY; i += 2)
        fake_close(fx->h, fx->cs, conns[i]);
    assert_int_equal(pb_hub_users(fx->h), MANY / 2);
    for (int i = 0; i < MANY; i++) {
        snprintf(user, sizeof(user), "user-%d", i);
        assert_int_equal(pb_hub_user_connections(fx->h, user, strlen(user)), i % 2 ? 0 : 2);
    }
    assert_int_equal(deliver(fx, "*", "{\"data\":0}"), MANY);
    assert_int_equal(pb_hub_user_connections(fx->h, "user-10000", 10), 0);
    free(conns);
}

static void test_queue_bytes_gauge(void **state)
{
    struct fixture *fx = *state;
    struct pb_conn *a = native(fx, "u1");
    struct pb_conn *b = plain(fx, "u1");
    assert_int_equal(pb_conns_queue_bytes(fx->cs), 0);
    deliver(fx, "u1", "{\"data\":\"12345\"}");
    size_t native_len = strlen("{\"type\":\"event\",\"event\":\"message\",\"data\":\"12345\"}");
    assert_int_equal(a->q_bytes, native_len);
    assert_int_equal(b->q_bytes, 5);
    assert_int_equal(pb_conns_queue_bytes(fx->cs), native_len + 5);
    deliver(fx, "u1", "{\"data\":[1]}");
    assert_int_equal(pb_conns_queue_bytes(fx->cs), a->q_bytes + b->q_bytes);
    drain(fx, a);
    assert_int_equal(pb_conns_queue_bytes(fx->cs), b->q_bytes);
    assert_int_equal(b->q_bytes, 5 + 3);
    drain(fx, b);
    assert_int_equal(pb_conns_queue_bytes(fx->cs), 0);
    assert_int_equal(a->q_bytes, 0);
}

static void test_delivered_metric_by_source(void **state)
{
    struct fixture *fx = *state;
    native(fx, "u1");
    native(fx, "u1");
    uint32_t src = pb_metrics_source(&fx->m, "orders");
    struct pb_event ev;
    pb_event_init(&ev);
    assert_int_equal(pb_envelope_parse("{\"data\":1}", 10, 0, &ev), PB_DROP_NONE);
    assert_int_equal(pb_event_set_target(&ev, "u1", 2), PB_DROP_NONE);
    assert_int_equal(pb_hub_deliver(fx->h, &ev, src), 2);
    assert_int_equal(fx->m.src[src].delivered, 2);
    assert_int_equal(fx->m.src[PB_SOURCE_HTTP].delivered, 0);
    /* An out-of-range source is not counted, and not a crash. */
    assert_int_equal(pb_hub_deliver(fx->h, &ev, PB_METRICS_MAX_SOURCES + 5), 2);
    assert_int_equal(fx->m.src[src].delivered, 2);
    pb_hub_flush(fx->h);
    pb_event_clear(&ev);
}

/* ws.queue_max_bytes is soft: a queue may pass it while frames keep
 * leaving (a client reading a burst), for ws.slow_client_grace_ms after the
 * last one left; ws.queue_hard_max_bytes applies at once. */
static void test_soft_bound_waits_for_the_grace_period(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.ws_queue_max_bytes = 1024;
    fx->cfg.ws_queue_hard_max_bytes = 4096;
    fx->cfg.ws_slow_client_grace_ms = 5000;
    struct pb_conn *c = native(fx, "burst");
    for (int i = 0; i < 4; i++)
        deliver_n(fx, "burst", i, 400); /* ~1.8 KB: over the soft bound */
    assert_false(c->closing);
    assert_int_equal(c->q_len, 4);
    pb_conn_sent(fx->cs, c); /* progress */
    c->last_progress_ms -= 6000; /* ...then nothing left for 6 s */
    deliver_n(fx, "burst", 1, 400);
    assert_true(c->closing);
    assert_int_equal(fx->m.slow_client_closes, 1);

    struct pb_conn *d = native(fx, "hard");
    for (int i = 0; i < 9; i++)
        deliver_n(fx, "hard", i, 500); /* past 4096 bytes within the grace period */
    assert_true(d->closing);
    assert_int_equal(fx->m.slow_client_closes, 2);
}

/* keepalive.c: a ping (raw ping frame, outside the byte bound) to a
 * connection quiet for ws.ping_interval_ms, at most one per interval; a cut
 * once it has been silent for ws.idle_timeout_ms; an answer resets both. */
static void test_keepalive_pings_then_cuts(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.ws_ping_interval_ms = 1000;
    fx->cfg.ws_idle_timeout_ms = 3000;
    hooks_seen.cut = 0;
    struct pb_conn *quiet = native(fx, "quiet");
    struct pb_conn *talker = native(fx, "talker");
    int64_t t0 = quiet->last_rx_ms;
    assert_int_equal(pb_keepalive_sweep(fx->cs, t0 + 500), 0);
    assert_null(pb_conn_peek(quiet));
    assert_int_equal(pb_keepalive_sweep(fx->cs, t0 + 1000), 0);
    struct pb_frame *f = pb_conn_peek(quiet);
    assert_non_null(f);
    assert_int_equal(pb_frame_wire(f)[0], 0x89);
    assert_int_equal(f->len, 0); /* no payload bytes counted against the queue */
    pb_conn_pop(fx->cs, quiet);
    pb_conn_pop(fx->cs, talker);
    assert_int_equal(pb_keepalive_sweep(fx->cs, t0 + 1500), 0); /* once per interval */
    assert_null(pb_conn_peek(quiet));
    talker->last_rx_ms = t0 + 2500; /* it answered */
    assert_int_equal(pb_keepalive_sweep(fx->cs, t0 + 3000), 1);
    assert_true(quiet->closing);
    assert_false(talker->closing);
    assert_int_equal(hooks_seen.cut, 1);
}

/* ---- ws.slow_client coalesce ---- */

/* A task update {"data":n,"task":task} (final when fin), as plain clients
 * see it: the data alone, so the queue reads as the numbers left in it. */
static long deliver_task(struct fixture *fx, const char *user, const char *task, int n, int fin)
{
    char json[128];
    snprintf(json, sizeof(json), "{\"data\":%d,\"task\":\"%s\"%s}", n, task,
             fin ? ",\"final\":true" : "");
    return deliver(fx, user, json);
}

/* The queue's payloads, head first, as "1 2 3". */
static const char *queue_text(const struct pb_conn *c, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < c->q_len && o < len; i++) {
        struct pb_frame *f = pb_conn_at(c, i);
        o += (size_t)snprintf(buf + o, len - o, "%s%.*s", i ? " " : "", (int)f->len,
                              (const char *)pb_frame_payload(f));
    }
    return buf;
}

/* A full queue takes a task's new update in place of its newest queued
 * one (the others keep their order, the new one goes to the tail), and
 * the connection stays open: a slow reader gets each task's latest state. */
static void test_coalesce_replaces_the_newest_update(void **state)
{
    struct fixture *fx = *state;
    char q[256];
    fx->cfg.ws_queue_max_messages = 4;
    fx->cfg.ws_slow_client = PB_SLOW_COALESCE;
    struct pb_conn *c = plain(fx, "u");
    deliver_task(fx, "u", "a", 1, 0);
    deliver_task(fx, "u", "b", 2, 0);
    deliver_task(fx, "u", "a", 3, 0);
    deliver_task(fx, "u", "c", 4, 0);
    assert_string_equal(queue_text(c, q, sizeof(q)), "1 2 3 4");
    assert_int_equal(deliver_task(fx, "u", "a", 5, 0), 1); /* a's newest (3) gives way */
    assert_string_equal(queue_text(c, q, sizeof(q)), "1 2 4 5");
    assert_false(c->closing);
    assert_int_equal(fx->m.coalesced, 1);
    assert_int_equal(fx->m.slow_client_closes, 0);
    assert_int_equal(c->q_bytes, 4);
    assert_int_equal(pb_conns_queue_bytes(fx->cs), 4);
}

/* An update of a task with nothing queued makes room by dropping every
 * queued update a later queued one supersedes; a final update is never
 * dropped nor overtaken. */
static void test_coalesce_squeezes_the_queue_keeping_finals(void **state)
{
    struct fixture *fx = *state;
    char q[256];
    fx->cfg.ws_queue_max_messages = 4;
    fx->cfg.ws_slow_client = PB_SLOW_COALESCE;
    struct pb_conn *c = plain(fx, "u");
    deliver_task(fx, "u", "a", 1, 0);
    deliver_task(fx, "u", "a", 2, 0);
    deliver_task(fx, "u", "b", 3, 1); /* final */
    deliver_task(fx, "u", "a", 4, 0);
    deliver_task(fx, "u", "d", 5, 0); /* no d queued: a's 1 and 2 are superseded by 4 */
    assert_string_equal(queue_text(c, q, sizeof(q)), "3 4 5");
    assert_int_equal(fx->m.coalesced, 2);
    deliver_task(fx, "u", "x", 6, 0);
    assert_string_equal(queue_text(c, q, sizeof(q)), "3 4 5 6");
    /* b's final update stays: an update of b after it may not replace it,
     * and with nothing else to squeeze the queue is full: closed (after it
     * was handed over: counted). */
    assert_int_equal(deliver_task(fx, "u", "b", 7, 0), 1);
    assert_true(c->closing);
    assert_int_equal(c->close_code, PB_CLOSE_SLOW);
    assert_int_equal(fx->m.slow_client_closes, 1);
    assert_int_equal(fx->m.coalesced, 2);
}

/* Events with no task cannot be coalesced: a full queue of them is closed
 * as under ws.slow_client close. */
static void test_coalesce_without_tasks_closes(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.ws_queue_max_messages = 2;
    fx->cfg.ws_slow_client = PB_SLOW_COALESCE;
    struct pb_conn *c = plain(fx, "u");
    deliver_n(fx, "u", 1, 0);
    deliver_n(fx, "u", 2, 0);
    assert_false(c->closing);
    deliver_n(fx, "u", 3, 0);
    assert_true(c->closing);
    assert_int_equal(hooks_seen.last_kill_code, PB_CLOSE_SLOW);
    assert_int_equal(fx->m.coalesced, 0);
    assert_null(pb_conn_peek(c)); /* its queue is dropped at once */
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_keepalive_pings_then_cuts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_soft_bound_waits_for_the_grace_period, setup,
                                        teardown),
        T(test_login_and_user_lists),
        T(test_deliver_to_user),
        T(test_order_preserved),
        T(test_frames_staged_until_flush),
        T(test_frame_shared_once),
        T(test_plain_and_native_formats),
        T(test_event_filters),
        T(test_target_all),
        T(test_target_group),
        T(test_max_connections),
        T(test_max_connections_per_user),
        T(test_slow_client_close_by_messages),
        T(test_slow_client_close_by_bytes),
        T(test_drop_oldest_by_messages),
        T(test_drop_oldest_by_bytes),
        T(test_drop_oldest_oversized_frame),
        T(test_oversized_frame_does_not_close_reading_client),
        T(test_want_write_on_empty_to_non_empty),
        T(test_close),
        T(test_conn_free_removes_everything),
        T(test_hub_free_releases_queues),
        T(test_many_users),
        T(test_queue_bytes_gauge),
        T(test_delivered_metric_by_source),
        T(test_coalesce_replaces_the_newest_update),
        T(test_coalesce_squeezes_the_queue_keeping_finals),
        T(test_coalesce_without_tasks_closes),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}

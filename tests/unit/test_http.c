/* Unit tests of the HTTP API's handlers (http.c) through their narrow environment, struct
 * pb_api_env: a real hub and store behind it, fake callbacks for what only the server knows
 * (readiness, gauges), and no transport: a request is filled in as httpd.c fills it (raw path
 * and query), handled, and the status, the body and the frames queued on a connection are what
 * the tests look at, as a caller and a browser would see them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pushbridge/api/http.h"
#include "pushbridge/event/frame.h"
#include "pushbridge/hub/hub.h"

#include "fake_worker.h"
#include "pushbridge/store/store.h"

/* ---- fakes for what only the server knows ---- */

static const char *fake_why; /* NULL: ready */
static int ready_calls, gauges_calls;

static int fake_ready(const void *owner, const char **why)
{
    assert_non_null(owner);
    ready_calls++;
    *why = fake_why;
    return fake_why == NULL;
}

static void fake_gauges(const void *owner, struct pb_gauges *g)
{
    assert_non_null(owner);
    gauges_calls++;
    memset(g, 0, sizeof(*g));
    g->connections = 42;
    g->users = 7;
}

static void no_write(struct pb_conn *c)
{
    (void)c;
}

static const struct pb_conn_hooks hooks = {.want_write = no_write, .kill = no_write, .cut = no_write};

struct fixture {
    struct pb_config cfg;
    struct pb_metrics m;
    struct pb_store *store;
    struct pb_conns_shared shared;
    struct pb_conns *cs; /* the one worker's connections (fake_worker.h) */
    struct pb_hub *hub;
    struct pb_api_env env; /* the internal listener's */
    struct pb_http_req r;
    int owner;
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(pb_config_init(&fx->cfg), 0);
    fx->cfg.dashboard_enabled = 0;
    pb_metrics_init(&fx->m);
    assert_non_null(fx->store = pb_store_new(&fx->cfg, &fx->m));
    assert_non_null(fx->cs = pb_conns_new(&fx->cfg, &fx->m, &fx->shared, &hooks));
    struct pb_hub_out out = fake_out(fx->cs);
    assert_non_null(fx->hub = pb_hub_new(&fx->cfg, &fx->m, fx->store, &out));
    fake_start_frames = 0; /* the tests look at what the requests queue */
    fx->env = (struct pb_api_env){
        .cfg = &fx->cfg,
        .metrics = &fx->m,
        .hub = fx->hub,
        .store = fx->store,
        .kafka = NULL, /* standalone: nothing is relayed */
        .is_internal = 1,
        .owner = &fx->owner,
        .ready = fake_ready,
        .gauges = fake_gauges,
    };
    pb_http_req_init(&fx->r, &fx->cfg);
    fake_why = NULL;
    ready_calls = gauges_calls = 0;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    pb_http_req_clear(&fx->r);
    pb_hub_free(fx->hub);
    pb_conns_free(fx->cs);
    pb_store_free(fx->store);
    pb_config_free(&fx->cfg);
    free(fx);
    return 0;
}

/* ---- helpers ---- */

/* A logged-in connection of user; form PB_FORM_PLAIN gets an event's data alone. */
static struct pb_conn *connect_as(struct fixture *fx, const char *user, int form)
{
    struct pb_conn *c = pb_conns_new_conn(fx->cs, NULL);
    assert_non_null(c);
    struct pb_identity id = {0};
    assert_non_null(id.user = strdup(user));
    id.form = form;
    assert_int_equal(fake_login(fx->hub, c, &id, NULL), 0);
    return c;
}

/* Handles one request as httpd.c hands it over (path and query still %-encoded) and runs the
 * last step before the answer is written. body NULL: none. */
static struct pb_http_req *call(struct fixture *fx, int method, const char *path,
                                const char *query, const char *body)
{
    struct pb_http_req *r = &fx->r;
    pb_http_req_clear(r);
    pb_http_req_init(r, &fx->cfg);
    r->method = method;
    snprintf(r->path, sizeof(r->path), "%s", path);
    if (query)
        pb_buf_append(&r->query, query, strlen(query));
    if (body)
        pb_buf_append(&r->body, body, strlen(body));
    if (!pb_http_check_early(&fx->env, r))
        pb_http_handle(&fx->env, r);
    pb_http_done(&fx->env, r);
    return r;
}

static void expect_answer(const struct pb_http_req *r, int status, const char *body)
{
    if (r->status != status || r->answer.len != strlen(body) ||
        memcmp(r->answer.data, body, r->answer.len) != 0)
        fail_msg("answer is %d %.*s, expected %d %s", r->status, (int)r->answer.len,
                 r->answer.data ? r->answer.data : "", status, body);
}

static int answer_has(const struct pb_http_req *r, const char *text)
{
    return r->answer.data && memmem(r->answer.data, r->answer.len, text, strlen(text)) != NULL;
}

/* Asserts the head frame's payload contains text, then pops it. */
static void expect_frame(struct fixture *fx, struct pb_conn *c, const char *text)
{
    pb_hub_flush(fx->hub); /* as the main loop does before it sleeps */
    struct pb_frame *f = pb_conn_peek(c);
    if (!f)
        fail_msg("no frame queued, expected one with %s", text);
    if (!memmem(pb_frame_payload(f), f->len, text, strlen(text)))
        fail_msg("frame is \"%.*s\", expected it to contain %s", (int)f->len,
                 (char *)pb_frame_payload(f), text);
    pb_conn_pop(fx->cs, c);
}

static uint64_t push_count(const struct fixture *fx, int status)
{
    for (int i = 0; i < PB_METRICS_MAX_STATUSES; i++)
        if (fx->m.push[i].status == status)
            return fx->m.push[i].count;
    return 0;
}

/* ---- /push, /broadcast ---- */

static void test_push_reaches_the_users_connection(void **state)
{
    struct fixture *fx = *state;
    struct pb_conn *c = connect_as(fx, "u1", PB_FORM_NATIVE);
    while (pb_conn_peek(c)) /* whatever login queued */
        pb_conn_pop(fx->cs, c);
    struct pb_http_req *r =
        call(fx, LWSHUMETH_POST, "/push", NULL, "{\"user_id\":\"u1\",\"data\":{\"n\":1}}");
    expect_answer(r, 200, "{\"delivered\":1}");
    expect_frame(fx, c, "{\"n\":1}");
    assert_int_equal(fx->m.src[PB_SOURCE_HTTP].consumed, 1);
    assert_int_equal(push_count(fx, 200), 1);
    r = call(fx, LWSHUMETH_POST, "/push", NULL, "{\"user_id\":\"nobody\",\"data\":1}");
    expect_answer(r, 200, "{\"delivered\":0}");
}

static void test_push_refuses_bad_bodies(void **state)
{
    struct fixture *fx = *state;
    struct pb_http_req *r = call(fx, LWSHUMETH_POST, "/push", NULL, "");
    assert_int_equal(r->status, 400);
    assert_true(answer_has(r, "\"error\":\"bad_json\""));
    r = call(fx, LWSHUMETH_POST, "/push", NULL, "{\"data\":1}");
    assert_int_equal(r->status, 400);
    assert_true(answer_has(r, "\"error\":\"missing_field\""));
    r = call(fx, LWSHUMETH_POST, "/broadcast", NULL, "{\"user_id\":\"u1\",\"data\":1}");
    assert_int_equal(r->status, 400);
    assert_true(answer_has(r, "use POST /push"));
    assert_int_equal(push_count(fx, 400), 3);
}

static void test_batch_answers_per_item_and_is_bounded(void **state)
{
    struct fixture *fx = *state;
    struct pb_conn *c = connect_as(fx, "u1", PB_FORM_NATIVE);
    (void)c;
    struct pb_http_req *r =
        call(fx, LWSHUMETH_POST, "/push", NULL, "[{\"user_id\":\"u1\",\"data\":1},{\"data\":2}]");
    assert_int_equal(r->status, 200);
    assert_true(answer_has(r, "[{\"delivered\":1},{\"error\":\"missing_field\""));
    fx->cfg.push_max_batch = 1;
    r = call(fx, LWSHUMETH_POST, "/push", NULL, "[1,2]");
    assert_int_equal(r->status, 400);
    assert_true(answer_has(r, "\"error\":\"batch_too_large\""));
}

/* ---- /send ---- */

static void test_send_query_and_form(void **state)
{
    struct fixture *fx = *state;
    struct pb_conn *c = connect_as(fx, "123", PB_FORM_PLAIN);
    while (pb_conn_peek(c))
        pb_conn_pop(fx->cs, c);
    struct pb_http_req *r = call(fx, LWSHUMETH_GET, "/send", "uid=123&message=Hello%20World", NULL);
    expect_answer(r, 200, "{\"delivered\":1}");
    expect_frame(fx, c, "Hello World");
    /* A POST form body wins over the query. */
    r = call(fx, LWSHUMETH_POST, "/send", "uid=123&message=query", "message=from+the+body");
    expect_answer(r, 200, "{\"delivered\":1}");
    expect_frame(fx, c, "from the body");
    assert_null(pb_conn_peek(c));
}

static void test_send_refusals(void **state)
{
    struct fixture *fx = *state;
    struct pb_http_req *r = call(fx, LWSHUMETH_GET, "/send", "message=hi", NULL);
    assert_int_equal(r->status, 400);
    assert_true(answer_has(r, "\"message\":\"uid is required\""));
    r = call(fx, LWSHUMETH_GET, "/send", "uid=1&message=%zz", NULL);
    assert_int_equal(r->status, 400);
    assert_true(answer_has(r, "broken %-escape"));
    r = call(fx, LWSHUMETH_GET, "/send", "uid=1&message=a%00b", NULL);
    assert_int_equal(r->status, 400);
    assert_true(answer_has(r, "must not contain NUL"));
    r = call(fx, LWSHUMETH_GET, "/send", "uid=1&message=%ff", NULL);
    assert_int_equal(r->status, 400);
    assert_true(answer_has(r, "UTF-8 text"));
    r = call(fx, LWSHUMETH_GET, "/send", "uid=absent&message=hi", NULL);
    expect_answer(r, 400,
                  "{\"error\":\"no_connection\",\"message\":\"user absent has no open connection\"}");
}

/* ---- keys, routes, roles ---- */

static void test_api_keys(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.push_api_keys.items = calloc(1, sizeof(char *));
    assert_non_null(fx->cfg.push_api_keys.items);
    assert_non_null(fx->cfg.push_api_keys.items[0] = strdup("s3cret"));
    fx->cfg.push_api_keys.n = 1;
    struct pb_http_req *r = call(fx, LWSHUMETH_POST, "/push", NULL, "{\"user_id\":\"u\"}");
    assert_int_equal(r->status, 401);
    assert_true(answer_has(r, "\"error\":\"unauthorized\""));
    assert_int_equal(push_count(fx, 401), 1);

    pb_http_req_clear(&fx->r);
    pb_http_req_init(&fx->r, &fx->cfg);
    fx->r.method = LWSHUMETH_POST;
    snprintf(fx->r.path, sizeof(fx->r.path), "/push");
    assert_non_null(fx->r.auth = strdup("Bearer s3cret"));
    assert_int_equal(pb_http_check_early(&fx->env, &fx->r), 0);
    pb_buf_append(&fx->r.body, "{\"user_id\":\"u\"}", 15);
    pb_http_handle(&fx->env, &fx->r);
    expect_answer(&fx->r, 200, "{\"delivered\":0}");
    /* Operator endpoints need no key. */
    expect_answer(call(fx, LWSHUMETH_GET, "/healthz", NULL, NULL), 200, "{\"status\":\"ok\"}");
}

static void test_routes_and_roles(void **state)
{
    struct fixture *fx = *state;
    struct pb_http_req *r = call(fx, LWSHUMETH_GET, "/nope", NULL, NULL);
    expect_answer(r, 404, "{\"error\":\"not_found\",\"message\":\"no such path\"}");
    r = call(fx, LWSHUMETH_GET, "/push", NULL, NULL);
    assert_int_equal(r->status, 405);
    assert_string_equal(r->allow, "POST");
    /* The public listener has none of the API, and its own page. */
    fx->env.is_internal = 0;
    fx->env.is_public = 1;
    r = call(fx, LWSHUMETH_GET, "/stats", NULL, NULL);
    assert_int_equal(r->status, 404);
    r = call(fx, LWSHUMETH_GET, "/", NULL, NULL);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->content_type, "text/html; charset=utf-8");
    assert_true(answer_has(r, "<code>/ws</code>"));
}

/* ---- operator endpoints: what the callbacks say ---- */

static void test_readyz_asks_the_owner(void **state)
{
    struct fixture *fx = *state;
    fake_why = "listeners are not up yet";
    struct pb_http_req *r = call(fx, LWSHUMETH_GET, "/readyz", NULL, NULL);
    expect_answer(r, 503,
                  "{\"error\":\"not_ready\",\"message\":\"listeners are not up yet\"}");
    assert_int_equal(ready_calls, 1);
}

static void test_stats_and_metrics_render_the_owners_gauges(void **state)
{
    struct fixture *fx = *state;
    struct pb_http_req *r = call(fx, LWSHUMETH_GET, "/stats", NULL, NULL);
    assert_int_equal(r->status, 200);
    assert_true(answer_has(r, "{\"connections\":42,\"users\":7,"));
    r = call(fx, LWSHUMETH_GET, "/metrics", NULL, NULL);
    assert_int_equal(r->status, 200);
    assert_true(answer_has(r, "\npushbridge_connections 42\n"));
    assert_int_equal(gauges_calls, 2);
}

static void test_users_endpoint(void **state)
{
    struct fixture *fx = *state;
    connect_as(fx, "a/b", PB_FORM_NATIVE);
    expect_answer(call(fx, LWSHUMETH_GET, "/users/a%2Fb", NULL, NULL), 200,
                  "{\"online\":true,\"connections\":1}");
    expect_answer(call(fx, LWSHUMETH_GET, "/users/zz", NULL, NULL), 200,
                  "{\"online\":false,\"connections\":0}");
    expect_answer(call(fx, LWSHUMETH_GET, "/users/a%2Fb/tasks", NULL, NULL), 200,
                  "{\"user\":\"a/b\",\"tasks\":[]}");
    struct pb_http_req *r = call(fx, LWSHUMETH_GET, "/users/%4", NULL, NULL);
    assert_int_equal(r->status, 400);
    assert_true(answer_has(r, "broken %-escape"));
}

/* An answer that did not fit is a 500, not a cut body. */
static void test_done_turns_a_truncated_answer_into_500(void **state)
{
    struct fixture *fx = *state;
    struct pb_http_req *r = &fx->r;
    r->status = 200;
    r->answer.truncated = 1;
    pb_http_done(&fx->env, r);
    assert_int_equal(r->status, 500);
    assert_true(answer_has(r, "did not fit"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_push_reaches_the_users_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_refuses_bad_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_answers_per_item_and_is_bounded, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_send_query_and_form, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_routes_and_roles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readyz_asks_the_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_and_metrics_render_the_owners_gauges, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_users_endpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_done_turns_a_truncated_answer_into_500, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of the held resuming logins. The list (held.c): first in,
 * first out; only due entries are taken unless all are; a dropped entry (its
 * connection closed) leaves the list whole, the tail included (members are
 * opaque there, so fake addresses stand in for them). The hub's answers
 * (hub.c, with a store and the fake worker): a resume held during the
 * rebuild is answered when it ends, and one answered before it ends is
 * "resumed": false even when the history already reaches its pos; a login
 * during the rebuild gets the task updates the rebuild reads after it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pushbridge/hub/held.h"
#include "pushbridge/hub/hub.h"
#include "pushbridge/store/store.h"

#include "fake_hooks.h"
#include "fake_worker.h"

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

/* ---- the hub's answers ---- */

struct fixture {
    struct pb_config cfg;
    struct pb_metrics m;
    struct pb_conns_shared shared;
    struct pb_conns *cs;
    struct pb_store *st;
    struct pb_hub *h;
    char pos[PB_POS_MAX_LEN]; /* u's position after its first event */
};

/* u's event at offset n of topic t [partition], {"<key>":n} at ts, of task
 * (or none), its offset marked read in st; data is its text's buffer. */
static struct pb_event user_event(struct pb_store *st, char *data, size_t cap, const char *key,
                                  int32_t partition, int64_t n, int64_t ts, const char *task)
{
    snprintf(data, cap, "{\"%s\":%lld}", key, (long long)n);
    struct pb_event ev;
    pb_event_init(&ev);
    ev.data = data;
    ev.data_len = strlen(data);
    ev.target_kind = PB_TARGET_USER;
    ev.target = "u";
    ev.target_len = 1;
    ev.task = (char *)task;
    ev.ts_ms = ts;
    ev.topic = "t";
    ev.partition = partition;
    ev.offset = n;
    assert_int_equal(pb_store_seen(st, "t", partition, n), 0);
    return ev;
}

/* u's event number n, read from topic t [0] at offset n: the history's. */
static void record(struct pb_store *st, int64_t n)
{
    char data[32];
    struct pb_event ev = user_event(st, data, sizeof(data), "n", 0, n, pb_now_ms(), NULL);
    assert_int_equal(pb_store_record(st, &ev), PB_RECORD_DELIVER);
}

/* A hub whose history holds u's events 0 and 1, with pos taken after 0, as a
 * client that saw event 0 holds it; the rebuild at start is running. */
static struct fixture *hub_with_history(int auth_timeout_ms)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(pb_config_init(&fx->cfg), 0);
    fx->cfg.ws_auth_timeout_ms = auth_timeout_ms;
    pb_metrics_init(&fx->m);
    assert_non_null(fx->cs = pb_conns_new(&fx->cfg, &fx->m, &fx->shared, &fake_hooks));
    assert_non_null(fx->st = pb_store_new(&fx->cfg, &fx->m));
    record(fx->st, 0);
    pb_store_pos(fx->st, "u", 1, pb_now_ms(), fx->pos);
    record(fx->st, 1);
    struct pb_hub_out out = fake_out(fx->cs);
    assert_non_null(fx->h = pb_hub_new(&fx->cfg, &fx->m, fx->st, &out));
    pb_conns_on_closing(fx->cs, fake_tell_closing, fx->h);
    fake_hooks_reset();
    pb_hub_hold_resumes(fx->h, 1);
    return fx;
}

static void hub_free(struct fixture *fx)
{
    pb_hub_free(fx->h);
    pb_conns_free(fx->cs);
    pb_store_free(fx->st);
    pb_config_free(&fx->cfg);
    free(fx);
}

/* A native client of u logs in resuming from pos. */
static struct pb_conn *resume_as_u(struct fixture *fx)
{
    struct pb_conn *c = pb_conns_new_conn(fx->cs, NULL);
    assert_non_null(c);
    struct pb_identity id = {.form = PB_FORM_NATIVE};
    assert_non_null(id.user = strdup("u"));
    assert_int_equal(fake_login(fx->h, c, &id, fx->pos), 0);
    return c;
}

/* The payload of c's queued frame i, as text ("" past the end). */
static const char *frame_text(struct pb_conn *c, uint32_t i, char *buf, size_t cap)
{
    struct pb_frame *f = pb_conn_at(c, i);
    snprintf(buf, cap, "%.*s", f ? (int)f->len : 0, f ? (const char *)pb_frame_payload(f) : "");
    return buf;
}

/* The rebuild ends while the login waits: it is answered then, resumed,
 * with the event it missed. */
static void test_held_resume_answered_when_the_rebuild_ends(void **state)
{
    (void)state;
    struct fixture *fx = hub_with_history(10000); /* a wait of 5 s */
    struct pb_conn *c = resume_as_u(fx);
    assert_false(c->authed); /* held: no answer yet */
    assert_null(pb_conn_peek(c));
    pb_hub_hold_resumes(fx->h, 0);
    char buf[512];
    assert_non_null(strstr(frame_text(c, 0, buf, sizeof(buf)), "\"resumed\":true"));
    assert_non_null(strstr(frame_text(c, 1, buf, sizeof(buf)), "\"data\":{\"n\":1}"));
    assert_null(pb_conn_at(c, 2));
    assert_int_equal(fx->m.resumes[1], 1);
    hub_free(fx);
}

/* Answered while the rebuild runs (here with no wait at all: an auth
 * timeout of 2 s leaves none): the history already reaches the pos, but
 * what the rebuild reads after it would never reach this client, so the
 * answer is "resumed": false and nothing is replayed. */
static void test_resume_answered_during_the_rebuild_is_not_resumed(void **state)
{
    (void)state;
    struct fixture *fx = hub_with_history(2000);
    struct pb_conn *c = resume_as_u(fx);
    assert_true(c->authed);
    char buf[512];
    assert_non_null(strstr(frame_text(c, 0, buf, sizeof(buf)), "\"resumed\":false"));
    assert_null(pb_conn_at(c, 1)); /* no replay (and no task in the snapshot) */
    assert_int_equal(fx->m.resumes[0], 1);
    assert_int_equal(fx->m.resumes[1], 0);
    /* Once the rebuild is over, the same pos resumes. */
    pb_hub_hold_resumes(fx->h, 0);
    struct pb_conn *c2 = resume_as_u(fx);
    assert_non_null(strstr(frame_text(c2, 0, buf, sizeof(buf)), "\"resumed\":true"));
    assert_int_equal(fx->m.resumes[1], 1);
    hub_free(fx);
}

/* u's update n of task (or a notification: NULL), at time ts, read by the
 * rebuild from topic t [1] at offset n: kept through the hub. */
static void rebuild_reads(struct fixture *fx, int64_t n, int64_t ts, const char *task, int final)
{
    char data[32];
    struct pb_event ev = user_event(fx->st, data, sizeof(data), "p", 1, n, ts, task);
    ev.final = final;
    pb_hub_keep(fx->h, &ev);
    pb_hub_flush(fx->h);
}

/* A login without resume during the rebuild gets the snapshot as it stands.
 * What the rebuild reads later is skipped by the live consumer as read, so
 * each update that changes a task's kept state reaches the connection as a
 * snapshot frame; one still queued gives way to the same task's next; an
 * outdated update and an event without a task reach nobody; a final update
 * already past its time to live ends the task it was shown. The view ends
 * as a login after the rebuild sees it. */
static void test_a_login_during_the_rebuild_gets_the_updates_it_reads_later(void **state)
{
    (void)state;
    struct fixture *fx = hub_with_history(10000);
    int64_t now = pb_now_ms(); /* state.ttl_ms 10 min, state.final_ttl_ms 1 min */
    rebuild_reads(fx, 0, now - 300000, "job", 0);
    struct pb_conn *c = pb_conns_new_conn(fx->cs, NULL);
    assert_non_null(c);
    struct pb_identity id = {.form = PB_FORM_NATIVE};
    assert_non_null(id.user = strdup("u"));
    assert_int_equal(fake_login(fx->h, c, &id, NULL), 0);
    char buf[512];
    assert_non_null(strstr(frame_text(c, 0, buf, sizeof(buf)), "\"type\":\"welcome\""));
    assert_non_null(strstr(frame_text(c, 1, buf, sizeof(buf)), "\"data\":{\"p\":0}"));
    assert_null(pb_conn_at(c, 2));

    rebuild_reads(fx, 1, now - 250000, "job", 0);
    frame_text(c, 2, buf, sizeof(buf));
    assert_non_null(strstr(buf, "\"data\":{\"p\":1}"));
    assert_non_null(strstr(buf, "\"snapshot\":true"));
    assert_null(strstr(buf, "\"pos\"")); /* as in a snapshot: no pos */
    /* Still queued: the next update of job takes its place, not the
     * login's own snapshot frame before it. */
    rebuild_reads(fx, 2, now - 240000, "job", 0);
    assert_non_null(strstr(frame_text(c, 1, buf, sizeof(buf)), "\"data\":{\"p\":0}"));
    assert_non_null(strstr(frame_text(c, 2, buf, sizeof(buf)), "\"data\":{\"p\":2}"));
    assert_null(pb_conn_at(c, 3));
    assert_int_equal(fx->m.coalesced, 1);
    rebuild_reads(fx, 3, now - 245000, "job", 0); /* older than the kept p:2 */
    rebuild_reads(fx, 4, now - 230000, NULL, 0);  /* a notification: no task */
    assert_null(pb_conn_at(c, 3));
    rebuild_reads(fx, 5, now - 220000, "other", 0);
    assert_non_null(strstr(frame_text(c, 3, buf, sizeof(buf)), "\"data\":{\"p\":5}"));
    /* other's final update, past state.final_ttl_ms: not kept, but the
     * client shown other in progress learns it ended. */
    rebuild_reads(fx, 6, now - 120000, "other", 1);
    frame_text(c, 3, buf, sizeof(buf));
    assert_non_null(strstr(buf, "\"data\":{\"p\":6}"));
    assert_non_null(strstr(buf, "\"final\":true"));
    assert_null(pb_conn_at(c, 4));

    /* A login after the rebuild: job as the first client ends up seeing
     * it, other gone. */
    pb_hub_hold_resumes(fx->h, 0);
    struct pb_conn *c2 = pb_conns_new_conn(fx->cs, NULL);
    assert_non_null(c2);
    assert_non_null(id.user = strdup("u"));
    id.form = PB_FORM_NATIVE;
    assert_int_equal(fake_login(fx->h, c2, &id, NULL), 0);
    assert_non_null(strstr(frame_text(c2, 1, buf, sizeof(buf)), "\"data\":{\"p\":2}"));
    assert_null(pb_conn_at(c2, 2));
    hub_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_and_due),
        cmocka_unit_test(test_drop_keeps_the_list_whole),
        cmocka_unit_test(test_held_resume_answered_when_the_rebuild_ends),
        cmocka_unit_test(test_resume_answered_during_the_rebuild_is_not_resumed),
        cmocka_unit_test(test_a_login_during_the_rebuild_gets_the_updates_it_reads_later),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

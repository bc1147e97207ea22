/* Unit tests of the store (task state, history, streams, pos and resume). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pushbridge/core/config.h"
#include "pushbridge/core/metrics.h"
#include "pushbridge/store/store.h"

struct fx {
    struct pb_config cfg;
    struct pb_metrics m;
    struct pb_store *st;
    int64_t offset;
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(pb_config_init(&fx->cfg), 0);
    pb_metrics_init(&fx->m);
    *state = fx;
    return 0;
}

static struct pb_store *store(struct fx *fx)
{
    if (!fx->st)
        fx->st = pb_store_new(&fx->cfg, &fx->m);
    assert_non_null(fx->st);
    return fx->st;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    pb_store_free(fx->st);
    pb_config_free(&fx->cfg);
    free(fx);
    return 0;
}

/* An event for user (or "*") read from topic t, partition p, at the next
 * offset of the fixture, with Kafka time ts (0: now). */
static int record(struct fx *fx, const char *user, const char *task, int final, int64_t ts,
                  int32_t p, const char *data)
{
    struct pb_event ev;
    pb_event_init(&ev);
    ev.task = (char *)task;
    ev.final = final;
    ev.data = data;
    ev.data_len = strlen(data);
    ev.target_kind = strcmp(user, "*") == 0 ? PB_TARGET_ALL : PB_TARGET_USER;
    ev.target = user;
    ev.target_len = strlen(user);
    ev.ts_ms = ts ? ts : pb_now_ms();
    ev.topic = "t";
    ev.partition = p;
    ev.offset = fx->offset++;
    assert_int_equal(pb_store_seen(store(fx), "t", p, ev.offset), 0);
    return pb_store_record(store(fx), &ev);
}

struct seen {
    char data[64][32];
    int n;
};

static void collect(const struct pb_event *ev, void *ud)
{
    struct seen *s = ud;
    snprintf(s->data[s->n++], sizeof(s->data[0]), "%.*s", (int)ev->data_len, ev->data);
}

static void collect_count(const struct pb_event *ev, void *ud)
{
    (void)ev;
    ((struct seen *)ud)->n++;
}

static void collect_pos(const struct pb_event *ev, const char *pos, void *ud)
{
    assert_true(pos[0] == '1' && pos[1] == '.');
    collect(ev, ud);
}

static void test_latest_event_per_task_and_outdated(void **state)
{
    struct fx *fx = *state;
    int64_t now = pb_now_ms();
    assert_int_equal(record(fx, "u", "a", 0, now - 10, 0, "1"), PB_RECORD_TASK);
    assert_int_equal(record(fx, "u", "b", 0, now - 10, 0, "2"), PB_RECORD_TASK);
    assert_int_equal(record(fx, "u", "a", 0, now, 0, "3"), PB_RECORD_TASK);
    /* Older by Kafka timestamp than what is kept for a. */
    assert_int_equal(record(fx, "u", "a", 0, now - 5, 0, "4"), PB_RECORD_OUTDATED);
    struct seen s = {0};
    assert_int_equal(pb_store_each_task(store(fx), "u", 1, collect, &s), 2);
    assert_string_equal(s.data[0], "2"); /* updated longest ago first */
    assert_string_equal(s.data[1], "3");
    struct pb_store_stats st;
    pb_store_stats(store(fx), &st);
    assert_int_equal(st.tasks, 2);
    assert_int_equal(st.users, 1);
}

static void test_max_tasks_per_user(void **state)
{
    struct fx *fx = *state;
    fx->cfg.state_max_tasks_per_user = 2;
    record(fx, "u", "a", 0, 0, 0, "a");
    record(fx, "u", "b", 0, 0, 0, "b");
    record(fx, "u", "a", 0, 0, 0, "a2");
    record(fx, "u", "c", 0, 0, 0, "c"); /* b was updated longest ago */
    struct seen s = {0};
    assert_int_equal(pb_store_each_task(store(fx), "u", 1, collect, &s), 2);
    assert_string_equal(s.data[0], "a2");
    assert_string_equal(s.data[1], "c");
    assert_int_equal(fx->m.state_evicted[0], 1);
}

static void test_state_max_bytes_holds(void **state)
{
    struct fx *fx = *state;
    fx->cfg.state_max_bytes = 64 * 1024;
    fx->cfg.history_max_bytes = 32 * 1024;
    char user[32], task[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(user, sizeof(user), "user-%d", i % 300);
        snprintf(task, sizeof(task), "task-%d", i);
        record(fx, user, task, 0, 0, i % 3, "{\"progress\":1}");
        struct pb_store_stats st;
        pb_store_stats(store(fx), &st);
        assert_true(st.state_bytes <= 64 * 1024);
        assert_true(st.history_bytes <= 32 * 1024);
    }
    assert_true(fx->m.state_evicted[1] > 0);
    assert_true(fx->m.history_evicted[1] > 0);
    /* The newest task is kept. */
    struct seen s = {0};
    assert_true(pb_store_each_task(store(fx), "user-199", 8, collect, &s) >= 1);
}

static void test_ttl_and_final_ttl(void **state)
{
    struct fx *fx = *state;
    fx->cfg.state_ttl_ms = 60000;
    fx->cfg.state_final_ttl_ms = 1000;
    int64_t now = pb_now_ms();
    record(fx, "u", "old", 0, now - 61000, 0, "x"); /* past its ttl already: not kept */
    record(fx, "u", "done", 1, now - 2000, 0, "y");  /* final, past final_ttl */
    record(fx, "u", "live", 0, now, 0, "z");
    struct seen s = {0};
    assert_int_equal(pb_store_each_task(store(fx), "u", 1, collect, &s), 1);
    assert_string_equal(s.data[0], "z");
}

static void test_redelivery_and_gap(void **state)
{
    struct fx *fx = *state;
    struct pb_store *st = store(fx);
    assert_int_equal(pb_store_seen(st, "t", 0, 10), 0);
    assert_int_equal(pb_store_seen(st, "t", 0, 11), 0);
    assert_int_equal(pb_store_seen(st, "t", 0, 10), 1); /* read again */
    assert_int_equal(pb_store_seen(st, "t", 0, 5), 0);  /* before what is held */
    pb_store_gap(st, "t", 0);
    assert_int_equal(pb_store_seen(st, "t", 0, 11), 1);
    assert_int_equal(pb_store_seen(st, "t", 0, 12), 0); /* follows on: same range */
}

/* A client that saw the first three events of u resumes: it gets the rest,
 * broadcasts included, in order. */
static void test_resume_exact(void **state)
{
    struct fx *fx = *state;
    char pos[PB_POS_MAX_LEN];
    record(fx, "u", NULL, 0, 0, 0, "e0");
    record(fx, "u", NULL, 0, 0, 0, "e1");
    record(fx, "*", NULL, 0, 0, 1, "b2");
    pb_store_pos(store(fx), "u", 1, pb_now_ms(), pos);
    record(fx, "u", NULL, 0, 0, 0, "e3");
    record(fx, "*", NULL, 0, 0, 1, "b4");
    record(fx, "other", NULL, 0, 0, 0, "o5");
    record(fx, "u", NULL, 0, 0, 0, "e6");
    struct seen s = {0};
    assert_int_equal(pb_store_resume(store(fx), "u", 1, pos, strlen(pos), collect_pos, &s), 1);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.data[0], "e3");
    assert_string_equal(s.data[1], "b4");
    assert_string_equal(s.data[2], "e6");
    assert_int_equal(fx->m.resumes[0] + fx->m.resumes[1], 0); /* counted by the hub */
}

static void test_resume_not_covered(void **state)
{
    struct fx *fx = *state;
    fx->cfg.history_max_events = 3;
    char pos[PB_POS_MAX_LEN];
    record(fx, "u", NULL, 0, 0, 0, "e0");
    pb_store_pos(store(fx), "u", 1, pb_now_ms(), pos);
    for (int i = 0; i < 5; i++)
        record(fx, "u", NULL, 0, 0, 0, "more");
    struct seen s = {0};
    assert_int_equal(pb_store_resume(store(fx), "u", 1, pos, strlen(pos), collect_pos, &s), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(fx->m.history_evicted[0], 3);
}

/* An event read but too old to keep is missing from the history as surely
 * as an evicted one. */
static void test_resume_not_covered_past_what_was_kept(void **state)
{
    struct fx *fx = *state;
    fx->cfg.history_ttl_ms = 60000;
    char pos[PB_POS_MAX_LEN];
    record(fx, "u", NULL, 0, 0, 0, "e0");
    pb_store_pos(store(fx), "u", 1, pb_now_ms(), pos);
    record(fx, "u", NULL, 0, pb_now_ms() - 120000, 0, "old"); /* a lagging consumer's */
    record(fx, "u", NULL, 0, 0, 0, "e2");
    struct seen s = {0};
    assert_int_equal(pb_store_resume(store(fx), "u", 1, pos, strlen(pos), collect_pos, &s), 0);
}

/* A stream the pos does not name (the user's first events on it came
 * later): entries of it newer than the pos that are gone mean a gap. */
static void test_resume_not_covered_on_an_unnamed_stream(void **state)
{
    struct fx *fx = *state;
    fx->cfg.history_max_events = 3;
    char pos[PB_POS_MAX_LEN];
    record(fx, "u", NULL, 0, 0, 0, "e0");
    pb_store_pos(store(fx), "u", 1, pb_now_ms() - 1, pos);
    for (int i = 0; i < 5; i++)
        record(fx, "u", NULL, 0, 0, 1, "p1"); /* partition 1: not in pos */
    struct seen s = {0};
    assert_int_equal(pb_store_resume(store(fx), "u", 1, pos, strlen(pos), collect_pos, &s), 0);
    /* Without the eviction it resumes with all of them. */
    fx->cfg.history_max_events = 1000;
    record(fx, "v", NULL, 0, 0, 0, "v0");
    pb_store_pos(store(fx), "v", 1, pb_now_ms() - 1, pos);
    for (int i = 0; i < 5; i++)
        record(fx, "v", NULL, 0, 0, 1, "v1");
    memset(&s, 0, sizeof(s));
    assert_int_equal(pb_store_resume(store(fx), "v", 1, pos, strlen(pos), collect_pos, &s), 1);
    assert_int_equal(s.n, 5);
}

static void test_malformed_pos(void **state)
{
    struct fx *fx = *state;
    record(fx, "u", NULL, 0, 0, 0, "e0");
    static const char *const bad[] = {
        "", "1", "1.", "2.5", "1.x", "1.5.", "1.5.nosuch-0~1", "1.5.~1", "1.5.abc",
        "1.5.h000000000000~1", "1.1234567890123456789012", "1.5..", "0.5",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct seen s = {0};
        assert_int_equal(pb_store_resume(store(fx), "u", 1, bad[i], strlen(bad[i]), collect_pos,
                                         &s),
                         0);
    }
}

/* Only the broadcasts whose data is not "skip" (the hub's filter). */
static int admit_not_skip(const struct pb_event *ev, void *ud)
{
    (void)ud;
    return !(ev->data_len == 4 && memcmp(ev->data, "skip", 4) == 0);
}

static void test_recent_notifications(void **state)
{
    struct fx *fx = *state;
    fx->cfg.history_max_events = 200;
    record(fx, "u", NULL, 0, 0, 0, "n0");
    record(fx, "u", "build", 0, 0, 0, "t1"); /* a task: not a notification */
    record(fx, "*", NULL, 0, 0, 1, "b2");
    record(fx, "other", NULL, 0, 0, 0, "o3");
    record(fx, "*", NULL, 0, 0, 1, "skip");
    record(fx, "u", NULL, 0, 0, 0, "n5");
    record(fx, "u", "build", 1, 0, 0, "t6");
    /* The last three, oldest first, in arrival order across the user's and
     * the broadcast history. */
    struct seen s = {0};
    assert_int_equal(pb_store_recent(store(fx), "u", 1, 3, admit_not_skip, collect, &s), 3);
    assert_string_equal(s.data[0], "n0");
    assert_string_equal(s.data[1], "b2");
    assert_string_equal(s.data[2], "n5");
    /* Fewer kept than asked: all of them; none asked: none. */
    struct seen all = {0};
    assert_int_equal(pb_store_recent(store(fx), "u", 1, 100, NULL, collect, &all), 4);
    assert_string_equal(all.data[3], "n5");
    assert_int_equal(pb_store_recent(store(fx), "u", 1, 0, NULL, collect, &all), 0);
    /* More than PB_STORE_MAX_RECENT asked: PB_STORE_MAX_RECENT at most. */
    for (int i = 0; i < PB_STORE_MAX_RECENT + 20; i++)
        record(fx, "v", NULL, 0, 0, 0, "v");
    struct seen *big = calloc(1, sizeof(*big) * 4);
    long n = pb_store_recent(store(fx), "v", 1, 1000, admit_not_skip, collect_count, big);
    assert_int_equal(n, PB_STORE_MAX_RECENT);
    free(big);
    /* An unknown user still sees the broadcasts; no history: nothing. */
    struct seen b = {0};
    assert_int_equal(pb_store_recent(store(fx), "nobody", 6, 10, NULL, collect, &b), 2);
    fx->cfg.history_max_events = 0;
    assert_int_equal(pb_store_recent(store(fx), "u", 1, 10, NULL, collect, &b), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_latest_event_per_task_and_outdated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_tasks_per_user, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_max_bytes_holds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_and_final_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redelivery_and_gap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_not_covered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_not_covered_past_what_was_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_not_covered_on_an_unnamed_stream, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_malformed_pos, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recent_notifications, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The hand-off between threads: every item arrives once, each producer's in
 * the order it pushed them, in batches (fewer wake-ups than items), with two
 * producer threads racing a receiving loop. Run under ThreadSanitizer too
 * (tests/run.sh --tsan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>

#include "pushbridge/core/handoff.h"

#define PRODUCERS 2
#define PER_PRODUCER 50000

struct msg {
    struct pb_handoff_item link; /* first: the item is the message */
    int producer;
    int seq;
};

struct recv_state {
    struct ev_loop *loop;
    int next[PRODUCERS];
    int got;
    int out_of_order;
};

static void run(struct pb_handoff_item *it, size_t n, void *ud)
{
    struct recv_state *st = ud;
    size_t seen = 0;
    while (it) {
        struct pb_handoff_item *next = it->next;
        struct msg *m = (struct msg *)it;
        if (m->seq != st->next[m->producer])
            st->out_of_order++;
        st->next[m->producer] = m->seq + 1;
        st->got++;
        seen++;
        free(m);
        it = next;
    }
    assert_int_equal(seen, n);
    if (st->got == PRODUCERS * PER_PRODUCER)
        ev_break(st->loop, EVBREAK_ALL);
}

struct producer {
    pthread_t t;
    struct pb_handoff *q;
    int id;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    for (int i = 0; i < PER_PRODUCER; i++) {
        struct msg *m = calloc(1, sizeof(*m));
        if (!m)
            abort();
        m->producer = p->id;
        m->seq = i;
        pb_handoff_push(p->q, &m->link);
    }
    return NULL;
}

static void test_order_and_batches(void **state)
{
    (void)state;
    struct recv_state st = {.loop = ev_loop_new(EVFLAG_AUTO)};
    assert_non_null(st.loop);
    struct pb_handoff q;
    char err[128];
    assert_int_equal(pb_handoff_init(&q, st.loop, run, &st, err, sizeof(err)), 0);
    struct producer p[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        p[i] = (struct producer){.q = &q, .id = i};
        assert_int_equal(pthread_create(&p[i].t, NULL, produce, &p[i]), 0);
    }
    ev_run(st.loop, 0);
    for (int i = 0; i < PRODUCERS; i++)
        assert_int_equal(pthread_join(p[i].t, NULL), 0);
    assert_int_equal(st.got, PRODUCERS * PER_PRODUCER);
    assert_int_equal(st.out_of_order, 0);
    uint64_t items, batches;
    pb_handoff_counts(&q, &items, &batches);
    assert_int_equal(items, PRODUCERS * PER_PRODUCER);
    /* A wake-up per batch, not per item. */
    assert_true(batches < items);
    assert_null(pb_handoff_close(&q));
    ev_loop_destroy(st.loop);
}

/* A chain pushed in one call arrives whole, and a drain on the loop's own
 * thread (no wake-up needed) runs it. */
static void test_chain_and_drain(void **state)
{
    (void)state;
    struct recv_state st = {.loop = ev_loop_new(EVFLAG_AUTO)};
    struct pb_handoff q;
    char err[128];
    assert_int_equal(pb_handoff_init(&q, st.loop, run, &st, err, sizeof(err)), 0);
    struct msg *m[3];
    for (int i = 0; i < 3; i++) {
        m[i] = calloc(1, sizeof(*m[i]));
        m[i]->seq = i;
    }
    m[0]->link.next = &m[1]->link;
    m[1]->link.next = &m[2]->link;
    pb_handoff_push_chain(&q, &m[0]->link, &m[2]->link, 3);
    assert_int_equal(pb_handoff_drain(&q), 3);
    assert_int_equal(st.got, 3);
    assert_int_equal(st.out_of_order, 0);
    assert_int_equal(pb_handoff_drain(&q), 0);
    /* A weighted item counts its weight in the backlog and the total, and
     * runs as one item. */
    struct msg *heavy = calloc(1, sizeof(*heavy));
    heavy->seq = 3;
    pb_handoff_push_weighted(&q, &heavy->link, 500);
    assert_int_equal(pb_handoff_weight(&q), 500);
    assert_int_equal(pb_handoff_drain(&q), 1);
    assert_int_equal(pb_handoff_weight(&q), 0);
    uint64_t total, batches;
    pb_handoff_counts(&q, &total, &batches);
    assert_int_equal(total, 3 + 500);
    assert_int_equal(batches, 2);
    /* What close returns is the caller's to free. */
    struct msg *left = calloc(1, sizeof(*left));
    pb_handoff_push(&q, &left->link);
    struct pb_handoff_item *rest = pb_handoff_close(&q);
    assert_ptr_equal(rest, &left->link);
    free(left);
    ev_loop_destroy(st.loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_batches),
        cmocka_unit_test(test_chain_and_drain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

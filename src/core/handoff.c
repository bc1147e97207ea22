/* Batched hand-off between threads (see handoff.h). The lock is held only to
 * link or unlink whole chains: a producer's critical section is a few
 * stores, the receiver's one swap, so contention stays low whatever the
 * batch size. */
#include "pushbridge/core/handoff.h"

#include <stdio.h>
#include <string.h>

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    pb_handoff_drain(w->data);
}

int pb_handoff_init(struct pb_handoff *q, struct ev_loop *loop, pb_handoff_run_fn run, void *ud,
                    char *errstr, size_t errlen)
{
    memset(q, 0, sizeof(*q));
    int rc = pthread_mutex_init(&q->lock, NULL);
    if (rc) {
        snprintf(errstr, errlen, "hand-off queue: pthread_mutex_init: %s", strerror(rc));
        return -1;
    }
    q->loop = loop;
    q->run = run;
    q->ud = ud;
    ev_async_init(&q->wake, wake_cb);
    q->wake.data = q;
    ev_async_start(loop, &q->wake);
    return 0;
}

static void push(struct pb_handoff *q, struct pb_handoff_item *first, struct pb_handoff_item *last,
                 size_t n, size_t weight)
{
    last->next = NULL;
    pthread_mutex_lock(&q->lock);
    int was_empty = q->head == NULL;
    if (q->tail)
        q->tail->next = first;
    else
        q->head = first;
    q->tail = last;
    q->len += n;
    /* weight and weight_peak are written under the lock, read without. */
    size_t now = q->weight + weight;
    __atomic_store_n(&q->weight, now, __ATOMIC_RELAXED);
    __atomic_fetch_add(&q->weight_total, weight, __ATOMIC_RELAXED);
    if (now > q->weight_peak)
        __atomic_store_n(&q->weight_peak, (uint64_t)now, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&q->lock);
    /* Only the edge wakes: while the receiver has not swapped the list out,
     * a wake-up is already on its way. */
    if (was_empty)
        ev_async_send(q->loop, &q->wake);
}

void pb_handoff_push_chain(struct pb_handoff *q, struct pb_handoff_item *first,
                           struct pb_handoff_item *last, size_t n)
{
    if (first)
        push(q, first, last, n, n);
}

void pb_handoff_push(struct pb_handoff *q, struct pb_handoff_item *it)
{
    push(q, it, it, 1, 1);
}

void pb_handoff_push_weighted(struct pb_handoff *q, struct pb_handoff_item *it, size_t weight)
{
    push(q, it, it, 1, weight ? weight : 1);
}

size_t pb_handoff_drain(struct pb_handoff *q)
{
    pthread_mutex_lock(&q->lock);
    struct pb_handoff_item *first = q->head;
    size_t n = q->len;
    q->head = q->tail = NULL;
    q->len = 0;
    __atomic_store_n(&q->weight, (size_t)0, __ATOMIC_RELAXED);
    if (n)
        __atomic_fetch_add(&q->batches, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&q->lock);
    if (n)
        q->run(first, n, q->ud);
    return n;
}

size_t pb_handoff_weight(const struct pb_handoff *q)
{
    return __atomic_load_n(&q->weight, __ATOMIC_RELAXED);
}

void pb_handoff_counts(const struct pb_handoff *q, uint64_t *weight_total, uint64_t *batches)
{
    *weight_total = __atomic_load_n(&q->weight_total, __ATOMIC_RELAXED);
    *batches = __atomic_load_n(&q->batches, __ATOMIC_RELAXED);
}

uint64_t pb_handoff_peak(const struct pb_handoff *q)
{
    return __atomic_load_n(&q->weight_peak, __ATOMIC_RELAXED);
}

struct pb_handoff_item *pb_handoff_close(struct pb_handoff *q)
{
    ev_async_stop(q->loop, &q->wake);
    pthread_mutex_lock(&q->lock);
    struct pb_handoff_item *rest = q->head;
    q->head = q->tail = NULL;
    q->len = 0;
    __atomic_store_n(&q->weight, (size_t)0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&q->lock);
    pthread_mutex_destroy(&q->lock);
    return rest;
}

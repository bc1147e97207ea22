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

void pb_handoff_push_chain(struct pb_handoff *q, struct pb_handoff_item *first,
                           struct pb_handoff_item *last, size_t n)
{
    if (!first)
        return;
    last->next = NULL;
    pthread_mutex_lock(&q->lock);
    int was_empty = q->head == NULL;
    if (q->tail)
        q->tail->next = first;
    else
        q->head = first;
    q->tail = last;
    q->len += n;
    pthread_mutex_unlock(&q->lock);
    /* Only the edge wakes: while the receiver has not swapped the list out,
     * a wake-up is already on its way. */
    if (was_empty)
        ev_async_send(q->loop, &q->wake);
}

void pb_handoff_push(struct pb_handoff *q, struct pb_handoff_item *it)
{
    pb_handoff_push_chain(q, it, it, 1);
}

size_t pb_handoff_drain(struct pb_handoff *q)
{
    pthread_mutex_lock(&q->lock);
    struct pb_handoff_item *first = q->head;
    size_t n = q->len;
    q->head = q->tail = NULL;
    q->len = 0;
    if (n) {
        q->items += n;
        q->batches++;
    }
    pthread_mutex_unlock(&q->lock);
    if (n)
        q->run(first, n, q->ud);
    return n;
}

size_t pb_handoff_len(struct pb_handoff *q)
{
    pthread_mutex_lock(&q->lock);
    size_t n = q->len;
    pthread_mutex_unlock(&q->lock);
    return n;
}

struct pb_handoff_item *pb_handoff_close(struct pb_handoff *q)
{
    ev_async_stop(q->loop, &q->wake);
    pthread_mutex_lock(&q->lock);
    struct pb_handoff_item *rest = q->head;
    q->head = q->tail = NULL;
    q->len = 0;
    pthread_mutex_unlock(&q->lock);
    pthread_mutex_destroy(&q->lock);
    return rest;
}

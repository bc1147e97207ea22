/* A one-way hand-off of work items from any thread to one event loop, in
 * batches: producers append under a mutex, the loop takes the whole list in
 * one swap and runs it unlocked. The loop is woken (ev_async_send, the one
 * libev call that is safe from another thread) only on the empty -> non-empty
 * edge, so a burst of N items costs one wake-up, not N (h2o's
 * lib/common/multithread.c does the same). The groundwork of event-loop
 * workers (SPEC section 11): the consumer hands events to the workers through
 * one of these per worker, and the workers hand closes and logins back. */
#ifndef PB_HANDOFF_H
#define PB_HANDOFF_H

#include <ev.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* One item. Embedded by the sender in whatever it hands over (intrusive, so
 * a hand-off allocates nothing); owned by the queue from pb_handoff_push
 * until the loop's run callback receives it, then by that callback. */
struct pb_handoff_item {
    struct pb_handoff_item *next;
};

/* Runs on the receiving loop's thread with the items of one batch, oldest
 * first; the callback owns them. */
typedef void (*pb_handoff_run_fn)(struct pb_handoff_item *first, size_t n, void *ud);

/* Owned by the receiving side; created before any producer starts and freed
 * after every producer has stopped. Bound: the queue holds whatever the
 * producers push; each producer bounds what it has in flight (a worker's
 * inbox: the Kafka consumer stops at WORKER_BACKLOG_MAX, server.c, which
 * says what else it does not hold back). */
struct pb_handoff {
    pthread_mutex_t lock;
    struct pb_handoff_item *head, *tail; /* under lock */
    size_t len;                          /* under lock */
    size_t weight;                       /* written under lock, read atomically */
    ev_async wake;                       /* on the receiving loop */
    struct ev_loop *loop;
    pb_handoff_run_fn run;
    void *ud;
    /* Counters for /metrics, /stats and the benchmark (atomic: read by any
     * thread without the lock): the weight ever pushed, and the batches the
     * receiver took (its wake-ups, give or take a drain it did itself),
     * and the most weight ever queued at once (a bound's high-water mark). */
    uint64_t weight_total, batches, weight_peak;
};

/* Attaches the wake-up to loop (which must not run yet, or this must be
 * called on its thread). 0, or -1 with errstr naming the cause. */
int pb_handoff_init(struct pb_handoff *q, struct ev_loop *loop, pb_handoff_run_fn run, void *ud,
                    char *errstr, size_t errlen);
/* Any thread: appends one item; wakes the loop if the queue was empty. */
void pb_handoff_push(struct pb_handoff *q, struct pb_handoff_item *it);
/* Any thread: appends one item that counts as weight (>= 1) in
 * pb_handoff_weight, e.g. a message carrying that many frames. */
void pb_handoff_push_weighted(struct pb_handoff *q, struct pb_handoff_item *it, size_t weight);
/* Any thread: appends a chain first..last of n items (weight 1 each) in one
 * lock. */
void pb_handoff_push_chain(struct pb_handoff *q, struct pb_handoff_item *first,
                           struct pb_handoff_item *last, size_t n);
/* The receiving loop's thread: runs what is queued now (also what the
 * wake-up does). Returns the number of items run. */
size_t pb_handoff_drain(struct pb_handoff *q);
/* Any thread: the weight of the items queued and not yet taken by the
 * receiver (their number, unless pushed weighted). */
size_t pb_handoff_weight(const struct pb_handoff *q);
/* Any thread: the weight ever pushed and the batches taken so far. */
void pb_handoff_counts(const struct pb_handoff *q, uint64_t *weight_total, uint64_t *batches);
/* Any thread: the most weight that was ever queued at once. */
uint64_t pb_handoff_peak(const struct pb_handoff *q);
/* The receiving loop's thread, with every producer stopped: stops the
 * watcher. Items still queued are returned to the caller to free. */
struct pb_handoff_item *pb_handoff_close(struct pb_handoff *q);

#endif

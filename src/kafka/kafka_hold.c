/* Holding the consumer back for a worker that is behind (server.c's
 * WORKER_BACKLOG_MAX): a short hold just leaves the consumer unpolled; one
 * that lasts pauses its partitions, so that polling, and with it the
 * group's rebalances, goes on. Part of the Kafka module (kafka_internal.h). */
#include "pushbridge/core/log.h"
#include "kafka_internal.h"

/* A hold this long pauses the partitions. Most holds are a broadcast
 * burst's, over in milliseconds once the worker writes what it has: left
 * unpolled, the consumer keeps what it prefetched and reading goes on at
 * once. A pause drops that prefetch and a resume waits for the fetcher's
 * next wake-up (up to a second in librdkafka 2.0.2), so only a worker that
 * stays behind (starved, wedged: the watchdog's case) is worth one. Until
 * then a rebalance waits for this member: this long, plus up to a tick. */
#define HOLD_PAUSE_AFTER_MS 1000
/* Lasting holds are logged at info once a minute at most (a worker that
 * keeps starving would hold every few seconds), the others at debug. */
#define HOLD_LOG_INTERVAL_MS 60000

/* librdkafka 2.0.2 drops a pause or resume silently when a version barrier
 * of its own on the same partition (a rebalance starting, a fetch starting
 * after an assignment) overtakes it, and reports success all the same.
 * Asked twice in a row, the second one is newer than any barrier taken
 * before the first returned, so it takes a second such coincidence to lose
 * it. Twice is harmless: the consumer handed out nothing in between, so a
 * second pause saves the same position and a second resume fetches from
 * the same offset. */
static rd_kafka_resp_err_t pause_resume(struct pb_kafka *k, rd_kafka_topic_partition_list_t *parts,
                                        int pause)
{
    rd_kafka_resp_err_t (*fn)(rd_kafka_t *, rd_kafka_topic_partition_list_t *) =
        pause ? rd_kafka_pause_partitions : rd_kafka_resume_partitions;
    rd_kafka_resp_err_t err = fn(k->rk, parts);
    return err ? err : fn(k->rk, parts);
}

/* Pauses parts and remembers them in k->paused (not NULL), to resume at the
 * hold's end. One that cannot be paused is read on: its first message
 * tries again (pb_kafka_hold_strayed). */
static void pause_parts(struct pb_kafka *k, rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_resp_err_t err = pause_resume(k, parts, 1);
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &parts->elems[i];
        if (err || p->err) {
            pb_warn("kafka: cannot pause %s [%d] for a worker that is behind: %s", p->topic,
                    (int)p->partition, rd_kafka_err2str(err ? err : p->err));
            continue;
        }
        if (!rd_kafka_topic_partition_list_find(k->paused, p->topic, p->partition))
            rd_kafka_topic_partition_list_add(k->paused, p->topic, p->partition);
    }
}

void pb_kafka_hold_set(struct pb_kafka *k, int hold)
{
    k->held = hold;
    if (hold) {
        k->held_ms = pb_monotonic_ms();
        k->hold_warned = 0;
        return;
    }
    /* Every partition paused, assigned or not by now: librdkafka keeps an
     * application's pause across a revoke and a later assign. */
    if (k->paused) {
        rd_kafka_resp_err_t err = pause_resume(k, k->paused, 0);
        if (err)
            pb_warn("kafka: cannot resume the partitions held for a worker: %s",
                    rd_kafka_err2str(err));
        pb_log(k->hold_loud ? PB_LOG_INFO : PB_LOG_DEBUG,
               "kafka: %d partition(s) resumed: the workers caught up", k->paused->cnt);
        rd_kafka_topic_partition_list_destroy(k->paused);
        k->paused = NULL;
    }
}

/* The first lasting hold of a minute is logged at info, with how many
 * went by at debug since the last one. */
static void log_paused(struct pb_kafka *k, int64_t now, int64_t held_for)
{
    k->hold_loud = !k->hold_log_ms || now - k->hold_log_ms >= HOLD_LOG_INTERVAL_MS;
    if (!k->hold_loud) {
        k->hold_quiet++;
        pb_debug("kafka: a worker has been behind for %lld ms: %d partition(s) paused",
                 (long long)held_for, k->paused->cnt);
        return;
    }
    pb_info("kafka: a worker has been behind for %lld ms: %d partition(s) paused until it "
            "catches up (%llu more such hold(s) since the last of these lines)",
            (long long)held_for, k->paused->cnt, (unsigned long long)k->hold_quiet);
    k->hold_log_ms = now;
    k->hold_quiet = 0;
}

int pb_kafka_hold_lets_poll(struct pb_kafka *k)
{
    if (!k->held || k->paused)
        return 1;
    int64_t now = pb_monotonic_ms(), held_for = now - k->held_ms;
    if (held_for < HOLD_PAUSE_AFTER_MS)
        return 0;
    rd_kafka_topic_partition_list_t *parts = NULL;
    rd_kafka_resp_err_t err = rd_kafka_assignment(k->rk, &parts);
    if (err || !parts || !(k->paused = rd_kafka_topic_partition_list_new(parts->cnt))) {
        /* Polled all the same: staying in the group comes first. */
        if (!k->hold_warned)
            pb_warn("kafka: cannot pause the partitions for a worker that is behind (%s): "
                    "they are read on",
                    err ? rd_kafka_err2str(err) : "out of memory");
        k->hold_warned = 1;
        if (parts)
            rd_kafka_topic_partition_list_destroy(parts);
        return 1;
    }
    pause_parts(k, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    log_paused(k, now, held_for);
    return 1;
}

void pb_kafka_hold_assigning(struct pb_kafka *k, rd_kafka_topic_partition_list_t *parts)
{
    /* Before the assignment takes them: paused later, our version barrier
     * could come between librdkafka's own for their fetch start and its
     * request, which then would be dropped and the partitions never
     * fetched. librdkafka knows every partition of a subscribed topic by
     * now; one it does not is paused by its first message instead. */
    if (k->paused)
        pause_parts(k, parts);
}

void pb_kafka_hold_strayed(struct pb_kafka *k, const rd_kafka_message_t *msg)
{
    rd_kafka_topic_partition_list_t *one = rd_kafka_topic_partition_list_new(1);
    if (!one)
        return;
    rd_kafka_topic_partition_list_add(one, rd_kafka_topic_name(msg->rkt), msg->partition);
    pause_parts(k, one);
    rd_kafka_topic_partition_list_destroy(one);
}

/* Rebuild on start (SPEC 7): before the group consumer subscribes, a second,
 * group-less consumer reads the last state.lookback_ms of every subscribed
 * partition (offsetsForTimes) up to the high watermark found at start, and
 * each event goes to the store only (task state, history), never to a
 * client. It reads only what was produced before this process started (the
 * first offset at or after the start time bounds each partition too): an
 * event produced later, on a topic that appeared while the plan was being
 * retried (a regex matching nothing yet), is live and goes to the group
 * consumer, which would otherwise take it for a redelivery and send it to
 * nobody. The bridge is not ready until every partition is read. The group
 * consumer then starts from its committed offsets as before; what the
 * rebuild already read is a redelivery to the store and is not sent again,
 * so a client that resumes gets those events from the history once.
 *
 * librdkafka 2.0.2 has only blocking calls for the metadata and the offset
 * lookups, so a planning thread makes them (retrying while the broker does
 * not answer, up to REBUILD_PLAN_TRIES) and hands the assigned consumer to
 * the loop through the wake-up pipe; the loop never waits for the broker.
 * The thread touches nothing but its struct pb_kafka_rebuild (its own
 * copies of the topics and the lookback, and the consumer made before it
 * starts); a process that stops before the plan is published leaves the
 * thread to free it, waits a moment for it to end, and exits without
 * waiting longer for the broker (who owns the struct when: the comment on
 * struct pb_kafka_rebuild). */
#include <errno.h>
#include <pthread.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pushbridge/core/log.h"
#include "pushbridge/kafka/kafka_oidc.h"
#include "kafka_internal.h"

/* Each blocking lookup waits at most this long, so that a stop is noticed. */
#define REBUILD_LOOKUP_MS 2000
/* Planning attempts, one a second: past them the bridge goes on without. */
#define REBUILD_PLAN_TRIES 30
/* How long a stop waits for an abandoned planning thread to end: its
 * blocking call or its pause between tries, then its consumer's destroy.
 * Past it the process exits without it (and without waiting for the
 * broker); within it, librdkafka's threads are joined before the exit. */
#define REBUILD_STOP_WAIT_MS (REBUILD_LOOKUP_MS + 1500)

/* Who owns the struct is decided by one compare-and-swap out of PLANNING:
 * the thread publishing its result, or the loop abandoning it (a stop).
 * The comment on struct pb_kafka_rebuild says what follows from each. */
enum plan_state { PLANNING, PLANNED, PLAN_FAILED, ABANDONED };

struct rebuild_part {
    char *topic;
    int32_t partition;
    int64_t end; /* high watermark at start: read up to end - 1 */
    int done;
};

/* Ownership: exactly one side frees the struct, and the one compare-and-
 * swap of state out of PLANNING decides which.
 * - PLANNING: the thread owns rk, parts, nparts and err; the loop reads
 *   only state (and thread, which it wrote itself).
 * - PLANNED / PLAN_FAILED (the thread's swap): the loop owns the struct and
 *   frees it, but only once it has joined the thread (joined), which may
 *   still be writing the pipe; the thread frees nothing.
 * - ABANDONED (the loop's swap, at a stop): the thread owns the struct and
 *   frees it when its blocking call returns; the loop waits a moment for the
 *   thread to end (REBUILD_STOP_WAIT_MS), else detaches it, and never touches
 *   the struct again, so whatever it needs for that (the thread's id) is
 *   read before the swap. */
struct pb_kafka_rebuild {
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    struct rebuild_part *parts;
    size_t nparts, ndone;
    uint64_t events;
    int64_t started_ms;

    /* The planning thread's side: its own copies of what it needs (it may
     * outlive the configuration when abandoned), and its result. */
    pthread_t thread;
    char **topics;        /* kafka.topics, and push.topic in cluster mode */
    size_t ntopics;
    int64_t lookback_ms;
    int64_t start_wall_ms; /* wall clock at start: the rebuild reads what came before */
    int wake_fd;          /* the loop's pipe */
    _Atomic int state;    /* enum plan_state */
    char err[300];
    int joined;           /* the loop's: the thread is joined, the plan taken */
};

static void rebuild_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    /* Connection failures (a refused login or certificate too) repeat on
     * every retry; the group consumer says them once per interval. */
    if (level <= 4 && strcmp(fac, "FAIL") != 0)
        pb_warn("kafka rebuild: %s: %s", fac, buf);
    else
        pb_debug("kafka rebuild: %s: %s", fac, buf);
}

static rd_kafka_t *rebuild_consumer(struct pb_kafka *k, char *errstr, size_t errlen)
{
    const struct pb_config *cfg = k->cfg;
    char group[300], err[256];
    /* A group id is required, but the consumer never joins: it is assigned
     * its partitions and commits nothing. */
    snprintf(group, sizeof(group), "%s.rebuild", cfg->kafka_group_id);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, rebuild_log);
    if (pb_kafka_conf_set(conf, "bootstrap.servers", k->bootstrap ? k->bootstrap : cfg->kafka_brokers,
                          errstr, errlen) ||
        pb_kafka_apply_properties(cfg, conf, errstr, errlen) ||
        pb_kafka_conf_set(conf, "group.id", group, errstr, errlen) ||
        pb_kafka_conf_set(conf, "group.instance.id", "", errstr, errlen) ||
        pb_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errlen) ||
        pb_kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr, errlen) ||
        pb_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, errlen) ||
        pb_kafka_conf_set(conf, "statistics.interval.ms", "0", errstr, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errlen, "kafka: cannot create the rebuild consumer: %s", err);
    } else if (pb_oidc_client_started(cfg, rk, errstr, errlen)) {
        rd_kafka_destroy(rk);
        rk = NULL;
    }
    return rk;
}

static int topic_wanted(const struct pb_kafka_rebuild *rb, const char *topic, regex_t *res,
                        const int *res_ok)
{
    for (size_t i = 0; i < rb->ntopics; i++) {
        const char *t = rb->topics[i];
        if (t[0] != '^' ? strcmp(t, topic) == 0
                        : res_ok[i] && regexec(&res[i], topic, 0, NULL, 0) == 0)
            return 1;
    }
    return 0;
}

/* Every partition of the subscribed topics (regexes matched here, with POSIX
 * extended syntax), its offset set to the lookback's start time. */
static rd_kafka_topic_partition_list_t *lookback_list(const struct pb_kafka_rebuild *rb,
                                                      rd_kafka_t *rk, char *errstr, size_t errlen)
{
    const rd_kafka_metadata_t *md;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, REBUILD_LOOKUP_MS);
    if (err) {
        snprintf(errstr, errlen, "cannot read the topics' metadata: %s", rd_kafka_err2str(err));
        return NULL;
    }
    size_t nt = rb->ntopics;
    regex_t *res = calloc(nt ? nt : 1, sizeof(*res));
    int *res_ok = calloc(nt ? nt : 1, sizeof(*res_ok));
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(16);
    int64_t since = pb_now_ms() - rb->lookback_ms;
    for (size_t i = 0; res && res_ok && i < nt; i++)
        if (rb->topics[i][0] == '^')
            res_ok[i] = regcomp(&res[i], rb->topics[i], REG_EXTENDED | REG_NOSUB) == 0;
    for (int t = 0; res && res_ok && t < md->topic_cnt; t++) {
        const rd_kafka_metadata_topic_t *mt = &md->topics[t];
        if (mt->err || !topic_wanted(rb, mt->topic, res, res_ok))
            continue;
        for (int p = 0; p < mt->partition_cnt; p++)
            rd_kafka_topic_partition_list_add(list, mt->topic, mt->partitions[p].id)->offset =
                since;
    }
    for (size_t i = 0; res && res_ok && i < nt; i++)
        if (res_ok[i])
            regfree(&res[i]);
    free(res);
    free(res_ok);
    rd_kafka_metadata_destroy(md);
    return list;
}

/* Keeps the partitions with something to read: assigns them from the
 * lookback's first offset and notes where each ends. */
static void parts_free(struct pb_kafka_rebuild *rb)
{
    for (size_t i = 0; i < rb->nparts; i++)
        free(rb->parts[i].topic);
    free(rb->parts);
    rb->parts = NULL;
    rb->nparts = 0;
}

/* Where each partition of list (offsets = times) stood at the process
 * start: the first offset at or after it, or -1 when there is none yet. */
static rd_kafka_topic_partition_list_t *start_offsets(struct pb_kafka_rebuild *rb,
                                                      const rd_kafka_topic_partition_list_t *list,
                                                      char *errstr, size_t errlen)
{
    rd_kafka_topic_partition_list_t *at = rd_kafka_topic_partition_list_copy(list);
    if (!at) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    for (int i = 0; i < at->cnt; i++)
        at->elems[i].offset = rb->start_wall_ms;
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rb->rk, at, REBUILD_LOOKUP_MS);
    if (err) {
        snprintf(errstr, errlen, "cannot look offsets up by time: %s", rd_kafka_err2str(err));
        rd_kafka_topic_partition_list_destroy(at);
        return NULL;
    }
    return at;
}

static int plan(struct pb_kafka_rebuild *rb, rd_kafka_topic_partition_list_t *list,
                char *errstr, size_t errlen)
{
    parts_free(rb); /* a failed attempt's */
    if (list->cnt == 0)
        return 0; /* no topic matches yet: nothing to rebuild (librdkafka refuses an empty list) */
    rd_kafka_topic_partition_list_t *at = start_offsets(rb, list, errstr, errlen);
    if (!at)
        return -1;
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rb->rk, list, REBUILD_LOOKUP_MS);
    if (err) {
        rd_kafka_topic_partition_list_destroy(at);
        snprintf(errstr, errlen, "cannot look offsets up by time: %s", rd_kafka_err2str(err));
        return -1;
    }
    rd_kafka_topic_partition_list_t *assign = rd_kafka_topic_partition_list_new(list->cnt);
    rb->parts = calloc((size_t)list->cnt + 1, sizeof(*rb->parts));
    if (!rb->parts) {
        rd_kafka_topic_partition_list_destroy(at);
        rd_kafka_topic_partition_list_destroy(assign);
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < list->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &list->elems[i];
        int64_t lo, hi;
        /* offset -1: nothing at or after the lookback's start. */
        if (tp->err || tp->offset < 0 ||
            rd_kafka_query_watermark_offsets(rb->rk, tp->topic, tp->partition, &lo, &hi,
                                             REBUILD_LOOKUP_MS))
            continue;
        /* Same order as list (a copy of it); -1: nothing since the start. */
        const rd_kafka_topic_partition_t *st = &at->elems[i];
        if (!st->err && st->offset >= 0 && st->offset < hi)
            hi = st->offset;
        if (tp->offset >= hi)
            continue;
        struct rebuild_part *p = &rb->parts[rb->nparts];
        if (!(p->topic = strdup(tp->topic)))
            continue;
        p->partition = tp->partition;
        p->end = hi;
        rb->nparts++;
        rd_kafka_topic_partition_list_add(assign, tp->topic, tp->partition)->offset = tp->offset;
    }
    rd_kafka_topic_partition_list_destroy(at);
    err = assign->cnt ? rd_kafka_assign(rb->rk, assign) : RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_topic_partition_list_destroy(assign);
    if (err) {
        snprintf(errstr, errlen, "cannot assign the partitions: %s", rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

/* The not-ready reason (/readyz) while rebuilding. */
static void set_status(struct pb_kafka *k)
{
    snprintf(k->why, sizeof(k->why),
             "rebuilding task state and history: %zu of %zu partition(s) read",
             k->rebuild->ndone, k->rebuild->nparts);
}

static void rebuild_free(struct pb_kafka_rebuild *rb)
{
    if (!rb)
        return;
    if (rb->queue)
        rd_kafka_queue_destroy(rb->queue);
    if (rb->rk)
        rd_kafka_destroy_flags(rb->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    parts_free(rb);
    for (size_t i = 0; i < rb->ntopics; i++)
        free(rb->topics[i]);
    free(rb->topics);
    free(rb);
}

/* The planning thread: consumer, metadata, offsets by time, high
 * watermarks, assignment; retried while the broker does not answer. */
static void *plan_thread(void *arg)
{
    struct pb_kafka_rebuild *rb = arg;
    int result = PLAN_FAILED;
    for (int i = 0; i < REBUILD_PLAN_TRIES && atomic_load(&rb->state) == PLANNING; i++) {
        if (i)
            sleep(1);
        rd_kafka_topic_partition_list_t *list =
            lookback_list(rb, rb->rk, rb->err, sizeof(rb->err));
        int rc = list ? plan(rb, list, rb->err, sizeof(rb->err)) : -1;
        if (list)
            rd_kafka_topic_partition_list_destroy(list);
        if (rc == 0) {
            result = PLANNED;
            break;
        }
    }
    int expected = PLANNING;
    if (!atomic_compare_exchange_strong(&rb->state, &expected, result)) {
        rebuild_free(rb); /* abandoned: nobody waits for it any more */
        return NULL;
    }
    if (write(rb->wake_fd, "1", 1) < 0) {
        /* the pipe is full: the loop wakes anyway */
    }
    return NULL;
}

int pb_kafka_rebuild_start(struct pb_kafka *k)
{
    const struct pb_config *cfg = k->cfg;
    if (cfg->state_lookback_ms <= 0 ||
        (cfg->state_max_tasks_per_user <= 0 && cfg->history_max_events <= 0))
        return 0;
    struct pb_kafka_rebuild *rb = calloc(1, sizeof(*rb));
    if (!rb) {
        pb_warn("kafka: task state not rebuilt: out of memory");
        return 0;
    }
    char err[300] = "out of memory";
    rb->wake_fd = k->pipefd[1];
    rb->lookback_ms = cfg->state_lookback_ms;
    atomic_init(&rb->state, PLANNING);
    rb->started_ms = pb_monotonic_ms();
    rb->start_wall_ms = pb_now_ms();
    int cluster = cfg->cluster_mode == PB_CLUSTER_KAFKA;
    rb->topics = calloc(cfg->kafka_topics.n + 1, sizeof(*rb->topics));
    for (size_t i = 0; rb->topics && i < cfg->kafka_topics.n + (size_t)cluster; i++) {
        const char *t = i < cfg->kafka_topics.n ? cfg->kafka_topics.items[i] : cfg->push_topic;
        if (!(rb->topics[rb->ntopics] = strdup(t)))
            break;
        rb->ntopics++;
    }
    /* rd_kafka_new does not wait for the broker: made here, from the
     * configuration, which the thread never reads. */
    if (rb->ntopics < cfg->kafka_topics.n + (size_t)cluster ||
        !(rb->rk = rebuild_consumer(k, err, sizeof(err)))) {
        pb_warn("kafka: task state not rebuilt: %s", err);
        rebuild_free(rb);
        return 0;
    }
    int rc = pthread_create(&rb->thread, NULL, plan_thread, rb);
    if (rc) {
        pb_warn("kafka: task state not rebuilt: cannot start its thread: %s", strerror(rc));
        rebuild_free(rb);
        return 0;
    }
    k->rebuild = rb;
    /* Resumes wait for the history (hub/held.h); with none kept, a resume
     * cannot succeed and is answered at once. */
    if (cfg->history_max_events > 0)
        pb_hub_hold_resumes(k->hub, 1);
    snprintf(k->why, sizeof(k->why),
             "rebuilding task state and history: looking up the last %lld ms of the topics",
             (long long)cfg->state_lookback_ms);
    return 1;
}

/* The thread has published (it only writes the pipe after that): joined.
 * A joinable thread of ours cannot fail to join; if it did, the error is
 * said, and the thread is left to end on its own. */
static void join_planner(struct pb_kafka_rebuild *rb)
{
    int rc = pthread_join(rb->thread, NULL);
    if (rc)
        pb_error("kafka rebuild: cannot join the planning thread: %s", strerror(rc));
}

/* The plan is published: 1 when there is something to read (the queue now
 * wakes the loop), 0 when the rebuild is over before it began. */
static int take_plan(struct pb_kafka *k)
{
    struct pb_kafka_rebuild *rb = k->rebuild;
    join_planner(rb);
    rb->joined = 1;
    if (atomic_load(&rb->state) == PLANNED && !(rb->queue = rd_kafka_queue_get_consumer(rb->rk)))
        snprintf(rb->err, sizeof(rb->err), "the rebuild consumer has no queue");
    if (!rb->queue) { /* PLAN_FAILED, or no queue to read from */
        pb_warn("kafka: task state not rebuilt (%s): clients see tasks again from their next "
                "update",
                rb->err[0] ? rb->err : "out of memory");
        parts_free(rb);
        rb->ndone = 0;
        return 0;
    }
    if (rb->nparts == 0) {
        pb_info("kafka: nothing to rebuild task state from in the last %lld ms",
                (long long)k->cfg->state_lookback_ms);
        return 0;
    }
    rd_kafka_queue_io_event_enable(rb->queue, k->pipefd[1], "1", 1);
    set_status(k);
    pb_info("kafka: rebuilding task state and history from the last %lld ms of %zu "
            "partition(s)",
            (long long)k->cfg->state_lookback_ms, rb->nparts);
    return 1;
}

static struct rebuild_part *part_of(struct pb_kafka_rebuild *rb, const rd_kafka_message_t *msg)
{
    const char *topic = rd_kafka_topic_name(msg->rkt);
    for (size_t i = 0; i < rb->nparts; i++)
        if (rb->parts[i].partition == msg->partition && strcmp(rb->parts[i].topic, topic) == 0)
            return &rb->parts[i];
    return NULL;
}

static void part_done(struct pb_kafka *k, struct rebuild_part *p)
{
    if (p && !p->done) {
        p->done = 1;
        k->rebuild->ndone++;
        set_status(k);
    }
}

int pb_kafka_rebuild_drain(struct pb_kafka *k, int budget)
{
    struct pb_kafka_rebuild *rb = k->rebuild;
    if (!rb->joined) {
        if (atomic_load(&rb->state) == PLANNING)
            return 0; /* the thread wakes the loop when it is done */
        if (!take_plan(k))
            return 0; /* nothing to read: pb_kafka_rebuild_finish ends it */
    }
    for (int i = 0; i < budget && rb->ndone < rb->nparts; i++) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rb->rk, 0);
        if (!msg)
            return 0;
        struct rebuild_part *p = msg->rkt ? part_of(rb, msg) : NULL;
        if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            part_done(k, p);
        } else if (msg->err) {
            pb_debug("kafka rebuild: %s", rd_kafka_message_errstr(msg));
        } else if (p && !p->done) {
            if (!pb_store_seen(pb_hub_store(k->hub), p->topic, p->partition, msg->offset)) {
                pb_kafka_keep(k, msg);
                rb->events++;
            }
            if (msg->offset + 1 >= p->end)
                part_done(k, p);
        }
        rd_kafka_message_destroy(msg);
    }
    return rb->ndone < rb->nparts;
}

int pb_kafka_rebuild_finish(struct pb_kafka *k)
{
    struct pb_kafka_rebuild *rb = k->rebuild;
    /* Not before the plan is taken: until it is joined, the thread may
     * still be writing the pipe from the struct. */
    if (!rb || !rb->joined || rb->ndone < rb->nparts)
        return 0;
    struct pb_store_stats st;
    pb_store_stats(pb_hub_store(k->hub), &st);
    pb_info("kafka: rebuilt from %llu event(s) in %lld ms: %llu task(s), %llu history event(s)",
            (unsigned long long)rb->events, (long long)(pb_monotonic_ms() - rb->started_ms),
            (unsigned long long)st.tasks, (unsigned long long)st.history_events);
    rebuild_free(rb);
    k->rebuild = NULL;
    pb_hub_hold_resumes(k->hub, 0);
    snprintf(k->why, sizeof(k->why), "no Kafka partitions assigned yet");
    return 1;
}

/* Still waiting for the broker at a stop: the thread, which owns the plan
 * now, frees it when its call returns (within REBUILD_LOOKUP_MS). It is
 * given REBUILD_STOP_WAIT_MS to end, so its consumer is destroyed (its
 * threads joined) before the process exits; past that it is left to end
 * on its own. */
static void abandon_planner(pthread_t thread)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += REBUILD_STOP_WAIT_MS / 1000;
    until.tv_nsec += (long)(REBUILD_STOP_WAIT_MS % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    int rc = pthread_timedjoin_np(thread, NULL, &until);
    if (rc == 0)
        return;
    if (rc == ETIMEDOUT)
        pb_warn("kafka rebuild: the planning thread still waits for the broker; exiting "
                "without it");
    else
        pb_error("kafka rebuild: cannot join the planning thread: %s", strerror(rc));
    rc = pthread_detach(thread);
    if (rc) /* it still frees the plan: only its own resources stay */
        pb_warn("kafka rebuild: cannot detach the planning thread: %s", strerror(rc));
}

void pb_kafka_rebuild_free(struct pb_kafka *k)
{
    struct pb_kafka_rebuild *rb = k->rebuild;
    k->rebuild = NULL;
    if (!rb)
        return;
    if (!rb->joined) {
        /* Read before the swap: after it the struct is the thread's. */
        pthread_t thread = rb->thread;
        int expected = PLANNING;
        if (atomic_compare_exchange_strong(&rb->state, &expected, ABANDONED)) {
            abandon_planner(thread);
            return;
        }
        join_planner(rb); /* it has published: it is ending */
    }
    rebuild_free(rb);
}

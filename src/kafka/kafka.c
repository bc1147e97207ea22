/* Kafka source. Offsets: enable.auto.offset.store is off and each message's
 * offset is stored only after pb_hub_deliver() has handed it to every local
 * connection it was for (framed and staged per worker, queued when the loop
 * flushes before it sleeps); auto-commit then commits what was stored, and
 * closing the consumer commits the rest. The queues are memory either way:
 * an offset committed a moment before the flush loses nothing more.
 *
 * What can be lost, and what is done about it: the backlog found at
 * assignment may be skipped when stale (kafka.max_event_age_ms), but nothing
 * produced after it (an outage's held-up events included); offsets that
 * retention deleted before they were read are counted and logged
 * (pushbridge_events_lost_total); the group membership is static
 * (group.instance.id), so a consumer that lost its session during a long
 * outage gets its partitions back as soon as the broker is. */
#include "pushbridge/kafka/kafka.h"

#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#include "pushbridge/core/buf.h"
#include "pushbridge/core/log.h"
#include "pushbridge/kafka/kafka_oidc.h"
#include "kafka_internal.h"

static void repeat_log_flush(struct repeat_log *r, int64_t now, int force)
{
    if (!r->start || (!force && now - r->start < REPEAT_LOG_INTERVAL_MS))
        return;
    if (r->suppressed)
        pb_warn("kafka: %s %llu more time(s) in the last %lld s: %s", r->what,
                (unsigned long long)r->suppressed, (long long)((now - r->start + 999) / 1000),
                r->cause);
    r->suppressed = 0;
    r->start = 0;
}

/* Logs a warning that may repeat for one cause: in full when it is the
 * first of its window, or of another cause (which closes the previous
 * cause's window with its count); else only counted. One window per call
 * site, a fixed buffer: no allocation. */
static void log_repeating(struct repeat_log *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void log_repeating(struct repeat_log *r, const char *fmt, ...)
{
    char cause[sizeof(r->cause)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cause, sizeof(cause), fmt, ap);
    va_end(ap);
    int64_t now = pb_monotonic_ms();
    if (r->start && strcmp(r->cause, cause) == 0 && now - r->start < REPEAT_LOG_INTERVAL_MS) {
        r->suppressed++;
        return;
    }
    repeat_log_flush(r, now, 1);
    r->start = now;
    memcpy(r->cause, cause, sizeof(cause));
    pb_warn("kafka: %s: %s", r->what, cause);
}

void pb_kafka_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct pb_kafka *k = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        if (!k->brokers_down && !k->all_down_at) { /* confirmed by pb_kafka_tick */
            k->all_down_at = pb_monotonic_ms();
            snprintf(k->all_down_why, sizeof(k->all_down_why), "%s", reason);
        }
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        /* The consumer is finished (e.g. fenced by a second process with
         * the same group.instance.id): say so in /readyz, for good. */
        char why[160];
        rd_kafka_fatal_error(rk, why, sizeof(why));
        snprintf(k->fatal, sizeof(k->fatal), "Kafka consumer failed: %s", why);
        pb_error("kafka: fatal error, the consumer has stopped: %s", why);
        return;
    }
    if (pb_kafka_note_refusal(k, rk, err, NULL, reason))
        return; /* named in /readyz, logged once per interval */
    /* Transport errors repeat on every retry: debug, the edge says enough. */
    if (err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__RESOLVE)
        pb_debug("kafka error: %s: %s", rd_kafka_err2name(err), reason);
    else
        log_repeating(&k->error_log, "%s: %s", rd_kafka_err2name(err), reason);
}

/* Auto-commits and the final commit at close report here, on the loop. */
void pb_kafka_on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    (void)offsets;
    struct pb_kafka *k = opaque;
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return; /* nothing new was stored: not a commit */
    if (err) {
        k->m->commit_failures++;
        log_repeating(&k->commit_log,
                      "%s (each counted in pushbridge_kafka_commit_failures_total)",
                      rd_kafka_err2str(err));
        return;
    }
    k->m->commits++;
}

/* "topic[0,1,2] other[5]" for the log, cut at the buffer's end. */
static const char *describe_parts(const rd_kafka_topic_partition_list_t *parts, char *buf,
                                  size_t len)
{
    struct pb_buf b;
    pb_buf_init_static(&b, buf, len);
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        int same = i > 0 && strcmp(parts->elems[i - 1].topic, p->topic) == 0;
        if (same)
            pb_buf_printf(&b, ",%d", (int)p->partition);
        else
            pb_buf_printf(&b, "%s%s[%d", i ? "] " : "", p->topic, (int)p->partition);
    }
    pb_buf_puts(&b, parts->cnt ? "]" : "none");
    return b.truncated ? "(too many to list)" : buf;
}

/* The offsets of a lost assignment (the session timed out during an outage)
 * must not be committed: librdkafka 2.0.2 commits them on unassign anyway,
 * with the member id it just dropped and the old generation, and the
 * coordinator answers a static member with FENCED_INSTANCE_ID, which
 * librdkafka makes a fatal error that stops the consumer for good
 * (librdkafka PR #5585). Storing "no offset" leaves it nothing to commit;
 * the partitions resume from the last commit, so a few events may come
 * again, none is lost. */
static void forget_stored_offsets(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *none = rd_kafka_topic_partition_list_copy(parts);
    if (!none) {
        pb_warn("kafka: out of memory forgetting the offsets of a lost assignment");
        return;
    }
    for (int i = 0; i < none->cnt; i++)
        none->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(rk, none);
    if (err)
        pb_warn("kafka: cannot forget the offsets of a lost assignment: %s",
                rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(none);
}

void pb_kafka_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct pb_kafka *k = opaque;
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        pb_kafka_hold_assigning(k, parts); /* they wait for the worker too */
        if (cooperative) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
            if (e) {
                pb_error("kafka: incremental assign failed: %s", rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
                return;
            }
            k->assigned += parts->cnt;
        } else {
            rd_kafka_resp_err_t e = rd_kafka_assign(rk, parts);
            if (e) {
                pb_error("kafka: assign failed: %s", rd_kafka_err2str(e));
                k->assigned = 0;
                return;
            }
            k->assigned = parts->cnt;
            pb_kafka_catchup_remove(k, NULL);
        }
        pb_kafka_catchup_add(k, parts);
        pb_refusal_consume_ok(&k->refusals, ""); /* the group let us in */
        for (int i = 0; i < parts->cnt; i++) {
            pb_store_gap(pb_hub_store(k->hub), parts->elems[i].topic, parts->elems[i].partition);
            pb_refusal_consume_ok(&k->refusals, parts->elems[i].topic);
        }
        pb_kafka_set_brokers_down(k, 0, NULL);
        char list[512];
        pb_info("kafka: %d partition(s) assigned, %d in all: %s", parts->cnt, k->assigned,
                describe_parts(parts, list, sizeof(list)));
    } else {
        if (rd_kafka_assignment_lost(rk))
            forget_stored_offsets(rk, parts);
        if (cooperative) {
            rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
            if (e) { /* librdkafka drops the partitions from us either way */
                pb_warn("kafka: incremental unassign failed: %s", rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
            }
            k->assigned -= parts->cnt;
            pb_kafka_catchup_remove(k, parts);
        } else {
            rd_kafka_resp_err_t e = rd_kafka_assign(rk, NULL);
            if (e)
                pb_warn("kafka: unassign failed: %s", rd_kafka_err2str(e));
            k->assigned = 0;
            pb_kafka_catchup_remove(k, NULL);
        }
        if (k->assigned < 0)
            k->assigned = 0;
        pb_metrics_clear_lag(k->m);
        char list[512];
        pb_info("kafka: %d partition(s) revoked (%s): %s", parts->cnt, rd_kafka_err2name(err),
                describe_parts(parts, list, sizeof(list)));
    }
}

static int subscribe(struct pb_kafka *k, char *errstr, size_t errlen)
{
    rd_kafka_topic_partition_list_t *topics =
        rd_kafka_topic_partition_list_new((int)k->cfg->kafka_topics.n + 1);
    int has_push = 0;
    for (size_t i = 0; i < k->cfg->kafka_topics.n; i++) {
        rd_kafka_topic_partition_list_add(topics, k->cfg->kafka_topics.items[i],
                                          RD_KAFKA_PARTITION_UA);
        has_push |= pb_kafka_is_push_topic(k->cfg, k->cfg->kafka_topics.items[i]);
    }
    /* Cluster mode: the HTTP pushes of every node come back through here. */
    if (k->cfg->cluster_mode == PB_CLUSTER_KAFKA && !has_push)
        rd_kafka_topic_partition_list_add(topics, k->cfg->push_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(k->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        snprintf(errstr, errlen, "kafka.topics: cannot subscribe: %s", rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

struct pb_kafka *pb_kafka_new(const struct pb_config *cfg, struct pb_hub *hub, struct pb_metrics *m,
                              char *errstr, size_t errlen)
{
    char err[256];
    struct pb_kafka *k = calloc(1, sizeof(*k));
    if (!k) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    k->cfg = cfg;
    k->hub = hub;
    k->m = m;
    k->pipefd[0] = k->pipefd[1] = -1;
    k->input_failed_rule = -1;
    snprintf(k->why, sizeof(k->why), "no Kafka partitions assigned yet");
    k->commit_log.what = "offset commit failed";
    k->error_log.what = "librdkafka error";
    k->consume_log.what = "consume error";
    k->store_log.what = "offset store failed";

    if (cfg->dev && pb_kafka_start_embedded(k, errstr, errlen))
        goto fail;
    rd_kafka_conf_t *conf = pb_kafka_consumer_conf(k, errstr, errlen);
    if (!conf)
        goto fail;
    /* The consumer's own events; the log callback, shared by every client,
     * kafka_conf.c has set. */
    rd_kafka_conf_set_error_cb(conf, pb_kafka_on_error);
    rd_kafka_conf_set_rebalance_cb(conf, pb_kafka_on_rebalance);
    rd_kafka_conf_set_stats_cb(conf, pb_kafka_on_stats);
    rd_kafka_conf_set_offset_commit_cb(conf, pb_kafka_on_commit);
    k->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!k->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errlen, "kafka: cannot create the consumer: %s", err);
        goto fail;
    }
    if (pb_oidc_client_started(cfg, k->rk, errstr, errlen))
        goto fail;
    /* From here on the handle owns conf. Route the main queue (errors,
     * rebalances) into the consumer queue: one queue, one wake-up. */
    rd_kafka_resp_err_t qerr = rd_kafka_poll_set_consumer(k->rk);
    if (!qerr) /* the main queue, now the consumer's */
        qerr = rd_kafka_set_log_queue(k->rk, NULL);
    if (qerr || !(k->queue = rd_kafka_queue_get_consumer(k->rk))) {
        snprintf(errstr, errlen, "kafka: cannot route events to the consumer queue: %s",
                 qerr ? rd_kafka_err2str(qerr) : "no consumer queue");
        goto fail;
    }
    if (pipe2(k->pipefd, O_NONBLOCK | O_CLOEXEC)) {
        snprintf(errstr, errlen, "kafka: pipe: %s", strerror(errno));
        goto fail;
    }
    rd_kafka_queue_io_event_enable(k->queue, k->pipefd[1], "1", 1);
    if (cfg->kafka_dead_letter_topic && !(k->dlq = pb_kafka_dead_letter_producer(k, errstr, errlen)))
        goto fail;
    if (cfg->cluster_mode == PB_CLUSTER_KAFKA &&
        (pb_kafka_push_start(k, errstr, errlen) ||
         !(k->presence = pb_presence_new(k, errstr, errlen))))
        goto fail;
    if (cfg->kafka_undelivered_topic && pb_kafka_undelivered_start(k, errstr, errlen))
        goto fail;
    if (!pb_kafka_rebuild_start(k) && subscribe(k, errstr, errlen))
        goto fail;
    char inst[300] = "";
    size_t ilen = sizeof(inst);
    if (rd_kafka_conf_get(rd_kafka_conf(k->rk), "group.instance.id", inst, &ilen) !=
        RD_KAFKA_CONF_OK)
        inst[0] = '\0';
    pb_info("kafka: consuming %zu topic(s) from %s as group %s, member %s", cfg->kafka_topics.n,
            k->bootstrap ? k->bootstrap : cfg->kafka_brokers, k->group_id,
            inst[0] ? inst : "(dynamic)");
    return k;
fail:
    pb_kafka_free(k);
    return NULL;
}

struct pb_presence *pb_kafka_presence(const struct pb_kafka *k)
{
    return k ? k->presence : NULL;
}

int pb_kafka_wake_fd(const struct pb_kafka *k)
{
    return k->pipefd[0];
}

const char *pb_kafka_bootstrap(const struct pb_kafka *k)
{
    return k->bootstrap;
}

int pb_kafka_ready(const struct pb_kafka *k, const char **why)
{
    if (k->fatal[0]) {
        *why = k->fatal;
        return 0;
    }
    if ((*why = pb_refusal_why(&k->refusals)))
        return 0; /* says more than "unreachable": what was refused, and what to grant */
    if (k->brokers_down) {
        *why = "Kafka brokers are unreachable";
        return 0;
    }
    if (k->rebuild) {
        *why = k->why; /* kept up to date by kafka_rebuild.c */
        return 0;
    }
    if (k->assigned <= 0) {
        *why = k->why;
        return 0;
    }
    return pb_presence_ready(k->presence, why);
}

/* The offset of a delivered message could not be stored, so it is not
 * committed: most likely the partition was revoked (__STATE) between the
 * fetch and now. Whoever holds the partition next resumes from the last
 * commit and reads this message again; here pb_store_seen() skips what was
 * delivered (counted as a redelivery), elsewhere it is delivered once more:
 * at least once holds. Nothing to undo, but never silent. */
static void offset_not_stored(struct pb_kafka *k, rd_kafka_resp_err_t err)
{
    k->m->offset_store_failures++;
    /* The cause alone keys the log window (one line per interval, however
     * many partitions): not the partition or offset. */
    log_repeating(&k->store_log,
                  "%s (the messages will be read again; each counted in "
                  "pushbridge_kafka_offset_store_failures_total)",
                  rd_kafka_err2str(err));
}

static void handle(struct pb_kafka *k, rd_kafka_message_t *msg)
{
    if (msg->err) {
        const char *topic = msg->rkt ? rd_kafka_topic_name(msg->rkt) : NULL;
        if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF ||
            pb_kafka_note_refusal(k, k->rk, msg->err, topic, rd_kafka_message_errstr(msg)))
            return;
        log_repeating(&k->consume_log, "%s", rd_kafka_message_errstr(msg));
        return;
    }
    pb_kafka_set_brokers_down(k, 0, NULL);
    if (k->nresets)
        pb_kafka_account_reset(k, msg);
    const char *topic = rd_kafka_topic_name(msg->rkt);
    if (strcmp(k->m->src[k->last_src].name, topic) != 0)
        k->last_src = pb_metrics_source(k->m, topic);
    k->m->src[k->last_src].consumed++;
    pb_kafka_route(k, msg, k->last_src);
    /* Delivered (or deliberately dropped): this offset may be committed. */
    rd_kafka_resp_err_t err = rd_kafka_offset_store(msg->rkt, msg->partition, msg->offset);
    if (err)
        offset_not_stored(k, err);
}

/* The rebuild's turn of a drain: 1 when it has more to read now. */
static int drain_rebuild(struct pb_kafka *k, int budget)
{
    int more = pb_kafka_rebuild_drain(k, budget);
    if (!pb_kafka_rebuild_finish(k))
        return more;
    char err[256];
    if (subscribe(k, err, sizeof(err))) {
        pb_error("%s", err);
        snprintf(k->fatal, sizeof(k->fatal), "%.190s", err);
    }
    return 0;
}

/* librdkafka writes the wake-up pipe only when its queue turns non-empty:
 * a drain that leaves work behind wakes the loop itself, to come back once
 * the loop has served the sockets. Returns 1, "more may be waiting". */
static int rearm(struct pb_kafka *k)
{
    if (write(k->pipefd[1], "1", 1) < 0 && errno != EAGAIN)
        pb_warn("kafka: cannot re-arm the wake-up pipe: %s", strerror(errno));
    return 1;
}

int pb_kafka_drain(struct pb_kafka *k, int budget, size_t room)
{
    char sink[64];
    while (read(k->pipefd[0], sink, sizeof(sink)) > 0)
        ;
    pb_kafka_push_poll(k);
    pb_presence_poll(k->presence);
    if (k->undelivered)
        rd_kafka_poll(k->undelivered, 0);
    if (k->presence && pb_presence_drain(k->presence, budget))
        rearm(k);
    if (k->rebuild && drain_rebuild(k, budget))
        return rearm(k);
    if (!pb_kafka_hold_lets_poll(k))
        return 1; /* a short hold: the hold's end re-arms */
    pb_hub_turn_begin(k->hub);
    for (int i = 0; i < budget; i++) {
        /* No further message once the frames staged for one worker reach
         * the room left in the fullest inbox: a batch of broadcasts is 512
         * times every connection. Polling goes on while held (room 0):
         * the paused partitions give no message, and the group's
         * callbacks are served. */
        if (i > 0 && pb_hub_turn_most(k->hub) >= room) {
            k->m->kafka_backpressure++;
            break;
        }
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(k->rk, 0);
        if (!msg) {
            if (k->ncatching)
                pb_kafka_resolve_ends(k);
            return 0;
        }
        if (k->paused && !msg->err) /* its pause was lost: handled, and paused now */
            pb_kafka_hold_strayed(k, msg);
        handle(k, msg);
        rd_kafka_message_destroy(msg);
    }
    /* Budget or room spent, messages (maybe) left. While held, the hold's
     * end re-arms instead: no wake-up per turn of the loop meanwhile. */
    return k->held ? 1 : rearm(k);
}

void pb_kafka_hold(struct pb_kafka *k, int hold)
{
    if (!k || k->held == !!hold)
        return;
    pb_kafka_hold_set(k, !!hold);
    if (!hold)
        rearm(k); /* what waits in the queue is read without a new wake-up */
}

static void update_lag(struct pb_kafka *k)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(k->rk, &parts) || !parts)
        return;
    if (rd_kafka_position(k->rk, parts)) { /* cannot fail on a list it made: try next time */
        rd_kafka_topic_partition_list_destroy(parts);
        return;
    }
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &parts->elems[i];
        int64_t lo, hi, lag = -1;
        /* No message consumed yet leaves the position unknown; an empty
         * log is still 0 behind. */
        if (rd_kafka_get_watermark_offsets(k->rk, p->topic, p->partition, &lo, &hi) == 0 && hi >= 0)
            lag = p->offset >= 0 ? hi - p->offset : lo == hi ? 0 : -1;
        pb_metrics_set_lag(k->m, pb_metrics_source(k->m, p->topic), p->partition, lag);
    }
    rd_kafka_topic_partition_list_destroy(parts);
}

void pb_kafka_tick(struct pb_kafka *k, size_t room)
{
    /* Polling at least this often keeps us inside max.poll.interval.ms even
     * when no message wakes the loop, and while a worker holds the consumer
     * back once the hold has lasted (kafka_hold.c: its partitions paused). */
    pb_kafka_drain(k, 64, room);
    if (k->dlq)
        rd_kafka_poll(k->dlq, 0);
    pb_kafka_flush_malformed_log(k);
    int64_t now = pb_monotonic_ms();
    repeat_log_flush(&k->commit_log, now, 0);
    repeat_log_flush(&k->error_log, now, 0);
    repeat_log_flush(&k->consume_log, now, 0);
    repeat_log_flush(&k->store_log, now, 0);
    pb_refusal_tick(&k->refusals, now);
    if (k->all_down_at && now - k->all_down_at >= ALL_DOWN_GRACE_MS)
        pb_kafka_set_brokers_down(k, 1, k->all_down_why);
    pb_kafka_flush_lost_log(k, now);
    if (k->ncatching)
        pb_kafka_resolve_ends(k);
    if (now - k->last_lag_ms >= LAG_INTERVAL_MS) {
        k->last_lag_ms = now;
        update_lag(k);
    }
}

/* A static member does not send LeaveGroup when it closes (KIP-345), so a
 * bridge stopped for good would hold its partitions for session.timeout.ms
 * before another bridge of the group got them. Unsubscribing first (not yet
 * closing) makes librdkafka revoke, commit what was stored and leave; the
 * member id it drops on leaving says the LeaveGroup is on its way. A bridge
 * restarted under the same name would not need it, but cannot be told from
 * one that goes away. Bounded by half of what is left of the deadline. */
static void leave_group(struct pb_kafka *k, int64_t deadline_ms)
{
    if (!k->static_member || k->brokers_down)
        return;
    rd_kafka_resp_err_t err = rd_kafka_unsubscribe(k->rk);
    if (err) {
        pb_warn("kafka: cannot leave the group before closing: %s", rd_kafka_err2str(err));
        return;
    }
    int64_t now = pb_monotonic_ms();
    int64_t until = now + (deadline_ms - now) / 2;
    for (;;) {
        char *member = rd_kafka_memberid(k->rk);
        int left = !member || !*member;
        if (member)
            rd_kafka_mem_free(k->rk, member);
        if (left || pb_monotonic_ms() >= until)
            break;
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(k->rk, 20);
        if (msg) /* fetched before the revoke: not delivered, not stored */
            rd_kafka_message_destroy(msg);
    }
}

void pb_kafka_close(struct pb_kafka *k, int64_t deadline_ms)
{
    if (!k || !k->rk)
        return;
    pb_presence_bye(k->presence, deadline_ms);
    leave_group(k, deadline_ms);
    /* Asynchronous close, so that a broker that is gone cannot hold the
     * process past shutdown_timeout_ms: leave the group, commit what was
     * stored, serving the rebalance callback meanwhile. */
    rd_kafka_queue_t *q = rd_kafka_queue_new(k->rk);
    rd_kafka_error_t *e = rd_kafka_consumer_close_queue(k->rk, q);
    if (e) {
        pb_warn("kafka: closing the consumer: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    } else {
        while (!rd_kafka_consumer_closed(k->rk) && pb_monotonic_ms() < deadline_ms)
            rd_kafka_queue_poll_callback(q, 100);
    }
    rd_kafka_queue_destroy(q);
    k->closed = rd_kafka_consumer_closed(k->rk);
    if (k->closed)
        pb_info("kafka: consumer closed, offsets committed");
    else
        pb_warn("kafka: consumer close did not finish within shutdown_timeout_ms; events "
                "after the last commit will be delivered again after restart");
    /* Dead letters already accepted get what is left of the time. */
    int64_t left = deadline_ms - pb_monotonic_ms();
    if (k->dlq && rd_kafka_flush(k->dlq, left > 0 ? (int)left : 0) != RD_KAFKA_RESP_ERR_NO_ERROR)
        pb_warn("kafka: %d dead letter(s) not produced before exit", rd_kafka_outq_len(k->dlq));
    left = deadline_ms - pb_monotonic_ms();
    if (k->undelivered &&
        rd_kafka_flush(k->undelivered, left > 0 ? (int)left : 0) != RD_KAFKA_RESP_ERR_NO_ERROR)
        pb_warn("kafka: %d event(s) not produced to kafka.undelivered_topic before exit",
                rd_kafka_outq_len(k->undelivered));
}

int pb_kafka_closed(const struct pb_kafka *k)
{
    return !k || k->closed;
}

void pb_kafka_free(struct pb_kafka *k)
{
    if (!k)
        return;
    pb_kafka_rebuild_free(k);
    pb_presence_free(k->presence);
    if (k->undelivered)
        rd_kafka_destroy(k->undelivered);
    if (k->push) {
        k->push_done = NULL; /* the requests waiting for it are gone */
        rd_kafka_destroy(k->push);
    }
    if (k->queue)
        rd_kafka_queue_destroy(k->queue);
    /* A consumer whose close did not finish must not be closed again
     * (blocking) by rd_kafka_destroy. */
    if (k->rk)
        rd_kafka_destroy_flags(k->rk, k->closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    if (k->dlq)
        rd_kafka_destroy(k->dlq);
    if (k->mock)
        rd_kafka_mock_cluster_destroy(k->mock);
    if (k->mock_rk)
        rd_kafka_destroy(k->mock_rk);
    for (int i = 0; i < 2; i++)
        if (k->pipefd[i] >= 0)
            close(k->pipefd[i]);
    for (size_t i = 0; i < k->nparts; i++)
        free(k->parts[i].topic);
    free(k->parts);
    if (k->paused)
        rd_kafka_topic_partition_list_destroy(k->paused);
    free(k->bootstrap);
    free(k);
}

const char *pb_kafka_warning(const struct pb_kafka *k)
{
    if (!k)
        return NULL;
    int assigned, total;
    const char *w = pb_refusal_write_warning(&k->refusals);
    if (!w)
        w = pb_kafka_undelivered_warning(k);
    return w ? w : pb_kafka_share(k, &assigned, &total);
}

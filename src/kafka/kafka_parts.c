/* The partitions this process has been assigned: the backlog a first
 * assignment finds, caught up under kafka.max_event_age_ms, and the offsets
 * retention deleted before they were read (pushbridge_events_lost_total).
 * Part of the Kafka module (kafka_internal.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pushbridge/core/log.h"
#include "kafka_internal.h"

static struct part *part_find(struct pb_kafka *k, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < k->nparts; i++)
        if (k->parts[i].partition == partition && strcmp(k->parts[i].topic, topic) == 0)
            return &k->parts[i];
    return NULL;
}

/* A partition assigned for the first time starts catching up; one seen
 * before does not. On OOM a partition simply gets no age filter. */
void pb_kafka_catchup_add(struct pb_kafka *k, const rd_kafka_topic_partition_list_t *parts)
{
    struct part *p = realloc(k->parts, (k->nparts + (size_t)parts->cnt) * sizeof(*p));
    if (!p)
        return;
    k->parts = p;
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &parts->elems[i];
        if (part_find(k, tp->topic, tp->partition))
            continue;
        char *topic = strdup(tp->topic);
        if (!topic)
            continue;
        k->parts[k->nparts++] = (struct part){topic, tp->partition, 1, -1, -1, pb_monotonic_ms()};
        k->ncatching++;
    }
}

static void catchup_end(struct pb_kafka *k, struct part *p)
{
    if (p && p->catching_up) {
        p->catching_up = 0;
        k->ncatching--;
    }
}

static void part_revoked(struct pb_kafka *k, struct part *p)
{
    if (!p)
        return;
    catchup_end(k, p);
    if (p->reset_from >= 0) {
        p->reset_from = -1; /* its next owner counts from the committed offset */
        k->nresets--;
    }
}

/* Revoked partitions stop catching up (parts NULL: all of them). */
void pb_kafka_catchup_remove(struct pb_kafka *k, const rd_kafka_topic_partition_list_t *parts)
{
    if (!parts) {
        for (size_t i = 0; i < k->nparts; i++)
            part_revoked(k, &k->parts[i]);
        return;
    }
    for (int j = 0; j < parts->cnt; j++)
        part_revoked(k, part_find(k, parts->elems[j].topic, parts->elems[j].partition));
}

/* The backlog end of a partition catching up: the high watermark of the
 * first fetch response after assignment. rd_kafka_query_watermark_offsets
 * would block the loop; the consumer's cached watermarks
 * (rd_kafka_get_watermark_offsets) cost a lock and are known from that first
 * fetch response on, which comes within fetch.wait.max.ms of assignment even
 * on a quiet partition. So this is called after every drain and tick while
 * some end is unknown, and before the first message of a partition is
 * judged: a backlog's first message arrives with the fetch response that
 * taught its high watermark. When that first fetch comes late (an outage
 * beginning right after the assignment, or a partition assigned during a
 * lasting hold, kafka_hold.c, paused until the hold's end), the end it
 * teaches takes in what was produced meanwhile: pb_kafka_stale_backlog
 * tells those messages by their age against the assignment's time. */
static void resolve_end(struct pb_kafka *k, struct part *p)
{
    int64_t lo, hi;
    if (p->end < 0 &&
        rd_kafka_get_watermark_offsets(k->rk, p->topic, p->partition, &lo, &hi) ==
            RD_KAFKA_RESP_ERR_NO_ERROR &&
        hi >= 0)
        p->end = hi;
}

void pb_kafka_resolve_ends(struct pb_kafka *k)
{
    for (size_t i = 0; k->ncatching && i < k->nparts; i++)
        if (k->parts[i].catching_up)
            resolve_end(k, &k->parts[i]);
}

/* 1 when the message is stale backlog of a partition still catching up.
 * Catching up ends at the backlog's end or at its first fresh message. */
int pb_kafka_stale_backlog(struct pb_kafka *k, const rd_kafka_message_t *msg, int64_t age_ms)
{
    struct part *p = part_find(k, rd_kafka_topic_name(msg->rkt), msg->partition);
    if (!p || !p->catching_up)
        return 0;
    resolve_end(k, p);
    /* Produced after the assignment: never stale. Its offset says so from
     * the end on; its age says so when the first fetch came long after the
     * assignment, which makes the end it taught later than that. */
    if ((p->end >= 0 && msg->offset >= p->end) || age_ms <= pb_monotonic_ms() - p->assigned_ms) {
        catchup_end(k, p);
        return 0;
    }
    if (age_ms <= k->cfg->kafka_max_event_age_ms) {
        catchup_end(k, p);
        return 0;
    }
    if (p->end >= 0 && msg->offset + 1 >= p->end)
        catchup_end(k, p); /* the backlog's last message */
    return 1;
}

/* librdkafka's line for an offset reset (2.0.2, rdkafka_offset.c):
 * "[thrd:main]: TOPIC [P]: offset reset (at offset N, broker B) to ...",
 * the thread prefix added by librdkafka's logger. N is where the
 * consumer stood; the first message after it tells where it resumed, and
 * the difference is what the log no longer held. A reset from no offset
 * ("at offset INVALID": a new group) loses nothing and is not parsed. */
void pb_kafka_note_offset_reset(struct pb_kafka *k, const char *line)
{
    char topic[256];
    int partition;
    long long at;
    if (strncmp(line, "[thrd:", 6) == 0) {
        line = strstr(line, "]: ");
        if (!line)
            return;
        line += 3;
    }
    if (sscanf(line, "%255s [%d]: offset reset (at offset %lld", topic, &partition, &at) != 3 ||
        at < 0)
        return;
    struct part *p = part_find(k, topic, partition);
    if (!p)
        return;
    /* A second reset before any message (librdkafka retrying from a log
     * start it had cached) does not move where the consumer stood. */
    if (p->reset_from < 0) {
        k->nresets++;
        p->reset_from = at;
    }
}

void pb_kafka_flush_lost_log(struct pb_kafka *k, int64_t now)
{
    if (!k->lost_window_start || now - k->lost_window_start < REPEAT_LOG_INTERVAL_MS)
        return;
    if (k->lost_suppressed)
        pb_warn("kafka: %llu more offset(s) were deleted before they were read in the last "
                "%d s (see pushbridge_events_lost_total)",
                (unsigned long long)k->lost_suppressed, REPEAT_LOG_INTERVAL_MS / 1000);
    k->lost_suppressed = 0;
    k->lost_window_start = 0;
}

/* The first message after an offset reset: count what was skipped. */
void pb_kafka_account_reset(struct pb_kafka *k, const rd_kafka_message_t *msg)
{
    struct part *p = part_find(k, rd_kafka_topic_name(msg->rkt), msg->partition);
    if (!p || p->reset_from < 0)
        return;
    int64_t from = p->reset_from;
    p->reset_from = -1;
    k->nresets--;
    if (msg->offset <= from)
        return; /* reset backwards (the log was truncated below us): a replay, not a loss */
    uint64_t lost = (uint64_t)(msg->offset - from);
    k->m->lost[PB_LOST_OUT_OF_RANGE] += lost;
    pb_store_gap(pb_hub_store(k->hub), p->topic, p->partition);
    int64_t now = pb_monotonic_ms();
    pb_kafka_flush_lost_log(k, now);
    if (k->lost_window_start) {
        k->lost_suppressed += lost;
        return;
    }
    k->lost_window_start = now;
    pb_warn("kafka: %llu offset(s) of %s [%d] were deleted (retention) before the bridge "
            "read them: it stood at %lld, the log now starts at %lld; counted in "
            "pushbridge_events_lost_total{reason=\"out_of_range\"}",
            (unsigned long long)lost, p->topic, (int)p->partition, (long long)from,
            (long long)msg->offset);
}

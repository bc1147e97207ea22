/* The routing of one Kafka message, shared by the group consumer (kafka.c)
 * and the rebuild at start (kafka_rebuild.c), so neither calls the other:
 * redelivery and staleness checks, the key looked up before the value is
 * parsed, the envelope parse, the broadcast rule, then the hub (deliver, or
 * keep in the store only). Loop thread only. */
#include <stdio.h>
#include <string.h>

#include "pushbridge/event/envelope.h"
#include "pushbridge/core/log.h"
#include "pushbridge/event/input.h"
#include "kafka_internal.h"

/* kafka.broadcast_topics: who may address every connection or a group. Any
 * producer on an event topic could otherwise reach every user; the list is
 * short and only broadcasts look at it. */
static int broadcast_check(const struct pb_config *cfg, const char *topic, struct pb_event *ev)
{
    if (ev->target_kind != PB_TARGET_ALL && ev->target_kind != PB_TARGET_GROUP)
        return PB_DROP_NONE;
    if (pb_kafka_is_push_topic(cfg, topic))
        return PB_DROP_NONE; /* this cluster's own HTTP broadcasts */
    for (size_t i = 0; i < cfg->kafka_broadcast_topics.n; i++) {
        const char *t = cfg->kafka_broadcast_topics.items[i];
        if (strcmp(t, "*") == 0 || strcmp(t, topic) == 0)
            return PB_DROP_NONE;
    }
    snprintf(ev->detail, sizeof(ev->detail),
             "the key addresses %s, and topic %.64s is not in kafka.broadcast_topics",
             ev->target_kind == PB_TARGET_ALL ? "every connection (*)" : "a group", topic);
    return PB_DROP_BROADCAST_NOT_ALLOWED;
}

/* Parses msg into ev, its position and time set. PB_DROP_NONE, or the
 * reason, with ev->detail saying why. */
static int parse_message(struct pb_kafka *k, const rd_kafka_message_t *msg, int64_t ts,
                         struct pb_event *ev)
{
    pb_event_init(ev);
    ev->ts_ms = ts;
    ev->topic = rd_kafka_topic_name(msg->rkt);
    ev->partition = msg->partition;
    ev->offset = msg->offset;
    int reason;
    const struct pb_input_rule *rule;
    k->input_failed_rule = -1;
    if (!msg->payload) {
        reason = PB_DROP_NOT_JSON;
        snprintf(ev->detail, sizeof(ev->detail), "the message has no value");
    } else if ((int64_t)msg->len > k->cfg->kafka_max_event_bytes) {
        reason = PB_DROP_OVERSIZED;
        snprintf(ev->detail, sizeof(ev->detail), "%zu bytes is over kafka.max_event_bytes (%lld)",
                 msg->len, (long long)k->cfg->kafka_max_event_bytes);
    } else if ((rule = pb_kafka_input_rule(k, ev->topic))) {
        /* SPEC 12: a topic a kafka.inputs rule reads. A literal target is
         * the operator's own choice, not a producer's: no broadcast check. */
        reason = pb_kafka_input_read(k, rule, msg, ev);
        if (reason || rule->target.kind == PB_SRC_LITERAL)
            return reason;
        return broadcast_check(k->cfg, ev->topic, ev);
    } else {
        reason = pb_envelope_parse(msg->payload, msg->len, 0, ev);
    }

    rd_kafka_headers_t *hdrs = NULL;
    const void *hval;
    size_t hlen;
    if (!reason && rd_kafka_message_headers(msg, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(hdrs, "event", &hval, &hlen) == RD_KAFKA_RESP_ERR_NO_ERROR && hval)
        reason = pb_event_set_name(ev, hval, hlen);
    if (!reason)
        reason = pb_event_set_target(ev, msg->key, msg->key_len);
    if (!reason)
        reason = broadcast_check(k->cfg, ev->topic, ev);
    return reason;
}

static int64_t message_time(const rd_kafka_message_t *msg, int64_t now)
{
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(msg, &tstype);
    return ts > 0 ? ts : now;
}

/* SPEC 8: a node does as little as it can for events of users it holds no
 * connection for: it looks the key up before it parses the value. Unless
 * the value is needed anyway: the history keeps every user's events (a
 * client may resume here), the task state every task update (found by its
 * member name, which producers do not escape). Broadcasts are always
 * parsed. */
static int for_nobody_here(struct pb_kafka *k, const rd_kafka_message_t *msg)
{
    const char *key = msg->key;
    size_t n = msg->key_len;
    if (!key || !n || !msg->payload || k->cfg->history_max_events > 0)
        return 0;
    if ((n == 1 && key[0] == '*') || (n >= 6 && memcmp(key, "group:", 6) == 0))
        return 0;
    if (k->cfg->state_max_tasks_per_user > 0 && memmem(msg->payload, msg->len, "\"task\"", 6))
        return 0;
    /* A kafka.inputs rule may take the target, or a task, from the value. */
    const struct pb_input_rule *rule = pb_kafka_input_rule(k, rd_kafka_topic_name(msg->rkt));
    if (rule && !pb_input_key_decides(rule))
        return 0;
    return pb_hub_user_connections(k->hub, key, n) == 0;
}

/* Parses, routes and delivers one message. Never fails: bad input is
 * counted and logged, and the offset moves on either way. */
void pb_kafka_route(struct pb_kafka *k, const rd_kafka_message_t *msg, uint32_t src)
{
    int64_t now = pb_now_ms();
    int64_t ts = message_time(msg, now);
    int stale = k->ncatching && pb_kafka_stale_backlog(k, msg, now - ts);
    /* A redelivery (the group handed the partition back from an older
     * commit, or the rebuild at start read it) reached every connection,
     * or the history, the first time. */
    if (pb_store_seen(pb_hub_store(k->hub), rd_kafka_topic_name(msg->rkt), msg->partition,
                      msg->offset) &&
        !stale) {
        k->m->redeliveries++;
        return;
    }
    if (stale) {
        pb_metrics_drop(k->m, src, PB_DROP_STALE);
        return;
    }
    /* An event for a user connected nowhere is parsed (checked) only by the
     * node that writes it to kafka.undelivered_topic. */
    if (for_nobody_here(k, msg) &&
        !pb_kafka_undelivered_wanted(k, msg->key, msg->key_len, rd_kafka_topic_name(msg->rkt),
                                     msg->partition)) {
        k->m->skipped_no_connection++;
        return;
    }
    struct pb_event ev;
    int reason = parse_message(k, msg, ts, &ev);
    if (reason) {
        pb_kafka_malformed(k, msg, src, reason, ev.detail);
    } else {
        pb_hub_deliver(k->hub, &ev, src);
        if (ev.target_kind == PB_TARGET_USER &&
            pb_kafka_undelivered_wanted(k, ev.target, ev.target_len, ev.topic, ev.partition))
            pb_kafka_undelivered_message(k, msg, ev.target, ev.target_len);
    }
    pb_event_clear(&ev);
}

void pb_kafka_keep(struct pb_kafka *k, const rd_kafka_message_t *msg)
{
    /* A malformed message is counted and dead-lettered when the group
     * consumer reads it: here it is only skipped. */
    struct pb_event ev;
    if (!parse_message(k, msg, message_time(msg, pb_now_ms()), &ev))
        pb_hub_keep(k->hub, &ev);
    pb_event_clear(&ev);
}

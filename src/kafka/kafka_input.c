/* kafka.inputs on the consumer's side: finds the rule of a message's topic
 * (once per run of one topic, not per message), hands the message to the
 * reader (event/input.c) with its headers behind a callback, and keeps what
 * failed for the dead letter's headers. */
#include <string.h>

#include "pushbridge/event/input.h"
#include "kafka_internal.h"

const struct pb_input_rule *pb_kafka_input_rule(struct pb_kafka *k, const char *topic)
{
    const struct pb_inputs *in = &k->cfg->kafka_inputs;
    if (!in->n)
        return NULL;
    if (strcmp(k->input_topic, topic) == 0)
        return k->input_rule;
    size_t index = 0;
    const struct pb_input_rule *rule = NULL;
    if (!pb_kafka_is_push_topic(k->cfg, topic))
        rule = pb_inputs_match(in, topic, &index);
    /* Longer names (Kafka allows 249) are looked up every time. */
    if (strlen(topic) < sizeof(k->input_topic)) {
        memcpy(k->input_topic, topic, strlen(topic) + 1);
        k->input_rule = rule;
        k->input_index = index;
    }
    struct pb_source_counters *s = &k->m->src[pb_metrics_source(k->m, topic)];
    s->rule = rule ? (int32_t)index + 1 : 0;
    s->format = rule ? pb_input_format_name(rule->format) : NULL;
    return rule;
}

static int message_header(void *ud, const char *name, const char **val, size_t *len)
{
    const rd_kafka_message_t *msg = ud;
    rd_kafka_headers_t *hdrs = NULL;
    const void *v = NULL;
    if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, name, &v, len) != RD_KAFKA_RESP_ERR_NO_ERROR || !v)
        return 0;
    *val = v;
    return 1;
}

int pb_kafka_input_read(struct pb_kafka *k, const struct pb_input_rule *rule,
                        const rd_kafka_message_t *msg, struct pb_event *ev)
{
    struct pb_input_msg in = {
        .topic = ev->topic,
        .key = msg->key,
        .key_len = msg->key ? msg->key_len : 0,
        .value = msg->payload,
        .len = msg->len,
        .header = message_header,
        .ud = (void *)msg,
    };
    int reason = pb_input_read(rule, &in, ev, k->input_failed, sizeof(k->input_failed));
    if (reason)
        k->input_failed_rule = (int)(rule - k->cfg->kafka_inputs.items);
    return reason;
}

/* The rule-driven reader (SPEC 12): one function that reads a Kafka message
 * under its kafka.inputs rule into an event (target, name, id, task, final,
 * data), whatever the format: the envelope, plain JSON, or a CloudEvent in
 * binary or structured mode, behind Confluent's wire-format prefix or not.
 * Knows nothing of librdkafka: headers come through a callback. */
#ifndef PB_INPUT_H
#define PB_INPUT_H

#include <stddef.h>

#include "pushbridge/core/config_inputs.h"
#include "pushbridge/event/envelope.h"

/* One message as the reader sees it; every pointer outlives the event. */
struct pb_input_msg {
    const char *topic;
    const char *key; /* NULL = no key */
    size_t key_len;
    const char *value;
    size_t len;
    /* The last header called name: 1 with its bytes, 0 when there is none. */
    int (*header)(void *ud, const char *name, const char **val, size_t *len);
    void *ud;
};

/* Reads msg under rule into ev (initialised by the caller, who sets its
 * topic, partition, offset and time). Returns PB_DROP_NONE, or the reason
 * with ev->detail saying why and `failed` naming what failed ("target=
 * field:/customer/id", "ce:type", "value"); "" when the envelope itself
 * was malformed. The target is set; the caller checks broadcasts. */
int pb_input_read(const struct pb_input_rule *rule, const struct pb_input_msg *msg,
                  struct pb_event *ev, char *failed, size_t failedlen);

/* 1 when the rule's events can be skipped by their key alone, before the
 * value is parsed (SPEC 8): the target is the key and nothing the value
 * holds can make the event a task update. */
int pb_input_key_decides(const struct pb_input_rule *rule);

#endif

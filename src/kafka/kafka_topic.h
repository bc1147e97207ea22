/* Making sure a topic the bridge writes exists (push.topic, the presence
 * topic): created if missing, a refusal by ACLs or a broker that does not
 * answer a warning, any other failure a start-up error. Private to
 * src/kafka (kafka_topic.c). */
#ifndef PB_KAFKA_TOPIC_H
#define PB_KAFKA_TOPIC_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

struct pb_kafka_topic_spec {
    const char *who;         /* the log lines' prefix: "kafka", "presence" */
    const char *setting;     /* the setting naming it: "push.topic" */
    const char *topic;
    int partitions;          /* -1: the broker's default */
    const char *const *conf; /* name, value pairs ending with NULL; NULL: none */
    const char *unanswered;  /* added to the warning when the broker does not answer */
};

/* Creates spec->topic through rk (any client: the request goes to a
 * broker) unless it exists, waiting up to 5 s for the answer. 0 when it
 * exists, was created, or cannot be made sure of now (ACLs that refuse the
 * create: most likely it exists; no answer: the bridge is not ready
 * without the broker anyway); both are logged as warnings. -1 with errstr
 * when the broker refused to create it for another reason. */
int pb_kafka_ensure_topic(rd_kafka_t *rk, const struct pb_kafka_topic_spec *spec, char *errstr,
                          size_t errlen);

#endif

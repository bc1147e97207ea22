/* Refusals by a secure Kafka cluster (SPEC 1): bad credentials, a TLS
 * certificate either side does not trust, no ACL for the group, an event
 * topic or a topic the bridge writes. Turns librdkafka's errors into one
 * sentence naming the refusal and its object, for /readyz and the log (once
 * per interval), and counts refused writes. Loop thread only. */
#ifndef PB_KAFKA_REFUSAL_H
#define PB_KAFKA_REFUSAL_H

#include <stddef.h>
#include <stdint.h>

/* What a refusal was for. */
enum pb_refusal_kind {
    PB_REFUSAL_NONE = 0,
    PB_REFUSAL_AUTH,        /* SASL credentials refused */
    PB_REFUSAL_TLS,         /* the broker's certificate is not trusted, or the handshake failed */
    PB_REFUSAL_CLIENT_CERT, /* the broker refused our client certificate */
    PB_REFUSAL_GROUP,       /* no ACL for the consumer group */
    PB_REFUSAL_TOPIC,       /* no ACL to read an event topic */
    PB_REFUSAL_CLUSTER      /* no ACL on the cluster (e.g. IdempotentWrite) */
};

/* The topics the bridge writes to; a refusal there leaves delivery going. */
enum pb_write_kind { PB_WRITE_DEAD_LETTER = 0, PB_WRITE_PUSH, PB_WRITE__COUNT };

#define PB_REFUSAL_TEXT 640

/* A refused write kind: its sentence ("" when the last write went through). */
struct pb_refused_write {
    char text[PB_REFUSAL_TEXT];
    int64_t logged_at;
    uint64_t repeats;
};

struct pb_kafka_refusals {
    /* What stopped consumption; kind NONE when nothing did. */
    enum pb_refusal_kind kind;
    char object[256]; /* the group or topic, "" for the connection itself */
    char text[PB_REFUSAL_TEXT];
    int64_t logged_at;   /* monotonic ms of the last log line; 0 = not logged */
    uint64_t repeats;    /* refusals since that line */
    struct pb_refused_write write[PB_WRITE__COUNT];
};

/* The kind of refusal an error code and librdkafka's text say, or
 * PB_REFUSAL_NONE when it is not one (a broker away, a timeout). */
enum pb_refusal_kind pb_refusal_classify(int err, const char *reason);

/* A refusal that stops consumption: object is the group or topic (NULL for
 * the connection), user the SASL user (NULL: not SASL). Logged at once when
 * new, else once per interval with the count. */
void pb_refusal_consume(struct pb_kafka_refusals *r, enum pb_refusal_kind kind,
                        const char *object, const char *user, const char *reason);
/* Consumption works again: for the connection (kind AUTH/TLS/CLIENT_CERT/
 * CLUSTER) when a broker answers, for the group on an assignment, for a
 * topic when it is assigned (topic NULL: any refusal clears). */
void pb_refusal_consume_ok(struct pb_kafka_refusals *r, const char *topic);
/* A broker answered: refusals of the connection itself (login, TLS) are over. */
void pb_refusal_connection_ok(struct pb_kafka_refusals *r);
/* NULL, or the sentence for /readyz. */
const char *pb_refusal_why(const struct pb_kafka_refusals *r);

/* A write to topic (kind says which) was refused: the sentence kept for the
 * /readyz warning and push answers, logged once per interval. */
void pb_refusal_write(struct pb_kafka_refusals *r, enum pb_write_kind which, const char *topic,
                      enum pb_refusal_kind kind, const char *reason);
/* A write went through: the warning goes. */
void pb_refusal_write_ok(struct pb_kafka_refusals *r, enum pb_write_kind which);
/* NULL, or the first write refusal's sentence. */
const char *pb_refusal_write_warning(const struct pb_kafka_refusals *r);
/* NULL, or the refusal of writes of kind which. */
const char *pb_refusal_write_refused(const struct pb_kafka_refusals *r, enum pb_write_kind which);

/* Once a second: the interval's summary lines of refusals that persist. */
void pb_refusal_tick(struct pb_kafka_refusals *r, int64_t now);

#endif

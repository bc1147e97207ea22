/* Why an event was not delivered: one list for the envelope, the Kafka
 * routing and the metrics, kept in the core so that the metrics (which count
 * drops by reason) need nothing from the stages above them. */
#ifndef PB_DROP_H
#define PB_DROP_H

/* Names are the `reason` label in metrics. */
enum pb_drop_reason {
    PB_DROP_NONE = 0,
    PB_DROP_NOT_JSON,
    PB_DROP_NOT_OBJECT,
    PB_DROP_NO_TARGET,
    PB_DROP_OVERSIZED,
    PB_DROP_KEY_MISMATCH,
    PB_DROP_BAD_FIELD,
    PB_DROP_STALE,
    PB_DROP_OUTDATED, /* older (Kafka timestamp) than the kept state of its task */
    PB_DROP_BROADCAST_NOT_ALLOWED, /* * or group: key on a topic not in kafka.broadcast_topics */
    PB_DROP_UNSUPPORTED_ENCODING,  /* Avro/Protobuf behind Confluent's prefix, a binary CloudEvent */
    PB_DROP_NO_SOURCE, /* a kafka.inputs source found nothing (header, pointer, ce: attribute) */
    PB_DROP__COUNT
};
const char *pb_drop_reason_name(int reason);

#endif

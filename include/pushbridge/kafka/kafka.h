/* The Kafka source: a consumer group on kafka.topics whose queue wakes the
 * lws loop through a pipe (rd_kafka_queue_io_event_enable), drained there in
 * bounded batches: Kafka -> envelope -> hub. Under --dev it also owns the
 * embedded broker (librdkafka's mock cluster). Loop thread only. */
#ifndef PB_KAFKA_H
#define PB_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include "pushbridge/core/config.h"
#include "pushbridge/hub/hub.h"
#include "pushbridge/core/metrics.h"

struct pb_kafka;

/* Checks kafka.properties against librdkafka without connecting; errstr
 * names the first property it refuses. */
int pb_kafka_check_properties(const struct pb_config *cfg, char *errstr, size_t errlen);

/* Creates the consumer (and, under --dev, the embedded cluster) and
 * subscribes. NULL with errstr naming the cause. */
struct pb_kafka *pb_kafka_new(const struct pb_config *cfg, struct pb_hub *hub,
                              struct pb_metrics *m, char *errstr, size_t errlen);

/* Read end of the wake-up pipe, for the loop to watch. */
int pb_kafka_wake_fd(const struct pb_kafka *k);

/* Handles at most `budget` messages and callbacks, and no further message
 * once the frames they staged for one worker reach `room` (SIZE_MAX: no
 * limit; see WORKER_BACKLOG_MAX in server.c). One message at least, when
 * one is waiting (none while held: see pb_kafka_hold). Returns 1 when more
 * may be waiting (the pipe is re-armed so the loop comes back, or, while
 * held, the hold's end re-arms it), else 0. */
int pb_kafka_drain(struct pb_kafka *k, int budget, size_t room);

/* Holds the consumer back for a worker that is behind (hold 1), or lets it
 * go (0). A short hold leaves it unpolled; once a hold lasts (a second,
 * kafka_hold.c) the assigned partitions, and any assigned meanwhile, are
 * paused and polling goes on, so that the group's rebalances are served
 * and the consumer stays inside max.poll.interval.ms however long the
 * hold. They resume from the last message handled: nothing is lost or
 * read twice. */
void pb_kafka_hold(struct pb_kafka *k, int hold);

/* Once a second: a drain (within room as above), lag metrics, the
 * rate-limited logs. */
void pb_kafka_tick(struct pb_kafka *k, size_t room);

/* 1 when partitions are assigned and brokers reachable; else 0 and *why. */
int pb_kafka_ready(const struct pb_kafka *k, const char **why);

/* "HOST:PORT" of the embedded cluster under --dev, else NULL. */
const char *pb_kafka_bootstrap(const struct pb_kafka *k);

/* Cluster mode (cluster.mode kafka): an HTTP push goes to push.topic, and
 * every node (this one too) delivers it from there. done is called on the
 * loop once Kafka has the message (error NULL, its partition and offset) or
 * gave up on it (within message.timeout.ms). */
typedef void (*pb_kafka_push_done)(void *opaque, int32_t partition, int64_t offset,
                                   const char *error);
void pb_kafka_set_push_done(struct pb_kafka *k, pb_kafka_push_done done);
/* Produces value under key without blocking. -1 with errstr when it is
 * refused at once (the bounded queue is full, no producer); done is then
 * not called. */
int pb_kafka_push(struct pb_kafka *k, const char *key, size_t keylen, const char *value,
                  size_t len, void *opaque, char *errstr, size_t errlen);

/* Cluster mode's presence (pushbridge/kafka/presence.h); NULL standalone. */
struct pb_presence *pb_kafka_presence(const struct pb_kafka *k);

/* Standalone mode's HTTP pushes: an event for user, who has no connection
 * here, goes to kafka.undelivered_topic (when set) as value, keyed by user,
 * with the header pushbridge-reason: offline. */
void pb_kafka_undelivered_http(struct pb_kafka *k, const char *user, size_t ulen,
                               const char *value, size_t len);

/* A sentence for /readyz while writes to kafka.undelivered_topic are
 * refused (delivery goes on), else NULL. */
const char *pb_kafka_undelivered_warning(const struct pb_kafka *k);

/* The group's share of the partitions: a warning when another consumer
 * shares this bridge's group (NULL when it holds them all); total -1 when
 * not known yet. */
const char *pb_kafka_share(const struct pb_kafka *k, int *assigned, int *total);

/* What /readyz says beside a 200: a write Kafka refuses (dead-letter or
 * push topic, naming it), else the group's share warning; NULL when all is
 * well. */
const char *pb_kafka_warning(const struct pb_kafka *k);

/* Leaves the group, committing the offsets stored so far; gives up at
 * deadline_ms (monotonic), so a lost broker cannot stall shutdown. */
void pb_kafka_close(struct pb_kafka *k, int64_t deadline_ms);
void pb_kafka_free(struct pb_kafka *k);

/* 1 once pb_kafka_close finished. When it did not (the broker is gone),
 * librdkafka cannot be destroyed without blocking until the broker is back. */
int pb_kafka_closed(const struct pb_kafka *k);

#endif

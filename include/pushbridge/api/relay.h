/* Cluster mode's road for an HTTP push (SPEC 3, 8): each item of a push,
 * broadcast or send goes to push.topic (kafka_push.c pb_kafka_push), and the
 * job reports to its owner once Kafka has answered for every item: 202 with
 * the partition and offset, or 503 when Kafka would not take it. Every node
 * delivers the pushes from push.topic. The job holds results only: the HTTP
 * API (http.c) renders them into its answer. Loop thread only. */
#ifndef PB_RELAY_H
#define PB_RELAY_H

#include <stdint.h>

#include "pushbridge/event/envelope.h"
#include "pushbridge/kafka/kafka.h"

struct pb_relay_job;

/* One item's result. */
struct pb_relay_result {
    int status; /* 0 waiting for Kafka, 202 taken, or the error status */
    int32_t partition;
    int64_t offset;
    const char *code; /* the error's code (a static string) */
    char msg[200];    /* the error's message */
};

/* Called once, when every item has its result (at once from
 * pb_relay_submitted when none waits for Kafka), unless the owner went away
 * (pb_relay_detach). The job is freed when it returns. */
typedef void (*pb_relay_answer)(void *owner, const struct pb_relay_job *job);

/* A job for n items (batch: the owner answers with a list). NULL on OOM. */
struct pb_relay_job *pb_relay_begin(long n, int batch, pb_relay_answer answer, void *owner);
/* Item i, valid: produced under its target as key. */
void pb_relay_send(struct pb_kafka *k, struct pb_relay_job *job, long i, const struct pb_event *ev);
/* Item i, refused before Kafka (validation). */
void pb_relay_fail(struct pb_relay_job *job, long i, int status, const char *code,
                   const char *msg);
/* Every item handed over: answers at once when none waits for Kafka. */
void pb_relay_submitted(struct pb_relay_job *job);
/* The owner goes away before its answer (the caller hung up): the job lives
 * on until its last report, answering nobody. */
void pb_relay_detach(struct pb_relay_job *job);
/* Kafka's report on one item (pb_kafka_set_push_done). */
void pb_relay_done(void *opaque, int32_t partition, int64_t offset, const char *error);

/* For the owner's answer: the items, whether a batch, and item i's result. */
long pb_relay_items(const struct pb_relay_job *job);
int pb_relay_is_batch(const struct pb_relay_job *job);
const struct pb_relay_result *pb_relay_result(const struct pb_relay_job *job, long i);

#endif

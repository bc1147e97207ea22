/* Cluster mode's answer to an HTTP push (SPEC 3, 8): each item of a push,
 * broadcast or send goes to push.topic (kafka.c pb_kafka_push), and the
 * request is answered once Kafka has answered for every item: 202
 * {"partition":P,"offset":O}, a batch {"results":[...]}, 503 when Kafka
 * would not take it. Every node delivers the pushes from push.topic. Loop
 * thread only. */
#ifndef PB_RELAY_H
#define PB_RELAY_H

#include <stdint.h>

#include "pushbridge/event/envelope.h"
#include "pushbridge/api/http.h"
#include "pushbridge/kafka/kafka.h"

struct pb_relay_job;

/* A job for r's n items (batch: answered as a list). r->relay points at it
 * until it answers or r goes away. NULL on OOM (r is then answered 500). */
struct pb_relay_job *pb_relay_begin(struct pb_http_req *r, long n, int batch);
/* Item i, valid: produced under its target as key. */
void pb_relay_send(struct pb_kafka *k, struct pb_relay_job *job, long i, const struct pb_event *ev);
/* Item i, refused before Kafka (validation). */
void pb_relay_fail(struct pb_relay_job *job, long i, int status, const char *code,
                   const char *msg);
/* Every item handed over: answers at once when none waits for Kafka. */
void pb_relay_submitted(struct pb_relay_job *job);
/* r goes away before its answer (the caller hung up): the job lives on
 * until its last report, answering nobody. */
void pb_relay_detach(struct pb_http_req *r);
/* Kafka's report on one item (pb_kafka_set_push_done). */
void pb_relay_done(void *opaque, int32_t partition, int64_t offset, const char *error);

#endif

/* Cluster mode's HTTP pushes (SPEC 8): produced to push.topic, keyed like a
 * Kafka event, by a producer of their own whose delivery reports wake the
 * loop through the consumer's pipe. Every node, this one included, delivers
 * them from there through the one consumer path, so each connection gets
 * each push once whichever node took it. Never blocks the loop: the queue is
 * bounded (a full one refuses at once) and a message Kafka does not take
 * within PUSH_TIMEOUT_MS is reported failed. */
#include <stdio.h>
#include <string.h>

#include "pushbridge/core/log.h"
#include "pushbridge/kafka/kafka_oidc.h"
#include "kafka_internal.h"
#include "kafka_topic.h"

/* What an HTTP caller waits for at most before a 503 (the request itself
 * may take 20 s: httpd.c). */
#define PUSH_TIMEOUT_MS "5000"
/* Bound: pushes waiting for Kafka. */
#define PUSH_QUEUE_MESSAGES "10000"
#define PUSH_QUEUE_KBYTES "65536"

static void on_push_report(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    struct pb_kafka *k = opaque;
    if (!msg->err) {
        pb_refusal_write_ok(&k->refusals, PB_WRITE_PUSH);
        if (k->push_done)
            k->push_done(msg->_private, msg->partition, msg->offset, NULL);
        return;
    }
    /* A refusal answers with the sentence naming push.topic and what to
     * grant, also when the message only timed out behind a refused
     * producer id (idempotence needs WRITE or IDEMPOTENT_WRITE). */
    pb_kafka_note_refusal(k, k->push, msg->err, NULL, rd_kafka_err2str(msg->err));
    const char *refused = pb_refusal_write_refused(&k->refusals, PB_WRITE_PUSH);
    if (refused)
        k->m->kafka_writes_refused[PB_WRITE_PUSH]++;
    if (k->push_done)
        k->push_done(msg->_private, -1, -1, refused ? refused : rd_kafka_err2str(msg->err));
}

static rd_kafka_t *push_producer(struct pb_kafka *k, char *errstr, size_t errlen)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (pb_kafka_conf_set(conf, "bootstrap.servers",
                          k->bootstrap ? k->bootstrap : k->cfg->kafka_brokers, errstr, errlen) ||
        pb_kafka_conf_set(conf, "queue.buffering.max.messages", PUSH_QUEUE_MESSAGES, errstr,
                          errlen) ||
        pb_kafka_conf_set(conf, "queue.buffering.max.kbytes", PUSH_QUEUE_KBYTES, errstr, errlen) ||
        pb_kafka_conf_set(conf, "linger.ms", "1", errstr, errlen) ||
        pb_kafka_conf_set(conf, "reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS, errstr,
                          errlen) ||
        pb_kafka_conf_set(conf, "message.timeout.ms", PUSH_TIMEOUT_MS, errstr, errlen) ||
        /* Retries keep one user's pushes in order (one key, one partition). */
        pb_kafka_conf_set(conf, "enable.idempotence", "true", errstr, errlen) ||
        pb_kafka_conf_set(conf, "log.queue", "true", errstr, errlen) ||
        pb_kafka_apply_properties(k->cfg, conf, errstr, errlen) ||
        pb_kafka_conf_set(conf, "message.timeout.ms", PUSH_TIMEOUT_MS, errstr, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_log_cb(conf, pb_kafka_on_log);
    rd_kafka_conf_set_error_cb(conf, pb_kafka_on_producer_error);
    rd_kafka_conf_set_dr_msg_cb(conf, on_push_report);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errlen, "push.topic: cannot create the producer: %s", err);
        return NULL;
    }
    if (pb_oidc_client_started(k->cfg, rk, errstr, errlen)) {
        rd_kafka_destroy(rk);
        return NULL;
    }
    /* Fails only when kafka.properties turned log.queue off. */
    rd_kafka_resp_err_t e = rd_kafka_set_log_queue(rk, NULL);
    if (e) {
        snprintf(errstr, errlen, "push.topic: cannot route the producer's logs: %s",
                 rd_kafka_err2str(e));
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk;
}

int pb_kafka_push_start(struct pb_kafka *k, char *errstr, size_t errlen)
{
    if (!(k->push = push_producer(k, errstr, errlen)))
        return -1;
    rd_kafka_queue_t *main_q = rd_kafka_queue_get_main(k->push);
    if (!main_q) {
        snprintf(errstr, errlen, "push.topic: the producer has no main queue");
        return -1;
    }
    rd_kafka_queue_io_event_enable(main_q, k->pipefd[1], "1", 1);
    rd_kafka_queue_destroy(main_q);
    if (k->mock)
        return 0; /* --dev made it already */
    /* push.topic must exist: created with the broker's defaults if it does
     * not. A broker that does not answer is not an error: the bridge is not
     * ready without it anyway, and pushes are answered 503 until the topic
     * can be written. */
    struct pb_kafka_topic_spec spec = {
        .who = "kafka",
        .setting = "push.topic",
        .topic = k->cfg->push_topic,
        .partitions = -1,
        .unanswered = ": pushes are answered 503 until it can be written",
    };
    return pb_kafka_ensure_topic(k->push, &spec, errstr, errlen);
}

void pb_kafka_push_poll(struct pb_kafka *k)
{
    if (k->push)
        rd_kafka_poll(k->push, 0);
}

void pb_kafka_set_push_done(struct pb_kafka *k, pb_kafka_push_done done)
{
    k->push_done = done;
}

int pb_kafka_push(struct pb_kafka *k, const char *key, size_t keylen, const char *value,
                  size_t len, void *opaque, char *errstr, size_t errlen)
{
    if (!k->push) {
        snprintf(errstr, errlen, "pushes go through Kafka only in cluster.mode kafka");
        return -1;
    }
    rd_kafka_resp_err_t e = rd_kafka_producev(
        k->push, RD_KAFKA_V_TOPIC(k->cfg->push_topic), RD_KAFKA_V_KEY(key, keylen),
        RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (e) {
        snprintf(errstr, errlen, "%s",
                 e == RD_KAFKA_RESP_ERR__QUEUE_FULL
                     ? "too many pushes are waiting for Kafka; retry later"
                     : rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

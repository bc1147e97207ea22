/* Malformed Kafka events: counted by reason, logged once per interval with
 * the rest summed up, and, with kafka.dead_letter_topic set, produced there
 * unchanged with headers saying why, by a second producer that never blocks
 * the consumer (bounded; a failure is counted). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "pushbridge/event/envelope.h"
#include "pushbridge/core/log.h"
#include "kafka_internal.h"

/* Delivery reports of the dead-letter producer, served from pb_kafka_tick
 * and after each produce: count what landed, and what did not. */
static void on_dead_letter_report(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    struct pb_kafka *k = opaque;
    uint32_t src = (uint32_t)(uintptr_t)msg->_private;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (src < k->m->nsrc)
            k->m->src[src].dead_lettered++;
        pb_refusal_write_ok(&k->refusals, PB_WRITE_DEAD_LETTER);
        return;
    }
    k->m->dead_letter_failures++;
    if (pb_kafka_note_refusal(k, k->dlq, msg->err, NULL, rd_kafka_err2str(msg->err))) {
        k->m->kafka_writes_refused[PB_WRITE_DEAD_LETTER]++;
        return; /* said once per interval by kafka_refusal.c, and in /readyz */
    }
    int64_t now = pb_monotonic_ms();
    if (now - k->dlq_last_error_log >= MALFORMED_LOG_INTERVAL_MS) {
        k->dlq_last_error_log = now;
        pb_error("kafka: cannot produce to dead-letter topic %s: %s (counted in "
                 "pushbridge_dead_letter_failures_total)",
                 k->cfg->kafka_dead_letter_topic, rd_kafka_err2str(msg->err));
    }
}

rd_kafka_t *pb_kafka_dead_letter_producer(struct pb_kafka *k, char *errstr, size_t errlen)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* Bound: at most 10000 messages / 64 MiB wait to be dead-lettered; past
     * that, produce fails at once and is counted, never blocking the loop. */
    if (pb_kafka_conf_set(conf, "bootstrap.servers", k->bootstrap ? k->bootstrap : k->cfg->kafka_brokers,
                 errstr, errlen) ||
        pb_kafka_conf_set(conf, "queue.buffering.max.messages", "10000", errstr, errlen) ||
        pb_kafka_conf_set(conf, "queue.buffering.max.kbytes", "65536", errstr, errlen) ||
        pb_kafka_conf_set(conf, "linger.ms", "20", errstr, errlen) ||
        pb_kafka_conf_set(conf, "log.queue", "true", errstr, errlen) ||
        pb_kafka_apply_properties(k->cfg, conf, errstr, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_log_cb(conf, pb_kafka_on_log);
    rd_kafka_conf_set_error_cb(conf, pb_kafka_on_producer_error);
    rd_kafka_conf_set_dr_msg_cb(conf, on_dead_letter_report);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errlen, "kafka.dead_letter_topic: cannot create the producer: %s", err);
        return NULL;
    }
    rd_kafka_set_log_queue(rk, NULL);
    return rk;
}

static void add_header(rd_kafka_headers_t *h, const char *name, const char *value)
{
    rd_kafka_header_add(h, name, -1, value, -1);
}

/* Produces the message unchanged (key, value, headers) to the dead-letter
 * topic, with pushbridge-* headers saying where it came from and why. */
static void dead_letter(struct pb_kafka *k, const rd_kafka_message_t *msg, uint32_t src, int reason)
{
    rd_kafka_headers_t *orig = NULL, *h;
    if (rd_kafka_message_headers(msg, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR)
        h = rd_kafka_headers_copy(orig);
    else
        h = rd_kafka_headers_new(5);
    char partition[16], offset[32];
    snprintf(partition, sizeof(partition), "%d", (int)msg->partition);
    snprintf(offset, sizeof(offset), "%lld", (long long)msg->offset);
    add_header(h, "pushbridge-reason", pb_drop_reason_name(reason));
    add_header(h, "pushbridge-source-topic", rd_kafka_topic_name(msg->rkt));
    add_header(h, "pushbridge-source-partition", partition);
    add_header(h, "pushbridge-source-offset", offset);

    rd_kafka_resp_err_t err = rd_kafka_producev(
        k->dlq, RD_KAFKA_V_TOPIC(k->cfg->kafka_dead_letter_topic),
        RD_KAFKA_V_KEY(msg->key, msg->key_len), RD_KAFKA_V_VALUE(msg->payload, msg->len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
        RD_KAFKA_V_OPAQUE((void *)(uintptr_t)src), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(h); /* only owned by librdkafka on success */
        rd_kafka_message_t failed = {.err = err, ._private = (void *)(uintptr_t)src};
        on_dead_letter_report(k->dlq, &failed, k);
    }
    rd_kafka_poll(k->dlq, 0);
}

void pb_kafka_malformed(struct pb_kafka *k, const rd_kafka_message_t *msg, uint32_t src, int reason,
                      const char *detail)
{
    pb_metrics_drop(k->m, src, reason);
    if (k->dlq)
        dead_letter(k, msg, src, reason);
    int64_t now = pb_monotonic_ms();
    if (k->malformed_window_start && now - k->malformed_window_start < MALFORMED_LOG_INTERVAL_MS) {
        k->malformed_suppressed++;
        return;
    }
    k->malformed_window_start = now;
    pb_warn("dropped malformed event %s/%d@%lld: %s: %s", rd_kafka_topic_name(msg->rkt),
            (int)msg->partition, (long long)msg->offset, pb_drop_reason_name(reason), detail);
}

void pb_kafka_flush_malformed_log(struct pb_kafka *k)
{
    if (!k->malformed_suppressed ||
        pb_monotonic_ms() - k->malformed_window_start < MALFORMED_LOG_INTERVAL_MS)
        return;
    pb_warn("dropped %llu more malformed event(s) in the last %d s (see "
            "pushbridge_events_dropped_total)",
            (unsigned long long)k->malformed_suppressed, MALFORMED_LOG_INTERVAL_MS / 1000);
    k->malformed_suppressed = 0;
    k->malformed_window_start = 0;
}

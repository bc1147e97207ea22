/* Malformed Kafka events: counted by reason, logged once per interval with
 * the rest summed up, and, with kafka.dead_letter_topic set, produced there
 * unchanged with headers saying why, by a second producer that never blocks
 * the consumer (bounded; a failure is counted). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "pushbridge/event/envelope.h"
#include "pushbridge/core/log.h"
#include "pushbridge/kafka/kafka_oidc.h"
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
    if (pb_oidc_client_started(k->cfg, rk, errstr, errlen)) {
        rd_kafka_destroy(rk);
        return NULL;
    }
    /* Logs served on the loop; fails only when kafka.properties turned
     * log.queue off, and then librdkafka would log from its own threads. */
    rd_kafka_resp_err_t e = rd_kafka_set_log_queue(rk, NULL);
    if (e) {
        snprintf(errstr, errlen, "kafka.dead_letter_topic: cannot route the producer's logs: %s",
                 rd_kafka_err2str(e));
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk;
}

/* Fails only on a read-only list; ours is a fresh copy or new. */
static int add_header(rd_kafka_headers_t *h, const char *name, const char *value)
{
    return rd_kafka_header_add(h, name, -1, value, -1) != RD_KAFKA_RESP_ERR_NO_ERROR;
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
    /* A dead letter without its why is not sent: counted as a failure. */
    int why_ok = !add_header(h, "pushbridge-reason", pb_drop_reason_name(reason)) &&
                 !add_header(h, "pushbridge-source-topic", rd_kafka_topic_name(msg->rkt)) &&
                 !add_header(h, "pushbridge-source-partition", partition) &&
                 !add_header(h, "pushbridge-source-offset", offset);
    /* SPEC 12: which kafka.inputs rule read it, and which of its sources failed. */
    if (why_ok && k->input_failed_rule >= 0) {
        char rule[40];
        snprintf(rule, sizeof(rule), "kafka.inputs[%d]", k->input_failed_rule);
        why_ok = !add_header(h, "pushbridge-rule", rule) &&
                 (!k->input_failed[0] || !add_header(h, "pushbridge-rule-source", k->input_failed));
    }
    rd_kafka_resp_err_t err =
        !why_ok ? RD_KAFKA_RESP_ERR__FAIL
                : rd_kafka_producev(k->dlq, RD_KAFKA_V_TOPIC(k->cfg->kafka_dead_letter_topic),
                                    RD_KAFKA_V_KEY(msg->key, msg->key_len),
                                    RD_KAFKA_V_VALUE(msg->payload, msg->len),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                    RD_KAFKA_V_HEADERS(h),
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
    int w = reason == PB_DROP_UNSUPPORTED_ENCODING;
    if (k->malformed_window_start[w] &&
        now - k->malformed_window_start[w] < MALFORMED_LOG_INTERVAL_MS) {
        k->malformed_suppressed[w]++;
        return;
    }
    k->malformed_window_start[w] = now;
    char rule[360] = "";
    if (k->input_failed_rule >= 0)
        snprintf(rule, sizeof(rule), " (kafka.inputs[%d]%s%s)", k->input_failed_rule,
                 k->input_failed[0] ? ", " : "", k->input_failed);
    pb_warn("dropped malformed event %s/%d@%lld: %s: %s%s", rd_kafka_topic_name(msg->rkt),
            (int)msg->partition, (long long)msg->offset, pb_drop_reason_name(reason), detail,
            rule);
}

void pb_kafka_flush_malformed_log(struct pb_kafka *k)
{
    for (int w = 0; w < 2; w++) {
        if (!k->malformed_suppressed[w] ||
            pb_monotonic_ms() - k->malformed_window_start[w] < MALFORMED_LOG_INTERVAL_MS)
            continue;
        pb_warn("dropped %llu more %s event(s) in the last %d s (see "
                "pushbridge_events_dropped_total)",
                (unsigned long long)k->malformed_suppressed[w],
                w ? "unsupported_encoding" : "malformed", MALFORMED_LOG_INTERVAL_MS / 1000);
        k->malformed_suppressed[w] = 0;
        k->malformed_window_start[w] = 0;
    }
}

/* kafka.undelivered_topic (SPEC 8): an event for a user connected nowhere is
 * produced there, so a notification service can send an e-mail or a mobile
 * push instead. Keyed by the user, value and headers unchanged, plus
 * pushbridge-reason: offline. Only events addressed to one user, never
 * broadcasts or groups.
 *
 * Once per cluster, not once per node: every node reads every event, so
 * each decides the same question, and only the owner of the event's
 * partition writes: rendezvous hashing of (topic, partition) over the live
 * nodes that announced themselves (presence.c), which every node computes
 * alike from the same presence topic. "Connected nowhere" is this node's
 * count plus the others' as presence last said. Standalone: this node
 * alone, and HTTP pushes too (in cluster mode they come back through
 * push.topic and take the Kafka path).
 *
 * What can go wrong, and is documented (README, ARCHITECTURE): views that
 * differ for a moment (a node joining or leaving, presence lagging a login
 * or a close by up to a second) can write an event twice or not at all;
 * events for the partitions a crashed node owned are not written until the
 * others drop it (cluster.node_timeout_ms); the connections of a crashed
 * node count as online until then. A producer that is refused is counted
 * (pushbridge_undelivered_failures_total) and logged once per 10 s; it
 * never blocks delivery (bounded queue). */
#include <stdio.h>
#include <string.h>

#include "pushbridge/core/log.h"
#include "pushbridge/kafka/kafka_oidc.h"
#include "kafka_internal.h"

#define LOG_INTERVAL_MS 10000

/* SPEC 1: a refused write leaves delivery going; /readyz says so (200 with a
 * warning naming the topic) until a write gets through again, or for
 * WARNING_MS after the last refusal. */
#define WARNING_MS 60000

static void refused(struct pb_kafka *k, rd_kafka_resp_err_t err)
{
    k->m->undelivered_failures++;
    k->undelivered_refused_ms = pb_monotonic_ms();
    snprintf(k->undelivered_warning, sizeof(k->undelivered_warning),
             "writes to kafka.undelivered_topic %.200s are refused: %s (delivery goes on; "
             "counted in pushbridge_undelivered_failures_total)",
             k->cfg->kafka_undelivered_topic, rd_kafka_err2str(err));
    int64_t now = pb_monotonic_ms();
    if (now - k->undelivered_log_ms < LOG_INTERVAL_MS)
        return;
    k->undelivered_log_ms = now;
    pb_error("kafka: cannot produce to kafka.undelivered_topic %s: %s (counted in "
             "pushbridge_undelivered_failures_total)",
             k->cfg->kafka_undelivered_topic, rd_kafka_err2str(err));
}

static void on_report(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    struct pb_kafka *k = opaque;
    if (msg->err) {
        refused(k, msg->err);
    } else {
        k->m->undelivered++;
        k->undelivered_refused_ms = 0;
    }
}

const char *pb_kafka_undelivered_warning(const struct pb_kafka *k)
{
    if (!k || !k->undelivered_refused_ms ||
        pb_monotonic_ms() - k->undelivered_refused_ms > WARNING_MS)
        return NULL;
    return k->undelivered_warning;
}

int pb_kafka_undelivered_start(struct pb_kafka *k, char *errstr, size_t errlen)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* Bound: 10000 messages / 64 MiB waiting; past that, refused at once. */
    if (pb_kafka_conf_set(conf, "bootstrap.servers",
                          k->bootstrap ? k->bootstrap : k->cfg->kafka_brokers, errstr, errlen) ||
        pb_kafka_conf_set(conf, "queue.buffering.max.messages", "10000", errstr, errlen) ||
        pb_kafka_conf_set(conf, "queue.buffering.max.kbytes", "65536", errstr, errlen) ||
        pb_kafka_conf_set(conf, "linger.ms", "5", errstr, errlen) ||
        /* A write that cannot be made is reported (and counted) within 30 s. */
        pb_kafka_conf_set(conf, "message.timeout.ms", "30000", errstr, errlen) ||
        pb_kafka_conf_set(conf, "enable.idempotence", "true", errstr, errlen) ||
        pb_kafka_conf_set(conf, "log.queue", "true", errstr, errlen) ||
        pb_kafka_apply_properties(k->cfg, conf, errstr, errlen)) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_log_cb(conf, pb_kafka_on_log);
    rd_kafka_conf_set_dr_msg_cb(conf, on_report);
    if (!(k->undelivered = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)))) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errlen, "kafka.undelivered_topic: cannot create the producer: %s", err);
        return -1;
    }
    if (pb_oidc_client_started(k->cfg, k->undelivered, errstr, errlen))
        return -1; /* k->undelivered is destroyed with the rest of k */
    rd_kafka_set_log_queue(k->undelivered, NULL);
    rd_kafka_queue_t *main_q = rd_kafka_queue_get_main(k->undelivered);
    rd_kafka_queue_io_event_enable(main_q, k->pipefd[1], "1", 1);
    rd_kafka_queue_destroy(main_q);
    return 0;
}

int pb_kafka_undelivered_wanted(struct pb_kafka *k, const char *user, size_t len,
                                const char *topic, int32_t partition)
{
    if (!k->undelivered || !user || !len || pb_hub_user_connections(k->hub, user, len))
        return 0;
    if (k->cfg->cluster_mode != PB_CLUSTER_KAFKA)
        return 1;
    return pb_presence_remote(k->presence, user, len, NULL, NULL) == 0 &&
           pb_presence_owns(k->presence, topic, partition);
}

static void produce(struct pb_kafka *k, const char *user, size_t ulen, const void *value,
                    size_t len, rd_kafka_headers_t *h)
{
    rd_kafka_header_add(h, "pushbridge-reason", -1, "offline", -1);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        k->undelivered, RD_KAFKA_V_TOPIC(k->cfg->kafka_undelivered_topic),
        RD_KAFKA_V_KEY(user, ulen), RD_KAFKA_V_VALUE((void *)value, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(h); /* librdkafka owns them only on success */
        refused(k, err);
    }
    rd_kafka_poll(k->undelivered, 0);
}

void pb_kafka_undelivered_message(struct pb_kafka *k, const rd_kafka_message_t *msg,
                                  const char *user, size_t len)
{
    rd_kafka_headers_t *orig = NULL;
    rd_kafka_headers_t *h = rd_kafka_message_headers(msg, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR
                                ? rd_kafka_headers_copy(orig)
                                : rd_kafka_headers_new(1);
    produce(k, user, len, msg->payload, msg->len, h);
}

void pb_kafka_undelivered_http(struct pb_kafka *k, const char *user, size_t ulen,
                               const char *value, size_t len)
{
    if (!k || !k->undelivered || pb_hub_user_connections(k->hub, user, ulen))
        return;
    produce(k, user, ulen, value, len, rd_kafka_headers_new(1));
}

/* Presence's Kafka side (presence.c has the protocol): a producer and a
 * group-less consumer of its own on cluster.presence_topic, the topic made
 * sure of (one partition, short retention), where reading starts (far enough
 * back to hold a snapshot of every live node), the goodbye, and the end. */
#include "pushbridge/kafka/presence.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "pushbridge/core/log.h"
#include "pushbridge/kafka/kafka_oidc.h"
#include "kafka_internal.h"
#include "kafka_topic.h"
#include "presence_internal.h"

static rd_kafka_conf_t *base_conf(struct pb_kafka *k, char *errstr, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (pb_kafka_conf_set(conf, "bootstrap.servers",
                          k->bootstrap ? k->bootstrap : k->cfg->kafka_brokers, errstr, errlen) ||
        pb_kafka_conf_set(conf, "log.queue", "true", errstr, errlen) ||
        pb_kafka_conf_set(conf, "client.id", "pushbridge-presence", errstr, errlen) ||
        pb_kafka_apply_properties(k->cfg, conf, errstr, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, k); /* pb_kafka_on_log reads it */
    rd_kafka_conf_set_log_cb(conf, pb_kafka_on_log);
    return conf;
}

static rd_kafka_t *make(struct pb_kafka *k, rd_kafka_type_t type, char *errstr, size_t errlen)
{
    char err[256], group[320];
    snprintf(group, sizeof(group), "%s.presence", k->group_id);
    rd_kafka_conf_t *conf = base_conf(k, errstr, errlen);
    if (!conf)
        return NULL;
    int bad = type == RD_KAFKA_PRODUCER
                  ? pb_kafka_conf_set(conf, "queue.buffering.max.messages",
                                      PRODUCE_QUEUE_MESSAGES, errstr, errlen) ||
                        pb_kafka_conf_set(conf, "queue.buffering.max.kbytes",
                                          PRODUCE_QUEUE_KBYTES, errstr, errlen) ||
                        pb_kafka_conf_set(conf, "linger.ms", "5", errstr, errlen) ||
                        pb_kafka_conf_set(conf, "message.timeout.ms", "5000", errstr, errlen)
                  : pb_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errlen) ||
                        pb_kafka_conf_set(conf, "fetch.wait.max.ms", "50", errstr, errlen) ||
                        pb_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, errlen) ||
                        /* librdkafka's consumer API needs a group; this one is
                         * never joined (assign, no subscribe, no commit). */
                        pb_kafka_conf_set(conf, "group.id", group, errstr, errlen) ||
                        pb_kafka_conf_set(conf, "group.instance.id", "", errstr, errlen);
    if (bad) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    if (type == RD_KAFKA_PRODUCER)
        rd_kafka_conf_set_dr_msg_cb(conf, pb_presence_on_report);
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errlen, "cluster.presence_topic: cannot create a Kafka client: %s", err);
        return NULL;
    }
    if (pb_oidc_client_started(k->cfg, rk, errstr, errlen)) {
        rd_kafka_destroy(rk);
        return NULL;
    }
    rd_kafka_set_log_queue(rk, NULL);
    return rk;
}

/* One partition, short retention; created if missing. A broker that does
 * not answer is not an error here (the bridge is not ready without it);
 * ACLs that allow reading and writing the topic need not allow creating it
 * (SPEC 1: a refusal never stops the process): until presence is read,
 * /readyz says so, naming the topic. */
static int ensure_topic(struct pb_presence *p, char *errstr, size_t errlen)
{
    static const char *const conf[] = {"retention.ms", RETENTION_MS, "segment.ms", SEGMENT_MS,
                                       "cleanup.policy", "delete", NULL};
    struct pb_kafka_topic_spec spec = {
        .who = "presence",
        .setting = "cluster.presence_topic",
        .topic = p->cfg->cluster_presence_topic,
        .partitions = 1,
        .conf = conf,
    };
    return pb_kafka_ensure_topic(p->prod, &spec, errstr, errlen);
}

/* Reads from SNAPSHOT_MS + node_timeout_ms back (a snapshot of every live
 * node is in there); ready once at the end the topic had at start. */
static int start_reading(struct pb_presence *p, char *errstr, size_t errlen)
{
    const char *topic = p->cfg->cluster_presence_topic;
    int64_t lo = -1, hi = -1;
    rd_kafka_resp_err_t e =
        rd_kafka_query_watermark_offsets(p->cons, topic, 0, &lo, &hi, START_TIMEOUT_MS);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(l, topic, 0);
    tp->offset = pb_now_ms() - SNAPSHOT_MS - p->cfg->cluster_node_timeout_ms;
    if (!e)
        e = rd_kafka_offsets_for_times(p->cons, l, START_TIMEOUT_MS);
    if (e || tp->err) {
        pb_warn("presence: cannot find where to start reading %s (%s); reading what comes",
                topic, rd_kafka_err2str(e ? e : tp->err));
        tp->offset = RD_KAFKA_OFFSET_END;
        p->caught_up = 1; /* the next snapshots of the others converge */
    } else if (tp->offset < 0 || tp->offset >= hi) {
        tp->offset = hi; /* nothing that recent */
        p->caught_up = 1;
    }
    p->catchup_end = hi;
    e = rd_kafka_assign(p->cons, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        snprintf(errstr, errlen, "cluster.presence_topic %s: cannot assign: %s", topic,
                 rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

struct pb_presence *pb_presence_new(struct pb_kafka *k, char *errstr, size_t errlen)
{
    struct pb_presence *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    p->k = k;
    p->cfg = k->cfg;
    p->catchup_end = -1;
    p->started_ms = pb_monotonic_ms();
    if (getrandom(&p->inc, sizeof(p->inc), 0) != sizeof(p->inc))
        p->inc = (uint64_t)pb_now_ms() ^ (uint64_t)(uintptr_t)p;
    p->seed = p->inc * 0x9e3779b97f4a7c15ULL;
    pb_utable_init(&p->dirty, &p->dirty_used, MAX_DIRTY, p->seed);
    if (pb_kafka_node_name(k->cfg, p->node, sizeof(p->node), errstr, errlen) ||
        !(p->prod = make(k, RD_KAFKA_PRODUCER, errstr, errlen)) ||
        !(p->cons = make(k, RD_KAFKA_CONSUMER, errstr, errlen)))
        goto fail;
    rd_kafka_poll_set_consumer(p->cons);
    p->q = rd_kafka_queue_get_consumer(p->cons);
    if ((!k->mock && ensure_topic(p, errstr, errlen)) || start_reading(p, errstr, errlen))
        goto fail;
    rd_kafka_queue_io_event_enable(p->q, k->pipefd[1], "1", 1);
    rd_kafka_queue_t *main_q = rd_kafka_queue_get_main(p->prod);
    rd_kafka_queue_io_event_enable(main_q, k->pipefd[1], "1", 1);
    rd_kafka_queue_destroy(main_q);
    pb_hub_set_watch(k->hub, pb_presence_watch, p);
    p->need_snapshot = 1;
    pb_info("presence: node %s (incarnation %016" PRIx64 ") on %s", p->node, p->inc,
            k->cfg->cluster_presence_topic);
    return p;
fail:
    pb_presence_free(p);
    return NULL;
}

void pb_presence_poll(struct pb_presence *p)
{
    if (p)
        rd_kafka_poll(p->prod, 0);
}

void pb_presence_bye(struct pb_presence *p, int64_t deadline_ms)
{
    if (!p || !p->prod)
        return;
    pb_hub_set_watch(p->k->hub, NULL, NULL);
    pb_presence_send_plain(p, "bye");
    int64_t left = deadline_ms - pb_monotonic_ms();
    if (left > 2000)
        left = 2000;
    if (rd_kafka_flush(p->prod, left > 0 ? (int)left : 0) != RD_KAFKA_RESP_ERR_NO_ERROR)
        pb_warn("presence: the goodbye did not reach Kafka; the others forget this node after "
                "cluster.node_timeout_ms");
}

void pb_presence_free(struct pb_presence *p)
{
    if (!p)
        return;
    if (p->k->hub)
        pb_hub_set_watch(p->k->hub, NULL, NULL);
    for (size_t i = 0; i < p->nnodes; i++) {
        pb_presence_node_reset(p->nodes[i]);
        free(p->nodes[i]);
    }
    pb_utable_clear(&p->dirty);
    if (p->q)
        rd_kafka_queue_destroy(p->q);
    /* Never joined a group, nothing to commit: no consumer close, which
     * could wait for a coordinator that is gone. */
    if (p->cons)
        rd_kafka_destroy_flags(p->cons, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    if (p->prod)
        rd_kafka_destroy(p->prod);
    free(p);
}

/* How pushbridge's Kafka clients are configured: the consumer's defaults,
 * kafka.properties passed through (an unknown property is an error naming
 * it), what may not be overridden, static membership's instance id, and the
 * in-process cluster of --dev; and the log callback every client of the
 * bridge shares. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pushbridge/kafka/kafka.h"
#include "pushbridge/kafka/kafka_oidc.h"
#include "pushbridge/core/log.h"
#include "kafka_internal.h"

void pb_kafka_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    /* librdkafka says that auto.offset.reset moved a partition on only in
     * this log line: with auto.offset.reset=earliest no error event comes
     * (__AUTO_OFFSET_RESET is raised only for "error", which stops the
     * partition until the application repositions it itself). Served on
     * the loop (log.queue), like everything else. */
    struct pb_kafka *k = rd_kafka_opaque(rk);
    if (k && rk == k->rk && strcmp(fac, "OFFSET") == 0)
        pb_kafka_note_offset_reset(k, buf);
    /* syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug. Kafka's
     * chatter is demoted one notch: our own lines say what matters. */
    int lvl = level <= 3 ? PB_LOG_WARN : level <= 4 ? PB_LOG_INFO : PB_LOG_DEBUG;
    /* Connection failures repeat on every retry; the outage edge is logged
     * once by set_brokers_down(), so these are debug. */
    if (strcmp(fac, "FAIL") == 0)
        lvl = PB_LOG_DEBUG;
    pb_log(lvl, "kafka %s: %s", fac, buf);
}

int pb_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *val, char *errstr,
                    size_t errlen)
{
    char err[256];
    if (rd_kafka_conf_set(conf, key, val, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errlen, "kafka.properties: %s: %s", key, err);
        return -1;
    }
    return 0;
}

int pb_kafka_apply_properties(const struct pb_config *cfg, rd_kafka_conf_t *conf, char *errstr,
                            size_t errlen)
{
    /* sasl.oauthbearer.method oidc: the bridge fetches the tokens itself
     * (kafka_oidc.c), so librdkafka never sees the OIDC properties. */
    int oidc = pb_oidc_enabled(cfg);
    if (oidc && pb_oidc_check(cfg, errstr, errlen))
        return -1;
    for (size_t i = 0; i < cfg->kafka_properties.n; i++) {
        const struct pb_kv *kv = &cfg->kafka_properties.items[i];
        if (oidc && pb_oidc_own_property(kv->key))
            continue;
        /* "" turns static membership off (see pb_kafka_consumer_conf): not passed,
         * librdkafka would take it as an instance id. */
        if (strcmp(kv->key, "group.instance.id") == 0 && !kv->value[0])
            continue;
        if (pb_kafka_conf_set(conf, kv->key, kv->value, errstr, errlen))
            return -1;
    }
    if (oidc)
        pb_oidc_conf(cfg, conf);
    return 0;
}

int pb_kafka_check_properties(const struct pb_config *cfg, char *errstr, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc = pb_kafka_apply_properties(cfg, conf, errstr, errlen);
    rd_kafka_conf_destroy(conf);
    return rc;
}

/* --dev: an in-process cluster with the configured (non-regex) topics. */
int pb_kafka_start_embedded(struct pb_kafka *k, char *errstr, size_t errlen)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, pb_kafka_on_log);
    k->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!k->mock_rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errlen, "embedded Kafka: %s", err);
        return -1;
    }
    rd_kafka_mock_cluster_t *mc = k->mock = rd_kafka_mock_cluster_new(k->mock_rk, 1);
    if (!mc) {
        snprintf(errstr, errlen, "embedded Kafka: cannot create the mock cluster");
        return -1;
    }
    for (size_t i = 0; i <= k->cfg->kafka_topics.n; i++) {
        const char *t = i < k->cfg->kafka_topics.n ? k->cfg->kafka_topics.items[i]
                        : k->cfg->cluster_mode == PB_CLUSTER_KAFKA ? k->cfg->push_topic
                                                                   : NULL;
        rd_kafka_resp_err_t err = t && t[0] != '^' ? rd_kafka_mock_topic_create(mc, t, 1, 1)
                                                   : RD_KAFKA_RESP_ERR_NO_ERROR;
        if (err) {
            snprintf(errstr, errlen, "embedded Kafka: cannot create topic %s: %s", t,
                     rd_kafka_err2str(err));
            return -1;
        }
    }
    k->bootstrap = strdup(rd_kafka_mock_cluster_bootstraps(mc));
    if (!k->bootstrap) {
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    pb_info("embedded Kafka started: bootstrap.servers=%s", k->bootstrap);
    return 0;
}

int pb_kafka_node_name(const struct pb_config *cfg, char *buf, size_t len, char *errstr,
                       size_t errlen)
{
    if (cfg->cluster_node_name) {
        /* Cut short, it would name another group and instance id. */
        if ((size_t)snprintf(buf, len, "%s", cfg->cluster_node_name) >= len) {
            snprintf(errstr, errlen, "cluster.node_name is longer than %zu bytes", len - 1);
            return -1;
        }
        return 0;
    }
    if (gethostname(buf, len)) {
        snprintf(errstr, errlen, "cluster.node_name is not set and the host name is unknown: %s",
                 strerror(errno));
        return -1;
    }
    buf[len - 1] = '\0';
    return 0;
}

/* group.instance.id: the node name and the public listener's port, so that
 * two bridges on one host differ while a bridge keeps its id across
 * reconnects and restarts. kafka.properties may set another id, or "" for
 * dynamic membership. */
static int instance_id(const struct pb_config *cfg, char *buf, size_t len, char *errstr,
                       size_t errlen)
{
    char name[256], lhost[256];
    int port;
    if (pb_kafka_node_name(cfg, name, sizeof(name), errstr, errlen))
        return -1;
    if (pb_config_split_hostport(cfg->listen_public, lhost, sizeof(lhost), &port) < 0)
        port = 0; /* validated before: cannot happen */
    if ((size_t)snprintf(buf, len, "%s:%d", name, port) >= len) {
        snprintf(errstr, errlen, "cluster.node_name is too long for a group.instance.id");
        return -1;
    }
    return 0;
}

/* The consumer group: kafka.group_id; in cluster mode every node reads
 * every partition, so each has a group of its own, named after it. */
static int group_id(const struct pb_config *cfg, char *buf, size_t len, char *errstr,
                    size_t errlen)
{
    char name[256];
    if (cfg->cluster_mode != PB_CLUSTER_KAFKA) {
        snprintf(buf, len, "%s", cfg->kafka_group_id);
        return 0;
    }
    if (pb_kafka_node_name(cfg, name, sizeof(name), errstr, errlen))
        return -1;
    if ((size_t)snprintf(buf, len, "%s.%s", cfg->kafka_group_id, name) >= len) {
        snprintf(errstr, errlen, "kafka.group_id and cluster.node_name are too long together");
        return -1;
    }
    return 0;
}

static int has_regex_topic(const struct pb_config *cfg)
{
    for (size_t i = 0; i < cfg->kafka_topics.n; i++)
        if (cfg->kafka_topics.items[i][0] == '^')
            return 1;
    return 0;
}

static const char *property(const struct pb_config *cfg, const char *key)
{
    for (size_t i = 0; i < cfg->kafka_properties.n; i++)
        if (strcmp(cfg->kafka_properties.items[i].key, key) == 0)
            return cfg->kafka_properties.items[i].value;
    return NULL;
}

rd_kafka_conf_t *pb_kafka_consumer_conf(struct pb_kafka *k, char *errstr, size_t errlen)
{
    const struct pb_config *cfg = k->cfg;
    char instance[300];
    if (instance_id(cfg, instance, sizeof(instance), errstr, errlen) ||
        group_id(cfg, k->group_id, sizeof(k->group_id), errstr, errlen))
        return NULL;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* Our defaults first, so kafka.properties may override any of them. */
    if (pb_kafka_conf_set(conf, "bootstrap.servers", k->bootstrap ? k->bootstrap : cfg->kafka_brokers,
                 errstr, errlen) ||
        pb_kafka_conf_set(conf, "group.id", k->group_id, errstr, errlen) ||
        pb_kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr, errlen) ||
        pb_kafka_conf_set(conf, "enable.auto.commit", "true", errstr, errlen) ||
        pb_kafka_conf_set(conf, "auto.commit.interval.ms", "1000", errstr, errlen) ||
        /* A new group reads from the start; max_event_age_ms then skips what
         * is stale. "latest" would race with producers right after join. */
        pb_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, errlen) ||
        pb_kafka_conf_set(conf, "client.id", "pushbridge", errstr, errlen) ||
        /* librdkafka logs from its own threads otherwise; through the queue
         * they are served by the loop like everything else. */
        pb_kafka_conf_set(conf, "log.queue", "true", errstr, errlen) ||
        pb_kafka_conf_set(conf, "statistics.interval.ms", STATS_INTERVAL_MS, errstr, errlen) ||
        pb_kafka_conf_set(conf, "reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS, errstr,
                          errlen) ||
        /* Static membership: after an outage longer than session.timeout.ms
         * the consumer rejoins under the same id and the coordinator hands
         * its partitions back at once, instead of waiting a whole session
         * timeout for the member it lost track of to expire. */
        (!property(cfg, "group.instance.id") &&
         pb_kafka_conf_set(conf, "group.instance.id", instance, errstr, errlen)) ||
        (has_regex_topic(cfg) &&
         pb_kafka_conf_set(conf, "topic.metadata.refresh.interval.ms", REGEX_REFRESH_MS, errstr, errlen)) ||
        pb_kafka_apply_properties(cfg, conf, errstr, errlen) ||
        /* Not overridable: offsets are stored only after hand-off (SPEC 1). */
        pb_kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_log_cb(conf, pb_kafka_on_log);
    const char *gid = property(cfg, "group.instance.id");
    k->static_member = !gid || *gid;
    return conf;
}

/* 1 when the topic is push.topic and the bridge runs cluster.mode kafka. */
int pb_kafka_is_push_topic(const struct pb_config *cfg, const char *topic)
{
    return cfg->cluster_mode == PB_CLUSTER_KAFKA && strcmp(topic, cfg->push_topic) == 0;
}

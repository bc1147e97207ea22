/* What librdkafka's statistics (every STATS_INTERVAL_MS) tell the bridge:
 * whether any broker is reachable (the consumer has no "back up" event), and
 * whether this process holds every partition of its topics. A bridge that
 * holds fewer shares its consumer group with another one, so each user's
 * events reach only the connections of whichever holds the user's partition
 * (SPEC 8): said in the log, /stats and /readyz. */
#include <stdio.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "pushbridge/core/log.h"
#include "kafka_internal.h"

/* Statistics in a row that must agree before the share is reported: one
 * can fall inside a rebalance. */
#define SHARE_STREAK 2

/* Broker reachability drives /readyz. The down edge comes through
 * ALL_BROKERS_DOWN (once nothing contradicted it for ALL_DOWN_GRACE_MS), and
 * from the statistics (every STATS_INTERVAL) when no
 * broker is UP: librdkafka does not always raise ALL_BROKERS_DOWN (a young
 * client whose bootstrap connection is still counted never sees "all" of
 * its brokers down). It has no "back up" event, so the up edge comes from
 * the statistics too. Each edge is logged once. */
void pb_kafka_set_brokers_down(struct pb_kafka *k, int down, const char *why)
{
    k->all_down_at = 0; /* confirmed, or contradicted */
    if (!down) /* a broker answered: the login and the handshake went through */
        pb_refusal_connection_ok(&k->refusals);
    if (down == k->brokers_down)
        return;
    k->brokers_down = down;
    if (down) {
        k->m->kafka_outages++;
        pb_error("kafka: all brokers are down (%s); keeping WebSocket connections, "
                 "reconnecting",
                 why);
    } else {
        pb_info("kafka: brokers reachable again");
    }
}

/* Counts brokers in state UP in a statistics JSON document. */
static int brokers_up(yajl_val root)
{
    const char *path[] = {"brokers", NULL};
    yajl_val brokers = root ? yajl_tree_get(root, path, yajl_t_object) : NULL;
    int up = 0;
    for (size_t i = 0; brokers && i < brokers->u.object.len; i++) {
        const char *state_path[] = {"state", NULL};
        const char *nodeid_path[] = {"nodeid", NULL};
        yajl_val b = brokers->u.object.values[i];
        yajl_val state = yajl_tree_get(b, state_path, yajl_t_string);
        yajl_val nodeid = yajl_tree_get(b, nodeid_path, yajl_t_number);
        /* Bootstrap placeholders (nodeid -1) do not count; UPDATE is UP
         * with a metadata update under way. */
        if (state && nodeid && YAJL_IS_INTEGER(nodeid) && nodeid->u.number.i >= 0 &&
            (strcmp(state->u.string, "UP") == 0 || strcmp(state->u.string, "UPDATE") == 0))
            up++;
    }
    return up;
}

/* Partitions of the topics the consumer knows (its subscription), from the
 * statistics' topics.*.partitions ("-1" is librdkafka's unassigned slot). */
static int topic_partitions(yajl_val root)
{
    const char *path[] = {"topics", NULL};
    const char *ppath[] = {"partitions", NULL};
    yajl_val topics = yajl_tree_get(root, path, yajl_t_object);
    int n = 0;
    for (size_t i = 0; topics && i < topics->u.object.len; i++) {
        yajl_val parts = yajl_tree_get(topics->u.object.values[i], ppath, yajl_t_object);
        for (size_t j = 0; parts && j < parts->u.object.len; j++)
            n += strcmp(parts->u.object.keys[j], "-1") != 0;
    }
    return n;
}

static void check_share(struct pb_kafka *k, int total)
{
    int shared = k->assigned > 0 && total > 0 && k->assigned < total;
    k->parts_total = total;
    k->share_streak = shared == k->shared ? 0 : k->share_streak + 1;
    if (k->share_streak < SHARE_STREAK)
        return;
    k->shared = shared;
    k->share_streak = 0;
    if (!shared) {
        k->share_warning[0] = '\0';
        pb_info("kafka: this bridge holds every partition of its topics again");
        return;
    }
    if (k->cfg->cluster_mode == PB_CLUSTER_KAFKA)
        snprintf(k->share_warning, sizeof(k->share_warning),
                 "assigned %d of %d partitions: another node shares consumer group %s "
                 "(two nodes with one cluster.node_name?), so it gets part of the events",
                 k->assigned, total, k->group_id);
    else
        snprintf(k->share_warning, sizeof(k->share_warning),
                 "assigned %d of %d partitions: another consumer shares kafka.group_id %s, so "
                 "each user's events reach only the bridge holding its partition; give each "
                 "bridge its own group, or run cluster.mode kafka",
                 k->assigned, total, k->group_id);
    pb_warn("kafka: %s", k->share_warning);
}

int pb_kafka_on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk;
    (void)len;
    struct pb_kafka *k = opaque;
    char err[64];
    yajl_val root = yajl_tree_parse(json, err, sizeof(err));
    if (!root)
        return 0; /* librdkafka's own JSON: cannot happen */
    check_share(k, topic_partitions(root));
    int up = brokers_up(root);
    yajl_tree_free(root);
    k->m->kafka_brokers_up = (uint64_t)up;
    if (up > 0) {
        k->ever_up = 1;
        k->none_up = 0;
        pb_kafka_set_brokers_down(k, 0, NULL);
    } else if (k->ever_up && ++k->none_up >= 2) {
        /* A consumer keeps connections to its partition leaders and its
         * coordinator busy (fetches, heartbeats): none UP in two statistics
         * in a row (one could catch a reconnect) means none reachable. */
        pb_kafka_set_brokers_down(k, 1, "no broker connection is up");
    }
    return 0; /* librdkafka frees json */
}


const char *pb_kafka_share(const struct pb_kafka *k, int *assigned, int *total)
{
    *assigned = k->assigned;
    *total = k->parts_total ? k->parts_total : -1;
    return k->shared ? k->share_warning : NULL;
}

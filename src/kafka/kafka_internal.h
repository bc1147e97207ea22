/* The Kafka module's private parts, shared by its files, lowest first:
 * kafka_parts.c (partitions catching up, offset resets), kafka_conf.c (how
 * the clients are configured, their log callback, the --dev cluster),
 * kafka_stats.c (statistics: brokers up, the group's share), kafka_dlq.c
 * (dead letters and the malformed-event log), kafka_push.c (cluster mode's
 * producer), kafka_route.c (one message from Kafka to the hub),
 * kafka_rebuild.c (state rebuilt at start) and kafka.c (the consumer's
 * lifecycle and group events) on top. A file calls only the files before it.
 * Not for use outside src/kafka/. */
#ifndef PB_KAFKA_INTERNAL_H
#define PB_KAFKA_INTERNAL_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdint.h>

#include "pushbridge/core/config.h"
#include "pushbridge/hub/hub.h"
#include "pushbridge/kafka/kafka.h"
#include "pushbridge/kafka/presence.h"
#include "pushbridge/kafka/kafka_refusal.h"
#include "pushbridge/core/metrics.h"

/* Malformed events are logged in full once per interval; the rest of the
 * interval is counted and summarised, so a flood cannot flood the log. */
#define MALFORMED_LOG_INTERVAL_MS 10000
#define LAG_INTERVAL_MS           2000
#define STATS_INTERVAL_MS         "2000"
/* Warnings that repeat for one cause (a commit failing every second while
 * the coordinator is away) are logged once per this interval, with a count. */
#define REPEAT_LOG_INTERVAL_MS 10000
/* librdkafka 2.0.2 keeps connections only to the brokers it uses and
 * reports "all brokers down" when those go, for the moment it takes to
 * connect to another (a rolling restart): the outage is declared only when
 * no message, assignment or statistics said otherwise for this long. */
#define ALL_DOWN_GRACE_MS 3000
/* Regex subscriptions see new topics at each metadata refresh; librdkafka's
 * default (5 min) is far too slow for push. A refresh asks for every topic's
 * metadata, so not much more often than this. kafka.properties wins. */
#define REGEX_REFRESH_MS "5000"
/* librdkafka backs off reconnecting to a broker that is down up to 10 s;
 * when that broker is back and leads a partition again (a rolling restart
 * after a failure), fetching waited out the backoff: ~5 s more than a fresh
 * client in test_56. One attempt a second per broker that is down is cheap.
 * kafka.properties wins. */
#define RECONNECT_BACKOFF_MAX_MS "1000"

struct pb_kafka {
    const struct pb_config *cfg;
    struct pb_hub *hub;
    struct pb_metrics *m;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    int pipefd[2];

    rd_kafka_t *dlq; /* producer for kafka.dead_letter_topic, or NULL */
    int64_t dlq_last_error_log;

    rd_kafka_t *mock_rk; /* --dev: the handle the embedded cluster lives in */
    rd_kafka_mock_cluster_t *mock;
    char *bootstrap;

    int assigned; /* partitions currently assigned */
    /* Held for a worker (pb_kafka_hold, kafka_hold.c) since held_ms; once
     * the hold lasts, `paused` lists the partitions paused for it, to
     * resume when it has caught up (NULL until then). Bound: the
     * partitions of the subscribed topics. */
    int held, hold_warned, hold_loud;
    int64_t held_ms, hold_log_ms;
    uint64_t hold_quiet; /* lasting holds logged at debug since the last at info */
    rd_kafka_topic_partition_list_t *paused;
    int brokers_down;
    int64_t all_down_at; /* monotonic ms of an ALL_BROKERS_DOWN not yet confirmed; 0 = none */
    char all_down_why[160];
    int closed; /* pb_kafka_close finished */
    char why[200];
    char fatal[200]; /* set once librdkafka raised a fatal error */

    /* Every partition this process has been assigned. Only the backlog of
     * a first assignment is subject to kafka.max_event_age_ms: catching_up
     * lasts until the end of the backlog that existed at assignment (`end`,
     * the high watermark then) or its first fresh message, whichever comes
     * first, so events held up by a broker outage, or handed back by a
     * rebalance, are still delivered, however quiet the partition was.
     * Bound: the partitions of the subscribed topics. */
    struct part {
        char *topic;
        int32_t partition;
        int catching_up;
        int64_t end;        /* backlog end (high watermark at assignment); -1 = not known yet */
        int64_t reset_from; /* offset at which auto.offset.reset moved on; -1 = none */
        int64_t assigned_ms; /* monotonic ms of the first assignment */
    } * parts;
    size_t nparts;
    size_t ncatching; /* parts with catching_up set: 0 = no scan per message */

    /* The metrics source of the last message's topic: messages come in runs
     * of one topic, so usually one compare instead of a table search. */
    uint32_t last_src;

    /* [0] every malformed event; [1] unsupported_encoding alone, which says
     * a topic holds Avro or Protobuf (a setup problem, not one bad event),
     * so another reason's window never hides it. */
    int64_t malformed_window_start[2];
    uint64_t malformed_suppressed[2];
    int64_t last_lag_ms;

    struct repeat_log {
        const char *what;    /* "offset commit failed" */
        char cause[240];     /* the open window's message: same text, same cause */
        int64_t start;       /* monotonic ms the window opened; 0 = none */
        uint64_t suppressed; /* occurrences not logged in this window */
    } commit_log, error_log, consume_log, store_log;

    /* Offsets lost to retention: the first loss of a window is logged in
     * full, the rest summed up (offsets) at the window's end. */
    int64_t lost_window_start;
    uint64_t lost_suppressed;
    size_t nresets; /* parts with reset_from set: 0 = no scan per message */

    int ever_up;        /* a broker was UP in some statistics: down is news */
    int none_up;        /* statistics in a row with no broker UP */
    int static_member;  /* group.instance.id set: leave explicitly at close */

    struct pb_kafka_rebuild *rebuild; /* while state is rebuilt at start (kafka_rebuild.c) */

    /* kafka.inputs (kafka_input.c): the rule of the last topic looked up
     * (messages come in runs of one topic), and what failed in the last
     * message read under a rule, for its dead letter. */
    char input_topic[256];
    const struct pb_input_rule *input_rule;
    size_t input_index;
    int input_failed_rule; /* position of the rule whose read failed; -1 = none */
    char input_failed[300];

    char group_id[300];  /* kafka.group_id, + "." + node name in cluster mode */
    /* The group's share of the partitions (kafka_stats.c). */
    int parts_total;     /* partitions of the subscribed topics, from statistics */
    int shared;          /* assigned fewer: another member shares the group */
    int share_streak;
    char share_warning[640];

    /* Cluster mode: who is connected where (presence.c). */
    struct pb_presence *presence;
    /* kafka.undelivered_topic's producer (kafka_undelivered.c), or NULL. */
    rd_kafka_t *undelivered;
    int64_t undelivered_log_ms;
    int64_t undelivered_refused_ms; /* the last refusal, 0 once a write got through */
    char undelivered_warning[400];
    /* What a secure cluster refused (kafka_refusal.c). */
    struct pb_kafka_refusals refusals;

    /* Cluster mode: HTTP pushes produced to push.topic (kafka_push.c). */
    rd_kafka_t *push;
    pb_kafka_push_done push_done;
};

/* kafka.c: the consumer's librdkafka callbacks, installed by pb_kafka_new
 * (served on the loop through the queue). */
void pb_kafka_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque);
void pb_kafka_on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                        rd_kafka_topic_partition_list_t *offsets, void *opaque);
void pb_kafka_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t *parts, void *opaque);

/* kafka_refusal.c */
/* An error of any of the bridge's clients (consumer, dead-letter or push
 * producer): 1 when it was a refusal, now recorded. */
int pb_kafka_note_refusal(struct pb_kafka *k, const rd_kafka_t *rk, int err, const char *topic,
                          const char *reason);
/* librdkafka's error callback of the producers. */
void pb_kafka_on_producer_error(rd_kafka_t *rk, int err, const char *reason, void *opaque);

/* kafka_hold.c. set: begins a hold, or ends it (resuming what it paused).
 * lets_poll: 0 while a short hold leaves the consumer unpolled; a lasting
 * one pauses the partitions first. assigning: pauses the partitions about
 * to be assigned during a lasting hold (before rd_kafka_assign). strayed:
 * a message of a partition whose pause was lost pauses it again. */
void pb_kafka_hold_set(struct pb_kafka *k, int hold);
int pb_kafka_hold_lets_poll(struct pb_kafka *k);
void pb_kafka_hold_assigning(struct pb_kafka *k, rd_kafka_topic_partition_list_t *parts);
void pb_kafka_hold_strayed(struct pb_kafka *k, const rd_kafka_message_t *msg);

/* kafka_parts.c */
/* A partition assigned for the first time starts catching up. */
void pb_kafka_catchup_add(struct pb_kafka *k, const rd_kafka_topic_partition_list_t *parts);
/* Revoked partitions stop catching up (parts NULL: all of them). */
void pb_kafka_catchup_remove(struct pb_kafka *k, const rd_kafka_topic_partition_list_t *parts);
/* Learns the backlog ends not known yet (non-blocking). */
void pb_kafka_resolve_ends(struct pb_kafka *k);
/* 1 when msg is stale backlog of a partition still catching up. */
int pb_kafka_stale_backlog(struct pb_kafka *k, const rd_kafka_message_t *msg, int64_t age_ms);
/* librdkafka logged an offset reset: where the partition stood. */
void pb_kafka_note_offset_reset(struct pb_kafka *k, const char *line);
/* The first message after an offset reset: counts what was skipped. */
void pb_kafka_account_reset(struct pb_kafka *k, const rd_kafka_message_t *msg);
/* Ends the lost-offsets log window when it is over. */
void pb_kafka_flush_lost_log(struct pb_kafka *k, int64_t now);

/* kafka_conf.c */
/* The log callback of every client (the consumer's opaque is the struct
 * pb_kafka: its offset-reset lines go to kafka_parts.c). */
void pb_kafka_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf);
/* This node's name: cluster.node_name, or the host name. */
int pb_kafka_node_name(const struct pb_config *cfg, char *buf, size_t len, char *errstr,
                       size_t errlen);
/* rd_kafka_conf_set, with errstr naming the key ("kafka.properties: KEY: ..."). */
int pb_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *val, char *errstr,
                      size_t errlen);
/* kafka.properties onto conf. */
int pb_kafka_apply_properties(const struct pb_config *cfg, rd_kafka_conf_t *conf, char *errstr,
                              size_t errlen);
/* The consumer's configuration: pushbridge's defaults, then kafka.properties,
 * then what may not be overridden; opaque and log callback set (kafka.c sets
 * the consumer's other callbacks). NULL with errstr. */
rd_kafka_conf_t *pb_kafka_consumer_conf(struct pb_kafka *k, char *errstr, size_t errlen);
/* --dev: the in-process cluster; sets k->bootstrap. */
int pb_kafka_start_embedded(struct pb_kafka *k, char *errstr, size_t errlen);
/* 1 when the topic is push.topic and the bridge runs cluster.mode kafka. */
int pb_kafka_is_push_topic(const struct pb_config *cfg, const char *topic);

/* kafka_stats.c */
/* The statistics callback: brokers up, the group's share of the partitions. */
int pb_kafka_on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque);
/* Broker reachability (/readyz): each edge logged once. */
void pb_kafka_set_brokers_down(struct pb_kafka *k, int down, const char *why);

/* kafka_route.c: one message from Kafka to the hub, for both consumers. */
/* The group consumer's message: parsed, routed and delivered to the hub
 * (or counted as redelivered, stale, for nobody here, malformed). */
void pb_kafka_route(struct pb_kafka *k, const rd_kafka_message_t *msg, uint32_t src);
/* A message read by the rebuild goes to the store only. */
void pb_kafka_keep(struct pb_kafka *k, const rd_kafka_message_t *msg);

/* kafka_rebuild.c */
/* 1 when a rebuild started (the group consumer subscribes once it is
 * done), 0 when there is nothing to rebuild or it cannot be (logged). */
int pb_kafka_rebuild_start(struct pb_kafka *k);
/* Reads at most budget messages; 1 when more are waiting. */
int pb_kafka_rebuild_drain(struct pb_kafka *k, int budget);
/* 1 (once) when every partition has been read: the rebuild is gone. */
int pb_kafka_rebuild_finish(struct pb_kafka *k);
void pb_kafka_rebuild_free(struct pb_kafka *k);

/* kafka_input.c */
/* The kafka.inputs rule for the topic, or NULL (the envelope); push.topic
 * never has one. Notes the rule in the topic's /stats. */
const struct pb_input_rule *pb_kafka_input_rule(struct pb_kafka *k, const char *topic);
/* Reads msg under its rule into ev (SPEC 12), the target included; on
 * failure remembers the rule and the source for the dead letter. */
int pb_kafka_input_read(struct pb_kafka *k, const struct pb_input_rule *rule,
                        const rd_kafka_message_t *msg, struct pb_event *ev);

/* kafka_push.c */
/* Cluster mode: the push.topic producer, and the topic made sure of. */
int pb_kafka_push_start(struct pb_kafka *k, char *errstr, size_t errlen);
/* Serves the producer's delivery reports. */
void pb_kafka_push_poll(struct pb_kafka *k);

/* presence.c (the rest is in pushbridge/kafka/presence.h) */
/* Cluster mode: publishes this node's users, reads the others'. */
struct pb_presence *pb_presence_new(struct pb_kafka *k, char *errstr, size_t errlen);
/* Reads at most budget presence messages; 1 when more are waiting. */
int pb_presence_drain(struct pb_presence *p, int budget);
/* Serves the presence producer's delivery reports. */
void pb_presence_poll(struct pb_presence *p);
/* SIGTERM: says goodbye, waiting for Kafka until deadline_ms at most. */
void pb_presence_bye(struct pb_presence *p, int64_t deadline_ms);
void pb_presence_free(struct pb_presence *p);

/* kafka_undelivered.c */
int pb_kafka_undelivered_start(struct pb_kafka *k, char *errstr, size_t errlen);
/* 1 when an event of (topic, partition) for user goes to the undelivered
 * topic: it is set, the user has no connection anywhere, this node owns
 * the decision. */
int pb_kafka_undelivered_wanted(struct pb_kafka *k, const char *user, size_t len,
                                const char *topic, int32_t partition);
/* A Kafka message for user no one holds: produced unchanged, keyed by user,
 * with pushbridge-reason: offline added to its headers. */
void pb_kafka_undelivered_message(struct pb_kafka *k, const rd_kafka_message_t *msg,
                                  const char *user, size_t len);

/* kafka_dlq.c */
rd_kafka_t *pb_kafka_dead_letter_producer(struct pb_kafka *k, char *errstr, size_t errlen);
/* A malformed message: counted by reason, dead-lettered when configured,
 * logged once per MALFORMED_LOG_INTERVAL_MS. */
void pb_kafka_malformed(struct pb_kafka *k, const rd_kafka_message_t *msg, uint32_t src,
                        int reason, const char *detail);
/* The summary of the malformed events the interval did not log. */
void pb_kafka_flush_malformed_log(struct pb_kafka *k);

#endif

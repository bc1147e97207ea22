/* Counters, gauges and the delivery-latency histogram, rendered as
 * Prometheus text and as the /stats JSON. Plain integers touched only by the
 * loop thread: no atomics needed. Every table here has a fixed size. */
#ifndef PB_METRICS_H
#define PB_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "pushbridge/core/buf.h"
#include "pushbridge/core/config.h"
#include "pushbridge/core/drop.h"

/* A counter only its own thread writes and other threads read: a relaxed
 * atomic load and store (a plain move on x86, no lock), so the readers see
 * a whole value and ThreadSanitizer sees no race. */
#define PB_COUNT_ADD(x, n) \
    __atomic_store_n(&(x), __atomic_load_n(&(x), __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)
#define PB_COUNT(x) PB_COUNT_ADD(x, 1)
#define PB_READ(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)


/* Bound: at most this many sources (Kafka topics, plus "http"); a regex
 * subscription that matches more shares the last slot, named "_other". */
#define PB_METRICS_MAX_SOURCES 128
/* Bound: consumer lag is kept for at most this many partitions. */
#define PB_METRICS_MAX_PARTITIONS 1024
#define PB_METRICS_LAT_BUCKETS 14
#define PB_METRICS_MAX_STATUSES 16

#define PB_SOURCE_HTTP 0 /* source index of HTTP pushes */

/* Why events were lost before the bridge could read them (never delivered,
 * never dropped by choice): counted in offsets skipped. */
enum pb_lost_reason {
    /* The position fell off the log: retention (or --dev's size cap) deleted
     * offsets the bridge had not read, and auto.offset.reset moved it on. */
    PB_LOST_OUT_OF_RANGE = 0,
    PB_LOST__COUNT
};

/* "out_of_range", the label value of pushbridge_events_lost_total. */
const char *pb_lost_reason_name(int reason);

/* Why the public listener closed a connection at once (admission.c). */
enum pb_refused_reason {
    PB_REFUSED_PENDING = 0, /* ws.max_pending connections not yet logged in */
    PB_REFUSED_PER_IP,      /* ws.max_pending_per_ip from this address */
    PB_REFUSED_DESCRIPTORS, /* the descriptors kept for the rest of the process */
    PB_REFUSED__COUNT
};
/* "pending", "per_ip", "descriptors": the label of pushbridge_accept_refused_total. */
const char *pb_refused_reason_name(int reason);

struct pb_source_counters {
    char name[250];
    uint64_t consumed;
    uint64_t delivered;  /* frames handed to connection queues */
    uint64_t dropped[PB_DROP__COUNT];
    uint64_t dead_lettered;
    int32_t rule;       /* kafka.inputs position + 1 that reads this topic; 0 = none */
    const char *format; /* that rule's format (static); NULL = the envelope */
};

struct pb_partition_lag {
    uint32_t source;
    int32_t partition;
    int64_t lag; /* -1 = unknown */
};

/* Owned by the server; lives as long as the process. */
struct pb_metrics {
    struct pb_source_counters src[PB_METRICS_MAX_SOURCES];
    uint32_t nsrc;
    struct {
        int status;
        uint64_t count;
    } push[PB_METRICS_MAX_STATUSES];
    uint64_t slow_client_closes;
    uint64_t queue_drops;      /* frames dropped by drop_oldest */
    uint64_t connections_refused; /* over ws.max_connections */
    uint64_t accept_refused[PB_REFUSED__COUNT]; /* closed at accept (admission.c) */
    uint64_t origin_refused;      /* upgrades refused by ws.allowed_origins */
    uint64_t dead_letter_failures; /* malformed events that could not be dead-lettered */
    uint64_t kafka_outages;        /* times every broker became unreachable */
    uint64_t kafka_backpressure;   /* reads of Kafka held or cut short for a worker */
    uint64_t kafka_writes_refused[2]; /* by enum pb_write_kind: dead_letter, push */
    uint64_t commits;              /* successful offset commits */
    uint64_t commit_failures;
    uint64_t offset_store_failures; /* delivered offsets librdkafka would not store */
    uint64_t kafka_brokers_up;     /* brokers in state UP at the last statistics */
    uint64_t lost[PB_LOST__COUNT]; /* offsets skipped, by enum pb_lost_reason */
    /* Task state and history (store.c), by reason: max_tasks_per_user (or
     * max_events), max_bytes, ttl. */
    uint64_t state_evicted[3];
    uint64_t history_evicted[3];
    uint64_t resumes[2];      /* logins asking to resume: [0] not covered, [1] resumed */
    uint64_t coalesced;       /* queued task updates replaced by a newer one */
    uint64_t redeliveries;    /* Kafka offsets read again (rebalance, rebuild): not re-sent */
    uint64_t skipped_no_connection; /* events for users with no connection here, not parsed */
    /* Presence (presence.c) and kafka.undelivered_topic (kafka_undelivered.c). */
    uint64_t presence_in, presence_out, presence_out_bytes, presence_failures;
    uint64_t presence_overflow; /* remote users not kept: cluster.presence_max_users */
    uint64_t undelivered, undelivered_failures;
    uint64_t lat_buckets[PB_METRICS_LAT_BUCKETS + 1]; /* last = +Inf */
    double lat_sum;
    uint64_t lat_count;
    struct pb_partition_lag lag[PB_METRICS_MAX_PARTITIONS];
    uint32_t nlag;
    int64_t start_ms;
};

/* What the hub and Kafka module know at render time. */
struct pb_gauges {
    uint64_t connections;
    uint64_t pending_connections; /* public connections not yet logged in (admission.c) */
    uint64_t users;
    uint64_t queue_bytes;
    int kafka_ready;
    const char *kafka_bootstrap; /* --dev only, else NULL */
    const char *not_ready_reason;
    /* The consumer group's share of the partitions (SPEC 8). */
    int partitions_assigned, partitions_total;
    const char *group_warning; /* NULL unless another member shares the group */
    /* The store (task state and history). */
    uint64_t state_users, state_tasks, state_bytes, history_events, history_bytes;
    /* The workers (SPEC 11): open connections on each. */
    int nworkers;
    uint64_t worker_connections[PB_MAX_WORKERS];
    /* Threaded workers' inboxes (0 for worker 0, which takes its frames on
     * the main loop): frames (and control messages) handed over, and the
     * batches it took them in, a wake-up each. */
    uint64_t worker_handed[PB_MAX_WORKERS];
    uint64_t worker_wakeups[PB_MAX_WORKERS];
    /* Frames in each threaded worker's inbox not taken yet, now and at the
     * most (bounded: WORKER_BACKLOG_MAX, server.c). */
    uint64_t worker_backlog[PB_MAX_WORKERS];
    uint64_t worker_backlog_peak[PB_MAX_WORKERS];
    /* The counters to render instead of the server's own: those plus the
     * workers' (pb_metrics_add_worker); NULL with a single loop. */
    const struct pb_metrics *merged;
};

void pb_metrics_init(struct pb_metrics *m);
/* Index of the named source, added when new. */
uint32_t pb_metrics_source(struct pb_metrics *m, const char *name);
void pb_metrics_drop(struct pb_metrics *m, uint32_t source, int reason);
void pb_metrics_push_status(struct pb_metrics *m, int status);
void pb_metrics_latency(struct pb_metrics *m, double seconds);
/* Adds the counters a worker keeps (its connections' queues and writes:
 * slow-client closes, drops, refusals, coalesced updates, latency) to dst,
 * reading them atomically while the worker runs. */
void pb_metrics_add_worker(struct pb_metrics *dst, const struct pb_metrics *w);
/* Replaces the lag table entry for (source, partition). */
void pb_metrics_set_lag(struct pb_metrics *m, uint32_t source, int32_t partition, int64_t lag);
void pb_metrics_clear_lag(struct pb_metrics *m);

void pb_metrics_render_prometheus(const struct pb_metrics *m, const struct pb_gauges *g,
                                  struct pb_buf *out);
void pb_metrics_render_stats(const struct pb_metrics *m, const struct pb_gauges *g,
                             struct pb_buf *out);

int64_t pb_now_ms(void);      /* wall clock, ms since the epoch */
int64_t pb_monotonic_ms(void);

#endif

/* Metrics: fixed-size tables updated in place on the hot path (an index,
 * an increment) and rendered only when /metrics or /stats is read. */
#include "pushbridge/core/metrics.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Upper bounds of the latency buckets, in seconds. */
static const double lat_bounds[PB_METRICS_LAT_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

const char *pb_lost_reason_name(int reason)
{
    static const char *const names[PB_LOST__COUNT] = {"out_of_range"};
    return reason >= 0 && reason < PB_LOST__COUNT ? names[reason] : "unknown";
}

const char *pb_refused_reason_name(int reason)
{
    static const char *const names[PB_REFUSED__COUNT] = {"pending", "per_ip", "descriptors"};
    return reason >= 0 && reason < PB_REFUSED__COUNT ? names[reason] : "unknown";
}

int64_t pb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t pb_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void pb_metrics_init(struct pb_metrics *m)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->src[PB_SOURCE_HTTP].name, sizeof(m->src[0].name), "http");
    m->nsrc = 1;
    m->start_ms = pb_monotonic_ms();
}

uint32_t pb_metrics_source(struct pb_metrics *m, const char *name)
{
    for (uint32_t i = 0; i < m->nsrc; i++)
        if (strcmp(m->src[i].name, name) == 0)
            return i;
    if (m->nsrc < PB_METRICS_MAX_SOURCES - 1) {
        snprintf(m->src[m->nsrc].name, sizeof(m->src[0].name), "%s", name);
        return m->nsrc++;
    }
    /* Table full: everything else is counted under one "_other" row. */
    uint32_t last = PB_METRICS_MAX_SOURCES - 1;
    if (m->nsrc == last) {
        snprintf(m->src[last].name, sizeof(m->src[0].name), "_other");
        m->nsrc++;
    }
    return last;
}

void pb_metrics_drop(struct pb_metrics *m, uint32_t source, int reason)
{
    if (source < m->nsrc && reason > 0 && reason < PB_DROP__COUNT)
        m->src[source].dropped[reason]++;
}

void pb_metrics_push_status(struct pb_metrics *m, int status)
{
    for (int i = 0; i < PB_METRICS_MAX_STATUSES; i++) {
        if (m->push[i].status == status || m->push[i].status == 0) {
            m->push[i].status = status;
            m->push[i].count++;
            return;
        }
    }
}

void pb_metrics_latency(struct pb_metrics *m, double seconds)
{
    if (seconds < 0)
        seconds = 0; /* producer clock ahead of ours */
    int i = 0;
    while (i < PB_METRICS_LAT_BUCKETS && seconds > lat_bounds[i])
        i++;
    /* Written by the worker that wrote the frame, read by the main loop's
     * renderer: single-writer relaxed atomics (PB_COUNT). */
    PB_COUNT(m->lat_buckets[i]);
    double sum;
    __atomic_load(&m->lat_sum, &sum, __ATOMIC_RELAXED);
    sum += seconds;
    __atomic_store(&m->lat_sum, &sum, __ATOMIC_RELAXED);
    PB_COUNT(m->lat_count);
}

void pb_metrics_add_worker(struct pb_metrics *dst, const struct pb_metrics *w)
{
    dst->slow_client_closes += PB_READ(w->slow_client_closes);
    dst->queue_drops += PB_READ(w->queue_drops);
    dst->connections_refused += PB_READ(w->connections_refused);
    dst->origin_refused += PB_READ(w->origin_refused);
    dst->coalesced += PB_READ(w->coalesced);
    for (int i = 0; i <= PB_METRICS_LAT_BUCKETS; i++)
        dst->lat_buckets[i] += PB_READ(w->lat_buckets[i]);
    double sum;
    __atomic_load(&w->lat_sum, &sum, __ATOMIC_RELAXED);
    dst->lat_sum += sum;
    dst->lat_count += PB_READ(w->lat_count);
}

void pb_metrics_set_lag(struct pb_metrics *m, uint32_t source, int32_t partition, int64_t lag)
{
    for (uint32_t i = 0; i < m->nlag; i++) {
        if (m->lag[i].source == source && m->lag[i].partition == partition) {
            m->lag[i].lag = lag;
            return;
        }
    }
    if (m->nlag < PB_METRICS_MAX_PARTITIONS)
        m->lag[m->nlag++] = (struct pb_partition_lag){source, partition, lag};
}

void pb_metrics_clear_lag(struct pb_metrics *m)
{
    m->nlag = 0;
}

static void help(struct pb_buf *b, const char *name, const char *type, const char *text)
{
    pb_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

/* A metric with one value and no labels. */
static void scalar(struct pb_buf *b, const char *name, const char *type, const char *text,
                   uint64_t value)
{
    help(b, name, type, text);
    pb_buf_printf(b, "%s %llu\n", name, (unsigned long long)value);
}

/* One metric labelled by worker, for workers first..n-1. */
static void per_worker(struct pb_buf *b, const char *name, const char *type, const char *text,
                       const uint64_t *values, int first, int n)
{
    help(b, name, type, text);
    for (int k = first; k < n; k++)
        pb_buf_printf(b, "%s{worker=\"%d\"} %llu\n", name, k, (unsigned long long)values[k]);
}

/* The process, its connections and its Kafka consumer's health. */
static void render_process(const struct pb_metrics *m, const struct pb_gauges *g, struct pb_buf *b)
{
    scalar(b, "pushbridge_connections", "gauge", "Open WebSocket connections.",
           (uint64_t)(g->connections));
    scalar(b, "pushbridge_users", "gauge", "Users with at least one authenticated connection.",
           (uint64_t)(g->users));
    scalar(b, "pushbridge_queue_bytes", "gauge", "Bytes waiting in outgoing connection queues.",
           (uint64_t)(g->queue_bytes));
    per_worker(b, "pushbridge_worker_connections", "gauge",
               "Open connections on each event-loop worker.", g->worker_connections, 0,
               g->nworkers);
    /* The inbox figures exist for the threaded workers only (from 1). */
    per_worker(b, "pushbridge_worker_handed_total", "counter",
               "Frames (and control messages) the main loop handed to each threaded worker's "
               "inbox.",
               g->worker_handed, 1, g->nworkers);
    per_worker(b, "pushbridge_worker_wakeups_total", "counter",
               "Batches each threaded worker took from its inbox: one wake-up each.",
               g->worker_wakeups, 1, g->nworkers);
    per_worker(b, "pushbridge_worker_backlog_frames", "gauge",
               "Frames waiting in each threaded worker's inbox, not taken by it yet.",
               g->worker_backlog, 1, g->nworkers);
    per_worker(b, "pushbridge_worker_backlog_peak_frames", "gauge",
               "The most frames that waited in each threaded worker's inbox at once since start.",
               g->worker_backlog_peak, 1, g->nworkers);
    help(b, "pushbridge_kafka_ready", "gauge", "1 when Kafka partitions are assigned.");
    pb_buf_printf(b, "pushbridge_kafka_ready %d\n", g->kafka_ready);
    scalar(b, "pushbridge_kafka_brokers_up", "gauge",
           "Kafka brokers the consumer is connected to (from librdkafka statistics).",
           (uint64_t)(m->kafka_brokers_up));
    scalar(b, "pushbridge_kafka_outages_total", "counter",
           "Times every Kafka broker became unreachable.", (uint64_t)(m->kafka_outages));
    scalar(b, "pushbridge_kafka_backpressure_total", "counter",
           "Times reading Kafka was held back or cut short because a worker's inbox was full.",
           (uint64_t)(m->kafka_backpressure));
    scalar(b, "pushbridge_kafka_commits_total", "counter", "Successful offset commits.",
           (uint64_t)(m->commits));
    scalar(b, "pushbridge_kafka_commit_failures_total", "counter", "Failed offset commits.",
           (uint64_t)(m->commit_failures));
    scalar(b, "pushbridge_kafka_offset_store_failures_total", "counter",
           "Delivered messages whose offset could not be stored for commit (e.g. the partition "
           "was revoked): they are read again.",
           m->offset_store_failures);
    help(b, "pushbridge_uptime_seconds", "gauge", "Seconds since start.");
    pb_buf_printf(b, "pushbridge_uptime_seconds %lld\n",
                  (long long)((pb_monotonic_ms() - m->start_ms) / 1000));
}

/* Events by source topic: read, delivered, dropped, lost, dead-lettered. */
static void render_events(const struct pb_metrics *m, struct pb_buf *b)
{
    help(b, "pushbridge_events_consumed_total", "counter", "Events read, by source topic.");
    for (uint32_t i = 0; i < m->nsrc; i++)
        pb_buf_printf(b, "pushbridge_events_consumed_total{topic=\"%s\"} %llu\n", m->src[i].name,
                      (unsigned long long)m->src[i].consumed);
    help(b, "pushbridge_events_delivered_total", "counter",
         "Frames handed to connection queues, by source topic.");
    for (uint32_t i = 0; i < m->nsrc; i++)
        pb_buf_printf(b, "pushbridge_events_delivered_total{topic=\"%s\"} %llu\n", m->src[i].name,
                      (unsigned long long)m->src[i].delivered);
    help(b, "pushbridge_events_dropped_total", "counter",
         "Events not delivered, by source topic and reason.");
    for (uint32_t i = 0; i < m->nsrc; i++)
        for (int r = 1; r < PB_DROP__COUNT; r++)
            pb_buf_printf(b, "pushbridge_events_dropped_total{topic=\"%s\",reason=\"%s\"} %llu\n",
                          m->src[i].name, pb_drop_reason_name(r),
                          (unsigned long long)m->src[i].dropped[r]);
    help(b, "pushbridge_events_lost_total", "counter",
         "Kafka offsets skipped unread, by reason (out_of_range: deleted by retention "
         "before the bridge read them).");
    for (int r = 0; r < PB_LOST__COUNT; r++)
        pb_buf_printf(b, "pushbridge_events_lost_total{reason=\"%s\"} %llu\n",
                      pb_lost_reason_name(r), (unsigned long long)m->lost[r]);
    help(b, "pushbridge_events_dead_lettered_total", "counter",
         "Malformed events produced to the dead-letter topic.");
    for (uint32_t i = 0; i < m->nsrc; i++)
        pb_buf_printf(b, "pushbridge_events_dead_lettered_total{topic=\"%s\"} %llu\n",
                      m->src[i].name, (unsigned long long)m->src[i].dead_lettered);

    scalar(b, "pushbridge_dead_letter_failures_total", "counter",
           "Malformed events that could not be produced to the dead-letter topic.",
           (uint64_t)(m->dead_letter_failures));
    help(b, "pushbridge_kafka_writes_refused_total", "counter",
         "Messages Kafka refused to take (no ACL, login or certificate refused), by the topic "
         "they were for: dead_letter (kafka.dead_letter_topic), push (push.topic).");
    pb_buf_printf(b, "pushbridge_kafka_writes_refused_total{topic=\"dead_letter\"} %llu\n",
                  (unsigned long long)m->kafka_writes_refused[0]);
    pb_buf_printf(b, "pushbridge_kafka_writes_refused_total{topic=\"push\"} %llu\n",
                  (unsigned long long)m->kafka_writes_refused[1]);
}

/* HTTP pushes, slow clients and the connections refused. */
static void render_admission(const struct pb_metrics *m, const struct pb_gauges *g,
                             struct pb_buf *b)
{
    help(b, "pushbridge_push_requests_total", "counter", "HTTP push calls, by status.");
    for (int i = 0; i < PB_METRICS_MAX_STATUSES && m->push[i].status; i++)
        pb_buf_printf(b, "pushbridge_push_requests_total{status=\"%d\"} %llu\n", m->push[i].status,
                      (unsigned long long)m->push[i].count);
    scalar(b, "pushbridge_slow_client_closes_total", "counter",
           "Connections closed because their outgoing queue was full.",
           (uint64_t)(m->slow_client_closes));
    scalar(b, "pushbridge_queue_dropped_total", "counter",
           "Frames dropped from full queues (ws.slow_client drop_oldest).",
           (uint64_t)(m->queue_drops));
    scalar(b, "pushbridge_connections_refused_total", "counter",
           "Connections refused at ws.max_connections.", (uint64_t)(m->connections_refused));
    scalar(b, "pushbridge_pending_connections", "gauge",
           "Public connections accepted and not yet authenticated (bound: ws.max_pending).",
           g->pending_connections);
    help(b, "pushbridge_accept_refused_total", "counter",
         "Public connections closed at accept, by reason (pending, per_ip, descriptors).");
    for (int r = 0; r < PB_REFUSED__COUNT; r++)
        pb_buf_printf(b, "pushbridge_accept_refused_total{reason=\"%s\"} %llu\n",
                      pb_refused_reason_name(r), (unsigned long long)m->accept_refused[r]);

    scalar(b, "pushbridge_origin_refused_total", "counter",
           "WebSocket upgrades refused with 403 by ws.allowed_origins.",
           (uint64_t)(m->origin_refused));
}

/* Task state and resume history (store.c), and what skipped the queues. */
static void render_store(const struct pb_metrics *m, const struct pb_gauges *g, struct pb_buf *b)
{
    scalar(b, "pushbridge_state_tasks", "gauge", "Tasks whose latest event is kept (SPEC 7).",
           g->state_tasks);
    scalar(b, "pushbridge_state_users", "gauge", "Users with kept tasks or history.",
           g->state_users);
    scalar(b, "pushbridge_state_bytes", "gauge", "Bytes of task state (bound: state.max_bytes).",
           g->state_bytes);
    scalar(b, "pushbridge_history_events", "gauge", "Events kept in the resume history.",
           g->history_events);
    scalar(b, "pushbridge_history_bytes", "gauge",
           "Bytes of resume history (bound: history.max_bytes).", g->history_bytes);
    static const char *const state_reasons[] = {"max_tasks_per_user", "max_bytes", "ttl"};
    static const char *const hist_reasons[] = {"max_events", "max_bytes", "ttl"};
    help(b, "pushbridge_state_evictions_total", "counter", "Tasks forgotten, by reason.");
    for (int r = 0; r < 3; r++)
        pb_buf_printf(b, "pushbridge_state_evictions_total{reason=\"%s\"} %llu\n",
                      state_reasons[r], (unsigned long long)m->state_evicted[r]);
    help(b, "pushbridge_history_evictions_total", "counter",
         "Events that left the resume history, by reason.");
    for (int r = 0; r < 3; r++)
        pb_buf_printf(b, "pushbridge_history_evictions_total{reason=\"%s\"} %llu\n",
                      hist_reasons[r], (unsigned long long)m->history_evicted[r]);
    help(b, "pushbridge_resumes_total", "counter",
         "Logins that asked to resume, by whether the history covered the gap.");
    pb_buf_printf(b, "pushbridge_resumes_total{resumed=\"true\"} %llu\n",
                  (unsigned long long)m->resumes[1]);
    pb_buf_printf(b, "pushbridge_resumes_total{resumed=\"false\"} %llu\n",
                  (unsigned long long)m->resumes[0]);
    scalar(b, "pushbridge_coalesced_total", "counter",
           "Queued task updates replaced by a newer one (ws.slow_client coalesce).",
           m->coalesced);
    scalar(b, "pushbridge_events_skipped_total", "counter",
           "Events for users with no connection on this node, skipped before parsing (SPEC 8).",
           m->skipped_no_connection);
}

/* Cluster mode: presence traffic, and the offline fallback topic (SPEC 8). */
static void render_cluster(const struct pb_metrics *m, struct pb_buf *b)
{
    help(b, "pushbridge_presence_messages_total", "counter",
         "Presence messages (cluster.presence_topic) written by this node and read from all.");
    pb_buf_printf(b, "pushbridge_presence_messages_total{direction=\"out\"} %llu\n",
                  (unsigned long long)m->presence_out);
    pb_buf_printf(b, "pushbridge_presence_messages_total{direction=\"in\"} %llu\n",
                  (unsigned long long)m->presence_in);
    scalar(b, "pushbridge_presence_bytes_written_total", "counter",
           "Bytes of presence messages written by this node.", m->presence_out_bytes);
    scalar(b, "pushbridge_presence_failures_total", "counter",
           "Presence messages Kafka did not take (the others wait for the next snapshot).",
           m->presence_failures);
    scalar(b, "pushbridge_presence_overflow_total", "counter",
           "Other nodes' users not kept past cluster.presence_max_users.", m->presence_overflow);
    scalar(b, "pushbridge_undelivered_total", "counter",
           "Events for users connected nowhere produced to kafka.undelivered_topic.",
           m->undelivered);
    scalar(b, "pushbridge_undelivered_failures_total", "counter",
           "Events for users connected nowhere that could not be produced to "
           "kafka.undelivered_topic.",
           m->undelivered_failures);
}

/* The consumer group's share of the partitions, redeliveries and lag. */
static void render_group(const struct pb_metrics *m, const struct pb_gauges *g, struct pb_buf *b)
{
    help(b, "pushbridge_kafka_partitions_assigned", "gauge",
         "Partitions of the subscribed topics this bridge's consumer holds.");
    pb_buf_printf(b, "pushbridge_kafka_partitions_assigned %d\n", g->partitions_assigned);
    help(b, "pushbridge_kafka_group_shared", "gauge",
         "1 when another consumer shares this bridge's group (it holds fewer partitions than "
         "its topics have).");
    pb_buf_printf(b, "pushbridge_kafka_group_shared %d\n", g->group_warning ? 1 : 0);
    scalar(b, "pushbridge_redeliveries_skipped_total", "counter",
           "Kafka messages read again (a rebalance, the rebuild at start) and not sent twice.",
           m->redeliveries);

    help(b, "pushbridge_consumer_lag", "gauge", "Messages behind the high watermark.");
    for (uint32_t i = 0; i < m->nlag; i++)
        pb_buf_printf(b, "pushbridge_consumer_lag{topic=\"%s\",partition=\"%d\"} %lld\n",
                      m->src[m->lag[i].source].name, m->lag[i].partition, (long long)m->lag[i].lag);
}

/* The delivery-latency histogram. */
static void render_latency(const struct pb_metrics *m, struct pb_buf *b)
{
    help(b, "pushbridge_delivery_latency_seconds", "histogram",
         "From the Kafka message timestamp (or HTTP receipt) to the socket write.");
    uint64_t cum = 0;
    for (int i = 0; i < PB_METRICS_LAT_BUCKETS; i++) {
        cum += m->lat_buckets[i];
        pb_buf_printf(b, "pushbridge_delivery_latency_seconds_bucket{le=\"%g\"} %llu\n",
                      lat_bounds[i], (unsigned long long)cum);
    }
    cum += m->lat_buckets[PB_METRICS_LAT_BUCKETS];
    pb_buf_printf(b, "pushbridge_delivery_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
                  (unsigned long long)cum);
    pb_buf_printf(b, "pushbridge_delivery_latency_seconds_sum %.6f\n", m->lat_sum);
    pb_buf_printf(b, "pushbridge_delivery_latency_seconds_count %llu\n",
                  (unsigned long long)m->lat_count);
}

/* Label values are topic names: Kafka allows [a-zA-Z0-9._-], nothing to
 * escape; "_other" and "http" likewise. */
void pb_metrics_render_prometheus(const struct pb_metrics *m, const struct pb_gauges *g,
                                  struct pb_buf *b)
{
    if (g->merged)
        m = g->merged;
    render_process(m, g, b);
    render_events(m, b);
    render_admission(m, g, b);
    render_store(m, g, b);
    render_cluster(m, b);
    render_group(m, g, b);
    render_latency(m, b);
}

void pb_metrics_render_stats(const struct pb_metrics *m, const struct pb_gauges *g,
                             struct pb_buf *b)
{
    if (g->merged)
        m = g->merged;
    pb_buf_printf(b,
                  "{\"connections\":%llu,\"users\":%llu,\"queue_bytes\":%llu,\"uptime_s\":%lld,"
                  "\"kafka_ready\":%s,",
                  (unsigned long long)g->connections, (unsigned long long)g->users,
                  (unsigned long long)g->queue_bytes,
                  (long long)((pb_monotonic_ms() - m->start_ms) / 1000),
                  g->kafka_ready ? "true" : "false");
    if (g->kafka_bootstrap) {
        pb_buf_puts(b, "\"kafka_bootstrap\":");
        pb_buf_json_string(b, g->kafka_bootstrap, strlen(g->kafka_bootstrap));
        pb_buf_puts(b, ",");
    }
    pb_buf_puts(b, "\"workers\":[");
    for (int k = 0; k < g->nworkers; k++)
        pb_buf_printf(b,
                      "%s{\"worker\":%d,\"connections\":%llu,\"handed\":%llu,\"wakeups\":%llu,"
                      "\"backlog\":%llu,\"backlog_peak\":%llu}",
                      k ? "," : "", k, (unsigned long long)g->worker_connections[k],
                      (unsigned long long)g->worker_handed[k],
                      (unsigned long long)g->worker_wakeups[k],
                      (unsigned long long)g->worker_backlog[k],
                      (unsigned long long)g->worker_backlog_peak[k]);
    pb_buf_puts(b, "],");
    pb_buf_printf(b, "\"slow_client_closes\":%llu,\"queue_dropped\":%llu,\"events_lost\":{",
                  (unsigned long long)m->slow_client_closes, (unsigned long long)m->queue_drops);
    for (int r = 0; r < PB_LOST__COUNT; r++)
        pb_buf_printf(b, "%s\"%s\":%llu", r ? "," : "", pb_lost_reason_name(r),
                      (unsigned long long)m->lost[r]);
    pb_buf_printf(b, "},\"group_partitions\":{\"assigned\":%d,\"total\":%d},\"group_shared\":%s",
                  g->partitions_assigned, g->partitions_total,
                  g->group_warning ? "true" : "false");
    if (g->group_warning) {
        pb_buf_puts(b, ",\"group_warning\":");
        pb_buf_json_string(b, g->group_warning, strlen(g->group_warning));
    }
    pb_buf_printf(b,
                  ",\"state\":{\"users\":%llu,\"tasks\":%llu,\"bytes\":%llu},"
                  "\"history\":{\"events\":%llu,\"bytes\":%llu}",
                  (unsigned long long)g->state_users, (unsigned long long)g->state_tasks,
                  (unsigned long long)g->state_bytes, (unsigned long long)g->history_events,
                  (unsigned long long)g->history_bytes);
    pb_buf_puts(b, ",\"topics\":{");
    for (uint32_t i = 0; i < m->nsrc; i++) {
        const struct pb_source_counters *s = &m->src[i];
        uint64_t dropped = 0;
        for (int r = 1; r < PB_DROP__COUNT; r++)
            dropped += s->dropped[r];
        pb_buf_printf(b,
                      "%s\"%s\":{\"consumed\":%llu,\"delivered\":%llu,\"dropped\":%llu,"
                      "\"dead_lettered\":%llu,",
                      i ? "," : "", s->name, (unsigned long long)s->consumed,
                      (unsigned long long)s->delivered, (unsigned long long)dropped,
                      (unsigned long long)s->dead_lettered);
        /* Drops by reason, for the operator page (zero reasons left out). */
        pb_buf_puts(b, "\"dropped_by_reason\":{");
        for (int r = 1, n = 0; r < PB_DROP__COUNT; r++)
            if (s->dropped[r])
                pb_buf_printf(b, "%s\"%s\":%llu", n++ ? "," : "", pb_drop_reason_name(r),
                              (unsigned long long)s->dropped[r]);
        /* Which kafka.inputs rule reads the topic (SPEC 12). */
        if (s->rule)
            pb_buf_printf(b, "},\"rule\":%d,\"format\":\"%s\"", (int)s->rule - 1,
                          s->format ? s->format : "envelope");
        else
            pb_buf_puts(b, "},\"rule\":null,\"format\":\"envelope\"");
        pb_buf_puts(b, ",\"lag\":");
        int64_t lag = 0;
        int any = 0;
        for (uint32_t k = 0; k < m->nlag; k++)
            if (m->lag[k].source == i && m->lag[k].lag >= 0) {
                lag += m->lag[k].lag;
                any = 1;
            }
        if (any)
            pb_buf_printf(b, "%lld}", (long long)lag);
        else
            pb_buf_puts(b, "null}");
    }
    /* Lag per partition, as the Prometheus gauge has it. */
    pb_buf_puts(b, "},\"partitions\":[");
    for (uint32_t k = 0; k < m->nlag; k++)
        pb_buf_printf(b, "%s{\"topic\":\"%s\",\"partition\":%d,\"lag\":%lld}", k ? "," : "",
                      m->src[m->lag[k].source].name, m->lag[k].partition,
                      (long long)m->lag[k].lag);
    pb_buf_puts(b, "]}");
}

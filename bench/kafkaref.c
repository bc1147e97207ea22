/* pb-kafkaref: the Kafka-alone latency reference of the benchmarks
 * (bench/run.sh, docs/PERFORMANCE.md). A plain librdkafka consumer takes the
 * bridge's place for pb-produce's load: the same broker, topic, rate and
 * consumer properties, no sockets and no clients. What it measures (receive
 * time minus the "t" pb-produce put in each event's data) is the latency the
 * producer, the broker and the consumer alone give on this machine, which the
 * bridge's end-to-end latency cannot go below; the difference is the bridge's.
 *
 * With --embedded it runs librdkafka's mock cluster in its own process, as
 * `pushbridge --dev` does, and writes the bootstrap address to
 * --bootstrap-file; otherwise it reads --brokers. It assigns every partition
 * of the topic at its current end (no consumer group: nothing to join), writes
 * --ready-file once it did, and stops --idle seconds after the last message
 * (once one came), after --count messages, or at --timeout. Prints one JSON
 * object. */
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"

#define MAX_PROPERTIES 32
#define POLL_MS 100
#define METADATA_WAIT_US (15u * 1000000u)

struct opts {
    const char *brokers;
    int embedded;
    const char *bootstrap_file;
    const char *topic;
    const char *properties;   /* "k=v,k=v": the bridge's PUSHBRIDGE_KAFKA_PROPERTIES */
    const char *ready_file;
    uint64_t count;           /* stop after this many messages, 0 = no bound */
    double idle_s;            /* stop this long after the last message */
    double timeout_s;
};

/* What one run saw; the report's members. */
struct seen {
    uint64_t messages;
    uint64_t unparsed;        /* no "t" in the value: not pb-produce's */
    uint64_t errors;          /* consumer errors (librdkafka's event messages) */
    uint64_t first_us, last_us; /* monotonic */
    struct hist lat;
};

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* run.sh polls for the files this writes. */
static int write_file(const char *path, const char *text)
{
    return path ? bench_write_file(path, text) : 0;
}

/* s without the blanks around it (in place). */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

/* "k=v,k=v" into conf, as the bridge reads kafka.properties from its
 * environment: blanks around each piece dropped, a piece without '='
 * continuing the previous value. */
static int set_properties(rd_kafka_conf_t *conf, const char *list, char *err, size_t errlen)
{
    if (!list || !*list)
        return 0;
    char *copy = strdup(list), *rest = copy, *keys[MAX_PROPERTIES];
    static char value[MAX_PROPERTIES][4096];
    int n = 0, rc = 0;
    if (!copy) {
        snprintf(err, errlen, "--properties: out of memory");
        return -1;
    }
    for (char *p; !rc && (p = strsep(&rest, ","));) {
        char *eq = strchr(p, '=');
        if (eq)
            *eq = '\0';
        if (!eq && n == 0) {
            snprintf(err, errlen, "--properties: \"%s\" is not key=value", p);
            rc = -1;
        } else if (eq && n == MAX_PROPERTIES) {
            snprintf(err, errlen, "--properties: more than %d properties", MAX_PROPERTIES);
            rc = -1;
        } else {
            char *v = eq ? value[n] : value[n - 1];
            size_t l = eq ? 0 : strlen(v);
            if (eq)
                keys[n++] = trim(p);
            if ((size_t)snprintf(v + l, sizeof(value[0]) - l, "%s%s", eq ? "" : ",",
                                 trim(eq ? eq + 1 : p)) >= sizeof(value[0]) - l) {
                snprintf(err, errlen, "--properties: the value of %s is too long", keys[n - 1]);
                rc = -1;
            }
        }
    }
    for (int i = 0; i < n && !rc; i++)
        rc = rd_kafka_conf_set(conf, keys[i], value[i], err, errlen) != RD_KAFKA_CONF_OK;
    free(copy);
    return rc ? -1 : 0;
}

/* --embedded: a one-broker mock cluster with the topic, kept by a producer
 * handle of its own, as the bridge's --dev keeps it. */
static rd_kafka_t *embedded_start(const struct opts *o, rd_kafka_mock_cluster_t **cluster)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* It never connects anywhere: no warning about bootstrap.servers. */
    if (rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err))) {
        fprintf(stderr, "pb-kafkaref: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "pb-kafkaref: embedded Kafka: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, 1);
    rd_kafka_resp_err_t e = mc ? rd_kafka_mock_topic_create(mc, o->topic, 1, 1)
                               : RD_KAFKA_RESP_ERR__FAIL;
    if (e) {
        fprintf(stderr, "pb-kafkaref: embedded Kafka: %s\n", rd_kafka_err2str(e));
        if (mc)
            rd_kafka_mock_cluster_destroy(mc);
        rd_kafka_destroy(rk);
        return NULL;
    }
    *cluster = mc;
    return rk;
}

static rd_kafka_t *consumer_new(const struct opts *o, const char *bootstrap)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "group.id", "pb-kafkaref", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "client.id", "pb-kafkaref", err, sizeof(err)) ||
        set_properties(conf, o->properties, err, sizeof(err))) {
        fprintf(stderr, "pb-kafkaref: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "pb-kafkaref: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

/* Every partition of the topic at its high watermark, asked of the broker
 * now: messages produced after the ready file appears are all read. */
static int assign_at_end(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e = t ? RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC : RD_KAFKA_RESP_ERR__FAIL;
    /* A topic pb-produce has just created may not be in every broker's
     * metadata yet: ask again for a while. */
    uint64_t until = bench_mono_us() + METADATA_WAIT_US;
    while (t && e && bench_mono_us() < until && !g_stop) {
        if (md)
            rd_kafka_metadata_destroy(md);
        md = NULL;
        e = rd_kafka_metadata(rk, 0, t, &md, 5000);
        if (!e && (md->topic_cnt != 1 || md->topics[0].err || !md->topics[0].partition_cnt))
            e = md->topic_cnt == 1 && md->topics[0].err ? md->topics[0].err
                                                        : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
        if (e)
            nanosleep(&(struct timespec){.tv_nsec = 200000000}, NULL);
    }
    if (e) {
        fprintf(stderr, "pb-kafkaref: no metadata for topic %s: %s\n", topic, rd_kafka_err2str(e));
        if (md)
            rd_kafka_metadata_destroy(md);
        if (t)
            rd_kafka_topic_destroy(t);
        return -1;
    }
    int np = md->topics[0].partition_cnt, rc = 0;
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(np);
    for (int i = 0; i < np && !rc; i++) {
        int32_t p = md->topics[0].partitions[i].id;
        int64_t lo, hi;
        e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
        if (e) {
            fprintf(stderr, "pb-kafkaref: %s [%d]: end offset: %s\n", topic, p, rd_kafka_err2str(e));
            rc = -1;
        }
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = hi;
    }
    if (!rc && (e = rd_kafka_assign(rk, parts))) {
        fprintf(stderr, "pb-kafkaref: assign: %s\n", rd_kafka_err2str(e));
        rc = -1;
    }
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    return rc;
}

/* The "t" of pb-produce's data, {"s":..,"t":<µs realtime>}: 0 when absent. */
static uint64_t event_time_us(const char *p, size_t n)
{
    static const char key[] = "\"t\":";
    const char *end = p + n, *at = p;
    while ((at = memchr(at, '"', (size_t)(end - at))) && (size_t)(end - at) > sizeof(key) - 1) {
        if (memcmp(at, key, sizeof(key) - 1) == 0) {
            uint64_t v = 0;
            for (at += sizeof(key) - 1; at < end && *at >= '0' && *at <= '9'; at++)
                v = v * 10 + (uint64_t)(*at - '0');
            return v;
        }
        at++;
    }
    return 0;
}

static void consume(rd_kafka_t *rk, const struct opts *o, struct seen *s)
{
    uint64_t t0 = bench_mono_us();
    while (!g_stop) {
        uint64_t now = bench_mono_us();
        if (now - t0 > (uint64_t)(o->timeout_s * 1e6) ||
            (s->messages && now - s->last_us > (uint64_t)(o->idle_s * 1e6)) ||
            (o->count && s->messages >= o->count))
            return;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, POLL_MS);
        if (!m)
            continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                s->errors++;
            rd_kafka_message_destroy(m);
            continue;
        }
        uint64_t recv = bench_realtime_us();
        uint64_t t = m->payload ? event_time_us(m->payload, m->len) : 0;
        s->last_us = bench_mono_us();
        if (!s->messages++)
            s->first_us = s->last_us;
        if (t)
            hist_add(&s->lat, recv > t ? recv - t : 0);
        else
            s->unparsed++;
        rd_kafka_message_destroy(m);
    }
}

static void report(const struct seen *s)
{
    struct jw w;
    double u, sy;
    bench_cpu_self(&u, &sy);
    jw_begin(&w, stdout);
    jw_u64(&w, "messages", s->messages);
    jw_u64(&w, "unparsed", s->unparsed);
    jw_u64(&w, "consumer_errors", s->errors);
    jw_f(&w, "recv_window_s", (double)(s->last_us - s->first_us) / 1e6);
    jw_hist(&w, "lat", &s->lat);
    jw_f(&w, "process_cpu_s", u + sy);
    jw_end(&w);
}

static void usage(FILE *f)
{
    fputs("Usage: pb-kafkaref (--brokers B | --embedded) [options]\n"
          "  --brokers B          Kafka bootstrap servers\n"
          "  --embedded           run librdkafka's mock cluster in this process\n"
          "  --bootstrap-file F   with --embedded: write its bootstrap address to F\n"
          "  --topic T            topic (default pushbridge.events)\n"
          "  --properties P       consumer properties, k=v,k=v\n"
          "  --ready-file F       written once the topic's partitions are assigned\n"
          "  --count N            stop after N messages (default 0: no bound)\n"
          "  --idle S             stop S seconds after the last message (default 3)\n"
          "  --timeout S          stop after S seconds in any case (default 120)\n",
          f);
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    enum { OPT_BROKERS = 256, OPT_EMBEDDED, OPT_BOOTFILE, OPT_TOPIC, OPT_PROPS, OPT_READY,
           OPT_COUNT, OPT_IDLE, OPT_TIMEOUT };
    static const struct option lo[] = {
        {"brokers", required_argument, NULL, OPT_BROKERS},
        {"embedded", no_argument, NULL, OPT_EMBEDDED},
        {"bootstrap-file", required_argument, NULL, OPT_BOOTFILE},
        {"topic", required_argument, NULL, OPT_TOPIC},
        {"properties", required_argument, NULL, OPT_PROPS},
        {"ready-file", required_argument, NULL, OPT_READY},
        {"count", required_argument, NULL, OPT_COUNT},
        {"idle", required_argument, NULL, OPT_IDLE},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct opts){.topic = "pushbridge.events", .idle_s = 3, .timeout_s = 120};
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case OPT_BROKERS: o->brokers = optarg; break;
        case OPT_EMBEDDED: o->embedded = 1; break;
        case OPT_BOOTFILE: o->bootstrap_file = optarg; break;
        case OPT_TOPIC: o->topic = optarg; break;
        case OPT_PROPS: o->properties = optarg; break;
        case OPT_READY: o->ready_file = optarg; break;
        case OPT_COUNT: o->count = strtoull(optarg, NULL, 10); break;
        case OPT_IDLE: o->idle_s = atof(optarg); break;
        case OPT_TIMEOUT: o->timeout_s = atof(optarg); break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (!o->brokers == !o->embedded || o->idle_s <= 0 || o->timeout_s <= 0) {
        fprintf(stderr, "pb-kafkaref: bad options (see --help)\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse_opts(argc, argv, &o))
        return 2;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    const char *bootstrap = o.brokers;
    rd_kafka_mock_cluster_t *cluster = NULL;
    rd_kafka_t *mock = o.embedded ? embedded_start(&o, &cluster) : NULL;
    if (o.embedded) {
        if (!mock)
            return 1;
        bootstrap = rd_kafka_mock_cluster_bootstraps(cluster);
        if (write_file(o.bootstrap_file, bootstrap)) {
            fprintf(stderr, "pb-kafkaref: cannot write %s\n", o.bootstrap_file);
            rd_kafka_mock_cluster_destroy(cluster);
            rd_kafka_destroy(mock);
            return 1;
        }
    }
    struct seen *s = calloc(1, sizeof(*s));
    rd_kafka_t *rk = s ? consumer_new(&o, bootstrap) : NULL;
    int rc = 1;
    if (rk && assign_at_end(rk, o.topic) == 0) {
        if (write_file(o.ready_file, "ready\n")) {
            fprintf(stderr, "pb-kafkaref: cannot write %s\n", o.ready_file);
        } else {
            consume(rk, &o, s);
            report(s);
            rc = 0;
        }
    }
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    if (mock) {
        rd_kafka_mock_cluster_destroy(cluster);
        rd_kafka_destroy(mock);
    }
    free(s);
    return rc;
}

/* Unit tests of the metrics module: the source table and its "_other" overflow, the latency
 * histogram, push statuses, drop counters and the lag table, read back the way a scraper
 * does (by parsing the Prometheus text) and through the /stats JSON, which must stay valid. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pushbridge/core/metrics.h"
#include "pushbridge/event/envelope.h"

static int setup(void **state)
{
    struct pb_metrics *m = malloc(sizeof(*m));
    assert_non_null(m);
    pb_metrics_init(m);
    *state = m;
    return 0;
}

static int teardown(void **state)
{
    free(*state);
    return 0;
}

/* ---- reading the rendered text ---- */

struct page {
    struct pb_buf buf;
};

static const char *render_prometheus(struct page *p, const struct pb_metrics *m,
                                     const struct pb_gauges *g)
{
    static const struct pb_gauges none = {0};
    pb_buf_init(&p->buf, 16 << 20);
    pb_metrics_render_prometheus(m, g ? g : &none, &p->buf);
    assert_false(p->buf.truncated);
    assert_non_null(p->buf.data);
    return p->buf.data;
}

static const char *render_stats(struct page *p, const struct pb_metrics *m,
                                const struct pb_gauges *g)
{
    static const struct pb_gauges none = {0};
    pb_buf_init(&p->buf, 16 << 20);
    pb_metrics_render_stats(m, g ? g : &none, &p->buf);
    assert_false(p->buf.truncated);
    char detail[160] = "";
    if (pb_json_validate(p->buf.data, p->buf.len, detail, sizeof(detail)) != 0)
        fail_msg("stats is not valid JSON (%s): %s", detail, p->buf.data);
    return p->buf.data;
}

static void page_free(struct page *p)
{
    pb_buf_free(&p->buf);
}

/* The value of the sample whose name-and-labels part is exactly series, or NAN when the page
 * has no such line. Fails on a duplicate series. */
static double sample(const char *page, const char *series)
{
    size_t n = strlen(series);
    double v = NAN;
    int found = 0;
    for (const char *line = page; *line;) {
        const char *end = strchr(line, '\n');
        if (!end)
            end = line + strlen(line);
        if ((size_t)(end - line) > n && strncmp(line, series, n) == 0 && line[n] == ' ') {
            if (found++)
                fail_msg("series %s appears twice", series);
            v = strtod(line + n + 1, NULL);
        }
        line = *end ? end + 1 : end;
    }
    return v;
}

static void expect_sample(const char *page, const char *series, double want)
{
    double got = sample(page, series);
    if (isnan(got))
        fail_msg("no sample %s in:\n%s", series, page);
    if (fabs(got - want) > 1e-9)
        fail_msg("%s is %g, expected %g", series, got, want);
}

static int count_lines(const char *page, const char *prefix)
{
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *line = page; *line;) {
        if (strncmp(line, prefix, len) == 0)
            n++;
        const char *end = strchr(line, '\n');
        if (!end)
            break;
        line = end + 1;
    }
    return n;
}

/* ---- sources ---- */

static void test_sources(void **state)
{
    struct pb_metrics *m = *state;
    assert_int_equal(m->nsrc, 1);
    assert_string_equal(m->src[PB_SOURCE_HTTP].name, "http");
    assert_int_equal(pb_metrics_source(m, "http"), PB_SOURCE_HTTP);
    uint32_t t1 = pb_metrics_source(m, "orders");
    uint32_t t2 = pb_metrics_source(m, "progress");
    assert_int_equal(t1, 1);
    assert_int_equal(t2, 2);
    assert_int_equal(pb_metrics_source(m, "orders"), t1);
    assert_int_equal(pb_metrics_source(m, "progress"), t2);
    assert_int_equal(m->nsrc, 3);
    assert_string_equal(m->src[t1].name, "orders");
    /* A 249-byte name (Kafka's longest topic) is kept whole and found again. */
    char longest[250];
    memset(longest, 't', 249);
    longest[249] = '\0';
    uint32_t tl = pb_metrics_source(m, longest);
    assert_string_equal(m->src[tl].name, longest);
    assert_int_equal(pb_metrics_source(m, longest), tl);
    assert_int_equal(m->nsrc, 4);
}

static void test_sources_overflow(void **state)
{
    struct pb_metrics *m = *state;
    char name[32];
    /* Slots 1 .. MAX-2 take named topics; the last slot is "_other". */
    for (uint32_t i = 1; i < PB_METRICS_MAX_SOURCES - 1; i++) {
        snprintf(name, sizeof(name), "topic-%u", i);
        assert_int_equal(pb_metrics_source(m, name), i);
    }
    assert_int_equal(m->nsrc, PB_METRICS_MAX_SOURCES - 1);
    uint32_t other = pb_metrics_source(m, "one-too-many");
    assert_int_equal(other, PB_METRICS_MAX_SOURCES - 1);
    assert_string_equal(m->src[other].name, "_other");
    assert_int_equal(m->nsrc, PB_METRICS_MAX_SOURCES);
    for (int i = 0; i < 50; i++) {
        snprintf(name, sizeof(name), "more-%d", i);
        assert_int_equal(pb_metrics_source(m, name), other);
    }
    assert_int_equal(m->nsrc, PB_METRICS_MAX_SOURCES);
    /* Known names still map to their own rows. */
    assert_int_equal(pb_metrics_source(m, "topic-1"), 1);
    assert_int_equal(pb_metrics_source(m, "topic-126"), 126);
    assert_int_equal(pb_metrics_source(m, "http"), PB_SOURCE_HTTP);

    m->src[other].consumed = 51;
    pb_metrics_drop(m, other, PB_DROP_NOT_JSON);
    struct page p;
    const char *text = render_prometheus(&p, m, NULL);
    assert_int_equal(count_lines(text, "pushbridge_events_consumed_total{"),
                     PB_METRICS_MAX_SOURCES);
    expect_sample(text, "pushbridge_events_consumed_total{topic=\"_other\"}", 51);
    expect_sample(text, "pushbridge_events_dropped_total{topic=\"_other\",reason=\"not_json\"}", 1);
    assert_true(isnan(sample(text, "pushbridge_events_consumed_total{topic=\"more-1\"}")));
    page_free(&p);
    render_stats(&p, m, NULL);
    page_free(&p);
}

/* ---- latency histogram ---- */

static void test_latency_buckets(void **state)
{
    struct pb_metrics *m = *state;
    static const double seen[] = {
        0.0001, 0.0005, 0.0007, 0.003, 0.003, 0.2, 0.5, 3, 20, -1,
    };
    for (size_t i = 0; i < sizeof(seen) / sizeof(seen[0]); i++)
        pb_metrics_latency(m, seen[i]);

    /* Cumulative counts, bounds inclusive (le); -1 counts as 0. */
    static const struct {
        const char *le;
        int count;
    } want[] = {
        {"0.0005", 3}, {"0.001", 4}, {"0.0025", 4}, {"0.005", 6}, {"0.01", 6},
        {"0.025", 6},  {"0.05", 6},  {"0.1", 6},    {"0.25", 7},  {"0.5", 8},
        {"1", 8},      {"2.5", 8},   {"5", 9},      {"10", 9},    {"+Inf", 10},
    };
    struct page p;
    const char *text = render_prometheus(&p, m, NULL);
    char series[96];
    double prev = 0;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        snprintf(series, sizeof(series), "pushbridge_delivery_latency_seconds_bucket{le=\"%s\"}",
                 want[i].le);
        expect_sample(text, series, want[i].count);
        assert_true(sample(text, series) >= prev);
        prev = sample(text, series);
    }
    assert_int_equal(count_lines(text, "pushbridge_delivery_latency_seconds_bucket{"),
                     PB_METRICS_LAT_BUCKETS + 1);
    expect_sample(text, "pushbridge_delivery_latency_seconds_count", 10);
    double sum = sample(text, "pushbridge_delivery_latency_seconds_sum");
    assert_true(fabs(sum - 23.7073) < 1e-4);
    assert_non_null(strstr(text, "# TYPE pushbridge_delivery_latency_seconds histogram\n"));
    page_free(&p);
}

/* ---- push statuses ---- */

static void test_push_statuses(void **state)
{
    struct pb_metrics *m = *state;
    for (int i = 0; i < 3; i++)
        pb_metrics_push_status(m, 200);
    pb_metrics_push_status(m, 400);
    pb_metrics_push_status(m, 401);
    pb_metrics_push_status(m, 401);
    pb_metrics_push_status(m, 202);
    struct page p;
    const char *text = render_prometheus(&p, m, NULL);
    expect_sample(text, "pushbridge_push_requests_total{status=\"200\"}", 3);
    expect_sample(text, "pushbridge_push_requests_total{status=\"400\"}", 1);
    expect_sample(text, "pushbridge_push_requests_total{status=\"401\"}", 2);
    expect_sample(text, "pushbridge_push_requests_total{status=\"202\"}", 1);
    assert_int_equal(count_lines(text, "pushbridge_push_requests_total{"), 4);
    page_free(&p);

    /* More distinct statuses than the table holds: the table stays bounded. */
    for (int s = 500; s < 500 + 2 * PB_METRICS_MAX_STATUSES; s++)
        pb_metrics_push_status(m, s);
    text = render_prometheus(&p, m, NULL);
    assert_true(count_lines(text, "pushbridge_push_requests_total{") <= PB_METRICS_MAX_STATUSES);
    expect_sample(text, "pushbridge_push_requests_total{status=\"200\"}", 3);
    page_free(&p);
}

/* ---- drops ---- */

static void test_drop_counters(void **state)
{
    struct pb_metrics *m = *state;
    uint32_t t1 = pb_metrics_source(m, "orders");
    pb_metrics_drop(m, t1, PB_DROP_NOT_JSON);
    pb_metrics_drop(m, t1, PB_DROP_NOT_JSON);
    pb_metrics_drop(m, t1, PB_DROP_KEY_MISMATCH);
    pb_metrics_drop(m, PB_SOURCE_HTTP, PB_DROP_BAD_FIELD);
    /* Not counted: no reason, an unknown reason, an unknown source. */
    pb_metrics_drop(m, t1, PB_DROP_NONE);
    pb_metrics_drop(m, t1, PB_DROP__COUNT);
    pb_metrics_drop(m, t1, -3);
    pb_metrics_drop(m, 77, PB_DROP_NOT_JSON);
    pb_metrics_drop(m, PB_METRICS_MAX_SOURCES + 1, PB_DROP_NOT_JSON);
    m->src[t1].consumed = 10;
    m->src[t1].delivered = 6;
    m->src[t1].dead_lettered = 3;

    struct page p;
    const char *text = render_prometheus(&p, m, NULL);
    expect_sample(text, "pushbridge_events_dropped_total{topic=\"orders\",reason=\"not_json\"}", 2);
    expect_sample(text, "pushbridge_events_dropped_total{topic=\"orders\",reason=\"key_mismatch\"}",
                  1);
    expect_sample(text, "pushbridge_events_dropped_total{topic=\"orders\",reason=\"no_target\"}",
                  0);
    expect_sample(text, "pushbridge_events_dropped_total{topic=\"http\",reason=\"bad_field\"}", 1);
    expect_sample(text, "pushbridge_events_dropped_total{topic=\"http\",reason=\"not_json\"}", 0);
    /* Every reason but "none", for every source. */
    assert_int_equal(count_lines(text, "pushbridge_events_dropped_total{"),
                     2 * (PB_DROP__COUNT - 1));
    assert_null(strstr(text, "reason=\"none\""));
    expect_sample(text, "pushbridge_events_consumed_total{topic=\"orders\"}", 10);
    expect_sample(text, "pushbridge_events_delivered_total{topic=\"orders\"}", 6);
    expect_sample(text, "pushbridge_events_dead_lettered_total{topic=\"orders\"}", 3);
    page_free(&p);

    text = render_stats(&p, m, NULL);
    assert_non_null(strstr(text, "\"orders\":{\"consumed\":10,\"delivered\":6,\"dropped\":3,"
                                 "\"dead_lettered\":3,"));
    assert_non_null(strstr(text, "\"http\":{\"consumed\":0,\"delivered\":0,\"dropped\":1,"));
    page_free(&p);
}

/* ---- lag ---- */

static void test_lag_table(void **state)
{
    struct pb_metrics *m = *state;
    uint32_t t1 = pb_metrics_source(m, "orders");
    uint32_t t2 = pb_metrics_source(m, "progress");
    pb_metrics_set_lag(m, t1, 0, 5);
    pb_metrics_set_lag(m, t1, 1, 7);
    pb_metrics_set_lag(m, t2, 0, 3);
    pb_metrics_set_lag(m, t1, 0, 9); /* replaces */
    assert_int_equal(m->nlag, 3);

    struct page p;
    const char *text = render_prometheus(&p, m, NULL);
    expect_sample(text, "pushbridge_consumer_lag{topic=\"orders\",partition=\"0\"}", 9);
    expect_sample(text, "pushbridge_consumer_lag{topic=\"orders\",partition=\"1\"}", 7);
    expect_sample(text, "pushbridge_consumer_lag{topic=\"progress\",partition=\"0\"}", 3);
    assert_int_equal(count_lines(text, "pushbridge_consumer_lag{"), 3);
    page_free(&p);
    text = render_stats(&p, m, NULL);
    assert_non_null(strstr(text, "\"orders\":{"));
    assert_non_null(strstr(strstr(text, "\"orders\":{"), "\"lag\":16}"));
    assert_non_null(strstr(strstr(text, "\"progress\":{"), "\"lag\":3}"));
    assert_non_null(strstr(strstr(text, "\"http\":{"), "\"lag\":null}"));
    page_free(&p);

    /* An unknown lag (-1) is not summed. */
    pb_metrics_set_lag(m, t2, 0, -1);
    text = render_stats(&p, m, NULL);
    assert_non_null(strstr(strstr(text, "\"progress\":{"), "\"lag\":null}"));
    page_free(&p);

    pb_metrics_clear_lag(m);
    assert_int_equal(m->nlag, 0);
    text = render_prometheus(&p, m, NULL);
    assert_int_equal(count_lines(text, "pushbridge_consumer_lag{"), 0);
    assert_non_null(strstr(text, "# TYPE pushbridge_consumer_lag gauge\n"));
    page_free(&p);
    text = render_stats(&p, m, NULL);
    assert_non_null(strstr(strstr(text, "\"orders\":{"), "\"lag\":null}"));
    page_free(&p);

    /* Bounded: partitions beyond the table are not kept. */
    for (int32_t i = 0; i < PB_METRICS_MAX_PARTITIONS + 10; i++)
        pb_metrics_set_lag(m, t1, i, i);
    assert_int_equal(m->nlag, PB_METRICS_MAX_PARTITIONS);
    pb_metrics_set_lag(m, t1, 5, 500); /* existing rows still update */
    text = render_prometheus(&p, m, NULL);
    expect_sample(text, "pushbridge_consumer_lag{topic=\"orders\",partition=\"5\"}", 500);
    page_free(&p);
}

/* ---- whole pages ---- */

static void test_gauges_and_counters(void **state)
{
    struct pb_metrics *m = *state;
    m->slow_client_closes = 4;
    m->queue_drops = 11;
    m->connections_refused = 2;
    struct pb_gauges g = {.connections = 12, .users = 5, .queue_bytes = 4096, .kafka_ready = 1};
    struct page p;
    const char *text = render_prometheus(&p, m, &g);
    expect_sample(text, "pushbridge_connections", 12);
    expect_sample(text, "pushbridge_users", 5);
    expect_sample(text, "pushbridge_queue_bytes", 4096);
    expect_sample(text, "pushbridge_kafka_ready", 1);
    expect_sample(text, "pushbridge_slow_client_closes_total", 4);
    expect_sample(text, "pushbridge_queue_dropped_total", 11);
    expect_sample(text, "pushbridge_connections_refused_total", 2);
    assert_true(sample(text, "pushbridge_uptime_seconds") >= 0);

    /* Every sample belongs to a family announced by HELP and TYPE lines before it. */
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        assert_non_null(end); /* the page ends with a newline */
        if (*line != '#') {
            size_t n = strcspn(line, "{ ");
            char family[128];
            assert_true(n < sizeof(family));
            memcpy(family, line, n);
            family[n] = '\0';
            char *suffix = strstr(family, "_bucket");
            if (!suffix)
                suffix = strstr(family, "_sum");
            if (!suffix)
                suffix = strstr(family, "_count");
            if (suffix && strstr(family, "latency"))
                *suffix = '\0';
            char help[160], type[160];
            snprintf(help, sizeof(help), "# HELP %s ", family);
            snprintf(type, sizeof(type), "# TYPE %s ", family);
            const char *h = strstr(text, help), *t = strstr(text, type);
            if (!h || !t || h > line || t > line)
                fail_msg("no HELP/TYPE before: %.*s", (int)(end - line), line);
        }
        line = end + 1;
    }
    page_free(&p);

    text = render_stats(&p, m, &g);
    assert_non_null(strstr(text, "\"connections\":12"));
    assert_non_null(strstr(text, "\"users\":5"));
    assert_non_null(strstr(text, "\"queue_bytes\":4096"));
    assert_non_null(strstr(text, "\"kafka_ready\":true"));
    assert_non_null(strstr(text, "\"slow_client_closes\":4"));
    assert_non_null(strstr(text, "\"uptime_s\":"));
    page_free(&p);
}

static void test_stats_kafka_bootstrap(void **state)
{
    struct pb_metrics *m = *state;
    pb_metrics_source(m, "pushbridge.events");
    struct pb_gauges g = {.connections = 1};
    struct page p;
    const char *text = render_stats(&p, m, &g);
    assert_null(strstr(text, "kafka_bootstrap"));
    assert_non_null(strstr(text, "\"kafka_ready\":false"));
    page_free(&p);

    g.kafka_bootstrap = "127.0.0.1:39092";
    text = render_stats(&p, m, &g);
    assert_non_null(strstr(text, "\"kafka_bootstrap\":\"127.0.0.1:39092\""));
    page_free(&p);

    /* Still valid JSON whatever the string holds. */
    g.kafka_bootstrap = "odd \"host\"\\\n:1";
    text = render_stats(&p, m, &g);
    assert_non_null(strstr(text, "\"kafka_bootstrap\":\"odd \\\"host\\\"\\\\\\n:1\""));
    page_free(&p);
}

static void test_stats_valid_when_full(void **state)
{
    struct pb_metrics *m = *state;
    char name[32];
    for (int i = 0; i < PB_METRICS_MAX_SOURCES + 5; i++) {
        snprintf(name, sizeof(name), "t.%d-x_y", i);
        uint32_t s = pb_metrics_source(m, name);
        pb_metrics_drop(m, s, PB_DROP_STALE);
        pb_metrics_set_lag(m, s, i, i);
    }
    struct page p;
    const char *text = render_stats(&p, m, NULL);
    assert_non_null(strstr(text, "\"_other\":{"));
    page_free(&p);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_sources),
        T(test_sources_overflow),
        T(test_latency_buckets),
        T(test_push_statuses),
        T(test_drop_counters),
        T(test_lag_table),
        T(test_gauges_and_counters),
        T(test_stats_kafka_bootstrap),
        T(test_stats_valid_when_full),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* pb-inputbench: what reading a message costs in each kafka.inputs format
 * (SPEC 12), against the envelope, on one core: the step that differs
 * between formats (the value read, the sources looked up, the target set),
 * with the headers in a real rd_kafka_headers_t as librdkafka hands them
 * over. Everything after it (store, hub, frames, sockets) is the same for
 * every format, so bench/run.sh's unicast scenario gives the rest.
 *
 *   pb-inputbench [N]   N events per case (default 200000) in 5 rounds, the
 *                       fastest counting; prints a table and, on the last
 *                       line, the figures as JSON */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pushbridge/core/config_inputs.h"
#include "pushbridge/event/envelope.h"
#include "pushbridge/event/input.h"

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int header_cb(void *ud, const char *name, const char **val, size_t *len)
{
    const void *v = NULL;
    if (rd_kafka_header_get_last(ud, name, &v, len) != RD_KAFKA_RESP_ERR_NO_ERROR || !v)
        return 0;
    *val = v;
    return 1;
}

struct bench_case {
    const char *name;
    const char *rule; /* NULL: the envelope path of kafka.c, no rule */
    const char *key;
    const char *value;
    size_t len;            /* 0 = strlen */
    const char *hdrs[8][2];
};

/* A realistic order (about 300 bytes): the same data in every shape. */
#define ORDER                                                                                  \
    "{\"order_id\":\"o-81723\",\"customer\":{\"id\":\"u-4711\",\"tier\":\"gold\"},"        \
    "\"status\":\"paid\",\"total\":129.90,\"currency\":\"EUR\",\"lines\":[{\"sku\":\"A-1\","  \
    "\"qty\":2,\"price\":39.95},{\"sku\":\"B-7\",\"qty\":1,\"price\":50.00}],"                 \
    "\"created_at\":\"2026-12-07T02:44:27.878Z\"}"

static const char prefixed[] = "\0\0\0\0\x07" ORDER;

static const struct bench_case cases[] = {
    {"envelope", NULL, "u-4711",
     "{\"event\":\"order.paid\",\"id\":\"o-81723\",\"data\":" ORDER "}", 0, {{0}}},
    {"envelope-rule", "{\"topic\":\"t\"}", "u-4711",
     "{\"event\":\"order.paid\",\"id\":\"o-81723\",\"data\":" ORDER "}", 0, {{0}}},
    {"json-key", "{\"topic\":\"t\",\"format\":\"json\",\"event\":\"order.paid\"}", "u-4711",
     ORDER, 0, {{0}}},
    {"json-literal-group",
     "{\"topic\":\"t\",\"format\":\"json\",\"target\":\"group:admins\",\"event\":\"order.paid\"}",
     "o-81723", ORDER, 0, {{0}}},
    {"json-field",
     "{\"topic\":\"t\",\"format\":\"json\",\"target\":\"field:/customer/id\","
     "\"event\":\"order.paid\",\"id\":\"field:/order_id\"}",
     "o-81723", ORDER, 0, {{0}}},
    {"json-schema-registry",
     "{\"topic\":\"t\",\"format\":\"json\",\"target\":\"field:/customer/id\","
     "\"event\":\"order.paid\",\"id\":\"field:/order_id\"}",
     "o-81723", prefixed, sizeof(prefixed) - 1, {{0}}},
    {"json-outbox-headers",
     "{\"topic\":\"t\",\"format\":\"json\",\"target\":\"field:/customer/id\","
     "\"event\":\"header:eventType\",\"id\":\"header:id\"}",
     "o-81723", ORDER, 0,
     {{"id", "4d5bd5c1-9c34-4c4c-a6f0-8fbb6e1a3d6b"}, {"eventType", "OrderPaid"}}},
    {"cloudevents-binary", "{\"topic\":\"t\",\"format\":\"cloudevents\",\"target\":\"ce:subject\"}",
     "o-81723", ORDER, 0,
     {{"ce_specversion", "1.0"}, {"ce_type", "com.example.order.paid"},
      {"ce_source", "/orders"}, {"ce_id", "87ff9252-ceb9-459d-b807-40e032fbdb69"},
      {"ce_subject", "u-4711"}, {"ce_time", "2026-12-07T02:44:27.878Z"},
      {"content-type", "application/json"}}},
    {"cloudevents-structured",
     "{\"topic\":\"t\",\"format\":\"cloudevents\",\"target\":\"ce:subject\"}", "o-81723",
     "{\"specversion\":\"1.0\",\"type\":\"com.example.order.paid\",\"source\":\"/orders\","
     "\"id\":\"87ff9252-ceb9-459d-b807-40e032fbdb69\",\"subject\":\"u-4711\","
     "\"time\":\"2026-12-07T02:44:27.878Z\",\"datacontenttype\":\"application/json\","
     "\"data\":" ORDER "}",
     0, {{"content-type", "application/cloudevents+json"}}},
};

/* One read as kafka.c does it: no rule = envelope, header, key. */
static int read_one(const struct bench_case *c, const struct pb_input_rule *rule,
                    rd_kafka_headers_t *h, size_t len, struct pb_event *ev)
{
    pb_event_init(ev);
    if (rule) {
        struct pb_input_msg m = {.topic = "t", .key = c->key, .key_len = strlen(c->key),
                                 .value = c->value, .len = len, .header = header_cb, .ud = h};
        char failed[300];
        return pb_input_read(rule, &m, ev, failed, sizeof(failed));
    }
    int reason = pb_envelope_parse(c->value, len, 0, ev);
    const char *v;
    size_t n;
    if (!reason && header_cb(h, "event", &v, &n))
        reason = pb_event_set_name(ev, v, n);
    if (!reason)
        reason = pb_event_set_target(ev, c->key, strlen(c->key));
    return reason;
}

/* Bound: the fastest of ROUNDS rounds counts (the machine is shared:
 * the other rounds measure its neighbours as much as this code). */
#define ROUNDS 5
#define NCASES (sizeof(cases) / sizeof(cases[0]))

struct prepared {
    struct pb_inputs rules;
    rd_kafka_headers_t *h;
    size_t len;
    double best_ns;
};

static int prepare(const struct bench_case *c, struct prepared *p)
{
    char err[256], text[1024];
    if (c->rule) {
        snprintf(text, sizeof(text), "[%s]", c->rule);
        if (pb_inputs_parse_text(&p->rules, text, err, sizeof(err))) {
            fprintf(stderr, "%s: %s\n", c->name, err);
            return -1;
        }
    }
    p->h = rd_kafka_headers_new(8);
    for (int k = 0; k < 8 && c->hdrs[k][0]; k++)
        rd_kafka_header_add(p->h, c->hdrs[k][0], -1, c->hdrs[k][1], -1);
    p->len = c->len ? c->len : strlen(c->value);
    struct pb_event ev;
    /* Checked once: a case that fails would measure the wrong thing. */
    int reason = read_one(c, c->rule ? &p->rules.items[0] : NULL, p->h, p->len, &ev);
    if (reason)
        fprintf(stderr, "%s: not read: %s\n", c->name, ev.detail);
    pb_event_clear(&ev);
    return reason ? -1 : 0;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000;
    if (n < ROUNDS) {
        fprintf(stderr, "usage: pb-inputbench [N]\n");
        return 2;
    }
    static struct prepared prep[NCASES];
    for (size_t i = 0; i < NCASES; i++)
        if (prepare(&cases[i], &prep[i]))
            return 1;
    /* Rounds outermost, so that a busy moment of the machine costs every
     * case one round rather than one case all of its rounds. */
    long per = n / ROUNDS;
    for (int r = 0; r < ROUNDS; r++) {
        for (size_t i = 0; i < NCASES; i++) {
            const struct pb_input_rule *rule = cases[i].rule ? &prep[i].rules.items[0] : NULL;
            struct pb_event ev;
            double t0 = cpu_seconds();
            for (long k = 0; k < per; k++) {
                read_one(&cases[i], rule, prep[i].h, prep[i].len, &ev);
                pb_event_clear(&ev);
            }
            double ns = (cpu_seconds() - t0) * 1e9 / (double)per;
            if (r == 0 || ns < prep[i].best_ns)
                prep[i].best_ns = ns;
        }
    }
    printf("%-24s %8s %14s %12s %12s\n", "format", "bytes", "events/cpu-s", "ns/event",
           "vs envelope");
    char json[4096];
    size_t jl = (size_t)snprintf(json, sizeof(json), "{\"events_per_case\":%ld,\"cases\":[", n);
    double base = prep[0].best_ns;
    for (size_t i = 0; i < NCASES; i++) {
        double ns = prep[i].best_ns;
        printf("%-24s %8zu %14.0f %12.0f %11.2fx\n", cases[i].name, prep[i].len, 1e9 / ns, ns,
               ns / base);
        jl += (size_t)snprintf(json + jl, sizeof(json) - jl,
                               "%s{\"format\":\"%s\",\"bytes\":%zu,\"events_per_cpu_s\":%.0f,"
                               "\"ns_per_event\":%.0f,\"vs_envelope\":%.2f}",
                               i ? "," : "", cases[i].name, prep[i].len, 1e9 / ns, ns, ns / base);
        rd_kafka_headers_destroy(prep[i].h);
        pb_inputs_free(&prep[i].rules);
    }
    printf("%s]}\n", json);
    return 0;
}

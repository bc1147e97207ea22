/* pb-produce: the sending side of the benchmarks (bench/run.sh).
 *
 * Sends --count events, at --rate per second or as fast as it can, either to
 * Kafka with librdkafka or to the bridge's POST /push over keep-alive HTTP
 * connections (one request in flight on each; a request carries one event,
 * or a JSON array of --batch events). Event i goes to user u(i % U), or to
 * the one --key given ("*" broadcasts), and its data is
 *     {"s":<seq>,"t":<µs, CLOCK_REALTIME>}       (+ "p":"xx…" with --pad)
 * where seq counts 1, 2, … per target: what pb-loadgen checks. With
 * --tasks K the envelope also names a task, "task":"t<i % K>", so that the
 * bridge keeps task state for it (bench/run.sh's state scenarios); data is
 * the same either way. --format writes the same data the way other
 * producers do, for the kafka.inputs rules of bench/run.sh's inputs-e2e
 * scenarios (SPEC 12): json (the value is the data, keyed by user),
 * json-field (the user in the value's "u", keyed by an order ID),
 * ce-binary and ce-structured (a CloudEvent, the user in its subject).
 *
 * t is taken when the event is handed to librdkafka. Over HTTP it is the
 * time the request was due by the schedule, so that a bridge answering
 * slowly shows up as latency instead of as a lower send rate (no
 * coordinated omission). Prints one JSON object with what was sent. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define MAX_PAD 65536
#define MAX_KEY 256
#define HTTP_MAX_CONNS 64
#define HTTP_IN_BYTES (256u * 1024u)

struct opts {
    const char *brokers;
    const char *topic;
    const char *key;        /* one fixed key ("*" = broadcast), or NULL: users */
    uint32_t users;
    uint64_t tasks;         /* "task":"t<i % tasks>" in each envelope, 0 = none */
    double rate;            /* events per second, 0 = as fast as possible */
    uint64_t count;         /* at most this many events (0 = no bound) */
    double duration_s;      /* stop sending after this long (0 = no bound) */
    uint32_t pad;
    int linger_ms;
    int create_partitions;  /* create the topic first (a real broker), 0 = no */
    const char *http;       /* HOST:PORT of the internal listener: HTTP mode */
    const char *path;
    uint32_t batch;
    uint32_t http_conns;
    double timeout_s;
    int format; /* enum format */
};

enum format { FMT_ENVELOPE = 0, FMT_JSON, FMT_JSON_FIELD, FMT_CE_BINARY, FMT_CE_STRUCTURED };
static const char *const format_names[] = {"envelope", "json", "json-field", "ce-binary",
                                           "ce-structured", NULL};

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* ---- events ---- */

static char g_pad[MAX_PAD + 1];

/* Writes event i's target into key and returns its seq. */
static uint64_t target_of(const struct opts *o, uint64_t i, char *key, size_t cap)
{
    if (o->key) {
        snprintf(key, cap, "%s", o->key);
        return i + 1;
    }
    snprintf(key, cap, "u%llu", (unsigned long long)(i % o->users));
    return i / o->users + 1;
}

static int event_data(char *buf, size_t cap, const struct opts *o, uint64_t seq, uint64_t t)
{
    if (o->pad)
        return snprintf(buf, cap, "{\"s\":%llu,\"t\":%llu,\"p\":\"%s\"}", (unsigned long long)seq,
                        (unsigned long long)t, g_pad);
    return snprintf(buf, cap, "{\"s\":%llu,\"t\":%llu}", (unsigned long long)seq,
                    (unsigned long long)t);
}

/* Event i's envelope member for its task, with a trailing comma, or "". */
static void task_member(const struct opts *o, uint64_t i, char *buf, size_t cap)
{
    if (o->tasks)
        snprintf(buf, cap, "\"task\":\"t%llu\",", (unsigned long long)(i % o->tasks));
    else
        buf[0] = '\0';
}

/* Whether event i may still be sent: within --count and --duration. */
static int more(const struct opts *o, uint64_t start, uint64_t i)
{
    if (o->count && i >= o->count)
        return 0;
    return o->duration_s <= 0 || bench_mono_us() - start < (uint64_t)(o->duration_s * 1e6);
}

/* Schedule: event i is due i/rate seconds after start (monotonic µs). */
static uint64_t due_of(const struct opts *o, uint64_t start, uint64_t i)
{
    return o->rate > 0 ? start + (uint64_t)((double)i * 1e6 / o->rate) : start;
}

static void sleep_until(uint64_t mono_us)
{
    uint64_t now = bench_mono_us();
    if (mono_us <= now + 50) /* not worth a sleep */
        return;
    struct timespec ts = {.tv_sec = (time_t)(mono_us / 1000000u),
                          .tv_nsec = (long)(mono_us % 1000000u) * 1000};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

struct sent {
    uint64_t events, errors;        /* errors: failed deliveries or refused items */
    uint64_t requests, http_ok, http_err, delivered;
    double send_s;                  /* first send to last hand-off */
    double total_s;                 /* ... to the last acknowledgement */
    struct hist rtt;                /* HTTP request round trips */
};

/* ---- Kafka ---- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct sent *s = opaque;
    if (m->err)
        s->errors++;
}

static rd_kafka_t *kafka_new(const struct opts *o, struct sent *s)
{
    char err[512], linger[16];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    snprintf(linger, sizeof(linger), "%d", o->linger_ms);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", o->brokers, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "linger.ms", linger, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "client.id", "pb-produce", err, sizeof(err)) ||
        /* Room for a whole run, so produce() never has to wait. */
        rd_kafka_conf_set(conf, "queue.buffering.max.messages", "2000000", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "queue.buffering.max.kbytes", "2097152", err, sizeof(err))) {
        fprintf(stderr, "pb-produce: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, s);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "pb-produce: %s\n", err);
        rd_kafka_conf_destroy(conf);
    }
    return rk; /* owns conf from here on */
}

/* For a real broker: a fresh topic per scenario, so no earlier run's events
 * are replayed to a new consumer group. */
static int create_topic(rd_kafka_t *rk, const struct opts *o)
{
    char err[512];
    rd_kafka_NewTopic_t *nt =
        rd_kafka_NewTopic_new(o->topic, o->create_partitions, -1, err, sizeof(err));
    if (!nt) {
        fprintf(stderr, "pb-produce: %s\n", err);
        return -1;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
    int rc = -1;
    if (!ev) {
        fprintf(stderr, "pb-produce: creating topic %s timed out\n", o->topic);
    } else {
        size_t n;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        rd_kafka_resp_err_t e = n ? rd_kafka_topic_result_error(res[0]) : rd_kafka_event_error(ev);
        rc = (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) ? -1 : 0;
        if (rc)
            fprintf(stderr, "pb-produce: creating topic %s: %s\n", o->topic, rd_kafka_err2str(e));
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

/* Connects and learns the topic's leader before the clock starts, so that
 * the first events do not carry the producer's own start-up as latency. */
static int warm_up(rd_kafka_t *rk, const struct opts *o)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o->topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rkt ? rd_kafka_metadata(rk, 0, rkt, &md, 10000)
                                : RD_KAFKA_RESP_ERR__INVALID_ARG;
    int ok = !e && md && md->topic_cnt == 1 && !md->topics[0].err;
    if (!ok)
        fprintf(stderr, "pb-produce: no metadata for topic %s: %s\n", o->topic,
                rd_kafka_err2str(e ? e : md && md->topic_cnt ? md->topics[0].err : e));
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    return ok ? 0 : -1;
}

/* Event i's value in --format; key becomes an order ID where the user
 * travels in the value. Returns the value's length. */
static int format_value(const struct opts *o, uint64_t i, char *key, const char *data,
                        const char *task, char *value, size_t cap)
{
    char user[MAX_KEY + 16];
    snprintf(user, sizeof(user), "%s", key);
    if (o->format >= FMT_JSON_FIELD)
        snprintf(key, MAX_KEY + 16, "o%llu", (unsigned long long)i);
    switch (o->format) {
    case FMT_JSON:
        return snprintf(value, cap, "%s", data);
    case FMT_JSON_FIELD: /* {"u":"uN","s":..,"t":..}: the data with the user in front */
        return snprintf(value, cap, "{\"u\":\"%s\",%s", user, data + 1);
    case FMT_CE_BINARY:
        return snprintf(value, cap, "%s", data);
    case FMT_CE_STRUCTURED:
        return snprintf(value, cap,
                        "{\"specversion\":\"1.0\",\"type\":\"bench\",\"source\":\"/bench\","
                        "\"id\":\"%llu\",\"subject\":\"%s\",\"datacontenttype\":"
                        "\"application/json\",\"data\":%s}",
                        (unsigned long long)i, user, data);
    default:
        return snprintf(value, cap, "{\"event\":\"bench\",%s\"data\":%s}", task, data);
    }
}

/* One producev with the headers --format needs (a binary CloudEvent's
 * attributes; a structured one's content type). */
static rd_kafka_resp_err_t produce_formatted(rd_kafka_t *rk, const struct opts *o, uint64_t i,
                                             const char *key, const char *value, size_t n)
{
    char id[24], subject[MAX_KEY + 16];
    if (o->format == FMT_CE_STRUCTURED)
        return rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(o->topic), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE((void *)value, n), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADER("content-type", "application/cloudevents+json", -1),
            RD_KAFKA_V_END);
    if (o->format != FMT_CE_BINARY)
        return rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(o->topic), RD_KAFKA_V_KEY(key, strlen(key)),
                                 RD_KAFKA_V_VALUE((void *)value, n),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    snprintf(id, sizeof(id), "%llu", (unsigned long long)i);
    if (o->key)
        snprintf(subject, sizeof(subject), "%s", o->key);
    else
        snprintf(subject, sizeof(subject), "u%llu", (unsigned long long)(i % o->users));
    return rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(o->topic), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE((void *)value, n), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADER("ce_specversion", "1.0", -1), RD_KAFKA_V_HEADER("ce_type", "bench", -1),
        RD_KAFKA_V_HEADER("ce_source", "/bench", -1), RD_KAFKA_V_HEADER("ce_id", id, -1),
        RD_KAFKA_V_HEADER("ce_subject", subject, -1),
        RD_KAFKA_V_HEADER("content-type", "application/json", -1), RD_KAFKA_V_END);
}

/* Hands one event to librdkafka, waiting for queue room (bounded). */
static int produce_one(rd_kafka_t *rk, const struct opts *o, uint64_t i, uint64_t deadline)
{
    char key[MAX_KEY + 16], value[MAX_PAD + 160], data[MAX_PAD + 96], task[48];
    uint64_t seq = target_of(o, i, key, sizeof(key));
    event_data(data, sizeof(data), o, seq, bench_realtime_us());
    task_member(o, i, task, sizeof(task));
    int n = format_value(o, i, key, data, task, value, sizeof(value));
    while (bench_mono_us() < deadline) {
        rd_kafka_resp_err_t e = produce_formatted(rk, o, i, key, value, (size_t)n);
        if (!e)
            return 0;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "pb-produce: produce: %s\n", rd_kafka_err2str(e));
            return -1;
        }
        rd_kafka_poll(rk, 10);
    }
    return -1;
}

static int run_kafka(const struct opts *o, struct sent *s)
{
    rd_kafka_t *rk = kafka_new(o, s);
    if (!rk)
        return -1;
    if (o->create_partitions) {
        int rc = create_topic(rk, o);
        if (rc || (!o->count && o->duration_s <= 0)) { /* nothing to send */
            rd_kafka_destroy(rk);
            return rc;
        }
    }
    if (warm_up(rk, o)) {
        rd_kafka_destroy(rk);
        return -1;
    }
    uint64_t start = bench_mono_us();
    uint64_t deadline = start + (uint64_t)(o->timeout_s * 1e6);
    int rc = 0;
    for (uint64_t i = 0; more(o, start, i) && !g_stop; i++) {
        sleep_until(due_of(o, start, i));
        if (!more(o, start, i))
            break;
        if (produce_one(rk, o, i, deadline)) {
            rc = -1;
            break;
        }
        s->events++;
        if ((i & 1023) == 0)
            rd_kafka_poll(rk, 0); /* delivery reports */
    }
    s->send_s = (double)(bench_mono_us() - start) / 1e6;
    uint64_t now = bench_mono_us();
    int left_ms = now < deadline ? (int)((deadline - now) / 1000) : 0;
    if (rd_kafka_flush(rk, left_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "pb-produce: %d message(s) not delivered in time\n",
                rd_kafka_outq_len(rk));
        s->errors += (uint64_t)rd_kafka_outq_len(rk);
        rc = -1;
    }
    s->total_s = (double)(bench_mono_us() - start) / 1e6;
    rd_kafka_destroy(rk);
    return rc;
}

/* ---- HTTP ---- */

/* One keep-alive connection with at most one request in flight. */
struct hconn {
    int fd;
    int busy;
    uint32_t items;       /* events in the request in flight */
    uint64_t sent_us;     /* monotonic, for the round trip */
    char *out;            /* the request, and how much of it went out */
    size_t out_len, out_off;
    char *in;
    size_t in_len;
};

struct http {
    const struct opts *o;
    struct sockaddr_in addr;
    char hostport[300];
    int ep;
    struct hconn c[HTTP_MAX_CONNS];
    char *body;
    size_t body_cap;
    int64_t real_minus_mono; /* turns a monotonic due time into a realtime t */
    struct sent *s;
    int printed_error;
};

static int hconn_open(struct http *h, struct hconn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* Loopback: a blocking connect is immediate; every send and recv
     * after it is MSG_DONTWAIT. */
    if (connect(c->fd, (struct sockaddr *)&h->addr, sizeof(h->addr))) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(h->ep, EPOLL_CTL_ADD, c->fd, &ev))
        return -1;
    c->busy = 0;
    c->in_len = 0;
    return 0;
}

static void hconn_close(struct http *h, struct hconn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(h->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
}

static int body_reserve(struct http *h, size_t need)
{
    if (need <= h->body_cap)
        return 0;
    char *b = realloc(h->body, need);
    if (!b)
        return -1;
    h->body = b;
    h->body_cap = need;
    return 0;
}

/* The body for events [first, first + n): one object, or an array. */
static size_t build_body(struct http *h, uint64_t first, uint32_t n, uint64_t t)
{
    const struct opts *o = h->o;
    size_t per = (size_t)o->pad + MAX_KEY + 208;
    if (body_reserve(h, per * n + 8))
        return 0;
    size_t len = 0;
    if (o->batch > 1)
        h->body[len++] = '[';
    for (uint32_t k = 0; k < n; k++) {
        char key[MAX_KEY + 16], data[MAX_PAD + 96], task[48];
        uint64_t seq = target_of(o, first + k, key, sizeof(key));
        event_data(data, sizeof(data), o, seq, t);
        task_member(o, first + k, task, sizeof(task));
        len += (size_t)snprintf(h->body + len, per, "%s{\"user_id\":\"%s\",\"event\":\"bench\","
                                "%s\"data\":%s}", k ? "," : "", key, task, data);
    }
    if (o->batch > 1)
        h->body[len++] = ']';
    return len;
}

static int hconn_flush(struct http *h, struct hconn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t k = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_DONTWAIT);
        if (k < 0 && errno == EAGAIN) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
            epoll_ctl(h->ep, EPOLL_CTL_MOD, c->fd, &ev);
            return 0;
        }
        if (k <= 0)
            return -1;
        c->out_off += (size_t)k;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(h->ep, EPOLL_CTL_MOD, c->fd, &ev);
    return 0;
}

static int send_request(struct http *h, struct hconn *c, uint64_t first, uint32_t n, uint64_t t)
{
    size_t blen = build_body(h, first, n, t);
    if (!blen)
        return -1;
    char head[512];
    int hl = snprintf(head, sizeof(head),
                      "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      h->o->path, h->hostport, blen);
    char *out = realloc(c->out, (size_t)hl + blen);
    if (!out)
        return -1;
    memcpy(out, head, (size_t)hl);
    memcpy(out + hl, h->body, blen);
    c->out = out;
    c->out_len = (size_t)hl + blen;
    c->out_off = 0;
    c->busy = 1;
    c->items = n;
    c->sent_us = bench_mono_us();
    h->s->requests++;
    h->s->events += n;
    return hconn_flush(h, c);
}

/* Sums "delivered":N over the answer; counts items that carry an error. */
static void tally_answer(struct http *h, const char *body, size_t len, int status)
{
    const char *p = body, *end = body + len;
    while ((p = memmem(p, (size_t)(end - p), "\"delivered\":", 12))) {
        p += 12;
        h->s->delivered += strtoull(p, NULL, 10);
    }
    if (status == 200)
        h->s->http_ok++;
    else
        h->s->http_err++;
    if (status != 200 || memmem(body, len, "\"error\"", 7)) {
        if (!h->printed_error++)
            fprintf(stderr, "pb-produce: push answered %d: %.*s\n", status,
                    (int)(len > 300 ? 300 : len), body);
    }
}

/* Returns 1 when a whole answer was taken, 0 when more bytes are needed,
 * -1 when the connection must be reopened. */
static int take_answer(struct http *h, struct hconn *c)
{
    const char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end)
        return c->in_len >= HTTP_IN_BYTES ? -1 : 0;
    size_t hlen = (size_t)(end - c->in) + 4;
    char head[8192];
    if (hlen >= sizeof(head))
        return -1;
    memcpy(head, c->in, hlen);
    head[hlen] = '\0';
    const char *cl = strcasestr(head, "\r\ncontent-length:");
    if (strncmp(head, "HTTP/1.1 ", 9) != 0 || !cl)
        return -1;
    size_t blen = strtoull(cl + 17, NULL, 10);
    if (hlen + blen > HTTP_IN_BYTES)
        return -1;
    if (c->in_len < hlen + blen)
        return 0;
    int status = atoi(head + 9);
    tally_answer(h, c->in + hlen, blen, status);
    if (status != 200)
        h->s->errors += c->items;
    hist_add(&h->s->rtt, bench_mono_us() - c->sent_us);
    memmove(c->in, c->in + hlen + blen, c->in_len - hlen - blen);
    c->in_len -= hlen + blen;
    c->busy = 0;
    return strcasestr(head, "\r\nconnection: close") ? -1 : 1;
}

static void on_readable(struct http *h, struct hconn *c)
{
    ssize_t k = recv(c->fd, c->in + c->in_len, HTTP_IN_BYTES - c->in_len, MSG_DONTWAIT);
    if (k < 0 && errno == EAGAIN)
        return;
    int rc = -1;
    if (k > 0) {
        c->in_len += (size_t)k;
        rc = take_answer(h, c);
    }
    if (rc >= 0)
        return;
    /* Closed, or an answer we cannot read: what was in flight is lost. */
    if (c->busy) {
        h->s->errors += c->items;
        h->s->http_err++;
    }
    hconn_close(h, c);
    if (hconn_open(h, c))
        fprintf(stderr, "pb-produce: cannot reconnect to %s\n", h->hostport);
}

static int http_init(struct http *h, const struct opts *o, struct sent *s)
{
    memset(h, 0, sizeof(*h));
    h->o = o;
    h->s = s;
    char host[256];
    const char *colon = strrchr(o->http, ':');
    if (!colon || (size_t)(colon - o->http) >= sizeof(host)) {
        fprintf(stderr, "pb-produce: --http wants HOST:PORT\n");
        return -1;
    }
    memcpy(host, o->http, (size_t)(colon - o->http));
    host[colon - o->http] = '\0';
    h->addr.sin_family = AF_INET;
    h->addr.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &h->addr.sin_addr) != 1) {
        fprintf(stderr, "pb-produce: --http wants an IPv4 address\n");
        return -1;
    }
    snprintf(h->hostport, sizeof(h->hostport), "%s", o->http);
    h->ep = epoll_create1(EPOLL_CLOEXEC);
    h->real_minus_mono = (int64_t)bench_realtime_us() - (int64_t)bench_mono_us();
    for (uint32_t i = 0; i < o->http_conns; i++) {
        h->c[i].fd = -1;
        h->c[i].in = malloc(HTTP_IN_BYTES);
        if (!h->c[i].in || hconn_open(h, &h->c[i])) {
            fprintf(stderr, "pb-produce: cannot connect to %s: %s\n", o->http, strerror(errno));
            return -1;
        }
    }
    return 0;
}

static void http_free(struct http *h)
{
    for (uint32_t i = 0; i < h->o->http_conns; i++) {
        hconn_close(h, &h->c[i]);
        free(h->c[i].in);
        free(h->c[i].out);
    }
    free(h->body);
    if (h->ep >= 0)
        close(h->ep);
}

/* Starts every request that is due on every idle connection. */
static void send_due(struct http *h, uint64_t start, uint64_t *next)
{
    const struct opts *o = h->o;
    for (uint32_t i = 0; i < o->http_conns && more(o, start, *next); i++) {
        struct hconn *c = &h->c[i];
        uint64_t due = due_of(o, start, *next);
        if (c->busy || c->fd < 0 || due > bench_mono_us())
            continue;
        uint32_t n = o->batch;
        if (o->count && o->count - *next < n)
            n = (uint32_t)(o->count - *next);
        uint64_t t = o->rate > 0 ? (uint64_t)((int64_t)due + h->real_minus_mono)
                                 : bench_realtime_us();
        if (send_request(h, c, *next, n, t)) {
            hconn_close(h, c);
            hconn_open(h, c);
            continue;
        }
        *next += n;
    }
}

static int any_busy(const struct http *h)
{
    for (uint32_t i = 0; i < h->o->http_conns; i++)
        if (h->c[i].busy)
            return 1;
    return 0;
}

static int any_idle(const struct http *h)
{
    for (uint32_t i = 0; i < h->o->http_conns; i++)
        if (!h->c[i].busy && h->c[i].fd >= 0)
            return 1;
    return 0;
}

static int run_http(const struct opts *o, struct sent *s)
{
    struct http h;
    if (http_init(&h, o, s)) {
        http_free(&h);
        return -1;
    }
    uint64_t start = bench_mono_us(), next = 0;
    uint64_t deadline = start + (uint64_t)(o->timeout_s * 1e6);
    while ((more(o, start, next) || any_busy(&h)) && !g_stop && bench_mono_us() < deadline) {
        send_due(&h, start, &next);
        if (!more(o, start, next) && !s->send_s)
            s->send_s = (double)(bench_mono_us() - start) / 1e6;
        /* Behind schedule with every connection busy: wait for an answer,
         * not for a due time that has passed already. */
        int wait_ms = 10;
        if (more(o, start, next) && o->rate > 0 && any_idle(&h)) {
            uint64_t due = due_of(o, start, next), now = bench_mono_us();
            wait_ms = due > now ? (int)((due - now) / 1000) : 0;
            if (wait_ms > 10)
                wait_ms = 10;
        }
        struct epoll_event evs[HTTP_MAX_CONNS];
        int n = epoll_wait(h.ep, evs, HTTP_MAX_CONNS, wait_ms);
        for (int i = 0; i < n; i++) {
            struct hconn *c = evs[i].data.ptr;
            if ((evs[i].events & EPOLLOUT) && c->busy && hconn_flush(&h, c))
                on_readable(&h, c); /* the write failed: reopen via the read path */
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                on_readable(&h, c);
        }
    }
    int rc = any_busy(&h) || (o->count && next < o->count && !o->duration_s) ? -1 : 0;
    if (rc)
        fprintf(stderr, "pb-produce: stopped (timeout or signal) with requests unanswered\n");
    s->total_s = (double)(bench_mono_us() - start) / 1e6;
    if (!s->send_s) /* the last answer came with the end of sending */
        s->send_s = s->total_s;
    http_free(&h);
    return rc;
}

/* ---- command line and report ---- */

static void usage(FILE *f)
{
    fputs("Usage: pb-produce [options]\n"
          "  --brokers B          Kafka bootstrap servers (Kafka mode)\n"
          "  --topic T            topic (default pushbridge.events)\n"
          "  --create-topic P     create the topic with P partitions first (real broker)\n"
          "  --http HOST:PORT     POST to the bridge's internal listener instead of Kafka\n"
          "  --path PATH          push path (default /push)\n"
          "  --batch B            events per HTTP request; B > 1 posts a JSON array (1)\n"
          "  --http-conns C       keep-alive connections (default 8)\n"
          "  --users U            keys u0..u(U-1), round-robin (default 1)\n"
          "  --key K              one fixed key instead (\"*\" = broadcast)\n"
          "  --tasks K            event i names task \"t<i % K>\" (default 0: no task)\n"
          "  --rate R             events per second, 0 = as fast as possible (default 1000)\n"
          "  --count N            at most N events (default 1000; 0 = no bound)\n"
          "  --duration S         stop sending after S seconds (default: no bound)\n"
          "  --pad B              add B bytes of padding to each event's data\n"
          "  --linger-ms L        librdkafka linger.ms (default 1)\n"
          "  --timeout S          give up after S seconds (default 120)\n"
          "  --format F           envelope (default), json, json-field, ce-binary,\n"
          "                       ce-structured: the same data as other producers write it\n",
          f);
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    enum {
        OPT_BROKERS = 256, OPT_TOPIC, OPT_CREATE, OPT_HTTP, OPT_PATH, OPT_BATCH, OPT_CONNS,
        OPT_USERS, OPT_TASKS, OPT_KEY, OPT_RATE, OPT_COUNT, OPT_DURATION, OPT_PAD, OPT_LINGER, OPT_TIMEOUT,
        OPT_FORMAT
    };
    static const struct option lo[] = {
        {"brokers", required_argument, NULL, OPT_BROKERS},
        {"topic", required_argument, NULL, OPT_TOPIC},
        {"create-topic", required_argument, NULL, OPT_CREATE},
        {"http", required_argument, NULL, OPT_HTTP},
        {"path", required_argument, NULL, OPT_PATH},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"http-conns", required_argument, NULL, OPT_CONNS},
        {"users", required_argument, NULL, OPT_USERS},
        {"tasks", required_argument, NULL, OPT_TASKS},
        {"key", required_argument, NULL, OPT_KEY},
        {"rate", required_argument, NULL, OPT_RATE},
        {"count", required_argument, NULL, OPT_COUNT},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"pad", required_argument, NULL, OPT_PAD},
        {"linger-ms", required_argument, NULL, OPT_LINGER},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct opts){.topic = "pushbridge.events", .users = 1, .rate = 1000, .count = 1000,
                       .linger_ms = 1, .path = "/push", .batch = 1, .http_conns = 8,
                       .timeout_s = 120};
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case OPT_BROKERS: o->brokers = optarg; break;
        case OPT_TOPIC: o->topic = optarg; break;
        case OPT_CREATE: o->create_partitions = atoi(optarg); break;
        case OPT_HTTP: o->http = optarg; break;
        case OPT_PATH: o->path = optarg; break;
        case OPT_BATCH: o->batch = (uint32_t)strtoul(optarg, NULL, 10); break;
        case OPT_CONNS: o->http_conns = (uint32_t)strtoul(optarg, NULL, 10); break;
        case OPT_USERS: o->users = (uint32_t)strtoul(optarg, NULL, 10); break;
        case OPT_TASKS: o->tasks = strtoull(optarg, NULL, 10); break;
        case OPT_KEY: o->key = optarg; break;
        case OPT_RATE: o->rate = atof(optarg); break;
        case OPT_COUNT: o->count = strtoull(optarg, NULL, 10); break;
        case OPT_DURATION: o->duration_s = atof(optarg); break;
        case OPT_PAD: o->pad = (uint32_t)strtoul(optarg, NULL, 10); break;
        case OPT_LINGER: o->linger_ms = atoi(optarg); break;
        case OPT_TIMEOUT: o->timeout_s = atof(optarg); break;
        case OPT_FORMAT:
            o->format = -1;
            for (int k = 0; format_names[k]; k++)
                if (strcmp(optarg, format_names[k]) == 0)
                    o->format = k;
            if (o->format < 0) {
                fprintf(stderr, "pb-produce: unknown --format %s\n", optarg);
                return -1;
            }
            break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if ((!o->brokers && !o->http) || o->users == 0 || o->batch == 0 || o->pad > MAX_PAD ||
        o->http_conns == 0 || o->http_conns > HTTP_MAX_CONNS || o->rate < 0 ||
        (o->key && strlen(o->key) > MAX_KEY) || (!o->count && o->duration_s <= 0 && !o->create_partitions)) {
        fprintf(stderr, "pb-produce: bad options (see --help)\n");
        return -1;
    }
    return 0;
}

static void report(const struct opts *o, const struct sent *s)
{
    struct jw w;
    double u, sy;
    bench_cpu_self(&u, &sy);
    jw_begin(&w, stdout);
    jw_str(&w, "mode", o->http ? (o->batch > 1 ? "http-batch" : "http-single") : "kafka");
    jw_str(&w, "target", o->key ? o->key : "users");
    jw_u64(&w, "users", o->key ? 1 : o->users);
    jw_u64(&w, "tasks", o->tasks);
    jw_f(&w, "requested_rate", o->rate);
    jw_u64(&w, "sent", s->events);
    jw_u64(&w, "errors", s->errors);
    jw_f(&w, "send_s", s->send_s);
    jw_f(&w, "total_s", s->total_s);
    jw_f(&w, "send_rate", s->send_s > 0 ? (double)s->events / s->send_s : 0);
    if (o->http) {
        jw_u64(&w, "batch", o->batch);
        jw_u64(&w, "requests", s->requests);
        jw_u64(&w, "http_ok", s->http_ok);
        jw_u64(&w, "http_err", s->http_err);
        jw_u64(&w, "delivered", s->delivered);
        jw_hist(&w, "rtt", &s->rtt);
    } else {
        jw_u64(&w, "linger_ms", (uint64_t)o->linger_ms);
    }
    jw_f(&w, "producer_cpu_s", u + sy);
    jw_end(&w);
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse_opts(argc, argv, &o))
        return 2;
    memset(g_pad, 'x', o.pad);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    struct sent *s = calloc(1, sizeof(*s));
    if (!s)
        return 1;
    int rc = o.http ? run_http(&o, s) : run_kafka(&o, s);
    report(&o, s);
    free(s);
    return rc ? 1 : 0;
}

/* Refusals by a secure Kafka cluster, as an operator reads them: one
 * sentence that names what was refused (the login, a certificate, the group,
 * a topic) and what to grant, kept for /readyz and logged once per interval
 * with a count, however often librdkafka retries. */
#include "pushbridge/kafka/kafka_refusal.h"
#include "pushbridge/kafka/kafka_oidc.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>

#include "pushbridge/core/log.h"
#include "pushbridge/core/metrics.h"
#include "kafka_internal.h"

/* A refusal that persists is said again (with its count) this often. */
#define REFUSAL_LOG_INTERVAL_MS 10000

static const char *const write_names[PB_WRITE__COUNT] = {"dead-letter", "push"};

/* The TLS alerts a broker sends when it refuses the client's certificate. */
static int client_cert_alert(const char *reason)
{
    static const char *const alerts[] = {"alert certificate unknown", "alert unknown ca",
                                         "alert bad certificate", "alert certificate required",
                                         "alert handshake failure", NULL};
    for (int i = 0; alerts[i]; i++)
        if (strstr(reason, alerts[i]))
            return 1;
    return 0;
}

enum pb_refusal_kind pb_refusal_classify(int err, const char *reason)
{
    reason = reason ? reason : "";
    switch (err) {
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
        return PB_REFUSAL_AUTH;
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
        return PB_REFUSAL_GROUP;
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
        return PB_REFUSAL_TOPIC;
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
        return PB_REFUSAL_CLUSTER;
    default:
        break;
    }
    /* The broker's alert arrives on the first read after the handshake, so
     * librdkafka reports it as a receive failure, not an SSL error. */
    if (client_cert_alert(reason))
        return PB_REFUSAL_CLIENT_CERT;
    if (err == RD_KAFKA_RESP_ERR__SSL)
        return PB_REFUSAL_TLS;
    return PB_REFUSAL_NONE;
}

/* librdkafka's text without the broker prefix ("sasl_ssl://h:p/1: ") and
 * the state suffix (" (after 3ms in state AUTH_REQ…)"): what the broker or
 * OpenSSL said. */
static void detail(const char *reason, char *out, size_t len)
{
    const char *s = reason ? reason : "";
    const char *scheme = strstr(s, "://");
    const char *sep = scheme ? strstr(scheme, ": ") : NULL;
    if (scheme && sep && scheme - s < 12)
        s = sep + 2;
    size_t n = strlen(s);
    const char *after = strstr(s, " (after ");
    if (after)
        n = (size_t)(after - s);
    while (n && (s[n - 1] == '.' || s[n - 1] == ' '))
        n--;
    snprintf(out, len, "%.*s", (int)n, s);
}

static void describe(char *out, size_t len, enum pb_refusal_kind kind, const char *object,
                     const char *user, const char *d)
{
    switch (kind) {
    case PB_REFUSAL_AUTH:
        if (user)
            snprintf(out, len, "Kafka refused the SASL login of user '%.80s': %s", user, d);
        else
            snprintf(out, len, "Kafka refused the SASL login: %s", d);
        break;
    case PB_REFUSAL_TLS:
        if (strstr(d, "certificate verify failed"))
            snprintf(out, len,
                     "the Kafka broker's TLS certificate is not trusted (check ssl.ca.location): "
                     "%s",
                     d);
        else
            snprintf(out, len, "the TLS handshake with the Kafka broker failed: %s", d);
        break;
    case PB_REFUSAL_CLIENT_CERT:
        snprintf(out, len,
                 "the Kafka broker refused this bridge's TLS client certificate "
                 "(ssl.certificate.location): %s",
                 d);
        break;
    case PB_REFUSAL_GROUP:
        snprintf(out, len,
                 "Kafka refused access to consumer group '%.200s': %s (grant the bridge's "
                 "principal READ on the group)",
                 object ? object : "?", d);
        break;
    case PB_REFUSAL_TOPIC:
        snprintf(out, len,
                 "Kafka refused access to topic '%.200s': %s (grant the bridge's principal READ "
                 "on the topic)",
                 object ? object : "?", d);
        break;
    case PB_REFUSAL_CLUSTER:
        snprintf(out, len, "Kafka refused a cluster operation: %s", d);
        break;
    case PB_REFUSAL_NONE:
        snprintf(out, len, "%s", d);
        break;
    }
}

void pb_refusal_consume(struct pb_kafka_refusals *r, enum pb_refusal_kind kind,
                        const char *object, const char *user, const char *reason)
{
    char d[256], text[PB_REFUSAL_TEXT];
    detail(reason, d, sizeof(d));
    describe(text, sizeof(text), kind, object, user, d);
    int same = r->kind == kind && strcmp(r->text, text) == 0;
    r->kind = kind;
    snprintf(r->object, sizeof(r->object), "%s", object ? object : "");
    memcpy(r->text, text, sizeof(text));
    if (same && r->logged_at) {
        r->repeats++;
        return;
    }
    r->logged_at = pb_monotonic_ms();
    r->repeats = 0;
    pb_error("kafka: %s; consumption stopped, /readyz answers 503 until this is fixed", text);
}

void pb_refusal_consume_ok(struct pb_kafka_refusals *r, const char *topic)
{
    if (r->kind == PB_REFUSAL_NONE)
        return;
    /* An assignment of another topic says nothing about a refused one. */
    if (topic && r->kind == PB_REFUSAL_TOPIC && strcmp(topic, r->object) != 0)
        return;
    pb_info("kafka: no longer refused: %s", r->text);
    r->kind = PB_REFUSAL_NONE;
    r->text[0] = r->object[0] = '\0';
    r->logged_at = 0;
    r->repeats = 0;
}

void pb_refusal_connection_ok(struct pb_kafka_refusals *r)
{
    if (r->kind == PB_REFUSAL_AUTH || r->kind == PB_REFUSAL_TLS ||
        r->kind == PB_REFUSAL_CLIENT_CERT)
        pb_refusal_consume_ok(r, NULL);
}

const char *pb_refusal_why(const struct pb_kafka_refusals *r)
{
    return r->kind == PB_REFUSAL_NONE ? NULL : r->text;
}

void pb_refusal_write(struct pb_kafka_refusals *r, enum pb_write_kind which, const char *topic,
                      enum pb_refusal_kind kind, const char *reason)
{
    char d[256], text[PB_REFUSAL_TEXT];
    detail(reason, d, sizeof(d));
    const char *grant = kind == PB_REFUSAL_TOPIC     ? " (grant the bridge's principal WRITE on it)"
                        : kind == PB_REFUSAL_CLUSTER ? " (grant the bridge's principal WRITE on "
                                                       "the topic, or IDEMPOTENT_WRITE on the "
                                                       "cluster)"
                                                     : "";
    snprintf(text, sizeof(text), "Kafka refuses writes to the %s topic '%.200s': %s%s",
             write_names[which], topic, d, grant);
    struct pb_refused_write *w = &r->write[which];
    int same = strcmp(w->text, text) == 0;
    memcpy(w->text, text, sizeof(text));
    if (same && w->logged_at) {
        w->repeats++;
        return;
    }
    w->logged_at = pb_monotonic_ms();
    w->repeats = 0;
    pb_error("kafka: %s; delivery goes on, refused writes are counted in "
             "pushbridge_kafka_writes_refused_total",
             text);
}

void pb_refusal_write_ok(struct pb_kafka_refusals *r, enum pb_write_kind which)
{
    struct pb_refused_write *w = &r->write[which];
    if (!w->text[0])
        return;
    pb_info("kafka: writes to the %s topic go through again", write_names[which]);
    w->text[0] = '\0';
    w->logged_at = 0;
    w->repeats = 0;
}

const char *pb_refusal_write_refused(const struct pb_kafka_refusals *r, enum pb_write_kind which)
{
    return r->write[which].text[0] ? r->write[which].text : NULL;
}

const char *pb_refusal_write_warning(const struct pb_kafka_refusals *r)
{
    for (int i = 0; i < PB_WRITE__COUNT; i++)
        if (r->write[i].text[0])
            return r->write[i].text;
    return NULL;
}

/* One line per interval for a refusal that came again: the same sentence,
 * with how often it came meanwhile. One that did not come again (no dead
 * letter since) stays quiet, and in /readyz. */
static void remind(const char *text, int64_t *logged_at, uint64_t *repeats, int64_t now)
{
    if (!text[0] || !*logged_at || !*repeats || now - *logged_at < REFUSAL_LOG_INTERVAL_MS)
        return;
    pb_error("kafka: still refused (%llu time(s) in the last %lld s): %s",
             (unsigned long long)*repeats, (long long)((now - *logged_at + 999) / 1000), text);
    *logged_at = now;
    *repeats = 0;
}

void pb_refusal_tick(struct pb_kafka_refusals *r, int64_t now)
{
    if (r->kind != PB_REFUSAL_NONE)
        remind(r->text, &r->logged_at, &r->repeats, now);
    for (int i = 0; i < PB_WRITE__COUNT; i++)
        remind(r->write[i].text, &r->write[i].logged_at, &r->write[i].repeats, now);
}

/* ---- the Kafka module's clients ---- */

/* The SASL user the refusal was for, when the mechanism has one. */
static const char *sasl_user(const struct pb_config *cfg)
{
    const char *user = NULL, *mech = NULL;
    for (size_t i = 0; i < cfg->kafka_properties.n; i++) {
        const struct pb_kv *kv = &cfg->kafka_properties.items[i];
        if (strcmp(kv->key, "sasl.username") == 0)
            user = kv->value;
        else if (strcmp(kv->key, "sasl.mechanism") == 0 || strcmp(kv->key, "sasl.mechanisms") == 0)
            mech = kv->value;
    }
    return mech && strcmp(mech, "OAUTHBEARER") == 0 ? NULL : user;
}

/* "Subscribed topic not available: NAME: Broker: …" when the error carries
 * no topic handle. */
static const char *topic_of(const char *reason, char *buf, size_t len)
{
    const char *p = reason ? strstr(reason, "not available: ") : NULL;
    if (!p)
        return NULL;
    p += strlen("not available: ");
    const char *end = strstr(p, ": ");
    size_t n = end ? (size_t)(end - p) : strlen(p);
    snprintf(buf, len, "%.*s", (int)n, p);
    return buf;
}

int pb_kafka_note_refusal(struct pb_kafka *k, const rd_kafka_t *rk, int err, const char *topic,
                          const char *reason)
{
    enum pb_refusal_kind kind = pb_refusal_classify(err, reason);
    if (kind == PB_REFUSAL_NONE)
        return 0;
    /* OIDC (kafka_oidc.c): while the IdP gives no token, the broker's
     * refusal of the expired one ("invalid_token") has that cause, so it
     * is said as the same sentence, not as another refusal each retry. */
    char oidc[1024];
    if (kind == PB_REFUSAL_AUTH && pb_oidc_failure(oidc, sizeof(oidc)))
        reason = oidc;
    if (rk == k->rk) {
        char tbuf[256];
        if (kind == PB_REFUSAL_TOPIC && !topic)
            topic = topic_of(reason, tbuf, sizeof(tbuf));
        const char *object = kind == PB_REFUSAL_GROUP ? k->group_id
                             : kind == PB_REFUSAL_TOPIC ? topic
                                                        : NULL;
        pb_refusal_consume(&k->refusals, kind, object, sasl_user(k->cfg), reason);
        return 1;
    }
    enum pb_write_kind which = rk == k->push ? PB_WRITE_PUSH : PB_WRITE_DEAD_LETTER;
    const char *wtopic =
        which == PB_WRITE_PUSH ? k->cfg->push_topic : k->cfg->kafka_dead_letter_topic;
    pb_refusal_write(&k->refusals, which, wtopic ? wtopic : "?", kind, reason);
    return 1;
}

void pb_kafka_on_producer_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct pb_kafka *k = opaque;
    if (pb_kafka_note_refusal(k, rk, err, NULL, reason))
        return;
    /* Brokers away: the consumer says so (/readyz); a producer's retries
     * are debug. */
    pb_debug("kafka producer error: %s: %s", rd_kafka_err2name(err), reason);
}

/* Checks across settings, run after the file and the environment are in:
 * every value within its row's bounds, listener addresses, what needs what
 * (TLS, JWT keys, cluster mode's listener), and secrets that must not be
 * the examples' placeholders. Each message names the setting. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_internal.h"

/* ---- checks across settings ---- */

int pb_config_split_hostport(const char *addr, char *host, size_t hostlen, int *port)
{
    const char *h, *hend, *p;
    if (!addr || !host || !hostlen || !port)
        return -1;
    if (*addr == '[') { /* "[::1]:80": an IPv6 literal has colons of its own */
        h = addr + 1;
        hend = strchr(h, ']');
        if (!hend || hend[1] != ':')
            return -1;
        p = hend + 2;
    } else {
        h = addr;
        hend = strrchr(addr, ':');
        if (!hend || memchr(addr, ':', (size_t)(hend - addr)))
            return -1; /* no port, or a bare IPv6 literal, which is ambiguous */
        p = hend + 1;
    }
    size_t n = (size_t)(hend - h);
    if (!n || n >= hostlen)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!isgraph((unsigned char)h[i]) || h[i] == '[' || h[i] == ']' || h[i] == '/')
            return -1;
    long v = 0;
    if (!*p || strlen(p) > 5)
        return -1;
    for (; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return -1;
        v = v * 10 + (*p - '0');
    }
    if (v > 65535)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = (int)v;
    return 0;
}

/* Examples (deploy/env.example, the README) show where a secret goes with
 * this placeholder; started as it is, it would be a secret anyone can read. */
#define PLACEHOLDER "CHANGE-ME"
/* RFC 7518 3.2: an HS256 key must be at least as long as the hash. */
#define MIN_HS256_SECRET_BYTES 32

static int check_secrets(const struct pb_config *c, char *errstr, size_t errlen)
{
    if (c->auth_jwt_secret && strstr(c->auth_jwt_secret, PLACEHOLDER))
        return pb_config_fail(errstr, errlen,
                    "auth.jwt_secret is still the example's " PLACEHOLDER
                    " placeholder: set a random secret of at least %d bytes",
                    MIN_HS256_SECRET_BYTES);
    if (c->auth_mode == PB_AUTH_JWT && c->auth_jwt_secret &&
        strlen(c->auth_jwt_secret) < MIN_HS256_SECRET_BYTES)
        return pb_config_fail(errstr, errlen,
                    "auth.jwt_secret is %zu bytes: HS256 needs at least %d (RFC 7518 3.2)",
                    strlen(c->auth_jwt_secret), MIN_HS256_SECRET_BYTES);
    for (size_t i = 0; i < c->push_api_keys.n; i++)
        if (strstr(c->push_api_keys.items[i], PLACEHOLDER))
            return pb_config_fail(errstr, errlen,
                        "push.api_keys[%zu] is still the example's " PLACEHOLDER
                        " placeholder: set a random key, or remove it",
                        i);
    return 0;
}

/* 1 when host (from listen.*) is a loopback address. */
static int is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "localhost") == 0 ||
           strcmp(host, "::1") == 0 || strcmp(host, "[::1]") == 0;
}

int pb_config_internal_exposed(const struct pb_config *c)
{
    char host[256];
    int port;
    if (strcmp(c->listen_internal, c->listen_public) == 0)
        return 1;
    return pb_config_split_hostport(c->listen_internal, host, sizeof(host), &port) == 0 &&
           !is_loopback(host);
}

/* The table's own constraints (set, in range, a known name), in case a
 * field was assigned directly rather than through the loader. */
static int check_table(const struct pb_config *c, char *errstr, size_t errlen)
{
    size_t nsettings;
    const struct setting *settings = pb_config_table(&nsettings);
    for (size_t i = 0; i < nsettings; i++) {
        const struct setting *s = &settings[i];
        if (s->type == T_STRING && !(s->flags & F_OPTIONAL) && !*FIELD_PTR(c, s, char *))
            return pb_config_fail(errstr, errlen, "%s is not set", s->key);
        if (s->type == T_INT &&
            (*FIELD_PTR(c, s, int64_t) < s->min || *FIELD_PTR(c, s, int64_t) > s->max))
            return pb_config_fail(errstr, errlen, "%s: %" PRId64 " is not between %" PRId64 " and %" PRId64,
                        s->key, *FIELD_PTR(c, s, int64_t), s->min, s->max);
        if (s->type == T_ENUM) {
            int v = *FIELD_PTR(c, s, int), n = 0;
            while (s->names[n])
                n++;
            if (v < 0 || v >= n)
                return pb_config_fail(errstr, errlen, "%s: invalid value %d", s->key, v);
        }
    }
    return 0;
}

int pb_config_validate(const struct pb_config *c, char *errstr, size_t errlen)
{
    char host[256], shown[64];
    int port;

    if (check_table(c, errstr, errlen))
        return -1;

    const char *listeners[][2] = {{"listen.public", c->listen_public},
                                  {"listen.internal", c->listen_internal}};
    for (size_t i = 0; i < 2; i++) {
        const char *addr = listeners[i][1];
        if (pb_config_split_hostport(addr, host, sizeof(host), &port) < 0 || port == 0)
            return pb_config_fail(errstr, errlen,
                        "%s: expected HOST:PORT with a port from 1 to 65535 (IPv6 as "
                        "[ADDR]:PORT), got %s",
                        listeners[i][0], pb_config_quote(shown, sizeof(shown), addr, 0));
    }

    if (c->auth_mode == PB_AUTH_JWT && !c->auth_jwt_secret && !c->auth_jwt_public_key)
        return pb_config_fail(errstr, errlen,
                    "auth.mode is jwt but neither auth.jwt_secret nor auth.jwt_public_key is set");
    if (check_secrets(c, errstr, errlen))
        return -1;
    if (!c->tls_cert != !c->tls_key)
        return pb_config_fail(errstr, errlen, "tls.cert and tls.key must be set together (%s is missing)",
                    c->tls_cert ? "tls.key" : "tls.cert");
    /* Cluster pushes are answered once Kafka has them: httpd.c can hold an
     * answer back, lws's server for a shared or TLS listener cannot. */
    if (c->cluster_mode == PB_CLUSTER_KAFKA &&
        (strcmp(c->listen_internal, c->listen_public) == 0 || c->tls_internal))
        return pb_config_fail(errstr, errlen,
                    "cluster.mode kafka needs the internal listener on a port of its own "
                    "without tls.internal (pushes are answered once Kafka has them)");
    if (c->tls_internal && !c->tls_cert)
        return pb_config_fail(errstr, errlen, "tls.internal is true but tls.cert and tls.key are not set");
    /* Checked here so that --check-config catches it, not only a start. */
    const char *pem[] = {c->tls_cert, c->tls_key, c->auth_jwt_public_key};
    const char *pem_key[] = {"tls.cert", "tls.key", "auth.jwt_public_key"};
    for (int i = 0; i < 3; i++)
        if (pem[i] && access(pem[i], R_OK) != 0)
            return pb_config_fail(errstr, errlen, "%s: cannot read %s: %s", pem_key[i], pem[i],
                        strerror(errno));
    if (!c->kafka_topics.n)
        return pb_config_fail(errstr, errlen, "kafka.topics is empty: at least one topic is needed");
    if (c->ws_path[0] != '/')
        return pb_config_fail(errstr, errlen, "ws.path: must start with '/', got %s",
                    pb_config_quote(shown, sizeof(shown), c->ws_path, 0));
    if (c->ws_idle_timeout_ms <= c->ws_ping_interval_ms)
        return pb_config_fail(errstr, errlen,
                    "ws.idle_timeout_ms (%" PRId64
                    ") must be greater than ws.ping_interval_ms (%" PRId64
                    "), or quiet clients are closed before they can answer a ping",
                    c->ws_idle_timeout_ms, c->ws_ping_interval_ms);
    if (c->ws_queue_hard_max_bytes && c->ws_queue_hard_max_bytes < c->ws_queue_max_bytes)
        return pb_config_fail(errstr, errlen,
                    "ws.queue_hard_max_bytes (%" PRId64 ") must be at least ws.queue_max_bytes (%" PRId64
                    ")",
                    c->ws_queue_hard_max_bytes, c->ws_queue_max_bytes);
    for (size_t i = 0; c->kafka_dead_letter_topic && i < c->kafka_topics.n; i++)
        if (strcmp(c->kafka_topics.items[i], c->kafka_dead_letter_topic) == 0)
            return pb_config_fail(errstr, errlen,
                        "kafka.dead_letter_topic '%s' is also in kafka.topics: dead letters "
                        "would be consumed again",
                        pb_config_sanitize(shown, sizeof(shown), c->kafka_dead_letter_topic));
    return 0;
}

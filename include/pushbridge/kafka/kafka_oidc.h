/* OAUTHBEARER tokens from an OAuth 2.0 / OpenID Connect identity provider,
 * fetched by the bridge itself (client-credentials grant over HTTPS with
 * OpenSSL), because Debian 12's librdkafka 2.0.2 is built without libcurl
 * and refuses sasl.oauthbearer.method=oidc. Each librdkafka client gets the
 * refresh callback, run on librdkafka's background thread. */
#ifndef PB_KAFKA_OIDC_H
#define PB_KAFKA_OIDC_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "pushbridge/core/config.h"

/* The most read from the token endpoint (status line, headers and body):
 * a token response is a few KiB; a longer one is refused, not grown into. */
#define PB_OIDC_RESPONSE_MAX 65536
/* Connect, TLS handshake and each read or write give up after this long. */
#define PB_OIDC_TIMEOUT_MS 10000

/* A parsed token response. access_token is malloc'd (pb_oidc_token_free). */
struct pb_oidc_token {
    char *access_token;
    int64_t expires_in_ms; /* from expires_in, else the JWT's exp - now; -1 when neither */
    char principal[256];   /* the JWT's sub; "" when it has none */
};

/* 1 when kafka.properties sets sasl.oauthbearer.method to oidc. */
int pb_oidc_enabled(const struct pb_config *cfg);
/* 1 when key is one of the OIDC properties the bridge handles itself, so it
 * is not given to librdkafka (only when pb_oidc_enabled). */
int pb_oidc_own_property(const char *key);
/* Start-up check of the OIDC properties: the token endpoint an https URL,
 * client id and secret set. -1 with errstr naming the property. */
int pb_oidc_check(const struct pb_config *cfg, char *errstr, size_t errlen);
/* On a client's conf before rd_kafka_new: the token refresh callback and a
 * SASL queue of its own. cfg must live as long as the process. */
void pb_oidc_conf(const struct pb_config *cfg, rd_kafka_conf_t *conf);
/* After rd_kafka_new of a client whose conf went through pb_oidc_conf (a
 * no-op without OIDC): its SASL callbacks run on librdkafka's background
 * thread, so tokens are fetched and refreshed whatever the bridge polls. */
int pb_oidc_client_started(const struct pb_config *cfg, rd_kafka_t *rk, char *errstr,
                           size_t errlen);

/* 1 with buf set to librdkafka's sentence for the last failed refresh
 * ("Failed to acquire SASL OAUTHBEARER token: the token endpoint ...") while
 * no token has come since; 0 otherwise. Any thread. */
int pb_oidc_failure(char *buf, size_t len);

/* An HTTP/1.1 response in buf[0, len): 1 while incomplete (eof 0), 0 with
 * *status and the body (Content-Length, chunked, or up to eof) malloc'd in
 * *body (NUL-terminated, *body_len bytes), -1 with err on a malformed one. */
int pb_oidc_parse_http(const char *buf, size_t len, int eof, int *status, char **body,
                       size_t *body_len, char *err, size_t errlen);
/* The token endpoint's JSON answer with its HTTP status: 0 with tok filled,
 * -1 with err saying why (HTTP status, the IdP's error and
 * error_description, or what is missing). */
int pb_oidc_parse_token(int status, const char *body, size_t len, int64_t now_ms,
                        struct pb_oidc_token *tok, char *err, size_t errlen);
void pb_oidc_token_free(struct pb_oidc_token *tok);

#endif

/* The HTTP API (internal listener) and the public pages: routing and the
 * handlers, on a request that either transport filled in (httpd.c, the
 * internal listener's own HTTP/1.1 server; or http_lws.c, for the public
 * listener). Pushes join Kafka events at pb_hub_deliver(). What the handlers
 * need from the rest of the bridge comes in a struct pb_api_env that the
 * server builds: the API sees no server, only that. */
#ifndef PB_HTTP_H
#define PB_HTTP_H

#include <stddef.h>

#include "pushbridge/core/buf.h"
#include "pushbridge/core/config.h"
#include "pushbridge/core/metrics.h"

/* Longest query string kept (a /send message travels in it). */
#define PB_HTTP_MAX_QUERY 4096
/* Bound on answers: /metrics is the largest (sources x reasons + lag rows). */
#define PB_HTTP_MAX_ANSWER (4u << 20)

struct pb_hub;
struct pb_store;
struct pb_kafka;
struct pb_relay_job;

/* The HTTP handlers' environment, one per listener role: pointers to what
 * the owner (server.c) owns and outlives every request with, and callbacks
 * for what only the owner knows. Filled once at start; read by the loop
 * thread that serves the listener. */
struct pb_api_env {
    const struct pb_config *cfg;
    struct pb_metrics *metrics;
    struct pb_hub *hub;     /* pushes delivered, users looked up */
    struct pb_store *store; /* GET /users/{id}/tasks */
    struct pb_kafka *kafka; /* cluster mode's relay (push.topic); the group's share */
    int is_public;          /* this listener serves the public pages */
    int is_internal;        /* this listener serves the HTTP API */
    void *owner;            /* handed back to the callbacks */
    /* 1 when the bridge serves (what /readyz says), else 0 with *why. */
    int (*ready)(const void *owner, const char **why);
    /* The gauges of /stats and /metrics (connections, the store, Kafka). */
    void (*gauges)(const void *owner, struct pb_gauges *g);
};

/* One request and its answer. Owned by the transport that read it, for one
 * request; pb_http_req_clear frees what it holds. */
struct pb_http_req {
    int method;          /* LWSHUMETH_* numbering; 30 = one no route accepts */
    char path[512];      /* without the query */
    int path_decoded;    /* lws %-decoded path and query; httpd hands them raw */
    int query_decoded;
    struct pb_buf query; /* bound: PB_HTTP_MAX_QUERY */
    char *auth;          /* Authorization header value, or NULL */
    char if_none_match[40]; /* a cached file's ETag (lws transport only), or "" */
    struct pb_buf body;  /* bound: push.max_body_bytes */

    int status;          /* 0 until answered */
    const char *content_type;
    const char *allow;   /* for 405 */
    const char *etag;    /* a file of web/: revalidated, not no-store (web.c) */
    struct pb_buf answer;
    int close_after;     /* end the connection after this answer */
    int is_push;         /* counts in pushbridge_push_requests_total */

    /* Cluster mode: the answer waits for Kafka (relay.c). Until relay is
     * NULL again, status stays 0; then resume, set by the transport, sends
     * the answer. */
    struct pb_relay_job *relay;
    void (*resume)(struct pb_http_req *r);
    void *transport; /* the transport's own pointer, for resume */
};

void pb_http_req_init(struct pb_http_req *r, const struct pb_config *cfg);
void pb_http_req_clear(struct pb_http_req *r);
/* Before the body is read: answers 401 for a push route without a valid
 * key (so no body is buffered for it). Returns 1 when r is answered. */
int pb_http_check_early(const struct pb_api_env *env, struct pb_http_req *r);
/* Routes the complete request and builds its answer in r. */
void pb_http_handle(const struct pb_api_env *env, struct pb_http_req *r);
/* Last step before the answer is written: counts push statuses, turns an
 * answer that did not fit into a 500. */
void pb_http_done(const struct pb_api_env *env, struct pb_http_req *r);
/* Appends {"error":code,"message":msg} (the body of every error). */
void pb_http_error_json(struct pb_buf *b, const char *code, const char *msg);
/* {"error":code,"message":msg} with this status. */
void pb_http_answer_error(struct pb_http_req *r, int status, const char *code, const char *msg);
/* Decodes %XX in place (no '+': this is a path); new length, -1 if broken. */
long pb_http_path_decode(char *s, size_t n);

/* Finds name=value in an application/x-www-form-urlencoded string (a query
 * or a form body) and decodes %XX and '+' into a new buffer (*out, owned by
 * the caller). Returns 0 found, 1 absent, -1 badly escaped or OOM. */
int pb_http_form_value(const char *form, size_t len, const char *name, char **out,
                       size_t *outlen);

/* The same for a query string that lws has already %-decoded: values are
 * copied as they are. */
int pb_http_query_value(const char *query, size_t len, const char *name, char **out,
                        size_t *outlen);

#endif

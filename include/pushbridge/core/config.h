/* Settings of the bridge: one table of {key, type, min, max, default, help}
 * drives the JSON file parser, the PUSHBRIDGE_<SECTION>_<KEY> environment
 * overrides, --check-config, and the settings table printed for the README. */
#ifndef PB_CONFIG_H
#define PB_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "pushbridge/core/config_inputs.h"

/* A list of owned strings (topics, origins, api keys). */
struct pb_strlist {
    char **items;
    size_t n;
};

/* kafka.properties: owned key/value pairs passed through to librdkafka. */
struct pb_kv {
    char *key;
    char *value;
};
struct pb_kvlist {
    struct pb_kv *items;
    size_t n;
};

enum pb_auth_mode { PB_AUTH_JWT = 0, PB_AUTH_NONE = 1 };
enum pb_slow_client { PB_SLOW_CLOSE = 0, PB_SLOW_DROP_OLDEST = 1, PB_SLOW_COALESCE = 2 };
enum pb_cluster_mode { PB_CLUSTER_STANDALONE = 0, PB_CLUSTER_KAFKA = 1 };
enum pb_log_format { PB_LOG_TEXT = 0, PB_LOG_JSON = 1 };
enum pb_log_level { PB_LOG_DEBUG = 0, PB_LOG_INFO = 1, PB_LOG_WARN = 2, PB_LOG_ERROR = 3 };

/* The whole configuration. Owned by main(); every string in it is owned by
 * the struct and freed by pb_config_free(). Read-only once the loop starts. */
/* Bound of the `workers` setting (SPEC 11). */
#define PB_MAX_WORKERS 64

struct pb_config {
    char *listen_public;   /* "HOST:PORT" */
    char *listen_internal; /* "HOST:PORT" */

    char *kafka_brokers;
    struct pb_strlist kafka_topics;
    char *kafka_group_id;
    struct pb_kvlist kafka_properties;
    char *kafka_dead_letter_topic; /* NULL = none */
    char *kafka_undelivered_topic; /* NULL = none (kafka_undelivered.c) */
    int64_t kafka_max_event_age_ms;
    int64_t kafka_max_event_bytes;
    struct pb_strlist kafka_broadcast_topics; /* may carry * and group: keys; "*" = all */
    struct pb_inputs kafka_inputs; /* per-topic rules (SPEC 12), config_inputs.c */

    int auth_mode; /* enum pb_auth_mode */
    char *auth_jwt_secret;
    char *auth_jwt_public_key; /* PEM file path */
    char *auth_jwt_issuer;
    char *auth_jwt_audience;
    int64_t auth_jwt_leeway_s;
    int auth_jwt_require_exp; /* refuse tokens without exp */

    char *ws_path;
    struct pb_strlist ws_allowed_origins;
    int64_t ws_auth_timeout_ms;
    int64_t ws_ping_interval_ms;
    int64_t ws_idle_timeout_ms;
    int64_t ws_max_message_bytes;
    int64_t ws_max_connections;
    int64_t ws_max_connections_per_user;
    int64_t ws_max_pending;          /* accepted, not yet logged in (admission.c) */
    int64_t ws_max_pending_per_ip;
    int64_t ws_handshake_timeout_ms; /* lws timeout_secs_ah_idle */
    int64_t ws_queue_max_messages;
    int64_t ws_queue_max_bytes;
    int64_t ws_queue_hard_max_bytes;
    int64_t ws_slow_client_grace_ms;
    int64_t ws_send_buffer_bytes;
    int ws_slow_client; /* enum pb_slow_client */

    struct pb_strlist push_api_keys;
    int64_t push_max_connections;
    int64_t push_max_body_bytes;
    int64_t push_max_batch;
    char *push_topic;

    char *tls_cert;
    char *tls_key;
    int tls_internal; /* TLS on the internal listener too */

    int64_t state_max_tasks_per_user;
    int64_t state_max_bytes;
    int64_t state_ttl_ms;
    int64_t state_final_ttl_ms;
    int64_t state_lookback_ms;
    int64_t history_max_events;
    int64_t history_max_bytes;
    int64_t history_ttl_ms;

    int dashboard_enabled;   /* / on the public listener serves web/index.html */
    int cluster_mode;        /* enum pb_cluster_mode */
    char *cluster_node_name; /* NULL = the host name (see pb_kafka_new) */
    int64_t cluster_node_timeout_ms;
    char *cluster_presence_topic;
    int64_t cluster_presence_max_users; /* remote users kept, all nodes (presence.c) */

    int log_level;  /* enum pb_log_level */
    int log_format; /* enum pb_log_format */
    char *log_file; /* NULL = stderr */

    int64_t shutdown_timeout_ms;
    int64_t workers; /* 0: one per online CPU (pb_config_workers) */

    int dev; /* --dev: embedded Kafka, auth none, any origin */
};

/* Fills every setting with its table default. Returns 0, or -1 on OOM. */
int pb_config_init(struct pb_config *c);

/* Applies --dev defaults (auth.mode none); call before file and env. */
void pb_config_apply_dev(struct pb_config *c);

/* Loads a JSON config file over the current values. On error returns -1 and
 * writes a message naming the file and the offending key into errstr; settings
 * before the bad one may already be applied (the struct stays valid to free). */
int pb_config_load_file(struct pb_config *c, const char *path, char *errstr, size_t errlen);

/* Applies PUSHBRIDGE_<SECTION>_<KEY> variables from envp (NULL-terminated,
 * like environ). Unknown PUSHBRIDGE_* variables are errors naming them. */
int pb_config_apply_env(struct pb_config *c, char *const *envp, char *errstr, size_t errlen);

/* Sets one setting by dotted key ("ws.path") from its string form, as the
 * environment gives it (lists comma-separated). */
int pb_config_set(struct pb_config *c, const char *key, const char *value, char *errstr,
                  size_t errlen);

/* Adds the topics kafka.inputs names to kafka.topics (those not there yet):
 * they are consumed as if listed. Call once the file and the environment are
 * in. Returns 0, or -1 (out of memory) with errstr. */
int pb_config_add_input_topics(struct pb_config *c, char *errstr, size_t errlen);

/* Cross-field checks (e.g. auth.mode jwt needs a secret or a key). */
int pb_config_validate(const struct pb_config *c, char *errstr, size_t errlen);

/* The printers (config_print.c). */

/* Writes the effective configuration as JSON (secrets masked). */
void pb_config_dump(const struct pb_config *c, FILE *out);

/* Writes the settings table as Markdown (key, env, type, default, description). */
void pb_config_print_table(FILE *out);

/* Writes the man page pushbridge(8) in roff, its SETTINGS section from the table. */
void pb_config_print_man(FILE *out, const char *version);

void pb_config_free(struct pb_config *c);

/* 1 when the internal listener can be reached from beyond this host: not
 * on a loopback address, or sharing the public listener. */
int pb_config_internal_exposed(const struct pb_config *c);

/* "HOST:PORT" -> host (into buf) and port. Returns 0 or -1. */
int pb_config_split_hostport(const char *addr, char *host, size_t hostlen, int *port);

#endif

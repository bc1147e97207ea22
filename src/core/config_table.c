/* The settings table: one row per setting (dotted key, type, where it lives in struct
 * pb_config, range or names, default, help). Everything about settings walks it: the loader
 * (config.c), the checks (config_check.c), --help, the man page, the dump and the README table
 * (config_print.c). Adding a setting is adding a row here, and its field in config.h. */
#include <stddef.h>

#include "config_internal.h"

/* _Generic makes a row whose field has the wrong C type fail to compile, so the casts in
 * FIELD_PTR() (config_internal.h) cannot go wrong silently. The row macros stay one line each, which reads
 * better than clang-format's brace-wrapped form. */
/* clang-format off */
#define FIELD(f, T) _Generic(((struct pb_config *)0)->f, T: offsetof(struct pb_config, f))

#define STR(k, f, d, fl, h)     {k, T_STRING, FIELD(f, char *), 0, 0, d, NULL, fl, h}
#define INT(k, f, lo, hi, d, h) {k, T_INT, FIELD(f, int64_t), lo, hi, d, NULL, 0, h}
#define ENUM(k, f, nm, d, h)    {k, T_ENUM, FIELD(f, int), 0, 0, d, nm, 0, h}
#define LIST(k, f, d, fl, h)    {k, T_STRLIST, FIELD(f, struct pb_strlist), 0, 0, d, NULL, fl, h}
#define BOOL(k, f, d, h)        {k, T_BOOL, FIELD(f, int), 0, 0, d, NULL, 0, h}
#define KVLIST(k, f, h)         {k, T_KVLIST, FIELD(f, struct pb_kvlist), 0, 0, "", NULL, 0, h}
#define INPUTS(k, f, h)         {k, T_INPUTS, FIELD(f, struct pb_inputs), 0, 0, "", NULL, 0, h}
/* clang-format on */

#define MIB (1024 * 1024)

static const char *const auth_modes[] = {"jwt", "none", NULL};
static const char *const slow_clients[] = {"close", "drop_oldest", "coalesce", NULL};
static const char *const cluster_modes[] = {"standalone", "kafka", NULL};
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"text", "json", NULL};

/* Rows of one section must be contiguous: the dump opens one JSON object per run. */
static const struct setting settings[] = {
    STR("listen.public", listen_public, "0.0.0.0:8080", 0,
        "HOST:PORT of the public listener (WebSocket endpoint, dashboard)"),
    STR("listen.internal", listen_internal, "127.0.0.1:8081", 0,
        "HOST:PORT of the internal listener (push API, stats, metrics, health); may equal "
        "listen.public"),

    STR("kafka.brokers", kafka_brokers, "localhost:9092", 0,
        "Bootstrap brokers, comma-separated HOST:PORT"),
    LIST("kafka.topics", kafka_topics, "pushbridge.events", 0,
         "Topics to consume; a name starting with ^ is a regex subscription"),
    STR("kafka.group_id", kafka_group_id, "pushbridge", 0,
        "Consumer group (in cluster mode kafka, the node name is appended)"),
    KVLIST("kafka.properties", kafka_properties,
           "librdkafka properties passed through; from the environment key=value pairs, "
           "comma-separated, merged over the file's (a piece without = continues the previous "
           "value)"),
    STR("kafka.dead_letter_topic", kafka_dead_letter_topic, NULL, F_OPTIONAL,
        "Topic that receives malformed events unchanged, with headers saying why; null = none"),
    INT("kafka.max_event_age_ms", kafka_max_event_age_ms, 1, INT64_C(31536000000), "60000",
        "When the bridge (re)joins, backlog events older than this (by Kafka timestamp) are "
        "skipped: stale progress is not replayed"),
    INT("kafka.max_event_bytes", kafka_max_event_bytes, 64, 100 * MIB, "1048576",
        "Largest event value accepted; larger ones are dropped as oversized"),
    STR("kafka.undelivered_topic", kafka_undelivered_topic, NULL, F_OPTIONAL,
        "Topic that receives, once per cluster, each event for a user connected nowhere "
        "(keyed by the user, value and headers unchanged, header pushbridge-reason: offline); "
        "never broadcasts or group events; null = none"),
    LIST("kafka.broadcast_topics", kafka_broadcast_topics, "*", 0,
         "Topics whose events may use the keys * and group:NAME; * = every consumed topic, "
         "empty = none (only POST /broadcast then reaches more than one user). Others are "
         "dropped as broadcast_not_allowed"),
    INPUTS("kafka.inputs", kafka_inputs,
           "Rules for topics not written in the envelope (first match wins; their topics are "
           "consumed as if in kafka.topics): a list of {topic, format (envelope, json, "
           "cloudevents), target, event, id, task, final}, each source key, header:NAME, "
           "field:/json/pointer, ce:NAME or a literal; from the environment a JSON list. See "
           "README, Reading the topics you already have"),

    ENUM("auth.mode", auth_mode, auth_modes, "jwt",
         "How clients are identified: jwt (verified token) or none (trust the client; --dev)"),
    STR("auth.jwt_secret", auth_jwt_secret, NULL, F_OPTIONAL | F_SECRET, "HS256 shared secret"),
    INT("auth.jwt_leeway_s", auth_jwt_leeway_s, 0, 3600, "30",
        "Clock skew tolerated when checking a token's exp and nbf, in seconds"),
    BOOL("auth.jwt_require_exp", auth_jwt_require_exp, "true",
         "Refuse JWTs without an exp claim (a connection lives no longer than its token)"),
    STR("auth.jwt_public_key", auth_jwt_public_key, NULL, F_OPTIONAL,
        "PEM public key, or a JWKS file of RSA / P-256 keys (chosen by the token's kid), "
        "for RS256 and ES256"),
    STR("auth.jwt_issuer", auth_jwt_issuer, NULL, F_OPTIONAL,
        "Required iss claim; null = not checked"),
    STR("auth.jwt_audience", auth_jwt_audience, NULL, F_OPTIONAL,
        "Required aud claim; null = not checked"),

    STR("ws.path", ws_path, "/ws", 0, "Path of the WebSocket endpoint on the public listener"),
    LIST("ws.allowed_origins", ws_allowed_origins, "", 0,
         "Origins allowed to connect; empty = any origin"),
    INT("ws.auth_timeout_ms", ws_auth_timeout_ms, 1, 600000, "10000",
        "Time a client has to send its login message (else close 4001)"),
    /* lws keeps both in uint16_t seconds: at most 65535 s. */
    INT("ws.ping_interval_ms", ws_ping_interval_ms, 1000, 3600000, "25000",
        "Interval between server pings"),
    INT("ws.idle_timeout_ms", ws_idle_timeout_ms, 1000, 65535000, "60000",
        "A connection silent this long is closed; must exceed ws.ping_interval_ms"),
    INT("ws.max_message_bytes", ws_max_message_bytes, 16, 16 * MIB, "4096",
        "Largest message a client may send"),
    INT("ws.max_connections", ws_max_connections, 1, 10000000, "100000",
        "Open WebSocket connections in total"),
    INT("ws.max_connections_per_user", ws_max_connections_per_user, 1, 100000, "32",
        "Open WebSocket connections per user"),
    INT("ws.max_pending", ws_max_pending, 1, 10000000, "4096",
        "Public connections accepted but not yet authenticated (upgrading, or before a valid "
        "login); more are closed at accept"),
    INT("ws.max_pending_per_ip", ws_max_pending_per_ip, 1, 10000000, "1024",
        "Public connections not yet authenticated from one client address; more are closed at "
        "accept"),
    INT("ws.handshake_timeout_ms", ws_handshake_timeout_ms, 1000, 600000, "10000",
        "Time a public connection has to send its whole HTTP request (the WebSocket upgrade); "
        "whole seconds, rounded up"),
    INT("ws.queue_max_messages", ws_queue_max_messages, 1, 1000000, "1024",
        "Outgoing queue limit per connection, in messages"),
    INT("ws.queue_max_bytes", ws_queue_max_bytes, 1024, 1024 * MIB, "1048576",
        "Outgoing queue limit per connection, in bytes"),
    INT("ws.queue_hard_max_bytes", ws_queue_hard_max_bytes, 0, INT64_C(4096) * MIB, "0",
        "Outgoing queue limit per connection that applies at once (0 = 4 x "
        "ws.queue_max_bytes); between ws.queue_max_bytes and this, a connection is slow only "
        "if nothing has left its queue for ws.slow_client_grace_ms"),
    INT("ws.slow_client_grace_ms", ws_slow_client_grace_ms, 0, 600000, "5000",
        "How long a queue may stay over ws.queue_max_bytes with nothing leaving it before "
        "ws.slow_client applies; 0 = at once"),
    INT("ws.send_buffer_bytes", ws_send_buffer_bytes, 0, 64 * MIB, "65536",
        "Kernel send buffer (SO_SNDBUF) of each WebSocket; the kernel doubles it. Bounds what a "
        "client that stops reading holds in the kernel, so the queue limits apply soon; 0 = "
        "the kernel's default (autotuned, up to megabytes)"),
    ENUM("ws.slow_client", ws_slow_client, slow_clients, "close",
         "What a full queue does: close the connection, drop_oldest event, or coalesce "
         "task updates"),

    LIST("push.api_keys", push_api_keys, "", F_SECRET,
         "Bearer keys accepted by the push API; empty = no authentication"),
    INT("push.max_connections", push_max_connections, 1, 1000000, "1024",
        "Open connections to the internal HTTP API (keep-alive); more are answered 503 and "
        "closed"),
    INT("push.max_body_bytes", push_max_body_bytes, 64, 100 * MIB, "1048576",
        "Largest push request body (else 413)"),
    INT("push.max_batch", push_max_batch, 1, 100000, "1000", "Most items in one batch push"),
    STR("push.topic", push_topic, "pushbridge.push", 0,
        "Topic that carries HTTP pushes to every node in cluster mode kafka"),

    STR("tls.cert", tls_cert, NULL, F_OPTIONAL,
        "PEM certificate chain for the public listener (wss://); needs tls.key"),
    STR("tls.key", tls_key, NULL, F_OPTIONAL, "PEM private key for tls.cert"),
    BOOL("tls.internal", tls_internal, "false",
         "Serve the internal listener over TLS too (https://), with tls.cert and tls.key"),

    /* Task state and history (SPEC 7, store.c). Every bound here is what
     * holds the store's memory: bytes in all, entries per user, and age. */
    INT("state.max_tasks_per_user", state_max_tasks_per_user, 0, 10000, "100",
        "Tasks kept per user (the latest event of each); the one updated longest ago gives "
        "way; 0 = no task state"),
    INT("state.max_bytes", state_max_bytes, 0, INT64_C(1099511627776), "67108864",
        "Bytes of task state in all (events and per-user records); past it the task updated "
        "longest ago, of any user, is evicted"),
    INT("state.ttl_ms", state_ttl_ms, 1000, INT64_C(2592000000), "600000",
        "A task is forgotten this long after its last update (by Kafka timestamp)"),
    INT("state.final_ttl_ms", state_final_ttl_ms, 0, INT64_C(2592000000), "60000",
        "A task is forgotten this long after its final update"),
    INT("state.lookback_ms", state_lookback_ms, 0, INT64_C(2592000000), "600000",
        "On start, re-read this much of every topic (by timestamp) to rebuild task state and "
        "history before reporting ready; 0 = no rebuild"),
    INT("history.max_events", history_max_events, 0, 1000000, "1000",
        "Recent events kept per user for resume (broadcasts: this many in all); 0 = no "
        "history, no resume"),
    INT("history.max_bytes", history_max_bytes, 0, INT64_C(1099511627776), "67108864",
        "Bytes of history in all; past it the oldest event, of any user, is evicted"),
    INT("history.ttl_ms", history_ttl_ms, 1000, INT64_C(2592000000), "300000",
        "Events older than this (by Kafka timestamp) leave the history"),

    BOOL("dashboard.enabled", dashboard_enabled, "false",
         "Serve the progress dashboard at / on the public listener (true under --dev)"),

    ENUM("cluster.mode", cluster_mode, cluster_modes, "standalone",
         "standalone, or kafka: every node consumes every partition and pushes go via "
         "push.topic"),
    STR("cluster.node_name", cluster_node_name, NULL, F_OPTIONAL,
        "This node's name; null = the host name. With the public listener's port it makes "
        "the Kafka group.instance.id (static membership), so it must differ between the "
        "nodes of one kafka.group_id"),
    /* Presence (SPEC 8, presence.c): the remote nodes' user tables are what
     * cluster.presence_max_users bounds. */
    INT("cluster.node_timeout_ms", cluster_node_timeout_ms, 1000, 600000, "10000",
        "A node not heard from for this long leaves GET /cluster and every GET /users/{id}; "
        "nodes send a heartbeat every quarter of it"),
    STR("cluster.presence_topic", cluster_presence_topic, "pushbridge.presence", 0,
        "Topic (one partition, short retention; created if missing) through which the nodes "
        "of cluster mode kafka tell each other who is connected where"),
    INT("cluster.presence_max_users", cluster_presence_max_users, 1000, 100000000, "1000000",
        "Users of other nodes kept for presence, counted over all nodes; past it a node's "
        "further users are not known here (logged, metric pushbridge_presence_overflow_total)"),

    ENUM("log.level", log_level, log_levels, "info", "Lowest level logged"),
    ENUM("log.format", log_format, log_formats, "text", "Log line format"),
    STR("log.file", log_file, NULL, F_OPTIONAL, "Log file, reopened on SIGHUP; null = stderr"),

    INT("shutdown_timeout_ms", shutdown_timeout_ms, 1, 600000, "10000",
        "Time allowed for a graceful stop on SIGTERM or SIGINT"),
    INT("workers", workers, 0, PB_MAX_WORKERS, "0",
        "Event-loop threads serving the public listener's connections; 0 = one per online "
        "CPU (at most 64); 1 = a single loop"),
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

const struct setting *pb_config_table(size_t *n)
{
    *n = NSETTINGS;
    return settings;
}

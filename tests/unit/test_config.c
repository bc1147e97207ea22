/* Unit tests of the config module: table defaults against SPEC section 4, the JSON file,
 * PUSHBRIDGE_* environment overrides, cross-field validation, the dump and the README table.
 * Every error test asserts that the message names the key, variable or file at fault. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pushbridge/core/config.h"

/* A temporary config file; unlinked by the test that made it. */
static char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/pb_test_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

/* Loads text as a config file over c; returns what pb_config_load_file() returned. */
static int load_text(struct pb_config *c, const char *text, char *err, size_t errlen)
{
    char *path = write_tmp(text);
    int rc = pb_config_load_file(c, path, err, errlen);
    unlink(path);
    return rc;
}

/* Loads text into a fresh config and asserts it fails with a message containing each of
 * the NULL-terminated fragments. */
static void expect_file_error(const char *text, ...)
{
    struct pb_config c;
    char err[512] = "";
    assert_int_equal(pb_config_init(&c), 0);
    char *path = write_tmp(text);
    assert_int_equal(pb_config_load_file(&c, path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, path));
    unlink(path);
    va_list ap;
    va_start(ap, text);
    for (const char *frag; (frag = va_arg(ap, const char *));) {
        if (!strstr(err, frag))
            fail_msg("error \"%s\" does not contain \"%s\"", err, frag);
    }
    va_end(ap);
    pb_config_free(&c);
}

static void expect_contains(const char *err, const char *frag)
{
    if (!strstr(err, frag))
        fail_msg("error \"%s\" does not contain \"%s\"", err, frag);
}

static void test_defaults_match_spec(void **state)
{
    (void)state;
    struct pb_config c;
    assert_int_equal(pb_config_init(&c), 0);
    assert_string_equal(c.listen_public, "0.0.0.0:8080");
    assert_string_equal(c.listen_internal, "127.0.0.1:8081");
    assert_string_equal(c.kafka_brokers, "localhost:9092");
    assert_int_equal(c.kafka_topics.n, 1);
    assert_string_equal(c.kafka_topics.items[0], "pushbridge.events");
    assert_string_equal(c.kafka_group_id, "pushbridge");
    assert_int_equal(c.kafka_properties.n, 0);
    assert_null(c.kafka_dead_letter_topic);
    assert_int_equal(c.kafka_max_event_age_ms, 60000);
    assert_int_equal(c.kafka_max_event_bytes, 1048576);
    assert_int_equal(c.auth_mode, PB_AUTH_JWT);
    assert_null(c.auth_jwt_secret);
    assert_null(c.auth_jwt_public_key);
    assert_null(c.auth_jwt_issuer);
    assert_null(c.auth_jwt_audience);
    assert_string_equal(c.ws_path, "/ws");
    assert_int_equal(c.ws_allowed_origins.n, 0);
    assert_int_equal(c.ws_auth_timeout_ms, 10000);
    assert_int_equal(c.ws_ping_interval_ms, 25000);
    assert_int_equal(c.ws_idle_timeout_ms, 60000);
    assert_int_equal(c.ws_max_message_bytes, 4096);
    assert_int_equal(c.ws_max_connections, 100000);
    assert_int_equal(c.ws_max_connections_per_user, 32);
    assert_int_equal(c.ws_queue_max_messages, 1024);
    assert_int_equal(c.ws_queue_max_bytes, 1048576);
    assert_int_equal(c.ws_slow_client, PB_SLOW_CLOSE);
    assert_int_equal(c.push_api_keys.n, 0);
    assert_int_equal(c.push_max_body_bytes, 1048576);
    assert_int_equal(c.push_max_batch, 1000);
    assert_string_equal(c.push_topic, "pushbridge.push");
    assert_null(c.tls_cert);
    assert_null(c.tls_key);
    assert_int_equal(c.cluster_mode, PB_CLUSTER_STANDALONE);
    assert_int_equal(c.log_level, PB_LOG_INFO);
    assert_int_equal(c.log_format, PB_LOG_TEXT);
    assert_null(c.log_file);
    assert_int_equal(c.shutdown_timeout_ms, 10000);
    assert_int_equal(c.dev, 0);
    pb_config_free(&c);
    pb_config_free(&c); /* idempotent */
}

static const char full_config[] =
    "{\n"
    "  /* comments are allowed, as yajl allows them */\n"
    "  \"listen\": {\"public\": \"[::]:9000\", \"internal\": \"127.0.0.1:9001\"},\n"
    "  \"kafka\": {\"brokers\": \"k1:9092,k2:9092\",\n"
    "            \"topics\": [\"progress\", \"^orders\\\\..*\"],\n"
    "            \"group_id\": \"g1\", \"properties\": {\"client.id\": \"pb\"},\n"
    "            \"dead_letter_topic\": \"dlq\", \"max_event_age_ms\": 5000,\n"
    "            \"max_event_bytes\": 65536},\n"
    "  \"auth\": {\"mode\": \"jwt\", \"jwt_secret\": \"s3cret-0123456789abcdef0123456789ab\", \"jwt_public_key\": null,\n"
    "           \"jwt_issuer\": \"https://id.example.com\", \"jwt_audience\": \"app\"},\n"
    "  \"ws\": {\"path\": \"/events\", \"allowed_origins\": [\"https://a.example.com\"],\n"
    "         \"auth_timeout_ms\": 5000, \"ping_interval_ms\": 20000, \"idle_timeout_ms\": 50000,\n"
    "         \"max_message_bytes\": 8192, \"max_connections\": 500,\n"
    "         \"max_connections_per_user\": 4, \"queue_max_messages\": 64,\n"
    "         \"queue_max_bytes\": 65536, \"slow_client\": \"drop_oldest\"},\n"
    "  \"push\": {\"api_keys\": [\"k1\", \"k2\"], \"max_body_bytes\": 4096, \"max_batch\": 10,\n"
    "           \"topic\": \"pp\"},\n"
    "  \"tls\": {\"cert\": \"/etc/hostname\", \"key\": \"/etc/hosts\"},\n"
    "  \"cluster\": {\"mode\": \"kafka\"},\n"
    "  \"log\": {\"level\": \"debug\", \"format\": \"json\", \"file\": \"/var/log/pb.log\"},\n"
    "  \"shutdown_timeout_ms\": 3000 // trailing comment\n"
    "}\n";

static void test_load_file(void **state)
{
    (void)state;
    struct pb_config c;
    char err[512] = "";
    assert_int_equal(pb_config_init(&c), 0);
    if (load_text(&c, full_config, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_string_equal(c.listen_public, "[::]:9000");
    assert_string_equal(c.listen_internal, "127.0.0.1:9001");
    assert_string_equal(c.kafka_brokers, "k1:9092,k2:9092");
    assert_int_equal(c.kafka_topics.n, 2);
    assert_string_equal(c.kafka_topics.items[1], "^orders\\..*");
    assert_string_equal(c.kafka_group_id, "g1");
    assert_int_equal(c.kafka_properties.n, 1);
    assert_string_equal(c.kafka_dead_letter_topic, "dlq");
    assert_int_equal(c.kafka_max_event_age_ms, 5000);
    assert_int_equal(c.kafka_max_event_bytes, 65536);
    assert_string_equal(c.auth_jwt_secret, "s3cret-0123456789abcdef0123456789ab");
    assert_null(c.auth_jwt_public_key);
    assert_string_equal(c.auth_jwt_issuer, "https://id.example.com");
    assert_string_equal(c.auth_jwt_audience, "app");
    assert_string_equal(c.ws_path, "/events");
    assert_int_equal(c.ws_allowed_origins.n, 1);
    assert_int_equal(c.ws_auth_timeout_ms, 5000);
    assert_int_equal(c.ws_ping_interval_ms, 20000);
    assert_int_equal(c.ws_idle_timeout_ms, 50000);
    assert_int_equal(c.ws_max_message_bytes, 8192);
    assert_int_equal(c.ws_max_connections, 500);
    assert_int_equal(c.ws_max_connections_per_user, 4);
    assert_int_equal(c.ws_queue_max_messages, 64);
    assert_int_equal(c.ws_queue_max_bytes, 65536);
    assert_int_equal(c.ws_slow_client, PB_SLOW_DROP_OLDEST);
    assert_int_equal(c.push_api_keys.n, 2);
    assert_string_equal(c.push_api_keys.items[1], "k2");
    assert_int_equal(c.push_max_body_bytes, 4096);
    assert_int_equal(c.push_max_batch, 10);
    assert_string_equal(c.push_topic, "pp");
    assert_string_equal(c.tls_cert, "/etc/hostname");
    assert_string_equal(c.tls_key, "/etc/hosts");
    assert_int_equal(c.cluster_mode, PB_CLUSTER_KAFKA);
    assert_int_equal(c.log_level, PB_LOG_DEBUG);
    assert_int_equal(c.log_format, PB_LOG_JSON);
    assert_string_equal(c.log_file, "/var/log/pb.log");
    assert_int_equal(c.shutdown_timeout_ms, 3000);
    assert_int_equal(pb_config_validate(&c, err, sizeof(err)), 0);
    /* Cluster pushes are answered by httpd.c: not on a shared or TLS port. */
    free(c.listen_internal);
    c.listen_internal = strdup(c.listen_public);
    assert_int_equal(pb_config_validate(&c, err, sizeof(err)), -1);
    expect_contains(err, "cluster.mode kafka needs the internal listener on a port of its own");
    c.cluster_mode = PB_CLUSTER_STANDALONE;
    c.ws_slow_client = PB_SLOW_COALESCE;
    assert_int_equal(pb_config_validate(&c, err, sizeof(err)), 0);
    pb_config_free(&c);
}

static void test_file_partial_keeps_other_values(void **state)
{
    (void)state;
    struct pb_config c;
    char err[512] = "";
    assert_int_equal(pb_config_init(&c), 0);
    assert_int_equal(load_text(&c, "{\"ws\": {\"path\": \"/x\"}}", err, sizeof(err)), 0);
    assert_string_equal(c.ws_path, "/x");
    assert_int_equal(c.ws_ping_interval_ms, 25000);
    assert_string_equal(c.kafka_topics.items[0], "pushbridge.events");
    /* null unsets an optional string; "" does too */
    assert_int_equal(load_text(&c, "{\"log\": {\"file\": \"/tmp/x\"}}", err, sizeof(err)), 0);
    assert_string_equal(c.log_file, "/tmp/x");
    assert_int_equal(load_text(&c, "{\"log\": {\"file\": null}}", err, sizeof(err)), 0);
    assert_null(c.log_file);
    assert_int_equal(load_text(&c, "{\"kafka\": {\"dead_letter_topic\": \"\"}}", err, sizeof(err)),
                     0);
    assert_null(c.kafka_dead_letter_topic);
    assert_int_equal(load_text(&c, "{}", err, sizeof(err)), 0);
    pb_config_free(&c);
}

static void test_file_unknown_key(void **state)
{
    (void)state;
    expect_file_error("{\"ws\": {\"pth\": \"/ws\"}}", "unknown setting 'ws.pth' in ", NULL);
    expect_file_error("{\"wss\": {\"path\": \"/ws\"}}", "unknown setting 'wss' in ", NULL);
    expect_file_error("{\"ping_interval_ms\": 1000}", "unknown setting 'ping_interval_ms'", NULL);
    /* settings nest one level: a section inside a section is not a thing */
    expect_file_error("{\"ws\": {\"ws\": {\"path\": \"/x\"}}}", "unknown setting 'ws.ws'", NULL);
    expect_file_error("{\"shutdown_timeout_ms\": 5000, \"log\": {\"lvl\": \"info\"}}",
                      "unknown setting 'log.lvl'", NULL);
}

static void test_file_wrong_type_or_range(void **state)
{
    (void)state;
    expect_file_error("{\"ws\": {\"ping_interval_ms\": \"25s\"}}",
                      "ws.ping_interval_ms: expected an integer between 1000 and 3600000, got "
                      "\"25s\"",
                      NULL);
    expect_file_error("{\"ws\": {\"ping_interval_ms\": 10}}",
                      "ws.ping_interval_ms: expected an integer between 1000 and 3600000, got 10",
                      NULL);
    expect_file_error("{\"ws\": {\"max_message_bytes\": 16777217}}",
                      "ws.max_message_bytes: expected an integer between 16 and 16777216", NULL);
    expect_file_error("{\"ws\": {\"queue_max_messages\": 1.5}}",
                      "ws.queue_max_messages:", "got 1.5", NULL);
    expect_file_error("{\"kafka\": {\"max_event_bytes\": 99999999999999999999}}",
                      "kafka.max_event_bytes:", NULL);
    expect_file_error("{\"shutdown_timeout_ms\": 0}", "shutdown_timeout_ms: expected an integer",
                      NULL);
    expect_file_error("{\"ws\": {\"path\": 5}}", "ws.path: expected a string, got 5", NULL);
    expect_file_error("{\"listen\": {\"public\": null}}",
                      "listen.public: expected a non-empty string, got null", NULL);
    expect_file_error("{\"kafka\": {\"topics\": \"a,b\"}}",
                      "kafka.topics: expected an array of strings", NULL);
    expect_file_error("{\"kafka\": {\"topics\": [\"a\", 1]}}",
                      "kafka.topics[1]: expected a non-empty string, got 1", NULL);
    expect_file_error("{\"ws\": {\"slow_client\": \"kill\"}}",
                      "ws.slow_client: expected one of close, drop_oldest, coalesce, got \"kill\"",
                      NULL);
    expect_file_error("{\"auth\": {\"mode\": true}}", "auth.mode: expected one of jwt, none", NULL);
    expect_file_error("{\"ws\": [1]}", "ws: expected an object", NULL);
    expect_file_error("[1, 2]", "expected a JSON object at the top level", NULL);
    /* a bad secret is named but never echoed */
    struct pb_config c;
    char err[512] = "";
    assert_int_equal(pb_config_init(&c), 0);
    assert_int_equal(load_text(&c, "{\"auth\": {\"jwt_secret\": 12345}}", err, sizeof(err)), -1);
    expect_contains(err, "auth.jwt_secret:");
    assert_null(strstr(err, "12345"));
    pb_config_free(&c);
}

static void test_file_syntax_error(void **state)
{
    (void)state;
    /* the message carries file:line:column and yajl's own words */
    expect_file_error("{\n  \"ws\": {\"path\": \"/ws\" \"x\"}\n}",
                      ":2:", "invalid JSON: ", "parse error", NULL);
    expect_file_error("{\n\n  \"ws\": x\n}", ":3:9: invalid JSON: lexical error", NULL);
    expect_file_error("{\"ws\": {\"path\": \"/ws\"}", "invalid JSON", "premature EOF", NULL);
    expect_file_error("{\"ws\": {}} x", "invalid JSON", "trailing garbage", NULL);
    expect_file_error("", "invalid JSON", NULL);
    /* deep nesting is refused before yajl_tree_free() could recurse into it */
    char deep[4096];
    memset(deep, '[', sizeof(deep) - 1);
    deep[sizeof(deep) - 1] = '\0';
    expect_file_error(deep, "nested deeper than", NULL);
}

static void test_file_missing(void **state)
{
    (void)state;
    struct pb_config c;
    char err[512] = "", want[256];
    assert_int_equal(pb_config_init(&c), 0);
    assert_int_equal(pb_config_load_file(&c, "/nonexistent/pb.json", err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "/nonexistent/pb.json: %s", strerror(ENOENT));
    expect_contains(err, want);
    /* a directory opens but does not read */
    assert_int_equal(pb_config_load_file(&c, "/tmp", err, sizeof(err)), -1);
    expect_contains(err, "/tmp");
    /* a NULL errstr is allowed */
    assert_int_equal(pb_config_load_file(&c, "/nonexistent/pb.json", NULL, 0), -1);
    pb_config_free(&c);
}

static void test_env_overrides_file(void **state)
{
    (void)state;
    struct pb_config c;
    char err[512] = "";
    char *env[] = {"HOME=/root",
                   "PUSHBRIDGE_LISTEN_PUBLIC=127.0.0.1:9000",
                   "PUSHBRIDGE_WS_MAX_MESSAGE_BYTES=65536",
                   "PUSHBRIDGE_SHUTDOWN_TIMEOUT_MS=2500",
                   "PUSHBRIDGE_AUTH_MODE=none",
                   "PUSHBRIDGE_LOG_FILE=",
                   NULL};
    assert_int_equal(pb_config_init(&c), 0);
    assert_int_equal(load_text(&c,
                               "{\"listen\": {\"public\": \"0.0.0.0:1234\"},"
                               " \"log\": {\"file\": \"/var/log/x\"}}",
                               err, sizeof(err)),
                     0);
    assert_string_equal(c.listen_public, "0.0.0.0:1234");
    if (pb_config_apply_env(&c, env, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_string_equal(c.listen_public, "127.0.0.1:9000");
    assert_int_equal(c.ws_max_message_bytes, 65536);
    assert_int_equal(c.shutdown_timeout_ms, 2500);
    assert_int_equal(c.auth_mode, PB_AUTH_NONE);
    assert_null(c.log_file); /* empty = unset for an optional string */
    assert_int_equal(pb_config_apply_env(&c, NULL, err, sizeof(err)), 0);
    pb_config_free(&c);
}

static void test_env_lists(void **state)
{
    (void)state;
    struct pb_config c;
    char err[512] = "";
    assert_int_equal(pb_config_init(&c), 0);
    char *env1[] = {"PUSHBRIDGE_KAFKA_TOPICS=progress,orders", NULL};
    assert_int_equal(pb_config_apply_env(&c, env1, err, sizeof(err)), 0);
    assert_int_equal(c.kafka_topics.n, 2);
    assert_string_equal(c.kafka_topics.items[0], "progress");
    assert_string_equal(c.kafka_topics.items[1], "orders");

    char *env2[] = {"PUSHBRIDGE_WS_ALLOWED_ORIGINS= https://a.example , https://b.example ",
                    "PUSHBRIDGE_PUSH_API_KEYS=one", NULL};
    assert_int_equal(pb_config_apply_env(&c, env2, err, sizeof(err)), 0);
    assert_int_equal(c.ws_allowed_origins.n, 2);
    assert_string_equal(c.ws_allowed_origins.items[0], "https://a.example");
    assert_string_equal(c.ws_allowed_origins.items[1], "https://b.example");
    assert_int_equal(c.push_api_keys.n, 1);

    char *env3[] = {"PUSHBRIDGE_WS_ALLOWED_ORIGINS=", NULL};
    assert_int_equal(pb_config_apply_env(&c, env3, err, sizeof(err)), 0);
    assert_int_equal(c.ws_allowed_origins.n, 0);

    /* an empty item is an error and leaves the old list in place */
    char *env4[] = {"PUSHBRIDGE_KAFKA_TOPICS=a,,b", NULL};
    assert_int_equal(pb_config_apply_env(&c, env4, err, sizeof(err)), -1);
    expect_contains(err, "kafka.topics");
    expect_contains(err, "PUSHBRIDGE_KAFKA_TOPICS");
    assert_int_equal(c.kafka_topics.n, 2);
    char *env5[] = {"PUSHBRIDGE_KAFKA_TOPICS=a,", NULL};
    assert_int_equal(pb_config_apply_env(&c, env5, err, sizeof(err)), -1);
    pb_config_free(&c);
}

static void test_env_unknown_and_bad(void **state)
{
    (void)state;
    struct pb_config c;
    char err[512] = "";
    assert_int_equal(pb_config_init(&c), 0);
    char *env1[] = {"PATH=/bin", "PUSHBRIDGE_WS_PTH=/x", NULL};
    assert_int_equal(pb_config_apply_env(&c, env1, err, sizeof(err)), -1);
    assert_string_equal(err, "unknown environment variable PUSHBRIDGE_WS_PTH");
    char *env2[] = {"PUSHBRIDGE_=1", NULL};
    assert_int_equal(pb_config_apply_env(&c, env2, err, sizeof(err)), -1);
    expect_contains(err, "PUSHBRIDGE_");
    char *env3[] = {"PUSHBRIDGEX=1", "XPUSHBRIDGE_WS_PATH=1", NULL};
    assert_int_equal(pb_config_apply_env(&c, env3, err, sizeof(err)), 0);
    /* a section name alone is not a setting */
    char *env4[] = {"PUSHBRIDGE_WS=1", NULL};
    assert_int_equal(pb_config_apply_env(&c, env4, err, sizeof(err)), -1);

    char *env5[] = {"PUSHBRIDGE_WS_PING_INTERVAL_MS=fast", NULL};
    assert_int_equal(pb_config_apply_env(&c, env5, err, sizeof(err)), -1);
    assert_string_equal(err, "ws.ping_interval_ms: expected an integer between 1000 and 3600000, "
                             "got \"fast\" (from PUSHBRIDGE_WS_PING_INTERVAL_MS)");
    assert_int_equal(c.ws_ping_interval_ms, 25000);
    char *env6[] = {"PUSHBRIDGE_LOG_LEVEL=verbose", NULL};
    assert_int_equal(pb_config_apply_env(&c, env6, err, sizeof(err)), -1);
    expect_contains(err, "log.level: expected one of debug, info, warn, error");
    char *env7[] = {"PUSHBRIDGE_KAFKA_BROKERS=", NULL};
    assert_int_equal(pb_config_apply_env(&c, env7, err, sizeof(err)), -1);
    expect_contains(err, "kafka.brokers: expected a non-empty string");
    pb_config_free(&c);
}

static const char *prop(const struct pb_config *c, const char *key)
{
    for (size_t i = 0; i < c->kafka_properties.n; i++)
        if (strcmp(c->kafka_properties.items[i].key, key) == 0)
            return c->kafka_properties.items[i].value;
    return NULL;
}

static void test_kafka_properties(void **state)
{
    (void)state;
    struct pb_config c;
    char err[512] = "";
    assert_int_equal(pb_config_init(&c), 0);
    assert_int_equal(load_text(&c,
                               "{\"kafka\": {\"properties\": {\"client.id\": \"pb-1\","
                               " \"session.timeout.ms\": 45000, \"enable.idempotence\": true,"
                               " \"socket.keepalive.enable\": false}}}",
                               err, sizeof(err)),
                     0);
    assert_int_equal(c.kafka_properties.n, 4);
    assert_string_equal(prop(&c, "client.id"), "pb-1");
    assert_string_equal(prop(&c, "session.timeout.ms"), "45000");
    assert_string_equal(prop(&c, "enable.idempotence"), "true");
    assert_string_equal(prop(&c, "socket.keepalive.enable"), "false");

    /* the environment merges over the file; a piece without '=' continues a value */
    char *env[] = {"PUSHBRIDGE_KAFKA_PROPERTIES=sasl.password=p,debug=broker,topic , "
                   "client.id = pb-2",
                   NULL};
    assert_int_equal(pb_config_apply_env(&c, env, err, sizeof(err)), 0);
    assert_int_equal(c.kafka_properties.n, 6);
    assert_string_equal(prop(&c, "client.id"), "pb-2");
    assert_string_equal(prop(&c, "sasl.password"), "p");
    assert_string_equal(prop(&c, "debug"), "broker,topic");
    assert_string_equal(prop(&c, "session.timeout.ms"), "45000");

    /* a file load replaces the object as a whole */
    assert_int_equal(load_text(&c, "{\"kafka\": {\"properties\": {}}}", err, sizeof(err)), 0);
    assert_int_equal(c.kafka_properties.n, 0);

    assert_int_equal(pb_config_set(&c, "kafka.properties", "novalue", err, sizeof(err)), -1);
    expect_contains(err, "kafka.properties: expected key=value");
    assert_int_equal(pb_config_set(&c, "kafka.properties", "=x", err, sizeof(err)), -1);
    expect_contains(err, "kafka.properties: empty property name");
    assert_int_equal(pb_config_set(&c, "kafka.properties", "a=", err, sizeof(err)), 0);
    assert_string_equal(prop(&c, "a"), "");
    expect_file_error("{\"kafka\": {\"properties\": {\"acks\": null}}}",
                      "kafka.properties.acks: expected a string, number or boolean, got null",
                      NULL);
    expect_file_error("{\"kafka\": {\"properties\": [\"acks=all\"]}}",
                      "kafka.properties: expected an object", NULL);
    pb_config_free(&c);
}

static void test_enums(void **state)
{
    (void)state;
    static const struct {
        const char *key, *value;
        size_t offset;
        int want;
    } cases[] = {
        {"auth.mode", "jwt", offsetof(struct pb_config, auth_mode), PB_AUTH_JWT},
        {"auth.mode", "none", offsetof(struct pb_config, auth_mode), PB_AUTH_NONE},
        {"ws.slow_client", "close", offsetof(struct pb_config, ws_slow_client), PB_SLOW_CLOSE},
        {"ws.slow_client", "drop_oldest", offsetof(struct pb_config, ws_slow_client),
         PB_SLOW_DROP_OLDEST},
        {"ws.slow_client", "coalesce", offsetof(struct pb_config, ws_slow_client),
         PB_SLOW_COALESCE},
        {"cluster.mode", "standalone", offsetof(struct pb_config, cluster_mode),
         PB_CLUSTER_STANDALONE},
        {"cluster.mode", "kafka", offsetof(struct pb_config, cluster_mode), PB_CLUSTER_KAFKA},
        {"log.level", "debug", offsetof(struct pb_config, log_level), PB_LOG_DEBUG},
        {"log.level", "info", offsetof(struct pb_config, log_level), PB_LOG_INFO},
        {"log.level", "warn", offsetof(struct pb_config, log_level), PB_LOG_WARN},
        {"log.level", "error", offsetof(struct pb_config, log_level), PB_LOG_ERROR},
        {"log.format", "text", offsetof(struct pb_config, log_format), PB_LOG_TEXT},
        {"log.format", "json", offsetof(struct pb_config, log_format), PB_LOG_JSON},
    };
    struct pb_config c;
    char err[512] = "";
    assert_int_equal(pb_config_init(&c), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int *field = (int *)(void *)((char *)&c + cases[i].offset);
        *field = -1;
        assert_int_equal(pb_config_set(&c, cases[i].key, cases[i].value, err, sizeof(err)), 0);
        assert_int_equal(*field, cases[i].want);
    }
    /* names are exact: no case folding, no prefixes */
    assert_int_equal(pb_config_set(&c, "log.level", "INFO", err, sizeof(err)), -1);
    assert_int_equal(pb_config_set(&c, "log.level", "inf", err, sizeof(err)), -1);
    assert_int_equal(c.log_level, PB_LOG_ERROR);
    assert_int_equal(pb_config_set(&c, "cluster.mode", NULL, err, sizeof(err)), -1);
    expect_contains(err, "cluster.mode: expected one of standalone, kafka, got null");
    pb_config_free(&c);
}

static void test_set(void **state)
{
    (void)state;
    struct pb_config c;
    char err[512] = "";
    assert_int_equal(pb_config_init(&c), 0);
    assert_int_equal(pb_config_set(&c, "ws.pth", "/x", err, sizeof(err)), -1);
    assert_string_equal(err, "unknown setting 'ws.pth'");
    assert_int_equal(pb_config_set(&c, "ws", "/x", err, sizeof(err)), -1);
    assert_int_equal(pb_config_set(&c, "ws.path", "/x", err, sizeof(err)), 0);
    assert_string_equal(c.ws_path, "/x");
    assert_int_equal(pb_config_set(&c, "push.max_batch", "+5", err, sizeof(err)), 0);
    assert_int_equal(c.push_max_batch, 5);
    static const char *const bad_ints[] = {
        "", " 5", "5 ", "5x", "0x10", "1e3", "-", "99999999999999999999", "0"};
    for (size_t i = 0; i < sizeof(bad_ints) / sizeof(bad_ints[0]); i++) {
        assert_int_equal(pb_config_set(&c, "push.max_batch", bad_ints[i], err, sizeof(err)), -1);
        expect_contains(err, "push.max_batch: expected an integer between 1 and 100000");
        assert_int_equal(c.push_max_batch, 5);
    }
    assert_int_equal(pb_config_set(&c, "kafka.max_event_age_ms", "31536000000", err, sizeof(err)),
                     0);
    assert_int_equal(c.kafka_max_event_age_ms, INT64_C(31536000000));
    /* a small errstr is truncated, not overrun */
    char small[8];
    assert_int_equal(pb_config_set(&c, "ws.pth", "/x", small, sizeof(small)), -1);
    assert_int_equal(strlen(small), sizeof(small) - 1);
    pb_config_free(&c);
}

static void test_split_hostport(void **state)
{
    (void)state;
    char host[64];
    int port = -1;
    assert_int_equal(pb_config_split_hostport("0.0.0.0:8080", host, sizeof(host), &port), 0);
    assert_string_equal(host, "0.0.0.0");
    assert_int_equal(port, 8080);
    assert_int_equal(pb_config_split_hostport("[::1]:80", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 80);
    assert_int_equal(pb_config_split_hostport("localhost:65535", host, sizeof(host), &port), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 65535);
    assert_int_equal(pb_config_split_hostport("[::]:0", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::");
    assert_int_equal(port, 0);

    static const char *const bad[] = {"",         "8080",    ":8080",  "host:",       "host:65536",
                                      "host:80x", "host:-1", "::1:80", "[::1]80",     "[::1]",
                                      "[]:80",    "[::1:80", "a b:80", "host:123456", "host:+80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (pb_config_split_hostport(bad[i], host, sizeof(host), &port) != -1)
            fail_msg("\"%s\" was accepted", bad[i]);
    }
    char tiny[4];
    assert_int_equal(pb_config_split_hostport("localhost:80", tiny, sizeof(tiny), &port), -1);
    assert_int_equal(pb_config_split_hostport("abc:80", tiny, sizeof(tiny), &port), 0);
    assert_int_equal(pb_config_split_hostport(NULL, host, sizeof(host), &port), -1);
}

/* Sets key=value on a config that validates, and expects validate() to fail naming frag. */
static void expect_invalid(const char *key, const char *value, const char *frag)
{
    struct pb_config c;
    char err[512] = "";
    assert_int_equal(pb_config_init(&c), 0);
    assert_int_equal(pb_config_set(&c, "auth.jwt_secret", "secret-0123456789abcdef0123456789", err, sizeof(err)), 0);
    assert_int_equal(pb_config_validate(&c, err, sizeof(err)), 0);
    if (pb_config_set(&c, key, value, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(pb_config_validate(&c, err, sizeof(err)), -1);
    expect_contains(err, frag);
    pb_config_free(&c);
}

/* Issue 14 item 5: the example's placeholders and short HS256 secrets. */
static void test_validate_secrets(void **state)
{
    (void)state;
    expect_invalid("auth.jwt_secret", "CHANGE-ME-to-a-random-secret-of-at-least-32-bytes",
                   "auth.jwt_secret is still the example's CHANGE-ME placeholder");
    expect_invalid("auth.jwt_secret", "x", "auth.jwt_secret is 1 bytes: HS256 needs at least 32");
    expect_invalid("push.api_keys", "good-key,CHANGE-ME-push-api-key",
                   "push.api_keys[1] is still the example's CHANGE-ME placeholder");
}

static void test_internal_exposed(void **state)
{
    (void)state;
    struct pb_config c;
    char err[256];
    assert_int_equal(pb_config_init(&c), 0);
    assert_false(pb_config_internal_exposed(&c));
    assert_int_equal(pb_config_set(&c, "listen.internal", "0.0.0.0:8081", err, sizeof(err)), 0);
    assert_true(pb_config_internal_exposed(&c));
    assert_int_equal(pb_config_set(&c, "listen.internal", "0.0.0.0:8080", err, sizeof(err)), 0);
    assert_true(pb_config_internal_exposed(&c)); /* the public port */
    assert_int_equal(pb_config_set(&c, "listen.internal", "127.0.0.2:9", err, sizeof(err)), 0);
    assert_false(pb_config_internal_exposed(&c));
    pb_config_free(&c);
}

static void test_validate(void **state)
{
    (void)state;
    struct pb_config c;
    char err[512] = "";
    assert_int_equal(pb_config_init(&c), 0);
    assert_int_equal(pb_config_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "auth.mode is jwt but neither auth.jwt_secret nor "
                             "auth.jwt_public_key is set");
    assert_int_equal(pb_config_set(&c, "auth.jwt_public_key", "/nonexistent/k.pem", err,
                                   sizeof(err)),
                     0);
    assert_int_equal(pb_config_validate(&c, err, sizeof(err)), -1);
    expect_contains(err, "auth.jwt_public_key: cannot read /nonexistent/k.pem");
    assert_int_equal(pb_config_set(&c, "auth.jwt_public_key", "/etc/hosts", err, sizeof(err)), 0);
    assert_int_equal(pb_config_validate(&c, err, sizeof(err)), 0);
    assert_int_equal(pb_config_set(&c, "auth.jwt_public_key", "", err, sizeof(err)), 0);
    assert_int_equal(pb_config_set(&c, "auth.mode", "none", err, sizeof(err)), 0);
    assert_int_equal(pb_config_validate(&c, err, sizeof(err)), 0);
    /* fields assigned directly are checked against the table too */
    c.ws_max_connections = 0;
    assert_int_equal(pb_config_validate(&c, err, sizeof(err)), -1);
    expect_contains(err, "ws.max_connections");
    c.ws_max_connections = 10;
    c.log_format = 7;
    assert_int_equal(pb_config_validate(&c, err, sizeof(err)), -1);
    expect_contains(err, "log.format");
    c.log_format = PB_LOG_TEXT;
    free(c.push_topic);
    c.push_topic = NULL;
    assert_int_equal(pb_config_validate(&c, err, sizeof(err)), -1);
    expect_contains(err, "push.topic is not set");
    pb_config_free(&c);

    expect_invalid("tls.cert", "/etc/c.pem", "tls.cert and tls.key must be set together");
    expect_invalid("tls.key", "/etc/k.pem", "tls.cert and tls.key must be set together");
    expect_invalid("listen.public", "8080", "listen.public: expected HOST:PORT");
    expect_invalid("listen.internal", "::1:8081", "listen.internal: expected HOST:PORT");
    expect_invalid("listen.public", "0.0.0.0:0", "listen.public");
    expect_invalid("kafka.topics", "", "kafka.topics is empty");
    expect_invalid("ws.path", "ws", "ws.path: must start with '/'");
    expect_invalid("ws.idle_timeout_ms", "25000", "ws.idle_timeout_ms (25000) must be greater");
    expect_invalid("kafka.dead_letter_topic", "pushbridge.events",
                   "kafka.dead_letter_topic 'pushbridge.events' is also in kafka.topics");
}

static void test_dev(void **state)
{
    (void)state;
    struct pb_config c;
    char err[512] = "";
    assert_int_equal(pb_config_init(&c), 0);
    pb_config_apply_dev(&c);
    assert_int_equal(c.auth_mode, PB_AUTH_NONE);
    assert_int_equal(c.dev, 1);
    assert_int_equal(pb_config_validate(&c, err, sizeof(err)), 0);
    /* the file and the environment still win over --dev */
    assert_int_equal(load_text(&c, "{\"auth\": {\"mode\": \"jwt\"}}", err, sizeof(err)), 0);
    assert_int_equal(c.auth_mode, PB_AUTH_JWT);
    assert_int_equal(pb_config_validate(&c, err, sizeof(err)), -1);
    pb_config_free(&c);
}

static void test_dump(void **state)
{
    (void)state;
    struct pb_config c, back;
    char err[512] = "";
    assert_int_equal(pb_config_init(&c), 0);
    if (load_text(&c, full_config, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(
        pb_config_set(&c, "kafka.properties", "sasl.password=hunter2", err, sizeof(err)), 0);
    assert_int_equal(pb_config_set(&c, "log.file", "/var/log/\"q\"\\\n", err, sizeof(err)), 0);

    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    pb_config_dump(&c, out);
    fclose(out);
    assert_null(strstr(text, "s3cret"));
    assert_null(strstr(text, "hunter2"));
    assert_null(strstr(text, "\"k1\""));
    expect_contains(text, "\"jwt_secret\": \"***\"");
    expect_contains(text, "\"api_keys\": [\"***\", \"***\"]");
    expect_contains(text, "\"sasl.password\": \"***\"");
    expect_contains(text, "\"client.id\": \"pb\"");
    expect_contains(text, "\"slow_client\": \"drop_oldest\"");
    expect_contains(text, "\"shutdown_timeout_ms\": 3000");

    /* the dump is a config file: it loads back to the same values, secrets aside */
    assert_int_equal(pb_config_init(&back), 0);
    if (load_text(&back, text, err, sizeof(err)) != 0)
        fail_msg("%s\n%s", err, text);
    assert_string_equal(back.listen_public, c.listen_public);
    assert_string_equal(back.kafka_topics.items[1], c.kafka_topics.items[1]);
    assert_string_equal(back.log_file, c.log_file);
    assert_string_equal(back.auth_jwt_secret, "***");
    assert_null(back.auth_jwt_public_key);
    assert_int_equal(back.ws_idle_timeout_ms, c.ws_idle_timeout_ms);
    assert_int_equal(back.ws_slow_client, c.ws_slow_client);
    assert_int_equal(back.cluster_mode, c.cluster_mode);
    assert_int_equal(back.kafka_properties.n, 2);
    pb_config_free(&back);
    free(text);
    pb_config_free(&c);
}

static void test_print_table(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    pb_config_print_table(out);
    fclose(out);
    assert_memory_equal(text, "| key | env | type | default | description |\n|---|", 49);
    expect_contains(text, "| `ws.ping_interval_ms` | `PUSHBRIDGE_WS_PING_INTERVAL_MS` | "
                          "integer, 1000 to 3600000 | `25000` |");
    expect_contains(text, "| `kafka.topics` | `PUSHBRIDGE_KAFKA_TOPICS` | list of strings | "
                          "`[\"pushbridge.events\"]` |");
    expect_contains(text, "| `shutdown_timeout_ms` | `PUSHBRIDGE_SHUTDOWN_TIMEOUT_MS` |");
    expect_contains(text, "`PUSHBRIDGE_WS_MAX_MESSAGE_BYTES`");
    expect_contains(text, "| `auth.jwt_secret` | `PUSHBRIDGE_AUTH_JWT_SECRET` | string or null "
                          "| `null` |");
    expect_contains(text, "one of `close`, `drop_oldest`, `coalesce` | `\"close\"`");
    /* one row per setting: 63 settings, two header lines */
    size_t lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 63 + 2);
    free(text);
}

/* Every env name the table prints is accepted by apply_env, and every row's default value
 * round-trips through pb_config_set(). */
static void test_table_env_names(void **state)
{
    (void)state;
    char *text = NULL, err[512];
    size_t len = 0, rows = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    pb_config_print_table(out);
    fclose(out);
    struct pb_config c;
    assert_int_equal(pb_config_init(&c), 0);
    for (char *p = strstr(text, "| `"); p; p = strstr(p + 1, "\n| `")) {
        char key[64], env[96], var[128];
        assert_int_equal(sscanf(p + (*p == '\n'), "| `%63[^`]` | `%95[^`]`", key, env), 2);
        snprintf(var, sizeof(var), "%s=", env);
        char *vars[] = {var, NULL};
        /* "" is valid for lists, optional strings and properties; others must name the key */
        if (pb_config_apply_env(&c, vars, err, sizeof(err)) != 0) {
            expect_contains(err, key);
            expect_contains(err, env);
            assert_null(strstr(err, "unknown environment variable"));
        }
        rows++;
    }
    assert_int_equal(rows, 63);
    pb_config_free(&c);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_match_spec),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_file_partial_keeps_other_values),
        cmocka_unit_test(test_file_unknown_key),
        cmocka_unit_test(test_file_wrong_type_or_range),
        cmocka_unit_test(test_file_syntax_error),
        cmocka_unit_test(test_file_missing),
        cmocka_unit_test(test_env_overrides_file),
        cmocka_unit_test(test_env_lists),
        cmocka_unit_test(test_env_unknown_and_bad),
        cmocka_unit_test(test_kafka_properties),
        cmocka_unit_test(test_enums),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_split_hostport),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_validate_secrets),
        cmocka_unit_test(test_internal_exposed),
        cmocka_unit_test(test_dev),
        cmocka_unit_test(test_dump),
        cmocka_unit_test(test_print_table),
        cmocka_unit_test(test_table_env_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

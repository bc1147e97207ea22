/* Unit tests of the refusal module: which librdkafka errors are refusals (and of
 * what kind), the sentence for each (naming the user, group or topic, without the
 * broker prefix and the state suffix), when a refusal clears, and the refused-write
 * warnings. The integration test (test_55) meets each against a real broker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <string.h>

#include "pushbridge/kafka/kafka_refusal.h"

static void test_classify(void **state)
{
    (void)state;
    assert_int_equal(pb_refusal_classify(RD_KAFKA_RESP_ERR__AUTHENTICATION, "x"),
                     PB_REFUSAL_AUTH);
    assert_int_equal(pb_refusal_classify(RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED, ""),
                     PB_REFUSAL_GROUP);
    assert_int_equal(pb_refusal_classify(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, NULL),
                     PB_REFUSAL_TOPIC);
    assert_int_equal(pb_refusal_classify(RD_KAFKA_RESP_ERR__SSL, "certificate verify failed"),
                     PB_REFUSAL_TLS);
    /* The broker's alert comes as a receive failure. */
    assert_int_equal(
        pb_refusal_classify(RD_KAFKA_RESP_ERR__TRANSPORT,
                            "ssl://h:1/bootstrap: Receive failed: error:0A000416:SSL "
                            "routines::sslv3 alert certificate unknown: SSL alert number 46"),
        PB_REFUSAL_CLIENT_CERT);
    /* A broker that is away is not a refusal. */
    assert_int_equal(pb_refusal_classify(RD_KAFKA_RESP_ERR__TRANSPORT, "Connection refused"),
                     PB_REFUSAL_NONE);
    assert_int_equal(pb_refusal_classify(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, "1/1 down"),
                     PB_REFUSAL_NONE);
}

static void test_login_sentence_names_user_without_prefix_or_state(void **state)
{
    (void)state;
    struct pb_kafka_refusals r;
    memset(&r, 0, sizeof(r));
    pb_refusal_consume(&r, PB_REFUSAL_AUTH, NULL, "bridge",
                       "sasl_ssl://127.0.0.1:9094/bootstrap: SASL authentication error: "
                       "Authentication failed due to invalid credentials with SASL mechanism "
                       "SCRAM-SHA-512 (after 3ms in state AUTH_REQ)");
    assert_string_equal(pb_refusal_why(&r),
                        "Kafka refused the SASL login of user 'bridge': SASL authentication "
                        "error: Authentication failed due to invalid credentials with SASL "
                        "mechanism SCRAM-SHA-512");
    /* A broker answering clears a login refusal. */
    pb_refusal_connection_ok(&r);
    assert_null(pb_refusal_why(&r));
}

static void test_topic_refusal_clears_only_for_its_topic(void **state)
{
    (void)state;
    struct pb_kafka_refusals r;
    memset(&r, 0, sizeof(r));
    pb_refusal_consume(&r, PB_REFUSAL_TOPIC, "orders", NULL,
                       "Subscribed topic not available: orders: Broker: Topic authorization "
                       "failed");
    assert_non_null(strstr(pb_refusal_why(&r), "topic 'orders'"));
    assert_non_null(strstr(pb_refusal_why(&r), "READ on the topic"));
    pb_refusal_connection_ok(&r); /* not a connection refusal */
    pb_refusal_consume_ok(&r, "other");
    assert_non_null(pb_refusal_why(&r));
    pb_refusal_consume_ok(&r, "orders");
    assert_null(pb_refusal_why(&r));

    pb_refusal_consume(&r, PB_REFUSAL_GROUP, "g1", NULL,
                       "FindCoordinator response error: Group authorization failed.");
    assert_non_null(strstr(pb_refusal_why(&r), "consumer group 'g1': FindCoordinator response "
                                                "error: Group authorization failed (grant"));
    pb_refusal_consume_ok(&r, ""); /* an assignment, even an empty one */
    assert_null(pb_refusal_why(&r));
}

static void test_write_refusals_are_warnings_per_topic(void **state)
{
    (void)state;
    struct pb_kafka_refusals r;
    memset(&r, 0, sizeof(r));
    assert_null(pb_refusal_write_warning(&r));
    pb_refusal_write(&r, PB_WRITE_PUSH, "pb.push", PB_REFUSAL_TOPIC,
                     "Broker: Topic authorization failed");
    assert_null(pb_refusal_why(&r)); /* delivery goes on */
    assert_string_equal(pb_refusal_write_warning(&r),
                        "Kafka refuses writes to the push topic 'pb.push': Broker: Topic "
                        "authorization failed (grant the bridge's principal WRITE on it)");
    assert_null(pb_refusal_write_refused(&r, PB_WRITE_DEAD_LETTER));
    pb_refusal_write_ok(&r, PB_WRITE_PUSH);
    assert_null(pb_refusal_write_warning(&r));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_login_sentence_names_user_without_prefix_or_state),
        cmocka_unit_test(test_topic_refusal_clears_only_for_its_topic),
        cmocka_unit_test(test_write_refusals_are_warnings_per_topic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

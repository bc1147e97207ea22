/* Unit tests of kafka.inputs (SPEC 12): the RFC 6901 pointer over raw JSON
 * text (its section 5 examples), the rules as the config reads and refuses
 * them, and the reader: each format, Confluent's wire-format prefix, each
 * source, final, and each way a rule can fail to place an event. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pushbridge/core/config.h"
#include "pushbridge/core/config_inputs.h"
#include "pushbridge/event/input.h"
#include "pushbridge/event/json_pointer.h"

/* ---- pointer ---- */

/* The pointer text, split as config_inputs.c would, looked up in doc. */
static const char *find(const char *doc, const char *ptr, size_t *n)
{
    struct pb_inputs in = {0};
    char rules[512], err[256];
    snprintf(rules, sizeof(rules),
             "[{\"topic\":\"t\",\"format\":\"json\",\"target\":\"field:%s\"}]", ptr);
    if (pb_inputs_parse_text(&in, rules, err, sizeof(err)))
        fail_msg("pointer %s refused: %s", ptr, err);
    const struct pb_input_source *s = &in.items[0].target;
    const char *span = NULL;
    int found =
        pb_json_pointer_find(doc, strlen(doc), s->tokens, s->token_lens, s->ntokens, &span, n);
    pb_inputs_free(&in);
    return found ? span : NULL;
}

static void expect_find(const char *doc, const char *ptr, const char *want)
{
    size_t n = 0;
    const char *got = find(doc, ptr, &n);
    if (!want) {
        if (got)
            fail_msg("%s found \"%.*s\", expected nothing", ptr, (int)n, got);
        return;
    }
    if (!got || n != strlen(want) || memcmp(got, want, n) != 0)
        fail_msg("%s found \"%.*s\", expected \"%s\"", ptr, got ? (int)n : 0, got ? got : "", want);
}

static void test_pointer_rfc6901_examples(void **state)
{
    (void)state;
    /* RFC 6901 section 5, over the raw text. */
    const char *doc = "{\"foo\": [\"bar\", \"baz\"], \"\": 0, \"a/b\": 1, \"c%d\": 2, \"e^f\": 3,"
                      " \"g|h\": 4, \"i\\\\j\": 5, \"k\\\"l\": 6, \" \": 7, \"m~n\": 8}";
    expect_find(doc, "", doc);
    expect_find(doc, "/foo", "[\"bar\", \"baz\"]");
    expect_find(doc, "/foo/0", "\"bar\"");
    expect_find(doc, "/foo/1", "\"baz\"");
    expect_find(doc, "/", "0");
    expect_find(doc, "/a~1b", "1");
    expect_find(doc, "/c%d", "2");
    expect_find(doc, "/e^f", "3");
    expect_find(doc, "/g|h", "4");
    expect_find(doc, "/i\\\\j", "5"); /* written as JSON in the rule */
    expect_find(doc, "/k\\\"l", "6");
    expect_find(doc, "/ ", "7");
    expect_find(doc, "/m~0n", "8");
}

static void test_pointer_misses(void **state)
{
    (void)state;
    const char *doc = "{\"a\":{\"b\":[10,{\"c\":null}]},\"s\":\"x\"}";
    expect_find(doc, "/a/b/1/c", "null");
    expect_find(doc, "/a/b/2", NULL);    /* past the end */
    expect_find(doc, "/a/b/-", NULL);    /* "-" names no element */
    expect_find(doc, "/a/b/01", NULL);   /* leading zero */
    expect_find(doc, "/s/0", NULL);      /* into a scalar */
    expect_find(doc, "/missing", NULL);
    expect_find("[]", "/0", NULL);
    expect_find("{}", "/a", NULL);
    /* Duplicates: the last counts, as in the envelope. */
    expect_find("{\"a\":1,\"a\":2}", "/a", "2");
    /* A member name written with escapes still matches its token. */
    expect_find("{\"\\u0061b\":\"y\"}", "/ab", "\"y\"");
}

static void test_members(void **state)
{
    (void)state;
    struct pb_json_member m[2];
    const char *doc = " {\"a\" : [1,{\"x\":\"}\"}] , \"b\":\"s\",\"c\":null} ";
    assert_int_equal(pb_json_members(doc, strlen(doc), m, 2), 3); /* only 2 listed */
    assert_int_equal(m[0].name_len, 1);
    assert_memory_equal(m[0].value, "[1,{\"x\":\"}\"}]", m[0].value_len);
    assert_memory_equal(m[1].value, "\"s\"", m[1].value_len);
    assert_int_equal(pb_json_members("[1]", 3, m, 2), -1);
    assert_int_equal(pb_json_members("{}", 2, m, 2), 0);
}

static void test_string_decode(void **state)
{
    (void)state;
    char out[32];
    const char *s = "\"a\\n\\u00e9\\ud83d\\ude00\\udc00\"";
    long n = pb_json_string_decode(s, strlen(s), out, sizeof(out));
    assert_int_equal(n, 1 + 1 + 2 + 4 + 3);
    assert_memory_equal(out, "a\n\xc3\xa9\xf0\x9f\x98\x80\xef\xbf\xbd", (size_t)n);
    assert_int_equal(pb_json_string_decode(s, strlen(s), out, 4), -1); /* does not fit */
}

/* ---- rules ---- */

static void expect_refused(const char *rules, const char *msg)
{
    struct pb_inputs in = {0};
    char err[256] = "";
    if (pb_inputs_parse_text(&in, rules, err, sizeof(err)) == 0)
        fail_msg("accepted %s", rules);
    if (!strstr(err, msg))
        fail_msg("error \"%s\" does not say \"%s\"", err, msg);
    assert_int_equal(in.n, 0);
}

static void test_rules_refused(void **state)
{
    (void)state;
    expect_refused("[{\"topic\":\"a\",\"format\":\"avro\"}]", "kafka.inputs[0].format");
    expect_refused("[{\"topic\":\"a\"},{\"topic\":\"b\",\"target\":\"hedaer:x\"}]",
                   "kafka.inputs[1].target: 'hedaer:x': unknown source");
    expect_refused("[{\"topic\":\"a\",\"format\":\"json\",\"id\":\"field:a/b\"}]",
                   "kafka.inputs[0].id: 'field:a/b': a JSON pointer must be empty or start "
                   "with '/'");
    expect_refused("[{\"topic\":\"a\",\"id\":\"field:/a~2\"}]", "'~' in a JSON pointer");
    expect_refused("[{\"topic\":\"^a(\"}]", "kafka.inputs[0].topic: '^a(' is not a valid regex");
    expect_refused("[{\"topic\":\"a\",\"format\":\"json\",\"target\":\"ce:subject\"}]",
                   "ce: sources need \"format\": \"cloudevents\"");
    expect_refused("[{\"topic\":\"a\",\"colour\":\"x\"}]", "kafka.inputs[0]: unknown key 'colour'");
    expect_refused("[{\"format\":\"json\"}]", "kafka.inputs[0]: a rule needs a topic");
    expect_refused("[{\"topic\":\"a\",\"id\":\"order-1\"}]", "kafka.inputs[0].id");
    expect_refused("[{\"topic\":\"a\",\"final\":{\"field:/s\":[]}}]", "kafka.inputs[0].final");
    expect_refused("[{\"topic\":\"a\",\"target\":\"header:\"}]", "header name");
    expect_refused("{\"topic\":\"a\"}", "kafka.inputs: expected a list of rules");
    expect_refused("[{\"topic\":\"a\",\"target\":5}]", "kafka.inputs[0].target: expected a source");
}

static void test_rules_parsed_and_matched(void **state)
{
    (void)state;
    struct pb_inputs in = {0};
    char err[256];
    const char *rules = "[{\"topic\":\"orders\",\"format\":\"json\",\"target\":\"group:admins\","
                        "\"event\":\"order.created\",\"id\":\"field:/order_id\","
                        "\"final\":{\"field:/status\":[\"done\",\"failed\",true]}},"
                        "{\"topic\":\"^ce\\\\.\",\"format\":\"cloudevents\","
                        "\"target\":\"ce:subject\"}]";
    assert_int_equal(pb_inputs_parse_text(&in, rules, err, sizeof(err)), 0);
    assert_int_equal(in.n, 2);
    assert_int_equal(in.items[0].target.kind, PB_SRC_LITERAL);
    assert_int_equal(in.items[0].event.kind, PB_SRC_LITERAL);
    assert_int_equal(in.items[0].id.kind, PB_SRC_FIELD);
    assert_int_equal(in.items[0].nfinal, 3);
    size_t idx = 9;
    assert_ptr_equal(pb_inputs_match(&in, "orders", &idx), &in.items[0]);
    assert_int_equal(idx, 0);
    assert_ptr_equal(pb_inputs_match(&in, "ce.billing", &idx), &in.items[1]);
    assert_int_equal(idx, 1);
    assert_null(pb_inputs_match(&in, "orders2", NULL));
    assert_null(pb_inputs_match(&in, "xce.a", NULL));

    /* Their topics are consumed as if in kafka.topics, once. */
    struct pb_config c;
    assert_int_equal(pb_config_init(&c), 0);
    assert_int_equal(pb_config_set(&c, "kafka.topics", "orders,other", err, sizeof(err)), 0);
    assert_int_equal(pb_config_set(&c, "kafka.inputs", rules, err, sizeof(err)), 0);
    assert_int_equal(pb_config_add_input_topics(&c, err, sizeof(err)), 0);
    assert_int_equal(c.kafka_topics.n, 3);
    assert_string_equal(c.kafka_topics.items[2], "^ce\\.");
    pb_config_free(&c);
    pb_inputs_free(&in);
}

/* ---- reader ---- */

struct hdr {
    const char *name, *value;
};

static int headers_of(void *ud, const char *name, const char **val, size_t *len)
{
    for (const struct hdr *h = ud; h && h->name; h++)
        if (strcmp(h->name, name) == 0) {
            *val = h->value;
            *len = strlen(h->value);
            return 1;
        }
    return 0;
}

static struct pb_inputs rules;

/* Reads value (n bytes; 0 = strlen) with key and headers under a rule. */
static int read_n(const char *rule, const char *key, const char *value, size_t n,
                  const struct hdr *h, struct pb_event *ev, char *failed)
{
    char text[1024], err[256];
    snprintf(text, sizeof(text), "[%s]", rule);
    pb_inputs_free(&rules);
    if (pb_inputs_parse_text(&rules, text, err, sizeof(err)))
        fail_msg("rule refused: %s", err);
    struct pb_input_msg m = {.topic = "orders", .key = key, .key_len = key ? strlen(key) : 0,
                             .value = value, .len = n ? n : strlen(value),
                             .header = headers_of, .ud = (void *)h};
    pb_event_init(ev);
    char sink[300];
    return pb_input_read(&rules.items[0], &m, ev, failed ? failed : sink, 300);
}

static int rd(const char *rule, const char *key, const char *value, const struct hdr *h,
              struct pb_event *ev, char *failed)
{
    return read_n(rule, key, value, 0, h, ev, failed);
}

static void expect_data(const struct pb_event *ev, const char *raw)
{
    if (ev->data_len != strlen(raw) || memcmp(ev->data, raw, ev->data_len) != 0)
        fail_msg("data is \"%.*s\", expected \"%s\"", (int)ev->data_len, ev->data, raw);
}

static void expect_target(const struct pb_event *ev, int kind, const char *name)
{
    assert_int_equal(ev->target_kind, kind);
    if (name)
        assert_true(ev->target_len == strlen(name) &&
                    memcmp(ev->target, name, ev->target_len) == 0);
}

static void test_json_format(void **state)
{
    (void)state;
    struct pb_event ev;
    const char *rule = "{\"topic\":\"orders\",\"format\":\"json\",\"target\":\"group:admins\"}";
    assert_int_equal(rd(rule, "o-2", " {\"order_id\":\"o-1\",\"total\":10}\n", NULL, &ev, NULL), 0);
    expect_data(&ev, "{\"order_id\":\"o-1\",\"total\":10}");
    expect_target(&ev, PB_TARGET_GROUP, "admins");
    assert_string_equal(pb_event_name(&ev), "orders"); /* the topic name */
    pb_event_clear(&ev);

    /* Arrays, strings, numbers are data too; the key is the default target. */
    rule = "{\"topic\":\"orders\",\"format\":\"json\"}";
    assert_int_equal(rd(rule, "ann", "[1,2,3]", NULL, &ev, NULL), 0);
    expect_data(&ev, "[1,2,3]");
    expect_target(&ev, PB_TARGET_USER, "ann");
    pb_event_clear(&ev);
    struct hdr h[] = {{"event", "note"}, {NULL, NULL}};
    assert_int_equal(rd(rule, "ann", "\"hi\\u00e9\"", h, &ev, NULL), 0);
    assert_true(ev.data_is_string);
    assert_string_equal(ev.data_text, "hi\xc3\xa9");
    assert_string_equal(pb_event_name(&ev), "note");
    pb_event_clear(&ev);
    char failed[300];
    assert_int_equal(rd(rule, NULL, "1", NULL, &ev, failed), PB_DROP_NO_TARGET);
    assert_string_equal(failed, "target=key");
    pb_event_clear(&ev);
    assert_int_equal(rd(rule, "ann", "{nope", NULL, &ev, NULL), PB_DROP_NOT_JSON);
    pb_event_clear(&ev);
}

static void test_field_sources(void **state)
{
    (void)state;
    struct pb_event ev;
    char failed[300];
    const char *rule = "{\"topic\":\"orders\",\"format\":\"json\","
                       "\"target\":\"field:/customer/id\",\"event\":\"field:/kind\","
                       "\"id\":\"field:/order_id\",\"task\":\"field:/job\","
                       "\"final\":{\"field:/status\":[\"done\",\"failed\"]}}";
    const char *v = "{\"customer\":{\"id\":4711},\"kind\":\"order.paid\","
                    "\"order_id\":\"o-\\u0031\","
                    "\"job\":\"j1\",\"status\":\"done\"}";
    assert_int_equal(rd(rule, "o-1", v, NULL, &ev, NULL), 0);
    expect_target(&ev, PB_TARGET_USER, "4711"); /* a number is a user ID in decimal */
    assert_string_equal(ev.event, "order.paid");
    assert_string_equal(ev.id, "o-1");
    assert_string_equal(ev.task, "j1");
    assert_true(ev.final);
    pb_event_clear(&ev);

    v = "{\"customer\":{\"id\":\"group:ops\"},\"kind\":\"k\",\"order_id\":2,\"job\":3,"
        "\"status\":\"run\"}";
    assert_int_equal(rd(rule, NULL, v, NULL, &ev, NULL), 0);
    expect_target(&ev, PB_TARGET_GROUP, "ops");
    assert_string_equal(ev.id, "2");
    assert_false(ev.final);
    pb_event_clear(&ev);

    /* Each way a source fails: the reason and which source. */
    v = "{\"customer\":{},\"kind\":\"k\",\"order_id\":\"x\"}";
    assert_int_equal(rd(rule, "o", v, NULL, &ev, failed), PB_DROP_NO_TARGET);
    assert_string_equal(failed, "target=field:/customer/id");
    pb_event_clear(&ev);
    v = "{\"customer\":{\"id\":[1]},\"kind\":\"k\",\"order_id\":\"x\"}";
    assert_int_equal(rd(rule, "o", v, NULL, &ev, failed), PB_DROP_BAD_FIELD);
    assert_string_equal(failed, "target=field:/customer/id");
    pb_event_clear(&ev);
    v = "{\"customer\":{\"id\":1.5},\"kind\":\"k\",\"order_id\":\"x\"}";
    assert_int_equal(rd(rule, "o", v, NULL, &ev, failed), PB_DROP_BAD_FIELD);
    pb_event_clear(&ev);
    v = "{\"customer\":{\"id\":1},\"kind\":7,\"order_id\":\"x\"}";
    assert_int_equal(rd(rule, "o", v, NULL, &ev, failed), PB_DROP_BAD_FIELD);
    assert_string_equal(failed, "event=field:/kind");
    pb_event_clear(&ev);
    v = "{\"customer\":{\"id\":1},\"kind\":\"k\"}";
    assert_int_equal(rd(rule, "o", v, NULL, &ev, failed), PB_DROP_NO_SOURCE);
    assert_string_equal(failed, "id=field:/order_id");
    pb_event_clear(&ev);
    v = "{\"customer\":{\"id\":\"\"},\"kind\":\"k\",\"order_id\":\"x\"}";
    assert_int_equal(rd(rule, "o", v, NULL, &ev, failed), PB_DROP_BAD_FIELD);
    pb_event_clear(&ev);
}

static void test_header_sources(void **state)
{
    (void)state;
    struct pb_event ev;
    char failed[300];
    /* A Debezium outbox row: the event type and ID in headers. */
    const char *rule = "{\"topic\":\"orders\",\"format\":\"json\",\"target\":\"header:user\","
                       "\"event\":\"header:eventType\",\"id\":\"header:id\"}";
    struct hdr h[] = {{"id", "4b0f"}, {"eventType", "OrderCreated"}, {"user", "ann"}, {NULL, NULL}};
    assert_int_equal(rd(rule, "agg-1", "{\"total\":1}", h, &ev, NULL), 0);
    expect_target(&ev, PB_TARGET_USER, "ann");
    assert_string_equal(ev.event, "OrderCreated");
    assert_string_equal(ev.id, "4b0f");
    pb_event_clear(&ev);
    struct hdr h2[] = {{"id", "4b0f"}, {"user", "ann"}, {NULL, NULL}};
    assert_int_equal(rd(rule, "agg-1", "{}", h2, &ev, failed), PB_DROP_NO_SOURCE);
    assert_string_equal(failed, "event=header:eventType");
    pb_event_clear(&ev);
}

static void test_envelope_with_rule(void **state)
{
    (void)state;
    struct pb_event ev;
    const char *rule = "{\"topic\":\"orders\",\"target\":\"field:/data/owner\"}";
    const char *v = "{\"event\":\"e\",\"user_id\":\"bob\",\"data\":{\"owner\":\"eve\"}}";
    assert_int_equal(rd(rule, NULL, v, NULL, &ev, NULL), 0);
    expect_target(&ev, PB_TARGET_USER, "eve"); /* the rule's target wins */
    assert_string_equal(ev.event, "e");
    expect_data(&ev, "{\"owner\":\"eve\"}");
    pb_event_clear(&ev);
    /* No rule source: exactly the envelope of SPEC 1, the header too. */
    struct hdr h[] = {{"event", "from-header"}, {NULL, NULL}};
    assert_int_equal(rd("{\"topic\":\"orders\"}", "bob", v, h, &ev, NULL), 0);
    expect_target(&ev, PB_TARGET_USER, "bob");
    assert_string_equal(ev.event, "from-header");
    pb_event_clear(&ev);
    assert_int_equal(rd("{\"topic\":\"orders\"}", "ann", v, NULL, &ev, NULL), PB_DROP_KEY_MISMATCH);
    pb_event_clear(&ev);
}

static void test_confluent_prefix(void **state)
{
    (void)state;
    struct pb_event ev;
    char failed[300];
    const char *rule = "{\"topic\":\"orders\",\"format\":\"json\",\"target\":\"field:/user\"}";
    static const char json[] = "\0\0\0\0\x2a{\"user\":\"ann\",\"n\":1}";
    assert_int_equal(read_n(rule, NULL, json, sizeof(json) - 1, NULL, &ev, NULL), 0);
    expect_target(&ev, PB_TARGET_USER, "ann");
    expect_data(&ev, "{\"user\":\"ann\",\"n\":1}");
    pb_event_clear(&ev);
    /* Avro behind the prefix (a record of a string "ann" and a long 1). */
    static const char avro[] = "\0\0\0\x01\x07\x06\x61nn\x02";
    assert_int_equal(read_n(rule, NULL, avro, sizeof(avro) - 1, NULL, &ev, failed),
                     PB_DROP_UNSUPPORTED_ENCODING);
    assert_string_equal(failed, "value");
    assert_non_null(strstr(ev.detail, "schema ID 263"));
    pb_event_clear(&ev);
    /* The envelope behind the prefix, without any rule source. */
    static const char env[] = "\0\0\0\0\x01{\"event\":\"e\",\"data\":1}";
    assert_int_equal(
        read_n("{\"topic\":\"orders\"}", "bob", env, sizeof(env) - 1, NULL, &ev, NULL), 0);
    expect_data(&ev, "1");
    pb_event_clear(&ev);
}

static void test_cloudevents_binary(void **state)
{
    (void)state;
    struct pb_event ev;
    char failed[300];
    const char *rule =
        "{\"topic\":\"orders\",\"format\":\"cloudevents\",\"target\":\"ce:subject\"}";
    struct hdr h[] = {{"ce_specversion", "1.0"}, {"ce_type", "com.example.order.created"},
                      {"ce_id", "A-1"}, {"ce_source", "/orders"}, {"ce_subject", "ann"},
                      {"content-type", "application/json"}, {NULL, NULL}};
    assert_int_equal(rd(rule, "k", "{\"total\":5}", h, &ev, NULL), 0);
    assert_string_equal(ev.event, "com.example.order.created");
    assert_string_equal(ev.id, "A-1");
    expect_target(&ev, PB_TARGET_USER, "ann");
    expect_data(&ev, "{\"total\":5}");
    pb_event_clear(&ev);
    /* Text data becomes a JSON string; binary data is not carried. */
    h[5].value = "text/plain; charset=utf-8";
    assert_int_equal(rd(rule, "k", "say \"hi\"", h, &ev, NULL), 0);
    expect_data(&ev, "\"say \\\"hi\\\"\"");
    assert_string_equal(ev.data_text, "say \"hi\"");
    pb_event_clear(&ev);
    /* The data's type under another name some producers use. */
    struct hdr spring[] = {{"ce_specversion", "1.0"}, {"ce_type", "t"}, {"ce_id", "A-2"},
                           {"ce_subject", "ann"}, {"contentType", "text/plain"}, {NULL, NULL}};
    assert_int_equal(rd(rule, "k", "plain", spring, &ev, NULL), 0);
    expect_data(&ev, "\"plain\"");
    pb_event_clear(&ev);
    h[5].value = "application/avro";
    assert_int_equal(rd(rule, "k", "\x02\x04", h, &ev, failed), PB_DROP_UNSUPPORTED_ENCODING);
    pb_event_clear(&ev);
    /* No type, no subject. */
    h[5].value = "application/json";
    h[1].name = "ce_kind";
    assert_int_equal(rd(rule, "k", "{}", h, &ev, failed), PB_DROP_NO_SOURCE);
    assert_string_equal(failed, "ce:type");
    pb_event_clear(&ev);
    h[1].name = "ce_type";
    h[4].name = "ce_other";
    assert_int_equal(rd(rule, "k", "{}", h, &ev, failed), PB_DROP_NO_TARGET);
    assert_string_equal(failed, "target=ce:subject");
    pb_event_clear(&ev);
}

static void test_cloudevents_structured(void **state)
{
    (void)state;
    struct pb_event ev;
    char failed[300];
    const char *rule = "{\"topic\":\"orders\",\"format\":\"cloudevents\",\"target\":\"ce:subject\","
                       "\"task\":\"ce:jobid\",\"final\":{\"ce:state\":[\"done\"]}}";
    const char *v = "{\"specversion\":\"1.0\",\"type\":\"job.progress\",\"id\":\"e1\","
                    "\"source\":\"/jobs\",\"subject\":\"ann\",\"jobid\":\"j9\",\"state\":\"done\","
                    "\"data\":{\"pct\":100}}";
    struct hdr ct[] = {{"content-type", "application/cloudevents+json"}, {NULL, NULL}};
    assert_int_equal(rd(rule, NULL, v, ct, &ev, NULL), 0);
    assert_string_equal(ev.event, "job.progress");
    assert_string_equal(ev.id, "e1");
    assert_string_equal(ev.task, "j9");
    assert_true(ev.final);
    expect_target(&ev, PB_TARGET_USER, "ann");
    expect_data(&ev, "{\"pct\":100}");
    pb_event_clear(&ev);
    /* Without the header, or with the data's type in it (some SDKs). */
    struct hdr json_ct[] = {{"content-type", "application/json"}, {NULL, NULL}};
    assert_int_equal(rd(rule, NULL, v, json_ct, &ev, NULL), 0);
    assert_string_equal(ev.id, "e1");
    pb_event_clear(&ev);
    assert_int_equal(rd(rule, NULL, v, NULL, &ev, NULL), 0);
    pb_event_clear(&ev);
    /* data_base64 arrives as that JSON string. */
    v = "{\"specversion\":\"1.0\",\"type\":\"t\",\"id\":\"e2\",\"subject\":\"ann\","
        "\"data_base64\":\"aGk=\"}";
    assert_int_equal(rd(rule, NULL, v, NULL, &ev, NULL), 0);
    expect_data(&ev, "\"aGk=\"");
    pb_event_clear(&ev);
    /* An attribute name written with escapes is still found; duplicates:
     * the last counts. */
    v = "{\"specversion\":\"1.0\",\"\\u0074ype\":\"esc\",\"id\":\"e0\",\"id\":\"e3\","
        "\"subject\":\"ann\"}";
    assert_int_equal(rd(rule, NULL, v, NULL, &ev, NULL), 0);
    assert_string_equal(ev.event, "esc");
    assert_string_equal(ev.id, "e3");
    expect_data(&ev, "null");
    pb_event_clear(&ev);
    v = "{\"specversion\":\"1.0\",\"type\":\"t\",\"subject\":\"ann\"}";
    assert_int_equal(rd(rule, NULL, v, NULL, &ev, failed), PB_DROP_NO_SOURCE);
    assert_string_equal(failed, "ce:id");
    pb_event_clear(&ev);
    assert_int_equal(rd(rule, NULL, "{\"type\":\"t\"}", NULL, &ev, failed), PB_DROP_NO_SOURCE);
    assert_string_equal(failed, "ce:specversion");
    pb_event_clear(&ev);
    assert_int_equal(rd(rule, NULL, "[1]", NULL, &ev, failed), PB_DROP_NOT_OBJECT);
    pb_event_clear(&ev);
}

static void test_key_decides(void **state)
{
    (void)state;
    struct pb_event ev;
    rd("{\"topic\":\"o\",\"format\":\"json\"}", "a", "1", NULL, &ev, NULL);
    assert_true(pb_input_key_decides(&rules.items[0]));
    pb_event_clear(&ev);
    rd("{\"topic\":\"o\",\"format\":\"json\",\"target\":\"field:/u\"}", "a", "1", NULL, &ev, NULL);
    assert_false(pb_input_key_decides(&rules.items[0]));
    pb_event_clear(&ev);
    rd("{\"topic\":\"o\",\"format\":\"json\",\"task\":\"header:t\"}", "a", "1", NULL, &ev, NULL);
    assert_false(pb_input_key_decides(&rules.items[0]));
    pb_event_clear(&ev);
    assert_string_equal(pb_drop_reason_name(PB_DROP_UNSUPPORTED_ENCODING), "unsupported_encoding");
    assert_string_equal(pb_drop_reason_name(PB_DROP_NO_SOURCE), "no_source");
}

static int teardown(void **state)
{
    (void)state;
    pb_inputs_free(&rules);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pointer_rfc6901_examples),
        cmocka_unit_test(test_pointer_misses),
        cmocka_unit_test(test_string_decode),
        cmocka_unit_test(test_members),
        cmocka_unit_test(test_rules_refused),
        cmocka_unit_test(test_rules_parsed_and_matched),
        cmocka_unit_test(test_json_format),
        cmocka_unit_test(test_field_sources),
        cmocka_unit_test(test_header_sources),
        cmocka_unit_test(test_envelope_with_rule),
        cmocka_unit_test(test_confluent_prefix),
        cmocka_unit_test(test_cloudevents_binary),
        cmocka_unit_test(test_cloudevents_structured),
        cmocka_unit_test(test_key_decides),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}

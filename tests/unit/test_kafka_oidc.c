/* Unit tests of the OIDC token module's parsers and start-up check: the HTTP
 * framings (Content-Length, chunked, up to the close, cut short), the token
 * answer (expires_in, the JWT's exp and sub), the IdP's refusal in the
 * sentence, and the properties it refuses. test_65_oidc meets the real
 * exchange against Kafka's secured validator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "pushbridge/kafka/kafka_oidc.h"

/* {"alg":"none"}.{"sub":"svc-a","exp":1700000100}.sig */
#define JWT "eyJhbGciOiJub25lIn0.eyJzdWIiOiJzdmMtYSIsImV4cCI6MTcwMDAwMDEwMH0.c2ln"
#define NOW_MS 1700000000000LL

static int http(const char *resp, int eof, int *status, char **body)
{
    size_t blen;
    char err[128];
    return pb_oidc_parse_http(resp, strlen(resp), eof, status, body, &blen, err, sizeof(err));
}

static void test_http_framings(void **state)
{
    (void)state;
    int st;
    char *body = NULL;
    assert_int_equal(http("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}xx", 0, &st, &body), 0);
    assert_int_equal(st, 200);
    assert_string_equal(body, "{}");
    free(body);
    assert_int_equal(http("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n", 0, &st, &body), 0);
    assert_string_equal(body, "{\"a\":1}");
    free(body);
    assert_int_equal(http("HTTP/1.0 401 No\r\n\r\n{\"error\":1}", 0, &st, &body), 1);
    assert_int_equal(http("HTTP/1.0 401 No\r\n\r\n{\"error\":1}", 1, &st, &body), 0);
    assert_int_equal(st, 401);
    free(body);
    /* Incomplete: more to read, or an error once the peer has closed. */
    assert_int_equal(http("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}", 0, &st, &body), 1);
    assert_int_equal(http("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}", 1, &st, &body), -1);
    assert_int_equal(http("HTTP/1.1 200 OK\r\nContent-Le", 0, &st, &body), 1);
    assert_int_equal(http("SSH-2.0-x\r\n\r\n", 1, &st, &body), -1);
    assert_int_equal(http("HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n", 0, &st, &body),
                     -1);
    assert_int_equal(http("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, &st,
                          &body), -1);
}

static void test_token_with_expires_in_and_sub(void **state)
{
    (void)state;
    struct pb_oidc_token tok;
    char err[256];
    const char *b = "{\"access_token\":\"" JWT "\",\"token_type\":\"Bearer\",\"expires_in\":300}";
    assert_int_equal(pb_oidc_parse_token(200, b, strlen(b), NOW_MS, &tok, err, sizeof(err)), 0);
    assert_string_equal(tok.access_token, JWT);
    assert_int_equal(tok.expires_in_ms, 300000);
    assert_string_equal(tok.principal, "svc-a");
    pb_oidc_token_free(&tok);
    /* No expires_in: the JWT's exp. */
    b = "{\"access_token\":\"" JWT "\"}";
    assert_int_equal(pb_oidc_parse_token(200, b, strlen(b), NOW_MS, &tok, err, sizeof(err)), 0);
    assert_int_equal(tok.expires_in_ms, 100000);
    pb_oidc_token_free(&tok);
    /* An opaque token: no principal (the client id is used), lifetime needed. */
    b = "{\"access_token\":\"opaque\",\"expires_in\":60}";
    assert_int_equal(pb_oidc_parse_token(200, b, strlen(b), NOW_MS, &tok, err, sizeof(err)), 0);
    assert_string_equal(tok.principal, "");
    pb_oidc_token_free(&tok);
    b = "{\"access_token\":\"opaque\"}";
    assert_int_equal(pb_oidc_parse_token(200, b, strlen(b), NOW_MS, &tok, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no lifetime"));
    b = "[1]";
    assert_int_equal(pb_oidc_parse_token(200, b, strlen(b), NOW_MS, &tok, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a JSON object"));
}

static void test_refusal_names_status_and_idp_error(void **state)
{
    (void)state;
    struct pb_oidc_token tok;
    char err[256];
    const char *b = "{\"error\":\"invalid_client\",\"error_description\":\"bad secret\"}";
    assert_int_equal(pb_oidc_parse_token(401, b, strlen(b), NOW_MS, &tok, err, sizeof(err)), -1);
    assert_string_equal(err, "HTTP 401: invalid_client: bad secret");
    assert_int_equal(pb_oidc_parse_token(502, "<html>", 6, NOW_MS, &tok, err, sizeof(err)), -1);
    assert_string_equal(err, "HTTP 502");
}

static void check_props(const char *url, const char *secret, int want)
{
    struct pb_kv kv[] = {{"sasl.oauthbearer.method", "oidc"},
                         {"sasl.oauthbearer.client.id", "pushbridge"},
                         {"sasl.oauthbearer.client.secret", (char *)secret},
                         {"sasl.oauthbearer.token.endpoint.url", (char *)url}};
    struct pb_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.kafka_properties.items = kv;
    cfg.kafka_properties.n = 4;
    char err[256] = "";
    assert_true(pb_oidc_enabled(&cfg));
    assert_int_equal(pb_oidc_check(&cfg, err, sizeof(err)), want);
}

static void test_startup_check(void **state)
{
    (void)state;
    check_props("https://idp.example.com/oauth2/token", "s", 0);
    check_props("https://127.0.0.1:8443/token", "s", 0);
    check_props("http://idp.example.com/token", "s", -1);
    check_props("https://user@idp.example.com/token", "s", -1);
    check_props("https://idp.example.com:99x/token", "s", -1);
    check_props("https://idp.example.com/token", "", -1);
    assert_true(pb_oidc_own_property("sasl.oauthbearer.scope"));
    assert_false(pb_oidc_own_property("sasl.oauthbearer.config"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_framings),
        cmocka_unit_test(test_token_with_expires_in_and_sub),
        cmocka_unit_test(test_refusal_names_status_and_idp_error),
        cmocka_unit_test(test_startup_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

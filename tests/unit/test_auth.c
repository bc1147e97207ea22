/* Unit tests of client login: the three login forms of SPEC section 2 in auth.mode none, each
 * refusal code, and JWT verification in auth.mode jwt. Tokens are made here with OpenSSL (HMAC
 * for HS256, freshly generated RSA and P-256 keys for RS256 and ES256) so that every check
 * (signature, exp, nbf, iss, aud, algorithm confusion) is exercised against real signatures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pushbridge/hub/auth.h"

#define SECRET "s3cret-for-tests"

/* ---- keys, made once for the whole run ---- */

static struct {
    EVP_PKEY *rsa, *rsa_other, *ec, *ec_other;
    char rsa_path[64], ec_path[64];
    char *rsa_pem; /* the RSA public key file's text */
} keys;

static char *write_pubkey(EVP_PKEY *k, char *path, size_t pathlen)
{
    snprintf(path, pathlen, "/tmp/pb_test_auth_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *fp = fdopen(fd, "w+");
    assert_non_null(fp);
    assert_int_equal(PEM_write_PUBKEY(fp, k), 1);
    long len = ftell(fp);
    rewind(fp);
    char *text = calloc(1, (size_t)len + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)len, fp), (size_t)len);
    fclose(fp);
    return text;
}

static int group_setup(void **state)
{
    (void)state;
    keys.rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    keys.rsa_other = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    keys.ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    keys.ec_other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!keys.rsa || !keys.rsa_other || !keys.ec || !keys.ec_other)
        return -1;
    keys.rsa_pem = write_pubkey(keys.rsa, keys.rsa_path, sizeof(keys.rsa_path));
    free(write_pubkey(keys.ec, keys.ec_path, sizeof(keys.ec_path)));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    unlink(keys.rsa_path);
    unlink(keys.ec_path);
    free(keys.rsa_pem);
    EVP_PKEY_free(keys.rsa);
    EVP_PKEY_free(keys.rsa_other);
    EVP_PKEY_free(keys.ec);
    EVP_PKEY_free(keys.ec_other);
    return 0;
}

/* ---- verifiers ---- */

struct auth_opts {
    int mode;
    const char *secret;
    const char *public_key; /* path */
    const char *issuer;
    const char *audience;
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static struct pb_auth *auth_new(struct auth_opts o)
{
    struct pb_config cfg;
    char err[256] = "";
    assert_int_equal(pb_config_init(&cfg), 0);
    cfg.auth_mode = o.mode;
    free(cfg.auth_jwt_secret);
    free(cfg.auth_jwt_public_key);
    free(cfg.auth_jwt_issuer);
    free(cfg.auth_jwt_audience);
    cfg.auth_jwt_secret = dup_or_null(o.secret);
    cfg.auth_jwt_public_key = dup_or_null(o.public_key);
    cfg.auth_jwt_issuer = dup_or_null(o.issuer);
    cfg.auth_jwt_audience = dup_or_null(o.audience);
    struct pb_auth *a = pb_auth_new(&cfg, err, sizeof(err));
    if (!a)
        fail_msg("pb_auth_new: %s", err);
    pb_config_free(&cfg);
    return a;
}

static struct pb_auth *auth_none(void)
{
    return auth_new((struct auth_opts){.mode = PB_AUTH_NONE});
}

static struct pb_auth *auth_hs256(void)
{
    return auth_new((struct auth_opts){.mode = PB_AUTH_JWT, .secret = SECRET});
}

/* ---- tokens ---- */

static char *b64url(const void *data, size_t n)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = data;
    char *out = malloc(n * 4 / 3 + 4);
    assert_non_null(out);
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
        out[o++] = abc[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
    }
    out[o] = '\0';
    return out;
}

/* "b64(header).b64(payload)" (caller frees). */
static char *signing_input(const char *header, const char *payload)
{
    char *h = b64url(header, strlen(header));
    char *p = b64url(payload, strlen(payload));
    char *s = malloc(strlen(h) + strlen(p) + 2);
    assert_non_null(s);
    sprintf(s, "%s.%s", h, p);
    free(h);
    free(p);
    return s;
}

static char *with_sig(char *input, const unsigned char *sig, size_t siglen)
{
    char *s = b64url(sig, siglen);
    char *tok = malloc(strlen(input) + strlen(s) + 2);
    assert_non_null(tok);
    sprintf(tok, "%s.%s", input, s);
    free(s);
    free(input);
    return tok;
}

static char *jwt_hmac(const char *header, const char *payload, const void *key, size_t keylen)
{
    char *input = signing_input(header, payload);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    assert_non_null(
        HMAC(EVP_sha256(), key, (int)keylen, (unsigned char *)input, strlen(input), mac, &maclen));
    return with_sig(input, mac, maclen);
}

static char *jwt_hs256(const char *payload)
{
    return jwt_hmac("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, SECRET, strlen(SECRET));
}

/* A DER ECDSA signature as raw r||s, 32 bytes each (RFC 7518 3.4). */
static size_t der_to_raw(const unsigned char *der, size_t derlen, unsigned char raw[64])
{
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &der, (long)derlen);
    assert_non_null(es);
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(es, &r, &s);
    assert_int_equal(BN_bn2binpad(r, raw, 32), 32);
    assert_int_equal(BN_bn2binpad(s, raw + 32, 32), 32);
    ECDSA_SIG_free(es);
    return 64;
}

/* Signs with SHA-256 and k; raw_ec converts an EC signature to r||s. */
static char *jwt_pkey(const char *header, const char *payload, EVP_PKEY *k, int raw_ec)
{
    char *input = signing_input(header, payload);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_non_null(ctx);
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k), 1);
    size_t siglen = 0;
    assert_int_equal(EVP_DigestSign(ctx, NULL, &siglen, (unsigned char *)input, strlen(input)), 1);
    unsigned char *sig = malloc(siglen);
    assert_non_null(sig);
    assert_int_equal(EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)input, strlen(input)), 1);
    EVP_MD_CTX_free(ctx);
    char *tok;
    if (raw_ec) {
        unsigned char raw[64];
        tok = with_sig(input, raw, der_to_raw(sig, siglen, raw));
    } else {
        tok = with_sig(input, sig, siglen);
    }
    free(sig);
    return tok;
}

static char *jwt_rs256(const char *payload, EVP_PKEY *k)
{
    return jwt_pkey("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", payload, k, 0);
}

static char *jwt_es256(const char *payload, EVP_PKEY *k)
{
    return jwt_pkey("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", payload, k, 1);
}

/* Claims with sub and exp = now + exp_in (seconds), plus extra members (",\"k\":v"). */
static char *claims(const char *sub, long exp_in, const char *extra)
{
    static char buf[16384];
    snprintf(buf, sizeof(buf), "{\"sub\":\"%s\",\"exp\":%lld%s}", sub,
             (long long)time(NULL) + exp_in, extra ? extra : "");
    return buf;
}

/* ---- login helpers ---- */

static void login_ok(const struct pb_auth *a, const char *text, struct pb_identity *id)
{
    const char *code = NULL;
    char msg[256] = "";
    if (pb_auth_login(a, text, strlen(text), id, &code, msg, sizeof(msg)) != 0)
        fail_msg("%.200s: refused: %s: %s", text, code, msg);
    assert_non_null(id->user);
}

static void login_refused(const struct pb_auth *a, const char *text, const char *want_code)
{
    struct pb_identity id;
    const char *code = NULL;
    char msg[256] = "";
    memset(&id, 0x5a, sizeof(id));
    if (pb_auth_login(a, text, strlen(text), &id, &code, msg, sizeof(msg)) != -1)
        fail_msg("%.200s: accepted as %s", text, id.user);
    assert_non_null(code);
    if (strcmp(code, want_code) != 0)
        fail_msg("%.200s: code %s (%s), expected %s", text, code, msg, want_code);
    assert_true(msg[0] != '\0');
    /* Nothing is left for the caller to free. */
    assert_null(id.user);
    assert_null(id.groups);
    assert_null(id.events);
}

/* Verifies token directly; returns 0 or -1 and the code. */
static int verify(const struct pb_auth *a, const char *token, const char **code)
{
    struct pb_identity id = {0};
    char msg[256] = "";
    *code = NULL;
    int rc = pb_auth_verify_jwt(a, token, strlen(token), &id, code, msg, sizeof(msg));
    if (rc == 0)
        assert_non_null(id.user);
    else
        assert_true(msg[0] != '\0');
    pb_identity_clear(&id);
    return rc;
}

static void token_ok(const struct pb_auth *a, const char *token)
{
    const char *code;
    if (verify(a, token, &code) != 0)
        fail_msg("token refused (%s): %.120s", code, token);
}

static void token_refused(const struct pb_auth *a, const char *token, const char *want_code)
{
    const char *code;
    if (verify(a, token, &code) == 0)
        fail_msg("token accepted: %.120s", token);
    if (strcmp(code, want_code) != 0)
        fail_msg("token refused with %s, expected %s", code, want_code);
}

/* The native login message carrying token (caller frees). */
static char *native_login(const char *token)
{
    char *m = malloc(strlen(token) + 64);
    assert_non_null(m);
    sprintf(m, "{\"type\":\"auth\",\"token\":\"%s\"}", token);
    return m;
}

/* ---- auth.mode none ---- */

static void test_none_native_form(void **state)
{
    (void)state;
    struct pb_auth *a = auth_none();
    struct pb_identity id;
    login_ok(a, "{\"type\":\"auth\",\"token\":\"u1\",\"events\":[\"a\"]}", &id);
    assert_string_equal(id.user, "u1");
    assert_int_equal(id.form, PB_FORM_NATIVE);
    assert_int_equal(id.nevents, 1);
    assert_string_equal(id.events[0], "a");
    assert_int_equal(id.ngroups, 0);
    pb_identity_clear(&id);
    assert_null(id.user);

    login_ok(a, "{\"type\":\"auth\",\"token\":\"u1\"}", &id);
    assert_int_equal(id.form, PB_FORM_NATIVE);
    assert_int_equal(id.nevents, 0);
    pb_identity_clear(&id);

    login_ok(a, "{\"type\":\"auth\",\"token\":\"u1\",\"events\":[\"a\",\"b.c\"],\"x\":1}", &id);
    assert_int_equal(id.nevents, 2);
    assert_string_equal(id.events[1], "b.c");
    pb_identity_clear(&id);

    /* null and [] name no event: every event. */
    login_ok(a, "{\"type\":\"auth\",\"token\":\"u1\",\"events\":null}", &id);
    assert_int_equal(id.nevents, 0);
    pb_identity_clear(&id);
    login_ok(a, "{\"type\":\"auth\",\"token\":\"u1\",\"events\":[]}", &id);
    assert_int_equal(id.nevents, 0);
    pb_identity_clear(&id);
    pb_auth_free(a);
}

static void test_none_uid_form(void **state)
{
    (void)state;
    struct pb_auth *a = auth_none();
    struct pb_identity id;
    login_ok(a, "{\"uid\":\"123\"}", &id);
    assert_string_equal(id.user, "123");
    assert_int_equal(id.form, PB_FORM_PLAIN);
    assert_int_equal(id.nevents, 0);
    pb_identity_clear(&id);

    login_ok(a, "{\"uid\":123}", &id);
    assert_string_equal(id.user, "123");
    assert_int_equal(id.form, PB_FORM_PLAIN);
    pb_identity_clear(&id);

    login_ok(a, " { \"uid\" : \"caf\\u00e9\" } ", &id);
    assert_string_equal(id.user, "caf\xc3\xa9");
    pb_identity_clear(&id);

    /* 256 bytes is the longest user. */
    char msg[300];
    char *p = msg + sprintf(msg, "{\"uid\":\"");
    memset(p, 'u', 256);
    strcpy(p + 256, "\"}");
    login_ok(a, msg, &id);
    assert_int_equal(strlen(id.user), 256);
    pb_identity_clear(&id);
    pb_auth_free(a);
}

static void test_none_token_event_form(void **state)
{
    (void)state;
    struct pb_auth *a = auth_none();
    struct pb_identity id;
    login_ok(a, "{\"token\":\"abc\",\"event\":\"e1\"}", &id);
    assert_string_equal(id.user, "abc");
    assert_int_equal(id.form, PB_FORM_PLAIN);
    assert_int_equal(id.nevents, 1);
    assert_string_equal(id.events[0], "e1");
    pb_identity_clear(&id);

    login_ok(a, "{\"token\":\"abc\"}", &id);
    assert_int_equal(id.form, PB_FORM_PLAIN);
    assert_int_equal(id.nevents, 0);
    pb_identity_clear(&id);
    pb_auth_free(a);
}

static void test_none_refusals(void **state)
{
    (void)state;
    struct pb_auth *a = auth_none();
    static const char *const cases[][2] = {
        {"not json", "bad_login"},
        {"", "bad_login"},
        {"[]", "bad_login"},
        {"\"uid\"", "bad_login"},
        {"{}", "bad_login"},
        {"{\"hello\":1}", "bad_login"},
        {"{\"type\":\"hello\",\"token\":\"u1\"}", "bad_login"},
        {"{\"type\":1,\"token\":\"u1\"}", "bad_login"},
        {"{\"uid\":\"1\"} x", "bad_login"},
        {"{\"type\":\"auth\"}", "missing_token"},
        {"{\"type\":\"auth\",\"token\":\"\"}", "missing_token"},
        {"{\"type\":\"auth\",\"token\":5}", "missing_token"},
        {"{\"type\":\"auth\",\"token\":null}", "missing_token"},
        {"{\"token\":\"\",\"event\":\"e\"}", "missing_token"},
        {"{\"token\":[\"u\"]}", "missing_token"},
        {"{\"uid\":\"\"}", "bad_user"},
        {"{\"uid\":1.5}", "bad_user"},
        {"{\"uid\":true}", "bad_user"},
        {"{\"uid\":null}", "bad_user"},
        {"{\"uid\":{}}", "bad_user"},
        {"{\"uid\":[\"1\"]}", "bad_user"},
        {"{\"uid\":\"*\"}", "bad_user"},
        {"{\"uid\":\"group:x\"}", "bad_user"},
        {"{\"uid\":\"group:\"}", "bad_user"},
        {"{\"type\":\"auth\",\"token\":\"*\"}", "bad_user"},
        {"{\"type\":\"auth\",\"token\":\"group:ops\"}", "bad_user"},
        {"{\"token\":\"group:x\",\"event\":\"a\"}", "bad_user"},
        {"{\"type\":\"auth\",\"token\":\"u1\",\"events\":[1]}", "bad_events"},
        {"{\"type\":\"auth\",\"token\":\"u1\",\"events\":[\"\"]}", "bad_events"},
        {"{\"type\":\"auth\",\"token\":\"u1\",\"events\":{\"a\":1}}", "bad_events"},
        {"{\"type\":\"auth\",\"token\":\"u1\",\"events\":[\"a\",null]}", "bad_events"},
        {"{\"type\":\"auth\",\"token\":\"u1\",\"events\":true}", "bad_events"},
        {"{\"token\":\"abc\",\"event\":5}", "bad_events"},
        {"{\"type\":\"auth\",\"token\":\"u1\",\"recent\":101}", "bad_recent"},
        {"{\"type\":\"auth\",\"token\":\"u1\",\"recent\":-1}", "bad_recent"},
        {"{\"type\":\"auth\",\"token\":\"u1\",\"recent\":2.5}", "bad_recent"},
        {"{\"type\":\"auth\",\"token\":\"u1\",\"recent\":\"5\"}", "bad_recent"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        login_refused(a, cases[i][0], cases[i][1]);

    /* Over 256 bytes of user. */
    char msg[400];
    char *p = msg + sprintf(msg, "{\"uid\":\"");
    memset(p, 'u', 257);
    strcpy(p + 257, "\"}");
    login_refused(a, msg, "bad_user");

    /* An event name over 256 bytes in a list, and more than 64 names. */
    p = msg + sprintf(msg, "{\"token\":\"u\",\"events\":[\"");
    memset(p, 'e', 257);
    strcpy(p + 257, "\"]}");
    login_refused(a, msg, "bad_events");
    char many[1024];
    p = many + sprintf(many, "{\"token\":\"u\",\"events\":[");
    for (int i = 0; i < PB_AUTH_MAX_EVENTS + 1; i++)
        p += sprintf(p, "%s\"e%d\"", i ? "," : "", i);
    strcpy(p, "]}");
    login_refused(a, many, "bad_events");
    /* Exactly 64 is fine. */
    p = many + sprintf(many, "{\"token\":\"u\",\"events\":[");
    for (int i = 0; i < PB_AUTH_MAX_EVENTS; i++)
        p += sprintf(p, "%s\"e%d\"", i ? "," : "", i);
    strcpy(p, "]}");
    struct pb_identity id;
    login_ok(a, many, &id);
    assert_int_equal(id.nevents, PB_AUTH_MAX_EVENTS);
    assert_string_equal(id.events[63], "e63");
    pb_identity_clear(&id);
    /* recent: 0..100 on a native login; null asks for none. */
    login_ok(a, "{\"type\":\"auth\",\"token\":\"u\",\"recent\":100}", &id);
    assert_int_equal(id.recent, 100);
    pb_identity_clear(&id);
    login_ok(a, "{\"type\":\"auth\",\"token\":\"u\",\"recent\":null}", &id);
    assert_int_equal(id.recent, 0);
    pb_identity_clear(&id);

    /* A NUL byte inside the frame. */
    static const char nul[] = "{\"uid\":\"1\"}\0{}";
    const char *code = NULL;
    char m[128];
    assert_int_equal(pb_auth_login(a, nul, sizeof(nul) - 1, &id, &code, m, sizeof(m)), -1);
    assert_string_equal(code, "bad_login");
    assert_null(id.user);
    pb_auth_free(a);
}

/* A single name ("event":"x", or "events":"x") must meet the same 1-256 byte rule as a list
 * of names: an empty filter name matches no event, so the client would silently get nothing. */
static void test_single_event_name_checked_like_a_list(void **state)
{
    (void)state;
    struct pb_auth *a = auth_none();
    login_refused(a, "{\"token\":\"abc\",\"event\":\"\"}", "bad_events");
    login_refused(a, "{\"type\":\"auth\",\"token\":\"abc\",\"events\":\"\"}", "bad_events");
    char msg[400];
    char *p = msg + sprintf(msg, "{\"token\":\"u\",\"event\":\"");
    memset(p, 'e', 257);
    strcpy(p + 257, "\"}");
    login_refused(a, msg, "bad_events");
    /* 256 bytes is fine. */
    p = msg + sprintf(msg, "{\"token\":\"u\",\"event\":\"");
    memset(p, 'e', 256);
    strcpy(p + 256, "\"}");
    struct pb_identity id;
    login_ok(a, msg, &id);
    assert_int_equal(id.nevents, 1);
    assert_int_equal(strlen(id.events[0]), 256);
    pb_identity_clear(&id);
    pb_auth_free(a);
}

/* ---- auth.mode jwt, HS256 ---- */

static void test_jwt_uid_login_disabled(void **state)
{
    (void)state;
    struct pb_auth *a = auth_hs256();
    login_refused(a, "{\"uid\":\"123\"}", "uid_login_disabled");
    login_refused(a, "{\"uid\":123}", "uid_login_disabled");
    /* In jwt mode a token is never taken as the user name itself. */
    login_refused(a, "{\"type\":\"auth\",\"token\":\"u1\"}", "invalid_token");
    login_refused(a, "{\"token\":\"u1\",\"event\":\"e\"}", "invalid_token");
    pb_auth_free(a);
}

static void test_jwt_hs256_valid(void **state)
{
    (void)state;
    struct pb_auth *a = auth_hs256();
    char *tok = jwt_hs256(claims("u42", 600, ",\"groups\":[\"ops\",\"dev\"]"));
    char *msg = native_login(tok);
    struct pb_identity id;
    login_ok(a, msg, &id);
    assert_string_equal(id.user, "u42");
    assert_int_equal(id.form, PB_FORM_NATIVE);
    assert_int_equal(id.ngroups, 2);
    assert_string_equal(id.groups[0], "ops");
    assert_string_equal(id.groups[1], "dev");
    pb_identity_clear(&id);
    free(msg);

    /* The token + event form verifies the token too. */
    msg = malloc(strlen(tok) + 64);
    sprintf(msg, "{\"token\":\"%s\",\"event\":\"task.progress\"}", tok);
    login_ok(a, msg, &id);
    assert_string_equal(id.user, "u42");
    assert_int_equal(id.form, PB_FORM_PLAIN);
    assert_int_equal(id.nevents, 1);
    assert_string_equal(id.events[0], "task.progress");
    pb_identity_clear(&id);
    free(msg);
    free(tok);

    /* No groups: valid, no groups; exp is kept in milliseconds. */
    tok = jwt_hs256("{\"sub\":\"u1\",\"exp\":4102444800}");
    msg = native_login(tok);
    login_ok(a, msg, &id);
    assert_string_equal(id.user, "u1");
    assert_int_equal(id.ngroups, 0);
    assert_true(id.exp_ms == INT64_C(4102444800000));
    pb_identity_clear(&id);
    free(msg);
    free(tok);

    /* No exp: refused while auth.jwt_require_exp is true (the default). */
    tok = jwt_hs256("{\"sub\":\"u1\"}");
    msg = native_login(tok);
    login_refused(a, msg, "invalid_token");
    free(msg);
    free(tok);

    /* A token whose sub is "*" is still not a user. */
    tok = jwt_hs256(claims("*", 600, NULL));
    msg = native_login(tok);
    login_refused(a, msg, "bad_user");
    free(msg);
    free(tok);
    pb_auth_free(a);
}

static void test_jwt_signature_and_alg(void **state)
{
    (void)state;
    struct pb_auth *a = auth_hs256();
    const char *payload = claims("u1", 600, NULL);

    char *tok = jwt_hmac("{\"alg\":\"HS256\"}", payload, "wrong", 5);
    token_refused(a, tok, "invalid_token");
    free(tok);

    /* alg none, with an empty and with a real signature. */
    char *input = signing_input("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload);
    tok = malloc(strlen(input) + 2);
    sprintf(tok, "%s.", input);
    token_refused(a, tok, "invalid_token");
    free(tok);
    free(input);
    tok = jwt_hmac("{\"alg\":\"none\"}", payload, SECRET, strlen(SECRET));
    token_refused(a, tok, "invalid_token");
    free(tok);
    tok = jwt_hmac("{\"alg\":\"hs256\"}", payload, SECRET, strlen(SECRET));
    token_refused(a, tok, "invalid_token");
    free(tok);
    tok = jwt_hmac("{\"typ\":\"JWT\"}", payload, SECRET, strlen(SECRET));
    token_refused(a, tok, "invalid_token");
    free(tok);
    /* RS256 when only a secret is configured. */
    tok = jwt_rs256(payload, keys.rsa);
    token_refused(a, tok, "invalid_token");
    free(tok);

    /* Payload swapped after signing. */
    char *good = jwt_hs256(payload);
    char *other = jwt_hs256(claims("admin", 600, NULL));
    char *dot1 = strchr(good, '.'), *dot2 = strrchr(good, '.');
    char *odot1 = strchr(other, '.'), *odot2 = strrchr(other, '.');
    tok = malloc(strlen(good) + strlen(other));
    sprintf(tok, "%.*s.%.*s%s", (int)(dot1 - good), good, (int)(odot2 - odot1 - 1), odot1 + 1,
            dot2);
    token_refused(a, tok, "invalid_token");
    free(tok);
    /* Signature truncated by one byte (42 base64url characters = 31 bytes). */
    token_ok(a, good);
    tok = strdup(good);
    tok[strlen(tok) - 1] = '\0';
    token_refused(a, tok, "invalid_token");
    free(tok);
    free(good);
    free(other);
    pb_auth_free(a);
}

static void test_jwt_time_claims(void **state)
{
    (void)state;
    struct pb_auth *a = auth_hs256();
    char *tok;

    tok = jwt_hs256(claims("u1", -60, NULL));
    token_refused(a, tok, "token_expired");
    free(tok);
    tok = jwt_hs256(claims("u1", -3600, NULL));
    token_refused(a, tok, "token_expired");
    free(tok);
    /* Within the 30 s leeway. */
    tok = jwt_hs256(claims("u1", -10, NULL));
    token_ok(a, tok);
    free(tok);
    /* exp and nbf must be finite NumericDates: 1e400 reads as infinity,
     * which would never expire. */
    const char *bad_dates[] = {
        "{\"sub\":\"u1\",\"exp\":\"soon\"}",      "{\"sub\":\"u1\",\"exp\":1e400}",
        "{\"sub\":\"u1\",\"exp\":-1e400}",        "{\"sub\":\"u1\",\"exp\":1e300}",
        "{\"sub\":\"u1\",\"exp\":-5}",            "{\"sub\":\"u1\",\"exp\":99999999999999999999999}",
        "{\"sub\":\"u1\",\"exp\":4102444800,\"nbf\":1e400}",
    };
    for (size_t i = 0; i < sizeof(bad_dates) / sizeof(bad_dates[0]); i++) {
        tok = jwt_hs256(bad_dates[i]);
        token_refused(a, tok, "invalid_token");
        free(tok);
    }

    char extra[64];
    snprintf(extra, sizeof(extra), ",\"nbf\":%lld", (long long)time(NULL) + 120);
    tok = jwt_hs256(claims("u1", 600, extra));
    token_refused(a, tok, "token_not_yet_valid");
    free(tok);
    snprintf(extra, sizeof(extra), ",\"nbf\":%lld", (long long)time(NULL) + 10);
    tok = jwt_hs256(claims("u1", 600, extra));
    token_ok(a, tok);
    free(tok);
    snprintf(extra, sizeof(extra), ",\"nbf\":%lld", (long long)time(NULL) - 100);
    tok = jwt_hs256(claims("u1", 600, extra));
    token_ok(a, tok);
    free(tok);
    /* Through the login message as well. */
    tok = jwt_hs256(claims("u1", -60, NULL));
    char *msg = native_login(tok);
    login_refused(a, msg, "token_expired");
    free(msg);
    free(tok);
    pb_auth_free(a);
}

static void test_jwt_issuer_audience(void **state)
{
    (void)state;
    struct pb_auth *a = auth_new((struct auth_opts){.mode = PB_AUTH_JWT,
                                                    .secret = SECRET,
                                                    .issuer = "https://id.example",
                                                    .audience = "pushbridge"});
    char *tok;
    tok = jwt_hs256(claims("u1", 600, ",\"iss\":\"https://id.example\",\"aud\":\"pushbridge\""));
    token_ok(a, tok);
    free(tok);
    tok = jwt_hs256(
        claims("u1", 600, ",\"iss\":\"https://id.example\",\"aud\":[\"other\",\"pushbridge\"]"));
    token_ok(a, tok);
    free(tok);

    tok = jwt_hs256(claims("u1", 600, ",\"iss\":\"https://evil.example\",\"aud\":\"pushbridge\""));
    token_refused(a, tok, "wrong_issuer");
    free(tok);
    tok = jwt_hs256(claims("u1", 600, ",\"aud\":\"pushbridge\""));
    token_refused(a, tok, "wrong_issuer");
    free(tok);
    tok = jwt_hs256(claims("u1", 600, ",\"iss\":\"https://id.example\",\"aud\":\"other\""));
    token_refused(a, tok, "wrong_audience");
    free(tok);
    tok = jwt_hs256(claims("u1", 600, ",\"iss\":\"https://id.example\",\"aud\":[\"other\"]"));
    token_refused(a, tok, "wrong_audience");
    free(tok);
    tok = jwt_hs256(claims("u1", 600, ",\"iss\":\"https://id.example\""));
    token_refused(a, tok, "wrong_audience");
    free(tok);
    pb_auth_free(a);

    /* Without issuer/audience settings the claims are not checked. */
    a = auth_hs256();
    tok = jwt_hs256(claims("u1", 600, ",\"iss\":\"anyone\",\"aud\":\"anything\""));
    token_ok(a, tok);
    free(tok);
    pb_auth_free(a);
}

static void test_jwt_malformed(void **state)
{
    (void)state;
    struct pb_auth *a = auth_hs256();
    static const char *const bad[] = {
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "..",
        "e30.e30.e30.",
        "eyJhbGciOiJIUzI1NiJ9.e30*.AAAA",
        "eyJhbGciOiJIUzI1NiJ9=.e30.AAAA",
        "eyJhbGciOiJIUzI1NiJ9.e3 0.AAAA",
        "eyJhbGciOiJIUzI1NiJ9.e30.A",
        "eyJhbGciOiJIUzI1NiJ9.e30+/.AAAA",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        token_refused(a, bad[i], "invalid_token");

    /* Correctly signed, but the claims are unusable. */
    static const char *const claims_bad[] = {
        "[1,2]",
        "\"sub\"",
        "{\"exp\":9999999999}",
        "{\"sub\":5}",
        "not json",
        "{\"sub\":\"u\",\"groups\":[1]}",
        "{\"sub\":\"u\",\"groups\":{\"a\":1}}",
    };
    for (size_t i = 0; i < sizeof(claims_bad) / sizeof(claims_bad[0]); i++) {
        char *tok = jwt_hs256(claims_bad[i]);
        token_refused(a, tok, "invalid_token");
        free(tok);
    }
    /* Header not JSON. */
    char *tok = jwt_hmac("not json", "{\"sub\":\"u\"}", SECRET, strlen(SECRET));
    token_refused(a, tok, "invalid_token");
    free(tok);
    pb_auth_free(a);
}

static void test_jwt_size_limit(void **state)
{
    (void)state;
    struct pb_auth *a = auth_hs256();
    /* Pad a claim so the whole token lands just under and just over 8 KiB. */
    char pad[8000];
    char extra[8100];
    memset(pad, 'p', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';

    size_t padlen = 5900; /* base64url grows by 4/3: about 8000 bytes of token */
    pad[padlen] = '\0';
    snprintf(extra, sizeof(extra), ",\"pad\":\"%s\"", pad);
    char *tok = jwt_hs256(claims("u1", 600, extra));
    assert_true(strlen(tok) <= PB_AUTH_MAX_TOKEN_BYTES);
    token_ok(a, tok);
    free(tok);

    memset(pad, 'p', sizeof(pad) - 1);
    padlen = 6300;
    pad[padlen] = '\0';
    snprintf(extra, sizeof(extra), ",\"pad\":\"%s\"", pad);
    tok = jwt_hs256(claims("u1", 600, extra));
    assert_true(strlen(tok) > PB_AUTH_MAX_TOKEN_BYTES);
    token_refused(a, tok, "invalid_token");
    free(tok);
    pb_auth_free(a);
}

/* ---- RS256 and ES256 ---- */

static void test_jwt_rs256(void **state)
{
    (void)state;
    struct pb_auth *a =
        auth_new((struct auth_opts){.mode = PB_AUTH_JWT, .public_key = keys.rsa_path});
    const char *payload = claims("rsa-user", 600, ",\"groups\":\"ops\"");
    char *tok = jwt_rs256(payload, keys.rsa);
    char *msg = native_login(tok);
    struct pb_identity id;
    login_ok(a, msg, &id);
    assert_string_equal(id.user, "rsa-user");
    assert_int_equal(id.ngroups, 1);
    assert_string_equal(id.groups[0], "ops");
    pb_identity_clear(&id);
    free(msg);
    free(tok);

    tok = jwt_rs256(payload, keys.rsa_other);
    token_refused(a, tok, "invalid_token");
    free(tok);
    /* The right key but the wrong algorithm names. */
    tok = jwt_pkey("{\"alg\":\"ES256\"}", payload, keys.rsa, 0);
    token_refused(a, tok, "invalid_token");
    free(tok);
    tok = jwt_es256(payload, keys.ec);
    token_refused(a, tok, "invalid_token");
    free(tok);
    tok = jwt_rs256(claims("rsa-user", -3600, NULL), keys.rsa);
    token_refused(a, tok, "token_expired");
    free(tok);
    pb_auth_free(a);
}

static void test_jwt_es256(void **state)
{
    (void)state;
    struct pb_auth *a =
        auth_new((struct auth_opts){.mode = PB_AUTH_JWT, .public_key = keys.ec_path});
    const char *payload = claims("ec-user", 600, NULL);
    /* ECDSA signatures differ each time and r or s may have leading zero bytes: sign
     * several times so that padding is exercised. */
    for (int i = 0; i < 16; i++) {
        char *tok = jwt_es256(payload, keys.ec);
        token_ok(a, tok);
        free(tok);
    }
    char *tok = jwt_es256(payload, keys.ec_other);
    token_refused(a, tok, "invalid_token");
    free(tok);
    /* A DER signature is not what JWS specifies. */
    tok = jwt_pkey("{\"alg\":\"ES256\"}", payload, keys.ec, 0);
    token_refused(a, tok, "invalid_token");
    free(tok);
    tok = jwt_pkey("{\"alg\":\"RS256\"}", payload, keys.ec, 1);
    token_refused(a, tok, "invalid_token");
    free(tok);
    pb_auth_free(a);
}

/* The classic confusion: an HS256 token whose HMAC key is the server's public key text. With
 * only a public key configured, no HS256 token may verify. */
static void test_jwt_algorithm_confusion(void **state)
{
    (void)state;
    struct pb_auth *a =
        auth_new((struct auth_opts){.mode = PB_AUTH_JWT, .public_key = keys.rsa_path});
    const char *payload = claims("admin", 600, NULL);
    char *tok = jwt_hmac("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, keys.rsa_pem,
                         strlen(keys.rsa_pem));
    token_refused(a, tok, "invalid_token");
    char *msg = native_login(tok);
    login_refused(a, msg, "invalid_token");
    free(msg);
    free(tok);
    /* Same with the PEM text minus its final newline. */
    tok = jwt_hmac("{\"alg\":\"HS256\"}", payload, keys.rsa_pem, strlen(keys.rsa_pem) - 1);
    token_refused(a, tok, "invalid_token");
    free(tok);
    pb_auth_free(a);
}

static void test_auth_new_errors(void **state)
{
    (void)state;
    struct pb_config cfg;
    char err[256] = "";
    assert_int_equal(pb_config_init(&cfg), 0);
    free(cfg.auth_jwt_public_key);
    cfg.auth_jwt_public_key = strdup("/nonexistent/pb-key.pem");
    assert_null(pb_auth_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/pb-key.pem"));

    char path[64];
    snprintf(path, sizeof(path), "/tmp/pb_test_auth_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "not a key\n", 10), 10);
    close(fd);
    free(cfg.auth_jwt_public_key);
    cfg.auth_jwt_public_key = strdup(path);
    err[0] = '\0';
    assert_null(pb_auth_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, path));
    unlink(path);
    pb_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_none_native_form),
        cmocka_unit_test(test_none_uid_form),
        cmocka_unit_test(test_none_token_event_form),
        cmocka_unit_test(test_none_refusals),
        cmocka_unit_test(test_single_event_name_checked_like_a_list),
        cmocka_unit_test(test_jwt_uid_login_disabled),
        cmocka_unit_test(test_jwt_hs256_valid),
        cmocka_unit_test(test_jwt_signature_and_alg),
        cmocka_unit_test(test_jwt_time_claims),
        cmocka_unit_test(test_jwt_issuer_audience),
        cmocka_unit_test(test_jwt_malformed),
        cmocka_unit_test(test_jwt_size_limit),
        cmocka_unit_test(test_jwt_rs256),
        cmocka_unit_test(test_jwt_es256),
        cmocka_unit_test(test_jwt_algorithm_confusion),
        cmocka_unit_test(test_auth_new_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

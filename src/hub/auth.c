/* Client login. The login message is small (bounded by ws.max_message_bytes)
 * so it is parsed with yajl's tree API. JWTs are checked with OpenSSL: the
 * algorithm comes from the configured key, never from the token alone, so
 * `alg: none` and RS256-key-as-HS256-secret confusion cannot verify. */
#include "pushbridge/hub/auth.h"

#include <errno.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yajl/yajl_tree.h>

#include "pushbridge/hub/authkeys.h"
#include "pushbridge/event/envelope.h"

/* Nesting allowed in login messages and JWT parts, far above any real one:
 * yajl frees its trees recursively, so depth must be bounded before parsing. */
#define MAX_JSON_DEPTH 32

struct pb_auth {
    int mode;
    char *secret;
    size_t secret_len;
    struct pb_auth_key keys[PB_AUTH_MAX_KEYS]; /* RS256/ES256: PEM or JWKS */
    int nkeys;
    int64_t leeway_s; /* clock skew tolerated on exp and nbf */
    int require_exp;  /* auth.jwt_require_exp: no exp, no login */
    char *issuer;
    char *audience;
};

/* yajl's accessor macros yield NULL for the wrong type, which the compiler
 * rightly refuses to pass to strcmp; these never do. */
static const char *str_of(yajl_val v)
{
    return YAJL_IS_STRING(v) ? v->u.string : "";
}

static const char *num_of(yajl_val v)
{
    return YAJL_IS_NUMBER(v) ? v->u.number.r : "";
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

struct pb_auth *pb_auth_new(const struct pb_config *cfg, char *errstr, size_t errlen)
{
    struct pb_auth *a = calloc(1, sizeof(*a));
    if (!a)
        goto oom;
    a->mode = cfg->auth_mode;
    a->leeway_s = cfg->auth_jwt_leeway_s;
    a->require_exp = cfg->auth_jwt_require_exp;
    if (cfg->auth_jwt_secret) {
        a->secret = strdup(cfg->auth_jwt_secret);
        if (!a->secret)
            goto oom;
        a->secret_len = strlen(a->secret);
    }
    a->issuer = dup_or_null(cfg->auth_jwt_issuer);
    a->audience = dup_or_null(cfg->auth_jwt_audience);
    if ((cfg->auth_jwt_issuer && !a->issuer) || (cfg->auth_jwt_audience && !a->audience))
        goto oom;
    if (cfg->auth_jwt_public_key) {
        a->nkeys = pb_auth_keys_load(cfg->auth_jwt_public_key, a->keys, PB_AUTH_MAX_KEYS, errstr,
                                     errlen);
        if (a->nkeys < 0) {
            a->nkeys = 0;
            goto fail;
        }
    }
    return a;
oom:
    snprintf(errstr, errlen, "out of memory");
fail:
    pb_auth_free(a);
    return NULL;
}

void pb_auth_free(struct pb_auth *a)
{
    if (!a)
        return;
    if (a->secret)
        OPENSSL_cleanse(a->secret, a->secret_len);
    free(a->secret);
    pb_auth_keys_free(a->keys, a->nkeys);
    free(a->issuer);
    free(a->audience);
    free(a);
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void pb_identity_clear(struct pb_identity *id)
{
    free(id->user);
    free_strv(id->groups, id->ngroups);
    free_strv(id->events, id->nevents);
    memset(id, 0, sizeof(*id));
}

/* yajl's tree keeps strings NUL-terminated, so "a\u0000b" would silently
 * become "a": any text that could decode to a NUL is refused outright. */
static int may_hold_nul(const char *text, size_t len)
{
    return memchr(text, '\0', len) || memmem(text, len, "\\u0000", 6);
}

static int refuse(const char **code, char *msg, size_t msglen, const char *c, const char *m)
{
    *code = c;
    snprintf(msg, msglen, "%s", m);
    return -1;
}

/* ---- JWT ---- */

static int verify_hs256(const struct pb_auth *a, const char *signing, size_t slen,
                        const unsigned char *sig, size_t siglen)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (!a->secret || siglen != 32)
        return -1;
    if (!HMAC(EVP_sha256(), a->secret, (int)a->secret_len, (const unsigned char *)signing, slen,
              mac, &maclen))
        return -1;
    return maclen == 32 && CRYPTO_memcmp(mac, sig, 32) == 0 ? 0 : -1;
}

/* ES256 signatures are raw r||s (RFC 7518 3.4); OpenSSL wants DER. */
static unsigned char *es256_to_der(const unsigned char *sig, size_t siglen, size_t *derlen)
{
    if (siglen != 64)
        return NULL;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL);
    BIGNUM *s = BN_bin2bn(sig + 32, 32, NULL);
    unsigned char *der = NULL;
    if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        return NULL;
    }
    int len = i2d_ECDSA_SIG(es, &der);
    ECDSA_SIG_free(es);
    if (len <= 0)
        return NULL;
    *derlen = (size_t)len;
    return der;
}

static int verify_pkey(const struct pb_auth_key *key, const char *signing, size_t slen,
                       const unsigned char *sig, size_t siglen)
{
    unsigned char *der = NULL;
    if (key->type == EVP_PKEY_EC) {
        der = es256_to_der(sig, siglen, &siglen);
        if (!der)
            return -1;
        sig = der;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key->pkey) == 1 &&
             EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)signing, slen) == 1;
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    return ok ? 0 : -1;
}

/* A list of 1..max names of 1..256 bytes; with one_ok, a lone string is
 * a list of one. */
static int str_list(yajl_val v, char ***out, size_t *n, size_t max, int one_ok)
{
    if (one_ok && YAJL_IS_STRING(v)) {
        if (pb_id_problem(str_of(v), strlen(str_of(v))))
            return -1;
        *out = calloc(1, sizeof(char *));
        if (!*out || !(**out = strdup(str_of(v))))
            return -1;
        *n = 1;
        return 0;
    }
    if (!YAJL_IS_ARRAY(v) || v->u.array.len > max)
        return -1;
    *out = calloc(v->u.array.len ? v->u.array.len : 1, sizeof(char *));
    if (!*out)
        return -1;
    for (size_t i = 0; i < v->u.array.len; i++) {
        yajl_val s = v->u.array.values[i];
        if (!YAJL_IS_STRING(s) || pb_id_problem(str_of(s), strlen(str_of(s))))
            return -1;
        if (!((*out)[i] = strdup(str_of(s))))
            return -1;
        (*n)++;
    }
    return 0;
}

static yajl_val member(yajl_val obj, const char *name)
{
    const char *path[] = {name, NULL};
    return yajl_tree_get(obj, path, yajl_t_any);
}

/* RFC 7519 4: duplicate claim names must be refused (or the last taken);
 * yajl keeps both and yajl_tree_get finds the first, while another reader
 * of the same token may take the last. Objects are small (8 KiB tokens). */
static int has_duplicate_member(yajl_val obj)
{
    size_t n = obj->u.object.len;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(obj->u.object.keys[i], obj->u.object.keys[j]) == 0)
                return 1;
    return 0;
}

static int aud_matches(yajl_val aud, const char *want)
{
    if (YAJL_IS_STRING(aud))
        return strcmp(str_of(aud), want) == 0;
    if (YAJL_IS_ARRAY(aud))
        for (size_t i = 0; i < aud->u.array.len; i++)
            if (YAJL_IS_STRING(aud->u.array.values[i]) &&
                strcmp(str_of(aud->u.array.values[i]), want) == 0)
                return 1;
    return 0;
}

/* Latest NumericDate accepted, 9999-12-31T23:59:59Z: "exp": 1e400 reads as
 * infinity (never expires), and anything near it overflows milliseconds. */
#define MAX_NUMERIC_DATE 253402300799.0

/* A JWT NumericDate (RFC 7519 2): a finite number of seconds, 0 to
 * MAX_NUMERIC_DATE. yajl marks a number its strtod could not read exactly
 * (ERANGE, as for 1e400) by leaving YAJL_NUMBER_DOUBLE_VALID unset. */
static int numeric_date(yajl_val v, double *out)
{
    if (!YAJL_IS_NUMBER(v) || !(v->u.number.flags & YAJL_NUMBER_DOUBLE_VALID))
        return -1;
    double d = v->u.number.d;
    if (!isfinite(d) || d < 0 || d > MAX_NUMERIC_DATE)
        return -1;
    *out = d;
    return 0;
}

/* exp and nbf, within the leeway; exp is kept in the identity so that the
 * connection lives no longer than its token (tokenlife.c). */
static int check_times(const struct pb_auth *a, yajl_val claims, struct pb_identity *id,
                       const char **code, char *msg, size_t msglen)
{
    double now = (double)time(NULL), exp = 0, nbf = 0;
    yajl_val expv = member(claims, "exp"), nbfv = member(claims, "nbf");
    if ((expv && numeric_date(expv, &exp)) || (nbfv && numeric_date(nbfv, &nbf)))
        return refuse(code, msg, msglen, "invalid_token",
                      "exp and nbf must be numbers of seconds from 0 to 253402300799");
    if (!expv && a->require_exp)
        return refuse(code, msg, msglen, "invalid_token",
                      "the token has no exp claim (auth.jwt_require_exp)");
    if (expv && now > exp + (double)a->leeway_s)
        return refuse(code, msg, msglen, "token_expired", "the token has expired");
    if (nbfv && now + (double)a->leeway_s < nbf)
        return refuse(code, msg, msglen, "token_not_yet_valid", "the token is not valid yet");
    /* 0 means "no exp"; a token that expired at the epoch is long refused. */
    id->exp_ms = expv ? (int64_t)(exp * 1000.0) : 0;
    return 0;
}

static int check_claims(const struct pb_auth *a, yajl_val claims, struct pb_identity *id,
                        const char **code, char *msg, size_t msglen)
{
    if (check_times(a, claims, id, code, msg, msglen))
        return -1;
    yajl_val iss = member(claims, "iss");
    if (a->issuer && (!YAJL_IS_STRING(iss) || strcmp(str_of(iss), a->issuer) != 0))
        return refuse(code, msg, msglen, "wrong_issuer", "the token's issuer is not accepted");
    if (a->audience && !aud_matches(member(claims, "aud"), a->audience))
        return refuse(code, msg, msglen, "wrong_audience", "the token's audience is not accepted");
    yajl_val sub = member(claims, "sub");
    if (!YAJL_IS_STRING(sub))
        return refuse(code, msg, msglen, "invalid_token", "the token has no sub claim");
    if (!(id->user = strdup(str_of(sub))))
        return refuse(code, msg, msglen, "internal", "out of memory");
    yajl_val groups = member(claims, "groups");
    if (groups && str_list(groups, &id->groups, &id->ngroups, PB_AUTH_MAX_GROUPS, 1))
        return refuse(code, msg, msglen, "invalid_token",
                      "the groups claim must be a list of at most 64 names of 1 to 256 bytes");
    return 0;
}

/* The signature over the signing input (header.payload), by the key the
 * token's alg names: 0, or -1 with the refusal in (code, msg). The key
 * decides which algorithm may be used: an HS256 token is only checked
 * against the shared secret, never against a public key. */
static int verify_signature(const struct pb_auth *a, yajl_val hdr, const char *algs,
                            const char *signing, size_t slen, const unsigned char *sig,
                            size_t siglen, const char **code, char *msg, size_t msglen)
{
    int verified = -1;
    if (strcmp(algs, "HS256") == 0 && a->secret)
        verified = verify_hs256(a, signing, slen, sig, siglen);
    else if (strcmp(algs, "RS256") == 0 || strcmp(algs, "ES256") == 0) {
        int type = algs[0] == 'R' ? EVP_PKEY_RSA : EVP_PKEY_EC;
        yajl_val kid = member(hdr, "kid");
        int tried = 0;
        for (int i = 0; i < a->nkeys && verified; i++) {
            const struct pb_auth_key *key = &a->keys[i];
            /* A key that names no kid (a PEM file, a JWK without one) is
             * tried whatever kid the token names: identity providers send
             * one with every token. */
            if (key->type != type ||
                (YAJL_IS_STRING(kid) && key->kid[0] && strcmp(key->kid, str_of(kid)) != 0))
                continue;
            tried++;
            verified = verify_pkey(key, signing, slen, sig, siglen);
        }
        if (!tried)
            return refuse(code, msg, msglen, "invalid_token",
                          "no configured key matches the token's algorithm and kid");
    } else {
        return refuse(code, msg, msglen, "invalid_token", "the token's algorithm is not accepted");
    }
    if (verified)
        return refuse(code, msg, msglen, "invalid_token", "the token's signature does not verify");
    return 0;
}

int pb_auth_verify_jwt(const struct pb_auth *a, const char *token, size_t len,
                       struct pb_identity *id, const char **code, char *msg, size_t msglen)
{
    if (len > PB_AUTH_MAX_TOKEN_BYTES)
        return refuse(code, msg, msglen, "invalid_token", "the token is longer than 8 KiB");
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
        return refuse(code, msg, msglen, "invalid_token", "the token is not a JWT");

    int rc = -1;
    size_t hlen, plen, siglen;
    unsigned char *header = pb_b64url_decode(token, (size_t)(dot1 - token), &hlen);
    unsigned char *payload = pb_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &plen);
    unsigned char *sig = pb_b64url_decode(dot2 + 1, len - (size_t)(dot2 + 1 - token), &siglen);
    yajl_val hdr = NULL, claims = NULL;
    char err[128];
    if (!header || !payload || !sig) {
        refuse(code, msg, msglen, "invalid_token", "the token is not valid base64url");
        goto out;
    }
    if (!pb_json_too_deep((const char *)header, hlen, MAX_JSON_DEPTH))
        hdr = yajl_tree_parse((const char *)header, err, sizeof(err));
    yajl_val alg = hdr ? member(hdr, "alg") : NULL;
    if (!YAJL_IS_STRING(alg)) {
        refuse(code, msg, msglen, "invalid_token", "the token header names no algorithm");
        goto out;
    }
    /* RFC 7515 4.1.11: a token whose crit names extensions we do not know
     * must be refused, and we know none. */
    if (member(hdr, "crit")) {
        refuse(code, msg, msglen, "invalid_token",
               "the token names critical header extensions (crit), which are not supported");
        goto out;
    }
    if (verify_signature(a, hdr, str_of(alg), token, (size_t)(dot2 - token), sig, siglen, code,
                         msg, msglen))
        goto out;
    if (!pb_json_surrogates_paired((const char *)payload, plen)) {
        refuse(code, msg, msglen, "invalid_token",
               "the token's claims hold an unpaired surrogate escape (\\ud800)");
        goto out;
    }
    if (!may_hold_nul((const char *)payload, plen) &&
        !pb_json_too_deep((const char *)payload, plen, MAX_JSON_DEPTH))
        claims = yajl_tree_parse((const char *)payload, err, sizeof(err));
    if (!YAJL_IS_OBJECT(claims)) {
        refuse(code, msg, msglen, "invalid_token", "the token's claims are not a JSON object");
        goto out;
    }
    /* Checked once the signature holds, so that an unsigned header cannot
     * buy quadratic work. */
    if (has_duplicate_member(hdr) || has_duplicate_member(claims)) {
        refuse(code, msg, msglen, "invalid_token",
               "the token's header or claims name a member twice");
        goto out;
    }
    rc = check_claims(a, claims, id, code, msg, msglen);
out:
    yajl_tree_free(hdr);
    yajl_tree_free(claims);
    free(header);
    free(payload);
    free(sig);
    return rc;
}

/* ---- login messages ---- */

/* The same rule as Kafka keys and HTTP user IDs (pb_id_problem), and not
 * a broadcast target. */
static int valid_user(const char *u)
{
    return !pb_id_problem(u, strlen(u)) && strcmp(u, "*") != 0 && strncmp(u, "group:", 6) != 0;
}

/* A uid may be a JSON string or integer; numbers keep their JSON text. */
static char *id_text(yajl_val v)
{
    if (YAJL_IS_STRING(v))
        return strdup(str_of(v));
    if (YAJL_IS_INTEGER(v))
        return strdup(num_of(v));
    return NULL;
}

static int token_user(const struct pb_auth *a, yajl_val token, struct pb_identity *id,
                      const char **code, char *msg, size_t msglen)
{
    if (!YAJL_IS_STRING(token) || !*str_of(token))
        return refuse(code, msg, msglen, "missing_token", "the login needs a non-empty token");
    const char *t = str_of(token);
    if (a->mode == PB_AUTH_JWT)
        return pb_auth_verify_jwt(a, t, strlen(t), id, code, msg, msglen);
    /* auth.mode none trusts the client: the token is the user. */
    if (!(id->user = strdup(t)))
        return refuse(code, msg, msglen, "internal", "out of memory");
    return 0;
}

/* "recent": N (SPEC 9), an integer 0..100; absent or null asks for none. */
static int login_recent(yajl_val v, struct pb_identity *id, const char **code, char *msg,
                        size_t msglen)
{
    if (!v || YAJL_IS_NULL(v))
        return 0;
    if (!YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) < 0 ||
        YAJL_GET_INTEGER(v) > PB_AUTH_MAX_RECENT)
        return refuse(code, msg, msglen, "bad_recent",
                      "recent must be an integer from 0 to 100 (how many recent notifications)");
    id->recent = (int)YAJL_GET_INTEGER(v);
    return 0;
}

static int login_fields(const struct pb_auth *a, yajl_val obj, struct pb_identity *id,
                        const char **code, char *msg, size_t msglen)
{
    yajl_val type = member(obj, "type");
    yajl_val events = member(obj, "events");
    yajl_val event = member(obj, "event");
    if (type) {
        if (!YAJL_IS_STRING(type) || strcmp(str_of(type), "auth") != 0)
            return refuse(code, msg, msglen, "bad_login",
                          "the first message must be {\"type\":\"auth\",\"token\":...}");
        id->form = PB_FORM_NATIVE;
        if (token_user(a, member(obj, "token"), id, code, msg, msglen))
            return -1;
    } else if (member(obj, "uid")) {
        if (a->mode != PB_AUTH_NONE)
            return refuse(code, msg, msglen, "uid_login_disabled",
                          "login by uid is only accepted when auth.mode is none");
        id->form = PB_FORM_PLAIN;
        if (!(id->user = id_text(member(obj, "uid"))))
            return refuse(code, msg, msglen, "bad_user", "uid must be a string or an integer");
    } else if (member(obj, "token")) {
        id->form = PB_FORM_PLAIN;
        if (token_user(a, member(obj, "token"), id, code, msg, msglen))
            return -1;
    } else {
        return refuse(code, msg, msglen, "bad_login",
                      "the first message must log in: {\"type\":\"auth\",\"token\":...}, "
                      "{\"uid\":...} or {\"token\":...,\"event\":...}");
    }
    if (!valid_user(id->user))
        return refuse(code, msg, msglen, "bad_user",
                      "the user must be 1 to 256 bytes of UTF-8 and not \"*\" or \"group:...\"");
    /* "events" is a list (native form), "event" one name (seed form). */
    if (events && !YAJL_IS_NULL(events) &&
        str_list(events, &id->events, &id->nevents, PB_AUTH_MAX_EVENTS, 0))
        return refuse(code, msg, msglen, "bad_events",
                      "events must be a list of at most 64 event names of 1 to 256 bytes");
    if (!events && event && !YAJL_IS_NULL(event) &&
        str_list(event, &id->events, &id->nevents, 1, 1))
        return refuse(code, msg, msglen, "bad_events", "event must be a name of 1 to 256 bytes");
    return id->form == PB_FORM_NATIVE ? login_recent(member(obj, "recent"), id, code, msg, msglen)
                                      : 0;
}

/* A copy with a terminating NUL for yajl_tree_parse; NULL when the text
 * could hold a NUL byte, or on OOM. */
static char *cstring(const char *text, size_t len)
{
    if (may_hold_nul(text, len) || pb_json_too_deep(text, len, MAX_JSON_DEPTH))
        return NULL;
    char *copy = malloc(len + 1);
    if (copy) {
        memcpy(copy, text, len);
        copy[len] = '\0';
    }
    return copy;
}

int pb_auth_refresh(const struct pb_auth *a, const char *text, size_t len, const char *user,
                    struct pb_identity *id, const char **code, char *msg, size_t msglen)
{
    memset(id, 0, sizeof(*id));
    char *copy = a->mode == PB_AUTH_JWT ? cstring(text, len) : NULL;
    if (!copy)
        return 1;
    yajl_val obj = yajl_tree_parse(copy, NULL, 0);
    free(copy);
    yajl_val type = YAJL_IS_OBJECT(obj) ? member(obj, "type") : NULL;
    int rc = 1;
    if (YAJL_IS_STRING(type) && strcmp(str_of(type), "refresh") == 0) {
        yajl_val token = member(obj, "token");
        if (!YAJL_IS_STRING(token) || !*str_of(token))
            rc = refuse(code, msg, msglen, "missing_token", "a refresh needs a non-empty token");
        else
            rc = pb_auth_verify_jwt(a, str_of(token), strlen(str_of(token)), id, code, msg,
                                    msglen);
        /* A connection keeps its user: a token for anyone else is refused. */
        if (rc == 0 && strcmp(id->user, user) != 0)
            rc = refuse(code, msg, msglen, "wrong_user",
                        "the new token is for another user (sub)");
    }
    yajl_tree_free(obj);
    if (rc)
        pb_identity_clear(id);
    return rc;
}

int pb_auth_is_ping(const char *text, size_t len)
{
    char *copy = cstring(text, len);
    if (!copy)
        return 0;
    yajl_val obj = yajl_tree_parse(copy, NULL, 0);
    free(copy);
    yajl_val type = YAJL_IS_OBJECT(obj) ? member(obj, "type") : NULL;
    int ping = YAJL_IS_STRING(type) && strcmp(str_of(type), "ping") == 0;
    yajl_tree_free(obj);
    return ping;
}

int pb_auth_login(const struct pb_auth *a, const char *text, size_t len, struct pb_identity *id,
                  const char **code, char *msg, size_t msglen)
{
    memset(id, 0, sizeof(*id));
    if (len > PB_AUTH_MAX_LOGIN_BYTES)
        return refuse(code, msg, msglen, "bad_login", "a login message is at most 32 KiB");
    if (memchr(text, '\0', len))
        return refuse(code, msg, msglen, "bad_login", "the login message is not JSON");
    if (may_hold_nul(text, len))
        return refuse(code, msg, msglen, "bad_user",
                      "user IDs and tokens must not contain NUL characters");
    /* yajl decodes "bob\ud800" to "bob?": two users would become one. */
    if (!pb_json_surrogates_paired(text, len))
        return refuse(code, msg, msglen, "bad_user",
                      "the login message holds an unpaired surrogate escape (\\ud800)");
    char *copy = cstring(text, len);
    if (!copy)
        return refuse(code, msg, msglen, "bad_login",
                      "the login message is not JSON, or nests too deeply");
    char err[128];
    yajl_val obj = yajl_tree_parse(copy, err, sizeof(err));
    free(copy);
    int rc;
    if (!YAJL_IS_OBJECT(obj))
        rc = refuse(code, msg, msglen, "bad_login", "the login message must be a JSON object");
    else
        rc = login_fields(a, obj, id, code, msg, msglen);
    yajl_tree_free(obj);
    if (rc)
        pb_identity_clear(id);
    return rc;
}

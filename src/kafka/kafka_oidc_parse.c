/* The token endpoint's answer, parsed (kafka_oidc.c fetches it): an HTTP/1.1
 * response (Content-Length, chunked, or up to the close) and its JSON body
 * (RFC 6749 §5.1 access_token/expires_in, §5.2 error/error_description),
 * and the JWT's sub and exp claims. Outside input: bounded by
 * PB_OIDC_RESPONSE_MAX (the caller's buffer) and fuzzed (fuzz_oidc). */
#include "pushbridge/kafka/kafka_oidc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yajl/yajl_tree.h>

static const char *find(const char *s, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(s + i, needle, n) == 0)
            return s + i;
    return NULL;
}

/* The value of header name (case-insensitive) in the header block
 * [h, end), without leading blanks; NULL when absent. *vlen its length. */
static const char *header(const char *h, const char *end, const char *name, size_t *vlen)
{
    size_t n = strlen(name);
    while (h < end) {
        const char *eol = find(h, (size_t)(end - h), "\r\n");
        if (!eol)
            eol = end;
        if ((size_t)(eol - h) > n && h[n] == ':' && strncasecmp(h, name, n) == 0) {
            const char *v = h + n + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            *vlen = (size_t)(eol - v);
            return v;
        }
        if (eol == end)
            break;
        h = eol + 2;
    }
    return NULL;
}

static int copy_body(const char *src, size_t n, char **body, size_t *body_len, char *err,
                     size_t errlen)
{
    char *b = malloc(n + 1);
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(b, src, n);
    b[n] = '\0';
    *body = b;
    *body_len = n;
    return 0;
}

/* Chunked transfer coding (RFC 9112 §7.1) of [p, end): 1 while incomplete. */
static int dechunk(const char *p, const char *end, char **body, size_t *body_len, char *err,
                   size_t errlen)
{
    char *out = malloc((size_t)(end - p) + 1);
    size_t n = 0;
    if (!out) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (;;) {
        const char *eol = find(p, (size_t)(end - p), "\r\n");
        if (!eol) {
            free(out);
            return 1;
        }
        size_t size = 0, digits = 0;
        for (; p < eol && isxdigit((unsigned char)*p); p++, digits++) {
            if (size > PB_OIDC_RESPONSE_MAX) /* keeps size from overflowing */
                break;
            size = size * 16 + (size_t)(isdigit((unsigned char)*p) ? *p - '0'
                                                                   : (tolower(*p) - 'a' + 10));
        }
        if (!digits || size > PB_OIDC_RESPONSE_MAX || (p < eol && *p != ';' && *p != ' ')) {
            free(out);
            snprintf(err, errlen, "malformed chunked body");
            return -1;
        }
        p = eol + 2;
        if (size == 0)
            break; /* trailers, if any, are not needed */
        if ((size_t)(end - p) < size + 2) {
            free(out);
            return 1;
        }
        memcpy(out + n, p, size);
        n += size;
        p += size + 2;
    }
    out[n] = '\0';
    *body = out;
    *body_len = n;
    return 0;
}

/* "HTTP/1.x DDD ...": the status, or -1. */
static int status_line(const char *buf, size_t len)
{
    if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ')
        return -1;
    int st = 0;
    for (int i = 9; i < 12; i++) {
        if (!isdigit((unsigned char)buf[i]))
            return -1;
        st = st * 10 + buf[i] - '0';
    }
    return len > 12 && buf[12] != ' ' && buf[12] != '\r' ? -1 : st;
}

int pb_oidc_parse_http(const char *buf, size_t len, int eof, int *status, char **body,
                       size_t *body_len, char *err, size_t errlen)
{
    const char *hend = find(buf, len, "\r\n\r\n");
    if (!hend) {
        if (!eof)
            return 1;
        snprintf(err, errlen, len ? "the response ended inside its headers" : "no response");
        return -1;
    }
    if ((*status = status_line(buf, (size_t)(hend - buf))) < 0) {
        snprintf(err, errlen, "not an HTTP/1.x response");
        return -1;
    }
    const char *p = hend + 4, *end = buf + len;
    size_t vlen;
    const char *te = header(buf, hend + 2, "Transfer-Encoding", &vlen);
    if (te && find(te, vlen, "chunked")) {
        int rc = dechunk(p, end, body, body_len, err, errlen);
        if (rc == 1 && eof) {
            snprintf(err, errlen, "the response ended inside its chunked body");
            return -1;
        }
        return rc;
    }
    const char *cl = header(buf, hend + 2, "Content-Length", &vlen);
    if (cl) {
        size_t n = 0, i = 0;
        for (; i < vlen && isdigit((unsigned char)cl[i]) && n <= PB_OIDC_RESPONSE_MAX; i++)
            n = n * 10 + (size_t)(cl[i] - '0');
        if (!i || i < vlen || n > PB_OIDC_RESPONSE_MAX) {
            snprintf(err, errlen, "bad Content-Length");
            return -1;
        }
        if ((size_t)(end - p) < n) {
            if (!eof)
                return 1;
            snprintf(err, errlen, "the response ended before its Content-Length");
            return -1;
        }
        return copy_body(p, n, body, body_len, err, errlen);
    }
    if (!eof)
        return 1;
    return copy_body(p, (size_t)(end - p), body, body_len, err, errlen);
}

/* A base64 or base64url character's value, or -1. */
static int b64_value(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-' || c == '+')
        return 62;
    return c == '_' || c == '/' ? 63 : -1;
}

/* base64url without padding (RFC 7515 §2) into out (NUL-terminated);
 * -1 on a character outside the alphabet or an output too long. */
static int b64url_decode(const char *s, size_t n, char *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n && s[i] != '='; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o + 1 >= cap)
                return -1;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = '\0';
    return 0;
}

/* The JWT's claims object (header.claims.signature), NULL when the token is
 * no JWT: the bridge reads sub and exp; the broker checks the signature. */
static yajl_val jwt_claims(const char *token)
{
    const char *d1 = strchr(token, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d2)
        return NULL;
    size_t n = (size_t)(d2 - d1 - 1);
    char *json = malloc(n + 1);
    yajl_val v = NULL;
    if (json && b64url_decode(d1 + 1, n, json, n + 1) == 0)
        v = yajl_tree_parse(json, NULL, 0);
    free(json);
    if (v && !YAJL_IS_OBJECT(v)) {
        yajl_tree_free(v);
        v = NULL;
    }
    return v;
}

static const char *str_field(yajl_val obj, const char *key)
{
    const char *path[] = {key, NULL};
    yajl_val v = yajl_tree_get(obj, path, yajl_t_string);
    return v ? YAJL_GET_STRING(v) : NULL;
}

static int num_field(yajl_val obj, const char *key, int64_t *out)
{
    const char *path[] = {key, NULL};
    yajl_val v = yajl_tree_get(obj, path, yajl_t_number);
    if (!v || !YAJL_IS_INTEGER(v))
        return -1;
    *out = YAJL_GET_INTEGER(v);
    return 0;
}

/* A refusal: the status and what the IdP said (RFC 6749 §5.2). */
static void refusal(int status, yajl_val root, char *err, size_t errlen)
{
    const char *e = root ? str_field(root, "error") : NULL;
    const char *d = root ? str_field(root, "error_description") : NULL;
    snprintf(err, errlen, "HTTP %d%s%.100s%s%.200s", status, e ? ": " : "", e ? e : "",
             d ? ": " : "", d ? d : "");
}

static int take_token(yajl_val root, int64_t now_ms, struct pb_oidc_token *tok, char *err,
                      size_t errlen)
{
    const char *at = str_field(root, "access_token");
    if (!at || !*at) {
        snprintf(err, errlen, "the response has no access_token");
        return -1;
    }
    int64_t expires_in = -1, exp = -1;
    yajl_val claims = jwt_claims(at);
    const char *sub = claims ? str_field(claims, "sub") : NULL;
    snprintf(tok->principal, sizeof(tok->principal), "%s", sub ? sub : "");
    if (num_field(root, "expires_in", &expires_in) == 0 && expires_in > 0 &&
        expires_in < INT64_MAX / 1000)
        tok->expires_in_ms = expires_in * 1000;
    else if (claims && num_field(claims, "exp", &exp) == 0 && exp > 0 &&
             exp < INT64_MAX / 1000)
        tok->expires_in_ms = exp * 1000 - now_ms;
    else
        tok->expires_in_ms = -1;
    if (claims)
        yajl_tree_free(claims);
    if (tok->expires_in_ms <= 0) {
        snprintf(err, errlen, "the token has no lifetime (no expires_in, no exp claim) "
                              "or has expired");
        return -1;
    }
    if (!(tok->access_token = strdup(at))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int pb_oidc_parse_token(int status, const char *body, size_t len, int64_t now_ms,
                        struct pb_oidc_token *tok, char *err, size_t errlen)
{
    memset(tok, 0, sizeof(*tok));
    /* yajl_tree_parse reads up to a NUL: the body is copied with one (it is
     * at most PB_OIDC_RESPONSE_MAX), and a NUL inside it, which would hide
     * the rest, makes it no JSON. */
    char *json = len <= PB_OIDC_RESPONSE_MAX && !memchr(body, '\0', len) ? malloc(len + 1) : NULL;
    yajl_val root = NULL;
    if (json) {
        memcpy(json, body, len);
        json[len] = '\0';
        root = yajl_tree_parse(json, NULL, 0);
        free(json);
    }
    if (root && !YAJL_IS_OBJECT(root)) {
        yajl_tree_free(root);
        root = NULL;
    }
    int rc = -1;
    if (status != 200)
        refusal(status, root, err, errlen);
    else if (!root)
        snprintf(err, errlen, "the response is not a JSON object");
    else
        rc = take_token(root, now_ms, tok, err, errlen);
    if (root)
        yajl_tree_free(root);
    return rc;
}

void pb_oidc_token_free(struct pb_oidc_token *tok)
{
    free(tok->access_token);
    tok->access_token = NULL;
}

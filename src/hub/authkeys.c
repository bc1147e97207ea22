/* JWT verification keys from PEM or JWKS files, turned into OpenSSL keys
 * once at start. Only what RS256 and ES256 need is accepted: RSA keys, and
 * EC keys on P-256; anything else in a JWKS is skipped with its reason. */
#include "pushbridge/hub/authkeys.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "pushbridge/event/envelope.h"
#include "pushbridge/core/log.h"

#define MAX_KEY_FILE_BYTES (1024 * 1024)

static int b64url_val(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '-')
        return 62;
    if (ch == '_')
        return 63;
    return -1;
}

unsigned char *pb_b64url_decode(const char *s, size_t n, size_t *outlen)
{
    if (n % 4 == 1)
        return NULL;
    unsigned char *out = malloc(n * 3 / 4 + 2);
    if (!out)
        return NULL;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_val((unsigned char)s[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

static int is_p256(EVP_PKEY *pkey)
{
    char group[64];
    size_t len = 0;
    return EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                          &len) == 1 &&
           strcmp(group, "prime256v1") == 0;
}

/* Checks a loaded key is one RS256 or ES256 can use; fills its type. */
static const char *usable(struct pb_auth_key *k)
{
    k->type = EVP_PKEY_base_id(k->pkey);
    if (k->type == EVP_PKEY_RSA)
        return NULL;
    if (k->type == EVP_PKEY_EC)
        return is_p256(k->pkey) ? NULL : "an EC key not on P-256 (ES256 needs P-256)";
    return "neither an RSA nor an EC key";
}

static const char *member_str(yajl_val obj, const char *name)
{
    const char *path[] = {name, NULL};
    yajl_val v = yajl_tree_get(obj, path, yajl_t_string);
    return v ? v->u.string : NULL;
}

static BIGNUM *b64url_bn(const char *s)
{
    size_t len;
    unsigned char *bytes = s ? pb_b64url_decode(s, strlen(s), &len) : NULL;
    if (!bytes)
        return NULL;
    BIGNUM *bn = BN_bin2bn(bytes, (int)len, NULL);
    free(bytes);
    return bn;
}

/* Builds a public key from OpenSSL parameters (the OpenSSL 3 way). */
static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static EVP_PKEY *jwk_rsa(yajl_val jwk)
{
    BIGNUM *n = b64url_bn(member_str(jwk, "n")), *e = b64url_bn(member_str(jwk, "e"));
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    if (n && e && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
        pkey = from_params("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return pkey;
}

static EVP_PKEY *jwk_ec(yajl_val jwk)
{
    const char *crv = member_str(jwk, "crv"), *xs = member_str(jwk, "x"),
               *ys = member_str(jwk, "y");
    if (!crv || strcmp(crv, "P-256") != 0 || !xs || !ys)
        return NULL;
    size_t xl, yl;
    unsigned char *x = pb_b64url_decode(xs, strlen(xs), &xl);
    unsigned char *y = pb_b64url_decode(ys, strlen(ys), &yl);
    EVP_PKEY *pkey = NULL;
    if (x && y && xl == 32 && yl == 32) {
        unsigned char point[65] = {0x04}; /* uncompressed: 04 || x || y */
        memcpy(point + 1, x, 32);
        memcpy(point + 33, y, 32);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        if (bld &&
            OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)))
            pkey = from_params("EC", bld);
        OSSL_PARAM_BLD_free(bld);
    }
    free(x);
    free(y);
    return pkey;
}

/* One JWK -> keys[*n]; a key we cannot use is skipped and logged. */
static void jwk_add(const char *path, yajl_val jwk, struct pb_auth_key *keys, int *n, int max)
{
    const char *kty = member_str(jwk, "kty"), *kid = member_str(jwk, "kid");
    const char *use = member_str(jwk, "use");
    if (*n >= max) {
        pb_warn("%s: more than %d keys; the rest are ignored", path, max);
        return;
    }
    if (use && strcmp(use, "sig") != 0)
        return;
    EVP_PKEY *pkey = NULL;
    if (kty && strcmp(kty, "RSA") == 0)
        pkey = jwk_rsa(jwk);
    else if (kty && strcmp(kty, "EC") == 0)
        pkey = jwk_ec(jwk);
    if (!pkey) {
        pb_warn("%s: skipping key %s: not an RSA or P-256 EC public key", path,
                kid ? kid : "(no kid)");
        return;
    }
    struct pb_auth_key *k = &keys[(*n)++];
    memset(k, 0, sizeof(*k));
    k->pkey = pkey;
    snprintf(k->kid, sizeof(k->kid), "%s", kid ? kid : "");
    usable(k);
}

static char *slurp(const char *path, char *errstr, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(errstr, errlen, "auth.jwt_public_key: cannot open %s: %s", path,
                 strerror(errno));
        return NULL;
    }
    char *buf = malloc(MAX_KEY_FILE_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_KEY_FILE_BYTES + 1, fp) : 0;
    fclose(fp);
    if (!buf || n > MAX_KEY_FILE_BYTES) {
        free(buf);
        snprintf(errstr, errlen, "auth.jwt_public_key: %s is larger than 1 MiB", path);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static int load_jwks(const char *path, const char *text, struct pb_auth_key *keys, int max,
                     char *errstr, size_t errlen)
{
    char err[160];
    yajl_val root = pb_json_too_deep(text, strlen(text), 16) ? NULL
                                                              : yajl_tree_parse(text, err, sizeof(err));
    if (!YAJL_IS_OBJECT(root)) {
        yajl_tree_free(root);
        snprintf(errstr, errlen, "auth.jwt_public_key: %s is not a JWKS JSON object", path);
        return -1;
    }
    const char *kpath[] = {"keys", NULL};
    yajl_val list = yajl_tree_get(root, kpath, yajl_t_array);
    int n = 0;
    if (list)
        for (size_t i = 0; i < list->u.array.len; i++)
            jwk_add(path, list->u.array.values[i], keys, &n, max);
    else
        jwk_add(path, root, keys, &n, max);
    yajl_tree_free(root);
    if (n == 0) {
        snprintf(errstr, errlen, "auth.jwt_public_key: %s holds no usable RSA or P-256 key",
                 path);
        return -1;
    }
    return n;
}

static int load_pem(const char *path, const char *text, struct pb_auth_key *keys, char *errstr,
                    size_t errlen)
{
    BIO *bio = BIO_new_mem_buf(text, -1);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!pkey) {
        snprintf(errstr, errlen, "auth.jwt_public_key: %s holds no PEM public key or JWKS",
                 path);
        return -1;
    }
    memset(&keys[0], 0, sizeof(keys[0]));
    keys[0].pkey = pkey;
    const char *why = usable(&keys[0]);
    if (why) {
        snprintf(errstr, errlen, "auth.jwt_public_key: %s is %s", path, why);
        EVP_PKEY_free(pkey);
        keys[0].pkey = NULL;
        return -1;
    }
    return 1;
}

int pb_auth_keys_load(const char *path, struct pb_auth_key *keys, int max, char *errstr,
                      size_t errlen)
{
    char *text = slurp(path, errstr, errlen);
    if (!text)
        return -1;
    const char *p = text;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    int n = *p == '{' ? load_jwks(path, text, keys, max, errstr, errlen)
                      : load_pem(path, text, keys, errstr, errlen);
    free(text);
    return n;
}

void pb_auth_keys_free(struct pb_auth_key *keys, int n)
{
    for (int i = 0; i < n; i++) {
        EVP_PKEY_free(keys[i].pkey);
        keys[i].pkey = NULL;
    }
}

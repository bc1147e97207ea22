/* Fuzzes the WebSocket login message and the JWT verifier (HS256 secret
 * and auth.mode none), the first thing any stranger on the internet sends.
 * An input holding a NUL byte is also read as HEADER NUL CLAIMS, which is
 * signed with the configured secret so that the header and claims parsers
 * behind the signature check are reached too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "pushbridge/hub/auth.h"

static struct pb_auth *auth_jwt, *auth_none;

static void setup(void)
{
    static struct pb_config jwt, none;
    char err[256];
    pb_config_init(&jwt);
    jwt.auth_jwt_secret = strdup("fuzz-secret");
    jwt.auth_jwt_issuer = strdup("issuer");
    pb_config_init(&none);
    none.auth_mode = PB_AUTH_NONE;
    auth_jwt = pb_auth_new(&jwt, err, sizeof(err));
    auth_none = pb_auth_new(&none, err, sizeof(err));
    if (!auth_jwt || !auth_none)
        abort();
}

static size_t b64url(const uint8_t *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = tab[v >> 6 & 63];
        if (i + 2 < n)
            out[o++] = tab[v & 63];
    }
    return o;
}

/* HEADER NUL CLAIMS -> a token signed with the fuzz secret. */
static void signed_token(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    if (!nul || size > 6000)
        return;
    size_t hlen = (size_t)(nul - data), clen = size - hlen - 1;
    char *tok = malloc(size * 2 + 64);
    if (!tok)
        return;
    size_t n = b64url(data, hlen, tok);
    tok[n++] = '.';
    n += b64url(nul + 1, clen, tok + n);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), "fuzz-secret", 11, (unsigned char *)tok, n, mac, &maclen);
    tok[n++] = '.';
    n += b64url(mac, maclen, tok + n);

    struct pb_identity id;
    const char *code;
    char msg[256];
    memset(&id, 0, sizeof(id));
    if (pb_auth_verify_jwt(auth_jwt, tok, n, &id, &code, msg, sizeof(msg)) == 0)
        pb_identity_clear(&id);
    pb_identity_clear(&id);
    free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!auth_jwt)
        setup();
    struct pb_identity id;
    const char *code;
    char msg[256];
    struct pb_auth *modes[] = {auth_jwt, auth_none};
    for (int i = 0; i < 2; i++) {
        if (pb_auth_login(modes[i], (const char *)data, size, &id, &code, msg, sizeof(msg)) == 0)
            pb_identity_clear(&id);
    }
    memset(&id, 0, sizeof(id));
    if (pb_auth_verify_jwt(auth_jwt, (const char *)data, size, &id, &code, msg, sizeof(msg)) == 0)
        pb_identity_clear(&id);
    pb_identity_clear(&id);
    signed_token(data, size);
    return 0;
}

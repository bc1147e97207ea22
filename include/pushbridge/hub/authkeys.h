/* Verification keys for JWT login: a PEM public key, or a JWKS document
 * (RFC 7517) holding several, so that keys can be rotated by publishing the
 * next one beside the current one. Loaded once at start. */
#ifndef PB_AUTHKEYS_H
#define PB_AUTHKEYS_H

#include <openssl/evp.h>
#include <stddef.h>

/* Bound: keys kept from one JWKS file. */
#define PB_AUTH_MAX_KEYS 16

/* One key. Owned by the pb_auth that loaded it; freed with it. */
struct pb_auth_key {
    char kid[128];  /* "" when the key names none (PEM) */
    EVP_PKEY *pkey;
    int type;       /* EVP_PKEY_RSA (RS256) or EVP_PKEY_EC (ES256, P-256 only) */
};

/* Loads path (PEM, or JSON: {"keys":[...]} or one JWK) into keys. Returns
 * how many were loaded (>= 1), or -1 with errstr naming the file and cause. */
int pb_auth_keys_load(const char *path, struct pb_auth_key *keys, int max, char *errstr,
                      size_t errlen);
void pb_auth_keys_free(struct pb_auth_key *keys, int n);

/* Decodes unpadded base64url (RFC 7515) into a new NUL-terminated buffer;
 * NULL when s is not base64url or on OOM. */
unsigned char *pb_b64url_decode(const char *s, size_t n, size_t *outlen);

#endif

/* Client login: the first text message of a WebSocket connection, in one of
 * the three forms of SPEC section 2, turned into an identity. In auth.mode
 * jwt the token is verified (HS256/RS256/ES256 through OpenSSL); in none the
 * client is trusted. */
#ifndef PB_AUTH_H
#define PB_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "pushbridge/core/config.h"

enum pb_login_form {
    PB_FORM_NATIVE = 0, /* {"type":"auth",...}: enveloped frames, welcome */
    PB_FORM_PLAIN = 1,  /* {"uid"} or {"token","event"}: data alone */
};

/* Bounds on what one login may claim. */
#define PB_AUTH_MAX_GROUPS 64
#define PB_AUTH_MAX_EVENTS 64
#define PB_AUTH_MAX_TOKEN_BYTES 8192
#define PB_AUTH_MAX_RECENT 100 /* = PB_STORE_MAX_RECENT */
/* Bound: a login message, checked before parsing. The largest legitimate
 * one (an 8 KiB token, 64 event names of 256 bytes) is about 26 KiB. */
#define PB_AUTH_MAX_LOGIN_BYTES (32 * 1024)

/* Who a connection is. Owned by its connection once logged in; freed by
 * pb_identity_clear (the hub does so when the connection closes). */
struct pb_identity {
    char *user;
    char **groups;
    size_t ngroups;
    char **events; /* filter; none = every event of the user */
    size_t nevents;
    int form;      /* enum pb_login_form */
    int recent;    /* recent notifications asked for (native "recent": 0..PB_AUTH_MAX_RECENT) */
    int64_t exp_ms; /* the JWT's exp, wall-clock ms since the epoch; 0 = none */
};

/* Verifier state built from the config at start (keys loaded once). */
struct pb_auth;

/* NULL with errstr naming the cause (e.g. the key file) on failure. */
struct pb_auth *pb_auth_new(const struct pb_config *cfg, char *errstr, size_t errlen);
void pb_auth_free(struct pb_auth *a);

/* Parses and checks one login message. Returns 0 and fills id, or -1 with
 * code (a short machine-readable word) and msg (a sentence for the user). */
int pb_auth_login(const struct pb_auth *a, const char *text, size_t len, struct pb_identity *id,
                  const char **code, char *msg, size_t msglen);

/* Verifies a JWT in the configured mode; on success sets the user (and
 * groups). Exposed for tests and for the token+event form. */
int pb_auth_verify_jwt(const struct pb_auth *a, const char *token, size_t len,
                       struct pb_identity *id, const char **code, char *msg, size_t msglen);

void pb_identity_clear(struct pb_identity *id);

/* A client message after login that may be {"type":"refresh","token":JWT}
 * (SPEC 2, token lifetime). Returns 1 when it is not a refresh message; 0
 * when it is and the token verifies for `user` (id gets the new token's
 * user, groups and exp); -1 with code and msg when it is refused: a bad
 * token, or one for another user (code "wrong_user"). */
int pb_auth_refresh(const struct pb_auth *a, const char *text, size_t len, const char *user,
                    struct pb_identity *id, const char **code, char *msg, size_t msglen);

/* 1 when a client message after login is {"type":"ping"} (any spacing,
 * other members ignored). */
int pb_auth_is_ping(const char *text, size_t len);

#endif

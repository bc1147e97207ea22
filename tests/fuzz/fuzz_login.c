/* Fuzzes the WebSocket login message and the JWT verifier (HS256 secret
 * and auth.mode none), the first thing any stranger on the internet sends. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pushbridge/auth.h"

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
    return 0;
}

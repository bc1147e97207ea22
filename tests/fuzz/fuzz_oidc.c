/* Fuzzes what the bridge reads from an identity provider's token endpoint
 * (kafka_oidc_parse.c): the HTTP/1.1 response, fed growing prefixes as the
 * reads would, then its JSON body and the JWT inside. Nothing may crash,
 * read outside the buffer, or return a body longer than the response. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pushbridge/kafka/kafka_oidc.h"

static void parse_all(const char *buf, size_t len, int eof)
{
    int status = 0;
    char *body = NULL, err[256];
    size_t blen = 0;
    int rc = pb_oidc_parse_http(buf, len, eof, &status, &body, &blen, err, sizeof(err));
    if (rc != 0)
        return;
    if (blen > len || status < 0 || status > 999 || body[blen] != '\0')
        __builtin_trap();
    struct pb_oidc_token tok;
    if (pb_oidc_parse_token(status, body, blen, 1700000000000, &tok, err, sizeof(err)) == 0) {
        if (!tok.access_token || tok.expires_in_ms <= 0)
            __builtin_trap();
        pb_oidc_token_free(&tok);
    }
    free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > PB_OIDC_RESPONSE_MAX)
        return 0;
    size_t cut = (size_t)data[0] * (size - 1) / 255; /* a read that stopped early */
    const char *buf = (const char *)data + 1;
    parse_all(buf, cut, 0);
    parse_all(buf, size - 1, 0);
    parse_all(buf, size - 1, 1);
    /* The body alone, as JSON (the HTTP framing aside). */
    struct pb_oidc_token tok;
    char err[64];
    if (pb_oidc_parse_token(200, buf, size - 1, 1700000000000, &tok, err, sizeof(err)) == 0)
        pb_oidc_token_free(&tok);
    return 0;
}

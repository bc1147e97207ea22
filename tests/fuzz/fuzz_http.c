/* Fuzzes the internal listener's HTTP framing: a request head, then (when
 * the head is whole and says chunked) the rest as a chunked body fed in
 * pieces whose sizes come from the input. Nothing may crash, read outside
 * the buffer, or decode more than the body bound. */
#include <stdint.h>
#include <string.h>

#include "pushbridge/api/httpparse.h"

#define MAX_BODY 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] % 17 + 1; /* piece size for the body */
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;

    struct pb_http_head h;
    const char *why = NULL;
    int rc = pb_http_head_parse(buf, len, &h, &why);
    if (rc != 1)
        return 0;
    if (h.head_len > len || h.target_len == 0 || h.target[0] != '/')
        __builtin_trap();
    if (!h.chunked)
        return 0;

    struct pb_buf body;
    pb_buf_init(&body, MAX_BODY + 1);
    struct pb_chunked ck;
    memset(&ck, 0, sizeof(ck));
    /* Bytes arrive step at a time; what the decoder leaves is kept. */
    size_t have = h.head_len, fed = h.head_len;
    while (fed < len) {
        fed = fed + step < len ? fed + step : len;
        size_t used = 0;
        rc = pb_chunked_feed(&ck, buf + have, fed - have, &used, &body, MAX_BODY);
        if (used > fed - have || body.len > MAX_BODY)
            __builtin_trap();
        have += used;
        if (rc != 0)
            break;
    }
    pb_buf_free(&body);
    return 0;
}

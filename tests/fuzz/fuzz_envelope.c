/* Fuzzes the Kafka envelope: value bytes -> parse -> target from a key
 * carved off the input -> both frame formats. Nothing may crash or leak.
 * Differential: the fast path (envelope_fast.c) and the full parse must
 * agree on every input, the verdict and every member. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event_same.h"

#include "pushbridge/event/envelope.h"
#include "pushbridge/event/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* First byte: key length (0 = no key); then the key; the rest is the value. */
    size_t keylen = size ? data[0] : 0;
    if (keylen > size - (size ? 1 : 0))
        keylen = size ? size - 1 : 0;
    const char *key = size ? (const char *)data + 1 : NULL;
    const char *value = key ? key + keylen : (const char *)data;
    size_t vlen = size ? size - 1 - keylen : 0;

    for (int flags = 0; flags <= PB_ENV_HTTP_ALIASES; flags++) {
        struct pb_event ev, full;
        pb_event_init(&ev);
        pb_event_init(&full);
        int verdict = pb_envelope_parse(value, vlen, flags, &ev);
        if (verdict != pb_envelope_parse(value, vlen, flags | PB_ENV_FULL_PARSE, &full) ||
            (verdict == PB_DROP_NONE && !pb_test_event_same(&ev, &full)))
            abort(); /* the fast path decided otherwise than the full parse */
        pb_event_clear(&full);
        if (verdict == PB_DROP_NONE &&
            pb_event_set_target(&ev, keylen ? key : NULL, keylen) == PB_DROP_NONE) {
            pb_frame_unref(pb_frame_event_native(&ev, flags, flags ? "1.0.abc-0~1" : NULL));
            pb_frame_unref(pb_frame_event_plain(&ev));
        }
        pb_event_clear(&ev);
    }
    return 0;
}

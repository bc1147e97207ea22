/* Fuzzes the HTTP push inputs: JSON bodies (single and batch, with the
 * HTTP aliases) and the /send query or form. */
#include <stdint.h>
#include <stdlib.h>

#include "pushbridge/event/envelope.h"
#include "pushbridge/api/http.h"

static int item(const char *el, size_t len, void *ud)
{
    (void)ud;
    struct pb_event ev;
    pb_event_init(&ev);
    if (pb_envelope_parse(el, len, PB_ENV_HTTP_ALIASES, &ev) == PB_DROP_NONE)
        pb_event_set_target(&ev, NULL, 0);
    pb_event_clear(&ev);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    char detail[160];
    if (pb_json_validate(body, size, detail, sizeof(detail)) == 0) {
        if (pb_json_is_array(body, size))
            pb_json_array_each(body, size, item, NULL);
        else
            item(body, size, NULL);
    }
    static const char *const names[] = {"uid", "message"};
    for (int i = 0; i < 2; i++) {
        char *v = NULL;
        size_t vlen;
        if (pb_http_form_value(body, size, names[i], &v, &vlen) == 0)
            free(v);
        if (pb_http_query_value(body, size, names[i], &v, &vlen) == 0)
            free(v);
    }
    return 0;
}

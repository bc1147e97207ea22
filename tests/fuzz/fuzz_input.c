/* Fuzzes the rule-driven reader (SPEC 12): one of a few kafka.inputs rules
 * (every format and kind of source), headers chosen by a bit mask, a key and
 * a value carved off the input -> pb_input_read -> both frame formats.
 * Nothing may crash, leak or read outside the message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pushbridge/core/config_inputs.h"
#include "pushbridge/event/frame.h"
#include "pushbridge/event/input.h"

static const char rules_text[] =
    "[{\"topic\":\"a\",\"format\":\"json\",\"target\":\"field:/customer/id\","
    "\"event\":\"field:/kind\",\"id\":\"field:/order_id\",\"task\":\"field:/job/0\","
    "\"final\":{\"field:/status\":[\"done\",true,1]}},"
    "{\"topic\":\"b\",\"format\":\"cloudevents\",\"target\":\"ce:subject\","
    "\"task\":\"ce:jobid\",\"final\":{\"ce:state\":[\"done\"]}},"
    "{\"topic\":\"c\",\"format\":\"json\",\"target\":\"header:user\",\"event\":\"header:event\","
    "\"id\":\"header:id\"},"
    "{\"topic\":\"d\",\"target\":\"field:/data/a~1b/~0\"},"
    "{\"topic\":\"e\",\"format\":\"json\",\"target\":\"group:admins\",\"event\":\"order\"},"
    "{\"topic\":\"f\",\"format\":\"cloudevents\"},"
    "{\"topic\":\"g\",\"format\":\"json\",\"target\":\"field:\"}]";

static struct pb_inputs rules;

/* Headers: bit i of the mask turns header i on. The "user" header's value
 * comes from the input. */
struct hdrs {
    unsigned mask;
    const char *user;
    size_t user_len;
};

static const struct {
    const char *name, *value;
} table[] = {
    {"ce_specversion", "1.0"}, {"ce_type", "t.x"},     {"ce_id", "e-1"},
    {"ce_subject", "ann"},     {"content-type", "application/json"},
    {"content-type", "text/plain"}, {"content-type", "application/cloudevents+json"},
    {"event", "ev"},           {"id", "i-1"},          {"user", NULL},
};

static int header(void *ud, const char *name, const char **val, size_t *len)
{
    const struct hdrs *h = ud;
    int found = 0;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (!(h->mask & (1u << i)) || strcmp(table[i].name, name) != 0)
            continue;
        *val = table[i].value ? table[i].value : h->user;
        *len = table[i].value ? strlen(table[i].value) : h->user_len;
        found = 1; /* the last one wins, as rd_kafka_header_get_last */
    }
    return found;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!rules.n) {
        char err[256];
        if (pb_inputs_parse_text(&rules, rules_text, err, sizeof(err)))
            abort();
    }
    if (size < 4)
        return 0;
    /* rule, header mask (2 bytes), key length; then the key, the user
     * header (8 bytes at most), the value. */
    const struct pb_input_rule *rule = &rules.items[data[0] % rules.n];
    struct hdrs h = {.mask = (unsigned)data[1] | (unsigned)data[2] << 8};
    size_t keylen = data[3] % 32, at = 4;
    if (keylen > size - at)
        keylen = size - at;
    const char *key = (const char *)data + at;
    at += keylen;
    h.user_len = size - at < 8 ? size - at : 8;
    h.user = (const char *)data + at;
    at += h.user_len;
    /* The value in a copy of its own size, so ASan sees any overread. */
    size_t vlen = size - at;
    char *value = malloc(vlen ? vlen : 1);
    if (!value)
        return 0;
    memcpy(value, data + at, vlen);

    struct pb_input_msg msg = {.topic = "fuzz", .key = keylen ? key : NULL, .key_len = keylen,
                               .value = value, .len = vlen, .header = header, .ud = &h};
    struct pb_event ev;
    char failed[300];
    pb_event_init(&ev);
    if (pb_input_read(rule, &msg, &ev, failed, sizeof(failed)) == PB_DROP_NONE) {
        pb_frame_unref(pb_frame_event_native(&ev, 0, NULL));
        pb_frame_unref(pb_frame_event_native(&ev, 1, "1.0.abc-0~1"));
        pb_frame_unref(pb_frame_event_plain(&ev));
    }
    pb_event_clear(&ev);
    free(value);
    return 0;
}

/* Fuzzes a client's "resume" value (SPEC 7), which is outside input: a store
 * holding a few users' events on a few streams, broadcasts and HTTP pushes
 * is asked to resume from the bytes given. Nothing may crash or leak, and a
 * pos the store wrote itself must always resume. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pushbridge/core/config.h"
#include "pushbridge/core/metrics.h"
#include "pushbridge/store/store.h"

static struct pb_config cfg;
static struct pb_metrics m;
static struct pb_store *st;
static char known[PB_POS_MAX_LEN];

static void add(const char *topic, int32_t partition, int64_t offset, const char *target)
{
    struct pb_event ev;
    pb_event_init(&ev);
    ev.target_kind = strcmp(target, "*") == 0 ? PB_TARGET_ALL : PB_TARGET_USER;
    ev.target = target;
    ev.target_len = strlen(target);
    ev.ts_ms = pb_now_ms();
    ev.task = offset % 2 ? "job" : NULL;
    ev.topic = topic;
    ev.partition = partition;
    ev.offset = offset;
    if (!topic || !pb_store_seen(st, topic, partition, offset))
        pb_store_record(st, &ev);
}

static void count(const struct pb_event *ev, const char *pos, void *ud)
{
    (void)ev;
    (void)pos;
    ++*(long *)ud;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!st) {
        if (pb_config_init(&cfg))
            abort();
        pb_metrics_init(&m);
        if (!(st = pb_store_new(&cfg, &m)))
            abort();
        for (int i = 0; i < 20; i++) {
            add("events", i % 3, i, i % 5 ? "u1" : "*");
            add("orders", 0, i, "u2");
            add(NULL, 0, 0, "u1");
            if (i == 9)
                pb_store_pos(st, "u1", 2, pb_now_ms(), known);
        }
    }
    long n = 0;
    pb_store_resume(st, "u1", 2, (const char *)data, size, count, &n);
    pb_store_resume(st, "nobody", 6, (const char *)data, size, count, &n);
    if (!pb_store_resume(st, "u1", 2, known, strlen(known), count, &n))
        abort(); /* its own pos, well inside the history */
    return 0;
}

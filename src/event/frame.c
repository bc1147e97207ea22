/* Outgoing frames. Native frames are written in one pass into an exactly
 * sized buffer (the length is computed first), so framing an event costs
 * one allocation whatever the number of connections it goes to. */
#include "pushbridge/event/frame.h"

#include <stdlib.h>
#include <string.h>

#include "pushbridge/core/buf.h"

/* RFC 6455 5.2: FIN + text opcode, no mask bit, then a 7-, 16- or 64-bit
 * length. Written at the end of the headroom, right before the payload. */
static void write_header(struct pb_frame *f)
{
    unsigned char h[10];
    uint32_t n;
    h[0] = 0x81;
    if (f->len < 126) {
        h[1] = (unsigned char)f->len;
        n = 2;
    } else if (f->len <= 0xffff) {
        h[1] = 126;
        h[2] = (unsigned char)(f->len >> 8);
        h[3] = (unsigned char)f->len;
        n = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)f->len >> (56 - 8 * i));
        n = 10;
    }
    f->hdr_len = n;
    memcpy(f->buf + PB_FRAME_HEADROOM - n, h, n);
}

/* A frame with one reference and room for len payload bytes; its header
 * is left to the caller. */
static struct pb_frame *frame_alloc(size_t len)
{
    struct pb_frame *f = malloc(sizeof(*f) + PB_FRAME_HEADROOM + len);
    if (!f)
        return NULL;
    f->refs = 1;
    f->source = 0;
    f->ts_ms = 0;
    f->task_key = 0;
    f->final = 0;
    f->rebuilt = 0;
    f->len = len;
    return f;
}

struct pb_frame *pb_frame_new(size_t len)
{
    struct pb_frame *f = frame_alloc(len);
    if (f)
        write_header(f);
    return f;
}

/* Frames cross threads (the consumer frames, the workers' queues hold and
 * release them), so the count is atomic: an increment needs no ordering, the
 * last release must see every other thread's use of the bytes first. */
void pb_frame_ref(struct pb_frame *f)
{
    __atomic_fetch_add(&f->refs, 1, __ATOMIC_RELAXED);
}

void pb_frame_unref(struct pb_frame *f)
{
    if (f && __atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(f);
}

struct pb_frame *pb_frame_raw(const unsigned char *wire, size_t len)
{
    /* Header and payload both count as header: no payload bytes are
     * queued, and the bytes go out exactly as given. */
    if (len > PB_FRAME_HEADROOM)
        return NULL;
    struct pb_frame *f = frame_alloc(0);
    if (!f)
        return NULL;
    f->hdr_len = (uint32_t)len;
    memcpy(f->buf + PB_FRAME_HEADROOM - len, wire, len);
    return f;
}

struct pb_frame *pb_frame_from(const char *text, size_t len)
{
    struct pb_frame *f = pb_frame_new(len);
    if (f)
        memcpy(pb_frame_payload(f), text, len);
    return f;
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

/* What coalescing compares: the same task of one user. */
static void mark_task(struct pb_frame *f, const struct pb_event *ev)
{
    f->ts_ms = ev->ts_ms;
    f->final = ev->final;
    if (!ev->task)
        return;
    uint64_t x = 1469598103934665603ULL;
    for (const char *p = ev->task; *p; p++) {
        x ^= (unsigned char)*p;
        x *= 1099511628211ULL;
    }
    f->task_key = x ? x : 1;
}

struct pb_frame *pb_frame_event_native(const struct pb_event *ev, int mark, const char *pos)
{
    static const char head[] = "{\"type\":\"event\",\"event\":";
    static const char id_key[] = ",\"id\":";
    static const char pos_key[] = ",\"pos\":\"";
    static const char task_key[] = ",\"task\":";
    static const char final_key[] = ",\"final\":true";
    static const char snap[] = ",\"snapshot\":true";
    static const char recent[] = ",\"recent\":true";
    static const char data_key[] = ",\"data\":";
    const char *name = pb_event_name(ev);
    size_t name_len = strlen(name);
    size_t id_len = ev->id ? strlen(ev->id) : 0;

    size_t len = sizeof(head) - 1 + pb_json_string_len(name, name_len) + sizeof(data_key) - 1 +
                 ev->data_len + 1;
    if (ev->id)
        len += sizeof(id_key) - 1 + pb_json_string_len(ev->id, id_len);
    if (mark == PB_FRAME_SNAPSHOT)
        len += sizeof(snap) - 1;
    else if (mark == PB_FRAME_RECENT)
        len += sizeof(recent) - 1;
    size_t task_len = ev->task ? strlen(ev->task) : 0;
    if (ev->task)
        len += sizeof(task_key) - 1 + pb_json_string_len(ev->task, task_len);
    if (ev->final)
        len += sizeof(final_key) - 1;
    size_t pos_len = pos ? strlen(pos) : 0; /* pos text needs no escaping (pos.c) */
    if (pos)
        len += sizeof(pos_key) - 1 + pos_len + 1;

    struct pb_frame *f = pb_frame_new(len);
    if (!f)
        return NULL;
    char *p = (char *)pb_frame_payload(f);
    p = PUT_LIT(p, head);
    pb_json_string_write(p, name, name_len);
    p += pb_json_string_len(name, name_len);
    if (ev->id) {
        p = PUT_LIT(p, id_key);
        pb_json_string_write(p, ev->id, id_len);
        p += pb_json_string_len(ev->id, id_len);
    }
    if (ev->task) {
        p = PUT_LIT(p, task_key);
        pb_json_string_write(p, ev->task, task_len);
        p += pb_json_string_len(ev->task, task_len);
    }
    if (ev->final)
        p = PUT_LIT(p, final_key);
    if (pos) {
        p = PUT_LIT(p, pos_key);
        p = put(p, pos, pos_len);
        *p++ = '"';
    }
    if (mark == PB_FRAME_SNAPSHOT)
        p = PUT_LIT(p, snap);
    else if (mark == PB_FRAME_RECENT)
        p = PUT_LIT(p, recent);
    p = PUT_LIT(p, data_key);
    p = put(p, ev->data, ev->data_len);
    *p = '}';
    mark_task(f, ev);
    return f;
}

struct pb_frame *pb_frame_event_plain(const struct pb_event *ev)
{
    struct pb_frame *f = ev->data_is_string ? pb_frame_from(ev->data_text, ev->data_text_len)
                                            : pb_frame_from(ev->data, ev->data_len);
    if (f)
        mark_task(f, ev);
    return f;
}

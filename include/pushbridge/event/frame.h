/* An outgoing WebSocket text frame, built once per event and format and
 * shared by every connection queue it is for (ref-counted, no copies). A
 * server's frames are not masked, so the WebSocket header is the same for
 * every connection: it is written once, at creation, right in front of the
 * payload, and header + payload go to the socket as they are. A frame is
 * immutable once queued; its reference count is the one field threads share
 * (the consumer makes it, the workers' queues hold it). */
#ifndef PB_FRAME_H
#define PB_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "pushbridge/event/envelope.h"

/* Room for the longest WebSocket header (2 + 8 bytes), rounded up. */
#define PB_FRAME_HEADROOM 16

/* Owned jointly by the queues that hold it, on any worker; the last
 * pb_frame_unref frees it. */
struct pb_frame {
    uint32_t refs; /* atomic: pb_frame_ref / pb_frame_unref only */
    uint32_t source;      /* metrics source index (topic or HTTP), for delivered counts */
    int64_t ts_ms;        /* when the event was produced, for the latency histogram */
    /* ws.slow_client coalesce: a hash of the event's task (0: none), and
     * whether it was the task's final update (never coalesced away). */
    uint64_t task_key;
    int final;
    /* A snapshot frame of an update the rebuild at start read (hub.c,
     * pb_hub_keep): it replaces the same task's such frame still queued for
     * its connection, so that a queue takes each task's latest state, not
     * every update the rebuild reads (conns.c). */
    uint8_t rebuilt;
    size_t len;           /* payload bytes */
    uint32_t hdr_len;     /* WebSocket header bytes, just before the payload */
    unsigned char buf[];  /* PB_FRAME_HEADROOM + len */
};

static inline unsigned char *pb_frame_payload(struct pb_frame *f)
{
    return f->buf + PB_FRAME_HEADROOM;
}

/* The bytes that go on the wire: the WebSocket header, then the payload. */
static inline const unsigned char *pb_frame_wire(const struct pb_frame *f)
{
    return f->buf + PB_FRAME_HEADROOM - f->hdr_len;
}

static inline size_t pb_frame_wire_len(const struct pb_frame *f)
{
    return f->hdr_len + f->len;
}

/* A text frame with room for len payload bytes (its header already written)
 * and one reference. NULL on OOM. */
struct pb_frame *pb_frame_new(size_t len);
void pb_frame_ref(struct pb_frame *f);
void pb_frame_unref(struct pb_frame *f);

/* What a native event frame is marked as: a live event, a task snapshot
 * after login (SPEC 7), or a recent notification after login (SPEC 9). */
enum pb_frame_mark { PB_FRAME_LIVE = 0, PB_FRAME_SNAPSHOT = 1, PB_FRAME_RECENT = 2 };

/* {"type":"event","event":E,"id":I,"task":T,"final":true,"pos":P,
 * "snapshot":true,"data":<raw>}: id, task and final only when the envelope
 * had them, pos unless NULL, "snapshot":true or "recent":true as mark
 * (enum pb_frame_mark) says. */
struct pb_frame *pb_frame_event_native(const struct pb_event *ev, int mark, const char *pos);
/* What seed-form clients get: a string's text, or the data's JSON text. */
struct pb_frame *pb_frame_event_plain(const struct pb_event *ev);
/* A whole small frame given as wire bytes (at most PB_FRAME_HEADROOM: a
 * ping), with no payload counted against the queue. NULL if too long/OOM. */
struct pb_frame *pb_frame_raw(const unsigned char *wire, size_t len);
/* A frame holding exactly these bytes (welcome, error, pong). */
struct pb_frame *pb_frame_from(const char *text, size_t len);

#endif

/* The event envelope: bytes from Kafka (or an HTTP push body) in, a validated
 * event out. A one-pass fast path (envelope_fast.h) reads the usual
 * envelope; anything else goes to yajl, which validates the JSON and decodes
 * the string fields. The producer's `data` is kept as the exact bytes it
 * sent, never re-serialised. */
#ifndef PB_ENVELOPE_H
#define PB_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "pushbridge/core/drop.h"

enum pb_target_kind { PB_TARGET_NONE = 0, PB_TARGET_USER, PB_TARGET_ALL, PB_TARGET_GROUP };

/* Longest user ID or group name accepted, in bytes (SPEC: 1-256). */
#define PB_MAX_ID_BYTES 256

/* Parse options. */
#define PB_ENV_HTTP_ALIASES 1 /* HTTP bodies: userId/uid, message, and group */
#define PB_ENV_FULL_PARSE 2   /* no fast path (envelope_fast.c): tests and fuzzing */

/* One parsed event. Strings are owned by the event and freed by
 * pb_event_clear(); `data` points into the input buffer, which must outlive
 * the event (the Kafka message, the HTTP body). Lives on the stack of the
 * caller for the duration of one delivery. */
struct pb_event {
    char *event;     /* event name; NULL means "message" */
    char *id;        /* optional */
    char *user_id;   /* optional in the body; the target when there is no key */
    char *task;      /* optional task ID (SPEC section 7) */
    char *group;     /* optional, broadcast bodies */
    int final;       /* "final": true */
    const char *data;       /* raw JSON text of data ("null" when absent) */
    size_t data_len;
    char *data_owned;       /* owned storage of data when it is not in the input
                             * (a CloudEvent's text data, encoded as JSON) */
    char *data_text;        /* decoded text when data is a JSON string */
    size_t data_text_len;
    int data_is_string;

    int target_kind;        /* enum pb_target_kind, set by pb_event_set_target */
    const char *target;     /* user ID or group name */
    size_t target_len;

    int64_t ts_ms;          /* Kafka timestamp or HTTP receive time, for latency */
    /* Where the event stands (SPEC 7 "pos"): its Kafka topic, partition and
     * offset; topic NULL for a local HTTP push (the store numbers those). */
    const char *topic;
    int32_t partition;
    int64_t offset;
    char detail[160];       /* why parsing failed, for logs and HTTP errors */
};

void pb_event_init(struct pb_event *ev);
void pb_event_clear(struct pb_event *ev);

/* The event name, "message" when the envelope named none. */
const char *pb_event_name(const struct pb_event *ev);

/* Parses one JSON object. Returns PB_DROP_NONE, or a drop reason with
 * ev->detail saying what was wrong (naming the field). */
int pb_envelope_parse(const char *buf, size_t len, int flags, struct pb_event *ev);

/* Resolves the target from a Kafka key (NULL/0 = no key): "*" = everyone,
 * "group:NAME", else a user ID, which must agree with a user_id field. */
int pb_event_set_target(struct pb_event *ev, const char *key, size_t keylen);

/* The event as a Kafka envelope: {"event":E,"id":I,"task":T,"final":true,
 * "data":<raw>} (members only when set), what cluster mode produces to
 * push.topic for an HTTP push. Appended to out. */
struct pb_buf;
void pb_event_envelope(const struct pb_event *ev, struct pb_buf *out);

/* Replaces the event name (a Kafka `event` header wins over the field). */
int pb_event_set_name(struct pb_event *ev, const char *name, size_t len);

/* Calls fn for each element span of a top-level JSON array in buf (which
 * must already be valid JSON). Returns the number of elements, or -1 when
 * buf is not an array. */
long pb_json_array_each(const char *buf, size_t len,
                        int (*fn)(const char *el, size_t ellen, void *ud), void *ud);

/* 1 when buf (valid JSON) starts with '[' after whitespace. */
int pb_json_is_array(const char *buf, size_t len);

/* 1 when any array/object in buf nests deeper than max (strings are
 * skipped). yajl's tree is freed recursively: texts that will be parsed
 * into a tree are checked with this first. */
int pb_json_too_deep(const char *buf, size_t len, int max);

/* 1 when s is strict UTF-8 (no overlong forms, no surrogates). */
int pb_utf8_valid(const char *s, size_t n);

/* NULL when s (n bytes, decoded) is a valid identity: a user ID, group,
 * event name or id of 1 to PB_MAX_ID_BYTES bytes of strict UTF-8 without
 * NUL; else what is wrong, as the end of a sentence ("must be ..."). The one
 * rule for Kafka fields, HTTP user IDs and logins. */
const char *pb_id_problem(const char *s, size_t n);

/* 0 when JSON text holds a \uD800-\uDBFF escape not followed by a
 * \uDC00-\uDFFF one, or a low one alone: yajl decodes a lone high one to
 * "?", so the decoded text cannot show it. */
int pb_json_surrogates_paired(const char *text, size_t len);

/* Validates buf as one JSON text with yajl. Returns 0 or -1 (detail filled). */
int pb_json_validate(const char *buf, size_t len, char *detail, size_t detlen);

/* Scanning text already known to be valid JSON (no tree, no stack: strings
 * skipped by their escapes, containers by counting brackets). Each returns
 * the index just past what starts at p[i]: white space, the string whose
 * opening quote p[i] is, the value. */
size_t pb_json_skip_ws(const char *p, size_t i, size_t n);
size_t pb_json_skip_string(const char *p, size_t i, size_t n);
size_t pb_json_skip_value(const char *p, size_t i, size_t n);
/* The four hex digits of a \uXXXX escape at p: 0 and *out, or -1. */
int pb_json_hex4(const char *p, unsigned *out);

#endif

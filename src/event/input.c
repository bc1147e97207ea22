/* The rule-driven reader. A message goes through three small steps: the
 * value is unwrapped (Confluent's wire-format prefix: magic byte 0 and a
 * 4-byte schema ID), read by its format (the envelope, plain JSON, a
 * CloudEvent in binary or structured mode), then each of the rule's sources
 * is looked up: the key, a header, a JSON pointer into the value, a
 * CloudEvents attribute, or a literal. The rule was resolved at start
 * (config_inputs.c); here nothing is parsed twice and nothing is built but
 * the event: the data stays the producer's bytes, a pointer's value is a
 * span of the text, and a string source is decoded into a stack buffer. */
#include "pushbridge/event/input.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pushbridge/core/buf.h"
#include "pushbridge/event/json_pointer.h"

/* Decoded source values: an identity is at most 256 bytes (PB_MAX_ID_BYTES),
 * so anything longer is refused without being copied anywhere else. */
#define SCRATCH_BYTES (4 * PB_MAX_ID_BYTES + 8)

/* Members of a structured CloudEvent indexed in one pass: the attributes a
 * producer sets are about ten. */
#define CE_MAX_MEMBERS 32

enum kind { K_STRING, K_NUMBER, K_BOOL, K_OTHER };

/* A source's value: its text (decoded for strings) and kind. */
struct found {
    const char *p;
    size_t n;
    int kind;
};

struct ctx {
    const struct pb_input_rule *rule;
    const struct pb_input_msg *msg;
    struct pb_event *ev;
    const char *body; /* the value, the wire-format prefix taken off */
    size_t blen;
    int body_json;  /* body is valid JSON text: field: may look into it */
    int ce_binary;  /* a CloudEvent in binary mode: attributes in ce_ headers */
    int ce_structured; /* ... in structured mode: attributes are members of body */
    int validated;  /* body already found valid JSON (behind the wire-format prefix) */
    char *failed;
    size_t failedlen;
    /* Structured mode: the event's members, listed in one pass, so that each
     * attribute is not another scan of the value; nmembers -1 = more than fit
     * (then each is found with the pointer scan). The list and the scratch
     * buffer come last: they are not zeroed per message (pb_input_read). */
    long nmembers;
    struct pb_json_member members[CE_MAX_MEMBERS];
    char scratch[SCRATCH_BYTES];
};

static int fail(struct ctx *c, int reason, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct ctx *c, int reason, const char *what, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->ev->detail, sizeof(c->ev->detail), fmt, ap);
    va_end(ap);
    snprintf(c->failed, c->failedlen, "%s", what);
    return reason;
}

static int header(const struct ctx *c, const char *name, const char **v, size_t *n)
{
    return c->msg->header && c->msg->header(c->msg->ud, name, v, n);
}

/* Valid JSON text, as the envelope would accept it (strict UTF-8). */
static int json_ok(const char *p, size_t n, char *detail, size_t detlen)
{
    if (!pb_utf8_valid(p, n)) {
        snprintf(detail, detlen, "not valid JSON: the text is not valid UTF-8");
        return 0;
    }
    return pb_json_validate(p, n, detail, detlen) == 0;
}

/* The body is valid JSON text, checked once per message. */
static int body_ok(struct ctx *c)
{
    if (!c->validated)
        c->validated = json_ok(c->body, c->blen, c->ev->detail, sizeof(c->ev->detail));
    return c->validated;
}

/* Sets data to the JSON value at span (a span of the input), with the
 * decoded text when it is a string (what seed clients receive). */
static int set_data(struct ctx *c, const char *span, size_t n)
{
    struct pb_event *ev = c->ev;
    ev->data = span;
    ev->data_len = n;
    ev->data_is_string = n && span[0] == '"';
    if (!ev->data_is_string)
        return PB_DROP_NONE;
    if (!(ev->data_text = malloc(n))) /* decoded text is never longer */
        return fail(c, PB_DROP_OVERSIZED, "value", "out of memory decoding data");
    long d = pb_json_string_decode(span, n, ev->data_text, n);
    ev->data_text_len = d > 0 ? (size_t)d : 0;
    if (d < 0)
        ev->data_text[0] = '\0';
    return PB_DROP_NONE;
}

/* The JSON value at span as a source value. */
static int from_json(struct ctx *c, const char *span, size_t n, struct found *f)
{
    f->p = span;
    f->n = n;
    if (n == 4 && memcmp(span, "null", 4) == 0)
        return 0; /* null is absent, as in the envelope */
    if (span[0] == '"') {
        long d = pb_json_string_decode(span, n, c->scratch, sizeof(c->scratch));
        if (d < 0)
            d = PB_MAX_ID_BYTES + 1; /* too long to be anything a source is for */
        f->p = c->scratch;
        f->n = (size_t)d;
        f->kind = K_STRING;
    } else if (span[0] == 't' || span[0] == 'f') {
        f->kind = K_BOOL;
    } else if (span[0] == '{' || span[0] == '[') {
        f->kind = K_OTHER;
    } else {
        f->kind = K_NUMBER;
    }
    return 1;
}

/* A member of the structured CloudEvent: the last of its name, as the
 * envelope reads duplicates. Attribute names are lowercase letters and
 * digits, so a name written with escapes is looked up by the scan. */
static int ce_member_span(struct ctx *c, const char *name, const char **span, size_t *n)
{
    size_t len = strlen(name);
    if (c->nmembers >= 0) {
        int escaped = 0;
        for (long i = c->nmembers - 1; i >= 0; i--) {
            const struct pb_json_member *m = &c->members[i];
            if (m->name_len == len && memcmp(m->name, name, len) == 0) {
                *span = m->value;
                *n = m->value_len;
                return 1;
            }
            escaped |= memchr(m->name, '\\', m->name_len) != NULL;
        }
        if (!escaped)
            return 0;
    }
    char *tok = (char *)name;
    return pb_json_pointer_find(c->body, c->blen, &tok, &len, 1, span, n);
}

static int ce_member(struct ctx *c, const char *name, struct found *f)
{
    const char *span;
    size_t n;
    return ce_member_span(c, name, &span, &n) && from_json(c, span, n, f);
}

/* Looks the source up: 1 found, 0 nothing there. */
static int resolve(struct ctx *c, const struct pb_input_source *s, struct found *f)
{
    const char *span;
    size_t n;
    f->kind = K_STRING;
    switch (s->kind) {
    case PB_SRC_KEY:
        f->p = c->msg->key;
        f->n = c->msg->key_len;
        return f->p && f->n;
    case PB_SRC_HEADER:
        return header(c, s->name, &f->p, &f->n) && f->p;
    case PB_SRC_LITERAL:
        f->p = s->name;
        f->n = s->name_len;
        return 1;
    case PB_SRC_CE:
        if (c->ce_structured)
            return ce_member(c, s->name, f);
        if (s->name_len > 60)
            return 0;
        char hname[64];
        snprintf(hname, sizeof(hname), "ce_%s", s->name);
        return header(c, hname, &f->p, &f->n) && f->p;
    case PB_SRC_FIELD:
        if (!c->body_json || !pb_json_pointer_find(c->body, c->blen, s->tokens, s->token_lens,
                                                   s->ntokens, &span, &n))
            return 0;
        return from_json(c, span, n, f);
    }
    return 0;
}

/* An identity (name, id, task) from a source: copied into *slot. */
static int take_identity(struct ctx *c, const char *key, const struct pb_input_source *s,
                         const struct found *f, int numbers_ok, char **slot)
{
    char what[300];
    snprintf(what, sizeof(what), "%s=%s", key, s->spec);
    if (f->kind != K_STRING && !(numbers_ok && f->kind == K_NUMBER))
        return fail(c, PB_DROP_BAD_FIELD, what, "%s from %s must be a string%s", key, s->spec,
                    numbers_ok ? " or a number" : "");
    const char *problem = pb_id_problem(f->p, f->n);
    if (problem)
        return fail(c, PB_DROP_BAD_FIELD, what, "%s from %s %s", key, s->spec, problem);
    char *copy = malloc(f->n + 1);
    if (!copy)
        return fail(c, PB_DROP_OVERSIZED, what, "out of memory");
    memcpy(copy, f->p, f->n);
    copy[f->n] = '\0';
    free(*slot);
    *slot = copy;
    return PB_DROP_NONE;
}

/* Event, id or task from its source, when the rule names one. */
static int apply_identity(struct ctx *c, const char *key, const struct pb_input_source *s,
                          int numbers_ok, char **slot)
{
    struct found f;
    if (!s->kind)
        return PB_DROP_NONE;
    if (!resolve(c, s, &f)) {
        char what[300];
        snprintf(what, sizeof(what), "%s=%s", key, s->spec);
        return fail(c, PB_DROP_NO_SOURCE, what, "%s: %s found nothing", key, s->spec);
    }
    return take_identity(c, key, s, &f, numbers_ok, slot);
}

/* final: set when the source's value is one of the rule's (compared as
 * text: a header "true" is true). A source that finds nothing: not final. */
static void apply_final(struct ctx *c)
{
    const struct pb_input_rule *r = c->rule;
    struct found f;
    if (!r->final_src.kind)
        return;
    c->ev->final = 0;
    if (!resolve(c, &r->final_src, &f) || f.kind == K_OTHER)
        return;
    for (size_t i = 0; i < r->nfinal; i++)
        if (r->final_values[i].len == f.n && memcmp(r->final_values[i].text, f.p, f.n) == 0)
            c->ev->final = 1;
}

/* The target: the key (the envelope's user_id when there is none), or the
 * rule's source, written as a key is ("*", "group:NAME", a user ID). */
static int apply_target(struct ctx *c)
{
    const struct pb_input_source *s = &c->rule->target;
    struct pb_event *ev = c->ev;
    char what[300];
    snprintf(what, sizeof(what), "target=%s", s->kind ? s->spec : "key");
    if (!s->kind || s->kind == PB_SRC_KEY) {
        if (c->rule->format != PB_INPUT_ENVELOPE && !(c->msg->key && c->msg->key_len))
            return fail(c, PB_DROP_NO_TARGET, what, "the message has no key, and the rule's "
                        "target is the key");
        int reason = pb_event_set_target(ev, c->msg->key, c->msg->key_len);
        if (reason)
            snprintf(c->failed, c->failedlen, "%s", what);
        return reason;
    }
    struct found f;
    if (!resolve(c, s, &f))
        return fail(c, PB_DROP_NO_TARGET, what, "target: %s found nothing", s->spec);
    if (f.kind == K_NUMBER && (memchr(f.p, '.', f.n) || memchr(f.p, 'e', f.n) ||
                               memchr(f.p, 'E', f.n)))
        return fail(c, PB_DROP_BAD_FIELD, what, "target from %s is a number but not an integer",
                    s->spec);
    if (f.kind != K_STRING && f.kind != K_NUMBER)
        return fail(c, PB_DROP_BAD_FIELD, what, "target from %s must be a string or an integer",
                    s->spec);
    /* "group:" and a name of up to 256 bytes; set_target checks the rest. */
    if (f.n == 0 || f.n > PB_MAX_ID_BYTES + 6 || memchr(f.p, '\0', f.n) ||
        !pb_utf8_valid(f.p, f.n))
        return fail(c, PB_DROP_BAD_FIELD, what, "target from %s must be 1 to 256 bytes of UTF-8",
                    s->spec);
    /* Copied into user_id (owned by the event): the key form is parsed
     * from there, and the envelope's own user_id gives way to the rule. */
    char *copy = malloc(f.n + 1);
    if (!copy)
        return fail(c, PB_DROP_OVERSIZED, what, "out of memory");
    memcpy(copy, f.p, f.n);
    copy[f.n] = '\0';
    free(ev->user_id);
    ev->user_id = copy;
    int reason = pb_event_set_target(ev, copy, f.n);
    if (reason)
        snprintf(c->failed, c->failedlen, "%s", what);
    return reason;
}

/* ---- formats ---- */

static int read_json(struct ctx *c)
{
    if (!body_ok(c)) {
        snprintf(c->failed, c->failedlen, "value");
        return PB_DROP_NOT_JSON;
    }
    c->body_json = 1;
    size_t n;
    const char *span = pb_json_trim(c->body, c->blen, &n);
    int reason = set_data(c, span, n);
    const char *name;
    size_t nlen;
    /* The event name: the rule's, else the header `event`, else the topic. */
    if (!reason && !c->rule->event.kind) {
        if (!header(c, "event", &name, &nlen) || !name) {
            name = c->msg->topic;
            nlen = strlen(name);
        }
        reason = pb_event_set_name(c->ev, name, nlen);
    }
    return reason;
}

/* 1 when the content type (parameters aside) names JSON. */
static int json_content_type(const char *ct, size_t n)
{
    const char *semi = memchr(ct, ';', n);
    size_t len = semi ? (size_t)(semi - ct) : n;
    return (len >= 16 && strncasecmp(ct, "application/json", 16) == 0) ||
           (len >= 9 && strncasecmp(ct, "text/json", 9) == 0) ||
           (len >= 5 && strncasecmp(ct + len - 5, "+json", 5) == 0);
}

/* The data's type in binary mode: `content-type`, as the binding says;
 * some producers (Spring's message headers) write `contentType`, or keep
 * the attribute as `ce_datacontenttype`. 0 when none says. */
static int data_type(const struct ctx *c, const char **ct, size_t *n)
{
    static const char *const names[] = {"content-type", "contentType", "ce_datacontenttype"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (header(c, names[i], ct, n) && *ct)
            return 1;
    return 0;
}

/* Binary mode: the value is the data, of the type content-type says. JSON
 * (or no type) goes as it is; text becomes a JSON string; anything else is
 * not something a browser frame can carry. */
static int ce_binary_data(struct ctx *c)
{
    const char *ct = NULL;
    size_t ctlen = 0;
    if (!c->blen)
        return PB_DROP_NONE; /* no data: null */
    if (!data_type(c, &ct, &ctlen) || json_content_type(ct, ctlen)) {
        if (!body_ok(c))
            return fail(c, PB_DROP_NOT_JSON, "value", "%s", c->ev->detail);
        c->body_json = 1;
        size_t n;
        const char *span = pb_json_trim(c->body, c->blen, &n);
        return set_data(c, span, n);
    }
    if (ctlen < 5 || strncasecmp(ct, "text/", 5) != 0 || !pb_utf8_valid(c->body, c->blen))
        return fail(c, PB_DROP_UNSUPPORTED_ENCODING, "value",
                    "a CloudEvent whose data is %.*s, which is neither JSON nor text",
                    (int)(ctlen < 60 ? ctlen : 60), ct);
    struct pb_event *ev = c->ev;
    size_t jn = pb_json_string_len(c->body, c->blen);
    if (!(ev->data_owned = malloc(jn)) || !(ev->data_text = malloc(c->blen + 1)))
        return fail(c, PB_DROP_OVERSIZED, "value", "out of memory");
    pb_json_string_write(ev->data_owned, c->body, c->blen);
    memcpy(ev->data_text, c->body, c->blen);
    ev->data_text[c->blen] = '\0';
    ev->data = ev->data_owned;
    ev->data_len = jn;
    ev->data_text_len = c->blen;
    ev->data_is_string = 1;
    return PB_DROP_NONE;
}

/* Structured mode: the value is the whole event; data is its `data`
 * member, or `data_base64` (passed on as that JSON string). */
static int ce_structured_data(struct ctx *c)
{
    const char *span;
    size_t n;
    if (ce_member_span(c, "data", &span, &n) || ce_member_span(c, "data_base64", &span, &n))
        return set_data(c, span, n);
    return PB_DROP_NONE;
}

/* Which mode: the ce_specversion header says binary; a cloudevents content
 * type, or (whatever the content type says, as some SDKs put the data's
 * type there) a JSON object carrying specversion, says structured. */
static int ce_mode(struct ctx *c)
{
    const char *v, *ct = NULL;
    size_t n, ctlen = 0;
    if (header(c, "ce_specversion", &v, &n) && v) {
        c->ce_binary = 1;
        return ce_binary_data(c);
    }
    if (header(c, "content-type", &ct, &ctlen) && ct && ctlen >= 29 &&
        strncasecmp(ct, "application/cloudevents-batch", 29) == 0)
        return fail(c, PB_DROP_UNSUPPORTED_ENCODING, "value",
                    "a batch of CloudEvents (application/cloudevents-batch+json) is not read");
    if (!body_ok(c))
        return fail(c, PB_DROP_NOT_JSON, "value", "%s", c->ev->detail);
    c->body_json = 1;
    size_t tn;
    const char *t = pb_json_trim(c->body, c->blen, &tn);
    struct found f;
    c->ce_structured = tn && t[0] == '{';
    if (c->ce_structured) {
        c->nmembers = pb_json_members(c->body, c->blen, c->members, CE_MAX_MEMBERS);
        if (c->nmembers > CE_MAX_MEMBERS)
            c->nmembers = -1;
    }
    if (!c->ce_structured || !ce_member(c, "specversion", &f))
        return fail(c, c->ce_structured ? PB_DROP_NO_SOURCE : PB_DROP_NOT_OBJECT, "ce:specversion",
                    "not a CloudEvent: no ce_specversion header, and the value is not a JSON "
                    "object with specversion");
    return ce_structured_data(c);
}

static int read_cloudevent(struct ctx *c)
{
    int reason = ce_mode(c);
    if (reason)
        return reason;
    /* type and id are required by CloudEvents: the event's name and id
     * unless the rule names other sources. */
    static const struct pb_input_source type = {PB_SRC_CE, "ce:type", "type", 4, 0, 0, 0};
    static const struct pb_input_source id = {PB_SRC_CE, "ce:id", "id", 2, 0, 0, 0};
    struct found f;
    if (!resolve(c, &type, &f))
        return fail(c, PB_DROP_NO_SOURCE, "ce:type", "a CloudEvent without type");
    reason = take_identity(c, "event", &type, &f, 0, &c->ev->event);
    if (reason)
        return reason;
    if (!resolve(c, &id, &f))
        return fail(c, PB_DROP_NO_SOURCE, "ce:id", "a CloudEvent without id");
    return take_identity(c, "id", &id, &f, 1, &c->ev->id);
}

/* Confluent's wire format: magic byte 0, a 4-byte big-endian schema ID,
 * then the serializer's bytes. JSON text cannot start with a 0 byte, so
 * the prefix is never mistaken; what follows is read only when it is JSON. */
static int unwrap(struct ctx *c)
{
    const unsigned char *v = (const unsigned char *)c->msg->value;
    c->body = c->msg->value;
    c->blen = c->msg->len;
    if (c->blen < 5 || v[0] != 0)
        return PB_DROP_NONE;
    uint32_t schema = (uint32_t)v[1] << 24 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 8 | v[4];
    c->body += 5;
    c->blen -= 5;
    char detail[sizeof(c->ev->detail)];
    if ((c->validated = json_ok(c->body, c->blen, detail, sizeof(detail))))
        return PB_DROP_NONE;
    return fail(c, PB_DROP_UNSUPPORTED_ENCODING, "value",
                "schema ID %u: the value behind Confluent's wire-format prefix is not JSON "
                "(Avro or Protobuf are not read)", (unsigned)schema);
}

int pb_input_read(const struct pb_input_rule *rule, const struct pb_input_msg *msg,
                  struct pb_event *ev, char *failed, size_t failedlen)
{
    /* Not zeroed whole: the scratch buffer and the member list (2 KiB) are
     * written before they are read, and zeroing them is a tenth of a read. */
    struct ctx ctx;
    memset(&ctx, 0, offsetof(struct ctx, members));
    struct ctx *c = &ctx;
    c->rule = rule;
    c->msg = msg;
    c->ev = ev;
    c->failed = failed;
    c->failedlen = failedlen;
    c->nmembers = -1;
    if (failedlen)
        failed[0] = '\0';
    int reason = unwrap(c);
    if (reason)
        return reason;
    switch (rule->format) {
    case PB_INPUT_JSON:
        reason = read_json(c);
        break;
    case PB_INPUT_CLOUDEVENTS:
        reason = read_cloudevent(c);
        break;
    default:
        reason = pb_envelope_parse(c->body, c->blen, 0, ev);
        c->body_json = 1;
        const char *h;
        size_t hn;
        if (!reason && !rule->event.kind && header(c, "event", &h, &hn) && h)
            reason = pb_event_set_name(ev, h, hn);
        break;
    }
    if (!reason)
        reason = apply_identity(c, "event", &rule->event, 0, &ev->event);
    if (!reason)
        reason = apply_identity(c, "id", &rule->id, 1, &ev->id);
    /* A task source that finds nothing: not a task update (a topic mixes
     * progress updates with plain events), unlike a missing name or id. */
    struct found f;
    if (!reason && rule->task.kind && resolve(c, &rule->task, &f))
        reason = take_identity(c, "task", &rule->task, &f, 1, &ev->task);
    if (!reason)
        apply_final(c);
    if (!reason)
        reason = apply_target(c);
    return reason;
}

int pb_input_key_decides(const struct pb_input_rule *rule)
{
    return (!rule->target.kind || rule->target.kind == PB_SRC_KEY) && !rule->task.kind;
}

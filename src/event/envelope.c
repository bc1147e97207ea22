/* Event envelope parsing. The usual envelope is decided by the one-pass fast
 * path (envelope_fast.c); this file is the full parse, for every other one
 * and every refusal's message. Two passes over the bytes: yajl validates the whole
 * text and decodes the top-level string fields through callbacks (no tree is
 * built), then a small scanner over the now known-valid text finds the raw
 * span of `data`, so that clients get the producer's bytes unchanged. Both
 * passes are iterative: nesting depth costs no C stack. */
#include "pushbridge/event/envelope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "pushbridge/core/buf.h"
#include "pushbridge/event/envelope_fast.h"

void pb_event_init(struct pb_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->data = "null";
    ev->data_len = 4;
}

void pb_event_clear(struct pb_event *ev)
{
    free(ev->event);
    free(ev->id);
    free(ev->user_id);
    free(ev->task);
    free(ev->group);
    free(ev->data_text);
    free(ev->data_owned);
    pb_event_init(ev);
}

const char *pb_event_name(const struct pb_event *ev)
{
    return ev->event ? ev->event : "message";
}

/* ---- pass 1: yajl callbacks ---- */

enum field {
    F_OTHER = 0,
    F_EVENT,
    F_ID,
    F_USER_ID,
    F_TASK,
    F_GROUP,
    F_FINAL,
    F_DATA,       /* "data" */
    F_DATA_ALIAS, /* "message", HTTP bodies only */
};

struct parse_ctx {
    struct pb_event *ev;
    int flags;
    int depth; /* 0 before the root, 1 inside the top-level object */
    int field; /* field of the member whose value comes next (depth 1) */
    int reason;
    int data_seen;    /* "data" member present */
    int alias_seen;   /* "message" member present */
    char *alias_text; /* decoded "message" string, used when no "data" */
    size_t alias_text_len;
    int alias_is_string;
    const char *buf; /* the whole text, for pb_json_surrogates_paired */
    size_t len;
    int unpaired; /* -1 not yet looked at, else 1 when buf holds an unpaired surrogate escape */
};

static int fail(struct parse_ctx *c, int reason, const char *fmt, const char *field)
{
    c->reason = reason;
    snprintf(c->ev->detail, sizeof(c->ev->detail), fmt, field);
    return 0; /* tells yajl to stop */
}

static const char *field_name(int f)
{
    switch (f) {
    case F_EVENT:
        return "event";
    case F_ID:
        return "id";
    case F_USER_ID:
        return "user_id";
    case F_TASK:
        return "task";
    case F_GROUP:
        return "group";
    case F_FINAL:
        return "final";
    default:
        return "data";
    }
}

static int set_string(char **slot, const unsigned char *s, size_t len)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, s, len);
    copy[len] = '\0';
    free(*slot);
    *slot = copy;
    return 0;
}

static size_t utf8_seq_len(const unsigned char *s, size_t n);

/* Copies s into *out (NUL-terminated) with each invalid UTF-8 sequence
 * replaced by U+FFFD; valid text is copied as it is. */
static int utf8_repair(char **out, size_t *outlen, const unsigned char *s, size_t n)
{
    int valid = pb_utf8_valid((const char *)s, n);
    char *buf = malloc(valid ? n + 1 : n * 3 + 1);
    if (!buf)
        return -1;
    size_t o = 0;
    if (valid) {
        memcpy(buf, s, n);
        o = n;
    }
    for (size_t i = o; i < n;) {
        size_t k = utf8_seq_len(s + i, n - i);
        if (k) {
            memcpy(buf + o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(buf + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    buf[o] = '\0';
    free(*out);
    *out = buf;
    *outlen = o;
    return 0;
}

/* A value at depth 1 arrived for the current field; depth 0 means it is
 * the root, which must be an object. */
static int scalar(struct parse_ctx *c, int is_string, int is_number, const unsigned char *s,
                  size_t len)
{
    if (c->depth == 0)
        return fail(c, PB_DROP_NOT_OBJECT, "the event is not a JSON object%s", "");
    if (c->depth > 1)
        return 1;

    struct pb_event *ev = c->ev;
    char **slot = NULL;
    switch (c->field) {
    case F_OTHER:
        return 1;
    case F_FINAL:
        return fail(c, PB_DROP_BAD_FIELD, "%s must be true or false", "final");
    case F_DATA:
    case F_DATA_ALIAS: {
        char **text = c->field == F_DATA ? &ev->data_text : &c->alias_text;
        size_t *tlen = c->field == F_DATA ? &ev->data_text_len : &c->alias_text_len;
        free(*text);
        *text = NULL;
        *tlen = 0;
        if (c->field == F_DATA)
            ev->data_is_string = is_string;
        else
            c->alias_is_string = is_string;
        if (is_string) {
            /* "\udc00" decodes to bytes that are not UTF-8: seed clients would
             * get them raw in a text frame, which browsers fail. Native
             * clients get the escape as sent; seed clients get U+FFFD. */
            if (utf8_repair(text, tlen, s, len))
                return fail(c, PB_DROP_OVERSIZED, "out of memory decoding %s", "data");
        }
        return 1;
    }
    case F_EVENT:
        slot = &ev->event;
        break;
    case F_ID:
        slot = &ev->id;
        break;
    case F_USER_ID:
        slot = &ev->user_id;
        break;
    case F_TASK:
        slot = &ev->task;
        break;
    case F_GROUP:
        slot = &ev->group;
        break;
    }
    if (!s) { /* null: the optional field is absent */
        free(*slot);
        *slot = NULL;
        return 1;
    }
    /* IDs may be numbers (many systems key users by integer); names may not. */
    int numbers_ok = c->field == F_ID || c->field == F_USER_ID || c->field == F_TASK;
    if (!is_string && !(is_number && numbers_ok))
        return fail(c, PB_DROP_BAD_FIELD, "%s must be a string", field_name(c->field));
    const char *problem = pb_id_problem((const char *)s, len);
    /* yajl decodes a lone high surrogate escape ("bob\ud800") to "?": the
     * decoded text cannot tell it from "bob?", the raw text can. */
    if (!problem && is_string && memchr(s, '?', len)) {
        if (c->unpaired < 0)
            c->unpaired = !pb_json_surrogates_paired(c->buf, c->len);
        if (c->unpaired)
            problem = "must not hold an unpaired surrogate escape";
    }
    if (problem) {
        c->reason = PB_DROP_BAD_FIELD;
        snprintf(c->ev->detail, sizeof(c->ev->detail), "%s %s", field_name(c->field), problem);
        return 0; /* tells yajl to stop */
    }
    if (set_string(slot, s, len))
        return fail(c, PB_DROP_OVERSIZED, "out of memory decoding %s", field_name(c->field));
    return 1;
}

static int cb_null(void *ud)
{
    struct parse_ctx *c = ud;
    if (c->depth == 1 && c->field == F_FINAL)
        return 1;
    return scalar(c, 0, 0, NULL, 0);
}

static int cb_boolean(void *ud, int v)
{
    struct parse_ctx *c = ud;
    if (c->depth == 1 && c->field == F_FINAL) {
        c->ev->final = v;
        return 1;
    }
    return scalar(c, 0, 0, (const unsigned char *)(v ? "true" : "false"), v ? 4 : 5);
}

static int cb_number(void *ud, const char *s, size_t len)
{
    return scalar(ud, 0, 1, (const unsigned char *)s, len);
}

static int cb_string(void *ud, const unsigned char *s, size_t len)
{
    return scalar(ud, 1, 0, s, len);
}

static int open_container(struct parse_ctx *c, int is_map)
{
    if (c->depth == 0 && !is_map)
        return fail(c, PB_DROP_NOT_OBJECT, "the event is not a JSON object%s", "");
    if (c->depth == 1 && c->field == F_FINAL)
        return fail(c, PB_DROP_BAD_FIELD, "%s must be true or false", "final");
    if (c->depth == 1 && c->field != F_OTHER && c->field != F_DATA && c->field != F_DATA_ALIAS)
        return fail(c, PB_DROP_BAD_FIELD, "%s must be a string", field_name(c->field));
    if (c->depth == 1 && (c->field == F_DATA || c->field == F_DATA_ALIAS)) {
        char **text = c->field == F_DATA ? &c->ev->data_text : &c->alias_text;
        free(*text);
        *text = NULL;
        *(c->field == F_DATA ? &c->ev->data_text_len : &c->alias_text_len) = 0;
        if (c->field == F_DATA)
            c->ev->data_is_string = 0;
        else
            c->alias_is_string = 0;
    }
    c->depth++;
    return 1;
}

static int cb_start_map(void *ud)
{
    return open_container(ud, 1);
}

static int cb_start_array(void *ud)
{
    return open_container(ud, 0);
}

static int cb_end(void *ud)
{
    struct parse_ctx *c = ud;
    c->depth--;
    return 1;
}

static int key_is(const unsigned char *k, size_t len, const char *name)
{
    return strlen(name) == len && memcmp(k, name, len) == 0;
}

static int cb_map_key(void *ud, const unsigned char *k, size_t len)
{
    struct parse_ctx *c = ud;
    if (c->depth != 1)
        return 1;
    int aliases = c->flags & PB_ENV_HTTP_ALIASES;
    c->field = F_OTHER;
    if (key_is(k, len, "event"))
        c->field = F_EVENT;
    else if (key_is(k, len, "id"))
        c->field = F_ID;
    else if (key_is(k, len, "user_id") ||
             (aliases && (key_is(k, len, "userId") || key_is(k, len, "uid"))))
        c->field = F_USER_ID;
    else if (key_is(k, len, "task"))
        c->field = F_TASK;
    else if (aliases && key_is(k, len, "group"))
        c->field = F_GROUP; /* broadcast bodies; a Kafka key says group:NAME */
    else if (key_is(k, len, "final"))
        c->field = F_FINAL;
    else if (key_is(k, len, "data"))
        c->field = F_DATA;
    else if (aliases && key_is(k, len, "message"))
        c->field = F_DATA_ALIAS;
    if (c->field == F_DATA)
        c->data_seen++;
    if (c->field == F_DATA_ALIAS)
        c->alias_seen++;
    return 1;
}

static const yajl_callbacks callbacks = {
    .yajl_null = cb_null,
    .yajl_boolean = cb_boolean,
    .yajl_number = cb_number,
    .yajl_string = cb_string,
    .yajl_start_map = cb_start_map,
    .yajl_map_key = cb_map_key,
    .yajl_end_map = cb_end,
    .yajl_start_array = cb_start_array,
    .yajl_end_array = cb_end,
};

/* Runs yajl over buf. Returns 0 when the text is valid JSON; otherwise -1
 * with detail holding yajl's message (a callback's own failure is reported
 * by the callback, not here). */
static int run_yajl(const yajl_callbacks *cbs, void *ud, const char *buf, size_t len, int *canceled,
                    char *detail, size_t detlen)
{
    yajl_handle h = yajl_alloc(cbs, NULL, ud);
    if (!h) {
        snprintf(detail, detlen, "out of memory");
        return -1;
    }
    yajl_status st = yajl_parse(h, (const unsigned char *)buf, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    int rc = 0;
    *canceled = st == yajl_status_client_canceled;
    if (st == yajl_status_error) {
        unsigned char *msg = yajl_get_error(h, 0, (const unsigned char *)buf, len);
        snprintf(detail, detlen, "not valid JSON: %s", msg ? (const char *)msg : "parse error");
        if (msg)
            yajl_free_error(h, msg);
        /* yajl's messages end with a newline; keep log lines whole. */
        char *nl = strchr(detail, '\n');
        if (nl)
            *nl = '\0';
        rc = -1;
    } else if (st != yajl_status_ok) {
        rc = -1;
    }
    yajl_free(h);
    return rc;
}

/* yajl takes \f and \v as whitespace, RFC 8259 and the span scanner do not;
 * in valid JSON they can only be whitespace (yajl refuses them in strings),
 * so refusing them keeps both passes reading the same text. */
static int odd_whitespace(const char *buf, size_t len, char *detail, size_t detlen)
{
    if (!memchr(buf, '\f', len) && !memchr(buf, '\v', len))
        return 0;
    snprintf(detail, detlen, "not valid JSON: form feed or vertical tab outside a string");
    return 1;
}

int pb_json_validate(const char *buf, size_t len, char *detail, size_t detlen)
{
    static const yajl_callbacks none;
    int canceled;
    if (odd_whitespace(buf, len, detail, detlen))
        return -1;
    return run_yajl(&none, NULL, buf, len, &canceled, detail, detlen);
}

/* ---- pass 2: raw spans in text already known to be valid JSON ---- */

size_t pb_json_skip_ws(const char *p, size_t i, size_t n)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

size_t pb_json_skip_string(const char *p, size_t i, size_t n)
{
    for (i++; i < n; i++) {
        if (p[i] == '\\')
            i++;
        else if (p[i] == '"')
            return i + 1;
    }
    return n;
}

size_t pb_json_skip_value(const char *p, size_t i, size_t n)
{
    if (i >= n)
        return n;
    if (p[i] == '"')
        return pb_json_skip_string(p, i, n);
    if (p[i] == '{' || p[i] == '[') {
        size_t depth = 0;
        while (i < n) {
            char ch = p[i];
            if (ch == '"') {
                i = pb_json_skip_string(p, i, n);
                continue;
            }
            if (ch == '{' || ch == '[')
                depth++;
            else if ((ch == '}' || ch == ']') && --depth == 0)
                return i + 1;
            i++;
        }
        return n;
    }
    while (i < n && p[i] != ',' && p[i] != '}' && p[i] != ']' && p[i] != ' ' && p[i] != '\t' &&
           p[i] != '\n' && p[i] != '\r')
        i++;
    return i;
}

/* Finds the last top-level member named `name` (written without escapes)
 * and returns its value span and how many such members there are. */
static int find_member(const char *p, size_t n, const char *name, const char **v, size_t *vlen)
{
    size_t namelen = strlen(name);
    size_t i = pb_json_skip_ws(p, 0, n);
    int found = 0;
    if (i >= n || p[i] != '{')
        return 0;
    i++;
    for (;;) {
        i = pb_json_skip_ws(p, i, n);
        if (i >= n || p[i] != '"')
            break;
        size_t kstart = i + 1;
        size_t kend = pb_json_skip_string(p, i, n);
        i = pb_json_skip_ws(p, kend, n);
        if (i >= n || p[i] != ':')
            break;
        i = pb_json_skip_ws(p, i + 1, n);
        size_t vstart = i;
        i = pb_json_skip_value(p, i, n);
        if (kend - 1 - kstart == namelen && memcmp(p + kstart, name, namelen) == 0) {
            *v = p + vstart;
            *vlen = i - vstart;
            found++;
        }
        i = pb_json_skip_ws(p, i, n);
        if (i >= n || p[i] != ',')
            break;
        i++;
    }
    return found;
}

int pb_json_too_deep(const char *buf, size_t len, int max)
{
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = buf[i];
        if (ch == '"') {
            i = pb_json_skip_string(buf, i, len) - 1;
        } else if (ch == '[' || ch == '{') {
            if (++depth > max)
                return 1;
        } else if (ch == ']' || ch == '}') {
            depth--;
        }
    }
    return 0;
}

int pb_json_is_array(const char *buf, size_t len)
{
    size_t i = pb_json_skip_ws(buf, 0, len);
    return i < len && buf[i] == '[';
}

long pb_json_array_each(const char *buf, size_t len,
                        int (*fn)(const char *el, size_t ellen, void *ud), void *ud)
{
    size_t i = pb_json_skip_ws(buf, 0, len);
    long count = 0;
    if (i >= len || buf[i] != '[')
        return -1;
    i = pb_json_skip_ws(buf, i + 1, len);
    if (i < len && buf[i] == ']')
        return 0;
    while (i < len) {
        size_t start = i;
        i = pb_json_skip_value(buf, i, len);
        if (fn && fn(buf + start, i - start, ud))
            return count + 1;
        count++;
        i = pb_json_skip_ws(buf, i, len);
        if (i >= len || buf[i] != ',')
            break;
        i = pb_json_skip_ws(buf, i + 1, len);
    }
    return count;
}

int pb_envelope_parse(const char *buf, size_t len, int flags, struct pb_event *ev)
{
    struct parse_ctx c = {.ev = ev, .flags = flags, .buf = buf, .len = len, .unpaired = -1};
    int canceled = 0;
    /* yajl lets overlong forms and encoded surrogates through; data is
     * forwarded byte for byte into text frames, which browsers would fail. */
    if (!pb_utf8_valid(buf, len)) {
        snprintf(ev->detail, sizeof(ev->detail), "not valid JSON: the text is not valid UTF-8");
        return PB_DROP_NOT_JSON;
    }
    if (!(flags & PB_ENV_FULL_PARSE)) {
        int fast = pb_envelope_parse_fast(buf, len, flags, ev);
        if (fast != PB_ENVELOPE_SLOW)
            return fast;
    }
    if (odd_whitespace(buf, len, ev->detail, sizeof(ev->detail)))
        return PB_DROP_NOT_JSON;
    if (run_yajl(&callbacks, &c, buf, len, &canceled, ev->detail, sizeof(ev->detail))) {
        free(c.alias_text);
        if (canceled && c.reason)
            return c.reason;
        return PB_DROP_NOT_JSON;
    }
    const char *key = c.data_seen ? "data" : c.alias_seen ? "message" : NULL;
    if (!key) {
        free(c.alias_text);
        return PB_DROP_NONE;
    }
    if (!c.data_seen) {
        ev->data_text = c.alias_text;
        ev->data_text_len = c.alias_text_len;
        ev->data_is_string = c.alias_is_string;
        c.alias_text = NULL;
    }
    free(c.alias_text);
    /* yajl and the scanner must agree on which member is data: a name
     * written with escapes is seen by yajl only. */
    if (find_member(buf, len, key, &ev->data, &ev->data_len) !=
        (c.data_seen ? c.data_seen : c.alias_seen)) {
        snprintf(ev->detail, sizeof(ev->detail), "the %s member name must not use escapes", key);
        return PB_DROP_BAD_FIELD;
    }
    return PB_DROP_NONE;
}

/* ---- target ---- */

/* Strict UTF-8 (no overlongs, no surrogates), for Kafka keys, which no JSON
 * parser has seen. */
/* Length of the valid UTF-8 sequence at s (strict: no overlong forms, no
 * surrogates, nothing above U+10FFFF), or 0 when it is not one. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t extra;
    unsigned int cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        extra = 1;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        extra = 2;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        extra = 3;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n <= extra)
        return 0;
    for (size_t k = 1; k <= extra; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3f);
    }
    if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return extra + 1;
}

int pb_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0, k; i < n; i += k) {
        /* ASCII, the usual case, eight bytes at a time. */
        uint64_t word;
        if (n - i >= sizeof(word)) {
            memcpy(&word, s + i, sizeof(word));
            if (!(word & UINT64_C(0x8080808080808080))) {
                k = sizeof(word);
                continue;
            }
        }
        if (!(k = utf8_seq_len(s + i, n - i)))
            return 0;
    }
    return 1;
}

const char *pb_id_problem(const char *s, size_t n)
{
    if (n == 0 || n > PB_MAX_ID_BYTES)
        return "must be 1 to 256 bytes long";
    /* Stored as C strings: an escaped NUL would silently cut them short. */
    if (memchr(s, '\0', n))
        return "must not contain NUL characters";
    /* yajl encodes a lone low surrogate escape as the bytes of U+DC00,
     * which no browser accepts in a text frame. */
    if (!pb_utf8_valid(s, n))
        return "must be valid UTF-8 without unpaired surrogates";
    return NULL;
}

int pb_json_hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int d = pb_hex_digit(p[i]);
        if (d < 0)
            return -1;
        v = v << 4 | (unsigned)d;
    }
    *out = v;
    return 0;
}

int pb_json_surrogates_paired(const char *text, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (text[i] != '\\')
            continue;
        unsigned cp, lo;
        /* Every escape is consumed whole, so "\\\\ud800" is not one. */
        if (text[i + 1] != 'u' || i + 6 > len || pb_json_hex4(text + i + 2, &cp)) {
            i++;
            continue;
        }
        i += 5;
        if (cp >= 0xdc00 && cp <= 0xdfff)
            return 0;
        if (cp < 0xd800 || cp > 0xdbff)
            continue;
        if (i + 7 > len || text[i + 1] != '\\' || text[i + 2] != 'u' || pb_json_hex4(text + i + 3, &lo) ||
            lo < 0xdc00 || lo > 0xdfff)
            return 0;
        i += 6;
    }
    return 1;
}

int pb_event_set_name(struct pb_event *ev, const char *name, size_t len)
{
    if (len == 0 || len > PB_MAX_ID_BYTES || !pb_utf8_valid(name, len)) {
        snprintf(ev->detail, sizeof(ev->detail),
                 "the event header must be 1 to 256 bytes of UTF-8");
        return PB_DROP_BAD_FIELD;
    }
    if (set_string(&ev->event, (const unsigned char *)name, len)) {
        snprintf(ev->detail, sizeof(ev->detail), "out of memory");
        return PB_DROP_OVERSIZED;
    }
    return PB_DROP_NONE;
}

static int target_fail(struct pb_event *ev, int reason, const char *msg)
{
    snprintf(ev->detail, sizeof(ev->detail), "%s", msg);
    return reason;
}

void pb_event_envelope(const struct pb_event *ev, struct pb_buf *out)
{
    const char *sep = "{";
    if (ev->event) {
        pb_buf_puts(out, "{\"event\":");
        pb_buf_json_string(out, ev->event, strlen(ev->event));
        sep = ",";
    }
    if (ev->id) {
        pb_buf_printf(out, "%s\"id\":", sep);
        pb_buf_json_string(out, ev->id, strlen(ev->id));
        sep = ",";
    }
    if (ev->task) {
        pb_buf_printf(out, "%s\"task\":", sep);
        pb_buf_json_string(out, ev->task, strlen(ev->task));
        sep = ",";
    }
    if (ev->final) {
        pb_buf_printf(out, "%s\"final\":true", sep);
        sep = ",";
    }
    pb_buf_printf(out, "%s\"data\":", sep);
    pb_buf_append(out, ev->data, ev->data_len);
    pb_buf_puts(out, "}");
}

int pb_event_set_target(struct pb_event *ev, const char *key, size_t keylen)
{
    if (!key || keylen == 0) {
        if (!ev->user_id)
            return target_fail(ev, PB_DROP_NO_TARGET, "no key and no user_id field");
        ev->target_kind = PB_TARGET_USER;
        ev->target = ev->user_id;
        ev->target_len = strlen(ev->user_id);
        return PB_DROP_NONE;
    }
    if (!pb_utf8_valid(key, keylen))
        return target_fail(ev, PB_DROP_NO_TARGET, "the key is not valid UTF-8");
    if (keylen == 1 && key[0] == '*') {
        ev->target_kind = PB_TARGET_ALL;
        return PB_DROP_NONE;
    }
    if (keylen >= 6 && memcmp(key, "group:", 6) == 0) {
        if (keylen == 6 || keylen - 6 > PB_MAX_ID_BYTES)
            return target_fail(ev, PB_DROP_NO_TARGET, "the group name must be 1 to 256 bytes");
        ev->target_kind = PB_TARGET_GROUP;
        ev->target = key + 6;
        ev->target_len = keylen - 6;
        return PB_DROP_NONE;
    }
    if (keylen > PB_MAX_ID_BYTES)
        return target_fail(ev, PB_DROP_NO_TARGET, "the key is longer than 256 bytes");
    ev->target_kind = PB_TARGET_USER;
    if (ev->user_id && (strlen(ev->user_id) != keylen || memcmp(ev->user_id, key, keylen) != 0))
        return target_fail(ev, PB_DROP_KEY_MISMATCH, "the key and the user_id field disagree");
    ev->target = key;
    ev->target_len = keylen;
    return PB_DROP_NONE;
}

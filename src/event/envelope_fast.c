/* The envelope's fast path (issue 19 item 5). yajl cost ~5,900 instructions
 * per Kafka event, a parser allocated and freed each time and a second pass
 * for data's raw span: 44 % of the main loop's user-space work in the
 * unicast benchmark. This pass validates the whole text and takes the
 * fields in one go, without allocating a parser; it decides only envelopes
 * it can read without doubt and hands every other one, untouched, to the
 * full parse, so refusals and their messages have one author. */
#include "pushbridge/event/envelope_fast.h"

#include <stdlib.h>
#include <string.h>

#include "pushbridge/core/buf.h"
#include "pushbridge/event/envelope.h"

/* The top-level members the fast path reads. */
enum fast_field {
    FF_OTHER = -1,
    FF_EVENT = 0,
    FF_ID,
    FF_USER_ID,
    FF_TASK,
    FF_GROUP,
    FF_FINAL,
    FF_DATA,
    FF_COUNT,
    FF_ALIAS, /* "message" in an HTTP body: the full parse */
};

enum value_kind { VK_STRING, VK_NUMBER, VK_TRUE, VK_FALSE, VK_NULL, VK_CONTAINER };

struct member {
    const char *p; /* the value's raw text */
    size_t n;
    enum value_kind kind;
    int escaped; /* a string holding a backslash escape */
    int seen;
};

static size_t skip_ws(const char *p, size_t i, size_t n)
{
    while (i < n && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t'))
        i++;
    return i;
}

/* Index just after the string opening at p[i], or 0 when it is not a valid
 * JSON string (a raw control character, a bad escape, no closing quote).
 * UTF-8 was checked over the whole text before. */
static size_t string_end(const char *p, size_t i, size_t n, int *escaped)
{
    for (i++; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '"')
            return i + 1;
        if (ch < 0x20)
            return 0;
        if (ch != '\\')
            continue;
        *escaped = 1;
        if (++i >= n)
            return 0;
        switch (p[i]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            break;
        case 'u':
            if (i + 4 >= n)
                return 0;
            for (int k = 1; k <= 4; k++)
                if (pb_hex_digit(p[i + k]) < 0)
                    return 0;
            i += 4;
            break;
        default:
            return 0;
        }
    }
    return 0;
}

static size_t digits_end(const char *p, size_t i, size_t n)
{
    while (i < n && p[i] >= '0' && p[i] <= '9')
        i++;
    return i;
}

/* RFC 8259's number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static size_t number_end(const char *p, size_t i, size_t n)
{
    if (i < n && p[i] == '-')
        i++;
    if (i >= n || p[i] < '0' || p[i] > '9')
        return 0;
    i = p[i] == '0' ? i + 1 : digits_end(p, i, n);
    if (i < n && p[i] == '.') {
        size_t d = ++i;
        if ((i = digits_end(p, i, n)) == d)
            return 0;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        if (++i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        size_t d = i;
        if ((i = digits_end(p, i, n)) == d)
            return 0;
    }
    return i;
}

static size_t literal_end(const char *p, size_t i, size_t n, const char *word, size_t wlen)
{
    return n - i >= wlen && memcmp(p + i, word, wlen) == 0 ? i + wlen : 0;
}

/* A value that is not an object or array: its end (0: invalid) and kind. */
static size_t scalar_end(const char *p, size_t i, size_t n, enum value_kind *kind, int *escaped)
{
    switch (p[i]) {
    case '"':
        *kind = VK_STRING;
        return string_end(p, i, n, escaped);
    case 't':
        *kind = VK_TRUE;
        return literal_end(p, i, n, "true", 4);
    case 'f':
        *kind = VK_FALSE;
        return literal_end(p, i, n, "false", 5);
    case 'n':
        *kind = VK_NULL;
        return literal_end(p, i, n, "null", 4);
    default:
        *kind = VK_NUMBER;
        return number_end(p, i, n);
    }
}

/* Index just after the value starting at p[i], or 0 when it is not valid
 * JSON or nests deeper than PB_ENVELOPE_FAST_MAX_DEPTH. Iterative: `close`
 * holds the bracket each open container expects. */
static size_t value_end(const char *p, size_t i, size_t n, struct member *m)
{
    char close[PB_ENVELOPE_FAST_MAX_DEPTH];
    int depth = 0;
    for (;;) {
        /* p[i] should start a value. */
        if (i >= n)
            return 0;
        if (p[i] == '{' || p[i] == '[') {
            if (depth == PB_ENVELOPE_FAST_MAX_DEPTH)
                return 0;
            if (depth == 0)
                m->kind = VK_CONTAINER;
            close[depth++] = p[i] == '{' ? '}' : ']';
            i = skip_ws(p, i + 1, n);
            if (i < n && p[i] == close[depth - 1]) {
                i++;
                depth--;
            } else if (close[depth - 1] == ']') {
                continue; /* the array's first element */
            } else {
                goto member_name;
            }
        } else {
            enum value_kind kind;
            int escaped = 0;
            if (!(i = scalar_end(p, i, n, &kind, &escaped)))
                return 0;
            if (depth == 0) {
                m->kind = kind;
                m->escaped = escaped;
            }
        }
        /* A value ended: close what it completes, then a comma or done. */
        for (;;) {
            if (depth == 0)
                return i;
            i = skip_ws(p, i, n);
            if (i >= n)
                return 0;
            if (p[i] != close[depth - 1])
                break;
            i++;
            depth--;
        }
        if (p[i] != ',')
            return 0;
        i = skip_ws(p, i + 1, n);
        if (close[depth - 1] == ']')
            continue;
    member_name: {
        int escaped = 0;
        if (i >= n || p[i] != '"' || !(i = string_end(p, i, n, &escaped)))
            return 0;
        i = skip_ws(p, i, n);
        if (i >= n || p[i] != ':')
            return 0;
        i = skip_ws(p, i + 1, n);
    }
    }
}

static int name_is(const char *k, size_t len, const char *name)
{
    return strlen(name) == len && memcmp(k, name, len) == 0;
}

static int field_of(const char *k, size_t len, int flags)
{
    int aliases = flags & PB_ENV_HTTP_ALIASES;
    if (name_is(k, len, "event"))
        return FF_EVENT;
    if (name_is(k, len, "id"))
        return FF_ID;
    if (name_is(k, len, "user_id") || (aliases && (name_is(k, len, "userId") || name_is(k, len, "uid"))))
        return FF_USER_ID;
    if (name_is(k, len, "task"))
        return FF_TASK;
    if (aliases && name_is(k, len, "group"))
        return FF_GROUP;
    if (name_is(k, len, "final"))
        return FF_FINAL;
    if (name_is(k, len, "data"))
        return FF_DATA;
    if (aliases && name_is(k, len, "message"))
        return FF_ALIAS;
    return FF_OTHER;
}

/* Reads the top-level object's members into m[]. 0, or -1 for anything
 * the full parse must see: invalid text, an escaped member name, a member
 * the fast path reads given twice, the "message" alias. */
static int read_members(const char *buf, size_t len, int flags, struct member *m)
{
    size_t i = skip_ws(buf, 0, len);
    if (i >= len || buf[i] != '{')
        return -1;
    i = skip_ws(buf, i + 1, len);
    if (i < len && buf[i] == '}')
        return skip_ws(buf, i + 1, len) == len ? 0 : -1;
    for (;;) {
        int escaped = 0;
        size_t name = i + 1;
        if (i >= len || buf[i] != '"' || !(i = string_end(buf, i, len, &escaped)) || escaped)
            return -1;
        int f = field_of(buf + name, i - 1 - name, flags);
        i = skip_ws(buf, i, len);
        if (f == FF_ALIAS || i >= len || buf[i] != ':')
            return -1;
        i = skip_ws(buf, i + 1, len);
        struct member v = {.p = buf + i};
        size_t end = value_end(buf, i, len, &v);
        if (!end)
            return -1;
        v.n = end - i;
        if (f != FF_OTHER) {
            if (m[f].seen)
                return -1;
            m[f] = v;
            m[f].seen = 1;
        }
        i = skip_ws(buf, end, len);
        if (i < len && buf[i] == ',') {
            i = skip_ws(buf, i + 1, len);
            continue;
        }
        if (i < len && buf[i] == '}')
            return skip_ws(buf, i + 1, len) == len ? 0 : -1;
        return -1;
    }
}

/* Whether the full parse would take m as this ID-like field's value
 * unchanged. A string without escapes needs no decoding; one holding '?'
 * goes to the full parse, which tells it from a decoded lone surrogate. */
static int plain_id(const struct member *m, int numbers_ok)
{
    if (m->kind == VK_NUMBER)
        return numbers_ok && m->n <= PB_MAX_ID_BYTES;
    return m->kind == VK_STRING && !m->escaped && m->n >= 3 && m->n - 2 <= PB_MAX_ID_BYTES &&
           !memchr(m->p, '?', m->n);
}

/* The raw text of an ID field's value as the full parse stores it. */
static void id_text(const struct member *m, const char **s, size_t *n)
{
    int quoted = m->kind == VK_STRING;
    *s = m->p + quoted;
    *n = m->n - 2 * (size_t)quoted;
}

static const int id_fields[] = {FF_EVENT, FF_ID, FF_USER_ID, FF_TASK, FF_GROUP};

static char **id_slot(struct pb_event *ev, int f)
{
    switch (f) {
    case FF_EVENT:
        return &ev->event;
    case FF_ID:
        return &ev->id;
    case FF_USER_ID:
        return &ev->user_id;
    case FF_TASK:
        return &ev->task;
    default:
        return &ev->group;
    }
}

/* Whether every member read can be stored without the full parse's help. */
static int decidable(const struct member *m)
{
    for (size_t k = 0; k < sizeof(id_fields) / sizeof(id_fields[0]); k++) {
        const struct member *v = &m[id_fields[k]];
        int numbers_ok = id_fields[k] == FF_ID || id_fields[k] == FF_USER_ID ||
                         id_fields[k] == FF_TASK;
        if (v->seen && v->kind != VK_NULL && !plain_id(v, numbers_ok))
            return 0;
    }
    const struct member *fin = &m[FF_FINAL];
    if (fin->seen && fin->kind != VK_TRUE && fin->kind != VK_FALSE && fin->kind != VK_NULL)
        return 0;
    const struct member *data = &m[FF_DATA];
    return !(data->seen && data->kind == VK_STRING && data->escaped);
}

/* Copies the members into ev. -1 when out of memory (ev's copies freed). */
static int store(const struct member *m, struct pb_event *ev)
{
    char *copies[sizeof(id_fields) / sizeof(id_fields[0])] = {0};
    char *data_text = NULL;
    int oom = 0;
    for (size_t k = 0; k < sizeof(id_fields) / sizeof(id_fields[0]); k++) {
        const struct member *v = &m[id_fields[k]];
        const char *s;
        size_t n;
        if (!v->seen || v->kind == VK_NULL)
            continue;
        id_text(v, &s, &n);
        oom |= !(copies[k] = strndup(s, n)); /* no NUL: unescaped JSON text */
    }
    const struct member *data = &m[FF_DATA];
    if (data->seen && data->kind == VK_STRING)
        oom |= !(data_text = strndup(data->p + 1, data->n - 2));
    if (oom) {
        for (size_t k = 0; k < sizeof(copies) / sizeof(copies[0]); k++)
            free(copies[k]);
        free(data_text);
        return -1;
    }
    for (size_t k = 0; k < sizeof(id_fields) / sizeof(id_fields[0]); k++) {
        char **slot = id_slot(ev, id_fields[k]);
        free(*slot);
        *slot = copies[k];
    }
    ev->final = m[FF_FINAL].seen && m[FF_FINAL].kind == VK_TRUE;
    if (data->seen) {
        ev->data = data->p;
        ev->data_len = data->n;
        free(ev->data_text);
        ev->data_text = data_text;
        ev->data_text_len = data_text ? data->n - 2 : 0;
        ev->data_is_string = data->kind == VK_STRING;
    }
    return 0;
}

int pb_envelope_parse_fast(const char *buf, size_t len, int flags, struct pb_event *ev)
{
    struct member m[FF_COUNT];
    memset(m, 0, sizeof(m));
    if (read_members(buf, len, flags, m) || !decidable(m) || store(m, ev))
        return PB_ENVELOPE_SLOW;
    return PB_DROP_NONE;
}

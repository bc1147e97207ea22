/* Growable byte buffer with a hard cap, and JSON string escaping shared by
 * every place that writes JSON (frames, HTTP answers, logs, metrics). */
#include "pushbridge/core/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pb_buf_init(struct pb_buf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
    b->owned = 1;
}

void pb_buf_init_static(struct pb_buf *b, char *storage, size_t size)
{
    memset(b, 0, sizeof(*b));
    b->data = storage;
    b->cap = size;
    if (size)
        storage[0] = '\0';
}

void pb_buf_free(struct pb_buf *b)
{
    if (b->owned)
        free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void pb_buf_reset(struct pb_buf *b)
{
    b->len = 0;
    b->truncated = 0;
}

int pb_buf_reserve(struct pb_buf *b, size_t n)
{
    /* One byte beyond len is kept for a terminating NUL so that text
     * buffers can be handed to C string functions. */
    if (b->len + n + 1 <= b->cap)
        return 0;
    if (!b->owned || b->len + n + 1 > b->max) {
        b->truncated = 1;
        return -1;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    if (cap > b->max)
        cap = b->max;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->truncated = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void pb_buf_append(struct pb_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return; /* p may be NULL then (lws passes empty bodies so) */
    if (pb_buf_reserve(b, n))
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void pb_buf_puts(struct pb_buf *b, const char *s)
{
    pb_buf_append(b, s, strlen(s));
}

void pb_buf_printf(struct pb_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || pb_buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

int pb_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static size_t escape_len(unsigned char c)
{
    if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f')
        return 2;
    return c < 0x20 ? 6 : 1;
}

size_t pb_json_string_len(const char *s, size_t n)
{
    size_t len = 2;
    for (size_t i = 0; i < n; i++)
        len += escape_len((unsigned char)s[i]);
    return len;
}

void pb_json_string_write(char *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    *out++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': *out++ = '\\'; *out++ = '"'; break;
        case '\\': *out++ = '\\'; *out++ = '\\'; break;
        case '\n': *out++ = '\\'; *out++ = 'n'; break;
        case '\r': *out++ = '\\'; *out++ = 'r'; break;
        case '\t': *out++ = '\\'; *out++ = 't'; break;
        case '\b': *out++ = '\\'; *out++ = 'b'; break;
        case '\f': *out++ = '\\'; *out++ = 'f'; break;
        default:
            if (c < 0x20) {
                memcpy(out, "\\u00", 4);
                out[4] = hex[c >> 4];
                out[5] = hex[c & 15];
                out += 6;
            } else {
                *out++ = (char)c;
            }
        }
    }
    *out = '"';
}

void pb_buf_json_string(struct pb_buf *b, const char *s, size_t n)
{
    size_t len = pb_json_string_len(s, n);
    if (pb_buf_reserve(b, len))
        return;
    pb_json_string_write(b->data + b->len, s, n);
    b->len += len;
    b->data[b->len] = '\0';
}

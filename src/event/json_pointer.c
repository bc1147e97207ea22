/* RFC 6901 JSON Pointer over raw, already validated JSON text. One forward
 * scan per token: skip to the member (or element) it names, step in, repeat.
 * Strings are skipped by their escapes, containers by counting brackets, so
 * depth costs no stack; nothing is allocated. Member names are compared as
 * bytes, and decoded only when they hold an escape. */
#include "pushbridge/event/json_pointer.h"

#include <string.h>

#include "pushbridge/core/buf.h"
#include "pushbridge/event/envelope.h"

const char *pb_json_trim(const char *s, size_t n, size_t *outlen)
{
    size_t i = pb_json_skip_ws(s, 0, n);
    while (n > i && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    *outlen = n - i;
    return s + i;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

long pb_json_string_decode(const char *span, size_t n, char *out, size_t cap)
{
    if (n < 2 || span[0] != '"' || !cap)
        return -1;
    size_t o = 0, end = n - 1; /* the closing quote */
    for (size_t i = 1; i < end;) {
        char buf[4];
        size_t k = 1;
        if (span[i] != '\\') {
            buf[0] = span[i++];
        } else if (i + 1 < end && span[i + 1] != 'u') {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *f = strchr(from, span[i + 1]);
            buf[0] = f ? to[f - from] : span[i + 1];
            i += 2;
        } else {
            unsigned cp = 0xfffd, hi, lo;
            if (i + 6 <= end && pb_json_hex4(span + i + 2, &hi) == 0) {
                i += 6;
                if (hi < 0xd800 || hi > 0xdfff) {
                    cp = hi;
                } else if (hi <= 0xdbff && i + 6 <= end && span[i] == '\\' && span[i + 1] == 'u' &&
                           pb_json_hex4(span + i + 2, &lo) == 0 && lo >= 0xdc00 && lo <= 0xdfff) {
                    cp = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
                    i += 6;
                }
            } else {
                i = end; /* not valid JSON: the caller promised it was */
            }
            k = put_utf8(buf, cp);
        }
        if (o + k >= cap)
            return -1;
        memcpy(out + o, buf, k);
        o += k;
    }
    out[o] = '\0';
    return (long)o;
}

/* 1 when the member name at p[start..end) (quotes included) is the token. */
static int name_is(const char *p, size_t start, size_t end, const char *tok, size_t toklen)
{
    const char *name = p + start + 1;
    size_t len = end - start - 2;
    if (!memchr(name, '\\', len))
        return len == toklen && memcmp(name, tok, toklen) == 0;
    char buf[1024];
    long d = pb_json_string_decode(p + start, end - start, buf, sizeof(buf));
    return d >= 0 && (size_t)d == toklen && memcmp(buf, tok, toklen) == 0;
}

/* An array index as RFC 6901 writes it: "0", or digits without a leading 0. */
static long array_index(const char *tok, size_t len)
{
    if (!len || len > 9 || (len > 1 && tok[0] == '0'))
        return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (tok[i] < '0' || tok[i] > '9')
            return -1;
        v = v * 10 + (tok[i] - '0');
    }
    return v;
}

/* The value p[i..] is an object: the start of the value of its last member
 * named tok, or n. */
static size_t in_object(const char *p, size_t i, size_t n, const char *tok, size_t toklen)
{
    size_t found = n;
    for (i = pb_json_skip_ws(p, i + 1, n); i < n && p[i] == '"';) {
        size_t kend = pb_json_skip_string(p, i, n);
        int match = name_is(p, i, kend, tok, toklen);
        i = pb_json_skip_ws(p, kend, n);
        if (i >= n || p[i] != ':')
            return n;
        i = pb_json_skip_ws(p, i + 1, n);
        if (match)
            found = i;
        i = pb_json_skip_ws(p, pb_json_skip_value(p, i, n), n);
        if (i >= n || p[i] != ',')
            break;
        i = pb_json_skip_ws(p, i + 1, n);
    }
    return found;
}

/* The value p[i..] is an array: the start of element idx, or n. */
static size_t in_array(const char *p, size_t i, size_t n, long idx)
{
    i = pb_json_skip_ws(p, i + 1, n);
    if (i < n && p[i] == ']')
        return n;
    for (long k = 0; i < n; k++) {
        if (k == idx)
            return i;
        i = pb_json_skip_ws(p, pb_json_skip_value(p, i, n), n);
        if (i >= n || p[i] != ',')
            return n;
        i = pb_json_skip_ws(p, i + 1, n);
    }
    return n;
}

long pb_json_members(const char *p, size_t n, struct pb_json_member *out, size_t max)
{
    size_t i = pb_json_skip_ws(p, 0, n);
    long count = 0;
    if (i >= n || p[i] != '{')
        return -1;
    for (i = pb_json_skip_ws(p, i + 1, n); i < n && p[i] == '"';) {
        size_t kstart = i, kend = pb_json_skip_string(p, i, n);
        i = pb_json_skip_ws(p, kend, n);
        if (i >= n || p[i] != ':')
            break;
        size_t vstart = i = pb_json_skip_ws(p, i + 1, n);
        i = pb_json_skip_value(p, i, n);
        if ((size_t)count < max)
            out[count] = (struct pb_json_member){p + kstart + 1, kend - kstart - 2, p + vstart,
                                                 i - vstart};
        count++;
        i = pb_json_skip_ws(p, i, n);
        if (i >= n || p[i] != ',')
            break;
        i = pb_json_skip_ws(p, i + 1, n);
    }
    return count;
}

int pb_json_pointer_find(const char *json, size_t len, char *const *tokens,
                         const size_t *token_lens, size_t ntokens, const char **span,
                         size_t *spanlen)
{
    size_t i = pb_json_skip_ws(json, 0, len);
    for (size_t t = 0; t < ntokens && i < len; t++) {
        if (json[i] == '{') {
            i = in_object(json, i, len, tokens[t], token_lens[t]);
        } else if (json[i] == '[') {
            long idx = array_index(tokens[t], token_lens[t]);
            i = idx < 0 ? len : in_array(json, i, len, idx);
        } else {
            i = len;
        }
    }
    if (i >= len)
        return 0;
    size_t end = pb_json_skip_value(json, i, len);
    *span = json + i;
    *spanlen = end - i;
    return 1;
}

/* HTTP/1.1 request framing, strictly (RFC 9112). The head is parsed in one
 * pass once its blank line is in the buffer; only the fields the server acts
 * on are kept, as pointers into the buffer. Every ambiguity a front proxy
 * could resolve differently is refused rather than guessed at. */
#include "pushbridge/api/httpparse.h"

#include <libwebsockets.h>
#include <string.h>
#include <strings.h>

/* RFC 9110 5.6.2 tchar. */
static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int method_of(const char *m, size_t n)
{
    static const struct {
        const char *name;
        int method;
    } known[] = {
        {"GET", LWSHUMETH_GET},       {"POST", LWSHUMETH_POST},     {"PUT", LWSHUMETH_PUT},
        {"PATCH", LWSHUMETH_PATCH},   {"DELETE", LWSHUMETH_DELETE}, {"HEAD", LWSHUMETH_HEAD},
        {"OPTIONS", LWSHUMETH_OPTIONS},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strlen(known[i].name) == n && memcmp(known[i].name, m, n) == 0)
            return known[i].method;
    return -1;
}

static int name_is(const char *name, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

/* Does the comma-separated list v[0..n) hold token (case-insensitive)? */
static int list_has(const char *v, size_t n, const char *token)
{
    size_t tl = strlen(token), i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < n && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end - start == tl && strncasecmp(v + start, token, tl) == 0)
            return 1;
    }
    return 0;
}

static int fail(const char **why, const char *msg, int status)
{
    *why = msg;
    return status;
}

/* The request line: METHOD SP origin-form SP HTTP/1.x */
static int request_line(const char *p, size_t n, struct pb_http_head *h, const char **why)
{
    const char *sp1 = memchr(p, ' ', n);
    if (!sp1 || sp1 == p)
        return fail(why, "the request line must be METHOD /path HTTP/1.1", 400);
    for (const char *q = p; q < sp1; q++)
        if (!is_tchar((unsigned char)*q))
            return fail(why, "the method is not a token", 400);
    h->method = method_of(p, (size_t)(sp1 - p));
    const char *t = sp1 + 1, *end = p + n;
    const char *sp2 = memchr(t, ' ', (size_t)(end - t));
    if (!sp2 || sp2 == t || *t != '/')
        return fail(why, "the request target must be a path starting with /", 400);
    for (const char *q = t; q < sp2; q++)
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f || *q == '#')
            return fail(why, "the request target has a character that must be %-escaped", 400);
    h->target = t;
    h->target_len = (size_t)(sp2 - t);
    const char *v = sp2 + 1;
    if (end - v != 8 || memcmp(v, "HTTP/1.", 7) != 0) {
        if (end - v >= 5 && memcmp(v, "HTTP/", 5) == 0)
            return fail(why, "only HTTP/1.1 and HTTP/1.0 are spoken here", 505);
        return fail(why, "the request line must end with HTTP/1.1", 400);
    }
    if (v[7] != '0' && v[7] != '1')
        return fail(why, "only HTTP/1.1 and HTTP/1.0 are spoken here", 505);
    h->minor = v[7] - '0';
    return 0;
}

/* One header field line (no CRLF). Updates the counters in seen[]. */
enum { SEEN_HOST, SEEN_CL, SEEN_TE, SEEN_AUTH, SEEN_COUNT };

static int header_line(const char *p, size_t n, struct pb_http_head *h, int seen[SEEN_COUNT],
                       int *conn_close, int *conn_keep, const char **why)
{
    if (p[0] == ' ' || p[0] == '\t')
        return fail(why, "folded header lines (obs-fold) are not accepted", 400);
    const char *colon = memchr(p, ':', n);
    if (!colon || colon == p)
        return fail(why, "a header line has no field name", 400);
    for (const char *q = p; q < colon; q++)
        if (!is_tchar((unsigned char)*q))
            return fail(why, "a header field name has a space or another non-token character",
                        400);
    size_t nl = (size_t)(colon - p);
    const char *v = colon + 1, *end = p + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vl = (size_t)(end - v);
    for (const char *q = v; q < end; q++)
        if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
            return fail(why, "a header value has a control character", 400);

    if (name_is(p, nl, "host")) {
        if (seen[SEEN_HOST]++)
            return fail(why, "more than one Host header", 400);
    } else if (name_is(p, nl, "content-length")) {
        if (seen[SEEN_CL]++)
            return fail(why, "more than one Content-Length header", 400);
        if (vl == 0 || strspn(v, "0123456789") < vl)
            return fail(why, "Content-Length must be one decimal number", 400);
        /* Saturates: any length past 10^17 is too large all the same. */
        long long cl = 0;
        for (size_t i = 0; i < vl; i++)
            cl = cl > 100000000000000000LL ? cl : cl * 10 + (v[i] - '0');
        h->content_length = cl;
    } else if (name_is(p, nl, "transfer-encoding")) {
        if (seen[SEEN_TE]++ || !name_is(v, vl, "chunked"))
            return fail(why, "the only Transfer-Encoding accepted is one chunked", 501);
        h->chunked = 1;
    } else if (name_is(p, nl, "authorization")) {
        if (seen[SEEN_AUTH]++)
            return fail(why, "more than one Authorization header", 400);
        h->auth = v;
        h->auth_len = vl;
    } else if (name_is(p, nl, "connection")) {
        *conn_close |= list_has(v, vl, "close");
        *conn_keep |= list_has(v, vl, "keep-alive");
    } else if (name_is(p, nl, "expect")) {
        if (!name_is(v, vl, "100-continue"))
            return fail(why, "the only Expect accepted is 100-continue", 417);
        h->expect_continue = 1;
    }
    return 0;
}

int pb_http_head_parse(const char *buf, size_t len, struct pb_http_head *h, const char **why)
{
    /* Find the blank line, refusing bare CR or LF on the way. */
    size_t end = 0;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (c == '\n')
            return fail(why, "lines must end with CRLF (a bare LF was sent)", 400);
        if (c == '\0')
            return fail(why, "the request head has a NUL byte", 400);
        if (c != '\r')
            continue;
        if (i + 1 >= len)
            break;
        if (buf[i + 1] != '\n')
            return fail(why, "lines must end with CRLF (a bare CR was sent)", 400);
        if (i + 3 < len && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
            end = i + 4;
            break;
        }
        if (i == 0)
            return fail(why, "the request starts with an empty line", 400);
        i++; /* skip the LF */
    }
    if (!end) {
        if (len > PB_HTTP_MAX_HEAD)
            return fail(why, "the request head is over 8 KiB", 431);
        return 0;
    }
    if (end > PB_HTTP_MAX_HEAD)
        return fail(why, "the request head is over 8 KiB", 431);

    memset(h, 0, sizeof(*h));
    h->content_length = -1;
    h->head_len = end;
    const char *line = buf, *stop = buf + end - 2; /* the last CRLF ends the head */
    const char *eol = memchr(line, '\r', (size_t)(stop - line));
    int rc = request_line(line, (size_t)(eol - line), h, why);
    if (rc)
        return rc;
    int seen[SEEN_COUNT] = {0}, conn_close = 0, conn_keep = 0;
    for (line = eol + 2; line < stop; line = eol + 2) {
        eol = memchr(line, '\r', (size_t)(stop - line));
        if ((rc = header_line(line, (size_t)(eol - line), h, seen, &conn_close, &conn_keep, why)))
            return rc;
    }
    if (h->minor == 1 && !seen[SEEN_HOST])
        return fail(why, "HTTP/1.1 requests need a Host header", 400);
    if (h->chunked && h->content_length >= 0)
        return fail(why, "Content-Length and Transfer-Encoding together are ambiguous", 400);
    h->keep_alive = h->minor == 1 ? !conn_close : conn_keep && !conn_close;
    return 1;
}

/* ---- chunked bodies (RFC 9112 7.1) ---- */

enum { CK_SIZE, CK_DATA, CK_DATA_END, CK_TRAILER };
#define CK_LINE_MAX 256      /* chunk-size line with extensions */
#define CK_TRAILER_MAX 8192 /* all trailer fields together */

/* chunk-size [; ext] CRLF: -1 bad, else the size in *size. */
static int chunk_size(const char *p, size_t n, unsigned long long *size)
{
    size_t i = 0;
    unsigned long long v = 0;
    for (; i < n && pb_hex_digit(p[i]) >= 0; i++) {
        if (i >= 15)
            return -1;
        v = v * 16 + (unsigned)pb_hex_digit(p[i]);
    }
    if (i == 0)
        return -1;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    if (i < n && p[i] != ';')
        return -1;
    for (; i < n; i++)
        if ((unsigned char)p[i] < 0x20 && p[i] != '\t')
            return -1;
    *size = v;
    return 0;
}

/* A CRLF-ended line at p[0..n): its length without CRLF, -1 incomplete,
 * -2 bad (bare CR or LF). */
static long line_len(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n')
            return -2;
        if (p[i] == '\r') {
            if (i + 1 >= n)
                return -1;
            return p[i + 1] == '\n' ? (long)i : -2;
        }
    }
    return -1;
}

int pb_chunked_feed(struct pb_chunked *ck, const char *buf, size_t len, size_t *used,
                    struct pb_buf *out, size_t max_body)
{
    size_t pos = 0;
    for (;;) {
        *used = pos;
        const char *p = buf + pos;
        size_t n = len - pos;
        long l;
        switch (ck->state) {
        case CK_SIZE:
            l = line_len(p, n);
            if (l == -1)
                return n > CK_LINE_MAX ? -1 : 0;
            if (l < 0 || l > CK_LINE_MAX || chunk_size(p, (size_t)l, &ck->remain))
                return -1;
            pos += (size_t)l + 2;
            ck->state = ck->remain ? CK_DATA : CK_TRAILER;
            break;
        case CK_DATA: {
            if (!n)
                return 0;
            size_t take = n < ck->remain ? n : (size_t)ck->remain;
            if (out->len + take > max_body)
                return -2;
            pb_buf_append(out, p, take);
            if (out->truncated)
                return -2;
            pos += take;
            ck->remain -= take;
            if (!ck->remain)
                ck->state = CK_DATA_END;
            break;
        }
        case CK_DATA_END:
            if (n < 2)
                return 0;
            if (p[0] != '\r' || p[1] != '\n')
                return -1;
            pos += 2;
            ck->state = CK_SIZE;
            break;
        default: /* CK_TRAILER: fields until an empty line; they are ignored */
            l = line_len(p, n);
            if (l == -1)
                return ck->trailer_bytes + n > CK_TRAILER_MAX ? -1 : 0;
            if (l < 0)
                return -1;
            pos += (size_t)l + 2;
            ck->trailer_bytes += (size_t)l + 2;
            if (ck->trailer_bytes > CK_TRAILER_MAX)
                return -1;
            if (l == 0) {
                *used = pos;
                return 1;
            }
        }
    }
}

/* HTTP/1.1 request framing (RFC 9112), strict: the request line, the header
 * fields the server acts on, and chunked bodies. Pure functions over a
 * buffer, apart from the connection handling (httpd.c) so that fuzz targets
 * and unit tests reach them. Anything a proxy could read another way (bare
 * LF, obs-fold, space before a colon, two Hosts or lengths, Content-Length
 * with chunked) is refused, never guessed at. */
#ifndef PB_HTTPPARSE_H
#define PB_HTTPPARSE_H

#include <stddef.h>

#include "pushbridge/core/buf.h"

/* Longest request head (request line + header fields) accepted: 431 past it. */
#define PB_HTTP_MAX_HEAD 8192

struct pb_http_head {
    int method;               /* LWSHUMETH_* numbering; -1 unknown */
    int minor;                /* HTTP/1.<minor> */
    const char *target;       /* request target, not NUL-terminated */
    size_t target_len;
    const char *auth;         /* Authorization value, or NULL */
    size_t auth_len;
    long long content_length; /* -1 when absent */
    int chunked;              /* Transfer-Encoding: chunked */
    int keep_alive;           /* the client allows another request after this one */
    int expect_continue;      /* Expect: 100-continue */
    size_t head_len;          /* bytes up to and including the blank line */
};

/* Parses the head of a request at buf[0..len). Returns 1 when complete
 * (h filled), 0 when more bytes are needed, or an HTTP status (400, 431,
 * 501, 505) with *why set to a sentence for the answer. */
int pb_http_head_parse(const char *buf, size_t len, struct pb_http_head *h, const char **why);

/* Incremental chunked-body decoder: consumes framing from buf[0..len) and
 * appends data to out. */
struct pb_chunked {
    int state;
    unsigned long long remain;
    size_t trailer_bytes;
};
/* Returns 1 when the body ended (*used = bytes consumed), 0 when it needs
 * more (*used consumed so far), -1 bad framing, -2 over max_body bytes. */
int pb_chunked_feed(struct pb_chunked *ck, const char *buf, size_t len, size_t *used,
                    struct pb_buf *out, size_t max_body);

#endif

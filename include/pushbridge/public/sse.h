/* Server-Sent Events: GET /sse on the public listener, a second transport
 * for the same hub connection (struct pb_conn) a WebSocket uses, for
 * browsers and networks where a WebSocket cannot be opened. Login comes from
 * the request (token in the query or an Authorization: Bearer header,
 * events=a,b, resume= or Last-Event-ID); each queued frame goes out as
 * `id: <pos>` (when the frame has one) and `data: <the same JSON>`. On the
 * worker that holds the stream. */
#ifndef PB_SSE_H
#define PB_SSE_H

#include <libwebsockets.h>
#include <stddef.h>

struct pb_worker;
struct pb_pss;

/* Where an SSE request stands: its login is with the hub; the hub took it
 * and the headers are to be written; streaming; refused (429 to write). */
enum pb_sse_state { PB_SSE_LOGIN = 1, PB_SSE_HEADERS, PB_SSE_STREAM, PB_SSE_REFUSED };

/* 1 when this HTTP request is for the SSE endpoint (public listener). */
int pb_sse_wants(struct lws *wsi);
/* The lws HTTP callbacks of an SSE request and then of its stream. */
int pb_sse_callback(struct pb_worker *w, struct lws *wsi, enum lws_callback_reasons reason,
                    struct pb_pss *pss);

/* Where the frame's "pos" string is (the SSE id), or NULL when it has none.
 * Only the members before "data" are looked at: the producer's data may
 * hold any text. Exposed for the unit test. */
const char *pb_sse_frame_pos(const char *json, size_t len, size_t *pos_len);
/* Bytes pb_sse_format writes for one payload and pos. */
size_t pb_sse_format_len(const char *json, size_t len, size_t pos_len);
/* One SSE message: "id: POS\n" (when pos), then "data: " lines (every line
 * break of the JSON starts a new data line, so a pretty-printed payload
 * arrives whole), then a blank line. Returns the bytes written. */
size_t pb_sse_format(char *out, const char *json, size_t len, const char *pos, size_t pos_len);

#endif

/* Server-Sent Events transport (SPEC 9). An SSE stream is a pb_conn like a
 * WebSocket: the same hub, queue bounds, slow-client policy, keep-alive
 * sweep, token lifetime, metrics and connection counts. Only the edges
 * differ:
 *   - login is the request itself; a refusal is an HTTP status with the
 *     usual JSON error body, before any stream starts;
 *   - each frame is written as an SSE message (id: pos, data: JSON); the
 *     keep-alive sweep's WebSocket ping (a frame with no payload) becomes a
 *     comment line, which also keeps proxies from timing the stream out;
 *   - a close (slow consumer 4009, token expired 4004, shutdown 1001) is a
 *     last message {"type":"close","code":N,"reason":R}, then the end of
 *     the response, so a client learns why as a WebSocket client would;
 *     before the hub answered the login (a held resume) it is a refusal,
 *     503 with the JSON error body;
 *   - the client cannot answer a refresh on this one-way stream: it opens a
 *     new stream with a fresh token and resume=<last pos> (pushbridge.js
 *     does), then drops the old one; resume makes that seamless.
 * The client never writes, so "last heard from" (the idle cut) is when the
 * socket last took bytes: a stream whose socket has taken nothing, keep-
 * alive comments included, for ws.idle_timeout_ms is cut. */
#include "pushbridge/public/sse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "pushbridge/public/admission.h"
#include "pushbridge/core/log.h"
#include "pushbridge/public/worker.h"
#include "pushbridge/public/ws.h"
#include "pushbridge/hub/tokenlife.h"

#define SSE_PATH "/sse"
/* What an SSE stream needs beyond a WebSocket's pb_pss, allocated with
 * the stream's login and freed at its close (pss->sse), so that the pb_pss
 * every WebSocket connection holds does not carry it. */
struct pb_sse_stream {
    int state;    /* enum pb_sse_state */
    int rx_on;    /* rx is started */
    char *origin; /* the request's Origin, for the stream's head (<= 512 bytes) */
    ev_io rx;     /* notices the client going away (peer_readable) */
};

static void stream_free(struct pb_worker *w, struct pb_pss *pss)
{
    if (!pss->sse)
        return;
    if (pss->sse->rx_on)
        ev_io_stop(w->loop, &pss->sse->rx);
    free(pss->sse->origin);
    free(pss->sse);
    pss->sse = NULL;
}

/* Bytes gathered into one write (a larger frame goes alone). */
#define SSE_GATHER_BYTES (16 * 1024)
/* Longest token taken from the query or the header. */
#define SSE_TOKEN_MAX 8192
#define SSE_EVENTS_MAX 2048
/* Longest query argument read (the token with its name): see url_arg. */
#define SSE_ARG_MAX (SSE_TOKEN_MAX + 16)
#define SSE_KEEPALIVE ": keep-alive\n\n"

/* Asks for a WRITEABLE callback. lws refuses (-1) only a connection it is
 * already closing (its descriptor gone from the poll table) or whose poll
 * set it cannot change: no WRITEABLE would come, so the connection is
 * dropped now rather than left with a queue nobody drains. */
static void arm_writable(struct lws *wsi)
{
    if (lws_callback_on_writable(wsi) < 0)
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static void hook_want_write(struct pb_conn *c)
{
    arm_writable(c->transport);
}

/* As for a WebSocket: the WRITEABLE callback writes the close message; a
 * client that never lets us write is dropped after 3 s. */
static void hook_kill(struct pb_conn *c)
{
    arm_writable(c->transport);
    lws_set_timeout(c->transport, PENDING_TIMEOUT_USER_OK, 3);
}

/* Dropped from the WRITEABLE callback (closing with no code): lws 4.1 does
 * not act on an async-kill timeout of an HTTP connection mid-response. */
static void hook_cut(struct pb_conn *c)
{
    arm_writable(c->transport);
    lws_set_timeout(c->transport, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static void peer_readable(struct ev_loop *loop, ev_io *w, int revents);

static struct pb_worker *worker_of(struct lws *wsi)
{
    struct pb_vhd *vhd = lws_get_vhost_user(lws_get_vhost(wsi));
    return vhd->w;
}

/* The hub took the login: the stream's headers go out with the first
 * write (the hub may answer from another thread, outside any lws callback,
 * so nothing is written here), the welcome and snapshot after them. */
static void hook_started(struct pb_conn *c)
{
    struct lws *wsi = c->transport;
    struct pb_worker *w = worker_of(wsi);
    struct pb_pss *pss = lws_wsi_user(wsi);
    pss->sse->state = PB_SSE_HEADERS;
    /* ws.send_buffer_bytes, as for a WebSocket: the kernel must not hold
     * megabytes for a reader that stopped before the queue bound counts. */
    int sndbuf = (int)w->cfg->ws_send_buffer_bytes;
    if (sndbuf && setsockopt(lws_get_socket_fd(wsi), SOL_SOCKET, SO_SNDBUF, &sndbuf,
                             sizeof(sndbuf)))
        pb_debug("sse connection %llu: ws.send_buffer_bytes not applied: %s",
                 (unsigned long long)c->id, strerror(errno));
    /* lws's own HTTP timeouts are for requests; the stream lives until the
     * client goes or the hub closes it (keep-alive sweep, token, policy). */
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    ev_io_init(&pss->sse->rx, peer_readable, lws_get_socket_fd(wsi), EV_READ);
    pss->sse->rx.data = pss;
    ev_io_start(w->loop, &pss->sse->rx);
    pss->sse->rx_on = 1;
    pb_token_schedule(c, pb_now_ms());
    pb_admission_release(w->env.admission, lws_get_socket_fd(wsi));
    pb_debug("sse connection %llu logged in as %s", (unsigned long long)c->id, c->ident.user);
    arm_writable(wsi);
}

static void hook_refused(struct pb_conn *c)
{
    struct pb_pss *pss = lws_wsi_user(c->transport);
    pss->sse->state = PB_SSE_REFUSED;
    arm_writable(c->transport);
}

static const struct pb_conn_hooks sse_hooks = {
    .want_write = hook_want_write,
    .kill = hook_kill,
    .cut = hook_cut,
    .started = hook_started,
    .refused = hook_refused,
};

int pb_sse_wants(struct lws *wsi)
{
    char uri[64];
    int n = lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI);
    if (n <= 0)
        n = lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_POST_URI);
    if (n <= 0)
        return 0;
    char *q = strchr(uri, '?');
    if (q)
        *q = '\0';
    return strcmp(uri, SSE_PATH) == 0;
}

/* ---- framing ---- */

/* A resumed welcome's pos is where the replay that follows it ends: as an
 * SSE id it would let an EventSource that drops mid-replay skip the rest
 * (Last-Event-ID wins over resume=), so that welcome carries no id. */
static int resumed_welcome(const char *json, size_t len)
{
    static const char welcome[] = "{\"type\":\"welcome\"";
    return len > sizeof(welcome) - 1 && memcmp(json, welcome, sizeof(welcome) - 1) == 0 &&
           memmem(json, len, "\"resumed\":true", 15) != NULL;
}

const char *pb_sse_frame_pos(const char *json, size_t len, size_t *pos_len)
{
    /* Members before "data" are the bridge's own (type, event, id, task,
     * final, pos, user, conn_id), all JSON-escaped: a quote inside one is
     * written \", so the bytes "pos":" cannot occur inside a value there.
     * The first "data": is the data member for the same reason. */
    static const char key[] = "\"pos\":\"";
    static const char data_key[] = "\"data\":";
    size_t klen = sizeof(key) - 1, dlen = sizeof(data_key) - 1;
    for (size_t i = 0; i + klen <= len; i++) {
        if (i + dlen <= len && memcmp(json + i, data_key, dlen) == 0)
            return NULL;
        if (memcmp(json + i, key, klen) != 0)
            continue;
        const char *start = json + i + klen;
        const char *end = memchr(start, '"', len - i - klen);
        if (!end)
            return NULL;
        *pos_len = (size_t)(end - start);
        return start;
    }
    return NULL;
}

size_t pb_sse_format_len(const char *json, size_t len, size_t pos_len)
{
    /* Walks the text as pb_sse_format does: the two must agree byte for byte. */
    size_t n = (pos_len ? 4 + pos_len + 1 : 0) + 6 + len + 2;
    for (size_t i = 0; i < len; i++) {
        if (json[i] == '\r' && i + 1 < len && json[i + 1] == '\n')
            n -= 1; /* CRLF is one break: the CR is not written */
        else if (json[i] == '\n' || json[i] == '\r')
            n += 6; /* "\ndata: " (7 bytes) replaces the break (1) */
    }
    return n;
}

size_t pb_sse_format(char *out, const char *json, size_t len, const char *pos, size_t pos_len)
{
    char *p = out;
    if (pos && pos_len) {
        memcpy(p, "id: ", 4);
        memcpy(p + 4, pos, pos_len);
        p[4 + pos_len] = '\n';
        p += 4 + pos_len + 1;
    }
    memcpy(p, "data: ", 6);
    p += 6;
    for (size_t i = 0; i < len; i++) {
        char ch = json[i];
        if (ch == '\r' && i + 1 < len && json[i + 1] == '\n')
            continue; /* CRLF is one break */
        if (ch == '\r' || ch == '\n') {
            memcpy(p, "\ndata: ", 7);
            p += 7;
            continue;
        }
        *p++ = ch;
    }
    *p++ = '\n';
    *p++ = '\n';
    return (size_t)(p - out);
}

/* ---- the request: login ---- */

/* A JSON error answer before the stream starts; the connection ends. */
static int refuse(struct lws *wsi, unsigned int status, const char *code, const char *msg)
{
    struct pb_buf body;
    pb_buf_init(&body, 4096);
    pb_buf_puts(&body, "{\"error\":");
    pb_buf_json_string(&body, code, strlen(code));
    pb_buf_puts(&body, ",\"message\":");
    pb_buf_json_string(&body, msg, strlen(msg));
    pb_buf_puts(&body, "}");
    unsigned char buf[LWS_PRE + 4096 + 512];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;
    if (!body.truncated &&
        !lws_add_http_common_headers(wsi, status, "application/json", (lws_filepos_t)body.len,
                                     &p, end) &&
        !lws_add_http_header_by_name(wsi, (const unsigned char *)"connection:",
                                     (const unsigned char *)"close", 5, &p, end) &&
        !lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                     (const unsigned char *)"no-store", 8, &p, end) &&
        !lws_finalize_http_header(wsi, &p, end) && p + body.len < end) {
        memcpy(p, body.data, body.len);
        p += body.len;
        /* Closed either way; a peer already gone just does not read why. */
        if (lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_HEADERS) < 0)
            pb_debug("sse: the %u refusal could not be written", status);
    }
    pb_buf_free(&body);
    return -1;
}

/* The token: Authorization: Bearer <token> wins over ?token=. Returns 0
 * with *out a heap copy, 1 when there is none, -1 when too long/OOM. */
static int read_token(struct lws *wsi, char **out)
{
    int total = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (total > SSE_TOKEN_MAX + 7)
        return -1;
    if (total > 7) {
        char *h = malloc((size_t)total + 1);
        if (!h || lws_hdr_copy(wsi, h, total + 1, WSI_TOKEN_HTTP_AUTHORIZATION) < 0) {
            free(h);
            return -1;
        }
        if (strncmp(h, "Bearer ", 7) == 0) {
            memmove(h, h + 7, strlen(h + 7) + 1);
            *out = h;
            return 0;
        }
        free(h);
    }
    char *q = malloc(SSE_TOKEN_MAX + 8);
    if (!q)
        return -1;
    const char *v = lws_get_urlarg_by_name(wsi, "token=", q, SSE_TOKEN_MAX + 8);
    if (!v || !*v) {
        free(q);
        return 1;
    }
    memmove(q, v, strlen(v) + 1);
    *out = q;
    return 0;
}

/* The native login message the WebSocket form would have sent, so the one
 * pb_auth_login decides for both transports. */
static void login_json(struct pb_buf *b, const char *token, const char *events, int recent)
{
    pb_buf_puts(b, "{\"type\":\"auth\",\"token\":");
    pb_buf_json_string(b, token, strlen(token));
    if (events && *events) {
        pb_buf_puts(b, ",\"events\":[");
        const char *p = events;
        int n = 0;
        while (*p) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            if (len) {
                if (n++)
                    pb_buf_puts(b, ",");
                pb_buf_json_string(b, p, len);
            }
            p += len + (comma ? 1 : 0);
        }
        pb_buf_puts(b, "]");
    }
    if (recent > 0)
        pb_buf_printf(b, ",\"recent\":%d", recent);
    pb_buf_puts(b, "}");
}

/* The query argument `name` ("events=") into out: 1 found, 0 absent, -1
 * longer than cap (or out of memory). lws copies each query argument into
 * its buffer in turn and gives up at the first that does not fit, so that
 * buffer must hold the longest one there may be (the token), not just the
 * value asked for: with a small one, a long token hid every argument after
 * it. */
static int url_arg(struct lws *wsi, const char *name, char *out, size_t cap)
{
    char *tmp = malloc(SSE_ARG_MAX);
    if (!tmp)
        return -1;
    const char *v = lws_get_urlarg_by_name(wsi, name, tmp, SSE_ARG_MAX);
    int rc = !v ? 0 : strlen(v) < cap ? 1 : -1;
    if (rc == 1)
        memcpy(out, v, strlen(v) + 1);
    free(tmp);
    return rc;
}

/* ?recent=N (SPEC 9): 0 when absent, -1 when not an integer 0..100. */
static int read_recent(struct lws *wsi)
{
    char v[8];
    int rc = url_arg(wsi, "recent=", v, sizeof(v));
    if (rc <= 0)
        return rc;
    int n = 0;
    size_t len = strlen(v);
    for (size_t i = 0; i < len && n >= 0; i++)
        n = v[i] < '0' || v[i] > '9' || i >= 3 ? -1 : n * 10 + (v[i] - '0');
    return len && n >= 0 && n <= PB_AUTH_MAX_RECENT ? n : -1;
}

/* resume: the Last-Event-ID header (an EventSource reconnecting), else
 * ?resume=. Anything unusable resumes nothing ("resumed": false). */
static int read_resume(struct lws *wsi, char *out, size_t cap)
{
    out[0] = '\0';
    int n = lws_hdr_custom_length(wsi, "last-event-id:", 14);
    if (n > 0 && (size_t)n < cap && lws_hdr_custom_copy(wsi, out, (int)cap, "last-event-id:", 14) > 0)
        return 1;
    out[0] = '\0';
    int rc = url_arg(wsi, "resume=", out, cap);
    if (rc < 0) /* too long to be a pos: resumes nothing */
        out[0] = '\0';
    return rc != 0;
}

static int start_stream(struct lws *wsi, const char *origin)
{
    unsigned char buf[LWS_PRE + 1024];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;
    /* No Content-Length: the body lasts as long as the connection (lws
     * adds "connection: close" for that). */
    if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, "text/event-stream",
                                    LWS_ILLEGAL_HTTP_CONTENT_LEN, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end) ||
        /* nginx and friends would otherwise buffer the stream. */
        lws_add_http_header_by_name(wsi, (const unsigned char *)"x-accel-buffering:",
                                    (const unsigned char *)"no", 2, &p, end))
        return -1;
    /* The origin passed ws.allowed_origins: a page there may read us. */
    if (origin[0] &&
        lws_add_http_header_by_name(wsi, (const unsigned char *)"access-control-allow-origin:",
                                    (const unsigned char *)origin, (int)strlen(origin), &p, end))
        return -1;
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    return 0;
}

/* lws 4.1 stops reading an HTTP/1 connection whose request it considers in
 * progress, so a client that closes its stream would be noticed only when a
 * keep-alive comment fails (up to two ws.ping_interval_ms). A watcher of our
 * own on the socket sees the EOF at once; a client has nothing to send on
 * this stream, so whatever it sends is read and ignored. */
static void peer_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct pb_pss *pss = w->data;
    char buf[4096];
    ssize_t n = recv(w->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
        return;
    ev_io_stop(loop, w);
    pss->sse->rx_on = 0;
    if (pss->conn && !pss->conn->closing)
        pb_conns_cut(worker_of(pss->wsi)->conns, pss->conn);
    else
        arm_writable(pss->wsi); /* its WRITEABLE callback returns -1: closed */
}

/* GET /sse: the checks and the login; the response head goes out once the
 * hub took it (hook_started). -1 closes the connection (after the refusal,
 * when there is one). */
static int begin(struct pb_worker *w, struct lws *wsi, struct pb_pss *pss)
{
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
        return refuse(wsi, HTTP_STATUS_METHOD_NOT_ALLOWED, "method_not_allowed",
                      "/sse accepts GET");
    if (__atomic_load_n(w->env.stopping, __ATOMIC_RELAXED))
        return refuse(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "not_ready",
                      "the server is shutting down");
    if (!pb_ws_origin_allowed(w->cfg, wsi)) {
        PB_COUNT(w->metrics->origin_refused);
        return refuse(wsi, HTTP_STATUS_FORBIDDEN, "origin_not_allowed",
                      "this Origin may not connect (ws.allowed_origins)");
    }
    char *token = NULL;
    int rc = read_token(wsi, &token);
    if (rc < 0)
        return refuse(wsi, 414, "uri_too_long", "the token is too long");
    if (rc > 0)
        return refuse(wsi, HTTP_STATUS_UNAUTHORIZED, "missing_token",
                      "give the token as ?token=... or an Authorization: Bearer header");
    int recent = read_recent(wsi);
    if (recent < 0) {
        free(token);
        return refuse(wsi, HTTP_STATUS_BAD_REQUEST, "bad_recent",
                      "recent must be an integer from 0 to 100 (how many recent notifications)");
    }
    char events[SSE_EVENTS_MAX];
    rc = url_arg(wsi, "events=", events, sizeof(events));
    if (rc < 0) {
        free(token);
        return refuse(wsi, HTTP_STATUS_BAD_REQUEST, "bad_events",
                      "events= is over 2 KiB (at most 64 names of 1 to 256 bytes)");
    }
    const char *ev = rc ? events : NULL;
    struct pb_buf login;
    pb_buf_init(&login, SSE_TOKEN_MAX * 7 + SSE_EVENTS_MAX * 7);
    login_json(&login, token, ev, recent);
    free(token);
    if (login.truncated) {
        pb_buf_free(&login);
        return refuse(wsi, HTTP_STATUS_INTERNAL_SERVER_ERROR, "internal", "out of memory");
    }

    struct pb_conn *c = pb_conns_new_conn(w->conns, wsi);
    if (!c) {
        pb_buf_free(&login);
        return refuse(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "too_many_connections",
                      "the server is at ws.max_connections; try again later");
    }
    c->hooks = &sse_hooks;
    struct pb_identity id;
    const char *code;
    char msg[256];
    rc = pb_auth_login(w->env.auth, login.data, login.len, &id, &code, msg, sizeof(msg));
    pb_buf_free(&login);
    if (rc) {
        pb_info("sse connection %llu: login refused: %s: %s", (unsigned long long)c->id, code,
                msg);
        pb_conns_free_conn(w->conns, c);
        return refuse(wsi, HTTP_STATUS_UNAUTHORIZED, code, msg);
    }
    pss->sse = calloc(1, sizeof(*pss->sse));
    if (!pss->sse) {
        pb_identity_clear(&id);
        pb_conns_free_conn(w->conns, c);
        return refuse(wsi, HTTP_STATUS_INTERNAL_SERVER_ERROR, "internal", "out of memory");
    }
    pss->wsi = wsi;
    pss->conn = c;
    pss->sse->state = PB_SSE_LOGIN;
    /* Echoed in the stream's headers; bound: 512 bytes, freed at the close. */
    char origin[512] = "";
    if (lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) < 0)
        origin[0] = '\0';
    pss->sse->origin = origin[0] ? strdup(origin) : NULL;
    char resume[PB_POS_MAX_LEN + 1];
    int has_resume = read_resume(wsi, resume, sizeof(resume));
    /* The hub answers with hook_started or hook_refused. */
    if (pb_worker_login(w, c, &id, has_resume ? resume : NULL)) {
        pss->conn = NULL;
        stream_free(w, pss);
        pb_conns_free_conn(w->conns, c);
        return refuse(wsi, HTTP_STATUS_INTERNAL_SERVER_ERROR, "internal", "out of memory");
    }
    return 0;
}

/* ---- the stream ---- */


static int write_close(struct lws *wsi, struct pb_conn *c)
{
    struct pb_buf b;
    pb_buf_init(&b, 512);
    pb_buf_printf(&b, "data: {\"type\":\"close\",\"code\":%d,\"reason\":", c->close_code);
    const char *reason = c->close_reason ? c->close_reason : ""; /* NULL until a close names one */
    pb_buf_json_string(&b, reason, strlen(reason));
    pb_buf_puts(&b, "}\n\n");
    unsigned char *out = malloc(LWS_PRE + b.len);
    int rc = -1;
    if (out && !b.truncated) {
        memcpy(out + LWS_PRE, b.data, b.len);
        rc = lws_write(wsi, out + LWS_PRE, b.len, LWS_WRITE_HTTP) < 0 ? -1 : 0;
    }
    free(out);
    pb_buf_free(&b);
    return rc;
}

/* The queued frames (up to SSE_GATHER_BYTES, or one larger frame) as SSE
 * messages in one write; lws keeps what the socket does not take. */
static int write_frames(struct pb_worker *w, struct pb_pss *pss)
{
    struct pb_conn *c = pss->conn;
    size_t total = 0;
    uint32_t n = 0;
    for (struct pb_frame *f; (f = pb_conn_at(c, n)); n++) {
        size_t pl = 0;
        const char *json = (const char *)pb_frame_payload(f);
        if (f->len && !resumed_welcome(json, f->len))
            pb_sse_frame_pos(json, f->len, &pl);
        size_t need = f->len ? pb_sse_format_len(json, f->len, pl) : sizeof(SSE_KEEPALIVE) - 1;
        if (n && total + need > SSE_GATHER_BYTES)
            break;
        total += need;
    }
    unsigned char *out = malloc(LWS_PRE + total);
    if (!out)
        return 0; /* out of memory: the next WRITEABLE tries again */
    char *p = (char *)out + LWS_PRE;
    for (uint32_t i = 0; i < n; i++) {
        struct pb_frame *f = pb_conn_at(c, i);
        if (!f->len) { /* the sweep's ping */
            memcpy(p, SSE_KEEPALIVE, sizeof(SSE_KEEPALIVE) - 1);
            p += sizeof(SSE_KEEPALIVE) - 1;
            continue;
        }
        size_t pl = 0;
        const char *json = (const char *)pb_frame_payload(f);
        const char *pos = resumed_welcome(json, f->len) ? NULL : pb_sse_frame_pos(json, f->len, &pl);
        p += pb_sse_format(p, json, f->len, pos, pos ? pl : 0);
    }
    /* What was written, which pb_sse_format_len sized (never more). */
    size_t written = (size_t)(p - (char *)out - LWS_PRE);
    int rc = lws_write(pss->wsi, out + LWS_PRE, written, LWS_WRITE_HTTP);
    free(out);
    if (rc < 0)
        return -1;
    int64_t now = pb_now_ms();
    for (uint32_t i = 0; i < n; i++) {
        struct pb_frame *f = pb_conn_peek(c);
        if (f->ts_ms)
            pb_metrics_latency(w->metrics, (double)(now - f->ts_ms) / 1000.0);
        pb_conn_sent(w->conns, c);
    }
    c->last_rx_ms = pb_monotonic_ms(); /* see the file comment: liveness */
    return 0;
}

/* The stream's headers, once the hub took the login (the Origin was kept
 * from the request: lws may have let its header table go meanwhile). */
static int write_headers(struct pb_pss *pss)
{
    return start_stream(pss->wsi, pss->sse->origin ? pss->sse->origin : "");
}

static int writeable(struct pb_worker *w, struct pb_pss *pss)
{
    struct pb_conn *c = pss->conn;
    if (!c || pss->close_after_drain)
        return -1;
    if (!pss->sse)
        return -1; /* not a stream (its login failed): nothing to write */
    if (pss->sse->state == PB_SSE_LOGIN) {
        /* The hub has not answered yet (a resume held during the rebuild at
         * start). Closed meanwhile, the request still gets its answer: the
         * shutdown's as begin() gives it, else what closed it. */
        if (!c->closing)
            return 0;
        if (!c->close_code) /* cut: nothing more */
            return -1;
        return c->close_code == PB_CLOSE_GOING_AWAY
                   ? refuse(pss->wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "not_ready",
                            "the server is shutting down")
                   : refuse(pss->wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "closed",
                            c->close_reason ? c->close_reason : "closed");
    }
    if (pss->sse->state == PB_SSE_REFUSED)
        return refuse(pss->wsi, 429, "too_many_connections",
                      "this user has ws.max_connections_per_user connections open");
    if (pss->sse->state == PB_SSE_HEADERS) {
        if (write_headers(pss))
            return -1;
        pss->sse->state = PB_SSE_STREAM;
        arm_writable(pss->wsi); /* the frames, on the next turn */
        return 0;
    }
    if (c->closing) {
        if (!c->close_code) /* cut: nothing more */
            return -1;
        if (write_close(pss->wsi, c))
            return -1;
        /* lws writes what the socket did not take before the next call. */
        pss->close_after_drain = 1;
        arm_writable(pss->wsi);
        return 0;
    }
    if (pb_conn_peek(c) && !lws_partial_buffered(pss->wsi) && write_frames(w, pss))
        return -1;
    if (pb_conn_peek(c))
        arm_writable(pss->wsi);
    return 0;
}

int pb_sse_callback(struct pb_worker *w, struct lws *wsi, enum lws_callback_reasons reason,
                    struct pb_pss *pss)
{
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return begin(w, wsi, pss);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return writeable(w, pss);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        stream_free(w, pss);
        if (pss->conn)
            pb_worker_closed(w, pss->conn);
        pss->conn = NULL;
        return 0;
    default:
        return 0; /* a body sent with the request is ignored */
    }
}

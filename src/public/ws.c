/* WebSocket side of a connection: login, the incoming-message limits, and
 * writing the connection's queue to the socket. lws drives it; the hub owns
 * the connection and its queue. Close codes are listed in hub.h and README. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <yajl/yajl_tree.h>

#include "pushbridge/public/admission.h"
#include "pushbridge/core/log.h"
#include "pushbridge/public/worker.h"
#include "pushbridge/public/ws.h"
#include "pushbridge/hub/tokenlife.h"

/* Frames gathered into one sendmsg() (plain TCP). The kernel takes what fits
 * in the socket's send buffer; the rest waits for the next POLLOUT. */
#define FRAMES_PER_WRITE 64
/* Bytes copied into one TLS record (TLS cannot gather). */
#define TLS_GATHER_BYTES (16 * 1024)

static struct pb_worker *worker_of(struct lws *wsi)
{
    struct pb_vhd *vhd = lws_get_vhost_user(lws_get_vhost(wsi));
    return vhd->w;
}

/* Connections whose queue went from empty to non-empty since the loop last
 * slept. Their frames go out from a prepare watcher just before the loop
 * sleeps (pb_ws_flush_pending): one send per connection per iteration,
 * without waiting for POLLOUT. A socket with room (the usual case) then
 * costs one system call, not an epoll change, a wake-up and another change;
 * what does not fit waits for lws's WRITEABLE as before. */
static void pending_add(struct pb_worker *w, struct pb_pss *pss)
{
    if (pss->pending)
        return;
    pss->pending = 1;
    pss->pend_prev = NULL;
    pss->pend_next = w->write_pending;
    if (w->write_pending)
        w->write_pending->pend_prev = pss;
    w->write_pending = pss;
}

static void pending_remove(struct pb_worker *w, struct pb_pss *pss)
{
    if (!pss->pending)
        return;
    if (pss->pend_prev)
        pss->pend_prev->pend_next = pss->pend_next;
    else
        w->write_pending = pss->pend_next;
    if (pss->pend_next)
        pss->pend_next->pend_prev = pss->pend_prev;
    pss->pending = 0;
    pss->pend_prev = pss->pend_next = NULL;
}

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
    struct lws *wsi = c->transport;
    pending_add(worker_of(wsi), lws_wsi_user(wsi));
}

/* Close asynchronously: the WRITEABLE callback sends the close frame; a
 * client that never lets us write (slow consumer) is cut after 3 s. */
static void hook_kill(struct pb_conn *c)
{
    arm_writable(c->transport);
    lws_set_timeout(c->transport, PENDING_TIMEOUT_USER_OK, 3);
}

/* A peer gone quiet past ws.idle_timeout_ms: no close frame (it would not
 * be read), lws drops the connection on its next turn. */
static void hook_cut(struct pb_conn *c)
{
    lws_set_timeout(c->transport, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static void hook_started(struct pb_conn *c);
static void hook_refused(struct pb_conn *c);

const struct pb_conn_hooks pb_ws_conn_hooks = {
    .want_write = hook_want_write,
    .kill = hook_kill,
    .cut = hook_cut,
    .started = hook_started,
    .refused = hook_refused,
};

static int close_now(struct lws *wsi, int code, const char *reason)
{
    if (!reason) /* pb_conn keeps no text until a close names one */
        reason = "";
    lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)reason, strlen(reason));
    return -1;
}

static void send_text(struct pb_worker *w, struct pb_conn *c, const char *text, size_t len)
{
    struct pb_frame *f = pb_frame_from(text, len);
    if (!f)
        return;
    pb_conns_send(w->conns, c, f);
    pb_frame_unref(f);
}

/* Control frames are small but carry user-chosen text (a user ID is up to
 * 256 bytes, 1536 once escaped): built on the heap, capped at 8 KiB. */
#define CONTROL_FRAME_MAX 8192

static void send_buf(struct pb_worker *w, struct pb_conn *c, struct pb_buf *b)
{
    if (!b->truncated)
        send_text(w, c, b->data, b->len);
    pb_buf_free(b);
}

static void send_error(struct pb_worker *w, struct pb_conn *c, const char *code, const char *msg)
{
    struct pb_buf b;
    pb_buf_init(&b, CONTROL_FRAME_MAX);
    pb_buf_puts(&b, "{\"type\":\"error\",\"code\":");
    pb_buf_json_string(&b, code, strlen(code));
    pb_buf_puts(&b, ",\"message\":");
    pb_buf_json_string(&b, msg, strlen(msg));
    pb_buf_puts(&b, "}");
    send_buf(w, c, &b);
}

/* Queue the error, then close once it is written. */
static void refuse(struct pb_worker *w, struct pb_pss *pss, int code, const char *errcode,
                   const char *msg)
{
    send_error(w, pss->conn, errcode, msg);
    pss->conn->close_code = (uint16_t)code;
    pss->conn->close_reason = errcode; /* an auth code or a literal: static */
    pss->close_after_drain = 1;
    ev_timer_stop(w->loop, &pss->auth_timer);
    arm_writable(pss->wsi);
    /* A client that does not read its error is cut like a slow consumer. */
    lws_set_timeout(pss->wsi, PENDING_TIMEOUT_USER_OK, 3);
}

static void auth_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct pb_pss *pss = t->data;
    struct pb_worker *w = worker_of(pss->wsi);
    if (pss->conn && !pss->conn->authed)
        pb_conns_close(w->conns, pss->conn, PB_CLOSE_AUTH_TIMEOUT, "authentication timeout");
}

/* The "resume" member of a native login (SPEC 7), when it is a string.
 * Anything else there (a number, a huge or garbled string) is a pos that
 * cannot resume: the welcome says "resumed": false, the login stands. */
static int login_resume(const char *text, size_t len, char *out, size_t cap)
{
    char err[64];
    char *copy = strndup(text, len);
    yajl_val root = copy ? yajl_tree_parse(copy, err, sizeof(err)) : NULL;
    free(copy);
    const char *path[] = {"resume", NULL};
    yajl_val v = root ? yajl_tree_get(root, path, yajl_t_any) : NULL;
    int found = v != NULL;
    const char *str = v && YAJL_IS_STRING(v) ? YAJL_GET_STRING(v) : "";
    snprintf(out, cap, "%s", strlen(str) < cap ? str : "");
    yajl_tree_free(root);
    return found;
}

static void login(struct pb_worker *w, struct pb_pss *pss, const char *text, size_t len)
{
    struct pb_identity id;
    const char *code;
    char msg[256];
    if (pb_auth_login(w->env.auth, text, len, &id, &code, msg, sizeof(msg))) {
        pb_info("connection %llu: login refused: %s: %s", (unsigned long long)pss->conn->id, code,
                msg);
        refuse(w, pss, PB_CLOSE_AUTH_FAILED, code, msg);
        return;
    }
    char resume[PB_POS_MAX_LEN + 1];
    int has_resume = id.form == PB_FORM_NATIVE && login_resume(text, len, resume, sizeof(resume));
    /* The hub answers with hook_started or hook_refused. */
    if (pb_worker_login(w, pss->conn, &id, has_resume ? resume : NULL)) {
        refuse(w, pss, PB_CLOSE_TRY_AGAIN, "out_of_memory", "the server is out of memory");
        return;
    }
    struct pb_conn *c = pss->conn;
    if (!c || c->authed || c->closing)
        return; /* answered already (worker 0 runs the hub in this call) */
    /* Logged in, answer to come: the auth timer now only guards the hub's
     * answer, which a resume during the rebuild at start waits for
     * (hub/held.h: half of ws.auth_timeout_ms and a tick, from now), so it
     * starts again rather than run out first. */
    ev_timer_stop(w->loop, &pss->auth_timer);
    ev_timer_set(&pss->auth_timer, (double)w->cfg->ws_auth_timeout_ms / 1000., 0.);
    ev_timer_start(w->loop, &pss->auth_timer);
}

/* The hub took the login: the welcome and the snapshot follow. */
static void hook_started(struct pb_conn *c)
{
    struct lws *wsi = c->transport;
    struct pb_worker *w = worker_of(wsi);
    struct pb_pss *pss = lws_wsi_user(wsi);
    ev_timer_stop(w->loop, &pss->auth_timer);
    pb_token_schedule(c, pb_now_ms());
    pb_admission_release(w->env.admission, lws_get_socket_fd(wsi)); /* no longer pending */
    pb_debug("connection %llu logged in as %s", (unsigned long long)c->id, c->ident.user);
}

static void hook_refused(struct pb_conn *c)
{
    struct lws *wsi = c->transport;
    refuse(worker_of(wsi), lws_wsi_user(wsi), PB_CLOSE_USER_LIMIT, "too_many_connections",
           "this user has ws.max_connections_per_user connections open");
}

/* A new token for the same user: the connection lives on until its exp,
 * with the new token's groups (which the hub filters by). */
static void refreshed(struct pb_worker *w, struct pb_conn *c, struct pb_identity *id)
{
    int64_t now = pb_now_ms();
    c->ident.exp_ms = id->exp_ms;
    pb_worker_groups(w, c, id->groups, id->ngroups); /* taken */
    id->groups = NULL;
    id->ngroups = 0;
    pb_identity_clear(id);
    pb_token_schedule(c, now);
    char text[96];
    int n = c->ident.exp_ms
                ? snprintf(text, sizeof(text), "{\"type\":\"refreshed\",\"expires_in_ms\":%lld}",
                           (long long)pb_token_expires_in(c, now))
                : snprintf(text, sizeof(text), "{\"type\":\"refreshed\",\"expires_in_ms\":null}");
    send_text(w, c, text, (size_t)n);
    pb_debug("connection %llu of user %s: token refreshed", (unsigned long long)c->id,
             c->ident.user);
}

/* After login a client may ping at the application level, or refresh its
 * token; anything else gets an error frame, and the connection stays up. */
static void client_message(struct pb_worker *w, struct pb_pss *pss, const char *text, size_t len)
{
    if (pb_auth_is_ping(text, len)) {
        send_text(w, pss->conn, "{\"type\":\"pong\"}", 15);
        return;
    }
    struct pb_identity id;
    const char *code;
    char msg[256];
    int rc = pb_auth_refresh(w->env.auth, text, len, pss->conn->ident.user, &id, &code, msg,
                             sizeof(msg));
    if (rc == 0) {
        refreshed(w, pss->conn, &id);
        return;
    }
    if (rc < 0) {
        pb_info("connection %llu: token refresh refused: %s: %s",
                (unsigned long long)pss->conn->id, code, msg);
        refuse(w, pss, PB_CLOSE_AUTH_FAILED, code, msg);
        return;
    }
    send_error(w, pss->conn, "unknown_message",
               "after login the server only answers {\"type\":\"ping\"} and "
               "{\"type\":\"refresh\",\"token\":...}");
}

/* RFC 6455 7.4: codes a peer may send. */
static int close_code_valid(unsigned code)
{
    if (code >= 3000 && code <= 4999)
        return 1;
    return code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006;
}

static int peer_close(struct lws *wsi, const unsigned char *in, size_t len)
{
    if (len == 0)
        return 0;
    if (len == 1 || !close_code_valid((unsigned)in[0] << 8 | in[1]) ||
        !pb_utf8_valid((const char *)in + 2, len - 2)) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_PROTOCOL_ERR, (unsigned char *)"bad close frame",
                         15);
        return 1;
    }
    return 0; /* lws echoes the close */
}

/* Closes from the WRITEABLE callback, ignoring input meanwhile: returning
 * -1 from RECEIVE lets lws drop the connection without the close frame
 * when more fragments are already on their way. */
static int refuse_input(struct pb_worker *w, struct pb_pss *pss, int code, const char *why)
{
    pb_buf_free(&pss->rx);
    pb_conns_close(w->conns, pss->conn, code, why);
    return 0;
}

/* Reassembly storage is given back after every message. Clients send only
 * logins and token refreshes (SPEC 2), so keeping it buys nothing, and a
 * login longer than lws's 512-byte receive buffer (pool.c; an RS256 JWT
 * is) left up to 1 KiB of it on every idle connection from then on: 3.39
 * against 2.40 KiB per connection (docs/PERFORMANCE.md). A message that
 * fits lws's buffer arrives whole and never allocates here. */
static void release_rx(struct pb_worker *w, struct pb_pss *pss)
{
    pb_buf_free(&pss->rx);
    pb_buf_init(&pss->rx, (size_t)w->cfg->ws_max_message_bytes + 1);
}

static int receive(struct pb_worker *w, struct pb_pss *pss, const char *in, size_t len)
{
    struct lws *wsi = pss->wsi;
    if (!pss->conn || pss->conn->closing || pss->close_after_drain)
        return 0;
    if (lws_frame_is_binary(wsi))
        return refuse_input(w, pss, PB_CLOSE_UNSUPPORTED, "binary frames are not accepted");
    /* Bound: one message of at most ws.max_message_bytes is buffered. */
    if (pss->rx.len + len > (size_t)w->cfg->ws_max_message_bytes)
        return refuse_input(w, pss, PB_CLOSE_TOO_BIG, "message over ws.max_message_bytes");
    int whole = lws_is_first_fragment(wsi) && lws_is_final_fragment(wsi) &&
                !lws_remaining_packet_payload(wsi) && pss->rx.len == 0;
    const char *text = in;
    if (!whole) {
        pb_buf_append(&pss->rx, in, len);
        if (pss->rx.truncated)
            return refuse_input(w, pss, PB_CLOSE_TOO_BIG, "message over ws.max_message_bytes");
        if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
            return 0;
        text = pss->rx.data;
        len = pss->rx.len;
    }
    /* lws's own check misses some invalid sequences (surrogates). */
    if (!pb_utf8_valid(text, len))
        return refuse_input(w, pss, PB_CLOSE_BAD_DATA, "text message is not valid UTF-8");
    if (pss->conn->authed)
        client_message(w, pss, text, len);
    else if (!pss->conn->member) /* else its login is with the hub: wait */
        login(w, pss, text, len);
    release_rx(w, pss);
    return 0;
}

/* A frame has left: count its latency (Kafka timestamp -> socket) and
 * release the queue's reference. */
static void sent(struct pb_worker *w, struct pb_conn *c)
{
    struct pb_frame *f = pb_conn_peek(c);
    if (f->ts_ms)
        pb_metrics_latency(w->metrics, (double)(pb_now_ms() - f->ts_ms) / 1000.0);
    pb_conn_sent(w->conns, c);
}

/* Plain TCP: every queued frame (up to FRAMES_PER_WRITE) in one sendmsg()
 * (a send() for one), straight from the shared frames. A frame the socket took only part of is
 * handed, from where it stopped, to lws's own output buffer (one copy of at
 * most one frame per connection), which lws drains before anything else it
 * writes (pings, the close frame) and before the next WRITEABLE: the byte
 * stream stays whole. Returns -1 when the connection is broken. */
static int write_gathered(struct pb_worker *w, struct pb_pss *pss)
{
    struct pb_conn *c = pss->conn;
    struct iovec iov[FRAMES_PER_WRITE];
    int n = 0;
    for (struct pb_frame *f; n < FRAMES_PER_WRITE && (f = pb_conn_at(c, (uint32_t)n)); n++) {
        iov[n].iov_base = (void *)pb_frame_wire(f);
        iov[n].iov_len = pb_frame_wire_len(f);
    }
    /* The socket calls, not writev(): they skip the VFS layer (vfs_writev,
     * fdget_pos: ~4 % of the loop's samples in perf), and one frame, the
     * unicast case, needs no iovec at all. */
    int fd = lws_get_socket_fd(pss->wsi);
    ssize_t m;
    if (n == 1) {
        m = send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
    } else {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        m = sendmsg(fd, &mh, MSG_NOSIGNAL);
    }
    if (m < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    for (int i = 0; i < n && m > 0; i++) {
        size_t len = iov[i].iov_len;
        if ((size_t)m < len &&
            lws_write(pss->wsi, (unsigned char *)iov[i].iov_base + m, len - (size_t)m,
                      LWS_WRITE_HTTP) < 0)
            return -1;
        m -= (ssize_t)((size_t)m < len ? (size_t)m : len);
        sent(w, c);
    }
    return 0;
}

/* TLS: queued frames copied into one record of up to TLS_GATHER_BYTES (or
 * one larger frame alone), written through lws, which keeps what the socket
 * does not take. */
static int write_tls(struct pb_worker *w, struct pb_pss *pss)
{
    /* One per thread: each worker writes its own records. */
    static _Thread_local unsigned char rec[TLS_GATHER_BYTES];
    struct pb_conn *c = pss->conn;
    struct pb_frame *f = pb_conn_peek(c);
    if (pb_frame_wire_len(f) > sizeof(rec)) {
        if (lws_write(pss->wsi, (unsigned char *)pb_frame_wire(f), pb_frame_wire_len(f),
                      LWS_WRITE_HTTP) < 0)
            return -1;
        sent(w, c);
        return 0;
    }
    size_t len = 0;
    uint32_t n = 0;
    for (; (f = pb_conn_at(c, n)) && len + pb_frame_wire_len(f) <= sizeof(rec); n++) {
        memcpy(rec + len, pb_frame_wire(f), pb_frame_wire_len(f));
        len += pb_frame_wire_len(f);
    }
    if (lws_write(pss->wsi, rec, len, LWS_WRITE_HTTP) < 0)
        return -1;
    while (n--)
        sent(w, c);
    return 0;
}

void pb_ws_flush_pending(struct pb_worker *w)
{
    while (w->write_pending) {
        struct pb_pss *pss = w->write_pending;
        pending_remove(w, pss);
        struct pb_conn *c = pss->conn;
        if (!c || !pb_conn_peek(c))
            continue;
        /* Closing, TLS, or bytes already waiting in lws: lws's WRITEABLE
         * path keeps the order of what goes on the wire. */
        if (c->closing || pss->close_after_drain || pss->peer_closing ||
            lws_is_ssl(pss->wsi) || lws_partial_buffered(pss->wsi)) {
            arm_writable(pss->wsi);
            continue;
        }
        if (write_gathered(w, pss) < 0) {
            /* Not inside an lws callback: let lws drop it on its own time. */
            lws_set_timeout(pss->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
            continue;
        }
        if (pb_conn_peek(c))
            arm_writable(pss->wsi);
    }
}

static int writeable(struct pb_worker *w, struct pb_pss *pss)
{
    struct pb_conn *c = pss->conn;
    if (!c)
        return 0;
    if (c->closing) /* code 0: cut (keep-alive), no close frame */
        return c->close_code ? close_now(pss->wsi, c->close_code, c->close_reason) : -1;
    /* lws drains its own buffer before calling here; if it has not, the
     * frames must wait behind it. */
    if (pb_conn_peek(c) && !lws_partial_buffered(pss->wsi)) {
        int rc = lws_is_ssl(pss->wsi) ? write_tls(w, pss) : write_gathered(w, pss);
        if (rc < 0)
            return -1;
    }
    if (pb_conn_peek(c))
        arm_writable(pss->wsi);
    else if (pss->close_after_drain)
        return close_now(pss->wsi, c->close_code, c->close_reason);
    return 0;
}

static int path_is_ws(struct pb_worker *w, struct lws *wsi)
{
    char uri[256];
    if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0)
        return 0;
    return strcmp(uri, w->cfg->ws_path) == 0;
}

/* One ws.allowed_origins entry: an exact origin, or "https://" "*.domain"
 * matching any subdomain (one or more labels) but not the bare domain. */
static int origin_matches(const char *pattern, const char *origin)
{
    const char *star = strstr(pattern, "://*.");
    if (!star)
        return strcasecmp(pattern, origin) == 0;
    size_t scheme_len = (size_t)(star - pattern) + 3; /* "https://" */
    const char *suffix = star + 4;                    /* ".example.com" */
    size_t olen = strlen(origin), slen = strlen(suffix);
    if (strncasecmp(pattern, origin, scheme_len) != 0 || olen <= scheme_len + slen)
        return 0;
    const char *host = origin + scheme_len;
    size_t host_len = olen - scheme_len;
    /* The subdomain part is DNS labels only: no port, path or anything else. */
    for (size_t i = 0; i < host_len - slen; i++) {
        char ch = host[i];
        if (!(ch == '-' || ch == '.' || (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
              (ch >= 'A' && ch <= 'Z')))
            return 0;
    }
    if (host[0] == '.' || host[host_len - slen - 1] == '.')
        return 0;
    return strcasecmp(origin + olen - slen, suffix) == 0;
}

static int origin_allowed(const struct pb_config *cfg, struct lws *wsi)
{
    if (!cfg->ws_allowed_origins.n)
        return 1;
    char origin[512];
    if (lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) <= 0)
        return 0;
    for (size_t i = 0; i < cfg->ws_allowed_origins.n; i++)
        if (origin_matches(cfg->ws_allowed_origins.items[i], origin))
            return 1;
    return 0;
}

int pb_ws_origin_allowed(const struct pb_config *cfg, struct lws *wsi)
{
    return origin_allowed(cfg, wsi);
}

/* Answers the upgrade request with a plain HTTP error and a JSON body,
 * before any frame, then closes. `extra` is one more header or NULL. */
static int refuse_upgrade(struct lws *wsi, unsigned int status, const char *code, const char *why,
                          const char *extra_name, const char *extra_value)
{
    char body[256];
    int blen = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"message\":\"%s\"}", code, why);
    if (blen < 0 || (size_t)blen >= sizeof(body))
        return -1; /* our own texts, far shorter: a cut body would break the length */
    unsigned char buf[LWS_PRE + 512];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;
    if (lws_add_http_common_headers(wsi, status, "application/json", (lws_filepos_t)blen, &p,
                                    end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"connection:",
                                    (const unsigned char *)"close", 5, &p, end) ||
        (extra_name && lws_add_http_header_by_name(wsi, (const unsigned char *)extra_name,
                                                   (const unsigned char *)extra_value,
                                                   (int)strlen(extra_value), &p, end)) ||
        lws_finalize_http_header(wsi, &p, end))
        return -1;
    if (p + blen < end) {
        memcpy(p, body, (size_t)blen);
        p += blen;
    }
    /* Closed either way; a peer already gone just does not read why. */
    if (lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_HEADERS) < 0)
        pb_debug("ws: the %u refusal could not be written", status);
    return -1;
}

/* RFC 6455 4.2.2: only version 13 is spoken; say so with 426. */
static int version_ok(struct lws *wsi)
{
    char v[16];
    return lws_hdr_copy(wsi, v, sizeof(v), WSI_TOKEN_VERSION) > 0 && strcmp(v, "13") == 0;
}

/* ws.send_buffer_bytes: without it a client that stops reading takes up to
 * tcp_wmem's maximum (4 MiB here) into the kernel before the bridge's own
 * queue bound even starts to count. A failure costs only that bound. */
static void bound_send_buffer(struct pb_worker *w, struct lws *wsi)
{
    int bytes = (int)w->cfg->ws_send_buffer_bytes;
    if (bytes && setsockopt(lws_get_socket_fd(wsi), SOL_SOCKET, SO_SNDBUF, &bytes,
                            sizeof(bytes)) && !w->sndbuf_warned) {
        w->sndbuf_warned = 1;
        pb_warn("cannot set ws.send_buffer_bytes on a WebSocket: %s (warned once)",
                strerror(errno));
    }
}

int pb_ws_callback(struct pb_worker *w, struct lws *wsi, enum lws_callback_reasons reason,
                   struct pb_pss *pss, void *in, size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        const struct pb_vhd *vhd = lws_get_vhost_user(lws_get_vhost(wsi));
        if (!vhd->is_public || !path_is_ws(w, wsi))
            return refuse_upgrade(wsi, HTTP_STATUS_NOT_FOUND, "not_found",
                                  "no WebSocket endpoint here", NULL, NULL);
        if (!version_ok(wsi))
            return refuse_upgrade(wsi, 426, "upgrade_required",
                                  "only WebSocket version 13 is supported",
                                  "sec-websocket-version:", "13");
        if (__atomic_load_n(w->env.stopping, __ATOMIC_RELAXED))
            return refuse_upgrade(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "not_ready",
                                  "the server is shutting down", NULL, NULL);
        if (!origin_allowed(w->cfg, wsi)) {
            PB_COUNT(w->metrics->origin_refused);
            return refuse_upgrade(wsi, HTTP_STATUS_FORBIDDEN, "origin_not_allowed",
                                  "this Origin may not connect (ws.allowed_origins)", NULL, NULL);
        }
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED:
        pss->wsi = wsi;
        bound_send_buffer(w, wsi);
        /* lws 4.1 drops a connection whose frame it cannot parse (a control
         * frame over 125 bytes, a fragmented ping) without a close frame
         * unless a reason is already set; every close of ours sets its own,
         * so this one is what a protocol error sends (1002, not 1006). */
        lws_close_reason(wsi, LWS_CLOSE_STATUS_PROTOCOL_ERR, (unsigned char *)"protocol error",
                         14);
        pb_buf_init(&pss->rx, (size_t)w->cfg->ws_max_message_bytes + 1);
        pss->conn = pb_conns_new_conn(w->conns, wsi);
        if (!pss->conn)
            return close_now(wsi, PB_CLOSE_TRY_AGAIN, "server at ws.max_connections");
        ev_timer_init(&pss->auth_timer, auth_timeout, (double)w->cfg->ws_auth_timeout_ms / 1000.,
                      0.);
        pss->auth_timer.data = pss;
        ev_timer_start(w->loop, &pss->auth_timer);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (pss->conn)
            pss->conn->last_rx_ms = pb_monotonic_ms();
        return receive(w, pss, in, len);
    case LWS_CALLBACK_RECEIVE_PONG:
        if (pss->conn)
            pss->conn->last_rx_ms = pb_monotonic_ms();
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return writeable(w, pss);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        pss->peer_closing = 1; /* nothing more may follow lws's close frame */
        return peer_close(wsi, in, len);
    case LWS_CALLBACK_CLOSED:
        pending_remove(w, pss);
        ev_timer_stop(w->loop, &pss->auth_timer);
        pb_buf_free(&pss->rx);
        if (pss->conn)
            pb_worker_closed(w, pss->conn);
        pss->conn = NULL;
        return 0;
    default:
        return 0;
    }
}

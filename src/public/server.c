/* The event loop and the wiring around it. One libev (epoll) loop serves the
 * lws sockets, the Kafka wake-up pipe and a signalfd, so sockets, Kafka and
 * signals are all handled by one thread with no locks. A 1 s timer keeps the
 * consumer polled and tells the service manager (notify.c) when the bridge
 * turns ready; a prepare watcher ends the loop once shutdown is done. */
#include "pushbridge/public/server.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "pushbridge/public/admission.h"
#include "pushbridge/api/httpd.h"
#include "pushbridge/hub/keepalive.h"
#include "pushbridge/kafka/presence.h"
#include "pushbridge/core/listener.h"
#include "pushbridge/core/log.h"
#include "pushbridge/api/relay.h"
#include "pushbridge/public/sse.h"

/* Kafka messages handled per wake-up before the loop serves sockets again. */
#define KAFKA_BATCH 512
#define TICK_S 1.0

static int server_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len)
{
    struct lws_vhost *vh = lws_get_vhost(wsi);
    struct pb_vhd *vhd = vh ? lws_get_vhost_user(vh) : NULL;
    if (!vhd)
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    /* Every public connection ends in one of these, whether or not it got
     * as far as per-session data; its descriptor is still set here. */
    if ((reason == LWS_CALLBACK_CLOSED_HTTP || reason == LWS_CALLBACK_CLOSED) && vhd->is_public)
        pb_admission_release(vhd->srv->admission, lws_get_socket_fd(wsi));
    /* lws calls CLOSED_HTTP for connections it dropped before allocating
     * per-session data (a malformed request line, for one). */
    if (!user && reason != LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION)
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    /* An SSE request, then its stream, is sse.c's from LWS_CALLBACK_HTTP on. */
    struct pb_pss *pss = user;
    if (vhd->is_public && (pss->sse || (reason == LWS_CALLBACK_HTTP && pb_sse_wants(wsi))) &&
        (reason == LWS_CALLBACK_HTTP || reason == LWS_CALLBACK_HTTP_BODY ||
         reason == LWS_CALLBACK_HTTP_BODY_COMPLETION || reason == LWS_CALLBACK_HTTP_WRITEABLE ||
         reason == LWS_CALLBACK_CLOSED_HTTP || reason == LWS_CALLBACK_HTTP_DROP_PROTOCOL))
        return pb_sse_callback(vhd->srv, wsi, reason, pss);
    switch (reason) {
    case LWS_CALLBACK_HTTP:
    case LWS_CALLBACK_HTTP_BODY:
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    case LWS_CALLBACK_HTTP_WRITEABLE:
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        return pb_http_callback(vhd->srv, vhd, wsi, reason, user, in, len);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
    case LWS_CALLBACK_ESTABLISHED:
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
    case LWS_CALLBACK_RECEIVE_PONG:
        return pb_ws_callback(vhd->srv, wsi, reason, user, in, len);
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* Kafka's consumer queue turned non-empty (librdkafka wrote the pipe). */
static void kafka_ready_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct pb_server *s = w->data;
    pb_kafka_drain(s->kafka, KAFKA_BATCH);
}

/* Runs before the loop sleeps, only while stopping: ends the loop once every
 * WebSocket is gone or half of shutdown_timeout_ms was spent closing them
 * (the other half is for committing offsets). */
static void stop_check_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    struct pb_server *s = w->data;
    if (pb_hub_connections(s->hub) == 0) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    if (pb_monotonic_ms() >= s->stop_deadline - s->cfg->shutdown_timeout_ms / 2) {
        pb_warn("half of shutdown_timeout_ms spent closing WebSockets; dropping the %zu "
                "still open",
                pb_hub_connections(s->hub));
        ev_break(loop, EVBREAK_ALL);
    }
}

/* Runs before the loop sleeps: everything this iteration queued goes out
 * in one write per connection (ws.c). */
static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    pb_ws_flush_pending(w->data);
}

/* Only wakes the loop so that stop_check_cb runs at the half-way mark. */
static void stop_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

int pb_server_ready(const struct pb_server *s, const char **why)
{
    *why = NULL;
    if (s->stopping)
        *why = "shutting down";
    else if (!s->listening)
        *why = "listeners are not up yet";
    else
        pb_kafka_ready(s->kafka, why);
    return *why == NULL;
}

/* From the tick: READY=1 on the first ready second (the condition /readyz
 * answers 200 on), then a STATUS line when what it says changes, so
 * `systemctl status` shows the load or why the bridge is not ready. At most
 * one datagram a second. */
static void notify_tick(struct pb_server *s)
{
    const char *why;
    char status[200];
    if (s->stopping || s->notify.fd < 0)
        return;
    if (pb_server_ready(s, &why)) {
        snprintf(status, sizeof(status), "Ready: %zu connections, %zu users",
                 pb_hub_connections(s->hub), pb_hub_users(s->hub));
        if (!s->notify.ready_sent)
            pb_notify_ready(&s->notify, status);
        else
            pb_notify_status(&s->notify, status);
    } else {
        snprintf(status, sizeof(status), "Not ready: %s", why);
        pb_notify_status(&s->notify, status);
    }
}

/* A libev timer on the loop itself: WATCHDOG=1 goes only while the loop
 * turns, so a wedged loop (a blocking call, a livelock) stops the pings and
 * the service manager restarts the bridge (WatchdogSec=). */
static void watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct pb_server *s = w->data;
    pb_notify_send(&s->notify, "WATCHDOG=1");
}

static void begin_stop(struct pb_server *s, const char *why)
{
    if (s->stopping)
        return;
    s->stopping = 1;
    char status[160];
    snprintf(status, sizeof(status), "STOPPING=1\nSTATUS=Stopping (%s): closing %zu connections",
             why, pb_hub_connections(s->hub));
    pb_notify_send(&s->notify, status);
    s->stop_deadline = pb_monotonic_ms() + s->cfg->shutdown_timeout_ms;
    pb_info("%s: closing %zu WebSocket connection(s) with 1001, then committing offsets", why,
            pb_hub_connections(s->hub));
    pb_hub_close_all(s->hub, PB_CLOSE_GOING_AWAY, "server shutting down");
    ev_prepare_start(s->loop, &s->stop_check_w);
    ev_timer_set(&s->stop_timer_w, (double)s->cfg->shutdown_timeout_ms / 2000.0, 0.);
    ev_timer_start(s->loop, &s->stop_timer_w);
    /* The closes were asked for outside an lws callback: let lws look at its
     * timers and writable sockets now. */
    lws_cancel_service(s->ctx);
}

static void signal_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct pb_server *s = w->data;
    struct signalfd_siginfo si;
    while (read(s->signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGHUP) {
            pb_log_reopen();
            pb_info("SIGHUP: log reopened");
        } else {
            begin_stop(s, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
        }
    }
}

/* rx_buffer_size is lws's receive buffer, allocated per connection: at 4096 it
 * was most of an idle connection's memory (5.6 KiB each, docs/PERFORMANCE.md).
 * Client messages are small (logins, pings) and longer ones are reassembled
 * from several RECEIVE callbacks in ws.c, so 512 costs nothing else. */
#define RX_BUFFER_BYTES 512
/* lws hands the socket at most tx_packet_size (+ LWS_PRE + 4) bytes per
 * send and copies the rest into its own buffer for a later POLLOUT; left at
 * 0 that limit is rx_buffer_size, so every answer or frame over ~530 bytes
 * took a copy and an extra loop iteration. No memory is sized by it. */
#define TX_PACKET_BYTES (256 * 1024)

static const struct lws_protocols protocols[] = {
    {"pushbridge", server_cb, sizeof(struct pb_pss), RX_BUFFER_BYTES, 0, NULL, TX_PACKET_BYTES},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct pb_server *s = w->data;
    pb_kafka_tick(s->kafka);
    pb_store_tick(s->store);
    pb_keepalive_sweep(s->hub, pb_monotonic_ms());
    notify_tick(s);
    /* lws's evlib_ev plugin (4.1) re-arms its timer with ev_timer_set on an
     * active watcher, which libev ignores: a timeout scheduled earlier than
     * the one already armed (lws_set_timeout, keep-alive) would wait for
     * that one. lws serves every ripe timer whenever it wakes, so waking it
     * once a second bounds the delay to a second. pushbridge's own timers
     * are libev timers for that reason. */
    lws_cancel_service(s->ctx);
}

/* Cluster mode: presence deltas, heartbeats and snapshots (presence.c). */
static void presence_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct pb_server *s = w->data;
    pb_presence_tick(pb_kafka_presence(s->kafka));
}

static void lws_log_emit(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    pb_log(level == LLL_ERR ? PB_LOG_WARN : PB_LOG_DEBUG, "lws: %.*s", (int)n, line);
}

/* The public listener's accepted connections: admission control first
 * (admission.c), then lws takes the socket over as if it had accepted it. */
static void public_accepted(void *ud, int fd, const struct sockaddr_storage *peer)
{
    struct pb_server *s = ud;
    if (pb_admission_accept(s->admission, fd, peer)) {
        close(fd);
        return;
    }
    if (!lws_adopt_socket_vhost(s->vh_public, fd)) /* lws closed fd */
        pb_admission_release(s->admission, fd);
}

/* A vhost. With adopt, lws does not listen: pushbridge accepts (listener.c)
 * and hands each admitted socket over, so that a descriptor flood meets
 * admission control and the accept pause instead of lws's accept loop,
 * which spins and logs on EMFILE. */
static struct lws_vhost *listen_on(struct pb_server *s, const char *name, const char *addr,
                                   struct pb_vhd *vhd, int tls, int adopt, char *errstr,
                                   size_t errlen)
{
    static lws_retry_bo_t retry;
    char host[256];
    int port;
    if (pb_config_split_hostport(addr, host, sizeof(host), &port)) {
        snprintf(errstr, errlen, "listen.%s: cannot parse address %s", name, addr);
        return NULL;
    }
    /* All zero: lws keeps no liveness timers. Its policy re-sorts a timer
     * list on every message received and every ping, O(n) each; keepalive.c
     * does the same job in one O(n) sweep a second. */

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.vhost_name = name;
    info.port = adopt ? CONTEXT_PORT_NO_LISTEN_SERVER : port;
    info.iface = (host[0] && strcmp(host, "0.0.0.0") != 0) ? host : NULL;
    /* ws.handshake_timeout_ms: how long a connection may hold a header
     * table without a whole request (lws's default is 10 s). */
    info.timeout_secs_ah_idle = (unsigned)((s->cfg->ws_handshake_timeout_ms + 999) / 1000);
    info.protocols = protocols;
    info.user = vhd;
    info.retry_and_idle_policy = &retry;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
    info.timeout_secs = 20;
    if (strcmp(host, "0.0.0.0") == 0)
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    if (tls) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = s->cfg->tls_cert;
        info.ssl_private_key_filepath = s->cfg->tls_key;
    }
    struct lws_vhost *vh = lws_create_vhost(s->ctx, &info);
    if (!vh) {
        snprintf(errstr, errlen, "listen.%s: cannot listen on %s (in use, or a bad address%s)",
                 name, addr, tls ? ", or tls.cert/tls.key cannot be loaded" : "");
        return NULL;
    }
    if (adopt) {
        s->public_listener =
            pb_listener_new(s->loop, "listen.public", addr, public_accepted, s, errstr, errlen);
        if (!s->public_listener)
            return NULL;
        port = pb_listener_port(s->public_listener);
    } else {
        port = lws_get_vhost_listen_port(vh);
    }
    pb_info("listening on %s:%d (%s%s)", host, port, name, tls ? ", TLS" : "");
    return vh;
}

static int signals_init(struct pb_server *s, char *errstr, size_t errlen)
{
    /* Blocked before librdkafka starts its threads, which inherit the mask,
     * so every signal is read here, in the loop. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &mask, NULL)) {
        snprintf(errstr, errlen, "sigprocmask: %s", strerror(errno));
        return -1;
    }
    signal(SIGPIPE, SIG_IGN);
    s->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (s->signal_fd < 0) {
        snprintf(errstr, errlen, "signalfd: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* The loop is libev's epoll backend, created here and lent to lws as a
 * "foreign" loop: lws watches its sockets through Debian's evlib_ev plugin,
 * and the Kafka pipe, the signalfd and the tick are plain libev watchers, so
 * the cost of an iteration follows the ready descriptors, not all of them. */
static int loop_init(struct pb_server *s, char *errstr, size_t errlen)
{
    s->loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
    if (!s->loop) {
        snprintf(errstr, errlen, "cannot create the epoll event loop (libev)");
        return -1;
    }
    ev_set_userdata(s->loop, s);
    ev_io_init(&s->signal_w, signal_cb, s->signal_fd, EV_READ);
    ev_timer_init(&s->tick_w, tick_cb, TICK_S, TICK_S);
    ev_prepare_init(&s->stop_check_w, stop_check_cb);
    ev_prepare_init(&s->flush_w, flush_cb);
    ev_timer_init(&s->stop_timer_w, stop_timer_cb, 0., 0.);
    ev_timer_init(&s->watchdog_w, watchdog_cb, 0., 0.);
    s->signal_w.data = s->tick_w.data = s->stop_check_w.data = s->stop_timer_w.data = s;
    s->flush_w.data = s->watchdog_w.data = s;
    ev_io_start(s->loop, &s->signal_w);
    ev_prepare_start(s->loop, &s->flush_w);
    return 0;
}

int pb_server_init(struct pb_server *s, const struct pb_config *cfg, char *errstr,
                   size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->cfg = cfg;
    s->signal_fd = -1;
    s->notify.fd = -1;
    pb_metrics_init(&s->metrics);
    s->vhd_public = (struct pb_vhd){.srv = s, .is_public = 1};
    s->vhd_internal = (struct pb_vhd){.srv = s, .is_internal = 1};

    if (pb_notify_open(&s->notify, environ, errstr, errlen))
        return -1;
    if (signals_init(s, errstr, errlen) || loop_init(s, errstr, errlen))
        return -1;
    lws_set_log_level(pb_log_enabled(PB_LOG_DEBUG) ? (LLL_ERR | LLL_WARN) : LLL_ERR,
                      lws_log_emit);
    if (!(s->auth = pb_auth_new(cfg, errstr, errlen)))
        return -1;
    if (!(s->admission = pb_admission_new(cfg, &s->metrics)) ||
        !(s->store = pb_store_new(cfg, &s->metrics)) ||
        !(s->hub = pb_hub_new(cfg, &s->metrics, s->store, &pb_ws_hub_hooks))) {
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }

    struct lws_context_creation_info info;
    void *foreign_loops[1] = {s->loop};
    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_LIBEV;
    info.foreign_loops = foreign_loops;
    if (cfg->tls_cert)
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.port = CONTEXT_PORT_NO_LISTEN;
    s->ctx = lws_create_context(&info);
    if (!s->ctx) {
        snprintf(errstr, errlen,
                 "cannot create the libwebsockets context (is the libev event-library plugin, "
                 "Debian's libwebsockets-evlib-ev, installed?)");
        return -1;
    }

    int same = strcmp(cfg->listen_public, cfg->listen_internal) == 0;
    if (same)
        s->vhd_public.is_internal = 1;
    s->vh_public = listen_on(s, "public", cfg->listen_public, &s->vhd_public, cfg->tls_cert != NULL,
                             1, errstr, errlen);
    if (!s->vh_public)
        return -1;
    /* The internal API has its own HTTP/1.1 server (keep-alive, pipelining,
     * chunked bodies); lws serves it only where it must: on the public port,
     * or over TLS. */
    if (!same && !cfg->tls_internal) {
        s->httpd = pb_httpd_new(s, &s->vhd_internal, cfg->listen_internal, errstr, errlen);
        if (!s->httpd)
            return -1;
        pb_info("listening on %s (internal, port %d)", cfg->listen_internal,
                pb_httpd_port(s->httpd));
    } else if (!same) {
        s->vh_internal = listen_on(s, "internal", cfg->listen_internal, &s->vhd_internal,
                                   cfg->tls_internal, 0, errstr, errlen);
        if (!s->vh_internal)
            return -1;
    }

    if (!(s->kafka = pb_kafka_new(cfg, s->hub, &s->metrics, errstr, errlen)))
        return -1;
    pb_kafka_set_push_done(s->kafka, pb_relay_done);
    ev_io_init(&s->kafka_w, kafka_ready_cb, pb_kafka_wake_fd(s->kafka), EV_READ);
    s->kafka_w.data = s;
    ev_io_start(s->loop, &s->kafka_w);
    ev_timer_start(s->loop, &s->tick_w);
    if (pb_kafka_presence(s->kafka)) {
        ev_timer_init(&s->presence_w, presence_cb, 0., PB_PRESENCE_TICK_MS / 1000.0);
        s->presence_w.data = s;
        ev_timer_start(s->loop, &s->presence_w);
    }
    double wd = pb_notify_watchdog_interval(&s->notify);
    if (wd > 0.) {
        /* Half of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises: one late
         * iteration does not cost a restart, a wedged loop does. */
        ev_timer_set(&s->watchdog_w, 0., wd);
        ev_timer_start(s->loop, &s->watchdog_w);
        pb_info("notify: WATCHDOG=1 every %.3f s (WATCHDOG_USEC %lld)", wd,
                (long long)s->notify.watchdog_usec);
    }
    s->listening = 1;
    pb_notify_status(&s->notify, "Not ready: waiting for Kafka partitions");
    return 0;
}

int pb_server_run(struct pb_server *s)
{
    ev_run(s->loop, 0);
    ev_prepare_stop(s->loop, &s->stop_check_w);
    ev_timer_stop(s->loop, &s->stop_timer_w);
    if (!s->stopping)
        s->stop_deadline = pb_monotonic_ms() + s->cfg->shutdown_timeout_ms;
    pb_kafka_close(s->kafka, s->stop_deadline);
    pb_info("stopped");
    return 0;
}

int pb_server_can_free(const struct pb_server *s)
{
    return pb_kafka_closed(s->kafka);
}

void pb_server_free(struct pb_server *s)
{
    if (s->loop) {
        ev_io_stop(s->loop, &s->kafka_w);
        ev_io_stop(s->loop, &s->signal_w);
        ev_timer_stop(s->loop, &s->tick_w);
        ev_timer_stop(s->loop, &s->presence_w);
        ev_prepare_stop(s->loop, &s->flush_w);
        ev_timer_stop(s->loop, &s->watchdog_w);
    }
    pb_listener_free(s->public_listener);
    s->public_listener = NULL;
    if (s->ctx)
        lws_context_destroy(s->ctx); /* closes every wsi: hub connections are freed */
    s->ctx = NULL;
    pb_httpd_free(s->httpd);
    if (s->loop)
        ev_loop_destroy(s->loop);
    pb_kafka_free(s->kafka);
    pb_hub_free(s->hub);
    pb_store_free(s->store);
    pb_auth_free(s->auth);
    pb_admission_free(s->admission);
    if (s->signal_fd >= 0)
        close(s->signal_fd);
    pb_notify_close(&s->notify);
    memset(s, 0, sizeof(*s));
    s->notify.fd = -1;
}

/* The worker pool (pool.h). Worker 0 shares the main loop and its lws
 * context, and takes the hub's messages directly, so `workers: 1` is the
 * single loop it always was; workers 1..N-1 each get a loop and a context of
 * their own, made here before their threads start, and talk to the hub
 * through the hand-off queues. The acceptor places a socket on the worker
 * with the fewest connections (counting sockets on their way there): by
 * load, not by a flow hash as SO_REUSEPORT would (docs/ARCHITECTURE.md). */
#include "pushbridge/public/pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pushbridge/api/http_lws.h"
#include "pushbridge/core/listener.h"
#include "pushbridge/core/log.h"
#include "pushbridge/public/admission.h"
#include "pushbridge/public/server.h"
#include "pushbridge/public/sse.h"
#include "pushbridge/public/ws.h"

int pb_pool_size(const struct pb_config *cfg)
{
    if (strcmp(cfg->listen_public, cfg->listen_internal) == 0)
        return 1;
    long n = cfg->workers;
    if (n <= 0) {
        n = sysconf(_SC_NPROCESSORS_ONLN);
        if (n < 1)
            n = 1;
    }
    return n > PB_MAX_WORKERS ? PB_MAX_WORKERS : (int)n;
}

/* ---- the lws protocol every context shares ------------------------------ */

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
        pb_admission_release(vhd->w->env.admission, lws_get_socket_fd(wsi));
    /* Once per adopted socket: the acceptor's count of what each holds. */
    if (reason == LWS_CALLBACK_WSI_DESTROY && vhd->w)
        PB_COUNT(vhd->w->sockets_gone);
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
        return pb_sse_callback(vhd->w, wsi, reason, pss);
    switch (reason) {
    case LWS_CALLBACK_HTTP:
    case LWS_CALLBACK_HTTP_BODY:
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    case LWS_CALLBACK_HTTP_WRITEABLE:
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        return pb_http_callback(&vhd->api, wsi, reason, &pss->req, in, len);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
    case LWS_CALLBACK_ESTABLISHED:
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
    case LWS_CALLBACK_RECEIVE_PONG:
        return pb_ws_callback(vhd->w, wsi, reason, user, in, len);
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* rx_buffer_size is lws's receive buffer, allocated per connection at the
 * upgrade (lws 4.1.6: rx_buffer_size + LWS_PRE + 4 bytes, kept for the
 * connection's life): at 4096 it was most of an idle connection's memory
 * (5.6 KiB each, docs/PERFORMANCE.md), at 512 still a fifth of it. Client
 * messages are a login and token refreshes (SPEC 2) and pongs; longer ones
 * are reassembled from several RECEIVE callbacks in ws.c, whose buffer is
 * given back after each message. 256 holds any control frame (payload <= 125
 * bytes) and a short login whole; a longer login (a JWT) costs one
 * malloc/free to reassemble, once per login, never per event. */
#define RX_BUFFER_BYTES 256
/* lws hands the socket at most tx_packet_size (+ LWS_PRE + 4) bytes per
 * send and copies the rest into its own buffer for a later POLLOUT; left at
 * 0 that limit is rx_buffer_size, so every answer or frame over ~530 bytes
 * took a copy and an extra loop iteration. No memory is sized by it. */
#define TX_PACKET_BYTES (256 * 1024)

static const struct lws_protocols protocols[] = {
    {"pushbridge", server_cb, sizeof(struct pb_pss), RX_BUFFER_BYTES, 0, NULL, TX_PACKET_BYTES},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* A vhost in ctx. With adopt, lws does not listen: pushbridge accepts
 * (listener.c) and hands each admitted socket over, so that a descriptor
 * flood meets admission control and the accept pause instead of lws's
 * accept loop, which spins and logs on EMFILE. */
static struct lws_vhost *make_vhost(const struct pb_config *cfg, struct lws_context *ctx,
                                    const char *name, const char *host, int port,
                                    struct pb_vhd *vhd, int tls, int adopt)
{
    /* All zero: lws keeps no liveness timers. Its policy re-sorts a timer
     * list on every message received and every ping, O(n) each; keepalive.c
     * does the same job in one O(n) sweep a second. */
    static const lws_retry_bo_t retry;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.vhost_name = name;
    info.port = adopt ? CONTEXT_PORT_NO_LISTEN_SERVER : port;
    info.iface = (host[0] && strcmp(host, "0.0.0.0") != 0) ? host : NULL;
    /* ws.handshake_timeout_ms: how long a connection may hold a header
     * table without a whole request (lws's default is 10 s). */
    info.timeout_secs_ah_idle = (unsigned)((cfg->ws_handshake_timeout_ms + 999) / 1000);
    info.protocols = protocols;
    info.user = vhd;
    info.retry_and_idle_policy = &retry;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
    info.timeout_secs = 20;
    if (strcmp(host, "0.0.0.0") == 0)
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    if (tls) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = cfg->tls_cert;
        info.ssl_private_key_filepath = cfg->tls_key;
    }
    return lws_create_vhost(ctx, &info);
}

struct lws_context *pb_pool_context(const struct pb_config *cfg, struct ev_loop *loop,
                                    int loop_is_main)
{
    struct lws_context_creation_info info;
    void *foreign_loops[1] = {loop};
    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_LIBEV;
    info.foreign_loops = foreign_loops;
    /* OpenSSL's global init, once per process: the main loop's context. */
    if (cfg->tls_cert && loop_is_main)
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.port = CONTEXT_PORT_NO_LISTEN;
    return lws_create_context(&info);
}

/* ---- messages ----------------------------------------------------------- */

static void post_to_worker(void *ud, int k, struct pb_to_worker *msg)
{
    struct pb_server *s = ud;
    /* Past a worker's teardown (pb_pool_free) nothing is there to take it. */
    if (k < 0 || k >= s->nworkers || !s->workers[k].conns) {
        if (msg->type == PB_TW_ADOPT)
            close(msg->fd);
        pb_to_worker_free(msg);
        return;
    }
    pb_worker_post(&s->workers[k], msg);
}

static void to_hub(void *ud, struct pb_worker *w, struct pb_to_hub *msg)
{
    struct pb_server *s = ud;
    if (!w->threaded)
        pb_hub_receive(s->hub, msg); /* the main loop: at once */
    else
        pb_handoff_push(&s->hub_inbox, &msg->link);
}

static void hub_inbox_run(struct pb_handoff_item *it, size_t n, void *ud)
{
    (void)n;
    struct pb_server *s = ud;
    while (it) {
        struct pb_handoff_item *next = it->next;
        pb_hub_receive(s->hub, (struct pb_to_hub *)it);
        it = next;
    }
}

struct pb_hub_out pb_pool_hub_out(struct pb_server *s)
{
    return (struct pb_hub_out){.post = post_to_worker, .ud = s, .nworkers = s->nworkers};
}

static void flush(struct pb_worker *w)
{
    pb_ws_flush_pending(w);
}

/* ---- the acceptor ------------------------------------------------------- */

/* From this many workers on, worker 0 (the main loop) is given no
 * connections: the main loop's own work, Kafka, the hub's directory and the
 * store, is the one part of a node that does not spread over cores, so on
 * a many-core node it is what caps the events per second (docs/SCALING.md),
 * and every frame it wrote would lower that cap. Below it, the main loop's
 * share of the sends is worth a core's fraction. */
#define MAIN_LOOP_SPARED_FROM 4

static int least_loaded(const struct pb_server *s)
{
    int first = s->nworkers >= MAIN_LOOP_SPARED_FROM ? 1 : 0;
    int best = first;
    uint64_t best_load = UINT64_MAX;
    for (int k = first; k < s->nworkers; k++) {
        const struct pb_worker *w = &s->workers[k];
        uint64_t load = w->sockets_posted - PB_READ(w->sockets_gone);
        if (load < best_load) {
            best = k;
            best_load = load;
        }
    }
    return best;
}

/* The public listener's accepted connections: admission control first
 * (admission.c), then a worker's lws takes the socket over as if it had
 * accepted it. */
static void public_accepted(void *ud, int fd, const struct sockaddr_storage *peer)
{
    struct pb_server *s = ud;
    if (pb_admission_accept(s->admission, fd, peer)) {
        close(fd);
        return;
    }
    int k = least_loaded(s);
    struct pb_to_worker *msg = pb_to_worker_new(PB_TW_ADOPT, 0);
    if (!msg) {
        pb_admission_release(s->admission, fd);
        close(fd);
        return;
    }
    msg->fd = fd;
    s->workers[k].sockets_posted++;
    pb_worker_post(&s->workers[k], msg);
}

/* ---- setup and teardown ----------------------------------------------- */

static int init_worker(struct pb_server *s, int k, const struct pb_worker_env *env,
                       const char *host, char *errstr, size_t errlen)
{
    struct ev_loop *loop = s->loop;
    struct lws_context *ctx = s->ctx;
    if (k > 0) {
        loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
        if (!loop) {
            snprintf(errstr, errlen, "worker %d: cannot create its event loop (libev)", k);
            return -1;
        }
        ctx = pb_pool_context(s->cfg, loop, 0);
        if (!ctx) {
            ev_loop_destroy(loop);
            snprintf(errstr, errlen, "worker %d: cannot create its libwebsockets context", k);
            return -1;
        }
    }
    struct pb_worker *w = &s->workers[k];
    if (pb_worker_init(w, k, env, loop, ctx, errstr, errlen))
        return -1;
    w->vhd.is_internal = strcmp(s->cfg->listen_public, s->cfg->listen_internal) == 0;
    w->vh_public = make_vhost(s->cfg, ctx, "public", host, 0, &w->vhd, s->cfg->tls_cert != NULL, 1);
    if (!w->vh_public) {
        snprintf(errstr, errlen, "listen.public: worker %d: cannot make its vhost%s", k,
                 s->cfg->tls_cert ? " (can tls.cert/tls.key be loaded?)" : "");
        return -1;
    }
    return 0;
}

static int init_internal_vhost(struct pb_server *s, char *errstr, size_t errlen)
{
    char host[256];
    int port;
    if (pb_config_split_hostport(s->cfg->listen_internal, host, sizeof(host), &port)) {
        snprintf(errstr, errlen, "listen.internal: cannot parse address %s",
                 s->cfg->listen_internal);
        return -1;
    }
    s->vh_internal = make_vhost(s->cfg, s->ctx, "internal", host, port, &s->vhd_internal,
                                s->cfg->tls_internal, 0);
    if (!s->vh_internal) {
        snprintf(errstr, errlen, "listen.internal: cannot listen on %s (in use, or a bad "
                 "address%s)", s->cfg->listen_internal,
                 s->cfg->tls_internal ? ", or tls.cert/tls.key cannot be loaded" : "");
        return -1;
    }
    pb_info("listening on %s:%d (internal%s)", host, lws_get_vhost_listen_port(s->vh_internal),
            s->cfg->tls_internal ? ", TLS" : "");
    return 0;
}

int pb_pool_init(struct pb_server *s, char *errstr, size_t errlen)
{
    const struct pb_config *cfg = s->cfg;
    char host[256];
    int port;
    if (pb_config_split_hostport(cfg->listen_public, host, sizeof(host), &port)) {
        snprintf(errstr, errlen, "listen.public: cannot parse address %s", cfg->listen_public);
        return -1;
    }
    if (pb_handoff_init(&s->hub_inbox, s->loop, hub_inbox_run, s, errstr, errlen))
        return -1;
    s->workers = calloc((size_t)s->nworkers, sizeof(*s->workers));
    if (!s->workers) {
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    struct pb_worker_env env = {
        .cfg = cfg,
        .auth = s->auth,
        .admission = s->admission,
        .shared = &s->conns_shared,
        .stopping = &s->stopping,
        .hooks = &pb_ws_conn_hooks,
        .metrics = &s->metrics,
        .to_hub = to_hub,
        .flush = flush,
        .ud = s,
    };
    for (int k = 0; k < s->nworkers; k++)
        if (init_worker(s, k, &env, host, errstr, errlen))
            return -1;
    s->public_listener =
        pb_listener_new(s->loop, "listen.public", cfg->listen_public, public_accepted, s, errstr,
                        errlen);
    if (!s->public_listener)
        return -1;
    pb_info("listening on %s:%d (public%s), %d worker%s", host,
            pb_listener_port(s->public_listener), cfg->tls_cert ? ", TLS" : "", s->nworkers,
            s->nworkers == 1 ? "" : "s");
    if (strcmp(cfg->listen_public, cfg->listen_internal) != 0 && cfg->tls_internal)
        return init_internal_vhost(s, errstr, errlen);
    return 0;
}

int pb_pool_start(struct pb_server *s, char *errstr, size_t errlen)
{
    for (int k = 1; k < s->nworkers; k++)
        if (pb_worker_start(&s->workers[k], errstr, errlen))
            return -1;
    return 0;
}

void pb_pool_close_all(struct pb_server *s)
{
    for (int k = 0; k < s->nworkers; k++) {
        struct pb_to_worker *msg = pb_to_worker_new(PB_TW_CLOSE_ALL, 0);
        if (msg)
            pb_worker_post(&s->workers[k], msg);
    }
}

size_t pb_pool_backlog(struct pb_server *s)
{
    size_t most = 0;
    for (int k = 1; k < s->nworkers; k++) {
        size_t n = pb_handoff_weight(&s->workers[k].inbox);
        if (n > most)
            most = n;
    }
    return most;
}

int pb_pool_stalled(const struct pb_server *s, int64_t now, int64_t limit_ms, int64_t *idle_ms)
{
    for (int k = 1; k < s->nworkers; k++) {
        int64_t idle = now - __atomic_load_n(&s->workers[k].turned_ms, __ATOMIC_RELAXED);
        if (idle >= limit_ms) {
            *idle_ms = idle;
            return k;
        }
    }
    return -1;
}

size_t pb_pool_connections(const struct pb_server *s)
{
    size_t n = 0;
    for (int k = 0; k < s->nworkers; k++)
        if (s->workers[k].conns)
            n += pb_conns_count(s->workers[k].conns);
    return n;
}

void pb_pool_gauges(const struct pb_server *s, struct pb_gauges *g, struct pb_metrics *merged)
{
    g->nworkers = s->nworkers;
    for (int k = 0; k < s->nworkers; k++) {
        const struct pb_worker *w = &s->workers[k];
        if (!w->conns)
            continue;
        g->worker_connections[k] = pb_conns_count(w->conns);
        if (w->threaded) {
            pb_handoff_counts(&w->inbox, &g->worker_handed[k], &g->worker_wakeups[k]);
            g->worker_backlog[k] = pb_handoff_weight(&w->inbox);
            g->worker_backlog_peak[k] = pb_handoff_peak(&w->inbox);
        }
        g->connections += g->worker_connections[k];
        g->queue_bytes += pb_conns_queue_bytes(w->conns);
        if (w->own_metrics && merged)
            pb_metrics_add_worker(merged, w->metrics);
    }
}

void pb_pool_free(struct pb_server *s)
{
    pb_listener_free(s->public_listener);
    s->public_listener = NULL;
    /* The threaded workers first: each stops, closes its connections (the
     * hub hears of each through its inbox) and frees them. */
    for (int k = 1; s->workers && k < s->nworkers; k++)
        pb_worker_destroy(&s->workers[k]);
    /* Worker 0's connections are in the main context: closing it tells the
     * hub of each at once. */
    if (s->ctx)
        lws_context_destroy(s->ctx);
    s->ctx = NULL;
    if (s->workers && s->nworkers)
        pb_worker_destroy(&s->workers[0]);
    /* What the threaded workers said last (their closes) reaches the hub,
     * which frees those members; its answers find no worker. */
    if (s->hub_inbox.loop) {
        struct pb_handoff_item *it = pb_handoff_close(&s->hub_inbox);
        hub_inbox_run(it, 0, s);
        s->hub_inbox.loop = NULL;
    }
    free(s->workers);
    s->workers = NULL;
    s->nworkers = 0;
}

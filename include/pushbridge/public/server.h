/* The server: owns the lws context (the one event loop), the listeners, and
 * the modules it wires together (hub, kafka, auth, metrics). One protocol
 * callback receives every lws event and hands it to ws.c or http.c. */
#ifndef PB_SERVER_H
#define PB_SERVER_H

#include <ev.h>
#include <libwebsockets.h>
#include <signal.h>

#include "pushbridge/hub/auth.h"
#include "pushbridge/core/buf.h"
#include "pushbridge/core/config.h"
#include "pushbridge/hub/hub.h"
#include "pushbridge/kafka/kafka.h"
#include "pushbridge/core/metrics.h"
#include "pushbridge/core/notify.h"
#include "pushbridge/store/store.h"

struct pb_admission;
struct pb_http_req;
struct pb_httpd;
struct pb_listener;

/* Per-connection lws data (lws allocates and zeroes it, and frees it after
 * LWS_CALLBACK_CLOSED / CLOSED_HTTP). */
struct pb_pss {
    struct lws *wsi;
    struct pb_conn *conn;           /* WebSocket: from ESTABLISHED to CLOSED */
    ev_timer auth_timer;            /* ws.auth_timeout_ms (a libev timer: see server.c) */
    struct pb_buf rx;               /* message being reassembled from fragments */
    int close_after_drain;          /* close with conn->close_code once the queue is empty */
    struct pb_http_req *req;        /* HTTP: the request being served */
    int peer_closing;               /* the client sent a close: write nothing more */
    int pending;                    /* on the server's write_pending list */
    int sse;                        /* an SSE stream (sse.c): conn is its hub connection */
    ev_io sse_rx;                   /* SSE: notices the client going away (sse.c) */
    struct pb_pss *pend_prev, *pend_next;
};

/* Per-vhost (listener) data: which roles the listener serves. */
struct pb_vhd {
    struct pb_server *srv;
    int is_public;   /* /ws and the page */
    int is_internal; /* the HTTP API */
};

/* Owned by main(); lives for the whole process. */
struct pb_server {
    const struct pb_config *cfg;
    struct lws_context *ctx;
    struct pb_vhd vhd_public, vhd_internal;
    struct lws_vhost *vh_public, *vh_internal;
    struct pb_metrics metrics;
    struct pb_hub *hub;
    struct pb_store *store; /* task state and history, behind the hub */
    struct pb_auth *auth;
    struct pb_kafka *kafka;
    struct pb_httpd *httpd; /* the internal listener, when it is not lws's */
    struct pb_listener *public_listener; /* accepts for vh_public (lws adopts) */
    struct pb_admission *admission;      /* pending public connections (admission.c) */
    int listening;

    /* The loop (libev, epoll) and pushbridge's own watchers on it; lws adds
     * its sockets and timers to the same loop. */
    struct ev_loop *loop;
    ev_io kafka_w;              /* the Kafka consumer queue's wake-up pipe */
    ev_io signal_w;             /* signal_fd */
    ev_timer tick_w;            /* 1 s: pb_kafka_tick */
    ev_timer presence_w;        /* cluster mode, 250 ms: pb_presence_tick */
    ev_prepare stop_check_w;    /* while stopping: end the loop when done */
    ev_timer stop_timer_w;      /* wakes the loop at half of shutdown_timeout_ms */
    ev_prepare flush_w;         /* before each sleep: pb_ws_flush_pending */
    ev_timer watchdog_w;        /* WATCHDOG=1 at half of WATCHDOG_USEC (when set) */
    struct pb_notify notify;    /* the service manager (NOTIFY_SOCKET), if any */
    struct pb_pss *write_pending; /* connections with frames not yet written (ws.c) */

    int sndbuf_warned;      /* ws.send_buffer_bytes failed once (logged) */

    int signal_fd;
    int stopping;           /* SIGTERM/SIGINT seen */
    int64_t stop_deadline;  /* monotonic ms */
    int exit_code;
};

/* Builds everything; on failure returns -1 with errstr naming the cause. */
int pb_server_init(struct pb_server *s, const struct pb_config *cfg, char *errstr,
                   size_t errlen);
/* Runs the loop until a stop signal has been handled. Returns the exit code. */
int pb_server_run(struct pb_server *s);
/* 1 when the bridge serves: listeners up, Kafka partitions assigned, not
 * stopping (what /readyz and READY=1 both say); else 0 with *why set. */
int pb_server_ready(const struct pb_server *s, const char **why);
/* 0 when pb_server_free would block on a Kafka broker that is gone. */
int pb_server_can_free(const struct pb_server *s);
void pb_server_free(struct pb_server *s);

/* ws.c */
int pb_ws_callback(struct pb_server *s, struct lws *wsi, enum lws_callback_reasons reason,
                   struct pb_pss *pss, void *in, size_t len);
extern const struct pb_hub_hooks pb_ws_hub_hooks;
/* ws.allowed_origins admits this request's Origin (also used by sse.c). */
int pb_ws_origin_allowed(const struct pb_config *cfg, struct lws *wsi);
/* Writes the frames queued since the loop last slept, straight to the
 * sockets that take them (called before the loop sleeps). */
void pb_ws_flush_pending(struct pb_server *s);

/* http.c */
int pb_http_callback(struct pb_server *s, const struct pb_vhd *vhd, struct lws *wsi,
                     enum lws_callback_reasons reason, struct pb_pss *pss, void *in, size_t len);

#endif

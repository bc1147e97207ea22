/* An event-loop worker (SPEC 11): one thread, its own libev loop and lws
 * context, and its share of the public listener's connections (WebSocket
 * and SSE) with their queues. The main loop accepts and hands a worker each
 * admitted socket (ADOPT); the hub hands it frames, login answers and
 * releases; it hands the hub logins and closes. Everything crosses threads
 * through the two hand-off queues (core/handoff.h), a wake-up per batch.
 * Worker 0 lives on the main loop itself and takes its messages directly,
 * so `workers: 1` is the single loop it always was. */
#ifndef PB_WORKER_H
#define PB_WORKER_H

#include <ev.h>
#include <libwebsockets.h>
#include <pthread.h>

#include "pushbridge/api/http.h"
#include "pushbridge/core/buf.h"
#include "pushbridge/core/config.h"
#include "pushbridge/core/handoff.h"
#include "pushbridge/core/metrics.h"
#include "pushbridge/hub/auth.h"
#include "pushbridge/hub/conns.h"
#include "pushbridge/hub/hub.h"

struct pb_admission;
struct pb_http_req;
struct pb_sse_stream;
struct pb_worker;

/* Per-connection lws data (lws allocates and zeroes it, and frees it after
 * LWS_CALLBACK_CLOSED / CLOSED_HTTP). One per connection, idle ones
 * included: 144 bytes (fields ordered to leave no padding, flags as bytes),
 * and what only an SSE stream needs is its own allocation (sse.c), so a
 * WebSocket does not carry it (docs/PERFORMANCE.md, memory per idle
 * connection; issue 19's bound is 2.5 KiB in all). */
struct pb_pss {
    struct lws *wsi;
    struct pb_conn *conn;           /* WebSocket: from ESTABLISHED to CLOSED */
    ev_timer auth_timer;            /* ws.auth_timeout_ms (a libev timer: see server.c) */
    struct pb_buf rx;               /* message being reassembled from fragments */
    struct pb_http_req *req;        /* HTTP: the request being served */
    /* An SSE stream (sse.c): its state, socket watcher and Origin; NULL
     * for a WebSocket or a plain HTTP request. Freed at the close. */
    struct pb_sse_stream *sse;
    struct pb_pss *pend_prev, *pend_next;
    uint8_t close_after_drain;      /* close with conn->close_code once the queue is empty */
    uint8_t peer_closing;           /* the client sent a close: write nothing more */
    uint8_t pending;                /* on the worker's write_pending list */
};

/* Per-vhost (listener) data: which roles the listener serves, the worker
 * whose context it is in (NULL: the internal listener), and the HTTP API's
 * environment for it (built by server.c). */
struct pb_vhd {
    struct pb_worker *w;
    int is_public;   /* /ws, /sse and the page */
    int is_internal; /* the HTTP API */
    struct pb_api_env api;
};

/* What a worker is given by the server, which owns all of it and outlives
 * every worker. */
struct pb_worker_env {
    const struct pb_config *cfg;
    const struct pb_auth *auth;          /* read-only after start: any thread */
    struct pb_admission *admission;      /* thread-safe */
    struct pb_conns_shared *shared;      /* atomics */
    const int *stopping;                 /* the server's flag, read atomically */
    const struct pb_conn_hooks *hooks;   /* the WebSocket transport's */
    struct pb_metrics *metrics;          /* the server's: worker 0 counts there */
    /* Hands a message to the hub: at once on the main loop (worker 0), else
     * through the hub's inbox. */
    void (*to_hub)(void *ud, struct pb_worker *w, struct pb_to_hub *msg);
    /* Before the loop sleeps: the frames queued this turn go out (ws.c). */
    void (*flush)(struct pb_worker *w);
    void *ud;
};

/* One worker. Owned by the server (an array), from pb_worker_init to
 * pb_worker_destroy; its connections, queues and lws context are touched by
 * its own thread only. */
struct pb_worker {
    int index;
    struct pb_worker_env env;
    const struct pb_config *cfg;
    struct ev_loop *loop;
    struct lws_context *ctx;
    struct lws_vhost *vh_public;
    struct pb_vhd vhd;               /* vh_public's user data */
    struct pb_conns *conns;
    struct pb_metrics *metrics;      /* worker 0: the server's; else its own */
    int own_metrics;
    struct pb_handoff inbox;         /* from the hub and the acceptor (threaded workers) */
    struct pb_pss *write_pending;    /* connections with frames not yet written (ws.c) */
    ev_timer tick_w;                 /* 1 s: keep-alive sweep, lws's timers */
    ev_prepare flush_w;              /* before each sleep: env.flush */
    pthread_t thread;
    int threaded;                    /* its own thread (index > 0) */
    int sndbuf_warned;               /* ws.send_buffer_bytes failed once (logged) */
    /* Sockets handed over (the main loop's count) and gone (this worker's,
     * PB_COUNT, at lws's WSI_DESTROY): the difference is what it holds,
     * upgraded or not, for the acceptor's choice. */
    uint64_t sockets_posted, sockets_gone;
    /* When its 1 s tick last ran (monotonic ms; written by its thread, read
     * by the main loop's watchdog, relaxed atomic): a loop that stopped
     * turning (a blocking call, a livelock) stops the watchdog's pings. */
    int64_t turned_ms;
};

/* Worker index: loop and ctx are the main loop's and context for worker 0,
 * else made for it by the server (the worker then owns them). The public
 * vhost must be created in ctx with &w->vhd as its user before start. */
int pb_worker_init(struct pb_worker *w, int index, const struct pb_worker_env *env,
                   struct ev_loop *loop, struct lws_context *ctx, char *errstr, size_t errlen);
/* Threaded workers: starts the thread. 0, or -1 with errstr. */
int pb_worker_start(struct pb_worker *w, char *errstr, size_t errlen);
/* Any thread: a message for w. Worker 0 handles it at once (main loop
 * only); a threaded worker's inbox takes it. */
void pb_worker_post(struct pb_worker *w, struct pb_to_worker *msg);
/* Main loop: stops a threaded worker's loop and joins its thread, then
 * frees the worker's connections, context and loop (for threaded workers). */
void pb_worker_destroy(struct pb_worker *w);

/* From the transports, on w's thread: */
/* The identity passed the checks: ask the hub to start c (it answers with
 * the transport's started or refused hook). Takes id (moved) and resume. */
int pb_worker_login(struct pb_worker *w, struct pb_conn *c, struct pb_identity *id,
                    const char *resume);
/* The transport is gone: c is freed now, or once the hub lets go of it. */
void pb_worker_closed(struct pb_worker *w, struct pb_conn *c);
/* A refreshed token brought new groups (taken): the hub filters by them. */
void pb_worker_groups(struct pb_worker *w, struct pb_conn *c, char **groups, size_t ngroups);

#endif

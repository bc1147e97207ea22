/* The server: owns the main loop, the workers (worker.h), the listeners, and
 * the modules it wires together (hub, kafka, auth, metrics). The main loop
 * runs the Kafka consumer, the hub, the internal HTTP API, signals and the
 * acceptor of the public listener; worker 0 shares it, workers 1..N-1 have
 * threads of their own. One protocol callback receives every lws event, in
 * whichever worker's context, and hands it to ws.c, sse.c or http_lws.c
 * (the HTTP API, which sees only its struct pb_api_env). */
#ifndef PB_SERVER_H
#define PB_SERVER_H

#include <ev.h>
#include <libwebsockets.h>
#include <signal.h>

#include "pushbridge/api/http.h"
#include "pushbridge/hub/auth.h"
#include "pushbridge/core/buf.h"
#include "pushbridge/core/config.h"
#include "pushbridge/hub/hub.h"
#include "pushbridge/kafka/kafka.h"
#include "pushbridge/core/metrics.h"
#include "pushbridge/core/notify.h"
#include "pushbridge/store/store.h"
#include "pushbridge/public/worker.h"

struct pb_admission;
struct pb_httpd;
struct pb_listener;

/* Owned by main(); lives for the whole process. */
struct pb_server {
    const struct pb_config *cfg;
    struct lws_context *ctx;   /* the main loop's: worker 0's and the internal listener's */
    struct pb_vhd vhd_internal;
    struct lws_vhost *vh_internal;
    /* Bound: `workers` (PB_MAX_WORKERS at most); worker 0 on the main loop. */
    struct pb_worker *workers;
    int nworkers;
    int workers_gone;          /* after teardown: messages to workers are dropped */
    struct pb_conns_shared conns_shared;
    struct pb_handoff hub_inbox; /* the workers' logins and closes, to the hub */
    struct pb_metrics metrics;          /* the main loop's, and worker 0's */
    struct pb_metrics *metrics_merged;  /* workers > 1: what /metrics renders (api_gauges) */
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
    ev_timer backlog_w;         /* while a worker is far behind: when to read Kafka again */
    ev_io signal_w;             /* signal_fd */
    ev_timer tick_w;            /* 1 s: pb_kafka_tick */
    ev_timer presence_w;        /* cluster mode, 250 ms: pb_presence_tick */
    ev_prepare hub_flush_w;     /* before each sleep: the hub's staged frames to the workers */
    ev_prepare stop_check_w;    /* while stopping: end the loop when done */
    ev_timer stop_timer_w;      /* wakes the loop at half of shutdown_timeout_ms */
    ev_timer watchdog_w;        /* WATCHDOG=1 at half of WATCHDOG_USEC (when set) */
    int stalled_logged;         /* a worker's stalled loop was logged (watchdog_cb) */
    struct pb_notify notify;    /* the service manager (NOTIFY_SOCKET), if any */

    int signal_fd;
    int stopping;           /* SIGTERM/SIGINT seen (atomic: the workers read it) */
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

/* Open connections (WebSocket and SSE, logged in or not) on every worker. */
size_t pb_server_connections(const struct pb_server *s);

#endif

/* The main loop and the wiring around it. One libev (epoll) loop serves the
 * Kafka wake-up pipe, a signalfd, the internal listener, the acceptor of the
 * public one, and worker 0's lws sockets (pool.c: the other workers have
 * loops of their own). The hub and the store live here, so Kafka, HTTP
 * pushes and logins meet on one thread with no locks. A 1 s timer keeps the
 * consumer polled and tells the service manager (notify.c) when the bridge
 * turns ready; a prepare watcher ends the loop once shutdown is done. */
#include "pushbridge/public/server.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "pushbridge/api/httpd.h"
#include "pushbridge/kafka/presence.h"
#include "pushbridge/api/relay.h"
#include "pushbridge/core/log.h"
#include "pushbridge/public/admission.h"
#include "pushbridge/public/pool.h"

/* Kafka messages handled per wake-up before the loop serves sockets again. */
#define KAFKA_BATCH 512
/* The once-a-second tick; the hub's held logins count their waits in it. */
#define TICK_S (PB_HUB_TICK_MS / 1000.0)

/* Bound: frames waiting for one worker in its inbox (64 Ki frames, 1 MiB
 * of message items, the frames themselves shared). A worker that falls
 * this far behind (starved of CPU, or sent broadcasts faster than it can
 * write them) holds the consumer back (pb_kafka_hold: unpolled, its
 * partitions paused once the hold lasts) until it has halved them, instead
 * of its inbox growing with the event rate; Kafka keeps what is not read
 * yet. A drain stops at the room left under it (pb_kafka_drain), so Kafka
 * passes it by one event's frames at most. Logins' snapshots and HTTP
 * pushes are not held back by it (ARCHITECTURE.md). */
#define WORKER_BACKLOG_MAX 65536
#define BACKLOG_RETRY_S 0.005

/* Frames the fullest threaded worker's inbox may still take (worker 0
 * queues on this thread as it goes: no inbox). */
static size_t worker_room(struct pb_server *s)
{
    if (s->nworkers < 2)
        return SIZE_MAX;
    /* What this turn of the loop staged so far (an HTTP push, an earlier
     * drain) goes in first, so that the inboxes weigh it. */
    pb_hub_flush(s->hub);
    size_t backlog = pb_pool_backlog(s);
    return backlog >= WORKER_BACKLOG_MAX ? 0 : WORKER_BACKLOG_MAX - backlog;
}

/* Room for the next drain: 0 while the consumer is held for a worker, and
 * the hold begins when the fullest inbox reaches the bound. */
static size_t kafka_room(struct pb_server *s)
{
    if (ev_is_active(&s->backlog_w))
        return 0;
    size_t room = worker_room(s);
    if (!room) {
        s->metrics.kafka_backpressure++;
        pb_kafka_hold(s->kafka, 1);
        ev_timer_set(&s->backlog_w, BACKLOG_RETRY_S, BACKLOG_RETRY_S);
        ev_timer_start(s->loop, &s->backlog_w);
    }
    return room;
}

/* Kafka's consumer queue turned non-empty (librdkafka wrote the pipe): its
 * messages; while held, nothing, or once the hold lasts, its rebalances and
 * errors alone. */
static void kafka_ready_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct pb_server *s = w->data;
    pb_kafka_drain(s->kafka, KAFKA_BATCH, kafka_room(s));
}

/* The consumer held back for a worker: resumes once that inbox halved. */
static void backlog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct pb_server *s = w->data;
    if (pb_pool_backlog(s) >= WORKER_BACKLOG_MAX / 2)
        return;
    ev_timer_stop(loop, &s->backlog_w);
    pb_kafka_hold(s->kafka, 0);
}

/* Before the loop sleeps, the frames this iteration's events staged go to
 * the workers (pb_hub_flush): one hand-off per worker per iteration. At
 * the highest priority, so that worker 0's own flush (a prepare watcher
 * too) writes them in the same iteration. */
static void hub_flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    struct pb_server *s = w->data;
    pb_hub_flush(s->hub);
}

/* Runs before the loop sleeps, only while stopping: ends the loop once every
 * WebSocket is gone or half of shutdown_timeout_ms was spent closing them
 * (the other half is for committing offsets). */
static void stop_check_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    struct pb_server *s = w->data;
    if (pb_server_connections(s) == 0) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    if (pb_monotonic_ms() >= s->stop_deadline - s->cfg->shutdown_timeout_ms / 2) {
        pb_warn("half of shutdown_timeout_ms spent closing WebSockets; dropping the %zu "
                "still open",
                pb_server_connections(s));
        ev_break(loop, EVBREAK_ALL);
    }
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
    if (__atomic_load_n(&s->stopping, __ATOMIC_RELAXED))
        *why = "shutting down";
    else if (!s->listening)
        *why = "listeners are not up yet";
    else
        pb_kafka_ready(s->kafka, why);
    return *why == NULL;
}

/* The HTTP API's callbacks (struct pb_api_env): readiness and gauges are
 * the server's to say, the API only renders them. */
static int api_ready(const void *owner, const char **why)
{
    return pb_server_ready(owner, why);
}

static void api_gauges(const void *owner, struct pb_gauges *g)
{
    const struct pb_server *s = owner;
    memset(g, 0, sizeof(*g));
    /* With workers of their own, their counters join a copy of ours (the
     * copy is the main loop's: one per call, read by the renderer only). */
    struct pb_metrics *merged = NULL;
    if (s->nworkers > 1 && s->metrics_merged) {
        merged = s->metrics_merged;
        memcpy(merged, &s->metrics, sizeof(*merged));
        g->merged = merged;
    }
    pb_pool_gauges(s, g, merged);
    g->pending_connections = pb_admission_pending(s->admission);
    g->users = pb_hub_users(s->hub);
    g->kafka_ready = pb_kafka_ready(s->kafka, &g->not_ready_reason);
    g->kafka_bootstrap = pb_kafka_bootstrap(s->kafka);
    g->group_warning = pb_kafka_share(s->kafka, &g->partitions_assigned, &g->partitions_total);
    struct pb_store_stats st;
    pb_store_stats(s->store, &st);
    g->state_users = st.users;
    g->state_tasks = st.tasks;
    g->state_bytes = st.state_bytes;
    g->history_events = st.history_events;
    g->history_bytes = st.history_bytes;
}

/* A listener's environment for the HTTP API: its roles, and what the
 * server owns. Filled once the Kafka client exists; no request is served
 * before the loop runs. */
static void api_env_init(struct pb_server *s, struct pb_vhd *vhd)
{
    vhd->api = (struct pb_api_env){
        .cfg = s->cfg,
        .metrics = &s->metrics,
        .hub = s->hub,
        .store = s->store,
        .kafka = s->kafka,
        .is_public = vhd->is_public,
        .is_internal = vhd->is_internal,
        .owner = s,
        .ready = api_ready,
        .gauges = api_gauges,
    };
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
                 pb_server_connections(s), pb_hub_users(s->hub));
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
 * turns, and while every threaded worker's loop turns too, so a wedged loop
 * (a blocking call, a livelock) on any thread stops the pings and the
 * service manager restarts the bridge (WatchdogSec=). A wedged worker would
 * otherwise hold the Kafka consumer back (WORKER_BACKLOG_MAX) for good while
 * the bridge looked alive. A worker counts as wedged once its 1 s tick is
 * late by a whole watchdog interval (WATCHDOG_USEC), and at least 3 s. */
static void watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct pb_server *s = w->data;
    int64_t limit = s->notify.watchdog_usec / 1000, idle;
    if (limit < 3000)
        limit = 3000;
    int k = pb_pool_stalled(s, pb_monotonic_ms(), limit, &idle);
    if (k >= 0) {
        if (!s->stalled_logged)
            pb_error("worker %d's loop has not turned for %lld ms: no more watchdog pings, "
                     "so the service manager restarts the bridge",
                     k, (long long)idle);
        s->stalled_logged = 1;
        return;
    }
    if (s->stalled_logged)
        pb_info("every worker's loop turns again: watchdog pings resume");
    s->stalled_logged = 0;
    pb_notify_send(&s->notify, "WATCHDOG=1");
}

static void begin_stop(struct pb_server *s, const char *why)
{
    if (s->stopping)
        return;
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELAXED); /* the workers refuse upgrades */
    char status[160];
    snprintf(status, sizeof(status), "STOPPING=1\nSTATUS=Stopping (%s): closing %zu connections",
             why, pb_server_connections(s));
    pb_notify_send(&s->notify, status);
    s->stop_deadline = pb_monotonic_ms() + s->cfg->shutdown_timeout_ms;
    pb_info("%s: closing %zu WebSocket connection(s) with 1001, then committing offsets", why,
            pb_server_connections(s));
    /* The staged frames go to the workers ahead of the close, in order;
     * the close then drops every queue (1001), and clients resume. */
    pb_hub_flush(s->hub);
    pb_pool_close_all(s);
    ev_prepare_start(s->loop, &s->stop_check_w);
    ev_timer_set(&s->stop_timer_w, (double)s->cfg->shutdown_timeout_ms / 2000.0, 0.);
    ev_timer_start(s->loop, &s->stop_timer_w);
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

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct pb_server *s = w->data;
    pb_kafka_tick(s->kafka, kafka_room(s));
    pb_hub_tick(s->hub); /* held resumes whose wait is over (hub/held.h) */
    pb_store_tick(s->store);
    notify_tick(s);
    /* Each worker's own tick sweeps its connections (keep-alive, token
     * lifetime, the soft queue bound) and wakes its lws (worker.c). */
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
    ev_timer_init(&s->stop_timer_w, stop_timer_cb, 0., 0.);
    ev_timer_init(&s->watchdog_w, watchdog_cb, 0., 0.);
    s->signal_w.data = s->tick_w.data = s->stop_check_w.data = s->stop_timer_w.data = s;
    s->watchdog_w.data = s;
    ev_io_start(s->loop, &s->signal_w);
    return 0;
}

/* The main loop's lws context: worker 0's connections, and the internal
 * listener where lws serves it. */
static int context_init(struct pb_server *s, char *errstr, size_t errlen)
{
    s->ctx = pb_pool_context(s->cfg, s->loop, 1);
    if (!s->ctx) {
        snprintf(errstr, errlen,
                 "cannot create the libwebsockets context (is the libev event-library plugin, "
                 "Debian's libwebsockets-evlib-ev, installed?)");
        return -1;
    }
    return 0;
}

/* The hub, the store behind it and what the workers share. */
static int core_init(struct pb_server *s, char *errstr, size_t errlen)
{
    const struct pb_config *cfg = s->cfg;
    s->nworkers = pb_pool_size(cfg);
    struct pb_hub_out out = pb_pool_hub_out(s);
    if (!(s->auth = pb_auth_new(cfg, errstr, errlen)))
        return -1;
    if (!(s->admission = pb_admission_new(cfg, &s->metrics)) ||
        !(s->store = pb_store_new(cfg, &s->metrics)) ||
        !(s->hub = pb_hub_new(cfg, &s->metrics, s->store, &out)) ||
        (s->nworkers > 1 && !(s->metrics_merged = malloc(sizeof(*s->metrics_merged))))) {
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* The internal API has its own HTTP/1.1 server (keep-alive, pipelining,
 * chunked bodies); lws serves it only where it must: on the public port
 * (pool.c: worker 0's vhost then serves both), or over TLS. */
static int internal_init(struct pb_server *s, char *errstr, size_t errlen)
{
    const struct pb_config *cfg = s->cfg;
    if (strcmp(cfg->listen_public, cfg->listen_internal) == 0 || cfg->tls_internal)
        return 0;
    s->httpd = pb_httpd_new(s->loop, &s->vhd_internal.api, cfg->listen_internal, errstr, errlen);
    if (!s->httpd)
        return -1;
    pb_info("listening on %s (internal, port %d)", cfg->listen_internal, pb_httpd_port(s->httpd));
    return 0;
}

static void watchdog_init(struct pb_server *s)
{
    double wd = pb_notify_watchdog_interval(&s->notify);
    if (wd <= 0.)
        return;
    /* Half of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises: one late
     * iteration does not cost a restart, a wedged loop does. */
    ev_timer_set(&s->watchdog_w, 0., wd);
    ev_timer_start(s->loop, &s->watchdog_w);
    pb_info("notify: WATCHDOG=1 every %.3f s (WATCHDOG_USEC %lld)", wd,
            (long long)s->notify.watchdog_usec);
}

int pb_server_init(struct pb_server *s, const struct pb_config *cfg, char *errstr,
                   size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->cfg = cfg;
    s->signal_fd = -1;
    s->notify.fd = -1;
    pb_metrics_init(&s->metrics);
    s->vhd_internal = (struct pb_vhd){.is_internal = 1};

    if (pb_notify_open(&s->notify, environ, errstr, errlen))
        return -1;
    if (signals_init(s, errstr, errlen) || loop_init(s, errstr, errlen))
        return -1;
    lws_set_log_level(pb_log_enabled(PB_LOG_DEBUG) ? (LLL_ERR | LLL_WARN) : LLL_ERR,
                      lws_log_emit);
    if (core_init(s, errstr, errlen) || context_init(s, errstr, errlen) ||
        pb_pool_init(s, errstr, errlen) || internal_init(s, errstr, errlen))
        return -1;
    if (!(s->kafka = pb_kafka_new(cfg, s->hub, &s->metrics, errstr, errlen)))
        return -1;
    pb_kafka_set_push_done(s->kafka, pb_relay_done);
    for (int k = 0; k < s->nworkers; k++)
        api_env_init(s, &s->workers[k].vhd);
    api_env_init(s, &s->vhd_internal);
    ev_io_init(&s->kafka_w, kafka_ready_cb, pb_kafka_wake_fd(s->kafka), EV_READ);
    s->kafka_w.data = s;
    ev_timer_init(&s->backlog_w, backlog_cb, 0., 0.);
    s->backlog_w.data = s;
    ev_prepare_init(&s->hub_flush_w, hub_flush_cb);
    ev_set_priority(&s->hub_flush_w, EV_MAXPRI);
    s->hub_flush_w.data = s;
    ev_prepare_start(s->loop, &s->hub_flush_w);
    ev_io_start(s->loop, &s->kafka_w);
    ev_timer_start(s->loop, &s->tick_w);
    if (pb_kafka_presence(s->kafka)) {
        ev_timer_init(&s->presence_w, presence_cb, 0., PB_PRESENCE_TICK_MS / 1000.0);
        s->presence_w.data = s;
        ev_timer_start(s->loop, &s->presence_w);
    }
    watchdog_init(s);
    /* The workers start last: everything they reach exists now. */
    if (pb_pool_start(s, errstr, errlen))
        return -1;
    s->listening = 1;
    pb_notify_status(&s->notify, "Not ready: waiting for Kafka partitions");
    return 0;
}

int pb_server_run(struct pb_server *s)
{
    ev_run(s->loop, 0);
    pb_hub_flush(s->hub);
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

size_t pb_server_connections(const struct pb_server *s)
{
    return pb_pool_connections(s);
}

void pb_server_free(struct pb_server *s)
{
    if (s->loop) {
        ev_prepare_stop(s->loop, &s->hub_flush_w);
        ev_io_stop(s->loop, &s->kafka_w);
        ev_timer_stop(s->loop, &s->backlog_w);
        ev_io_stop(s->loop, &s->signal_w);
        ev_timer_stop(s->loop, &s->tick_w);
        ev_timer_stop(s->loop, &s->presence_w);
        ev_timer_stop(s->loop, &s->watchdog_w);
    }
    pb_pool_free(s); /* every connection closed, every worker joined */
    if (s->ctx)
        lws_context_destroy(s->ctx);
    s->ctx = NULL;
    pb_httpd_free(s->httpd);
    if (s->loop)
        ev_loop_destroy(s->loop);
    pb_kafka_free(s->kafka);
    pb_hub_free(s->hub);
    pb_store_free(s->store);
    pb_auth_free(s->auth);
    pb_admission_free(s->admission);
    free(s->metrics_merged);
    if (s->signal_fd >= 0)
        close(s->signal_fd);
    pb_notify_close(&s->notify);
    memset(s, 0, sizeof(*s));
    s->notify.fd = -1;
}
